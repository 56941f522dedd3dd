"""C-SRIP: architecture sizes against hand counts, the SSIM loss against skimage and the
benchmark's own SSIM, the high-pass residual against scipy, the identity priors, and the
trainer's refusals (no labels, other scales, other identities)."""
import math
import textwrap

import cv2
import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from skimage.metrics import structural_similarity

from baselines.csrip import CSRIP, CSRIPAdapter, CSRIPOptions, _prior_ce, cascade_stage, squeezenet
from baselines.ssim_loss import high_pass, ssim_loss, ssim_map
from baselines.training import Batch, StageContext, train
from benchmark.errors import AdapterError, ConfigError, DataError
from benchmark.metrics.image import ssim_y
from benchmark.templates import ARCFACE_112x112


def conv(k, cin, cout):
    return k * k * cin * cout + cout


def fire(cin, squeeze, e1, e3):
    return conv(1, cin, squeeze) + conv(1, squeeze, e1) + conv(3, squeeze, e3)


def squeezenet11(n_classes):
    """SqueezeNet 1.1 (Iandola et al. 2016; torchvision's layout), counted by hand."""
    fires = [(64, 16, 64, 64), (128, 16, 64, 64), (128, 32, 128, 128), (256, 32, 128, 128),
             (256, 48, 192, 192), (384, 48, 192, 192), (384, 64, 256, 256), (512, 64, 256, 256)]
    return conv(3, 3, 64) + sum(fire(*f) for f in fires) + conv(1, 512, n_classes)


def test_cascade_parameters_and_layers_at_paper_size():
    """9x9 input conv; per module 7 blocks x 2 convs + trunk conv (F -> F, 3x3) + sub-pixel conv
    (F -> 4 F', 3x3); a 9x9 RGB conv per module; F = 512, 256, 128, F' = 256, 128, 128."""
    widths, outs = [512, 256, 128], [256, 128, 128]
    expected = conv(9, 3, 512)
    for f, o in zip(widths, outs):
        expected += 15 * conv(3, f, f) + conv(3, f, 4 * o) + conv(9, o, 3)
    assert expected == 53_201_545   # the sum written out: about 53.2 M parameters
    model = CSRIP(CSRIPOptions(), 8)
    assert sum(p.numel() for p in model.cascade.parameters()) == expected
    assert sum(isinstance(m, torch.nn.Conv2d) for m in model.cascade.modules()) == 1 + 3 * (14 + 2) + 3 == 52
    assert sum(p.numel() for p in model.priors.parameters()) == 0      # sized from the data later
    model.size_priors(10)
    assert sum(p.numel() for p in model.priors.parameters()) == 3 * squeezenet11(10)


def test_squeezenet_hand_count_matches_the_published_size():
    assert squeezenet11(1000) == 1_235_496      # torchvision's squeezenet1_1 model card
    assert sum(p.numel() for p in squeezenet(1000).parameters()) == 1_235_496


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


@pytest.mark.parametrize("options,scale,match", [
    (CSRIPOptions(), 4, "cascade of 3 2x modules upsamples 8x, not 4x"),
    (CSRIPOptions(prior_sigmas=[1.0, 2.0]), 8, "one prior sigma per module: 3 filters but 2 prior_sigmas"),
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


def test_trained_weights_carry_the_priors_and_the_adapter_declares_its_sizes(tmp_path):
    faces = _faces(tmp_path / "faces")
    result = train("csrip", _config(tmp_path), faces, tmp_path / "out")
    adapter = CSRIPAdapter(scale=8, weights=result.weights)
    assert int(adapter.module.priors.n_classes) == 3
    assert (adapter.input_size, adapter.output_size, adapter.scale) == ((9, 9), (72, 72), 8)
    sr = adapter.super_resolve(torch.rand(2, 3, 9, 9), ["a", "b"])
    assert sr.shape == (2, 3, 72, 72)
    with pytest.raises(AdapterError, match=r"outputs 72x72 but the protocol's HR size is 112x96 \(csrip turns "
                                           r"9x9 LR faces into 72x72: run it on lfw-psnr, or on a protocol with "
                                           r"hr_size: \[72, 72\] at x8"):
        adapter.check_compatible((14, 12), (112, 96), 8)
    # resuming on faces of another number of identities is refused
    more = _faces(tmp_path / "more", people=4)
    longer = _config(tmp_path, TINY.replace("{name: cascade, steps: 1", "{name: cascade, steps: 2"))
    with pytest.raises(ConfigError, match="priors over 3 identities, but the training faces have 4"):
        train("csrip", longer, more, tmp_path / "out")
