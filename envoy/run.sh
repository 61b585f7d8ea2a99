#!/usr/bin/env bash
# Starts the upstream stand-in (unless UPSTREAM is set) and Envoy with inferguard in the
# foreground. Ctrl-C stops both. Called by `make run`.
set -euo pipefail
cd "$(dirname "$0")/.."

ENVOY=${ENVOY:-.venv/bin/envoy}
PYTHON=${PYTHON:-.venv/bin/python}
CONFIG=${CONFIG:-envoy/inferguard.json}
HTTPS_PORT=${HTTPS_PORT:-8443}
PLAIN_PORT=${PLAIN_PORT:-8080}
ADMIN_PORT=${ADMIN_PORT:-9901}
RUN_DIR=${RUN_DIR:-.run}
mkdir -p "$RUN_DIR"

target/cli/inferguard check-config "$CONFIG"

pids=()
cleanup() {
  for p in "${pids[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

if [ -z "${UPSTREAM:-}" ]; then
  UPSTREAM=127.0.0.1:8000
  "$PYTHON" tests/upstream/standin.py --listen "$UPSTREAM" &
  pids+=($!)
  for _ in $(seq 50); do
    curl -fsS "http://$UPSTREAM/health" >/dev/null 2>&1 && break
    sleep 0.1
  done
else
  echo "upstream: $UPSTREAM (no stand-in started)"
fi

"$PYTHON" envoy/render.py --upstream "$UPSTREAM" --config "$CONFIG" \
  --https-port "$HTTPS_PORT" --plain-port "$PLAIN_PORT" --admin-port "$ADMIN_PORT" -o "$RUN_DIR/envoy-$HTTPS_PORT.yaml"

cat <<MSG

inferguard: Envoy on https://localhost:$HTTPS_PORT (plaintext :$PLAIN_PORT answers 426), upstream $UPSTREAM
Try:
  curl --cacert certs/ca.crt https://localhost:$HTTPS_PORT/v1/chat/completions \\
    -H 'content-type: application/json' \\
    -d '{"model":"m","messages":[{"role":"user","content":"Who sends the report?"}]}'
Access-log lines end with the audit record: inferguard={...}. Ctrl-C stops.

MSG

$ENVOY -c "$RUN_DIR/envoy-$HTTPS_PORT.yaml" --disable-hot-restart --log-level warn --component-log-level wasm:info &
pids+=($!)
wait -n "${pids[@]}"
