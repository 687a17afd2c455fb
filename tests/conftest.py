"""Test set-up. Every module of the installed `kiosk_testing` package (testing/ in the
checkout: the peers and fixtures the tests and benches share) is a pytest plugin.

The suite tests the installed wheel, never the source tree: `check_installed` stops the run
when `kiosk` would be imported from the checkout."""

import os
import pkgutil

# Kivy reads these at import time; set them before any test module imports it.
os.environ.setdefault("KIVY_NO_ARGS", "1")
os.environ.setdefault("KIVY_NO_FILELOG", "1")
os.environ.setdefault("KIVY_NO_CONSOLELOG", "1")
os.environ.setdefault("KIVY_LOG_MODE", "PYTHON")
os.environ.setdefault("GPIOZERO_PIN_FACTORY", "mock")
# Child Pythons (`python -m kiosk ...`) must not put their working directory, often the
# checkout, before the installed package on sys.path.
os.environ["PYTHONSAFEPATH"] = "1"
if not os.environ.get("DISPLAY"):
    os.environ.setdefault("SDL_VIDEODRIVER", "offscreen")

import kiosk_testing  # noqa: E402

pytest_plugins = sorted(f"kiosk_testing.{m.name}" for m in pkgutil.iter_modules(kiosk_testing.__path__))
