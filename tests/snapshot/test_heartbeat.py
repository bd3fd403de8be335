"""The heartbeat watch at exact instants: real files, real mtimes (os.utime), a fake wall
clock. Stale is ``wall_now >= mtime + stale_after``; a rule is not judged during its grace."""

from __future__ import annotations

from pathlib import Path

import pytest
from kit.clocks import touch
from kit.log import Recorder

from guard.config.schema import RulesFile
from guard.snapshot.heartbeat import HeartbeatWatch, heartbeat_rules

T0 = 1_795_000_000.0  # 2026-11-18 (a wall instant; only differences matter)


def rules(*beats: tuple[str, Path, str], extra: str = "") -> RulesFile:
    listed = [{"name": "stale", "max_age": "15m"}]
    listed += [{"name": name, "heartbeat": {"file": str(path), "stale_after": after},
                "match": {"client_request_ids": ["sa-*"]}} for name, path, after in beats]
    return RulesFile.model_validate({"version": 1, "accounts": ["0001234"], "rules": listed})


class Wall:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_fresh_one_microsecond_before_and_stale_at_the_instant(tmp_path: Path) -> None:
    hb = tmp_path / "hb"
    wall, log = Wall(T0), Recorder()
    watch = HeartbeatWatch(rules(("alive", hb, "10s")), log=log, wall=wall, monotonic=wall)
    mtime = touch(hb, T0 + 20)
    wall.now = mtime + 10 - 1e-6
    check = watch.check()
    assert check.stale == {} and check.newly_stale == ()
    assert check.next_change == mtime + 10  # the loop sleeps exactly until then
    wall.now = mtime + 10
    check = watch.check()
    assert list(check.stale) == ["alive"] and check.newly_stale == ("alive",)
    assert check.stale["alive"].startswith(f"heartbeat {hb} stale since ")
    assert "(last touched " in check.stale["alive"] and "stale_after 10s)" in check.stale["alive"]
    [lost] = log.named("heartbeat.lost")
    assert lost["rule"] == "alive" and lost["file"] == str(hb) and lost["age_s"] == 10.0
    assert lost["stale_since"].endswith("+07:00")
    # Still stale on the next look: not lost again, not newly stale.
    wall.now += 5
    again = watch.check()
    assert list(again.stale) == ["alive"] and again.newly_stale == ()
    assert len(log.named("heartbeat.lost")) == 1
    assert again.next_change is None  # only a touch can change a stale rule


def test_reason_names_the_instants_in_exchange_time(tmp_path: Path) -> None:
    hb = tmp_path / "hb"
    # 2026-11-23 09:59:53 +07:00 = 02:59:53Z
    touched = 1_795_402_793.0
    wall = Wall(touched - 100)
    watch = HeartbeatWatch(rules(("alive", hb, "10s")), log=Recorder(), wall=wall, monotonic=wall)
    touch(hb, touched)
    wall.now = touched + 10.5
    assert watch.check().stale["alive"] == (
        f"heartbeat {hb} stale since 10:00:03 (last touched 09:59:53, stale_after 10s)")


def test_grace_after_start_then_judged(tmp_path: Path) -> None:
    """A file last touched long before the guard started is not judged for stale_after."""
    hb = tmp_path / "hb"
    touch(hb, T0 - 3600)
    wall, log = Wall(T0), Recorder()
    watch = HeartbeatWatch(rules(("alive", hb, "10s")), log=log, wall=wall, monotonic=wall)
    wall.now = T0 + 10 - 1e-6
    check = watch.check()
    assert check.stale == {} and check.next_change == T0 + 10
    wall.now = T0 + 10
    assert list(watch.check().stale) == ["alive"]
    [lost] = log.named("heartbeat.lost")
    assert lost["age_s"] == 3610.0


def test_missing_file_is_stale_after_the_grace(tmp_path: Path) -> None:
    hb = tmp_path / "never-written"
    wall, log = Wall(T0), Recorder()
    watch = HeartbeatWatch(rules(("alive", hb, "5s")), log=log, wall=wall, monotonic=wall)
    assert watch.check().stale == {}
    wall.now = T0 + 5
    check = watch.check()
    assert check.stale == {"alive": f"heartbeat {hb} missing (stale_after 5s)"}
    [lost] = log.named("heartbeat.lost")
    assert lost["age_s"] is None and lost["file"] == str(hb)


def test_a_file_under_a_non_directory_is_missing(tmp_path: Path) -> None:
    (tmp_path / "plain").write_text("x")
    hb = tmp_path / "plain" / "hb"
    wall = Wall(T0)
    watch = HeartbeatWatch(rules(("alive", hb, "1s")), log=Recorder(), wall=wall, monotonic=wall)
    wall.now = T0 + 1
    assert "missing" in watch.check().stale["alive"]


