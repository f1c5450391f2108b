# The two commands of the README:  make lab  |  make test
# Both create/update the local virtual environment .venv first.
# GPU=1 installs tensorflow[and-cuda] instead of tensorflow-cpu.

PYTHON ?= python3
VENV   ?= .venv
GPU    ?= 0
BIN    := $(VENV)/bin
TF     := $(if $(filter 1,$(GPU)),gpu,cpu)
STAMP  := $(VENV)/.installed-$(TF)
# Jupyter refuses to run as root unless told; containers and CI often are root.
ROOT_OK := $(if $(filter 0,$(shell id -u)),--allow-root,)
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]-*.ipynb)) $(sort $(wildcard notebooks/A[0-9]-*.ipynb))

.PHONY: help env lab test unit notebooks voila bench gpu-check browser-deps clean federation classroom join

help:
	@echo "make lab        set up .venv and open the course in JupyterLab"
	@echo "make test       set up .venv and run every test (unit, notebooks under nbval, browser)"
	@echo "make voila      serve the live-demo dashboard with Voila (instructors)"
	@echo "make notebooks  re-execute and save every notebook (after changing one)"
	@echo "make bench      run the benchmarks"
	@echo "make federation a Flower SuperLink and 3 SuperNodes on this machine, compared with fl.fedavg"
	@echo "make classroom  the instructor's classroom server (ARGS='--rounds 10 --min-students 5 --secure' ...)"
	@echo "make join SERVER=host:port PARTY=k   (or CSV=file.csv; CA=ca.pem KEY=you.key in a secure class)"
	@echo "make gpu-check  on an NVIDIA GPU machine: GPU build, TensorFlow engine tests and parity on the GPU, N = 1e4..1e6 timings"
	@echo "GPU=1           with lab/test/bench: use tensorflow[and-cuda] instead of tensorflow-cpu"

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	@# tensorflow-cpu and tensorflow[and-cuda] install the same module: keep only one
	$(BIN)/python -m pip uninstall -q -y $(if $(filter gpu,$(TF)),tensorflow-cpu,tensorflow) 2>/dev/null || true
	$(BIN)/python -m pip install -q -e ".[dev,$(TF)]"
	rm -f $(VENV)/.installed-*
	touch $@

env: $(STAMP)

lab: env
	$(BIN)/jupyter lab $(ROOT_OK) notebooks/

test: env browser-deps
	$(BIN)/python -m pytest

unit: env
	$(BIN)/python -m pytest tests -m "not browser"

# Re-execute every notebook top to bottom in a fresh kernel and save it with
# its outputs; nbstripout then drops the per-run widget state (git noise) but
# keeps outputs and execution counts, so strict nbval compares against them.
notebooks: env
	for nb in $(NOTEBOOKS); do \
	  $(BIN)/jupyter nbconvert --to notebook --execute --inplace \
	    --ExecutePreprocessor.record_timing=False --ExecutePreprocessor.timeout=300 $$nb || exit 1; \
	  $(BIN)/nbstripout --keep-output --keep-count --extra-keys "metadata.widgets" $$nb || exit 1; \
	done

# The app view shows the title and the dashboard only: the dashboard's CSS hides, in
# Voila alone, the cells tagged voila-hide (the notebook's text, checks and exercises).
voila: env
	$(BIN)/voila --Voila.ip=127.0.0.1 notebooks/05-live-demo.ipynb

bench: env
	$(BIN)/python benchmarks/bench_engines.py --threads 1
	$(BIN)/python benchmarks/bench_widget.py
	$(BIN)/python benchmarks/bench_noniid_widget.py
	$(BIN)/python benchmarks/bench_softmax.py --threads 1
	$(BIN)/python benchmarks/bench_mlp.py --threads 1
	$(BIN)/python benchmarks/bench_secagg.py
	$(BIN)/python benchmarks/bench_privacy.py
	$(BIN)/python benchmarks/bench_robust.py
	$(BIN)/python benchmarks/bench_compression.py
	$(BIN)/python benchmarks/bench_paillier.py
	$(BIN)/python benchmarks/bench_flower.py

# Flower's deployment runtime (notebook 17): local processes, then a classroom across laptops.
federation: env
	$(BIN)/python -m fl_helpers.interop.classroom local

classroom: env
	$(BIN)/python -m fl_helpers.interop.classroom serve $(ARGS)

join: env
	$(BIN)/python -m fl_helpers.interop.classroom join --server "$(SERVER)" \
	  $(if $(PARTY),--party $(PARTY)) $(if $(CSV),--csv "$(CSV)") $(if $(CA),--ca "$(CA)") $(if $(KEY),--key "$(KEY)")

gpu-check:
	VENV=$(VENV) PYTHON=$(PYTHON) bash benchmarks/gpu_check.sh

# Debian's Chromium for the browser test. As root (CI) it is installed when
# missing; elsewhere the browser test skips with a message saying how.
browser-deps:
	@if ! command -v chromium >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
	  else \
	    echo "chromium not found: the browser test will skip (install it: sudo apt-get install chromium)"; \
	  fi; \
	fi

clean:
	rm -rf $(VENV) artifacts .pytest_cache
