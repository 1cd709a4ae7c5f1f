"""The consumer boundary under outages, without servers: what counts as an outage, that an outage
waits (and pauses) instead of dead-lettering, that a dead letter is itself retried and never
lost for its size. The same behaviour against a real Redis and broker: tests/test_outage_redis.py.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from typing import Any

import aiokafka.errors as kafka_errors
import pytest
import redis.exceptions as redis_errors
from faust.exceptions import ProducerSendError
from prometheus_client import CollectorRegistry
from redis._parsers.base import BaseParser

from schemas.envelope import Envelope
from schemas.events import DeadLetterEvent
from schemas.topics import TopicSpec
from services.common.boundary import Boundary, Record
from services.common.errors import ConfigError, Rejected, Retry, is_transient
from services.common.settings import CommonSettings, load_settings
from tests.fakes import RecordingPublisher
from tests.harness import wait_until


def reply(error: str) -> redis_errors.RedisError:
    """The exception redis-py makes of an error reply from the server (its own parser)."""
    exc: redis_errors.RedisError = BaseParser.parse_error(error)  # type: ignore[no-untyped-call]
    return exc


def send_failed(cause: Exception) -> ProducerSendError:
    """faust's wrapper of a producer error, as ``Topic.send`` raises it."""
    try:
        raise ProducerSendError(f"Error while sending: {cause!r}") from cause
    except ProducerSendError as exc:
        return exc


OUTAGES: list[BaseException] = [
    reply("OOM command not allowed when used memory > 'maxmemory'."),
    reply("READONLY You can't write against a read only replica."),
    reply("LOADING Redis is loading the dataset in memory"),
    reply("TRYAGAIN Multiple keys request during rehashing of slot"),
    reply("CLUSTERDOWN The cluster is down"),
    reply("MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'."),
    redis_errors.ResponseError("TRYAGAIN from a proxy"),  # a reply no class was mapped to
    redis_errors.ConnectionError("Connection refused"),
    redis_errors.TimeoutError("Timeout reading from socket"),
    kafka_errors.KafkaTimeoutError(),
    kafka_errors.KafkaConnectionError("Unable to bootstrap from 127.0.0.1:9092"),
    kafka_errors.NotLeaderForPartitionError(),
    kafka_errors.RequestTimedOutError(),
    kafka_errors.NodeNotReadyError(),
    kafka_errors.LeaderNotAvailableError(),
    send_failed(kafka_errors.KafkaTimeoutError()),
    Retry("state not there yet"),
    ConnectionRefusedError(),
    TimeoutError(),
]
NOT_OUTAGES: list[BaseException] = [
    reply("WRONGTYPE Operation against a key holding the wrong kind of value"),
    reply("ERR unknown command 'FOO'"),
    kafka_errors.MessageSizeTooLargeError(),
    kafka_errors.TopicAuthorizationFailedError(),
    send_failed(kafka_errors.MessageSizeTooLargeError()),
    Rejected("payload.phone: not a phone number"),
    ValueError("a bug"),
    KeyError("a bug"),
]


@pytest.mark.parametrize("exc", OUTAGES, ids=lambda e: f"{type(e).__name__}:{str(e)[:20]}")
def test_an_outage_is_transient(exc: BaseException) -> None:
    assert is_transient(exc)


@pytest.mark.parametrize("exc", NOT_OUTAGES, ids=lambda e: f"{type(e).__name__}:{str(e)[:20]}")
def test_bad_input_and_bugs_are_not_transient(exc: BaseException) -> None:
    assert not is_transient(exc)


def boundary(publisher: Any = None, **options: Any) -> tuple[Boundary, CollectorRegistry]:
    registry = CollectorRegistry()
    options = {"pause_after": 30.0, "max_backoff": 0.01, **options}
    return Boundary(service="t", publisher=publisher or RecordingPublisher(), registry=registry,
                    **options), registry


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, {"service": "t", **labels}) or 0.0


class Flaky:
    """A handler whose dependency fails ``times`` times with ``exc``, then does the effect."""

    def __init__(self, exc: BaseException, times: int) -> None:
        self.exc, self.left, self.done = exc, times, 0

    async def __call__(self, key: bytes | None, value: bytes) -> None:
        if self.left:
            self.left -= 1
            raise self.exc
        self.done += 1

    async def batch(self, records: list[Record]) -> list[BaseException | None]:
        await self(None, b"")
        return [None] * len(records)


RECORD: dict[str, Any] = {"topic": "complaints.registered", "partition": 0, "offset": 7, "key": b"k",
          "value": b'{"subject": "261123-G8DDZ53RCF"}'}


@pytest.mark.parametrize("exc", [e for e in OUTAGES if not isinstance(e, Retry)],
                         ids=lambda e: f"{type(e).__name__}:{str(e)[:20]}")
