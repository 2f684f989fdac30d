"""`python -m harness.prepare.gimp --out DIR [--from DIR] [--version V]`: see harness.prepare.gimp.cli."""

from __future__ import annotations

import sys

from harness.prepare.gimp.cli import main

__all__: list[str] = []

if __name__ == "__main__":
    sys.exit(main())
