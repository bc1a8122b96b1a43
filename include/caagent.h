/* Agent certificates by hand: `certgate ca issue`, `renew`, `revoke` and `token`
 * (one-time enrollment tokens for EST). Each returns the command's exit code: 0,
 * 1 failure (printed), 2 usage error. */
#ifndef CERTGATE_CAAGENT_H
#define CERTGATE_CAAGENT_H

struct cacli_args;
struct config;

#define CAAGENT_DEFAULT_TTL	(15 * 60)	/* token lifetime */
#define CAAGENT_MAX_TTL		(30L * 86400)

int caagent_issue(struct config *cfg, struct cacli_args *a);
int caagent_renew(struct config *cfg, struct cacli_args *a);
int caagent_revoke(struct config *cfg, struct cacli_args *a);
int caagent_token(struct config *cfg, struct cacli_args *a);

#endif
