# Dereg — see README.md. Every target creates the virtualenv first if needed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo demo-approve down status test lint format lock venv clean-state bench-classify bench-erase bench-backup bench-notify

venv: $(STAMP)

$(STAMP): requirements.txt requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt -c requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

## make demo: start the embedded stack, seed the demo school, run its closure and follow it
demo: venv
	$(BIN)/python -m dereg.stack.demo run

## make demo-approve: approve the waiting demo run as the second user (REST API)
demo-approve: venv
	$(BIN)/python -m dereg.stack.demo approve

## make down: stop SeaweedFS, the SMTP sink and Airflow
down: venv
	$(BIN)/python -m dereg.stack.embedded down

status: venv
	$(BIN)/python -m dereg.stack.embedded status

## make test: the whole suite (unit, integration against real servers, DAG runs, e2e)
test: venv
	$(BIN)/pytest -q

## make bench-classify: scanner vs Presidio, full scan vs pg_dump, peak RSS (ARGS=--quick for a smoke run)
bench-classify: venv $(VENV)/.bench-installed
	$(BIN)/python -m benchmarks.classify $(ARGS)

$(VENV)/.bench-installed: benchmarks/requirements-bench.txt $(STAMP)
	$(BIN)/pip install --quiet -r benchmarks/requirements-bench.txt -c requirements.lock
	touch $@

## make bench-backup: our backup and restore+verify against pg_dump | restic (needs restic: apt-get install restic)
bench-backup: venv
	$(BIN)/python -m benchmarks.backup $(ARGS)

## make bench-erase: our erase+purge+verify against a hand-written SQL script (PostgreSQL, 200,000 students)
bench-erase: venv
	$(BIN)/python -m benchmarks.erase $(ARGS)

## make bench-notify: notices per second to a local aiosmtpd, our notify path against a plain smtplib loop (ARGS=--profile)
bench-notify: venv
	$(BIN)/python -m benchmarks.notify $(ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## make lock: re-resolve requirements.txt and rewrite requirements.lock
lock:
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install --quiet -r requirements.txt
	.venv-lock/bin/pip freeze > requirements.lock
	rm -rf .venv-lock

clean-state: down
	rm -rf .state
