"""The udev rules: well-formed, and each stable name is made for the right USB ids.

systemd 252's udevadm has no ``verify`` (it came in 253), so the rules are parsed here: every
line is comma-separated KEY op "value" pairs with keys and operators udev knows, and at least one
match and one assignment.
"""

from __future__ import annotations

import re

import pytest

from tests.deploy.tools import SYSTEMD_DIR

RULES = SYSTEMD_DIR / "99-kiosk-serial.rules"
PAIR = re.compile(r'\s*(?P<key>[A-Z_]+)(?:\{(?P<attr>[^}]+)\})?\s*(?P<op>==|!=|\+=|-=|:=|=)\s*'
                  r'"(?P<value>[^"]*)"\s*(?:,|$)')
MATCH_KEYS = {"ACTION", "DEVPATH", "KERNEL", "KERNELS", "NAME", "SYMLINK", "SUBSYSTEM",
              "SUBSYSTEMS", "DRIVER", "DRIVERS", "ATTR", "ATTRS", "ENV", "TAG", "TAGS",
              "TEST", "PROGRAM", "RESULT", "CONST", "SYSCTL"}
ASSIGN_KEYS = {"NAME", "SYMLINK", "OWNER", "GROUP", "MODE", "ATTR", "SYSCTL", "ENV", "TAG",
               "RUN", "LABEL", "GOTO", "IMPORT", "OPTIONS", "SECLABEL"}


def _rules() -> list[list[tuple[str, str | None, str, str]]]:
    rules = []
    for number, line in enumerate(RULES.read_text().splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        pairs, position = [], 0
        while position < len(line):
            match = PAIR.match(line, position)
            assert match, f"{RULES.name}:{number}: cannot parse from {line[position:]!r}"
            pairs.append((match["key"], match["attr"], match["op"], match["value"]))
            position = match.end()
        rules.append(pairs)
    return rules


def test_every_rule_is_well_formed() -> None:
    rules = _rules()
    assert rules
    for pairs in rules:
        for key, _attr, op, _value in pairs:
            known = MATCH_KEYS if op in ("==", "!=") else ASSIGN_KEYS
            assert key in known, f"{key}{op} is not a udev key for that operator"
        assert any(op in ("==", "!=") for _key, _attr, op, _value in pairs)
        assert any(op not in ("==", "!=") for _key, _attr, op, _value in pairs)


def _names_for(vendor: str, product: str) -> list[str]:
    names = []
    for pairs in _rules():
        attrs = {(attr, value) for key, attr, op, value in pairs if key == "ATTRS" and op == "=="}
        if {("idVendor", vendor), ("idProduct", product)} <= attrs:
            names += [value for key, _a, op, value in pairs if key == "SYMLINK" and op == "+="]
            assert ("GROUP", None, "=", "dialout") in pairs
            assert ("MODE", None, "=", "0660") in pairs
    return names


@pytest.mark.parametrize(("vendor", "product", "name"), [
    ("16d0", "0bd7", "kiosk-card"),          # Qibixx MDB-USB
    ("10c4", "ea60", "kiosk-fingerprint"),   # CP2102
    ("1a86", "7523", "kiosk-fingerprint"),   # CH340
])
def test_adapter_gets_its_stable_name(vendor: str, product: str, name: str) -> None:
    assert _names_for(vendor, product) == [name]
