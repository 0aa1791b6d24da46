"""The GGUF reader (through tools/gguf_dump) against gguf-py.

Random files are written with gguf.GGUFWriter (every metadata type, arrays of
strings, numbers and arrays, every tensor type the reader supports, random
shapes, custom alignments) and the dump's JSON and dequantised .npy are
compared with gguf.GGUFReader and gguf.quants.dequantize, bit for bit. The
real SmolLM2 file is checked the same way when it is present."""
import json
import os
import pathlib
import struct
import subprocess

import gguf
import numpy as np
import pytest

from pmlib import BUILD

TOOL = BUILD / "tools" / "gguf_dump"
MODEL = pathlib.Path(os.environ.get("POLYMORPH_MODEL",
                                    pathlib.Path.home() / ".cache/polymorph/SmolLM2-135M-Instruct.Q4_1.gguf"))
VT = gguf.GGUFValueType
QT = gguf.GGMLQuantizationType
NUMERIC = {VT.UINT8: np.uint8, VT.INT8: np.int8, VT.UINT16: np.uint16, VT.INT16: np.int16,
           VT.UINT32: np.uint32, VT.INT32: np.int32, VT.UINT64: np.uint64, VT.INT64: np.int64,
           VT.FLOAT32: np.float32, VT.FLOAT64: np.float64}

pytestmark = pytest.mark.skipif(not TOOL.exists(), reason=f"{TOOL} not built")


