/* Admin listener: plain HTTP/1.0-style responder for GET / (the status page),
 * GET /healthz and GET /metrics.
 * Hand-rolled on evconnlistener + bufferevent (libevent_extra's evhttp is not
 * linked): read the request head, answer, close. Runs on the main thread. */
#include "admin.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>

#include "activity.h"
#include "buf.h"
#include "cadb.h"
#include "log.h"
#include "metrics.h"
#include "p11.h"
#include "procstat.h"
#include "signer.h"
#include "state.h"
#include "statuspage.h"

#define ADMIN_MAX_HEAD	8192
#define ADMIN_MAX_CONNS	64
#define ADMIN_TIMEOUT_S	5
#define ADMIN_REFRESH_S	10      /* the status page's meta refresh */
#define ADMIN_PAGE_DENIALS 30

static struct evconnlistener *admin_lev;
static struct event_base *admin_base;
static const struct config *admin_cfg;
static int admin_nconns;

struct admin_conn {
	struct bufferevent *bev;
	int done;
	LIST_ENTRY(admin_conn) link;
};
static LIST_HEAD(, admin_conn) admin_conns = LIST_HEAD_INITIALIZER(admin_conns);

static void
admin_conn_free(struct admin_conn *ac)
{
	LIST_REMOVE(ac, link);
	bufferevent_free(ac->bev);
	free(ac);
	admin_nconns--;
}

static void
admin_write_cb(struct bufferevent *bev, void *arg)
{
	struct admin_conn *ac = arg;

	if (ac->done && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		admin_conn_free(ac);
}

static void
admin_event_cb(struct bufferevent *bev, short what, void *arg)
{
	admin_conn_free(arg);
}

static void
admin_respond(struct admin_conn *ac, int status, const char *reason, const char *ctype,
    const char *body)
{
	struct evbuffer *out = bufferevent_get_output(ac->bev);
	size_t len = strlen(body);

	evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\n"
	    "Content-Length: %zu\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
	    status, reason, ctype, len);
	evbuffer_add(out, body, len);
	ac->done = 1;
	bufferevent_disable(ac->bev, EV_READ);
	bufferevent_enable(ac->bev, EV_WRITE);
}

static void
admin_healthz(struct admin_conn *ac)
{
	struct gw_state *st;
	const char *token = "n/a";
	char body[512], next[64];
	unsigned long long gen = 0;
	time_t nu = 0, now = time(NULL);
	struct tm tm;
	int ok = 1, crl_ok = 1;

	if (admin_cfg->tls.key != NULL && p11_is_uri(admin_cfg->tls.key)) {
		if (p11_health() == 1)
			token = "ok";
		else {
			token = "down";
			ok = 0;
		}
	}
	if ((st = state_get()) != NULL) {
		gen = (unsigned long long)st->generation;
		nu = st->crl_next_update;
		state_put(st);
	} else
		ok = 0;
	if (nu != 0) {
		gmtime_r(&nu, &tm);
		strftime(next, sizeof(next), "\"%Y-%m-%dT%H:%M:%SZ\"", &tm);
		if (nu <= now)
			crl_ok = ok = 0;
	} else
		snprintf(next, sizeof(next), "null");
	snprintf(body, sizeof(body), "{\"status\":\"%s\",\"token\":\"%s\",\"crl\":\"%s\","
	    "\"crl_next_update\":%s,\"generation\":%llu,\"connections\":%ld}\n",
	    ok ? "ok" : "down", token, nu == 0 ? "none" : crl_ok ? "ok" : "expired", next,
	    gen, metrics_get(M_CONN_ACTIVE));
	if (ok)
		admin_respond(ac, 200, "OK", "application/json", body);
	else
		admin_respond(ac, 503, "Service Unavailable", "application/json", body);
}

