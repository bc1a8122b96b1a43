#!/bin/bash
# Connection-level limits and lifecycle, on a software PKI (no token needed):
#  - max_connections_per_ip: the connection over the limit is closed at once;
#  - handshake_timeout_ms: a peer that never sends a ClientHello is dropped;
#  - graceful shutdown: SIGTERM stops accepting, lets an in-flight request finish,
#    exits 0; a request longer than limits.grace_ms is cut at the grace limit.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
. "$HERE/gw.sh"
cg_setup

UP_PORT=$(cg_free_port)
PORT=$(cg_free_port)
SOFT=$T/soft
gw_soft_pki "$SOFT" "$PORT" "http://127.0.0.1:$UP_PORT/mcp" || cg_fail "software PKI"
gw_soft_issue "$SOFT" a || cg_fail "soft issue"
python3 - "$SOFT/certgate.json" <<'EOF'
import json, sys
p = sys.argv[1]
c = json.load(open(p))
c["limits"] = {"max_connections_per_ip": 2, "handshake_timeout_ms": 500, "grace_ms": 1500}
json.dump(c, open(p, "w"), indent=1)
EOF
gw_upstream_start "$UP_PORT"
gw_rpc_request "$T/ping.req" ping
gw_rpc_request "$T/slow.req" "sleep/800"
gw_rpc_request "$T/slower.req" "sleep/6000"
CA=$SOFT/ca/ca.pem
A=$SOFT/agents/a
now_ms() { date +%s%3N; }
client() {
	local out=$1
	shift
	gw_client --ca "$CA" --cert "$A/cert.pem" --key "$A/key.pem" "$@" >"$out" 2>&1 || true
}
wait_for() {
	local file=$1 pat=$2 i
	for i in $(seq 1 50); do
		grep -q -- "$pat" "$file" 2>/dev/null && return 0
		sleep 0.1
	done
	cat "$file" >&2 2>/dev/null || true
	cg_fail "$file: no '$pat' within 5 s"
}

gw_start "$SOFT/certgate.json" "$T/gw.log"

# --- per-IP limit ------------------------------------------------------------------
client "$T/h1.out" --wait-close-ms 3000 &
cg_track_pid $!
client "$T/h2.out" --wait-close-ms 3000 &
cg_track_pid $!
wait_for "$T/h1.out" "handshake: ok"
wait_for "$T/h2.out" "handshake: ok"
client "$T/h3.out" --request "$T/ping.req"
cg_assert_not_contains "$T/h3.out" "handshake: ok"
wait_for "$T/h1.out" "still open"
wait_for "$T/h2.out" "still open"
client "$T/h4.out" --request "$T/ping.req"
cg_assert_contains "$T/h4.out" "response: HTTP/1.1 200"

# --- handshake timeout ---------------------------------------------------------------
ms=$(python3 - "$PORT" <<'EOF'
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
t = time.time()
s.settimeout(5)
try:
    s.recv(1)
except OSError:
    pass
print(int((time.time() - t) * 1000))
EOF
)
echo "silent peer dropped after $ms ms (handshake_timeout_ms 500)"
[ "$ms" -ge 300 ] && [ "$ms" -le 3000 ] || cg_fail "silent peer dropped after $ms ms, want about 500"
gw_wait_log "handshake from .* timed out" 2 || cg_fail "handshake timeout not logged"

# --- graceful shutdown: in-flight request finishes ----------------------------------------
client "$T/slow.out" --request "$T/slow.req" &
SLOW=$!
sleep 0.3
kill -TERM "$GW_PID"
sleep 0.2
rc=0
gw_client --ca "$CA" --cert "$A/cert.pem" --key "$A/key.pem" >"$T/late.out" 2>&1 || rc=$?
[ "$rc" -ne 0 ] || { cat "$T/late.out" >&2; cg_fail "a new connection was served during shutdown"; }
wait "$SLOW" || true
cg_assert_contains "$T/slow.out" "response: HTTP/1.1 200"
gw_stop
gw_log_contains "shutting down" || cg_fail "shutdown not logged"

# --- graceful shutdown: grace limit cuts a long request ------------------------------------
gw_start "$SOFT/certgate.json" "$T/gw2.log"
client "$T/slower.out" --request "$T/slower.req" &
SLOWER=$!
sleep 0.3
T0=$(now_ms)
gw_stop
el=$(($(now_ms) - T0))
echo "shutdown with a 6 s request in flight took $el ms (grace_ms 1500)"
[ "$el" -ge 1200 ] && [ "$el" -le 4000 ] || cg_fail "shutdown took $el ms, want about 1500"
wait "$SLOWER" || true
cg_assert_not_contains "$T/slower.out" "response: HTTP/1.1 200"

cg_pass
