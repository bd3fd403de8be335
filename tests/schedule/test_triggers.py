"""The schedule on its own: pure triggers asked with explicit datetimes (no live scheduler, no
freezegun), plus the APScheduler behaviour the daemon relies on, checked through APScheduler's
own ``Job._get_run_times`` and ``run_coroutine_job``.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, time, timedelta
from types import SimpleNamespace

import pytest
from apscheduler.events import EVENT_JOB_EXECUTED, EVENT_JOB_MISSED
from apscheduler.executors.base import run_coroutine_job
from apscheduler.job import Job
from apscheduler.triggers.cron import CronTrigger
from kit import REPO

from guard.clock import EXCHANGE_TZ
from guard.config.loader import load_rules, load_rules_text
from guard.market.calendar import Board
from guard.market.holidays import build_calendar
from guard.schedule.scheduler import RehearsalClock
from guard.schedule.triggers import (
    ALL_BOARDS,
    CancelWindowTrigger,
    ShiftedTrigger,
    TradingDayTimesTrigger,
    guarded_boards,
    plan_jobs,
)

CAL = build_calendar()
ROOT = REPO
S30 = timedelta(seconds=30)


def t(day: str, hhmmss: str) -> datetime:
    """Exchange time: ``t("2026-11-23", "09:00:00")``."""
    return datetime.fromisoformat(f"{day}T{hhmmss}").replace(tzinfo=EXCHANGE_TZ)


MON, FRI, SAT = "2026-11-23", "2026-11-27", "2026-11-28"


def poll(interval: timedelta = S30, boards: tuple[Board, ...] = ALL_BOARDS) -> CancelWindowTrigger:
    return CancelWindowTrigger(interval, CAL, boards)


# ---- the poll trigger: every poll_every, only inside the union of cancel windows ------------


@pytest.mark.parametrize(
    ("previous", "now", "expected"),
    [
        # before the open: the first fire is the open itself
        (None, t(MON, "08:59:59"), t(MON, "09:00:00")),
        (None, t(MON, "06:00:00"), t(MON, "09:00:00")),
        # inside a window: now, then every 30 s
        (None, t(MON, "10:00:07"), t(MON, "10:00:07")),
        (t(MON, "10:00:00"), t(MON, "10:00:00.5"), t(MON, "10:00:30")),
        # 11:29:30 + 30 s = 11:30:00, the lunch break: the next fire is 13:00
        (t(MON, "11:29:30"), t(MON, "11:29:30"), t(MON, "13:00:00")),
        (None, t(MON, "11:30:00"), t(MON, "13:00:00")),
        (None, t(MON, "12:15:00"), t(MON, "13:00:00")),
        # 14:59:30 + 30 s = 15:00, UPCoM's close (exclusive): the next trading day's open
        (t(MON, "14:59:30"), t(MON, "14:59:30"), t("2026-11-24", "09:00:00")),
        (None, t(MON, "16:00:00"), t("2026-11-24", "09:00:00")),
        # Friday's close -> Monday; Saturday -> Monday
        (t(FRI, "14:59:30"), t(FRI, "14:59:30"), t("2026-11-30", "09:00:00")),
        (None, t(SAT, "10:00:00"), t("2026-11-30", "09:00:00")),
        # holidays 31 Aug - 2 Sep 2026 (Mon-Wed) are skipped: Friday 28 Aug -> Thursday 3 Sep
        (t("2026-08-28", "14:59:30"), t("2026-08-28", "14:59:30"), t("2026-09-03", "09:00:00")),
        (None, t("2026-09-02", "10:00:00"), t("2026-09-03", "09:00:00")),
    ],
)
def test_poll_fires_only_inside_cancel_windows(
    previous: datetime | None, now: datetime, expected: datetime
) -> None:
    assert poll().get_next_fire_time(previous, now) == expected


def test_poll_window_is_the_union_of_the_guarded_boards() -> None:
    # HOSE alone opens for cancels at 09:15 (ATO before) and shuts at 14:30 (ATC after).
    hose = poll(boards=(Board.HOSE,))
    assert hose.get_next_fire_time(None, t(MON, "09:00:00")) == t(MON, "09:15:00")
    assert hose.get_next_fire_time(t(MON, "14:29:30"), t(MON, "14:29:30")) == t(
        "2026-11-24", "09:15:00")
    # With UPCoM in the union the poll runs to 15:00 and starts at 09:00.
    both = poll(boards=(Board.HOSE, Board.UPCOM))
    assert both.get_next_fire_time(None, t(MON, "09:00:00")) == t(MON, "09:00:00")
    assert both.get_next_fire_time(t(MON, "14:29:30"), t(MON, "14:29:30")) == t(MON, "14:30:00")
    assert both.windows(t(MON, "00:00:00").date()) == [
        (t(MON, "09:00:00"), t(MON, "11:30:00")), (t(MON, "13:00:00"), t(MON, "15:00:00"))]
    assert both.windows(t(SAT, "00:00:00").date()) == []


def test_poll_every_interval_walks_a_whole_day_and_never_fires_in_a_banned_window() -> None:
    trigger = poll(timedelta(minutes=1))
    fires = []
    fire = trigger.get_next_fire_time(None, t(MON, "00:00:00"))
    while fire is not None and fire.date() == t(MON, "00:00:00").date():
        fires.append(fire)
        fire = trigger.get_next_fire_time(fire, fire)
    # 09:00-11:29 and 13:00-14:59, one a minute.
    assert len(fires) == 150 + 120
    assert fires[0] == t(MON, "09:00:00") and fires[-1] == t(MON, "14:59:00")
    assert not [f for f in fires if time(11, 30) <= f.time() < time(13, 0)]
    assert all(CAL.cancel_allowed(Board.UPCOM, f) for f in fires)
    assert fire == t("2026-11-24", "09:00:00")


def test_poll_resumes_from_now_after_a_stall_instead_of_replaying() -> None:
    # The host slept from 10:00:00 to 10:05:17: one fire now, not ten missed ones.
    assert poll().get_next_fire_time(t(MON, "10:00:00"), t(MON, "10:05:17")) == t(
        MON, "10:05:17")
    # A stall that ends in the lunch break waits for 13:00.
    assert poll().get_next_fire_time(t(MON, "11:00:00"), t(MON, "12:10:00")) == t(
        MON, "13:00:00")


def test_poll_rejects_naive_datetimes_and_bad_intervals() -> None:
    with pytest.raises(ValueError, match="aware"):
        poll().get_next_fire_time(None, datetime(2026, 11, 23, 10))
    with pytest.raises(ValueError, match="positive"):
        CancelWindowTrigger(timedelta(0), CAL)


def test_an_instant_in_another_zone_means_the_same_instant() -> None:
    utc = t(MON, "08:59:59").astimezone(UTC)
    assert poll().get_next_fire_time(None, utc) == t(MON, "09:00:00")


# ---- fixed-time triggers: pre-close and `at` ------------------------------------------------


def test_pre_close_fires_at_exactly_14_25_and_14_55_on_trading_days_only() -> None:
    trigger = TradingDayTimesTrigger([time(14, 25), time(14, 55)], CAL)
    assert trigger.get_next_fire_time(None, t(MON, "10:00:00")) == t(MON, "14:25:00")
    assert trigger.get_next_fire_time(None, t(MON, "14:25:00")) == t(MON, "14:25:00")
    assert trigger.get_next_fire_time(t(MON, "14:25:00"), t(MON, "14:25:00.01")) == t(
        MON, "14:55:00")
    assert trigger.get_next_fire_time(t(MON, "14:55:00"), t(MON, "14:55:00")) == t(
        "2026-11-24", "14:25:00")
    # Friday's last fire -> Monday, never the weekend.
    assert trigger.get_next_fire_time(t(FRI, "14:55:00"), t(FRI, "14:55:01")) == t(
        "2026-11-30", "14:25:00")
    assert trigger.get_next_fire_time(None, t(SAT, "14:25:00")) == t("2026-11-30", "14:25:00")
    # The National Day holidays (Mon 31 Aug - Wed 2 Sep 2026) have no pre-close sweep.
    assert trigger.get_next_fire_time(t("2026-08-28", "14:55:00"),
                                      t("2026-08-28", "14:55:00")) == t("2026-09-03", "14:25:00")
    assert trigger.get_next_fire_time(None, t("2026-09-02", "08:00:00")) == t(
        "2026-09-03", "14:25:00")


def test_an_operator_holiday_from_rules_yaml_is_skipped_too() -> None:
    cal = build_calendar([t("2026-11-24", "00:00:00").date()])  # Vietnam Cultural Day, if HOSE
    trigger = TradingDayTimesTrigger([time(14, 25)], cal)
    assert trigger.get_next_fire_time(t(MON, "14:25:00"), t(MON, "14:25:00")) == t(
        "2026-11-25", "14:25:00")
    assert CancelWindowTrigger(S30, cal).get_next_fire_time(None, t(MON, "15:00:00")) == t(
        "2026-11-25", "09:00:00")


def test_at_fires_at_11_25() -> None:
    trigger = TradingDayTimesTrigger([time(11, 25)], CAL)
    assert trigger.get_next_fire_time(None, t(MON, "09:00:00")) == t(MON, "11:25:00")
    assert trigger.get_next_fire_time(t(MON, "11:25:00"), t(MON, "11:25:00")) == t(
        "2026-11-24", "11:25:00")
    with pytest.raises(ValueError):
        TradingDayTimesTrigger([], CAL)


def test_a_fixed_time_missed_in_a_stall_is_reported_not_skipped() -> None:
    """Asleep from 14:00 to 14:40: the trigger hands back 14:25 (in the past) so that
    APScheduler reports it as missed, rather than silently moving on to tomorrow."""
    trigger = TradingDayTimesTrigger([time(14, 25)], CAL)
    assert trigger.get_next_fire_time(t("2026-11-20", "14:25:00"), t(MON, "14:40:00")) == t(
        MON, "14:25:00")
    # A fresh start after 14:25 is not a miss: the next one is tomorrow's.
    assert trigger.get_next_fire_time(None, t(MON, "14:40:00")) == t("2026-11-24", "14:25:00")


# ---- plan_jobs and guarded_boards on real rules files ---------------------------------------


def test_plan_jobs_for_the_shipped_rules_yaml() -> None:
    rules = load_rules(ROOT / "rules.yaml")
    jobs = {j.job_id: j for j in plan_jobs(rules, CAL)}
    assert list(jobs) == ["poll", "pre-close:pre-close-sweep", "at:lunch-sweep"]

    poll_job = jobs["poll"]
    assert not poll_job.critical and poll_job.misfire_grace_s == 30
    assert isinstance(poll_job.trigger, CancelWindowTrigger)
    assert poll_job.trigger.interval == S30 and poll_job.trigger.boards == ALL_BOARDS

    pre = jobs["pre-close:pre-close-sweep"]
    assert pre.critical and isinstance(pre.trigger, TradingDayTimesTrigger)
    # 5 minutes before 14:30 (HOSE, HNX, derivatives) and before 15:00 (UPCoM).
    assert pre.trigger.times == (time(14, 25), time(14, 55))
    # A late pre-close sweep still helps until the cutoff: it may run up to its lead late.
    assert pre.misfire_grace_s == 300

    lunch = jobs["at:lunch-sweep"]
    assert lunch.critical and lunch.trigger.times == (time(11, 25),)

    fires = sorted(f for j in jobs.values() if j.critical
                   for f in [j.trigger.get_next_fire_time(None, t(MON, "09:00:00"))])
    assert fires == [t(MON, "11:25:00"), t(MON, "14:25:00")]


RULES = """
version: 1
accounts: ["0001234"]
poll_every: 10s
rules:
  - name: stale-hose
    max_age: 15m
    match: {{boards: [{a}]}}
  - name: close
    before_close: 10m
    match: {{boards: [{b}]}}
