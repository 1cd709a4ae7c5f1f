"""Intake's HTTP API: channel messages in, case events in, a complaint's state out.

Errors are RFC 9457 problem documents: 400 malformed, 401 unsigned, 404 unknown, 413 too
large, 422 invalid, 503 while a dependency does not answer.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import faust
from faust.web import Request, Response, View
from pydantic import ValidationError

from schemas.events import Channel, InboundMessage, InboundReceived
from services.common.boundary import TRANSIENT
from services.common.errors import Rejected
from services.intake import auth
from services.intake.handlers import SERVICE, Intake, UnknownComplaint
from services.intake.settings import IntakeSettings

PROBLEM = "application/problem+json"


def problem(view: View, status: int, title: str, detail: str, **extra: Any) -> Response:
    """An RFC 9457 problem document."""
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return view.bytes(json.dumps(body, ensure_ascii=False).encode(), status=status,
                      content_type=PROBLEM)


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


def _payload(body: bytes, content_type: str) -> dict[str, Any] | str:
    """A JSON object for JSON bodies, else the text (raw e-mail, XML, SMS)."""
    if content_type in ("application/json", "") or content_type.endswith("+json"):
        value: dict[str, Any] | str = json.loads(body)  # other JSON types fail validation later
        return value
    if content_type == "message/rfc822":
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError:  # 8-bit GBK and the like: let the e-mail parser decode it
            return {"raw_base64": base64.b64encode(body).decode()}
    return body.decode("utf-8")


def add_http_api(app: faust.App, intake: Intake, settings: IntakeSettings) -> None:
    """Serve the intake API on the faust web server."""
    max_body = settings.max_body_bytes
    secrets = settings.secrets()

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
                    auth.verify(auth.secret_for(channel, secrets), request.headers, body,
                                now=time.time(), max_age=settings.signature_max_age)
                except auth.Unauthorized as exc:
                    intake.metrics.rejected.labels(channel, "http", "Unauthorized").inc()
                    return problem(self, 401, "Unauthorized", str(exc))
            try:
                payload = _payload(body, request.content_type)  # type: ignore[attr-defined]
                message_id = request.headers.get("Idempotency-Key") or (
                    payload.get("message_id") if isinstance(payload, dict) else None)
                inbound = InboundReceived.new(
                    InboundMessage(channel=Channel(channel), message_id=message_id, payload=payload),
                    source=f"{SERVICE}.http", time=datetime.now(UTC), subject=None,
                    id=str(uuid.uuid4()),
                )
                accepted = await intake.register(inbound, via="http")
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                intake.metrics.rejected.labels(channel, "http", type(exc).__name__).inc()
                return problem(self, 400, "Malformed body", str(exc), field="(body)")
            except ValidationError as exc:
                return problem(self, 422, "Invalid payload", f"the {channel} payload violates its format",
                               errors=_field_errors(exc))
            except Rejected as exc:
                field = str(exc).split(":", 1)[0] if ":" in str(exc) else "(body)"
                return problem(self, 422, "Invalid payload", str(exc), field=field)
            except TRANSIENT as exc:
                return problem(self, 503, "Temporarily unavailable", type(exc).__name__)
            cid = accepted.complaint_id
            return self.json(
                {"complaint_id": cid, "duplicate": accepted.duplicate, "recorded": accepted.kind,
                 "event_id": accepted.event_id, "links": {"self": f"/v1/complaints/{cid}"}},
                status=202, headers={"Location": f"/v1/complaints/{cid}"},
            )

    @app.page("/v1/complaints/{complaint_id}/events")
    class CaseEventsView(View):
        async def post(self, request: Request, complaint_id: str) -> Response:
            body = await _read_body(self, request, max_body)
            if isinstance(body, Response):
                return body
            try:
                fields = json.loads(body)
                if not isinstance(fields, dict):
                    return problem(self, 422, "Invalid event", "body must be a JSON object")
                event = await intake.record_case_event(
                    complaint_id, fields, idempotency_key=request.headers.get("Idempotency-Key"))
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                return problem(self, 400, "Malformed body", str(exc), field="(body)")
            except UnknownComplaint:
                return problem(self, 404, "Unknown complaint", f"no complaint {complaint_id!r}")
            except ValidationError as exc:
                return problem(self, 422, "Invalid event", "the event violates the schema",
                               errors=_field_errors(exc))
            except TRANSIENT as exc:
                return problem(self, 503, "Temporarily unavailable", type(exc).__name__)
            return self.json({"event_id": event.id, "complaint_id": complaint_id}, status=202)

    @app.page("/v1/complaints/{complaint_id}")
    class ComplaintView(View):
        async def get(self, request: Request, complaint_id: str) -> Response:
            try:
                return self.json(await intake.state(complaint_id))
            except UnknownComplaint:
                return problem(self, 404, "Unknown complaint", f"no complaint {complaint_id!r}")
            except TRANSIENT as exc:
                return problem(self, 503, "Temporarily unavailable", type(exc).__name__)
