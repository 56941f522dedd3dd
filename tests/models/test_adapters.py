"""SR adapters: output checks, every kind of --model, and compatibility refusals."""
import hashlib
import re
import textwrap

import cv2
import numpy as np
import pytest
import torch

from benchmark.contracts.model_adapters import create_model
from benchmark.contracts.model import RANGE_TOLERANCE, SRAdapter, check_sr_batch
from benchmark.errors import AdapterError, UnknownNameError


def lr_batch(n=2, h=7, w=6, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).random((n, 3, h, w), dtype=np.float32))


def nearest_oracle(x: np.ndarray, s: int) -> np.ndarray:
    return x.repeat(s, axis=2).repeat(s, axis=3)


class Upsample2x(torch.nn.Module):
    def forward(self, x):
        return torch.nn.functional.interpolate(x, scale_factor=2.0, mode="nearest")


# --- check_sr_batch -------------------------------------------------------------------

def test_check_sr_batch_wrong_shape():
    with pytest.raises(AdapterError, match=r"model m returned shape \(2, 3, 8, 8\), expected \(2, 3, 8, 9\)"):
        check_sr_batch("m", np.zeros((2, 3, 8, 8)), (2, 3, 8, 9))
    with pytest.raises(AdapterError, match="shape"):
        check_sr_batch("m", np.zeros((2, 8, 8, 3)), (2, 3, 8, 8))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_check_sr_batch_non_finite_names_model_and_image(bad):
    x = np.full((5, 3, 4, 4), 0.5, np.float32)
    x[3, 1, 2, 2] = bad
    with pytest.raises(AdapterError, match=r"model my-sr returned NaN or inf for image 3\b"):
        check_sr_batch("my-sr", x, x.shape)
    # Batches after the first: the index counts from the batch's first image, with its key.
    with pytest.raises(AdapterError, match=r"image 13 \(d/3\.jpg\)"):
        check_sr_batch("my-sr", torch.from_numpy(x), x.shape, first_index=10,
                       keys=[f"d/{i}.jpg" for i in range(5)])


@pytest.mark.parametrize("value", [1.01, -0.01, 1 + 3 * RANGE_TOLERANCE, 255.0])
def test_check_sr_batch_out_of_range(value):
    x = np.full((4, 3, 4, 4), 0.5, np.float32)
    x[2, 0, 0, 0] = value
    with pytest.raises(AdapterError, match=r"model m .* outside \[0, 1\] for image 2.*--clamp"):
        check_sr_batch("m", x, x.shape)


def test_check_sr_batch_within_tolerance_is_clipped():
    x = np.full((2, 3, 4, 4), 0.25, np.float64)
    x[0, 0, 0, 0] = -0.5 * RANGE_TOLERANCE
    x[1, 2, 3, 3] = 1 + 0.5 * RANGE_TOLERANCE
    out = check_sr_batch("m", torch.from_numpy(x), x.shape)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    assert out[0, 0, 0, 0] == 0.0 and out[1, 2, 3, 3] == 1.0
    assert out[0, 1, 0, 0] == np.float32(0.25)


# --- create_model: registered names ---------------------------------------------------

def test_registered_baselines():
    lr = lr_batch()
    hr = create_model("hr")
    assert hr.pinned_degradation == "none" and hr.name == "hr"
    assert hr.super_resolve(lr, ["k"] * 2) is lr

    bic = create_model("bicubic", scale=4)
    assert bic.wants_upsampled_input and bic.scale == 4
    up = lr * 1.5 - 0.2  # bicubic overshoot outside [0, 1]
    np.testing.assert_array_equal(bic.super_resolve(up, None).numpy(), np.clip(up.numpy(), 0, 1))


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_nearest_replicates_pixels(scale):
    lr = lr_batch()
    model = create_model("nearest", scale=scale)
    out = model.super_resolve(lr, None)
    np.testing.assert_array_equal(out.numpy(), nearest_oracle(lr.numpy(), scale))


def test_unknown_name_suggests():
    with pytest.raises(UnknownNameError, match="did you mean bicubic"):
        create_model("bicubc")
    with pytest.raises(UnknownNameError, match="unknown model 'no-such-model'"):
        create_model("no-such-model")


# --- create_model: a dotted path to a callable ----------------------------------------

