/* golden.h - the blixt-golden runner: one case = one safetensors file
 * produced by PyTorch (tests/golden/README.md). main.c loads each case,
 * dispatches on metadata `kind` to a runner from the kind tables below and
 * prints PASS/FAIL with the worst error. Each kind file (kinds_*.c) owns one
 * table. */
#ifndef BLIXT_GOLDEN_H
#define BLIXT_GOLDEN_H

#include "blixt.h"
#include "blixt/safetensors.h"

#include <jansson.h>

typedef struct gcase gcase;

/* Tensor stored under `name` in the case, or NULL (a missing tensor is NOT
 * automatically a failure: use gc_need for required ones). */
const bx_tensor *gc_get(gcase *c, const char *name);
/* Like gc_get, but a missing tensor records a failure. */
const bx_tensor *gc_need(gcase *c, const char *name);
/* The parsed `args` object of the case (never NULL: {} when absent). */
json_t *gc_args(gcase *c);
/* Case metadata value (`case`, `kind`, `op`, ...), or NULL. */
const char *gc_meta(gcase *c, const char *key);
/* Compares `got` with the stored tensor `ref_name` (shape and values) using
 * the case's tol/atol (exact for integer dtypes); records the worst error and
 * a failure when out of tolerance. */
void gc_compare(gcase *c, const char *ref_name, const bx_tensor *got);
/* As gc_compare with explicit tolerances. */
void gc_compare_tol(gcase *c, const char *ref_name, const bx_tensor *got, double tol, double atol);
/* Compares a scalar against a stored 0-d/1-element tensor or against a value. */
void gc_compare_value(gcase *c, const char *what, double got, double ref);
/* Records a failure with a message (first one kept for the report). */
void gc_fail(gcase *c, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* Owned f32 copy of a stored tensor marked as parameter (requires grad);
 * registered with the case and freed after the case. NULL if missing. */
bx_tensor *gc_param(gcase *c, const char *name);
/* Owned copy of a stored tensor (any dtype), not requiring grad, freed after the case. */
bx_tensor *gc_copy(gcase *c, const char *name);
/* Registers an owned tensor to be freed after the case. */
void gc_own(gcase *c, bx_tensor *t);
/* Helpers to read args with defaults. */
double gc_arg_num(gcase *c, const char *key, double dflt);
int64_t gc_arg_int(gcase *c, const char *key, int64_t dflt);
bool gc_arg_bool(gcase *c, const char *key, bool dflt);
const char *gc_arg_str(gcase *c, const char *key, const char *dflt);

typedef void (*gkind_fn)(gcase *c);
typedef struct gkind {
    const char *kind;
    gkind_fn run;
} gkind;

/* One table per kinds file, each ended by {NULL, NULL}. */
extern const gkind golden_kinds_elementwise[]; /* kinds_elementwise.c: add..transpose, reductions, shape */
extern const gkind golden_kinds_nn[];          /* kinds_nn.c: linear, matmul, losses, embedding, layer_norm */
extern const gkind golden_kinds_conv[];        /* kinds_conv.c: conv2d, pools, batch_norm */
extern const gkind golden_kinds_optim[];       /* kinds_optim.c: sgd, adam, adamw, rmsprop */
extern const gkind golden_kinds_sched[];       /* kinds_sched.c: every LR scheduler */
extern const gkind golden_kinds_e2e[];         /* kinds_e2e.c: e2e_mlp, e2e_cnn */
extern const gkind golden_kinds_swa[];         /* kinds_swa.c: averaged_model */
extern const gkind golden_kinds_prune[];       /* kinds_prune.c: prune_* */
extern const gkind golden_kinds_qat[];         /* kinds_qat.c: fake_quantize, fused_fake_quantize, qat_convert, histogram_observer */

#endif
