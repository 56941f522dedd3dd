"""Face-recognition evaluators: one module each, registered in ``EVALUATORS``."""
from benchmark.errors import ConfigError
from benchmark.registry import EVALUATORS


def create_evaluator(name: str, weights=None, batch_size: int = 64, device: str = "cpu", backend=None,
                     precision: str = "fp32"):
    """``create_evaluator("sface")``: an evaluator ready to embed, or a clear error.

    ``backend``: None for the evaluator's default (onnxruntime for the ONNX evaluators, whose
    figures are the reference), or one of its class's ``backends`` ("onnxruntime", "torch",
    "auto" for sface and arcface-mbf); anything else is a ConfigError naming it. The evaluator's
    ``backend`` attribute says which one runs, and ``describe()`` records it. ``precision``
    (fp32, fp16, bf16; checked by the caller) is the torch backend's autocast: other than fp32
    on another backend is a ConfigError."""
    cls = EVALUATORS.get(name)
    if backend is not None:
        cls.check_backend(backend)  # before loading any weights
    evaluator = cls(weights=weights, batch_size=batch_size, device=device, backend=backend)
    if precision != "fp32" and getattr(evaluator, "backend", None) != "torch":
        raise ConfigError(f"--precision {precision} needs an evaluator on torch; {evaluator.name} runs on "
                          f"{getattr(evaluator, 'backend', 'its own backend')} (pass --backend torch)")
    evaluator.precision = precision
    return evaluator
