/* certgate.json changes while the gateway runs: on SIGHUP and when the file changes,
 * the file is parsed and validated again (config_load, the same checks as start-up),
 * compared key by key with what is in force, the keys that can change at run time
 * are applied, and every other changed key is named in a warning that says a restart
 * is needed. A file that does not validate changes nothing (every problem is logged).
 *
 * Applied at run time (RECONF_LIVE): rate.per_second, rate.burst, the timeouts and
 * size limits under limits (except max_connections), audit.on_failure, hsts_max_age,
 * tls.min_version and tls.session_tickets (they take effect with the SSL_CTX the
 * state reload that follows builds). Everything else needs a restart, including any
 * key this file does not know, so a new key is never silently ignored.
 *
 * Values are applied by storing into the running struct config that every thread
 * reads: each live value is one naturally aligned int, long or double stored with an
 * atomic store, so a reader sees the old or the new value (a request may see the new
 * rate with the old burst once). Threading: reconf_init, reconf_reload,
 * reconf_file_changed and reconf_shutdown are main-thread only; reconf_key_kind and
 * reconf_diff are pure. */
#ifndef CERTGATE_RECONF_H
#define CERTGATE_RECONF_H
#include <jansson.h>

#include "config.h"

enum reconf_kind { RECONF_RESTART = 0, RECONF_LIVE };

/* Whether the key at dotted path ("rate.per_second", "limits.max_connections",
 * "listen") can change at run time. Pure. */
enum reconf_kind reconf_key_kind(const char *path);

/* Compares two configuration documents (parsed certgate.json) and appends the dotted
 * path of every changed leaf (a scalar or an array; a key present on one side only
 * counts, an object missing on one side compares as empty) to live or restart by
 * reconf_key_kind, in key order. Pure; returns 0, or -1 when out of memory. */
int reconf_diff(const json_t *running, const json_t *next, struct strlist *live,
    struct strlist *restart);

/* Copies the value of every live key in paths from src into dst (atomic stores; see
 * above). Pure apart from dst. */
void reconf_apply(struct config *dst, const struct config *src, const struct strlist *paths);

/* Remembers cfg (borrowed: the running configuration, which must outlive
 * reconf_shutdown) and the text of cfg->path as the document in force. Returns 0/-1
 * (logged). */
int reconf_init(struct config *cfg);

/* 1 when cfg->path's size, mtime or inode changed since it was last read. */
int reconf_file_changed(void);

/* Re-reads cfg->path (why: for the log, e.g. "SIGHUP"), applies the live keys that
 * changed and warns about the rest, and records a rejected file in the reload
 * history (state.h). Returns 0 (also when nothing changed), or -1 when the file was
 * rejected and nothing changed. Keeps certgate_config_last_reload_successful and
 * certgate_config_last_reload_success_timestamp_seconds for /metrics. */
int reconf_reload(const char *why);

void reconf_shutdown(void);

#endif
