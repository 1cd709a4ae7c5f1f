"""A realistic complaint analysis report, built by hand from the model, for the renderer's tests.

November 2026 against October: 1,284 complaints over nine channels, forty-odd codes of which a
dozen carry 80 %, seven milestones (four automatic), nine departments, fourteen handlers, a
ten-week history with one spike and four forecast weeks. ``empty_report`` is a month with
nothing in it, as the figures give it: no rows, no values, a note saying so.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from services.archive.reports.model import (
    Breakdown,
    Figure,
    GroupRow,
    MilestoneTimeliness,
    ParetoRow,
    Period,
    Report,
    Share,
    Trend,
    WeekPoint,
)

TZ = "Asia/Shanghai"
NOVEMBER = Period(date(2026, 11, 1), date(2026, 12, 1), TZ, "2026-11")
OCTOBER = Period(date(2026, 10, 1), date(2026, 11, 1), TZ, "2026-10")
GENERATED = datetime(2026, 12, 1, 1, 30, tzinfo=UTC)

HEADLINE = [
    Figure("volume", "count", 1284, 1190, count=1284),
    Figure("timeliness", "share", 0.956, 0.941, target=0.98, count=3743),
    Figure("resolution_rate", "share", 0.931, 0.912, target=0.95, count=1207),
    Figure("handling_days_avg", "days", 2.6, 3.4, target=3.0, higher_is_better=False, count=1207),
    Figure("handling_days_median", "days", 2.1, 2.9, higher_is_better=False, count=1207),
    Figure("handling_days_p90", "days", 5.2, 6.8, higher_is_better=False, count=1207),
    Figure("satisfaction_rate", "share", 0.884, 0.861, target=0.9, count=566),
    Figure("response_rate", "share", 0.469, 0.452, count=1207),
    Figure("reopen_rate", "share", 0.043, 0.051, higher_is_better=False, count=1207),
    Figure("repeat_rate", "share", 0.071, 0.064, higher_is_better=False, count=1284),
]

CODES = [  # code, zh, en, department, count this month, count last month
    ("SP-01", "处理或维修周期长", "Slow handling or long repair cycle", "operations", 214, 205),
    ("PQ-01", "产品缺陷或损坏", "Defective or broken product", "quality", 187, 147),
    ("LG-01", "配送延误", "Late delivery", "operations", 143, 152),
    ("SA-01", "服务态度差", "Rude or unhelpful staff", "service", 121, 118),
    ("PB-01", "多收或错收费用", "Overcharged or wrongly charged", "billing", 96, 71),
    ("AS-01", "退货退款受阻", "Return or refund refused or delayed", "service", 88, 94),
    ("TS-01", "应用或网站故障", "App or website fault", "technical", 74, 52),
    ("SA-02", "无人响应或推诿", "Ignored or passed around", "service", 61, 66),
    ("SP-02", "收费不透明", "Unclear or unexpected fees", "operations", 47, 49),
    ("LG-02", "丢件或运输损坏", "Lost or damaged in transit", "operations", 42, 40),
    ("IN-01", "通知迟发或未通知", "Late or missing notice", "customer_service", 36, 33),
    ("TH-01", "设备硬件故障", "Device hardware fault", "technical", 33, 35),
    ("AS-02", "保修或维修被拒", "Warranty or repair refused", "service", 29, 27),
    ("PQ-02", "货不对板或假冒", "Not as described or counterfeit", "quality", 24, 21),
    ("PB-04", "账单错误或争议", "Billing error or dispute", "billing", 21, 19),
    ("IN-04", "宣传误导或条款披露不清", "Misleading advertising or disclosure", "legal", 17, 12),
    ("SP-05", "还款困难与协商处理", "Hardship, modification or foreclosure process", "operations", 14, 11),
    ("EV-02", "参与体验差", "Poor participant experience", "service", 11, 9),
    ("PL-01", "个人信息泄露或滥用", "Personal data leaked or misused", "legal", 9, 6),
    ("SF-02", "起火、爆炸或触电隐患", "Fire, explosion or electric hazard", "safety", 6, 4),
    ("PQ-03", "过期或变质", "Expired or spoiled goods", "quality", 5, 7),
    ("SF-01", "人身伤害", "Personal injury", "safety", 3, 2),
    ("OT-00", "其他", "Other", "complaint_review", 3, 10),
]
TOTAL, PREVIOUS_TOTAL = 1284, 1190
assert sum(c[4] for c in CODES) == TOTAL and sum(c[5] for c in CODES) == PREVIOUS_TOTAL


def _shares(rows: list[tuple[str, str, str, int, int]]) -> list[Share]:
    """Shares of (key, zh, en, count, previous count) rows, largest first."""
    now, before = sum(r[3] for r in rows), sum(r[4] for r in rows)
    return [Share(k, zh, en, n, n / now, p, p / before if before else None)
            for k, zh, en, n, p in sorted(rows, key=lambda r: -r[3])]


def _by_department() -> list[tuple[str, str, str, int, int]]:
    totals: dict[str, list[int]] = {}
    for *_, dept, n, p in CODES:
        pair = totals.setdefault(dept, [0, 0])
        pair[0] += n
        pair[1] += p
    return [(d, "", "", n, p) for d, (n, p) in totals.items()]


BREAKDOWNS = [
    Breakdown("channel", _shares([
        ("phone", "电话 / 客服热线", "Phone / call centre", 402, 388), ("web_form", "官网表单", "Web form", 231, 215),
        ("app", "移动应用", "Mobile app", 198, 160), ("wechat", "微信公众号", "WeChat", 167, 151),
        ("email", "邮件", "Email", 104, 112), ("social", "社交媒体", "Social media", 77, 58),
        ("store", "门店现场", "In store", 58, 62), ("review_platform", "第三方平台", "Review platform", 31, 29),
        ("sms", "短信", "SMS", 16, 15)])),
    Breakdown("code", _shares([(c, zh, en, n, p) for c, zh, en, _, n, p in CODES])),
    Breakdown("department", _shares(_by_department())),
    Breakdown("severity", _shares([("general", "一般", "General", 1093, 1032), ("urgent", "紧急", "Urgent", 172, 141),
                                   ("major", "重大", "Major", 19, 17)])),
    Breakdown("nature", _shares([("complaint", "投诉", "Complaint", 1201, 1117),
                                 ("suggestion", "建议", "Suggestion", 58, 51), ("praise", "表扬", "Praise", 25, 22)])),
]

TIMELINESS = [
    MilestoneTimeliness("acknowledge", False, 1284, 1281, 3, 1281 / 1284, 0.996, 0.98),
    MilestoneTimeliness("respond", True, 1284, 1237, 47, 1237 / 1284, 0.951, 0.98),
    MilestoneTimeliness("dispatch", False, 1284, 1270, 14, 1270 / 1284, 0.985, 0.98),
    MilestoneTimeliness("plan", True, 1252, 1219, 33, 1219 / 1252, 0.958, 0.98),
    MilestoneTimeliness("resolve", True, 1207, 1124, 83, 1124 / 1207, 0.907, 0.98),
    MilestoneTimeliness("feedback", False, 1207, 1199, 8, 1199 / 1207, 0.991, 0.98),
    MilestoneTimeliness("revisit", False, 1191, 1152, 39, 1152 / 1191, 0.962, 0.98),
]

HANDLERS = [  # id, department, cases, resolved, on time, days, satisfaction, answers, previous cases
    ("operations-l1-01", "operations", 161, 152, 0.951, 2.9, 0.86, 71, 170),
    ("operations-l1-02", "operations", 148, 141, 0.972, 2.4, 0.91, 66, 151),
    ("operations-l1-03", "operations", 139, 128, 0.934, 3.3, 0.82, 58, 143),
    ("quality-l1-01", "quality", 104, 98, 0.981, 2.2, 0.93, 47, 88),
    ("quality-l1-02", "quality", 97, 90, 0.962, 2.7, 0.89, 44, 83),
    ("service-l1-01", "service", 112, 106, 0.975, 2.0, 0.94, 52, 109),
    ("service-l1-02", "service", 103, 95, 0.941, 2.8, 0.85, 45, 107),
    ("service-l1-03", "service", 84, 77, 0.955, 2.5, 0.88, 36, 80),
    ("billing-l1-01", "billing", 117, 108, 0.947, 3.1, 0.84, 50, 90),
    ("technical-l1-01", "technical", 107, 99, 0.968, 2.6, 0.9, 46, 87),
    ("customer_service-l1-01", "customer_service", 36, 35, 0.99, 1.4, 0.96, 17, 33),
    ("legal-l2-01", "legal", 26, 21, 0.923, 4.6, 0.79, 10, 18),
    ("safety-l3-01", "safety", 9, 8, 1.0, 1.1, 1.0, 4, 6),
    ("complaint_review-l1-01", "complaint_review", 3, 2, 1.0, 1.8, None, 0, 10),
]
DEPARTMENT_NAMES = {"operations": ("运营部", "Operations"), "quality": ("质量部", "Quality"),
                    "service": ("服务部", "Service"), "billing": ("计费部", "Billing"),
                    "technical": ("技术部", "Technical"), "customer_service": ("客户服务部", "Customer service"),
                    "legal": ("法务部", "Legal"), "safety": ("安全部", "Safety"),
                    "complaint_review": ("投诉复核组", "Complaint review")}


def _handlers() -> list[GroupRow]:
    return [GroupRow(h, h, h, n, r, ot, d, s, a, p) for h, _, n, r, ot, d, s, a, p in HANDLERS]


def _departments() -> list[GroupRow]:
    rows = []
    for dept, (zh, en) in DEPARTMENT_NAMES.items():
        mine = [h for h in HANDLERS if h[1] == dept]
        cases, resolved = sum(h[2] for h in mine), sum(h[3] for h in mine)
        answers = sum(h[7] for h in mine)
        on_time = sum(h[4] * h[2] for h in mine) / cases
        days = sum(h[5] * h[3] for h in mine) / resolved
        satisfied = sum((h[6] or 0) * h[7] for h in mine) / answers if answers else None
        rows.append(GroupRow(dept, zh, en, cases, resolved, round(on_time, 4), round(days, 2),
                             None if satisfied is None else round(satisfied, 4), answers,
                             sum(h[8] for h in mine)))
    return sorted(rows, key=lambda g: -g.cases)


def _pareto() -> list[ParetoRow]:
    rows, running = [], 0
    for code, zh, en, _, n, _ in sorted(CODES, key=lambda c: -c[4]):
        vital = running / TOTAL < 0.8
        running += n
        rows.append(ParetoRow(code, zh, en, n, n / TOTAL, running / TOTAL, vital))
    return rows


WEEKLY = [268, 281, 259, 274, 290, 266, 301, 298, 392, 287]  # the ninth week is a spike


def _trend() -> Trend:
    first = date(2026, 9, 21)  # a Monday, ten weeks before the period ends
    points = [WeekPoint(first + timedelta(weeks=i), n, spike=(n == 392)) for i, n in enumerate(WEEKLY)]
    for j in range(4):
        mid = 295 + 3 * j
        half = 38 + 6 * j
        points.append(WeekPoint(first + timedelta(weeks=len(WEEKLY) + j), None, mid, mid - half, mid + half))
    return Trend(points, "指数平滑（Holt 阻尼加法趋势），以 10 周拟合，95% 预测区间。 / Exponential smoothing "
                         "(Holt, additive damped trend) fitted on 10 weeks; 95% prediction interval.", 0.95)


def sample_report() -> Report:
    """November 2026 as the figures would give it."""
    return Report(
        period=NOVEMBER, previous=OCTOBER, generated_at=GENERATED, policy_version="2026.11-default",
        headline=list(HEADLINE), breakdowns=list(BREAKDOWNS), timeliness=list(TIMELINESS),
        escalations={"L2": (38, 45), "L3": (7, 9)}, by_department=_departments(),
        by_handler=_handlers(), pareto=_pareto(), trend=_trend(),
        notes=["本期投诉中仍有 77 件未结，解决率与处理时长还会变化。 / 77 complaints of the period are still "
               "open: the resolution rate and handling times will change as they are resolved.",
               "Handling time counts working days on the cn business calendar (8 hours a day)."],
    )


def empty_report() -> Report:
    """December 2026 before anything came in: every figure without a value, every table empty."""
    december = Period(date(2026, 12, 1), date(2027, 1, 1), TZ, "2026-12")
    return Report(
        period=december, previous=NOVEMBER, generated_at=GENERATED, policy_version="2026.11-default",
        headline=[Figure(f.key, f.unit, None, None, f.target, f.higher_is_better, 0) for f in HEADLINE],
        breakdowns=[Breakdown(b.dimension, []) for b in BREAKDOWNS],
        timeliness=[MilestoneTimeliness(m.milestone, m.person, 0, 0, 0, None, None, m.target) for m in TIMELINESS],
        escalations={}, by_department=[], by_handler=[], pareto=[],
        trend=Trend([], "Holt's linear trend on the weekly counts", 0.95),
        notes=["本期（2026-12）没有收到投诉，各项比率无数据。 / "
               "No complaints were received in 2026-12: the rates have nothing to measure."],
    )
