package main

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"flag"
	"fmt"
	"github.com/edgegate/edgegate/bridge/pbconv"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	pb "github.com/edgegate/edgegate/proto/edgegate/v1"
	"github.com/edgegate/edgegate/tls/tlsbase"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
)

// conn holds the flags every client subcommand shares: grpcurl's names.
type conn struct {
	server, cacert, cert, key string
	plaintext                 bool
	timeout                   time.Duration
}

func (c *conn) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.server, "server", "127.0.0.1:50051", "gateway address: host:port or unix:///path")
	fs.StringVar(&c.cacert, "cacert", "", "CA certificate that the server's certificate chains to (turns on TLS)")
	fs.StringVar(&c.cert, "cert", "", "client certificate, for mutual TLS")
	fs.StringVar(&c.key, "key", "", "client key, for mutual TLS")
	fs.BoolVar(&c.plaintext, "plaintext", false, "allow plaintext to a non-loopback server")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Second, "deadline for one request (not for tail)")
}

// dial connects; TLS when any TLS flag is set. Plaintext to another machine is
// refused unless --plaintext says so, as the gateway refuses it for listeners.
func (c *conn) dial() (*grpc.ClientConn, error) {
	creds := insecure.NewCredentials()
	if c.cacert != "" || c.cert != "" || c.key != "" {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if c.cacert != "" {
			pool, err := tlsbase.LoadPool(c.cacert)
			if err != nil {
				return nil, err
			}
			tc.RootCAs = pool
		}
		if (c.cert == "") != (c.key == "") {
			return nil, fmt.Errorf("%w: --cert and --key go together", errUsage)
		}
		if c.cert != "" {
			pair, err := tls.LoadX509KeyPair(c.cert, c.key)
			if err != nil {
				return nil, err
			}
			tc.Certificates = []tls.Certificate{pair}
		}
		creds = credentials.NewTLS(tc)
	} else if !c.plaintext && !tlsbase.IsLocal(c.server) {
		return nil, fmt.Errorf("%w: %s is not a loopback address: give --cacert for TLS, or --plaintext", errUsage, c.server)
	}
	target := c.server
	if !strings.HasPrefix(target, "unix:") {
		target = "passthrough:///" + target
	}
	return grpc.NewClient(target, grpc.WithTransportCredentials(creds))
}

// jsonOut is the gateway's one JSON form of its messages (pbconv.JSON).
var jsonOut = pbconv.JSON

func printJSON(w io.Writer, m proto.Message) error {
	b, err := jsonOut.Marshal(m)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	_, err = w.Write(b)
	return err
}

// printEachJSON prints one JSON object a line.
func printEachJSON[M proto.Message](w io.Writer, ms []M) error {
	for _, m := range ms {
		if err := printJSON(w, m); err != nil {
			return err
		}
	}
	return nil
}

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(s string) error { *m = append(*m, s); return nil }

