"""Adversarial tests of the polymorph command line: what a hostile or careless
user throws at asm, dis and sim (malformed assembly of every kind, corrupt
program files, absurd configs, programs that misbehave at run time, broken
.npy files and unwritable destinations). Every case must end with exit status
1 and one reason line `polymorph <verb>: ...` naming the place (assembly
errors may add indented context lines), never a crash, hang, sanitizer report
or partial file. Runtime faults must read `engine E pc 0xN (mnemonic): cause`.

Only the CLI binary is used (no ctypes), so this file also runs against a
sanitizer build: POLYMORPH_BUILD=build-san python3 -m pytest tests/oracle/test_adversarial.py
"""
import os
import pathlib
import re
import stat
import struct
import subprocess

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD = ROOT / os.environ.get("POLYMORPH_BUILD", "build")
POLYMORPH = BUILD / "polymorph"
EXAMPLES = ROOT / "examples"

FAULT = re.compile(r"^polymorph sim: engine (\d+) pc 0x([0-9a-f]+) \(([a-z0-9.]+|end of program)\): (.+)$")


def run(*args, cwd=None, timeout=120):
    return subprocess.run([str(POLYMORPH), *map(str, args)], capture_output=True, cwd=cwd, timeout=timeout)


def user_error(r, verb):
    """Exit 1, nothing on stdout, a reason line naming the verb, only indented
    context after it, and no sanitizer or crash report. Returns the reason."""
    err = r.stderr.decode("utf-8", "replace")
    assert "Sanitizer" not in err and "runtime error" not in err, err
    assert r.returncode == 1, (r.returncode, err)
    assert r.stdout == b"", r.stdout[:200]
    lines = err.splitlines()
    assert lines and lines[0].startswith(f"polymorph {verb}: "), err
    assert all(line.startswith("    ") for line in lines[1:]), err
    return lines[0]


def fault(r):
    """A runtime fault: returns (engine, pc, mnemonic, cause)."""
    line = user_error(r, "sim")
    m = FAULT.match(line)
    assert m, line
    return int(m.group(1)), int(m.group(2), 16), m.group(3), m.group(4)


def listing(d):
    return sorted(p.name for p in pathlib.Path(d).iterdir())


def write(path, text):
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return path


# --------------------------------------------------------------------------
# Malformed assembly: file:line:col, the offending text, no output file
# --------------------------------------------------------------------------

ASM_ERRORS = [
    # (source, line:col, words the reason must contain)
    ("vadd.f32 r1, r2, r99, r4\nhalt\n", "1:18", ["r99"]),
    ("add r1, r2\n", "1:11", ["expected ','"]),
    ("add r1, r2, r3, r4\n", "1:15", ["too many operands"]),
    ("li r1, 99999999999999999999999\n", "1:8", ["64 bits"]),
    ("li r1, 0x800000000000\n", "1:8", ["48-bit", "out of range"]),
    ("addi r1, r1, 2147483648\n", "1:14", ["32-bit", "out of range"]),
    ("addi r1, r1, -2147483649\n", "1:14", ["32-bit", "out of range"]),
    ("lfu.cfg 9, exp\n", "1:9", ["slot 9"]),
    ("lfu.cfg 0, cosh\n", "1:12", ["cosh"]),
    ("fence 99\n", "1:7", ["unit mask 99"]),
    ("flag.set 300, 1\n", "1:10", ["flag 300"]),
    ("csrr r1, bogus\n", "1:10", ["bogus"]),
    ("dma.ld r1++, r2\n", "1:11", ["','"]),
    ("add r1+, r2, r3\n", "1:7", ["','"]),
    ("halt extra\n", "1:6", ["no operands"]),
    ("add ,,\n", "1:5", ["register"]),
    (":\n", "1:1", ["':'"]),
    (".\n", "1:1", ["directive"]),
    (".foo 1\n", "1:1", [".foo"]),
    ("vadd r1, r2, r3, r4\n", "1:1", ["format suffix"]),
    ("vadd.f32.f32 r1, r2, r3, r4\n", "1:10", ["format suffix"]),
    ("vadd.f99 r1, r2, r3, r4\n", "1:6", ["f99"]),
    # labels colliding with registers, duplicates, undefined
    ("r1: halt\n", "1:1", ["register name"]),
    ("zero: halt\n", "1:1", ["register name"]),
    (".reg r5, r6\n", "1:6", ["register name"]),
    ("a: nop\na: halt\n", "2:1", ["already defined", ":1"]),
    (".equ A, 1\n.equ A, 2\nhalt\n", "2:6", ["already defined"]),
    ("jmp nowhere\n", "1:5", ["undefined", "nowhere"]),
    (".entry 5\nhalt\n", "1:8", ["entry 5"]),
    # expressions
    (".equ A, 1/0\nhalt\n", "1:10", ["division by zero"]),
    (".equ A, 1 << 64\nhalt\n", "1:11", ["shift count 64"]),
    (".equ A, " + "(" * 500 + "1" + ")" * 500 + "\nhalt\n", "1:", ["nested too deeply"]),
    (".equ A, " + "-" * 100000 + "1\nhalt\n", "1:", ["nested too deeply"]),
    ("li r1, f32(abc)\n", "1:12", ["number"]),
    ("a" * 100 + ": halt\n", "1:1", ["longer than 63"]),
    # data
    (".dram 0\n.byte 256\nhalt\n", "2:7", ["256", "out of range"]),
    (".byte 1\nhalt\n", "1:1", ["data section"]),
    ("halt\n.dram 0\n.byte 1,2,3,4\n.dram 2\n.byte 1\n", "4:1", ["overlaps"]),
    (".dram 0x100\n.byte 1\n.org 0x0\nhalt\n", "3:1", ["backwards"]),
    (".org 0xFFFFFFFFFFFF\n", "1:1", ["instruction limit"]),
    (".dram 0\n.zero 0x7FFFFFFFFFFFFFFF\n", "2:1", ["limit"]),
    (".dram 0\n.zero -1\n", "2:7", ["negative"]),
    (".align 3\n", "1:8", ["power of two"]),
    ('.dram 0\n.ascii "abc\n', "2:8", ["unterminated"]),
    ('.dram 0\n.ascii "\\q"\n', "2:9", ["escape"]),
    (".dram 0\nx: .zero 16\n.tensor x, f99, 4\nhalt\n", "3:12", ["f99"]),
    (".dram 0\nx: .zero 16\n.tensor x, f32, -1\nhalt\n", "3:17", ["at least 1"]),
    (".dram 0\nx: .zero 16\n.tensor x, f32, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF\nhalt\n", "3:", ["overflows"]),
    ("x: halt\n.tensor x, f32, 4\n", "2:9", ["code label"]),
    # encoding of the text itself
    ("li r1, 5\0\nhalt\n", "1:9", ["NUL"]),
    ("li r1, 5\x01\nhalt\n", "1:9", ["control character"]),
    (b"li r1, 5 ; \xff\xfe\nhalt\n", "1:12", ["UTF-8"]),
    ("li r1, \u0661\u0662\nhalt\n", "1:8", ["expected a value"]),
    ("", "1:1", ["no instructions"]),
    ("; only a comment\n", "1:1", ["no instructions"]),
]


