#!/usr/bin/env bash
# One-time enrollment tokens and EST simpleenroll through the CA service: token form
# and storage, the issued certificate, the identity map, audit; token reuse, wrong
# agent, expiry, concurrent uses (one key: one certificate for all; several keys:
# exactly one succeeds); bad CSRs (garbage
# base64, not PKCS#10, bad signature, RSA 1024, P-521, secp256k1), media type,
# missing credentials, methods; cacerts.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/ca.sh"
cg_setup
cg_pki_init --enroll "127.0.0.1:$(cg_free_port)"
P=$PKI
S=$CG_SRC/scripts
cg_assert_contains "$P/certgate.json" '"enroll": { "listen": "127.0.0.1:'

"$S/agent-token" --help >"$T/help"
cg_assert_contains "$T/help" "--ttl D"
ca_serve_start
cg_assert_eq "$(stat -c %a "$CA_SOCK")" 600 "mode of the CA socket"
cg_assert_eq "$(stat -c %a "$P/ca")" 700 "mode of the CA socket's directory"

# --- the token ------------------------------------------------------------------
ca_token bot1 --role guest --scope 'tools:search_*' --lifetime 2h --ttl 10m
fp=$(openssl x509 -in "$P/ca/ca.pem" -outform DER | sha256sum | cut -d' ' -f1)
cg_assert_eq "$(echo "$TOKEN" | cut -d. -f2)" "$fp" "token fingerprint = SHA-256 of the CA certificate"
secret=$(echo "$TOKEN" | cut -d. -f3)
hash=$(printf '%s' "$secret" | sha256sum | cut -d' ' -f1)
[ -f "$P/ca/tokens/$hash.json" ] || { ls -la "$P/ca/tokens" >&2; cg_fail "no token record named by the hash of the secret"; }
cg_assert_eq "$(stat -c %a "$P/ca/tokens/$hash.json")" 600 "mode of the token record"
grep -rqF "$secret" "$P" && cg_fail "the token's secret is stored somewhere in DIR"
grep -F '"what":"token"' "$P/ca-audit.jsonl" | grep -F '"agent":"bot1"' |
	grep -qF "\"token\":\"${hash:0:16}\"" || cg_fail "no audit line for the token"
# The token is alone on the last line of stdout.
"$S/agent-token" --dir "$P" --agent other --ttl 1m >"$T/tok.out" 2>/dev/null
cg_assert_eq "$(wc -l <"$T/tok.out")" 1 "lines on agent-token's stdout"

# --- enroll -----------------------------------------------------------------------
ca_enroll bot1 "$TOKEN" bot1
cert=$T/bot1.pem
openssl verify -CAfile "$P/ca/ca.pem" "$cert" >/dev/null 2>&1 || cg_fail "enrolled certificate does not verify"
cg_assert_eq "$(openssl x509 -in "$cert" -noout -subject)" "subject=CN = bot1" "subject (the CSR's is ignored)"
openssl x509 -in "$cert" -noout -text >"$T/cert.txt"
cg_assert_contains "$T/cert.txt" "URI:spiffe://certgate.local/agent/bot1"
cg_assert_contains "$T/cert.txt" "TLS Web Client Authentication"
[ "$(openssl pkey -in "$T/bot1.key" -pubout)" = "$(openssl x509 -in "$cert" -noout -pubkey)" ] ||
	cg_fail "the certificate is not for the CSR's key"
nb=$(date -u -d "$(openssl x509 -in "$cert" -noout -startdate | cut -d= -f2)" +%s)
na=$(date -u -d "$(openssl x509 -in "$cert" -noout -enddate | cut -d= -f2)" +%s)
cg_assert_eq "$((na - nb))" $((2 * 3600 + 300)) "lifetime from the token (2 h + 5 min backdating)"
serial=$(openssl x509 -in "$cert" -noout -serial | cut -d= -f2)
cmp -s <(openssl x509 -in "$P/ca/certs/$serial.pem") <(openssl x509 -in "$cert") || cg_fail "not archived"
grep -qP "^V\t\d{12}Z\t\t$serial\tunknown\t/CN=bot1$" "$P/ca/index.txt" || cg_fail "no database row"
python3 - "$P/agents.json" <<'PY' || cg_fail "the identity map does not hold bot1 with the token's roles and scopes"
import json, sys
a = [x for x in json.load(open(sys.argv[1]))["agents"] if x["id"] == "bot1"]
assert len(a) == 1 and a[0]["uri"] == "spiffe://certgate.local/agent/bot1", a
assert a[0]["roles"] == ["guest"] and a[0]["scopes"] == ["tools:search_*"], a
PY
grep -F '"what":"enroll"' "$P/ca-audit.jsonl" | grep -F "\"serial\":\"$serial\"" |
	grep -F '"via":"est"' | grep -qF '"peer":"127.0.0.9"' || cg_fail "no audit line for the enrollment"
