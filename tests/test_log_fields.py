"""Every structured log call and audit record in the code names only fields that cannot
carry patron data: checked statically, so a rare path (a printer error, a staff action)
cannot slip a forbidden field name past the tests by never running in them."""

import ast
from pathlib import Path

import pytest

from kiosk.logs import check_field_name

KIOSK = Path(__file__).resolve().parent.parent / "kiosk"
# The log/audit calls, and the wrappers central IT's config code logs and audits through.
CALLS = {"log_event", "record", "Audit", "log_and_audit", "_record", "_audit_event"}
PARAMS = {"level", "failure"}   # log_event's / log_and_audit's own parameters, not fields


def field_names():
    for path in sorted(KIOSK.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                func = node.func
                name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
                if name in CALLS:
                    for kw in node.keywords:
                        if kw.arg and kw.arg not in PARAMS:
                            yield f"{path.relative_to(KIOSK)}:{node.lineno}", kw.arg


def test_the_scan_finds_the_calls():
    assert sum(1 for _ in field_names()) > 30


@pytest.mark.parametrize("where, field", list(field_names()))
def test_field_name_is_allowed(where, field):
    check_field_name(field)


@pytest.mark.parametrize("field", ["patron_id", "title", "pin", "cert_serial", "items", "birth_date", "name"])
def test_the_rule_refuses_patron_fields(field):
    with pytest.raises(ValueError):
        check_field_name(field)
