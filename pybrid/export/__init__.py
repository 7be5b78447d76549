"""Exporters: run traffic leaving the proxy's host (``pybrid.export.nats``: NATS JetStream)."""
