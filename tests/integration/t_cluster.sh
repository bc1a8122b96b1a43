#!/bin/bash
# Scale-out (README "Running several instances"): one redis-server on a loopback port,
# three certgate instances with separate state folders (copies of one PKI) and
# HAProxy in TCP mode in front. Checked, through HAProxy and per instance:
# - a second gateway on an instance's state folder is refused, certgate.pid intact;
# - a session initialized through one instance continues through the others, still
#   bound to its agent (another agent gets 403 on every instance);
# - an agent's rate budget holds across instances (not 3x);
# - a revocation made in one instance's folder is enforced by all within 2 s, its
#   open connection on another instance included; an identity-map change likewise;
# - Redis stopped: a session an instance does not hold is refused with 503 and a
#   JSON-RPC error (never forwarded), sessions it holds keep working, both counted;
#   Redis restarted: everything recovers without restarting an instance;
# - SIGKILL of one instance under load through HAProxy: only requests in flight on
#   it fail, the rest reach the others.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
. "$HERE/gw.sh"
. "$HERE/cluster.sh"
cg_setup
command -v redis-server >/dev/null || cg_fail "redis-server not installed (scripts/test installs it)"
command -v haproxy >/dev/null || cg_fail "haproxy not installed (scripts/test installs it)"

UP_PORT=$(cg_free_port)
RPORT=$(cg_free_port)
HPORT=$(cg_free_port)
gw_tool_upstream "$UP_PORT" "$T/up.log"

# --- Redis ---------------------------------------------------------------------------
redis_start

# --- one PKI, three copies -------------------------------------------------------------
PKI=$T/pki
gw_soft_pki "$PKI" 1 "http://127.0.0.1:$UP_PORT/" || cg_fail "soft PKI"
for a in alice bob carol dave erin; do
	gw_soft_issue "$PKI" "$a" || cg_fail "issue $a"
done
cluster_dirs 3 "$PKI" 'import json, sys
c = json.load(open(sys.argv[1]))
c["rate"] = {"per_second": 0.5, "burst": 10}
json.dump(c, open(sys.argv[1], "w"), indent=1)'
for i in 0 1 2; do
	# carol runs at the default (0.5/s, burst 10), erin at 20/s (burst 40); the others
	# are fast
	python3 - "${DIRS[i]}/agents.json" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))
for a in m["agents"]:
    if a["id"] == "erin":
        a["rate"] = {"per_second": 20, "burst": 40}
    elif a["id"] != "carol":
        a["rate"] = {"per_second": 1000, "burst": 1000}
json.dump(m, open(sys.argv[1], "w"), indent=1)
EOF
done
for i in 0 1 2; do inst_start "$i"; done

# --- a second gateway on gw0's folder is refused; certgate.pid stays gw0's ----------
cg_expect_fail 1 "$CERTGATE_BIN" serve -c "${DIRS[0]}/certgate.json"
cg_assert_contains "$T/err" "another gateway (pid ${PIDS[0]})"
cg_assert_eq "$(cat "${DIRS[0]}/certgate.pid")" "${PIDS[0]}" "certgate.pid after a second start"

# --- HAProxy in TCP mode in front of the three ------------------------------------------
{
	printf '%s\n' "global" "    maxconn 1000" "defaults" "    mode tcp" \
	    "    timeout connect 2s" "    timeout client 30s" "    timeout server 30s" \
	    "    retries 2" "    option redispatch" \
	    "frontend fe" "    bind 127.0.0.1:$HPORT" "    default_backend be" "backend be" \
	    "    balance roundrobin"
	for i in 0 1 2; do
		echo "    server gw$i 127.0.0.1:${PORTS[i]} check inter 500 fall 1 rise 1"
	done
} >"$T/haproxy.cfg"
haproxy -c -f "$T/haproxy.cfg" >"$T/haproxy.check" 2>&1 || {
	cat "$T/haproxy.check" >&2
	cg_fail "haproxy config check"
}
haproxy -db -f "$T/haproxy.cfg" >"$T/haproxy.log" 2>&1 &
HAPROXY_PID=$!
cg_track_pid "$HAPROXY_PID"
for _ in $(seq 1 50); do
	(exec 3<>"/dev/tcp/127.0.0.1/$HPORT") 2>/dev/null && break
	sleep 0.1
