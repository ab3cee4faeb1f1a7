# syntax=docker/dockerfile:1
# Build stage: compile the release binary with the locked dependency set.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
COPY protocols ./protocols
COPY config ./config
COPY scripts ./scripts
COPY examples ./examples
RUN cargo build --release --locked --bin raybot

# Runtime stage: slim Debian, non-root user, only what raybot and the sample scripts need.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl util-linux \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --create-home --home-dir /app --uid 10001 raybot
WORKDIR /app
COPY --from=build /src/target/release/raybot /usr/local/bin/raybot
COPY --chown=raybot:raybot protocols ./protocols
COPY --chown=raybot:raybot config ./config
COPY --chown=raybot:raybot scripts ./scripts
COPY --chown=raybot:raybot examples ./examples
RUN mkdir -p /app/.raybot /app/.artifacts && chown raybot:raybot /app/.raybot /app/.artifacts
USER raybot
ENV RAYBOT_LISTEN=0.0.0.0:8080 \
    RAYBOT_LOG=info
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s \
  CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
ENTRYPOINT ["raybot"]
CMD ["serve"]
