package northbound

import (
	"strings"
	"testing"
)

func TestTemplate(t *testing.T) {
	tp, err := parseTemplate("sites/{gateway}/{device}/{point}")
	if err != nil {
		t.Fatal(err)
	}
	if got := tp.expand("store-0042", "fryer/1", "temp+#"); got != "sites/store-0042/fryer_1/temp__" {
		t.Errorf("expand: %q", got)
	}
	if got := tp.expand("g", "", "p"); got != "sites/g/_/p" {
		t.Errorf("expand of an empty name: %q", got)
	}
	if got := tp.setFilter("store-0042"); got != "sites/store-0042/+/+/set" {
		t.Errorf("setFilter: %q", got)
	}
	for topic, want := range map[string]string{
		"sites/store-0042/fryer-1/temp/set": "fryer-1 temp",
		"sites/store-0042/fryer-1/temp":     "",
		"other/store-0042/fryer-1/temp/set": "",
		"sites/store-0042/fryer-1/set":      "",
		"sites/store-0042//temp/set":        "",
	} {
		d, p, ok := tp.parseCommand(topic)
		got := ""
		if ok {
			got = d + " " + p
		}
		if got != want {
			t.Errorf("parseCommand(%q) = %q, want %q", topic, got, want)
		}
	}
	for s, want := range map[string]string{
		"":                           "required",
		"$SYS/{device}/{point}":      "'$'",
		"a/{device}":                 "needs {device} and {point}",
		"a/{device}/{point}/{point}": "needs {device} and {point}",
		"a/+/{device}/{point}":       "a level is text",
		"a/{device}-x/{point}":       "a level is text",
		"a/#":                        "a level is text",
	} {
		if _, err := parseTemplate(s); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("parseTemplate(%q): %v, want %q", s, err, want)
		}
	}
}
