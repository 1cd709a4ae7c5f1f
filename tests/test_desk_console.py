"""The staff console over real HTTP (aiohttp's test client on the desk's faust web app) against
a real archive database (SQLite, migrated), publishing into a recording publisher: pages in zh
and en, sign-in and sign-out, forms that publish the case event with the token's actor, CSRF
refusals, 403 pages naming the rule, no personal data beyond the masked contact; and the
console's pure parts (language choice, remaining time, form bodies) as tables."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import Engine, insert

from schemas.events import Contact
from services.archive.database import make_engine, upgrade
from services.archive.tables import cases, events, sla
from services.common.policy import load_policy
from services.desk.app import build
from services.desk.console.forms import body_of
from services.desk.console.i18n import NAMES, TEXT, Words, choose_lang
from services.desk.console.pages import remaining
from services.desk.handlers import Invalid
from services.desk.settings import DeskSettings
from services.intake.logic import customer_key
from tests.fakes import FixedClock, RecordingPublisher
from tests.test_desk_http import IDENTITY_KEY, NOW, PHONE, SECRET, case, clock_row, event, token

Client = TestClient  # type: ignore[type-arg]
Scenario = Callable[[Client], Awaitable[None]]


@pytest.fixture
def archive(tmp_path: Path) -> Iterator[Engine]:
    """Given an archive: ann's quality case A1 (planned deadline, a proposal), an unassigned U1,
    billing's X2."""
    eng = make_engine(f"sqlite:///{tmp_path / 'archive.sqlite3'}")
    upgrade(eng)
    key = customer_key(Contact(phone=PHONE), account=None, secret=IDENTITY_KEY.encode())
    with eng.begin() as conn:
        conn.execute(insert(cases), [
            case("A1", handler="ann", department="quality", customer_key=key, product="X200",
                 code_name_zh="产品质量", code_name_en="Product quality"),
            case("U1", handler=None, department="quality"),
            case("X2", handler="sam", department="billing", customer_key=key),
        ])
        conn.execute(insert(sla), [clock_row("A1", "plan", NOW + timedelta(hours=2, minutes=5)),
                                   clock_row("A1", "respond", NOW - timedelta(minutes=10), outcome="met")])
        conn.execute(insert(events), [
            event("A1", "reg-A1", "registered", "intake", type_="complaint.registered",
                  summary={"customer_key": key, "contact_masked": {"phone": "+86*****8000"}}),
            event("A1", "ack-A1", "acknowledged", "ann", minutes=10, summary={"note": "called back"}),
            event("A1", "prop-A1", "resolution_proposed", "bob", minutes=20),
        ])
    yield eng
    eng.dispose()


def run(tmp_path: Path, archive: Engine, scenario: Scenario, **env: str) -> RecordingPublisher:
    """Run the scenario against the desk's listener; return what the desk published."""
    settings = DeskSettings(**{"COMPLAINTS_DATA_DIR": str(tmp_path), "DESK_JWT_SECRET": SECRET,
                               "ARCHIVE_DATABASE_URL": str(archive.url),
                               "INTAKE_IDENTITY_KEY": IDENTITY_KEY, **env})
    publisher = RecordingPublisher()
    app = build(settings, load_policy(), publisher=publisher, clock=FixedClock(NOW))

    async def go() -> None:
        async with TestClient(TestServer(app.web.web_app)) as client:
            await scenario(client)

    asyncio.run(go())
    return publisher


async def sign_in(client: Client, jwt: str, lang: str = "en") -> ClientResponse:
    """Paste the token on the sign-in page (the browser's way)."""
    return await client.post(f"/desk/signin?lang={lang}", data={"token": jwt, "next": "/desk/lists/mine"},
                             allow_redirects=False)


async def page(client: Client, path: str, status: int = 200) -> str:
    response = await client.get(path, allow_redirects=False)
    text = await response.text()
    assert response.status == status, (path, response.status, text[:500])
    return text


async def csrf_and_key(client: Client, cid: str) -> dict[str, str]:
    html = await page(client, f"/desk/cases/{cid}")
    return {"csrf": re.search(r'name="csrf" value="([0-9a-f]+)"', html).group(1),  # type: ignore[union-attr]
            "key": "form-key-1"}


