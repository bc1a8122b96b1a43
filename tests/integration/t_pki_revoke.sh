#!/usr/bin/env bash
# agent-revoke / certgate ca revoke / ca crl: CRL contents and signature, verification
# with -crl_check, listing, audit, errors that change nothing, CRL refresh.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cg_setup
cg_pki_init
P=$PKI
S=$CG_SRC/scripts

"$S/agent-revoke" --help >"$T/help"
cg_assert_contains "$T/help" "--serial HEX"

sa=$("$S/agent-issue" --dir "$P" --agent alice --role member 2>/dev/null)
sb=$("$S/agent-issue" --dir "$P" --agent bob --role guest 2>/dev/null)
sc=$("$S/agent-issue" --dir "$P" --agent carol --role guest 2>/dev/null)
crlnum() { openssl crl -in "$P/ca/crl.pem" -noout -crlnumber | cut -d= -f2; }
n0=$(crlnum)

verify_crl() {
	openssl verify -crl_check -CRLfile "$P/ca/crl.pem" -CAfile "$P/ca/ca.pem" "$1" >"$T/verify" 2>&1
}

# Revoke by agent.
out=$("$S/agent-revoke" --dir "$P" --agent alice 2>"$T/err")
cg_assert_eq "$out" "$sa" "agent-revoke --agent output"
openssl crl -in "$P/ca/crl.pem" -noout -text >"$T/crl.txt"
cg_assert_contains "$T/crl.txt" "Serial Number: $sa"
cg_assert_not_contains "$T/crl.txt" "Serial Number: $sb"
[ "$(crlnum)" != "$n0" ] || cg_fail "CRL number did not change"
verify_crl "$P/agents/alice/cert.pem" && cg_fail "revoked certificate still verifies"
cg_assert_contains "$T/verify" "certificate revoked"
verify_crl "$P/agents/bob/cert.pem" || { cat "$T/verify" >&2; cg_fail "valid certificate rejected"; }

# Revoke by serial, with a reason (lowercase hex and colons are accepted).
lower=$(echo "$sb" | tr 'A-F' 'a-f')
out=$("$S/agent-revoke" --dir "$P" --serial "$lower" --reason superseded 2>/dev/null)
cg_assert_eq "$out" "$sb" "agent-revoke --serial output"
openssl crl -in "$P/ca/crl.pem" -noout -text >"$T/crl.txt"
cg_assert_contains "$T/crl.txt" "Serial Number: $sa"
cg_assert_contains "$T/crl.txt" "Serial Number: $sb"
cg_assert_contains "$T/crl.txt" "Superseded"
cg_assert_contains "$T/crl.txt" "X509v3 Authority Key Identifier"
cg_assert_contains "$T/crl.txt" "Version 2"
verify_crl "$P/agents/bob/cert.pem" && cg_fail "revoked certificate still verifies"
verify_crl "$P/agents/carol/cert.pem" || cg_fail "valid certificate rejected"
grep -qP "^R\t\d{12}Z\t\d{12}Z,superseded\t$sb\tunknown\t/CN=bob$" "$P/ca/index.txt" ||
	{ cat "$P/ca/index.txt" >&2; cg_fail "index.txt row for bob not revoked as OpenSSL writes it"; }

# The CRL is signed by the token's CA key (the CA certificate's public key).
openssl crl -in "$P/ca/crl.pem" -CAfile "$P/ca/ca.pem" -noout >"$T/crlv" 2>&1 || cg_fail "CRL does not verify"
cg_assert_contains "$T/crlv" "verify OK"
pkcs11-tool --module "$CG_MODULE" --token-label ca-certgate --login \
    --pin "$(head -n1 "$P/token/ca.pin")" --read-object --type pubkey --label certgate-ca \
    -o "$T/capub.der" >/dev/null 2>&1
openssl pkey -pubin -inform DER -in "$T/capub.der" -out "$T/capub.pem" 2>/dev/null
openssl crl -in "$P/ca/crl.pem" -outform DER -out "$T/crl.der"
# Split tbsCertList / signature out of the DER and verify with the token public key.
python3 - "$T/crl.der" "$T/tbs.der" "$T/sig.der" <<'PY'
import sys
d = open(sys.argv[1], "rb").read()
def hdr(b, i):
    l = b[i + 1]; i += 2
    if l & 0x80:
        n = l & 0x7f; l = int.from_bytes(b[i:i + n], "big"); i += n
    return i, l
