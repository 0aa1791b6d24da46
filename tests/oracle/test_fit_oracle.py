"""Oracle tests of `polymorph fit` (docs/fit.md): the expression language
against Python's math module; the error a fitted table reports against an
independent recomputation (the table loaded from the PMLF file the CLI
wrote, evaluated through libpolymorph's pm_lfu_eval_array, the reference
from Python's math in double, ulps computed here in numpy, bf16 rounding
from ml_dtypes with the one correction a float64 -> bf16 cast needs); the
JSON schema; and the CLI's failures (exit 1, one `polymorph fit:` line, no
output file left behind)."""
import ctypes
import json
import math
import os
import pathlib
import subprocess
import zlib

import ml_dtypes as mld
import numpy as np
import pytest

from pmlib import BUILD, PmError, load

# A handle of its own: argtypes set here must not clash with another test
# module's (each defines its own ctypes structures).
lib = load()

POLYMORPH = BUILD / "polymorph"

lib.pm_expr_parse.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(PmError)]
lib.pm_expr_eval.argtypes = [ctypes.c_void_p, ctypes.c_double]
lib.pm_expr_eval.restype = ctypes.c_double
lib.pm_expr_free.argtypes = [ctypes.c_void_p]
lib.pm_lfu_table_deserialize.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.POINTER(PmError)]
lib.pm_lfu_eval_array.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
lib.pm_lfu_table_free.argtypes = [ctypes.c_void_p]


