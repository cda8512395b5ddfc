"""``python -m bodycam`` is the ``bodycam`` command."""

import sys

from bodycam.cli import main

sys.exit(main())
