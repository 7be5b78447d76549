"""Backends: one lane per device (control connection, handshake, health, reconnects), its UDP
intake socket, and the cache of the devices' descriptions."""
