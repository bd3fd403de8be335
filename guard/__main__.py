"""``python -m guard`` is ``ssi-guard``."""

import sys

from guard.cli import main

sys.exit(main())
