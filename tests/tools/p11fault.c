/* p11fault: a PKCS#11 module for tests that forwards every call to a real module
 * and injects faults into signing, so the gateway's behaviour with a failing, slow
 * or saturated HSM can be tested without one.
 *
 * Environment:
 *   P11FAULT_MODULE   the real module (default /usr/lib/softhsm/libsofthsm2.so)
 *   P11FAULT_CONTROL  control file, re-read at most every 100 ms; absent or empty
 *                     means pass-through. One "key=value" per line, '#' comments:
 *     sign_error=CKR_DEVICE_ERROR | CKR_SESSION_HANDLE_INVALID |
 *                CKR_TOKEN_NOT_PRESENT | any CKR_ name below | a number (0x..)
 *                C_SignInit, C_Sign, C_SignUpdate and C_SignFinal fail with it
 *     sign_delay_ms=N      C_Sign and C_SignFinal take N ms longer
 *     sign_concurrency=K   at most K C_Sign/C_SignFinal calls run at once (the
 *                          delay included); callers beyond K wait. 0: no cap
 *     token_error=CKR_...  C_GetSessionInfo, C_OpenSession, C_Login and
 *                          C_GetTokenInfo fail with it ("token unplugged")
 *   P11FAULT_STATS    optional file rewritten after every C_Sign/C_SignFinal and
 *                     every failed C_SignInit with "signs=N failed=N max_concurrent=N":
 *                     signatures attempted (C_Sign/C_SignFinal), operations that
 *                     failed (at C_SignInit or at the signature), the most
 *                     signatures ever in flight at once
 *
 * The module hands out a copy of the real CK_FUNCTION_LIST with the sign entry
 * points replaced; everything else goes straight to the real module. */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <p11-kit/pkcs11.h>

#define P11FAULT_DEFAULT_MODULE	"/usr/lib/softhsm/libsofthsm2.so"
#define P11FAULT_RELOAD_NS	(100 * 1000000LL)

struct fault_ctl {
	CK_RV sign_error;       /* CKR_OK: no injected sign failure */
	CK_RV token_error;      /* CKR_OK: token present */
	long delay_ms;
	long concurrency;       /* 0: unlimited */
};

static pthread_once_t fault_once = PTHREAD_ONCE_INIT;
static CK_RV fault_init_rv = CKR_GENERAL_ERROR;
static CK_FUNCTION_LIST *fault_real;
static CK_FUNCTION_LIST fault_list;

/* Guards the cached control values, the semaphore and the counters. */
static pthread_mutex_t fault_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t fault_cv = PTHREAD_COND_INITIALIZER;
static struct fault_ctl fault_cur;
static long long fault_last_read;       /* monotonic ns, 0 = never */
static long fault_active, fault_max_active;
static unsigned long fault_signs, fault_failed;

static const struct {
	const char *name;
	CK_RV rv;
} fault_codes[] = {
	{ "CKR_OK", CKR_OK },
	{ "CKR_GENERAL_ERROR", CKR_GENERAL_ERROR },
	{ "CKR_FUNCTION_FAILED", CKR_FUNCTION_FAILED },
	{ "CKR_DEVICE_ERROR", CKR_DEVICE_ERROR },
	{ "CKR_DEVICE_MEMORY", CKR_DEVICE_MEMORY },
	{ "CKR_DEVICE_REMOVED", CKR_DEVICE_REMOVED },
	{ "CKR_HOST_MEMORY", CKR_HOST_MEMORY },
	{ "CKR_SESSION_HANDLE_INVALID", CKR_SESSION_HANDLE_INVALID },
	{ "CKR_SESSION_CLOSED", CKR_SESSION_CLOSED },
	{ "CKR_TOKEN_NOT_PRESENT", CKR_TOKEN_NOT_PRESENT },
	{ "CKR_KEY_HANDLE_INVALID", CKR_KEY_HANDLE_INVALID },
	{ "CKR_OBJECT_HANDLE_INVALID", CKR_OBJECT_HANDLE_INVALID },
	{ "CKR_USER_NOT_LOGGED_IN", CKR_USER_NOT_LOGGED_IN },
	{ "CKR_MECHANISM_INVALID", CKR_MECHANISM_INVALID },
	{ "CKR_CRYPTOKI_NOT_INITIALIZED", CKR_CRYPTOKI_NOT_INITIALIZED },
};

