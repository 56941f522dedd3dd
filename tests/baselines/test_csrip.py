"""C-SRIP: architecture sizes against hand counts, the SSIM loss against skimage and the
benchmark's own SSIM, the high-pass residual against scipy, the identity priors, and the
trainer's refusals (no labels, other scales, other identities)."""
import json
import math
import textwrap

import cv2
import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from skimage.metrics import structural_similarity

from baselines.csrip import CSRIP, CSRIPAdapter, CSRIPOptions, _prior_ce, cascade_stage, squeezenet
from benchmark.training.ssim_loss import high_pass, ssim_loss, ssim_map
from benchmark.training.trainer import Batch, StageContext, train
from benchmark.errors import AdapterError, ConfigError, DataError
from benchmark.metrics.image import ssim_y
from benchmark.faces.templates import ARCFACE_112x112


def conv(k, cin, cout):
    return k * k * cin * cout + cout


def fire(cin, squeeze, e1, e3):
    return conv(1, cin, squeeze) + conv(1, squeeze, e1) + conv(3, squeeze, e3)


def squeezenet11(n_classes):
    """SqueezeNet 1.1 (Iandola et al. 2016; torchvision's layout), counted by hand."""
    fires = [(64, 16, 64, 64), (128, 16, 64, 64), (128, 32, 128, 128), (256, 32, 128, 128),
             (256, 48, 192, 192), (384, 48, 192, 192), (384, 64, 256, 256), (512, 64, 256, 256)]
    return conv(3, 3, 64) + sum(fire(*f) for f in fires) + conv(1, 512, n_classes)


def bn(c):
    return 2 * c


def squeezenet10_bypass(n_classes):
    """SqueezeNet 1.0 with complex bypass (Iandola et al. 2016, Fig. 2 right), counted by hand:
    a 1x1 conv shortcut where a fire module changes the width (fire2, 4, 6, 8), identity elsewhere."""
    fires = [(96, 16, 64, 64), (128, 16, 64, 64), (128, 32, 128, 128), (256, 32, 128, 128),
             (256, 48, 192, 192), (384, 48, 192, 192), (384, 64, 256, 256), (512, 64, 256, 256)]
    bypass = sum(conv(1, cin, e1 + e3) for cin, _, e1, e3 in fires if cin != e1 + e3)
    return conv(7, 3, 96) + sum(fire(*f) for f in fires) + bypass + conv(1, 512, n_classes)


def _paper_options():
    from benchmark.training.config import load_config
    from benchmark.training.trainer import TRAINABLE

    return load_config("baselines/configs/csrip.yaml", {n: m.options for n, m in TRAINABLE.items()}).model_options


def test_cascade_parameters_and_layers_at_paper_size():
    """csrip.yaml builds the paper's network (../shared/papers/001, Sec. 3.1, 3.4, Fig. 11):
    a 9x9 input conv of 512; per module 7 residual blocks of two [3x3 conv, BN, LReLU] (convs
    without bias), the trunk's closing 3x3 conv F -> F, the final conv F -> U before the
    sub-pixel layer with U = 1024, 512, 256; at 192 px our 3x3 bridge 64 -> 128 (+ BN) and the
    last residual block of 128; a 9x9 RGB conv on the 2x and 4x branches and after the last
    block. Updated from the pre-paper cascade (52 convs, 53,201,545 parameters, checked below
    for the options' defaults) to the paper's numbers."""
    widths, upscale = [512, 256, 128], [1024, 512, 256]
    expected = conv(9, 3, 512)
    for f, u in zip(widths, upscale):
        expected += 14 * (9 * f * f + bn(f)) + conv(3, f, f) + conv(3, f, u)
    expected += 9 * 64 * 128 + bn(128) + 2 * (9 * 128 * 128 + bn(128))       # bridge + last block
    expected += conv(9, 256, 3) + conv(9, 128, 3) + conv(9, 128, 3)          # RGB at 2x, 4x, 8x
    assert expected == 53_288_329   # about 53.3 M parameters
    model = CSRIP(_paper_options(), 8)
    assert sum(p.numel() for p in model.cascade.parameters()) == expected
    convs = sum(isinstance(m, torch.nn.Conv2d) for m in model.cascade.modules())
    # the paper's "53-layer deep" network: 1 + 3 x (14 + 1 + 1) + 1 (bridge) + 2 + 1 on the path from LR
    # to the 8x output; the 2x and 4x branch RGB convs (removed after training) make 55
    assert convs == 55 and convs - 2 == 1 + 3 * (14 + 1 + 1) + 1 + 2 + 1 == 53
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.cascade.modules()) == 3 * 14 + 1 + 2
    assert sum(p.numel() for p in model.priors.parameters()) == 0      # sized from the data later
    model.size_priors(10)
    assert sum(p.numel() for p in model.priors.parameters()) == 3 * squeezenet10_bypass(10)
    with torch.no_grad():
        outs = model.eval().cascade(torch.rand(1, 3, 24, 24))
    assert [tuple(o.shape) for o in outs] == [(1, 3, 48, 48), (1, 3, 96, 96), (1, 3, 192, 192)]


