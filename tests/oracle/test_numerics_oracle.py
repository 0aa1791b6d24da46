"""Numerics oracle tests: every format's encode/decode through ctypes against
independent references: ml_dtypes (bf16, fp8, fp4), numpy (f16, int8/int4),
the gguf package's numpy quantiser (Q4_0/Q4_1/Q8_0), and numpy re-derivations
of the block formats written here from their definitions (OCP MX v1.0, the
NVFP4/IF4/INT4B rules in docs/numerics.md), never from the C code.
Everything is compared bit for bit."""
import ctypes
import warnings

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

lib.pm_format_bytes.argtypes = [ctypes.c_int, ctypes.c_size_t, ctypes.POINTER(ctypes.c_size_t)]
lib.pm_format_bytes.restype = ctypes.c_bool
lib.pm_format_encode.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p,
                                 ctypes.POINTER(PmError)]
lib.pm_format_decode.argtypes = lib.pm_format_encode.argtypes
lib.pm_format_from_name.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_int)]
lib.pm_format_from_name.restype = ctypes.c_bool

# The references warn on casts of NaN/inf and on overflow; the comparisons are the test.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")
warnings.filterwarnings("ignore", category=RuntimeWarning)


def nbytes(fmt, n):
    out = ctypes.c_size_t()
    assert lib.pm_format_bytes(FMT[fmt], n, ctypes.byref(out)), (fmt, n)
    return out.value


def encode(fmt, x):
    x = np.ascontiguousarray(x, dtype=np.float32).ravel()
    out = np.full(nbytes(fmt, x.size), 0xAA, dtype=np.uint8)
    err = PmError()
    st = lib.pm_format_encode(FMT[fmt], x.ctypes.data, x.size, out.ctypes.data, ctypes.byref(err))
    assert st == 0, err.message.decode()
    return out


def decode(fmt, buf, n):
    buf = np.ascontiguousarray(buf, dtype=np.uint8)
    assert buf.size == nbytes(fmt, n)
    out = np.full(n, np.nan, dtype=np.float32)
    err = PmError()
    st = lib.pm_format_decode(FMT[fmt], buf.ctypes.data, n, out.ctypes.data, ctypes.byref(err))
    assert st == 0, err.message.decode()
    return out


def bits32(a):
    return np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)


def assert_same(got, want, what):
    """Bit-for-bit equality (uint views); reports the first mismatches."""
    got = np.asarray(got).ravel()
    want = np.asarray(want).ravel()
    assert got.shape == want.shape, (what, got.shape, want.shape)
    bad = np.nonzero(got != want)[0]
    assert bad.size == 0, f"{what}: {bad.size} mismatches, first at {bad[:5]}: got {got[bad[:5]]} want {want[bad[:5]]}"


def assert_same_f32(got, want, what):
    assert_same(bits32(got), bits32(want), what)


def unpack_nibbles(b):
    b = np.asarray(b, dtype=np.uint8)
    out = np.empty(b.size * 2, dtype=np.uint8)
    out[0::2] = b & 0xF
    out[1::2] = b >> 4
    return out


def pack_nibbles(codes):
    codes = np.asarray(codes, dtype=np.uint8) & 0xF
    return (codes[0::2] | (codes[1::2] << 4)).astype(np.uint8)


# --------------------------------------------------------------------------
# Test inputs: a million fp32 values aimed at every format's edges
# --------------------------------------------------------------------------

def grid_edges(dtype, n_codes, bits_dtype):
    """All finite positive values of a small format, the midpoints between
    neighbours (exact ties), one fp32 ulp either side of each, and the
    neighbourhood of the maximum (including the tie with the next binade step)."""
    codes = np.arange(n_codes, dtype=np.uint64).astype(bits_dtype)
    vals = codes.view(dtype).astype(np.float64)
    vals = np.unique(vals[np.isfinite(vals) & (vals >= 0)])
    mids = (vals[:-1] + vals[1:]) / 2
    top = vals[-1] + (vals[-1] - vals[-2]) / 2  # the overflow tie
    pts = np.concatenate([vals, mids, [top, vals[-1] * 2, vals[-1] * 4]]).astype(np.float32)
    around = np.concatenate([pts, np.nextafter(pts, np.float32(np.inf)), np.nextafter(pts, np.float32(0))])
    return np.concatenate([around, -around])


