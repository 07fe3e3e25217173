# Production image: Node 26, the gateway, SoftHSM and p11-kit (the compose HSM service serves the token with
# `p11-kit server`; the gateway processes load p11-kit-client.so). Debian 13: its p11-kit (0.25) carries the
# ECDH and AES-GCM mechanisms over the socket, Debian 12's (0.24) does not (docs/production.md).
# Build:  docker build -t fhir-gateway .
FROM node:26-trixie-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund
COPY . .

FROM node:26-trixie-slim
RUN apt-get update && apt-get install -y --no-install-recommends softhsm2 p11-kit p11-kit-modules opensc curl ca-certificates && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home /var/lib/gateway gateway && mkdir -p /var/lib/gateway /run/p11-kit && chown gateway /var/lib/gateway /run/p11-kit
WORKDIR /app
COPY --from=build /app /app
USER gateway
ENV DATA_DIR=/var/lib/gateway HOST=0.0.0.0 PORT=8080
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --retries=6 CMD curl -fsS http://127.0.0.1:8080/ready || exit 1
ENTRYPOINT ["node", "bin/gateway.js"]
CMD ["serve"]
