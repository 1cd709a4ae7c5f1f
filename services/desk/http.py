"""The staff API (JSON) on the desk's own listener. Every endpoint needs a staff bearer token.

    GET  /v1/desk/me                              who the token says you are
    GET  /v1/desk/lists/{mine|department|review|unassigned|overdue}?limit=&offset=[&department=]
    GET  /v1/desk/search?number=&status=&code=&severity=&channel=&handler=&department=
                        &from=&to=&customer=&limit=&offset=
    GET  /v1/desk/cases/{id}                      the case page (the read is recorded)
    POST /v1/desk/cases/{id}/actions              a CaseUpdate without actor; Idempotency-Key

Errors are RFC 9457 problem documents: 400 bad parameter or body, 401 no valid token (with
WWW-Authenticate: Bearer), 403 refused (``rule`` names the permission rule), 404 unknown case,
409 an approval of a proposal the archive does not hold, or an assessment of a case that is no
suggestion, 413 too large, 422 invalid action, 503 while the archive database or the broker does
not answer.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import faust
from faust.web import Request, Response, View
from pydantic import ValidationError

from schemas.events import Channel, Severity
from services.common.errors import is_transient
from services.common.problems import BEARER_CHALLENGE, PROBLEM, problem_body
from services.desk.auth import Identity, Unauthorized
from services.desk.handlers import Conflict, Desk, Forbidden, Invalid, NotConfigured, NotFound, as_json
from services.desk.logic import OPEN_STATUSES
from services.desk.queries import LISTS, Search
from services.desk.settings import DeskSettings

STATUSES = (*OPEN_STATUSES, "resolved", "closed")


def _body(status: int, payload: Any, *, content_type: str = "application/json",
          headers: Mapping[str, str] | None = None) -> tuple[int, bytes, str, dict[str, str]]:
    text = json.dumps(as_json(payload), ensure_ascii=False)
    return status, text.encode(), content_type, dict(headers or {})


def problem(status: int, title: str, detail: str, **extra: Any) -> tuple[int, bytes, str, dict[str, str]]:
    """An RFC 9457 problem document."""
    headers = dict(BEARER_CHALLENGE) if status == 401 else {}
    return _body(status, problem_body(status, title, detail, **extra), content_type=PROBLEM, headers=headers)


def _int(query: Mapping[str, str], name: str, default: int, *, low: int, high: int) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise Invalid(name, f"{name} must be a whole number") from None
    if not low <= value <= high:
        raise Invalid(name, f"{name} must be between {low} and {high}")
    return value


def _choice(query: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str | None:
    value = query.get(name) or None
    if value is not None and value not in choices:
        raise Invalid(name, f"{name} must be one of {', '.join(choices)}")
    return value


def _day(query: Mapping[str, str], name: str, *, end: bool) -> datetime | None:
    raw = query.get(name) or None
    if raw is None:
        return None
    try:
        if len(raw) == 10:  # a date: from its start; `to` includes the whole day
            moment = datetime.combine(date.fromisoformat(raw), time(), UTC)
            return moment + timedelta(days=1) if end else moment
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise Invalid(name, f"{name} must be a date (2026-11-23) or an ISO time with offset") from None
    if moment.tzinfo is None:
        raise Invalid(name, f"{name} needs a UTC offset (e.g. 2026-11-23T09:00:00+08:00)")
    return moment.astimezone(UTC)


def search_filters(query: Mapping[str, str]) -> Search:
    """The search filters of a query string (Invalid names the bad parameter)."""
    code = query.get("code") or None
    if code is not None and not (len(code) == 5 and code[2] == "-" and code[:2].isupper()
                                 and code[3:].isdigit()):
        raise Invalid("code", "code must be a taxonomy code like PQ-01")
    start, end = _day(query, "from", end=False), _day(query, "to", end=True)
    if start and end and end <= start:
        raise Invalid("to", "to must be after from")
    return Search(number=query.get("number") or None, status=_choice(query, "status", STATUSES),
                  code=code, severity=_choice(query, "severity", tuple(Severity)),
                  channel=_choice(query, "channel", tuple(Channel)),
                  handler=query.get("handler") or None, department=query.get("department") or None,
                  received_from=start, received_to=end)


Handler = Callable[[Identity], Awaitable[tuple[int, bytes, str, dict[str, str]]]]


async def answer(desk: Desk, endpoint: str, authorization: str | None,
                 handle: Handler) -> tuple[int, bytes, str, dict[str, str]]:
    """Authenticate, run the handler, and turn every known error into its problem document."""
    try:
        who = await desk.authenticate(authorization)
        reply = await handle(who)
    except Unauthorized as exc:
        reply = problem(401, "Unauthorized", str(exc))
    except Forbidden as exc:
        reply = problem(403, "Forbidden", exc.refused.detail, rule=exc.refused.rule)
    except Invalid as exc:
        reply = problem(400 if endpoint != "actions" else 422, "Invalid request", str(exc), field=exc.field)
    except NotFound as exc:
        reply = problem(404, "Unknown complaint", f"the archive holds no complaint {str(exc)!r}")
    except Conflict as exc:
        reply = problem(409, "Conflict", str(exc))
    except NotConfigured as exc:
        reply = problem(501, "Not configured", str(exc))
    except ValidationError as exc:
        errors = [{"field": ".".join(str(p) for p in e["loc"]) or "(body)", "message": e["msg"]}
                  for e in exc.errors()]
        reply = problem(422, "Invalid action", "the action violates the case event schema", errors=errors)
    except Exception as exc:  # a dependency that does not answer: 503 (Retry-After), never a 500
        if not is_transient(exc):
            raise
        reply = problem(503, "Temporarily unavailable",
                        f"a dependency does not answer ({type(exc).__name__}); retry later")
    desk.metrics.requests.labels(endpoint, str(reply[0])).inc()
    return reply


def add_desk_api(app: faust.App, desk: Desk, settings: DeskSettings) -> None:
    """Serve the staff API on the faust web server of the desk's app."""

    def respond(view: View, reply: tuple[int, bytes, str, dict[str, str]]) -> Response:
        status, body, content_type, headers = reply
        response = view.bytes(body, status=status, content_type=content_type)
        for name, value in headers.items():
            response.headers[name] = value
        if status == 503:  # a dependency does not answer: when to try again
            response.headers["Retry-After"] = str(settings.http_retry_after)
        return response

    def paging(query: Mapping[str, str]) -> tuple[int, int]:
        return (_int(query, "limit", settings.page_size, low=1, high=settings.max_page_size),
                _int(query, "offset", 0, low=0, high=10_000_000))

    @app.page("/v1/desk/me")
    class MeView(View):
        async def get(self, request: Request) -> Response:
            async def handle(who: Identity) -> tuple[int, bytes, str, dict[str, str]]:
                known = [r for r in who.roles if r in desk.policy.staff.roles]
                return _body(200, {"sub": who.sub, "roles": list(who.roles), "known_roles": known,
                                   "department": who.department})
            return respond(self, await answer(desk, "me", request.headers.get("Authorization"), handle))

    @app.page("/v1/desk/lists/{kind}")
    class ListView(View):
        async def get(self, request: Request, kind: str) -> Response:
            query = dict(request.query)

            async def handle(who: Identity) -> tuple[int, bytes, str, dict[str, str]]:
                if kind not in LISTS:
                    raise Invalid("kind", f"lists are {', '.join(LISTS)}")
                limit, offset = paging(query)
                return _body(200, await desk.work_list(kind, who, limit=limit, offset=offset,
                                                       department=query.get("department") or None))
            return respond(self, await answer(desk, "lists", request.headers.get("Authorization"), handle))

    @app.page("/v1/desk/search")
    class SearchView(View):
        async def get(self, request: Request) -> Response:
            query = dict(request.query)

            async def handle(who: Identity) -> tuple[int, bytes, str, dict[str, str]]:
                filters = search_filters(query)
                limit, offset = paging(query)
                return _body(200, await desk.search(who, filters, customer=query.get("customer") or None,
                                                    limit=limit, offset=offset))
            return respond(self, await answer(desk, "search", request.headers.get("Authorization"), handle))

    @app.page("/v1/desk/cases/{complaint_id}")
    class CaseView(View):
        async def get(self, request: Request, complaint_id: str) -> Response:
            async def handle(who: Identity) -> tuple[int, bytes, str, dict[str, str]]:
                return _body(200, await desk.case_page(who, complaint_id))
            return respond(self, await answer(desk, "case", request.headers.get("Authorization"), handle))

    @app.page("/v1/desk/cases/{complaint_id}/contact")
    class ContactView(View):
        async def get(self, request: Request, complaint_id: str) -> Response:
            async def handle(who: Identity) -> tuple[int, bytes, str, dict[str, str]]:
                return _body(200, await desk.contact(who, complaint_id),
                             headers={"Cache-Control": "no-store"})
            return respond(self, await answer(desk, "contact", request.headers.get("Authorization"), handle))

    @app.page("/v1/desk/cases/{complaint_id}/actions")
    class ActionsView(View):
        async def post(self, request: Request, complaint_id: str) -> Response:
            async def handle(who: Identity) -> tuple[int, bytes, str, dict[str, str]]:
                size = request.content_length  # type: ignore[attr-defined]  # aiohttp's request
                if size is not None and size > settings.max_body_bytes:
                    return problem(413, "Payload too large", f"body exceeds {settings.max_body_bytes} bytes")
                raw: bytes = await request.read()
                if len(raw) > settings.max_body_bytes:
                    return problem(413, "Payload too large", f"body exceeds {settings.max_body_bytes} bytes")
                try:
                    body = json.loads(raw)
                except (ValueError, RecursionError) as exc:  # not JSON, nested too deep, 5000-digit int
                    return problem(400, "Malformed body", f"not JSON: {type(exc).__name__}: {exc}"[:300],
                                   field="(body)")
                if not isinstance(body, dict):
                    return problem(400, "Malformed body", "the body must be a JSON object", field="(body)")
                event = await desk.act(who, complaint_id, body,
                                       idempotency_key=request.headers.get("Idempotency-Key") or None)
                return _body(202, {"event_id": event.id, "complaint_id": complaint_id,
                                   "action": event.data.action.value, "actor": who.sub},
                             headers={"Location": f"/v1/desk/cases/{complaint_id}"})
            return respond(self, await answer(desk, "actions", request.headers.get("Authorization"), handle))
