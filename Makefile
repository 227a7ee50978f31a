# Dereg — see README.md. Every target creates the virtualenv first if needed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
NATIVE := $(VENV)/.native-built
CHROMIUM := /usr/bin/chromium

.PHONY: demo demo-ui screenshots demo-approve down status distributed-demo distributed-approve distributed-down distributed-status test lint format lock venv clean-state bench-classify bench-erase bench-backup bench-backup-fast bench-notify

## make venv: create .venv with the runtime and the development requirements under their locks, dereg and devtools (other targets do it when needed)
venv: $(STAMP) $(NATIVE)
	@# byte-compiled where PYTHONDONTWRITEBYTECODE is set too: every process importing dereg would
	@# otherwise compile its modules again (a tenth of a second of CPU each, twice per full scan);
	@# a module changed since is compiled again in memory, as without these files
	@$(BIN)/python -m compileall -q plugins/dereg dags devtools

# Format 7's row cut is C (plugins/dereg/backup/_cut.c, module _dereg_cut, built in place by setup.py
# through the editable install): built again when its source changes.
$(NATIVE): setup.py plugins/dereg/backup/_cut.c $(STAMP)
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(NATIVE)

# The production image installs requirements.txt under requirements.lock only; the development
# venv adds requirements-dev.txt (tests, lint, the demo stacks' servers) and the devtools package
# (devtools/pyproject.toml). That folder is itself the package, so setuptools installs it through an
# import finder and says so in a long UserWarning: nothing is wrong, hence PYTHONWARNINGS.
$(STAMP): requirements.txt requirements.lock requirements-dev.txt requirements-dev.lock pyproject.toml devtools/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@# mysqlclient (required by the MySQL provider, built from source) needs the MariaDB client headers
	@pkg-config --exists libmariadb || pkg-config --exists mysqlclient || \
		{ [ "$$(id -u)" = 0 ] && (apt-get update -qq && apt-get install -y -qq libmariadb-dev pkg-config) ; } || \
		{ echo "make venv: install the MariaDB client headers first (Debian: apt-get install libmariadb-dev pkg-config)" >&2; exit 1; }
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt -r requirements-dev.txt -c requirements.lock -c requirements-dev.lock
	$(BIN)/pip install --quiet --no-deps -e .
	PYTHONWARNINGS=ignore::UserWarning $(BIN)/pip install --quiet --no-deps -e devtools
	touch $(STAMP) && touch $(NATIVE)

## make demo: start the embedded stack, seed the demo school, run its closure and follow it
demo: venv
	$(BIN)/python -m devtools.stack.demo run

## make demo-ui: start the embedded stack and seed the demo school only; trigger, approve and audit in the UI
demo-ui: venv
	$(BIN)/python -m devtools.stack.demo prepare

## make screenshots: rerun the browser test and rewrite docs/screenshots/*.png (shown in the README)
screenshots: venv $(CHROMIUM)
	DEREG_SCREENSHOTS=1 $(BIN)/pytest -q tests/e2e/test_demo_stack.py -k browser

## make demo-approve: approve the waiting demo run as the second user (REST API)
demo-approve: venv
	$(BIN)/python -m devtools.stack.demo approve

## make down: stop SeaweedFS, the SMTP sink and Airflow
down: venv
	$(BIN)/python -m devtools.stack.embedded down

## make status: each part of the embedded stack, running or stopped (exit 1 when one is stopped)
status: venv
	$(BIN)/python -m devtools.stack.embedded status

## make distributed-demo: the Compose topology natively (api-server, scheduler, dag-processor, triggerer, two Celery workers on local PostgreSQL and Redis), then the demo closure on it
distributed-demo: venv
	$(BIN)/python -m devtools.stack.distributed demo

## make distributed-approve: approve the waiting demo run of the distributed stack as approver (REST API)
distributed-approve: venv
	$(BIN)/python -m devtools.stack.distributed approve

## make distributed-down: stop the distributed stack and drop its databases and Redis database
distributed-down: venv
	$(BIN)/python -m devtools.stack.distributed down

## make distributed-status: each component of the distributed stack, running and healthy or not
distributed-status: venv
	$(BIN)/python -m devtools.stack.distributed status

## make test: the whole suite (unit, integration against real servers, DAG runs, e2e in headless Chromium)
test: venv $(CHROMIUM)
	$(BIN)/pytest -q

# Debian's Chromium for the browser test (Playwright drives it; it never downloads a browser), and a
# CJK font so the screenshots show the Chinese text. Installed only when missing; needs root.
$(CHROMIUM):
	apt-get install -y chromium fonts-wqy-microhei || (apt-get update && apt-get install -y chromium fonts-wqy-microhei)

## make bench-classify: scanner vs Presidio, full scan vs pg_dump, peak RSS (ARGS=--quick for a smoke run)
bench-classify: venv $(VENV)/.bench-installed
	$(BIN)/python -m benchmarks.classify $(ARGS)

$(VENV)/.bench-installed: benchmarks/requirements-bench.txt $(STAMP)
	$(BIN)/pip install --quiet -r benchmarks/requirements-bench.txt -c requirements.lock -c requirements-dev.lock
	touch $@

## make bench-backup: our backup and restore+verify against pg_dump | restic (needs restic: apt-get install restic)
bench-backup: venv
	$(BIN)/python -m benchmarks.backup $(ARGS)

## make bench-backup-fast: backup fast readers against the generic SQLAlchemy path on 1,000,000-row MariaDB and SQLite tables
bench-backup-fast: venv
	$(BIN)/python -m benchmarks.backup_fast $(ARGS)

## make bench-erase: our erase+purge+verify against a hand-written SQL script (PostgreSQL, 200,000 students)
bench-erase: venv
	$(BIN)/python -m benchmarks.erase $(ARGS)

## make bench-notify: notices per second to a local aiosmtpd, our notify path against a plain smtplib loop (ARGS=--profile)
bench-notify: venv
	$(BIN)/python -m benchmarks.notify $(ARGS)

## make lint: ruff check and ruff format --check
lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

## make format: ruff format, then ruff check --fix
format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## make lock: re-resolve requirements.txt into requirements.lock, then requirements-dev.txt on top of it into requirements-dev.lock (only what it adds)
lock:
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install --quiet -r requirements.txt
	.venv-lock/bin/pip freeze > requirements.lock
	.venv-lock/bin/pip install --quiet -r requirements-dev.txt -c requirements.lock
	.venv-lock/bin/pip freeze | grep -vxFf requirements.lock > requirements-dev.lock
	rm -rf .venv-lock

## make clean-state: make down, then delete .state/ (ledger, keyring, certificates, mail)
clean-state: down
	rm -rf .state