def test_a_record_waits_out_an_outage_and_is_not_dead_lettered(exc: BaseException) -> None:
    # Given a handler whose dependency fails three times, then answers
    publisher = RecordingPublisher()
    b, registry = boundary(publisher)
    handler = Flaky(exc, 3)
    # When the boundary handles the record
    asyncio.run(b.run(handler, **RECORD))
    # Then the effect is done once and nothing is dead-lettered
    assert handler.done == 1
    assert publisher.published == []
    assert value(registry, "complaints_records_processed_total", topic="complaints.registered") == 1
    assert value(registry, "complaints_outage_retries_total", error=type(exc).__name__) == 3


def test_a_batch_waits_out_an_outage_and_is_not_dead_lettered() -> None:
    publisher = RecordingPublisher()
    b, _ = boundary(publisher)
    handler = Flaky(reply("OOM command not allowed when used memory > 'maxmemory'."), 3)
    records = [Record("complaints.inbound", 0, i, None, b"{}") for i in range(5)]
    asyncio.run(b.run_batch(handler.batch, handler, records))
    assert handler.done == 1
    assert publisher.published == []


def test_a_lasting_outage_pauses_consumption_until_the_dependency_answers() -> None:
    # Given a boundary that pauses after 0.2 s of failures, and a dependency that is down
    b, registry = boundary(pause_after=0.2, max_backoff=0.02)
    up = asyncio.Event()

    async def handler(key: bytes | None, value: bytes) -> None:
        if not up.is_set():
            raise reply("READONLY You can't write against a read only replica.")

    async def scenario() -> None:
        task = asyncio.create_task(b.run(handler, **RECORD))
        # When it stays down past the limit, consumption is paused (the record is still pending)
        await wait_until(lambda: value(registry, "complaints_consumer_paused") == 1, timeout=10,
                         what="paused")
        assert not task.done()
        # When the dependency answers again, the record completes and consumption resumes
        up.set()
        await asyncio.wait_for(task, timeout=10)

    asyncio.run(scenario())
    assert value(registry, "complaints_consumer_paused") == 0
    assert value(registry, "complaints_deadlettered_total", topic="complaints.registered",
                 error="ReadOnlyError") == 0


def test_missing_state_is_still_dead_lettered_after_its_retries() -> None:
    """``Retry`` is the handler's own "not yet" (state that has not arrived), bounded on purpose."""
    publisher = RecordingPublisher()
    b, _ = boundary(publisher, max_retries=2)
    handler = Flaky(Retry("no contact yet", delay=0.0), 10)
    asyncio.run(b.run(handler, **RECORD))
    assert [e.type for _, e in publisher.published] == ["deadletter.recorded"]


class Refusing(RecordingPublisher):
    """A broker that refuses the first ``times`` publishes with ``exc`` (then takes them)."""

    def __init__(self, exc: BaseException, times: int) -> None:
        super().__init__()
        self.exc, self.left, self.refused = exc, times, 0

    async def publish(self, topic: TopicSpec, event: Envelope) -> None:
        if self.left:
            self.left -= 1
            self.refused += 1
            raise self.exc
        await super().publish(topic, event)


def test_a_failing_dead_letter_publish_is_retried_and_never_escapes() -> None:
    # Given bad input and a broker that times out three times
    publisher = Refusing(kafka_errors.KafkaTimeoutError(), 3)
    b, registry = boundary(publisher)

    async def bad(key: bytes | None, value: bytes) -> None:
        raise Rejected("payload: not a complaint")

    # When the boundary handles it, it returns only once the letter is on the broker
    asyncio.run(b.run(bad, **RECORD))
    assert publisher.refused == 3
    assert [e.type for _, e in publisher.published] == ["deadletter.recorded"]
    assert value(registry, "complaints_deadlettered_total", topic="complaints.registered",
                 error="Rejected") == 1


def test_a_dead_letter_the_broker_refuses_is_sent_again_as_its_digest() -> None:
    publisher = Refusing(send_failed(kafka_errors.MessageSizeTooLargeError()), 1)
    b, _ = boundary(publisher)
    original = b'{"subject": "261123-G8DDZ53RCF", "x": "' + b"y" * 5000 + b'"}'

    async def bad(key: bytes | None, value: bytes) -> None:
        raise Rejected("payload: not a complaint")

    asyncio.run(b.run(bad, **{**RECORD, "value": original}))
    (letter,) = [e for _, e in publisher.published]
    assert isinstance(letter, DeadLetterEvent)
    assert letter.data.truncated and letter.data.original == ""
    assert letter.data.original_size == len(original)
    assert letter.data.original_sha256 == hashlib.sha256(original).hexdigest()


