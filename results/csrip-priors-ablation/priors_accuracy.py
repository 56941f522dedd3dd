"""Top-1 accuracy of each identity prior on the HR faces of a labelled root (README, Results):

    python results/csrip-priors-ablation/priors_accuracy.py WEIGHTS.pt TRAIN

WEIGHTS: a csrip weights file (its priors classify TRAIN's identities, in TRAIN's order);
TRAIN: <identity>/<image> (make_roots.py). Prints the accuracy at 48, 96 and 192 px, and how
often the most frequent identity is right (what a prior that knows only the label
frequencies scores).
"""
import sys

import numpy as np
import torch

from baselines.csrip import CSRIP, CSRIPOptions, scale_targets
from benchmark.training.facedata import FaceTrainingSet, open_training_faces


def main(weights, root, batch=64):
    ckpt = torch.load(weights, map_location="cpu", weights_only=False)
    model = CSRIP(CSRIPOptions(**ckpt["model_options"]), ckpt["scale"])
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in ckpt["model_state"].items()})
    model.eval()
    faces = open_training_faces(root)
    data = FaceTrainingSet(faces, ckpt["data"]["hr_size"], lambda hr: hr)
    labels = np.asarray(faces.labels)
    hits = np.zeros((len(model.priors.sigmas), len(data)), bool)
    with torch.no_grad():
        for start in range(0, len(data), batch):
            idx = range(start, min(start + batch, len(data)))
            hr = torch.stack([data[(i, False)]["hr"] for i in idx])
            for p, logits in enumerate(model.priors(scale_targets(hr, len(model.priors.sigmas)))):
                hits[p, start:start + len(idx)] = logits.argmax(1).numpy() == labels[list(idx)]
    side = ckpt["data"]["hr_size"][0]
    for p, h in enumerate(hits):
        print(f"prior at {side >> (len(hits) - 1 - p)} px: top-1 {100 * h.mean():.2f} % of {len(h)} faces")
    print(f"the most frequent identity: {100 * np.bincount(labels).max() / len(labels):.2f} %")


if __name__ == "__main__":
    main(*sys.argv[1:])
