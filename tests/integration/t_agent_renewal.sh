#!/usr/bin/env bash
# Background renewal under load: a 3-minute certificate enrolled over the gateway's
# own EST (a token from scripts/agent-token --lifetime 3m), shared by two bridges on
# one AGENTDIR (`agent stdio` driven by the SDK's StdioClientTransport, renewing on
# the enrollment listener; `agent listen` driven by mcp-remote, renewing on the
# mTLS listener), both calling a tool every 250 ms from right after the enrollment
# until well after the first certificate has expired. At 2/3 of the lifetime one
# bridge renews (EST /simplereenroll with the current certificate), the other adopts
# the renewed certificate from the directory; new connections use it, requests in
# flight finish, and not one call fails. The CA's ca-audit.jsonl shows the
# enrollment and exactly one renewal, the gateway's audit log the calls under both
# serials. A third bridge, on a copy of the directory and with an EST endpoint that
# is down, shows the warnings: failed attempts with back-off, the certificate about
# to expire without a renewal, then expired.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/gw.sh"
. "$(dirname "$0")/e2e.sh"
. "$(dirname "$0")/agent.sh"
cg_setup
e2e_require_node
LIFETIME=180

UPORT=$(cg_free_port)
e2e_upstream_start "$UPORT"
agent_gateway "http://127.0.0.1:$UPORT/mcp"
A=$T/agent
CERTGATE_TOKEN=$(agent_token renew-bot --role member --lifetime 3m) "$CERTGATE_BIN" agent enroll --url "$EST_URL" \
    --agent renew-bot --dir "$A" >"$T/enroll.out" 2>"$T/enroll.err" || {
	cat "$T/enroll.err" >&2; cg_fail "enroll failed"; }
S1=$(openssl x509 -in "$A/cert.pem" -noout -serial | cut -d= -f2)
END1=$(date -d "$(openssl x509 -in "$A/cert.pem" -noout -enddate | cut -d= -f2)" +%s)
left=$((END1 - $(date +%s)))
[ "$left" -gt 150 ] && [ "$left" -le "$LIFETIME" ] || cg_fail "want a ${LIFETIME}s certificate, $left s left"
cp -r "$A" "$T/stale"

# Calls go on until 15 s after the first certificate's expiry.
DUR=$(( (END1 + 15 - $(date +%s)) * 1000 ))
LPORT=$(cg_free_port)
agent_listen_start "$LPORT" "$GW_URL" "$A"
DEADPORT=$(cg_free_port)
# Its stdin: a FIFO opened read-write, which never reaches EOF.
mkfifo "$T/stale.in"
"$CERTGATE_BIN" agent stdio --url "$GW_URL" --dir "$T/stale" \
    --renew-url "https://127.0.0.1:$DEADPORT" <>"$T/stale.in" >/dev/null 2>"$T/stale.err" &
cg_track_pid $!
mkdir -p "$T/home"
mapfile -t SARGS < <(agent_stdio_args "$GW_URL" "$A" --renew-url "$EST_URL")
AGENT_CLIENT_TIMEOUT=260 agent_client loop "$T/stdio.out" "${SARGS[@]}" --stderr "$T/bridge.err" \
    --duration-ms "$DUR" --interval-ms 250 --timeout 250000 &
SPID=$!
AGENT_CLIENT_TIMEOUT=260 agent_client loop "$T/remote.out" \
    --command "$CG_SRC/tests/js/node_modules/.bin/mcp-remote" --arg "http://127.0.0.1:$LPORT/mcp" \
    --arg --allow-http --env "HOME=$T/home" --stderr "$T/mcp-remote.err" \
    --duration-ms "$DUR" --interval-ms 250 --timeout 250000 &
RPID=$!
rc=0; wait "$SPID" || rc=$?
rrc=0; wait "$RPID" || rrc=$?
[ "$rc" -eq 0 ] || { cat "$T/stdio.out" >&2; tail -30 "$T/bridge.err" >&2; cg_fail "calls through agent stdio failed during renewal"; }
[ "$rrc" -eq 0 ] || { cat "$T/remote.out" >&2; tail -30 "$T/listen-$LPORT.log" >&2; cg_fail "calls through agent listen failed during renewal"; }
for f in stdio remote; do
	jq -e -s 'map(select(.event == "loop" and .fail == 0 and .calls > 300)) | length == 1' "$T/$f.out" >/dev/null || {
		cat "$T/$f.out" >&2; cg_fail "$f: want more than 300 calls and no failure"; }
	echo "$f: $(jq -c -s '.[] | select(.event == "loop") | {calls, ok, fail}' "$T/$f.out")"
done

