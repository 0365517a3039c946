// Command kitchen-display is the example workload of edgegate: a kitchen display
// that shows a restaurant's open orders and turns a fryer's heater off when its oil
// gets too hot. It talks to edgegate only, through the Go client library.
//
//	kitchen-display display [--server unix:///run/edgegate/grpc.sock] [--hot 195] [--listen 127.0.0.1:8090]
//	kitchen-display pos [--broker 127.0.0.1:1883] [--terminals 2] [--every 4s]
//
// `display` is the workload (see package kitchen); its board is printed when it
// changes and served as a page on --listen. `pos` simulates point-of-sale terminals
// that publish orders over MQTT, for the demo (`make demo-kitchen`).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/edgegate/edgegate/client"
	"github.com/edgegate/edgegate/examples/kitchen-display/kitchen"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "kitchen-display:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: kitchen-display display|pos [flags]")
	}
	switch args[0] {
	case "display":
		return display(ctx, args[1:], stdout)
	case "pos":
		return pos(ctx, args[1:], stdout)
	}
	return fmt.Errorf("unknown command %q: display or pos", args[0])
}

func display(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("display", flag.ContinueOnError)
	server := fs.String("server", "unix:///run/edgegate/grpc.sock", "edgegate's gRPC address: unix:///path or host:port")
	cacert := fs.String("cacert", "", "CA of the gateway's certificate (turns on TLS)")
	cert := fs.String("cert", "", "client certificate, for mutual TLS")
	key := fs.String("key", "", "client key, for mutual TLS")
	hot := fs.Float64("hot", 195, "oil temperature (°C) at which a fryer's heater is turned off")
	listen := fs.String("listen", "127.0.0.1:8090", `the board's page ("off": none)`)
	if err := fs.Parse(args); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	var opts []client.Option
	if *cacert != "" || *cert != "" {
		opts = append(opts, client.WithTLSFiles(*cacert, *cert, *key))
	}
	c, err := client.Dial(*server, opts...)
	if err != nil {
		return err
	}
	defer c.Close()
	d := kitchen.New(kitchen.Config{Hot: *hot, Logger: log})

	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if *listen != "off" {
		ln, err := net.Listen("tcp", *listen)
		if err != nil {
			return fmt.Errorf("--listen: %w", err)
		}
		srv := &http.Server{Handler: boardHandler(d), ReadHeaderTimeout: 5 * time.Second, WriteTimeout: 10 * time.Second}
		wg.Add(2)
		go func() {
			defer wg.Done()
			srv.Serve(ln)
		}()
		go func() {
			defer wg.Done()
			<-ctx.Done()
			sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer scancel()
			srv.Shutdown(sctx)
		}()
		log.Info("the board's page", "url", "http://"+ln.Addr().String()+"/")
	}
	// Print the board when it changed, at most once a second.
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		var shown string
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			if s := render(d.Board()); s != shown {
				fmt.Fprint(stdout, s)
				shown = s
			}
		}
	}()
	return d.Run(ctx, c)
}

// render is the board as text.
func render(b kitchen.Board) string {
	var s strings.Builder
	fmt.Fprintf(&s, "── kitchen board · %d open orders ──\n", len(b.Orders))
	for _, o := range b.Orders {
		fmt.Fprintf(&s, "  #%-6s %-6s %s\n", o.ID, o.Terminal, strings.Join(o.Items, ", "))
	}
	for _, f := range b.Fryers {
		state := "ok"
		if f.Alert {
			state = "TOO HOT: heater off"
			if f.WriteErr != "" {
				state = "TOO HOT: heater write failed: " + f.WriteErr
			}
		}
		heater := "?"
		if f.Heater != nil {
			heater = map[bool]string{true: "on", false: "off"}[*f.Heater]
		}
		fmt.Fprintf(&s, "  %-8s %6.1f °C  heater %-3s  %s\n", f.ID, f.Temp, heater, state)
	}
	return s.String()
}

