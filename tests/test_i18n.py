"""Message catalogues: every language complete, every code the session can show has words,
and the fonts the screens pick can draw every character of every catalogue."""

from __future__ import annotations

import gettext
import hashlib
import logging
import re
import shutil
import subprocess
from datetime import date
from pathlib import Path

import pytest

from kiosk import i18n
from kiosk.core import session as session_module
from kiosk.core.card import CardError
from kiosk.core.catalogue import Refusal
from kiosk.core.session import SessionSettings

LANGS = ("ja", "en", "pt-BR", "zh-Hans", "ko", "vi")
SESSION = Path(session_module.__file__)
# The .po sources, read here as data from the checkout: the installed package ships only .mo.
SOURCE = Path(__file__).resolve().parents[1] / "kiosk" / "locale"
PLACEHOLDER = re.compile(r"\{(\w+)\}")


def test_every_configured_language_has_a_catalogue():
    assert set(SessionSettings().languages) == set(LANGS)
    assert set(i18n.available_languages()) == set(LANGS)
    assert set(i18n.source_languages(SOURCE)) == set(LANGS)
    # Nothing at run time parses a .po: the installed package has none to parse.
    assert not list(i18n.LOCALE_DIR.glob("*/LC_MESSAGES/*.po"))


def test_catalogues_have_the_same_ids_all_translated_with_the_same_placeholders():
    reference = i18n.messages("ja", SOURCE)
    assert len(reference) > 100
    for lang in LANGS:
        msgs = i18n.messages(lang, SOURCE)
        assert set(msgs) == set(reference), (lang, set(reference) ^ set(msgs))
        for msgid, text in msgs.items():
            assert text.strip(), (lang, msgid)
            assert set(PLACEHOLDER.findall(text)) == set(PLACEHOLDER.findall(reference[msgid])), (lang, msgid)


# How many forms each language's counts have (CLDR / gettext): one for ja, zh, ko, vi.
NPLURALS = {"ja": 1, "en": 2, "pt-BR": 2, "zh-Hans": 1, "ko": 1, "vi": 1}
# Every text that shows a count; each must be a msgid_plural entry.
COUNTED = {"common.time_left", "finishing.pending", "pin.tries_left", "scan.lent", "scan.allowance", "scan.pending",
           "scan.holds_ready", "summary.count", "receipt.count", "staff.signin.locked", "staff.value.failing",
           "staff.selftest.scanned", "staff.selftest.card", "counter.barcode_wiped_in", "account.loans",
           "account.holds_ready", "account.holds_pending", "returns.count"}


def test_plural_entries_have_every_form_of_their_language_with_the_same_placeholders():
    _, reference = i18n.plural_messages("ja", SOURCE)
    assert set(reference) == COUNTED
    assert not set(reference) & set(i18n.messages("ja", SOURCE))      # never both plain and plural
    for lang in LANGS:
        nplurals, msgs = i18n.plural_messages(lang, SOURCE)
        assert nplurals == NPLURALS[lang], lang
        assert set(msgs) == set(reference), (lang, set(reference) ^ set(msgs))
        for msgid, forms in msgs.items():
            assert len(forms) == nplurals and all(f.strip() for f in forms), (lang, msgid, forms)
            for form in forms:
                assert set(PLACEHOLDER.findall(form)) == set(PLACEHOLDER.findall(reference[msgid][0])), (lang, msgid)


def test_zero_texts_belong_to_a_counted_text_and_need_no_count():
    zero = {k for k in i18n.messages("ja", SOURCE) if k.endswith(".zero")}
    assert zero == {"scan.allowance.zero", "summary.count.zero"}
    for lang in LANGS:
        for msgid in zero:
            assert msgid.removesuffix(".zero") in COUNTED
            assert not PLACEHOLDER.findall(i18n.messages(lang, SOURCE)[msgid]), (lang, msgid)


