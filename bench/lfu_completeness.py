#!/usr/bin/env python3
"""Univariate completeness of LFU tables: for a suite of continuous
functions (smooth, oscillating, with kinks), fit each with
`polymorph fit ... --json` at G = 2, 4, ..., 1024 segments and degree
D = 1, 2, 3, and show the max absolute error against G on a log-log plot
(written by hand as SVG: docs/img/lfu_completeness.svg). Prints the fitted
slope of log(error) against log(G) per function and degree: about -(D+1)
for smooth functions, -1 for a kink inside a segment, whatever D.

usage: python3 bench/lfu_completeness.py [--polymorph build/polymorph]
           [--svg docs/img/lfu_completeness.svg] [--json results.json] [--quick]
Takes a few minutes (240 fits, each measured over ~1.3 million inputs);
--quick uses G = 4, 16, 64, 256 only.
"""
import argparse
import json
import math
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]

# (label, expression, domain, kind)
SUITE = [
    ("exp(x)", "exp(x)", (-2.0, 2.0), "smooth"),
    ("tanh(x)", "tanh(x)", (-3.0, 3.0), "smooth"),
    ("exp(-x^2)", "exp(-x^2)", (-3.0, 3.0), "smooth"),
    ("sin(10x)", "sin(10*x)", (-1.0, 1.0), "oscillating"),
    ("sin(1/(x+1.1))", "sin(1/(x+1.1))", (-1.0, 1.0), "oscillating"),
    ("|x-0.3|", "abs(x-0.3)", (-1.0, 1.0), "kink inside a segment"),
    ("max(x-0.3,0)^2", "max(x-0.3,0)^2", (-1.0, 1.0), "kink in f' inside a segment"),
    ("|x|", "abs(x)", (-1.0, 1.0), "kink on a boundary"),
]
COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"]


