#!/usr/bin/env python3
"""scikit-learn's bundled 8x8 digits: a Polymorph KAN and an MLP of equal
parameter count (tools/mlp_train), test accuracy, and the KAN's energy per
inference on the `edge` preset and on the LFU-fabric presets through
`polymorph kan run`. Needs scikit-learn (build/bench-venv has it):

    build/bench-venv/bin/python bench/kan_digits.py [--build build] [--json out.json]

Data: load_digits(), pixels 0..16 scaled to [-1, 1], a stratified 80/20
split with random_state 0, written to build/kanbench/digits/*.npy (x as
float64, labels as int64, one-hot targets as float64 for the KAN's MSE loss).
Accuracy is recomputed here from each model's saved test outputs.
"""
import argparse
import ctypes
import json
import os
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSES = 10


def dump_digits(folder, seed=0):
    """Writes the split once; returns the paths and the arrays."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = d.data.astype(np.float64) / 16.0 * 2.0 - 1.0
    y = d.target.astype(np.int64)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.2, random_state=seed, stratify=y)
    os.makedirs(folder, exist_ok=True)
    arrays = {
        "train_x": xtr, "train_labels": ytr, "train_onehot": np.eye(CLASSES)[ytr],
        "test_x": xte, "test_labels": yte, "test_onehot": np.eye(CLASSES)[yte],
    }
    paths = {}
    for name, arr in arrays.items():
        paths[name] = os.path.join(folder, name + ".npy")
        np.save(paths[name], np.ascontiguousarray(arr))
    return paths, arrays


def run(cmd):
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"kan_digits: command failed ({proc.returncode}): {' '.join(cmd)}")
    lines = [l for l in proc.stdout.splitlines() if l.strip()]
    return json.loads(lines[-1]), wall


def rel(cmd):
    return " ".join(os.path.relpath(c, ROOT) if os.path.isabs(c) else c for c in cmd)


def accuracy(outputs, labels):
    return float(np.mean(np.argmax(np.asarray(outputs).reshape(len(labels), -1), axis=1) == labels))


def kan_param_count(shape, grid, order):
    edges = sum(a * b for a, b in zip(shape, shape[1:]))
    return edges * (grid + order + 2)


def mlp_fit(build, paths, params, loss, act, opt, steps, lr, seed, pred):
    ykey = "train_labels" if loss == "ce" else "train_onehot"
    cmd = [os.path.join(build, "tools", "mlp_train"), "--train-x", paths["train_x"], "--train-y", paths[ykey],
           "--test-x", paths["test_x"], "--test-y", paths[ykey.replace("train", "test")], "--match-params", str(params),
           "--depth", "1", "--act", act, "--loss", loss, "--opt", opt, "--steps", str(steps), "--lr", str(lr),
           "--seed", str(seed), "--predict-out", pred, "--json"]
    out, wall = run(cmd)
    out["wall_seconds"] = wall
    out["command"] = rel(cmd)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build")
    ap.add_argument("--hidden", type=int, default=10, help="KAN hidden width: shape 64,H,10")
    ap.add_argument("--grid", type=int, default=5)
    ap.add_argument("--kan-steps", type=int, default=50)
    ap.add_argument("--mlp-steps", type=int, default=0,
                    help="MLP iterations; default: the KAN's L-BFGS iterations (20 per KAN step)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default=os.path.join("build", "kanbench", "digits"))
    ap.add_argument("--presets", default="edge,lfu-rev0.1,lfu-rev0.4,lfu-rev0.4.1")
    ap.add_argument("--skip-kan", action="store_true")
    ap.add_argument("--json")
    args = ap.parse_args()
    build = os.path.join(ROOT, args.build)
    folder = os.path.join(ROOT, args.work)
    paths, arrays = dump_digits(folder, args.seed)
    shape = [64, args.hidden, CLASSES]
    result = {"data": {"train": len(arrays["train_labels"]), "test": len(arrays["test_labels"])}, "kan_shape": shape,
              "grid": args.grid}
    if args.skip_kan:
        kan = {"params": kan_param_count(shape, args.grid, 3)}
    else:
        kan = kan_fit(build, paths, arrays, shape, args)
    result["kan"] = kan
    print(f"KAN {shape} G={args.grid}: params {kan['params']}"
          + (f", test accuracy {kan['test_accuracy_checked']:.4f} (LFU fp32 {kan['lfu_test_accuracy']:.4f}), "
             f"train {kan['seconds']:.2f} s" if "test_accuracy_checked" in kan else ""), flush=True)
    if not args.skip_kan:
        kan["engine"] = kan_energy(build, os.path.join(ROOT, kan["network"]), paths, arrays, args.presets.split(","), folder)
        for p, r in kan["engine"].items():
            if "missing" in r:
                print(f"  kan run on {p}: skipped ({r['missing']})")
            else:
                print(f"  kan run on {p} ({r['mode']}): {r['energy_per_inference_j'] * 1e9:.4g} nJ per inference, "
                      f"{r['cycles']} cycles for {r['samples']} samples, bit-exact {r['bit_exact']}, "
                      f"accuracy {r['test_accuracy_checked']:.4f}", flush=True)
    result["mlp"] = {}
    mlp_steps = args.mlp_steps or 20 * args.kan_steps
    # the KAN's own loss and optimiser (MSE on one-hot, L-BFGS), then the MLP's usual ones
    for loss, opt, lr in (("mse", "lbfgs", 1.0), ("ce", "lbfgs", 1.0), ("ce", "adam", 1e-2)):
        pred = os.path.join(folder, f"mlp_{loss}_{opt}_pred.npy")
        m = mlp_fit(build, paths, kan["params"], loss, "silu", opt, mlp_steps, lr, args.seed, pred)
        m["test_accuracy_checked"] = accuracy(np.load(pred), arrays["test_labels"])
        result["mlp"][f"{loss}_{opt}"] = m
        print(f"MLP {m['shape']} {loss}/{opt}: params {m['params']}, test accuracy {m['test_accuracy_checked']:.4f}, "
              f"train {m['train_seconds']:.2f} s", flush=True)
    mlp_shape = next(iter(result["mlp"].values()))["shape"]
    result["mlp_energy"] = mlp_energy(build, mlp_shape, len(arrays["test_labels"]))
    print(f"MLP {mlp_shape} matmuls on edge: {result['mlp_energy']['energy_per_inference_j'] * 1e9:.4g} nJ per inference "
          f"(lower bound: matrix products only)", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


class _PmError(ctypes.Structure):
    _fields_ = [("status", ctypes.c_int), ("message", ctypes.c_char * 1024)]


def kan_predict(build, model_path, x, exported=False):
    """Outputs of a saved KAN on x, through libpolymorph.so: a .pmkt model in
    double precision (pm_kan_forward), or an exported .pmkn network in fp32
    through its LFU tables (pm_kan_lfu_forward, what the engine computes).
    The structs are opaque here: generous buffers, freed by the library."""
    lib = ctypes.CDLL(os.path.join(build, "libpolymorph.so"))
    data = open(model_path, "rb").read()
    net = ctypes.create_string_buffer(1 << 16)
    err = _PmError()
    load = lib.pm_kan_lfu_net_load if exported else lib.pm_kan_load
    if load(data, ctypes.c_size_t(len(data)), net, ctypes.byref(err)) != 0:
        raise SystemExit(f"kan_digits: {model_path}: {err.message.decode()}")
    # widths follow a leading u32 depth in both structs
    depth = ctypes.c_uint32.from_buffer(net, 0).value
    outs = ctypes.c_uint32.from_buffer(net, 4 * (1 + depth)).value
    n = x.shape[0]
    try:
        if exported:
            xf = np.ascontiguousarray(x, dtype=np.float32)
            y = np.zeros((n, outs), dtype=np.float32)
            st = lib.pm_kan_lfu_forward(net, xf.ctypes.data_as(ctypes.c_void_p), ctypes.c_size_t(n),
                                        y.ctypes.data_as(ctypes.c_void_p), ctypes.byref(err))
        else:
            xd = np.ascontiguousarray(x, dtype=np.float64)
            y = np.zeros((n, outs), dtype=np.float64)
            st = lib.pm_kan_forward(net, xd.ctypes.data_as(ctypes.c_void_p), ctypes.c_size_t(n),
                                    y.ctypes.data_as(ctypes.c_void_p), ctypes.byref(err))
        if st != 0:
            raise SystemExit(f"kan_digits: forward: {err.message.decode()}")
    finally:
        (lib.pm_kan_lfu_net_free if exported else lib.pm_kan_free)(net)
    return y


def available_presets(build):
    proc = subprocess.run([os.path.join(build, "polymorph"), "presets"], capture_output=True, text=True, check=True)
    return [line.split()[0] for line in proc.stdout.splitlines() if line.strip()]


def kan_energy(build, net, paths, arrays, presets, folder):
    """`polymorph kan run` of the exported network over the whole test set on
    each preset: energy per inference, cycles, the engine's own bit-exact
    check against host inference, and accuracy from the engine's outputs."""
    have = available_presets(build)
    runs = {}
    for p in presets:
        if p not in have:
            runs[p] = {"missing": f"preset {p} is not in this build (polymorph presets)"}
            continue
        pred = os.path.join(folder, f"kan_run_{p}.npy")
        cmd = [os.path.join(build, "polymorph"), "kan", "run", net, "--input", paths["test_x"], "--preset", p,
               "--output", pred, "--json"]
        out, wall = run(cmd)
        out["test_accuracy_checked"] = accuracy(np.load(pred), arrays["test_labels"])
        out["command"] = rel(cmd)
        runs[p] = out
    return runs


