#!/bin/bash
# Valgrind memcheck of a short end-to-end session: `certgate serve` with the server
# key in SoftHSM runs under
#   valgrind --leak-check=full --errors-for-leak-kinds=definite,indirect
#            --error-exitcode=99 --track-fds=no
# (plus tests/valgrind.supp), serves a few requests with curl and tlsclient -- allowed,
# denied (missing scope), unmapped certificate, malformed JSON, keep-alive, a resumed
# TLS session, complete and cancelled SSE streams, the admin listener, a SIGHUP reload,
# a revocation (CRL reload) and refused handshakes -- and is stopped with SIGTERM. It must exit 0: no memory errors, no definite or
# indirect leaks. Timeouts are generous (valgrind is ~20x slower). Token signatures
# run synchronously here (signer.async false, see below).
# Plain build only: valgrind and AddressSanitizer do not mix, so in the ASan build
# directory the test says so and passes (ASan/LSan cover that build instead).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
. "$HERE/gw.sh"

case "${CERTGATE_BUILD_DIR:-}" in
*-asan | *-asan/)
	echo "SKIP: t_valgrind: $CERTGATE_BUILD_DIR is an AddressSanitizer build (valgrind and ASan do not mix)"
	exit 0 ;;
esac
cg_setup
if ldd "$CERTGATE_BIN" 2>/dev/null | grep -q libasan; then
	echo "SKIP: t_valgrind: $CERTGATE_BIN is linked with AddressSanitizer (valgrind and ASan do not mix)"
	exit 0
fi
command -v valgrind >/dev/null || cg_fail "valgrind not installed (apt-get install valgrind)"
SUPP=$CG_SRC/tests/valgrind.supp

UP_PORT=$(cg_free_port)
cg_pki_init --upstream "http://127.0.0.1:$UP_PORT/"
gw_tool_upstream "$UP_PORT"

issue() {
	"$CG_SRC/scripts/agent-issue" --dir "$PKI" --agent "$1" --role "$2" >/dev/null 2>"$T/issue.err" ||
	    { cat "$T/issue.err" >&2; cg_fail "agent-issue $1 failed"; }
}
issue vg-member member
issue vg-guest guest
issue vg-gone member
issue vg-revoked member
# vg-gone keeps a valid certificate but leaves the identity map: unmapped.
python3 - "$PKI/agents.json" <<'EOF'
import json, sys
p = sys.argv[1]
m = json.load(open(p))
m["agents"] = [a for a in m["agents"] if a["id"] != "vg-gone"]
json.dump(m, open(p, "w"), indent=1)
EOF
python3 - "$PKI/certgate.json" <<'EOF'
import json, sys
p = sys.argv[1]
c = json.load(open(p))
c["workers"] = 2
c["limits"].update(handshake_timeout_ms=120000, header_timeout_ms=120000,
                   body_timeout_ms=120000, upstream_response_timeout_ms=120000,
                   grace_ms=60000)
# Synchronous signing: valgrind cannot follow OpenSSL's async jobs. They run on 32 KiB
# fibre stacks malloc'd on the heap and switched with setcontext; memcheck takes a
# switch between two nearby heap blocks for stack growth and flags every heap read in
# between (hundreds of false "Invalid read" in setcontext, ASYNC_start_job, SSL_new'd
# objects). The async signer path is covered by the ASan build of the suite instead.
c["signer"]["async"] = False
c["signer"]["timeout_ms"] = 120000
json.dump(c, open(p, "w"), indent=1)
EOF

VG=(valgrind --leak-check=full --errors-for-leak-kinds=definite,indirect --error-exitcode=99
    --track-fds=no --num-callers=30 --log-file="$T/vg.log")
[ -f "$SUPP" ] && VG+=(--suppressions="$SUPP")
"${VG[@]}" "$CERTGATE_BIN" serve -c "$PKI/certgate.json" 2>"$T/gw.log" &
VG_PID=$!
cg_track_pid "$VG_PID"
for i in $(seq 1 1200); do
	kill -0 "$VG_PID" 2>/dev/null || { cat "$T/gw.log" "$T/vg.log" >&2; cg_fail "gateway exited during start-up"; }
	grep -q "listening on" "$T/gw.log" && break
	sleep 0.1
done
grep -q "listening on" "$T/gw.log" || cg_fail "gateway under valgrind not listening after 120 s"
echo "gateway under valgrind listening after ~$((i / 10)) s"
GW_PORT=$CG_LISTEN_PORT
URL=https://127.0.0.1:$GW_PORT
A=$PKI/agents

# rpc AGENT BODY : POSTs BODY with curl, prints the status code.
rpc() {
	curl -sS --max-time 120 -o "$T/body" -w '%{http_code}' --cacert "$PKI/ca/ca.pem" \
	    --cert "$A/$1/cert.pem" --key "$A/$1/key.pem" -H 'Content-Type: application/json' \
	    -H 'Accept: application/json, text/event-stream' --data-binary "$2" "$URL/mcp" 2>"$T/curl.err" ||
	    echo " curl failed: $(cat "$T/curl.err")"
}
expect() { # expect WHAT GOT WANT
	[ "$2" = "$3" ] || { cat "$T/body" >&2 2>/dev/null; cg_fail "$1: got '$2', want $3"; }
	echo "$1: $2"
}

