"""K-quant numerics (Q4_K, Q6_K) through ctypes against the gguf package.

Decoding is compared bit for bit with gguf.quants.dequantize (the numpy
reference llama.cpp's Python tools use), over random bytes and over our own
encodings. The package has no K-quant quantiser, so the encoders are held to
error bounds derived from the formats' step sizes, to determinism, and to
re-encoding their own output without losing accuracy."""
import ctypes
import warnings

import gguf
import numpy as np
import pytest

from pmlib import PmError, load

# A handle of its own: argtypes set here must not clash with another test
# module's (each defines its own ctypes structures).
lib = load()

FMT = {"q4_k": 17, "q6_k": 18}
QT = {"q4_k": gguf.GGMLQuantizationType.Q4_K, "q6_k": gguf.GGMLQuantizationType.Q6_K}
WIDTH = {"q4_k": 144, "q6_k": 210}

lib.pm_format_bytes.argtypes = [ctypes.c_int, ctypes.c_size_t, ctypes.POINTER(ctypes.c_size_t)]
lib.pm_format_bytes.restype = ctypes.c_bool
lib.pm_format_encode.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p,
                                 ctypes.POINTER(PmError)]
lib.pm_format_decode.argtypes = lib.pm_format_encode.argtypes
lib.pm_format_from_name.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_int)]
lib.pm_format_from_name.restype = ctypes.c_bool

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")
warnings.filterwarnings("ignore", category=RuntimeWarning)


