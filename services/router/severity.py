"""Severity signals read from how people write (REQUIREMENTS §5): phrase families per concept,
negated and near-miss clauses, and figures stated in the text (an audience, people affected,
amounts in words).

Every finding carries the phrase that matched, so a decision's reasons say why. Pure: the rules
come from the policy (``SeverityPolicy``), the text is ``classify.fold``ed. Linear in the text:
patterns are searched once each, with bounded gaps (the policy refuses ``.*``); numerals are
found by one scan each and their context is read in a fixed window around them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from itertools import islice
from typing import Any

from schemas.events import Severity
from services.common.policy import KeywordSignal, Qualifiers, SeverityPolicy, StatedFigures
from services.router.numerals import EN_NUMERAL, ZH_NUMERAL, en_number, zh_number

_WINDOW = 60  # characters before a match read for a negation or a near miss
_CJK = re.compile(r"[\u3400-\u9fff]")
_PUNCTUATION = re.compile(r"[,，。.;；!！?？:：\n]")
_GAP_TOKENS = re.compile(r"[a-z0-9']+|[\u3400-\u9fff]")
_MAX_GAP_CJK, _MAX_GAP_WORDS = 6, 9  # how far a cue reaches: Chinese characters, Latin words
_PHRASE = 32  # longest matched phrase quoted in a reason
# Bounds on the work one text can cause (a 20,000-character hostile text stays in milliseconds):
# the matches of one signal read for qualifiers, and the numerals read for figures and amounts.
MAX_MATCHES, MAX_NUMERALS = 32, 256


@dataclass(frozen=True)
class Finding:
    """One signal found in the text: its name, severity and the phrases that matched."""

    signal: str
    severity: Severity
    phrases: tuple[str, ...]
    near_miss: bool = False

    def reason(self) -> str:
        quoted = ", ".join(self.phrases[:5])
        return f"{self.signal}{', near miss' if self.near_miss else ''} ({quoted})"


@lru_cache(maxsize=256)
def _alternation(sources: tuple[str, ...], before: str = "", after: str = "") -> re.Pattern[str] | None:
    """One pattern matching any of ``sources`` (each a regex), between ``before`` and ``after``;
    None when there is none."""
    if not sources:
        return None
    return re.compile(before + "(?:" + "|".join(f"(?:{s})" for s in sources) + ")" + after)


@lru_cache(maxsize=1024)
def _regex(source: str) -> re.Pattern[str]:
    return re.compile(source)


@lru_cache(maxsize=1024)
def _keyword(term: str) -> tuple[str, re.Pattern[str]]:
    """What a text must contain for ``term`` (a cheap test first), and its pattern."""
    from services.router.classify import fold, pattern  # classify imports this module

    return fold(term).rstrip("*"), pattern(term)


def _reaches(clause: str, cues: tuple[str, ...]) -> bool:
    """Whether the nearest cue of ``cues`` in ``clause`` is close enough to its end to govern it."""
    cue_pattern = _alternation(cues)
    if cue_pattern is None:
        return False
    last = None
    for last in cue_pattern.finditer(clause):  # noqa: B007 - the last cue is the nearest
        pass
    if last is None:
        return False
    gap = _GAP_TOKENS.findall(clause[last.end():])
    return len(gap) <= (_MAX_GAP_CJK if _CJK.search(last.group(0)) else _MAX_GAP_WORDS)


def _clause(text: str, start: int, rules: Qualifiers) -> str:
    """The clause before ``start``: at most ``_WINDOW`` characters, cut at the last clause break."""
    clause = text[max(0, start - _WINDOW):start]
    breaks = _alternation(tuple(rules.clause_breaks))
    if breaks is not None:
        ends = [cut.end() for cut in breaks.finditer(clause)]
        clause = clause[ends[-1]:] if ends else clause
    return clause


def _counterfactual(text: str, start: int, rules: Qualifiers) -> bool:
    """Whether a counterfactual cue governs ``start``: read back to the last punctuation mark, not
    to the last clause word, for the cue opens the sentence ("换别人可能早就去告你们了")."""
    if not rules.counterfactual:
        return False
    window = text[max(0, start - _WINDOW):start]
    cuts = [cut.end() for cut in _PUNCTUATION.finditer(window)]
    return _reaches(window[cuts[-1]:] if cuts else window, tuple(rules.counterfactual))


def _qualified(text: str, start: int, rules: Qualifiers) -> str | None:
    """'negated' or 'near' when a cue of ``rules`` governs the match at ``start``, else None.

    A counterfactual ("换别人早就告你们了") cancels a signal as a negation does."""
    clause = _clause(text, start, rules)
    if _reaches(clause, tuple(rules.negation)) or _counterfactual(text, start, rules):
        return "negated"
    if _reaches(clause, tuple(rules.near_miss)):
        return "near"
    return None


def unfigurative(text: str, rules: Qualifiers) -> str:
    """``text`` with each phrase that only looks like a signal ("sick of", "dumpster fire",
    气得脑袋都炸了) made a clause break, so that no signal is read in it."""
    figurative = _alternation(_for_scripts(tuple(rules.figurative), *_scripts(text)))
    return text if figurative is None else figurative.sub(",", text)


def _is_cjk(char: int) -> bool:
    return 0x3400 <= char <= 0x9FFF


def _is_latin(char: int) -> bool:
    return 0x61 <= char <= 0x7A  # a-z: the text is folded to lower case


_REPEATS = {"MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"}


def _must(items: Any, script: Callable[[int], bool]) -> bool:
    """Whether every match of the parsed sequence ``items`` (``re._parser``'s) holds a character
    of ``script``: a literal of it outside any optional part, lookaround or negated class."""
    for op, arg in items:
        name = str(op)
        if name == "LITERAL" and script(arg):
            return True
        if name == "IN" and arg and all(  # a class of nothing but such characters: [\u3400-\u9fff]
                (str(o) == "LITERAL" and script(v)) or (str(o) == "RANGE" and script(v[0]) and script(v[1]))
                for o, v in arg):
            return True
        if name == "SUBPATTERN" and _must(arg[3], script):
            return True
        if name == "ATOMIC_GROUP" and _must(arg, script):
            return True
        if name in _REPEATS and arg[0] >= 1 and _must(arg[2], script):
            return True
        if name == "BRANCH" and all(_must(branch, script) for branch in arg[1]):
            return True
    return False


@lru_cache(maxsize=1024)
def _needs(source: str) -> tuple[bool, bool]:
    """(Chinese, Latin): whether every match of the pattern ``source`` holds a Chinese character,
    and whether a Latin letter; a text without one is not searched for it. (False, False) when
    the pattern cannot be read (the parser is Python's own, ``re._parser``)."""
    try:
        from re import _parser  # type: ignore[attr-defined]

        parsed = _parser.parse(source)
        return _must(parsed, _is_cjk), _must(parsed, _is_latin)
    except Exception:  # noqa: BLE001 - an unreadable pattern is simply always searched
        return False, False


_LATIN = re.compile("[a-z]")


def _matches(text: str, signal: KeywordSignal) -> Iterator[re.Match[str]]:
    for term in signal.keywords:
        literal, keyword = _keyword(term)
        if literal in text:
            yield from keyword.finditer(text)
    for source in _for_scripts(tuple(signal.patterns), *_scripts(text)):
        yield from _regex(source).finditer(text)  # one by one: re finds a literal prefix faster


@lru_cache(maxsize=256)
def _for_scripts(sources: tuple[str, ...], has_cjk: bool, has_latin: bool) -> tuple[str, ...]:
    """The patterns of ``sources`` that can match a text with (or without) a Chinese character
    and a Latin letter: a Chinese family is not searched in an English text, nor the reverse."""
    searched = []
    for source in sources:
        cjk, latin = _needs(source)
        if (has_cjk or not cjk) and (has_latin or not latin):
            searched.append(source)
    return tuple(searched)


@lru_cache(maxsize=4)
def _scripts(text: str) -> tuple[bool, bool]:
    """Whether ``text`` holds a Chinese character, and a Latin letter."""
    return _CJK.search(text) is not None, _LATIN.search(text) is not None


def phrase_findings(text: str, rules: SeverityPolicy) -> list[Finding]:
    """Each keyword signal of ``rules`` found in ``text``, with the phrases that matched.

    A match in a negated clause does not count; a major signal matched only in near-miss clauses
    counts at the qualifiers' near-miss severity. Figurative phrases are read as no signal.
    """
    text = unfigurative(text, rules.qualifiers)
    findings = []
    for signal in rules.keywords:
        plain: list[str] = []
        near: list[str] = []
        for seen, match in enumerate(_matches(text, signal)):
            if seen == MAX_MATCHES or len(plain) == 5:
                break
            phrase = match.group(0)[:_PHRASE]
            kind = _qualified(text, match.start(), rules.qualifiers)
            bucket = near if kind == "near" else plain if kind is None else None
            if bucket is not None and phrase not in bucket:
                bucket.append(phrase)
        if plain:
            findings.append(Finding(signal.signal, signal.severity, tuple(plain)))
        elif near:
            severity = signal.severity
            if severity is Severity.major:
                severity = rules.qualifiers.near_miss_severity
            findings.append(Finding(signal.signal, severity, tuple(near), near_miss=True))
    return findings


# ---- figures stated in the text ---------------------------------------------------------------

_ZH = re.compile(ZH_NUMERAL)
_EN = re.compile(EN_NUMERAL)
_ZH_AFTER = r"(?:多|余|来|几|\+|加)?(?:个|位|名|口|条|家|户|号)?(?:的)?"
_EN_AFTER = (r"(?:\+|-?(?:odd|something|some|plus)|\s+or\s+so|\s+plus)?\s*(?:of\s+)?"  # thirty-odd, 20 or so
             r"(?:(?:the|our|my|your|their|these|those|other|fellow|small|local|elderly|affected|different|more|angry|loyal|existing|new|paying|regular|monthly|"
             r"unique|total|real|active|weekly|daily|wedding|conference|event|school|senior|"
             r"first|second|third|fourth|fifth|sixth)\s+){0,2}")
_BEFORE = 12  # characters before a numeral read for a noun written first (粉丝有几十万)
_CONTEXT = 30  # characters before a count of people read for a channel (an audience then)
_VICTIMS = 45  # characters before such a count read for victims (people affected after all)
_GROUP_OF = 24  # characters before a numeral read for words that make it people ("a team of")


@dataclass(frozen=True)
class Figure:
    """A number stated in the text, what it counts, and the phrase that says so."""

    kind: str  # "audience" or "affected"
    value: float
    phrase: str


@lru_cache(maxsize=16)
def _noun_patterns(audience: tuple[str, ...], affected: tuple[str, ...],
                   audience_before: tuple[str, ...]) -> tuple[re.Pattern[str] | None, ...]:
    """Patterns read after a numeral (audience, affected) and before it (audience)."""

    def after(nouns: tuple[str, ...]) -> re.Pattern[str] | None:
        if not nouns:
            return None
        alternatives = "|".join(f"(?:{n})" for n in nouns)
        return re.compile(rf"(?:{_ZH_AFTER}|{_EN_AFTER})(?:{alternatives})(?![a-z])")

    before = "|".join(f"(?:{n})" for n in audience_before) if audience_before else None
    return (after(audience), after(affected),
            re.compile(rf"(?:{before})(?:数|量|数量)?[^,，。.;；!！?？\n]{{0,4}}$") if before else None)


@lru_cache(maxsize=4)
def _numerals(text: str) -> tuple[tuple[int, int, float], ...]:
    """(start, end, value) of the first ``MAX_NUMERALS`` numerals of each script in ``text``."""
    found: list[tuple[int, int, float]] = []
    for m in islice(_ZH.finditer(text), MAX_NUMERALS):
        if (value := zh_number(m.group(0))) is not None:
            found.append((m.start(), m.end(), value))
    english = (m for m in _EN.finditer(text)
               if not (m.group(0).isdecimal() and _ZH.fullmatch(m.group(0))))
    for m in islice(english, MAX_NUMERALS):  # plain figures are read once, by the first scan
        if (value := en_number(m.group(0))) is not None:
            found.append((m.start(), m.end(), value))
    return tuple(found)


def stated_figures(text: str, stated: StatedFigures,
                   qualifiers: Qualifiers | None = None) -> list[Figure]:
    """Audiences and counts of people affected written in ``text`` ("几十万粉丝", "dozens of
    residents", "粉丝3.5万"); a number is an audience before it is a count of people.

    A count of people is an audience where the words before it name a channel or a group ("群里
    三百人", "my Instagram is small, like 900 people") or the words after it follow or watch ("14k
    people follow me"), unless the rest of its clause says what befell them ("业主群里三十户都
    漏水") or the words before it name victims ("维权群里五百多人"). A number joined by a hyphen to a
    singular noun of ``stated.affected_joined`` ("our 220-unit complex"), or after words of
    ``stated.affected_before`` ("a team of 14"), counts people affected. A number in a
    counterfactual sentence of ``qualifiers`` ("我要是有几十万粉丝") is none.
    """
    audience, affected, before = _noun_patterns(
        tuple(stated.audience), tuple(stated.affected), tuple(stated.audience_before))
    context = _alternation(tuple(stated.audience_context))
    # up to three spaces, closing brackets or 的 may come between: "三万多人的论坛", "(八百多户)"
    after = _alternation(tuple(stated.audience_after), before=r"[\s)）」』的]{0,3}")
    befell = _alternation(tuple(stated.affected_after))
    victims = _alternation(tuple(stated.affected_context))
    breaks = _alternation(tuple(qualifiers.clause_breaks)) if qualifiers is not None else None
    group_of = _alternation(tuple(stated.affected_before), after=r"\s*$")  # a team of 14
    joined = _alternation(tuple(stated.affected_joined), before="-", after="(?![a-z])")  # 220-unit
    bystanders = _alternation(tuple(stated.bystanders))
    found: list[tuple[int, Figure]] = []
    for start, end, value in _numerals(text):
        if joined is not None and (m := joined.match(text, end)):
            found.append((start, Figure("affected", value, text[start:m.end()])))
        elif audience is not None and (m := audience.match(text, end)):
            found.append((start, Figure("audience", value, text[start:m.end()])))
        elif before is not None and (b := before.search(text[max(0, start - _BEFORE):start])):
            found.append((start, Figure("audience", value, b.group(0) + text[start:end])))
        elif affected is not None and (m := affected.match(text, end)):
            kind, preceding = "affected", text[max(0, start - _CONTEXT):start]
            if ((context is not None and context.search(preceding))
                    or (after is not None and after.match(text, m.end()))):
                following = text[m.end():m.end() + _CONTEXT]
                if breaks is not None and (cut := breaks.search(following)):
                    following = following[:cut.start()]
                befallen = ((befell is not None and befell.search(following))
                            or (victims is not None
                                and victims.search(text[max(0, start - _VICTIMS):start])))
                kind = "affected" if befallen else "audience"
            found.append((start, Figure(kind, value, text[start:m.end()])))
        elif group_of is not None and (g := group_of.search(text[max(0, start - _GROUP_OF):start])):
            found.append((start, Figure("affected", value, g.group(0) + text[start:end])))
    # read only for the numbers that count something, not for every numeral: people in a sentence
    # that says they were bystanders (就我一个人的行李丢了) are none, and so is a counterfactual
    return [figure for start, figure in found
            if not (figure.kind == "affected" and bystanders is not None
                    and bystanders.search(_sentence(text, start)))
            and (qualifiers is None or not _counterfactual(text, start, qualifiers))]


_SENTENCE_END = re.compile(r"[。.!！?？\n]")


def _sentence(text: str, at: int) -> str:
    """The sentence of ``text`` around ``at``: at most ``_CONTEXT`` * 3 characters each side."""
    before = text[max(0, at - 3 * _CONTEXT):at]
    cuts = [m.end() for m in _SENTENCE_END.finditer(before)]
    after = text[at:at + 3 * _CONTEXT]
    end = _SENTENCE_END.search(after)
    return (before[cuts[-1]:] if cuts else before) + (after[:end.start()] if end else after)


_ZH_MONEY_UNIT = re.compile(r"(?:多|余|来)?(?:块钱|块|元|圆|人民币)")
_ZH_USD_UNIT = re.compile(r"(?:多|余|来)?(?:美元|美金)")
# a price told by 的 before what it bought: 五千三的按摩椅, 十八万的车 (not 一万多的粉丝, 三千的步数)
_ZH_PRICE_OF = re.compile(r"(?:多|余|来)?的(?!人|户|家|粉|关注|阅读|播放|浏览|用户|客户|网友|业主|居民|老铁|"
                          r"观众|订阅|读者|听众|距离|路|公里|里程|步|字|积分|分|时间|年|天|小时|次|个)")
_ZH_MONEY_VERB = re.compile(r"(?:花|亏|损失|赔|扣|骗|转走|卷走|骗走|拿走|吞|盗刷|刷|划走|扣走|交|付|充值?|"
                            r"罚|欠|借|收|抵|修要|要价|开价)了?"
                            r"(?:我|我们)?(?:一笔)?"
                            r"(?:前后|总共|一共|共|足足|整整|将近|近|快)?$")
# a sum named before the number: 合同总价八万六, 物业费一共九千六, 报价五千八, 账户里少了五千二
_ZH_MONEY_BEFORE = re.compile(r"(?:款|费|价|钱|资金|金额|余额|工资|薪水|利息|罚金|赔偿|定金|押金|首付|贷款|"
                              r"总价|报价|售价|价格|一共|总共|合计|共计|少了|多扣了?|多收了?|亏了?|损失了?|车款|保费|积蓄|存款|"
                              r"本金|定损|理赔|赔付|套餐|全款|尾款|房租|租金|月供|车贷|房贷|就要|得要|开口要|保额|多了|"
                              r"存的|存了|修一下要|换一下要|修要|还要)"
                              r"[\u3400-\u9fff]{0,3}$")
_ZH_PAID_AFTER = re.compile(r"(?:多|余)?(?:块)?(?:买|入手|拿下|付|交|花|充|订)(?:的|了)")  # 九千九买的
_ZH_NOT_MONEY = re.compile(r"(?:多|余|来)?(?:次|个|天|年|月|日|号|小时|分钟|件|台|单|人|户|家|遍|回|趟|"
                           r"周|星期|分|条|张|斤|公斤|米|元|积分|金币|里程|点数|步)")
_EN_MONEY = re.compile(r"[\s-]*(?:of\s+)?(?:(dollars?|bucks|usd)|(euros?|eur)|(yuan|rmb|cny))(?![a-z])")
_ZH_MONEY_NOUN = re.compile(r"(?:多|余)?(?:块)?的?[\u3400-\u9fff]{0,3}"
                            r"(?:款|费|钱|资金|定金|押金|货款|房款|年费|学费|余额|积蓄|存款|工资)")
_EN_MONEY_CODES = {1: "USD", 2: "EUR", 3: "CNY"}
_SIGN_BEFORE = {"$": "USD", "€": "EUR", "¥": "CNY", "￥": "CNY"}
# "i'm out about a hundred thousand", "it cost me twelve thousand": an amount naming no currency
_EN_MONEY_VERB = re.compile(r"(?:\bi\W?m out|\bwe\W?re out|\blost|\bcost (?:me|us)|\bpaid|\bspent|"
                            r"\bowe[sd]?|\bcharged (?:me|us)|\bstole|\bwithdrew|\bdrained|\bdrawn down by|"
                            r"\bovercharged (?:me |us )?by|\bshort(?:changed)? (?:me |us )?by)\s+"
                            r"(?:about|around|nearly|over|almost|roughly|more than)?\s*$")
# "fifteen thousand in bills", "five figures in lost sales"
_EN_MONEY_AFTER = re.compile(r"\s+in\s+(?:\w+\s+)?(?:bills|charges|fees|damages?|debt|losses|repairs|costs|"
                             r"payments|premiums|interest|penalties|overcharges|refunds?|sales|revenue|wages|"
                             r"income|savings)\b")
# "a five-figure loss", "low six figures": 10,000 and 100,000 at least (not "six-figure circulation")
_EN_FIGURES = re.compile(r"\b(four|five|six|seven)[- ]figures?\b(?!\s+(?:circulation|audience|following|"
                         r"readership|followers|subscribers|salary|income|job))")
_FIGURES = {"four": 1e3, "five": 1e4, "six": 1e5, "seven": 1e6}
_EN_AMOUNT_END = re.compile(r"\s*(?:[.,;!?]|$|(?:on|in|because|for|over|and|so|by|from|out)\b)")


def word_amounts(text: str, *, default_currency: str = "CNY",
                 latin_currency: str | None = None) -> dict[str, float]:
    """Amounts written with number words or scale words: 两万块, 花了五万多, "twelve hundred dollars",
    "$3k", "five grand", "five figures" (the digits-and-unit forms are ``classify.amounts_in``'s).

    An amount that names no currency is in ``latin_currency`` when the text has no Chinese (and
    that is set), else in ``default_currency``.
    """
    best: dict[str, float] = {}
    if latin_currency is not None and not _scripts(text)[0]:
        default_currency = latin_currency

    def keep(currency: str, value: float) -> None:
        best[currency] = max(best.get(currency, 0.0), value)

    for start, end, value in _numerals(text):
        numeral = text[start:end]
        if _CJK.search(text[max(0, start - 1):end + 1]):  # a numeral in Chinese text
            if _ZH_USD_UNIT.match(text, end):
                keep("USD", value)
            elif _ZH_MONEY_UNIT.match(text, end):
                keep("CNY", value)
            elif (value >= 1000 and _CJK.search(numeral) and _ZH_PRICE_OF.match(text, end)
                  and not _ZH_NOT_MONEY.match(text, end)):
                keep("CNY", value)  # 五千三的按摩椅, 十八万的车
            elif value >= 1000 and _ZH_MONEY_NOUN.match(text, end) and not _ZH_NOT_MONEY.match(text, end):
                keep("CNY", value)  # 十五万的装修款, 一万二的年费
            elif ((_ZH_MONEY_VERB.search(text[max(0, start - 8):start])
                   or _ZH_MONEY_BEFORE.search(text[max(0, start - 8):start])
                   or _ZH_PAID_AFTER.match(text, end))
                  and value >= 1000 and not _ZH_NOT_MONEY.match(text, end)):
                keep("CNY", value)  # 花了五万多, 合同总价八万六, 全额退款七千二
            continue
        sign = text[start - 1:start] if start else ""
        if sign in _SIGN_BEFORE:
            keep(_SIGN_BEFORE[sign], value)
        elif numeral.endswith("grand"):
            keep("USD", value)
        elif m := _EN_MONEY.match(text, end):
            keep(_EN_MONEY_CODES[m.lastindex or 1], value)
        elif value >= 1000 and ((_EN_MONEY_VERB.search(text[max(0, start - 24):start])
                                 and _EN_AMOUNT_END.match(text, end))
                                or _EN_MONEY_AFTER.match(text, end)):
            keep(default_currency, value)
    if "figure" in text:
        for m in islice(_EN_FIGURES.finditer(text), MAX_NUMERALS):
            keep(default_currency, _FIGURES[m.group(1)])
    return best
