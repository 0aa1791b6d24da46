"""Matmul kernel oracle tests: pm_kernel_matmul programs run on simulated
devices through ctypes, compared bit for bit with an independent numpy
oracle: x in bf16 (ml_dtypes), weights decoded by ml_dtypes / numpy / the gguf
package (never by the C code), rounded to bf16, summed in float32 one k at a
time from +0 (vectorised over m and n: with values in a safe range every
bf16 x bf16 product is exact in float32, so acc + a*b is the engine's fmaf
chain), then scale and bias in float32 and the output rounding of ml_dtypes /
numpy. Shapes include ragged edges, several engines, batch and both hazard
modes."""
import ctypes

import gguf
import ml_dtypes as mld
import numpy as np
import pytest

from pmlib import PmError, load

# A handle of its own: argtypes set here must not clash with another test
# module's (each defines its own ctypes structures).
lib = load()

NAMES = ["f32", "bf16", "f16", "e4m3", "e5m2", "e2m1", "int8", "int4", "mxfp4", "mxfp8",
         "mxint8", "nvfp4", "if4", "int4b", "q4_0", "q4_1", "q8_0"]
FMT = {name: i for i, name in enumerate(NAMES)}
HAZARDS = {"interlock": 0, "report": 1}


class MatmulDesc(ctypes.Structure):
    """pm_matmul_desc (include/polymorph/kernels.h), field for field."""
    _fields_ = [("M", ctypes.c_uint32), ("N", ctypes.c_uint32), ("K", ctypes.c_uint32),
                ("batch", ctypes.c_uint32), ("w_fmt", ctypes.c_int), ("out_fmt", ctypes.c_int),
                ("x_addr", ctypes.c_uint64), ("w_addr", ctypes.c_uint64), ("y_addr", ctypes.c_uint64),
                ("bias_addr", ctypes.c_uint64), ("x_batch_stride", ctypes.c_uint64),
                ("w_batch_stride", ctypes.c_uint64), ("y_batch_stride", ctypes.c_uint64),
                ("has_scale", ctypes.c_bool), ("has_bias", ctypes.c_bool), ("has_act", ctypes.c_bool),
                ("scale", ctypes.c_float), ("act", ctypes.c_int), ("engines", ctypes.c_uint32),
                ("dataflow", ctypes.c_int), ("dataflow_from_config", ctypes.c_bool),
                ("dataflow_auto", ctypes.c_bool), ("sync_flag", ctypes.c_uint32)]


class Program(ctypes.Structure):
    """pm_program (include/polymorph/isa.h)."""
    _fields_ = [("code", ctypes.c_void_p), ("code_count", ctypes.c_size_t), ("entry", ctypes.c_uint32),
                ("sections", ctypes.c_void_p), ("section_count", ctypes.c_size_t),
                ("symbols", ctypes.c_void_p), ("symbol_count", ctypes.c_size_t)]


# pm_config is opaque here: filled by the library from config text.
CONFIG_BYTES = 8192
ERR = ctypes.POINTER(PmError)
lib.pm_config_parse.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p, ERR]
lib.pm_config_preset.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ERR]
lib.pm_matmul_desc_init.argtypes = [ctypes.POINTER(MatmulDesc), ctypes.c_uint32, ctypes.c_uint32,
                                    ctypes.c_uint32, ctypes.c_int, ctypes.c_int]
lib.pm_matmul_desc_init.restype = None
lib.pm_matmul_sizes.argtypes = [ctypes.POINTER(MatmulDesc)] + [ctypes.POINTER(ctypes.c_uint64)] * 3 + [ERR]
lib.pm_kernel_matmul.argtypes = [ctypes.c_void_p, ctypes.POINTER(MatmulDesc), ctypes.POINTER(Program), ERR]
lib.pm_program_init.argtypes = [ctypes.POINTER(Program)]
lib.pm_program_init.restype = None
lib.pm_program_free.argtypes = [ctypes.POINTER(Program)]
lib.pm_program_free.restype = None
lib.pm_device_open.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p), ERR]
lib.pm_device_close.argtypes = [ctypes.c_void_p]
lib.pm_device_close.restype = None
lib.pm_device_alloc.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint64,
                                ctypes.POINTER(ctypes.c_uint64), ERR]
