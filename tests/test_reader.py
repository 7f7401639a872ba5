"""One shard's state machine, stepped by hand against the simulator: no threads, no sleeps."""

from __future__ import annotations

import logging
import math
import threading
import weakref
from typing import Any

import pytest

from ddbstreams import (
    Checkpoint,
    CheckpointStoreError,
    ConsumerSettings,
    InMemoryCheckpointStore,
    Record,
    TrimmedDataError,
    TrimmedDataGap,
)
from ddbstreams._client import StreamsAPI
from ddbstreams._lineage import ShardInfo
from ddbstreams._reader import ShardReader
from ddbstreams.testing import StreamSimulator

NO_STOP = threading.Event()


def item(n: int) -> dict[str, Any]:
    return {"email": f"user{n}@example.com", "order_number": f"2023/01/01#{n}", "order_amount": n}


class Harness:
    def __init__(self, sim: StreamSimulator, **settings: Any) -> None:
        self.sim = sim
        self.store = InMemoryCheckpointStore()
        self.seen: list[str] = []
        self.fail_next = 0
        self.gaps: list[TrimmedDataGap] = []
        self.settings = ConsumerSettings(**{"checkpoint_every": 2, **settings})
        self.api = StreamsAPI(sim, sim, attempts=3, sleep=lambda _: None)

    def handler(self, record: Record) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise RuntimeError("handler failure")
        self.seen.append(record.sequence_number)

    def reader(
        self, checkpoint: Checkpoint | None = None, start: str = "TRIM_HORIZON"
    ) -> ShardReader:
        described = self.sim.describe_stream(StreamArn=self.sim.stream_arn)
        shard = ShardInfo.from_wire(described["StreamDescription"]["Shards"][0])
        return ShardReader(
            shard=shard,
            stream_arn=self.sim.stream_arn,
            api=self.api,
            handler=self.handler,
            store=self.store,
            settings=self.settings,
            checkpoint=checkpoint,
            start_position=start,
            on_data_loss=self.gaps.append,
            clock=lambda: self.sim.now,
            wall_clock=self.sim.wall_time,
            random_fraction=lambda: 1.0,
        )


def test_delivers_in_order_and_checkpoints_every_n() -> None:
    sim = StreamSimulator()
    written = [sim.insert(item(n)) for n in range(5)]
    h = Harness(sim)
    reader = h.reader()
    assert reader.step(NO_STOP) == 0.0
    assert h.seen == written
    # checkpoint_every=2: written after the 2nd and 4th record; the 5th waits for its time.
    assert h.store.load(sim.stream_arn, reader.shard_id) == Checkpoint(written[3])
    assert reader.step(NO_STOP) == h.settings.poll_interval  # empty page: wait
    reader.checkpoint()
    assert h.store.load(sim.stream_arn, reader.shard_id) == Checkpoint(written[4])


def test_idle_shard_backs_off_to_the_cap_and_snaps_back_on_records() -> None:
    sim = StreamSimulator()
    h = Harness(sim, poll_interval=0.25, idle_poll_interval_max=1.0)
    reader = h.reader()
    waits = [reader.step(NO_STOP) for _ in range(8)]
    assert waits == [0.25, 0.25, 0.25, 0.25, 0.5, 1.0, 1.0, 1.0]
    sim.insert(item(1))
    assert reader.step(NO_STOP) == 0.0
    # The count of idle pages starts again: 4 at the poll interval before it doubles.
    assert [reader.step(NO_STOP) for _ in range(5)] == [0.25, 0.25, 0.25, 0.25, 0.5]


def test_checkpoint_interval_applies_within_a_page_for_a_slow_handler() -> None:
    sim = StreamSimulator()
    written = [sim.insert(item(n)) for n in range(5)]
    h = Harness(sim, checkpoint_every=100, checkpoint_interval=5.0)
    reader = h.reader()
    checkpoints: list[object] = []

    def slow(record: Record) -> None:
        sim.advance(3)  # each record takes 3 s of (virtual) time
        h.seen.append(record.sequence_number)
        checkpoints.append(h.store.load(sim.stream_arn, reader.shard_id))

    reader._handler = slow
    reader.step(NO_STOP)
    assert h.seen == written
    # Seen from inside the handler: the checkpoint after record 2 (6 s) and record 4 (12 s).
    begun = Checkpoint(None, begun_at=sim.wall_time() - 15)  # at the start: 5 records ago
    assert checkpoints == [
        begun,  # begun, nothing delivered yet
        begun,
        Checkpoint(written[1]),
        Checkpoint(written[1]),
        Checkpoint(written[3]),
    ]


