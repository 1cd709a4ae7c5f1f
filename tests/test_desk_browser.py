"""The console in a real headless browser (Playwright driving Debian's Chromium, as
tests/test_report_browser.py does): a handler signs in, finds her case, records a plan and
resolves it; a handler of another department can neither list nor open it. The desk is served
for real (its aiohttp app on a free port in a thread) over a migrated SQLite archive filled
through ``SqlStore.append``; what it publishes is recorded and archived again (standing in
for Kafka and the archive service), so the case page shows the work done.

Screenshots in zh and en go to the test's tmp dir and to ``test-output/desk/`` (paths printed).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from schemas.envelope import Envelope
from schemas.events import CaseEvent, Milestone, Nature, NotificationEvent, NotificationKind, SlaOutcome
from schemas.topics import NOTIFICATIONS, TopicSpec
from services.archive.adapters import SqlStore
from services.archive.database import make_engine, upgrade
from services.archive.records import summarise
from services.common.policy import load_policy
from services.desk.app import build
from services.desk.auth import mint
from services.desk.settings import DeskSettings
from services.notifier.messages import Notification, record
from tests.test_archive_logic import Story
from tests.test_report_browser import browser  # noqa: F401 - the Chromium fixture (fails, never skips)

pytestmark = pytest.mark.integration

OUTPUT = Path(__file__).resolve().parents[1] / "test-output" / "desk"
SECRET = "desk-browser-secret-of-thirty-two-chars"


@dataclass
class ArchivingPublisher:
    """Records what is published and archives its case and notification events, as Kafka and the
    archive would (the desk publishes case events; a test publishes the notifier's records)."""

    store: SqlStore
    published: list[tuple[str, Envelope]] = field(default_factory=list)

    async def publish(self, topic: TopicSpec, event: Envelope) -> None:
        self.published.append((topic.name, event))
        if isinstance(event, CaseEvent | NotificationEvent):
            await asyncio.to_thread(self.store.append, [summarise(event)], now=datetime.now(UTC))

    async def publish_many(self, topic: TopicSpec, events: Sequence[Envelope]) -> None:
        for event in events:
            await self.publish(topic, event)

    def actions(self) -> list[tuple[str, str, str]]:
        return [(e.data.complaint_id, e.data.action.value, e.data.actor)
                for _, e in self.published if isinstance(e, CaseEvent)]


@dataclass
class Served:
    base: str
    publisher: ArchivingPublisher


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[Served]:
    """Given the desk served on a free port over an archive holding ann's quality case Q1."""
    engine = make_engine(f"sqlite:///{tmp_path / 'archive.sqlite3'}")
    upgrade(engine)
    store = SqlStore(engine)
    story = (Story("Q1", datetime.now(UTC) - timedelta(minutes=30)).register(0).route(1, 1, handler="ann")
             .sla(2, Milestone.plan, SlaOutcome.started, started=1, limit=24 * 60))
    store.append(story.archived(), now=datetime.now(UTC))
    publisher = ArchivingPublisher(store)
    settings = DeskSettings(**{"COMPLAINTS_DATA_DIR": str(tmp_path), "DESK_JWT_SECRET": SECRET,
                               "ARCHIVE_DATABASE_URL": str(engine.url)})
    ready: dict[str, Any] = {}
    started = threading.Event()
    loop = asyncio.new_event_loop()

    async def start() -> web.AppRunner:
        app = build(settings, load_policy(), publisher=publisher)
        runner = web.AppRunner(app.web.web_app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return runner

    def serve() -> None:
        asyncio.set_event_loop(loop)
        try:
            ready["runner"] = loop.run_until_complete(start())
        except Exception as exc:  # handed to the test, which fails with it
            ready["error"] = exc
        started.set()
        if "runner" in ready:
            loop.run_forever()

    thread = threading.Thread(target=serve, name="desk-browser-server", daemon=True)
    thread.start()
    assert started.wait(timeout=30), "the desk did not start"
    if "error" in ready:
        raise ready["error"]
    host, port = ready["runner"].addresses[0][:2]
    yield Served(f"http://{host}:{port}", publisher)
    asyncio.run_coroutine_threadsafe(ready["runner"].cleanup(), loop).result(timeout=30)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=30)
    loop.close()
    engine.dispose()


def staff(sub: str, role: str, department: str) -> str:
    return mint(SECRET.encode(), sub=sub, roles=[role], department=department, ttl=timedelta(hours=1),
                now=time.time())


def shoot(page: Any, tmp_path: Path, name: str) -> None:
    """A full-page screenshot in the test's tmp dir and in test-output/desk/ (paths printed)."""
    OUTPUT.mkdir(parents=True, exist_ok=True)
    for folder in (tmp_path, OUTPUT):
        target = folder / f"{name}.png"
        page.screenshot(path=str(target), full_page=True)
        print(f"screenshot: {target}")


def sign_in(page: Any, base: str, path: str, jwt: str) -> None:
    """Open a console page, get sent to sign-in, paste the token, come back."""
    page.goto(base + path)
    page.wait_for_url("**/desk/signin?**")
    page.fill("#token", jwt)
    page.click("#signin")
    page.wait_for_load_state("load")


def test_a_handler_signs_in_finds_her_case_plans_and_resolves_it(browser: Any, desk: Served,  # noqa: F811
                                                                 tmp_path: Path) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    # Given ann, a quality handler, signs in from the link to her list
    sign_in(page, desk.base, "/desk/lists/mine?lang=en", staff("ann", "handler", "quality"))
    assert page.url.endswith("/desk/lists/mine?lang=en") and page.inner_text("#me") == "ann"
    shoot(page, tmp_path, "mine-en")
    # When she finds Q1 in her list and opens it
    page.click("tr.case-row[data-id=Q1] a")
    page.wait_for_url("**/desk/cases/Q1")
    assert "left" in page.inner_text("#deadlines .countdown")  # the plan deadline counts down
    assert page.inner_text("#handler") == "ann"
    shoot(page, tmp_path, "case-en")
    # And records a plan with a corrective measure
    due = (datetime.now(UTC) + timedelta(days=7)).date().isoformat()
    page.click("#action-plan_decided summary")
    page.fill("#f-plan_decided-summary", "replace the unit and check the batch")
    page.fill("#f-plan_decided-description_0", "inspect the batch")
    page.fill("#f-plan_decided-owner_0", "qa-7")
    page.fill("#f-plan_decided-due_0", due)
    page.click("#submit-plan_decided")
    page.wait_for_selector("#done")
    assert "replace the unit and check the batch" in page.inner_text("#timeline")
    # And resolves it with the policy's "repaired" text
    page.click("#action-resolved summary")
    page.select_option("#f-resolved-solution", "repair")
    page.select_option("#f-resolved-party_at_fault", "company")
    page.select_option("#f-resolved-template", "repaired")
    page.fill("#f-resolved-field_product", "X200")
    page.fill("#f-resolved-field_date", due)
    page.click("#submit-resolved")
    page.wait_for_selector("#done")
    # Then the case shows the result, and the desk published both events as ann
    assert page.inner_text("#result") == f"Your X200 has been repaired and can be collected from {due}."
    assert desk.publisher.actions() == [("Q1", "plan_decided", "ann"), ("Q1", "resolved", "ann")]
    shoot(page, tmp_path, "case-resolved-en")
    # And the pages read in Chinese when she switches
    page.click("a[lang=zh]")
    page.wait_for_load_state("load")
    assert "处理记录" in page.inner_text("main") and page.get_attribute("html", "lang") == "zh-CN"
    shoot(page, tmp_path, "case-resolved-zh")
    page.goto(desk.base + "/desk/lists/overdue")
    shoot(page, tmp_path, "overdue-zh")
    page.close()


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_a_handler_of_another_department_cannot_see_the_case(browser: Any, desk: Served,  # noqa: F811
                                                             tmp_path: Path, lang: str) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    # Given bea, a billing handler, signed in
    sign_in(page, desk.base, f"/desk/lists/department?lang={lang}", staff("bea", "handler", "billing"))
    # Then Q1 is in none of her lists, nor found by its number
    for path in ("/desk/lists/mine", "/desk/lists/department", "/desk/lists/unassigned", "/desk/search?number=Q1"):
        page.goto(desk.base + path)
        assert page.locator("tr.case-row[data-id=Q1]").count() == 0, path
    # And opening it is refused with a page that names the rule
    response = page.goto(desk.base + "/desk/cases/Q1")
    assert response.status == 403 and page.inner_text("#rule") == "case_scope"
    assert ("无权操作" if lang == "zh" else "Not permitted") in page.inner_text("#error-title")
    shoot(page, tmp_path, f"refused-{lang}")
    assert [a for a in desk.publisher.actions()] == []
    page.close()


# a customer notification's final status -> its label on the case page, (zh, en)
LABELS = {"outboxed": ("仅写入发件箱（未送达）", "Written to the outbox (not delivered)"),
          "rate_limited": ("超出收件人限额，未发送", "Not sent: recipient limit reached")}


def test_the_case_page_names_outboxed_and_rate_limited_notifications_in_both_languages(
        browser: Any, desk: Served, tmp_path: Path) -> None:  # noqa: F811
    # Given the notifier recorded two customer notifications of Q1 on complaints.notifications:
    # the acknowledgement written to the file outbox (it reached nobody), and a result message
    # over its recipient's limit (not sent)
    now = datetime.now(UTC)
    notes = {status: Notification(notification_id=f"Q1-{kind.value}", complaint_id="Q1", kind=kind,
                                  transport="sms", address="13800138000", language="zh", subject="",
                                  body="您的投诉已受理")
             for status, kind in (("outboxed", NotificationKind.acknowledgement),
                                  ("rate_limited", NotificationKind.result))}
    records = [record(notes["outboxed"].notification_id, "Q1", notes["outboxed"].kind, "outbox", "outboxed",
                      now=now - timedelta(minutes=20), cause=None, note=notes["outboxed"], attempt=1),
               record(notes["rate_limited"].notification_id, "Q1", notes["rate_limited"].kind, "sms-gateway",
                      "rate_limited", now=now - timedelta(minutes=10), cause=None, note=notes["rate_limited"],
                      attempt=1, detail="rate limited: its recipient had 5 customer messages in this 86400 s "
                                        "window (NOTIFIER_RECIPIENT_LIMIT); not sent")]
    # (published from a thread of its own: Playwright's sync API holds this thread's event loop)
    with ThreadPoolExecutor(1) as worker:
        worker.submit(asyncio.run, desk.publisher.publish_many(NOTIFICATIONS, records)).result(timeout=30)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    # When ann opens the case, first in Chinese, then in English
    sign_in(page, desk.base, "/desk/cases/Q1?lang=zh", staff("ann", "handler", "quality"))
    for index, lang in enumerate(("zh", "en")):
        if lang == "en":
            page.click("a[lang=en]")
            page.wait_for_load_state("load")
        assert page.get_attribute("html", "lang") == ("zh-CN" if lang == "zh" else "en")
        # Then the timeline names each notification's status in the page's language, on its own line
        events = page.locator("#timeline tr.event td:nth-child(2)").all_inner_texts()
        for status, names in LABELS.items():
            assert events.count(names[index]) == 1, (lang, status, events)
            assert names[1 - index] not in page.inner_text("body"), (lang, status)
        # And no raw status word is shown anywhere on the page; the kinds are named in its language
        shown = page.inner_text("body")
        for word in ("outboxed", "rate_limited", "rate limited"):
            assert word not in shown, (lang, word)
        if lang == "zh":
            assert "受理回执" in shown and "处理结果告知" in shown, shown
            assert "acknowledgement" not in shown and "result" not in shown, shown
        # And the labels fit: the page does not scroll sideways
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), lang
        shoot(page, tmp_path, f"case-notifications-{lang}")
    page.close()