def test_default_options_build_the_pre_paper_cascade():
    """The options' defaults keep the cascade built before the paper was at hand (so its
    checkpoints still load): 9x9 input conv; per module 7 blocks x 2 convs + trunk conv + sub-pixel
    conv (F -> 4 F'); a 9x9 RGB conv per module; F = 512, 256, 128, F' = 256, 128, 128."""
    widths, outs = [512, 256, 128], [256, 128, 128]
    expected = conv(9, 3, 512)
    for f, o in zip(widths, outs):
        expected += 15 * conv(3, f, f) + conv(3, f, 4 * o) + conv(9, o, 3)
    assert expected == 53_201_545
    model = CSRIP(CSRIPOptions(), 8)
    assert sum(p.numel() for p in model.cascade.parameters()) == expected
    assert sum(isinstance(m, torch.nn.Conv2d) for m in model.cascade.modules()) == 1 + 3 * (14 + 2) + 3 == 52
    model.size_priors(10)
    assert sum(p.numel() for p in model.priors.parameters()) == 3 * squeezenet11(10)


def test_paper_residual_block_is_two_conv_bn_lrelu_then_the_sum():
    """001 Sec. 3.1: "two convolution-batch-norm-activation sub-blocks, followed by a
    post-activation element-wise sum"."""
    block = CSRIP(_paper_options(), 8).cascade.modules_[0].trunk[0]
    kinds = [type(m).__name__ for m in block.body]
    assert kinds == ["Conv2d", "BatchNorm2d", "LeakyReLU"] * 2
    x = torch.rand(2, 512, 3, 3)
    with torch.no_grad():
        assert torch.allclose(block.eval()(x), x + block.body(x))


def test_squeezenet_hand_count_matches_the_published_size():
    assert squeezenet11(1000) == 1_235_496      # torchvision's squeezenet1_1 model card
    assert sum(p.numel() for p in squeezenet(1000).parameters()) == 1_235_496
    from torchvision.models import squeezenet1_0

    # SqueezeNet 1.0 without the bypass is torchvision's squeezenet1_0 (1,248,424 at 1000 classes);
    # the complex bypass adds 1x1 convs 96->128, 128->256, 256->384, 384->512
    assert sum(p.numel() for p in squeezenet1_0(weights=None).parameters()) == 1_248_424
    assert squeezenet10_bypass(1000) == 1_248_424 + 12_416 + 33_024 + 98_688 + 197_120 == 1_589_672
    net = squeezenet(1000, "squeezenet1_0-complex-bypass")
    assert sum(p.numel() for p in net.parameters()) == 1_589_672


def test_prior_networks_smallest_inputs():
    from baselines.csrip import prior_min_side

    for kind in ("squeezenet1_1", "squeezenet1_0-complex-bypass"):
        side = prior_min_side(kind)
        net = squeezenet(3, kind).eval()
        with torch.no_grad():
            assert net(torch.rand(1, 3, side, side)).shape == (1, 3)
            with pytest.raises(RuntimeError):
                net(torch.rand(1, 3, side - 1, side - 1))
    assert (prior_min_side("squeezenet1_1"), prior_min_side("squeezenet1_0-complex-bypass")) == (17, 21)