def test_checkpoint_interval_applies_while_idle() -> None:
    sim = StreamSimulator()
    written = sim.insert(item(1))
    h = Harness(sim, checkpoint_every=100, checkpoint_interval=5.0)
    reader = h.reader()
    reader.step(NO_STOP)
    assert h.store.load(sim.stream_arn, reader.shard_id) == Checkpoint(
        None, begun_at=0.0 + sim.wall_time()
    )  # begun
    sim.advance(6)
    reader.step(NO_STOP)
    assert h.store.load(sim.stream_arn, reader.shard_id) == Checkpoint(written)


def test_handler_error_keeps_the_record_and_backs_off(caplog: pytest.LogCaptureFixture) -> None:
    sim = StreamSimulator()
    written = [sim.insert(item(n)) for n in range(3)]
    h = Harness(sim, handler_retry_initial=0.5, handler_retry_max=1.5)
    reader = h.reader()
    h.fail_next = 3
    delays = [reader.step(NO_STOP) for _ in range(3)]
    assert delays == [0.5, 1.0, 1.5]  # doubling, capped (jitter pinned to its top)
    failures = [r for r in caplog.records if "the handler raised" in r.getMessage()]
    assert len(failures) == 3 and failures[0].exc_info is not None  # logged with traceback
    assert h.seen == []
    assert h.store.load(sim.stream_arn, reader.shard_id) == Checkpoint(
        None, begun_at=sim.wall_time()
    )
    reader.step(NO_STOP)
    assert h.seen == written  # nothing skipped, order kept


def test_expired_iterator_resumes_after_the_last_delivered_record() -> None:
    sim = StreamSimulator()
    first = [sim.insert(item(n)) for n in range(3)]
    h = Harness(sim)
    reader = h.reader()
    reader.step(NO_STOP)
    second = [sim.insert(item(n)) for n in range(3, 5)]
    sim.advance(901)  # the held iterator is now older than 15 minutes
    assert reader.step(NO_STOP) == 0.0  # expiry noticed, new iterator next step
    reader.step(NO_STOP)
    assert h.seen == first + second  # no replay from the start, no gap


def test_resumes_after_a_checkpoint() -> None:
    sim = StreamSimulator()
    written = [sim.insert(item(n)) for n in range(4)]
    h = Harness(sim)
    reader = h.reader(checkpoint=Checkpoint(written[1]))
    reader.step(NO_STOP)
    assert h.seen == written[2:]


def test_trimmed_checkpoint_raises_by_default_naming_shard_and_range() -> None:
    sim = StreamSimulator()
    old = [sim.insert(item(n)) for n in range(3)]
    sim.advance(86400 + 10)
    kept = sim.insert(item(9))
    h = Harness(sim)
    reader = h.reader(checkpoint=Checkpoint(old[0]))
    with pytest.raises(TrimmedDataError) as caught:
        reader.step(NO_STOP)
    assert caught.value.shard_id == reader.shard_id
    assert caught.value.after_sequence_number == old[0]
    assert old[0] in str(caught.value)
    assert "restart_from_trim_horizon" in str(caught.value)
    assert "may have been" in str(caught.value)  # the service cannot say for sure
    assert h.seen == []
    assert sim.records(reader.shard_id)[-1]["dynamodb"]["SequenceNumber"] == kept


def test_trimmed_checkpoint_opt_in_reports_the_gap_and_goes_on() -> None:
    sim = StreamSimulator()
    old = [sim.insert(item(n)) for n in range(3)]
    sim.advance(86400 + 10)
    kept = [sim.insert(item(n)) for n in range(10, 12)]
    h = Harness(sim, trimmed_data="restart_from_trim_horizon")
    reader = h.reader(checkpoint=Checkpoint(old[0]))
    reader.step(NO_STOP)
    reader.step(NO_STOP)
    assert [(g.shard_id, g.after_sequence_number) for g in h.gaps] == [(reader.shard_id, old[0])]
    assert "may have been trimmed" in h.gaps[0].reason
    assert h.seen == kept


