# lpd: two commands. `make demo` creates .venv and renders a long prompt on the embedded default model;
# `make test` runs every check CI runs (sync, ruff, nbdev_test, pytest). Everything else is a building block of those two.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build (on this machine's disk). On a CUDA machine: make env TORCH_SPEC="torch>=2.4,<2.14"
TORCH_SPEC ?= torch==2.13.0
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export WANDB_MODE ?= offline
DEMO_DIR ?= reports/demo

.PHONY: env demo lab test mutate check-sync readme clean-env
env: $(VENV)/.installed

$(VENV)/.installed: settings.ini setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e ".[dev]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "lpd (.venv)" >/dev/null
	touch $@

demo: env
	$(BIN)/lpd-infer --prompt_file data/prompts/shapes_prompts.jsonl --prompt_id shapes_six \
	  --output_dir $(DEMO_DIR) --save_decompose --contact_sheet --compare --seed 0
	@echo "demo: composite, components and contact sheet in $(DEMO_DIR)/"

# the explorer (nbs/explore.ipynb) in JupyterLab, on the project's kernel
lab: env
	$(BIN)/jupyter lab $(if $(filter 0,$(shell id -u)),--allow-root) nbs/explore.ipynb

test: env check-sync
	$(BIN)/ruff check nbs tests .ci
	cd nbs && ../$(BIN)/nbdev_test --n_workers 2 --flags slow
	$(BIN)/python -m pytest -q tests

# mutation testing of setup.cfg's only_mutate modules, a list that grows one module at a time (not part of
# `make test`): mutmut keeps its results in mutants/, so a second run tests only what changed or was not reached.
# Reports: reports/mutation/<module>.md (counts, score, each survivor's diff and why it is equivalent); MODULE=routing
# writes that module's only. (mutmut 3.8's own selection, `mutmut run "lpd.routing.*"`, never returns.)
# SKIP=07_train leaves those notebooks' tests out (LPD_MUTATE_SKIP, tests/conftest.py): the score is then a lower bound.
# SKIP=07_train#389e6c42 leaves one cell out (tests/test_notebooks.py): a cheaper first pass; rerun its survivors whole.
# setup.cfg's test files are part of mutmut's fingerprint: changing them resets every result unless
# mutants/mutmut-stats.json is given the new one (kills stay valid with more tests; run the survivors again).
mutate: env
	OMP_NUM_THREADS=1 LPD_MUTATE_SKIP=$(SKIP) $(BIN)/mutmut run
	$(BIN)/python .ci/mutation_report.py $(MODULE) $(if $(SKIP),--skip $(SKIP))
	$(BIN)/python .ci/mutation_summary.py

# notebooks clean and lpd/ + README.md in sync with them: nbdev_clean, nbdev_export and the README
# export must change nothing (the nbdev CI action's checks)
check-sync: env
	bash .ci/check_sync.sh $(BIN)

readme: env
	$(BIN)/python .ci/readme.py

clean-env:
	rm -rf $(VENV)
