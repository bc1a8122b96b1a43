#!/bin/bash
# Proxy: the audit log policy and revocation on an open connection.
# - audit.on_failure = refuse: once an audit write failed (log on /dev/full), requests
#   are refused with 503 and a JSON-RPC error instead of being forwarded unaudited;
# - audit.on_failure = serve: requests keep flowing;
# - a certificate revoked while its keep-alive connection is open: the next request on
#   that connection gets no response and the connection closes; the audit log records
#   the refusal (decision deny, reason revoked).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
. "$HERE/gw.sh"
cg_setup
[ -w /dev/full ] || { echo "SKIP: no /dev/full"; cg_pass; }

UP_PORT=$(cg_free_port)
LPORT=$(cg_free_port)
PKI=$T/pki
gw_tool_upstream "$UP_PORT" "$T/up.log"
gw_soft_pki "$PKI" "$LPORT" "http://127.0.0.1:$UP_PORT/" || cg_fail "soft PKI"
gw_soft_issue "$PKI" alice || cg_fail "issue alice"
gw_soft_issue "$PKI" bob || cg_fail "issue bob"
setcfg() {
	python3 - "$PKI/certgate.json" "$1" "$2" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1]))
c["audit"] = {"file": sys.argv[2], "on_failure": sys.argv[3]}
json.dump(c, open(sys.argv[1], "w"), indent=1)
EOF
}
URL=https://localhost:$LPORT
B='{"jsonrpc":"2.0","id":3,"method":"ping"}'
cu() {
	local who=$1
	shift
	curl -sS --max-time 10 --cacert "$PKI/ca/ca.pem" --cert "$PKI/agents/$who/cert.pem" \
	    --key "$PKI/agents/$who/key.pem" "$@"
}

# --- refuse ------------------------------------------------------------------------
setcfg /dev/full refuse
gw_start "$PKI/certgate.json"
cu alice -o /dev/null "$URL/mcp" -d "$B" || cg_fail "first request"
st=$(cu alice -o "$T/r503.b" -w '%{http_code}' "$URL/mcp" -d "$B")
cg_assert_eq "$st" 503 "request while the audit log fails"
cg_assert_contains "$T/r503.b" '"id":3'
cg_assert_contains "$T/r503.b" 'audit'
n=$(grep -c '"method":"POST"' "$T/up.log" || true)
cg_assert_eq "$n" 1 "requests forwarded while the audit log failed"
gw_stop

# --- serve ---------------------------------------------------------------------------
setcfg /dev/full serve
gw_start "$PKI/certgate.json"
for i in 1 2 3; do
	st=$(cu alice -o /dev/null -w '%{http_code}' "$URL/mcp" -d "$B")
	cg_assert_eq "$st" 200 "fail-open request $i"
done
gw_stop

# --- revoked while connected --------------------------------------------------------------
setcfg audit.jsonl refuse
gw_start "$PKI/certgate.json"
printf 'POST /mcp HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s' \
    "${#B}" "$B" >"$T/one.req"
python3 - "$LPORT" "$PKI/agents/bob/cert.pem" "$PKI/agents/bob/key.pem" "$PKI/ca/ca.pem" \
    "$T/one.req" "$T/revoke.flag" >"$T/keep.out" 2>&1 <<'EOF' &
import os, socket, ssl, sys, time
port, cert, key, ca, req, flag = sys.argv[1:7]
ctx = ssl.create_default_context(cafile=ca)
ctx.check_hostname = False
ctx.load_cert_chain(cert, key)
t = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(port))), server_hostname="localhost")
data = open(req, "rb").read()
t.sendall(data)
t.settimeout(5)
print("first:", t.recv(65536).split(b"\r\n")[0].decode())
open(flag, "w").close()
while os.path.exists(flag):     # the test revokes, then removes the flag
    time.sleep(0.05)
try:
    t.sendall(data)
    b = t.recv(65536)
    print("second:", b.split(b"\r\n")[0].decode() if b else "closed")
except (ssl.SSLError, OSError) as e:
    print("second: closed", type(e).__name__)
EOF
KPID=$!
cg_track_pid $KPID
for i in $(seq 1 50); do [ -e "$T/revoke.flag" ] && break; sleep 0.1; done
[ -e "$T/revoke.flag" ] || { cat "$T/keep.out" >&2; cg_fail "first request on the kept connection"; }
gw_soft_revoke "$PKI" bob || cg_fail "revoke bob"
sleep 3         # the README: enforced within 2 seconds
rm -f "$T/revoke.flag"
wait $KPID || true
cg_assert_contains "$T/keep.out" "first: HTTP/1.1 200"
cg_assert_contains "$T/keep.out" "second: closed"
st=$(cu alice -o /dev/null -w '%{http_code}' "$URL/mcp" -d "$B")
cg_assert_eq "$st" 200 "other agents unaffected"
gw_stop
python3 - "$PKI/audit.jsonl" <<'EOF' || { cat "$PKI/audit.jsonl" >&2; cg_fail "audit after revocation"; }
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
bob = [r for r in recs if r.get("agent") == "bob"]
assert bob[0]["decision"] == "allow" and bob[0]["status"] == 200, bob
# the request on the revoked connection, when it got as far as the proxy, is a denial
for r in bob[1:]:
    assert r["decision"] == "deny" and r.get("reason") == "revoked", r
EOF
cg_pass