@pytest.mark.parametrize("src,where,words", ASM_ERRORS, ids=[f"asm{i}" for i in range(len(ASM_ERRORS))])
def test_malformed_assembly(tmp_path, src, where, words):
    f = write(tmp_path / "bad.pasm", src)
    r = run("asm", f, "-o", tmp_path / "out.pmp")
    line = user_error(r, "asm")
    assert f"bad.pasm:{where}" in line, line
    for w in words:
        assert w in line, (w, line)
    assert len(r.stderr.decode("utf-8", "replace").splitlines()) >= 2  # the offending text is shown
    assert listing(tmp_path) == ["bad.pasm"]


@pytest.mark.parametrize("src", ["li r1, 5\r\nhalt\r\n", "\tli\tr1,\t5\n\thalt\n", "li r1, 5 ; \u00fcn\u00efc\u00f8d\u00e9\nhalt\n"])
def test_assembly_whitespace_and_comments_accepted(tmp_path, src):
    f = write(tmp_path / "ok.pasm", src)
    r = run("asm", f, "-o", tmp_path / "ok.pmp")
    assert r.returncode == 0, r.stderr
    r = run("dis", tmp_path / "ok.pmp")
    assert r.returncode == 0 and b"li r1, 5" in r.stdout


@pytest.mark.parametrize("src", [
    "add: halt\njmp add\n",                               # label spelled like a mnemonic
    "dma.ld: nop\njmp dma.ld\nhalt\n",                    # dotted mnemonic as a label
    "nop\nnop\nnop\nexp: nop\nlfu.cfg 0, exp\nhalt\n",   # label spelled like an LFU function
    "nop\nnop\nnop\nall: nop\nfence all\nhalt\n",        # label spelled like a unit mask
    "L1: nop\nnop\njmp 1\nhalt\n",                        # user label L1 beside generated .L1
    ".dram 0\nf32: .word 1\n.text\nli r1, f32(1.0)\nli r2, f32\nhalt\n",
    "halt\nend:\n",                                       # code label at the end of the code
])
def test_colliding_names_round_trip(tmp_path, src):
    """Names that collide with mnemonics, functions, units or generated labels
    assemble, and dis -> asm reproduces the program byte for byte."""
    f = write(tmp_path / "p.pasm", src)
    assert run("asm", f, "-o", tmp_path / "a.pmp").returncode == 0
    r = run("dis", tmp_path / "a.pmp", "-o", tmp_path / "d.pasm")
    assert r.returncode == 0, r.stderr
    r = run("asm", tmp_path / "d.pasm", "-o", tmp_path / "b.pmp")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "a.pmp").read_bytes() == (tmp_path / "b.pmp").read_bytes()


def test_include_cycle(tmp_path):
    write(tmp_path / "a.pasm", '.include "b.pasm"\n')
    write(tmp_path / "b.pasm", '.include "a.pasm"\n')
    line = user_error(run("asm", tmp_path / "a.pasm", "-o", tmp_path / "o.pmp"), "asm")
    assert "include cycle" in line and "b.pasm:1:1" in line
    write(tmp_path / "self.pasm", '.include "self.pasm"\n')
    assert "include cycle" in user_error(run("asm", tmp_path / "self.pasm", "-o", tmp_path / "o.pmp"), "asm")
    assert "o.pmp" not in listing(tmp_path)


@pytest.mark.parametrize("target", ["DIR", "/dev/zero", "/dev/null", "nope.pasm"])
def test_include_of_non_files(tmp_path, target):
    (tmp_path / "sub").mkdir()
    path = str(tmp_path / "sub") if target == "DIR" else target
    f = write(tmp_path / "inc.pasm", f'.include "{path}"\nhalt\n')
    line = user_error(run("asm", f, "-o", tmp_path / "o.pmp", timeout=30), "asm")
    assert "inc.pasm:1:1" in line
    assert "o.pmp" not in listing(tmp_path)