def million_values():
    rng = np.random.default_rng(1234)
    parts = [
        rng.integers(0, 2**32, 300_000, dtype=np.uint64).astype(np.uint32).view(np.float32),
        grid_edges(np.float16, 1 << 16, np.uint16),
        grid_edges(mld.float8_e4m3fn, 256, np.uint8),
        grid_edges(mld.float8_e5m2, 256, np.uint8),
        grid_edges(mld.float4_e2m1fn, 16, np.uint8),
    ]
    # bf16 ties and near-ties: random upper halves with low halves at / around 0x8000
    hi = rng.integers(0, 1 << 16, 60_000, dtype=np.uint64).astype(np.uint32) << 16
    for low in (0x8000, 0x7FFF, 0x8001, 0x0000, 0xFFFF):
        parts.append((hi | np.uint32(low)).view(np.float32))
    # log-uniform magnitudes over the whole fp32 range, including subnormals
    mag = np.exp2(rng.uniform(-149, 128, 200_000)).astype(np.float32)
    parts.append(mag * rng.choice(np.array([-1, 1], np.float32), mag.size))
    special = np.array([0x00000000, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00000,
                        0x7F800001, 0xFF800001, 0x7FA00000, 0x7FBFFFFF, 0x7FFFFFFF, 0x00000001,
                        0x80000001, 0x007FFFFF, 0x00800000, 0x7F7FFFFF, 0xFF7FFFFF], dtype=np.uint32)
    parts.append(special.view(np.float32))
    x = np.concatenate(parts).astype(np.float32)
    fill = 1_000_000 - x.size
    if fill > 0:
        x = np.concatenate([x, rng.standard_normal(fill).astype(np.float32) * np.float32(100)])
    if x.size % 2:
        x = np.concatenate([x, np.float32([1.0])])
    return x


X = million_values()
IS_SNAN = ((bits32(X) & 0x7FFFFFFF) > 0x7F800000) & ((bits32(X) & 0x00400000) == 0)


# --------------------------------------------------------------------------
# Names and sizes
# --------------------------------------------------------------------------

def test_names_round_trip_and_case():
    out = ctypes.c_int(-1)
    for i, name in enumerate(NAMES):
        assert lib.pm_format_from_name(name.encode(), ctypes.byref(out)) and out.value == i
        assert lib.pm_format_from_name(name.upper().encode(), ctypes.byref(out)) and out.value == i
    assert not lib.pm_format_from_name(b"fp99", ctypes.byref(out))
    assert not lib.pm_format_from_name(b"q4_", ctypes.byref(out))


@pytest.mark.parametrize("fmt,n,want", [("f32", 3, 12), ("bf16", 5, 10), ("e4m3", 7, 7), ("e2m1", 6, 3),
                                        ("int4", 2, 1), ("mxfp4", 64, 34), ("mxfp8", 32, 33),
                                        ("mxint8", 96, 99), ("nvfp4", 32, 4 + 18), ("if4", 16, 13),
                                        ("int4b", 64, 36), ("q4_0", 64, 36), ("q4_1", 32, 20),
                                        ("q8_0", 96, 102)])
def test_bytes(fmt, n, want):
    assert nbytes(fmt, n) == want


# --------------------------------------------------------------------------
# Element formats
# --------------------------------------------------------------------------

def test_bf16_decode_all_patterns():
    codes = np.arange(1 << 16, dtype=np.uint16)
    got = decode("bf16", codes.view(np.uint8), codes.size)
    assert_same_f32(got, codes.view(mld.bfloat16).astype(np.float32), "bf16 decode")


