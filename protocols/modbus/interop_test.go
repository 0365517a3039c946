package modbus_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/protocols/modbus"
)

// The interop tests use Debian's pymodbus as the device (testdata/pymodbus_device.py)
// and mbpoll to read back what a write put there: Modbus implementations written
// independently of this package and of the simulator. Each is skipped when its
// tool is absent (apt-get install python3-pymodbus python3-serial
// python3-serial-asyncio mbpoll).

// python is Debian's interpreter, which has python3-pymodbus; another python3 on
// PATH (pyenv, a venv) would not.
func python(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/usr/bin/python3", "python3"} {
		path, err := exec.LookPath(p)
		if err != nil {
			continue
		}
		if exec.Command(path, "-c", "import pymodbus.server").Run() == nil {
			return path
		}
	}
	t.Skip("pymodbus is not installed (Debian: python3-pymodbus python3-serial python3-serial-asyncio)")
	return ""
}

// startPymodbus runs the pymodbus device with args until the test ends; it is
// stopped by its pid.
func startPymodbus(t *testing.T, args ...string) {
	t.Helper()
	py := python(t)
	cmd := exec.Command(py, append([]string{"testdata/pymodbus_device.py"}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &syncWriter{w: &stderr}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, out)
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("pymodbus stderr:\n%s", stderr.String())
		}
	})
}

type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// pymodbusPoints are the registers the pymodbus device holds, as points.
func pymodbusPoints() []modbus.PointConfig {
	model := pc("model", "holding", 10, "string")
	model.Length = 2
	wr32 := pc("target", "holding", 20, "uint32")
	wr32.ByteOrder, wr32.Writable = "CDAB", true
	wrf := pc("ratio", "holding", 30, "float32")
	wrf.Writable = true
	relay := pc("relay", "coil", 5, "")
	relay.Writable = true
	return []modbus.PointConfig{
		pc("temperature", "holding", 0, "float32"), pc("count", "holding", 2, "uint16"), model,
		pc("delta", "input", 0, "int16"), pc("unit", "input", 1, "uint16"),
		pc("run", "coil", 0, ""), relay, pc("door", "discrete_input", 1, ""), wr32, wrf,
	}
}

func checkPymodbusReadings(t *testing.T, e *env, id string, unit uint64) {
	t.Helper()
	want := map[string]bridge.Value{
		"temperature": bridge.Double(21.5), "count": bridge.Uint(555), "model": bridge.String("PY"),
		"delta": bridge.Int(-2), "unit": bridge.Uint(unit), "run": bridge.Bool(true), "relay": bridge.Bool(false),
		"door": bridge.Bool(true), "target": bridge.Uint(0), "ratio": bridge.Double(0),
	}
	got := map[string]bool{}
	for len(got) < len(want) {
		m := e.next(id+" readings", func(m *bridge.Message) bool { return m.Device == id && !got[m.Point] })
		got[m.Point] = true
		if !m.Value.Equal(want[m.Point]) || m.Quality != bridge.QualityGood {
			t.Errorf("%s %s = %#v (quality %v), want %#v", id, m.Point, m.Value, m.Quality, want[m.Point])
		}
	}
}

func TestPymodbusTCP(t *testing.T) {
	port := freePort(t)
	startPymodbus(t, "--tcp", strconv.Itoa(port), "--units", "1,2")
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	waitFor(t, "pymodbus to listen", func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	e := start(t, testConfig(device("py-1", addr, 1, pymodbusPoints()...), device("py-2", addr, 2, pymodbusPoints()...)))
	checkPymodbusReadings(t, e, "py-1", 1)
	checkPymodbusReadings(t, e, "py-2", 2)

	ctx := context.Background()
	if err := e.hub.Write(ctx, "py-1", "target", bridge.Uint(123456789)); err != nil {
		t.Fatal(err)
	}
	if err := e.hub.Write(ctx, "py-1", "ratio", bridge.Double(-0.75)); err != nil {
		t.Fatal(err)
	}
	if err := e.hub.Write(ctx, "py-2", "relay", bridge.Bool(true)); err != nil {
		t.Fatal(err)
	}
	e.next("the write polled back", func(m *bridge.Message) bool {
		return m.Device == "py-1" && m.Point == "target" && m.Value.Equal(bridge.Uint(123456789))
	})

	mbpoll, err := exec.LookPath("mbpoll")
	if err != nil {
		t.Skip("mbpoll is not installed (Debian package mbpoll)")
	}
	read := func(unit int, table string, ref, count int) []string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		out, err := exec.CommandContext(ctx, mbpoll, "-m", "tcp", "-p", strconv.Itoa(port), "-a", strconv.Itoa(unit),
			"-0", "-r", strconv.Itoa(ref), "-c", strconv.Itoa(count), "-t", table, "-1", "127.0.0.1").CombinedOutput()
		if err != nil {
			t.Fatalf("mbpoll: %v\n%s", err, out)
		}
		var vals []string
		re := regexp.MustCompile(`^\[(\d+)\]:\s+(\S+)`)
		sc := bufio.NewScanner(strings.NewReader(string(out)))
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				vals = append(vals, m[2])
			}
		}
		return vals
	}
	// 123456789 is 0x075BCD15; CDAB puts the low word first.
	if got := read(1, "4:hex", 20, 2); strings.Join(got, " ") != "0xCD15 0x075B" {
		t.Errorf("mbpoll reads target as %v", got)
	}
	// -0.75 is 0xBF400000.
	if got := read(1, "4:hex", 30, 2); strings.Join(got, " ") != "0xBF40 0x0000" {
		t.Errorf("mbpoll reads ratio as %v", got)
	}
	if got := read(2, "0", 5, 1); strings.Join(got, " ") != "1" {
		t.Errorf("mbpoll reads relay as %v", got)
	}
}