ALL_PAGES = ["/desk/lists/mine", "/desk/lists/department", "/desk/lists/review", "/desk/lists/unassigned",
             "/desk/lists/overdue", "/desk/search", "/desk/search?number=A", "/desk/cases/A1", "/desk/report"]


@pytest.mark.parametrize(("lang", "words"), [("zh", ["我的案件", "处理时限", "剩余"]),
                                             ("en", ["My cases", "Deadlines", "left"])])
def test_every_page_renders_in_both_languages(tmp_path: Path, archive: Engine, lang: str,
                                              words: list[str]) -> None:
    seen: dict[str, str] = {}

    async def scenario(client: Client) -> None:
        # Given a supervisor signed in with ?lang= (the choice is kept in a cookie)
        assert (await sign_in(client, token("sue", "supervisor"), lang)).status == 303
        # When every page is opened without a language in the URL
        for path in ALL_PAGES:
            seen[path] = await page(client, path)

    run(tmp_path, archive, scenario)
    # Then each is a page in that language, and the case page counts down the plan deadline
    for path, html in seen.items():
        assert f'<html lang="{"zh-CN" if lang == "zh" else "en"}">' in html, path
        assert words[0] in html, path
    case_page = seen["/desk/cases/A1"]
    assert words[1] in case_page and re.search(r'data-deadline="2026-11-23T11:05:00\+00:00">[^<]*2', case_page)
    assert ("剩余 2小时05分" if lang == "zh" else "2 h 05 min left") in case_page
    assert 'src="/desk/report/view?month=2026-11' in seen["/desk/report"]


def test_the_language_follows_the_browser_until_chosen(tmp_path: Path, archive: Engine) -> None:
    async def scenario(client: Client) -> None:
        zh = await client.get("/desk/signin", headers={"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"})
        assert "粘贴您的员工令牌" in await zh.text()
        en = await client.get("/desk/signin", headers={"Accept-Language": "en-GB,en;q=0.9"})
        assert "Paste your staff token" in await en.text()
        await client.get("/desk/signin?lang=en")  # chosen: the cookie wins over the browser
        again = await client.get("/desk/signin", headers={"Accept-Language": "zh-CN"})
        assert "Paste your staff token" in await again.text()

    run(tmp_path, archive, scenario)


@pytest.mark.parametrize("secure", [True, False])
def test_signing_in_sets_a_strict_httponly_cookie_and_signing_out_clears_it(tmp_path: Path, archive: Engine,
                                                                            secure: bool) -> None:
    async def scenario(client: Client) -> None:
        # Given no session: a page redirects to sign-in, keeping where the person was going
        response = await client.get("/desk/cases/A1", allow_redirects=False)
        assert (response.status, response.headers["Location"]) == (303, "/desk/signin?next=/desk/cases/A1")
        # When a bad token is pasted: 401, the reason shown, no session cookie
        bad = await sign_in(client, "not-a-jwt")
        assert bad.status == 401 and "invalid token" in await bad.text()
        assert not [c for c in bad.headers.getall("Set-Cookie", []) if c.startswith("desk_session=")]
        # When a good one is: an HttpOnly, SameSite=Strict cookie, Secure as configured
        good = await sign_in(client, token("ann", "handler"))
        cookie = next(c for c in good.headers.getall("Set-Cookie") if c.startswith("desk_session="))
        attributes = {p.strip() for p in cookie.split(";")}
        assert {"HttpOnly", "SameSite=Strict", "Path=/desk"} <= attributes
        assert ("Secure" in attributes) is secure
        assert good.headers["Location"] == "/desk/lists/mine"
        if secure:
            return  # (the client keeps a Secure cookie off plain http, as browsers do)
        # And signing out (a form with the session's CSRF token) clears it
        csrf = (await csrf_and_key(client, "A1"))["csrf"]
        out = await client.post("/desk/signout", data={"csrf": csrf}, allow_redirects=False)
        assert out.status == 303 and 'desk_session=""' in out.headers["Set-Cookie"]
        assert (await client.get("/desk/lists/mine", allow_redirects=False)).status == 303

    run(tmp_path, archive, scenario, DESK_COOKIE_SECURE=str(secure).lower())


