"""Patron-facing text from gettext catalogues, one .po file per language.

Adding a language is adding kiosk/locale/<lang>/LC_MESSAGES/kiosk.po (the folder
name is the language code with "_" for "-", e.g. pt_BR for "pt-BR"); nothing
here lists languages. Message ids are stable keys ("idle.title"), not English
sentences, so a change of wording never orphans a translation. Catalogues are
read as they are (no compile step, so the .po files are what ships): plain
entries by a small reader (half a millisecond a catalogue, where importing Babel
and reading the first takes twenty at start-up), anything else (plurals,
contexts) by Babel. Dates use Babel's CLDR data so "due 15 January" reads
naturally in every language.
"""

from __future__ import annotations

import logging
import re
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from babel import Locale

log = logging.getLogger("kiosk.i18n")

LOCALE_DIR = Path(__file__).resolve().parent / "locale"
DOMAIN = "kiosk"
DEFAULT_LANGUAGE = "ja"
# A missing text falls back to English (most patrons who are not reading Japanese
# can read it), then Japanese, then the key itself.
FALLBACKS = ("en", "ja")


class MissingText(KeyError):
    """A strict translator was asked for a message id no catalogue has."""


def folder_name(lang: str) -> str:
    return lang.replace("-", "_")


def language_code(folder: str) -> str:
    return folder.replace("_", "-")


def po_path(lang: str, locale_dir: Path = LOCALE_DIR) -> Path:
    return locale_dir / folder_name(lang) / "LC_MESSAGES" / f"{DOMAIN}.po"


def available_languages(locale_dir: Path = LOCALE_DIR) -> list[str]:
    """Every language with a catalogue on disk (codes as the session uses them)."""
    return sorted(language_code(p.parent.parent.name)
                  for p in locale_dir.glob(f"*/LC_MESSAGES/{DOMAIN}.po"))


def messages(lang: str, locale_dir: Path = LOCALE_DIR) -> dict[str, str]:
    """msgid -> text for one language; fuzzy and untranslated entries are left out.
    Each catalogue is read once, on first use."""
    return _messages(lang, Path(locale_dir))


@lru_cache(maxsize=None)
def _messages(lang: str, locale_dir: Path) -> dict[str, str]:
    path = po_path(lang, locale_dir)
    if not path.exists():
        return {}
    data = path.read_bytes()
    try:
        plain = plain_po(data.decode("utf-8"))
    except UnicodeDecodeError:
        plain = None
    return plain if plain is not None else babel_po(data)


def babel_po(data: bytes) -> dict[str, str]:
    """msgid -> text of any catalogue, read by Babel."""
    from io import BytesIO

    from babel.messages.pofile import read_po

    out: dict[str, str] = {}
    for m in read_po(BytesIO(data), locale=None, domain=DOMAIN):
        if not m.id or m.fuzzy or not isinstance(m.id, str):
            continue
        if isinstance(m.string, str) and m.string:
            out[m.id] = m.string
    return out


class _NotPlain(Exception):
    pass


_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')
_ESCAPE = re.compile(r'\\([\\trn"])')
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r"}


def _string(quoted: str) -> str:
    r"""One quoted line's text, unescaped as Babel does (only \\ \" \n \t \r)."""
    inner = quoted[1:-1]
    if "\\" not in inner and '"' not in inner:
        return inner
    if not _QUOTED.fullmatch(quoted):
        raise _NotPlain
    return _ESCAPE.sub(lambda m: _ESCAPES.get(m[1], m[1]), inner)


