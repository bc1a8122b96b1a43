#!/bin/bash
# The status page (GET / on the admin listener, issue 17): its HTML (content type,
# meta refresh, no script, every section with the live figures: agents with
# certificate expiry, connections and requests per agent, recent refusals with
# reasons, signer/HSM state, CRL and CA expiry, reload history), what a client
# controls escaped, and the same page in a real browser: Debian's headless Chromium
# loads it (--dump-dom: the DOM it built, so the markup parsed as intended) and
# takes a screenshot. Skipped with a note when chromium is not installed.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
. "$HERE/gw.sh"
cg_setup

UP=$(cg_free_port)
cg_pki_init --upstream "http://127.0.0.1:$UP/mcp"
gw_upstream_start "$UP"
for a in alice bob; do
	"$CG_SRC/scripts/agent-issue" --dir "$PKI" --agent "$a" --role guest >/dev/null 2>&1 ||
	    cg_fail "agent-issue $a failed"
done
gw_start "$PKI/certgate.json" "$T/gw.log"
ADMIN=http://127.0.0.1:$CG_ADMIN_PORT
A=$PKI/agents/alice
post() {
	curl -s -o /dev/null --max-time 10 --cert "$A/cert.pem" --key "$A/key.pem" \
	    --cacert "$PKI/ca/ca.pem" "https://localhost:$CG_LISTEN_PORT/mcp" \
	    -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' -d "$1"
}
post '{"jsonrpc":"2.0","id":1,"method":"tools/list"}'
# A tool name is the client's: it must come out as text, never as markup.
post '{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"<script>alert(1)</script><b>x","arguments":{}}}'
curl -s -o /dev/null --max-time 10 --cacert "$PKI/ca/ca.pem" "https://localhost:$CG_LISTEN_PORT/mcp" || true
# An open connection of bob's while the page is read.
B=$PKI/agents/bob
mkfifo "$T/hold"
openssl s_client -quiet -connect "127.0.0.1:$CG_LISTEN_PORT" -cert "$B/cert.pem" -key "$B/key.pem" \
    -CAfile "$PKI/ca/ca.pem" <"$T/hold" >/dev/null 2>&1 &
cg_track_pid $!
exec 7>"$T/hold"        # keep the client's stdin open
kill -HUP "$GW_PID"
gw_wait_log "reloaded \(SIGHUP\)" 5 || cg_fail "SIGHUP reload not logged"
for _ in $(seq 1 50); do
	curl -sf "$ADMIN/metrics" | grep -q '^certgate_agent_connections{agent="bob"} 1$' && break
	sleep 0.1
done

# --- the HTML ------------------------------------------------------------------------
curl -s -D "$T/head" -o "$T/page.html" --max-time 10 "$ADMIN/" || cg_fail "GET / failed"
grep -q '^HTTP/1.1 200' "$T/head" || cg_fail "GET / did not answer 200"
grep -qi '^content-type: text/html; charset=utf-8' "$T/head" || cg_fail "GET / is not text/html"
P=$T/page.html
cg_assert_contains "$P" '<meta http-equiv="refresh" content="10">'
cg_assert_not_contains "$P" '<script'
cg_assert_not_contains "$P" '<b>x'
cg_assert_contains "$P" 'tools/call &lt;script&gt;alert(1)&lt;/script&gt;&lt;b&gt;x'
cg_assert_contains "$P" 'Signer and HSM'
cg_assert_contains "$P" '<th>token</th><td class="ok">ok</td>'
cg_assert_contains "$P" 'CRL next update'
cg_assert_contains "$P" 'CA certificate expires'
cg_assert_contains "$P" 'Agents (2)'
cg_assert_contains "$P" 'missing scope'
cg_assert_contains "$P" 'no_certificate'
cg_assert_contains "$P" 'SIGHUP: reloaded'
cg_assert_contains "$P" 'start-up: reloaded'
python3 - "$P" <<'EOF' || cg_fail "agent rows are not as expected"
import re, sys
html = open(sys.argv[1]).read()
rows = {m.group(1): m.group(0) for m in re.finditer(r"<tr><td>([a-z]+)</td><td>guest</td>.*?</tr>", html)}
assert set(rows) == {"alice", "bob"}, rows.keys()
# alice: 2 requests, 1 denied; bob: 1 open connection; both certificates expire in ~a day
assert re.search(r'<td class="num">0</td><td class="num">2</td><td class="num warn">1</td>', rows["alice"]), rows["alice"]
assert re.search(r'<td class="num">1</td><td class="num">0</td>', rows["bob"]), rows["bob"]
for r in rows.values():
    assert re.search(r"\(in (23 h [0-9]+ min|1 d 0 h)\)", r), r
EOF
# HEAD and an unknown path
curl -s -o /dev/null -w '%{http_code}' "$ADMIN/nope" | grep -q 404 || cg_fail "GET /nope is not 404"

# --- a real browser ----------------------------------------------------------------------
CHROMIUM=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$CHROMIUM" ]; then
	echo "SKIP: $CG_NAME: the browser half (chromium not installed: apt-get install chromium)"
	gw_stop
	cg_pass
fi
chrome() {
	timeout 90 "$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-background-networking \
	    --disable-component-update --disable-sync --no-first-run --user-data-dir="$T/chrome" \
	    --window-size=1400,1100 "$@" 2>>"$T/chrome.err"
}
chrome --dump-dom "$ADMIN/" >"$T/dom.html" || { tail -20 "$T/chrome.err" >&2; cg_fail "chromium --dump-dom failed"; }
python3 - "$T/dom.html" <<'EOF' || cg_fail "the DOM chromium built is not the page"
import sys
from html.parser import HTMLParser

class P(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.text, self.stack = [], [], []
    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.stack.append(tag)
    def handle_endtag(self, tag):
        if self.stack and self.stack[-1] == tag:
            self.stack.pop()
    def handle_data(self, d):
        self.text.append(d)

p = P()
p.feed(open(sys.argv[1]).read())
text = "".join(p.text)
assert "script" not in p.tags and "b" not in p.tags, "markup from a client got through"
assert p.tags.count("table") == 6, p.tags.count("table")
for want in ("certgate 0.1", "Signer and HSM", "Agents (2)", "alice", "bob",
             "tools/call <script>alert(1)</script><b>x", "missing scope", "no_certificate",
             "Reload history", "SIGHUP: reloaded", "CRL next update"):
    assert want in text, want
print("dom: %d elements, %d tables" % (len(p.tags), p.tags.count("table")))
EOF
chrome --screenshot="$T/status.png" "$ADMIN/" >/dev/null || { tail -20 "$T/chrome.err" >&2; cg_fail "chromium --screenshot failed"; }
[ -s "$T/status.png" ] || cg_fail "no screenshot written"
python3 - "$T/status.png" <<'EOF' || cg_fail "the screenshot is not a 1400x1100 PNG"
import struct, sys
d = open(sys.argv[1], "rb").read()
assert d[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
w, h = struct.unpack(">II", d[16:24])
assert (w, h) == (1400, 1100), (w, h)
assert len(d) > 20000, "suspiciously small: %d bytes" % len(d)
print("screenshot: %dx%d, %d bytes" % (w, h, len(d)))
EOF
if [ -n "${CG_KEEP_SCREENSHOT:-}" ]; then
	cp "$T/status.png" "$CG_KEEP_SCREENSHOT"
fi
exec 7>&-
gw_stop
cg_pass
