# Linkgate in a container: Node.js 24 (the current LTS), production
# dependencies only, run as the unprivileged `node` user.
#
#   docker build -t linkgate .
#   docker run --rm linkgate linkgate secrets generate > linkgate.env   # then add PUBLIC_BASE_URL, DATABASE_URL, providers
#   docker run -d --env-file linkgate.env -p 8000:8000 -v linkgate-data:/data linkgate
#
# NODE_ENV=production: every secret and PUBLIC_BASE_URL must be set (nothing
# is generated), PUBLIC_BASE_URL must be https unless it is a loopback address.
FROM node:24-bookworm-slim

ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=8000 \
    DATA_DIR=/data \
    NPM_CONFIG_UPDATE_NOTIFIER=false \
    NPM_CONFIG_FUND=false

WORKDIR /app

# The install also makes the embedded database's templates (scripts/pglite-template.ts);
# the migrated one is removed again: 39 MB more in every image for 0.2 s once
# per volume, whose first start copies the plain template and migrates.
# The sources stay owned by root: the service cannot rewrite its own code.
# They are copied before the install because install scripts may use them.
# The gateway runs compiled (`npm run build`: dist/, made with esbuild, a
# runtime dependency); the `linkgate` command runs the TypeScript sources
# with tsx, also a runtime dependency. So --omit=dev leaves everything.
COPY . .
RUN npm ci --omit=dev --no-audit && npm cache clean --force \
    && npm run build \
    && rm -rf node_modules/.cache/linkgate/pglite-*-migrated-* \
    && ln -s /app/bin/linkgate.js /usr/local/bin/linkgate \
    && mkdir -p /data && chown node:node /data

# The embedded database, its lock and nothing else live in DATA_DIR; with
# DATABASE_URL (PostgreSQL) the container keeps no state. Mount a volume on
# /data when you use the embedded database.
USER node
EXPOSE 8000

# Slim images have no curl: Node's own fetch asks /healthz.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["node", "-e", "fetch(`http://127.0.0.1:${process.env.PORT}/healthz`).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]

# What `npm run start:prod` runs, without npm in between: SIGTERM reaches the
# server, which drains its requests and exits. Against `npm start` (tsx): it
# starts in about three quarters of the time and idles 6-12 MB smaller
# (docs/performance.md).
CMD ["node", "--max-semi-space-size=16", "--heap-growing-percent=100", "--liftoff-only", "--enable-source-maps", "--conditions=linkgate-dist", "dist/src/server.js"]
