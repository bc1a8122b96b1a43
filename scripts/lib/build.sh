# shellcheck shell=bash
# Build-folder handling for scripts/quickstart and scripts/test (sourced, not run).
#
#   build_dir_prepare SRC BUILD   makes BUILD usable for `cmake -S SRC -B BUILD`: a BUILD
#                                 configured for another source folder (the checkout was
#                                 copied or moved, or build/ came from elsewhere) makes
#                                 CMake fail with "does not match the source ... used to
#                                 generate cache"; its cache is removed (the objects
#                                 stay, CMake rebuilds what changed) and a note printed.
#                                 Returns 1 (message printed) when BUILD is not a build
#                                 folder certgate may touch.

# The source folder a build folder's CMakeCache.txt was made for, or nothing.
build_cache_source() {
	local cache="$1/CMakeCache.txt"
	[ -f "$cache" ] || return 0
	sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$cache" | head -n1
}

build_dir_prepare() {
	local src build was
	src=$(cd "$1" && pwd -P)
	build=$2
	was=$(build_cache_source "$build")
	[ -n "$was" ] || return 0
	if [ -d "$was" ] && [ "$(cd "$was" && pwd -P)" = "$src" ]; then
		return 0
	fi
	# Only a build folder of certgate itself is cleaned, never some other project's.
	if ! grep -q '^certgate_SOURCE_DIR:' "$build/CMakeCache.txt"; then
		printf '%s\n' "build: $build holds the CMake cache of another project ($was); remove it or build elsewhere" >&2
		return 1
	fi
	printf '%s\n' "build: $build was configured for another checkout ($was); starting its configuration afresh for $src" >&2
	rm -rf -- "$build/CMakeCache.txt" "$build/CMakeFiles"
}
