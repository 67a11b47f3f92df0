"""python3 -m mock_hubspot (from test/): the same as test/mock_hubspot.py."""

import sys

from .cli import main

sys.exit(main())
