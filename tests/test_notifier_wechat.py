"""WeChat customer-service messages: the fake API held to the documented one, the transport
against the fake (a real HTTP server on a free port), its settings, and the notifier answering a
WeChat customer there, or raising a call-back task for the owner when WeChat will not take it."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from schemas.events import (
    CaseAction,
    CaseEvent,
    CaseUpdate,
    Channel,
    Complaint,
    ComplaintRegistered,
    Contact,
    NotificationKind,
    SealedContact,
)
from services.common import sealing
from services.common.errors import ConfigError
from services.common.policy import load_policy
from services.common.settings import load_settings
from services.notifier import logic
from services.notifier.dispatch import Dispatcher
from services.notifier.handlers import Notifier
from services.notifier.messages import Notification, acknowledgement, callback_task, record
from services.notifier.metrics import NotifierMetrics
from services.notifier.opening import OpeningTransport
from services.notifier.replies import CallbackQueue, WeChatConfig, WeChatTransport
from services.notifier.settings import NotifierSettings
from services.notifier.transports import InDoubtDelivery, PermanentDelivery, TransientDelivery, Unreachable
from tests.fakes import CountingTransport, DictCustomers, DictOutbox, FixedClock, RecordingPublisher
from tests.fakes.wechat_api import APPID, SECRET, TOKEN_SECONDS, WINDOW, FakeWeChat, Follower

POLICY = load_policy()
T0 = datetime(2026, 12, 3, 2, tzinfo=UTC)  # 10:00 in Shanghai: no quiet hours
OPENID = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"


def run(scenario: Callable[[FakeWeChat], Awaitable[None]], **fake: Any) -> None:
    async def main() -> None:
        async with FakeWeChat(**fake) as wx:
            await scenario(wx)
    asyncio.run(main())


def transport(wx: FakeWeChat, **config: Any) -> WeChatTransport:
    return WeChatTransport(WeChatConfig(appid=APPID, secret=SecretStr(SECRET), base_url=wx.url, timeout=5, **config))


def note(openid: str = OPENID, kind: NotificationKind = NotificationKind.result) -> Notification:
    return Notification(notification_id=f"n-{kind.value}", complaint_id="C-1", kind=kind, transport="wechat",
                        address=openid, language="zh", subject="投诉 C-1 处理结果", body="已为您退款。")


# ---- the fake answers as the documented API ------------------------------------------------


def test_the_fake_answers_as_the_documented_api() -> None:
    async def scenario(wx: FakeWeChat) -> None:
        async with aiohttp.ClientSession() as http:
            async def get(path: str, **query: str) -> tuple[int, dict[str, Any]]:
                async with http.get(f"{wx.url}{path}", params=query) as r:
                    return r.status, await r.json()

            async def post(path: str, body: object, **query: str) -> tuple[int, dict[str, Any]]:
                async with http.post(f"{wx.url}{path}", params=query, data=json.dumps(body)) as r:
                    return r.status, await r.json()

            # Given the documented token request, Then {"access_token", "expires_in": 7200}
            status, answer = await get("/cgi-bin/token", grant_type="client_credential", appid=APPID,
                                       secret=SECRET)
            assert status == 200 and set(answer) == {"access_token", "expires_in"}
            assert isinstance(answer["access_token"], str) and answer["expires_in"] == TOKEN_SECONDS
            token = answer["access_token"]
            # and errors as HTTP 200 with an int errcode and an errmsg ending in a rid
            for query, code in (({"appid": "wx0000000000000000", "secret": SECRET}, 40013),
                                ({"appid": APPID, "secret": "wrong"}, 40125)):
                status, answer = await get("/cgi-bin/token", grant_type="client_credential", **query)
                assert status == 200 and answer["errcode"] == code and " rid: " in answer["errmsg"]
            status, answer = await get("/cgi-bin/token", grant_type="password", appid=APPID, secret=SECRET)
            assert answer["errcode"] == 40002
            # Given the stable token API, Then every caller gets the same token until a forced refresh
            stable = {"grant_type": "client_credential", "appid": APPID, "secret": SECRET}
            first = (await post("/cgi-bin/stable_token", stable))[1]
            again = (await post("/cgi-bin/stable_token", {**stable, "force_refresh": False}))[1]
            forced = (await post("/cgi-bin/stable_token", {**stable, "force_refresh": True}))[1]
            assert first["access_token"] == again["access_token"] != forced["access_token"]
            assert 0 < first["expires_in"] <= TOKEN_SECONDS
            token = forced["access_token"]
            # Given the documented text message to a follower who wrote, Then {"errcode": 0, "errmsg": "ok"}
            wx.follower_wrote(OPENID)
            message = {"touser": OPENID, "msgtype": "text", "text": {"content": "Hello World"}}
            assert await post("/cgi-bin/message/custom/send", message, access_token=token) == (
                200, {"errcode": 0, "errmsg": "ok"})
            assert wx.sent == [{"touser": OPENID, "content": "Hello World"}]
            # and the documented refusals, each HTTP 200 with its errcode
            send = "/cgi-bin/message/custom/send"
            assert (await post(send, message))[1]["errcode"] == 41001  # no access_token
            assert (await post(send, message, access_token="nope"))[1]["errcode"] == 40001
            assert (await post(send, {**message, "touser": "o-stranger"}, access_token=token))[1][
                "errcode"] == 40003
            assert (await post(send, {**message, "msgtype": "mpnews"}, access_token=token))[1]["errcode"] == 40008
            assert (await post(send, {**message, "text": {"content": "x" * 3000}}, access_token=token))[1][
                "errcode"] == 45002
            for _ in range(4):  # five messages in the 48 hours a customer's message opens ...
                assert (await post(send, message, access_token=token))[1]["errcode"] == 0
            assert (await post(send, message, access_token=token))[1]["errcode"] == 45047  # ... no sixth
            wx.follower_wrote(OPENID, ago=WINDOW + 1)  # the customer last wrote 48 hours ago
            assert (await post(send, message, access_token=token))[1]["errcode"] == 45015
            wx.followers[OPENID].following = False
            assert (await post(send, message, access_token=token))[1]["errcode"] == 43004
            wx.expire_tokens()
            wx.follower_wrote(OPENID)
            assert (await post(send, message, access_token=token))[1]["errcode"] == 42001
    run(scenario)


# ---- the transport against the fake ---------------------------------------------------------------


def test_a_message_goes_to_the_openid_and_the_token_is_fetched_once_for_many() -> None:
    async def scenario(wx: FakeWeChat) -> None:
        # Given a follower who wrote an hour ago
        wx.follower_wrote(OPENID, ago=3600)
        t = transport(wx)
        # When four messages go at once, then one more
        await asyncio.gather(*(t.send(note(kind=k)) for k in list(NotificationKind)[:4]))
        await t.send(note())
        # Then each reached the openid as one text (subject, then body) and one token served them all
        assert len(wx.sent) == 5 and {m["touser"] for m in wx.sent} == {OPENID}
        assert wx.sent[-1]["content"] == "投诉 C-1 处理结果\n已为您退款。"
        assert wx.token_fetches == 1
    run(scenario)


def test_a_token_is_fetched_anew_before_it_expires() -> None:
    async def scenario(wx: FakeWeChat) -> None:
        wx.follower_wrote(OPENID)
        now = [0.0]
        t = WeChatTransport(WeChatConfig(appid=APPID, secret=SecretStr(SECRET), base_url=wx.url, token_margin=300),
                            clock=lambda: now[0])
        await t.send(note())
        now[0] = TOKEN_SECONDS - 301  # still good for more than the margin
        await t.send(note())
        assert wx.token_fetches == 1
        now[0] = TOKEN_SECONDS - 299  # inside the margin: fetched anew
        await t.send(note())
        assert wx.token_fetches == 2 and len(wx.sent) == 3
    run(scenario)


@pytest.mark.parametrize("how", ["replaced", "expired"])
def test_a_token_refused_as_invalid_or_expired_is_fetched_again_once_and_the_message_resent(how: str) -> None:
    async def scenario(wx: FakeWeChat) -> None:
        # Given a transport holding a token that another system replaced (40001), or that expired (42001)
        wx.follower_wrote(OPENID)
        t = transport(wx)
        await t.send(note())
        wx.replace_tokens() if how == "replaced" else wx.expire_tokens()
        # When the next message goes, Then it is delivered with a fresh token: two sends, one refused
        await t.send(note(kind=NotificationKind.revisit))
        assert wx.token_fetches == 2 and len(wx.sent) == 2 and wx.sends == 3
    run(scenario)


def test_a_token_refused_again_after_the_refresh_is_a_transient_failure() -> None:
    async def scenario(wx: FakeWeChat) -> None:
        wx.follower_wrote(OPENID)
        wx.faults = [40001, 40001]
        with pytest.raises(TransientDelivery, match="errcode 40001"):
            await transport(wx).send(note())
        assert wx.token_fetches == 2 and wx.sent == []
    run(scenario)


@pytest.mark.parametrize(("setup", "code"), [
    (lambda wx: wx.follower_wrote(OPENID, ago=WINDOW + 60), 45015),   # the 48-hour window closed
    (lambda wx: wx.faults.append(45047), 45047),                      # the window's messages used up
    (lambda wx: None, 40003),                                         # not a follower of this account
    (lambda wx: wx.followers.update({OPENID: Follower(last_message=wx.clock(), following=False)}), 43004),
])
def test_a_customer_wechat_will_not_let_us_reach_is_unreachable(setup: Callable[[FakeWeChat], object],
                                                                code: int) -> None:
    async def scenario(wx: FakeWeChat) -> None:
        setup(wx)
        with pytest.raises(Unreachable, match=f"errcode {code}") as err:
            await transport(wx).send(note())
        assert OPENID not in str(err.value) and wx.sent == []
    run(scenario)


@pytest.mark.parametrize(("fault", "kind"), [
    (-1, TransientDelivery), (45009, TransientDelivery), ("http500", TransientDelivery),
    ("drop", InDoubtDelivery),  # cut after the request went: WeChat may have delivered it
    (45002, PermanentDelivery),  # our message is wrong: no customer's refusal
])
def test_wechat_failures_are_classified(fault: int | str, kind: type[Exception]) -> None:
    async def scenario(wx: FakeWeChat) -> None:
        wx.follower_wrote(OPENID)
        wx.faults.append(fault)
        with pytest.raises(kind) as err:
            await transport(wx).send(note())
        assert not isinstance(err.value, Unreachable)
    run(scenario)


def test_wrong_credentials_are_permanent_and_no_secret_or_token_shows() -> None:
    async def scenario(wx: FakeWeChat) -> None:
        wx.follower_wrote(OPENID)
        t = WeChatTransport(WeChatConfig(appid=APPID, secret=SecretStr("a-wrong-secret-0123456789"), base_url=wx.url))
        with pytest.raises(PermanentDelivery, match="errcode 40125") as err:
            await t.send(note())
        assert not isinstance(err.value, Unreachable) and "a-wrong-secret" not in str(err.value)
        assert "a-wrong-secret" not in repr(t.config)  # a SecretStr
    run(scenario)


def test_an_api_that_does_not_answer_is_a_transient_failure() -> None:
    # Given a port nobody listens on
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t = WeChatTransport(WeChatConfig(appid=APPID, secret=SecretStr(SECRET), base_url=f"http://127.0.0.1:{port}", timeout=2))
    with pytest.raises(TransientDelivery):
        asyncio.run(t.send(note()))


def test_with_stable_tokens_two_instances_share_one_token() -> None:
    async def scenario(wx: FakeWeChat) -> None:
        # Given two notifier instances on the stable token API
        wx.follower_wrote(OPENID)
        a, b = transport(wx, token_api="stable_token"), transport(wx, token_api="stable_token")
        # When both send, again and again, Then neither replaces the other's token
        for _ in range(2):
            await a.send(note())
            await b.send(note(kind=NotificationKind.revisit))
        assert len(wx.sent) == 4 and wx.sends == 4 and await a.token() == await b.token()
    run(scenario)


# ---- settings ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "problem"), [
    ({"appid": "wx-short", "secret": SECRET}, "NOTIFIER_WECHAT.APPID"),
    ({"appid": APPID}, "NOTIFIER_WECHAT.SECRET"),
    ({"appid": APPID, "secret": "RECOGNISABLE-s3cret", "base_url": "ftp://x"}, "NOTIFIER_WECHAT.BASE_URL"),
    ({"appid": APPID, "secret": "RECOGNISABLE-s3cret", "token_api": "sometimes"}, "NOTIFIER_WECHAT.TOKEN_API"),
    ({"appid": APPID, "secret": "RECOGNISABLE-s3cret", "timeout": 20}, "NOTIFIER_SEND_LEASE"),
    ({"appid": APPID, "secret": "RECOGNISABLE-s3cret", "surprise": 1}, "NOTIFIER_WECHAT.SURPRISE"),
])
def test_a_bad_wechat_setting_is_named_and_its_secret_never_shown(value: dict[str, Any], problem: str,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # Given NOTIFIER_WECHAT with one thing wrong beside a recognisable secret
    monkeypatch.setenv("NOTIFIER_WECHAT", json.dumps(value))
    # When the settings load, Then the error names the field and shows no secret
    with pytest.raises(ConfigError) as err:
        load_settings(NotifierSettings)
    assert problem in str(err.value) and "RECOG" not in str(err.value), err.value


def test_a_good_wechat_setting_loads_with_its_secret_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFIER_WECHAT", json.dumps({"appid": APPID, "secret": SECRET}))
    settings = load_settings(NotifierSettings)
    assert settings.wechat is not None and settings.wechat.base_url == "https://api.weixin.qq.com"
    assert SECRET not in repr(settings) and settings.wechat.secret.get_secret_value() == SECRET


# ---- the notifier: a WeChat customer answered on WeChat, or a call-back task -------------------------


class Keys:
    def __init__(self, deks: dict[tuple[str, str], bytes]) -> None:
        self.deks = deks

    async def data_key(self, subject: str, kid: str) -> bytes | None:
        return self.deks.get((subject, kid))


def wechat_complaint(cid: str = "C-1") -> tuple[ComplaintRegistered, Keys]:
    """A WeChat complaint whose sender's openid travels sealed (no name, phone nor e-mail)."""
    masters = sealing.MasterKeys.parse(sealing.generate_master_keys("k1"))
    rec, dek = sealing.new_data_key(masters, "cust-wx", now=T0)
    sealed = SealedContact(subject="cust-wx", account=sealing.seal(dek, rec.kid, "cust-wx", "account", OPENID))
    c = Complaint(complaint_id=cid, channel=Channel.wechat, received_at=T0, source_message_id=f"wechat:id:{cid}",
                  customer=Contact(language="zh", sealed=sealed), customer_key="cust-wx",
                  first_contact="wechat-desk", subject="s", description="d")
    return ComplaintRegistered.new(c, source="intake", time=T0, subject=cid), Keys({("cust-wx", rec.kid): dek})


