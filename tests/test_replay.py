"""`complaints replay`: the CFPB mapping, reading rows, the accounting, and a replay through the stack."""

from __future__ import annotations

import base64
import json
from collections import Counter
from datetime import date, timedelta
from email import message_from_string
from email.message import EmailMessage
from email.policy import default as email_policy
from pathlib import Path

import pytest

from schemas.events import Channel, InboundMessage, InboundReceived
from tests.harness import Service
from tools.replay import cfpb
from tools.replay.run import ReplayError, channel_row, own_ids, replay, rows
from tools.replay.tally import Row, Skip, Tally, format_summary, summarise

DATA = Path(__file__).parent / "data" / "cfpb"
MINI, SEP_2016, AUG_2013 = (DATA / f for f in
                            ("cfpb-2012-2017-mini.csv", "cfpb-2016-09.csv", "cfpb-2013-08-10.csv"))


def _record(**fields: str) -> dict[str, str]:
    base = {"date_received": "2017-03-21", "product": "Credit reporting", "sub_product": "",
            "issue": "Incorrect information on credit report", "sub_issue": "Account status",
            "consumer_complaint_narrative": "", "submitted_via": "Web", "complaint_id": "2397100"}
    return {**base, **fields}


# ---- the CFPB export ----------------------------------------------------------------


@pytest.mark.parametrize(("name", "expected"), [
    ("date_received", "date_received"),
    ("Date received", "date_received"),
    ("\ufeffDate received", "date_received"),
    ("Sub-product", "sub_product"),
    ("ZIP code", "zip_code"),
    ("zipcode", "zip_code"),
    ("Consumer consent provided?", "consumer_consent_provided"),
    ("Consumer disputed?", "consumer_disputed"),
    ("consumer_disputed?", "consumer_disputed"),
    ("Timely response?", "timely_response"),
    ("Complaint ID", "complaint_id"),
])
def test_header_spellings_fold_to_snake_case(name: str, expected: str) -> None:
    assert cfpb.header(name) == expected


def test_the_three_samples_read_to_the_same_columns() -> None:
    columns = [set(next(cfpb.read_records(f))[1]) for f in (MINI, SEP_2016, AUG_2013)]
    assert columns[0] == columns[1] == columns[2]
    assert len(columns[0]) == 18
    assert {"date_received", "submitted_via", "consumer_disputed", "complaint_id"} <= columns[0]


@pytest.mark.parametrize(("text", "expected"), [
    ("2017-03-21", date(2017, 3, 21)),  # ISO
    ("09/12/2016", date(2016, 9, 12)),  # MM/DD/YYYY
    ("8/30/2013", date(2013, 8, 30)),  # M/D/YYYY
    ("10/1/2013", date(2013, 10, 1)),
    (" 9/2/2013 ", date(2013, 9, 2)),
])
def test_dates_in_the_three_spellings(text: str, expected: date) -> None:
    assert cfpb.parse_date(text) == expected


@pytest.mark.parametrize("text", ["", "2017/03/21", "21.03.2017", "13/45/2013", "2017-3-21"])
def test_other_dates_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        cfpb.parse_date(text)


@pytest.mark.parametrize(("day", "offset_hours"), [(date(2017, 3, 21), -4), (date(2013, 1, 15), -5)])
def test_received_at_is_new_york_midnight(day: date, offset_hours: int) -> None:
    when = cfpb.received_at(day)
    assert (when.hour, when.minute, when.date()) == (0, 0, day)
    assert when.utcoffset() == timedelta(hours=offset_hours)


@pytest.mark.parametrize(("text", "expected"), [
    ("true", True), ("Yes", True), ("YES", True), ("false", False), ("No", False),
    ("", None), ("N/A", None), ("maybe", None),
])
def test_flags(text: str, expected: bool | None) -> None:
    assert cfpb.parse_flag(text) is expected


