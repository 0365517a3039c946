package uplink

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/bridge/pbconv"
	pb "github.com/edgegate/edgegate/proto/edgegate/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// Header names of the contract.
const (
	// HeaderMsgID is JetStream's de-duplication header.
	HeaderMsgID = "Nats-Msg-Id"
	// HeaderExpires is a command's optional expiry, RFC 3339.
	HeaderExpires = "Edgegate-Expires"
)

// codec encodes messages and results and decodes commands in one encoding.
type codec struct{ json bool }

func newCodec(encoding string) codec { return codec{json: encoding == EncodingJSON} }

func (c codec) marshal(m proto.Message) ([]byte, error) {
	if c.json {
		return protojson.Marshal(m)
	}
	return proto.Marshal(m)
}

// appendMessage encodes a bridge message onto b.
func (c codec) appendMessage(b []byte, m *bridge.Message) ([]byte, error) {
	pm := pbconv.ToProto(m)
	if c.json {
		out, err := protojson.Marshal(pm)
		return append(b, out...), err
	}
	return proto.MarshalOptions{}.MarshalAppend(b, pm)
}

// maxCommandBytes bounds a command's payload: a WriteRequest is small.
const maxCommandBytes = 64 << 10

// maxIDLen bounds a command id (a request_id or Nats-Msg-Id from the hub).
const maxIDLen = 256

var (
	errBadCommand = errors.New("not a WriteRequest")
	errExpired    = errors.New("command expired")
)

// command is a decoded WriteRequest with its expiry.
type command struct {
	req     *pb.WriteRequest
	value   bridge.Value
	expires time.Time // zero: never
}

// decodeCommand decodes a command's payload and its Edgegate-Expires header.
// Every error wraps errBadCommand.
func (c codec) decodeCommand(data []byte, expires string) (*command, error) {
	if len(data) > maxCommandBytes {
		return nil, fmt.Errorf("%w: %d bytes, over the %d limit", errBadCommand, len(data), maxCommandBytes)
	}
	req := &pb.WriteRequest{}
	var err error
	if c.json {
		err = protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(data, req)
	} else {
		err = proto.Unmarshal(data, req)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errBadCommand, err)
	}
	switch {
	case req.GetDevice() == "" || req.GetPoint() == "":
		return nil, fmt.Errorf("%w: device and point are required", errBadCommand)
	case len(req.GetDevice()) > bridge.MaxNameLen || len(req.GetPoint()) > bridge.MaxNameLen:
		return nil, fmt.Errorf("%w: device or point longer than %d bytes", errBadCommand, bridge.MaxNameLen)
	case len(req.GetRequestId()) > maxIDLen:
		return nil, fmt.Errorf("%w: request_id longer than %d bytes", errBadCommand, maxIDLen)
	}
	v, err := pbconv.ValueFromProto(req.GetValue())
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errBadCommand, err)
	}
	cmd := &command{req: req, value: v}
	if expires != "" {
		t, err := time.Parse(time.RFC3339Nano, expires)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %q is not RFC 3339", errBadCommand, HeaderExpires, expires)
		}
		cmd.expires = t
	}
	return cmd, nil
}

// appendMsgID appends the Nats-Msg-Id of a data message.
func appendMsgID(b []byte, gatewayID string, seq uint64) []byte {
	b = append(b, gatewayID...)
	b = append(b, ':')
	return strconv.AppendUint(b, seq, 10)
}
