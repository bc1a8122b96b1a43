/* The gateway process (daemon.h): start-up in dependency order, the main loop and the
 * shutdown in reverse order.
 *
 * The main thread runs signals, the one-second tick (reload on file change, audit log
 * rotation, CRL expiry warnings) and the admin listener; connections live on the
 * workers (worker.h). PKCS#11 is not fork-safe, so this process never forks and never
 * changes user after opening the token. */
#include "daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <unistd.h>

#include <stdarg.h>
#include <time.h>

#include <event2/event.h>
#include <event2/thread.h>
#include <openssl/evp.h>
#include <systemd/sd-daemon.h>

#include "activity.h"
#include "admin.h"
#include "audit.h"
#include "caproc.h"
#include "clusterpush.h"
#include "rconn.h"
#include "ticketkeys.h"
#include "conn.h"
#include "enroll.h"
#include "log.h"
#include "ocspcache.h"
#include "p11.h"
#include "proxy.h"
#include "reconf.h"
#include "signer.h"
#include "state.h"
#include "stdiohub.h"
#include "tls.h"
#include "worker.h"

#define DAEMON_HEALTH_INTERVAL_MS	5000

/* Descriptors a connection may hold at once: the client socket, and either the
 * async job's eventfd (only while its handshake waits for a signature) or the
 * upstream socket of its request in flight (only after the handshake): never
 * both. Idle pooled upstream connections are counted per worker. */
#define DAEMON_FDS_PER_CONN	2
#define DAEMON_FDS_RESERVED	256	/* listeners, token files, logs, admin */
/* limits.max_connections when the configuration does not set it, if the descriptor
 * limit allows that many (else as many as it allows, without a warning). */
#define DAEMON_AUTO_MAX_CONNECTIONS	10000

static struct {
	struct config *cfg;
	struct event_base *base;
	struct event *sig_hup, *sig_term, *sig_int, *sig_usr1, *tick;
	unsigned ticks;
	int stopping;
	struct caproc *ca;              /* the CA service (enrollment), or NULL */
	char pidfile[PATH_MAX];
	int pidfd;                      /* held open and locked while running */
	struct signer_pool *signer;     /* NULL: token signatures block the worker */
} d = { .pidfd = -1 };

/* ---- service manager ---- */

/* systemd's Type=notify protocol (sd_notify(3)): READY=1 once serving, RELOADING=1
 * ... READY=1 around a SIGHUP reload, STOPPING=1 at shutdown. Without NOTIFY_SOCKET
 * (not started by systemd) nothing is sent. */
static void __attribute__((format(printf, 1, 2)))
daemon_notify(const char *fmt, ...)
{
	char msg[256];
	va_list ap;
	int r;

	if (getenv("NOTIFY_SOCKET") == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if ((r = sd_notify(0, msg)) < 0)
		log_warn("sd_notify(%s): %s", msg, strerror(-r));
}

static unsigned long long
daemon_monotonic_usec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000;
}

/* ---- main loop ---- */

/* certgate.json first (its live keys, e.g. tls.min_version, shape the SSL_CTX the
 * state reload builds), then the identity map, CRL and certificates. A rejected
 * certgate.json does not stop the files from reloading: a revocation must not wait
 * for a fixed configuration. */
static void
daemon_reload(const char *why)
{
	(void)reconf_reload(why);
	if (state_reload(why) == 0)
		worker_wake();
}

static void
daemon_sighup_cb(evutil_socket_t sig, short what, void *arg)
{
	log_info("SIGHUP: reloading");
	daemon_notify("RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading",
	    daemon_monotonic_usec());
	daemon_reload("SIGHUP");
	p11_health_reset();     /* a fixed PIN file may be tried again */
	if (audit_reopen() == -1)
		log_err("audit log re-open failed; still writing to the previous file");
	daemon_notify("READY=1\nSTATUS=serving (reloaded: generation %llu)",
	    (unsigned long long)state_generation());
}

/* logrotate's postrotate: the audit log was moved away, start a new one now. */
static void
daemon_sigusr1_cb(evutil_socket_t sig, short what, void *arg)
{
	if (audit_reopen() == -1)
		log_err("SIGUSR1: audit log re-open failed; still writing to the previous file");
	else
		log_info("SIGUSR1: audit log re-opened");
}

static void
daemon_sigterm_cb(evutil_socket_t sig, short what, void *arg)
{
	if (d.stopping) {
		log_info("signal %d: already shutting down", (int)sig);
		return;
	}
	d.stopping = 1;
	daemon_notify("STOPPING=1\nSTATUS=finishing in-flight requests");
	log_info("signal %d: shutting down (finishing in-flight requests, up to %d ms)",
	    (int)sig, d.cfg->limits.grace_ms);
	worker_stop();
	event_base_loopbreak(d.base);
}

