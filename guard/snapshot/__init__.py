"""Snapshot: read the order book and cash of each guarded account."""
