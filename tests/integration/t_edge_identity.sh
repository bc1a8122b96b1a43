#!/bin/bash
# The identity forms of an enterprise edge: PROXY protocol v2 from a trusted load
# balancer (HAProxy, send-proxy-v2) and RFC 9440 Client-Cert / Client-Cert-Chain.
#
# HAProxy (TCP mode) connects to the gateway from 127.0.0.5, the one trusted address;
# clients reach HAProxy from 127.0.0.3 and 127.0.0.4. Checked: the real client address
# reaches the audit log, X-Forwarded-For and the per-IP limit (the balancer's own
# address is not counted); Client-Cert is the DER of the client certificate and
# Client-Cert-Chain the DER of the CA, on a full and on a resumed handshake, and a
# client's own copies never pass; a PROXY header from an untrusted address is refused,
# as are a trusted address without one, version 1, a partial header (handshake
# timeout); LOCAL and large TLVs are accepted.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
. "$HERE/gw.sh"
cg_setup
command -v haproxy >/dev/null || cg_fail "haproxy not installed (scripts/test installs it)"

UP_PORT=$(cg_free_port)
LPORT=$(cg_free_port)
HPORT=$(cg_free_port)
PKI=$T/pki
PPC=(python3 "$CG_SRC/tests/tools/ppclient.py")
gw_tool_upstream "$UP_PORT"
gw_soft_pki "$PKI" "$LPORT" "http://127.0.0.1:$UP_PORT/" || cg_fail "soft PKI"
gw_soft_issue "$PKI" alice || cg_fail "issue alice"
python3 -c '
import json, sys
c = json.load(open(sys.argv[1]))
c["upstream"]["client_cert_header"] = "both"
c["proxy_protocol"] = {"trusted": ["127.0.0.5/32"]}
c["limits"].update({"max_connections_per_ip": 2, "handshake_timeout_ms": 1500})
json.dump(c, open(sys.argv[1], "w"), indent=1)' "$PKI/certgate.json"
gw_start "$PKI/certgate.json"

printf '%s\n' "global" "    maxconn 100" "defaults" "    mode tcp" \
    "    timeout connect 5s" "    timeout client 30s" "    timeout server 30s" \
    "frontend fe" "    bind 127.0.0.1:$HPORT" "    default_backend be" "backend be" \
    "    server gw 127.0.0.1:$LPORT send-proxy-v2 source 127.0.0.5" >"$T/haproxy.cfg"
haproxy -c -f "$T/haproxy.cfg" >"$T/haproxy.check" 2>&1 || {
	cat "$T/haproxy.check" >&2
	cg_fail "haproxy config check"
}
haproxy -db -f "$T/haproxy.cfg" >"$T/haproxy.log" 2>&1 &
cg_track_pid $!
for i in $(seq 1 50); do
	(exec 3<>"/dev/tcp/127.0.0.1/$HPORT") 2>/dev/null && break
	sleep 0.1
done

A=$PKI/agents/alice
CLI=(--cert "$A/cert.pem" --key "$A/key.pem" --ca "$PKI/ca/ca.pem")
jq_() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$@"; }
b64der() { openssl x509 -in "$1" -outform DER | base64 -w0; }
CERT_B64=$(b64der "$A/cert.pem")
CA_B64=$(b64der "$PKI/ca/ca.pem")

# --- through HAProxy: the client's address, RFC 9440 fields --------------------------
st=$(curl -sS --max-time 10 --interface 127.0.0.3 --cacert "$PKI/ca/ca.pem" \
    --cert "$A/cert.pem" --key "$A/key.pem" -o "$T/via.b" -w '%{http_code}' \
    -H 'Client-Cert: :ZXZpbA==:' -H 'Client-Cert-Chain: :ZXZpbA==:' \
    -H 'client_cert: :eA==:' "https://localhost:$HPORT/echo")
cg_assert_eq "$st" 200 "request through HAProxy"
cg_assert_eq "$(jq_ "$T/via.b" 'd["headers"]["X-Forwarded-For"]')" 127.0.0.3 \
    "X-Forwarded-For is the client behind the balancer"
cg_assert_eq "$(jq_ "$T/via.b" 'd["headers"]["Client-Cert"]')" ":$CERT_B64:" \
    "Client-Cert is the DER of the client certificate"
cg_assert_eq "$(jq_ "$T/via.b" 'd["headers"]["Client-Cert-Chain"]')" ":$CA_B64:" \
    "Client-Cert-Chain is the DER of the CA"
cg_assert_eq "$(jq_ "$T/via.b" 'sum(1 for n,v in d["header_list"] if n.lower().replace("_","-") in ("client-cert","client-cert-chain"))')" 2 \
    "one Client-Cert and one Client-Cert-Chain (the client's dropped)"
case $(jq_ "$T/via.b" 'd["headers"]["X-Forwarded-Client-Cert"]') in
Hash=*URI=spiffe://certgate.local/agent/alice) ;;
*) cg_fail "XFCC missing with client_cert_header both" ;;
esac
for i in $(seq 1 50); do
	grep -q '"peer":"127.0.0.3:' "$PKI/audit.jsonl" 2>/dev/null && break
	sleep 0.1
done
cg_assert_contains "$PKI/audit.jsonl" '"peer":"127.0.0.3:'

