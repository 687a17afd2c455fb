"""Patron-facing text from gettext catalogues, one .po file per language.

Adding a language is adding kiosk/locale/<lang>/LC_MESSAGES/kiosk.po (the folder
name is the language code with "_" for "-", e.g. pt_BR for "pt-BR"); nothing
here lists languages. Message ids are stable keys ("idle.title"), not English
sentences, so a change of wording never orphans a translation.

The .po files in the checkout are the source. Building the wheel compiles each into the
.mo the package ships (`compile_catalogues`, called by setup.py's build step; for a
source checkout `python -m kiosk.i18n compile` writes them beside the .po). At run time
the kiosk reads only the .mo, with the standard library's gettext: no .po is parsed and
no Babel is on the start-up path. A .mo carries the SHA-256 of the .po it was made
from, so a test can tell a stale build. Dates use Babel's CLDR data so "due 15 January"
reads naturally in every language.

Counts use the catalogue's plural forms: an entry with `msgid_plural` (the same key twice)
has one msgstr per form the language's Plural-Forms header declares (one for ja, zh, ko, vi;
two for en and pt-BR), and `Translator.plural(msgid, n)` picks the form with gettext's
ngettext. An optional plain entry `<msgid>.zero` says the n = 0 case in words ("you have
reached your loan limit" rather than "you can borrow 0 more").
"""

from __future__ import annotations

import gettext
import hashlib
import logging
import os
import re
import sys
from datetime import date
from functools import lru_cache
from importlib.resources import files
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from babel import Locale

log = logging.getLogger("kiosk.i18n")

# Inside the installed package (wheels install unzipped, so this is a real folder).
LOCALE_DIR = Path(str(files("kiosk").joinpath("locale")))
DOMAIN = "kiosk"
DEFAULT_LANGUAGE = "ja"
# A missing text falls back to English (most patrons who are not reading Japanese
# can read it), then Japanese, then the key itself.
FALLBACKS = ("en", "ja")
# In every compiled catalogue: the SHA-256 of the .po it was compiled from.
SOURCE_KEY = "kiosk.catalogue.source-sha256"


# Babel reads `msgstr "text` (closing quote lost) as an empty, untranslated text: the build
# checks every line of an entry is a keyword and a whole quoted string.
_PO_LINE = re.compile(r'(?:(?:msgctxt|msgid|msgid_plural|msgstr(?:\[\d+\])?)\s+)?"(?:[^"\\]|\\.)*"')


class MissingText(KeyError):
    """A strict translator was asked for a message id no catalogue has."""


def folder_name(lang: str) -> str:
    return lang.replace("-", "_")


def language_code(folder: str) -> str:
    return folder.replace("_", "-")


def po_path(lang: str, locale_dir: Path = LOCALE_DIR) -> Path:
    return locale_dir / folder_name(lang) / "LC_MESSAGES" / f"{DOMAIN}.po"


def mo_path(lang: str, locale_dir: Path = LOCALE_DIR) -> Path:
    return po_path(lang, locale_dir).with_suffix(".mo")


def available_languages(locale_dir: Path = LOCALE_DIR) -> list[str]:
    """Every language with a compiled catalogue (codes as the session uses them)."""
    return sorted(language_code(p.parent.parent.name)
                  for p in locale_dir.glob(f"*/LC_MESSAGES/{DOMAIN}.mo"))


def source_languages(locale_dir: Path) -> list[str]:
    """Every language with a .po source in a checkout's locale folder."""
    return sorted(language_code(p.parent.parent.name)
                  for p in locale_dir.glob(f"*/LC_MESSAGES/{DOMAIN}.po"))


@lru_cache(maxsize=None)
def messages(lang: str, locale_dir: Path) -> dict[str, str]:
    """msgid -> text for one language, read from a source .po with Babel; fuzzy and
    untranslated entries are left out, and so are plural entries (`plural_messages`).
    For build tools and checks only: the running kiosk reads the compiled catalogue (`lookup`)."""
    path = po_path(lang, locale_dir)
    return _babel_po(path.read_bytes()) if path.exists() else {}


@lru_cache(maxsize=None)
def plural_messages(lang: str, locale_dir: Path) -> tuple[int, dict[str, tuple[str, ...]]]:
    """The number of plural forms the .po declares, and msgid -> its forms (as written, so a
    check can see an empty one) for every non-fuzzy msgid_plural entry. Checks only."""
    path = po_path(lang, locale_dir)
    if not path.exists():
        return 0, {}
    from babel.messages.pofile import read_po

    catalog = read_po(BytesIO(path.read_bytes()), locale=None, domain=DOMAIN)
    return catalog.num_plurals, {m.id[0]: tuple(m.string) for m in catalog
                                 if isinstance(m.id, (tuple, list)) and not m.fuzzy}


def _babel_po(data: bytes) -> dict[str, str]:
    from babel.messages.pofile import read_po

    out: dict[str, str] = {}
    for m in read_po(BytesIO(data), locale=None, domain=DOMAIN):
        if not m.id or m.fuzzy or not isinstance(m.id, str):
            continue
        if isinstance(m.string, str) and m.string:
            out[m.id] = m.string
    return out


class _Untranslated(gettext.NullTranslations):
    """End of a gettext fallback chain: None, so a missing text can fall back further."""

    def gettext(self, message: str) -> str | None:  # type: ignore[override]
        return None

    def ngettext(self, msgid1: str, msgid2: str, n: int) -> str | None:  # type: ignore[override]
        return None


