"""Golden tests of the polymorph command line: help for every verb, the one
exit status for every failure (1, with one `polymorph <verb>: ...` line on
stderr and no output file left behind), --json output, presets, and the
.npy binding rules of `sim` (checked against files NumPy writes itself)."""
import json
import os
import pathlib
import subprocess

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD = ROOT / os.environ.get("POLYMORPH_BUILD", "build")
POLYMORPH = BUILD / "polymorph"
EXAMPLES = ROOT / "examples"
VADD = EXAMPLES / "vector_add.pasm"
N = 4096  # vector_add's declared length

VERB_OPTIONS = {
    "asm": ["--output", "-o", "--help"],
    "dis": ["--output", "-o", "--help"],
    "sim": ["--preset", "--config", "--input", "--output", "--trace", "--json", "--max-instructions", "--help"],
    "presets": ["--help"],
}


def run(*args, cwd=None):
    return subprocess.run([str(POLYMORPH), *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=120)


def assert_user_error(r, verb):
    """Exit 1, nothing on stdout, one reason line naming the verb; any further
    stderr lines are indented context (the offending source line and caret)."""
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.splitlines()
    assert len(lines) >= 1, r.stderr
    assert all(line.startswith("    ") for line in lines[1:]), r.stderr
    prefix = f"polymorph {verb}: " if verb else "polymorph: "
    assert lines[0].startswith(prefix), r.stderr
    assert len(lines[0]) > len(prefix) + 3
    assert "Traceback" not in r.stderr and "Sanitizer" not in r.stderr
    return lines[0]


def listing(d):
    return sorted(p.name for p in pathlib.Path(d).iterdir())


# ---- help, version, dispatch ----

def test_top_help_lists_every_verb():
    r = run("--help")
    assert r.returncode == 0 and r.stderr == ""
    for verb in VERB_OPTIONS:
        assert f"  {verb} " in r.stdout
    assert "usage: polymorph" in r.stdout


def test_version():
    r = run("--version")
    assert r.returncode == 0
    assert r.stdout.startswith("polymorph ") and r.stdout.strip().split()[1][0].isdigit()


@pytest.mark.parametrize("verb", sorted(VERB_OPTIONS))
def test_verb_help_mentions_every_option(verb):
    r = run(verb, "--help")
    assert r.returncode == 0 and r.stderr == ""
    assert r.stdout.startswith(f"usage: polymorph {verb}")
    for opt in VERB_OPTIONS[verb]:
        assert opt in r.stdout, opt
    assert "example:" in r.stdout
    # `help VERB` and `VERB -h` print the same text
    assert run("help", verb).stdout == r.stdout
    assert run(verb, "-h").stdout == r.stdout


def test_no_arguments_prints_usage_and_fails():
    r = run()
    assert r.returncode == 1 and "usage: polymorph" in r.stderr and r.stdout == ""


def test_unknown_verb():
    line = assert_user_error(run("frobnicate"), None)
    assert "frobnicate" in line
    assert_user_error(run("help", "frobnicate"), "help")
    assert_user_error(run("--frobnicate"), None)


@pytest.mark.parametrize("verb", sorted(VERB_OPTIONS))
def test_unknown_option(verb):
    line = assert_user_error(run(verb, "--no-such-option"), verb)
    assert "--no-such-option" in line


@pytest.mark.parametrize("verb", ["asm", "dis", "sim"])
def test_missing_file_argument(verb):
    assert "missing" in assert_user_error(run(verb), verb)


def test_option_needs_value():
    assert "needs a value" in assert_user_error(run("sim", VADD, "--preset"), "sim")
    assert "needs a value" in assert_user_error(run("asm", VADD, "-o"), "asm")


def test_too_many_arguments():
    assert_user_error(run("asm", VADD, VADD), "asm")
    assert_user_error(run("presets", "edge", "fpga"), "presets")


# ---- garbage and missing files: exit 1, no output file ----

GARBAGE = bytes(range(256)) * 3 + b"\x00\xff" * 100


@pytest.mark.parametrize("name", ["junk.pasm", "junk.pmp", "junk.bin"])
def test_garbage_to_asm(tmp_path, name):
    src = tmp_path / name
    src.write_bytes(GARBAGE)
    before = listing(tmp_path)
    line = assert_user_error(run("asm", src, "-o", tmp_path / "out.pmp"), "asm")
    assert name in line
    assert_user_error(run("asm", src), "asm")  # default output name
    assert listing(tmp_path) == before


def test_assembly_error_names_line_and_column(tmp_path):
    src = tmp_path / "bad.pasm"
    src.write_text("; a comment\nnop\n    frobnicate r1, r2\nhalt\n")
    r = run("asm", src)
    line = assert_user_error(r, "asm")
    assert "bad.pasm:3:5:" in line
    # the offending text is shown under the reason, with a caret at column 5
    context = r.stderr.splitlines()[1:]
    assert any("frobnicate r1, r2" in c for c in context), r.stderr
    caret = [c for c in context if c.strip() == "^"]
    assert caret, r.stderr
    assert listing(tmp_path) == ["bad.pasm"]


@pytest.mark.parametrize("data", [GARBAGE, b"", b"PMPG", b"PMPG" + b"\x00" * 60])
def test_garbage_to_dis(tmp_path, data):
    f = tmp_path / "junk.pmp"
    f.write_bytes(data)
    assert_user_error(run("dis", f), "dis")
    assert_user_error(run("dis", f, "-o", tmp_path / "out.pasm"), "dis")
    assert listing(tmp_path) == ["junk.pmp"]


@pytest.mark.parametrize("name", ["junk.pmp", "junk.pasm"])
def test_garbage_to_sim(tmp_path, name):
    f = tmp_path / name
    f.write_bytes(GARBAGE)
    out = tmp_path / "c.npy"
    assert_user_error(run("sim", f, "--output", f"c={out}"), "sim")
    assert listing(tmp_path) == [name]


def test_missing_files(tmp_path):
    missing = tmp_path / "nope.pasm"
    for verb in ("asm", "dis", "sim"):
        assert "nope.pasm" in assert_user_error(run(verb, missing), verb)
    assert_user_error(run("sim", VADD, "--config", tmp_path / "nope.cfg"), "sim")
    assert listing(tmp_path) == []


@pytest.mark.parametrize(
    "text",
    [
        GARBAGE.decode("latin-1"),
        "[chip]\nengines = banana\n",
        "[chip]\nno_such_key = 3\n",
        "[no_such_section]\n",
        "base = no_such_preset\n",
        "[chip]\nengines = 0\n",
    ],
)
def test_bad_config(tmp_path, text):
    cfg = tmp_path / "bad.cfg"
    cfg.write_text(text, encoding="latin-1")
    out = tmp_path / "c.npy"
    assert_user_error(run("sim", VADD, "--config", cfg, "--output", f"c={out}"), "sim")
    assert listing(tmp_path) == ["bad.cfg"]


def test_preset_and_config_are_exclusive(tmp_path):
    cfg = tmp_path / "e.cfg"
    cfg.write_text("base = edge\n")
    assert "not both" in assert_user_error(run("sim", VADD, "--preset", "edge", "--config", cfg), "sim")


def test_unknown_preset():
    assert_user_error(run("sim", VADD, "--preset", "no_such_chip"), "sim")
    assert_user_error(run("presets", "no_such_chip"), "presets")


@pytest.mark.parametrize("value", ["0", "-5", "abc", "12x", "99999999999999999999999"])
def test_bad_max_instructions(value):
    assert "max-instructions" in assert_user_error(run("sim", VADD, "--max-instructions", value), "sim")


# ---- asm / dis behaviour ----

def test_asm_default_output_and_dis(tmp_path):
    src = tmp_path / "v.pasm"
    src.write_bytes(VADD.read_bytes())
    r = run("asm", src)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "" and r.stderr == ""
    pmp = tmp_path / "v.pmp"
    assert pmp.read_bytes()[:4] == b"PMPG"
    d = run("dis", pmp)
    assert d.returncode == 0, d.stderr
    assert run("dis", pmp, "-o", tmp_path / "v2.pasm").returncode == 0
    assert (tmp_path / "v2.pasm").read_text() == d.stdout
    # a name without .pasm gets .pmp appended
    other = tmp_path / "prog.s"
    other.write_bytes(VADD.read_bytes())
    assert run("asm", other).returncode == 0
    assert (tmp_path / "prog.s.pmp").read_bytes() == pmp.read_bytes()


# ---- sim: counters ----

def vadd_inputs(tmp_path, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(N).astype(np.float32)
    b = rng.standard_normal(N).astype(np.float32)
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "b.npy", b)
    return a, b, ["--input", f"a={tmp_path / 'a.npy'}", "--input", f"b={tmp_path / 'b.npy'}"]


def test_json_output_parses(tmp_path):
    a, b, args = vadd_inputs(tmp_path)
    r = run("sim", VADD, *args, "--json")
    assert r.returncode == 0, r.stderr
    j = json.loads(r.stdout)
    for key in ["cycles", "seconds", "instructions", "units", "dram_read_bytes", "dram_write_bytes",
                "sram_read_bytes", "sram_write_bytes", "energy_j", "wall_s", "stall_cycles", "config", "engines"]:
        assert key in j, key
    assert set(j["units"]) == {"ctrl", "dma.ld", "dma.st", "vec", "lfu", "tensor"}
    for u in j["units"].values():
        assert set(u) == {"instructions", "busy_cycles", "utilisation", "dram_bytes", "sram_bytes",
                          "compute_energy_j", "memory_energy_j", "energy_j"}
        assert 0.0 <= u["utilisation"] <= 1.0
        assert u["energy_j"] == pytest.approx(u["compute_energy_j"] + u["memory_energy_j"], rel=1e-12)
    # every byte's energy is charged to the unit that moved it: both views agree
    units = j["units"].values()
    assert sum(u["dram_bytes"] for u in units) == j["dram_read_bytes"] + j["dram_write_bytes"]
    assert sum(u["sram_bytes"] for u in units) == j["sram_read_bytes"] + j["sram_write_bytes"]
    assert j["units"]["dma.ld"]["dram_bytes"] >= 2 * N * 4 and j["units"]["dma.ld"]["energy_j"] > 0
    assert sum(u["energy_j"] for u in units) + j["static_energy_j"] == pytest.approx(j["energy_j"], rel=1e-12)
    assert (j["compute_energy_j"] + j["dram_energy_j"] + j["sram_energy_j"] + j["static_energy_j"]
            == pytest.approx(j["energy_j"], rel=1e-12))
    assert j["config"] == "edge" and j["engines"] == 1
    assert j["cycles"] > 0 and j["instructions"] > 0
    assert j["seconds"] == pytest.approx(j["cycles"] / 1e9)
    # vector_add moves two inputs in and one output out
    assert j["dram_read_bytes"] >= 2 * N * 4 and j["dram_write_bytes"] >= N * 4
    assert j["units"]["vec"]["instructions"] > 0 and j["units"]["vec"]["busy_cycles"] > 0
    assert j["energy_j"] > 0 and j["wall_s"] >= 0


def test_table_output(tmp_path):
    _, _, args = vadd_inputs(tmp_path)
    r = run("sim", VADD, *args)
    assert r.returncode == 0, r.stderr
    for word in ["cycles", "simulated time", "instructions", "utilisation", "DRAM read", "SRAM write",
                 "DRAM bytes", "SRAM bytes", "energy compute", "energy total", "sim wall time", "dma.ld", "vec"]:
        assert word in r.stdout, word


def test_same_program_same_counters(tmp_path):
    """.pasm assembled on the fly and the .pmp file run identically, and a
    run is deterministic."""
    _, _, args = vadd_inputs(tmp_path)
    pmp = tmp_path / "v.pmp"
    assert run("asm", VADD, "-o", pmp).returncode == 0
    j1 = json.loads(run("sim", VADD, *args, "--json").stdout)
    j2 = json.loads(run("sim", pmp, *args, "--json").stdout)
    for j in (j1, j2):
        j.pop("wall_s"), j.pop("program")
    assert j1 == j2


# ---- presets ----

def test_presets_list():
    r = run("presets")
    assert r.returncode == 0
    names = [line.split()[0] for line in r.stdout.splitlines() if line.strip()]
    for want in ("edge", "fpga", "datacenter"):
        assert want in names
    for line in r.stdout.splitlines():
        assert len(line.split(None, 1)) == 2, line  # every preset has a description


@pytest.mark.parametrize("preset", ["edge", "fpga", "datacenter"])
def test_preset_text_reparses(tmp_path, preset):
    r = run("presets", preset)
    assert r.returncode == 0 and r.stdout
    cfg = tmp_path / f"{preset}.cfg"
    cfg.write_text(r.stdout)
    _, _, args = vadd_inputs(tmp_path)
    via_preset = json.loads(run("sim", VADD, *args, "--preset", preset, "--json").stdout)
    s = run("sim", VADD, *args, "--config", cfg, "--json")
    assert s.returncode == 0, s.stderr
    via_file = json.loads(s.stdout)
    for j in (via_preset, via_file):
        j.pop("wall_s")
    assert via_file == via_preset


# ---- sim: binding tensors ----

def test_output_written_with_shape_and_dtype(tmp_path):
    a, b, args = vadd_inputs(tmp_path, seed=3)
    out = tmp_path / "c.npy"
    r = run("sim", VADD, *args, "--output", f"c={out}")
    assert r.returncode == 0, r.stderr
    c = np.load(out)
    assert c.dtype == np.float32 and c.shape == (N,)
    np.testing.assert_array_equal(c, a + b)
    assert not [p for p in listing(tmp_path) if ".tmp." in p]


@pytest.mark.parametrize("dtype", [np.float16, np.float64])
def test_other_float_inputs_round_to_fp32(tmp_path, dtype):
    rng = np.random.default_rng(5)
    a = rng.standard_normal(N).astype(dtype)
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "b.npy", np.zeros(N, np.float32))
    out = tmp_path / "c.npy"
    r = run("sim", VADD, "--input", f"a={tmp_path / 'a.npy'}", "--input", f"b={tmp_path / 'b.npy'}",
            "--output", f"c={out}")
    assert r.returncode == 0, r.stderr
    np.testing.assert_array_equal(np.load(out), a.astype(np.float32) + np.float32(0))


