"""``--help`` keeps what click means to be shown as written (review 29 of the command
line). Making each paragraph of a help one line (for rich to wrap) used
``" ".join(p.split())``, which also treated click's ``\\f`` as a space, so the text
after it, meant for the docs and never for ``--help``, was shown; and it ran a plugin
command's list of steps or indented example into one line."""

from __future__ import annotations

from typing import Any

import pytest

import brokerkit

typer = pytest.importorskip("typer")

from brokerkit.cli._app import run  # noqa: E402


class Plugin:
    @brokerkit.hookimpl
    def brokerkit_register_commands(self, cli: Any) -> None:
        @cli.command("plug")  # type: ignore[untyped-decorator]
        def plug() -> None:
            """Publish the plugin's greeting, a prose summary that is
            wrapped in the source.

            Steps:
            - connect to the broker
            - publish the greeting
            1. then ack

            \b
            Kept as it is:
            by click's marker.

            Example:

                brokerkit plug URL
                brokerkit plug URL --loud

            The last paragraph that --help
            shows.
            \f
            Hidden: for the API docs only, never for --help.
            """


@pytest.fixture
def help_lines(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> list[str]:
    """The lines of ``brokerkit plug --help`` on a wide terminal, the plugin added."""
    import brokerkit.cli._app as app_module
    from brokerkit._plugins import plugin_manager

    def manager() -> object:
        pm = plugin_manager(entry_points=False)
        pm.register(Plugin(), name="layout-plugin")
        return pm

    monkeypatch.setattr(app_module, "plugin_manager", manager)
    monkeypatch.setenv("COLUMNS", "200")
    assert run(["plug", "--help"]) == 0
    return [line.strip(" │") for line in capsys.readouterr().out.splitlines()]


def test_the_text_after_click_s_form_feed_is_not_shown(help_lines: list[str]) -> None:
    assert not any("Hidden" in line for line in help_lines), help_lines
    assert "The last paragraph that --help shows." in help_lines, help_lines


def test_a_list_keeps_one_item_a_line(help_lines: list[str]) -> None:
    for item in ("Steps:", "- connect to the broker", "- publish the greeting", "1. then ack"):
        assert item in help_lines, help_lines


def test_an_indented_example_keeps_its_lines(help_lines: list[str]) -> None:
    for line in ("brokerkit plug URL", "brokerkit plug URL --loud"):
        assert line in [shown.strip() for shown in help_lines], help_lines


def test_prose_is_still_one_line(help_lines: list[str]) -> None:
    summary = "Publish the plugin's greeting, a prose summary that is wrapped in the source."
    assert summary in help_lines, help_lines
    assert "Kept as it is:" in help_lines and "by click's marker." in help_lines, help_lines
