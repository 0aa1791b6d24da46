"""KAN oracle tests: the C B-spline basis against an independent Cox-de Boor
recursion in numpy (through ctypes), a trained network read back from its
PMKT file and evaluated in numpy against `polymorph kan eval` (double and
exported LFU fp32), and the CLI's errors and outputs."""
import ctypes
import json
import struct
import subprocess

import numpy as np
import pytest

import pmlib

lib = pmlib.load()  # a handle of its own (argtypes are per handle)
lib.pm_kan_bspline_basis.argtypes = [ctypes.POINTER(ctypes.c_double), ctypes.c_uint32, ctypes.c_uint32, ctypes.c_double,
                                     ctypes.POINTER(ctypes.c_double), ctypes.POINTER(pmlib.PmError)]
lib.pm_kan_bspline_basis.restype = ctypes.c_int


def cox_de_boor(t, k, x):
    """All B_{i,k}(x) on knots t by the textbook recursion (half-open intervals)."""
    n0 = len(t) - 1
    B = np.array([1.0 if t[i] <= x < t[i + 1] else 0.0 for i in range(n0)])
    for p in range(1, k + 1):
        nxt = np.zeros(n0 - p)
        for i in range(n0 - p):
            left = (x - t[i]) / (t[i + p] - t[i]) * B[i] if t[i + p] > t[i] else 0.0
            right = (t[i + p + 1] - x) / (t[i + p + 1] - t[i + 1]) * B[i + 1] if t[i + p + 1] > t[i + 1] else 0.0
            nxt[i] = left + right
        B = nxt
    return B


def c_basis(t, grid, k, x):
    out = (ctypes.c_double * (grid + k))()
    err = pmlib.PmError()
    tt = (ctypes.c_double * len(t))(*t)
    assert lib.pm_kan_bspline_basis(tt, grid, k, x, out, ctypes.byref(err)) == 0, err.message
    return np.array(out[:])


@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("uniform", [True, False])
def test_basis_matches_cox_de_boor(k, uniform):
    rng = np.random.default_rng(k)
    grid = 9
    if uniform:
        t = np.linspace(-1.5, 2.0, grid + 2 * k + 1)
    else:
        t = np.cumsum(rng.uniform(0.1, 1.0, grid + 2 * k + 1)) - 3.0
    xs = np.concatenate([rng.uniform(t[0] - 0.5, t[-1] + 0.5, 300), t])  # knots themselves too
    worst = 0.0
    for x in xs:
        want = cox_de_boor(t, k, x)
        got = c_basis(t, grid, k, x)
        worst = max(worst, np.max(np.abs(got - want)))
    assert worst < 1e-14


def run(*args, check=True):
    r = subprocess.run([str(pmlib.POLYMORPH), *args], capture_output=True, text=True)
    if check:
        assert r.returncode == 0, r.stderr
    return r


def read_pmkt(path):
    """Independent PMKT reader (docs/kan.md layout)."""
    b = open(path, "rb").read()
    assert b[:4] == b"PMKT"
    depth = struct.unpack_from("<I", b, 8)[0]
    width = struct.unpack_from(f"<{depth + 1}I", b, 12)
    at = 12 + 4 * (depth + 1)
    layers = []
    for l in range(depth):
        g, k = struct.unpack_from("<II", b, at)
        at += 8
        layers.append([g, k])
    for l in range(depth):
        g, k = layers[l]
        n_in, n_out = width[l], width[l + 1]
        def take(count):
            nonlocal at
            v = np.frombuffer(b, "<f8", count, at)
            at += 8 * count
            return v
        knots = take(n_in * (g + 2 * k + 1)).reshape(n_in, g + 2 * k + 1)
        coef = take(n_in * n_out * (g + k)).reshape(n_in, n_out, g + k)
        sb = take(n_in * n_out).reshape(n_in, n_out)
        sp = take(n_in * n_out).reshape(n_in, n_out)
        layers[l] = dict(g=g, k=k, knots=knots, coef=coef, sb=sb, sp=sp)
    assert at == len(b)
    return width, layers


