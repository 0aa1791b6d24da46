#!/usr/bin/env python3
"""pykan (PyPI, pinned in requirements-bench.txt) and Polymorph's C KAN on the
same data, shapes, grids, spline order, optimiser, step counts, grid-update
schedule and seed, side by side: test RMSE (regression) or accuracy (digits)
and training time. Target (issue 4): equal or better accuracy, at least 10x
faster training. Run with the bench venv, after `make BUILD=... all`:

    build/bench-venv/bin/python bench/pykan_compare.py [--build build] [--cases exp_sin,xy,4d,digits]

Both sides train in float64. Timing covers training only (pykan: KAN(),
fit() and refine(); Polymorph: the `seconds` the CLI reports for its
training loop, plus the whole process's wall and CPU time for context).
pykan's checkpoints go to a scratch folder and auto-save is off after every
refine, so disk writes do not count against it.
"""
import argparse
import contextlib
import io
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import kan_digits  # noqa: E402
import kan_toys  # noqa: E402

# Polymorph's defaults (kan.h pm_kan_init_defaults / the CLI), given to pykan
# explicitly so both sides start from the same recipe.
NOISE_SCALE = 0.5
GRID_UPDATE_EVERY, GRID_UPDATE_STOP = 10, 50


def single_init_args(build_dir):
    """`--restarts 1` when this build's CLI has restarts (several seeded
    initialisations, best kept): pykan trains one initialisation, so does
    Polymorph here."""
    proc = subprocess.run([os.path.join(build_dir, "polymorph"), "kan", "--help"], capture_output=True, text=True)
    return ["--restarts", "1"] if "--restarts" in proc.stdout else []


def child_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_cli(cmd):
    t0, c0 = time.perf_counter(), child_cpu()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - t0, child_cpu() - c0
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"pykan_compare: command failed ({proc.returncode}): {' '.join(cmd)}")
    out = json.loads([l for l in proc.stdout.splitlines() if l.strip()][-1])
    return out, wall, cpu


def rel(cmd):
    return " ".join(os.path.relpath(c, ROOT) if os.path.isabs(c) else c for c in cmd)


# ---- pykan ----

