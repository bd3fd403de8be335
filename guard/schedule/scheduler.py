"""The real scheduler: APScheduler 3.x's ``AsyncIOScheduler`` in exchange time, running the
jobs ``plan_jobs`` computed. Sweeps never overlap (``max_instances=1`` per job, and one lock
across jobs in the daemon); a missed job is an error event, never silence.

Rehearsals (``ssi-guard run --at ISO``) run the daemon on a ``RehearsalClock``: market time is
the wall clock plus a fixed offset, so it starts at ISO and advances in real time. APScheduler
keeps waking in wall time (``datetime.now()``); the driver shifts every trigger by the same
offset (``ShiftedTrigger``), so a job fires when the daemon's own market clock reaches its
time, and the sweep then evaluates the rules at that same market time. The offset is taken
against the wall clock, not ``time.monotonic``, precisely because APScheduler's "now" is the
wall clock: both sides then agree on every fire time.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    JobEvent,
    JobExecutionEvent,
)
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from guard.clock import EXCHANGE_TZ, Clock, system_clock
from guard.record.log import Log
from guard.schedule.triggers import JobSpec, ShiftedTrigger

__all__ = ["RehearsalClock", "SchedulerDriver"]


class RehearsalClock:
    """Market time that starts at ``start`` and advances with the wall clock."""

    def __init__(self, start: datetime, wall: Clock = system_clock) -> None:
        if start.tzinfo is None:
            raise ValueError("RehearsalClock needs an aware datetime")
        self._wall = wall
        self.offset: timedelta = start - wall()

    def __call__(self) -> datetime:
        return (self._wall() + self.offset).astimezone(EXCHANGE_TZ)


class SchedulerDriver:
    """Owns the ``AsyncIOScheduler``; must be started inside the running event loop."""

    def __init__(self, fire: Callable[[JobSpec], Awaitable[object]], log: Log,
                 on_missed: Callable[[JobSpec, datetime | None], None] | None = None,
                 offset: timedelta = timedelta(0)) -> None:
        self._fire = fire
        self._log = log
        self._on_missed = on_missed
        self.offset = offset  # market time minus wall time (non-zero only in a rehearsal)
        self._specs: dict[str, JobSpec] = {}
        self.scheduler = AsyncIOScheduler(
            timezone=EXCHANGE_TZ,
            job_defaults={"coalesce": True, "max_instances": 1},
        )
        self.scheduler.add_listener(
            self._on_event, EVENT_JOB_MISSED | EVENT_JOB_ERROR | EVENT_JOB_MAX_INSTANCES
        )

    def start(self, jobs: Sequence[JobSpec]) -> None:
        self.replace(jobs)
        self.scheduler.start()

    def replace(self, jobs: Sequence[JobSpec]) -> None:
        """Swap every job for ``jobs`` (after a reload)."""
        self.scheduler.remove_all_jobs()
        self._specs = {job.job_id: job for job in jobs}
        for job in jobs:
            trigger = job.trigger if not self.offset else ShiftedTrigger(job.trigger, self.offset)
            self.scheduler.add_job(
                self._fire, trigger=trigger, args=[job], id=job.job_id, name=job.job_id,
                misfire_grace_time=job.misfire_grace_s, replace_existing=True,
            )
            self._log.info("schedule.added", job=job.job_id, trigger=str(job.trigger),
                           misfire_grace_s=job.misfire_grace_s)

    def next_fire_times(self) -> dict[str, datetime]:
        """Each job's next fire, in market time."""
        return {job.id: job.next_run_time + self.offset for job in self.scheduler.get_jobs()
                if job.next_run_time is not None}

    def next_critical(self, now: datetime) -> tuple[str, datetime] | None:
        """The first critical job (pre-close, ``at``) due at or after ``now``, market time:
        its id and when."""
        for job_id, fire in sorted(self.next_fire_times().items(), key=lambda kv: kv[1]):
            spec = self._specs.get(job_id)
            if spec is not None and spec.critical and now <= fire:
                return job_id, fire
        return None

    def critical_due(self, now: datetime, within: timedelta) -> str | None:
        """The id of a critical job due in ``[now, now + within]``, market time, if any: a
        poll started now would spend the request budget that job needs full at its second
        (and hold the sweep lock it must wait for)."""
        due = self.next_critical(now)
        return due[0] if due is not None and due[1] <= now + within else None

    def pause(self) -> None:
        """Fire nothing more; a running job goes on."""
        if self.scheduler.running:
            self.scheduler.pause()

    def shutdown(self) -> None:
        """Stop the scheduler. Its asyncio executor CANCELS running coroutine jobs: the daemon
        runs each sweep in a task of its own and drains it before calling this."""
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)

    def _on_event(self, event: JobEvent) -> None:
        spec = self._specs.get(event.job_id)
        scheduled = getattr(event, "scheduled_run_time", None)
        if event.code == EVENT_JOB_MISSED:
            self._log.error("schedule.missed", job=event.job_id,
                            scheduled=scheduled.isoformat() if scheduled else None,
                            critical=bool(spec and spec.critical))
            if spec is not None and self._on_missed is not None:
                self._on_missed(spec, scheduled)
        elif event.code == EVENT_JOB_MAX_INSTANCES:
            # A poll overlapping its own slow previous run is routine; a fixed-time sweep
            # not starting is not.
            critical = bool(spec and spec.critical)
            (self._log.warning if critical else self._log.info)(
                "sweep.skipped", job=event.job_id, critical=critical,
                reason="the previous run of this job is still going")
        elif isinstance(event, JobExecutionEvent) and event.exception is not None:
            self._log.error("schedule.job_failed", job=event.job_id,
                            error=f"{type(event.exception).__name__}: {event.exception}")
