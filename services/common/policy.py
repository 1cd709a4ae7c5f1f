"""The policy file: routing rules, time limits and message templates.

Every limit and rule a service applies comes from here, never from code. The
shipped default (``default_policy.yaml``) follows REQUIREMENTS §7.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from schemas.events import CaseAction, Channel, Demand, Level, Milestone, Nature, NotificationKind, Severity
from services.common.errors import ConfigError
from services.common.resolution import ResolutionPolicy, ResultTemplate

DEFAULT_POLICY = Path(__file__).with_name("default_policy.yaml")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: Any) -> timedelta:
    """Parse '90s', '30m', '1h', '3d' (or seconds as a number) into a timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=value)
    if isinstance(value, str) and (m := _DURATION.match(value)):
        return timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])
    raise ValueError(f"not a duration: {value!r} (use e.g. 90s, 30m, 1h, 3d)")


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


def _zone_name(name: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}") from None
    return name


TimeZoneName = Annotated[str, AfterValidator(_zone_name)]
"""An IANA time zone name (Asia/Shanghai), checked against the zone database."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# What starts, stops, pauses, resumes or cancels a milestone's clock:
#   routed              the first routing decision (its time is the complaint's receipt)
#   assigned            a routing decision with a handler and no review pending
#   <case action>       a case.updated action: acknowledged, plan_decided, resolved, ...
#   notified:<kind>     a notification sent to the customer: acknowledgement, result, revisit
#   contacted:<purpose> a contact record that reached the customer: feedback, revisit
NOTIFIED_KINDS = ("acknowledgement", "result", "revisit")
CONTACT_PURPOSES = ("feedback", "revisit")
SIGNALS = frozenset({"routed", "assigned", *(a.value for a in CaseAction),
                     *(f"notified:{k}" for k in NOTIFIED_KINDS),
                     *(f"contacted:{p}" for p in CONTACT_PURPOSES)})
_CODE = re.compile(r"^[A-Z]{2}-\d{2}$")


def _signals(values: list[str]) -> list[str]:
    unknown = [v for v in values if v not in SIGNALS]
    if unknown:
        raise ValueError(f"unknown signals {unknown}; known: {', '.join(sorted(SIGNALS))}")
    return values


Signals = Annotated[list[str], AfterValidator(_signals)]


def _thresholds(values: list[float] | None) -> list[float] | None:
    if values is None:
        return None
    if any(not 0 < v < 1 for v in values) or values != sorted(set(values)):
        raise ValueError(f"warning thresholds must be ascending shares between 0 and 1: {values}")
    return values


Thresholds = Annotated[list[float] | None, AfterValidator(_thresholds)]


class MilestonePolicy(_Frozen):
    start_on: Signals = Field(min_length=1, description="Signals that start a cycle of the clock.")
    stop_on: Signals = Field(min_length=1, description="Signals that meet the milestone.")
    pause_on: Signals = Field(default_factory=list, description="Signals that pause the clock.")
    resume_on: Signals = Field(default_factory=list, description="Signals that resume it.")
    cancel_on: Signals = Field(default_factory=list,
                               description="Signals that end it unmet without a breach.")
    clock: Literal["calendar", "business"] = Field(
        default="calendar", description="business: only the calendar's working hours count.")
    targets: dict[Severity, Duration]
    by_code: dict[str, dict[Severity, Duration]] = Field(
        default_factory=dict, description="Targets per taxonomy code, overriding the severity's.")
    warn_at: Thresholds = Field(default=None, description="Warning shares; default: the policy's.")
    notify: dict[Severity, list[str]]

    @model_validator(mode="after")
    def _every_severity(self) -> MilestonePolicy:
        for name, table in (("targets", self.targets), ("notify", self.notify)):
            missing = [s.value for s in Severity if s not in table]
            if missing:
                raise ValueError(f"{name} lacks severities {missing}")
        bad = [c for c in self.by_code if not _CODE.match(c)]
        if bad:
            raise ValueError(f"by_code: not taxonomy codes (like PQ-01): {bad}")
        if bool(self.pause_on) != bool(self.resume_on):
            raise ValueError("pause_on and resume_on go together")
        return self

    def target(self, severity: Severity, code: str | None) -> timedelta:
        """The target for a severity, or the code's own when it has one."""
        return (self.by_code.get(code or "", {}).get(severity)) or self.targets[severity]