done

# rpc AGENT PORT NAME BODY [curl args...]: prints the status; headers/body in $T/NAME.{h,b}
rpc() {
	local agent=$1 port=$2 name=$3 body=$4
	shift 4
	curl -sS --max-time 10 --cacert "$PKI/ca/ca.pem" --cert "$PKI/agents/$agent/cert.pem" \
	    --key "$PKI/agents/$agent/key.pem" -D "$T/$name.h" -o "$T/$name.b" -w '%{http_code}' \
	    -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' \
	    --data-binary "$body" "$@" "https://localhost:$port/mcp" || true
}
INIT='{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}'
PING='{"jsonrpc":"2.0","id":2,"method":"ping"}'
sid_of() { grep -i '^Mcp-Session-Id:' "$T/$1.h" | cut -d' ' -f2 | tr -d '\r'; }

# --- sessions across instances -------------------------------------------------------
st=$(rpc alice "${PORTS[0]}" init "$INIT")
cg_assert_eq "$st" 200 "alice initialize on gw0"
SID=$(sid_of init)
[ -n "$SID" ] || cg_fail "no Mcp-Session-Id from initialize"
cg_assert_eq "$(redis-cli -p "$RPORT" get "certgate:s:$SID")" alice "the binding in Redis"
ttl=$(redis-cli -p "$RPORT" ttl "certgate:s:$SID")
[ "$ttl" -gt 0 ] && [ "$ttl" -le 86400 ] || cg_fail "binding TTL $ttl (want 1..86400)"
for i in 1 2; do
	st=$(rpc alice "${PORTS[i]}" cont$i "$PING" -H "Mcp-Session-Id: $SID")
	cg_assert_eq "$st" 200 "alice continues her gw0 session on gw$i"
	st=$(rpc bob "${PORTS[i]}" hijack$i "$PING" -H "Mcp-Session-Id: $SID")
	cg_assert_eq "$st" 403 "bob with alice's session on gw$i"
done
st=$(rpc bob "${PORTS[0]}" hijack0 "$PING" -H "Mcp-Session-Id: $SID")
cg_assert_eq "$st" 403 "bob with alice's session on gw0"
st=$(rpc alice "${PORTS[1]}" made_up "$PING" -H "Mcp-Session-Id: never-issued-0123")
cg_assert_eq "$st" 404 "a session id nobody bound"
for n in 1 2 3 4 5 6; do
	st=$(rpc alice "$HPORT" lb$n "$PING" -H "Mcp-Session-Id: $SID")
	cg_assert_eq "$st" 200 "alice's session through HAProxy (request $n)"
	st=$(rpc bob "$HPORT" lbb$n "$PING" -H "Mcp-Session-Id: $SID")
	cg_assert_eq "$st" 403 "bob with alice's session through HAProxy (request $n)"
done
cg_assert_eq "$(metric 1 'certgate_cluster_session_lookups_total{result="mine"}')" 1 \
    "gw1 looked alice's session up once (then held it)"

# --- global rate limit: carol has 10 (burst) + 0.5/s over all instances ----------------
ok=0 limited=0
t0=$(date +%s.%N)
for n in $(seq 1 30); do
	st=$(rpc carol "$HPORT" rate "$PING")
	case "$st" in
	200) ok=$((ok + 1)) ;;
	429) limited=$((limited + 1)) ;;
	*) cg_fail "carol's request $n: status $st" ;;
	esac
done
# One budget: at most burst + elapsed * rate (+1 for the token in refill at the
# start); three separate buckets would each allow 10 of their 10, i.e. all 30.
max=$(python3 -c "import math,sys; print(10 + math.ceil((float(sys.argv[2]) - float(sys.argv[1])) * 0.5) + 1)" "$t0" "$(date +%s.%N)")
[ "$max" -lt 30 ] || cg_fail "the rate check took too long to mean anything (bound $max)"
[ "$ok" -ge 10 ] && [ "$ok" -le "$max" ] || cg_fail "carol got $ok of 30 through (want 10..$max: one budget of 10 + 0.5/s, not 3 x 10)"
echo "global rate limit: $ok of 30 through three instances (bound $max)"
cg_assert_contains "$T/rate.h" "Retry-After:"