static void
daemon_tick_cb(evutil_socket_t fd, short what, void *arg)
{
	uint64_t gen = state_generation();

	if (reconf_file_changed())
		daemon_reload("certgate.json changed");
	state_check_files();
	if (state_generation() != gen)
		worker_wake();
	(void)audit_check_file();
	if (d.ticks++ % 60 == 0)
		state_check_crl_expiry();
	/* OCSP answers nobody asked about for 10 minutes (the sweep asks once a second
	 * for every open connection) */
	if (d.ticks % 60 == 0)
		ocspcache_expire(time(NULL) - 600);
}

static int
daemon_events(void)
{
	struct timeval sec = { 1, 0 };

	/* libevent restores, when its signal events are freed at shutdown, the handlers
	 * it found when they were added: with SIG_IGN there, a second SIGTERM during the
	 * shutdown (a supervisor repeating itself) cannot kill the process half-way. */
	signal(SIGTERM, SIG_IGN);
	signal(SIGINT, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	d.sig_hup = evsignal_new(d.base, SIGHUP, daemon_sighup_cb, NULL);
	d.sig_usr1 = evsignal_new(d.base, SIGUSR1, daemon_sigusr1_cb, NULL);
	d.sig_term = evsignal_new(d.base, SIGTERM, daemon_sigterm_cb, NULL);
	d.sig_int = evsignal_new(d.base, SIGINT, daemon_sigterm_cb, NULL);
	d.tick = event_new(d.base, -1, EV_PERSIST, daemon_tick_cb, NULL);
	if (d.sig_hup == NULL || d.sig_term == NULL || d.sig_int == NULL || d.tick == NULL ||
	    d.sig_usr1 == NULL || evsignal_add(d.sig_usr1, NULL) == -1 ||
	    evsignal_add(d.sig_hup, NULL) == -1 || evsignal_add(d.sig_term, NULL) == -1 ||
	    evsignal_add(d.sig_int, NULL) == -1 || event_add(d.tick, &sec) == -1) {
		log_err("cannot set up signal handling");
		return -1;
	}
	return 0;
}

static void
daemon_events_free(void)
{
	if (d.sig_hup)
		event_free(d.sig_hup);
	if (d.sig_term)
		event_free(d.sig_term);
	if (d.sig_int)
		event_free(d.sig_int);
	if (d.sig_usr1)
		event_free(d.sig_usr1);
	if (d.tick)
		event_free(d.tick);
	d.sig_hup = d.sig_term = d.sig_int = d.sig_usr1 = d.tick = NULL;
}

/* ---- pid file ---- */

/* DIR/certgate.pid, locked for as long as the gateway runs: a second gateway on the
 * same folder is refused instead of replacing the first one's pid (scripts signal
 * whatever pid the file names). Returns 0, or -1 when another gateway holds it. */
static int
daemon_pidfile_lock(const struct config *cfg)
{
	char buf[32];
	ssize_t n;
	int fd;

	if (cfg->dir == NULL)
		return 0;
	snprintf(d.pidfile, sizeof(d.pidfile), "%s/certgate.pid", cfg->dir);
	if ((fd = open(d.pidfile, O_RDWR | O_CREAT | O_CLOEXEC, 0644)) == -1) {
		log_warn("cannot open %s: %s (scripts cannot signal this gateway)",
		    d.pidfile, strerror(errno));
		d.pidfile[0] = '\0';
		return 0;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) == -1) {
		n = read(fd, buf, sizeof(buf) - 1);
		buf[n > 0 ? n : 0] = '\0';
		buf[strcspn(buf, "\n")] = '\0';
		log_err("another gateway (pid %s) runs with %s: one gateway per state folder "
		    "(give each instance its own folder)", buf[0] ? buf : "?", d.pidfile);
		close(fd);
		d.pidfile[0] = '\0';
		return -1;
	}
	d.pidfd = fd;
	return 0;
}

static void
daemon_pidfile_write(void)
{
	char buf[32];
	int n;

	if (d.pidfd == -1)
		return;
	n = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
	if (ftruncate(d.pidfd, 0) == -1 || pwrite(d.pidfd, buf, (size_t)n, 0) != n)
		log_warn("cannot write %s: %s (scripts cannot signal this gateway)",
		    d.pidfile, strerror(errno));
}

