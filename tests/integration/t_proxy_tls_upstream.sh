#!/bin/bash
# Proxy: an https upstream (openssl s_server -WWW, HTTP/1.0, close-delimited body) is
# verified against upstream.ca; its body reaches the client re-framed as chunked; an
# upstream certificate that does not verify (system store) -> 502.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
. "$HERE/gw.sh"
cg_setup

UP_PORT=$(cg_free_port)
LPORT=$(cg_free_port)
PKI=$T/pki
gw_soft_pki "$PKI" "$LPORT" "https://localhost:$UP_PORT/" || cg_fail "soft PKI"
gw_soft_issue "$PKI" alice || cg_fail "issue"
mkdir -p "$T/www"
echo "hello over tls" >"$T/www/hello.txt"
head -c 6000000 /dev/urandom >"$T/www/big.bin"
(cd "$T/www" && exec openssl s_server -quiet -accept "127.0.0.1:$UP_PORT" \
    -cert "$PKI/server/cert.pem" -key "$PKI/server/key.pem" -WWW) >/dev/null 2>&1 &
cg_track_pid $!
for i in $(seq 1 50); do (exec 3<>"/dev/tcp/127.0.0.1/$UP_PORT") 2>/dev/null && break; sleep 0.1; done
setca() {
	python3 - "$PKI/certgate.json" "$1" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1]))
if sys.argv[2]:
    c["upstream"]["ca"] = sys.argv[2]
else:
    c["upstream"].pop("ca", None)
json.dump(c, open(sys.argv[1], "w"), indent=1)
EOF
}
A=$PKI/agents/alice
cu() {
	curl -sS --max-time 10 --cacert "$PKI/ca/ca.pem" --cert "$A/cert.pem" --key "$A/key.pem" "$@"
}

setca ca/ca.pem
gw_start "$PKI/certgate.json"
st=$(cu -D "$T/h" -o "$T/b" -w '%{http_code}' "https://localhost:$LPORT/hello.txt")
cg_assert_eq "$st" 200 "https upstream"
cg_assert_eq "$(cat "$T/b")" "hello over tls" "body"
grep -qi '^Transfer-Encoding: chunked' "$T/h" || cg_fail "close-delimited body not re-chunked"
# A slow client and a close-delimited body far larger than the gateway's output high
# watermark (backpressure pauses the upstream, whose close may come meanwhile): every
# byte arrives.
st=$(cu --max-time 60 --limit-rate 3M -o "$T/big" -w '%{http_code}' "https://localhost:$LPORT/big.bin")
cg_assert_eq "$st" 200 "large close-delimited body to a slow client"
cg_assert_eq "$(sha256sum <"$T/big")" "$(sha256sum <"$T/www/big.bin")" "large body intact"
gw_stop

setca ""
gw_start "$PKI/certgate.json"
st=$(cu -o "$T/b2" -w '%{http_code}' "https://localhost:$LPORT/hello.txt")
cg_assert_eq "$st" 502 "unverified upstream certificate"
gw_stop
cg_pass
