"""The CUDA path of the trainer: mixed precision (fp16 + GradScaler, bf16) and nccl data
parallelism. Every test here skips cleanly without CUDA (scripts/gpu-check-train.sh is the
longer check)."""
import textwrap

import pytest
import torch

from benchmark.training.trainer import read_checkpoint, train
from training_fixtures import _write_faces, spawn_ddp

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

CONFIG = """\
    model: {name: srresnet, blocks: 1, filters: 8}
    data: {hr_size: [32, 32], scale: 4}
    batch_size: 4
    log_every: 1
    checkpoint_every: 100
    mixed_precision: true
    amp_dtype: DTYPE
    sync_batchnorm: true
    stages:
      - {name: mse, steps: 4, lr: 1.0e-3, loss_weights: {mse: 1.0}}
    """


@pytest.fixture
def faces(tmp_path):
    return _write_faces(tmp_path / "faces", 2, 2)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_mixed_precision_on_cuda_writes_a_cpu_loadable_checkpoint(tmp_path, faces, dtype):
    if dtype == "bfloat16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bfloat16")
    config = tmp_path / "c.yaml"
    config.write_text(textwrap.dedent(CONFIG).replace("DTYPE", dtype))
    result = train("srresnet", config, faces, tmp_path / "runs", device="cuda")
    assert result.complete
    last = torch.load(result.checkpoint, map_location="cpu", weights_only=True)
    assert bool(last["scaler"]) == (dtype == "float16")  # a GradScaler for float16 only
    state = read_checkpoint(result.weights, "srresnet")["model_state"]
    assert all(v.device.type == "cpu" and torch.isfinite(v.float()).all() for v in state.values())


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 GPUs")
def test_two_gpus_with_nccl_equal_one(tmp_path, faces):
    config = tmp_path / "c.yaml"
    config.write_text(textwrap.dedent(CONFIG).replace("mixed_precision: true", "mixed_precision: false")
                      .replace("DTYPE", "float16"))
    one = train("srresnet", config, faces, tmp_path / "one", device="cuda")
    spawn_ddp(2, "srresnet", config, faces, tmp_path / "two", device="cuda")
    a = read_checkpoint(one.weights, "srresnet")["model_state"]
    b = read_checkpoint(tmp_path / "two" / "srresnet" / "srresnet-x4.pt", "srresnet")
    assert b["world_size"] == 2
    assert max(float((a[k] - b["model_state"][k]).abs().max()) for k in a if a[k].is_floating_point()) <= 1e-4
