#!/bin/bash
# Reloads under traffic:
#  - after scripts/agent-revoke returns, an open keep-alive connection of the agent
#    and a resumed TLS session of it are refused within 2 s;
#  - a broken identity map and a broken CRL (written in place, picked up by change
#    detection and by SIGHUP) leave the previous state in force: the good agent is
#    still served, the revoked one still refused, and the log says why;
#  - removing an agent from the map makes its next request 403 or closes its
#    connection within 2 s.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
. "$HERE/gw.sh"
cg_setup
UP_PORT=$(cg_free_port)
cg_pki_init --upstream "http://127.0.0.1:$UP_PORT/mcp"
gw_upstream_start "$UP_PORT"

for a in keep victim leaver; do
	"$CG_SRC/scripts/agent-issue" --dir "$PKI" --agent "$a" --role admin >/dev/null 2>"$T/issue.err" ||
	    { cat "$T/issue.err" >&2; cg_fail "agent-issue $a failed"; }
done
A=$PKI/agents
CA=$PKI/ca/ca.pem
gw_rpc_request "$T/ping.req" ping
gw_start "$PKI/certgate.json" "$T/gw.log"

now_ms() { date +%s%3N; }

# client NAME OUT ARGS... : tlsclient as agent NAME; never trips the ERR trap.
client() {
	local name=$1 out=$2
	shift 2
	gw_client --ca "$CA" --cert "$A/$name/cert.pem" --key "$A/$name/key.pem" "$@" >"$out" 2>&1 || true
}

# served NAME : one ping on a fresh connection answers 200.
assert_served() {
	client "$1" "$T/served.out" --request "$T/ping.req"
	grep -q "response: HTTP/1.1 200" "$T/served.out" ||
	    { cat "$T/served.out" >&2; cg_fail "$1 is not served: ${2:-}"; }
}

# wait_cut FILE T0 WHAT : polls every 100 ms up to 2 s after T0 for a close or a 403.
wait_cut() {
	local file=$1 t0=$2 what=$3 i
	for i in $(seq 1 20); do
		if grep -q "closed by peer" "$file" || grep -q "response: HTTP/1.1 403" "$file"; then
			echo "$what: cut after $(($(now_ms) - t0)) ms (at most; polled)"
			return 0
		fi
		sleep 0.1
	done
	cat "$file" >&2
	cg_fail "$what: still served 2 s after the change"
}

assert_served keep "at start"
assert_served victim "at start"

# --- revocation: open keep-alive connection and resumed session --------------------
client victim "$T/sess.out" --request "$T/ping.req" --sess-out "$T/victim.sess"
cg_assert_contains "$T/sess.out" "session: saved"
client victim "$T/resume1.out" --request "$T/ping.req" --sess-in "$T/victim.sess" --expect-resumed
cg_assert_contains "$T/resume1.out" "resumed: yes"
cg_assert_contains "$T/resume1.out" "response: HTTP/1.1 200"

# 60 pings 100 ms apart on one connection: 6 s of keep-alive traffic.
client victim "$T/hold.out" --request "$T/ping.req" --repeat 60 --keepalive-gap-ms 100 &
HOLD=$!
cg_track_pid "$HOLD"
for i in $(seq 1 30); do
	grep -q "response: HTTP/1.1 200" "$T/hold.out" 2>/dev/null && break
	sleep 0.1
done
cg_assert_contains "$T/hold.out" "response: HTTP/1.1 200"
"$CG_SRC/scripts/agent-revoke" --dir "$PKI" --agent victim >/dev/null 2>&1 || cg_fail "agent-revoke failed"
T0=$(now_ms)
# Responses already on the wire before the revocation are fine; what matters is
# that the connection stops being served.
wait_cut "$T/hold.out" "$T0" "keep-alive connection of a revoked agent"

ok=0
for i in $(seq 1 20); do
	client victim "$T/resume2.out" --request "$T/ping.req" --sess-in "$T/victim.sess"
	if grep -q "handshake: failed" "$T/resume2.out" || grep -q "closed by peer" "$T/resume2.out" ||
	    grep -q "response: HTTP/1.1 403" "$T/resume2.out"; then
		ok=1
		break
	fi
	sleep 0.1
