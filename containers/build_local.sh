#!/usr/bin/env bash
# Build the Dockerfile with buildah, where no Docker engine runs and no registry is reached.
#
#   build_local.sh install                     apt-get buildah and debootstrap (idempotent)
#   build_local.sh base [BASE]                 a Debian bookworm base with Python 3.11 + venv,
#                                              debootstrapped and imported (skipped when present)
#   build_local.sh build TAG [VARIANT] [ARGS]  buildah bud the Dockerfile on BASE, TF_VARIANT
#                                              cpu|cuda (default cpu); ARGS go to buildah bud;
#                                              then drops the image TAG replaced (stale layers)
#   build_local.sh export TAG ARCHIVE          write an OCI archive (apptainer build's input)
#   build_local.sh remove TAG...               remove images (the base stays)
#
# BASE defaults to $MNISTFC_BASE_IMAGE or localhost/mnistfc-base:bookworm. The base plays the
# part of python:3.11-slim-bookworm (the Dockerfile's default): same Debian release, a
# `python3` with the venv module. Everything else comes from the Dockerfile, unchanged.
# Runs as root (debootstrap, buildah's chroot isolation). Layers are cached (--layers), so a
# rebuild after a source change reinstalls only the package, not TensorFlow.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly HERE
ROOT=$(dirname "$HERE")
readonly ROOT
readonly DEFAULT_BASE=${MNISTFC_BASE_IMAGE:-localhost/mnistfc-base:bookworm}
readonly SUITE=bookworm
readonly MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
# python3-venv brings ensurepip, which python:3.11-slim has built in.
readonly BASE_PACKAGES=python3,python3-venv,ca-certificates

log() { printf '[build_local] %s\n' "$*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}
need_root() { [[ $(id -u) == 0 ]] || die "run as root (debootstrap and buildah need it)"; }
image_exists() { buildah inspect --type image "$1" >/dev/null 2>&1; }
image_id() { buildah inspect --type image --format '{{.FromImageID}}' "$1" 2>/dev/null || true; }

cmd_install() {
    local missing=() pkg
    for pkg in buildah debootstrap; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    [[ ${#missing[@]} == 0 ]] && return 0
    need_root
    log "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q "${missing[@]}" ||
        { apt-get update -q && apt-get install -y -q "${missing[@]}"; }
}

cmd_base() {
    local base=${1:-$DEFAULT_BASE}
    if image_exists "$base"; then
        log "base $base present"
        return 0
    fi
    need_root
    local work rootfs ctr mnt
    work=$(mktemp -d /var/tmp/mnistfc-base.XXXXXX)
    rootfs=$work/rootfs
    # shellcheck disable=SC2064
    trap "rm -rf '$work'" RETURN
    log "debootstrap $SUITE ($BASE_PACKAGES) from $MIRROR"
    debootstrap --variant=minbase --include="$BASE_PACKAGES" "$SUITE" "$rootfs" "$MIRROR" \
        >"$work/debootstrap.log" 2>&1 || { tail -n 30 "$work/debootstrap.log" >&2; die "debootstrap failed"; }
    # What the official slim images also leave out: package lists and caches.
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
        "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/log/*.log
    ctr=$(buildah from scratch)
    mnt=$(buildah mount "$ctr")
    # Device nodes are the runtime's business; everything else goes in as is.
    tar -C "$rootfs" --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' -cf - . |
        tar -C "$mnt" -xpf -
    buildah umount "$ctr" >/dev/null
    buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --env LANG=C.UTF-8 --cmd /bin/bash \
        --label "org.opencontainers.image.description=Debian $SUITE minbase + $BASE_PACKAGES (debootstrap)" \
        "$ctr"
    buildah commit --rm --quiet "$ctr" "$base" >/dev/null
    log "base $base committed"
}

cmd_build() {
    local tag=${1:?usage: build_local.sh build TAG [cpu|cuda] [buildah bud args]}
    local variant=${2:-cpu}
    shift $(($# < 2 ? $# : 2))
    need_root
    local base=$DEFAULT_BASE
    image_exists "$base" || cmd_base "$base"
    local mounts=()
    # A TLS-intercepting proxy's CA and pip's settings for it, for the RUN steps only: mounted,
    # never copied into the image.
    [[ -d /etc/ssl/certs ]] && mounts+=(-v /etc/ssl/certs:/etc/ssl/certs:ro)
    [[ -f /etc/pip.conf ]] && mounts+=(-v /etc/pip.conf:/etc/pip.conf:ro)
    local revision previous
    revision=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
    previous=$(image_id "$tag")
    log "buildah bud $tag (TF_VARIANT=$variant, BASE_IMAGE=$base)"
    buildah bud --isolation chroot --network host --layers "${mounts[@]}" \
        --build-arg "BASE_IMAGE=$base" --build-arg "TF_VARIANT=$variant" \
        --build-arg "REVISION=$revision" \
        -f "$ROOT/Dockerfile" -t "$tag" "$@" "$ROOT"
    drop_replaced "$tag" "$previous"
}

# The stale layers of a rebuild, and only those: the image that TAG named before, unless
# another name still refers to it or a container uses it. `buildah rmi ID` takes along the
# untagged intermediate images (--layers' cache) that only it descends from, and stops at
# the first one that the new image (or any other image) also builds on: the dependency
# layer stays cached, so the next source change again reinstalls only the package. Not
# `buildah rmi --prune`: that removes every dangling image on the host, other builds' too.
# Intermediates of a failed or interrupted build stay (they are the next attempt's cache).
drop_replaced() {
    local tag=$1 old=$2 names
    [[ -n $old && $old != "$(image_id "$tag")" ]] || return 0
    names=$(buildah images --all --noheading --no-trunc --format '{{.ID}} {{.Name}}:{{.Tag}}' |
        awk -v id="sha256:$old" '$1 == id && $2 != "<none>:<none>" { printf " %s", $2 }')
    if [[ -n $names ]]; then
        log "previous image ${old:0:12} kept: still named$names"
    elif buildah rmi "$old" >/dev/null; then
        log "previous image ${old:0:12} removed, with its layers no other image uses"
    else
        log "previous image ${old:0:12} kept: buildah rmi refused (a container uses it?)"
    fi
}

cmd_export() {
    local tag=${1:?usage: build_local.sh export TAG ARCHIVE} archive=${2:?usage: build_local.sh export TAG ARCHIVE}
    rm -f "$archive"
    buildah push --quiet "$tag" "oci-archive:$archive:$tag"
    log "wrote $archive ($(du -h "$archive" | cut -f1))"
}

cmd_remove() {
    local tag
    for tag in "$@"; do
        image_exists "$tag" && buildah rmi "$tag" >/dev/null
    done
    return 0
}

case ${1:-} in
install) cmd_install ;;
base) shift && cmd_install && cmd_base "$@" ;;
build) shift && cmd_install && cmd_build "$@" ;;
export) shift && cmd_export "$@" ;;
remove) shift && cmd_remove "$@" ;;
*)
    sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
