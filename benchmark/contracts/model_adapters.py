"""The kinds of user model fhbench can wrap (``create_model``): a registered name, a dotted
path ``pkg.module:build`` to a callable, a TorchScript file, an ONNX file, or a folder of
precomputed SR images laid out like the dataset. The interface is ``contracts/model.py``."""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from benchmark.errors import AdapterError, IncompatibleModelError
from benchmark.contracts.model import SRAdapter
from benchmark.registry import MODELS


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
        from benchmark.contracts.evaluator import sha256_file
        return sha256_file(self.weights_file) if self.weights_file else None

    def _fingerprint_parts(self) -> dict:
        return {**super()._fingerprint_parts(), "callable_fn": self.fn}

    def super_resolve(self, lr, keys):
        with torch.no_grad():
            out = self.fn(lr.to(self.device))
        return out.clamp(0, 1) if self.clamp else out


class OnnxAdapter(SRAdapter):
    """An ONNX file run with onnxruntime. Its declared input is checked on loading (one float32
    input (N, 3, h, w); fixed h x w become ``input_size``), a fixed batch dimension is fed
    batches of exactly that size, and ``check_compatible`` runs one blank batch at the level's
    size, so a graph that cannot run there fails before any image work."""

    kind = "onnx"
    fixed_batch: Optional[int] = None

    def __init__(self, path, scale=None, clamp=False, wants_upsampled_input=False, **_):
        from benchmark.contracts.evaluator import onnx_session, short_error

        self.path, self.name, self.scale, self.clamp = Path(path), Path(path).name, scale, clamp
        self.wants_upsampled_input = wants_upsampled_input
        try:
            self.session = onnx_session(str(self.path))
            inputs = self.session.get_inputs()
        except Exception as err:  # onnxruntime's own exception types, one per failure
            raise AdapterError(f"ONNX model {self.path} cannot be loaded by onnxruntime ({short_error(err)})") from None
        if len(inputs) != 1:
            raise AdapterError(f"ONNX model {self.path} has {len(inputs)} inputs "
                               f"({', '.join(i.name for i in inputs)}); an SR model takes one (N, 3, h, w) batch")
        spec = inputs[0]
        self.input_name = spec.name
        shape = list(spec.shape or [])  # ints where fixed, names or None where symbolic
        if spec.type != "tensor(float)":
            raise AdapterError(f"ONNX model {self.path} takes {spec.type} input; fhbench feeds float32 "
                               "(N, 3, h, w) in [0, 1]")
        if shape and len(shape) != 4:
            raise AdapterError(f"ONNX model {self.path} takes input of rank {len(shape)} {shape}; "
                               "fhbench feeds (N, 3, h, w)")
        fixed = [d if isinstance(d, int) and d > 0 else None for d in shape] or [None] * 4
        if fixed[1] not in (None, 3):
            raise AdapterError(f"ONNX model {self.path} takes {fixed[1]} channels {shape}; fhbench feeds RGB "
                               "(N, 3, h, w)")
        self.fixed_batch = fixed[0]
        if fixed[2] and fixed[3]:
            self.input_size = (fixed[2], fixed[3])

    def weights_sha256(self):
        from benchmark.contracts.evaluator import sha256_file
        return sha256_file(self.path)

    def check_compatible(self, lr_hw, hr_hw, scale) -> None:
        super().check_compatible(lr_hw, hr_hw, scale)
        in_hw = tuple(hr_hw) if self.wants_upsampled_input else tuple(lr_hw)
        n = self.fixed_batch or 2  # 2: a graph that silently assumes batch 1 fails here too
        try:
            out = self.super_resolve(torch.zeros((n, 3) + in_hw), None)
        except AdapterError as err:
            raise IncompatibleModelError(str(err)) from None
        if tuple(out.shape) != (n, 3) + tuple(hr_hw):
            raise IncompatibleModelError(
                f"ONNX model {self.path} turns input of shape {(n, 3) + in_hw} into {tuple(out.shape)}, "
                f"not {(n, 3) + tuple(hr_hw)} at the protocol's HR size")

    def _run(self, batch: np.ndarray) -> np.ndarray:
        from benchmark.contracts.evaluator import short_error

        try:
            return np.asarray(self.session.run(None, {self.input_name: batch})[0])
        except Exception as err:
            raise AdapterError(f"ONNX model {self.path} failed on input of shape {tuple(batch.shape)} "
                               f"({short_error(err)})") from None

    def super_resolve(self, lr, keys):
        x = np.ascontiguousarray(lr.detach().cpu().numpy(), dtype=np.float32)
        n = self.fixed_batch
        if n is None:
            out = self._run(x)
        else:  # the graph takes exactly n images: pad the last batch with copies of its last image
            parts = []
            for start in range(0, len(x), n):
                chunk = x[start:start + n]
                real = len(chunk)
                if real < n:
                    chunk = np.concatenate([chunk, np.repeat(chunk[-1:], n - real, axis=0)])
                got = self._run(chunk)
                if len(got) != n:
                    raise AdapterError(f"ONNX model {self.path} returned {len(got)} images for its fixed "
                                       f"batch of {n}")
                parts.append(got[:real])  # the padding's outputs are dropped
            out = np.concatenate(parts) if parts else np.zeros((0, 3, 0, 0), np.float32)
        out = torch.from_numpy(np.ascontiguousarray(out))
        return out.clamp(0, 1) if self.clamp else out


class FolderAdapter(SRAdapter):
    """Precomputed SR images: ``folder/<relpath of the HR image>`` with any image suffix; for a
    protocol with fixed LR sizes, one subfolder per size, ``folder/<h>x<w>/<relpath>``, chosen
    by the size of the LR batch (the layout ``fhbench degrade`` writes for such a protocol)."""

    kind = "folder"
    batch_invariant = True

    def __init__(self, folder, scale=None, **_):
        self.folder, self.name, self.scale = Path(folder), Path(folder).name, scale

    def super_resolve(self, lr, keys):
        from benchmark.faces.images import read_batch

        per_size = self.folder / f"{lr.shape[-2]}x{lr.shape[-1]}"
        folder = per_size if per_size.is_dir() else self.folder
        paths = [self._find(k, folder) for k in keys]
        return torch.from_numpy(read_batch(paths))

    def _find(self, key, folder=None):
        base = (folder or self.folder) / key
        for cand in [base] + [base.with_suffix(s) for s in (".png", ".jpg", ".bmp", ".tif")]:
            if cand.is_file():
                return cand
        raise AdapterError(f"SR folder {folder or self.folder} has no image for {key} (looked for {base.with_suffix('.png')})")

    def weights_sha256(self):
        """The content hash of every file in the folder: the SR images are the weights, and the
        result cache must see any of them change (even with its size and time kept)."""
        if "_content_sha256" not in self.__dict__:
            from benchmark.contracts.model_fingerprint import folder_content_sha256

            self._content_sha256 = folder_content_sha256(self.folder)
        return self._content_sha256


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
    if callable(obj) and not isinstance(obj, SRAdapter):
        obj = TorchModuleAdapter(obj, spec, "callable", scale, clamp, weights, upsampled_input, device=device)
    if not isinstance(obj, SRAdapter):
        raise AdapterError(f"{spec} returned {type(obj).__name__}, not an SRAdapter or a callable")
    # the module named on the command line built the model: an edit to it is a new model
    source = getattr(module, "__file__", None)
    obj.spec_sources = [Path(source)] if source else []
    return obj


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
