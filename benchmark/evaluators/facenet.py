"""FaceNet InceptionResnetV1 from facenet-pytorch (VGGFace2 or CASIA-WebFace), 512-d.

The weights are NOT in the wheel: facenet-pytorch downloads them from its GitHub release
into ``$TORCH_HOME/checkpoints/``. fhbench looks there (or at --evaluator-weights PATH); online, it
downloads them there on first use; offline, it says where to put the file. The vggface2 file
is SHA256-pinned (``FACENET_SHA256``): checked after a download, before the file is moved into
place, and each time the cached copy is loaded; casia-webface has no published hash yet (its
hash is recorded in every manifest). A file passed with
--evaluator-weights is the user's own (fine-tuned) network: not pinned, its hash recorded.
Input: the ArcFace crop rendered at 160x160, (x*255 - 127.5) / 128 (facenet-pytorch's
fixed_image_standardization), RGB.
"""
import os
import pickle
from pathlib import Path

from benchmark.errors import EvaluatorUnavailable
from benchmark.registry import EVALUATORS
from benchmark.faces.templates import ARCFACE_112x112
from benchmark.contracts.evaluator import Evaluator, PixelFeed, sha256_file, short_error, torch_device

RELEASE = "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/"

# SHA256 of the release files facenet-pytorch 2.5.3 downloads (its load_weights pins none).
# vggface2: 111,898,327 bytes, the value several public projects verify the v2.2.9 asset
# against. casia-webface: no published SHA256 was found offline, so it is not verified (None)
# until someone who can download it records the value here.
FACENET_SHA256 = {
    "20180402-114759-vggface2.pt": "281cebca8662831adb987a874bdcb36e73f5b1c6dc5ee5878f305e985625d99b",
    "20180408-102900-casia-webface.pt": None,
}


def torch_checkpoints_dir() -> Path:
    import torch.hub

    return Path(torch.hub.get_dir()).parent / "checkpoints"  # $TORCH_HOME/checkpoints


class _FaceNet(Evaluator):
    template = ARCFACE_112x112.resized(160, 160)
    embedding_dim = 512
    pixels = PixelFeed(127.5, 128.0)  # facenet-pytorch's fixed_image_standardization
    input_description = "ArcFace crop at 160x160, RGB, (x*255 - 127.5) / 128"
    licence = "MIT (facenet-pytorch); weights trained by David Sandberg's facenet"
    file_name = ""
    backends = ("torch",)
    runs_on_device = True

    def __init__(self, **kw):
        super().__init__(**kw)
        import torch
        from facenet_pytorch import InceptionResnetV1

        self._torch = torch
        self._torch_device = torch_device(self.name, self.device)  # a bad --device: one line, now
        net = InceptionResnetV1(pretrained=None, classify=False)
        try:  # weights_only: a pickle of anything else is refused, never executed
            state = torch.load(self.weights_path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:  # torch's message advises weights_only=False: not ours to give
            raise self._unusable("is not a torch state dict (unreadable, or objects other than "
                                 "tensors, which fhbench does not unpickle)") from None
        except Exception as err:
            raise self._unusable("is not a torch state dict", err) from None
        if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
            raise self._unusable(f"holds a {type(state).__name__}, not an InceptionResnetV1 state dict")
        state = {k: v for k, v in state.items() if not k.startswith("logits.")}
        try:
            missing, unexpected = net.load_state_dict(state, strict=False)
        except Exception as err:  # tensors of other shapes: another network's weights
            raise self._unusable("is not an InceptionResnetV1 checkpoint", err) from None
        if missing or unexpected:
            raise EvaluatorUnavailable(
                f"{self.name}: {self.weights_path} is not an InceptionResnetV1 checkpoint "
                f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
        self._net = net.eval().to(self._torch_device)
        self._check_network()

    @classmethod
    def default_weights(cls):
        path = torch_checkpoints_dir() / cls.file_name
        return path

    @classmethod
    def expected_sha256(cls):
        return FACENET_SHA256.get(cls.file_name)

    @classmethod
    def wrong_sha256_message(cls, path, sha):
        return (f"{cls.name}: weights file {path} has the wrong SHA256 (expected {sha}): not the published "
                f"{cls.file_name}; delete it to download it again, or pass --evaluator-weights PATH")

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
        if not path.is_file():
            return cls.missing_weights_message(path)
        sha = cls.expected_sha256()
        return cls.wrong_sha256_message(path, sha) if sha and sha256_file(path) != sha else None

    @classmethod
    def missing_weights_message(cls, path):
        return (f"{cls.name}: weights {cls.file_name} not found in {path.parent} (offline?); "
                f"download {RELEASE + cls.file_name} there or pass --evaluator-weights PATH")

    def result_settings(self):
        return {"device": self._torch_device.type}  # CUDA and CPU convolutions differ by ~1e-7

    def _embed_crops(self, crops):
        torch = self._torch
        x = torch.from_numpy(self.pixels(crops)).float().to(self.device)
        with torch.no_grad():
            return self._net(x).cpu().numpy()

    def torch_network(self):
        return self._net


def _try_download(url, path):
    """Best effort for online users; offline it fails quietly and the caller reports. The file
    is downloaded beside ``path`` and moved there only once its SHA256 is the pinned one."""
    import torch.hub

    part = path.with_name(path.name + ".part")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(part), progress=True)
    except Exception:  # no network: resolve_weights raises the clear message
        part.unlink(missing_ok=True)
        return
    expected = FACENET_SHA256.get(path.name)
    got = sha256_file(part) if expected else None
    if got != expected:
        part.unlink(missing_ok=True)
        raise EvaluatorUnavailable(f"{url} downloaded with SHA256 {got}, not the published {expected}; "
                                   f"nothing was saved to {path} (retry, or put the file there by hand)")
    try:
        os.replace(part, path)
    except OSError as err:
        part.unlink(missing_ok=True)
        raise EvaluatorUnavailable(f"cannot save {path} ({short_error(err)})") from None


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
