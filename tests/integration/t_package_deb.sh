#!/bin/bash
# The Debian package (issue 17): `cpack -G DEB` from the build folder makes
# certgate_VERSION_ARCH.deb with /usr/bin/certgate (hardened: PIE, full RELRO, stack
# protector, fortified), the helper scripts, the templates, the unit, the logrotate
# file, sysusers/tmpfiles snippets, the monitoring files and the README; `dpkg -i`
# creates the unprivileged certgate user and its state folder; `systemd-analyze
# verify` accepts the unit and `systemd-analyze security --offline=yes` rates its
# exposure at 2.0 or less; the installed pki-init (run as certgate, finding the
# installed binary and the default folder by itself) makes a PKI; the unit's
# ExecStart, run the way systemd would (as the unit's User/Group, in its
# WorkingDirectory, with its LimitNOFILE, without NOTIFY_SOCKET) serves /healthz and
# mTLS requests with no warning at start-up; a low port is refused without the
# capability (with the message that says how to grant it) and served with it
# (setpriv's ambient capability, as AmbientCapabilities= does); ExecReload (SIGHUP)
# reloads; `dpkg -r` and `dpkg -P` remove everything the package installed.
#
# Installs a package on this machine, so: root only (skipped with a note otherwise),
# and never over an existing certgate installation it did not make itself.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
. "$HERE/gw.sh"
cg_setup

if [ "$(id -u)" -ne 0 ]; then
	echo "SKIP: $CG_NAME: needs root (it installs the package with dpkg -i); CI runs it as root"
	exit 0
fi
STATE=/var/lib/certgate
MARK=$STATE/.installed-by-t_package_deb
UNIT=/usr/lib/systemd/system/certgate.service
SHARE=/usr/share/certgate
CLEAN_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# A previous run of this test that died half-way is cleaned up; anything else is not
# ours to touch.
if dpkg-query -W -f='${Status}' certgate 2>/dev/null | grep -q 'installed' || [ -e "$STATE" ]; then
	if [ -e "$MARK" ]; then
		echo "cleaning up after an earlier run of this test" >&2
		dpkg -P certgate >/dev/null 2>&1 || true
		rm -rf -- "$STATE"
	else
		echo "SKIP: $CG_NAME: certgate is already installed here (or $STATE exists); not touching it"
		exit 0
	fi
fi
user_existed=0
getent passwd certgate >/dev/null && user_existed=1

cleanup_pkg() {
	[ -n "${GWP:-}" ] && kill -KILL "$GWP" 2>/dev/null
	if [ -e "$MARK" ]; then
		dpkg -P certgate >/dev/null 2>&1 || true
		rm -rf -- "$STATE"
		[ "$user_existed" = 1 ] || userdel certgate 2>/dev/null || true
	fi
	return 0
}
# lib.sh's exit trap calls gw_cleanup: gw.sh's, plus the package.
gw_cleanup() {
	cleanup_pkg
	[ -n "${GW_UP_PID:-}" ] && kill -TERM "$GW_UP_PID" 2>/dev/null
	GW_UP_PID=
	return 0
}

for tool in cpack dpkg-deb dpkg readelf setpriv runuser; do
	command -v "$tool" >/dev/null || cg_fail "$tool not found"
done
if ! command -v systemd-analyze >/dev/null; then
	echo "systemd-analyze missing: installing Debian's systemd (scripts/lib/deps.sh does the same)" >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd \
	    </dev/null >"$T/apt.log" 2>&1 || { cat "$T/apt.log" >&2; cg_fail "cannot install systemd"; }
fi

# --- build the package --------------------------------------------------------------
BUILD=${CERTGATE_BUILD_DIR:?run through ctest (CERTGATE_BUILD_DIR)}
mkdir -p "$T/pkg"
(cd "$T/pkg" && cpack -G DEB --config "$BUILD/CPackConfig.cmake" -B "$T/pkg") >"$T/cpack.out" 2>&1 ||
    { cat "$T/cpack.out" >&2; cg_fail "cpack -G DEB failed"; }
