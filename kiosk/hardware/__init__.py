"""Hardware edges: card readers, LEDs, sounds, scanners. They implement kiosk.core.interfaces and never import screens."""
