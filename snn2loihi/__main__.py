"""``python -m snn2loihi`` runs the CLI."""

import sys

from snn2loihi.app.cli import main

sys.exit(main())