# --- leases: erin (20/s, burst 40) sends 40 keep-alive requests to each instance at
# once; each worker takes several tokens per Redis round trip (a lease) and spends
# them without asking, yet the one budget holds: at most 40 + 20/s * elapsed through
# (three separate budgets would let 120 through)
l0=0
for i in 0 1 2; do l0=$((l0 + $(metric "$i" certgate_cluster_rate_local_total))); done
t0=$(date +%s.%N)
lease_pids=()
for i in 0 1 2; do
	urls=()
	for n in $(seq 1 40); do urls+=("https://localhost:${PORTS[i]}/mcp"); done
	curl -sS --max-time 30 --cacert "$PKI/ca/ca.pem" --cert "$PKI/agents/erin/cert.pem" \
	    --key "$PKI/agents/erin/key.pem" -H 'Content-Type: application/json' \
	    -H 'Accept: application/json, text/event-stream' --data-binary "$PING" \
	    -w '\nSTATUS %{http_code}\n' "${urls[@]}" >"$T/lease$i.out" 2>&1 &
	lease_pids+=("$!")
done
wait "${lease_pids[@]}"
t1=$(date +%s.%N)
through=$(cat "$T"/lease[012].out | grep -c '^STATUS 200$' || true)
refused=$(cat "$T"/lease[012].out | grep -c '^STATUS 429$' || true)
cg_assert_eq "$((through + refused))" 120 "erin's answered requests (200 or 429)"
max=$(python3 -c "import math,sys; print(40 + math.ceil((float(sys.argv[2]) - float(sys.argv[1])) * 20) + 1)" "$t0" "$t1")
[ "$max" -lt 120 ] || cg_fail "the lease check took too long to mean anything (bound $max)"
[ "$through" -ge 1 ] && [ "$through" -le "$max" ] ||
    cg_fail "erin got $through of 120 through (want 1..$max: one budget of 40 + 20/s)"
l1=0
for i in 0 1 2; do l1=$((l1 + $(metric "$i" certgate_cluster_rate_local_total))); done
[ "$((l1 - l0))" -ge 1 ] || cg_fail "no request was allowed from a lease"
echo "leases: erin $through of 120 through (bound $max), $((l1 - l0)) allowed without a round trip"

# --- a revocation in gw0's folder reaches every instance within 2 s -------------------
now_ms() { date +%s%3N; }
gw_rpc_request "$T/ping.req" ping
client() {      # client AGENT INSTANCE OUT ARGS...
	local agent=$1 i=$2 out=$3
	shift 3
	"$TLSCLIENT" --connect "127.0.0.1:${PORTS[i]}" --ca "$PKI/ca/ca.pem" \
	    --cert "$PKI/agents/$agent/cert.pem" --key "$PKI/agents/$agent/key.pem" "$@" \
	    >"$out" 2>&1 || true
}
refused() {     # refused FILE: the handshake or the request was refused
	grep -q "handshake: failed" "$1" || grep -q "closed by peer" "$1" ||
	    grep -q "response: HTTP/1.1 403" "$1"
}
client bob 2 "$T/sess.out" --request "$T/ping.req" --sess-out "$T/bob.sess"
cg_assert_contains "$T/sess.out" "response: HTTP/1.1 200"
client bob 2 "$T/resume1.out" --request "$T/ping.req" --sess-in "$T/bob.sess" --expect-resumed
cg_assert_contains "$T/resume1.out" "resumed: yes"
client bob 2 "$T/hold.out" --request "$T/ping.req" --repeat 80 --keepalive-gap-ms 100 &
HOLD=$!
cg_track_pid "$HOLD"
for _ in $(seq 1 30); do
	grep -q "response: HTTP/1.1 200" "$T/hold.out" 2>/dev/null && break
	sleep 0.1
done
cg_assert_contains "$T/hold.out" "response: HTTP/1.1 200"
# The CA host revokes and installs the new CRL in gw0's folder only (what
# scripts/agent-revoke --dir does there); gw0 reloads it by itself.
gw_soft_revoke "$PKI" bob || cg_fail "revoke bob"
cp "$PKI/ca/crl.pem" "${DIRS[0]}/ca/crl.pem.new"
mv "${DIRS[0]}/ca/crl.pem.new" "${DIRS[0]}/ca/crl.pem"
T0=$(now_ms)
cut=0
while [ $(($(now_ms) - T0)) -lt 2000 ]; do
	if grep -q "closed by peer" "$T/hold.out" || grep -q "response: HTTP/1.1 403" "$T/hold.out"; then
		cut=1
		break
	fi
	sleep 0.05