def dump(path, *args):
    r = subprocess.run([str(TOOL), str(path), *args], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def dump_tensor(path, name, out):
    r = subprocess.run([str(TOOL), str(path), "--tensor", name, "--npy", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return np.load(out)


def from_json(v):
    """Undo the dump's spelling of non-finite floats."""
    return {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf")}.get(v, v) if isinstance(v, str) else v


def same_scalar(got, want, vtype):
    if vtype in (VT.FLOAT32, VT.FLOAT64):
        dt = NUMERIC[vtype]
        g, w = np.array(from_json(got), dt), np.array(want, dt)
        return (np.isnan(g) and np.isnan(w)) or g.tobytes() == w.tobytes()
    if vtype == VT.BOOL:
        return got is bool(want)
    return got == want


# --------------------------------------------------------------------------
# Random files
# --------------------------------------------------------------------------

def random_value(rng, vtype):
    if vtype in NUMERIC:
        dt = NUMERIC[vtype]
        if np.issubdtype(dt, np.integer):
            info = np.iinfo(dt)
            return int(rng.integers(info.min, info.max, dtype=dt, endpoint=True))
        special = [0.0, -0.0, float("inf"), float("-inf"), float("nan"), 1e-40, 3.4e38]
        if rng.random() < 0.2:
            return float(dt(special[rng.integers(len(special))]))
        return float(dt(rng.standard_normal() * 10.0 ** rng.integers(-20, 20)))
    if vtype == VT.BOOL:
        return bool(rng.integers(2))
    if vtype == VT.STRING:
        alphabet = "abcxyz019 _.-\"\\\n\té€😀<|>"
        return "".join(alphabet[i] for i in rng.integers(0, len(alphabet), rng.integers(0, 20)))
    raise AssertionError(vtype)


def random_blocks(rng, qtype, shape):
    """Raw valid blocks of a K-quant with finite f16 super-scales."""
    block, width = gguf.GGML_QUANT_SIZES[qtype]
    rows = int(np.prod(shape[:-1]))
    n = rows * shape[-1] // block
    b = rng.integers(0, 256, (n, width), dtype=np.uint64).astype(np.uint8)
    d = (rng.standard_normal((n, 2)) * 0.01).astype(np.float16).view(np.uint8).reshape(n, 4)
    if qtype == QT.Q4_K:
        b[:, 0:4] = d
    else:
        b[:, width - 2:] = d[:, 0:2]
    return b.reshape(*shape[:-1], shape[-1] // block * width)


TENSOR_TYPES = [QT.F32, QT.F16, QT.BF16, QT.Q4_0, QT.Q4_1, QT.Q8_0, QT.Q4_K, QT.Q6_K]


def write_random(path, seed, alignment=None):
    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(str(path), "llama")
    if alignment:
        w.add_custom_alignment(alignment)
    expect = {}
    for i, vtype in enumerate(list(NUMERIC) + [VT.BOOL, VT.STRING]):
        key = f"test.scalar.{vtype.name.lower()}.{i}"
        val = random_value(rng, vtype)
        w.add_key_value(key, val, vtype)
        expect[key] = (vtype, val)
    for vtype in list(NUMERIC) + [VT.BOOL, VT.STRING]:
        key = f"test.array.{vtype.name.lower()}"
        vals = [random_value(rng, vtype) for _ in range(int(rng.integers(1, 90)))]
        w.add_key_value(key, vals, VT.ARRAY, sub_type=vtype)
        expect[key] = (VT.ARRAY, vals)
    nested = [[int(v) for v in rng.integers(-5, 5, rng.integers(1, 4))] for _ in range(3)]
    w.add_key_value("test.array.nested", nested, VT.ARRAY, sub_type=VT.ARRAY)
    expect["test.array.nested"] = (VT.ARRAY, nested)
    for i, qtype in enumerate(TENSOR_TYPES * 2):
        block = gguf.GGML_QUANT_SIZES[qtype][0]
        ndim = int(rng.integers(1, 5))
        shape = [int(rng.integers(1, 4)) for _ in range(ndim - 1)] + [block * int(rng.integers(1, 5))]
        name = f"t{i}.{qtype.name.lower()}"
        x = (rng.standard_normal(shape) * 0.1).astype(np.float32)
        if qtype == QT.F32:
            w.add_tensor(name, x)
        elif qtype == QT.F16:
            w.add_tensor(name, x.astype(np.float16))
        elif qtype == QT.BF16:
            bits = rng.integers(0, 65536, shape, dtype=np.uint64).astype(np.uint16)
            w.add_tensor(name, bits.view(np.uint8).reshape(*shape[:-1], shape[-1] * 2), raw_dtype=qtype)
        elif qtype in (QT.Q4_K, QT.Q6_K):
            w.add_tensor(name, random_blocks(rng, qtype, shape), raw_dtype=qtype)
        else:
            w.add_tensor(name, gguf.quants.quantize(x, qtype), raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return expect


def check_against_reader(path, full=True, tensors_to_check=None, tmp=None):
    got = dump(path, "--full") if full else dump(path)
    reader = gguf.GGUFReader(str(path))
    assert got["version"] == 3
    fields = [f for name, f in reader.fields.items() if not name.startswith("GGUF.")]
    assert [k["key"] for k in got["kv"]] == [f.name for f in fields]
    for k, f in zip(got["kv"], fields):
        assert k["type"] == f.types[0].name, k["key"]
        assert k["offset"] == f.offset, k["key"]
        if f.types[0] == VT.ARRAY:
            sub = f.types[1]
            assert k["elem_type"] == sub.name, k["key"]
            if sub == VT.ARRAY:  # GGUFReader flattens nested arrays: checked against the writer's values
                continue
            assert k["n"] == len(f.data), k["key"]
            want = f.contents()
            assert len(k["values"]) == len(want), k["key"]
            assert all(same_scalar(g, v, sub) for g, v in zip(k["values"], want)), k["key"]
        else:
            assert same_scalar(k["value"], f.contents(), f.types[0]), k["key"]
    assert [t["name"] for t in got["tensors"]] == [t.name for t in reader.tensors]
    for t, r in zip(got["tensors"], reader.tensors):
        assert t["type"] == r.tensor_type.name and t["ggml_type"] == int(r.tensor_type)
        assert t["ne"] == [int(v) for v in r.shape], t["name"]
        assert t["offset"] == r.data_offset and t["bytes"] == r.n_bytes, t["name"]
    for r in reader.tensors:
        if tensors_to_check is not None and r.name not in tensors_to_check:
            continue
        y = dump_tensor(path, r.name, tmp / "t.npy")
        want = gguf.quants.dequantize(r.data, r.tensor_type).astype(np.float32, copy=False)
        assert y.dtype == np.float32 and y.shape == want.shape, (r.name, y.shape, want.shape)
        assert np.array_equal(np.isnan(y), np.isnan(want)), r.name
        assert np.array_equal(np.where(np.isnan(y), 0, y).view(np.uint32),
                              np.where(np.isnan(want), 0, want).view(np.uint32)), r.name
    return got


@pytest.mark.parametrize("seed,alignment", [(1, None), (2, 64), (3, 1), (4, 256), (5, None)])
def test_random_files_against_gguf_py(tmp_path, seed, alignment):
    path = tmp_path / "r.gguf"
    expect = write_random(path, seed, alignment)
    got = check_against_reader(path, tmp=tmp_path)
    # and against what was written (GGUFReader cannot read nested arrays back)
    kv = {k["key"]: k for k in got["kv"]}
    for key, (vtype, val) in expect.items():
        if vtype == VT.ARRAY and key.endswith("nested"):
            assert kv[key]["elem_type"] == "ARRAY"
            assert [e["values"] for e in kv[key]["values"]] == val
            assert all(e["type"] == "INT32" for e in kv[key]["values"])
        elif vtype == VT.ARRAY:
            sub = VT[kv[key]["elem_type"]]
            assert all(same_scalar(g, v, sub) for g, v in zip(kv[key]["values"], val)), key
        else:
            assert same_scalar(kv[key]["value"], val, vtype), key


def test_short_arrays_are_cut_without_full(tmp_path):
    path = tmp_path / "r.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_key_value("a", list(range(100)), VT.ARRAY, sub_type=VT.UINT16)
    w.add_key_value("s", [str(i) for i in range(65)], VT.ARRAY, sub_type=VT.STRING)
    w.add_key_value("z", 7, VT.UINT8)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    kv = {k["key"]: k for k in dump(path)["kv"]}
    assert kv["a"]["values"] == list(range(64)) and kv["a"]["truncated"] and kv["a"]["n"] == 100
    assert kv["s"]["values"] == [str(i) for i in range(64)] and kv["s"]["n"] == 65
    assert kv["z"]["value"] == 7


def corrupt_and_run(tmp_path, data):
    path = tmp_path / "bad.gguf"
    path.write_bytes(data)
    r = subprocess.run([str(TOOL), str(path)], capture_output=True, text=True)
    return r.returncode, r.stderr


def test_errors_exit_1_with_the_readers_message(tmp_path):
    path = tmp_path / "ok.gguf"
    write_random(path, 9)
    data = bytearray(path.read_bytes())
    rc, err = corrupt_and_run(tmp_path, b"GGUF" + struct.pack("<I", 2) + bytes(16))
    assert rc == 1 and "byte 4: version: GGUF version 2 is not supported" in err, err
    end = max(t["offset"] + t["bytes"] for t in dump(path)["tensors"])  # the writer pads past the last tensor
    rc, err = corrupt_and_run(tmp_path, bytes(data[:end - 1]))
    assert rc == 1 and "runs past the end of the file" in err, err
    rc, err = corrupt_and_run(tmp_path, b"GGUF" + struct.pack("<IQQ", 3, 1 << 60, 0))
    assert rc == 1 and "byte 8: tensor_count" in err, err
    rc, err = corrupt_and_run(tmp_path, b"")
    assert rc == 1 and "byte 0: magic" in err, err
    r = subprocess.run([str(TOOL), str(path), "--tensor", "nope", "--npy", str(tmp_path / "x.npy")],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "no tensor named 'nope'" in r.stderr and not (tmp_path / "x.npy").exists()


# --------------------------------------------------------------------------
# The real model
# --------------------------------------------------------------------------

@pytest.mark.skipif(not MODEL.exists(), reason=f"model file {MODEL} absent (sh tools/fetch_model.sh; or POLYMORPH_MODEL)")
def test_real_model_against_gguf_py(tmp_path):
    got = check_against_reader(MODEL, tmp=tmp_path,
                               tensors_to_check={"token_embd.weight", "blk.0.attn_q.weight", "output_norm.weight"})
    kv = {k["key"]: k for k in got["kv"]}
    assert kv["general.architecture"]["value"] == "llama"
    assert kv["tokenizer.ggml.tokens"]["n"] == 49152 and len(kv["tokenizer.ggml.tokens"]["values"]) == 49152
    types = {t["name"]: t["type"] for t in got["tensors"]}
    assert types["token_embd.weight"] == "Q8_0" and types["blk.0.ffn_down.weight"] == "Q4_1"
