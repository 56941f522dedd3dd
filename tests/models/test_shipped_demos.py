"""The trained CPU demos shipped in results/ (README, Results): each config reads, its weights
are what the config trains (architecture, scale, options, every step done), the log reaches
the last step, and the adapter of the config's model runs the weights. The FR-loss demo and
its control start from the same weights and differ only in the loss; the two arms of the
C-Face ablation differ only in the compare-face weight g2, and its seed replicates only in the
seed; the two arms of the C-SRIP ablation differ only in the priors' weight alpha and keep the
shipped priors bit for bit."""
import dataclasses
import json
from pathlib import Path

import pytest
import torch
import yaml

from benchmark.training.config import load_config, with_overrides
from benchmark.training.trainer import TRAINABLE, read_checkpoint, trainable
from benchmark.contracts.model_adapters import create_model

RESULTS = Path(__file__).resolve().parents[2] / "results"
DEMOS = ["srresnet-cpu-demo", "srresnet-mse-cpu-demo-ft", "srresnet-fr-cpu-demo"]
CFACE_ARMS = ["with-compare", "without-compare"]
CFACE = RESULTS / "cface-compare-ablation"
CFACE_SEEDS = (1, 2, 3, 4)  # the replicates of seed 0 (the arms above), in CFACE / "seeds"
CSRIP_ARMS = ["with-priors", "without-priors"]
CSRIP = RESULTS / "csrip-priors-ablation"
# (config, weights, log) of every shipped trained model
SHIPPED = {**{name: (RESULTS / name / "config.yaml", None, RESULTS / name / "scalars.jsonl") for name in DEMOS},
           **{f"cface-{arm}-cpu": (CFACE / f"{arm}.yaml", CFACE / f"cface-{arm}-cpu.pt",
                                   CFACE / f"cface-{arm}-cpu.scalars.jsonl") for arm in CFACE_ARMS},
           **{f"cface-{arm}-cpu-s{s}": (CFACE / f"{arm}.yaml", CFACE / "seeds" / f"cface-{arm}-cpu-s{s}.pt",
                                        CFACE / "seeds" / f"cface-{arm}-cpu-s{s}.scalars.jsonl")
              for arm in CFACE_ARMS for s in CFACE_SEEDS},
           **{f"csrip-{arm}-cpu": (CSRIP / f"{arm}.yaml", CSRIP / f"csrip-{arm}-cpu.pt",
                                   CSRIP / f"csrip-{arm}-cpu.scalars.jsonl") for arm in CSRIP_ARMS}}


def _load(name):
    trainable("srresnet")  # imports every baseline, filling TRAINABLE
    config_path, weights, log = SHIPPED[name]
    config = load_config(config_path, {n: m.options for n, m in TRAINABLE.items()})
    return config, weights or RESULTS / name / f"{name}-x{config.data.scale}.pt", log


