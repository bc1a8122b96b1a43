#!/usr/bin/env bash
# certgate's CA under a corporate root (README "certgate's CA under a corporate root"):
# a root made with `openssl ca` (keys on disk, enterprise.sh) signs the request that
# `pki-init --intermediate` made in the CA token; `ca-import` installs it. Then an
# agent presents leaf + intermediate and verifies the gateway with the root alone
# (the server sends its chain), the CRLs of both levels are checked, a --server-name
# DNS name verifies through --resolve, and EST enroll + renew with curl/openssl work
# under the intermediate. ca-import refuses: a certificate for another key, a chain
# without a root, a chain with another root, a certificate that is not a CA, a CA
# certificate without keyCertSign.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/gw.sh"
. "$(dirname "$0")/enterprise.sh"
cg_setup

UPORT=$(cg_free_port)
EPORT=$(cg_free_port)
ENT=$T/ent
ent_pki "$ENT" || cg_fail "enterprise PKI"
ROOT=$ENT/root
cat >>"$ROOT/openssl.cnf" <<'EOF'
[ noca_ext ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
[ nokcs_ext ]
basicConstraints = critical,CA:TRUE
keyUsage = critical,digitalSignature,cRLSign
EOF
root_sign() {   # CSR OUT EXTENSIONS
	ENT_SAN=DNS:x openssl ca -batch -config "$ROOT/openssl.cnf" -extensions "$3" -days 10 \
	    -in "$1" -out "$2" -notext 2>"$T/openssl-ca.err" || { cat "$T/openssl-ca.err" >&2; return 1; }
}

cg_pki_init --upstream "http://127.0.0.1:$UPORT/" --enroll "127.0.0.1:$EPORT" --intermediate \
    --server-name gw.example.test --server-name 127.0.0.2 --server-name ::1
cg_assert_contains "$T/pki-init.out" "ca-import"
[ -s "$PKI/ca/ca.csr" ] || cg_fail "pki-init --intermediate wrote no ca/ca.csr"
[ ! -e "$PKI/ca/ca.pem" ] || cg_fail "pki-init --intermediate wrote a self-signed CA"
openssl req -in "$PKI/ca/ca.csr" -noout -verify 2>&1 | grep -q 'verify OK' ||
    cg_fail "the request's signature (made in the token) does not verify"
openssl req -in "$PKI/ca/ca.csr" -noout -text | grep -q 'CA:TRUE' || cg_fail "the request asks for no CA:TRUE"
echo "pki-init --intermediate: CA key in the token, request ca/ca.csr"

# --- refusals (each leaves the PKI untouched) ---
IMPORT=("$CG_SRC/scripts/ca-import" --dir "$PKI")
expect_refused() {   # MESSAGE ARGS...
	local msg=$1
	shift
	cg_expect_fail 1 "${IMPORT[@]}" "$@"
	grep -qF -- "$msg" "$T/err" || { cat "$T/err" >&2; cg_fail "ca-import: no '$msg'"; }
	[ ! -e "$PKI/ca/ca.pem" ] || cg_fail "a refused import wrote ca/ca.pem"
	echo "refused ($msg)"
}
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/other.key" \
    -subj "/CN=other CA" -out "$T/other.csr" 2>/dev/null
root_sign "$T/other.csr" "$T/other.pem" issuing_ext
expect_refused "is not the CA key in the token" --cert "$T/other.pem" --chain "$ROOT/ca.pem"
root_sign "$PKI/ca/ca.csr" "$T/noca.pem" noca_ext
expect_refused "is not a CA certificate" --cert "$T/noca.pem" --chain "$ROOT/ca.pem"
root_sign "$PKI/ca/ca.csr" "$T/nokcs.pem" nokcs_ext
expect_refused "no keyUsage keyCertSign" --cert "$T/nokcs.pem" --chain "$ROOT/ca.pem"
root_sign "$PKI/ca/ca.csr" "$T/certgate-ca.pem" issuing_ext
expect_refused "holds no self-signed root" --cert "$T/certgate-ca.pem" --chain "$ENT/issuing/ca.pem"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/r2.key" \
    -out "$T/root2.pem" -days 3 -subj "/O=Example Corp/CN=Example Corp Root CA" 2>/dev/null
expect_refused "does not verify up to a self-signed root" --cert "$T/certgate-ca.pem" --chain "$T/root2.pem"
cg_expect_fail 2 "${IMPORT[@]}" --cert "$T/certgate-ca.pem"
grep -q -- "--chain" "$T/err" || cg_fail "ca-import without --chain: no usage error"
"$CG_SRC/scripts/ca-import" --help | grep -q -- "--crl" || cg_fail "ca-import --help"

# --- the import ---
"${IMPORT[@]}" --cert "$T/certgate-ca.pem" --chain "$ROOT/ca.pem" --crl "$ROOT/crl.pem" \
    >"$T/import.out" 2>"$T/import.err" || { cat "$T/import.out" "$T/import.err" >&2; cg_fail "ca-import"; }
fp() { openssl x509 -in "$1" -noout -fingerprint -sha256; }
ncerts() { grep -c 'BEGIN CERTIFICATE' "$1"; }
cg_assert_eq "$(ncerts "$PKI/ca/ca.pem")" 2 "certificates in ca/ca.pem (certgate CA + root)"
cg_assert_eq "$(grep -c 'BEGIN X509 CRL' "$PKI/ca/crl.pem")" 2 "CRLs in ca/crl.pem (certgate + root)"
cg_assert_eq "$(ncerts "$PKI/server/cert.pem")" 2 "certificates in server/cert.pem (leaf + intermediate)"
openssl x509 -in "$PKI/server/cert.pem" -noout -ext subjectAltName >"$T/san.txt"
for want in DNS:localhost DNS:gw.example.test "IP Address:127.0.0.1" "IP Address:127.0.0.2" "IP Address:0:0:0:0:0:0:0:1"; do
	cg_assert_contains "$T/san.txt" "$want"
done
openssl verify -CAfile "$ROOT/ca.pem" -untrusted "$PKI/server/cert.pem" "$PKI/server/cert.pem" >/dev/null ||
    cg_fail "the server certificate does not chain to the corporate root"
echo "imported: ca.pem = certgate CA + root, server cert sent with its chain, SANs $(tr -d '\n' <"$T/san.txt" | sed 's/.*Name: *//')"

"$CG_SRC/scripts/agent-issue" --dir "$PKI" --agent alice --role member >"$T/issue.out" 2>&1 ||
    { cat "$T/issue.out" >&2; cg_fail "agent-issue"; }
A=$PKI/agents/alice
cg_assert_eq "$(ncerts "$A/cert.pem")" 2 "certificates in agents/alice/cert.pem (leaf + intermediate)"
cg_assert_eq "$(ncerts "$A/ca.pem")" 1 "certificates in agents/alice/ca.pem"
cg_assert_eq "$(fp "$A/ca.pem")" "$(fp "$ROOT/ca.pem")" "agents/alice/ca.pem is the corporate root"
"$CERTGATE_BIN" check -c "$PKI/certgate.json" >"$T/check.out" 2>&1 || { cat "$T/check.out" >&2; cg_fail "certgate check"; }

gw_tool_upstream "$UPORT"
gw_start "$PKI/certgate.json" "$T/gw.log"
MTLS=https://127.0.0.1:$GW_PORT
get() {   # CERT KEY [URL]
	curl -s --cacert "$ROOT/ca.pem" --cert "$1" --key "$2" -o "$T/body" -w '%{http_code}' \
	    -H 'Accept: text/event-stream' "${3:-$MTLS/echo}" || true   # -w prints 000 on failure
}
cg_assert_eq "$(get "$A/cert.pem" "$A/key.pem")" 200 "alice (leaf + intermediate) verifying the gateway with the root only"
python3 -c 'import json,sys; h={k.lower():v for k,v in json.load(open(sys.argv[1]))["headers"].items()}; assert h["x-agent-id"]=="alice", h' "$T/body" ||
    cg_fail "the upstream did not see alice"
code=$(curl -s --cacert "$ROOT/ca.pem" --cert "$A/cert.pem" --key "$A/key.pem" -o /dev/null -w '%{http_code}' \
    --resolve "gw.example.test:$GW_PORT:127.0.0.1" -H 'Accept: text/event-stream' "https://gw.example.test:$GW_PORT/echo") || code=000
cg_assert_eq "$code" 200 "curl verifying the --server-name DNS name gw.example.test"
echo "mTLS under the corporate root: leaf + intermediate accepted, gw.example.test verified"

# --- EST under the intermediate ---
EST=https://127.0.0.1:$EPORT/.well-known/est
TOKEN=$("$CG_SRC/scripts/agent-token" --dir "$PKI" --agent bot1 --role member --lifetime 1h 2>"$T/token.err" | tail -n1)
case $TOKEN in cg1.*) ;; *) cat "$T/token.err" >&2; cg_fail "agent-token" ;; esac
FP=$(echo "$TOKEN" | cut -d. -f2)
curl -s --cacert "$ROOT/ca.pem" -o "$T/cacerts.b64" "$EST/cacerts"
base64 -d "$T/cacerts.b64" | openssl pkcs7 -inform DER -print_certs >"$T/cacerts.pem"
cg_assert_eq "$(ncerts "$T/cacerts.pem")" 2 "certificates from /cacerts (certgate CA + root)"
cg_assert_eq "$(openssl x509 -in "$T/cacerts.pem" -outform DER | sha256sum | cut -d' ' -f1)" "$FP" \
    "the token names certgate's CA (first of /cacerts)"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/b1.key" \
    -subj /CN=ignored -outform DER 2>/dev/null | base64 >"$T/b1.b64"
