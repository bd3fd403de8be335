"""The broker adapter: the only place that talks to ``ssi_sdk``."""
