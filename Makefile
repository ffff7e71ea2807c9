# kb-search developer tasks. Everything installs into .venv (and .venv-sam for the SAM CLI) on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
SAMENV := .venv-sam
SAM    := $(SAMENV)/bin/sam
# checkov has its own pinned tool venv: its dependency tree would otherwise constrain the project's lock.
CHECKOV_VERSION ?= 3.3.30
CHECKOVENV := .venv-checkov
CHECKOV := $(CHECKOVENV)/bin/checkov
# One lock (uv.lock, universal: python3.11-3.13, any platform, with hashes); both requirement files are exports.
EXPORT := $(BIN)/uv export --frozen --format requirements-txt --no-emit-project --quiet
HOST   ?= 127.0.0.1
PORT   ?= 3000
STAGE  ?= dev
# ORACLE=e5 (or use): index and serve with a real model on loopback, no keys (make run ORACLE=e5).
ORACLE ?=
ORACLE_ARG := $(if $(ORACLE),--oracle $(ORACLE))
# make eval ORACLE=e5: every phase with the model. Its vectors (as every eval-*'s) are cached where index and serve
# keep them: kbsearch's one default, beside the store (QDRANT_PATH/../oracle; .kbsearch/oracle by default).
EVAL_ORACLE := $(if $(ORACLE),--oracle $(ORACLE))
# sam build needs the Lambda runtime's Python (3.13) on PATH; pyenv provides it here.
SAM_PY ?= 3.13.0
export SAM_CLI_TELEMETRY = 0
# The MCP Inspector CLI (npm, pinned by tools/inspector/package-lock.json) for its test; skipped without npm.
NPM := $(shell command -v npm 2>/dev/null)
INSPECTOR := tools/inspector/node_modules/.bin/mcp-inspector

.PHONY: help install lock run serve index test lint format unit build deploy clean bench eval eval-classes eval-expanded eval-gate eval-man eval-gnome eval-lo eval-debdoc eval-gimp eval-bil captures load inspector

help: ## this list (plain `make` too): each target and what it does
	@awk -F':.*## ' '/^[a-z][a-z-]*:.*## / {printf "  make %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml requirements-dev.txt
	@echo "installing kb-search and its locked tools into $(VENV): a few minutes the first time (pip is quiet meanwhile)"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q --require-hashes -r requirements-dev.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	$(BIN)/python -m compileall -q layers/kbsearch/kbsearch tools > /dev/null
	touch $(STAMP)

