#!/usr/bin/env bash
# The gateway restarted under running bridges. `agent stdio` (driven by the SDK's
# StdioClientTransport) and `agent listen` (driven by mcp-remote, itself driven by
# the SDK) make calls, pause while the gateway is stopped and started again (its
# session bindings are gone: it answers 404 for the old session), then make more:
# the stdio bridge opens a new session by replaying the client's initialize; the
# listener forwards sessions untouched and mcp-remote re-initializes on the 404
# itself. Every call of both clients succeeds.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/gw.sh"
. "$(dirname "$0")/e2e.sh"
. "$(dirname "$0")/agent.sh"
cg_setup
e2e_require_node

UPORT=$(cg_free_port)
cg_pki_init --upstream "http://127.0.0.1:$UPORT/mcp"
e2e_issue rs-bot --role member
e2e_upstream_start "$UPORT"
gw_start "$PKI/certgate.json" "$T/gw.log"
LPORT=$(cg_free_port)
agent_listen_start "$LPORT" "$(e2e_url)" "$PKI/agents/rs-bot"
mkdir -p "$T/home"

mapfile -t SARGS < <(agent_stdio_args "$(e2e_url)" "$PKI/agents/rs-bot")
AGENT_CLIENT_TIMEOUT=150 agent_client loop "$T/stdio.out" "${SARGS[@]}" --stderr "$T/bridge.err" \
    --duration-ms 12000 --interval-ms 100 --pause-after 20 --pause-file "$T/go" --timeout 140000 &
SPID=$!
AGENT_CLIENT_TIMEOUT=150 agent_client loop "$T/remote.out" \
    --command "$CG_SRC/tests/js/node_modules/.bin/mcp-remote" --arg "http://127.0.0.1:$LPORT/mcp" \
    --arg --allow-http --env "HOME=$T/home" --stderr "$T/mcp-remote.err" \
    --duration-ms 12000 --interval-ms 100 --pause-after 20 --pause-file "$T/go" --timeout 140000 &
RPID=$!
for _ in $(seq 1 300); do
	grep -q '"event":"paused"' "$T/stdio.out" 2>/dev/null &&
	    grep -q '"event":"paused"' "$T/remote.out" 2>/dev/null && break
	sleep 0.1
done
grep -q '"event":"paused"' "$T/stdio.out" && grep -q '"event":"paused"' "$T/remote.out" || {
	cat "$T/stdio.out" "$T/remote.out" "$T/bridge.err" >&2; cg_fail "the clients did not get going"; }

# Restart: stop (the GET streams keep it draining for its grace time), start again.
gw_stop
gw_start "$PKI/certgate.json" "$T/gw2.log"
touch "$T/go"
rc=0; wait "$SPID" || rc=$?
rrc=0; wait "$RPID" || rrc=$?
[ "$rc" -eq 0 ] || { cat "$T/stdio.out" "$T/stdio.out.err" >&2; tail -20 "$T/bridge.err" >&2
	cg_fail "calls through agent stdio failed across the gateway restart"; }
jq -e -s 'map(select(.event == "loop" and .fail == 0 and .calls > 40)) | length == 1' "$T/stdio.out" >/dev/null ||
	cg_fail "stdio loop: want more than 40 calls and no failure"
cg_assert_contains "$T/bridge.err" "opening a new one by replaying the client's initialize"
cg_assert_contains "$T/bridge.err" "opened a new MCP session"
e2e_any "$PKI/audit.jsonl" '.agent == "rs-bot" and .method == "initialize"' || cg_fail "no initialize"
# The restarted gateway served the stdio bridge's new session.
e2e_any "$PKI/audit.jsonl" '.agent == "rs-bot" and .method == "tools/call" and .status == 200' ||
	cg_fail "no calls after the restart"

# Through the listener, which reconnects to the new gateway for mcp-remote.
jq -e -s 'map(select(.event == "loop" and .fail == 0 and .calls > 40)) | length == 1' "$T/remote.out" >/dev/null || {
	cat "$T/remote.out" >&2; tail -30 "$T/mcp-remote.err" >&2; tail -20 "$T/listen-$LPORT.log" >&2
	cg_fail "calls through agent listen failed across the gateway restart"; }
[ "$rrc" -eq 0 ] || cg_fail "mcp-remote's client exited with $rrc"

kill -TERM "$AGENT_LISTEN_PID"
gw_stop
cg_pass