static void
admin_metrics(struct admin_conn *ac)
{
	char *text;

	if ((text = metrics_render()) == NULL) {
		admin_respond(ac, 500, "Internal Server Error", "text/plain", "out of memory\n");
		return;
	}
	admin_respond(ac, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", text);
	free(text);
}

/* "YYMMDDHHMMSSZ" (index.txt) to time_t, 0 when malformed. */
static time_t
admin_db_time(const char *s)
{
	struct tm tm;

	memset(&tm, 0, sizeof(tm));
	if (s == NULL || strlen(s) != 13 || s[12] != 'Z' ||
	    sscanf(s, "%2d%2d%2d%2d%2d%2d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
	    &tm.tm_hour, &tm.tm_min, &tm.tm_sec) != 6)
		return 0;
	tm.tm_year += tm.tm_year < 50 ? 100 : 0;        /* RFC 5280 UTCTime */
	tm.tm_mon -= 1;
	return timegm(&tm);
}

/* The latest notAfter of a valid certificate the CA issued to agent id (subject
 * "/CN=id"), 0 when none. */
static time_t
admin_db_expiry(const struct cadb *db, const char *id)
{
	time_t best = 0, t;
	size_t i;

	for (i = 0; db != NULL && i < db->n; i++) {
		const struct cadb_row *r = &db->rows[i];

		if (r->status != 'V' || strncmp(r->subject, "/CN=", 4) != 0 ||
		    strcmp(r->subject + 4, id) != 0)
			continue;
		if ((t = admin_db_time(r->expiry)) > best)
			best = t;
	}
	return best;
}

static const struct activity_agent_view *
admin_find_view(const struct activity_agent_view *v, size_t n, const char *id)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (strcmp(v[i].id, id) == 0)
			return &v[i];
	return NULL;
}

static int
admin_agent_cmp(const void *a, const void *b)
{
	return strcmp(((const struct statuspage_agent *)a)->id,
	    ((const struct statuspage_agent *)b)->id);
}

static void
admin_fill_agent(struct statuspage_agent *sa, const struct activity_agent_view *v)
{
	if (v == NULL)
		return;
	sa->connections = v->connections;
	sa->requests = v->requests;
	sa->denials = v->denials;
	sa->new_addresses = v->new_addresses;
	sa->last_seen = v->last_seen;
	sa->last_peer = v->last_peer[0] ? v->last_peer : NULL;
	if (sa->cert_not_after == 0)
		sa->cert_not_after = v->cert_not_after;
}

