#!/usr/bin/env bash
# make demo: the gateway on its embedded default (loopback only), five simulated MQTT
# devices, and the live stream printed by `edgegate tail`. Ctrl-C stops all three.
# DEMO_SECONDS=N stops by itself after N seconds (used to check the demo works).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin}
mkdir -p data
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT INT TERM

"$BIN/edgegate" serve --log-format text 2>data/demo-gateway.log &
pids+=($!)
# Wait for readiness, not for a guessed time.
for _ in $(seq 1 100); do
  if curl -fsS http://127.0.0.1:8080/readyz >/dev/null 2>&1; then break; fi
  sleep 0.1
done
curl -fsS http://127.0.0.1:8080/readyz >/dev/null || { echo "gateway did not become ready; see data/demo-gateway.log" >&2; exit 1; }
echo "gateway ready: gRPC 127.0.0.1:50051, MQTT 127.0.0.1:1883, http://127.0.0.1:8080/status (log: data/demo-gateway.log)" >&2

"$BIN/edgesim" mqtt --broker 127.0.0.1:1883 --devices 5 --rate 1 2>data/demo-sim.log &
pids+=($!)

"$BIN/edgegate" tail &
pids+=($!)

if [ -n "${DEMO_SECONDS:-}" ]; then
  sleep "$DEMO_SECONDS"
else
  wait "${pids[-1]}"
fi
