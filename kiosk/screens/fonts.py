"""Fonts that can draw every patron language, registered with Kivy once.

Kivy's default Roboto draws no Japanese (tofu), and no single commonly installed
font covers all six languages except Noto Sans CJK: IPAexGothic has no Hangul, no
Vietnamese letters (ạ, ư, ỹ) and misses many simplified Chinese characters. So each
language gets the first installed font known to cover it, registered under its own
name (`Kiosk-ko`); the language bar shows every language in its own font at once.

Debian/Raspberry Pi OS packages: fonts-noto-cjk (covers everything), fonts-ipaexfont
(Japanese only), fonts-dejavu-core (Latin + Vietnamese). Kivy ships DejaVuSans too,
which is also the icon font (✓ ✕ ⚠ ⌫ have no glyph in the CJK fonts).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import kivy

log = logging.getLogger("kiosk.screens.fonts")

# What each language needs beyond ASCII.
NEEDS = {
    "ja": {"latin", "kana", "han_jp"},
    "en": {"latin"},
    "pt-BR": {"latin", "latin1"},
    "zh-Hans": {"latin", "han_sc"},
    "ko": {"latin", "hangul"},
    "vi": {"latin", "latin1", "vietnamese"},
}
_ALL = {"latin", "latin1", "kana", "han_jp", "han_sc", "hangul", "vietnamese"}

# Kivy's own fonts (Roboto, DejaVuSans); importing the package opens no window.
_KIVY_FONTS = Path(kivy.__file__).resolve().parent / "data" / "fonts"


@dataclass(frozen=True)
class FontFile:
    regular: str
    bold: str | None
    covers: frozenset[str]


def _noto(folder: str) -> FontFile:
    return FontFile(f"{folder}/NotoSansCJK-Regular.ttc", f"{folder}/NotoSansCJK-Bold.ttc", frozenset(_ALL))


# Known system fonts in order of preference. Kivy opens face 0 of a .ttc, which for
# Noto Sans CJK is the Japanese face: simplified Chinese and Korean still have every
# glyph, drawn in Japanese forms where the forms differ.
CANDIDATES: tuple[FontFile, ...] = (
    _noto("/usr/share/fonts/opentype/noto"),                     # Debian, Raspberry Pi OS
    _noto("/usr/share/fonts/noto-cjk"),                           # Arch, Fedora
    _noto("/usr/share/fonts/google-noto-cjk"),
    FontFile("/usr/share/fonts/opentype/ipaexfont-gothic/ipaexg.ttf", None,
             frozenset({"latin", "latin1", "kana", "han_jp"})),
    FontFile("/usr/share/fonts/truetype/nanum/NanumGothic.ttf",
             "/usr/share/fonts/truetype/nanum/NanumGothicBold.ttf", frozenset({"latin", "hangul"})),
    FontFile("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
             frozenset({"latin", "latin1", "vietnamese"})),
    FontFile(str(_KIVY_FONTS / "Roboto-Regular.ttf"), str(_KIVY_FONTS / "Roboto-Bold.ttf"),
             frozenset({"latin", "latin1", "vietnamese"})),
)

ICON_FONT = str(_KIVY_FONTS / "DejaVuSans.ttf")
ICON_FONT_NAME = "KioskIcons"


def _known(path: str) -> FontFile | None:
    name = os.path.basename(path)
    for c in CANDIDATES:
        if os.path.basename(c.regular) == name:
            return c
    return None


def choose_fonts(
    languages: Iterable[str],
    configured: str = "",
    exists: Callable[[str], bool] = os.path.exists,
) -> dict[str, FontFile | None]:
    """The font file for each language, or None when nothing installed covers it.

    A configured font comes first. When it is a known file its coverage is known;
    an unknown file is trusted to cover every language (the site chose it).
    """
    pool: list[FontFile] = []
    if configured and exists(configured):
        known = _known(configured)
        pool.append(FontFile(configured, known.bold if known else None,
                             known.covers if known else frozenset(_ALL)))
    elif configured:
        log.warning("font.configured_missing", extra={"kiosk_fields": {"path": configured}})
    pool += [c for c in CANDIDATES if exists(c.regular)]
    out: dict[str, FontFile | None] = {}
    for lang in languages:
        need = NEEDS.get(lang, {"latin"})
        out[lang] = next((f for f in pool if need <= f.covers), None)
    return out


def font_name(lang: str) -> str:
    return f"Kiosk-{lang}"


_registered: dict[str, FontFile | None] = {}


def register_fonts(languages: Iterable[str], configured: str = "") -> dict[str, FontFile | None]:
    """Register `Kiosk-<lang>` for every language (Roboto where nothing fits) and the icon font."""
    from kivy.core.text import LabelBase

    chosen = choose_fonts(languages, configured)
    for lang, f in chosen.items():
        if f is None:
            log.warning("font.missing", extra={"kiosk_fields": {"lang": lang}})
            f = CANDIDATES[-1]
        bold = f.bold if f.bold and os.path.exists(f.bold) else f.regular
        LabelBase.register(font_name(lang), fn_regular=f.regular, fn_bold=bold)
        _registered[lang] = f
    LabelBase.register(ICON_FONT_NAME, fn_regular=ICON_FONT)
    return chosen


def registered(lang: str) -> str:
    """The Kivy font name to draw `lang` with (the default language's when unknown)."""
    if lang in _registered:
        return font_name(lang)
    if "ja" in _registered:
        return font_name("ja")
    return "Roboto"


def font_file(lang: str) -> FontFile | None:
    return _registered.get(lang)
