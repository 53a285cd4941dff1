#!/usr/bin/env bash
# Turn a buildah image (containers/build_local.sh) into a Charliecloud image directory that an
# ordinary user owns and runs with ch-run, where no Docker engine runs:
#
#   charliecloud.sh install              apt-get charliecloud-runtime and -builders (idempotent)
#   charliecloud.sh convert TAG DIR [USER]   flatten TAG, ch-convert it into DIR as USER
#                                        (default: the caller), write the image's Env to
#                                        DIR/ch/environment (what `ch-run --set-env` reads)
#
# With a Docker engine, `ch-convert -i docker TAG DIR` does the same in one step (and writes
# ch/environment itself). Charliecloud 0.31 reads no OCI archive, so the image goes through a
# flat tar. Runs as root (buildah); ch-convert runs as USER, so DIR's parent must be USER's.
set -euo pipefail

log() { printf '[charliecloud] %s\n' "$*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}

cmd_install() {
    local missing=() pkg
    for pkg in charliecloud-runtime charliecloud-builders; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    [[ ${#missing[@]} == 0 ]] && return 0
    log "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q "${missing[@]}" ||
        { apt-get update -q && apt-get install -y -q "${missing[@]}"; }
}

cmd_convert() {
    local tag=${1:?usage: charliecloud.sh convert TAG DIR [USER]}
    local dir=${2:?usage: charliecloud.sh convert TAG DIR [USER]}
    local user=${3:-$(id -un)}
    buildah inspect --type image "$tag" >/dev/null 2>&1 || die "no image $tag (build_local.sh build)"
    id "$user" >/dev/null 2>&1 || die "no user $user"
    dir=$(realpath -m -- "$dir")
    local parent work ctr mnt
    parent=$(dirname "$dir")
    [[ -d $parent ]] || die "$parent does not exist"
    runuser -u "$user" -- test -w "$parent" || die "$user cannot write to $parent"
    work=$(mktemp -d "$parent/.charliecloud.XXXXXX")
    # shellcheck disable=SC2064
    trap "rm -rf '$work'" RETURN
    chown "$user" "$work"
    ctr=$(buildah from --pull=never --quiet "$tag")
    mnt=$(buildah mount "$ctr")
    # Device nodes are the runtime's business (ch-run binds the host's /dev).
    tar -C "$mnt" --exclude='./dev/*' -cf "$work/flat.tar" . ||
        { buildah umount "$ctr" >/dev/null; buildah rm "$ctr" >/dev/null; die "tar of $tag failed"; }
    buildah umount "$ctr" >/dev/null
    buildah rm "$ctr" >/dev/null
    chown "$user" "$work/flat.tar"
    # ch-convert wants Debian's own python3 (with lark) and $USER.
    runuser -u "$user" -- env PATH=/usr/bin:/bin USER="$user" \
        ch-convert -i tar -o dir "$work/flat.tar" "$dir" >"$work/convert.log" 2>&1 ||
        { cat "$work/convert.log" >&2; die "ch-convert failed"; }
    buildah inspect --type image --format '{{range .OCIv1.Config.Env}}{{println .}}{{end}}' "$tag" |
        awk 1 | runuser -u "$user" -- sh -c "mkdir -p '$dir/ch' && cat > '$dir/ch/environment'"
    log "wrote $dir ($(du -sh "$dir" | cut -f1)), owned by $user"
}

case ${1:-} in
install) cmd_install ;;
convert) shift && cmd_install && cmd_convert "$@" ;;
*)
    sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
