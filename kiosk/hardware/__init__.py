"""Hardware edges: card readers, LEDs, sounds, scanners. They implement kiosk.interfaces and never import screens."""
