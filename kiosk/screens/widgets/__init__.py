"""Building blocks shared by the screens, one module per kind of widget:

- text: FitMixin and Text (texts that shrink to fit their box), icon, escape, forget_fits
- buttons: KButton
- context: Context (what a screen draws with) and paint (a background that follows a widget)
- layout: Slot, ModalLayer and the whole-tree helpers (layout_now, walk_texts, set_font,
  layout_overflow)
- notices: Banner, Badge, Bar, CountdownBar
- language_bar: LanguageBar
- drawings: Spinner, CardArt, BarcodeArt

Import from the module a widget lives in; this package re-exports nothing.
"""
