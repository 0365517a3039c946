package grpcapi

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"path"
	"strings"

	pb "github.com/edgegate/edgegate/proto/edgegate/v1"
	etls "github.com/edgegate/edgegate/tls"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// Rule grants the clients whose certificate identity matches Identity (exact, or a
// path.Match glob) Subscribe and Read on the devices matching Subscribe, and Write
// on the devices matching Write (device globs as in SubscribeRequest).
type Rule struct {
	Identity  string
	Subscribe []string
	Write     []string
}

// AuthzOptions configure the authorization interceptors.
type AuthzOptions struct {
	// RequireIdentity refuses every Gateway RPC from a client without a verified
	// certificate with UNAUTHENTICATED (mutual TLS is on). The standard health
	// service stays open, so that a probe needs no certificate.
	RequireIdentity bool
	// Restrict turns Rules on: an identity may then do only what a rule grants
	// (deny by default), and an RPC the rules do not cover is refused. Without
	// it, every client that passed the TLS handshake may do everything.
	Restrict bool
	Rules    []Rule
	// Verify checks a connection's client certificate and returns its identity
	// (tls.Source.VerifyPeer), for a TLS configuration that verifies nothing at the
	// handshake (tls.Source.ServerConfigVerifyLater): a certificate of another CA,
	// or expired, is then UNAUTHENTICATED with the reason. Nil: the handshake
	// verified the certificate, and its identity is taken as it is.
	Verify func(tls.ConnectionState) (string, error)
	Logger *slog.Logger
	// Metrics registers edgegate_grpc_authz_denied_total when not nil.
	Metrics prometheus.Registerer
}

// Authz authenticates by client certificate and authorizes Gateway RPCs by
// identity. Subscribe is intersected with the devices an identity may see (the
// stream simply never carries the others); Read of a device it may not see,
// Write to a device it may not write, and Ack without any Subscribe grant are
// PERMISSION_DENIED; Read of every point and ListDevices leave out what it may not
// see.
type Authz struct {
	o      AuthzOptions
	denied *prometheus.CounterVec
	lim    *rate.Limiter // refusals are logged at most this often: clients cause them
}

// NewAuthz checks the rules' patterns.
func NewAuthz(o AuthzOptions) (*Authz, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	for i, r := range o.Rules {
		if r.Identity == "" {
			return nil, fmt.Errorf("authz[%d]: identity is required", i)
		}
		for _, p := range append(append([]string{r.Identity}, r.Subscribe...), r.Write...) {
			if _, err := path.Match(p, ""); err != nil {
				return nil, fmt.Errorf("authz[%d] (identity %q): bad pattern %q: %w", i, r.Identity, p, err)
			}
		}
	}
	a := &Authz{o: o, lim: rate.NewLimiter(10, 10), denied: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "edgegate_grpc_authz_denied_total",
		Help: "RPCs refused by authentication (code Unauthenticated) or authorization (PermissionDenied), by method.",
	}, []string{"method", "code"})}
	if o.Metrics != nil {
		if err := o.Metrics.Register(a.denied); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// grant is what one identity may do: the union of its rules.
type grant struct {
	identity  string
	subscribe []string
	write     []string
}

func (g *grant) mayWrite(device string) bool { return matchAny(g.write, device) }
func (g *grant) maySee(device string) bool   { return matchAny(g.subscribe, device) }

func matchAny(patterns []string, s string) bool {
	for _, p := range patterns {
		if p == s {
			return true
		}
		if ok, _ := path.Match(p, s); ok {
			return true
		}
	}
	return false
}

type grantKey struct{}

// AllowedDevices is the device patterns the caller of an RPC may see, or nil when
// nothing restricts it. Subscribe intersects its filter with it.
func AllowedDevices(ctx context.Context) []string {
	if g, ok := ctx.Value(grantKey{}).(*grant); ok {
		return g.subscribe
	}
	return nil
}

// callerIdentity is the identity the caller of an RPC acts as under grpc.authz,
// or "" without rules: durable consumers belong to it.
func callerIdentity(ctx context.Context) string {
	if g, ok := ctx.Value(grantKey{}).(*grant); ok {
		return g.identity
	}
	return ""
}

// PeerIdentity is the identity of the client certificate an RPC's connection
// presented (verified or not: see AuthzOptions.Verify), for logs.
func PeerIdentity(ctx context.Context) (string, bool) {
	cs, ok := peerTLS(ctx)
	if !ok {
		return "", false
	}
	return etls.PeerIdentity(cs)
}

func peerTLS(ctx context.Context) (tls.ConnectionState, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return tls.ConnectionState{}, false
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return tls.ConnectionState{}, false
	}
	return info.State, true
}

// identity is the verified identity of an RPC's client, or an UNAUTHENTICATED
// error when it presented a certificate that does not pass; "" without one.
func (a *Authz) identity(ctx context.Context) (string, error) {
	cs, ok := peerTLS(ctx)
	if !ok || len(cs.PeerCertificates) == 0 {
		return "", nil
	}
	if a.o.Verify == nil {
		id, _ := etls.PeerIdentity(cs)
		return id, nil
	}
	id, err := a.o.Verify(cs)
	if err != nil {
		return "", status.Errorf(codes.Unauthenticated, "%v", err)
	}
	return id, nil
}

