#!/usr/bin/env bash
# certgate agent enroll / renew with a key in a file, against an EST stand-in
# (tests/tools/est_standin.py: Python's ssl module and `openssl ca`, RFC 7030 wire
# format) on the software CA of a real certgate gateway: the one-time token and its
# CA fingerprint (a wrong one stops the client before it sends anything), --ca,
# --token-file / CERTGATE_TOKEN / --token, the files written (modes, key matches
# certificate), renewal with the current certificate, crash recovery of an
# interrupted replacement, and the renewed directory used by `agent stdio` against
# the gateway. Re-point EST_URL at the gateway's enroll listener once it serves EST.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/gw.sh"
. "$(dirname "$0")/e2e.sh"
. "$(dirname "$0")/agent.sh"
cg_setup
e2e_require_node

UPORT=$(cg_free_port)
e2e_upstream_start "$UPORT"
agent_soft_gateway "http://127.0.0.1:$UPORT/mcp"
agent_est_start
CA_FP=$(openssl x509 -in "$SOFT/ca/ca.pem" -outform DER | sha256sum | cut -c1-64)
enroll() { "$CERTGATE_BIN" agent enroll --url "$EST_URL" "$@"; }
pub_of_cert() { openssl x509 -in "$1" -noout -pubkey; }
pub_of_key() { openssl pkey -in "$1" -pubout; }
serial_of() { openssl x509 -in "$1" -noout -serial | cut -d= -f2; }

# --- malformed tokens: refused before any network traffic -------------------------
for bad in "cg1.abc" "cg2.$CA_FP.$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')" \
    "cg1.${CA_FP^^}.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" \
    "cg1.$CA_FP.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA*"; do
	CERTGATE_TOKEN=$bad cg_expect_fail 1 enroll --agent x --dir "$T/bad"
	grep -q "enrollment token" "$T/err" || { cat "$T/err" >&2; cg_fail "no token message for '$bad'"; }
	if grep -qF -- "${bad#cg1.}" "$T/err"; then cg_fail "the token was echoed in an error"; fi
done
[ "$(agent_est_count cacerts)" -eq 0 ] || cg_fail "a malformed token reached the network"

# --- a token for another CA: the client stops after /cacerts, sends no CSR --------
TOK=$(agent_est_token file-bot)
OTHER_FP=$(printf 'another CA' | sha256sum | cut -c1-64)
CERTGATE_TOKEN="cg1.$OTHER_FP.${TOK##*.}" cg_expect_fail 1 enroll --agent file-bot --dir "$T/a1"
cg_assert_contains "$T/err" "fingerprint"
[ "$(agent_est_count cacerts)" -eq 1 ] || cg_fail "the CA certificates were not fetched"
[ "$(agent_est_count simpleenroll)" -eq 0 ] || cg_fail "a CSR was sent to an unverified server"
[ ! -e "$T/a1/key.pem" ] || cg_fail "a key was written although enrollment was refused"

# --- enroll with the token from the environment -----------------------------------
CERTGATE_TOKEN=$TOK enroll --agent file-bot --dir "$T/a1" >"$T/enroll.out" 2>"$T/enroll.err" || {
	cat "$T/enroll.err" >&2; cg_fail "enroll failed"; }
cg_assert_contains "$T/enroll.out" "enrolled file-bot"
for f in cert.pem ca.pem key.pem; do [ -s "$T/a1/$f" ] || cg_fail "$f missing"; done
[ ! -e "$T/a1/key.uri" ] || cg_fail "key.uri written for a file key"
cg_assert_eq "$(stat -c %a "$T/a1/key.pem")" 600 "key.pem mode"
cg_assert_eq "$(stat -c %a "$T/a1")" 700 "AGENTDIR mode"
cmp -s "$T/a1/ca.pem" "$SOFT/ca/ca.pem" || cg_fail "ca.pem is not the trust anchor"
[ "$(pub_of_cert "$T/a1/cert.pem")" = "$(pub_of_key "$T/a1/key.pem")" ] ||
	cg_fail "key.pem does not match cert.pem"
openssl x509 -in "$T/a1/cert.pem" -noout -subject | grep -q "CN *= *file-bot" ||
	cg_fail "subject is not CN=file-bot"
openssl verify -CAfile "$T/a1/ca.pem" "$T/a1/cert.pem" >/dev/null || cg_fail "cert does not verify"
[ "$(agent_est_count simpleenroll 200)" -eq 1 ] || cg_fail "want one enrollment"

