"""A case's audit trail as readable lines, in Chinese or English (the history view). No I/O.

One line per event, in trail order: time, actor, what happened, and its cause (the
causing event's id, shortened). Re-exported by ``services.archive.logic``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime, tzinfo
from typing import Literal

from services.archive.records import CONTACT_ORDER, ArchivedEvent, JsonValue

Lang = Literal["zh", "en"]

_CASE = {
    "acknowledged": ("已初步响应", "acknowledged"), "note": ("备注", "note"),
    "plan_decided": ("已确定处理方案", "handling plan decided"), "resolved": ("已处理", "resolved"),
    "satisfaction": ("满意度回访", "satisfaction"), "reopened": ("已重新打开", "reopened"),
    "reclassified": ("人工复核改类", "reclassified"),
    "awaiting_customer": ("等待客户答复", "awaiting the customer"),
    "customer_replied": ("客户已答复", "the customer replied"), "closed": ("已结案", "closed"),
    "suggestion_assessed": ("建议已评估", "suggestion assessed"),
}
_ASSESSMENT = {"adopted": ("采纳", "adopted"), "declined": ("不予采纳", "declined")}
_DECISION = {
    "routed": ("分类分流", "routed"), "reclassified": ("重新分类", "reclassified"),
    "escalated": ("升级", "escalated"), "at_ceiling": ("已达最高级别", "at the ceiling"),
}
_SLA = {
    "started": ("开始计时", "started"), "warning": ("预警", "warning"), "paused": ("暂停", "paused"),
    "resumed": ("恢复计时", "resumed"), "met": ("达成", "met"), "breached": ("超时", "breached"),
    "cancelled": ("取消", "cancelled"),
}


def history_lines(events: Iterable[ArchivedEvent], *, lang: Lang, tz: tzinfo = UTC) -> list[str]:
    """The audit trail of one case, one readable line per event, in trail order."""
    unique = {e.event_id: e for e in events}.values()
    zh = lang == "zh"
    lines = []
    for e in sorted(unique, key=ArchivedEvent.key):
        what = _sla(e, zh, tz) if e.type == "sla.alert" else _WHAT.get(e.type, _other)(e, zh)
        cause = ""
        if e.causation_id:
            cause = f"（起因 {e.causation_id[:8]}）" if zh else f" (cause {e.causation_id[:8]})"
        lines.append(f"{_time(e.time, tz)}  {e.actor}  {what}{cause}")
    return lines


def _registered(e: ArchivedEvent, zh: bool) -> str:
    s = e.summary
    masked = s.get("contact_masked") or {}  # a JSONB object keeps no key order: name it
    contact = ", ".join(str(masked[k]) for k in CONTACT_ORDER if k in masked) or "-"
    if zh:
        return (f"登记：渠道 {s.get('channel')}，类型 {s.get('nature')}，首接 {s.get('first_contact')}，"
                f"联系方式 {contact}")
    return (f"registered: channel {s.get('channel')}, {s.get('nature')}, first contact "
            f"{s.get('first_contact')}, contact {contact}")


def _routed(e: ArchivedEvent, zh: bool) -> str:
    s = e.summary
    kind = _DECISION.get(e.action, (e.action, e.action))[0 if zh else 1]
    name = s.get("code_name_zh" if zh else "code_name_en") or ""
    handler = s.get("handler") or ("无" if zh else "none")
    trigger = s.get("trigger")
    if zh:
        line = (f"{kind}（第 {s.get('revision')} 版）：{s.get('code')} {name}，部门 {s.get('department')}，"
                f"严重度 {s.get('severity')}，级别 {s.get('level')}，处理人 {handler}")
        return line + (f"，触发 {trigger}" if trigger else "")
    line = (f"{kind} (revision {s.get('revision')}): {s.get('code')} {name}, department "
            f"{s.get('department')}, severity {s.get('severity')}, level {s.get('level')}, handler {handler}")
    return line + (f", trigger {trigger}" if trigger else "")


def _case(e: ArchivedEvent, zh: bool) -> str:
    s = e.summary
    parts = [_CASE.get(e.action, (e.action, e.action))[0 if zh else 1]]
    if s.get("score") is not None:
        parts.append(f"{s['score']}/5")
    if s.get("code"):
        parts.append(("改为 " if zh else "to ") + str(s["code"]))
    if s.get("result"):
        parts.append(("结果：" if zh else "result: ") + str(s["result"]))
    if isinstance(a := s.get("assessment"), dict):
        decision = str(a.get("decision"))
        parts.append(_ASSESSMENT.get(decision, (decision, decision))[0 if zh else 1])
        if a.get("reason"):
            parts.append(("理由：" if zh else "reason: ") + str(a["reason"]))
        if a.get("measure"):
            parts.append(("改进：" if zh else "change: ") + str(a["measure"]))
    if s.get("note") and e.action == "note":
        parts[0] += ("：" if zh else ": ") + str(s["note"])
    elif s.get("note"):
        parts.append(("备注：" if zh else "note: ") + str(s["note"]))
    elif s.get("note_chars"):
        parts.append(f"客户留言 {s['note_chars']} 字" if zh else f"customer's note, {s['note_chars']} chars")
    return ("，" if zh else ", ").join(parts)


def _sla(e: ArchivedEvent, zh: bool, tz: tzinfo = UTC) -> str:
    s = e.summary
    outcome = _SLA.get(e.action, (e.action, e.action))[0 if zh else 1]
    extra: list[str] = []
    if e.action == "warning" and s.get("threshold") is not None:
        extra.append(f"{float(s['threshold']):.0%}")
    if e.action == "met":
        extra.append(("按时" if s.get("on_time") else "逾期") if zh else
                     ("on time" if s.get("on_time") else "late"))
    if s.get("deadline") and e.action in ("started", "resumed", "warning", "breached"):
        extra.append(("期限 " if zh else "deadline ") + _time(s["deadline"], tz))  # the line's zone
    tail = (("，" if zh else ", ") + ("，" if zh else ", ").join(extra)) if extra else ""
    if zh:
        return f"时限 {s.get('milestone')}（第 {s.get('cycle')} 轮）{outcome}{tail}"
    return f"SLA {s.get('milestone')} (cycle {s.get('cycle')}) {outcome}{tail}"


_NOTIFICATION = {  # statuses named in words (the others read as they are)
    "callback_required": ("无法送达，已派联系任务给首接负责人",
                          "not deliverable, call-back task for the owner"),
}


def _notification(e: ArchivedEvent, zh: bool) -> str:
    s = e.summary
    status = _NOTIFICATION.get(e.action, (e.action, e.action))[0 if zh else 1]
    if zh:
        return (f"通知 {s.get('kind')} 给 {s.get('role')}，经 {s.get('transport')}（{s.get('recipient')}）："
                f"{status}，第 {s.get('attempt')} 次")
    return (f"notification {s.get('kind')} to {s.get('role')} by {s.get('transport')} "
            f"({s.get('recipient')}): {status}, attempt {s.get('attempt')}")


def _other(e: ArchivedEvent, zh: bool) -> str:
    return f"{e.type} {e.action}"


_WHAT: dict[str, Callable[[ArchivedEvent, bool], str]] = {
    "complaint.registered": _registered, "complaint.routed": _routed, "case.updated": _case,
    "sla.alert": _sla, "notification.recorded": _notification,
}


def _time(at: datetime | JsonValue, tz: tzinfo) -> str:
    moment = at if isinstance(at, datetime) else datetime.fromisoformat(str(at))
    local = moment.astimezone(tz)
    zone = "UTC" if tz is UTC else local.strftime("%z")
    return f"{local:%Y-%m-%d %H:%M:%S} {zone}"
