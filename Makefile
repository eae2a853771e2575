# The two commands of this project: `make run` and `make test`.
DATA_DIR ?= .data
PORT ?= 6443
CARGO ?= cargo
KUBECTL_DIR ?= /usr/lib/google-cloud-sdk/bin

.PHONY: run test check build bench certs tools python-venv

## Start a one-machine cluster in the foreground on the embedded store.
run: tools
	$(CARGO) build -p apiserver --bin apiserver
	./target/debug/apiserver --data-dir "$(DATA_DIR)" --secure-port "$(PORT)"

## Run every test of the workspace (builds the binaries the compat tests drive first).
test: tools python-venv
	$(CARGO) fetch
	$(CARGO) build --workspace --bins
	$(CARGO) test --workspace --no-fail-fast

## The official Python kubernetes client for the compat tests, in a venv of its own.
PYTHON_VENV := target/python-venv
PYTHON_KUBERNETES := kubernetes==37.0.2
python-venv: $(PYTHON_VENV)/.installed
$(PYTHON_VENV)/.installed:
	python3 -m venv $(PYTHON_VENV)
	$(PYTHON_VENV)/bin/python -m pip install --quiet --disable-pip-version-check $(PYTHON_KUBERNETES)
	touch $@

## Formatting and lints, as CI wants them.
check: tools
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

build: tools
	$(CARGO) build --workspace --bins

## Issue another client identity: make certs USER=alice GROUP=dev
certs: tools
	$(CARGO) run -q -p certs -- kubeconfig --pki-dir "$(DATA_DIR)/pki" --user "$(USER)" \
		$(if $(GROUP),--group "$(GROUP)") --server "https://127.0.0.1:$(PORT)" --out "$(DATA_DIR)/$(USER).kubeconfig"

bench:
	@echo "make bench: no benchmark harness yet (tracked in the benchmarks issue)"; exit 1

## What the build and the tests need on a fresh machine.
tools:
	@command -v $(CARGO) >/dev/null || { echo "cargo is required (rustup toolchain)"; exit 1; }
	@rustup component list --installed 2>/dev/null | grep -q rustfmt || rustup component add rustfmt clippy >/dev/null 2>&1 || true
	@for v in 1.32 1.33; do test -x "$(KUBECTL_DIR)/kubectl.$$v" || { echo "missing $(KUBECTL_DIR)/kubectl.$$v (the stock kubectl the compat tests drive)"; exit 1; }; done
