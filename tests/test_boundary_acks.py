"""Nothing is acknowledged before its effect, even when the handling of a record is cut short.

faust acks an event when its stream iterator moves on *or is closed*, and ``take_events`` acks
its whole batch in a ``finally`` around its ``yield`` (faust/streams.py): a handler that
raised or was cancelled (faust cancels and restarts an agent on a rebalance: "Restarting on
rebalance") still gets its record acked, and the next commit skips it. The boundary holds a
reference of its own on every message until the effect is done. Here a real worker over the
session's broker is cancelled in the middle of a record; the record must stay uncommitted
and come back to the next worker.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from schemas.events import InboundReceived
from schemas.topics import TopicSpec
from services.common.kafka import ensure_topics
from tests.harness import free_port, wait_for

pytestmark = pytest.mark.integration

WORKER = '''
import asyncio, os, sys
from pathlib import Path

from prometheus_client import CollectorRegistry

from schemas.events import InboundReceived
from schemas.topics import TopicSpec
from services.common.boundary import Boundary
from services.common.runtime import FaustPublisher, make_app, run_worker
from services.common.settings import CommonSettings

settings = CommonSettings()
service, topic, mode = os.environ["ACK_SERVICE"], os.environ["ACK_TOPIC"], os.environ["ACK_MODE"]
seen, cut = Path(os.environ["ACK_SEEN"]), Path(os.environ["ACK_CUT"])
spec = TopicSpec(topic, 2, "none", InboundReceived, "a test topic")
app = make_app(service, settings, web_port=int(os.environ["ACK_PORT"]))
boundary = Boundary(service=service, publisher=FaustPublisher(app), registry=CollectorRegistry(),
                    settings=settings)


def note(value):
    with seen.open("a") as out:
        out.write(value.decode() + "\\n")
    if value == b"cut" and not cut.exists():  # the first worker's handling is cut short
        cut.touch()
        raise asyncio.CancelledError()


async def single(key, value):
    if value == b"slow":  # an effect that takes a while: the next record finishes first
        while not Path(os.environ["ACK_GO"]).exists():
            await asyncio.sleep(0.05)
    note(value)


async def batch(records):
    for r in records:
        note(r.value)
    return [None] * len(records)


if mode in ("single", "concurrent"):
    boundary.subscribe(app, "acks", single, spec, concurrency=1 if mode == "single" else 4)
else:
    boundary.subscribe_batches(app, "acks", batch, single, spec, size=10, within=0.3, concurrency=1)
run_worker(app, log_level="info")
'''


def committed(bootstrap: str, group: str, topic: str, partition: int = 0) -> int:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        return consumer.committed(TopicPartition(topic, partition)) or 0
    finally:
        consumer.close()


class Worker:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen([sys.executable, str(env["ACK_SCRIPT"])],  # noqa: S603
                                         env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT,
                                         cwd=Path(__file__).parent.parent)

    def stop(self) -> int:
        """Stop as a deployment does (SIGTERM: faust commits what was acked, then exits)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
                raise AssertionError("the worker did not stop on SIGTERM:\n"
                                     + self.log.read_text(errors="replace")[-3000:]) from None
        return self.proc.returncode


@pytest.fixture()
def topic(broker: str) -> Iterator[str]:
    name = f"test.acks.{uuid.uuid4().hex[:8]}"
    ensure_topics([broker], (TopicSpec(name, 2, "none", InboundReceived, "acks test"),))
    yield name