def test_npy_version_2_and_3(tmp_path):
    a = np.arange(N, dtype=np.float32)
    for version in [(2, 0), (3, 0)]:
        path = tmp_path / f"a{version[0]}.npy"
        with open(path, "wb") as f:
            np.lib.format.write_array(f, a, version=version)
        np.save(tmp_path / "b.npy", np.ones(N, np.float32))
        out = tmp_path / "c.npy"
        r = run("sim", VADD, "--input", f"a={path}", "--input", f"b={tmp_path / 'b.npy'}", "--output", f"c={out}")
        assert r.returncode == 0, r.stderr
        np.testing.assert_array_equal(np.load(out), a + 1)


def bad_input_case(tmp_path, a_bytes=None, a_array=None, spec=None):
    """Runs vector_add with a bad `a`; returns the error line. No output file
    may appear."""
    np.save(tmp_path / "b.npy", np.ones(N, np.float32))
    a_path = tmp_path / "a.npy"
    if a_array is not None:
        np.save(a_path, a_array, allow_pickle=True)
    elif a_bytes is not None:
        a_path.write_bytes(a_bytes)
    out = tmp_path / "c.npy"
    before = listing(tmp_path)
    r = run("sim", VADD, "--input", spec or f"a={a_path}", "--input", f"b={tmp_path / 'b.npy'}",
            "--output", f"c={out}")
    line = assert_user_error(r, "sim")
    assert listing(tmp_path) == before
    return line