class Wired:
    """The notifier's handlers and dispatcher over the fakes, WeChat through the fake API."""

    def __init__(self, wx: FakeWeChat | None, keys: Keys, *, chat: bool = True) -> None:
        self.clock, self.publisher = FixedClock(T0), RecordingPublisher()
        self.outbox, self.customers = DictOutbox(), DictCustomers()
        self.chat = CountingTransport("chat:first_contact_owner")
        transports: dict[str, Any] = {"outbox": CountingTransport("outbox"), logic.CALLBACK: CallbackQueue()}
        if chat:
            transports["chat:first_contact_owner"] = self.chat
        if wx is not None:
            transports[logic.WECHAT] = OpeningTransport(transport(wx), keys)
        self.transports = transports
        self.settings = NotifierSettings(NOTIFIER_STAFF_LANGUAGE="en")
        self.metrics = NotifierMetrics.create(CollectorRegistry())
        self.notifier = Notifier(settings=self.settings, policy=POLICY, publisher=self.publisher,
                                 customers=self.customers, outbox=self.outbox, queues=list(transports),
                                 clock=self.clock, metrics=self.metrics)
        self.dispatcher = Dispatcher(settings=self.settings, publisher=self.publisher, outbox=self.outbox,
                                     transports=transports, clock=self.clock, metrics=self.metrics)

    def records(self) -> list[tuple[str, str, str]]:
        """(kind, role, status) of every notification record, in order."""
        return [(e.data.kind.value, e.data.role, e.data.status)
                for e in self.publisher.of_type("notification.recorded")]

    def letters(self) -> int:
        return len(self.publisher.of_type("deadletter.recorded"))


