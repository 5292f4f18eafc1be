#!/usr/bin/env bash
# Build the exporter image with buildah (no Docker daemon) and smoke-test it.
#
#   ci/build-image.sh [IMAGE_TAG]        (default localhost/alb-jobs-exporter:ci)
#
# 1. No registry is reachable, so the FROM image docker.io/library/python:3.11-slim
#    is made locally with debootstrap (Debian bookworm's python3 3.11) unless it is
#    already in container storage. The host CA bundle is baked into it: registry
#    traffic goes through a TLS-intercepting proxy whose CA only the host trusts,
#    and `pip` inside RUN steps must verify it.
# 2. buildah bud --pull-never --isolation chroot (crun cannot run containers on this
#    host's hybrid cgroups), --format docker so that HEALTHCHECK is kept; from the base
#    under a second, registry-mirror-like name through the BASE_IMAGE build argument
#    (the route of build hosts without Docker Hub, docs/deploy.md "Quick start").
# 3. Runs the image's exporter with --demo on a loopback port, waits for /metrics,
#    lints it with promtool check metrics, runs the image's own HEALTHCHECK command,
#    checks that nothing was written to the root filesystem (read-only friendly),
#    and stops it.
set -euo pipefail

IMAGE="${1:-localhost/alb-jobs-exporter:ci}"
BASE="docker.io/library/python:3.11-slim"
MIRROR_BASE="localhost/mirror/python:3.11-slim"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
[[ -f "${CI_TOOLS:-/opt/alb-ci-tools}/env.sh" ]] && . "${CI_TOOLS:-/opt/alb-ci-tools}/env.sh"

log() { printf '[build-image] %s\n' "$*" >&2; }
die() { printf '[build-image] ERROR: %s\n' "$*" >&2; exit 1; }
for tool in buildah debootstrap promtool curl jq python3; do
    command -v "$tool" >/dev/null || die "$tool not found: run ci/install-tools.sh first"
done