"$CERTGATE_BIN" check -c "$P/certgate.json" >/dev/null 2>&1 || cg_fail "the gateway refuses the map after enrollment"

# --- the token is single-use --------------------------------------------------------
files=("$P/ca/index.txt" "$P/agents.json" "$P/ca/crl.pem")
cg_snapshot "${files[@]}" >"$T/snap.before"
unchanged() {
	cg_snapshot "${files[@]}" >"$T/snap.after"
	cmp -s "$T/snap.before" "$T/snap.after" || cg_fail "a refused enrollment changed files: $1"
}
ca_csr "$T/again.csr" p256
ca_est "$T/again" POST /.well-known/est/simpleenroll --ctype application/pkcs10 \
    --auth-file "$T/bot1.auth" --body "$T/again.csr"
cg_assert_eq "$EST_STATUS" 401 "reused token"
cg_assert_contains "$T/again" 'www-authenticate Basic realm="certgate EST"'
cg_assert_contains "$T/again.body" "already used"
grep -F '"what":"refused"' "$P/ca-audit.jsonl" | grep -F '"op":"enroll"' |
	grep -qF "already used" || cg_fail "no audit line for the reused token"
unchanged "reused token"

# --- wrong agent: refused, and the token is not spent -------------------------------
ca_token bot2 --role guest
ca_basic "$T/wrong.auth" bot3 "$TOKEN"
ca_est "$T/wrong" POST /.well-known/est/simpleenroll --ctype application/pkcs10 \
    --auth-file "$T/wrong.auth" --body "$T/again.csr"
cg_assert_eq "$EST_STATUS" 401 "token of another agent"
cg_assert_contains "$T/wrong.body" "not for agent bot3"
unchanged "wrong agent"
# Bearer: the token names its agent.
(umask 077 && printf 'Bearer %s' "$TOKEN" >"$T/bearer.auth")
ca_est "$T/bearer" POST /.well-known/est/simpleenroll --ctype 'application/pkcs10; charset=x' \
    --auth-file "$T/bearer.auth" --body "$T/again.csr"
cg_assert_eq "$EST_STATUS" 200 "Bearer token"
base64 -d <"$T/bearer.body" | openssl pkcs7 -inform DER -print_certs 2>/dev/null |
	openssl x509 -noout -subject | grep -qF "CN = bot2" || cg_fail "Bearer enrollment is not for bot2"

# --- expiry ---------------------------------------------------------------------------
ca_token bot4 --ttl 1m
h4=$(printf '%s' "$(echo "$TOKEN" | cut -d. -f3)" | sha256sum | cut -d' ' -f1)
python3 - "$P/ca/tokens/$h4.json" <<'PY'
import json, sys, time
p = sys.argv[1]; r = json.load(open(p)); r["expires"] = int(time.time()) - 1
json.dump(r, open(p, "w"))
PY
cg_snapshot "${files[@]}" >"$T/snap.before"
ca_basic "$T/exp.auth" bot4 "$TOKEN"
ca_est "$T/exp" POST /.well-known/est/simpleenroll --ctype application/pkcs10 \
    --auth-file "$T/exp.auth" --body "$T/again.csr"
cg_assert_eq "$EST_STATUS" 401 "expired token"
cg_assert_contains "$T/exp.body" "expired"
unchanged "expired token"

# --- unknown and malformed tokens, missing credentials -------------------------------
ca_basic "$T/unk.auth" bot4 "cg1.$fp.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
ca_est "$T/unk" POST /.well-known/est/simpleenroll --ctype application/pkcs10 \
    --auth-file "$T/unk.auth" --body "$T/again.csr"
