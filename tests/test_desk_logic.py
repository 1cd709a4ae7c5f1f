"""The desk's permission rules (services/desk/logic.py), pure: a table per rule, allowed and
refused, under the shipped policy's staff section; plus tokens, deadlines and the customer key."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import jwt
import pytest

from services.common.policy import load_policy
from services.desk import auth, logic
from services.desk.auth import Identity
from services.desk.logic import ActionRequest, Allowed, CaseFacts, Refused

STAFF = load_policy().staff
APPROVERS = ["department_head", "supervisor", "executive"]

ANN = Identity("ann", ("handler",), "quality")            # a handler of quality
BOB = Identity("bob", ("handler",), "quality")            # another handler of quality
HEAD = Identity("hq", ("department_head",), "quality")    # quality's department head
SUP = Identity("sue", ("supervisor",), "service")
EXEC = Identity("eve", ("executive",), "board")
REV = Identity("rita", ("reviewer",), "review")
AUD = Identity("al", ("auditor",), "audit")
NOBODY = Identity("x", ("janitor",), "quality")

ANNS = CaseFacts("C-ANN", handler="ann", department="quality")
BOBS = CaseFacts("C-BOB", handler="bob", department="quality")
FREE = CaseFacts("C-FREE", handler=None, department="quality")
OTHER = CaseFacts("C-OTHER", handler="sam", department="billing")
OTHER_FREE = CaseFacts("C-OF", handler=None, department="billing")
REVIEW = CaseFacts("C-REV", handler=None, department="review", review=True)
CO = CaseFacts("C-CO", handler="sam", department="billing", co_handlers=frozenset({"ann"}))


def act(action: str, **kw: str) -> ActionRequest:
    return ActionRequest(action, **kw)


@pytest.mark.parametrize(("who", "case", "rule"), [
    # Given a person and a case, When they open it, Then the rule that decides (None: allowed)
    (ANN, ANNS, None),                  # handler: booked to them
    (ANN, CO, None),                    # handler: they co-handle it
    (ANN, FREE, None),                  # handler: unassigned in their department
    (ANN, BOBS, "case_scope"),          # handler: a colleague's case
    (ANN, OTHER, "case_scope"),         # handler: another department's
    (ANN, OTHER_FREE, "case_scope"),    # handler: another department's unassigned
    (HEAD, BOBS, None),                 # department head: every case of the department
    (HEAD, OTHER, "case_scope"),        # ... and no other
    (SUP, OTHER, None), (EXEC, ANNS, None),  # supervisors and executives: all
    (REV, REVIEW, None),                # reviewer: the review queue
    (REV, FREE, "case_scope"),          # ... and nothing else
    (AUD, OTHER, None),                 # auditor: reads all
    (NOBODY, ANNS, "known_role"),       # a role the policy does not know
])
def test_who_may_read_a_case(who: Identity, case: CaseFacts, rule: str | None) -> None:
    decision = logic.may_read(who, case, staff=STAFF)
    assert (decision.rule if isinstance(decision, Refused) else None) == rule


@pytest.mark.parametrize(("who", "case", "request_", "rule"), [
    (ANN, ANNS, act("plan_decided"), None),                      # handler works their own case
    (ANN, CO, act("note"), None),                                # ... and one they co-handle
    (ANN, ANNS, act("reopened"), "role_actions"),                # not an action of handlers
    (ANN, ANNS, act("approved", requester="bob"), "role_actions"),
    (ANN, FREE, act("assigned", assign_handler="ann"), None),    # takes an unassigned case
    (ANN, FREE, act("assigned", assign_handler="bob"), "take_unassigned"),  # not for someone else
    (ANN, FREE, act("plan_decided"), "take_unassigned"),         # take it first
    (ANN, BOBS, act("note"), "case_scope"),
    (HEAD, BOBS, act("transferred"), None),                      # head: any action in the department
    (HEAD, OTHER, act("note"), "case_scope"),
    (SUP, OTHER, act("reopened"), None),
    (EXEC, OTHER, act("closed"), None),
    (REV, REVIEW, act("reclassified"), None),                    # reviewer: reclassify the queue
    (REV, REVIEW, act("resolved"), "role_actions"),
    (REV, OTHER, act("reclassified"), "case_scope"),
    (AUD, OTHER, act("note"), "read_only"),                      # auditor: reads only
    (NOBODY, ANNS, act("note"), "known_role"),
    (HEAD, BOBS, act("approved", requester="bob"), None),        # an approver approves another's proposal
    (HEAD, BOBS, act("approved", requester="hq"), "four_eyes"),  # never their own
    (Identity("h2", ("department_head", "handler"), "quality"), ANNS,
     act("approved", requester="ann"), None),
])
def test_who_may_act_on_a_case(who: Identity, case: CaseFacts, request_: ActionRequest,
                               rule: str | None) -> None:
    decision = logic.may_act(who, case, request_, staff=STAFF, approver_roles=APPROVERS)
    assert (decision.rule if isinstance(decision, Refused) else None) == rule, decision


def test_an_approval_needs_an_approver_role() -> None:
    # Given a policy that lets handlers approve but whose approver roles exclude them
    staff = STAFF.model_copy(update={"roles": {**STAFF.roles, "handler": STAFF.roles["handler"].model_copy(
        update={"actions": ["approved"]})}})
    # When a handler approves a colleague's proposal on their own case, Then approver_role refuses
    decision = logic.may_act(ANN, ANNS, act("approved", requester="bob"), staff=staff,
                             approver_roles=APPROVERS)
    assert isinstance(decision, Refused) and decision.rule == "approver_role"
    # and without approver roles in the policy the role's actions decide
    assert isinstance(logic.may_act(ANN, ANNS, act("approved", requester="bob"), staff=staff),
                      Allowed)


def test_every_refusal_says_what_to_do() -> None:
    decision = logic.may_act(ANN, FREE, act("resolved"), staff=STAFF)
    assert isinstance(decision, Refused) and "take it first" in decision.detail


def test_the_actions_offered_match_the_decisions() -> None:
    actions = ["assigned", "note", "resolved", "reopened", "approved"]
    assert logic.permitted_actions(ANN, ANNS, actions, staff=STAFF) == ["assigned", "note", "resolved"]
    assert logic.permitted_actions(ANN, FREE, actions, staff=STAFF) == ["assigned"]
    assert logic.permitted_actions(AUD, ANNS, actions, staff=STAFF) == []
    assert logic.permitted_actions(SUP, ANNS, actions, staff=STAFF) == actions


NOW = datetime(2026, 11, 23, 9, tzinfo=UTC)


@pytest.mark.parametrize(("outcome", "deadline", "state"), [
    ("open", NOW - timedelta(seconds=1), "overdue"),
    ("open", NOW + timedelta(hours=2), "due_soon"),
    ("open", NOW + timedelta(hours=2, seconds=1), "running"),
    ("open", None, "paused"),
    ("met", NOW - timedelta(days=1), "met"),
    ("breached", NOW - timedelta(days=1), "breached"),
])
def test_deadline_states(outcome: str, deadline: datetime | None, state: str) -> None:
    assert logic.deadline_state(outcome, deadline, now=NOW, due_soon_seconds=7200) == state


def test_co_handlers_come_from_the_co_handler_events() -> None:
    events = [{"action": "co_handler_added", "summary": {"assignment": {"handler": "ann", "reason": "x"}}},
              {"action": "co_handler_added", "summary": {"assignment": {"department": "billing"}}},
              {"action": "note", "summary": {"note": "ann"}}]
    assert logic.co_handlers(events) == frozenset({"ann"})


def test_the_customer_key_is_intakes() -> None:
    # Given intake's keyed identity of a normalised phone and e-mail
    from schemas.events import Contact
    from services.intake.logic import customer_key

    secret = b"k" * 16
    phone = customer_key(Contact(phone="+8613800138000"), account=None, secret=secret)
    email = customer_key(Contact(email="li@example.com"), account=None, secret=secret)
    # When the desk keys what a person typed, Then it is the same key
    assert logic.customer_key_of("138 0013 8000", region="CN", secret=secret) == phone
    assert logic.customer_key_of(" Li@Example.com ", region="CN", secret=secret) == email
    with pytest.raises(ValueError, match="customer"):
        logic.customer_key_of("not a number", region="CN", secret=secret)


SECRET = b"s" * 32


@pytest.mark.parametrize(("claims", "problem"), [
    ({"roles": ["handler"], "department": "q"}, "sub"),
    ({"sub": "ann", "department": "q"}, "roles"),
    ({"sub": "ann", "roles": ["handler"]}, "department"),
    ({"sub": "ann", "roles": "handler", "department": "q"}, "roles"),
    ({"sub": "customer", "roles": ["handler"], "department": "q"}, "sub"),
])
def test_a_token_lacking_a_claim_is_refused(claims: dict[str, object], problem: str) -> None:
    token = jwt.encode({**claims, "exp": int(time.time()) + 60}, SECRET, algorithm="HS256")
    with pytest.raises(auth.Unauthorized, match=problem):
        auth.TokenVerifier(secret=SECRET).verify(token)


def test_tokens_verify_with_issuer_audience_and_expiry() -> None:
    verifier = auth.TokenVerifier(secret=SECRET, issuer="https://idp", audience="desk", leeway=0)
    good = auth.mint(SECRET, sub="ann", roles=["handler"], department="q", ttl=timedelta(minutes=5),
                     now=time.time(), issuer="https://idp", audience="desk")
    assert verifier.verify(good) == Identity("ann", ("handler",), "q")
    for bad, why in [
        (auth.mint(SECRET, sub="ann", roles=[], department=None, ttl=timedelta(seconds=1),
                   now=time.time() - 60, issuer="https://idp", audience="desk"), "expired"),
        (auth.mint(SECRET, sub="ann", roles=[], department=None, ttl=timedelta(minutes=5),
                   now=time.time(), issuer="https://other", audience="desk"), "issuer"),
        (auth.mint(b"t" * 32, sub="ann", roles=[], department=None, ttl=timedelta(minutes=5),
                   now=time.time(), issuer="https://idp", audience="desk"), "Signature"),
        (jwt.encode({"sub": "ann", "roles": [], "department": None, "exp": int(time.time()) + 60},
                    "", algorithm="none"), "invalid token"),
    ]:
        with pytest.raises(auth.Unauthorized, match=why):
            verifier.verify(bad)


def test_rs256_and_es256_tokens_verify_against_a_jwks_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    keys, signed = [], []
    for kid, private, alg in [("r1", rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256"),
                              ("e1", ec.generate_private_key(ec.SECP256R1()), "ES256")]:
        algo = jwt.algorithms.RSAAlgorithm if alg == "RS256" else jwt.algorithms.ECAlgorithm
        public = json.loads(algo.to_jwk(private.public_key()))
        keys.append({**public, "kid": kid, "alg": alg, "use": "sig"})
        signed.append(jwt.encode({"sub": f"s-{kid}", "roles": ["auditor"], "department": None,
                                  "exp": int(time.time()) + 60}, private, algorithm=alg,
                                 headers={"kid": kid}))
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": keys}))
    verifier = auth.TokenVerifier(jwks=str(tmp_path / "jwks.json"))
    assert [verifier.verify(t).sub for t in signed] == ["s-r1", "s-e1"]
    # an HS256 token signed with the public key's text is not accepted
    with pytest.raises(auth.Unauthorized):
        verifier.verify(auth.mint(b"x" * 32, sub="m", roles=[], department=None,
                                  ttl=timedelta(minutes=1), now=time.time()))


def test_the_secret_file_is_the_owners_only(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = auth.ensure_secret(tmp_path)
    first = path.read_text()
    assert oct(path.stat().st_mode & 0o777) == "0o600" and len(first) >= 32
    assert auth.ensure_secret(tmp_path).read_text() == first  # kept, not replaced


# ---- four-eyes on compensation, result templates, reports ------------------------------------

POLICY = load_policy()


def money(amount: str, currency: str = "CNY") -> dict[str, str]:
    return {"amount": amount, "currency": currency}


def ev(eid: str, action: str, actor: str, **summary: object) -> dict[str, object]:
    return {"event_id": eid, "type": "case.updated", "action": action, "actor": actor, "summary": summary}


def proposal(eid: str, amount: str, actor: str = "ann", currency: str = "CNY") -> dict[str, object]:
    return ev(eid, "resolution_proposed", actor, outcome={"compensation": money(amount, currency)})


def approval(eid: str, proposal_id: str, actor: str = "hq") -> dict[str, object]:
    return ev(eid, "approved", actor, approval={"proposal_event_id": proposal_id, "requester": "ann"})


@pytest.mark.parametrize(("resolved", "timeline", "expected"), [
    # below the CNY 500 threshold: no approval needed
    (money("499.99"), [], Allowed("resolution", "below_threshold")),
    (None, [], Allowed("resolution", "below_threshold")),
    # at the threshold, with no approval: refused
    (money("500.00"), [], "approval_required"),
    # proposed and approved by someone else: allowed
    (money("800.00"), [proposal("p1", "800.00"), approval("a1", "p1")], Allowed("resolution", "approved")),
    # the approval covers less than is resolved: refused
    (money("900.00"), [proposal("p1", "800.00"), approval("a1", "p1")], "approval_required"),
    # approved by the proposer herself (four-eyes): no approval
    (money("800.00"), [proposal("p1", "800.00"), approval("a1", "p1", actor="ann")], "approval_required"),
    # proposed, not yet approved (or the approval not yet archived)
    (money("800.00"), [proposal("p1", "800.00")], "approval_required"),
    # approved, then reopened: the new resolution needs its own approval
    (money("800.00"), [proposal("p1", "800.00"), approval("a1", "p1"), ev("r1", "reopened", "customer")],
     "approval_required"),
    # another currency's approval does not cover it
    (money("800.00"), [proposal("p1", "800.00", currency="USD"), approval("a1", "p1")], "approval_required"),
    # a currency with no threshold always needs one
    (money("1.00", "JPY"), [], "approval_required"),
    # a resolution with no outcome of its own grants the approved proposal's compensation
    ("no outcome", [proposal("p1", "800.00"), approval("a1", "p1")], Allowed("resolution", "approved")),
    ("no outcome", [proposal("p1", "800.00")], "approval_required"),
])
def test_a_compensation_at_the_threshold_needs_an_archived_approval_by_someone_else(
        resolved: object, timeline: list[dict[str, object]], expected: object) -> None:
    from schemas.casework import ResolutionOutcome

    # Given the resolution's outcome (or none) and the case's archived events
    outcome = None if resolved == "no outcome" else ResolutionOutcome.model_validate(
        {"solution": "compensation" if resolved else "repair", "compensation": resolved,
         "party_at_fault": "company", "root_cause": "PQ-01"})
    # When the desk decides on the resolution
    compensation = logic.resolution_compensation(outcome, timeline)
    approver = logic.archived_approver(compensation, timeline)
    decision = logic.may_resolve(compensation, approver, resolution=POLICY.resolution)
    # Then it is allowed, or refused by approval_required with the threshold named
    if isinstance(expected, Allowed):
        assert decision == expected and (approver == "hq") == (expected.scope == "approved")
    else:
        assert isinstance(decision, Refused) and decision.rule == expected
        assert "approval threshold" in decision.detail


@pytest.mark.parametrize(("template", "fields", "expected"), [
    ("refunded", {"amount": "¥120", "date": "2026-12-01"}, None),
    (None, {}, None),                                                    # no template: free result text
    ("nonesuch", {}, "outcome.template"),                                # not a policy template
    ("refunded", {"amount": "¥120"}, "outcome.fields"),                 # a field missing
    ("refunded", {"amount": "¥1", "date": "x", "iban": "y"}, "outcome.fields"),  # one too many
])
def test_a_result_template_must_render_before_the_resolution_is_published(
        template: str | None, fields: dict[str, str], expected: str | None) -> None:
    from schemas.casework import ResolutionOutcome

    outcome = ResolutionOutcome(solution="refund", party_at_fault="company", root_cause="PQ-01",
                                template=template, fields=fields)
    problem = logic.template_problem(outcome, templates=POLICY.result_templates)
    assert (problem[0] if problem else None) == expected
    if problem:
        assert problem[1]  # and it says what is wrong


@pytest.mark.parametrize(("who", "allowed"), [
    (HEAD, True), (SUP, True), (EXEC, True), (AUD, True), (ANN, False), (REV, False), (NOBODY, False),
])
def test_reading_the_reports_needs_a_report_role(who: Identity, allowed: bool) -> None:
    decision = logic.may_read_reports(who, staff=STAFF)
    assert isinstance(decision, Allowed) is allowed
    if not allowed:
        assert isinstance(decision, Refused) and decision.rule == "report_roles"


@pytest.mark.parametrize(("action", "nature", "fits"), [
    ("suggestion_assessed", "suggestion", True),
    ("suggestion_assessed", "complaint", False),
    ("suggestion_assessed", "praise", False),
    ("suggestion_assessed", None, False),  # the archive does not know the nature yet
    ("resolved", "suggestion", True),
    ("note", None, True),
])
def test_a_suggestion_alone_is_assessed(action: str, nature: str | None, fits: bool) -> None:
    # Given an action and a case's nature, Then it fits only where its nature says
    assert logic.fits_nature(action, nature) is fits
    problem = logic.nature_problem(action, "C-1", nature)
    assert (problem is None) is fits
    if problem is not None:  # the detail says what the case is and what the action needs
        assert "C-1" in problem and "suggestion" in problem


@pytest.mark.parametrize(("who", "case", "allowed"), [
    (ANN, ANNS, True), (HEAD, BOBS, True), (SUP, OTHER, True),   # like resolving: booked, department, all
    (BOB, ANNS, False), (ANN, FREE, False), (REV, REVIEW, False), (AUD, ANNS, False),
])
def test_an_assessment_is_authorised_like_a_resolution(who: Identity, case: CaseFacts, allowed: bool) -> None:
    # When someone assesses a suggestion, Then the decision is the one on resolving it
    assessed = logic.may_act(who, case, act("suggestion_assessed"), staff=STAFF)
    resolved = logic.may_act(who, case, act("resolved"), staff=STAFF)
    assert isinstance(assessed, Allowed) is allowed
    assert type(assessed) is type(resolved)
    assert getattr(assessed, "rule", None) == getattr(resolved, "rule", None)
