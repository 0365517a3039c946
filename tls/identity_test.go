package tls

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"net/url"
	"testing"
)

func TestIdentity(t *testing.T) {
	spiffe, _ := url.Parse("spiffe://site/kitchen-display")
	web, _ := url.Parse("https://example.com/x")
	for _, c := range []struct {
		cert *x509.Certificate
		want string
	}{
		{&x509.Certificate{URIs: []*url.URL{web, spiffe}, DNSNames: []string{"d.example"}, Subject: pkix.Name{CommonName: "cn"}}, "spiffe://site/kitchen-display"},
		{&x509.Certificate{URIs: []*url.URL{web}, DNSNames: []string{"d.example", "e"}, Subject: pkix.Name{CommonName: "cn"}}, "d.example"},
		{&x509.Certificate{Subject: pkix.Name{CommonName: "cn"}}, "cn"},
		{&x509.Certificate{}, ""},
		{nil, ""},
	} {
		if got := Identity(c.cert); got != c.want {
			t.Errorf("Identity = %q, want %q", got, c.want)
		}
	}
}

func TestMatchIdentity(t *testing.T) {
	for _, c := range []struct {
		patterns []string
		id       string
		want     bool
	}{
		{[]string{"scada"}, "scada", true},
		{[]string{"scada"}, "scada-2", false},
		{[]string{"spiffe://site/scada-*"}, "spiffe://site/scada-1", true},
		{[]string{"spiffe://site/*"}, "spiffe://site/a/b", false}, // * does not match /
		{[]string{"[bad", "x"}, "x", true},
		{nil, "x", false},
	} {
		if got := MatchIdentity(c.patterns, c.id); got != c.want {
			t.Errorf("MatchIdentity(%q, %q) = %v", c.patterns, c.id, got)
		}
	}
}

func TestDeviceName(t *testing.T) {
	for id, want := range map[string]string{
		"spiffe://site/devices/fryer-1": "fryer-1",
		"SPIFFE://site/meter-3":         "meter-3",
		"spiffe://site":                 "site",
		"meter-3":                       "meter-3",
		"pos-1.shop.example":            "pos-1.shop.example",
		"https://example.com/x":         "https://example.com/x",
	} {
		if got := DeviceName(id); got != want {
			t.Errorf("DeviceName(%q) = %q, want %q", id, got, want)
		}
	}
}