@pytest.mark.parametrize("name", list(SHIPPED))
def test_demo_weights_are_what_its_config_trains(name, monkeypatch):
    monkeypatch.chdir(RESULTS.parent)  # init_weights paths are relative to the project root
    config, weights, log_path = _load(name)
    spec = TRAINABLE[config.model]
    ckpt = read_checkpoint(weights, spec.architecture, config.data.scale)
    assert ckpt["model"] == config.model and ckpt["complete"] is True
    assert ckpt["model_options"] == dataclasses.asdict(config.model_options)
    assert ckpt["step"] == sum(s.steps for s in config.stages)
    assert [s["name"] for s in ckpt["config"]["stages"]] == [s.name for s in config.stages]
    log = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert max(r["step"] for r in log) == ckpt["step"]
    model = create_model(config.model, scale=config.data.scale, weights=str(weights))
    h, w = config.data.hr_size
    lr = torch.rand(2, 3, h // config.data.scale, w // config.data.scale)
    assert model.super_resolve(lr, ["a", "b"]).shape == (2, 3, h, w)


def test_fr_demo_and_its_control_differ_only_in_the_loss():
    raw = {n: yaml.safe_load((RESULTS / n / "config.yaml").read_text()) for n in DEMOS[1:]}
    control, fr = raw["srresnet-mse-cpu-demo-ft"], raw["srresnet-fr-cpu-demo"]
    assert control["init_weights"] == fr["init_weights"] == "results/srresnet-cpu-demo/srresnet-cpu-demo-x8.pt"
    assert (control["model"]["name"], fr["model"]["name"]) == ("srresnet", "srresnet-fr")
    for key in ("data", "batch_size", "seed"):
        assert control[key] == fr[key], key
    (c,), (f,) = control["stages"], fr["stages"]
    assert {k: v for k, v in c.items() if k not in ("name", "loss_weights")} == \
        {k: v for k, v in f.items() if k not in ("name", "loss_weights")}
    assert (c["loss_weights"], f["loss_weights"]) == ({"mse": 1.0}, {"mse": 1.0, "fr": "auto"})
    ckpt = torch.load(RESULTS / "srresnet-fr-cpu-demo" / "srresnet-fr-cpu-demo-x8.pt", weights_only=True)
    assert ckpt["identity_network"]["name"] == "sface"


def test_cface_ablation_arms_differ_only_in_the_compare_weight():
    with_c, without = (yaml.safe_load((CFACE / f"{arm}.yaml").read_text()) for arm in CFACE_ARMS)
    assert with_c["stages"][0] == without["stages"][0]  # the same MSE start
    (g_with, g_without) = (arm["stages"][1]["loss_weights"].pop("compare") for arm in (with_c, without))
    assert (g_with, g_without) == (0.1, 0.0)  # 004 Sec. 4.2, stage 1: g2 = 0.1
    assert with_c == without  # everything else
    assert with_c["stages"][1]["loss_weights"]["perceptual"] == 1.0  # beta, on a random-init VGG19 (header)


def test_cface_seed_replicates_are_the_arms_configs_with_another_seed():
    """Each replicate ran its arm's config with --seed s and nothing else changed; within a seed
    both arms share the MSE start, and the seeds' starts differ."""
    seed0 = [json.loads(line) for line in (CFACE / "cface-with-compare-cpu.scalars.jsonl").read_text().splitlines()]
    starts = [[(r["step"], r["mse"]) for r in seed0 if r["stage"] == "mse"]]
    for s in CFACE_SEEDS:
        mse = {}
        for arm in CFACE_ARMS:
            config, weights, log = _load(f"cface-{arm}-cpu-s{s}")
            ckpt = torch.load(weights, map_location="cpu", weights_only=False)
            ran = {k: v for k, v in ckpt["config"].items() if k != "source"}
            assert ran == {k: v for k, v in with_overrides(config, seed=s).to_dict().items() if k != "source"}
            assert ckpt["config"]["seed"] == s and ckpt["complete"] and ckpt["step"] == 450
            state = ckpt["model_state"]  # stored in float16, without the recognition network
            assert all(v.dtype == torch.float16 for v in state.values() if v.is_floating_point())
            assert not any(k.startswith("recognition.") for k in state)
            rows = [json.loads(line) for line in log.read_text().splitlines()]
            mse[arm] = [(r["step"], r["mse"]) for r in rows if r["stage"] == "mse"]
        assert mse["with-compare"] == mse["without-compare"] and len(mse["with-compare"]) == 30
        starts.append(mse["with-compare"])
    assert all(a != b for i, a in enumerate(starts) for b in starts[i + 1:])


def test_csrip_ablation_arms_differ_only_in_alpha_and_keep_the_shipped_priors(monkeypatch):
    with_p, without = (yaml.safe_load((CSRIP / f"{arm}.yaml").read_text()) for arm in CSRIP_ARMS)
    (a_with, a_without) = (arm["stages"][0]["loss_weights"].pop("identity") for arm in (with_p, without))
    assert (a_with, a_without) == (0.001, 0.0)  # 001 Sec. 3.4: alpha = 0.001
    assert with_p == without  # everything else, the start included
    assert with_p["init_weights"] == "results/csrip-priors-ablation/csrip-priors.pt"
    monkeypatch.chdir(RESULTS.parent)
    priors = torch.load(CSRIP / "csrip-priors.pt", map_location="cpu", weights_only=False)
    config, _, _ = _load("csrip-with-priors-cpu")
    assert priors["model_options"] == dataclasses.asdict(config.model_options)
    assert priors["step"] == 3600 and [s["name"] for s in priors["config"]["stages"]] == ["priors", "cascade"]
    start = {k: v for k, v in priors["model_state"].items() if k.startswith("priors.")}
    assert int(start["priors.n_classes"]) == 283
    for arm in CSRIP_ARMS:
        state = torch.load(CSRIP / f"csrip-{arm}-cpu.pt", map_location="cpu", weights_only=False)["model_state"]
        for key, value in start.items():  # the cascade stage leaves the priors as they were
            assert torch.equal(state[key], value), (arm, key)
        assert any(not torch.equal(state[k], priors["model_state"][k]) for k in state if k.startswith("cascade."))


def test_every_shipped_json_is_strict_json():
    """Strict parsers (browsers, jq) refuse Infinity/NaN: the hr row's inf PSNR is written as
    null plus its place in ``non_finite`` (benchmark.engine.strict_json)."""
    files = sorted(RESULTS.rglob("*.json"))
    assert files
    for path in files:
        json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"{path}: non-JSON constant {c}"))
