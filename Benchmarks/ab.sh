#!/usr/bin/env bash
# Quick A/B measurements of one build against another, outside `make bench`.
#
#   bash Benchmarks/ab.sh MODE [BIN_DIR]      BIN_DIR: holds switchboard and SwitchboardBench
#                                             (default .build/release)
# MODE:
#   bare     the bare Hummingbird endpoint: req/s and server CPU per request
#   wa       WhatsApp notifications, no helpdesk: req/s, daemon CPU per request
#   ingest   the generic webhook channel, no helpdesk: the same
#   ingest-hd  the generic webhook channel with every event delivered to a helpdesk receiver
#            (what `make bench` calls daemon ingest): req/s, daemon CPU per request
#   wal      WhatsApp notifications: what the ingest writer thread writes per message
#            (bytes and write calls from /proc/<pid>/task/<tid>/io over 3 s of load)
#   e2e      1,000 events/s for 15 s to a helpdesk receiver: delivery p50/p99 and daemon CPU
#
# Run builds against each other in interleaved pairs on a quiet machine (this host's speed
# drifts within minutes): for i in 1 2 3; do bash Benchmarks/ab.sh wa /tmp/old; bash
# Benchmarks/ab.sh wa /tmp/new; done. Never beside a build or a test run.
set -euo pipefail
MODE=${1:?usage: ab.sh bare|wa|ingest|ingest-hd|wal|e2e [BIN_DIR]}
BIN=$(cd "${2:-$(dirname "$0")/../.build/release}" && pwd)
DURATION=${AB_DURATION:-8}
T=$(mktemp -d /tmp/sbt-ab.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$T"; }
trap cleanup EXIT
TCK=$(getconf CLK_TCK)
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
SECRET=c34e5e346d00e76142fe7bd064122038
HSECRET="whsec_1uz95rgFfLcPMnqdw1hlXxJGUTlVkeSSc+h4rrj7pic="
PORT=$("$BIN/SwitchboardBench" free-port)

helpdesk_yaml="helpdesks: []"
if [[ $MODE == e2e || $MODE == ingest-hd ]]; then
    HPORT=$("$BIN/SwitchboardBench" free-port)
    "$BIN/SwitchboardBench" helpdesk --port "$HPORT" --secret "$HSECRET" > "$T/helpdesk.log" 2>&1 & HPID=$!; PIDS+=($HPID)
    helpdesk_yaml="helpdesks: [ { name: bench, url: \"http://127.0.0.1:$HPORT/switchboard\", secret: \"$HSECRET\", events: [\"*\"] } ]"
fi

if [[ $MODE == bare ]]; then
    "$BIN/SwitchboardBench" bare-server --port "$PORT" > "$T/server.log" 2>&1 & SPID=$!; PIDS+=($SPID)
    URL=http://127.0.0.1:$PORT/webhooks/bench; FORMAT=(--secret x)
    sleep 1
else
    cat > "$T/switchboard.yaml" <<YAML
instance: bench
server: { listen: "127.0.0.1:$PORT" }
storage: { path: "$T/switchboard.sqlite" }
media: { path: "$T/media" }
$helpdesk_yaml
channels:
  - { id: wa, type: whatsapp, phone_number_id: "100000000000001", access_token: "t", app_secret: "$SECRET", verify_token: "v", graph_api_base: "http://127.0.0.1:9" }
  - { id: bench, type: webhook, secret: "$SECRET" }
logging: { level: warning }
YAML
    env -u NOTIFY_SOCKET -u LISTEN_FDS -u JOURNAL_STREAM "$BIN/switchboard" serve --config "$T/switchboard.yaml" > "$T/server.log" 2>&1 & SPID=$!; PIDS+=($SPID)
    for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$PORT/healthz" && break; sleep 0.1; done
    if [[ $MODE == wa || $MODE == wal ]]; then
        URL=http://127.0.0.1:$PORT/webhooks/wa; FORMAT=(--secret "$SECRET" --format whatsapp --phone-number-id 100000000000001)
    else
        URL=http://127.0.0.1:$PORT/webhooks/bench; FORMAT=(--secret "$SECRET")
    fi
fi

if [[ $MODE == e2e ]]; then
    c0=$(ticks "$SPID")
    "$BIN/SwitchboardBench" load --url "$URL" "${FORMAT[@]}" --connections 64 --duration 15 --warmup 0 --rate 1000 --users 200 --threads 1 > "$T/load.txt" 2>&1
    sleep 2
    c1=$(ticks "$SPID")
    stats=$(curl -fsS "http://127.0.0.1:$HPORT/stats?format=kv")
    late=$(grep -o 'late=[0-9]*' "$T/load.txt" | head -1)
    echo "e2e $(grep -oE '(p50|p99)_ms=[0-9.]*' <<<"$stats" | tr '\n' ' ')daemon_cpu_ms=$(( (c1 - c0) * 1000 / TCK )) load_$late"
    exit 0
fi

c0=$(ticks "$SPID")
[[ $MODE == ingest-hd ]] && h0=$(ticks "$HPID")
"$BIN/SwitchboardBench" load --url "$URL" "${FORMAT[@]}" --connections 64 --duration "$DURATION" --warmup 2 --users 1000 --threads 1 > "$T/load.txt" 2>&1 & LPID=$!
if [[ $MODE == wal ]]; then
    sleep 4
    WTID=""
    for t in /proc/$SPID/task/*; do [[ $(cat "$t/comm") == ingest-writer ]] && WTID=${t##*/}; done
    [[ -n $WTID ]] || { echo "no ingest-writer thread" >&2; exit 1; }
    count() { sqlite3 "$T/switchboard.sqlite" "SELECT COUNT(*) FROM messages"; }
    io() { awk -v k="$1" '$1 == k":" { print $2 }' "/proc/$SPID/task/$WTID/io"; }
    m0=$(count); w0=$(io wchar); s0=$(io syscw)
    sleep 3
    m1=$(count); w1=$(io wchar); s1=$(io syscw)
    wait $LPID
    n=$((m1 - m0))
    echo "wal messages=$n bytes_per_message=$(( (w1 - w0) / n )) write_calls_per_100_messages=$(( (s1 - s0) * 100 / n ))"
    exit 0
fi
wait $LPID
c1=$(ticks "$SPID")
helpdesk_cpu=""
if [[ $MODE == ingest-hd ]]; then
    h1=$(ticks "$HPID")
    helpdesk_cpu=" helpdesk_cpu_us_per_request=$(( (h1 - h0) * 1000000 / TCK / $(grep -o 'sent_total=[0-9]*' "$T/load.txt" | cut -d= -f2) ))"
fi
result=$(grep RESULT "$T/load.txt")
sent=$(grep -o 'sent_total=[0-9]*' <<<"$result" | cut -d= -f2)
rps=$(grep -oE '(committed_rps|ok_rps)=[0-9.]*' <<<"$result" | head -1 | cut -d= -f2)
echo "$MODE rps=$rps server_cpu_us_per_request=$(( (c1 - c0) * 1000000 / TCK / sent )) $(grep -o 'self_cpu_us=[0-9.]*' <<<"$result")$helpdesk_cpu"
