"""write_pairs_subset: the first k matched and k mismatched pairs of every fold, in order."""
import pytest

from benchmark.datasets.lfw import write_pairs_subset
from benchmark.errors import DataError


def _lfw(root, folds=3, per_fold=4):
    lines = [f"{folds}\t{per_fold}"]
    for f in range(folds):
        lines += [f"M{f}_{i}\t1\t2" for i in range(per_fold)]
        lines += [f"A{f}_{i}\t1\tB{f}_{i}\t1" for i in range(per_fold)]
    root.mkdir()
    (root / "pairs.txt").write_text("\n".join(lines) + "\n")
    (root / "aligned-112x96").mkdir()
    return root


def test_keeps_the_first_pairs_of_each_kind_in_every_fold(tmp_path):
    out = write_pairs_subset(_lfw(tmp_path / "lfw"), tmp_path / "sub", 2)
    lines = (out / "pairs.txt").read_text().splitlines()
    assert lines[0] == "3\t2"
    assert [ln.split("\t")[0] for ln in lines[1:]] == [
        "M0_0", "M0_1", "A0_0", "A0_1", "M1_0", "M1_1", "A1_0", "A1_1", "M2_0", "M2_1", "A2_0", "A2_1"]
    assert (out / "aligned-112x96").resolve() == (tmp_path / "lfw" / "aligned-112x96").resolve()


@pytest.mark.parametrize("k", [0, 5])
def test_a_count_outside_the_fold_is_refused(tmp_path, k):
    with pytest.raises(DataError, match="pairs_per_fold must be 1..4"):
        write_pairs_subset(_lfw(tmp_path / "lfw"), tmp_path / "sub", k)
