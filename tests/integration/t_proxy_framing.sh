#!/bin/bash
# Proxy: request framing attacks and limits, sent as raw bytes over mTLS. Each gets
# its status (400, 413, 431, 408) with a JSON-RPC body and the connection closes;
# nothing of the attack reaches the upstream; the gateway keeps serving; pipelined
# keep-alive requests are answered in order.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
. "$HERE/gw.sh"
cg_setup

UP_PORT=$(cg_free_port)
LPORT=$(cg_free_port)
PKI=$T/pki
gw_tool_upstream "$UP_PORT" "$T/up.log"
gw_soft_pki "$PKI" "$LPORT" "http://127.0.0.1:$UP_PORT/" || cg_fail "soft PKI"
gw_soft_issue "$PKI" alice || cg_fail "issue"
python3 - "$PKI/certgate.json" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1]))
c["limits"].update({"max_body_bytes": 1000, "header_timeout_ms": 1000, "max_header_count": 50,
                    "body_timeout_ms": 1000, "idle_timeout_ms": 1000})
json.dump(c, open(sys.argv[1], "w"), indent=1)
EOF
gw_start "$PKI/certgate.json"
A=$PKI/agents/alice

cat >"$T/raw.py" <<'EOF'
# raw.py PORT CERT KEY CA FILE [WAIT_S]: sends FILE over mTLS, prints what comes back
# until the server closes (then "[closed]") or WAIT_S passes (then "[open]").
import socket, ssl, sys
port, cert, key, ca, path = sys.argv[1:6]
wait = float(sys.argv[6]) if len(sys.argv) > 6 else 5
ctx = ssl.create_default_context(cafile=ca)
ctx.check_hostname = False
ctx.load_cert_chain(cert, key)
t = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(port))), server_hostname="localhost")
t.sendall(open(path, "rb").read())
t.settimeout(wait)
out, state = b"", "[open]"
try:
    while True:
        b = t.recv(65536)
        if not b:
            state = "[closed]"
            break
        out += b
except socket.timeout:
    pass
except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
    state = "[closed]"
sys.stdout.write(out.decode("latin-1") + "\n" + state + "\n")
EOF

# attack NAME STATUS: sends $T/NAME.req, expects STATUS, a JSON-RPC body and a close.
attack() {
	local name=$1 want=$2
	python3 "$T/raw.py" "$LPORT" "$A/cert.pem" "$A/key.pem" "$PKI/ca/ca.pem" "$T/$name.req" \
	    >"$T/$name.out" 2>&1 || cg_fail "$name: client failed"
	head -1 "$T/$name.out" | grep -q "^HTTP/1.1 $want " ||
	    { cat "$T/$name.out" >&2; cg_fail "$name: expected $want"; }
	cg_assert_contains "$T/$name.out" '"jsonrpc":"2.0"'
	cg_assert_contains "$T/$name.out" "[closed]"
	cg_assert_contains "$T/$name.out" "Strict-Transport-Security:"
}
H='Host: localhost\r\nContent-Type: application/json\r\n'