class SlaPolicy(_Frozen):
    warn_at: Thresholds = Field(default_factory=lambda: [0.5, 0.8],
                                description="Shares of the target at which warnings go out.")
    milestones: dict[Milestone, MilestonePolicy] = Field(min_length=1)

    def thresholds(self, milestone: Milestone) -> list[float]:
        own = self.milestones[milestone].warn_at
        return list(own if own is not None else self.warn_at or [])


def _regexes(patterns: list[str]) -> list[str]:
    """Each pattern compiles, and none can run away (a bare ``.*`` or ``.+`` is refused)."""
    for at, source in enumerate(patterns):
        try:
            re.compile(source)
        except re.error as exc:
            raise ValueError(f"[{at}] is not a regular expression: {exc.msg}") from None
        if re.search(r"(?<!\\)\.[*+]", source):
            raise ValueError(f"[{at}] has an unbounded .* or .+: bound the gap, e.g. .{{0,8}}")
    return patterns


Regexes = Annotated[list[str], AfterValidator(_regexes)]


def _patterns(description: str = "") -> Any:
    """A list of regular expressions, empty unless the policy gives some."""
    return Field(default_factory=list, description=description or None)


class KeywordSignal(_Frozen):
    """A named severity signal found by keywords, or phrase patterns, in the subject or description.

    Keywords match as words (Latin) or anywhere (Chinese); patterns are regular expressions over
    the folded text (lower case, NFKC), one family of phrasings each. The reason names the
    phrase that matched. A match in a clause the policy's ``qualifiers`` negate is no signal.
    """

    signal: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="Name shown in the reasons.")
    severity: Severity
    keywords: list[str] = Field(min_length=1)
    patterns: Regexes = _patterns("Phrase patterns (regex).")


class Qualifiers(_Frozen):
    """Words that cancel a signal in their clause ("没有人受伤", "not looking to sue"; a
    counterfactual: "换别人早就告你们了") or make a major one a near miss ("差点起火", "almost
    caught fire"), read before the match; and phrases that only look like a signal."""

    negation: Regexes = _patterns()
    counterfactual: Regexes = _patterns(
        "Cues of what did not and will not happen (换别人早就..., if this were bigger I'd...): cancel "
        "a signal or a stated figure in their clause, like a negation.")
    figurative: Regexes = _patterns(
        "Phrases that only look like a signal (sick of waiting, a dumpster fire, 气得脑袋都炸了): no "
        "signal is read in them.")
    near_miss: Regexes = _patterns()
    near_miss_severity: Severity = Field(default=Severity.urgent,
                                         description="Severity of a major signal in a near miss.")
    clause_breaks: Regexes = _patterns("Where a clause ends: a cue before one is not read.")


class StatedFigures(_Frozen):
    """Nouns after a number that make it an audience ("几十万粉丝", "200k followers") or a count
    of people affected ("上百户", "dozens of residents"), judged by the channel's thresholds."""

    audience: Regexes = _patterns("Audience nouns (regex).")
    audience_before: Regexes = _patterns("Audience nouns written before the number (粉丝有).")
    audience_context: Regexes = _patterns(
        "Channel or group words just before a count of people that make it an audience (my "
        "channel has 20k subscribers, 群里三百人).")
    audience_after: Regexes = _patterns(
        "Words just after a count of people that make it an audience (14k people follow me, "
        "三万多人的论坛).")
    affected_after: Regexes = _patterns(
        "Words after a count of people in an audience's context, in its clause, that make it "
        "people affected after all (业主群里三十户都漏水).")
    affected_context: Regexes = _patterns(
        "Words just before such a count that make it people affected after all (维权群里五百多人, "
        "booked for 112 people).")
    affected: Regexes = _patterns("People nouns (regex).")
    affected_before: Regexes = _patterns(
        "Words just before a number that make it a count of people (a team of 14, 一行二十).")
    bystanders: Regexes = _patterns(
        "Words in the sentence of a count of people that make it no count of people affected: "
        "they are bystanders (就我一个人的行李丢了, I seem to be the only one, a company with 10,000 "
        "employees).")
    affected_joined: Regexes = _patterns(
        "Singular nouns joined to a number by a hyphen that make it a count of people (our "
        "220-unit complex, a 30-member club).")