def test_no_screen_writes_item_s_or_a_count_without_the_plural_forms():
    for lang in LANGS:
        texts = list(i18n.messages(lang, SOURCE).values())
        texts += [f for forms in i18n.plural_messages(lang, SOURCE)[1].values() for f in forms]
        assert not [x for x in texts if re.search(r"\w\((s|ns|es)\)", x)], lang      # "item(s)", "item(ns)"
        plain_counts = [k for k, v in i18n.messages(lang, SOURCE).items() if {"n", "tries", "minutes", "seconds"}
                        & set(PLACEHOLDER.findall(v))]
        assert not plain_counts, (lang, plain_counts)


@pytest.mark.parametrize("lang, n, expected", [
    ("ja", 0, ("貸出冊数の上限に達しました", "借りた本はありません", "貸出：0冊", "入力できるのはあと0回です")),
    ("ja", 1, ("あと1冊借りられます", "借りた本：1冊", "貸出：1冊", "入力できるのはあと1回です")),
    ("ja", 2, ("あと2冊借りられます", "借りた本：2冊", "貸出：2冊", "入力できるのはあと2回です")),
    ("en", 0, ("You have reached your loan limit", "No books were borrowed", "Borrowed: 0 books", "0 tries left")),
    ("en", 1, ("You can borrow 1 more book", "You borrowed 1 book", "Borrowed: 1 book", "1 try left")),
    ("en", 2, ("You can borrow 2 more books", "You borrowed 2 books", "Borrowed: 2 books", "2 tries left")),
])
def test_counts_read_right_for_none_one_and_two(lang, n, expected):
    t = i18n.translator(lang, strict=True)
    assert tuple(t.plural(m, n) for m in ("scan.allowance", "summary.count", "scan.lent", "pin.tries_left")) \
        == expected


def test_each_language_uses_its_own_plural_rule():
    """pt-BR says 0 and 1 in the singular (n > 1), English only 1 (n != 1)."""
    pt, en, ko = (i18n.translator(x, strict=True) for x in ("pt-BR", "en", "ko"))
    assert [pt.plural("pin.tries_left", n) for n in (0, 1, 2)] == ["Resta 0 tentativa", "Resta 1 tentativa",
                                                                  "Restam 2 tentativas"]
    assert [en.plural("common.time_left", n, seconds=n) for n in (1, 5)] == [
        "Returning to the start in 1 second", "Returning to the start in 5 seconds"]
    assert ko.plural("staff.selftest.card", 1, kind="X", tries=1) == "X: PIN 남은 횟수 1회"
    # a caller still writing t(msgid, n=...) gets the plural form, not the message id
    assert en("scan.lent", n=1) == "Borrowed: 1 book" and en("staff.signin.locked", minutes=1).endswith("1 minute.")


PO_HEADER = 'msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=UTF-8\\n"\n\n'
EN_HEADER = ('msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=UTF-8\\n"\n'
             '"Plural-Forms: nplurals=2; plural=(n != 1);\\n"\n\n')


def compiled(fn) -> bool:
    return isinstance(getattr(fn, "__self__", None), gettext.GNUTranslations)


def copy_catalogues(dst: Path) -> Path:
    shutil.copytree(SOURCE, dst, ignore=shutil.ignore_patterns("*.mo"))
    return dst


def test_compiled_catalogues_say_exactly_what_the_po_files_say(tmp_path):
    locale = copy_catalogues(tmp_path / "locale")
    assert len(i18n.compile_catalogues(locale)) == len(LANGS)
    for lang in LANGS:
        look = i18n.lookup(lang, locale)
        assert compiled(look), lang
        source = i18n.messages(lang, SOURCE)
        assert {msgid: look(msgid) for msgid in source} == source
        assert look("no.such.id") is None
        nplurals, plurals = i18n.plural_messages(lang, SOURCE)
        rule = gettext.c2py({1: "0", 2: "n != 1" if lang == "en" else "n > 1"}[nplurals])
        count = i18n.plural_lookup(lang, locale)
        for msgid, forms in plurals.items():
            assert [count(msgid, n) for n in range(4)] == [forms[rule(n)] for n in range(4)], (lang, msgid)
        assert count("no.such.id", 1) is None


