"""Helpers shared by the test suites (reference peers, loopback utilities)."""