@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """A module ``fhb_user_sr`` on sys.path with a factory, a plain function, an
    SRAdapter subclass and a non-callable."""
    (tmp_path / "fhb_user_sr.py").write_text(textwrap.dedent("""
        import torch
        from benchmark.contracts.model import SRAdapter

        class Up(torch.nn.Module):
            def __init__(self, s):
                super().__init__()
                self.s = s
            def forward(self, x):
                return torch.nn.functional.interpolate(x, scale_factor=float(self.s), mode="nearest")

        def build(scale=None, weights=None):
            return Up(scale)

        def double(x):
            return x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)

        class MyAdapter(SRAdapter):
            name = "mine"
            def __init__(self, scale=None, weights=None):
                self.scale = scale
            def super_resolve(self, lr, keys):
                return lr

        NOT_CALLABLE = 3
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "fhb_user_sr"
    import sys
    sys.modules.pop("fhb_user_sr", None)


def test_dotted_path_factory_function_and_adapter_class(user_module):
    lr = lr_batch()
    built = create_model(f"{user_module}:build", scale=4)
    assert built.kind == "callable" and built.scale == 4 and built.name == f"{user_module}:build"
    np.testing.assert_array_equal(built.super_resolve(lr, None).numpy(), nearest_oracle(lr.numpy(), 4))

    plain = create_model(f"{user_module}:double", scale=2)
    np.testing.assert_array_equal(plain.super_resolve(lr, None).numpy(), nearest_oracle(lr.numpy(), 2))

    adapter = create_model(f"{user_module}:MyAdapter", scale=3)
    assert isinstance(adapter, SRAdapter) and adapter.name == "mine" and adapter.scale == 3


def test_dotted_path_clamp(user_module):
    model = create_model(f"{user_module}:double", scale=2, clamp=True)
    out = model.super_resolve(lr_batch() * 3 - 1, None)
    assert out.min() >= 0 and out.max() <= 1


def test_dotted_path_errors(user_module):
    with pytest.raises(AdapterError, match="no attribute 'missing'"):
        create_model(f"{user_module}:missing")
    with pytest.raises(AdapterError, match="cannot import 'fhb_no_such_module'"):
        create_model("fhb_no_such_module:build")
    with pytest.raises(AdapterError, match="not an SRAdapter or a callable"):
        create_model(f"{user_module}:NOT_CALLABLE")


# --- create_model: TorchScript and ONNX files -----------------------------------------

@pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")  # TorchScript is deprecated, still supported
def test_torchscript_file(tmp_path):
    path = tmp_path / "up2.pt"
    torch.jit.save(torch.jit.script(Upsample2x()), str(path))
    model = create_model(str(path), scale=2)
    assert model.kind == "torchscript" and model.name == "up2.pt"
    lr = lr_batch()
    np.testing.assert_array_equal(model.super_resolve(lr, None).numpy(), nearest_oracle(lr.numpy(), 2))
    assert model.describe()["weights_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")
def test_torchscript_errors(tmp_path):
    with pytest.raises(AdapterError, match="does not exist"):
        create_model(str(tmp_path / "absent.pt"))
    state_dict = tmp_path / "weights.pth"  # a plain state_dict, not TorchScript
    torch.save({"w": torch.zeros(2)}, str(state_dict))
    with pytest.raises(AdapterError, match=re.escape(str(state_dict)) + " is not a TorchScript file"):
        create_model(str(state_dict))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the legacy (offline) ONNX exporter
def test_onnx_file(tmp_path):
    pytest.importorskip("onnxruntime")
    path = tmp_path / "up2.onnx"
    try:
        torch.onnx.export(Upsample2x(), (lr_batch(1),), str(path), dynamo=False, input_names=["lr"],
                          output_names=["sr"], dynamic_axes={"lr": {0: "n"}, "sr": {0: "n"}})
    except Exception as err:  # the exporter may need packages this machine lacks offline
        pytest.skip(f"torch.onnx.export unavailable here: {type(err).__name__}: {err}")
    model = create_model(str(path), scale=2)
    assert model.kind == "onnx" and model.name == "up2.onnx"
    lr = lr_batch(3)
    np.testing.assert_array_equal(model.super_resolve(lr, None).numpy(), nearest_oracle(lr.numpy(), 2))
    assert model.describe()["weights_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(AdapterError, match="does not exist"):
        create_model(str(tmp_path / "absent.onnx"))


# --- create_model: a folder of precomputed SR images ----------------------------------

def test_sr_folder(tmp_path):
    rng = np.random.default_rng(5)
    folder = tmp_path / "my_sr"
    sr = (rng.random((2, 8, 6, 3)) * 255).astype(np.uint8)  # RGB
    keys = ["Alice/Alice_0001.jpg", "Bob/Bob_0002.jpg"]
    for key, img in zip(keys, sr):  # saved as PNG (lossless) under the HR key's stem
        (folder / key).parent.mkdir(parents=True)
        cv2.imwrite(str((folder / key).with_suffix(".png")), img[:, :, ::-1])
    model = create_model(str(folder), scale=8)
    assert model.kind == "folder" and model.name == "my_sr" and model.scale == 8
    out = model.super_resolve(lr_batch(2), keys).numpy()
    np.testing.assert_allclose(out, sr.transpose(0, 3, 1, 2) / 255.0, atol=1e-7)
    with pytest.raises(AdapterError, match=re.escape("Carol/Carol_0001.jpg")):
        model.super_resolve(lr_batch(1), ["Carol/Carol_0001.jpg"])


# --- check_compatible -----------------------------------------------------------------

class FixedInput(SRAdapter):
    name = "fixed"
    scale = 4
    input_size = (28, 24)


def test_check_compatible_refusals():
    fixed = FixedInput()
    fixed.check_compatible((28, 24), (112, 96), 4)  # the setting it was built for
    with pytest.raises(AdapterError, match="model fixed is a 4x model but the protocol asked for 8x"):
        fixed.check_compatible((14, 12), (112, 96), 8)
    fixed.scale = None  # no declared scale: only the input size is checked
    with pytest.raises(AdapterError, match="model fixed expects 28x24 input but gets 14x12"):
        fixed.check_compatible((14, 12), (112, 96), 8)

    upsampled = FixedInput()
    upsampled.wants_upsampled_input, upsampled.input_size = True, (112, 96)
    upsampled.check_compatible((28, 24), (112, 96), 4)  # it sees the HR-sized bicubic input
    with pytest.raises(AdapterError, match="expects 112x96 input but gets 128x128"):
        upsampled.check_compatible((32, 32), (128, 128), 4)

    fixed_out = FixedInput()
    fixed_out.output_size, fixed_out.input_size = (128, 128), None
    with pytest.raises(AdapterError, match="outputs 128x128 but the protocol's HR size is 112x96"):
        fixed_out.check_compatible((28, 24), (112, 96), 4)


def test_check_compatible_registered_models():
    with pytest.raises(AdapterError, match="model nearest is a 4x model but the protocol asked for 8x"):
        create_model("nearest", scale=4).check_compatible((14, 12), (112, 96), 8)
    create_model("hr").check_compatible((14, 12), (112, 96), 8)  # the reference runs at any setting
