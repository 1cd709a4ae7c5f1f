"""What the console's pages show, shaped from the desk's answers: rows of a list, the case
page's timeline, deadlines with their remaining time, the forms offered. Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from services.common.resolution import ResultTemplate
from services.desk.console import forms
from services.desk.console.i18n import Words

HIDDEN = frozenset({"customer_key", "contact_masked", "named", "order_id"})  # never on a page
DETAIL_KEYS = ("note", "result", "score", "code", "department", "handler", "level", "reason", "milestone",
               "cycle", "deadline", "kind", "status")


def remaining(deadline: datetime | None, now: datetime, words: Words) -> str:
    """The time left to a deadline, or how long it is overdue, in whole minutes."""
    if deadline is None:
        return ""
    seconds = int((deadline - now).total_seconds())
    minutes = abs(seconds) // 60
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    sep = "" if words.lang == "zh" else " "
    parts = [f"{days}{sep}{words('unit_d')}"] if days else []
    if days or hours:
        parts.append(f"{hours}{sep}{words('unit_h')}")
    parts.append(f"{mins:02d}{sep}{words('unit_m')}" if parts else f"{mins}{sep}{words('unit_m')}")
    span = sep.join(parts) if words.lang != "zh" else "".join(parts)
    if seconds < 0:
        return f"{words('overdue_by')} {span}"
    return f"{words('left')} {span}" if words.lang == "zh" else f"{span} {words('left')}"


def row_view(row: Mapping[str, Any], *, now: datetime, words: Words) -> dict[str, Any]:
    """One row of a work list or a search, as the table shows it."""
    deadline = row.get("deadline") or row.get("next_deadline")
    name = row.get("code_name_zh") if words.lang == "zh" else row.get("code_name_en")
    return {"id": row["complaint_id"], "status": words.name("status", row.get("status")),
            "code": f"{row.get('code') or ''} {name or ''}".strip(),
            "severity": words.name("severity", row.get("severity")), "channel": _channel(words, row),
            "department": row.get("department") or "", "handler": row.get("handler") or words("unassigned"),
            "received": _when(row.get("received_at")), "deadline": deadline.isoformat() if deadline else "",
            "remaining": remaining(deadline, now, words), "overdue": bool(deadline and deadline < now),
            "milestone": words.name("milestone", row["milestone"]) if row.get("milestone") else "",
            "state": words.name("state", row["state"]) if row.get("state") else ""}


def _when(at: Any) -> str:
    return at.strftime("%Y-%m-%d %H:%M UTC") if isinstance(at, datetime) else str(at or "")


def _details(event: Mapping[str, Any], words: Words) -> list[tuple[str, str]]:
    """The facts of one archived event worth a line on the timeline, in the page's language
    (never personal data)."""
    summary = event.get("summary") or {}
    out: list[tuple[str, str]] = []
    for key in DETAIL_KEYS:
        value = summary.get(key)
        if value not in (None, "", [], {}) and key not in HIDDEN:
            out.append((words.name("detail", key), _value(key, value, words)))
    for part in ("assignment", "plan", "outcome", "approval", "contact", "assessment"):
        value = summary.get(part)
        if isinstance(value, dict):
            if part == "plan":
                out.append((words.name("detail", "plan"), str(value.get("summary") or "")))
                out.extend((f"{words.name('detail', 'measure')} {i + 1}",
                            f"{m.get('description')} · {m.get('owner')} · {m.get('due')}")
                           for i, m in enumerate(value.get("measures") or []))
                continue
            shown = {k: v for k, v in value.items() if v not in (None, "", {}, [])}
            sep = "；" if words.lang == "zh" else "; "
            out.append((words.name("detail", part), sep.join(
                f"{words.name('detail', k)}: {_value(k, v, words)}" for k, v in shown.items())))
    return out


def _value(key: str, value: Any, words: Words) -> str:
    """One fact as a person reads it: names in the page's language, times as on the page."""
    if key == "milestone":
        return words.name("milestone", value)
    if key == "status":  # a notification's status: named as its timeline line names it
        return words.name("action", value)
    if key == "solution":
        return words.name("solution", value)
    if key == "party_at_fault":
        return words.name("party", value)
    if key == "decision":
        return words.name("decision", value)
    if key in ("kind", "purpose") and words.name(key, value) != str(value):
        return words.name(key, value)
    if key == "reached" and isinstance(value, bool):
        return words("yes") if value else words("no")
    if key == "deadline" and isinstance(value, str):
        try:
            return _when(datetime.fromisoformat(value).astimezone(UTC))
        except ValueError:
            return value
    if key == "compensation" and isinstance(value, dict):
        return f"{value.get('amount')} {value.get('currency')}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return str(value)


