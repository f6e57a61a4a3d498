/* state_int.h - internals of the bx_state tree shared by state.c,
 * state_json.c and the modules that build or read state (optim, train). */
#ifndef BLIXT_STATE_INT_H
#define BLIXT_STATE_INT_H

#include "blixt/state.h"
#include "core/core_int.h"

struct bx_state {
    bx_state_type type;
    union {
        bool b;
        int64_t i;
        double f;
        char *s;
        bx_tensor *t;
        struct {
            bx_state **items;
            size_t n, cap;
        } list;
        struct {
            char **keys;
            bx_state **vals;
            size_t n, cap;
        } dict;
    } u;
};

/* "a string", "an integer", ... for error messages. */
const char *bx__state_type_desc(bx_state_type t);

/* Writes v as the shortest text that reads back to the same double, in
 * Python's repr style ("0.1", "8.0", "1e-08", "1.5e+16"); NaN/inf as
 * "NaN"/"Infinity"/"-Infinity" (no quotes). buf needs 32 bytes. Returns buf. */
char *bx__fmt_double(char *buf, double v);

#endif