def test_random_crops_shift_each_face_by_a_seeded_offset():
    from baselines.csrip import random_crops

    hr = torch.arange(2 * 3 * 10 * 10, dtype=torch.float32).view(2, 3, 10, 10)
    assert random_crops(hr, 0, 0, 5) is hr
    a, b = random_crops(hr, 2, 7, 5), random_crops(hr, 2, 7, 5)
    assert torch.equal(a, b) and a.shape == hr.shape            # a pure function of (seed, step)
    assert not torch.equal(a, random_crops(hr, 2, 7, 6))
    offsets = np.random.default_rng([7, 5, 0xC809]).integers(0, 5, size=(2, 2))
    padded = torch.nn.functional.pad(hr, (2,) * 4, mode="replicate")
    for i, (dy, dx) in enumerate(offsets):
        assert torch.equal(a[i], padded[i, :, dy:dy + 10, dx:dx + 10])


def test_output_shapes_and_clipping():
    model = CSRIP(CSRIPOptions(filters=[8, 4, 4], blocks=2), 8)
    outs = model.cascade(torch.rand(2, 3, 24, 24))
    assert [tuple(o.shape) for o in outs] == [(2, 3, 48, 48), (2, 3, 96, 96), (2, 3, 192, 192)]
    assert model(torch.rand(1, 3, 24, 24)).shape == (1, 3, 192, 192)
    with torch.no_grad():                       # a constant RGB conv output, then the clip
        for to_rgb, bias in zip(model.cascade.to_rgb, (1.7, -0.3, 0.25)):
            to_rgb.weight.zero_()
            to_rgb.bias.fill_(bias)
    with torch.no_grad():
        outs = model.cascade(torch.rand(1, 3, 24, 24))
    assert [float(o.min()) for o in outs] == [1.0, 0.0, 0.25] == [float(o.max()) for o in outs]


def test_priors_see_the_high_pass_residual_times_the_input_scale():
    # 255 puts residuals of [0, 1] faces on the 0..255 scale; the oracle is scipy's Gaussian
    options = CSRIPOptions(filters=[4, 4, 4], blocks=0, prior_input_scale=255.0)
    model = CSRIP(options, 8)
    model.size_priors(5)
    model.eval()
    rng = np.random.default_rng(7)
    faces = [rng.random((2, 3, s, s)) for s in (48, 96, 192)]
    with torch.no_grad():
        ours = model.priors([torch.from_numpy(f).float() for f in faces])
        for net, sigma, face, logits in zip(model.priors.nets, options.prior_sigmas, faces, ours):
            blurred = np.stack([[gaussian_filter(face[i, c], sigma, mode="mirror", truncate=3.0)
                                 for c in range(3)] for i in range(2)])
            expected = net(torch.from_numpy(255.0 * (face - blurred)).float())
            torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-4)
            assert not torch.allclose(logits, net(torch.from_numpy(face - blurred).float()), atol=1e-3)


@pytest.mark.parametrize("scale_value", [0.0, -1.0, float("nan"), float("inf")])
def test_prior_input_scale_out_of_range_is_refused(scale_value):
    with pytest.raises(ConfigError, match="prior_input_scale must be a finite number > 0"):
        CSRIP(CSRIPOptions(prior_input_scale=scale_value), 8)


@pytest.mark.parametrize("options,scale,match", [
    (CSRIPOptions(), 4, "cascade of 3 2x modules upsamples 8x, not 4x"),
    (CSRIPOptions(prior_sigmas=[1.0, 2.0]), 8, "one prior sigma per module: 3 filters but 2 prior_sigmas"),
    (CSRIPOptions(upscale_filters=[1024, 512]), 8, r"upscale_filters needs one width per module \(3\)"),
    (CSRIPOptions(upscale_filters=[1024, 510, 256]), 8, "each a multiple of 4"),
    (CSRIPOptions(upscale_filters=[512, 512, 256]), 8, r"upscale_filters / 4 must be the next module's filters: "
                                                       r"\[512, 512, 256\] after PixelShuffle\(2\) give "
                                                       r"\[128, 128, 64\], filters are \[512, 256, 128\]"),
])
def test_architecture_mismatches_are_refused(options, scale, match):
    with pytest.raises(ConfigError, match=match):
        CSRIP(options, scale)


