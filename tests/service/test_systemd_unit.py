"""The shipped unit files (the plain unit, the template ``ssi-guard@.service`` and the panic
button ``ssi-guard-cancel-all@.service``):
systemd-analyze verify is silent, and the exposure score is <= 2.0. The template is the plain
unit with per-instance paths, nothing else. tests/e2e/systemd/ runs both under a real systemd.

systemd-analyze needs ExecStart's binary to exist, so the check runs on a copy whose ExecStart
points at this venv's ssi-guard; every other line is the shipped one. A machine without
systemd-analyze fails these tests (never skips): .ci/run installs Debian's ``systemd``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from kit import REPO

UNIT = REPO / "systemd" / "ssi-guard.service"
TEMPLATE = REPO / "systemd" / "ssi-guard@.service"
ANALYZE = shutil.which("systemd-analyze")


@pytest.fixture(params=["ssi-guard.service", "ssi-guard@.service",
                        "ssi-guard-cancel-all@.service"])
def unit_copy(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """A copy (the template as instance ``test``) whose ExecStart is this venv's ssi-guard."""
    assert ANALYZE is not None, "systemd-analyze is missing: apt-get install systemd"
    exe = Path(sys.executable).parent / "ssi-guard"
    assert exe.exists()
    name: str = request.param
    text = (REPO / "systemd" / name).read_text(encoding="utf-8")
    text, n = re.subn(r"^ExecStart=\S+", f"ExecStart={exe}", text, flags=re.MULTILINE)
    assert n == 1
    copy = tmp_path / name.replace("@.", "@test.")
    copy.write_text(text, encoding="utf-8")
    return copy


def test_verify_prints_nothing(unit_copy: Path) -> None:
    assert ANALYZE is not None
    proc = subprocess.run([ANALYZE, "verify", str(unit_copy)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "", f"systemd-analyze warned: {proc.stderr}"


def test_exposure_at_most_2(unit_copy: Path) -> None:
    assert ANALYZE is not None
    proc = subprocess.run([ANALYZE, "security", "--offline=yes", str(unit_copy)],
                          capture_output=True, text=True, timeout=60, check=False)
    match = re.search(r"Overall exposure level for ssi-guard(-cancel-all)?(@test)?\.service: "
                      r"(\d+\.\d+)",
                      proc.stdout)
    assert match, proc.stdout[-500:] + proc.stderr
    assert float(match.group(3)) <= 2.0


@pytest.mark.parametrize("unit", [UNIT, TEMPLATE], ids=lambda p: p.name)
def test_unit_keeps_secrets_out_and_hardening_in(unit: Path) -> None:
    text = unit.read_text(encoding="utf-8")
    for key in ("Type=notify", "WatchdogSec=", "Restart=on-failure", "DynamicUser=yes",
                "NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes",
                "PrivateTmp=yes", "PrivateDevices=yes", "StateDirectory=ssi-guard",
                "UMask=0077", "CapabilityBoundingSet=", "SystemCallFilter=@system-service",
                "LoadCredential=SSI_API_SECRET:", "LoadCredential=SSI_PRIVATE_KEY:"):
        assert key in text, key
    assert not re.search(r"^Environment=.*SSI_(API_SECRET|PRIVATE_KEY|OTP)", text, re.M)


def _directives(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]


def test_the_template_is_the_unit_with_per_instance_paths() -> None:
    """Instance NAME: /etc/ssi-guard/NAME/ rules and credentials, state ssi-guard/NAME; every
    other directive (hardening included) is the plain unit's, so the two cannot drift."""
    plain = _directives(UNIT.read_text(encoding="utf-8"))
    template = _directives(TEMPLATE.read_text(encoding="utf-8"))
    expected = [line.replace("/etc/ssi-guard/rules.yaml", "/etc/ssi-guard/%i/rules.yaml")
                .replace(":/etc/ssi-guard/credentials/", ":/etc/ssi-guard/%i/credentials/")
                .replace("StateDirectory=ssi-guard", "StateDirectory=ssi-guard/%i")
                .replace("FastConnect orders", "FastConnect orders (%i)")
                for line in plain]
    assert template == expected
    assert sum("%i/credentials/" in line for line in template) == 4
