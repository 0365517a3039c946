package grpcapi

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// Interceptors log and count every RPC. Unary calls log at debug; streams log when
// they end, at info when they end with an error other than a cancellation.
type Interceptors struct {
	log      *slog.Logger
	handled  *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// NewInterceptors registers the RPC metrics on reg when it is not nil.
func NewInterceptors(log *slog.Logger, reg prometheus.Registerer) *Interceptors {
	i := &Interceptors{
		log: log,
		handled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgegate_grpc_handled_total", Help: "RPCs completed, by method and status code.",
		}, []string{"method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "edgegate_grpc_unary_seconds", Help: "Unary RPC latency.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5},
		}, []string{"method"}),
	}
	if reg != nil {
		reg.MustRegister(i.handled, i.duration)
	}
	return i
}

func (i *Interceptors) Unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := handler(ctx, req)
	code := status.Code(err)
	i.handled.WithLabelValues(info.FullMethod, code.String()).Inc()
	i.duration.WithLabelValues(info.FullMethod).Observe(time.Since(start).Seconds())
	i.log.Debug("rpc", "method", info.FullMethod, "code", code.String(), "peer", peerAddr(ctx), "duration", time.Since(start), "err", err)
	return resp, err
}

func (i *Interceptors) Stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	start := time.Now()
	i.log.Debug("stream opened", "method", info.FullMethod, "peer", peerAddr(ss.Context()))
	err := handler(srv, ss)
	code := status.Code(err)
	i.handled.WithLabelValues(info.FullMethod, code.String()).Inc()
	level := slog.LevelDebug
	if err != nil && ss.Context().Err() == nil {
		level = slog.LevelInfo
	}
	i.log.Log(ss.Context(), level, "stream closed", "method", info.FullMethod, "code", code.String(), "peer", peerAddr(ss.Context()), "duration", time.Since(start), "err", err)
	return err
}

func peerAddr(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return p.Addr.String()
	}
	return ""
}
