"""Train the router's severity model and measure it: ``python -m tools.train_severity``.

    python -m tools.train_severity train      # train on the training sets, write the model
    python -m tools.train_severity evaluate FILE...   # share right: rules alone, rules + model

The model (``services/router/model/severity-v9.json.gz``) is the text model's multinomial logistic
regression (``tools.train_classifier.logistic``, the same features) over three classes, general,
urgent and major, learned from the hand-labelled training cases of ``tests/data/severity``
(``TRAINING``). It is read beside the severity rules and only raises a level (see
``services.router.textmodel.SeverityModel``), so what it is judged by is the share right of the
rules and the model together.

Its L2 strength and the two probabilities at which it raises a level are chosen by five-fold
cross-validation on the training cases alone: for each candidate, the share right of rules +
model on the held-out fold, summed over the folds. The held-out sets (``heldout.jsonl``, written
before the rules; ``heldout-14.jsonl`` to ``heldout-23.jsonl``, written by other hands) are never
read by ``train``. Deterministic: the same files and seed give the same model file, byte for
byte.
"""

from __future__ import annotations

import argparse
import itertools
import random
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from services.common.policy import SeverityPolicy, load_policy
from services.router.classify import assess
from services.router.textmodel import (
    SEVERITY_LEVELS,
    SEVERITY_MODEL,
    SeverityModel,
    TextModel,
    features,
    load_severity_model,
    raised_level,
    softmax,
)
from tools.measure import case_complaint, measure_severity, severity_cases
from tools.train_classifier import logistic

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "severity"
# The tuning sets the first rules were written from (on these the rules are right 96 % of the time).
WRITTEN_FROM = ("tuning.jsonl", "tuning-2.jsonl", "tuning-3.jsonl", "tuning-4.jsonl")
# The training sets the rules were not written from: the thresholds are chosen on these alone (on
# the sets above any raise would look like a loss). Rounds 5 to 10 of the rules mended misses read
# in some of these (false alarms, e96eaaa; then families of misses); the rules are right on 92 %
# of them.
FRESH = (*(f"tuning-{n}.jsonl" for n in range(5, 14)), *(f"training-{c}.jsonl" for c in "abcdefghijkl"))
TRAINING = WRITTEN_FROM + FRESH
L2 = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
MAX_FEATURES = 12_000  # kept after pruning (6,000 until severity-v3; 20,000 gained nothing more)
RAISE_AT = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
_ORDER = {level: n for n, level in enumerate(SEVERITY_LEVELS)}


def rules_level(case: dict[str, Any], rules: SeverityPolicy) -> str:
    """The level the rules alone assess."""
    return assess(case_complaint(case), rules, repeat=False)[0].value


def folds(items: list[dict[str, Any]], *, k: int, seed: int) -> list[list[int]]:
    """Indices of ``k`` folds, stratified by language and level, reproducible from the seed."""
    rng = random.Random(seed)  # noqa: S311 - a reproducible split, not a secret
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, case in enumerate(items):
        groups[(case.get("lang", "?"), case["expected"])].append(i)
    out: list[list[int]] = [[] for _ in range(k)]
    turn = 0
    for key in sorted(groups):
        members = groups[key][:]
        rng.shuffle(members)
        for i in members:
            out[turn % k].append(i)
            turn += 1
    return out


Row = tuple[frozenset[str], str, float]


def rows_of(items: list[dict[str, Any]]) -> list[Row]:
    """Each case as the trainer reads it: its text's features, its level, weight 1."""
    return [(features(c["text"]), c["expected"], 1.0) for c in items]


def fit(rows: list[Row], *, l2: float, version: str = "probe",
        meta: dict[str, Any] | None = None) -> TextModel:
    """The logistic model over the three levels."""
    codes, prior, weights = logistic(rows, l2=l2, max_features=MAX_FEATURES, min_count=2.0)
    return TextModel(version, codes, prior, weights, 1.0, 0.0, meta or {})


def combined(rule: str, probs: dict[str, float] | None, urgent_at: float, major_at: float) -> str:
    """The rules' level, raised by the model's reading (as ``SeverityModel.read`` raises it)."""
    raised = None if probs is None else raised_level(probs, urgent_at=urgent_at, major_at=major_at)
    return rule if raised is None else max(rule, raised[0], key=_ORDER.__getitem__)


