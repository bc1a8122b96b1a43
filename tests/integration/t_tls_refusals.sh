#!/bin/bash
# The listener's TLS policy: a good agent completes the handshake; no certificate, a
# certificate from another CA, a revoked one, an expired or not-yet-valid one and
# TLS 1.0/1.1 are refused at the handshake, and the log says why. Also `certgate
# check` on good and broken configurations, and the admin listener.
#
# Expired certificates: the token CA (certgate ca issue) cannot backdate, so that case
# runs against a second gateway whose CA is a software CA made with `openssl ca`
# (gw_soft_pki): the code path under test is the gateway's chain verification, which
# does not care where the CA key lives.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
. "$HERE/gw.sh"
cg_setup
cg_pki_init

issue() {
	"$CG_SRC/scripts/agent-issue" --dir "$PKI" --agent "$1" --role admin >/dev/null 2>"$T/issue.err" ||
	    { cat "$T/issue.err" >&2; cg_fail "agent-issue $1 failed"; }
}

# expect_hs ok|failed NAME ARGS... : runs tlsclient, asserts the handshake verdict.
expect_hs() {
	local want=$1 name=$2 rc=0
	shift 2
	gw_client "$@" >"$T/$name.out" 2>&1 || rc=$?
	if [ "$want" = ok ]; then
		[ "$rc" -eq 0 ] || { cat "$T/$name.out" >&2; cg_fail "$name: handshake should succeed (rc $rc)"; }
		cg_assert_contains "$T/$name.out" "handshake: ok"
	else
		[ "$rc" -eq 1 ] || { cat "$T/$name.out" >&2; cg_fail "$name: handshake should fail (rc $rc)"; }
		cg_assert_contains "$T/$name.out" "handshake: failed"
	fi
}

issue good
issue gone
A=$PKI/agents
CA=$PKI/ca/ca.pem

# --- certgate check -------------------------------------------------------------
"$CERTGATE_BIN" check -c "$PKI/certgate.json" >"$T/check.out" 2>"$T/check.err" ||
    { cat "$T/check.err" >&2; cg_fail "check on a good configuration failed"; }
cg_assert_contains "$T/check.out" "configuration OK"

python3 - "$PKI/certgate.json" "$T/bad1.json" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1]))
c["tls"]["cert"] = "server/missing.pem"
json.dump(c, open(sys.argv[2], "w"))
EOF
# Relative paths resolve against the config's directory: keep it next to the PKI.
cp "$T/bad1.json" "$PKI/bad1.json"
cg_expect_fail nonzero "$CERTGATE_BIN" check -c "$PKI/bad1.json"
cg_assert_contains "$T/err" "missing.pem"
cg_assert_not_contains "$T/out" "configuration OK"

printf '{ "listen": ' >"$PKI/bad2.json"
cg_expect_fail nonzero "$CERTGATE_BIN" check -c "$PKI/bad2.json"
cg_assert_contains "$T/err" "bad2.json"

# A server certificate that does not belong to the token key.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/other.key" \
    -out "$PKI/server/other.pem" -days 1 -subj "/CN=localhost" 2>/dev/null
python3 - "$PKI/certgate.json" "$PKI/bad3.json" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1]))
c["tls"]["cert"] = "server/other.pem"
json.dump(c, open(sys.argv[2], "w"))
EOF
cg_expect_fail nonzero "$CERTGATE_BIN" check -c "$PKI/bad3.json"
cg_assert_contains "$T/err" "does not match the server key"

# A CRL that is not a CRL.
cp "$PKI/ca/crl.pem" "$T/crl.good"
echo garbage >"$PKI/ca/crl.pem"
cg_expect_fail nonzero "$CERTGATE_BIN" check -c "$PKI/certgate.json"
cg_assert_contains "$T/err" "crl.pem"
cp "$T/crl.good" "$PKI/ca/crl.pem"

# --- token gateway ---------------------------------------------------------------
gw_start "$PKI/certgate.json" "$T/gw.log"