cg_assert_eq "$EST_STATUS" 401 "unknown token"
cg_assert_contains "$T/unk.body" "unknown token"
other=$(printf '0%.0s' $(seq 1 64))
ca_basic "$T/oca.auth" bot4 "cg1.$other.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
ca_est "$T/oca" POST /.well-known/est/simpleenroll --ctype application/pkcs10 \
    --auth-file "$T/oca.auth" --body "$T/again.csr"
cg_assert_eq "$EST_STATUS" 401 "token of another CA"
cg_assert_contains "$T/oca.body" "another CA"
ca_est "$T/noauth" POST /.well-known/est/simpleenroll --ctype application/pkcs10 --body "$T/again.csr"
cg_assert_eq "$EST_STATUS" 401 "no Authorization"
cg_assert_contains "$T/noauth" "www-authenticate"
printf 'Digest x' >"$T/digest.auth"
ca_est "$T/digest" POST /.well-known/est/simpleenroll --ctype application/pkcs10 \
    --auth-file "$T/digest.auth" --body "$T/again.csr"
cg_assert_eq "$EST_STATUS" 401 "Digest"
printf 'Basic !!!' >"$T/bad64.auth"
ca_est "$T/bad64" POST /.well-known/est/simpleenroll --ctype application/pkcs10 \
    --auth-file "$T/bad64.auth" --body "$T/again.csr"
cg_assert_eq "$EST_STATUS" 401 "Basic with bad base64"
unchanged "bad credentials"

# --- bad CSRs: refused in the gateway (400), the token is not spent -------------------
ca_token bot5 --role guest
ca_basic "$T/b5.auth" bot5 "$TOKEN"
printf 'this is not base64 %%%%\n' >"$T/garbage.csr"
printf 'bm90IGEgQ1NS\n' >"$T/notcsr.csr"
ca_csr "$T/rsa1024.csr" rsa1024
ca_csr "$T/p521.csr" p521
ca_csr "$T/k256.csr" k256
ca_csr "$T/badsig.csr" p256
python3 - "$T/badsig.csr.der" <<'PY'
import sys
p = sys.argv[1]; b = bytearray(open(p, "rb").read()); b[-5] ^= 0x01; open(p, "wb").write(b)
PY
base64 <"$T/badsig.csr.der" >"$T/badsig.csr"
for c in garbage:"not base64" notcsr:"not a DER PKCS#10" rsa1024:"at least 2048" \
    p521:"secp521r1" k256:"secp256k1" badsig:"does not verify"; do
	name=${c%%:*} want=${c#*:}
	ca_est "$T/$name" POST /.well-known/est/simpleenroll --ctype application/pkcs10 \
	    --auth-file "$T/b5.auth" --body "$T/$name.csr"
	cg_assert_eq "$EST_STATUS" 400 "CSR $name"
	cg_assert_contains "$T/$name.body" "$want"
done
ca_est "$T/ctype" POST /.well-known/est/simpleenroll --ctype application/json \
    --auth-file "$T/b5.auth" --body "$T/again.csr"
cg_assert_eq "$EST_STATUS" 415 "wrong media type"
ca_est "$T/get" GET /.well-known/est/simpleenroll --auth-file "$T/b5.auth"
cg_assert_eq "$EST_STATUS" 405 "GET simpleenroll"
cg_assert_contains "$T/get" "allow POST"
ca_est "$T/attrs" GET /.well-known/est/csrattrs
cg_assert_eq "$EST_STATUS" 404 "csrattrs"
unchanged "bad CSRs"
# Line breaks in the base64 are fine (RFC 7030), and the token was not spent above.
ca_csr "$T/rsa.csr" rsa2048
base64 -w 20 <"$T/rsa.csr.der" | sed 's/$/\r/' >"$T/rsa.csr"
ca_est "$T/rsa" POST /.well-known/est/simpleenroll --ctype application/pkcs10 \
    --auth-file "$T/b5.auth" --body "$T/rsa.csr"
cg_assert_eq "$EST_STATUS" 200 "RSA-2048 CSR with CRLF every 20 characters"

# --- concurrent uses of one token: with one key, each gets the one certificate (a
# retry whose first answer was lost looks like this); with different keys, exactly
# one succeeds. Either way the token makes one certificate.
tid() { printf '%s' "$(echo "$1" | cut -d. -f3)" | sha256sum | cut -c1-16; }
for round in 1 2 3; do
	ca_token "par$round" --role guest
	ca_basic "$T/par.auth" "par$round" "$TOKEN"
	ca_est "$T/par" POST /.well-known/est/simpleenroll --ctype application/pkcs10 \
	    --auth-file "$T/par.auth" --body "$T/again.csr" --repeat 4
	cg_assert_eq "$(grep -c '^status 200$' "$T/par")" 4 "successes among 4 concurrent uses, one key (round $round)"
	cg_assert_eq "$(grep -cP "\t/CN=par$round\$" "$P/ca/index.txt")" 1 "certificates for par$round"
	cg_assert_eq "$(grep -F '"what":"enroll"' "$P/ca-audit.jsonl" | grep -cF "\"token\":\"$(tid "$TOKEN")\"")" 1 \
	    "issuances for the token of par$round"
	cg_assert_eq "$(grep -F '"what":"enroll_redelivered"' "$P/ca-audit.jsonl" | grep -cF "\"token\":\"$(tid "$TOKEN")\"")" 3 \
	    "re-deliveries for the token of par$round"
	ca_token "kpar$round" --role guest
	ca_basic "$T/kpar.auth" "kpar$round" "$TOKEN"
	pids=()
	for i in 1 2 3 4; do ca_csr "$T/kpar$i.csr" p256; done
	for i in 1 2 3 4; do
		( ca_est "$T/kpar$i" POST /.well-known/est/simpleenroll --ctype application/pkcs10 \
		    --auth-file "$T/kpar.auth" --body "$T/kpar$i.csr" ) &
		pids+=($!)
	done
	wait "${pids[@]}"	# not the CA service, a child of this shell too
	cg_assert_eq "$(cat "$T"/kpar[1-4] | grep -c '^status 200$')" 1 "successes among 4 concurrent uses, 4 keys (round $round)"
	cg_assert_eq "$(cat "$T"/kpar[1-4] | grep -c '^status 401$')" 3 "refusals among 4 concurrent uses, 4 keys (round $round)"
	cg_assert_eq "$(grep -cP "\t/CN=kpar$round\$" "$P/ca/index.txt")" 1 "certificates for kpar$round"
