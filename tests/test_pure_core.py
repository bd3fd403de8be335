"""The pure core does no I/O: importing the engine and the calendar pulls in no HTTP client,
no database, no broker adapter and no journal, so none of them can be called from there."""

from __future__ import annotations

import json
import subprocess
import sys

PURE = ("guard.evaluate", "guard.market")
# Top-level packages and guard modules the pure core must never load, even indirectly.
FORBIDDEN = ("aiohttp", "httpx", "sqlite3", "_sqlite3", "ssi_sdk", "guard.broker",
             "guard.record", "guard.sweep", "guard.act", "guard.confirm", "guard.snapshot.fetch")

_PROBE = """
import importlib, json, pkgutil, sys
names = []
for top in {pure!r}:
    package = importlib.import_module(top)
    names.append(top)
    for info in pkgutil.walk_packages(package.__path__, top + "."):
        importlib.import_module(info.name)
        names.append(info.name)
print(json.dumps({{"imported": names, "loaded": sorted(sys.modules)}}))
"""


def test_evaluate_and_market_import_no_io_modules() -> None:
    """A fresh interpreter, so that what other tests imported cannot hide or fake a hit."""
    out = subprocess.run([sys.executable, "-c", _PROBE.format(pure=PURE)], check=True,
                         capture_output=True, text=True).stdout
    report = json.loads(out)
    assert {"guard.evaluate.engine", "guard.evaluate.kinds",
            "guard.market.calendar"} <= set(report["imported"])
    loaded = [m for m in report["loaded"]
              if any(m == bad or m.startswith(bad + ".") for bad in FORBIDDEN)]
    assert loaded == [], f"the pure core loads I/O modules: {loaded}"
