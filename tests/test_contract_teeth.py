"""The contract suite has teeth: each deliberately broken backend fails the contract
tests of the promise it breaks, with that promise named in the failure."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from xml.etree import ElementTree

import pytest

from brokerkit.contracts.pytest_plugin import PROFILE_ENV
from tests.broken_backends import BROKEN_BACKENDS

ROOT = Path(__file__).resolve().parent.parent

#: broken backend -> {contract test that must fail: text its failure must contain}
EXPECTED_FAILURES: dict[str, dict[str, str]] = {
    "duplicates_to_competitors": {
        "test_competing_consumers_split_without_overlap": (
            "each message goes to one consumer of the default group: both got"
        ),
        "test_delivery_state_machine": "is also leased to another live consumer",
    },
    "drops_on_nack": {
        "test_nack_requeue_redelivers_with_the_next_attempt": (
            "nack requeue: the message comes back: nothing was delivered"
        ),
        "test_delivery_state_machine": "unacked message(s) never came back",
    },
    "redelivers_acked": {
        "test_acked_messages_never_come_back": "ack is final: an acked message was delivered again",
        "test_delivery_state_machine": "came back after it was acked while draining",
    },
    "reorders": {
        "test_fifo_for_one_consumer": (
            "FIFO: one consumer sees messages in publish order; got bodies"
        ),
    },
    "leaks_across_topics": {
        "test_topics_are_isolated": "topic isolation: a topic received another topic's message",
    },
    "ignores_visibility_timeout": {
        "test_unsettled_delivery_comes_back_after_the_visibility_timeout": (
            "an unsettled delivery comes back after the visibility timeout: only 0 of 1"
        ),
        "test_late_settle_does_not_touch_the_new_holders_delivery[each]": (
            "the hung consumer's leases run out and the messages go to another consumer"
        ),
        "test_lease_holds_for_the_whole_visibility_timeout[1]": (
            "not handed out again the moment its 0.5s lease ran out"
        ),
        "test_delivery_state_machine": "unacked message(s) never came back",
    },
    "hands_out_leases_early": {
        "test_lease_holds_for_the_whole_visibility_timeout[1]": (
            "handed out again before its lease ran out"
        ),
    },
    "holds_leases_too_long": {
        "test_lease_holds_for_the_whole_visibility_timeout[3]": (
            "not handed out again the moment its"
        ),
    },
    "extend_keeps_the_old_deadline": {
        "test_extend_moves_the_deadline[timeout]": (
            "extend: the lease runs from the extend call: handed out again before"
        ),
    },
    "extend_ignores_expiry": {
        "test_extend_after_the_lease_ran_out_raises": "renewed a lease that had run out",
        "test_late_settle_does_not_touch_the_new_holders_delivery[each]": (
            "a late extend did not raise StaleDelivery"
        ),
    },
    "batch_ack_settles_only_the_first": {
        "test_batch_settlement_settles_each_delivery_once": "still in flight",
    },
    "late_reject_dead_letters": {
        "test_late_settle_does_not_touch_the_new_holders_delivery[each]": (
            "a late reject dead-lettered the message"
        ),
        "test_late_settle_does_not_touch_the_new_holders_delivery[batch]": (
            "after its new holder's ack, or was dead-lettered"
        ),
    },
    "late_requeue_duplicates": {
        "test_late_settle_does_not_touch_the_new_holders_delivery[each]": (
            "the message came back after a late requeue"
        ),
    },
    "reject_requeues_under_max_deliveries": {
        "test_nack_without_requeue_dead_letters_at_once[3]": (
            "nack(requeue=False): the message came back"
        ),
    },
    "dead_letters_lose_headers": {
        "test_nack_without_requeue_dead_letters_at_once[None]": "the headers were lost",
        "test_max_deliveries_then_dead_letter": "the headers were lost",
    },
    "groups_share_requeues": {
        "test_groups_do_not_affect_each_other": (
            "group independence: another group's settlements changed what this group received"
        ),
    },
    "latest_means_earliest": {
        "test_new_group_start_position[latest]": "start=latest: a new group starts where it says",
    },
    "start_rewinds_existing_groups": {
        "test_start_applies_to_a_new_group_only": (
            "start only places a new group: the group was rewound"
        ),
    },
    "loses_content_type": {
        "test_every_body_kind_and_size_survives[custom content type]": (
            "content type 'application/octet-stream', not 'application/x-protobuf'"
        ),
    },
    "truncates_large_bodies": {
        "test_every_body_kind_and_size_survives[3 MiB of bytes]": "the bytes changed",
    },
    "forgets_publish_time": {
        "test_every_body_kind_and_size_survives[empty bytes]": (
            "published_at 0.0 is not the publish time"
        ),
    },
    "purges_prefixed_topics": {
        "test_purge_removes_only_this_topics_waiting_messages": "another topic lost messages",
    },
    "purge_drops_in_flight": {
        "test_purge_removes_only_this_topics_waiting_messages": (
            "purge took a delivery that was already handed out"
        ),
    },
    "inspect_counts_prefixed_topics": {
        "test_inspect_counts_are_per_topic": "inspect is scoped: length 10",
    },
    "inspect_miscounts_in_flight": {
        "test_inspect_counts_are_per_topic": "inspect is scoped: in_flight 1",
        "test_delivery_state_machine": "inspect counts what is in flight: in_flight is 1",
    },
    "counts_settled_dead_letters": {
        "test_dead_lettered_counts_the_dead_letters_not_yet_dealt_with": (
            "dead_lettered is still 3"
        ),
    },
    "ignores_maxlen": {
        "test_maxlen_caps_the_topic_dropping_the_oldest": "maxlen caps the topic: 300 messages",
    },
    "patterns_match_prefixes": {
        "test_pattern_glob_syntax[room-room:a-False]": (
            "glob syntax: 'room' does not match 'room:a': unexpectedly delivered"
        ),
    },
    "keeps_prefetched_on_close": {
        "test_leaving_consume_hands_back_prefetched_deliveries": (
            "leaving consume hands back what it prefetched: only 0 of 3"
        ),
    },
    "lists_no_topics": {
        "test_topics_and_the_oldest_waiting_age": "holds messages but was not listed",
    },
    "lists_no_delayed_only_topics": {
        "test_a_topic_holding_only_delayed_messages_is_listed": (
            "holds a delayed message but was not listed"
        ),
    },
    "stale_waiting_age": {
        "test_topics_and_the_oldest_waiting_age": "nothing waits, but the oldest waits 1.0 s",
    },
    "accepts_undeclared_capabilities": {
        "test_missing_capabilities_raise_unsupported": "PATTERNS'] was accepted",
    },
    "delivers_delayed_early": {
        "test_a_delayed_nack_comes_back_when_due_not_before[0.3]": (
            "a nack with delay=0.3 comes back when due: handed out again before"
        ),
        "test_a_delayed_publish_is_delivered_when_due_not_before[at-0.3]": (
            "a publish with at 0.3s ahead is delivered when due: handed out again before"
        ),
        "test_random_delays_come_out_in_due_order": "none before it is due",
    },
    "ignores_nack_delay": {
        "test_a_delayed_nack_comes_back_when_due_not_before[0.3]": (
            "another consumer got it at once, before it was due"
        ),
    },
    "loses_delayed_publishes": {
        "test_a_delayed_publish_is_delivered_when_due_not_before[at-0.3]": (
            "a publish with at 0.3s ahead is delivered when due: not handed out again the moment"
        ),
        "test_random_delays_come_out_in_due_order": "only 0 of",
    },
    "forgets_delayed_attempts": {
        "test_a_delayed_nack_comes_back_when_due_not_before[0.3]": "attempts are counted",
    },
    "ignores_nack_reason": {
        "test_a_reject_reason_is_recorded_on_the_dead_letter": (
            "x-dead-letter-reason is 'rejected'"
        ),
        "test_a_nack_reason_is_recorded_on_the_dead_letter": (
            "x-dead-letter-reason is 'max_deliveries'"
        ),
    },
    "lists_no_dead_letter_topics": {
        "test_topics_lists_dead_letter_topics": "holds a dead letter but was not listed",
    },
    "ignores_prefetch_bytes": {
        "test_prefetch_bytes_bounds_a_fetch_by_size": "the first fetch brought 10 messages",
    },
    "pattern_subscriptions_compete": {
        "test_pattern_subscriptions_without_a_group_each_get_every_message": (
            "each get every message (another broker's): only 0 of 3"
        ),
    },
    "reverses_delayed_batch": {
        "test_a_delayed_batch_comes_out_in_the_order_given": "came out as [4, 3, 2, 1, 0]",
    },
    "releases_all_held_on_first_due": {
        "test_random_delays_come_out_in_due_order": "none before it is due: one came before",
    },
    "dead_letters_lose_custom_content_type": {
        "test_a_dead_letter_keeps_a_custom_content_type[rejected]": (
            "the content type changed from 'application/x-protobuf'"
        ),
        "test_a_dead_letter_keeps_a_custom_content_type[max_deliveries]": (
            "the content type changed from 'application/x-protobuf'"
        ),
    },
    "broker_close_keeps_prefetched": {
        "test_closing_a_broker_hands_back_what_its_subscriptions_prefetched": (
            "what its subscriptions prefetched (subscription 1): only 0 of 3"
        ),
    },
    "delayed_retry_dies_with_consumer": {
        "test_a_delayed_nack_survives_its_consumer_closing": (
            "a delayed retry survives its consumer closing: not handed out again"
        ),
    },
    "delayed_publish_dies_with_publisher": {
        "test_a_delayed_publish_survives_its_publisher_closing": (
            "a delayed publish survives its publisher closing: not handed out again"
        ),
    },
    "drops_fetched_on_close": {
        "test_closing_during_a_receive_hands_back_what_it_fetched[subscription]": (
            "hands back what it fetched: only 0 of 10"
        ),
        "test_closing_during_a_receive_hands_back_what_it_fetched[broker]": (
            "hands back what it fetched: only 0 of 10"
        ),
    },
    "acked_come_back_late": {
        "test_acked_messages_never_come_back": "ack is final: an acked message was delivered again",
        "test_delivery_state_machine": "a message came back after the drain acked everything",
    },
    "extend_ignores_seconds": {
        "test_extend_moves_the_deadline[twice]": (
            "extend: the lease runs from the extend call: handed out again before"
        ),
    },
    "reject_drops_reason": {
        "test_a_reject_reason_is_recorded_on_the_dead_letter": (
            "x-dead-letter-reason is 'rejected'"
        ),
    },
    "pattern_start_always_latest": {
        "test_pattern_subscription_start[earliest]": (
            "a pattern subscription starts where it says (earliest): only 2 of 4"
        ),
    },
    "pattern_default_earliest": {
        "test_pattern_subscription_start[default]": (
            "a pattern subscription starts where it says (default): it read before its start"
        ),
    },
    "stale_names_every_delivery": {
        "test_late_settle_does_not_touch_the_new_holders_delivery[batch]": (
            "StaleDelivery names exactly the stale deliveries"
        ),
    },
    "waiting_age_counts_in_flight": {
        "test_topics_and_the_oldest_waiting_age": (
            "nothing waits, but the oldest waits 0.5 s (while 2 deliveries are handed out"
        ),
    },
    "delayed_publish_restamped": {
        "test_a_delayed_publish_keeps_its_publish_time": (
            "a delayed publish keeps its publish time: published_at is +3600"
        ),
    },
    "oldest_in_flight_always_none": {
        "test_the_oldest_in_flight_age": (
            "the oldest delivery has been out 1.0 s, but inspect says 12345.0 s"
        ),
    },
    "delayed_retry_counts_in_flight": {
        "test_a_delayed_retry_is_scheduled_not_in_flight": (
            "inspect says scheduled=1, in_flight=2, the groups' pending=2, not 1, 1, 1"
        ),
    },
    "requeue_reason_dropped_without_delay": {
        "test_a_requeue_reason_is_recorded_at_max_deliveries": (
            "x-dead-letter-reason is 'max_deliveries', not 'TimeoutError: try"
        ),
    },
    "requeue_reason_dropped_without_delay_capability": {
        "test_a_requeue_reason_is_recorded_at_max_deliveries": (
            "x-dead-letter-reason is 'max_deliveries', not 'TimeoutError: try"
        ),
    },
    "extend_never_shortens": {
        "test_extend_can_shorten_the_lease": (
            "extend can shorten the lease: it runs from the extend call: not handed out "
            "again the moment its 0.5s lease ran out"
        ),
    },
    "lists_only_waiting_topics": {
        "test_topics_lists_a_topic_whose_messages_are_all_handed_out": (
            "has a delivery out, unsettled, but was not listed"
        ),
    },
    "delayed_publish_to_first_group_only": {
        "test_delays_keep_to_their_groups": (
            "a due delayed publish reaches every group: only 0 of 1"
        ),
    },
    "delayed_retry_leaks_to_other_groups": {
        "test_delays_keep_to_their_groups": (
            "a delayed retry stays in its own group, but the other group got [('now', 1)]"
        ),
    },
    "reject_counts_one_delivery": {
        "test_a_rejected_dead_letter_counts_every_delivery": (
            "delivered 3 times, rejected, and the dead letter says x-deliveries '1'"
        ),
    },
    "lag_always_zero": {
        "test_a_groups_lag_and_its_consumers_pending": (
            "before any receive, the group has not been handed 3, but its lag is 0"
        ),
    },
    "new_groups_default_to_latest": {
        "test_new_group_start_position[default]": (
            "start=None (earliest): a new group starts where it says: only 1 of 3"
        ),
    },
    "topic_names_merge": {
        "test_every_valid_name_is_a_topic_of_its_own": "got the message of",
    },
    "groups_share_one_line": {
        "test_fanout_every_group_gets_every_message": (
            "fan-out: every group gets every message: only 0 of 1"
        ),
    },
    "earliest_starts_where_others_are": {
        "test_new_group_replays_history": (
            "replay: a new group can read the topic's history from the start: only 0 of 3"
        ),
    },
    "expiry_ignores_max_deliveries": {
        "test_expiry_past_max_deliveries_dead_letters": (
            "a lease that runs out on the last allowed delivery dead-letters: it was redelivered"
        ),
    },
    "drops_what_nobody_reads": {
        "test_no_loss": "no loss: only 0 of",
        "test_new_subscriber_sees_what_its_backend_promises": "pub/sub: a subscriber: only 1 of 2",
    },
    "pattern_deliveries_name_the_pattern": {
        "test_pattern_subscription_gets_matching_topics_only": (
            "patterns: a delivery names the concrete topic it was published to"
        ),
    },
    "accepts_undeclared_delay": {
        "test_a_backend_without_delay_refuses_one": (
            "a backend without DELAY refuses a delay: publish(delay=5) was accepted"
        ),
    },
    "publishes_batch_one_by_one": {
        "test_unserializable_body_raises_and_publishes_nothing": (
            "bad input: a refused publish still sent a message"
        ),
    },
    "default_group_per_subscriber": {
        "test_competing_consumers_split_without_overlap": (
            "each message goes to one consumer of the default group: both got"
        ),
    },
    "header_names_folded": {
        "test_round_trip_keeps_body_headers_and_id": "arrived as {'trace-id': 'b'",
    },
    "truncates_long_names": {
        "test_the_longest_names_are_topics_of_their_own": (
            "the longest names are topics of their own: a subscriber of the topic ending "
            "'nnnnnnna' got the message of the topic ending 'nnnnnnnb'"
        ),
    },
    "patterns_skip_dead_letter_topics": {
        "test_a_pattern_matches_the_dead_letter_topics_of_its_topics": (
            "a pattern matches the dead-letter topics of its topics: bkc.glob-dlq."
        ),
    },
    "settling_deletes_for_every_group": {
        "test_groups_do_not_affect_each_other": "group independence: a group lost messages",
    },
    "last_level_dead_letters_deeper": {
        "test_the_last_dead_letter_level_is_its_own_dead_letter_topic": (
            "the dead letter did not come back"
        ),
    },
    "hands_out_keepalives": {
        "test_receive_returns_none_when_nothing_comes": (
            "receive returns None when nothing comes: receive(timeout=0) on an empty topic "
            "returned <Delivery id=keepalive"
        ),
    },
    "zero_max_deliveries_means_no_limit": {
        "test_bad_options_are_refused_naming_the_valid_ones": (
            "options: a bad value is refused: max_deliveries=0 was accepted"
        ),
    },
    "driver_error_on_close": {
        "test_closing_during_a_receive_strands_nothing[subscription]": (
            "closing: the receive under way should end with BrokerClosed, got [OSError("
        ),
        "test_closing_during_a_receive_strands_nothing[broker]": (
            "closing: the receive under way should end with BrokerClosed, got [OSError("
        ),
    },
    "folds_text_types": {
        "test_every_body_kind_and_size_survives[text of another text type]": (
            "content type 'text/plain; charset=utf-8', not 'text/csv'"
        ),
        "test_every_body_kind_and_size_survives[text in another charset]": (
            "content type 'text/plain; charset=utf-8', not 'text/plain; charset=latin-1'"
        ),
    },
    "patterns_swap_reversed_ranges": {
        "test_pattern_glob_syntax[v[9-0]-v5-False]": "glob syntax: 'v[9-0]' does not match 'v5'",
        "test_pattern_glob_syntax[v[!9-0]-v5-True]": "glob syntax: 'v[!9-0]' matches 'v5'",
    },
    "delayed_retry_past_max_deliveries": {
        "test_a_nack_reason_is_recorded_on_the_dead_letter": (
            "a delayed nack at max_deliveries dead-letters at once, but inspect counts 1 held"
        ),
    },
    "last_level_drops_past_max_deliveries": {
        "test_the_last_dead_letter_level_is_its_own_dead_letter_topic": (
            "the dead letter of a message past max_deliveries did not come back"
        ),
    },
    "dead_lettered_counts_any_group": {
        "test_dead_lettered_counts_by_the_groups_that_deal_with_them": (
            "a group 'tail' read and acked all 3 dead letters, and dead_lettered is 0, not 3"
        ),
    },
    "consumers_named_by_connection": {
        "test_a_groups_lag_and_its_consumers_pending": (
            "the consumer 'lag-holder' holds one delivery, but the group lists its consumers "
            "as {'conn-0': 1}"
        ),
    },
    "delayed_publish_drops_headers": {
        "test_a_held_message_arrives_as_it_was_published": (
            "a delayed publish arrives exactly as it was published: headers"
        ),
    },
    "delayed_retry_loses_content_type": {
        "test_a_held_message_arrives_as_it_was_published": (
            "a delayed retry arrives exactly as it was published: content type "
            "'application/octet-stream', not 'application/x-protobuf'"
        ),
        # Its retry comes back as bytes: compared, not sorted against a str (a TypeError).
        "test_delays_keep_to_their_groups": (
            "delays keep to their groups: the group that nacked got [('later', 1), (b'now', 2)]"
        ),
    },
    "dead_lettered_ignores_the_dlq_group": {
        "test_dead_lettered_counts_by_the_groups_that_deal_with_them": (
            "brokerkit-dlq read and acked 2 of 3 dead letters (the default group none), and "
            "dead_lettered is 3, not 1"
        ),
    },
    # Its lag is None, GroupInfo's default: no declaration that it cannot be told.
    "dead_lettered_never_drops_without_lag": {
        "test_dead_lettered_counts_the_dead_letters_not_yet_dealt_with": (
            "dead_lettered is still 3"
        ),
        "test_dead_lettered_counts_by_the_groups_that_deal_with_them": (
            "brokerkit-dlq read and acked 2 of 3 dead letters (the default group none), and "
            "dead_lettered is 3, not 1"
        ),
    },
}

_SUITE = """
import uuid

