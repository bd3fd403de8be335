"""Alerts in ``alerts.language``, and ``heartbeat_lost``: one alert per heartbeat rule, fired
by ``heartbeat.lost`` and resolved by ``heartbeat.resumed``. Condition names and JSON keys stay
English; the words a person reads are Vietnamese with full diacritics in ``vi``."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from kit.ops import Receiver

from guard.report.i18n import Language
from guard.service.alerts import Alert, Alerter, AlertRules, render_body


class Tick:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def rules(language: Language, tick: Tick | None = None) -> tuple[Alerter, AlertRules]:
    alerter = Alerter(None, language=language, remind_every_s=600, clock=tick or Tick())
    return alerter, AlertRules(alerter)


def said(alerter: Alerter) -> list[tuple[str, str, str]]:
    return [(a.condition, a.state, a.summary) for a in alerter.sent]


LOST_A: dict[str, Any] = {"event": "heartbeat.lost", "rule": "strategy-a", "file": "/run/a/hb",
                          "stale_since": "2026-11-23T03:02:03+00:00", "age_s": 12.0}
LOST_B: dict[str, Any] = {"event": "heartbeat.lost", "rule": "strategy-b", "file": "/run/b/hb",
                          "stale_since": "2026-11-23T03:05:00+00:00", "age_s": None}


def test_heartbeat_lost_fires_per_rule_and_resolves_on_resume_in_vietnamese() -> None:
    alerter, watch = rules("vi")
    watch.observe(dict(LOST_A))
    watch.observe({**LOST_A, "age_s": 13.0})  # said again while still lost: no second alert
    watch.observe(dict(LOST_B))  # another rule: its own alert
    watch.observe({"event": "heartbeat.resumed", "rule": "strategy-a", "lost_for_s": 125.2})
    watch.observe({"event": "heartbeat.resumed", "rule": "strategy-a", "lost_for_s": 1.0})
    assert said(alerter) == [
        ("heartbeat_lost", "firing",
         "Mất tín hiệu sống của quy tắc strategy-a: tệp /run/a/hb không được cập nhật từ "
         "2026-11-23 10:02:03 (12 giây trước); quy tắc này đang hủy các lệnh khớp bộ lọc của nó"),
        ("heartbeat_lost", "firing",
         "Mất tín hiệu sống của quy tắc strategy-b: không tìm thấy tệp /run/b/hb (mất từ "
         "2026-11-23 10:05:00); quy tắc này đang hủy các lệnh khớp bộ lọc của nó"),
        ("heartbeat_lost", "resolved",
         "Tín hiệu sống của quy tắc strategy-a đã trở lại sau 2 phút 5 giây"),
    ]
    assert [a.details.get("rule") for a in alerter.sent[:2]] == ["strategy-a", "strategy-b"]
    assert [a.subject for a in alerter.sent] == ["strategy-a", "strategy-b", "strategy-a"]
    assert alerter.active.keys() == {"heartbeat_lost/strategy-b"}


def test_heartbeat_lost_in_english_with_a_reminder_per_rule() -> None:
    tick = Tick()
    alerter, watch = rules("en", tick)
    watch.observe(dict(LOST_A))
    tick.now += 300
    watch.observe(dict(LOST_B))
    tick.now += 301  # 601 s after strategy-a's alert, 301 after strategy-b's
    alerter.remind_due()
    watch.observe({"event": "heartbeat.resumed", "rule": "strategy-b", "lost_for_s": 601})
    assert said(alerter) == [
        ("heartbeat_lost", "firing",
         "heartbeat of rule strategy-a lost: /run/a/hb not touched since 2026-11-23 10:02:03 "
         "(12 s ago); the rule now cancels the orders it matches"),
        ("heartbeat_lost", "firing",
         "heartbeat of rule strategy-b lost: /run/b/hb is missing (stale since 2026-11-23 "
         "10:05:00); the rule now cancels the orders it matches"),
        ("heartbeat_lost", "reminder",
         "heartbeat of rule strategy-a lost: /run/a/hb not touched since 2026-11-23 10:02:03 "
         "(12 s ago); the rule now cancels the orders it matches"),
        ("heartbeat_lost", "resolved", "heartbeat of rule strategy-b is back after 10 min 1 s"),
    ]
    assert alerter.sent[2].subject == "strategy-a"


def test_every_condition_speaks_vietnamese() -> None:
    alerter, watch = rules("vi")
    for event in [
        {"event": "auth.reauth_required", "reason": "token revoked"},
        {"event": "cancel.failed", "outcome": "unconfirmed", "order_id": "7",
         "account": "0001234", "symbol": "SSI", "rule": "stale", "detail": "no final status"},
        {"event": "breaker.tripped", "matches": 250, "limit": 200, "rules": {"stale": 250}},
        {"event": "sweep.failed", "job": "poll", "error": "boom"},
        {"event": "schedule.missed", "critical": True, "job": "pre-close:close",
         "scheduled": "2026-11-23T14:25:00+07:00"},
        {"event": "calendar.no_holiday_data", "year": 2027},
        {"event": "rules.reload_failed", "path": "rules.yaml", "problems": ["a", "b", "c"]},
        {"event": "journal.write_failed", "path": "/s/journal.sqlite3", "error": "disk full"},
    ]:
        watch.observe(event)
    watch.observe({"event": "sweep.finished", "result": "incomplete", "trigger": "poll",
                   "unconfirmed": 1, "failed": 2, "unread_accounts": ["0001238"],
                   "deferred": 1})
    for event in [
        {"event": "auth.recovered"},
        {"event": "rules.reloaded", "path": "rules.yaml"},
        {"event": "sweep.finished", "result": "ok", "trigger": "pre-close:close"},
    ]:
        watch.observe(event)
    got = said(alerter)
    assert got == [
        ("reauth_required", "firing",
         "Mất phiên đăng nhập SSI: hãy chạy `ssi-guard login` trên máy chủ (token revoked)"),
        ("unconfirmed_cancel", "firing",
         "Lệnh hủy cho lệnh 7 (0001234 SSI, quy tắc stale) chưa được xác nhận: "
         "no final status"),
        ("circuit_breaker", "firing",
         "Cầu dao ngắt: cần hủy 250 lệnh, vượt giới hạn 200 lệnh mỗi lượt quét; không lệnh "
         "nào bị hủy (theo quy tắc: stale=250)"),
        ("sweep_failed", "firing", "Lượt quét poll thất bại: boom"),
        ("missed_preclose", "firing",
         "Bỏ lỡ lượt quét theo lịch pre-close:close (đến hạn lúc 2026-11-23T14:25:00+07:00)"),
        ("no_holiday_data", "firing",
         "Chưa có danh sách ngày nghỉ của sở giao dịch cho năm 2027: hãy thêm vào "
         "`holidays:` trong rules.yaml rồi nạp lại (SIGHUP)"),
        ("reload_failed", "firing",
         "Nạp lại rules.yaml thất bại, vẫn dùng các quy tắc cũ: a (và 2 lỗi khác)"),
        ("journal_failed", "firing", "Không ghi được sổ nhật ký /s/journal.sqlite3: disk full"),
        ("reauth_required", "resolved", "Đã khôi phục phiên đăng nhập SSI"),
        ("reload_failed", "resolved", "Đã nạp lại quy tắc từ rules.yaml"),
        ("sweep_failed", "resolved", "Các lượt quét đã thành công trở lại"),
        ("unconfirmed_cancel", "resolved", "Một lượt quét sau đó đã hoàn tất"),
        ("circuit_breaker", "resolved", "Số lệnh cần hủy đã trở lại dưới giới hạn"),
        ("journal_failed", "resolved", "Nhật ký của lượt quét đã được ghi lại bình thường"),
        ("missed_preclose", "resolved", "Lượt quét theo lịch pre-close:close đã chạy"),
    ]
    # (the incomplete sweep above came while sweep_failed was already firing: quiet)
    latest = AlertRules(Alerter(None, language="vi"))
    latest.observe({"event": "sweep.finished", "result": "incomplete", "trigger": "poll",
                    "unconfirmed": 1, "failed": 2, "unread_accounts": ["0001238"],
                    "deferred": 1})
    assert latest.alerter.sent[0].summary == (
        "Lượt quét poll chưa hoàn tất: 1 lệnh hủy chưa được xác nhận; 2 lệnh hủy thất bại; "
        "tài khoản không đọc được: 0001238; 1 lệnh hủy bị hoãn (lệnh hủy của lần chạy trước "
        "có thể vẫn đang trên đường truyền)")


def test_chat_text_tags_the_state_in_the_language() -> None:
    alert = Alert("heartbeat_lost", "firing", "Mất tín hiệu sống", {}, 1.0, "strategy-a")
    assert render_body(alert, "slack", "https://x", "vi") == {
        "text": "[ssi-guard CẢNH BÁO] heartbeat_lost: Mất tín hiệu sống"}
    resolved = Alert("heartbeat_lost", "resolved", "ok", {}, 1.0)
    assert render_body(resolved, "slack", "https://x", "vi")["text"].startswith(
        "[ssi-guard ĐÃ KHẮC PHỤC] ")
    assert render_body(resolved, "slack", "https://x")["text"].startswith(
        "[ssi-guard RESOLVED] ")
    report = Alert("daily_report", "report", "Báo cáo", {}, 1.0)
    assert render_body(report, "telegram", "https://x/?chat_id=-5", "vi") == {
        "chat_id": "-5", "text": "[ssi-guard BÁO CÁO] daily_report: Báo cáo"}


def test_the_webhook_gets_vietnamese_text_and_english_keys() -> None:
    async def main() -> list[dict[str, Any]]:
        async with Receiver() as hook:
            alerter = Alerter(hook.url(), "generic", language="vi")
            watch = AlertRules(alerter)
            await alerter.start()
            try:
                watch.observe(dict(LOST_A))
                watch.observe({"event": "heartbeat.resumed", "rule": "strategy-a",
                               "lost_for_s": 30})
                await hook.wait_for(2)
            finally:
                await alerter.stop()
            return hook.bodies

    first, second = asyncio.run(main())
    assert (first["condition"], first["state"]) == ("heartbeat_lost", "firing")
    assert first["summary"].startswith("Mất tín hiệu sống của quy tắc strategy-a")
    assert first["details"] == {"rule": "strategy-a", "file": "/run/a/hb",
                                "stale_since": "2026-11-23T03:02:03+00:00", "age_s": 12.0}
    assert (second["condition"], second["state"], second["summary"]) == (
        "heartbeat_lost", "resolved", "Tín hiệu sống của quy tắc strategy-a đã trở lại sau "
        "30 giây")


@pytest.mark.parametrize(("language", "words"), [
    ("en", ("27 cancels wanted, limit 20", "once 11 cancels had started",
            "accounts 0010101, 0010201", "no other cancel was sent")),
    ("vi", ("cần hủy 27 lệnh, vượt giới hạn 20", "khi 11 lệnh hủy đã được gửi",
            "tài khoản 0010101, 0010201", "không lệnh hủy nào khác được gửi")),
])
def test_a_late_trip_says_how_many_cancels_had_started_not_that_none_were(
        language: Language, words: tuple[str, ...]) -> None:
    alerter, watch = rules(language)
    watch.observe({"event": "breaker.tripped", "matches": 27, "limit": 20,
                   "rules": {"pull-before-atc": 27}, "late": True, "started": 11,
                   "accounts_started": ["0010101", "0010201"]})
    [alert] = alerter.sent
    assert alert.condition == "circuit_breaker" and alert.state == "firing"
    assert all(w in alert.summary for w in words), alert.summary
    assert "nothing was cancelled" not in alert.summary
    assert "không lệnh nào bị hủy" not in alert.summary
    assert alert.details["started"] == 11


def test_a_sweep_the_pause_file_stopped_midway_says_so_not_that_cancels_are_unfinished() -> None:
    alerter, watch = rules("en")
    watch.observe({"event": "sweep.finished", "result": "incomplete",
                   "trigger": "pre-close:pull", "paused": 5})
    [alert] = alerter.sent
    assert alert.condition == "sweep_failed"
    assert "5 held by the pause file, which appeared mid-sweep" in alert.summary
    assert "not final" not in alert.summary


@pytest.mark.parametrize(("language", "words"), [
    ("en", ("16 cancels wanted, and 11 were already sent today",
            "together over the limit of 20", "nothing was cancelled")),
    ("vi", ("cần hủy 16 lệnh, và 11 lệnh hủy đã được gửi hôm nay",
            "vượt giới hạn 20", "không lệnh nào bị hủy")),
])
def test_a_trip_that_counts_an_earlier_late_trip_says_both_figures(
        language: Language, words: tuple[str, ...]) -> None:
    alerter, watch = rules(language)
    watch.observe({"event": "breaker.tripped", "matches": 16, "limit": 20,
                   "rules": {"pull-before-atc": 16}, "carried": 11})
    [alert] = alerter.sent
    assert all(w in alert.summary for w in words), alert.summary
    assert alert.details["carried"] == 11
