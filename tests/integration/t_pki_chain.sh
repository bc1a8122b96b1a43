#!/bin/bash
# Chains, CRLs at every level, and issuer binding (README "Chains, CRLs and issuers").
# certgate's own CA (soft PKI) and a corporate root + issuing CA made with `openssl ca`
# (enterprise.sh) are both in tls.ca, the three CRLs in tls.crl:
#  - agents of the issuing CA connect (a chain two levels deep, every level's CRL
#    checked), certgate's own agent too;
#  - without the root's CRL `certgate check` and `serve` fail naming the root;
#  - issuer binding: an enterprise certificate with a certgate agent's URI and CN is
#    not that agent, a certgate certificate with an enterprise agent's URI and
#    subject is not that one; "issuer" entries match by URI and by subject;
#  - a map entry in OpenSSL's slash form is refused at load, naming agent and line;
#  - a revocation under the issuing CA (openssl ca -revoke + -gencrl) refuses the
#    agent after the reload (within the 1 s change poll + reload; bound 5 s) while a
#    certgate certificate with the same serial stays served (serials are per issuer);
#  - an older CRL bundle on reload is not taken: logged, counted, the newer stays.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
. "$HERE/gw.sh"
. "$HERE/enterprise.sh"
cg_setup

UP_PORT=$(cg_free_port)
LPORT=$(cg_free_port)
APORT=$(cg_free_port)
PKI=$T/pki
ENT=$T/ent
PPC=(python3 "$CG_SRC/tests/tools/ppclient.py" --connect "127.0.0.1:$LPORT")
gw_tool_upstream "$UP_PORT"
gw_soft_pki "$PKI" "$LPORT" "http://127.0.0.1:$UP_PORT/" || cg_fail "soft PKI"
gw_soft_issue "$PKI" alice || cg_fail "issue alice"
ent_pki "$ENT" || cg_fail "enterprise PKI"
ent_issue "$ENT" bob || cg_fail "issue bob"
ent_issue "$ENT" carol || cg_fail "issue carol"
# enterprise certificate claiming certgate's alice (same SAN URI, CN=alice)
ent_issue "$ENT" evil-alice "spiffe://certgate.local/agent/alice" alice || cg_fail "issue evil-alice"
ISSUER=$(ent_dn "$ENT/issuing/ca.pem")
ROOT=$(ent_dn "$ENT/root/ca.pem")
CAROL=$(ent_dn "$ENT/agents/carol/cert.pem")
BOB_SERIAL=$(openssl x509 -in "$ENT/agents/bob/cert.pem" -noout -serial | sed 's/^serial=//')

# certgate-CA certificates: fake-bob with bob's URI and carol's subject, and dave with
# bob's serial (made after setting the soft CA's next serial)
soft_issue_as() {
	local name=$1 uri=$2 subj=$3 a=$PKI/agents/$1
	mkdir -p "$a"
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$a/key.pem" \
	    -out "$a/req.pem" -subj "$subj" 2>/dev/null || return 1
	GW_SAN="URI:$uri" openssl ca -batch -config "$PKI/ca/openssl.cnf" -extensions agent_ext \
	    -days 1 -in "$a/req.pem" -out "$a/cert.pem" -notext -preserveDN 2>/dev/null
}
soft_issue_as fake-bob "spiffe://corp.example/agent/bob" "/CN=carol/O=Example Corp" ||
	cg_fail "issue fake-bob"
echo "$BOB_SERIAL" >"$PKI/ca/serial"
soft_issue_as dave "spiffe://certgate.local/agent/dave" "/CN=dave" || cg_fail "issue dave"
cg_assert_eq "$(openssl x509 -in "$PKI/agents/dave/cert.pem" -noout -serial)" \
    "serial=$BOB_SERIAL" "dave has bob's serial (another issuer)"
cg_assert_eq "$(ent_dn "$PKI/agents/fake-bob/cert.pem")" "$CAROL" "fake-bob has carol's subject"

