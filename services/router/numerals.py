"""Numbers as people write them: 一百二十, 两万五, 上百, 几十万, 3.5万, "twelve hundred", "dozens of".

Vague counts read as their least plausible value, so that a threshold is crossed only when the
writer said so: 几/数 before a unit is 2 (几十万 -> 200,000), 上 is 1 (上百 -> 100), 十几 -> 11,
多 adds nothing (八十多万 -> 800,000), 五六十 -> 50, "dozens" -> 24,
"hundreds of thousands" -> 200,000, "several hundred" -> 300.
Pure and linear: each reader takes one numeral the caller's pattern (``ZH_NUMERAL``,
``EN_NUMERAL``) found; a numeral is at most a few dozen characters long.
"""

from __future__ import annotations

import re

_ZH_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "俩": 2, "三": 3, "四": 4, "五": 5, "六": 6,
              "七": 7, "八": 8, "九": 9, "几": 2, "数": 2, "上": 1}
_ZH_UNITS = {"十": 10, "百": 100, "千": 1000, "万": 10_000, "亿": 100_000_000}
_ZH_SMALL = "十百千"

# A Chinese numeral: a figure (3.5, 120) or a numeral character, then numeral characters:
# 3.5万, 120万, 一万两千, 十几, 上百, 数百, 几十万, 五六十, 两百. It never starts inside a run of
# figures, and a run of more than twelve figures is none (the amount reader reads those). A bare
# 万 or 亿 starts none (万一 is "in case", 万分 "extremely") unless 近/逾/超/约/过 comes before
# it (近万人), nor does 千万 "by all means" (千万别买).
ZH_NUMERAL = (r"(?<![0-9.])(?:[上数](?=[十百千万亿])|[0-9]{1,12}(?:\.[0-9]{1,4})?(?![0-9])"
              r"|[零〇一二两俩三四五六七八九几十百]|千(?!万(?:别|不|要|记|小心|注意|得|可))|(?<=[近逾超约过])[万亿])"
              r"(?:[零〇一二两俩三四五六七八九几十百千万亿]|[多余来](?=[千万亿])){0,11}")


def zh_number(numeral: str) -> float | None:
    """The value of a Chinese numeral such as 一百二十, 两万五, 3.5万, 上百, 几十万; None if none."""
    head = re.match(r"[0-9]+(?:\.[0-9]+)?", numeral)
    digit: float | None = float(head.group(0)) if head else None
    total = section = 0.0
    last_unit = 0  # the unit just read: a digit after 百 is tens (一百二 = 120, 两万五 = 25,000)
    for char in numeral[head.end() if head else 0:]:
        if char in "多余来":  # 八十多万: "more than" adds nothing to the least value
            continue
        if char in "零〇":
            digit, last_unit = None, 0  # 一百零五: the 5 is ones
        elif char in _ZH_DIGITS:
            if digit is None:  # 五六十: the first of two neighbouring digits counts
                after_unit = char == "几" and last_unit > 0  # 十几 = 11, 十几万 = 110,000
                digit = 1.0 if after_unit else float(_ZH_DIGITS[char])
        elif char in _ZH_SMALL:
            unit = _ZH_UNITS[char]
            section += (1.0 if digit is None else digit) * unit
            digit, last_unit = None, unit
        elif char in _ZH_UNITS:  # 万, 亿: what came before is counted in this unit
            unit = _ZH_UNITS[char]
            section += digit or 0.0
            if unit > 10_000:
                total = (total + (section or 1.0)) * unit
            else:
                total += (section or 1.0) * unit
            section, digit, last_unit = 0.0, None, unit
        else:
            return None
    if digit is not None:
        section += digit * (last_unit / 10 if last_unit >= 100 else 1)
    value = total + section
    return value if value > 0 else None


_EN_ONES = {"zero": 0, "one": 1, "a": 1, "an": 1, "two": 2, "three": 3, "four": 4, "five": 5,
            "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12,
            "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17,
            "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50,
            "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90,
            "several": 3, "few": 3, "couple": 2, "half": 0.5}
_EN_SCALES = {"dozen": 12, "hundred": 100, "thousand": 1000, "grand": 1000,
              "million": 1_000_000, "billion": 1_000_000_000, "k": 1000, "m": 1_000_000,
              "tens": 10}
_EN_WORDS = "|".join(sorted({*_EN_ONES, *_EN_SCALES, *(f"{s}s" for s in _EN_SCALES if s != "tens")}
                            - {"k", "m", "ks", "ms"}, key=len, reverse=True))
_EN_FIGURE = r"[0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]+)?|[0-9]+(?:\.[0-9]+)?"
# An English numeral: figures ("45,000", "200k", "1.2 million") or number words joined by
# spaces, hyphens, "and" or "of" ("two hundred", "twenty-five", "hundreds of thousands").
EN_NUMERAL = (rf"(?<![\w.,])(?:(?:{_EN_FIGURE})(?:\s?[km](?![a-z]))?|(?:{_EN_WORDS})(?![a-z]))"
              rf"(?:(?:\s+|-|\s+and\s+|\s+of\s+)(?:{_EN_WORDS})(?![a-z])){{0,6}}")


def en_number(numeral: str) -> float | None:
    """The value of an English numeral such as "twelve hundred", "200k", "dozens of"; else None."""
    words = [w for w in re.split(r"[\s-]+", numeral.strip()) if w and w not in {"and", "of"}]
    if not words:
        return None
    total = current = 0.0
    seen = False
    for at, word in enumerate(words):
        if word in {"a", "an"} and at and words[at - 1] == "half":
            continue  # half a million
        figure = re.fullmatch(rf"({_EN_FIGURE})\s?([km])?", word)
        if figure:
            current += float(figure.group(1).replace(",", "")) * _EN_SCALES.get(figure.group(2) or "", 1)
            seen = True
        elif word in _EN_ONES:
            if word in {"a", "an"} and at + 1 == len(words):
                return None  # "a" alone is no number
            current += _EN_ONES[word]
            seen = True
        elif word in _EN_SCALES or (word.endswith("s") and word[:-1] in _EN_SCALES):
            plural = word.endswith("s") and word != "tens"
            scale = _EN_SCALES[word if word in _EN_SCALES else word[:-1]]
            if word == "tens":
                current = (current or 1.0) * 20 if not seen else current * 10
            else:
                base = current or (2.0 if plural else 1.0)  # "hundreds" alone: at least 200
                if scale >= 1000:
                    total += base * scale
                    current = 0.0
                else:
                    current = base * scale
            seen = True
        else:
            return None
    value = total + current
    return value if seen and value > 0 else None


_ZH_WHOLE = re.compile(ZH_NUMERAL)
_EN_WHOLE = re.compile(EN_NUMERAL)


def read_number(numeral: str) -> float | None:
    """A numeral in Chinese or English, digits included ("3.5万", "two hundred", "45,000")."""
    text = re.sub(r"\s+of$|[多余来+]$", "", numeral.strip().lower())  # "hundreds of", 两万多
    if _ZH_WHOLE.fullmatch(text) and not text.replace(".", "").isdigit():
        return zh_number(text)
    if _EN_WHOLE.fullmatch(text):
        return en_number(text)
    return None
