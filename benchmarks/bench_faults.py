"""Kill a run at random moments, resume it, and check that no wrong number is ever stored.

    python benchmarks/bench_faults.py [--data-root ../shared/data/lfw] [--n-images 900]
        [--kills 10] [--models bicubic,srresnet] [--seed 0] [--batch-size 16]
        [--json PATH] [--keep DIR]

What it measures (issue 11, "No wrong number ever stored"): an `lfw-10fold` run at x8 (SFace)
on a subset of the real LFW is killed with SIGKILL (the whole process group) at --kills random
moments, each run in a fresh store and cache dir. After each kill the store is inspected: it
may be absent or hold no row for the run, but a row whose arrays or metrics are incomplete
against the uninterrupted reference is a partial row (the goal: 0). Then the same command is
run again with the same store and cache (the resume), to completion, and its stored metrics
(exact equality of every value, inf/NaN-aware) and every stored array (dtype, shape and bytes)
are compared with those of one uninterrupted reference run of the model in its own fresh store
and cache (the goal: every resume bit-identical). Also printed: how many images each resume
recomputed (HR embeddings + SR images), read from the resumed run's manifest
(`manifest["cache"]["computed"]`) where the runner records it, else counted as the rows the
resume added to the per-image cache files (CACHE/hr/*.sqlite, CACHE/sr/*.sqlite); the source
used is printed.

The subset: a temporary LFW root whose pairs.txt takes, from each of the 10 official folds,
the first k matched and the first k mismatched pairs (header "10 k"), k chosen so that the
distinct images named come closest to --n-images (k = 30: 901 images, 600 pairs, for 900),
and symlinks to just those images in aligned-112x96/.

Models: `bicubic`, and a small conv model, the shipped 32-filter SRResNet
(`--model srresnet --weights results/srresnet-cpu-demo/srresnet-cpu-demo-x8.pt`). Each run is
`fhbench run --model M --protocol lfw-10fold --scale 8 --batch-size 16 --quiet` in a
subprocess. Kill times are drawn from a seeded RNG (--seed) uniformly between 1 s and 0.9 x
the reference run's wall time; a kill that lands after the run has finished still counts
(its resume re-runs from a full cache) and is marked "finished before the kill". The CPUs are
shared, so a run can be much faster than its reference was: when one finishes before its
kill, later kill times are drawn up to 0.9 x that run's wall time instead (printed), so the
kills keep landing inside the run.

A complete row present right after a kill (the run had finished, or was killed after its
commit) is compared with the reference too: "complete, WRONG" in the table and
`wrong_rows_after_kill` in the JSON (goal 0). "Recomputed" counts what the resume fed its
stages, as the runner reports it: HR images embedded, and SR images computed (the runner
recomputes whole SR batches, so this may exceed the images that were missing).

The JSON (--json PATH) holds the headline figures `kills`, `identical` and `partial_rows`,
each the SUM over the models run, plus `models` (per model: those three figures,
`wrong_rows_after_kill`, `finished_before_kill`, the reference wall time and the final kill
window) and `trials` (one entry per kill).

Time: each kill costs about one reference run plus a start-up (the killed run, then its
resume). Measured on 2 CPU cores shared with other jobs (load ~3.5): reference runs 47 s
(bicubic) and 126 s (SRResNet), the default 2 x 10 kills 33 min in all (17 min bicubic,
16 min SRResNet); less on quiet cores. --conv-kills 5 about halves the SRResNet's share.
"""
from __future__ import annotations

import argparse
import io
import json
import math
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PROTOCOL, SCALE = "lfw-10fold", 8
CONV_WEIGHTS = ROOT / "results" / "srresnet-cpu-demo" / "srresnet-cpu-demo-x8.pt"
MODELS = {  # name shown -> extra `fhbench run` arguments
    "bicubic": ["--model", "bicubic"],
    "srresnet": ["--model", "srresnet", "--weights", str(CONV_WEIGHTS)],
}
IMAGE_FOLDER = "aligned-112x96"
MIN_KILL_S = 1.0
KILL_FRACTION = 0.9


# ----------------------------------------------------------------------------- the LFW subset

def _pair_images(fields):
    if len(fields) == 3:
        return [(fields[0], int(fields[1])), (fields[0], int(fields[2]))]
    return [(fields[0], int(fields[1])), (fields[2], int(fields[3]))]


