#!/bin/bash
# Configuration and reload faults.
#  1. At start-up, a broken configuration makes `certgate serve` and `certgate check`
#     exit non-zero with the reason on stderr: bad JSON, an unknown key, a missing
#     config file, a missing certificate file, a missing PIN file, a wrong PIN, a key
#     label that is not in the token, an extractable token key without
#     tls.allow_extractable_key. No PIN ever appears in the output.
#  2. An expired CRL at start-up (software CA: `openssl ca -gencrl` with a past
#     -crl_nextupdate): the gateway says so in its log and refuses every client
#     ("CRL has expired"); `certgate check` reports it too.
#  3. At reload (change detection and SIGHUP), a broken identity map, a broken CRL, a
#     CRL from another CA and a CRL with our CA's name but another CA's signature are
#     rejected: the previous state stays (the good agent is served, the revoked one
#     stays refused), the log says why, and certgate_reloads_total{result="failed"}
#     on the admin listener grows by one per rejected reload.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
. "$HERE/gw.sh"
cg_setup
UP_PORT=$(cg_free_port)
cg_pki_init --upstream "http://127.0.0.1:$UP_PORT/mcp"
gw_upstream_start "$UP_PORT"
CFG=$PKI/certgate.json
cp "$CFG" "$T/good.json"
PIN=$(cat "$PKI/token/user.pin")

# --- 1. start-up faults ---------------------------------------------------------------

# variant NAME PYTHON-EXPR : writes $PKI/NAME.json, the good config changed by the
# expression (c is the parsed config). Lives next to the good one so relative paths
# resolve the same way.
variant() {
	python3 - "$T/good.json" "$PKI/$1.json" "$2" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1]))
exec(sys.argv[3])
json.dump(c, open(sys.argv[2], "w"), indent=1)
EOF
}

# both_fail CONFIG PATTERN WHAT : `check` and `serve` both exit non-zero (serve within
# 60 s, i.e. it does not start) and print PATTERN (grep -E) on stderr.
both_fail() {
	local cfg=$1 pat=$2 what=$3 cmd rc
	for cmd in check serve; do
		rc=0
		timeout 60 "$CERTGATE_BIN" "$cmd" -c "$cfg" >"$T/out" 2>"$T/err" </dev/null || rc=$?
		[ "$rc" -ne 0 ] || { cat "$T/out" "$T/err" >&2; cg_fail "$what: certgate $cmd exited 0"; }
		[ "$rc" -ne 124 ] || { cat "$T/err" >&2; cg_fail "$what: certgate $cmd did not exit (it started)"; }
		grep -Eq -- "$pat" "$T/err" || {
			sed 's/^/  | /' "$T/err" >&2
			cg_fail "$what: certgate $cmd: stderr does not say '$pat'"
		}
		grep -qF -- "$PIN" "$T/out" "$T/err" && cg_fail "$what: certgate $cmd printed the PIN"
		grep -qF "configuration OK" "$T/out" && cg_fail "$what: certgate $cmd said configuration OK"
		echo "$what: certgate $cmd exit $rc: $(grep -E -m1 -- "$pat" "$T/err")"
	done
}

"$CERTGATE_BIN" check -c "$CFG" >"$T/out" 2>"$T/err" || { cat "$T/err" >&2; cg_fail "good config fails check"; }
cg_assert_contains "$T/out" "configuration OK"

printf '{ "listen": "127.0.0.1:1", "workers": 0\n  "upstream": {} }\n' >"$PKI/badjson.json"
both_fail "$PKI/badjson.json" 'badjson.json:2: .*invalid JSON' "bad JSON"

variant unknown 'c["tls"]["crl_chek"] = True'
both_fail "$PKI/unknown.json" 'unknown.json:[0-9]+: \$\.tls\.crl_chek: unknown key' "unknown key"

both_fail "$PKI/missing.json" 'missing.json.*cannot read: No such file or directory' "missing config file"

variant nocert 'c["tls"]["cert"] = "server/missing.pem"'
both_fail "$PKI/nocert.json" '\$\.tls\.cert: cannot read .*server/missing\.pem: No such file' "missing certificate file"

variant nopinfile 'c["pkcs11"]["pin_file"] = "token/missing.pin"'
both_fail "$PKI/nopinfile.json" '\$\.pkcs11\.pin_file: cannot read .*token/missing\.pin: No such file' "missing PIN file"

