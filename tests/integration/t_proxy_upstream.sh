#!/bin/bash
# Proxy, upstream side: keep-alive pool reuse; event streams arrive event by event
# and are not cut by the response timeout; stream idle timeout; a client leaving
# mid-stream closes the upstream request; chunked and close-delimited bodies; a
# large body intact through backpressure; upstream hanging -> 504, malformed -> 502,
# closing mid-response -> truncated client response; upstream down -> 502.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
. "$HERE/gw.sh"
cg_setup

UP_PORT=$(cg_free_port)
LPORT=$(cg_free_port)
PKI=$T/pki
gw_tool_upstream "$UP_PORT" "$T/up.log"
UP_PID=$GW_TOOL_UP_PID
gw_soft_pki "$PKI" "$LPORT" "http://127.0.0.1:$UP_PORT/" || cg_fail "soft PKI"
gw_soft_issue "$PKI" alice || cg_fail "issue"
python3 - "$PKI/certgate.json" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1]))
c["limits"].update({"upstream_response_timeout_ms": 1000, "stream_idle_timeout_ms": 1500,
                    "max_body_bytes": 65536})
json.dump(c, open(sys.argv[1], "w"), indent=1)
EOF
gw_start "$PKI/certgate.json"
A=$PKI/agents/alice
URL=https://localhost:$LPORT
cu() {
	curl -sS --cacert "$PKI/ca/ca.pem" --cert "$A/cert.pem" --key "$A/key.pem" "$@"
}
stat_of() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

# --- pool: many client connections, few upstream connections -------------------------
c0=$(cu "$URL/stats" | stat_of connections_total)
for i in $(seq 1 20); do
	cu -o /dev/null "$URL/echo" -d '{"jsonrpc":"2.0","id":1,"method":"ping"}' || cg_fail "request $i"
done
c1=$(cu "$URL/stats" | stat_of connections_total)
[ $((c1 - c0)) -le 3 ] || cg_fail "upstream connections not reused: $c0 -> $c1"

# --- event stream: event by event, longer than the response timeout ----------------------
cu -N --max-time 10 "$URL/sse?n=3&delay_ms=700" | while IFS= read -r line; do
	printf '%s %s\n' "$(date +%s%N)" "$line"
done >"$T/sse.out"
cg_assert_eq "$(grep -c 'data: {"seq"' "$T/sse.out")" 3 "events received"
python3 - "$T/sse.out" <<'EOF' || cg_fail "events were not streamed as they came"
import sys
t = [int(l.split()[0]) for l in open(sys.argv[1]) if '"seq"' in l]
# 700 ms between events upstream: each must arrive on its own, not all at the end
assert t[1] - t[0] > 400e6 and t[2] - t[1] > 400e6, t
EOF

# --- stream idle timeout (1.5 s) cuts a silent stream; the client sees truncation ----------
rc=0
cu -N --max-time 10 -o "$T/idle.out" "$URL/sse?n=2&delay_ms=3000" || rc=$?
[ "$rc" -eq 18 ] || [ "$rc" -eq 56 ] || cg_fail "idle stream: curl rc $rc (want truncation)"
cg_assert_contains "$T/idle.out" '"seq":0'
cg_assert_not_contains "$T/idle.out" '"seq":1'

# --- client leaves mid-stream: the upstream request is closed -----------------------------
a0=$(cu "$URL/stats" | stat_of sse_aborted)
rc=0
cu -N --max-time 1 -o /dev/null "$URL/sse?n=50&delay_ms=200" || rc=$?
cg_assert_eq "$rc" 28 "curl left by timeout"
for i in $(seq 1 30); do
	a1=$(cu "$URL/stats" | stat_of sse_aborted)
	[ "$a1" -gt "$a0" ] && break
	sleep 0.1
done
[ "$a1" -gt "$a0" ] || cg_fail "upstream stream not closed after the client left"
cg_assert_contains "$T/up.log" '"event":"sse-aborted"'

# --- chunked and HTTP/1.0 ----------------------------------------------------------------
cu -D "$T/ch.h" -o "$T/ch.b" "$URL/chunked"
cg_assert_eq "$(cat "$T/ch.b")" "alpha,beta,gamma" "chunked body"
grep -qi '^Transfer-Encoding: chunked' "$T/ch.h" || cg_fail "chunked response not chunked"
cu --http1.0 -D "$T/ch10.h" -o "$T/ch10.b" "$URL/chunked"
cg_assert_eq "$(cat "$T/ch10.b")" "alpha,beta,gamma" "chunked body to an HTTP/1.0 client"
grep -qi '^Transfer-Encoding' "$T/ch10.h" && cg_fail "chunked sent to an HTTP/1.0 client"

# --- a large body through a slow reader (backpressure), intact ------------------------
cu --limit-rate 4M -o "$T/big.b" "$URL/big?n=6000000"
cg_assert_eq "$(wc -c <"$T/big.b")" 6000000 "large body size"
[ -z "$(tr -d x <"$T/big.b" | head -c 1)" ] || cg_fail "large body corrupted"

# --- upstream failures ---------------------------------------------------------------------
st=$(cu -o "$T/hang.b" -w '%{http_code}' --max-time 10 "$URL/hang" -d '{"jsonrpc":"2.0","id":77,"method":"ping"}')
cg_assert_eq "$st" 504 "hanging upstream"
cg_assert_contains "$T/hang.b" '"id":77'
cg_assert_contains "$T/hang.b" '-32003'
st=$(cu -o "$T/bad.b" -w '%{http_code}' "$URL/bad")
cg_assert_eq "$st" 502 "malformed upstream response"
rc=0
cu -o "$T/close.b" "$URL/close" || rc=$?
cg_assert_eq "$rc" 18 "upstream closing mid-response: client sees truncation"
st=$(cu -o /dev/null -w '%{http_code}' "$URL/echo" -d '{}')
cg_assert_eq "$st" 400 "still serving (non JSON-RPC body refused)"

kill -TERM "$UP_PID"
wait "$UP_PID" 2>/dev/null || true
st=$(cu -o "$T/down.b" -w '%{http_code}' --max-time 10 "$URL/mcp" -d '{"jsonrpc":"2.0","id":5,"method":"ping"}')
cg_assert_eq "$st" 502 "upstream down"
cg_assert_contains "$T/down.b" '"id":5'

gw_stop
python3 - "$PKI/audit.jsonl" <<'EOF' || cg_fail "audit records"
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
st = [r["status"] for r in recs]
assert st.count(504) == 1 and st.count(502) == 2, st
assert all(r.get("agent") == "alice" for r in recs)
sse = [r for r in recs if r["method"] == "GET" and r["status"] == 200 and r["duration_ms"] > 1300]
assert sse, "long stream audited with its duration"
EOF
cg_pass
