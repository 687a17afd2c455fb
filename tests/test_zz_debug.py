import pytest
from test_display_matrix import patron, _laid_out
pytestmark = pytest.mark.ui
def test_dbg(make_view, kivy_window):
    kivy_window.set_size(720, 1280, 210)
    view, _ = make_view(default_language="ja", demo=True, large_text=True)
    view.show("pin", patron("pin", "ja"))
    kivy_window.settle()
    w = view.find("delete")
    print("size", w.size, "ts", w.text_size, "fs", w.font_size, "base", w.base_size, "pad", w.padding, "lh", w.line_height, "over", w.overflowing)
    print("shown", repr(w.shown_text), "core", repr(w._label.text))
    print(_laid_out(w), w.texture_size)
    from kiosk.screens.widgets import text as T
    print("fits", [(k[1:], v) for k, v in T._FITS.items() if k[0] == w.text])
    for s in (33, 34, 36):
        print(s, w._measure(s, (w.width, None)))
    assert 0
