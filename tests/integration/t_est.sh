#!/usr/bin/env bash
# Enrollment and renewal over EST (RFC 7030) against the real gateway, with curl and
# openssl as the EST client (nothing of certgate's on the client side), as the README's
# operator guide shows it: token -> cacerts (fingerprint checked) -> simpleenroll ->
# the new certificate works on the mTLS listener with the token's roles -> renewal
# over mTLS -> the renewed certificate works -> revoke -> renewal refused. Plus the
# refusals: a used token, a wrong agent, a CSR whose signature is broken, a weak key,
# two concurrent uses of one token with two keys (exactly one succeeds), a body that is not base64,
# a wrong media type; and OCSP on the enrollment listener with openssl ocsp.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/gw.sh"
cg_setup

UPORT=$(cg_free_port)
EPORT=$(cg_free_port)
cg_pki_init --upstream "http://127.0.0.1:$UPORT/" --enroll "127.0.0.1:$EPORT"
gw_tool_upstream "$UPORT" "$T/upstream.jsonl"
gw_start "$PKI/certgate.json" "$T/gw.log"
gw_log_contains "enrollment \\(EST, OCSP\\) on https://127.0.0.1:$EPORT" ||
    cg_fail "the enrollment listener was not started"
EST=https://127.0.0.1:$EPORT/.well-known/est
MTLS=https://127.0.0.1:$GW_PORT
C=$T/client
mkdir -p "$C"

token() {
	"$CG_SRC/scripts/agent-token" --dir "$PKI" "$@" 2>"$T/token.err" | tail -n1
}
# csr NAME [KEYOPTS...]: a new key and its base64 DER CSR in $C/NAME.{key,b64}
csr() {
	local name=$1
	shift
	[ $# -gt 0 ] || set -- -newkey ec -pkeyopt ec_paramgen_curve:P-256
	openssl req -new "$@" -nodes -keyout "$C/$name.key" -subj "/CN=ignored" \
	    -outform DER 2>/dev/null | base64 >"$C/$name.b64"
}
# enroll ID TOKEN CSR OUT: prints the HTTP status; the body in OUT
enroll() {
	printf 'Authorization: Basic %s\n' "$(printf '%s:%s' "$1" "$2" | base64 -w0)" >"$C/auth.hdr"
	curl -s --cacert "$C/ca.pem" -H @"$C/auth.hdr" -H 'Content-Type: application/pkcs10' \
	    --data-binary @"$3" -o "$4" -w '%{http_code}' "$EST/simpleenroll"
}
p7_to_pem() {
	base64 -d "$1" | openssl pkcs7 -inform DER -print_certs | openssl x509 >"$2"
}

TOKEN=$(token --agent bot1 --role member --lifetime 1h)
case $TOKEN in cg1.*) ;; *) cat "$T/token.err" >&2; cg_fail "agent-token printed no token" ;; esac
FP=$(echo "$TOKEN" | cut -d. -f2)

# 1. cacerts, trusted only once its fingerprint matches the token's
code=$(curl -sk -o "$C/cacerts.b64" -D "$C/cacerts.hdr" -w '%{http_code}' "$EST/cacerts")
cg_assert_eq "$code" 200 "cacerts status"
grep -qi '^content-type: application/pkcs7-mime' "$C/cacerts.hdr" || cg_fail "cacerts media type"
p7_to_pem "$C/cacerts.b64" "$C/ca.pem"
cg_assert_eq "$(openssl x509 -in "$C/ca.pem" -outform DER | sha256sum | cut -d' ' -f1)" "$FP" \
    "CA fingerprint"

# 2. enroll: the key never leaves the client
csr a
code=$(enroll bot1 "$TOKEN" "$C/a.b64" "$C/a.p7")
[ "$code" = 200 ] || { cat "$C/a.p7" >&2; cg_fail "simpleenroll: HTTP $code"; }
p7_to_pem "$C/a.p7" "$C/a.pem"
openssl x509 -in "$C/a.pem" -noout -subject -nameopt RFC2253 | grep -q 'CN=bot1' ||
    cg_fail "the certificate is not for CN=bot1"
openssl x509 -in "$C/a.pem" -noout -ext subjectAltName | grep -q 'URI:spiffe://certgate.local/agent/bot1' ||
    cg_fail "the certificate has no SPIFFE URI"
[ "$(openssl x509 -in "$C/a.pem" -noout -pubkey | sha256sum)" = \
  "$(openssl pkey -in "$C/a.key" -pubout | sha256sum)" ] || cg_fail "the certificate does not certify the CSR's key"
