"""The console's pages on the desk's listener. Reads and actions go through ``Desk`` (the same
code path as the JSON API: the actor is the token's subject).

    GET  /desk/signin  POST /desk/signin  POST /desk/signout
    GET  /desk/lists/{mine|department|review|unassigned|overdue}   GET /desk/search
    GET  /desk/cases/{id}   POST /desk/cases/{id}/actions
    GET  /desk/report?month=   GET /desk/report/view?month=   (the archive's HTML report)

401 redirects to sign-in; 403 is a page naming the rule; every other error a page, never a
traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import quote, urlencode

import faust
from aiohttp import web
from faust.web import Request, Response, View
from pydantic import ValidationError
from sqlalchemy import Engine

from services.common.errors import is_transient
from services.desk.auth import Identity, Unauthorized
from services.desk.console import forms, pages, report
from services.desk.console import web as cw
from services.desk.console.i18n import Lang, Words
from services.desk.handlers import Conflict, Desk, Forbidden, Invalid, NotFound
from services.desk.http import search_filters
from services.desk.queries import LISTS
from services.desk.settings import DeskSettings
from services.sla_monitor.calendar import BusinessCalendar

log = logging.getLogger(__name__)
Page = tuple[int, str, dict[str, str]]


@dataclass
class Ctx:
    """One request as the console sees it."""

    request: web.Request
    lang: Lang
    token: str | None
    who: Identity | None = None


class Redirect(Exception):
    """Answer with a 303 to this location."""

    def __init__(self, location: str) -> None:
        super().__init__(location)
        self.location = location


@dataclass
class Console:
    """The console over one desk; ``engine`` and ``calendar`` serve the monthly report."""

    desk: Desk
    settings: DeskSettings
    engine: Engine | None
    calendar: BusinessCalendar | None

    def page(self, ctx: Ctx, name: str, *, status: int = 200, **context: Any) -> Page:
        html, csp = cw.render(name, lang=ctx.lang, path=ctx.request.path, who=ctx.who,
                              session_token=ctx.token, **context)
        return status, html, {"Content-Security-Policy": csp}

    async def signed_in(self, ctx: Ctx) -> Identity:
        if ctx.token is None:
            raise Redirect(f"/desk/signin?next={quote(ctx.request.path_qs)}")
        try:
            ctx.who = await self.desk.authenticate(f"Bearer {ctx.token}")
        except Unauthorized as exc:
            raise Redirect(f"/desk/signin?{urlencode({'next': ctx.request.path_qs, 'why': str(exc)})}") \
                from None
        return ctx.who

    def error(self, ctx: Ctx, status: int, detail: str, **more: Any) -> Page:
        rule = more.get("rule")
        why = Words(ctx.lang).name("rule", rule) if rule else ""
        return self.page(ctx, "error.html.j2", status=status, status_code=status, detail=detail,
                         rule=rule, why=why if why != rule else "", field=more.get("field"),
                         errors=more.get("errors", []))

    async def guarded(self, ctx: Ctx, handle: Callable[[Ctx], Awaitable[Page]]) -> Page | Redirect:
        """Run a page; every failure becomes its page (or the redirect to sign-in)."""
        try:
            return await handle(ctx)
        except Redirect as exc:
            return exc
        except cw.CsrfRefused as exc:
            return self.error(ctx, 403, f"{Words(ctx.lang)('csrf')} ({exc})", rule="csrf")
        except Forbidden as exc:
            return self.error(ctx, 403, exc.refused.detail, rule=exc.refused.rule)
        except Invalid as exc:
            return self.error(ctx, 422 if ctx.request.method == "POST" else 400, str(exc), field=exc.field)
        except ValidationError as exc:
            return self.error(ctx, 422, "the action violates the case event schema", errors=[
                (".".join(str(p) for p in e["loc"]) or "(body)", e["msg"]) for e in exc.errors()])
        except NotFound as exc:
            return self.error(ctx, 404, f"the archive holds no complaint {str(exc)!r}")
        except Conflict as exc:
            return self.error(ctx, 409, str(exc))
        except Exception as exc:  # the console's one boundary: a page, never a traceback
            if is_transient(exc):  # the archive's database or the broker does not answer now
                return self.error(ctx, 503, type(exc).__name__)
            log.exception("console page %s failed", ctx.request.path)
            return self.error(ctx, 500, "see the desk's log")

    # ---- pages ----------------------------------------------------------------------------

    async def signin_form(self, ctx: Ctx) -> Page:
        query = ctx.request.query
        return self.page(ctx, "signin.html.j2", status=401 if query.get("why") else 200,
                         next=cw.safe_next(query.get("next")), why=query.get("why") or "",
                         out=bool(query.get("out")))

    async def work_list(self, ctx: Ctx, kind: str) -> Page:
        who = await self.signed_in(ctx)
        if kind not in LISTS:
            raise NotFound(f"list {kind}")
        query = ctx.request.query
        offset = _offset(query)
        found = await self.desk.work_list(kind, who, limit=self.settings.page_size, offset=offset,
                                          department=query.get("department") or None)
        return self.listing(ctx, f"list_{kind}", found, overdue=kind == "overdue")

    def listing(self, ctx: Ctx, title: str, found: Mapping[str, Any], *, overdue: bool = False,
                **more: Any) -> Page:
        words, now = Words(ctx.lang), self.desk.clock()
        rows = [pages.row_view(r, now=now, words=words) for r in found["items"]]
        query = {k: v for k, v in ctx.request.query.items() if k != "offset"}
        nxt = found["next_offset"]
        prev = max(0, found["offset"] - found["limit"]) if found["offset"] else None

        def link(at: int) -> str:
            return f"{ctx.request.path}?{urlencode({**query, 'offset': at})}"
        return self.page(ctx, "list.html.j2", title=title, rows=rows, overdue=overdue,
                         next_link=link(nxt) if nxt is not None else "",
                         prev_link=link(prev) if prev is not None else "", **more)

    async def search(self, ctx: Ctx) -> Page:
        who = await self.signed_in(ctx)
        query = dict(ctx.request.query)
        filled = {k: v for k, v in query.items() if v and k not in ("lang", "offset")}
        found: dict[str, Any] = {"items": [], "offset": 0, "limit": 0, "next_offset": None}
        if filled:
            found = await self.desk.search(who, search_filters(query), customer=query.get("customer") or None,
                                           limit=self.settings.page_size, offset=_offset(query))
        return self.listing(ctx, "search", found, searching=True, query=query, searched=bool(filled))

    async def case(self, ctx: Ctx, complaint_id: str) -> Page:
        who = await self.signed_in(ctx)
        page = await self.desk.case_page(who, complaint_id)
        view = pages.case_view(page, who=who.sub, now=self.desk.clock(), words=Words(ctx.lang),
                               templates=self.desk.policy.result_templates)
        query = ctx.request.query
        return self.page(ctx, "case.html.j2", done=query.get("done") or "",
                         done_event=query.get("event") or "", **view)

    async def act(self, ctx: Ctx, complaint_id: str) -> Page:
        form = await _form(ctx.request, limit=self.settings.max_body_bytes)
        request = ctx.request
        cw.check_post(form, session_token=ctx.token, origin=request.headers.get("Origin"), host=request.host)
        who = await self.signed_in(ctx)
        action = form.get("action") or ""
        if action not in forms.ORDER:
            raise Invalid("action", f"unknown action {action!r}")
        record = await self.desk.reader.case(complaint_id)
        if record is None:
            raise NotFound(complaint_id)
        policy = self.desk.policy
        body = forms.body_of(action, form, timeline=record.timeline, templates=policy.result_templates,
                             resolution=policy.resolution, lang=ctx.lang)
        event = await self.desk.act(who, complaint_id, body, idempotency_key=form.get("key") or None)
        raise Redirect(f"/desk/cases/{quote(complaint_id)}?{urlencode({'done': action, 'event': event.id})}")

    async def report(self, ctx: Ctx) -> Page:
        return await report.report_page(self, ctx, await self.signed_in(ctx))

    async def report_view(self, ctx: Ctx) -> Page:
        return await report.report_view(self, ctx, await self.signed_in(ctx))


def _offset(query: Mapping[str, str]) -> int:
    raw = query.get("offset") or "0"
    if not raw.isdigit() or int(raw) > 10_000_000:
        raise Invalid("offset", "offset must be a whole number")
    return int(raw)


async def _form(request: web.Request, *, limit: int) -> dict[str, str]:
    if request.content_length is not None and request.content_length > limit:
        raise Invalid("(body)", f"the form exceeds {limit} bytes")
    data = await request.post()
    return {k: v for k, v in data.items() if isinstance(v, str)}


def add_console(app: faust.App, console: Console) -> None:
    """Serve the console's pages on the desk's faust web server."""
    settings = console.settings

    async def serve(view: View, request: Request, handle: Callable[[Ctx], Awaitable[Page]]) -> Response:
        raw = cast(web.Request, request)
        lang = cw.language(raw.query, raw.cookies, raw.headers.get("Accept-Language"))
        ctx = Ctx(raw, lang, raw.cookies.get(cw.SESSION_COOKIE) or None)
        answer = await console.guarded(ctx, handle)
        if isinstance(answer, Redirect):
            response = view.bytes(b"", status=303, headers={"Location": answer.location})
        else:
            status, html, headers = answer
            response = view.html(html, status=status, headers=headers)
            console.desk.metrics.requests.labels("console", str(status)).inc()
        headers_out = cast(web.Response, response)
        headers_out.headers["Cache-Control"] = "no-store"
        headers_out.headers["X-Content-Type-Options"] = "nosniff"
        if raw.query.get("lang") == lang:
            headers_out.set_cookie(cw.LANG_COOKIE, lang, path="/desk", samesite="Strict", max_age=31_536_000)
        return response

    @app.page("/desk/signin")
    class SignIn(View):
        async def get(self, request: Request) -> Response:
            return await serve(self, request, console.signin_form)

        async def post(self, request: Request) -> Response:
            token_box: list[str] = []

            async def handle(ctx: Ctx) -> Page:
                form = await _form(ctx.request, limit=settings.max_body_bytes)
                cw.check_post(form, session_token=None, origin=ctx.request.headers.get("Origin"),
                              host=ctx.request.host, need_session=False)
                token = (form.get("token") or "").strip()
                try:
                    ctx.who = await console.desk.authenticate(f"Bearer {token}")
                except Unauthorized as exc:
                    return console.page(ctx, "signin.html.j2", status=401, why=str(exc), out=False,
                                        next=cw.safe_next(form.get("next")))
                token_box.append(token)
                raise Redirect(cw.safe_next(form.get("next")))
            response = await serve(self, request, handle)
            if token_box:
                cast(web.Response, response).set_cookie(cw.SESSION_COOKIE, token_box[0],
                                                        **cw.cookie_options(secure=settings.cookie_secure))
            return response

    @app.page("/desk/signout")
    class SignOut(View):
        async def post(self, request: Request) -> Response:
            async def handle(ctx: Ctx) -> Page:
                form = await _form(ctx.request, limit=settings.max_body_bytes)
                cw.check_post(form, session_token=ctx.token, origin=ctx.request.headers.get("Origin"),
                              host=ctx.request.host)
                raise Redirect("/desk/signin?out=1")
            response = await serve(self, request, handle)
            if cast(web.Response, response).status == 303:
                cast(web.Response, response).del_cookie(cw.SESSION_COOKIE, path="/desk")
            return response

    @app.page("/desk/lists/{kind}")
    class Lists(View):
        async def get(self, request: Request, kind: str) -> Response:
            return await serve(self, request, lambda ctx: console.work_list(ctx, kind))

    @app.page("/desk/search")
    class SearchPage(View):
        async def get(self, request: Request) -> Response:
            return await serve(self, request, console.search)

    @app.page("/desk/cases/{complaint_id}")
    class CasePage(View):
        async def get(self, request: Request, complaint_id: str) -> Response:
            return await serve(self, request, lambda ctx: console.case(ctx, complaint_id))

    @app.page("/desk/cases/{complaint_id}/actions")
    class Actions(View):
        async def post(self, request: Request, complaint_id: str) -> Response:
            return await serve(self, request, lambda ctx: console.act(ctx, complaint_id))

    @app.page("/desk/report")
    class ReportPage(View):
        async def get(self, request: Request) -> Response:
            return await serve(self, request, console.report)

    @app.page("/desk/report/view")
    class ReportView(View):
        async def get(self, request: Request) -> Response:
            return await serve(self, request, console.report_view)

    @app.page("/desk")
    class Home(View):
        async def get(self, request: Request) -> Response:
            return self.bytes(b"", status=303, headers={"Location": cw.HOME})
