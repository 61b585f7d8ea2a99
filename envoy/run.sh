#!/usr/bin/env bash
# Starts the upstream stand-ins (unless UPSTREAM is set) and Envoy with inferguard in the
# foreground. Ctrl-C stops them all. Called by `make run`.
#
# Without UPSTREAM: a TLS stand-in on 127.0.0.1:8000 (certs/upstream.crt) behind the default
# route, and a plaintext one on 127.0.0.1:8001 behind Host legacy.inferguard.test. With
# UPSTREAM=host:port: that server, in plain HTTP, unless UPSTREAM_SNI names the server in its
# certificate (then TLS, verified against UPSTREAM_CA, certs/ca.crt by default); PLAIN_UPSTREAM
# (default: UPSTREAM) is what Host legacy.inferguard.test reaches.
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

upstream_args=()
if [ -z "${UPSTREAM:-}" ]; then
  UPSTREAM=127.0.0.1:8000
  PLAIN_UPSTREAM=127.0.0.1:8001
  "$PYTHON" tests/upstream/standin.py --listen "$UPSTREAM" --tls-cert certs/upstream.crt --tls-key certs/upstream.key &
  pids+=($!)
  "$PYTHON" tests/upstream/standin.py --listen "$PLAIN_UPSTREAM" &
  pids+=($!)
  for _ in $(seq 50); do
    curl -fsS --cacert certs/ca.crt "https://$UPSTREAM/health" >/dev/null 2>&1 &&
      curl -fsS "http://$PLAIN_UPSTREAM/health" >/dev/null 2>&1 && break
    sleep 0.1
  done
elif [ -n "${UPSTREAM_SNI:-}" ]; then
  upstream_args=(--upstream-sni "$UPSTREAM_SNI" --upstream-ca "${UPSTREAM_CA:-certs/ca.crt}")
  echo "upstream: $UPSTREAM (no stand-in started), TLS verified as $UPSTREAM_SNI"
else
  upstream_args=(--upstream-plaintext)
  echo "upstream: $UPSTREAM (no stand-in started), plain HTTP (UPSTREAM_SNI=name for TLS)"
fi

"$PYTHON" envoy/render.py --upstream "$UPSTREAM" --plain-upstream "${PLAIN_UPSTREAM:-$UPSTREAM}" "${upstream_args[@]}" \
  --config "$CONFIG" --https-port "$HTTPS_PORT" --plain-port "$PLAIN_PORT" --admin-port "$ADMIN_PORT" \
  --capture-log "$RUN_DIR/capture-$HTTPS_PORT.log" -o "$RUN_DIR/envoy-$HTTPS_PORT.yaml"

cat <<MSG

inferguard: Envoy on https://localhost:$HTTPS_PORT (plaintext :$PLAIN_PORT answers 426), upstream $UPSTREAM,
Host legacy.inferguard.test to ${PLAIN_UPSTREAM:-$UPSTREAM} in plain HTTP
Try:
  curl --cacert certs/ca.crt https://localhost:$HTTPS_PORT/v1/chat/completions \\
    -H 'content-type: application/json' \\
    -d '{"model":"m","messages":[{"role":"user","content":"Who sends the report?"}]}'
Each access-log line is JSON with the audit record nested as "inferguard"; with audit.capture.to: capture_log,
the redacted prompts and answers go to $RUN_DIR/capture-$HTTPS_PORT.log. Ctrl-C stops.

MSG

$ENVOY -c "$RUN_DIR/envoy-$HTTPS_PORT.yaml" --disable-hot-restart --log-level warn --component-log-level wasm:info &
pids+=($!)
wait -n "${pids[@]}"