@pytest.mark.parametrize("verb", ["asm", "dis", "sim"])
@pytest.mark.parametrize("path", ["/dev/zero", "DIR"])
def test_program_path_is_not_a_file(tmp_path, verb, path):
    """/dev/zero used to be read until memory ran out (a hang); a directory
    gave a vague 'read error'."""
    p = str(tmp_path) if path == "DIR" else path
    line = user_error(run(verb, p, timeout=60), verb)
    assert p in line
    assert ("is a directory" if path == "DIR" else "not a regular file") in line


def test_million_lines(tmp_path):
    f = tmp_path / "big.pasm"
    with open(f, "w") as out:
        out.write("start:\n")
        out.write("    addi r1, r1, 1\n" * 1_000_000)
        out.write("    halt\n")
    r = run("asm", f, "-o", tmp_path / "big.pmp", timeout=120)
    assert r.returncode == 0, r.stderr
    # too many instructions for the edge engine's instruction memory: a clean load error
    line = user_error(run("sim", tmp_path / "big.pmp", timeout=120), "sim")
    assert "imem_words" in line or "instruction memory" in line, line


def test_code_size_limit(tmp_path):
    f = tmp_path / "huge.pasm"
    with open(f, "w") as out:
        out.write("    nop\n" * (1 << 20))
        out.write("    halt\n")
    line = user_error(run("asm", f, "-o", tmp_path / "o.pmp", timeout=120), "asm")
    assert "huge.pasm:1048577:" in line and "1048576 instructions" in line


def test_very_long_lines(tmp_path):
    f = write(tmp_path / "c.pasm", "li r1, 5 ;" + "x" * (8 << 20) + "\nhalt\n")
    assert run("asm", f, "-o", tmp_path / "c.pmp").returncode == 0
    f = write(tmp_path / "t.pasm", "li r1, " + "a" * (1 << 20) + "\nhalt\n")
    r = run("asm", f, "-o", tmp_path / "t.pmp")
    line = user_error(r, "asm")
    assert "t.pasm:1:8" in line and "longer than 63" in line
    assert len(r.stderr) < 2000  # the context is a window, not the whole line


# --------------------------------------------------------------------------
# Corrupt program files
# --------------------------------------------------------------------------

def assembled(tmp_path, src, name="p"):
    f = write(tmp_path / f"{name}.pasm", src)
    r = run("asm", f, "-o", tmp_path / f"{name}.pmp")
    assert r.returncode == 0, r.stderr
    return (tmp_path / f"{name}.pmp").read_bytes()


def header(b):
    return struct.unpack_from("<4sHHIIIIQQQ", b, 0)


CORRUPTIONS = {
    "magic": lambda b: b"XXXX" + b[4:],
    "version": lambda b: b[:4] + struct.pack("<H", 99) + b[6:],
    "flags": lambda b: b[:6] + struct.pack("<H", 1) + b[8:],
    "entry": lambda b: b[:8] + struct.pack("<I", 0xFFFFFFFF) + b[12:],
    "code_count_zero": lambda b: b[:12] + struct.pack("<I", 0) + b[16:],
    "code_count_huge": lambda b: b[:12] + struct.pack("<I", 0xFFFFFFFF) + b[16:],
    "section_count_huge": lambda b: b[:16] + struct.pack("<I", 0x7FFFFFFF) + b[20:],
    "symbol_count_huge": lambda b: b[:20] + struct.pack("<I", 0xFFFFFFFF) + b[24:],
    "code_offset_huge": lambda b: b[:24] + struct.pack("<Q", 2**64 - 8) + b[32:],
    "section_offset_huge": lambda b: b[:32] + struct.pack("<Q", 2**63) + b[40:],
    "symbol_offset_huge": lambda b: b[:40] + struct.pack("<Q", 2**64 - 1) + b[48:],
    "truncated_header": lambda b: b[:47],
    "truncated_tail": lambda b: b[:-1],
    "trailing": lambda b: b + b"\0",
    "bad_opcode": lambda b: b[:48] + b"\xff" + b[49:],
    "spare_bits": lambda b: b[:55] + b"\x80" + b[56:],
}


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_corrupt_program_file(tmp_path, kind):
    good = assembled(tmp_path, ".dram 0\nx: .word 1, 2\n.tensor x, f32, 2\n.text\nstart: li r1, 1\nhalt\n")
    bad = write(tmp_path / "bad.pmp", CORRUPTIONS[kind](good))
    before = listing(tmp_path)
    line = user_error(run("dis", bad, "-o", tmp_path / "o.pasm"), "dis")
    assert "bad.pmp" in line and "byte" in line, line
    user_error(run("sim", bad, "--output", f"x={tmp_path / 'x.npy'}"), "sim")
    assert listing(tmp_path) == before


@pytest.mark.parametrize("target", [5, 0xFFFFFFFF, 0x80000000])
def test_branch_out_of_range_in_program_file(tmp_path, target):
    """The assembler refuses such a branch; a hand-made file gets a runtime
    fault naming the instruction, and dis refuses to print it."""
    b = bytearray(assembled(tmp_path, "jmp 1\nhalt\n"))
    code = header(b)[7]
    word = struct.unpack_from("<Q", b, code)[0]
    struct.pack_into("<Q", b, code, (word & 0xFF) | (target << 8))
    f = write(tmp_path / "j.pmp", bytes(b))
    e, pc, mn, cause = fault(run("sim", f))
    assert (e, pc, mn) == (0, 0, "jmp") and f"branch target {target}" in cause
    assert "branches to" in user_error(run("dis", f), "dis")


