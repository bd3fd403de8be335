"""The long-running guard: sweeps on schedule, survives lost sessions, reloads on SIGHUP,
stops cleanly on SIGTERM, and tells systemd the truth about its health.

``Daemon`` holds the behaviour and is driven by a scheduler: APScheduler in production
(``run_daemon``), or the virtual clock of ``ssi-guard demo``. Both call ``Daemon.fire``.
The dead-man switch (heartbeat rules) is its own background loop, ``heartbeat_loop``: it
fires sweeps the moment a heartbeat goes stale, not on the scheduler's clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import signal
import time
from collections.abc import Callable, Coroutine
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import structlog
from apscheduler.triggers.base import BaseTrigger

from guard.clock import EXCHANGE_TZ, Clock, system_clock
from guard.config.loader import load_rules
from guard.errors import (
    BrokerError,
    BrokerUnavailable,
    ConfigError,
    GuardError,
    JournalError,
    ReauthRequired,
)
from guard.market.calendar import Board
from guard.market.holidays import build_calendar
from guard.record.log import Log
from guard.schedule.scheduler import RehearsalClock, SchedulerDriver
from guard.schedule.triggers import ALL_BOARDS, CancelWindowTrigger, JobSpec, plan_jobs
from guard.service.control import ControlServer, TryAgain
from guard.service.health import Health, write_status
from guard.service.notify import Notifier
from guard.service.panic import CancelAll, PanicResult, press
from guard.service.runtime import check_holiday_data
from guard.snapshot.fetch import pre_read, take_snapshot
from guard.snapshot.heartbeat import HeartbeatCheck, HeartbeatWatch
from guard.sweep import SweepContext, SweepReport, run_sweep

__all__ = ["Daemon", "run_daemon"]

T = TypeVar("T")

# No poll starts this close before a critical job (pre-close, ``at``): the request budget
# refills in about a second, and the critical sweep finds it full and the sweep lock free.
QUIET_BEFORE_CRITICAL = timedelta(seconds=3)
REAUTH_REPEAT_S = 300.0  # repeat the re-auth error every 5 minutes, not every poll
RECOVERY_PROBE_S = 5.0  # how often a degraded daemon asks the broker again
RECOVERY_TICK_S = 0.5  # how often it looks (locally, no request) for a new `ssi-guard login`
FAILURES_BEFORE_DEGRADED = 3
# Every book is read this long before a critical job, at the budget's lowest priority, and
# abandoned if still unfinished PRE_READ_STOP before it (the budget then refills before the
# second): the critical sweep estimates its breaker from these reads and starts each account
# as soon as its fresh book is in (guard.act.breaker).
PRE_READ_LEAD = timedelta(seconds=8)
PRE_READ_STOP = timedelta(seconds=2)
PRE_READ_TICK_S = 0.5  # how often the pre-read loop looks at the schedule (a reload moves it)
HEARTBEAT_TICK_S = 1.0  # heartbeat files are looked at least this often, whatever poll_every
HEARTBEAT_RESWEEP_S = 2.0  # while one is stale, sweep this often (orders placed meanwhile)


class OnDemand(BaseTrigger):  # type: ignore[misc]
    """The trigger of a sweep the daemon fires itself (the heartbeat loop): never scheduled,
    so it has no next fire time, and a missed-sweep report never looks for it."""

    def get_next_fire_time(self, previous_fire_time: datetime | None,
                           now: datetime) -> datetime | None:
        return None

    def __str__(self) -> str:
        return "on demand"


class Daemon:
    """Sweeps, health and lifecycle. ``fire`` is the one entry point schedulers call."""

    def __init__(
        self,
        ctx: SweepContext,
        rules_path: Path,
        *,
        notifier: Notifier | None = None,
        log: Log | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        recovery_probe_s: float = RECOVERY_PROBE_S,
        recovery_tick_s: float = RECOVERY_TICK_S,
        reauth_repeat_s: float = REAUTH_REPEAT_S,
        wall: Callable[[], float] = time.time,
        heartbeat_tick_s: float = HEARTBEAT_TICK_S,
        heartbeat_resweep_s: float = HEARTBEAT_RESWEEP_S,
    ) -> None:
        self.ctx = ctx
        self.rules_path = rules_path
        self.notifier = notifier or Notifier({})
        self.log = log or structlog.get_logger("guard")
        self.health = Health()
        self.jobs: list[JobSpec] = plan_jobs(ctx.rules, ctx.calendar)
        self.driver: SchedulerDriver | None = None
        self.reports: list[SweepReport] = []  # the last 50, for the demo and tests
        self.sweeps_run = 0
        self._monotonic = monotonic
        self._recovery_probe_s = recovery_probe_s
        self._recovery_tick_s = min(recovery_tick_s, recovery_probe_s)
        self._reauth_repeat_s = reauth_repeat_s
        self._sweep_lock = asyncio.Lock()
        self._serving = False  # start() is over: cancel-all may run
        self._stop = asyncio.Event()
        self._current: asyncio.Task[Any] | None = None
        self._sweeps: set[asyncio.Task[Any]] = set()
        self._reauth_logged = -math.inf
        self._failures = 0
        # What is wrong now, by kind; health is derived from these alone (see _derive).
        self._problems: dict[str, str] = {}
        self._idle_logged_until: datetime | None = None
        self._warned_years: set[int] = set()
        # The dead-man switch: staleness on the host's wall clock (``wall``), which a sweep
        # asks afresh through ``ctx.signals``; the grace of every heartbeat rule starts here.
        self.heartbeats = HeartbeatWatch(ctx.rules, log=self.log, wall=wall)
        ctx.signals = self.heartbeats.signals
        self._wall = wall
        self._heartbeat_tick_s = heartbeat_tick_s
        self._heartbeat_resweep_s = heartbeat_resweep_s
        self._heartbeat_wake = asyncio.Event()
        self._heartbeat_sweeps: set[asyncio.Task[SweepReport | None]] = set()
        self._heartbeat_swept = -math.inf  # monotonic, the last heartbeat sweep fired
        self._heartbeat_every = heartbeat_resweep_s  # the re-sweep interval now (backs off)
        self._heartbeat_banned = False  # every board of the stale rules was banned last look
        self._heartbeat_reopened = False  # ...and has opened since: a sweep is due at once

    # ---- health -------------------------------------------------------------------------

    def _set_health(self, **changes: Any) -> None:
        before = self.health
        self.health = self.health.with_(**changes)
        if self.driver is not None:
            self.health = self.health.with_(
                next_sweeps={
                    k: v.isoformat(timespec="seconds")
                    for k, v in self.driver.next_fire_times().items()
                }
            )
        with contextlib.suppress(OSError):
            write_status(self.ctx.state_dir, self.health, self.ctx.wall())
        self.notifier.status(self.health.one_line())
        if before.state != self.health.state:
            quiet = self.health.state in ("healthy", "stopping", "stopped")
            event = self.log.info if quiet else self.log.warning
            event(
                "health.changed",
                state=self.health.state,
                reason=self.health.reason,
                previous=before.state,
            )

    # Problems, in the order their reasons are shown. Each is set by what happened and
    # cleared only by what proves it gone, so no success elsewhere can hide it.
    PROBLEMS = ("reauth", "token", "broker", "journal", "accounts", "sweeps", "reload")

    def _problem(self, kind: str, reason: str | None) -> None:
        """Set (``reason``) or clear (None) one problem, and derive health from all of them."""
        if reason is None:
            self._problems.pop(kind, None)
        else:
            self._problems[kind] = reason
        self._derive()

    def _derive(self, **changes: Any) -> None:
        unsaved = self.ctx.broker.token_unsaved  # read afresh: the broker retries the save
        if unsaved:
            self._problems["token"] = f"session not saved: {unsaved}"
        else:
            self._problems.pop("token", None)
        if self.health.state in ("stopping", "stopped") and "state" not in changes:
            self._set_health(**changes)
            return
        reasons = [self._problems[k] for k in self.PROBLEMS if k in self._problems]
        if reasons:
            self._set_health(state="degraded", reason="; ".join(reasons), **changes)
        elif self.health.state != "starting":
            self._set_health(state="healthy", reason="", **changes)
        else:
            self._set_health(**changes)

    @property
    def needs_login(self) -> bool:
        return "reauth" in self._problems

    def _degrade_reauth(self, exc: ReauthRequired) -> None:
        now = self._monotonic()
        if now - self._reauth_logged >= self._reauth_repeat_s:
            self._reauth_logged = now
            self.log.error(
                "auth.reauth_required",
                reason=str(exc),
                action="run `ssi-guard login` on the host; the guard recovers by itself",
            )
        self._problem("reauth", f"re-authentication required: {exc}")

    def _check_holiday_data(self) -> None:
        check_holiday_data(self.ctx.calendar, self.ctx.clock(), self.log, self._warned_years)

    # ---- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Reconcile, probe the broker once, then tell systemd READY (healthy or degraded)."""
        self._check_holiday_data()
        self._report_missed_while_down()
        # Leave "starting": from here on, health is what the problems say.
        self.health = self.health.with_(state="healthy")
        try:
            await self._probe()
        except ReauthRequired as exc:
            self._degrade_reauth(exc)
        except BrokerError as exc:
            self.log.error("broker.unavailable", error=str(exc))
            self._problem("broker", f"broker unavailable: {exc}")
        else:
            self._derive(token_expires_at=self.ctx.broker.token_expires_at)
        self.log.info(
            "daemon.ready",
            state=self.health.state,
            reason=self.health.reason,
            dry_run=self.ctx.dry_run,
            accounts=list(self.ctx.rules.accounts),
            jobs=[j.job_id for j in self.jobs],
        )
        if not self.stopping:  # READY after STOPPING would tell systemd a lie
            self.notifier.ready(self.health.one_line())

    def _report_missed_while_down(self) -> None:
        """A critical sweep (pre-close, ``at``) due today while this guard was not running is
        an error event, like a miss APScheduler sees: a restarted scheduler only looks
        forward. Reported only if the guard swept earlier today, before that sweep was due
        (a first start in the afternoon missed nothing it was ever asked to do)."""
        now = self.ctx.clock().astimezone(EXCHANGE_TZ)
        day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        rows = self.ctx.journal.sweeps_since(day_start - timedelta(days=1))
        today = [(trigger, at.astimezone(EXCHANGE_TZ)) for trigger, at in rows]
        today = [(trigger, at) for trigger, at in today if at.date() == now.date()]
        if not today:
            return
        first = min(at for _, at in today)
        for job in self.jobs:
            if not job.critical:
                continue
            due = job.trigger.get_next_fire_time(None, day_start)
            while due is not None and due.date() == now.date() and due <= now:
                late = (now - due).total_seconds() > job.misfire_grace_s
                ran = any(trigger == job.job_id and at >= due for trigger, at in today)
                if late and not ran and first < due:
                    self.log.error("schedule.missed", job=job.job_id, critical=True,
                                   scheduled=due.isoformat(timespec="seconds"),
                                   reason="the guard was not running when it was due")
                due = job.trigger.get_next_fire_time(due, due)

    async def _probe(self) -> None:
        """One proof that the guard can do its job: a token, and every account's book.

        Every account is read, not the first: an account that cannot be read is not guarded,
        whatever its place in rules.yaml. If none can be read the broker is unavailable
        (raised); if some cannot, those are named in health."""
        await self.ctx.broker.ensure_session()
        if "reauth" in self._problems:
            # The session is back, whatever the books say next: sweeps resume, and a book
            # that cannot be read is a broker problem, not a reason to log in again.
            self._reauth_logged = -math.inf
            # When the new session ends, in exchange time (readable in the log).
            self.log.info("auth.recovered", session_valid_until=datetime.fromtimestamp(
                self.ctx.broker.token_expires_at, EXCHANGE_TZ).isoformat(timespec="seconds"))
            self._problems.pop("reauth", None)
            self._derive(token_expires_at=self.ctx.broker.token_expires_at)
        day = self.ctx.clock().astimezone(EXCHANGE_TZ).date()
        snapshot = await take_snapshot(self.ctx.broker, self.ctx.rules.accounts, day,
                                       self.ctx.clock, self.log)
        self._books_read(snapshot.failures)
        if snapshot.failures and not snapshot.books:
            raise BrokerUnavailable(snapshot.failures[0][1])  # the caller logs it
        self._derive()

    def _books_read(self, failures: tuple[tuple[str, str], ...]) -> None:
        """The broker and accounts problems that one read of every account's book proves:
        none read is the broker's problem; some unread are those accounts', by name."""
        self._problems.pop("broker", None)
        self._problems.pop("accounts", None)
        if failures and len(failures) == len(self.ctx.rules.accounts):
            self._problems["broker"] = f"broker unavailable: {failures[0][1]}"
        elif failures:
            named = ", ".join(f"{account} ({why})" for account, why in failures)
            self._problems["accounts"] = f"accounts not read: {named}"

    def serving(self) -> None:
        """Start-up is over: the operator's cancel-all may run from now on."""
        self._serving = True

    def request_stop(self) -> None:
        if not self._stop.is_set():
            self.log.info("daemon.stopping", running_sweep=self._current is not None)
            self.notifier.stopping()
            self._stop.set()
            self._heartbeat_wake.set()

    async def wait_stopped(self) -> None:
        await self._stop.wait()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    async def drain(self) -> None:
        """Let a running sweep finish its confirmation, within its own deadline plus a margin.

        A sweep that has sent cancels must get to record their outcomes: stopping half-way
        leaves intents for the next start to reconcile, which is safe but slower to report.
        """
        tasks = [t for t in self._sweeps if not t.done()]
        if not tasks:
            return
        bound = self.ctx.rules.limits.confirm_timeout.total_seconds() + 15
        self.log.info("daemon.draining", sweeps=len(tasks), bound_s=bound)
        _, pending = await asyncio.wait(tasks, timeout=bound)
        if pending:
            self.log.error("daemon.drain_timeout", seconds=bound,
                           action="open intents are reconciled on the next start")
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    def reload(self) -> bool:
        """SIGHUP: load rules.yaml again; an invalid file keeps the old rules."""
        try:
            rules = load_rules(self.rules_path)
        except ConfigError as exc:
            self.log.error(
                "rules.reload_failed",
                path=str(self.rules_path),
                problems=exc.messages,
                kept="previous rules",
            )
            first = exc.messages[0] if exc.messages else "invalid"
            more = f" (+{len(exc.messages) - 1} more)" if len(exc.messages) > 1 else ""
            self._problem("reload", f"rules reload failed, running on the previous rules: "
                                    f"{first}{more}")
            return False
        self.ctx.rules = rules
        self.ctx.calendar = build_calendar(rules.holidays)
        self.heartbeats.update_rules(rules)
        self._heartbeat_wake.set()  # the loop's next wake-up may have moved
        self.jobs = plan_jobs(rules, self.ctx.calendar)
        if self.driver is not None:
            self.driver.replace(self.jobs)
        self.log.info(
            "rules.reloaded",
            path=str(self.rules_path),
            rules=len(rules.rules),
            dry_run=self.ctx.dry_run,
            poll_every_s=rules.poll_every.total_seconds(),
            jobs=[j.job_id for j in self.jobs],
        )
        self._problem("reload", None)
        return True

    # ---- sweeps -------------------------------------------------------------------------

    async def fire(self, job: JobSpec) -> SweepReport | None:
        """Run the sweep ``job`` asks for, unless stopping, degraded, or another is running
        (a critical job waits for it; a poll is skipped).

        The sweep runs in a task the daemon owns, shielded from its caller: APScheduler's
        asyncio executor cancels the jobs it runs when it shuts down, and a sweep cancelled
        between sending cancels and recording their outcomes is exactly what SIGTERM must
        not do. ``drain`` waits for these tasks instead.
        """
        if self.stopping:
            return None
        if self.needs_login:
            self.log.debug("sweep.skipped", job=job.job_id, reason=self.health.reason)
            return None
        if self._sweep_lock.locked() and not job.critical:
            self.log.info("sweep.skipped", job=job.job_id, reason="another sweep is running")
            return None
        if not job.critical and self.driver is not None:
            due = self.driver.critical_due(self.ctx.clock(), QUIET_BEFORE_CRITICAL)
            if due is not None:
                self.log.info("sweep.skipped", job=job.job_id,
                              reason=f"{due} is due: its request budget is kept full")
                return None
        return await self._owned(self._locked_sweep(job), f"sweep:{job.job_id}")

    async def cancel_all(self, request: CancelAll, preview: bool) -> PanicResult:
        """The operator's ``cancel-all``, sent over the control socket: run at once, or as
        soon as the sweep already running ends, in a task the daemon owns (a client that
        hangs up, or SIGTERM, never cuts it between sending and recording). A daemon still
        starting or already stopping says ``TryAgain``: the client retries, and once this
        daemon is gone it takes the state directory itself."""
        if not self._serving or self.stopping:
            raise TryAgain("the daemon is " + ("stopping" if self.stopping else "starting"))
        if self.needs_login:
            raise ReauthRequired(f"the daemon cannot act: {self.health.reason}")
        return await self._owned(self._locked_cancel_all(request, preview), "sweep:cancel-all")

    async def _owned(self, work: Coroutine[Any, Any, T], name: str) -> T:
        """Run ``work`` in a task the daemon owns, shielded from the caller: ``drain`` waits
        for it, and a caller that is cancelled (APScheduler shutting down, a client hanging
        up) never cuts it between sending cancels and recording their outcomes."""
        task = asyncio.create_task(work, name=name)
        self._sweeps.add(task)
        task.add_done_callback(self._sweeps.discard)
        return await asyncio.shield(task)

    async def _locked_cancel_all(self, request: CancelAll, preview: bool) -> PanicResult:
        async with self._sweep_lock:
            if self.stopping:  # queued behind a sweep that SIGTERM is draining
                raise TryAgain("the daemon is stopping")
            self._current = asyncio.current_task()
            try:
                return await press(self.ctx, request, preview=preview)
            except ReauthRequired as exc:
                self._degrade_reauth(exc)
                raise
            finally:
                self._current = None

    async def _locked_sweep(self, job: JobSpec) -> SweepReport | None:
        async with self._sweep_lock:
            if self.stopping or self.needs_login:
                return None
            self._current = asyncio.current_task()
            try:
                return await self._sweep(job)
            finally:
                self._current = None

    async def _sweep(self, job: JobSpec) -> SweepReport | None:
        self._check_holiday_data()
        try:
            report = await run_sweep(self.ctx, job.job_id, critical=job.critical)
        except ReauthRequired as exc:
            self._degrade_reauth(exc)
            return None
        except JournalError as exc:
            # Nothing can be cancelled without a journal: degraded at once, not after three.
            self._failures += 1
            self.log.error("sweep.failed", job=job.job_id, error=str(exc),
                           consecutive=self._failures)
            self._problem("journal", f"journal unwritable: {exc}")
            return None
        except GuardError as exc:
            self._failures += 1
            self.log.error(
                "sweep.failed", job=job.job_id, error=str(exc), consecutive=self._failures
            )
            self._count_failure(str(exc))
            return None
        except Exception as exc:
            self._failures += 1
            self.log.exception("sweep.crashed", job=job.job_id, error=type(exc).__name__)
            self._count_failure(f"crashed ({type(exc).__name__})")
            return None
        self._failures = 0
        self.sweeps_run += 1
        self.reports.append(report)
        del self.reports[:-50]
        # Market time, like ``next_sweeps`` (the same as wall time except in a rehearsal).
        stamp = self.ctx.clock().isoformat(timespec="seconds")
        changes: dict[str, Any] = {
            "last_sweep_at": stamp,
            "last_sweep_result": report.result,
            "token_expires_at": self.ctx.broker.token_expires_at,
        }
        if report.complete:
            changes["last_ok_sweep_at"] = stamp
        # A sweep that returned a report proves the journal and ends a run of failures; what
        # it read of the books says the rest.
        for kind in ("journal", "sweeps"):
            self._problems.pop(kind, None)
        self._books_read(report.unread_accounts)
        self._derive(**changes)
        self._log_idle(job)
        return report

    def _count_failure(self, error: str) -> None:
        if self._failures >= FAILURES_BEFORE_DEGRADED:
            self._problem("sweeps", f"{self._failures} sweeps failed: {error}")

    def _log_idle(self, job: JobSpec) -> None:
        """Say once, not every poll, that the market is shut until the next window."""
        if job.job_id != "poll":
            return
        poll = next((j for j in self.jobs if j.job_id == "poll"), None)
        if poll is None:
            return
        now = self.ctx.clock()
        interval = self.ctx.rules.poll_every
        upcoming = poll.trigger.get_next_fire_time(now, now)
        idle = upcoming is not None and upcoming - now > interval + timedelta(seconds=1)
        if idle and self._idle_logged_until != upcoming:
            self._idle_logged_until = upcoming
            self.log.info(
                "market.closed",
                until=upcoming.isoformat(timespec="seconds"),
                reason="no guarded board accepts cancels until then",
            )

    # ---- background loops ---------------------------------------------------------------

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake at once on stop."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)

    async def watchdog_loop(self) -> None:
        """``WATCHDOG=1`` from the event loop itself: a hung loop stops pinging and systemd
        restarts the service."""
        interval = self.notifier.watchdog_interval_s
        if interval is None:
            return
        while not self.stopping:
            self.notifier.watchdog()
            await self._pause(interval)

    def _token_mtime(self) -> float:
        return self.ctx.broker.session_changed_at()

    async def pre_read_loop(self) -> None:
        """Read every book ``PRE_READ_LEAD`` before each critical job (pre-close, ``at``),
        once per fire time. Reads only: the critical sweep still decides every cancel from
        books read at or after its second; these reads only bound its breaker early."""
        done: datetime | None = None
        while not self.stopping:
            wait = PRE_READ_TICK_S
            due = None if self.driver is None else self.driver.next_critical(self.ctx.clock())
            if due is not None and due[1] != done:
                job_id, fire = due
                left = fire - self.ctx.clock()
                if PRE_READ_STOP < left <= PRE_READ_LEAD and not self.needs_login:
                    done = fire
                    await self._pre_read(job_id, (left - PRE_READ_STOP).total_seconds())
                    continue
                wait = max(0.0, min(wait, (left - PRE_READ_LEAD).total_seconds()))
            await self._pause(wait)

    async def _pre_read(self, job_id: str, within_s: float) -> None:
        ctx = self.ctx
        accounts = list(ctx.rules.accounts)
        day = ctx.clock().astimezone(EXCHANGE_TZ).date()
        async def reads() -> int:
            await ctx.broker.ensure_session()
            return await pre_read(ctx.broker, accounts, day, ctx.recent, self.log)

        try:
            read = await asyncio.wait_for(reads(), timeout=within_s)
        except TimeoutError:
            # The books already in keep their estimate; the others count as unknown, and the
            # sweep waits for their fresh reads before it lets anything start.
            self.log.warning("book.pre_read_slow", job=job_id, within_s=round(within_s, 3))
            return
        except GuardError as exc:  # a lost session too: the sweep itself says so
            self.log.warning("book.pre_read_failed", job=job_id, error=str(exc))
            return
        except Exception as exc:  # a bug must not end the loop: the sweep runs exact
            self.log.exception("book.pre_read_crashed", job=job_id, error=type(exc).__name__)
            return
        self.log.info("book.pre_read", job=job_id, accounts=read, of=len(accounts))

    async def recovery_loop(self) -> None:
        """While re-authentication is required, watch for a new login and resume by itself.

        ``ssi-guard login`` writes the token cache: that is looked for every
        ``recovery_tick_s`` (a ``stat``, no request), and proven with one probe as soon as it
        changes, so the guard is back within about a second of the login. Without a new
        login the broker is asked again only every ``recovery_probe_s``.
        """
        seen = self._token_mtime()
        last_probe = self._monotonic()
        while not self.stopping:
            await self._pause(self._recovery_tick_s)
            if self.stopping:
                return
            mtime = self._token_mtime()
            if not self.needs_login:
                seen = mtime
                continue
            due = self._monotonic() - last_probe >= self._recovery_probe_s
            if mtime == seen and not due:
                continue
            seen, last_probe = mtime, self._monotonic()
            try:
                await self._probe()  # clears the re-auth problem once the session is back
            except ReauthRequired as exc:
                self._degrade_reauth(exc)
            except BrokerError as exc:
                self.log.warning("auth.probe_failed", error=str(exc))
                if not self.needs_login:
                    self._problem("broker", f"broker unavailable: {exc}")
            except GuardError as exc:
                self.log.warning("auth.probe_failed", error=str(exc))

    async def heartbeat_loop(self) -> None:
        """The dead-man switch: look at every heartbeat file at least every
        ``heartbeat_tick_s``, and exactly when the next one can turn stale, and sweep.

        - A rule that goes stale fires a critical sweep at once (``heartbeat:<rule>``), so the
          first cancel leaves within a sweep's time of ``mtime + stale_after``.
        - While a rule stays stale it sweeps again every ``heartbeat_resweep_s`` (orders
          placed meanwhile are cancelled too), backing off to ``poll_every`` while the
          re-sweeps find nothing to cancel, unless a sweep is running, and only while some
          board of the stale rules accepts cancels: in a banned window the first sweep logged
          the holds, and one sweep at the instant the window ends (read off the calendar)
          cancels them.
        A heartbeat sweep is a normal sweep: protect, dry run, the pause file and the breaker
        apply.
        """
        while not self.stopping:
            self._heartbeat_wake.clear()
            try:
                check = self.heartbeats.check()
                self._heartbeat_act(check)
                delay = self._heartbeat_delay(check)
            except Exception as exc:  # a dead switch must not die quietly: say so, go on
                self.log.exception("heartbeat.check_failed", error=type(exc).__name__)
                delay = self._heartbeat_tick_s
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._heartbeat_wake.wait(), timeout=delay)
        await asyncio.gather(*self._heartbeat_sweeps, return_exceptions=True)

    def _stale_boards(self, stale: tuple[str, ...]) -> tuple[Board, ...]:
        """The boards the stale rules guard (every board for a rule that names none)."""
        named: set[Board] = set()
        for rule in self.ctx.rules.rules:
            if rule.name not in stale:
                continue
            if rule.match.boards is None:
                return ALL_BOARDS
            named.update(Board(b) for b in rule.match.boards)
        return tuple(b for b in ALL_BOARDS if b in named)

    def _heartbeat_act(self, check: HeartbeatCheck) -> None:
        stale = tuple(check.stale)
        if dict(check.stale) != self.health.stale_heartbeats:  # for `ssi-guard status`
            self._set_health(stale_heartbeats=dict(check.stale))
        if not stale:
            self._heartbeat_banned = self._heartbeat_reopened = False
            self._heartbeat_every = self._heartbeat_resweep_s
            return
        allowed = self._cancels_allowed(stale)
        if self._heartbeat_banned and allowed:
            self._heartbeat_reopened = True  # a banned window just ended: its sweep is due
        self._heartbeat_banned = not allowed
        if check.newly_stale:
            self._heartbeat_every = self._heartbeat_resweep_s
            # Critical: it waits for a running sweep (which may have read the books before
            # the heartbeat went stale) rather than being skipped. In a banned window it
            # sends nothing and logs the holds.
            self._heartbeat_fire(",".join(check.newly_stale), critical=True)
            return
        if not allowed:
            return
        busy = self._sweep_lock.locked() or any(not t.done() for t in self._heartbeat_sweeps)
        due = self._monotonic() - self._heartbeat_swept >= self._heartbeat_every
        if not busy and (due or self._heartbeat_reopened):
            self._heartbeat_fire(",".join(stale), critical=False)

    def _cancels_allowed(self, stale: tuple[str, ...]) -> bool:
        now = self.ctx.clock()
        return any(self.ctx.calendar.cancel_allowed(b, now) for b in self._stale_boards(stale))

    def _heartbeat_fire(self, rules: str, *, critical: bool) -> None:
        self._heartbeat_swept = self._monotonic()
        self._heartbeat_reopened = False
        job = JobSpec(f"heartbeat:{rules}", OnDemand(), misfire_grace_s=0, critical=critical)
        task = asyncio.create_task(self.fire(job), name=f"heartbeat:{rules}")
        self._heartbeat_sweeps.add(task)
        task.add_done_callback(self._heartbeat_sweeps.discard)
        task.add_done_callback(self._heartbeat_swept_with)

    def _heartbeat_swept_with(self, task: asyncio.Task[SweepReport | None]) -> None:
        """Re-sweep every ``heartbeat_resweep_s`` while sweeps send cancels; after one that
        sent none (nothing to cancel, or a dry run, the pause file, the breaker), twice as
        long each time, up to ``poll_every``: a heartbeat that
        stays stale all day (a retired strategy, a mistyped path) costs what polls cost, not
        a sweep every 2 s of requests and journal."""
        report = None if task.cancelled() or task.exception() else task.result()
        if report is not None and report.sent:  # a dry run, the pause, the breaker: none
            self._heartbeat_every = self._heartbeat_resweep_s
        else:
            ceiling = max(self._heartbeat_resweep_s, self.ctx.rules.poll_every.total_seconds())
            self._heartbeat_every = min(2 * self._heartbeat_every, ceiling)

    def _heartbeat_delay(self, check: HeartbeatCheck) -> float:
        """Seconds until the next look: at most a tick, and exactly the next instant a rule
        can turn stale (wall clock) or a banned window of the stale rules' boards ends
        (market clock)."""
        delay = self._heartbeat_tick_s
        if check.next_change is not None:
            delay = min(delay, check.next_change - self._wall())
        if check.stale and self._heartbeat_banned:
            now = self.ctx.clock()
            window = CancelWindowTrigger(timedelta(seconds=1), self.ctx.calendar,
                                         self._stale_boards(tuple(check.stale)))
            opens = window.next_open(now)
            if opens is not None and opens > now:
                delay = min(delay, (opens - now).total_seconds())
        return max(0.0, delay)