def test_f16_decode_all_patterns():
    codes = np.arange(1 << 16, dtype=np.uint16)
    got = decode("f16", codes.view(np.uint8), codes.size)
    assert_same_f32(got, codes.view(np.float16).astype(np.float32), "f16 decode")


@pytest.mark.parametrize("fmt,dtype", [("e4m3", mld.float8_e4m3fn), ("e5m2", mld.float8_e5m2)])
def test_fp8_decode_every_code(fmt, dtype):
    codes = np.arange(256, dtype=np.uint8)
    assert_same_f32(decode(fmt, codes, 256), codes.view(dtype).astype(np.float32), f"{fmt} decode")


def test_e2m1_decode_every_code():
    codes = np.arange(16, dtype=np.uint8)
    got = decode("e2m1", pack_nibbles(codes), 16)
    assert_same_f32(got, codes.view(mld.float4_e2m1fn).astype(np.float32), "e2m1 decode")


def test_f32_identity():
    assert_same(encode("f32", X).view(np.uint32), bits32(X), "f32 encode")
    assert_same_f32(decode("f32", encode("f32", X), X.size), X, "f32 decode")


def test_bf16_encode_million():
    assert_same(encode("bf16", X).view(np.uint16), X.astype(mld.bfloat16).view(np.uint16), "bf16 encode")


def test_f16_encode_million():
    got = encode("f16", X).view(np.uint16)
    want = X.astype(np.float16).view(np.uint16)
    # numpy's software cast keeps signalling NaNs signalling; ours quiets them
    # (IEEE 754 conversion; docs/numerics.md): compare those against that rule.
    b = bits32(X)
    quieted = (((b >> 16) & 0x8000) | 0x7E00 | ((b & 0x7FFFFF) >> 13)).astype(np.uint16)
    want = np.where(IS_SNAN, quieted, want)
    assert IS_SNAN.sum() > 100 and (~IS_SNAN).sum() > 900_000
    assert_same(got, want, "f16 encode")


@pytest.mark.parametrize("fmt,dtype", [("e4m3", mld.float8_e4m3fn), ("e5m2", mld.float8_e5m2)])
def test_fp8_encode_million(fmt, dtype):
    assert_same(encode(fmt, X), X.astype(dtype).view(np.uint8), f"{fmt} encode")


def test_e2m1_encode_million():
    want = X.astype(mld.float4_e2m1fn).view(np.uint8)
    assert_same(unpack_nibbles(encode("e2m1", X)), want, "e2m1 encode")


def test_int8_int4_encode_million():
    r = np.rint(X.astype(np.float64))
    nan = np.isnan(X)
    want8 = np.where(nan, 0, np.clip(r, -128, 127)).astype(np.int8)
    assert_same(encode("int8", X).view(np.int8), want8, "int8 encode")
    want4 = np.where(nan, 0, np.clip(r, -8, 7)).astype(np.int8)
    got4 = unpack_nibbles(encode("int4", X)).astype(np.int8)
    got4 = np.where(got4 >= 8, got4 - 16, got4)
    assert_same(got4, want4, "int4 encode")
    assert_same_f32(decode("int4", encode("int4", X), X.size), want4.astype(np.float32), "int4 decode")
    assert_same_f32(decode("int8", encode("int8", X), X.size), want8.astype(np.float32), "int8 decode")


# --------------------------------------------------------------------------
# Block test data
# --------------------------------------------------------------------------