i, _ = hdr(d, 0)                 # outer SEQUENCE
s = i; j, l = hdr(d, i); tbs = d[s:j + l]
k, l2 = hdr(d, j + l); alg_end = k + l2   # AlgorithmIdentifier
m, l3 = hdr(d, alg_end)          # BIT STRING
sig = d[m + 1:m + l3]
open(sys.argv[2], "wb").write(tbs); open(sys.argv[3], "wb").write(sig)
PY
openssl dgst -sha256 -verify "$T/capub.pem" -signature "$T/sig.der" "$T/tbs.der" >/dev/null 2>&1 ||
	cg_fail "CRL signature does not verify with the token's CA public key"

# Listing and audit.
"$S/agent-list" --dir "$P" >"$T/list"
grep -Eq "^$sa +alice .* revoked$" "$T/list" || { cat "$T/list" >&2; cg_fail "alice not listed revoked"; }
grep -Eq "^$sb +bob .* revoked$" "$T/list" || cg_fail "bob not listed revoked"
grep -Eq "^$sc +carol .* valid$" "$T/list" || cg_fail "carol not listed valid"
grep -F '"what":"revoke"' "$P/ca-audit.jsonl" | grep -qF "\"serial\":\"$sa\"" || cg_fail "no audit line for revoking $sa"
grep -F '"what":"revoke"' "$P/ca-audit.jsonl" | grep -F "\"serial\":\"$sb\"" |
	grep -qF '"reason":"superseded"' || cg_fail "no audit line for revoking $sb"

# Errors change nothing.
files=("$P/ca/index.txt" "$P/ca/crl.pem" "$P/ca/crlnumber" "$P/agents.json" "$P/ca-audit.jsonl")
cg_snapshot "${files[@]}" >"$T/snap.before"
fails() {
	local code=$1
	shift
	cg_expect_fail "$code" "$@"
	cg_snapshot "${files[@]}" >"$T/snap.after"
	cmp -s "$T/snap.before" "$T/snap.after" || cg_fail "files changed after failing: $*"
}
fails 1 "$S/agent-revoke" --dir "$P" --agent nobody
cg_assert_contains "$T/err" "nobody"
fails 1 "$S/agent-revoke" --dir "$P" --serial 0123456789ABCDEF
cg_assert_contains "$T/err" "no certificate with serial"
# Revoking what is already revoked is not an error: a note, exit 0, nothing changes.
noop() {
	"$@" >"$T/out" 2>"$T/err" || { cat "$T/err" >&2; cg_fail "expected success: $*"; }
	[ ! -s "$T/out" ] || cg_fail "a no-op revocation printed serials: $*"
	cg_assert_contains "$T/err" "already revoked"
	cg_snapshot "${files[@]}" >"$T/snap.after"
	cmp -s "$T/snap.before" "$T/snap.after" || cg_fail "files changed after a no-op: $*"
}
noop "$S/agent-revoke" --dir "$P" --agent alice
noop "$S/agent-revoke" --dir "$P" --serial "$sb"
noop "$CERTGATE_BIN" ca revoke -c "$P/certgate.json" --serial "$sb"
fails 2 "$S/agent-revoke" --dir "$P"
fails 2 "$S/agent-revoke" --dir "$P" --agent carol --serial "$sc"
fails 2 "$S/agent-revoke" --dir "$P" --agent carol --reason because
fails 2 "$S/agent-revoke" --dir "$P" --agent carol --bogus
fails 2 "$S/agent-revoke" --dir "$P" --serial
fails 1 "$S/agent-revoke" --dir "$P" --serial xyz
fails 2 "$CERTGATE_BIN" ca revoke -c "$P/certgate.json"
fails 2 "$CERTGATE_BIN" ca revoke -c "$P/certgate.json" --agent carol --reason certificateHold

