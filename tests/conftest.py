"""Test set-up. Every module in tests/support/ is a pytest plugin (fixtures by area)."""

import os
import pkgutil
from pathlib import Path

# Kivy reads these at import time; set them before any test module imports it.
os.environ.setdefault("KIVY_NO_ARGS", "1")
os.environ.setdefault("KIVY_NO_FILELOG", "1")
os.environ.setdefault("KIVY_NO_CONSOLELOG", "1")
os.environ.setdefault("KIVY_LOG_MODE", "PYTHON")
os.environ.setdefault("GPIOZERO_PIN_FACTORY", "mock")
if not os.environ.get("DISPLAY"):
    os.environ.setdefault("SDL_VIDEODRIVER", "offscreen")

_support = Path(__file__).parent / "support"
pytest_plugins = sorted(f"tests.support.{m.name}" for m in pkgutil.iter_modules([str(_support)]))