done
[ "$cut" = 1 ] || { tail -5 "$T/hold.out" >&2; cg_fail "bob's open connection on gw2 still served 2 s after the revocation on gw0"; }
echo "open connection on gw2 cut $(($(now_ms) - T0)) ms after the CRL changed on gw0"
for i in 1 2; do
	client bob "$i" "$T/rev$i.out" --request "$T/ping.req"
	refused "$T/rev$i.out" || { cat "$T/rev$i.out" >&2; cg_fail "revoked bob served by gw$i"; }
	cmp -s "$PKI/ca/crl.pem" "${DIRS[i]}/ca/crl.pem" || cg_fail "gw$i's CRL file is not the pushed one"
done
client bob 2 "$T/resume2.out" --request "$T/ping.req" --sess-in "$T/bob.sess"
refused "$T/resume2.out" || { cat "$T/resume2.out" >&2; cg_fail "bob's resumed session on gw2 served after the revocation"; }
cg_assert_not_contains "$T/resume2.out" "response: HTTP/1.1 200"
for i in 0 1 2; do
	client alice "$i" "$T/alive$i.out" --request "$T/ping.req"
	cg_assert_contains "$T/alive$i.out" "response: HTTP/1.1 200"
done
grep -q "published the CRL" "${DIRS[0]}/gw.log" || cg_fail "gw0 did not log its publication"

# --- an identity-map change on gw1 (carol removed) reaches gw0 and gw2 -----------------
python3 - "${DIRS[1]}/agents.json" <<'EOF2'
import json, os, sys
m = json.load(open(sys.argv[1]))
m["agents"] = [a for a in m["agents"] if a["id"] != "carol"]
json.dump(m, open(sys.argv[1] + ".tmp", "w"), indent=1)
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
EOF2
T0=$(now_ms)
sleep 2
for i in 0 2; do
	client carol "$i" "$T/map$i.out" --request "$T/ping.req"
	cg_assert_contains "$T/map$i.out" "response: HTTP/1.1 403"
	cmp -s "${DIRS[1]}/agents.json" "${DIRS[i]}/agents.json" || cg_fail "gw$i's map is not gw1's"
done

# --- Redis stopped: unknown sessions refused (503), held sessions keep working ----------
st=$(rpc alice "${PORTS[0]}" init2 "$INIT")
cg_assert_eq "$st" 200 "alice's second initialize on gw0"
SID2=$(sid_of init2)
redis_stop
sleep 0.5
up_before=$(wc -l <"$T/up.log")
st=$(rpc alice "${PORTS[2]}" down2 "$PING" -H "Mcp-Session-Id: $SID2")
cg_assert_eq "$st" 503 "a session gw2 does not hold, Redis down"
cg_assert_contains "$T/down2.b" '"error"'
cg_assert_contains "$T/down2.b" "session store unavailable"
cg_assert_eq "$(wc -l <"$T/up.log")" "$up_before" "upstream requests while refusing"
cg_assert_eq "$(metric 2 certgate_cluster_refused_unavailable_total)" 1 "gw2's count of 503s"
st=$(rpc dave "${PORTS[2]}" down_bob "$PING" -H "Mcp-Session-Id: $SID2")
cg_assert_eq "$st" 503 "dave with a session gw2 does not hold, Redis down"
for i in 0 1; do
	st=$(rpc alice "${PORTS[i]}" held$i "$PING" -H "Mcp-Session-Id: $SID")
	cg_assert_eq "$st" 200 "alice's session held by gw$i, Redis down"
	st=$(rpc dave "${PORTS[i]}" heldb$i "$PING" -H "Mcp-Session-Id: $SID")
	cg_assert_eq "$st" 403 "dave with alice's session on gw$i, Redis down"
done
st=$(rpc alice "${PORTS[1]}" down_init "$INIT")
cg_assert_eq "$st" 200 "a new session on gw1, Redis down"
cg_assert_eq "$(metric 1 certgate_cluster_redis_connections)" 0 "gw1's Redis connections"
grep -q "Redis at 127.0.0.1:$RPORT unreachable" "${DIRS[1]}/gw.log" || cg_fail "gw1 did not log Redis down"

