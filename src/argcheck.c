/* Schema checks at the gateway (argcheck.h). */
#include "argcheck.h"

#include <stdio.h>
#include <string.h>

#include "log.h"
#include "session.h"
#include "tooltab.h"

static struct session_table *argcheck_sessions;
static struct session_table *argcheck_agents;   /* sessionless upstreams */

enum { ARGCHECK_CHECK, ARGCHECK_LEARN };

struct argcheck_op {
	int op;
	const char *tool;
	json_t *json;           /* arguments, or the tools/list response */
	int first_page;
	const char **reason;
	char *detail;
	size_t len;
};

static void
argcheck_free_table(void *p)
{
	tooltab_free(p);
}

int
argcheck_init(struct session_table *sessions)
{
	argcheck_sessions = sessions;
	session_table_set_free(sessions, argcheck_free_table);
	if ((argcheck_agents = session_table_new_cap(0)) == NULL)
		return -1;
	session_table_set_free(argcheck_agents, argcheck_free_table);
	return 0;
}

void
argcheck_shutdown(void)
{
	session_table_free(argcheck_agents);
	argcheck_agents = NULL;
}

/* Runs under the session table's lock. */
static int
argcheck_op_fn(void **data, void *arg)
{
	struct argcheck_op *o = arg;
	struct tooltab_result tr;

	if (*data == NULL) {
		if (o->op != ARGCHECK_LEARN)
			goto none;
		if ((*data = tooltab_new(0, 0)) == NULL)
			return 0;
	}
	switch (o->op) {
	case ARGCHECK_LEARN:
		return tooltab_learn(*data, o->json, o->first_page) >= 0;
	default:
		if (tooltab_check(*data, o->tool, o->json, &tr) == -1) {
			*o->reason = "invalid arguments";
			snprintf(o->detail, o->len, "the arguments could not be checked");
			return 0;
		}
		if (!tr.allow) {
			*o->reason = tr.reason;
			snprintf(o->detail, o->len, "%s", tr.detail);
		}
		return tr.allow;
	}
none:
	if (o->op == ARGCHECK_CHECK) {
		*o->reason = "tool never listed";
		snprintf(o->detail, o->len, "tool \"%.200s\" was not listed in this session "
		    "(call tools/list first)", o->tool != NULL ? o->tool : "");
		return 0;
	}
	return 1;
}

static int
argcheck_run(const struct argcheck_key *k, struct argcheck_op *o)
{
	int rv;

	if (k->agent == NULL)
		return 0;
	if (k->session != NULL)
		rv = session_with(argcheck_sessions, k->session, k->agent, argcheck_op_fn, o);
	else {
		(void)session_bind(argcheck_agents, k->agent, k->agent);
		rv = session_with(argcheck_agents, k->agent, k->agent, argcheck_op_fn, o);
	}
	if (rv == -1 && o->op == ARGCHECK_CHECK) {
		*o->reason = "tool never listed";
		snprintf(o->detail, o->len, "no tools were listed in this session (call "
		    "tools/list first)");
		return 0;
	}
	return rv;
}

int
argcheck_validate(void *key, const char *tool, json_t *arguments, const char **reason,
    char *detail, size_t len)
{
	struct argcheck_op o = { ARGCHECK_CHECK, tool, arguments, 0, reason, detail, len };

	return argcheck_run(key, &o) == 1;
}

void
argcheck_observe(void *key, json_t *msg, const struct mcp_pending_list *answered)
{
	struct argcheck_op o;
	json_t *m;

	memset(&o, 0, sizeof(o));
	if (answered != NULL) {
		if (answered->method == NULL || strcmp(answered->method, "tools/list") != 0)
			return;
		o.op = ARGCHECK_LEARN;
		o.json = msg;
		o.first_page = answered->first_page;
	} else {
		/* notifications/tools/list_changed: the schemas in force stay until the
		 * client lists again (MCP clients do on this notification), which replaces
		 * them. Forgetting them here would refuse every call in between, and a
		 * server announces changes right after initialize (server-everything does
		 * when the client can sample). A tool added since is refused until listed;
		 * one removed is refused by the server. */
		m = json_object_get(msg, "method");
		if (json_is_string(m) && strcmp(json_string_value(m),
		    "notifications/tools/list_changed") == 0)
			log_debug("tools changed (session %s): the next tools/list replaces the "
			    "schemas", ((struct argcheck_key *)key)->session != NULL ?
			    ((struct argcheck_key *)key)->session : "-");
		return;
	}
	(void)argcheck_run(key, &o);
}