def test_an_oversized_dead_letter_is_kept_truncated_with_size_and_digest() -> None:
    # Given a record of 2 MB of bad input and the default limit (900 KB)
    publisher = RecordingPublisher()
    b, _ = boundary(publisher)
    original = b"\x00\xff" * 1_000_000

    async def bad(key: bytes | None, value: bytes) -> None:
        raise UnicodeDecodeError("utf-8", value, 0, 1, "invalid start byte")

    # When it is dead-lettered
    asyncio.run(b.run(bad, **{**RECORD, "value": original}))
    (letter,) = [e for _, e in publisher.published]
    assert isinstance(letter, DeadLetterEvent)
    # Then the letter fits, and says what was cut and how to recognise the original
    assert len(letter.to_bytes()) <= b.deadletter_max_bytes
    kept = base64.b64decode(letter.data.original)
    assert letter.data.truncated and 0 < len(kept) < len(original) and original.startswith(kept)
    assert len(kept) > b.deadletter_max_bytes // 2  # as much as fits, not a token prefix
    assert letter.data.original_size == len(original)
    assert letter.data.original_sha256 == hashlib.sha256(original).hexdigest()


def test_a_small_dead_letter_is_whole_with_its_digest() -> None:
    publisher = RecordingPublisher()
    b, _ = boundary(publisher)

    async def bad(key: bytes | None, value: bytes) -> None:
        raise json.JSONDecodeError("Expecting value", "x", 0)

    asyncio.run(b.run(bad, **RECORD))
    (letter,) = [e for _, e in publisher.published]
    assert isinstance(letter, DeadLetterEvent)
    assert base64.b64decode(letter.data.original) == RECORD["value"]
    assert not letter.data.truncated
    assert letter.data.original_sha256 == hashlib.sha256(RECORD["value"]).hexdigest()


def test_a_periodic_job_outage_is_a_warning_not_a_crash() -> None:
    b, _ = boundary()

    async def job() -> None:
        raise reply("OOM command not allowed when used memory > 'maxmemory'.")

    asyncio.run(b.guard("tick", job))  # returns: the next run tries again


@pytest.mark.parametrize(("variable", "bad"), [
    ("OUTAGE_PAUSE_AFTER", "-1"), ("OUTAGE_PAUSE_AFTER", "soon"), ("OUTAGE_MAX_BACKOFF", "0"),
    ("DEADLETTER_MAX_BYTES", "5"), ("HTTP_RETRY_AFTER", "0"),
])
def test_outage_settings_are_validated_at_start(monkeypatch: pytest.MonkeyPatch, variable: str,
                                                bad: str) -> None:
    monkeypatch.setenv(variable, bad)
    with pytest.raises(ConfigError, match=variable):
        load_settings(CommonSettings)


def test_outage_settings_reach_the_boundary(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OUTAGE_PAUSE_AFTER", "12")
    monkeypatch.setenv("OUTAGE_MAX_BACKOFF", "3")
    monkeypatch.setenv("DEADLETTER_MAX_BYTES", "500000")
    settings = load_settings(CommonSettings)
    b = Boundary(service="t", publisher=RecordingPublisher(), registry=CollectorRegistry(),
                 settings=settings)
    assert (b.pause_after, b.max_backoff, b.deadletter_max_bytes) == (12.0, 3.0, 500_000)


@pytest.mark.parametrize("exc", [kafka_errors.KafkaTimeoutError(), kafka_errors.NotLeaderForPartitionError(),
                                 send_failed(kafka_errors.KafkaConnectionError("down"))],
                         ids=lambda e: type(e).__name__)
def test_the_desk_answers_503_when_the_broker_does_not_take_its_event(exc: BaseException) -> None:
    # Given a staff member whose action cannot be published (the broker does not answer)
    from services.common.policy import load_policy
    from services.desk.auth import TokenVerifier
    from services.desk.handlers import Desk
    from services.desk.http import answer
    from services.desk.metrics import DeskMetrics
    from tests.fakes import FixedClock
    from tests.harness import STAFF_SECRET, staff_headers

    desk = Desk(policy=load_policy(), reader=None,  # type: ignore[arg-type]  # never read here
                publisher=RecordingPublisher(), verifier=TokenVerifier(secret=STAFF_SECRET.encode()),
                clock=FixedClock(), metrics=DeskMetrics.create(CollectorRegistry()),
                identity_secret=b"k" * 16)

    async def handle(who: Any) -> tuple[int, bytes, str, dict[str, str]]:
        raise exc

    # When the desk answers, Then it is a 503 problem, not a 500
    status, body, content_type, _ = asyncio.run(
        answer(desk, "actions", staff_headers()["Authorization"], handle))
    assert status == 503 and content_type == "application/problem+json"
    assert json.loads(body)["title"] == "Temporarily unavailable"
