"""Chaos under a steady load: Redis stopped for 30 s; each service killed (``kill -9``) and restarted.

One stack for the module: a private broker and a Redis of this module's own (persisting with
an append-only file, fsync on every write, so a restart on the same port brings the keys back,
as a Redis with persistence or a replica would); intake, router, sla-monitor and notifier, one
each, as processes; SMTP and SMS sinks counting each Message-ID and Idempotency-Key. Each test
produces the bench's inbound complaints (its own run id) at a steady rate and, ten seconds in,
either stops Redis for 30 s or kills one service with SIGKILL and starts it again at once.

Then, for the complaints of the test: each is registered exactly once and routed once; nothing
is dead-lettered because of the outage (a customer message whose send was cut short is held in
doubt, NOTIFIER_IN_DOUBT=hold: recorded in_doubt and dead-lettered, never sent again); no
customer message reached its sink twice, and every acknowledgement arrived or is held; every
breach is on complaints.sla once: one event id per (complaint, milestone, cycle), and every
complaint's respond deadline (1 s at this scale; nobody acts on the cases) breached. A repeated
record under the same id is allowed (the monitor's crash between publishing and marking an
alert sent, docs/architecture.md); its consumers collapse it, so the count of such repeats is
printed, not failed. The recovery time, from the restart to the backlog of the outage through
the stage that was down, is printed.

The broker cannot be stopped the same way here: tansu keeps its log in memory, so a restart
loses every topic. That half waits for the Apache Kafka broker in the tests.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from aiosmtpd.controller import Controller
from kafka import KafkaProducer

from services.common.policy import DEFAULT_POLICY
from services.sla_monitor.calendar import ALWAYS_OPEN
from tests.conftest import SLA_SCALE, tansu
from tests.harness import (
    STAFF_SECRET,
    TEST_SECRET,
    OwnRedis,
    Service,
    TopicReader,
    free_port,
    http,
    wait_for,
)
from tests.sinks import MailSink, http_sink
from tools.bench.load import inbound_records

pytestmark = [pytest.mark.integration, pytest.mark.slow]
SERVICES = ("intake", "router", "sla-monitor", "notifier")
KILLED = ("notifier", "sla-monitor", "router", "intake")
PORT_VAR = {"intake": "INTAKE_HTTP_PORT", "router": "ROUTER_HTTP_PORT",
            "sla-monitor": "SLA_MONITOR_HTTP_PORT", "notifier": "NOTIFIER_HTTP_PORT"}
RATE = 10.0  # complaints per second
COUNT = 600  # the Redis outage: a 60 s steady load
STOP_AT, DOWN_FOR = 10.0, 30.0  # seconds into the load; seconds Redis stays down
KILL_COUNT, KILL_AT = 250, 10.0  # the kills: a 25 s load, the service killed 10 s in
BENCH_ID = re.compile(r"bench-[0-9a-f]{6}-[0-9]+")  # tools.bench.load's message ids
SEND_LEASE, CLAIM_LEASE = 10, 5  # NOTIFIER_SEND_LEASE, SLA_MONITOR_CLAIM_LEASE: a killed holder's work waits this long


class Stack:
    """The four services over the module's broker and Redis, the sinks, one reader of the topics."""

    def __init__(self, tmp: Path, roster: Path, bootstrap: str, store: OwnRedis) -> None:
        self.tmp, self.bootstrap, self.store = tmp, bootstrap, store
        self.prefix = f"chaos-{uuid.uuid4().hex[:6]}:"
        policy = yaml.safe_load(DEFAULT_POLICY.read_text(encoding="utf-8"))
        policy["notifier"]["quiet_hours"] = None  # the test must not depend on the hour it runs at
        # Only the first deadlines fall due during a test (acknowledge and respond: 1 s at this
        # scale): the later ones (dispatch, plan, resolve: 2 to 24 s) would add a breach and its
        # escalation per complaint and milestone, the module's earlier complaints included, to
        # the load of every later test
        for later in ("dispatch", "plan", "resolve"):
            milestone = policy["sla"]["milestones"][later]
            milestone["targets"] = dict.fromkeys(milestone["targets"], "2000h")
            milestone.pop("by_code", None)
        policy_file = tmp / "policy.yaml"
        policy_file.write_text(yaml.safe_dump(policy, allow_unicode=True), encoding="utf-8")
        self.mail = MailSink()
        self.smtp = Controller(self.mail, hostname="127.0.0.1", port=free_port())
        self.smtp.start()
        self.gateway, self.sms = http_sink()
        self.env = {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "KAFKA_REBALANCE_TIMEOUT": "3",
            "REDIS_URL": store.url, "REDIS_PREFIX": self.prefix,
            "COMPLAINTS_POLICY_FILE": str(policy_file), "COMPLAINTS_SLA_SCALE": str(SLA_SCALE),
            "SLA_MONITOR_CALENDAR_FILE": str(ALWAYS_OPEN), "ROUTER_ROSTER_FILE": str(roster),
            "INTAKE_SIGNING_SECRETS": json.dumps({"*": TEST_SECRET}), "DESK_JWT_SECRET": STAFF_SECRET,
            "COMPLAINTS_DATA_DIR": str(tmp / "data"), "NOTIFIER_OUTBOX_DIR": str(tmp / "outbox"),
            "NOTIFIER_OUTBOX_ENABLED": "true",
            "NOTIFIER_SMTP": json.dumps({"host": "127.0.0.1", "port": self.smtp.port, "security": "none",
                                         "sender": "service@example.com", "domain": "example.com",
                                         "timeout": 2}),
            "NOTIFIER_SMS_GATEWAY": json.dumps({"url": f"http://127.0.0.1:{self.gateway.server_port}/sms",
                                                "timeout": 2}),
            "NOTIFIER_IN_DOUBT": "hold", "NOTIFIER_SEND_LEASE": str(SEND_LEASE),
            "SLA_MONITOR_CLAIM_LEASE": str(CLAIM_LEASE),
            "OUTAGE_PAUSE_AFTER": "5", "OUTAGE_MAX_BACKOFF": "2", "LOG_LEVEL": "info"}
        self.ports = {name: free_port() for name in SERVICES}
        self.services: dict[str, Service] = {}
        self.reader: TopicReader | None = None
        self._read = 0  # events of the reader sorted by type so far
        self._by_type: dict[str, list[tuple[int, dict[str, Any]]]] = defaultdict(list)

    def start(self) -> None:
        for name in SERVICES:
            self.services[name] = self._service(name)
        for svc in self.services.values():
            wait_for(svc.healthy, timeout=90, what=f"{svc.name} healthy")
        # ready: the notifier and the monitor have marked their (empty) stores whole (a first
        # start on an empty Redis rebuilds from the topics; that is not these tests' subject)
        client = redis.Redis(host="127.0.0.1", port=self.store.port)
        try:
            wait_for(lambda: client.exists(f"{self.prefix}notifier:epoch", f"{self.prefix}sla:epoch") == 2,
                     timeout=60, what="the stores marked whole")
        finally:
            client.close()
        self.reader = TopicReader(self.bootstrap, "complaints.registered", "complaints.routed",
                                  "complaints.notifications", "complaints.deadletter", "complaints.sla")

    def _service(self, name: str) -> Service:
        return Service(name, {**self.env, PORT_VAR[name]: str(self.ports[name])}, self.ports[name], self.tmp)

    def restart(self, name: str) -> None:
        """Start the service again (after a kill), on the same port, as a supervisor would."""
        self.services[name] = self._service(name)

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()
        for svc in self.services.values():
            svc.stop()
        self.smtp.stop()
        self.gateway.shutdown()
        self.gateway.server_close()

    def paused(self, name: str) -> float:
        status, text = http("GET", f"http://127.0.0.1:{self.ports[name]}/metrics")
        m = re.search(rf'^complaints_consumer_paused\{{service="{name}"\}} (\S+)$', str(text), re.M)
        return float(m.group(1)) if status == 200 and m else 0.0

    # ---- what the topics and sinks hold ------------------------------------------------

    def mark(self) -> int:
        """Where a test's events start: everything on the topics until now is read."""
        assert self.reader is not None
        self.reader.catch_up()
        return len(self.reader.events)

    def of(self, event_type: str, since: int = 0) -> list[dict[str, Any]]:
        """The events of a type read so far (from the ``since``-th event on).

        Sorted by type as they come: the reader's whole list is not scanned again on every
        look, which would take the GIL from the sinks' threads in this process.
        """
        assert self.reader is not None
        self.reader.poll()
        events = self.reader.events
        for i in range(self._read, len(events)):
            self._by_type[str(events[i]["type"])].append((i, events[i]))
        self._read = len(events)
        return [e for i, e in self._by_type[event_type] if i >= since]

    def registered(self, load: Load) -> dict[str, set[str]]:
        """The load's message ids -> the complaint ids registered for each."""
        out: dict[str, set[str]] = defaultdict(set)
        for e in self.of("complaint.registered"):
            mid = message_id_of(e)
            if mid.startswith(load.stem):
                out[mid].add(str(e["data"]["complaint_id"]))
        return out

    def routed(self) -> dict[str, set[str]]:
        """Complaint id -> the ids of its first routing decision (one, however often published)."""
        out: dict[str, set[str]] = defaultdict(set)
        for e in self.of("complaint.routed"):
            if e["data"]["revision"] == 1:
                out[str(e["subject"])].add(str(e["id"]))
        return out

    def acknowledgements(self) -> dict[str, str]:
        """Complaint id -> the notification id of its acknowledgement."""
        return {str(e["data"]["complaint_id"]): str(e["data"]["notification_id"])
                for e in self.of("notification.recorded") if e["data"]["kind"] == "acknowledgement"}

    def held(self) -> set[str]:
        """Notifications held in doubt (a send cut short: NOTIFIER_IN_DOUBT=hold)."""
        return {str(e["data"]["notification_id"]) for e in self.of("notification.recorded")
                if e["data"]["status"] == "in_doubt"}

    def received(self) -> dict[str, int]:
        """Message-ID or Idempotency-Key -> how often the sinks received it (copied at once: the
        sinks' threads keep counting)."""
        return {**dict.copy(self.mail.ids), **dict.copy(self.sms)}

    def arrived(self) -> set[str]:
        return {k.strip("<>").split("@")[0] for k in self.received()}

    def breaches(self) -> dict[tuple[str, str, int], list[str]]:
        """(complaint, milestone, cycle) -> the id of each breach record on complaints.sla."""
        out: dict[tuple[str, str, int], list[str]] = defaultdict(list)
        for e in self.of("sla.alert"):
            d = e["data"]
            if d["outcome"] == "breached":
                out[(str(d["complaint_id"]), str(d["milestone"]), int(d.get("cycle", 1)))].append(str(e["id"]))
        return out

    def through(self, stage: str, message_ids: list[str]) -> bool:
        """Every one of ``message_ids`` has passed ``stage`` (the service of that name)."""
        registered = self.registered_of(message_ids)
        if stage == "intake" or len(registered) < len(message_ids):
            return len(registered) == len(message_ids)
        cids = {next(iter(ids)) for ids in registered.values()}
        if stage == "router":
            return cids <= self.routed().keys()
        if stage == "sla-monitor":
            return cids <= {cid for cid, milestone, _ in self.breaches() if milestone == "respond"}
        acks = self.acknowledgements()
        return cids <= acks.keys() and {acks[c] for c in cids} <= self.arrived() | self.held()

    def registered_of(self, message_ids: list[str]) -> dict[str, set[str]]:
        wanted = set(message_ids)
        out: dict[str, set[str]] = defaultdict(set)
        for e in self.of("complaint.registered"):
            mid = message_id_of(e)
            if mid in wanted:
                out[mid].add(str(e["data"]["complaint_id"]))
        return out