def test_an_expired_session_goes_back_to_sign_in_with_the_reason(tmp_path: Path, archive: Engine) -> None:
    async def scenario(client: Client) -> None:
        client.session.cookie_jar.update_cookies(
            {"desk_session": token("ann", "handler", now=NOW.timestamp() - 7200, ttl=60)})
        response = await client.get("/desk/lists/mine", allow_redirects=False)
        assert response.status == 303 and "expired" in response.headers["Location"]
        assert response.headers["Location"].startswith("/desk/signin?next=%2Fdesk%2Flists%2Fmine")

    run(tmp_path, archive, scenario)


def test_a_plan_posted_from_the_form_publishes_the_case_event_with_the_tokens_actor(tmp_path: Path,
                                                                                  archive: Engine) -> None:
    answers: list[ClientResponse] = []

    async def scenario(client: Client) -> None:
        await sign_in(client, token("ann", "handler"))
        form = {**await csrf_and_key(client, "A1"), "action": "plan_decided", "summary": "replace the unit",
                "description_0": "inspect the batch", "owner_0": "qa-7", "due_0": "2026-11-30",
                "actor": "bob"}  # a field naming someone else is ignored: the actor is the token's
        for _ in range(2):  # a double submit carries the same form key
            answers.append(await client.post("/desk/cases/A1/actions", data=form, allow_redirects=False))
        shown = await page(client, answers[0].headers["Location"])
        assert "Recorded: Record the plan" in shown

    published = run(tmp_path, archive, scenario).of_type("case.updated")
    assert [a.status for a in answers] == [303, 303]
    first, second = published
    assert first.id == second.id  # the same event id: idempotent downstream
    update = first.data
    assert (update.action.value, update.actor, update.complaint_id) == ("plan_decided", "ann", "A1")
    assert update.plan is not None and update.plan.summary == "replace the unit"
    assert [(m.description, m.owner, m.due.isoformat()) for m in update.plan.measures] == [
        ("inspect the batch", "qa-7", "2026-11-30")]


def test_a_resolution_is_a_policy_template_and_big_compensation_needs_an_approval(tmp_path: Path,
                                                                                 archive: Engine) -> None:
    pages_seen: list[str] = []

    async def scenario(client: Client) -> None:
        await sign_in(client, token("ann", "handler"))
        base = {**await csrf_and_key(client, "A1"), "action": "resolved", "solution": "repair",
                "party_at_fault": "company", "root_cause": "PQ-01", "template": "repaired",
                "field_product": "X200", "field_date": "2026-11-25", "currency": "CNY"}
        ok = await client.post("/desk/cases/A1/actions", data=base, allow_redirects=False)
        assert ok.status == 303
        for extra in ({"amount": "800", "key": "k-2"}, {"field_date": "", "key": "k-3"}):
            refused = await client.post("/desk/cases/A1/actions", data={**base, **extra})
            assert refused.status == 422
            pages_seen.append(await refused.text())

    (resolved,) = run(tmp_path, archive, scenario).of_type("case.updated")
    assert (resolved.data.actor, resolved.data.result) == (
        "ann", "Your X200 has been repaired and can be collected from 2026-11-25.")
    assert resolved.data.outcome is not None and resolved.data.outcome.template == "repaired"
    assert "needs an approval" in pages_seen[0] and 'id="field">amount' in pages_seen[0]
    assert "field_date" in pages_seen[1]


def test_a_handler_takes_an_unassigned_case_of_her_department(tmp_path: Path, archive: Engine) -> None:
    async def scenario(client: Client) -> None:
        await sign_in(client, token("ann", "handler"))
        html = await page(client, "/desk/cases/U1")
        assert 'id="form-take"' in html and 'id="form-resolved"' not in html  # only taking is offered
        csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', html).group(1)  # type: ignore[union-attr]
        response = await client.post("/desk/cases/U1/actions", allow_redirects=False, data={
            "csrf": csrf, "action": "assigned", "handler": "ann", "reason": "taken from the queue"})
        assert response.status == 303

    (taken,) = run(tmp_path, archive, scenario).of_type("case.updated")
    assert (taken.data.action.value, taken.data.actor, taken.data.assignment.handler) == (  # type: ignore[union-attr]
        "assigned", "ann", "ann")


