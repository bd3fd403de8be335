"""Seeded books: the ``demo`` scenario is a realistic morning for two equity accounts and
one derivatives account.

HOSE, HNX and UPCoM symbols; fresh and stale orders; partial fills; already-terminal orders;
one order protected by the ``keep-`` prefix, which no rule may touch; and VN30 futures in both
code forms (``VN30F2612`` and the KRX-style ``41I1FC000``) in ``DERIVATIVES_ACCOUNT``, which
``get_account_info()`` types ``Derivative`` (0001238 ends in 8 too, but is a Cash account:
the suffix is only a hint).
"""

from __future__ import annotations

from datetime import timedelta

from guard.simulator.control import KRX_FUTURES, Simulator

__all__ = ["DEMO_ACCOUNTS", "DERIVATIVES_ACCOUNT", "SCENARIOS", "add_derivatives", "seed_demo"]

DEMO_ACCOUNTS = ("0001234", "0001238")
DERIVATIVES_ACCOUNT = "0005678"  # ends in 8, and the broker says Derivative


def add_derivatives(sim: Simulator) -> str:
    """Open the demo's derivatives account and list the KRX-form contract; its number."""
    if DERIVATIVES_ACCOUNT not in sim.exchange.accounts:
        sim.add_account(DERIVATIVES_ACCOUNT, 2_000_000_000, account_type="Derivative")
    sim.exchange.add_symbol(KRX_FUTURES)
    return DERIVATIVES_ACCOUNT


def seed_demo(sim: Simulator) -> dict[str, str]:
    """Seed the demo book relative to the simulator's clock; returns name -> order id."""
    for account in DEMO_ACCOUNTS:
        if account not in sim.exchange.accounts:
            sim.add_account(account)
    a, b = DEMO_ACCOUNTS
    d = add_derivatives(sim)
    m = timedelta(minutes=1)
    ids = {
        "stale-hose-buy": sim.seed_order(a, "SSI", "B", 26_900, 1_000, age=42 * m),
        "stale-hose-sell": sim.seed_order(a, "FPT", "S", 96_000, 300, age=35 * m),
        "stale-hnx-buy": sim.seed_order(a, "SHS", "B", 14_000, 2_000, age=25 * m),
        "stale-upcom-buy": sim.seed_order(b, "BSR", "B", 21_000, 500, age=31 * m),
        "stale-partial": sim.seed_order(b, "HPG", "B", 26_300, 1_000, age=50 * m),
        "fresh-hose-buy": sim.seed_order(a, "VNM", "B", 61_800, 200, age=2 * m),
        "fresh-hnx-sell": sim.seed_order(b, "PVS", "S", 33_500, 400, age=4 * m),
        "protected": sim.seed_order(
            a, "VCB", "B", 90_500, 100, age=60 * m, client_request_id="keep-core-vcb"
        ),
        "filled": sim.seed_order(a, "MWG", "B", 58_000, 100, age=70 * m),
        "rejected-later": sim.seed_order(b, "ACV", "B", 97_000, 100, age=65 * m),
        "stale-futures-buy": sim.seed_order(d, "VN30F2612", "B", 1_345, 3, age=30 * m),
        "fresh-futures-sell": sim.seed_order(d, "41I1FC000", "S", 1_360, 2, age=3 * m),
    }
    sim.fill(ids["stale-partial"], 400)
    sim.fill(ids["filled"])
    sim.set_status(ids["rejected-later"], "RJ", message="price out of band")
    return ids


SCENARIOS = {"demo": seed_demo}
