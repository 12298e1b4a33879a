#!/bin/bash
# Federated GS-WGAN against DP-FedAvg-GAN over several seeds, for an
# accelerator lease (BUILD_NOTES, "Seeds on an NVIDIA H200").
#
#   bash bench/gswgan_federated_gpu.sh OUT_DIR
#
# Runs the `cpu` variant's matched 2,000-round comparison (IID, 20 users,
# Poisson q = 0.1, DCGAN) once per seed in $SEEDS for each method, all at
# once (one process per run on the one accelerator):
#   GS-WGAN:       sigma = 0.03, local warm start 100, EMA cap 0.999;
#   DP-FedAvg-GAN: sigma = 0.01, EMA cap 0.995 (the cpu variant's; its better cap).
# $GS_FLAGS / $FA_FLAGS replace those settings. Each run writes its own workdir
# with results.json and the evaluation suite ("fast"). A run still training at
# $DEADLINE_S seconds is stopped and scored at its latest checkpoint (its
# results.json then says how many rounds it ran; runs already being scored are
# left alone); at $HARD_S everything stops. On an H200 six runs at once took
# 327 s in all (GS-WGAN ~240 s each with its warm start, the baseline ~160 s,
# then ~80 s of scoring): the defaults leave room for that.
# Then each finished run is scored again with generated pixels below
# $PIXEL_FLOOR set to 0 (`experiments.evaluate --pixel_floor`, into
# <method>/pixel_floor_<value>/; empty PIXEL_FLOOR skips it), all at once,
# within what is left before $HARD_S.
# Small outputs (results, metrics, ledgers, eval records, sample grids, logs)
# are packed into OUT_DIR/runs.tar.gz.
# Inputs: a prepared MNIST, its reference classifier and the real-data suite
# record under $JAXTINY_DATA, or copies in .gpu/data (mnist/*.gz,
# classifiers/, eval/). Python packages the device lacks may be carried as
# wheels in .whl/ ($WHEELS; installed into /tmp/site).
OUT=${1:?usage: bash bench/gswgan_federated_gpu.sh OUT_DIR}
set -u
# shellcheck source=bench/device_setup.sh
source "$(dirname "$0")/device_setup.sh"

ROOT=${RUNS_DIR:-/tmp/fedseeds}
VARIANT=${VARIANT:-cpu}
ROUNDS=${ROUNDS:-2000}
SEEDS=${SEEDS:-"0 1 2"}
GS_FLAGS=${GS_FLAGS-"--config.dp.noise_multiplier=0.03 --config.user_warmup_iterations=100 --config.ema_decay=0.999"}
FA_FLAGS=${FA_FLAGS-""}
PIXEL_FLOOR=${PIXEL_FLOOR-0.05}
DEADLINE_S=${DEADLINE_S:-400}
HARD_S=${HARD_S:-540}
# Several processes share the one accelerator: none takes most of its memory.
export XLA_PYTHON_CLIENT_PREALLOCATE=false
mkdir -p "$ROOT"

declare -A PIDS ARGS
start_run() {  # name, rounds, flags...
  local name=$1 rounds=$2; shift 2
  $PY -m experiments.gswgan_federated \
    --config=experiments/configs/gswgan_federated.py:$VARIANT --config.rounds=$rounds \
    --config.progress_interval_s=30 --workdir="$ROOT/$name" "$@" \
    >>"$ROOT/$name.log" 2>&1 &
  PIDS[$name]=$!
}
for s in $SEEDS; do
  ARGS[gs_s$s]="--config.methods=(\"gswgan\",) --config.seed=$s $GS_FLAGS"
  ARGS[fa_s$s]="--config.methods=(\"fedavg_gan\",) --config.seed=$s $FA_FLAGS"
done
for name in "${!ARGS[@]}"; do
  # shellcheck disable=SC2086
  start_run "$name" "$ROUNDS" ${ARGS[$name]}
  log "started $name: ${ARGS[$name]}"
done

running() { local n=0; for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && n=$((n + 1)); done; echo $n; }
rescued=0
while [ "$(running)" -gt 0 ]; do
  sleep 5
  if [ "$rescued" = 0 ] && [ "$(el)" -ge "$DEADLINE_S" ]; then
    rescued=1
    for name in "${!PIDS[@]}"; do
      kill -0 "${PIDS[$name]}" 2>/dev/null || continue
      method_dir="$ROOT/$name/$( [ "${name#gs}" != "$name" ] && echo gswgan || echo fedavg_gan )"
      # A run whose rounds are done (gen_data.npz written) is being scored: left alone.
      [ -f "$method_dir/gen_data.npz" ] && continue
      kill "${PIDS[$name]}"; wait "${PIDS[$name]}" 2>/dev/null
      step=$($PY -c "import sys; from jaxtiny.train import checkpoint; s = checkpoint.latest_step(sys.argv[1]); print(s or 0)" \
             "$method_dir/checkpoints")
      log "deadline: $name stopped; scoring it at round $step"
      if [ "$step" -gt 0 ]; then
        # shellcheck disable=SC2086
        start_run "$name" "$step" ${ARGS[$name]}
      fi
    done
  fi
  if [ "$(el)" -ge "$HARD_S" ]; then
    log "hard limit: stopping what still runs"
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    break
  fi
done
wait
log "runs ended"
if [ -n "$PIXEL_FLOOR" ] && [ "$(el)" -lt $((HARD_S - 30)) ]; then
  for name in "${!ARGS[@]}"; do
    for method_dir in "$ROOT/$name"/gswgan "$ROOT/$name"/fedavg_gan; do
      [ -f "$method_dir/gen_data.npz" ] || continue
      timeout $((HARD_S - $(el))) $PY -m experiments.evaluate --gen="$method_dir" \
        --dataset=mnist --fast --pixel_floor="$PIXEL_FLOOR" >>"$ROOT/$name.floor.log" 2>&1 &
    done
  done
  wait
  log "scored with pixel floor $PIXEL_FLOOR"
fi
for name in "${!ARGS[@]}"; do
  echo "== $name"; grep -E "steps/s|^\| (gswgan|fedavg_gan) " "$ROOT/$name.log" | grep -v "^\[" | tail -3
done
(cd "$ROOT" && find . \( -name checkpoints -o -name users \) -prune -o -type f \
   \( -name '*.json' -o -name '*.jsonl' -o -name '*.log' -o -name 'samples_final.png' \
      -o -name "samples_$(printf %06d "$ROUNDS").png" \) -print \
   | tar czf "$OUT/runs.tar.gz" -T -)
log "packed $(du -h "$OUT/runs.tar.gz" | cut -f1)"
