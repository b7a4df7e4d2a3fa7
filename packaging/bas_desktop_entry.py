"""Entry point of the packaged app: ``bas-desktop [--self-test [--model M]]``."""

from __future__ import annotations

import sys


def main() -> int:
    """Run the self-test when asked, else the desktop app."""
    if "--self-test" in sys.argv[1:]:
        from bas_desktop.selftest import main as self_test

        return self_test([a for a in sys.argv[1:] if a != "--self-test"])
    try:
        from bas_desktop.app import main as app_main  # the scene editor's main window (issue 5)
    except ImportError:
        from bas_desktop.widgets.studio import run_standalone as app_main
    return int(app_main() or 0)


if __name__ == "__main__":
    raise SystemExit(main())
