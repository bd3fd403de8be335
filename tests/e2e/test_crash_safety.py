"""Crash safety: SIGKILL a real ``ssi-guard run --once`` subprocess at 20 seeded points of a
sweep, restarting it after each kill, and prove the journal and the exchange still agree.

Every run is the restart of the one killed before it: it must first reconcile what that run
left open (checked when its own intents appear: no older intent may still lack an outcome),
then it sweeps the new stale orders and is killed in turn. A last restart runs to the end.

Kill points (the phase, then how the simulator makes the kill land there):
- ``after_intent``: the batch intents are committed, no cancel answered yet. The batch DELETE
  is either slow (``on_wire``: the exchange applies it after the kill) or hangs and is never
  applied (``lost``).
- ``mid_batch``: 41..60 new stale orders in one account make 3 batches (or more, with what a
  ``lost`` kill left open); stacked latency on the batch DELETE makes them land 0.3 s apart,
  and the kill lands after 1 or 2 of them were answered.
- ``before_confirm``: every cancel accepted, no outcome written: the confirming book read is
  slow (``slow_book``: killed while it is on the wire) or cancels are held in WC (``paused``:
  killed after 1..3 confirming reads saw WC).

The seed is ``SSI_GUARD_CRASH_SEED`` (default below); it is printed with the summary and in
every failure message. Phases are reported as observed at the moment of the kill.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from kit import ACCT, AT, BATCH, BOOK, OTHER, SINGLE, STALE
from kit.sweep import rules_text

from guard.clock import EXCHANGE_TZ, FakeClock
from guard.model import TERMINAL_STATUSES
from guard.record.journal import Journal
from guard.simulator.control import Simulator
from guard.simulator.faults import Fault
from guard.simulator.server import RecordedRequest

SEED = int(os.environ.get("SSI_GUARD_CRASH_SEED", "20261123"))
KILLS = 20
SYMBOLS = ("SSI", "VNM", "FPT", "HPG", "MWG", "VCB")
PHASES = ("after_intent",) * 7 + ("mid_batch",) * 7 + ("before_confirm",) * 6
POLL_S = 0.005
FINAL = TERMINAL_STATUSES
PROVEN = frozenset({"cancelled", "partially_cancelled", "filled_first", "already_done"})


def _ro(path: Path, sql: str) -> list[tuple[Any, ...]] | None:
    """Read the live journal through a read-only URI; None while it cannot be read."""
    if not path.exists():
        return None
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=0.2)
        try:
            return list(db.execute(sql).fetchall())
        finally:
            db.close()
    except sqlite3.Error:
        return None


def _count(path: Path, sql: str) -> int:
    rows = _ro(path, sql)
    return int(rows[0][0]) if rows else 0


def _is_cancel(r: RecordedRequest) -> bool:
    return r.method == "DELETE" and r.path in (BATCH, SINGLE)


def _cancelled_ids(r: RecordedRequest) -> list[str]:
    body = r.body if isinstance(r.body, dict) else {}
    if r.path == BATCH:
        return [str(i.get("orderId")) for i in body.get("orders", []) if isinstance(i, dict)]
    return [str(body.get("orderId"))]


@dataclass
class Kill:
    planned: str
    variant: str
    orders: int
    observed: str = ""
    batches: int = 0  # batches whose intents the killed run had committed
    answered: int = 0  # of its cancel requests, answered by the exchange at the kill
    at: float = 0.0  # monotonic time of the kill
    on_wire: frozenset[str] = frozenset()  # orders in cancels the exchange may still apply


class Rig:
    """One simulator, one state directory, and the guard as a subprocess."""

    def __init__(self, sim: Simulator, tmp: Path) -> None:
        self.sim = sim
        self.journal = tmp / "state" / "journal.sqlite3"
        rules = tmp / "rules.yaml"
        rules.write_text(rules_text(confirm_timeout="5s"))
        self.cmd = [sys.executable, "-m", "guard", "run", "--once", "--rules", str(rules),
                    "--at", AT, "--log-format", "json"]
        self.env = {**os.environ, **sim.env(), "SSI_GUARD_STATE_DIR": str(tmp / "state")}
        self.logs = tmp / "logs"
        self.logs.mkdir()
        self.runs = 0

    def seed(self, rng: random.Random, n: int, accounts: tuple[str, ...]) -> None:
        for _ in range(n):
            account, symbol = rng.choice(accounts), rng.choice(SYMBOLS)
            self.sim.seed_order(account, symbol, "B", self.sim.exchange.symbols[symbol].ref_price,
                                100 * rng.randint(1, 9), age=STALE)

    @contextlib.contextmanager
    def start(self) -> Iterator[subprocess.Popen[bytes]]:
        """The guard in the background; killed and reaped whatever happens."""
        self.runs += 1
        err = (self.logs / f"run{self.runs}.log").open("wb")
        proc = subprocess.Popen(self.cmd, env=self.env, stdout=subprocess.DEVNULL, stderr=err)
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
            err.close()

    def log_tail(self) -> str:
        return (self.logs / f"run{self.runs}.log").read_text(errors="replace")[-3000:]

    def wait(self, proc: subprocess.Popen[bytes], what: str, cond: Callable[[], bool],
             timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            assert proc.poll() is None, (f"seed {SEED}: the guard exited ({proc.returncode}) "
                                         f"before {what}\n{self.log_tail()}")
            assert time.monotonic() < deadline, f"seed {SEED}: timed out waiting for {what}"
            time.sleep(POLL_S)

    def intents(self) -> int:
        return _count(self.journal, "SELECT COUNT(*) FROM intents")


def _kill_round(rig: Rig, rng: random.Random, planned: str) -> Kill:
    """Start the guard (the restart of the previous kill) and SIGKILL it at ``planned``."""
    sim = rig.sim
    base = rig.intents()
    base_outcomes = _count(rig.journal, "SELECT COUNT(*) FROM outcomes")
    start = len(sim.requests)

    def cancels() -> list[RecordedRequest]:
        return [r for r in sim.requests[start:] if _is_cancel(r)]

    def reads_after_cancels(pending: bool) -> int:
        """Book reads sent after every cancel of this run was answered (or still pending)."""
        reqs = sim.requests[start:]
        sent = [i for i, r in enumerate(reqs) if _is_cancel(r)]
        if not sent or any(reqs[i].status == 0 for i in sent):
            return 0
        return sum(r.method == "GET" and r.path == BOOK and (r.status == 0) == pending
                   for r in reqs[sent[-1] + 1:])

    if planned == "after_intent":
        kill = Kill(planned, rng.choice(("on_wire", "lost")), rng.randint(5, 40))
        rig.seed(rng, kill.orders, (ACCT, OTHER))
        if kill.variant == "on_wire":
            sim.inject(Fault("latency", "DELETE", BATCH, times=None, seconds=1.0))
        else:  # never applied, never answered
            sim.inject(Fault("hang", "DELETE", BATCH, times=None, seconds=1.5))
    elif planned == "mid_batch":
        kill = Kill(planned, f"after_{rng.choice((1, 2))}_of_3", rng.randint(41, 60))
        rig.seed(rng, kill.orders, (ACCT,))
        # Faults matching one request all fire: the 1st DELETE sleeps 0.9 s, 2nd 0.6, 3rd 0.3.
        for times in (1, 2, 3):
            sim.inject(Fault("latency", "DELETE", BATCH, times=times, seconds=0.3))
    else:
        kill = Kill(planned, rng.choice(("slow_book", "paused")), rng.randint(5, 40))
        rig.seed(rng, kill.orders, (ACCT, OTHER))
        # Slow enough that the pause or the book fault is in place before any cancel lands,
        # and armed only once the intents are written: the run's reconcile of the previous
        # kill must not be paused or slowed.
        sim.inject(Fault("latency", "DELETE", BATCH, times=None, seconds=0.3))

    with contextlib.ExitStack() as stack:
        proc = stack.enter_context(rig.start())
        rig.wait(proc, "intents", lambda: rig.intents() > base)
        if kill.variant == "paused":
            stack.enter_context(sim.paused_cancels())  # ends after the kill: WCs settle
        if planned == "after_intent":
            time.sleep(rng.uniform(0.0, 0.3))
        elif planned == "mid_batch":
            need = int(kill.variant.split("_")[1])
            rig.wait(proc, f"{need} answered batches",
                     lambda: sum(r.status != 0 for r in cancels()) >= need)
            time.sleep(rng.uniform(0.0, 0.15))
        elif kill.variant == "slow_book":
            sim.inject(Fault("latency", "GET", BOOK, times=None, seconds=2.0))
            rig.wait(proc, "a confirming book read on the wire",
                     lambda: reads_after_cancels(pending=True) > 0)
            time.sleep(rng.uniform(0.0, 0.5))
        else:
            reads = rng.randint(1, 3)
            rig.wait(proc, f"{reads} confirming reads",
                     lambda: reads_after_cancels(pending=False) >= reads)
            time.sleep(rng.uniform(0.0, 0.1))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        kill.at = time.monotonic()
        mine = cancels()
        kill.answered = sum(r.status != 0 for r in mine)
        kill.on_wire = frozenset(i for r in mine if r.status == 0 and r.fault != "hang"
                                 for i in _cancelled_ids(r))
        assert proc.returncode == -signal.SIGKILL, (
            f"seed {SEED}: {kill} finished before the kill\n{rig.log_tail()}")
    sim.faults.clear()

    kill.batches = _count(rig.journal, "SELECT COUNT(DISTINCT request_key) FROM intents "
                                       f"WHERE id > {base}")
    assert kill.batches > 0
    # The run reconciled the intents the previous kill left open before it wrote its own,
    # except those whose cancel may still have been on the wire (younger than the broker
    # timeout + margin): those stay open, and their orders get no new intent from this run.
    older_open = {r[0] for r in _ro(rig.journal,
                  f"SELECT i.order_id FROM intents i WHERE i.id <= {base} "
                  "AND NOT EXISTS (SELECT 1 FROM outcomes o WHERE o.intent_id = i.id)") or []}
    renewed = {r[0] for r in _ro(rig.journal,
               f"SELECT order_id FROM intents WHERE id > {base}") or []}
    assert not older_open & renewed, (
        f"seed {SEED}: {kill}: cancelled again while a dead run's cancel may be on the wire: "
        f"{sorted(older_open & renewed)}")
    # Each account's cancels are confirmed on their own, so one account may have outcomes
    # while another's batch is still on the wire; but no order whose cancel was on the wire
    # at the kill can have an outcome of its own run.
    own = {r[0] for r in _ro(rig.journal,
           f"SELECT order_id FROM outcomes WHERE id > {base_outcomes} "
           f"AND intent_id > {base}") or []}
    assert not own & kill.on_wire, (
        f"seed {SEED}: {kill}: an outcome for a cancel still on the wire at the kill: "
        f"{sorted(own & kill.on_wire)}")
    kill.observed = ("after_intent" if kill.answered == 0 else
                     "mid_batch" if kill.answered < kill.batches else "before_confirm")
    return kill


@pytest.mark.slow
def test_twenty_sigkills_never_cancel_twice_and_every_intent_gets_one_outcome(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    t0 = time.monotonic()
    rng = random.Random(SEED)
    clock = FakeClock(datetime(2026, 11, 23, 10, 0, tzinfo=EXCHANGE_TZ))
    sim = Simulator(clock=clock, key_bits=1024, cancel_delay=0.05, accounts=(ACCT, OTHER),
                    rate_limit=0)
    sim.start()
    kills: list[Kill] = []
    try:
        rig = Rig(sim, tmp_path)
        plan = list(PHASES)
        rng.shuffle(plan)
        for planned in plan:
            kills.append(_kill_round(rig, rng, planned))
        # The last restart runs to the end, once every dead run's request must have timed out
        # (broker timeout 10 s + 5 s margin): it reconciles every open intent from the book,
        # then cancels what is left.
        time.sleep(max(0.0, kills[-1].at + 16 - time.monotonic()))
        rig.runs += 1
        log = rig.logs / f"run{rig.runs}.log"
        with log.open("wb") as err:
            done = subprocess.run(rig.cmd, env=rig.env, stdout=subprocess.DEVNULL, stderr=err,
                                  timeout=60, check=False)
        assert done.returncode == 0, (f"seed {SEED}: last restart exit {done.returncode}\n"
                                      + log.read_text(errors="replace")[-3000:])
        # Let every request the dead guards left on the wire finish before judging.
        deadline = time.monotonic() + 10
        while any(r.status == 0 for r in sim.requests) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert all(r.status != 0 for r in sim.requests), "the simulator is still answering"
        sim.exchange.settle()
        requests = sim.requests
    finally:
        sim.stop()

    assert len(kills) == KILLS
    by_phase = Counter(k.observed for k in kills)
    for phase in ("after_intent", "mid_batch", "before_confirm"):
        assert by_phase[phase] >= 3, f"seed {SEED}: too few kills {phase}: {kills}"

    # 1. No order ever received two accepted cancels.
    accepted = Counter(sim.accepted_cancels())
    duplicates = {k: n for k, n in accepted.items() if n > 1}
    assert duplicates == {}, f"seed {SEED}: cancelled twice at the exchange: {duplicates}"

    journal = Journal(rig.journal)
    try:
        assert journal.integrity_ok(), f"seed {SEED}: PRAGMA integrity_check failed"
        per_intent = journal.query(
            "SELECT i.id, i.order_id, COUNT(o.id) FROM intents i "
            "LEFT JOIN outcomes o ON o.intent_id = i.id GROUP BY i.id")
        outcome_rows = journal.query("SELECT order_id, outcome, detail FROM outcomes ORDER BY id")
        selected = {r[0] for r in journal.query(
            "SELECT DISTINCT order_id FROM decisions WHERE action = 'cancel'")}
        orphans = journal.query("SELECT COUNT(*) FROM outcomes o WHERE NOT EXISTS "
                                "(SELECT 1 FROM intents i WHERE i.id = o.intent_id)")[0][0]
    finally:
        journal.close()

    # 2. Every intent has exactly one outcome, and every outcome an intent.
    bad = [(i, n) for i, _, n in per_intent if n != 1]
    assert bad == [], f"seed {SEED}: intents without exactly one outcome (id, n): {bad}"
    assert orphans == 0

    # 3. Every cancel that reached the exchange was journaled first: no order got more cancel
    #    items on the wire than it has intents.
    intents_per_order = Counter(order_id for _, order_id, _ in per_intent)
    sent_per_order = Counter(i for r in requests if _is_cancel(r) for i in _cancelled_ids(r))
    unjournaled = {o: n for o, n in sent_per_order.items() if n > intents_per_order[o]}
    assert unjournaled == {}, f"seed {SEED}: cancels sent without an intent: {unjournaled}"
    assert set(accepted) <= set(intents_per_order)

    # 4. Every order the rules selected is final at the exchange and has a recorded outcome.
    outcomes_of: dict[str, list[str]] = {}
    for order_id, kind, _ in outcome_rows:
        outcomes_of.setdefault(order_id, []).append(kind)
    assert len(selected) > 500, "too few orders selected: the test proves little"
    not_final = {o: sim.order(o).status for o in selected if sim.order(o).status not in FINAL}
    assert not_final == {}, f"seed {SEED}: selected orders not final: {not_final}"
    unrecorded = sorted(selected - set(outcomes_of))
    assert unrecorded == [], f"seed {SEED}: selected orders with no outcome: {unrecorded}"

    # 5. The journal's word agrees with the exchange: an order the exchange cancelled has an
    #    outcome proving it final, including a cancel a killed guard left on the wire that
    #    landed after the restart's first read of the book (its intent waited, not "failed").
    misrecorded = sorted(o for o in selected if not PROVEN & set(outcomes_of[o]))
    landed_late = {oid for oid, t in sim.exchange.accepted_cancels for k in kills
                   if oid in k.on_wire and t > k.at}
    assert misrecorded == [], (f"seed {SEED}: final at the exchange, but the journal never "
                               f"says so: {[(o, outcomes_of[o]) for o in misrecorded]}")

    kinds = Counter(kind for _, kind, _ in outcome_rows)
    reconciled = sum(detail.startswith("reconciled: ") for _, _, detail in outcome_rows)
    summary = (
        f"crash-safety seed={SEED}: {len(kills)} SIGKILLs "
        f"(after_intent={by_phase['after_intent']}, mid_batch={by_phase['mid_batch']}, "
        f"before_confirm={by_phase['before_confirm']}), {len(kills) + 1} restarts; "
        f"{len(per_intent)} intents, {len(outcome_rows)} outcomes ({reconciled} reconciled; "
        + ", ".join(f"{k}={n}" for k, n in sorted(kinds.items()))
        + f"); {len(selected)} orders selected, all final; duplicates: 0; open intents: 0; "
        f"integrity: ok; {len(landed_late)} cancels on the wire at a kill landed after it, "
        f"journal and exchange agree on every order; "
        f"{time.monotonic() - t0:.0f}s"
    )
    with capsys.disabled():
        print("\n" + summary)
        for i, k in enumerate(kills, 1):
            print(f"  kill {i:2}: {k.observed:<14} planned {k.planned}/{k.variant}, "
                  f"{k.orders} new orders, {k.answered}/{k.batches} batches answered")
