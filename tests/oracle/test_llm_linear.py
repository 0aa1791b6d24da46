"""The LLM linear emitter (pm_emit_linear, src/kernels/llm_linear.c) run on a
simulated edge device through ctypes, compared bit for bit with an
independent numpy oracle: x in bf16 (ml_dtypes), the weights encoded by the
library but decoded by the gguf package (Q4_0, Q4_1, Q8_0, Q4_K, Q6_K) or by
ml_dtypes / numpy (bf16, f16, f32), never by the C code, rounded to bf16,
summed in float32 one k at a time from +0 (vectorised over m and n: with
values in a safe range every bf16 x bf16 product is exact in float32, so
acc + a*b rounds once, as the engine's fmaf does), then rounded to y_fmt by
ml_dtypes. Shapes: SmolLM2's decode and prefill linears and ragged ones;
pm_ref_linear is checked against the same oracle."""
import ctypes

import gguf
import ml_dtypes as mld
import numpy as np
import pytest

from pmlib import PmError, load

# A handle of its own: argtypes set here must not clash with another test
# module's (each defines its own ctypes structures).
lib = load()

FMT = {"f32": 0, "bf16": 1, "f16": 2, "q4_0": 14, "q4_1": 15, "q8_0": 16, "q4_k": 17, "q6_k": 18}
GGUF = {"q4_0": gguf.GGMLQuantizationType.Q4_0, "q4_1": gguf.GGMLQuantizationType.Q4_1,
        "q8_0": gguf.GGMLQuantizationType.Q8_0, "q4_k": gguf.GGMLQuantizationType.Q4_K,
        "q6_k": gguf.GGMLQuantizationType.Q6_K}
BLOCK = {"q4_0": 32, "q4_1": 32, "q8_0": 32, "q4_k": 256, "q6_k": 256, "f32": 1, "bf16": 1, "f16": 1}
F32, BF16 = 0, 1
ERR = ctypes.POINTER(PmError)
u32, u64 = ctypes.c_uint32, ctypes.c_uint64


class LinearDesc(ctypes.Structure):
    """pm_linear_desc (include/polymorph/llm_kernels.h), field for field."""
    _fields_ = [("M", u32), ("N", u32), ("K", u32), ("w_fmt", ctypes.c_int), ("w_dram", u64),
                ("x_sram", u64), ("y_sram", u64), ("y_fmt", ctypes.c_int), ("scratch_sram", u64),
                ("scratch_bytes", u64), ("prefetched", ctypes.c_bool)]


class Program(ctypes.Structure):
    """pm_program (include/polymorph/isa.h)."""
    _fields_ = [("code", ctypes.c_void_p), ("code_count", ctypes.c_size_t), ("entry", ctypes.c_uint32),
                ("sections", ctypes.c_void_p), ("section_count", ctypes.c_size_t),
                ("symbols", ctypes.c_void_p), ("symbol_count", ctypes.c_size_t)]


lib.pm_config_preset.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ERR]
lib.pm_format_encode.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, ERR]
lib.pm_format_bytes.argtypes = [ctypes.c_int, ctypes.c_size_t, ctypes.POINTER(ctypes.c_size_t)]
lib.pm_format_bytes.restype = ctypes.c_bool
lib.pm_builder_create.argtypes = [ctypes.POINTER(ctypes.c_void_p), ERR]
lib.pm_builder_destroy.argtypes = [ctypes.c_void_p]
lib.pm_builder_destroy.restype = None
lib.pm_builder_emit.argtypes = [ctypes.c_void_p, ctypes.c_int] + [ctypes.c_int64] * 6
lib.pm_builder_emit.restype = None
lib.pm_builder_finish.argtypes = [ctypes.c_void_p, ctypes.POINTER(Program), ERR]
lib.pm_emit_linear.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.POINTER(LinearDesc), ERR]
lib.pm_ref_linear.argtypes = [ctypes.POINTER(LinearDesc), ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ERR]
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
W_DRAM = 0x10000


def check(status, err):
    assert status == 0, err.message.decode()


def encode(fmt, w):
    """Encode with the library (the encoder is not under test here)."""
    size = ctypes.c_size_t()
    assert lib.pm_format_bytes(FMT[fmt], w.size, ctypes.byref(size))
    out = np.zeros(size.value, dtype=np.uint8)
    err = PmError()
    check(lib.pm_format_encode(FMT[fmt], w.ctypes.data, w.size, out.ctypes.data, ctypes.byref(err)), err)
    return out


def decode_independently(fmt, enc, n, k):
    """The weights as float32, decoded without the C code."""
    if fmt in GGUF:
        return gguf.quants.dequantize(enc.reshape(n, -1), GGUF[fmt]).astype(np.float32).reshape(n, k)
    if fmt == "bf16":
        return enc.view(mld.bfloat16).astype(np.float32).reshape(n, k)
    if fmt == "f16":
        return enc.view(np.float16).astype(np.float32).reshape(n, k)
    return enc.view(np.float32).reshape(n, k).copy()


