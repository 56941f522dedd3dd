"""``fhbench sweep SWEEP.yaml``: a grid of runs (models x protocols x scales x evaluators).

The YAML::

    models:                      # a spec string, or {model: SPEC, weights: FILE, name: ROW}
      - bicubic
      - {model: srresnet, weights: ckpt/srresnet-x8.pt, name: srresnet-ep50}
    protocols: [lfw-10fold, lfw-ident]
    scales: [4, 8]               # optional: each protocol's default scale
    evaluators: [sface]          # optional: sface
    exclude:                     # optional: cells to leave out (any subset of the four keys)
      - {model: bicubic, protocol: lfw-ident}

Each cell is one ``runner.run``. A cell whose row is already stored for the same model
(``store.same_model``: its fingerprint) is skipped; a failing cell is reported with its error
and the others go on. With a cluster, independent cells run at the same time, their shards
sharing the workers; without one, one after another.
"""
from __future__ import annotations

import dataclasses
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from benchmark.errors import ConfigError, FhbenchError, short_error
from benchmark.typed_yaml import read_yaml_mapping

TOP_KEYS = {"models": list, "protocols": list, "scales": list, "evaluators": list, "exclude": list}
MODEL_KEYS = {"model": str, "weights": str, "name": str}
CELL_KEYS = ("model", "protocol", "scale", "evaluator")


@dataclass
class Cell:
    model: str                  # the spec
    weights: Optional[str]
    name: Optional[str]         # the row's name (None: the model's)
    protocol: str
    scale: Optional[int]
    evaluator: str
    status: str = "pending"     # done | skipped | failed
    detail: str = ""
    seconds: float = 0.0

    @property
    def label(self) -> str:
        scale = "" if self.scale is None else f" x{self.scale}"
        return f"{self.name or self.model} {self.protocol}{scale} {self.evaluator}"


def load_sweep(path) -> List[Cell]:
    """The sweep's cells, every name checked: one line naming the file and the culprit."""
    from benchmark.engine.protocols import load_protocol
    from benchmark.registry import EVALUATORS, MODELS

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"sweep file {path} does not exist")
    data = read_yaml_mapping(p)
    for key, value in data.items():
        if key not in TOP_KEYS:
            raise ConfigError(f"sweep file {path}: unknown key {key!r} (known: {', '.join(TOP_KEYS)})")
        if not isinstance(value, TOP_KEYS[key]) or (key != "exclude" and not value):
            raise ConfigError(f"sweep file {path}: key {key!r} must be a non-empty list")
    for key in ("models", "protocols"):
        if key not in data:
            raise ConfigError(f"sweep file {path}: key {key!r} is required")
    models = []
    for entry in data["models"]:
        entry = {"model": entry} if isinstance(entry, str) else entry
        if not isinstance(entry, dict):
            raise ConfigError(f"sweep file {path}: a models entry must be a spec or a mapping, got {entry!r}")
        for k, v in entry.items():
            if k not in MODEL_KEYS:
                raise ConfigError(f"sweep file {path}: models entry {entry}: unknown key {k!r} (known: model, weights, name)")
            if not isinstance(v, str):
                raise ConfigError(f"sweep file {path}: models entry {entry}: key {k!r} must be str")
        spec = entry.get("model")
        if not spec:
            raise ConfigError(f"sweep file {path}: models entry {entry} has no 'model'")
        if spec not in MODELS and ":" not in spec and not Path(spec).expanduser().exists():
            raise ConfigError(f"sweep file {path}: unknown model {spec!r} (registered: {', '.join(MODELS.names())}; "
                              "or pkg.module:build, a .pt/.onnx file, a folder)")
        models.append(entry)
    protocols = {}
    for name in data["protocols"]:
        try:
            protocols[name] = load_protocol(str(name))
        except FhbenchError as err:
            raise ConfigError(f"sweep file {path}: protocol {name!r}: {err}") from None
    evaluators = data.get("evaluators", ["sface"])
    for name in evaluators:
        if not isinstance(name, str) or name not in EVALUATORS:
            raise ConfigError(f"sweep file {path}: unknown evaluator {name!r} (registered: {', '.join(EVALUATORS.names())})")
    scales = data.get("scales", [None])
    for s in scales:
        if s is not None and (isinstance(s, bool) or not isinstance(s, int) or s < 1):
            raise ConfigError(f"sweep file {path}: scales must be positive integers, got {s!r}")
    excludes = data.get("exclude", [])
    for ex in excludes:
        if not isinstance(ex, dict) or not ex or set(ex) - set(CELL_KEYS):
            raise ConfigError(f"sweep file {path}: an exclude entry is a mapping of {', '.join(CELL_KEYS)}, got {ex!r}")
    cells, seen = [], set()
    for m in models:
        for pname, protocol in protocols.items():
            for scale in scales:
                if protocol.lr_sizes:
                    scale = None  # one run covers every LR size
                elif scale is not None and scale not in protocol.scales:
                    continue
                for ev in evaluators:
                    cell = Cell(m["model"], m.get("weights"), m.get("name"), pname, scale, ev)
                    values = {"model": m.get("name") or m["model"], "protocol": pname, "scale": scale, "evaluator": ev}
                    if any(all(values[k] == v or (k == "model" and v == m["model"]) for k, v in ex.items())
                           for ex in excludes):
                        continue
                    key = (m["model"], m.get("name"), pname, scale, ev)
                    if key not in seen:
                        seen.add(key)
                        cells.append(cell)
    if not cells:
        raise ConfigError(f"sweep file {path}: the grid has no cell (every one excluded or off its protocol's scales)")
    return cells


