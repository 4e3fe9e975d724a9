#!/usr/bin/env bash
# Build the CPU image and run the compose stack for real: index a small corpus into the volume, serve it,
# query it, take it down. CI runs this (.ci/run); it needs root, Debian's docker.io, debootstrap and
# docker-compose, and no Docker Hub: the base image is a debootstrapped Debian bookworm, and every wheel
# is downloaded on the host into docker/wheels.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
COMPOSE=(docker-compose -f docker/compose.yaml -p retriever-smoke)
export INDEX=tiny DATA_DIR="$PWD/tests/fixtures" API_PORT=${API_PORT:-18080}

log() { echo "[docker-smoke] $*"; }

if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null || ! command -v docker-compose >/dev/null; then
  log "installing docker.io, debootstrap, docker-compose"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io debootstrap docker-compose >/dev/null
fi
if ! docker info >/dev/null 2>&1; then
  log "starting dockerd"
  (dockerd >/tmp/dockerd.log 2>&1 &)
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
fi

if ! docker image inspect python:3.11-slim >/dev/null 2>&1; then
  log "building the base image stand-in with debootstrap"
  rootfs=$(mktemp -d)
  debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates bookworm "$rootfs" \
    >/tmp/debootstrap.log 2>&1
  tar -C "$rootfs" -c . | docker import - python:3.11-slim >/dev/null
  rm -rf "$rootfs"
fi

log "downloading wheels for the image"
"$PY" -m pip download -q --dest docker/wheels torch==2.13.0 ".[milvus]" 2>&1 | grep -v "WARNING: Location" || true

log "building retriever:cpu"
docker build -q -f docker/Dockerfile -t retriever:cpu . >/dev/null

cleanup() { "${COMPOSE[@]}" down -v >/dev/null 2>&1 || true; }
trap cleanup EXIT
log "indexing the tiny corpus into the indexes volume"
"${COMPOSE[@]}" run --rm --no-deps api index build --data tiny --name tiny >/dev/null
log "starting the api service"
"${COMPOSE[@]}" up -d api
for _ in $(seq 90); do
  status=$(docker inspect -f '{{.State.Health.Status}}' "$("${COMPOSE[@]}" ps -q api)" 2>/dev/null || echo none)
  [ "$status" = healthy ] && break
  sleep 2
done
log "api health: $status"
[ "$status" = healthy ]
"$PY" - "$API_PORT" <<'PYEOF'
import json, sys, urllib.request
port = sys.argv[1]
request = urllib.request.Request(f"http://127.0.0.1:{port}/search", data=json.dumps(
    {"query": "what causes earthquakes", "top_k": 3}).encode(), headers={"content-type": "application/json"})
body = json.load(urllib.request.urlopen(request, timeout=60))
top = body["results"][0]["hits"][0]
print("[docker-smoke] search ->", top["id"], top["title"])
assert top["id"] == "d5", body
PYEOF
log "ok"
