#!/usr/bin/env bash
# Crash safety of an issuance: the CA service SIGKILLs itself at each step of an
# enrollment (CERTGATE_CA_TEST_CRASH, a test hook), then at random moments of a loop
# of enrollments (kill -9 from outside), and a `certgate ca issue` is killed too.
# After each restart the CA database, the identity map, the archive and the CRL are
# consistent: every row has its archived certificate, every archived certificate
# has a row, every valid agent row has its map entry, no serial twice, a token is
# used at most once and never again after a crash (only the certificate it was spent for
# is handed out again, to the same key, when it was committed), interrupted issuances are
# revoked.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/ca.sh"
cg_setup
cg_pki_init
P=$PKI

consistent() {	# WHAT
	python3 - "$P" <<'PY' || cg_fail "inconsistent CA state after: $1"
import glob, json, os, subprocess, sys
P = sys.argv[1]
rows = [l.rstrip("\n").split("\t") for l in open(P + "/ca/index.txt")]
serials = [r[3] for r in rows]
assert len(serials) == len(set(serials)), "duplicate serial"
archived = {os.path.basename(f)[:-4] for f in glob.glob(P + "/ca/certs/*.pem")}
assert set(serials) == archived, ("rows vs archive", set(serials) ^ archived)
m = json.load(open(P + "/agents.json"))
uris = {a["uri"] for a in m["agents"] if "uri" in a}
for r in rows:
    if r[0] == "V" and r[5].startswith("/CN=") and " " not in r[5]:
        assert "spiffe://certgate.local/agent/" + r[5][4:] in uris, ("unmapped valid row", r)
crl = subprocess.run(["openssl", "crl", "-in", P + "/ca/crl.pem", "-noout", "-text"],
    capture_output=True, text=True, check=True).stdout
for r in rows:
    if r[0] == "R":
        assert "Serial Number: " + r[3] in crl, ("revoked row not in the CRL", r)
# Each token spent at most once: one enroll audit line per token id at most.
seen = {}
for l in open(P + "/ca-audit.jsonl"):
    a = json.loads(l)
    if a["what"] == "enroll":
        assert a["token"] not in seen, ("token used twice", a["token"])
        seen[a["token"]] = a["serial"]
PY
}
token_rec() {	# TOKEN -> path of its record
	echo "$P/ca/tokens/$(printf '%s' "$(echo "$1" | cut -d. -f3)" | sha256sum | cut -d' ' -f1).json"
}
enroll_try() {	# AGENT TOKEN NAME -> EST_STATUS
	ca_csr "$T/$3.csr" p256
	ca_basic "$T/$3.auth" "$1" "$2"
	ca_est "$T/$3" POST /.well-known/est/simpleenroll --ctype application/pkcs10 \
	    --auth-file "$T/$3.auth" --body "$T/$3.csr"
}