def test_a_wechat_customer_is_acknowledged_on_wechat_once() -> None:
    async def scenario(wx: FakeWeChat) -> None:
        # Given a complaint that came by WeChat from a follower who just wrote
        wx.follower_wrote(OPENID)
        reg, keys = wechat_complaint()
        w = Wired(wx, keys)
        # When its registration arrives twice and the WeChat queue is drained twice
        for _ in range(2):
            await w.notifier.on_registered(None, reg.to_bytes())
            await w.dispatcher.dispatch(logic.WECHAT)
        # Then one message reached the openid, opened only for the transport, and was recorded sent
        assert [m["touser"] for m in wx.sent] == [OPENID]
        assert w.records() == [("acknowledgement", "customer", "queued"), ("acknowledgement", "customer", "sent")]
        assert OPENID not in "".join(e.to_bytes().decode() for _, e in w.publisher.published)
        assert await w.outbox.state(acknowledgement(reg.data, templates=POLICY.notifier).notification_id) == "sent"
    run(scenario)


def test_a_result_wechat_refuses_becomes_a_call_back_task_for_the_owner() -> None:
    async def scenario(wx: FakeWeChat) -> None:
        # Given a WeChat complaint registered and acknowledged, then resolved after the customer's
        # 48-hour window closed
        wx.follower_wrote(OPENID)
        reg, keys = wechat_complaint()
        w = Wired(wx, keys)
        await w.notifier.on_registered(None, reg.to_bytes())
        await w.dispatcher.dispatch(logic.WECHAT)
        wx.follower_wrote(OPENID, ago=WINDOW + 3600)
        resolved = CaseEvent.new(CaseUpdate(complaint_id="C-1", action=CaseAction.resolved, actor="h1",
                                            result="refunded"), source="desk", time=T0, subject="C-1")
        await w.notifier.on_case_event(None, resolved.to_bytes())
        # When the WeChat queue is drained (the result now; the revisit is deferred)
        await w.dispatcher.dispatch(logic.WECHAT)
        # Then the result is recorded callback_required, not failed, and nothing is dead-lettered
        result = [r for r in w.records() if r[0] == "result"]
        assert result == [("result", "customer", "queued"), ("result", "customer", "callback_required")]
        assert w.letters() == 0
        detail = [e.data.detail for e in w.publisher.of_type("notification.recorded")
                  if e.data.status == "callback_required"][0]
        assert detail.startswith("refused: wechat: the customer's 48-hour") and "45015" in detail
        # and a call-back task is queued to the first-contact owner's chat, and goes
        assert ("sla_warning", "first_contact_owner", "queued") in w.records()
        await w.dispatcher.dispatch("chat:first_contact_owner")
        [task] = w.chat.sent
        assert task.role == "first_contact_owner" and "C-1" in task.subject
        assert "contact record (purpose: feedback)" in task.body and OPENID not in task.body
        assert ("sla_warning", "first_contact_owner", "sent") in w.records()
        # When the same refusal is dispatched again (a redelivery), Then no second task
        await w.dispatcher.dispatch(logic.WECHAT)
        assert len(w.chat.sent) == 1
    run(scenario)


