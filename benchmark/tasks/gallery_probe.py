"""Closed-set identification of SR probes against an HR gallery (lfw-ident, ar-cmc, SCface)."""
from __future__ import annotations

import dataclasses

import numpy as np

from benchmark.faces.faceset import FaceSet
from benchmark.faces.gallery_probe import GalleryProbe
from benchmark.errors import ConfigError, DataError
from benchmark.metrics.identification import cmc_gallery_probe, gallery_probe_split
from benchmark.registry import TASKS
from benchmark.contracts.task import Task, selected
from benchmark.tasks.loo_identification import rank_metrics


@TASKS.register("gallery-probe", summary="rank-k and CMC of SR probes against an HR gallery")
class GalleryProbeIdentification(Task):
    """The gallery is HR, the probes are degraded and super-resolved.

    Options: ``selection`` / ``selection_args`` name the dataset reader's method. It returns
    either a ``GalleryProbe`` (a fixed split, e.g. AR's day-14 gallery and day-1 probes), or a
    ``FaceSet`` that is split ``repeats`` times by ``gallery_probe_split`` (``n_gallery``
    images per identity to the gallery, drawn with ``seed``; the rest are probes). A fixed
    split whose ``probe_groups`` names a declared field of it with one value per probe (SCface:
    ``probe_distance``) is scored per group too (``rank1@<group>``). ``max_rank`` is the CMC length.

    Metrics: ``rank1``, ``rank5``, ``rank10``, with ``_std`` over repeats (ddof=0, like the
    10-fold accuracy) when split repeatedly. Arrays: ``cmc`` (repeats x ranks when repeated)
    and ``probe_rank`` (per probe, rows per repeat) for paired comparisons."""

    OPTIONS = {"selection": "people", "selection_args": {}, "repeats": 0, "n_gallery": 1, "seed": 0,
               "max_rank": 100, "probe_groups": None, "group_names": {}}

    def __init__(self, protocol, data_root):
        super().__init__(protocol, data_root)
        chosen = selected(self, "selection")
        if isinstance(chosen, GalleryProbe):
            if self.options["repeats"]:
                raise ConfigError(f"protocol {protocol.name}: selection {self.options['selection']} is a fixed "
                                  "gallery/probe split; 'repeats' applies to random splits only")
            self._faces, self.gallery, self.probes = chosen.combined()
            self.groups = self._probe_groups(chosen)
            self.notes = list(chosen.notes)
        elif isinstance(chosen, FaceSet):
            if self.options["repeats"] < 1:
                raise ConfigError(f"protocol {protocol.name}: selection {self.options['selection']} gives one "
                                  "face set; set 'repeats' (how many random gallery/probe splits)")
            if self.options["probe_groups"] is not None:  # else silently one group
                raise ConfigError(f"protocol {protocol.name}: option probe_groups needs a fixed gallery/probe "
                                  f"split; selection {self.options['selection']} gives one face set")
            self._faces, self.gallery, self.probes, self.groups, self.notes = chosen, None, None, None, []
        else:
            raise ConfigError(f"protocol {protocol.name}: selection {self.options['selection']} returned "
                              f"{type(chosen).__name__}, not a GalleryProbe or a FaceSet")

    def _probe_groups(self, split):
        attribute = self.options["probe_groups"]
        if attribute is None:
            return None
        # Only a declared field of the split holding one value per probe may be named: never
        # an arbitrary attribute (a method, __class__), nor a gallery_* field of the same length.
        per_probe = [f.name for f in dataclasses.fields(split)
                     if f.name not in ("gallery", "probe", "notes") and not f.name.startswith("gallery_")
                     and _per_probe(getattr(split, f.name), len(self.probes))]
        if attribute not in per_probe:
            raise ConfigError(f"protocol {self.protocol.name}: option probe_groups {attribute!r} is not a per-probe "
                              f"field of selection {self.options['selection']} (fields: "
                              f"{', '.join(per_probe) or 'none'})")
        values = getattr(split, attribute)
        names = self.options["group_names"]
        return np.array([str(names.get(v, v)) for v in np.asarray(values).tolist()])

    def faces(self):
        return self._faces

    def degraded(self):
        return self.probes  # None for random splits: any face may be drawn as a probe

    def _cmc(self, hr_emb, emb, gallery, probes):
        labels = self._faces.labels
        return cmc_gallery_probe(hr_emb[gallery], labels[gallery], emb[probes], labels[probes],
                                 self.options["max_rank"], device=self.scoring_device)

    def score_level(self, hr_emb, emb):
        if self.gallery is not None:
            cmc = self._cmc(hr_emb, emb, self.gallery, self.probes)
            metrics = rank_metrics(cmc.curve)
            if self.groups is not None:
                for group in sorted(set(self.groups.tolist())):
                    part = self._cmc(hr_emb, emb, self.gallery, self.probes[self.groups == group])
                    metrics.update({f"{k}@{group}": v for k, v in rank_metrics(part.curve).items()})
            return metrics, {"cmc": cmc.curve, "probe_rank": cmc.ranks}
        curves, ranks = [], []
        for repeat in range(self.options["repeats"]):
            gallery, probes = gallery_probe_split(self._faces.labels, seed=self.options["seed"], repeat=repeat,
                                                  n_gallery=self.options["n_gallery"])
            cmc = self._cmc(hr_emb, emb, gallery, probes)
            curves.append(cmc.curve)
            ranks.append(cmc.ranks)
        if len({len(r) for r in ranks}) != 1:
            raise DataError("gallery-probe: repeats drew different numbers of probes")  # cannot happen
        curves = np.array(curves)
        per_repeat = [rank_metrics(c) for c in curves]
        metrics = {}
        for key in per_repeat[0]:
            values = np.array([m[key] for m in per_repeat])
            metrics[key], metrics[f"{key}_std"] = float(values.mean()), float(values.std())
        return metrics, {"cmc": curves, "probe_rank": np.array(ranks)}


def _per_probe(values, n_probes: int) -> bool:
    """A list or 1-D array of one value per probe."""
    return isinstance(values, (list, tuple, np.ndarray)) and np.ndim(values) == 1 and len(values) == n_probes