/* GET /: collects what the status page shows (statuspage.h) and renders it. */
static void
admin_status(struct admin_conn *ac)
{
	struct activity_denial den[ADMIN_PAGE_DENIALS];
	struct state_reload_ev rel[STATE_HISTORY_MAX];
	struct activity_agent_view *views = NULL;
	struct statuspage_agent *agents = NULL;
	struct statuspage_data d;
	struct signer_stats ss;
	struct cadb db = { 0 };
	struct procstat ps;
	struct gw_state *st;
	struct buf page, roles;
	char listen[300], err[256], **rolestr = NULL;
	size_t nviews, nmap = 0, n = 0, i, j;
	int have_db = 0;

	memset(&d, 0, sizeof(d));
	buf_init(&page);
	buf_init(&roles);
	d.now = time(NULL);
	if (procstat_read(&ps) == 0)
		d.started = (time_t)ps.start_time;
	d.version = CERTGATE_VERSION;
	snprintf(listen, sizeof(listen), "%s:%u", admin_cfg->listen_host,
	    (unsigned)admin_cfg->listen_port);
	d.listen = listen;
	d.upstream = admin_cfg->upstream.url ? admin_cfg->upstream.url :
	    admin_cfg->upstream.command ? admin_cfg->upstream.command[0] : NULL;
	d.refresh_s = ADMIN_REFRESH_S;
	d.token = admin_cfg->tls.key != NULL && p11_is_uri(admin_cfg->tls.key) ?
	    p11_health() == 1 : -1;
	d.token_label = admin_cfg->pkcs11.token;
	d.module = admin_cfg->pkcs11.module;
	d.token_logins = p11_health_logins();
	signer_stats(&ss);
	d.signer_threads = ss.threads;
	d.signer_queued = ss.queued;
	d.signer_busy = ss.busy;
	d.signs_ok = ss.ok;
	d.signs_error = ss.error;
	d.signs_timeout = ss.timeout;
	d.signs_refused = ss.refused;
	d.connections = metrics_get(M_CONN_ACTIVE);
	d.requests = metrics_get(M_REQ_TOTAL);
	d.denied = metrics_get(M_REQ_DENIED);
	d.handshakes_ok = metrics_get(M_HS_OK) + metrics_get(M_HS_RESUMED);
	d.handshakes_failed = metrics_get(M_HS_FAIL);
	d.ndenials = activity_denials(den, ADMIN_PAGE_DENIALS);
	d.denials = den;
	d.nreloads = state_history(rel, STATE_HISTORY_MAX);
	d.reloads = rel;
	if (admin_cfg->ca.db != NULL && access(admin_cfg->ca.db, R_OK) == 0)
		have_db = cadb_load(admin_cfg->ca.db, &db, err, sizeof(err)) == 0;

	st = state_get();
	if (st != NULL) {
		d.generation = st->generation;
		d.crl_next_update = st->crl_next_update;
		d.ca_not_after = st->ca_not_after;
		d.server_not_after = st->server_not_after;
		d.nca = st->nca;
		d.nrevoked = st->nrevoked;
		nmap = st->map ? st->map->nagents : 0;
	}
	/* The agents of the map in force, then the ones seen that it no longer has. */
	views = calloc(ACTIVITY_MAX_AGENTS + 1, sizeof(*views));
	nviews = views ? activity_agents(views, ACTIVITY_MAX_AGENTS + 1) : 0;
	agents = calloc(nmap + nviews + 1, sizeof(*agents));
	rolestr = calloc(nmap + 1, sizeof(*rolestr));
	if (agents == NULL || rolestr == NULL || (nviews == 0 && views == NULL)) {
		admin_respond(ac, 500, "Internal Server Error", "text/plain", "out of memory\n");
		goto out;
	}
	for (i = 0; i < nmap; i++) {
		const struct identity_agent *ia = &st->map->agents[i];
		struct statuspage_agent *sa = &agents[n++];

		buf_reset(&roles);
		for (j = 0; j < ia->nroles; j++)
			buf_addf(&roles, "%s%s", j ? ", " : "", ia->roles[j]);
		rolestr[i] = buf_detach(&roles, NULL);
		sa->id = ia->id;
		sa->roles = rolestr[i] ? rolestr[i] : "";
		if (have_db)
			sa->cert_not_after = admin_db_expiry(&db, ia->id);
		admin_fill_agent(sa, admin_find_view(views, nviews, ia->id));
	}
	for (i = 0; i < nviews; i++) {
		if (st != NULL && st->map != NULL && identity_find_id(st->map, views[i].id) != NULL)
			continue;
		agents[n].id = views[i].id;
		admin_fill_agent(&agents[n++], &views[i]);
	}
	if (n > 1)
		qsort(agents, n, sizeof(*agents), admin_agent_cmp);
	d.agents = agents;
	d.nagents = n;
	if (statuspage_render(&d, &page) == -1)
		admin_respond(ac, 500, "Internal Server Error", "text/plain", "out of memory\n");
	else
		admin_respond(ac, 200, "OK", "text/html; charset=utf-8", buf_str(&page));
out:
	for (i = 0; rolestr != NULL && i < nmap; i++)
		free(rolestr[i]);
	free(rolestr);
	free(agents);
	free(views);
	state_put(st);
	if (have_db)
		cadb_free(&db);
	buf_free(&roles);
	buf_free(&page);
}

/* Dispatches on the request line "METHOD PATH[?query] VERSION". */
static void
admin_route(struct admin_conn *ac, char *line)
{
	char *method, *path, *q, *save = NULL;

	method = strtok_r(line, " ", &save);
	path = strtok_r(NULL, " ", &save);
	if (method == NULL || path == NULL) {
		admin_respond(ac, 400, "Bad Request", "text/plain", "bad request\n");
		return;
	}
	if ((q = strchr(path, '?')) != NULL)
		*q = '\0';
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
		admin_respond(ac, 405, "Method Not Allowed", "text/plain", "GET only\n");
		return;
	}
	if (strcmp(path, "/") == 0)
		admin_status(ac);
	else if (strcmp(path, "/healthz") == 0)
		admin_healthz(ac);
	else if (strcmp(path, "/metrics") == 0)
		admin_metrics(ac);
	else
		admin_respond(ac, 404, "Not Found", "text/plain", "not found\n");
}