# --------------------------------------------------------------------------
# Absurd configs
# --------------------------------------------------------------------------

HALT = "halt\n"

CONFIG_ERRORS = [
    ("base = edge\n[chip]\nengines = 64\n[dram]\nbytes = 1\n", "dram.bytes"),
    ("base = edge\n[chip]\nengines = 65\n", "chip.engines"),
    ("base = edge\n[sram]\nbytes = 0\n", "sram.bytes"),
    ("base = edge\n[dram]\nbytes = 0\n", "dram.bytes"),
    ("base = edge\n[dram]\nbytes = 99999999 GiB\n", "dram.bytes"),
    ("base = edge\n[dram]\nbytes = 18446744073709551616\n", "dram.bytes"),
    ("base = edge\n[sram]\nbytes = 1 GiB\n[chip]\nengines = 64\n", "dram.bytes"),
    ("base = edge\n[chip]\nclock_mhz = 0\n", "chip.clock_mhz"),
    ("base = edge\n[chip]\nclock_mhz = -5\n", "chip.clock_mhz"),
    ("base = edge\n[chip]\nclock_mhz = nan\n", "chip.clock_mhz"),
    ("base = edge\n[chip]\nclock_mhz = inf\n", "chip.clock_mhz"),
    ("base = edge\n[chip]\nclock_mhz = 1e999\n", "chip.clock_mhz"),
    ("base = edge\n[dram]\nbandwidth_gbps = 0\n", "dram.bandwidth_gbps"),
    ("base = edge\n[dram]\nlatency_ns = 1e300\n", "dram.latency_ns"),
    ("base = edge\n[control]\nwatchdog_instructions = 0\n", "control.watchdog_instructions"),
    ("base = edge\n[control]\nqueue_depth = 0\n", "control.queue_depth"),
    ("base = edge\n[control]\nimem_words = 0\n", "control.imem_words"),
    ("base = edge\n[control]\nimem_words = 4294967296\n", "control.imem_words"),
    ("base = edge\n[chip]\nflags = 0\n", "chip.flags"),
    ("base = edge\n[vector]\nlanes = 12\n", "vector.lanes"),
    ("base = edge\n[energy]\ndram_pj_per_byte = -1\n", "energy.dram_pj_per_byte"),
    ("[chip]\nengines = 1\n", "missing"),
    ("", "missing"),
    ("base = nosuch\n", "nosuch"),
    ("base = fpga\nbase = edge\n", "base"),
    ("[chip\nengines = 1\n", "']'"),
    ("base = edge\n#" + "x" * 5000 + "\n", "line too long"),
    ("base = edge\nname = \u00e9dge\n", "name"),
    ("\x89PNG\r\n\x1a\n\0\0", "bad.cfg:1"),
]


@pytest.mark.parametrize("text,words", CONFIG_ERRORS, ids=[f"cfg{i}" for i in range(len(CONFIG_ERRORS))])
def test_absurd_config(tmp_path, text, words):
    cfg = write(tmp_path / "bad.cfg", text)
    prog = write(tmp_path / "h.pasm", HALT)
    line = user_error(run("sim", prog, "--config", cfg), "sim")
    assert "bad.cfg" in line and words in line, line


@pytest.mark.parametrize("path", ["/dev/zero", "/dev/null", "DIR", "missing.cfg"])
def test_config_path_is_not_a_config(tmp_path, path):
    p = str(tmp_path) if path == "DIR" else str(tmp_path / path) if path == "missing.cfg" else path
    line = user_error(run("sim", write(tmp_path / "h.pasm", HALT), "--config", p, timeout=60), "sim")
    assert p in line


def test_largest_config_runs(tmp_path):
    """Every size at its maximum: 64 engines, 1 GiB SRAM and accumulator each,
    1 TiB of DRAM, 16 Mi instruction words. Memory is allocated lazily."""
    cfg = write(tmp_path / "max.cfg", "base = edge\n[chip]\nengines = 64\n[sram]\nbytes = 1 GiB\n"
                "accumulator_bytes = 1 GiB\n[dram]\nbytes = 1024 GiB\n[control]\nimem_words = 16777216\n")
    r = run("sim", write(tmp_path / "h.pasm", HALT), "--config", cfg, "--json", timeout=300)
    assert r.returncode == 0, r.stderr


# --------------------------------------------------------------------------
# Programs that misbehave at run time
# --------------------------------------------------------------------------

SHAPE64 = "li r1, 64\nli r2, 1\ndma.shape r1, r2, r2\n"