lib.pm_device_write.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_void_p, ctypes.c_size_t, ERR]
lib.pm_device_read.argtypes = lib.pm_device_write.argtypes
lib.pm_device_load.argtypes = [ctypes.c_void_p, ctypes.POINTER(Program), ctypes.c_uint64, ERR]
lib.pm_device_run.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ERR]
lib.pm_format_encode.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, ERR]
lib.pm_format_bytes.argtypes = [ctypes.c_int, ctypes.c_size_t, ctypes.POINTER(ctypes.c_size_t)]
lib.pm_format_bytes.restype = ctypes.c_bool


def check(status, err):
    assert status == 0, err.message.decode()


def make_config(text):
    cfg = ctypes.create_string_buffer(CONFIG_BYTES)
    err = PmError()
    check(lib.pm_config_parse(b"test.cfg", text.encode(), cfg, ctypes.byref(err)), err)
    return cfg


def encode(fmt, values):
    """The library's encoder (its own oracle tests cover it); decoding is the oracle's."""
    v = np.ascontiguousarray(values, dtype=np.float32).ravel()
    nbytes = ctypes.c_size_t()
    assert lib.pm_format_bytes(FMT[fmt], v.size, ctypes.byref(nbytes))
    out = np.zeros(nbytes.value, dtype=np.uint8)
    err = PmError()
    check(lib.pm_format_encode(FMT[fmt], v.ctypes.data, v.size, out.ctypes.data, ctypes.byref(err)), err)
    return out


# ---- the oracle: independent decoders and the ordered sum ----

GGUF_TYPES = {"q4_0": gguf.GGMLQuantizationType.Q4_0, "q4_1": gguf.GGMLQuantizationType.Q4_1,
              "q8_0": gguf.GGMLQuantizationType.Q8_0}


def oracle_decode(fmt, raw, n, k):
    """Weights (n x k) from their encoded bytes, without the C library."""
    if fmt == "f32":
        return raw.view(np.float32).reshape(n, k)
    if fmt == "bf16":
        return raw.view(mld.bfloat16).astype(np.float32).reshape(n, k)
    if fmt == "f16":
        return raw.view(np.float16).astype(np.float32).reshape(n, k)
    if fmt == "e4m3":
        return raw.view(mld.float8_e4m3fn).astype(np.float32).reshape(n, k)
    if fmt == "int8":
        return raw.view(np.int8).astype(np.float32).reshape(n, k)
    if fmt in GGUF_TYPES:
        return gguf.quants.dequantize(raw.reshape(n, -1), GGUF_TYPES[fmt]).astype(np.float32).reshape(n, k)
    raise ValueError(fmt)


def oracle_matmul(x, w, scale=None, bias=None, out="f32"):
    """x: m x k bf16, w: n x k float32 (decoded). Sequential float32 sums."""
    a = x.astype(np.float32)
    b = w.astype(mld.bfloat16).astype(np.float32)  # weights enter the array as bf16 (RNE)
    acc = np.zeros((a.shape[0], b.shape[0]), dtype=np.float32)
    for kk in range(a.shape[1]):
        acc = acc + np.outer(a[:, kk], b[:, kk]).astype(np.float32)
    if scale is not None:
        acc = acc * np.float32(scale)
    if bias is not None:
        acc = acc + bias.astype(np.float32)[None, :]
    return {"f32": lambda v: v, "bf16": lambda v: v.astype(mld.bfloat16),
            "f16": lambda v: v.astype(np.float16)}[out](acc)


# ---- running a kernel ----

LOOP_OPCODE = 0x1C  # isa_table.h: loop


