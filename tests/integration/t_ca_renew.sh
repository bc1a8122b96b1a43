#!/usr/bin/env bash
# Renewal without an outage: EST simplereenroll through the CA service (same identity,
# roles, scopes and lifetime; the old certificate stays valid), and its refusals
# (no certificate, the server's, another CA's, revoked, expired, unmapped, weak key,
# rate limit); scripts/agent-renew by hand (same key, --lifetime, --revoke-old);
# agent-revoke --agent revokes every valid certificate of the agent.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/ca.sh"
cg_setup
cg_pki_init
P=$PKI
S=$CG_SRC/scripts
ca_serve_start

"$S/agent-renew" --help >"$T/help"
cg_assert_contains "$T/help" "--revoke-old"

ca_token bot1 --role member --lifetime 30m
ca_enroll bot1 "$TOKEN" bot1
s1=$(openssl x509 -in "$T/bot1.pem" -noout -serial | cut -d= -f2)
lifetime() {
	local nb na
	nb=$(date -u -d "$(openssl x509 -in "$1" -noout -startdate | cut -d= -f2)" +%s)
	na=$(date -u -d "$(openssl x509 -in "$1" -noout -enddate | cut -d= -f2)" +%s)
	echo $((na - nb))
}
reenroll() {	# OUT CERT CSR
	ca_est "$1" POST /.well-known/est/simplereenroll --ctype application/pkcs10 \
	    ${2:+--cert "$2"} --body "$3" --peer 127.0.0.7
}

# --- renew over EST --------------------------------------------------------------------
ca_csr "$T/new.csr" p384
reenroll "$T/r1" "$T/bot1.pem" "$T/new.csr"
cg_assert_eq "$EST_STATUS" 200 "simplereenroll"
cg_assert_contains "$T/r1" "content-type application/pkcs7-mime; smime-type=certs-only"
base64 -d <"$T/r1.body" | openssl pkcs7 -inform DER -print_certs >"$T/bot1b.pem"
s2=$(openssl x509 -in "$T/bot1b.pem" -noout -serial | cut -d= -f2)
[ "$s2" != "$s1" ] || cg_fail "the renewal reused the serial"
cg_assert_eq "$(openssl x509 -in "$T/bot1b.pem" -noout -subject)" "subject=CN = bot1" "renewed subject"
openssl x509 -in "$T/bot1b.pem" -noout -ext subjectAltName | grep -qF "URI:spiffe://certgate.local/agent/bot1" ||
	cg_fail "renewed SAN"
cg_assert_eq "$(lifetime "$T/bot1b.pem")" "$(lifetime "$T/bot1.pem")" "renewed lifetime"
[ "$(openssl pkey -in "$T/new.csr.key" -pubout)" = "$(openssl x509 -in "$T/bot1b.pem" -noout -pubkey)" ] ||
	cg_fail "the renewed certificate is not for the new key"
openssl verify -CAfile "$P/ca/ca.pem" "$T/bot1b.pem" >/dev/null 2>&1 || cg_fail "renewed certificate does not verify"
# Both are valid: no outage while the agent switches.
"$S/agent-list" --dir "$P" >"$T/list"
cg_assert_eq "$(grep -cE "^($s1|$s2) +bot1 .* valid$" "$T/list")" 2 "valid certificates of bot1 after the renewal"
grep -F '"what":"renew"' "$P/ca-audit.jsonl" | grep -F "\"serial\":\"$s2\"" |
	grep -F "\"old_serial\":\"$s1\"" | grep -qF '"via":"est"' || cg_fail "no audit line for the renewal"
python3 - "$P/agents.json" <<'PY' || cg_fail "the renewal changed the identity map entry"
import json, sys
a = [x for x in json.load(open(sys.argv[1]))["agents"] if x["id"] == "bot1"]
assert len(a) == 1 and a[0]["roles"] == ["member"], a
PY
# The renewed certificate renews in turn.
ca_csr "$T/new2.csr" p256
reenroll "$T/r2" "$T/bot1b.pem" "$T/new2.csr"
cg_assert_eq "$EST_STATUS" 200 "renewal of the renewed certificate"

