# Two commands for a fresh machine: `make run` (VisitFlow with embedded defaults) and `make test`.
VENV    := .venv
PYTHON  ?= python3
STAMP   := $(VENV)/.installed-stamp

.PHONY: run test bench clean

$(STAMP): pyproject.toml $(wildcard package.json) $(wildcard package-lock.json)
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[test]'
	@if [ -f package.json ]; then npm ci --no-audit --no-fund --loglevel=error || npm install --no-audit --no-fund --loglevel=error; fi
	touch $(STAMP)

# Your configuration (VISITFLOW_CONFIG, else ./visitflow.toml); without one, the demo agency's billing identity
# (deploy/visitflow.demo.toml), so the demo writes real 837P files.
run: $(STAMP)
	VISITFLOW_CONFIG=$${VISITFLOW_CONFIG:-$$( [ -f visitflow.toml ] && echo visitflow.toml || echo deploy/visitflow.demo.toml )} \
		$(VENV)/bin/visitflow up

test: $(STAMP)
	bash scripts/test.sh

bench: $(STAMP)
	$(VENV)/bin/python -m bench

# Fault injection: the worker SIGKILLed, Temporal and the API restarted under load; every invariant checked.
FAULT_VISITS ?= 1000
.PHONY: fault
fault: $(STAMP)
	$(VENV)/bin/python -m tests.fault.harness --visits $(FAULT_VISITS)

clean:
	rm -rf $(VENV) node_modules data test-artifacts