def run(*args, cwd=None):
    return subprocess.run([str(POLYMORPH), "fit", *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


def sigmoid(v):
    return 1.0 / (1.0 + math.exp(-v))


# (expression, the same function written with Python's math)
EXPRESSIONS = [
    ("exp(x)", math.exp),
    ("log(x+4)", lambda v: math.log(v + 4)),
    ("sqrt(x+4)", lambda v: math.sqrt(v + 4)),
    ("sin(10*x)", lambda v: math.sin(10 * v)),
    ("cos(x)*tan(x/4)", lambda v: math.cos(v) * math.tan(v / 4)),
    ("tanh(x)", math.tanh),
    ("erf(x) + erfc(x/2)", lambda v: math.erf(v) + math.erfc(v / 2)),
    ("abs(x)", abs),
    ("atan(x) - sinh(x) + cosh(x)", lambda v: math.atan(v) - math.sinh(v) + math.cosh(v)),
    ("log2(x+4) * log10(x+4)", lambda v: math.log2(v + 4) * math.log10(v + 4)),
    ("exp2(x)", lambda v: 2.0 ** v),
    ("sigmoid(x)", sigmoid),
    ("silu(x)", lambda v: v / (1.0 + math.exp(-v))),
    ("gelu(x)", lambda v: 0.5 * v * math.erfc(-v * math.sqrt(0.5))),  # x/sqrt2 as x*sqrt(1/2)
    ("min(x, 0.5) + max(x, -0.5)", lambda v: min(v, 0.5) + max(v, -0.5)),
    ("pow(2, x) + 3^x", lambda v: 2.0 ** v + 3.0 ** v),
    ("-x^2", lambda v: -(v ** 2)),
    ("2^-x^2", lambda v: 2.0 ** (-(v ** 2))),
    ("2^3^x", lambda v: 2.0 ** (3.0 ** v)),
    ("x**3 - 2*x/3 + 1e-3", lambda v: v ** 3 - 2 * v / 3 + 1e-3),
    ("exp(-x^2/2) / sqrt(2*pi)", lambda v: math.exp(-(v ** 2) / 2) / math.sqrt(2 * math.pi)),
    ("sin(1/(x+3.1))", lambda v: math.sin(1 / (v + 3.1))),
    ("e^x - (-x)", lambda v: math.e ** v + v),
    ("max(x,0)^3", lambda v: max(v, 0.0) ** 3),
]


@pytest.mark.parametrize("text,ref", EXPRESSIONS, ids=[t for t, _ in EXPRESSIONS])
def test_expression_values(text, ref):
    handle = ctypes.c_void_p()
    err = PmError()
    assert lib.pm_expr_parse(text.encode(), ctypes.byref(handle), ctypes.byref(err)) == 0, err.message
    try:
        rng = np.random.default_rng(zlib.crc32(text.encode()))
        for v in np.concatenate([np.linspace(-3, 3, 97), rng.uniform(-3, 3, 200)]):
            want, got = ref(float(v)), lib.pm_expr_eval(handle, float(v))
            # The same operations in the same order on the same C library: equal bits.
            assert got == want, (text, v, got, want)
    finally:
        lib.pm_expr_free(handle)


# ---- the error report against an independent recomputation ----

def key32(a):
    """Monotone integer key of float32 bit patterns: ulp distance = key difference."""
    b = a.astype(np.float32).view(np.uint32).astype(np.int64)
    return np.where(b >> 31 == 1, -(b & 0x7FFFFFFF), b)


def key16(h):
    b = h.astype(np.int64)
    return np.where(b >> 15 == 1, -(b & 0x7FFF), b)


def bf16_of_f64(ref):
    """float64 rounded once (RNE) to bf16. ml_dtypes casts through float32,
    which double-rounds exactly when the float32 lands on a bf16 midpoint
    and ref is not that float32: then ref's side of it decides."""
    r32 = ref.astype(np.float32)
    h = r32.astype(mld.bfloat16).view(np.uint16).astype(np.int64)
    bits = r32.view(np.uint32)
    tie = ((bits & 0xFFFF) == 0x8000) & (ref != r32.astype(np.float64))
    up = np.abs(ref) > np.abs(r32.astype(np.float64))  # the true magnitude is above the midpoint
    fixed = np.where(up, (bits >> 16) + 1, bits >> 16).astype(np.int64)
    return np.where(tie, fixed, h).astype(np.uint16)


def eval_table(path, xs):
    """Load a PMLF file through pm_lfu_table_deserialize and evaluate it."""
    data = pathlib.Path(path).read_bytes()
    table = ctypes.create_string_buffer(4096)  # opaque, larger than pm_lfu_table
    err = PmError()
    assert lib.pm_lfu_table_deserialize(data, len(data), table, ctypes.byref(err)) == 0, err.message
    try:
        xs = np.ascontiguousarray(xs, dtype=np.float32)
        ys = np.empty_like(xs)
        lib.pm_lfu_eval_array(table, xs.ctypes.data, ys.ctypes.data, xs.size)
        return ys
    finally:
        lib.pm_lfu_table_free(table)


def all_fp32(lo, hi):
    k0, k1 = int(key32(np.array([lo]))[0]), int(key32(np.array([hi]))[0])
    k = np.arange(k0, k1 + 1, dtype=np.int64)
    bits = np.where(k < 0, (-k) | 0x80000000, k).astype(np.uint32)
    return bits.view(np.float32)


# Narrow domains, so the CLI measures every fp32 and so does this test.
CASES = [
    ("log(x)", "1,1.125", [], math.log),
    ("exp(x)", "-0.24,-0.19", ["--degree", "2", "--segments", "5"], math.exp),
    ("tanh(x)", "0.0001,0.00012", ["--form", "x-times", "--segments", "3"], math.tanh),
    ("sin(10*x)", "0.5,0.55", ["--degree", "1", "--segments", "100"], lambda v: math.sin(10 * v)),
    ("1/x", "1.5,1.9", ["--mode", "exponent", "--segments", "4"], lambda v: 1 / v),
    ("erf(x)", "0.5,0.5625", ["--eps", "2ulp"], math.erf),
]


@pytest.mark.parametrize("expr,domain,extra,ref", CASES, ids=[c[0] for c in CASES])
def test_reported_error_is_recomputed(tmp_path, expr, domain, extra, ref):
    out = tmp_path / "t.pmlf"
    r = run(expr, "--domain", domain, "--json", "-o", out, *extra)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["exhaustive"] is True
    xs = all_fp32(rep["domain"][0], rep["domain"][1])
    assert rep["points"] == xs.size
    ys = eval_table(out, xs)
    refs = np.array([ref(float(v)) for v in xs], dtype=np.float64)
    d32 = np.abs(key32(ys) - key32(refs.astype(np.float32)))
    d16 = np.abs(key16(ys.astype(mld.bfloat16).view(np.uint16)) - key16(bf16_of_f64(refs)))
    dabs = np.abs(ys.astype(np.float64) - refs)
    assert rep["max_ulp_fp32"] == int(d32.max())
    assert rep["max_ulp_bf16"] == int(d16.max())
    assert rep["max_abs_err"] == pytest.approx(float(dabs.max()), rel=1e-8)  # JSON prints 9 digits
    assert rep["worst_x"] == pytest.approx(float(xs[np.argmax(d32)]), rel=1e-8)
    assert rep["bytes"] == out.stat().st_size
    if "--eps" in extra:
        assert rep["max_ulp_fp32"] <= 2


def test_bf16_rounding_helper():
    """The correction above, on the case ml_dtypes' float32 path gets wrong."""
    ref = np.array([1.00390625 + 1e-12, 1.00390625 - 1e-12, 1.00390625, -1.00390625 - 1e-12])
    assert list(bf16_of_f64(ref)) == [0x3F81, 0x3F80, 0x3F80, 0xBF81]


# ---- the written table on the simulated chip, through the CLI ----

SIM_PROGRAM = """
; y = LFU(x) with a table fitted by polymorph fit, loaded by lfu.ld
.equ N, 512
.equ TB, {table_bytes}
        .sram 0x0
x:      .zero N * 4
        .tensor x, f32, N
y:      .zero N * 4
        .tensor y, f32, N
table:  .zero TB
        .tensor table, int8, TB
        .text
start:  li      r1, x
        li      r2, y
        li      r4, N
        li      r5, table
        lfu.ld  1, r5
        lfu.f32 1, r2, r1, r4
        halt
"""


def test_written_table_runs_on_the_simulator(tmp_path):
    """`fit -o` output, bound as raw bytes into SRAM, loaded with lfu.ld and
    run by `polymorph sim`: every output equals pm_lfu_eval's bits, also
    outside the domain (the linear out-of-range policy)."""
    table = tmp_path / "tanh.pmlf"
    r = run("tanh(x)", "--domain", "-3,3", "--form", "x-times", "--oor", "linear", "--segments", "40", "-o", table)
    assert r.returncode == 0, r.stderr
    data = np.frombuffer(table.read_bytes(), dtype=np.int8)
    np.save(tmp_path / "table.npy", data)
    xs = np.linspace(-5, 5, 512, dtype=np.float32)
    np.save(tmp_path / "x.npy", xs)
    (tmp_path / "prog.pasm").write_text(SIM_PROGRAM.format(table_bytes=data.size))
    sim = subprocess.run([str(POLYMORPH), "sim", "prog.pasm", "--preset", "edge", "--input", "x=x.npy", "--input",
                          "table=table.npy", "--output", "y=y.npy"], capture_output=True, text=True, cwd=tmp_path,
                         timeout=120)
    assert sim.returncode == 0, sim.stderr
    ys = np.load(tmp_path / "y.npy")
    want = eval_table(table, xs)
    assert ys.dtype == np.float32 and np.array_equal(ys.view(np.uint32), want.view(np.uint32))
    assert np.max(np.abs(ys[np.abs(xs) <= 3] - np.tanh(xs[np.abs(xs) <= 3].astype(np.float64)))) < 1e-6


# ---- JSON schema and the text table ----

def test_json_schema():
    r = run("exp(x)", "--domain", "-10,0", "--segments", "64", "--json")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("\n") == 1
    rep = json.loads(r.stdout)
    types = {"expr": str, "domain": list, "mode": str, "form": str, "oor": str, "table_domain": list, "segments": int,
             "degree": int, "bytes": int, "method": str, "objective": str, "retune": bool, "max_ulp_fp32": int, "max_ulp_bf16": int,
             "max_abs_err": float, "worst_x": float, "worst_x_bf16": float, "worst_x_abs": float, "points": int,
             "exhaustive": bool}
    for k, t in types.items():
        assert isinstance(rep[k], t), (k, rep[k])
    assert rep["expr"] == "exp(x)" and rep["domain"] == [-10, 0] and rep["segments"] == 64 and rep["degree"] == 3
    assert rep["mode"] == "uniform" and rep["form"] == "plain" and rep["oor"] == "clamp" and rep["method"] == "minimax"
    assert rep["objective"] == "abs"
    assert rep["reduction"] is None and rep["eps"] is None and rep["output"] is None
    assert rep["bytes"] == 144 + 64 * 4 * 4
    assert rep["points"] >= 1_000_000 and rep["exhaustive"] is False
    assert 0 < rep["max_abs_err"] < 1e-6 and rep["max_ulp_fp32"] <= 8


def test_json_eps_search():
    r = run("tanh(x)", "--domain", "-4,4", "--form", "x-times", "--eps", "1e-4", "--json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["eps"] == {"value": 1e-4, "unit": "abs"}
    assert [s["degree"] for s in rep["search"]] == [1, 2, 3]
    best = min(rep["search"], key=lambda s: (s["bytes"], s["degree"]))
    assert (rep["degree"], rep["segments"], rep["bytes"]) == (best["degree"], best["segments"], best["bytes"])
    assert rep["max_abs_err"] <= 1e-4


def test_eps_in_ulps_fits_relative_error():
    r = run("log(x)", "--domain", "1,2", "--eps", "2ulp", "--degree", "3", "--json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["objective"] == "rel" and rep["max_ulp_fp32"] <= 2
    r = run("log(x)", "--domain", "1,2", "--segments", str(rep["segments"]), "--json")
    assert json.loads(r.stdout)["max_ulp_fp32"] > 1000  # the absolute objective, same table size


def test_exponent_mode_json():
    r = run("exp(x)", "--domain", "-80,80", "--mode", "exponent", "--segments", "8", "--json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["reduction"] == "exp2" and rep["mode"] == "exponent" and rep["max_ulp_fp32"] <= 2


def test_text_table_and_expression_escaping():
    r = run("exp(x)", "--domain", "-1,1", "--segments", "8")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("fit exp(x) on [-1, 1]\n")
    for word in ("table", "method", "measured", "max error", "ulp fp32", "ulp bf16", "absolute"):
        assert word in r.stdout
    r = run("sin(x)", "--domain", "-pi,pi/2", "--json", "--name", 'a"b')
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["domain"] == [pytest.approx(-math.pi, rel=1e-7), pytest.approx(math.pi / 2, rel=1e-7)]


# ---- failures ----

FAILURES = [
    ([], "missing the expression"),
    (["exp(x)"], "missing --domain A,B"),
    (["exp(x)", "--domain", "1"], "--domain '1': expected A,B"),
    (["exp(x)", "--domain", "1,0"], "A (1) must be below B (0)"),
    (["exp(x)", "--domain", "0,x"], "--domain 'x': an end must be a finite constant"),
    (["exp(x)", "--domain", "0,(1"], "--domain '(1': expr:1:3: expected ')'"),
    (["exp(x)", "--domain", "0,1", "--segments", "0"], "--segments '0': expected a whole number in 1..4096"),
    (["exp(x)", "--domain", "0,1", "--segments", "5000"], "--segments '5000'"),
    (["exp(x)", "--domain", "0,1", "--degree", "4"], "--degree '4': expected a whole number in 1..3"),
    (["exp(x)", "--domain", "0,1", "--mode", "log"], "--mode 'log': expected uniform or exponent"),
    (["exp(x)", "--domain", "0,1", "--form", "y"], "--form 'y': expected plain or x-times"),
    (["exp(x)", "--domain", "0,1", "--oor", "wrap"], "--oor 'wrap': expected clamp, const, linear or extend"),
    (["exp(x)", "--domain", "0,1", "--method", "x"], "--method 'x': expected minimax or lsq"),
    (["exp(x)", "--domain", "0,1", "--objective", "ulp"], "--objective 'ulp': expected abs or rel"),
    (["exp(x)", "--domain", "0,1", "--eps", "abc"], "--eps 'abc': expected an absolute error such as 1e-4"),
    (["exp(x)", "--domain", "0,1", "--eps", "1e-4", "--segments", "4"], "--eps chooses the segment count"),
    (["exp(x)", "--domain", "0,1", "--bogus"], "unknown option '--bogus'"),
    (["exp(x", "--domain", "0,1"], "expr:1:6: expected ',' or ')' in the arguments of 'exp' but found end of input"),
    (["(x", "--domain", "0,1"], "expr:1:3: expected ')' to close the '(' at column 1"),
    (["log(x)", "--domain", "-1,1"], "f(x) is not a number at x = "),
    (["sin(x)", "--domain", "-1,1", "--mode", "exponent"], "exponent mode: f obeys none of the reductions"),
    (["exp(x)", "--domain", "-1,1", "--form", "x-times"], "x-times form: f(0) = 1"),
    (["exp(x)", "--domain", "0,1", "--mode", "exponent", "--oor", "const"], "the out-of-range policy must be clamp"),
    (["exp(x)", "--domain", "0,1", "--mode", "exponent", "--form", "x-times"], "exponent mode needs form plain"),
    (["x", "--domain", "-3e38,3e38"], "gives no finite fp32 segment map"),
    (["x", "--domain", "-1e39,1"], "its ends are not distinct finite fp32 values"),
    (["abs(x-0.3)", "--domain", "-1,1", "--degree", "1", "--eps", "1e-5"], "no table up to 4096 segments (degree 1)"),
    (["exp(x)", "--domain", "-10,10", "--eps", "1e-6"], "eps 1e-06 is below fp32's own resolution here: f(9.8"),
    (["exp(x)", "--domain", "0,1", "--name", "n" * 40], "at most 31 bytes"),
    (["exp(x)", "y"], "expected one expression, got 2 arguments"),
]


@pytest.mark.parametrize("args,message", FAILURES, ids=[str(i) for i in range(len(FAILURES))])
def test_failures(tmp_path, args, message):
    out = tmp_path / "t.pmlf"
    r = run(*args, "-o", out)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert r.stdout == ""
    lines = r.stderr.splitlines()
    assert lines[0].startswith("polymorph fit: "), r.stderr
    assert message in r.stderr, r.stderr
    assert all(line.startswith("    ") for line in lines[1:]), r.stderr
    assert not out.exists()
    assert os.listdir(tmp_path) == []


def test_expression_error_has_caret():
    r = run("1 + foo(x)", "--domain", "0,1")
    assert r.returncode == 1
    lines = r.stderr.splitlines()
    assert lines[0].startswith("polymorph fit: expr:1:5: unknown name 'foo'")
    assert lines[1] == "    1 + foo(x)" and lines[2] == "        ^"


def test_leading_minus_after_double_dash():
    r = run("--domain", "0,1", "--segments", "4", "--json", "--", "-x^2")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["expr"] == "-x^2"