expect "allowed tools/call" "$(rpc vg-member '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{}}}')" 200
expect "filtered tools/list" "$(rpc vg-guest '{"jsonrpc":"2.0","id":2,"method":"tools/list"}')" 200
expect "denied tools/call (missing scope)" "$(rpc vg-guest '{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo"}}')" 403
expect "unmapped certificate" "$(rpc vg-gone '{"jsonrpc":"2.0","id":4,"method":"ping"}')" 403
expect "malformed JSON" "$(rpc vg-member '{"jsonrpc":')" 400
expect "initialize (session)" "$(rpc vg-member '{"jsonrpc":"2.0","id":5,"method":"initialize","params":{}}')" 200

# SSE: a complete stream, then one cancelled midway (curl gives up after 1 s).
curl -sS -N --max-time 120 --cacert "$PKI/ca/ca.pem" --cert "$A/vg-member/cert.pem" \
    --key "$A/vg-member/key.pem" "$URL/sse?n=3&delay_ms=50" >"$T/sse.out" 2>"$T/curl.err" ||
    { cat "$T/curl.err" >&2; cg_fail "SSE stream failed"; }
[ "$(grep -c '^data: ' "$T/sse.out")" = 3 ] || { cat "$T/sse.out" >&2; cg_fail "SSE stream incomplete"; }
echo "SSE stream: 3 events"
curl -sS -N --max-time 2 --cacert "$PKI/ca/ca.pem" --cert "$A/vg-member/cert.pem" \
    --key "$A/vg-member/key.pem" "$URL/sse?n=100&delay_ms=200" >"$T/sse2.out" 2>/dev/null || true
echo "SSE stream cancelled after $(grep -c '^data: ' "$T/sse2.out") events"

# tlsclient: keep-alive requests, then a resumed session.
gw_rpc_request "$T/ping.req" ping
TC=(--ca "$PKI/ca/ca.pem" --cert "$A/vg-member/cert.pem" --key "$A/vg-member/key.pem"
    --timeout-ms 60000 --probe-ms 5000)
gw_client "${TC[@]}" --request "$T/ping.req" --repeat 3 --sess-out "$T/sess" >"$T/tc.out" 2>&1 ||
    { cat "$T/tc.out" >&2; cg_fail "tlsclient keep-alive failed"; }
[ "$(grep -c 'response: HTTP/1.1 200' "$T/tc.out")" = 3 ] || { cat "$T/tc.out" >&2; cg_fail "keep-alive"; }
gw_client "${TC[@]}" --request "$T/ping.req" --sess-in "$T/sess" --expect-resumed >"$T/tc2.out" 2>&1 ||
    { cat "$T/tc2.out" >&2; cg_fail "tlsclient resumption failed"; }
echo "tlsclient: 3 keep-alive requests, resumed session answered"

# Admin listener and a reload (the old state is freed when its last user is done).
curl -sS --max-time 60 "http://127.0.0.1:$CG_ADMIN_PORT/metrics" >"$T/metrics" ||
    cg_fail "/metrics failed"
curl -sS --max-time 60 "http://127.0.0.1:$CG_ADMIN_PORT/healthz" >/dev/null || cg_fail "/healthz failed"
kill -HUP "$VG_PID"
for i in $(seq 1 300); do
	grep -q "reloaded (SIGHUP)" "$T/gw.log" && break
	sleep 0.1
done
grep -q "reloaded (SIGHUP)" "$T/gw.log" || cg_fail "SIGHUP reload not seen"
expect "after reload" "$(rpc vg-member '{"jsonrpc":"2.0","id":6,"method":"ping"}')" 200

# Revocation while running (CRL reload), then handshakes that fail: the revoked
# certificate and no certificate at all.
expect "before revocation" "$(rpc vg-revoked '{"jsonrpc":"2.0","id":7,"method":"ping"}')" 200
nrel=$(grep -c "reloaded (" "$T/gw.log")
"$CG_SRC/scripts/agent-revoke" --dir "$PKI" --agent vg-revoked >/dev/null 2>"$T/revoke.err" ||
    { cat "$T/revoke.err" >&2; cg_fail "agent-revoke failed"; }
for i in $(seq 1 300); do
	[ "$(grep -c "reloaded (" "$T/gw.log")" -gt "$nrel" ] && break
	sleep 0.1
done
gw_client --ca "$PKI/ca/ca.pem" --cert "$A/vg-revoked/cert.pem" --key "$A/vg-revoked/key.pem" \
    --timeout-ms 60000 --probe-ms 5000 --request "$T/ping.req" >"$T/tc3.out" 2>&1 || true
cg_assert_contains "$T/tc3.out" "handshake: failed"
gw_client --ca "$PKI/ca/ca.pem" --timeout-ms 60000 --probe-ms 5000 --request "$T/ping.req" \
    >"$T/tc4.out" 2>&1 || true
cg_assert_contains "$T/tc4.out" "handshake: failed"
echo "revoked certificate and missing certificate: handshake refused"

kill -TERM "$VG_PID"
rc=0
wait "$VG_PID" || rc=$?
grep -E "ERROR SUMMARY|definitely lost|indirectly lost|possibly lost|still reachable|suppressed:" \
    "$T/vg.log" | sed 's/^==[0-9]*== */valgrind: /'
if [ "$rc" -ne 0 ]; then
	echo "--- gateway log:" >&2
	tail -20 "$T/gw.log" >&2
	echo "--- valgrind log:" >&2
	grep -v "^==[0-9]*== *$" "$T/vg.log" | head -300 >&2
	[ "$rc" = 99 ] && cg_fail "valgrind found errors or definite/indirect leaks"
	cg_fail "certgate serve under valgrind exited with status $rc"
fi
grep -q "ERROR SUMMARY: 0 errors" "$T/vg.log" || cg_fail "valgrind reported errors"
cg_assert_contains "$T/gw.log" "stopped"
cg_pass