VIA = {  # every "Submitted via" of the three samples, then values they do not have
    "Web": (Channel.web_form, None), "Phone": (Channel.phone, None),
    "Referral": (Channel.partner, None), "Postal mail": (Channel.letter, "postal"),
    "Fax": (Channel.letter, "fax"), "Email": (Channel.email, None),
}
OTHER_VIA = {
    "Web Referral": (Channel.web_form, None), "Servicemember Portal": (Channel.web_form, None),
    "  postal   MAIL ": (Channel.letter, "postal"), "": (Channel.partner, None),
    "Carrier pigeon": (Channel.partner, None),
}


@pytest.mark.parametrize(("via", "expected"), [*VIA.items(), *OTHER_VIA.items()])
def test_submitted_via_maps_to_a_channel(via: str, expected: tuple[Channel, str | None]) -> None:
    assert cfpb.channel_of(via) == expected


def test_the_samples_use_only_the_mapped_submitted_via_values() -> None:
    seen = {rec["submitted_via"] for f in (MINI, SEP_2016, AUG_2013) for _, rec in cfpb.read_records(f)}
    assert seen == set(VIA)


@pytest.mark.parametrize(("fields", "expected"), [
    ({}, "Credit reporting: Incorrect information on credit report (Account status)"),
    ({"sub_issue": ""}, "Credit reporting: Incorrect information on credit report"),
    ({"sub_product": "Medical", "issue": "Cont'd attempts collect debt not owed",
      "sub_issue": "Debt was paid", "product": "Debt collection"},
     "Debt collection / Medical: Cont'd attempts collect debt not owed (Debt was paid)"),
    ({"consumer_complaint_narrative": "  I disputed XXXX twice.  "}, "I disputed XXXX twice."),
    ({"product": "", "issue": "", "sub_issue": ""}, "Consumer complaint (no details given)"),
])
def test_text_is_the_narrative_else_a_sentence(fields: dict[str, str], expected: str) -> None:
    assert cfpb.complaint_text(_record(**fields)) == expected


@pytest.mark.parametrize(("via", "channel", "text_field", "time_field", "extra"), [
    ("Web", Channel.web_form, "description", "submitted_at", {"form_id": "cfpb:2397100"}),
    ("Phone", Channel.phone, "notes", "started_at", {"call_id": "cfpb:2397100"}),
    ("Referral", Channel.partner, "description", "reported_at",
     {"reference": "cfpb:2397100", "reporter": "cfpb-referral"}),
    ("Postal mail", Channel.letter, "text", "received_at",
     {"reference": "cfpb:2397100", "medium": "postal"}),
    ("Fax", Channel.letter, "text", "received_at", {"reference": "cfpb:2397100", "medium": "fax"}),
])
def test_json_channel_payloads(via: str, channel: Channel, text_field: str, time_field: str,
                               extra: dict[str, str]) -> None:
    ch, message_id, payload = cfpb.cfpb_row(_record(submitted_via=via,
                                                    consumer_complaint_narrative="My narrative."))
    assert (ch, message_id) == (channel, "cfpb:2397100")
    assert isinstance(payload, dict)
    assert payload[text_field] == "My narrative."
    assert payload[time_field] == "2017-03-21T00:00:00-04:00"
    assert payload["product"] == "Credit reporting"
    assert extra.items() <= payload.items()
    if channel is Channel.phone:
        assert "caller" not in payload and "subject" not in payload  # the format has no subject
    else:
        assert payload["subject"] == "Incorrect information on credit report"


def test_email_is_a_raw_rfc5322_message() -> None:
    ch, message_id, raw = cfpb.cfpb_row(_record(submitted_via="Email", complaint_id="510326"))
    assert (ch, message_id) == (Channel.email, "cfpb:510326")
    assert isinstance(raw, str)
    msg = message_from_string(raw, policy=email_policy)
    assert isinstance(msg, EmailMessage)
    assert msg["From"] == "CFPB consumer <consumer-510326@cfpb.example>"
    assert msg["Subject"] == "Incorrect information on credit report"
    assert msg["Message-ID"] == "<cfpb-510326@cfpb.example>"
    assert msg["Date"].datetime == cfpb.received_at(date(2017, 3, 21))
    body = msg.get_body()
    assert body is not None
    assert body.get_content().strip() == (
        "Credit reporting: Incorrect information on credit report (Account status)")