def test_fuzzy_and_empty_entries_are_left_out_of_compiled_catalogues(tmp_path):
    po = i18n.po_path("xx", tmp_path)
    po.parent.mkdir(parents=True)
    po.write_text(PO_HEADER + '#, fuzzy\nmsgid "a"\nmsgstr "A"\n\nmsgid "b"\nmsgstr ""\n\n'
                  'msgid "c"\nmsgstr ""\n"two "\n"lines \\"quoted\\"\\n"\n', encoding="utf-8")
    i18n.compile_catalogues(tmp_path)
    look = i18n.lookup("xx", tmp_path)
    assert compiled(look) and i18n.messages("xx", tmp_path) == {"c": 'two lines "quoted"\n'}
    assert [look(m) for m in "abc"] == [None, None, 'two lines "quoted"\n']


@pytest.mark.parametrize("entry", [
    'msgid "a"\nmsgid_plural "a"\nmsgstr[0] "one"\n',                              # the "other" form missing
    'msgid "a"\nmsgid_plural "a"\nmsgstr[0] "one"\nmsgstr[1] "two"\nmsgstr[2] "x"\n',  # more than nplurals
    'msgid "a"\nmsgstr "A\n',                                                       # closing quote lost
    'msgid "a"\nmsgstr "A"\nfoo "x"\n',                                              # not a .po line
])
def test_a_broken_catalogue_fails_the_build(tmp_path, entry):
    po = i18n.po_path("xx", tmp_path)
    po.parent.mkdir(parents=True)
    po.write_text(EN_HEADER + entry, encoding="utf-8")
    with pytest.raises(Exception):
        i18n.compile_catalogues(tmp_path)
    assert not i18n.mo_path("xx", tmp_path).exists()


@pytest.mark.parametrize("damage", ["no mo", "garbage mo"])
def test_a_missing_or_broken_compiled_catalogue_is_never_replaced_by_parsing_the_po(tmp_path, damage, caplog):
    """The .po beside it is not read at run time: the texts fall back (English, Japanese, the
    id) and a broken catalogue is logged for staff."""
    po = i18n.po_path("xx", tmp_path)
    po.parent.mkdir(parents=True)
    po.write_text(PO_HEADER + 'msgid "a"\nmsgstr "old"\n', encoding="utf-8")
    i18n.compile_catalogues(tmp_path)
    assert i18n.lookup("xx", tmp_path)("a") == "old"
    i18n.lookup.cache_clear()
    mo = i18n.mo_path("xx", tmp_path)
    if damage == "no mo":
        mo.unlink()
    else:
        mo.write_bytes(b"\xde\x12\x04\x95 not really a catalogue")
    with caplog.at_level(logging.ERROR, logger="kiosk.i18n"):
        look = i18n.lookup("xx", tmp_path)
    assert not compiled(look)
    assert look("a") is None
    assert ("i18n.catalogue_unreadable" in caplog.text) == (damage == "garbage mo")
    i18n.lookup.cache_clear()


def test_the_installed_catalogues_are_compiled_from_the_current_po_files():
    """Building the wheel compiles them (setup.py); each names the SHA-256 of its source."""
    for lang in LANGS:
        look = i18n.lookup(lang)
        assert compiled(look), f"{lang}: the wheel has no compiled catalogue"
        source = i18n.po_path(lang, SOURCE).read_bytes()
        assert look(i18n.SOURCE_KEY) == hashlib.sha256(source).hexdigest(), f"{lang}: stale; rebuild the wheel"


def test_translations_are_not_left_in_english():
    en = i18n.messages("en", SOURCE)
    for lang in ("ja", "zh-Hans", "ko"):
        # placeholders alone ("{name}: {state}") are not words left in English
        same = [k for k, v in i18n.messages(lang, SOURCE).items()
                if v == en[k] and not re.fullmatch(r"[\W\d_A-Z]*|OK|DEMO", PLACEHOLDER.sub("", v))]
        assert not same, (lang, same)


def test_every_code_the_error_screen_and_rows_can_show_has_words_in_every_language():
    codes = [e.value for e in CardError] + [r.value for r in Refusal] + ["timeout"]
    for lang in LANGS:
        t = i18n.translator(lang, strict=True)
        for code in codes:
            assert t(f"error.{code}"), (lang, code)
        for r in Refusal:
            assert t(f"refusal.{r.value}"), (lang, r)


