"""Every word a report shows, in Chinese and in English, and how its numbers are written.

One dict per language (``ZH``, ``EN``) with the same keys: ``text`` (headings, column heads,
legends), ``figure`` (headline measures by key), and the names of the values of each
dimension (milestone, channel, severity, nature, level, department). Code and handler names
come from the report itself (``Share`` / ``GroupRow`` / ``ParetoRow`` labels); these dicts
name what the report holds only as a key. Pure: no I/O.

Numbers: shares as percents with one decimal (``96.2%``), days and hours with one decimal,
counts with thousands separators; a missing value is an em dash.
"""

from __future__ import annotations

from typing import Literal

Lang = Literal["zh", "en"]
Table = dict[str, dict[str, str]]

ZH: Table = {
    "text": {
        "title": "投诉分析报告", "period": "统计期间", "previous_period": "对比期间",
        "generated_at": "生成时间", "policy_version": "策略版本", "timezone": "时区",
        "headline": "核心指标", "feedback": "表扬与建议", "share_of": "占比口径",
        "volume": "投诉量分布", "timeliness": "各环节处理及时率",
        "escalations": "各级升级数", "departments": "部门考核", "handlers": "处理人考核",
        "grouped": "分组考核", "pareto": "投诉原因帕累托分析", "trend": "周趋势与预测",
        "notes": "说明", "this_period": "本期", "previous": "上期", "delta": "变化",
        "target": "目标", "met": "达标", "missed": "未达标", "no_target": "无目标",
        "no_data": "无数据", "automatic": "自动", "person": "人工", "kind": "类型",
        "milestone": "环节", "due": "到期", "on_time": "按时", "breached": "超时",
        "rate": "及时率", "cases": "案件数", "resolved": "已解决", "on_time_rate": "按时率",
        "handling_days": "平均处理时长（工作日）", "satisfaction": "满意率", "answers": "回访答复",
        "code": "编码", "name": "名称", "count": "数量", "share": "占比",
        "cumulative": "累计占比", "vital": "关键少数", "week": "周（周一）", "actual": "实际",
        "forecast": "预测", "interval": "预测区间", "low": "下限", "high": "上限",
        "spike": "突增", "others": "其他", "level": "级别", "method": "预测方法",
        "over": "基于 {n} 项", "days": "工作日", "hours": "小时", "pp": "个百分点",
        "line_80": "80% 线", "automatic_note": "自动环节（系统发送或派单完成）不计入及时率",
        "coverage": "覆盖率", "group": "分组",
    },
    "figure": {
        "volume": "投诉总量", "cases": "投诉总量", "complaints": "投诉总量",
        "timeliness": "响应及时率", "resolution_rate": "时限内解决率",
        "handling_days_avg": "平均处理时长", "handling_days_median": "处理时长中位数",
        "handling_days_p90": "处理时长 P90", "response_hours_avg": "平均响应时间",
        "satisfaction_rate": "客户满意率", "response_rate": "回访答复率",
        "reopen_rate": "重开率", "repeat_rate": "重复投诉率", "escalation_rate": "升级率",
        "open_cases": "未结案件", "breaches": "超时次数",
    },
    "dimension": {
        "channel": "渠道", "code": "投诉类型", "department": "责任部门", "handler": "处理人",
        "severity": "严重程度", "nature": "反馈性质",
    },
    "milestone": {
        "acknowledge": "受理回执", "respond": "初步响应", "dispatch": "派单",
        "plan": "处理方案", "resolve": "解决", "feedback": "结果反馈", "revisit": "满意度回访",
    },
    "channel": {
        "phone": "电话 / 客服热线", "web_form": "官网表单", "email": "邮件", "wechat": "微信公众号",
        "social": "社交媒体", "app": "移动应用", "store": "门店现场", "sms": "短信",
        "review_platform": "第三方平台", "survey_reply": "满意度调查回复",
        "partner": "员工或合作伙伴", "letter": "信函",
    },
    "severity": {"general": "一般", "urgent": "紧急", "major": "重大"},
    "nature": {"complaint": "投诉", "suggestion": "建议", "praise": "表扬"},
    "feedback": {"praise": "表扬", "suggestions": "建议", "assessed": "已评估的建议", "adopted": "采纳",
                 "declined": "不予采纳", "not_assessed": "尚未评估"},
    "share_of": {"feedback": "占全部反馈", "suggestions": "占建议", "assessed": "占已评估"},
    "level": {"L1": "L1 投诉处理专员", "L2": "L2 部门负责人", "L3": "L3 高管督办"},
    "department": {
        "quality": "质量部", "service": "服务部", "operations": "运营部", "billing": "计费部",
        "technical": "技术部", "safety": "安全部", "legal": "法务部",
        "customer_service": "客户服务部", "complaint_review": "投诉复核组",
    },
}