printf 'Authorization: Basic %s\n' "$(printf 'bot1:%s' "$TOKEN" | base64 -w0)" >"$T/auth.hdr"
code=$(curl -s --cacert "$ROOT/ca.pem" -H @"$T/auth.hdr" -H 'Content-Type: application/pkcs10' \
    --data-binary @"$T/b1.b64" -o "$T/b1.p7" -w '%{http_code}' "$EST/simpleenroll")
[ "$code" = 200 ] || { cat "$T/b1.p7" >&2; cg_fail "simpleenroll: HTTP $code"; }
base64 -d "$T/b1.p7" | openssl pkcs7 -inform DER -print_certs | sed -n '/BEGIN/,/END/p' >"$T/b1.pem"
cg_assert_eq "$(ncerts "$T/b1.pem")" 2 "certificates in the enrollment answer (leaf + intermediate)"
openssl verify -CAfile "$ROOT/ca.pem" -untrusted "$T/b1.pem" "$T/b1.pem" >/dev/null ||
    cg_fail "the enrolled certificate does not chain to the root"
for i in $(seq 1 30); do
	code=$(get "$T/b1.pem" "$T/b1.key")
	[ "$code" = 200 ] && break
	sleep 0.2   # the gateway loads the identity map within a second
done
cg_assert_eq "$code" 200 "request with the EST-enrolled certificate"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/b2.key" \
    -subj /CN=ignored -outform DER 2>/dev/null | base64 >"$T/b2.b64"
