"""``ssi-guard demo`` as a person runs it: one trading day on the embedded simulator, told as
text. Exit 0, well under a minute, and the day's story is all there."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from datetime import time as clock_time
from pathlib import Path

import pytest
from kit import REPO

ROOT = REPO
LINE = re.compile(r"^(\d\d):(\d\d):(\d\d)  (\S+)\s+(.*)$")


@pytest.mark.slow
def test_demo_tells_the_trading_day(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SSI_", "NOTIFY_SOCKET", "WATCHDOG_"))}
    state = tmp_path / "demo-state"  # does not exist yet: the demo creates it
    t0 = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "guard", "demo", "--rules", str(ROOT / "rules.yaml"),
         "--state-dir", str(state)],
        env=env, capture_output=True, text=True, timeout=60, check=False,
        stdin=subprocess.DEVNULL)
    took = time.monotonic() - t0
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert took < 60
    out = done.stdout
    assert done.stderr == ""

    # Human text, not JSON.
    assert not [x for x in out.splitlines() if x.lstrip().startswith(("{", "["))]
    story = []
    for line in out.splitlines():
        m = LINE.match(line)
        if m:
            hh, mm, ss, tag, text = m.groups()
            story.append((clock_time(int(hh), int(mm), int(ss)), tag, text))
    assert len(story) > 40
    tags = {tag for _, tag, _ in story}
    assert {"READY", "MARKET", "HELD", "MATCH", "CONFIRMED", "CASH", "SWEEP", "SHUT",
            "DONE"} <= tags, tags

    def lines(tag: str, start: clock_time = clock_time(0), end: clock_time = clock_time(23),
              has: str = "") -> list[str]:
        return [text for at, t, text in story if t == tag and start <= at < end and has in text]

    # The HOSE opening auction: stale SSI held before 09:15, cancelled at 09:15.
    assert lines("HELD", end=clock_time(9, 15), has="SSI")
    assert "HOSE in ATO: cancel banned" in lines("HELD", end=clock_time(9, 15), has="SSI")[0]
    assert lines("CONFIRMED", clock_time(9, 15), clock_time(9, 15, 1), has="SSI")
    # A stale order cancelled mid-morning, and the cash it held released.
    morning = lines("CONFIRMED", clock_time(9, 30), clock_time(11, 0))
    assert any("HPG" in x and "partially_cancelled 600" in x for x in morning), morning
    assert any("PVS" in x and "cancelled 400" in x for x in morning), morning
    assert lines("CASH", clock_time(9, 30), clock_time(11, 0), has="withdrawable +15,780,000")
    # The lunch sweep at 11:25, then nothing until 13:00; the order that went stale in the
    # break is cancelled at 13:00:00 sharp.
    assert lines("SWEEP", clock_time(11, 25), clock_time(11, 25, 1), has="at:lunch-sweep: ok")
    assert lines("SHUT", clock_time(11, 29), clock_time(11, 30), has="until 13:00:00")
    for tag in ("MATCH", "CONFIRMED", "CASH", "SWEEP", "HELD"):
        assert lines(tag, clock_time(11, 30), clock_time(13, 0)) == [], tag
    assert lines("CONFIRMED", clock_time(13, 0), clock_time(13, 0, 1), has="CEO")
    # A stale futures order (derivatives account, VN30F2612) cancelled in DER's continuous
    # trading, and the margin it held released: logged with no expected figure.
    assert [x for x in lines("CONFIRMED", clock_time(9, 17), clock_time(9, 18),
                             has="0005678 VN30F2612") if "cancelled 3 (CL" in x]
    assert lines("CASH", clock_time(9, 17), clock_time(9, 18),
                 has="0005678 futures margin released +69,462,000 VND")
    # The pre-close sweep at 14:25:00 (HOSE, and DER, which also closes at 14:30) and 14:55:00
    # (UPCoM): a futures order in the KRX code form is pulled before DER's ATC.
    assert lines("MATCH", clock_time(14, 25), clock_time(14, 25, 1),
                 has="pre-close-sweep (14:25:00 is 5m before HOSE ATC)")
    assert lines("MATCH", clock_time(14, 25), clock_time(14, 25, 1),
                 has="41I1FC000 #")[0].endswith("pre-close-sweep (14:25:00 is 5m before DER ATC)")
    assert lines("CONFIRMED", clock_time(14, 25), clock_time(14, 25, 1),
                 has="0005678 41I1FC000")
    assert lines("CASH", clock_time(14, 25), clock_time(14, 25, 1),
                 has="0005678 futures margin released +45,968,000 VND")
    assert lines("SWEEP", clock_time(14, 25), clock_time(14, 25, 1),
                 has="pre-close:pre-close-sweep: ok, 2 cancelled")
    assert lines("CONFIRMED", clock_time(14, 55), clock_time(14, 55, 1), has="BSR")
    assert lines("SHUT", clock_time(14, 59), has="until 2026-11-24 09:00:00")
    # Every confirmation, every release as expected, and the protected order untouched.
    assert len(lines("CONFIRMED")) == 13  # 11 equity, 2 futures
    cash = lines("CASH")
    margin = [x for x in cash if "futures margin" in x]
    assert len(cash) == 10 and len(margin) == 2 and not [x for x in cash if "MISMATCH" in x]
    [done_line] = lines("DONE")
    assert "13 cancels confirmed, 0 failed" in done_line
    assert "146,060,000 VND released" in done_line and "keep- order is still QU" in done_line
    assert "115,430,000 VND of futures margin" in done_line
    assert (state / "journal.sqlite3").exists()
