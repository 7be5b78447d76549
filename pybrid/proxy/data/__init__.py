"""The data path: run traffic from the backends to the session that started the run (the
router), its protobuf-free fast path (layout) and per-carrier chunk-sequence accounting."""
