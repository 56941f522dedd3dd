"""Writing an output folder whole or not at all: everything goes into a hidden sibling
folder first, which replaces the target only once complete; on any error (or Ctrl-C) the
partial folder is removed and the target is left as it was."""
from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def staged_folder(out: Path) -> Iterator[Path]:
    """Yields the staging folder; on a clean exit it becomes ``out`` (an old ``out`` is
    moved aside first, then deleted)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        yield tmp
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.replace(out, old / "x")
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
