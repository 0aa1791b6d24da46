#!/bin/sh
# Replays every input kept under fuzz/regressions/<target>/ (and the seed
# inputs of the repository) through each fuzz target built with the normal
# compiler, so a crash once found can never come back unnoticed.
BUILD=${BUILD:-build}
set -e
SANFLAGS=""
[ "${SAN:-0}" = 1 ] && SANFLAGS="-fsanitize=address,undefined"
mkdir -p "$BUILD/fuzz-replay"
for target in asm program config kan gguf; do
  bin="$BUILD/fuzz-replay/replay_$target"
  ${CC:-cc} -std=c11 -g -O1 -Iinclude $SANFLAGS -o "$bin" fuzz/fuzz_$target.c fuzz/standalone.c "$BUILD/libpolymorph.a" -lm -lpthread
  files=""
  [ -d "fuzz/regressions/$target" ] && files=$(find "fuzz/regressions/$target" -type f | sort)
  case $target in
    asm) files="$files $(ls examples/*.pasm 2>/dev/null)";;
    config) files="$files $(ls configs/*.cfg)";;
    gguf) files="$files $(ls fuzz/corpus_gguf/* 2>/dev/null)";;
  esac
  [ -n "$(echo $files | tr -d ' ')" ] && "$bin" $files
done
exit 0
