"""The archive's commands (whatif, export, history, rebuild archive) run as the operator runs them:
a subprocess of ``python -m tools.cli`` (``tools.archive_cli`` until tools/cli.py registers them)
against a SQLite archive holding tests/test_whatif.py's world, never with a traceback."""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from schemas.events import CaseAction
from services.archive.adapters import SqlStore
from services.archive.database import make_engine, upgrade
from services.archive.export import COLUMNS, closed_cases, csv_cell, json_line, write
from services.archive.records import TOPIC_OF_TYPE
from services.archive.whatif import day_range
from services.common.policy import DEFAULT_POLICY
from tests.postgres import fresh_database, postgres_url  # noqa: F401 - the session fixture
from tests.test_archive_logic import PERSONAL, PHONE, START, Story
from tests.test_casework_archive import worked_story
from tests.test_whatif import archived_world, halved, world

ROOT = Path(__file__).resolve().parents[1]
NOVEMBER = ["--from", "2026-11-01", "--to", "2026-11-30"]
SECRETS = ("李雷", "13900139000", "c" * 32, "售后维修太慢", "满意，谢谢")  # name, phone, key, their words
MASKED = "+86*******9000"  # the archive keeps the masked contact; the export leaves even that out


def _module() -> str:
    """tools.cli once it has the archive's commands, else this area's own command line."""
    from tools import cli

    sub = next(a for a in cli.parser()._actions if isinstance(a, argparse._SubParsersAction))
    return "tools.cli" if "whatif" in sub.choices else "tools.archive_cli"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The environment of a command whose archive holds the world (SQLite)."""
    home = tmp_path_factory.mktemp("archive-cli")
    url = f"sqlite:///{home / 'archive.sqlite3'}"
    archived_world(url).dispose()
    keep = {k: v for k, v in os.environ.items()
            if not k.startswith(("ARCHIVE_", "COMPLAINTS_", "SLA_MONITOR_", "KAFKA_"))}
    yield {**keep, "ARCHIVE_DATABASE_URL": url, "COMPLAINTS_DATA_DIR": str(home), "PYTHONPATH": str(ROOT)}


def cli(env: dict[str, str], *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", _module(), *args], cwd=ROOT, env={**env, **extra},
                          capture_output=True, text=True, encoding="utf-8", timeout=120, check=False)
    assert "Traceback" not in done.stderr, done.stderr
    return done


# ---- export ----------------------------------------------------------------------------


def test_export_csv_holds_the_closed_cases_of_the_range_with_a_header_and_no_personal_data(
        env: dict[str, str], tmp_path: Path) -> None:
    # Given the archive, when November's closed cases are exported as CSV to a file
    out = tmp_path / "closed.csv"
    done = cli(env, "export", *NOVEMBER, "--format", "csv", "--out", str(out))
    # Then the command says how many on stderr
    assert done.returncode == 0, done.stderr
    assert "exported 4 closed cases" in done.stderr and done.stdout == ""
    # And the file opens in Excel as UTF-8: a byte-order mark, then the header
    raw = out.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    assert rows[0] == list(COLUMNS)
    # And the rows are the four cases closed in November (not the open one, not October's)
    records = [dict(zip(rows[0], r, strict=True)) for r in rows[1:]]
    assert sorted(r["complaint_id"] for r in records) == ["W-BORDER", "W-LATE", "W-ONTIME", "W-PRAISE"]
    assert {r["status"] for r in records} == {"closed"}
    late = next(r for r in records if r["complaint_id"] == "W-LATE")
    assert (late["code"], late["code_name_zh"], late["satisfaction_score"], late["review"]) == (
        "AS-01", "维修周期长", "5", "false")
    assert late["closed_at"].endswith("+00:00")
    # And nobody can be identified from it
    text = raw.decode("utf-8-sig")
    for secret in (*SECRETS, MASKED):
        assert secret not in text, secret
    assert "customer_key" not in rows[0] and "contact_masked" not in rows[0]
    assert not list(tmp_path.glob(".closed.csv.*"))  # the file appeared whole


def test_export_jsonl_writes_one_object_a_line_to_standard_output(env: dict[str, str]) -> None:
    # Given the archive, when October's closed cases are exported as JSON lines
    done = cli(env, "export", "--from", "2026-10-01", "--to", "2026-10-31", "--format", "jsonl")
    # Then standard output holds one object per case, and the count goes to stderr
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [json.loads(line)["complaint_id"] for line in lines] == ["W-OUT"]
    record = json.loads(lines[0])
    assert list(record) == list(COLUMNS) and record["status"] == "closed"
    assert record["resolved_at"] == "2026-10-20T07:00:00+00:00"
    assert "exported 1 closed cases" in done.stderr


def test_export_of_an_empty_range_writes_the_header_only(env: dict[str, str]) -> None:
    done = cli(env, "export", "--from", "2026-09-01", "--to", "2026-09-30")
    assert done.returncode == 0 and "exported 0 closed cases" in done.stderr
    assert done.stdout.lstrip("\ufeff").splitlines() == [",".join(COLUMNS)]


# ---- history ---------------------------------------------------------------------------


@pytest.mark.parametrize(("lang", "words"), [
    ("zh", ["W-LATE 的处理记录", "登记：渠道 phone", "分类分流（第 1 版）：AS-01 维修周期长", "已处理，结果：更换主板",
            "时限 resolve（第 1 轮）超时", "达成，逾期", "满意度回访，5/5", "已结案", "+0800"]),
    ("en", ["Audit trail of complaint W-LATE", "registered: channel phone", "routed (revision 1): AS-01",
            "resolved, result: 更换主板", "SLA resolve (cycle 1) breached", "met, late", "closed", "+0800"]),
])
def test_history_reads_the_whole_trail_in_either_language(env: dict[str, str], lang: str,
                                                          words: list[str]) -> None:
    # Given an archived case, when its history is asked for in a language
    done = cli(env, "history", "W-LATE", "--lang", lang)
    # Then every event is a line, in order, readable, in local time, without personal data
    assert done.returncode == 0, done.stderr
    for word in words:
        assert word in done.stdout, word
    lines = done.stdout.splitlines()
    assert lines[1].split()[0] == "2026-11-04" and len(lines) > 20
    assert [ln[:19] for ln in lines[1:]] == sorted(ln[:19] for ln in lines[1:])  # by time
    for secret in SECRETS:
        assert secret not in done.stdout
    assert MASKED in done.stdout


def test_history_of_an_unknown_complaint_says_so(env: dict[str, str]) -> None:
    done = cli(env, "history", "NOPE-1")
    assert done.returncode == 1
    assert done.stderr.strip() == "no archived complaint NOPE-1" and done.stdout == ""


# ---- whatif ----------------------------------------------------------------------------


def test_whatif_prints_old_beside_new(env: dict[str, str], tmp_path: Path) -> None:
    # Given the archive and a policy with every resolve limit halved
    halved(tmp_path)
    # When the what-if runs over November, as of the time the world was archived
    done = cli(env, "whatif", "--policy", str(tmp_path / "halved.yaml"), *NOVEMBER,
               "--as-of", "2026-11-20T12:00+08:00")
    # Then the table shows resolve losing one on-time resolution, and the record matching OLD
    assert done.returncode == 0, done.stderr
    resolve = next(ln for ln in done.stdout.splitlines() if ln.startswith("resolve "))
    assert "2 -> 1" in resolve and "66.7% -> 33.3%" in resolve
    assert "26 clocks, 0 mismatches" in done.stdout
    # And as JSON the same figures
    done = cli(env, "whatif", "--policy", str(tmp_path / "halved.yaml"), *NOVEMBER, "--format", "json",
               "--as-of", "2026-11-20T04:00Z")
    data: dict[str, Any] = json.loads(done.stdout)
    row = next(r for r in data["rows"] if r["milestone"] == "resolve")
    assert (row["old"]["on_time"], row["new"]["on_time"], row["changed"]) == (2, 1, 1)
    assert data["policy_new"] == "resolve-halved" and data["timezone"] == "Asia/Shanghai"


def test_whatif_with_a_bad_policy_names_the_file_and_the_field(env: dict[str, str], tmp_path: Path) -> None:
    # Given a policy whose resolve target is not a duration
    bad = tmp_path / "bad.yaml"
    bad.write_text(DEFAULT_POLICY.read_text(encoding="utf-8").replace(
        "targets: {general: 24h, urgent: 16h, major: 8h}", "targets: {general: soon, urgent: 16h, major: 8h}"),
        encoding="utf-8")
    # When the what-if is asked for with it
    done = cli(env, "whatif", "--policy", str(bad), *NOVEMBER)
    # Then it fails with the loader's message: the file, the field and the problem
    assert done.returncode == 2
    assert str(bad) in done.stderr and "sla.milestones.resolve.targets.general" in done.stderr
    assert "not a duration" in done.stderr and done.stdout == ""
    # And a policy file that is not there says so too
    missing = cli(env, "whatif", "--policy", str(tmp_path / "none.yaml"), *NOVEMBER)
    assert missing.returncode == 2 and "cannot read" in missing.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["--from", "2026-13-01", "--to", "2026-11-30"], "not a date (YYYY-MM-DD): '2026-13-01'"),
    (["--from", "2026-11-01", "--to", "yesterday"], "not a date (YYYY-MM-DD): 'yesterday'"),
    (["--from", "2026-11-30", "--to", "2026-11-01"], "--to 2026-11-01 is before --from 2026-11-30"),
    (["--from", "2026-11-01", "--to", "2026-11-30", "--tz", "Mars/Olympus"], "unknown time zone"),
])
def test_whatif_with_bad_dates_fails_with_exit_code_2(env: dict[str, str], args: list[str], message: str) -> None:
    done = cli(env, "whatif", "--policy", str(DEFAULT_POLICY), *args)
    assert done.returncode == 2 and message in done.stderr


def test_whatif_over_an_empty_range_says_so(env: dict[str, str]) -> None:
    done = cli(env, "whatif", "--policy", str(DEFAULT_POLICY), "--from", "2026-09-01", "--to", "2026-09-30")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ("no archived complaints received between 2026-09-01 and 2026-09-30 "
                                   "(Asia/Shanghai)")


# ---- every command: the settings and the database ----------------------------------------------


def test_an_unreachable_database_fails_with_a_message(env: dict[str, str]) -> None:
    done = cli(env, "history", "W-LATE", ARCHIVE_DATABASE_URL="postgresql://nobody@127.0.0.1:1/archive")
    assert done.returncode == 1 and "archive database:" in done.stderr


def test_an_unsupported_database_url_is_a_configuration_error(env: dict[str, str]) -> None:
    done = cli(env, "export", *NOVEMBER, ARCHIVE_DATABASE_URL="mysql://u@h/db")
    assert done.returncode == 2 and "unsupported database 'mysql'" in done.stderr


def test_rebuild_archive_without_a_broker_fails_with_a_message(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    # Given no broker (the reader fails as kafka-python does; a real attempt takes 30 s)
    from kafka.errors import KafkaTimeoutError

    from services.archive import rebuild as archive_rebuild
    from tools.archive_cli import main

    def unreachable(topic: str) -> list[dict[str, Any]]:
        raise KafkaTimeoutError("Failed to update metadata after 30.0 secs.")

    real = archive_rebuild.rebuild
    monkeypatch.setattr(archive_rebuild, "rebuild", lambda settings: real(settings, read=unreachable))
    monkeypatch.setenv("ARCHIVE_DATABASE_URL", f"sqlite:///{tmp_path / 'rebuilt.sqlite3'}")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    # When `rebuild archive` runs, then it fails with a message naming the broker
    assert main(["rebuild", "archive"]) == 1
    assert "cannot read the topics from 127.0.0.1:1: KafkaTimeoutError" in capsys.readouterr().err


def test_rebuild_archive_sends_the_topics_through_the_archive(monkeypatch: pytest.MonkeyPatch,
                                                              tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Given an empty archive and topics holding the world's events (read by a fake reader)
    from services.archive import rebuild as archive_rebuild
    from tools.archive_cli import parser

    by_topic: dict[str, list[dict[str, Any]]] = {}
    for case in world():
        for e in case.events:
            by_topic.setdefault(TOPIC_OF_TYPE[e.type], []).append(json.loads(e.to_bytes()))
    real = archive_rebuild.rebuild
    monkeypatch.setattr(archive_rebuild, "rebuild", lambda settings: real(
        settings, read=lambda topic: by_topic.get(topic, [])))
    monkeypatch.setenv("ARCHIVE_DATABASE_URL", f"sqlite:///{tmp_path / 'rebuilt.sqlite3'}")
    # When `rebuild archive` runs (beside the services' own `rebuild router|intake`)
    args = parser().parse_args(["rebuild", "archive"])
    assert args.func(args) == 0
    # Then every event went in, and the cases are there
    assert "rebuilt archive: " in capsys.readouterr().out
    assert parser().parse_args(["rebuild", "router"]).service == "router"
    monkeypatch.setattr(sys, "argv", ["complaints"])
    from tools.archive_cli import main
    assert main(["history", "W-OPEN", "--lang", "en"]) == 0
    assert "Audit trail of complaint W-OPEN" in capsys.readouterr().out


def test_the_commands_join_a_command_line_beside_the_services_rebuild() -> None:
    # Given a command line with the services' `rebuild router|intake` (as `complaints` has)
    from services.__main__ import add_rebuild
    from tools.archive_cli import add_archive_commands

    p = argparse.ArgumentParser(prog="complaints")
    sub = p.add_subparsers(dest="command", required=True)
    add_rebuild(sub)
    sub.choices["rebuild"].set_defaults(func=lambda args: 7)  # what `rebuild router` runs
    # When the archive's commands are added, as tools/cli.py does
    add_archive_commands(sub)
    # Then they parse
    args = p.parse_args(["whatif", "--policy", "p.yaml", "--from", "2026-11-01", "--to", "2026-11-30"])
    assert (args.command, args.format, args.date_to, args.as_of) == ("whatif", "text", date(2026, 11, 30), None)
    assert p.parse_args(["history", "C1"]).lang == "zh"
    assert p.parse_args(["export", "--from", "2026-11-01", "--to", "2026-11-30"]).format == "csv"
    # And `rebuild` takes `archive`, while `rebuild router` still runs what it ran
    assert p.parse_args(["rebuild", "archive"]).service == "archive"
    router = p.parse_args(["rebuild", "router"])
    assert router.func(router) == 7


# ---- the export's rules ---------------------------------------------------------------------


@pytest.mark.parametrize(("value", "cell"), [
    (None, ""),
    (True, "true"),
    (False, "false"),
    (3, "3"),
    (datetime(2026, 11, 4, 2, 0, tzinfo=UTC), "2026-11-04T02:00:00+00:00"),
    ("更换主板", "更换主板"),
    ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"),  # a formula stays text in a spreadsheet
    ("+86 call back", "'+86 call back"),
    ("-", "'-"),
    ("@home", "'@home"),
    ("a=b", "a=b"),
])
def test_a_csv_cell_is_plain_text_a_spreadsheet_will_not_run(value: Any, cell: str) -> None:
    assert csv_cell(value) == cell


def test_the_work_on_a_case_and_a_suggestions_assessment_are_exported_without_personal_data(
        tmp_path: Path) -> None:
    # Given an archive holding a worked case (co-handler, plan, compensation approved, contacted)
    # and a suggestion declined with a reason naming the customer's phone, both closed
    engine = make_engine(f"sqlite:///{tmp_path / 'archive.sqlite3'}")
    upgrade(engine)
    worked = worked_story("X-WORK").case(400, CaseAction.closed)
    suggestion = (Story("X-SUG").register(0).route(1, 1)
                  .case(10, CaseAction.suggestion_assessed, actor="quality-head",
                        assessment={"decision": "declined", "reason": f"budget; asked {PHONE}"})
                  .case(20, CaseAction.closed))
    try:
        SqlStore(engine).append([*worked.archived(), *suggestion.archived()], now=START + timedelta(days=1))
        rows = list(closed_cases(engine, start=START, end=START + timedelta(days=30)))
    finally:
        engine.dispose()
    # When they are exported as CSV and as JSON lines
    csv_out, jsonl_out = io.StringIO(newline=""), io.StringIO(newline="")
    assert write(rows, csv_out, fmt="csv") == write(rows, jsonl_out, fmt="jsonl") == 2
    header, *cells = list(csv.reader(io.StringIO(csv_out.getvalue().lstrip("\ufeff"))))
    by_csv = {r[0]: dict(zip(header, r, strict=True)) for r in cells}
    by_json = {(r := json.loads(line))["complaint_id"]: r for line in jsonl_out.getvalue().splitlines()}
    # Then both carry the work columns, each beside the step it belongs to
    assert header == list(COLUMNS) and all(list(r) == list(COLUMNS) for r in by_json.values())
    assert header.index("co_handlers") == header.index("handler") + 1
    assert header.index("solution") == header.index("result") + 1
    work = {"co_handlers": "quality-l1-02@quality", "plan_measures": "2", "solution": "compensation",
            "compensation_amount": "800.00", "compensation_currency": "CNY", "party_at_fault": "third_party",
            "root_cause": "PQ-02", "approved_by": "billing-head",
            "last_contact_at": worked.at(300).isoformat(), "last_contact_kind": "visit",
            "last_contact_purpose": "revisit", "last_contact_reached": "true"}
    assert {k: by_csv["X-WORK"][k] for k in work} == work
    assert {k: by_json["X-WORK"][k] for k in work} == {
        **work, "plan_measures": 2, "last_contact_reached": True}  # the amount stays exact decimal text
    assessment = {"assessment_decision": "declined", "assessment_reason": "budget; asked +86*******8000",
                  "assessed_at": suggestion.at(10).isoformat(), "assessed_by": "quality-head"}
    assert {k: by_csv["X-SUG"][k] for k in assessment} == {k: by_json["X-SUG"][k] for k in assessment} == assessment
    assert by_csv["X-SUG"]["solution"] == "" and by_json["X-SUG"]["solution"] is None
    # And nobody can be identified from either: no name, phone, e-mail, customer key or customer words
    for text in (csv_out.getvalue(), jsonl_out.getvalue()):
        for secret in (*PERSONAL, "k" * 32, "+86*******8000, z***@example.com"):
            assert secret not in text, secret


def test_a_json_line_keeps_chinese_and_iso_times() -> None:
    line = json_line({"complaint_id": "C1", "code_name_zh": "维修周期长",
                      "closed_at": datetime(2026, 11, 4, 2, 0, tzinfo=UTC), "review": False, "reopen_count": 0})
    assert line == ('{"complaint_id": "C1", "code_name_zh": "维修周期长", "closed_at": '
                    '"2026-11-04T02:00:00+00:00", "review": false, "reopen_count": 0}')


@pytest.mark.integration
def test_closed_cases_stream_from_postgresql_too(postgres_url: str) -> None:  # noqa: F811
    # Given the world archived on PostgreSQL, when November's closed cases are read two at a time
    with fresh_database(postgres_url) as url:
        engine = archived_world(url)
        try:
            start, end = day_range(date(2026, 11, 1), date(2026, 11, 30), ZoneInfo("Asia/Shanghai"))
            rows = list(closed_cases(engine, start=start, end=end, batch=2))
        finally:
            engine.dispose()
    # Then they are the four closed in November, oldest closure first, with the export's columns
    assert [r["complaint_id"] for r in rows] == ["W-ONTIME", "W-PRAISE", "W-BORDER", "W-LATE"]
    assert all(list(r) == list(COLUMNS) for r in rows)
