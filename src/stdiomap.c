/* Streamable HTTP <-> stdio mapping for one MCP session (see include/stdiomap.h). */
#include "stdiomap.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct stdiomap_pending {
	uint64_t gid;           /* the id the server sees */
	uint64_t post;
	json_t *orig_id;        /* the client's id */
	json_t *token;          /* params._meta.progressToken, or NULL */
	uint64_t seq;           /* order of arrival, for "most recent" */
};

struct stdiomap_post {
	uint64_t id;
	size_t waiting;
	uint64_t seq;
};

struct stdiomap {
	struct stdiomap_pending *pend;
	size_t npend, cappend, max_pending;
	struct stdiomap_post *posts;     /* open POSTs only */
	size_t nposts, capposts;
	json_t **queue;                  /* ring of messages for the next GET stream */
	size_t qhead, qlen, max_queued, qbytes, max_qbytes;
	size_t *qsize;
	int get_open;
	uint64_t next_gid, next_post, seq;
};

struct stdiomap *
stdiomap_new(size_t max_pending, size_t max_queued, size_t max_queued_bytes)
{
	struct stdiomap *m;

	if ((m = calloc(1, sizeof(*m))) == NULL)
		return NULL;
	m->max_pending = max_pending ? max_pending : 256;
	m->max_queued = max_queued ? max_queued : 256;
	m->max_qbytes = max_queued_bytes ? max_queued_bytes : 1024 * 1024;
	if ((m->queue = calloc(m->max_queued, sizeof(*m->queue))) == NULL ||
	    (m->qsize = calloc(m->max_queued, sizeof(*m->qsize))) == NULL) {
		free(m->queue);
		free(m);
		return NULL;
	}
	m->next_gid = m->next_post = 1;
	return m;
}

static void
stdiomap_pend_clear(struct stdiomap_pending *p)
{
	json_decref(p->orig_id);
	json_decref(p->token);
}

void
stdiomap_free(struct stdiomap *m)
{
	size_t i;

	if (m == NULL)
		return;
	for (i = 0; i < m->npend; i++)
		stdiomap_pend_clear(&m->pend[i]);
	free(m->pend);
	free(m->posts);
	for (i = 0; i < m->qlen; i++)
		json_decref(m->queue[(m->qhead + i) % m->max_queued]);
	free(m->queue);
	free(m->qsize);
	free(m);
}

size_t
stdiomap_pending(const struct stdiomap *m)
{
	return m->npend;
}

static struct stdiomap_post *
stdiomap_post_find(struct stdiomap *m, uint64_t id)
{
	size_t i;

	for (i = 0; i < m->nposts; i++)
		if (m->posts[i].id == id)
			return &m->posts[i];
	return NULL;
}

uint64_t
stdiomap_post_open(struct stdiomap *m)
{
	struct stdiomap_post *n;

	if (m->nposts == m->capposts) {
		size_t cap = m->capposts ? m->capposts * 2 : 8;

		if ((n = reallocarray(m->posts, cap, sizeof(*n))) == NULL)
			return 0;
		m->posts = n;
		m->capposts = cap;
	}
	n = &m->posts[m->nposts++];
	n->id = m->next_post++;
	n->waiting = 0;
	n->seq = ++m->seq;
	return n->id;
}

size_t
stdiomap_post_waiting(struct stdiomap *m, uint64_t post)
{
	struct stdiomap_post *p = stdiomap_post_find(m, post);

	return p != NULL ? p->waiting : 0;
}

void
stdiomap_post_close(struct stdiomap *m, uint64_t post)
{
	struct stdiomap_post *p = stdiomap_post_find(m, post);

	if (p == NULL)
		return;
	*p = m->posts[--m->nposts];
}

static void
stdiomap_pend_remove(struct stdiomap *m, size_t i)
{
	stdiomap_pend_clear(&m->pend[i]);
	m->pend[i] = m->pend[--m->npend];
}

