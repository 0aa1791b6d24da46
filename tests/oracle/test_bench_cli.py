"""Tests of `polymorph bench gemm|gemv`: the JSON object's fields and the
figures recomputed here from their definitions (docs/bench.md), operand
byte counts from the formats' storage rules, the simulated product checked
against OpenBLAS (an independent implementation) beside the CLI's own
bit-exact check, determinism of cycles, and the error cases. No timing
target is asserted: wall times depend on the host."""
import json
import os
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD = ROOT / os.environ.get("POLYMORPH_BUILD", "build")
POLYMORPH = BUILD / "polymorph"

REQUIRED = {
    "kernel": str, "M": int, "N": int, "K": int, "wfmt": str, "ofmt": str, "preset": str, "engines": int,
    "rows": int, "cols": int, "dataflow": str, "clock_mhz": (int, float), "seed": int,
    "cycles": int, "seconds": float, "flops": (int, float), "peak_flops": (int, float),
    "utilization": float, "compute_bound_s": float, "dram_bound_s": float, "roofline_fraction": float,
    "bound": str, "dram_bytes": int, "dram_read_bytes": int, "dram_write_bytes": int,
    "compulsory_dram_bytes": int, "tensor_macs": int, "energy_j": float, "sim_wall_s": float, "build_wall_s": float,
    "tensor_instructions": int, "tensor_busy_cycles": int, "weight_load_rows": int, "dram_gbps": float,
    "bit_exact": bool, "mismatched_bytes": int,
}
NULLABLE = ("native_wall_s", "native_median_s", "sim_vs_native", "native_library", "native_max_abs_diff", "threads")

# Storage bytes of n elements, from the formats' definitions (docs/numerics.md):
# element formats by bits; block formats by (elements, bytes) per block plus
# a per-tensor header (the fp32 tensor scale of NVFP4 and IF4).
ELEMENT_BITS = {"f32": 32, "bf16": 16, "f16": 16, "e4m3": 8, "e5m2": 8, "int8": 8, "e2m1": 4, "int4": 4}
BLOCKS = {  # name: (block elements, block bytes, header bytes)
    "mxfp4": (32, 17, 0), "mxfp8": (32, 33, 0), "mxint8": (32, 33, 0), "nvfp4": (16, 9, 4), "if4": (16, 9, 4),
    "int4b": (32, 18, 0), "q4_0": (32, 18, 0), "q4_1": (32, 20, 0), "q8_0": (32, 34, 0),
}


def storage_bytes(fmt, n):
    if fmt in ELEMENT_BITS:
        return n * ELEMENT_BITS[fmt] // 8
    elems, block, header = BLOCKS[fmt]
    assert n % elems == 0
    return header + n // elems * block


def run(*args):
    return subprocess.run([str(POLYMORPH), "bench", *map(str, args)], capture_output=True, text=True, timeout=300)


def bench(*args):
    r = run(*args, "--json")
    assert r.returncode == 0, (args, r.stdout, r.stderr)
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1, r.stdout  # one JSON object, nothing else on stdout
    return json.loads(lines[0])


def preset_figure(preset, section, key):
    """A value of a preset's config text (`polymorph presets NAME`)."""
    text = subprocess.run([str(POLYMORPH), "presets", preset], capture_output=True, text=True, check=True).stdout
    current = None
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1]
        elif current == section and "=" in line and line.split("=", 1)[0].strip() == key:
            return line.split("=", 1)[1].strip()
    raise KeyError((preset, section, key))