async def _serve(rules_path: str, force_dry_run: bool, metrics_port: int | None = None,
                 start_at: datetime | None = None) -> int:
    from guard.service.ops import operations
    from guard.service.runtime import open_guard

    log = structlog.get_logger("guard")
    notifier = Notifier()
    clock: Clock = system_clock
    offset = timedelta(0)
    if start_at is not None:
        rehearsal = RehearsalClock(start_at)
        clock, offset = rehearsal, rehearsal.offset
    async with open_guard(rules_path, force_dry_run=force_dry_run, log=log, clock=clock) as ctx:
        daemon = Daemon(ctx, Path(rules_path), notifier=notifier, log=log)
        if start_at is not None:
            log.warning("daemon.rehearsal_clock", market_start=start_at.isoformat(),
                        offset_s=round(offset.total_seconds(), 3),
                        note="market time starts here and runs in real time; not for production")
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, daemon.request_stop)
        loop.add_signal_handler(signal.SIGINT, daemon.request_stop)
        loop.add_signal_handler(signal.SIGHUP, daemon.reload)
        daemon.driver = SchedulerDriver(daemon.fire, log, offset=offset)
        daemon.health = daemon.health.with_(market_offset_s=round(offset.total_seconds(), 3))
        async with operations(daemon, metrics_port):
            # Bound first, so that a cancel-all during start-up hears "try again" and waits,
            # rather than finding no socket and giving up.
            control = ControlServer(ctx.state_dir, daemon.cancel_all, log)
            await control.start()
            await daemon.start()
            daemon.serving()
            helpers = [
                asyncio.create_task(daemon.watchdog_loop()),
                asyncio.create_task(daemon.recovery_loop()),
                asyncio.create_task(daemon.heartbeat_loop()),
                asyncio.create_task(daemon.pre_read_loop()),
            ]
            if not daemon.stopping:
                daemon.driver.start(daemon.jobs)
                daemon._set_health()
            await daemon.wait_stopped()
            # From here a cancel-all hears "try again" (stopping) until the socket closes after
            # the drain, and then takes the state directory itself once this process is gone.
            # Fire nothing new, let the running sweep record its outcomes, and only then shut
            # the scheduler down: its asyncio executor cancels the jobs still running.
            daemon.driver.pause()
            await daemon.drain()
            daemon.driver.shutdown()
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            await control.stop()
            daemon._set_health(state="stopped", reason="")
            log.info("daemon.stopped")
    return 0


def run_daemon(rules_path: str, *, force_dry_run: bool = False, metrics_port: int | None = None,
               start_at: datetime | None = None) -> int:
    """``ssi-guard run``: serve until SIGTERM/SIGINT; exit 0 after a clean stop.

    ``start_at`` makes a rehearsal daemon: its market clock starts there and runs in real
    time (see ``guard.schedule.scheduler``).
    """
    return asyncio.run(_serve(rules_path, force_dry_run, metrics_port, start_at))