static void
daemon_pidfile_remove(void)
{
	if (d.pidfd == -1)
		return;
	/* Still locked by us: nobody else can have replaced it. */
	(void)unlink(d.pidfile);
	close(d.pidfd);
	d.pidfd = -1;
}

/* ---- keys and signatures ---- */

/* Token signatures off the event loop (signer.h), when configured and possible. */
static int
daemon_signer_start(const struct config *cfg, EVP_PKEY *key)
{
	/* Also in synchronous mode: the key signs in per-thread sessions of its own. */
	if (p11_key_enable_async(key, NULL) == -1) {
		log_info("the server key is not a token key: signing stays synchronous");
		return 0;
	}
	if (!cfg->signer.async) {
		log_info("signer.async is false: token signatures run on the worker threads "
		    "and block their event loop");
		return 0;
	}
	if (!signer_async_capable()) {
		log_warn("OpenSSL async jobs are not available on this platform: token "
		    "signatures run synchronously on the worker threads");
		return 0;
	}
	if ((d.signer = signer_pool_new(cfg->signer.threads, cfg->signer.queue,
	    cfg->signer.timeout_ms)) == NULL)
		return -1;
	if (p11_key_enable_async(key, d.signer) == -1) {
		signer_pool_free(d.signer);
		d.signer = NULL;
	}
	return 0;
}

static void
daemon_signer_stop(EVP_PKEY *key)
{
	if (d.signer == NULL)
		return;
	(void)p11_key_enable_async(key, NULL);
	signer_pool_free(d.signer);
	d.signer = NULL;
}

/* Raises the descriptor limit to the hard limit and caps max_connections to what it
 * allows. Running out of descriptors is worse than refusing a connection: SoftHSM
 * re-opens its token files on every operation and fails every signature without
 * them, so the budget is enforced here rather than discovered at EMFILE. */
static void
daemon_fd_budget(struct config *cfg)
{
	struct rlimit rl;
	rlim_t need, cap, fixed;
	int autoset = cfg->limits.max_connections <= 0;
	int want = autoset ? DAEMON_AUTO_MAX_CONNECTIONS : cfg->limits.max_connections;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1) {
		log_warn("getrlimit(RLIMIT_NOFILE): %s", strerror(errno));
		if (autoset)
			cfg->limits.max_connections = want;
		return;
	}
	fixed = DAEMON_FDS_RESERVED + (rlim_t)(cfg->upstream.pool_size > 0 ?
	    cfg->upstream.pool_size : 0) * (rlim_t)worker_count(cfg);
	need = (rlim_t)want * DAEMON_FDS_PER_CONN + fixed;
	if (rl.rlim_max < need) {
		/* Privileged (CAP_SYS_RESOURCE) it may raise the hard limit too, as
		 * nginx's worker_rlimit_nofile does; otherwise EPERM, and the soft limit
		 * goes up to the hard one below. */
		struct rlimit raised = { need, need };

		if (setrlimit(RLIMIT_NOFILE, &raised) == 0)
			rl = raised;
	}
	if (rl.rlim_cur < need && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max < need ? rl.rlim_max : need;
		if (setrlimit(RLIMIT_NOFILE, &rl) == -1)
			log_warn("setrlimit(RLIMIT_NOFILE, %llu): %s",
			    (unsigned long long)rl.rlim_cur, strerror(errno));
		(void)getrlimit(RLIMIT_NOFILE, &rl);
	}
	if (rl.rlim_cur >= need) {
		cfg->limits.max_connections = want;
		return;
	}
	cap = rl.rlim_cur > fixed + DAEMON_FDS_PER_CONN ?
	    (rl.rlim_cur - fixed) / DAEMON_FDS_PER_CONN : 1;
	cfg->limits.max_connections = (int)cap;
	/* Not set in the configuration: the descriptor limit is the operator's choice,
	 * and nothing they asked for is being refused. */
	if (autoset) {
		log_info("limits.max_connections not set: serving at most %llu connections, "
		    "what the descriptor limit (%llu) allows", (unsigned long long)cap,
		    (unsigned long long)rl.rlim_cur);
		return;
	}
	log_warn("limits.max_connections %d needs %llu descriptors but the limit is %llu: "
	    "serving at most %llu connections (raise the limit: `ulimit -n %llu` in the "
	    "shell, LimitNOFILE= in the systemd unit; or lower limits.max_connections)",
	    want, (unsigned long long)need, (unsigned long long)rl.rlim_cur,
	    (unsigned long long)cap, (unsigned long long)need);
}

/* ---- serve ---- */

