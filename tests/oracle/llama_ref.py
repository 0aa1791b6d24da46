"""Independent numpy reference of a Llama-family GGUF forward pass, written for
the LLM tests: the simulated engine's logits are compared with these. Nothing
here comes from Polymorph: the file is read by gguf.GGUFReader, weights are
dequantised by gguf.quants.dequantize, and the graph is llama.cpp's llama graph.

Precision: weights are dequantised to float32 (exactly as the gguf package and
llama.cpp decode them) and then held, with every activation, in float64 by
default, so the reference is the exact arithmetic of the dequantised model to
within float64 rounding; the engine's bf16 matmul operands are its only
intended difference. dtype=np.float32 gives a cheaper float32 pass.
bf16_operands=True emulates the engine's precision instead (float32, every
matmul operand -- weights, activations, attention's q, k, v and probabilities --
rounded to bf16): the tests measure with it how far bf16 alone moves the logits,
which is where their tolerances come from.

    python3 tests/oracle/llama_ref.py [model.gguf] [--prompt TEXT] [-n N]
greedy-generates from a ChatML prompt with the test-only ASCII tokenizer below.
"""
import argparse
import os
import re
import subprocess
import sys
import time

import gguf
import ml_dtypes
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SYSTEM_PROMPT = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


def model_path():
    """POLYMORPH_MODEL, else what tools/fetch_model.sh prints (it fetches once);
    None when neither gives a file (the fetch failed, e.g. offline)."""
    env = os.environ.get("POLYMORPH_MODEL")
    if env:
        return env if os.path.isfile(env) else None
    try:
        out = subprocess.run(["sh", os.path.join(ROOT, "tools", "fetch_model.sh")], capture_output=True,
                             text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired):
        return None
    path = out.stdout.strip().splitlines()[-1] if out.returncode == 0 and out.stdout.strip() else ""
    return path if path and os.path.isfile(path) else None


def _field(reader, key, default=None):
    f = reader.fields.get(key)
    return default if f is None else f.contents()


def if4_roundtrip(w):
    """w (float32 [rows][K]) encoded to IF4 and decoded, following the rules of
    docs/numerics.md ("NVFP4", "IF4"), re-derived here in numpy: g from the
    tensor's finite amax / 2688; per block of 16 an FP4 candidate (E4M3 scale
    amax/6/g, E2M1 elements) and an INT4 one (scale amax/7/g, q in [-7, 7]),
    the lower squared error (float64) wins, ties to FP4. Finite inputs only
    (model weights)."""
    f32 = np.float32
    x = np.ascontiguousarray(w, dtype=f32).reshape(-1, 16)
    g = f32(np.abs(x).max()) / f32(2688)
    if g == 0:
        g = f32(1)
    amax = np.abs(x).max(axis=1, keepdims=True)

    def e4m3_sat(v):
        return np.minimum(v, f32(448)).astype(ml_dtypes.float8_e4m3fn).astype(f32)

    def candidate(scale, elements):
        den = scale * g
        with np.errstate(divide="ignore", invalid="ignore"):
            q = np.where(den > 0, x / den, f32(0))
        return (elements(q) * scale) * g

    fp4 = candidate(e4m3_sat(amax / f32(6) / g),
                    lambda q: np.clip(q, -6, 6).astype(ml_dtypes.float4_e2m1fn).astype(f32))
    int4 = candidate(e4m3_sat(amax / f32(7) / g), lambda q: np.clip(np.rint(q), -7, 7).astype(f32))
    xd = x.astype(np.float64)
    e_fp = ((xd - fp4) ** 2).sum(axis=1)
    e_int = ((xd - int4) ** 2).sum(axis=1)
    return np.where((e_int < e_fp)[:, None], int4, fp4).reshape(w.shape)


# Polymorph uploads Q|K|V and gate|up of a layer as one matrix each (rows
# concatenated; docs/models.md), so a format with one scale per tensor (IF4,
# NVFP4) takes that scale over the fused matrix. Blocks lie within rows, so
# the rotate-half row permutation changes no block.
_FUSED = (("attn_q", "attn_k", "attn_v"), ("ffn_gate", "ffn_up"))


def _requant_as_uploaded(raw, requant, n_layers):
    out = {k: (requant(v) if v.ndim == 2 and not any(".%s." % f in k for g in _FUSED for f in g) else v)
           for k, v in raw.items()}
    for li in range(n_layers):
        for group in _FUSED:
            names = ["blk.%d.%s.weight" % (li, f) for f in group]
            rows = [raw[n].shape[0] for n in names]
            fused = requant(np.concatenate([raw[n] for n in names], axis=0))
            for n, part in zip(names, np.split(fused, np.cumsum(rows)[:-1], axis=0)):
                out[n] = part
    return out