/* Makes room for one more pending request: forgets the oldest one whose POST is gone. */
static int
stdiomap_pend_room(struct stdiomap *m)
{
	struct stdiomap_pending *n;
	size_t i, oldest = SIZE_MAX;

	if (m->npend >= m->max_pending) {
		for (i = 0; i < m->npend; i++)
			if (stdiomap_post_find(m, m->pend[i].post) == NULL &&
			    (oldest == SIZE_MAX || m->pend[i].seq < m->pend[oldest].seq))
				oldest = i;
		if (oldest == SIZE_MAX) {
			errno = ENOSPC;
			return -1;
		}
		stdiomap_pend_remove(m, oldest);
	}
	if (m->npend == m->cappend) {
		size_t cap = m->cappend ? m->cappend * 2 : 16;

		if ((n = reallocarray(m->pend, cap, sizeof(*n))) == NULL) {
			errno = ENOMEM;
			return -1;
		}
		m->pend = n;
		m->cappend = cap;
	}
	return 0;
}

static int
stdiomap_valid_id(json_t *id)
{
	return json_is_string(id) || json_is_integer(id) || json_is_real(id);
}

static int
stdiomap_request(struct stdiomap *m, struct stdiomap_post *post, json_t *msg)
{
	struct stdiomap_pending *p;
	json_t *id = json_object_get(msg, "id"), *token, *gid;

	if (stdiomap_pend_room(m) == -1)
		return -1;
	token = json_object_get(json_object_get(json_object_get(msg, "params"), "_meta"),
	    "progressToken");
	if ((gid = json_integer((json_int_t)m->next_gid)) == NULL) {
		errno = ENOMEM;
		return -1;
	}
	p = &m->pend[m->npend];
	p->gid = m->next_gid++;
	p->post = post->id;
	p->orig_id = json_incref(id);
	p->token = stdiomap_valid_id(token) ? json_incref(token) : NULL;
	p->seq = ++m->seq;
	if (json_object_set_new(msg, "id", gid) == -1) {
		stdiomap_pend_clear(p);
		errno = ENOMEM;
		return -1;
	}
	m->npend++;
	post->waiting++;
	return 0;
}

/* The client cancels by its own id: point the notification at the gateway id. */
static void
stdiomap_cancel(struct stdiomap *m, json_t *msg)
{
	json_t *params = json_object_get(msg, "params"), *rid = json_object_get(params,
	    "requestId");
	size_t i, best = SIZE_MAX;

	if (rid == NULL)
		return;
	for (i = 0; i < m->npend; i++)
		if (json_equal(m->pend[i].orig_id, rid) &&
		    (best == SIZE_MAX || m->pend[i].seq > m->pend[best].seq))
			best = i;
	if (best != SIZE_MAX)
		json_object_set_new(params, "requestId", json_integer((json_int_t)m->pend[best].gid));
}

int
stdiomap_post_message(struct stdiomap *m, uint64_t post, json_t *msg,
    enum stdiomap_kind *kind)
{
	struct stdiomap_post *p = stdiomap_post_find(m, post);
	json_t *method = json_object_get(msg, "method"), *id = json_object_get(msg, "id");

	if (p == NULL) {
		errno = ENOENT;
		return -1;
	}
	if (!json_is_object(msg)) {
		errno = EINVAL;
		return -1;
	}
	if (json_is_string(method) && id != NULL && !json_is_null(id)) {
		if (!stdiomap_valid_id(id)) {
			errno = EINVAL;
			return -1;
		}
		*kind = STDIOMAP_REQUEST;
		return stdiomap_request(m, p, msg);
	}
	if (json_is_string(method)) {
		*kind = STDIOMAP_NOTIFICATION;
		if (strcmp(json_string_value(method), "notifications/cancelled") == 0)
			stdiomap_cancel(m, msg);
		return 0;
	}
	if (id != NULL && (json_object_get(msg, "result") != NULL ||
	    json_object_get(msg, "error") != NULL)) {
		*kind = STDIOMAP_RESPONSE;
		return 0;
	}
	errno = EINVAL;
	return -1;
}

int
stdiomap_get_open(struct stdiomap *m)
{
	if (m->get_open) {
		errno = EBUSY;
		return -1;
	}
	m->get_open = 1;
	return 0;
}

