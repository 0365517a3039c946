#!/usr/bin/env bash
# make demo: the gateway on examples/demo/edgegate.yaml (the embedded default, loopback
# only, plus one Modbus and one OPC UA device) and simulated devices of all four
# protocols from edgesim, side by side in one stream:
#   MQTT    3 devices (mqtt-1..3) publishing to the embedded broker on 1883
#   CoAP    2 devices (coap-1..2) POSTing to the CoAP listener on udp 5683
#   Modbus  one Modbus TCP device on 5020, polled by the gateway as modbus-pump-1
#   OPC UA  one OPC UA server on 4840, subscribed to by the gateway as opcua-line-1
# then prints the live stream with `edgegate tail`. Ctrl-C stops everything it
# started. DEMO_SECONDS=N stops by itself after N seconds (used to check the demo).
# Logs: data/demo-*.log.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin}
CONFIG=examples/demo/edgegate.yaml
mkdir -p data
pids=()
cleanup() {
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"$BIN/edgegate" check --config "$CONFIG" >/dev/null

# The devices the gateway is the client of come up first, so that its first
# connection attempt finds them.
"$BIN/edgesim" modbus --listen 127.0.0.1:5020 --move 1s \
  --point holding:0:float32=2.5/walk --point holding:2=0/count --point coil:0=true/toggle \
  2>data/demo-modbus.log &
pids+=($!)
"$BIN/edgesim" opcua --listen 127.0.0.1:4840 --security none --items 0 --interval 500ms \
  >data/demo-opcua.log 2>&1 &
pids+=($!)

"$BIN/edgegate" serve --config "$CONFIG" --log-format text 2>data/demo-gateway.log &
pids+=($!)
# Wait for readiness, not for a guessed time.
for _ in $(seq 1 100); do
  if curl -fsS http://127.0.0.1:8080/readyz >/dev/null 2>&1; then break; fi
  sleep 0.1
done
curl -fsS http://127.0.0.1:8080/readyz >/dev/null || { echo "gateway did not become ready; see data/demo-gateway.log" >&2; exit 1; }
echo "gateway ready: gRPC 127.0.0.1:50051, MQTT 127.0.0.1:1883, CoAP udp 127.0.0.1:5683, status page http://127.0.0.1:8080/ (log: data/demo-gateway.log)" >&2
echo "try in another terminal: $BIN/edgegate devices; $BIN/edgegate read; $BIN/edgegate write opcua-line-1 setpoint 42" >&2

"$BIN/edgesim" mqtt --broker 127.0.0.1:1883 --devices 3 --rate 1 --prefix mqtt- 2>data/demo-mqtt.log &
pids+=($!)
"$BIN/edgesim" coap --server coap://127.0.0.1:5683 --devices 2 --rate 1 --prefix coap- 2>data/demo-coap.log &
pids+=($!)

"$BIN/edgegate" tail &
pids+=($!)

if [ -n "${DEMO_SECONDS:-}" ]; then
  sleep "$DEMO_SECONDS"
else
  wait "${pids[-1]}"
fi
