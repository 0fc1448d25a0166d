# syntax=docker/dockerfile:1
#
# Cascade's container image: the static `cascade` binary (CGO off, no libc) on distroless static,
# running as the nonroot user (uid/gid 65532). A static busybox rides along for exactly two
# scripts of the Helm chart: the preStop drain hook and the bots Job's readiness wait (wget,
# sleep, date). Nothing else in the image has a shell.
#
#   docker build -t ghcr.io/cascade-sfu/cascade:dev .
#   docker run --rm -p 7880:7880 -p 7881:7881/udp -p 7882-7883:7882-7883/udp \
#     ghcr.io/cascade-sfu/cascade:dev node --workers 2 --public-ip 127.0.0.1
#
# Multi-arch: docker buildx build --platform linux/amd64,linux/arm64 (the Go build cross-compiles).

ARG GO_VERSION=1.26
ARG BUSYBOX_VERSION=1.37

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
ARG TARGETOS
ARG TARGETARCH
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath -buildvcs=false -ldflags "-s -w" -o /out/cascade ./cmd/cascade

# The official busybox musl build is statically linked.
FROM busybox:${BUSYBOX_VERSION}-musl AS busybox

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/cascade /usr/local/bin/cascade
COPY --from=busybox /bin/busybox /usr/local/bin/busybox
USER 65532:65532
# HTTP (signaling, WHIP/WHEP, metrics, probes), relay links, the first media port (worker i
# uses 7882+i), and the embedded NATS server's client, route and gateway ports.
EXPOSE 7880/tcp 7881/udp 7882/udp 4222/tcp 6222/tcp 7222/tcp
ENTRYPOINT ["/usr/local/bin/cascade"]
CMD ["node"]
