#!/usr/bin/env bash
# certgate agent enroll / renew with a key in a file, against the gateway's own EST
# (scripts/pki-init --enroll: the enrollment listener, the CA service behind it,
# tokens from scripts/agent-token): the one-time token and its CA fingerprint (a
# wrong one stops the client before it sends a CSR or makes a key), --ca,
# --token-file / CERTGATE_TOKEN / --token, the files written (modes, key matches
# certificate, the token's identity and lifetime), the token refused a second time,
# renewal with the current certificate on the enrollment listener and on the mTLS
# listener right after enrollment (the gateway loads the new identity within about a
# second), renewal refused for a certificate of another CA and for a revoked one,
# every step in the CA's ca-audit.jsonl, crash recovery of an interrupted
# replacement, and the renewed directory used by `agent stdio` against the gateway.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/gw.sh"
. "$(dirname "$0")/e2e.sh"
. "$(dirname "$0")/agent.sh"
cg_setup
e2e_require_node

UPORT=$(cg_free_port)
e2e_upstream_start "$UPORT"
agent_gateway "http://127.0.0.1:$UPORT/mcp"
CA_FP=$(openssl x509 -in "$PKI/ca/ca.pem" -outform DER | sha256sum | cut -c1-64)
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
TOK=$(agent_token file-bot)
OTHER_FP=$(printf 'another CA' | sha256sum | cut -c1-64)
CERTGATE_TOKEN="cg1.$OTHER_FP.${TOK##*.}" cg_expect_fail 1 enroll --agent file-bot --dir "$T/a1"
cg_assert_contains "$T/err" "fingerprint"
[ "$(agent_est_count cacerts)" -eq 1 ] || cg_fail "the CA certificates were not fetched"
[ "$(agent_est_count simpleenroll)" -eq 0 ] || cg_fail "a CSR was sent to an unverified server"
[ ! -e "$T/a1/key.pem" ] || cg_fail "a key was written although enrollment was refused"
[ "$(agent_ca_count refused)" -eq 0 ] && [ "$(agent_ca_count enroll)" -eq 0 ] ||
	cg_fail "the CA service saw a request from an unverified client"

# --- enroll with the token from the environment -----------------------------------
CERTGATE_TOKEN=$TOK enroll --agent file-bot --dir "$T/a1" >"$T/enroll.out" 2>"$T/enroll.err" || {
	cat "$T/enroll.err" >&2; cg_fail "enroll failed"; }
cg_assert_contains "$T/enroll.out" "enrolled file-bot"
for f in cert.pem ca.pem key.pem; do [ -s "$T/a1/$f" ] || cg_fail "$f missing"; done
[ ! -e "$T/a1/key.uri" ] || cg_fail "key.uri written for a file key"
cg_assert_eq "$(stat -c %a "$T/a1/key.pem")" 600 "key.pem mode"
cg_assert_eq "$(stat -c %a "$T/a1")" 700 "AGENTDIR mode"
cmp -s "$T/a1/ca.pem" "$PKI/ca/ca.pem" || cg_fail "ca.pem is not the trust anchor"
[ "$(pub_of_cert "$T/a1/cert.pem")" = "$(pub_of_key "$T/a1/key.pem")" ] ||
	cg_fail "key.pem does not match cert.pem"
openssl x509 -in "$T/a1/cert.pem" -noout -subject | grep -q "CN *= *file-bot" ||
	cg_fail "subject is not CN=file-bot"
openssl verify -CAfile "$T/a1/ca.pem" "$T/a1/cert.pem" >/dev/null || cg_fail "cert does not verify"
[ "$(agent_est_count simpleenroll 200)" -eq 1 ] || cg_fail "want one enrollment"
# What the token said: the agent's identity, its role, the default lifetime of 24 h.
openssl x509 -in "$T/a1/cert.pem" -noout -ext subjectAltName |
	grep -q "URI:spiffe://certgate.local/agent/file-bot" || cg_fail "no SPIFFE URI for file-bot"
jq -e '.agents[] | select(.id == "file-bot" and .roles == ["member"])' "$PKI/agents.json" >/dev/null ||
	cg_fail "the identity map has no file-bot with the token's role"
left=$(( $(date -d "$(openssl x509 -in "$T/a1/cert.pem" -noout -enddate | cut -d= -f2)" +%s) - $(date +%s) ))
[ "$left" -gt $((86400 - 300)) ] && [ "$left" -le 86400 ] || cg_fail "lifetime: $left s left, want 24 h"
S1=$(serial_of "$T/a1/cert.pem")
e2e_any "$CA_AUDIT" ".what == \"enroll\" and .agent == \"file-bot\" and .serial == \"$S1\" and .via == \"est\"" ||
	cg_fail "ca-audit.jsonl does not show the enrollment of serial $S1"