done

# --- cacerts ---------------------------------------------------------------------------
ca_est "$T/cacerts" GET /.well-known/est/cacerts
cg_assert_eq "$EST_STATUS" 200 "cacerts"
cg_assert_contains "$T/cacerts" "content-type application/pkcs7-mime"
base64 -d <"$T/cacerts.body" | openssl pkcs7 -inform DER -print_certs | openssl x509 >"$T/cacerts.pem"
cmp -s "$T/cacerts.pem" <(openssl x509 -in "$P/ca/ca.pem") || cg_fail "cacerts does not hold the CA certificate"
ca_est "$T/cpost" POST /.well-known/est/cacerts
cg_assert_eq "$EST_STATUS" 405 "POST cacerts"

# Usage errors of agent-token change nothing and exit 2.
cg_expect_fail 2 "$S/agent-token" --dir "$P"
cg_expect_fail 2 "$S/agent-token" --dir "$P" --agent x --ttl
cg_assert_contains "$T/err" "needs a value"
cg_expect_fail 2 "$S/agent-token" --dir "$P" --agent x --ttl 30s
cg_expect_fail 2 "$S/agent-token" --dir "$P" --agent x --ttl 31d
cg_expect_fail 2 "$S/agent-token" --dir "$P" --agent x --lifetime 1m
cg_expect_fail 2 "$S/agent-token" --dir "$P" --agent "bad id"
cg_expect_fail 1 "$S/agent-token" --dir "$P" --agent x --role nosuchrole
cg_assert_contains "$T/err" "unknown role 'nosuchrole'"
cg_expect_fail 1 "$S/agent-token" --dir "$P" --agent x --scope bogus
cg_expect_fail 2 "$S/agent-token" --dir
cg_assert_contains "$T/err" "needs a value"

# The service is still up after all this.
"$CATOOL" ping "$CA_SOCK" | grep -q '^ok ' || cg_fail "the CA service stopped answering"
ca_serve_stop
[ ! -e "$CA_SOCK" ] || cg_fail "the socket is left behind after a clean stop"
cg_pass
