# The two commands of this project: `make run` and `make test`.
DATA_DIR ?= .data
PORT ?= 6443
NODE_NAME ?= $(shell hostname)
NODE_PORT ?= 10250
CARGO ?= cargo
KUBECTL_DIR ?= /usr/lib/google-cloud-sdk/bin
HOST_TRIPLE := $(shell rustc -vV 2>/dev/null | sed -n 's/^host: //p')
PAUSE_IMAGE ?= nodeagent-pause:1

.PHONY: run test check build bench certs tools test-tools python-venv images

## Start a one-machine cluster in the foreground on the embedded store: the API server and,
## where a Docker Engine is reachable, a node agent running pods as containers.
run: tools images
	$(CARGO) build -p apiserver -p nodeagent -p certs --bins
	./scripts/run-cluster.sh "$(DATA_DIR)" "$(PORT)" "$(NODE_NAME)" "$(NODE_PORT)" ./target/debug

## Run every test of the workspace (builds the binaries and images the tests drive first).
test: tools test-tools python-venv images
	$(CARGO) fetch
	$(CARGO) build --workspace --bins
	$(CARGO) test --workspace --no-fail-fast

## The node agent's images, built offline (no registry here): the pod sandbox (a static
## `pause` FROM scratch) and `busybox:latest` from Debian's busybox-static.
images: tools
	@if docker info >/dev/null 2>&1; then \
		RUSTFLAGS="-C target-feature=+crt-static" $(CARGO) build -q --release -p pause \
			--target $(HOST_TRIPLE) --target-dir target/pause && \
		./nodeagent/images/import.sh pause target/pause/$(HOST_TRIPLE)/release/pause $(PAUSE_IMAGE) && \
		./nodeagent/images/import.sh busybox "$$(command -v busybox)" busybox:latest; \
	else \
		echo "images: no Docker Engine reachable; the node agent's Docker runtime cannot run here"; \
	fi

## What only the tests need: Debian's docker-registry, a registry for the image pull tests.
test-tools:
	@command -v docker-registry >/dev/null || { command -v apt-get >/dev/null && apt-get install -y -q docker-registry >/dev/null 2>&1; } || { echo "docker-registry is required for the image pull tests (apt-get install docker-registry)"; exit 1; }

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
	@command -v busybox >/dev/null || { command -v apt-get >/dev/null && apt-get install -y -q busybox-static >/dev/null; } || { echo "busybox-static is required (apt-get install busybox-static)"; exit 1; }
	@command -v curl >/dev/null || { echo "curl is required"; exit 1; }
	@for v in 1.32 1.33; do test -x "$(KUBECTL_DIR)/kubectl.$$v" || { echo "missing $(KUBECTL_DIR)/kubectl.$$v (the stock kubectl the compat tests drive)"; exit 1; }; done
