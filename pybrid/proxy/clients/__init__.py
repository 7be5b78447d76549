"""Client connections: the TCP front door, authentication, sessions, the FIFO scheduler and
each client's bounded sender."""
