#!/usr/bin/env python3
"""Decode against the DRAM roofline on every preset: runs `polymorph run
--chat --json` with the default model and a fixed request on each preset (as
`polymorph presets` lists them) and prints, per preset, the simulated decode
tokens/s, the roofline tokens/s (minimum DRAM bytes per token over the
preset's bandwidth), roofline_fraction, energy per token and DRAM bytes per
token. Issue 5's target: roofline_fraction >= 0.85 on edge.

    python3 bench/llm_roofline.py [--model F] [-n 32] [--preset P ...] [--json]
"""
import argparse
import json
import os
import subprocess

from llm_speed import model_path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PROMPT = "Write a short note about lighthouses and the people who kept them."
FIELDS = ("decode_tok_s", "roofline_tok_s", "roofline_fraction", "energy_j_per_token", "dram_bytes_per_token",
          "wall_tok_s")


def presets(binary):
    out = subprocess.run([binary, "presets"], capture_output=True, text=True, check=True)
    return [line.split()[0] for line in out.stdout.splitlines() if line.strip()]


def run(binary, model, preset, n, threads):
    cmd = [binary, "run", "--model", model, "--preset", preset, "--chat", "--prompt", PROMPT, "-n", str(n),
           "--json"]
    if threads:
        cmd += ["--threads", str(threads)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or ["exit %d" % out.returncode])[-1]}
    try:
        j = json.loads(out.stdout)
    except ValueError:
        j = json.loads(out.stdout.strip().splitlines()[-1])
    return {k: j.get(k) for k in FIELDS + ("generated_tokens",)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model")
    ap.add_argument("--polymorph", default=os.path.join(ROOT, os.environ.get("POLYMORPH_BUILD", "build"), "polymorph"))
    ap.add_argument("--preset", action="append", help="repeatable; default: every preset")
    ap.add_argument("-n", type=int, default=32)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    model = model_path(a.model, "llm_roofline")
    names = a.preset or presets(a.polymorph)
    rows = {p: run(a.polymorph, model, p, a.n, a.threads) for p in names}
    if a.json:
        print(json.dumps({"model": model, "n": a.n, "presets": rows}, indent=1))
        return
    print("%-14s %12s %12s %9s %12s %14s %10s" % ("preset", "decode tok/s", "roofline", "fraction", "J/token",
                                                  "DRAM B/token", "wall tok/s"))
    for p, r in rows.items():
        if "error" in r:
            print("%-14s error: %s" % (p, r["error"]))
            continue
        if not r.get("generated_tokens") or r.get("decode_tok_s") is None:
            print("%-14s no decode step ran (generated %s tokens)" % (p, r.get("generated_tokens")))
            continue
        print("%-14s %12.1f %12.1f %9.3f %12.3g %14.4g %10.1f" % (
            p, r["decode_tok_s"], r["roofline_tok_s"], r["roofline_fraction"], r["energy_j_per_token"],
            r["dram_bytes_per_token"], r["wall_tok_s"]))
    edge = rows.get("edge")
    if edge and edge.get("roofline_fraction") is not None:
        print("edge roofline_fraction %.3f (target >= 0.85)" % edge["roofline_fraction"])


if __name__ == "__main__":
    main()
