#!/usr/bin/env bash
# OCSP (RFC 6960) through est.c and the CA service, checked with `openssl ocsp`:
# good, revoked (time and reason), unknown serial, another issuer; the nonce echoed;
# several CertIDs at once; SHA-256 CertIDs; the GET form; malformed requests; and
# ca.ocsp_url in the AIA of issued certificates.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/ca.sh"
cg_setup
cg_pki_init
P=$PKI
S=$CG_SRC/scripts
CA=$P/ca/ca.pem

# ca.ocsp_url goes into the AIA of agent and server certificates issued after it.
python3 - "$P/certgate.json" <<'PY'
import json, sys
p = sys.argv[1]; c = json.load(open(p)); c["ca"]["ocsp_url"] = "http://127.0.0.1:9/ocsp"
json.dump(c, open(p, "w"), indent=1)
PY
"$S/agent-issue" --dir "$P" --agent good --role guest >/dev/null 2>&1
"$S/agent-issue" --dir "$P" --agent bad --role guest >/dev/null 2>&1
openssl x509 -in "$P/agents/good/cert.pem" -noout -ocsp_uri >"$T/aia"
cg_assert_eq "$(cat "$T/aia")" "http://127.0.0.1:9/ocsp" "AIA OCSP of an issued certificate"
"$S/agent-revoke" --dir "$P" --agent bad --reason keyCompromise >/dev/null 2>&1
sed 's|"ocsp_url": "http://127.0.0.1:9/ocsp"|"ocsp_url": "ftp://x,y"|' "$P/certgate.json" >"$P/badurl.json"
cg_expect_fail 1 "$CERTGATE_BIN" check -c "$P/badurl.json"
cg_assert_contains "$T/err" '$.ca.ocsp_url: "ftp://x,y" is not an http:// or https:// URL'
rm -f "$P/badurl.json"
ca_serve_start

ask() {	# NAME ARGS-FOR-openssl-ocsp-request...
	local name=$1
	shift
	openssl ocsp -issuer "$CA" "$@" -reqout "$T/$name.req" >/dev/null 2>&1 || cg_fail "openssl ocsp -reqout $name"
	ca_est "$T/$name" POST /ocsp --ctype application/ocsp-request --body "$T/$name.req"
	cg_assert_eq "$EST_STATUS" 200 "OCSP $name"
	cg_assert_contains "$T/$name" "content-type application/ocsp-response"
}
verify() {	# NAME CERT: checks the signature and nonce against the request, prints status
	openssl ocsp -respin "$T/$1.body" -reqin "$T/$1.req" -CAfile "$CA" -issuer "$CA" \
	    -resp_text >"$T/$1.txt" 2>&1 || { cat "$T/$1.txt" >&2; cg_fail "OCSP $1 does not verify"; }
	cg_assert_contains "$T/$1.txt" "Response verify OK"
}

ask good -cert "$P/agents/good/cert.pem"
verify good
cg_assert_contains "$T/good.txt" "Cert Status: good"
cg_assert_contains "$T/good.txt" "OCSP Nonce"
# The status as openssl reports it for the certificate itself (same request).
openssl ocsp -respin "$T/good.body" -no_nonce -issuer "$CA" -cert "$P/agents/good/cert.pem" \
    -CAfile "$CA" >"$T/good.status" 2>&1
cg_assert_contains "$T/good.status" "cert.pem: good"

ask revoked -cert "$P/agents/bad/cert.pem" -no_nonce
verify revoked
cg_assert_contains "$T/revoked.txt" "Cert Status: revoked"
cg_assert_contains "$T/revoked.txt" "Revocation Reason: keyCompromise"
cg_assert_not_contains "$T/revoked.txt" "OCSP Nonce"

ask unknown -serial 0x0123456789ABCDEF
verify unknown
cg_assert_contains "$T/unknown.txt" "Cert Status: unknown"

# Another issuer (same serial as a real certificate): unknown, the CertID echoed.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/o.key" \
    -subj "/CN=other CA" -days 1 -out "$T/other.pem" 2>/dev/null
gs=$(openssl x509 -in "$P/agents/good/cert.pem" -noout -serial | cut -d= -f2)
openssl ocsp -issuer "$T/other.pem" -serial "0x$gs" -reqout "$T/oth.req" >/dev/null 2>&1
ca_est "$T/oth" POST /ocsp --ctype application/ocsp-request --body "$T/oth.req"
openssl ocsp -respin "$T/oth.body" -reqin "$T/oth.req" -CAfile "$CA" -issuer "$CA" -resp_text \
    >"$T/oth.txt" 2>&1 || true
cg_assert_contains "$T/oth.txt" "Cert Status: unknown"

# Two CertIDs in one request, SHA-256 CertIDs.
ask two -sha256 -cert "$P/agents/good/cert.pem" -cert "$P/agents/bad/cert.pem"
verify two
cg_assert_eq "$(grep -c 'Cert Status' "$T/two.txt")" 2 "answers in a two-CertID response"
cg_assert_contains "$T/two.txt" "Hash Algorithm: sha256"

# GET /ocsp/BASE64 (RFC 6960 A.1), '/' and '+' percent-encoded.
b64=$(base64 -w0 <"$T/good.req" | sed 's|/|%2F|g; s|+|%2B|g; s|=|%3D|g')
ca_est "$T/get" GET "/ocsp/$b64"
cg_assert_eq "$EST_STATUS" 200 "OCSP GET"
cp "$T/good.req" "$T/get.req"
verify get

# Malformed: an OCSP malformedRequest response (not an HTTP error), service unharmed.
printf 'garbage' >"$T/junk.req"
ca_est "$T/junk" POST /ocsp --ctype application/ocsp-request --body "$T/junk.req"
cg_assert_eq "$EST_STATUS" 200 "malformed OCSP request"
openssl ocsp -respin "$T/junk.body" -resp_text -noverify >"$T/junk.txt" 2>&1 || true
cg_assert_contains "$T/junk.txt" "malformedrequest"
ca_est "$T/jget" GET "/ocsp/!!!"
openssl ocsp -respin "$T/jget.body" -resp_text -noverify >"$T/jget.txt" 2>&1 || true
cg_assert_contains "$T/jget.txt" "malformedrequest"
ca_est "$T/ct" POST /ocsp --ctype text/plain --body "$T/good.req"
cg_assert_eq "$EST_STATUS" 415 "OCSP with the wrong media type"
# The CA service is down: tryLater.
ca_serve_stop
ca_est "$T/down" POST /ocsp --ctype application/ocsp-request --body "$T/good.req"
openssl ocsp -respin "$T/down.body" -resp_text -noverify >"$T/down.txt" 2>&1 || true
cg_assert_contains "$T/down.txt" "trylater"
ca_est "$T/down2" POST /.well-known/est/simplereenroll --ctype application/pkcs10 \
    --cert "$P/agents/good/cert.pem" --body /dev/null
ca_csr "$T/x.csr" p256
ca_est "$T/down3" POST /.well-known/est/simplereenroll --ctype application/pkcs10 \
    --cert "$P/agents/good/cert.pem" --body "$T/x.csr"
cg_assert_eq "$EST_STATUS" 503 "renewal while the CA service is down"
cg_assert_contains "$T/down3" "retry-after 5"
cg_pass
