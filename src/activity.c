/* Per-agent activity and recent refusals (activity.h). One mutex over a small hash
 * table of agents and a ring of refusals; nothing here blocks or does I/O except
 * the info line for an agent seen from a new address. */
#include "activity.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"
#include "log.h"
#include "metrics.h"
#include "state.h"

#define ACTIVITY_BUCKETS	1024
#define ACTIVITY_OTHER		"_other"

struct activity_agent {
	struct activity_agent *next;    /* hash chain */
	char id[129];
	long connections;
	long long requests, denials, new_addresses;
	time_t last_seen;
	char last_peer[64];
	long long cert_not_after;
	char serial[80];
	char addrs[ACTIVITY_ADDRS][64]; /* ring of addresses used since start */
	unsigned naddrs, addr_next;
};

static pthread_mutex_t act_mtx = PTHREAD_MUTEX_INITIALIZER;
static struct activity_agent *act_tab[ACTIVITY_BUCKETS];
static size_t act_n;
static struct activity_denial act_den[ACTIVITY_DENIALS];
static size_t act_den_n, act_den_next;
static pthread_once_t act_once = PTHREAD_ONCE_INIT;

static void activity_metrics(FILE *f);

static void
activity_init(void)
{
	(void)metrics_add_renderer(activity_metrics);
}

/* The entry for id, made when missing (the "_other" one past the cap). Locked. */
static struct activity_agent *
activity_get(const char *id)
{
	struct activity_agent *a;
	unsigned h;

	if (strlen(id) >= sizeof(a->id))
		id = ACTIVITY_OTHER;
	for (;;) {
		h = hash_str(id) % ACTIVITY_BUCKETS;
		for (a = act_tab[h]; a != NULL; a = a->next)
			if (strcmp(a->id, id) == 0)
				return a;
		if (act_n < ACTIVITY_MAX_AGENTS || strcmp(id, ACTIVITY_OTHER) == 0)
			break;
		id = ACTIVITY_OTHER;
	}
	if ((a = calloc(1, sizeof(*a))) == NULL)
		return NULL;
	snprintf(a->id, sizeof(a->id), "%s", id);
	a->next = act_tab[h];
	act_tab[h] = a;
	act_n++;
	return a;
}

/* Remembers ip for a; 1 when it is a new address after the first one. Locked. */
static int
activity_addr(struct activity_agent *a, const char *ip)
{
	unsigned i, n = a->naddrs < ACTIVITY_ADDRS ? a->naddrs : ACTIVITY_ADDRS;

	for (i = 0; i < n; i++)
		if (strcmp(a->addrs[i], ip) == 0)
			return 0;
	snprintf(a->addrs[a->addr_next], sizeof(a->addrs[0]), "%s", ip);
	a->addr_next = (a->addr_next + 1) % ACTIVITY_ADDRS;
	return a->naddrs++ > 0;
}

struct activity_agent *
activity_conn_open(const struct identity_peer *peer, const char *ip)
{
	const struct identity_agent *ia = NULL;
	struct activity_agent *a = NULL;
	struct gw_state *st;
	char id[129], before[64];
	int fresh;

	pthread_once(&act_once, activity_init);
	if ((st = state_get()) != NULL && st->map != NULL &&
	    (ia = identity_lookup(st->map, peer)) != NULL)
		snprintf(id, sizeof(id), "%s", ia->id);
	state_put(st);
	if (ia == NULL)
		return NULL;
	pthread_mutex_lock(&act_mtx);
	if ((a = activity_get(id)) != NULL) {
		a->connections++;
		a->last_seen = time(NULL);
		snprintf(a->last_peer, sizeof(a->last_peer), "%s", ip);
		a->cert_not_after = peer->not_after;
		snprintf(a->serial, sizeof(a->serial), "%s", peer->serial);
		snprintf(before, sizeof(before), "%s", a->addrs[(a->addr_next + ACTIVITY_ADDRS - 1) %
		    ACTIVITY_ADDRS]);
		if ((fresh = activity_addr(a, ip)) != 0)
			a->new_addresses++;
	} else
		fresh = 0;
	pthread_mutex_unlock(&act_mtx);
	if (fresh)
		log_info("agent %s connects from a new address %s (last seen from %s)", id, ip,
		    before);
	return a;
}

void
activity_conn_close(struct activity_agent *a)
{
	if (a == NULL)
		return;
	pthread_mutex_lock(&act_mtx);
	if (a->connections > 0)
		a->connections--;
	pthread_mutex_unlock(&act_mtx);
}

