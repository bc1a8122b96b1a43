#!/usr/bin/env bash
# Hostile clients against one gateway (tests/hostile/hostile.py, one case per run):
# slow headers and bodies, silent and half handshakes, header floods, a 1 GiB
# Content-Length, smuggling (CL+TE), chunk-size overflow, NUL / bare CR in headers, a
# huge request line, HTTP/0.9, HTTP/2, TLS 1.0/1.1, weak cipher suites, a TLS 1.2
# renegotiation, a client certificate with a broken signature, one from a CA with the
# right name but another key, a 10,000-element batch and 100,000-deep JSON.
# After every case: the gateway is alive, a good client still gets a 200 from the
# upstream, and the audit log holds no "allow" for the hostile request.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/gw.sh"
cg_setup

HOSTILE=$CG_SRC/tests/hostile/hostile.py
# No __pycache__ in the source tree.
export PYTHONDONTWRITEBYTECODE=1
LIMIT_MS=2000

UPORT=$(cg_free_port)
cg_pki_init --upstream "http://127.0.0.1:$UPORT/mcp"
"$CG_SRC/scripts/agent-issue" --dir "$PKI" --agent bot --role member >/dev/null 2>"$T/issue.err" ||
    { cat "$T/issue.err" >&2; cg_fail "agent-issue failed"; }
python3 - "$PKI/certgate.json" "$LIMIT_MS" <<'EOF'
import json, sys
p, ms = sys.argv[1], int(sys.argv[2])
c = json.load(open(p))
c["limits"].update(handshake_timeout_ms=ms, header_timeout_ms=ms, body_timeout_ms=ms)
json.dump(c, open(p, "w"), indent=1)
EOF
TD=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("ca", {}).get("trust_domain", "certgate.local"))' "$PKI/certgate.json")

# --- forged client certificates ------------------------------------------------------------
# 1. The agent's own certificate with one byte of the CA's signature flipped.
mkdir -p "$T/badsig"
python3 - "$PKI/agents/bot/cert.pem" "$T/badsig/cert.pem" <<'EOF'
import base64, sys
pem = open(sys.argv[1]).read()
b64 = "".join(l for l in pem.splitlines() if l and not l.startswith("-----"))
der = bytearray(base64.b64decode(b64))
der[-3] ^= 0x01   # inside the signature value (last INTEGER of the ECDSA/RSA signature)
out = base64.encodebytes(bytes(der)).decode().replace("\n", "")
with open(sys.argv[2], "w") as f:
    f.write("-----BEGIN CERTIFICATE-----\n")
    for i in range(0, len(out), 64):
        f.write(out[i:i + 64] + "\n")
    f.write("-----END CERTIFICATE-----\n")
EOF
cp "$PKI/agents/bot/key.pem" "$T/badsig/key.pem"
openssl verify -CAfile "$PKI/ca/ca.pem" "$T/badsig/cert.pem" >/dev/null 2>&1 &&
    cg_fail "the flipped certificate still verifies: fix the test"

# 2. A CA with the same subject and key identifier as the real one but its own key,
#    issuing a certificate for the same agent identity.
mkdir -p "$T/fakeca"
subj=$(openssl x509 -in "$PKI/ca/ca.pem" -noout -subject -nameopt compat | sed 's/^subject=//')
ski=$(openssl x509 -in "$PKI/ca/ca.pem" -noout -ext subjectKeyIdentifier | sed -n 2p | tr -d ' :')
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -keyout "$T/fakeca/ca.key" -out "$T/fakeca/ca.pem" -subj "$subj" \
    -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -addext "subjectKeyIdentifier=$(echo "$ski" | sed 's/../&:/g; s/:$//')" 2>"$T/fakeca.err" ||
    { cat "$T/fakeca.err" >&2; cg_fail "cannot make the look-alike CA"; }
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=bot" \
    -keyout "$T/fakeca/key.pem" -out "$T/fakeca/req.pem" 2>>"$T/fakeca.err"
cat >"$T/fakeca/ext.cnf" <<EOF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth
subjectAltName=URI:spiffe://$TD/agent/bot
authorityKeyIdentifier=keyid
EOF
openssl x509 -req -in "$T/fakeca/req.pem" -CA "$T/fakeca/ca.pem" -CAkey "$T/fakeca/ca.key" \
    -CAcreateserial -days 1 -sha256 -extfile "$T/fakeca/ext.cnf" \
    -out "$T/fakeca/cert.pem" 2>>"$T/fakeca.err" ||
    { cat "$T/fakeca.err" >&2; cg_fail "cannot issue from the look-alike CA"; }
[ "$(openssl x509 -in "$T/fakeca/cert.pem" -noout -issuer -nameopt compat)" = \
  "$(openssl x509 -in "$PKI/agents/bot/cert.pem" -noout -issuer -nameopt compat)" ] ||
    cg_fail "look-alike CA: issuer names differ: fix the test"

gw_upstream_start "$UPORT"
gw_start "$PKI/certgate.json" "$T/gw.log"
AUDIT=$PKI/audit.jsonl

allows() {
	if [ -f "$AUDIT" ]; then
		grep -c '"decision":"allow"' "$AUDIT" || true
	else
		echo 0
	fi
}

alive() {
	kill -0 "$GW_PID" 2>/dev/null || { tail -30 "$T/gw.log" >&2; cg_fail "gateway died: $*"; }
}