@pytest.mark.timeout(300)
@pytest.mark.parametrize("mode", ["single", "batch"])
def test_a_record_whose_handling_was_cut_short_is_not_committed_and_comes_back(
        broker: str, topic: str, mode: str, tmp_path: Path) -> None:
    service = f"acktest-{mode}-{uuid.uuid4().hex[:6]}"
    script = tmp_path / "worker.py"
    script.write_text(WORKER, encoding="utf-8")
    seen = tmp_path / "seen.txt"
    env = {"KAFKA_BOOTSTRAP_SERVERS": broker, "KAFKA_REBALANCE_TIMEOUT": "3",
           "COMPLAINTS_DATA_DIR": str(tmp_path / "data"), "ACK_SERVICE": service, "ACK_TOPIC": topic,
           "ACK_MODE": mode, "ACK_SEEN": str(seen), "ACK_CUT": str(tmp_path / "cut"),
           "ACK_SCRIPT": str(script), "ACK_GO": str(tmp_path / "go"), "ACK_PORT": str(free_port()), "LOG_LEVEL": "info",
           "PYTHONPATH": str(Path(__file__).parent.parent)}
    group = f"complaints-{service}"
    # Given a record whose handling is cut short (cancelled) and a good record after it
    producer = KafkaProducer(bootstrap_servers=broker, acks="all")

    def send(*values: bytes) -> None:
        for value in values:
            producer.send(topic, value=value, partition=0)
        producer.flush()

    def lines() -> list[str]:
        return seen.read_text().split() if seen.exists() else []

    send(b"cut", b"after")
    # When a worker handles them (faust restarts the cancelled agent), then a later record, and
    # is stopped gracefully (faust commits every acked offset on the way out)
    first = Worker(env, tmp_path / "worker-1.log")
    try:
        wait_for(lambda: "cut" in lines(), timeout=120, what="the record cut short", interval=0.2)
        send(b"later")
        wait_for(lambda: "later" in lines(), timeout=120, what="the later record handled", interval=0.2)
    finally:
        first.stop()
        producer.close()
    # Then the cut record's offset was not committed, so nothing after it is either
    assert committed(broker, group, topic) == 0, "a record whose handling was cut short was acked"
    # And the next worker gets it again, and then commits all three
    second = Worker(env, tmp_path / "worker-2.log")
    try:
        wait_for(lambda: lines().count("cut") >= 2, timeout=120, what="the cut record redelivered",
                 interval=0.2)
        wait_for(lambda: committed(broker, group, topic) == 3, timeout=60, what="all committed",
                 interval=0.5)
    finally:
        second.stop()


@pytest.mark.timeout(300)
def test_a_record_finished_early_does_not_let_the_commit_pass_one_still_running(
        broker: str, topic: str, tmp_path: Path) -> None:
    """faust commits past a one-record gap right after the committed offset
    (``Consumer._new_offset``): with concurrent actors, a fast record acked while the slow one
    before it still runs would commit both, and a crash then would lose the slow one."""
    service = f"acktest-concurrent-{uuid.uuid4().hex[:6]}"
    script = tmp_path / "worker.py"
    script.write_text(WORKER, encoding="utf-8")
    seen, go = tmp_path / "seen.txt", tmp_path / "go"
    env = {"KAFKA_BOOTSTRAP_SERVERS": broker, "KAFKA_REBALANCE_TIMEOUT": "3",
           "COMPLAINTS_DATA_DIR": str(tmp_path / "data"), "ACK_SERVICE": service, "ACK_TOPIC": topic,
           "ACK_MODE": "concurrent", "ACK_SEEN": str(seen), "ACK_CUT": str(tmp_path / "cut"),
           "ACK_SCRIPT": str(script), "ACK_GO": str(go), "ACK_PORT": str(free_port()),
           "LOG_LEVEL": "info", "PYTHONPATH": str(Path(__file__).parent.parent)}
    group = f"complaints-{service}"
    producer = KafkaProducer(bootstrap_servers=broker, acks="all")

    def lines() -> list[str]:
        return seen.read_text().split() if seen.exists() else []

    worker = Worker(env, tmp_path / "worker.log")
    try:
        # Given a slow record and a fast one after it, handled by concurrent actors
        producer.send(topic, value=b"slow", partition=0)
        producer.send(topic, value=b"fast", partition=0)
        producer.flush()
        wait_for(lambda: "fast" in lines(), timeout=120, what="the fast record done", interval=0.2)
        # When the worker commits after the fast one was done (a record of the other partition,
        # produced after it, is committed: that commit saw the fast one's ack)
        producer.send(topic, value=b"tick", partition=1)
        producer.flush()
        wait_for(lambda: committed(broker, group, topic, 1) == 1, timeout=60, what="a commit",
                 interval=0.3)
        # Then nothing of the partition is committed while the slow record still runs
        assert "slow" not in lines()
        assert committed(broker, group, topic, 0) == 0, "the commit passed a record still running"
        # And once it is done, both are
        go.touch()
        wait_for(lambda: committed(broker, group, topic, 0) == 2, timeout=60, what="both committed",
                 interval=0.3)
    finally:
        go.touch()
        worker.stop()
        producer.close()
