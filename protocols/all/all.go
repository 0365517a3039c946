// Package all imports every protocol adapter built into edgegate. Importing it is
// how a binary chooses its protocols: each adapter registers itself in init().
package all

import (
	_ "github.com/edgegate/edgegate/protocols/coap"   // CoAP server and client (go-coap)
	_ "github.com/edgegate/edgegate/protocols/modbus" // Modbus TCP and RTU poller
	_ "github.com/edgegate/edgegate/protocols/mqtt"   // MQTT broker (mochi-mqtt)
	_ "github.com/edgegate/edgegate/protocols/opcua"  // OPC UA client (gopcua)
)
