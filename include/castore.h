/* The CA's state on disk, changed consistently: the CA certificate and key, the
 * database (cadb.h), the archive of issued certificates (ca.certs_dir/SERIAL.pem),
 * the identity map (mapedit.h), the CRL and its number, the audit trail. Used by the
 * `certgate ca` commands and by the CA service (caserve.h); both hold the CA lock
 * for every change.
 *
 * Crash safety of an issuance: the writes are ordered so that the database row is
 * the commit point. Before it: the one-time token is marked used (enrollment), the
 * certificate is signed, the agent's files written (commands), the certificate
 * archived, the map updated and the audit line appended. A kill at any step leaves
 * the database, map and archive consistent: every valid row has its archived
 * certificate and map entry; an archived certificate without a row (signed, never
 * committed, never handed out) is found by castore_reconcile and recorded as
 * revoked, so every certificate the CA ever signed is in the database and the CRL;
 * a token marked used stays used.
 *
 * Not thread-safe: one struct castore per thread. Functions return 0/-1 with a
 * message in err unless stated. */
#ifndef CERTGATE_CASTORE_H
#define CERTGATE_CASTORE_H
#include <stddef.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "cabundle.h"
#include "caaudit.h"
#include "cadb.h"
#include "mapedit.h"

struct config;

/* Longest agent certificate: 365 days; shortest: 2 minutes. */
#define CASTORE_MAX_LIFETIME	(8760L * 3600)
#define CASTORE_MIN_LIFETIME	120L

struct castore {
	const struct config *cfg;   /* borrowed */
	X509 *cert;                 /* the active CA certificate (the first of ca.cert) */
	EVP_PKEY *key;              /* its key in the CA token; NULL without with_key */
	struct cabundle b;          /* ca.cert whole (cabundle.h) */
	STACK_OF(X509_CRL) *others; /* CRLs of the other trusted certgate CAs, signed
	                             * by castore_crl_sign for castore_crl_publish */
	char fp[65];                /* SHA-256 of the CA certificate's DER, lowercase hex */
	int lock;                   /* CA lock descriptor, -1 when not held */
	int reconciled;             /* castore_reconcile ran in this process */
};

/* Reads the CA certificate bundle and, with with_key, logs into the CA token
 * (config_ca_p11) and loads the active CA's key: ca.key, or after a rollover the
 * generation of it whose public key is the active certificate's (castore_key_uri). A lock already taken on s (s->cfg == cfg, see
 * castore_init) is kept: SoftHSM fails when processes open it concurrently, so every
 * process opens the CA token under the CA lock. */
int castore_open(struct castore *s, const struct config *cfg, int with_key, char *err,
    size_t errlen);
/* An empty store for cfg (no I/O), for castore_lock before castore_open. */
void castore_init(struct castore *s, const struct config *cfg);
void castore_close(struct castore *s);

/* Takes / releases the CA lock. */
int castore_lock(struct castore *s, char *err, size_t errlen);
void castore_unlock(struct castore *s);

/* Loads the database (an empty one when the file does not exist yet). */
int castore_load_db(struct castore *s, struct cadb *db, char *err, size_t errlen);

/* Signs a CRL of db valid for seconds (in the token) without writing anything, and
 * writes one: ca.crl plus the CRL number advanced. Needs the key. ca.crl is a
 * bundle: the active CA's CRL first, then one per other trusted certgate CA (signed
 * with its own key, found in the token), then the CRLs of a corporate chain kept
 * in CASTORE_UPSTREAM_CRL next to ca.crl (`certgate ca import --crl`). */
int castore_crl_sign(struct castore *s, const struct cadb *db, long seconds,
    X509_CRL **crl, char **number_hex, char *err, size_t errlen);
int castore_crl_publish(struct castore *s, X509_CRL *crl, char *err, size_t errlen);
/* castore_crl_sign + castore_crl_publish. */
int castore_crl_refresh(struct castore *s, const struct cadb *db, long seconds,
    char **number_hex, char *err, size_t errlen);
/* The corporate CRLs appended to ca.crl: this file in the directory of ca.crl. */
#define CASTORE_UPSTREAM_CRL	"upstream-crl.pem"
char *castore_upstream_crl_path(const struct config *cfg);
/* The URI of generation gen (1, 2, ...) of the CA key: gen 1 is ca.key, gen N its
 * object= label with "-gN" appended. Malloc'd, or NULL (no object= in ca.key). */
