"""The market calendar: sessions, cancel windows and trading days. Pure, no I/O."""
