package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	pb "github.com/edgegate/edgegate/proto/edgegate/v1"
)

// consumers lists the durable consumers the caller may use, or, as
// "consumers delete NAME", deletes one.
func consumers(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) > 0 && args[0] == "delete" {
		return deleteConsumer(ctx, args[1:], stdout)
	}
	fs := flag.NewFlagSet("consumers", flag.ContinueOnError)
	var c conn
	c.flags(fs)
	asJSON := fs.Bool("json", false, "one JSON object a line instead of a table")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("%w: want no arguments, or: delete [flags] NAME", errUsage)
	}
	var resp *pb.ListConsumersResponse
	err := c.call(ctx, func(ctx context.Context, api pb.GatewayClient) (err error) {
		resp, err = api.ListConsumers(ctx, &pb.ListConsumersRequest{})
		return err
	})
	if err != nil {
		return err
	}
	if *asJSON {
		return printEachJSON(stdout, resp.GetConsumers())
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CONSUMER\tOWNER\tPOSITION\tLAST USED\tEXPIRES")
	for _, cs := range resp.GetConsumers() {
		pos, owner := "-", cs.GetOwner()
		if cs.GetAcknowledged() {
			pos = fmt.Sprint(cs.GetSequence())
		}
		if owner == "" {
			owner = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", cs.GetName(), owner, pos,
			cs.GetLastUsed().AsTime().Local().Format(time.DateTime), cs.GetExpires().AsTime().Local().Format(time.DateTime))
	}
	return tw.Flush()
}

func deleteConsumer(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("consumers delete", flag.ContinueOnError)
	var c conn
	c.flags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("%w: want NAME (flags before it)", errUsage)
	}
	err := c.call(ctx, func(ctx context.Context, api pb.GatewayClient) error {
		_, err := api.DeleteConsumer(ctx, &pb.DeleteConsumerRequest{Consumer: fs.Arg(0)})
		return err
	})
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "deleted consumer %q\n", fs.Arg(0))
	return err
}

// call dials and makes one request within the --timeout.
func (c *conn) call(ctx context.Context, do func(context.Context, pb.GatewayClient) error) error {
	cc, err := c.dial()
	if err != nil {
		return err
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	return do(ctx, pb.NewGatewayClient(cc))
}
