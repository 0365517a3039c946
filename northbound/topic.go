package northbound

import (
	"errors"
	"fmt"
	"strings"
)

// template is a parsed topic template: its levels, each a literal or one of
// {gateway}, {device} and {point}.
type template struct {
	levels []level
}

type level struct {
	lit string
	ph  placeholder // phNone: lit
}

type placeholder int

const (
	phNone placeholder = iota
	phGateway
	phDevice
	phPoint
)

var placeholders = map[string]placeholder{"{gateway}": phGateway, "{device}": phDevice, "{point}": phPoint}

// parseTemplate checks a topic template: levels separated by '/', each a
// literal without '+', '#', '{' or '}', or exactly one placeholder; {device} and
// {point} each once, so that every point has a topic of its own and a command's
// topic names its device and point.
func parseTemplate(s string) (*template, error) {
	if s == "" {
		return nil, errors.New("required")
	}
	if strings.HasPrefix(s, "$") {
		return nil, fmt.Errorf("%q: topics starting with '$' are the broker's", s)
	}
	t := &template{}
	count := map[placeholder]int{}
	for _, l := range strings.Split(s, "/") {
		if ph, ok := placeholders[l]; ok {
			t.levels = append(t.levels, level{ph: ph})
			count[ph]++
			continue
		}
		if strings.ContainsAny(l, "+#{}\x00") {
			return nil, fmt.Errorf("%q: level %q: a level is text without '+', '#', '{', '}', or exactly one of {gateway}, {device}, {point}", s, l)
		}
		t.levels = append(t.levels, level{lit: l})
	}
	if count[phDevice] != 1 || count[phPoint] != 1 {
		return nil, fmt.Errorf("%q: needs {device} and {point}, once each", s)
	}
	return t, nil
}

// topicName makes a name one topic level: '/', '+', '#' and NUL become '_', and
// the empty name is "_".
func topicName(s string) string {
	if s == "" {
		return "_"
	}
	if !strings.ContainsAny(s, "/+#\x00") {
		return s
	}
	return strings.Map(func(r rune) rune {
		switch r {
		case '/', '+', '#', 0:
			return '_'
		}
		return r
	}, s)
}

// expand is the topic of a message of device and point.
func (t *template) expand(gateway, device, point string) string {
	var b strings.Builder
	for i, l := range t.levels {
		if i > 0 {
			b.WriteByte('/')
		}
		switch l.ph {
		case phNone:
			b.WriteString(l.lit)
		case phGateway:
			b.WriteString(topicName(gateway))
		case phDevice:
			b.WriteString(topicName(device))
		case phPoint:
			b.WriteString(topicName(point))
		}
	}
	return b.String()
}

// setFilter is the subscription of the json format's commands: the template
// with '+' for device and point, then /set.
func (t *template) setFilter(gateway string) string {
	var b strings.Builder
	for i, l := range t.levels {
		if i > 0 {
			b.WriteByte('/')
		}
		switch l.ph {
		case phNone:
			b.WriteString(l.lit)
		case phGateway:
			b.WriteString(topicName(gateway))
		default:
			b.WriteByte('+')
		}
	}
	b.WriteString("/set")
	return b.String()
}

// parseCommand reads device and point off a command topic ({topic}/set).
func (t *template) parseCommand(topic string) (device, point string, ok bool) {
	parts := strings.Split(topic, "/")
	if len(parts) != len(t.levels)+1 || parts[len(parts)-1] != "set" {
		return "", "", false
	}
	for i, l := range t.levels {
		switch l.ph {
		case phDevice:
			device = parts[i]
		case phPoint:
			point = parts[i]
		case phNone:
			if parts[i] != l.lit {
				return "", "", false
			}
		}
	}
	return device, point, device != "" && point != ""
}
