"""Face-recognition evaluators: one module each, registered in ``EVALUATORS``."""
from benchmark.registry import EVALUATORS


def create_evaluator(name: str, weights=None, batch_size: int = 64, device: str = "cpu", backend=None):
    """``create_evaluator("sface")``: an evaluator ready to embed, or a clear error.

    ``backend``: None for the evaluator's default (onnxruntime for the ONNX evaluators, whose
    figures are the reference), or one of its class's ``backends`` ("onnxruntime", "torch",
    "auto" for sface and arcface-mbf); anything else is a ConfigError naming it. The evaluator's
    ``backend`` attribute says which one runs, and ``describe()`` records it."""
    cls = EVALUATORS.get(name)
    if backend is not None:
        cls.check_backend(backend)  # before loading any weights
    return cls(weights=weights, batch_size=batch_size, device=device, backend=backend)
