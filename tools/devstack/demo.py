"""`complaints up --demo`: feed sample complaints and print each one's way through the loop."""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from schemas.topics import LIFECYCLE, NOTIFICATIONS, REGISTERED, ROUTED, SLA
from services.common.transport import kafka_python_kwargs
from services.intake.signing import signed_post

log = logging.getLogger(__name__)

WATCHED = (REGISTERED, ROUTED, LIFECYCLE, SLA, NOTIFICATIONS)
ACK_TIMEOUT = 60.0
MAX_HELD = 10_000
ACK = {"action": "acknowledged", "actor": "agent-007"}

# The facts printed per event type; never the customer's contact details.
FACTS = {
    "complaint.registered": ("channel", "nature", "first_contact"),
    "complaint.routed": ("decision", "revision", "code", "severity", "department", "level", "handler",
                         "first_contact_owner", "review", "notify"),
    "case.updated": ("action", "actor", "result"),
    "sla.alert": ("milestone", "outcome", "severity", "on_time", "deadline", "notify"),
    "notification.recorded": ("kind", "status", "transport", "language"),
}


@dataclass(frozen=True)
class Sample:
    channel: str
    payload: dict[str, Any] | str  # a JSON object, or a raw message (e-mail)
    steps: tuple[dict[str, str], ...]  # handler steps recorded after the acknowledgement


def _email(subject: str, body: str, sender: str) -> str:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, "service@example.com", subject
    msg["Date"] = format_datetime(datetime.now(UTC).astimezone(timezone(timedelta(hours=8))))
    msg["Message-ID"] = make_msgid(domain="demo.example.com")
    msg.set_content(body, charset="gb18030")
    return msg.as_string()


def _resolved(result: str) -> dict[str, str]:
    return {"action": "resolved", "actor": "agent-007", "result": result}


SAMPLES = (
    Sample("phone", {
        "caller": "+8613800138000", "agent_id": "agent-007", "language": "zh",
        "transcript": "客户来电：上周买的电热水壶今天烧水时底座突然起火，客户手部受伤，"
                      "要求退货、赔偿医药费，并说明产品质量问题的原因。"},
        (ACK, _resolved("已退货退款并赔付医药费；该批次产品已送检"))),
    Sample("web_form", {
        "name": "Demo Customer", "phone": "+8613900139000", "email": "demo.customer@example.com",
        "subject": "Laptop still faulty after repair",
        "description": "I sent my laptop (order 88231) for repair two weeks ago. The screen is "
                       "still faulty and flickers, and I was charged a fee nobody explained. "
                       "I want a replacement."},
        (ACK, _resolved("Replaced the device and refunded the repair fee"))),
    Sample("email", _email(
        "维修周期太长", "手机送修已经三周，维修一直没有进展，客服电话也打不通。请尽快处理并说明原因。",
        "张先生 <zhang.demo@example.com>"),
        (ACK, _resolved("已加急维修并寄回，免除维修费用"))),
    Sample("store", {
        "store_id": "store-sh-01", "staff_id": "staff-12", "phone": "+8613700137000",
        "description": "顾客反映在门店等了一个多小时无人接待，店员态度冷淡，要求店长道歉。"},
        (ACK,)),
    Sample("social", {
        "platform": "weibo", "author_handle": "@demo_user", "audience": 52000, "public": True,
        "text": "@brand your washing machine flooded my kitchen twice and nobody answers. "
                "My lawyer will be in touch if this is not fixed this week."},
        ()),  # left unacknowledged: its acknowledge deadline is breached
)


def describe(event: dict[str, Any]) -> str:
    """One line of an event's key facts."""
    data = event.get("data") or {}
    facts = []
    for name in FACTS.get(str(event.get("type")), ()):
        value = data.get(name)
        if value is None:
            continue
        if name == "deadline":
            value = _clock(str(value))
        elif isinstance(value, list):
            value = ",".join(str(v) for v in value)
        facts.append(f"{'owner' if name == 'first_contact_owner' else name}={value}")
    return " ".join(facts)


