/* TLS session-ticket keys shared by the instances of a cluster through Redis
 * (README "Running several instances"), so a client resumes on
 * any instance behind the load balancer.
 *
 * Keys: one per epoch of cluster.ticket_rotate_s seconds on Redis's clock
 * (certgate:tk:EPOCH -> 80 bytes: name 16, AES-256 key 32, HMAC-SHA256 key 32),
 * created by the first instance that finds none for the current epoch (SET NX, in
 * one Lua script with the read, so every instance converges on the same key), and
 * expiring at the end of the following epoch. New tickets are encrypted under the
 * current key; a ticket under the previous key still decrypts and is renewed
 * (callback answer 2); any other name means a full handshake.
 *
 * Redis unreachable: the keys held keep working until they age past the end of the
 * epoch after their own (2 x ticket_rotate_s at most), then no ticket is issued
 * and none is accepted (full handshakes). Revocation is never bypassed: every
 * decrypted ticket's session is checked by the caller's "usable" function (the
 * revocation list and expiry in force now) before it may resume, and conn.c checks
 * the serial again after every handshake.
 *
 * Key bytes are never logged; a key set dropped is wiped (OPENSSL_cleanse), as are
 * the copies made for one callback or one fetch (hiredis's own buffers, which carry
 * the keys to and from Redis, are freed unwiped).
 *
 * Threading: ticketkeys_start/stop run on the main thread (its event base runs the
 * fetches); the OpenSSL callbacks run on any worker thread and read the published
 * key set under a mutex held for a copy of one key. Returns: 0 / -1. */
#ifndef CERTGATE_TICKETKEYS_H
#define CERTGATE_TICKETKEYS_H
#include <stdio.h>

#include <event2/event.h>
#include <openssl/ssl.h>

#include "config.h"

/* May a session decrypted from a ticket resume on s? 1 yes, 0 no (revoked,
 * expired, other session id context). Thread-safe. */
typedef int (*ticketkeys_usable_fn)(SSL *s, SSL_SESSION *sess);

/* Turns ctx to stateless tickets under the shared keys (cluster mode; the caller
 * keeps its num_tickets). usable is kept process-wide (the same function every
 * time). Any thread that builds an SSL_CTX. */
int ticketkeys_ctx_setup(SSL_CTX *ctx, ticketkeys_usable_fn usable);

/* Starts fetching (nothing when cfg has no cluster.redis). cfg is borrowed until
 * ticketkeys_stop. Returns 0, or -1 (logged). */
int ticketkeys_start(struct event_base *base, const struct config *cfg);
/* Stops fetching and wipes the keys held (after the workers stopped). */
void ticketkeys_stop(void);

/* Pure: the epoch of time t (seconds) for rotation r (> 0) seconds, and whether a
 * key of epoch k may still decrypt at time t (t < (k + 2) * r), for the unit tests. */
long long ticketkeys_epoch(double t, int r);
int ticketkeys_alive(long long k, double t, int r);

#endif