life=$(python3 - "$C/a.pem" <<'EOF'
import subprocess, sys, datetime
def t(flag):
    out = subprocess.run(["openssl", "x509", "-in", sys.argv[1], "-noout", flag],
                         capture_output=True, text=True).stdout.split("=", 1)[1].strip()
    return datetime.datetime.strptime(out, "%b %d %H:%M:%S %Y %Z")
print(int((t("-enddate") - t("-startdate")).total_seconds()))
EOF
)
# 1 h from now, notBefore backdated a few minutes for clock skew
[ "$life" -ge 3500 ] && [ "$life" -le 4200 ] || cg_fail "lifetime $life s, want the token's 1 h"
echo "enrolled bot1: lifetime $life s"

# 3. the new certificate works on the mTLS listener with the token's roles
mtls_get() {
	curl -s --cacert "$C/ca.pem" --cert "$1" --key "$2" -o "$C/echo.json" -w '%{http_code}' \
	    -H 'Accept: text/event-stream' "$MTLS/echo"
}
for i in $(seq 1 30); do
	code=$(mtls_get "$C/a.pem" "$C/a.key") || true
	[ "$code" = 200 ] && break
	sleep 0.2       # the gateway reloads the identity map within a second
done
cg_assert_eq "$code" 200 "request with the enrolled certificate"
python3 - "$C/echo.json" <<'EOF' || cg_fail "the upstream did not see bot1 with the member role's scopes"
import json, sys
h = {k.lower(): v for k, v in json.load(open(sys.argv[1]))["headers"].items()}
assert h["x-agent-id"] == "bot1", h
assert "tools:*" in h["x-agent-scopes"].split(), h
EOF

# 4. renew over mTLS with the current certificate; the old one stays valid
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$C/b.key" \
    -subj /CN=ignored -outform DER 2>/dev/null | base64 >"$C/b.b64"
code=$(curl -s --cacert "$C/ca.pem" --cert "$C/a.pem" --key "$C/a.key" \
    -H 'Content-Type: application/pkcs10' --data-binary @"$C/b.b64" -o "$C/b.p7" \
    -w '%{http_code}' "$MTLS/.well-known/est/simplereenroll")
[ "$code" = 200 ] || { cat "$C/b.p7" >&2; cg_fail "simplereenroll over mTLS: HTTP $code"; }
p7_to_pem "$C/b.p7" "$C/b.pem"
s1=$(openssl x509 -in "$C/a.pem" -noout -serial)
s2=$(openssl x509 -in "$C/b.pem" -noout -serial)
[ "$s1" != "$s2" ] || cg_fail "the renewed certificate has the old serial"
cg_assert_eq "$(openssl x509 -in "$C/b.pem" -noout -subject -nameopt RFC2253)" \
    "$(openssl x509 -in "$C/a.pem" -noout -subject -nameopt RFC2253)" "renewed subject"
cg_assert_eq "$(mtls_get "$C/b.pem" "$C/b.key")" 200 "request with the renewed certificate"
cg_assert_eq "$(mtls_get "$C/a.pem" "$C/a.key")" 200 "request with the old certificate during the overlap"
# ... also on the enrollment listener with a client certificate
openssl req -new -key "$C/b.key" -subj /CN=x -outform DER | base64 >"$C/c.b64"
code=$(curl -s --cacert "$C/ca.pem" --cert "$C/b.pem" --key "$C/b.key" \
    -H 'Content-Type: application/pkcs10' --data-binary @"$C/c.b64" -o "$C/c.p7" \
    -w '%{http_code}' "$EST/simplereenroll")
cg_assert_eq "$code" 200 "simplereenroll on the enrollment listener"
echo "renewed over mTLS and on the enrollment listener"

# 5. OCSP for the agent's certificate, signed in the token (openssl as the client)
openssl ocsp -issuer "$C/ca.pem" -cert "$C/a.pem" -url "https://127.0.0.1:$EPORT/ocsp" \
    -CAfile "$C/ca.pem" -VAfile "$C/ca.pem" -resp_text >"$C/ocsp1.txt" 2>&1 ||
    { cat "$C/ocsp1.txt" >&2; cg_fail "openssl ocsp failed"; }
grep -q ': good' "$C/ocsp1.txt" || { cat "$C/ocsp1.txt" >&2; cg_fail "OCSP did not answer good"; }

# 6. revoke: the agent's certificates stop working and renewal is refused
"$CG_SRC/scripts/agent-revoke" --dir "$PKI" --agent bot1 >/dev/null 2>"$T/revoke.err" ||
    { cat "$T/revoke.err" >&2; cg_fail "agent-revoke failed"; }