def fit(polymorph, expr, domain, g, d):
    out = subprocess.run([str(polymorph), "fit", expr, "--domain", f"{domain[0]!r},{domain[1]!r}", "--segments", str(g),
                          "--degree", str(d), "--json"], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        sys.exit(f"lfu_completeness: polymorph fit {expr} failed: {out.stderr.strip()}")
    return json.loads(out.stdout)


def fp32_floor(expr, domain):
    """The error fp32 itself leaves: half an ulp of the largest |f|, from a
    coarse sweep in Python (the same expressions, written with math)."""
    env = {"exp": math.exp, "tanh": math.tanh, "sin": math.sin, "abs": abs, "max": max}
    code = compile(expr.replace("^", "**"), "<expr>", "eval")
    top = max(abs(eval(code, env, {"x": domain[0] + (domain[1] - domain[0]) * i / 1000})) for i in range(1001))
    return 2.0 ** (math.frexp(top)[1] - 25)


def slope(gs, errs, floor):
    """Least-squares slope of log2(err) on log2(G) over the asymptotic range:
    the three largest G whose error is still at least 10x above fp32's floor
    (below it the rounding of fp32 evaluation, not the approximation, is
    measured; small G are not yet asymptotic)."""
    pts = [(math.log2(g), math.log2(e)) for g, e in zip(gs, errs) if e > 10 * floor][-3:]
    if len(pts) < 3:
        return None
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / sum((p[0] - mx) ** 2 for p in pts)


def svg_plot(results, gs, path):
    """Three log-log panels (D = 1, 2, 3), one line per function."""
    pw, ph, ml, mt, gap = 300, 260, 60, 40, 30
    width, height = ml + 3 * pw + 2 * gap + 20, mt + ph + 60 + 17 * len(results)
    emin, emax = -10, 1  # decades shown
    gmin, gmax = math.log2(gs[0]), math.log2(gs[-1])
    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">',
         f'<rect width="{width}" height="{height}" fill="white"/>',
         f'<text x="{width / 2}" y="18" text-anchor="middle" font-size="14">LFU tables: max absolute error vs segments '
         f'(polymorph fit, minimax, fp32 coefficients)</text>']
    for p, d in enumerate((1, 2, 3)):
        x0 = ml + p * (pw + gap)

        def px(g):
            return x0 + (math.log2(g) - gmin) / (gmax - gmin) * pw

        def py(e):
            v = min(max(math.log10(e), emin), emax)
            return mt + (emax - v) / (emax - emin) * ph

        o.append(f'<rect x="{x0}" y="{mt}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>')
        o.append(f'<text x="{x0 + pw / 2}" y="{mt - 6}" text-anchor="middle" font-size="12">degree {d} '
                 f'(smooth: slope -{d + 1})</text>')
        for k in range(emin, emax + 1):
            y = py(10.0 ** k)
            o.append(f'<line x1="{x0}" y1="{y:.1f}" x2="{x0 + pw}" y2="{y:.1f}" stroke="#ddd"/>')
            if p == 0:
                o.append(f'<text x="{x0 - 4}" y="{y + 4:.1f}" text-anchor="end">1e{k}</text>')
        for g in gs:
            x = px(g)
            o.append(f'<line x1="{x:.1f}" y1="{mt}" x2="{x:.1f}" y2="{mt + ph}" stroke="#eee"/>')
            o.append(f'<text x="{x:.1f}" y="{mt + ph + 14}" text-anchor="middle">{g}</text>')
        o.append(f'<text x="{x0 + pw / 2}" y="{mt + ph + 30}" text-anchor="middle">segments G</text>')
        for i, r in enumerate(results):
            pts = " ".join(f"{px(g):.1f},{py(max(e, 1e-12)):.1f}" for g, e in zip(gs, r["errors"][d]))
            o.append(f'<polyline points="{pts}" fill="none" stroke="{COLORS[i]}" stroke-width="1.6"/>')
            for g, e in zip(gs, r["errors"][d]):
                o.append(f'<circle cx="{px(g):.1f}" cy="{py(max(e, 1e-12)):.1f}" r="2" fill="{COLORS[i]}"/>')
    o.append(f'<text transform="translate(14,{mt + ph / 2}) rotate(-90)" text-anchor="middle">max |y - f(x)|</text>')
    for i, r in enumerate(results):
        x, y = ml, mt + ph + 52 + i * 17
        s = " ".join("-" if r["slopes"][d] is None else f"{r['slopes'][d]:.2f}" for d in (1, 2, 3))
        o.append(f'<line x1="{x}" y1="{y - 4}" x2="{x + 22}" y2="{y - 4}" stroke="{COLORS[i]}" stroke-width="2"/>')
        o.append(f'<text x="{x + 28}" y="{y}">{r["label"]} on [{r["domain"][0]:g}, {r["domain"][1]:g}] ({r["kind"]}); '
                 f'slopes D=1,2,3: {s}</text>')
    o.append("</svg>")
    pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(str(path) + ".tmp")
    tmp.write_text("\n".join(o) + "\n")
    tmp.replace(path)  # atomic: never a half-written plot


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--polymorph", default=str(ROOT / "build" / "polymorph"))
    ap.add_argument("--svg", default=str(ROOT / "docs" / "img" / "lfu_completeness.svg"))
    ap.add_argument("--json", help="also write the raw errors as JSON")
    ap.add_argument("--quick", action="store_true", help="G = 4, 16, 64, 256 only")
    a = ap.parse_args()
    gs = [4, 16, 64, 256] if a.quick else [2 ** k for k in range(1, 11)]
    results = []
    for label, expr, domain, kind in SUITE:
        floor = fp32_floor(expr, domain)
        r = {"label": label, "expr": expr, "domain": domain, "kind": kind, "fp32_floor": floor, "errors": {}, "slopes": {}}
        for d in (1, 2, 3):
            r["errors"][d] = [fit(a.polymorph, expr, domain, g, d)["max_abs_err"] for g in gs]
            r["slopes"][d] = slope(gs, r["errors"][d], floor)
        results.append(r)
        s = "  ".join(f"D={d}: {'-' if r['slopes'][d] is None else format(r['slopes'][d], '6.2f')}" for d in (1, 2, 3))
        print(f"{label:16s} {kind:28s} slopes {s}", flush=True)
    svg_plot(results, gs, a.svg)
    if a.json:
        pathlib.Path(a.json).write_text(json.dumps({"segments": gs, "results": results}, indent=1) + "\n")
    print(f"wrote {a.svg}")


if __name__ == "__main__":
    main()