done
[ "$ok" = 1 ] || { cat "$T/resume2.out" >&2; cg_fail "resumed session of a revoked agent still served after 2 s"; }
echo "resumed session of the revoked agent refused after $(($(now_ms) - T0)) ms"
cg_assert_not_contains "$T/resume2.out" "response: HTTP/1.1 200"
assert_served keep "after the revocation"

# --- broken identity map: change detection, then SIGHUP ------------------------------
cp "$PKI/agents.json" "$T/agents.good"
nrej=$(grep -c "identity map .* rejected" "$T/gw.log" || true)
printf '{ "roles": { "admin": ["*"] }, "agents": [ { "id": ' >"$PKI/agents.json"
gw_wait_log "identity map .*agents.json rejected" 5 || cg_fail "broken identity map not reported"
gw_log_contains "previous configuration stays in force" || cg_fail "log does not say the old state stays"
assert_served keep "after a broken identity map (file change)"
kill -HUP "$GW_PID"
for i in $(seq 1 30); do
	[ "$(grep -c "identity map .* rejected" "$T/gw.log" || true)" -ge $((nrej + 2)) ] && break
	sleep 0.1
done
[ "$(grep -c "identity map .* rejected" "$T/gw.log" || true)" -ge $((nrej + 2)) ] ||
    cg_fail "SIGHUP with a broken identity map not reported"
assert_served keep "after a broken identity map (SIGHUP)"
cp "$T/agents.good" "$PKI/agents.json.tmp"
mv "$PKI/agents.json.tmp" "$PKI/agents.json"
gw_wait_log "reloaded \(.*agents.json changed\)" 5 || cg_fail "restored identity map not reloaded"

# --- broken CRL: the revocation stays enforced ----------------------------------------
cp "$PKI/ca/crl.pem" "$T/crl.good"
echo "not a crl" >"$PKI/ca/crl.pem"
gw_wait_log "cannot parse CRL .*crl.pem" 5 || cg_fail "broken CRL not reported"
assert_served keep "after a broken CRL (file change)"
client victim "$T/victim-crl.out" --request "$T/ping.req"
cg_assert_not_contains "$T/victim-crl.out" "response: HTTP/1.1 200"
ncrl=$(grep -c "cannot parse CRL" "$T/gw.log" || true)
kill -HUP "$GW_PID"
for i in $(seq 1 30); do
	[ "$(grep -c "cannot parse CRL" "$T/gw.log" || true)" -gt "$ncrl" ] && break
	sleep 0.1
done
[ "$(grep -c "cannot parse CRL" "$T/gw.log" || true)" -gt "$ncrl" ] || cg_fail "SIGHUP with a broken CRL not reported"
assert_served keep "after a broken CRL (SIGHUP)"
cp "$T/crl.good" "$PKI/ca/crl.pem"
gw_wait_log "reloaded \(.*crl.pem changed\)" 5 || cg_fail "restored CRL not reloaded"

# --- removed from the map: next request 403 or connection closed ------------------------
client leaver "$T/leaver.out" --request "$T/ping.req" --repeat 60 --keepalive-gap-ms 100 &
LEAVER=$!
cg_track_pid "$LEAVER"
for i in $(seq 1 30); do
	grep -q "response: HTTP/1.1 200" "$T/leaver.out" 2>/dev/null && break
	sleep 0.1
done
cg_assert_contains "$T/leaver.out" "response: HTTP/1.1 200"
python3 - "$PKI/agents.json" <<'EOF'
import json, os, sys
p = sys.argv[1]
m = json.load(open(p))
m["agents"] = [a for a in m["agents"] if a["id"] != "leaver"]
json.dump(m, open(p + ".tmp", "w"), indent=1)
os.rename(p + ".tmp", p)
EOF
T0=$(now_ms)
wait_cut "$T/leaver.out" "$T0" "connection of an agent removed from the map"
client leaver "$T/leaver2.out" --request "$T/ping.req"
cg_assert_not_contains "$T/leaver2.out" "response: HTTP/1.1 200"
assert_served keep "after removing another agent"

gw_stop
cg_pass