# --- SSIM loss and high-pass residual ---------------------------------------------------------

def _pair(seed=0, shape=(2, 3, 24, 30)):
    rng = np.random.default_rng(seed)
    x = rng.random(shape)
    return x, np.clip(x + 0.15 * rng.standard_normal(shape), 0, 1)


def test_ssim_map_matches_skimage():
    x, y = _pair()
    ours = ssim_map(torch.from_numpy(x), torch.from_numpy(y)).numpy()
    assert ours.shape == (2, 3, 14, 20)
    for i in range(2):
        for c in range(3):
            _, full = structural_similarity(x[i, c], y[i, c], gaussian_weights=True, sigma=1.5,
                                            use_sample_covariance=False, data_range=1.0, full=True)
            np.testing.assert_allclose(ours[i, c], full[5:-5, 5:-5], atol=1e-10)


def test_ssim_on_y_matches_the_benchmark_metric():
    x, y = _pair(1)
    luma = lambda im: 16 + 65.481 * im[:, 0] + 128.553 * im[:, 1] + 24.966 * im[:, 2]   # noqa: E731
    ours = ssim_map(torch.from_numpy(luma(x))[:, None], torch.from_numpy(luma(y))[:, None], 255.0)
    np.testing.assert_allclose(ours.mean((1, 2, 3)).numpy(), ssim_y(x, y), atol=1e-10)


def test_ssim_loss_hand_cases():
    a, b = 0.2, 0.7
    x, y = torch.full((1, 3, 16, 16), a, dtype=torch.float64), torch.full((1, 3, 16, 16), b, dtype=torch.float64)
    # constant images: no variance, so SSIM = (2ab + C1) / (a^2 + b^2 + C1) with C1 = 0.01^2
    c1 = 0.01 ** 2
    expected = (1 - (2 * a * b + c1) / (a * a + b * b + c1)) / 2
    assert float(ssim_loss(x, y)) == pytest.approx(expected, rel=1e-12)
    assert float(ssim_loss(x.float(), y.float())) == pytest.approx(expected, rel=1e-4)  # float32: E[x^2] - mu^2
    assert float(ssim_loss(y, y)) == pytest.approx(0.0, abs=1e-6)
    # an image against its negative (zero-mean noise around 0.5): SSIM near -1, loss near 1
    n = torch.from_numpy(np.random.default_rng(2).standard_normal((1, 1, 32, 32)) * 0.2)
    assert float(ssim_loss(0.5 + n, 0.5 - n)) > 0.95


def test_ssim_loss_gradient_matches_finite_differences():
    x, y = (torch.from_numpy(a[:1, :1, :13, :13]) for a in _pair(3))
    x.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: ssim_loss(t, y), (x,), eps=1e-6, atol=1e-7)


def test_ssim_refuses_small_images():
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim_map(torch.zeros(1, 3, 10, 20), torch.zeros(1, 3, 10, 20))


@pytest.mark.parametrize("sigma", [1 / 3, 1.0, 7 / 3])
def test_high_pass_matches_scipy(sigma):
    x, _ = _pair(4, (2, 3, 20, 17))
    ours = high_pass(torch.from_numpy(x), sigma).numpy()
    blurred = np.stack([[gaussian_filter(x[i, c], sigma, mode="mirror", truncate=3.0) for c in range(3)]
                        for i in range(2)])
    np.testing.assert_allclose(ours, x - blurred, atol=1e-12)
    assert np.abs(high_pass(torch.full((1, 3, 20, 20), 0.4), sigma).numpy()).max() < 1e-6  # flat: no detail


# --- identity priors -------------------------------------------------------------------------------