expect_hs ok good13 --ca "$CA" --cert "$A/good/cert.pem" --key "$A/good/key.pem" --tls1.3
cg_assert_contains "$T/good13.out" "protocol: TLSv1.3"
expect_hs ok good12 --ca "$CA" --cert "$A/good/cert.pem" --key "$A/good/key.pem" --tls1.2
cg_assert_contains "$T/good12.out" "protocol: TLSv1.2"

expect_hs failed nocert13 --ca "$CA" --tls1.3
expect_hs failed nocert12 --ca "$CA" --tls1.2
gw_log_contains "peer did not return a certificate" || cg_fail "log does not say the certificate was missing"

# Another CA: same subject and SAN URI as a mapped agent, so only the issuer differs.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/evil-ca.key" \
    -out "$T/evil-ca.pem" -days 1 -subj "/CN=certgate CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/evil.key" \
    -out "$T/evil.csr" -subj "/CN=good" 2>/dev/null
printf 'subjectAltName=URI:spiffe://certgate.local/agent/good\nextendedKeyUsage=clientAuth\n' >"$T/evil.ext"
openssl x509 -req -in "$T/evil.csr" -CA "$T/evil-ca.pem" -CAkey "$T/evil-ca.key" \
    -CAcreateserial -days 1 -extfile "$T/evil.ext" -out "$T/evil.pem" 2>/dev/null
expect_hs failed otherca13 --ca "$CA" --cert "$T/evil.pem" --key "$T/evil.key" --tls1.3
expect_hs failed otherca12 --ca "$CA" --cert "$T/evil.pem" --key "$T/evil.key" --tls1.2
gw_log_contains "certificate verify failed: unable to get local issuer certificate" ||
    cg_fail "log does not give the verification error for a foreign CA"

# Old protocols.
expect_hs failed tls10 --ca "$CA" --cert "$A/good/cert.pem" --key "$A/good/key.pem" --tls1.0
expect_hs failed tls11 --ca "$CA" --cert "$A/good/cert.pem" --key "$A/good/key.pem" --tls1.1
cg_assert_contains "$T/tls10.out" "protocol version"
cg_assert_contains "$T/tls11.out" "protocol version"
gw_log_contains "unsupported protocol" || cg_fail "log does not name the protocol refusal"

# Revoked: works before, refused after agent-revoke (which signals the gateway). The
# second handshake before the revocation is verified from the cache of verified
# certificates (tlsvcache.h); the revocation must refuse it all the same.
expect_hs ok gone-before --ca "$CA" --cert "$A/gone/cert.pem" --key "$A/gone/key.pem"
expect_hs ok gone-before2 --ca "$CA" --cert "$A/gone/cert.pem" --key "$A/gone/key.pem"
"$CG_SRC/scripts/agent-revoke" --dir "$PKI" --agent gone >/dev/null 2>&1 || cg_fail "agent-revoke failed"
ok=0
for i in $(seq 1 20); do
	rc=0
	gw_client --ca "$CA" --cert "$A/gone/cert.pem" --key "$A/gone/key.pem" >"$T/gone.out" 2>&1 || rc=$?
	if [ "$rc" -eq 1 ]; then ok=1; break; fi
	sleep 0.1
done
[ "$ok" = 1 ] || { cat "$T/gone.out" >&2; cg_fail "revoked agent still completes the handshake after 2 s"; }
cg_assert_contains "$T/gone.out" "certificate revoked"
expect_hs failed gone12 --ca "$CA" --cert "$A/gone/cert.pem" --key "$A/gone/key.pem" --tls1.2
gw_log_contains "certificate verify failed: certificate revoked" || cg_fail "log does not say revoked"
# The good agent is unaffected.
expect_hs ok good-after --ca "$CA" --cert "$A/good/cert.pem" --key "$A/good/key.pem"

