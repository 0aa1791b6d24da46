#!/bin/sh
# The tables of docs/bench.md "Sweeps": the decode GEMV (M = 1, K = N = 4096)
# in every weight format beside the DRAM roofline, and the 1024^3 GEMM on
# each preset, dataflow and engine count beside the compute roofline. Only
# simulated figures (no wall times), so the output is the same on any host.
# usage: sh bench/gemm_sweep.sh [path/to/polymorph]
P=${1:-build/polymorph}
[ -x "$P" ] || { echo "gemm_sweep: $P is missing (run make, or pass the binary)" >&2; exit 1; }
pick() {
  python3 -c '
import json, sys
j = json.load(sys.stdin)
print("%-16s %-10s %2d %-3s %6s %10d %10d %10d %7.4f %7.4f %-8s %10.4g %s" % (sys.argv[1], j["preset"], j["engines"],
      j["dataflow"], j["wfmt"], j["cycles"], j["dram_bytes"], j["compulsory_dram_bytes"], j["utilization"],
      j["roofline_fraction"], j["bound"], j["energy_j"], "yes" if j["bit_exact"] else "NO"))' "$1"
}
header() {
  printf '%-16s %-10s %2s %-3s %6s %10s %10s %10s %7s %7s %-8s %10s %s\n' run chip eng df wfmt cycles \
    "DRAM B" "compulsory" util roofline bound "energy J" exact
}

echo "decode GEMV: polymorph bench gemv 4096 4096 --wfmt F --no-native --json (edge)"
header
for f in bf16 int8 e4m3 q8_0 mxfp8 mxfp4 nvfp4 if4 int4b q4_0 q4_1; do
  "$P" bench gemv 4096 4096 --wfmt "$f" --no-native --json | pick "gemv $f" || exit 1
done

echo
echo "GEMM 1024^3: polymorph bench gemm 1024 1024 1024 OPTIONS --no-native --json"
header
while read -r name opts; do
  # shellcheck disable=SC2086 # options are split on purpose
  "$P" bench gemm 1024 1024 1024 $opts --no-native --json | pick "$name" || exit 1
done <<'EOF'
edge-os --preset edge --dataflow os
edge-ws --preset edge --dataflow ws
edge-q4_0 --preset edge --wfmt q4_0
edge-2eng --preset edge --engines 2
edge-4eng --preset edge --engines 4
fpga --preset fpga
datacenter --preset datacenter
EOF