code=$(curl -s --cacert "$ROOT/ca.pem" --cert "$T/b1.pem" --key "$T/b1.key" \
    -H 'Content-Type: application/pkcs10' --data-binary @"$T/b2.b64" -o "$T/b2.p7" \
    -w '%{http_code}' "$MTLS/.well-known/est/simplereenroll")
[ "$code" = 200 ] || { cat "$T/b2.p7" >&2; cg_fail "simplereenroll: HTTP $code"; }
base64 -d "$T/b2.p7" | openssl pkcs7 -inform DER -print_certs | sed -n '/BEGIN/,/END/p' >"$T/b2.pem"
cg_assert_eq "$(get "$T/b2.pem" "$T/b2.key")" 200 "request with the renewed certificate"
# certgate agent enroll: the token names certgate's CA, the agent trusts the root above it
TOK=$("$CG_SRC/scripts/agent-token" --dir "$PKI" --agent erin --role member 2>"$T/token.err" | tail -n1)
CERTGATE_TOKEN=$TOK "$CERTGATE_BIN" agent enroll --url "https://127.0.0.1:$EPORT" --agent erin --dir "$T/erin" \
    >"$T/enroll.out" 2>"$T/enroll.err" || { cat "$T/enroll.out" "$T/enroll.err" >&2; cg_fail "agent enroll under the intermediate"; }
