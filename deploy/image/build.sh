#!/usr/bin/env bash
# Builds the gateway's image (Containerfile) with buildah, as `make image-test` does.
#
#   bash deploy/image/build.sh            → localhost/director-dashboard-gateway:test
#
# IMAGE names the result. BASE is the base image: by default a plain Debian bookworm built
# here with debootstrap from the mirror apt already uses (MIRROR overrides it) and imported
# as localhost/debian-base:bookworm, for machines that cannot pull images; once built it is
# reused. BASE=python:3.11-slim-bookworm builds on the public base instead (the
# Containerfile's default), where it can be pulled. Needs root, buildah, podman, runc and
# debootstrap (bash .ci/install-system image).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

IMAGE=${IMAGE:-localhost/director-dashboard-gateway:test}
BASE=${BASE:-localhost/debian-base:bookworm}
export CONTAINERS_CONF=${CONTAINERS_CONF:-$PWD/deploy/image/containers.conf}
storage=(--storage-driver vfs)

mirror() {
    local uri
    uri=$(grep -h -o -E '^(URIs:[[:space:]]*|deb[[:space:]]+)[^[:space:]]+/debian/?([[:space:]]|$)' \
        /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources \
        2>/dev/null | head -n 1 | awk '{print $NF}') || true
    echo "${uri:-http://deb.debian.org/debian}"
}

if [[ $BASE == localhost/debian-base:bookworm ]] &&
    ! podman "${storage[@]}" image exists "$BASE"; then
    root=$(mktemp -d)
    trap 'rm -rf "$root"' EXIT
    chmod 0755 "$root" # it becomes the image's /: mktemp's 0700 would lock out non-root users
    source=${MIRROR:-$(mirror)}
    echo "building $BASE with debootstrap from $source"
    debootstrap --variant=minbase bookworm "$root" "$source" >/dev/null
    tar -C "$root" -c . | podman "${storage[@]}" import - "$BASE"
fi

# pip inside the build reaches PyPI through this machine's CA bundle, when it has one.
certs=()
if [[ -f /etc/ssl/certs/ca-certificates.crt ]]; then
    certs=(--volume /etc/ssl/certs:/host-certs:ro
        --build-arg PIP_CERT=/host-certs/ca-certificates.crt)
fi
buildah bud "${storage[@]}" --runtime runc --network host --layers \
    --build-arg BASE="$BASE" "${certs[@]}" -f Containerfile -t "$IMAGE" .
echo "built $IMAGE on $BASE"
