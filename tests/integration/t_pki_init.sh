#!/usr/bin/env bash
# pki-init: token with non-extractable CA/server keys, CA/server certificates, empty
# CRL, file modes, refusal to overwrite, --force, argument errors.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cg_setup

# Usage errors come before anything is created.
cg_expect_fail 2 "$CG_SRC/scripts/pki-init" --dir "$T/x" --bogus
cg_expect_fail 2 "$CG_SRC/scripts/pki-init" --dir
cg_expect_fail 2 "$CG_SRC/scripts/pki-init" --dir "$T/x" --listen nope
cg_expect_fail 2 "$CG_SRC/scripts/pki-init" --dir "$T/x" --upstream ftp://x
[ ! -e "$T/x" ] || cg_fail "a failed pki-init created $T/x"
"$CG_SRC/scripts/pki-init" --help >"$T/help"
cg_assert_contains "$T/help" "--dir DIR"

cg_pki_init
P=$PKI
cg_assert_contains "$T/pki-init.out" "agent-issue"

for f in certgate.json agents.json ca/ca.pem ca/crl.pem ca/index.txt ca/crlnumber \
    server/cert.pem token/softhsm2.conf token/user.pin token/so.pin token/ca.pin \
    token/ca-so.pin ca-audit.jsonl; do
	[ -f "$P/$f" ] || cg_fail "$P/$f missing"
done
[ ! -e "$P/server/key.pem" ] || cg_fail "a server key file exists outside the token"
cg_assert_eq "$(stat -c %a "$P")" 700 "mode of DIR"
cg_assert_eq "$(stat -c %a "$P/token")" 700 "mode of token dir"
for pin in user.pin so.pin ca.pin ca-so.pin; do
	cg_assert_eq "$(stat -c %a "$P/token/$pin")" 600 "mode of $pin"
	[ "$(wc -c <"$P/token/$pin")" -ge 17 ] || cg_fail "$pin too short"
done
[ "$(cat "$P/token/user.pin")" != "$(cat "$P/token/ca.pin")" ] || cg_fail "both tokens have the same PIN"
cg_assert_contains "$P/certgate.json" "\"listen\": \"127.0.0.1:$CG_LISTEN_PORT\""
cg_assert_contains "$P/certgate.json" "\"module\": \"$CG_MODULE\""
cg_assert_not_contains "$P/certgate.json" "@"
cg_assert_contains "$P/token/softhsm2.conf" "directories.tokendir = $P/token/tokens"

# Two tokens: the server key in the gateway's, the CA key in the CA's (each alone),
# both sensitive and never extractable.
key_access() {	# TOKEN PINFILE LABEL -> the Access: line of that private key, or ""
	pkcs11-tool --module "$CG_MODULE" --token-label "$1" --login \
	    --pin "$(head -n1 "$P/token/$2")" --list-objects --type privkey >"$T/objs" 2>&1
	awk -v l="$3" '/^Private Key Object/ {inkey=0} $1=="label:" && $2==l {inkey=1}
	    inkey && $1=="Access:" {print; exit}' "$T/objs"
}
for spec in certgate:user.pin:certgate-server ca-certgate:ca.pin:certgate-ca; do
	IFS=: read -r tok pinf label <<<"$spec"
	access=$(key_access "$tok" "$pinf" "$label")
	[ -n "$access" ] || { cat "$T/objs" >&2; cg_fail "no private key $label in token $tok"; }
	case "$access" in *sensitive*) ;; *) cg_fail "$label is not sensitive: $access" ;; esac
	rest=${access//never extractable/}
	case "$rest" in *extractable*) cg_fail "$label is extractable: $access" ;; esac
done
[ -z "$(key_access certgate user.pin certgate-ca)" ] || cg_fail "the CA key is in the gateway token"
[ -z "$(key_access ca-certgate ca.pin certgate-server)" ] || cg_fail "the server key is in the CA token"
# The gateway's PIN does not open the CA token.
pkcs11-tool --module "$CG_MODULE" --token-label ca-certgate --login \
    --pin "$(head -n1 "$P/token/user.pin")" --list-objects >/dev/null 2>&1 &&
	cg_fail "the gateway PIN logs into the CA token"

# CA certificate.
openssl x509 -in "$P/ca/ca.pem" -noout -text >"$T/ca.txt"
cg_assert_contains "$T/ca.txt" "CA:TRUE"
cg_assert_contains "$T/ca.txt" "Certificate Sign"
cg_assert_contains "$T/ca.txt" "CRL Sign"
cg_assert_contains "$T/ca.txt" "X509v3 Subject Key Identifier"
cg_assert_contains "$T/ca.txt" "X509v3 Basic Constraints: critical"
cg_assert_contains "$T/ca.txt" "X509v3 Key Usage: critical"
cg_assert_contains "$T/ca.txt" "Subject: CN = certgate CA, O = certgate"
cg_assert_contains "$T/ca.txt" "ASN1 OID: prime256v1"

# The CA key in the token is the one certified: its public half equals the cert's.
pkcs11-tool --module "$CG_MODULE" --token-label ca-certgate --login \
    --pin "$(head -n1 "$P/token/ca.pin")" --read-object --type pubkey --label certgate-ca \
    -o "$T/capub.der" >/dev/null 2>&1
openssl pkey -pubin -inform DER -in "$T/capub.der" -outform PEM >"$T/capub.pem" 2>/dev/null
openssl x509 -in "$P/ca/ca.pem" -noout -pubkey >"$T/certpub.pem"
cmp -s "$T/capub.pem" "$T/certpub.pem" || cg_fail "CA certificate key differs from the token's CA key"

# Server certificate.
openssl verify -CAfile "$P/ca/ca.pem" "$P/server/cert.pem" >/dev/null 2>&1 ||
	cg_fail "server certificate does not verify against the CA"
