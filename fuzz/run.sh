#!/usr/bin/env bash
# Builds the libFuzzer targets and runs each for a short while from a seed
# corpus made of the repository's own inputs. A crash fails the run and
# leaves the reproducer in fuzz/artifacts/; keep it in fuzz/regressions/<target>/
# once fixed so tests/check_fuzz_regressions.sh replays it forever.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-45}
make -s fuzz
mkdir -p fuzz/artifacts
for target in asm program config kan gguf; do
  corpus=$(mktemp -d)
  case $target in
    asm) cp examples/*.pasm "$corpus"/ 2>/dev/null || true ;;
    config) cp configs/*.cfg "$corpus"/ ;;
    gguf) cp fuzz/corpus_gguf/*.gguf "$corpus"/ ;;
    program)
      for f in examples/*.pasm; do
        [ -f "$f" ] && build/polymorph asm "$f" -o "$corpus/$(basename "$f" .pasm).pmp" >/dev/null 2>&1 || true
      done ;;
  esac
  [ -d "fuzz/regressions/$target" ] && cp fuzz/regressions/$target/* "$corpus"/ 2>/dev/null || true
  echo "fuzz_$target: ${secs}s"
  log=$(mktemp)
  status=0
  build-fuzz/fuzz/fuzz_$target "$corpus" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
    -max_len=65536 -artifact_prefix=fuzz/artifacts/ -print_final_stats=1 >"$log" 2>&1 || status=$?
  grep -E '^(stat::number_of_executed_units|==[0-9]+==ERROR|SUMMARY|.*runtime error)' "$log" | head -20 || true
  if [ "$status" -ne 0 ]; then tail -n 40 "$log"; fi
  rm -f "$log"
  rm -rf "$corpus"
  if [ "$status" -ne 0 ]; then echo "fuzz_$target found a crash (see fuzz/artifacts/)"; exit 1; fi
done
