"""ssi-guard: an unattended risk guard that cancels SSI FastConnect orders by YAML rules.

The pipeline, one package per step:
schedule -> snapshot -> evaluate -> act -> confirm -> record.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
