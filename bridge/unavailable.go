package bridge

import "errors"

// ErrUnavailable is wrapped by a durable log's errors when it cannot write (a full
// disk, an I/O error): the messages it refers to are not on disk and must not be
// acknowledged, but the condition is temporary, so a device should send again
// later rather than be refused for good (MQTT: close the connection; CoAP:
// 5.03). Adapters test it with errors.Is.
var ErrUnavailable = errors.New("durable log unavailable")