class LlamaRef:
    """The model's weights (dequantised) and hyper-parameters from the GGUF metadata."""

    def __init__(self, path, dtype=np.float64, bf16_operands=False, weights=None, requant=None):
        """weights: the dict another LlamaRef of the same file decoded (its
        "raw" attribute), to build a second precision without re-reading.
        requant: a function applied to every matrix after decoding (e.g.
        if4_roundtrip), to model a device that re-encodes the weights."""
        if bf16_operands:
            dtype = np.float32
        self.dtype = dtype
        self.bf16 = bf16_operands
        r = gguf.GGUFReader(path)
        self.reader = r
        arch = _field(r, "general.architecture")
        p = arch + "."
        self.n_layers = int(_field(r, p + "block_count"))
        self.d_model = int(_field(r, p + "embedding_length"))
        self.d_ff = int(_field(r, p + "feed_forward_length"))
        self.n_heads = int(_field(r, p + "attention.head_count"))
        self.n_kv_heads = int(_field(r, p + "attention.head_count_kv", self.n_heads))
        self.head_dim = self.d_model // self.n_heads
        self.rope_dims = int(_field(r, p + "rope.dimension_count", self.head_dim))
        self.rope_base = float(_field(r, p + "rope.freq_base", 10000.0))
        self.eps = float(_field(r, p + "attention.layer_norm_rms_epsilon"))
        self.tokens = list(_field(r, "tokenizer.ggml.tokens"))
        self.eos = int(_field(r, "tokenizer.ggml.eos_token_id", -1))
        # dequantize returns [rows][row elements]: for a matrix, [out][in], as float32.
        self.raw = weights if weights is not None else {
            t.name: gguf.quants.dequantize(t.data, t.tensor_type) for t in r.tensors}
        embd_native = self.raw["token_embd.weight"]
        if requant is not None:  # the device re-encodes every matrix (--wfmt)
            self.raw = _requant_as_uploaded(self.raw, requant, self.n_layers)
        self.w = {}
        for name, w in self.raw.items():
            self.w[name] = self._op(w) if w.ndim == 2 else w.astype(dtype)
        # The gather reads embedding rows as decoded, not rounded. With a
        # format that has one scale per tensor (IF4, NVFP4: the only requant
        # here) a single row cannot be decoded alone, so the device gathers
        # from token_embd in its own GGUF format (docs/models.md) while the
        # tied output projection uses the re-encoded copy.
        self.embd = (embd_native if requant is not None else self.raw["token_embd.weight"]).astype(dtype)
        self.vocab = self.w["token_embd.weight"].shape[0]
        # Tied output: llama.cpp reuses token_embd when output.weight is absent.
        self.out_w = self.w.get("output.weight", self.w["token_embd.weight"])
        # rope mode NORM: adjacent pairs (2i, 2i+1) turn by pos * base^(-2i/dims).
        i = np.arange(self.rope_dims // 2, dtype=np.float64)
        self.inv_freq = self.rope_base ** (-2.0 * i / self.rope_dims)

    def _op(self, x):
        """A matmul operand: bf16-rounded when emulating the engine."""
        if self.bf16:
            return x.astype(ml_dtypes.bfloat16).astype(np.float32)
        return x.astype(self.dtype)

    def new_cache(self):
        return {"k": [None] * self.n_layers, "v": [None] * self.n_layers, "pos": 0}

    def _rms_norm(self, x, w):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps) * w

    def _rope(self, x, pos):
        """x [n][heads][head_dim]; pos [n]."""
        ang = pos[:, None].astype(np.float64) * self.inv_freq[None, :]
        cos = np.cos(ang).astype(self.dtype)[:, None, :]
        sin = np.sin(ang).astype(self.dtype)[:, None, :]
        out = x.copy()
        d = self.rope_dims
        x0 = x[..., 0:d:2]
        x1 = x[..., 1:d:2]
        out[..., 0:d:2] = x0 * cos - x1 * sin
        out[..., 1:d:2] = x0 * sin + x1 * cos
        return out

    def forward(self, tokens, cache=None, last_only=False):
        """Logits [n][vocab] of tokens placed after what cache holds (a new
        context when cache is None); cache is extended in place."""
        if cache is None:
            cache = self.new_cache()
        tokens = np.asarray(tokens, dtype=np.int64)
        n = len(tokens)
        start = cache["pos"]
        pos = np.arange(start, start + n)
        hd, nh, nkv = self.head_dim, self.n_heads, self.n_kv_heads
        group = nh // nkv
        x = self.embd[tokens]
        total = start + n
        # Causal mask over the whole context: query at pos p sees keys 0..p.
        mask = np.arange(total)[None, :] > pos[:, None]
        scale = 1.0 / np.sqrt(hd)
        for li in range(self.n_layers):
            b = "blk.%d." % li
            h = self._op(self._rms_norm(x, self.w[b + "attn_norm.weight"]))
            q = (h @ self.w[b + "attn_q.weight"].T).reshape(n, nh, hd)
            k = (h @ self.w[b + "attn_k.weight"].T).reshape(n, nkv, hd)
            v = (h @ self.w[b + "attn_v.weight"].T).reshape(n, nkv, hd)
            q = self._op(self._rope(q, pos))
            k = self._op(self._rope(k, pos))
            v = self._op(v)
            if cache["k"][li] is not None:
                k = np.concatenate([cache["k"][li], k], axis=0)
                v = np.concatenate([cache["v"][li], v], axis=0)
            cache["k"][li], cache["v"][li] = k, v
            att = np.empty((n, nh, hd), dtype=self.dtype)
            for hh in range(nh):
                kh = hh // group  # GQA: consecutive query heads share a KV head
                s = (q[:, hh, :] @ k[:, kh, :].T) * scale
                s = np.where(mask, -np.inf, s)
                s = np.exp(s - s.max(axis=1, keepdims=True))
                s /= s.sum(axis=1, keepdims=True)
                att[:, hh, :] = self._op(s) @ v[:, kh, :]
            x = x + self._op(att).reshape(n, nh * hd) @ self.w[b + "attn_output.weight"].T
            h = self._op(self._rms_norm(x, self.w[b + "ffn_norm.weight"]))
            g = h @ self.w[b + "ffn_gate.weight"].T
            u = h @ self.w[b + "ffn_up.weight"].T
            x = x + self._op(g / (1.0 + np.exp(-g)) * u) @ self.w[b + "ffn_down.weight"].T
        cache["pos"] = total
        if last_only:
            x = x[-1:]
        x = self._op(self._rms_norm(x, self.w["output_norm.weight"]))
        return x @ self.out_w.T

    def greedy(self, tokens, n_new, stop=None):
        cache = self.new_cache()
        logits = self.forward(tokens, cache, last_only=True)
        out = []
        for _ in range(n_new):
            t = int(np.argmax(logits[-1]))
            if stop is not None and t in stop:
                break
            out.append(t)
            logits = self.forward([t], cache)
        return out

    def detokenize(self, ids):
        return _bytes_decode("".join(self.tokens[i] for i in ids))


