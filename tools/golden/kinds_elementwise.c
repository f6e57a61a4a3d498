/* kinds_elementwise.c - golden case runners (see golden.h). */
#include "golden.h"

const gkind golden_kinds_elementwise[] = {
    {NULL, NULL},
};