def block_data(seed, nblocks, block, nonfinite=True, tiny=True, lo=1e-30, hi=1e30):
    """Blocks of normal data at per-block scales from lo to hi, plus all-zero,
    constant, +-c alternating, single-outlier blocks, and (optionally) fp32
    subnormal blocks and blocks holding NaN or inf."""
    rng = np.random.default_rng(seed)
    scale = np.exp(rng.uniform(np.log(lo), np.log(hi), (nblocks, 1)))
    x = (rng.standard_normal((nblocks, block)) * scale).astype(np.float32)
    k = nblocks // 12
    x[0:k] = 0
    x[k:2 * k] = rng.standard_normal((k, 1)).astype(np.float32)
    x[2 * k:3 * k] = np.where(np.arange(block) % 2, -1, 1) * rng.uniform(0.1, 10, (k, 1))
    x[3 * k:4 * k, rng.integers(0, block)] *= 1000  # outliers
    x[4 * k:5 * k] = np.round(rng.standard_normal((k, block)) * 8) / 4  # many exact ties
    if tiny:
        x[5 * k:6 * k] = rng.integers(-(1 << 23), 1 << 23, (k, block)).astype(np.int32).astype(np.float32) * \
            np.float32(2.0**-149)
    if nonfinite:
        x[6 * k, 3] = np.nan
        x[6 * k + 1, 0] = np.inf
        x[6 * k + 2, block - 1] = -np.inf
    return x.astype(np.float32)


# --------------------------------------------------------------------------
# OCP MX: independent numpy implementation of spec v1.0 section 6.3
# --------------------------------------------------------------------------

MX = {"mxfp4": (2, "e2m1"), "mxfp8": (8, "e4m3"), "mxint8": (0, "int8")}


def mx_reference(x, fmt):
    emax, elem = MX[fmt]
    b = x.reshape(-1, 32)
    finite = np.isfinite(b).all(axis=1)
    amax = np.where(np.isfinite(b), np.abs(b), 0).max(axis=1).astype(np.float64)
    _, e = np.frexp(amax)  # amax = m * 2^e, m in [0.5, 1): floor(log2 amax) = e - 1
    s = np.where(amax > 0, e - 1 - emax, -127)
    s = np.maximum(s, -127)
    scale = np.where(finite, s + 127, 255).astype(np.uint8)
    v = (b.astype(np.float64) / np.exp2(s.astype(np.float64))[:, None]).astype(np.float32)
    if elem == "e2m1":
        codes = np.clip(v, -6, 6).astype(mld.float4_e2m1fn).view(np.uint8)
    elif elem == "e4m3":
        codes = np.clip(v, -448, 448).astype(mld.float8_e4m3fn).view(np.uint8)
    else:
        codes = np.clip(np.rint(v.astype(np.float64) * 64), -127, 127).astype(np.int8).view(np.uint8)
    codes = np.where(finite[:, None], codes, 0).astype(np.uint8)
    if elem == "e2m1":
        codes = pack_nibbles(codes.ravel()).reshape(-1, 16)
    return np.concatenate([scale[:, None], codes], axis=1).ravel()


def mx_decode_reference(buf, fmt):
    _, elem = MX[fmt]
    width = 17 if elem == "e2m1" else 33
    blk = buf.reshape(-1, width)
    scale = blk[:, 0]
    X32 = np.exp2(scale.astype(np.float64) - 127).astype(np.float32)
    if elem == "e2m1":
        vals = unpack_nibbles(blk[:, 1:].ravel()).view(mld.float4_e2m1fn).astype(np.float32).reshape(-1, 32)
    elif elem == "e4m3":
        vals = blk[:, 1:].copy().view(mld.float8_e4m3fn).astype(np.float32)
    else:
        vals = blk[:, 1:].copy().view(np.int8).astype(np.float32) / np.float32(64)
    out = vals * X32[:, None]
    out[scale == 255] = np.float32(np.nan)
    return out.ravel()


@pytest.mark.parametrize("fmt", list(MX))
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_mx_encode_decode(fmt, seed):
    x = block_data(seed, 1200, 32).ravel()
    got = encode(fmt, x)
    assert_same(got, mx_reference(x, fmt), f"{fmt} encode")
    assert_same_f32(decode(fmt, got, x.size), mx_decode_reference(got, fmt), f"{fmt} decode")


