#!/usr/bin/env bash
# The agent's key inside a PKCS#11 token (SoftHSM, a token of the agent's own, apart
# from anything the gateway uses): `certgate agent enroll --key pkcs11:URI` makes the
# key in the token (sensitive, never extractable) and stores only its URI in
# AGENTDIR/key.uri, the PIN coming from a file through pin-source (or from
# CERTGATE_PKCS11_PIN); the official SDK's StdioClientTransport then drives `agent
# stdio`, which signs its TLS handshakes in the token, against a real gateway;
# `agent renew` makes a new key in the same token under a new label. Enrollment and
# renewal go to the gateway's own EST (scripts/pki-init --enroll, a token from
# scripts/agent-token), the renewal over the mTLS listener with the token key.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/gw.sh"
. "$(dirname "$0")/e2e.sh"
. "$(dirname "$0")/agent.sh"
cg_setup
e2e_require_node
command -v softhsm2-util >/dev/null || cg_fail "softhsm2-util missing (apt-get install softhsm2)"
command -v pkcs11-tool >/dev/null || cg_fail "pkcs11-tool missing (apt-get install opensc)"

UPORT=$(cg_free_port)
e2e_upstream_start "$UPORT"
agent_gateway "http://127.0.0.1:$UPORT/mcp"

# --- the agent's own token -----------------------------------------------------------
AT=$T/agent-token
mkdir -p "$AT/tokens"
chmod 700 "$AT"
cat >"$AT/softhsm2.conf" <<CONF
directories.tokendir = $AT/tokens
objectstore.backend = file
log.level = ERROR
CONF
PIN=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
SOPIN=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
(umask 077; printf '%s\n' "$PIN" >"$AT/user.pin")
export SOFTHSM2_CONF=$AT/softhsm2.conf
softhsm2-util --init-token --free --label agent --pin "$PIN" --so-pin "$SOPIN" >/dev/null
MOD=$CG_MODULE
URI="pkcs11:token=agent;object=hsm-bot?module-path=$MOD&pin-source=file:$AT/user.pin"
p11() { pkcs11-tool --module "$MOD" --token-label agent --login --pin "$PIN" "$@" 2>/dev/null; }

# --- a token naming another CA: refused before a key is made in the token ---------
TOK=$(agent_token hsm-bot)
OTHER_FP=$(printf 'another CA' | sha256sum | cut -c1-64)
CERTGATE_TOKEN="cg1.$OTHER_FP.${TOK##*.}" cg_expect_fail 1 "$CERTGATE_BIN" agent enroll \
    --url "$EST_URL" --agent hsm-bot --dir "$T/a" --key "$URI"
cg_assert_contains "$T/err" "fingerprint"
p11 --list-objects >"$T/objs0" || true
cg_assert_not_contains "$T/objs0" "hsm-bot"
[ "$(agent_est_count simpleenroll)" -eq 0 ] || cg_fail "a CSR was sent to an unverified server"

# --- enroll with the key made in the token ----------------------------------------
printf '%s\n' "$TOK" >"$T/token"
chmod 600 "$T/token"
"$CERTGATE_BIN" agent enroll --url "$EST_URL" --agent hsm-bot --token-file "$T/token" \
    --dir "$T/a" --key "$URI" >"$T/enroll.out" 2>"$T/enroll.err" || {
	cat "$T/enroll.err" >&2; cg_fail "enroll with a token key failed"; }
cg_assert_contains "$T/enroll.out" "key in the token"
[ ! -e "$T/a/key.pem" ] || cg_fail "key.pem written for a token key"
cg_assert_eq "$(cat "$T/a/key.uri")" "$URI" "key.uri"
cg_assert_not_contains "$T/a/key.uri" "$PIN"
grep -rqF -- "$PIN" "$T/a" && cg_fail "the PIN is in AGENTDIR"
p11 --list-objects --type privkey >"$T/objs"
cg_assert_contains "$T/objs" "label:      hsm-bot"
cg_assert_contains "$T/objs" "never extractable"
cg_assert_contains "$T/objs" "sensitive"
# The certificate is for the token's key.
p11 --read-object --type pubkey --label hsm-bot -o "$T/pub.der"
openssl pkey -pubin -inform DER -in "$T/pub.der" -outform PEM >"$T/pub-token.pem"
openssl x509 -in "$T/a/cert.pem" -noout -pubkey >"$T/pub-cert.pem"
cmp -s "$T/pub-token.pem" "$T/pub-cert.pem" || cg_fail "cert.pem is not for the token's key"

# --- the official SDK through `agent stdio`, signing in the token -------------------
mapfile -t SARGS < <(agent_stdio_args "$GW_URL" "$T/a")
agent_client full "$T/full.out" "${SARGS[@]}" --env "SOFTHSM2_CONF=$SOFTHSM2_CONF" \
    --stderr "$T/bridge.err" || {
	cat "$T/full.out" "$T/full.out.err" "$T/bridge.err" >&2; tail -20 "$T/gw.log" >&2
	cg_fail "SDK client through agent stdio with a token key failed"; }
