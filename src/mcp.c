/* STUB */
#include "mcp.h"
int mcp_protocol_version_known(const char *v) { (void)v; return 0; }
int mcp_inspect_body(const char *body, size_t len, char *const *scopes, size_t nscopes, const char *mm, const char *mn, struct mcp_inspect *out) { (void)body; (void)len; (void)scopes; (void)nscopes; (void)mm; (void)mn; (void)out; return -1; }
void mcp_inspect_free(struct mcp_inspect *in) { (void)in; }
char *mcp_error_body(json_t *id, int code, const char *message) { (void)id; (void)code; (void)message; return NULL; }
char *mcp_filter_json(const char *body, size_t len, const struct mcp_pending_list *lists, size_t nlists, char *const *scopes, size_t nscopes, size_t *outlen) { (void)body; (void)len; (void)lists; (void)nlists; (void)scopes; (void)nscopes; (void)outlen; return NULL; }
struct mcp_sse *mcp_sse_new(const struct mcp_pending_list *lists, size_t nlists, char *const *scopes, size_t nscopes, size_t max_event) { (void)lists; (void)nlists; (void)scopes; (void)nscopes; (void)max_event; return NULL; }
int mcp_sse_feed(struct mcp_sse *s, const char *p, size_t n, mcp_emit_fn emit, void *arg) { (void)s; (void)p; (void)n; (void)emit; (void)arg; return -1; }
int mcp_sse_finish(struct mcp_sse *s, mcp_emit_fn emit, void *arg) { (void)s; (void)emit; (void)arg; return -1; }
void mcp_sse_free(struct mcp_sse *s) { (void)s; }