EN: Table = {
    "text": {
        "title": "Complaint analysis report", "period": "Period", "previous_period": "Compared with",
        "generated_at": "Generated", "policy_version": "Policy version", "timezone": "Time zone",
        "headline": "Headline figures",
        "feedback": "Praise and suggestions", "share_of": "Share of", "volume": "Volume",
        "timeliness": "Timeliness by milestone",
        "escalations": "Escalations by level", "departments": "Departments",
        "handlers": "Handlers", "grouped": "By group", "pareto": "Causes (Pareto)",
        "trend": "Weekly trend and forecast", "notes": "Notes", "this_period": "This period",
        "previous": "Previous", "delta": "Change", "target": "Target", "met": "met",
        "missed": "missed", "no_target": "no target", "no_data": "no data",
        "automatic": "automatic", "person": "person", "kind": "Kind", "milestone": "Milestone",
        "due": "Due", "on_time": "On time", "breached": "Breached", "rate": "Rate",
        "cases": "Cases", "resolved": "Resolved", "on_time_rate": "On time",
        "handling_days": "Handling (working days)", "satisfaction": "Satisfied",
        "answers": "Answers", "code": "Code", "name": "Name", "count": "Count", "share": "Share",
        "cumulative": "Cumulative", "vital": "vital few", "week": "Week (Monday)",
        "actual": "actual", "forecast": "forecast", "interval": "interval", "low": "Low",
        "high": "High", "spike": "spike", "others": "Others", "level": "Level",
        "method": "Method", "over": "over {n}", "days": "working days", "hours": "h",
        "pp": "pp", "line_80": "80% line",
        "automatic_note": "Automatic milestones (sent by the system or met by dispatch) "
                          "are not counted in the timeliness figure",
        "coverage": "coverage", "group": "Group",
    },
    "figure": {
        "volume": "Complaints", "cases": "Complaints", "complaints": "Complaints",
        "timeliness": "Timeliness", "resolution_rate": "Resolved within the limit",
        "handling_days_avg": "Handling time, average", "handling_days_median": "Handling time, median",
        "handling_days_p90": "Handling time, p90", "response_hours_avg": "Response time, average",
        "satisfaction_rate": "Satisfaction", "response_rate": "Survey response rate",
        "reopen_rate": "Reopen rate", "repeat_rate": "Repeat complaints",
        "escalation_rate": "Escalation rate", "open_cases": "Open cases", "breaches": "Breaches",
    },
    "dimension": {
        "channel": "Channel", "code": "Complaint type", "department": "Department",
        "handler": "Handler", "severity": "Severity", "nature": "Nature",
    },
    "milestone": {
        "acknowledge": "Acknowledgement", "respond": "Initial response", "dispatch": "Dispatch",
        "plan": "Handling plan", "resolve": "Resolution", "feedback": "Result feedback",
        "revisit": "Satisfaction revisit",
    },
    "channel": {
        "phone": "Phone / call centre", "web_form": "Web form", "email": "Email",
        "wechat": "WeChat", "social": "Social media", "app": "Mobile app", "store": "In store",
        "sms": "SMS", "review_platform": "Review platform", "survey_reply": "Survey reply",
        "partner": "Staff or partner", "letter": "Letter",
    },
    "severity": {"general": "General", "urgent": "Urgent", "major": "Major"},
    "nature": {"complaint": "Complaint", "suggestion": "Suggestion", "praise": "Praise"},
    "feedback": {"praise": "Praise", "suggestions": "Suggestions", "assessed": "Suggestions assessed",
                 "adopted": "Adopted", "declined": "Declined", "not_assessed": "Not yet assessed"},
    "share_of": {"feedback": "of all feedback", "suggestions": "of suggestions",
                 "assessed": "of those assessed"},
    "level": {"L1": "L1 specialist", "L2": "L2 department head", "L3": "L3 executive"},
    "department": {
        "quality": "Quality", "service": "Service", "operations": "Operations",
        "billing": "Billing", "technical": "Technical", "safety": "Safety", "legal": "Legal",
        "customer_service": "Customer service", "complaint_review": "Complaint review",
    },
}