WORK="$(mktemp -d)"
RUN_PGID=""
CTR=""
cleanup() {
    if [[ -n "$RUN_PGID" ]]; then
        kill -TERM -- "-$RUN_PGID" 2>/dev/null || true
    fi
    [[ -n "$CTR" ]] && buildah rm "$CTR" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
t0=$(date +%s)

# --- 1. base image ---------------------------------------------------------------------
if buildah inspect --type image "$BASE" >/dev/null 2>&1; then
    log "base image $BASE already present"
else
    log "making $BASE with debootstrap (about a minute)"
    mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    mirror="${mirror:-http://deb.debian.org/debian}"
    rootfs="$WORK/rootfs"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        bookworm "$rootfs" "$mirror" >"$WORK/debootstrap.log" 2>&1 \
        || { tail -n 30 "$WORK/debootstrap.log" >&2; die "debootstrap failed"; }
    cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    c=$(buildah from scratch)
    m=$(buildah mount "$c")
    cp -a "$rootfs/." "$m/"
    buildah umount "$c" >/dev/null
    buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --env LANG=C.UTF-8 --cmd '["python3"]' "$c"
    buildah commit -q "$c" "$BASE" >/dev/null
    buildah rm "$c" >/dev/null
    rm -rf "$rootfs"
fi
t_base=$(date +%s)

# --- 2. build ----------------------------------------------------------------------------
buildah tag "$BASE" "$MIRROR_BASE"
log "buildah bud --build-arg BASE_IMAGE=$MIRROR_BASE -> $IMAGE"
buildah bud --pull-never --isolation chroot --network host --format docker \
    --build-arg BASE_IMAGE="$MIRROR_BASE" \
    --layers=false -q -t "$IMAGE" -f "$ROOT/Dockerfile" "$ROOT" >/dev/null
cfg=$(buildah inspect --type image "$IMAGE" | jq -c '.Docker.config')
log "image config: $(jq -c '{User, Entrypoint, Cmd, ExposedPorts}' <<<"$cfg")"
[[ "$(jq -r .User <<<"$cfg")" == "65534:65534" ]] || die "image user is not 65534:65534"
jq -e '.ExposedPorts | has("9868/tcp")' <<<"$cfg" >/dev/null || die "image does not expose 9868"
jq -e '.Entrypoint == ["/opt/venv/bin/alb-jobs-exporter"]' <<<"$cfg" >/dev/null || die "unexpected ENTRYPOINT"
hc_cmd=$(jq -r '.Healthcheck.Test[-1] // ""' <<<"$cfg")
[[ "$hc_cmd" == *'/-/healthy'* ]] || die "image has no /-/healthy HEALTHCHECK"
size=$(buildah images --format '{{.Size}}' "$IMAGE" | head -n1)
log "image size: $size"
t_build=$(date +%s)

# --- 3. run and scrape -----------------------------------------------------------------------
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
CTR=$(buildah from --pull-never "$IMAGE")
mnt=$(buildah mount "$CTR")
touch "$WORK/stamp"
sleep 1  # mtime granularity: anything written by the run is strictly newer
log "running $IMAGE --demo on 127.0.0.1:$port"
# setsid: the run gets its own process group, which is what we stop afterwards.
setsid buildah run --isolation chroot --network host "$CTR" -- \
    /opt/venv/bin/alb-jobs-exporter --demo "--web.listen-address=127.0.0.1:$port" \
    >"$WORK/run.log" 2>&1 &
RUN_PGID=$!

ok=""
for _ in $(seq 1 60); do
    if curl -fsS -o "$WORK/metrics.txt" "http://127.0.0.1:$port/metrics" 2>/dev/null \
        && grep -q '^alb_exporter_up' "$WORK/metrics.txt"; then
        ok=1
        break
    fi
    kill -0 "$RUN_PGID" 2>/dev/null || break
    sleep 0.5
done
if [[ -z "$ok" ]]; then
    cat "$WORK/run.log" >&2
    die "the image never served /metrics with alb_exporter_up on 127.0.0.1:$port"
fi
# A classic-text scrape (no OpenMetrics Accept header): promtool 2.42 reads only that.
# Exit 3 is lint; SPEC's alb_exporter_shard_count gauge draws one lint line ("should not have
# _count suffix"), accepted as tests/support/promtool.py does; anything else fails.
set +e
lint=$(promtool check metrics <"$WORK/metrics.txt" 2>&1)
rc=$?
set -e
others=$(printf '%s\n' "$lint" | grep -v '^alb_exporter_shard_count non-histogram and non-summary metrics should not have "_count" suffix$' | grep -v '^$' || true)
if [[ $rc -ne 0 && ( $rc -ne 3 || -n "$others" ) ]]; then
    printf '%s\n' "$lint" >&2
    die "promtool check metrics failed (exit $rc)"
fi
log "promtool check metrics: ok ($(grep -c -v '^#' "$WORK/metrics.txt") samples)"
grep -q '^alb_async_jobs{' "$WORK/metrics.txt" || die "no alb_async_jobs samples in demo mode"

# The image's own HEALTHCHECK, pointed at the loopback port used here.
buildah run --isolation chroot --network host --env "HEALTHCHECK_URL=http://127.0.0.1:$port/-/healthy" \
    "$CTR" -- python3 -c "$hc_cmd" \
    || die "the image's HEALTHCHECK command failed"
log "HEALTHCHECK command: ok"
curl -fsS -o /dev/null "http://127.0.0.1:$port/-/ready" || die "/-/ready did not answer 200"

kill -TERM -- "-$RUN_PGID"
for _ in $(seq 1 20); do kill -0 "$RUN_PGID" 2>/dev/null || break; sleep 0.5; done
if kill -0 "$RUN_PGID" 2>/dev/null; then
    kill -KILL -- "-$RUN_PGID" 2>/dev/null || true
    die "the exporter did not stop within 10 s of SIGTERM"
fi
wait "$RUN_PGID" 2>/dev/null || true
RUN_PGID=""

# Read-only root filesystem: the run must not have written into the image's tree.
# buildah itself maintains /etc/hosts, /etc/resolv.conf, /etc/hostname and /run.
written=$(cd "$mnt" && find . -xdev -newer "$WORK/stamp" ! -type d \
    ! -path './etc/hosts' ! -path './etc/resolv.conf' ! -path './etc/hostname' \
    ! -path './run/*' ! -path './proc/*' ! -path './sys/*' ! -path './dev/*' | head -n 20)
[[ -z "$written" ]] || die "the exporter wrote to the root filesystem: $written"
log "no writes to the root filesystem"
buildah umount "$CTR" >/dev/null

log "timings: base $((t_base - t0))s, build $((t_build - t_base))s, run $(($(date +%s) - t_build))s"
log "OK: $IMAGE"
