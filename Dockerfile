# Build: docker build -t incident-commander .
# Run:   docker run -e SLACK_BOT_TOKEN=xoxb-... -e SLACK_APP_TOKEN=xapp-... \
#          -v $PWD/policy.toml:/etc/incident-commander/policy.toml:ro -v ic-data:/var/lib/incident-commander \
#          incident-commander
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --no-default-features --bin incident-commander

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home /var/lib/incident-commander --create-home incident-commander
COPY --from=build /src/target/release/incident-commander /usr/local/bin/incident-commander
USER incident-commander
ENV INCIDENT_COMMANDER_CONFIG=/etc/incident-commander/policy.toml \
    INCIDENT_COMMANDER_DATA=/var/lib/incident-commander \
    LISTEN_ADDR=0.0.0.0:3000
VOLUME ["/var/lib/incident-commander"]
EXPOSE 3000
# Health: GET /healthz on port 3000 (point your orchestrator's HTTP probe at it).
ENTRYPOINT ["incident-commander"]
CMD ["serve"]
