"""Drops the recognition network's copy (SFace, 39 MB, never used at inference: the adapter skips
it) from a trained C-Face weights file, to keep the committed files small. The scored files are
the stripped ones, so every figure in README Results is theirs:

    python results/cface-compare-ablation/strip_recognition.py IN.pt OUT.pt
"""
import sys

import torch

src, out = sys.argv[1:]
c = torch.load(src, map_location="cpu", weights_only=False)
c["model_state"] = {k: v for k, v in c["model_state"].items() if not k.startswith("recognition.")}
torch.save(c, out)
