# layerlab -- one command to set up and run the demo, one to test.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.layerlab-installed

.PHONY: setup tools demo test lint bench image gem5 clean

# The venv is rebuilt when pyproject.toml changes. torch==2.13.0 is the CPU wheel the
# workplace keeps on disk; the guest-driver tests run it on the CPU.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q 'torch==2.13.0'
	$(BIN)/pip install -q -e '.[dev,workloads,hdf5]'
	@echo "building the native stats scanner once (C with cc, ~1 s; its numba fallback ~20 s; both kept)"
	$(BIN)/python -c 'from stats_parsers import scan; scan.warm(every=True)'
	touch $(STAMP)

setup: $(STAMP)

# DEMO_OUT: where the demo writes its chart (the README test points it at a temporary folder).
DEMO_OUT ?= demo-out

# The main job (orchestrator/demo.py): the default layer's estimate and chart, the quick-start
# experiment's plan (preflighted), then that experiment on gem5 when `layerlab doctor` passes, else
# the pipeline self-test on the gem5 test double, its report, and what a real run still needs.
demo: setup
	$(BIN)/layerlab demo --out "$(DEMO_OUT)"

# Host tools and services the tests use for real: e2fsprogs, sfdisk, sgdisk for the disk-image
# stage; dockerd, sshd, Slurm + munge for the backends (packages only: the tests start and stop
# their own daemons). Installs only what is missing.
tools:
	@bash .ci/install-image-tools.sh
	@bash .ci/install-services.sh

# pytest's exit code 5 (nothing collected) is a failure here, as it should be for CI.
test: setup tools
	$(BIN)/python -m pytest -q tests

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Each benchmark prints its figures beside a baseline measured in the same run.
bench: setup
	@set -e; for f in benchmarks/bench_*.py; do echo "== $$f"; $(BIN)/python $$f; done

# Derive a disk image from a recipe (images/*.yaml) and a base gem5-resources GPU image + its
# kernel; the base is never modified. BASE/KERNEL override the recipe's; IMAGE_OUT is the output
# folder (default $LAYERLAB_CACHE_DIR/images); ACCESS=root|rootless|docker (+ DOCKER_IMAGE) picks how
# the filesystem is reached (default: chosen automatically). A rebuild with nothing changed is a no-op.
RECIPE    ?= images/default.yaml
IMAGE_OUT ?=
image: setup
	$(BIN)/layerlab image build "$(RECIPE)" $(if $(BASE),--base "$(BASE)",) $(if $(KERNEL),--kernel "$(KERNEL)",) $(if $(IMAGE_OUT),--out "$(IMAGE_OUT)",) $(if $(ACCESS),--access "$(ACCESS)",) $(if $(DOCKER_IMAGE),--docker-image "$(DOCKER_IMAGE)",)

# Build gem5 (build/VEGA_X86/gem5.opt) from GEM5_SRC (a checkout or git URL) at GEM5_REF.
gem5: setup
	$(BIN)/python -m gem5_configs.build --source "$(GEM5_SRC)" --ref "$(GEM5_REF)" $(if $(GEM5_IN_DOCKER),--docker,)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .layerlab-cache demo-out
