package uplink_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgegate/edgegate/bridge"
	pb "github.com/edgegate/edgegate/proto/edgegate/v1"
	"google.golang.org/grpc/codes"
)

// startNATSServer runs the nats-server binary installed on the machine (Debian's
// package, 2.9) with JetStream on a random loopback port, and stops it by its pid
// at the end. It skips the test when there is none.
func startNATSServer(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("nats-server")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/nats-server"); serr != nil {
			t.Skip("nats-server is not installed (Debian: apt-get install nats-server)")
		}
		bin = "/usr/sbin/nats-server"
	}
	dir := t.TempDir()
	cmd := exec.Command(bin, "-js", "-a", "127.0.0.1", "-p", "-1", "-sd", filepath.Join(dir, "store"), "--ports_file_dir", dir)
	logFile, err := os.Create(filepath.Join(dir, "nats-server.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() {
			cmd.Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			b, _ := os.ReadFile(logFile.Name())
			t.Logf("nats-server's log:\n%s", b)
		}
	})
	var url string
	waitFor(t, 10*time.Second, "nats-server's ports file", func() bool {
		matches, _ := filepath.Glob(filepath.Join(dir, "*.ports"))
		for _, m := range matches {
			b, err := os.ReadFile(m)
			var ports struct{ Nats []string }
			if err == nil && json.Unmarshal(b, &ports) == nil && len(ports.Nats) > 0 {
				url = ports.Nats[0]
				return true
			}
		}
		return false
	})
	if !strings.HasPrefix(url, "nats://127.0.0.1:") {
		t.Fatalf("nats-server listens on %s", url)
	}
	return url
}

// TestDebianNATSServer: the uplink against the oldest hub the contract names
// (2.9), as a separate process: streams created, a backlog forwarded once and
// in order, a command run and answered.
func TestDebianNATSServer(t *testing.T) {
	url := startNATSServer(t)
	s := newSite(t, t.TempDir(), fastConfig(url))
	for i := range int64(500) {
		if i%25 == 0 {
			s.publish("boiler", "alarm", bridge.PriorityCritical, i)
		} else {
			s.publish("boiler", "temp", bridge.PriorityNormal, i)
		}
	}
	s.start()
	s.waitAcked(30 * time.Second)
	got := hubMessages(t, url)
	checkOnceInOrder(t, got, logSequences(t, s.j))
	if got[0].msg.GetPriority() != pb.Priority_PRIORITY_CRITICAL {
		t.Errorf("first message on the hub is %v, want a critical one", got[0].msg)
	}

	h := newHubClient(t, url)
	h.send(&pb.WriteRequest{Device: "boiler", Point: "setpoint", Value: intValue(3), RequestId: "d1"}, time.Now().Add(time.Minute))
	if r := h.result(15 * time.Second); r.GetCode() != int32(codes.OK) || r.GetRequestId() != "d1" {
		t.Errorf("result: %v", r)
	}
	if w := s.writer.list(); len(w) != 1 || w[0] != "boiler/setpoint=3" {
		t.Errorf("writes: %v", w)
	}
}