@pytest.mark.parametrize(("fields", "error"), [
    ({"complaint_id": " "}, "no complaint id"), ({"date_received": "yesterday"}, "not a date")])
def test_unusable_rows_are_refused(fields: dict[str, str], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        cfpb.cfpb_row(_record(**fields))


@pytest.mark.parametrize(("path", "count", "channels", "narratives"), [
    (MINI, 145, {"web_form": 101, "partner": 24, "phone": 9, "letter": 11}, 13),
    (SEP_2016, 349, {"web_form": 314, "phone": 17, "partner": 11, "letter": 7}, 0),
    (AUG_2013, 1000, {"web_form": 691, "letter": 126, "partner": 92, "phone": 90, "email": 1}, 0),
])
def test_sample_files(path: Path, count: int, channels: dict[str, int], narratives: int) -> None:
    out = list(cfpb.cfpb_rows(path))
    assert len(out) == count == len({mid for _, mid, _ in out})
    assert Counter(ch.value for ch, _, _ in out) == channels
    assert sum(1 for _, rec in cfpb.read_records(path) if rec["consumer_complaint_narrative"]) == narratives


def test_payloads_are_accepted_by_their_channel_adapters() -> None:
    from services.intake.channels import parse

    for path in (MINI, SEP_2016, AUG_2013):
        for ch, mid, payload in cfpb.cfpb_rows(path):
            msg = parse(ch, payload)
            assert msg.text and msg.occurred_at is not None, mid


@pytest.mark.parametrize(("path", "not_timely", "disputed", "undisputed", "unknown", "sent_early"), [
    (MINI, 11, 4, 141, 0, 0), (SEP_2016, 0, 41, 0, 308, 0),
    (AUG_2013, 16, 211, 789, 0, 23),  # real data: 23 rows "sent to company" the day before received
])
def test_truth(path: Path, not_timely: int, disputed: int, undisputed: int, unknown: int,
               sent_early: int) -> None:
    truth = cfpb.cfpb_truth(path)
    assert set(truth) == {mid for _, mid, _ in cfpb.cfpb_rows(path)}
    assert sum(1 for t in truth.values() if t["timely"] is False) == not_timely
    assert Counter(t["disputed"] for t in truth.values()) == Counter(
        {k: v for k, v in ((True, disputed), (False, undisputed), (None, unknown)) if v})
    for t in truth.values():
        assert t["product"] and t["issue"] and t["submitted_via"] in VIA
    assert sum(1 for t in truth.values()
               if t["sent_to_company"] and t["sent_to_company"] < t["received"]) == sent_early


def test_truth_of_one_row() -> None:
    assert cfpb.cfpb_truth(MINI)["cfpb:2397100"] == {
        "product": "Credit reporting", "sub_product": None,
        "issue": "Incorrect information on credit report", "sub_issue": "Information is not mine",
        "submitted_via": "Phone", "received": date(2017, 3, 21), "sent_to_company": date(2017, 3, 21),
        "company_response": "Closed with non-monetary relief", "timely": True, "disputed": False}


# ---- reading a channel's own rows ------------------------------------------------------------


def test_csv_rows_keep_strings_drop_empty_cells_and_use_their_own_ids(tmp_path: Path) -> None:
    f = tmp_path / "calls.csv"
    f.write_text('call_id,caller,notes,started_at\n'
                 'C-1,+8613800138000,"Rude agent,\nlong wait",2026-11-23T09:30:00+08:00\n'
                 ',,no id here,\n\n'
                 'C-3,,,\n', encoding="utf-8")
    got = list(rows(f, channel="phone"))
    assert got == [
        Row(2, Channel.phone, "C-1", {"call_id": "C-1", "caller": "+8613800138000",
            "notes": "Rude agent,\nlong wait", "started_at": "2026-11-23T09:30:00+08:00"},
            frozenset({"C-1"})),
        Row(4, Channel.phone, "calls.csv:4", {"notes": "no id here"}),
        Row(6, Channel.phone, "C-3", {"call_id": "C-3"}, frozenset({"C-3"})),
    ]


@pytest.mark.parametrize("suffix", [".jsonl", ".ndjson", ".JSONL"])
def test_jsonl_rows(tmp_path: Path, suffix: str) -> None:
    f = tmp_path / f"forms{suffix}"
    f.write_text("\n".join([
        json.dumps({"form_id": "F-1", "description": "broken"}),
        "",
        json.dumps({"id": 42, "message_id": "M-7", "description": "late"}),
        "{not json",
        json.dumps([1, 2]),
        json.dumps({"description": "no id", "reference": "REF-9"}),
        json.dumps("From: a@example.com\nMessage-ID: <m1@example.com>\n\nhello"),
    ]) + "\n", encoding="utf-8")
    got = list(rows(f, channel=Channel.web_form))
    name = f.name
    assert [(r.line, r.message_id) if isinstance(r, Row) else (r.line, r.reason[:8]) for r in got] == [
        (1, "F-1"), (3, "M-7"), (4, "not JSON"), (5, "not a JS"), (6, f"{name}:6"), (7, f"{name}:7")]
    assert isinstance(got[1], Row) and got[1].aliases == frozenset({"M-7", "42"})
    assert isinstance(got[4], Row) and got[4].aliases == frozenset({"REF-9"})
    assert isinstance(got[5], Row) and isinstance(got[5].payload, str)
    assert got[5].aliases == frozenset({"<m1@example.com>", "m1@example.com"})


def test_own_ids_ignore_flags_and_blanks() -> None:
    assert own_ids({"id": True, "form_id": " ", "review_id": 7}) == frozenset({"7"})
    assert own_ids("no headers at all") == frozenset()


def test_a_cfpb_email_row_carries_its_message_id_as_aliases() -> None:
    email_row = next(r for r in rows(AUG_2013, fmt="cfpb") if isinstance(r, Row)
                     and r.channel is Channel.email)
    assert email_row.aliases == frozenset({"<cfpb-510326@cfpb.example>", "cfpb-510326@cfpb.example"})


@pytest.mark.parametrize(("name", "kwargs", "error"), [
    ("x.txt", {"channel": "web_form"}, "expected .csv"),
    ("x.csv", {}, "either a channel"),
    ("x.csv", {"channel": "web_form", "fmt": "cfpb"}, "either a channel"),
    ("x.csv", {"fmt": "other"}, "either a channel"),
    ("x.csv", {"channel": "fax"}, "unknown channel"),
    ("missing.csv", {"channel": "web_form"}, "no such file"),
])
def test_bad_arguments_are_refused_at_once(tmp_path: Path, name: str, kwargs: dict[str, str],
                                           error: str) -> None:
    (tmp_path / "x.txt").write_text("")
    (tmp_path / "x.csv").write_text("a\n1\n")
    with pytest.raises(ReplayError, match=error):
        rows(tmp_path / name, **kwargs)


def test_a_value_that_is_neither_object_nor_string_is_skipped() -> None:
    assert channel_row(Channel.sms, 3, 12, "f.jsonl") == Skip(3, "not a JSON object or string")
    assert channel_row(Channel.sms, 4, "  ", "f.jsonl") == Skip(4, "not a JSON object or string")


# ---- accounting -----------------------------------------------------------------------------


def _event(topic: str, **fields: object) -> tuple[str, bytes]:
    return topic, json.dumps(fields).encode()


def _tally() -> Tally:
    return Tally(
        [Row(1, Channel.web_form, "F-1", {}), Row(2, Channel.partner, "cfpb:9", {}, frozenset({"cfpb:9"})),
         Row(3, Channel.survey_reply, "s.jsonl:3", {}), Row(4, Channel.web_form, "F-4", {}),
         Row(5, Channel.email, "e:5", "", frozenset({"<m5@x>", "m5@x"})),
         Row(6, Channel.web_form, "F-6", {})],
        ["ev1", "ev2", "ev3", "ev4", "ev5", "ev6"])


def test_rows_are_accounted_for_by_registration_case_event_or_dead_letter() -> None:
    t = _tally()
    original = base64.b64encode(InboundReceived.new(
        InboundMessage(channel=Channel.web_form, message_id="F-4", payload={}), source="replay",
        time=cfpb.received_at(date(2020, 1, 1)), subject=None, id="ev4").to_bytes()).decode()
    for topic, value in [
        _event("complaints.registered", correlationid="ev1",
               data={"complaint_id": "C1", "source_message_id": "web_form:id:F-1"}),
        # a duplicate of an earlier run: the first delivery's correlation id, the row's id in a tail
        _event("complaints.registered", correlationid="old",
               data={"complaint_id": "C2", "source_message_id": "partner:id:cfpb-referral:cfpb:9"}),
        _event("complaints.lifecycle", type="case.updated", correlationid="other", causationid="ev3",
               data={"complaint_id": "C0", "action": "satisfaction"}),
        _event("complaints.lifecycle", type="case.updated", correlationid="ev6",
               data={"complaint_id": "C6", "action": "acknowledged"}),  # not a survey reply
        _event("complaints.deadletter", data={"reason": "schema: description: Field required",
                                              "original": original}),
        _event("complaints.deadletter", data={"reason": "garbage", "original": "!!"}),
        _event("complaints.registered", correlationid="ev5",
               data={"complaint_id": "C5", "source_message_id": "email:id:<m5@x>"}),
        ("complaints.registered", b"not json"),
    ]:
        t.see(topic, value)
    assert t.outcome == {0: "registered", 1: "registered", 2: "recorded", 3: "dead-lettered",
                         4: "registered"}
    s = summarise("f.csv", 7, Counter({"not JSON": 1}), Counter(), t, waited=True, seconds=1.5)
    assert (s.sent, s.registered, s.complaints, s.already_registered, s.recorded) == (6, 3, 3, 1, 1)
    assert s.dead_lettered == Counter({"schema: description: Field required": 1})
    assert (s.missing, s.missing_ids, s.complete) == (1, ["F-6"], False)
    assert s.complaint_ids == {"F-1": "C1", "cfpb:9": "C2", "s.jsonl:3": "C0", "e:5": "C5"}
    text = format_summary(s)
    assert "missing               1  (e.g. F-6)" in text
    assert "1 rows were registered before this run" in text


def test_a_registration_wins_over_a_dead_letter_and_duplicates_in_one_run_count_once() -> None:
    t = Tally([Row(1, Channel.web_form, "F-1", {}), Row(2, Channel.web_form, "F-1", {})], ["a", "b"])
    inbound_b = base64.b64encode(json.dumps({"id": "b"}).encode()).decode()
    t.see(*_event("complaints.deadletter", data={"reason": "r", "original": inbound_b}))
    t.see(*_event("complaints.registered", correlationid="a",
                  data={"complaint_id": "C1", "source_message_id": "web_form:id:F-1"}))
    s = summarise("f", 2, Counter(), Counter(), t, waited=True, seconds=0.1)
    assert (s.registered, s.complaints, s.already_registered, sum(s.dead_lettered.values())) == (2, 1, 0, 0)
    assert s.complete


def test_without_waiting_nothing_is_missing() -> None:
    s = summarise("f", 1, Counter(), Counter(), _tally(), waited=False, seconds=0.1)
    assert (s.missing, s.complete) == (0, True)
    assert "--no-wait" in format_summary(s)
    s = summarise("f", 1, Counter(), Counter({"KafkaTimeoutError": 1}), Tally([], []), waited=False,
                  seconds=0.1)
    assert not s.complete


# ---- through the stack ---------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.timeout(400)
def test_replaying_the_cfpb_sample_registers_every_row_once(broker: str, stack: dict[str, Service]) -> None:
    first = replay(MINI, fmt="cfpb", timeout=120, bootstrap=[broker], progress=False)
    assert (first.read, first.sent, first.missing) == (145, 145, 0), format_summary(first)
    assert first.registered + sum(first.dead_lettered.values()) == 145, format_summary(first)
    assert not first.dead_lettered, format_summary(first)  # every sample row is a valid complaint
    assert first.complaints == 145 and first.already_registered == 0

    again = replay(MINI, fmt="cfpb", timeout=120, bootstrap=[broker], progress=False)
    assert (again.sent, again.missing, again.registered) == (145, 0, 145), format_summary(again)
    assert again.already_registered == 145  # every registration is the first run's
    assert again.complaint_ids == first.complaint_ids