def good_npy_bytes(a):
    import io
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def test_input_wrong_shape(tmp_path):
    line = bad_input_case(tmp_path, a_array=np.zeros((64, 64), np.float32))
    assert "(64, 64)" in line and f"({N},)" in line
    assert "shape" in bad_input_case(tmp_path, a_array=np.zeros(N - 1, np.float32))


def test_input_wrong_kind(tmp_path):
    line = bad_input_case(tmp_path, a_array=np.zeros(N, np.int32))
    assert "int32" in line and "f32" in line
    assert "bool" in bad_input_case(tmp_path, a_array=np.zeros(N, np.bool_))


def test_input_unknown_tensor(tmp_path):
    line = bad_input_case(tmp_path, a_array=np.zeros(N, np.float32), spec=f"nosuch={tmp_path / 'a.npy'}")
    assert "nosuch" in line and "a, b, c" in line.replace("tensors: ", "")


def test_input_bad_spec(tmp_path):
    assert "NAME=FILE" in bad_input_case(tmp_path, a_array=np.zeros(N, np.float32), spec="a")
    assert "NAME=FILE" in bad_input_case(tmp_path, a_array=np.zeros(N, np.float32), spec="=x.npy")


def test_input_bound_twice(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros(N, np.float32))
    r = run("sim", VADD, "--input", f"a={tmp_path / 'a.npy'}", "--input", f"a={tmp_path / 'a.npy'}")
    assert "twice" in assert_user_error(r, "sim")