version=$("$CERTGATE_BIN" --version | awk '{print $2}')
arch=$(dpkg --print-architecture)
DEB=$T/pkg/certgate_${version}_${arch}.deb
[ -f "$DEB" ] || { ls -la "$T/pkg" >&2; cg_fail "no $DEB (package file name must be certgate_VERSION_ARCH.deb)"; }
dpkg-deb -f "$DEB" Package Version Architecture Depends >"$T/control"
cg_assert_contains "$T/control" "Package: certgate"
cg_assert_contains "$T/control" "Version: $version"
cg_assert_contains "$T/control" "softhsm2"
dpkg-deb -c "$DEB" | awk '{print $6}' | sed 's|^\./|/|' >"$T/contents"
for f in /usr/bin/certgate $SHARE/scripts/pki-init $SHARE/scripts/agent-issue $SHARE/scripts/agent-revoke \
    $SHARE/scripts/agent-list $SHARE/scripts/lib/common.sh $SHARE/scripts/lib/installed.sh \
    $SHARE/pki/certgate.json.template $SHARE/pki/agents.json.template \
    $SHARE/monitoring/certgate-dashboard.json $SHARE/monitoring/certgate-alerts.yml \
    $UNIT /usr/lib/sysusers.d/certgate.conf /usr/lib/tmpfiles.d/certgate.conf \
    /etc/logrotate.d/certgate /usr/share/doc/certgate/README.md; do
	grep -qx -- "$f" "$T/contents" || { cat "$T/contents" >&2; cg_fail "$f is not in the package"; }
done
grep -q '^/usr/local' "$T/contents" && cg_fail "the package installs under /usr/local"
grep -E '/(test|quickstart|fuzz)$' "$T/contents" && cg_fail "checkout-only scripts are in the package"
dpkg-deb --ctrl-tarfile "$DEB" | tar -t >"$T/ctrl"
for f in postinst prerm postrm conffiles; do
	grep -q "^\./$f$" "$T/ctrl" || cg_fail "no $f in the package's control files"
done

# --- the binary is hardened ----------------------------------------------------------
mkdir -p "$T/x"
dpkg-deb -x "$DEB" "$T/x"
BIN=$T/x/usr/bin/certgate
readelf -h "$BIN" | grep -q 'Type:.*DYN' || cg_fail "certgate is not PIE"
readelf -d "$BIN" | grep -q 'BIND_NOW' || cg_fail "certgate is not linked with -z now"
readelf -lW "$BIN" | grep -q 'GNU_RELRO' || cg_fail "certgate has no RELRO segment"
readelf -sW --dyn-syms "$BIN" | grep -q '__stack_chk_fail' || cg_fail "no stack protector in certgate"
if grep -q '^CERTGATE_SANITIZE:BOOL=ON' "$BUILD/CMakeCache.txt"; then
	echo "note: sanitizer build, _FORTIFY_SOURCE is off by design" >&2
else
	readelf -sW --dyn-syms "$BIN" | grep -Eq '__[a-z]+_chk@' || cg_fail "certgate is not built with _FORTIFY_SOURCE"
fi

# --- install --------------------------------------------------------------------------
dpkg -i "$DEB" >"$T/dpkg-i.out" 2>&1 || { cat "$T/dpkg-i.out" >&2; cg_fail "dpkg -i failed"; }
touch "$MARK"
getent passwd certgate >/dev/null || cg_fail "dpkg -i did not create the certgate user"
[ "$(getent passwd certgate | cut -d: -f3)" -lt 1000 ] || cg_fail "certgate is not a system user"
cg_assert_eq "$(stat -c '%U:%G %a' "$STATE")" "certgate:certgate 750" "state folder"
cg_assert_contains "$T/dpkg-i.out" "runuser -u certgate -- $SHARE/scripts/pki-init --dir $STATE"

# --- the unit --------------------------------------------------------------------------
systemd-analyze verify "$UNIT" >"$T/verify.out" 2>&1 || { cat "$T/verify.out" >&2; cg_fail "systemd-analyze verify failed"; }
grep -i 'certgate' "$T/verify.out" && cg_fail "systemd-analyze verify complains about the unit"
systemd-analyze security --offline=yes "$UNIT" >"$T/security.out" 2>&1 ||
    { cat "$T/security.out" >&2; cg_fail "systemd-analyze security failed"; }
exposure=$(sed -n 's/.*Overall exposure level for certgate.service: \([0-9.]*\).*/\1/p' "$T/security.out")
[ -n "$exposure" ] || { cat "$T/security.out" >&2; cg_fail "no exposure figure"; }
echo "systemd-analyze security --offline=yes: exposure $exposure"
python3 -c "import sys; sys.exit(0 if float('$exposure') <= 2.0 else 1)" ||
    { grep '✗' "$T/security.out" >&2; cg_fail "exposure $exposure is above 2.0"; }