def numpy_forward(layers, x):
    a = x.astype(np.float64)
    for L in layers:
        n_in, n_out = L["sb"].shape
        out = np.zeros((a.shape[0], n_out))
        for s in range(a.shape[0]):
            for i in range(n_in):
                B = cox_de_boor(L["knots"][i], L["k"], a[s, i])
                silu = a[s, i] / (1 + np.exp(-a[s, i]))
                out[s] += L["sb"][i] * silu + L["sp"][i] * (L["coef"][i] @ B)
        a = out
    return a


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("kan")
    r = run("kan", "train", "--function", "x*y + sin(x)", "--shape", "2,3,1", "--grid", "6", "--steps", "15", "--seed", "4",
            "--json", "--quiet", "-o", str(d / "m.pmkt"), "--export", str(d / "m.pmkn"))
    return d, json.loads(r.stdout)


def test_train_json_and_learning(trained):
    d, j = trained
    assert j["shape"] == [2, 3, 1] and j["grid"] == 6 and j["train_samples"] == 1000 and j["test_samples"] == 1000
    assert j["params"] == 9 * (6 + 3)
    # the target's standard deviation is ~0.7; a KAN of this size must get far below
    assert j["test_rmse"] < 0.05 and abs(j["lfu_test_rmse"] - j["test_rmse"]) < 1e-4


def test_eval_matches_numpy_forward(trained):
    d, _ = trained
    width, layers = read_pmkt(d / "m.pmkt")
    x = np.random.default_rng(3).uniform(-1, 1, (40, 2)).astype(np.float32)
    y = (x[:, 0].astype(np.float64) * x[:, 1] + np.sin(x[:, 0]))[:, None]
    np.save(d / "x.npy", x)
    np.save(d / "y.npy", y)
    want = numpy_forward(layers, x)
    for model, tol in (("m.pmkt", 1e-6), ("m.pmkn", 2e-5)):
        r = run("kan", "eval", str(d / model), "--data", str(d / "x.npy"), "--targets", str(d / "y.npy"), "--json",
                "-o", str(d / "pred.npy"))
        got = np.load(d / "pred.npy").astype(np.float64)
        assert got.shape == (40, 1)
        assert np.max(np.abs(got - want)) < tol * (1 + np.max(np.abs(want))), model
        j = json.loads(r.stdout)
        assert j["samples"] == 40 and abs(j["rmse"] - np.sqrt(np.mean((got - y) ** 2))) < 1e-6


def test_export_cli_and_csv(trained, tmp_path):
    d, _ = trained
    r = run("kan", "export", str(d / "m.pmkt"), "-o", str(tmp_path / "e.pmkn"), "--json")
    j = json.loads(r.stdout)
    assert j["edges"] == 2 * 3 + 3 and j["bytes"] == (tmp_path / "e.pmkn").stat().st_size
    assert (tmp_path / "e.pmkn").read_bytes() == (d / "m.pmkn").read_bytes()
    rows = np.random.default_rng(1).uniform(-1, 1, (50, 2))
    np.savetxt(tmp_path / "d.csv", np.column_stack([rows, rows[:, 0] * rows[:, 1] + np.sin(rows[:, 0])]), delimiter=",")
    r = run("kan", "eval", str(d / "m.pmkt"), "--data", str(tmp_path / "d.csv"), "--json")
    assert json.loads(r.stdout)["samples"] == 50


