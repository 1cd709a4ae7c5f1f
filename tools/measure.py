"""Measure the classifier on CFPB exports: per-code precision / recall, accuracy, macro-F1.

Each row goes through the pipeline's own path (``tools.replay.cfpb.cfpb_rows`` -> channel
adapter -> intake ``normalise``) and the router's text (subject + description) is
classified. The truth code comes from the taxonomy's ``cfpb`` table applied to the row's
product / issue (``tools.replay.cfpb.cfpb_truth``); rows it does not map are counted apart.
With ``narrative_only`` only rows with a consumer narrative count, and only the narrative
(the description) is classified: without a narrative the text is built from product and
issue, the very values the truth is derived from, so that figure flatters the rules.

    python -m tools.measure tests/data/cfpb/*.csv [--narrative-only]

``severity FILE...`` measures the severity assessment instead (``measure_severity``): each line
of a JSONL file is a hand-labelled case ``{"id", "lang", "text", "expected", "note", "details"?}``
and the figure is the share whose assessed severity is the expected one, per language. It
assesses as the router does, the rules with the shipped severity model beside them
(``--rules-only``: the rules alone).

    python -m tools.measure severity tests/data/severity/heldout-7.jsonl [--misses] [--rules-only]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from schemas.events import Channel, Complaint, Contact, Severity
from services.common.policy import load_policy
from services.intake import channels
from services.intake.logic import normalise
from services.router.classify import assess, classify
from services.router.taxonomy import Taxonomy, load_taxonomy
from services.router.textmodel import SeverityModel, load_severity_model
from tools.replay.cfpb import cfpb_rows, cfpb_truth, read_records, received_at


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class CodeFigures(_Frozen):
    code: str
    support: int
    predicted: int
    precision: float
    recall: float
    f1: float


class Report(_Frozen):
    """Figures of one measuring run."""

    rows: int
    unmapped: int
    accuracy: float
    macro_f1: float
    review_threshold: float
    review_share: float
    accuracy_above_threshold: float
    per_code: list[CodeFigures]
    confusions: list[tuple[str, str, int]]


def pipeline_texts(path: Path, *, narrative_only: bool = False) -> Iterator[tuple[str, str]]:
    """(message id, text the router would classify) for each row of one CFPB export."""
    policy = load_policy()
    truth = cfpb_truth(path)
    narrated = {f"cfpb:{row.get('complaint_id', '').strip()}" for _, row in read_records(path)
                if row.get("consumer_complaint_narrative", "").strip()}
    for channel, message_id, payload in cfpb_rows(path):
        if narrative_only and message_id not in narrated:
            continue
        complaint = normalise(
            channel, channels.parse(channel, payload), complaint_id=message_id, dedupe=message_id,
            received_at=received_at(truth[message_id]["received"]), rules=policy.intake,
            desks=policy.router.channel_desks, identity_secret=b"measure-only-not-a-secret")
        text = complaint.description if narrative_only else f"{complaint.subject}\n{complaint.description}"
        yield message_id, text


def _ratio(num: float, den: float) -> float:
    return round(num / den, 4) if den else 0.0


def score(pairs: Sequence[tuple[str, str, float]], *, threshold: float, unmapped: int = 0) -> Report:
    """A report from (truth code, predicted code, confidence) triples."""
    truth = Counter(t for t, _, _ in pairs)
    predicted = Counter(p for _, p, _ in pairs)
    right = Counter(t for t, p, _ in pairs if t == p)
    figures = []
    for code in sorted(truth.keys() | predicted.keys()):
        precision, recall = _ratio(right[code], predicted[code]), _ratio(right[code], truth[code])
        figures.append(CodeFigures(code=code, support=truth[code], predicted=predicted[code],
                                   precision=precision, recall=recall,
                                   f1=_ratio(2 * precision * recall, precision + recall)))
    sure = [(t, p) for t, p, c in pairs if c >= threshold]
    wrong = Counter((t, p) for t, p, _ in pairs if t != p)
    return Report(
        rows=len(pairs), unmapped=unmapped, accuracy=_ratio(sum(right.values()), len(pairs)),
        macro_f1=_ratio(sum(f.f1 for f in figures), len(figures)), review_threshold=threshold,
        review_share=_ratio(len(pairs) - len(sure), len(pairs)),
        accuracy_above_threshold=_ratio(sum(t == p for t, p in sure), len(sure)),
        per_code=figures, confusions=[(t, p, n) for (t, p), n in wrong.most_common(8)],
    )


def measure(paths: Iterable[Path | str], *, taxonomy: Taxonomy | None = None,
            narrative_only: bool = False, threshold: float | None = None) -> Report:
    """Classify every row of the CFPB files and compare with the mapped truth."""
    taxonomy = taxonomy or load_taxonomy()
    pairs: list[tuple[str, str, float]] = []
    unmapped = 0
    for path in map(Path, paths):
        truth = cfpb_truth(path)
        for message_id, text in pipeline_texts(path, narrative_only=narrative_only):
            facts = truth[message_id]
            expected = taxonomy.cfpb.code_of(facts["product"], facts["issue"])
            if expected is None:
                unmapped += 1
                continue
            result = classify(text, taxonomy=taxonomy)
            pairs.append((expected, result.code, result.confidence))
    limit = taxonomy.review_threshold if threshold is None else threshold
    return score(pairs, threshold=limit, unmapped=unmapped)


def format_report(report: Report) -> str:
    """The report as a plain-text table."""
    lines = [f"{'code':<6} {'support':>7} {'predicted':>9} {'precision':>9} {'recall':>6} {'f1':>6}"]
    lines += [f"{f.code:<6} {f.support:>7} {f.predicted:>9} {f.precision:>9.2f} {f.recall:>6.2f} "
              f"{f.f1:>6.2f}" for f in report.per_code]
    lines += [
        f"rows {report.rows} (unmapped {report.unmapped})  accuracy {report.accuracy:.3f}  "
        f"macro-F1 {report.macro_f1:.3f}",
        f"to review (confidence < {report.review_threshold}): {report.review_share:.1%}  "
        f"accuracy of the rest {report.accuracy_above_threshold:.3f}",
        "most frequent confusions (truth -> predicted): "
        + ", ".join(f"{t}->{p} {n}" for t, p, n in report.confusions),
    ]
    return "\n".join(lines)


class SeverityFigures(_Frozen):
    """Share of hand-labelled cases whose assessed severity is the expected one."""

    cases: int
    right: int
    by_lang: dict[str, tuple[int, int]]
    misses: list[tuple[str, str, str, str]]  # id, expected, found, reason

    @property
    def share(self) -> float:
        return _ratio(self.right, self.cases)


def case_complaint(case: dict[str, Any]) -> Complaint:
    """A labelled case as the router sees it: a web form with the text as its description."""
    return Complaint(
        complaint_id=case["id"], channel=Channel.web_form, received_at=datetime(2026, 12, 1, tzinfo=UTC),
        source_message_id=case["id"], customer=Contact(), customer_key="k", first_contact="web-desk",
        subject="", description=case["text"], details=case.get("details", {}))


def severity_cases(paths: Iterable[Path | str]) -> list[dict[str, Any]]:
    """The labelled cases of the JSONL files, in order, each tagged with its file's name; a case
    whose ``expected`` is not a severity stops the command naming the file and line."""
    levels = [s.value for s in Severity]
    out = []
    for path in map(Path, paths):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                case = json.loads(line)
                if case.get("expected") not in levels:
                    raise SystemExit(f"{path}:{n}: expected must be one of {levels}")
                out.append({**case, "file": path.name})
    return out


def measure_severity(paths: Iterable[Path | str], *, model: SeverityModel | None = None) -> SeverityFigures:
    """Assess every case of the JSONL files with the default policy's severity rules, and
    ``model`` beside them when given."""
    rules = load_policy().router.severity
    by_lang: dict[str, list[int]] = {}
    misses: list[tuple[str, str, str, str]] = []
    for case in severity_cases(paths):
        found, reasons = assess(case_complaint(case), rules, repeat=False, model=model)
        tally = by_lang.setdefault(case.get("lang", "?"), [0, 0])
        tally[1] += 1
        if found.value == case["expected"]:
            tally[0] += 1
        else:
            misses.append((case["id"], case["expected"], found.value, reasons[0]))
    return SeverityFigures(
        cases=sum(t[1] for t in by_lang.values()), right=sum(t[0] for t in by_lang.values()),
        by_lang={lang: (t[0], t[1]) for lang, t in sorted(by_lang.items())}, misses=misses)


def format_severity(figures: SeverityFigures, *, misses: bool = False) -> str:
    """The severity figures as plain text, the misses after them when ``misses``."""
    lines = [f"{lang}: {right}/{cases} right ({_ratio(right, cases):.1%})"
             for lang, (right, cases) in figures.by_lang.items()]
    lines.append(f"total: {figures.right}/{figures.cases} right ({figures.share:.1%})")
    if misses:
        lines += [f"miss {i}: expected {e}, found {f}: {why}" for i, e, f, why in figures.misses]
    return "\n".join(lines)


def severity_main(argv: Sequence[str]) -> int:
    """Command line of ``severity``: print the share right of the labelled cases."""
    parser = argparse.ArgumentParser(prog="python -m tools.measure severity",
                                     description="Share of hand-labelled cases assessed right.")
    parser.add_argument("paths", nargs="+", type=Path, help="JSONL files of labelled cases")
    parser.add_argument("--misses", action="store_true", help="list the cases assessed wrong")
    parser.add_argument("--rules-only", action="store_true",
                        help="the rules alone, without the shipped severity model")
    args = parser.parse_args(argv)
    model = None if args.rules_only else load_severity_model()
    print(format_severity(measure_severity(args.paths, model=model), misses=args.misses))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: print the report for the given CFPB files (``severity ...``: see above)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["severity"]:
        return severity_main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m tools.measure", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", type=Path, help="CFPB export CSV files")
    parser.add_argument("--narrative-only", action="store_true",
                        help="only rows with a consumer narrative, classifying the narrative alone")
    parser.add_argument("--threshold", type=float, help="review threshold (default: the taxonomy's)")
    args = parser.parse_args(argv)
    report = measure(args.paths, narrative_only=args.narrative_only, threshold=args.threshold)
    print(format_report(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
