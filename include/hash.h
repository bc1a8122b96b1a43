/* The one non-cryptographic hash in certgate (hash tables of agents, peers, sessions,
 * TLS session ids, metric labels): 32-bit FNV-1a. Not for anything an attacker may
 * choose freely into a table that cannot cope with collisions: those tables cap
 * their chains or their size. Pure, thread-safe. */
#ifndef CERTGATE_HASH_H
#define CERTGATE_HASH_H
#include <stddef.h>
#include <stdint.h>

#define HASH_FNV_INIT 2166136261u

/* Continues an FNV-1a hash h (start with HASH_FNV_INIT) over n bytes. */
static inline uint32_t
hash_fnv1a(uint32_t h, const void *p, size_t n)
{
	const unsigned char *s = p;
	size_t i;

	for (i = 0; i < n; i++)
		h = (h ^ s[i]) * 16777619u;
	return h;
}

/* FNV-1a of a NUL-terminated string. */
static inline uint32_t
hash_str(const char *s)
{
	uint32_t h = HASH_FNV_INIT;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h;
}

#endif