@pytest.mark.parametrize("args,words", [
    (["kan"], "usage"),
    (["kan", "fly"], "unknown sub-command 'fly'"),
    (["kan", "train", "--function", "x"], "--shape"),
    (["kan", "train", "--shape", "2,1", "--function", "x+q"], "col 3: unknown name"),
    (["kan", "train", "--shape", "1,1", "--function", "x*y"], "uses 2 variables"),
    (["kan", "train", "--shape", "2", "--function", "x"], "at least two widths"),
    (["kan", "train", "--shape", "1,1", "--function", "x", "--order", "4"], "--order '4'"),
    (["kan", "train", "--shape", "1,1", "--function", "x", "--grids", "3"], "does not apply"),
    (["kan", "train", "--shape", "1,1", "--function", "x", "--reg", "lamb=x"], "--reg"),
    (["kan", "train", "--shape", "1,1"], "exactly one of --data and --function"),
    (["kan", "toy", "--function", "x", "--shape", "1,1"], "--grids"),
    (["kan", "eval", "nope.pmkt", "--function", "x"], "nope.pmkt"),
    (["kan", "export", "x.pmkt"], "-o"),
])
def test_cli_errors(args, words):
    r = run(*args, check=False)
    assert r.returncode == 1
    assert words in r.stderr, r.stderr
    assert r.stdout == ""


def test_corrupt_model_files(trained, tmp_path):
    d, _ = trained
    b = bytearray((d / "m.pmkt").read_bytes())
    b[4] = 7
    (tmp_path / "bad.pmkt").write_bytes(bytes(b))
    r = run("kan", "eval", str(tmp_path / "bad.pmkt"), "--function", "x*y", check=False)
    assert r.returncode == 1 and "PMKT byte 4 (version)" in r.stderr
    n = (d / "m.pmkn").read_bytes()
    (tmp_path / "cut.pmkn").write_bytes(n[:-10])
    r = run("kan", "eval", str(tmp_path / "cut.pmkn"), "--function", "x*y", check=False)
    assert r.returncode == 1 and "PMKN byte" in r.stderr and "layer 1 edge 2->0" in r.stderr
    # no partial output: a failing export leaves no file behind
    r = run("kan", "export", str(tmp_path / "bad.pmkt"), "-o", str(tmp_path / "out.pmkn"), check=False)
    assert r.returncode == 1 and not (tmp_path / "out.pmkn").exists()


def test_toy_quick_run_reduces_error():
    r = run("kan", "toy", "--function", "exp(sin(pi*x)+y^2)", "--shape", "2,1,1", "--grids", "3,5", "--steps", "10",
            "--restarts", "6", "--json", "--log-every", "5")
    j = json.loads(r.stdout)
    assert [g["grid"] for g in j["grids"]] == [3, 5]
    assert all(g["params"] == 3 * (g["grid"] + 3) for g in j["grids"])
    # the function's standard deviation over [-1,1]^2 is ~1.4: training must learn most of it
    assert j["grids"][-1]["test_rmse"] < 0.1
    assert "grid 5 step 10/10 loss" in r.stderr and "test_rmse" in r.stderr


def test_quantile_grid_prune_and_regularised_training(tmp_path):
    """grid_eps 0 (knots snapped to the lattice) still exports exactly;
    pruning and the regularised loss run through the CLI."""
    r = run("kan", "train", "--function", "sin(2*x) + y", "--shape", "2,4,1", "--grid", "5", "--steps", "10",
            "--grid-eps", "0", "--reg", "lamb=1e-4,l1=1,entropy=1", "--prune", "0.01", "--quiet", "--json",
            "-o", str(tmp_path / "q.pmkt"), "--export", str(tmp_path / "q.pmkn"))
    j = json.loads(r.stdout)
    assert j["test_rmse"] < 0.05 and abs(j["lfu_test_rmse"] - j["test_rmse"]) < 1e-5
    width, layers = read_pmkt(tmp_path / "q.pmkt")
    assert width[0] == 2 and width[-1] == 1 and 1 <= width[1] <= 4
    # the hidden activations are not uniform, so their quantile knots are not either
    assert any(np.ptp(np.diff(t)) > 1e-6 for t in layers[1]["knots"])


def test_bad_magic(tmp_path):
    (tmp_path / "m.bin").write_bytes(b"XXXX" + bytes(40))
    r = run("kan", "eval", str(tmp_path / "m.bin"), "--function", "x", check=False)
    assert r.returncode == 1 and "neither" in r.stderr
