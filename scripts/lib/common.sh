# Shared code for the certgate helper scripts (sourced, not executed).
# Callers set: set -euo pipefail, and PROG (their name, for messages).

CG_SCRIPTS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CG_CHECKOUT="$(cd "$CG_SCRIPTS_DIR/.." && pwd)"
# Installed copies (the Debian package: /usr/share/certgate/scripts) carry lib/installed.sh
# with the installed binary and the default state folder; a checkout has none.
CG_INSTALLED_BIN=
CG_INSTALLED_HOME=
if [ -f "$CG_SCRIPTS_DIR/lib/installed.sh" ]; then
	# shellcheck source=/dev/null
	. "$CG_SCRIPTS_DIR/lib/installed.sh"
fi

cg_err() {
	printf '%s: %s\n' "${PROG:-certgate}" "$*" >&2
}

cg_info() {
	printf '%s: %s\n' "${PROG:-certgate}" "$*" >&2
}

# Failure: message, exit 1.
cg_die() {
	cg_err "$@"
	exit 1
}

# Usage error: message, hint, exit 2.
cg_usage_error() {
	cg_err "$@"
	printf "try '%s --help'\n" "${PROG:-certgate}" >&2
	exit 2
}

# Fails with a usage error when option $1 has no value ($2 is the remaining argc).
cg_need_value() {
	if [ "$2" -lt 2 ]; then
		cg_usage_error "option '$1' needs a value"
	fi
}

# The default PKI directory: $CERTGATE_HOME, else <checkout>/state (gitignored), or for
# installed scripts the installed state folder (/var/lib/certgate).
cg_default_dir() {
	if [ -n "${CERTGATE_HOME:-}" ]; then
		printf '%s\n' "$CERTGATE_HOME"
	elif [ -n "$CG_INSTALLED_HOME" ]; then
		printf '%s\n' "$CG_INSTALLED_HOME"
	else
		printf '%s\n' "$CG_CHECKOUT/state"
	fi
}