RUNTIME_FAULTS = [
    # (source, pc, mnemonic, words of the cause)
    (SHAPE64 + "li r3, 0\nli r4, 0x100000000\ndma.ld r3, r4\nhalt\n", 5, "dma.ld",
     ["DRAM read [0x100000000, 0x100000040)", "out of bounds"]),
    (SHAPE64 + "li r3, 0x200000\nli r4, 0\ndma.ld r3, r4\nhalt\n", 5, "dma.ld",
     ["SRAM write [0x200000, 0x200040)", "out of bounds"]),
    (SHAPE64 + "li r3, 0\nli r4, 0xFFFFFFFC0\ndma.st r4, r3\nhalt\n", 5, "dma.st",
     ["DRAM write [0xfffffffc0, 0x1000000000)", "out of bounds"]),
    (SHAPE64 + "li r3, 0x1FFFF0\nli r4, 0\ndma.st r4, r3\nhalt\n", 5, "dma.st",
     ["SRAM read [0x1ffff0, 0x200030)", "out of bounds"]),
    ("li r1, 0x100000000\nli r2, 0x100000000\nli r7, 0x10000\ndma.shape r1, r2, r7\n"
     "li r3, 0\nli r4, 0\ndma.ld r3, r4\nhalt\n", 6, "dma.ld", ["more than the engine's SRAM"]),
    ("li r1, -1\nli r2, 1\ndma.shape r1, r2, r2\nli r3, 0\nli r4, 0\ndma.ld r3, r4\nhalt\n", 5, "dma.ld",
     ["empty or negative"]),
    ("li r1, 1\nli r2, -1\ndma.shape r1, r2, r2\nli r3, 0\nli r4, 0\ndma.ld r3, r4\nhalt\n", 5, "dma.ld",
     ["empty or negative"]),
    ("li r3, 0\nli r4, 0\ndma.ld r3, r4\nhalt\n", 2, "dma.ld", ["empty"]),
    # vector ops: huge, negative, out of range, wrapping post-increment
    ("li r1, 0x10000000000\nli r2, 0\nvadd.f32 r2, r2, r2, r1\nhalt\n", 2, "vadd", ["out of bounds"]),
    ("li r1, 0x100000000000\nli r2, 0\nvadd.f32 r2, r2, r2, r1\nhalt\n", 2, "vadd", ["too large"]),
    ("li r1, -1\nli r2, 0\nvadd.f32 r2, r2, r2, r1\nhalt\n", 2, "vadd", ["n = -1", "negative"]),
    ("li r1, 1\nli r2, 0x200000\nli r3, 0\nvadd.f32 r3, r2, r3, r1\nhalt\n", 3, "vadd",
     ["SRAM read [0x200000, 0x200004) through r2"]),
    ("li r1, 1\nli r2, -4\nli r3, 0\nvadd.f32 r3, r2, r3, r1\nhalt\n", 3, "vadd", ["through r2", "out of bounds"]),
    ("li r1, 16\nli r2, -1\nshri r2, r2, 1\nli r3, 0\nvadd.f32 r3, r2+, r3, r1\nhalt\n", 4, "vadd",
     ["through r2", "out of bounds"]),
    ("li r1, 16\nli r2, 0\nvadd.e4m3 r2, r2, r2, r1\nhalt\n", 2, "vadd", ["e4m3 not supported"]),
    ("li r1, 0xFFFFFFFFFF\nli r4, 0xFFFFFFFFFF\nli r2, 0\nvredsum.f32 r2, r2, r1, r4\nhalt\n", 3, "vredsum",
     ["too large"]),
    ("li r1, 0xFFFFFFFFFF\nli r4, 0xFFFFFFFFFF\nli r2, 0\nvaddr.f32 r2, r2, r2, r1, r4\nhalt\n", 3, "vaddr",
     ["too large"]),
    # vcvt with block formats and a count that is not a whole number of blocks
    ("li r1, 48\nli r2, 0\nli r3, 0x1000\nvcvt.mxfp4.f32 r3, r2, r1\nhalt\n", 3, "vcvt",
     ["n = 48", "mxfp4", "32 elements"]),
    ("li r1, 15\nli r2, 0\nli r3, 0x1000\nvcvt.f32.nvfp4 r3, r2, r1\nhalt\n", 3, "vcvt", ["nvfp4", "16 elements"]),
    ("li r1, 33\nli r2, 0\nli r3, 0x1000\nvcvt.q4_0.q8_0 r3, r2, r1\nhalt\n", 3, "vcvt", ["32 elements"]),
    ("li r1, 3\nli r2, 0\nli r3, 0x1000\nvcvt.int4.f32 r3, r2, r1\nhalt\n", 3, "vcvt", ["int4"]),
    # scalar loads and stores
    ("li r1, 1\nlw r2, r1, 0\nhalt\n", 1, "lw", ["not 4-byte aligned"]),
    ("li r1, 2\nsw r2, r1, 0\nhalt\n", 1, "sw", ["not 4-byte aligned"]),
    ("li r1, 0x200000\nlw r2, r1, 0\nhalt\n", 1, "lw", ["SRAM read [0x200000, 0x200004)"]),
    ("li r1, 0x1FFFFC\nlw r2, r1, 4\nhalt\n", 1, "lw", ["out of bounds"]),
    ("li r1, 0\nlw r2, r1, -4\nhalt\n", 1, "lw", ["out of bounds"]),
    ("li r1, -1\nshri r1, r1, 1\nsw r2, r1, 2147483647\nhalt\n", 2, "sw", ["out of bounds"]),
    ("li r1, 1\nshli r1, r1, 63\nsw r2, r1, -4\nhalt\n", 2, "sw", ["out of bounds"]),
    # control flow
    ("nop\n", 1, "end of program", ["without halt"]),
    ("flag.wait 0, 1\nhalt\n", 0, "flag.wait", ["can never be satisfied"]),
    ("li r1, 5\nflag.waitr 0, r1\nhalt\n", 1, "flag.waitr", ["can never be satisfied"]),
    ("flag.set 200, 1\nhalt\n", 0, "flag.set", ["flag 200", "32 flags"]),
    # LFU
    ("li r1, 16\nli r2, 0\nlfu.f32 0, r2, r2, r1\nhalt\n", 2, "lfu", ["slot 0 is empty"]),
    ("lfu.cfg 5, exp\nhalt\n", 0, "lfu.cfg", ["slot 5", "4 slots"]),
    ("li r2, 0\nli r3, 0xDEADBEEF\nsw r3, r2, 0\nlfu.ld 0, r2\nhalt\n", 3, "lfu.ld", ["malformed LFU table", "PMLF"]),
    ("li r2, 0\nlfu.ld 0, r2\nhalt\n", 1, "lfu.ld", ["malformed LFU table"]),
    ("li r2, 0x1FFFFC\nli r3, 0x464C4D50\nsw r3, r2, 0\nlfu.ld 0, r2\nhalt\n", 3, "lfu.ld", ["malformed LFU table"]),
    ("li r2, -4\nlfu.ld 0, r2\nhalt\n", 1, "lfu.ld", ["outside SRAM"]),
    ("li r1, 16\nli r2, 0\nlfu.cfg 0, exp\nlfu.e4m3 0, r2, r2, r1\nhalt\n", 3, "lfu", ["e4m3 not supported"]),
    ("li r1, -16\nli r2, 0\nlfu.cfg 0, exp\nlfu.f32 0, r2, r2, r1\nhalt\n", 3, "lfu", ["negative"]),
]


