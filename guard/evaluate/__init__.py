"""Evaluate: the pure rule engine. Orders + rules + now + calendar -> decisions."""