def check_figures(j):
    """Every derived figure, recomputed from its definition."""
    for key, kind in REQUIRED.items():
        assert key in j, key
        assert isinstance(j[key], kind), (key, j[key])
    for key in NULLABLE:
        assert key in j, key
    M, N, K = j["M"], j["N"], j["K"]
    macs_per_cycle = j["rows"] * j["cols"] * j["engines"]
    assert j["flops"] == 2 * M * N * K
    assert j["tensor_macs"] == M * N * K
    assert j["peak_flops"] == pytest.approx(2 * macs_per_cycle * j["clock_mhz"] * 1e6, rel=1e-12)
    assert j["seconds"] == pytest.approx(j["cycles"] / (j["clock_mhz"] * 1e6), rel=1e-12)
    assert j["utilization"] == pytest.approx(j["flops"] / (j["cycles"] * 2 * macs_per_cycle), rel=1e-12)
    assert 0 < j["utilization"] <= 1
    assert j["dram_bytes"] == j["dram_read_bytes"] + j["dram_write_bytes"]
    compulsory = storage_bytes("bf16", M * K) + storage_bytes(j["wfmt"], N * K) + storage_bytes(j["ofmt"], M * N)
    assert j["compulsory_dram_bytes"] == compulsory
    assert j["dram_bytes"] >= compulsory  # every operand crosses DRAM at least once
    gbps = float(preset_figure(j["preset"], "dram", "bandwidth_gbps")) if j["preset"] in ("edge", "fpga") else None
    if gbps:
        assert j["dram_bound_s"] == pytest.approx(j["dram_bytes"] / (gbps * 1e9), rel=1e-12)
    assert j["compute_bound_s"] == pytest.approx(j["flops"] / j["peak_flops"], rel=1e-12)
    tight = max(j["compute_bound_s"], j["dram_bound_s"])
    assert j["bound"] == ("compute" if j["compute_bound_s"] >= j["dram_bound_s"] else "dram")
    assert j["roofline_fraction"] == pytest.approx(tight / j["seconds"], rel=1e-12)
    assert 0 < j["roofline_fraction"] <= 1
    assert j["energy_j"] > 0
    # the array cannot be busy longer than the run, on any engine
    assert 0 < j["tensor_busy_cycles"] <= j["cycles"] * j["engines"]
    assert j["tensor_instructions"] >= 2  # at least one tmm and one tout
    assert j["sim_wall_s"] > 0
    if j["native_wall_s"] is not None:
        assert j["native_wall_s"] > 0
        assert j["sim_vs_native"] == pytest.approx(j["native_wall_s"] / j["sim_wall_s"], rel=1e-12)
    assert j["bit_exact"] is True and j["mismatched_bytes"] == 0


def test_fields_and_figures_square():
    j = bench("gemm", 64, 64, 64)
    assert (j["kernel"], j["M"], j["N"], j["K"], j["wfmt"], j["ofmt"]) == ("gemm", 64, 64, 64, "bf16", "f32")
    assert (j["preset"], j["engines"], j["rows"], j["cols"]) == ("edge", 1, 32, 32)
    check_figures(j)


def test_against_openblas():
    """OpenBLAS computes the same product from the same bf16 values in its
    own order: the simulated output must agree to fp32 reordering error (the
    bit-exact check is against pm_ref_matmul; this one is independent of it)."""
    j = bench("gemm", 48, 40, 96)
    if j["native_wall_s"] is None:
        pytest.skip("libopenblas.so.0 not installed: " + str(j.get("native_note")))
    assert j["native_library"] == "libopenblas.so.0"
    # |x| < 1, |w| < 1: each side's summation error is below (K - 1) * u * sum|x w|
    # < K * K * 2^-24 (u = 2^-24), so the two differ by less than twice that; a
    # wrong product (a transpose, a lost scale) is off by far more.
    assert j["native_max_abs_diff"] <= 2 * 96 * 96 * 2.0 ** -24
    check_figures(j)


@pytest.mark.parametrize("shape", [(33, 17, 50), (1, 70, 64), (100, 3, 7), (5, 129, 33), (64, 32, 2)])
def test_ragged_shapes(shape):
    check_figures(bench("gemm", *shape, "--no-native"))


@pytest.mark.parametrize("wfmt", ["bf16", "f16", "int8", "e4m3", "e5m2", "int4", "e2m1", "mxfp4", "mxfp8", "mxint8",
                                  "nvfp4", "if4", "int4b", "q4_0", "q4_1", "q8_0"])
def test_weight_formats(wfmt):
    j = bench("gemm", 8, 24, 64, "--wfmt", wfmt, "--no-native")
    assert j["wfmt"] == wfmt
    check_figures(j)


@pytest.mark.parametrize("wfmt", ["nvfp4", "if4", "mxfp4", "q4_0", "q4_1", "q8_0", "int8"])
def test_gemv_weight_formats(wfmt):
    """The streaming GEMV schedule cuts the weights into chunks (NVFP4 and
    IF4 need their tensor scale in front of every chunk): bits must not move."""
    j = bench("gemv", 512, 160, "--wfmt", wfmt, "--no-native")
    assert (j["M"], j["dataflow"], j["bound"]) == (1, "ws", "dram")
    check_figures(j)
    j = bench("gemv", 256, 96, "--wfmt", wfmt, "--engines", 2, "--no-native")
    check_figures(j)


@pytest.mark.parametrize("ofmt", ["bf16", "f16", "e4m3"])
def test_output_formats(ofmt):
    j = bench("gemm", 16, 32, 32, "--ofmt", ofmt, "--no-native")
    assert j["ofmt"] == ofmt
    check_figures(j)


@pytest.mark.parametrize("dataflow", ["os", "ws"])
def test_dataflow(dataflow):
    j = bench("gemm", 40, 72, 96, "--dataflow", dataflow, "--no-native")
    assert j["dataflow"] == dataflow
    check_figures(j)