unit_get() { sed -n "s/^$1=//p" "$UNIT" | tail -n1; }
U_USER=$(unit_get User)
U_GROUP=$(unit_get Group)
U_START=$(unit_get ExecStart)
U_DIR=$(unit_get WorkingDirectory)
U_NOFILE=$(unit_get LimitNOFILE)
cg_assert_eq "$U_USER:$U_GROUP" "certgate:certgate" "unit user"
cg_assert_eq "$(unit_get Type)" notify "unit Type"
cg_assert_eq "$(unit_get ExecReload)" '/bin/kill -HUP $MAINPID' "unit ExecReload"
cg_assert_eq "$(unit_get AmbientCapabilities)" CAP_NET_BIND_SERVICE "AmbientCapabilities"
cg_assert_eq "$(unit_get CapabilityBoundingSet)" CAP_NET_BIND_SERVICE "CapabilityBoundingSet"
for k in NoNewPrivileges=yes ProtectSystem=strict PrivateTmp=yes MemoryDenyWriteExecute=yes \
    SystemCallFilter=@system-service StateDirectory=certgate; do
	grep -qx "$k" "$UNIT" || cg_fail "the unit has no $k"
done

# --- a PKI made by the installed scripts, as the service's user --------------------
UP=$(cg_free_port)
LPORT=$(cg_free_port)
APORT=$(cg_free_port)
gw_upstream_start "$UP"
as_certgate() {
	runuser -u certgate -- env -i PATH=$CLEAN_PATH HOME="$STATE" LANG=C.UTF-8 "$@"
}
(cd / && as_certgate "$SHARE/scripts/pki-init" --listen "127.0.0.1:$LPORT" --admin "127.0.0.1:$APORT" \
    --upstream "http://127.0.0.1:$UP/mcp") >"$T/pki-init.out" 2>&1 ||
    { cat "$T/pki-init.out" >&2; cg_fail "the installed pki-init failed"; }
[ -f "$STATE/certgate.json" ] || cg_fail "pki-init did not use the installed default folder $STATE"
cg_assert_eq "$(stat -c %U "$STATE/token")" certgate "owner of the token directory"
as_certgate "$SHARE/scripts/agent-issue" --agent pkgbot --role member >"$T/issue.out" 2>&1 ||
    { cat "$T/issue.out" >&2; cg_fail "the installed agent-issue failed"; }

# --- ExecStart, the way systemd runs it ---------------------------------------------
read -r -a ARGV <<<"$U_START"
[ "${ARGV[0]}" = /usr/bin/certgate ] || cg_fail "ExecStart does not run /usr/bin/certgate: $U_START"
# LimitNOFILE= sets soft and hard limit; a container may not allow raising the hard
# one, then its hard limit is what the service would get.
hard=$(ulimit -Hn)
[ "$hard" = unlimited ] || [ "$U_NOFILE" -le "$hard" ] || U_NOFILE=$hard
# Call in a subshell: it execs, so the subshell's pid is the gateway's.
run_as_unit() {
	cd "$U_DIR" && ulimit -n "$U_NOFILE" && umask 0077 &&
	    exec setpriv --reuid="$U_USER" --regid="$U_GROUP" --init-groups --no-new-privs \
	    --inh-caps=-all --bounding-set=-all env -i PATH=$CLEAN_PATH "$@"
}
# env -i: no NOTIFY_SOCKET (no systemd here), nothing from this shell.
(run_as_unit "${ARGV[@]}") >"$T/unit.out" 2>"$T/unit.log" &
GWP=$!
for _ in $(seq 1 100); do
	grep -q "listening on" "$T/unit.log" 2>/dev/null && break
	kill -0 "$GWP" 2>/dev/null || { cat "$T/unit.log" >&2; cg_fail "ExecStart exited"; }
	sleep 0.1
done
grep -q "listening on" "$T/unit.log" || { cat "$T/unit.log" >&2; cg_fail "ExecStart did not start listening"; }
cg_assert_eq "$(ps -o user= -p "$GWP" | tr -d ' ')" certgate "user of the running gateway"
grep -E ' (warn|error) ' "$T/unit.log" && cg_fail "warnings or errors at start-up (see above)"
curl -sf --max-time 10 "http://127.0.0.1:$APORT/healthz" >"$T/healthz" || cg_fail "/healthz failed"
cg_assert_contains "$T/healthz" '"status":"ok","token":"ok"'
PA=$STATE/agents/pkgbot
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 --cert "$PA/cert.pem" --key "$PA/key.pem" \
    --cacert "$PA/ca.pem" "https://localhost:$LPORT/mcp" -H 'Content-Type: application/json' \
    -H 'Accept: application/json, text/event-stream' -d '{"jsonrpc":"2.0","id":1,"method":"ping"}')
