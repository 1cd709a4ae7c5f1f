"""Notification templates per kind and language, the preview command, quiet hours."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC as _UTC
from datetime import datetime as _dt

import pytest

from schemas.events import NotificationKind
from services.common.policy import QuietHours, load_policy
from services.notifier.logic import quiet_until
from services.notifier.messages import SAMPLE, render_text


@pytest.mark.parametrize("kind", list(NotificationKind))
@pytest.mark.parametrize("lang", ["zh", "en"])
def test_every_kind_renders_in_both_languages(kind: NotificationKind, lang: str) -> None:
    subject, body = render_text(kind, lang, SAMPLE, templates=load_policy().notifier)  # type: ignore[arg-type]
    assert "261123-G8DDZ53RCF" in subject + body
    assert "{" not in subject + body and subject and body


def test_a_value_the_event_lacks_renders_as_a_dash() -> None:
    _, body = render_text(NotificationKind.assignment, "en", {"complaint_id": "X"},
                          templates=load_policy().notifier)
    assert "assigned to - (-, -)" in body


def test_the_preview_command_prints_a_rendered_template() -> None:
    done = subprocess.run([sys.executable, "-m", "tools.cli", "notify", "preview", "sla_breach", "--lang",
                           "en"], capture_output=True, text=True, check=True, timeout=60)
    assert done.stdout.startswith("Subject: Deadline missed: complaint 261123-G8DDZ53RCF resolve")
    assert "handler quality-l1-01, first-contact owner store-sh-01" in done.stdout


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