# --- the token works once; a directory with a certificate is not overwritten -----
CERTGATE_TOKEN=$TOK cg_expect_fail 1 enroll --agent file-bot --dir "$T/a2"
cg_assert_contains "$T/err" "HTTP 401"
cg_assert_contains "$T/err" "already used"
e2e_any "$CA_AUDIT" '.what == "refused" and .agent == "file-bot"' ||
	cg_fail "ca-audit.jsonl does not show the refused second use of the token"
TOK2=$(agent_token file-bot)
CERTGATE_TOKEN=$TOK2 cg_expect_fail 1 enroll --agent file-bot --dir "$T/a1"
cg_assert_contains "$T/err" "--force"

# --- --token-file, --token, and both at once ---------------------------------------
printf '%s\n' "$TOK2" >"$T/token"
chmod 600 "$T/token"
enroll --agent file-bot --dir "$T/a3" --token-file "$T/token" >"$T/out" 2>"$T/err" || {
	cat "$T/err" >&2; cg_fail "enroll --token-file failed"; }
TOK3=$(agent_token file-bot)
cg_expect_fail 1 enroll --agent file-bot --dir "$T/a4" --token-file "$T/token" --token "$TOK3"
cg_assert_contains "$T/err" "give the token once"
enroll --agent file-bot --dir "$T/a4" --token "$TOK3" >"$T/out" 2>"$T/err" || {
	cat "$T/err" >&2; cg_fail "enroll --token failed"; }
cg_assert_contains "$T/err" "visible to other users in ps"

# --- --ca: the given anchor, and a wrong one fails the TLS verification -----------
TOK4=$(agent_token file-bot)
CERTGATE_TOKEN=$TOK4 enroll --agent file-bot --dir "$T/a5" --ca "$PKI/ca/ca.pem" \
    >"$T/out" 2>"$T/err" || { cat "$T/err" >&2; cg_fail "enroll --ca failed"; }
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/o.key" \
    -out "$T/other-ca.pem" -days 2 -subj "/CN=other CA" 2>/dev/null
TOK5=$(agent_token file-bot)
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
e2e_any "$CA_AUDIT" ".what == \"renew\" and .agent == \"file-bot\" and .old_serial == \"$S1\" and .serial == \"$S2\"" ||
	cg_fail "ca-audit.jsonl does not show the renewal from $S1 to $S2"
e2e_any "$AUDIT" ".method == \"POST /.well-known/est/simplereenroll\" and .status == 200 and .serial == \"$S1\"" ||
	cg_fail "the enrollment listener did not log the renewal as serial $S1"
ls "$T/a1" | grep -q '\.new$' && cg_fail "leftover .new files"
cp "$T/a1/cert.pem" "$T/cert2.pem"
cp "$T/a1/key.pem" "$T/key2.pem"

# Renewal on the mTLS listener right after an enrollment: the gateway loads the new
# identity within about a second, and `renew` waits for it rather than failing.
TOKF=$(agent_token fresh-bot)
CERTGATE_TOKEN=$TOKF enroll --agent fresh-bot --dir "$T/f" >"$T/out" 2>"$T/err" || {
	cat "$T/err" >&2; cg_fail "enroll fresh-bot failed"; }
F1=$(serial_of "$T/f/cert.pem")
"$CERTGATE_BIN" agent renew --url "$MTLS_URL" --dir "$T/f" >"$T/renew-f.out" 2>"$T/renew-f.err" || {
	cat "$T/renew-f.err" >&2; tail -5 "$T/gw.log" >&2; cg_fail "renew over mTLS right after enrollment failed"; }
F2=$(serial_of "$T/f/cert.pem")
[ "$F1" != "$F2" ] || cg_fail "renew over mTLS kept the serial"
e2e_any "$CA_AUDIT" ".what == \"renew\" and .agent == \"fresh-bot\" and .old_serial == \"$F1\" and .serial == \"$F2\"" ||
	cg_fail "ca-audit.jsonl does not show fresh-bot's renewal over mTLS"

# Renewal needs a certificate the CA issued: one of another CA is refused on both
# listeners (in the TLS handshake, or with 403).
cp -r "$T/a1" "$T/foreign"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/foreign/key.pem" \
    -out "$T/foreign/cert.pem" -days 2 -subj "/CN=file-bot" 2>/dev/null