# --- a crash at each step ------------------------------------------------------------------
for step in before_sign after_sign after_archive after_map after_audit after_commit; do
	agent=crash-${step//_/-}
	ca_token "$agent" --role guest
	tok=$TOKEN
	CERTGATE_CA_TEST_CRASH=$step ca_serve_start
	enroll_try "$agent" "$tok" "c-$step"
	cg_assert_eq "$EST_STATUS" 503 "enrollment answered when the CA died at $step"
	for i in $(seq 1 50); do kill -0 "$CA_PID" 2>/dev/null || break; sleep 0.1; done
	kill -0 "$CA_PID" 2>/dev/null && cg_fail "the CA service did not die at $step"
	wait "$CA_PID" 2>/dev/null || true
	cg_assert_contains "$T/ca-serve.log" "CERTGATE_CA_TEST_CRASH=$step"
	ca_serve_start
	consistent "a crash at $step"
	# The token was marked used before the signature: never usable again.
	python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); assert r.get("used_at"), r' \
	    "$(token_rec "$tok")" || cg_fail "token not marked used after a crash at $step"
	serial=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["serial"])' "$(token_rec "$tok")")
	row=$(awk -F'\t' -v s="$serial" '$4 == s {print $1}' "$P/ca/index.txt")
	case "$step" in
	before_sign | after_sign) want="" ;;      # nothing signed survives: no row, no file
	after_commit) want=V ;;
	*) want=R ;;                              # archived, never committed: revoked
	esac
	cg_assert_eq "$row" "$want" "database row of the interrupted issuance ($step)"
	if [ "$want" = R ]; then
		grep -F '"what":"reconcile"' "$P/ca-audit.jsonl" | grep -qF "\"serial\":\"$serial\"" ||
			cg_fail "no reconcile audit line for $serial ($step)"
	fi
	# The same key again (the agent's retry): a certificate committed before the crash
	# is handed out again, one never committed is not.
	ca_basic "$T/same-$step.auth" "$agent" "$tok"
	ca_est "$T/same-$step" POST /.well-known/est/simpleenroll --ctype application/pkcs10 \
	    --auth-file "$T/same-$step.auth" --body "$T/c-$step.csr"
	if [ "$want" = V ]; then
		cg_assert_eq "$EST_STATUS" 200 "the same key after a crash at $step"
		got=$(base64 -d <"$T/same-$step.body" | openssl pkcs7 -inform DER -print_certs |
		    openssl x509 -noout -serial | cut -d= -f2)
		cg_assert_eq "$got" "$serial" "the certificate re-delivered after a crash at $step"
	else
		cg_assert_eq "$EST_STATUS" 401 "the same key after a crash at $step"
	fi
	enroll_try "$agent" "$tok" "again-$step"
	cg_assert_eq "$EST_STATUS" 401 "the token after a crash at $step"
	ca_serve_stop
done

# --- kill -9 from outside during a loop of enrollments -------------------------------------
ca_serve_start
for round in 1 2 3 4 5; do
	for i in 1 2 3 4 5 6; do
		ca_token "loop-$round-$i" --role guest
		echo "$TOKEN" >"$T/loop-$round-$i.tok"
	done
	(
		for i in 1 2 3 4 5 6; do
			enroll_try "loop-$round-$i" "$(cat "$T/loop-$round-$i.tok")" "l-$round-$i" || true
		done
	) >/dev/null 2>&1 &
	bg=$!
	sleep "0.$((RANDOM % 6 + 1))"
	kill -9 "$CA_PID" 2>/dev/null || true
	wait "$CA_PID" 2>/dev/null || true
	wait "$bg" 2>/dev/null || true
	ca_serve_start
	consistent "kill -9 in round $round"
	# Every token of the round was either spent once or is still usable once.
	for i in 1 2 3 4 5 6; do
		tok=$(cat "$T/loop-$round-$i.tok")
		if python3 -c 'import json,sys; sys.exit(0 if json.load(open(sys.argv[1])).get("used_at") else 1)' \
		    "$(token_rec "$tok")"; then
			enroll_try "loop-$round-$i" "$tok" "r-$round-$i"
			cg_assert_eq "$EST_STATUS" 401 "a spent token (round $round)"
		else
			enroll_try "loop-$round-$i" "$tok" "r-$round-$i"
			cg_assert_eq "$EST_STATUS" 200 "an unspent token after the crash (round $round)"
		fi
	done
	consistent "retries in round $round"
done
ca_serve_stop

# --- a killed command ---------------------------------------------------------------------
rc=0
CERTGATE_CA_TEST_CRASH=after_map "$CG_SRC/scripts/agent-issue" --dir "$P" --agent cli-bot \
    --role guest >/dev/null 2>"$T/cli.err" || rc=$?
[ "$rc" -ne 0 ] || cg_fail "the crash hook did not stop agent-issue"
"$CG_SRC/scripts/agent-issue" --dir "$P" --agent cli-bot2 --role guest >/dev/null 2>"$T/cli2.err" ||
	{ cat "$T/cli2.err" >&2; cg_fail "agent-issue after a crashed one"; }
cg_assert_contains "$T/cli2.err" "recorded as revoked"
consistent "a killed agent-issue"
# The interrupted agent was never committed: it can be issued now.
"$CG_SRC/scripts/agent-issue" --dir "$P" --agent cli-bot --role guest >/dev/null 2>&1 ||
	cg_fail "issuing the agent whose issuance was interrupted"
consistent "re-issuing it"
cg_pass