def encode(fmt, x):
    x = np.ascontiguousarray(x, dtype=np.float32).ravel()
    out = np.full(x.size // 256 * WIDTH[fmt], 0xAA, dtype=np.uint8)
    err = PmError()
    assert lib.pm_format_encode(FMT[fmt], x.ctypes.data, x.size, out.ctypes.data, ctypes.byref(err)) == 0, \
        err.message.decode()
    return out


def decode(fmt, buf, n):
    buf = np.ascontiguousarray(buf, dtype=np.uint8)
    out = np.full(n, np.nan, dtype=np.float32)
    err = PmError()
    assert lib.pm_format_decode(FMT[fmt], buf.ctypes.data, n, out.ctypes.data, ctypes.byref(err)) == 0, \
        err.message.decode()
    return out


def reference(fmt, buf):
    return gguf.quants.dequantize(buf.reshape(-1, WIDTH[fmt]), QT[fmt]).ravel().astype(np.float32)


def assert_bits_nan(got, want, what):
    """Bit-equal everywhere, NaN at the same places (payloads of NaN scales aside)."""
    gn, wn = np.isnan(got), np.isnan(want)
    assert np.array_equal(gn, wn), f"{what}: NaN positions differ at {np.flatnonzero(gn != wn)[:8]}"
    g, w = got[~gn].view(np.uint32), want[~wn].view(np.uint32)
    bad = np.flatnonzero(g != w)
    assert bad.size == 0, f"{what}: {bad.size} differ, first {got[~gn][bad[0]]!r} vs {want[~wn][bad[0]]!r}"


def test_names_sizes():
    out = ctypes.c_int(-1)
    size = ctypes.c_size_t()
    for name, idx in FMT.items():
        assert lib.pm_format_from_name(name.encode(), ctypes.byref(out)) and out.value == idx
        assert lib.pm_format_bytes(idx, 512, ctypes.byref(size)) and size.value == 2 * WIDTH[name]
        assert gguf.GGML_QUANT_SIZES[QT[name]] == (256, WIDTH[name])
        assert not lib.pm_format_bytes(idx, 128, ctypes.byref(size))


@pytest.mark.parametrize("fmt", list(FMT))
def test_decode_random_bytes(fmt):
    """Every byte pattern, including NaN/inf/subnormal f16 scales."""
    rng = np.random.default_rng(7)
    buf = rng.integers(0, 256, (300, WIDTH[fmt]), dtype=np.uint64).astype(np.uint8)
    n = buf.shape[0] * 256
    assert_bits_nan(decode(fmt, buf.ravel(), n), reference(fmt, buf.ravel()), f"{fmt} random bytes")


@pytest.mark.parametrize("fmt", list(FMT))
def test_decode_finite_scales(fmt):
    """Random nibbles and scales with realistic f16 super-scales (no NaN to hide behind)."""
    rng = np.random.default_rng(8)
    buf = rng.integers(0, 256, (200, WIDTH[fmt]), dtype=np.uint64).astype(np.uint8)
    d = (rng.standard_normal((200, 2)) * 1e-2).astype(np.float16).view(np.uint8).reshape(200, 4)
    if fmt == "q4_k":
        buf[:, 0:4] = d
    else:
        buf[:, 208:210] = d[:, 0:2]
    got = decode(fmt, buf.ravel(), 200 * 256)
    assert np.all(np.isfinite(got))
    assert_bits_nan(got, reference(fmt, buf.ravel()), f"{fmt} finite scales")


def rms_and_max_bounds(fmt, x):
    """Per-element error bounds from the format's steps, per super-block."""
    blocks = x.reshape(-1, 256)
    if fmt == "q4_k":
        sub = blocks.reshape(blocks.shape[0], 8, 32)
        span = sub.max(axis=2) - np.minimum(sub.min(axis=2), 0)
        # a step of span/15 (half-step rounding), plus the 6-bit scale and
        # min codes' rounding: up to half a super-unit each, times q <= 15
        unit = span.max(axis=1, keepdims=True) / 63
        bound = span / 15 * 0.5 + 15 * unit * 0.5 + unit * 0.5 + span / 15 * 0.5
        return np.repeat(bound, 32, axis=1).ravel()
    sub = blocks.reshape(blocks.shape[0], 16, 16)
    amax = np.abs(sub).max(axis=2)
    # the encoder's step s is amax/33.5 .. amax/30.5: rounding costs s/2, a
    # clipped element at most 33.5s - 31s; the int8 scale code adds half a
    # super-unit d (the largest step / 128, f16-rounded) per unit of |q| <= 32
    d = amax.max(axis=1, keepdims=True) / 30.5 / 128 * (1 + 2**-10)
    bound = 2.5 * amax / 30.5 + 16 * d
    return np.repeat(bound, 16, axis=1).ravel()


DISTS = ["normal", "uniform", "heavy", "positive", "sparse"]


@pytest.mark.parametrize("fmt", list(FMT))
@pytest.mark.parametrize("dist", DISTS)
def test_encode_error_bounds(fmt, dist):
    rng = np.random.default_rng(100 * list(FMT).index(fmt) + DISTS.index(dist))
    n = 64 * 256
    x = {"normal": lambda: rng.standard_normal(n),
         "uniform": lambda: rng.uniform(-3, 3, n),
         "heavy": lambda: rng.standard_t(2, n),
         "positive": lambda: rng.uniform(0.5, 2.0, n),
         "sparse": lambda: rng.standard_normal(n) * (rng.random(n) < 0.1)}[dist]().astype(np.float32)
    x *= np.float32(0.05)  # weight-like magnitudes, well inside f16's scale range
    buf = encode(fmt, x)
    y = decode(fmt, buf, n)
    assert_bits_nan(y, reference(fmt, buf), f"{fmt} decode of own encoding")
    err = np.abs(y.astype(np.float64) - x)
    bound = rms_and_max_bounds(fmt, x.astype(np.float64))
    assert np.all(err <= bound), f"{fmt} {dist}: worst {np.max(err / bound):.3f} of the bound"
    # and on average far better than the bound: a real quantiser, not a clamp
    rel = np.sqrt(np.mean(err**2)) / np.sqrt(np.mean(x.astype(np.float64) ** 2))
    # ideal uniform quantisers of 4 and 6 bits over these blocks sit near 0.07
    # and 0.017 for normal data; heavy tails (t, 2 dof) cost most
    assert rel < {"q4_k": 0.11, "q6_k": 0.032}[fmt], (fmt, dist, rel)
    assert np.array_equal(encode(fmt, x), buf)  # deterministic


@pytest.mark.parametrize("fmt", list(FMT))
def test_reencode_stable(fmt):
    """Re-encoding decoded values keeps them (to the quantiser's own accuracy)."""
    rng = np.random.default_rng(11)
    x = (rng.standard_normal(32 * 256) * 0.02).astype(np.float32)
    y = decode(fmt, encode(fmt, x), x.size)
    z = decode(fmt, encode(fmt, y), x.size)
    e1 = np.sqrt(np.mean((y.astype(np.float64) - x) ** 2))
    e2 = np.sqrt(np.mean((z.astype(np.float64) - y) ** 2))
    assert e2 <= e1, (fmt, e1, e2)


@pytest.mark.parametrize("fmt", list(FMT))
def test_encode_degenerate(fmt):
    """Zeros stay zeros; constants and non-finite input do not crash and stay in place."""
    z = np.zeros(512, np.float32)
    assert np.array_equal(decode(fmt, encode(fmt, z), 512), z)
    c = np.full(256, 0.75, np.float32)
    assert np.max(np.abs(decode(fmt, encode(fmt, c), 256) - c)) < 0.75 / 25
    bad = np.zeros(256, np.float32)
    bad[3], bad[100] = np.nan, np.inf
    out = decode(fmt, encode(fmt, bad), 256)
    assert_bits_nan(out, reference(fmt, encode(fmt, bad)), f"{fmt} non-finite input")