# A revoked agent can be issued again; the old serial stays revoked.
sa2=$("$S/agent-issue" --dir "$P" --agent alice 2>/dev/null)
[ "$sa2" != "$sa" ] || cg_fail "re-issue reused the serial"
"$S/agent-list" --dir "$P" >"$T/list"
grep -Eq "^$sa2 +alice .* valid$" "$T/list" || cg_fail "re-issued alice not valid"
grep -Eq "^$sa +alice .* revoked$" "$T/list" || cg_fail "old alice not revoked"
python3 - "$P/agents.json" <<'PY' || cg_fail "re-issue lost alice's roles"
import json, sys
a = [x for x in json.load(open(sys.argv[1]))["agents"] if x["id"] == "alice"]
assert len(a) == 1 and a[0]["roles"] == ["member"], a
PY

# ca crl --hours 2: nextUpdate = lastUpdate + 2 h, number advances.
n1=$(crlnum)
"$CERTGATE_BIN" ca crl -c "$P/certgate.json" --hours 2 >/dev/null
last=$(date -u -d "$(openssl crl -in "$P/ca/crl.pem" -noout -lastupdate | cut -d= -f2)" +%s)
next=$(date -u -d "$(openssl crl -in "$P/ca/crl.pem" -noout -nextupdate | cut -d= -f2)" +%s)
cg_assert_eq "$((next - last))" 7200 "CRL lifetime"
now=$(date -u +%s)
[ $((next - now)) -ge 7190 ] && [ $((next - now)) -le 7210 ] || cg_fail "nextUpdate is not now + 2 h"
n2=$(crlnum)
[ "$n2" != "$n1" ] || cg_fail "CRL number did not advance"
openssl crl -in "$P/ca/crl.pem" -noout -text >"$T/crl.txt"
cg_assert_contains "$T/crl.txt" "Serial Number: $sa"
cg_assert_contains "$T/crl.txt" "Serial Number: $sb"
cg_expect_fail 2 "$CERTGATE_BIN" ca crl -c "$P/certgate.json" --hours 0

# The helper scripts re-sign a CRL past half of its lifetime (CERTGATE_CRL_NOW fakes
# the clock of the scripts' check only), and leave a fresh one alone.
"$S/agent-list" --dir "$P" >/dev/null 2>&1
cg_assert_eq "$(crlnum)" "$n2" "fresh CRL re-signed by agent-list"
CERTGATE_CRL_NOW=$((now + 3700)) "$S/agent-list" --dir "$P" >/dev/null 2>"$T/err"
cg_assert_contains "$T/err" "re-signing"
[ "$(crlnum)" != "$n2" ] || cg_fail "CRL past half its lifetime was not re-signed"
last=$(date -u -d "$(openssl crl -in "$P/ca/crl.pem" -noout -lastupdate | cut -d= -f2)" +%s)
next=$(date -u -d "$(openssl crl -in "$P/ca/crl.pem" -noout -nextupdate | cut -d= -f2)" +%s)
cg_assert_eq "$((next - last))" $((168 * 3600)) "refreshed CRL uses ca.crl_hours"
openssl crl -in "$P/ca/crl.pem" -CAfile "$P/ca/ca.pem" -noout >/dev/null 2>&1 || cg_fail "refreshed CRL does not verify"

# SIGHUP reaches a live gateway pid in DIR/certgate.pid.
sleep 300 &
sp=$!
cg_track_pid "$sp"
trap 'echo HUP >"$T/hup"' HUP
echo $$ >"$P/certgate.pid"
"$S/agent-revoke" --dir "$P" --agent carol >/dev/null 2>"$T/err"
cg_assert_contains "$T/err" "signalled the gateway"
for _ in 1 2 3 4 5 6 7 8 9 10; do [ -f "$T/hup" ] && break; sleep 0.1; done
[ -f "$T/hup" ] || cg_fail "no SIGHUP delivered"
echo "$sp" >"$P/certgate.pid"
kill "$sp"
wait "$sp" 2>/dev/null || true
"$S/agent-issue" --dir "$P" --agent carol >/dev/null 2>"$T/err"
cg_assert_not_contains "$T/err" "signalled"
rm -f "$P/certgate.pid"

cg_pass