int
daemon_serve(struct config *cfg)
{
	struct worker_listener ls[2];
	EVP_PKEY *key = NULL;
	char err[512];
	int rc = 1, state_ok = 0, audit_ok = 0, nls = 1;

	d.cfg = cfg;
	signal(SIGPIPE, SIG_IGN);
	/* Until its handler exists, a logrotate SIGUSR1 must not kill a starting gateway. */
	signal(SIGUSR1, SIG_IGN);
	if (daemon_pidfile_lock(cfg) == -1)
		return 1;
	daemon_fd_budget(cfg);
	if (evthread_use_pthreads() == -1) {
		log_err("evthread_use_pthreads failed");
		goto fail;
	}
	if (tls_load_server_key(cfg, &key) == -1)
		goto fail;
	if (daemon_signer_start(cfg, key) == -1)
		goto fail;
	/* Token health off the main loop (p11.h): /healthz never waits for a token. */
	if (p11_monitor_start(DAEMON_HEALTH_INTERVAL_MS) == -1)
		goto fail;
	if (state_init(cfg, key) == -1)
		goto fail;
	state_ok = 1;
	if (reconf_init(cfg) == -1)
		goto fail;
	if (audit_open(cfg->audit_file) == -1)
		goto fail;
	audit_ok = 1;
	if ((d.base = event_base_new()) == NULL) {
		log_err("event_base_new failed");
		goto fail;
	}
	if (daemon_events() == -1)
		goto fail;
	if (admin_start(d.base, cfg) == -1)
		goto fail;
	if (cfg->cluster.redis != NULL && rconn_secret_load(&cfg->cluster, err, sizeof(err)) == -1) {
		log_err("%s", err);
		goto fail;
	}
	if (clusterpush_start(d.base, cfg) == -1)
		goto fail;
	if (ticketkeys_start(d.base, cfg) == -1)
		goto fail;
	if (cfg->upstream.command != NULL && stdiohub_start(cfg) == -1)
		goto fail;
	/* Enrollment: the CA key is used by a process of its own (caproc.h); it is
	 * started after the server key was loaded (SoftHSM refuses two processes
	 * opening the token at the same moment). */
	if (cfg->enroll.listen_host != NULL) {
		if ((d.ca = caproc_start(d.base, cfg, NULL, err, sizeof(err))) == NULL ||
		    caproc_wait_ready(d.ca, 15000, err, sizeof(err)) == -1) {
			log_err("the CA service did not start: %s", err);
			goto fail;
		}
	}
	if (enroll_init(cfg, d.ca != NULL) == -1)
		goto fail;
	ls[0].host = cfg->listen_host;
	ls[0].port = cfg->listen_port;
	ls[0].app = &proxy_app;
	if (cfg->enroll.listen_host != NULL) {
		ls[1].host = cfg->enroll.listen_host;
		ls[1].port = cfg->enroll.listen_port;
		ls[1].app = &enroll_app;
		nls = 2;
	}
	if (worker_start(cfg, ls, nls, d.signer != NULL) == -1)
		goto fail;
	daemon_pidfile_write();
	if (nls == 2)
		log_info("enrollment (EST, OCSP) on https://%s:%u", cfg->enroll.listen_host,
		    (unsigned)cfg->enroll.listen_port);
	log_info("certgate %s listening on %s:%u (%d workers), upstream %s", CERTGATE_VERSION,
	    cfg->listen_host, (unsigned)cfg->listen_port, worker_count(cfg),
	    cfg->upstream.url ? cfg->upstream.url : cfg->upstream.command != NULL ?
	    cfg->upstream.command[0] : "-");
	daemon_notify("READY=1\nSTATUS=serving on %s:%u\nMAINPID=%ld", cfg->listen_host,
	    (unsigned)cfg->listen_port, (long)getpid());
	event_base_dispatch(d.base);
	rc = 0;
fail:
	worker_join();
	stdiohub_stop();
	enroll_shutdown();
	caproc_stop(d.ca);
	d.ca = NULL;
	/* Every handshake is over: no job waits for the pool any more. */
	daemon_signer_stop(key);
	admin_stop();
	clusterpush_stop();
	ticketkeys_stop();
	rconn_secret_wipe();
	daemon_events_free();
	if (d.base != NULL)
		event_base_free(d.base);
	d.base = NULL;
	daemon_pidfile_remove();
	p11_monitor_stop();
	reconf_shutdown();
	if (state_ok)
		state_shutdown();
	activity_shutdown();
	if (audit_ok)
		audit_close();
	conn_shutdown();
	ocspcache_clear();
	EVP_PKEY_free(key);
	tls_shutdown();
	p11_shutdown();
	if (rc == 0)
		log_info("stopped");
	return rc;
}