@pytest.mark.parametrize("fmt", list(MX))
def test_mx_decode_random_bytes(fmt):
    rng = np.random.default_rng(7)
    width = 17 if fmt == "mxfp4" else 33
    buf = rng.integers(0, 256, 500 * width, dtype=np.uint64).astype(np.uint8)
    assert_same_f32(decode(fmt, buf, 500 * 32), mx_decode_reference(buf, fmt), f"{fmt} decode")


# --------------------------------------------------------------------------
# NVFP4 / IF4 / INT4B: numpy from the definitions in docs/numerics.md
# --------------------------------------------------------------------------

def e4m3_sat(v):
    return np.clip(v, -448, 448).astype(mld.float8_e4m3fn).view(np.uint8)


def e4m3_val(c):
    return np.asarray(c, dtype=np.uint8).view(mld.float8_e4m3fn).astype(np.float32)


def fp4_candidate(b, amax, g, as_int4):
    f32 = np.float32
    scode = e4m3_sat((amax / f32(7 if as_int4 else 6)) / g)
    sdec = e4m3_val(scode)
    denom = sdec * g
    live = (denom != 0)[:, None]
    with np.errstate(all="ignore"):
        v = b / np.where(denom == 0, f32(1), denom)[:, None]
    if as_int4:
        q = np.where(live, np.clip(np.rint(v), -7, 7), 0).astype(np.int8)
        codes = (q & 0xF).astype(np.uint8)
        elem = q.astype(np.float32)
    else:
        codes = np.where(live, v.astype(mld.float4_e2m1fn).view(np.uint8), 0).astype(np.uint8)
        elem = codes.view(mld.float4_e2m1fn).astype(np.float32)
    dec = (elem * sdec[:, None]) * g
    err = np.zeros(b.shape[0])
    for j in range(16):  # element order 0..15, in double, as documented
        d = b[:, j].astype(np.float64) - dec[:, j].astype(np.float64)
        err = err + d * d
    return scode, codes, err


def fp4_reference(x, adaptive):
    f32 = np.float32
    a = np.abs(x)
    amax_t = a[np.isfinite(a)].max() if np.isfinite(a).any() else f32(0)
    g = f32(amax_t) / f32(2688)
    g = f32(1) if g == 0 else g
    b = x.reshape(-1, 16)
    finite = np.isfinite(b).all(axis=1)
    amax = np.where(np.isfinite(b), np.abs(b), 0).max(axis=1).astype(np.float32)
    scode, codes, err_fp = fp4_candidate(b, amax, g, False)
    if adaptive:
        iscode, icodes, err_int = fp4_candidate(b, amax, g, True)
        use_int = err_int < err_fp
        scode = np.where(use_int, iscode | 0x80, scode).astype(np.uint8)
        codes = np.where(use_int[:, None], icodes, codes)
    scode = np.where(finite, scode, 0x7F).astype(np.uint8)
    codes = np.where(finite[:, None], codes, 0).astype(np.uint8)
    packed = pack_nibbles(codes.ravel()).reshape(-1, 8)
    header = np.array([g], dtype="<f4").view(np.uint8)
    return np.concatenate([header, np.concatenate([scode[:, None], packed], axis=1).ravel()])


def fp4_decode_reference(buf, n, adaptive):
    g = buf[:4].copy().view("<f4")[0]
    blk = buf[4:].reshape(-1, 9)
    s = blk[:, 0]
    is_int = (s & 0x80 != 0) if adaptive else np.zeros(s.shape, bool)
    sdec = e4m3_val(s & 0x7F if adaptive else s)
    nib = unpack_nibbles(blk[:, 1:].ravel()).reshape(-1, 16)
    fp = nib.view(mld.float4_e2m1fn).astype(np.float32)
    it = np.where(nib >= 8, nib.astype(np.int16) - 16, nib).astype(np.float32)
    elem = np.where(is_int[:, None], it, fp)
    return ((elem * sdec[:, None]) * g).ravel()[:n]