def test_prior_cross_entropy_hand_case():
    # uniform logits over K classes: each prior's CE is ln K; three priors sum to 3 ln K
    labels = torch.tensor([0, 3])
    assert float(_prior_ce([torch.zeros(2, 5)] * 3, labels)) == pytest.approx(3 * math.log(5))
    # a prior sure of the right class (logit 10 vs 0): CE = ln(1 + (K-1) e^-10)
    sure = torch.zeros(2, 5)
    sure[0, 0] = sure[1, 3] = 10.0
    assert float(_prior_ce([sure], labels)) == pytest.approx(math.log(1 + 4 * math.exp(-10)), abs=1e-6)  # float32


def test_cascade_stage_leaves_the_priors_fixed_and_in_eval_mode():
    model = CSRIP(CSRIPOptions(filters=[4, 4, 4], blocks=1), 8)
    model.size_priors(3)
    model.train()
    before = {k: v.clone() for k, v in model.priors.state_dict().items()}
    ctx = StageContext(model, None, None, ARCFACE_112x112, 8, torch.device("cpu"))
    batch = Batch(torch.rand(2, 3, 24, 24), torch.rand(2, 3, 192, 192), torch.tensor([0, 2]), torch.arange(2))
    terms = cascade_stage(ctx, batch)
    assert not any(m.training for m in model.priors.modules())       # dropout off
    grads = torch.autograd.grad(terms["ssim"] + 0.001 * terms["identity"], list(model.cascade.parameters()))
    assert all(torch.isfinite(g).all() for g in grads)
    assert all(torch.equal(v, model.priors.state_dict()[k]) for k, v in before.items())
    assert 0 < float(terms["ssim"].detach()) < 3 and float(terms["identity"].detach()) > 0


# --- the trainer and the adapter -------------------------------------------------------------------

def _faces(root, people=3, per=2, flat=False, seed=0):
    rng = np.random.default_rng(seed)
    for p in range(people):
        sub = root if flat else root / f"P{p}"
        sub.mkdir(parents=True, exist_ok=True)
        for k in range(per):
            img = cv2.resize(rng.random((14, 12, 3)), (96, 112), interpolation=cv2.INTER_CUBIC) * 255
            cv2.imwrite(str(sub / f"P{p}_{k}.png"), np.clip(img, 0, 255).astype(np.uint8))
    return root


TINY = """\
    model: {name: csrip, filters: [4, 4, 4], blocks: 1}
    data: {hr_size: [72, 72], scale: 8, degradation: bicubic}
    batch_size: 2
    log_every: 1
    stages:
      - {name: priors, steps: 1, loss_weights: {ce: 1.0}}
      - {name: cascade, steps: 1, loss_weights: {ssim: 1.0, identity: 0.001}}
    """


