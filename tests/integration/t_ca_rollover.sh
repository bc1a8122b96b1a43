#!/usr/bin/env bash
# CA rollover without an outage (README "CA rollover"), against a running gateway with
# its CA service: alice (certgate agent renew) and bob (curl + openssl over EST) hold
# old-CA certificates. `certgate ca rollover` -> both CAs trusted (ca.pem holds two,
# crl.pem a CRL for each), the old certificates keep working; renewals and new
# issuance are under the new CA (the CA service follows without a restart), an agent's
# ca.pem gains the new root; /cacerts returns both; a token enrollment (certgate agent
# enroll) during the transition ends with both roots. `certgate ca retire` -> the server
# certificate is re-issued under the new CA, the old CA leaves ca.pem and crl.pem,
# an agent still on an old-CA certificate is refused, renewed agents keep working and
# verify the new server certificate. Refusals: retiring the active CA, an unknown serial.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/gw.sh"
cg_setup

UPORT=$(cg_free_port)
EPORT=$(cg_free_port)
cg_pki_init --upstream "http://127.0.0.1:$UPORT/" --enroll "127.0.0.1:$EPORT"
CFG=$PKI/certgate.json
gw_tool_upstream "$UPORT"
gw_start "$CFG" "$T/gw.log"
MTLS=https://127.0.0.1:$GW_PORT
EST=https://127.0.0.1:$EPORT/.well-known/est
ncerts() { grep -c 'BEGIN CERTIFICATE' "$1"; }
issuer_of() { openssl x509 -in "$1" -noout -issuer -nameopt RFC2253 | sed 's/^issuer=//'; }
get() {   # CAFILE CERT KEY: HTTP status of an MCP-ish request
	curl -s --cacert "$1" --cert "$2" --key "$3" -o /dev/null -w '%{http_code}' \
	    -H 'Accept: text/event-stream' "$MTLS/echo" || true   # -w prints 000 on failure
}
# until STATUS CAFILE CERT KEY: waits up to 6 s (the gateway reloads files once a second)
until_status() {
	local want=$1 code i
	shift
	for i in $(seq 1 30); do
		code=$(get "$@")
		[ "$code" = "$want" ] && return 0
		sleep 0.2
	done
	cg_fail "wanted $want for $2, got $code"
}
csr() { openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1.key" \
    -subj /CN=ignored -outform DER 2>/dev/null | base64 >"$1.b64"; }
reenroll() {   # OLD NEW: EST simplereenroll with OLD.pem/OLD.key for NEW.b64 -> NEW.pem
	local code
	code=$(curl -s --cacert "$PKI/ca/ca.pem" --cert "$1.pem" --key "$1.key" \
	    -H 'Content-Type: application/pkcs10' --data-binary @"$2.b64" -o "$2.p7" \
	    -w '%{http_code}' "$MTLS/.well-known/est/simplereenroll") || code=000
	[ "$code" = 200 ] || { cat "$2.p7" >&2; cg_fail "simplereenroll: HTTP $code"; }
	base64 -d "$2.p7" | openssl pkcs7 -inform DER -print_certs | openssl x509 >"$2.pem"
}

OLD_SUBJ=$(openssl x509 -in "$PKI/ca/ca.pem" -noout -subject -nameopt RFC2253 | sed 's/^subject=//')
OLD_SERIAL=$(openssl x509 -in "$PKI/ca/ca.pem" -noout -serial | cut -d= -f2)
cp "$PKI/ca/ca.pem" "$T/old-ca.pem"
"$CG_SRC/scripts/agent-issue" --dir "$PKI" --agent alice --role member >/dev/null 2>"$T/issue.err" ||
    { cat "$T/issue.err" >&2; cg_fail "agent-issue alice"; }
"$CG_SRC/scripts/agent-issue" --dir "$PKI" --agent bob --role member >/dev/null 2>"$T/issue.err" ||
    { cat "$T/issue.err" >&2; cg_fail "agent-issue bob"; }
A=$PKI/agents/alice
B=$T/bob
cp "$PKI/agents/bob/cert.pem" "$B.pem"
cp "$PKI/agents/bob/key.pem" "$B.key"
cp "$A/cert.pem" "$T/alice-old.pem"
cp "$A/key.pem" "$T/alice-old.key"
until_status 200 "$T/old-ca.pem" "$A/cert.pem" "$A/key.pem"
until_status 200 "$T/old-ca.pem" "$B.pem" "$B.key"

cg_expect_fail 1 "$CERTGATE_BIN" ca retire -c "$CFG" --serial "$OLD_SERIAL"
cg_assert_contains "$T/err" "is the active CA"

# --- rollover ---
"$CERTGATE_BIN" ca rollover -c "$CFG" >"$T/roll.out" 2>"$T/roll.err" ||
    { cat "$T/roll.out" "$T/roll.err" >&2; cg_fail "ca rollover"; }
cg_assert_contains "$T/roll.out" "certgate ca retire -c $CFG --serial $OLD_SERIAL"
cg_assert_eq "$(ncerts "$PKI/ca/ca.pem")" 2 "CAs in ca/ca.pem during the transition"
cg_assert_eq "$(grep -c 'BEGIN X509 CRL' "$PKI/ca/crl.pem")" 2 "CRLs in ca/crl.pem during the transition"
NEW_SUBJ=$(openssl x509 -in "$PKI/ca/ca.pem" -noout -subject -nameopt RFC2253 | sed 's/^subject=//')
[ "$NEW_SUBJ" != "$OLD_SUBJ" ] || cg_fail "the new CA has the old CA's subject"
openssl x509 -in "$PKI/ca/ca.pem" -out "$T/new-ca.pem"
pkcs11-tool --module "$CG_MODULE" --token-label ca-certgate --login --pin "$(cat "$PKI/token/ca.pin")" \
    --list-objects --type privkey 2>/dev/null | grep -q 'certgate-ca-g2' || cg_fail "the new CA key is not in the CA token"
echo "rollover: new CA '$NEW_SUBJ' (key certgate-ca-g2 in the token), old '$OLD_SUBJ' still trusted"

# old-CA certificates keep working through the transition (the gateway reloaded tls.ca)
sleep 2.2
cg_assert_eq "$(get "$T/old-ca.pem" "$A/cert.pem" "$A/key.pem")" 200 "alice's old-CA certificate after the rollover"
cg_assert_eq "$(get "$T/old-ca.pem" "$B.pem" "$B.key")" 200 "bob's old-CA certificate after the rollover"

# /cacerts returns both
curl -s --cacert "$T/old-ca.pem" -o "$T/cacerts.b64" "$EST/cacerts"
base64 -d "$T/cacerts.b64" | openssl pkcs7 -inform DER -print_certs >"$T/cacerts.pem"
cg_assert_eq "$(ncerts "$T/cacerts.pem")" 2 "CAs from /cacerts during the transition"

# alice renews with certgate agent renew: new-CA certificate, ca.pem with both roots
"$CERTGATE_BIN" agent renew --url "$MTLS" --dir "$A" >"$T/renew.out" 2>"$T/renew.err" ||
    { cat "$T/renew.out" "$T/renew.err" >&2; cg_fail "certgate agent renew across the rollover"; }
cg_assert_eq "$(issuer_of "$A/cert.pem")" "$NEW_SUBJ" "issuer of alice's renewed certificate"
cg_assert_eq "$(ncerts "$A/ca.pem")" 2 "roots in alice's ca.pem after the renewal"
until_status 200 "$A/ca.pem" "$A/cert.pem" "$A/key.pem"
# bob renews over EST with curl
csr "$T/bob2"
reenroll "$B" "$T/bob2"
cg_assert_eq "$(issuer_of "$T/bob2.pem")" "$NEW_SUBJ" "issuer of bob's EST renewal"
until_status 200 "$T/cacerts.pem" "$T/bob2.pem" "$T/bob2.key"
# a new agent is issued under the new CA, its ca.pem holds both roots
"$CG_SRC/scripts/agent-issue" --dir "$PKI" --agent carol --role member >/dev/null 2>"$T/issue.err" ||
    { cat "$T/issue.err" >&2; cg_fail "agent-issue carol"; }
cg_assert_eq "$(issuer_of "$PKI/agents/carol/cert.pem")" "$NEW_SUBJ" "issuer of carol's certificate"
cg_assert_eq "$(ncerts "$PKI/agents/carol/ca.pem")" 2 "roots in carol's ca.pem during the transition"
until_status 200 "$PKI/agents/carol/ca.pem" "$PKI/agents/carol/cert.pem" "$PKI/agents/carol/key.pem"
# a new agent enrolls with a token (certgate agent enroll): the token names the CA of
# the server certificate (still the old one), the answer brings the new root
TOK=$("$CG_SRC/scripts/agent-token" --dir "$PKI" --agent dave --role member 2>"$T/token.err" | tail -n1)
case $TOK in cg1.*) ;; *) cat "$T/token.err" >&2; cg_fail "agent-token dave" ;; esac
D=$T/dave
CERTGATE_TOKEN=$TOK "$CERTGATE_BIN" agent enroll --url "https://127.0.0.1:$EPORT" --agent dave --dir "$D" \
    >"$T/enroll.out" 2>"$T/enroll.err" || { cat "$T/enroll.out" "$T/enroll.err" >&2; cg_fail "agent enroll during the transition"; }