def message_id_of(registered: dict[str, Any]) -> str:
    """The load's message id in a registered complaint's source id (``email:id:<bench-…@host>``)."""
    m = BENCH_ID.search(str(registered["data"]["source_message_id"]))
    return m.group(0) if m else ""


class Load:
    """The bench's inbound complaints, produced at a steady rate by a thread."""

    def __init__(self, bootstrap: str, count: int, rate: float) -> None:
        run = uuid.uuid4().hex[:6]
        self.stem = f"bench-{run}-"
        self.records = inbound_records(run, count)
        self.message_ids = [m.decode() for _, m, _ in self.records]
        self.bootstrap, self.rate, self.sent = bootstrap, rate, 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._go, daemon=True)
        self.t0 = time.monotonic()
        self.thread.start()

    def _go(self) -> None:
        producer = KafkaProducer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=5)
        for i, (_, key, value) in enumerate(self.records):
            if self.stop.is_set():
                break
            pause = self.t0 + i / self.rate - time.monotonic()
            if pause > 0:
                self.stop.wait(pause)
            producer.send("complaints.inbound", key=key, value=value)
            self.sent = i + 1
        producer.flush()
        producer.close()

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def finish(self) -> None:
        self.thread.join(timeout=120)
        assert not self.thread.is_alive(), "the load generator did not finish"

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def stack(test_roster: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("chaos")
    store = OwnRedis(tmp / "redis")
    store.start()
    try:
        with tansu(tmp) as bootstrap:
            running = Stack(tmp, test_roster, bootstrap, store)
            try:
                running.start()
                yield running
            finally:
                running.close()
    finally:
        store.stop()


def check_nothing_lost_or_twice(stack: Stack, load: Load, since: int) -> dict[str, Any]:
    """The properties every chaos test asserts for its load; returns the figures to print
    (with when each property held, in seconds from the start of the load)."""
    at: dict[str, float] = {}
    # every message is registered exactly once and routed once
    try:
        wait_for(lambda: len(stack.registered(load)) == len(load.records), timeout=300,
                 what=f"{len(load.records)} registered", interval=0.5)
    except AssertionError:
        missing = sorted(set(load.message_ids) - stack.registered(load).keys())
        raise AssertionError(f"{len(missing)} not registered, e.g. {missing[:5]}") from None
    at["registered"] = round(load.elapsed(), 1)
    registered = stack.registered(load)
    assert all(len(ids) == 1 for ids in registered.values()), {m: i for m, i in registered.items() if len(i) > 1}
    cids = {next(iter(ids)) for ids in registered.values()}
    wait_for(lambda: cids <= stack.routed().keys(), timeout=300, what="every complaint routed",
             interval=0.5)
    at["routed"] = round(load.elapsed(), 1)
    routed = stack.routed()
    assert all(len(routed[c]) == 1 for c in cids), {c: routed[c] for c in cids if len(routed[c]) > 1}

    # no customer message reached its sink twice; every acknowledgement arrived or is held in
    # doubt (a send cut short by the outage or the kill)
    wait_for(lambda: cids <= stack.acknowledgements().keys(), timeout=300, what="every acknowledgement queued",
             interval=0.5)
    acks = {stack.acknowledgements()[c] for c in cids}
    wait_for(lambda: acks <= stack.arrived() | stack.held(), timeout=300,
             what="every acknowledgement sent or held", interval=0.5)
    at["acknowledged"] = round(load.elapsed(), 1)
    twice = {k: n for k, n in stack.received().items() if n > 1}
    assert twice == {}, twice

    # every breach once: one id per (complaint, milestone, cycle); every respond deadline breached
    wait_for(lambda: cids <= {c for c, m, _ in stack.breaches() if m == "respond"}, timeout=300,
             what="every complaint's respond breach", interval=0.5)
    at["respond_breached"] = round(load.elapsed(), 1)
    breaches = {k: ids for k, ids in stack.breaches().items() if k[0] in cids}
    assert all(len(set(ids)) == 1 for ids in breaches.values()), {
        k: ids for k, ids in breaches.items() if len(set(ids)) > 1}

    # and nothing was dead-lettered because of the outage
    letters = Counter(str(e["data"]["error_type"]) for e in stack.of("deadletter.recorded", since))
    assert set(letters) <= {"InDoubtDelivery"}, letters
    held = stack.held() & acks
    assert letters["InDoubtDelivery"] == len({str(e["data"]["notification_id"])
                                              for e in stack.of("notification.recorded", since)
                                              if e["data"]["status"] == "in_doubt"})
    return {"complaints": len(cids), "rate_per_s": load.rate, "dead_letters": dict(letters),
            "acknowledgements_arrived": len(acks & stack.arrived()), "held_in_doubt": len(held),
            "breaches": len(breaches),
            "breach_records_repeated_same_id": sum(len(ids) - 1 for ids in breaches.values()),
            "held_at_s": at}


@pytest.mark.timeout(900)
def test_redis_down_for_30s_under_load_loses_and_dead_letters_nothing(stack: Stack) -> None:
    since = stack.mark()
    # Given a steady load
    load = Load(stack.bootstrap, COUNT, RATE)
    try:
        # When Redis stops for 30 s in the middle of it
        wait_for(lambda: load.elapsed() >= STOP_AT, timeout=60, what="the outage", interval=0.05)
        stack.store.stop()
        down = time.monotonic()
        wait_for(lambda: stack.paused("intake") == 1, timeout=DOWN_FOR, what="intake paused")
        wait_for(lambda: time.monotonic() - down >= DOWN_FOR, timeout=DOWN_FOR + 10, what="30 s down",
                 interval=0.1)
        backlog = load.message_ids[:load.sent]
        stack.store.start()
        restarted = time.monotonic()
        # Then the backlog of the outage is registered, and consumption resumes
        wait_for(lambda: stack.through("intake", backlog), timeout=300, what="the backlog registered",
                 interval=0.25)
        recovery = time.monotonic() - restarted
        wait_for(lambda: all(stack.paused(n) == 0 for n in SERVICES), timeout=120, what="every service resumed")
        load.finish()
        # and nothing is lost, dead-lettered or sent twice
        figures = check_nothing_lost_or_twice(stack, load, since)
    finally:
        load.close()
    print(json.dumps({"chaos": "redis stopped", "redis_down_s": DOWN_FOR, "produced_before_restart": len(backlog),
                      "recovery_s_from_restart_to_backlog_registered": round(recovery, 1),
                      "total_s": round(load.elapsed(), 1), **figures}))


@pytest.mark.timeout(600)
@pytest.mark.parametrize("victim", KILLED)
def test_a_service_killed_under_load_loses_nothing_and_sends_nothing_twice(stack: Stack, victim: str) -> None:
    since = stack.mark()
    # Given a steady load
    load = Load(stack.bootstrap, KILL_COUNT, RATE)
    try:
        # When the service is killed (SIGKILL: no shutdown of any kind) 10 s in, and started again
        wait_for(lambda: load.elapsed() >= KILL_AT, timeout=60, what="the kill", interval=0.05)
        stack.services[victim].stop(kill=True)
        stack.restart(victim)
        restarted = time.monotonic()
        backlog = load.message_ids[:load.sent]
        # Then it takes up the backlog of the kill: everything produced until the restart goes
        # through the stage that was down
        wait_for(stack.services[victim].healthy, timeout=90, what=f"{victim} healthy again")
        wait_for(lambda: stack.through(victim, backlog), timeout=300, what=f"the backlog through {victim}",
                 interval=0.25)
        recovery = time.monotonic() - restarted
        load.finish()
        # and nothing is lost, dead-lettered or sent twice; every breach is on the topic once
        figures = check_nothing_lost_or_twice(stack, load, since)
    finally:
        load.close()
    print(json.dumps({"chaos": f"kill -9 {victim}", "produced_before_restart": len(backlog),
                      "recovery_s_from_restart_to_backlog_through_it": round(recovery, 1),
                      "total_s": round(load.elapsed(), 1), **figures}))