/* Locked. */
static void
activity_denial_add(const char *agent, const char *peer, const char *reason,
    const char *what)
{
	struct activity_denial *d = &act_den[act_den_next];

	d->when = time(NULL);
	snprintf(d->agent, sizeof(d->agent), "%s", agent ? agent : "");
	snprintf(d->peer, sizeof(d->peer), "%s", peer ? peer : "");
	snprintf(d->reason, sizeof(d->reason), "%s", reason ? reason : "refused");
	snprintf(d->what, sizeof(d->what), "%s", what ? what : "");
	act_den_next = (act_den_next + 1) % ACTIVITY_DENIALS;
	if (act_den_n < ACTIVITY_DENIALS)
		act_den_n++;
}

void
activity_request(const char *agent, const char *peer, int allow, const char *reason,
    const char *method, const char *name)
{
	struct activity_agent *a;
	char what[160];

	pthread_once(&act_once, activity_init);
	pthread_mutex_lock(&act_mtx);
	if (agent != NULL && (a = activity_get(agent)) != NULL) {
		a->requests++;
		if (!allow)
			a->denials++;
		a->last_seen = time(NULL);
	}
	if (!allow) {
		snprintf(what, sizeof(what), "%s%s%s", method ? method : "",
		    name ? " " : "", name ? name : "");
		activity_denial_add(agent, peer, reason, what);
	}
	pthread_mutex_unlock(&act_mtx);
}

void
activity_refusal(const char *agent, const char *peer, const char *reason, const char *what)
{
	pthread_once(&act_once, activity_init);
	pthread_mutex_lock(&act_mtx);
	activity_denial_add(agent, peer, reason, what);
	pthread_mutex_unlock(&act_mtx);
}

static int
activity_view_cmp(const void *x, const void *y)
{
	return strcmp(((const struct activity_agent_view *)x)->id,
	    ((const struct activity_agent_view *)y)->id);
}

size_t
activity_agents(struct activity_agent_view *out, size_t max)
{
	struct activity_agent *a;
	size_t i, n = 0;

	pthread_mutex_lock(&act_mtx);
	for (i = 0; i < ACTIVITY_BUCKETS && n < max; i++)
		for (a = act_tab[i]; a != NULL && n < max; a = a->next) {
			struct activity_agent_view *v = &out[n++];

			memcpy(v->id, a->id, sizeof(v->id));
			v->connections = a->connections;
			v->requests = a->requests;
			v->denials = a->denials;
			v->new_addresses = a->new_addresses;
			v->last_seen = a->last_seen;
			memcpy(v->last_peer, a->last_peer, sizeof(v->last_peer));
			v->cert_not_after = a->cert_not_after;
			memcpy(v->serial, a->serial, sizeof(v->serial));
		}
	pthread_mutex_unlock(&act_mtx);
	if (n > 1)
		qsort(out, n, sizeof(*out), activity_view_cmp);
	return n;
}

size_t
activity_denials(struct activity_denial *out, size_t max)
{
	size_t i, n;

	pthread_mutex_lock(&act_mtx);
	n = act_den_n < max ? act_den_n : max;
	for (i = 0; i < n; i++)
		out[i] = act_den[(act_den_next + ACTIVITY_DENIALS - 1 - i) % ACTIVITY_DENIALS];
	pthread_mutex_unlock(&act_mtx);
	return n;
}

/* Snapshot under the lock, print outside it: renderers must not block workers. */
static void
activity_metrics(FILE *f)
{
	static const struct {
		const char *name, *type, *help;
	} fam[] = {
		{ "agent_requests_total", "counter", "Requests answered, by agent." },
		{ "agent_connections", "gauge", "Connections open now, by agent." },
		{ "agent_new_addresses_total", "counter",
		  "Connections of an agent from an address it had not used since start-up "
		  "(after its first one)." },
	};
	struct activity_agent_view *v;
	size_t n, i, k;
	long long val;

	pthread_mutex_lock(&act_mtx);
	n = act_n;
	pthread_mutex_unlock(&act_mtx);
	/* Agents that appear meanwhile are in the next scrape. */
	if (n == 0 || (v = calloc(n, sizeof(*v))) == NULL)
		v = NULL, n = 0;
	else
		n = activity_agents(v, n);
	for (k = 0; k < sizeof(fam) / sizeof(fam[0]); k++) {
		metrics_put_head(f, fam[k].name, fam[k].type, fam[k].help);
		for (i = 0; i < n; i++) {
			val = k == 0 ? v[i].requests : k == 1 ? v[i].connections :
			    v[i].new_addresses;
			fprintf(f, "certgate_%s{agent=\"", fam[k].name);
			metrics_put_label(f, v[i].id);
			fprintf(f, "\"} %lld\n", val);
		}
	}
	free(v);
}

void
activity_shutdown(void)
{
	struct activity_agent *a;
	size_t i;

	pthread_mutex_lock(&act_mtx);
	for (i = 0; i < ACTIVITY_BUCKETS; i++)
		while ((a = act_tab[i]) != NULL) {
			act_tab[i] = a->next;
			free(a);
		}
	act_n = 0;
	act_den_n = act_den_next = 0;
	pthread_mutex_unlock(&act_mtx);
}