def _clock(iso: str) -> str:
    """Local time of day; with the date when it is not today."""
    try:
        when = datetime.fromisoformat(iso).astimezone()
    except ValueError:
        return iso
    day = "" if when.date() == datetime.now().astimezone().date() else f"{when:%Y-%m-%d} "
    return f"{day}{when:%H:%M:%S}.{when.microsecond // 1000:03d}"


class Printer:
    """Reads the loop's topics from their current end and prints the demo complaints' events."""

    def __init__(self, bootstrap: list[str]) -> None:
        self._consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                       enable_auto_commit=False, client_id="complaints-demo",
                                       **kafka_python_kwargs())
        parts = [TopicPartition(spec.name, p) for spec in WATCHED
                 for p in sorted(self._consumer.partitions_for_topic(spec.name)
                                 or range(spec.partitions))]
        self._consumer.assign(parts)
        for tp, offset in self._consumer.end_offsets(parts).items():
            self._consumer.seek(tp, offset)
        self._cond = threading.Condition()
        self._labels: dict[str, str] = {}  # complaint id -> channel
        self._held: dict[str, list[dict[str, Any]]] = {}  # events seen before their id was known
        self._facts: set[tuple[str, str]] = set()
        self._ids: set[str] = set()  # events are redelivered at least once: print each once
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-printer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
        self._thread.join(timeout=5.0)

    def track(self, complaint_id: str, label: str) -> None:
        """Print this complaint's events from now on, and those already seen."""
        with self._cond:
            self._labels[complaint_id] = label
            for event in self._held.pop(complaint_id, []):
                self._show(event)

    def wait_for(self, complaint_ids: list[str], fact: str, *, timeout: float) -> list[str]:
        """Wait until every complaint has the fact (e.g. notification:acknowledgement); the rest."""
        def missing() -> list[str]:
            return [c for c in complaint_ids if (c, fact) not in self._facts]

        with self._cond:
            self._cond.wait_for(lambda: not missing() or self._stopping.is_set(), timeout=timeout)
            return missing()

    def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                try:
                    batches = self._consumer.poll(timeout_ms=500)
                except KafkaError as exc:
                    log.warning("demo printer: poll failed: %s", type(exc).__name__)
                    continue
                for records in batches.values():
                    for record in records:
                        self._handle(record.value)
        finally:
            self._consumer.close()

    def _handle(self, raw: bytes) -> None:
        try:
            event = json.loads(raw)
        except ValueError:
            return
        subject = event.get("subject") if isinstance(event, dict) else None
        if not isinstance(subject, str):
            return
        data = event.get("data") or {}
        with self._cond:
            if event.get("id") in self._ids:
                return
            self._ids.add(str(event.get("id")))
            self._facts.add((subject, str(event.get("type"))))
            if event.get("type") == "notification.recorded":
                self._facts.add((subject, f"notification:{data.get('kind')}"))
                if data.get("status") == "queued":  # the sent (or failed) record follows
                    self._cond.notify_all()
                    return
            if subject in self._labels:
                self._show(event)
            elif sum(len(v) for v in self._held.values()) < MAX_HELD:
                self._held.setdefault(subject, []).append(event)
            self._cond.notify_all()

    def _show(self, event: dict[str, Any]) -> None:
        subject = str(event.get("subject"))
        print(f"  {_clock(str(event.get('time')))}  {subject}  {self._labels[subject]:<8} "
              f"{event.get('type')!s:<22} {describe(event)}", flush=True)