def plain_po(text: str) -> dict[str, str] | None:
    """What `babel_po` returns, for a catalogue of plain entries only (comments, msgid,
    msgstr, continued strings in UTF-8); None for anything else, left to Babel."""
    out: dict[str, str] = {}
    seen: set[str] = set()
    msgid: list[str] | None = None
    msgstr: list[str] | None = None
    target: list[str] | None = None
    fuzzy = False
    try:
        for line in (*text.splitlines(), "#"):      # a last comment ends the last entry
            line = line.strip()
            if not line:
                continue
            first = line[0]
            if first == '"':
                if target is None or line[-1] != '"' or len(line) < 2:
                    raise _NotPlain
                target.append(_string(line))
                continue
            if msgid is not None and (first == "#" or line.startswith("msgid ")):
                if msgstr is None:
                    raise _NotPlain
                key, value = "".join(msgid), "".join(msgstr)
                if key in seen:
                    raise _NotPlain             # Babel merges duplicates
                seen.add(key)
                if not key:
                    charset = re.search(r"charset=([^\s;]+)", value)
                    if charset and charset[1].lower() not in ("utf-8", "utf8"):
                        raise _NotPlain
                elif value and not fuzzy:
                    out[key] = value
                msgid = msgstr = target = None
                fuzzy = False
            if first == "#":
                if line[:2] == "#~":
                    raise _NotPlain             # obsolete entries
                target = None
                if line[:2] == "#," and "fuzzy" in (f.strip() for f in line[2:].split(",")):
                    fuzzy = True
                continue
            keyword, _, arg = line.partition(" ")
            arg = arg.strip()
            if len(arg) < 2 or arg[0] != '"' or arg[-1] != '"':
                raise _NotPlain
            if keyword == "msgid" and msgid is None:
                target = msgid = [_string(arg)]
            elif keyword == "msgstr" and msgid is not None and msgstr is None:
                target = msgstr = [_string(arg)]
            else:
                raise _NotPlain                 # msgctxt, plurals, anything unexpected
    except _NotPlain:
        return None
    return out


class Translator:
    """Looks message ids up in one language, with fallbacks; `t(msgid, **params)`."""

    def __init__(self, lang: str, fallbacks: tuple[str, ...], strict: bool = False,
                 locale_dir: Path = LOCALE_DIR) -> None:
        self.lang = lang
        self._own = messages(lang, locale_dir)
        self._fallbacks = fallbacks         # parsed only when a text is missing
        self._locale_dir = locale_dir
        self._strict = strict

    def _lookup(self, msgid: str) -> tuple[str | None, bool]:
        text = self._own.get(msgid)
        if text is not None:
            return text, True
        for f in self._fallbacks:
            text = messages(f, self._locale_dir).get(msgid)
            if text is not None:
                return text, False
        return None, False

    def has(self, msgid: str) -> bool:
        return self._lookup(msgid)[0] is not None

    def __call__(self, msgid: str, **params: object) -> str:
        text, own = self._lookup(msgid)
        if self._strict and not own:
            raise MissingText(f"{msgid} not translated into {self.lang}")
        if text is None:
            log.warning("i18n.missing", extra={"kiosk_fields": {"msgid": msgid, "lang": self.lang}})
            return msgid
        if not params and not self._strict:
            return text
        try:
            return text.format_map(params)
        except (KeyError, IndexError, ValueError):
            if self._strict:
                raise
            return text


def translator(lang: str, strict: bool = False, locale_dir: Path = LOCALE_DIR) -> Translator:
    """A callable `t(msgid, **params) -> str` for `lang`.

    `strict` (tests) raises MissingText instead of falling back, so an untranslated
    string fails a test rather than showing English to a Korean reader.
    """
    fallbacks = () if strict else tuple(f for f in FALLBACKS if f != lang)
    return Translator(lang, fallbacks, strict, locale_dir)


def babel_locale(lang: str) -> Locale:
    from babel import Locale, UnknownLocaleError

    try:
        return Locale.parse(lang, sep="-")
    except (UnknownLocaleError, ValueError):
        return Locale.parse(DEFAULT_LANGUAGE)


def format_due(due: str, lang: str) -> str:
    """An ISO due date as the patron reads dates (2025年1月15日(水), Wed, Jan 15, 2025);
    anything else (the catalogue's own text) is shown as it came."""
    if not due:
        return ""
    try:
        d = date.fromisoformat(due[:10]) if len(due) >= 10 else None
    except ValueError:
        d = None
    if d is None:
        return due
    from babel.dates import format_skeleton

    return format_skeleton("yMMMEd", d, locale=babel_locale(lang))


def language_name(lang: str) -> str:
    """The language's name in itself (日本語, English, 한국어), from its own catalogue."""
    return messages(lang).get("language.name", lang)


TranslateFn = Callable[..., str]
