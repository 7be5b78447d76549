"""Same-host shared-memory sample tap: the proxy as a ZeroBuffer writer (see docs/monitors.md)."""
