#!/usr/bin/env bash
# Build the base image of every runtime image from Debian bookworm with debootstrap and `docker import`.
#
# Why: Docker Hub is not reachable on these machines, so `python:3.11-slim` cannot be pulled. Debian
# bookworm's python3 is 3.11, which matches the official image closely enough for our runtime layers.
#
# Usage: scripts/make-base-image.sh [IMAGE]   (default: $MLOPS_BUILD__BASE_IMAGE or python:3.11-slim)
# Environment:
#   MLOPS_DEBIAN_MIRROR     mirror URL (default: the first bookworm mirror apt on this host uses)
#   MLOPS_DEBOOTSTRAP_CACHE directory that keeps downloaded .debs between runs (default below; "" = none)
#   MLOPS_HOST_CA_BUNDLE    CA bundle copied into the image (default /etc/ssl/certs/ca-certificates.crt)
set -euo pipefail

IMAGE="${1:-${MLOPS_BUILD__BASE_IMAGE:-python:3.11-slim}}"
SUITE=bookworm
PACKAGES=python3,python3-venv,python3-pip,ca-certificates
HOST_CA_BUNDLE="${MLOPS_HOST_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
IMAGE_PATH_ENV=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

log() { printf 'make-base-image: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "debootstrap needs root (run as root)"
command -v debootstrap >/dev/null || die "debootstrap is missing (apt-get install -y debootstrap)"
command -v docker >/dev/null || die "docker CLI is missing"
docker info >/dev/null 2>&1 || die "Docker Engine is not answering (start it with scripts/services.sh)"
[ -s "$HOST_CA_BUNDLE" ] || die "host CA bundle $HOST_CA_BUNDLE is missing"

# Reuse the mirror apt already uses: on these machines it is reachable (possibly through a transparent
# proxy) while other mirrors may not be.
apt_mirror() {
    local uri
    uri="$(grep -h -E '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | awk '{print $2}' | grep -v -E 'security|cloud.google|nodesource' | head -n1 || true)"
    if [ -z "$uri" ]; then
        uri="$(grep -h -E '^deb[[:space:]]' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
            | awk -v suite="$SUITE" '$3 == suite {print $2}' | head -n1 || true)"
    fi
    printf '%s\n' "${uri:-http://deb.debian.org/debian}"
}
MIRROR="${MLOPS_DEBIAN_MIRROR:-$(apt_mirror)}"

# debootstrap downloads with wget, which honours http_proxy; carry over apt's proxy if one is configured.
apt_proxy="$(apt-config shell value Acquire::http::Proxy 2>/dev/null | sed -n "s/^value='\(.*\)'$/\1/p" || true)"
if [ -n "$apt_proxy" ] && [ -z "${http_proxy:-}" ]; then
    export http_proxy="$apt_proxy"
    log "using apt's proxy $apt_proxy"
fi

if [ -z "${MLOPS_DEBOOTSTRAP_CACHE+set}" ]; then
    MLOPS_DEBOOTSTRAP_CACHE=/var/cache/mlops/debootstrap
fi
cache_args=()
if [ -n "$MLOPS_DEBOOTSTRAP_CACHE" ]; then
    mkdir -p "$MLOPS_DEBOOTSTRAP_CACHE"
    cache_args=(--cache-dir="$MLOPS_DEBOOTSTRAP_CACHE")
fi

WORK_DIR="$(mktemp -d /var/tmp/mlops-base-image.XXXXXX)"
ROOTFS="$WORK_DIR/rootfs"

# debootstrap mounts /proc, /sys (and sometimes binds /dev) inside the target. If it dies half-way those
# mounts stay, and a plain `rm -rf` would walk into the host's /dev. Unmount everything below the work
# dir first, and never cross file systems while deleting.
cleanup() {
    local mount_point
    if [ -d "$WORK_DIR" ]; then
        awk -v prefix="$WORK_DIR/" 'index($2, prefix) == 1 {print $2}' /proc/mounts | sort -r \
            | while read -r mount_point; do umount -l "$mount_point" || true; done
        if awk -v prefix="$WORK_DIR/" 'index($2, prefix) == 1 {found=1} END {exit !found}' /proc/mounts; then
            log "WARNING: mounts remain under $WORK_DIR; leaving it in place"
        else
            rm -rf --one-file-system "$WORK_DIR"
        fi
    fi
}
trap cleanup EXIT

log "debootstrap $SUITE (minbase + $PACKAGES) from $MIRROR"
started=$SECONDS
if ! debootstrap --variant=minbase --include="$PACKAGES" "${cache_args[@]}" \
        "$SUITE" "$ROOTFS" "$MIRROR" >"$WORK_DIR/debootstrap.log" 2>&1; then
    tail -n 30 "$WORK_DIR/debootstrap.log" >&2
    [ -f "$ROOTFS/debootstrap/debootstrap.log" ] && tail -n 30 "$ROOTFS/debootstrap/debootstrap.log" >&2
    die "debootstrap failed"
fi
log "debootstrap took $((SECONDS - started))s"

# Trust the same CAs as the host: pip inside image builds goes through an intercepting proxy whose CA
# only the host bundle contains.
install -m 0644 "$HOST_CA_BUNDLE" "$ROOTFS/etc/ssl/certs/ca-certificates.crt"

ln -sf /usr/bin/python3 "$ROOTFS/usr/local/bin/python"

# Keep later `apt-get install` in derived images from bringing docs back (same idea as the official slim
# images), then drop what debootstrap already installed that no container needs.
cat >"$ROOTFS/etc/dpkg/dpkg.cfg.d/excludes" <<'DPKG_EXCLUDES'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
DPKG_EXCLUDES
find "$ROOTFS/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
find "$ROOTFS/usr/share/doc" -mindepth 1 -type d -empty -delete
rm -rf "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* "$ROOTFS"/usr/share/locale/* \
    "$ROOTFS"/usr/share/lintian/* \
    "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/* "$ROOTFS"/var/cache/debconf/*-old \
    "$ROOTFS"/var/log/* "$ROOTFS"/debootstrap "$ROOTFS"/root/.cache
# A container gets its own /dev from the engine; device nodes in the layer are never used.
find "$ROOTFS/dev" -mindepth 1 -delete
# Resolver settings belong to the container runtime, not to the image.
: >"$ROOTFS/etc/resolv.conf"
: >"$ROOTFS/etc/hostname"

log "importing as $IMAGE"
tar --numeric-owner -C "$ROOTFS" -c . | docker import \
    --change "ENV PATH=$IMAGE_PATH_ENV" \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    --message "debootstrap $SUITE minbase + $PACKAGES (scripts/make-base-image.sh)" \
    - "$IMAGE" >/dev/null

# Runtime Dockerfiles create /opt/venv because Debian's python is PEP 668 "externally managed".
if ! docker run --rm --network host "$IMAGE" \
        sh -ec 'python3 -m venv /opt/venv && /opt/venv/bin/pip --version && python --version' >&2; then
    docker image rm "$IMAGE" >/dev/null 2>&1 || true
    die "the imported image cannot create a working venv; removed $IMAGE"
fi

size_bytes="$(docker image inspect --format '{{.Size}}' "$IMAGE")"
log "built $IMAGE: $((size_bytes / 1000000)) MB in $((SECONDS - started))s"
