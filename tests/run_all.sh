#!/bin/sh
# Runs the whole suite: C unit tests, the layering and docs checks, and the
# Python oracle tests (numpy, ml_dtypes, gguf); ends with one summary line.
BUILD=${BUILD:-build}
PYTHON=${PYTHON:-python3}
passed=0
failed=0
failures=""

for t in "$BUILD"/tests/test_*; do
  [ -x "$t" ] || continue
  out=$("$t" 2>&1); rc=$?
  line=$(printf '%s\n' "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed$' | tail -n 1)
  p=$(printf '%s' "$line" | sed -E 's/^([0-9]+) passed.*/\1/'); p=${p:-0}
  f=$(printf '%s' "$line" | sed -E 's/.* ([0-9]+) failed$/\1/'); f=${f:-0}
  if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
  passed=$((passed + p)); failed=$((failed + f))
  if [ "$f" -ne 0 ]; then
    printf '%s\n' "$out" | tail -n 40
    failures="$failures $(basename "$t")"
  fi
  echo "$(basename "$t"): ${p} passed, ${f} failed"
done

for check in tests/check_*.sh; do
  [ -f "$check" ] || continue
  if BUILD="$BUILD" SAN="${SAN:-0}" sh "$check"; then passed=$((passed + 1)); echo "$(basename "$check"): ok"
  else failed=$((failed + 1)); failures="$failures $(basename "$check")"; echo "$(basename "$check"): FAILED"; fi
done

# Python tests: those that load libpolymorph.so through ctypes (they import
# pmlib) cannot load a sanitizer build into an uninstrumented interpreter, so
# SAN=1 runs only the ones that drive the polymorph binary (CLI, examples,
# adversarial inputs) — against the sanitized binary.
pyfiles=$(ls tests/oracle/test_*.py 2>/dev/null)
[ "${SAN:-0}" = 1 ] && pyfiles=$(grep -L 'pmlib' $pyfiles)
if [ -n "$pyfiles" ]; then
  out=$(POLYMORPH_BUILD="$BUILD" "$PYTHON" -m pytest -q -p no:cacheprovider $pyfiles 2>&1); rc=$?
  printf '%s\n' "$out" | tail -n 60
  p=$(printf '%s\n' "$out" | tail -n 1 | grep -oE '[0-9]+ passed' | grep -oE '[0-9]+'); p=${p:-0}
  f=$(printf '%s\n' "$out" | tail -n 1 | grep -oE '[0-9]+ (failed|error|errors)' | awk '{s+=$1} END{print s+0}'); f=${f:-0}
  if [ $rc -ne 0 ] && [ $rc -ne 5 ] && [ "$f" -eq 0 ]; then f=1; fi
  passed=$((passed + p)); failed=$((failed + f))
  [ "$f" -ne 0 ] && failures="$failures pytest"
fi

[ -n "$failures" ] && echo "failing:$failures"
echo "tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