func tail(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("tail", flag.ContinueOnError)
	var c conn
	c.flags(fs)
	var devs, points, protos, labels multi
	fs.Var(&devs, "device", "device glob (repeatable)")
	fs.Var(&points, "point", "point glob (repeatable)")
	fs.Var(&protos, "protocol", "mqtt, coap, opcua or modbus (repeatable)")
	fs.Var(&labels, "label", "key=value that must match (repeatable)")
	earliest := fs.Bool("from-earliest", false, "start with every retained message")
	after := fs.Uint64("after", 0, "resume after this sequence")
	consumer := fs.String("consumer", "", "durable consumer name: go on after what the last tail with this name printed (needs gateway.data_dir)")
	rate := fs.Float64("rate", 0, "budget: messages per second (0: the gateway's cap, if any)")
	byteRate := fs.Float64("byte-rate", 0, "budget: bytes per second (0: the gateway's cap, if any)")
	shed := fs.String("shed", "drop", "over budget, low and normal messages are: drop, hold (wait their turn) or latest (keep the latest per point)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	req := &pb.SubscribeRequest{Devices: devs, Points: points, Consumer: *consumer, Labels: map[string]string{}}
	if *rate < 0 || *byteRate < 0 {
		return fmt.Errorf("%w: --rate and --byte-rate must not be negative", errUsage)
	}
	if *rate > 0 || *byteRate > 0 {
		req.Budget = &pb.Budget{MessagesPerSecond: *rate, BytesPerSecond: *byteRate}
	}
	policy, ok := pb.ShedPolicy_value["SHED_POLICY_"+strings.ToUpper(*shed)]
	if !ok {
		return fmt.Errorf("%w: --shed %q is not drop, hold or latest", errUsage, *shed)
	}
	req.Shed = pb.ShedPolicy(policy)
	for _, p := range protos {
		v, ok := pb.Protocol_value["PROTOCOL_"+strings.ToUpper(p)]
		if !ok {
			return fmt.Errorf("%w: unknown protocol %q", errUsage, p)
		}
		req.Protocols = append(req.Protocols, pb.Protocol(v))
	}
	for _, l := range labels {
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			return fmt.Errorf("%w: --label %q is not key=value", errUsage, l)
		}
		req.Labels[k] = v
	}
	switch {
	case *earliest && *after > 0:
		return fmt.Errorf("%w: --from-earliest and --after exclude each other", errUsage)
	case *earliest:
		req.Start = &pb.SubscribeRequest_FromEarliest{FromEarliest: true}
	case *after > 0:
		req.Start = &pb.SubscribeRequest_AfterSequence{AfterSequence: *after}
	}
	cc, err := c.dial()
	if err != nil {
		return err
	}
	defer cc.Close()
	client := pb.NewGatewayClient(cc)
	stream, err := client.Subscribe(ctx, req)
	if err != nil {
		return err
	}
	// A durable consumer acknowledges what it printed, at most every ackEvery and
	// once more at the end, so that the next tail goes on after it.
	var printed, acked uint64
	ack := func() error {
		if *consumer == "" || printed == acked {
			return nil
		}
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.timeout)
		defer cancel()
		if _, err := client.Ack(actx, &pb.AckRequest{Consumer: *consumer, Sequence: printed}); err != nil {
			return fmt.Errorf("ack: %w", err)
		}
		acked = printed
		return nil
	}
	lastAck := time.Now()
	for {
		m, err := stream.Recv()
		if err != nil {
			if ackErr := ack(); ackErr != nil {
				return ackErr
			}
			if ctx.Err() != nil {
				return nil // interrupted: a normal end for tail
			}
			return err
		}
		if err := printJSON(stdout, m); err != nil {
			return err
		}
		// With --shed latest a held-back value comes after larger sequences: the
		// position acknowledged is the largest printed.
		printed = max(printed, m.GetSequence())
		if time.Since(lastAck) >= ackEvery {
			if err := ack(); err != nil {
				return err
			}
			lastAck = time.Now()
		}
	}
}

// ackEvery bounds how often tail acknowledges a durable consumer's progress.
const ackEvery = 100 * time.Millisecond