def pykan_train(shape, grids, steps, seed, xtr, ytr, xte, yte, scratch, threads):
    """Trains pykan through the grid list; returns per-grid test predictions
    and the training time (wall and process CPU)."""
    import torch
    from kan import KAN

    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(threads)
    os.makedirs(scratch, exist_ok=True)
    ds = {"train_input": torch.from_numpy(xtr), "train_label": torch.from_numpy(ytr),
          "test_input": torch.from_numpy(xte), "test_label": torch.from_numpy(yte)}
    per_grid = []
    wall = cpu = 0.0
    sink = io.StringIO()
    with contextlib.redirect_stderr(sink), contextlib.redirect_stdout(sink):
        model = None
        for g in grids:
            t0, c0 = time.perf_counter(), time.process_time()
            if model is None:
                model = KAN(width=list(shape), grid=g, k=3, seed=seed, noise_scale=NOISE_SCALE, grid_eps=1.0,
                            auto_save=False, ckpt_path=os.path.join(scratch, "model"), device="cpu")
            else:
                model = model.refine(g)
                model.auto_save = False
            model.fit(ds, opt="LBFGS", steps=steps, lamb=0.0, update_grid=True,
                      grid_update_num=GRID_UPDATE_STOP // GRID_UPDATE_EVERY, stop_grid_update_step=GRID_UPDATE_STOP)
            wall += time.perf_counter() - t0
            cpu += time.process_time() - c0
            with torch.no_grad():
                pred = model(ds["test_input"]).numpy().copy()
            per_grid.append({"grid": g, "pred": pred, "wall_seconds": wall, "cpu_seconds": cpu})
    return per_grid


# ---- the cases ----

def regression_case(args, name):
    toy = kan_toys.toy_by_name(name)
    shape = toy[3]
    grids = [int(g) for g in (args.grids_4d if name == "4d" else args.grids).split(",")]
    folder = os.path.join(ROOT, args.work, name)
    xtr, ytr = kan_toys.make_data(toy, args.samples, args.seed, False)
    xte, yte = kan_toys.make_data(toy, args.samples, args.seed, True)
    kan_toys.write_set(folder, "train", xtr, ytr)
    test = kan_toys.write_set(folder, "test", xte, yte)
    model = os.path.join(folder, "polymorph.pmkt")
    cmd = [os.path.join(args.build_dir, "polymorph"), "kan", "toy", "--function", toy[1], "--shape",
           ",".join(map(str, shape)), "--grids", ",".join(map(str, grids)), "--steps", str(args.steps), "--seed",
           str(args.seed), "--grid-update", f"{GRID_UPDATE_EVERY},{GRID_UPDATE_STOP}", "--quiet", "--json", "-o", model]
    cmd += single_init_args(args.build_dir)
    pm, pm_wall, pm_cpu = run_cli(cmd)
    # the CLI generated its own copy of the data; check it is ours by scoring the final model on our test set
    pred = os.path.join(folder, "polymorph_pred.npy")
    run_cli([os.path.join(args.build_dir, "polymorph"), "kan", "eval", model, "--function", toy[1], "--seed",
             str(args.seed), "-o", pred, "--json"])
    pm_final_checked = kan_toys.rmse(np.load(pred), yte)
    py = pykan_train(shape, grids, args.steps, args.seed, xtr, ytr, xte, yte, os.path.join(folder, "pykan"), args.threads)
    rows = []
    for g, p, q in zip(grids, pm["grids"], py):
        rows.append({"grid": g, "polymorph_test_rmse": p["test_rmse"], "polymorph_lfu_test_rmse": p.get("lfu_test_rmse"),
                     "polymorph_seconds": p["seconds"], "pykan_test_rmse": kan_toys.rmse(q["pred"], yte),
                     "pykan_wall_seconds": q["wall_seconds"], "pykan_cpu_seconds": q["cpu_seconds"]})
    return {"case": name, "expr": toy[1], "shape": shape, "grids": grids, "steps_per_grid": args.steps,
            "metric": "test_rmse", "rows": rows, "polymorph_final_rmse_checked": pm_final_checked,
            "polymorph_process_wall_seconds": pm_wall, "polymorph_process_cpu_seconds": pm_cpu,
            "polymorph_command": rel(cmd)}


def digits_case(args):
    folder = os.path.join(ROOT, args.work, "digits")
    paths, arrays = kan_digits.dump_digits(folder, args.seed)
    shape = [64, args.digits_hidden, 10]
    model = os.path.join(folder, "polymorph.pmkt")
    cmd = [os.path.join(args.build_dir, "polymorph"), "kan", "train", "--data", paths["train_x"], "--targets",
           paths["train_onehot"], "--test-data", paths["test_x"], "--test-targets", paths["test_onehot"], "--shape",
           ",".join(map(str, shape)), "--grid", str(args.digits_grid), "--steps", str(args.digits_steps), "--seed",
           str(args.seed), "--grid-update", f"{GRID_UPDATE_EVERY},{GRID_UPDATE_STOP}", "--quiet", "--json", "-o", model]
    cmd += single_init_args(args.build_dir)
    pm, pm_wall, pm_cpu = run_cli(cmd)
    pm_acc = kan_digits.accuracy(kan_digits.kan_predict(args.build_dir, model, arrays["test_x"]), arrays["test_labels"])
    py = pykan_train(shape, [args.digits_grid], args.digits_steps, args.seed, arrays["train_x"], arrays["train_onehot"],
                     arrays["test_x"], arrays["test_onehot"], os.path.join(folder, "pykan"), args.threads)[0]
    py_acc = kan_digits.accuracy(py["pred"], arrays["test_labels"])
    row = {"grid": args.digits_grid, "polymorph_test_accuracy": pm_acc, "polymorph_test_rmse": pm.get("test_rmse"),
           "polymorph_seconds": pm["seconds"], "pykan_test_accuracy": py_acc,
           "pykan_test_rmse": kan_toys.rmse(py["pred"], arrays["test_onehot"]),
           "pykan_wall_seconds": py["wall_seconds"], "pykan_cpu_seconds": py["cpu_seconds"]}
    return {"case": "digits", "shape": shape, "grids": [args.digits_grid], "steps_per_grid": args.digits_steps,
            "metric": "test_accuracy", "rows": [row], "polymorph_process_wall_seconds": pm_wall,
            "polymorph_process_cpu_seconds": pm_cpu, "polymorph_command": rel(cmd)}


def print_case(c):
    metric = c["metric"]
    print(f"\n{c['case']}  KAN {c['shape']}  {c['steps_per_grid']} L-BFGS steps per grid")
    print(f"{'grid':>5} {'polymorph ' + metric:>24} {'pykan ' + metric:>20} {'polymorph s':>12} {'pykan s (wall/cpu)':>20} {'speed-up':>9}")
    for r in c["rows"]:
        pm_v, py_v = r["polymorph_" + metric], r["pykan_" + metric]
        speed = r["pykan_wall_seconds"] / r["polymorph_seconds"] if r["polymorph_seconds"] > 0 else float("inf")
        print(f"{r['grid']:5d} {pm_v:24.4g} {py_v:20.4g} {r['polymorph_seconds']:12.2f} "
              f"{r['pykan_wall_seconds']:9.2f}/{r['pykan_cpu_seconds']:<9.2f} {speed:8.1f}x")
    last = c["rows"][-1]
    print(f"  whole run, CPU time: polymorph process {c['polymorph_process_cpu_seconds']:.2f} s, pykan training "
          f"{last['pykan_cpu_seconds']:.2f} s: {last['pykan_cpu_seconds'] / max(c['polymorph_process_cpu_seconds'], 1e-9):.1f}x")
    if "polymorph_final_rmse_checked" in c:
        print(f"  polymorph final model re-scored on our test set: RMSE {c['polymorph_final_rmse_checked']:.4g}")
    print(f"  polymorph process: {c['polymorph_process_wall_seconds']:.2f} s wall, {c['polymorph_process_cpu_seconds']:.2f} s CPU"
          f"  ({c['polymorph_command']})", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build")
    ap.add_argument("--cases", default="exp_sin,xy,4d,digits")
    ap.add_argument("--grids", default="3,10,20", help="grid sequence for the 2-D toys (grid extension)")
    ap.add_argument("--grids-4d", default="3,10")
    ap.add_argument("--steps", type=int, default=200, help="L-BFGS steps per grid (the paper's 200)")
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--digits-hidden", type=int, default=10)
    ap.add_argument("--digits-grid", type=int, default=5)
    ap.add_argument("--digits-steps", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (Polymorph's trainer is single-threaded)")
    ap.add_argument("--work", default=os.path.join("build", "kanbench", "pykan"))
    ap.add_argument("--json")
    args = ap.parse_args()
    args.build_dir = os.path.join(ROOT, args.build)
    results = []
    for name in args.cases.split(","):
        c = digits_case(args) if name == "digits" else regression_case(args, name)
        print_case(c)
        results.append(c)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
