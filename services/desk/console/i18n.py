"""Every word of the console in both languages, in one place, and the choice of language.

``TEXT[key] = (zh, en)``. A key the templates ask for and this table lacks is an error at
render time (``Words.__call__`` raises), so a test that renders every page finds it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

Lang = Literal["zh", "en"]
LANGS: tuple[Lang, ...] = ("zh", "en")
DEFAULT_LANG: Lang = "zh"

TEXT: dict[str, tuple[str, str]] = {
    "yes": ("是", "yes"), "no": ("否", "no"),
    # frame
    "title": ("投诉工作台", "Complaint desk"), "signed_in_as": ("当前用户", "Signed in as"),
    "sign_in": ("登录", "Sign in"), "sign_out": ("退出", "Sign out"), "department": ("部门", "Department"),
    "roles": ("角色", "Roles"), "none": ("无", "none"), "back": ("返回", "Back"),
    "language": ("语言", "Language"), "report": ("月度报告", "Monthly report"), "search": ("搜索", "Search"),
    "next_page": ("下一页", "Next page"), "prev_page": ("上一页", "Previous page"),
    "empty": ("没有案件", "No cases"), "submit": ("提交", "Submit"),
    # sign-in
    "signin_help": ("粘贴您的员工令牌（JWT）。令牌只保存在本浏览器的 HttpOnly Cookie 中。",
                    "Paste your staff token (JWT). It is kept only in an HttpOnly cookie of this browser."),
    "token": ("令牌", "Token"), "signed_out": ("您已退出。", "You are signed out."),
    "bad_token": ("令牌无效", "The token was refused"),
    # lists
    "list_mine": ("我的案件", "My cases"), "list_department": ("部门队列", "Department queue"),
    "list_review": ("复核队列", "Review queue"), "list_unassigned": ("待分配", "Unassigned"),
    "list_overdue": ("超时/即将超时", "Overdue / due soon"),
    "col_number": ("编号", "Number"), "col_status": ("状态", "Status"), "col_code": ("类型", "Type"),
    "col_severity": ("等级", "Severity"), "col_channel": ("渠道", "Channel"),
    "col_handler": ("处理人", "Handler"), "col_received": ("受理时间", "Received"),
    "col_deadline": ("最近时限", "Next deadline"), "col_milestone": ("时限", "Milestone"),
    "col_state": ("时限状态", "Deadline state"), "unassigned": ("未分配", "unassigned"),
    # search
    "f_number": ("编号（前缀）", "Number (prefix)"), "f_status": ("状态", "Status"),
    "f_code": ("类型代码", "Type code"), "f_severity": ("等级", "Severity"), "f_channel": ("渠道", "Channel"),
    "f_handler": ("处理人", "Handler"), "f_department": ("部门", "Department"), "f_from": ("自", "From"),
    "f_to": ("至", "To"), "f_customer": ("客户电话或邮箱", "Customer phone or e-mail"),
    "any": ("任意", "any"), "search_note": ("按客户搜索会被记录（不记录号码本身）。",
                                           "A customer search is recorded (the number itself is not)."),
    # case page
    "case": ("案件", "Case"), "owners": ("责任人", "Who owns what"),
    "first_contact_owner": ("首接责任人", "First-contact owner"), "handler": ("处理人", "Handler"),
    "level": ("级别", "Level"), "co_handlers": ("协办人", "Co-handlers"), "contact": ("联系方式（已脱敏）",
                                                                                "Contact (masked)"),
    "product": ("产品", "Product"), "store": ("门店", "Store"), "demand": ("诉求", "Demand"),
    "deadlines": ("处理时限", "Deadlines"), "timeline": ("处理记录", "Timeline"),
    "actions": ("可执行操作", "Actions you may take"), "no_actions": ("您对此案件只有查看权限。",
                                                                   "You may only read this case."),
    "time": ("时间", "Time"), "actor": ("操作人", "By"), "event": ("事件", "Event"),
    "details": ("详情", "Details"), "left": ("剩余", "left"), "overdue_by": ("已超时", "overdue by"),
    "unit_d": ("天", "d"), "unit_h": ("小时", "h"), "unit_m": ("分", "min"),
    "recorded": ("已提交：", "Recorded: "), "recorded_note": (
        "处理记录将在归档收到事件后显示。", "The timeline shows it once the archive has the event."),
    "review_flag": ("待复核", "in review"), "result": ("处理结果", "Result"),
    # action form fields
    "a_handler": ("处理人工号", "Handler (staff id)"), "a_department": ("部门", "Department"),
    "a_reason": ("原因", "Reason"), "a_note": ("备注", "Note"), "a_summary": ("方案摘要", "Plan summary"),
    "a_measure": ("整改措施", "Corrective measure"), "a_owner": ("责任人工号", "Owner (staff id)"),
    "a_due": ("完成日期", "Due date"), "a_solution": ("解决方式", "Solution"),
    "a_party": ("责任方", "Party at fault"), "a_root_cause": ("根因代码", "Root-cause code"),
    "a_template": ("结果模板", "Result template"), "a_fields": ("模板字段", "Template fields"),
    "a_amount": ("补偿金额", "Compensation amount"), "a_currency": ("币种", "Currency"),
    "a_proposal": ("待审批方案", "Proposal to approve"), "a_kind": ("联系方式", "Contact kind"),
    "a_purpose": ("目的", "Purpose"), "a_reached": ("已联系上客户", "Customer reached"),
    "a_score": ("满意度 1-5", "Satisfaction 1-5"), "a_code": ("新类型代码", "New type code"),
    "a_decision": ("评估结论", "Decision"),
    "a_assessment_reason": ("理由（不予采纳时必填）", "Reason (required when declined)"),
    "a_assessment_measure": ("将做的改进（采纳时）", "What will change (when adopted)"),
    "nature": ("反馈性质", "Nature"), "assessment": ("建议评估", "Assessment"),
    "take_reason": ("从队列领取", "taken from the queue"), "take": ("领取此案件", "Take this case"),
    "needs_approval": ("补偿金额达到审批线，需先提交方案并经他人审批。",
                       "The compensation needs an approval: propose the resolution and have someone "
                       "else approve it first."),
    # errors
    "error": ("出错了", "Something went wrong"), "e401": ("请先登录", "Please sign in"),
    "e403": ("无权操作", "Not permitted"), "e404": ("未找到", "Not found"),
    "e422": ("提交内容有误", "The form has a problem"), "e409": ("冲突", "Conflict"),
    "e400": ("请求有误", "Bad request"), "e503": ("暂时不可用", "Temporarily unavailable"),
    "e500": ("内部错误", "Internal error"), "rule": ("规则", "Rule"),
    "csrf": ("表单已过期或来自其他网站，请返回重新提交。",
             "The form is stale or came from another site; go back and submit it again."),
    "month": ("月份", "Month"), "show": ("显示", "Show"),
    "report_scope": ("月度报告仅对部门负责人、主管、高管和审计开放。",
                     "The monthly report is for department heads, supervisors, executives and auditors."),
}

# Enumerations shown to people: (kind, value) -> (zh, en)
NAMES: dict[str, dict[str, tuple[str, str]]] = {
    "action": {
        "acknowledged": ("初步响应", "Acknowledge"), "note": ("备注", "Note"),
        "plan_decided": ("确定处理方案", "Record the plan"), "resolved": ("解决", "Resolve"),
        "satisfaction": ("满意度", "Satisfaction"), "reopened": ("重新打开", "Reopen"),
        "reclassified": ("重新分类", "Reclassify"),
        "awaiting_customer": ("等待客户", "Wait for the customer"),
        "customer_replied": ("客户已回复", "Customer replied"), "closed": ("结案", "Close"),
        "assigned": ("分配", "Assign"), "transferred": ("转办", "Transfer"),
        "co_handler_added": ("增加协办人", "Add a co-handler"),
        "resolution_proposed": ("提交解决方案审批", "Propose a resolution"),
        "approved": ("审批通过", "Approve"), "contacted": ("联系记录", "Record a contact"),
        "suggestion_assessed": ("评估建议", "Assess the suggestion"),
        "registered": ("登记", "Registered"), "routed": ("分派", "Routed"),
        "escalated": ("升级", "Escalated"),
        # SLA clocks and notifications on the timeline
        "started": ("开始计时", "Clock started"), "warning": ("时限预警", "Deadline warning"),
        "paused": ("暂停计时", "Clock paused"), "resumed": ("恢复计时", "Clock resumed"),
        "met": ("按时限完成", "Milestone met"), "breached": ("超时", "Deadline breached"),
        "cancelled": ("已取消", "Cancelled"), "queued": ("待发送", "Queued"), "sent": ("已发送", "Sent"),
        "deferred": ("延后发送", "Deferred"), "retrying": ("重试发送", "Retrying"),
        "failed": ("发送失败", "Failed"), "in_doubt": ("待核实", "In doubt"),
        "outboxed": ("仅写入发件箱（未送达）", "Written to the outbox (not delivered)"),
        "rate_limited": ("超出收件人限额，未发送", "Not sent: recipient limit reached"),
        "callback_required": ("无法送达，已派联系任务给首接负责人",
                              "Not deliverable: call-back task for the first-contact owner"),
    },
    # why a request was refused, by the rule's name (the problem's detail follows, as the desk says it)
    "rule": {"case_scope": ("此案件不在您的角色可处理的范围内。",
                            "This case is outside what your roles reach."),
             "role_actions": ("您的角色不能执行此操作。", "Your roles may not take this action."),
             "read_only": ("您的角色只能查看，不能操作。", "Your roles may read, not act."),
             "take_unassigned": ("本部门的待分配案件只能由您领取，不能执行其他操作。",
                                 "An unassigned case of your department can only be taken."),
             "four_eyes": ("审批人不能是申请人本人。", "The approver may not be the requester."),
             "approver_role": ("您的角色不能审批解决方案。", "Your roles may not approve resolutions."),
             "approval_required": ("该补偿金额需先经审批才能解决。",
                                   "This compensation needs an approval before the case is resolved."),
             "known_role": ("令牌中没有本系统认可的角色。", "The token names no role this desk knows."),
             "report_roles": ("您的角色不能查看报告。", "Your roles may not read the reports."),
             "report_scope": ("月度报告仅对部门负责人、主管、高管和审计开放。",
                              "The monthly report is for department heads, supervisors, executives and "
                              "auditors."),
             "csrf": ("表单已失效或来自其他网站，请刷新页面后重试。",
                      "The form is stale or came from another site: reload the page and try again.")},
    # the facts on a timeline line
    "detail": {"note": ("备注", "note"), "result": ("处理结果", "result"), "score": ("评分", "score"),
               "code": ("类型代码", "code"), "department": ("部门", "department"),
               "handler": ("处理人", "handler"), "level": ("级别", "level"), "reason": ("原因", "reason"),
               "milestone": ("时限", "milestone"), "cycle": ("轮次", "cycle"),
               "deadline": ("期限", "deadline"),
               "kind": ("类别", "kind"), "status": ("状态", "status"), "plan": ("处理方案", "plan"),
               "measure": ("整改措施", "measure"), "assignment": ("分配", "assignment"),
               "outcome": ("解决要素", "outcome"), "approval": ("审批", "approval"),
               "contact": ("联系", "contact"), "solution": ("解决方式", "solution"),
               "party_at_fault": ("责任方", "party at fault"), "root_cause": ("根本原因", "root cause"),
               "compensation": ("补偿", "compensation"), "template": ("结果模板", "template"),
               "fields": ("模板字段", "fields"), "approved_by": ("审批人", "approved by"),
               "purpose": ("目的", "purpose"), "reached": ("已联系上", "reached"),
               "proposal_event_id": ("方案事件", "proposal"), "requester": ("申请人", "requester"),
               "assessment": ("建议评估", "assessment"), "decision": ("结论", "decision")},
    "status": {"open": ("处理中", "open"), "awaiting_customer": ("等待客户", "awaiting customer"),
               "reopened": ("已重开", "reopened"), "resolved": ("已解决", "resolved"),
               "closed": ("已结案", "closed")},
    "severity": {"general": ("一般", "general"), "urgent": ("紧急", "urgent"), "major": ("重大", "major")},
    "state": {"overdue": ("已超时", "overdue"), "due_soon": ("即将超时", "due soon"),
              "running": ("计时中", "running"), "paused": ("暂停", "paused"), "met": ("按时完成", "met"),
              "breached": ("已违约", "breached"), "cancelled": ("已取消", "cancelled")},
    "milestone": {"acknowledge": ("受理回执", "acknowledge"), "respond": ("初步响应", "respond"),
                  "dispatch": ("分派", "dispatch"), "plan": ("处理方案", "plan"),
                  "resolve": ("解决", "resolve"),
                  "feedback": ("结果反馈", "feedback"), "revisit": ("回访", "revisit")},
    "solution": {"repair": ("维修", "repair"), "replace": ("更换", "replace"), "return": ("退货", "return"),
                 "refund": ("退款", "refund"), "software_fix": ("软件修复", "software fix"),
                 "apology": ("道歉", "apology"), "explanation": ("解释说明", "explanation"),
                 "compensation": ("补偿", "compensation"), "other": ("其他", "other")},
    "party": {"company": ("公司", "company"), "customer": ("客户", "customer"),
              "third_party": ("第三方", "third party"), "none": ("无", "none"),
              "undetermined": ("待定", "undetermined")},
    "kind": {"phone_callback": ("电话回访", "phone call-back"), "visit": ("上门", "visit"),
             "chat": ("在线沟通", "chat"),
             # a notification's kind (NotificationKind)
             "acknowledgement": ("受理回执", "acknowledgement"), "result": ("处理结果告知", "result"),
             "revisit": ("满意度回访", "revisit"), "reopened": ("重新受理告知", "reopened"),
             "assignment": ("派单通知", "assignment"), "escalation": ("升级通知", "escalation"),
             "sla_warning": ("时限预警", "deadline warning"),
             "sla_breach": ("时限超期", "deadline breached")},
    "purpose": {"feedback": ("结果反馈", "feedback"), "revisit": ("满意度回访", "revisit"),
                "other": ("其他", "other")},
    "decision": {"adopted": ("采纳", "adopted"), "declined": ("不予采纳", "declined")},
    "nature": {"complaint": ("投诉", "complaint"), "suggestion": ("建议", "suggestion"),
               "praise": ("表扬", "praise")},
    "channel": {"phone": ("电话", "phone"), "web_form": ("网页表单", "web form"),
                "email": ("电子邮件", "e-mail"), "wechat": ("微信", "WeChat"),
                "social": ("社交媒体", "social media"), "app": ("App", "app"),
                "store": ("门店", "store"), "sms": ("短信", "SMS"),
                "review_platform": ("点评平台", "review platform"),
                "survey_reply": ("回访问卷", "survey reply"),
                "partner": ("合作方", "partner"), "letter": ("信函", "letter")},
}


class Words:
    """The console's words in one language: ``t("key")`` and ``name("kind", value)``."""

    def __init__(self, lang: Lang) -> None:
        self.lang = lang
        self._i = LANGS.index(lang)

    def __call__(self, key: str) -> str:
        """The word for ``key`` (KeyError for a key the table lacks)."""
        return TEXT[key][self._i]

    def name(self, kind: str, value: object) -> str:
        """How an enumeration value is shown; an unknown value is shown as it is."""
        pair = NAMES[kind].get(str(value))
        return pair[self._i] if pair else str(value)


def choose_lang(query: Mapping[str, str], cookie: str | None, accept_language: str | None) -> Lang:
    """The language: ?lang=, then the cookie, then the browser's Accept-Language, then zh."""
    for given in (query.get("lang"), cookie):
        if given in LANGS:
            return given
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        ranked.append((-q, index, tag.strip().lower()))
    for negative_q, _, tag in sorted(ranked):
        primary = tag.split("-")[0]
        if negative_q < 0 and primary in LANGS:
            return primary
    return DEFAULT_LANG
