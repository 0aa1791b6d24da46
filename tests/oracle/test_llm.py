"""End-to-end LLM tests: SmolLM2-135M (the default GGUF) run on the simulated
edge engine through libpolymorph's pm_llm_* API, compared with the independent
numpy forward pass in llama_ref.py over the same token ids.

Two references: EXACT (float64 arithmetic of the dequantised weights) and
BF16 (every matmul operand rounded to bf16, the engine's stated precision).
The tolerances come from measuring how far bf16 operands alone move the
logits on this text, in units of the reference logits' std at each position
(about 3.5): two such bf16 computations (float32 and float64 accumulation)
each differ from EXACT by a per-position max |diff| of median 0.045, worst
0.105 and 0.163, a mean |diff| of 0.0125, a worst per-position mean of 0.068,
and from each other by as much (worst max 0.180): bf16 rounding flips
propagate, so a second bf16 computation is no closer to the engine than EXACT
is. Every bound is about twice the measured figure (docs/testing.md, "LLM
tests"); each argmax that differs from a reference's must be a near-tie of
that reference.
"""
import ctypes
import json
import subprocess

import numpy as np
import pytest

import llama_ref
from pmlib import POLYMORPH, PmError, load

# A handle of its own: argtypes set here must not clash with another test
# module's (each defines its own ctypes structures).
lib = load()

# Written for this test, not tuned: prose with numbers, a decimal, a thousands
# separator, parentheses and a name. 198 tokens with SmolLM2's tokenizer.
TEXT = ("The old lighthouse on the northern cape was built in 1874, and for almost 90 years its lamp turned "
        "every night. Keepers wrote in a logbook: the weather, the ships that passed, and the oil they burned "
        "(about 3.5 litres on a calm night, twice that in a storm). In 1962 the light was automated; the last "
        "keeper, Margaret Hale, moved to a cottage in the village below. She kept the logbooks, all 41 of them, "
        "on a shelf by the window. When a museum asked for them, she said yes, but only if someone would read "
        "one page aloud each year on the 14th of March, the day her father first lit the lamp. They still do. "
        "Last spring a school group counted the ships in the 1901 book: 2,317 sailing past, 12 wrecked nearby, "
        "and one whale!\n")

# Bounds in units of the reference logits' standard deviation at that position.
# A second, longer text (about 480 tokens) for the agreement figure:
# 198 positions alone cannot tell 99 from 98.5 percent (one flip is 0.5%), so the
# argmax agreement with BF16 (a numpy forward pass at the engine's stated
# precision) is asserted over both texts together.
TEXT_LONG = "When the railway reached the valley in 1889, the town of Wessel had 412 inhabitants, two churches and a mill that ground rye for three villages. The station was a wooden hut with a stove, a bench and a clock that the stationmaster wound every Sunday after the second service. Trains came twice a day: the morning one carried milk churns and letters, the evening one brought back empty churns, newspapers and, now and then, a traveller who had taken the wrong connection.\n\nWithin ten years the population had doubled. A brickworks opened beside the line, then a small factory that made buttons from horn and, later, from a new material called celluloid. The factory's owner, Anton Brede, kept careful accounts: in 1897 he paid 31 workers a total of 9,840 marks, bought 14 tonnes of coal and sold 2.6 million buttons, most of them to tailors in the city. His notebooks survive in the county archive, and they show a man who worried about everything: the price of horn, the damp in the storeroom, whether the new boiler would pass inspection, and whether his son would ever take an interest in the business.\n\nThe son did not. He studied chemistry, moved abroad and wrote long letters home about laboratories, lectures and the weather. In one of them he explains, with some impatience, why celluloid burns so easily and why the storeroom must never be heated with an open flame. The warning arrived too late: in the winter of 1904 a fire destroyed half of the factory. Nobody was hurt, but the insurance paid only part of the loss, and Brede had to borrow money from his brother-in-law to rebuild.\n\nToday the factory is a museum. Visitors can see the machines, the account books and a display case with 1,200 buttons arranged by colour. Children are usually most interested in the fire, adults in the wages, and almost everyone asks the same question at the end of the tour: what happened to the son? The guide smiles and points to the last letter in the case. It is short, written in 1931, and it says only that he has finally come home.\n"
AGREE_POOLED_VS_BF16 = 0.99  # the figure; measured 670/675 = 0.9926 (every flip a near-tie)