@lru_cache(maxsize=None)
def lookup(lang: str, locale_dir: Path = LOCALE_DIR) -> Callable[[str], str | None]:
    """msgid -> text or None for one language, from its compiled catalogue, read once on
    first use. A missing or unreadable catalogue is logged and gives None for every text,
    so the translator falls back to English, then Japanese, then the message id."""
    try:
        with mo_path(lang, locale_dir).open("rb") as f:
            compiled = gettext.GNUTranslations(f)
    except FileNotFoundError:
        return {}.get
    except (OSError, ValueError, UnicodeDecodeError, IndexError):
        log.error("i18n.catalogue_unreadable", extra={"kiosk_fields": {"lang": lang}})
        return {}.get
    compiled.add_fallback(_Untranslated())
    return compiled.gettext  # type: ignore[return-value]


def plural_lookup(lang: str, locale_dir: Path = LOCALE_DIR) -> Callable[[str, int], str | None]:
    """(msgid, n) -> the form of a msgid_plural entry for n, or None, with the language's own
    plural rule (ngettext). Shares `lookup`'s catalogue, read once; no catalogue: always None."""
    compiled = getattr(lookup(lang, locale_dir), "__self__", None)
    if not isinstance(compiled, gettext.GNUTranslations):
        return lambda msgid, n: None
    ngettext = compiled.ngettext
    return lambda msgid, n: ngettext(msgid, msgid, n)


def compile_catalogues(locale_dir: Path = LOCALE_DIR, out_dir: Path | None = None) -> list[Path]:
    """Compile every .po under `locale_dir` into a .mo at the same place under `out_dir`
    (default: beside it), atomically; returns the .mo paths. Build time only (Babel)."""
    import tempfile

    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    written = []
    for po in sorted(locale_dir.glob(f"*/LC_MESSAGES/{DOMAIN}.po")):
        source = po.read_bytes()
        # A malformed entry fails the build instead of shipping a catalogue without it.
        for number, line in enumerate(source.decode("utf-8").splitlines(), 1):
            if line.strip() and not line.startswith("#") and not _PO_LINE.fullmatch(line.strip()):
                raise ValueError(f"{po}:{number}: not a .po line (a quote missing?): {line[:60]}")
        catalog = read_po(BytesIO(source), locale=None, domain=DOMAIN, abort_invalid=True)
        for m in catalog:
            if isinstance(m.id, (tuple, list)) and not m.fuzzy and any(m.string) and not all(m.string):
                # gettext would show an empty text for the missing form's counts
                raise ValueError(f"{po}: {m.id[0]}: {len(m.string)} plural forms needed, some are empty")
        catalog.add(SOURCE_KEY, hashlib.sha256(source).hexdigest())
        out = BytesIO()
        write_mo(out, catalog, use_fuzzy=False)
        mo = (out_dir or locale_dir) / po.relative_to(locale_dir).with_suffix(".mo")
        mo.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=mo.parent, prefix=".kiosk.", suffix=".mo")
        with os.fdopen(fd, "wb") as f:
            f.write(out.getvalue())
        os.chmod(tmp, 0o644)
        os.replace(tmp, mo)
        written.append(mo)
    return written


class Translator:
    """Looks message ids up in one language, with fallbacks; `t(msgid, **params)`."""

    def __init__(self, lang: str, fallbacks: tuple[str, ...], strict: bool = False,
                 locale_dir: Path = LOCALE_DIR) -> None:
        self.lang = lang
        self._own = lookup(lang, locale_dir)
        self._fallbacks = fallbacks         # parsed only when a text is missing
        self._locale_dir = locale_dir
        self._strict = strict

    def _lookup(self, msgid: str) -> tuple[str | None, bool]:
        text = self._own(msgid)
        if text is not None:
            return text, True
        for f in self._fallbacks:
            text = lookup(f, self._locale_dir)(msgid)
            if text is not None:
                return text, False
        return None, False

    def _plural_lookup(self, msgid: str, n: int) -> tuple[str | None, bool]:
        """The first language of the chain that has the entry answers, with its own plural
        rule; its `.zero` text wins for n = 0, and a plain (not yet plural) entry is taken too."""
        for i, lang in enumerate((self.lang,) + self._fallbacks):
            text = lookup(lang, self._locale_dir)(msgid + ".zero") if n == 0 else None
            if text is None:
                text = plural_lookup(lang, self._locale_dir)(msgid, n)
            if text is None:
                text = lookup(lang, self._locale_dir)(msgid)
            if text is not None:
                return text, i == 0
        return None, False

    def has(self, msgid: str) -> bool:
        return self._lookup(msgid)[0] is not None or self._plural_lookup(msgid, 2)[0] is not None

    def __call__(self, msgid: str, **params: object) -> str:
        text, own = self._lookup(msgid)
        if text is None:
            # A caller that has not moved to plural() still reads right: the count is `n`
            # or the only whole number among the parameters.
            counts = [v for k, v in params.items()
                      if isinstance(v, int) and not isinstance(v, bool) and (k == "n" or len(params) == 1)]
            if counts:
                return self.plural(msgid, counts[0], **params)
        return self._format(msgid, text, own, params)

    def plural(self, msgid: str, n: int, **params: object) -> str:
        """The msgid_plural entry's form for `n`, formatted with `n` (and `params`)."""
        params.setdefault("n", n)
        text, own = self._plural_lookup(msgid, n)
        return self._format(msgid, text, own, params)

    def _format(self, msgid: str, text: str | None, own: bool, params: dict[str, object]) -> str:
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
    return lookup(lang)("language.name") or lang


TranslateFn = Callable[..., str]


if __name__ == "__main__":
    if sys.argv[1:] != ["compile"]:
        sys.exit("usage: python -m kiosk.i18n compile")
    for path in compile_catalogues():
        print(path)