cmp -s "$T/foreign/key.pem" "$T/a1/key.pem" && cg_fail "test set-up"
renewals=$(agent_ca_count renew)
for u in "$EST_URL" "$MTLS_URL"; do
	cg_expect_fail 1 "$CERTGATE_BIN" agent renew --url "$u" --dir "$T/foreign"
	grep -q "certificate\|HTTP 403" "$T/err" || { cat "$T/err" >&2; cg_fail "no reason for the refused renewal ($u)"; }
done
cg_assert_eq "$(agent_ca_count renew)" "$renewals" "renewals after a foreign certificate"

# A revoked certificate is not renewed, on either listener.
"$CG_SRC/scripts/agent-revoke" --dir "$PKI" --agent fresh-bot >"$T/out" 2>"$T/err" || {
	cat "$T/err" >&2; cg_fail "agent-revoke fresh-bot failed"; }
for u in "$EST_URL" "$MTLS_URL"; do
	cg_expect_fail 1 "$CERTGATE_BIN" agent renew --url "$u" --dir "$T/f"
	grep -q "revoked\|HTTP 403" "$T/err" || { cat "$T/err" >&2; cg_fail "no reason for the refused renewal of a revoked certificate ($u)"; }
done
cg_assert_eq "$(serial_of "$T/f/cert.pem")" "$F2" "the revoked certificate's directory"
cg_assert_eq "$(agent_ca_count renew)" "$renewals" "renewals after a revocation"

# --- a certificate enrolled a moment ago: the gateway may not know it yet ----------
# The gateway loads the identity map within about a second of an enrollment; the
# bridges send again while the certificate is young (10 s after its issuance)
# instead of failing the client's first request.
INIT='{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}'
ACC='Accept: application/json, text/event-stream'
init_stdio() {   # init_stdio DIR OUT: one initialize through `agent stdio`, at once
	printf '%s\n' "$INIT" | timeout -k 5 60 "$CERTGATE_BIN" agent stdio --url "$GW_URL" \
	    --dir "$1" >"$2" 2>"$2.err"
}
init_listen() {   # init_listen PORT OUT: one initialize through `agent listen`; prints the status
	curl -s -o "$2" -w '%{http_code}' -H "$ACC" -H 'Content-Type: application/json' \
	    -d "$INIT" "http://127.0.0.1:$1/mcp"
}
for b in now-stdio now-listen; do
	CERTGATE_TOKEN=$(agent_token "$b") enroll --agent "$b" --dir "$T/$b" >"$T/out" 2>"$T/err" || {
		cat "$T/err" >&2; cg_fail "enroll $b failed"; }
done
init_stdio "$T/now-stdio" "$T/now-stdio.out" || { cat "$T/now-stdio.out.err" >&2; cg_fail "stdio right after enrollment"; }
jq -e 'select(.id == 1) | .result.protocolVersion' "$T/now-stdio.out" >/dev/null || {
	cat "$T/now-stdio.out" "$T/now-stdio.out.err" >&2; cg_fail "initialize through stdio right after enrollment failed"; }
NPORT=$(cg_free_port)
agent_listen_start "$NPORT" "$GW_URL" "$T/now-listen"
cg_assert_eq "$(init_listen "$NPORT" "$T/now-listen.out")" 200 "initialize through listen right after enrollment"
kill -TERM "$AGENT_LISTEN_PID"
grep -h "has not loaded the identity" "$T/now-stdio.out.err" "$T/listen-$NPORT.log" || true

# A young certificate the map really lacks: the bridges ask again until 10 s after its
# issuance, then the client gets the gateway's refusal.
CERTGATE_TOKEN=$(agent_token gone-bot) enroll --agent gone-bot --dir "$T/gone" >"$T/out" 2>"$T/err" || {
	cat "$T/err" >&2; cg_fail "enroll gone-bot failed"; }
