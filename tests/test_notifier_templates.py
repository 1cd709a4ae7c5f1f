"""Notification templates per kind and language, the preview command, quiet hours."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC as _UTC
from datetime import datetime as _dt
from pathlib import Path
from typing import Any

import pytest
import yaml

from schemas.events import Nature, NotificationKind
from services.common.errors import ConfigError
from services.common.policy import DEFAULT_POLICY, NATURE_KINDS, QuietHours, load_policy
from services.notifier.logic import quiet_until
from services.notifier.messages import SAMPLE, render_text


@pytest.mark.parametrize("kind", list(NotificationKind))
@pytest.mark.parametrize("lang", ["zh", "en"])
def test_every_kind_renders_in_both_languages(kind: NotificationKind, lang: str) -> None:
    subject, body = render_text(kind, lang, SAMPLE, templates=load_policy().notifier)  # type: ignore[arg-type]
    assert "261123-G8DDZ53RCF" in subject + body
    assert "{" not in subject + body and subject and body


@pytest.mark.parametrize("kind", sorted(NATURE_KINDS))
@pytest.mark.parametrize("nature", [Nature.praise, Nature.suggestion])
@pytest.mark.parametrize("lang", ["zh", "en"])
def test_every_nature_variant_renders_in_both_languages(kind: NotificationKind, nature: Nature, lang: str) -> None:
    # Given the shipped policy, When a kind that varies by nature is rendered for praise or a suggestion
    policy = load_policy().notifier
    subject, body = render_text(kind, lang, SAMPLE, templates=policy, nature=nature)  # type: ignore[arg-type]
    # Then it is filled, names the number, and is not the complaint's text
    assert "261123-G8DDZ53RCF" in subject + body and "{" not in subject + body
    assert (subject, body) != render_text(kind, lang, SAMPLE, templates=policy)  # type: ignore[arg-type]


def _broken(tmp_path: Path, change: Any) -> Path:
    raw = yaml.safe_load(DEFAULT_POLICY.read_text(encoding="utf-8"))
    change(raw["notifier"])
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


@pytest.mark.parametrize(("change", "problem"), [
    (lambda n: n.pop("by_nature"), "notifier.by_nature: Field required"),
    (lambda n: n["by_nature"].pop("acknowledgement"),
     "notifier: Value error, by_nature lacks ['acknowledgement']: praise and suggestions would get a complaint's text"),
    (lambda n: n["by_nature"]["acknowledgement"].pop("praise"),
     "notifier.by_nature.acknowledgement.praise: Field required"),
    (lambda n: n["by_nature"]["acknowledgement"]["suggestion"].pop("en"),
     "notifier: Value error, by_nature.acknowledgement.suggestion lacks language 'en'"),
    (lambda n: n["by_nature"]["acknowledgement"]["praise"]["zh"].update(body="谢谢 {name}"),
     "notifier: Value error, by_nature.acknowledgement.praise.zh: unknown placeholders ['name']"),
    (lambda n: n["by_nature"].update(result=n["by_nature"]["acknowledgement"]),
     "notifier: Value error, by_nature: ['result'] do not vary by nature; only acknowledgement do"),
    (lambda n: n["by_nature"]["acknowledgement"].update(complaint=n["templates"]["acknowledgement"]),
     "notifier.by_nature.acknowledgement.complaint: Extra inputs are not permitted"),
])
def test_a_policy_missing_a_nature_variant_is_refused_naming_file_and_field(
        tmp_path: Path, change: Any, problem: str) -> None:
    # Given the shipped policy with its praise / suggestion texts broken
    path = _broken(tmp_path, change)
    # When it is loaded, Then the error names the file, the field and the problem
    with pytest.raises(ConfigError) as err:
        load_policy(path)
    assert str(err.value).startswith(str(path)) and problem in str(err.value)


def test_the_notifier_refuses_to_start_without_the_praise_text(tmp_path: Path) -> None:
    # Given a policy whose acknowledgement has no praise variant
    path = _broken(tmp_path, lambda n: n["by_nature"]["acknowledgement"].pop("praise"))
    env = {"PATH": "/usr/bin:/bin", "COMPLAINTS_DATA_DIR": str(tmp_path), "COMPLAINTS_POLICY_FILE": str(path)}
    # When the notifier starts
    done = subprocess.run([sys.executable, "-m", "services", "run", "notifier"], env=env,  # noqa: S603
                          capture_output=True, text=True, timeout=120, check=False)
    # Then it stops before connecting to anything, naming the file and the field
    assert done.returncode == 2, done.stderr
    assert f"{path}: notifier.by_nature.acknowledgement.praise: Field required" in done.stderr


def test_a_value_the_event_lacks_renders_as_a_dash() -> None:
    _, body = render_text(NotificationKind.assignment, "en", {"complaint_id": "X"},
                          templates=load_policy().notifier)
    assert "assigned to - (-, -)" in body


def test_the_preview_command_prints_a_rendered_template() -> None:
    done = subprocess.run([sys.executable, "-m", "tools.cli", "notify", "preview", "sla_breach", "--lang",
                           "en"], capture_output=True, text=True, check=True, timeout=60)
    assert done.stdout.startswith("Subject: Deadline missed: complaint 261123-G8DDZ53RCF resolve")
    assert "handler quality-l1-01, first-contact owner store-sh-01" in done.stdout


@pytest.mark.parametrize(("nature", "lang", "subject"), [
    ("praise", "en", "Subject: Thank you for your kind words (261123-G8DDZ53RCF)"),
    ("suggestion", "zh", "Subject: 您的建议已收到：261123-G8DDZ53RCF"),
    ("complaint", "en", "Subject: We have registered your complaint 261123-G8DDZ53RCF"),
])
def test_the_preview_command_prints_the_words_for_a_nature(nature: str, lang: str, subject: str) -> None:
    done = subprocess.run([sys.executable, "-m", "tools.cli", "notify", "preview", "acknowledgement", "--lang",
                           lang, "--nature", nature], capture_output=True, text=True, check=True, timeout=60)
    assert done.stdout.startswith(subject)


NIGHT = QuietHours(start="22:00", end="08:00", timezone="Asia/Shanghai", transports=["sms"])
LUNCH = QuietHours(start="12:00", end="13:30", timezone="Asia/Shanghai", transports=["sms", "email"])


@pytest.mark.parametrize(("quiet", "utc_hour", "minute", "transport", "until"), [
    (NIGHT, 13, 59, "sms", None),                              # 21:59 Shanghai
    (NIGHT, 14, 0, "sms", _dt(2026, 11, 24, 0, tzinfo=_UTC)),  # 22:00 -> 08:00 next day
    (NIGHT, 23, 59, "sms", _dt(2026, 11, 24, 0, tzinfo=_UTC)),  # 07:59 (Tue) -> 08:00 (Tue)
    (NIGHT, 0, 0, "sms", None),                                # 08:00 sharp: open again
    (NIGHT, 15, 0, "email", None),                             # e-mail is not held back
    (LUNCH, 4, 30, "email", _dt(2026, 11, 23, 5, 30, tzinfo=_UTC)),  # 12:30 -> 13:30
    (LUNCH, 5, 30, "email", None),
])
def test_quiet_hours_defer_to_their_end(quiet: QuietHours, utc_hour: int, minute: int, transport: str,
                                        until: _dt | None) -> None:
    assert quiet_until(_dt(2026, 11, 23, utc_hour, minute, tzinfo=_UTC), quiet, transport) == until