# --- refusals -----------------------------------------------------------------------------
files=("$P/ca/index.txt" "$P/agents.json" "$P/ca/crl.pem")
cg_snapshot "${files[@]}" >"$T/snap.before"
refused() {	# WANT-STATUS WANT-TEXT CERT CSR
	reenroll "$T/ref" "$3" "$4"
	cg_assert_eq "$EST_STATUS" "$1" "renewal with ${3:-no certificate}"
	cg_assert_contains "$T/ref.body" "$2"
	cg_snapshot "${files[@]}" >"$T/snap.after"
	cmp -s "$T/snap.before" "$T/snap.after" || cg_fail "a refused renewal changed files"
}
refused 403 "client certificate" "" "$T/new.csr"
refused 403 "not an agent certificate" "$P/server/cert.pem" "$T/new.csr"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/evil.key" \
    -subj /CN=bot1 -addext "subjectAltName=URI:spiffe://certgate.local/agent/bot1" \
    -days 1 -out "$T/evil.pem" 2>/dev/null
refused 403 "not issued by this CA" "$T/evil.pem" "$T/new.csr"
ca_csr "$T/weak.csr" rsa1024
refused 400 "at least 2048" "$T/bot1.pem" "$T/weak.csr"
# Expired in the database (status E).
python3 - "$P/ca/index.txt" "$s1" <<'PY'
import sys
p, s = sys.argv[1], sys.argv[2]
t = "".join(("E" + l[1:]) if l.split("\t")[3] == s else l for l in open(p))
open(p, "w").write(t)
PY
cg_snapshot "${files[@]}" >"$T/snap.before"
refused 403 "is expired" "$T/bot1.pem" "$T/new.csr"
python3 - "$P/ca/index.txt" "$s1" <<'PY'
import sys
p, s = sys.argv[1], sys.argv[2]
t = "".join(("V" + l[1:]) if l.split("\t")[3] == s else l for l in open(p))
open(p, "w").write(t)
PY
# Revoked.
"$S/agent-revoke" --dir "$P" --serial "$s1" >/dev/null 2>&1
cg_snapshot "${files[@]}" >"$T/snap.before"
refused 403 "is revoked" "$T/bot1.pem" "$T/new.csr"
grep -F '"what":"refused"' "$P/ca-audit.jsonl" | grep -F '"op":"renew"' |
	grep -qF "\"old_serial\":\"$s1\"" || cg_fail "no audit line for the refused renewal"
# Unmapped.
ca_token bot9 --role guest
ca_enroll bot9 "$TOKEN" bot9
python3 - "$P/agents.json" <<'PY'
import json, sys
p = sys.argv[1]; m = json.load(open(p))
m["agents"] = [a for a in m["agents"] if a["id"] != "bot9"]
json.dump(m, open(p, "w"), indent=2)
PY
cg_snapshot "${files[@]}" >"$T/snap.before"
refused 403 "not in the identity map" "$T/bot9.pem" "$T/new.csr"

# --- rate limit: 2 renewals at once, then 1 per hour -------------------------------------
ca_serve_stop
python3 - "$P/certgate.json" "$P/rate.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); c["ca"]["renew_burst"] = 2; c["ca"]["renew_per_hour"] = 1
json.dump(c, open(sys.argv[2], "w"), indent=1)
PY
ca_serve_start "$P/rate.json"
ca_token rl --role guest
ca_enroll rl "$TOKEN" rl
for i in 1 2; do
	reenroll "$T/rl$i" "$T/rl.pem" "$T/new.csr"
	cg_assert_eq "$EST_STATUS" 200 "renewal $i within the burst"
done
reenroll "$T/rl3" "$T/rl.pem" "$T/new.csr"
cg_assert_eq "$EST_STATUS" 429 "renewal over the rate"
ra=$(sed -n 's/^retry-after //p' "$T/rl3")
[ -n "$ra" ] && [ "$ra" -ge 1 ] && [ "$ra" -le 3600 ] || cg_fail "Retry-After '$ra'"
# Another agent has its own bucket.
reenroll "$T/other" "$T/bot1b.pem" "$T/new.csr"
cg_assert_eq "$EST_STATUS" 200 "another agent's renewal"
ca_serve_stop

