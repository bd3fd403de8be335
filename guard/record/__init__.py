"""Record: the append-only journal and the structured log events."""
