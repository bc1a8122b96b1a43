#!/bin/bash
# Audit log rotation (issue 17): Debian's logrotate runs the shipped
# packaging/certgate.logrotate.in (paths pointed at this test's state folder, run as
# the invoking user): the log is moved aside, the postrotate script sends SIGUSR1
# through the pid file (no systemd here), the gateway re-opens audit.jsonl at once,
# the next request lands in the new file and nothing is lost or written twice.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
. "$HERE/gw.sh"
cg_setup
LOGROTATE=$(command -v logrotate || command -v /usr/sbin/logrotate || true)
[ -n "$LOGROTATE" ] || { [ -x /usr/sbin/logrotate ] && LOGROTATE=/usr/sbin/logrotate; }
[ -n "$LOGROTATE" ] || cg_fail "logrotate not installed (apt-get install logrotate; scripts/lib/deps.sh lists it)"

UP=$(cg_free_port)
cg_pki_init --upstream "http://127.0.0.1:$UP/mcp"
gw_upstream_start "$UP"
"$CG_SRC/scripts/agent-issue" --dir "$PKI" --agent bot --role member >/dev/null 2>&1 ||
    cg_fail "agent-issue failed"

gw_start "$PKI/certgate.json" "$T/gw.log"
A=$PKI/agents/bot
req() {
	curl -s -o /dev/null -w '%{http_code}' --max-time 10 --cert "$A/cert.pem" --key "$A/key.pem" \
	    --cacert "$PKI/ca/ca.pem" "https://localhost:$CG_LISTEN_PORT/mcp" \
	    -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' \
	    -d "{\"jsonrpc\":\"2.0\",\"id\":$1,\"method\":\"ping\"}"
}
for i in 1 2 3; do cg_assert_eq "$(req "$i")" 200 "request $i"; done
cg_assert_eq "$(wc -l <"$PKI/audit.jsonl")" 3 "audit lines before rotation"

# The shipped configuration, pointed at this state folder and this user.
me=$(id -un)
grp=$(id -gn)
sed -e "s|@CG_STATE@|$PKI|g" -e "s|create 0600 certgate certgate|create 0600 $me $grp|" \
    -e "s|su certgate certgate|su $me $grp|" "$CG_SRC/packaging/certgate.logrotate.in" >"$T/logrotate.conf"
grep -q '@' "$T/logrotate.conf" && cg_fail "unsubstituted @VARIABLE@ in the logrotate file"
# logrotate insists on a configuration that only its owner may write
chmod 0644 "$T/logrotate.conf"
"$LOGROTATE" -v -f -s "$T/logrotate.state" "$T/logrotate.conf" >"$T/logrotate.out" 2>&1 ||
    { cat "$T/logrotate.out" >&2; cg_fail "logrotate failed"; }
gw_wait_log "SIGUSR1: audit log re-opened" 5 ||
    { cat "$T/logrotate.out" >&2; cg_fail "the postrotate script did not make the gateway re-open its log"; }
rotated=$(ls "$PKI"/audit.jsonl-* 2>/dev/null | head -n1)
[ -n "$rotated" ] || { ls -la "$PKI" >&2; cg_fail "no rotated audit log"; }
cg_assert_eq "$(wc -l <"$rotated")" 3 "lines in the rotated log"
[ -f "$PKI/audit.jsonl" ] || cg_fail "logrotate did not create a new audit.jsonl"
cg_assert_eq "$(stat -c %a "$PKI/audit.jsonl")" 600 "mode of the new audit log"

for i in 4 5; do cg_assert_eq "$(req "$i")" 200 "request $i after rotation"; done
cg_assert_eq "$(wc -l <"$PKI/audit.jsonl")" 2 "lines in the new audit log"
cg_assert_eq "$(wc -l <"$rotated")" 3 "lines in the rotated log after rotation"
python3 - "$rotated" "$PKI/audit.jsonl" <<'EOF' || cg_fail "audit lines lost or repeated across the rotation"
import json, sys
ids = [json.loads(l)["rpc_id"] for f in sys.argv[1:] for l in open(f)]
assert ids == [1, 2, 3, 4, 5], ids
EOF

# A plain SIGUSR1 re-opens too (and says so); the gateway keeps serving.
kill -USR1 "$GW_PID"
for _ in $(seq 1 50); do
	[ "$(grep -c "SIGUSR1: audit log re-opened" "$GW_LOG")" -ge 2 ] && break
	sleep 0.1
done
[ "$(grep -c "SIGUSR1: audit log re-opened" "$GW_LOG")" -ge 2 ] || cg_fail "second SIGUSR1 not handled"
cg_assert_eq "$(req 6)" 200 "request after SIGUSR1"
gw_stop
cg_pass
