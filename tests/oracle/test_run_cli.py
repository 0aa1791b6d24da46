"""Tests of `polymorph run`'s behaviour as a command: help, option errors, the
missing-model message, malformed model files (errors name the byte offset,
the key or the tensor and its expected shape; small GGUFs are written here
with the independent `gguf` package), and, with the real model, the --json
object's fields and their consistency with their definitions (docs/models.md).
Model quality is test_llm.py's business."""
import json
import os
import pathlib
import struct
import subprocess

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD = ROOT / os.environ.get("POLYMORPH_BUILD", "build")
POLYMORPH = BUILD / "polymorph"
MODEL_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def run(args, env=None, timeout=120):
    e = dict(os.environ)
    if env:
        e.update(env)
    return subprocess.run([str(POLYMORPH), "run", *args], capture_output=True, text=True, timeout=timeout, env=e)


def one_line_error(r):
    """Exit 1 and one "polymorph run: ..." line on stderr; nothing on stdout."""
    assert r.returncode == 1, (r.returncode, r.stdout[-500:], r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("polymorph run: "), r.stderr
    return lines[0]


def default_model():
    for base in (os.environ.get("POLYMORPH_CACHE"),
                 os.path.join(os.environ.get("XDG_CACHE_HOME", ""), "polymorph") if os.environ.get("XDG_CACHE_HOME") else None,
                 os.path.expanduser("~/.cache/polymorph")):
        if base and os.path.isfile(os.path.join(base, MODEL_NAME)):
            return os.path.join(base, MODEL_NAME)
    return os.environ.get("POLYMORPH_MODEL") if os.path.isfile(os.environ.get("POLYMORPH_MODEL", "")) else None


# ---- help and options ----

def test_help():
    r = run(["--help"])
    assert r.returncode == 0 and r.stderr == ""
    for opt in ("--model", "--prompt", "--chat", "-n", "--preset", "--config", "--wfmt", "--seed", "--temperature",
                "--top-k", "--top-p", "--threads", "--max-ctx", "--trace", "--json", "--teacher-force", "--logits"):
        assert opt in r.stdout, opt
    h = subprocess.run([str(POLYMORPH), "help", "run"], capture_output=True, text=True, timeout=30)
    assert h.returncode == 0 and h.stdout == r.stdout
    top = subprocess.run([str(POLYMORPH), "--help"], capture_output=True, text=True, timeout=30)
    assert any(line.split()[:1] == ["run"] for line in top.stdout.splitlines())


@pytest.mark.parametrize("args, words", [
    (["--bogus"], ["unknown option", "--bogus"]),
    (["--top-k", "0"], ["--top-k", "1..64"]),
    (["--top-k", "65"], ["--top-k", "1..64"]),
    (["--top-p", "1.5"], ["--top-p"]),
    (["--temperature", "warm"], ["--temperature", "warm"]),
    (["-n", "-3"], ["--tokens", "-3"]),
    (["--threads", "0"], ["--threads"]),
    (["--max-ctx", "x"], ["--max-ctx"]),
    (["--wfmt", "q9_9"], ["--wfmt", "q9_9"]),
    (["--preset", "edge", "--config", "x.cfg"], ["--preset", "--config"]),
    (["--preset", "nosuch"], ["nosuch"]),
    (["stray"], ["stray"]),
    (["--teacher-force", "--chat", "--prompt", "x"], ["--teacher-force", "--chat"]),
    (["--teacher-force"], ["--teacher-force", "--prompt"]),
    (["--json", "--json"], ["--json", "more than once"]),
])
def test_bad_options(args, words):
    line = one_line_error(run(args + ["--model", "/nonexistent/never.gguf"]))
    for w in words:
        assert w in line, (w, line)


def test_missing_default_model(tmp_path):
    """No model in the cache: one line saying how to fetch it or point --model
    at a file, naming the path looked at."""
    r = run([], env={"POLYMORPH_CACHE": str(tmp_path / "empty")})
    line = one_line_error(r)
    assert str(tmp_path / "empty" / MODEL_NAME) in line
    assert "make model" in line and "--model" in line
    # XDG_CACHE_HOME is the next place looked at.
    env = {"XDG_CACHE_HOME": str(tmp_path / "xdg"), "POLYMORPH_CACHE": ""}
    line = one_line_error(run([], env=env))
    assert str(tmp_path / "xdg" / "polymorph" / MODEL_NAME) in line


def test_missing_model_file(tmp_path):
    line = one_line_error(run(["--model", str(tmp_path / "no.gguf")]))
    assert "no.gguf" in line


# ---- malformed files ----

def test_bad_magic(tmp_path):
    p = tmp_path / "bad.gguf"
    p.write_bytes(b"GGML" + bytes(60))
    line = one_line_error(run(["--model", str(p)]))
    assert "bad.gguf" in line and "byte 0" in line


def test_absurd_counts(tmp_path):
    """A header promising more tensors than the file could hold: the error names the byte offset."""
    p = tmp_path / "counts.gguf"
    p.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 1 << 60, 0) + bytes(64))
    line = one_line_error(run(["--model", str(p)]))
    assert "byte " in line


