"""The harness on the device (engine/torch_pipeline.py, torch_stages.py) stores the NumPy
pipeline's numbers: the 8-bit LR and the upsampled model input are the same bytes, PSNR within
1e-6 dB and SSIM within 1e-7 of the NumPy oracles (float64 on the CPU), the same embeddings.
Oracles: benchmark.faces.resize and benchmark.metrics.image (NumPy), the NumPy ImagePipeline.
Faces: real LFW when ../shared/data is present, else smooth synthetic faces."""
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark.contracts.degradation import make_degradation
from benchmark.engine.pipeline import ImagePipeline, Level
from benchmark.engine.torch_pipeline import TorchImagePipeline
from benchmark.engine.torch_stages import same_images
from benchmark.errors import AdapterError
from benchmark.faces.images import read_batch
from benchmark.faces.resize import upsampled_model_input
from benchmark.metrics.image import psnr_y, ssim_y
from benchmark.contracts.metric import metric_spec
from benchmark.contracts.model_adapters import create_model
from benchmark.contracts.model import SRAdapter, check_sr_batch, check_sr_batch_on_device, check_sr_batch_torch

LFW_ALIGNED = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "lfw" / "aligned-112x96"
PSNR_TOL, SSIM_TOL = 1e-6, 1e-7  # the tolerances against the NumPy oracles (CPU, float64)


def lfw_or_synthetic(n: int, seed: int = 0):
    """(faces (n, 3, 112, 96) float32, what they are): real LFW faces where present."""
    if LFW_ALIGNED.is_dir():
        paths = sorted(LFW_ALIGNED.glob("*/*.jpg"))[::97][:n]
        return read_batch(paths, expect_hw=(112, 96)), "real LFW"
    import cv2

    rng = np.random.default_rng(seed)
    faces = [cv2.resize(rng.random((14, 12, 3)), (96, 112), interpolation=cv2.INTER_CUBIC) for _ in range(n)]
    quantised = np.round(np.clip(np.stack(faces), 0, 1) * 255) / 255
    return quantised.transpose(0, 3, 1, 2).astype(np.float32), "synthetic"


class EmbedByMean:
    """An evaluator stand-in (NumPy ``embed`` only): the mean colour, L2-normalised."""
    name, embedding_dim = "mean", 3

    def embed(self, images, frame):
        e = np.asarray(images, np.float64).mean(axis=(2, 3)) + 1e-3
        return (e / np.linalg.norm(e, axis=1, keepdims=True)).astype(np.float32)


def both(model, metrics=("psnr", "ssim"), batch_size=8, **kw):
    specs = [metric_spec(m) for m in metrics]
    return (ImagePipeline(model, EmbedByMean(), pixel_metrics=specs, batch_size=batch_size),
            TorchImagePipeline(model, EmbedByMean(), pixel_metrics=specs, batch_size=batch_size, **kw))


@pytest.mark.parametrize("spec", [{"scale": 8}, {"scale": 4}, {"scale": 2}, {"size": (16, 12)},
                                  {"size": (20, 16)}])
def test_lr_bytes_and_upsampled_input_equal_the_numpy_path(spec):
    hr, what = lfw_or_synthetic(64)
    deg = make_degradation("bicubic", **spec)
    lr = deg(hr)
    lr_t = deg.degrade_torch(torch.from_numpy(hr))
    assert lr_t.dtype == torch.float32
    assert np.array_equal(lr_t.numpy(), lr), what
    assert np.array_equal(np.round(lr * 255), lr * 255) or not deg.quantize  # 8-bit levels kept
    numpy_pipe, torch_pipe = both(create_model("bicubic", scale=spec.get("scale", 8)))
    level = Level("x", deg)
    got = torch_pipe.model_input(level, hr).numpy()
    # The upsampling's float64 sums run in another order in torch's matmul than in NumPy's
    # einsum, so a value within ~1e-17 of a float32 rounding midpoint can round the other way:
    # on all 13,233 LFW faces, 0 pixels differ at x2/x4/x8 and 200 and 61 of 427 M (1 float32
    # ulp each) at 16x12 and 20x16. The LR bytes above are equal.
    np.testing.assert_array_max_ulp(got, upsampled_model_input(lr, hr.shape[-2:]), maxulp=1)
    np.testing.assert_array_max_ulp(got, numpy_pipe.model_input(level, hr), maxulp=1)


def test_bicubic_run_stores_the_numpy_numbers():
    hr, what = lfw_or_synthetic(40)
    model = create_model("bicubic", scale=8)
    numpy_pipe, torch_pipe = both(model)
    level, idx, names = Level("x8", make_degradation("bicubic", scale=8)), np.arange(40), [f"f{i}" for i in range(40)]
    hr_emb = EmbedByMean().embed(hr, None)
    ref = numpy_pipe.process(level, hr, idx, names, names, hr_emb)
    got = torch_pipe.process(level, hr, idx, names, names, hr_emb)
    np.testing.assert_array_equal(got["emb"], ref["emb"])
    sr = upsampled_model_input(make_degradation("bicubic", scale=8)(hr), hr.shape[-2:])  # the oracle's SR
    assert np.abs(got["psnr"] - psnr_y(sr, hr)).max() <= PSNR_TOL, what
    assert np.abs(got["ssim"] - ssim_y(sr, hr)).max() <= SSIM_TOL, what
    assert np.abs(got["psnr"] - ref["psnr"]).max() <= PSNR_TOL
    assert 15 < got["psnr"].mean() < 40 and 0.2 < got["ssim"].mean() < 1.0  # a real degradation