class Threshold(_Frozen):
    """From which value a number makes a complaint urgent, and major."""

    urgent: float | None = Field(default=None, gt=0)
    major: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> Threshold:
        if self.urgent is not None and self.major is not None and self.major <= self.urgent:
            raise ValueError(f"major ({self.major}) must be above urgent ({self.urgent})")
        return self

    def severity(self, value: float) -> Severity | None:
        """The severity a value reaches, or None below both thresholds."""
        if self.major is not None and value >= self.major:
            return Severity.major
        if self.urgent is not None and value >= self.urgent:
            return Severity.urgent
        return None


class SeverityPolicy(_Frozen):
    """Signals of higher severity (REQUIREMENTS §5); the most severe one found wins."""

    keywords: list[KeywordSignal] = Field(min_length=1)
    public_audience: Threshold = Field(
        description="Followers or views of a public post (channel details: audience, public).")
    affected_customers: Threshold = Field(description="Customers affected (details: affected).")
    amounts: dict[str, Threshold] = Field(
        description="Amount at stake per ISO currency (details: amount, currency; or in the text).")
    default_currency: str = Field(pattern=r"^[A-Z]{3}$",
                                  description="Currency of an amount that names none.")
    latin_currency: str | None = Field(
        default=None, pattern=r"^[A-Z]{3}$",
        description="Currency of an amount that names none in a text written without Chinese "
                    "(\"five figures\", \"I'm out twelve thousand\"); default_currency when unset.")
    vip_tiers: list[str] = Field(description="Customer tiers (details: tier) counted as VIP.")
    vip_severity: Severity
    repeat_severity: Severity = Field(description="The least severity of a repeat complaint.")
    qualifiers: Qualifiers = Field(default_factory=Qualifiers)
    stated: StatedFigures = Field(default_factory=StatedFigures,
                                  description="Audience and people affected written in the text.")

    @model_validator(mode="after")
    def _currencies(self) -> SeverityPolicy:
        bad = [c for c in self.amounts if not re.fullmatch(r"[A-Z]{3}", c)]
        if bad:
            raise ValueError(f"amounts: currencies must be ISO codes like CNY: {bad}")
        if self.default_currency not in self.amounts:
            raise ValueError(f"default_currency {self.default_currency} has no amounts threshold")
        if self.latin_currency is not None and self.latin_currency not in self.amounts:
            raise ValueError(f"latin_currency {self.latin_currency} has no amounts threshold")
        return self


class RouterPolicy(_Frozen):
    repeat_window: Duration = Field(description="A complaint within this time of the customer's "
                                                "earlier one goes back to that one's owner.")
    severity: SeverityPolicy
    levels: dict[Severity, Level]
    review_department: str = Field(pattern=r"^[a-z][a-z0-9_-]*$",
                                   description="Roster department of the review queue (人工复核).")
    escalate_on_breach: list[Milestone] = Field(description="Milestones whose breach escalates.")
    notify: dict[Level, list[str]] = Field(
        description="Roles told when a case is routed at or escalated to a level.")
    channel_desks: dict[Channel, str]

    @model_validator(mode="after")
    def _complete(self) -> RouterPolicy:
        for name, table in (("levels", self.levels),):
            missing = [s.value for s in Severity if s not in table]
            if missing:
                raise ValueError(f"{name} lacks severities {missing}")
        missing = [lv.value for lv in Level if lv not in self.notify]
        if missing:
            raise ValueError(f"notify lacks levels {missing}")
        return self


class Template(_Frozen):
    subject: str
    body: str


TEMPLATE_FIELDS = frozenset({
    "complaint_id", "result", "handler", "owner", "department", "level", "code", "code_name",
    "milestone", "deadline", "reason", "score"})
"""Placeholders a template may use; a missing value renders as '-'."""


def _fields(text: str) -> set[str]:
    import string

    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