MAX_VS_EXACT = 0.35       # per position, max over the vocabulary (bf16 alone: <= 0.18)
MEDIAN_MAX_VS_EXACT = 0.10  # median over positions of that max (bf16 alone: 0.045)
MEAN_VS_EXACT = 0.03      # mean |diff| over all positions and the vocabulary (bf16 alone: 0.0125)
ROW_MEAN_VS_EXACT = 0.15  # mean |diff| of any one position (bf16 alone: <= 0.068)
TIE_GAP = 0.10            # a choice unlike EXACT's is a near-tie: EXACT's top logit minus its logit
                          # of the engine's choice is below this (bf16 alone flips 3 of 198, gaps <= 0.011)
AGREE_VS_EXACT = 0.97     # argmax equal to EXACT's (bf16 alone: 195/198 = 0.985, all three near-ties)
AGREE_VS_BF16 = 0.97      # and to BF16's. The issue asks 99%; a correct engine measures 0.980-0.985
                          # against EXACT and 0.990-0.995 against BF16 here (198 positions: one flip
                          # is 0.5%), every flip a near-tie: see docs/testing.md
PREFILL_MAX = 0.35        # prefill's last logits vs decode's: two bf16 paths, as MAX_VS_EXACT
# The --wfmt runs teacher-force the text's first tokens only, to keep the
# module near a minute (each run uploads and re-encodes the model, then one
# decode step per token).
WFMT_TOKENS = 96

MODEL = llama_ref.model_path()
if MODEL is None:
    pytest.skip("\n\n*** test_llm: NO MODEL: tools/fetch_model.sh could not fetch SmolLM2-135M (offline?) and "
                "POLYMORPH_MODEL is unset; the end-to-end LLM tests DID NOT RUN ***\n", allow_module_level=True)

ERR = ctypes.POINTER(PmError)
CONFIG_BYTES = 65536  # pm_config is opaque here; the library fills it


class LlmOptions(ctypes.Structure):
    """pm_llm_options (include/polymorph/llm.h), field for field."""
    _fields_ = [("wfmt_native", ctypes.c_bool), ("wfmt", ctypes.c_int), ("max_ctx", ctypes.c_uint32),
                ("prefill_chunk", ctypes.c_uint32), ("threads", ctypes.c_uint)]


class LlmInfo(ctypes.Structure):
    _fields_ = [("arch", ctypes.c_char * 32), ("name", ctypes.c_char * 128)] + [
        (f, ctypes.c_uint32) for f in ("n_layers", "d_model", "d_ff", "n_heads", "n_kv_heads", "head_dim",
                                       "vocab", "ctx_train")] + [
        ("rope_base", ctypes.c_float), ("norm_eps", ctypes.c_float), ("tied_output", ctypes.c_bool),
        ("weight_bytes", ctypes.c_uint64), ("param_count", ctypes.c_uint64)]


lib.pm_config_preset.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ERR]
lib.pm_llm_options_init.argtypes = [ctypes.POINTER(LlmOptions)]
lib.pm_llm_options_init.restype = None
lib.pm_format_from_name.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_int)]
lib.pm_format_from_name.restype = ctypes.c_bool
lib.pm_llm_open.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(LlmOptions),
                            ctypes.POINTER(ctypes.c_void_p), ERR]
lib.pm_llm_close.argtypes = [ctypes.c_void_p]
lib.pm_llm_close.restype = None
lib.pm_llm_get_info.argtypes = [ctypes.c_void_p]
lib.pm_llm_get_info.restype = ctypes.POINTER(LlmInfo)
lib.pm_llm_tokenizer.argtypes = [ctypes.c_void_p]
lib.pm_llm_tokenizer.restype = ctypes.c_void_p
lib.pm_tokenizer_adds_bos.argtypes = [ctypes.c_void_p]
lib.pm_tokenizer_adds_bos.restype = ctypes.c_bool
lib.pm_tokenizer_encode.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_bool,
                                    ctypes.c_bool, ctypes.POINTER(ctypes.POINTER(ctypes.c_int32)),
                                    ctypes.POINTER(ctypes.c_size_t), ERR]