def test_gemv_shorthand_is_gemm_with_one_row():
    v = bench("gemv", 256, 96, "--wfmt", "q4_1", "--no-native")
    g = bench("gemm", 1, 96, 256, "--wfmt", "q4_1", "--no-native")
    assert (v["kernel"], v["M"], v["K"], v["N"]) == ("gemv", 1, 256, 96)
    assert v["dataflow"] == "ws"  # the streaming GEMV schedule
    for key in ("cycles", "dram_bytes", "energy_j", "tensor_macs"):
        assert v[key] == g[key], key
    check_figures(v)


def test_engines_and_presets():
    j = bench("gemm", 64, 128, 64, "--engines", 2, "--no-native")
    assert j["engines"] == 2
    check_figures(j)
    j = bench("gemm", 24, 16, 32, "--preset", "fpga", "--no-native")
    assert (j["preset"], j["rows"], j["cols"]) == ("fpga", 8, 8)
    check_figures(j)


def test_config_file(tmp_path):
    cfg = tmp_path / "tiny.cfg"
    cfg.write_text("base = edge\nname = tiny\n[tensor]\nrows = 4\ncols = 4\n")
    j = bench("gemm", 10, 9, 12, "--config", cfg, "--no-native")
    assert (j["preset"], j["rows"], j["cols"]) == ("tiny", 4, 4)
    check_figures(j)


def test_cycles_are_deterministic():
    a = bench("gemm", 70, 50, 40, "--no-native")
    b = bench("gemm", 70, 50, 40, "--no-native")
    c = bench("gemm", 70, 50, 40, "--no-native", "--repeat", 3)
    for key in ("cycles", "dram_bytes", "energy_j", "instructions", "program_words"):
        assert a[key] == b[key] == c[key], key


def test_cycles_do_not_depend_on_host_threads():
    one = bench("gemm", 96, 80, 72, "--threads", 1, "--no-native")
    two = bench("gemm", 96, 80, 72, "--threads", 2, "--no-native")
    three = bench("gemm", 96, 80, 72, "--threads", 3, "--no-native")
    assert one["threads"] == 1 and two["threads"] == 2 and three["threads"] == 3
    for key in ("cycles", "dram_bytes", "energy_j"):
        assert one[key] == three[key], key
        assert one[key] == two[key], key
    assert one["bit_exact"] and two["bit_exact"]


def test_table_output():
    r = run("gemm", 16, 16, 16, "--no-native")
    assert r.returncode == 0, r.stderr
    for label in ("cycles", "utilization", "roofline fraction", "DRAM bytes", "energy", "bit exact", "sim wall time"):
        assert label in r.stdout, label
    assert "bit exact            yes" in r.stdout


def test_help():
    r = run("--help")
    assert r.returncode == 0
    assert r.stdout.startswith("usage: polymorph bench gemm M N K")


@pytest.mark.parametrize("args, words", [
    ((), "missing kernel"),
    (("conv", 1, 2, 3), "unknown kernel 'conv'"),
    (("gemm", 4, 4), "gemm takes M N K"),
    (("gemv", 4, 4, 4), "gemv takes K N"),
    (("gemm", 0, 4, 4), "M '0'"),
    (("gemm", 4, "x", 4), "N 'x'"),
    (("gemm", 4, 4, "4.5"), "K '4.5'"),
    (("gemm", 4, 4, 99999999), "K '99999999'"),
    (("gemm", 4, 4, 32, "--wfmt", "fp5"), "--wfmt 'fp5': unknown format"),
    (("gemm", 4, 4, 32, "--ofmt", "nope"), "--ofmt 'nope': unknown format"),
    (("gemm", 4, 4, 48, "--wfmt", "q4_0"), "K=48"),
    (("gemm", 4, 4, 32, "--preset", "nosuch"), "nosuch"),
    (("gemm", 4, 4, 32, "--preset", "edge", "--config", "x.cfg"), "not both"),
    (("gemm", 4, 4, 32, "--config", "/nonexistent/x.cfg"), "/nonexistent/x.cfg"),
    (("gemm", 4, 4, 32, "--dataflow", "is"), "--dataflow 'is'"),
    (("gemm", 4, 4, 32, "--engines", 0), "--engines '0'"),
    (("gemm", 4, 4, 32, "--seed", "-1"), "--seed '-1'"),
    (("gemm", 4, 4, 32, "--repeat", 0), "--repeat '0'"),
    (("gemm", 4, 4, 32, "--bogus"), "unknown option '--bogus'"),
])
def test_errors(args, words):
    r = run(*args)
    assert r.returncode == 1, (args, r.stdout, r.stderr)
    assert r.stdout == ""
    first = r.stderr.splitlines()[0]
    assert first.startswith("polymorph bench: "), r.stderr
    assert words in first, (words, first)
