/* kinds_nn.c - golden case runners (see golden.h). */
#include "golden.h"

const gkind golden_kinds_nn[] = {
    {NULL, NULL},
};
