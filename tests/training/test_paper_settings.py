"""The shipped training configs carry the settings their papers state.

Each assertion names the paper (../shared/papers/, see its README) and the section the value
comes from: 000 = the FR-loss paper (Abello & Hirata, SRResNet + FR loss), 001 = C-SRIP (Grm,
Scheirer & Struc, TIP 2020), 002 = the identity-preserving U-Net (Khazaie et al.), 003 = the
C-SRIP preprint (Grm, Dobrisek & Struc), 004 = C-Face (Han et al., JAIR 2022). Values the
papers do not give (marked "ours" in the configs) are not checked here. When the papers'
text is on this machine, the quoted phrases are checked against it too.
"""
from pathlib import Path

import pytest
import torch

from benchmark.training.config import load_config
from benchmark.training.trainer import TRAINABLE, _learning_rate, trainable

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "baselines" / "configs"
PAPERS = ROOT.parent / "shared" / "papers"


def _load(name):
    trainable("srresnet")  # imports every baseline, filling TRAINABLE
    return load_config(CONFIGS / f"{name}.yaml", {n: m.options for n, m in TRAINABLE.items()})


# --- 000: SRResNet and the FR loss ------------------------------------------------------------

def test_srresnet_follows_the_fr_loss_paper():
    c = _load("srresnet")
    assert c.model_options.blocks == 10                      # 000 Sec. III-D: "We have used 10 residual blocks"
    assert c.data.scale in (4, 8)                            # 000 Sec. IV-D: degraded "on a 4x and 8x scale"
    assert c.data.degradation == "bicubic"                   # 000 Sec. III-A: interpolation + anti-aliasing blur
    (mse,) = c.stages
    assert (mse.optimizer, mse.lr) == ("adam", 1e-4)         # 000 Sec. IV-D: Adam, 10^-4 for the base network
    assert mse.loss_weights == {"mse": 1.0}                  # 000 Sec. III-D: the base network minimises MSE only


def test_srresnet_fr_follows_the_fr_loss_paper():
    c = _load("srresnet-fr")
    assert c.model_options.blocks == 10                      # 000 Sec. III-D
    assert c.data.scale in (4, 8)                            # 000 Sec. IV-D
    base, fine = c.stages
    assert (base.name, base.optimizer, base.lr) == ("mse", "adam", 1e-4)          # 000 Sec. III-D, IV-D
    assert base.loss_weights == {"mse": 1.0}                 # 000 Sec. III-D: first MSE exclusively
    assert (fine.name, fine.optimizer, fine.lr) == ("fr-finetune", "adam", 1e-5)  # 000 Sec. IV-D: 10^-5
    # 000 Sec. III-D: FR loss and MSE weighted so that each is ~50% of the total at the start
    assert fine.loss_weights == {"mse": 1.0, "fr": "auto"}


# --- 001 / 003: C-SRIP --------------------------------------------------------------------------

