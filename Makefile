# The two commands of the README.  Both do all set-up on a fresh machine that has
# Python 3, make and cmake: a virtual environment in .venv and an editable install.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
TOOL   := $(BIN)/idf-nvs-secure
DEMO   ?= out/demo

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
# the demo supplies a placeholder.  Builds derive their keys from the project's
# documented development master secret unless NVS_MASTER_SECRET is set; the release
# and the batch refuse that default, so the demo draws a throw-away secret for them.
export EXAMPLE_WIFI_PASSWORD ?= demo-only-wifi-password
EX   := example_project
LOG  = $(DEMO)/logs
step = printf 'demo: %-46s %s\n'

demo: $(VENV)/.installed
	@rm -rf $(DEMO) && mkdir -p $(LOG)
	@$(TOOL) detect $(EX) > $(LOG)/detect.txt 2>&1 || { cat $(LOG)/detect.txt; exit 1; }
	@$(step) "security plan (esp32, flash_enc scheme)" "$(LOG)/detect.txt"
	@for p in basic pro; do \
	  $(TOOL) build $(EX) --product $$p -o $(DEMO)/$$p > $(LOG)/build-$$p.txt 2>&1 \
	    || { cat $(LOG)/build-$$p.txt; exit 1; }; \
	  $(step) "built table, NVS image and keys of $$p" "$(DEMO)/$$p/"; done
	@$(step) "the encrypted NVS of pro, read back:" "$(DEMO)/pro/nvs.bin"
	@$(TOOL) nvs dump $(DEMO)/pro/nvs.bin --keys $(DEMO)/pro/nvs_keys.bin
	@$(TOOL) partitions show $(EX)/partitions.yaml --svg $(DEMO)/flash_map.svg \
	  > $(LOG)/partitions.txt 2>&1 || { cat $(LOG)/partitions.txt; exit 1; }
	@$(step) "flash map" "$(DEMO)/flash_map.svg"
	@$(TOOL) report $(EX) --product pro -o $(DEMO)/report.html \
	  > $(LOG)/report.txt 2>&1 || { cat $(LOG)/report.txt; exit 1; }
	@$(step) "HTML report (secrets masked)" "$(DEMO)/report.html"
	@(umask 077; $(BIN)/python -c "import secrets; print(secrets.token_hex(32))" > $(DEMO)/demo_master_secret.hex)
	@$(TOOL) release $(EX) --product pro --master-secret-file $(DEMO)/demo_master_secret.hex \
	  -o $(DEMO)/release > $(LOG)/release.txt 2>&1 || { cat $(LOG)/release.txt; exit 1; }
	@$(step) "release bundle (reproducible zip)" "$(DEMO)/release/pro-release.zip"
	@$(TOOL) batch $(EX) --product pro --devices $(EX)/devices.csv -o $(DEMO)/batch \
	  --master-secret-file $(DEMO)/demo_master_secret.hex > $(LOG)/batch.txt 2>&1 \
	  || { cat $(LOG)/batch.txt; exit 1; }
	@$(step) "5-device manufacturing batch" "$(DEMO)/batch/index.csv"
	@echo "demo: done. With ESP-IDF installed: cd $(EX) && idf.py set-target esp32 && idf.py build flash"

clean:
	rm -rf out $(VENV) *.egg-info