@pytest.mark.parametrize("src,pc,mnemonic,words", RUNTIME_FAULTS, ids=[f"fault{i}" for i in range(len(RUNTIME_FAULTS))])
def test_runtime_fault(tmp_path, src, pc, mnemonic, words):
    prog = write(tmp_path / "f.pasm", ".dram 0x1000\nout:\n.tensor out, f32, 4\n.text\n" + src)
    out = tmp_path / "out.npy"
    e, got_pc, got_mn, cause = fault(run("sim", prog, "--output", f"out={out}", timeout=60))
    assert (e, got_pc, got_mn) == (0, pc, mnemonic), cause
    for w in words:
        assert w in cause, (w, cause)
    assert listing(tmp_path) == ["f.pasm"]  # a faulted run writes no output


def test_watchdog(tmp_path):
    prog = write(tmp_path / "w.pasm", "a: jmp a\n")
    e, pc, mn, cause = fault(run("sim", prog, "--max-instructions", "1000"))
    assert (e, pc, mn) == (0, 0, "jmp") and "watchdog: 1000 instructions" in cause
    prog = write(tmp_path / "l.pasm", "li r1, 0\na: loop r1, a\nhalt\n")  # loop r0-style: 2^64 iterations
    assert "watchdog" in fault(run("sim", prog, "--max-instructions", "5000"))[3]
    prog = write(tmp_path / "s.pasm", "a: flag.wait 0, 0\njmp a\n")  # spinning on a satisfied wait
    assert "watchdog" in fault(run("sim", prog, "--max-instructions", "1000"))[3]


def test_watchdog_default_from_config(tmp_path):
    cfg = write(tmp_path / "w.cfg", "base = edge\n[control]\nwatchdog_instructions = 777\n")
    prog = write(tmp_path / "w.pasm", "a: jmp a\n")
    assert "watchdog: 777 instructions" in fault(run("sim", prog, "--config", cfg))[3]


def test_two_engines_deadlocked(tmp_path):
    cfg = write(tmp_path / "two.cfg", "base = edge\n[chip]\nengines = 2\n")
    prog = write(tmp_path / "d.pasm", "csrr r1, engine_id\nbeq r1, zero, e0\nflag.wait 1, 1\nflag.set 0, 1\nhalt\n"
                 "e0: flag.wait 0, 1\nflag.set 1, 1\nhalt\n")
    e, pc, mn, cause = fault(run("sim", prog, "--config", cfg))
    assert mn == "flag.wait" and "can never be satisfied" in cause
    assert (e, pc) in ((0, 5), (1, 2))


def test_wait_for_a_halted_engine(tmp_path):
    cfg = write(tmp_path / "two.cfg", "base = edge\n[chip]\nengines = 2\n")
    prog = write(tmp_path / "d.pasm", "csrr r1, engine_id\nbeq r1, zero, e0\nhalt\ne0: flag.wait 0, 1\nhalt\n")
    assert fault(run("sim", prog, "--config", cfg))[:3] == (0, 3, "flag.wait")


def test_post_increment_wraps_without_fault(tmp_path):
    """Post-increment is 64-bit wrapping arithmetic: the register may wrap
    past 2^64; only a later access through it faults."""
    prog = write(tmp_path / "p.pasm", "li r1, 16\nli r3, -64\nli r4, 0\n"
                 "vadd.f32 r4, r4, r4, r1\nvadd.f32 r4, r3+, r4, r1\nhalt\n")
    e, pc, mn, cause = fault(run("sim", prog))
    assert (pc, mn) == (4, "vadd") and "through r3" in cause


@pytest.mark.parametrize("value,ok", [("0", False), ("-5", False), ("0x10", False), ("18446744073709551616", False),
                                       ("18446744073709551615", True), ("1", None)])
def test_max_instructions_extremes(tmp_path, value, ok):
    prog = write(tmp_path / "h.pasm", "nop\nhalt\n")
    r = run("sim", prog, "--max-instructions", value)
    if ok is True:
        assert r.returncode == 0, r.stderr
    elif ok is None:
        assert "watchdog: 1 instruction without halt" in fault(r)[3]
    else:
        assert "--max-instructions" in user_error(r, "sim")


# --------------------------------------------------------------------------
# --input / --output / --trace
# --------------------------------------------------------------------------

