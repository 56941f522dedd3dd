"""A run on ``--device cuda`` stores what the same run on the CPU stores (issue 13): on 500 real
LFW faces (the first pairs of each lfw-10fold fold), bicubic x8, SFace on the torch backend,
accuracy within 0.05 points, PSNR within 1e-4 dB and SSIM within 1e-6 (mean and per image).
Skipped without CUDA or without ../shared/data; scripts/gpu-check.sh runs it on a GPU machine."""
import numpy as np
import pytest
import torch

from benchmark.datasets.lfw import write_pairs_subset
from benchmark.engine.runner import RunOptions, run
from benchmark.engine.store import ResultStore

pytestmark = [pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
              pytest.mark.shared_data]


def lfw_subset(lfw, tmp_path, per_fold_and_kind=13):
    """An LFW root with the first pairs of each fold (13 genuine + 13 impostor: about 500 faces)."""
    return write_pairs_subset(lfw, tmp_path / "lfw", per_fold_and_kind)


def test_a_cuda_run_stores_the_cpu_runs_numbers(lfw_shared, tmp_path):
    root = lfw_subset(lfw_shared, tmp_path)
    results = {}
    for device in ("cpu", "cuda"):
        results[device] = run(RunOptions(model="bicubic", protocol="lfw-10fold", scale=8, data_root=str(root),
                                         store=str(tmp_path / f"{device}.sqlite"), cache_dir="", backend="torch",
                                         device=device, progress=False))
    cpu, gpu = results["cpu"], results["cuda"]
    assert 400 <= cpu["manifest"]["data"]["n_images"] <= 520
    assert abs(cpu["metrics"]["accuracy"] - gpu["metrics"]["accuracy"]) * 100 <= 0.05
    assert abs(cpu["metrics"]["psnr"] - gpu["metrics"]["psnr"]) <= 1e-4
    assert abs(cpu["metrics"]["ssim"] - gpu["metrics"]["ssim"]) <= 1e-6
    a = ResultStore(str(tmp_path / "cpu.sqlite")).arrays(cpu["id"])
    b = ResultStore(str(tmp_path / "cuda.sqlite")).arrays(gpu["id"])
    assert np.abs(a["psnr"] - b["psnr"]).max() <= 1e-4 and np.abs(a["ssim"] - b["ssim"]).max() <= 1e-6
    assert gpu["manifest"]["harness"]["device"] == "cuda" and gpu["manifest"]["evaluator"]["device"] == "cuda"