# A wrong PIN in the PIN file (SoftHSM has no lockout, so a few failed logins are fine).
umask 077
echo "9${PIN}9" >"$T/wrong.pin"
variant wrongpin "c[\"pkcs11\"][\"pin_file\"] = \"$T/wrong.pin\""
both_fail "$PKI/wrongpin.json" 'login to token .certgate. failed: CKR_PIN_INCORRECT' "wrong PIN"
grep -qF "9${PIN}9" "$T/err" && cg_fail "the wrong PIN was printed"

variant nokey 'c["tls"]["key"] = c["tls"]["key"].replace("object=certgate-server", "object=no-such-key")'
both_fail "$PKI/nokey.json" 'object=no-such-key.*no private key with that label in token' "key label not in the token"

# An extractable key in the token (pkcs11-tool reads the PIN from the environment).
CG_TEST_PIN=$PIN pkcs11-tool --module "$CG_MODULE" --token-label certgate --login \
    --pin env:CG_TEST_PIN --keypairgen --key-type EC:prime256v1 --label extractable-key \
    --id 7e57 --extractable --usage-sign >"$T/p11tool.out" 2>&1 ||
    { cat "$T/p11tool.out" >&2; cg_fail "pkcs11-tool could not create an extractable key"; }
variant extractable 'c["tls"]["key"] = c["tls"]["key"].replace("object=certgate-server", "object=extractable-key")'
both_fail "$PKI/extractable.json" 'object=extractable-key.*the key is extractable.*allow_extractable_key' \
    "extractable key"
# With the override the key is accepted (and then fails only because the server
# certificate belongs to another key): proof that the refusal was about extractability.
variant extractable_ok 'c["tls"]["key"] = c["tls"]["key"].replace("object=certgate-server", "object=extractable-key"); c["tls"]["allow_extractable_key"] = True'
both_fail "$PKI/extractable_ok.json" 'does not match the server key' "extractable key allowed"
cg_assert_contains "$T/err" "using a key that is extractable"

# --- 2. expired CRL at start-up -------------------------------------------------------
SOFT=$T/soft
SOFT_PORT=$(cg_free_port)
gw_soft_pki "$SOFT" "$SOFT_PORT" "http://127.0.0.1:$UP_PORT/mcp" || cg_fail "gw_soft_pki failed"
gw_soft_issue "$SOFT" bot || cg_fail "gw_soft_issue failed"
GW_SAN=DNS:x openssl ca -batch -config "$SOFT/ca/openssl.cnf" -gencrl \
    -crl_lastupdate 20200101000000Z -crl_nextupdate 20200108000000Z \
    -out "$SOFT/ca/crl.pem" 2>"$T/gencrl.err" || { cat "$T/gencrl.err" >&2; cg_fail "cannot make an expired CRL"; }
openssl crl -in "$SOFT/ca/crl.pem" -noout -nextupdate | grep -q "2020" || cg_fail "CRL nextUpdate not in the past"

rc=0
"$CERTGATE_BIN" check -c "$SOFT/certgate.json" >"$T/out" 2>"$T/err" || rc=$?
cg_assert_contains "$T/err" "expired at Jan  8 00:00:00 2020 GMT; every client will be refused"
[ "$rc" -ne 0 ] || cg_fail "certgate check accepted an expired CRL (exit 0)"
cg_assert_contains "$T/err" "every client would be refused"

gw_rpc_request "$T/ping.req" ping
gw_start "$SOFT/certgate.json" "$T/soft-gw.log"
gw_log_contains "CRL .*crl.pem expired at .*2020.*every client will be refused" ||
    { cat "$T/soft-gw.log" >&2; cg_fail "no log line about the expired CRL at start-up"; }
for i in 1 2 3; do
	gw_client --ca "$SOFT/ca/ca.pem" --cert "$SOFT/agents/bot/cert.pem" \
	    --key "$SOFT/agents/bot/key.pem" --request "$T/ping.req" >"$T/c.out" 2>&1 || true
	cg_assert_contains "$T/c.out" "handshake: failed"
	cg_assert_not_contains "$T/c.out" "response:"