def run_matmul(cfg, m, n, k, wfmt, out="f32", batch=1, engines=1, scale=None, bias=False, dataflow=None,
               seed=0, min_loops=0):
    rng = np.random.default_rng(seed)
    d = MatmulDesc()
    lib.pm_matmul_desc_init(ctypes.byref(d), m, n, k, FMT[wfmt], FMT[out])
    d.batch, d.engines = batch, engines
    if scale is not None:
        d.has_scale, d.scale = True, scale
    if dataflow is not None:
        d.dataflow_from_config, d.dataflow = False, dataflow
    xb, wb, yb = ctypes.c_uint64(), ctypes.c_uint64(), ctypes.c_uint64()
    err = PmError()
    check(lib.pm_matmul_sizes(ctypes.byref(d), ctypes.byref(xb), ctypes.byref(wb), ctypes.byref(yb),
                              ctypes.byref(err)), err)
    # Values chosen so products and sums stay far from under/overflow.
    xs = [rng.uniform(-2, 2, (m, k)).astype(mld.bfloat16) for _ in range(batch)]
    wraw = [encode(wfmt, rng.uniform(-1.5, 1.5, (n, k))) for _ in range(batch)]
    bvec = rng.uniform(-3, 3, n).astype(np.float32)
    dev = ctypes.c_void_p()
    check(lib.pm_device_open(cfg, ctypes.byref(dev), ctypes.byref(err)), err)
    prog = Program()
    lib.pm_program_init(ctypes.byref(prog))
    try:
        stride = lambda nbytes: (nbytes + 200) // 64 * 64 if batch > 1 else 0
        d.x_batch_stride, d.w_batch_stride, d.y_batch_stride = stride(xb.value), stride(wb.value), stride(yb.value)
        for field, nbytes in (("x_addr", xb.value), ("w_addr", wb.value), ("y_addr", yb.value),
                              ("bias_addr", 4 * n)):
            addr = ctypes.c_uint64()
            check(lib.pm_device_alloc(dev, (nbytes + 256) * batch, 64, ctypes.byref(addr), ctypes.byref(err)), err)
            setattr(d, field, addr.value)
        for i in range(batch):
            xi = np.ascontiguousarray(xs[i]).view(np.uint16)
            check(lib.pm_device_write(dev, d.x_addr + i * d.x_batch_stride, xi.ctypes.data, xi.nbytes,
                                      ctypes.byref(err)), err)
            check(lib.pm_device_write(dev, d.w_addr + i * d.w_batch_stride, wraw[i].ctypes.data, wraw[i].nbytes,
                                      ctypes.byref(err)), err)
        if bias:
            d.has_bias = True
            check(lib.pm_device_write(dev, d.bias_addr, bvec.ctypes.data, bvec.nbytes, ctypes.byref(err)), err)
        check(lib.pm_kernel_matmul(cfg, ctypes.byref(d), ctypes.byref(prog), ctypes.byref(err)), err)
        code = np.ctypeslib.as_array(ctypes.cast(prog.code, ctypes.POINTER(ctypes.c_uint64)), (prog.code_count,))
        assert np.count_nonzero((code & 0xFF) == LOOP_OPCODE) >= min_loops
        check(lib.pm_device_load(dev, ctypes.byref(prog), 0, ctypes.byref(err)), err)
        check(lib.pm_device_run(dev, None, ctypes.byref(err)), err)
        results = []
        for i in range(batch):
            y = np.zeros(yb.value, dtype=np.uint8)
            check(lib.pm_device_read(dev, d.y_addr + i * d.y_batch_stride, y.ctypes.data, y.nbytes,
                                     ctypes.byref(err)), err)
            expect = oracle_matmul(xs[i], oracle_decode(wfmt, wraw[i], n, k), scale, bvec if bias else None, out)
            results.append((y, np.ascontiguousarray(expect).view(np.uint8).ravel()))
        return results
    finally:
        lib.pm_program_free(ctypes.byref(prog))
        lib.pm_device_close(dev)