@pytest.mark.parametrize(("form", "headers", "why"), [
    ({}, {}, "CSRF token"),                                              # no token in the form
    ({"csrf": "0" * 64}, {}, "CSRF token"),                              # another session's
    (None, {"Origin": "https://evil.example"}, "another origin"),        # the right token, posted cross-site
])
def test_a_post_without_the_sessions_csrf_token_or_from_another_origin_is_refused(
        tmp_path: Path, archive: Engine, form: dict[str, str] | None, headers: dict[str, str], why: str) -> None:
    async def scenario(client: Client) -> None:
        await sign_in(client, token("ann", "handler"))
        fields = form if form is not None else await csrf_and_key(client, "A1")
        response = await client.post("/desk/cases/A1/actions", headers=headers,
                                     data={**fields, "action": "note", "note": "x"})
        html = await response.text()
        assert response.status == 403 and 'id="rule">csrf<' in html and why in html

    assert run(tmp_path, archive, scenario).of_type("case.updated") == []


@pytest.mark.parametrize(("who", "method", "path", "data", "rule"), [
    (("ann", "handler"), "GET", "/desk/cases/X2", None, "case_scope"),            # billing's case
    (("ann", "handler"), "GET", "/desk/lists/department?department=billing", None, "case_scope"),
    (("ann", "handler"), "POST", "/desk/cases/A1/actions", {"action": "reopened"}, "role_actions"),
    (("ann", "handler"), "POST", "/desk/cases/U1/actions", {"action": "note", "note": "x"}, "take_unassigned"),
    (("al", "auditor"), "POST", "/desk/cases/A1/actions", {"action": "note", "note": "x"}, "read_only"),
    (("bob", "department_head"), "POST", "/desk/cases/A1/actions",
     {"action": "approved", "proposal": "prop-A1"}, "four_eyes"),
    (("ann", "handler"), "GET", "/desk/report", None, "report_scope"),
])
def test_a_refusal_is_a_403_page_naming_the_rule(tmp_path: Path, archive: Engine, who: tuple[str, str],
                                                 method: str, path: str, data: dict[str, str] | None,
                                                 rule: str) -> None:
    async def scenario(client: Client) -> None:
        await sign_in(client, token(*who))
        form = {**await csrf_and_key(client, "A1"), **data} if data is not None else None
        response = await client.request(method, path, data=form)
        html = await response.text()
        assert response.status == 403 and f'id="rule">{rule}<' in html, html[:2000]
        assert NAMES["rule"][rule][1] in html  # why, in the page's language (en here)
        assert "Traceback" not in html

    assert run(tmp_path, archive, scenario).of_type("case.updated") == []


def test_forms_are_offered_only_for_permitted_actions(tmp_path: Path, archive: Engine) -> None:
    seen: dict[str, str] = {}

    async def scenario(client: Client) -> None:
        for who in (("ann", "handler"), ("sue", "supervisor"), ("al", "auditor")):
            await sign_in(client, token(*who))
            seen[who[1]] = await page(client, "/desk/cases/A1")

    run(tmp_path, archive, scenario)
    forms = {role: set(re.findall(r'id="form-([a-z_]+)"', html)) for role, html in seen.items()}
    assert {"plan_decided", "resolved", "contacted"} <= forms["handler"]
    assert not {"reopened", "reclassified", "approved"} & forms["handler"]
    assert {"reopened", "reclassified", "approved"} <= forms["supervisor"]  # bob's proposal awaits sue
    assert forms["auditor"] == set() and 'id="read-only"' in seen["auditor"]