func read(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("read", flag.ContinueOnError)
	var c conn
	c.flags(fs)
	fromDevice := fs.Bool("from-device", false, "ask the device now instead of the cache")
	pageSize := fs.Int("page-size", 0, "without points: points a request (0: the gateway's default, 1,000; at most 10,000)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	rest := fs.Args()
	if len(rest)%2 != 0 {
		return fmt.Errorf("%w: arguments come in pairs: DEVICE POINT", errUsage)
	}
	req := &pb.ReadRequest{PageSize: int32(min(max(*pageSize, 0), 10000))}
	if *fromDevice {
		req.Source = pb.ReadSource_READ_SOURCE_DEVICE
	}
	for i := 0; i < len(rest); i += 2 {
		req.Points = append(req.Points, &pb.PointRef{Device: rest[i], Point: rest[i+1]})
	}
	cc, err := c.dial()
	if err != nil {
		return err
	}
	defer cc.Close()
	api := pb.NewGatewayClient(cc)
	// Without points, the gateway answers a page at a time: each page is printed
	// as it comes, so that memory does not grow with the number of points.
	for {
		resp, err := readOnce(ctx, api, req, c.timeout)
		if err != nil {
			return err
		}
		for _, m := range resp.GetMessages() {
			if err := printJSON(stdout, m); err != nil {
				return err
			}
		}
		if resp.GetNextPageToken() == "" || len(req.Points) > 0 {
			return nil
		}
		req.PageToken = resp.GetNextPageToken()
	}
}

// readOnce is one Read, within its own deadline.
func readOnce(ctx context.Context, api pb.GatewayClient, req *pb.ReadRequest, timeout time.Duration) (*pb.ReadResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return api.Read(ctx, req)
}

func write(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("write", flag.ContinueOnError)
	var c conn
	c.flags(fs)
	typ := fs.String("type", "auto", "value type: auto, double, int, uint, bool, string or bytes (base64)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 3 {
		return fmt.Errorf("%w: want DEVICE POINT VALUE", errUsage)
	}
	v, err := parseValue(*typ, fs.Arg(2))
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	cc, err := c.dial()
	if err != nil {
		return err
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	resp, err := pb.NewGatewayClient(cc).Write(ctx, &pb.WriteRequest{Device: fs.Arg(0), Point: fs.Arg(1), Value: v})
	if err != nil {
		return err
	}
	return printJSON(stdout, resp)
}

// parseValue reads a command-line value. auto picks bool, int, double, then string.
func parseValue(typ, s string) (*pb.Value, error) {
	switch typ {
	case "auto":
		if b, err := strconv.ParseBool(s); err == nil && (s == "true" || s == "false") {
			return &pb.Value{Kind: &pb.Value_BoolValue{BoolValue: b}}, nil
		}
		if i, err := strconv.ParseInt(s, 10, 64); err == nil {
			return &pb.Value{Kind: &pb.Value_IntValue{IntValue: i}}, nil
		}
		if f, err := strconv.ParseFloat(s, 64); err == nil {
			return &pb.Value{Kind: &pb.Value_DoubleValue{DoubleValue: f}}, nil
		}
		return &pb.Value{Kind: &pb.Value_StringValue{StringValue: s}}, nil
	case "double":
		f, err := strconv.ParseFloat(s, 64)
		return &pb.Value{Kind: &pb.Value_DoubleValue{DoubleValue: f}}, err
	case "int":
		i, err := strconv.ParseInt(s, 10, 64)
		return &pb.Value{Kind: &pb.Value_IntValue{IntValue: i}}, err
	case "uint":
		u, err := strconv.ParseUint(s, 10, 64)
		return &pb.Value{Kind: &pb.Value_UintValue{UintValue: u}}, err
	case "bool":
		b, err := strconv.ParseBool(s)
		return &pb.Value{Kind: &pb.Value_BoolValue{BoolValue: b}}, err
	case "string":
		return &pb.Value{Kind: &pb.Value_StringValue{StringValue: s}}, nil
	case "bytes":
		b, err := base64.StdEncoding.DecodeString(s)
		return &pb.Value{Kind: &pb.Value_BytesValue{BytesValue: b}}, err
	}
	return nil, fmt.Errorf("unknown --type %q", typ)
}

func devices(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("devices", flag.ContinueOnError)
	var c conn
	c.flags(fs)
	var devs multi
	fs.Var(&devs, "device", "device glob (repeatable)")
	asJSON := fs.Bool("json", false, "one JSON object a line instead of a table")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var resp *pb.ListDevicesResponse
	err := c.call(ctx, func(ctx context.Context, api pb.GatewayClient) (err error) {
		resp, err = api.ListDevices(ctx, &pb.ListDevicesRequest{Devices: devs})
		return err
	})
	if err != nil {
		return err
	}
	if *asJSON {
		return printEachJSON(stdout, resp.GetDevices())
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DEVICE\tPROTOCOL\tSTATE\tLAST SEEN\tMESSAGES\tERRORS\tWRITES\tLAST ERROR")
	for _, d := range resp.GetDevices() {
		seen := "-"
		if d.GetLastSeen() != nil {
			seen = d.GetLastSeen().AsTime().Local().Format(time.DateTime)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\n", d.GetId(),
			strings.ToLower(strings.TrimPrefix(d.GetProtocol().String(), "PROTOCOL_")),
			strings.ToLower(strings.TrimPrefix(d.GetState().String(), "DEVICE_STATE_")),
			seen, d.GetMessages(), d.GetErrors(), d.GetWrites(), d.GetLastError())
	}
	return tw.Flush()
}
