"""Build shim: the metadata lives in pyproject.toml. This file only adds one build step,
compiling each kiosk/locale/<lang>/LC_MESSAGES/kiosk.po into the .mo the wheel ships, so the
installed kiosk reads its texts with the standard library's gettext and never parses a .po."""

import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent


class build_py_with_catalogues(build_py):
    def run(self) -> None:
        super().run()
        sys.path.insert(0, str(HERE))       # build time only: the compiler lives in kiosk/i18n.py
        from kiosk.i18n import compile_catalogues

        compile_catalogues(HERE / "kiosk" / "locale", Path(self.build_lib) / "kiosk" / "locale")


setup(cmdclass={"build_py": build_py_with_catalogues})