cg_assert_eq "$(fp "$T/erin/ca.pem")" "$(fp "$ROOT/ca.pem")" "erin's ca.pem is the corporate root"
cg_assert_eq "$(ncerts "$T/erin/cert.pem")" 2 "certificates in erin's cert.pem (leaf + intermediate)"
for i in $(seq 1 30); do
	code=$(get "$T/erin/cert.pem" "$T/erin/key.pem")
	[ "$code" = 200 ] && break
	sleep 0.2
done
cg_assert_eq "$code" 200 "erin (certgate agent enroll) served"
echo "EST under the intermediate: cacerts = chain, enroll and renew give leaf + intermediate; agent enroll trusts the root"

# --- the root revokes certgate's CA: every certgate agent is refused ---
ENT_SAN=DNS:x openssl ca -batch -config "$ROOT/openssl.cnf" -revoke "$T/certgate-ca.pem" 2>/dev/null
ENT_SAN=DNS:x openssl ca -batch -config "$ROOT/openssl.cnf" -gencrl -out "$PKI/ca/upstream-crl.pem" 2>/dev/null
"$CERTGATE_BIN" ca crl -c "$PKI/certgate.json" >/dev/null 2>"$T/crl.err" || { cat "$T/crl.err" >&2; cg_fail "ca crl"; }
for i in $(seq 1 30); do
	code=$(get "$A/cert.pem" "$A/key.pem")
	[ "$code" != 200 ] && break
	sleep 0.2
done
[ "$code" != 200 ] || cg_fail "alice still served after the root revoked certgate's CA"
echo "the root's CRL is checked: certgate's CA revoked by the root -> alice refused ($code)"
# rollover is refused under a corporate root; the corporate CA re-certifies the same key
# and `ca import --force` installs it (database and CRL number kept)
cg_expect_fail 1 "$CERTGATE_BIN" ca rollover -c "$PKI/certgate.json"
cg_assert_contains "$T/err" "intermediate under a corporate root"
crlno() { openssl crl -in "$PKI/ca/crl.pem" -noout -crlnumber | cut -d= -f2; }
before=$(crlno)
root_sign "$PKI/ca/ca.csr" "$T/certgate-ca2.pem" issuing_ext
"$CERTGATE_BIN" ca import -c "$PKI/certgate.json" --cert "$T/certgate-ca2.pem" --chain "$ROOT/ca.pem" --force \
    >/dev/null 2>"$T/reimport.err" || { cat "$T/reimport.err" >&2; cg_fail "ca import --force"; }
[ $((16#$(crlno))) -gt $((16#$before)) ] || cg_fail "the CRL number went back on re-import ($before -> $(crlno))"
for i in $(seq 1 30); do
	code=$(get "$A/cert.pem" "$A/key.pem")
	[ "$code" = 200 ] && break
	sleep 0.2
done
cg_assert_eq "$code" 200 "alice after the re-certified CA was imported"
echo "re-import with --force: the same key re-certified, alice served again, CRL number $before -> $(crlno)"
gw_stop

# --- plain pki-init --server-name, and a bad one ---
"$CG_SRC/scripts/pki-init" --dir "$T/plain" --server-name mcp.example.test --server-name 10.1.2.3 >/dev/null 2>&1 ||
    cg_fail "pki-init --server-name"
openssl x509 -in "$T/plain/server/cert.pem" -noout -ext subjectAltName >"$T/san2.txt"
cg_assert_contains "$T/san2.txt" "DNS:mcp.example.test"
cg_assert_contains "$T/san2.txt" "IP Address:10.1.2.3"
cg_expect_fail 2 "$CG_SRC/scripts/pki-init" --dir "$T/bad" --server-name 'bad name!'
cg_assert_contains "$T/err" "neither a DNS name nor an IP address"
cg_pass
