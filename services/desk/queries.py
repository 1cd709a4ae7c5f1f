"""The desk's reads of the archive (SQLAlchemy Core over services/archive/tables.py; blocking:
the HTTP layer runs them in a worker thread). Every list is filtered by ``readable``, the SQL
form of ``logic.may_read`` (the desk's tests hold the two to the same answers), and ordered
totally (ties broken by complaint id), so offset paging is stable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, and_, false, func, literal, or_, select, true

from services.archive.tables import cases, events, sla
from services.common.policy import StaffPolicy
from services.desk.auth import Identity
from services.desk.logic import OPEN_STATUSES

LIST_COLUMNS = (cases.c.complaint_id, cases.c.status, cases.c.channel, cases.c.nature, cases.c.code,
                cases.c.code_name_zh, cases.c.code_name_en, cases.c.severity, cases.c.level,
                cases.c.department, cases.c.handler, cases.c.review, cases.c.first_contact_owner,
                cases.c.received_at, cases.c.last_event_time)
LISTS = ("mine", "department", "review", "unassigned", "overdue")


@dataclass(frozen=True)
class Search:
    """The filters of a search; every one optional, all of them must hold."""

    number: str | None = None
    status: str | None = None
    code: str | None = None
    severity: str | None = None
    channel: str | None = None
    handler: str | None = None
    department: str | None = None
    received_from: datetime | None = None
    received_to: datetime | None = None
    customer_key: str | None = None


def booked_to(who: Identity) -> ColumnElement[bool]:
    """SQL: the cases booked to this person, as handler or as a co-handler (the archive's
    ``co_handlers`` column: "handler@department, ..." in the order added)."""
    co = (literal(", ") + func.coalesce(cases.c.co_handlers, "")).contains(f", {who.sub}@", autoescape=True)
    return or_(cases.c.handler == who.sub, co)


def readable(who: Identity, staff: StaffPolicy) -> ColumnElement[bool]:
    """SQL: the cases this person may read (``logic.may_read``)."""
    terms: list[ColumnElement[bool]] = []
    for name in who.roles:
        for scope in staff.roles[name].scopes if name in staff.roles else ():
            if scope == "all":
                return true()
            if scope == "review":
                terms.append(cases.c.review.is_(True))
            elif scope == "booked":
                terms.append(booked_to(who))
            elif who.department is not None and scope == "department":
                terms.append(cases.c.department == who.department)
            elif who.department is not None and scope == "department_unassigned":
                terms.append(and_(cases.c.department == who.department, cases.c.handler.is_(None)))
    return or_(*terms) if terms else false()


def _next_deadline() -> Any:
    """The case's nearest open deadline: a correlated subquery, so a page reads the clocks of
    its own cases by the SLA table's key, not every open clock of the archive."""
    return (select(func.min(sla.c.deadline))
            .where(sla.c.complaint_id == cases.c.complaint_id, sla.c.outcome == "open",
                   sla.c.deadline.is_not(None))
            .scalar_subquery().label("next_deadline"))


def _listing(where: ColumnElement[bool]) -> tuple[Select[Any], Any]:
    nxt = _next_deadline()
    return select(*LIST_COLUMNS, nxt).where(where), nxt


def work_list(conn: Connection, kind: str, who: Identity, staff: StaffPolicy, *, now: datetime,
              limit: int, offset: int, department: str | None = None) -> list[dict[str, Any]]:
    """One work list, ``limit + 1`` rows from ``offset`` (the extra row says another page exists)."""
    is_open = cases.c.status.in_(OPEN_STATUSES)
    allowed = readable(who, staff)
    if kind == "overdue":
        return _deadlines(conn, and_(is_open, allowed), now=now, due_soon=staff.due_soon,
                          limit=limit, offset=offset)
    where = {"mine": booked_to(who),
             "department": cases.c.department == (department or who.department),
             "review": cases.c.review.is_(True),
             "unassigned": cases.c.handler.is_(None)}[kind]
    query, nxt = _listing(and_(is_open, allowed, where))
    if kind == "mine":  # nearest open deadline first; none last
        order = [nxt.is_(None), nxt, cases.c.complaint_id]
    else:  # oldest waiting first
        order = [cases.c.received_at.is_(None), cases.c.received_at, cases.c.complaint_id]
    rows = conn.execute(query.order_by(*order).limit(limit + 1).offset(offset)).mappings()
    return [dict(r) for r in rows]


