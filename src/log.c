/* Logging to stderr (log.h). */
#include "log.h"

#include <openssl/err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static enum log_level log_min = LOG_LVL_INFO;
static int log_env_checked;

static const char *const log_names[] = { "debug", "info", "warn", "error" };

static int
log_enabled(enum log_level lvl)
{
	if (!log_env_checked) {
		const char *e = getenv("CERTGATE_LOG_LEVEL");
		size_t i;

		for (i = 0; e != NULL && i < sizeof(log_names) / sizeof(log_names[0]); i++)
			if (strcasecmp(e, log_names[i]) == 0 ||
			    (i == LOG_LVL_WARN && strcasecmp(e, "warning") == 0))
				log_min = (enum log_level)i;
		log_env_checked = 1;
	}
	return lvl >= log_min;
}

/* Formats the whole line into one buffer so concurrent threads never interleave. */
static void __attribute__((format(printf, 3, 0)))
log_emit(enum log_level lvl, const char *func, const char *fmt, va_list ap, const char *suffix)
{
	char line[2048];
	struct timespec ts;
	struct tm tm;
	size_t n;
	int r;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
	r = snprintf(line + n, sizeof(line) - n, ".%03ldZ %s %s: ", ts.tv_nsec / 1000000,
	    log_names[lvl], func ? func : "-");
	if (r > 0)
		n += (size_t)r < sizeof(line) - n ? (size_t)r : sizeof(line) - n - 1;
	r = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	if (r > 0)
		n += (size_t)r < sizeof(line) - n ? (size_t)r : sizeof(line) - n - 1;
	if (suffix && n < sizeof(line) - 1) {
		r = snprintf(line + n, sizeof(line) - n, "%s", suffix);
		if (r > 0)
			n += (size_t)r < sizeof(line) - n ? (size_t)r : sizeof(line) - n - 1;
	}
	if (n >= sizeof(line) - 1)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	(void)!write(STDERR_FILENO, line, n);
}

void
log_msg(enum log_level lvl, const char *func, const char *fmt, ...)
{
	va_list ap;

	if (!log_enabled(lvl))
		return;
	va_start(ap, fmt);
	log_emit(lvl, func, fmt, ap, NULL);
	va_end(ap);
}

void
log_ssl(enum log_level lvl, const char *func, const char *fmt, ...)
{
	char errs[1024];
	size_t n = 0;
	unsigned long e;
	va_list ap;

	errs[0] = '\0';
	while ((e = ERR_get_error()) != 0) {
		char one[256];
		ERR_error_string_n(e, one, sizeof(one));
		if (n < sizeof(errs) - 1) {
			int r = snprintf(errs + n, sizeof(errs) - n, ": %s", one);
			if (r > 0)
				n += (size_t)r;
		}
	}
	if (n == 0)
		snprintf(errs, sizeof(errs), ": (no OpenSSL error recorded)");
	if (!log_enabled(lvl))
		return;
	va_start(ap, fmt);
	log_emit(lvl, func, fmt, ap, errs);
	va_end(ap);
}

void
fatal(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_emit(LOG_LVL_ERR, "fatal", fmt, ap, NULL);
	va_end(ap);
	exit(1);
}
