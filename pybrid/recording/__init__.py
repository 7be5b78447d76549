"""Run recordings: where a run's samples go while it streams (memory, HDF5) and the on-disk
layout shared by ``pybrid-run`` and ``pybrid-monitor``; see ``docs/client.md#recordings``."""
