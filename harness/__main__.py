"""``python -m harness`` is the ``harness`` command (for environments where the script is not on PATH)."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