def test_csrip_sr_network_follows_the_paper():
    c = _load("csrip")
    o = c.model_options
    assert o.filters == [512, 256, 128]                      # 001 Sec. 3.4: 512, 256, 128 filters in modules 1-3
    assert o.blocks == 7                                     # 001 Sec. 3.4: p = 7 residual blocks
    assert o.upscale_filters == [1024, 512, 256]             # 001 Sec. 3.4: final convs of 1024, 512, 256 filters
    assert o.final_block_filters == 128                      # 001 Sec. 3.4: the last residual block has 128 filters
    assert o.residual_block == "conv-bn-lrelu-x2"            # 001 Sec. 3.1: conv-BN-activation x 2, then the sum
    assert o.prior_sigmas == pytest.approx([1 / 3, 1.0, 7 / 3])   # 001 Sec. 3.3: sigma 1/3, 1, 7/3
    assert o.prior_network == "squeezenet1_0-complex-bypass"     # 001 Sec. 3.4: "complex SqueezeNet"
    assert o.prior_crop > 0                                  # 001 Sec. 3.4: random crops for the priors
    # 001 Sec. 3.3: SSIM's C1 = 6.55, C2 = 58.98 on 0..255 (C = (k L)^2 with L in 0..255 units)
    assert (0.01 * 255 * o.ssim_data_range) ** 2 == pytest.approx(6.55, abs=0.005)
    assert (0.03 * 255 * o.ssim_data_range) ** 2 == pytest.approx(58.98, abs=0.005)
    assert tuple(c.data.hr_size) == (192, 192) and c.data.scale == 8   # 001 Sec. 3.3: 24x24 -> 192x192
    assert c.data.degradation == "blur-decimate"             # 001 Sec. 3.3: Gaussian blurring, then decimation
    assert c.data.flip                                       # 001 Sec. 3.4: random horizontal flipping (priors)
    assert c.validation.fraction == pytest.approx(0.1)       # 001 Sec. 4.1: 90% training, 10% validation

    # 001 Sec. 3.1: "a 53-layer deep" network: 1 + 3 x 16 + bridge + 2 + RGB = 53 convolutions on the
    # path to the 8x output (the config records the count and the bridge conv that makes it 53)
    from baselines.csrip import CSRIP

    model = CSRIP(o, 8)
    convs = sum(isinstance(m, torch.nn.Conv2d) for m in model.cascade.modules())
    assert convs - (len(o.filters) - 1) == 53                 # minus the 2x and 4x branch RGB convs
    assert "53" in (CONFIGS / "csrip.yaml").read_text()


def test_csrip_training_follows_the_paper():
    c = _load("csrip")
    priors, cascade = c.stages
    assert priors.name == "priors" and cascade.name == "cascade"   # 001 Sec. 3.3: priors first, then the SR net
    # SqueezeNet priors, 001 Sec. 3.4 (003 Sec. 2.3)
    assert priors.optimizer == "adam"                        # Adam
    assert c.stage_batch_size(priors) == 128                 # "a batch size of 128"
    assert priors.lr == 1e-4                                 # "an initial learning rate of 10^-4"
    s = priors.schedule                                      # "multiplied by a factor of 1/3 every 20 epochs"
    assert (s.kind, s.every, s.unit) == ("step", 20, "epochs") and s.gamma == pytest.approx(1 / 3)
    es = priors.early_stopping                               # no accuracy gain on validation over 10 epochs
    assert set(es.metrics) == {"accuracy_x2", "accuracy_x4", "accuracy_x8"}
    assert (es.patience, es.every, es.unit) == (10, 1, "epochs")
    assert priors.loss_weights == {"ce": 1.0}                # 001 Eq. (1): categorical cross-entropy
    # the SR network, 001 Sec. 3.4 (003 Sec. 2.3)
    assert cascade.optimizer == "adam"                       # Adam
    assert c.stage_batch_size(cascade) == c.batch_size == 8  # "a relatively small batch size of 8"
    # 001 prints "10 / 3 x 10-3" over two lines; 003 Sec. 2.3: \frac{10}{3} x 10^{-3}
    assert cascade.lr == pytest.approx(10 / 3 * 1e-3, rel=1e-12)
    s = cascade.schedule                                     # x 1/3 "at the end of epochs 10, 25, 50 and 80"
    assert (s.kind, s.milestones, s.unit) == ("multistep", [10, 25, 50, 80], "epochs")
    assert s.gamma == pytest.approx(1 / 3)
    spe = 1000   # any epoch length: the lr of epochs 1-10 is the initial one, of epoch 11 a third of it
    lr = [_learning_rate(cascade, e * spe, 100 * spe, spe) for e in (9, 10, 25, 50, 80)]
    assert lr == pytest.approx([10 / 3 * 1e-3 / 3 ** k for k in range(5)])
    es = cascade.early_stopping                              # converged "if both SSIM and MSE show no
    assert set(es.metrics) == {"ssim", "mse"}                # improvements over 10 epochs"
    assert (es.patience, es.every, es.unit) == (10, 1, "epochs")
    assert cascade.loss_weights == {"ssim": 1.0, "identity": 0.001}   # 001 Eq. (4), Sec. 3.4: alpha = 0.001


