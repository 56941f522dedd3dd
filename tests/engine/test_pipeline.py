"""The per-image pipeline (engine/pipeline.py) that run, samples and report share: the hr
reference is the identity model on the ``none`` degradation, an SR image equal to its HR
image takes each metric's identical value, and a degradation may draw per-image
parameters from the images' content keys."""
import numpy as np
import pytest

from benchmark.contracts.degradation import make_degradation
from benchmark.engine.pipeline import ImagePipeline, Level, degrade, per_image_metric_values
from benchmark.metrics.image import psnr_y, ssim_y
from benchmark.contracts.metric import MetricSpec, metric_spec
from benchmark.contracts.model_adapters import create_model


class KeyedNoise:
    """A degradation whose noise is a pure function of each image's key."""
    name = "keyed-noise"

    def lr_size(self, hr_hw):
        return tuple(hr_hw)

    def __call__(self, hr, keys=None):
        out = np.array(hr, dtype=np.float32, copy=True)
        for i, key in enumerate(keys):
            rng = np.random.default_rng(int(key[:8], 16))
            out[i] += rng.normal(0, 0.01, out[i].shape).astype(np.float32)
        return np.clip(out, 0, 1)

    def spec(self):
        return {"name": self.name}


class EmbedByMean:
    name, embedding_dim = "mean", 3

    def __init__(self):
        self.seen = 0

    def embed(self, images, frame):
        self.seen += len(images)
        e = np.asarray(images, np.float64).mean(axis=(2, 3))
        return (e / np.linalg.norm(e, axis=1, keepdims=True)).astype(np.float32)


def faces(n=4, seed=0):
    return np.random.default_rng(seed).random((n, 3, 24, 20)).astype(np.float32)


def test_the_hr_reference_is_the_identity_model_on_the_none_degradation():
    hr = faces()
    evaluator = EmbedByMean()
    pipeline = ImagePipeline(create_model("hr"), evaluator, pixel_metrics=[metric_spec("psnr"), metric_spec("ssim")],
                             batch_size=2)
    hr_emb = evaluator.embed(hr, None)
    out = pipeline.process(Level("hr", make_degradation("none")), hr, np.arange(4), list("abcd"), list("0123"), hr_emb)
    assert np.all(np.isinf(out["psnr"])) and np.all(out["ssim"] == 1.0)
    np.testing.assert_array_equal(out["emb"], hr_emb)
    assert evaluator.seen == 4  # SR images identical to HR are not embedded again


def test_a_model_s_images_are_scored_as_the_metrics_define_them():
    hr = faces()
    evaluator = EmbedByMean()
    pipeline = ImagePipeline(create_model("bicubic", scale=2), evaluator,
                             pixel_metrics=[metric_spec("psnr"), metric_spec("ssim")], crop_border=2, batch_size=3)
    level = Level("x2", make_degradation("bicubic", scale=2))
    out = pipeline.process(level, hr, np.arange(4), list("abcd"), list("0123"), evaluator.embed(hr, None))
    from benchmark.faces.resize import upsampled_model_input

    sr = upsampled_model_input(make_degradation("bicubic", scale=2)(hr), (24, 20))
    np.testing.assert_allclose(out["psnr"], psnr_y(sr, hr, crop_border=2), rtol=1e-12)
    np.testing.assert_allclose(out["ssim"], ssim_y(sr, hr, crop_border=2), rtol=1e-12)
    np.testing.assert_allclose(out["emb"], evaluator.embed(sr, None), atol=1e-7)


def test_metrics_that_share_a_joint_form_are_computed_by_one_call_to_it():
    calls = []

    def first(sr, hr, crop_border=0):
        calls.append("first")
        return np.full(len(sr), 1.0)

    def second(sr, hr, crop_border=0):
        calls.append("second")
        return np.full(len(sr), 2.0)

    def both(sr, hr, crop_border=0):
        calls.append("both")
        return {"a": np.full(len(sr), 10.0), "b": np.full(len(sr), 20.0)}

    a = MetricSpec("a", "A", per_image=first, joint=both, identical=-1.0)
    b = MetricSpec("b", "B", per_image=second, joint=both)
    c = MetricSpec("c", "C", per_image=second)
    differ = np.array([0, 2])

    def values_of(fn):
        return fn(np.zeros((2, 3, 4, 4)), np.zeros((2, 3, 4, 4)))

    out = per_image_metric_values([a, b, c], 3, differ, values_of)
    assert calls == ["both", "second"]  # a and b from one joint call, c alone
    np.testing.assert_array_equal(out["a"], [10.0, -1.0, 10.0])  # -1: a's identical value
    np.testing.assert_array_equal(out["b"], [20.0, np.nan, 20.0])
    np.testing.assert_array_equal(out["c"], [2.0, np.nan, 2.0])
    calls.clear()
    per_image_metric_values([a, c], 3, differ, values_of)  # a alone in its group: its own form
    assert calls == ["first", "second"]
    calls.clear()
    per_image_metric_values([a, b], 3, differ, values_of, joint=False)  # the GPU's torch forms
    assert calls == ["first", "second"]
    calls.clear()
    per_image_metric_values([a, b], 3, np.array([], dtype=int), values_of)  # all identical: no call
    assert calls == []
    from benchmark.errors import MetricError

    d = MetricSpec("d", "D", per_image=second, joint=both)  # a joint form that forgot it
    with pytest.raises(MetricError, match=r"^metric d: its joint form both gave no values for it \(only for: a, b\)$"):
        per_image_metric_values([a, d], 3, differ, values_of)


def test_a_degradation_that_takes_keys_gets_each_image_s_key():
    hr = faces(3)
    a = degrade(KeyedNoise(), hr, ["aa00", "bb11", "cc22"])
    # the same image under the same key is degraded identically, whatever batch it is in
    b = degrade(KeyedNoise(), hr[[2, 0]], ["cc22", "aa00"])
    np.testing.assert_array_equal(a[[2, 0]], b)
    assert not np.array_equal(a[0], degrade(KeyedNoise(), hr[:1], ["dd33"])[0])
    # one that takes none is called as before
    np.testing.assert_array_equal(degrade(make_degradation("none"), hr, ["x", "y", "z"]), hr)


def test_sr_output_is_checked_batch_by_batch():
    from benchmark.errors import AdapterError

    class NaNModel:
        name, wants_upsampled_input = "nan", False

        def super_resolve(self, lr, keys):
            out = lr.clone()
            out[0, 0, 0, 0] = float("nan")
            return out

    hr = faces(2)
    pipeline = ImagePipeline(NaNModel(), batch_size=1)
    with pytest.raises(AdapterError, match="nan"):
        pipeline.super_resolve(hr, hr.shape, np.arange(2), ["a", "b"])
