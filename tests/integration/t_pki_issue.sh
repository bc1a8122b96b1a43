#!/usr/bin/env bash
# agent-issue / certgate ca issue: certificate contents, key handling, identity map,
# audit, agent-list, CSR issuance, and argument errors that must change nothing.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cg_setup
cg_pki_init
P=$PKI
S=$CG_SRC/scripts

"$S/agent-issue" --help >"$T/help"
cg_assert_contains "$T/help" "--agent ID"

# --- a generated key ------------------------------------------------------
serial=$("$S/agent-issue" --dir "$P" --agent research-bot --role guest --role member \
    --scope 'tools:search_*' --scope 'prompts:summar?' --hours 5 2>"$T/issue.err")
[[ "$serial" =~ ^[0-9A-F]+$ ]] || cg_fail "agent-issue printed '$serial', want one hex serial"
A=$P/agents/research-bot
cert=$A/cert.pem
openssl verify -CAfile "$P/ca/ca.pem" "$cert" >/dev/null 2>&1 || cg_fail "agent cert does not verify"
openssl verify -CAfile "$A/ca.pem" "$cert" >/dev/null 2>&1 || cg_fail "agent ca.pem is not the CA"
cmp -s "$A/ca.pem" "$P/ca/ca.pem" || cg_fail "agents/ID/ca.pem differs from ca/ca.pem"
cg_assert_eq "$(openssl x509 -in "$cert" -noout -serial)" "serial=$serial" "certificate serial"
openssl x509 -in "$cert" -noout -text >"$T/cert.txt"
cg_assert_contains "$T/cert.txt" "URI:spiffe://certgate.local/agent/research-bot"
cg_assert_contains "$T/cert.txt" "TLS Web Client Authentication"
cg_assert_contains "$T/cert.txt" "CA:FALSE"
cg_assert_contains "$T/cert.txt" "Digital Signature"
cg_assert_contains "$T/cert.txt" "X509v3 Authority Key Identifier"
cg_assert_contains "$T/cert.txt" "X509v3 Subject Key Identifier"
cg_assert_eq "$(openssl x509 -in "$cert" -noout -subject)" "subject=CN = research-bot" "subject"
nb=$(date -u -d "$(openssl x509 -in "$cert" -noout -startdate | cut -d= -f2)" +%s)
na=$(date -u -d "$(openssl x509 -in "$cert" -noout -enddate | cut -d= -f2)" +%s)
life=$((na - nb))
[ "$life" -ge $((5 * 3600 + 300 - 5)) ] && [ "$life" -le $((5 * 3600 + 300 + 5)) ] ||
	cg_fail "lifetime $life s, want 5 h + 5 min"
now=$(date -u +%s)
[ $((now - nb)) -ge 290 ] && [ $((now - nb)) -le 320 ] || cg_fail "notBefore is not now - 5 min"