def test_pages_show_no_personal_data_beyond_the_masked_contact(tmp_path: Path, archive: Engine) -> None:
    seen: list[str] = []

    async def scenario(client: Client) -> None:
        await sign_in(client, token("sue", "supervisor"))
        seen.append(await page(client, "/desk/cases/A1"))
        seen.append(await page(client, f"/desk/search?customer={PHONE[3:]}"))

    published = run(tmp_path, archive, scenario)
    case_page, search = seen
    key = customer_key(Contact(phone=PHONE), account=None, secret=IDENTITY_KEY.encode())
    assert "+86*****8000" in case_page and 'data-id="A1"' in search and 'data-id="X2"' in search
    for html in seen:
        assert key not in html and PHONE[3:] not in html and PHONE[-8:] not in html
    assert [e.data.kind for e in published.of_type("staff.accessed")] == ["case_viewed", "customer_searched"]


def test_the_report_of_the_month_is_the_archives_html_report(tmp_path: Path, archive: Engine) -> None:
    async def scenario(client: Client) -> None:
        await sign_in(client, token("sue", "supervisor"))
        response = await client.get("/desk/report/view?month=2026-11&lang=zh")
        html = await response.text()
        assert response.status == 200 and '<svg class="chart' in html and "投诉" in html
        assert "frame-ancestors 'self'" in response.headers["Content-Security-Policy"]
        bad = await client.get("/desk/report/view?month=November")
        assert bad.status == 400 and 'id="field">month<' in await bad.text()

    run(tmp_path, archive, scenario)


# ---- pure parts ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("query", "cookie", "accept", "expected"), [
    ({"lang": "en"}, "zh", "zh-CN", "en"),               # the URL wins
    ({}, "en", "zh-CN", "en"),                           # then the cookie
    ({"lang": "fr"}, None, "en-US,en;q=0.9", "en"),      # an unknown choice is ignored
    ({}, None, "fr;q=1, zh-TW;q=0.8, en;q=0.5", "zh"),   # the best-ranked known language
    ({}, None, "en;q=0.2, zh;q=0.9", "zh"),
    ({}, None, None, "zh"),                              # nothing said: Chinese
])
def test_the_language_is_chosen_by_url_cookie_then_browser(query: dict[str, str], cookie: str | None,
                                                          accept: str | None, expected: str) -> None:
    assert choose_lang(query, cookie, accept) == expected


@pytest.mark.parametrize(("minutes", "zh", "en"), [
    (125, "剩余 2小时05分", "2 h 05 min left"), (7, "剩余 7分", "7 min left"),
    (-10, "已超时 10分", "overdue by 10 min"), (60 * 24 * 3 + 1, "剩余 3天0小时01分", "3 d 0 h 01 min left"),
])
def test_the_remaining_time_reads_in_both_languages(minutes: int, zh: str, en: str) -> None:
    now = datetime(2026, 11, 23, 9, tzinfo=UTC)
    deadline = now + timedelta(minutes=minutes)
    assert (remaining(deadline, now, Words("zh")), remaining(deadline, now, Words("en"))) == (zh, en)


def test_every_word_has_both_languages() -> None:
    assert all(zh.strip() and en.strip() for zh, en in TEXT.values())


@pytest.mark.parametrize(("action", "form", "field"), [
    ("note", {}, "note"),
    ("transferred", {"department": "billing"}, "reason"),
    ("plan_decided", {"summary": "s", "description_0": "d"}, "owner_0"),
    ("resolved", {"solution": "repair", "party_at_fault": "company", "root_cause": "PQ-01"}, "template"),
    ("resolved", {"template": "nope"}, "template"),
    ("resolution_proposed", {"solution": "compensation", "party_at_fault": "company", "root_cause": "PQ-01",
                             "amount": "lots", "currency": "CNY"}, "amount"),
    ("approved", {}, "proposal"),
    ("suggestion_assessed", {}, "decision"),
    ("suggestion_assessed", {"decision": "maybe"}, "decision"),
    ("suggestion_assessed", {"decision": "declined", "measure": "m"}, "reason"),
])
def test_a_bad_form_names_the_field(action: str, form: dict[str, str], field: str) -> None:
    policy = load_policy()
    with pytest.raises(Invalid) as caught:
        body_of(action, form, timeline=[], templates=policy.result_templates, resolution=policy.resolution,
                lang="en")
    assert caught.value.field == field


