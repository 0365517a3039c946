package uplink

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestExecutedSurvivesReopenAndTornLine(t *testing.T) {
	dir := t.TempDir()
	e, err := openExecuted(dir, 100)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Unix(1700000000, 0).UTC()
	for _, r := range []cmdRecord{{ID: "a", At: at}, {ID: "a", Done: true, Code: 5, Error: "no", At: at}, {ID: "b", At: at}} {
		if err := e.record(r); err != nil {
			t.Fatal(err)
		}
	}
	e.close()
	// A crash tore the last line; a line in the middle is garbage.
	path := filepath.Join(dir, executedFile)
	b, _ := os.ReadFile(path)
	b = append([]byte("not json\n"), b...)
	b = append(b, `{"id":"c","at":"20`...)
	os.WriteFile(path, b, 0o640)

	e, err = openExecuted(dir, 100)
	if err != nil {
		t.Fatal(err)
	}
	defer e.close()
	if r, ok := e.get("a"); !ok || !r.Done || r.Code != 5 || r.Error != "no" {
		t.Errorf("a: %+v %v", r, ok)
	}
	if r, ok := e.get("b"); !ok || r.Done {
		t.Errorf("b: %+v %v", r, ok)
	}
	if _, ok := e.get("c"); ok {
		t.Error("the torn record c was read")
	}
	// The next record starts on a line of its own.
	if err := e.record(cmdRecord{ID: "d", Done: true, At: at}); err != nil {
		t.Fatal(err)
	}
	e.close()
	e, err = openExecuted(dir, 100)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := e.get("d"); !ok {
		t.Error("d lost after the torn line")
	}
}

func TestExecutedBoundedAndCompacted(t *testing.T) {
	dir := t.TempDir()
	const max = 50
	e, err := openExecuted(dir, max)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 500 {
		if err := e.record(cmdRecord{ID: fmt.Sprint(i), Done: true, At: time.Now()}); err != nil {
			t.Fatal(err)
		}
		if n := e.size(); n > max {
			t.Fatalf("holds %d ids, bound %d", n, max)
		}
	}
	if _, ok := e.get("0"); ok {
		t.Error("the oldest id was kept beyond the bound")
	}
	if _, ok := e.get("499"); !ok {
		t.Error("the newest id was forgotten")
	}
	e.close()
	b, _ := os.ReadFile(filepath.Join(dir, executedFile))
	if lines := bytes.Count(b, []byte("\n")); lines > 2*max+1 {
		t.Errorf("file has %d lines; compaction keeps it under %d", lines, 2*max+1)
	}
	e, err = openExecuted(dir, max)
	if err != nil {
		t.Fatal(err)
	}
	defer e.close()
	if n := e.size(); n != max {
		t.Errorf("after reopen: %d ids, want %d", n, max)
	}
	if _, ok := e.get("499"); !ok {
		t.Error("the newest id was lost by compaction")
	}
}

// FuzzParseExecuted: the command log's reader never fails on bytes a crash or a
// disk could leave, never keeps a record without an id, and what it reads
// round-trips.
func FuzzParseExecuted(f *testing.F) {
	f.Add([]byte(`{"id":"a","at":"2026-01-01T00:00:00Z"}` + "\n"))
	f.Add([]byte(`{"id":"a","done":true,"code":5,"error":"x","at":"2026-01-01T00:00:00Z"}` + "\n" + `{"id":"b"`))
	f.Add([]byte("\n\n{}\n"))
	f.Add(bytes.Repeat([]byte("x"), 70000))
	f.Fuzz(func(t *testing.T, data []byte) {
		recs, lines, good, err := parseExecuted(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		if good > int64(len(data)) || good < 0 || (good > 0 && data[good-1] != '\n') {
			t.Fatalf("good = %d of %d", good, len(data))
		}
		if len(recs) > lines {
			t.Fatalf("%d records from %d lines", len(recs), lines)
		}
		for _, r := range recs {
			if r.ID == "" {
				t.Fatal("a record without an id")
			}
		}
	})
}

func TestDecodeCommand(t *testing.T) {
	c := newCodec(EncodingProtobuf)
	for name, tc := range map[string]struct {
		data    []byte
		expires string
		ok      bool
	}{
		"empty":        {nil, "", false},
		"garbage":      {[]byte{0xff, 0x01}, "", false},
		"bad expires":  {mustWriteRequest(t), "tomorrow", false},
		"good":         {mustWriteRequest(t), "2026-01-01T00:00:00Z", true},
		"no expiry":    {mustWriteRequest(t), "", true},
		"nano expires": {mustWriteRequest(t), "2026-01-01T00:00:00.123456789+02:00", true},
		"too large":    {make([]byte, maxCommandBytes+1), "", false},
	} {
		_, err := c.decodeCommand(tc.data, tc.expires)
		if (err == nil) != tc.ok {
			t.Errorf("%s: err = %v, want ok %v", name, err, tc.ok)
		}
	}
}
