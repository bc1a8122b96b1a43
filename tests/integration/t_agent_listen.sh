#!/usr/bin/env bash
# certgate agent listen: a loopback plain-HTTP forwarder to a real gateway over mTLS.
# Real clients: mcp-remote (npm, 0.15.1) with --allow-http, itself driven by the
# official SDK's StdioClientTransport as a desktop client would (initialize, tools,
# a server notification, sampling and elicitation answered by the client, progress
# streamed), and the SDK's StreamableHTTPClientTransport (tests/js/client.mjs) showing
# that SSE answers stream through unbuffered. Then what the listener refuses (other
# hosts, origins, paths, methods, content types, malformed HTTP), keep-alive with
# pipelined requests, an unreachable gateway (502), and a non-loopback bind.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/gw.sh"
. "$(dirname "$0")/e2e.sh"
. "$(dirname "$0")/agent.sh"
cg_setup
e2e_require_node
MCP_REMOTE=$CG_SRC/tests/js/node_modules/.bin/mcp-remote
[ -x "$MCP_REMOTE" ] || cg_fail "mcp-remote missing: run 'npm ci' in tests/js"

UPORT=$(cg_free_port)
cg_pki_init --upstream "http://127.0.0.1:$UPORT/mcp"
e2e_issue ls-member --role member
e2e_upstream_start "$UPORT"
gw_start "$PKI/certgate.json" "$T/gw.log"
LPORT=$(cg_free_port)
agent_listen_start "$LPORT" "$(e2e_url)" "$PKI/agents/ls-member"
LURL=http://127.0.0.1:$LPORT/mcp
mkdir -p "$T/home"

# --- mcp-remote --allow-http, driven by the SDK's StdioClientTransport -----------------
agent_client full "$T/remote.out" --command "$MCP_REMOTE" --arg "$LURL" --arg --allow-http \
    --env "HOME=$T/home" --stderr "$T/mcp-remote.err" || {
	cat "$T/remote.out" "$T/remote.out.err" >&2; tail -20 "$T/mcp-remote.err" >&2
	tail -20 "$T/listen-$LPORT.log" >&2; cg_fail "mcp-remote through agent listen failed"; }
for ev in '"event":"notification_ok"' '"event":"sampling_request"' '"event":"elicitation_request"' \
    '"text":"Echo: hi"' '"event":"streamed"' '"event":"ok","scenario":"full"'; do
	cg_assert_contains "$T/remote.out" "$ev"
done
e2e_any "$PKI/audit.jsonl" '.agent == "ls-member" and .method == "tools/call" and .name == "trigger-sampling-request"' ||
	cg_fail "the gateway did not see mcp-remote's calls as ls-member"

# --- the SDK's HTTP transport: progress streamed through, not buffered ---------------
timeout -k 5 60 node "$CG_SRC/tests/js/client.mjs" --url "$LURL" --scenario progress \
    >"$T/progress.out" 2>"$T/progress.err" || {
	cat "$T/progress.out" "$T/progress.err" >&2; cg_fail "SDK over agent listen: progress scenario failed"; }
cg_assert_contains "$T/progress.out" '"event":"streamed"'
timeout -k 5 60 node "$CG_SRC/tests/js/client.mjs" --url "$LURL" --scenario basic \
    >"$T/basic.out" 2>"$T/basic.err" || {
	cat "$T/basic.out" "$T/basic.err" >&2; cg_fail "SDK over agent listen: basic scenario failed"; }
cg_assert_contains "$T/basic.out" '"event":"sse_notification_ok","via":"get"'

# --- refusals: answered here, nothing reaches the gateway ------------------------------
code() { curl -s -o "$T/body" -w '%{http_code}' "$@"; }
before=$(wc -l <"$PKI/audit.jsonl")
J='{"jsonrpc":"2.0","id":1,"method":"ping"}'
cg_assert_eq "$(code -H 'Host: evil.example:80' -H 'Content-Type: application/json' -d "$J" "$LURL")" 403 "foreign Host"
cg_assert_contains "$T/body" "DNS rebinding"
cg_assert_eq "$(code -H 'Origin: https://evil.example' -H 'Content-Type: application/json' -d "$J" "$LURL")" 403 "foreign Origin"
cg_assert_eq "$(code -H 'Content-Type: application/json' -d "$J" "http://127.0.0.1:$LPORT/other")" 404 "other path"
cg_assert_eq "$(code -X PUT -H 'Content-Type: application/json' -d "$J" "$LURL")" 405 "PUT"
cg_assert_eq "$(code -H 'Content-Type: text/plain' -d "$J" "$LURL")" 415 "text/plain POST"
jq -e '.error.code == -32600' "$T/body" >/dev/null || cg_fail "refusal body is not a JSON-RPC error"
# A local tool's web UI (loopback origin) is let through; once the gateway has logged
# it, the refused requests before it would have been logged too.
cg_assert_eq "$(code -H 'Origin: http://localhost:6274' -H 'Content-Type: application/json' \
    -H 'Accept: application/json, text/event-stream' -d "$J" "$LURL")" 400 "loopback Origin (server: no session)"