def test_the_hr_reference_on_the_device_takes_identical_values_and_reuses_embeddings():
    hr, _ = lfw_or_synthetic(6)
    _, pipe = both(create_model("hr"))
    hr_emb = np.eye(6, 3, dtype=np.float32)  # not what EmbedByMean gives: it must not be called
    out = pipe.process(Level("hr", make_degradation("none")), hr, np.arange(6), list("abcdef"), list("abcdef"),
                       hr_emb)
    assert np.all(np.isinf(out["psnr"])) and np.all(out["ssim"] == 1.0)
    np.testing.assert_array_equal(out["emb"], hr_emb)


@pytest.mark.parametrize("degradation", [make_degradation("blur-decimate", scale=4),
                                         make_degradation("blind", scale=4)])
def test_a_degradation_without_a_torch_form_goes_through_numpy(degradation):
    hr, _ = lfw_or_synthetic(12)
    numpy_pipe, torch_pipe = both(create_model("bicubic", scale=4))
    keys = [f"{i:064x}" for i in range(1, 13)]
    level = Level("x4", degradation)
    np.testing.assert_array_equal(torch_pipe.model_input(level, hr, keys).numpy(),
                                  numpy_pipe.model_input(level, hr, keys))


def test_a_metric_without_a_torch_form_gets_numpy_arrays(toy_metrics):
    from benchmark.contracts.metric import MetricSpec

    seen = []

    def mean_abs(sr, hr, crop_border=0):
        seen.append(type(sr))
        return np.abs(sr - hr).mean(axis=(1, 2, 3))

    toy_metrics(MetricSpec("toy_mae", "MAE", per_image=mean_abs))
    hr, _ = lfw_or_synthetic(8)
    numpy_pipe, torch_pipe = both(create_model("bicubic", scale=4), metrics=("toy_mae",))
    level, idx = Level("x4", make_degradation("bicubic", scale=4)), np.arange(8)
    emb = EmbedByMean().embed(hr, None)
    a = numpy_pipe.process(level, hr, idx, list("abcdefgh"), list("abcdefgh"), emb)["toy_mae"]
    b = torch_pipe.process(level, hr, idx, list("abcdefgh"), list("abcdefgh"), emb)["toy_mae"]
    np.testing.assert_array_equal(a, b)
    assert seen == [np.ndarray, np.ndarray]


def test_metrics_without_a_torch_form_share_one_host_copy():
    # Off a GPU each such metric once copied the batch to the host again; now they get the same arrays.
    from benchmark.contracts.metric import MetricSpec
    from benchmark.engine.torch_stages import image_metrics_torch

    seen = []

    def recorder(offset):
        def metric(sr, hr, crop_border=0):
            seen.append((id(sr), id(hr)))
            return np.abs(sr - hr).mean(axis=(1, 2, 3)) + offset
        return metric

    specs = [MetricSpec(f"toy_{k}", str(k), per_image=recorder(k)) for k in range(2)]
    hr = torch.from_numpy(lfw_or_synthetic(4)[0])
    sr = (hr * 0.9).contiguous()
    out = image_metrics_torch(specs, sr, hr, torch.zeros(4, dtype=torch.bool), crop_border=0)
    np.testing.assert_allclose(out["toy_1"] - out["toy_0"], 1.0)
    assert len(seen) == 2 and seen[0] == seen[1]


class OomAbove(SRAdapter):
    """Bicubic upsampling that 'runs out of device memory' on batches above ``limit`` images."""
    name, batch_invariant, wants_upsampled_input = "oom", True, True

    def __init__(self, limit):
        self.limit, self.calls = limit, []

    def super_resolve(self, lr, keys):
        self.calls.append(len(lr))
        if len(lr) > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return lr.clamp(0, 1)


def test_out_of_memory_halves_the_batch_and_retries_with_the_same_result():
    hr, _ = lfw_or_synthetic(10)
    level, idx, names = Level("x4", make_degradation("bicubic", scale=4)), np.arange(10), list("abcdefghij")
    emb = EmbedByMean().embed(hr, None)
    ref = TorchImagePipeline(OomAbove(100), EmbedByMean(), pixel_metrics=[metric_spec("psnr")], batch_size=8)
    model = OomAbove(3)
    pipe = TorchImagePipeline(model, EmbedByMean(), pixel_metrics=[metric_spec("psnr")], batch_size=8)
    got = pipe.process(level, hr, idx, names, names, emb)
    want = ref.process(level, hr, idx, names, names, emb)
    np.testing.assert_array_equal(got["psnr"], want["psnr"])
    # batch 0..7: 8 -> 4 + 4 -> (2 + 2) + (2 + 2); batch 8..9 fits
    assert model.calls == [8, 4, 2, 2, 4, 2, 2, 2]
    assert pipe.halved == [{"first_image": 0, "batch": 8, "retried_as": 4},
                           {"first_image": 0, "batch": 4, "retried_as": 2},
                           {"first_image": 4, "batch": 4, "retried_as": 2}]
    assert ref.halved == []


