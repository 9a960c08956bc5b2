# The two commands of the README.  Both do all set-up on a fresh machine that has
# Python 3, make and cmake: a virtual environment in .venv and an editable install.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
TOOL   := $(BIN)/idf-nvs-secure
DEMO   := out/demo

.PHONY: demo test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest

# The example's Wi-Fi password comes from the environment (never the repository);
# the demo supplies a placeholder. Its keys derive from the project's documented
# development master secret unless NVS_MASTER_SECRET is set.
export EXAMPLE_WIFI_PASSWORD ?= demo-only-wifi-password

demo: $(VENV)/.installed
	@rm -rf $(DEMO) && mkdir -p $(DEMO)
	$(TOOL) detect example_project
	$(TOOL) build example_project --product basic -o $(DEMO)/basic
	$(TOOL) build example_project --product pro -o $(DEMO)/pro
	$(TOOL) partitions show $(DEMO)/pro/partition-table.bin --offset 0xd000
	$(TOOL) nvs dump $(DEMO)/pro/nvs.bin --keys $(DEMO)/pro/nvs_keys.bin
	@echo "demo: artifacts are in $(DEMO)/; with ESP-IDF, run 'idf.py build flash' in example_project/"

clean:
	rm -rf out $(VENV) *.egg-info