static void
admin_read_cb(struct bufferevent *bev, void *arg)
{
	struct admin_conn *ac = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	struct evbuffer_ptr end;
	char *line;

	if (ac->done)
		return;
	/* Answer once the whole head is in, so closing never resets unread bytes. */
	end = evbuffer_search(in, "\r\n\r\n", 4, NULL);
	if (end.pos == -1)
		end = evbuffer_search(in, "\n\n", 2, NULL);
	if (end.pos == -1) {
		if (evbuffer_get_length(in) > ADMIN_MAX_HEAD)
			admin_respond(ac, 431, "Request Header Fields Too Large", "text/plain",
			    "request head too large\n");
		return;
	}
	line = evbuffer_readln(in, NULL, EVBUFFER_EOL_CRLF);
	if (line == NULL) {
		admin_respond(ac, 400, "Bad Request", "text/plain", "bad request\n");
		return;
	}
	admin_route(ac, line);
	free(line);
}

static void
admin_accept_cb(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa,
    int socklen, void *arg)
{
	struct timeval tv = { ADMIN_TIMEOUT_S, 0 };
	struct admin_conn *ac;

	if (admin_nconns >= ADMIN_MAX_CONNS || (ac = calloc(1, sizeof(*ac))) == NULL) {
		evutil_closesocket(fd);
		return;
	}
	ac->bev = bufferevent_socket_new(admin_base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (ac->bev == NULL) {
		evutil_closesocket(fd);
		free(ac);
		return;
	}
	admin_nconns++;
	LIST_INSERT_HEAD(&admin_conns, ac, link);
	bufferevent_setcb(ac->bev, admin_read_cb, admin_write_cb, admin_event_cb, ac);
	bufferevent_set_timeouts(ac->bev, &tv, &tv);
	bufferevent_enable(ac->bev, EV_READ);
}

/* /metrics: the token's health as /healthz sees it (p11.h: from the monitor
 * thread, never a probe of the token itself). */
static void
admin_token_metrics(FILE *f)
{
	if (admin_cfg == NULL)
		return;
	if (admin_cfg->tls.key != NULL && p11_is_uri(admin_cfg->tls.key)) {
		metrics_put_head(f, "token_up", "gauge",
		    "1 when the PKCS#11 token holding the server key is usable.");
		fprintf(f, "certgate_token_up %d\n", p11_health() == 1);
	}
	metrics_put_head(f, "token_health_logins_total", "counter",
	    "Logins made by the token health monitor (a lost session re-opened).");
	fprintf(f, "certgate_token_health_logins_total %ld\n", p11_health_logins());
}

static void
admin_error_cb(struct evconnlistener *lev, void *arg)
{
	log_warn("admin listener accept: %s", strerror(errno));
}

int
admin_start(struct event_base *base, const struct config *cfg)
{
	struct addrinfo hints, *res = NULL, *ai;
	char port[16];
	int rc;

	if (cfg->admin_host == NULL || cfg->admin_host[0] == '\0')
		return 0;
	admin_base = base;
	admin_cfg = cfg;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	snprintf(port, sizeof(port), "%u", (unsigned)cfg->admin_port);
	if ((rc = getaddrinfo(cfg->admin_host, port, &hints, &res)) != 0) {
		log_err("admin address %s: %s", cfg->admin_host, gai_strerror(rc));
		return -1;
	}
	for (ai = res; ai != NULL && admin_lev == NULL; ai = ai->ai_next)
		admin_lev = evconnlistener_new_bind(base, admin_accept_cb, NULL,
		    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_REUSEABLE, 64,
		    ai->ai_addr, (int)ai->ai_addrlen);
	freeaddrinfo(res);
	if (admin_lev == NULL) {
		log_err("cannot listen on admin %s:%s: %s", cfg->admin_host, port,
		    strerror(errno));
		return -1;
	}
	evconnlistener_set_error_cb(admin_lev, admin_error_cb);
	(void)procstat_register();
	(void)metrics_add_renderer(admin_token_metrics);
	log_info("admin listener on http://%s:%s (/ status page, /healthz, /metrics)",
	    cfg->admin_host, port);
	return 0;
}

void
admin_stop(void)
{
	metrics_remove_renderer(admin_token_metrics);
	if (admin_lev != NULL)
		evconnlistener_free(admin_lev);
	admin_lev = NULL;
	while (!LIST_EMPTY(&admin_conns))
		admin_conn_free(LIST_FIRST(&admin_conns));
}
