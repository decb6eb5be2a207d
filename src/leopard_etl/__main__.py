"""``python -m leopard_etl``: the same command line as ``leopard-etl``."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