done
gw_wait_log "handshake failed from 127\.0\.0\.1:[0-9]+: certificate verify failed: CRL has expired" 5 ||
    { cat "$T/soft-gw.log" >&2; cg_fail "the refusal's log line does not name the expired CRL"; }
# The periodic check repeats the reason for operators who only watch the error level.
gw_wait_log "state_check_crl_expiry: CRL .* expired at 2020-01-08" 5 ||
    cg_fail "the periodic CRL check does not report the expired CRL"
echo "expired CRL: $(grep -m1 "CRL has expired" "$T/soft-gw.log")"
# A fresh CRL (change detection) lets the client in again: the refusal was the CRL.
GW_SAN=DNS:x openssl ca -batch -config "$SOFT/ca/openssl.cnf" -gencrl \
    -out "$SOFT/ca/crl.new" 2>/dev/null || cg_fail "cannot re-sign the soft CRL"
mv "$SOFT/ca/crl.new" "$SOFT/ca/crl.pem"
gw_wait_log "reloaded \(.*crl.pem changed\)" 5 || cg_fail "fresh CRL not reloaded"
gw_client --ca "$SOFT/ca/ca.pem" --cert "$SOFT/agents/bot/cert.pem" \
    --key "$SOFT/agents/bot/key.pem" --request "$T/ping.req" >"$T/c.out" 2>&1 || true
cg_assert_contains "$T/c.out" "response: HTTP/1.1 200"
gw_stop

# --- 3. reload faults -------------------------------------------------------------------
for a in good victim; do
	"$CG_SRC/scripts/agent-issue" --dir "$PKI" --agent "$a" --role admin >/dev/null 2>"$T/issue.err" ||
	    { cat "$T/issue.err" >&2; cg_fail "agent-issue $a failed"; }
done
"$CG_SRC/scripts/agent-revoke" --dir "$PKI" --agent victim >/dev/null 2>"$T/revoke.err" ||
    { cat "$T/revoke.err" >&2; cg_fail "agent-revoke failed"; }
A=$PKI/agents
gw_start "$CFG" "$T/gw.log"

metric() {
	curl -s "http://127.0.0.1:$CG_ADMIN_PORT/metrics" | awk -v m="$1" '$1 == m { print $2 }'
}
failed() { metric 'certgate_reloads_total{result="failed"}'; }
reloads_ok() { metric 'certgate_reloads_total{result="ok"}'; }

served() {
	gw_client --ca "$PKI/ca/ca.pem" --cert "$A/$1/cert.pem" --key "$A/$1/key.pem" \
	    --request "$T/ping.req" >"$T/c.out" 2>&1 || true
	grep -q "response: HTTP/1.1 200" "$T/c.out"
}

# old_state_stays WHAT : the good agent is served, the revoked one still refused.
old_state_stays() {
	served good || { cat "$T/c.out" >&2; cg_fail "$1: the good agent is no longer served"; }
	if served victim; then
		cg_fail "$1: the revoked agent is served (the revocation was lost)"
	fi
}

# replace FILE CONTENT-FILE : atomic replacement, one change for the file watcher.
replace() {
	cp "$2" "$1.tmp"
	mv "$1.tmp" "$1"
}

# count PATTERN : lines of the gateway log matching PATTERN.
count() {
	grep -cE -- "$1" "$GW_LOG" || true
}

# fault WHAT LOG-PATTERN CMD... : runs CMD (which makes the gateway reload something
# broken), then waits for one more log line matching LOG-PATTERN and for "the previous
# configuration stays in force", checks that the failed-reload counter grew by exactly
# one and that the old state is still in force.
fault() {
	local what=$1 pat=$2 n0 s0 f0 f i
	shift 2
	n0=$(count "$pat")
	s0=$(count "failed; the previous configuration stays in force")
	f0=$(failed)
	"$@"
	for i in $(seq 1 50); do
		[ "$(count "$pat")" -gt "$n0" ] && [ "$(count "stays in force")" -gt "$s0" ] && break
		sleep 0.1
	done
	[ "$(count "$pat")" -gt "$n0" ] || { tail -20 "$GW_LOG" >&2; cg_fail "$what: not reported ($pat)"; }
	[ "$(count "stays in force")" -gt "$s0" ] ||
	    cg_fail "$what: the log does not say the previous configuration stays"
	for i in $(seq 1 20); do
		f=$(failed)
		[ "$f" = $((f0 + 1)) ] && break
		sleep 0.1
	done
	[ "$f" = $((f0 + 1)) ] ||
	    cg_fail "$what: certgate_reloads_total{result=\"failed\"} is $f, expected $((f0 + 1))"
	old_state_stays "$what"
	echo "$what: rejected (failed reloads $f0 -> $f): $(grep -E -- "$pat" "$GW_LOG" | tail -1 | cut -c 26-)"
}

