"""Early stopping: the validation metrics of a stage kind on the held-out faces (see
``benchmark.training.config``), evaluated every ``every`` units by the trainer's loop. Under
torch.distributed every rank evaluates all held-out faces with the same weights (rank 0's
BatchNorm running statistics, broadcast after each step), so all ranks stop at the same step."""
from __future__ import annotations

from typing import Dict

import torch

from benchmark.errors import FhbenchError
from benchmark.training.spec import Batch, StageContext, StageSpec


def early_stopping(run, spec: StageSpec, ctx: StageContext, stage_state: dict, stage_step: int, step: int,
                    scalars) -> bool:
    """Evaluate the validation metrics, update the stage state; True: stop the stage now."""
    es = ctx.stage.early_stopping
    values = validate(run, spec, ctx)
    state = stage_state.setdefault("early_stopping", {"best": {}, "bad": 0, "evaluations": 0})
    improved = []
    for metric in es.metrics:
        if metric not in values:
            raise FhbenchError(f"{run.spec.name}: stage {ctx.stage.name}'s validation returned no metric "
                               f"{metric!r} (it returned {', '.join(sorted(values))})")
        value, best = values[metric], state["best"].get(metric)
        higher = spec.metrics[metric] == "max"
        if best is None or (value > best + es.min_delta if higher else value < best - es.min_delta):
            state["best"][metric] = value
            improved.append(metric)
    state["bad"] = 0 if improved else state["bad"] + 1
    state["evaluations"] += 1
    stop = state["bad"] >= es.patience
    if stop:
        stage_state["early_stopped"] = stage_step
    scalars.write({"step": step, "stage": ctx.stage.name, "validation": values, "improved": improved,
                   "evaluations_without_gain": state["bad"], "early_stopped": stop})
    return stop


def validate(run, spec: StageSpec, ctx: StageContext) -> Dict[str, float]:
    """Mean of each validation metric over the held-out faces (unflipped, in index order),
    the model in eval mode throughout (every module's flag set directly, so that wrappers
    with sticky modes also use running BatchNorm statistics); the modes are restored."""
    modes = [(m, m.training) for m in run.model.modules()]
    for m, _ in modes:
        m.training = False
    size = run.config.validation.batch_size or run.config.batch_size
    sums: Dict[str, float] = {}
    count = 0
    try:
        with torch.no_grad():
            for s in range(0, len(run.val_indices), size):
                items = [run.data[(int(i), False)] for i in run.val_indices[s:s + size]]
                batch = Batch(torch.stack([it["lr"] for it in items]).to(run.device),
                              torch.stack([it["hr"] for it in items]).to(run.device),
                              torch.tensor([it["label"] for it in items]).to(run.device)
                              if run.data.has_labels else None,
                              torch.tensor([it["index"] for it in items]))
                with torch.autocast(run.device.type, dtype=run.amp_dtype, enabled=run.amp):
                    values = spec.validate(ctx, batch)
                for k, v in values.items():
                    sums[k] = sums.get(k, 0.0) + float(v.detach().double().sum())
                count += len(items)
    finally:
        for m, mode in modes:
            m.training = mode
    return {k: v / count for k, v in sums.items()}
