"""The LLM vector kernels (src/kernels/llm_vec.c) against independent
references: numpy float64 RMSNorm, SwiGLU and RoPE (rotating the pairs
(2i, 2i+1) of the ORIGINAL interleaved GGUF layout, then comparing through
the rotate-half row permutation), the gguf package's dequantisers for the
embedding rows, and a numpy sort for top-k. The pm_ref_* host references are
checked here; device == pm_ref_* bit for bit is test_llm_vec.c's job, and one
device run per kernel below closes the loop (rmsnorm, rope, swiglu, top-k on
the edge preset, through the builder and the runtime).

Tolerances, each derived from the numerics, not fitted:
- rmsnorm f32: squares, the pairwise group sums (depth <= 5 + log2(32)),
  * (1/D) with 1/D itself rounded, + eps, rsqrt on the LFU (1 ulp,
  docs/lfu.md), x * r, * w: under 24 roundings of 2^-24 relative each, so
  |y - y64| <= 24 * 2^-24 * |y64| (about 1.4e-6 relative).
  bf16 adds the final rounding, half a bf16 ulp <= 2^-8 relative (8 significant bits).
- swiglu f32: SiLU on the LFU (3 ulp for normal results) and one product:
  <= 3.5 * 2^-23 relative; inputs kept in [-20, 20] where SiLU is normal.
- rope f32: cos and sin rounded to f32 (2^-24 relative each), hi * -sin
  rounded, one fma rounding: |out - out64| <= 4 * 2^-24 * (|lo| + |hi|).
- embed and top-k: exact."""
import ctypes

import gguf
import ml_dtypes as mld
import numpy as np
import pytest

from pmlib import PmError, load

# A handle of its own: argtypes set here must not clash with another test
# module's (each defines its own ctypes structures).
lib = load()

F32, BF16 = 0, 1
FMT = {"f32": 0, "bf16": 1, "q4_1": 15, "q8_0": 16}
GGUF_TYPES = {"q4_1": gguf.GGMLQuantizationType.Q4_1, "q8_0": gguf.GGMLQuantizationType.Q8_0}
ERR = ctypes.POINTER(PmError)
FP = ctypes.POINTER(ctypes.c_float)
u32, u64, f32 = ctypes.c_uint32, ctypes.c_uint64, ctypes.c_float

lib.pm_ref_rmsnorm.argtypes = [u32, u32, ctypes.c_void_p, ctypes.c_void_p, f32, ctypes.c_void_p, ctypes.c_int, ERR]
lib.pm_ref_rope.argtypes = [u32, u32, u32, ctypes.c_void_p, u32, u32, ctypes.c_void_p, u32, ERR]
lib.pm_rope_table.argtypes = [f32, u32, u32, ctypes.c_void_p, ctypes.c_void_p]
lib.pm_rope_table.restype = None
lib.pm_rope_permute_rows.argtypes = [u32, u32, ctypes.c_void_p]
lib.pm_rope_permute_rows.restype = None
lib.pm_ref_swiglu.argtypes = [u32, u32, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ERR]
lib.pm_ref_topk.argtypes = [u32, ctypes.c_void_p, u32, ctypes.c_void_p, ctypes.c_void_p, ERR]
lib.pm_ref_embed.argtypes = [u32, u32, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ERR]
lib.pm_format_encode.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, ERR]
lib.pm_format_bytes.argtypes = [ctypes.c_int, ctypes.c_size_t, ctypes.POINTER(ctypes.c_size_t)]
lib.pm_format_bytes.restype = ctypes.c_bool

