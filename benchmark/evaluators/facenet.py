"""FaceNet InceptionResnetV1 from facenet-pytorch (VGGFace2 or CASIA-WebFace), 512-d.

The weights are NOT in the wheel: facenet-pytorch downloads them from its GitHub release
into ``$TORCH_HOME/checkpoints/``. fhbench looks there (or at --evaluator-weights PATH); online, it
downloads them there on first use; offline, it says where to put the file.
Input: the ArcFace crop rendered at 160x160, (x*255 - 127.5) / 128 (facenet-pytorch's
fixed_image_standardization), RGB.
"""
from pathlib import Path


from ..errors import EvaluatorUnavailable
from ..registry import EVALUATORS
from ..templates import ARCFACE_112x112
from .base import Evaluator

RELEASE = "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/"


def torch_checkpoints_dir() -> Path:
    import torch.hub

    return Path(torch.hub.get_dir()).parent / "checkpoints"  # $TORCH_HOME/checkpoints


class _FaceNet(Evaluator):
    template = ARCFACE_112x112.resized(160, 160)
    embedding_dim = 512
    input_description = "ArcFace crop at 160x160, RGB, (x*255 - 127.5) / 128"
    licence = "MIT (facenet-pytorch); weights trained by David Sandberg's facenet"
    file_name = ""

    def __init__(self, **kw):
        super().__init__(**kw)
        import torch
        from facenet_pytorch import InceptionResnetV1

        self._torch = torch
        net = InceptionResnetV1(pretrained=None, classify=False)
        state = torch.load(self.weights_path, map_location="cpu", weights_only=True)
        state = {k: v for k, v in state.items() if not k.startswith("logits.")}
        missing, unexpected = net.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise EvaluatorUnavailable(
                f"{self.name}: {self.weights_path} is not an InceptionResnetV1 checkpoint "
                f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
        self._net = net.eval().to(self.device)

    @classmethod
    def default_weights(cls):
        path = torch_checkpoints_dir() / cls.file_name
        return path

    @classmethod
    def resolve_weights(cls, weights=None):
        if not weights:
            path = cls.default_weights()
            if not path.is_file():
                _try_download(RELEASE + cls.file_name, path)
        return super().resolve_weights(weights)

    @classmethod
    def why_unavailable(cls):
        path = cls.default_weights()
        return None if path.is_file() else cls.missing_weights_message(path)

    @classmethod
    def missing_weights_message(cls, path):
        return (f"{cls.name}: weights {cls.file_name} not found in {path.parent} (offline?); "
                f"download {RELEASE + cls.file_name} there or pass --evaluator-weights PATH")

    def _embed_crops(self, crops):
        torch = self._torch
        x = torch.from_numpy((crops * 255.0 - 127.5) / 128.0).float().to(self.device)
        with torch.no_grad():
            return self._net(x).cpu().numpy()


def _try_download(url, path):
    """Best effort for online users; offline it fails quietly and the caller reports."""
    import torch.hub

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(path), progress=True)
    except Exception:  # no network: resolve_weights raises the clear message
        if path.exists() and path.stat().st_size == 0:
            path.unlink()


class FaceNetVggFace2(_FaceNet):
    """FaceNet InceptionResnetV1 trained on VGGFace2 (facenet-pytorch), 512-d."""

    name = "facenet-vggface2"
    file_name = "20180402-114759-vggface2.pt"


class FaceNetCasia(_FaceNet):
    """FaceNet InceptionResnetV1 trained on CASIA-WebFace (facenet-pytorch), 512-d."""

    name = "facenet-casia"
    file_name = "20180408-102900-casia-webface.pt"


for _cls in (FaceNetVggFace2, FaceNetCasia):
    EVALUATORS.add(_cls.name, _cls, unavailable_reason=_cls.why_unavailable)