class Demo:
    """Feeds the samples through intake and records handler steps, printing the events."""

    def __init__(self, *, bootstrap: list[str], intake_port: int, sla_scale: float,
                 secrets: dict[str, dict[str, bytes]], desk_port: int = 8085) -> None:
        self.base = f"http://127.0.0.1:{intake_port}"
        self.desk = f"http://127.0.0.1:{desk_port}"
        self.secrets = secrets
        self.sla_scale = sla_scale
        self.printer = Printer(bootstrap)
        self._stopping = threading.Event()
        self._feeder = threading.Thread(target=self._feed, name="demo-feeder", daemon=True)

    def start(self) -> None:
        """Start printing and feeding in the background."""
        if self.sla_scale < 600:
            print("demo: hint: run `complaints up --demo --sla-scale 600` to see deadlines "
                  "met and breached within seconds (1 h becomes 6 s)", flush=True)
        self.printer.start()
        self._feeder.start()

    def stop(self) -> None:
        """Stop feeding and printing."""
        self._stopping.set()
        self.printer.stop()
        self._feeder.join(timeout=5.0)

    def _post(self, path: str, body: dict[str, Any] | str, *, key: str,
              channel: str = "") -> dict[str, Any]:
        raw = body.encode() if isinstance(body, str) else json.dumps(body, ensure_ascii=False).encode()
        status, answer = signed_post(
            self.base + path, channel, raw, secrets=self.secrets,
            content_type="message/rfc822" if isinstance(body, str) else "application/json",
            headers={"Idempotency-Key": key})
        if status >= 400 or not isinstance(answer, dict):
            raise ValueError(f"intake answered {status}: {answer}")
        return answer

    def _act(self, cid: str, step: dict[str, Any], *, key: str, timeout: float = 60.0) -> None:
        """A handler step through the desk, as the step's actor (a supervisor's token of this
        stack's key); the desk acts on archived cases, so a 404 is waited out."""
        from services.common.settings import load_settings
        from services.common.staff_tokens import StaffTokenSettings
        from services.desk.auth import mint

        token = mint(load_settings(StaffTokenSettings).hs256_secret(), sub=str(step["actor"]),
                     roles=["supervisor"], department=None, ttl=timedelta(minutes=10), now=time.time())
        body = json.dumps({k: v for k, v in step.items() if k != "actor"}, ensure_ascii=False).encode()
        deadline = time.monotonic() + timeout
        while True:
            request = urllib.request.Request(  # noqa: S310 - the stack's own loopback address
                f"{self.desk}/v1/desk/cases/{cid}/actions", data=body, method="POST",
                headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}",
                         "Idempotency-Key": key})
            try:
                with urllib.request.urlopen(request, timeout=10):  # noqa: S310
                    return
            except urllib.error.HTTPError as err:
                if err.code != 404 or time.monotonic() > deadline or self._stopping.wait(0.5):
                    raise ValueError(f"the desk answered {err.code}: {err.read()[:300]!r}") from None

    def _feed(self) -> None:

        try:
            self._feed_samples()
        except (urllib.error.URLError, OSError, ValueError, KeyError) as exc:
            print(f"demo: a request to intake failed ({type(exc).__name__}: {exc}); "
                  "demo traffic stopped", flush=True)

    def _feed_samples(self) -> None:
        run = uuid.uuid4().hex[:8]
        fed: list[tuple[Sample, str]] = []
        print("demo: feeding sample complaints; their events follow", flush=True)
        for n, sample in enumerate(SAMPLES):
            key = f"demo-{run}-{n}"
            cid = str(self._post(f"/v1/inbound/{sample.channel}", sample.payload, key=key,
                                 channel=sample.channel)["complaint_id"])
            self.printer.track(cid, sample.channel)
            fed.append((sample, cid))
        handled = [(s, c) for s, c in fed if s.steps]
        late = self.printer.wait_for([c for _, c in handled], "notification:acknowledgement",
                                     timeout=ACK_TIMEOUT)
        if self._stopping.is_set():
            return
        if late:
            print(f"demo: no acknowledgement seen within {ACK_TIMEOUT:.0f} s for "
                  f"{', '.join(late)}; recording the handler steps anyway", flush=True)
        for sample, cid in handled:
            for step in sample.steps:
                if self._stopping.is_set():
                    return
                self._act(cid, step, key=f"demo-{cid}-{step['action']}")
        unacked = ", ".join(f"{c} ({s.channel})" for s, c in fed if not s.steps)
        print(f"demo: handler steps recorded; left unacknowledged: {unacked}. "
              "The stack keeps running; Ctrl-C stops it.", flush=True)
