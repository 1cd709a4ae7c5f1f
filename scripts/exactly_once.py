"""Exactly-once vs at-least-once on Apache Kafka (issue 15; docs/operations.md, "Exactly-once").

    .venv/bin/python scripts/exactly_once.py at_least_once|exactly_once COUNT RATE

Starts an Apache Kafka node (tools/kafka_broker), a Redis and intake, router, sla-monitor and
notifier (the chaos tests' stack, tests/test_chaos.py) with KAFKA_PROCESSING_GUARANTEE set and
idempotent producers; produces COUNT inbound complaints at RATE/s; kill -9s the router at 30 %
of the load and intake at 60 %, restarting each at once; waits until every complaint is routed.
Prints the time until then, CPU-seconds per service and of the broker (from /proc), and per topic
the records a read_committed consumer sees, their distinct event ids and the duplicates.
Everything runs under a fresh directory in /tmp/eos/; nothing is left running.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import yaml  # noqa: E402

from services.common.kafka import ensure_topics, read_records  # noqa: E402
from services.router.roster import DEFAULT_ROSTER  # noqa: E402
from tests.harness import OwnRedis, free_port, wait_for  # noqa: E402
from tests.test_chaos import Load, Stack  # noqa: E402
from tools.kafka_broker import KafkaBroker  # noqa: E402

TOPICS = ("complaints.registered", "complaints.routed", "complaints.sla", "complaints.notifications")


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU-seconds of a process so far (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def event_ids(bootstrap: str, topic: str) -> list[str]:
    """The event id of every record of ``topic`` a read_committed consumer sees."""
    records = read_records([bootstrap], topic, committed_only=True)
    return [json.loads(r.value)["id"] for r in records if r.value]


def main(mode: str, count: int, rate: float) -> None:
    tmp = Path(f"/tmp/eos/{mode}-{uuid.uuid4().hex[:4]}")  # noqa: S108 - a measurement of its own
    tmp.mkdir(parents=True)
    roster = yaml.safe_load(DEFAULT_ROSTER.read_text(encoding="utf-8"))
    for handlers in roster["departments"].values():
        for handler in handlers:
            handler["capacity"] = 0  # the load routes more cases than a shift holds
    roster_file = tmp / "roster.yaml"
    roster_file.write_text(yaml.safe_dump(roster, allow_unicode=True), encoding="utf-8")
    store = OwnRedis(tmp / "redis")
    store.start()
    node = KafkaBroker(tmp / "kafka", free_port())
    node.start(timeout=180)
    stack = None
    try:
        ensure_topics([node.bootstrap])
        stack = Stack(tmp, roster_file, node.bootstrap, store)
        stack.env.update({"KAFKA_PROCESSING_GUARANTEE": mode, "KAFKA_IDEMPOTENT_PRODUCER": "true"})
        stack.start()
        spent = {name: -cpu_seconds(svc.proc.pid) for name, svc in stack.services.items()}
        broker_before = cpu_seconds(node.pid)
        started = time.monotonic()
        load = Load(node.bootstrap, count, rate)
        for victim, share in (("router", 0.3), ("intake", 0.6)):
            at = count / rate * share
            wait_for(lambda: load.elapsed() >= at, timeout=600, what=f"{share:.0%} of the load",  # noqa: B023
                     interval=0.05)
            spent[victim] += cpu_seconds(stack.services[victim].proc.pid)  # its CPU until the kill
            stack.services[victim].stop(kill=True)
            stack.restart(victim)
        load.finish()
        running = stack
        wait_for(lambda: running.through("router", load.message_ids), timeout=900,
                 what="every complaint routed", interval=0.5)
        drained = time.monotonic() - started
        cpu = {name: round(spent[name] + cpu_seconds(svc.proc.pid), 1)
               for name, svc in stack.services.items()}
        topics = {}
        for topic in TOPICS:
            ids = event_ids(node.bootstrap, topic)
            distinct = len(set(ids))
            topics[topic] = {"records": len(ids), "distinct": distinct, "duplicates": len(ids) - distinct}
        print(json.dumps({"mode": mode, "count": count, "rate": rate, "all_routed_after_s": round(drained, 1),
                          "load_s": round(count / rate, 1), "cpu_s": cpu,
                          "broker_cpu_s": round(cpu_seconds(node.pid) - broker_before, 1), "topics": topics},
                         indent=1))
    finally:
        if stack is not None:
            stack.close()
        node.stop()
        store.stop()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]))