# --- the token works once; a directory with a certificate is not overwritten -----
CERTGATE_TOKEN=$TOK cg_expect_fail 1 enroll --agent file-bot --dir "$T/a2"
cg_assert_contains "$T/err" "HTTP 401"
cg_assert_contains "$T/err" "already used"
TOK2=$(agent_est_token file-bot)
CERTGATE_TOKEN=$TOK2 cg_expect_fail 1 enroll --agent file-bot --dir "$T/a1"
cg_assert_contains "$T/err" "--force"

# --- --token-file, --token, and both at once ---------------------------------------
printf '%s\n' "$TOK2" >"$T/token"
chmod 600 "$T/token"
enroll --agent file-bot --dir "$T/a3" --token-file "$T/token" >"$T/out" 2>"$T/err" || {
	cat "$T/err" >&2; cg_fail "enroll --token-file failed"; }
TOK3=$(agent_est_token file-bot)
cg_expect_fail 1 enroll --agent file-bot --dir "$T/a4" --token-file "$T/token" --token "$TOK3"
cg_assert_contains "$T/err" "give the token once"
enroll --agent file-bot --dir "$T/a4" --token "$TOK3" >"$T/out" 2>"$T/err" || {
	cat "$T/err" >&2; cg_fail "enroll --token failed"; }
cg_assert_contains "$T/err" "visible to other users in ps"

# --- --ca: the given anchor, and a wrong one fails the TLS verification -----------
TOK4=$(agent_est_token file-bot)
CERTGATE_TOKEN=$TOK4 enroll --agent file-bot --dir "$T/a5" --ca "$SOFT/ca/ca.pem" \
    >"$T/out" 2>"$T/err" || { cat "$T/err" >&2; cg_fail "enroll --ca failed"; }
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/o.key" \
    -out "$T/other-ca.pem" -days 2 -subj "/CN=other CA" 2>/dev/null
TOK5=$(agent_est_token file-bot)
before=$(agent_est_count simpleenroll)
CERTGATE_TOKEN=$TOK5 cg_expect_fail 1 enroll --agent file-bot --dir "$T/a6" --ca "$T/other-ca.pem"
cg_assert_contains "$T/err" "certificate"
[ "$(agent_est_count simpleenroll)" -eq "$before" ] || cg_fail "a CSR reached an untrusted server"

# --- option errors -----------------------------------------------------------------
CERTGATE_TOKEN=$TOK5 cg_expect_fail 1 "$CERTGATE_BIN" agent enroll --url "http://127.0.0.1:$EST_PORT" \
    --agent file-bot --dir "$T/a7"
cg_assert_contains "$T/err" "https://"
CERTGATE_TOKEN=$TOK5 cg_expect_fail 1 enroll --agent file-bot --dir "$T/a7" \
    --key 'pkcs11:token=agent;object=k?pin-value=98765432'
cg_assert_contains "$T/err" "pin-value is refused"
cg_assert_not_contains "$T/err" "98765432"
cg_expect_fail 2 "$CERTGATE_BIN" agent enroll --url "$EST_URL" --dir "$T/a7"
cg_expect_fail 2 "$CERTGATE_BIN" agent stdio --url "$GW_URL" --dir "$T/a7" --token x

# --- renewal with the current certificate ------------------------------------------
cp "$T/a1/cert.pem" "$T/cert1.pem"
cp "$T/a1/key.pem" "$T/key1.pem"
S1=$(serial_of "$T/a1/cert.pem")
"$CERTGATE_BIN" agent renew --url "$EST_URL" --dir "$T/a1" >"$T/renew.out" 2>"$T/renew.err" || {
	cat "$T/renew.err" >&2; cg_fail "renew failed"; }
cg_assert_contains "$T/renew.out" "renewed"
S2=$(serial_of "$T/a1/cert.pem")
[ "$S1" != "$S2" ] || cg_fail "renew kept the serial"
cmp -s "$T/key1.pem" "$T/a1/key.pem" && cg_fail "renew kept the key"
[ "$(pub_of_cert "$T/a1/cert.pem")" = "$(pub_of_key "$T/a1/key.pem")" ] ||
	cg_fail "renewed key.pem does not match cert.pem"