def test_every_notice_the_session_sets_has_words():
    from kiosk.core.barcodes import Rejection

    source = SESSION.read_text(encoding="utf-8")
    notices = set(re.findall(r'notice="(\w+)"', source)) | set(re.findall(r'notice = "(\w+)" if', source))
    # Session._bad_barcode: "bad_barcode" or "barcode_<rejection>" for the rejections with their own words.
    assert '"barcode_" + rejection.value' in source
    notices |= {"bad_barcode"} | {f"barcode_{r.value}" for r in Rejection if r.value not in ("garbage", "unknown")}
    assert {"pin_wrong", "password_wrong", "pin_incomplete", "not_confirmed", "sign_in_first",
            "not_a_library_card", "not_an_item", "printing", "receipt_failed"} <= notices
    for lang in LANGS:
        t = i18n.translator(lang, strict=True)
        for notice in notices:
            ids = [f"notice.{notice}.card", f"notice.{notice}.library"] if notice == "pin_incomplete" \
                else [f"notice.{notice}"]
            for msgid in ids:
                assert t(msgid), (lang, msgid)


def test_translator_formats_and_falls_back_but_strict_raises():
    ko = i18n.translator("ko")
    assert ko("scan.lent", n=3) == "대출 3권"
    assert ko("no.such.id") == "no.such.id"
    with pytest.raises(i18n.MissingText):
        i18n.translator("ko", strict=True)("no.such.id")
    with pytest.raises(KeyError):
        i18n.translator("en", strict=True)("row.due")          # placeholder missing
    assert i18n.translator("ko").plural("scan.lent", 3) == "대출 3권"


def test_a_missing_translation_falls_back_to_english_then_japanese(tmp_path):
    for lang in ("en", "ja"):
        dst = i18n.po_path(lang, tmp_path)
        dst.parent.mkdir(parents=True)
        shutil.copy(i18n.po_path(lang, SOURCE), dst)
    folder = i18n.po_path("fr", tmp_path).parent
    folder.mkdir(parents=True)
    (folder / "kiosk.po").write_text('msgid ""\nmsgstr "Content-Type: text/plain; charset=UTF-8\\n"\n\n'
                                     'msgid "common.ok"\nmsgstr "D\'accord"\n', encoding="utf-8")
    assert i18n.messages("fr", tmp_path) == {"common.ok": "D'accord"}
    i18n.compile_catalogues(tmp_path)
    t = i18n.translator("fr", locale_dir=tmp_path)
    assert t("common.ok") == "D'accord"
    assert t("idle.help") == "Help"
    assert [t.plural("scan.lent", n) for n in (1, 2)] == ["Borrowed: 1 book", "Borrowed: 2 books"]   # English's forms
    assert t.plural("scan.allowance", 0) == "You have reached your loan limit"
    assert t.plural("no.such.id", 2) == "no.such.id"
    with pytest.raises(i18n.MissingText):
        i18n.translator("fr", strict=True, locale_dir=tmp_path).plural("scan.lent", 2)
    with pytest.raises(i18n.MissingText):
        i18n.translator("fr", strict=True, locale_dir=tmp_path)("idle.help")


def test_adding_a_language_is_adding_one_file(tmp_path):
    for lang in LANGS:
        src = i18n.po_path(lang, SOURCE)
        dst = i18n.po_path(lang, tmp_path)
        dst.parent.mkdir(parents=True)
        shutil.copy(src, dst)
    extra = i18n.po_path("th", tmp_path)
    extra.parent.mkdir(parents=True)
    extra.write_text(i18n.po_path("en", SOURCE).read_text(encoding="utf-8").replace('msgstr "English"', 'msgstr "ไทย"'),
                     encoding="utf-8")
    i18n.compile_catalogues(tmp_path)
    assert "th" in i18n.available_languages(tmp_path)
    assert i18n.translator("th", locale_dir=tmp_path)("language.name") == "ไทย"


@pytest.mark.parametrize("lang, expected", [
    ("ja", "2025年4月15日(火)"), ("en", "Tue, Apr 15, 2025"), ("ko", "2025년 4월 15일 (화)"),
    ("zh-Hans", "2025年4月15日周二"),
])
def test_due_dates_read_naturally(lang, expected):
    assert i18n.format_due("2025-04-15", lang) == expected