def test_truncated_model(tmp_path):
    model = default_model()
    if model is None:
        pytest.skip("the default model is not fetched (make model)")
    p = tmp_path / "cut.gguf"
    with open(model, "rb") as f:
        p.write_bytes(f.read(4 << 20))
    line = one_line_error(run(["--model", str(p)]))
    assert "byte " in line and "tensor" in line, line


def tiny_llama(path, arch="llama", d=64, heads=2, kv=1, layers=1, ff=96, vocab=32, skip_key=None, shapes=None,
               extra=None):
    """A small Llama GGUF written by the gguf package (f32 weights, no tokenizer)."""
    w = gguf.GGUFWriter(str(path), arch)
    keys = {"block_count": layers, "embedding_length": d, "feed_forward_length": ff, "attention.head_count": heads,
            "attention.head_count_kv": kv, "context_length": 128}
    for k, v in keys.items():
        if k != skip_key:
            w.add_uint32(f"{arch}.{k}", v)
    if skip_key != "attention.layer_norm_rms_epsilon":
        w.add_float32(f"{arch}.attention.layer_norm_rms_epsilon", 1e-5)
    for k, v in (extra or {}).items():
        w.add_uint32(f"{arch}.{k}", v)
    hd = d // heads
    rng = np.random.default_rng(1)
    want = {"token_embd.weight": (vocab, d), "output_norm.weight": (d,)}
    for l in range(layers):
        want.update({f"blk.{l}.attn_norm.weight": (d,), f"blk.{l}.attn_q.weight": (heads * hd, d),
                     f"blk.{l}.attn_k.weight": (kv * hd, d), f"blk.{l}.attn_v.weight": (kv * hd, d),
                     f"blk.{l}.attn_output.weight": (d, heads * hd), f"blk.{l}.ffn_norm.weight": (d,),
                     f"blk.{l}.ffn_gate.weight": (ff, d), f"blk.{l}.ffn_up.weight": (ff, d),
                     f"blk.{l}.ffn_down.weight": (d, ff)})
    want.update(shapes or {})
    for name, shape in want.items():
        w.add_tensor(name, rng.standard_normal(shape).astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_unsupported_architecture(tmp_path):
    line = one_line_error(run(["--model", str(tiny_llama(tmp_path / "g.gguf", arch="gpt2"))]))
    assert "general.architecture" in line and "gpt2" in line and "llama" in line


def test_missing_key(tmp_path):
    line = one_line_error(run(["--model", str(tiny_llama(tmp_path / "k.gguf", skip_key="block_count"))]))
    assert "llama.block_count" in line


def test_partial_rope_refused(tmp_path):
    p = tiny_llama(tmp_path / "r.gguf", extra={"rope.dimension_count": 16})
    line = one_line_error(run(["--model", str(p)]))
    assert "llama.rope.dimension_count" in line


def test_wrong_tensor_shape(tmp_path):
    """blk.0.attn_k must be [d_model, n_kv * head_dim] = [64, 32] (ggml order)."""
    p = tiny_llama(tmp_path / "s.gguf", shapes={"blk.0.attn_k.weight": (48, 64)})
    line = one_line_error(run(["--model", str(p)]))
    assert "blk.0.attn_k.weight" in line and "[64, 48]" in line and "[64, 32]" in line, line


def test_missing_tensor(tmp_path):
    p = tiny_llama(tmp_path / "m.gguf", layers=2)
    # Rewrite without blk.1.ffn_down: the gguf package cannot delete, so write anew.
    w = gguf.GGUFWriter(str(tmp_path / "m2.gguf"), "llama")
    r = gguf.GGUFReader(str(p))
    for f in r.fields.values():
        if f.name.startswith("llama.") and f.types == [gguf.GGUFValueType.UINT32]:
            w.add_uint32(f.name, int(f.parts[-1][0]))
        elif f.name.startswith("llama.") and f.types == [gguf.GGUFValueType.FLOAT32]:
            w.add_float32(f.name, float(f.parts[-1][0]))
    for t in r.tensors:
        if t.name != "blk.1.ffn_down.weight":
            w.add_tensor(t.name, np.array(t.data).reshape(list(reversed([int(x) for x in t.shape]))))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    line = one_line_error(run(["--model", str(tmp_path / "m2.gguf")]))
    assert "blk.1.ffn_down.weight" in line and "missing" in line


# ---- the real model: --json ----

JSON_FIELDS = {
    "text": str, "prompt_tokens": int, "generated_tokens": int, "prompt_ids": list, "generated_ids": list,
    "stop": str, "ttft_s": float, "decode_tok_s": float, "roofline_tok_s": float, "roofline_fraction": float,
    "wall_tok_s": float, "prefill_wall_tok_s": float, "energy_j_per_token": float,
    "dram_bytes_per_token": (int, float), "utilization": dict, "model": dict, "preset": str, "wfmt": str,
    "decode_s": float, "decode_tokens": int, "prefill_s": float,
}


@pytest.fixture(scope="module")
def json_run():
    model = default_model()
    if model is None:
        pytest.skip("the default model is not fetched (make model)")
    r = run(["--model", model, "--json", "-n", "4", "--prompt", "The capital of France is", "--threads", "2"],
            timeout=900)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_json_fields(json_run):
    j = json_run
    for k, t in JSON_FIELDS.items():
        assert k in j, k
        assert isinstance(j[k], t), (k, j[k])
    assert j["prompt_tokens"] == len(j["prompt_ids"]) and j["generated_tokens"] == len(j["generated_ids"])
    assert 1 <= j["generated_tokens"] <= 4
    assert j["preset"] == "edge" and j["wfmt"] == "native"
    assert set(j["utilization"]) == {"ctrl", "dma.ld", "dma.st", "vec", "lfu", "tensor"}
    assert all(0 <= v <= 1 for v in j["utilization"].values())
    m = j["model"]
    assert (m["arch"], m["n_layers"], m["d_model"], m["d_ff"], m["n_heads"], m["n_kv_heads"], m["head_dim"],
            m["vocab"]) == ("llama", 30, 576, 1536, 9, 3, 64, 49152)
    assert m["tied_output"] is True


def test_json_figures_consistent(json_run):
    """Each figure from its definition: decode tokens are the generated ones
    after the first (that one comes from the prefill); rates are counts over
    times; the roofline fraction is roofline time over decode time."""
    j = json_run
    n_dec = j["decode_tokens"]
    assert n_dec == j["generated_tokens"] - (1 if j["stop"] == "length" else 0)
    if n_dec:
        assert j["decode_tok_s"] == pytest.approx(n_dec / j["decode_s"], rel=1e-9)
        assert j["roofline_fraction"] == pytest.approx(j["decode_tok_s"] / j["roofline_tok_s"], rel=1e-9)
        assert 0 < j["roofline_fraction"] <= 1.0
        # Q4_1 weights (20 bytes per 32) plus the Q8_0 head: at least the weights move every token.
        assert j["dram_bytes_per_token"] >= j["model"]["weight_bytes"] * 0.95
        # edge: 1 GHz; decode cycles / clock = decode seconds.
        assert j["decode_cycles"] / 1e9 == pytest.approx(j["decode_s"], rel=1e-9)
    assert j["ttft_s"] == pytest.approx(j["prefill_s"], rel=1e-12)
    assert j["prefill_cycles"] / 1e9 == pytest.approx(j["prefill_s"], rel=1e-9)


# ---- a small random Llama with mixed matrix formats, end to end ----

def copy_tokenizer(w, model):
    """SmolLM2's tokenizer.* keys into writer w (the runner needs a tokenizer)."""
    r = gguf.GGUFReader(model)
    for k, f in r.fields.items():
        if not k.startswith("tokenizer."):
            continue
        t = f.types[0]
        if t == gguf.GGUFValueType.STRING:
            w.add_string(k, f.contents())
        elif t == gguf.GGUFValueType.BOOL:
            w.add_bool(k, bool(f.contents()))
        elif t == gguf.GGUFValueType.UINT32:
            w.add_uint32(k, int(f.contents()))
        elif t == gguf.GGUFValueType.ARRAY:
            w.add_array(k, list(f.contents()))


def mixed_llama(path, model, d=64, heads=4, kv=2, layers=2, ff=96):
    """Random weights (std 0.05, norms near 1); attn_v and ffn_up in F16, the
    other matrices F32, so Q|K|V and gate|up cannot be fused: the runner's
    unfused path (direct writes at one row, staged copies for prefill rows)."""
    vocab = 49152
    w = gguf.GGUFWriter(str(path), "llama")
    for k, v in {"block_count": layers, "embedding_length": d, "feed_forward_length": ff,
                 "attention.head_count": heads, "attention.head_count_kv": kv, "context_length": 256}.items():
        w.add_uint32(f"llama.{k}", v)
    w.add_float32("llama.attention.layer_norm_rms_epsilon", 1e-5)
    w.add_float32("llama.rope.freq_base", 10000.0)
    copy_tokenizer(w, model)
    rng = np.random.default_rng(5)
    hd = d // heads

    def mat(n, k, dt=np.float32):
        return (rng.standard_normal((n, k)) * 0.05).astype(dt)

    w.add_tensor("token_embd.weight", (rng.standard_normal((vocab, d)) * 0.5).astype(np.float32))
    w.add_tensor("output_norm.weight", (1 + 0.1 * rng.standard_normal(d)).astype(np.float32))
    w.add_tensor("output.weight", mat(vocab, d))
    for l in range(layers):
        w.add_tensor(f"blk.{l}.attn_norm.weight", (1 + 0.1 * rng.standard_normal(d)).astype(np.float32))
        w.add_tensor(f"blk.{l}.attn_q.weight", mat(heads * hd, d))
        w.add_tensor(f"blk.{l}.attn_k.weight", mat(kv * hd, d))
        w.add_tensor(f"blk.{l}.attn_v.weight", mat(kv * hd, d, np.float16))
        w.add_tensor(f"blk.{l}.attn_output.weight", mat(d, heads * hd))
        w.add_tensor(f"blk.{l}.ffn_norm.weight", (1 + 0.1 * rng.standard_normal(d)).astype(np.float32))
        w.add_tensor(f"blk.{l}.ffn_gate.weight", mat(ff, d))
        w.add_tensor(f"blk.{l}.ffn_up.weight", mat(ff, d, np.float16))
        w.add_tensor(f"blk.{l}.ffn_down.weight", mat(d, ff))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture(scope="module")
def mixed_model(tmp_path_factory):
    model = default_model()
    if model is None:
        pytest.skip("the default model is not fetched (make model); its tokenizer is borrowed")
    return str(mixed_llama(tmp_path_factory.mktemp("mixed") / "mixed.gguf", model))


TEXT = "The quick brown fox jumps over the lazy dog, 12 times."


def reference_logits(path, ids):
    import llama_ref  # the independent numpy forward pass (tests/oracle/llama_ref.py)
    ref = llama_ref.LlamaRef(path, bf16_operands=True)
    return ref.forward(list(ids)).astype(np.float64)


def test_mixed_formats_teacher_forced(mixed_model, tmp_path):
    """Decode (one row, unfused projections written in place) against the
    numpy reference with bf16 operands: same argmax at every position and
    logits within 2% of their spread (bf16 rounding of activations between
    kernels and the LFU functions are the only differences)."""
    npy = tmp_path / "l.npy"
    r = run(["--model", mixed_model, "--teacher-force", "--prompt", TEXT, "--json", "--logits", str(npy),
             "--threads", "2"], timeout=600)
    assert r.returncode == 0, r.stderr
    j = json.loads(r.stdout)
    ids = j["prompt_ids"]
    got = np.load(npy).astype(np.float64)
    ref = reference_logits(mixed_model, ids)
    assert got.shape == ref.shape == (len(ids), 49152)
    spread = ref.std(axis=1, keepdims=True)
    err = np.abs(got - ref) / spread
    assert err.max() < 0.02, err.max()
    check_choices(ref, j["predicted_ids"])


def check_choices(ref, chosen):
    """Each chosen id is the reference's argmax, or a near-tie: with every
    logit within 0.02 spread of the reference, a different choice is only
    possible when the reference's top two are within 0.04 spread; and most
    positions agree."""
    spread = ref.std(axis=1)
    agree = 0
    for i, c in enumerate(chosen):
        best = int(ref[i].argmax())
        agree += c == best
        assert ref[i, best] - ref[i, c] <= 0.04 * spread[i], (i, best, c)
    assert agree >= 0.9 * len(chosen), (agree, len(chosen))


def test_mixed_formats_prefill(mixed_model, tmp_path):
    """Prefill of the whole prompt in one padded chunk (unfused projections
    staged and copied row by row), then decode: the first step's logits are
    the prefill's last row; all within the same bound of the reference."""
    npy = tmp_path / "l.npy"
    r = run(["--model", mixed_model, "--prompt", TEXT, "-n", "3", "--json", "--logits", str(npy),
             "--threads", "2"], timeout=600)
    assert r.returncode == 0, r.stderr
    j = json.loads(r.stdout)
    ids = j["prompt_ids"] + j["generated_ids"]
    got = np.load(npy).astype(np.float64)
    ref = reference_logits(mixed_model, ids)[len(j["prompt_ids"]) - 1:][:got.shape[0]]
    assert got.shape[0] >= 1
    err = np.abs(got - ref) / ref.std(axis=1, keepdims=True)
    assert err.max() < 0.02, err.max()
    check_choices(ref[:len(j["generated_ids"])], j["generated_ids"])


def test_sampling_seeded(mixed_model):
    """Temperature sampling is reproducible for a seed and changes with it;
    the options are echoed as given."""
    def gen(seed):
        r = run(["--model", mixed_model, "--prompt", TEXT, "-n", "8", "--temperature", "1.5", "--top-k", "64",
                 "--top-p", "0.95", "--seed", str(seed), "--json", "--threads", "2"], timeout=600)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)
    a, b, c = gen(7), gen(7), gen(8)
    assert a["generated_ids"] == b["generated_ids"] and len(a["generated_ids"]) == 8
    assert a["generated_ids"] != c["generated_ids"]
    assert (a["temperature"], a["top_k"], a["top_p"], a["seed"]) == (1.5, 64, 0.95, 7)