cg_assert_eq "$(stat -c %a "$T/a1/key.pem")" 600 "renewed key.pem mode"
[ "$(agent_est_count simplereenroll 200)" -eq 1 ] || cg_fail "want one re-enrollment"
ls "$T/a1" | grep -q '\.new$' && cg_fail "leftover .new files"
cp "$T/a1/cert.pem" "$T/cert2.pem"
cp "$T/a1/key.pem" "$T/key2.pem"

# Renewal needs a certificate the CA issued: without one the stand-in says 403.
cp -r "$T/a1" "$T/foreign"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/foreign/key.pem" \
    -out "$T/foreign/cert.pem" -days 2 -subj "/CN=file-bot" 2>/dev/null
cg_expect_fail 1 "$CERTGATE_BIN" agent renew --url "$EST_URL" --dir "$T/foreign"
cmp -s "$T/foreign/key.pem" "$T/a1/key.pem" && cg_fail "test set-up"
grep -q "certificate\|HTTP 403" "$T/err" || { cat "$T/err" >&2; cg_fail "no reason for the refused renewal"; }

# --- the renewed directory works against the gateway -------------------------------
mapfile -t SARGS < <(agent_stdio_args "$GW_URL" "$T/a1")
agent_client list "$T/list.out" "${SARGS[@]}" --stderr "$T/list-bridge.err" || {
	cat "$T/list.out" "$T/list.out.err" "$T/list-bridge.err" >&2; cg_fail "stdio with the renewed certificate failed"; }
cg_assert_contains "$T/list.out" '"text":"Echo: via bridge"'
e2e_any "$SOFT/audit.jsonl" ".agent == \"file-bot\" and (.serial | ascii_upcase) == \"$S2\" and .method == \"tools/call\"" ||
	cg_fail "the gateway did not see the renewed certificate (serial $S2)"

# --- an interrupted replacement is finished or undone on the next load -------------
load_dir() { "$CERTGATE_BIN" agent stdio --url "$GW_URL" --dir "$1" </dev/null >"$T/load.out" 2>"$T/load.err"; }
mkdir -p "$T/crash"
cp "$T/a1/ca.pem" "$T/crash/"
# (a) the key was renamed into place, the certificate not yet: finished
cp "$T/key2.pem" "$T/crash/key.pem"; cp "$T/cert1.pem" "$T/crash/cert.pem"; cp "$T/cert2.pem" "$T/crash/cert.pem.new"
load_dir "$T/crash" || { cat "$T/load.err" >&2; cg_fail "load after an interrupted replacement (a)"; }
cmp -s "$T/crash/cert.pem" "$T/cert2.pem" || cg_fail "(a) was not finished"
[ ! -e "$T/crash/cert.pem.new" ] || cg_fail "(a) left cert.pem.new"
cg_assert_contains "$T/load.err" "finishing an interrupted certificate replacement"
# (b) both new files written, nothing renamed: finished
cp "$T/key1.pem" "$T/crash/key.pem"; cp "$T/cert1.pem" "$T/crash/cert.pem"
cp "$T/cert2.pem" "$T/crash/cert.pem.new"; cp "$T/key2.pem" "$T/crash/key.pem.new"
load_dir "$T/crash" || { cat "$T/load.err" >&2; cg_fail "load after an interrupted replacement (b)"; }
cmp -s "$T/crash/cert.pem" "$T/cert2.pem" && cmp -s "$T/crash/key.pem" "$T/key2.pem" ||
	cg_fail "(b) was not finished"
# (c) only the new certificate was written: undone, the old pair stays
cp "$T/key1.pem" "$T/crash/key.pem"; cp "$T/cert1.pem" "$T/crash/cert.pem"; cp "$T/cert2.pem" "$T/crash/cert.pem.new"
load_dir "$T/crash" || { cat "$T/load.err" >&2; cg_fail "load after an interrupted replacement (c)"; }
cmp -s "$T/crash/cert.pem" "$T/cert1.pem" && cmp -s "$T/crash/key.pem" "$T/key1.pem" ||
	cg_fail "(c) was not undone"
[ ! -e "$T/crash/cert.pem.new" ] || cg_fail "(c) left cert.pem.new"
cg_assert_contains "$T/load.err" "undoing"
# a key that does not match the certificate is refused with a clear message
cp "$T/key2.pem" "$T/crash/key.pem"
if load_dir "$T/crash"; then cg_fail "a key that does not match cert.pem was accepted"; fi
cg_assert_contains "$T/load.err" "does not belong to cert.pem"

gw_stop
cg_pass