# One renewal for the directory; the other bridge adopted it.
S2=$(openssl x509 -in "$A/cert.pem" -noout -serial | cut -d= -f2)
[ "$S1" != "$S2" ] || cg_fail "the certificate was not renewed"
cg_assert_eq "$(agent_est_count simplereenroll 200)" 1 "renewals of the shared directory"
cg_assert_eq "$(agent_ca_count enroll renew-bot)" 1 "enrollments in ca-audit.jsonl"
cg_assert_eq "$(agent_ca_count renew renew-bot)" 1 "renewals in ca-audit.jsonl"
e2e_any "$CA_AUDIT" ".what == \"enroll\" and .serial == \"$S1\" and .via == \"est\"" ||
	cg_fail "ca-audit.jsonl does not show the enrollment of serial $S1"
e2e_any "$CA_AUDIT" ".what == \"renew\" and .old_serial == \"$S1\" and .serial == \"$S2\"" ||
	cg_fail "ca-audit.jsonl does not show the renewal from $S1 to $S2"
# The renewal came at 2/3 of the lifetime the token gave (3 minutes from issuance;
# the CA backdates notBefore by 5 minutes for clock skew, which is not lifetime), and
# before 5/6 of it, when a bridge starts warning; the new certificate keeps the
# lifetime.
epoch() { date -d "$1" +%s; }
validity() { echo $(( $(epoch "$(openssl x509 -in "$1" -noout -enddate | cut -d= -f2)") -
    $(epoch "$(openssl x509 -in "$1" -noout -startdate | cut -d= -f2)") )); }
ISSUED=$(epoch "$(jq -r "select(.what == \"enroll\" and .serial == \"$S1\") | .ts" "$CA_AUDIT")")
RENEWED=$(epoch "$(jq -r "select(.what == \"renew\" and .serial == \"$S2\") | .ts" "$CA_AUDIT")")
echo "renewed $((RENEWED - ISSUED)) s after the enrollment"
[ $((RENEWED - ISSUED)) -ge 119 ] && [ $((RENEWED - ISSUED)) -le 150 ] ||
	cg_fail "renewed $((RENEWED - ISSUED)) s after issuance; want 2/3 of 180 s (120 s), before 5/6 (150 s)"
cg_assert_eq "$(validity "$A/cert.pem")" "$(validity "$T/stale/cert.pem")" "validity of the renewed certificate"
cat "$T/bridge.err" "$T/listen-$LPORT.log" >"$T/both.log"
cg_assert_contains "$T/both.log" "renewed: certificate serial $S2"
cg_assert_contains "$T/both.log" "adopted the renewed certificate serial $S2"
grep -q "new connections to the gateway use certificate serial $S2" "$T/bridge.err" ||
	cg_fail "the stdio bridge did not switch to the new certificate"
grep -q "new connections to the gateway use certificate serial $S2" "$T/listen-$LPORT.log" ||
	cg_fail "the listen bridge did not switch to the new certificate"
[ "$(openssl x509 -in "$A/cert.pem" -noout -pubkey)" = "$(openssl pkey -in "$A/key.pem" -pubout)" ] ||
	cg_fail "key.pem does not match the renewed cert.pem"
# The gateway saw calls with the old certificate, then with the new one after the
# old one had expired; nothing was refused. (mcp-remote's GET probes before it
# initializes get the server's 400 for a GET without a session: not counted.)
e2e_any "$AUDIT" "((.serial // \"\") | ascii_upcase) == \"$S1\" and .name == \"echo\" and .status == 200" ||
	cg_fail "no calls with the first certificate"
END1_ISO=$(date -u -d "@$END1" +%Y-%m-%dT%H:%M:%S)
e2e_any "$AUDIT" "((.serial // \"\") | ascii_upcase) == \"$S2\" and .name == \"echo\" and .status == 200 and .ts > \"$END1_ISO\"" ||
	cg_fail "no calls with the renewed certificate after the first expired"
# A certificate enrolled a moment ago may reach the gateway before its identity-map
# reload does (a loaded machine): the gateway answers 403 unmapped and the bridge tries
# again (for 10 s after issuance, by design). Such a refusal is not a failure when a
# later request with the same serial was allowed; any other refusal is.
BAD='.decision != "allow" or .status >= 500 or (.status >= 400 and .method != "GET")'
UNMAPPED='.reason == "certificate is not mapped to an agent"'
bad=$(jq -c -s "
	(map(select(.decision == \"allow\")) | group_by(.serial) |
	    map({key: (.[0].serial // \"\"), value: (map(.ts) | max)}) | from_entries) as \$ok |
	.[] | select($BAD) | select(($UNMAPPED and (\$ok[.serial // \"\"] // \"\") > .ts) | not)" "$AUDIT")
if [ -n "$bad" ]; then
	printf '%s\n' "$bad" >&2
	cg_fail "the gateway refused or failed requests during the renewal"
fi

# The bridge that could not renew said so, louder as expiry came.
cg_assert_contains "$T/stale.err" "renewal attempt 1 failed"
cg_assert_contains "$T/stale.err" "renewal keeps failing"
cg_assert_contains "$T/stale.err" "EXPIRED"

kill -TERM "$AGENT_LISTEN_PID"
gw_stop
cg_pass
