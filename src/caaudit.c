/* The CA's audit trail (caaudit.h). */
#include "caaudit.h"

#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "catime.h"
#include "jsonl.h"

static int
caaudit_set(json_t *o, const char *k, const char *v)
{
	return v == NULL ? 0 : json_object_set_new(o, k, json_string(v));
}

/* The line of a (and extra) as a JSON object, or NULL (ENOMEM). */
static json_t *
caaudit_obj(const struct caaudit_rec *a, json_t *extra)
{
	char ts[CATIME_RFC3339_LEN], who[256], pwbuf[1024];
	struct passwd pw, *pwp = NULL;
	const char *sudo, *k;
	json_t *o, *v;
	size_t wl;
	int bad = 0;

	catime_rfc3339(time(NULL), ts, sizeof(ts));
	if (getpwuid_r(geteuid(), &pw, pwbuf, sizeof(pwbuf), &pwp) == 0 && pwp != NULL)
		snprintf(who, sizeof(who), "%s", pwp->pw_name);
	else
		snprintf(who, sizeof(who), "uid %u", (unsigned)geteuid());
	if ((sudo = getenv("SUDO_USER")) != NULL && *sudo) {
		wl = strlen(who);
		snprintf(who + wl, sizeof(who) - wl, " (sudo by %s)", sudo);
	}
	if ((o = json_object()) == NULL) {
		errno = ENOMEM;
		return NULL;
	}
	bad |= caaudit_set(o, "ts", ts);
	bad |= caaudit_set(o, "who", who);
	bad |= caaudit_set(o, "what", a->what);
	bad |= caaudit_set(o, "op", a->op);
	bad |= caaudit_set(o, "serial", a->serial);
	bad |= caaudit_set(o, "old_serial", a->old_serial);
	bad |= caaudit_set(o, "agent", a->agent);
	bad |= caaudit_set(o, "subject", a->subject);
	bad |= caaudit_set(o, "reason", a->reason);
	bad |= caaudit_set(o, "not_after", a->not_after);
	bad |= caaudit_set(o, "token", a->token);
	bad |= caaudit_set(o, "via", a->via);
	bad |= caaudit_set(o, "peer", a->peer);
	if (extra != NULL)
		json_object_foreach(extra, k, v)
			bad |= json_object_set(o, k, v);
	if (bad) {
		json_decref(o);
		errno = ENOMEM;
		return NULL;
	}
	return o;
}

int
caaudit_write(const char *path, const struct caaudit_rec *a, json_t *extra)
{
	if (path == NULL)
		return 0;
	return caaudit_write_many(path, a, 1, extra);
}

int
caaudit_write_many(const char *path, const struct caaudit_rec *a, size_t n, json_t *extra)
{
	json_t **objs;
	size_t i, made = 0;
	int rc = -1;

	if (path == NULL || n == 0)
		return 0;
	if ((objs = calloc(n, sizeof(*objs))) == NULL) {
		errno = ENOMEM;
		return -1;
	}
	for (made = 0; made < n; made++)
		if ((objs[made] = caaudit_obj(&a[made], extra)) == NULL)
			goto fail;
	rc = jsonl_append_many(path, objs, n, 1);
fail:
	for (i = 0; i < made; i++)
		json_decref(objs[i]);
	free(objs);
	if (rc == -1 && made < n)
		errno = ENOMEM;
	return rc;
}
