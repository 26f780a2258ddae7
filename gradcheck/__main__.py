"""``python -m gradcheck``: see :mod:`gradcheck.cli`."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
