/* dataset.c - in-memory datasets: x (N, ...) and optional y (N, ...), and
 * the IDX (MNIST / Fashion-MNIST) helper that builds one from files.
 *
 * The dataset keeps contiguous tensors (a non-contiguous input is copied
 * once), so a batch of rows is a set of memcpy's of row_bytes each. */
#include "data/data_int.h"

#include "blixt/idx.h"

#include <string.h>

static bool usable(const bx_tensor *t) { return !(t->flags & BX_TF_POISON) && t->device == BX_CPU && t->data; }

/* A contiguous version of t: t itself, or an owned clone (*made = true). */
static bx_tensor *contiguous(bx_tensor *t, bool *made) {
    *made = false;
    if (bx_is_contiguous(t)) return t;
    bx_tensor *c = bx_tensor_clone(t);
    if (c) *made = true;
    return c;
}

bx_dataset *bx_dataset_from_tensors(bx_tensor *x, bx_tensor *y, bool take_ownership) {
    bx_status s = BX_OK;
    char a[64], b[64];
    if (!x) s = bx__error(BX_ERR_INVALID, "dataset: x is NULL");
    else if (!usable(x) || (y && !usable(y)))
        s = bx__error(BX_ERR_INVALID, "dataset: %s is poison, empty or not on the CPU", !usable(x) ? "x" : "y");
    else if (x->ndim < 1) s = bx__error(BX_ERR_SHAPE, "dataset: x is 0-d; it needs a first (sample) dimension");
    else if (y && y->ndim < 1) s = bx__error(BX_ERR_SHAPE, "dataset: y is 0-d; it needs a first (sample) dimension");
    else if (y && y->shape[0] != x->shape[0])
        s = bx__error(BX_ERR_SHAPE, "dataset: x %s and y %s have different numbers of samples",
                      bx_shape_str(x, a, sizeof a), bx_shape_str(y, b, sizeof b));
    bx_dataset *ds = NULL;
    if (s == BX_OK) {
        ds = bx__calloc(sizeof *ds);
        if (!ds) s = BX_ERR_NOMEM;
    }
    if (s != BX_OK) {
        if (take_ownership) {
            bx_tensor_free(x);
            bx_tensor_free(y);
        }
        return NULL;
    }
    bool madex = false, madey = false;
    ds->x = contiguous(x, &madex);
    ds->y = y ? contiguous(y, &madey) : NULL;
    if (!ds->x || (y && !ds->y)) {
        if (madex) bx_tensor_free(ds->x);
        if (madey) bx_tensor_free(ds->y);
        if (take_ownership) {
            bx_tensor_free(x);
            bx_tensor_free(y);
        }
        bx__free(ds);
        return NULL;
    }
    /* the dataset owns what it made, and the originals when asked to */
    if (take_ownership) {
        if (madex) bx_tensor_free(x);
        if (madey) bx_tensor_free(y);
    }
    ds->own_x = take_ownership || madex;
    ds->own_y = y && (take_ownership || madey);
    ds->n = x->shape[0];
    ds->x_row = bx__shape_numel(x->ndim - 1, x->shape + 1);
    ds->y_row = y ? bx__shape_numel(y->ndim - 1, y->shape + 1) : 0;
    return ds;
}

void bx_dataset_free(bx_dataset *ds) {
    if (!ds) return;
    if (ds->own_x) bx_tensor_free(ds->x);
    if (ds->own_y) bx_tensor_free(ds->y);
    bx__free(ds);
}

int64_t bx_dataset_len(const bx_dataset *ds) { return ds ? ds->n : 0; }
const bx_tensor *bx_dataset_x(const bx_dataset *ds) { return ds ? ds->x : NULL; }
const bx_tensor *bx_dataset_y(const bx_dataset *ds) { return ds ? ds->y : NULL; }

/* ---- IDX --------------------------------------------------------------------- */

/* u8 images -> f32 x/255 (division, as torchvision's ToTensor does). */
static bx_tensor *images_to_f32(const bx_tensor *img, bool flatten) {
    int64_t shape[4];
    int nd;
    const int64_t n = img->shape[0];
    if (flatten) {
        shape[0] = n;
        shape[1] = bx__shape_numel(img->ndim - 1, img->shape + 1);
        nd = 2;
    } else if (img->ndim == 3) {
        shape[0] = n;
        shape[1] = 1;
        shape[2] = img->shape[1];
        shape[3] = img->shape[2];
        nd = 4;
    } else {
        memcpy(shape, img->shape, 4 * sizeof *shape);
        nd = 4;
    }
    bx_tensor *x = bx_tensor_new(BX_F32, nd, shape);
    if (!x) return NULL;
    const uint8_t *src = img->data;
    float *dst = x->data;
    const int64_t m = bx_numel(img);
#pragma omp parallel for simd if (m > 262144) schedule(static)
    for (int64_t i = 0; i < m; i++) dst[i] = (float)src[i] / 255.0f;
    return x;
}

static bool integer_dtype(bx_dtype dt) { return dt == BX_U8 || dt == BX_I8 || dt == BX_I32 || dt == BX_I64; }

bx_status bx_dataset_from_idx(const char *images_path, const char *labels_path, bool flatten, bx_dataset **out) {
    if (!out) return bx__error(BX_ERR_INVALID, "dataset from IDX: NULL output pointer");
    *out = NULL;
    if (!images_path) return bx__error(BX_ERR_INVALID, "dataset from IDX: NULL images path");
    bx_tensor *img = NULL, *lab = NULL, *x = NULL, *y = NULL;
    char a[64], b[64];
    bx_status s = bx_idx_load(images_path, &img);
    if (s == BX_OK && labels_path) s = bx_idx_load(labels_path, &lab);
    if (s == BX_OK && (img->dtype != BX_U8 || (img->ndim != 3 && img->ndim != 4)))
        s = bx__error(BX_ERR_SHAPE, "dataset from IDX: images '%s' are %s %s, expected u8 (N,H,W) or (N,C,H,W)",
                      images_path, bx_dtype_name(img->dtype), bx_shape_str(img, a, sizeof a));
    if (s == BX_OK && lab && (lab->ndim != 1 || !integer_dtype(lab->dtype)))
        s = bx__error(BX_ERR_SHAPE, "dataset from IDX: labels '%s' are %s %s, expected 1-d integers (N)",
                      labels_path, bx_dtype_name(lab->dtype), bx_shape_str(lab, a, sizeof a));
    if (s == BX_OK && lab && lab->shape[0] != img->shape[0])
        s = bx__error(BX_ERR_SHAPE, "dataset from IDX: images '%s' %s and labels '%s' %s differ in N", images_path,
                      bx_shape_str(img, a, sizeof a), labels_path, bx_shape_str(lab, b, sizeof b));
    if (s == BX_OK) {
        x = images_to_f32(img, flatten);
        if (!x) s = BX_ERR_NOMEM;
    }
    if (s == BX_OK && lab) {
        y = bx_tensor_new(BX_I64, 1, lab->shape);
        if (!y) s = BX_ERR_NOMEM;
        else bx_copy(y, lab);
    }
    bx_tensor_free(img);
    bx_tensor_free(lab);
    if (s != BX_OK) {
        bx_tensor_free(x);
        bx_tensor_free(y);
        return s;
    }
    *out = bx_dataset_from_tensors(x, y, true); /* frees x, y on failure */
    return *out ? BX_OK : BX_ERR_NOMEM;
}
