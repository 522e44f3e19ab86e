# The worker's container image. Build: docker build -t anc-credential-worker .
# Runs `node dist/worker/main.js` as a non-root user with production dependencies only, the
# prebuilt workflow bundle and the SQL migrations (applied at start).

ARG NODE_IMAGE=node:20.19-bookworm-slim

# ---------------------------------------------------------------- build: compile, bundle
FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
# `npm ci` refuses this lock file (see .ci/run); this installs exactly the locked versions.
RUN npm install --no-audit --no-fund --no-save
COPY tsconfig.json tsconfig.build.json ./
COPY scripts ./scripts
COPY common ./common
COPY workflows ./workflows
COPY activities ./activities
COPY client ./client
COPY worker ./worker
COPY migrations ./migrations
RUN npm run build

# ---------------------------------------------------------------- keyvault-emulator: local profile only
# The project's Key Vault emulator over HTTPS with a certificate made at first start, which the
# local workers trust through KEYVAULT_CA. Never part of a production deployment.
FROM node:20.19-bookworm AS keyvault-emulator
WORKDIR /src
COPY --from=build /src/node_modules ./node_modules
COPY package.json tsconfig.json ./
COPY stack/keyvault-emulator ./stack/keyvault-emulator
COPY stack/keyvault-emulator/entrypoint.sh /usr/local/bin/keyvault-emulator
RUN mkdir /certs && chown 1000:1000 /certs
# The image's unprivileged `node` user.
USER 1000:1000
EXPOSE 8443
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=5 \
  CMD ["node", "-e", "require('node:net').connect(8443, '127.0.0.1').on('connect', () => process.exit(0)).on('error', () => process.exit(1))"]
ENTRYPOINT ["keyvault-emulator"]

# ---------------------------------------------------------------- runtime: the worker
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production \
    HEALTH_PORT=8080 \
    METRICS_PORT=9464
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm install --omit=dev --no-audit --no-fund --no-save \
 && npm cache clean --force
COPY --from=build /src/dist ./dist
# The image's unprivileged `node` user.
USER 1000:1000
EXPOSE 8080 9464
# GET /healthz: 200 when Temporal and the database answer.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + process.env.HEALTH_PORT + '/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# The worker stops polling on SIGTERM and lets running activities finish (SHUTDOWN_GRACE_SECONDS);
# give the container's stop timeout a little more than that.
STOPSIGNAL SIGTERM
CMD ["node", "dist/worker/main.js"]