def _deadlines(conn: Connection, where: ColumnElement[bool], *, now: datetime, due_soon: timedelta,
               limit: int, offset: int) -> list[dict[str, Any]]:
    query = (select(*LIST_COLUMNS, sla.c.milestone, sla.c.cycle, sla.c.deadline)
             .select_from(cases.join(sla, sla.c.complaint_id == cases.c.complaint_id))
             .where(where, sla.c.outcome == "open", sla.c.deadline.is_not(None),
                    sla.c.deadline <= now + due_soon)
             .order_by(sla.c.deadline, cases.c.complaint_id, sla.c.milestone, sla.c.cycle)
             .limit(limit + 1).offset(offset))
    out = []
    for row in conn.execute(query).mappings():
        item = dict(row)
        item["state"] = "overdue" if item["deadline"] < now else "due_soon"
        out.append(item)
    return out


def search(conn: Connection, filters: Search, who: Identity, staff: StaffPolicy, *,
           limit: int, offset: int) -> list[dict[str, Any]]:
    """Cases matching every filter that this person may read, newest first."""
    c = cases.c
    terms: list[ColumnElement[bool]] = [readable(who, staff)]
    if filters.number:
        terms.append(c.complaint_id.startswith(filters.number, autoescape=True))
    for column, value in ((c.status, filters.status), (c.code, filters.code),
                          (c.severity, filters.severity), (c.channel, filters.channel),
                          (c.handler, filters.handler), (c.department, filters.department),
                          (c.customer_key, filters.customer_key)):
        if value is not None:
            terms.append(column == value)
    if filters.received_from is not None:
        terms.append(c.received_at >= filters.received_from)
    if filters.received_to is not None:
        terms.append(c.received_at < filters.received_to)
    query, _ = _listing(and_(*terms))
    query = query.order_by(c.received_at.is_(None), c.received_at.desc(), c.complaint_id.desc())
    return [dict(r) for r in conn.execute(query.limit(limit + 1).offset(offset)).mappings()]


def case_row(conn: Connection, complaint_id: str) -> dict[str, Any] | None:
    """The archived case row, or None."""
    row = conn.execute(select(cases).where(cases.c.complaint_id == complaint_id)).mappings().first()
    return dict(row) if row is not None else None


def timeline(conn: Connection, complaint_id: str) -> list[dict[str, Any]]:
    """The case's archived events in trail order (event time, then event id)."""
    query = (select(events.c.event_id, events.c.topic, events.c.type, events.c.time, events.c.actor,
                    events.c.action, events.c.causation_id, events.c.summary)
             .where(events.c.complaint_id == complaint_id).order_by(events.c.time, events.c.event_id))
    return [dict(r) for r in conn.execute(query).mappings()]


def deadlines(conn: Connection, complaint_id: str) -> list[dict[str, Any]]:
    """The case's SLA rows, by milestone then cycle."""
    query = select(sla).where(sla.c.complaint_id == complaint_id).order_by(sla.c.milestone, sla.c.cycle)
    return [dict(r) for r in conn.execute(query).mappings()]


def archived_event(conn: Connection, complaint_id: str, event_id: str) -> dict[str, Any] | None:
    """One archived event of the case, or None."""
    row = conn.execute(select(events).where(events.c.complaint_id == complaint_id,
                                            events.c.event_id == event_id)).mappings().first()
    return dict(row) if row is not None else None


def actions_by(conn: Connection, complaint_id: str, action: str, actors: Sequence[str]) -> int:
    """How many archived case events of this action by these actors the case has."""
    query = select(func.count()).select_from(events).where(
        events.c.complaint_id == complaint_id, events.c.type == "case.updated",
        events.c.action == action, events.c.actor.in_(list(actors)))
    return int(conn.execute(query).scalar_one())
