"""On-disk cache of per-chunk results, so a killed run resumes and a re-run is free.

A cache is a folder named by the hash of everything the results depend on (data hash,
degradation, model and weights, evaluator and weights, crop); each chunk of images is one
``.npz`` written atomically (temporary file, then ``os.replace``), so an interrupted
write never leaves a chunk that looks complete.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Dict, Optional

import numpy as np


def default_cache_dir() -> Path:
    env = os.environ.get("FHBENCH_CACHE")
    return Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fhbench"


def key_hash(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:32]


class ChunkCache:
    def __init__(self, root: Optional[Path], kind: str, key: dict):
        self.dir = None if root is None else Path(root) / kind / key_hash(key)
        if self.dir is not None:
            self.dir.mkdir(parents=True, exist_ok=True)
            meta = self.dir / "key.json"
            if not meta.exists():
                _atomic_write(meta, json.dumps(key, sort_keys=True, indent=1, default=str).encode())

    def _file(self, index: int) -> Path:
        return self.dir / f"chunk-{index:06d}.npz"

    def load(self, index: int) -> Optional[Dict[str, np.ndarray]]:
        if self.dir is None or not self._file(index).exists():
            return None
        try:
            with np.load(self._file(index), allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except (OSError, ValueError):  # unreadable: recompute it
            return None

    def save(self, index: int, arrays: Dict[str, np.ndarray]) -> None:
        if self.dir is None:
            return
        import io

        buf = io.BytesIO()
        np.savez(buf, **arrays)
        _atomic_write(self._file(index), buf.getvalue())


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
