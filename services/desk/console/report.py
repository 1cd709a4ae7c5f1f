"""The console's monthly report: the archive's own HTML report (services/archive/reports), made
over the same database, for roles that reach the whole company or a department."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from services.archive.reports.period import PeriodError, local_date, parse_period
from services.archive.reports.render import render
from services.archive.reports.service import build_report
from services.desk.auth import Identity
from services.desk.console import web as cw
from services.desk.console.i18n import Words
from services.desk.handlers import Forbidden, Invalid
from services.desk.logic import Refused

if TYPE_CHECKING:
    from services.desk.console.routes import Console, Ctx, Page

REPORT_SCOPES = frozenset({"all", "department"})


def allowed(console: Console, ctx: Ctx, who: Identity) -> None:
    """Refuse (rule ``report_scope``) a person none of whose roles reaches all or a department."""
    roles = console.desk.policy.staff.roles
    if not any(set(roles[r].scopes) & REPORT_SCOPES for r in who.roles if r in roles):
        raise Forbidden(Refused("report_scope", Words(ctx.lang)("report_scope")))


async def report_page(console: Console, ctx: Ctx, who: Identity) -> Page:
    """The console page that frames the report of a month (default: this one)."""
    allowed(console, ctx, who)
    month = ctx.request.query.get("month") or console.desk.clock().strftime("%Y-%m")
    return console.page(ctx, "report.html.j2", month=month,
                        src=f"/desk/report/view?{urlencode({'month': month, 'lang': ctx.lang})}")


async def report_view(console: Console, ctx: Ctx, who: Identity) -> Page:
    """The archive's HTML report of the month, in the page's language."""
    allowed(console, ctx, who)
    if console.engine is None or console.calendar is None:
        raise ConnectionError("the archive database is not configured for reports")
    policy, now = console.desk.policy, console.desk.clock()
    tz = policy.reports.timezone
    try:
        period, _ = parse_period(month=ctx.request.query.get("month"), timezone=tz, today=local_date(now, tz))
    except PeriodError as exc:
        raise Invalid(exc.option or "month", exc.problem) from None
    made = await asyncio.to_thread(build_report, console.engine, period=period, by=None, policy=policy,
                                   calendar=console.calendar, now=now)
    return 200, render(made, fmt="html", lang=ctx.lang), {"Content-Security-Policy": cw.REPORT_CSP}