def test_trace(mixed_model, tmp_path):
    """--trace: Chrome traces of the first decode step, one file per program."""
    f = tmp_path / "t.json"
    r = run(["--model", mixed_model, "--prompt", TEXT, "-n", "3", "--trace", str(f), "--json", "--threads", "2"],
            timeout=600)
    assert r.returncode == 0, r.stderr
    files = [f] + sorted(tmp_path.glob("t.json.*"))
    assert len(files) >= 3  # the layers, the head, the top-k
    for p in files:
        t = json.loads(p.read_text())
        events = t["traceEvents"] if isinstance(t, dict) else t
        assert len(events) > 0


def test_context_limits(mixed_model):
    """A prompt longer than --max-ctx is refused before anything runs; a full
    context stops generation (the prompt's 15 tokens + 2 decoded = 17)."""
    r = run(["--model", mixed_model, "--prompt", TEXT, "--max-ctx", "8"])
    line = one_line_error(r)
    assert "--max-ctx" in line and "8" in line
    assert r.stdout == ""
    r = run(["--model", mixed_model, "--prompt", TEXT, "--max-ctx", "17", "-n", "10", "--json", "--threads", "2"],
            timeout=600)
    assert r.returncode == 0, r.stderr
    j = json.loads(r.stdout)
    assert j["prompt_tokens"] == 15 and j["stop"] == "context full"
    assert j["decode_tokens"] == 2 and j["generated_tokens"] == 3