def mlp_energy(build, shape, batch):
    """Energy of the MLP's matrix products on the edge preset through
    `polymorph bench gemm` (bf16 operands, fp32 out): a lower bound of its
    inference energy, since the SiLU, biases and argmax are not included."""
    parts = []
    for k, n in zip(shape, shape[1:]):
        cmd = [os.path.join(build, "polymorph"), "bench", "gemm", str(batch), str(n), str(k), "--preset", "edge",
               "--no-native", "--json"]
        out, _ = run(cmd)
        parts.append({"M": batch, "N": n, "K": k, "energy_j": out["energy_j"], "cycles": out["cycles"],
                      "bit_exact": out["bit_exact"], "command": rel(cmd)})
    total = sum(p["energy_j"] for p in parts)
    return {"preset": "edge", "batch": batch, "matmuls": parts, "energy_j": total,
            "energy_per_inference_j": total / batch, "cycles": sum(p["cycles"] for p in parts)}


def kan_fit(build, paths, arrays, shape, args):
    """`polymorph kan train` on the one-hot targets (the KAN trains with MSE);
    accuracy from the saved model's outputs, in double and through the
    exported LFU tables in fp32."""
    model = os.path.join(ROOT, args.work, "kan.pmkt")
    net = os.path.join(ROOT, args.work, "kan.pmkn")
    cmd = [os.path.join(build, "polymorph"), "kan", "train", "--data", paths["train_x"], "--targets",
           paths["train_onehot"], "--test-data", paths["test_x"], "--test-targets", paths["test_onehot"], "--shape",
           ",".join(map(str, shape)), "--grid", str(args.grid), "--steps", str(args.kan_steps), "--seed",
           str(args.seed), "--quiet", "--json", "-o", model, "--export", net]
    out, wall = run(cmd)
    edges = sum(a * b for a, b in zip(shape, shape[1:]))
    out["spline_params"] = out["params"]
    out["params"] = out["params"] + 2 * edges  # + scale_base and scale_sp: every trainable number
    out["wall_seconds"] = wall
    out["command"] = rel(cmd)
    out["test_accuracy_checked"] = accuracy(kan_predict(build, model, arrays["test_x"]), arrays["test_labels"])
    out["lfu_test_accuracy"] = accuracy(kan_predict(build, net, arrays["test_x"], exported=True), arrays["test_labels"])
    out["model"] = os.path.relpath(model, ROOT)
    out["network"] = os.path.relpath(net, ROOT)
    return out


if __name__ == "__main__":
    main()
