"""``GET /v1/reports/kpi``: the report's figures as JSON (``model.as_json``).

    GET /v1/reports/kpi?month=2026-11[&by=department]
    GET /v1/reports/kpi?from=2026-11-01&to=2026-11-15[&by=handler]

It needs a staff bearer token (the desk's tokens) of a role in the policy's
``staff.report_roles``. Errors are RFC 9457 problem documents: 400 for a bad period or ``by``
(``field`` names the parameter), 401 without a valid token, 403 for another role (``rule``:
report_roles), 503 while the archive database does not answer.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import faust
from faust.web import Request, Response, View
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from services.archive.adapters import DatabaseUnavailable
from services.archive.reports.model import as_json
from services.archive.reports.period import PeriodError, local_date, parse_period
from services.archive.reports.query import GROUPS
from services.archive.reports.service import build_report
from services.common.policy import Policy
from services.common.problems import BEARER_CHALLENGE, PROBLEM, problem_body
from services.desk.auth import TokenVerifier, Unauthorized, bearer
from services.desk.logic import Refused, may_read_reports
from services.sla_monitor.calendar import BusinessCalendar

log = logging.getLogger(__name__)
PATH = "/v1/reports/kpi"


def kpi(query: Mapping[str, str], *, engine: Engine, policy: Policy, calendar: BusinessCalendar,
        now: datetime) -> tuple[int, dict[str, Any]]:
    """The status and body that answer a query of ``GET /v1/reports/kpi`` (blocking)."""
    by = query.get("by") or None
    if by is not None and by not in GROUPS:
        return _problem(400, "Bad parameter", f"by must be one of {', '.join(GROUPS)}", field="by")
    tz = policy.reports.timezone
    try:
        period, _ = parse_period(month=query.get("month"), start=query.get("from"), end=query.get("to"),
                                 timezone=tz, today=local_date(now, tz))
    except PeriodError as exc:
        return _problem(400, "Bad period", exc.problem, field=exc.option)
    try:
        report = build_report(engine, period=period, by=by, policy=policy,
                              calendar=calendar, now=now)
    except (DBAPIError, PoolTimeout, DatabaseUnavailable) as exc:
        log.warning("report %s: archive database unavailable: %s", period.label, type(exc).__name__)
        return _problem(503, "Temporarily unavailable", "the archive database does not answer")
    return 200, as_json(report)


def add_report_api(app: faust.App, *, engine: Engine, policy: Policy, calendar: BusinessCalendar,
                   verifier: TokenVerifier, retry_after: int = 5) -> None:
    """Serve ``GET /v1/reports/kpi`` on the faust app's web server (the report is made in a
    worker thread, so the event loop goes on); a 503 says when to retry (``Retry-After``)."""

    @app.page(PATH)
    class KpiView(View):
        async def get(self, request: Request) -> Response:
            query = dict(request.query)
            try:
                who = await asyncio.to_thread(verifier.verify, bearer(request.headers.get("Authorization")))
            except Unauthorized as exc:
                status, body = _problem(401, "Unauthorized", str(exc))
            except ConnectionError:  # the identity provider's keys could not be fetched
                status, body = _problem(503, "Temporarily unavailable", "no staff token keys")
            else:
                decision = may_read_reports(who, staff=policy.staff)
                if isinstance(decision, Refused):
                    status, body = _problem(403, "Forbidden", decision.detail, rule=decision.rule)
                else:
                    status, body = await asyncio.to_thread(kpi, query, engine=engine, policy=policy,
                                                           calendar=calendar, now=datetime.now(UTC))
            response = self.bytes(json.dumps(body, ensure_ascii=False).encode(), status=status,
                                  content_type="application/json" if status == 200 else PROBLEM)
            if status == 401:
                response.headers.update(BEARER_CHALLENGE)
            if status == 503:  # the database (or the token keys) will be back: when to try again
                response.headers["Retry-After"] = str(retry_after)
            return response


def _problem(status: int, title: str, detail: str, **extra: Any) -> tuple[int, dict[str, Any]]:
    return status, problem_body(status, title, detail, **extra)
