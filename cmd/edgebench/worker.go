package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The publishers run in a child process of their own: in the measuring process, a
// hundred goroutines publishing flat out would take the Go scheduler from the few
// that receive, and the figure would be edgebench's own scheduling rather than the
// broker's delivery rate. As separate processes, the kernel shares the CPUs between
// broker, publishers and subscribers.

// workerCmd is the hidden first argument that makes edgebench the publishers'
// worker. Protocol, one line each on its stdout: "ready" once every publisher is
// connected; then "acked N" (messages acknowledged, or written at QoS 0, so far) a
// few times a second; "error TEXT" if one fails; with --count, "done NANOSECONDS"
// once every publisher has sent its count and had it acknowledged, the time from
// the first publish to the last acknowledgement. It stops when its stdin closes, on
// SIGTERM, or when done, and exits non-zero after an error.
const workerCmd = "publish-worker"

// workerReport is how often the worker reports its count.
const workerReport = 50 * time.Millisecond

func workerMain(args []string, stdin io.Reader, stdout io.Writer) int {
	fs := flag.NewFlagSet(workerCmd, flag.ContinueOnError)
	fs.SetOutput(stdout)
	addr := fs.String("addr", "", "broker address")
	qos := fs.Int("qos", 0, "QoS")
	n := fs.Int("publishers", 1, "publishers")
	rate := fs.Float64("rate", 0, "messages per second in all; 0: as fast as the windows allow")
	count := fs.Uint64("count", 0, "messages each publisher sends; 0: until stopped")
	win := fs.Int("window", window, "messages each publisher may have in flight")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *addr == "" || *qos < 0 || *qos > 1 || *n < 1 || *n > 10000 || *rate < 0 || *win < 1 || *win > 65535 {
		fmt.Fprintln(stdout, "error bad arguments")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		io.Copy(io.Discard, stdin) // returns when the parent closes it, or dies
		cancel()
	}()

	var acked atomic.Uint64
	pubs, err := connectPublishers(*addr, *n, byte(*qos), &acked)
	if err != nil {
		fmt.Fprintf(stdout, "error %s\n", firstLine(err.Error()))
		return 1
	}
	defer closePublishers(pubs)
	fmt.Fprintln(stdout, "ready")

	errs := make(chan error, len(pubs))
	var wg sync.WaitGroup
	start := time.Now()
	for _, p := range pubs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.run(ctx, *rate/float64(len(pubs)), *count, *win); err != nil {
				errs <- err
				cancel()
			}
		}()
	}
	finished := make(chan struct{})
	var took time.Duration
	go func() {
		wg.Wait()
		took = time.Since(start)
		close(finished)
	}()
	t := time.NewTicker(workerReport)
	defer t.Stop()
	for running := true; running; {
		select {
		case <-t.C:
		case <-finished:
			running = false
		}
		fmt.Fprintf(stdout, "acked %d\n", acked.Load())
	}
	select {
	case err := <-errs:
		fmt.Fprintf(stdout, "error %s\n", firstLine(err.Error()))
		return 1
	default:
	}
	if *count > 0 && ctx.Err() == nil {
		fmt.Fprintf(stdout, "done %d\n", took.Nanoseconds())
	}
	return 0
}

// pubWorker is the parent's handle on the publishers' worker.
type pubWorker struct {
	p      *proc
	acked  atomic.Uint64
	ready  chan struct{}
	failed chan string        // the first error line
	done   chan time.Duration // the "done" line's figure, with a count
}

// pubLoad is what the worker's publishers do.
type pubLoad struct {
	qos        byte
	publishers int
	rate       float64 // messages a second in all; 0: as fast as the window allows
	count      uint64  // messages each publisher sends; 0: until stopped
	window     int     // in flight per publisher; 0: window
}

// startPublishers starts the worker and waits until every publisher is connected
// and publishing.
func (e *env) startPublishers(ctx context.Context, addr string, l pubLoad) (*pubWorker, error) {
	w := &pubWorker{ready: make(chan struct{}), failed: make(chan string, 1), done: make(chan time.Duration, 1)}
	if l.window == 0 {
		l.window = window
	}
	args := []string{workerCmd, "--addr", addr, "--qos", strconv.Itoa(int(l.qos)), "--publishers", strconv.Itoa(l.publishers),
		"--rate", strconv.FormatFloat(l.rate, 'f', -1, 64), "--count", strconv.FormatUint(l.count, 10), "--window", strconv.Itoa(l.window)}
	var readyOnce sync.Once
	p, err := startProc("publishers", e.self, args, func(line string) {
		switch {
		case line == "ready":
			readyOnce.Do(func() { close(w.ready) })
		case strings.HasPrefix(line, "acked "):
			if v, err := strconv.ParseUint(line[len("acked "):], 10, 64); err == nil {
				w.acked.Store(v)
			}
		case strings.HasPrefix(line, "done "):
			if ns, err := strconv.ParseInt(line[len("done "):], 10, 64); err == nil {
				select {
				case w.done <- time.Duration(ns):
				default:
				}
			}
		case strings.HasPrefix(line, "error "):
			select {
			case w.failed <- strings.TrimPrefix(line, "error "):
			default:
			}
		}
	}, true)
	if err != nil {
		return nil, err
	}
	w.p = p
	select {
	case <-w.ready:
		return w, nil
	case msg := <-w.failed:
		p.stop()
		return nil, errors.New(msg)
	case <-p.done:
		return nil, p.exited()
	case <-ctx.Done():
		p.stop()
		return nil, ctx.Err()
	case <-time.After(60 * time.Second):
		p.stop()
		return nil, errors.New("the publishers did not connect within 60s")
	}
}

// stop ends the worker and reports whether the publishers failed.
func (w *pubWorker) stop() error {
	w.p.stdin.Close()
	select {
	case <-w.p.done:
	case <-time.After(stopTimeout + ackTimeout):
		w.p.stop()
	}
	select {
	case msg := <-w.failed:
		return errors.New(msg)
	default:
	}
	if w.p.err != nil {
		return fmt.Errorf("publishers: %v\n%s", w.p.err, w.p.output())
	}
	return nil
}

// running reports an error if the worker has failed or exited.
func (w *pubWorker) running() error {
	select {
	case msg := <-w.failed:
		w.failed <- msg
		return errors.New(msg)
	case <-w.p.done:
		return w.p.exited()
	default:
		return nil
	}
}
