"""Protocol specs: the shipped ones parse; every malformed file is a ConfigError that
names the file; extra folders (FHBENCH_PROTOCOLS) add and override protocols."""
import re
from pathlib import Path

import pytest
import yaml

from benchmark.errors import ConfigError, UnknownNameError
from benchmark.engine.protocols import list_protocols, load_protocol, parse_protocol
from benchmark.registry import DATASETS, DEGRADATIONS, TASKS

SHIPPED = Path(__file__).resolve().parents[2] / "protocols"

VALID = {
    "name": "my-proto", "summary": "a test protocol", "dataset": "lfw", "task": "pairs-10fold",
    "degradation": "bicubic", "scales": [2, 4], "default_scale": 4,
    "metrics": ["accuracy", "auc"], "primary_metric": "accuracy",
}


def write(proto_dir, data, name="my-proto"):
    path = proto_dir / f"{name}.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def test_shipped_protocols_parse(monkeypatch):
    monkeypatch.delenv("FHBENCH_PROTOCOLS", raising=False)
    files = sorted(SHIPPED.glob("*.yaml"))
    assert files and list_protocols() == sorted(f.stem for f in files)
    for f in files:
        p = load_protocol(f.stem)
        assert p.name == f.stem and p.source == f
        assert p.primary_metric in p.metrics
        assert (p.default_scale in p.scales) if p.scales else (p.lr_sizes and p.default_scale is None)


def test_shipped_protocols_name_registered_plugins(monkeypatch):
    monkeypatch.delenv("FHBENCH_PROTOCOLS", raising=False)
    for name in list_protocols():
        p = load_protocol(name)
        assert p.dataset in DATASETS and p.task in TASKS and p.degradation in DEGRADATIONS, name
        assert set(p.options) <= set(TASKS.get(p.task).OPTIONS), name  # else the task refuses them


def test_lfw_10fold_values(monkeypatch):
    monkeypatch.delenv("FHBENCH_PROTOCOLS", raising=False)
    p = load_protocol("lfw-10fold")
    assert (p.dataset, p.task, p.degradation) == ("lfw", "pairs-10fold", "bicubic")
    assert p.scales == [2, 4, 8] and p.default_scale == 8 and p.primary_metric == "accuracy"
    assert p.options == {"pairs": "pairs", "pairs_args": {"filename": "pairs.txt"}, "pair_mode": "sr-sr"}
    spec = p.spec()
    assert spec["name"] == "lfw-10fold" and spec["source"] == str(SHIPPED / "lfw-10fold.yaml")


def test_extra_folder_adds_and_overrides(proto_dir):
    write(proto_dir, VALID)
    write(proto_dir, {**VALID, "name": "lfw-10fold", "scales": [3], "default_scale": 3}, "lfw-10fold")
    assert {"my-proto", "lfw-10fold"} <= set(list_protocols())
    p = load_protocol("my-proto")
    assert p.scales == [2, 4] and p.options == {} and p.crop_border == 0
    assert load_protocol("lfw-10fold").scales == [3]  # the user's folder comes first


@pytest.mark.parametrize("change,pattern", [
    ({"colour": "blue"}, r"colour: unknown key \(known: name, summary, "),
    ({"default_scale": "4"}, r"default_scale: must be integer or null, got str '4'"),
    ({"default_scale": True}, r"default_scale: must be integer or null, got bool True"),
    ({"scales": 4}, r"scales: must be a list, got int 4"),
    ({"scales": [2, 0]}, r"'scales' must be a list of integers >= 2"),
    ({"scales": [2, "4"]}, r"scales\[1\]: must be an integer, got str '4'"),
    ({"scales": [1, 2]}, r"'scales' must be a list of integers >= 2"),  # 1 is the hr reference
    ({"lr_sizes": [[16, 12]]}, r"exactly one of 'scales'.*and 'lr_sizes'"),
    ({"hr_size": [192]}, r"hr_size: must be \[integer, integer\] or null, got list \[192\]"),
    ({"hr_size": [192, 0]}, r"'hr_size' must hold \[height, width\] pairs"),
    ({"image_metrics": "no"}, r"image_metrics: must be true or false, got str 'no'"),
    ({"options": [1]}, r"options: must be a mapping, got list \[1\]"),
    ({"name": "other-name"}, r"name 'other-name' differs from the file name"),
    ({"primary_metric": "psnr"}, r"primary_metric 'psnr' is not in metrics"),
])
def test_bad_values_name_the_file(proto_dir, change, pattern):
    path = write(proto_dir, {**VALID, **change})
    with pytest.raises(ConfigError, match=re.escape(str(path)) + ".*" + pattern):
        load_protocol("my-proto")


