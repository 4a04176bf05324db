"""Years from free-text museum dates (pure Python, no I/O).

:func:`parse_date_text` turns the date strings museums write into a ``(begin, end)`` pair of
years (negative = B.C.), or ``None`` when the text names no year:

=================================================  ==================
text                                               years
=================================================  ==================
``1761`` / ``March 1856`` / ``May 26, 1869``       1761..1761 ...
``ca. 1745`` (circa widens a year by 5)            1740..1750
``1631-32``, ``1802-4`` (abbreviated end year)     1631..1632, 1802..1804
``1840s``, ``1840s-50s``                           1840..1849, 1840..1859
``15th century``, ``4th century B.C.``             1400..1499, -399..-300
``early`` / ``mid-`` / ``late 16th century``       thirds: 1500..1533 ...
``first half``, ``3rd quarter``, ``last quarter``  halves and quarters
``late 5th-early 4th century B.C. (?)``            -433..-367
``1000 B.C.-A.D. 1``, ``ca. 13 B.C.-A.D. 5``       -1000..1, -18..5
``before 1923`` / ``by 1880`` / ``after 1884``     1913..1923, ..., 1884..1894
``modeled ca. 1892, cast in 1920``                 1887..1920 (clauses are joined)
``1779, after a portrait of 1777``                 1779..1779 (the model's date is not the work's)
=================================================  ==================

Conventions follow the Met's own ``objectBeginDate`` / ``objectEndDate`` where they are
consistent (the tests measure agreement on 4,692 real Met records): a century N A.D. is
``(N-1)*100 .. (N-1)*100+99`` (the 1st starts at 1), N B.C. is ``-N*100+1 .. -(N-1)*100``
(the 1st ends at -1); B.C. written once at the end applies to the whole range
("2nd-1st century B.C."); uncertainty marks ("(?)", "probably", "possibly") are ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["parse_date_text", "CIRCA_YEARS", "OPEN_BOUND_YEARS"]

#: "ca. 1745" -> 1740..1750.
CIRCA_YEARS = 5
#: "before 1923" -> 1913..1923, "after 1884" -> 1884..1894.
OPEN_BOUND_YEARS = 10

_DASHES = re.compile(r"[\u2010-\u2015\u2212\ufe58\ufe63\uff0d]")
_ERA_BC = re.compile(r"\bb\.?\s?c\.?(?:\s?e\.?)?(?![a-z])")
_ERA_AD = re.compile(r"\ba\.\s?d\.?|\bad\b|\bc\.\s?e\.|\bce\b")
_CIRCA = re.compile(r"\b(?:ca|circa|c)\.\s*|\bcirca\b|\bca\b|\babout\b")
# Hijri years ("dated 761 AH/1360 CE"): only the Gregorian year is read
_HIJRI = re.compile(r"\b\d+\s*a\.?\s?h\b\.?")
_MONTH = re.compile(
    r"\b(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
    r"(?:\s+\d{1,2}(?:st|nd|rd|th)?)?(?:,\s*|\s+)(?=\d{3,4}\b)"
)
# a clause that dates the work's model or source ("after a portrait of 1777"), not the work
_SOURCE_CLAUSE = re.compile(
    r"\bafter\s+(?:a|an|the)\b|\bafter\b.*\b(?:model|portrait|design|original|painting|print|drawing|engraving)"
)
_TOKEN = re.compile(r"\d+(?:st|nd|rd|th|s)?|[a-z]+|-")
_ORDINAL_WORDS = {"first": 1, "second": 2, "third": 3, "fourth": 4, "last": 4}
_JOINS = {"-", "or", "and", "to"}
_SIMPLE_QUALIFIERS = {"early": "early", "mid": "mid", "middle": "mid", "late": "late", "end": "end",
                      "beginning": "beginning", "start": "beginning"}  # fmt: skip


@dataclass
class _Point:
    """One endpoint of a date expression while it is being read."""

    number: int | None = None
    digits: int = 0
    kind: str | None = None  # year | decade | century | millennium
    era: str | None = None  # bc | ad
    era_written: bool = False  # the era is in the text, not inherited
    circa: bool = False
    qualifier: tuple[str, int] | None = None  # ("early", 0), ("half", 2), ("quarter", 4) ...
    bound: str | None = None  # before | after

    def empty(self) -> bool:
        return self.number is None and self.qualifier is None


def parse_date_text(text: str | None) -> tuple[int, int] | None:
    """``(begin, end)`` years for a free-text date, or ``None`` when no year can be read."""
    if not text:
        return None
    normal = _normalise(text)
    spans = []
    for clause in re.split(r"[,;]", normal):
        if not clause.strip() or _SOURCE_CLAUSE.search(clause):
            continue
        span = _parse_clause(clause)
        if span is not None:
            spans.append(span)
    if not spans:
        return None
    return min(lo for lo, _ in spans), max(hi for _, hi in spans)


def _normalise(text: str) -> str:
    text = _HIJRI.sub(" ", _DASHES.sub("-", text.lower()))
    text = text.replace("entury", "century").replace("ccentury", "century")  # "7th entury" (sic)
    text = _ERA_BC.sub(" bc ", text)
    text = _ERA_AD.sub(" ad ", text)
    text = _CIRCA.sub(" ca ", text)
    text = _MONTH.sub(" ", text)
    text = re.sub(r"mid-", "mid ", text)
    return re.sub(r"[()?\[\].:/]", " ", text)


def _read_points(clause: str) -> list[_Point]:
    tokens = _TOKEN.findall(clause)
    points: list[_Point] = []
    current = _Point()

    def close() -> None:
        nonlocal current
        if not current.empty():
            points.append(current)
        current = _Point()

    for i, token in enumerate(tokens):
        following = tokens[i + 1] if i + 1 < len(tokens) else ""
        if token in _JOINS:
            close()
        elif token in ("bc", "ad"):
            current.era, current.era_written = token, True  # before its number ("A.D. 160") or after it ("450 B.C.")
        elif token == "ca":
            current.circa = True
        elif token in ("before", "by"):
            current.bound = "before"
        elif token == "after":
            current.bound = "after"
        elif token in ("century", "centuries"):
            current.kind = current.kind or "century"
        elif token in ("millennium", "millennia"):
            current.kind = "millennium"
        elif (token in _ORDINAL_WORDS or re.fullmatch(r"\d+(?:st|nd|rd|th)", token)) and following in ("half", "quarter"):
            n = _ORDINAL_WORDS.get(token) or int(re.match(r"\d+", token).group())
            if following == "half" and token == "last":
                n = 2
            if current.qualifier is not None or current.number is not None:
                close()
            current.qualifier = (following, n)
        elif token in _SIMPLE_QUALIFIERS:
            if current.qualifier is not None or current.number is not None:
                close()  # "mid-late 1st century": two endpoints
            current.qualifier = (_SIMPLE_QUALIFIERS[token], 0)
        elif token[0].isdigit():
            if current.number is not None:
                close()
            digits = re.match(r"\d+", token).group()
            current.number, current.digits = int(digits), len(digits)
            if token.endswith("s") and not token.endswith(("st", "nd", "rd", "th")):
                current.kind = "decade"
            elif token[-2:] in ("st", "nd", "rd", "th"):
                current.kind = "millennium" if following in ("millennium", "millennia") else "century"
            else:
                current.kind = "year"
    close()
    return points


def _parse_clause(clause: str) -> tuple[int, int] | None:
    points = _read_points(clause)
    if not any(p.number is not None for p in points):
        return None
    # an era or a kind written once applies to its neighbours: the nearest on the right, else left
    for i, point in enumerate(points):
        if point.number is None:  # "middle or 3rd quarter of the 6th century": borrow the number
            donor = next((p for p in points[i + 1:] if p.number is not None), None)
            if donor is None:
                donor = next((p for p in reversed(points[:i]) if p.number is not None), None)
            point.number, point.digits, point.kind = donor.number, donor.digits, donor.kind
        if point.era is None:
            right = next((p.era for p in points[i + 1:] if p.era), None)
            left = next((p.era for p in reversed(points[:i]) if p.era), None)
            point.era = right or left
    spans = []
    previous: _Point | None = None
    # a small number is a year only beside an era or another year ("1-100"), never alone ("no. 4")
    in_range = sum(p.kind == "year" for p in points) > 1
    for point in points:
        _complete_abbreviation(previous, point)
        span = _span(point, small_years=in_range)
        if span is not None:
            spans.append(span)
        previous = point
    if not spans:
        return None
    return min(lo for lo, _ in spans), max(hi for _, hi in spans)


def _complete_abbreviation(previous: _Point | None, point: _Point) -> None:
    """``1631-32`` -> 1632, ``1840s-50s`` -> 1850s (A.D. only: B.C. years count down)."""
    if previous is None or previous.number is None or point.number is None or point.era_written:
        return
    if "bc" in (point.era, previous.era):
        return
    if point.kind not in ("year", "decade") or previous.kind not in ("year", "decade"):
        return
    if point.digits >= previous.digits or point.number >= previous.number:
        return
    scale = 10**point.digits
    completed = previous.number - previous.number % scale + point.number
    if completed < previous.number:
        completed += scale
    point.number, point.digits = completed, previous.digits


def _span(point: _Point, small_years: bool = False) -> tuple[int, int] | None:
    n, kind = point.number, point.kind
    if n is None:
        return None
    bc = point.era == "bc"
    if kind in ("century", "millennium"):
        size = 100 if kind == "century" else 1000
        if n < 1 or n > (30 if kind == "century" else 10):
            return None
        lo, hi = ((-n * size + 1, min(-(n - 1) * size, -1)) if bc else (max((n - 1) * size, 1), (n - 1) * size + size - 1))
    elif kind == "decade":
        if n % 10:
            return None
        lo, hi = (-(n + 9), -n) if bc else (n, n + 9)
    else:
        if point.era is None and n < 100 and not small_years:
            return None
        year = -n if bc else n
        lo = hi = year
        if point.circa:
            lo, hi = year - CIRCA_YEARS, year + CIRCA_YEARS
    if point.bound == "before":
        lo = hi - OPEN_BOUND_YEARS
    elif point.bound == "after":
        hi = lo + OPEN_BOUND_YEARS
    if point.qualifier is not None:
        lo, hi = _qualify(lo, hi, point.qualifier)
    return lo, hi


def _qualify(lo: int, hi: int, qualifier: tuple[str, int]) -> tuple[int, int]:
    """The part of ``lo..hi`` a qualifier names: thirds, halves, quarters (in time order)."""
    width = hi - lo + 1
    name, n = qualifier
    if name == "early":
        return lo, lo + width // 3
    if name == "mid":
        return lo + width // 3, lo + 2 * width // 3
    if name == "late":
        return lo + 2 * width // 3, hi
    if name == "beginning":
        return lo, lo + width // 4
    if name == "end":
        return lo + 3 * width // 4, hi
    parts = 2 if name == "half" else 4
    n = min(max(n, 1), parts)
    start = lo + (n - 1) * width // parts
    return start, (hi if n == parts else lo + n * width // parts)
