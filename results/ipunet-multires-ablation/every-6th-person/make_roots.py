"""The two data roots of the IPU-Net ablation (README, Results), as symlinks into the real LFW:

    python results/ipunet-multires-ablation/every-6th-person/make_roots.py LFW_ROOT TRAIN SUBSET

TRAIN/<Name>/<Name>_NNNN.jpg: every aligned image of the people pairs.txt never names (1,468
people, 1,549 images in full LFW), for `fhbench train --data-root TRAIN`.
SUBSET/aligned-112x96/<Name>/ and SUBSET/pairs.txt: every 6th (in name order, from the first) of
the people with at least 4 images, lfw-ident's selection (102 of 610 people, 938 images), for
`fhbench run --protocol lfw-ident --data-root SUBSET`.
"""
import os
import sys
from pathlib import Path


def pairs_people(pairs: Path) -> set:
    named = set()
    for line in pairs.read_text().splitlines()[1:]:
        fields = line.split()
        if len(fields) == 3:
            named.add(fields[0])
        elif len(fields) == 4:
            named.update((fields[0], fields[2]))
    return named


def main(lfw_root, train, subset):
    lfw_root, train, subset = Path(lfw_root).resolve(), Path(train), Path(subset)  # links to absolute paths
    aligned = lfw_root / "aligned-112x96"
    named = pairs_people(lfw_root / "pairs.txt")
    people = sorted(os.listdir(aligned))
    for person in people:
        if person not in named:
            (train / person).mkdir(parents=True)
            for image in sorted(os.listdir(aligned / person)):
                (train / person / image).symlink_to(aligned / person / image)
    ident = [p for p in people if len(os.listdir(aligned / p)) >= 4]
    (subset / "aligned-112x96").mkdir(parents=True)
    (subset / "pairs.txt").write_bytes((lfw_root / "pairs.txt").read_bytes())
    for person in ident[::6]:
        (subset / "aligned-112x96" / person).symlink_to(aligned / person)


if __name__ == "__main__":
    main(*sys.argv[1:])