def test_a_handler_assesses_a_suggestion_in_both_languages(browser: Any, desk: Served,  # noqa: F811
                                                           tmp_path: Path) -> None:
    # Given a suggestion S1 booked to ann (a registration of nature suggestion, routed to her)
    story = Story("S1", datetime.now(UTC) - timedelta(minutes=30)).register(0)
    spec, registered = story.events[0]
    data = registered.data.model_copy(update={"nature": Nature.suggestion})
    story.events[0] = (spec, registered.model_copy(update={"data": data}))
    story.route(1, 1, handler="ann")
    desk.publisher.store.append(story.archived(), now=datetime.now(UTC))
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    # When ann opens it in Chinese, the assessment form is there with its labels
    sign_in(page, desk.base, "/desk/cases/S1?lang=zh", staff("ann", "handler", "quality"))
    assert page.inner_text("#nature") == "建议"
    page.click("#action-suggestion_assessed summary")
    labels = page.inner_text("#action-suggestion_assessed")
    assert "评估结论" in labels and "理由（不予采纳时必填）" in labels and "不予采纳" in labels
    page.select_option("#f-suggestion_assessed-decision", "declined")
    page.fill("#f-suggestion_assessed-reason", "门店营业时间由商场统一规定")
    shoot(page, tmp_path, "suggestion-form-zh")
    page.click("#submit-suggestion_assessed")
    page.wait_for_selector("#done")
    # Then the case shows the decline and its reason, and the timeline names it
    assert page.inner_text("#assessment") == "不予采纳: 门店营业时间由商场统一规定"
    assert "不予采纳" in page.inner_text("#timeline")
    # And in English, a second look adopts it with the change it brings
    page.click("a[lang=en]")
    page.wait_for_load_state("load")
    page.click("#action-suggestion_assessed summary")
    assert "Reason (required when declined)" in page.inner_text("#action-suggestion_assessed")
    page.select_option("#f-suggestion_assessed-decision", "adopted")
    page.fill("#f-suggestion_assessed-measure", "weekend opening until ten")
    shoot(page, tmp_path, "suggestion-form-en")
    page.click("#submit-suggestion_assessed")
    page.wait_for_selector("#done")
    assert page.inner_text("#assessment") == "adopted"
    assert "weekend opening until ten" in page.inner_text("#timeline")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    shoot(page, tmp_path, "suggestion-assessed-en")
    assert desk.publisher.actions() == [("S1", "suggestion_assessed", "ann")] * 2
    # And Q1, a complaint, offers no assessment
    page.goto(desk.base + "/desk/cases/Q1")
    assert page.locator("#action-suggestion_assessed").count() == 0
    page.close()