// pty opens a pseudo-terminal and returns its master and the slave's path.
func pty(t *testing.T) (*os.File, string) {
	t.Helper()
	fd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		unix.Close(fd)
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		unix.Close(fd)
		t.Fatal(err)
	}
	// Non-blocking, so that the runtime polls it and Close ends a pending read.
	return os.NewFile(uintptr(fd), "ptmx"), fmt.Sprintf("/dev/pts/%d", n)
}

// serialPair is two serial lines joined like a null-modem cable: what one side
// writes the other reads. Each side is a pty slave; the test copies between the
// masters, and keeps each slave open and raw so that neither end sees a hang-up
// or the line discipline's echo while the other side reopens.
func serialPair(t *testing.T) (a, b string) {
	t.Helper()
	ma, a := pty(t)
	mb, b := pty(t)
	var held []*os.File
	for _, p := range []string{a, b} {
		fd, err := unix.Open(p, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		tio, err := unix.IoctlGetTermios(fd, unix.TCGETS)
		if err != nil {
			t.Fatal(err)
		}
		tio.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
		tio.Oflag &^= unix.OPOST
		tio.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
		tio.Cflag = tio.Cflag&^(unix.CSIZE|unix.PARENB) | unix.CS8
		if err := unix.IoctlSetTermios(fd, unix.TCSETS, tio); err != nil {
			t.Fatal(err)
		}
		held = append(held, os.NewFile(uintptr(fd), p))
	}
	var wg sync.WaitGroup
	for _, dir := range [][2]*os.File{{ma, mb}, {mb, ma}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = io.Copy(dir[1], dir[0])
		}()
	}
	t.Cleanup(func() {
		for _, f := range held {
			f.Close()
		}
		ma.Close()
		mb.Close()
		wg.Wait()
	})
	return a, b
}

// TestPymodbusRTU polls two units of a pymodbus RTU device on one serial line, and a
// third unit that does not answer, which must not stop the other two.
func TestPymodbusRTU(t *testing.T) {
	python(t)
	ours, theirs := serialPair(t)
	// Parity is meaningless on a pty, and pyserial setting it there makes the line
	// drop every byte; the real line settings are only exercised on our side.
	startPymodbus(t, "--rtu", theirs, "--units", "1,2", "--parity", "N")
	addr := "rtu://" + ours + "?baud=19200&parity=E"
	dev := func(id string, unit int) modbus.DeviceConfig {
		return modbus.DeviceConfig{ID: id, Protocol: "modbus", Address: addr, UnitID: &unit, Points: pymodbusPoints()}
	}
	cfg := testConfig(dev("rtu-1", 1), dev("rtu-2", 2), dev("rtu-9", 9))
	cfg.PollInterval = 100 * time.Millisecond
	cfg.Timeout = 300 * time.Millisecond
	cfg.ReconnectBackoff, cfg.ReconnectBackoffMax = 500*time.Millisecond, 2*time.Second
	e := start(t, cfg)
	checkPymodbusReadings(t, e, "rtu-1", 1)
	checkPymodbusReadings(t, e, "rtu-2", 2)
	waitFor(t, "rtu-9 disconnected", func() bool { return e.device("rtu-9").State == bridge.StateDisconnected })
	if err := e.hub.Write(context.Background(), "rtu-2", "target", bridge.Uint(70000)); err != nil {
		t.Fatal(err)
	}
	e.next("the write polled back", func(m *bridge.Message) bool {
		return m.Device == "rtu-2" && m.Point == "target" && m.Value.Equal(bridge.Uint(70000))
	})
	if n := e.metric("edgegate_modbus_reconnects_total"); n != 0 {
		t.Errorf("the serial line was reopened %v times: a silent unit must not close it", n)
	}
	// The silent unit is asked after the reconnect backoff (at least 400 ms, four
	// poll intervals), not every poll: its slots in between are skipped.
	waitFor(t, "the silent unit's polls skipped", func() bool {
		return e.metric("edgegate_modbus_polls_skipped_total", "device", "rtu-9") >= 3
	})
}
