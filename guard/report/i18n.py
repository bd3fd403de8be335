"""The words a person reads, in English or Vietnamese: every alert text and the day's report.

``alerts.language`` chooses one. Vietnamese is written with full diacritics, and numbers the
Vietnamese way: dots between thousands, a comma before decimals, amounts followed by " ₫"
(``146.060.000 ₫``); English writes ``146,060,000 VND``. Only text for people lives here: log
event names, alert condition names and JSON keys stay English, so tools keep working.
Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any, Final, Literal

__all__ = ["LANGUAGES", "Language", "amount", "count", "day", "duration", "number", "outcome",
           "result", "state", "text"]

Language = Literal["en", "vi"]
LANGUAGES: Final = ("en", "vi")

# One template per message: (English, Vietnamese), ``str.format`` fields. The values put into
# them are never formatted again, so a brace in a rule name or an error text is harmless.
_TEXTS: Final[Mapping[str, tuple[str, str]]] = {
    # ---- alerts: firing ------------------------------------------------------------------
    "reauth_required": (
        "SSI session lost: run `ssi-guard login` on the host ({reason})",
        "Mất phiên đăng nhập SSI: hãy chạy `ssi-guard login` trên máy chủ ({reason})"),
    "unconfirmed_cancel": (
        "cancel of order {order_id} ({account} {symbol}, rule {rule}) not confirmed: {detail}",
        "Lệnh hủy cho lệnh {order_id} ({account} {symbol}, quy tắc {rule}) chưa được xác nhận: "
        "{detail}"),
    "circuit_breaker": (
        "circuit breaker: {matches} cancels wanted, limit {limit} per sweep; nothing was "
        "cancelled (by rule: {by_rule})",
        "Cầu dao ngắt: cần hủy {matches} lệnh, vượt giới hạn {limit} lệnh mỗi lượt quét; "
        "không lệnh nào bị hủy (theo quy tắc: {by_rule})"),
    "circuit_breaker.carried": (
        "circuit breaker: {matches} cancels wanted, and {carried} were already sent today by a "
        "sweep whose breaker tripped late: together over the limit of {limit} per sweep; "
        "nothing was cancelled (by rule: {by_rule})",
        "Cầu dao ngắt: cần hủy {matches} lệnh, và {carried} lệnh hủy đã được gửi hôm nay bởi một "
        "lượt quét ngắt cầu dao muộn: tổng cộng vượt giới hạn {limit} lệnh mỗi lượt quét; "
        "không lệnh nào bị hủy (theo quy tắc: {by_rule})"),
    "circuit_breaker.late_carried": (
        "circuit breaker: {matches} cancels wanted, and {carried} were already sent today by a "
        "sweep whose breaker tripped late: together over the limit of {limit} per sweep; "
        "orders placed after the pre-read pushed the count over once {started} cancels had "
        "started (accounts {accounts}); no other cancel was sent (by rule: {by_rule})",
        "Cầu dao ngắt: cần hủy {matches} lệnh, và {carried} lệnh hủy đã được gửi hôm nay bởi một "
        "lượt quét ngắt cầu dao muộn: tổng cộng vượt giới hạn {limit} lệnh mỗi lượt quét; các "
        "lệnh đặt sau lần đọc trước đã đẩy số lệnh vượt giới hạn khi {started} lệnh hủy đã được "
        "gửi (tài khoản {accounts}); không lệnh hủy nào khác được gửi (theo quy tắc: {by_rule})"),
    "circuit_breaker.late": (
        "circuit breaker: {matches} cancels wanted, limit {limit} per sweep; orders placed after "
        "the pre-read pushed the count over once {started} cancels had started (accounts "
        "{accounts}); no other cancel was sent (by rule: {by_rule})",
        "Cầu dao ngắt: cần hủy {matches} lệnh, vượt giới hạn {limit} lệnh mỗi lượt quét; các "
        "lệnh đặt sau lần đọc trước đã đẩy số lệnh vượt giới hạn khi {started} lệnh hủy đã được "
        "gửi (tài khoản {accounts}); không lệnh hủy nào khác được gửi (theo quy tắc: {by_rule})"),
    "sweep_failed": (
        "sweep {job} failed: {error}",
        "Lượt quét {job} thất bại: {error}"),
    "sweep_incomplete": (
        "sweep {trigger} {result}: {problems}",
        "Lượt quét {trigger} {result}: {problems}"),
    "problem.unconfirmed": ("{n} unconfirmed", "{n} lệnh hủy chưa được xác nhận"),
    "problem.failed": ("{n} failed", "{n} lệnh hủy thất bại"),
    "problem.unread": ("accounts not read: {accounts}", "tài khoản không đọc được: {accounts}"),
    "problem.deferred": (
        "{n} deferred (a cancel of a previous run may still be on the wire)",
        "{n} lệnh hủy bị hoãn (lệnh hủy của lần chạy trước có thể vẫn đang trên đường truyền)"),
    "problem.paused": ("{n} held by the pause file, which appeared mid-sweep",
                       "{n} lệnh bị giữ lại do tệp tạm dừng xuất hiện giữa lượt quét"),
    "problem.none": ("some cancels are not final", "một số lệnh hủy chưa có kết quả cuối cùng"),
    "missed_preclose": (
        "scheduled sweep {job} missed (was due {scheduled})",
        "Bỏ lỡ lượt quét theo lịch {job} (đến hạn lúc {scheduled})"),
    "no_holiday_data": (
        "no exchange holiday list for {year}: add it to rules.yaml `holidays:` and reload "
        "(SIGHUP)",
        "Chưa có danh sách ngày nghỉ của sở giao dịch cho năm {year}: hãy thêm vào "
        "`holidays:` trong rules.yaml rồi nạp lại (SIGHUP)"),
    "reload_failed": (
        "reload of {path} failed, previous rules kept: {first}{more}",
        "Nạp lại {path} thất bại, vẫn dùng các quy tắc cũ: {first}{more}"),
    "reload_failed.more": (" (and {n} more problems)", " (và {n} lỗi khác)"),
    "reload_failed.see_log": ("see the log", "xem nhật ký"),
    "journal_failed": (
        "journal {path} cannot be written: {error}",
        "Không ghi được sổ nhật ký {path}: {error}"),
    "heartbeat_lost": (
        "heartbeat of rule {rule} lost: {file} not touched since {stale_since} ({age} ago); "
        "the rule now cancels the orders it matches",
        "Mất tín hiệu sống của quy tắc {rule}: tệp {file} không được cập nhật từ "
        "{stale_since} ({age} trước); quy tắc này đang hủy các lệnh khớp bộ lọc của nó"),
    "heartbeat_lost.missing": (
        "heartbeat of rule {rule} lost: {file} is missing (stale since {stale_since}); the "
        "rule now cancels the orders it matches",
        "Mất tín hiệu sống của quy tắc {rule}: không tìm thấy tệp {file} (mất từ "
        "{stale_since}); quy tắc này đang hủy các lệnh khớp bộ lọc của nó"),
    "daily_report": ("{report}", "{report}"),
    # ---- alerts: resolved ----------------------------------------------------------------
    "cleared": ("cleared", "đã hết"),
    "reauth_required.resolved": ("session restored", "Đã khôi phục phiên đăng nhập SSI"),
    "unconfirmed_cancel.resolved": ("a later sweep completed",
                                    "Một lượt quét sau đó đã hoàn tất"),
    "circuit_breaker.resolved": ("matches back under the limit",
                                 "Số lệnh cần hủy đã trở lại dưới giới hạn"),
    "sweep_failed.resolved": ("sweeps succeed again", "Các lượt quét đã thành công trở lại"),
    "journal_failed.resolved": ("a sweep was journaled again",
                                "Nhật ký của lượt quét đã được ghi lại bình thường"),
    "missed_preclose.resolved": ("scheduled sweep {trigger} ran",
                                 "Lượt quét theo lịch {trigger} đã chạy"),
    "reload_failed.resolved": ("rules reloaded from {path}", "Đã nạp lại quy tắc từ {path}"),
    "no_holiday_data.resolved": ("holidays for {years} are configured",
                                 "Đã cấu hình ngày nghỉ cho năm {years}"),
    "heartbeat_lost.resolved": ("heartbeat of rule {rule} is back after {lost_for}",
                                "Tín hiệu sống của quy tắc {rule} đã trở lại sau {lost_for}"),
    # ---- the day's report ----------------------------------------------------------------
    "report.title": ("ssi-guard report for {day} (exchange day)",
                     "Báo cáo ssi-guard ngày {day} (ngày giao dịch)"),
    "report.headline": ("Cancelled {orders}, released {amount}{margin}.",
                        "Đã hủy {orders}, giải phóng {amount}{margin}."),
    "report.margin": (" and {amount} of futures margin", " và {amount} ký quỹ phái sinh"),
    "report.margin_only": (" of futures margin", " ký quỹ phái sinh"),
    "report.no_cancels": ("No cancel was sent.", "Không có lệnh hủy nào được gửi."),
    "report.account": ("Account {account}: {cancels} ({outcomes}); released {amount}{margin}",
                       "Tài khoản {account}: {cancels} ({outcomes}); giải phóng "
                       "{amount}{margin}"),
    "report.account_cash_only": ("Account {account}: released {amount}{margin}",
                                 "Tài khoản {account}: giải phóng {amount}{margin}"),
    "report.rule": ("  rule {rule}: {outcomes}", "  quy tắc {rule}: {outcomes}"),
    "report.failure": ("  {outcome}: order {order_id}{symbol} (rule {rule}): {detail}",
                       "  {outcome}: lệnh {order_id}{symbol} (quy tắc {rule}): {detail}"),
    "report.trips": ("Circuit breaker trips: {n}", "Số lần ngắt cầu dao: {n}"),
    "report.trip": ("  {at}: {matches} cancels wanted, limit {limit}; nothing cancelled",
                    "  {at}: cần hủy {matches} lệnh, giới hạn {limit}; không hủy lệnh nào"),
    "report.trip_carried": (
        "  {at}: {matches} cancels wanted + {carried} sent earlier by a late trip, limit "
        "{limit}; nothing cancelled",
        "  {at}: cần hủy {matches} lệnh + {carried} lệnh đã gửi trước đó do ngắt muộn, giới hạn "
        "{limit}; không hủy lệnh nào"),
    "report.trip_late_carried": (
        "  {at}: {matches} cancels wanted + {carried} sent earlier by a late trip, limit "
        "{limit}; {started} had started before the count passed it, no more were sent",
        "  {at}: cần hủy {matches} lệnh + {carried} lệnh đã gửi trước đó do ngắt muộn, giới hạn "
        "{limit}; {started} lệnh hủy đã được gửi trước khi vượt giới hạn, không gửi thêm lệnh "
        "nào"),
    "report.trip_late": (
        "  {at}: {matches} cancels wanted, limit {limit}; {started} had started before the "
        "count passed it, no more were sent",
        "  {at}: cần hủy {matches} lệnh, giới hạn {limit}; {started} lệnh hủy đã được gửi trước "
        "khi vượt giới hạn, không gửi thêm lệnh nào"),
    "report.missed": ("Missed sweeps: {n}", "Số lượt quét bị bỏ lỡ: {n}"),
    "report.missed_one": ("  {job} (due {scheduled})", "  {job} (đến hạn lúc {scheduled})"),
    "report.losses": ("Heartbeat losses: {n}", "Số lần mất tín hiệu sống: {n}"),
    "report.loss": ("  rule {rule}: lost at {at}, {back}",
                    "  quy tắc {rule}: mất lúc {at}, {back}"),
    "report.loss_back": ("back after {lost_for}", "có lại sau {lost_for}"),
    "report.loss_open": ("not back yet", "chưa có lại"),
    "report.given_up": ("Orders given up on (cancel them by hand): {n}",
                        "Lệnh đã ngừng thử hủy (hãy hủy thủ công): {n}"),
    "report.given_up_one": ("  {account} order {order_id}{symbol}",
                            "  {account} lệnh {order_id}{symbol}"),
    "report.nothing": ("nothing", "không có"),
    "report.more": ("  ... and {n} more", "  ... và {n} lần khác"),
}

# Nouns that are counted: (English one, English many, Vietnamese).
_NOUNS: Final[Mapping[str, tuple[str, str, str]]] = {
    "order": ("order", "orders", "lệnh"),
    "cancel": ("cancel", "cancels", "lệnh hủy"),
}

_OUTCOMES: Final[Mapping[str, tuple[str, str]]] = {
    "cancelled": ("cancelled", "đã hủy"),
    "partially_cancelled": ("partially cancelled", "hủy một phần"),
    "filled_first": ("filled first", "đã khớp trước khi hủy"),
    "already_done": ("already done", "đã kết thúc từ trước"),
    "failed": ("failed", "thất bại"),
    "unconfirmed": ("unconfirmed", "chưa xác nhận"),
    "pending": ("no outcome yet", "chưa có kết quả"),
}

_RESULTS: Final[Mapping[str, tuple[str, str]]] = {
    "ok": ("ok", "thành công"),
    "nothing_to_do": ("nothing to do", "không có gì để làm"),
    "dry_run": ("dry run", "chạy thử"),
    "blocked": ("blocked", "bị chặn"),
    "incomplete": ("incomplete", "chưa hoàn tất"),
    "failed": ("failed", "thất bại"),
}

_STATES: Final[Mapping[str, tuple[str, str]]] = {
    "firing": ("ALERT", "CẢNH BÁO"),
    "reminder": ("STILL FIRING", "VẪN CÒN CẢNH BÁO"),
    "resolved": ("RESOLVED", "ĐÃ KHẮC PHỤC"),
    "report": ("REPORT", "BÁO CÁO"),
}


_VI_DIGITS: Final = str.maketrans(",.", ".,")


def _pick(pair: tuple[str, str], lang: Language) -> str:
    return pair[1] if lang == "vi" else pair[0]


def text(key: str, lang: Language, **fields: Any) -> str:
    """The message ``key`` in ``lang`` with ``fields`` filled in."""
    return _pick(_TEXTS[key], lang).format(**fields)


def _label(table: Mapping[str, tuple[str, str]], key: str, lang: Language) -> str:
    pair = table.get(key)
    return key if pair is None else _pick(pair, lang)


def outcome(kind: str, lang: Language) -> str:
    """A cancel's outcome (``partially_cancelled``) in words; an unknown one as it is."""
    return _label(_OUTCOMES, kind, lang)


