"""The complaint taxonomy and its classifier: codes, loader errors, explainable decisions."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from services.common.errors import ConfigError
from services.router.classify import classify, confidence
from services.router.taxonomy import DEFAULT_TAXONOMY, load_taxonomy
from tools.measure import format_report, measure, score

TAXONOMY = load_taxonomy()
MINI = Path(__file__).parent / "data" / "cfpb" / "cfpb-2012-2017-mini.csv"
FAMILIES = {"PQ", "SA", "AS", "SP", "PB", "LG", "TH", "TS", "IN", "SF", "PL", "OT"}


def test_codes_are_unique_well_formed_and_cover_every_family() -> None:
    # Given the shipped taxonomy / When its codes are listed
    codes = [t.code for t in TAXONOMY.types]
    # Then each is unique, FF-NN, has a department, and every §4 family is there
    assert len(codes) == len(set(codes))
    assert all(re.fullmatch(r"[A-Z]{2}-\d{2}", c) for c in codes)
    assert all(t.department.strip() and t.name_zh and t.name_en for t in TAXONOMY.types)
    assert FAMILIES <= {c[:2] for c in codes}
    assert TAXONOMY.fallback == "OT-00" and TAXONOMY.get("OT-00").name_zh == "其他"


def _taxonomy_with(tmp_path: Path, old: str, new: str) -> Path:
    text = DEFAULT_TAXONOMY.read_text(encoding="utf-8")
    assert old in text
    path = tmp_path / "taxonomy.yaml"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


@pytest.mark.parametrize(("old", "new", "message"), [
    ("code: PQ-02", "code: PQ-01", "(top level): Value error, codes are not unique: ['PQ-01']"),
    ("code: PQ-02", "code: PQ-2", "types.1[PQ-2].code: String should match pattern"),
    ("fallback: OT-00", "fallback: OT-99", "fallback OT-99 is not a type's code"),
    ("department: quality", 'department: " "', "types.0[PQ-01].department: String should match"),
    ("weights: {假货: 2,", "weights: {假的: 2,", "types.1[PQ-02]: Value error, weights name terms"),
    ("zh: [假货,", "zh: [fake-zh,", "types.1[PQ-02].keywords.zh: Value error, zh keywords without"),
    ('仲裁, "12315"', "仲裁, 12315", "[PL-03].keywords.zh.5: Input should be a valid string"),
    ('"Rewards": PB-07', '"Rewards": PB-99', "cfpb.issues maps to unknown codes ['PB-99']"),
    ("review_threshold: 0.5", "review_threshold: 2", "review_threshold: Input should be less than"),
    ('version: "2026.11-taxonomy-1"', "version: [", "line"),
])
def test_a_bad_taxonomy_names_file_field_and_problem(tmp_path: Path, old: str, new: str,
                                                     message: str) -> None:
    # Given a taxonomy file with one mistake
    path = _taxonomy_with(tmp_path, old, new)
    # When it is loaded / Then the error starts with the file and names field and problem
    with pytest.raises(ConfigError) as err:
        load_taxonomy(path)
    assert str(err.value).startswith(str(path))
    assert message in str(err.value)


def test_a_missing_taxonomy_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nope.yaml: cannot read"):
        load_taxonomy(tmp_path / "nope.yaml")


@pytest.mark.parametrize(("text", "code", "because"), [
    ("手机用了三天就坏了，质量问题", "PQ-01", "质量问题"),
    ("买到的是假货，与描述不符", "PQ-02", "假货"),
    ("店员态度很差，还骂人", "SA-01", "态度很差"),
    ("The agent was rude and hung up on me", "SA-01", "rude"),
    ("催收公司天天骚扰我的家人", "SA-03", "骚扰"),
    ("They keep harassing me at work", "SA-03", "harass*"),
    ("申请退款一个月了还是不给退", "AS-01", "退款"),
    ("维修周期太长，拖延了一个月", "SP-01", "维修周期"),
    ("收费不透明，乱收费", "SP-02", "乱收费"),
    ("My card was charged twice, I was overcharged", "PB-01", "charged twice"),
    ("账单有误，重复扣费两次", "PB-01", "重复扣费"),
    ("They added a late fee and raised the interest rate", "PB-03", "late fee"),
    ("A collector says I owe a debt I do not owe", "PB-06", "collector*"),
    ("快递丢件了，包裹丢失", "LG-02", "丢件"),
    ("The ATM ate my card", "TH-02", "atm"),
    ("ＡＰＰ一打开就闪退", "TS-01", "闪退"),
    ("银行没有通知就改了条款，事先没说", "IN-01", "没有通知"),
    ("My credit report at Equifax shows an account that is not mine", "IN-03", "credit report"),
    ("征信报告上有不良记录", "IN-03", "征信"),
    ("充电器起火冒烟，差点爆炸", "SF-02", "起火"),
    ("孩子被烫伤受伤了", "SF-01", "受伤"),
    ("我的个人信息被泄露，隐私没有保障", "PL-01", "隐私"),
    ("Someone opened a card in my name: identity theft and fraud", "PL-02", "identity theft"),
    ("They threatened an illegal lawsuit", "PL-03", "illegal"),
])
def test_classify_table(text: str, code: str, because: str) -> None:
    # Given a complaint text in Chinese or English / When it is classified
    result = classify(text, taxonomy=TAXONOMY)
    # Then the code is the expected one, and the matched terms explain it
    assert result.code == code, result
    assert because in result.matched
    assert 0 < result.confidence <= 1
    assert result.code not in {a.code for a in result.alternatives}


@pytest.mark.parametrize("text", ["", "Hello, just a question.", "今天天气不错", "I am so happy"])
def test_no_hit_is_the_fallback_with_confidence_zero(text: str) -> None:
    # Given text without any keyword / When classified / Then fallback, 0.0, nothing matched
    result = classify(text, taxonomy=TAXONOMY)
    assert (result.code, result.confidence, result.matched) == ("OT-00", 0.0, [])
    assert result.needs_review(TAXONOMY.review_threshold)


@pytest.mark.parametrize(("text", "absent"), [
    ("I am very happy with the feedback", "app"),   # whole words: not "app" in "happy"
    ("The feedback form", "fee"),
])
def test_english_keywords_match_whole_words_only(text: str, absent: str) -> None:
    assert absent not in classify(text, taxonomy=TAXONOMY).matched


def test_classification_is_deterministic() -> None:
    # Given one text with evidence for several codes / When classified twice
    text = "Debt collector harassed me about a wrong credit report, 还有乱收费"
    first, second = classify(text, taxonomy=TAXONOMY), classify(text, taxonomy=TAXONOMY)
    # Then the results are equal, alternatives ordered best first
    assert first == second
    scores = [first.score, *(a.score for a in first.alternatives)]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize(("best", "second", "expected"), [
    (0, 0, 0.0), (1, 0, 0.5), (2, 0, 0.6667), (1, 1, 0.3333), (3, 1, 0.6),
])
def test_confidence_formula(best: float, second: float, expected: float) -> None:
    assert confidence(best, second, prior=1.0) == expected


def test_confidence_is_monotone() -> None:
    # Given scores / Then more for the winner never lowers it, more for the runner-up never raises it
    grid = [0.0, 0.5, 1.0, 2.0, 3.0, 5.0]
    for second in grid:
        for lo, hi in zip(grid, grid[1:], strict=False):
            if lo >= second:
                assert confidence(hi, second, prior=1.0) >= confidence(lo, second, prior=1.0)
    for best in grid[1:]:
        for lo, hi in zip(grid, grid[1:], strict=False):
            if hi <= best:
                assert confidence(best, hi, prior=1.0) <= confidence(best, lo, prior=1.0)


def test_score_counts_precision_recall_and_review_share() -> None:
    # Given three decisions, one wrong and one unsure
    pairs = [("PB-01", "PB-01", 0.9), ("PB-01", "SA-01", 0.8), ("SA-01", "SA-01", 0.2)]
    # When scored / Then per-code figures and shares follow
    report = score(pairs, threshold=0.5)
    figures = {f.code: f for f in report.per_code}
    assert (figures["PB-01"].precision, figures["PB-01"].recall) == (1.0, 0.5)
    assert (figures["SA-01"].precision, figures["SA-01"].recall) == (0.5, 1.0)
    assert report.accuracy == 0.6667 and report.review_share == 0.3333
    assert report.confusions == [("PB-01", "SA-01", 1)]


def test_measure_runs_on_the_mini_cfpb_file() -> None:
    # Given the mini CFPB export / When measured through the pipeline's text path
    report = measure([MINI])
    # Then every row is counted and each code has figures
    print(format_report(report))
    assert report.rows + report.unmapped == 145
    assert report.accuracy > 0 and 0 <= report.review_share <= 1
    assert report.per_code and all(0 <= f.precision <= 1 and 0 <= f.recall <= 1 for f in report.per_code)
    assert sum(f.support for f in report.per_code) == report.rows
