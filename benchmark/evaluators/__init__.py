"""Face-recognition evaluators: one module each, registered in ``EVALUATORS``."""
from benchmark.registry import EVALUATORS


def create_evaluator(name: str, weights=None, batch_size: int = 64, device: str = "cpu"):
    """``create_evaluator("sface")``: an evaluator ready to embed, or a clear error."""
    return EVALUATORS.get(name)(weights=weights, batch_size=batch_size, device=device)