def _config(tmp_path, text=TINY):
    path = tmp_path / "csrip.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_priors_refuse_faces_without_identity_labels(tmp_path):
    with pytest.raises(DataError, match=r"stage 0 \(priors\) of csrip needs identity labels, but the faces in "
                                        r".*flat have none"):
        train("csrip", _config(tmp_path), _faces(tmp_path / "flat", flat=True), tmp_path / "out")
    with pytest.raises(DataError, match="need at least 2 identities .* found 1"):
        train("csrip", _config(tmp_path), _faces(tmp_path / "one", people=1, per=4), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_scale_and_hr_size_are_checked_before_any_step(tmp_path):
    faces = _faces(tmp_path / "faces")
    with pytest.raises(ConfigError, match="upsamples 8x, not 4x"):
        train("csrip", _config(tmp_path), faces, tmp_path / "out", scale=4)
    with pytest.raises(ConfigError, match=r"data\.hr_size: 64x64 does not fit C-SRIP: .* at least 17 px"):
        train("csrip", _config(tmp_path, TINY.replace("[72, 72]", "[64, 64]")), faces, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_trained_weights_carry_the_priors_and_the_adapter_declares_its_sizes(tmp_path, tiny_lfw):
    faces = _faces(tmp_path / "faces")
    result = train("csrip", _config(tmp_path), faces, tmp_path / "out")
    adapter = CSRIPAdapter(scale=8, weights=result.weights)
    assert int(adapter.module.priors.n_classes) == 3
    assert (adapter.input_size, adapter.output_size, adapter.scale) == ((9, 9), (72, 72), 8)
    sr = adapter.super_resolve(torch.rand(2, 3, 9, 9), ["a", "b"])
    assert sr.shape == (2, 3, 72, 72)
    with pytest.raises(AdapterError, match=r"outputs 72x72 but the protocol's HR size is 112x96 \(csrip turns "
                                           r"9x9 LR faces into 72x72: run it at x8 on a protocol that pins no HR "
                                           r"size, such as lfw-10fold or lfw-blufr"):
        adapter.check_compatible((14, 12), (112, 96), 8)
    # lfw-10fold pins no HR size: the trained model runs there in its own 72x72 frame (issue 12)
    from benchmark.engine import runner

    run = runner.run(runner.RunOptions(model="csrip", weights=str(result.weights), protocol="lfw-10fold", scale=8,
                                       data_root=str(tiny_lfw), store=str(tmp_path / "r.sqlite"), cache_dir="",
                                       progress=False))
    assert tuple(run["manifest"]["data"]["hr_size"]) == (72, 72) and run["manifest"]["data"]["hr_size_from"] == "model"
    assert 0.0 <= run["metrics"]["accuracy"] <= 1.0 and run["metrics"]["psnr"] > 10
    # resuming on faces of another number of identities is refused
    more = _faces(tmp_path / "more", people=4)
    longer = _config(tmp_path, TINY.replace("{name: cascade, steps: 1", "{name: cascade, steps: 2"))
    with pytest.raises(ConfigError, match="priors over 3 identities, but the training faces have 4"):
        train("csrip", longer, more, tmp_path / "out")


# --- validation metrics and early stopping (001 Sec. 3.4) -----------------------------------------

def test_validation_metrics_by_hand():
    from baselines.csrip import cascade_validation, priors_validation

    model = CSRIP(CSRIPOptions(filters=[4, 4, 4], blocks=1), 8)
    model.size_priors(3)
    model.eval()
    ctx = StageContext(model, None, None, ARCFACE_112x112, 8, torch.device("cpu"))
    lr, hr = torch.rand(2, 3, 24, 24), torch.rand(2, 3, 192, 192)
    with torch.no_grad():
        v = cascade_validation(ctx, Batch(lr, hr, torch.tensor([0, 2]), torch.arange(2)))
        sr = model.cascade(lr)[-1]
    assert torch.allclose(v["ssim"], ssim_map(sr, hr).mean((1, 2, 3)).double())
    assert torch.allclose(v["mse"], ((sr - hr) ** 2).mean((1, 2, 3)).double())
    with torch.no_grad():
        targets = [hr[..., ::4, ::4], hr[..., ::2, ::2], hr]   # any faces at the three sizes
        logits = model.priors(targets)
    labels = torch.stack([z.argmax(1) for z in logits])[0]     # what prior 1 predicts: it is right
    from baselines import csrip as csrip_mod

    orig = csrip_mod.scale_targets
    try:
        csrip_mod.scale_targets = lambda x, n: targets
        with torch.no_grad():
            p = priors_validation(ctx, Batch(lr, hr, labels, torch.arange(2)))
    finally:
        csrip_mod.scale_targets = orig
    assert p["accuracy_x2"].tolist() == [1.0, 1.0]
    for i, key in enumerate(("accuracy_x2", "accuracy_x4", "accuracy_x8")):
        assert p[key].tolist() == (logits[i].argmax(1) == labels).double().tolist()
    assert torch.allclose(p["accuracy"], (p["accuracy_x2"] + p["accuracy_x4"] + p["accuracy_x8"]) / 3)


EARLY = """\
    model: {name: csrip, filters: [4, 4, 4], blocks: 1, upscale_filters: [16, 16, 8], final_block_filters: 4,
            residual_block: conv-bn-lrelu-x2, prior_crop: 2}
    data: {hr_size: [72, 72], scale: 8, degradation: bicubic}
    batch_size: 3
    log_every: 1
    checkpoint_every: 1
    validation: {fraction: 0.5}
    stages:
      - {name: priors, epochs: 4, batch_size: 6, loss_weights: {ce: 1.0},
         early_stopping: {metrics: [accuracy_x2, accuracy_x4, accuracy_x8], patience: 1}}
      - {name: cascade, epochs: 3, loss_weights: {ssim: 1.0, identity: 0.001},
         schedule: {kind: multistep, milestones: [1, 2], gamma: 0.5, unit: epochs},
         early_stopping: {metrics: [ssim, mse], patience: 2}}
    """


def test_early_stopping_on_the_validation_faces_and_resume(tmp_path):
    """3 people x 4 faces, half of each held out: 6 train (1 step of 6 per epoch for the priors,
    2 of 3 for the cascade), 6 validate; each stage evaluates once per epoch and stops when no
    metric improved for ``patience`` evaluations."""
    faces = _faces(tmp_path / "faces", people=3, per=4)
    config = _config(tmp_path, EARLY)
    straight = train("csrip", config, faces, tmp_path / "straight")
    assert straight.complete
    lines = [json.loads(ln) for ln in straight.log.read_text().splitlines()]
    checks = [ln for ln in lines if "validation" in ln]
    priors = [ln for ln in checks if ln["stage"] == "priors"]
    cascade = [ln for ln in checks if ln["stage"] == "cascade"]
    assert [ln["step"] for ln in priors] == [k + 1 for k in range(len(priors))]     # every epoch (1 step)
    assert set(priors[0]["validation"]) == {"accuracy", "accuracy_x2", "accuracy_x4", "accuracy_x8"}
    assert all(0 <= v <= 1 for ln in priors for v in ln["validation"].values())
    assert set(cascade[0]["validation"]) == {"ssim", "mse"}
    assert all(-1 <= ln["validation"]["ssim"] <= 1 and ln["validation"]["mse"] >= 0 for ln in cascade)
    for group, patience, epochs in ((priors, 1, 4), (cascade, 2, 3)):
        assert group[0]["improved"] and group[0]["evaluations_without_gain"] == 0
        stopped = [ln for ln in group if ln["early_stopped"]]
        if stopped:   # the stage ends at the evaluation that reaches the patience
            assert stopped == [group[-1]] and group[-1]["evaluations_without_gain"] == patience
        else:
            assert len(group) == epochs
    n_priors = priors[-1]["step"]
    assert straight.step == n_priors + 2 * len(cascade)
    # the cascade's lr: halved at the end of epochs 1 and 2 (2 steps each)
    lrs = [ln["lr"] for ln in lines if ln.get("stage") == "cascade" and "loss" in ln]
    assert lrs == pytest.approx(([1e-4] * 2 + [5e-5] * 2 + [2.5e-5] * 2)[:len(lrs)])
    # interrupted inside each stage and where the priors stop, then resumed: the same weights, log
    # and early stops
    out = tmp_path / "resumed"
    for k in (1, n_priors, n_priors + 3, straight.step - 1):
        train("csrip", config, faces, out, max_steps=k)
    resumed = train("csrip", config, faces, out)
    a = torch.load(straight.weights, weights_only=True)["model_state"]
    b = torch.load(resumed.weights, weights_only=True)["model_state"]
    assert resumed.step == straight.step and all(torch.equal(a[k], b[k]) for k in a)
    strip = lambda ls: [{k: v for k, v in ln.items() if k != "images_per_s"} for ln in ls]  # noqa: E731
    assert strip(lines) == strip([json.loads(ln) for ln in resumed.log.read_text().splitlines()])


def test_ssim_constants_follow_the_data_range_option():
    """001 Sec. 3.3's C1 = 6.55, C2 = 58.98 are (0.01 x 256)^2, (0.03 x 256)^2: csrip.yaml's
    ssim_data_range 256/255 reaches them on [0, 1] images; the loss and the validation use it."""
    from baselines.csrip import cascade_validation

    model = CSRIP(CSRIPOptions(filters=[4, 4, 4], blocks=1, ssim_data_range=256 / 255), 8)
    model.size_priors(3)
    ctx = StageContext(model, None, None, ARCFACE_112x112, 8, torch.device("cpu"))
    batch = Batch(torch.rand(2, 3, 24, 24), torch.rand(2, 3, 192, 192), torch.tensor([0, 2]), torch.arange(2))
    torch.manual_seed(0)
    terms = cascade_stage(ctx, batch)
    with torch.no_grad():
        outs = model.cascade(batch.lr)
        from baselines.csrip import scale_targets

        want = sum(ssim_loss(sr, hr, 256 / 255) for sr, hr in zip(outs, scale_targets(batch.hr, 3)))
        v = cascade_validation(ctx, batch)
    assert float(terms["ssim"].detach()) == pytest.approx(float(want), rel=1e-6)
    assert torch.allclose(v["ssim"], ssim_map(outs[-1], batch.hr, 256 / 255).mean((1, 2, 3)).double())
    assert (0.01 * 256) ** 2 == pytest.approx(6.55, abs=0.01) and (0.03 * 256) ** 2 == pytest.approx(58.98, abs=0.01)


# --- the priors ablation's switch: alpha = 0 (results/csrip-priors-ablation/) ---------------------

def _trained_state(tmp_path, monkeypatch, name, alpha, drop_identity_term=False):
    """The model's weights after 1 priors step and 2 cascade steps with identity weight ``alpha``;
    with ``drop_identity_term`` the cascade stage returns the identity term as a constant zero,
    cut from the graph: the oracle of a cascade trained without the priors at all."""
    import dataclasses

    from baselines import csrip

    if drop_identity_term:
        def ssim_only(ctx, batch):
            terms = cascade_stage(ctx, batch)
            return {"ssim": terms["ssim"], "identity": torch.zeros(())}
        monkeypatch.setitem(csrip.STAGES, "cascade", dataclasses.replace(csrip.STAGES["cascade"], step=ssim_only))
    text = TINY.replace("{name: cascade, steps: 1, loss_weights: {ssim: 1.0, identity: 0.001}}",
                        f"{{name: cascade, steps: 2, lr: 0.01, loss_weights: {{ssim: 1.0, identity: {alpha}}}}}")
    (tmp_path / name).mkdir()
    faces = tmp_path / "faces"
    if not faces.exists():
        _faces(faces)
    result = train("csrip", _config(tmp_path / name, text), faces, tmp_path / name / "out")
    monkeypatch.undo()
    state = torch.load(result.weights, map_location="cpu", weights_only=False)["model_state"]
    log = [json.loads(line) for line in result.log.read_text().splitlines()]
    return state, [r for r in log if r.get("stage") == "cascade" and "ssim" in r]


def test_identity_weight_zero_removes_exactly_the_priors_term(tmp_path, monkeypatch):
    off, off_log = _trained_state(tmp_path, monkeypatch, "off", 0.0)
    oracle, _ = _trained_state(tmp_path, monkeypatch, "oracle", 0.0, drop_identity_term=True)
    on, on_log = _trained_state(tmp_path, monkeypatch, "on", 0.1)
    assert off.keys() == oracle.keys() == on.keys()
    # alpha = 0: bit for bit the cascade trained with no identity term in its graph at all
    assert all(torch.equal(off[k], oracle[k]) for k in off)
    cascade = [k for k in off if k.startswith("cascade.") and off[k].is_floating_point()]
    priors = [k for k in off if k.startswith("priors.")]
    assert cascade and priors
    # alpha > 0 changes the cascade (the term acts) but not the fixed priors nor the first batch's SSIM
    assert any(not torch.equal(off[k], on[k]) for k in cascade)
    assert all(torch.equal(off[k], on[k]) for k in priors)
    assert off_log[0]["ssim"] == on_log[0]["ssim"] and off_log[0]["identity"] == on_log[0]["identity"] > 0
