/* What the `certgate ca` commands share (ca.c, casetup.c, caagent.c): their parsed
 * arguments, their error output ("certgate ca SUB: message" on stderr), and opening
 * the CA for a change. Not thread-safe (the commands are single-threaded). */
#ifndef CERTGATE_CACLI_H
#define CERTGATE_CACLI_H
#include <stddef.h>
#include <time.h>

struct cadb;
struct castore;
struct config;

struct cacli_args {
	const char *config;
	const char *subject;
	int force;
	const char **dns;
	size_t ndns;
	const char **ip;
	size_t nip;
	const char *agent;
	const char **roles;
	size_t nroles;
	const char **scopes;
	size_t nscopes;
	int hours;              /* crl --hours; 0: default */
	long lifetime;          /* seconds (--lifetime or --hours); 0: default */
	long ttl;               /* seconds; 0: default */
	const char *csr;
	const char *out;
	const char *serial;
	const char *reason;
	int json;
	int agents_only;
	int revoke_old;
	int watch_fd;           /* -1: none */
	int intermediate;       /* init: a request instead of a self-signed CA */
	const char *cert;       /* import */
	const char *chain;      /* import */
	const char *crl;        /* import: corporate CRLs */
};

/* The program name in messages ("certgate ca issue"); prog is borrowed. */
void cacli_set_prog(const char *prog);
const char *cacli_prog(void);
/* "PROG: message" on stderr. */
void cacli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Checks --agent: 0, or 2 (usage error printed). */
int cacli_need_agent(const struct cacli_args *a);
/* --lifetime, else ca.default_hours, in seconds. */
long cacli_lifetime(const struct config *cfg, const struct cacli_args *a);
/* Takes the CA lock, opens the CA with its key (under the lock), loads the database
 * and reconciles an interrupted issuance. 0, or -1 (printed; nothing held). */
int cacli_begin(struct config *cfg, struct castore *s, struct cadb *db);
void cacli_end(struct castore *s, struct cadb *db);
/* Index of the newest valid row of agent id (latest expiry), or -1. */
long cacli_newest_valid(const struct cadb *db, const char *id, time_t now);

#endif
