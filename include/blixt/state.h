/* blixt/state.h - a small key/value tree for persisted state.
 *
 * Optimizers, schedulers, callbacks, loaders and the Trainer save their state
 * into a bx_state tree: null, bool, int (i64), float (double), string, list,
 * dict (insertion-ordered) and tensor nodes. A checkpoint writes the tensors
 * into safetensors and everything else as JSON; bx_state_to_json /
 * bx_state_from_json do the JSON part. Every node is owned by its parent;
 * bx_state_free on the root frees the whole tree. */
#ifndef BLIXT_STATE_H
#define BLIXT_STATE_H

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum bx_state_type {
    BX_STATE_NULL, BX_STATE_BOOL, BX_STATE_INT, BX_STATE_FLOAT,
    BX_STATE_STRING, BX_STATE_LIST, BX_STATE_DICT, BX_STATE_TENSOR
} bx_state_type;

typedef struct bx_state bx_state;

/* Constructors: new nodes owned by the caller until added to a parent.
 * NULL on NOMEM. A tensor node holds an owned copy (bx_tensor_clone). */
bx_state *bx_state_null(void);
bx_state *bx_state_bool(bool v);
bx_state *bx_state_int(int64_t v);
bx_state *bx_state_float(double v);
bx_state *bx_state_string(const char *s);
bx_state *bx_state_list(void);
bx_state *bx_state_dict(void);
bx_state *bx_state_tensor(const bx_tensor *t);
void bx_state_free(bx_state *s);
/* Deep copy. */
bx_state *bx_state_copy(const bx_state *s);

bx_state_type bx_state_typeof(const bx_state *s);
bool bx_state_get_bool(const bx_state *s);
int64_t bx_state_get_int(const bx_state *s);    /* a float node is truncated */
double bx_state_get_float(const bx_state *s);   /* an int node is converted */
const char *bx_state_get_string(const bx_state *s);
const bx_tensor *bx_state_get_tensor(const bx_state *s);

/* Lists. append takes ownership of v (freed on failure). */
bx_status bx_state_append(bx_state *list, bx_state *v);
size_t bx_state_len(const bx_state *s); /* list items or dict entries */
bx_state *bx_state_at(const bx_state *list, size_t i);

/* Dicts (insertion order kept). set takes ownership of v and replaces an
 * existing key in place. */
bx_status bx_state_set(bx_state *dict, const char *key, bx_state *v);
bx_state *bx_state_get(const bx_state *dict, const char *key); /* NULL if absent */
const char *bx_state_key_at(const bx_state *dict, size_t i);
bx_state *bx_state_value_at(const bx_state *dict, size_t i);
/* Convenience setters (ownership of the new node handled inside). */
bx_status bx_state_set_int(bx_state *dict, const char *key, int64_t v);
bx_status bx_state_set_float(bx_state *dict, const char *key, double v);
bx_status bx_state_set_bool(bx_state *dict, const char *key, bool v);
bx_status bx_state_set_string(bx_state *dict, const char *key, const char *v);
bx_status bx_state_set_tensor(bx_state *dict, const char *key, const bx_tensor *t);
/* Typed getters with a clear error when missing or of another type:
 * "optimizer state: key 'lr' missing" / "... is a string, expected a number". */
bx_status bx_state_need_int(const bx_state *dict, const char *key, int64_t *out);
bx_status bx_state_need_float(const bx_state *dict, const char *key, double *out);
bx_status bx_state_need_bool(const bx_state *dict, const char *key, bool *out);

/* JSON text of the tree (NaN/Infinity as the strings "NaN", "Infinity",
 * "-Infinity"; floats shortest round-trip). Tensor nodes are written as
 * {"__tensor__": NAME} where NAME is produced by the callback, which stores
 * the tensor (e.g. into a safetensors writer); a NULL callback writes tensors
 * inline as nested lists. Returns text from the allocator hook (free with bx_free, core.h) or NULL. */
typedef bx_status (*bx_state_tensor_out)(void *ud, const char *path, const bx_tensor *t,
                                         char *name_out, size_t name_cap);
char *bx_state_to_json(const bx_state *s, bx_state_tensor_out fn, void *ud);
/* Parses JSON text; {"__tensor__": NAME} nodes are resolved through `fn`
 * (NULL: an error). Errors: BX_ERR_FORMAT with line/column. */
typedef const bx_tensor *(*bx_state_tensor_in)(void *ud, const char *name);
bx_status bx_state_from_json(const char *text, bx_state_tensor_in fn, void *ud, bx_state **out);

#ifdef __cplusplus
}
#endif
#endif
