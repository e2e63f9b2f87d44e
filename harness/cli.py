"""The ``harness`` command."""

import sys


def main(argv=None) -> int:
    print("harness: CLI under construction", file=sys.stderr)
    return 1