@pytest.mark.parametrize("key", ["summary", "primary_metric"])
def test_missing_key(proto_dir, key):
    data = dict(VALID)
    del data[key]
    path = write(proto_dir, data)
    with pytest.raises(ConfigError, match=re.escape(str(path)) + f": {key}: missing \\(required\\)"):
        load_protocol("my-proto")


def test_levels_are_scales_or_lr_sizes(proto_dir):
    data = {k: v for k, v in VALID.items() if k not in ("scales", "default_scale")}
    path = write(proto_dir, data)
    with pytest.raises(ConfigError, match=re.escape(str(path)) + ".*exactly one of 'scales'"):
        load_protocol("my-proto")
    write(proto_dir, {**data, "lr_sizes": [[7, 6], [16, 14]], "hr_size": [112, 96]})
    p = load_protocol("my-proto")
    assert p.lr_sizes == [(7, 6), (16, 14)] and p.hr_size == (112, 96) and p.scales == []
    assert p.level_names == ["7x6", "16x14"] and p.image_metrics is True
    path = write(proto_dir, {**data, "lr_sizes": [[7, 6]], "default_scale": 4})
    with pytest.raises(ConfigError, match=re.escape(str(path)) + ".*'default_scale' makes no sense"):
        load_protocol("my-proto")
    path = write(proto_dir, {**data, "lr_sizes": [[7, 6, 1]]})
    with pytest.raises(ConfigError, match=re.escape(str(path)) + r".*lr_sizes\[0\]: must be a list of 2: \[integer, "
                                                                 r"integer\], got list \[7, 6, 1\]"):
        load_protocol("my-proto")


@pytest.mark.parametrize("text,pattern", [
    ("name: [unclosed\n", "not valid YAML"),
    ("name: a\n  bad: indent\n", "not valid YAML"),
    ("- a list\n- of things\n", "must be a mapping"),
    ("", "must be a mapping"),
])
def test_bad_yaml_names_the_file(proto_dir, text, pattern):
    path = write(proto_dir, text)
    with pytest.raises(ConfigError, match=re.escape(str(path)) + ".*" + pattern):
        parse_protocol(path)


def test_unknown_protocol_suggests(monkeypatch):
    monkeypatch.delenv("FHBENCH_PROTOCOLS", raising=False)
    with pytest.raises(UnknownNameError, match=r"unknown protocol 'lfw-10-fold'; did you mean lfw-10fold"):
        load_protocol("lfw-10-fold")


@pytest.mark.parametrize("change,pattern", [
    ({"options": {"pair_mod": "sr-sr"}}, r"options\.pair_mod: unknown option of task pairs-10fold \(known: pairs, "),
    ({"options": {"pair_mode": 3}}, r"options\.pair_mode: must be a string, got int 3"),
    ({"options": {"pairs_args": [1]}}, r"options\.pairs_args: must be a mapping, got list \[1\]"),
    ({"degradation_options": {"quantise": False}}, r"degradation_options\.quantise: unknown parameter of "
                                                    r"degradation bicubic \(known: scale, size, quantize\)"),
    ({"degradation_options": {"quantize": "no"}}, r"degradation_options\.quantize: must be true or false, "
                                                   r"got str 'no'"),
    ({"degradation": "blur-decimate", "degradation_options": {"sigma": "1e-1"}},
     r"degradation_options\.sigma: must be number or null, got str '1e-1'"),
])
def test_task_and_degradation_options_are_checked_by_the_typed_loader(proto_dir, change, pattern):
    path = write(proto_dir, {**VALID, **change})
    with pytest.raises(ConfigError, match=re.escape(str(path)) + ": " + pattern):
        load_protocol("my-proto")
