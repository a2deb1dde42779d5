#!/usr/bin/env bash
# A whole Framelog cluster on one machine (docs/cluster.md): three NATS servers forming a
# JetStream cluster (sync_interval: always), SeaweedFS as the S3 store, three Framelog nodes and
# HAProxy in front of them as the one endpoint clients use.
#
#   scripts/cluster.sh up              start everything, print the endpoint
#   scripts/cluster.sh down            stop everything (data stays in $FRAMELOG_CLUSTER_DIR)
#   scripts/cluster.sh status          what runs
#   scripts/cluster.sh kill-node N     kill -9 Framelog node N (1-3); start-node N starts it again
#   scripts/cluster.sh kill-nats N     kill -9 NATS server N (1-3);   start-nats N
#   scripts/cluster.sh stop-objects    stop SeaweedFS;                start-objects
#
# Environment: FRAMELOG_BIN (the server binary), FRAMELOG_CLUSTER_DIR (state, default
# /tmp/framelog-cluster), FRAMELOG_CLUSTER_PORT (first of a block of ports, default 24000),
# FRAMELOG_CLUSTER_OBJECT_MIN_BYTES (payloads this large go to the object store, default 256 KiB).
# The tools come from scripts/setup.sh: nats-server and weed in .venv/bin, haproxy from Debian.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${FRAMELOG_CLUSTER_DIR:-/tmp/framelog-cluster}"
BASE="${FRAMELOG_CLUSTER_PORT:-24000}"
BIN="${FRAMELOG_BIN:-${CARGO_TARGET_DIR:-/var/cache/framelog/target}/release/framelog}"
NATS_BIN="$ROOT/.venv/bin/nats-server"
WEED_BIN="$ROOT/.venv/bin/weed"
HAPROXY_BIN="$(command -v haproxy || echo /usr/sbin/haproxy)"

# The port block: endpoint, nodes, NATS clients/routes/monitoring, SeaweedFS.
ENDPOINT_PORT=$BASE
node_port() { echo $((BASE + $1)); }           # 1..3
nats_port() { echo $((BASE + 10 + $1)); }      # client
route_port() { echo $((BASE + 20 + $1)); }     # cluster routes
monitor_port() { echo $((BASE + 30 + $1)); }
S3_PORT=$((BASE + 40))
WEED_MASTER=$((BASE + 41))
WEED_VOLUME=$((BASE + 42))
WEED_FILER=$((BASE + 43))
BUCKET=framelog
S3_KEY=framelog-cluster
S3_SECRET=framelog-cluster-secret

