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

demo: $(VENV)/.installed
	@rm -rf $(DEMO) && mkdir -p $(DEMO)
	$(TOOL) partitions build example_project/partitions.csv -o $(DEMO)/partition-table.bin --csv $(DEMO)/partitions.csv
	$(TOOL) partitions show $(DEMO)/partition-table.bin
	$(TOOL) keys generate -o $(DEMO)/nvs_keys.bin
	$(TOOL) keys show $(DEMO)/nvs_keys.bin
	$(TOOL) nvs build example_project/nvs_values.csv --size 0x6000 --keys $(DEMO)/nvs_keys.bin -o $(DEMO)/nvs.bin
	$(TOOL) nvs dump $(DEMO)/nvs.bin --keys $(DEMO)/nvs_keys.bin
	@echo "demo: artifacts are in $(DEMO)/"

clean:
	rm -rf out $(VENV) *.egg-info