def oracle(x_bf16, w32, y_fmt):
    """docs/tensor.md: B rounded to bf16, c = fmaf(a, b, c) in k order from +0."""
    a = x_bf16.astype(np.float32)
    b = w32.astype(mld.bfloat16).astype(np.float32)
    c = np.zeros((a.shape[0], b.shape[0]), dtype=np.float32)
    for k in range(a.shape[1]):
        c = c + np.outer(a[:, k], b[:, k])  # float32 products are exact here; one rounding per add
    return c if y_fmt == F32 else c.astype(mld.bfloat16)


def run_device(desc, x_bf16, enc):
    cfg = ctypes.create_string_buffer(8192)
    err = PmError()
    check(lib.pm_config_preset(b"edge", cfg, ctypes.byref(err)), err)
    dev = ctypes.c_void_p()
    check(lib.pm_device_open(cfg, ctypes.byref(dev), ctypes.byref(err)), err)
    b = ctypes.c_void_p()
    prog = Program()
    lib.pm_program_init(ctypes.byref(prog))
    try:
        check(lib.pm_device_write(dev, desc.w_dram, enc.ctypes.data, enc.size, ctypes.byref(err)), err)
        xs = np.ascontiguousarray(x_bf16).view(np.uint16)
        check(lib.pm_device_sram_write(dev, 0, desc.x_sram, xs.ctypes.data, xs.nbytes, ctypes.byref(err)), err)
        check(lib.pm_builder_create(ctypes.byref(b), ctypes.byref(err)), err)
        check(lib.pm_emit_linear(b, cfg, ctypes.byref(desc), ctypes.byref(err)), err)
        lib.pm_builder_emit(b, OP_HALT, 0, 0, 0, 0, 0, 0)
        check(lib.pm_builder_finish(b, ctypes.byref(prog), ctypes.byref(err)), err)
        check(lib.pm_device_load(dev, ctypes.byref(prog), 0, ctypes.byref(err)), err)
        check(lib.pm_device_run(dev, None, ctypes.byref(err)), err)
        esize = 4 if desc.y_fmt == F32 else 2
        y = np.zeros(desc.M * desc.N * esize, dtype=np.uint8)
        check(lib.pm_device_sram_read(dev, 0, desc.y_sram, y.ctypes.data, y.size, ctypes.byref(err)), err)
    finally:
        lib.pm_program_free(ctypes.byref(prog))
        lib.pm_builder_destroy(b)
        lib.pm_device_close(dev)
    return y


CASES = [
    # (M, N, K, w_fmt): SmolLM2 decode and prefill shapes (N cut for speed), ragged ones
    (1, 960, 576, "q4_1"), (1, 576, 1536, "q4_1"), (1, 1024, 576, "q8_0"), (16, 320, 576, "q4_1"),
    (64, 192, 576, "q8_0"), (33, 100, 256, "q4_k"), (1, 300, 512, "q6_k"), (7, 77, 96, "q4_0"),
    (3, 130, 64, "bf16"), (2, 45, 40, "f16"), (5, 33, 17, "f32"),
]


@pytest.mark.parametrize("m,n,k,fmt", CASES)
@pytest.mark.parametrize("y_fmt", [F32, BF16])
def test_linear_device_vs_numpy(m, n, k, fmt, y_fmt):
    assert k % BLOCK[fmt] == 0
    rng = np.random.default_rng(m * 1000003 + n * 1009 + k + y_fmt)
    x = rng.uniform(-2.0, 2.0, (m, k)).astype(mld.bfloat16)
    enc = encode(fmt, rng.uniform(-1.5, 1.5, n * k).astype(np.float32))
    want = oracle(x, decode_independently(fmt, enc, n, k), y_fmt)
    esize = 4 if y_fmt == F32 else 2
    y_sram = (m * k * 2 + 255) // 256 * 256
    scratch = (y_sram + m * n * esize + 255) // 256 * 256
    desc = LinearDesc(M=m, N=n, K=k, w_fmt=FMT[fmt], w_dram=W_DRAM, x_sram=0, y_sram=y_sram, y_fmt=y_fmt,
                      scratch_sram=scratch, scratch_bytes=0x40000, prefetched=False)
    got = run_device(desc, x, enc)
    assert got.tobytes() == np.ascontiguousarray(want).tobytes()

    ref = np.zeros(m * n * esize, dtype=np.uint8)
    err = PmError()
    xs = np.ascontiguousarray(x).view(np.uint16)
    check(lib.pm_ref_linear(ctypes.byref(desc), xs.ctypes.data, enc.ctypes.data, ref.ctypes.data,
                            ctypes.byref(err)), err)
    assert ref.tobytes() == got.tobytes()
