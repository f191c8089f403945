"""`python -m nbflow`: the same as the `nbflow` command."""

import sys

from nbflow.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
