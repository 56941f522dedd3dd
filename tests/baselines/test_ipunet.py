"""IPU-Net: architecture against a hand count, its losses on hand-checked cases, the
multi-resolution input sequence, training (resume included), the adapter, and bad input."""
import json

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from baselines import ipunet
from benchmark.training.trainer import read_checkpoint, train
from benchmark.contracts.model_adapters import create_model
from benchmark.faces.resize import imresize, upsample_bicubic
from benchmark.contracts.degradation import make_degradation
from benchmark.errors import AdapterError, ConfigError

from _baseline_stand_ins import register_tiny_identity, synthetic_faces


def test_parameter_count_matches_the_hand_count_of_train_py():
    # 4x4 kernels; convs have no bias; BN has 2 trainable parameters per channel.
    down = (16 * 3 * 64                      # 128 -> 64, no BN
            + 16 * 64 * 128 + 2 * 128        # -> 32
            + 16 * 128 * 256 + 2 * 256       # -> 16
            + 16 * 256 * 512 + 2 * 512       # -> 8
            + 3 * (16 * 512 * 512 + 2 * 512))  # -> 4, 2, 1
    up = (16 * 512 * 512 + 2 * 512           # 1 -> 2, then concat 512 -> 1024 channels
          + 2 * (16 * 1024 * 512 + 2 * 512)  # -> 4, -> 8 (concat 512 each)
          + 16 * 1024 * 512 + 2 * 512        # -> 16, concat 256 -> 768
          + 16 * 768 * 256 + 2 * 256         # -> 32, concat 128 -> 384
          + 16 * 384 * 128 + 2 * 128         # -> 64, concat 64 -> 192
          + 16 * 192 * 3 + 3)                # -> 128 RGB, with bias
    assert down + up == 48_649_731
    net = ipunet.IPUNet()
    assert sum(p.numel() for p in net.parameters()) == down + up


def test_structure_seven_strided_convs_seven_transposed_convs_dropout_and_slopes():
    net = ipunet.IPUNet(filters=8)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d) and not isinstance(m, nn.ConvTranspose2d)]
    tconvs = [m for m in net.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert len(convs) == 7 and all(c.stride == (2, 2) and c.kernel_size == (4, 4) for c in convs)
    assert len(tconvs) == 7 and all(c.stride == (2, 2) and c.kernel_size == (4, 4) for c in tconvs)
    assert [m.p for m in net.modules() if isinstance(m, nn.Dropout)] == [0.5, 0.5, 0.5]
    assert {m.negative_slope for m in net.modules() if isinstance(m, nn.LeakyReLU)} == {0.3}
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.down.modules()) == 6  # not the first
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.up.modules()) == 6


def test_output_shape_range_and_skip_shapes():
    net = ipunet.IPUNet(filters=4).eval()
    x = torch.rand(2, 3, 128, 128)
    seen = []
    hooks = [b.register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape[1:]))) for b in net.up]
    with torch.no_grad():
        y = net(x)
    for h in hooks:
        h.remove()
    assert y.shape == (2, 3, 128, 128) and 0 <= float(y.min()) and float(y.max()) <= 1
    # up block outputs (before their skip is concatenated): widths 8F, 8F, 8F, 8F, 4F, 2F at 2..64 px
    assert seen == [(32, 2, 2), (32, 4, 4), (32, 8, 8), (32, 16, 16), (16, 32, 32), (8, 64, 64)]
    with torch.no_grad():
        assert net(torch.rand(1, 3, 256, 128)).shape == (1, 3, 256, 128)
    with pytest.raises(ValueError, match="multiples of 128"):
        net(torch.rand(1, 3, 112, 96))