def build_subset(lfw: Path, n_images: int, dest: Path):
    """Write dest/pairs.txt (10 folds of the first k matched + k mismatched official pairs) and
    symlink the images it names into dest/aligned-112x96; return (k, number of images)."""
    lines = (lfw / "pairs.txt").read_text().splitlines()
    n_folds, per_fold = (int(x) for x in lines[0].split())
    body = [ln.split() for ln in lines[1:] if ln.strip()]
    folds = [body[f * 2 * per_fold:(f + 1) * 2 * per_fold] for f in range(n_folds)]

    def chosen(k):
        return [fold[:k] + fold[per_fold:per_fold + k] for fold in folds]

    def distinct(k):
        return {img for fold in chosen(k) for pair in fold for img in _pair_images(pair)}

    best = min(range(1, per_fold + 1), key=lambda k: (abs(len(distinct(k)) - n_images), k))
    dest.mkdir(parents=True, exist_ok=True)
    with open(dest / "pairs.txt", "w") as fh:
        fh.write(f"{n_folds}\t{best}\n")
        for fold in chosen(best):
            for pair in fold:
                fh.write("\t".join(pair) + "\n")
    images = sorted(distinct(best))
    for name, number in images:
        rel = f"{name}/{name}_{number:04d}.jpg"
        src = lfw / IMAGE_FOLDER / rel
        if not src.is_file():
            sys.exit(f"bench_faults: {src} is missing")
        (dest / IMAGE_FOLDER / name).mkdir(parents=True, exist_ok=True)
        os.symlink(src.resolve(), dest / IMAGE_FOLDER / rel)
    return best, len(images)


# ----------------------------------------------------------------------------- running fhbench

def fhbench_command(exe, model_args, data_root, store, cache, batch_size):
    return [*exe, "run", *model_args, "--protocol", PROTOCOL, "--scale", str(SCALE),
            "--data-root", str(data_root), "--store", str(store), "--cache-dir", str(cache),
            "--batch-size", str(batch_size), "--quiet"]