def timeline_view(timeline: Sequence[Mapping[str, Any]], words: Words) -> list[dict[str, Any]]:
    """The case's events, oldest first, as the timeline shows them."""
    return [{"time": _when(e.get("time")), "actor": e.get("actor") or "", "type": e.get("type") or "",
             "action": words.name("action", e.get("action")), "details": _details(e, words)}
            for e in timeline]


def deadline_view(deadlines: Sequence[Mapping[str, Any]], *, now: datetime,
                  words: Words) -> list[dict[str, Any]]:
    """The case's deadlines with state and remaining time (counting only while open)."""
    out = []
    for d in deadlines:
        at = d.get("deadline")
        running = d.get("state") in ("running", "due_soon", "overdue")
        out.append({"milestone": words.name("milestone", d.get("milestone")), "cycle": d.get("cycle"),
                    "deadline": _when(at), "iso": at.isoformat() if running and at else "",
                    "state": d.get("state"), "state_name": words.name("state", d.get("state")),
                    "remaining": remaining(at, now, words) if running else ""})
    return out


def case_view(page: Mapping[str, Any], *, who: str, now: datetime, words: Words,
              templates: Mapping[str, ResultTemplate]) -> dict[str, Any]:
    """The template context of the case page: the case, who owns what, deadlines, timeline, forms."""
    row = page["case"]
    permitted = set(page["actions"])
    offered = [a for a in forms.ORDER if a in permitted]
    take_only = offered == ["assigned"] and row.get("handler") is None
    name = row.get("code_name_zh") if words.lang == "zh" else row.get("code_name_en")
    return {
        "case": {"id": row["complaint_id"], "status": words.name("status", row.get("status")),
                 "severity": words.name("severity", row.get("severity")),
                 "code": f"{row.get('code') or ''} {name or ''}".strip(), "channel": _channel(words, row),
                 "received": _when(row.get("received_at")), "review": bool(row.get("review")),
                 "contact": row.get("contact_masked") or "", "product": row.get("product") or "",
                 "store": row.get("store_id") or "", "demand": row.get("demand") or "",
                 "result": row.get("result") or "", "root_cause": row.get("code") or "",
                 "nature": words.name("nature", row.get("nature") or ""),
                 "assessment": words.name("decision", row["assessment_decision"])
                 if row.get("assessment_decision") else "",
                 "assessment_reason": row.get("assessment_reason") or ""},
        "owners": page["owners"],
        "deadlines": deadline_view(page["deadlines"], now=now, words=words),
        "timeline": timeline_view(page["timeline"], words),
        "offered": offered, "take_only": take_only,
        "proposals": [{"id": p["event_id"], "actor": p.get("actor"), "time": _when(p.get("time"))}
                      for p in forms.pending_proposals(page["timeline"], approver=who)],
        "templates": {k: getattr(t, words.lang) for k, t in sorted(templates.items())},
        "template_fields": forms.template_fields(templates),
        "solutions": forms.SOLUTIONS, "parties": forms.PARTIES, "contact_kinds": forms.CONTACT_KINDS,
        "purposes": forms.PURPOSES, "measure_rows": range(forms.MEASURE_ROWS),
        "decisions": forms.DECISIONS,
    }


def _channel(words: Words, row: Mapping[str, Any]) -> str:
    """The row's channel in the page's language ("" when it has none)."""
    channel = row.get("channel")
    return words.name("channel", channel) if channel else ""
