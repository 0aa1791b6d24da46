#!/usr/bin/env python3
"""Polymorph beside SCALE-Sim: the same array size, dataflow and GEMM shapes
through both simulators, cycle counts side by side (docs/bench.md explains
every difference between them).

For each shape (bench/gemm_shapes.csv: name,M,N,K with Y[M x N] = X[M x K] x
W[K x N]) and dataflow, this runs `polymorph bench gemm M N K --json` (the
whole program: DMA, tiling, the tensor unit) and SCALE-Sim 3 in GEMM mode on
an array of the same rows x cols. SCALE-Sim's GEMM topology row is
"name, M, N, K," with M the output rows, N the output columns (its filters)
and K the reduction (its window), which is our M, N, K unchanged.

SCALE-Sim runs in its default bandwidth-estimate mode (InterfaceBandwidth =
CALC: operands are assumed to arrive in time, so its count is the array's
compute cycles, no memory stalls); --user-bandwidth instead gives it our
DRAM bandwidth in words per cycle and the SRAM sizes of the config.

SCALE-Sim needs NumPy 1.x (requirements-bench.txt). When this interpreter
cannot import it, the script re-runs itself with build/bench-venv's Python,
or says how to create that venv (--setup creates it).
"""
import argparse
import contextlib
import csv
import io
import json
import math
import os
import pathlib
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
VENV = ROOT / "build" / "bench-venv"
REQUIREMENTS = ROOT / "requirements-bench.txt"


def ensure_scalesim(args):
    """Import scalesim here, or re-exec under the bench venv, or explain."""
    try:
        import scalesim  # noqa: F401
        return
    except ImportError:
        pass
    venv_python = pathlib.Path(args.venv) / "bin" / "python"
    if args.setup and not venv_python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(args.venv)], check=True)
    if args.setup:
        subprocess.run([str(venv_python), "-m", "pip", "install", "-r", str(REQUIREMENTS)], check=True)
    # A venv's python is a symlink to the base interpreter, so the marker in
    # the environment (not the resolved path) says whether we re-ran already.
    if venv_python.exists() and not os.environ.get("PM_SCALESIM_REEXEC"):
        probe = subprocess.run([str(venv_python), "-c", "import scalesim"], capture_output=True)
        if probe.returncode == 0:
            os.environ["PM_SCALESIM_REEXEC"] = "1"
            os.execv(str(venv_python), [str(venv_python), *sys.argv])
    sys.exit("scalesim_compare: SCALE-Sim is not importable. Install it (bench only, NumPy 1.x):\n"
             f"  python3 -m venv {args.venv} && {args.venv}/bin/pip install -r {REQUIREMENTS}\n"
             "or run this script with --setup.")


# ---- SCALE-Sim ----

SCALESIM_CONFIG = """[general]
run_name = {run_name}

[architecture_presets]
ArrayHeight = {rows}
ArrayWidth = {cols}
IfmapSramSzkB = {sram_kb}
FilterSramSzkB = {sram_kb}
OfmapSramSzkB = {sram_kb}
IfmapOffset = 0
FilterOffset = 10000000
OfmapOffset = 20000000
Bandwidth = {bandwidth}
Dataflow = {dataflow}
ReadRequestBuffer = 32
WriteRequestBuffer = 32

[layout]
IfmapCustomLayout = False
IfmapSRAMBankBandwidth = {bandwidth}
IfmapSRAMBankNum = 1
IfmapSRAMBankPort = 2
FilterCustomLayout = False
FilterSRAMBankBandwidth = {bandwidth}
FilterSRAMBankNum = 1
FilterSRAMBankPort = 2

[sparsity]
SparsitySupport = false
SparseRep = ellpack_block
OptimizedMapping = false
BlockSize = 8
RandomNumberGeneratorSeed = 40

[run_presets]
InterfaceBandwidth = {mode}
UseRamulatorTrace = False
"""


class ScalesimCache:
    """SCALE-Sim's answer depends only on its inputs and takes minutes for
    large shapes, so answers are kept in a JSON file under build/ (keyed by
    every input and the scalesim version); --no-cache bypasses it."""

    def __init__(self, path):
        self.path = pathlib.Path(path) if path else None
        self.data = {}
        if self.path and self.path.exists():
            try:
                self.data = json.loads(self.path.read_text())
            except ValueError:
                self.data = {}

    def get(self, key):
        return self.data.get(key)

    def put(self, key, value):
        self.data[key] = value
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.data, indent=1, sort_keys=True))
            tmp.replace(self.path)