char *castore_key_uri(const struct config *cfg, int gen);
/* Finds the key of CA certificate x in the CA token among the generations of
 * ca.key; *key and (may be NULL) *gen. -1 with err when none matches. */
int castore_find_key(const struct config *cfg, X509 *x, EVP_PKEY **key, int *gen,
    char *err, size_t errlen);
/* The first generation that does not exist in the token yet. -1 with err. */
int castore_next_gen(const struct config *cfg, char *err, size_t errlen);
/* Writes the CRL number file (init). */
int castore_crlnumber_init(struct castore *s, char *err, size_t errlen);

/* Archives x as certs_dir/SERIAL.pem (0644). */
int castore_archive(struct castore *s, X509 *x, const char *serial, char *err, size_t errlen);
/* A random serial that is neither in db (may be NULL) nor archived; *hex is
 * OPENSSL_malloc'd. NULL with err. */
ASN1_INTEGER *castore_serial(struct castore *s, const struct cadb *db, char **hex,
    char *err, size_t errlen);

/* One agent certificate. */
struct castore_issue {
	const char *agent;               /* id: subject CN=ID, SAN spiffe://TD/agent/ID */
	EVP_PKEY *pubkey;                /* borrowed */
	long seconds;                    /* CASTORE_MIN_LIFETIME..CASTORE_MAX_LIFETIME */
	const struct mapedit_agent *map; /* add/update the agent in the map, or NULL */
	/* `ca issue` / `ca renew`: write OUT/cert.pem (the leaf and the CA certificates
	 * up to the root, cabundle.h chain) and OUT/ca.pem (the roots: every trusted one
	 * during a rollover); OUT/key.pem from out_key, else a stale key.pem is removed
	 * unless keep_key. */
	const char *out_dir;
	EVP_PKEY *out_key;
	int keep_key;
	/* Called with the chosen serial after every check and before the signature
	 * (enrollment marks its token used here); -1 stops the issuance. */
	int (*before_sign)(void *arg, const char *serial, char *err, size_t errlen);
	void *arg;
	/* Where before_sign staged its write (e.g. catoken_update_staged), and the
	 * directory of it, or NULL: committed and the directory fsync'd with the
	 * others of the batch (cabatch.h) before anything is signed. */
	struct file_stage *before_sign_stage;
	const char *before_sign_dir;
	struct caaudit_rec audit;        /* what/agent/via/peer/token/old_serial; serial,
	                                  * subject and not_after are filled in */
};

struct castore_issued {
	X509 *cert;                      /* owned by the caller (X509_free) */
	char serial[80];
	time_t not_after;
};

/* Issues under the lock with db loaded; db gains the row (and is saved). A batch of
 * one (cabatch.h). */
int castore_issue(struct castore *s, struct cadb *db, const struct castore_issue *in,
    struct castore_issued *out, char *err, size_t errlen);

/* For cabatch.c. castore_archive staged (file.h, file_stage_write): the caller
 * commits the stage and fsyncs ca.certs_dir, once for several certificates;
 * castore_write_out writes in->out_dir's key.pem, cert.pem and ca.pem for x.
 * 0/-1 err. */
struct file_stage;
int castore_archive_stage(struct castore *s, X509 *x, const char *serial,
    struct file_stage *stage, char *err, size_t errlen);
int castore_write_out(struct castore *s, const struct castore_issue *in, X509 *x,
    char *err, size_t errlen);

/* Records every archived certificate that has no row (see above) as revoked
 * (cessationOfOperation), saves db and re-signs the CRL when anything changed.
 * Needs the lock and the key; runs once per process (later calls return 0).
 * *n (may be NULL) receives the number of certificates recorded. */
int castore_reconcile(struct castore *s, struct cadb *db, int *n, char *err, size_t errlen);

/* Test hook: when CERTGATE_CA_TEST_CRASH names step, the process SIGKILLs itself
 * there. Steps: before_sign, after_sign, after_archive, after_map, after_audit,
 * after_commit. Not for production use. */
void castore_crashpoint(const char *step);

#endif