# restore FILE GOOD : puts the good file back and waits for a successful reload.
restore() {
	local ok0 i
	ok0=$(reloads_ok)
	replace "$1" "$2"
	for i in $(seq 1 50); do
		[ "$(reloads_ok)" -gt "$ok0" ] && return 0
		sleep 0.1
	done
	cg_fail "restoring $1 did not reload"
}

old_state_stays "before any fault"
[ -n "$(failed)" ] || cg_fail "no certgate_reloads_total{result=\"failed\"} on /metrics"
cp "$PKI/agents.json" "$T/agents.good"
cp "$PKI/ca/crl.pem" "$T/crl.good"

# Broken identity map (change detection), then the same file again with SIGHUP.
printf '{ "roles": { "admin": ["*"] }, "agents": [ { "id": "x", ' >"$T/agents.bad"
fault "broken identity map" "identity map .*agents\.json rejected" \
    replace "$PKI/agents.json" "$T/agents.bad"
fault "broken identity map (SIGHUP)" "identity map .*agents\.json rejected" kill -HUP "$GW_PID"
# A well-formed map with a semantic error is rejected the same way.
python3 - "$T/agents.good" "$T/agents.bad2" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
m["agents"][0]["roles"] = ["no-such-role"]
json.dump(m, open(sys.argv[2], "w"))
PY
fault "identity map with an unknown role" "identity map .*agents\.json rejected: .*no-such-role" \
    replace "$PKI/agents.json" "$T/agents.bad2"
restore "$PKI/agents.json" "$T/agents.good"

# Broken CRL.
echo "not a CRL" >"$T/crl.bad"
fault "broken CRL" "cannot parse CRL .*crl\.pem" replace "$PKI/ca/crl.pem" "$T/crl.bad"
restore "$PKI/ca/crl.pem" "$T/crl.good"

# A CRL from another CA (its issuer is not in tls.ca). It does not list the victim:
# accepting it would un-revoke them.
OTHER=$T/other
gw_soft_pki "$OTHER" "$(cg_free_port)" || cg_fail "gw_soft_pki (other CA) failed"
fault "CRL of another CA" "CRL .*crl\.pem: issuer is not one of the CAs in tls\.ca" \
    replace "$PKI/ca/crl.pem" "$OTHER/ca/crl.pem"
restore "$PKI/ca/crl.pem" "$T/crl.good"

# A CRL that names our CA as issuer but is signed by another key.
subj=$(openssl x509 -in "$PKI/ca/ca.pem" -noout -subject -nameopt compat | sed 's/^subject=//')
openssl req -x509 -key "$OTHER/ca/ca.key" -out "$OTHER/ca/ca.pem" -days 30 -subj "$subj" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    2>"$T/req.err" || { cat "$T/req.err" >&2; cg_fail "cannot make the impostor CA"; }
GW_SAN=DNS:x openssl ca -batch -config "$OTHER/ca/openssl.cnf" -gencrl -out "$T/crl.forged" \
    2>"$T/gencrl.err" || { cat "$T/gencrl.err" >&2; cg_fail "cannot sign the forged CRL"; }
[ "$(openssl crl -in "$T/crl.forged" -noout -issuer -nameopt compat)" = "issuer=$subj" ] ||
    cg_fail "forged CRL issuer is not '$subj'"
fault "CRL with our CA's name and another CA's signature" \
    "CRL .*crl\.pem: signature does not verify with the CA certificate" \
    replace "$PKI/ca/crl.pem" "$T/crl.forged"
fault "forged CRL (SIGHUP)" "CRL .*crl\.pem: signature does not verify" kill -HUP "$GW_PID"
restore "$PKI/ca/crl.pem" "$T/crl.good"
old_state_stays "after every fault"
echo "reloads: ok $(reloads_ok), failed $(failed)"

gw_stop
cg_pass