cat "$PKI/ca/ca.pem" "$ENT/bundle.pem" >"$PKI/trust.pem"
cat "$PKI/ca/crl.pem" "$ENT/crls.pem" >"$PKI/crls.pem"
python3 - "$PKI/certgate.json" "$APORT" "$PKI/agents.json" "$ISSUER" "$CAROL" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["admin"] = "127.0.0.1:" + sys.argv[2]
c["tls"]["ca"] = "trust.pem"
c["tls"]["crl"] = "crls.pem"
c["tls"]["crl_check"] = True
json.dump(c, open(sys.argv[1], "w"), indent=1)
m = json.load(open(sys.argv[3]))
m["agents"] += [
    {"id": "dave", "uri": "spiffe://certgate.local/agent/dave", "roles": ["admin"]},
    {"id": "bob", "uri": "spiffe://corp.example/agent/bob", "issuer": sys.argv[4],
     "roles": ["admin"]},
    {"id": "carol", "subject": sys.argv[5], "issuer": sys.argv[4], "roles": ["admin"]},
]
json.dump(m, open(sys.argv[3], "w"), indent=1)
PY

agent() { local a=$1 d=$2; shift 2; "${PPC[@]}" --cert "$d/agents/$a/${CHAIN:-cert.pem}" \
    --key "$d/agents/$a/key.pem" --ca "$PKI/ca/ca.pem" "$@"; }
field() { python3 -c 'import json,sys; r=json.load(sys.stdin); print(r.get(sys.argv[1]))' "$1"; }
metric() { curl -s "http://127.0.0.1:$APORT/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }
check() { "$CERTGATE_BIN" check -c "$1" >"$T/check.out" 2>"$T/check.err"; }

check "$PKI/certgate.json" || { cat "$T/check.err" >&2; cg_fail "check with the full bundles"; }

# --- a CA level without its CRL: check and serve fail, naming it -------------------------
cp "$PKI/certgate.json" "$PKI/noroot.json"
python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); c["tls"]["crl"]="noroot.pem"; json.dump(c, open(sys.argv[1],"w"))' "$PKI/noroot.json"
cat "$PKI/ca/crl.pem" "$ENT/issuing/crl.pem" >"$PKI/noroot.pem"
rc=0
check "$PKI/noroot.json" || rc=$?
[ "$rc" -ne 0 ] || cg_fail "certgate check accepted a bundle without the root's CRL"
grep -q "has no CRL of CA \"$ROOT\"" "$T/check.err" ||
	{ cat "$T/check.err" >&2; cg_fail "check does not name the CA without a CRL"; }
rc=0
timeout 20 "$CERTGATE_BIN" serve -c "$PKI/noroot.json" >"$T/noroot.out" 2>&1 || rc=$?
[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] || cg_fail "serve started without the root's CRL (rc $rc)"
grep -q "has no CRL of CA \"$ROOT\"" "$T/noroot.out" || cg_fail "serve does not name the CA"

# --- a map entry in slash form: refused at load with agent and line ----------------------
cp "$PKI/agents.json" "$PKI/slash.json"
python3 - "$PKI/slash.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
m["agents"].append({"id": "slashy", "subject": "/O=Example Corp/CN=slashy", "roles": ["admin"]})
json.dump(m, open(sys.argv[1], "w"), indent=1)
PY
line=$(grep -n '"/O=Example Corp/CN=slashy"' "$PKI/slash.json" | cut -d: -f1)
python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); c["identity_map"]="slash.json"; json.dump(c, open(sys.argv[2],"w"))' "$PKI/certgate.json" "$PKI/slash-cfg.json"
rc=0
check "$PKI/slash-cfg.json" || rc=$?
[ "$rc" -ne 0 ] || cg_fail "check accepted a subject in slash form"
grep -q "line $line: agent \"slashy\": \"subject\" \"/O=Example Corp/CN=slashy\" is not an RFC 4514 DN" "$T/check.err" ||
	{ cat "$T/check.err" >&2; cg_fail "slash form: no message with agent and line $line"; }