def test_without_wechat_configured_the_acknowledgement_is_a_call_back_task_at_once() -> None:
    # Given a WeChat complaint and no NOTIFIER_WECHAT
    reg, keys = wechat_complaint()
    w = Wired(None, keys)

    async def scenario() -> None:
        # When it is registered (twice: a redelivery) and the queues are drained
        for _ in range(2):
            await w.notifier.on_registered(None, reg.to_bytes())
            await w.dispatcher.dispatch(logic.CALLBACK)
        await w.dispatcher.dispatch("chat:first_contact_owner")

    asyncio.run(scenario())
    # Then the acknowledgement went by the callback queue, never the file outbox, and is
    # callback_required (why: not configured); one task went to the owner
    ack = [r for r in w.records() if r[0] == "acknowledgement"]
    assert ack == [("acknowledgement", "customer", "queued"), ("acknowledgement", "customer", "callback_required")]
    detail = [e.data.detail or "" for e in w.publisher.of_type("notification.recorded")
              if e.data.status == "callback_required"][0]
    assert detail.startswith("not_configured:") and "NOTIFIER_WECHAT" in detail
    assert w.transports["outbox"].sent == []
    assert [n.kind for n in w.chat.sent] == [NotificationKind.sla_warning]
    assert "Acknowledge" in w.chat.sent[0].body and w.letters() == 0


