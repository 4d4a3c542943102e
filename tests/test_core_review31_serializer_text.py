"""A body that cannot be encoded because its model's own serializer validates (and
fails) raises SerializationError without the value pydantic's error quotes: the text
reaches logs and span events (docs/security.md)."""

from __future__ import annotations

import pytest

import brokerkit
from brokerkit.exceptions import SerializationError

pydantic = pytest.importorskip("pydantic")

SECRET = "password=hunter2"


class _User(pydantic.BaseModel):
    age: int


class _Order(pydantic.BaseModel):
    raw: str

    @pydantic.field_serializer("raw")
    def _raw(self, value: str) -> int:
        return _User.model_validate({"age": value}).age


@pytest.mark.parametrize("content_type", ["application/json", "application/msgpack"])
def test_a_serializers_validation_error_is_told_without_its_input(content_type: str) -> None:
    with brokerkit.connect("memory://") as broker:
        with pytest.raises(SerializationError) as raised:
            broker.publish("orders", _Order(raw=SECRET), content_type=content_type)
        text = str(raised.value)
        assert SECRET not in text
        assert "age" in text and "int_parsing" in text
        assert broker.inspect("orders").length == 0
