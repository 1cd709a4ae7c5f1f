"""Intake's HTTP API: channel messages in, a complaint's state out (to staff).

    POST /v1/inbound/{channel}    a channel message, HMAC-signed (services/intake/auth.py)
    GET  /v1/complaints/{id}      the live state and timeline; a staff bearer token (the desk's
                                  tokens and read rule, policy `staff`); the read is recorded on
                                  complaints.audit

Staff work on a case goes through the desk (POST /v1/desk/cases/{id}/actions, the actor from
the token); a customer's satisfaction answer comes in as a survey_reply channel message.
/healthz and /metrics (services.common.runtime) stay open for probes and Prometheus: they carry
counts and states, no personal data.

Errors are RFC 9457 problem documents: 400 malformed, 401 unsigned or no valid staff token,
403 refused (``rule`` names the permission rule), 404 unknown, 413 too large, 415 no
Content-Type, 422 invalid, 503 while a dependency does not answer.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import faust
from faust.web import Request, Response, View
from pydantic import ValidationError
from pydantic_core import from_json

from schemas.audit import StaffAccess, StaffAccessed
from schemas.events import Channel, ComplaintRegistered, InboundMessage, InboundReceived
from schemas.topics import AUDIT
from services.common.errors import Rejected, is_transient
from services.common.problems import BEARER_CHALLENGE, PROBLEM, problem_body
from services.desk.auth import Identity, TokenVerifier, Unauthorized, bearer
from services.desk.logic import CaseFacts, Refused, co_handlers, may_read
from services.intake import auth
from services.intake.handlers import SERVICE, Intake, UnknownComplaint
from services.intake.logic import case_state
from services.intake.settings import IntakeSettings

log = logging.getLogger(__name__)
PERSONAL_FIELDS = ("subject", "first_contact")  # what the state shows of the complaint itself


def problem(view: View, status: int, title: str, detail: str, **extra: Any) -> Response:
    """An RFC 9457 problem document."""
    body = problem_body(status, title, detail, **extra)
    return view.bytes(json.dumps(body, ensure_ascii=False).encode(), status=status,
                      content_type=PROBLEM)


def unavailable(view: View, exc: BaseException, retry_after: int) -> Response:
    """503 while a dependency (Redis, the broker) does not answer; retry after ``retry_after`` s."""
    log.warning("%s %s: a dependency does not answer (%s); 503", SERVICE, view.__class__.__name__,
                type(exc).__name__)
    reply = problem(view, 503, "Temporarily unavailable",
                    f"a dependency does not answer ({type(exc).__name__}); retry later",
                    retry_after=retry_after)
    reply.headers["Retry-After"] = str(retry_after)
    return reply


def _field_errors(exc: ValidationError) -> list[dict[str, str]]:
    return [{"field": ".".join(str(p) for p in e["loc"]) or "(body)", "message": e["msg"]}
            for e in exc.errors()]


async def _read_body(view: View, request: Request, max_body: int) -> bytes | Response:
    size = request.content_length  # type: ignore[attr-defined]  # faust passes aiohttp's request
    if size is not None and size > max_body:
        return problem(view, 413, "Payload too large", f"body of {size} bytes exceeds {max_body}")
    body: bytes = await request.read()
    if len(body) > max_body:
        return problem(view, 413, "Payload too large", f"body exceeds {max_body} bytes")
    return body


class Unreadable(ValueError):
    """A body intake cannot read: 400, or 415 when it names no (or no usable) media type."""

    def __init__(self, detail: str, *, status: int = 400) -> None:
        super().__init__(detail)
        self.status = status


MEDIA_TYPES = ("application/json", "message/rfc822", "application/xml", "text/xml", "text/plain")


def _payload(body: bytes, content_type: str | None) -> dict[str, Any] | str:
    """A JSON object for JSON bodies, else the text (raw e-mail, XML, SMS); Unreadable if neither.

    JSON is read by the same parser as the Kafka path's records (pydantic-core): nesting
    beyond its limit, lone surrogates and numbers of thousands of digits are a 400, never a
    RecursionError; no Content-Type at all is a 415.
    """
    if content_type is None:
        raise Unreadable(f"no Content-Type; send one of {', '.join(MEDIA_TYPES)}", status=415)
    if content_type == "application/json" or content_type.endswith("+json"):
        try:
            value: dict[str, Any] | str = from_json(body)  # other JSON types fail validation later
        except ValueError as exc:
            raise Unreadable(f"not JSON: {exc}") from None
        return value
    if content_type == "message/rfc822":
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError:  # 8-bit GBK and the like: let the e-mail parser decode it
            return {"raw_base64": base64.b64encode(body).decode()}
    return body.decode("utf-8")


def add_http_api(app: faust.App, intake: Intake, settings: IntakeSettings, *,
                 verifier: TokenVerifier | None = None) -> None:
    """Serve the intake API on the faust web server (staff token keys checked here, at start-up)."""
    max_body = settings.max_body_bytes
    signatures = auth.SignatureCheck(  # v2 with nonces remembered in Redis (auth.py)
        settings.keyring(), nonces=intake.registrations, max_age=settings.signature_max_age,
        max_skew=settings.signature_max_skew, v1=settings.signing_v1)
    staff_tokens = verifier or TokenVerifier.from_settings(settings)

    @app.page("/v1/inbound/{channel}")
    class InboundView(View):
        async def post(self, request: Request, channel: str) -> Response:
            if channel not in Channel.__members__:
                return problem(self, 404, "Unknown channel", f"channel {channel!r} is not served",
                               field="channel")
            body = await _read_body(self, request, max_body)
            if isinstance(body, Response):
                return body
            if settings.require_signatures:
                try:
                    await signatures.check(request.headers, body, channel=channel,
                                           method=request.method, path=request.url.path, now=time.time())
                except auth.Unauthorized as exc:
                    intake.metrics.rejected.labels(channel, "http", "Unauthorized").inc()
                    return problem(self, 401, "Unauthorized", str(exc))
                except Exception as exc:  # the nonce store does not answer: 503, never 401 / 500
                    if not is_transient(exc):
                        raise
                    return unavailable(self, exc, settings.http_retry_after)
            try:
                payload = _payload(body, request.content_type  # type: ignore[attr-defined]
                                   if "Content-Type" in request.headers else None)
                message_id = request.headers.get("Idempotency-Key") or (
                    payload.get("message_id") if isinstance(payload, dict) else None)
                inbound = InboundReceived.new(
                    InboundMessage(channel=Channel(channel), message_id=message_id, payload=payload),
                    source=f"{SERVICE}.http", time=datetime.now(UTC), subject=None,
                    id=str(uuid.uuid4()),
                )
                accepted = await intake.register(inbound, via="http")
            except Unreadable as exc:
                intake.metrics.rejected.labels(channel, "http", type(exc).__name__).inc()
                title = "Unsupported media type" if exc.status == 415 else "Malformed body"
                return problem(self, exc.status, title, str(exc), field="(body)")
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                intake.metrics.rejected.labels(channel, "http", type(exc).__name__).inc()
                return problem(self, 400, "Malformed body", str(exc), field="(body)")
            except ValidationError as exc:
                return problem(self, 422, "Invalid payload", f"the {channel} payload violates its format",
                               errors=_field_errors(exc))
            except Rejected as exc:
                field = str(exc).split(":", 1)[0] if ":" in str(exc) else "(body)"
                return problem(self, 422, "Invalid payload", str(exc), field=field)
            except Exception as exc:  # a dependency that does not answer: 503, never a 500
                if not is_transient(exc):
                    raise
                return unavailable(self, exc, settings.http_retry_after)
            cid = accepted.complaint_id
            return self.json(
                {"complaint_id": cid, "duplicate": accepted.duplicate, "recorded": accepted.kind,
                 "event_id": accepted.event_id, "links": {"self": f"/v1/complaints/{cid}"}},
                status=202, headers={"Location": f"/v1/complaints/{cid}"},
            )

    @app.page("/v1/complaints/{complaint_id}")
    class ComplaintView(View):
        async def get(self, request: Request, complaint_id: str) -> Response:
            try:
                token = bearer(request.headers.get("Authorization"))
                who = await asyncio.to_thread(staff_tokens.verify, token)
                return self.json(await _read_case(intake, who, complaint_id))
            except Unauthorized as exc:
                reply = problem(self, 401, "Unauthorized", str(exc))
                reply.headers.update(BEARER_CHALLENGE)
                return reply
            except _Refused as exc:
                return problem(self, 403, "Forbidden", exc.refused.detail, rule=exc.refused.rule)
            except UnknownComplaint:
                return problem(self, 404, "Unknown complaint", f"no complaint {complaint_id!r}")
            except Exception as exc:  # a dependency that does not answer: 503, never a 500
                if not is_transient(exc):
                    raise
                return unavailable(self, exc, settings.http_retry_after)


class _Refused(Exception):
    def __init__(self, refused: Refused) -> None:
        super().__init__(refused.detail)
        self.refused = refused


async def _read_case(intake: Intake, who: Identity, complaint_id: str) -> dict[str, Any]:
    """The case state for a staff member the desk's rule lets read it; the read is recorded first."""
    events = [json.loads(raw) for raw in await intake.timelines.get(complaint_id)]
    if not any(e["type"] == ComplaintRegistered.EVENT_TYPE for e in events):
        raise UnknownComplaint(complaint_id)
    state = case_state(events)
    facts = CaseFacts(complaint_id=complaint_id, handler=state.get("handler"),
                      department=state.get("department"), review=bool(state.get("review")),
                      co_handlers=co_handlers({"action": e["data"]["action"], "summary": e["data"]}
                                              for e in events if e["type"] == "case.updated"))
    decision = may_read(who, facts, staff=intake.policy.staff)
    if isinstance(decision, Refused):
        raise _Refused(decision)
    access = StaffAccess(actor=who.sub, roles=list(who.roles), department=who.department,
                         kind="case_viewed", complaint_id=complaint_id, fields=list(PERSONAL_FIELDS),
                         granted_by=f"{decision.role}:{decision.scope}")
    event = StaffAccessed.new(access, source=f"{SERVICE}.http", time=intake.clock(), subject=complaint_id)
    await intake.publisher.publish(AUDIT, event)
    log.info("access recorded event=%s complaint=%s actor=%s", event.id, complaint_id, who.sub)
    return state
