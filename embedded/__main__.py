"""``python -m embedded`` is ``sohoa-embedded``."""

import sys

from embedded.cli import main

sys.exit(main())