LABELS: dict[str, Table] = {"zh": ZH, "en": EN}
DASH = "—"


def text(lang: Lang, key: str, **args: object) -> str:
    """A heading, column head or legend in the language (``{n}`` placeholders filled)."""
    word = LABELS[lang]["text"][key]
    return word.format(**args) if args else word


def name(lang: Lang, kind: str, key: str, given: str = "") -> str:
    """A value's name: the report's own label if it names it, else this module's, else the key."""
    if given and given != key:
        return given
    return LABELS[lang].get(kind, {}).get(key, key)


def figure_name(lang: Lang, key: str) -> str:
    """A headline figure's name (an unknown key is shown with spaces for underscores)."""
    return LABELS[lang]["figure"].get(key, key.replace("_", " "))


def percent(value: float | None) -> str:
    """A share as a percent with one decimal: 0.9625 -> ``96.3%``."""
    return DASH if value is None else f"{value * 100:.1f}%"


def one_decimal(value: float | None) -> str:
    """Days or hours with one decimal."""
    return DASH if value is None else f"{value:.1f}"


def count(value: float | None) -> str:
    """A count with thousands separators."""
    return DASH if value is None else f"{round(value):,}"


def number(value: float | None, unit: str) -> str:
    """A value in its unit, without the unit's word (percent sign for shares)."""
    if unit == "share":
        return percent(value)
    if unit in ("days", "hours"):
        return one_decimal(value)
    return count(value)


def unit_word(lang: Lang, unit: str) -> str:
    """The word after a value: working days or hours; nothing for counts and shares."""
    return text(lang, unit) if unit in ("days", "hours") else ""


def with_unit(lang: Lang, value: float | None, unit: str) -> str:
    """A value and its unit word: ``2.6 工作日``, ``96.3%``."""
    word = unit_word(lang, unit)
    shown = number(value, unit)
    return f"{shown} {word}" if word and value is not None else shown


def signed(lang: Lang, delta: float | None, unit: str) -> str:
    """A change with its sign: shares in percentage points (``+1.4 pp``), others in their unit."""
    if delta is None:
        return DASH
    size = abs(delta)
    shown = round(size * 100, 1) if unit == "share" else round(size, 1) if unit in ("days", "hours") \
        else round(size)
    sign = "±" if shown == 0 else "+" if delta > 0 else "−"
    if unit == "share":
        return f"{sign}{size * 100:.1f} {text(lang, 'pp')}"
    if unit in ("days", "hours"):
        return f"{sign}{size:.1f} {text(lang, unit)}"
    return f"{sign}{round(size):,}"


def arrow(delta: float | None) -> str:
    """An arrow for the direction of a change: up, down, or level."""
    if delta is None:
        return ""
    return "▲" if delta > 0 else "▼" if delta < 0 else "▶"


def _has_cjk(text: str) -> bool:
    return any(ord(c) >= 0x2E80 for c in text)


def pick(lang: Lang, text: str) -> str:
    """One language's half of a bilingual ``"中文 / English"`` text (notes, the forecast method).

    The split is the first `` / `` with Chinese before it and none after it; a text without
    one is shown whole in both languages.
    """
    at = text.find(" / ")
    while at != -1:
        zh, en = text[:at], text[at + 3:]
        if _has_cjk(zh) and not _has_cjk(en):
            return zh.strip() if lang == "zh" else en.strip()
        at = text.find(" / ", at + 1)
    return text
