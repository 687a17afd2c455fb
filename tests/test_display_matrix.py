"""The display matrix: every patron and staff screen on every display a kiosk really has,
in normal and large text, in a real Kivy window, checked from the widget tree.

For each screen (its busiest variant: banners, countdown, warnings), in Japanese and
English (idle and error in every language), on the Pi's 7" 800x480, 10" 1024x600 and
1280x800, a 1920x1080 monitor and the portrait 720x1280 (Touch Display 2) and
1080x1920, with each panel's real density:

- no text clipped or overflowing its box (laid out again here, unbounded, by Kivy),
- no two drawn widgets overlapping, everything inside the window and its container,
- every text at least MIN_TEXT_MM high, body text at least MIN_BODY_MM (Kivy's Metrics),
- every button at least MIN_TOUCH_MM on its shorter side,
- every Japanese line set by the kinsoku rules, and Kivy adding no break of its own,
- large text larger than normal text, text by text (by 5 % at least: sizes are whole pixels).

Screenshots of every cell go to test-artifacts/screens/matrix/<display>/<text size>/.
One window is reused for every size (kiosk_testing/kivy_app.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from kiosk.core.barcode_symbols import encode
from kiosk.screens import linebreak
from kiosk.screens.scanning import LoanRow
from kiosk.screens.widgets.buttons import KButton
from kiosk.screens.widgets.layout import ModalLayer, layout_overflow
from kiosk.screens.widgets.text import FitMixin
from kiosk_testing.kivy_app import ARTIFACTS

pytestmark = pytest.mark.ui

MIN_TEXT_MM = 3.0       # em height of the smallest print (captions, notes)
MIN_BODY_MM = 3.4       # em height of body text and everything larger
MIN_TOUCH_MM = 9.0      # shorter side of any button

# name, width, height, dots per inch of the real panel
DISPLAYS = [
    ("800x480", 800, 480, 131),          # Raspberry Pi Touch Display, 7"
    ("1024x600", 1024, 600, 170),        # 7"/10.1" HDMI panel
    ("1280x800", 1280, 800, 149),        # 10.1" HDMI panel
    ("1920x1080", 1920, 1080, 102),      # 21.5" monitor
    ("720x1280", 720, 1280, 210),        # Touch Display 2, portrait native
    ("1080x1920", 1080, 1920, 102),      # monitor mounted portrait
]
LANGS = ("ja", "en")
EVERY_LANG = ("ja", "en", "pt-BR", "zh-Hans", "ko", "vi")


def _rows() -> list[dict]:
    return [
        dict(txn_id="t1", item_id="10000001", state="ok", title="吾輩は猫である（新装版）", due="2025-04-15",
             refusal=None, offline=False),
        dict(txn_id="t2", item_id="10000007", state="refused", title="日本の野鳥図鑑", due="", refusal="on_hold",
             offline=False),
        dict(txn_id="t3", item_id="10000003", state="pending", title="", due="", refusal=None, offline=False),
        dict(txn_id="t4", item_id="10000004", state="unconfirmed", title="銀河鉄道の夜", due="", refusal=None,
             offline=False),
    ]


def patron(screen: str, lang: str, **extra) -> dict:
    m = dict(language=lang, countdown=None, card_reminder=False, test_pki=False, notice=None)
    m.update({
        "idle": dict(reader_ok=False, library_card=True, help=False, card_number=True, notice="sign_in_first"),
        "reading_card": {},
        "pin": dict(purpose="card", digits=2, max_digits=4, tries_left=2, notice="pin_wrong", countdown=12),
        "last_try": {},
        "authenticating": dict(stage="card"),
        "library_card": {},
        "card_number": dict(number="2000000123456789", max_digits=16, notice="not_a_library_card", countdown=12),
        "take_card": dict(test_pki=True, countdown=5),
        "scanning": dict(rows=_rows(), lent=1, pending=1, allowance=8, name="図書 花子", holds_ready=2,
                         offline=False, card_reminder=True, countdown=9, notice="not_an_item"),
        "finishing": dict(pending=1),
        "summary": dict(rows=_rows(), receipt_available=True, countdown=10, notice="not_confirmed", due="2025-04-15"),
        "thank_you": dict(lent=2, due="2025-04-15", several_dates=True),
        "error": dict(code="pin_locked", counter=True, library_card=True, countdown=3),
        "out_of_service": {},
    }[screen])
    m.update(extra)
    return m


def account(lang: str) -> dict:
    """My account at its busiest: a page of loans in every state, holds, a charge, a block."""
    loans = [dict(item_id=f"1000001{i}", title=t, due=f"2026-08-1{i}", overdue=i == 0, state=st, reason=r)
             for i, (t, st, r) in enumerate((("舞姫", "refused", "overdue"), ("三四郎", "refused", "renewal_limit"),
                                             ("風の又三郎（新装版）", "renewed", ""), ("たけくらべ", "refused", "on_hold"),
                                             ("智恵子抄", "", "")))]
    return dict(language=lang, loading=False, unavailable=False, loans=loans, loan_count=12,
                holds_ready=["檸檬"], holds_pending=["山月記", "高瀬舟"], fines=["300 延滞料"], fee_amount="300",
                currency="JPY", blocks=["excessive_outstanding_fines"], page=0, pages=3, renew_all="done",
                renew_all_result={"renewed": 1, "unrenewed": 3}, can_renew=False, why_not="blocked")


def returns(lang: str, **extra) -> dict:
    """The return desk with a book in each state, offline, a notice and the countdown."""
    rows = [dict(txn_id=f"r{i}", item_id=f"1000001{i}", title=t, state=st, queued=q)
            for i, (t, st, q) in enumerate((("智恵子抄", "hold_shelf", False), ("", "counter", False),
                                            ("舞姫", "returned", True), ("三四郎", "pending", False)))]
    m = dict(rows=rows, returned=2, notice="already_returned", language=lang, countdown=9, station=False,
             summary=False, receipt_available=True, printing=False, offline=True)
    m.update(extra)
    return m


STATUS = {"reader": "ok", "scanner": "wedge", "catalogue": "failing (3)", "catalogue_error": "tls",
          "outbox_pending": 2, "oldest_pending": "2025-04-01T10:15", "last_sync": "", "conflicts": 1,
          "config_version": "42", "app_version": "0.1.0", "disk_free_mb": 5120, "uptime_s": 7380}


def staff(screen: str, **extra) -> dict:
    m: dict = dict(countdown=None, notice=None)
    m.update({
        "staff_signin": dict(badge=False, digits=3, locked_for=None, notice="wrong_pin", countdown=9),
        "staff_menu": dict(staff_id="s01", out_of_service=True, offline_lending=False, registration=True,
                           notice="sync_started"),
        "staff_status": dict(status=STATUS),
        "staff_review": dict(conflicts=[
            dict(id="c1", item_id="10000007", patron_id="20000001", reason="refused", refusal="on_hold",
                 offline=True, recorded_at="2025-04-01T10:15"),
            dict(id="c2", item_id="10000009", patron_id="20000002", reason="refused", refusal="blocked",
                 offline=False, recorded_at="2025-04-02T16:40")]),
        "staff_selftest": dict(results={"lights": "running", "scanner": {"result": "scanned", "n": 8},
                                        "reader": {"result": "card", "kind": "my_number_card", "tries": 3}}),
        "staff_confirm": dict(action="shutdown"),
        "staff_register": dict(step="insert", digits=0, tries_left=None, patron_id=None, valid_until=None,
                               linked_before=False, error=None),
        "staff_counter": dict(staff_id="s01", last="identified"),
        "counter_identify": dict(step="insert", digits=0, tries_left=None, error=None, bars=None, symbology=None,
                                 keyboard=None, wipe_in=None, countdown=20),
    }[screen])
    m.update(extra)
    return m


@dataclass(frozen=True)
class Cell:
    name: str           # screenshot and report name
    screen: str
    model: dict
    staff: bool = False


def cells(lang: str) -> list[Cell]:
    """Every screen of the matrix in `lang`: patron, the library-card password, staff."""
    out = [Cell(s, s, patron(s, lang)) for s in (
        "idle", "reading_card", "pin", "last_try", "authenticating", "library_card", "card_number", "take_card",
        "scanning",
        "finishing", "summary", "thank_you", "error", "out_of_service")]
    # Before the first book: where to scan (a drawing) and cancel, in the list's room.
    out.append(Cell("scanning_empty", "scanning", patron("scanning", lang, rows=[], lent=0, pending=0)))
    out.append(Cell("pin_library", "pin", patron("pin", lang, purpose="library", digits=6, max_digits=16,
                                                 tries_left=None, notice="pin_incomplete")))
    out += [Cell(s, s, staff(s), True) for s in (
        "staff_signin", "staff_menu", "staff_status", "staff_review", "staff_selftest", "staff_confirm")]
    out.append(Cell("staff_signin_locked", "staff_signin", staff("staff_signin", notice="locked", locked_for=840,
                                                                 digits=0, countdown=None), True))
    for step, extra in (("insert", {}), ("pin", dict(digits=2, tries_left=2, notice="pin_wrong")),
                        ("last_try", dict(tries_left=1)), ("pin2", dict(digits=4, tries_left=3)),
                        ("scan", dict(notice="not_a_library_card")),
                        ("confirm", dict(patron_id="20000003", valid_until="2030-03-31", linked_before=True,
                                         countdown=12, patron_name="Maria Fernanda da Silva Oliveira")),
                        ("done", dict(patron_id="20000003")), ("error", dict(error="second_pin_locked"))):
        out.append(Cell(f"staff_register_{step}", "staff_register", staff("staff_register", step=step, **extra),
                        True))
    out += [Cell("account", "account", account(lang)), Cell("returns", "returns", returns(lang)),
            Cell("returns_summary", "returns", returns(lang, summary=True, countdown=None)),
            Cell("staff_counter", "staff_counter", staff("staff_counter"), True)]
    for step, extra in (("pin", dict(digits=2, tries_left=2, error="pin_wrong")),
                        ("identified", dict(bars=list(encode("20000003").widths), symbology="nw7",
                                            keyboard="typed", wipe_in=8)),
                        ("error", dict(error="not_linked"))):
        out.append(Cell(f"counter_identify_{step}", "counter_identify",
                        staff("counter_identify", step=step, **extra), True))
    return out


def other_language_cells(lang: str) -> list[Cell]:
    return [Cell("idle", "idle", patron("idle", lang)), Cell("error", "error", patron("error", lang))]


# -- what is checked --------------------------------------------------------------------


def _mm(px: float) -> float:
    from kivy.metrics import Metrics

    return px * 25.4 / Metrics.dpi


def _hidden(w) -> bool:
    while w is not None:
        if w.opacity == 0:
            return True
        w = w.parent if w.parent is not w else None
    return False


def _rect(w) -> tuple[float, float, float, float]:
    x, y = w.to_window(w.x, w.y)
    return x, y, x + w.width, y + w.height


def _clip(w, rect):
    """`rect` cut to every ScrollView around `w` (what of it can be seen), or None."""
    from kivy.uix.scrollview import ScrollView

    x0, y0, x1, y1 = rect
    p = w.parent
    while p is not None and p is not p.parent:
        if isinstance(p, ScrollView):
            a, b, c, d = _rect(p)
            x0, y0, x1, y1 = max(x0, a), max(y0, b), min(x1, c), min(y1, d)
        p = p.parent
    return (x0, y0, x1, y1) if x1 - x0 > 1 and y1 - y0 > 1 else None


def _laid_out(label):
    """Kivy's own layout of the label's drawn text in its width with no height limit: the
    size it needs and its lines (the label itself drops lines that do not fit)."""
    core = label._label
    options = dict(core.options)
    for key in ("text_size", "text"):
        options.pop(key, None)
    fresh = type(core)(text=core.text, **options)
    fresh._text_size = (label.text_size[0], None)
    fresh.render()
    lines = ["".join(word.text for word in line.words) for line in fresh._cached_lines]
    return fresh._internal_size, lines


def problems_on(view, cell: Cell, size: tuple[int, int]) -> tuple[list[str], dict[str, float]]:
    """Every fault of the screen on show, and the font size of each text (for large vs normal)."""
    W, H = size
    theme = view.theme
    screen = view.screens[cell.screen]
    faults = [f"container: {p}" for p in layout_overflow(screen, size)]
    sizes: dict[str, float] = {}
    drawn = []
    for w in screen.walk(restrict=True):
        if w is screen or _hidden(w) or w.width <= 0 or w.height <= 0 or isinstance(w, ModalLayer):
            continue
        if isinstance(w, FitMixin) and w.text:
            label = f"{type(w).__name__}({w.text[:24]!r})"
            sizes[w.text] = min(sizes.get(w.text, 1e9), w.font_size)
            least = MIN_BODY_MM if w.base_size >= theme.font_body - 0.01 else MIN_TEXT_MM
            if _mm(w.font_size) < least - 1e-6:
                faults.append(f"too small: {label} {_mm(w.font_size):.2f} mm < {least} mm")
            if w.overflowing:
                faults.append(f"overflowing: {label}")
            if w.text_size[0] is not None:
                (need_w, need_h), lines = _laid_out(w)
                if need_h > w.height + 1 or need_w > w.width + 1:
                    faults.append(f"clipped: {label} needs {need_w:.0f}x{need_h:.0f} in {w.width:.0f}x{w.height:.0f}")
                elif len(w._label._cached_lines) < len(lines):
                    # Kivy drops the lines a box has no room for when it draws it.
                    faults.append(f"clipped: {label} draws {len(w._label._cached_lines)} of {len(lines)} lines")
                if linebreak.is_cjk(w.text):
                    faults += [f"kinsoku: {label} {v}" for v in linebreak.violations(lines)]
                    planned = (w.shown_text or w.text).count("\n") + 1
                    if len([x for x in lines]) > planned:
                        faults.append(f"Kivy broke a line itself: {label} {lines}")
        if isinstance(w, KButton):
            short = min(_mm(w.width), _mm(w.height))
            if short < MIN_TOUCH_MM - 1e-6:
                faults.append(f"touch target {w.ident!r} {short:.1f} mm < {MIN_TOUCH_MM} mm")
        if not w.children and not (isinstance(w, FitMixin) and not w.text and not isinstance(w, KButton)):
            rect = _clip(w, _rect(w))
            if rect is None:
                continue
            x0, y0, x1, y1 = rect
            if x0 < -1 or y0 < -1 or x1 > W + 1 or y1 > H + 1:
                faults.append(f"off screen: {type(w).__name__}({getattr(w, 'text', '')[:20]!r}) {rect}")
            drawn.append((w, rect))
    # A screen of books keeps a whole row in view at least: the newest book's outcome in
    # full, however many notices there are (standing ones sit with the words, not above it).
    books = getattr(screen, "scroll", None) if cell.screen == "account" else getattr(screen, "list", None)
    # (a row's words: its height less the padding above and below them)
    row = theme.touch * 1.3 if cell.screen == "account" else LoanRow.least_height(theme) - theme.pad * 0.6
    if books is not None:
        seen = _clip(books, _rect(books))
        height = 0 if seen is None else seen[3] - seen[1]
        if height < row - 1:
            faults.append(f"the book list shows {height:.0f} px before any scrolling, less than a row's {row:.0f}")
    for i, (a, ra) in enumerate(drawn):
        for b, rb in drawn[i + 1:]:
            dx = min(ra[2], rb[2]) - max(ra[0], rb[0])
            dy = min(ra[3], rb[3]) - max(ra[1], rb[1])
            if dx > 1 and dy > 1:
                faults.append(f"overlap: {type(a).__name__}({getattr(a, 'text', '')[:20]!r}) and "
                              f"{type(b).__name__}({getattr(b, 'text', '')[:20]!r}) by {dx:.0f}x{dy:.0f}")
    return faults, sizes


# -- the matrix ----------------------------------------------------------------------------


@pytest.mark.parametrize("display, width, height, dpi", DISPLAYS, ids=[d[0] for d in DISPLAYS])
def test_every_screen_reads_well_on_every_display(make_view, kivy_window, display, width, height, dpi):
    kivy_window.set_size(width, height, dpi)
    faults: list[str] = []
    font_sizes: dict[bool, dict[tuple, float]] = {False: {}, True: {}}
    for large in (False, True):
        for lang in EVERY_LANG:
            view, _ = make_view(large_text=large, default_language=lang, demo=True)
            assert (view.theme.width, view.theme.height, view.theme.dpi) == (width, height, dpi)
            for cell in cells(lang) if lang in LANGS else other_language_cells(lang):
                view.show(cell.screen, cell.model)
                kivy_window.settle()
                assert view.current == cell.screen
                found, sizes = problems_on(view, cell, (width, height))
                faults += [f"{display} {'large' if large else 'normal'} {lang} {cell.name}: {f}" for f in found]
                font_sizes[large].update({(lang, cell.name, text): s for text, s in sizes.items()})
                kivy_window.screenshot(ARTIFACTS / "matrix" / display / ("large" if large else "normal")
                                       / f"{lang}-{cell.name}.png", warm=0)
            kivy_window.Window.remove_widget(view)
            view.close()
    for key, normal in font_sizes[False].items():
        large_size = font_sizes[True].get(key)
        if large_size is not None and not large_size >= normal * 1.05:
            faults.append(f"{display} {key[0]} {key[1]}: large text not larger: {key[2][:24]!r} "
                          f"{normal:.0f} -> {large_size:.0f} px")
    report = ARTIFACTS / "matrix" / f"{display}-faults.txt"
    report.write_text("".join(f + "\n" for f in faults), encoding="utf-8")
    assert not faults, f"{len(faults)} faults (all in {report}):\n" + "\n".join(faults[:60])