G1=$(serial_of "$T/gone/cert.pem")
ISSUED=$(date -d "$(jq -r "select(.what == \"enroll\" and .serial == \"$G1\") | .ts" "$CA_AUDIT")" +%s)
loglines=$(wc -l <"$T/gw.log")
python3 - "$PKI/agents.json" <<'PY'
import json, os, sys
p = sys.argv[1]
m = json.load(open(p))
# Also the two agents enrolled just before: the count of agents the gateway logs
# for the new map then differs from every map it loaded before.
m["agents"] = [a for a in m["agents"] if a["id"] not in ("gone-bot", "now-stdio", "now-listen")]
json.dump(m, open(p + ".tmp", "w"), indent=1)
os.rename(p + ".tmp", p)
PY
NAGENTS=$(jq '.agents | length' "$PKI/agents.json")
for i in $(seq 1 100); do
	tail -n +$((loglines + 1)) "$T/gw.log" | grep -q "reloaded (.*agents.json changed).*, $NAGENTS agents" && break
	sleep 0.1
done
[ "$i" -lt 100 ] || cg_fail "the gateway did not load the identity map without gone-bot"
GPORT=$(cg_free_port)
agent_listen_start "$GPORT" "$GW_URL" "$T/gone"
init_stdio "$T/gone" "$T/gone-stdio.out" &
GSTDIO=$!
cg_assert_eq "$(init_listen "$GPORT" "$T/gone-listen.out")" 403 "initialize with an unmapped certificate"
answered=$(date +%s)
grep -q "certificate is not mapped to an agent" "$T/gone-listen.out" ||
	{ cat "$T/gone-listen.out" >&2; cg_fail "the gateway's refusal was not passed on"; }
[ "$answered" -ge $((ISSUED + 9)) ] ||
	cg_fail "the refusal came $((answered - ISSUED)) s after the issuance: the listener did not wait for the map"
cg_assert_contains "$T/listen-$GPORT.log" "has not loaded the identity of certificate $G1"
wait "$GSTDIO" || true
jq -e 'select(.id == 1) | .error.message | test("not mapped")' "$T/gone-stdio.out" >/dev/null ||
	{ cat "$T/gone-stdio.out" "$T/gone-stdio.out.err" >&2; cg_fail "stdio did not pass the refusal on"; }
cg_assert_contains "$T/gone-stdio.out.err" "has not loaded the identity of certificate $G1"
n403=$(jq -s "[.[] | select(.serial == \"$G1\" and .status == 403)] | length" "$AUDIT")
[ "$n403" -ge 4 ] || cg_fail "want the requests sent again while the certificate was young; $n403 refusals"
echo "unmapped young certificate: $n403 refusals, answered $((answered - ISSUED)) s after the issuance"
kill -TERM "$AGENT_LISTEN_PID"

# --- the renewed directory works against the gateway -------------------------------
mapfile -t SARGS < <(agent_stdio_args "$GW_URL" "$T/a1")
agent_client list "$T/list.out" "${SARGS[@]}" --stderr "$T/list-bridge.err" || {
	cat "$T/list.out" "$T/list.out.err" "$T/list-bridge.err" >&2; cg_fail "stdio with the renewed certificate failed"; }
cg_assert_contains "$T/list.out" '"text":"Echo: via bridge"'
e2e_any "$AUDIT" ".agent == \"file-bot\" and (.serial | ascii_upcase) == \"$S2\" and .method == \"tools/call\"" ||
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

# --- a lost answer: the agent retries with the same key and gets its certificate ---
# The CA service is stopped while the request waits for it: the gateway answers 503
# (Retry-After) at its 10 s deadline, the agent waits and sends the same CSR again;
# once the service runs again, that retry gets the certificate for the same key.
CAPID=$(sed -n 's/.*started the CA service (pid \([0-9]*\)).*/\1/p' "$T/gw.log" | tail -n1)
[ -n "$CAPID" ] && kill -0 "$CAPID" || cg_fail "cannot find the CA service's pid"
TOKR=$(agent_token retry-bot)
kill -STOP "$CAPID"
CERTGATE_TOKEN=$TOKR enroll --agent retry-bot --ca "$PKI/ca/ca.pem" --dir "$T/r1" \
    >"$T/retry.out" 2>"$T/retry.err" &
epid=$!
for i in $(seq 1 300); do
	grep -q "trying again with the same key" "$T/retry.err" && break
	kill -0 "$epid" 2>/dev/null || break
	sleep 0.1
done
kill -CONT "$CAPID"
rc=0
wait "$epid" || rc=$?
[ "$rc" -eq 0 ] || { cat "$T/retry.err" >&2; cg_fail "enroll did not survive a lost answer (exit $rc)"; }
cg_assert_contains "$T/retry.err" "HTTP 503"
cg_assert_contains "$T/retry.err" "trying again with the same key"
cg_assert_contains "$T/retry.out" "enrolled retry-bot"
[ "$(pub_of_cert "$T/r1/cert.pem")" = "$(pub_of_key "$T/r1/key.pem")" ] ||
	cg_fail "after retries, key.pem does not match cert.pem"
SR=$(serial_of "$T/r1/cert.pem")
e2e_any "$CA_AUDIT" ".what == \"enroll\" and .agent == \"retry-bot\" and .serial == \"$SR\"" ||
	cg_fail "the retried enrollment did not get the certificate the token was spent for"
[ "$(jq -s '[.[] | select(.what == "enroll" and .agent == "retry-bot")] | length' "$CA_AUDIT")" = 1 ] ||
	cg_fail "the token of the retried enrollment was spent more than once"

gw_stop
cg_pass
