"""Runs with the harness on the device (``harness="torch"``, the default) store the numbers of
the serial NumPy path (``harness="numpy"``, the oracle): the same accuracy and FR loss, PSNR
within 1e-6 dB, SSIM within 1e-7; the manifest records harness, device and precision; the cache
keys hold them only where they can change a result. ``--precision`` and ``--device`` are
checked in one line before any work; bf16 runs on the CPU within the tolerances stated here."""
import numpy as np
import pytest
import torch

from benchmark.cli import main
from benchmark.engine.runner import RunOptions, run
from benchmark.engine.store import ResultStore
from benchmark.errors import ConfigError

PSNR_TOL, SSIM_TOL = 1e-6, 1e-7


def opts(root, tmp_path, tag, **kw):
    return RunOptions(**{"model": "bicubic", "protocol": "lfw-10fold", "scale": 4, "data_root": str(root),
                         "store": str(tmp_path / f"{tag}.sqlite"), "cache_dir": str(tmp_path / "cache"),
                         "progress": False, **kw})


def stored(result, tmp_path, tag):
    return ResultStore(str(tmp_path / f"{tag}.sqlite")).arrays(result["id"])


def test_torch_harness_stores_the_numpy_paths_numbers(tiny_lfw, tmp_path):
    ref = run(opts(tiny_lfw, tmp_path, "numpy", harness="numpy"))
    got = run(opts(tiny_lfw, tmp_path, "torch", harness="torch"))
    a, b = stored(ref, tmp_path, "numpy"), stored(got, tmp_path, "torch")
    assert np.abs(a["psnr"] - b["psnr"]).max() <= PSNR_TOL and np.abs(a["ssim"] - b["ssim"]).max() <= SSIM_TOL
    np.testing.assert_array_equal(a["fr_loss"], b["fr_loss"])  # the same LR bytes, SR and embeddings
    for key in ("accuracy", "accuracy_std", "auc", "fr_loss"):
        assert got["metrics"][key] == ref["metrics"][key], key
    assert got["metrics"]["psnr"] == pytest.approx(ref["metrics"]["psnr"], abs=PSNR_TOL)
    assert got["manifest"]["harness"] == {"impl": "torch", "asked": "torch", "device": "cpu", "precision": "fp32",
                                          "prefetch_chunks": 1, "scoring_device": None,
                                          "halved_batches": []}
    assert ref["manifest"]["harness"]["impl"] == "numpy"
    # the SR cache of each harness is its own (PSNR may differ in the last bits); HR embeddings are shared
    assert got["manifest"]["cache"]["sr"] != ref["manifest"]["cache"]["sr"]
    assert got["manifest"]["cache"]["hr"] == ref["manifest"]["cache"]["hr"]
    assert got["manifest"]["cache"]["computed"]["hr"] == 0


def test_auto_is_torch_on_a_gpu_or_in_reduced_precision_and_numpy_on_the_cpu():
    assert RunOptions("m", "p").resolved_harness() == "numpy"
    assert RunOptions("m", "p", device="cuda:0").resolved_harness() == "torch"
    assert RunOptions("m", "p", precision="bf16").resolved_harness() == "torch"
    assert RunOptions("m", "p", device="cuda", harness="numpy").resolved_harness() == "numpy"


@pytest.mark.parametrize("kw, message", [
    ({"precision": "fp8"}, r"^--precision must be one of fp32, fp16, bf16, got 'fp8'$"),
    ({"harness": "cupy"}, r"^harness must be one of auto, torch, numpy, got 'cupy'$"),
    ({"harness": "numpy", "precision": "bf16"}, r"^--precision bf16 needs the torch harness"),
    ({"prefetch": -1}, r"^prefetch must be an integer >= 0"),
    ({"device": "tpu"}, r"^--device: unknown device 'tpu' \(use cpu, cuda or cuda:N\)$"),
    ({"device": "mps"}, r"^--device: device 'mps' is not supported \(use cpu, cuda or cuda:N\)$"),
])
def test_bad_harness_options_are_one_line_before_any_work(tmp_path, kw, message):
    with pytest.raises(ConfigError, match=message):
        run(opts(tmp_path / "nothing-here", tmp_path, "x", **kw))
    assert not (tmp_path / "x.sqlite").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_one_line_before_any_work(tmp_path):
    from click.testing import CliRunner

    res = CliRunner().invoke(main, ["run", "--model", "bicubic", "--protocol", "lfw-10fold", "--device", "cuda",
                                    "--data-root", str(tmp_path / "absent"), "--store", str(tmp_path / "r.sqlite")])
    assert res.exit_code == 2
    assert res.output.strip().splitlines() == [
        "fhbench: error: --device: device 'cuda' asked for, but torch sees no CUDA GPU here"]
    assert not (tmp_path / "r.sqlite").exists()


