# The two commands of the README. Each sets itself up: virtualenv, requirements, database.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
# The languages shipped besides English, and what makemessages leaves out (tests/test_i18n.py runs
# the same extraction).
MAKEMESSAGES_ARGS := -l fr -l zh_Hans --add-location=file --no-obsolete \
	--ignore=.venv --ignore=static/vendor --ignore=staticfiles --ignore=tests --ignore=node_modules
HOST ?= 127.0.0.1

.PHONY: run test worker beat lint bench clean vendor messages makemessages

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
# The translations (locale/*/LC_MESSAGES/*.po) compiled to the .mo files Django reads: with GNU
# gettext's msgfmt where installed, else with the pure-Python compiler (config/po.py).
messages: | $(BIN)/python
	@if command -v msgfmt >/dev/null 2>&1; then \
		$(BIN)/python manage.py compilemessages --ignore=.venv --ignore=node_modules --verbosity 0; \
	else $(BIN)/python -m config.po locale; fi

# After adding or changing an interface string: new msgids into the .po files (CONTRIBUTING.md).
makemessages: $(VENV)/.runtime
	$(BIN)/python manage.py makemessages $(MAKEMESSAGES_ARGS) -d django
	$(BIN)/python manage.py makemessages $(MAKEMESSAGES_ARGS) -d djangojs

run: $(VENV)/.runtime messages
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py load_models providers/demo_models.yaml
	@echo
	@echo "  The arena:  http://$(HOST):$(PORT)/    (leaderboard /leaderboard/, API docs /api/v1/docs/)"
	@echo "  The admin:  http://$(HOST):$(PORT)/admin/ ; make an account for it, in another terminal:"
	@echo "              $(BIN)/python manage.py createsuperuser"
	@echo "  Stop with Ctrl-C."
	@echo
	$(BIN)/uvicorn config.asgi:application --host $(HOST) --port $(PORT) --no-proxy-headers

test: $(VENV)/.dev messages
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
