/* What the `certgate ca` commands share (cacli.h). */
#include "cacli.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cadb.h"
#include "castore.h"
#include "certify.h"
#include "config.h"

static const char *cacli_progname = "certgate ca";

void
cacli_set_prog(const char *prog)
{
	cacli_progname = prog;
}

const char *
cacli_prog(void)
{
	return cacli_progname;
}

void
cacli_error(const char *fmt, ...)
{
	char msg[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s: %s\n", cacli_progname, msg);
}

/* Checks --agent; 0, or 2 (usage error printed). */
int
cacli_need_agent(const struct cacli_args *a)
{
	if (a->agent == NULL) {
		cacli_error("--agent ID is required");
		return 2;
	}
	if (!certify_agent_id_valid(a->agent)) {
		cacli_error("bad agent id '%s': want [A-Za-z0-9][A-Za-z0-9._-]{0,63}", a->agent);
		return 2;
	}
	return 0;
}

long
cacli_lifetime(const struct config *cfg, const struct cacli_args *a)
{
	if (a->lifetime > 0)
		return a->lifetime;
	return (cfg->ca.default_hours > 0 ? cfg->ca.default_hours : 24) * 3600L;
}

/* Opens the CA with its key, takes the lock, loads the database and reconciles an
 * interrupted issuance. 0/-1 (printed). */
int
cacli_begin(struct config *cfg, struct castore *s, struct cadb *db)
{
	char err[1024];
	int n;

	memset(db, 0, sizeof(*db));
	castore_init(s, cfg);
	if (castore_lock(s, err, sizeof(err)) == -1 || castore_open(s, cfg, 1, err, sizeof(err)) == -1) {
		cacli_error("%s", err);
		castore_close(s);
		return -1;
	}
	if (castore_load_db(s, db, err, sizeof(err)) == -1 ||
	    castore_reconcile(s, db, &n, err, sizeof(err)) == -1) {
		cacli_error("%s", err);
		castore_close(s);
		return -1;
	}
	return 0;
}

void
cacli_end(struct castore *s, struct cadb *db)
{
	castore_close(s);
	cadb_free(db);
}

/* Index of the newest valid row of agent id (latest expiry), or -1. */
long
cacli_newest_valid(const struct cadb *db, const char *id, time_t now)
{
	char cn[CERTIFY_AGENT_MAX + 2];
	time_t best = 0, t;
	long idx = -1;
	size_t i;

	for (i = 0; i < db->n; i++) {
		const char *ag = cadb_agent_of(&db->rows[i], cn, sizeof(cn));

		if (ag == NULL || strcmp(ag, id) != 0 || cadb_status(&db->rows[i], now) != CADB_VALID)
			continue;
		if (cadb_expiry(&db->rows[i], &t) == 0 && (idx == -1 || t > best)) {
			best = t;
			idx = (long)i;
		}
	}
	return idx;
}