def test_pixel_loss_is_mse_on_the_minus_one_to_one_scale():
    sr = torch.full((2, 3, 4, 4), 0.75)
    hr = torch.full((2, 3, 4, 4), 0.25)
    # [-1, 1]: 0.5 vs -0.5, difference 1 everywhere
    assert float(ipunet.pixel_loss(sr, hr)) == pytest.approx(1.0)
    hr2 = hr.clone()
    hr2[0] = 0.75  # half of the pixels now match
    assert float(ipunet.pixel_loss(sr, hr2)) == pytest.approx(0.5)


def test_embedding_loss_by_hand_and_gradient_only_through_sr():
    def phi(x):  # the mean colour, L2-normalised: a face's "embedding"
        return torch.nn.functional.normalize(x.mean((2, 3)), dim=1)

    sr = torch.zeros(2, 3, 4, 4)
    sr[:, 0] = 1.0                      # red -> (1, 0, 0)
    hr = torch.zeros(2, 3, 4, 4)
    hr[0, 1] = 1.0                      # green -> (0, 1, 0): squared difference 1 + 1 + 0
    hr[1, 0] = 1.0                      # red -> identical: 0
    sr.requires_grad_(True)
    hr.requires_grad_(True)
    loss = ipunet.embedding_loss(phi, sr, hr)
    assert float(loss.detach()) == pytest.approx((2 + 0) / (2 * 3))
    loss.backward()
    assert sr.grad is not None and float(sr.grad.abs().sum()) > 0
    assert hr.grad is None or float(hr.grad.abs().sum()) == 0


def test_lr_sizes_are_a_seeded_uniform_pure_function_of_the_step():
    sizes = ipunet.TRAIN_PY_LR_SIZES
    seq = [ipunet.lr_size_for_step(sizes, 0, k) for k in range(2000)]
    assert seq == [ipunet.lr_size_for_step(sizes, 0, k) for k in range(2000)]   # resumable
    assert seq != [ipunet.lr_size_for_step(sizes, 1, k) for k in range(2000)]   # seeded
    counts = {s: seq.count(s) for s in sizes}
    assert set(seq) == set(sizes)
    # 2000 draws over 10 sizes: 200 each, binomial sd ~13.4; 5 sd either side
    assert all(133 <= c <= 267 for c in counts.values()), counts


def test_upsampled_input_is_what_the_runner_feeds_at_that_lr_size():
    rng = np.random.default_rng(0)
    hr = rng.random((2, 3, 128, 128)).astype(np.float32)
    got = ipunet.upsampled_lr(torch.from_numpy(hr), (14, 12)).numpy()
    lr = make_degradation("bicubic", size=(14, 12))(hr)      # the protocols' 8-bit bicubic
    want = np.clip(upsample_bicubic(lr, (128, 128)), 0, 1)   # the runner's upsampling, in [0, 1]
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert got.min() >= 0 and got.max() <= 1
    assert got.shape == (2, 3, 128, 128)
    assert np.abs(got - hr).mean() > 0.05  # noise at 14x12 loses its detail


# --- training ------------------------------------------------------------------------

def _config(tmp_path, name="ipunet.yaml", **changes):
    raw = yaml.safe_load(open("baselines/configs/ipunet.yaml"))
    raw["model"].update({"filters": 4})
    raw["data"]["workers"] = 0
    raw.update({"batch_size": 2, "log_every": 1, "checkpoint_every": 2, "identity_network": "tiny-test-identity"})
    raw["stages"][0].update({"epochs": None, "steps": 4})
    del raw["stages"][0]["epochs"]
    for key, value in changes.items():
        target = raw
        *path, last = key.split(".")
        for p in path:
            target = target[p]
        target[last] = value
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw))
    return path


def test_config_file_reads_and_carries_the_paper_settings():
    from benchmark.training.config import load_config
    from benchmark.training.trainer import TRAINABLE

    c = load_config("baselines/configs/ipunet.yaml", {n: m.options for n, m in TRAINABLE.items()})
    assert c.model == "ipunet" and c.data.hr_size == (128, 128) and c.batch_size == 64
    s = c.stages[0]
    assert (s.optimizer, s.lr, s.betas[0], s.epochs) == ("adam", 2e-4, 0.5, 50)
    assert s.loss_weights == {"embedding": 1.0, "pixel": 5.0}
    assert c.model_options.lr_sizes[0] == (7, 6) and (32, 32) in c.model_options.lr_sizes


