"""The router through a real broker and Redis: escalation once per trigger, two instances.

The first test uses the session's stack. The second runs its own broker, Redis prefix and
two router processes, kills one with SIGKILL mid-run, and checks that no complaint is
lost and no handler is booked twice.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from kafka import KafkaProducer

from schemas.envelope import Envelope
from schemas.events import (
    CaseAction,
    CaseEvent,
    CaseUpdate,
    ComplaintRegistered,
)
from tests.conftest import own_broker
from tests.harness import (
    Service,
    TopicReader,
    free_port,
    group_lag,
    http,
    post_inbound,
    produce,
    registered_event,
    staff_headers,
    staff_step,
    wait_for,
)

pytestmark = pytest.mark.integration
GROUP = "complaints-router"


def scaled(run: str, i: int) -> ComplaintRegistered:
    return registered_event(run, i, subject=f"scale-out {i}", description=TEXTS[i % len(TEXTS)])


@pytest.fixture()
def producer(broker: str) -> Iterator[KafkaProducer]:
    p = KafkaProducer(bootstrap_servers=broker, acks="all")
    yield p
    p.close()


def send(producer: KafkaProducer, topic: str, event: Envelope) -> None:
    producer.send(topic, key=event.key(), value=event.to_bytes()).get(timeout=10)


def decisions(reader: TopicReader, cid: str) -> dict[str, dict[str, Any]]:
    """Distinct routing decisions of ``cid`` by event id (a republished one counts once)."""
    reader.catch_up()
    return {e["id"]: e["data"] for e in reader.events
            if e["_topic"] == "complaints.routed" and e["subject"] == cid}


def register(intake_url: str, description: str) -> str:
    """A web-form complaint of a customer of its own; its number."""
    status, body = post_inbound(intake_url, "web_form", {
        "description": description, "email": f"c.{uuid.uuid4().hex[:8]}@example.com", "language": "en"})
    assert status == 202, body
    return str(body["complaint_id"])


def test_escalation_over_the_broker_climbs_once_per_trigger(
        intake_url: str, broker: str, producer: KafkaProducer) -> None:
    reader = TopicReader(broker, "complaints.routed", "complaints.sla")
    try:
        # Given a general complaint nobody responds to (respond target 1 h = 1 s here)
        cid = register(intake_url, "The kettle stopped working after two days, clearly a defect.")
        # Then the breach escalates it from L1 to L2, and the department head is told
        second = reader.wait(lambda e: e.get("subject") == cid and e["data"].get("revision") == 2,
                             timeout=60, what="escalation on the respond breach")[0]["data"]
        assert (second["decision"], second["level"], second["trigger"], second["notify"]) == (
            "escalated", "L2", "sla_breach:respond", ["department_head"])
        # When the customer answers dissatisfied (delivered twice) and the case is reopened
        # because of that answer
        now = datetime.now(UTC)
        unhappy = CaseEvent.new(CaseUpdate(complaint_id=cid, action=CaseAction.satisfaction,
                                           actor="customer", score=1),
                                source="tests", time=now, subject=cid)
        reopen = CaseEvent.new(CaseUpdate(complaint_id=cid, action=CaseAction.reopened, actor="customer"),
                               source="tests", time=now, subject=cid, cause=unhappy)
        for event in (unhappy, unhappy, reopen):
            send(producer, "complaints.lifecycle", event)
        # Then it escalates once more, to L3, and the executives are told
        third = reader.wait(lambda e: e.get("subject") == cid and e["data"].get("revision") == 3,
                            timeout=60, what="escalation on dissatisfaction")[0]["data"]
        assert (third["level"], third["notify"]) == ("L3", ["executives"])
        assert third["trigger"] in ("dissatisfied", "reopened")  # whichever was handled first
        wait_for(lambda: group_lag(broker, GROUP, "complaints.lifecycle") == 0, timeout=60,
                 what="the router to commit the lifecycle events")
        ours = decisions(reader, cid)
        assert sum(d["trigger"] in ("dissatisfied", "reopened") for d in ours.values()) == 1
        # When the case is reopened again at L3
        send(producer, "complaints.lifecycle", CaseEvent.new(
            CaseUpdate(complaint_id=cid, action=CaseAction.reopened, actor="customer"),
            source="tests", time=now, subject=cid))
        # Then L3 is the ceiling: the level stays and the executives are told
        ceiling = reader.wait(lambda e: e.get("subject") == cid and e["data"].get("decision") == "at_ceiling",
                              timeout=60, what="the ceiling")[0]["data"]
        assert (ceiling["level"], ceiling["notify"]) == ("L3", ["executives"])
        revisions = sorted(d["revision"] for d in decisions(reader, cid).values())
        assert revisions == list(range(1, len(revisions) + 1))  # each revision once, none lost
    finally:
        reader.close()


def test_a_reviewer_reclassifies_a_low_confidence_complaint_through_the_event_api(
        intake_url: str, desk_url: str, broker: str) -> None:
    reader = TopicReader(broker, "complaints.routed")
    try:
        # Given a complaint the classifier cannot place with confidence
        cid = register(intake_url, "I am not happy with what happened at your place last week.")
        first = reader.wait(lambda e: e.get("subject") == cid, timeout=60, what="routed")[0]["data"]
        # Then it waits in the review queue, with a reviewer booked and its deadlines running
        assert (first["review"], first["department"]) == (True, "complaint_review")
        assert first["handler"].startswith("complaint-review-l1-")
        # When a reviewer files the code through the desk (a reviewer's token: the review queue)
        headers = staff_headers("reviewer-7", "reviewer", department="complaint_review")
        answer: list[Any] = []

        def filed() -> bool:  # the desk acts on what the archive holds: the case on the review
            answer[:] = [http("POST", f"{desk_url}/v1/desk/cases/{cid}/actions",  # queue (until then:
                              {"action": "reclassified", "code": "PB-01"}, headers=headers)]  # 404, 403)
            return answer[0][0] not in (403, 404)
        wait_for(filed, timeout=60, what="the desk to see the case on the review queue")
        assert answer[0][0] == 202, answer
        # Then the case is re-routed to the code's department with a handler of its own
        re = reader.wait(lambda e: e.get("subject") == cid and e["data"]["decision"] == "reclassified",
                         timeout=60, what="re-routed")[0]["data"]
        assert (re["code"], re["department"], re["review"]) == ("PB-01", "billing", False)
        assert re["revision"] >= 2  # the unacknowledged case may have escalated first
        # (at the level the case has reached: on a loaded machine it may have escalated first)
        assert re["handler"].startswith(f"billing-{re['level'].lower()}-")
        # And the case's state says so
        def state() -> dict[str, Any] | None:
            got = http("GET", f"{intake_url}/v1/complaints/{cid}", headers=staff_headers())[1]
            return got if got.get("revision", 0) >= re["revision"] else None
        assert wait_for(state, timeout=30, what="state with the new routing")["department"] == "billing"
    finally:
        reader.close()


TEXTS = (
    "The screen is broken and cracked, clearly a defect.",
    "I was overcharged twice on my bill, wrong charge.",
    "The staff member was rude and impolite to me.",
    "The parcel is a late delivery, still not delivered after two weeks.",
    "The app keeps crashing on login.",
    "The charger caught fire and burned my hand.",
)




def router_state(client: redis.Redis, prefix: str) -> dict[str, Any]:
    """Loads, and per case its revision and held handler; anchors by customer."""
    cases = {}
    for key in client.scan_iter(match=f"{prefix}router:case:*"):
        rev, held = client.hmget(key, ["rev", "held"])
        cases[key] = (int(rev), held)
    anchors = {key: json.loads(client.get(key))
               for key in client.scan_iter(match=f"{prefix}router:customer:*")}
    return {"loads": {k.decode(): int(v) for k, v in client.hgetall(f"{prefix}router:load").items()},
            "cases": cases, "anchors": anchors}


def decisions_counted(port: int) -> float:
    status, body = http("GET", f"http://127.0.0.1:{port}/metrics")
    text = body if isinstance(body, str) else json.dumps(body)
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("complaints_router_decisions_total{"))


def test_two_router_instances_one_killed_lose_nothing_and_never_double_book(
        redis_url: str, redis_prefix: str, test_roster: Path, tmp_path: Path) -> None:
    count, run = 600, uuid.uuid4().hex[:6]
    prefix = f"{redis_prefix}scale-{run}:"
    with own_broker(tmp_path) as bootstrap:
        env = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "KAFKA_REBALANCE_TIMEOUT": "3",
               "REDIS_URL": redis_url, "REDIS_PREFIX": prefix, "ROUTER_ROSTER_FILE": str(test_roster),
               "COMPLAINTS_DATA_DIR": str(tmp_path / "data"), "LOG_LEVEL": "info"}
        ports = [free_port(), free_port()]
        routers = [Service("router", {**env, "ROUTER_HTTP_PORT": str(p)}, p, tmp_path) for p in ports]
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
        reader = TopicReader(bootstrap, "complaints.routed")
        try:
            for r in routers:
                wait_for(r.healthy, timeout=60, what="router healthy")
            # Given a steady stream of registrations shared by two router instances: a trickle
            # until both route (healthy is not yet in the group: the first to join may take every
            # partition, and a burst, before the second has any)
            sent = 0

            def both_routing() -> bool:
                nonlocal sent
                if sent < count * 3 // 4:
                    produce(producer, "complaints.registered", [scaled(run, sent)])
                    sent += 1
                return all(decisions_counted(p) > 0 for p in ports)

            wait_for(both_routing, timeout=90, what="both instances to route")
            # When one is killed (SIGKILL) while the rest arrives
            routers[0].stop(kill=True)
            produce(producer, "complaints.registered", (scaled(run, i) for i in range(sent, count)))
            # Then every complaint is routed, exactly one first decision each
            wait_for(lambda: len({e["subject"] for e in (reader.poll() or reader.events)}) >= count,
                     timeout=120, what=f"{count} complaints routed")
            wait_for(lambda: group_lag(bootstrap, GROUP, "complaints.registered") == 0, timeout=60,
                     what="the survivor to commit")
            reader.poll()
            firsts: dict[str, set[str]] = {}
            for e in reader.events:
                if e["data"]["revision"] == 1:
                    firsts.setdefault(e["subject"], set()).add(json.dumps(e["data"], sort_keys=True))
            assert len(firsts) == count
            assert all(len(v) == 1 for v in firsts.values()), "a redelivery changed a decision"
            # And the handler loads count every case once (no double booking after redelivery)
            handlers = Counter(json.loads(next(iter(v)))["handler"] for v in firsts.values())
            assert None not in handlers
            client = redis.Redis.from_url(redis_url)
            loads = {k.decode(): int(v) for k, v in client.hgetall(f"{prefix}router:load").items()}
            assert loads == dict(handlers)
            # When a third of the cases are resolved, and then Redis loses the router's keys
            survivor = routers[1]
            resolved = sorted(firsts)[: count // 3]
            produce(producer, "complaints.lifecycle", (CaseEvent.new(
                CaseUpdate(complaint_id=cid, action=CaseAction.resolved, actor="tests", result="done"),
                source="tests", time=datetime.now(UTC), subject=cid) for cid in resolved))
            wait_for(lambda: group_lag(bootstrap, GROUP, "complaints.lifecycle") == 0, timeout=60,
                     what="the survivor to release the resolved cases")
            survivor.stop()
            before = router_state(client, prefix)
            assert sum(before["loads"].values()) == count - len(resolved)
            for key in client.scan_iter(match=f"{prefix}router:*"):
                client.delete(key)
            # Then `complaints rebuild router` restores it from the topics
            done = subprocess.run(  # noqa: S603 - our own interpreter and module
                [sys.executable, "-m", "services", "rebuild", "router"], env={**os.environ, **env},
                capture_output=True, text=True, timeout=120, check=False)
            assert done.returncode == 0, done.stderr
            assert f"rebuilt router state: {count} cases" in done.stdout
            assert router_state(client, prefix) == before
        finally:
            producer.close()
            reader.close()
            for r in routers:
                r.stop()


def test_a_dissatisfied_survey_reply_reopens_the_case_and_escalates_it_once(
        intake_url: str, desk_url: str, broker: str) -> None:
    reader = TopicReader(broker, "complaints.routed", "complaints.lifecycle")
    try:
        # Given a complaint that is handled and resolved
        cid = register(intake_url, "The screen is broken and cracked, clearly a defect.")
        reader.wait(lambda e: e.get("subject") == cid and e["_topic"] == "complaints.routed",
                    timeout=60, what="routed")
        for step in ({"action": "acknowledged", "actor": "agent-1"},
                     {"action": "resolved", "actor": "agent-1", "result": "Screen replaced"}):
            assert staff_step(desk_url, cid, step)[0] == 202
        # When the customer answers the revisit dissatisfied (the survey channel, twice)
        answer = {"complaint_id": cid, "score": 1, "survey_id": f"S-{cid}", "comment": "still broken"}
        for _ in range(2):
            assert post_inbound(intake_url, "survey_reply", answer)[0] == 202
        # Then the notifier reopens the case once, caused by the answer
        reopened = reader.wait(lambda e: e.get("subject") == cid and e["_topic"] == "complaints.lifecycle"
                               and e["data"]["action"] == "reopened", timeout=60, what="reopened")[0]
        assert reopened["source"] == "notifier"
        # And the router escalates once for the answer and its reopen together
        reader.wait(lambda e: e.get("subject") == cid and e["_topic"] == "complaints.routed"
                    and e["data"].get("trigger") in ("dissatisfied", "reopened"), timeout=60,
                    what="the escalation")
        wait_for(lambda: group_lag(broker, GROUP, "complaints.lifecycle") == 0, timeout=60,
                 what="the router to commit the lifecycle events")
        escalations = [d for d in decisions(reader, cid).values()
                       if d["trigger"] in ("dissatisfied", "reopened")]
        assert len(escalations) == 1
        reader.poll()
        assert len({e["id"] for e in reader.events if e.get("subject") == cid
                    and e["_topic"] == "complaints.lifecycle" and e["data"]["action"] == "reopened"}) == 1
    finally:
        reader.close()