def test_reduced_precision_needs_a_torch_evaluator(tiny_lfw, tmp_path):
    with pytest.raises(ConfigError, match=r"^--precision fp16 needs an evaluator on torch; sface runs on "
                                          r"onnxruntime \(pass --backend torch\)$"):
        run(opts(tiny_lfw, tmp_path, "x", precision="fp16"))
    assert ResultStore(str(tmp_path / "x.sqlite")).runs() == []


def test_bf16_on_the_cpu_within_tolerance_and_in_its_own_cache(tiny_lfw, tmp_path):
    """bf16 autocast of SFace (torch backend): embeddings within 0.08 (max abs, L2-normalised
    128-d; bf16 keeps 8 bits of mantissa), FR loss within 0.02 of fp32; the bicubic model has no
    network, so PSNR/SSIM are fp32's exactly. fp32 keeps the cache key it had before --precision."""
    fp32 = run(opts(tiny_lfw, tmp_path, "fp32", backend="torch", harness="torch"))
    bf16 = run(opts(tiny_lfw, tmp_path, "bf16", backend="torch", precision="bf16"))
    a, b = stored(fp32, tmp_path, "fp32"), stored(bf16, tmp_path, "bf16")
    np.testing.assert_array_equal(a["psnr"], b["psnr"])
    assert np.abs(a["fr_loss"] - b["fr_loss"]).max() <= 0.02
    assert 0 < np.abs(a["fr_loss"] - b["fr_loss"]).max()  # bf16 really ran
    assert bf16["manifest"]["harness"]["precision"] == "bf16"
    assert bf16["manifest"]["evaluator"]["precision"] == "bf16" and "precision" not in fp32["manifest"]["evaluator"]
    assert bf16["manifest"]["cache"]["hr"] != fp32["manifest"]["cache"]["hr"]
    assert bf16["manifest"]["cache"]["computed"]["hr"] == 24


def test_bf16_embeddings_of_sface_within_the_stated_tolerance(tiny_lfw):
    from benchmark.evaluators import create_evaluator
    from benchmark.faces.images import read_batch

    faces = read_batch(sorted((tiny_lfw / "aligned-112x96").glob("*/*.jpg")), expect_hw=(112, 96))
    ev = create_evaluator("sface", backend="torch")
    full = ev.embed_torch(torch.from_numpy(faces)).numpy()
    ev.precision = "bf16"
    half = ev.embed_torch(torch.from_numpy(faces)).numpy()
    assert 0 < np.abs(full - half).max() <= 0.08
    assert (full * half).sum(1).min() >= 0.99  # cosine of each face's two embeddings


def test_bf16_sr_model_on_the_cpu_within_tolerance():
    """A conv SR model under bf16 autocast: output within 0.02 (max abs on [0, 1]) of fp32."""
    from benchmark.contracts.degradation import make_degradation
    from benchmark.engine.pipeline import Level
    from benchmark.engine.torch_pipeline import TorchImagePipeline
    from benchmark.contracts.model_adapters import TorchModuleAdapter

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 3, 3, padding=1))
    body = torch.nn.Sequential(torch.nn.Upsample(scale_factor=4, mode="nearest"), net)
    model = TorchModuleAdapter(lambda x: (x.repeat_interleave(4, 2).repeat_interleave(4, 3) + 0.05 * body(x)),
                               "conv", "callable", scale=4, clamp=True)
    hr = torch.rand(4, 3, 32, 24)
    level = Level("x4", make_degradation("bicubic", scale=4))
    outs = {}
    for precision in ("fp32", "bf16"):
        pipe = TorchImagePipeline(model, None, batch_size=4, precision=precision)
        outs[precision] = pipe.super_resolve(pipe.model_input(level, hr), hr.shape, np.arange(4), list("abcd"))
    diff = (outs["fp32"] - outs["bf16"]).abs().max().item()
    assert 0 < diff <= 0.02
