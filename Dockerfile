# syntax=docker/dockerfile:1
# The edgegate image: one static binary (CGO off) on distroless/static, running as
# the non-root user 65532, with the version and commit stamped in by -ldflags.
#
#   make image                                  # docker build, tagged $(IMAGE)
#   docker build --build-arg VERSION=v0.1.0 --build-arg COMMIT=$(git rev-parse --short=12 HEAD) -t edgegate .
#   docker buildx build --platform linux/amd64,linux/arm64 ...   # cross-compiled, no emulation
#
# The build stage runs on the builder's own platform and cross-compiles for the
# target's (pure Go, so GOARCH is all it takes).

ARG GO_VERSION=1.26.8

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION}-trixie AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOFLAGS=-trimpath
# Module downloads first, so that a source change does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG TARGETOS=linux
ARG TARGETARCH=amd64
ARG VERSION=dev
ARG COMMIT=unknown
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    GOOS=$TARGETOS GOARCH=$TARGETARCH go build -buildvcs=false \
      -ldflags "-s -w -X github.com/edgegate/edgegate/gateway.Version=${VERSION} -X github.com/edgegate/edgegate/gateway.Commit=${COMMIT}" \
      -o /out/edgegate ./cmd/edgegate
# The binary must be static: distroless/static has no libc.
RUN go version -m /out/edgegate | grep -q 'CGO_ENABLED=0'

# distroless/static: CA certificates, tzdata, /etc/passwd with nonroot (65532); no
# shell, no package manager.
FROM gcr.io/distroless/static-debian13:nonroot
ARG VERSION=dev
ARG COMMIT=unknown
LABEL org.opencontainers.image.title="edgegate" \
      org.opencontainers.image.description="Multiprotocol device gateway for Kubernetes at the edge" \
      org.opencontainers.image.source="https://github.com/edgegate/edgegate" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${COMMIT}"
COPY --from=build /out/edgegate /usr/local/bin/edgegate
# Numeric, so that Kubernetes' runAsNonRoot can verify it without /etc/passwd.
USER 65532:65532
# gRPC, HTTP (health, metrics), MQTT, MQTT/TLS, CoAP and CoAP/DTLS (UDP and TCP),
# Modbus/TCP Security tunnels. What listens is the config's choice.
EXPOSE 50051 8080 1883 8883 5683/udp 5683/tcp 5684/udp 5684/tcp 802
ENTRYPOINT ["/usr/local/bin/edgegate"]
CMD ["serve"]