const gatewayPrefix = "/edgegate.v1.Gateway/"

// authorize decides an RPC before its handler runs. It returns the context the
// handler gets (with the grant, when restricted).
func (a *Authz) authorize(ctx context.Context, method string) (context.Context, *grant, error) {
	if strings.HasPrefix(method, "/grpc.health.v1.Health/") {
		return ctx, nil, nil // probes need no certificate
	}
	id, err := a.identity(ctx)
	if err != nil {
		return ctx, nil, err
	}
	if id == "" {
		if a.o.RequireIdentity || a.o.Restrict {
			return ctx, nil, status.Error(codes.Unauthenticated, "a client certificate is required (grpc.tls.client_ca_file is set)")
		}
		return ctx, nil, nil
	}
	if !strings.HasPrefix(method, gatewayPrefix) {
		return ctx, nil, nil // reflection: any authenticated client
	}
	if !a.o.Restrict {
		return ctx, nil, nil
	}
	g := &grant{identity: id}
	for _, r := range a.o.Rules {
		if matchAny([]string{r.Identity}, id) {
			g.subscribe = append(g.subscribe, r.Subscribe...)
			g.write = append(g.write, r.Write...)
		}
	}
	if len(g.subscribe) == 0 && len(g.write) == 0 {
		return ctx, nil, status.Errorf(codes.PermissionDenied, "identity %q is not granted anything by grpc.authz", id)
	}
	return context.WithValue(ctx, grantKey{}, g), g, nil
}

// Unary is the unary interceptor.
func (a *Authz) Unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ctx, g, err := a.authorize(ctx, info.FullMethod)
	if err == nil && g != nil {
		err = a.check(g, info.FullMethod, req)
	}
	if err != nil {
		return nil, a.refuse(ctx, info.FullMethod, err)
	}
	resp, err := handler(ctx, req)
	if err != nil || g == nil {
		return resp, err
	}
	// Leave out what the identity may not see.
	switch r := resp.(type) {
	case *pb.ReadResponse:
		kept := r.Messages[:0]
		for _, m := range r.Messages {
			if g.maySee(m.GetDevice()) {
				kept = append(kept, m)
			}
		}
		r.Messages = kept
	case *pb.ListDevicesResponse:
		kept := r.Devices[:0]
		for _, d := range r.Devices {
			if g.maySee(d.GetId()) || g.mayWrite(d.GetId()) {
				kept = append(kept, d)
			}
		}
		r.Devices = kept
	}
	return resp, nil
}

// check applies a grant to a unary request.
func (a *Authz) check(g *grant, method string, req any) error {
	switch r := req.(type) {
	case *pb.WriteRequest:
		if !g.mayWrite(r.GetDevice()) {
			return status.Errorf(codes.PermissionDenied, "identity %q may not write device %q (grpc.authz)", g.identity, r.GetDevice())
		}
	case *pb.ReadRequest:
		for _, p := range r.GetPoints() {
			if !g.maySee(p.GetDevice()) {
				return status.Errorf(codes.PermissionDenied, "identity %q may not read device %q (grpc.authz)", g.identity, p.GetDevice())
			}
		}
	case *pb.ListDevicesRequest:
	case *pb.AckRequest, *pb.ListConsumersRequest, *pb.DeleteConsumerRequest:
		// Which consumers are the identity's own is the service's to check.
		if len(g.subscribe) == 0 {
			return status.Errorf(codes.PermissionDenied, "identity %q may not subscribe, so it has no durable consumer (grpc.authz)", g.identity)
		}
	default:
		// An RPC added later is closed until the rules say how it is governed.
		return status.Errorf(codes.PermissionDenied, "%s is not covered by grpc.authz", method)
	}
	return nil
}

// Stream is the streaming interceptor.
func (a *Authz) Stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx, g, err := a.authorize(ss.Context(), info.FullMethod)
	if err == nil && g != nil && info.FullMethod != pb.Gateway_Subscribe_FullMethodName {
		err = status.Errorf(codes.PermissionDenied, "%s is not covered by grpc.authz", info.FullMethod)
	}
	if err == nil && g != nil && len(g.subscribe) == 0 {
		err = status.Errorf(codes.PermissionDenied, "identity %q may not subscribe to any device (grpc.authz)", g.identity)
	}
	if err != nil {
		return a.refuse(ctx, info.FullMethod, err)
	}
	if g == nil {
		return handler(srv, ss)
	}
	return handler(srv, &grantStream{ServerStream: ss, ctx: ctx})
}

type grantStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *grantStream) Context() context.Context { return s.ctx }

func (a *Authz) refuse(ctx context.Context, method string, err error) error {
	code := status.Code(err)
	a.denied.WithLabelValues(method, code.String()).Inc()
	if !a.lim.Allow() {
		return err
	}
	id, _ := PeerIdentity(ctx)
	a.o.Logger.Info("grpc: refused", "method", method, "code", code.String(), "identity", id, "peer", peerAddr(ctx), "err", status.Convert(err).Message())
	return err
}
