package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// stopTimeout is how long a broker has to exit after SIGTERM before SIGKILL.
const stopTimeout = 5 * time.Second

// proc is a child process: a broker, or the publishers' worker. Every proc started
// is stopped by its pid: by its owner's deferred stop, and, should edgebench itself
// die, by the kernel (Pdeathsig).
type proc struct {
	name  string
	cmd   *exec.Cmd
	stdin io.WriteCloser // nil unless asked for
	done  chan struct{}  // closed when the process has exited
	err   error          // its exit status, once done

	mu   sync.Mutex
	tail []string // its last lines of output, for errors
}

const tailLines = 20

// startProc starts path with args in its own process group, handing each line of
// its output (stdout and stderr together) to onLine, when not nil, in one goroutine.
func startProc(name, path string, args []string, onLine func(string), withStdin bool) (*proc, error) {
	cmd := exec.Command(path, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Its own group: a terminal's ^C reaches edgebench, which stops it in order.
		Setpgid: true,
		// Killed with edgebench, should edgebench die without stopping it.
		Pdeathsig: syscall.SIGKILL,
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = cmd.Stdout // one pipe for both
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	if withStdin {
		if p.stdin, err = cmd.StdinPipe(); err != nil {
			return nil, err
		}
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	go func() {
		p.read(out, onLine)
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// read keeps the last lines of output and hands each to onLine.
func (p *proc) read(r io.Reader, onLine func(string)) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if onLine != nil {
			onLine(line)
		}
		p.mu.Lock()
		if len(p.tail) == tailLines {
			p.tail = p.tail[1:]
		}
		p.tail = append(p.tail, line)
		p.mu.Unlock()
	}
	// Drain whatever is left so the child never blocks on a full pipe.
	io.Copy(io.Discard, r)
}

// output is the process's last lines of output.
func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.tail, "\n")
}

// exited describes an exit that was not asked for.
func (p *proc) exited() error {
	return fmt.Errorf("%s exited: %v\n%s", p.name, p.err, p.output())
}

// stop sends SIGTERM and, after stopTimeout, SIGKILL, and waits for the exit.
func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	if p.stdin != nil {
		p.stdin.Close()
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(stopTimeout):
		p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// rss is the process's resident set size in bytes, from /proc/<pid>/status.
func (p *proc) rss() (uint64, error) {
	return readRSS(p.pid())
}

func readRSS(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	return parseVmRSS(string(b))
}

// parseVmRSS reads the VmRSS line ("VmRSS:     1234 kB") of a status file.
func parseVmRSS(status string) (uint64, error) {
	for line := range strings.SplitSeq(status, "\n") {
		rest, ok := strings.CutPrefix(line, "VmRSS:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("unexpected VmRSS line %q", line)
		}
		kb, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("VmRSS %q: %w", f[0], err)
		}
		return kb << 10, nil
	}
	return 0, errors.New("no VmRSS line")
}

// freePort returns a loopback TCP port that was free a moment ago. A broker that
// loses the race for it fails to start, and is started again on another.
func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// waitDial waits until addr accepts a TCP connection, the process exits, or ctx ends.
func waitDial(ctx context.Context, p *proc, addr string) error {
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-p.done:
			return p.exited()
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// raiseFileLimit sets the soft limit on open files to the hard limit: the memory
// test holds thousands of connections, and the brokers it starts inherit the limit.
func raiseFileLimit() (uint64, error) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, err
	}
	if rl.Cur < rl.Max {
		rl.Cur = rl.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
			return 0, err
		}
	}
	return rl.Cur, nil
}

// exitedEarly reports whether the process has exited without being stopped.
func (p *proc) exitedEarly() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}
