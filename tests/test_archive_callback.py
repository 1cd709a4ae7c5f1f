"""The archive keeps ``callback_required`` as a notification's final status: the notifier could not
reach the customer on any transport and handed the case's first-contact owner a call-back task
(schemas.events.NotificationRecord)."""

from __future__ import annotations

import pytest

from schemas.events import NotificationKind
from services.archive import logic
from tests.test_archive_logic import START, Story


@pytest.mark.parametrize(("steps", "status"), [
    (["queued", "callback_required"], "callback_required"),
    (["queued", "retrying", "callback_required"], "callback_required"),  # WeChat refused it for good
    # a redelivered record after it (a queued or deferred step) does not undo the final one
    (["queued", "callback_required", "queued"], "callback_required"),
    (["queued", "callback_required", "deferred"], "callback_required"),
])
def test_a_call_back_notification_keeps_its_final_status(steps: list[str], status: str) -> None:
    # Given a customer notification that no transport could deliver, recorded step by step
    story = Story("C-CB")
    for i, step in enumerate(steps):
        story.notify(i, "ack", NotificationKind.acknowledgement, step, attempt=min(i, 1))
    # When the archive folds its records
    (row,) = logic.fold_notifications(story.archived())
    # Then the row says callback_required, queued when it was queued and never sent
    assert (row.status, row.queued_at, row.sent_at) == (status, START, None)
    assert row.kind == "acknowledgement" and row.role == "customer"


def test_a_call_back_record_is_kept_beside_the_owners_task_of_the_same_case() -> None:
    # Given the customer's acknowledgement recorded callback_required and the owner's task sent
    story = (Story("C-CB2").register(0)
             .notify(1, "ack", NotificationKind.acknowledgement, "queued")
             .notify(2, "ack", NotificationKind.acknowledgement, "callback_required", attempt=1)
             .notify(2, "task", NotificationKind.sla_warning, "queued", role="first_contact_owner")
             .notify(3, "task", NotificationKind.sla_warning, "sent", attempt=1, role="first_contact_owner"))
    # When the case is folded
    _, _, notes = logic.fold(story.archived())
    # Then each notification has its own row with its own final status
    assert {(n.kind, n.role, n.status) for n in notes} == {
        ("acknowledgement", "customer", "callback_required"),
        ("sla_warning", "first_contact_owner", "sent"),
    }
