"""Barcode validation beyond item/patron: check digits, symbologies, and why a scan was rejected."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kiosk.config.load import load_config
from kiosk.config.schema import SCHEMA
from kiosk.core.barcodes import (
    CHECK_NAMES,
    CHECKS,
    BarcodeKind,
    BarcodeRules,
    Debouncer,
    Rejection,
    Symbology,
    check_digit_ok,
    is_book_ean,
    mark_partial,
    undoubled,
)

ITEM, PATRON, INVALID = BarcodeKind.ITEM, BarcodeKind.PATRON, BarcodeKind.INVALID


# -- check digits against published examples ------------------------------------------------

@pytest.mark.parametrize("scheme, data, check", [
    ("mod10w31", "978030640615", "7"),        # ISBN-13 978-0-306-40615-7
    ("mod10w31", "490123456789", "4"),        # the JAN example 4901234567894
    ("luhn", "7992739871", "3"),              # 79927398713
    ("luhn", "61248", "1"),                   # IBM modulus 10 example
    ("mod10w21", "1234", "4"),                # 4x2 + 3 + 2x2 + 1 = 16
    ("mod11", "030640615", "2"),              # ISBN-10 0-306-40615-2
    ("mod11", "0317847", "1"),                # ISSN 0317-8471
    ("mod11", "080442957", "X"),              # ISBN-10 0-8044-2957-X
    ("mod11w27", "13739", "1"),               # IBM modulus 11 example
    ("mod11w27", "1234567", "4"),             # HP RPG example
    ("7dr", "1234567", "5"),                  # 1234567 = 7 x 176366 + 5
    ("7dsr", "1234567", "2"),
    ("7dsr", "7", "7"),                       # remainder 0 gives 7, not 0
    ("mod43", "CODE39", "W"),                 # 12+24+13+14+3+9 = 75 = 43 + 32 -> W
])
def test_published_check_digits(scheme, data, check):
    assert CHECKS[scheme](data) == check
    assert check_digit_ok(scheme, data + check)
    assert not check_digit_ok(scheme, data + ("0" if check != "0" else "1"))


def test_nw7_modulus_16_counts_start_and_stop():
    assert CHECKS["mod16"]("A37859B") == "+"                # barcode-net.com example
    assert check_digit_ok("mod16", "37859+", framed="A37859+B")
    assert not check_digit_ok("mod16", "378590", framed="A378590B")
    assert not check_digit_ok("mod16", "37859+")            # scanner stripped the frame: cannot verify


@pytest.mark.parametrize("scheme, longest", [("mod10w31", 17), ("luhn", 17), ("mod11", 9)])
@given(data=st.text("0123456789", min_size=1, max_size=17), pos=st.integers(0, 16), delta=st.integers(1, 9))
def test_every_single_digit_error_is_caught(scheme, longest, data, pos, delta):
    data = data[:longest]           # modulus 11 holds up to ISBN-10's 9 data digits (weight 11 = 0)
    code = data + CHECKS[scheme](data)
    assert check_digit_ok(scheme, code)
    i = pos % len(data)
    wrong = data[:i] + str((int(data[i]) + delta) % 10) + data[i + 1:] + code[-1]
    assert not check_digit_ok(scheme, wrong)


@pytest.mark.parametrize("scheme", sorted(set(CHECKS) - {"mod16", "mod43"}))
@given(data=st.text(min_size=0, max_size=8))
def test_check_digits_never_raise_out_of_the_checker(scheme, data):
    assert check_digit_ok(scheme, data) in (True, False)


def test_schema_knows_every_check_scheme():
    assert SCHEMA["barcodes"]["item_check"].choices == CHECK_NAMES
    assert SCHEMA["barcodes"]["patron_check"].choices == CHECK_NAMES


# -- per-library rules ---------------------------------------------------------------------

def test_item_check_digit_per_library():
    rules = BarcodeRules(item_check="7dr", patron_check="luhn")
    assert rules.check("12345675").kind == ITEM              # 1234567 -> 5
    bad = rules.check("12345670")
    assert (bad.kind, bad.rejection, bad.code) == (INVALID, Rejection.BAD_CHECK_DIGIT, "12345670")
    assert rules.check("A12345675B").kind == ITEM            # NW-7 framing stripped first
    assert rules.check("20000006").kind == PATRON           # Luhn: 2 doubled is 4, 10 - 4 = 6
    assert rules.check("20000004").rejection == Rejection.BAD_CHECK_DIGIT


def test_mod16_items_keep_their_frame_for_the_check():
    rules = BarcodeRules(item_pattern=r"^3\d{4}[0-9\-$:/.+]$", item_check="mod16")
    assert rules.check("A37859+B") .kind == ITEM
    assert rules.check("A37859+B").code == "37859+"
    assert rules.check("A378590B").rejection == Rejection.BAD_CHECK_DIGIT


@pytest.mark.parametrize("raw, symbology", [
    ("A10000001B", Symbology.NW7),
    ("*10000001*", Symbology.CODE39),
    ("t100-0001", Symbology.CODE128),
    ("10000001", None),                      # digits alone could be any of them
])
def test_symbology_from_the_text(raw, symbology):
    assert BarcodeRules().symbology_of(raw) == symbology


def test_code39_asterisks_are_stripped():
    assert BarcodeRules().classify("*10000001*") == (ITEM, "10000001")


def test_only_the_librarys_symbologies_are_accepted():
    nw7_only = BarcodeRules(symbologies=("nw7",))
    assert nw7_only.check("A10000001B").kind == ITEM
    assert nw7_only.check("10000001").kind == ITEM           # the scanner may strip start/stop
    code39 = nw7_only.check("*10000001*")
    assert (code39.kind, code39.rejection, code39.symbology) == (INVALID, Rejection.SYMBOLOGY, Symbology.CODE39)
    no_nw7 = BarcodeRules(symbologies=("code128",))
    assert no_nw7.check("A10000001B").rejection == Rejection.SYMBOLOGY


def test_aim_identifiers_name_the_symbology():
    rules = BarcodeRules(aim_ids=True, symbologies=("nw7", "code128"))
    ok = rules.check("]F0A10000001B")
    assert (ok.kind, ok.code, ok.symbology) == (ITEM, "10000001", Symbology.NW7)
    assert rules.check("]C010000001").kind == ITEM
    assert rules.check("]A010000001").rejection == Rejection.SYMBOLOGY   # Code 39
    assert rules.check("]Q110000001").rejection == Rejection.SYMBOLOGY   # a QR code
    assert BarcodeRules().check("]F0A10000001B").kind == INVALID        # ids not expected: not stripped


# -- rejections the patron is told about -------------------------------------------------------

@pytest.mark.parametrize("raw, reason", [
    ("", Rejection.GARBAGE),
    ("1000\x1b0001", Rejection.GARBAGE),
    ("１００００００１", Rejection.GARBAGE),
    ("1" * 40, Rejection.GARBAGE),
    (mark_partial("10000"), Rejection.PARTIAL),
    (mark_partial("10000001"), Rejection.PARTIAL),            # complete-looking, but no Enter came
    ("1100000000000011", Rejection.DOUBLED),                 # every key read twice
    ("AA1100000000000011BB", Rejection.DOUBLED),
    ("1000000110000001", Rejection.DOUBLED),                 # Enter lost between two reads
    ("9780306406157", Rejection.ISBN),                       # the back cover, not the library label
    ("30000001", Rejection.UNKNOWN),
])
def test_rejection_reasons(raw, reason):
    scan = BarcodeRules().check(raw)
    assert scan.kind == INVALID and scan.rejection == reason
    if reason in (Rejection.GARBAGE, Rejection.PARTIAL):
        assert scan.code == ""                                # never echoed


def test_the_second_book_jan_row_is_not_an_item_with_a_tight_pattern():
    # 1920093016001 also fits the shipped default ^1\d{7,13}$: libraries should cap the length.
    assert BarcodeRules().check("1920093016001").kind == ITEM
    tight = BarcodeRules(item_pattern=r"^1\d{7,11}$").check("1920093016001")
    assert (tight.kind, tight.rejection, tight.symbology) == (INVALID, Rejection.ISBN, Symbology.EAN13)


def test_a_code_that_happens_to_look_doubled_is_still_accepted():
    assert BarcodeRules().check("11000000").kind == ITEM    # pairs 11 00 00 00, but a valid item
    assert BarcodeRules().check("1100").rejection == Rejection.UNKNOWN   # undoubled "10" is no item


def test_isbn_is_only_refused_when_the_library_does_not_use_it():
    rules = BarcodeRules(item_pattern=r"^97[89]\d{10}$", item_check="mod10w31")
    assert rules.check("9780306406157").kind == ITEM
    assert is_book_ean("9780306406157") and not is_book_ean("9780306406158")


def test_undoubled():
    assert undoubled("112233") == "123"
    assert undoubled("abcabc") == "abc"
    assert undoubled("1234") is None
    assert undoubled("11") is None                            # too short to say


@given(st.text(max_size=40))
def test_every_rejection_has_a_reason_and_acceptance_none(raw):
    scan = BarcodeRules(item_check="luhn").check(raw)
    assert (scan.rejection is None) == scan.ok
    assert BarcodeRules(item_check="luhn").classify(raw) == (scan.kind, scan.code)


# -- config ---------------------------------------------------------------------------------

def test_rules_from_config(tmp_path):
    site = tmp_path / "kiosk.toml"
    site.write_text("[loans]\nitem_pattern = '^T\\d{6}$'\nstrip_codabar = false\n"
                    "[barcodes]\nitem_check = '7dsr'\nsymbologies = ['code128']\naim_ids = true\n", encoding="utf-8")
    rules = BarcodeRules.from_config(load_config(site))
    assert rules == BarcodeRules(item_pattern=r"^T\d{6}$", strip_codabar=False, item_check="7dsr",
                                 symbologies=("code128",), aim_ids=True)
    assert BarcodeRules.from_config(load_config(None)) == BarcodeRules()


def test_unknown_symbology_is_a_config_error(tmp_path):
    from kiosk.config.load import ConfigError

    site = tmp_path / "kiosk.toml"
    site.write_text("[barcodes]\nsymbologies = ['nw7', 'qr']\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="barcodes.symbologies: unknown symbology 'qr'"):
        load_config(site)


# -- one label, one scan ------------------------------------------------------------------------

def test_debouncer_merges_rereads_of_one_label():
    d = Debouncer(window=1.0)
    assert d.accept("10000001", 0.0)
    assert not d.accept("10000001", 0.4)
    assert not d.accept("10000001", 1.2)       # the window slides while the label stays under the beam
    assert d.accept("10000002", 1.3)           # another book at once
    assert d.accept("10000001", 1.4)           # and back: a new scan
    assert d.accept("10000001", 2.5)           # after a pause: a new scan too


def test_debouncer_off():
    d = Debouncer(window=0.0)
    assert d.accept("1", 0.0) and d.accept("1", 0.0)