lib.pm_llm_reset.argtypes = [ctypes.c_void_p]
lib.pm_llm_reset.restype = None
lib.pm_llm_decode.argtypes = [ctypes.c_void_p, ctypes.c_int32, ERR]
lib.pm_llm_prefill.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int32), ctypes.c_size_t, ERR]
lib.pm_llm_logits.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_float), ERR]
libc = ctypes.CDLL(None)
libc.free.argtypes = [ctypes.c_void_p]


def check(status, err, what):
    assert status == 0, "%s: %s" % (what, err.message.decode(errors="replace"))


class Engine:
    """One model open on a simulated edge device."""

    def __init__(self, wfmt=None, preset=b"edge"):
        self.err = PmError()
        self.cfg = ctypes.create_string_buffer(CONFIG_BYTES)
        check(lib.pm_config_preset(preset, self.cfg, ctypes.byref(self.err)), self.err, "preset")
        opts = LlmOptions()
        lib.pm_llm_options_init(ctypes.byref(opts))
        if wfmt is not None:
            f = ctypes.c_int()
            assert lib.pm_format_from_name(wfmt.encode(), ctypes.byref(f)), wfmt
            opts.wfmt_native, opts.wfmt = False, f.value
        self.m = ctypes.c_void_p()
        check(lib.pm_llm_open(self.cfg, MODEL.encode(), ctypes.byref(opts), ctypes.byref(self.m),
                              ctypes.byref(self.err)), self.err, "pm_llm_open")
        self.vocab = lib.pm_llm_get_info(self.m).contents.vocab

    def close(self):
        lib.pm_llm_close(self.m)

    def encode(self, text):
        tok = lib.pm_llm_tokenizer(self.m)
        ids, n = ctypes.POINTER(ctypes.c_int32)(), ctypes.c_size_t()
        raw = text.encode()
        check(lib.pm_tokenizer_encode(tok, raw, len(raw), lib.pm_tokenizer_adds_bos(tok), False,
                                      ctypes.byref(ids), ctypes.byref(n), ctypes.byref(self.err)),
              self.err, "encode")
        out = [ids[i] for i in range(n.value)]
        libc.free(ids)
        return out

    def logits(self):
        out = np.empty(self.vocab, dtype=np.float32)
        check(lib.pm_llm_logits(self.m, out.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
                                ctypes.byref(self.err)), self.err, "pm_llm_logits")
        return out

    def teacher_force(self, ids):
        """Every token through decode, one at a time: logits [n][vocab]."""
        lib.pm_llm_reset(self.m)
        rows = []
        for t in ids:
            check(lib.pm_llm_decode(self.m, t, ctypes.byref(self.err)), self.err, "pm_llm_decode")
            rows.append(self.logits())
        return np.stack(rows)

    def prefill_last(self, ids):
        lib.pm_llm_reset(self.m)
        arr = (ctypes.c_int32 * len(ids))(*ids)
        check(lib.pm_llm_prefill(self.m, arr, len(ids), ctypes.byref(self.err)), self.err, "pm_llm_prefill")
        return self.logits()


@pytest.fixture(scope="module")
def native():
    e = Engine()
    ids = e.encode(TEXT)
    tf = e.teacher_force(ids)
    last = e.prefill_last(ids)
    e.close()
    return ids, tf, last


@pytest.fixture(scope="module")
def refs(native):
    ids = native[0]
    exact = llama_ref.LlamaRef(MODEL)
    r_exact = exact.forward(ids)
    exact_raw = exact.raw
    bf16 = llama_ref.LlamaRef(MODEL, bf16_operands=True, weights=exact_raw)
    del exact
    r_bf16 = bf16.forward(ids)
    del bf16
    # The device's --wfmt if4 weights, re-derived in numpy (llama_ref.if4_roundtrip).
    if4 = llama_ref.LlamaRef(MODEL, weights=exact_raw, requant=llama_ref.if4_roundtrip)
    r_if4 = if4.forward(ids)
    return r_exact, r_bf16, r_if4


def compare(eng, ref):
    """Per-position figures in units of the reference's std at that position."""
    sd = ref.std(axis=1)
    d = np.abs(eng.astype(np.float64) - ref)
    return {"max": d.max(axis=1) / sd, "row_mean": d.mean(axis=1) / sd, "mean": d.mean() / sd.mean(),
            "agree": float(np.mean(eng.argmax(axis=1) == ref.argmax(axis=1)))}


