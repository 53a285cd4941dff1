#!/usr/bin/env bash
# A throwaway Docker engine (Debian's docker.io) for running README's docker commands for real,
# where no Docker engine runs and no registry is reached (CI, this repository's machines).
#
#   docker_engine.sh install                 apt-get docker.io (idempotent; not started)
#   docker_engine.sh up STATE [GROUP]        start dockerd with all its state under STATE (no
#                                            iptables, no bridge: builds and runs take
#                                            --network host|none), socket group GROUP; waits
#                                            until it answers, prints `export DOCKER_HOST=...`
#   docker_engine.sh load-base STATE [BASE]  load the buildah image BASE into the engine; prints
#                                            the image to pass as BASE_IMAGE: BASE plus this
#                                            host's CA bundle and pip.conf when the host needs
#                                            them (a TLS-intercepting proxy), else BASE as is
#   docker_engine.sh down STATE              stop dockerd, unmount what it left, remove STATE
#
# BASE defaults to $MNISTFC_BASE_IMAGE or localhost/mnistfc-base:bookworm (made by
# build_local.sh base). Use Debian's client, /usr/bin/docker, with the printed DOCKER_HOST:
# another `docker` on PATH may lack what this engine's builds need. Runs as root.
#   eval "$(containers/docker_engine.sh up /var/tmp/engine)"
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly HERE
readonly DEFAULT_BASE=${MNISTFC_BASE_IMAGE:-localhost/mnistfc-base:bookworm}
readonly DOCKER=/usr/bin/docker
readonly CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
readonly PIP_CONF=/etc/pip.conf

log() { printf '[docker_engine] %s\n' "$*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}
need_root() { [[ $(id -u) == 0 ]] || die "run as root (apt-get, dockerd)"; }
need_state() { [[ -n ${1:-} ]] || die "usage: docker_engine.sh $2 STATE"; }
socket() { printf 'unix://%s/docker.sock' "$1"; }
engine() {
    local state=$1
    shift
    DOCKER_HOST=$(socket "$state") "$DOCKER" "$@"
}
running_pid() {
    local pid
    [[ -f $1/dockerd.pid ]] || return 1
    pid=$(<"$1/dockerd.pid")
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null && printf '%s' "$pid"
}

cmd_install() {
    dpkg -s docker.io >/dev/null 2>&1 && [[ -x $DOCKER ]] && return 0
    need_root
    log "apt-get install docker.io"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q docker.io ||
        { apt-get update -q && apt-get install -y -q docker.io; }
}

cmd_up() {
    local state=${1:-} group=${2:-}
    need_state "$state" up
    need_root
    mkdir -p "$state"
    state=$(cd "$state" && pwd)
    if running_pid "$state" >/dev/null; then
        log "dockerd already runs for $state"
    else
        # The socket's group may need to reach it: the folder must be traversable.
        chmod 0755 "$state"
        # An empty config file: this engine ignores /etc/docker/daemon.json.
        [[ -f $state/daemon.json ]] || echo '{}' >"$state/daemon.json"
        local args=(--config-file "$state/daemon.json" --iptables=false --bridge=none
            --data-root "$state/data" --exec-root "$state/exec" --pidfile "$state/dockerd.pid"
            -H "$(socket "$state")")
        [[ -n $group ]] && args+=(--group "$group")
        log "dockerd ${args[*]}"
        setsid dockerd "${args[@]}" </dev/null >"$state/dockerd.log" 2>&1 &
        local started=$SECONDS
        until engine "$state" info >/dev/null 2>&1; do
            if ! kill -0 $! 2>/dev/null; then
                tail -n 30 "$state/dockerd.log" >&2
                die "dockerd exited (log: $state/dockerd.log)"
            fi
            ((SECONDS - started < 120)) || die "dockerd did not answer in 120 s ($state/dockerd.log)"
            sleep 0.2
        done
        local version
        version=$(engine "$state" info --format '{{.ServerVersion}}, storage {{.Driver}}')
        log "dockerd $version answers after $((SECONDS - started)) s"
    fi
    printf 'export DOCKER_HOST=%s\n' "$(socket "$state")"
}

cmd_load_base() {
    local state=${1:-} base=${2:-$DEFAULT_BASE}
    need_state "$state" load-base
    need_root
    state=$(cd "$state" && pwd)
    running_pid "$state" >/dev/null || die "no dockerd for $state (docker_engine.sh up first)"
    buildah inspect --type image "$base" >/dev/null 2>&1 || bash "$HERE/build_local.sh" base "$base"
    # The name in the engine: BASE without a registry part (localhost/...).
    local name=${base#localhost/}
    local work
    work=$(mktemp -d /var/tmp/mnistfc-docker-base.XXXXXX)
    # shellcheck disable=SC2064
    trap "rm -rf '$work'" RETURN
    # buildah's docker-daemon: transport ignores DOCKER_HOST; an archive does not.
    local started=$SECONDS
    buildah push --quiet "$base" "docker-archive:$work/base.tar:$name"
    engine "$state" load --quiet -i "$work/base.tar" >&2
    log "pushed and loaded $base in $((SECONDS - started)) s"
    # What pip inside a build needs from this host: a CA bundle that differs from the base's
    # (an extra CA, e.g. an intercepting proxy's) and pip's settings.
    local files=()
    if [[ -f $CA_BUNDLE ]]; then
        engine "$state" run --rm --network none --entrypoint cat "$name" "$CA_BUNDLE" \
            >"$work/base-ca.crt" 2>/dev/null || true
        cmp -s "$CA_BUNDLE" "$work/base-ca.crt" || files+=("$CA_BUNDLE")
    fi
    [[ -f $PIP_CONF ]] && files+=("$PIP_CONF")
    if [[ ${#files[@]} == 0 ]]; then
        log "base $name loaded; this host needs no CA or pip.conf layer"
        printf '%s\n' "$name"
        return 0
    fi
    local derived=${name}-ca file
    {
        echo "FROM $name"
        for file in "${files[@]}"; do
            cp "$file" "$work/$(basename "$file")"
            echo "COPY $(basename "$file") $file"
        done
    } >"$work/Dockerfile"
    engine "$state" build --quiet --network none -t "$derived" "$work" >&2
    log "base $name loaded; $derived adds ${files[*]} ($((SECONDS - started)) s in all)"
    printf '%s\n' "$derived"
}

cmd_down() {
    local state=${1:-}
    need_state "$state" down
    need_root
    [[ -d $state ]] || return 0
    state=$(cd "$state" && pwd)
    local pid
    if pid=$(running_pid "$state"); then
        log "stopping dockerd ($pid)"
        kill -TERM "$pid"
        local started=$SECONDS
        while kill -0 "$pid" 2>/dev/null; do
            if ((SECONDS - started > 60)); then
                log "dockerd ignored TERM for 60 s: KILL"
                kill -KILL "$pid" 2>/dev/null || true
            fi
            sleep 0.2
        done
    fi
    # dockerd leaves a network namespace (nsfs) under its exec-root; overlays if it died.
    local mount
    awk -v s="$state/" 'index($2, s) == 1 {print $2}' /proc/self/mounts | sort -r |
        while read -r mount; do
            umount -l "$mount" 2>/dev/null || log "could not unmount $mount"
        done
    rm -rf "$state"
    log "removed $state"
}

case ${1:-} in
install) cmd_install ;;
up) shift && cmd_up "$@" ;;
load-base) shift && cmd_load_base "$@" ;;
down) shift && cmd_down "$@" ;;
*)
    sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
