"""Run the command line: ``python -m dicommove``."""

import sys

from .cli import run

sys.exit(run())
