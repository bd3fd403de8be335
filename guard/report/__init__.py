"""The day's report, and the words a person reads: alerts and the report, in English or
Vietnamese (``i18n``), summarised from the journal (``summary``), printed by ``command``."""