# Positive serial of at most 128 bits.
[ ${#serial} -le 32 ] || cg_fail "serial $serial longer than 128 bits"

cg_assert_eq "$(stat -c %a "$A/key.pem")" 600 "mode of key.pem"
cg_assert_eq "$(stat -c %a "$A")" 700 "mode of the agent directory"
[ "$(openssl pkey -in "$A/key.pem" -pubout)" = "$(openssl x509 -in "$cert" -noout -pubkey)" ] ||
	cg_fail "key.pem does not match cert.pem"
openssl pkey -in "$A/key.pem" -noout -text 2>/dev/null | grep -q "prime256v1" || cg_fail "agent key is not P-256"
[ -f "$P/ca/certs/$serial.pem" ] || cg_fail "ca/certs/$serial.pem missing"
cmp -s "$P/ca/certs/$serial.pem" "$cert" || cg_fail "archived certificate differs"

# Identity map.
python3 - "$P/agents.json" <<'PY' || cg_fail "agents.json does not hold the agent as expected"
import json, sys
m = json.load(open(sys.argv[1]))
assert set(m["roles"]) == {"admin", "member", "guest"}, m["roles"]
a = [x for x in m["agents"] if x["id"] == "research-bot"]
assert len(a) == 1, m["agents"]
a = a[0]
assert a["uri"] == "spiffe://certgate.local/agent/research-bot", a
assert a["roles"] == ["guest", "member"], a
assert a["scopes"] == ["tools:search_*", "prompts:summar?"], a
PY

# Audit trail and listing.
grep -F '"what":"issue"' "$P/ca-audit.jsonl" | grep -F "\"serial\":\"$serial\"" |
	grep -qF '"agent":"research-bot"' || cg_fail "ca-audit.jsonl has no issue line for $serial"
python3 -c 'import json,sys; [json.loads(l) for l in open(sys.argv[1])]' "$P/ca-audit.jsonl" ||
	cg_fail "ca-audit.jsonl is not JSON lines"
"$S/agent-list" --dir "$P" >"$T/list"
grep -E "^$serial +research-bot +CN=research-bot +[0-9T:Z-]+ +(4h5[0-9]m|5h0m) +valid$" "$T/list" >/dev/null ||
	{ cat "$T/list" >&2; cg_fail "agent-list does not show research-bot valid with ~5 h left"; }
# The server certificate is not an agent: agent-list leaves it out, ca list shows "-".
grep -q "certgate server" "$T/list" && { cat "$T/list" >&2; cg_fail "agent-list lists the server certificate"; }
"$CERTGATE_BIN" ca list -c "$P/certgate.json" >"$T/calist"
grep -Eq "^[0-9A-F]+ +- +O=certgate,CN=certgate server " "$T/calist" ||
	{ cat "$T/calist" >&2; cg_fail "ca list does not show the server certificate without agent"; }
"$S/agent-list" --dir "$P" --json >"$T/list.json"
grep -F "\"serial\":\"$serial\"" "$T/list.json" | grep -F '"subject":"CN=research-bot"' |
	grep -qF '"status":"valid"' || cg_fail "agent-list --json does not show the serial valid"
python3 - "$T/list.json" <<'PY' || cg_fail "agent-list --json: left_s is not the time left"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert all(r["agent"] for r in rows), rows
assert 5 * 3600 - 120 < rows[0]["left_s"] <= 5 * 3600 + 5, rows[0]
PY

# The gateway's own check accepts the new map (once the gateway side exists).
"$CERTGATE_BIN" check -c "$P/certgate.json" >"$T/check.out" 2>&1 || true
if ! grep -q "not implemented" "$T/check.out"; then
	cg_assert_contains "$T/check.out" "configuration OK"
fi

# --- a CSR: the key never leaves the agent ----------------------------------
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/csr.key" \
    -subj "/CN=someone-else/O=Ignored" -out "$T/agent.csr" 2>/dev/null
serial2=$("$S/agent-issue" --dir "$P" --agent csr-bot --role guest --csr "$T/agent.csr" 2>/dev/null)
[[ "$serial2" =~ ^[0-9A-F]+$ ]] || cg_fail "CSR issue printed '$serial2'"
[ "$serial2" != "$serial" ] || cg_fail "serials repeat"
[ ! -e "$P/agents/csr-bot/key.pem" ] || cg_fail "a key.pem was written for a CSR issue"
[ "$(openssl req -in "$T/agent.csr" -noout -pubkey)" = "$(openssl x509 -in "$P/agents/csr-bot/cert.pem" -noout -pubkey)" ] ||
	cg_fail "certificate key differs from the CSR key"
cg_assert_eq "$(openssl x509 -in "$P/agents/csr-bot/cert.pem" -noout -subject)" "subject=CN = csr-bot" "CSR subject imposed"
openssl verify -CAfile "$P/ca/ca.pem" "$P/agents/csr-bot/cert.pem" >/dev/null 2>&1 || cg_fail "CSR cert does not verify"
# An RSA-3072 and a P-384 request are accepted too.
openssl req -new -newkey rsa:3072 -nodes -keyout "$T/rsa.key" -subj /CN=x -out "$T/rsa.csr" 2>/dev/null
"$S/agent-issue" --dir "$P" --agent rsa-bot --csr "$T/rsa.csr" >/dev/null 2>&1 || cg_fail "RSA-3072 CSR refused"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-384 -nodes -keyout "$T/p384.key" -subj /CN=x -out "$T/p384.csr" 2>/dev/null
"$S/agent-issue" --dir "$P" --agent p384-bot --csr "$T/p384.csr" >/dev/null 2>&1 || cg_fail "P-384 CSR refused"

# --- errors: each fails with a message and changes nothing -------------------
openssl req -new -newkey rsa:1024 -nodes -keyout "$T/weak.key" -subj /CN=x -out "$T/weak.csr" 2>/dev/null
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:secp256k1 -nodes -keyout "$T/k1.key" -subj /CN=x -out "$T/k1.csr" 2>/dev/null
echo "not a CSR" >"$T/junk.csr"
# A request whose signature does not verify: flip a byte near the end of the DER.
openssl req -in "$T/agent.csr" -outform DER -out "$T/bad.der"
python3 - "$T/bad.der" <<'PY'
import sys
p = sys.argv[1]; b = bytearray(open(p, "rb").read()); b[-5] ^= 0x01; open(p, "wb").write(b)
PY

files=("$P/ca/index.txt" "$P/ca/crl.pem" "$P/agents.json" "$P/ca/crlnumber" "$P/ca-audit.jsonl")
cg_snapshot "${files[@]}" >"$T/snap.before"
ls "$P/agents" "$P/ca/certs" >"$T/ls.before"
long=$(printf 'a%.0s' $(seq 1 65))
fails() {
	local code=$1
	shift
	cg_expect_fail "$code" "$@"
	cg_snapshot "${files[@]}" >"$T/snap.after"
	cmp -s "$T/snap.before" "$T/snap.after" || cg_fail "files changed after failing: $*"
	ls "$P/agents" "$P/ca/certs" >"$T/ls.after"
	cmp -s "$T/ls.before" "$T/ls.after" || cg_fail "directories changed after failing: $*"
}
export CERTGATE_HOME=$T/no-such-pki
fails 1 "$S/agent-issue" --agent nodir-bot
cg_assert_contains "$T/err" "pki-init"
unset CERTGATE_HOME
fails 2 "$S/agent-issue" --dir "$P"
cg_assert_contains "$T/err" "--agent"
fails 2 "$S/agent-issue" --dir "$P" --agent x --frobnicate
cg_assert_contains "$T/err" "unknown option"
fails 2 "$S/agent-issue" --dir "$P" --agent
fails 2 "$S/agent-issue" --dir "$P" --agent "bad id"
fails 2 "$S/agent-issue" --dir "$P" --agent "-dash"
fails 2 "$S/agent-issue" --dir "$P" --agent "a/b"
fails 2 "$S/agent-issue" --dir "$P" --agent "$long"
fails 2 "$CERTGATE_BIN" ca issue -c "$P/certgate.json" --agent "../evil"
fails 1 "$S/agent-issue" --dir "$P" --agent new-bot --role superuser
cg_assert_contains "$T/err" "unknown role 'superuser'"
fails 1 "$S/agent-issue" --dir "$P" --agent new-bot --scope 'bogus:thing'
cg_assert_contains "$T/err" "invalid scope"
fails 1 "$S/agent-issue" --dir "$P" --agent research-bot
cg_assert_contains "$T/err" "agent research-bot already has a valid certificate $serial: renew it (agent-renew"
fails 1 "$S/agent-issue" --dir "$P" --agent new-bot --csr "$T/nonexistent.csr"
cg_assert_contains "$T/err" "nonexistent.csr"
fails 1 "$CERTGATE_BIN" ca issue -c "$P/certgate.json" --agent new-bot --csr "$T/nonexistent.csr"
fails 1 "$S/agent-issue" --dir "$P" --agent new-bot --csr "$T/junk.csr"
fails 1 "$S/agent-issue" --dir "$P" --agent new-bot --csr "$T/weak.csr"
cg_assert_contains "$T/err" "2048"
fails 1 "$S/agent-issue" --dir "$P" --agent new-bot --csr "$T/k1.csr"
fails 1 "$S/agent-issue" --dir "$P" --agent new-bot --csr "$T/bad.der"
cg_assert_contains "$T/err" "does not verify"
fails 2 "$S/agent-issue" --dir "$P" --agent new-bot --hours 0
fails 2 "$S/agent-issue" --dir "$P" --agent new-bot --hours 8761
fails 2 "$S/agent-issue" --dir "$P" --agent new-bot --hours 1x
fails 2 "$S/agent-issue" --dir "$P" --agent new-bot --lifetime 1m
cg_assert_contains "$T/err" "at least 2m"
fails 2 "$S/agent-issue" --dir "$P" --agent new-bot --lifetime 366d
fails 2 "$S/agent-issue" --dir "$P" --agent new-bot --lifetime 10
cg_assert_contains "$T/err" "Nm, Nh or Nd"
fails 2 "$S/agent-issue" --dir "$P" --agent new-bot --lifetime 10s
fails 2 "$S/agent-issue" --dir "$P" --agent new-bot --lifetime
cg_assert_contains "$T/err" "needs a value"
fails 2 "$S/agent-issue" --dir "$P" --agent new-bot --lifetime 2h --hours 2
fails 2 "$CERTGATE_BIN" ca issue -c "$P/certgate.json" --agent new-bot --lifetime 1m
fails 2 "$CERTGATE_BIN" ca issue -c "$P/certgate.json" --agent new-bot --lifetime 5x
fails 2 "$CERTGATE_BIN" ca issue -c "$P/certgate.json" --agent new-bot --hours 0
fails 2 "$CERTGATE_BIN" ca issue -c "$P/certgate.json" --agent new-bot --bogus
fails 2 "$CERTGATE_BIN" ca issue -c "$P/certgate.json" --agent new-bot extra
fails 1 "$CERTGATE_BIN" ca issue -c "$T/missing.json" --agent new-bot

# Concurrent issuance is serialised by the CA lock: nothing is lost.
pids=()
for i in 1 2 3 4; do
	"$S/agent-issue" --dir "$P" --agent "par-$i" --role guest >"$T/par-$i.out" 2>&1 &
	pids+=($!)
done
for pid in "${pids[@]}"; do
	wait "$pid" || cg_fail "a concurrent agent-issue failed"
done
for i in 1 2 3 4; do
	grep -qF "/CN=par-$i" "$P/ca/index.txt" || cg_fail "par-$i missing from index.txt"
done
python3 - "$P/agents.json" <<'PY' || cg_fail "concurrent issues lost identity map entries"
import json, sys
ids = {a["id"] for a in json.load(open(sys.argv[1]))["agents"]}
assert {"par-1", "par-2", "par-3", "par-4", "research-bot", "csr-bot"} <= ids, ids
PY
"$CERTGATE_BIN" ca list -c "$P/certgate.json" >/dev/null || cg_fail "database unreadable after concurrent issues"

# The identity map is changed only when the gateway's own parser accepts the result.
# A duplicate key (which a lenient reader collapses: here every agent would be lost)
# is refused and the map, the database and the archive are left byte for byte.
cp "$P/agents.json" "$T/agents.good"
python3 - "$P/agents.json" <<'PY'
import sys
p = sys.argv[1]; t = open(p).read()
assert t.count('"agents": [') == 1
open(p, "w").write(t.replace('"agents": [', '"agents": [], "agents": [', 1))
PY
files=("$P/ca/index.txt" "$P/ca/crl.pem" "$P/agents.json" "$P/ca/crlnumber" "$P/ca-audit.jsonl")
cg_snapshot "${files[@]}" >"$T/snap.before"
ls "$P/agents" "$P/ca/certs" >"$T/ls.before"
fails 1 "$S/agent-issue" --dir "$P" --agent dup-bot --role guest
cg_assert_contains "$T/err" "duplicate object key"
cg_assert_contains "$T/err" "agents.json"
# An agent whose own entry would be invalid after the edit is refused the same way.
cp "$T/agents.good" "$P/agents.json"
python3 - "$P/agents.json" <<'PY'
import json, sys
p = sys.argv[1]; m = json.load(open(p))
m["agents"].append({"id": "broken"})
json.dump(m, open(p, "w"), indent=2)
PY
cg_snapshot "${files[@]}" >"$T/snap.before"
fails 1 "$S/agent-issue" --dir "$P" --agent dup-bot --role guest
cg_assert_contains "$T/err" "would be invalid"
cp "$T/agents.good" "$P/agents.json"

cg_pass
