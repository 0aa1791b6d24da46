#!/usr/bin/env python3
"""Simulator speed beside llama.cpp: in one run, on the same machine and the
same GGUF, greedy generation with llama.cpp (PyPI llama-cpp-python, CPU, one
thread per core) and with `polymorph run` on the simulated engine, alternating
--repeat times; prints each run, the medians and the ratio Polymorph wall
tokens/s / llama.cpp decode tokens/s (issue 5's target: >= 0.5).

llama.cpp's speeds come from its own counters (llama_perf_context: eval time
over single-token evals for decode, prompt-eval time for prefill), so model
load and Python overhead are outside both. Polymorph's is the run's
wall_tok_s: decode tokens per wall second spent in the simulator.

Run with the bench venv (see bench/README.md):
    build/bench-venv/bin/python bench/llm_speed.py [--model F] [-n 64] [--repeat 3] [--json]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PROMPT = ("The history of the printing press begins in the fifteenth century, when a goldsmith in Mainz "
          "combined movable metal type, oil-based ink and a screw press. Within fifty years")


def model_path(arg, who="llm_speed"):
    """--model, else POLYMORPH_MODEL, else what tools/fetch_model.sh prints
    (it fetches the default model once)."""
    path = arg or os.environ.get("POLYMORPH_MODEL")
    if not path:
        out = subprocess.run(["sh", os.path.join(ROOT, "tools", "fetch_model.sh")], capture_output=True, text=True)
        path = out.stdout.strip().splitlines()[-1] if out.returncode == 0 and out.stdout.strip() else ""
    if not path or not os.path.isfile(path):
        sys.exit("%s: no model: pass --model, set POLYMORPH_MODEL, or run tools/fetch_model.sh (online)" % who)
    return path


class LlamaCpp:
    """One llama.cpp context kept open across repeats (as a user keeps it)."""

    def __init__(self, path, threads, n_ctx):
        try:
            import llama_cpp
        except ImportError:
            sys.exit("llm_speed: llama_cpp is not importable: run with build/bench-venv/bin/python "
                     "(pip install -r requirements-bench.txt)")
        self.lc = llama_cpp
        self.llm = llama_cpp.Llama(model_path=path, n_threads=threads, n_threads_batch=threads, n_ctx=n_ctx,
                                   n_gpu_layers=0, seed=0, verbose=False)
        self.version = getattr(llama_cpp, "__version__", "?")

    def run(self, prompt, n):
        llm, lc = self.llm, self.lc
        llm.reset()  # no prompt cache: every repeat prefills the whole prompt
        lc.llama_perf_context_reset(llm.ctx)
        # Greedy, and end-of-text banned so both engines make exactly n tokens.
        ban = {llm.token_eos(): -1e30}
        out = llm.create_completion(prompt, max_tokens=n, temperature=0.0, top_k=1, logit_bias=ban)
        perf = lc.llama_perf_context(llm.ctx)
        return {"text": out["choices"][0]["text"], "generated_tokens": out["usage"]["completion_tokens"],
                "prompt_tokens": out["usage"]["prompt_tokens"],
                "decode_tok_s": 1e3 * perf.n_eval / perf.t_eval_ms if perf.t_eval_ms > 0 else 0.0,
                "prefill_tok_s": 1e3 * perf.n_p_eval / perf.t_p_eval_ms if perf.t_p_eval_ms > 0 else 0.0,
                "decode_evals": perf.n_eval}


def run_polymorph(binary, path, prompt, n, threads, preset):
    cmd = [binary, "run", "--model", path, "--prompt", prompt, "-n", str(n), "--threads", str(threads),
           "--preset", preset, "--json"]
    t0 = time.time()
    out = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.time() - t0
    if out.returncode != 0:
        sys.exit("llm_speed: %s failed (%d): %s" % (" ".join(cmd), out.returncode, out.stderr.strip()[-500:]))
    try:
        j = json.loads(out.stdout)
    except ValueError:
        j = json.loads(out.stdout.strip().splitlines()[-1])
    return {"text": j.get("text", ""), "generated_tokens": j.get("generated_tokens"),
            "prompt_tokens": j.get("prompt_tokens"), "wall_tok_s": j["wall_tok_s"],
            "prefill_wall_tok_s": j.get("prefill_wall_tok_s"), "process_s": wall}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model")
    ap.add_argument("--polymorph", default=os.path.join(ROOT, os.environ.get("POLYMORPH_BUILD", "build"), "polymorph"))
    ap.add_argument("--preset", default="edge")
    ap.add_argument("-n", type=int, default=64, help="generated tokens per run")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="both engines (default: all cores)")
    ap.add_argument("--prompt", default=PROMPT)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if a.repeat < 1 or a.n < 1:
        sys.exit("llm_speed: --repeat and -n must be >= 1")
    path = model_path(a.model)
    # llama.cpp's threads meet at a barrier after every op: on a host whose
    # cores are already busy, n_threads = cores collapses its speed (measured:
    # 1.4-6 tok/s with 2 threads at load 8 on 2 cores, 42 tok/s with 1), so
    # the ratio means something only on a quiet host. Say so in the output.
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    busy = load > 0.5 * (os.cpu_count() or 1)
    if busy:
        print("llm_speed: WARNING: load average %.1f on %d cores before the runs: other work shares the CPU and "
              "the speeds (llama.cpp's above all) are not representative" % (load, os.cpu_count() or 1),
              file=sys.stderr)
    lcpp = LlamaCpp(path, a.threads, n_ctx=512)
    runs = []
    for r in range(a.repeat):
        # Alternate which engine goes first so drift on a shared host hits both.
        order = ("llama.cpp", "polymorph") if r % 2 == 0 else ("polymorph", "llama.cpp")
        rec = {}
        for who in order:
            if who == "llama.cpp":
                rec[who] = lcpp.run(a.prompt, a.n)
            else:
                rec[who] = run_polymorph(a.polymorph, path, a.prompt, a.n, a.threads, a.preset)
        runs.append(rec)
        if not a.json:
            print("run %d: llama.cpp decode %.1f tok/s (prefill %.1f), polymorph %.1f tok/s wall (%s tokens)"
                  % (r + 1, rec["llama.cpp"]["decode_tok_s"], rec["llama.cpp"]["prefill_tok_s"],
                     rec["polymorph"]["wall_tok_s"], rec["polymorph"]["generated_tokens"]), flush=True)
    med = {
        "llama_cpp_decode_tok_s": statistics.median(x["llama.cpp"]["decode_tok_s"] for x in runs),
        "llama_cpp_prefill_tok_s": statistics.median(x["llama.cpp"]["prefill_tok_s"] for x in runs),
        "polymorph_wall_tok_s": statistics.median(x["polymorph"]["wall_tok_s"] for x in runs),
    }
    pf = [x["polymorph"]["prefill_wall_tok_s"] for x in runs if x["polymorph"]["prefill_wall_tok_s"] is not None]
    med["polymorph_prefill_wall_tok_s"] = statistics.median(pf) if pf else None
    ratio = med["polymorph_wall_tok_s"] / med["llama_cpp_decode_tok_s"] if med["llama_cpp_decode_tok_s"] else 0.0
    result = {"model": path, "preset": a.preset, "threads": a.threads, "n": a.n, "repeat": a.repeat,
              "llama_cpp_version": lcpp.version, "load_avg_before": load, "host_busy": busy, "median": med, "ratio": ratio, "target": 0.5,
              "runs": runs}
    if a.json:
        print(json.dumps(result, indent=1))
        return
    print("median of %d: llama.cpp %s decode %.1f tok/s, prefill %.1f tok/s; polymorph (%s) %.1f tok/s wall%s"
          % (a.repeat, lcpp.version, med["llama_cpp_decode_tok_s"], med["llama_cpp_prefill_tok_s"], a.preset,
             med["polymorph_wall_tok_s"],
             "" if pf == [] else ", prefill %.1f tok/s wall" % med["polymorph_prefill_wall_tok_s"]))
    print("ratio polymorph / llama.cpp decode: %.3f (target >= 0.5)" % ratio)


if __name__ == "__main__":
    main()
