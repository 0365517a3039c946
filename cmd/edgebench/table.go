package main

import (
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"
)

// row is one line of the table. peerName says what the peer column measured; it is
// mosquitto unless a row says otherwise.
type row struct {
	name, eg, peer, ratio string
	peerName              string
}

// printTable writes rows as a Markdown table with aligned columns.
func printTable(w io.Writer, rows []row) {
	head := row{name: "measurement", eg: "edgegate", peerName: "peer", peer: "peer's", ratio: "edgegate/peer"}
	cells := func(r row) []string {
		pn := r.peerName
		if pn == "" && r.peer != "" {
			pn = "mosquitto"
		}
		return []string{r.name, r.eg, pn, r.peer, r.ratio}
	}
	width := make([]int, 5)
	for _, r := range append([]row{head}, rows...) {
		for i, c := range cells(r) {
			width[i] = max(width[i], utf8.RuneCountInString(c))
		}
	}
	line := func(cs []string) {
		var b strings.Builder
		b.WriteString("|")
		for i, c := range cs {
			pad := strings.Repeat(" ", width[i]-utf8.RuneCountInString(c))
			if i == 0 || i == 2 {
				fmt.Fprintf(&b, " %s%s |", c, pad)
			} else {
				fmt.Fprintf(&b, " %s%s |", pad, c)
			}
		}
		fmt.Fprintln(w, b.String())
	}
	line(cells(head))
	sep := make([]string, 5)
	for i := range sep {
		sep[i] = strings.Repeat("-", width[i])
		if i > 0 && i != 2 {
			sep[i] = sep[i][1:] + ":"
		}
	}
	line(sep)
	for _, r := range rows {
		if r.ratio == "" {
			r.ratio = "n/a"
		}
		line(cells(r))
	}
}

// fmtCount writes a rate or count with thousands separators: 123,456.
func fmtCount(v float64) string {
	n := int64(v + 0.5)
	s := fmt.Sprint(n)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// fmtRatio writes a ratio with two decimals, or two significant digits when it is
// smaller than 0.1, so that a hundredfold gap does not print as 0.00.
func fmtRatio(v float64) string {
	if v > 0 && v < 0.1 {
		return fmt.Sprintf("%.2g", v)
	}
	return fmt.Sprintf("%.2f", v)
}

// fmtDuration writes a latency in milliseconds with three significant digits.
func fmtDuration(d time.Duration) string {
	ms := float64(d) / float64(time.Millisecond)
	switch {
	case ms < 1:
		return fmt.Sprintf("%.3f ms", ms)
	case ms < 10:
		return fmt.Sprintf("%.2f ms", ms)
	case ms < 100:
		return fmt.Sprintf("%.1f ms", ms)
	}
	return fmt.Sprintf("%.0f ms", ms)
}

// fmtBytes writes a size in KiB or MiB.
func fmtBytes(v float64) string {
	switch {
	case v >= 10<<20 || v <= -10<<20:
		return fmt.Sprintf("%.0f MiB", v/(1<<20))
	case v >= 1<<20 || v <= -1<<20:
		return fmt.Sprintf("%.1f MiB", v/(1<<20))
	}
	return fmt.Sprintf("%.1f KiB", v/(1<<10))
}