def test_training_resumes_bit_identically_and_the_adapter_loads_it(tmp_path, monkeypatch):
    register_tiny_identity(monkeypatch)
    data = synthetic_faces(tmp_path / "faces", 3, 2)
    config = _config(tmp_path)
    straight = train("ipunet", config, data, tmp_path / "a", device="cpu")
    assert straight.complete and straight.step == 4
    part = train("ipunet", config, data, tmp_path / "b", device="cpu", max_steps=2)
    assert not part.complete and part.step == 2
    resumed = train("ipunet", config, data, tmp_path / "b", device="cpu")
    assert resumed.complete and resumed.step == 4
    a = read_checkpoint(straight.weights, "ipunet")["model_state"]
    b = read_checkpoint(resumed.weights, "ipunet")["model_state"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    lines = [json.loads(ln) for ln in straight.log.read_text().splitlines()]
    assert [ln["step"] for ln in lines if "loss" in ln] == [1, 2, 3, 4]
    assert all(ln["loss"] == pytest.approx(ln["embedding"] + 5 * ln["pixel"], rel=1e-5) for ln in lines)

    model = create_model("ipunet", scale=8, weights=str(straight.weights))
    assert model.wants_upsampled_input and model.scale is None
    assert model.trained_size == (128, 128)
    model.check_compatible((16, 16), (128, 128), 8)
    out = model.super_resolve(torch.rand(2, 3, 128, 128), ["a", "b"])
    assert out.shape == (2, 3, 128, 128) and float(out.min()) >= 0 and float(out.max()) <= 1
    # a 112x96 protocol: rendered into the 128x128 training frame (8 px of black each side, then
    # MATLAB bicubic to 128x128) and back (bicubic to 112x112, the padding cropped)
    model.check_compatible((14, 12), (112, 96), 8)
    x = torch.rand(2, 3, 112, 96)
    out = model.super_resolve(x, ["a", "b"])
    ckpt = read_checkpoint(straight.weights, "ipunet")
    net = ipunet.build(ipunet.IPUNetOptions(**ckpt["model_options"]), 1)
    net.load_state_dict(ckpt["model_state"])
    framed = imresize(np.pad(x.numpy(), ((0, 0), (0, 0), (0, 0), (8, 8))), output_size=(128, 128))
    with torch.no_grad():
        y = net.eval()(torch.from_numpy(np.clip(framed, 0, 1))).clamp(0, 1).numpy()
    expected = np.clip(imresize(y, output_size=(112, 112))[..., 8:104], 0, 1)
    assert out.shape == (2, 3, 112, 96)
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-5)


@pytest.mark.parametrize("change, key", [
    ({"data.hr_size": [112, 96]}, "data.hr_size"),
    ({"batch_size": 1}, "batch_size"),
    ({"model.lr_sizes": [[7, 6], [200, 16]]}, r"model.lr_sizes\[1\]"),
    ({"model.lr_sizes": [[7, "six"]]}, r"model.lr_sizes\[0\]\[1\]"),
    ({"model.blocks": 3}, "model.blocks: unknown key"),
    ({"stages": [{"name": "ipunet", "steps": 2, "loss_weights": {"pixel": 5.0}}]},
     "no weight for the loss 'embedding'"),
])
def test_bad_config_is_one_clear_error_before_any_step(tmp_path, monkeypatch, change, key):
    register_tiny_identity(monkeypatch)
    data = synthetic_faces(tmp_path / "faces", 2, 2)
    config = _config(tmp_path, **change)
    with pytest.raises(ConfigError, match=key):
        train("ipunet", config, data, tmp_path / "out", device="cpu")
    assert not (tmp_path / "out" / "ipunet" / "scalars.jsonl").exists()


