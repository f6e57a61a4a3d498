/* data_int.h - dataset internals shared by dataset.c and loader.c. */
#ifndef BLIXT_DATA_INT_H
#define BLIXT_DATA_INT_H

#include "autograd/autograd_int.h"
#include "blixt/data.h"

struct bx_dataset {
    bx_tensor *x, *y; /* contiguous; y may be NULL */
    bool own_x, own_y;
    int64_t n;        /* samples */
    int64_t x_row;    /* elements per sample of x / y */
    int64_t y_row;
};

#endif