def result(kind: str, lang: Language) -> str:
    """A sweep's result (``incomplete``) in words."""
    return _label(_RESULTS, kind, lang)


def state(kind: str, lang: Language) -> str:
    """The tag of an alert's state (``firing`` -> ``ALERT`` / ``CẢNH BÁO``)."""
    return _label(_STATES, kind, lang)


def number(value: Any, lang: Language, places: int | None = None) -> str:
    """``value`` grouped by thousands; whole numbers without decimals unless ``places`` says.
    Something that is no number is returned as text."""
    try:
        d = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return str(value)
    if not d.is_finite():
        return str(value)
    if places is None:
        places = 0 if d == d.to_integral_value() else 2
    en = f"{d:,.{places}f}"
    if lang != "vi":
        return en
    return en.translate(_VI_DIGITS)


def count(n: int, noun: str, lang: Language) -> str:
    """``1 order`` / ``12 orders`` / ``12 lệnh`` (Vietnamese nouns have no plural)."""
    one, many, vi = _NOUNS[noun]
    return f"{number(n, lang)} {vi if lang == 'vi' else one if n == 1 else many}"


def amount(value: Any, lang: Language) -> str:
    """A VND amount: ``146,060,000 VND`` / ``146.060.000 ₫``."""
    return f"{number(value, lang)} ₫" if lang == "vi" else f"{number(value, lang)} VND"


def duration(seconds: Any, lang: Language) -> str:
    """A span for people: ``45 s``, ``2 min 5 s``, ``1 h 3 min`` / ``45 giây``, ``2 phút 5
    giây``, ``1 giờ 3 phút``; below ten seconds with one decimal (``2.5 s`` / ``2,5 giây``)."""
    try:
        s = float(seconds)
    except (TypeError, ValueError):
        return str(seconds)
    h_, m_, s_ = ("giờ", "phút", "giây") if lang == "vi" else ("h", "min", "s")
    if s < 10:
        return f"{number(round(s, 1), lang, 1)} {s_}"
    whole = round(s)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} {h_} {minutes} {m_}" if minutes else f"{hours} {h_}"
    if minutes:
        return f"{minutes} {m_} {secs} {s_}" if secs else f"{minutes} {m_}"
    return f"{secs} {s_}"


def day(d: date, lang: Language) -> str:
    """An exchange day: ``2026-11-23`` / ``23/11/2026``."""
    return d.strftime("%d/%m/%Y") if lang == "vi" else d.isoformat()
