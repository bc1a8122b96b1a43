/* Certificate lifetime arithmetic for renewal (see include/agent_time.h). */
#include <stdio.h>

#include "agent_time.h"

time_t
agent_time_issued(time_t not_before, time_t not_after)
{
	if (not_after > not_before &&
	    not_after - not_before >= AGENT_TIME_BACKDATE + AGENT_TIME_MIN_LIFE)
		return not_before + AGENT_TIME_BACKDATE;
	return not_before;
}

int
agent_time_map_pending(time_t not_before, time_t not_after, time_t now)
{
	return now < agent_time_issued(not_before, not_after) + AGENT_TIME_MAP_WAIT;
}

time_t
agent_time_renew_at(time_t not_before, time_t not_after)
{
	time_t from = agent_time_issued(not_before, not_after);

	if (not_after <= not_before)
		return not_before;
	return from + (not_after - from) / 3 * 2 + (not_after - from) % 3 * 2 / 3;
}

time_t
agent_time_late_at(time_t not_before, time_t not_after)
{
	if (not_after <= not_before)
		return not_before;
	return not_after - (not_after - agent_time_issued(not_before, not_after)) / 6;
}

enum agent_time_phase
agent_time_phase(time_t not_before, time_t not_after, time_t now)
{
	if (not_after <= not_before || now >= not_after)
		return AGENT_TIME_EXPIRED;
	if (now >= agent_time_late_at(not_before, not_after))
		return AGENT_TIME_LATE;
	if (now >= agent_time_renew_at(not_before, not_after))
		return AGENT_TIME_DUE;
	return AGENT_TIME_FRESH;
}

static long
agent_time_clamp(long v, long lo, long hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

long
agent_time_backoff(time_t not_before, time_t not_after, time_t now, unsigned attempt,
    unsigned rnd)
{
	long life, base, cap, d, left;
	unsigned i;

	life = not_after > not_before ?
	    (long)(not_after - agent_time_issued(not_before, not_after)) : 0;
	base = agent_time_clamp(life / 60, 1, 60);
	cap = agent_time_clamp(life / 12, 5, 3600);
	if (cap < base)
		cap = base;
	d = base;
	for (i = 1; i < attempt && d < cap; i++)
		d *= 2;
	if (d > cap)
		d = cap;
	d += (long)(rnd % (unsigned)(d / 10 + 1));
	left = (long)(not_after - now);
	if (left > 0 && d > left)
		d = left;
	return d < 1 ? 1 : d;
}

char *
agent_time_fmt(long secs, char *out, size_t outlen)
{
	const char *sign = "";
	unsigned long s;

	if (secs < 0) {
		sign = "-";
		s = (unsigned long)-(secs + 1) + 1;
	} else
		s = (unsigned long)secs;
	if (s >= 86400)
		snprintf(out, outlen, "%s%lud%luh", sign, s / 86400, s % 86400 / 3600);
	else if (s >= 3600)
		snprintf(out, outlen, "%s%luh%lum", sign, s / 3600, s % 3600 / 60);
	else if (s >= 60)
		snprintf(out, outlen, "%s%lum%lus", sign, s / 60, s % 60);
	else
		snprintf(out, outlen, "%s%lus", sign, s);
	return out;
}

char *
agent_time_iso(time_t t, char *out, size_t outlen)
{
	struct tm tm;

	if (gmtime_r(&t, &tm) == NULL || strftime(out, outlen, "%Y-%m-%dT%H:%M:%SZ",
	    &tm) == 0)
		snprintf(out, outlen, "@%lld", (long long)t);
	return out;
}
