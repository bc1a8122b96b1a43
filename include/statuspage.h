/* The admin listener's status page (GET /): one HTML page, plain HTML and CSS, no
 * script, reloaded by the browser every refresh_s seconds (meta refresh), the way
 * HAProxy's stats page is used. Pure: the caller (admin.c) collects the figures,
 * statuspage_render turns them into HTML; every value from outside (agent ids,
 * subjects, reasons, peers, paths) is HTML-escaped, so nothing a client or a
 * certificate holder controls can add markup. Thread-safe (no shared state). */
#ifndef CERTGATE_STATUSPAGE_H
#define CERTGATE_STATUSPAGE_H
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "activity.h"
#include "buf.h"
#include "state.h"

struct statuspage_agent {
	const char *id;
	const char *roles;              /* "member, guest"; NULL: not in the identity map */
	long long cert_not_after;       /* latest valid one the CA issued, else the last
	                                 * one seen; 0: unknown */
	long connections;
	long long requests, denials, new_addresses;
	time_t last_seen;               /* 0: not since start-up */
	const char *last_peer;
};

struct statuspage_data {
	time_t now;
	time_t started;                 /* process start */
	const char *version;
	const char *listen;             /* "host:port" of the mTLS listener */
	const char *upstream;           /* URL or command */
	int refresh_s;                  /* meta refresh; 0: none */
	/* signer and token */
	int token;                      /* 1 ok, 0 down, -1 not a token key */
	const char *token_label;
	const char *module;
	long long token_logins;
	long signer_threads, signer_queued, signer_busy;
	long signs_ok, signs_error, signs_timeout, signs_refused;
	/* what is in force */
	uint64_t generation;
	time_t crl_next_update, ca_not_after, server_not_after;
	unsigned nca;
	size_t nrevoked;
	/* traffic since start */
	long connections;
	long long requests, denied, handshakes_ok, handshakes_failed;
	const struct statuspage_agent *agents;
	size_t nagents;
	const struct activity_denial *denials;  /* newest first */
	size_t ndenials;
	const struct state_reload_ev *reloads;  /* newest first */
	size_t nreloads;
};

/* Appends s to out with & < > " ' escaped (and control characters other than tab
 * dropped, invalid UTF-8 bytes replaced by U+FFFD), for element content and
 * double-quoted attribute values. NULL appends nothing. Returns 0/-1 (out's sticky
 * error). */
int statuspage_escape(struct buf *out, const char *s);

/* Appends the whole page to out. Returns 0, or -1 when out failed (ENOMEM). */
int statuspage_render(const struct statuspage_data *d, struct buf *out);

#endif
