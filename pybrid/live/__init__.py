"""The live oscilloscope view: what it keeps of runs, its WebSocket and its page (served by
the proxy's status port and by ``pybrid-monitor --web``)."""
