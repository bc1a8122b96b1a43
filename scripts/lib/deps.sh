# shellcheck shell=bash
# Shared dependency handling for scripts/test and scripts/quickstart (sourced, not run).
#
#   deps_install [test]  installs the Debian packages certgate needs, only those missing;
#                     with "test" also those only the test suite uses (a browser for the
#                     status page test, logrotate)
#   deps_check_node   warns when Node.js is older than the tests' npm packages need
#   deps_npm_ci DIR   `npm ci` in DIR unless node_modules already matches the lock file
#
# Set CERTGATE_SKIP_DEPS=1 to skip deps_install (e.g. on a non-Debian machine that has
# everything already).

CERTGATE_APT_PACKAGES=(
	build-essential cmake pkg-config
	libssl-dev libp11-dev softhsm2 libevent-dev libjansson-dev opensc
	libhttp-parser-dev libp11-kit-dev libcurl4-openssl-dev libpcre2-dev libsystemd-dev
	libhiredis-dev
	curl python3 jq clang valgrind openssl testssl.sh iproute2 procps
	redis-server haproxy prometheus gnuplot-nox
)
# Only scripts/test needs these (t_ops_status_page loads the status page in headless
# Chromium, t_ops_logrotate runs logrotate): the quickstart does not install a browser.
CERTGATE_APT_TEST_PACKAGES=(logrotate chromium)

# Node.js version the pinned npm packages require (undici 7 wants >= 20.18.1).
CERTGATE_NODE_MIN=20.18.1

deps_log() {
	printf '%s\n' "deps: $*" >&2
}

# Prints the packages that are not installed, one per line ($1 = test: with the test-only ones).
deps_missing() {
	local p want=("${CERTGATE_APT_PACKAGES[@]}")
	[ "${1:-}" = test ] && want+=("${CERTGATE_APT_TEST_PACKAGES[@]}")
	for p in "${want[@]}"; do
		if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
			printf '%s\n' "$p"
		fi
	done
	# systemd-analyze (the unit checks in t_package_deb) comes with systemd, which a
	# container may lack; only ask for it then.
	command -v systemd-analyze >/dev/null 2>&1 || printf '%s\n' systemd
	# Node may come from elsewhere (NodeSource, nvm): only ask apt when it is absent.
	command -v node >/dev/null 2>&1 || printf '%s\n' nodejs
	command -v npm >/dev/null 2>&1 || printf '%s\n' npm
}

# Runs a command as root: directly when we are root, else through sudo.
deps_as_root() {
	if [ "$(id -u)" -eq 0 ]; then
		"$@"
	elif command -v sudo >/dev/null 2>&1; then
		sudo "$@"
	else
		deps_log "need root to run: $* (and sudo is not installed)"
		return 1
	fi
}

deps_install() {
	if [ "${CERTGATE_SKIP_DEPS:-0}" = 1 ]; then
		deps_log "CERTGATE_SKIP_DEPS=1: not checking Debian packages"
		return 0
	fi
	if ! command -v dpkg-query >/dev/null 2>&1; then
		deps_log "not a Debian system: install these yourself: ${CERTGATE_APT_PACKAGES[*]} nodejs npm"
		return 0
	fi
	local missing
	mapfile -t missing < <(deps_missing "${1:-}")
	if [ "${#missing[@]}" -eq 0 ]; then
		deps_log "all Debian packages present"
		return 0
	fi
	deps_log "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	deps_as_root apt-get update -qq
	deps_as_root env DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
}

# 0 when version $1 >= $2 (dotted numbers).
deps_version_ge() {
	[ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]
}

# Warns (returns 1) when node is missing or too old for the tests' npm packages.
deps_check_node() {
	local v
	if ! command -v node >/dev/null 2>&1; then
		deps_log "node not found: the MCP SDK end-to-end tests need Node.js >= $CERTGATE_NODE_MIN"
		return 1
	fi
	v=$(node --version 2>/dev/null | sed 's/^v//')
	if ! deps_version_ge "$v" "$CERTGATE_NODE_MIN"; then
		deps_log "node $v is older than $CERTGATE_NODE_MIN, which undici 7 (used by the MCP SDK tests) needs"
		return 1
	fi
	return 0
}

# npm ci in DIR, skipped when DIR/node_modules was installed from the same lock file
# by the same Node major version (a stamp file records that).
deps_npm_ci() {
	local dir=$1 stamp want have=
	stamp="$dir/node_modules/.certgate-lock.sha256"
	want="$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1) node-$(node -p 'process.versions.node.split(".")[0]')"
	[ -f "$stamp" ] && have=$(cat "$stamp")
	if [ -d "$dir/node_modules" ] && [ "$have" = "$want" ]; then
		deps_log "npm packages in $dir are up to date"
		return 0
	fi
	deps_log "npm ci in $dir"
	(cd "$dir" && npm ci --no-audit --no-fund --loglevel=error </dev/null)
	printf '%s\n' "$want" >"$stamp"
}
