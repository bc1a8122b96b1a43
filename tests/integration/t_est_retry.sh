#!/usr/bin/env bash
# A retried enrollment gets its certificate (README "Enrollment and renewal", retries),
# against the real gateway with curl and openssl as the EST client:
#  - the same token and the same CSR key again -> 200 with the same certificate (same
#    serial), audited "enroll_redelivered"; the database holds one certificate for it;
#  - the same token with another key -> 401, audited as a refused use;
#  - a spent token after its TTL, same key -> 401;
#  - the lost answer itself: the CA service is stopped (SIGSTOP) while a request waits
#    for it, the gateway answers 503 after its 10 s deadline, the service resumes;
#    the agent's retry with the same key gets 200, and the token was spent once: the
#    service takes the first request up after the gateway's deadline and refuses it
#    as busy without spending anything ("deadline" in the CA protocol);
#  - `certgate agent renew` retries the gateway's 503 while the CA service is stopped
#    and renews once it is back.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/gw.sh"
cg_setup

UPORT=$(cg_free_port)
EPORT=$(cg_free_port)
cg_pki_init --upstream "http://127.0.0.1:$UPORT/" --enroll "127.0.0.1:$EPORT"
gw_tool_upstream "$UPORT" "$T/upstream.jsonl"
gw_start "$PKI/certgate.json" "$T/gw.log"
gw_log_contains "enrollment \\(EST, OCSP\\) on https://127.0.0.1:$EPORT" ||
    cg_fail "the enrollment listener was not started"
EST=https://127.0.0.1:$EPORT/.well-known/est
C=$T/client
mkdir -p "$C"
AUDIT=$PKI/ca-audit.jsonl

token() {
	"$CG_SRC/scripts/agent-token" --dir "$PKI" "$@" 2>"$T/token.err" | tail -n1
}
csr() {	# NAME: a new P-256 key $C/NAME.key and its base64 DER CSR $C/NAME.b64
	openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$C/$1.key" \
	    -subj "/CN=ignored" -outform DER 2>/dev/null | base64 >"$C/$1.b64"
}
enroll() {	# ID TOKEN CSR OUT [CURL ARGS]: prints the HTTP status; body in OUT, headers OUT.hdr
	local id=$1 tok=$2 body=$3 out=$4
	shift 4
	printf 'Authorization: Basic %s\n' "$(printf '%s:%s' "$id" "$tok" | base64 -w0)" >"$C/auth.hdr"
	curl -s --cacert "$C/ca.pem" -H @"$C/auth.hdr" -H 'Content-Type: application/pkcs10' \
	    --data-binary @"$body" -o "$out" -D "$out.hdr" -w '%{http_code}' "$@" "$EST/simpleenroll" ||
	    true
}
serial_of() {	# base64 PKCS#7 -> serial (uppercase hex)
	base64 -d "$1" | openssl pkcs7 -inform DER -print_certs | openssl x509 -noout -serial |
	    sed 's/^serial=//'
}
tid() {	# TOKEN -> its id in audit lines (16 hex of SHA-256 of the secret)
	printf '%s' "$(echo "$1" | cut -d. -f3)" | sha256sum | cut -c1-16
}
audit_count() {	# WHAT TOKEN-ID
	python3 - "$AUDIT" "$1" "$2" <<'EOF'
import json, sys
print(sum(1 for l in open(sys.argv[1])
          if (a := json.loads(l))["what"] == sys.argv[2] and a.get("token") == sys.argv[3]))
EOF
}

curl -sk "$EST/cacerts" | base64 -d | openssl pkcs7 -inform DER -print_certs |
    openssl x509 >"$C/ca.pem"

# 1. enroll, then the same token with the same CSR again: the same certificate.
TOKEN=$(token --agent bot1 --role member --lifetime 1h --ttl 15m)
ID=$(tid "$TOKEN")
csr a
code=$(enroll bot1 "$TOKEN" "$C/a.b64" "$C/a1.p7")
[ "$code" = 200 ] || { cat "$C/a1.p7" >&2; cg_fail "first simpleenroll: HTTP $code"; }
s1=$(serial_of "$C/a1.p7")
code=$(enroll bot1 "$TOKEN" "$C/a.b64" "$C/a2.p7")
[ "$code" = 200 ] || { cat "$C/a2.p7" >&2; cg_fail "retry with the same key: HTTP $code, want 200"; }
s2=$(serial_of "$C/a2.p7")
cg_assert_eq "$s2" "$s1" "serial of the re-delivered certificate"
cmp -s <(base64 -d "$C/a1.p7" | openssl pkcs7 -inform DER -print_certs | openssl x509 -outform DER) \
    <(base64 -d "$C/a2.p7" | openssl pkcs7 -inform DER -print_certs | openssl x509 -outform DER) ||
    cg_fail "the re-delivered certificate differs from the first"