"""


def test_guarded_boards_and_plan_follow_the_rules_boards() -> None:
    rules = load_rules_text(RULES.format(a="HOSE", b="UPCOM"), "rules.yaml")
    assert guarded_boards(rules) == (Board.HOSE, Board.UPCOM)
    jobs = {j.job_id: j for j in plan_jobs(rules, CAL)}
    assert jobs["poll"].trigger.boards == (Board.HOSE, Board.UPCOM)
    assert jobs["poll"].trigger.interval == timedelta(seconds=10)
    assert jobs["poll"].misfire_grace_s == 10
    assert jobs["pre-close:close"].trigger.times == (time(14, 50),)  # UPCoM only: 15:00 - 10m
    assert jobs["pre-close:close"].misfire_grace_s == 600

    hose_only = load_rules_text(RULES.format(a="HOSE", b="HOSE"), "rules.yaml")
    assert guarded_boards(hose_only) == (Board.HOSE,)
    assert {j.job_id: j for j in plan_jobs(hose_only, CAL)}["pre-close:close"].trigger.times == (
        time(14, 20),)
    # A rule with no `boards:` guards every board.
    assert guarded_boards(load_rules(ROOT / "rules.yaml")) == ALL_BOARDS


# ---- APScheduler semantics the daemon relies on ---------------------------------------------


def _job(trigger: object, next_run: datetime, grace: int = 30) -> Job:
    """A real APScheduler ``Job`` (as ``add_job`` builds it), without a running scheduler."""
    scheduler = SimpleNamespace(timezone=EXCHANGE_TZ)

    async def sweep() -> str:
        return "swept"

    job = Job(scheduler, id="j", func=sweep, trigger=trigger, executor="default", args=(),
              kwargs={}, name="j", misfire_grace_time=grace, coalesce=True, max_instances=1,
              next_run_time=next_run)
    job._jobstore_alias = "default"
    return job


def test_apscheduler_after_a_long_stall_runs_the_poll_once_not_every_missed_interval() -> None:
    """``_get_run_times`` is what the scheduler calls on waking: with our trigger a
    10-minute stall gives [the stale slot, now], and coalescing keeps only ``now``, which is
    within the grace time. A stock interval trigger would have 20 slots to coalesce."""
    job = _job(poll(), t(MON, "10:00:00"))
    now = t(MON, "10:10:00.2")
    run_times = job._get_run_times(now)
    assert run_times == [t(MON, "10:00:00"), now]
    assert job.trigger.get_next_fire_time(run_times[-1], now) == t(MON, "10:10:30.2")

    cron = _job(CronTrigger(second="*/30", timezone=EXCHANGE_TZ), t(MON, "10:00:00"))
    assert len(cron._get_run_times(now)) == 21


def test_apscheduler_reports_a_late_fixed_time_as_missed_and_runs_one_on_time() -> None:
    trigger = TradingDayTimesTrigger([time(14, 25)], CAL)
    late = _job(trigger, t(MON, "14:25:00"), grace=30)
    assert late._get_run_times(t(MON, "14:40:00")) == [t(MON, "14:25:00")]
    # The executor compares a slot with the real clock: 15 minutes late is beyond 30 s grace.
    now = datetime.now(EXCHANGE_TZ)
    events = asyncio.run(run_coroutine_job(late, "default", [now - timedelta(minutes=15)],
                                           "test"))
    assert [e.code for e in events] == [EVENT_JOB_MISSED]

    on_time = _job(ShiftedTrigger(trigger, timedelta(0)), now)
    events = asyncio.run(run_coroutine_job(on_time, "default", [now], "test"))
    assert [e.code for e in events] == [EVENT_JOB_EXECUTED] and events[0].retval == "swept"


# ---- the rehearsal clock: triggers shifted to wall time -------------------------------------


def test_shifted_trigger_fires_in_wall_time_when_the_market_clock_reaches_the_slot() -> None:
    offset = t(MON, "12:59:57") - t("2026-11-24", "00:06:00")  # market 11h06m03s behind wall
    shifted = ShiftedTrigger(poll(timedelta(seconds=1)), offset)
    wall_now = t("2026-11-24", "00:06:00")
    first = shifted.get_next_fire_time(None, wall_now)
    assert first == wall_now + timedelta(seconds=3)  # market 13:00:00, three real seconds away
    assert first + offset == t(MON, "13:00:00")
    second = shifted.get_next_fire_time(first, first)
    assert second + offset == t(MON, "13:00:01")
    assert str(shifted) == ("every 0:00:01 while cancels are allowed (rehearsal: market clock = "
                            "wall clock -39963s)")
    # No offset: identical to the inner trigger.
    plain = ShiftedTrigger(poll(), timedelta(0))
    assert plain.get_next_fire_time(None, t(MON, "11:45:00")) == t(MON, "13:00:00")


def test_rehearsal_clock_starts_at_the_given_instant_and_runs_with_the_wall_clock() -> None:
    wall = [t("2026-11-24", "00:06:00")]
    clock = RehearsalClock(t(MON, "10:00:00"), wall=lambda: wall[0])
    assert clock() == t(MON, "10:00:00")
    wall[0] += timedelta(seconds=2.5)
    assert clock() == t(MON, "10:00:02.5")
    assert clock().tzinfo is not None and clock().utcoffset() == timedelta(hours=7)
    with pytest.raises(ValueError):
        RehearsalClock(datetime(2026, 11, 23, 10))