openssl x509 -in "$P/server/cert.pem" -noout -text >"$T/srv.txt"
cg_assert_contains "$T/srv.txt" "DNS:localhost"
cg_assert_contains "$T/srv.txt" "IP Address:127.0.0.1"
cg_assert_contains "$T/srv.txt" "TLS Web Server Authentication"
cg_assert_contains "$T/srv.txt" "CA:FALSE"

# Empty CRL signed by the CA.
openssl crl -in "$P/ca/crl.pem" -CAfile "$P/ca/ca.pem" -noout >"$T/crl.out" 2>&1 ||
	cg_fail "CRL does not verify"
cg_assert_contains "$T/crl.out" "verify OK"
openssl crl -in "$P/ca/crl.pem" -noout -text >"$T/crl.txt"
cg_assert_contains "$T/crl.txt" "No Revoked Certificates"
cg_assert_contains "$T/crl.txt" "X509v3 CRL Number"
cg_assert_eq "$(cat "$P/ca/crlnumber")" "02" "crlnumber after the first CRL"

# `ca init` never overwrites: not the certificate, not even with --force the key.
cg_expect_fail 1 "$CERTGATE_BIN" ca init -c "$P/certgate.json"
cg_assert_contains "$T/err" "already exists"
cg_expect_fail 1 "$CERTGATE_BIN" ca init -c "$P/certgate.json" --force
cg_assert_contains "$T/err" "never overwritten"
cg_expect_fail 2 "$CERTGATE_BIN" ca init -c "$P/certgate.json" --nope
cg_expect_fail 2 "$CERTGATE_BIN" ca frobnicate -c "$P/certgate.json"
cg_expect_fail 2 "$CERTGATE_BIN" ca list
"$CERTGATE_BIN" ca init --help >"$T/help" && cg_assert_contains "$T/help" "usage: certgate ca init"

# A second pki-init without --force fails and changes nothing.
snap() {
	(cd "$P" && find . -type f ! -name .lock -print0 | sort -z | xargs -0 sha256sum)
}
snap >"$T/before"
cg_expect_fail 1 "$CG_SRC/scripts/pki-init" --dir "$P"
cg_assert_contains "$T/err" "--force"
snap >"$T/after"
cmp -s "$T/before" "$T/after" || { diff "$T/before" "$T/after" >&2; cg_fail "pki-init without --force changed files"; }

# `certgate check` accepts the two-token PKI.
"$CERTGATE_BIN" check -c "$P/certgate.json" >"$T/check.out" 2>&1 ||
	{ cat "$T/check.out" >&2; cg_fail "check refuses the new PKI"; }
cg_assert_contains "$T/check.out" "configuration OK"

# A configuration with the CA key in the server key's token (the layout of the old,
# one-token pki-init) is refused by check and serve, naming both keys and the fix;
# allow_shared_token accepts it.
python3 - "$P/certgate.json" "$P/shared.json" "$P/shared-ok.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
# an object that exists in the server's token (`check` also looks the CA key up)
c["ca"]["key"] = "pkcs11:token=certgate;object=certgate-server;type=private"
del c["ca"]["pkcs11"]
json.dump(c, open(sys.argv[2], "w"), indent=1)
c["tls"]["allow_shared_token"] = True
json.dump(c, open(sys.argv[3], "w"), indent=1)
PY
for cmd in check serve; do
	cg_expect_fail 1 timeout 60 "$CERTGATE_BIN" "$cmd" -c "$P/shared.json"
	cg_assert_contains "$T/err" '$.ca.key: the CA key (ca.key) is in the same token as the server key (tls.key), token "certgate"'
	cg_assert_contains "$T/err" "allow_shared_token"
	cg_assert_contains "$T/err" "pki-init"
done
"$CERTGATE_BIN" check -c "$P/shared-ok.json" >"$T/check.out" 2>&1 ||
	{ cat "$T/check.out" >&2; cg_fail "allow_shared_token is not accepted"; }
cg_assert_contains "$T/check.out" "configuration OK"
# The ca commands still work on such a PKI (operators can migrate at their pace).
"$CERTGATE_BIN" ca list -c "$P/shared.json" >/dev/null || cg_fail "ca list refuses the shared-token config"
rm -f "$P/shared.json" "$P/shared-ok.json"

# --enroll writes the enrollment listener; a bad value is a usage error.
cg_expect_fail 2 "$CG_SRC/scripts/pki-init" --dir "$T/y" --enroll nope
cg_expect_fail 2 "$CG_SRC/scripts/pki-init" --dir "$T/y" --ca-token-label certgate
cg_expect_fail 2 "$CG_SRC/scripts/pki-init" --dir "$T/y" --ca-token-label certgate-ca
cg_assert_contains "$T/err" "must not start with"
[ ! -e "$T/y" ] || cg_fail "a refused pki-init created $T/y"
cg_assert_contains "$P/certgate.json" '"enroll": { "listen": null }' 

# --force wipes and recreates: a new CA.
old_ca=$(sha256sum <"$P/ca/ca.pem")
"$CG_SRC/scripts/pki-init" --dir "$P" --force --listen "127.0.0.1:$CG_LISTEN_PORT" \
    --admin "127.0.0.1:$CG_ADMIN_PORT" >"$T/out" 2>"$T/err" || { cat "$T/err" >&2; cg_fail "pki-init --force failed"; }
cg_assert_contains "$T/err" "wiping"
[ "$(sha256sum <"$P/ca/ca.pem")" != "$old_ca" ] || cg_fail "--force kept the old CA"
openssl verify -CAfile "$P/ca/ca.pem" "$P/server/cert.pem" >/dev/null 2>&1 ||
	cg_fail "server certificate does not verify after --force"

cg_pass