cg_assert_contains "$T/full.out" '"event":"ok","scenario":"full"'
cg_assert_contains "$T/bridge.err" "token key"
S1=$(openssl x509 -in "$T/a/cert.pem" -noout -serial | cut -d= -f2)
e2e_any "$AUDIT" ".agent == \"hsm-bot\" and (.serial | ascii_upcase) == \"$S1\" and .name == \"echo\"" ||
	cg_fail "no audit line for hsm-bot's echo"

# --- renewal: a new key in the same token, a new label -----------------------------
# Over the mTLS listener: the TLS handshake with the gateway is signed in the token.
"$CERTGATE_BIN" agent renew --url "$MTLS_URL" --dir "$T/a" >"$T/renew.out" 2>"$T/renew.err" || {
	cat "$T/renew.err" >&2; cg_fail "renew with a token key failed"; }
S2=$(openssl x509 -in "$T/a/cert.pem" -noout -serial | cut -d= -f2)
[ "$S1" != "$S2" ] || cg_fail "renewal kept the serial"
e2e_any "$CA_AUDIT" ".what == \"enroll\" and .agent == \"hsm-bot\" and .serial == \"$S1\"" ||
	cg_fail "ca-audit.jsonl has no enrollment of hsm-bot with serial $S1"
e2e_any "$CA_AUDIT" ".what == \"renew\" and .agent == \"hsm-bot\" and .old_serial == \"$S1\" and .serial == \"$S2\"" ||
	cg_fail "ca-audit.jsonl has no renewal of hsm-bot from $S1 to $S2"
e2e_any "$AUDIT" ".method == \"POST /.well-known/est/simplereenroll\" and .agent == \"hsm-bot\" and .status == 200 and (.serial | ascii_upcase) == \"$S1\"" ||
	cg_fail "the gateway did not log the renewal on its mTLS listener with serial $S1"
NEWURI=$(cat "$T/a/key.uri")
[[ "$NEWURI" =~ object=hsm-bot-[0-9]{8}T[0-9]{6}Z\? ]] || cg_fail "renewed key.uri: $NEWURI"
cg_assert_contains "$T/a/key.uri" "pin-source=file:$AT/user.pin"
[ ! -e "$T/a/key.pem" ] || cg_fail "renewal wrote key.pem for a token key"
NEWLABEL=$(sed 's/.*object=\([^?;]*\).*/\1/' "$T/a/key.uri")
p11 --list-objects --type privkey >"$T/objs2"
cg_assert_contains "$T/objs2" "label:      $NEWLABEL"
cg_assert_contains "$T/renew.err" "stays in the token"
agent_client list "$T/list.out" "${SARGS[@]}" --env "SOFTHSM2_CONF=$SOFTHSM2_CONF" \
    --stderr "$T/bridge2.err" || {
	cat "$T/list.out" "$T/bridge2.err" >&2; cg_fail "agent stdio with the renewed token key failed"; }
e2e_any "$AUDIT" ".agent == \"hsm-bot\" and (.serial | ascii_upcase) == \"$S2\" and .name == \"echo\"" ||
	cg_fail "the gateway did not see the renewed certificate"

# --- PIN and module from the environment; clear errors without them ----------------
mkdir "$T/b"
cp "$T/a/cert.pem" "$T/a/ca.pem" "$T/b/"
printf 'pkcs11:token=agent;object=%s\n' "$NEWLABEL" >"$T/b/key.uri"
CERTGATE_PKCS11_MODULE=$MOD CERTGATE_PKCS11_PIN=$PIN "$CERTGATE_BIN" agent stdio --url "$GW_URL" \
    --dir "$T/b" </dev/null >"$T/env.out" 2>"$T/env.err" || {
	cat "$T/env.err" >&2; cg_fail "PIN and module from the environment did not work"; }
cg_expect_fail 1 "$CERTGATE_BIN" agent stdio --url "$GW_URL" --dir "$T/b"
cg_assert_contains "$T/err" "module"
CERTGATE_PKCS11_MODULE=$MOD cg_expect_fail 1 "$CERTGATE_BIN" agent stdio --url "$GW_URL" --dir "$T/b"
cg_assert_contains "$T/err" "PIN"
# A PIN in key.uri is refused like on the command line.
printf 'pkcs11:token=agent;object=%s?module-path=%s&pin-value=%s\n' "$NEWLABEL" "$MOD" "$PIN" >"$T/b/key.uri"
cg_expect_fail 1 "$CERTGATE_BIN" agent stdio --url "$GW_URL" --dir "$T/b"
cg_assert_contains "$T/err" "pin-value is refused"
cg_assert_not_contains "$T/err" "$PIN"
# A label already taken in the token: enrollment says so.
TOK2=$(agent_token hsm-bot)
CERTGATE_TOKEN=$TOK2 cg_expect_fail 1 "$CERTGATE_BIN" agent enroll --url "$EST_URL" --agent hsm-bot \
    --dir "$T/c" --key "$URI"
cg_assert_contains "$T/err" "already exists"

gw_stop
cg_pass
