"""Contract: the router's segmenter (rjieba, jieba-rs) cuts Chinese as jieba itself does.

The shipped classifier and severity models learned jieba's words (``w:`` features); the router
segments with rjieba, which is about six times faster. A word cut differently would be a feature
the model never saw, so every cut here is held to jieba's own, on real text and on strings made
of jieba's dictionary words, where the dictionary path has the most choices.
"""

from __future__ import annotations

import json
import logging
import unicodedata
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from services.router.textmodel import _CJK_RUN, MAX_CHARS, _cut, features

DATA = Path(__file__).parent / "data"


@lru_cache(maxsize=1)
def jieba() -> Any:
    """jieba, initialised once, quiet (its dictionary loads on first use)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import jieba as real

        real.setLogLevel(logging.WARNING)
        real.initialize()
    return real


@lru_cache(maxsize=1)
def dictionary_words() -> list[str]:
    """Every word of jieba's own dictionary of two or more characters."""
    path = Path(jieba().__file__).with_name("dict.txt")
    words = (line.split(" ", 1)[0] for line in path.read_text(encoding="utf-8").splitlines())
    return sorted(w for w in words if len(w) > 1)


def chinese_runs() -> list[str]:
    """The runs of Chinese the model reads, from every committed text with Chinese in it."""
    texts: list[str] = []
    for path in sorted((DATA / "severity").glob("*.jsonl")):
        texts += [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines()
                  if line.strip()]
    for line in (DATA / "classifier" / "heldout-zh-v1.tsv").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            texts.append(line.split("\t", 1)[1])
    return [run for text in texts
            for run in _CJK_RUN.findall(unicodedata.normalize("NFKC", text[:MAX_CHARS]).lower())]


def test_every_committed_chinese_text_is_cut_as_jieba_cuts_it() -> None:
    # Given every run of Chinese in the committed held-out texts (thousands of real sentences)
    runs = chinese_runs()
    assert len(runs) > 3000
    # When the router's segmenter and jieba cut each, Then they cut every one the same
    cut, real = _cut(), jieba()
    differ = [run for run in runs if cut(run) != real.lcut(run, HMM=False)]
    assert differ == []


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=10**9), min_size=1, max_size=12))
def test_strings_of_dictionary_words_are_cut_as_jieba_cuts_them(picks: list[int]) -> None:
    # Given a string of jieba's dictionary words run together, where words overlap and the
    # dictionary path has to choose between segmentations (each pick chooses a word; the
    # dictionary is read when the test runs, not when it is collected)
    words = dictionary_words()
    text = "".join(words[p % len(words)] for p in picks)
    # When both cut it, Then the words are the same, in the same order
    assert _cut()(text) == jieba().lcut(text, HMM=False)


def test_rare_and_traditional_characters_are_cut_as_jieba_cuts_them() -> None:
    # Given runs with traditional characters, CJK extension A, and one long run at the size limit
    runs = ["當當網作為全國知名網店", "㐀㐁我们㐂的服务", "書的封面已經撕開了", "退货" * 1000, "差"]
    # When both cut them, Then they agree
    for run in runs:
        assert _cut()(run) == jieba().lcut(run, HMM=False), run


def test_features_are_jieba_words_characters_pairs_and_triples() -> None:
    # Given a sentence, When its features are read
    found = features("酒店服务态度很差")
    # Then the words are jieba's words, beside every character, pair and triple
    words = {"w:" + w for w in jieba().lcut("酒店服务态度很差", HMM=False) if len(w) > 1}
    assert words and words == {f for f in found if f.startswith("w:")}
    assert {"c:态度", "t:服务态", "u:差"} <= found