@pytest.mark.parametrize("fmt", ["nvfp4", "if4"])
@pytest.mark.parametrize("seed", [11, 12, 13])
def test_fp4_block_encode_decode(fmt, seed):
    adaptive = fmt == "if4"
    x = block_data(seed, 2400, 16).ravel()
    if seed == 13:  # a tensor without non-finite values or extreme block scales
        x = np.random.default_rng(seed).standard_normal(16 * 2000).astype(np.float32)
    got = encode(fmt, x)
    assert_same(got, fp4_reference(x, adaptive), f"{fmt} encode")
    assert_same_f32(decode(fmt, got, x.size), fp4_decode_reference(got, x.size, adaptive), f"{fmt} decode")
    if adaptive:  # both choices must actually occur for the test to mean anything
        flags = got[4:].reshape(-1, 9)[:, 0] >> 7
        assert 0 < flags.sum() < flags.size


@pytest.mark.parametrize("fmt", ["nvfp4", "if4"])
def test_fp4_decode_random_bytes(fmt):
    rng = np.random.default_rng(5)
    buf = rng.integers(0, 256, 4 + 9 * 400, dtype=np.uint64).astype(np.uint8)
    buf[:4] = np.array([0.37], dtype="<f4").view(np.uint8)
    got = decode(fmt, buf, 6400)
    assert_same_f32(got, fp4_decode_reference(buf, 6400, fmt == "if4"), f"{fmt} decode")


def int4b_reference(x):
    f32 = np.float32
    b = x.reshape(-1, 32)
    finite = np.isfinite(b).all(axis=1)
    amax = np.where(np.isfinite(b), np.abs(b), 0).max(axis=1).astype(np.float32)
    scale = (amax / f32(7)).astype(mld.bfloat16)
    sdec = scale.astype(np.float32)
    with np.errstate(all="ignore"):
        q = np.clip(np.rint(b / np.where(sdec == 0, f32(1), sdec)[:, None]), -8, 7)
    q = np.where((sdec != 0)[:, None] & finite[:, None], q, 0).astype(np.int8)
    sbits = np.where(finite, scale.view(np.uint16), 0x7FC0).astype("<u2")
    packed = pack_nibbles((q & 0xF).astype(np.uint8).ravel()).reshape(-1, 16)
    return np.concatenate([sbits.view(np.uint8).reshape(-1, 2), packed], axis=1).ravel()


def int4b_decode_reference(buf):
    blk = buf.reshape(-1, 18)
    sdec = blk[:, :2].copy().view("<u2").view(mld.bfloat16).astype(np.float32)
    nib = unpack_nibbles(blk[:, 2:].ravel()).reshape(-1, 32)
    q = np.where(nib >= 8, nib.astype(np.int16) - 16, nib).astype(np.float32)
    return (q * sdec).ravel()


@pytest.mark.parametrize("seed", [21, 22])
def test_int4b_encode_decode(seed):
    x = block_data(seed, 1200, 32).ravel()
    got = encode("int4b", x)
    assert_same(got, int4b_reference(x), "int4b encode")
    assert_same_f32(decode("int4b", got, x.size), int4b_decode_reference(got), "int4b decode")
    rng = np.random.default_rng(seed)
    buf = rng.integers(0, 256, 18 * 300, dtype=np.uint64).astype(np.uint8)
    assert_same_f32(decode("int4b", buf, 300 * 32), int4b_decode_reference(buf), "int4b decode random")


# --------------------------------------------------------------------------
# GGUF: the gguf package's numpy reference, bit exact both ways
# --------------------------------------------------------------------------

GGUF = {"q4_0": gguf.GGMLQuantizationType.Q4_0, "q4_1": gguf.GGMLQuantizationType.Q4_1,
        "q8_0": gguf.GGMLQuantizationType.Q8_0}


