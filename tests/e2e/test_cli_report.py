"""``ssi-guard report`` as a subprocess after a real ``run --once`` on the simulator: the
command line reaches the report, in the language rules.yaml asks for."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from kit import ACCT, AT, STALE
from kit.sweep import rules_text

from guard.simulator.control import Simulator


def run(tmp_path: Path, sim: Simulator, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **sim.env(), "SSI_GUARD_STATE_DIR": str(tmp_path / "state")}
    return subprocess.run([sys.executable, "-m", "guard", *args], env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=60, check=False)


@pytest.mark.parametrize(("language", "expected"), [
    ("en", "Cancelled 2 orders"),
    ("vi", "Đã hủy 2 lệnh"),
])
def test_report_after_a_sweep_in_the_configured_language(
        sim: Simulator, tmp_path: Path, language: str, expected: str) -> None:
    sim.seed_order(ACCT, "SSI", age=STALE)
    sim.seed_order(ACCT, "VNM", "B", 62_000, age=STALE)
    rules = tmp_path / "rules.yaml"
    rules.write_text(rules_text() + f"alerts: {{language: {language}}}\n")
    once = run(tmp_path, sim, "run", "--once", "--rules", str(rules), "--at", AT)
    assert once.returncode == 0, once.stderr

    report = run(tmp_path, sim, "report", "--rules", str(rules), "--day", "2026-11-23")

    assert report.returncode == 0, report.stderr
    assert expected in report.stdout, report.stdout


def test_report_without_a_journal_is_exit_5_and_one_line(sim: Simulator, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(rules_text())
    done = run(tmp_path, sim, "report", "--rules", str(rules), "--day", "2026-11-23")
    assert done.returncode == 5
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


def test_a_bad_day_is_exit_1_naming_the_flag(sim: Simulator, tmp_path: Path) -> None:
    done = run(tmp_path, sim, "report", "--day", "2026-13-01")
    assert done.returncode == 1
    assert "--day" in done.stderr and "2026-13-01" in done.stderr
