# portcullis container image.
#
#   docker build -t portcullis:dev .
#   docker run --rm -p 9090:9090 -p 9091:9091 \
#     -v "$PWD/portcullis.yaml:/etc/portcullis/portcullis.yaml:ro" portcullis:dev
#
# Two stages:
#   builder  the official Rust image (Debian bookworm): `cargo build --release --locked`;
#            dependencies are compiled in their own layer, rebuilt only when
#            Cargo.toml or Cargo.lock change.
#   runtime  gcr.io/distroless/cc-debian12, `nonroot` variant: glibc, libgcc_s and
#            CA certificates (for https issuers) and nothing else — no shell, no
#            package manager — running as UID/GID 65532. The binary is built on
#            the same Debian release, so its glibc matches.
#
# Configuration: mount it at /etc/portcullis/portcullis.yaml (or set
# PORTCULLIS_CONFIG); PORTCULLIS_LISTEN / PORTCULLIS_ADMIN_LISTEN override the
# listeners (default 0.0.0.0:9090 gRPC, 0.0.0.0:9091 admin). Probes: HTTP GET
# :9091/healthz (liveness) and :9091/readyz (readiness), or gRPC health on :9090.
# The image has no shell, hence no Docker HEALTHCHECK: orchestrators probe over
# the network (Kubernetes httpGet / grpc probes).
#
# Lint: quickstart/validate.sh (hadolint).

ARG RUST_VERSION=1.95

# --- builder ---------------------------------------------------------------------
FROM rust:${RUST_VERSION}-bookworm AS builder

# aws-lc-sys (the crypto under jsonwebtoken and rustls) compiles AWS-LC with
# the `cc` crate: on x86_64 and aarch64 Linux it ships pre-generated bindings,
# so the C compiler of this image is all it needs (no cmake, clang, Go or
# Perl). AWS_LC_SYS_USE_SYSTEM=0 stops it from probing the image's system
# OpenSSL as a candidate: always the vendored, pinned AWS-LC.
ENV AWS_LC_SYS_USE_SYSTEM=0 \
    CARGO_TERM_COLOR=never \
    CARGO_INCREMENTAL=0

WORKDIR /build

# 1. Dependencies only. Stub targets satisfy the manifest ([lib], [[bin]] and
#    the criterion [[bench]], which is never built here).
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && echo 'fn main() {}' > benches/check.rs \
    && cargo build --release --locked --bin portcullis

# 2. The real sources. The stubs are newer than the copied files' mtimes, so
#    touch the crate roots to make cargo rebuild portcullis itself.
COPY src ./src
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked --bin portcullis \
    && install -D -m 0755 target/release/portcullis /out/portcullis \
    && /out/portcullis --version

# --- runtime ---------------------------------------------------------------------
FROM gcr.io/distroless/cc-debian12:nonroot

ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="portcullis" \
      org.opencontainers.image.description="Envoy ext_authz v3 gRPC authorization server: strips spoofed identity headers, verifies OIDC bearer JWTs, injects x-user-id / x-auth-request-email / x-auth-request-groups" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="gcr.io/distroless/cc-debian12:nonroot"

COPY --from=builder /out/portcullis /usr/local/bin/portcullis

# distroless' `nonroot` user, by number so that runAsNonRoot can verify it.
USER 65532:65532
# 9090: ext_authz gRPC + grpc.health.v1; 9091: admin HTTP (/healthz, /readyz, /metrics).
EXPOSE 9090 9091
# portcullis handles SIGTERM itself (readiness off, drain, exit 0) as PID 1;
# allow it shutdown_delay_seconds + shutdown_grace_seconds (default 0 + 10 s).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/portcullis"]
CMD ["serve", "--config", "/etc/portcullis/portcullis.yaml"]