# device side: builder, emitters, runtime
lib.pm_config_preset.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ERR]
lib.pm_builder_create.argtypes = [ctypes.POINTER(ctypes.c_void_p), ERR]
lib.pm_builder_destroy.argtypes = [ctypes.c_void_p]
lib.pm_builder_destroy.restype = None
lib.pm_builder_emit.argtypes = [ctypes.c_void_p, ctypes.c_int] + [ctypes.c_int64] * 6
lib.pm_builder_emit.restype = None
lib.pm_emit_llm_prologue.argtypes = [ctypes.c_void_p]
lib.pm_emit_llm_prologue.restype = None
lib.pm_emit_rmsnorm.argtypes = [ctypes.c_void_p, ctypes.c_void_p, u32, u32, u64, u64, f32, u64, ctypes.c_int, u64,
                                u64, ERR]
lib.pm_emit_rope.argtypes = [ctypes.c_void_p, ctypes.c_void_p, u32, u32, u32, u64, u32, u64, u64, u32, u64, u64, ERR]
lib.pm_emit_swiglu.argtypes = [ctypes.c_void_p, ctypes.c_void_p, u32, u32, u64, u64, ctypes.c_int, u64, u64, ERR]
lib.pm_emit_topk.argtypes = [ctypes.c_void_p, ctypes.c_void_p, u32, u64, u32, u64, u64, u64, ERR]
lib.pm_topk_scratch_bytes.argtypes = [u32, u32]
lib.pm_topk_scratch_bytes.restype = u64


class Program(ctypes.Structure):
    """pm_program (include/polymorph/isa.h)."""
    _fields_ = [("code", ctypes.c_void_p), ("code_count", ctypes.c_size_t), ("entry", ctypes.c_uint32),
                ("sections", ctypes.c_void_p), ("section_count", ctypes.c_size_t),
                ("symbols", ctypes.c_void_p), ("symbol_count", ctypes.c_size_t)]


lib.pm_builder_finish.argtypes = [ctypes.c_void_p, ctypes.POINTER(Program), ERR]
lib.pm_program_init.argtypes = [ctypes.POINTER(Program)]
lib.pm_program_init.restype = None
lib.pm_program_free.argtypes = [ctypes.POINTER(Program)]
lib.pm_program_free.restype = None
lib.pm_device_open.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p), ERR]
lib.pm_device_close.argtypes = [ctypes.c_void_p]
lib.pm_device_close.restype = None
lib.pm_device_write.argtypes = [ctypes.c_void_p, u64, ctypes.c_void_p, ctypes.c_size_t, ERR]
lib.pm_device_sram_write.argtypes = [ctypes.c_void_p, u32, u64, ctypes.c_void_p, ctypes.c_size_t, ERR]
lib.pm_device_sram_read.argtypes = lib.pm_device_sram_write.argtypes
lib.pm_device_load.argtypes = [ctypes.c_void_p, ctypes.POINTER(Program), u64, ERR]
lib.pm_device_run.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ERR]

OP_HALT = 0x01
A_IN, A_OUT, A_POS, A_REC, A_SCR = 0x00000, 0x80000, 0xC0000, 0xC1000, 0x100000
D_TABLE, D_W = 0x1000000, 0x2000000


def check(status, err):
    assert status == 0, err.message.decode()


def ptr(a):
    return a.ctypes.data


# ---------------- references through ctypes ----------------

def ref_rmsnorm(x, w, eps, yfmt):
    m, d = x.shape
    y = np.zeros((m, d), dtype=np.float32 if yfmt == F32 else np.uint16)
    err = PmError()
    check(lib.pm_ref_rmsnorm(m, d, ptr(x), ptr(w), eps, ptr(y), yfmt, ctypes.byref(err)), err)
    return y if yfmt == F32 else y.view(mld.bfloat16).astype(np.float32)


def ref_swiglu(gu, f, yfmt):
    m = gu.shape[0]
    y = np.zeros((m, f), dtype=np.float32 if yfmt == F32 else np.uint16)
    err = PmError()
    check(lib.pm_ref_swiglu(m, f, ptr(gu), ptr(y), yfmt, ctypes.byref(err)), err)
    return y if yfmt == F32 else y.view(mld.bfloat16).astype(np.float32)


