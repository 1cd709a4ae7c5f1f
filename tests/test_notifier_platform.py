"""Replies on social and review platforms: the reply route read from a registered complaint, the
reply transport against a fake webhook (a real HTTP server on a free port), its settings, and the
notifier replying to the post, or raising a call-back task for the owner when it cannot."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from schemas.events import Channel, Complaint, ComplaintRegistered, Contact, NotificationKind
from services.common.errors import ConfigError
from services.common.policy import load_policy
from services.common.settings import load_settings
from services.notifier import logic
from services.notifier.dispatch import Dispatcher
from services.notifier.handlers import Notifier
from services.notifier.messages import Notification, ReplyRoute, acknowledgement, reply_route
from services.notifier.metrics import NotifierMetrics
from services.notifier.replies import CallbackQueue, PlatformConfig, PlatformReplyTransport
from services.notifier.settings import NotifierSettings
from services.notifier.transports import InDoubtDelivery, PermanentDelivery, TransientDelivery, Unreachable
from tests.fakes import CountingTransport, DictCustomers, DictOutbox, FixedClock, RecordingPublisher
from tests.fakes.platform_api import TOKEN, FakePlatform

POLICY = load_policy()
T0 = datetime(2026, 12, 3, 2, tzinfo=UTC)


def complaint(channel: Channel, source: str, details: dict[str, str | int | float | bool],
              contact: Contact | None = None, cid: str = "C-1") -> Complaint:
    return Complaint(complaint_id=cid, channel=channel, received_at=T0, source_message_id=source,
                     customer=contact or Contact(language="zh"), customer_key="k", first_contact="social-desk",
                     subject="s", description="d", details=details)


# ---- the reply route ---------------------------------------------------------------------------


@pytest.mark.parametrize(("c", "route"), [
    # a social post and a review, de-duplicated by their platform's id: replied to there
    (complaint(Channel.social, "social:id:weibo:4962000123", {"platform": "weibo", "audience": 5}),
     ReplyRoute(channel="platform", platform="weibo", post_id="4962000123")),
    (complaint(Channel.review_platform, "review_platform:id:Dianping:r-9:x", {"platform": "Dianping"}),
     ReplyRoute(channel="platform", platform="dianping", post_id="r-9:x")),
    # no post id (de-duplicated by content), no platform, or another channel: no route
    (complaint(Channel.social, "social:sha256:" + "0" * 64, {"platform": "weibo"}), None),
    (complaint(Channel.social, "social:id:weibo:1", {}), None),
    (complaint(Channel.social, "social:id:we:ibo:1", {"platform": "we:ibo"}), None),  # no setting names it
    (complaint(Channel.web_form, "web_form:id:weibo:1", {"platform": "weibo"}), None),
    # WeChat without the sender's sealed openid (events from before intake kept it)
    (complaint(Channel.wechat, "wechat:id:123", {"msg_type": "text"}), None),
])
def test_reply_route(c: Complaint, route: ReplyRoute | None) -> None:
    assert reply_route(c) == route


def test_e_mail_or_phone_comes_before_the_post_reply() -> None:
    # Given a social post whose author also left a phone number
    c = complaint(Channel.social, "social:id:weibo:1", {"platform": "weibo"},
                  contact=Contact(phone="+8613800138000"))
    # Then the acknowledgement goes by SMS; without it, as a reply to the post, by the platform's queue
    assert acknowledgement(c, templates=POLICY.notifier).transport == "sms"
    bare = acknowledgement(complaint(Channel.social, "social:id:weibo:1", {"platform": "weibo"}),
                           templates=POLICY.notifier)
    assert (bare.transport, bare.address) == ("platform", "weibo:1")
    assert logic.queue_of(bare, queues={"outbox", "platform:weibo"}) == "platform:weibo"
    # a platform not configured: the callback queue (the service always has one), never the file outbox
    assert logic.queue_of(bare, queues={"outbox", "callback", "platform:dianping"}) == logic.CALLBACK


# ---- the transport against the fake webhook ---------------------------------------------------


def run(scenario: Callable[[FakePlatform], Awaitable[None]]) -> None:
    async def main() -> None:
        async with FakePlatform() as fake:
            await scenario(fake)
    asyncio.run(main())


def reply(kind: NotificationKind = NotificationKind.result, post: str = "4962000123") -> Notification:
    return Notification(notification_id=f"n-{kind.value}", complaint_id="C-1", kind=kind, transport="platform",
                        address=f"weibo:{post}", language="zh", subject="投诉 C-1", body="已处理。")


def transport(fake: FakePlatform, **config: Any) -> PlatformReplyTransport:
    return PlatformReplyTransport("weibo", PlatformConfig(url=fake.url, token=SecretStr(TOKEN), timeout=5, **config))


def test_a_reply_is_posted_to_the_post_once_per_notification() -> None:
    async def scenario(fake: FakePlatform) -> None:
        t = transport(fake)
        # When one notification is sent twice (a resend after a doubt)
        await t.send(reply())
        await t.send(reply())
        # Then one reply was posted to the post, under the notification id as the idempotency key
        [posted] = fake.replies
        assert (posted["platform"], posted["post_id"], posted["kind"]) == ("weibo", "4962000123", "result")
        assert posted["text"] == "投诉 C-1\n已处理。" and posted["idempotency_key"] == "n-result"
        assert fake.requests == 2
    run(scenario)


@pytest.mark.parametrize(("setup", "kind", "match"), [
    (lambda f: f.deleted.add("4962000123"), Unreachable, "HTTP 404"),  # the post is gone
    (lambda f: f.closed.add("4962000123"), Unreachable, "HTTP 403"),   # replies closed, blocked
    (lambda f: f.faults.append(410), Unreachable, "HTTP 410"),
    (lambda f: setattr(f, "token", "another"), PermanentDelivery, "HTTP 401"),  # our token is wrong
    (lambda f: f.faults.append(422), PermanentDelivery, "HTTP 422"),
    (lambda f: f.faults.append(429), TransientDelivery, "HTTP 429"),
    (lambda f: f.faults.append(503), TransientDelivery, "HTTP 503"),
    (lambda f: f.faults.append("drop"), InDoubtDelivery, "after the request was sent"),
])
def test_platform_failures_are_classified(setup: Callable[[FakePlatform], object], kind: type[Exception],
                                          match: str) -> None:
    async def scenario(fake: FakePlatform) -> None:
        setup(fake)
        with pytest.raises(kind, match=match) as err:
            await transport(fake).send(reply())
        assert kind is Unreachable or not isinstance(err.value, Unreachable)
        assert TOKEN not in str(err.value) and fake.replies == []
    run(scenario)


def test_kinds_not_posted_as_replies_are_unreachable_there() -> None:
    async def scenario(fake: FakePlatform) -> None:
        # Given a platform whose replies are public, configured for acknowledgements only
        t = transport(fake, kinds=["acknowledgement"])
        # Then a result is not posted (it becomes a call-back task), an acknowledgement is
        with pytest.raises(Unreachable, match="kinds"):
            await t.send(reply(NotificationKind.result))
        await t.send(reply(NotificationKind.acknowledgement))
        assert [r["kind"] for r in fake.replies] == ["acknowledgement"] and fake.requests == 1
    run(scenario)


# ---- settings ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "problem"), [
    ({"Weibo": {"url": "https://x.example/r"}}, "NOTIFIER_PLATFORMS"),  # platform names are lower case
    ({"weibo": {"url": "ftp://x.example/r", "token": "RECOGNISABLE-token"}}, "NOTIFIER_PLATFORMS.WEIBO.URL"),
    ({"weibo": {"url": "https://x/r", "token": "RECOGNISABLE-token", "kinds": ["gossip"]}},
     "NOTIFIER_PLATFORMS.WEIBO.KINDS"),
    ({"weibo": {"url": "https://x/r", "token": "RECOGNISABLE-token", "timeout": 90}}, "NOTIFIER_SEND_LEASE"),
])
def test_a_bad_platform_setting_is_named_and_its_token_never_shown(value: dict[str, Any], problem: str,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFIER_PLATFORMS", json.dumps(value))
    with pytest.raises(ConfigError) as err:
        load_settings(NotifierSettings)
    assert problem in str(err.value) and "RECOG" not in str(err.value), err.value


def test_configured_platforms_get_their_queues(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    from services.notifier.adapters import transports_of

    monkeypatch.setenv("NOTIFIER_PLATFORMS", json.dumps({"weibo": {"url": "https://x.example/r"},
                                                         "dianping": {"url": "https://y.example/r"}}))
    monkeypatch.setenv("NOTIFIER_OUTBOX_DIR", str(tmp_path))
    queues = transports_of(load_settings(NotifierSettings))
    assert {"platform:weibo", "platform:dianping", "callback"} <= queues.keys() and "wechat" not in queues


# ---- the notifier ----------------------------------------------------------------------------------


class Wired:
    def __init__(self, transports: dict[str, Any]) -> None:
        self.clock, self.publisher = FixedClock(T0), RecordingPublisher()
        self.outbox, self.customers = DictOutbox(), DictCustomers()
        self.chat = CountingTransport("chat:first_contact_owner")
        self.transports = {"outbox": CountingTransport("outbox"), "chat:first_contact_owner": self.chat,
                           logic.CALLBACK: CallbackQueue(), **transports}
        settings = NotifierSettings(NOTIFIER_RETRY_BASE=0.01, NOTIFIER_RETRY_CAP=0.01, NOTIFIER_MAX_ATTEMPTS=2)
        metrics = NotifierMetrics.create(CollectorRegistry())
        self.registry_metrics = metrics
        self.read_events: list[Any] = []
        self.notifier = Notifier(settings=settings, policy=POLICY, publisher=self.publisher,
                                 customers=self.customers, outbox=self.outbox, queues=list(self.transports),
                                 clock=self.clock, metrics=metrics, read=self.read)
        self.dispatcher = Dispatcher(settings=settings, publisher=self.publisher, outbox=self.outbox,
                                     transports=self.transports, clock=self.clock, metrics=metrics)

    def read(self, topic: str) -> list[dict[str, Any]]:
        kinds = {"complaints.registered": "complaint.registered",
                 "complaints.notifications": "notification.recorded"}
        events = self.read_events + [e for _, e in self.publisher.published]
        return [e.model_dump(mode="json") for e in events if e.type == kinds.get(topic)]

    async def register(self, c: Complaint) -> None:
        event = ComplaintRegistered.new(c, source="intake", time=T0, subject=c.complaint_id)
        self.read_events.append(event)
        await self.notifier.on_registered(None, event.to_bytes())

    def records(self) -> list[tuple[str, str, str]]:
        return [(e.data.kind.value, e.data.role, e.data.status)
                for e in self.publisher.of_type("notification.recorded")]

    def letters(self) -> int:
        return len(self.publisher.of_type("deadletter.recorded"))


POST = complaint(Channel.social, "social:id:weibo:4962000123", {"platform": "weibo"})


def test_a_social_post_is_answered_with_a_reply_to_it() -> None:
    async def scenario(fake: FakePlatform) -> None:
        w = Wired({"platform:weibo": transport(fake)})
        await w.register(POST)
        await w.dispatcher.dispatch("platform:weibo")
        assert [(r["post_id"], r["kind"]) for r in fake.replies] == [("4962000123", "acknowledgement")]
        assert w.records() == [("acknowledgement", "customer", "queued"), ("acknowledgement", "customer", "sent")]
    run(scenario)


def test_a_reply_to_a_deleted_post_becomes_a_call_back_task() -> None:
    async def scenario(fake: FakePlatform) -> None:
        fake.deleted.add("4962000123")
        w = Wired({"platform:weibo": transport(fake)})
        await w.register(POST)
        await w.dispatcher.dispatch("platform:weibo")
        await w.dispatcher.dispatch("chat:first_contact_owner")
        assert ("acknowledgement", "customer", "callback_required") in w.records()
        assert [n.role for n in w.chat.sent] == ["first_contact_owner"] and w.letters() == 0
    run(scenario)


def test_a_platform_down_for_every_attempt_becomes_a_call_back_task_and_a_dead_letter() -> None:
    async def scenario(fake: FakePlatform) -> None:
        fake.faults = [503, 503]
        w = Wired({"platform:weibo": transport(fake)})
        await w.register(POST)
        await w.dispatcher.dispatch("platform:weibo")
        w.clock.advance(seconds=1)
        await w.dispatcher.dispatch("platform:weibo")
        statuses = [r[2] for r in w.records() if r[1] == "customer"]
        assert statuses == ["queued", "retrying", "callback_required"]
        assert w.letters() == 1  # the operators see a platform down too
        assert ("sla_warning", "first_contact_owner", "queued") in w.records()
    run(scenario)


def test_a_customer_without_contact_or_route_becomes_a_call_back_task_not_a_failure() -> None:
    # Given a web-form complaint that left no contact, and a platform not configured
    w = Wired({})
    anonymous = complaint(Channel.web_form, "web_form:id:f-1", {}, cid="C-2")

    async def scenario() -> None:
        await w.register(anonymous)
        await w.register(POST)
        await w.dispatcher.dispatch(logic.CALLBACK)
        await w.dispatcher.dispatch("chat:first_contact_owner")

    asyncio.run(scenario())
    # Then neither acknowledgement failed: each is a call-back task, sent to the owner's chat
    customer = [e.data for e in w.publisher.of_type("notification.recorded")
                if e.data.role == "customer" and e.data.status == "callback_required"]
    assert sorted((d.complaint_id, (d.detail or "").split(":")[0]) for d in customer) == [
        ("C-1", "not_configured"), ("C-2", "no_contact")]
    assert sorted(n.complaint_id for n in w.chat.sent) == ["C-1", "C-2"] and w.letters() == 0
    assert w.registry_metrics.callbacks.labels("acknowledgement", "callback", "no_contact")._value.get() == 1
    assert not any(d.status == "failed" for d in (e.data for e in w.publisher.of_type("notification.recorded")))


def test_a_rebuild_queues_a_pending_call_back_task_again_and_nothing_else() -> None:
    async def scenario(fake: FakePlatform) -> None:
        # Given a reply the platform refused, whose call-back task is queued but not yet sent
        fake.deleted.add("4962000123")
        w = Wired({"platform:weibo": transport(fake)})
        await w.register(POST)
        await w.dispatcher.dispatch("platform:weibo")
        # When Redis loses everything and the notifier rebuilds from the topics
        w.outbox.lose_everything()
        w.customers.lose_everything()
        await w.notifier.check_store()
        # Then the task is queued again and goes, and the refused reply is not tried again
        assert await w.dispatcher.dispatch("platform:weibo") == 0
        await w.dispatcher.dispatch("chat:first_contact_owner")
        assert len(w.chat.sent) == 1 and fake.requests == 1
    run(scenario)


def test_a_revisit_deferred_for_a_platform_customer_keeps_its_route() -> None:
    from schemas.events import CaseAction, CaseEvent, CaseUpdate

    async def scenario(fake: FakePlatform) -> None:
        # Given a post answered, then its case resolved
        w = Wired({"platform:weibo": transport(fake)})
        await w.register(POST)
        resolved = CaseEvent.new(CaseUpdate(complaint_id="C-1", action=CaseAction.resolved, actor="h1",
                                            result="refunded"), source="desk", time=T0, subject="C-1")
        await w.notifier.on_case_event(None, resolved.to_bytes())
        # When the revisit falls due
        w.clock.advance(seconds=POLICY.notifier.revisit_after / timedelta(seconds=1) + 1)
        await w.dispatcher.dispatch("platform:weibo")
        # Then acknowledgement, result and revisit were each replied to the post
        assert sorted(r["kind"] for r in fake.replies) == ["acknowledgement", "result", "revisit"]
        assert {r["post_id"] for r in fake.replies} == {"4962000123"}
    run(scenario)


def test_a_no_contact_customers_revisit_task_waits_for_the_revisit_and_a_reopen_withdraws_it() -> None:
    from schemas.events import CaseAction, CaseEvent, CaseUpdate

    # Given a complaint whose customer left no contact, resolved
    w = Wired({})
    anonymous = complaint(Channel.letter, "letter:id:l-1", {}, cid="C-3")

    def case(action: CaseAction, **fields: Any) -> CaseEvent:
        return CaseEvent.new(CaseUpdate(complaint_id="C-3", action=action, actor="h1", **fields),
                             source="desk", time=w.clock.now, subject="C-3")

    async def scenario() -> list[str]:
        await w.register(anonymous)
        await w.notifier.on_case_event(None, case(CaseAction.resolved, result="refunded").to_bytes())
        await w.dispatcher.dispatch(logic.CALLBACK)
        await w.dispatcher.dispatch("chat:first_contact_owner")
        told = [n.body for n in w.chat.sent]
        # When the case is reopened before the revisit falls due
        await w.notifier.on_case_event(None, case(CaseAction.reopened, note="again").to_bytes())
        w.clock.advance(days=3)
        await w.dispatcher.dispatch(logic.CALLBACK)
        await w.dispatcher.dispatch("chat:first_contact_owner")
        return told

    told = asyncio.run(scenario())
    # Then the acknowledgement's and the result's tasks went at once, the revisit's waited ...
    assert len(told) == 2 and any("目的：结果反馈" in t for t in told)
    # ... and the reopen withdrew it: the reopen notice's task went instead, no revisit task
    revisit = [e.data.status for e in w.publisher.of_type("notification.recorded") if e.data.kind.value == "revisit"]
    assert revisit == ["deferred", "cancelled"]
    assert len(w.chat.sent) == 3 and not any("满意度回访" in n.body for n in w.chat.sent)


# ---- pure rules, by tables ----------------------------------------------------------------------


def msg(transport: str, address: str = "", role: str = "customer") -> Notification:
    return Notification(notification_id="n", complaint_id="C-1", kind=NotificationKind.result,
                        transport=transport, address=address, language="zh", subject="s", body="b", role=role)


WIRED = {"outbox", "callback", "wechat", "platform:weibo", "chat:first_contact_owner"}


@pytest.mark.parametrize(("note", "queues", "queue", "falls_back"), [
    (msg("wechat", "customer:k"), WIRED, "wechat", True),
    (msg("wechat", "customer:k"), {"outbox", "callback"}, "callback", True),       # not configured
    (msg("platform", "weibo:1"), WIRED, "platform:weibo", True),
    (msg("platform", "dianping:r-1"), WIRED, "callback", True),                    # another platform
    (msg("none"), WIRED, "callback", True),                                         # no contact
    (msg("none"), {"outbox"}, "outbox", True),   # wired without the callback queue: the handler fails it
    (msg("email", "a@b.cn"), WIRED, "outbox", False),                               # no SMTP: the outbox
    (msg("chat", "first_contact_owner", "first_contact_owner"), WIRED, "chat:first_contact_owner", False),
])
def test_queue_of_and_the_call_back_rule(note: Notification, queues: set[str], queue: str,
                                         falls_back: bool) -> None:
    assert logic.queue_of(note, queues=queues) == queue
    assert logic.falls_back(note) is falls_back


@pytest.mark.parametrize(("detail", "why"), [
    ("refused: wechat: ... (errcode 45015)", "refused"), ("no_contact: no contact address", "no_contact"),
    ("not_configured: ...", "not_configured"), ("undeliverable: HTTP 503 (after 8 attempts)", "undeliverable"),
    (None, "refused"), ("something else", "refused"),
])
def test_why_a_message_became_a_call_back_task_is_read_from_its_record(detail: str | None, why: str) -> None:
    assert logic.callback_why(detail) == why


def test_the_desk_and_the_history_name_callback_required_in_both_languages() -> None:
    from services.archive.history import history_lines
    from services.archive.records import ArchivedEvent
    from services.desk.console.i18n import Words

    assert Words("zh").name("action", "callback_required").startswith("无法送达")
    assert "call-back" in Words("en").name("action", "callback_required")
    event = ArchivedEvent(event_id="e1", complaint_id="C-1", topic="complaints.notifications",
                          type="notification.recorded", time=T0,
                          actor="notifier", action="callback_required", causation_id=None,
                          summary={"kind": "result", "role": "customer", "transport": "callback:none",
                                   "recipient": "-", "attempt": 1})
    assert "无法送达" in history_lines([event], lang="zh")[0]
    assert "call-back task" in history_lines([event], lang="en")[0]


def test_the_callback_queue_counts_against_no_recipient_limit() -> None:
    from tests.fakes.notifier import DictRecipientLimit

    # Given a recipient limit of one message, and three customers who left no contact (one "address": none)
    w = Wired({})
    w.dispatcher.limit = DictRecipientLimit(limit=1, window=86_400)

    async def scenario() -> None:
        for n in range(3):
            await w.register(complaint(Channel.letter, f"letter:id:l-{n}", {}, cid=f"C-{n}"))
        await w.dispatcher.dispatch(logic.CALLBACK)

    asyncio.run(scenario())
    # Then each became a call-back task; none was rate limited
    statuses = [e.data.status for e in w.publisher.of_type("notification.recorded") if e.data.role == "customer"]
    assert statuses.count("callback_required") == 3 and "rate_limited" not in statuses