install: $(STAMP) $(if $(NPM),$(INSPECTOR)) ## .venv with kbsearch and its dev tools, exactly as locked (hash-checked); the MCP Inspector CLI when npm is here (PYTHON=python3.13: the Python it is made with)
	@want=$$($(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null); \
	have=$$($(BIN)/python -c 'import sys; print("%d.%d" % sys.version_info[:2])'); \
	if [ -n "$$want" ] && [ "$$want" != "$$have" ]; then \
	  echo "note: $(VENV) was made with Python $$have and is kept, not $(PYTHON)'s $$want: rm -rf $(VENV) and make install again for $$want"; fi

lock: $(STAMP) ## re-resolve uv.lock from pyproject.toml (UPGRADE=1: newest allowed versions) and export both requirement files
	$(BIN)/uv lock $(if $(UPGRADE),--upgrade,)
	$(EXPORT) --no-dev --no-emit-package botocore --no-emit-package python-dateutil --no-emit-package six \
		-o layers/kbsearch/requirements.txt
	$(EXPORT) --extra dev -o requirements-dev.txt
	$(BIN)/python -m pip install -q --require-hashes -r requirements-dev.txt

index: $(STAMP) ## index sample-kb/ into the embedded store (.kbsearch/qdrant)
	$(BIN)/kbsearch index sample-kb $(ORACLE_ARG)

# WATCH=--watch: the server syncs every saved note (make run WATCH= serves without watching).
WATCH ?= --watch
run: index ## index sample-kb/, then serve the API on http://127.0.0.1:3000 (HOST, PORT), syncing each saved note
	@echo "try: curl -s 'http://$(HOST):$(PORT)/search?q=restore+qdrant+snapshot&top_k=3' | python3 -m json.tool"
	KB_SOURCE=sample-kb $(BIN)/kbsearch serve --host $(HOST) --port $(PORT) $(WATCH) $(ORACLE_ARG)

serve: $(STAMP) ## serve the API without indexing first
	$(BIN)/kbsearch serve --host $(HOST) --port $(PORT) $(ORACLE_ARG)

$(CHECKOV):
	$(PYTHON) -m venv $(CHECKOVENV)
	$(CHECKOVENV)/bin/python -m pip install -q checkov==$(CHECKOV_VERSION)

lint: $(STAMP) $(CHECKOV) ## ruff, mypy, cfn-lint (+ serverless rules), checkov; suppressions are inline in template.yaml
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/cfn-lint template.yaml
	$(BIN)/cfn-lint --append-rules cfn_lint_serverless.rules -- template.yaml
	$(CHECKOV) --file template.yaml --framework cloudformation --quiet --compact --skip-download

$(INSPECTOR): tools/inspector/package-lock.json
	npm ci --prefix tools/inspector --no-audit --no-fund --loglevel=error
	touch $(INSPECTOR)

inspector: $(INSPECTOR) ## install the MCP Inspector CLI (tests/integration/test_mcp_inspector.py)

format: $(STAMP) ## ruff --fix and ruff format over the tree
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# make unit runs the tests on TEST_WORKERS processes, one test file per worker (module fixtures stay whole); the
# fuzz run uses the quick profile unless KB_FUZZ_PROFILE=full (CI: .ci/run).
TEST_WORKERS ?= 2

unit: $(STAMP) $(if $(NPM),$(INSPECTOR)) ## tests only, on TEST_WORKERS (2) workers
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

test: lint unit ## lint + the whole test suite (offline)

eval: $(STAMP) ## phase tables on sample-kb and the BEIR fixture (ORACLE=e5 or use: dense, hybrid and reranked with a model on loopback; or provider keys)
	$(BIN)/kbsearch eval --kb sample-kb --queries eval/sample-kb-queries.yaml $(EVAL_ORACLE)
	$(BIN)/kbsearch eval --beir tests/fixtures/beir-mini $(EVAL_ORACLE)

eval-classes: $(STAMP) ## every query class (eval/classes.yaml) with a real model (ORACLE=e5, the default, or use): lexical, dense, hybrid, the gap
	$(BIN)/kbsearch eval --classes eval/classes.yaml --oracle $(or $(ORACLE),e5) --phases lexical,dense,hybrid --gate

eval-expanded: $(STAMP) ## every query class with the expanded phase too: the oracle expands each query into its translation (ORACLE=e5 or use)
	$(BIN)/kbsearch eval --classes eval/classes.yaml --oracle $(or $(ORACLE),e5) --phases lexical,dense,hybrid,expanded

eval-man: $(STAMP) ## the second corpus (eval/classes-man.yaml: Debian's ru/en man pages, not tuned on) with a real model (ORACLE=e5 or use)
	$(BIN)/kbsearch eval --classes eval/classes-man.yaml --oracle $(or $(ORACLE),e5) --phases lexical,dense,hybrid --gate

eval-gnome: $(STAMP) ## the third corpus (eval/classes-gnome.yaml: GNOME Help in ru/en; measured blind, then two exact-match rules taken on all three corpora: EVAL.md) with a real model (ORACLE=e5 or use)
	$(BIN)/kbsearch eval --classes eval/classes-gnome.yaml --oracle $(or $(ORACLE),e5) --phases lexical,dense,hybrid --gate

eval-lo: $(STAMP) ## the fourth corpus (eval/classes-lo.yaml: LibreOffice Help's guide pages in ru/en; measured blind in session 28, then one cross-language rule taken with it in view: EVAL.md) with a real model (ORACLE=e5 or use)
	$(BIN)/kbsearch eval --classes eval/classes-lo.yaml --oracle $(or $(ORACLE),e5) --phases lexical,dense,hybrid --gate

eval-debdoc: $(STAMP) ## the fifth corpus (eval/classes-debdoc.yaml: Debian's developers-reference, FAQ and maint-guide by section in ru/en; measured blind in session 30: EVAL.md) with a real model (ORACLE=e5 or use)
	$(BIN)/kbsearch eval --classes eval/classes-debdoc.yaml --oracle $(or $(ORACLE),e5) --phases lexical,dense,hybrid --gate

eval-gimp: $(STAMP) ## the sixth corpus (eval/classes-gimp.yaml: GIMP's user manual, 260 help pages in ru/en; measured blind in session 36: EVAL.md) with a real model (ORACLE=e5 or use)
	$(BIN)/kbsearch eval --classes eval/classes-gimp.yaml --oracle $(or $(ORACLE),e5) --phases lexical,dense,hybrid --gate

eval-bil: $(STAMP) ## a KB written in two languages (each vault page in Russian or English, never both: eval/make_bilingual.py builds it into .kbsearch/bil; session 33: EVAL.md) with a real model (ORACLE=e5 or use); its --gate fails with both
	$(BIN)/python eval/make_bilingual.py
	$(BIN)/kbsearch eval --classes eval/classes-bil.yaml --oracle $(or $(ORACLE),e5) --phases lexical,dense,hybrid \
		--oracle-cache .kbsearch/oracle/$(or $(ORACLE),e5).sqlite --gate

captures: $(STAMP) ## every replay capture of issue 19 (each eval/classes*.yaml x e5, use) into CAPTURES (default .kbsearch/replay), a current one kept: eval/replay/capture_all.py, hours cold
	nice -n 10 $(BIN)/python eval/replay/capture_all.py $(or $(CAPTURES),.kbsearch/replay) --record $(or $(CAPTURES),.kbsearch/replay)/caps.txt

eval-gate: $(STAMP) ## CI: per-class eval with the bundled e5 on the vault's short notes; fails when hybrid loses > 0.005 to its best leg
	$(BIN)/kbsearch eval --classes eval/gate.yaml --oracle e5 --phases lexical,dense,hybrid --gate 0.005

bench: $(STAMP) ## the benchmark set (BENCHMARKS.md), about 50 minutes (bench store and bench peer: the 10x vault)
	$(BIN)/kbsearch bench cost
	$(BIN)/kbsearch bench coldstart --runs 7
	$(BIN)/kbsearch bench search --queries 150
	$(BIN)/kbsearch bench search --primary-hang --queries 100
	$(BIN)/kbsearch bench search --drip primary --budget-s 3 --queries 60
	$(BIN)/kbsearch bench search --drip all --budget-s 3 --queries 60
	$(BIN)/kbsearch bench index --runs 5 --batch-sizes 32,64 --concurrency 1,4,8
	$(BIN)/kbsearch bench store --copies 1,10 --runs 3
	$(BIN)/kbsearch bench peer --copies 1,10 --runs 3

load: $(STAMP) ## bounded load test: 10,000 requests at concurrency 32 against kbsearch serve on 127.0.0.1 (~2 min)
	$(BIN)/kbsearch bench load --requests 10000 --concurrency 32

$(SAM):
	$(PYTHON) -m venv $(SAMENV)
	$(SAMENV)/bin/python -m pip install -q --upgrade pip aws-sam-cli

build: $(SAM) ## sam build (python3.13, arm64, no container)
	PYENV_VERSION=$(SAM_PY) $(SAM) build

deploy: build ## sam deploy to STAGE (samconfig.toml)
	$(SAM) deploy --config-env $(STAGE)

clean: ## remove .aws-sam, .kbsearch (the local index, the votes file, the oracle's vector cache) and the tools' caches
	rm -rf .aws-sam .kbsearch .pytest_cache .mypy_cache .ruff_cache
