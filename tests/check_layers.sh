#!/bin/sh
# Lower layers never include higher ones: each src/<layer> may include only
# the public headers of its own layer and those below it.
# Order (bottom up): base numerics lfu kan isa sim(config) runtime kernels models cli
rc=0
allowed() {
  case "$1" in
    base) echo "base" ;;
    numerics) echo "base numerics" ;;
    lfu) echo "base numerics lfu fit" ;;
    kan) echo "base numerics lfu fit kan mlp" ;;
    isa) echo "base numerics lfu isa isa_table" ;;
    sim) echo "base numerics lfu isa isa_table config sim" ;;
    runtime) echo "base numerics lfu isa isa_table config sim runtime" ;;
    kernels) echo "base numerics lfu fit kan mlp isa isa_table config sim runtime kernels kan_kernels llm_kernels" ;;
    models) echo "base numerics lfu fit kan mlp isa isa_table config sim runtime kernels kan_kernels llm_kernels gguf tokenizer llm" ;;
    cli) echo "base numerics lfu fit kan mlp isa isa_table config sim runtime kernels kan_kernels llm_kernels gguf tokenizer llm" ;;
    *) echo "" ;;
  esac
}
for dir in src/*/; do
  layer=$(basename "$dir")
  ok=$(allowed "$layer")
  if [ -z "$ok" ]; then echo "check_layers: unknown layer folder $dir"; rc=1; continue; fi
  for f in "$dir"*.c "$dir"*.h; do
    [ -f "$f" ] || continue
    for h in $(grep -oE '#include "polymorph/[a-z_]+\.h"' "$f" | sed -E 's/.*polymorph\/([a-z_]+)\.h"/\1/'); do
      case " $ok " in *" $h "*) ;; *) echo "check_layers: $f ($layer) includes polymorph/$h.h, a higher layer"; rc=1 ;; esac
    done
    # a layer's private headers are its own business: no reaching into another src/ folder
    if grep -nE '#include "\.\./' "$f" >/dev/null; then echo "check_layers: $f reaches into another folder"; rc=1; fi
  done
done
exit $rc
