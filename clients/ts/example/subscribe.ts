// A TypeScript workload on Node.js: subscribe to an edgegate gateway's stream over
// gRPC (Connect's Node transport, gRPC protocol), list the devices, and write a
// point back. The stubs in ../gen come from gateway.proto (`make clients`).
//
//   npm ci && npm run build
//   node dist/example/subscribe.js --server 127.0.0.1:50051 --device 'fryer-*' --count 3 \
//     [--write fryer-1/heater=false]
//
// It prints one JSON object a line: each message, then {"devices": [...]}, then
// {"wrote": ...}. Plaintext is for a gateway on loopback (or a sidecar); give
// --cacert for TLS.
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { create, toJson } from "@bufbuild/protobuf";
import { createClient, ConnectError } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import {
  Gateway,
  MessageSchema,
  ValueSchema,
  type Message,
  type Value,
} from "../gen/edgegate/v1/gateway_pb.js";

const { values: args } = parseArgs({
  options: {
    server: { type: "string", default: "127.0.0.1:50051" },
    cacert: { type: "string" },
    device: { type: "string", multiple: true, default: [] },
    point: { type: "string", multiple: true, default: [] },
    count: { type: "string", default: "10" },
    "from-earliest": { type: "boolean", default: true },
    write: { type: "string" },
    timeout: { type: "string", default: "10000" },
  },
});

const tls = args.cacert !== undefined;
const transport = createGrpcTransport({
  baseUrl: (tls ? "https://" : "http://") + args.server,
  nodeOptions: tls ? { ca: readFileSync(args.cacert!) } : undefined,
});
const gateway = createClient(Gateway, transport);

// A typed value as a plain JavaScript one (64-bit integers as bigint).
function plain(v: Value | undefined): number | bigint | boolean | string | Uint8Array | undefined {
  return v?.kind.value;
}

// Parse "device/point=value": true/false, a number, or text.
function parseWrite(s: string): { device: string; point: string; value: Value } {
  const m = /^([^/]+)\/([^=]+)=(.*)$/.exec(s);
  if (!m) throw new Error(`--write ${s}: want device/point=value`);
  const [, device, point, raw] = m;
  let value: Value;
  if (raw === "true" || raw === "false") value = create(ValueSchema, { kind: { case: "boolValue", value: raw === "true" } });
  else if (/^-?\d+$/.test(raw)) value = create(ValueSchema, { kind: { case: "intValue", value: BigInt(raw) } });
  else if (raw !== "" && !isNaN(Number(raw))) value = create(ValueSchema, { kind: { case: "doubleValue", value: Number(raw) } });
  else value = create(ValueSchema, { kind: { case: "stringValue", value: raw } });
  return { device, point, value };
}

async function main(): Promise<void> {
  const count = Number(args.count);
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), Number(args.timeout));
  try {
    let n = 0;
    const stream = gateway.subscribe(
      {
        devices: args.device,
        points: args.point,
        start: args["from-earliest"] ? { case: "fromEarliest", value: true } : { case: undefined },
      },
      { signal: ctl.signal },
    );
    for await (const m of stream as AsyncIterable<Message>) {
      const v = plain(m.value);
      console.log(JSON.stringify({
        ...(toJson(MessageSchema, m) as object),
        plain: typeof v === "bigint" ? v.toString() : v,
      }));
      if (++n >= count) break; // leaving the loop cancels the stream
    }
    const { devices } = await gateway.listDevices({}, { signal: ctl.signal });
    console.log(JSON.stringify({ devices: devices.map((d) => ({ id: d.id, state: d.state, messages: d.messages.toString() })) }));
    if (args.write) {
      const w = parseWrite(args.write);
      const resp = await gateway.write(w, { signal: ctl.signal });
      console.log(JSON.stringify({ wrote: `${resp.device}/${resp.point}` }));
    }
  } finally {
    clearTimeout(timer);
  }
}

main().then(() => {
  // The HTTP/2 session stays open for more calls; a one-shot program ends here.
  process.exit(0);
}, (e: unknown) => {
  const err = ConnectError.from(e);
  console.error(`edgegate example: ${err.code !== undefined ? "code " + err.code + ": " : ""}${err.rawMessage}`);
  process.exit(1);
});
