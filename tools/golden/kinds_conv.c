/* kinds_conv.c - golden case runners (see golden.h). */
#include "golden.h"

const gkind golden_kinds_conv[] = {
    {NULL, NULL},
};
