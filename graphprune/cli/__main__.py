"""``python -m graphprune.cli ...`` runs the command line."""
import sys

from .app import main

sys.exit(main())