def test_npy_fortran_order(tmp_path):
    assert "fortran" in bad_input_case(tmp_path, a_array=np.asfortranarray(np.zeros((64, 64), np.float32)))


def test_npy_big_endian(tmp_path):
    assert "big-endian" in bad_input_case(tmp_path, a_array=np.zeros(N, ">f4"))


def test_npy_object_and_structured(tmp_path):
    assert "object" in bad_input_case(tmp_path, a_array=np.array([{}] * N, dtype=object))
    structured = np.zeros(N, dtype=[("x", "<f4"), ("y", "<f4")])
    assert "structured" in bad_input_case(tmp_path, a_array=structured)
    assert "not supported" in bad_input_case(tmp_path, a_array=np.zeros(N, np.complex64))


def test_npy_truncated_and_header_lies(tmp_path):
    good = good_npy_bytes(np.zeros(N, np.float32))
    assert "truncated" in bad_input_case(tmp_path, a_bytes=good[:-4])
    assert "after the data" in bad_input_case(tmp_path, a_bytes=good + b"\0\0\0\0")
    assert "truncated" in bad_input_case(tmp_path, a_bytes=good[:9])
    # header that runs past the end of the file
    assert "header" in bad_input_case(tmp_path, a_bytes=good[:8] + b"\xff\xff" + good[10:100])
    # shape in the header does not match the data
    lie = good.replace(f"({N},)".encode(), f"({N + 1},)".encode()[: len(f"({N},)")].ljust(len(f"({N},)")))
    assert lie != good
    bad_input_case(tmp_path, a_bytes=lie)


