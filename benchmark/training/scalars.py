"""What a training run writes while it runs: loss windows averaged between log lines,
``scalars.jsonl`` (and TensorBoard events where tensorboard is installed), and the progress bar."""
from __future__ import annotations

import json
import time
from pathlib import Path


class LossWindow:
    """Loss terms summed over the steps since the last log line (on the device: no sync)."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.sums, self.total, self.steps, self.images, self.t0 = {}, 0.0, 0, 0, time.perf_counter()

    def add(self, terms, total, n_images):
        for k, v in terms.items():
            self.sums[k] = self.sums.get(k, 0.0) + v.detach().float()
        self.total = self.total + total.detach().float()
        self.steps += 1
        self.images += n_images

    def flush(self, step, stage, lr, mean=dict) -> dict:
        """The window's means; ``mean`` averages them over the ranks (``Dist.mean_terms``)."""
        elapsed = time.perf_counter() - self.t0
        means = mean({**{k: float(v) / self.steps for k, v in self.sums.items()},
                      "loss": float(self.total) / self.steps})
        record = {"step": step, "stage": stage, **{k: means[k] for k in self.sums}, "loss": means["loss"], "lr": lr,
                  "images_per_s": self.images / elapsed if elapsed > 0 else float("inf")}
        self.reset()
        return record


class ScalarLog:
    """``scalars.jsonl`` (and TensorBoard events when available); on resume, lines past
    the checkpoint's step (written after it by the interrupted run) are dropped."""

    def __init__(self, folder: Path, truncate_after: int):
        self.path = folder / "scalars.jsonl"
        if self.path.exists():
            kept = [ln for ln in self.path.read_text().splitlines()
                    if ln.strip() and json.loads(ln)["step"] <= truncate_after]
            self.path.write_text("".join(ln + "\n" for ln in kept))
        self.file = self.path.open("a")
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is optional
            self.tb = None
        else:
            self.tb = SummaryWriter(str(folder / "tb"), purge_step=truncate_after + 1 if truncate_after else None)

    def write(self, record: dict):
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.tb is not None:
            for key, value in record.items():
                if isinstance(value, float):
                    self.tb.add_scalar(f"{record['stage']}/{key}", value, record["step"])

    def close(self):
        self.file.close()
        if self.tb is not None:
            self.tb.close()


class NoScalarLog:
    """What ranks other than 0 write to: nothing (rank 0 writes ``path``)."""

    def __init__(self, folder: Path):
        self.path = folder / "scalars.jsonl"

    def write(self, record: dict):
        pass

    def close(self):
        pass


def progress_bar(total: int, initial: int, name: str, shown: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=name, unit="step", disable=None if shown else True,
                dynamic_ncols=True)
