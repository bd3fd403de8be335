"""Confirm: watch the order book until each cancel is final, then measure the cash released."""