class QuietHours(_Frozen):
    """Customer messages of these transports wait while the clock is inside [start, end)."""

    start: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    end: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    timezone: TimeZoneName
    transports: list[Literal["sms", "email", "chat"]] = Field(min_length=1)

    @model_validator(mode="after")
    def _not_empty(self) -> QuietHours:
        if self.start == self.end:
            raise ValueError("start and end are equal: quiet hours would be empty")
        return self


NATURE_KINDS = frozenset({NotificationKind.acknowledgement})
"""Kinds whose customer text depends on the message's nature (praise, suggestion, complaint)."""


class NatureTemplates(_Frozen):
    """A kind's text for praise and for suggestions, per language; a complaint's is the kind's own."""

    praise: dict[str, Template]
    suggestion: dict[str, Template]


def _languages(where: str, langs: dict[str, Template]) -> None:
    for lang in ("zh", "en"):
        if lang not in langs:
            raise ValueError(f"{where} lacks language {lang!r}")
        t = langs[lang]
        unknown = sorted((_fields(t.subject) | _fields(t.body)) - TEMPLATE_FIELDS)
        if unknown:
            raise ValueError(f"{where}.{lang}: unknown placeholders {unknown}; "
                             f"known: {', '.join(sorted(TEMPLATE_FIELDS))}")


class NotifierPolicy(_Frozen):
    templates: dict[NotificationKind, dict[str, Template]]
    by_nature: dict[NotificationKind, NatureTemplates] = Field(
        description="What praise and suggestions get instead of a kind's complaint text.")
    quiet_hours: QuietHours | None = None
    revisit_after: Duration = Field(description="How long after resolution the revisit goes out.")

    @model_validator(mode="after")
    def _both_languages(self) -> NotifierPolicy:
        for kind in NotificationKind:
            _languages(f"templates.{kind.value}", self.templates.get(kind, {}))
        missing = sorted(k.value for k in NATURE_KINDS - self.by_nature.keys())
        if missing:
            raise ValueError(f"by_nature lacks {missing}: praise and suggestions would get "
                             "a complaint's text")
        fixed = sorted(k.value for k in self.by_nature.keys() - NATURE_KINDS)
        if fixed:
            raise ValueError(f"by_nature: {fixed} do not vary by nature; only "
                             f"{', '.join(sorted(k.value for k in NATURE_KINDS))} do")
        for kind, natures in self.by_nature.items():
            _languages(f"by_nature.{kind.value}.praise", natures.praise)
            _languages(f"by_nature.{kind.value}.suggestion", natures.suggestion)
        return self

    def template(self, kind: NotificationKind, language: str, *,
                 nature: Nature = Nature.complaint) -> Template:
        """A kind's template in a language, in the words for the message's nature."""
        natures = self.by_nature.get(kind)
        if natures is None or nature is Nature.complaint:
            return self.templates[kind][language]
        return (natures.praise if nature is Nature.praise else natures.suggestion)[language]


class IntakePolicy(_Frozen):
    default_region: str = Field(pattern=r"^[A-Z]{2}$")
    demand_keywords: dict[Demand, list[str]]
    nature_keywords: dict[Literal["praise", "suggestion"], list[str]]
    complaint_keywords: list[str]
    reply_window: Duration = Field(
        default=timedelta(days=7), description="How long after a revisit (回访) was sent an SMS or "
        "e-mail from its customer that reads as a score is taken as the answer to it.")

    @field_validator("reply_window")
    @classmethod
    def _reply_window(cls, value: timedelta) -> timedelta:
        if not timedelta(hours=1) <= value <= timedelta(days=90):
            raise ValueError(f"intake.reply_window must be between 1h and 90d, not {value}")
        return value


class SatisfactionPolicy(_Frozen):
    """What a satisfaction score (1-5) means, for every service that reads one."""

    dissatisfied_at_most: int = Field(ge=1, le=5, description="A score up to this is dissatisfied: "
                                                              "the notifier reopens the case and the "
                                                              "router escalates it.")

    def dissatisfied(self, score: int | None) -> bool:
        """True for a score at or below the dissatisfaction threshold."""
        return score is not None and score <= self.dissatisfied_at_most


