# The two commands of the README. Each sets itself up: virtualenv, requirements, database.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
HOST ?= 127.0.0.1

.PHONY: run test worker beat lint bench clean vendor

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.runtime: requirements.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev: requirements-dev.txt requirements.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@ $(VENV)/.runtime

# --no-proxy-headers: only Django reads X-Forwarded-For, behind TRUSTED_PROXIES (config/clients.py).
run: $(VENV)/.runtime
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py load_models providers/demo_models.yaml
	@echo
	@echo "  The arena:  http://$(HOST):$(PORT)/    (leaderboard /leaderboard/, API docs /api/v1/docs/)"
	@echo "  The admin:  http://$(HOST):$(PORT)/admin/ ; make an account for it, in another terminal:"
	@echo "              $(BIN)/python manage.py createsuperuser"
	@echo "  Stop with Ctrl-C."
	@echo
	$(BIN)/uvicorn config.asgi:application --host $(HOST) --port $(PORT) --no-proxy-headers

test: $(VENV)/.dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

worker: $(VENV)/.runtime
	$(BIN)/celery -A config worker --loglevel=INFO

beat: $(VENV)/.runtime
	$(BIN)/celery -A config beat --loglevel=INFO

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(VENV)/.dev
	$(BIN)/python bench/rating.py

# The browser libraries in static/vendor/ are committed; this refreshes them after a version
# change in package.json (needs npm; `make run` does not).
vendor:
	sh scripts/vendor.sh

clean:
	rm -rf $(VENV) db.sqlite3* staticfiles