# resumed: the chain is built again and is the same
"${PPC[@]}" --connect "127.0.0.1:$HPORT" --source 127.0.0.3 "${CLI[@]}" --resume >"$T/res.json"
python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
assert len(r) == 2 and r[0]["ok"] and r[1]["ok"], r
assert not r[0]["resumed"] and r[1]["resumed"], "second connection did not resume"
for x in r:
    h = x["body"]["headers"]
    assert h["Client-Cert"] == ":%s:" % sys.argv[2], h
    assert h["Client-Cert-Chain"] == ":%s:" % sys.argv[3], h
    assert h["X-Forwarded-For"] == "127.0.0.3", h
' "$T/res.json" "$CERT_B64" "$CA_B64" || cg_fail "resumed session fields"

# --- per-IP limits count the client, not the balancer --------------------------------
"${PPC[@]}" --connect "127.0.0.1:$HPORT" --source 127.0.0.3 "${CLI[@]}" --hold 4 >"$T/h1" &
h1=$!
"${PPC[@]}" --connect "127.0.0.1:$HPORT" --source 127.0.0.3 "${CLI[@]}" --hold 4 >"$T/h2" &
h2=$!
sleep 1.5
"${PPC[@]}" --connect "127.0.0.1:$HPORT" --source 127.0.0.3 "${CLI[@]}" >"$T/h3"
"${PPC[@]}" --connect "127.0.0.1:$HPORT" --source 127.0.0.4 "${CLI[@]}" >"$T/h4"
wait $h1 $h2
cg_assert_eq "$(jq_ "$T/h1" 'd["ok"]')$(jq_ "$T/h2" 'd["ok"]')" TrueTrue "two held connections"
cg_assert_eq "$(jq_ "$T/h3" 'd["ok"]')" False "a third from 127.0.0.3 is over max_connections_per_ip"
cg_assert_eq "$(jq_ "$T/h4" 'd["ok"]')" True "127.0.0.4 is not limited by 127.0.0.3's connections"

# --- direct connections ----------------------------------------------------------------
# untrusted without a header: served, with its own address
"${PPC[@]}" --connect "127.0.0.1:$LPORT" --source 127.0.0.1 "${CLI[@]}" >"$T/d1"
cg_assert_eq "$(jq_ "$T/d1" 'd["body"]["headers"]["X-Forwarded-For"]')" 127.0.0.1 "direct client"
# untrusted with a PROXY v2 header: refused, named in the log
"${PPC[@]}" --connect "127.0.0.1:$LPORT" --source 127.0.0.1 --proxy v2 --pp-src 10.9.9.9:1 \
    "${CLI[@]}" >"$T/d2"
cg_assert_eq "$(jq_ "$T/d2" 'd["ok"]')" False "PROXY header from an untrusted address"
gw_wait_log "refused 127\.0\.0\.1:[0-9]+: a PROXY protocol header from an address not in proxy_protocol.trusted" ||
	cg_fail "no log line for the untrusted PROXY header"
# trusted without a header
"${PPC[@]}" --connect "127.0.0.1:$LPORT" --source 127.0.0.5 "${CLI[@]}" >"$T/d3"
cg_assert_eq "$(jq_ "$T/d3" 'd["ok"]')" False "trusted address without a PROXY header"
gw_wait_log "refused 127\.0\.0\.5:[0-9]+: the connection does not start with a PROXY protocol v2 header" ||
	cg_fail "no log line for the missing PROXY header"
# trusted, version 1
"${PPC[@]}" --connect "127.0.0.1:$LPORT" --source 127.0.0.5 --proxy v1 "${CLI[@]}" >"$T/d4"
cg_assert_eq "$(jq_ "$T/d4" 'd["ok"]')" False "PROXY v1"
gw_wait_log "only version 2 is accepted" || cg_fail "no log line for PROXY v1"
# trusted, LOCAL (the balancer's own check): its own address stands
"${PPC[@]}" --connect "127.0.0.1:$LPORT" --source 127.0.0.5 --proxy local "${CLI[@]}" >"$T/d5"
cg_assert_eq "$(jq_ "$T/d5" 'd["body"]["headers"]["X-Forwarded-For"]')" 127.0.0.5 "LOCAL"
# trusted, v2 with 3000 bytes of TLVs and an IPv6 client
"${PPC[@]}" --connect "127.0.0.1:$LPORT" --source 127.0.0.5 --proxy v2 \
    --pp-src '2001:db8::7:40000' --tlv 3000 "${CLI[@]}" >"$T/d6"
cg_assert_eq "$(jq_ "$T/d6" 'd["body"]["headers"]["X-Forwarded-For"]')" 2001:db8::7 "v2 with TLVs"
# trusted, a header cut short: the handshake timeout ends it, the gateway stays up
"${PPC[@]}" --connect "127.0.0.1:$LPORT" --source 127.0.0.5 --proxy partial "${CLI[@]}" >"$T/d7"
cg_assert_eq "$(jq_ "$T/d7" 'd["ok"]')" False "partial PROXY header"
# closed by the 1.5 s handshake timeout, not before it and long before the client's 10 s
cg_assert_eq "$(jq_ "$T/d7" '1.4 <= d["closed_after"] < 9')" True "closed by the handshake timeout"
gw_wait_log "handshake from 127\.0\.0\.5:[0-9]+ timed out" 5 || cg_fail "partial header not timed out"

# still serving
"${PPC[@]}" --connect "127.0.0.1:$HPORT" --source 127.0.0.4 "${CLI[@]}" >"$T/last"
cg_assert_eq "$(jq_ "$T/last" 'd["ok"]')" True "served after the refusals"
gw_stop
cg_pass
