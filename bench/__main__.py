"""`make bench`: run every benchmark and print one table of figures and ratios."""

from __future__ import annotations

from bench.runner import main

if __name__ == "__main__":
    raise SystemExit(main())