# --- Redis restarted (empty): instances reconnect by themselves ------------------------
WANT_CONNS=5    # two workers, the main loop, the subscriber, the ticket keys
redis_start
for _ in $(seq 1 100); do
	[ "$(metric 2 certgate_cluster_redis_connections)" -ge "$WANT_CONNS" ] && break
	sleep 0.1
done
[ "$(metric 2 certgate_cluster_redis_connections)" -ge "$WANT_CONNS" ] || cg_fail "gw2 did not reconnect to Redis within 10 s"
for i in 0 1; do
	for _ in $(seq 1 100); do
		[ "$(metric $i certgate_cluster_redis_connections)" -ge "$WANT_CONNS" ] && break
		sleep 0.1
	done
done
st=$(rpc alice "${PORTS[0]}" init3 "$INIT")
cg_assert_eq "$st" 200 "initialize on gw0 after Redis restarted"
SID3=$(sid_of init3)
st=$(rpc alice "${PORTS[2]}" after3 "$PING" -H "Mcp-Session-Id: $SID3")
cg_assert_eq "$st" 200 "the new session continues on gw2"
st=$(rpc dave "${PORTS[2]}" after3b "$PING" -H "Mcp-Session-Id: $SID3")
cg_assert_eq "$st" 403 "dave with it on gw2"
st=$(rpc alice "${PORTS[1]}" after1 "$PING" -H "Mcp-Session-Id: $SID")
cg_assert_eq "$st" 200 "a session gw1 held through the outage"
[ -n "$(redis-cli -p "$RPORT" get certgate:crl)" ] || cg_fail "the CRL was not re-published into the restarted Redis"

# --- SIGKILL of gw1 under load through HAProxy: only its in-flight requests fail ------
load() {        # load N OUT: N pings through HAProxy, one connection each
	local n
	for n in $(seq 1 "$1"); do
		curl -sS --max-time 10 --cacert "$PKI/ca/ca.pem" --cert "$PKI/agents/alice/cert.pem" \
		    --key "$PKI/agents/alice/key.pem" -o /dev/null -w '%{http_code}\n' \
		    -H 'Content-Type: application/json' --data-binary "$PING" \
		    "https://localhost:$HPORT/mcp" 2>/dev/null || true
	done >"$2"
}
LOADERS=()
for l in 1 2 3; do
	load 40 "$T/load$l.out" &
	LOADERS+=($!)
done
sleep 1.5
kill -KILL "${PIDS[1]}"
wait "${PIDS[1]}" 2>/dev/null || true
for p in "${LOADERS[@]}"; do wait "$p"; done
total=$(cat "$T"/load?.out | wc -l)
good=$(cat "$T"/load?.out | grep -c '^200$' || true)
cg_assert_eq "$total" 120 "requests sent under load"
# At most one request in flight per loader when gw1 died; a connection HAProxy
# could not open to it is redispatched to another instance.
[ "$good" -ge 117 ] || cg_fail "only $good of 120 requests succeeded around the SIGKILL (want >= 117: at most the 3 in flight on gw1 lost)"
echo "SIGKILL under load: $good of 120 answered 200"
for n in 1 2 3 4 5 6; do
	st=$(rpc alice "$HPORT" after_kill$n "$PING" -H "Mcp-Session-Id: $SID3")
	cg_assert_eq "$st" 200 "alice's session through HAProxy after gw1 died (request $n)"
done

# --- the survivors stop cleanly (exit 0: no sanitizer report, pending Redis work freed) -
for i in 0 2; do
	kill -TERM "${PIDS[i]}"
	rc=0
	wait "${PIDS[i]}" || rc=$?
	[ "$rc" -eq 0 ] || { tail -30 "${DIRS[i]}/gw.log" >&2; cg_fail "gw$i exited with $rc after SIGTERM"; }
	if grep -q "Sanitizer" "${DIRS[i]}/gw.log"; then
		grep -A20 "Sanitizer" "${DIRS[i]}/gw.log" | head -40 >&2
		cg_fail "sanitizer report in gw$i's log"
	fi
done

cg_pass
