"""``python -m harness.launch --task JSON``: one planned run in this process."""

import sys

from .task import _task_main

if __name__ == "__main__":
    sys.exit(_task_main(sys.argv[1:]))