for i in $(seq 1 30); do
	code=$(mtls_get "$C/b.pem" "$C/b.key") || code=000
	[ "$code" != 200 ] && break
	sleep 0.2
done
[ "$code" != 200 ] || cg_fail "a revoked certificate still works"
code=$(curl -s --cacert "$C/ca.pem" --cert "$C/b.pem" --key "$C/b.key" \
    -H 'Content-Type: application/pkcs10' --data-binary @"$C/c.b64" -o "$C/r.out" \
    -w '%{http_code}' "$MTLS/.well-known/est/simplereenroll") || code=000
[ "$code" != 200 ] || cg_fail "a revoked certificate was renewed"
echo "after revocation: requests and renewal refused ($code)"
openssl ocsp -issuer "$C/ca.pem" -cert "$C/a.pem" -url "https://127.0.0.1:$EPORT/ocsp" \
    -CAfile "$C/ca.pem" -VAfile "$C/ca.pem" >"$C/ocsp2.txt" 2>&1 || true
grep -q ': revoked' "$C/ocsp2.txt" || { cat "$C/ocsp2.txt" >&2; cg_fail "OCSP did not answer revoked"; }

# 7. refusals
expect_status() {   # WANT WHAT CODE
	[ "$3" = "$1" ] || cg_fail "$2: HTTP $3, want $1"
	echo "$2: $3"
}
csr z
expect_status 401 "token used twice" "$(enroll bot1 "$TOKEN" "$C/z.b64" "$C/z.out")"
T2=$(token --agent bot2 --role guest)
expect_status 401 "token for another agent" "$(enroll bot3 "$T2" "$C/z.b64" "$C/z.out")"
expect_status 401 "made-up token" "$(enroll bot2 "cg1.$FP.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" "$C/z.b64" "$C/z.out")"
printf 'not base64 at all!' >"$C/bad.b64"
expect_status 400 "a body that is not base64" "$(enroll bot2 "$T2" "$C/bad.b64" "$C/z.out")"
python3 - "$C/z.b64" "$C/badsig.b64" <<'EOF'
import base64, sys
der = bytearray(base64.b64decode(open(sys.argv[1]).read()))
der[-5] ^= 0x40           # inside the CSR's signature
open(sys.argv[2], "w").write(base64.b64encode(bytes(der)).decode())
EOF
expect_status 400 "a CSR with a broken signature" "$(enroll bot2 "$T2" "$C/badsig.b64" "$C/z.out")"
csr weak -newkey rsa:1024
expect_status 400 "an RSA 1024 key" "$(enroll bot2 "$T2" "$C/weak.b64" "$C/z.out")"
code=$(curl -s --cacert "$C/ca.pem" -H @"$C/auth.hdr" -H 'Content-Type: text/plain' \
    --data-binary @"$C/z.b64" -o /dev/null -w '%{http_code}' "$EST/simpleenroll")
expect_status 415 "a wrong media type" "$code"
# The refused uses did not spend the token: it still works once.
expect_status 200 "the token after refused attempts" "$(enroll bot2 "$T2" "$C/z.b64" "$C/z.out")"

# 8. two concurrent uses of one token with two keys: exactly one succeeds (the same
#    key twice gets the same certificate twice: t_est_retry.sh, t_ca_enroll.sh)
for round in 1 2 3; do
	T3=$(token --agent "race$round" --role guest)
	csr r1
	csr r2
	( enroll "race$round" "$T3" "$C/r1.b64" "$C/r1.out" >"$C/r1.code" ) &
	p1=$!
	( enroll "race$round" "$T3" "$C/r2.b64" "$C/r2.out" >"$C/r2.code" ) &
	p2=$!
	wait "$p1" "$p2" || true
	codes=$(sort <<<"$(cat "$C/r1.code")
$(cat "$C/r2.code")" | tr '\n' ' ')
	cg_assert_eq "$codes" "200 401 " "two concurrent uses of one token (round $round)"
done
echo "two concurrent uses: exactly one enrolled, three rounds"

# Every EST request is in the gateway's audit log, refusals as denials.
grep -q '"method":"POST /.well-known/est/simpleenroll".*"decision":"allow"' "$PKI/audit.jsonl" ||
    cg_fail "no audit line for an enrollment"
grep -q '"method":"POST /.well-known/est/simpleenroll".*"decision":"deny".*"status":401' "$PKI/audit.jsonl" ||
    cg_fail "no audit line for a refused token"
gw_stop
cg_pass