def assert_bits(results):
    for y, expect in results:
        assert y.size == expect.size
        bad = np.flatnonzero(y != expect)
        assert bad.size == 0, f"{bad.size} bytes differ, first at {bad[0]}"


TINY = """base = edge
name = tiny
[tensor]
rows = 4
cols = 8
weight_load_rows = 2
[sram]
bytes = 16 KiB
bytes_per_cycle = 64
banks = 4
accumulator_bytes = 1 KiB
[chip]
engines = 4
[control]
hazards = {hazards}
"""


@pytest.mark.parametrize("hazards", ["interlock", "report"])
@pytest.mark.parametrize("m,n,k,wfmt,out", [
    (64, 64, 64, "bf16", "f32"),
    (37, 45, 70, "bf16", "bf16"),
    (1, 300, 128, "q4_0", "f32"),
    (1, 96, 64, "q4_1", "f16"),
    (50, 33, 96, "q8_0", "f32"),
    (20, 40, 48, "e4m3", "f32"),
    (9, 17, 31, "int8", "bf16"),
])
def test_edge_shapes(hazards, m, n, k, wfmt, out):
    cfg = make_config(f"base = edge\n[control]\nhazards = {hazards}\n")
    assert_bits(run_matmul(cfg, m, n, k, wfmt, out, seed=m * 1000 + n))


@pytest.mark.parametrize("hazards", ["interlock", "report"])
def test_tiny_many_tiles(hazards):
    """A 4 x 8 array with 16 KiB SRAM and 1 KiB accumulators: many ragged
    tiles and K chunks, weight-stationary and output-stationary."""
    cfg = make_config(TINY.format(hazards=hazards))
    rng = np.random.default_rng(11)
    for i in range(6):
        m, n = int(rng.integers(1, 30)), int(rng.integers(1, 40))
        wfmt = ["bf16", "q8_0", "q4_1", "f32"][i % 4]
        k = 32 * int(rng.integers(1, 4)) if wfmt.startswith("q") else int(rng.integers(1, 90))
        assert_bits(run_matmul(cfg, m, n, k, wfmt, ["f32", "bf16"][i % 2], dataflow=i % 2, seed=i))


@pytest.mark.parametrize("engines", [1, 2, 4])
def test_engines_batch_epilogue(engines):
    cfg = make_config(TINY.format(hazards="interlock"))
    assert_bits(run_matmul(cfg, 21, 50, 64, "q8_0", "f32", engines=engines, bias=True, scale=0.5, seed=3))
    assert_bits(run_matmul(cfg, 7, 12, 40, "bf16", "bf16", batch=5, engines=engines, scale=-1.25, seed=4))
    assert_bits(run_matmul(cfg, 1, 90, 64, "q4_0", "f32", engines=engines, bias=True, seed=5))


@pytest.mark.parametrize("hazards", ["interlock", "report"])
def test_loops(hazards):
    """Shapes long enough that the program loops over pairs of M blocks and,
    nested, over pairs of N tiles (bias addresses moving with them)."""
    cfg = make_config(TINY.format(hazards=hazards).replace("1 KiB", "256").replace("16 KiB", "8 KiB"))
    assert_bits(run_matmul(cfg, 157, 150, 40, "bf16", "bf16", bias=True, scale=0.5, seed=21, min_loops=2))
    assert_bits(run_matmul(cfg, 1, 1000, 64, "q4_1", "f32", bias=True, seed=22, min_loops=1))


def test_oracle_sum_order_matters():
    """The oracle is sequential: a pairwise sum of the same data differs, so a
    kernel that reordered k would fail these tests."""
    x = np.array([[2.0 ** 24, 1.0, 1.0]], dtype=mld.bfloat16)
    w = np.ones((1, 3), dtype=np.float32)
    assert oracle_matmul(x, w)[0, 0] == np.float32(2.0 ** 24)
    assert np.float32(2.0 ** 24) + (np.float32(1) + np.float32(1)) == np.float32(2.0 ** 24 + 2)
