/* Gateway configuration (certgate.json), parsed with jansson into a plain struct.
 *
 * Relative paths in the file are resolved against the config file's directory,
 * so the whole PKI folder can move. Every field has a safe default except the ones
 * marked required. See README "Configuration" for the file format. */
#ifndef CERTGATE_CONFIG_H
#define CERTGATE_CONFIG_H
#include <stddef.h>
#include <stdint.h>

#include "cidr.h"
#include "strlist.h"


struct config_pkcs11 {
	char *module;         /* path to the PKCS#11 module (.so), required */
	char *token;          /* token label, required */
	char *pin_file;       /* user PIN read from this file (preferred) */
	char *pin_env;        /* or from this environment variable */
	char *softhsm2_conf;  /* optional: exported as SOFTHSM2_CONF before loading */
};

struct config_tls {
	char *cert;                 /* server certificate chain (PEM file), required */
	char *key;                  /* "pkcs11:..." URI, or a PEM file path (software key) */
	char *ca;                   /* CA bundle that client certificates must chain to, required */
	char *crl;                  /* CRL file (PEM); required unless crl_check is false */
	int crl_check;              /* default 1 */
	int allow_extractable_key;  /* default 0: refuse a token key with CKA_EXTRACTABLE */
	int session_tickets;        /* default 1 (TLS 1.3 tickets) */
	int min_version;            /* TLS1_2_VERSION (default) or TLS1_3_VERSION */
	int allow_shared_token;     /* default 0: with CONFIG_GATEWAY, refuse a ca.key in the
	                             * token of tls.key */
	/* "ocsp": client certificates whose AIA names an OCSP responder (ocsp.h) */
	int ocsp_mode;              /* CONFIG_OCSP_OFF (default), _SOFT or _HARD */
	int ocsp_cache_s;           /* how long a good answer stands, default 300 */
	int ocsp_timeout_ms;        /* one query, default 2000 */
};

enum {
	CONFIG_OCSP_OFF = 0,
	CONFIG_OCSP_SOFT,           /* no answer (down, timeout, garbage): accept */
	CONFIG_OCSP_HARD,           /* no answer: refuse */
};

/* Paths default to the pki-init layout under the config directory (ca/ca.pem,
 * ca/index.txt, ca/certs, tls.crl or ca/crl.pem, agents, ca-audit.jsonl, ca/tokens,
 * ca/ca.sock). */
struct config_ca {
	char *key;            /* "pkcs11:..." URI of the CA key, NULL when absent */
	/* "ca.pkcs11": the CA key's own token. Each field left out falls back to the
	 * top-level pkcs11 section, except the PIN: with ca.pkcs11 present its
	 * pin_file/pin_env are the CA's only (NULL: the URI's pin-source). */
	struct config_pkcs11 pkcs11;
	int has_pkcs11;       /* "ca.pkcs11" present */
	char *cert;           /* CA certificate (PEM) */
	char *db;             /* CA database, OpenSSL index.txt format */
	char *certs_dir;      /* copies of issued certificates, SERIAL.pem */
	char *crl;            /* where `ca crl` writes the CRL (normally == tls.crl) */
	char *agents_dir;     /* DIR/agents: per-agent cert.pem/key.pem/ca.pem */
	char *audit;          /* ca-audit.jsonl */
	char *trust_domain;   /* SPIFFE trust domain, default "certgate.local" */
	int crl_hours;        /* CRL nextUpdate distance, default 168 */
	int default_hours;    /* agent certificate lifetime, default 24 */
	int server_days;      /* server certificate lifetime, default 365 */
	int ca_days;          /* CA certificate lifetime, default 3650 */
	char *tokens_dir;     /* one-time enrollment tokens (hashes only), default ca/tokens */
	char *socket;         /* the CA service's Unix socket, default ca/ca.sock */
	int service_external; /* "service": "spawn" (0, default: the gateway starts
	                       * `certgate ca serve`) or "external" (1: run by the operator) */
	char *ocsp_url;       /* http(s) URL put in the AIA of issued certificates, or NULL */
	int renew_per_hour;   /* renewals per agent through the CA service, default 60 */
	int renew_burst;      /* default 10 */
};

/* "enroll": the EST listener (HTTPS, client certificates optional). */
struct config_enroll {
	char *listen_host;    /* NULL: no enrollment listener */
	uint16_t listen_port;
};

struct config_limits {
	int handshake_timeout_ms;        /* default 10000 */
	int header_timeout_ms;           /* default 10000 (slowloris) */
	int body_timeout_ms;             /* default 30000 */
	int idle_timeout_ms;             /* keep-alive idle, default 60000 */
	int upstream_connect_timeout_ms; /* default 5000 */
	int upstream_response_timeout_ms;/* time to response headers, default 60000 */
	int stream_idle_timeout_ms;      /* SSE/streaming idle limit, default 300000 */
	int grace_ms;                    /* shutdown grace, default 10000 */
	int max_connections;             /* 0 (default, "not set"): as many as the
	                                  * descriptor limit allows, at most 10000 */
	int max_connections_per_ip;      /* default 1000 */
	int max_header_bytes;            /* default 16384 */
	int max_header_count;            /* default 100 */
	long max_body_bytes;             /* default 4 MiB */
};

/* Exactly one of url (an HTTP upstream) and command (a stdio MCP server run per
 * session, see stdioproc.h) is set. */
