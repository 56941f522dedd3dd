"""Run names (``benchmark.engine.names``: which names a run may have; any name as a safe file-name
component) and strict JSON with inf/nan (``benchmark.engine.strict_json``)."""
import hashlib
import json
import math
import re

import numpy as np
import pytest

from benchmark.engine import strict_json
from benchmark.errors import ConfigError, FhbenchError
from benchmark.engine.names import HASH_DIGITS, MAX_RUN_NAME, SLUG_MAX, check_run_name, slug

SAFE = re.compile(r"^[A-Za-z0-9._+@-]+$")


# --- check_run_name -------------------------------------------------------------------

@pytest.mark.parametrize("name", ["srresnet", "SRResNet-fr@x8", "a$b", "x_$1$", "_under", "Ärger 2 (ft)",
                                  "..a", "a..b", "John_O'Neill", "m" * MAX_RUN_NAME])
def test_ordinary_run_names_pass_unchanged(name):
    assert check_run_name(name) == name


@pytest.mark.parametrize("name,why", [
    ("", "is empty"),
    ("m" * (MAX_RUN_NAME + 1), f"is {MAX_RUN_NAME + 1} characters long; at most {MAX_RUN_NAME}"),
    ("a/b", "path separator"),
    ("../../x", "path separator"),
    ("..\\x", "path separator"),
    ("a\0b", "control character '\\x00'"),
    ("two\nlines", "control character '\\n'"),
    ("tab\there", "control character '\\t'"),
    ("del\x7f", "control character '\\x7f'"),
    (".", "is not a name"),
    ("..", "is not a name"),
])
def test_bad_run_names_are_one_line_config_errors(name, why):
    with pytest.raises(ConfigError) as info:
        check_run_name(name)
    message = str(info.value)
    assert why in message and "\n" not in message and "\0" not in message
    assert isinstance(info.value, FhbenchError)
    assert len(message) < 200  # a 201-character name is shown cut, not whole


# --- slug -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["srresnet", "lfw-10fold", "hr", "a.b_c+d-e@f", "x" * SLUG_MAX])
def test_safe_names_are_their_own_slug(name):
    assert slug(name) == name


@pytest.mark.parametrize("name", ["../../x", "a b", "a/b", "", ".", "..", ".hidden", "/", "\0", "é" * 500,
                                  "x" * (SLUG_MAX + 1), "a$b", "con:1", "\\\\server\\share"])
def test_any_name_becomes_one_safe_bounded_component(name):
    s = slug(name)
    assert SAFE.match(s) and not s.startswith(".") and 0 < len(s) <= SLUG_MAX
    assert s == slug(name)  # deterministic
    # changed, so it carries the hash of the original
    assert s.endswith("-" + hashlib.sha256(name.encode()).hexdigest()[:HASH_DIGITS])


def test_different_names_never_share_a_slug():
    long = "x" * (2 * SLUG_MAX)
    names = ["a b", "a_b", "a/b", "a\\b", "a:b", "a\tb", "a  b"[:3], "a é"[:3], long + "1", long + "2",
             ".a", "_a", "..", "__"]
    names.append(slug("a b"))  # a safe name that looks like a changed one keeps its own slug
    assert len(set(names)) == len(names)
    slugs = [slug(n) for n in names]
    assert len(set(slugs)) == len(slugs), dict(zip(names, slugs))


# --- strict JSON ------------------------------------------------------------------------

def _no_constants(name):
    raise ValueError(f"non-standard JSON constant {name}")


def test_non_finite_numbers_become_null_and_are_recorded_by_path():
    doc = {"metrics": {"psnr": math.inf, "ssim": 0.5, "eer": -math.inf},
           "manifest": {"a.b": {"c\\d": [1.0, math.nan, np.float32("-inf")]}, "arr": np.array([2.0, np.inf])},
           "t": (np.float64(3.0), None)}
    text = strict_json.dumps(doc, indent=1)
    parsed = json.loads(text, parse_constant=_no_constants)  # Infinity/NaN would raise
    assert parsed["metrics"] == {"psnr": None, "ssim": 0.5, "eer": None}
    assert parsed["manifest"]["a.b"]["c\\d"] == [1.0, None, None] and parsed["t"] == [3.0, None]
    assert parsed["non_finite"] == {"metrics.psnr": "inf", "metrics.eer": "-inf",
                                    "manifest.a\\.b.c\\\\d.1": "nan", "manifest.a\\.b.c\\\\d.2": "-inf",
                                    "manifest.arr.1": "inf"}
    back = strict_json.loads(text)
    assert "non_finite" not in back
    assert back["metrics"]["psnr"] == math.inf and back["metrics"]["eer"] == -math.inf
    assert back["metrics"]["ssim"] == 0.5 and back["t"] == [3.0, None]  # a real null stays null
    seq = back["manifest"]["a.b"]["c\\d"]
    assert seq[0] == 1.0 and math.isnan(seq[1]) and seq[2] == -math.inf
    assert back["manifest"]["arr"] == [2.0, math.inf]


def test_finite_documents_carry_an_empty_map_and_round_trip():
    text = strict_json.dumps({"a": 1.0, "b": [1, "x"]}, sort_keys=True)
    assert text == '{"a": 1.0, "b": [1, "x"], "non_finite": {}}'
    assert strict_json.loads(text) == {"a": 1.0, "b": [1, "x"]}
    assert strict_json.dumps([1.0, 2]) == "[1.0, 2]"


def test_what_cannot_be_recorded_is_refused():
    with pytest.raises(ValueError, match="not an object"):
        strict_json.dumps([1.0, math.nan])
    with pytest.raises(ValueError, match="reserved"):
        strict_json.dumps({"non_finite": 1})
    with pytest.raises(ValueError, match="Infinity is not JSON"):
        strict_json.loads('{"a": Infinity}')
    with pytest.raises(ValueError, match="names nothing"):
        strict_json.loads('{"a": null, "non_finite": {"b": "inf"}}')
    with pytest.raises(ValueError, match="not null"):
        strict_json.loads('{"a": 2, "non_finite": {"a": "inf"}}')
    with pytest.raises(ValueError, match="inf, -inf or nan"):
        strict_json.loads('{"a": null, "non_finite": {"a": "big"}}')