def cell_options(cell: Cell, base) -> object:
    return dataclasses.replace(base, model=cell.model, weights=cell.weights, name=cell.name, protocol=cell.protocol,
                               scale=cell.scale, evaluator=cell.evaluator, cluster=None)


def already_stored(cell: Cell, opts) -> bool:
    """Whether the cell's row is stored for the same model (its fingerprint / identity)."""
    from benchmark.engine import runner
    from benchmark.engine.protocols import load_protocol
    from benchmark.engine.store import ResultStore, same_model
    from benchmark.contracts.model_adapters import create_model

    if not Path(opts.store).exists():
        return False
    protocol = load_protocol(cell.protocol)
    model = create_model(opts.model, scale=opts.scale or protocol.default_scale, weights=opts.weights,
                         clamp=opts.clamp, device=opts.device, upsampled_input=opts.upsampled_input)
    row_level, _ = runner._levels(protocol, model, opts.scale)
    record = {"model": runner._model_record(model, opts)}
    rows = ResultStore(opts.store).runs(protocol=cell.protocol, level=row_level, evaluator=cell.evaluator,
                                        model=opts.name or model.name)
    return any(same_model(r.manifest, record) for r in rows)


def run_sweep(cells: List[Cell], base, client=None, progress: bool = True, on_cell=None) -> List[Cell]:
    """Run every cell (skipping stored ones); each cell ends done, skipped or failed."""
    from tqdm import tqdm

    from benchmark.engine import runner

    overall = tqdm(total=len(cells), unit="cell", desc="sweep", disable=not progress, position=0)

    def one(cell: Cell) -> Cell:
        t0 = time.perf_counter()
        opts = cell_options(cell, base)
        try:
            if already_stored(cell, opts):
                cell.status, cell.detail = "skipped", "stored for the same model"
            else:
                result = runner.run(opts, client=client)
                cell.status, cell.detail = "done", f"run {result['id']}"
        except FhbenchError as err:
            cell.status, cell.detail = "failed", str(err)
        except Exception as err:  # noqa: BLE001 - a cell's crash must not stop the others
            cell.status, cell.detail = "failed", short_error(err)
        cell.seconds = time.perf_counter() - t0
        return cell

    try:
        if client is None:
            for cell in cells:
                one(cell)
                overall.update(1)
                if on_cell:
                    on_cell(cell)
        else:
            from benchmark.engine.cluster import n_workers

            with ThreadPoolExecutor(max_workers=max(1, min(len(cells), n_workers(client)))) as pool:
                for future in as_completed([pool.submit(one, c) for c in cells]):
                    cell = future.result()
                    overall.update(1)
                    if on_cell:
                        on_cell(cell)
    finally:
        overall.close()
    return cells


def summary_table(cells: List[Cell]) -> str:
    """A plain-text table: one row per cell, then the counts."""
    rows = [("cell", "status", "seconds", "detail")]
    rows += [(c.label, c.status, f"{c.seconds:.1f}", c.detail) for c in cells]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["  ".join(r[i].ljust(widths[i]) for i in range(3)) + "  " + r[3] for r in rows]
    counts = {s: sum(c.status == s for c in cells) for s in ("done", "skipped", "failed")}
    lines.append(f"{len(cells)} cells: {counts['done']} done, {counts['skipped']} skipped, {counts['failed']} failed")
    return "\n".join(lines)