def test_due_text_that_is_not_a_date_is_shown_as_the_catalogue_sent_it():
    assert i18n.format_due("", "ja") == ""
    assert i18n.format_due("返却日未定", "ja") == "返却日未定"
    assert i18n.format_due(date(2025, 4, 15).isoformat() + "T23:59", "en") == "Tue, Apr 15, 2025"


def test_language_names_are_written_in_the_language_itself():
    assert [i18n.language_name(x) for x in LANGS] == ["日本語", "English", "Português", "简体中文", "한국어",
                                                   "Tiếng Việt"]


# -- fonts ------------------------------------------------------------------------


def _charset(path: str) -> set[int]:
    """Codepoints a font file covers, from fontconfig (face 0, as Kivy opens it)."""
    out = subprocess.run(["fc-query", "--index", "0", "--format", "%{charset}", path],
                         check=True, capture_output=True, text=True).stdout
    cps: set[int] = set()
    for part in out.split():
        lo, _, hi = part.partition("-")
        cps.update(range(int(lo, 16), int(hi or lo, 16) + 1))
    return cps


@pytest.mark.skipif(shutil.which("fc-query") is None, reason="fontconfig's fc-query is needed to read a font's charset")
def test_the_chosen_font_draws_every_character_of_its_language():
    from kiosk.screens import fonts

    chosen = fonts.choose_fonts(LANGS)
    assert all(chosen.values()), "install fonts-noto-cjk (or fonts-ipaexfont + fonts-dejavu-core + fonts-nanum)"
    for lang in LANGS:
        texts = list(i18n.messages(lang, SOURCE).values())
        texts += [f for forms in i18n.plural_messages(lang, SOURCE)[1].values() for f in forms]
        needed = {ord(c) for text in texts for c in text if not c.isspace()}
        missing = needed - _charset(chosen[lang].regular)
        assert not missing, (lang, chosen[lang].regular, "".join(sorted(map(chr, missing))))


@pytest.mark.skipif(shutil.which("fc-query") is None, reason="needs fc-query")
def test_the_icon_font_has_every_icon():
    from kiosk.screens import fonts
    from kiosk.screens.widgets import text

    icons = {text.ICON_OK, text.ICON_NO, text.ICON_WARN, text.ICON_INFO, text.ICON_BACK,
             text.ICON_UNKNOWN, text.ICON_WAIT, "●", "○"}
    assert {ord(c) for c in icons} <= _charset(fonts.ICON_FONT)


def test_font_choice_without_noto_cjk_keeps_korean_and_vietnamese_readable():
    """IPAexGothic alone has no Hangul and no Vietnamese letters: other fonts must step in."""
    from kiosk.screens import fonts

    installed = {"/usr/share/fonts/opentype/ipaexfont-gothic/ipaexg.ttf",
                 "/usr/share/fonts/truetype/nanum/NanumGothic.ttf",
                 "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"}
    chosen = fonts.choose_fonts(LANGS, exists=installed.__contains__)
    assert chosen["ja"].regular.endswith("ipaexg.ttf")
    assert chosen["ko"].regular.endswith("NanumGothic.ttf")
    assert chosen["vi"].regular.endswith("DejaVuSans.ttf")
    assert chosen["zh-Hans"] is None            # nothing installed draws simplified Chinese


def test_a_configured_font_comes_first_and_a_known_one_keeps_its_limits():
    from kiosk.screens import fonts

    exists = {"/opt/site/Corporate.ttf", "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
              "/usr/share/fonts/opentype/ipaexfont-gothic/ipaexg.ttf"}.__contains__
    site = fonts.choose_fonts(LANGS, configured="/opt/site/Corporate.ttf", exists=exists)
    assert {f.regular for f in site.values()} == {"/opt/site/Corporate.ttf"}
    ipa = fonts.choose_fonts(LANGS, configured="/usr/share/fonts/opentype/ipaexfont-gothic/ipaexg.ttf",
                             exists=exists)
    assert ipa["ja"].regular.endswith("ipaexg.ttf")
    assert ipa["ko"].regular.endswith("NotoSansCJK-Regular.ttc")
