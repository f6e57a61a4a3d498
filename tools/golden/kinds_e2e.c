/* kinds_e2e.c - golden case runners (see golden.h). */
#include "golden.h"

const gkind golden_kinds_e2e[] = {
    {NULL, NULL},
};
