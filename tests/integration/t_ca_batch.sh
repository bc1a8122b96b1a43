#!/usr/bin/env bash
# Group commit in the CA service: enrollments and renewals that arrive together are
# answered as one batch (one lock, one database save, shared fsyncs), each with the
# answer it would have got alone. The service is stopped (SIGSTOP) while 32 EST
# simpleenrolls with distinct tokens, 2 uses of one token with different keys and
# 2 of another with the same key connect and send; once every connection is queued
# it continues and reads them all in one turn of its loop. Then: every good request
# got a distinct certificate; the token used with two keys made exactly one (the
# other use 401); the token used twice with one key made one certificate, handed out
# twice (the second a re-delivery); every serial is in ca/index.txt and the archive,
# the map has every agent, the audit has one issuance line each; the log shows a
# batch of more than one. The same for 8 concurrent renewals.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/ca.sh"
cg_setup
cg_pki_init
P=$PKI
N=32

# Waits until WANT connections sit in the stopped service's accept queue.
queued() {	# WANT
	local i q
	for i in $(seq 1 300); do
		q=$(ss -xlH | awk -v s="$CA_SOCK" '$5 == s {print $3}')
		[ "${q:-0}" -ge "$1" ] && { sleep 0.3; return 0; }
		sleep 0.1
	done
	cg_fail "only ${q:-0} of $1 connections reached the CA socket"
}
est_bg() {	# NAME AUTH CSR [CERT]: simpleenroll, or simplereenroll with CERT
	local op=simpleenroll
	[ -z "${4:-}" ] || op=simplereenroll
	"$CATOOL" est "$CA_SOCK" "$P/ca/ca.pem" POST "/.well-known/est/$op" \
	    --ctype application/pkcs10 ${2:+--auth-file "$2"} ${4:+--cert "$4"} --body "$3" \
	    --out "$T/$1.body" >"$T/$1" 2>"$T/$1.err" &
	pids+=($!)
}
status() { sed -n 's/^status //p' "$T/$1" | head -n1; }
serial_of() { base64 -d <"$T/$1.body" | openssl pkcs7 -inform DER -print_certs |
	openssl x509 -noout -serial | cut -d= -f2; }
tid() { printf '%s' "$(echo "$1" | cut -d. -f3)" | sha256sum | cut -c1-16; }

for i in $(seq 1 $N); do
	ca_token "bat$i" --role guest
	ca_basic "$T/bat$i.auth" "bat$i" "$TOKEN"
	ca_csr "$T/bat$i.csr" p256
done
ca_token twokeys --role guest
tok2=$TOKEN
ca_basic "$T/two.auth" twokeys "$tok2"
ca_csr "$T/two-a.csr" p256
ca_csr "$T/two-b.csr" p256
ca_token onekey --role guest
tok1=$TOKEN
ca_basic "$T/one.auth" onekey "$tok1"
ca_csr "$T/one.csr" p256

ca_serve_start
kill -STOP "$CA_PID"
pids=()
for i in $(seq 1 $N); do est_bg "e$i" "$T/bat$i.auth" "$T/bat$i.csr"; done
est_bg two-a "$T/two.auth" "$T/two-a.csr"
est_bg two-b "$T/two.auth" "$T/two-b.csr"
est_bg one-a "$T/one.auth" "$T/one.csr"
est_bg one-b "$T/one.auth" "$T/one.csr"
queued $((N + 4))
kill -CONT "$CA_PID"
for p in "${pids[@]}"; do wait "$p" || cg_fail "catool est failed (see $T)"; done

serials=()
for i in $(seq 1 $N); do
	cg_assert_eq "$(status "e$i")" 200 "enrollment $i of the batch"
	s=$(serial_of "e$i")
	cg_assert_eq "$(base64 -d <"$T/e$i.body" | openssl pkcs7 -inform DER -print_certs |
	    openssl x509 -noout -subject)" "subject=CN = bat$i" "subject of enrollment $i"
	serials+=("$s")
