# TweetOps: `make demo` and `make test` are the two commands of the README.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PYTHONUNBUFFERED := 1

.PHONY: install demo test test-unit test-integration bench stack-up stack-down clean lock

install: $(VENV)/.installed

# The venv is rebuilt when the lock file changes. pip (not uv/poetry) finds the local torch CPU wheel.
$(VENV)/.installed: requirements.lock pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade "pip>=24"
	$(PIP) install --quiet -r requirements.lock
	$(PIP) install --quiet --no-deps --no-build-isolation -e .
	touch $@

demo: install
	$(VENV)/bin/tweetops demo

test: install
	$(VENV)/bin/pytest tests

test-unit: install
	$(VENV)/bin/pytest tests -m "not integration"

test-integration: install
	$(VENV)/bin/pytest tests -m integration

bench: install
	$(PY) -m tweetops.bench.report

stack-up: install
	$(VENV)/bin/tweetops stack up

stack-down:
	$(VENV)/bin/tweetops stack down

# Regenerate the lock from requirements.txt (top-level pins) in a scratch venv.
lock:
	rm -rf /tmp/tweetops-lock && python3 -m venv /tmp/tweetops-lock
	/tmp/tweetops-lock/bin/pip install --quiet -r requirements.txt
	/tmp/tweetops-lock/bin/pip freeze --exclude-editable | grep -v '^tweetops' > requirements.lock

clean: stack-down
	rm -rf .tweetops