def tie_gaps(eng, ref):
    """For positions where the engine's choice differs from ref's: ref's top
    logit minus its logit of the engine's choice, in units of ref's std."""
    a, e = ref.argmax(axis=1), eng.argmax(axis=1)
    bad = np.nonzero(a != e)[0]
    sd = ref.std(axis=1)
    return bad, (ref[bad, a[bad]] - ref[bad, e[bad]]) / sd[bad]


def parse_json(stdout):
    """The --json object: the whole stdout, else its last line."""
    try:
        return json.loads(stdout)
    except ValueError:
        return json.loads(stdout.strip().splitlines()[-1])


def test_tokens_are_the_text(native):
    ids = native[0]
    assert 150 <= len(ids) <= 260, len(ids)


def test_teacher_forcing_vs_exact(native, refs):
    _, tf, _ = native
    c = compare(tf, refs[0])
    bad, gaps = tie_gaps(tf, refs[0])
    print("vs EXACT: agree %.4f (%d/%d differ), max/std median %.4f worst %.4f, mean/std %.4f, row mean worst %.4f"
          % (c["agree"], len(bad), len(tf), np.median(c["max"]), c["max"].max(), c["mean"], c["row_mean"].max()))
    assert c["max"].max() <= MAX_VS_EXACT, int(np.argmax(c["max"]))
    assert np.median(c["max"]) <= MEDIAN_MAX_VS_EXACT
    assert c["mean"] <= MEAN_VS_EXACT
    assert c["row_mean"].max() <= ROW_MEAN_VS_EXACT, int(np.argmax(c["row_mean"]))
    assert c["agree"] >= AGREE_VS_EXACT
    # Every differing choice is one the exact model itself nearly ties.
    assert np.all(gaps < TIE_GAP), list(zip(bad.tolist(), gaps.tolist()))


def test_teacher_forcing_vs_bf16(native, refs):
    _, tf, _ = native
    c = compare(tf, refs[1])
    bad, gaps = tie_gaps(tf, refs[1])
    print("vs BF16: agree %.4f (%d/%d differ), max/std median %.4f worst %.4f, mean/std %.4f"
          % (c["agree"], len(bad), len(tf), np.median(c["max"]), c["max"].max(), c["mean"]))
    assert c["agree"] >= AGREE_VS_BF16
    assert c["max"].max() <= MAX_VS_EXACT, int(np.argmax(c["max"]))
    assert np.all(gaps < TIE_GAP), list(zip(bad.tolist(), gaps.tolist()))


def test_prefill_matches_decode(native):
    ids, tf, last = native
    sd = tf[-1].std()
    d = np.abs(last.astype(np.float64) - tf[-1]).max() / sd
    print("prefill vs decode, last position: max/std %.4f" % d)
    assert d <= PREFILL_MAX
    top = np.sort(tf[-1])[-2:]
    if top[1] - top[0] > PREFILL_MAX * sd:  # unless decode itself nearly ties
        assert int(np.argmax(last)) == int(np.argmax(tf[-1]))


def _wfmt_agreement(fmt, ids, ref):
    e = Engine(wfmt=fmt)
    try:
        assert e.encode(TEXT) == ids
        tf = e.teacher_force(ids[:WFMT_TOKENS])
    finally:
        e.close()
    return tf, compare(tf, ref[:WFMT_TOKENS])


def test_wfmt_bf16(native, refs):
    # Q4_1 decodes exactly to float32 and the tensor unit rounds B to bf16
    # anyway, so bf16 weights feed the array the same operands; only the
    # embedding gather now reads bf16-rounded rows. The native bounds hold.
    ids = native[0]
    tf, c = _wfmt_agreement("bf16", ids, refs[0])
    bad, gaps = tie_gaps(tf, refs[0][:WFMT_TOKENS])
    print("wfmt bf16 (%d tokens) vs EXACT: agree %.4f, max/std median %.4f worst %.4f, mean/std %.4f; vs BF16: "
          "agree %.4f" % (len(tf), c["agree"], np.median(c["max"]), c["max"].max(), c["mean"],
                          compare(tf, refs[1][:WFMT_TOKENS])["agree"]))
    assert c["max"].max() <= MAX_VS_EXACT, int(np.argmax(c["max"]))
    assert np.median(c["max"]) <= MEDIAN_MAX_VS_EXACT
    assert c["mean"] <= MEAN_VS_EXACT
    assert c["agree"] >= AGREE_VS_EXACT
    assert np.all(gaps < TIE_GAP), list(zip(bad.tolist(), gaps.tolist()))


