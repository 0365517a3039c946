"""A Python workload: subscribe to an edgegate gateway's stream and list its devices.

The stubs in edgegate/v1 come from gateway.proto (`make clients`: protoc's
--python_out and grpc_python_plugin). Needs grpcio and protobuf (Debian:
python3-grpcio python3-protobuf).

    python3 clients/python/example.py --server 127.0.0.1:50051 --device 'fryer-*' --count 3

It prints one JSON object a line: each message, then {"devices": [...]}.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import grpc  # noqa: E402
from google.protobuf import json_format  # noqa: E402

from edgegate.v1 import gateway_pb2, gateway_pb2_grpc  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--server", default="127.0.0.1:50051")
    p.add_argument("--cacert", help="CA certificate of the gateway (turns on TLS)")
    p.add_argument("--device", action="append", default=[])
    p.add_argument("--count", type=int, default=10)
    p.add_argument("--timeout", type=float, default=10.0)
    a = p.parse_args()

    if a.cacert:
        with open(a.cacert, "rb") as f:
            channel = grpc.secure_channel(a.server, grpc.ssl_channel_credentials(f.read()))
    else:
        channel = grpc.insecure_channel(a.server)  # loopback or a sidecar only
    with channel:
        gw = gateway_pb2_grpc.GatewayStub(channel)
        req = gateway_pb2.SubscribeRequest(devices=a.device, from_earliest=True)
        stream = gw.Subscribe(req, timeout=a.timeout)
        for n, m in enumerate(stream, 1):
            out = json_format.MessageToDict(m, preserving_proto_field_name=True)
            out["plain"] = getattr(m.value, m.value.WhichOneof("kind"))
            print(json.dumps(out), flush=True)
            if n >= a.count:
                stream.cancel()
                break
        devices = gw.ListDevices(gateway_pb2.ListDevicesRequest(), timeout=a.timeout).devices
        print(json.dumps({"devices": [{"id": d.id, "state": gateway_pb2.DeviceState.Name(d.state)} for d in devices]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
