//go:build !linux

package modbus

import "errors"

func openSerial(ep *endpoint) (serialPort, error) {
	return nil, errors.New("modbus: RTU serial lines are supported on Linux only")
}
