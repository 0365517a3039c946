package gateway

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"sync"

	"github.com/edgegate/edgegate/config"
	"github.com/edgegate/edgegate/grpcapi"
	etls "github.com/edgegate/edgegate/tls"
	"google.golang.org/grpc/credentials"
)

// newTLS makes the gateway's certificate store and loads every certificate its own
// listeners and tunnels use, so that a missing or bad file fails New and names its
// key. The store also serves the adapters (protocols.Env.TLS).
func (g *Gateway) newTLS(cfg *config.Config) error {
	store, err := etls.NewStore(etls.StoreOptions{Logger: g.log.With("component", "tls"), Metrics: g.reg})
	if err != nil {
		return err
	}
	g.tls = store
	if f := cfg.GRPC.TLS; f != nil {
		if _, err := store.Source(f); err != nil {
			return fmt.Errorf("grpc: %w", err)
		}
	}
	if f := cfg.HTTP.TLS; f != nil && cfg.HTTP.Listen != "off" {
		if _, err := store.Source(f); err != nil {
			return fmt.Errorf("http: %w", err)
		}
	}
	if len(cfg.Tunnels) == 0 {
		return nil
	}
	m, err := etls.NewTunnelMetrics(g.reg)
	if err != nil {
		return err
	}
	for _, tc := range cfg.Tunnels {
		t, err := etls.NewTunnel(tc, store, m, g.log.With("component", "tunnel"))
		if err != nil {
			return err // it names the tunnel and the file
		}
		g.tunnels = append(g.tunnels, t)
	}
	return nil
}

// grpcSecurity is the gRPC server's transport credentials (nil: plaintext) and its
// authentication and authorization interceptors.
//
// With client_ca_file the handshake asks for a certificate but leaves checking it
// to the interceptor, which answers a missing, foreign or expired one with
// UNAUTHENTICATED and the reason: refused inside a TLS 1.3 handshake, a client
// would see only a broken connection. The health service stays open to probes.
func (g *Gateway) grpcSecurity(cfg *config.Config) (credentials.TransportCredentials, *grpcapi.Authz, error) {
	o := grpcapi.AuthzOptions{Logger: g.log.With("component", "grpc"), Metrics: g.reg}
	var creds credentials.TransportCredentials
	if f := cfg.GRPC.TLS; f != nil {
		src, err := g.tls.Source(f)
		if err != nil {
			return nil, nil, fmt.Errorf("grpc: %w", err)
		}
		creds = credentials.NewTLS(src.ServerConfigVerifyLater())
		if src.RequiresClientCert() {
			o.RequireIdentity = true
			o.Verify = src.VerifyPeer
		}
	}
	if len(cfg.GRPC.Authz) > 0 {
		o.Restrict = true
		for _, r := range cfg.GRPC.Authz {
			o.Rules = append(o.Rules, grpcapi.Rule(r))
		}
	}
	az, err := grpcapi.NewAuthz(o)
	if err != nil {
		return nil, nil, fmt.Errorf("grpc: %w", err)
	}
	return creds, az, nil
}

// httpTLS is the HTTP server's TLS configuration, or nil for plaintext. With
// client_ca_file, scrapers and browsers must present a certificate.
func (g *Gateway) httpTLS(cfg *config.Config) (*tls.Config, error) {
	f := cfg.HTTP.TLS
	if f == nil {
		return nil, nil
	}
	src, err := g.tls.Source(f)
	if err != nil {
		return nil, fmt.Errorf("http: %w", err)
	}
	tc := src.ServerConfig()
	tc.NextProtos = []string{"h2", "http/1.1"}
	return tc, nil
}

// warnInsecure says once at start which of the gateway's own listeners send
// plaintext off the machine because the config says insecure: true. Adapters say
// it of theirs.
func (g *Gateway) warnInsecure(cfg *config.Config) {
	etls.WarnInsecure(g.log, "grpc.listen", cfg.GRPC.Listen, cfg.GRPC.TLS != nil)
	if cfg.HTTP.Listen != "off" {
		etls.WarnInsecure(g.log, "http.listen", cfg.HTTP.Listen, cfg.HTTP.TLS != nil)
	}
}

// listenTunnels binds every tunnel's listener, or none.
func (g *Gateway) listenTunnels() error {
	for i, t := range g.tunnels {
		if err := t.Listen(); err != nil {
			for _, o := range g.tunnels[:i] {
				o.Close()
			}
			return err
		}
	}
	return nil
}

// closeTunnels closes the listeners of tunnels that were bound but never served.
func (g *Gateway) closeTunnels() {
	for _, t := range g.tunnels {
		t.Close()
	}
}

// serveTunnels runs the tunnels until the returned stop is called; stop closes
// every tunnel connection and waits for them.
func (g *Gateway) serveTunnels(fail func(string, error)) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, t := range g.tunnels {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := t.Serve(ctx); err != nil {
				fail("tunnel "+t.Name(), err)
			}
		}()
	}
	return func() {
		cancel()
		wg.Wait()
	}
}

// TunnelAddr is a tunnel's bound address once Ready, or nil (for tests that listen
// on port 0).
func (g *Gateway) TunnelAddr(name string) net.Addr {
	for _, t := range g.tunnels {
		if t.Name() == name {
			return t.Addr()
		}
	}
	return nil
}

// TLS is the gateway's certificate store.
func (g *Gateway) TLS() *etls.Store { return g.tls }
