#!/usr/bin/env bash
# Model-size sweep at equal CPU time: trains one model per hidden size, two at a time on one
# thread each, every run with the same --time-budget, and prints their validation loss.
#
#   benches/size_sweep.sh TRAIN_DIR VALID_DIR OUT_DIR [BUDGET] [HIDDEN_SIZES...]
#
# BUDGET defaults to 14m and HIDDEN_SIZES to "256 384 512 768" (embedding 256, one layer); the
# warm-up is 50 steps, so that it takes the same small share of every run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [[ $# -lt 3 ]]; then
    sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
train_dir=$1 valid_dir=$2 out=$3 budget=${4:-14m}
shift $(($# < 4 ? $# : 4))
sizes=("$@")
[[ ${#sizes[@]} -gt 0 ]] || sizes=(256 384 512 768)
bin=${NOTEBOOK_PREDICTOR_BIN:-target/release/notebook-predictor}
[[ -x $bin ]] || cargo build --release
mkdir -p "$out"

run() {
    local h=$1
    "$bin" --threads 1 train "$train_dir" --valid "$valid_dir" --out "$out/h$h" \
        --hidden-size "$h" --embed-dim 256 --epochs 1000 --time-budget "$budget" \
        --warmup-steps 50 --max-valid-tokens 200000 --quiet >"$out/h$h.log" 2>&1
}

for ((i = 0; i < ${#sizes[@]}; i += 2)); do
    pids=()
    for h in "${sizes[@]:i:2}"; do
        if [[ -f $out/h$h/config.json ]] && grep -q '"finished": true' "$out/h$h/config.json"; then
            continue
        fi
        run "$h" &
        pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p"; done
done

python3 - "$out" "${sizes[@]}" <<'PY'
import json, os, sys
out, sizes = sys.argv[1], sys.argv[2:]
print(f"| hidden | parameters | MB | tokens trained | epochs | valid loss | bpc code | bpc output |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|")
for h in sizes:
    d = os.path.join(out, f"h{h}")
    c = json.load(open(os.path.join(d, "config.json")))
    m, t = c["model"], c["training"]
    v = t["last_valid"]
    e, hs, vs = m["embed_dim"], m["hidden_size"], m["vocab_size"]
    params = vs * e + 3 * hs * (e + hs) + 6 * hs + hs * vs + vs
    mb = os.path.getsize(os.path.join(d, "model.safetensors")) / 1e6
    epochs = t["tokens_seen"] / max(c["corpus"]["tokens"], 1)
    print(f"| {hs} | {params:,} | {mb:.0f} | {t['tokens_seen']:,} | {epochs:.2f} | "
          f"{v['loss']:.4f} | {v['bpc_code']:.3f} | {v['bpc_output']:.3f} |")
PY
