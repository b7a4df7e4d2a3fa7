"""``python -m engine.cli``: the ``bas`` command."""

import sys

from engine.cli.main import main

sys.exit(main())
