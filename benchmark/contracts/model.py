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

from typing import Optional, Sequence, Tuple

import numpy as np
import torch

from benchmark.errors import AdapterError, IncompatibleModelError

RANGE_TOLERANCE = 1e-4  # float round-off of a model that clamps in another dtype


class SRAdapter:
    """Base class. Subclasses implement ``super_resolve``."""

    name = "?"
    kind = "builtin"
    scale: Optional[int] = None
    output_size: Optional[Tuple[int, int]] = None
    input_size: Optional[Tuple[int, int]] = None
    wants_upsampled_input = False
    # A model meaningful on one degradation only runs on it, whatever the protocol's: the 'hr'
    # identity model pins 'none', so the HR reference row is an ordinary run, not a special case.
    pinned_degradation: Optional[str] = None
    # True when an image's output cannot depend on the batch it is in (pure per-pixel code);
    # otherwise the batch size is part of the cache key (a conv net at batch 1 vs 32 differs).
    batch_invariant = False

    def super_resolve(self, lr: torch.Tensor, keys: Sequence[str]) -> torch.Tensor:
        raise NotImplementedError

    def weights_sha256(self) -> Optional[str]:
        return None

    def native_hr_size(self) -> Optional[Tuple[int, int]]:
        """The HR size this model was built for (its fixed output size), used where a protocol
        does not pin its own: the faces are then rendered in the model's frame (the dataset's
        aligned frame padded to that aspect and resized), e.g. a 192x192 C-SRIP on lfw-blufr."""
        return tuple(self.output_size) if self.output_size is not None else None

    def fingerprint(self) -> Optional[str]:
        """SHA256 of what decides this model's output (``benchmark.contracts.model_fingerprint``); None when it
        cannot be fingerprinted, and then its results are never cached. Computed once."""
        if "_fingerprint" not in self.__dict__:
            from benchmark.contracts.model_fingerprint import model_fingerprint

            self._fingerprint = model_fingerprint(self, **self._fingerprint_parts())
        return self._fingerprint

    def identity(self) -> Optional[str]:
        """The fingerprint without fhbench's own model code: which model a stored row holds
        (an fhbench upgrade that edits a baseline's source keeps its rows' identity)."""
        if "_identity" not in self.__dict__:
            from benchmark.contracts.model_fingerprint import model_identity

            self._identity = model_identity(self, **self._fingerprint_parts())
        return self._identity

    def _fingerprint_parts(self) -> dict:
        return {"extra_sources": self.__dict__.get("spec_sources", ())}

    def describe(self) -> dict:
        return {"name": self.name, "kind": self.kind, "scale": self.scale,
                "output_size": self.output_size, "input_size": self.input_size,
                "wants_upsampled_input": self.wants_upsampled_input,
                "weights_sha256": self.weights_sha256(), "fingerprint": self.fingerprint()}

    def check_compatible(self, lr_hw, hr_hw, scale) -> None:
        """Refuse a protocol setting this model was not built for (no silent resizing)."""
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


def check_sr_batch_torch(model_name: str, sr, expect_shape, first_index: int = 0, keys=None) -> torch.Tensor:
    """``check_sr_batch`` for a batch that stays on its device: the same checks and one-line
    errors, the same float32 values clipped to [0, 1], as a tensor on the output's device."""
    if not isinstance(sr, torch.Tensor) or sr.device.type == "cpu":
        # on the CPU the NumPy checks read the tensor's own memory and are ~13x faster than
        # torch's single-threaded reductions (isfinite().all(1) alone: 2.2 ms per 32 faces)
        return torch.from_numpy(check_sr_batch(model_name, sr, expect_shape, first_index, keys))
    return check_sr_batch_on_device(model_name, sr, expect_shape, first_index, keys)


def check_sr_batch_on_device(model_name: str, sr: torch.Tensor, expect_shape, first_index: int = 0,
                             keys=None) -> torch.Tensor:
    """The checks of ``check_sr_batch`` as torch ops on the tensor's own device (a GPU's path;
    the tests run it on the CPU too)."""
    sr = sr.detach().float()

    def who(i):
        return f"image {first_index + i}" + (f" ({keys[i]})" if keys is not None else "")

    if tuple(sr.shape) != tuple(expect_shape):
        raise AdapterError(f"model {model_name} returned shape {tuple(sr.shape)}, expected "
                           f"{tuple(expect_shape)} (N, 3, H, W) for images {first_index}..")
    flat = sr.reshape(len(sr), -1)
    bad = ~torch.isfinite(flat).all(1)
    if bool(bad.any()):
        raise AdapterError(f"model {model_name} returned NaN or inf for {who(int(torch.nonzero(bad)[0, 0]))}")
    low, high = flat.min(1).values, flat.max(1).values
    bad = (low < -RANGE_TOLERANCE) | (high > 1 + RANGE_TOLERANCE)
    if bool(bad.any()):
        i = int(torch.nonzero(bad)[0, 0])
        raise AdapterError(f"model {model_name} returned values in [{float(low[i]):.4g}, "
                           f"{float(high[i]):.4g}] outside [0, 1] for {who(i)} "
                           "(clamp in the model, or run with --clamp)")
    return sr.clamp(0.0, 1.0)