class ReportTargets(_Frozen):
    """The targets a report sets each figure against (REQUIREMENTS §9)."""

    timeliness: float = Field(default=0.98, gt=0, le=1,
                              description="Share of person milestones met on time.")
    resolution_rate: float = Field(default=0.95, gt=0, le=1,
                                   description="Share of complaints resolved within the limit.")
    handling_days: float = Field(default=3.0, gt=0, le=365,
                                 description="Average handling time, working days (at most).")
    satisfaction_rate: float = Field(default=0.90, gt=0, le=1,
                                     description="Share of satisfaction answers that are satisfied.")


class SpikeRule(_Frozen):
    """A week is a spike when its count exceeds the median of the other weeks by more than
    k times their median absolute deviation (MAD, no smaller than a Poisson count's own,
    0.6745·√median), and by at least min_excess complaints."""

    k: float = Field(default=5.0, gt=0, le=100, description="MADs above the median.")
    min_excess: int = Field(default=5, ge=0, le=1_000_000,
                            description="Complaints above the median, at least.")


class ReportPolicy(_Frozen):
    """The complaint analysis report (services/archive/reports, docs/reports.md)."""

    timezone: TimeZoneName = Field(default="Asia/Shanghai",
                                   description="Time zone of the report's dates and weeks.")
    targets: ReportTargets = Field(default_factory=ReportTargets)
    satisfied_at_least: int = Field(default=4, ge=1, le=5,
                                    description="A satisfaction answer at or above this is satisfied.")
    trend_weeks: int = Field(default=26, ge=8, le=260, description="Weeks of the trend.")
    forecast_weeks: int = Field(default=4, ge=1, le=26, description="Weeks forecast after them.")
    interval: float = Field(default=0.95, ge=0.5, lt=1,
                            description="Coverage of the forecast's prediction interval.")
    spike: SpikeRule = Field(default_factory=SpikeRule)
    vital_share: float = Field(default=0.8, gt=0, lt=1,
                               description="Pareto: the codes making up this share are the vital few.")


STAFF_SCOPES = ("booked", "department_unassigned", "department", "review", "all")
Scope = Literal["booked", "department_unassigned", "department", "review", "all"]
# The case actions of the casework contract, accepted here before schemas/events.py has them all.
_CONTRACT_ACTIONS = frozenset({"assigned", "transferred", "co_handler_added", "resolution_proposed",
                               "approved", "contacted"})


def _staff_actions(values: list[str]) -> list[str]:
    known = {a.value for a in CaseAction} | _CONTRACT_ACTIONS | {"*"}
    unknown = [v for v in values if v not in known]
    if unknown:
        raise ValueError(f"unknown case actions {unknown}; known: {', '.join(sorted(known))}")
    return values


class StaffRole(_Frozen):
    """What one staff role may read and do on the desk (services/desk, docs/desk.md)."""

    scopes: list[Scope] = Field(min_length=1, description="The cases it reaches: booked (booked to "
                                "the person or co-handled), department_unassigned (its department's "
                                "cases without a handler: read and take only), department, review "
                                "(the review queue), all.")
    actions: Annotated[list[str], AfterValidator(_staff_actions)] = Field(
        default_factory=list, description="Case actions it may take on those cases; * for every "
                                          "action; none: read only.")


def _default_roles() -> dict[str, StaffRole]:
    work = ["assigned", "transferred", "co_handler_added", "acknowledged", "note", "plan_decided",
            "resolution_proposed", "resolved", "awaiting_customer", "customer_replied", "contacted",
            "suggestion_assessed", "closed"]
    return {"handler": StaffRole(scopes=["booked", "department_unassigned"], actions=work),
            "department_head": StaffRole(scopes=["department"], actions=["*"]),
            "supervisor": StaffRole(scopes=["all"], actions=["*"]),
            "executive": StaffRole(scopes=["all"], actions=["*"]),
            "reviewer": StaffRole(scopes=["review"], actions=["note", "reclassified"]),
            "auditor": StaffRole(scopes=["all"], actions=[])}