static long long
fault_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Parses a CKR_ name or a number; unknown names become CKR_GENERAL_ERROR so a
 * typo in a test still injects a failure rather than silently passing. */
static CK_RV
fault_parse_rv(const char *s)
{
	char *end;
	unsigned long v;
	size_t i;

	for (i = 0; i < sizeof(fault_codes) / sizeof(fault_codes[0]); i++)
		if (strcmp(s, fault_codes[i].name) == 0)
			return fault_codes[i].rv;
	errno = 0;
	v = strtoul(s, &end, 0);
	if (errno == 0 && end != s && *end == '\0')
		return v;
	fprintf(stderr, "p11fault: unknown return code '%s', using CKR_GENERAL_ERROR\n", s);
	return CKR_GENERAL_ERROR;
}

static void
fault_parse_line(struct fault_ctl *c, char *line)
{
	char *eq, *key, *val, *p;

	if ((p = strchr(line, '#')) != NULL)
		*p = '\0';
	if ((eq = strchr(line, '=')) == NULL)
		return;
	*eq = '\0';
	key = line;
	val = eq + 1;
	while (*key == ' ' || *key == '\t')
		key++;
	for (p = eq; p > key && (p[-1] == ' ' || p[-1] == '\t'); p--)
		p[-1] = '\0';
	while (*val == ' ' || *val == '\t')
		val++;
	for (p = val + strlen(val); p > val && strchr(" \t\r\n", p[-1]) != NULL; p--)
		p[-1] = '\0';
	if (strcmp(key, "sign_error") == 0)
		c->sign_error = *val ? fault_parse_rv(val) : CKR_OK;
	else if (strcmp(key, "token_error") == 0)
		c->token_error = *val ? fault_parse_rv(val) : CKR_OK;
	else if (strcmp(key, "sign_delay_ms") == 0)
		c->delay_ms = strtol(val, NULL, 10);
	else if (strcmp(key, "sign_concurrency") == 0)
		c->concurrency = strtol(val, NULL, 10);
	else if (*key != '\0')
		fprintf(stderr, "p11fault: unknown control key '%s'\n", key);
	if (c->delay_ms < 0)
		c->delay_ms = 0;
	if (c->concurrency < 0)
		c->concurrency = 0;
}

/* Re-reads the control file when the cached copy is older than 100 ms. Called
 * with fault_lock held; a missing file means pass-through. */
static void
fault_refresh_locked(void)
{
	const char *path = getenv("P11FAULT_CONTROL");
	struct fault_ctl c = { CKR_OK, CKR_OK, 0, 0 };
	long long now = fault_now_ns();
	char line[256];
	FILE *f;

	if (fault_last_read != 0 && now - fault_last_read < P11FAULT_RELOAD_NS)
		return;
	fault_last_read = now;
	if (path != NULL && *path != '\0' && (f = fopen(path, "r")) != NULL) {
		while (fgets(line, sizeof(line), f) != NULL)
			fault_parse_line(&c, line);
		fclose(f);
	}
	if (c.concurrency != fault_cur.concurrency)
		pthread_cond_broadcast(&fault_cv);
	fault_cur = c;
}

static struct fault_ctl
fault_get(void)
{
	struct fault_ctl c;

	pthread_mutex_lock(&fault_lock);
	fault_refresh_locked();
	c = fault_cur;
	pthread_mutex_unlock(&fault_lock);
	return c;
}

static void
fault_write_stats_locked(void)
{
	const char *path = getenv("P11FAULT_STATS");
	char tmp[4096];
	FILE *f;

	if (path == NULL || *path == '\0')
		return;
	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
		return;
	if ((f = fopen(tmp, "w")) == NULL)
		return;
	fprintf(f, "signs=%lu failed=%lu max_concurrent=%ld\n", fault_signs, fault_failed,
	    fault_max_active);
	if (fclose(f) == 0)
		(void)rename(tmp, path);
}

