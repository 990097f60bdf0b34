"""Run the command line: ``python -m dicommove``."""

import sys

from .cli import main

sys.exit(main())
