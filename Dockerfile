# The chat server image: docker build -t switchboard/chatserver .
# Build stage: a static binary, no cgo, no paths of this machine in it. It
# runs on the builder's platform and cross-compiles for the target's
# (TARGETOS/TARGETARCH, set by BuildKit per --platform), so a multi-platform
# build needs no emulated Go toolchain.
FROM --platform=$BUILDPLATFORM golang:1.26-bookworm AS build
ARG TARGETOS TARGETARCH
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY app/ app/
RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build -trimpath -ldflags="-s -w" -o /out/chatserver ./app/cmd/chatserver

# Runtime stage: no shell, no package manager, a non-root user.
FROM gcr.io/distroless/static-debian12:nonroot AS runtime
COPY --from=build /out/chatserver /chatserver
USER 65532:65532
ENV LISTEN_ADDR=:8080
EXPOSE 8080
# The drain: SIGTERM turns the instance unready, waits DRAIN_DELAY, closes with 1001.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 CMD ["/chatserver", "healthcheck"]
ENTRYPOINT ["/chatserver"]
