#!/usr/bin/env python3
"""Mock of HubSpot's Marketing Events API for the hubspot_events tests.

The entry point of the package mock_hubspot/ next to this file: its
docstring (mock_hubspot/__init__.py) describes the mock, mock_hubspot/knobs.py
documents every knob.  Run ``mock_hubspot.py --help`` for the command line
and ``mock_hubspot.py --self-test`` for a quick check.
"""

import os
import sys

sys.dont_write_bytecode = True  # test/ is copied into work folders: no __pycache__ beside the sources
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from mock_hubspot.cli import main  # after the sys.path insertion above

if __name__ == "__main__":
    sys.exit(main())