cg_assert_eq "$code" 200 "mTLS request through the installed gateway"
[ -s "$STATE/certgate.pid" ] || cg_fail "no certgate.pid"
cg_assert_eq "$(cat "$STATE/certgate.pid")" "$GWP" "certgate.pid"
cg_assert_eq "$(stat -c %U "$STATE/audit.jsonl")" certgate "owner of the audit log"
# ExecReload
kill -HUP "$GWP"
for _ in $(seq 1 50); do grep -q "reloaded (SIGHUP)" "$T/unit.log" && break; sleep 0.1; done
grep -q "reloaded (SIGHUP)" "$T/unit.log" || cg_fail "ExecReload (SIGHUP) did not reload"
kill -TERM "$GWP"
wait "$GWP" || { tail -20 "$T/unit.log" >&2; cg_fail "the gateway did not stop cleanly"; }
GWP=

# --- a low port: refused without the capability, served with it ------------------------
low=
for p in 1000 999 998 997 996 995 994 993 992; do
	(exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { low=$p; break; }
done
[ -n "$low" ] || cg_fail "no free port below 1024"
python3 - "$STATE/certgate.json" "$STATE/lowport.json" "$low" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1]))
c["listen"] = "127.0.0.1:" + sys.argv[3]
c["admin"] = None
json.dump(c, open(sys.argv[2], "w"))
EOF
chown certgate:certgate "$STATE/lowport.json"
rc=0
(run_as_unit /usr/bin/certgate serve -c "$STATE/lowport.json") >/dev/null 2>"$T/low.log" || rc=$?
[ "$rc" -ne 0 ] || cg_fail "a low port without CAP_NET_BIND_SERVICE did not fail"
cg_assert_contains "$T/low.log" "cannot listen on 127.0.0.1:$low: Permission denied"
cg_assert_contains "$T/low.log" "AmbientCapabilities=CAP_NET_BIND_SERVICE"
(cd "$U_DIR" && exec setpriv --reuid="$U_USER" --regid="$U_GROUP" --init-groups \
    --inh-caps=+net_bind_service --ambient-caps=+net_bind_service \
    --bounding-set=-all,+net_bind_service env -i PATH=$CLEAN_PATH \
    /usr/bin/certgate serve -c "$STATE/lowport.json") >/dev/null 2>"$T/low2.log" &
GWP=$!
for _ in $(seq 1 100); do grep -q "listening on" "$T/low2.log" 2>/dev/null && break; sleep 0.1; done
grep -q "listening on 127.0.0.1:$low" "$T/low2.log" || { cat "$T/low2.log" >&2; cg_fail "not listening on port $low with the ambient capability"; }
grep -q '^CapEff:\s*0*400$' "/proc/$GWP/status" ||
    { grep Cap "/proc/$GWP/status" >&2; cg_fail "the gateway holds more than CAP_NET_BIND_SERVICE"; }
kill -TERM "$GWP"
wait "$GWP" || cg_fail "the low-port gateway did not stop cleanly"
GWP=

# --- remove, purge ---------------------------------------------------------------------
dpkg -r certgate >"$T/dpkg-r.out" 2>&1 || { cat "$T/dpkg-r.out" >&2; cg_fail "dpkg -r failed"; }
for f in /usr/bin/certgate "$UNIT" "$SHARE/scripts/pki-init" /usr/lib/sysusers.d/certgate.conf; do
	[ ! -e "$f" ] || cg_fail "$f is still there after dpkg -r"
done
[ -f /etc/logrotate.d/certgate ] || cg_fail "the conffile went with dpkg -r (only purge removes it)"
dpkg -P certgate >"$T/dpkg-p.out" 2>&1 || { cat "$T/dpkg-p.out" >&2; cg_fail "dpkg -P failed"; }
[ ! -e /etc/logrotate.d/certgate ] || cg_fail "/etc/logrotate.d/certgate is still there after dpkg -P"
[ ! -d "$SHARE" ] || { find "$SHARE" >&2; cg_fail "$SHARE is still there after dpkg -P"; }
[ -f "$STATE/certgate.json" ] || cg_fail "purge removed the state folder (keys and CA database are kept)"
cg_assert_contains "$T/dpkg-p.out" "are kept"
cleanup_pkg
cg_pass