import pytest

from brokerkit import ManualClock
from brokerkit.contracts import BrokerContract, ManualTimeline
from tests.broken_backends import BROKEN_BACKENDS


class Broken(BrokerContract):
    backend = None

    @pytest.fixture
    def clock(self):
        return ManualClock()

    @pytest.fixture
    def timeline(self, clock):
        return ManualTimeline(clock)

    @pytest.fixture
    def make_broker(self, clock):
        url = f"memory://teeth-{uuid.uuid4().hex}"
        return lambda **options: self.backend.from_url(url, clock=clock, **options)


for _name, _cls in BROKEN_BACKENDS.items():
    globals()[f"Test_{_name}"] = type(f"Test_{_name}", (Broken,), {"backend": _cls})
"""


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], tuple[str, str]]:
    """Run each contract test named in EXPECTED_FAILURES against its broken backend,
    once, in a fresh interpreter under the derandomized, non-shrinking smoke profile."""
    directory: Path = tmp_path_factory.mktemp("teeth")
    suite = directory / "test_teeth_suite.py"
    suite.write_text(textwrap.dedent(_SUITE))
    (directory / "pytest.ini").write_text("[pytest]\n")
    report = directory / "report.xml"
    node_ids = [
        f"test_teeth_suite.py::Test_{backend}::{test}"
        for backend, expected in EXPECTED_FAILURES.items()
        for test in expected
    ]
    env = {**os.environ, PROFILE_ENV: "smoke", "PYTHONPATH": str(ROOT)}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            *node_ids,
            "-p",
            "no:cacheprovider",
            "-q",
            f"--junitxml={report}",
        ],
        cwd=directory,
        env=env,
        capture_output=True,
        timeout=300,
        check=False,
    )
    found: dict[tuple[str, str], tuple[str, str]] = {}
    for case in ElementTree.parse(report).getroot().iter("testcase"):
        backend = case.get("classname", "").rpartition(".Test_")[2]
        problem = case.find("failure")
        if problem is None:
            problem = case.find("error")
        outcome = "passed" if problem is None else problem.tag
        # The assertion's own message, not the report's listing of the test's source.
        text = "" if problem is None else problem.get("message", "")
        found[(backend, case.get("name", ""))] = (outcome, text)
    return found


@pytest.mark.parametrize(
    ("backend", "test", "reason"),
    [
        (backend, test, reason)
        for backend, expected in EXPECTED_FAILURES.items()
        for test, reason in expected.items()
    ],
)
def test_broken_backend_fails_the_contract_for_the_right_reason(
    outcomes: dict[tuple[str, str], tuple[str, str]], backend: str, test: str, reason: str
) -> None:
    outcome, text = outcomes.get((backend, test), ("not run", ""))
    assert outcome == "failure", f"{backend} passed {test}: the suite has no teeth there"
    assert reason in text, f"{backend} failed {test}, but not for {reason!r}:\n{text[-2000:]}"


def test_every_broken_backend_is_caught() -> None:
    assert set(EXPECTED_FAILURES) == set(BROKEN_BACKENDS)


def test_the_plugin_guide_lists_every_contract_test_and_counts_the_broken_backends() -> None:
    """docs/plugins.md has a row for each contract test, and says how many broken
    backends the suite is run against."""
    from brokerkit.contracts import BrokerContract

    guide = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
    rows = set(re.findall(r"^\|.*\| `(test_\w+)` \|", guide, re.MULTILINE))
    tests = {name for name in dir(BrokerContract) if name.startswith("test_")}
    assert tests - rows == set(), "contract tests without a row in docs/plugins.md"
    assert rows - tests == set(), "rows in docs/plugins.md naming no contract test"
    counted = re.search(r"run it against (\d+) deliberately broken", guide)
    assert counted is not None, "docs/plugins.md no longer counts the broken backends"
    assert int(counted.group(1)) == len(BROKEN_BACKENDS), (
        f"docs/plugins.md counts {counted.group(1)} broken backends, "
        f"tests/broken_backends.py has {len(BROKEN_BACKENDS)}"
    )
