"""``python -m bas_desktop [PHOTO_OR_PROJECT]``."""

import sys

from bas_desktop.app import main

sys.exit(main())