@pytest.mark.parametrize(
    "mutate, words",
    [
        (lambda h: b"\x93NUMPX" + h[6:], "magic"),
        (lambda h: h[:6] + b"\x04\x00" + h[8:], "version"),
        (lambda h: h.replace(b"'descr'", b"'dscr '"), "key"),
        (lambda h: h.replace(b"False", b"Flase"), "True or False"),
        (lambda h: h.replace(b"{", b"["), "'{'"),
        (lambda h: h.replace(b"'shape': (", b"'shape': [").replace(b",), }", b",], }"), "shape"),
        (lambda h: h.replace(b"<f4", b"<f3"), "not supported"),
    ],
)
def test_npy_malformed_header(tmp_path, mutate, words):
    good = good_npy_bytes(np.zeros(N, np.float32))
    bad = mutate(good)
    assert bad != good
    line = bad_input_case(tmp_path, a_bytes=bad)
    assert words in line


def test_sim_fault_writes_no_output(tmp_path):
    """A runaway run stops on the watchdog: exit 1, fault message, no file."""
    _, _, args = vadd_inputs(tmp_path)
    out = tmp_path / "c.npy"
    before = listing(tmp_path)
    line = assert_user_error(run("sim", VADD, *args, "--max-instructions", "3", "--output", f"c={out}"), "sim")
    assert "engine 0" in line
    assert listing(tmp_path) == before


def test_trace_file(tmp_path):
    _, _, args = vadd_inputs(tmp_path)
    trace = tmp_path / "t.json"
    r = run("sim", VADD, *args, "--trace", trace)
    assert r.returncode == 0, r.stderr
    doc = json.loads(trace.read_text())
    events = doc["traceEvents"] if isinstance(doc, dict) else doc
    assert len(events) > 0


# ---- sim: formats other than f32, SRAM tensors ----

COPY = """
        .dram 0x0
a:      .zero {nbytes}
        .tensor a, {fmt}, {shape}
c:      .zero {nbytes}
        .tensor c, {fmt}, {shape}
        .text
        li r1, {nbytes}
        li r2, 1
        dma.shape r1, r2, r2
        li r3, a
        li r4, c
        li r5, 0
        dma.ld r5, r3
        fence dma.ld
        dma.st r4, r5
        halt
"""


def copy_program(tmp_path, fmt, shape, nbytes):
    p = tmp_path / f"copy_{fmt}.pasm"
    p.write_text(COPY.format(fmt=fmt, shape=", ".join(map(str, shape)), nbytes=nbytes))
    return p


def run_copy(tmp_path, prog, a):
    np.save(tmp_path / "a.npy", a)
    out = tmp_path / "c.npy"
    return run("sim", prog, "--input", f"a={tmp_path / 'a.npy'}", "--output", f"c={out}"), out


