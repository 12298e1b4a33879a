#!/bin/bash
# GS-WGAN checks for an accelerator lease (BUILD_NOTES, "On an NVIDIA H100").
#
#   bash bench/gswgan_gpu_probe.sh OUT_DIR
#
# Runs, each under its own time limit so one slow part cannot eat the lease:
#   1. the paper-scale pipeline (`mnist` variant: K=1000, ResNet, chunks of 50)
#      for a few warm-up iterations and private steps, once per warm-up mode in
#      $MODES (default "sequential"; "vmap sequential" for both -- vmap's first
#      chunk alone took 155 s with compilation on an H100); per-chunk times land
#      in the workdirs' metrics.jsonl (copied to OUT_DIR);
#   2. bench.gswgan_step on the GPU (JAX vs PyTorch on CUDA, sanitization
#      overhead, warm-start chunk, stage 2 against a bank on disk);
#   3. the GS-WGAN step tests on the device (TESTS_S=0 skips them).
# WARM_VMAP=false skips the vmapped warm-start chunk in step 2.
# Inputs: a prepared MNIST under $JAXTINY_DATA, or IDX files (.gz allowed) in
# .gpu/data/mnist, copied into $JAXTINY_DATA. Python packages the device lacks
# may be carried as wheels in .whl/ (installed into /tmp/site).
OUT=${1:?usage: bash bench/gswgan_gpu_probe.sh OUT_DIR}
set -u
# shellcheck source=bench/device_setup.sh
source "$(dirname "$0")/device_setup.sh"

for mode in ${MODES:-sequential}; do
  log "pipeline, warmup_mode=$mode"
  WD=/tmp/gs_probe_$mode; rm -rf $WD
  timeout ${PIPELINE_S:-200} $PY -m experiments.gswgan --config=experiments/configs/gswgan.py:mnist \
    --config.warmup_mode=$mode --config.warmup_iterations=${WARMUP_ITERS:-4} \
    --config.num_steps=${STEPS:-400} --config.checkpoint_every_steps=${CKPT_EVERY:-200} \
    --config.sample_every_steps=${CKPT_EVERY:-200} --config.log_every_steps=50 --config.num_gen_samples=6000 \
    --config.progress_interval_s=5 --workdir=$WD 2>&1 | grep -v "^[IW]1" | tee "$OUT/pipeline_$mode.log"
  cp $WD/metrics.jsonl "$OUT/pipeline_${mode}_metrics.jsonl" 2>/dev/null
done

log "bench.gswgan_step"
timeout ${BENCH_S:-150} $PY -m bench.gswgan_step --generators=${BENCH_GENERATORS:-dcgan,resnet} \
  --iters=10 --chunk=25 --devices= --nounrolled --warm_vmap=${WARM_VMAP:-true} --torch_device=cuda --warm_generator=resnet \
  --bank_k=${BANK_K:-40} --bank_steps=${BANK_STEPS:-200} 2>&1 \
  | grep -v "^[IW]1" | tee "$OUT/bench_step.log"

if [ "${TESTS_S:-120}" -gt 0 ]; then
  log "tests"
  timeout ${TESTS_S:-120} $PY -m pytest -q -x -p no:cacheprovider tests/gswgan/gswgan_steps_test.py \
    2>&1 | tail -15 | tee "$OUT/tests.log"
fi
log "done"