# A new CSR for the same key (another signature) is the same key too.
openssl req -new -key "$C/a.key" -subj /CN=other -outform DER 2>/dev/null | base64 >"$C/a-again.b64"
code=$(enroll bot1 "$TOKEN" "$C/a-again.b64" "$C/a3.p7")
cg_assert_eq "$code" 200 "retry with a new CSR for the same key"
cg_assert_eq "$(serial_of "$C/a3.p7")" "$s1" "serial for the new CSR of the same key"
cg_assert_eq "$(audit_count enroll "$ID")" 1 "enroll audit lines for the token"
cg_assert_eq "$(audit_count enroll_redelivered "$ID")" 2 "enroll_redelivered audit lines"
grep -F '"what":"enroll_redelivered"' "$AUDIT" | grep -F "\"serial\":\"$s1\"" |
    grep -qF '"agent":"bot1"' || cg_fail "the re-delivery audit line lacks serial/agent"
cg_assert_eq "$(grep -c "/CN=bot1\$" "$PKI/ca/index.txt")" 1 "database rows for bot1"
# The token record carries the key's hash, written with used_at.
python3 - "$PKI/ca/tokens" "$TOKEN" "$C/a.key" <<'EOF' || cg_fail "the spent token does not record the key hash"
import hashlib, json, subprocess, sys
h = hashlib.sha256(sys.argv[2].split(".")[2].encode()).hexdigest()
r = json.load(open(f"{sys.argv[1]}/{h}.json"))
spki = subprocess.run(["openssl", "pkey", "-in", sys.argv[3], "-pubout", "-outform", "DER"],
                      capture_output=True, check=True).stdout
assert r["used_at"] and r["key"] == hashlib.sha256(spki).hexdigest(), r
EOF
echo "same token, same key: the same certificate $s1 again"

# 2. the same token with another key stays refused, audited as today.
before=$(audit_count refused "$ID")
csr b
code=$(enroll bot1 "$TOKEN" "$C/b.b64" "$C/b.p7")
cg_assert_eq "$code" 401 "the spent token with another key"
grep -qi '^www-authenticate:' "$C/b.p7.hdr" || cg_fail "401 without WWW-Authenticate"
cg_assert_eq "$(audit_count refused "$ID")" "$((before + 1))" "refused audit lines for the token"
tail -n1 "$AUDIT" | grep -F '"op":"enroll"' | grep -qF 'already used' ||
    cg_fail "the refusal is not audited as a used token"
cg_assert_eq "$(audit_count enroll_redelivered "$ID")" 2 "no re-delivery to another key"
# ... nor to the same key under another agent name.
code=$(enroll bot2 "$TOKEN" "$C/a.b64" "$C/a4.p7")
cg_assert_eq "$code" 401 "the spent token, same key, another agent"

# 3. after the token's TTL, the same key gets nothing more: edit the record's expiry
#    into the past (as time passing would), under the CA lock like the CA does.
python3 - "$PKI/ca/tokens" "$TOKEN" <<'EOF'
import hashlib, json, os, sys
p = f"{sys.argv[1]}/{hashlib.sha256(sys.argv[2].split('.')[2].encode()).hexdigest()}.json"
r = json.load(open(p))
r["expires"] = r["created"]
open(p + ".tmp", "w").write(json.dumps(r))
os.rename(p + ".tmp", p)
EOF
code=$(enroll bot1 "$TOKEN" "$C/a.b64" "$C/a5.p7")
cg_assert_eq "$code" 401 "the spent token after its TTL, same key"

