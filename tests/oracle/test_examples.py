"""Every program in examples/ run through `polymorph sim` with random inputs
(several seeds) and compared with a NumPy reference, plus the asm -> dis ->
asm byte-identity round trip for each example and the double-buffering
speed-up measured against its serialised twin.

Tolerances: everything computed by plain fp32 arithmetic must match NumPy's
float32 arithmetic exactly (same operations, same order, IEEE RNE). Softmax
goes through LFU tables; its bound is derived below from the LFU errors
measured by tools/lfu_error (docs/lfu.md: exp and recip are within 1 ulp in
fp32) plus the fp32 roundings of the kernel."""
import json
import os
import pathlib
import subprocess

import ml_dtypes
import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD = ROOT / os.environ.get("POLYMORPH_BUILD", "build")
POLYMORPH = BUILD / "polymorph"
EXAMPLES = ROOT / "examples"
SEEDS = [0, 1, 2, 3]
F32 = np.float32


def sim(tmp_path, program, inputs, outputs, *extra):
    """Runs `polymorph sim` with the arrays in `inputs` (name -> array) bound
    by .npy files; returns (counters JSON, {name: array}) for `outputs`."""
    args = [str(POLYMORPH), "sim", str(EXAMPLES / program), "--json", *map(str, extra)]
    for name, arr in inputs.items():
        p = tmp_path / f"in_{name}.npy"
        np.save(p, arr)
        args += ["--input", f"{name}={p}"]
    for name in outputs:
        args += ["--output", f"{name}={tmp_path / f'out_{name}.npy'}"]
    r = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout), {name: np.load(tmp_path / f"out_{name}.npy") for name in outputs}


def test_every_example_is_covered():
    # matmul.pasm is checked against its numpy/ml_dtypes/gguf reference in test_tensor_oracle.py
    tested = {"vector_add", "softmax", "bf16_mul", "double_buffer", "single_buffer", "two_engines", "matmul"}
    assert {p.stem for p in EXAMPLES.glob("*.pasm")} == tested


# ---- round trip ----

@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.pasm")))
def test_asm_dis_asm_identity(tmp_path, example):
    first, text, second = tmp_path / "1.pmp", tmp_path / "1.pasm", tmp_path / "2.pmp"
    for args in (["asm", EXAMPLES / example, "-o", first], ["dis", first, "-o", text], ["asm", text, "-o", second]):
        r = subprocess.run([str(POLYMORPH), *map(str, args)], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
    assert first.read_bytes() == second.read_bytes()


# ---- vector_add: exact ----

@pytest.mark.parametrize("seed", SEEDS)
def test_vector_add(tmp_path, seed):
    rng = np.random.default_rng(seed)
    a = (rng.standard_normal(4096) * 10.0 ** rng.integers(-30, 30, 4096)).astype(F32)
    b = (rng.standard_normal(4096) * 10.0 ** rng.integers(-30, 30, 4096)).astype(F32)
    if seed == 0:  # IEEE corner cases: signed zeros, subnormals, infinities, NaN
        specials = np.array([0.0, -0.0, 1e-45, -1e-45, 1e-40, np.inf, -np.inf, np.nan, 3.4e38], F32)
        a[: specials.size] = specials
        b[: specials.size] = specials[::-1]
        b[specials.size: 2 * specials.size] = -specials
        a[specials.size: 2 * specials.size] = specials
    _, out = sim(tmp_path, "vector_add.pasm", {"a": a, "b": b}, ["c"])
    with np.errstate(invalid="ignore", over="ignore"):
        ref = a + b
    assert out["c"].dtype == F32 and out["c"].shape == (4096,)
    np.testing.assert_array_equal(out["c"], ref)
    # signed zeros too (assert_array_equal treats -0 == +0)
    nz = ref == 0
    assert np.array_equal(np.signbit(out["c"][nz]), np.signbit(ref[nz]))


# ---- bf16_mul: exact against ml_dtypes ----

@pytest.mark.parametrize("seed", SEEDS)
def test_bf16_mul(tmp_path, seed):
    rng = np.random.default_rng(100 + seed)
    a = (rng.standard_normal(2048) * 4).astype(F32)
    b = (rng.standard_normal(2048) * 4).astype(F32)
    _, out = sim(tmp_path, "bf16_mul.pasm", {"a": a, "b": b}, ["c"])
    bf = ml_dtypes.bfloat16
    ref = (a.astype(bf).astype(F32) * b.astype(bf).astype(F32)).astype(bf).astype(F32)
    np.testing.assert_array_equal(out["c"], ref)


def test_bf16_mul_takes_float64(tmp_path):
    """float64 input is rounded to fp32 first, then to bf16 (documented)."""
    rng = np.random.default_rng(7)
    a = rng.standard_normal(2048)
    b = np.ones(2048)
    _, out = sim(tmp_path, "bf16_mul.pasm", {"a": a, "b": b}, ["c"])
    bf = ml_dtypes.bfloat16
    np.testing.assert_array_equal(out["c"], a.astype(F32).astype(bf).astype(F32))


# ---- softmax: LFU error bound ----

def softmax_bound(x):
    """Worst-case relative error of the kernel per element, first order in
    u = 2^-24: fl(x - m) perturbs exp's argument by |x - m| u (relative error
    |x - m| u in e, and at most max|x - m| u in every term of the sum); LFU
    exp and recip are within 1 ulp (<= 2u relative) each; the fp32 row sum of
    n positive terms adds at most (n - 1) u whatever the summation order; the
    final multiply adds u."""
    u = 2.0 ** -24
    d = np.abs(x.astype(np.float64) - x.max(axis=1, keepdims=True))
    n = x.shape[1]
    return (d + d.max(axis=1, keepdims=True) + 2 + 2 + (n - 1) + 2 + 1) * u * 1.001


@pytest.mark.parametrize("seed", SEEDS)
def test_softmax(tmp_path, seed):
    rng = np.random.default_rng(200 + seed)
    scale = [1.0, 3.0, 0.1, 8.0][seed]
    x = (rng.standard_normal((64, 256)) * scale).astype(F32)
    _, out = sim(tmp_path, "softmax.pasm", {"x": x}, ["y"])
    y = out["y"].astype(np.float64)
    x64 = x.astype(np.float64)
    e = np.exp(x64 - x64.max(axis=1, keepdims=True))
    ref = e / e.sum(axis=1, keepdims=True)
    assert y.shape == (64, 256)
    rel = np.abs(y - ref) / ref
    assert np.all(rel <= softmax_bound(x)), (rel.max(), softmax_bound(x).min())
    assert np.abs(y - ref).max() < 1e-6
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=0, atol=256 * 2 ** -23)