def test_an_erased_wechat_customer_gets_no_call_back_task() -> None:
    async def scenario(wx: FakeWeChat) -> None:
        # Given a WeChat customer erased after registration (the data key is gone)
        wx.follower_wrote(OPENID)
        reg, _ = wechat_complaint()
        w = Wired(wx, Keys({}))
        await w.notifier.on_registered(None, reg.to_bytes())
        # When the acknowledgement is dispatched, Then it fails for good, and nobody is asked to call
        await w.dispatcher.dispatch(logic.WECHAT)
        assert w.records()[-1] == ("acknowledgement", "customer", "failed")
        assert not any(r[0] == "sla_warning" for r in w.records()) and wx.sends == 0
    run(scenario)


def test_a_call_back_record_is_no_notice_to_the_clocks_but_the_desks_contact_record_is() -> None:
    from schemas.casework import ContactRecord
    from services.sla_monitor.facts import facts_of

    # Given a result recorded callback_required, and its call-back task sent to the owner
    reg, _ = wechat_complaint()
    result = acknowledgement(reg.data, templates=POLICY.notifier).model_copy(
        update={"kind": NotificationKind.result, "notification_id": "n-result"})
    task = callback_task(result, why="refused", language="zh")
    needed = record(result.notification_id, "C-1", result.kind, "wechat", "callback_required", now=T0,
                    cause=None, note=result)
    told = record(task.notification_id, "C-1", task.kind, "chat:first_contact_owner", "sent", now=T0,
                  cause=None, note=task)
    # Then neither meets the feedback milestone (a sent result would: notified:result) ...
    assert facts_of(needed) == [] and ["notified:result"] not in [f.signals for f in facts_of(told)]
    # ... the desk's contact record that reached the customer does
    contacted = CaseEvent.new(CaseUpdate(complaint_id="C-1", action=CaseAction.contacted, actor="wechat-desk",
                                         contact=ContactRecord(kind="chat", purpose="feedback", reached=True)),
                              source="desk", time=T0, subject="C-1")
    assert "contacted:feedback" in facts_of(contacted)[0].signals
    # and the task's text is in the staff language, naming what to record
    assert "联系记录（目的：结果反馈）" in task.body and task.notification_id != result.notification_id


def test_with_stable_tokens_a_refused_token_is_forced_anew_only_when_wechat_still_hands_it_out() -> None:
    async def scenario(wx: FakeWeChat) -> None:
        # Given an instance on the stable token API whose token WeChat now refuses (replaced elsewhere)
        wx.follower_wrote(OPENID)
        t = transport(wx, token_api="stable_token")
        await t.send(note())
        wx.replace_tokens()
        # When it sends, Then it asks for the stable token (a new one now) and does not force a refresh
        await t.send(note(kind=NotificationKind.revisit))
        assert wx.token_fetches == 2 and len(wx.sent) == 2
        # Given the stable token refused while WeChat still hands it out (errcode 40001 scripted)
        wx.faults.append(40001)
        await t.send(note(kind=NotificationKind.reopened))
        # Then the refresh is forced: a new token, and the message delivered
        assert wx.token_fetches == 4 and len(wx.sent) == 3
    run(scenario)
