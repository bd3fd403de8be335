"""The broker: the client (the one stateful connection through ``ssi_sdk``), the parsing of
its replies, and the ports each step depends on. The only package that imports ``ssi_sdk``."""
