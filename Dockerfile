# syntax=docker/dockerfile:1
# promfed's image: the release binary, linked statically, on distroless static (no libraries,
# no shell), non-root. Without Docker: `make image` (scripts/image.sh) builds the same image
# with umoci; a test holds its ENTRYPOINT, CMD and USER equal to this file's.
#   docker build -t ghcr.io/promfed/promfed:0.1.0 .
# The build context is an allow-list (.dockerignore): Cargo.toml, Cargo.lock, src/ and the
# files src/ embeds with include_str!.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# Cache mounts keep the registry and target/ between builds; the binary is copied out of the
# cached target/ because a cache mount is not part of the image. Static glibc (as
# scripts/image.sh): with --target the flag reaches only the binary, not build scripts.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    host=$(rustc -vV | sed -n 's/^host: //p') \
    && RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked --bin promfed --target "$host" \
    && cp "target/$host/release/promfed" /promfed

# static: no libraries (the binary needs none); nonroot: uid/gid 65532.
FROM gcr.io/distroless/static-debian12:nonroot
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