for _ in $(seq 1 100); do
	[ "$(wc -l <"$PKI/audit.jsonl")" -gt "$before" ] && break
	sleep 0.1
done
[ "$(wc -l <"$PKI/audit.jsonl")" -eq $((before + 1)) ] || {
	tail -n +$((before + 1)) "$PKI/audit.jsonl" >&2; cg_fail "a refused request reached the gateway"; }
tail -n 1 "$PKI/audit.jsonl" | jq -e '.method == "ping" and .status == 400' >/dev/null ||
	{ tail -n 1 "$PKI/audit.jsonl" >&2; cg_fail "the gateway's last line is not the loopback-Origin ping"; }

raw_http() {   # raw_http FILE: sends FILE's bytes, prints what comes back until close
	python3 - "$LPORT" "$1" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
s.sendall(open(sys.argv[2], "rb").read())
out = b""
try:
    while True:
        d = s.recv(65536)
        if not d:
            break
        out += d
except socket.timeout:
    pass
sys.stdout.write(out.decode("latin-1"))
PY
}
body='{"jsonrpc":"2.0","id":1,"method":"ping"}'
printf 'POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n%s' \
    "${#body}" "$body" >"$T/smuggle.http"
raw_http "$T/smuggle.http" >"$T/smuggle.out"
head -1 "$T/smuggle.out" | grep -q "^HTTP/1.1 400" || { cat "$T/smuggle.out" >&2; cg_fail "CL+TE was not refused"; }
printf 'POST /mcp HTTP/1.1\nHost: 127.0.0.1\n\n' >"$T/barelf.http"
raw_http "$T/barelf.http" >"$T/barelf.out"
head -1 "$T/barelf.out" | grep -q "^HTTP/1.1 400" || { cat "$T/barelf.out" >&2; cg_fail "bare LF was not refused"; }
# Two pipelined requests on one keep-alive connection: two answers, in order.
{
	for i in 1 2; do
		b="{\"jsonrpc\":\"2.0\",\"id\":$i,\"method\":\"initialize\",\"params\":{\"protocolVersion\":\"2025-06-18\",\"capabilities\":{},\"clientInfo\":{\"name\":\"p$i\",\"version\":\"1\"}}}"
		c=close; [ "$i" = 1 ] && c=keep-alive
		printf 'POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:%s\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nConnection: %s\r\nContent-Length: %d\r\n\r\n%s' \
		    "$LPORT" "$c" "${#b}" "$b"
	done
} >"$T/pipe.http"
raw_http "$T/pipe.http" >"$T/pipe.out"
[ "$(grep -c '^HTTP/1.1 200' "$T/pipe.out")" -eq 2 ] || { cat "$T/pipe.out" >&2; cg_fail "pipelined requests: want two 200 answers"; }
grep -o '"clientInfo\|"id":[0-9]' "$T/pipe.out" | grep '"id"' | tr -d '\n' | grep -q '"id":1"id":2' ||
	cg_fail "pipelined answers out of order"
# The listener still serves after all that.
timeout -k 5 60 node "$CG_SRC/tests/js/client.mjs" --url "$LURL" --scenario ping >"$T/ping.out" 2>&1 ||
	{ cat "$T/ping.out" >&2; cg_fail "the listener stopped serving after bad requests"; }
cg_assert_contains "$T/ping.out" '"event":"pong"'

# --- an unreachable gateway: 502 with a JSON-RPC error ---------------------------------
DPORT=$(cg_free_port)
L2=$(cg_free_port)
agent_listen_start "$L2" "https://127.0.0.1:$DPORT/mcp" "$PKI/agents/ls-member"
cg_assert_eq "$(code -H 'Content-Type: application/json' -d "$J" "http://127.0.0.1:$L2/mcp")" 502 "gateway down"
jq -e '.error.code == -32003 and (.error.message | test("cannot be reached"))' "$T/body" >/dev/null ||
	{ cat "$T/body" >&2; cg_fail "502 without a JSON-RPC error"; }

# --- beyond loopback only when told ---------------------------------------------------
cg_expect_fail 1 "$CERTGATE_BIN" agent listen --listen "0.0.0.0:$(cg_free_port)" --url "$(e2e_url)" \
    --dir "$PKI/agents/ls-member"
cg_assert_contains "$T/err" "--allow-remote"
cg_assert_contains "$T/err" "anyone who can connect"
cg_expect_fail 1 "$CERTGATE_BIN" agent listen --listen "localhost:99999" --url "$(e2e_url)" \
    --dir "$PKI/agents/ls-member"
cg_expect_fail 2 "$CERTGATE_BIN" agent listen --url "$(e2e_url)" --dir "$PKI/agents/ls-member"

kill -TERM "$AGENT_LISTEN_PID"
gw_stop
cg_pass