struct config_upstream {
	char *url;            /* http://host:port/path or https://...; NULL with command */
	int tls;              /* 1 for https */
	char *host;           /* parsed from url */
	uint16_t port;
	char *path;           /* path prefix, "/" when none */
	char *ca;             /* for https upstreams: CA bundle (default: system store) */
	int pool_size;        /* idle keep-alive connections per worker, default 16 */
	/* stdio upstream ("command"): */
	char **command;       /* argv, NULL-terminated; NULL for an HTTP upstream. A
	                       * command[0] with a '/' is resolved against the config
	                       * directory; without one it is looked up in PATH at spawn */
	size_t ncommand;
	char **env;           /* "NAME=VALUE" from "env", NULL-terminated, or NULL */
	size_t nenv;
	int max_processes;    /* processes at once (all sessions), default 32 */
	int idle_timeout_ms;  /* a session's process ends after this long without a
	                       * message either way, default 300000 */
	/* "client_cert_header": how the certificate reaches the upstream */
	int client_cert_xfcc;     /* X-Forwarded-Client-Cert (default "xfcc") */
	int client_cert_rfc9440;  /* Client-Cert and Client-Cert-Chain ("rfc9440") */
};

/* "proxy_protocol": load balancers whose connections start with a PROXY v2 header. */
struct config_proxy_protocol {
	struct cidr *trusted;     /* those addresses must send one, others may not */
	size_t ntrusted;
};

/* "cluster": instances sharing session bindings, rate limits, revocations and the
 * identity map through one Redis (cluster.h). redis NULL: a single instance. */
struct config_cluster {
	char *redis;          /* "redis://HOST:PORT[/DB]" as written, or NULL */
	char *redis_host;     /* parsed from redis */
	int redis_port;       /* default 6379 */
	int redis_db;         /* default 0 */
	char *name;           /* this instance's name (logs, metrics); default the hostname */
	int session_ttl_s;    /* a shared session binding expires after this long without
	                       * use, default 86400 */
	int timeout_ms;       /* one Redis round trip waits at most this long, default 200 */
	int ticket_rotate_s;  /* shared TLS ticket keys rotate this often, default 3600
	                       * (ticketkeys.h; read at start) */
	char *user;           /* Redis ACL user for AUTH, or NULL (the default user) */
	char *password_file;  /* Redis password from this file ... */
	char *password_env;   /* ... or this environment variable; NULL/NULL: no AUTH
	                       * (read once at start, rconn_secret_load) */
};

/* MCP inspection options ("mcp"). */
struct config_mcp {
	int validate_arguments;   /* default 0: check tools/call arguments against the
	                           * tool's inputSchema (schema.h, tooltab.h) */
};

/* Token signatures off the event loop (signer.h): a pool of threads runs the
 * private-key operations while the handshake waits in an OpenSSL async job. */
struct config_signer {
	int async;            /* default 1; 0: sign on the worker thread (blocking) */
	int threads;          /* signer threads, default 8 (the token's concurrency) */
	int queue;            /* signs waiting for a thread beyond which a handshake is
	                       * refused, default 256 (0: refuse when all threads are busy) */
	int timeout_ms;       /* a handshake waits at most this long for its signature,
	                       * default 5000 */
};

struct config {
	char *path;           /* the file this came from */
	char *dir;            /* its directory, for relative paths */

	char *listen_host;    /* default 127.0.0.1 */
	uint16_t listen_port; /* default 8443 */
	char *admin_host;     /* NULL: admin listener disabled ("admin" absent, null or "") */
	uint16_t admin_port;
	int workers;          /* 0 = one per core */

	struct config_upstream upstream;
	struct config_pkcs11 pkcs11;
	struct config_tls tls;
	struct config_ca ca;
	struct config_limits limits;
	struct config_signer signer;
	struct config_mcp mcp;
	struct config_enroll enroll;
	struct config_proxy_protocol proxy_protocol;
	struct config_cluster cluster;

	char *identity_map;   /* agents.json, required */
	char *audit_file;     /* NULL: stderr ("audit.file" absent or "-") */
	int audit_fail_open;  /* 0 (default): refuse requests when the audit log cannot be written */

	double rate_per_second; /* default per-agent rate when the map gives none; default 50 */
	double rate_burst;      /* default 100 */
	int hsts_max_age;       /* default 31536000 */
};

/* flags for config_load/config_parse */
#define CONFIG_CHECK_FILES 0x1  /* files the gateway reads must exist (serve, check) */
#define CONFIG_GATEWAY     0x2  /* the network-facing gateway (serve, check): refuse a CA
                                 * key in the server key's token unless
                                 * tls.allow_shared_token */

/* Reads and validates PATH as a whole. On success *out is a new config (free with
 * config_free) and 0 is returned. On failure -1 is returned, *out is NULL and every
 * problem found is appended to errs as "PATH:LINE: $.json.path: message" (LINE is 0
 * when unknown). Without CONFIG_CHECK_FILES, files are not required to exist yet
 * (the `ca` commands create them). Does not touch the token. */
int config_load(const char *path, int flags, struct config **out, struct strlist *errs);

/* Same, from a string; name is used in messages, dir to resolve relative paths. */
int config_parse(const char *text, size_t len, const char *name, const char *dir,
    int flags, struct config **out, struct strlist *errs);

void config_free(struct config *cfg);

struct p11_defaults;
/* The token defaults for the CA key: ca.pkcs11 over pkcs11 (see struct config_ca).
 * d borrows cfg's strings. */
void config_ca_p11(const struct config *cfg, struct p11_defaults *d);
/* The same for the server key (the pkcs11 section). */
void config_tls_p11(const struct config *cfg, struct p11_defaults *d);

/* The line (1-based) where the value at JSON path (e.g. "$.tls.key", "$.a[2]",
 * "$[\"odd key\"]") starts in text, or the line of its nearest ancestor present
 * in the text; 0 when unknown. Pure function (exposed for tests). */
int config_line_of(const char *text, size_t len, const char *path);

#endif
