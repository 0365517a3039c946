package k8scheck

import (
	"fmt"
	"net"
	"path"
	"strconv"
	"strings"

	"github.com/edgegate/edgegate/config"
	_ "github.com/edgegate/edgegate/protocols/all" // config.Parse knows every built-in protocol
	"github.com/edgegate/edgegate/tls/tlsbase"
	"gopkg.in/yaml.v3"
	corev1 "k8s.io/api/core/v1"
)

// Gateway is an edgegate config as a pod sees it: parsed and validated by the
// gateway's own config.Parse, plus what the checks need from the raw YAML.
type Gateway struct {
	Config    *config.Config
	Listeners []Listener
	// Paths are the files and directories the config names (key: value), which
	// must exist in the container.
	Paths []ConfigPath
}

// Listener is one address the gateway binds.
type Listener struct {
	Key      string // the config key, e.g. "mqtt.listeners[1].address"
	Address  string // host:port or unix:///path
	Protocol corev1.Protocol
	TLS      bool
}

// Port is the listener's TCP or UDP port, or 0 for a Unix socket.
func (l Listener) Port() int32 {
	_, p, err := net.SplitHostPort(l.Address)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(p)
	return int32(n)
}

// Local reports whether only the pod itself can reach the listener.
func (l Listener) Local() bool { return tlsbase.IsLocal(l.Address) }

// ConfigPath is a file or directory named by the config.
type ConfigPath struct {
	Key   string
	Path  string
	Write bool // the gateway writes there (data_dir)
}

// ParseGateway validates an edgegate config with config.Parse and collects its
// listeners and paths.
func ParseGateway(data []byte) (*Gateway, error) {
	cfg, err := config.Parse(data)
	if err != nil {
		return nil, err
	}
	g := &Gateway{Config: cfg}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, err
	}
	g.Listeners = append(g.Listeners, Listener{Key: "grpc.listen", Address: cfg.GRPC.Listen, Protocol: corev1.ProtocolTCP, TLS: cfg.GRPC.TLS != nil})
	if cfg.HTTP.Listen != "off" {
		g.Listeners = append(g.Listeners, Listener{Key: "http.listen", Address: cfg.HTTP.Listen, Protocol: corev1.ProtocolTCP, TLS: cfg.HTTP.TLS != nil})
	}
	if len(root.Content) == 0 {
		return g, nil
	}
	doc := root.Content[0]
	for _, sec := range []string{"mqtt", "coap"} {
		for i, l := range seq(get(get(doc, sec), "listeners")) {
			typ := scalar(get(l, "type"))
			proto := corev1.ProtocolTCP
			if typ == "udp" || typ == "dtls" {
				proto = corev1.ProtocolUDP
			}
			g.Listeners = append(g.Listeners, Listener{
				Key:      fmt.Sprintf("%s.listeners[%d].address", sec, i),
				Address:  scalar(get(l, "address")),
				Protocol: proto,
				TLS:      typ == "tls" || typ == "dtls",
			})
		}
	}
	for i, t := range seq(get(doc, "tunnels")) {
		g.Listeners = append(g.Listeners, Listener{Key: fmt.Sprintf("tunnels[%d].listen", i), Address: scalar(get(t, "listen")), Protocol: corev1.ProtocolTCP, TLS: true})
	}
	walk(doc, "", func(key, val string) {
		last := key[strings.LastIndex(key, ".")+1:]
		switch {
		case strings.HasSuffix(last, "_file") || strings.HasSuffix(last, "_dir"):
			g.Paths = append(g.Paths, ConfigPath{Key: key, Path: val, Write: last == "data_dir"})
		case last == "address" && strings.HasPrefix(val, "rtu://"):
			dev := strings.TrimPrefix(val, "rtu://")
			if i := strings.IndexByte(dev, '?'); i >= 0 {
				dev = dev[:i]
			}
			g.Paths = append(g.Paths, ConfigPath{Key: key, Path: dev, Write: true})
		}
	})
	return g, nil
}

// UnixSocket is the directory of the gRPC Unix socket, or "".
func (g *Gateway) UnixSocket() string {
	if p, ok := strings.CutPrefix(g.Config.GRPC.Listen, "unix://"); ok {
		return path.Dir(p)
	}
	return ""
}

func get(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

func seq(n *yaml.Node) []*yaml.Node {
	if n == nil || n.Kind != yaml.SequenceNode {
		return nil
	}
	return n.Content
}

func scalar(n *yaml.Node) string {
	if n == nil || n.Kind != yaml.ScalarNode {
		return ""
	}
	return n.Value
}

// walk calls f with every scalar value under a mapping key, keyed by its path.
func walk(n *yaml.Node, prefix string, f func(key, val string)) {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i].Value
			if prefix != "" {
				k = prefix + "." + k
			}
			v := n.Content[i+1]
			if v.Kind == yaml.ScalarNode {
				f(k, v.Value)
			} else {
				walk(v, k, f)
			}
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			walk(c, fmt.Sprintf("%s[%d]", prefix, i), f)
		}
	}
}