def choose(items: list[dict[str, Any]], rule: list[str], *,
           seed: int) -> tuple[float, float, float, float]:
    """(share right, l2, urgent_at, major_at) best over five folds of the training cases, whose
    levels by the rules alone are ``rule``.

    Every fold's model learns from the other four; the share right is counted on the ``FRESH``
    cases of the held-out fold.
    """
    rows = rows_of(items)
    scored = [c["file"] in FRESH for c in items]
    if not any(scored):
        raise SystemExit(f"no training case comes from {', '.join(FRESH)}")
    parts = folds(items, k=5, seed=seed)
    best: tuple[float, float, float, float] | None = None
    for l2 in L2:
        probs: list[dict[str, float] | None] = [None] * len(items)
        for held in parts:
            out = set(held)
            model = fit([row for i, row in enumerate(rows) if i not in out], l2=l2)
            for i in held:
                prediction = model.predict(items[i]["text"])
                probs[i] = None if prediction.abstains else softmax(prediction.logits)
        for urgent_at, major_at in itertools.product(RAISE_AT, RAISE_AT):
            right = sum(combined(r, p, urgent_at, major_at) == c["expected"]
                        for r, p, c, f in zip(rule, probs, items, scored, strict=True) if f) / sum(scored)
            candidate = (right, l2, urgent_at, major_at)
            # ties: the higher thresholds (fewer raises), then the stronger L2
            if best is None or (right, urgent_at, major_at, l2) > (best[0], best[2], best[3], best[1]):
                best = candidate
        assert best is not None
        print(f"  l2 {l2}: best so far {best[0]:.3f} (l2 {best[1]}, urgent_at {best[2]}, "
              f"major_at {best[3]})")
    assert best is not None
    return best


def train(args: argparse.Namespace) -> None:
    """Choose by cross-validation, train on every training case, write the model, measure it."""
    rules = load_policy().router.severity
    paths = [DATA / name for name in TRAINING]
    items = severity_cases(paths)
    print(f"training cases: {len(items)} from {', '.join(p.name for p in paths)}")
    rule = [rules_level(c, rules) for c in items]
    right, l2, urgent_at, major_at = choose(items, rule, seed=args.seed)
    fresh = [(r, c) for r, c in zip(rule, items, strict=True) if c["file"] in FRESH]
    rules_right = sum(r == c["expected"] for r, c in fresh) / len(fresh)
    print(f"five-fold cross-validation on the {len(fresh)} cases of {', '.join(FRESH)}: "
          f"rules alone {rules_right:.1%}, rules + model {right:.1%} "
          f"(l2 {l2}, raise to urgent at {urgent_at}, to major at {major_at})")
    meta = {"training": list(TRAINING), "cases": len(items), "seed": args.seed, "l2": l2,
            "raise_at": {"urgent": urgent_at, "major": major_at}, "fresh": list(FRESH),
            "cv_share_right": round(right, 4), "cv_rules_alone": round(rules_right, 4)}
    model = fit(rows_of(items), l2=l2, version=args.version, meta=meta)
    model.save(args.output)
    print(f"wrote {args.output} ({args.output.stat().st_size:,} bytes): {len(model.weights)} features")


def evaluate(paths: list[Path], model: SeverityModel, *, misses: bool) -> None:
    """Share right per language and in total: the rules alone, then rules + model."""
    for name, m in (("rules alone", None), (f"rules + {model.version}", model)):
        figures = measure_severity(paths, model=m)
        per = ", ".join(f"{lang} {r}/{n} ({r / n:.1%})" for lang, (r, n) in figures.by_lang.items())
        print(f"{name:<28} {figures.right}/{figures.cases} right ({figures.share:.1%}); {per}")
        if misses:
            print("\n".join(f"  miss {i}: expected {e}, found {f}: {why}"
                            for i, e, f, why in figures.misses))


def bench(model: SeverityModel, *, rounds: int) -> None:
    """Milliseconds per assessment, rules alone and with the model, over the training texts."""
    rules = load_policy().router.severity
    items = [case_complaint(c) for c in severity_cases([DATA / name for name in TRAINING])]
    for name, m in (("rules alone", None), (f"rules + {model.version}", model)):
        assess(items[0], rules, repeat=False, model=m)
        start = time.perf_counter()
        for _ in range(rounds):
            for c in items:
                assess(c, rules, repeat=False, model=m)
        per = (time.perf_counter() - start) / (rounds * len(items)) * 1000
        print(f"  {name:<28} {per:.3f} ms per complaint ({rounds * len(items)} assessments)")


def main(argv: list[str] | None = None) -> None:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m tools.train_severity", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["train", "evaluate", "bench"])
    parser.add_argument("paths", nargs="*", type=Path, help="evaluate: the labelled JSONL files")
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--version", default="severity-v9")
    parser.add_argument("--output", type=Path, default=SEVERITY_MODEL)
    parser.add_argument("--misses", action="store_true", help="evaluate: list the cases assessed wrong")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    if args.command == "train":
        train(args)
    elif args.command == "evaluate":
        if not args.paths:
            parser.error("evaluate needs at least one labelled file")
        evaluate(args.paths, load_severity_model(args.output), misses=args.misses)
    else:
        bench(load_severity_model(args.output), rounds=args.rounds)


if __name__ == "__main__":
    main()
