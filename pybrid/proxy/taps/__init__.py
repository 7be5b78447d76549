"""The proxy's ways out besides the clients: taps fed by the router (see :mod:`.base`)."""
