"""The NATS JetStream export: a bridge process reading the proxy's shared-memory tap."""
