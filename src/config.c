/* STUB: replaced by the config implementation. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include "config.h"
int strlist_addf(struct strlist *l, const char *fmt, ...) { (void)l; (void)fmt; return -1; }
void strlist_free(struct strlist *l) { (void)l; }
int config_load(const char *path, int flags, struct config **out, struct strlist *errs) { (void)path; (void)flags; (void)errs; *out = NULL; return -1; }
int config_parse(const char *text, size_t len, const char *name, const char *dir, int flags, struct config **out, struct strlist *errs) { (void)text; (void)len; (void)name; (void)dir; (void)flags; (void)errs; *out = NULL; return -1; }
void config_free(struct config *cfg) { (void)cfg; }