def test_touch_again_resumes_and_logs_how_long_it_was_lost(tmp_path: Path) -> None:
    hb = tmp_path / "hb"
    wall, log = Wall(T0), Recorder()
    watch = HeartbeatWatch(rules(("alive", hb, "10s")), log=log, wall=wall, monotonic=wall)
    mtime = touch(hb, T0 + 1)
    wall.now = mtime + 10
    watch.check()
    wall.now = mtime + 42
    fresh = touch(hb, mtime + 41.5)
    check = watch.check()
    assert check.stale == {} and check.resumed == ("alive",)
    assert check.next_change == fresh + 10
    assert log.named("heartbeat.resumed") == [{"rule": "alive", "lost_for_s": 32.0}]
    # Goes stale again later: lost again (a second, separate loss).
    wall.now = fresh + 10
    assert watch.check().newly_stale == ("alive",)
    assert len(log.named("heartbeat.lost")) == 2


def test_rules_are_independent_and_signals_look_afresh(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    wall = Wall(T0)
    watch = HeartbeatWatch(rules(("a", a, "10s"), ("b", b, "30s")), log=Recorder(), wall=wall,
                           monotonic=wall)
    touch(a, T0 + 5)
    touch(b, T0 + 5)
    wall.now = T0 + 15
    assert list(watch.signals()) == ["a"]
    assert watch.last.next_change == T0 + 35  # b: fresh past its grace (T0 + 30)
    touch(a, T0 + 15)  # signals() stats again: no stale look is reused
    assert watch.signals() == {}


def test_reload_adds_a_rule_with_its_own_grace_and_keeps_the_others(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    wall, log = Wall(T0), Recorder()
    watch = HeartbeatWatch(rules(("a", a, "10s")), log=log, wall=wall, monotonic=wall)
    wall.now = T0 + 100
    assert list(watch.check().stale) == ["a"]  # missing, grace over
    watch.update_rules(rules(("a", a, "10s"), ("b", b, "20s")))
    check = watch.check()
    assert list(check.stale) == ["a"] and check.newly_stale == ()  # a: still the same loss
    assert check.next_change == T0 + 120  # b's grace, from the reload
    wall.now = T0 + 120
    assert watch.check().newly_stale == ("b",)
    assert len(log.named("heartbeat.lost")) == 2


def test_reload_removing_a_stale_rule_ends_its_loss(tmp_path: Path) -> None:
    a = tmp_path / "a"
    wall, log = Wall(T0), Recorder()
    watch = HeartbeatWatch(rules(("a", a, "10s")), log=log, wall=wall, monotonic=wall)
    wall.now = T0 + 10
    watch.check()
    wall.now = T0 + 15
    watch.update_rules(rules())
    assert watch.rules == () and watch.check().stale == {}
    assert log.named("heartbeat.resumed") == [
        {"rule": "a", "lost_for_s": 5.0, "reason": "rule removed by reload"}]


def test_reload_changing_stale_after_keeps_the_grace_start(tmp_path: Path) -> None:
    a = tmp_path / "a"
    wall = Wall(T0)
    watch = HeartbeatWatch(rules(("a", a, "10s")), log=Recorder(), wall=wall, monotonic=wall)
    wall.now = T0 + 5
    watch.update_rules(rules(("a", a, "20s")))
    assert watch.check().next_change == T0 + 20


def test_heartbeat_rules_lists_only_heartbeat_triggers(tmp_path: Path) -> None:
    listed = heartbeat_rules(rules(("a", tmp_path / "a", "10s")))
    assert [r.name for r in listed] == ["a"]


@pytest.mark.parametrize("after", ["1s", "90s"])
def test_no_rules_no_change(tmp_path: Path, after: str) -> None:
    watch = HeartbeatWatch(rules(), log=Recorder(), wall=Wall(T0))
    check = watch.check()
    assert check.stale == {} and check.next_change is None and watch.rules == ()


def test_without_grace_a_rule_is_judged_at_the_first_look(tmp_path: Path) -> None:
    """For a one-shot run (``run --once``): no start to wait from."""
    hb = tmp_path / "hb"
    mtime = touch(hb, T0 - 30)
    wall = Wall(T0 - 6)
    watch = HeartbeatWatch(rules(("alive", hb, "10s")), log=Recorder(), wall=wall,
                           monotonic=wall, grace=False)
    assert watch.check().stale["alive"].startswith(f"heartbeat {hb} stale since ")
    touch(hb, T0 - 5)
    wall.now = T0
    check = watch.check()
    assert check.stale == {} and check.next_change == T0 + 5 and mtime < T0


class Mono:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_forward_jump_of_the_wall_clock_does_not_kill_a_live_strategy(tmp_path: Path) -> None:
    """The strategy touched the file a second ago; the wall then jumps 30 s ahead (an NTP
    step): by the wall the file is 31 s old, by what the watch saw it is 1 s old. Fresh,
    until the monotonic clock agrees that stale_after has passed."""
    hb = tmp_path / "hb"
    wall, mono, log = Wall(T0), Mono(), Recorder()
    watch = HeartbeatWatch(rules(("alive", hb, "10s")), log=log, wall=wall, monotonic=mono,
                           grace=False)
    touch(hb, T0)
    assert watch.check().stale == {}
    wall.now, mono.now = T0 + 31, mono.now + 1  # the wall stepped 30 s
    check = watch.check()
    assert check.stale == {}
    [warning] = log.named("heartbeat.clock_mismatch")
    assert warning["why"] == "the wall clock moved"
    assert check.next_change == wall.now + 10 - 1
    wall.now, mono.now = wall.now + 8.9, mono.now + 8.9  # 9.9 s unchanged: still fresh
    assert watch.check().stale == {}
    wall.now, mono.now = wall.now + 0.1, mono.now + 0.1  # 10 s unchanged: stale
    assert list(watch.check().stale) == ["alive"]


def test_a_backward_jump_leaves_the_switch_armed(tmp_path: Path) -> None:
    """The wall steps an hour back: the file's mtime is now in the future, and by the wall
    it would stay fresh for an hour. It is stale once unchanged for stale_after."""
    hb = tmp_path / "hb"
    wall, mono, log = Wall(T0), Mono(), Recorder()
    watch = HeartbeatWatch(rules(("alive", hb, "10s")), log=log, wall=wall, monotonic=mono,
                           grace=False)
    touch(hb, T0)
    assert watch.check().stale == {}
    wall.now, mono.now = T0 - 3600 + 1, mono.now + 1
    assert watch.check().stale == {}
    assert log.named("heartbeat.clock_mismatch")[0]["why"] == "mtime in the future"
    wall.now, mono.now = wall.now + 8.9, mono.now + 8.9  # 9.9 s unchanged
    assert watch.check().stale == {}
    wall.now, mono.now = wall.now + 0.1, mono.now + 0.1  # 10 s unchanged
    check = watch.check()
    assert list(check.stale) == ["alive"]
    assert "unchanged for 10s by the monotonic clock" in check.stale["alive"]
    assert "disagrees with the wall: the clock moved" in check.stale["alive"]
    assert log.named("heartbeat.lost")


def test_a_touch_seen_late_still_turns_stale_on_time(tmp_path: Path) -> None:
    """The look after a touch comes up to a second later: the wall's instant still decides
    (the slack covers the gap), so the first DELETE is not delayed by the cross-check."""
    hb = tmp_path / "hb"
    wall, mono = Wall(T0), Mono()
    watch = HeartbeatWatch(rules(("alive", hb, "10s")), log=Recorder(), wall=wall,
                           monotonic=mono, grace=False)
    assert watch.check().stale != {}  # missing at first
    mtime = touch(hb, T0 + 0.1)
    wall.now, mono.now = T0 + 1.1, mono.now + 1.1  # seen 1 s after the touch
    assert watch.check().stale == {}
    wall.now, mono.now = mtime + 10, mono.now + (mtime + 10 - (T0 + 1.1))
    assert list(watch.check().stale) == ["alive"]


def test_a_forward_step_never_kills_a_strategy_touching_faster_than_stale_after(
        tmp_path: Path) -> None:
    """stale_after 2s, a touch every second, the wall stepping 5 s forward between two
    looks: never stale (a second review's case, which a slack subtracted from stale_after
    got wrong)."""
    hb = tmp_path / "hb"
    wall, mono = Wall(T0), Mono()
    watch = HeartbeatWatch(rules(("alive", hb, "2s")), log=Recorder(), wall=wall,
                           monotonic=mono, grace=False)
    for second in range(1, 8):
        touch(hb, wall.now)
        step = 5.0 if second == 3 else 0.0
        for _ in range(10):  # looks every 0.1 s until the next touch
            wall.now, mono.now = wall.now + 0.1 + step, mono.now + 0.1
            step = 0.0
            assert watch.check().stale == {}, (second, wall.now - T0)


def test_after_a_backward_step_a_dead_strategy_is_never_judged_alive_again(
        tmp_path: Path) -> None:
    """The wall steps 60 s back and the strategy is dead: stale once, and stays stale (no
    false resume as the wall catches up with the mtime)."""
    hb = tmp_path / "hb"
    wall, mono, log = Wall(T0), Mono(), Recorder()
    watch = HeartbeatWatch(rules(("alive", hb, "10s")), log=log, wall=wall, monotonic=mono,
                           grace=False)
    touch(hb, T0)
    assert watch.check().stale == {}
    wall.now = T0 - 60
    verdicts = []
    for _ in range(80):
        wall.now, mono.now = wall.now + 1, mono.now + 1
        verdicts.append(bool(watch.check().stale))
    assert verdicts[:8] == [False] * 8 and all(verdicts[9:])
    assert len(log.named("heartbeat.lost")) == 1 and not log.named("heartbeat.resumed")
