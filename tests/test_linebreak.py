"""Japanese typesetting (kiosk/screens/linebreak.py), pure Python with no Kivy: every string
of every catalogue wrapped at every width the display matrix gives a text, with zero
kinsoku faults and no break inside a phrase that fits on a line."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest

from kiosk import i18n
from kiosk.screens import linebreak
from kiosk.screens.theme import make_theme

SOURCE = Path(__file__).resolve().parents[1] / "kiosk" / "locale"
LANGS = ("ja", "en", "pt-BR", "zh-Hans", "ko", "vi")
DISPLAYS = [(800, 480, 131), (1024, 600, 170), (1280, 800, 149), (1920, 1080, 102), (720, 1280, 210),
            (1080, 1920, 102)]


def em_width(s: str) -> float:
    """A font model: full-width characters one em, the others about half (Noto Sans CJK)."""
    return sum(1.0 if unicodedata.east_asian_width(c) in "WF" else 0.55 for c in s)


def widths_in_em() -> list[float]:
    """Every line width a text gets in the matrix, in ems of its font: the full content
    width, a landscape keypad's column, half (two columns), the narrow header and key
    labels, for small, body and title text, normal and large."""
    out = set()
    for w, h, dpi in DISPLAYS:
        for large in (False, True):
            th = make_theme((w, h), dpi, large_text=large)
            content = w - 2 * th.pad
            boxes = (content, content - th.key_width * 3 - th.pad, content * 0.4, content / 2, content / 4,
                     th.key_width)
            for font in (th.font_small, th.font_body, th.font_title, th.least_body, th.least_text):
                out.update(round(b / font, 2) for b in boxes if b / font >= 2)
    return sorted(out)


WIDTHS = widths_in_em()


def catalogue_strings() -> list[tuple[str, str, str]]:
    out = []
    for lang in LANGS:
        for msgid, text in sorted(i18n.messages(lang, SOURCE).items()):
            if text:
                out.append((lang, msgid, text))
    return out


def test_the_catalogues_are_read():
    strings = catalogue_strings()
    assert {lang for lang, _, _ in strings} == set(LANGS)
    assert sum(lang == "ja" for lang, _, _ in strings) > 100
    assert len(WIDTHS) > 30


@pytest.mark.parametrize("lang", LANGS)
def test_every_catalogue_string_wraps_at_every_matrix_width_without_a_fault(lang):
    faults = []
    for _, msgid, text in (s for s in catalogue_strings() if s[0] == lang):
        plain, _ = linebreak.plain(text)          # catalogue texts may hold Kivy markup
        for width in WIDTHS:
            starts = linebreak.breaks(plain, width, em_width)
            lines = linebreak.lines_at(plain, starts)
            faults += [f"{msgid} @{width}em: {v}" for v in linebreak.violations(lines)]
            # Nothing lost: the lines are the text without the spaces at the breaks.
            if "".join(lines).replace(" ", "") != plain.replace("\n", "").replace(" ", ""):
                faults.append(f"{msgid} @{width}em: text changed: {lines}")
            # Breaks fall between phrases, unless a phrase is wider than the line.
            for para_start, para in _paragraphs(plain):
                edges, pos = set(), para_start
                too_wide = []
                for unit in linebreak.phrases(para):
                    if em_width(unit.rstrip()) > width:
                        too_wide.append((pos, pos + len(unit)))
                    pos += len(unit)
                    edges.add(pos)
                for s in starts:
                    if para_start < s < para_start + len(para) and s not in edges and not any(
                            a < s < b for a, b in too_wide):
                        faults.append(f"{msgid} @{width}em: break inside a phrase at {s}: {lines}")
            # And every line fits, unless one character is wider than the line.
            faults += [f"{msgid} @{width}em: too wide: {line!r}" for line in lines
                       if em_width(line) > width and len(line) > 1 and not _unbreakable(line, width)]
    assert not faults, f"{len(faults)} faults:\n" + "\n".join(faults[:40])


def _paragraphs(text: str):
    pos = 0
    for para in text.split("\n"):
        yield pos, para
        pos += len(para) + 1


def _unbreakable(line: str, width: float) -> bool:
    """A line wider than `width` that the rules allow no break in (a long Latin word)."""
    return not any(linebreak._breakable(line, k) for k in range(1, len(line)))


def test_japanese_breaks_between_phrases_and_by_the_kinsoku_rules():
    text = "マイナンバーカードをカードリーダーに置いてください。"
    assert linebreak.wrap(text, 10, em_width) == ["マイナンバーカードを", "カードリーダーに", "置いてください。"]
    # 。 and ） never start a line, （ and 「 never end one.
    for width in range(3, 20):
        for sample in ("入力できるのはあと3回です。（3回間違えるとロックされます）", "「延長する」を押してください。",
                       "交通系ICカードは使えません。", "本を借りるには、先にカードで始めてください。"):
            assert not list(linebreak.violations(linebreak.wrap(sample, width, em_width))), (sample, width)


def test_a_phrase_wider_than_the_line_is_cut_by_the_rules_and_leaves_no_single_character():
    assert linebreak.wrap("1字消す", 3.5, em_width) == ["1字", "消す"]
    assert linebreak.wrap("ICカード", 3, em_width)[0] == "IC"          # never inside a Latin word


def test_chinese_uses_its_own_phrases_and_rules():
    lines = linebreak.wrap("请将您的卡放在读卡器上。（不是交通卡）", 6, em_width)
    assert not list(linebreak.violations(lines))
    assert all(em_width(line) <= 6 for line in lines)


def test_other_scripts_break_at_spaces_and_markup_keeps_its_tags():
    assert linebreak.wrap("Please put your card on the reader.", 12, em_width) == [
        "Please put your card", "on the reader."]
    assert linebreak.wrap("Please put your card on the reader.", 9, em_width) == [
        "Please put your", "card on the", "reader."]
    marked = "[font=KioskIcons]⚠[/font] 入力できるのはあと2回です。間違えるとロックされます"
    broken = linebreak.break_markup(marked, 10, em_width)
    assert broken.startswith("[font=KioskIcons]⚠[/font]") and "\n" in broken
    assert linebreak.plain(broken)[0].replace("\n", "").replace(" ", "") == \
        linebreak.plain(marked)[0].replace(" ", "")
