"""An SSI FastConnect v3-compatible simulator: a real HTTP server on loopback.

It is the embedded default of ``ssi-guard demo`` and the broker every integration test talks
to, through the real ``ssi_sdk``.
"""