def test_make_run_softmax_without_inputs():
    """`make run` runs softmax on its zero-initialised input: every row is
    uniform, 1/256 within the LFU's 1-ulp reciprocal."""
    r = subprocess.run([str(POLYMORPH), "sim", str(EXAMPLES / "softmax.pasm"), "--preset", "edge"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "cycles" in r.stdout and "lfu" in r.stdout


def test_softmax_of_constant_rows(tmp_path):
    x = np.zeros((64, 256), F32)
    _, out = sim(tmp_path, "softmax.pasm", {"x": x}, ["y"])
    np.testing.assert_allclose(out["y"], 1 / 256, rtol=2 ** -22, atol=0)


# ---- double buffering: exact, and faster than the serialised version ----

def poly_ref(x):
    t = x * F32(0.5)
    t = t + F32(-1.25)
    t = t * x
    t = t + F32(2.0)
    t = t * x
    return t + F32(0.375)


@pytest.mark.parametrize("seed", SEEDS)
def test_double_and_single_buffer(tmp_path, seed):
    rng = np.random.default_rng(300 + seed)
    x = (rng.standard_normal(16384) * 3).astype(F32)
    ref = poly_ref(x)
    jd, od = sim(tmp_path, "double_buffer.pasm", {"x": x}, ["y"])
    js, os_ = sim(tmp_path, "single_buffer.pasm", {"x": x}, ["y"])
    np.testing.assert_array_equal(od["y"], ref)
    np.testing.assert_array_equal(os_["y"], ref)
    # same work, same traffic ...
    for key in ("vector_elems", "dram_read_bytes", "dram_write_bytes"):
        assert jd[key] == js[key], key
    # the vector unit does the same work; overlapped with DMA it shares the
    # SRAM port, so it may be busy a little longer, never shorter
    assert js["units"]["vec"]["busy_cycles"] <= jd["units"]["vec"]["busy_cycles"] <= \
        1.25 * js["units"]["vec"]["busy_cycles"]
    # ... in clearly fewer cycles: loads of tile i+1 overlap compute on tile i
    assert jd["cycles"] < 0.9 * js["cycles"], (jd["cycles"], js["cycles"])


def test_double_buffer_overlap_is_real(tmp_path):
    """The saving is bounded by the overlappable work: the serial version
    pays load + compute + store per tile, the pipelined one cannot go below
    the busiest unit's total busy time."""
    x = np.ones(16384, F32)
    jd, _ = sim(tmp_path, "double_buffer.pasm", {"x": x}, [])
    js, _ = sim(tmp_path, "single_buffer.pasm", {"x": x}, [])
    busiest = max(u["busy_cycles"] for u in jd["units"].values())
    assert busiest <= jd["cycles"] < js["cycles"]


# ---- two engines: producer / consumer through a flag ----

@pytest.mark.parametrize("seed", SEEDS)
def test_two_engines(tmp_path, seed):
    rng = np.random.default_rng(400 + seed)
    x = (rng.standard_normal(1024) * 100).astype(F32)
    j, out = sim(tmp_path, "two_engines.pasm", {"x": x}, ["mid", "out"], "--config", EXAMPLES / "two_engines.cfg")
    assert j["engines"] == 2
    mid = x * x
    np.testing.assert_array_equal(out["mid"], mid)
    np.testing.assert_array_equal(out["out"], mid + F32(1.0))
    # both engines did vector work
    assert j["units"]["vec"]["instructions"] == 2


def test_two_engines_consumer_waits(tmp_path):
    """The consumer's load comes after the producer's store: its result
    depends on mid, which only the producer writes. With the datacenter
    preset (8 engines) the extra engines halt at once and nothing changes."""
    x = np.arange(1024, dtype=F32)
    _, out = sim(tmp_path, "two_engines.pasm", {"x": x}, ["out"], "--preset", "datacenter")
    np.testing.assert_array_equal(out["out"], x * x + F32(1.0))
