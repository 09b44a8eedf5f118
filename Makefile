# One command each on a fresh machine: `make demo`, `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.setup-done
APT_PACKAGES := xvfb xauth libgl1 libgl1-mesa-dri libmtdev1 libegl1 libsdl2-2.0-0 xclip \
	postgresql chromium chromium-driver

.PHONY: setup system-deps test demo lint format bench clean package

setup: $(STAMP)

# System libraries the UI tests need (virtual screen, GL, touch; xclip gives Kivy's text
# fields X11's cut buffer, without which every start logs a CRITICAL with two tracebacks), and
# the lab server's test dependencies (PostgreSQL server binaries, headless Chromium and its
# driver); only when missing.
system-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

$(STAMP): pyproject.toml packaging/constraints-cpu.txt
	$(MAKE) system-deps
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -c packaging/constraints-cpu.txt -e '.[ui,workstation,lab,microscopy,dev]'
	touch $(STAMP)

test: setup
	$(BIN)/python -m pytest -q

demo: setup
	$(BIN)/python -m export demo

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The tablet app as one folder (dist/appliance/), built in its own .venv-package: no torch.
package: system-deps
	$(PY) packaging/build.py

bench: setup
	for b in bench/*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .venv-package build dist *.egg-info .pytest_cache
