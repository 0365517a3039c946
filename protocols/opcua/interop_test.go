package opcua

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/protocols"
	"github.com/edgegate/edgegate/protocols/opcua/uacert"
)

// nodeServer is the node-opcua server of testdata/nodeopcua, run by node.
type nodeServer struct {
	cmd     *exec.Cmd
	stdin   interface{ Close() error }
	port    string
	certDER []byte
	mu      sync.Mutex
	written []string
	done    chan struct{}
}

// startNodeServer skips the test when node or the node-opcua package is absent
// (install: npm install --prefix protocols/opcua/testdata/nodeopcua).
func startNodeServer(t *testing.T) *nodeServer {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed")
	}
	dir, _ := filepath.Abs("testdata/nodeopcua")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "node-opcua")); err != nil {
		t.Skip("node-opcua is not installed (npm install --prefix protocols/opcua/testdata/nodeopcua)")
	}
	tmp := t.TempDir()
	der, key, err := uacert.Generate("interop server", "urn:edgegate:interop:server", []string{"127.0.0.1", "localhost"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(tmp, "server.pem"), filepath.Join(tmp, "server.key")
	if err := os.WriteFile(certFile, uacert.EncodeCert(der), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, uacert.EncodeKey(key), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(node, filepath.Join(dir, "server.js"), filepath.Join(tmp, "pki"), certFile, keyFile)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &nodeServer{cmd: cmd, stdin: stdin, certDER: der, done: make(chan struct{})}
	ready := make(chan string, 1)
	var tail []string
	go func() {
		defer close(s.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "ready "):
				ready <- strings.TrimPrefix(line, "ready ")
			case strings.HasPrefix(line, "written "):
				s.mu.Lock()
				s.written = append(s.written, strings.TrimPrefix(line, "written "))
				s.mu.Unlock()
			default:
				s.mu.Lock()
				tail = append(tail, line)
				s.mu.Unlock()
			}
		}
		_ = cmd.Wait()
	}()
	t.Cleanup(func() {
		s.stdin.Close() // the script stops when its input closes
		select {
		case <-s.done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill() // by its pid
			<-s.done
		}
	})
	select {
	case s.port = <-ready:
	case <-s.done:
		s.mu.Lock()
		defer s.mu.Unlock()
		t.Fatalf("node-opcua server exited:\n%s", strings.Join(tail, "\n"))
	case <-time.After(60 * time.Second):
		t.Fatal("node-opcua server not ready in 60s")
	}
	return s
}

func (s *nodeServer) writes() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.written...)
}

// TestInterop runs the adapter against node-opcua: a changing variable arrives and a
// write lands, over None and over Basic256Sha256/SignAndEncrypt with the server's
// certificate in the trust list.
func TestInterop(t *testing.T) {
	ns := startNodeServer(t)
	endpoint := "opc.tcp://127.0.0.1:" + ns.port
	for _, sec := range []SecurityConfig{
		{Policy: "None", Mode: "None"},
		{}, // the defaults: Basic256Sha256, SignAndEncrypt
	} {
		name := sec.policy() + "/" + sec.mode()
		t.Run(name, func(t *testing.T) {
			trusted := t.TempDir()
			if err := os.WriteFile(filepath.Join(trusted, "server.der"), ns.certDER, 0o600); err != nil {
				t.Fatal(err)
			}
			sec.TrustedDir = trusted
			cfg := testConfig(endpoint,
				PointConfig{Name: "temperature", Node: "ns=1;s=Line1.Temperature", SamplingInterval: 50 * time.Millisecond},
				PointConfig{Name: "setpoint", Node: "ns=1;s=Line1.Setpoint", Writable: true},
			)
			cfg.Devices[0].Security = sec
			cfg.Devices[0].PublishingInterval = 50 * time.Millisecond
			e := start(t, cfg, protocols.Env{DataDir: t.TempDir()})
			before := time.Now()
			first := e.until("a temperature", func(m *bridge.Message) bool {
				return m.Point == "temperature" && m.Quality == bridge.QualityGood && m.SourceTime.After(before.Add(-time.Second))
			})
			f0, _ := first.Value.AsDouble()
			e.until("a newer temperature", func(m *bridge.Message) bool {
				f, _ := m.Value.AsDouble()
				return m.Point == "temperature" && f > f0
			})
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			want := "12.5"
			if sec.Mode == "" {
				want = "7"
			}
			// An int to a Double node: converted by the node's DataType.
			v := bridge.Double(12.5)
			if want == "7" {
				v = bridge.Int(7)
			}
			if err := e.hub.Write(ctx, "line-1", "setpoint", v); err != nil {
				t.Fatalf("write: %v", err)
			}
			waitFor(t, "the write at the server", func() bool {
				for _, w := range ns.writes() {
					if w == want {
						return true
					}
				}
				return false
			})
			m, err := e.hub.ReadDevice(ctx, "line-1", "setpoint")
			if err != nil {
				t.Fatal(err)
			}
			if f, _ := m.Value.AsDouble(); m.Value.String() != want || f == 0 {
				t.Errorf("read back %#v", m.Value)
			}
		})
	}
}
