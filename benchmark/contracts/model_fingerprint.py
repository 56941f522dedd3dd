"""What identifies an SR model's behaviour: the per-image cache key and the store's row identity.

A cached SR result may only be reused while the model would compute the same thing, so the
fingerprint covers everything that can change its output:

- the weights file's SHA256 (TorchScript, ONNX, ``--weights``);
- the parameters and buffers of every ``torch.nn.Module`` the adapter holds (also those a
  plain function reaches through its closure or globals): a model that loads its own
  checkpoint is covered without knowing where it reads it from;
- the source files that define the adapter, its modules and its function, unless they belong
  to fhbench's engine or to torch (their versions are in the manifest's environment);
- for a folder of SR images, the content of every file in it.

``None`` means the model cannot be fingerprinted (a function with no source file, e.g. one
typed into an interactive session): its results are then never cached.

``model_identity`` is the same hash without fhbench's own code (``baselines/``): what makes a
stored row "the same model" for ``--name``. An upgrade of fhbench that edits a baseline's
source invalidates its cached results, but does not turn ``srresnet --weights W`` into
another model whose row must be ``--replace``d.
"""
from __future__ import annotations

import hashlib
import inspect
import sys
from pathlib import Path
from typing import Iterable, List, Optional

import torch

# Code whose behaviour is pinned by the environment the manifest records, not hashed here.
_VERSIONED_PACKAGES = ("benchmark", "torch", "torchvision", "numpy", "builtins", "onnxruntime")
_FHBENCH_PACKAGES = ("baselines",)  # fhbench's own models: hashed for the cache, not for identity


class NotFingerprintable(Exception):
    """Raised internally when some part of a model has no stable identity."""


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def module_state_sha256(module: torch.nn.Module) -> str:
    """SHA256 over every parameter and buffer: name, dtype, shape and bytes."""
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        # reshape first: a 0-dim buffer (BatchNorm's num_batches_tracked) cannot be viewed as bytes
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _source_file(obj, skip=_VERSIONED_PACKAGES) -> Optional[Path]:
    """The file defining ``obj`` (a class, function or module), or None for code of the
    packages in ``skip`` (versioned elsewhere)."""
    module_name = getattr(obj, "__module__", None) if not inspect.ismodule(obj) else obj.__name__
    if module_name and module_name.split(".")[0] in skip:
        return None
    try:
        path = inspect.getsourcefile(obj)
    except TypeError:  # a builtin or C function: nothing to read
        path = None
    if path is None and module_name in sys.modules:
        path = getattr(sys.modules[module_name], "__file__", None)
    if not path or not Path(path).is_file():
        raise NotFingerprintable(f"no source file for {getattr(obj, '__qualname__', obj)!r}")
    return Path(path).resolve()


def _reachable_modules(fn) -> List[torch.nn.Module]:
    """nn.Modules a plain function reaches through its closure cells and the globals it names."""
    found = []
    code = getattr(fn, "__code__", None)
    for cell in getattr(fn, "__closure__", None) or ():
        try:
            value = cell.cell_contents
        except ValueError:  # an empty cell
            continue
        if isinstance(value, torch.nn.Module):
            found.append(value)
    if code is not None:
        glob = getattr(fn, "__globals__", {})
        found += [glob[n] for n in code.co_names if isinstance(glob.get(n), torch.nn.Module)]
    return found


def _held_modules(obj) -> List[torch.nn.Module]:
    if isinstance(obj, torch.nn.Module):
        return [obj]
    return [v for v in vars(obj).values() if isinstance(v, torch.nn.Module)] if hasattr(obj, "__dict__") else []


def _class_files(modules: Iterable[torch.nn.Module], skip) -> set:
    files = set()
    for m in modules:
        if isinstance(m, torch.jit.ScriptModule):  # its code is inside the file hashed as weights
            continue
        for sub in m.modules():
            path = _source_file(type(sub), skip)
            if path:
                files.add(path)
    return files


def model_fingerprint(adapter, callable_fn=None, extra_sources: Iterable[Path] = (),
                      own_code: bool = True) -> Optional[str]:
    """SHA256 identifying ``adapter``'s behaviour (see the module docstring), or None.

    ``callable_fn``: the tensor function a ``TorchModuleAdapter`` wraps; ``extra_sources``:
    files that built the model (the module named by ``pkg.module:build``); ``own_code=False``
    leaves fhbench's own model code out (``model_identity``)."""
    skip = _VERSIONED_PACKAGES if own_code else _VERSIONED_PACKAGES + _FHBENCH_PACKAGES
    try:
        weights = adapter.weights_sha256()
        modules = _held_modules(adapter)
        files = {Path(p).resolve() for p in extra_sources}
        own = _source_file(type(adapter), skip)
        if own:
            files.add(own)
        if callable_fn is not None:
            modules += _held_modules(callable_fn)
            if not isinstance(callable_fn, torch.nn.Module):
                fn = callable_fn if inspect.isfunction(callable_fn) or inspect.ismethod(callable_fn) \
                    else type(callable_fn)
                path = _source_file(fn, skip)
                if path:
                    files.add(path)
                if inspect.isfunction(callable_fn):
                    modules += _reachable_modules(callable_fn)
        files |= _class_files(modules, skip)
    except NotFingerprintable:
        return None
    h = hashlib.sha256()
    h.update(f"{type(adapter).__module__}.{type(adapter).__qualname__}\0{adapter.name}\0{weights}\n".encode())
    for path in sorted(files):
        h.update(f"{path.name}\0{sha256_bytes(path.read_bytes())}\n".encode())
    # a TorchScript module's weights are its file (hashed above); hashing them again costs time
    for m in modules:
        if not (isinstance(m, torch.jit.ScriptModule) and weights):
            h.update(f"module\0{module_state_sha256(m)}\n".encode())
    return h.hexdigest()


def model_identity(adapter, **parts) -> Optional[str]:
    """``model_fingerprint`` without fhbench's own model code: a stored row's model identity."""
    return model_fingerprint(adapter, own_code=False, **parts)


def folder_content_sha256(folder: Path) -> str:
    """SHA256 over every file under ``folder``: relative path and content."""
    h = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        h.update(f"{path.relative_to(folder).as_posix()}\0{sha256_bytes(path.read_bytes())}\n".encode())
    return h.hexdigest()
