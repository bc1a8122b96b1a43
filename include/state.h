/* Reloadable runtime state: everything a reload replaces as one unit (SSL_CTX with
 * the CA store and CRL, the revoked-serial set, the identity map). Readers take a
 * reference with state_get() and drop it with state_put(); a reload builds a complete
 * new state and swaps it in only if every part validated, otherwise the old one stays
 * and the error is logged and counted. Thread-safe. */
#ifndef CERTGATE_STATE_H
#define CERTGATE_STATE_H
#include <openssl/ssl.h>
#include <stdint.h>
#include <time.h>

#include "config.h"
#include "identity.h"

struct gw_state {
	int refs;                       /* atomic */
	uint64_t generation;            /* increases with every successful reload */
	SSL_CTX *ssl_ctx;               /* for new handshakes */
	SSL_CTX *enroll_ctx;            /* the enrollment listener's, or NULL */
	struct identity_map *map;
	char **revoked;                 /* sorted "ISSUER\nSERIAL" keys from the CRLs */
	size_t nrevoked;
	STACK_OF(X509_CRL) *crls;       /* in force, one per CA of tls.ca (tlscrl.h); NULL
	                                 * without crl_check */
	STACK_OF(X509) *own_ca;         /* certgate's own CA certificate(s) (ca.cert) for
	                                 * issuer binding (identity_peer_own_ca) */
	time_t crl_next_update;         /* earliest nextUpdate of the CRLs, 0 when none */
	time_t server_not_after;        /* the server certificate's notAfter */
	time_t ca_not_after;            /* earliest notAfter of the trusted CA certificates */
	unsigned nca;                   /* trusted CA certificates (tls.ca) */
};

/* Builds the first state. Start-up only; returns 0/-1 (logged). The server key is
 * borrowed (it stays loaded for the process lifetime). */
int state_init(const struct config *cfg, EVP_PKEY *server_key);

/* Rebuilds from the files named in the config; swaps only on full success. */
int state_reload(const char *why);

/* Checks the mtimes of the identity map, CRL, CA and server certificate files and
 * reloads when one changed. Called every second by the main loop. */
void state_check_files(void);

struct gw_state *state_get(void);
void state_put(struct gw_state *st);

/* 1 when the certificate of that issuer (RFC 4514 DN, identity_peer.issuer) and
 * serial (hex, any case and leading zeros) is revoked by the issuer's CRL in force.
 * Serials are unique per issuer only: another CA's CRL listing the same serial does
 * not revoke it. */
int state_is_revoked(const struct gw_state *st, const char *issuer, const char *serial);

/* The current state's generation (0 before state_init); lock-free, for workers
 * that only need to know whether something changed. */
uint64_t state_generation(void);

/* 1 when the current CRL is past its nextUpdate (every client is refused). */
int state_crl_expired(void);

/* Logs an error when the CRL has expired, a warning when it expires within 24 h
 * (rate-limited). Called every minute by the main loop. */
void state_check_crl_expiry(void);

/* Reload history, for the status page: the last STATE_HISTORY_MAX reload attempts
 * (state_reload's own, and those other modules note: a rejected certgate.json).
 * state_history_note records one (what: a short text, copied and cut to fit);
 * state_history copies up to max entries, newest first, and returns how many.
 * Any thread. state_reload also keeps certgate_last_reload_successful,
 * certgate_last_reload_timestamp_seconds and ..._success_timestamp_seconds, and the
 * state renders them with the CRL, CA and server certificate expiry gauges in
 * /metrics (a renderer registered by state_init). */
#define STATE_HISTORY_MAX 16
struct state_reload_ev {
	time_t when;
	int ok;
	uint64_t generation;            /* in force after the attempt */
	char what[192];
};
void state_history_note(int ok, const char *what);
size_t state_history(struct state_reload_ev *out, size_t max);

/* Frees the current state (shutdown). */
void state_shutdown(void);

#endif