cg_assert_eq "$(issuer_of "$D/cert.pem")" "$NEW_SUBJ" "issuer of dave's enrolled certificate"
cg_assert_eq "$(ncerts "$D/ca.pem")" 2 "roots in dave's ca.pem"
until_status 200 "$D/ca.pem" "$D/cert.pem" "$D/key.pem"
# the old CA's CRL still works: revoking an old-CA certificate refuses it
ALICE_OLD_SERIAL=$(openssl x509 -in "$T/alice-old.pem" -noout -serial | cut -d= -f2)
"$CERTGATE_BIN" ca revoke -c "$CFG" --serial "$ALICE_OLD_SERIAL" \
    >/dev/null 2>"$T/revoke.err" || { cat "$T/revoke.err" >&2; cg_fail "revoke alice's old certificate"; }
until_status 000 "$T/old-ca.pem" "$T/alice-old.pem" "$T/alice-old.key"
# Either layer may refuse it: the worker's TLS store verifies the CRL during the
# handshake, and the revoked set is checked again after it (conn_hs_done). A handshake
# on a worker whose store is swapped a moment after the state is refused by the second.
gw_wait_log "handshake failed from .*certificate revoked|refused revoked from .*serial $ALICE_OLD_SERIAL" 5 ||
    { tail -n 20 "$GW_LOG" >&2; cg_fail "alice's old certificate not refused as revoked"; }
