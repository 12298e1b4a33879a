# Shared start of the accelerator-lease scripts (sourced, with OUT set):
# environment, the wheels the device lacks, the carried data, and what the
# device is (OUT/gpu.txt).
#   WHEELS  folder of wheels to install into /tmp/site (default .whl; none: skipped)
#   JAXTINY_DATA  where the data goes (default /tmp/jtdata_dev), filled from
#           .gpu/data (mnist/*.gz IDX files, classifiers/, eval/) when present
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD:/tmp/site
PY=${PY:-python3}
T0=$(date +%s)
el() { echo $(( $(date +%s) - T0 )); }
log() { echo "[$(el)s] $*"; }
WHEELS=${WHEELS:-.whl}
if ls "$WHEELS"/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site "$WHEELS"/*.whl || exit 3
fi
export JAXTINY_DATA=${JAXTINY_DATA:-/tmp/jtdata_dev}
if [ -d .gpu/data ]; then
  mkdir -p "$JAXTINY_DATA" && cp -r .gpu/data/* "$JAXTINY_DATA"/ && gunzip -f "$JAXTINY_DATA"/mnist/*.gz 2>/dev/null
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$OUT/gpu.txt"
$PY -c "import jax, flax; print('jax', jax.__version__, jax.devices(), 'flax', flax.__version__)" \
    2>&1 | tee -a "$OUT/gpu.txt"
