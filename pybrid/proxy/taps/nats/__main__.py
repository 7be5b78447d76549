"""``python -m pybrid.proxy.taps.nats``: the NATS bridge (:mod:`pybrid.proxy.taps.nats.cli`)."""

import sys

from pybrid.proxy.taps.nats.cli import main

sys.exit(main())
