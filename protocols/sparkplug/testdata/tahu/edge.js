// An Eclipse Tahu edge node for edgegate's Sparkplug interop test
// (protocols/mqtt/sparkplug_interop_test.go): it connects to the broker named by
// EDGEGATE_MQTT_URL, publishes NBIRTH, DBIRTH and DDATA with Tahu's sparkplug-client,
// prints each command it receives as a JSON line on stdout, and stops (publishing its
// NDEATH) when stdin closes.
"use strict";
const sparkplug = require("sparkplug-client");

const client = sparkplug.newClient({
  serverUrl: process.env.EDGEGATE_MQTT_URL,
  username: process.env.EDGEGATE_MQTT_USER,
  password: process.env.EDGEGATE_MQTT_PASSWORD,
  groupId: "tahu",
  edgeNode: "tahu-node",
  clientId: "tahu-node",
  publishDeath: true,
  version: "spBv1.0",
});

function say(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

const now = Date.now();
let births = 0;

client.on("birth", () => {
  births++;
  client.publishNodeBirth({
    timestamp: now,
    metrics: [
      { name: "Node Control/Rebirth", type: "Boolean", value: false },
      { name: "Temp", alias: 1, type: "Float", value: 21.5 },
    ],
  });
  client.publishDeviceBirth("pump", {
    timestamp: now,
    metrics: [
      { name: "Motor/Speed", alias: 2, type: "Int16", value: -300 },
      { name: "i8", alias: 3, type: "Int8", value: -5 },
      { name: "i32", alias: 4, type: "Int32", value: -70000 },
      { name: "i64", alias: 5, type: "Int64", value: -1099511627776 },
      { name: "u8", alias: 6, type: "UInt8", value: 200 },
      { name: "u16", alias: 7, type: "UInt16", value: 60000 },
      { name: "u32", alias: 8, type: "UInt32", value: 4000000000 },
      { name: "u64", alias: 9, type: "UInt64", value: 9007199254740991 },
      { name: "d", alias: 10, type: "Double", value: 2.25 },
      { name: "b", alias: 11, type: "Boolean", value: true },
      { name: "s", alias: 12, type: "String", value: "run" },
      { name: "text", alias: 13, type: "Text", value: "long text" },
      { name: "id", alias: 14, type: "UUID", value: "6f1c1b1e-6a0e-4d5e-9c1f-2b7e0f3a9d10" },
      { name: "when", alias: 15, type: "DateTime", value: 1600000000000 },
      { name: "raw", alias: 16, type: "Bytes", value: Buffer.from([0, 1, 255]) },
    ],
  });
  client.publishDeviceData("pump", {
    timestamp: now + 1000,
    metrics: [
      { alias: 2, type: "Int16", value: 1500 },
      { name: "s", type: "String", value: "stop" },
    ],
  });
  say({ event: "births", count: births });
});

client.on("ncmd", (payload) => {
  say({ event: "ncmd", metrics: payload.metrics.map((m) => ({ name: m.name, type: m.type, value: String(m.value) })) });
});

client.on("dcmd", (device, payload) => {
  say({ event: "dcmd", device, metrics: payload.metrics.map((m) => ({ name: m.name, type: m.type, value: String(m.value) })) });
});

client.on("error", (err) => {
  say({ event: "error", error: String(err) });
  process.exit(1);
});

process.stdin.resume();
process.stdin.on("end", () => {
  client.stop();
  setTimeout(() => process.exit(0), 200);
});
