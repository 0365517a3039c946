// node-opcua server for edgegate's interop test (protocols/opcua/interop_test.go).
// Arguments: PKI_DIR CERT_FILE KEY_FILE. It listens on 127.0.0.1, on a port the
// system picks, and prints "ready PORT" once serving; "written VALUE" for every
// value written to Line1.Setpoint. It stops when its standard input closes.
"use strict";
const {
  OPCUAServer, OPCUACertificateManager, Variant, DataType, SecurityPolicy, MessageSecurityMode,
} = require("node-opcua");

const [pkiDir, certFile, keyFile] = process.argv.slice(2);

(async () => {
  const serverCertificateManager = new OPCUACertificateManager({
    automaticallyAcceptUnknownCertificate: true, // the test's client is new every run
    rootFolder: pkiDir,
  });
  await serverCertificateManager.initialize();
  const server = new OPCUAServer({
    host: "127.0.0.1",
    hostname: "127.0.0.1",
    port: 0,
    serverCertificateManager,
    certificateFile: certFile,
    privateKeyFile: keyFile,
    serverInfo: { applicationUri: "urn:edgegate:interop:server" },
    securityPolicies: [SecurityPolicy.None, SecurityPolicy.Basic256Sha256],
    securityModes: [MessageSecurityMode.None, MessageSecurityMode.SignAndEncrypt],
    allowAnonymous: true,
  });
  await server.initialize();
  const addressSpace = server.engine.addressSpace;
  const ns = addressSpace.getOwnNamespace();
  const objects = addressSpace.rootFolder.objects;
  let t = 20;
  const temperature = ns.addVariable({
    organizedBy: objects, browseName: "Temperature", nodeId: "s=Line1.Temperature", dataType: "Double",
    value: { dataType: DataType.Double, value: t },
  });
  const timer = setInterval(() => {
    t += 1;
    temperature.setValueFromSource(new Variant({ dataType: DataType.Double, value: t }));
  }, 50);
  const setpoint = ns.addVariable({
    organizedBy: objects, browseName: "Setpoint", nodeId: "s=Line1.Setpoint", dataType: "Double",
    accessLevel: "CurrentRead | CurrentWrite", userAccessLevel: "CurrentRead | CurrentWrite",
    value: { dataType: DataType.Double, value: 0 },
  });
  setpoint.on("value_changed", (dv) => console.log("written " + dv.value.value));
  await server.start();
  console.log("ready " + server.endpoints[0].port);
  const stop = async () => {
    clearInterval(timer);
    await server.shutdown(0);
    process.exit(0);
  };
  process.stdin.on("end", stop);
  process.stdin.resume();
  process.on("SIGTERM", stop);
})().catch((err) => {
  console.error("error " + err);
  process.exit(1);
});
