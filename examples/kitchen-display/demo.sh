#!/usr/bin/env bash
# make demo-kitchen: edgegate with two Modbus fryers from `edgesim modbus`, two
# point-of-sale terminals publishing orders over MQTT (`kitchen-display pos`), and
# the kitchen display reading everything through edgegate's gRPC Unix socket.
# Ctrl-C stops all of it. DEMO_SECONDS=N stops by itself after N seconds.
# Addresses (all loopback): DEMO_HTTP (127.0.0.1:8080, the status page),
# DEMO_MQTT (127.0.0.1:1883), DEMO_MODBUS_PORT (5020: the fryers take it and the
# next), DEMO_BOARD (127.0.0.1:8090, the kitchen board's page).
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-bin}
HTTP=${DEMO_HTTP:-127.0.0.1:8080}
MQTT=${DEMO_MQTT:-127.0.0.1:1883}
MODBUS_PORT=${DEMO_MODBUS_PORT:-5020}
BOARD=${DEMO_BOARD:-127.0.0.1:8090}
run=data/demo-kitchen
mkdir -p "$run"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT INT TERM

cat >"$run/edgegate.yaml" <<YAML
gateway: {id: kitchen-demo, data_dir: $run/data, labels: {site: demo}}
grpc: {listen: "unix://$PWD/$run/grpc.sock"}
http: {listen: "$HTTP"}
mqtt:
  listeners: [{type: tcp, address: "$MQTT"}]
  allow_anonymous: true          # loopback only
modbus: {reconnect_backoff: 200ms}
devices:
  - id: fryer-1
    protocol: modbus
    address: tcp://127.0.0.1:$MODBUS_PORT
    unit_id: 1
    poll_interval: 500ms
    points:
      - {name: oil_temp, register: holding, address: 0, type: float32, unit: "°C", deadband: 0.5, priority: critical}
      - {name: heater, register: coil, address: 0, writable: true, priority: high}
  - id: fryer-2
    protocol: modbus
    address: tcp://127.0.0.1:$((MODBUS_PORT + 1))
    unit_id: 1
    poll_interval: 500ms
    points:
      - {name: oil_temp, register: holding, address: 0, type: float32, unit: "°C", deadband: 0.5, priority: critical}
      - {name: heater, register: coil, address: 0, writable: true, priority: high}
YAML
"$BIN/edgegate" check --config "$run/edgegate.yaml" >/dev/null

"$BIN/edgesim" modbus --devices 2 --listen "127.0.0.1:$MODBUS_PORT" --map examples/kitchen-display/fryers.yaml --move 500ms 2>"$run/fryers.log" &
pids+=($!)
"$BIN/edgegate" serve --config "$run/edgegate.yaml" 2>"$run/gateway.log" &
pids+=($!)
# Wait for readiness, not for a guessed time.
for _ in $(seq 1 100); do
  if curl -fsS "http://$HTTP/readyz" >/dev/null 2>&1; then break; fi
  sleep 0.1
done
curl -fsS "http://$HTTP/readyz" >/dev/null || { echo "gateway did not become ready; see $run/gateway.log" >&2; exit 1; }
echo "edgegate ready: status page http://$HTTP/ (log: $run/gateway.log)" >&2

"$BIN/kitchen-display" pos --broker "$MQTT" --terminals 2 --every 3s >"$run/pos.log" 2>&1 &
pids+=($!)
"$BIN/kitchen-display" display --server "unix://$PWD/$run/grpc.sock" --hot 195 --listen "$BOARD" &
pids+=($!)
echo "kitchen board: http://$BOARD/  (turn a heater back on: $BIN/edgegate write --server unix://$PWD/$run/grpc.sock fryer-1 heater true)" >&2

if [ -n "${DEMO_SECONDS:-}" ]; then
  sleep "$DEMO_SECONDS"
else
  wait "${pids[-1]}"
fi
