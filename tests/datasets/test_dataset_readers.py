"""Every registered dataset follows the reader contract (contracts/dataset.py): a DatasetReader
with at least one selection, and nothing but its selections reachable from a protocol."""
import pytest

from benchmark.contracts.dataset import DatasetReader
from benchmark.errors import ConfigError
from benchmark.faces.selections import call_selection
from benchmark.registry import DATASETS


@pytest.mark.parametrize("name", DATASETS.names())
def test_each_registered_dataset_is_a_reader_with_selections(name):
    reader = DATASETS.get(name)
    assert issubclass(reader, DatasetReader)
    assert reader.selections(), f"{name} has no @selection"
    assert "inventory" not in reader.selections() and "__init__" not in reader.selections()


def test_a_method_that_is_not_a_selection_cannot_be_named():
    lfw = DATASETS.get("lfw")
    reader = lfw.__new__(lfw)  # no data needed: the check is on the class
    with pytest.raises(ConfigError, match="'inventory', which is not a selection of dataset LFW"):
        call_selection(reader, "inventory", {}, "protocol toy", "selection")
