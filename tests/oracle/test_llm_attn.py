"""pm_ref_attention (the host reference the device matches bit for bit,
tests/unit/test_llm_attn.c) against an independent oracle: causal
grouped-query attention in numpy float64 on the unrounded q, k, v, with the
cache rows written as ml_dtypes bfloat16.

Tolerance, per output row, from the roundings the engine makes (u = 2^-9,
bf16's unit roundoff; fp32 terms are 2^-24 per operation):
  * each score s_j = scale * q.k_j moves by at most
      D_j = scale * sum_d |q_d k_jd| * (2u + u^2 + hd 2^-23) + |s_j| 2^-23
            + |s_j - max| 2^-23 + 2^-22
    (q and the new k rounded to bf16; the fp32 dot product, scale, the
    subtraction of the running max, the LFU exp within 1 ulp);
  * shifting every score by at most D = max_j D_j changes each softmax
    weight by a factor within e^(+-2D);
  * p is rounded to bf16 (relative u) for both P V and the row sum l, so the
    normalised weights move by at most 2u(1 + u);
  * the new v rows are rounded to bf16 (u |v|);
  * fp32 sums over the L visible keys, the per-tile rescales and the LFU
    reciprocal: (L + 2 tiles + 4) 2^-23.
So |out - exact| <= max|v| * (e^(2D) - 1 + 2u(1+u) + u + (L + 2 tiles + 4) 2^-23),
max|v| over the keys the row sees; bf16 output adds u |exact| + that bound's u."""
import ctypes
import math

import ml_dtypes as mld
import numpy as np
import pytest

from pmlib import PmError, load

# A handle of its own: argtypes set here must not clash with another test
# module's (each defines its own ctypes structures).
lib = load()

F32, BF16 = 0, 1


def tile_keys(KV, hd, max_ctx):
    """The emitter's keys per tile (docs/llm-kernels.md)."""
    T = 128
    while T > 16 and KV * T * hd * 2 > 32768:
        T //= 2
    return min(T, max_ctx)


class AttnDesc(ctypes.Structure):
    """pm_attn_desc (include/polymorph/llm_kernels.h), field for field."""
    _fields_ = [("M", ctypes.c_uint32), ("n_heads", ctypes.c_uint32), ("n_kv_heads", ctypes.c_uint32),
                ("head_dim", ctypes.c_uint32), ("max_ctx", ctypes.c_uint32), ("qkv_sram", ctypes.c_uint64),
                ("qkv_row_elems", ctypes.c_uint32), ("kcache_dram", ctypes.c_uint64),
                ("vcache_dram", ctypes.c_uint64), ("pos_sram", ctypes.c_uint64), ("out_sram", ctypes.c_uint64),
                ("out_fmt", ctypes.c_int), ("scale", ctypes.c_float), ("scratch_sram", ctypes.c_uint64),
                ("scratch_bytes", ctypes.c_uint64)]


lib.pm_ref_attention.argtypes = [ctypes.POINTER(AttnDesc), ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                                 ctypes.c_uint32, ctypes.c_void_p, ctypes.POINTER(PmError)]
lib.pm_ref_attention.restype = ctypes.c_int


def ref_attention(desc, qkv, kc, vc, pos0):
    out_dtype = np.float32 if desc.out_fmt == F32 else np.uint16
    out = np.zeros((desc.M, desc.n_heads * desc.head_dim), dtype=out_dtype)
    err = PmError()
    st = lib.pm_ref_attention(ctypes.byref(desc), qkv.ctypes.data, kc.ctypes.data, vc.ctypes.data, pos0,
                              out.ctypes.data, ctypes.byref(err))
    assert st == 0, err.message.decode()
    if desc.out_fmt == BF16:
        out = out.view(mld.bfloat16).astype(np.float64)
    return out.astype(np.float64)


def bf16(x):
    return np.asarray(x, dtype=np.float32).astype(mld.bfloat16)


CASES = [
    # H, KV, hd, M, pos0, out_fmt, q amplitude
    (9, 3, 64, 1, 0, F32, 2.0),
    (9, 3, 64, 1, 5, F32, 2.0),
    (9, 3, 64, 1, 200, BF16, 2.0),
    (9, 3, 64, 17, 0, F32, 2.0),
    (9, 3, 64, 17, 130, F32, 6.0),
    (4, 4, 32, 64, 100, F32, 2.0),
    (8, 1, 64, 2, 127, BF16, 2.0),
    (32, 8, 128, 5, 140, F32, 2.0),
    (6, 2, 32, 150, 0, F32, 4.0),
]