/* Takes a slot of the counting semaphore (waits while K calls are running) and
 * returns the control values that apply to this call. */
static struct fault_ctl
fault_enter(void)
{
	struct fault_ctl c;
	struct timespec ts;

	pthread_mutex_lock(&fault_lock);
	for (;;) {
		fault_refresh_locked();
		if (fault_cur.concurrency == 0 || fault_active < fault_cur.concurrency)
			break;
		/* Timed wait so a cap raised in the control file is noticed. */
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 50 * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		(void)pthread_cond_timedwait(&fault_cv, &fault_lock, &ts);
	}
	fault_active++;
	if (fault_active > fault_max_active)
		fault_max_active = fault_active;
	c = fault_cur;
	pthread_mutex_unlock(&fault_lock);
	return c;
}

static void
fault_leave(CK_RV rv)
{
	pthread_mutex_lock(&fault_lock);
	fault_active--;
	fault_signs++;
	if (rv != CKR_OK && rv != CKR_BUFFER_TOO_SMALL)
		fault_failed++;
	fault_write_stats_locked();
	pthread_cond_signal(&fault_cv);
	pthread_mutex_unlock(&fault_lock);
}

static void
fault_sleep_ms(long ms)
{
	struct timespec ts;

	if (ms <= 0)
		return;
	ts.tv_sec = ms / 1000;
	ts.tv_nsec = (ms % 1000) * 1000000L;
	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

/* An injected failure must end the real module's active sign operation, as a
 * real failing C_Sign would, or the session's next C_SignInit gets
 * CKR_OPERATION_ACTIVE. */
static void
fault_abort_real(CK_SESSION_HANDLE s, CK_BYTE_PTR data, CK_ULONG dlen, int multipart)
{
	unsigned char buf[1024];
	CK_ULONG len = sizeof(buf);

	if (multipart)
		(void)fault_real->C_SignFinal(s, buf, &len);
	else
		(void)fault_real->C_Sign(s, data, dlen, buf, &len);
}

static CK_RV
fault_SignInit(CK_SESSION_HANDLE s, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key)
{
	struct fault_ctl c = fault_get();

	if (c.sign_error != CKR_OK) {
		pthread_mutex_lock(&fault_lock);
		fault_failed++;
		fault_write_stats_locked();
		pthread_mutex_unlock(&fault_lock);
		return c.sign_error;
	}
	return fault_real->C_SignInit(s, mech, key);
}

static CK_RV
fault_Sign(CK_SESSION_HANDLE s, CK_BYTE_PTR data, CK_ULONG dlen, CK_BYTE_PTR sig,
    CK_ULONG_PTR slen)
{
	struct fault_ctl c;
	CK_RV rv;

	/* A length query (sig == NULL) is not a signature: no delay, no slot. */
	if (sig == NULL) {
		c = fault_get();
		if (c.sign_error != CKR_OK) {
			fault_abort_real(s, data, dlen, 0);
			return c.sign_error;
		}
		return fault_real->C_Sign(s, data, dlen, sig, slen);
	}
	c = fault_enter();
	fault_sleep_ms(c.delay_ms);
	if (c.sign_error != CKR_OK) {
		fault_abort_real(s, data, dlen, 0);
		rv = c.sign_error;
	} else
		rv = fault_real->C_Sign(s, data, dlen, sig, slen);
	fault_leave(rv);
	return rv;
}

static CK_RV
fault_SignUpdate(CK_SESSION_HANDLE s, CK_BYTE_PTR part, CK_ULONG plen)
{
	struct fault_ctl c = fault_get();

	if (c.sign_error != CKR_OK) {
		fault_abort_real(s, NULL, 0, 1);
		return c.sign_error;
	}
	return fault_real->C_SignUpdate(s, part, plen);
}

static CK_RV
fault_SignFinal(CK_SESSION_HANDLE s, CK_BYTE_PTR sig, CK_ULONG_PTR slen)
{
	struct fault_ctl c;
	CK_RV rv;

	if (sig == NULL) {
		c = fault_get();
		if (c.sign_error != CKR_OK) {
			fault_abort_real(s, NULL, 0, 1);
			return c.sign_error;
		}
		return fault_real->C_SignFinal(s, sig, slen);
	}
	c = fault_enter();
	fault_sleep_ms(c.delay_ms);
	if (c.sign_error != CKR_OK) {
		fault_abort_real(s, NULL, 0, 1);
		rv = c.sign_error;
	} else
		rv = fault_real->C_SignFinal(s, sig, slen);
	fault_leave(rv);
	return rv;
}

static CK_RV
fault_GetSessionInfo(CK_SESSION_HANDLE s, CK_SESSION_INFO_PTR info)
{
	struct fault_ctl c = fault_get();

	if (c.token_error != CKR_OK)
		return c.token_error;
	return fault_real->C_GetSessionInfo(s, info);
}

static CK_RV
fault_OpenSession(CK_SLOT_ID slot, CK_FLAGS flags, void *app, CK_NOTIFY notify,
    CK_SESSION_HANDLE_PTR s)
{
	struct fault_ctl c = fault_get();

	if (c.token_error != CKR_OK)
		return c.token_error;
	return fault_real->C_OpenSession(slot, flags, app, notify, s);
}

static CK_RV
fault_Login(CK_SESSION_HANDLE s, CK_USER_TYPE type, CK_UTF8CHAR_PTR pin, CK_ULONG len)
{
	struct fault_ctl c = fault_get();

	if (c.token_error != CKR_OK)
		return c.token_error;
	return fault_real->C_Login(s, type, pin, len);
}

static CK_RV
fault_GetTokenInfo(CK_SLOT_ID slot, CK_TOKEN_INFO_PTR info)
{
	struct fault_ctl c = fault_get();

	if (c.token_error != CKR_OK)
		return c.token_error;
	return fault_real->C_GetTokenInfo(slot, info);
}

static void
fault_load(void)
{
	const char *path = getenv("P11FAULT_MODULE");
	CK_C_GetFunctionList get;
	void *h;
	CK_RV rv;

	if (path == NULL || *path == '\0')
		path = P11FAULT_DEFAULT_MODULE;
	if ((h = dlopen(path, RTLD_NOW | RTLD_LOCAL)) == NULL) {
		fprintf(stderr, "p11fault: dlopen %s: %s\n", path, dlerror());
		return;
	}
	*(void **)(&get) = dlsym(h, "C_GetFunctionList");
	if (get == NULL) {
		fprintf(stderr, "p11fault: %s has no C_GetFunctionList\n", path);
		return;
	}
	if ((rv = get(&fault_real)) != CKR_OK || fault_real == NULL) {
		fprintf(stderr, "p11fault: C_GetFunctionList of %s failed: 0x%lx\n", path,
		    (unsigned long)rv);
		return;
	}
	/* The copy assumes a 2.x-layout list, which every module returns from
	 * C_GetFunctionList (3.0 lists come only from C_GetInterface). */
	fault_list = *fault_real;
	fault_list.C_GetFunctionList = C_GetFunctionList;
	fault_list.C_SignInit = fault_SignInit;
	fault_list.C_Sign = fault_Sign;
	fault_list.C_SignUpdate = fault_SignUpdate;
	fault_list.C_SignFinal = fault_SignFinal;
	fault_list.C_GetSessionInfo = fault_GetSessionInfo;
	fault_list.C_OpenSession = fault_OpenSession;
	fault_list.C_Login = fault_Login;
	fault_list.C_GetTokenInfo = fault_GetTokenInfo;
	fault_init_rv = CKR_OK;
	/* The real module stays loaded for the life of the process. */
}

CK_RV
C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR out)
{
	if (out == NULL)
		return CKR_ARGUMENTS_BAD;
	pthread_once(&fault_once, fault_load);
	if (fault_init_rv != CKR_OK)
		return fault_init_rv;
	*out = &fault_list;
	return CKR_OK;
}
