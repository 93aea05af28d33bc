#!/bin/sh
# otpylib container entrypoint: run the node, or ask it something (health, ps, stats, top...).
#
#   otpy-entrypoint [ARGS...]          run the node: otpy-node run --name NAME@HOST ... ARGS
#   otpy-entrypoint health             exit 0 when the node answers ping (HEALTHCHECK, probes)
#   otpy-entrypoint ps|stats|nodes|top|stop [ARGS...]   ask the node in this container
#
# Environment (all optional but the cookie):
#   OTPY_NAME          the node's short name (default: node); NAME@HOST is the node name
#   OTPY_HOST          where peers reach this node (default: $(hostname -f), the
#                      container's or pod's DNS name)
#   OTPY_PORT          distribution port (default: 4370)
#   OTPY_LISTEN        address to bind (default: 0.0.0.0, every interface: a container's
#                      published or service port reaches it)
#   OTPY_METRICS       HOST:PORT of the Prometheus endpoint (default: 0.0.0.0:9464;
#                      empty: off)
#   OTPY_COOKIE_FILE   the cluster's secret as a file (default: /run/secrets/otpy_cookie,
#                      where Docker and compose mount a secret named otpy_cookie)
#   OTPY_COOKIE        the secret itself, when there is no file
# Without a cookie it refuses to start: a node that made up its own random cookie could
# never join its cluster.
set -eu

name="${OTPY_NAME:-node}"
host="${OTPY_HOST:-$(hostname -f 2>/dev/null || hostname)}"
port="${OTPY_PORT:-4370}"
listen="${OTPY_LISTEN:-0.0.0.0}"
metrics="${OTPY_METRICS-0.0.0.0:9464}"
cookie_file="${OTPY_COOKIE_FILE:-/run/secrets/otpy_cookie}"
node="$name@$host"
# Where this container's own node is reached by the commands below.
probe="127.0.0.1"
[ "$listen" = "0.0.0.0" ] || probe="$listen"

fail() {
    echo "otpy-entrypoint: $*" >&2
    exit 2
}

mode=run
case "${1-}" in
health | ping | nodes | ps | stats | stop | top)
    mode="$1"
    shift
    ;;
run) shift ;;
esac

if [ -e "$cookie_file" ]; then
    [ -r "$cookie_file" ] || fail "cannot read the cookie file $cookie_file as uid $(id -u);" \
        "make it that user's, mode 0400 (chown $(id -u) FILE && chmod 400 FILE)"
    set -- --cookie-file "$cookie_file" "$@"
elif [ -z "${OTPY_COOKIE:-}" ]; then
    fail "no cookie: mount the cluster's secret at $cookie_file (or set OTPY_COOKIE_FILE)," \
        "or set OTPY_COOKIE; every node of a cluster needs the same one"
fi

case "$mode" in
run)
    if [ -n "$metrics" ]; then
        set -- --metrics "$metrics" "$@"
    fi
    exec otpy-node run --name "$node" --listen "$listen" --port "$port" "$@"
    ;;
health)
    exec otpy-node ping "$node" --address "$probe:$port" --timeout 3 "$@"
    ;;
*)
    exec otpy-node "$mode" "$node" --address "$probe:$port" "$@"
    ;;
esac