def run_to_end(cmd, log: Path, fatal: bool = True):
    """Run ``cmd`` to completion; return (wall seconds, error line or None)."""
    t0 = time.perf_counter()
    with open(log, "ab") as fh:
        rc = subprocess.call(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    wall = time.perf_counter() - t0
    if rc == 0:
        return wall, None
    tail = log.read_text(errors="replace").strip().splitlines()
    if fatal:
        sys.exit(f"bench_faults: `{' '.join(cmd)}` exited {rc}:\n" + "\n".join(tail[-20:]))
    return wall, f"exited {rc}: {tail[-1] if tail else ''}"


def run_and_kill(cmd, delay: float, log: Path):
    """Start ``cmd`` in its own process group, SIGKILL the group after ``delay`` seconds;
    return (finished, seconds): whether the run had already finished by then (nothing was
    killed), and when it finished or was killed."""
    t0 = time.perf_counter()
    with open(log, "ab") as fh:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            rc = proc.wait()
    elapsed = time.perf_counter() - t0
    if rc not in (0, -signal.SIGKILL):
        tail = log.read_text(errors="replace")[-2000:]
        sys.exit(f"bench_faults: `{' '.join(cmd)}` exited {rc} before the kill:\n{tail}")
    return rc == 0, elapsed


# ----------------------------------------------------------------------------- reading results

def read_store(path: Path):
    """[(metrics, manifest, {array name: array})] of every run row of ``path`` (read with sqlite3
    directly; opening it read-write lets SQLite roll back a hot journal a kill left behind,
    as every reader of the store would)."""
    if not path.exists():
        return []
    con = sqlite3.connect(str(path), timeout=120)
    try:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "runs" not in tables:
            return []
        rows = con.execute("SELECT id, metrics, manifest FROM runs WHERE protocol = ?", (PROTOCOL,)).fetchall()
        out = []
        for run_id, metrics, manifest in rows:
            arrays = {}
            if "arrays" in tables:
                for name, data in con.execute("SELECT name, data FROM arrays WHERE run_id = ?", (run_id,)):
                    arrays[name] = np.load(io.BytesIO(data), allow_pickle=False)
            out.append((json.loads(metrics), json.loads(manifest), arrays))
        return out
    finally:
        con.close()


def the_run(path: Path):
    rows = read_store(path)
    if len(rows) != 1:
        sys.exit(f"bench_faults: expected one {PROTOCOL} run in {path}, found {len(rows)}")
    return rows[0]


def cache_rows(cache: Path) -> dict:
    """{"hr": rows, "sr": rows} over the per-image cache files under ``cache``."""
    counts = {}
    for kind in ("hr", "sr"):
        n = 0
        for f in sorted((cache / kind).glob("*.sqlite")) if (cache / kind).is_dir() else []:
            con = sqlite3.connect(str(f), timeout=120)
            try:
                if con.execute("SELECT 1 FROM sqlite_master WHERE name = 'items'").fetchone():
                    n += con.execute("SELECT COUNT(*) FROM items").fetchone()[0]
            finally:
                con.close()
        counts[kind] = n
    return counts


def same_value(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b
    return type(a) is type(b) and a == b


def differences(ref, got) -> list:
    """What differs between two runs' metrics and arrays (empty: bit-identical)."""
    (ref_m, _, ref_a), (got_m, _, got_a) = ref, got
    diffs = [f"metric {k} missing" for k in ref_m if k not in got_m]
    diffs += [f"metric {k} extra" for k in got_m if k not in ref_m]
    diffs += [f"{k} {got_m[k]!r} vs {ref_m[k]!r}" for k in ref_m if k in got_m and not same_value(ref_m[k], got_m[k])]
    diffs += [f"array {k} missing" for k in ref_a if k not in got_a]
    diffs += [f"array {k} extra" for k in got_a if k not in ref_a]
    for k in ref_a:
        if k in got_a:
            a, b = ref_a[k], got_a[k]
            if a.dtype != b.dtype or a.shape != b.shape or a.tobytes() != b.tobytes():
                n = int(np.sum(a != b)) if a.shape == b.shape else -1
                diffs.append(f"array {k} differs ({n} of {a.size} items)" if n >= 0 else f"array {k} shape")
    return diffs


def partial(ref, got) -> bool:
    """A row present but incomplete against the reference: arrays or metric keys missing."""
    (ref_m, _, ref_a), (got_m, _, got_a) = ref, got
    return not set(ref_a) <= set(got_a) or not set(ref_m) <= set(got_m)


# ----------------------------------------------------------------------------- main

def find_fhbench(arg):
    if arg:
        return [arg]
    beside = Path(sys.executable).parent / "fhbench"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("fhbench")
    return [found] if found else [sys.executable, "-m", "benchmark.cli"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data" / "lfw"),
                    help="the real LFW (pairs.txt beside aligned-112x96/)")
    ap.add_argument("--n-images", type=int, default=900, help="about this many distinct images")
    ap.add_argument("--kills", type=int, default=10, help="kills per model")
    ap.add_argument("--conv-kills", type=int, default=None,
                    help="kills for the conv model (srresnet); default --kills")
    ap.add_argument("--models", default="bicubic,srresnet", help=f"comma-separated, of {', '.join(MODELS)}")
    ap.add_argument("--seed", type=int, default=0, help="seed of the kill times")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--fhbench", default=None, help="the fhbench executable (default: beside this Python)")
    ap.add_argument("--json", default=None, metavar="PATH", help="write the headline figures here")
    ap.add_argument("--keep", default=None, metavar="DIR", help="keep the stores, caches and logs in DIR")
    args = ap.parse_args()
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        ap.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    if "srresnet" in models and not CONV_WEIGHTS.is_file():
        sys.exit(f"bench_faults: {CONV_WEIGHTS} is missing")
    exe = find_fhbench(args.fhbench)
    rng = random.Random(args.seed)

    if args.keep:
        work = Path(args.keep).resolve()
        work.mkdir(parents=True, exist_ok=True)
        tmp = None
    else:
        tmp = tempfile.TemporaryDirectory(prefix="fhbench-faults-")
        work = Path(tmp.name)
    t_start = time.perf_counter()
    try:
        k, n_images = build_subset(Path(args.data_root), args.n_images, work / "lfw")
        print(f"{PROTOCOL} x{SCALE}, evaluator sface, on a subset of {args.data_root}: 10 folds x "
              f"({k} matched + {k} mismatched) = {20 * k} pairs, {n_images} images; batch size "
              f"{args.batch_size}; kill times seed {args.seed}; work folder {work}")
        per_model, trials, sources = {}, [], set()
        for model in models:
            n_kills = args.conv_kills if (model == "srresnet" and args.conv_kills is not None) else args.kills
            mdir = work / model

            def command(tag):
                return fhbench_command(exe, MODELS[model], work / "lfw", mdir / tag / "store.sqlite",
                                       mdir / tag / "cache", args.batch_size)

            (mdir / "reference").mkdir(parents=True, exist_ok=True)
            ref_wall, _ = run_to_end(command("reference"), mdir / "reference" / "log.txt")
            ref = the_run(mdir / "reference" / "store.sqlite")
            hi = max(MIN_KILL_S + 0.1, KILL_FRACTION * ref_wall)
            accuracy = ref[0].get("accuracy", float("nan")) * 100
            print(f"\n{model}: reference run (uninterrupted, fresh store and cache) {ref_wall:.1f} s, "
                  f"{len(ref[0])} metrics, {len(ref[2])} arrays, accuracy {accuracy:.2f} %; "
                  f"{n_kills} kills between {MIN_KILL_S:.0f} and {hi:.1f} s")
            print(f"{'model':<10}{'trial':>6}{'kill s':>8}  {'row after kill':<16}{'recomputed (hr + sr)':>24}"
                  f"{'resume s':>10}  identical?")
            summary = {"kills": 0, "identical": 0, "partial_rows": 0, "wrong_rows_after_kill": 0,
                       "finished_before_kill": 0, "reference_wall_s": round(ref_wall, 2)}
            windows = []
            for trial in range(n_kills):
                tag = f"kill{trial:02d}"
                (mdir / tag).mkdir(parents=True, exist_ok=True)
                log = mdir / tag / "log.txt"
                delay = MIN_KILL_S + rng.random() * (hi - MIN_KILL_S)
                finished, elapsed = run_and_kill(command(tag), delay, log)
                if finished and KILL_FRACTION * elapsed < hi:
                    # the CPUs are shared: runs get faster when the machine gets quieter. Keep
                    # later kills inside the run: the window shrinks to 0.9 x the fastest run.
                    hi = max(MIN_KILL_S + 0.1, KILL_FRACTION * elapsed)
                    windows.append((trial, elapsed, hi))
                after = read_store(mdir / tag / "store.sqlite")
                is_partial = any(partial(ref, row) for row in after)
                if not after:
                    state = "none"
                elif is_partial:
                    state = "PARTIAL"
                else:
                    state = "complete" + ("" if not differences(ref, after[0]) else ", WRONG")
                before = cache_rows(mdir / tag / "cache")
                resume_wall, failed = run_to_end(command(tag), log, fatal=False)
                rows = [] if failed else read_store(mdir / tag / "store.sqlite")
                if not failed and len(rows) != 1:
                    failed = f"{len(rows)} rows stored"
                got = rows[0] if not failed else ({}, {}, {})
                computed = (got[1].get("cache") or {}).get("computed")
                if isinstance(computed, dict):
                    source = 'manifest["cache"]["computed"]'
                    hr_n = int(computed.get("hr", 0))
                    sr_n = int(sum(v for key, v in computed.items() if key != "hr"))
                else:
                    source = "cache rows added by the resume"
                    now = cache_rows(mdir / tag / "cache")
                    hr_n, sr_n = now["hr"] - before["hr"], now["sr"] - before["sr"]
                sources.add(source)
                diffs = [f"resume failed ({failed})"] if failed else differences(ref, got)
                same = not diffs
                summary["kills"] += 1
                summary["identical"] += same
                summary["partial_rows"] += is_partial
                summary["finished_before_kill"] += finished
                summary["wrong_rows_after_kill"] += state.endswith("WRONG")
                note = f" (finished before the kill, in {elapsed:.1f} s)" if finished else ""
                verdict = "yes" if same else f"NO: {'; '.join(diffs[:3])}{' ...' if len(diffs) > 3 else ''}"
                print(f"{model:<10}{trial:>6}{delay:>8.1f}  {state:<16}{f'{hr_n + sr_n} ({hr_n} + {sr_n})':>24}"
                      f"{resume_wall:>10.1f}  {verdict}{note}", flush=True)
                trials.append({"model": model, "trial": trial, "kill_s": round(delay, 3),
                               "finished_before_kill": finished, "row_after_kill": state,
                               "partial_row": is_partial, "recomputed_hr": hr_n, "recomputed_sr": sr_n,
                               "recomputed_source": source, "resume_s": round(resume_wall, 2),
                               "identical": same, "differences": diffs})
                if not args.keep:
                    shutil.rmtree(mdir / tag, ignore_errors=True)
            summary["kill_window_s"] = [MIN_KILL_S, round(hi, 2)]
            per_model[model] = summary
            print(f"{model}: identical {summary['identical']}/{summary['kills']} (goal {summary['kills']}/"
                  f"{summary['kills']}), partial rows {summary['partial_rows']} (goal 0), complete rows "
                  f"with a wrong value after a kill {summary['wrong_rows_after_kill']} (goal 0), "
                  f"{summary['finished_before_kill']} kill(s) after the run had finished")
            for trial, elapsed, new_hi in windows:
                print(f"  (trial {trial}'s run finished in {elapsed:.1f} s, faster than the reference: "
                      f"later kill times drawn up to {new_hi:.1f} s)")
        wall = time.perf_counter() - t_start
        totals = {key: sum(s[key] for s in per_model.values()) for key in ("kills", "identical", "partial_rows")}
        print(f"\nall models: identical {totals['identical']}/{totals['kills']}, partial rows "
              f"{totals['partial_rows']} (goal: {totals['kills']}/{totals['kills']} and 0); images recomputed "
              f"from {' and '.join(sorted(sources))}; wall {wall / 60:.1f} min")
        if args.json:
            out = {**totals, "models": per_model, "n_images": n_images, "pairs_per_half_fold": k,
                   "protocol": PROTOCOL, "scale": SCALE, "evaluator": "sface", "batch_size": args.batch_size,
                   "seed": args.seed, "recomputed_source": sorted(sources), "wall_s": round(wall, 1),
                   "trials": trials}
            Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
            print(f"wrote {args.json}")
    finally:
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    main()
