/* ticketkeys.h's epoch rules: which epoch a time falls in, and how long a key of an
 * epoch may still decrypt (the end of the following epoch: the overlap a rotation
 * leaves for tickets issued just before it). Table-driven. */
#include "check.h"
#include "ticketkeys.h"

static const struct { double t; int r; long long epoch; } epochs[] = {
	{ 0, 3600, 0 },
	{ 3599.999, 3600, 0 },
	{ 3600, 3600, 1 },
	{ 1764640000.5, 3600, 490177 },
	{ 1764640000.5, 4, 441160000 },
	{ 1764640003.99, 4, 441160000 },
	{ 1764640004.0, 4, 441160001 },
};

static const struct { long long k; double t; int r; int alive; } alive[] = {
	{ 10, 40.0, 4, 1 },     /* its own epoch: current */
	{ 10, 44.0, 4, 1 },     /* the next one: previous, still decrypts */
	{ 10, 47.99, 4, 1 },
	{ 10, 48.0, 4, 0 },     /* two rotations later: gone */
	{ 10, 60.0, 4, 0 },
	{ 1, 7199, 3600, 1 },
	{ 1, 10800, 3600, 0 },
};

int
main(void)
{
	size_t i;

	for (i = 0; i < sizeof(epochs) / sizeof(epochs[0]); i++)
		CHECK(ticketkeys_epoch(epochs[i].t, epochs[i].r) == epochs[i].epoch);
	for (i = 0; i < sizeof(alive) / sizeof(alive[0]); i++)
		CHECK(ticketkeys_alive(alive[i].k, alive[i].t, alive[i].r) == alive[i].alive);
	CHECK_DONE();
}