def test_int8_tensor(tmp_path):
    prog = copy_program(tmp_path, "int8", (4, 64), 256)
    a = np.arange(-128, 128, dtype=np.int64).reshape(4, 64)  # any integer dtype, range-checked
    r, out = run_copy(tmp_path, prog, a)
    assert r.returncode == 0, r.stderr
    c = np.load(out)
    assert c.dtype == np.int8 and c.shape == (4, 64)
    np.testing.assert_array_equal(c, a)
    bad = a.copy()
    bad[1, 3] = 128
    r, out2 = run_copy(tmp_path, prog, bad)
    assert "element 67" in assert_user_error(r, "sim")
    r, _ = run_copy(tmp_path, prog, a.astype(np.float32))
    assert "integer array" in assert_user_error(r, "sim")


def test_e4m3_tensor_matches_ml_dtypes(tmp_path):
    import ml_dtypes
    prog = copy_program(tmp_path, "e4m3", (1024,), 1024)
    a = (np.random.default_rng(9).standard_normal(1024) * 50).astype(np.float32)
    r, out = run_copy(tmp_path, prog, a)
    assert r.returncode == 0, r.stderr
    c = np.load(out)
    assert c.dtype == np.float32
    np.testing.assert_array_equal(c, a.astype(ml_dtypes.float8_e4m3fn).astype(np.float32))


def test_bf16_tensor_matches_ml_dtypes(tmp_path):
    import ml_dtypes
    prog = copy_program(tmp_path, "bf16", (16, 32), 1024)
    a = np.random.default_rng(10).standard_normal((16, 32))  # float64: rounded to fp32, then bf16
    r, out = run_copy(tmp_path, prog, a)
    assert r.returncode == 0, r.stderr
    np.testing.assert_array_equal(np.load(out), a.astype(np.float32).astype(ml_dtypes.bfloat16).astype(np.float32))


def test_block_format_tensor(tmp_path):
    """mxfp8 (blocks of 32): the output decodes what the input encoded, so
    feeding the output back in is a fixed point; a partial block is refused."""
    prog = copy_program(tmp_path, "mxfp8", (128,), 4 * 33)
    a = (np.random.default_rng(11).standard_normal(128) * 3).astype(np.float32)
    r, out = run_copy(tmp_path, prog, a)
    assert r.returncode == 0, r.stderr
    c = np.load(out)
    assert np.max(np.abs(c - a) / np.max(np.abs(a))) < 2 ** -3  # within e4m3 precision of the block scale
    r2, out2 = run_copy(tmp_path, prog, c)
    assert r2.returncode == 0, r2.stderr
    np.testing.assert_array_equal(np.load(out2), c)
    partial = copy_program(tmp_path, "mxfp4", (48,), 64)
    r, _ = run_copy(tmp_path, partial, np.zeros(48, np.float32))
    assert "blocks" in assert_user_error(r, "sim")


SRAM_DOUBLE = """
        .sram 0x100
s:      .zero 256
        .tensor s, f32, 64
        .text
        li r1, 64
        li r2, s
        vadd.f32 r2, r2, r2, r1     ; s = s + s, in every engine's SRAM
        halt
"""


@pytest.mark.parametrize("preset", ["edge", "datacenter"])
def test_sram_tensor(tmp_path, preset):
    prog = tmp_path / "sram.pasm"
    prog.write_text(SRAM_DOUBLE)
    a = np.random.default_rng(12).standard_normal(64).astype(np.float32)
    np.save(tmp_path / "s.npy", a)
    out = tmp_path / "o.npy"
    r = run("sim", prog, "--preset", preset, "--input", f"s={tmp_path / 's.npy'}", "--output", f"s={out}", "--json")
    assert r.returncode == 0, r.stderr
    np.testing.assert_array_equal(np.load(out), a + a)
    j = json.loads(r.stdout)
    assert j["units"]["vec"]["instructions"] == j["engines"]  # every engine ran on its own copy


def test_output_of_non_tensor_symbol(tmp_path):
    prog = tmp_path / "p.pasm"
    prog.write_text(".dram 0\nplain: .zero 64\n.text\nhalt\n")
    line = assert_user_error(run("sim", prog, "--output", f"plain={tmp_path / 'o.npy'}"), "sim")
    assert "without .tensor" in line and "none declared" in line