log() { printf 'cluster: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

pidfile() { echo "$DIR/run/$1.pid"; }
running() { [ -f "$(pidfile "$1")" ] && kill -0 "$(cat "$(pidfile "$1")")" 2>/dev/null; }

# Starts "$@" in the background as service $name, output to $DIR/log/$name.log.
start_service() {
  local name=$1; shift
  if running "$name"; then return; fi
  mkdir -p "$DIR/run" "$DIR/log"
  setsid "$@" >>"$DIR/log/$name.log" 2>&1 < /dev/null &
  echo $! >"$(pidfile "$name")"
}

kill_service() {
  local name=$1 signal=${2:-TERM}
  if running "$name"; then
    local pid; pid=$(cat "$(pidfile "$name")")
    kill -"$signal" "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$(pidfile "$name")"
}

wait_port() {
  local port=$1 what=$2
  for _ in $(seq 300); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    sleep 0.1
  done
  die "$what did not open port $port (logs in $DIR/log)"
}

write_nats_config() {
  local n=$1 routes=""
  for i in 1 2 3; do routes+="\"nats://127.0.0.1:$(route_port "$i")\", "; done
  mkdir -p "$DIR/nats$n"
  cat >"$DIR/nats$n.conf" <<EOF
server_name: n$n
listen: 127.0.0.1:$(nats_port "$n")
http: 127.0.0.1:$(monitor_port "$n")
jetstream {
  store_dir: "$DIR/nats$n"
  # Every acknowledged write is on disk: NATS otherwise fsyncs every two minutes.
  sync_interval: always
}
cluster {
  name: framelog
  listen: 127.0.0.1:$(route_port "$n")
  routes: [ ${routes} ]
}
EOF
}

start_nats() {
  local n=$1
  [ -f "$DIR/nats$n.conf" ] || write_nats_config "$n"
  start_service "nats$n" "$NATS_BIN" -c "$DIR/nats$n.conf"
}

start_objects() {
  mkdir -p "$DIR/weed"
  cat >"$DIR/s3.json" <<EOF
{"identities": [{"name": "framelog", "credentials": [{"accessKey": "$S3_KEY", "secretKey": "$S3_SECRET"}],
  "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
EOF
  # Fixed limits, not sized from the host's free disk: see VOLUME_LIMITS in seaweed_helpers.py.
  local WEED_VOLUME_LIMITS=(-volume.max=16 -master.volumeSizeLimitMB=64 -volume.minFreeSpace=256MiB)
  start_service objects "$WEED_BIN" server -dir="$DIR/weed" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
    -master.port="$WEED_MASTER" -volume.port="$WEED_VOLUME" -filer.port="$WEED_FILER" \
    -master.port.grpc=$((WEED_MASTER + 10000)) -volume.port.grpc=$((WEED_VOLUME + 10000)) \
    -filer.port.grpc=$((WEED_FILER + 10000)) -s3 -s3.port="$S3_PORT" -s3.port.grpc=$((S3_PORT + 10000)) \
    -s3.config="$DIR/s3.json" "${WEED_VOLUME_LIMITS[@]}"
  wait_port "$S3_PORT" "SeaweedFS S3"
}

make_bucket() {
  local aws=("$ROOT/.venv/bin/aws" --endpoint-url "http://127.0.0.1:$S3_PORT" --region us-east-1)
  for _ in $(seq 100); do
    if AWS_ACCESS_KEY_ID=$S3_KEY AWS_SECRET_ACCESS_KEY=$S3_SECRET "${aws[@]}" s3api head-bucket --bucket $BUCKET >/dev/null 2>&1 \
      || AWS_ACCESS_KEY_ID=$S3_KEY AWS_SECRET_ACCESS_KEY=$S3_SECRET "${aws[@]}" s3api create-bucket --bucket $BUCKET >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.2
  done
  die "could not create the bucket (logs in $DIR/log/objects.log)"
}

# SeaweedFS writes without fsync unless a path is configured for it: a PERSISTED ack must not
# rest on bytes in the page cache.
sync_bucket() {
  echo "fs.configure -locationPrefix=/buckets/$BUCKET/ -fsync -apply" \
    | "$WEED_BIN" shell -master="127.0.0.1:$WEED_MASTER" -filer="127.0.0.1:$WEED_FILER" >>"$DIR/log/objects.log" 2>&1 \
    || die "could not turn on fsync for the bucket (logs in $DIR/log/objects.log)"
}

write_node_config() {
  local n=$1 nats=""
  for i in 1 2 3; do nats+="\"nats://127.0.0.1:$(nats_port "$i")\", "; done
  cat >"$DIR/node$n.toml" <<EOF
listen = "127.0.0.1:$(node_port "$n")"
data_dir = "$DIR/node$n"
# Clients reach every node through HAProxy; GetDataEndpoint must name it, not this node.
public_url = "http://127.0.0.1:$ENDPOINT_PORT"
trim_interval_secs = 5

[cluster]
nats = [ ${nats} ]
node_id = "node$n"
object_min_bytes = ${FRAMELOG_CLUSTER_OBJECT_MIN_BYTES:-262144}
signing_secret_file = "$DIR/iterator-secret"

[encryption]
# Shared by every node: a payload sealed on one must open on the others.
master_key_file = "$DIR/master-key"

[objects]
endpoint = "http://127.0.0.1:$S3_PORT"
bucket = "$BUCKET"
access_key_id = "$S3_KEY"
secret_access_key = "$S3_SECRET"
EOF
}

start_node() {
  local n=$1
  [ -f "$DIR/node$n.toml" ] || write_node_config "$n"
  start_service "node$n" "$BIN" serve --config "$DIR/node$n.toml"
  wait_port "$(node_port "$n")" "Framelog node $n"
}

start_haproxy() {
  cat >"$DIR/haproxy.cfg" <<EOF
global
  maxconn 4096
defaults
  mode tcp
  timeout connect 2s
  # Long-lived PutMedia and GetMedia connections stream for hours.
  timeout client 1h
  timeout server 1h
  retries 3
  option redispatch
frontend framelog
  bind 127.0.0.1:$ENDPOINT_PORT
  default_backend nodes
backend nodes
  balance leastconn
  # A dead node leaves the rotation within a second; new connections go to the others.
  default-server check inter 300ms fall 2 rise 2 on-marked-down shutdown-sessions
  server node1 127.0.0.1:$(node_port 1)
  server node2 127.0.0.1:$(node_port 2)
  server node3 127.0.0.1:$(node_port 3)
EOF
  "$HAPROXY_BIN" -c -q -f "$DIR/haproxy.cfg" || die "HAProxy rejects $DIR/haproxy.cfg"
  start_service haproxy "$HAPROXY_BIN" -db -f "$DIR/haproxy.cfg"
  wait_port "$ENDPOINT_PORT" "HAProxy"
}

up() {
  for tool in "$NATS_BIN" "$WEED_BIN" "$HAPROXY_BIN" "$BIN"; do
    [ -x "$tool" ] || die "$tool is missing: run scripts/setup.sh and build the server"
  done
  mkdir -p "$DIR"
  for secret in iterator-secret master-key; do
    if [ ! -f "$DIR/$secret" ]; then
      (umask 077; head -c 32 /dev/urandom >"$DIR/$secret")
    fi
  done
  for n in 1 2 3; do start_nats "$n"; done
  for n in 1 2 3; do wait_port "$(nats_port "$n")" "NATS server $n"; done
  start_objects
  make_bucket
  sync_bucket
  for n in 1 2 3; do start_node "$n"; done
  start_haproxy
  log "up: endpoint http://127.0.0.1:$ENDPOINT_PORT (state and logs in $DIR)"
  echo "http://127.0.0.1:$ENDPOINT_PORT"
}

down() {
  kill_service haproxy
  for n in 1 2 3; do kill_service "node$n"; done
  kill_service objects
  for n in 1 2 3; do kill_service "nats$n"; done
  log "down"
}

status() {
  for name in nats1 nats2 nats3 objects node1 node2 node3 haproxy; do
    if running "$name"; then echo "$name running (pid $(cat "$(pidfile "$name")"))"; else echo "$name stopped"; fi
  done
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  kill-node) kill_service "node${2:?node number}" KILL ;;
  start-node) start_node "${2:?node number}" ;;
  kill-nats) kill_service "nats${2:?server number}" KILL ;;
  start-nats) start_nats "${2:?server number}"; wait_port "$(nats_port "$2")" "NATS server $2" ;;
  stop-objects) kill_service objects ;;
  start-objects) start_objects ;;
  *) sed -n '2,15p' "$0" >&2; exit 2 ;;
esac