@pytest.mark.parametrize(("lang", "expected", "absent"), [
    ("zh", ["开始计时", "时限", "处理方案", "期限", "2026-11-24 01:00 UTC", "解决方式: 维修", "责任方: 公司",
            "模板字段: date=2026-12-10"], ["{", "2026-11-24T01:00", "milestone", "solution"]),
    ("en", ["Clock started", "milestone", "plan", "deadline", "2026-11-24 01:00 UTC", "solution: repair",
            "party at fault: company"], ["{", "2026-11-24T01:00"]),
])
def test_the_timeline_reads_in_the_pages_language(lang: str, expected: list[str], absent: list[str]) -> None:
    # Given a clock's start and a resolution with a structured outcome, as archived
    from services.desk.console.i18n import Words
    from services.desk.console.pages import timeline_view

    events = [
        {"time": NOW, "actor": "sla-monitor", "type": "sla.alert", "action": "started",
         "summary": {"milestone": "plan", "cycle": 1, "deadline": "2026-11-24T09:00:00+08:00"}},
        {"time": NOW, "actor": "ann", "type": "case.updated", "action": "resolved",
         "summary": {"result": "repaired", "outcome": {
             "solution": "repair", "party_at_fault": "company", "root_cause": "PQ-01",
             "template": "repaired", "fields": {"date": "2026-12-10"}}}}]
    # When the case page shows them in the language
    lines = timeline_view(events, Words(lang))  # type: ignore[arg-type]
    text = " ".join(f"{e['action']} " + " ".join(f"{k}: {v}" for k, v in e["details"]) for e in lines)
    # Then names, times and the outcome read in that language: no raw keys, ISO times or dicts
    for word in expected:
        assert word in text, (word, text)
    for word in absent:
        assert word not in text, (word, text)


def test_a_suggestion_gets_the_assessment_form_and_a_complaint_does_not(tmp_path: Path, archive: Engine) -> None:
    # Given a suggestion booked to ann beside her complaint A1
    with archive.begin() as conn:
        conn.execute(insert(cases), [case("S1", handler="ann", department="quality", nature="suggestion")])
    shown: dict[str, str] = {}
    answers: list[ClientResponse] = []

    async def scenario(client: Client) -> None:
        await sign_in(client, token("ann", "handler"), lang="zh")
        shown["zh"] = await page(client, "/desk/cases/S1")
        shown["complaint"] = await page(client, "/desk/cases/A1")
        await page(client, "/desk/cases/S1?lang=en")
        shown["en"] = await page(client, "/desk/cases/S1")
        # When she adopts it from the form, and posts the same form on the complaint
        form = {**await csrf_and_key(client, "S1"), "action": "suggestion_assessed", "decision": "adopted",
                "reason": "", "measure": "open till ten"}
        answers.append(await client.post("/desk/cases/S1/actions", data=form, allow_redirects=False))
        shown["done"] = await page(client, answers[0].headers["Location"])
        form = {**await csrf_and_key(client, "A1"), "action": "suggestion_assessed", "decision": "declined",
                "reason": "no"}
        answers.append(await client.post("/desk/cases/A1/actions", data=form, allow_redirects=False))
        shown["refused"] = await answers[1].text()

    published = run(tmp_path, archive, scenario).of_type("case.updated")
    # Then the form is on the suggestion's page, in both languages, and not on the complaint's
    assert 'id="form-suggestion_assessed"' in shown["zh"] and "评估建议" in shown["zh"]
    assert "不予采纳" in shown["zh"] and "建议" in shown["zh"]
    assert 'id="form-suggestion_assessed"' in shown["en"] and "Assess the suggestion" in shown["en"]
    assert 'id="form-suggestion_assessed"' not in shown["complaint"]
    assert "Recorded: Assess the suggestion" in shown["done"]
    # And the adoption is published under her id; the complaint's is a 409 page, nothing published
    assert answers[0].status == 303 and answers[1].status == 409 and "is a complaint" in shown["refused"]
    (update,) = [e.data for e in published]
    assert (update.action.value, update.actor, update.complaint_id) == ("suggestion_assessed", "ann", "S1")
    assert update.assessment is not None
    assert (update.assessment.decision, update.assessment.reason, update.assessment.measure) == (
        "adopted", None, "open till ten")