def rope_table(base, hd, max_ctx):
    t = np.zeros(2 * max_ctx * (hd // 2), dtype=np.float32)
    lib.pm_rope_table(base, hd, max_ctx, None, ptr(t))
    return t


def permutation(heads, hd):
    perm = np.zeros(heads * hd, dtype=np.uint32)
    lib.pm_rope_permute_rows(heads, hd, ptr(perm))
    return perm.astype(np.int64)


# ---------------- numpy float64 oracles ----------------

def oracle_rmsnorm(x, w, eps):
    x64 = x.astype(np.float64)
    r = 1.0 / np.sqrt(np.mean(x64 * x64, axis=1, keepdims=True) + eps)
    return x64 * r * w.astype(np.float64)


def oracle_silu_mul(g, u):
    g64 = g.astype(np.float64)
    return g64 / (1.0 + np.exp(-g64)) * u.astype(np.float64)


def oracle_rope_interleaved(x, heads, hd, positions, base):
    """GGUF/Meta layout: each head rotates the pairs (x[2i], x[2i+1]) by p * base^(-2i/hd)."""
    out = x.astype(np.float64).copy()
    i = np.arange(hd // 2, dtype=np.float64)
    theta = base ** (-2.0 * i / hd)
    for r, p in enumerate(positions):
        a = p * theta
        c, s = np.cos(a), np.sin(a)
        for h in range(heads):
            even = out[r, h * hd + 0:h * hd + hd:2].copy()
            odd = out[r, h * hd + 1:h * hd + hd:2].copy()
            out[r, h * hd + 0:h * hd + hd:2] = even * c - odd * s
            out[r, h * hd + 1:h * hd + hd:2] = even * s + odd * c
    return out


def oracle_topk(x, k):
    """Largest first, +0 above -0, ties to the lower id, NaN never (then id -1)."""
    ids = np.arange(x.size)
    keep = ~np.isnan(x)
    order = np.lexsort((ids[keep], np.signbit(x[keep]), -x[keep].astype(np.float64)))
    chosen = ids[keep][order][:k]
    out_ids = np.full(k, -1, dtype=np.int32)
    out_ids[:chosen.size] = chosen
    return out_ids


# ---------------- reference tests ----------------

@pytest.mark.parametrize("m,d", [(1, 576), (3, 64), (7, 2048), (2, 1000), (1, 33)])
@pytest.mark.parametrize("yfmt", [F32, BF16])
def test_rmsnorm_ref_vs_float64(m, d, yfmt):
    rng = np.random.default_rng(m * 10007 + d)
    x = (rng.standard_normal((m, d)) * rng.uniform(0.01, 30.0)).astype(np.float32)
    w = rng.uniform(-2.0, 2.0, d).astype(np.float32)
    eps = np.float32(1e-5)
    y = ref_rmsnorm(x, w, eps, yfmt)
    y64 = oracle_rmsnorm(x, w, float(eps))
    bound = 24 * 2.0**-24 * np.abs(y64)
    if yfmt == BF16:
        bound = bound + 2.0**-8 * np.abs(y64) * (1 + 24 * 2.0**-24)
    assert np.all(np.abs(y - y64) <= bound), float(np.max(np.abs(y - y64) / np.maximum(np.abs(y64), 1e-30)))


@pytest.mark.parametrize("m,f", [(1, 1536), (4, 100), (2, 64)])
@pytest.mark.parametrize("yfmt", [F32, BF16])
def test_swiglu_ref_vs_float64(m, f, yfmt):
    rng = np.random.default_rng(f + m)
    gu = rng.uniform(-20.0, 20.0, (m, 2 * f)).astype(np.float32)
    y = ref_swiglu(gu, f, yfmt)
    y64 = oracle_silu_mul(gu[:, :f], gu[:, f:])
    bound = 3.5 * 2.0**-23 * np.abs(y64)
    if yfmt == BF16:
        bound = bound + 2.0**-8 * np.abs(y64) * (1 + 3.5 * 2.0**-23)
    assert np.all(np.abs(y - y64) <= bound)


def test_rope_table_vs_numpy():
    base, hd, ctx = 100000.0, 64, 2048
    t = rope_table(base, hd, ctx).reshape(2, ctx, hd // 2)
    i = np.arange(hd // 2, dtype=np.float64)
    a = np.arange(ctx, dtype=np.float64)[:, None] * base ** (-2.0 * i / hd)[None, :]
    # both computed in double then rounded once to f32: at most one f32 ulp apart
    assert np.all(np.abs(t[0] - np.cos(a)) <= np.spacing(np.abs(np.cos(a)).astype(np.float32)) + 1e-45)
    assert np.all(np.abs(t[1] - np.sin(a)) <= np.spacing(np.abs(np.sin(a)).astype(np.float32)) + 1e-45)


def test_permutation_is_even_then_odd():
    heads, hd = 3, 8
    perm = permutation(heads, hd)
    want = np.concatenate([h * hd + np.concatenate([np.arange(0, hd, 2), np.arange(1, hd, 2)])
                           for h in range(heads)])
    assert np.array_equal(perm, want)


@pytest.mark.parametrize("m,heads,hd,pos0", [(1, 12, 64, 0), (1, 12, 64, 2000), (3, 9, 64, 17), (5, 4, 128, 900),
                                             (2, 1, 2, 5)])
def test_rope_ref_vs_interleaved_float64(m, heads, hd, pos0):
    base, ctx = 100000.0, 2048
    rng = np.random.default_rng(pos0 + heads)
    row = heads * hd + 2 * hd  # heads to rotate, then something that must stay untouched
    x_gguf = rng.uniform(-3.0, 3.0, (m, row)).astype(np.float32)
    want = oracle_rope_interleaved(x_gguf, heads, hd, range(pos0, pos0 + m), base)
    # the weight permutation moves q/k features into rotate-half order
    perm = permutation(heads, hd)
    x = x_gguf.copy()
    x[:, :heads * hd] = x_gguf[:, perm]
    table = rope_table(base, hd, ctx)
    err = PmError()
    check(lib.pm_ref_rope(m, heads, hd, ptr(x), row, pos0, ptr(table), ctx, ctypes.byref(err)), err)
    got = x_gguf.copy()
    got[:, perm] = x[:, :heads * hd]
    got[:, heads * hd:] = x[:, heads * hd:]
    assert np.array_equal(got[:, heads * hd:], x_gguf[:, heads * hd:])
    # the bound per element uses the pair it came from
    pair = np.abs(x_gguf.astype(np.float64))
    mag = pair.copy()
    for h in range(heads):
        e, o = pair[:, h * hd:(h + 1) * hd:2], pair[:, h * hd + 1:(h + 1) * hd:2]
        mag[:, h * hd:(h + 1) * hd:2] = e + o
        mag[:, h * hd + 1:(h + 1) * hd:2] = e + o
    rot = slice(0, heads * hd)
    assert np.all(np.abs(got[:, rot] - want[:, rot]) <= 4 * 2.0**-24 * mag[:, rot])


@pytest.mark.parametrize("fmt", ["q8_0", "q4_1"])
def test_embed_ref_vs_gguf_dequantize(fmt):
    vocab, d = 50, 576
    rng = np.random.default_rng(3)
    src = rng.uniform(-1.0, 1.0, vocab * d).astype(np.float32)
    nbytes = ctypes.c_size_t()
    assert lib.pm_format_bytes(FMT[fmt], src.size, ctypes.byref(nbytes))
    emb = np.zeros(nbytes.value, dtype=np.uint8)
    err = PmError()
    check(lib.pm_format_encode(FMT[fmt], ptr(src), src.size, ptr(emb), ctypes.byref(err)), err)
    ids = np.array([0, 49, 7, 7, 23], dtype=np.int32)
    x = np.zeros((ids.size, d), dtype=np.float32)
    check(lib.pm_ref_embed(ids.size, d, FMT[fmt], ptr(emb), ptr(ids), ptr(x), ctypes.byref(err)), err)
    table = gguf.quants.dequantize(emb.reshape(vocab, -1), GGUF_TYPES[fmt]).astype(np.float32)
    assert np.array_equal(x.view(np.uint32), table[ids].view(np.uint32))


def special_logits(rng, n):
    pool = np.array([np.nan, -np.inf, np.inf, 0.0, -0.0, 1.0, 1.0, -2.0], dtype=np.float32)
    x = rng.uniform(-5, 5, n).astype(np.float32)
    pick = rng.integers(0, 3, n) == 0
    x[pick] = pool[rng.integers(0, pool.size, pick.sum())]
    return x


def ref_topk(x, k):
    ids = np.zeros(k, dtype=np.int32)
    vals = np.zeros(k, dtype=np.float32)
    err = PmError()
    check(lib.pm_ref_topk(x.size, ptr(x), k, ptr(ids), ptr(vals), ctypes.byref(err)), err)
    return ids, vals


@pytest.mark.parametrize("n,k", [(1, 1), (40, 40), (1000, 5), (49152, 64)])
def test_topk_ref_vs_numpy_sort(n, k):
    rng = np.random.default_rng(n)
    x = special_logits(rng, n)
    ids, vals = ref_topk(x, k)
    want = oracle_topk(x, k)
    assert np.array_equal(ids, want)
    ok = want >= 0
    assert np.array_equal(vals[ok].view(np.uint32), x[want[ok]].view(np.uint32))
    assert np.all(np.isnan(vals[~ok]))


# ---------------- device runs through the runtime ----------------

class Device:
    def __init__(self):
        self.cfg = ctypes.create_string_buffer(8192)
        err = PmError()
        check(lib.pm_config_preset(b"edge", self.cfg, ctypes.byref(err)), err)
        self.dev = ctypes.c_void_p()
        check(lib.pm_device_open(self.cfg, ctypes.byref(self.dev), ctypes.byref(err)), err)

    def close(self):
        lib.pm_device_close(self.dev)

    def sram_write(self, addr, arr):
        err = PmError()
        a = np.ascontiguousarray(arr)
        check(lib.pm_device_sram_write(self.dev, 0, addr, ptr(a), a.nbytes, ctypes.byref(err)), err)

    def sram_read(self, addr, shape, dtype):
        out = np.zeros(shape, dtype=dtype)
        err = PmError()
        check(lib.pm_device_sram_read(self.dev, 0, addr, ptr(out), out.nbytes, ctypes.byref(err)), err)
        return out

    def dram_write(self, addr, arr):
        err = PmError()
        a = np.ascontiguousarray(arr)
        check(lib.pm_device_write(self.dev, addr, ptr(a), a.nbytes, ctypes.byref(err)), err)

    def run(self, emit):
        """emit(builder, cfg, err) appends the kernel; prologue and halt around it."""
        b = ctypes.c_void_p()
        err = PmError()
        check(lib.pm_builder_create(ctypes.byref(b), ctypes.byref(err)), err)
        lib.pm_emit_llm_prologue(b)
        st = emit(b, self.cfg, ctypes.byref(err))
        if st:
            lib.pm_builder_destroy(b)
        check(st, err)
        lib.pm_builder_emit(b, OP_HALT, 0, 0, 0, 0, 0, 0)
        prog = Program()
        lib.pm_program_init(ctypes.byref(prog))
        st = lib.pm_builder_finish(b, ctypes.byref(prog), ctypes.byref(err))
        lib.pm_builder_destroy(b)
        check(st, err)
        try:
            check(lib.pm_device_load(self.dev, ctypes.byref(prog), 0, ctypes.byref(err)), err)
            check(lib.pm_device_run(self.dev, None, ctypes.byref(err)), err)
        finally:
            lib.pm_program_free(ctypes.byref(prog))


@pytest.fixture
def device():
    d = Device()
    yield d
    d.close()


def test_device_rmsnorm_vs_float64(device):
    m, d = 5, 576
    rng = np.random.default_rng(11)
    x = (rng.standard_normal((m, d)) * 4).astype(np.float32)
    w = rng.uniform(0.2, 2.0, d).astype(np.float32)
    device.sram_write(A_IN, x)
    device.dram_write(D_W, w)
    device.run(lambda b, cfg, e: lib.pm_emit_rmsnorm(b, cfg, m, d, A_IN, D_W, 1e-5, A_OUT, BF16, A_SCR, 20000, e))
    y = device.sram_read(A_OUT, (m, d), np.uint16).view(mld.bfloat16).astype(np.float32)
    assert np.array_equal(y.view(np.uint32), ref_rmsnorm(x, w, np.float32(1e-5), BF16).view(np.uint32))
    y64 = oracle_rmsnorm(x, w, 1e-5)
    assert np.all(np.abs(y - y64) <= (2.0**-8 * (1 + 24 * 2.0**-24) + 24 * 2.0**-24) * np.abs(y64))


def test_device_rope_vs_interleaved_float64(device):
    heads, hd, ctx, pos0, m = 12, 64, 2048, 1234, 2
    row = 960
    rng = np.random.default_rng(12)
    x_gguf = rng.uniform(-2, 2, (m, row)).astype(np.float32)
    perm = permutation(heads, hd)
    x = x_gguf.copy()
    x[:, :heads * hd] = x_gguf[:, perm]
    device.sram_write(A_IN, x)
    device.sram_write(A_POS, np.array([pos0], dtype=np.uint32))
    device.dram_write(D_TABLE, rope_table(100000.0, hd, ctx))
    device.run(lambda b, cfg, e: lib.pm_emit_rope(b, cfg, m, heads, hd, A_IN, row, A_POS, D_TABLE, ctx, A_SCR,
                                                  65536, e))
    out = device.sram_read(A_IN, (m, row), np.float32)
    got = out.copy()
    got[:, perm] = out[:, :heads * hd]
    want = oracle_rope_interleaved(x_gguf, heads, hd, range(pos0, pos0 + m), 100000.0)
    rot = slice(0, heads * hd)
    mag = 2 * np.max(np.abs(x_gguf[:, rot]))  # |lo| + |hi| of any pair is at most this
    assert np.max(np.abs(got[:, rot] - want[:, rot])) <= 4 * 2.0**-24 * mag
    assert np.array_equal(out[:, heads * hd:], x[:, heads * hd:])


def test_device_swiglu_vs_float64(device):
    m, f = 2, 1536
    rng = np.random.default_rng(13)
    gu = rng.uniform(-20, 20, (m, 2 * f)).astype(np.float32)
    device.sram_write(A_IN, gu)
    device.run(lambda b, cfg, e: lib.pm_emit_swiglu(b, cfg, m, f, A_IN, A_OUT, F32, A_SCR, 0, e))
    y = device.sram_read(A_OUT, (m, f), np.float32)
    y64 = oracle_silu_mul(gu[:, :f], gu[:, f:])
    assert np.all(np.abs(y - y64) <= 3.5 * 2.0**-23 * np.abs(y64))


@pytest.mark.parametrize("k", [1, 64])
def test_device_topk_vs_numpy_sort(device, k):
    n = 49152
    rng = np.random.default_rng(14 + k)
    x = special_logits(rng, n)
    device.sram_write(A_IN, x)
    scratch = lib.pm_topk_scratch_bytes(n, k)
    device.run(lambda b, cfg, e: lib.pm_emit_topk(b, cfg, n, A_IN, k, A_REC, A_SCR, scratch, e))
    rec = device.sram_read(A_REC, (k, 2), np.uint32)
    want = oracle_topk(x, k)
    assert np.array_equal(rec[:, 0].view(np.int32), want)
    assert np.array_equal(rec[:, 1], x[want].view(np.uint32))
    assert np.array_equal(device.sram_read(A_IN, n, np.float32).view(np.uint32), x.view(np.uint32))
