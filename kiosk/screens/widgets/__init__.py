"""Building blocks shared by the screens (kiosk.screens.widgets.text for now)."""