printf "POST /echo HTTP/1.1\r\n${H}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nSMUGGLED" >"$T/clte.req"
attack clte 400
printf "POST /echo HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n" >"$T/tecl.req"
attack tecl 400
printf "POST /echo HTTP/1.1\r\n${H}Content-Length: 2\r\nContent-Length: 2\r\n\r\n{}" >"$T/dupcl.req"
attack dupcl 400
printf "POST /echo HTTP/1.1\r\n${H}Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n" >"$T/tegzip.req"
attack tegzip 400
printf "POST /echo HTTP/1.1\r\n${H}Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n" >"$T/tex.req"
attack tex 400
printf "POST /echo HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n" >"$T/badchunk.req"
attack badchunk 400
printf "POST /echo HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n2\r\n{}}\r\n0\r\n\r\n" >"$T/badchunk2.req"
attack badchunk2 400
printf "GET /echo HTTP/1.1\r\n${H}X-Fold: a\r\n b\r\n\r\n" >"$T/fold.req"
attack fold 400
printf "GET /echo HTTP/1.1\r\n${H}X-Cr: a\rb\r\n\r\n" >"$T/barecr.req"
attack barecr 400
printf "GET /echo HTTP/1.1\r\n${H}X-Nul: a\0b\r\n\r\n" >"$T/nul.req"
attack nul 400
printf "GET /echo\r\n\r\n" >"$T/http09.req"
attack http09 400
printf "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" >"$T/h2.req"
attack h2 400
printf "GET /%09000d HTTP/1.1\r\n${H}\r\n" 0 >"$T/longline.req"
attack longline 400
{ printf "GET /echo HTTP/1.1\r\n${H}"; for i in $(seq 1 40); do printf "X-Big-%d: %0500d\r\n" "$i" 0; done; printf "\r\n"; } >"$T/bighead.req"
attack bighead 431
{ printf "GET /echo HTTP/1.1\r\n${H}"; for i in $(seq 1 60); do printf "X-N-%d: 1\r\n" "$i"; done; printf "\r\n"; } >"$T/manyhead.req"
attack manyhead 431
printf "POST /echo HTTP/1.1\r\n${H}Content-Length: 5000\r\n\r\n{}" >"$T/bigcl.req"
attack bigcl 413
{ printf "POST /echo HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n"; for i in 1 2 3; do printf "200\r\n%0512d\r\n" 0; done; printf "0\r\n\r\n"; } >"$T/bigchunked.req"
attack bigchunked 413
# slowloris: headers never finish -> 408 after header_timeout_ms (1 s)
printf "GET /echo HTTP/1.1\r\n${H}X-Slow: 1\r\n" >"$T/slow.req"
attack slow 408
# slow body: announced 10 bytes, sent 2 -> 408 after body_timeout_ms (1 s)
printf "POST /echo HTTP/1.1\r\n${H}Content-Length: 10\r\n\r\n{}" >"$T/slowbody.req"
attack slowbody 408
cg_assert_not_contains "$T/up.log" "SMUGGLED"
cg_assert_not_contains "$T/up.log" "X-Fold"
[ ! -s "$T/up.log" ] || { cat "$T/up.log" >&2; cg_fail "an attack reached the upstream"; }

# pipelined keep-alive: three requests in one write, answered in order
B='{"jsonrpc":"2.0","id":1,"method":"ping"}'
printf "POST /echo?n=1 HTTP/1.1\r\n${H}Content-Length: ${#B}\r\n\r\n${B}GET /echo?n=2 HTTP/1.1\r\n${H}\r\nPOST /echo?n=3 HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n4\r\n{\"js\r\n$(printf '%x' $((${#B} - 4)))\r\n${B:4}\r\n0\r\n\r\n" >"$T/pipe.req"
python3 "$T/raw.py" "$LPORT" "$A/cert.pem" "$A/key.pem" "$PKI/ca/ca.pem" "$T/pipe.req" >"$T/pipe.out"
cg_assert_eq "$(grep -o 'HTTP/1.1 200 OK' "$T/pipe.out" | wc -l)" 3 "pipelined responses"
cg_assert_eq "$(grep -o '"path":"/echo?n=[0-9]"' "$T/pipe.out" | tr -d '\n')" \
    '"path":"/echo?n=1""path":"/echo?n=2""path":"/echo?n=3"' "pipelined order"
cg_assert_contains "$T/pipe.out" "[closed]"
cg_assert_eq "$(grep -c '"body_len":40' "$T/up.log")" 2 "re-framed request bodies"
grep -q 'Transfer-Encoding' "$T/up.log" && cg_fail "Transfer-Encoding forwarded upstream"

# keep-alive idle timeout (1 s): answered, then closed quietly
printf "GET /echo?idle=1 HTTP/1.1\r\n${H}\r\n" >"$T/idle.req"
python3 "$T/raw.py" "$LPORT" "$A/cert.pem" "$A/key.pem" "$PKI/ca/ca.pem" "$T/idle.req" 4 >"$T/idle.out"
cg_assert_eq "$(grep -o 'HTTP/1.1 [0-9]*' "$T/idle.out" | tr '\n' ' ')" "HTTP/1.1 200 " "idle: one response only"
cg_assert_contains "$T/idle.out" "[closed]"

# the gateway still serves
st=$(curl -sS --max-time 5 --cacert "$PKI/ca/ca.pem" --cert "$A/cert.pem" --key "$A/key.pem" \
    -o /dev/null -w '%{http_code}' "https://localhost:$LPORT/echo" -d "$B")
cg_assert_eq "$st" 200 "good request after the attacks"
gw_stop
n=$(grep -c '"decision":"deny"' "$PKI/audit.jsonl" || true)
cg_assert_eq "$n" 19 "denied attacks in the audit log"
cg_pass