IO_PROGRAM = """
        .dram 0
x:      .zero 64
        .tensor x, f32, 4, 4
q:      .zero 64
        .tensor q, int8, 8, 8
m:      .zero 34
        .tensor m, mxfp4, 64
        .dram 0x10000
big:
        .tensor big, f32, 0xFFFFFFF, 0xFFFFFF
        .dram 0xFFFFFFF0
edge:
        .tensor edge, f32, 16
        .sram 0x1FFFF0
sedge:
        .tensor sedge, f32, 16
        .sram 0x100
s:      .zero 16
        .tensor s, bf16, 8
notens: .zero 4
        .text
        halt
"""


@pytest.fixture
def io(tmp_path):
    d = tmp_path / "io"
    d.mkdir()
    write(d / "io.pasm", IO_PROGRAM)
    np.save(d / "f44.npy", np.ones((4, 4), np.float32))
    return d


def npy_bytes(arr):
    import io as _io
    buf = _io.BytesIO()
    np.save(buf, arr, allow_pickle=True)
    return buf.getvalue()


GOOD = npy_bytes(np.ones((4, 4), np.float32))

BAD_INPUTS = [
    ("x", npy_bytes(np.ones(16, np.float32)), "shape (16,)"),
    ("x", npy_bytes(np.float32(1)), "shape ()"),
    ("x", npy_bytes(np.ones((4, 4), np.int32)), "int32"),
    ("x", npy_bytes(np.ones((4, 4), bool)), "bool"),
    ("q", npy_bytes((np.arange(64) * 10).reshape(8, 8)), "element 13 does not fit int8"),
    ("q", npy_bytes(np.full((8, 8), 2**63, np.uint64)), "element 0 does not fit"),
    ("q", npy_bytes(np.ones((8, 8), np.float32)), "float32"),
    ("x", npy_bytes(np.ones((4, 4), np.complex64)), "'<c8'"),
    ("x", npy_bytes(np.array([["a"] * 4] * 4)), "'<U1'"),
    ("x", npy_bytes(np.array([[None] * 4] * 4, dtype=object)), "object"),
    ("x", npy_bytes(np.ones((4, 4), ">f4")), "big-endian"),
    ("x", npy_bytes(np.asfortranarray(np.ones((4, 4), np.float32))), "fortran_order"),
    ("x", npy_bytes(np.zeros(4, dtype=[("a", "<f4"), ("b", "<i4")])), "structured"),
    ("x", GOOD[:-3], "truncated"),
    ("x", GOOD + b"x", "1 bytes after the data"),
    ("x", GOOD[:20], "runs past the end"),
    ("x", b"hello world" * 10, "bad magic"),
    ("x", b"", "bad magic"),
    ("x", GOOD[:8] + b"\xff\xff" + GOOD[10:], "header length 65535"),
    ("x", GOOD[:6] + b"\x09" + GOOD[7:], "version 9.0"),
    ("x", GOOD.replace(b"(4, 4)", b"(4,-4)"), "header byte"),
    ("x", GOOD.replace(b"(4, 4)", b"(9999999999999999999999, 4)"[:6]), "header byte"),
    ("x", GOOD.replace(b"'descr'", b"'dascr'"), "header byte"),
]


@pytest.mark.parametrize("name,data,words", BAD_INPUTS, ids=[f"in{i}" for i in range(len(BAD_INPUTS))])
def test_bad_input_npy(io, name, data, words):
    f = write(io / "in.npy", data)
    before = listing(io)
    line = user_error(run("sim", io / "io.pasm", "--input", f"{name}={f}", "--output", f"x={io / 'o.npy'}"), "sim")
    assert words in line, line
    assert "in.npy" in line
    assert listing(io) == before


@pytest.mark.parametrize("spec,words", [
    ("x", "expected NAME=FILE.npy"), ("=f44.npy", "expected NAME=FILE.npy"), ("x=", "expected NAME=FILE.npy"),
    ("notens=f44.npy", "without .tensor"), ("zz=f44.npy", "no tensor of that name"),
    ("x=/dev/zero", "not a regular file"), ("x=DIR", "is a directory"), ("x=missing.npy", "cannot open"),
])
def test_bad_input_spec(io, spec, words):
    spec = spec.replace("DIR", str(io)).replace("f44.npy", str(io / "f44.npy")).replace("missing", str(io / "missing"))
    line = user_error(run("sim", io / "io.pasm", "--input", spec, timeout=60), "sim")
    assert words in line, line


@pytest.mark.parametrize("opt,name", [("--output", "big"), ("--output", "edge"), ("--input", "edge"),
                                      ("--output", "sedge")])
def test_tensor_outside_memory(io, opt, name):
    """A declared tensor larger than the memory, or running past its end, is
    refused before the run (`big` used to abort the sanitizer build on a
    multi-petabyte allocation)."""
    np.save(io / "e.npy", np.ones(16, np.float32))
    f = io / ("e.npy" if opt == "--input" else "o.npy")
    before = listing(io)
    line = user_error(run("sim", io / "io.pasm", opt, f"{name}={f}"), "sim")
    assert f"{opt} {name}: the tensor" in line and "does not fit in" in line, line
    assert listing(io) == before


def test_input_bound_twice(io):
    f = io / "f44.npy"
    assert "bound twice" in user_error(run("sim", io / "io.pasm", "--input", f"x={f}", "--input", f"x={f}"), "sim")


@pytest.mark.parametrize("dest", ["/nonexistent/dir/o.npy", "DIR"])
def test_output_unwritable(io, dest):
    dest = str(io) if dest == "DIR" else dest
    before = listing(io)
    line = user_error(run("sim", io / "io.pasm", "--output", f"x={dest}"), "sim")
    assert dest in line
    assert listing(io) == before


