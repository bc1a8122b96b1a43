#!/usr/bin/env bash
# Stdio upstream processes (src/stdioproc.c) without the proxy: 60 sessions cycling
# through server-filesystem and server-everything over stdio, an echo script, a stdout
# flood held by backpressure, a server that ignores SIGTERM and one that exits at once,
# at most 4 processes at a time. Asserts that every session completed and that no
# child, zombie, orphaned group member or descriptor is left (stdio_soak checks and
# prints the figures; README "Stdio upstreams" has the 1,000-session run).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cg_setup

tool=${CERTGATE_TOOLS_DIR:-$CG_SRC/build/tests}/stdio_soak
[ -x "$tool" ] || cg_fail "stdio_soak not built ($tool)"
[ -d "$CG_SRC/tests/js/node_modules/@modelcontextprotocol/server-filesystem" ] ||
	cg_fail "tests/js/node_modules missing: run npm ci in tests/js"

"$tool" --sessions 60 --concurrency 4 >"$T/out" 2>"$T/err" || {
	cat "$T/out"
	tail -20 "$T/err"
	cg_fail "stdio_soak reported a failure or a leak"
}
cat "$T/out"
cg_assert_contains "$T/out" "60 sessions"
cg_assert_contains "$T/out" "60 completed, 0 failed"
cg_assert_contains "$T/out" "by kind: filesystem 10 everything 10 echo 10 flood 10 noterm 10 exit 10"
cg_assert_contains "$T/out" "children 0 -> 0 (zombies 0 -> 0)"
cg_assert_contains "$T/out" "nothing to wait for: yes"
grep -Eq 'processes in the 60 groups created 0 -> 0' "$T/out" || cg_fail "orphans left"
grep -Eq 'descriptors ([0-9]+) -> \1,' "$T/out" || cg_fail "descriptor count changed"
# the servers that ignore SIGTERM needed SIGKILL, and said so in the log
[ "$(grep -c 'ignored SIGTERM' "$T/err")" -eq 10 ] || cg_fail "expected 10 SIGKILLs"
cg_pass