# certgate's OCSP responder (enrollment listener, /ocsp) answers for both CAs during the
# transition, each answer signed by the certificate's own issuer
ocsp_ask() {   # NAME ISSUER CERT: the status line of an answer that verifies with ISSUER
	openssl ocsp -issuer "$2" -cert "$3" -no_nonce -reqout "$T/$1.req" >/dev/null 2>&1 ||
	    cg_fail "openssl ocsp -reqout $1"
	curl -sS --cacert "$T/old-ca.pem" -H 'Content-Type: application/ocsp-request' \
	    --data-binary @"$T/$1.req" -o "$T/$1.resp" "https://127.0.0.1:$EPORT/ocsp" || cg_fail "OCSP POST $1"
	openssl ocsp -respin "$T/$1.resp" -issuer "$2" -cert "$3" -CAfile "$2" -no_nonce \
	    >"$T/$1.txt" 2>&1 || { cat "$T/$1.txt" >&2; cg_fail "OCSP answer $1 does not verify with its issuer"; }
	cg_assert_contains "$T/$1.txt" "Response verify OK"
}
ocsp_ask ocsp-alice-old "$T/old-ca.pem" "$T/alice-old.pem"
cg_assert_contains "$T/ocsp-alice-old.txt" "alice-old.pem: revoked"
ocsp_ask ocsp-bob-old "$T/old-ca.pem" "$B.pem"
cg_assert_contains "$T/ocsp-bob-old.txt" "bob.pem: good"
ocsp_ask ocsp-carol "$T/new-ca.pem" "$PKI/agents/carol/cert.pem"
cg_assert_contains "$T/ocsp-carol.txt" "cert.pem: good"
echo "transition: old certificates work, renewals (agent renew, EST) and issuance under the new CA, the old CA's CRL and OCSP in force"