@pytest.mark.parametrize("fmt", list(GGUF))
@pytest.mark.parametrize("shape,seed", [((64, 32), 31), ((37, 256), 32), ((5, 4096), 33), ((1, 32), 34)])
def test_gguf_encode_decode(fmt, shape, seed):
    rows, cols = shape
    # scales mostly inside f16's range (d is stored as f16), some beyond it
    x = block_data(seed, rows * cols // 32, 32, nonfinite=False, tiny=False, lo=1e-6, hi=1e6)
    if x.shape[0] < 12:  # too few blocks for the special cases: use plain data
        x = np.random.default_rng(seed).standard_normal(x.shape).astype(np.float32)
    x = x.reshape(rows, cols)
    want = gguf.quants.quantize(x, GGUF[fmt]).ravel()
    got = encode(fmt, x)
    assert_same(got, want, f"{fmt} encode")
    assert_same_f32(decode(fmt, got, x.size), gguf.quants.dequantize(want.reshape(rows, -1), GGUF[fmt]),
                    f"{fmt} decode")


@pytest.mark.parametrize("fmt", list(GGUF))
def test_gguf_decode_random_bytes(fmt):
    width = {"q4_0": 18, "q4_1": 20, "q8_0": 34}[fmt]
    rng = np.random.default_rng(41)
    buf = rng.integers(0, 256, (64, 8 * width), dtype=np.uint64).astype(np.uint8)
    want = gguf.quants.dequantize(buf, GGUF[fmt]).ravel()
    got = decode(fmt, buf.ravel(), buf.size // width * 32)
    both_nan = np.isnan(got) & np.isnan(want)  # NaN payloads from NaN scales are not compared
    assert both_nan.sum() < got.size // 10
    assert_same_f32(np.where(both_nan, 0, got), np.where(both_nan, 0, want), f"{fmt} decode")


@pytest.mark.parametrize("fmt", ["nvfp4", "if4"])
@pytest.mark.parametrize("case", ["zeros", "nonfinite", "tiny"])
def test_fp4_degenerate_tensors(fmt, case):
    """Tensor scale 1.0 when amax is 0 (or no finite value, or amax/2688 underflows)."""
    x = np.zeros(64, np.float32)
    if case == "nonfinite":
        x[:] = np.nan
        x[20] = np.inf
    elif case == "tiny":
        x[::3] = np.float32(2.0**-140)
    got = encode(fmt, x)
    assert_same(got, fp4_reference(x, fmt == "if4"), f"{fmt} encode")
    assert got[:4].view("<f4")[0] == 1.0


def test_e8m0_scalar_vs_ml_dtypes():
    """pm_f32_to_e8m0 / pm_e8m0_to_f32 (scalar entry points) against float8_e8m0fnu."""
    lib.pm_f32_to_e8m0.argtypes = [ctypes.c_float]
    lib.pm_f32_to_e8m0.restype = ctypes.c_uint8
    lib.pm_e8m0_to_f32.argtypes = [ctypes.c_uint8]
    lib.pm_e8m0_to_f32.restype = ctypes.c_float
    codes = np.arange(256, dtype=np.uint8)
    got = np.array([lib.pm_e8m0_to_f32(int(c)) for c in codes], dtype=np.float32)
    assert_same_f32(got, codes.view(mld.float8_e8m0fnu).astype(np.float32), "e8m0 decode")
    # every power of two and its ties / neighbours, plus a sample of the million values
    p = np.exp2(np.arange(-149, 128, dtype=np.float64))
    pts = np.concatenate([p, p * 1.5, p * 0.75]).astype(np.float32)
    pts = np.concatenate([pts, np.nextafter(pts, np.float32(0)), np.nextafter(pts, np.float32(np.inf)),
                          X[::20]])
    got = np.array([lib.pm_f32_to_e8m0(float(v)) for v in pts], dtype=np.uint8)
    assert_same(got, pts.astype(mld.float8_e8m0fnu).view(np.uint8), "e8m0 encode")
