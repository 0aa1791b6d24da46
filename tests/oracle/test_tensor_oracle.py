"""The tensor unit against independent references: examples/matmul.pasm
(y = silu(x @ w^T + bias), Q4_0 weights) run through `polymorph sim`, the
weights dequantised by the gguf package, bf16 rounding by ml_dtypes, the
k-ordered fp32 sums by numpy (a bf16 x bf16 product is exact in fp32, so
fmaf(a, b, c) == float32(c + float32(a * b))). SiLU is the LFU's built-in
table, evaluated through libpolymorph (the definition the epilogue uses),
and checked loosely against the true SiLU."""
import ctypes
import json
import subprocess

import gguf
import ml_dtypes
import numpy as np
import pytest

from pmlib import BUILD, POLYMORPH, ROOT, load

# A handle of its own: argtypes set here must not clash with another test
# module's (each defines its own ctypes structures).
lib = load()

EXAMPLE = ROOT / "examples" / "matmul.pasm"
M, N, K = 64, 128, 256
F32 = np.float32
PM_LFU_SILU = 4


def sim(tmp_path, inputs, extra=()):
    args = [str(POLYMORPH), "sim", str(EXAMPLE), "--json", *extra]
    for name, arr in inputs.items():
        p = tmp_path / f"in_{name}.npy"
        np.save(p, arr)
        args += ["--input", f"{name}={p}"]
    args += ["--output", f"y={tmp_path / 'y.npy'}"]
    r = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout), np.load(tmp_path / "y.npy")


def lfu_silu(v):
    """The LFU's built-in SiLU table through the library (bit-exact evaluator)."""
    table = ctypes.create_string_buffer(65536)  # holds a pm_lfu_table
    err = ctypes.create_string_buffer(2048)
    assert lib.pm_lfu_builtin(PM_LFU_SILU, table, err) == 0
    x = np.ascontiguousarray(v, dtype=F32).ravel()
    y = np.empty_like(x)
    lib.pm_lfu_eval_array(table, x.ctypes.data_as(ctypes.c_void_p), y.ctypes.data_as(ctypes.c_void_p),
                          ctypes.c_size_t(x.size))
    lib.pm_lfu_table_free(table)
    return y.reshape(v.shape)


def reference(x, w, bias):
    a = x.astype(ml_dtypes.bfloat16).astype(F32)
    q = gguf.quants.quantize(w.astype(F32), gguf.GGMLQuantizationType.Q4_0)
    wd = gguf.quants.dequantize(q, gguf.GGMLQuantizationType.Q4_0).reshape(N, K)
    b = wd.astype(ml_dtypes.bfloat16).astype(F32)
    acc = np.zeros((M, N), F32)
    for k in range(K):  # k ascending, one rounding per step
        acc = (acc + np.outer(a[:, k], b[:, k]).astype(F32)).astype(F32)
    pre = (acc + bias.astype(F32)[None, :]).astype(F32)
    return pre, lfu_silu(pre).astype(ml_dtypes.bfloat16).astype(F32)


def operands(seed):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, (M, K)).astype(F32)
    w = rng.normal(0, 0.5, (N, K)).astype(F32)
    bias = rng.uniform(-1, 1, N).astype(F32)
    return x, w, bias


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("dataflow", ["os", "ws"])
def test_matmul_example_bit_exact(tmp_path, seed, dataflow):
    x, w, bias = operands(seed)
    cfg = tmp_path / "array.cfg"
    cfg.write_text(f"base = edge\n[tensor]\ndataflow = {dataflow}\n")
    counters, y = sim(tmp_path, {"x": x, "w": w, "bias": bias}, ["--config", str(cfg)])
    pre, want = reference(x, w, bias)
    assert y.shape == (M, N)
    assert np.array_equal(y.view(np.uint32), want.view(np.uint32)), np.argwhere(y != want)[:5]
    # the LFU table is an approximation of the real SiLU; bf16 output rounding on top
    true = pre / (1 + np.exp(-pre.astype(np.float64)))
    assert np.all(np.abs(y - true) <= 2.0**-8 * np.abs(true) + 1e-6)  # bf16 half-ulp (2^-9) + LFU error
    assert counters["tensor_macs"] == M * N * K
    assert counters["lfu_evals"] == M * N


def test_matmul_example_timing_is_the_formula(tmp_path):
    """tmm on edge (32 x 32, os): 8 folds of max(K, R) = 256 cycles, the last
    one K + (R + C - 2) + R; tout: M*N/C + LFU latency; the tensor unit is busy
    exactly for their sum because tout waits for the accumulator tile."""
    x, w, bias = operands(3)
    counters, _ = sim(tmp_path, {"x": x, "w": w, "bias": bias}, ["--preset", "edge"])
    tensor = counters["units"]["tensor"]
    tmm = 7 * 256 + 256 + (32 + 32 - 2) + 32
    tout = M * N // 32 + 6
    assert tensor["busy_cycles"] == tmm + tout
