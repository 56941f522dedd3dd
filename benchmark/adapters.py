"""The SR model interface, and the built-in kinds of model a user can hand to fhbench.

An adapter turns a batch of LR faces into SR faces:
  input  float32 torch tensor (N, 3, h, w), RGB, [0, 1]  (or the LR bicubic-upsampled
         to the HR size, when ``wants_upsampled_input``);
  output (N, 3, H, W), RGB, [0, 1], H x W = the protocol's HR size.
It declares its ``scale`` (or a fixed ``output_size``) and optionally the ``input_size``
it expects; the runner refuses a mismatch instead of resizing silently, and checks each
output batch (``check_sr_batch``). A model that does not clamp its output must be run
with ``clamp=True`` (recorded in the manifest): out-of-range output is otherwise an error.

Kinds (``create_model``): a registered name (``bicubic``, ``nearest``, ``hr`` and the
baselines), a dotted path ``pkg.module:build`` to a callable, a TorchScript file, an
ONNX file, or a folder of precomputed SR images laid out like the dataset.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Optional, Sequence, Tuple

import numpy as np
import torch

from .errors import AdapterError, IncompatibleModelError
from .registry import MODELS

RANGE_TOLERANCE = 1e-4  # float round-off of a model that clamps in another dtype


class SRAdapter:
    """Base class. Subclasses implement ``super_resolve``."""

    name = "?"
    kind = "builtin"
    scale: Optional[int] = None
    output_size: Optional[Tuple[int, int]] = None
    input_size: Optional[Tuple[int, int]] = None
    wants_upsampled_input = False
    is_reference_hr = False  # the 'hr' upper bound: the runner feeds it no degradation

    def super_resolve(self, lr: torch.Tensor, keys: Sequence[str]) -> torch.Tensor:
        raise NotImplementedError

    def weights_sha256(self) -> Optional[str]:
        return None

    def describe(self) -> dict:
        return {"name": self.name, "kind": self.kind, "scale": self.scale,
                "output_size": self.output_size, "input_size": self.input_size,
                "wants_upsampled_input": self.wants_upsampled_input,
                "weights_sha256": self.weights_sha256()}

    def check_compatible(self, lr_hw, hr_hw, scale) -> None:
        """Refuse a protocol setting this model was not built for (no silent resizing)."""
        if self.is_reference_hr:
            return
        if self.output_size is not None and tuple(self.output_size) != tuple(hr_hw):
            raise IncompatibleModelError(
                f"model {self.name} outputs {self.output_size[0]}x{self.output_size[1]} "
                f"but the protocol's HR size is {hr_hw[0]}x{hr_hw[1]}")
        if self.scale is not None and scale is not None and self.scale != scale:
            raise IncompatibleModelError(f"model {self.name} is a {self.scale}x model but the protocol "
                                         f"asked for {scale}x")
        if (self.scale is not None and not self.wants_upsampled_input and self.output_size is None
                and (lr_hw[0] * self.scale, lr_hw[1] * self.scale) != tuple(hr_hw)):
            raise IncompatibleModelError(
                f"model {self.name} upsamples {self.scale}x, but the protocol turns {lr_hw[0]}x{lr_hw[1]} "
                f"LR faces into {hr_hw[0]}x{hr_hw[1]} HR faces")
        want = tuple(hr_hw) if self.wants_upsampled_input else tuple(lr_hw)
        if self.input_size is not None and tuple(self.input_size) != want:
            raise IncompatibleModelError(
                f"model {self.name} expects {self.input_size[0]}x{self.input_size[1]} "
                f"input but gets {want[0]}x{want[1]}")


def check_sr_batch(model_name: str, sr, expect_shape, first_index: int = 0, keys=None) -> np.ndarray:
    """Validate one output batch; return it as float32 numpy. Errors name the first bad image."""
    if isinstance(sr, torch.Tensor):
        sr = sr.detach().cpu().float().numpy()
    sr = np.asarray(sr, dtype=np.float32)

    def who(i):
        return f"image {first_index + i}" + (f" ({keys[i]})" if keys is not None else "")

    if sr.shape != tuple(expect_shape):
        raise AdapterError(f"model {model_name} returned shape {tuple(sr.shape)}, expected "
                           f"{tuple(expect_shape)} (N, 3, H, W) for images {first_index}..")
    bad = ~np.isfinite(sr).reshape(len(sr), -1).all(1)
    if bad.any():
        raise AdapterError(f"model {model_name} returned NaN or inf for {who(int(np.flatnonzero(bad)[0]))}")
    flat = sr.reshape(len(sr), -1)
    bad = (flat.min(1) < -RANGE_TOLERANCE) | (flat.max(1) > 1 + RANGE_TOLERANCE)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise AdapterError(f"model {model_name} returned values in [{flat[i].min():.4g}, "
                           f"{flat[i].max():.4g}] outside [0, 1] for {who(i)} "
                           "(clamp in the model, or run with --clamp)")
    return np.clip(sr, 0.0, 1.0)


# --- built-in baselines ---------------------------------------------------------------

@MODELS.register("hr", summary="the original HR images: the upper bound of every table")
class ReferenceHR(SRAdapter):
    name = "hr"
    is_reference_hr = True

    def __init__(self, scale=None, **_):
        self.scale = None

    def super_resolve(self, lr, keys):
        return lr  # the runner hands it the HR images themselves


@MODELS.register("bicubic", summary="MATLAB bicubic upsampling of the LR image (no SR)")
class BicubicUpsampling(SRAdapter):
    name = "bicubic"
    wants_upsampled_input = True  # the runner's MATLAB-bicubic upsampling is the output

    def __init__(self, scale=None, **_):
        self.scale = scale

    def super_resolve(self, lr, keys):
        return lr.clamp(0, 1)  # bicubic overshoots at edges; 8-bit storage would clip too


@MODELS.register("nearest", summary="nearest-neighbour upsampling (pixel replication)")
class NearestUpsampling(SRAdapter):
    name = "nearest"

    def __init__(self, scale=None, output_size=None, **_):
        self.scale = scale
        self.output_size = output_size

    def check_compatible(self, lr_hw, hr_hw, scale) -> None:
        # Built without a scale (an lr_sizes protocol): replicate pixels up to the HR size.
        if self.scale is None and self.output_size is None:
            self.output_size = tuple(hr_hw)
        super().check_compatible(lr_hw, hr_hw, scale)

    def super_resolve(self, lr, keys):
        # Built from --scale alone (create_model), output_size is None: replicate by scale.
        return torch.nn.functional.interpolate(
            lr, size=self.output_size, scale_factor=None if self.output_size else self.scale,
            mode="nearest")


# --- user models ----------------------------------------------------------------------

class TorchModuleAdapter(SRAdapter):
    """Wraps any callable tensor -> tensor (an nn.Module, a TorchScript module, a function)."""

    def __init__(self, fn, name, kind, scale=None, clamp=False, weights_file=None,
                 wants_upsampled_input=False, input_size=None, device="cpu"):
        self.fn, self.name, self.kind, self.scale, self.clamp = fn, name, kind, scale, clamp
        self.weights_file, self.device = weights_file, device
        self.wants_upsampled_input = wants_upsampled_input
        self.input_size = input_size
        if isinstance(fn, torch.nn.Module):
            fn.eval().to(device)

    def weights_sha256(self):
        from .evaluators.base import sha256_file
        return sha256_file(self.weights_file) if self.weights_file else None

    def super_resolve(self, lr, keys):
        with torch.no_grad():
            out = self.fn(lr.to(self.device))
        return out.clamp(0, 1) if self.clamp else out


class OnnxAdapter(SRAdapter):
    kind = "onnx"

    def __init__(self, path, scale=None, clamp=False, wants_upsampled_input=False, **_):
        from .evaluators.base import onnx_session

        self.path, self.name, self.scale, self.clamp = Path(path), Path(path).name, scale, clamp
        self.wants_upsampled_input = wants_upsampled_input
        self.session = onnx_session(str(self.path))
        self.input_name = self.session.get_inputs()[0].name

    def weights_sha256(self):
        from .evaluators.base import sha256_file
        return sha256_file(self.path)

    def super_resolve(self, lr, keys):
        out = torch.from_numpy(self.session.run(None, {self.input_name: lr.numpy()})[0])
        return out.clamp(0, 1) if self.clamp else out


class FolderAdapter(SRAdapter):
    """Precomputed SR images: ``folder/<relpath of the HR image>`` with any image suffix."""

    kind = "folder"

    def __init__(self, folder, scale=None, **_):
        self.folder, self.name, self.scale = Path(folder), Path(folder).name, scale

    def super_resolve(self, lr, keys):
        from .data.images import read_batch

        paths = [self._find(k) for k in keys]
        return torch.from_numpy(read_batch(paths))

    def _find(self, key):
        base = self.folder / key
        for cand in [base] + [base.with_suffix(s) for s in (".png", ".jpg", ".bmp", ".tif")]:
            if cand.is_file():
                return cand
        raise AdapterError(f"SR folder {self.folder} has no image for {key} (looked for {base.with_suffix('.png')})")

    def weights_sha256(self):
        """A hash of the folder's listing (relative path, size, modification time of every
        file): the SR images are the weights, and the result cache must see them change."""
        import hashlib

        h = hashlib.sha256()
        for path in sorted(p for p in self.folder.rglob("*") if p.is_file()):
            st = path.stat()
            h.update(f"{path.relative_to(self.folder)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        return h.hexdigest()


def create_model(spec: str, scale: Optional[int] = None, weights: Optional[str] = None,
                 clamp: bool = False, device: str = "cpu", upsampled_input: bool = False) -> SRAdapter:
    """Resolve ``--model``: registry name, ``pkg.mod:build``, ``*.pt|*.ts|*.pth``, ``*.onnx``, or a folder."""
    if spec in MODELS:
        return MODELS.get(spec)(scale=scale, weights=weights, device=device)
    path = Path(spec).expanduser()
    if path.is_dir():
        return FolderAdapter(path, scale=scale)
    if path.suffix.lower() == ".onnx":
        if not path.is_file():
            raise AdapterError(f"ONNX model {path} does not exist")
        return OnnxAdapter(path, scale=scale, clamp=clamp, wants_upsampled_input=upsampled_input)
    if path.suffix.lower() in (".pt", ".pth", ".ts", ".torchscript"):
        if not path.is_file():
            raise AdapterError(f"TorchScript model {path} does not exist")
        try:
            module = torch.jit.load(str(path), map_location=device)
        except Exception as err:
            raise AdapterError(f"{path} is not a TorchScript file ({type(err).__name__}); "
                               "save the model with torch.jit.script/trace and torch.jit.save") from None
        return TorchModuleAdapter(module, path.name, "torchscript", scale, clamp, path,
                                  upsampled_input, device=device)
    if ":" in spec:
        return _from_dotted_path(spec, scale, weights, clamp, device, upsampled_input)
    MODELS.get(spec)  # raises the registry's 'unknown model' error with suggestions


def _from_dotted_path(spec, scale, weights, clamp, device, upsampled_input):
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise AdapterError(f"cannot import {module_name!r} for model {spec}: {err}") from None
    if not hasattr(module, attr):
        raise AdapterError(f"module {module_name} has no attribute {attr!r} (model {spec})")
    build = getattr(module, attr)
    if isinstance(build, type) and issubclass(build, SRAdapter):
        obj = build(scale=scale, weights=weights)
    elif _takes_kwargs(build):  # a factory: build(scale=..., weights=...) -> model
        obj = build(scale=scale, weights=weights)
    else:  # already a tensor -> tensor function
        obj = build
    if isinstance(obj, SRAdapter):
        return obj
    if callable(obj):
        return TorchModuleAdapter(obj, spec, "callable", scale, clamp, weights, upsampled_input, device=device)
    raise AdapterError(f"{spec} returned {type(obj).__name__}, not an SRAdapter or a callable")


def _takes_kwargs(fn) -> bool:
    """A builder ``build(scale=..., weights=...)`` (called) vs a plain tensor function (used)."""
    import inspect

    if isinstance(fn, torch.nn.Module):
        return False
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return "scale" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())
