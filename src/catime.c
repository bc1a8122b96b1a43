/* Time and duration formats of the CA (catime.h). */
#include "catime.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

static int
catime_digits(const char *s, size_t n)
{
	int v = 0;
	size_t i;

	for (i = 0; i < n; i++)
		v = v * 10 + (s[i] - '0');
	return v;
}

int
catime_parse_n(const char *s, size_t n, time_t *out)
{
	struct tm tm;
	size_t i, off;
	int year;

	if ((n != 13 && n != 15) || s[n - 1] != 'Z')
		return -1;
	for (i = 0; i < n - 1; i++)
		if (!isdigit((unsigned char)s[i]))
			return -1;
	memset(&tm, 0, sizeof(tm));
	if (n == 13) {
		year = catime_digits(s, 2);
		year += year >= 50 ? 1900 : 2000;
		off = 2;
	} else {
		year = catime_digits(s, 4);
		off = 4;
	}
	tm.tm_year = year - 1900;
	tm.tm_mon = catime_digits(s + off, 2) - 1;
	tm.tm_mday = catime_digits(s + off + 2, 2);
	tm.tm_hour = catime_digits(s + off + 4, 2);
	tm.tm_min = catime_digits(s + off + 6, 2);
	tm.tm_sec = catime_digits(s + off + 8, 2);
	if (tm.tm_mon < 0 || tm.tm_mon > 11 || tm.tm_mday < 1 || tm.tm_mday > 31 ||
	    tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60)
		return -1;
	if (out)
		*out = timegm(&tm);
	return 0;
}

int
catime_parse(const char *s, time_t *out)
{
	return catime_parse_n(s, strlen(s), out);
}

void
catime_format(time_t t, char *buf, size_t len)
{
	struct tm tm;
	int y;

	gmtime_r(&t, &tm);
	y = tm.tm_year + 1900;
	/* strftime, unlike snprintf with %02d, cannot be flagged for truncation at -O2. */
	if (strftime(buf, len, "%Y%m%d%H%M%SZ", &tm) == 0) {
		if (len > 0)
			buf[0] = '\0';
		return;
	}
	if (y >= 1950 && y < 2050)
		memmove(buf, buf + 2, strlen(buf + 2) + 1);	/* UTCTime: two-digit year */
}

void
catime_rfc3339(time_t t, char *buf, size_t len)
{
	struct tm tm;

	gmtime_r(&t, &tm);
	if (strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0 && len > 0)
		buf[0] = '\0';
}

int
catime_from_asn1(const ASN1_TIME *at, time_t *out)
{
	struct tm tm;

	if (at == NULL || ASN1_TIME_to_tm(at, &tm) != 1)
		return -1;
	*out = timegm(&tm);
	return 0;
}

int
catime_duration(const char *s, long min_s, long max_s, long *out, char *err,
    size_t errlen)
{
	char lo[16], hi[16];
	long unit, n = 0;
	size_t i, len = strlen(s);

	if (len < 2 || len > 12)
		goto syntax;
	switch (s[len - 1]) {
	case 'm': unit = 60; break;
	case 'h': unit = 3600; break;
	case 'd': unit = 86400; break;
	default: goto syntax;
	}
	for (i = 0; i + 1 < len; i++) {
		if (!isdigit((unsigned char)s[i]))
			goto syntax;
		n = n * 10 + (s[i] - '0');
		if (n > 100000000L)
			goto range;
	}
	n *= unit;
	if (n < min_s || n > max_s)
		goto range;
	*out = n;
	return 0;
syntax:
	snprintf(err, errlen, "want a duration Nm, Nh or Nd (minutes, hours, days), e.g. 15m, 24h, 7d");
	return -1;
range:
	catime_duration_str(min_s, lo, sizeof(lo));
	catime_duration_str(max_s, hi, sizeof(hi));
	snprintf(err, errlen, "must be at least %s and at most %s", lo, hi);
	return -1;
}

void
catime_duration_str(long secs, char *buf, size_t len)
{
	if (secs % 86400 == 0 && secs > 0)
		snprintf(buf, len, "%ldd", secs / 86400);
	else if (secs % 3600 == 0 && secs > 0)
		snprintf(buf, len, "%ldh", secs / 3600);
	else if (secs % 60 == 0)
		snprintf(buf, len, "%ldm", secs / 60);
	else
		snprintf(buf, len, "%lds", secs);
}

void
catime_left(long secs, char *buf, size_t len)
{
	if (secs <= 0)
		snprintf(buf, len, "-");
	else if (secs >= 86400)
		snprintf(buf, len, "%ldd%ldh", secs / 86400, (secs % 86400) / 3600);
	else if (secs >= 3600)
		snprintf(buf, len, "%ldh%ldm", secs / 3600, (secs % 3600) / 60);
	else if (secs >= 60)
		snprintf(buf, len, "%ldm", secs / 60);
	else
		snprintf(buf, len, "<1m");
}
