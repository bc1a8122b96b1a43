/* Fuzz target: policy_glob against a simple dynamic-programming reference, and the
 * scope grammar. Input: PATTERN NUL STRING (no NUL: the first half is the pattern). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAXLEN 256

/* dp[i][j]: pattern[i..] matches s[j..] */
static int
reference(const char *p, size_t pl, const char *s, size_t sl)
{
	static unsigned char dp[MAXLEN + 1][MAXLEN + 1];
	size_t i, j;

	for (i = pl + 1; i-- > 0;)
		for (j = sl + 1; j-- > 0;) {
			if (i == pl)
				dp[i][j] = j == sl;
			else if (p[i] == '*')
				dp[i][j] = dp[i + 1][j] || (j < sl && dp[i][j + 1]);
			else
				dp[i][j] = j < sl && (p[i] == '?' || p[i] == s[j]) && dp[i + 1][j + 1];
		}
	return dp[0][0];
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char pat[MAXLEN + 1], str[MAXLEN + 1];
	const uint8_t *nul;
	size_t pl, sl;

	nul = memchr(data, '\0', size);
	if (nul != NULL) {
		pl = (size_t)(nul - data);
		sl = size - pl - 1;
	} else {
		pl = size / 2;
		sl = size - pl;
	}
	if (pl > MAXLEN || sl > MAXLEN)
		return 0;
	memcpy(pat, data, pl);
	pat[pl] = '\0';
	memcpy(str, data + size - sl, sl);
	str[sl] = '\0';
	/* embedded NULs shorten the C strings; compare on what the C API sees */
	pl = strlen(pat);
	sl = strlen(str);
	if (policy_glob(pat, str) != reference(pat, pl, str, sl))
		abort();
	(void)policy_scope_valid(pat);
	return 0;
}