void
stdiomap_get_close(struct stdiomap *m)
{
	m->get_open = 0;
}

json_t *
stdiomap_queue_pop(struct stdiomap *m)
{
	json_t *j;

	if (m->qlen == 0)
		return NULL;
	j = m->queue[m->qhead];
	m->qbytes -= m->qsize[m->qhead];
	m->queue[m->qhead] = NULL;
	m->qhead = (m->qhead + 1) % m->max_queued;
	m->qlen--;
	return j;
}

static void
stdiomap_drop(struct stdiomap_route *r, const char *why)
{
	r->dest = STDIOMAP_DROPPED;
	r->why = why;
}

/* A server-initiated message: GET stream, else the latest waiting POST, else queue. */
static void
stdiomap_unsolicited(struct stdiomap *m, json_t *msg, struct stdiomap_route *r)
{
	struct stdiomap_post *best = NULL;
	size_t i, size, slot;

	if (m->get_open) {
		r->dest = STDIOMAP_TO_GET;
		return;
	}
	for (i = 0; i < m->nposts; i++)
		if (m->posts[i].waiting > 0 && (best == NULL || m->posts[i].seq > best->seq))
			best = &m->posts[i];
	if (best != NULL) {
		r->dest = STDIOMAP_TO_POST;
		r->post = best->id;
		return;
	}
	size = json_dumpb(msg, NULL, 0, JSON_COMPACT);
	if (m->qlen >= m->max_queued || m->qbytes + size > m->max_qbytes) {
		stdiomap_drop(r, "no stream is open and the queue for the next GET stream is full");
		return;
	}
	slot = (m->qhead + m->qlen) % m->max_queued;
	m->queue[slot] = json_incref(msg);
	m->qsize[slot] = size;
	m->qlen++;
	m->qbytes += size;
	r->dest = STDIOMAP_QUEUED;
}

int
stdiomap_route(struct stdiomap *m, json_t *msg, struct stdiomap_route *r)
{
	struct stdiomap_post *post;
	json_t *method, *id, *token;
	size_t i;

	memset(r, 0, sizeof(*r));
	if (!json_is_object(msg)) {
		stdiomap_drop(r, "not a JSON-RPC message");
		errno = EINVAL;
		return -1;
	}
	method = json_object_get(msg, "method");
	id = json_object_get(msg, "id");
	if (method == NULL) {
		if (id == NULL || (json_object_get(msg, "result") == NULL &&
		    json_object_get(msg, "error") == NULL)) {
			stdiomap_drop(r, "not a JSON-RPC message");
			errno = EINVAL;
			return -1;
		}
		for (i = 0; i < m->npend; i++)
			if (json_is_integer(id) && json_integer_value(id) >= 0 &&
			    (uint64_t)json_integer_value(id) == m->pend[i].gid)
				break;
		if (i == m->npend) {
			stdiomap_drop(r, "response to no pending request");
			return 0;
		}
		json_object_set(msg, "id", m->pend[i].orig_id);
		post = stdiomap_post_find(m, m->pend[i].post);
		stdiomap_pend_remove(m, i);
		if (post == NULL) {
			stdiomap_drop(r, "response for a client that went away");
			return 0;
		}
		post->waiting--;
		r->dest = STDIOMAP_TO_POST;
		r->post = post->id;
		r->post_done = post->waiting == 0;
		return 0;
	}
	if (!json_is_string(method)) {
		stdiomap_drop(r, "not a JSON-RPC message");
		errno = EINVAL;
		return -1;
	}
	if (id == NULL && strcmp(json_string_value(method), "notifications/progress") == 0) {
		token = json_object_get(json_object_get(msg, "params"), "progressToken");
		for (i = 0; token != NULL && i < m->npend; i++)
			if (m->pend[i].token != NULL && json_equal(m->pend[i].token, token) &&
			    (post = stdiomap_post_find(m, m->pend[i].post)) != NULL) {
				r->dest = STDIOMAP_TO_POST;
				r->post = post->id;
				return 0;
			}
	}
	stdiomap_unsolicited(m, msg, r);
	return 0;
}
