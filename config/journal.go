package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/edgegate/edgegate/bridge/journal"
	"gopkg.in/yaml.v3"
)

// Journal is the `journal:` section: the durable log under gateway.data_dir.
type Journal struct {
	// Sync is "batch" (default) or "always": both commit as soon as the previous
	// fsync ends, with everything that arrived meanwhile (group commit without a
	// floor); "none" is memory only, no durable log. SyncInterval is accepted for
	// old configs and unused (docs/durability.md).
	Sync         string        `yaml:"sync"`
	SyncInterval time.Duration `yaml:"sync_interval"`
	// SegmentSize is the size of one file; MaxSize bounds the whole log (oldest
	// dropped first); MaxAge drops what is older (0: by size only).
	SegmentSize ByteSize      `yaml:"segment_size"`
	MaxSize     ByteSize      `yaml:"max_size"`
	MaxAge      time.Duration `yaml:"max_age"`
}

// Durable reports whether the gateway keeps a durable log.
func (c *Config) Durable() bool {
	return c.Gateway.DataDir != "" && c.Journal.Sync != "none"
}

// JournalOptions are the journal's options from the config.
func (c *Config) JournalOptions() journal.Options {
	mode, _ := journal.ParseSyncMode(c.Journal.Sync)
	return journal.Options{
		Sync:         mode,
		Interval:     c.Journal.SyncInterval,
		SegmentBytes: int64(c.Journal.SegmentSize),
		MaxBytes:     int64(c.Journal.MaxSize),
		MaxAge:       c.Journal.MaxAge,
	}
}

func (c *Config) validateJournal() Problems {
	var probs Problems
	j := c.Journal
	switch j.Sync {
	case "", "batch", "always", "none":
	default:
		probs = append(probs, fmt.Errorf("journal: sync: %q is not batch, always or none", j.Sync))
	}
	if j.SyncInterval < 0 || j.SyncInterval > time.Second {
		probs = append(probs, fmt.Errorf("journal: sync_interval: %s is not between 0 and 1s", j.SyncInterval))
	}
	if j.SegmentSize != 0 && (j.SegmentSize < 1<<20 || j.SegmentSize > 1<<30) {
		probs = append(probs, fmt.Errorf("journal: segment_size: %d is not between 1MiB and 1GiB", j.SegmentSize))
	}
	if j.MaxSize != 0 && j.MaxSize < 4<<20 {
		probs = append(probs, fmt.Errorf("journal: max_size: %d is less than 4MiB", j.MaxSize))
	}
	if j.MaxAge < 0 {
		probs = append(probs, fmt.Errorf("journal: max_age: must not be negative"))
	}
	if c.Gateway.SlowConsumer == "hold" && !c.Durable() {
		probs = append(probs, fmt.Errorf("gateway: slow_consumer: hold needs the durable log (gateway.data_dir, journal.sync not none)"))
	}
	return probs
}

// ByteSize is a size in bytes, written as a number or with a unit: 512KiB, 64MiB,
// 1GiB (also KB, MB, GB as powers of 1000).
type ByteSize int64

var byteUnits = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1},
}

func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	s := strings.TrimSpace(n.Value)
	mult := int64(1)
	for _, u := range byteUnits {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 0 || v > (1<<62)/mult {
		return fmt.Errorf("line %d: %q is not a size (like 64MiB or 1073741824)", n.Line, n.Value)
	}
	*b = ByteSize(v * mult)
	return nil
}
