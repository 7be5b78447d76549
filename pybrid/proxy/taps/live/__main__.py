"""``python -m pybrid.proxy.taps.live``: the live-view process (:mod:`.cli`)."""

import sys

from pybrid.proxy.taps.live.cli import main

sys.exit(main())
