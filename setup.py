"""Installable kiosk package. `pip install -e .[test]` for development."""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
version = {}
exec((HERE / "kiosk" / "__init__.py").read_text(encoding="utf-8"), version)

setup(
    name="library-kiosk",
    version=version["__version__"],
    description="Self-service library checkout kiosk with My Number Card (JPKI) sign-in",
    long_description=(HERE / "README.md").read_text(encoding="utf-8") if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["kiosk", "kiosk.*"]),
    include_package_data=True,
    package_data={"kiosk": ["locale/*/LC_MESSAGES/*.po", "locale/*/LC_MESSAGES/*.mo", "data/*",
                             "sync/catalogue_api.yaml"]},
    install_requires=[
        "kivy==2.3.1",
        "pyscard>=2.0",
        "cryptography>=42",
        "requests>=2.31",
        "tinydb>=4.8,<5",
        "gpiozero>=2.0",
        "jsonschema>=4.18",             # REST backend: answers checked against the OpenAPI contract
        "PyYAML>=6",
        "Babel>=2.12",                  # message catalogues (.po) and language names
    ],
    extras_require={
        # gpiozero's lgpio pin factory (Pi 5 and Pi 4). Pi 4 and older may use RPi.GPIO instead;
        # rpi-lgpio provides the RPi.GPIO import on a Pi 5 (only one of the two can be installed).
        "pi": ["lgpio>=0.2; platform_machine=='aarch64' or platform_machine=='armv7l'"],
        "scanner": ["evdev>=1.6", "pyserial>=3.5"],
        "printer": ["python-escpos[usb,serial]>=3.1", "Pillow>=10"],
        "test": [
            "pytest>=8",
            "hypothesis>=6.100",
            "pysip2==0.1.0",
            "openapi-core>=0.19",
            "pyserial>=3.5",
            "python-escpos[usb,serial]>=3.1",
            "Pillow>=10",
        ],
    },
    entry_points={"console_scripts": ["kiosk = kiosk.cli:main"]},
)