def test_throttling_is_retried_then_backed_off_without_losing_records(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sim = StreamSimulator()
    written = [sim.insert(item(n)) for n in range(2)]
    h = Harness(sim)
    reader = h.reader()
    sim.throttle("GetRecords", times=5)  # more than the 3 request attempts
    delay = reader.step(NO_STOP)
    assert delay > 0
    assert reader.failures == 1
    reader.step(NO_STOP)
    assert h.seen == written
    assert sim.calls["GetRecords"] == 6


def test_shard_end_with_records_on_the_last_page_delivers_then_finishes() -> None:
    sim = StreamSimulator(records_with_end=True)
    written = [sim.insert(item(n)) for n in range(3)]
    h = Harness(sim)
    reader = h.reader()
    sim.rollover()
    reader.step(NO_STOP)
    assert h.seen == written
    assert reader.finished
    assert h.store.load(sim.stream_arn, reader.shard_id) == Checkpoint(written[-1], finished=True)


def test_shard_end_announced_by_an_empty_page_finishes_after_it() -> None:
    sim = StreamSimulator(records_with_end=False)
    written = [sim.insert(item(n)) for n in range(3)]
    h = Harness(sim)
    reader = h.reader()
    sim.rollover()
    reader.step(NO_STOP)  # the records, with a NextShardIterator still
    assert h.seen == written and not reader.finished
    reader.step(NO_STOP)  # an empty page without one: the end
    assert reader.finished
    assert h.store.load(sim.stream_arn, reader.shard_id) == Checkpoint(written[-1], finished=True)


def test_stop_between_records_keeps_the_rest_for_later() -> None:
    sim = StreamSimulator()
    written = [sim.insert(item(n)) for n in range(3)]
    h = Harness(sim)
    stop = threading.Event()
    reader = h.reader()

    def stop_after_first(record: Record) -> None:
        h.seen.append(record.sequence_number)
        stop.set()

    reader._handler = stop_after_first
    reader.step(stop)
    reader.checkpoint()
    assert h.seen == written[:1]
    assert h.store.load(sim.stream_arn, reader.shard_id) == Checkpoint(written[0])


def test_latest_start_skips_existing_records() -> None:
    sim = StreamSimulator()
    sim.insert(item(1))
    sim.advance(1)  # before the start
    h = Harness(sim)
    reader = h.reader(start="LATEST")
    reader.step(NO_STOP)
    new = sim.insert(item(2))
    reader.step(NO_STOP)
    assert h.seen == [new]


class _Page(list[dict[str, Any]]):
    """A list of records that can be watched with a weak reference."""


def test_the_delivered_page_is_let_go_before_the_next_is_fetched() -> None:
    sim = StreamSimulator()
    for n in range(4):
        sim.insert(item(n))
    pages: list[weakref.ref[_Page]] = []
    alive_at_fetch: list[bool] = []

    class WatchedPages:
        def __getattr__(self, name: str) -> Any:
            return getattr(sim, name)

        def get_records(self, **kwargs: Any) -> dict[str, Any]:
            alive_at_fetch.append(any(page() is not None for page in pages))
            answer = sim.get_records(**kwargs)
            page = _Page(answer["Records"])
            pages.append(weakref.ref(page))
            return {**answer, "Records": page}

    h = Harness(sim, batch_size=2)
    h.api = StreamsAPI(WatchedPages(), sim, attempts=1)
    reader = h.reader()
    for _ in range(3):
        reader.step(NO_STOP)
    assert len(h.seen) == 4
    assert alive_at_fetch == [False, False, False]  # a slow handler holds one page, not two


def test_a_body_cut_short_is_read_again_after_the_last_delivered_record(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A real botocore client whose answers are served from its before-send event."""
    import json

    import boto3
    from botocore.awsrequest import AWSResponse

    sequence_numbers = [str(10**20 + n) for n in range(4)]
    wire = [
        {"eventName": "INSERT", "dynamodb": {"SequenceNumber": n, "Keys": {}}}
        for n in sequence_numbers
    ]
    first_page = json.dumps({"NextShardIterator": "it-1", "Records": wire}).encode()
    answers = {
        "it-0": first_page[: first_page.index(sequence_numbers[2].encode())],  # cut in record 3
        f"after-{sequence_numbers[1]}": json.dumps(
            {"Records": wire[2:]}
        ).encode(),  # then the shard ends
    }
    iterator_requests: list[dict[str, Any]] = []

    class Raw:
        def __init__(self, body: bytes) -> None:
            self.body = body

        def stream(self, **_: Any) -> Any:
            yield self.body

    def answer(request: Any, **_: Any) -> AWSResponse:
        call = json.loads(request.body)
        if "ShardIterator" in call:
            body = answers[call["ShardIterator"]]
        else:
            iterator_requests.append(call)
            after = call.get("SequenceNumber")
            body = json.dumps({"ShardIterator": f"after-{after}" if after else "it-0"}).encode()
        return AWSResponse(request.url, 200, {}, Raw(body))

    client = boto3.client(
        "dynamodbstreams", region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s"
    )
    client.meta.events.register("before-send.dynamodb-streams", answer)
    seen: list[str] = []
    reader = ShardReader(
        shard=ShardInfo("shardId-00000001700000000000-test0001", None, sequence_numbers[0], None),
        stream_arn="arn:aws:dynamodb:us-east-1:1:table/t/stream/s",
        api=StreamsAPI(client, attempts=1),
        handler=lambda record: seen.append(record.sequence_number),
        store=InMemoryCheckpointStore(),
        settings=ConsumerSettings(handler_retry_initial=0.5),
        checkpoint=None,
        start_position="TRIM_HORIZON",
        random_fraction=lambda: 1.0,
    )
    assert reader.step(NO_STOP) == 0.5  # two records delivered, then the cut: back off
    assert seen == sequence_numbers[:2]
    assert "not a valid page" in caplog.text
    while not reader.finished:
        reader.step(NO_STOP)
    assert seen == sequence_numbers  # none lost, none twice
    assert iterator_requests[-1]["ShardIteratorType"] == "AFTER_SEQUENCE_NUMBER"
    assert iterator_requests[-1]["SequenceNumber"] == sequence_numbers[1]


class AnswersOnce:
    """A client without botocore's hooks (an instrumentation wrapper, say) whose first
    GetRecords answer is what botocore makes of a cut or HTML 200 body: ``{}``."""

    def __init__(self, sim: StreamSimulator, bad_answer: dict[str, Any]) -> None:
        self.sim, self.bad_answer, self.answered = sim, bad_answer, False
        self.describe_stream, self.get_shard_iterator = sim.describe_stream, sim.get_shard_iterator

    def get_records(self, **kwargs: Any) -> dict[str, Any]:
        if not self.answered:
            self.answered = True
            self.sim.get_records(**kwargs)  # the records were there all along
            return self.bad_answer
        return self.sim.get_records(**kwargs)


@pytest.mark.parametrize("bad_answer", [{}, {"ResponseMetadata": {"HTTPStatusCode": 200}}])
def test_an_answer_without_records_is_malformed_never_a_shard_end(
    bad_answer: dict[str, Any],
) -> None:
    sim = StreamSimulator()
    written = [sim.insert(item(n)) for n in range(3)]
    sim.rollover()  # closed: a wrongly seen end would checkpoint it finished, 0 delivered
    h = Harness(sim)
    h.api = StreamsAPI(AnswersOnce(sim, bad_answer), sim, attempts=1)
    reader = h.reader()
    reader.step(NO_STOP)
    assert not reader.finished
    assert reader.failure_kind == "malformed"
    assert h.store.load(sim.stream_arn, reader.shard_id) == Checkpoint(
        None, begun_at=sim.wall_time()
    )
    while not reader.finished:
        reader.step(NO_STOP)
    assert h.seen == written


@pytest.mark.parametrize("interruption", ["expired iterator", "malformed page"])
def test_a_latest_start_is_pinned_so_an_interruption_does_not_skip_records(
    interruption: str,
) -> None:
    sim = StreamSimulator()
    for n in range(2):
        sim.insert(item(n))  # before the start: not owed
    sim.advance(3600)
    h = Harness(sim)
    if interruption == "malformed page":
        client = AnswersOnce(sim, {})
        client.answered = True  # armed below, after the first (empty) LATEST page
        h.api = StreamsAPI(client, sim, attempts=1)
    reader = h.reader(start="LATEST")
    assert reader.step(NO_STOP) == h.settings.poll_interval  # LATEST: nothing yet
    stored = h.store.load(sim.stream_arn, reader.shard_id)
    assert stored is not None and stored.latest_at == sim.wall_time()  # the pin, saved first
    written = [sim.insert(item(n)) for n in range(2, 5)]
    if interruption == "expired iterator":
        sim.advance(901)  # a host suspended past the iterator's 15 minutes
    else:
        client.answered = False
    reader.step(NO_STOP)  # the interruption
    assert h.seen == []
    for _ in range(3):
        reader.step(NO_STOP)
    assert h.seen == written  # from the pin, not from a new LATEST


def test_a_latest_pin_is_kept_by_the_store_until_a_record_is_checkpointed() -> None:
    store = InMemoryCheckpointStore()
    store.save("arn", "s", Checkpoint(None, latest_at=100.0))
    store.save("arn", "s", Checkpoint(None, latest_at=200.0))  # a later pin never wins
    assert store.load("arn", "s") == Checkpoint(None, latest_at=100.0)
    store.save("arn", "s", Checkpoint("5" * 21))
    assert store.load("arn", "s") == Checkpoint("5" * 21)


@pytest.mark.parametrize("policy", ["raise", "restart_from_trim_horizon"])
def test_a_shard_removed_before_it_was_read_to_its_end_is_a_possible_gap(policy: str) -> None:
    sim = StreamSimulator()
    shard_id = sim.open_shard_ids()[0]
    written = [sim.insert(item(n)) for n in range(3)]
    sim.rollover()
    sim.advance(86400 + 60)  # closed a day ago: the shard is removed with its records
    h = Harness(sim, trimmed_data=policy)
    reader = ShardReader(
        shard=ShardInfo(shard_id, None, written[0], written[-1]),
        stream_arn=sim.stream_arn,
        api=h.api,
        handler=h.handler,
        store=h.store,
        settings=h.settings,
        checkpoint=Checkpoint(written[0]),
        start_position="TRIM_HORIZON",
        on_data_loss=h.gaps.append,
        clock=lambda: sim.now,
    )
    if policy == "raise":
        with pytest.raises(TrimmedDataError, match="removed from the stream"):
            reader.step(NO_STOP)
        return
    reader.step(NO_STOP)
    assert reader.finished  # nothing left to read: its children may start
    assert [(g.shard_id, g.after_sequence_number) for g in h.gaps] == [(shard_id, written[0])]
    assert h.store.load(sim.stream_arn, shard_id) == Checkpoint(written[0], finished=True)


# ------------------------------------------------- pinned by mutation testing (docs/mutants.md)


class FlakyStore(InMemoryCheckpointStore):
    """An in-memory store that counts its save calls and fails them while ``failing``."""

    def __init__(self) -> None:
        super().__init__()
        self.failing = False
        self.calls: list[Checkpoint] = []

    def save(self, stream_arn: str, shard_id: str, checkpoint: Checkpoint) -> None:
        self.calls.append(checkpoint)
        if self.failing:
            raise CheckpointStoreError("store unavailable (test)")
        super().save(stream_arn, shard_id, checkpoint)


def test_failures_escalate_to_errors_with_tracebacks_every_threshold(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sim = StreamSimulator()
    written = sim.insert(item(1))
    h = Harness(sim, failures_before_unhealthy=3)
    reader = h.reader()
    h.fail_next = 4
    for _ in range(4):
        reader.step(NO_STOP)
    what = f"the handler raised on record {written}: handler failure"
    assert (reader.failures, reader.failure_kind, reader.last_error) == (4, "handler", what)
    logged = [
        (r.levelno, r.getMessage(), r.exc_info is not None)
        for r in caplog.records
        if "retrying" in r.getMessage()
    ]
    line = f"shard {reader.shard_id}: {what} (handler failure %d in a row%s); retrying"
    assert logged == [
        (logging.WARNING, line % (1, ""), True),  # the first: with its traceback
        (logging.WARNING, line % (2, ""), False),
        (logging.ERROR, line % (3, ": the shard is failing"), True),
        (logging.WARNING, line % (4, ""), False),
    ]
    reader.step(NO_STOP)
    assert (reader.failures, reader.failure_kind, reader.last_error) == (0, None, None)
    assert h.seen == [written]


def test_a_new_kind_of_failure_counts_from_one() -> None:
    sim = StreamSimulator()
    h = Harness(sim)
    reader = h.reader()
    kinds = []
    for code in ["LimitExceededException", "InternalServerError", "ConnectionError"]:
        sim.inject("GetRecords", code, times=3)  # the 3 request attempts of one step
        reader.step(NO_STOP)
        assert reader.last_error is not None
        kinds.append((reader.failure_kind, reader.failures, reader.last_error.split()[0]))
    # last_error is the error's own message when there is nothing to add before it
    assert kinds == [(kind, 1, "GetRecords") for kind in ("throttled", "server", "unreachable")]


def test_the_backoff_is_jittered_between_half_and_all_of_its_ceiling() -> None:
    sim = StreamSimulator()
    sim.insert(item(1))
    h = Harness(sim, handler_retry_initial=0.5, handler_retry_max=2.0)
    reader = h.reader()
    h.fail_next = 2
    reader._random_fraction = lambda: 0.0
    assert reader.step(NO_STOP) == 0.25
    reader._random_fraction = lambda: 0.5
    assert reader.step(NO_STOP) == 0.75


def test_a_store_failing_at_a_shard_s_end_is_retried_after_a_backoff() -> None:
    sim = StreamSimulator(records_with_end=True)
    written = [sim.insert(item(n)) for n in range(2)]
    h = Harness(sim, checkpoint_every=100, handler_retry_initial=0.5)
    h.store = store = FlakyStore()
    reader = h.reader()
    sim.rollover()
    store.failing = True
    assert reader.step(NO_STOP) == 0.5  # delivered, but the end could not be stored
    assert not reader.finished and (reader.failure_kind, reader.failures) == ("store", 1)
    store.failing = False
    assert reader.step(NO_STOP) == 0.0
    assert reader.finished and reader.failure_kind is None
    assert store.load(sim.stream_arn, reader.shard_id) == Checkpoint(written[-1], finished=True)
    saves = len(store.calls)
    reader.checkpoint()  # nothing moved since the end was stored: no write
    assert len(store.calls) == saves
    assert h.seen == written


def test_a_failed_save_is_retried_once_its_backoff_is_over_not_on_every_record() -> None:
    sim = StreamSimulator()
    written = [sim.insert(item(n)) for n in range(3)]
    h = Harness(sim, checkpoint_every=1, handler_retry_initial=0.5)
    h.store = store = FlakyStore()
    reader = h.reader()
    store.failing = True
    reader.step(NO_STOP)
    assert h.seen == written
    # One failed save of a record (besides marking the shard begun); the next waits.
    assert [c for c in store.calls if c.sequence_number] == [Checkpoint(written[0])]
    assert reader.failure_kind == "store"  # still failing: records are not saved
    store.failing = False
    sim.advance(0.5)  # exactly the backoff (its jitter pinned to the top)
    more = sim.insert(item(3))
    reader.step(NO_STOP)
    assert store.load(sim.stream_arn, reader.shard_id) == Checkpoint(more)
    assert reader.failure_kind is None


def test_records_after_a_failed_timed_checkpoint_are_delivered_and_saved() -> None:
    sim = StreamSimulator()
    first = sim.insert(item(1))
    h = Harness(sim, checkpoint_every=2, checkpoint_interval=5.0, handler_retry_initial=0.5)
    h.store = store = FlakyStore()
    reader = h.reader()
    reader.step(NO_STOP)
    store.failing = True
    sim.advance(6)
    reader.step(NO_STOP)  # the timed checkpoint fails
    assert reader.failure_kind == "store"
    store.failing = False
    sim.advance(1)
    second = sim.insert(item(2))
    assert reader.step(NO_STOP) == 0.0
    assert h.seen == [first, second]
    assert store.load(sim.stream_arn, reader.shard_id) == Checkpoint(second)


def test_a_successful_save_lets_delivery_go_on_past_the_unsaved_bound() -> None:
    sim = StreamSimulator()
    written = [sim.insert(item(n)) for n in range(5)]
    h = Harness(sim, checkpoint_every=1, max_records_without_checkpoint=1)
    reader = h.reader()
    assert reader.step(NO_STOP) == 0.0
    assert h.seen == written  # saved after each record: never more than 1 unsaved
    assert h.store.load(sim.stream_arn, reader.shard_id) == Checkpoint(written[-1])


def test_a_pinned_resume_passes_over_exactly_the_records_older_than_the_pin_s_second(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="ddbstreams")
    sim = StreamSimulator()
    for n in range(3):
        sim.insert(item(n))  # older than the pin's second: passed over
    sim.advance(10)
    at_pin = sim.insert(item(3))
    sim.advance(10)
    later = sim.insert(item(4))
    h = Harness(sim, batch_size=2)  # pages: 2 older; 1 older and at_pin; later
    created = sim.records(sim.open_shard_ids()[0])[3]["dynamodb"]["ApproximateCreationDateTime"]
    # Creation times are rounded down to the second, so is the pin: a pin late in the same
    # second as a record's creation still delivers it.
    reader = h.reader(checkpoint=Checkpoint(None, latest_at=math.floor(created) + 0.999))
    for _ in range(3):
        reader.step(NO_STOP)
    assert h.seen == [at_pin, later]
    passed_over = [r.getMessage() for r in caplog.records if "LATEST pin" in r.getMessage()]
    assert passed_over == [
        f"shard {reader.shard_id}: 2 records older than the LATEST pin",
        f"shard {reader.shard_id}: 1 records older than the LATEST pin",
    ]


def test_a_timed_checkpoint_starts_the_counts_again() -> None:
    sim = StreamSimulator()
    first = sim.insert(item(1))
    h = Harness(sim, checkpoint_every=2, checkpoint_interval=5.0, max_records_without_checkpoint=2)
    reader = h.reader()
    reader.step(NO_STOP)
    sim.advance(5.0)  # exactly the interval: due
    reader.step(NO_STOP)
    assert h.store.load(sim.stream_arn, reader.shard_id) == Checkpoint(first)
    written = [sim.insert(item(n)) for n in range(2, 5)]
    reader.step(NO_STOP)
    assert h.seen == [first, *written]  # 3 more in one step: the bound of 2 counts from the save
    # checkpoint_every=2 counts from the timed save too: after the 2nd of them, not the 1st.
    assert h.store.load(sim.stream_arn, reader.shard_id) == Checkpoint(written[1])


def test_a_checkpoint_is_due_exactly_one_interval_after_the_last_one() -> None:
    sim = StreamSimulator()
    written = [sim.insert(item(n)) for n in range(2)]
    h = Harness(sim, checkpoint_every=100, checkpoint_interval=5.0)
    reader = h.reader()
    saved: list[object] = []

    def slow(record: Record) -> None:
        sim.advance(5.0)  # each record takes exactly the interval
        saved.append(h.store.load(sim.stream_arn, reader.shard_id))
        h.seen.append(record.sequence_number)

    began = sim.wall_time()
    reader._handler = slow
    reader.step(NO_STOP)
    assert saved == [Checkpoint(None, begun_at=began), Checkpoint(written[0])]


def test_a_checkpoint_that_did_not_move_is_not_written_again() -> None:
    sim = StreamSimulator()
    written = [sim.insert(item(n)) for n in range(3)]
    h = Harness(sim, checkpoint_every=100)
    h.store = store = FlakyStore()
    reader = h.reader()
    reader.step(NO_STOP)
    reader.checkpoint()
    assert store.calls[-1] == Checkpoint(written[-1])
    saves = len(store.calls)
    reader.checkpoint()
    reader.step(NO_STOP)  # an empty page
    reader.checkpoint()
    assert len(store.calls) == saves


def test_a_possible_gap_is_reported_once_even_if_the_iterator_then_expires() -> None:
    sim = StreamSimulator()
    old = [sim.insert(item(n)) for n in range(2)]
    sim.advance(86400 + 10)  # every record trimmed: nothing retained to deliver yet
    h = Harness(sim, trimmed_data="restart_from_trim_horizon")
    reader = h.reader(checkpoint=Checkpoint(old[0]))
    reader.step(NO_STOP)  # the gap, then an empty page from the oldest retained record
    sim.advance(901)  # that iterator expires before any record was delivered
    for _ in range(3):
        reader.step(NO_STOP)
    kept = sim.insert(item(5))
    reader.step(NO_STOP)
    assert [(g.shard_id, g.after_sequence_number) for g in h.gaps] == [(reader.shard_id, old[0])]
    assert h.seen == [kept]
