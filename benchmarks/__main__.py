"""``python -m benchmarks``: the suite's command line (``benchmarks/suite.py``; ``--help``)."""

from benchmarks.suite import build_parser, main

__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    raise SystemExit(main())
