# syntax=docker/dockerfile:1
# One image for every process: the API (default), the worker and the ComfyUI simulator.
#   docker build -t comfyui-queue .
#   docker run -e REDIS_URL=… -p 3000:3000 comfyui-queue                  # API
#   docker run -e REDIS_URL=… -e COMFYUI_URL=… comfyui-queue node dist/workers/worker.js
ARG NODE_VERSION=22

# --- build: all dependencies, TypeScript compiled to dist/ ---------------------------------
FROM node:${NODE_VERSION}-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY . .
RUN npm run build

# --- runtime: production dependencies and compiled JavaScript only --------------------------
FROM node:${NODE_VERSION}-bookworm-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
# the compiled JavaScript and, copied by the build (bin/copy-assets.js), the files read at run
# time that tsc does not emit: the Redis scripts, the simulator's node catalogue
COPY --from=build /app/dist ./dist
COPY bin ./bin
# the file storage of docker-compose (STORAGE_URL=file:///data/files): a named volume mounted
# there starts as a copy of this directory, so it belongs to `node`
RUN mkdir -p /data/files && chown node:node /data/files
# the image's `node` user (uid 1000): nothing here runs as root
USER node
EXPOSE 3000
# node directly (not npm) so SIGTERM reaches the process and its graceful shutdown
CMD ["node", "dist/src/bin/api.js"]