# --- agent-renew by hand ---------------------------------------------------------------------
a1=$("$S/agent-issue" --dir "$P" --agent alice --role member --lifetime 3h 2>/dev/null)
key_before=$(sha256sum <"$P/agents/alice/key.pem")
a2=$("$S/agent-renew" --dir "$P" --agent alice 2>"$T/renew.err")
[[ "$a2" =~ ^[0-9A-F]+$ ]] && [ "$a2" != "$a1" ] || cg_fail "agent-renew printed '$a2'"
cg_assert_eq "$(openssl x509 -in "$P/agents/alice/cert.pem" -noout -serial)" "serial=$a2" "cert.pem is the new one"
cg_assert_eq "$(sha256sum <"$P/agents/alice/key.pem")" "$key_before" "key.pem kept"
[ "$(openssl pkey -in "$P/agents/alice/key.pem" -pubout)" = "$(openssl x509 -in "$P/agents/alice/cert.pem" -noout -pubkey)" ] ||
	cg_fail "key.pem does not match the renewed cert.pem"
cg_assert_eq "$(lifetime "$P/agents/alice/cert.pem")" $((3 * 3600 + 300)) "renewed lifetime (same as before)"
"$S/agent-list" --dir "$P" >"$T/list"
cg_assert_eq "$(grep -cE "^($a1|$a2) +alice .* valid$" "$T/list")" 2 "valid certificates of alice"
a3=$("$S/agent-renew" --dir "$P" --agent alice --lifetime 90m --revoke-old 2>"$T/renew.err")
cg_assert_contains "$T/renew.err" "revoked $a1 (superseded)"
cg_assert_contains "$T/renew.err" "revoked $a2 (superseded)"
cg_assert_eq "$(lifetime "$P/agents/alice/cert.pem")" $((90 * 60 + 300)) "--lifetime 90m"
openssl crl -in "$P/ca/crl.pem" -noout -text >"$T/crl.txt"
cg_assert_contains "$T/crl.txt" "Serial Number: $a1"
cg_assert_contains "$T/crl.txt" "Serial Number: $a2"
cg_assert_not_contains "$T/crl.txt" "Serial Number: $a3"
# A CSR renewal: the new key stays with the agent, the stale key.pem goes.
ca_csr "$T/alice.csr" p256
base64 -d <"$T/alice.csr" >"$T/alice.der"
a4=$("$S/agent-renew" --dir "$P" --agent alice --csr "$T/alice.der" 2>/dev/null)
[ ! -e "$P/agents/alice/key.pem" ] || cg_fail "a stale key.pem stayed after a CSR renewal"
[ "$(openssl pkey -in "$T/alice.csr.key" -pubout)" = "$(openssl x509 -in "$P/agents/alice/cert.pem" -noout -pubkey)" ] ||
	cg_fail "CSR renewal: wrong key"
# agent-issue refuses an agent that has a valid certificate and points to agent-renew.
cg_expect_fail 1 "$S/agent-issue" --dir "$P" --agent alice
cg_assert_contains "$T/err" "renew it (agent-renew"
# agent-revoke --agent revokes every valid certificate (a3 and a4).
out=$("$S/agent-revoke" --dir "$P" --agent alice 2>/dev/null)
cg_assert_eq "$(echo "$out" | sort | tr '\n' ' ')" "$(printf '%s\n' "$a3" "$a4" | sort | tr '\n' ' ')" "revoked serials"
cg_expect_fail 1 "$S/agent-renew" --dir "$P" --agent alice
cg_assert_contains "$T/err" "no valid certificate to renew"
cg_expect_fail 1 "$S/agent-renew" --dir "$P" --agent nobody
cg_expect_fail 2 "$S/agent-renew" --dir "$P"
cg_expect_fail 2 "$S/agent-renew" --dir "$P" --agent alice --lifetime 1m
cg_expect_fail 2 "$S/agent-renew" --dir "$P" --agent alice --lifetime
cg_expect_fail 2 "$S/agent-renew" --dir "$P" --agent alice --bogus
cg_expect_fail 2 "$S/agent-renew" --dir
cg_pass
