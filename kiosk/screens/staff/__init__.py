"""Staff screens (kiosk.screens.staff.register holds them all for now)."""
