"""The demo ends with the day's report, in rules.yaml's ``alerts.language``, and its figures
agree with the day the demo just told."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from kit import REPO


def demo(tmp_path: Path, language: str | None) -> str:
    rules = (REPO / "rules.yaml").read_text(encoding="utf-8")
    if language:
        rules += f"\nalerts:\n  language: {language}\n"
    path = tmp_path / "rules.yaml"
    path.write_text(rules, encoding="utf-8")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SSI_", "NOTIFY_SOCKET", "WATCHDOG_"))}
    done = subprocess.run(
        [sys.executable, "-m", "guard", "demo", "--rules", str(path), "--state-dir",
         str(tmp_path / "state")], env=env, capture_output=True, text=True, timeout=120,
        check=False, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def told(out: str) -> tuple[str, str]:
    """The cash and margin the demo's DONE line says were released."""
    m = re.search(r"DONE .* ([\d,]+) VND released and ([\d,]+) VND of futures margin", out)
    assert m, out[-2000:]
    return m.group(1), m.group(2)


@pytest.mark.slow
def test_the_demo_ends_with_the_days_report_in_vietnamese(tmp_path: Path) -> None:
    out = demo(tmp_path, "vi")
    cash, margin = told(out)
    report = out[out.index("Báo cáo ssi-guard ngày 23/11/2026 (ngày giao dịch)"):]
    lines = report.splitlines()
    assert lines[1] == (f"Đã hủy 13 lệnh, giải phóng {cash.replace(',', '.')} ₫ và "
                        f"{margin.replace(',', '.')} ₫ ký quỹ phái sinh.")
    assert "Tài khoản 0001234: 6 lệnh hủy (đã hủy 5, hủy một phần 1); giải phóng" in report
    assert "  quy tắc stale-limit-orders: đã hủy 3, hủy một phần 1" in report
    assert "Số lần ngắt cầu dao: 0" in report
    assert "Số lần mất tín hiệu sống: 0" in report
    assert lines[-1].startswith("journal: ") and "ssi-guard report --day 2026-11-23" in lines[-1]


@pytest.mark.slow
def test_the_demo_ends_with_the_days_report_in_english_by_default(tmp_path: Path) -> None:
    out = demo(tmp_path, None)
    cash, margin = told(out)
    report = out[out.index("ssi-guard report for 2026-11-23 (exchange day)"):]
    assert report.splitlines()[1] == (
        f"Cancelled 13 orders, released {cash} VND and {margin} VND of futures margin.")
    assert "Account 0005678: 2 cancels (cancelled 2); released" in report
