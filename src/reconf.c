/* certgate.json changes while running (reconf.h): diff the new document against the
 * one in force, apply what can be applied, name what needs a restart.
 *
 * Why a diff of the JSON documents and not of struct config: a key another module
 * adds to config.c is then reported as "needs a restart" without anyone updating a
 * list here, so no change is ever silently ignored (a changed "rate" used to be). */
#include "reconf.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "buf.h"
#include "file.h"
#include "log.h"
#include "metrics.h"
#include "state.h"

#define RECONF_MAX_FILE		(1024 * 1024)
#define RECONF_MAX_DEPTH	16

enum reconf_type { RT_INT, RT_LONG, RT_DOUBLE };

/* The keys applied at run time and where their value lives in struct config. Each is
 * read by the workers per request or per connection (see reconf.h). */
static const struct reconf_live {
	const char *path;
	enum reconf_type type;
	size_t off;
} reconf_live[] = {
#define RL_INT(p, m) { p, RT_INT, offsetof(struct config, m) }
	{ "rate.per_second", RT_DOUBLE, offsetof(struct config, rate_per_second) },
	{ "rate.burst", RT_DOUBLE, offsetof(struct config, rate_burst) },
	RL_INT("limits.handshake_timeout_ms", limits.handshake_timeout_ms),
	RL_INT("limits.header_timeout_ms", limits.header_timeout_ms),
	RL_INT("limits.body_timeout_ms", limits.body_timeout_ms),
	RL_INT("limits.idle_timeout_ms", limits.idle_timeout_ms),
	RL_INT("limits.upstream_connect_timeout_ms", limits.upstream_connect_timeout_ms),
	RL_INT("limits.upstream_response_timeout_ms", limits.upstream_response_timeout_ms),
	RL_INT("limits.stream_idle_timeout_ms", limits.stream_idle_timeout_ms),
	RL_INT("limits.grace_ms", limits.grace_ms),
	RL_INT("limits.max_connections_per_ip", limits.max_connections_per_ip),
	RL_INT("limits.max_header_bytes", limits.max_header_bytes),
	RL_INT("limits.max_header_count", limits.max_header_count),
	{ "limits.max_body_bytes", RT_LONG, offsetof(struct config, limits.max_body_bytes) },
	RL_INT("audit.on_failure", audit_fail_open),
	RL_INT("hsts_max_age", hsts_max_age),
	RL_INT("tls.min_version", tls.min_version),
	RL_INT("tls.session_tickets", tls.session_tickets),
#undef RL_INT
};
#define RECONF_NLIVE (sizeof(reconf_live) / sizeof(reconf_live[0]))

static struct {
	struct config *cfg;
	json_t *running;        /* the document in force (live keys patched in) */
	struct stat sig;
	int have_sig;
	int last_ok;
	time_t last, last_ok_time;
} rc = { .last_ok = 1 };

static const struct reconf_live *
reconf_find(const char *path)
{
	size_t i;

	for (i = 0; i < RECONF_NLIVE; i++)
		if (strcmp(reconf_live[i].path, path) == 0)
			return &reconf_live[i];
	return NULL;
}

enum reconf_kind
reconf_key_kind(const char *path)
{
	return path != NULL && reconf_find(path) != NULL ? RECONF_LIVE : RECONF_RESTART;
}

/* ---- the diff ---- */

static int
reconf_note(const char *path, struct strlist *live, struct strlist *restart)
{
	return strlist_addf(reconf_key_kind(path) == RECONF_LIVE ? live : restart, "%s",
	    path);
}

/* The member key of o, or NULL when o is not an object or has none. */
static const json_t *
reconf_member(const json_t *o, const char *key)
{
	return json_is_object(o) ? json_object_get(o, key) : NULL;
}

static int
reconf_walk(const json_t *a, const json_t *b, struct buf *path, int depth,
    struct strlist *live, struct strlist *restart)
{
	const json_t *o;
	const char *key;
	size_t keep = path->len;
	void *it;
	int pass, rv = 0;