# Absolute path of $1 (which need not exist yet).
cg_abspath() {
	case "$1" in
	/*) printf '%s\n' "$1" ;;
	*) printf '%s/%s\n' "$(pwd)" "$1" ;;
	esac
}

# Sets CG_BIN: $CERTGATE_BIN, else <checkout>/build/certgate, else the installed binary
# (installed scripts), else certgate on PATH.
cg_find_bin() {
	if [ -n "${CERTGATE_BIN:-}" ]; then
		[ -x "$CERTGATE_BIN" ] || cg_die "CERTGATE_BIN=$CERTGATE_BIN is not an executable file"
		CG_BIN="$CERTGATE_BIN"
	elif [ -x "$CG_CHECKOUT/build/certgate" ]; then
		CG_BIN="$CG_CHECKOUT/build/certgate"
	elif [ -n "$CG_INSTALLED_BIN" ] && [ -x "$CG_INSTALLED_BIN" ]; then
		CG_BIN="$CG_INSTALLED_BIN"
	elif command -v certgate >/dev/null 2>&1; then
		CG_BIN="$(command -v certgate)"
	else
		cg_die "certgate binary not found; build it with:
  cmake -S $CG_CHECKOUT -B $CG_CHECKOUT/build && cmake --build $CG_CHECKOUT/build
or point CERTGATE_BIN at it"
	fi
}

# Checks that DIR holds a PKI made by pki-init; sets CG_CONFIG.
cg_require_pki() {
	CG_CONFIG="$1/certgate.json"
	[ -d "$1" ] || cg_die "no such directory: $1 (create a PKI with: scripts/pki-init --dir $1)"
	[ -f "$CG_CONFIG" ] || cg_die "$CG_CONFIG not found (create a PKI with: scripts/pki-init --dir $1)"
}

# Epoch seconds of an OpenSSL date like "Nov 26 13:41:00 2026 GMT".
cg_epoch() {
	date -u -d "$1" +%s 2>/dev/null
}

# Re-signs the CRL (in the token) when it is past half of its lifetime, so that a
# gateway with CRL checking never meets a CRL past its nextUpdate.
# $1 = DIR. CERTGATE_CRL_NOW (epoch seconds) overrides "now" for tests.
cg_refresh_crl() {
	local dir="$1" crl last next now
	crl="$dir/ca/crl.pem"
	[ -f "$crl" ] || return 0
	last="$(openssl crl -in "$crl" -noout -lastupdate 2>/dev/null | sed 's/^lastUpdate=//')" || last=""
	next="$(openssl crl -in "$crl" -noout -nextupdate 2>/dev/null | sed 's/^nextUpdate=//')" || next=""
	now="${CERTGATE_CRL_NOW:-$(date -u +%s)}"
	if [ -n "$last" ] && [ -n "$next" ]; then
		last="$(cg_epoch "$last")" || last=""
		next="$(cg_epoch "$next")" || next=""
	fi
	if [ -n "$last" ] && [ -n "$next" ] && [ $((now - last)) -lt $(((next - last) / 2)) ]; then
		return 0
	fi
	cg_info "CRL $crl is past half of its lifetime (or unreadable): re-signing it"
	"$CG_BIN" ca crl -c "$dir/certgate.json" >&2 || cg_die "cannot re-sign the CRL"
}

# Makes a running gateway reload now (it also reloads on file change within a second):
# SIGHUP to the pid in DIR/certgate.pid when that process is alive.
cg_notify_gateway() {
	local pidfile="$1/certgate.pid" pid
	[ -f "$pidfile" ] || return 0
	pid="$(head -n1 "$pidfile" 2>/dev/null | tr -d ' \t\r\n')" || return 0
	case "$pid" in
	'' | *[!0-9]*) cg_err "ignoring $pidfile: not a pid"; return 0 ;;
	esac
	if kill -0 "$pid" 2>/dev/null; then
		if kill -HUP "$pid" 2>/dev/null; then
			cg_info "signalled the gateway (pid $pid) to reload"
		else
			cg_err "cannot signal the gateway (pid $pid)"
		fi
	fi
}

# Checks a duration for option $1: $2 must be Nm, Nh or Nd between $3 and $4 seconds
# (usage error otherwise). Prints nothing; the value is passed on unchanged.
cg_check_duration() {
	local opt=$1 val=$2 min=$3 max=$4 n unit secs
	if [[ ! "$val" =~ ^([0-9]{1,9})([mhd])$ ]]; then
		cg_usage_error "$opt '$val': want a duration Nm, Nh or Nd (minutes, hours, days), e.g. 15m, 24h, 7d"
	fi
	n=$((10#${BASH_REMATCH[1]}))
	unit=${BASH_REMATCH[2]}
	case "$unit" in
	m) secs=$((n * 60)) ;;
	h) secs=$((n * 3600)) ;;
	d) secs=$((n * 86400)) ;;
	esac
	if [ "$secs" -lt "$min" ] || [ "$secs" -gt "$max" ]; then
		cg_usage_error "$opt '$val': must be at least $(cg_duration_str "$min") and at most $(cg_duration_str "$max")"
	fi
}

# 86400 -> 1d, 5400 -> 90m (the largest unit that divides it).
cg_duration_str() {
	if [ $(($1 % 86400)) -eq 0 ]; then echo "$(($1 / 86400))d"
	elif [ $(($1 % 3600)) -eq 0 ]; then echo "$(($1 / 3600))h"
	else echo "$(($1 / 60))m"
	fi
}

# Runs certgate with the arguments, stdout captured in CG_OUT; exits 2 on a usage
# error (exit 2) and 1 with message $1 on any other failure.
cg_run_ca() {
	local what=$1 rc=0
	shift
	CG_OUT="$("$CG_BIN" "$@")" || rc=$?
	if [ "$rc" -eq 2 ]; then
		exit 2
	elif [ "$rc" -ne 0 ]; then
		cg_die "$what"
	fi
}