grep -q 'write "CN=slashy,O=Example Corp"' "$T/check.err" ||
	{ cat "$T/check.err" >&2; cg_fail "slash form: no RFC 4514 suggestion"; }

gw_start "$PKI/certgate.json"

# --- chain two levels deep, all CRLs checked -------------------------------------------
cg_assert_eq "$(CHAIN=chain.pem agent bob "$ENT" | field ok)" True "bob (issuing CA, chain) served"
cg_assert_eq "$(CHAIN=chain.pem agent carol "$ENT" | field ok)" True "carol (issuer + subject) served"
cg_assert_eq "$(agent alice "$PKI" | field ok)" True "alice (certgate CA) served"
cg_assert_eq "$(agent dave "$PKI" | field ok)" True "dave (certgate CA) served"

# --- issuer binding ------------------------------------------------------------------
out=$(CHAIN=chain.pem agent evil-alice "$ENT")
cg_assert_eq "$(echo "$out" | field ok)" False "enterprise cert with alice's URI and CN"
cg_assert_eq "$(echo "$out" | field status)" 403 "  ... is unmapped (403)"
out=$(agent fake-bob "$PKI")
cg_assert_eq "$(echo "$out" | field ok)" False "certgate cert with bob's URI and carol's subject"
cg_assert_eq "$(echo "$out" | field status)" 403 "  ... is unmapped (403)"
grep -q '"reason":"certificate is not mapped to an agent".*"uri":"spiffe://certgate.local/agent/alice"' \
    "$PKI/audit.jsonl" || cg_fail "no unmapped audit line for evil-alice"

# --- revocation under the issuing CA, then an older CRL bundle ---------------------------
cp "$PKI/crls.pem" "$T/crls-old.pem"
reloads() { grep -c "reloaded (" "$GW_LOG" || true; }
wait_reload() {
	local n0=$1 i
	for i in $(seq 1 50); do
		[ "$(reloads)" -gt "$n0" ] && return 0
		sleep 0.1
	done
	cg_fail "no reload within 5 s of $2"
}
sleep 1.1       # the CRL files' mtimes must differ from the ones loaded
n0=$(reloads)
ent_revoke "$ENT" bob || cg_fail "revoke bob"
ent_crls "$ENT" || cg_fail "gencrl"
cat "$PKI/ca/crl.pem" "$ENT/crls.pem" >"$PKI/crls.pem.tmp"
mv "$PKI/crls.pem.tmp" "$PKI/crls.pem"
wait_reload "$n0" "the revocation"
out=$(CHAIN=chain.pem agent bob "$ENT")
cg_assert_eq "$(echo "$out" | field ok)" False "bob refused after the revocation"
cg_assert_eq "$(agent dave "$PKI" | field ok)" True "dave (same serial, certgate CA) still served"
cg_assert_eq "$(CHAIN=chain.pem agent carol "$ENT" | field ok)" True "carol still served"
cg_assert_eq "$(metric certgate_crls)" 3 "three CRLs in force"
cg_assert_eq "$(metric certgate_crl_older_refused_total)" 0 "no older CRL yet"

sleep 1.1
n0=$(reloads)
cp "$T/crls-old.pem" "$PKI/crls.pem.tmp"
mv "$PKI/crls.pem.tmp" "$PKI/crls.pem"
wait_reload "$n0" "the older CRL bundle"
gw_log_contains "CRL of CA \"$ISSUER\" in [^ ]*crls.pem has a lower CRL number than the one in force: not taken" ||
	cg_fail "the older issuing-CA CRL is not logged"
older=$(metric certgate_crl_older_refused_total)
# the issuing CA's and the root's CRLs are both older (ent_crls re-signed both)
cg_assert_eq "$older" 2 "older CRLs counted"
cg_assert_eq "$(CHAIN=chain.pem agent bob "$ENT" | field ok)" False "bob still refused (newer CRL kept)"
cg_assert_eq "$(agent alice "$PKI" | field ok)" True "alice still served"

gw_stop || cg_fail "clean shutdown"
cg_pass