	/* Objects are compared member by member; an object missing on one side counts
	 * as empty, so its leaves are classified one by one ("limits" removed: each
	 * limit reverts to its default). An object replaced by a scalar is one leaf. */
	if ((json_is_object(a) || json_is_object(b)) && depth < RECONF_MAX_DEPTH &&
	    (a == NULL || b == NULL || json_is_object(a) == json_is_object(b))) {
		/* Keys of a (changed or removed), then keys only in b (added). */
		for (pass = 0; pass < 2 && rv == 0; pass++) {
			if (!json_is_object(o = pass == 0 ? a : b))
				continue;
			for (it = json_object_iter((json_t *)o); it != NULL && rv == 0;
			    it = json_object_iter_next((json_t *)o, it)) {
				key = json_object_iter_key(it);
				if (pass == 1 && reconf_member(a, key) != NULL)
					continue;
				path->len = keep;
				if ((keep > 0 && buf_addc(path, '.') == -1) || buf_adds(path, key) == -1)
					return -1;
				rv = reconf_walk(reconf_member(a, key), reconf_member(b, key), path,
				    depth + 1, live, restart);
			}
		}
		path->len = keep;
		if (path->p != NULL)
			path->p[keep] = '\0';
		return rv;
	}
	/* 50 and 50.0 are the same value to config.c. */
	if (json_is_number(a) && json_is_number(b) && json_number_value(a) == json_number_value(b))
		return 0;
	if (a != NULL && b != NULL && json_equal((json_t *)a, (json_t *)b))
		return 0;
	return reconf_note(buf_str(path), live, restart);
}

int
reconf_diff(const json_t *running, const json_t *next, struct strlist *live,
    struct strlist *restart)
{
	struct buf path;
	int r;

	buf_init(&path);
	r = reconf_walk(running, next, &path, 0, live, restart);
	if (buf_failed(&path))
		r = -1;
	buf_free(&path);
	return r;
}

void
reconf_apply(struct config *dst, const struct config *src, const struct strlist *paths)
{
	const struct reconf_live *l;
	size_t i;

	for (i = 0; i < paths->n; i++) {
		if ((l = reconf_find(paths->v[i])) == NULL)
			continue;
		switch (l->type) {
		case RT_INT:
			__atomic_store_n((int *)((char *)dst + l->off),
			    *(const int *)((const char *)src + l->off), __ATOMIC_RELAXED);
			break;
		case RT_LONG:
			__atomic_store_n((long *)((char *)dst + l->off),
			    *(const long *)((const char *)src + l->off), __ATOMIC_RELAXED);
			break;
		case RT_DOUBLE:
			__atomic_store((double *)((char *)dst + l->off),
			    (double *)((const char *)src + l->off), __ATOMIC_RELAXED);
			break;
		}
	}
}

/* ---- the running document ---- */

/* Sets (or removes, when next has none) the value at dotted path in doc to next's. */
static int
reconf_patch(json_t *doc, const json_t *next, const char *path)
{
	char *copy, *key, *dot;
	json_t *d = doc, *child;
	const json_t *n = next;
	int r = -1;

	if ((copy = strdup(path)) == NULL)
		return -1;
	key = copy;
	while ((dot = strchr(key, '.')) != NULL) {
		*dot = '\0';
		n = json_is_object(n) ? json_object_get(n, key) : NULL;
		if (!json_is_object(child = json_object_get(d, key))) {
			if ((child = json_object()) == NULL ||
			    json_object_set_new(d, key, child) == -1)
				goto out;
		}
		d = child;
		key = dot + 1;
	}
	n = json_is_object(n) ? json_object_get(n, key) : NULL;
	if (n == NULL) {
		(void)json_object_del(d, key);  /* -1 only when it was absent too */
		r = 0;
	} else
		r = json_object_set_new(d, key, json_deep_copy(n));
out:
	free(copy);
	return r;
}

static json_t *
reconf_read(const char *path, struct stat *sig, struct strlist *errs)
{
	json_error_t je;
	json_t *doc;
	size_t len;
	char *text;

	if (stat(path, sig) == -1 || file_read(path, RECONF_MAX_FILE, &text, &len) == -1) {
		strlist_addf(errs, "%s: %s", path, strerror(errno));
		return NULL;
	}
	doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
	free(text);
	if (doc == NULL)
		strlist_addf(errs, "%s:%d: %s", path, je.line, je.text);
	return doc;
}

static void
reconf_metrics(FILE *f)
{
	metrics_put_head(f, "config_last_reload_successful", "gauge",
	    "1 when the last reload of certgate.json was accepted (0: rejected, see the log).");
	fprintf(f, "certgate_config_last_reload_successful %d\n", rc.last_ok);
	metrics_put_head(f, "config_last_reload_success_timestamp_seconds", "gauge",
	    "Time certgate.json was last read successfully (start-up counts).");
	fprintf(f, "certgate_config_last_reload_success_timestamp_seconds %lld\n",
	    (long long)rc.last_ok_time);
}

