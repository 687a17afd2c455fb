"""Line breaking like Japanese print: between phrases, never against the kinsoku rules.

Kivy breaks lines only at ASCII spaces and cuts a Japanese run anywhere ("くださ / い",
"。" at a line start). Here a text is cut into phrases (BudouX for Japanese and Chinese,
words elsewhere), the kinsoku rules (JIS X 4051) glue closing punctuation and small kana
to the phrase before and opening brackets to the phrase after, and lines are filled
greedily with whole phrases. Only a phrase wider than the whole line is broken inside,
still never against the rules. Pure Python, no Kivy: the width of a string comes from a
`measure` function (Kivy's font metrics in the labels, a model in the tests).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Callable, Iterator

Measure = Callable[[str], float]

# Must not start a line: closing brackets and punctuation, iteration marks, prolonged
# sound mark, small kana (JIS X 4051 classes 2-7 and 9), and their ASCII counterparts.
NO_START = frozenset(
    "、。，．・：；？！ー‐〜～…‥）］｝〕〉》」』】〙〗〟’”»"
    "ゝゞヽヾ々〻"
    "ぁぃぅぇぉっゃゅょゎゕゖァィゥェォッャュョヮヵヶㇰㇱㇲㇳㇴㇵㇶㇷㇸㇹㇺㇻㇼㇽㇾㇿ"
    ",.!?:;)]}%"
)
# Must not end a line: opening brackets and quotes.
NO_END = frozenset("（［｛〔〈《「『【〘〖〝‘“«([{")

_CJK = re.compile(r"[\u3000-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef]")
_KANA = re.compile(r"[\u3040-\u30ff]")
_WORD = re.compile(r"\S+\s*|\s+")


def is_cjk(text: str) -> bool:
    """Text with Chinese characters, kana or full-width forms: it needs phrase breaking."""
    return bool(_CJK.search(text))


@lru_cache(maxsize=2)
def _parser(kind: str):
    import budoux

    if kind == "ja":
        return budoux.load_default_japanese_parser()
    return budoux.load_default_simplified_chinese_parser()


@lru_cache(maxsize=4096)
def phrases(text: str) -> tuple[str, ...]:
    """`text` (one paragraph) as the pieces a line may break between; they join back to `text`.

    Spaces trail the piece before them, so a line never starts with one; kinsoku
    characters are moved onto the neighbour they must stay with."""
    if not text:
        return ()
    if is_cjk(text):
        parts = list(_parser("ja" if _KANA.search(text) else "zh").parse(text))
        # BudouX keeps a phrase's trailing Latin words together ("PIN を"); a space
        # inside a phrase is no break, a space between phrases goes to the one before.
    else:
        parts = _WORD.findall(text)
    units: list[str] = []
    for part in parts:
        lead = len(part) - len(part.lstrip(" "))
        if lead and units:
            units[-1] += part[:lead]
            part = part[lead:]
        if part:
            units.append(part)
    # Kinsoku: a leading run of no-start characters joins the phrase before ...
    i = 1
    while i < len(units):
        u = units[i]
        n = 0
        while n < len(u) and u[n] in NO_START:
            n += 1
        if n:
            units[i - 1] += u[:n]
            units[i] = u[n:]
            if not units[i]:
                del units[i]
                continue
        i += 1
    # ... and a trailing run of no-end characters joins the phrase after.
    i = len(units) - 2
    while i >= 0:
        u = units[i]
        n = 0
        while n < len(u) and u[len(u) - 1 - n] in NO_END:
            n += 1
        if n and n < len(u) + 1:
            units[i + 1] = u[len(u) - n:] + units[i + 1]
            units[i] = u[:len(u) - n]
            if not units[i]:
                del units[i]
        i -= 1
    return tuple(units)


def _breakable(s: str, k: int) -> bool:
    """Whether a line may end before s[k] inside a phrase (last resort)."""
    a, b = s[k - 1], s[k]
    if b in NO_START or a in NO_END or b == " ":
        return False
    return not (a.isascii() and a.isalnum() and b.isascii() and b.isalnum())


def _split_long(unit: str, width: float, measure: Measure) -> list[str]:
    """A phrase wider than the line, cut by characters where the rules allow."""
    pieces: list[str] = []
    rest = unit
    while rest and measure(rest.rstrip()) > width:
        fit = 1
        while fit < len(rest) and measure(rest[:fit + 1].rstrip()) <= width:
            fit += 1
        if fit >= len(rest):            # one character wider than the line: nothing to cut
            break
        cut = fit
        while cut > 0 and not _breakable(rest, cut):
            cut -= 1
        if 1 < cut == len(rest) - 1 and _breakable(rest, cut - 1):
            cut -= 1                    # no single character alone on the next line ("1字 / 消す")
        if cut == 0:                    # nowhere allowed: keep going to the next allowed place
            cut = next((k for k in range(fit + 1, len(rest)) if _breakable(rest, k)), len(rest))
        pieces.append(rest[:cut])
        rest = rest[cut:]
    if rest:
        pieces.append(rest)
    return pieces


def breaks(text: str, width: float, measure: Measure) -> list[int]:
    """Offsets in `text` where a new line starts (existing newlines are kept and not listed).

    Spaces at the end of a line stay in the text before the offset; `wrap` drops them."""
    out: list[int] = []
    offset = 0
    for para in text.split("\n"):
        if para and measure(para.rstrip()) > width:
            line = ""
            pos = offset
            for unit in phrases(para):
                for piece in (_split_long(unit, width, measure) if measure(unit.rstrip()) > width else [unit]):
                    if line and measure((line + piece).rstrip()) > width:
                        out.append(pos)
                        line = ""
                    line += piece
                    pos += len(piece)
        offset += len(para) + 1
    return out


def lines_at(text: str, starts: list[int]) -> list[str]:
    """`text` cut at the given line starts (and its own newlines), trailing spaces dropped."""
    cuts = [0, *starts, len(text)]
    out: list[str] = []
    for a, b in zip(cuts, cuts[1:]):
        out.extend(chunk.rstrip(" ") for chunk in text[a:b].split("\n"))
    return out


def wrap(text: str, width: float, measure: Measure) -> list[str]:
    """The lines `text` is set in at `width`."""
    return lines_at(text, breaks(text, width, measure))


def violations(lines: list[str]) -> Iterator[str]:
    """Kinsoku faults in set lines: what a test (or a reviewer) would flag."""
    for i, line in enumerate(lines):
        s = line.strip(" ")
        if not s:
            continue
        if i and s[0] in NO_START:
            yield f"line {i + 1} starts with {s[0]!r}: {s!r}"
        if i < len(lines) - 1 and s[-1] in NO_END:
            yield f"line {i + 1} ends with {s[-1]!r}: {s!r}"


# -- Kivy markup ------------------------------------------------------------------------

_TAG = re.compile(r"\[/?[a-z_]+(?:=[^\]]*)?\]")
_ENTITY = {"&amp;": "&", "&bl;": "[", "&br;": "]"}


def plain(markup: str) -> tuple[str, list[int]]:
    """The text Kivy's markup shows, and where each of its characters is in `markup`."""
    chars: list[str] = []
    where: list[int] = []
    i = 0
    while i < len(markup):
        m = _TAG.match(markup, i) if markup[i] == "[" else None
        if m:
            i = m.end()
            continue
        entity = next((e for e in _ENTITY if markup.startswith(e, i)), None)
        chars.append(_ENTITY[entity] if entity else markup[i])
        where.append(i)
        i += len(entity) if entity else 1
    return "".join(chars), where


def break_markup(markup: str, width: float, measure: Measure) -> str:
    """`markup` with a newline at each line start `breaks` finds in its shown text,
    the spaces before each break removed."""
    text, where = plain(markup)
    starts = breaks(text, width, measure)
    if not starts:
        return markup
    out = markup
    for start in reversed(starts):
        end = start
        while end > 0 and text[end - 1] == " ":
            end -= 1
        at = where[start] if start < len(where) else len(markup)
        cut_from = where[end] if end < start else at
        # Only plain spaces between the line's end and the next line's start are removed.
        if out[cut_from:at].strip(" "):
            cut_from = at
        out = out[:cut_from] + "\n" + out[at:]
    return out
