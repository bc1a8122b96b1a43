/* Logging to stderr: one line per event, "LEVEL func: message".
 * Thread-safe (each line is written with a single write(2)). */
#ifndef CERTGATE_LOG_H
#define CERTGATE_LOG_H
#include <stdarg.h>

enum log_level { LOG_LVL_DEBUG = 0, LOG_LVL_INFO, LOG_LVL_WARN, LOG_LVL_ERR };

/* Sets the minimum level printed (default INFO; the environment variable
 * CERTGATE_LOG_LEVEL=debug|info|warn|error sets it when this is never called). */
void log_set_level(enum log_level lvl);

void log_msg(enum log_level lvl, const char *func, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Logs fmt followed by ": " and every error in OpenSSL's thread error queue,
 * which is drained. Use after any failing OpenSSL/libp11 call. */
void log_ssl(enum log_level lvl, const char *func, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Start-up only: log and exit(1). */
void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#define log_debug(...) log_msg(LOG_LVL_DEBUG, __func__, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_LVL_INFO, __func__, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_LVL_WARN, __func__, __VA_ARGS__)
#define log_err(...)   log_msg(LOG_LVL_ERR, __func__, __VA_ARGS__)
#define log_sslerr(...) log_ssl(LOG_LVL_ERR, __func__, __VA_ARGS__)

#endif
