"""``python -m audioclf``."""

import sys

from audioclf.cli.main import main

sys.exit(main())