int
reconf_init(struct config *cfg)
{
	struct strlist errs = { 0 };

	rc.cfg = cfg;
	if (cfg->path == NULL)
		return 0;
	if ((rc.running = reconf_read(cfg->path, &rc.sig, &errs)) == NULL) {
		log_err("%s", errs.n ? errs.v[0] : "cannot read the configuration");
		strlist_free(&errs);
		return -1;
	}
	rc.have_sig = 1;
	rc.last_ok_time = rc.last = time(NULL);
	(void)metrics_add_renderer(reconf_metrics);
	return 0;
}

int
reconf_file_changed(void)
{
	struct stat now;

	if (rc.cfg == NULL || rc.cfg->path == NULL || !rc.have_sig)
		return 0;
	if (stat(rc.cfg->path, &now) == -1)
		return 0;       /* being replaced; the next tick sees the new file */
	return now.st_ino != rc.sig.st_ino || now.st_dev != rc.sig.st_dev ||
	    now.st_size != rc.sig.st_size || now.st_mtim.tv_sec != rc.sig.st_mtim.tv_sec ||
	    now.st_mtim.tv_nsec != rc.sig.st_mtim.tv_nsec;
}

/* "a, b, c" of a list, cut to fit a log line. */
static const char *
reconf_join(const struct strlist *l, struct buf *b)
{
	size_t i;

	buf_reset(b);
	for (i = 0; i < l->n; i++)
		buf_addf(b, "%s%s", i ? ", " : "", l->v[i]);
	return buf_str(b);
}

static void
reconf_rejected(const char *why, const struct strlist *errs)
{
	char what[192];
	size_t i;

	for (i = 0; i < errs->n; i++)
		log_err("%s", errs->v[i]);
	log_err("%s rejected on reload (%s): the running configuration stays in force",
	    rc.cfg->path, why);
	rc.last_ok = 0;
	snprintf(what, sizeof(what), "%s: certgate.json rejected: %s", why,
	    errs->n ? errs->v[0] : "invalid");
	state_history_note(0, what);
	metrics_inc(M_RELOAD_FAIL);
}

int
reconf_reload(const char *why)
{
	struct strlist errs = { 0 }, live = { 0 }, restart = { 0 };
	struct config *next = NULL;
	struct buf b;
	json_t *doc = NULL;
	size_t i;
	int r = -1;

	if (rc.cfg == NULL || rc.running == NULL)
		return 0;
	buf_init(&b);
	rc.last = time(NULL);
	if ((doc = reconf_read(rc.cfg->path, &rc.sig, &errs)) == NULL ||
	    config_load(rc.cfg->path, CONFIG_CHECK_FILES, &next, &errs) == -1) {
		reconf_rejected(why, &errs);
		goto out;
	}
	if (reconf_diff(rc.running, doc, &live, &restart) == -1) {
		log_err("%s: out of memory comparing the configuration", rc.cfg->path);
		goto out;
	}
	reconf_apply(rc.cfg, next, &live);
	for (i = 0; i < live.n; i++)
		if (reconf_patch(rc.running, doc, live.v[i]) == -1)
			log_warn("%s: out of memory recording %s", rc.cfg->path, live.v[i]);
	if (live.n > 0)
		log_info("%s (%s): applied %s", rc.cfg->path, why, reconf_join(&live, &b));
	if (restart.n > 0)
		log_warn("%s (%s): changed keys that need a restart to take effect: %s "
		    "(the running values stay in force until certgate is restarted)",
		    rc.cfg->path, why, reconf_join(&restart, &b));
	if (live.n > 0 || restart.n > 0) {
		char what[192];

		snprintf(what, sizeof(what), "%s: certgate.json: %zu applied, %zu need a restart",
		    why, live.n, restart.n);
		state_history_note(1, what);
	}
	rc.last_ok = 1;
	rc.last_ok_time = rc.last;
	r = 0;
out:
	config_free(next);
	json_decref(doc);
	strlist_free(&errs);
	strlist_free(&live);
	strlist_free(&restart);
	buf_free(&b);
	return r;
}

void
reconf_shutdown(void)
{
	metrics_remove_renderer(reconf_metrics);
	json_decref(rc.running);
	rc.running = NULL;
	rc.cfg = NULL;
	rc.have_sig = 0;
}
