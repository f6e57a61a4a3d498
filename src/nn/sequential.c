/* sequential.c - Sequential: children "0", "1", ... run in order. */
#include "nn/nn_int.h"

#include <stdio.h>

/* x -> child_n(...child_1(child_0(x))) */
static bx_tensor *sequential_forward(bx_module *m, bx_step *st, bx_tensor *x) {
    for (int i = 0; i < m->nchildren; i++) x = bx_module_forward(m->children[i].m, st, x);
    return x;
}

static const bx_module_type sequential_type = {"Sequential", sequential_forward, NULL, NULL, NULL, NULL};

bx_module *bx_nn_sequential(void) { return bx_module_new(&sequential_type, NULL); }

bx_status bx_sequential_append(bx_module *seq, bx_module *child) {
    if (!seq || seq->type != &sequential_type) {
        if (!child || !child->parent) bx_module_free(child);
        return bx__error(BX_ERR_INVALID, "sequential_append: module '%s' is not a Sequential",
                         bx_module_type_name(seq));
    }
    char name[24];
    snprintf(name, sizeof name, "%d", seq->nchildren);
    return bx_module_add_child(seq, name, child);
}
