"""The desk's service layer: authenticate, read the archive, decide (``logic``), publish."""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from schemas.audit import StaffAccess, StaffAccessed
from schemas.envelope import derived_id
from schemas.events import CaseAction, CaseEvent, CaseUpdate
from schemas.topics import AUDIT, LIFECYCLE
from services.common.policy import Policy
from services.common.sealing import Erased
from services.desk import logic
from services.desk.auth import Identity, TokenVerifier, bearer
from services.desk.metrics import DeskMetrics
from services.desk.ports import CaseReader, CaseRecord, Clock, Contacts, Publisher
from services.desk.queries import Search

log = logging.getLogger(__name__)
SERVICE = "desk"
PERSONAL_FIELDS = ("customer_key", "contact_masked", "product", "store_id")


class NotFound(Exception):
    """The archive holds no such case (or event)."""


class Forbidden(Exception):
    """A permission rule refused."""

    def __init__(self, refused: logic.Refused) -> None:
        super().__init__(refused.detail)
        self.refused = refused


class Invalid(Exception):
    """A request field is wrong; ``field`` names it."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(detail)
        self.field = field


class Conflict(Exception):
    """The request refers to something the archive does not (yet) hold as it should."""


class NotConfigured(Exception):
    """A feature this deployment has not configured (its setting is named)."""


CONTACT_FIELDS = ("name", "phone", "email")  # what opening a contact reads


@dataclass
class Desk:
    """The staff desk over the archive (read) and the lifecycle and audit topics (write)."""

    policy: Policy
    reader: CaseReader
    publisher: Publisher
    verifier: TokenVerifier
    clock: Clock
    metrics: DeskMetrics
    identity_secret: bytes
    contacts: Contacts | None = None  # opens sealed contacts (PII_MASTER_KEYS); None: not configured

    async def authenticate(self, header: str | None) -> Identity:
        """The caller of a request, from its bearer token (Unauthorized otherwise)."""
        return await asyncio.to_thread(self.verifier.verify, bearer(header))

    def _refuse(self, decision: logic.Decision) -> logic.Allowed:
        if isinstance(decision, logic.Refused):
            self.metrics.refusals.labels(decision.rule).inc()
            raise Forbidden(decision)
        return decision

    async def work_list(self, kind: str, who: Identity, *, limit: int, offset: int,
                        department: str | None) -> dict[str, Any]:
        """A page of one work list, only cases the person may read."""
        if kind == "department" and department and department != who.department:
            logic_case = logic.CaseFacts(complaint_id=f"(department {department})", handler=None,
                                         department=department)
            self._refuse(logic.may_read(who, logic_case, staff=self.policy.staff))
        rows = await self.reader.work_list(kind, who, self.policy.staff, now=self.clock(), limit=limit,
                                           offset=offset, department=department)
        return logic.page(rows, limit=limit, offset=offset)

    async def search(self, who: Identity, filters: Search, *, customer: str | None, limit: int,
                     offset: int) -> dict[str, Any]:
        """A page of search results; a customer search is recorded as an access to personal data."""
        if customer is not None:
            try:
                key = logic.customer_key_of(customer, region=self.policy.intake.default_region,
                                            secret=self.identity_secret)
            except ValueError as exc:
                raise Invalid("customer", str(exc)) from None
            filters = Search(**{**filters.__dict__, "customer_key": key})
        rows = await self.reader.search(filters, who, self.policy.staff, limit=limit, offset=offset)
        found = logic.page(rows, limit=limit, offset=offset)
        if customer is not None:
            await self._record_access(who, kind="customer_searched", complaint_id=None,
                                      complaint_ids=[r["complaint_id"] for r in found["items"]],
                                      granted_by=",".join(who.roles))
        return found

    async def _case(self, complaint_id: str) -> tuple[CaseRecord, logic.CaseFacts]:
        record = await self.reader.case(complaint_id)
        if record is None:
            raise NotFound(complaint_id)
        row = record.row
        return record, logic.CaseFacts(complaint_id=complaint_id, handler=row.get("handler"),
                                       department=row.get("department"), review=bool(row.get("review")),
                                       co_handlers=logic.co_handlers(record.timeline))

    async def case_page(self, who: Identity, complaint_id: str) -> dict[str, Any]:
        """The case page; reading it is recorded on complaints.audit before it is answered."""
        record, facts = await self._case(complaint_id)
        allowed = self._refuse(logic.may_read(who, facts, staff=self.policy.staff))
        await self._record_access(who, kind="case_viewed", complaint_id=complaint_id, complaint_ids=[],
                                  granted_by=f"{allowed.role}:{allowed.scope}")
        now, due_soon = self.clock(), self.policy.staff.due_soon.total_seconds()
        deadlines = [{**d, "state": logic.deadline_state(d["outcome"], d["deadline"], now=now,
                                                         due_soon_seconds=due_soon)}
                     for d in record.deadlines]
        row = record.row
        return {
            "case": row, "timeline": record.timeline, "deadlines": deadlines,
            "owners": {"first_contact_owner": row.get("first_contact_owner"), "handler": row.get("handler"),
                       "department": row.get("department"), "level": row.get("level"),
                       "co_handlers": sorted(facts.co_handlers)},
            "actions": logic.permitted_actions(
                who, facts, [a.value for a in CaseAction if logic.fits_nature(a.value, row.get("nature"))],
                staff=self.policy.staff),
        }

    async def contact(self, who: Identity, complaint_id: str) -> dict[str, Any]:
        """The case's contact in clear, for a person who may record a contact on the case (call
        the customer back); the read is recorded on complaints.audit before the contact is opened.

        ``state``: ``open`` (name, phone, e-mail in clear), ``erased`` (the customer's data key was
        deleted: `complaints erase-customer`), ``none`` (no contact details were given) or
        ``expired`` (intake no longer keeps the complaint's registration).
        """
        record, facts = await self._case(complaint_id)
        allowed = self._refuse(logic.may_act(who, facts, logic.ActionRequest(CaseAction.contacted.value),
                                             staff=self.policy.staff))
        if self.contacts is None:
            raise NotConfigured("opening contacts needs PII_MASTER_KEYS (docs/privacy.md)")
        await self._record_access(who, kind="case_viewed", complaint_id=complaint_id, complaint_ids=[],
                                  granted_by=f"{allowed.role}:{allowed.scope}", fields=CONTACT_FIELDS)
        masked = record.row.get("contact_masked")
        sealed = await self.contacts.contact(complaint_id)
        out: dict[str, Any] = {"complaint_id": complaint_id, "masked": masked}
        if sealed is None:
            return {**out, "state": "expired"}
        try:
            clear = await self.contacts.open(sealed)
        except Erased:
            return {**out, "state": "erased"}
        if not (clear.name or clear.phone or clear.email):
            return {**out, "state": "none"}
        return {**out, "state": "open", "name": clear.name, "phone": clear.phone, "email": clear.email,
                "language": clear.language}

    async def _record_access(self, who: Identity, *, kind: str, complaint_id: str | None,
                             complaint_ids: list[str], granted_by: str,
                             fields: tuple[str, ...] = PERSONAL_FIELDS) -> None:
        access = StaffAccess(actor=who.sub, roles=list(who.roles), department=who.department,
                             kind=kind,  # type: ignore[arg-type]
                             complaint_id=complaint_id, complaint_ids=complaint_ids,
                             fields=list(fields), granted_by=granted_by)
        event = StaffAccessed.new(access, source=SERVICE, time=self.clock(), subject=complaint_id)
        await self.publisher.publish(AUDIT, event)
        self.metrics.accesses.labels(kind).inc()
        log.info("access recorded event=%s complaint=%s actor=%s kind=%s", event.id, complaint_id,
                 who.sub, kind)

    async def act(self, who: Identity, complaint_id: str, body: dict[str, Any], *,
                  idempotency_key: str | None) -> CaseEvent:
        """Authorise and publish one case action; the actor is the token's subject."""
        for name in ("actor", "complaint_id"):
            if name in body:
                raise Invalid(name, f"{name} is not part of the body: the actor is the token's "
                                    f"subject and the complaint the path's")
        try:
            action = CaseAction(str(body.get("action")))
        except ValueError:
            raise Invalid("action", f"action must be one of {', '.join(a.value for a in CaseAction)}") \
                from None
        record, facts = await self._case(complaint_id)
        body = await self._with_requester(complaint_id, action, body)
        assignment = _part(body, "assignment")
        approval = _part(body, "approval")
        request = logic.ActionRequest(action.value, assign_handler=assignment.get("handler"),
                                      requester=approval.get("requester"))
        self._refuse(logic.may_act(who, facts, request, staff=self.policy.staff,
                                   approver_roles=_approver_roles(self.policy)))
        misfit = logic.nature_problem(action.value, complaint_id, record.row.get("nature"))
        if misfit is not None:
            raise Conflict(misfit)
        update = self._checked(CaseUpdate.model_validate({**body, "complaint_id": complaint_id,
                                                          "actor": who.sub}), record)
        event_id = (derived_id("desk", complaint_id, who.sub, idempotency_key) if idempotency_key
                    else str(uuid.uuid4()))
        registered = next((e for e in record.timeline if e["type"] == "complaint.registered"), None)
        event = CaseEvent.new(
            update, id=event_id, source=SERVICE, time=self.clock(), subject=complaint_id,
            correlationid=(registered["causation_id"] or registered["event_id"]) if registered else None,
            causationid=registered["event_id"] if registered else None)
        await self.publisher.publish(LIFECYCLE, event)
        self.metrics.actions.labels(action.value).inc()
        log.info("case event complaint=%s event=%s action=%s actor=%s", complaint_id, event.id,
                 action.value, who.sub)
        return event

    def _checked(self, update: CaseUpdate, record: CaseRecord) -> CaseUpdate:
        """A resolution's result template must render, and a compensation at or above the
        threshold needs an archived approval (four-eyes); the approver goes into approved_by."""
        if update.action not in (CaseAction.resolution_proposed, CaseAction.resolved):
            return update
        bad = logic.template_problem(update.outcome, templates=self.policy.result_templates)
        if bad is not None:
            raise Invalid(*bad)
        if update.action is not CaseAction.resolved:
            return update
        compensation = logic.resolution_compensation(update.outcome, record.timeline)
        approver = logic.archived_approver(compensation, record.timeline)
        self._refuse(logic.may_resolve(compensation, approver, resolution=self.policy.resolution))
        outcome = update.outcome
        if outcome is None or approver is None:
            return update
        if outcome.approved_by not in (None, approver):
            raise Invalid("outcome.approved_by", "approved_by is not the archived approval's approver")
        return update.model_copy(update={"outcome": outcome.model_copy(update={"approved_by": approver})})

    async def _with_requester(self, complaint_id: str, action: CaseAction,
                              body: dict[str, Any]) -> dict[str, Any]:
        """An approval's requester is the archived proposal's actor, whatever the body says."""
        if action is not CaseAction.approved:
            return body
        approval = body.get("approval")
        if not isinstance(approval, dict) or not isinstance(approval.get("proposal_event_id"), str):
            raise Invalid("approval.proposal_event_id", "an approval names the proposal's event id")
        proposal = await self.reader.event(complaint_id, approval["proposal_event_id"])
        if proposal is None or proposal["action"] != "resolution_proposed":
            raise Conflict(f"the archive holds no resolution proposal {approval['proposal_event_id']} "
                           f"of case {complaint_id} (yet)")
        given = approval.get("requester")
        if given is not None and given != proposal["actor"]:
            raise Invalid("approval.requester", "the requester is not the proposal's actor")
        return {**body, "approval": {**approval, "requester": proposal["actor"]}}


def _part(body: dict[str, Any], name: str) -> dict[str, Any]:
    value = body.get(name)
    return value if isinstance(value, dict) else {}


def _approver_roles(policy: Policy) -> list[str] | None:
    """resolution.approver_roles of the policy, when the policy has them."""
    resolution = getattr(policy, "resolution", None)
    roles = getattr(resolution, "approver_roles", None)
    return [str(r) for r in roles] if roles is not None else None


def as_json(value: Any) -> Any:
    """Datetimes as ISO strings, recursively (the JSON of rows and pages)."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: as_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [as_json(v) for v in value]
    return value