def run_scalesim(cache, name, M, N, K, rows, cols, dataflow, user_bw_words=None, sram_kb=1024):
    """One GEMM layer through SCALE-Sim; returns its compute report."""
    from importlib.metadata import version
    key = json.dumps([version("scalesim"), M, N, K, rows, cols, dataflow, user_bw_words, sram_kb])
    hit = cache.get(key)
    if hit:
        return hit
    report = run_scalesim_uncached(name, M, N, K, rows, cols, dataflow, user_bw_words, sram_kb)
    cache.put(key, report)
    return report


def run_scalesim_uncached(name, M, N, K, rows, cols, dataflow, user_bw_words, sram_kb):
    from scalesim.scale_sim import scalesim

    with tempfile.TemporaryDirectory(prefix="pm-scalesim-") as tmp:
        tmp = pathlib.Path(tmp)
        (tmp / "scale.cfg").write_text(SCALESIM_CONFIG.format(
            run_name=name, rows=rows, cols=cols, dataflow=dataflow, sram_kb=sram_kb,
            bandwidth=max(1, int(user_bw_words or 10)), mode="USER" if user_bw_words else "CALC"))
        # Its GEMM reader drops the field after the last comma: rows end with ",".
        (tmp / "topo.csv").write_text(f"Layer, M, N, K,\n{name}, {M}, {N}, {K},\n")
        (tmp / "layout.csv").write_text("Layer,\n")
        quiet = io.StringIO()
        with contextlib.redirect_stdout(quiet):
            s = scalesim(save_disk_space=True, verbose=False, config=str(tmp / "scale.cfg"),
                         topology=str(tmp / "topo.csv"), layout=str(tmp / "layout.csv"), input_type_gemm=True)
            s.run_scale(top_path=str(tmp / "out"))
        layer = s.runner.single_layer_sim_object_list[0]
        overall, compute, stalls, util, mapping, compute_util = layer.get_compute_report_items()
        return {"cycles": int(compute), "overall_cycles": int(overall), "stall_cycles": int(stalls),
                "utilization_pct": float(util), "mapping_efficiency_pct": float(mapping)}


# ---- the two closed forms, for the explanation in docs/bench.md ----

def scalesim_formula(M, N, K, R, C, dataflow):
    """SCALE-Sim's per-fold cost: operands stream in skewed, the fold's
    results drain out, and only then does the next fold start."""
    if dataflow == "os":  # folds of R outputs rows x C output columns, T = K
        return math.ceil(M / R) * math.ceil(N / C) * (K + R + C - 2)
    # ws: folds of R (k) x C (n) weights, T = M; R cycles of weight load per fold
    return math.ceil(K / R) * math.ceil(N / C) * (2 * R + C + M - 2)


def polymorph_array_formula(M, N, K, R, C, L, dataflow):
    """The whole shape as one tmm in the tensor unit's fast model
    (docs/tensor.md, "Timing (fast model)"): folds overlap through the shadow registers,
    so fill and drain are paid once per instruction, not once per fold."""
    if dataflow == "os":
        period = max(K, R)  # a fold occupies the inputs for K cycles, or R while the last results shift out
        return (math.ceil(M / R) * math.ceil(N / C) - 1) * period + K + (R + C - 2) + R
    # ws: weight tiles R (k) x C (n), K tile outer; preload ceil(R/L) cycles
    # overlaps the previous tile; a K tile of a column block waits R + 1
    # cycles after the previous K tile's sums entered it.
    preload = math.ceil(R / L)
    gap = max(M, preload)
    kt, nt = math.ceil(K / R), math.ceil(N / C)
    row = max(nt * gap, R + 1)
    last = preload + (kt - 1) * row + (nt - 1) * gap
    return last + M + R + C - 1


# ---- Polymorph ----

def run_polymorph(polymorph, M, N, K, dataflow, chip_args):
    cmd = [str(polymorph), "bench", "gemm", str(M), str(N), str(K), "--dataflow", dataflow, "--no-native", "--json",
           *chip_args]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"scalesim_compare: {' '.join(cmd)} failed:\n{r.stderr.strip()}")
    return json.loads(r.stdout)


