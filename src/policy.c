/* STUB */
#include "policy.h"
int policy_glob(const char *pattern, const char *s) { (void)pattern; (void)s; return 0; }
int policy_scope_valid(const char *scope) { (void)scope; return 0; }
int policy_check_message(char *const *scopes, size_t nscopes, json_t *msg, struct policy_result *res) { (void)scopes; (void)nscopes; (void)msg; (void)res; return -1; }
int policy_allows_name(char *const *scopes, size_t nscopes, const char *kind, const char *name) { (void)scopes; (void)nscopes; (void)kind; (void)name; return 0; }
int policy_filter_listing(char *const *scopes, size_t nscopes, const char *method, json_t *response) { (void)scopes; (void)nscopes; (void)method; (void)response; return -1; }