done
# The token used with two keys: exactly one certificate, the other use refused.
st="$(status two-a) $(status two-b)"
case "$st" in
"200 401" | "401 200") ;;
*) cg_fail "two keys on one token: statuses $st (want one 200, one 401)" ;;
esac
w=$([ "$(status two-a)" = 200 ] && echo two-a || echo two-b)
serials+=("$(serial_of "$w")")
cg_assert_eq "$(grep -cP '\t/CN=twokeys$' "$P/ca/index.txt")" 1 "certificates for the token used with two keys"
# The token used twice with one key: one certificate, handed out to both.
cg_assert_eq "$(status one-a) $(status one-b)" "200 200" "one key twice on one token"
cg_assert_eq "$(serial_of one-a)" "$(serial_of one-b)" "the re-delivered certificate"
serials+=("$(serial_of one-a)")
cg_assert_eq "$(grep -cP '\t/CN=onekey$' "$P/ca/index.txt")" 1 "certificates for the token used with one key"
cg_assert_eq "$(grep -F '"what":"enroll_redelivered"' "$P/ca-audit.jsonl" | grep -cF "\"token\":\"$(tid "$tok1")\"")" 1 \
    "re-deliveries of the token used with one key"
for t in "$tok1" "$tok2"; do
	cg_assert_eq "$(grep -F '"what":"enroll"' "$P/ca-audit.jsonl" | grep -cF "\"token\":\"$(tid "$t")\"")" 1 \
	    "issuance lines for a token used twice"
done

cg_assert_eq "$(printf '%s\n' "${serials[@]}" | sort -u | wc -l)" $((N + 2)) "distinct certificates"
for s in "${serials[@]}"; do
	cg_assert_eq "$(awk -F'\t' -v s="$s" '$4 == s {print $1}' "$P/ca/index.txt")" V "row of $s"
	[ -f "$P/ca/certs/$s.pem" ] || cg_fail "certificate $s is not archived"
	cg_assert_eq "$(grep -F '"what":"enroll"' "$P/ca-audit.jsonl" | grep -cF "\"serial\":\"$s\"")" 1 \
	    "issuance lines for $s"
done
python3 - "$P" "$N" <<'PY' || cg_fail "the identity map lacks an agent of the batch"
import json, sys
m = json.load(open(sys.argv[1] + "/agents.json"))
uris = {a.get("uri") for a in m["agents"]}
want = ["bat%d" % i for i in range(1, int(sys.argv[2]) + 1)] + ["twokeys", "onekey"]
missing = [a for a in want if "spiffe://certgate.local/agent/" + a not in uris]
assert not missing, missing
PY
grep -oE 'issued [0-9]+ certificates in one commit' "$T/ca-serve.log" >"$T/batches" ||
	{ tail -n 50 "$T/ca-serve.log" >&2; cg_fail "no batch of more than one certificate was committed"; }
most=$(awk '{print $2}' "$T/batches" | sort -n | tail -n1)
echo "largest enrollment batch: $most certificates"
[ "$most" -gt 1 ] || cg_fail "largest batch $most"

# --- renewals together ---------------------------------------------------------------
for i in $(seq 1 8); do
	base64 -d <"$T/e$i.body" | openssl pkcs7 -inform DER -print_certs >"$T/bat$i.pem"
	ca_csr "$T/ren$i.csr" p256
done
before=$(wc -l <"$T/ca-serve.log")
kill -STOP "$CA_PID"
pids=()
for i in $(seq 1 8); do est_bg "r$i" "" "$T/ren$i.csr" "$T/bat$i.pem"; done
queued 8
kill -CONT "$CA_PID"
for p in "${pids[@]}"; do wait "$p" || cg_fail "catool est failed (see $T)"; done
for i in $(seq 1 8); do
	cg_assert_eq "$(status "r$i")" 200 "renewal $i of the batch"
	s=$(serial_of "r$i")
	cg_assert_eq "$(awk -F'\t' -v s="$s" '$4 == s {print $1}' "$P/ca/index.txt")" V "row of renewed $s"
	[ -f "$P/ca/certs/$s.pem" ] || cg_fail "renewed certificate $s is not archived"
	cg_assert_eq "$(grep -F '"what":"renew"' "$P/ca-audit.jsonl" | grep -cF "\"serial\":\"$s\"")" 1 \
	    "renewal lines for $s"
done
tail -n +"$((before + 1))" "$T/ca-serve.log" | grep -qE 'issued [2-9] certificates in one commit' ||
	{ tail -n 30 "$T/ca-serve.log" >&2; cg_fail "the renewals were not committed as one batch"; }
ca_serve_stop
cg_pass
