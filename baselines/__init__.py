"""Reference SR models: one module each, registered in ``benchmark.registry.MODELS``."""
