"""`python -m kiosk` is the same as the `kiosk` console script."""

import sys

from kiosk.cli.main import main

sys.exit(main())
