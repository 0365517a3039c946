// Command edgegate is the gateway daemon and its gRPC client subcommands. It parses
// flags and wires the parts; everything else lives in the packages.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"syscall"

	"github.com/edgegate/edgegate/config"
	"github.com/edgegate/edgegate/gateway"
	_ "github.com/edgegate/edgegate/protocols/all" // the protocols built in
)

const usage = `edgegate: a multiprotocol device gateway

Usage:
  edgegate serve [--config FILE]       run the gateway (without --config: the embedded loopback default)
  edgegate check --config FILE         validate a config; print every problem
                                       (--expand: print it with its profiles applied)
  edgegate import FILE.csv             turn a tag list, one point a row, into a devices: document
  edgegate tail [flags]                print the live stream, one JSON object a line
  edgegate read [DEVICE POINT]...      print the latest values (all points without arguments)
  edgegate write DEVICE POINT VALUE    write a value to a device's point
  edgegate devices [flags]             list devices and their state
  edgegate consumers [--json]          list durable consumers (yours, under grpc.authz)
  edgegate consumers delete NAME       delete a durable consumer and its position
  edgegate version                     print the version and commit (also: edgegate --version)
  edgegate certs init --dir DIR --hosts h1,h2 [--client-name NAME]
                                       write a development CA, server and client certificates

Client subcommands take --server ADDR (default 127.0.0.1:50051, or unix:///path) and
the TLS flags --cacert --cert --key. Run 'edgegate COMMAND -h' for a command's flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// errUsage marks an error that is the user's: exit code 2.
var errUsage = errors.New("usage")

// run executes one command until it ends or ctx does, and returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "serve":
		err = serve(ctx, args[1:], stderr)
	case "check":
		err = check(ctx, args[1:], stdout)
	case "import":
		err = importTags(args[1:], stdout)
	case "tail":
		err = tail(ctx, args[1:], stdout)
	case "read":
		err = read(ctx, args[1:], stdout)
	case "write":
		err = write(ctx, args[1:], stdout)
	case "devices":
		err = devices(ctx, args[1:], stdout)
	case "consumers":
		err = consumers(ctx, args[1:], stdout)
	case "certs":
		err = certs(args[1:], stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, gateway.VersionString())
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "edgegate: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "edgegate %s: %v\n", args[0], err)
		return 2
	}
	fmt.Fprintf(stderr, "edgegate %s: %v\n", args[0], err)
	return 1
}

func serve(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	cfgFile := fs.String("config", "", "config file (default: the embedded loopback configuration)")
	logFormat := fs.String("log-format", "json", "log format: json or text")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var cfg *config.Config
	var err error
	if *cfgFile == "" {
		cfg, err = config.Parse(config.Default)
	} else {
		cfg, err = config.Load(*cfgFile)
	}
	if err != nil {
		return fmt.Errorf("config:\n%w", err)
	}
	log, err := newLogger(stderr, *logFormat, cfg.Gateway.LogLevel)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	slog.SetDefault(log)
	g, err := gateway.New(cfg, log)
	if err != nil {
		return err
	}
	if *cfgFile != "" {
		// The file is watched (a ConfigMap update swaps a symlink), and SIGHUP
		// reloads it at once.
		g.WatchConfigFile(*cfgFile)
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		go func() {
			for {
				select {
				case <-hup:
					g.RequestReload()
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	return g.Run(ctx)
}

// check parses and validates a config as serve would, applying the same limits,
// and stops when ctx ends (SIGINT, SIGTERM) even in the middle of a large file.
func check(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	cfgFile := fs.String("config", "", "config file to check")
	expand := fs.Bool("expand", false, "print the config with its profiles applied instead (docs/profiles.md)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *cfgFile == "" {
		return fmt.Errorf("%w: --config FILE is required", errUsage)
	}
	cfg, err := config.LoadContext(ctx, *cfgFile)
	if err != nil {
		var probs config.Problems
		if errors.As(err, &probs) {
			return fmt.Errorf("%s: %d problem(s):\n%w", *cfgFile, len(probs), err)
		}
		return err
	}
	if *expand {
		return printExpanded(*cfgFile, stdout)
	}
	fmt.Fprintf(stdout, "%s: ok (gateway %q, protocols %v)\n", *cfgFile, cfg.Gateway.ID, keys(cfg))
	return warnUnusedProfiles(*cfgFile, stdout)
}

func keys(cfg *config.Config) []string {
	out := make([]string, 0, len(cfg.Protocols))
	for n := range cfg.Protocols {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: %v", level, err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("log format %q is not json or text", format)
}