@pytest.mark.parametrize("H,KV,hd,M,pos0,fmt,qamp", CASES)
def test_reference_against_float64(H, KV, hd, M, pos0, fmt, qamp):
    rng = np.random.default_rng(H * 1000 + M * 10 + pos0)
    max_ctx = 300
    G = H // KV
    row = (H + 2 * KV) * hd + 3
    qkv = np.zeros((M, row), dtype=np.float32)
    qkv[:, :H * hd] = rng.uniform(-qamp, qamp, (M, H * hd))
    qkv[:, H * hd:(H + KV) * hd] = rng.uniform(-2, 2, (M, KV * hd))
    qkv[:, (H + KV) * hd:(H + 2 * KV) * hd] = rng.uniform(-3, 3, (M, KV * hd))
    kc = bf16(rng.uniform(-2, 2, (KV, max_ctx, hd))).view(np.uint16).copy()
    vc = bf16(rng.uniform(-3, 3, (KV, hd, max_ctx))).view(np.uint16).copy()
    k_old = kc.view(mld.bfloat16).astype(np.float64)
    v_old = vc.view(mld.bfloat16).astype(np.float64)
    desc = AttnDesc(M=M, n_heads=H, n_kv_heads=KV, head_dim=hd, max_ctx=max_ctx, qkv_row_elems=row,
                    out_fmt=fmt, scale=np.float32(1 / math.sqrt(hd)))
    got = ref_attention(desc, qkv, kc, vc, pos0)

    # the caches: the new rows as ml_dtypes rounds them, everything else untouched
    k_new = qkv[:, H * hd:(H + KV) * hd].reshape(M, KV, hd)
    v_new = qkv[:, (H + KV) * hd:(H + 2 * KV) * hd].reshape(M, KV, hd)
    k_want = k_old.copy()
    v_want = v_old.copy()
    k_want[:, pos0:pos0 + M, :] = bf16(k_new.transpose(1, 0, 2)).astype(np.float64)
    v_want[:, :, pos0:pos0 + M] = bf16(v_new.transpose(1, 2, 0)).astype(np.float64)
    assert np.array_equal(kc.view(mld.bfloat16).astype(np.float64), k_want)
    assert np.array_equal(vc.view(mld.bfloat16).astype(np.float64), v_want)

    # float64 oracle on unrounded q, k, v (old cache rows are what they are)
    K = k_old.copy()
    V = v_old.copy()
    K[:, pos0:pos0 + M, :] = k_new.transpose(1, 0, 2)
    V[:, :, pos0:pos0 + M] = v_new.transpose(1, 2, 0)
    scale = float(desc.scale)
    u = 2.0 ** -9
    worst = 0.0
    for i in range(M):
        L = pos0 + i + 1
        tiles = math.ceil(L / tile_keys(KV, hd, max_ctx)) + 1
        for h in range(H):
            kv = h // G
            q = qkv[i, h * hd:(h + 1) * hd].astype(np.float64)
            k = K[kv, :L, :]
            v = V[kv, :, :L]
            s = scale * (k @ q)
            w = np.exp(s - s.max())
            w /= w.sum()
            want = v @ w
            dots = scale * (np.abs(k) @ np.abs(q))
            D = dots * (2 * u + u * u + hd * 2.0 ** -23) + np.abs(s) * 2.0 ** -23 \
                + np.abs(s - s.max()) * 2.0 ** -23 + 2.0 ** -22
            vmax = np.abs(v).max()
            tol = vmax * (math.expm1(2 * D.max()) + 2 * u * (1 + u) + u + (L + 2 * tiles + 4) * 2.0 ** -23)
            if fmt == BF16:
                tol += u * (np.abs(want) + tol)
            diff = np.abs(got[i, h * hd:(h + 1) * hd] - want)
            assert np.all(diff <= tol), (i, h, diff.max(), np.max(tol))
            worst = max(worst, float((diff / np.maximum(tol, 1e-30)).max()))
    assert worst <= 1.0


def test_reference_refuses_a_chunk_past_the_cache():
    desc = AttnDesc(M=2, n_heads=2, n_kv_heads=1, head_dim=8, max_ctx=4, qkv_row_elems=32, out_fmt=F32,
                    scale=np.float32(0.5))
    qkv = np.zeros((2, 32), dtype=np.float32)
    kc = np.zeros(32, dtype=np.uint16)
    vc = np.zeros(32, dtype=np.uint16)
    out = np.zeros(32, dtype=np.float32)
    err = PmError()
    st = lib.pm_ref_attention(ctypes.byref(desc), qkv.ctypes.data, kc.ctypes.data, vc.ctypes.data, 3,
                              out.ctypes.data, ctypes.byref(err))
    assert st != 0 and b"max_ctx" in err.message
