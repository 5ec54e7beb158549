# syntax=docker/dockerfile:1
# promfed's image: the release binary on distroless (glibc, CA-less, no shell), non-root.
#   docker build -t ghcr.io/promfed/promfed:0.1.0 .
# The build context is an allow-list (.dockerignore): Cargo.toml, Cargo.lock, src/ and the
# files src/ embeds with include_str!.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# Cache mounts keep the registry and target/ between builds; the binary is copied out of the
# cached target/ because a cache mount is not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin promfed \
    && cp target/release/promfed /promfed

# cc: glibc and libgcc_s, which the glibc build links; nonroot: uid/gid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="promfed" \
      org.opencontainers.image.description="Mutating admission webhook and CLI that federates a Prometheus prometheus-server ConfigMap" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /promfed /promfed
USER 65532:65532
# 8443: POST /mutate (TLS); 9102: /healthz, /readyz, /metrics (plain HTTP).
EXPOSE 8443 9102
ENTRYPOINT ["/promfed"]
# The same flags as deploy/base/deployment.yaml's args (a test keeps them equal).
CMD ["serve", "--listen=0.0.0.0:8443", "--config=/etc/promfed/config/promfed.yaml", "--tls-cert-file=/etc/promfed/tls/tls.crt", "--tls-key-file=/etc/promfed/tls/tls.key"]