def test_outputs_are_all_or_nothing(io):
    """Two outputs, the second unwritable: neither appears (the first used to
    be left behind on its own)."""
    before = listing(io)
    r = run("sim", io / "io.pasm", "--output", f"x={io / 'x.npy'}", "--output", "q=/nonexistent/dir/q.npy")
    assert "/nonexistent/dir/q.npy" in user_error(r, "sim")
    assert listing(io) == before


def test_output_to_device_keeps_the_device(io, tmp_path):
    """A result written to an existing FIFO goes into the FIFO; the FIFO is not
    replaced by a regular file (with /dev/null as root, the device was)."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = subprocess.Popen(["cat", str(fifo)], stdout=subprocess.PIPE)
    r = run("sim", io / "io.pasm", "--output", f"x={fifo}")
    data = reader.communicate(timeout=30)[0]
    assert r.returncode == 0, r.stderr
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert data[:6] == b"\x93NUMPY"


def test_same_output_path_twice(io):
    o = io / "o.npy"
    line = user_error(run("sim", io / "io.pasm", "--output", f"x={o}", "--output", f"q={o}"), "sim")
    assert "o.npy" in line and "twice" in line
    assert "o.npy" not in listing(io)


@pytest.mark.parametrize("dest", ["/nonexistent/t.json", "DIR"])
def test_trace_unwritable(io, dest):
    dest = str(io) if dest == "DIR" else dest
    before = listing(io)
    line = user_error(run("sim", io / "io.pasm", "--trace", dest, "--output", f"x={io / 'x.npy'}"), "sim")
    assert dest in line
    assert listing(io) == before


def test_trace_of_a_faulted_run_is_complete(tmp_path):
    """docs/simulator.md: the trace of a faulted run is written whole, with
    the run's status; no output file is written."""
    import json
    prog = write(tmp_path / "f.pasm", ".dram 0\nx: .zero 16\n.tensor x, f32, 4\n.text\nnop\nli r1, 1\nlw r2, r1, 0\nhalt\n")
    r = run("sim", prog, "--trace", tmp_path / "t.json", "--output", f"x={tmp_path / 'x.npy'}")
    assert fault(r)[2] == "lw"
    trace = json.loads((tmp_path / "t.json").read_text())
    assert trace["traceEvents"]
    assert "x.npy" not in listing(tmp_path)


# --------------------------------------------------------------------------
# Standard output that cannot be written
# --------------------------------------------------------------------------

@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("args", [["presets"], ["presets", "edge"], ["--help"], ["sim", "--help"], ["help", "asm"],
                                  ["--version"], ["sim", "PROG"], ["sim", "PROG", "--json"], ["dis", "PMP"]])
def test_stdout_write_failure_is_an_error(tmp_path, args):
    prog = write(tmp_path / "h.pasm", HALT)
    assert run("asm", prog, "-o", tmp_path / "h.pmp").returncode == 0
    args = [str(prog) if a == "PROG" else str(tmp_path / "h.pmp") if a == "PMP" else a for a in args]
    with open("/dev/full", "wb") as full:
        r = subprocess.run([str(POLYMORPH), *args], stdout=full, stderr=subprocess.PIPE, timeout=60)
    assert r.returncode == 1, (args, r.returncode)
    assert b"cannot write to standard output" in r.stderr


# --------------------------------------------------------------------------
# Known defects in files owned by the simulator's maintainer (src/sim/):
# kept here as expected failures until they are fixed there.
# --------------------------------------------------------------------------

DMA_RANGE = re.compile(r"(DRAM|SRAM) (read|write) \[(-?0x[0-9a-f]+), (-?0x[0-9a-f]+)\) is out of bounds "
                       r"\((?:DRAM|SRAM) is (0x[0-9a-f]+) bytes\)")


@pytest.mark.parametrize("setup", [
    "li r3, 0\nli r4, -64\n",                                                   # DRAM base below 0
    "li r3, -1\nli r4, 0\n",                                                    # SRAM base below 0
    "li r5, -1000\nli r6, 0\nli r2, 4\ndma.shape r1, r2, r7\ndma.stride r5, r6, r6, r6\nli r3, 0\nli r4, 0\n",
])
def test_dma_fault_names_the_range_accessed(tmp_path, setup):
    prog = write(tmp_path / "d.pasm", "li r1, 64\nli r2, 1\nli r7, 1\ndma.shape r1, r2, r7\n" + setup +
                 "dma.ld r3, r4\nhalt\n")
    e, pc, mn, cause = fault(run("sim", prog))
    assert mn == "dma.ld"
    m = DMA_RANGE.search(cause)
    assert m, cause
    lo, hi, size = (int(g.replace("0x", ""), 16) if not g.startswith("-") else -int(g[3:], 16)
                    for g in (m.group(3), m.group(4), m.group(5)))
    assert hi > lo, cause                                          # a real, non-empty range
    assert lo < 0 or lo >= 2**63 or hi > size, cause               # and really out of bounds


def test_dma_zero_stride_runaway_is_bounded(tmp_path):
    prog = write(tmp_path / "d.pasm", "li r1, 1\nli r2, 0x2000000\ndma.shape r1, r2, r2\n"
                 "dma.stride r0, r0, r0, r0\nli r3, 0\nli r4, 0\ndma.ld r3, r4\nhalt\n")
    r = run("sim", prog, timeout=15)
    assert "dma.ld" in user_error(r, "sim")
