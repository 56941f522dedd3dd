"""The training root of the C-SRIP identity-priors ablation (README, Results). LFW View 2's ten
folds are person-disjoint, so the priors and the cascade can learn people of folds 1-5 without
ever seeing one of the 2,195 people (6,311 images) that folds 6-10 name.

    python results/csrip-priors-ablation/make_roots.py LFW_ROOT TRAIN UNSEEN

TRAIN/<Name>/<Name>_NNNN.jpg: every aligned image of the people that folds 1-5 of pairs.txt
name and that have at least 4 images in LFW (283 people, 2,946 images), for `fhbench train
csrip --data-root TRAIN`.
UNSEEN/aligned-112x96/<Name>/ (and pairs.txt): the people folds 6-10 name, for `fhbench run
--protocol lfw-psnr --data-root UNSEEN` on their 6,311 images alone.
"""
import os
import sys
from pathlib import Path


def named_people(lines) -> set:
    people = set()
    for line in lines:
        fields = line.split()
        people.update((fields[0],) if len(fields) == 3 else (fields[0], fields[2]))
    return people


MIN_IMAGES = 4


def main(lfw_root, train, unseen):
    lfw_root, train, unseen = Path(lfw_root).resolve(), Path(train), Path(unseen)  # links to absolute paths
    aligned = lfw_root / "aligned-112x96"
    lines = (lfw_root / "pairs.txt").read_text().splitlines()
    folds, per_fold = map(int, lines[0].split())
    blocks = [lines[1 + 2 * per_fold * f: 1 + 2 * per_fold * (f + 1)] for f in range(folds)]
    first = set().union(*map(named_people, blocks[:5]))
    second = set().union(*map(named_people, blocks[5:]))
    if first & second:
        raise SystemExit(f"folds 1-5 and 6-10 share {len(first & second)} people")
    for person in sorted(first):
        images = sorted(os.listdir(aligned / person))
        if len(images) >= MIN_IMAGES:
            (train / person).mkdir(parents=True)
            for image in images:
                (train / person / image).symlink_to(aligned / person / image)
    (unseen / "aligned-112x96").mkdir(parents=True)
    (unseen / "pairs.txt").write_bytes((lfw_root / "pairs.txt").read_bytes())
    for person in sorted(second):
        (unseen / "aligned-112x96" / person).symlink_to(aligned / person)


if __name__ == "__main__":
    main(*sys.argv[1:])