def test_a_checkpoint_of_another_architecture_is_refused(tmp_path):
    other = {"format": "fhbench-baseline/1", "model": "srresnet", "architecture": "srresnet", "scale": 4,
             "model_options": {"blocks": 10, "filters": 64}, "model_state": {}}
    path = tmp_path / "srresnet-x4.pt"
    torch.save(other, path)
    with pytest.raises(AdapterError, match="holds a srresnet x4 model .* not the ipunet model"):
        create_model("ipunet", scale=8, weights=str(path))


def test_batchnorm_follows_the_authors_keras_defaults():
    """Keras BatchNormalization(momentum=0.99, epsilon=1e-3) is PyTorch's momentum 0.01, eps 1e-3:
    a running mean that moves 1% towards each batch mean."""
    norms = [m for m in ipunet.IPUNet(filters=4).modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(norms) == 6 + 6  # down blocks 2..7, up blocks 1..6
    bn = norms[0]
    bn.train()
    x = torch.randn(8, bn.num_features, 4, 4) + 3.0
    bn(x)
    assert torch.allclose(bn.running_mean, 0.01 * x.mean(dim=(0, 2, 3)), atol=1e-6)
    assert all(m.eps == 1e-3 for m in norms)


# --- the multi-resolution ablation's switch: lr_sizes (results/ipunet-multires-ablation/) -----------

def _train_recording_inputs(tmp_path, monkeypatch, name, lr_sizes, force_size=None):
    """Train 4 steps with ``lr_sizes``; returns (weights, [(LR size, HR batch) per step]). With
    ``force_size`` the ten-size draw is replaced by that one size: the oracle of single-size training."""
    seen = []
    real = ipunet.upsampled_lr

    def recording(hr, lr_hw, quantize=True):
        seen.append((tuple(lr_hw), hr.clone()))
        return real(hr, lr_hw, quantize)

    monkeypatch.setattr(ipunet, "upsampled_lr", recording)
    if force_size is not None:
        monkeypatch.setattr(ipunet, "lr_size_for_step", lambda sizes, seed, step: force_size)
    data = tmp_path / "faces"
    if not data.exists():
        synthetic_faces(data, 3, 2)
    result = train("ipunet", _config(tmp_path, f"{name}.yaml", **{"model.lr_sizes": lr_sizes}), data,
                   tmp_path / name, device="cpu")
    monkeypatch.setattr(ipunet, "upsampled_lr", real)
    if force_size is not None:
        monkeypatch.undo()
        register_tiny_identity(monkeypatch)
    return read_checkpoint(result.weights, "ipunet")["model_state"], seen


def test_single_lr_size_changes_only_the_lr_size_of_each_batch(tmp_path, monkeypatch):
    register_tiny_identity(monkeypatch)
    ten = [list(s) for s in ipunet.TRAIN_PY_LR_SIZES]
    single, single_seen = _train_recording_inputs(tmp_path, monkeypatch, "single", [[16, 14]])
    multi, multi_seen = _train_recording_inputs(tmp_path, monkeypatch, "multi", ten)
    forced, _ = _train_recording_inputs(tmp_path, monkeypatch, "forced", ten, force_size=(16, 14))
    assert [size for size, _ in single_seen] == [(16, 14)] * 4
    assert len({size for size, _ in multi_seen}) > 1          # the ten-size arm does vary
    # the same HR faces (and flips) in the same order: only the LR size differs
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(single_seen, multi_seen)) and len(multi_seen) == 4
    # lr_sizes [[16, 14]] trains bit for bit as the ten-size run whose every draw is forced to 16x14
    assert single.keys() == forced.keys() and all(torch.equal(single[k], forced[k]) for k in single)
    assert any(not torch.equal(single[k], multi[k]) for k in single)
