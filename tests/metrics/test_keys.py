"""Metric keys are encoded and parsed in one module (contracts/metric_keys.py)."""
import pytest

from benchmark.contracts.metric_keys import at_level, split_key
from benchmark.contracts.metric import base_name, metric_spec


@pytest.mark.parametrize("name,level,key", [
    ("rank1", "16x12", "rank1@16x12"), ("rank1_std", "16x12", "rank1@16x12_std"),
    ("cmc", "7x6", "cmc@7x6"), ("psnr", None, "psnr"), ("accuracy_std", None, "accuracy_std"),
])
def test_at_level_keeps_the_std_last(name, level, key):
    assert at_level(name, level) == key


@pytest.mark.parametrize("key,parts", [
    ("rank1@16x12_std", ("rank1", "16x12", True)), ("rank1@4.20m", ("rank1", "4.20m", False)),
    ("accuracy_std", ("accuracy_std", None, True)), ("psnr", ("psnr", None, False)),
])
def test_split_key(key, parts):
    assert split_key(key) == parts


def test_the_registry_and_the_levels_read_keys_the_same_way():
    assert base_name("rank1@16x12_std") == "rank1" and base_name("accuracy_std") == "accuracy"
    spec = metric_spec("rank1@16x12")
    assert spec.header == "Rank-1 (%) @16x12" and spec.std == "rank1@16x12_std"
    for name in ("rank1", "rank1_std", "cmc"):
        base, level, std = split_key(at_level(name, "16x12"))
        assert (base + ("_std" if std else ""), level) == (name, "16x12")