# 4. the lost answer: the CA service stops while the request waits for it.
CAPID=$(sed -n 's/.*started the CA service (pid \([0-9]*\)).*/\1/p' "$T/gw.log" | tail -n1)
[ -n "$CAPID" ] || CAPID=$(pgrep -P "$GW_PID" -f 'ca serve' | head -n1 || true)
[ -n "$CAPID" ] && kill -0 "$CAPID" || cg_fail "cannot find the CA service's pid"
TOKEN=$(token --agent bot3 --role member --lifetime 1h)
ID=$(tid "$TOKEN")
csr c
kill -STOP "$CAPID"
code=$(enroll bot3 "$TOKEN" "$C/c.b64" "$C/c1.p7" --max-time 60)
kill -CONT "$CAPID"
cg_assert_eq "$code" 503 "enrollment while the CA service is stopped"
grep -qi '^retry-after:' "$C/c1.p7.hdr" || cg_fail "503 without Retry-After"
code=000
for i in $(seq 1 20); do	# the service catches up with its queue, then answers
	code=$(enroll bot3 "$TOKEN" "$C/c.b64" "$C/c2.p7" --max-time 60)
	[ "$code" = 200 ] && break
	[ "$code" = 503 ] || break
	sleep 0.5
done
[ "$code" = 200 ] || { cat "$C/c2.p7" >&2; cg_fail "the retry after a lost answer: HTTP $code"; }
s3=$(serial_of "$C/c2.p7")
cg_assert_eq "$(audit_count enroll "$ID")" 1 "enroll audit lines for the token after a lost answer"
grep -F '"what":"enroll"' "$AUDIT" | grep -F "\"token\":\"$ID\"" | grep -qF "\"serial\":\"$s3\"" ||
    cg_fail "the retry did not get the certificate the token was spent for"
cg_assert_eq "$(grep -c "/CN=bot3\$" "$PKI/ca/index.txt")" 1 "database rows for bot3"
# The stopped service took the first request up after the gateway's deadline: it
# refused it as busy without spending the token, so the retry was the first use.
python3 - "$AUDIT" "$ID" <<'EOF' || cg_fail "the late request was not refused as busy"
import json, sys
late = [a for l in open(sys.argv[1]) if (a := json.loads(l)).get("token") == sys.argv[2]
        and a["what"] == "refused" and "deadline" in a.get("reason", "")]
assert len(late) == 1 and late[0]["op"] == "enroll", late
EOF
cg_assert_eq "$(audit_count enroll_redelivered "$ID")" 0 "re-deliveries after a refused late request"
echo "lost answer: the late request was refused as busy, the retry got $s3"

# 5. `certgate agent renew` while the CA service is stopped: its first attempt gets
#    the gateway's 503 (after the 10 s deadline), it tries again after Retry-After,
#    and once the service is back the renewal works.
"$CG_SRC/scripts/agent-issue" --dir "$PKI" --agent bot4 --role member >/dev/null 2>"$T/issue.err" ||
    { cat "$T/issue.err" >&2; cg_fail "agent-issue bot4"; }
A4=$PKI/agents/bot4
old4=$(openssl x509 -in "$A4/cert.pem" -noout -serial)
sleep 1.5	# the gateway maps bot4 (it reloads the identity map once a second)
kill -STOP "$CAPID"
"$CERTGATE_BIN" agent renew --url "https://127.0.0.1:$GW_PORT" --dir "$A4" >"$T/renew.out" \
    2>"$T/renew.err" &
RPID=$!
cg_track_pid "$RPID"
for i in $(seq 1 300); do	# the gateway's deadline is 10 s; 30 s for a loaded machine
	grep -q "trying again in" "$T/renew.err" && break
	sleep 0.1
done
kill -CONT "$CAPID"
grep -q "trying again in" "$T/renew.err" || { cat "$T/renew.err" >&2; cg_fail "agent renew did not retry the 503"; }
rc=0
wait "$RPID" || rc=$?
[ "$rc" = 0 ] || { cat "$T/renew.out" "$T/renew.err" >&2; cg_fail "agent renew failed after the CA service came back (rc $rc)"; }
cg_assert_contains "$T/renew.out" "renewed: certificate"
[ "$(openssl x509 -in "$A4/cert.pem" -noout -serial)" != "$old4" ] || cg_fail "bot4's certificate was not replaced"
echo "agent renew: a busy CA service (503) was retried and the renewal went through"
cg_pass