# --- admin listener ----------------------------------------------------------------
ADMIN="http://127.0.0.1:$CG_ADMIN_PORT"
curl -sS -o "$T/healthz" -w '%{http_code}\n' "$ADMIN/healthz" >"$T/healthz.code"
cg_assert_eq "$(cat "$T/healthz.code")" 200 "/healthz status"
cg_assert_contains "$T/healthz" '"status":"ok"'
cg_assert_contains "$T/healthz" '"token":"ok"'
curl -sS "$ADMIN/metrics" >"$T/metrics"
cg_assert_contains "$T/metrics" 'certgate_handshakes_total'
# good and gone each made full handshakes with the same certificate under one
# trust store: at least gone-before2 came from the cache
hits=$(sed -n 's/^certgate_tls_verify_cache_total{result="hit"} //p' "$T/metrics")
[ -n "$hits" ] && [ "$hits" -ge 1 ] || cg_fail "no verified-certificate cache hit (got '$hits')"
grep -Eq '^certgate_handshakes_total\{result="failed"\} [1-9]' "$T/metrics" ||
    { grep handshakes "$T/metrics" >&2; cg_fail "/metrics does not count failed handshakes"; }
cg_assert_eq "$(curl -s -o /dev/null -w '%{http_code}' "$ADMIN/nope")" 404 "/nope status"

gw_stop
[ ! -e "$PKI/certgate.pid" ] || cg_fail "certgate.pid left behind after shutdown"

# --- expired / not yet valid (software CA) ------------------------------------------
SOFT=$T/soft
SOFT_PORT=$(cg_free_port)
gw_soft_pki "$SOFT" "$SOFT_PORT" || cg_fail "cannot build the software PKI"
gw_soft_issue "$SOFT" fresh || cg_fail "soft issue fresh"
gw_soft_issue "$SOFT" expired 20200101000000Z 20200102000000Z || cg_fail "soft issue expired"
gw_soft_issue "$SOFT" future 20990101000000Z 20990102000000Z || cg_fail "soft issue future"
gw_start "$SOFT/certgate.json" "$T/gw-soft.log"
SA=$SOFT/agents
expect_hs ok fresh --ca "$SOFT/ca/ca.pem" --cert "$SA/fresh/cert.pem" --key "$SA/fresh/key.pem"
expect_hs failed expired13 --ca "$SOFT/ca/ca.pem" --cert "$SA/expired/cert.pem" --key "$SA/expired/key.pem" --tls1.3
expect_hs failed expired12 --ca "$SOFT/ca/ca.pem" --cert "$SA/expired/cert.pem" --key "$SA/expired/key.pem" --tls1.2
cg_assert_contains "$T/expired13.out" "certificate expired"
expect_hs failed future --ca "$SOFT/ca/ca.pem" --cert "$SA/future/cert.pem" --key "$SA/future/key.pem"
gw_log_contains "certificate verify failed: certificate has expired" || cg_fail "log does not say expired"
gw_log_contains "certificate verify failed: certificate is not yet valid" || cg_fail "log does not say not yet valid"
# The token gateway's agents are foreign here.
expect_hs failed cross --ca "$SOFT/ca/ca.pem" --cert "$A/good/cert.pem" --key "$A/good/key.pem"
# A CRL close to its nextUpdate is reloaded with a warning (past it, OpenSSL refuses
# every client: the same code path logs an error).
GW_SAN=DNS:x openssl ca -batch -config "$SOFT/ca/openssl.cnf" -gencrl -crlhours 2 \
    -out "$SOFT/ca/crl.pem.tmp" 2>/dev/null
mv "$SOFT/ca/crl.pem.tmp" "$SOFT/ca/crl.pem"
gw_wait_log "CRL .*crl.pem expires at .*within 24 h" 5 || cg_fail "no warning for a CRL about to expire"
expect_hs ok fresh2 --ca "$SOFT/ca/ca.pem" --cert "$SA/fresh/cert.pem" --key "$SA/fresh/key.pem"
gw_stop

cg_pass
