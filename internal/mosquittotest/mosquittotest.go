// Package mosquittotest runs Debian's mosquitto for a test: on a port chosen
// with :0, with a persistence file (so a persistent session and what is
// queued for it survive a restart), stopped by its pid, and skipped with the
// package to install when it is absent.
package mosquittotest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/edgegate/edgegate/internal/testwait"
)

// Bin is where Debian installs mosquitto.
const Bin = "/usr/sbin/mosquitto"

// Broker is one mosquitto of a test.
type Broker struct {
	t    testing.TB
	dir  string
	port int
	tls  bool
	cmd  *exec.Cmd
	done chan struct{}
}

// Options change the broker's one listener.
type Options struct {
	// CAFile, CertFile and KeyFile make the listener TLS; with CAFile a client
	// certificate chaining to it is required.
	CAFile, CertFile, KeyFile string
	// Users are username and password pairs; with any, anonymous clients are
	// refused. They are hashed with mosquitto_passwd (Debian package mosquitto).
	Users map[string]string
}

// Start starts mosquitto with one plaintext listener for anonymous clients, or
// skips the test without it. It stops at the end of the test (its log is
// printed when the test failed).
func Start(t testing.TB) *Broker { return StartWith(t, Options{}) }

// StartWith is Start with a TLS listener, logins, or both.
func StartWith(t testing.TB, o Options) *Broker {
	t.Helper()
	if _, err := os.Stat(Bin); err != nil {
		t.Skipf("%s not found (Debian package mosquitto): %v", Bin, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	b := &Broker{t: t, dir: t.TempDir(), port: port, tls: o.CertFile != ""}
	conf := fmt.Sprintf(`listener %d 127.0.0.1
persistence true
persistence_location %s/
max_queued_messages 0
log_dest file %s/mosquitto.log
`, port, b.dir, b.dir)
	if o.CertFile != "" {
		conf += fmt.Sprintf("certfile %s\nkeyfile %s\n", o.CertFile, o.KeyFile)
		if o.CAFile != "" {
			conf += fmt.Sprintf("cafile %s\nrequire_certificate true\n", o.CAFile)
		}
	}
	if len(o.Users) > 0 {
		pw := filepath.Join(b.dir, "passwd")
		for u, p := range o.Users {
			args := []string{"-b", pw, u, p}
			if _, err := os.Stat(pw); err != nil {
				args = append([]string{"-c"}, args...)
			}
			if out, err := exec.Command("mosquitto_passwd", args...).CombinedOutput(); err != nil {
				t.Skipf("mosquitto_passwd (Debian package mosquitto): %v: %s", err, out)
			}
		}
		conf += "allow_anonymous false\npassword_file " + pw + "\n"
	} else {
		conf += "allow_anonymous true\n"
	}
	if os.Getuid() == 0 {
		// As root, mosquitto would become the user mosquitto, which cannot
		// write its log or persistence file in the test's directory.
		conf += "user root\n"
	}
	if err := os.WriteFile(filepath.Join(b.dir, "mosquitto.conf"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	b.Start()
	t.Cleanup(func() {
		b.Stop()
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(b.dir, "mosquitto.log"))
			t.Logf("mosquitto.log:\n%s", log)
		}
	})
	return b
}

// Addr is the broker's host:port.
func (b *Broker) Addr() string { return "127.0.0.1:" + strconv.Itoa(b.port) }

// URL is tcp://host:port, or tls://host:port for a TLS listener.
func (b *Broker) URL() string {
	if b.tls {
		return "tls://" + b.Addr()
	}
	return "tcp://" + b.Addr()
}

// Start starts a stopped broker again, on the same port and persistence file,
// and waits until it listens.
func (b *Broker) Start() {
	b.t.Helper()
	b.cmd = exec.Command(Bin, "-c", filepath.Join(b.dir, "mosquitto.conf"))
	if err := b.cmd.Start(); err != nil {
		b.t.Fatal(err)
	}
	b.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) {
		_ = cmd.Wait()
		close(done)
	}(b.cmd, b.done)
	testwait.For(b.t, 10*time.Second, "mosquitto to listen on "+b.Addr(), func() bool {
		c, err := net.DialTimeout("tcp", b.Addr(), 100*time.Millisecond)
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
}

// Stop ends mosquitto with SIGTERM (it saves its persistence file) and waits.
func (b *Broker) Stop() {
	if b.cmd == nil {
		return
	}
	_ = b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.done:
	case <-time.After(10 * time.Second):
		_ = b.cmd.Process.Kill()
		<-b.done
	}
	b.cmd = nil
}