# good NAME: a good client gets a 200 from the upstream; waits for its audit line so
# the next case starts from a settled count.
good() {
	local before code i
	before=$(allows)
	code=$(curl -sS --max-time 10 --cacert "$PKI/ca/ca.pem" \
	    --cert "$PKI/agents/bot/cert.pem" --key "$PKI/agents/bot/key.pem" \
	    -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' \
	    -d '{"jsonrpc":"2.0","id":1,"method":"tools/list"}' -o "$T/good.body" -w '%{http_code}' \
	    "https://127.0.0.1:$GW_PORT/mcp" 2>"$T/good.err") || true
	[ "$code" = 200 ] || {
		cat "$T/good.err" >&2
		tail -20 "$T/gw.log" >&2
		cg_fail "after $1: a good client got '$code' instead of 200"
	}
	cg_assert_contains "$T/good.body" '"agent": "bot"'
	for i in $(seq 1 20); do
		[ "$(allows)" -gt "$before" ] && return 0
		sleep 0.1
	done
	cg_fail "after $1: the good request left no allow line in the audit log"
}

# check_after NAME [ALLOW_OK]: the gateway survived NAME and allowed nothing for it.
check_after() {
	local name=$1 allow_ok=${2:-0} now
	alive "after $name"
	sleep 0.3
	now=$(allows)
	if [ "$allow_ok" != 1 ]; then
		[ "$now" = "$BEFORE" ] || {
			tail -n $((now - BEFORE + 2)) "$AUDIT" >&2
			cg_fail "$name: the audit log gained $((now - BEFORE)) allow line(s)"
		}
	fi
	# The batch is a legitimate request; every other marker must never be allowed.
	if [ "$name" != batch_10k ] && [ -f "$AUDIT" ] &&
	    grep '"decision":"allow"' "$AUDIT" | grep -qF "hostile_$name"; then
		cg_fail "$name: the audit log allowed the hostile request"
	fi
	good "$name"
}

run() {
	local name=$1 allow_ok=${2:-0} rc=0
	shift 2 || shift $#
	BEFORE=$(allows)
	python3 "$HOSTILE" --port "$GW_PORT" --ca "$PKI/ca/ca.pem" \
	    --cert "$PKI/agents/bot/cert.pem" --key "$PKI/agents/bot/key.pem" \
	    --header-timeout-ms "$LIMIT_MS" --body-timeout-ms "$LIMIT_MS" \
	    --handshake-timeout-ms "$LIMIT_MS" "$@" "$name" >"$T/case.out" 2>&1 || rc=$?
	cat "$T/case.out"
	if [ "$rc" = 77 ]; then
		SKIPPED+=("$name")
	elif [ "$rc" != 0 ]; then
		tail -10 "$T/gw.log" >&2
		cg_fail "case $name failed"
	fi
	check_after "$name" "$allow_ok"
}

SKIPPED=()
good start
for c in slowloris slow_body no_handshake half_clienthello idle_after_handshake many_headers \
    huge_header huge_content_length cl_te dup_content_length te_obfuscated chunk_overflow \
    nul_header bare_cr_header long_request_line \
    http09 h2_preface tls10 tls11 weak_ciphers raw_weak_hello nested_json; do
	run "$c"
done
run bad_cert 0 --present "$T/badsig/cert.pem" "$T/badsig/key.pem"
run bad_cert 0 --present "$T/fakeca/cert.pem" "$T/fakeca/key.pem"
# The flood case makes one good request of its own among the slow connections.
run slowloris_flood 1
# A big batch is legitimate for a member: it may be allowed, but must get an answer.
run batch_10k 1

# --- renegotiation (python's ssl has no renegotiate: openssl s_client's "R") -----------
BEFORE=$(allows)
{ echo R; sleep 1; printf 'GET /mcp?hostile_reneg HTTP/1.1\r\nHost: localhost\r\n\r\n'; sleep 2; } |
    timeout 20 openssl s_client -connect "127.0.0.1:$GW_PORT" -tls1_2 -msg \
    -cert "$PKI/agents/bot/cert.pem" -key "$PKI/agents/bot/key.pem" -CAfile "$PKI/ca/ca.pem" \
    >"$T/reneg.out" 2>&1 || true
grep -q RENEGOTIATING "$T/reneg.out" || { cat "$T/reneg.out" >&2; cg_fail "renegotiation: s_client did not try"; }
n=$(grep -c '<<< .*ServerHello$' "$T/reneg.out" || true)
[ "$n" = 1 ] || cg_fail "renegotiation: the gateway sent $n ServerHellos (a second handshake happened)"
if ! grep -Eq 'no_renegotiation|no renegotiation|closed|errno|write:errno' "$T/reneg.out"; then
	sed -n '/RENEGOTIATING/,$p' "$T/reneg.out" | grep -E '^(<<<|>>>)' >&2
	cg_fail "renegotiation: neither a no_renegotiation alert nor a close"
fi
if grep -q '^HTTP/1.1 200' "$T/reneg.out"; then
	cg_fail "renegotiation: the request after the renegotiation attempt was served"
fi
echo "ok renegotiation: $(grep -Eo 'warning no_renegotiation|fatal [a-z_]+' "$T/reneg.out" | head -2 | tr '\n' ' ')"
check_after reneg

# Every hostile connection was closed and accounted for: nothing leaks.
active=
for i in $(seq 1 50); do
	active=$(curl -sS --max-time 5 "http://127.0.0.1:$CG_ADMIN_PORT/metrics" |
	    awk '$1 == "certgate_connections_active" { print $2 }')
	[ "$active" = 0 ] && break
	sleep 0.1
done
[ "$active" = 0 ] || cg_fail "certgate_connections_active is '$active' after every client left"

[ "${#SKIPPED[@]}" = 0 ] || echo "skipped: ${SKIPPED[*]}"
gw_stop
cg_pass
