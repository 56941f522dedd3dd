"""The HR reference row is an ordinary run (issue 12): the identity model pins the ``none``
degradation; any model doing so gets the reference row, and no other degradation can be pinned."""
import numpy as np
import pytest

from benchmark.contracts.model import SRAdapter
from benchmark.contracts.model_adapters import create_model
from benchmark.engine import runner
from benchmark.engine.protocols import load_protocol
from benchmark.errors import ConfigError


class Identity(SRAdapter):
    name = "my-identity"
    pinned_degradation = "none"

    def super_resolve(self, lr, keys):
        return lr


def test_any_model_pinning_none_is_the_reference_at_every_scale():
    protocol = load_protocol("lfw-10fold")
    for model in (create_model("hr"), Identity()):
        for scale in (None, 4, 8):
            row, levels = runner._levels(protocol, model, scale)
            assert row == "hr" and [lv.name for lv in levels] == ["hr"]
            hr = np.random.default_rng(0).random((2, 3, 16, 12), dtype=np.float32)
            assert levels[0].degradation.lr_size((16, 12)) == (16, 12)
            np.testing.assert_array_equal(levels[0].degradation(hr), hr)


def test_a_pinned_model_on_an_lr_sizes_protocol_runs_each_size_as_the_reference():
    protocol = load_protocol("lfw-ident")
    row, levels = runner._levels(protocol, create_model("hr"), None)
    assert row == "hr" and [lv.name for lv in levels] == protocol.level_names
    assert {lv.degradation.name for lv in levels} == {"none"}


def test_an_ordinary_model_follows_the_protocol():
    row, levels = runner._levels(load_protocol("lfw-10fold"), create_model("bicubic", scale=8), 8)
    assert row == "x8" and levels[0].degradation.name != "none"


def test_pinning_another_degradation_is_refused_in_one_line():
    class Odd(Identity):
        pinned_degradation = "bicubic"

    with pytest.raises(ConfigError, match="pins degradation 'bicubic'.*only 'none'"):
        runner._levels(load_protocol("lfw-10fold"), Odd(), 8)
