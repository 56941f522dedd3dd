"""fhbench: task-based evaluation of face super-resolution (import name ``benchmark``)."""
__version__ = "0.1.0"