class StaffPolicy(_Frozen):
    """Staff roles and the desk's work-list thresholds."""

    due_soon: Duration = Field(default=timedelta(hours=2),
                               description="An open deadline this close is about to breach.")
    roles: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")], StaffRole] = Field(
        default_factory=_default_roles, min_length=1)
    report_roles: list[str] = Field(
        default_factory=lambda: ["department_head", "supervisor", "executive", "auditor"],
        description="Roles that may read the reports (GET /v1/reports/kpi): rule report_roles.")

    @model_validator(mode="after")
    def _known_report_roles(self) -> StaffPolicy:
        unknown = sorted(set(self.report_roles) - set(self.roles))
        if unknown:
            raise ValueError(f"report_roles: {unknown} are not roles of staff.roles")
        return self


class QueuePolicy(_Frozen):
    """How long a case may wait in a department's queue for a handler before ops are alerted."""

    alert_after: Duration = Field(default=timedelta(hours=1), description="The limit of every "
                                  "department without one of its own.")
    departments: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]*$")], Duration] = Field(
        default_factory=dict, description="Limits per roster department.")

    @model_validator(mode="after")
    def _positive(self) -> QueuePolicy:
        bad = [k for k, v in {"alert_after": self.alert_after, **self.departments}.items()
               if v <= timedelta(0)]
        if bad:
            raise ValueError(f"waiting limits must be positive: {', '.join(bad)}")
        return self

    def limit(self, department: str) -> timedelta:
        """The waiting limit of ``department``."""
        return self.departments.get(department, self.alert_after)


class Policy(_Frozen):
    version: str = Field(min_length=1)
    satisfaction: SatisfactionPolicy
    intake: IntakePolicy
    sla: SlaPolicy
    router: RouterPolicy
    notifier: NotifierPolicy
    reports: ReportPolicy = Field(default_factory=ReportPolicy)
    resolution: ResolutionPolicy = Field(
        default_factory=lambda: ResolutionPolicy(approval_above={}, approver_roles=["supervisor"]),
        description="Approval of compensations (four-eyes); default: every compensation.")
    result_templates: dict[str, ResultTemplate] = Field(
        default_factory=dict, description="Customer-facing result texts by id (zh, en).")

    @model_validator(mode="after")
    def _template_ids(self) -> Policy:
        bad = sorted(t for t in self.result_templates if not re.fullmatch(r"[a-z][a-z0-9_]{0,63}", t))
        if bad:
            raise ValueError(f"result_templates: ids must be lower case words like repair_done: {bad}")
        return self
    staff: StaffPolicy = Field(default_factory=StaffPolicy)
    queue: QueuePolicy = Field(default_factory=QueuePolicy,
                               description="Waiting limits of the router's department queues.")

    @model_validator(mode="after")
    def _satisfied_above_dissatisfied(self) -> Policy:
        if self.reports.satisfied_at_least <= self.satisfaction.dissatisfied_at_most:
            raise ValueError(f"reports.satisfied_at_least ({self.reports.satisfied_at_least}) must be "
                             f"above satisfaction.dissatisfied_at_most "
                             f"({self.satisfaction.dissatisfied_at_most})")
        return self


M = TypeVar("M", bound=BaseModel)
FieldPath = Callable[[dict[str, Any], tuple[int | str, ...]], str]


def _dotted(raw: dict[str, Any], loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


def load_policy(path: Path | None = None) -> Policy:
    """Load and validate a policy file; errors name the file, the field and the problem."""
    return load_yaml_model(path or DEFAULT_POLICY, Policy)


def load_yaml_model(path: Path, model: type[M], *, field_path: FieldPath = _dotted) -> M:
    """Load a YAML file into ``model``; every error names the file, the field and the problem."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "?"
        problem = getattr(exc, "problem", None) or type(exc).__name__  # never the text around it
        raise ConfigError(f"{path}: {where}: not valid YAML: {problem}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: (top level): expected a mapping, got {type(raw).__name__}")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        from services.common.settings import redact

        # the field and the problem, never the value (a leaf's rejected text is blanked out)
        lines = [f"{path}: {field_path(raw, err['loc'])}: "
                 f"{redact(err['msg'], err.get('input') if isinstance(err.get('input'), str) else None)}"
                 for err in exc.errors()]
        raise ConfigError("\n".join(lines)) from None
