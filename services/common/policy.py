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
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from schemas.events import Channel, Demand, Level, Milestone, NotificationKind, Severity
from services.common.errors import ConfigError

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


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class MilestonePolicy(_Frozen):
    stop_on: list[str] = Field(min_length=1, description="Case actions that meet the milestone.")
    targets: dict[Severity, Duration]
    notify: dict[Severity, list[str]]

    @model_validator(mode="after")
    def _every_severity(self) -> MilestonePolicy:
        for name, table in (("targets", self.targets), ("notify", self.notify)):
            missing = [s.value for s in Severity if s not in table]
            if missing:
                raise ValueError(f"{name} lacks severities {missing}")
        return self


class SlaPolicy(_Frozen):
    milestones: dict[Milestone, MilestonePolicy]


class KeywordRule(_Frozen):
    keywords: list[str] = Field(min_length=1)


class SeverityRule(KeywordRule):
    severity: Severity


class DepartmentRule(KeywordRule):
    department: str = Field(min_length=1)


class RouterPolicy(_Frozen):
    default_department: str = Field(min_length=1)
    repeat_window: Duration = Field(description="A complaint within this time of the customer's "
                                                "earlier one goes back to that one's owner.")
    repeat_severity: Severity = Field(description="The least severity of a repeat complaint.")
    severity_rules: list[SeverityRule]
    department_rules: list[DepartmentRule]
    levels: dict[Severity, Level]
    channel_desks: dict[Channel, str]

    @model_validator(mode="after")
    def _complete(self) -> RouterPolicy:
        missing = [s.value for s in Severity if s not in self.levels]
        if missing:
            raise ValueError(f"levels lacks severities {missing}")
        return self


class Template(_Frozen):
    subject: str
    body: str


class NotifierPolicy(_Frozen):
    templates: dict[NotificationKind, dict[str, Template]]

    @model_validator(mode="after")
    def _both_languages(self) -> NotifierPolicy:
        for kind in NotificationKind:
            langs = self.templates.get(kind, {})
            for lang in ("zh", "en"):
                if lang not in langs:
                    raise ValueError(f"templates.{kind.value} lacks language {lang!r}")
        return self


class IntakePolicy(_Frozen):
    default_region: str = Field(pattern=r"^[A-Z]{2}$")
    demand_keywords: dict[Demand, list[str]]
    nature_keywords: dict[Literal["praise", "suggestion"], list[str]]
    complaint_keywords: list[str]


class Policy(_Frozen):
    version: str = Field(min_length=1)
    intake: IntakePolicy
    sla: SlaPolicy
    router: RouterPolicy
    notifier: NotifierPolicy


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
        raise ConfigError(f"{path}: {where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: (top level): expected a mapping, got {type(raw).__name__}")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        lines = [f"{path}: {field_path(raw, err['loc'])}: {err['msg']}" for err in exc.errors()]
        raise ConfigError("\n".join(lines)) from None
