"""Stores trained weights in float16 to keep the committed files small (the adapter loads them into
its float32 network; the scored files are these, so every figure in README Results is theirs):

    python results/ipunet-multires-ablation/half_weights.py IN.pt OUT.pt
"""
import sys

import torch

src, out = sys.argv[1:]
c = torch.load(src, map_location="cpu", weights_only=False)
c["model_state"] = {k: v.half() if v.is_floating_point() else v for k, v in c["model_state"].items()}
torch.save(c, out)