def test_out_of_memory_on_a_batch_dependent_model_is_refused_not_halved():
    """Halving would change such a model's output but not its cache key (the batch size):
    one line saying which batch size to use instead, and no result."""
    hr, _ = lfw_or_synthetic(10)
    level, idx, names = Level("x4", make_degradation("bicubic", scale=4)), np.arange(10), list("abcdefghij")
    model = OomAbove(3)
    model.batch_invariant = False
    pipe = TorchImagePipeline(model, EmbedByMean(), pixel_metrics=[metric_spec("psnr")], batch_size=8)
    with pytest.raises(AdapterError, match=r"batch of 8 images; model oom's output depends on its batch.*"
                                           r"--batch-size 4\)$"):
        pipe.process(level, hr, idx, names, names, EmbedByMean().embed(hr, None))
    assert model.calls == [8] and pipe.halved == []


def test_out_of_memory_on_one_image_is_one_line():
    hr, _ = lfw_or_synthetic(2)
    pipe = TorchImagePipeline(OomAbove(0), EmbedByMean(), batch_size=2)
    with pytest.raises(AdapterError, match=r"^the device ran out of memory on a batch of one image \(image 0\)") as err:
        pipe.super_resolve(pipe.model_input(Level("x4", make_degradation("bicubic", scale=4)), hr), hr.shape,
                           np.arange(2), ["a", "b"])
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("bad, message", [
    (lambda x: x[:, :, :-1], r"returned shape \(2, 3, 7, 6\), expected \(2, 3, 8, 6\)"),
    (lambda x: torch.where(torch.arange(2)[:, None, None, None] == 1, torch.nan, x), r"NaN or inf for image 6 \(b\)"),
    (lambda x: x * 1.5, r"values in \[0.8.*, 1.35\] outside \[0, 1\] for image 6 \(b\)"),
])
def test_sr_checks_on_the_device_say_what_the_numpy_checks_say(bad, message):
    x = bad(torch.linspace(0.2, 0.9, 96).reshape(2, 3, 8, 2).repeat(1, 1, 1, 3))
    for check in (check_sr_batch, check_sr_batch_torch, check_sr_batch_on_device):
        with pytest.raises(AdapterError, match=message):
            check("m", x, (2, 3, 8, 6), first_index=5, keys=["a", "b"])


def test_sr_checks_on_the_device_clip_like_numpy():
    x = torch.tensor([-5e-5, 0.5, 1 + 5e-5]).reshape(1, 3, 1, 1)
    for check in (check_sr_batch_torch, check_sr_batch_on_device):
        np.testing.assert_array_equal(check("m", x, (1, 3, 1, 1)).numpy(), check_sr_batch("m", x, (1, 3, 1, 1)))


@pytest.mark.parametrize("n", [0, 1, 5])
def test_same_images_is_array_equal_per_image(n):
    rng = np.random.default_rng(n)
    hr = rng.random((n, 3, 4, 5)).astype(np.float32)
    sr = hr.copy()
    if n > 1:
        sr[1, 2, 3, 4] = np.nextafter(sr[1, 2, 3, 4], 2)  # one ulp apart: not the same image
    got = same_images(torch.from_numpy(sr), torch.from_numpy(hr))
    assert got.dtype == torch.bool and got.shape == (n,)
    assert got.tolist() == [np.array_equal(s, h) for s, h in zip(sr, hr)]
    # bfloat16, which NumPy cannot hold, takes torch's comparison: the same answer
    as_bf16 = torch.from_numpy(sr).bfloat16()
    assert same_images(as_bf16, as_bf16.clone()).tolist() == [True] * n


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_pipeline_agrees_with_the_cpu_one():
    hr, _ = lfw_or_synthetic(64)
    model = create_model("bicubic", scale=8)
    level, idx, names = Level("x8", make_degradation("bicubic", scale=8)), np.arange(64), [str(i) for i in range(64)]
    emb = EmbedByMean().embed(hr, None)
    _, cpu = both(model)
    gpu = TorchImagePipeline(model, EmbedByMean(), pixel_metrics=[metric_spec("psnr"), metric_spec("ssim")],
                             batch_size=8, device="cuda")
    a, b = cpu.process(level, hr, idx, names, names, emb), gpu.process(level, hr, idx, names, names, emb)
    assert np.abs(a["psnr"] - b["psnr"]).max() <= 1e-4 and np.abs(a["ssim"] - b["ssim"]).max() <= 1e-6
    np.testing.assert_allclose(a["emb"], b["emb"], atol=1e-6)