# --- retire ---
cg_expect_fail 1 "$CERTGATE_BIN" ca retire -c "$CFG" --serial ABCDEF
cg_assert_contains "$T/err" "no CA certificate with serial ABCDEF"
# bob holds a keep-alive connection on his old-CA certificate across the retirement
# (pings 100 ms apart for up to 30 s): once the gateway trusts only the new CA, it is
# verified again and cut, as a revoked one would be
gw_rpc_request "$T/ping.req" ping /echo
BOB_SERIAL=$(openssl x509 -in "$B.pem" -noout -serial | cut -d= -f2)
gw_client --ca "$T/old-ca.pem" --cert "$B.pem" --key "$B.key" --request "$T/ping.req" \
    --repeat 300 --keepalive-gap-ms 100 >"$T/hold.out" 2>&1 &
HOLD=$!
cg_track_pid "$HOLD"
for i in $(seq 1 50); do
	grep -q "response: HTTP/1.1 200" "$T/hold.out" 2>/dev/null && break
	sleep 0.1
done
cg_assert_contains "$T/hold.out" "response: HTTP/1.1 200"
"$CERTGATE_BIN" ca retire -c "$CFG" --serial "$OLD_SERIAL" >"$T/retire.out" 2>"$T/retire.err" ||
    { cat "$T/retire.out" "$T/retire.err" >&2; cg_fail "ca retire"; }
# the gateway reloads changed files once a second; 10 s covers a loaded machine
gw_wait_log "closing connection from .*serial $BOB_SERIAL\): untrusted" 10 ||
    { tail -n 20 "$GW_LOG" >&2; cg_fail "bob's open old-CA connection not cut after the retirement"; }
for i in $(seq 1 50); do
	grep -q "closed by peer" "$T/hold.out" && break
	sleep 0.1
done
cg_assert_contains "$T/hold.out" "closed by peer"
kill "$HOLD" 2>/dev/null || true
cg_assert_contains "$T/retire.err" "1 valid agent certificate(s) from the retired CA"
cg_assert_eq "$(ncerts "$PKI/ca/ca.pem")" 1 "CAs in ca/ca.pem after the retirement"
cg_assert_eq "$(grep -c 'BEGIN X509 CRL' "$PKI/ca/crl.pem")" 1 "CRLs in ca/crl.pem after the retirement"
cg_assert_eq "$(issuer_of "$PKI/server/cert.pem")" "$NEW_SUBJ" "issuer of the re-issued server certificate"
# once the gateway reloaded, it sends the new server certificate: bob's renewed
# certificate verifies it with the new root alone
until_status 200 "$T/new-ca.pem" "$T/bob2.pem" "$T/bob2.key"
# then bob's old certificate (never revoked, not expired) is refused by the gateway
# (the server verified fine with the same CA file a moment ago)
cg_assert_eq "$(get "$T/new-ca.pem" "$B.pem" "$B.key")" 000 "bob's old-CA certificate after the retirement"
gw_wait_log "handshake failed from .*unable to get local issuer certificate" 5 ||
    cg_fail "the gateway did not refuse bob's old-CA certificate as from an untrusted issuer"
# the renewed agents verify the new server certificate with their ca.pem and are served
cg_assert_eq "$(get "$A/ca.pem" "$A/cert.pem" "$A/key.pem")" 200 "alice after the retirement"
cg_assert_eq "$(get "$PKI/agents/carol/ca.pem" "$PKI/agents/carol/cert.pem" "$PKI/agents/carol/key.pem")" 200 \
    "carol after the retirement"
cg_assert_eq "$(get "$D/ca.pem" "$D/cert.pem" "$D/key.pem")" 200 "dave after the retirement"
# renewal still works under the new CA
"$CERTGATE_BIN" agent renew --url "$MTLS" --dir "$A" >"$T/renew2.out" 2>"$T/renew2.err" ||
    { cat "$T/renew2.out" "$T/renew2.err" >&2; cg_fail "agent renew after the retirement"; }
until_status 200 "$A/ca.pem" "$A/cert.pem" "$A/key.pem"
grep -q '"what":"rollover"' "$PKI/ca-audit.jsonl" || cg_fail "no rollover line in the CA audit log"
grep -q '"what":"retire"' "$PKI/ca-audit.jsonl" || cg_fail "no retire line in the CA audit log"
echo "retired: old CA untrusted, bob's old certificate refused, renewed agents served"
gw_stop
cg_pass
