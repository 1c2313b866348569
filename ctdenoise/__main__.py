"""``python -m ctdenoise`` runs the command line."""

import sys

from ctdenoise.cli import main

sys.exit(main())
