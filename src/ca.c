/* STUB: replaced by the CA implementation. */
#include <stdio.h>
#include "ca.h"
int ca_main(int argc, char **argv) { (void)argc; (void)argv; fprintf(stderr, "not implemented\n"); return 1; }