def read_shapes(path):
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f)]
    return [(r["name"].strip(), int(r["M"]), int(r["N"]), int(r["K"])) for r in rows]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    chip = ap.add_mutually_exclusive_group()
    chip.add_argument("--preset", default=None, help="Polymorph chip preset (default edge)")
    chip.add_argument("--config", default=None, help="Polymorph chip config file")
    ap.add_argument("--dataflow", default="os,ws", help="comma-separated: os, ws (default both)")
    ap.add_argument("--shapes", default=str(ROOT / "bench" / "gemm_shapes.csv"))
    ap.add_argument("--only", default=None, help="comma-separated shape names to run")
    ap.add_argument("--polymorph", default=str(ROOT / "build" / "polymorph"))
    ap.add_argument("--venv", default=str(VENV))
    ap.add_argument("--setup", action="store_true", help="create the venv and install requirements-bench.txt")
    ap.add_argument("--user-bandwidth", action="store_true",
                    help="give SCALE-Sim our DRAM bandwidth (words/cycle) and SRAM instead of its estimate mode")
    ap.add_argument("--json", action="store_true", help="print one JSON list instead of the table")
    ap.add_argument("--cache", default=str(ROOT / "build" / "scalesim-cache.json"),
                    help="file keeping SCALE-Sim's answers (default build/scalesim-cache.json)")
    ap.add_argument("--no-cache", action="store_true", help="always run SCALE-Sim")
    args = ap.parse_args()
    ensure_scalesim(args)

    if not pathlib.Path(args.polymorph).is_file():
        sys.exit(f"scalesim_compare: {args.polymorph} does not exist (run make, or pass --polymorph)")
    chip_args = ["--preset", args.preset] if args.preset else (["--config", args.config] if args.config else [])
    shapes = read_shapes(args.shapes)
    if args.only:
        wanted = set(args.only.split(","))
        shapes = [s for s in shapes if s[0] in wanted]
    flows = [d.strip() for d in args.dataflow.split(",") if d.strip()]
    for d in flows:
        if d not in ("os", "ws"):
            sys.exit(f"scalesim_compare: --dataflow '{d}': expected os or ws")

    cache = ScalesimCache(None if args.no_cache else args.cache)
    results, seen = [], set()
    for df in flows:
        for name, M, N, K in shapes:
            pm = run_polymorph(args.polymorph, M, N, K, df, chip_args)
            used = pm["dataflow"]  # M = 1 always runs the weight-stationary GEMV schedule
            if (name, used) in seen:
                continue
            seen.add((name, used))
            R, C, L = pm["rows"], pm["cols"], pm["weight_load_rows"]
            user_bw = None
            sram_kb = 1024
            if args.user_bandwidth:
                # SCALE-Sim counts in words (its word is one operand): bf16 = 2 bytes.
                user_bw = pm["dram_gbps"] * 1e9 / (pm["clock_mhz"] * 1e6) / 2
            ss = run_scalesim(cache, name, M, N, K, R, C, used, user_bw, sram_kb)
            row = {
                "name": name, "M": M, "N": N, "K": K, "rows": R, "cols": C, "dataflow": used,
                "polymorph_cycles": pm["cycles"],
                "polymorph_array_formula": polymorph_array_formula(M, N, K, R, C, L, used),
                "polymorph_utilization": pm["utilization"],
                "polymorph_tensor_busy_cycles": pm["tensor_busy_cycles"],
                "polymorph_tensor_instructions": pm["tensor_instructions"],
                "scalesim_cycles": ss["cycles"],
                "scalesim_formula": scalesim_formula(M, N, K, R, C, used),
                "scalesim_stall_cycles": ss["stall_cycles"],
                "scalesim_overall_cycles": ss["overall_cycles"],
                "scalesim_utilization": ss["utilization_pct"] / 100.0,
                "ratio": ss["cycles"] / pm["cycles"],
            }
            results.append(row)
            if not args.json:
                if len(results) == 1:
                    print(f"array {R}x{C}, chip {pm['preset']}, SCALE-Sim "
                          f"{'USER bandwidth' if args.user_bandwidth else 'CALC (no memory stalls)'} mode")
                    print(f"{'shape':<22} {'M':>5} {'N':>5} {'K':>5} {'df':>3} {'polymorph':>10} {'pm tensor':>10} "
                          f"{'pm array':>10} {'scalesim':>10} {'ss formula':>10} {'ss/pm':>6} {'pm util':>7} "
                          f"{'ss util':>7}" + (f" {'ss overall':>10}" if args.user_bandwidth else ""))
                # With our bandwidth, SCALE-Sim's "overall" cycles (first DRAM
                # read to last output write) include its DRAM model; in CALC
                # mode they rest on an arbitrary 10 words/cycle, so not shown.
                print(f"{name:<22} {M:>5} {N:>5} {K:>5} {used:>3} {row['polymorph_cycles']:>10} "
                      f"{row['polymorph_tensor_busy_cycles']:>10} {row['polymorph_array_formula']:>10} "
                      f"{row['scalesim_cycles']:>10} {row['scalesim_formula']:>10} {row['ratio']:>6.3f} "
                      f"{row['polymorph_utilization']:>7.3f} {row['scalesim_utilization']:>7.3f}"
                      + (f" {row['scalesim_overall_cycles']:>10}" if args.user_bandwidth else ""), flush=True)
    if args.json:
        print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