# --- 002: the identity-preserving U-Net ---------------------------------------------------------

def test_ipunet_follows_the_paper():
    c = _load("ipunet")
    assert tuple(c.data.hr_size) == (128, 128)               # 002 Sec. 3.3: resized to 128x128
    # 002 Sec. 3.3: "7x6, 11x8, 14x12, 16x12, 16x14, 16x16, 18x16, 21x15, 32x32 and 112x96", equally likely
    assert [tuple(s) for s in c.model_options.lr_sizes] == [(7, 6), (11, 8), (14, 12), (16, 12), (16, 14),
                                                            (16, 16), (18, 16), (21, 15), (32, 32), (112, 96)]
    (stage,) = c.stages
    assert stage.loss_weights == {"embedding": 1.0, "pixel": 5.0}   # 002 Eq. (3.3), Sec. 3.2: beta = 5
    from baselines.ipunet import build

    net = build(c.model_options, 1)
    convs = [m for m in net.modules() if type(m).__name__ == "Conv2d"]
    ups = [m for m in net.modules() if type(m).__name__ == "ConvTranspose2d"]
    # 002 Sec. 3.1: 7 downsampling blocks (strided conv, stride 2) and 7 upsampling (transposed conv)
    assert len(convs) == 7 and all(m.stride == (2, 2) for m in convs) and len(ups) == 7


# --- 004: C-Face ------------------------------------------------------------------------------------

def test_cface_losses_follow_the_paper():
    c = _load("cface")
    o = c.model_options
    assert o.blocks == 16 and o.perceptual_network == "vgg19"   # 004 Sec. 3.1: SRGAN backbone; 3.1.2: VGG19
    assert o.perceptual_layer == "relu3_1"                   # 004 Sec. 3.1.2: i = 3, j = 5 (conv3_1, the 5th conv)
    assert o.perceptual_reduction == "sum-channels"          # 004 Eq. (2): sum over W x H of feature vectors / WH
    assert o.si_distance == "squared"                        # 004 Eq. (4): squared normalised Euclidean distance
    assert o.compare_k == 3                                  # 004 Sec. 3.3, 5.1: k = 3
    assert o.asoftmax_m == 4                                 # 004 Sec. 3.1.3: A-Softmax, m = 4
    assert tuple(c.data.hr_size) == tuple(o.hr_size) == (128, 128)   # 004 Sec. 4.1: cropped to 128x128
    assert c.data.scale in (2, 4, 8)                         # 004 Sec. 4.1: LR 64, 32, 16 -> 128
    assert c.batch_size == 64 and all(c.stage_batch_size(s) == 64 for s in c.stages)   # 004 Sec. 4.2


