#!/usr/bin/env python3
"""The KAN paper's toy functions, each as a Polymorph KAN beside an MLP of
equal parameter count (the MLP baseline from tools/mlp_train). Both models
see the same .npy files; test RMSE is recomputed here from each model's
saved test predictions, so the figures do not rest on either tool's own
arithmetic. Run from the repository root after `make BUILD=... all`:

    python3 bench/kan_toys.py [--build build] [--grids 3,5,10,20] [--json out.json]

Prints a table and, with --json, writes every measured figure.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

def _bessel_j0_20x(X):
    from scipy.special import j0
    return j0(20.0 * X[:, 0])


def _ellipkinc(X):
    from scipy.special import ellipkinc
    return ellipkinc(X[:, 0], X[:, 1])


# name, expression in the KAN CLI's language (None: not expressible there, so
# the data come from numpy/scipy and each grid is trained from scratch with
# `kan train`), numpy function, KAN shape. Shapes and functions are the
# paper's (Liu et al. 2024: section 3.1 toys, section 3.2 special functions).
TOYS = [
    ("xy", "x*y", lambda X: X[:, 0] * X[:, 1], [2, 2, 1]),
    ("exp_sin", "exp(sin(pi*x)+y^2)", lambda X: np.exp(np.sin(np.pi * X[:, 0]) + X[:, 1] ** 2), [2, 1, 1]),
    ("4d", "exp((sin(pi*(x1^2+x2^2))+sin(pi*(x3^2+x4^2)))/2)",
     lambda X: np.exp((np.sin(np.pi * (X[:, 0] ** 2 + X[:, 1] ** 2)) + np.sin(np.pi * (X[:, 2] ** 2 + X[:, 3] ** 2))) / 2),
     [4, 4, 2, 1]),
    ("bessel", None, _bessel_j0_20x, [1, 1]),
    ("ellipkinc", None, _ellipkinc, [2, 2, 1]),
]


def toy_by_name(name):
    for t in TOYS:
        if t[0] == name:
            return t
    raise SystemExit(f"kan_toys: unknown toy {name!r} (have {', '.join(t[0] for t in TOYS)})")


def cli_uniform(seed, count):
    """The draws `polymorph kan --function` makes (pm_kan_rng in kan.h:
    splitmix64 seeded with seed ^ 0x6a09e667f3bcc909, 53-bit doubles),
    reproduced bit for bit so the MLP trains on the KAN's very samples."""
    with np.errstate(over="ignore"):
        state = np.uint64(seed) ^ np.uint64(0x6A09E667F3BCC909)
        z = state + np.arange(1, count + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * 2.0 ** -53


def make_data(toy, n, seed, test):
    """n points uniform on [-1, 1]^d, the CLI's training (seed 2s+1) or test
    (seed 2s+2) set for --seed s."""
    _, _, fn, shape = toy
    u = cli_uniform(2 * seed + (2 if test else 1), n * shape[0]).reshape(n, shape[0])
    x = -1.0 + (1.0 - -1.0) * u
    return x, fn(x)[:, None]


def write_set(folder, prefix, x, y):
    os.makedirs(folder, exist_ok=True)
    paths = {}
    for key, arr in (("x", x), ("y", y)):
        p = os.path.join(folder, f"{prefix}_{key}.npy")
        np.save(p, np.ascontiguousarray(arr))
        paths[key] = p
    return paths


def run(cmd):
    """Runs cmd, returns (parsed JSON of the last stdout line, wall seconds)."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"kan_toys: command failed ({proc.returncode}): {' '.join(cmd)}")
    lines = [l for l in proc.stdout.splitlines() if l.strip()]
    return json.loads(lines[-1]), wall


def rmse(pred, y):
    return float(np.sqrt(np.mean((np.asarray(pred, dtype=np.float64).reshape(y.shape) - y) ** 2)))


def mlp_fit(build, train, test, params, depth, act, steps, seed, pred_path, opt="lbfgs", lr=1.0):
    cmd = [os.path.join(build, "tools", "mlp_train"), "--train-x", train["x"], "--train-y", train["y"],
           "--test-x", test["x"], "--test-y", test["y"], "--match-params", str(params), "--depth", str(depth),
           "--act", act, "--opt", opt, "--lr", str(lr), "--steps", str(steps), "--seed", str(seed),
           "--predict-out", pred_path, "--json"]
    out, wall = run(cmd)
    out["wall_seconds"] = wall
    out["command"] = " ".join(os.path.relpath(c, ROOT) if os.path.isabs(c) else c for c in cmd)
    return out


def kan_param_count(shape, grid, order):
    """Every trainable number of a KAN (kan.h layout): per edge G + k spline
    coefficients, scale_base and scale_sp. The MLP is matched to this count."""
    edges = sum(a * b for a, b in zip(shape, shape[1:]))
    return edges * (grid + order + 2)


def kan_fit_data(build, train, test, toy, grids, steps, seed, folder):
    """`polymorph kan train` on our .npy files, one fresh network per grid;
    each model's test RMSE is recomputed from its outputs (libpolymorph.so)."""
    import kan_digits  # its ctypes loader; nothing of the digits data

    shape = toy[3]
    edges = sum(a * b for a, b in zip(shape, shape[1:]))
    entries = []
    for g in grids:
        model = os.path.join(folder, f"kan_g{g}.pmkt")
        cmd = [os.path.join(build, "polymorph"), "kan", "train", "--data", train["x"], "--targets", train["y"],
               "--test-data", test["x"], "--test-targets", test["y"], "--shape", ",".join(map(str, shape)),
               "--grid", str(g), "--steps", str(steps), "--seed", str(seed), "--quiet", "--json", "-o", model]
        e, wall = run(cmd)
        e["spline_params"] = e["params"]
        e["params"] = e["params"] + 2 * edges
        e["wall_seconds"] = wall
        e["command"] = " ".join(os.path.relpath(c, ROOT) if os.path.isabs(c) else c for c in cmd)
        e["test_rmse_checked"] = rmse(kan_digits.kan_predict(build, model, np.load(test["x"])), np.load(test["y"]))
        entries.append(e)
    return entries


def kan_fit(build, train, test, toy, grids, steps, seed, folder):
    """`polymorph kan toy`: trains at grids[0], extends the grid to each next
    size by least squares and trains again (the paper's recipe). One entry
    per grid; the final model is re-evaluated on our copy of the test set
    through `kan eval`, and its RMSE recomputed here."""
    name, expr, _, shape = toy
    model = os.path.join(folder, "kan_final.pmkt")
    cmd = [os.path.join(build, "polymorph"), "kan", "toy", "--function", expr, "--shape", ",".join(map(str, shape)),
           "--grids", ",".join(map(str, grids)), "--steps", str(steps), "--seed", str(seed), "--quiet", "--json",
           "-o", model, "--export", os.path.join(folder, "kan_final.pmkn")]
    out, wall = run(cmd)
    edges = sum(a * b for a, b in zip(shape, shape[1:]))
    entries = []
    for g in out["grids"]:
        e = dict(g)
        e["spline_params"] = g["params"]
        e["params"] = g["params"] + 2 * edges  # + scale_base and scale_sp per edge: every trainable number
        e["restarts"] = out.get("restarts", 1)
        entries.append(e)
    pred = os.path.join(folder, "kan_final_pred.npy")
    # --function with the same seed evaluates on the CLI's own test set, which
    # make_data reproduces; the predictions are scored against our targets.
    ev, _ = run([os.path.join(build, "polymorph"), "kan", "eval", model, "--function", expr, "--seed", str(seed),
                 "-o", pred, "--json"])
    entries[-1]["test_rmse_checked"] = rmse(np.load(pred), np.load(test["y"]))
    entries[-1]["eval_rmse"] = ev["rmse"]
    entries[-1]["network"] = os.path.join(folder, "kan_final.pmkn")
    for e in entries:
        e["command"] = " ".join(os.path.relpath(c, ROOT) if os.path.isabs(c) else c for c in cmd)
        e["wall_seconds_all_grids"] = wall
    return entries


def kan_energy(build, net, test_x, presets):
    """`polymorph kan run` of an exported network over the test inputs on each
    preset this build has: cycles and energy per inference (simulated, so
    independent of the host)."""
    have = subprocess.run([os.path.join(build, "polymorph"), "presets"], capture_output=True, text=True, check=True)
    names = [line.split()[0] for line in have.stdout.splitlines() if line.strip()]
    runs = {}
    for p in presets:
        if p not in names:
            runs[p] = {"missing": f"preset {p} is not in this build"}
            continue
        cmd = [os.path.join(build, "polymorph"), "kan", "run", net, "--input", test_x, "--preset", p, "--json"]
        out, _ = run(cmd)
        out["command"] = " ".join(os.path.relpath(c, ROOT) if os.path.isabs(c) else c for c in cmd)
        runs[p] = out
    return runs


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build", help="build folder holding polymorph and tools/mlp_train")
    ap.add_argument("--toys", default=",".join(t[0] for t in TOYS),
                    help="bessel and ellipkinc need scipy (the bench venv has it)")
    ap.add_argument("--grids", default="3,5,10,20")
    ap.add_argument("--kan-steps", type=int, default=200, help="L-BFGS steps per grid")
    ap.add_argument("--mlp-steps", type=int, default=0,
                    help="L-BFGS iterations for the MLP; default: as many as the KAN had up to that grid "
                         "(a pykan/Polymorph KAN step is up to 20 L-BFGS iterations)")
    ap.add_argument("--mlp-acts", default="silu,tanh")
    ap.add_argument("--samples", type=int, default=1000, help="training and test points each")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default=os.path.join("build", "kanbench", "toys"))
    ap.add_argument("--json", help="write all results here")
    ap.add_argument("--skip-kan", action="store_true", help="MLP side only")
    ap.add_argument("--presets", default="edge,lfu-rev0.1,lfu-rev0.4,lfu-rev0.4.1",
                    help="energy per inference of the last grid's exported KAN on these presets ('' = none)")
    args = ap.parse_args()
    build = os.path.join(ROOT, args.build)
    grids = [int(g) for g in args.grids.split(",")]
    results = []
    for name in args.toys.split(","):
        toy = toy_by_name(name)
        shape = toy[3]
        folder = os.path.join(ROOT, args.work, name)
        xtr, ytr = make_data(toy, args.samples, args.seed, False)
        xte, yte = make_data(toy, args.samples, args.seed, True)
        train = write_set(folder, "train", xtr, ytr)
        test = write_set(folder, "test", xte, yte)
        if args.skip_kan:
            kans = [{"grid": g, "params": kan_param_count(shape, g, 3)} for g in grids]
        elif toy[1] is None:
            kans = kan_fit_data(build, train, test, toy, grids, args.kan_steps, args.seed, folder)
        else:
            kans = kan_fit(build, train, test, toy, grids, args.kan_steps, args.seed, folder)
        for index, k in enumerate(kans):
            # the KAN's L-BFGS iterations so far: grid extension accumulates, a fresh network does not
            rounds = index + 1 if toy[1] is not None else 1
            mlp_steps = args.mlp_steps or 20 * args.kan_steps * rounds
            row = {"toy": name, "expr": toy[1], "kan_shape": shape, "grid": k["grid"], "kan": k, "mlp": {}}
            if k.get("params"):
                for act in filter(None, args.mlp_acts.split(",")):
                    pred = os.path.join(folder, f"mlp_{act}_g{k['grid']}_pred.npy")
                    depth = max(1, len(shape) - 2)  # a KAN without hidden layers still gets a nonlinear MLP
                    m = mlp_fit(build, train, test, k["params"], depth, act, mlp_steps, args.seed, pred)
                    m["test_rmse_checked"] = rmse(np.load(pred), yte)
                    row["mlp"][act] = m
            if k.get("network") and args.presets:
                k["engine"] = kan_energy(build, k["network"], test["x"], args.presets.split(","))
            results.append(row)
            print_row(row)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


def print_row(row):
    k = row["kan"]
    parts = [f"{row['toy']:8s} G={row['grid']:<3d} KAN {row['kan_shape']} params {k.get('params')}"]
    if "test_rmse" in k:
        parts.append(f"test RMSE {k['test_rmse']:.3g}")
    if "test_rmse_checked" in k:
        parts.append(f"(rechecked {k['test_rmse_checked']:.3g})")
    for act, m in row["mlp"].items():
        parts.append(f"| MLP {act} {m['shape']} params {m['params']} test RMSE {m['test_rmse_checked']:.3g}")
    print("  ".join(parts), flush=True)
    for p, r in k.get("engine", {}).items():
        if "missing" in r:
            print(f"    kan run on {p}: skipped ({r['missing']})")
        else:
            print(f"    kan run on {p} ({r['mode']}): {r['energy_per_inference_j'] * 1e9:.4g} nJ per inference, "
                  f"{r['cycles']} cycles for {r['samples']} samples, bit-exact {r['bit_exact']}", flush=True)


if __name__ == "__main__":
    main()