# --- A test-only tokenizer: byte-level BPE (GPT-2 style) for plain ASCII text,
# enough for the reference's own self-check (the LLM tests take their tokens
# from Polymorph's tokenizer instead). The smollm pre-tokenizer splits digits
# one by one; words keep their leading space.

def _byte_table():
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


_BYTE_TO_CHAR = _byte_table()
_CHAR_TO_BYTE = {c: b for b, c in _BYTE_TO_CHAR.items()}
_PRETOK = re.compile(r"'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+|[0-9]| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+")
_SPECIAL = re.compile(r"(<\|im_start\|>|<\|im_end\|>|<\|endoftext\|>)")


def _bytes_decode(s):
    return bytes(_CHAR_TO_BYTE.get(c, ord("?")) for c in s).decode("utf-8", errors="replace")


class AsciiBpe:
    def __init__(self, ref):
        r = ref.reader
        self.ids = {t: i for i, t in enumerate(ref.tokens)}
        merges = _field(r, "tokenizer.ggml.merges")
        self.rank = {tuple(m.split(" ", 1)): i for i, m in enumerate(merges)}

    def _bpe(self, word):
        parts = list(word)
        while len(parts) > 1:
            pairs = [(self.rank.get((a, b), 1 << 30), j) for j, (a, b) in enumerate(zip(parts, parts[1:]))]
            best, j = min(pairs)
            if best == 1 << 30:
                break
            parts[j:j + 2] = [parts[j] + parts[j + 1]]
        return [self.ids[p] for p in parts]

    def encode(self, text):
        out = []
        for piece in _SPECIAL.split(text):
            if not piece:
                continue
            if _SPECIAL.fullmatch(piece):
                out.append(self.ids[piece])
                continue
            for word in _PRETOK.findall(piece):
                out.extend(self._bpe("".join(_BYTE_TO_CHAR[b] for b in word.encode("ascii"))))
        return out


def chatml(user, system=SYSTEM_PROMPT):
    return ("<|im_start|>system\n%s<|im_end|>\n<|im_start|>user\n%s<|im_end|>\n<|im_start|>assistant\n"
            % (system, user))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", nargs="?")
    ap.add_argument("--prompt", default="What is the capital of France?")
    ap.add_argument("-n", type=int, default=24)
    ap.add_argument("--raw", action="store_true", help="no ChatML wrapping")
    a = ap.parse_args()
    path = a.model or model_path()
    if not path:
        sys.exit("llama_ref: no model (set POLYMORPH_MODEL or run tools/fetch_model.sh)")
    t0 = time.time()
    ref = LlamaRef(path)
    tok = AsciiBpe(ref)
    ids = tok.encode(a.prompt if a.raw else chatml(a.prompt))
    t1 = time.time()
    out = ref.greedy(ids, a.n, stop={ref.eos, tok.ids.get("<|im_end|>", -1)})
    t2 = time.time()
    print(ref.detokenize(out))
    print("prompt %d tokens, %d generated; load %.1f s, generate %.1f s" % (len(ids), len(out), t1 - t0, t2 - t1),
          file=sys.stderr)


if __name__ == "__main__":
    main()