def test_cface_algorithm_1_and_its_settings_follow_the_paper():
    c = _load("cface")
    by_name = {s.name: s for s in c.stages}
    # 004 Algorithm 1: 1) N_SR, N_D with loss (7); 2-3) fine-tune CNN_R on D_HR + D_SR with L_FR;
    # 4) N_SR, N_D with loss (7) while CNN_R descends L_FR (3); before them our MSE start (SRGAN's)
    assert [s.name for s in c.stages] == ["mse", "cface", "recognition_asoftmax", "cface_joint_asoftmax"]
    assert all(s.optimizer == "adam" for s in c.stages)     # 004 Sec. 4.2: Adam in every experiment
    s1, s3, s4 = by_name["cface"], by_name["recognition_asoftmax"], by_name["cface_joint_asoftmax"]
    assert (s1.lr, s1.epochs) == (2e-4, 10)                  # 004 Sec. 4.2: stage 1: 0.0002, 10 epochs
    assert (s4.lr, s4.epochs) == (1e-5, 5)                   # 004 Sec. 4.2: stage 4: 1 x 10^-5, 5 epochs
    for s in (s1, s4):                                       # 004 Sec. 4.2: "a decayed learning rate of 0.99"
        assert (s.schedule.kind, s.schedule.every, s.schedule.gamma, s.schedule.unit) == ("step", 1, 0.99, "epochs")
    assert (s3.lr, s3.epochs) == (0.1, 10)                   # 004 Sec. 4.2: stage 3: initial lr 0.1, 10 epochs
    assert (s3.schedule.kind, s3.schedule.every, s3.schedule.gamma, s3.schedule.unit) == \
        ("step", 1, 0.1, "epochs")                           # "multiplied by 0.1 after each epoch"
    assert s3.loss_weights == {"asoftmax": 1.0}              # 004 Algorithm 1 step 3 with L_FR, Eq. (3)
    # loss (7) = alpha L_GAN + beta L_P + L_CF; 004 Sec. 4.2: alpha = 0.1, beta = 1.0 in each stage
    for s in (s1, s4):
        w = s.loss_weights
        assert (w["perceptual"], w["adversarial"], w["d_real"], w["d_fake"]) == (1.0, 0.1, 0.1, 0.1)
    # L_CF (6): 004 Sec. 4.2: g1 = 0.05, g2 = 0.1 in stage 1; g1 = g2 = 0.05 in stage 4
    assert (s1.loss_weights["si"], s1.loss_weights["compare"]) == (0.05, 0.1)
    assert (s4.loss_weights["si"], s4.loss_weights["compare"]) == (0.05, 0.05)
    assert s4.loss_weights["asoftmax"] > 0                   # 004 Algorithm 1 step 4: CNN_R updated with L_FR


# --- the quoted phrases, against the papers' text when it is here -------------------------------

QUOTES = [
    ("000", "We have used 10 residual blocks"),
    ("000", "and a learning rate of 10−4"),
    ("000", "and 10−5, respectively"),
    ("000", "approximately 50%"),
    ("001", "53-layer deep"),
    ("001", "C1 ≈ 6.55, C2 ≈ 58.98"),
    ("001", "with a batch size of 128 and an initial learning rate of 10−4"),
    ("001", "every 20 epochs"),
    ("001", "random horizontal flipping and random crops"),
    ("001", "If no improvements are observed over 10 consecutive training epochs"),
    ("001", "to 1024 for the first, 512 for the second and 256 for the third module"),
    ("001", "The last residual block of the SR network has 128 filters"),
    ("001", "we use a relatively small batch size of 8"),
    ("001", "at the end of epochs 10, 25, 50 and 80"),
    ("001", "if both SSIM and MSE show no improvements over 10 epochs"),
    ("001", "α = 0.001"),
    ("001", "utilize 90% of the images for training and 10% for validation"),
    ("003", "\\frac{10}{3} \\times 10^{-3}"),
    ("002", "we set β to 5"),
    ("002", "7x6, 11x8, 14x12, 16x12, 16x14, 16x16, 18x16, 21x15, 32x32 and 112x96"),
    ("004", "decayed learning rate of 0.99 and the batch size is 64"),
    ("004", "The learning rates of the GAN in stage 1 and stage 4 are 0.0002"),
    ("004", "10 epochs in stage 1 and 5 epochs in stage 4"),
    ("004", "The initial learning rate of stage 3 is 0.1"),
    ("004", "set  $\\alpha = 0.1$  and  $\\beta = 1.0$"),
    ("004", "$\\gamma_1 = 0.05$ ,  $\\gamma_2 = 0.1$  in stage 1 and  $\\gamma_1 = \\gamma_2 = 0.05$  in stage 4"),
    ("004", "we set i = 3 and j = 5"),
    ("004", "We set m = 4"),
    ("004", "we found that k = 3 has the best performance"),
]


@pytest.mark.parametrize("paper, quote", QUOTES)
def test_the_cited_phrases_are_in_the_papers(paper, quote):
    files = sorted(PAPERS.glob(f"{paper}_*.txt")) if PAPERS.is_dir() else []
    if not files:
        pytest.skip("needs ../shared/papers")
    # line breaks of the extracted text vary: compare with runs of white space made one space
    assert " ".join(quote.split()) in " ".join(files[0].read_text().split())
