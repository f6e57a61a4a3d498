/* kinds_sched.c - golden case runners (see golden.h). */
#include "golden.h"

const gkind golden_kinds_sched[] = {
    {NULL, NULL},
};