var page = template.Must(template.New("board").Funcs(template.FuncMap{"deref": func(b *bool) bool { return *b }}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="2">
<title>Kitchen</title>
<style>
body{font:18px system-ui,sans-serif;margin:1rem;background:#111;color:#eee}
.orders{display:flex;flex-wrap:wrap;gap:1rem}
.order{background:#222;border-radius:8px;padding:.8rem 1rem;min-width:12rem}
.order h2{margin:0 0 .4rem;font-size:1.2rem}.muted{color:#999;font-size:.8rem}
.alert{background:#b71c1c;padding:.8rem 1rem;border-radius:8px;margin-bottom:1rem;font-weight:700}
table{border-collapse:collapse;margin-top:1rem}td{padding:.2rem .8rem}
</style></head><body>
{{range .Alerts}}<div class="alert">{{.ID}} is too hot ({{printf "%.1f" .Temp}} °C): heater {{if .WriteErr}}write failed: {{.WriteErr}}{{else}}turned off{{end}}</div>{{end}}
<div class="orders">{{range .Orders}}<div class="order"><h2>#{{.ID}}</h2>{{range .Items}}<div>{{.}}</div>{{end}}<div class="muted">{{.Terminal}} · {{.Placed.Format "15:04:05"}}</div></div>{{else}}<p class="muted">No open order.</p>{{end}}</div>
<table>{{range .Fryers}}<tr><td>{{.ID}}</td><td>{{printf "%.1f" .Temp}} °C</td><td>heater {{if .Heater}}{{if deref .Heater}}on{{else}}off{{end}}{{else}}?{{end}}</td></tr>{{end}}</table>
</body></html>`))

// boardHandler serves the board, read-only, with nothing fetched from elsewhere.
func boardHandler(d *kitchen.Display) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		b := d.Board()
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
		page.Execute(w, struct {
			kitchen.Board
			Alerts []kitchen.Fryer
		}{b, b.Alerts()})
	})
	return mux
}

var menu = []string{"fries", "burger", "cheeseburger", "onion rings", "nuggets", "fish", "shake", "salad"}

// pos simulates point-of-sale terminals pos-1..pos-N: each places an order every
// --every and marks its oldest as served once it has --open orders.
func pos(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("pos", flag.ContinueOnError)
	broker := fs.String("broker", "127.0.0.1:1883", "edgegate's MQTT address")
	terminals := fs.Int("terminals", 2, "terminals, pos-1 to pos-N (1 to 100)")
	every := fs.Duration("every", 4*time.Second, "an order per terminal this often")
	open := fs.Int("open", 3, "orders a terminal keeps open before the oldest is served")
	count := fs.Int("count", 0, "stop after this many orders per terminal (0: run until stopped)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *terminals < 1 || *terminals > 100 || *every < 100*time.Millisecond || *open < 1 {
		return errors.New("--terminals 1 to 100, --every at least 100ms, --open at least 1")
	}
	var wg sync.WaitGroup
	errs := make(chan error, *terminals)
	for i := 1; i <= *terminals; i++ {
		id := fmt.Sprintf("pos-%d", i)
		c := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + *broker).SetClientID(id).
			SetConnectRetry(true).SetConnectRetryInterval(time.Second).SetAutoReconnect(true))
		if tok := c.Connect(); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
			return fmt.Errorf("%s: connecting to %s: %v", id, *broker, tok.Error())
		}
		defer c.Disconnect(250)
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- terminal(ctx, c, id, i, *every, *open, *count, stdout)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func terminal(ctx context.Context, c paho.Client, id string, n int, every time.Duration, open, count int, stdout io.Writer) error {
	publish := func(point, payload string) error {
		tok := c.Publish("devices/"+id+"/"+point, 1, false, payload)
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			return fmt.Errorf("%s: publishing %s: %v", id, point, tok.Error())
		}
		return nil
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	var pending []int
	for k := 1; count == 0 || k <= count; k++ {
		order := n*1000 + k
		var items []string
		for range 1 + rand.IntN(3) {
			items = append(items, fmt.Sprintf("%dx %s", 1+rand.IntN(2), menu[rand.IntN(len(menu))]))
		}
		if err := publish("order", fmt.Sprintf("%d: %s", order, strings.Join(items, ", "))); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: order %d: %s\n", id, order, strings.Join(items, ", "))
		pending = append(pending, order)
		if len(pending) > open {
			if err := publish("served", fmt.Sprint(pending[0])); err != nil {
				return err
			}
			pending = pending[1:]
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
	return nil
}