def test_wfmt_if4(native, refs):
    # IF4 re-quantises the already 4-bit weights with another grid (block 16):
    # a second, real quantisation error (7.7% rms of a weight), so the model
    # itself changes. The reference applies the same re-encoding (numpy
    # re-derivation of docs/numerics.md, bit-equal to pm_format_encode) to the
    # matrices as the runner uploads them (Q|K|V and gate|up fused, so one
    # tensor scale each) and the run must meet the native run's bounds;
    # its agreement with the unchanged model is only reported.
    ids = native[0]
    tf, c = _wfmt_agreement("if4", ids, refs[2])
    plain = compare(tf, refs[0][:WFMT_TOKENS])
    bad, gaps = tie_gaps(tf, refs[2][:WFMT_TOKENS])
    assert np.isfinite(tf).all(), "non-finite logits from position %d" % int(np.argmin(np.isfinite(tf).all(axis=1)))
    print("wfmt if4 (%d tokens) vs IF4 reference: agree %.4f, max/std worst %.4f, mean/std %.4f; "
          "vs the Q4_1 model: agree %.4f" % (len(tf), c["agree"], c["max"].max(), c["mean"], plain["agree"]))
    assert c["max"].max() <= MAX_VS_EXACT, int(np.argmax(c["max"]))
    assert np.median(c["max"]) <= MEDIAN_MAX_VS_EXACT
    assert c["mean"] <= MEAN_VS_EXACT
    assert c["agree"] >= AGREE_VS_EXACT
    assert np.all(gaps < TIE_GAP), list(zip(bad.tolist(), gaps.tolist()))


def test_chat_capital_of_france():
    out = subprocess.run([str(POLYMORPH), "run", "--model", MODEL, "--chat", "--prompt",
                          "What is the capital of France?", "-n", "24", "--json"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    j = parse_json(out.stdout)
    assert "Paris" in j.get("text", ""), out.stdout


@pytest.fixture(scope="module")
def long_run(native, refs):
    """Teacher forcing over TEXT_LONG, with both references."""
    e = Engine()
    ids = e.encode(TEXT_LONG)
    tf = e.teacher_force(ids)
    e.close()
    exact = llama_ref.LlamaRef(MODEL)
    r_exact = exact.forward(ids)
    bf16 = llama_ref.LlamaRef(MODEL, bf16_operands=True, weights=exact.raw)
    del exact
    r_bf16 = bf16.forward(ids)
    return ids, tf, r_exact, r_bf16


def test_teacher_forcing_agreement_pooled(native, refs, long_run):
    """The issue's >= 99% of positions, against BF16 over both texts; against
    EXACT the bounds of the single-text tests, every flip a near-tie."""
    _, tf, _ = native
    ids_l, tf_l, ex_l, bf_l = long_run
    assert 400 <= len(ids_l) <= 560, len(ids_l)
    agree_bf = np.concatenate([tf.argmax(1) == refs[1].argmax(1), tf_l.argmax(1) == bf_l.argmax(1)])
    agree_ex = np.concatenate([tf.argmax(1) == refs[0].argmax(1), tf_l.argmax(1) == ex_l.argmax(1)])
    c = compare(tf_l, ex_l)
    print("pooled over %d positions: agree vs BF16 %.4f, vs EXACT %.4f; long text vs EXACT max/std worst %.4f, "
          "mean/std %.4f" % (len(agree_bf), agree_bf.mean(), agree_ex.mean(), c["max"].max(), c["mean"]))
    assert agree_bf.mean() >= AGREE_POOLED_VS_BF16
    assert agree_ex.mean() >= AGREE_VS_EXACT
    assert c["max"].max() <= MAX_VS_EXACT and c["mean"] <= MEAN_VS_EXACT
    for ref in (ex_l, bf_l):
        bad, gaps = tie_gaps(tf_l, ref)
        assert np.all(gaps < TIE_GAP), list(zip(bad.tolist(), gaps.tolist()))
