/* kinds_optim.c - golden case runners (see golden.h). */
#include "golden.h"

const gkind golden_kinds_optim[] = {
    {NULL, NULL},
};
