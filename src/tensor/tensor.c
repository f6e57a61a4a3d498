/* tensor.c - owned tensors, shapes, strided copies. */
#include "tensor/tensor_int.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

size_t bx_dtype_size(bx_dtype dt) {
    switch (dt) {
    case BX_F32: return 4;
    case BX_F64: return 8;
    case BX_I64: return 8;
    case BX_I32: return 4;
    case BX_U8: return 1;
    case BX_I8: return 1;
    case BX_BOOL: return 1;
    }
    return 0;
}

const char *bx_dtype_name(bx_dtype dt) {
    static const char *n[] = {"f32", "f64", "i64", "i32", "u8", "i8", "bool"};
    return (unsigned)dt < 7 ? n[dt] : "?";
}

const char *bx_dtype_st_name(bx_dtype dt) {
    static const char *n[] = {"F32", "F64", "I64", "I32", "U8", "I8", "BOOL"};
    return (unsigned)dt < 7 ? n[dt] : "?";
}

int64_t bx__shape_numel(int ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    return n;
}

char *bx__shape_fmt(int ndim, const int64_t *shape, char *buf, size_t n) {
    size_t pos = 0;
    if (n == 0) return buf;
    buf[0] = '\0';
    pos += (size_t)snprintf(buf + pos, n - pos, "(");
    for (int i = 0; i < ndim && pos < n; i++)
        pos += (size_t)snprintf(buf + pos, n - pos, i ? ",%lld" : "%lld", (long long)shape[i]);
    if (pos < n) snprintf(buf + pos, n - pos, ")");
    return buf;
}

char *bx_shape_str(const bx_tensor *t, char *buf, size_t n) {
    if (!t) {
        bx__strlcpy(buf, "(null)", n);
        return buf;
    }
    if (t->flags & BX_TF_POISON) {
        bx__strlcpy(buf, "(poison)", n);
        return buf;
    }
    return bx__shape_fmt(t->ndim, t->shape, buf, n);
}

int bx__norm_dim(int dim, int ndim) {
    int n = ndim == 0 ? 1 : ndim;
    if (dim < -n || dim >= n) return -1;
    return dim < 0 ? dim + n : dim;
}

bx_status bx__set_shape(bx_tensor *t, bx_dtype dt, int ndim, const int64_t *shape) {
    if (ndim < 0 || ndim > BX_MAX_DIMS)
        return bx__error(BX_ERR_INVALID, "tensor: %d dims (at most %d)", ndim, BX_MAX_DIMS);
    if (bx_dtype_size(dt) == 0) return bx__error(BX_ERR_INVALID, "tensor: unknown dtype %d", (int)dt);
    int64_t s = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        if (shape[i] < 0) return bx__error(BX_ERR_INVALID, "tensor: negative size %lld in dim %d",
                                           (long long)shape[i], i);
        t->shape[i] = shape[i];
        t->stride[i] = s;
        s *= shape[i] ? shape[i] : 1;
    }
    for (int i = ndim; i < BX_MAX_DIMS; i++) {
        t->shape[i] = 1;
        t->stride[i] = 0;
    }
    t->ndim = ndim;
    t->dtype = dt;
    return BX_OK;
}

bx_tensor *bx_tensor_new(bx_dtype dt, int ndim, const int64_t *shape) {
    bx_tensor tmp;
    memset(&tmp, 0, sizeof tmp);
    if (bx__set_shape(&tmp, dt, ndim, shape) != BX_OK) return NULL;
    size_t bytes = (size_t)bx__shape_numel(ndim, shape) * bx_dtype_size(dt);
    bx_tensor *t = bx__malloc(sizeof *t + (bytes ? bytes : 1) + 64);
    if (!t) return NULL;
    *t = tmp;
    /* data follows the struct, 64-byte aligned */
    uintptr_t p = (uintptr_t)(t + 1);
    p = (p + 63) & ~(uintptr_t)63;
    t->data = (void *)p;
    t->flags = 0;
    return t;
}

bx_tensor *bx_tensor_zeros(bx_dtype dt, int ndim, const int64_t *shape) {
    bx_tensor *t = bx_tensor_new(dt, ndim, shape);
    if (t) memset(t->data, 0, (size_t)bx_numel(t) * bx_dtype_size(dt));
    return t;
}

bx_tensor *bx_tensor_clone(const bx_tensor *src) {
    if (!src || (src->flags & BX_TF_POISON)) {
        bx__error(BX_ERR_INVALID, "tensor clone: source is %s", src ? "poison" : "NULL");
        return NULL;
    }
    bx_tensor *t = bx_tensor_new(src->dtype, src->ndim, src->shape);
    if (!t) return NULL;
    bx_copy(t, src);
    return t;
}

void bx_tensor_free(bx_tensor *t) {
    if (!t) return;
    if (t->flags & BX_TF_ARENA) return; /* arena tensors die with the step */
    if (t->grad && !(t->grad->flags & BX_TF_ARENA)) bx_tensor_free(t->grad);
    bx__free(t);
}

int64_t bx_numel(const bx_tensor *t) { return bx__shape_numel(t->ndim, t->shape); }

bool bx_is_contiguous(const bx_tensor *t) {
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && t->stride[i] != s) return false;
        s *= t->shape[i];
    }
    return true;
}

bool bx_same_shape(const bx_tensor *a, const bx_tensor *b) {
    if (a->ndim != b->ndim) return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return false;
    return true;
}

void bx__iter_init(bx__iter *it, int ndim, const int64_t *shape, int nops,
                   const int64_t *const *strides) {
    it->ndim = ndim;
    it->remaining = 1;
    for (int d = 0; d < ndim; d++) {
        it->shape[d] = shape[d];
        it->idx[d] = 0;
        it->remaining *= shape[d];
        for (int k = 0; k < nops; k++) it->stride[k][d] = strides[k][d];
    }
    for (int k = 0; k < nops; k++) it->off[k] = 0;
}

double bx__load(const void *data, bx_dtype dt, int64_t off) {
    switch (dt) {
    case BX_F32: return ((const float *)data)[off];
    case BX_F64: return ((const double *)data)[off];
    case BX_I64: return (double)((const int64_t *)data)[off];
    case BX_I32: return ((const int32_t *)data)[off];
    case BX_U8: return ((const uint8_t *)data)[off];
    case BX_I8: return ((const int8_t *)data)[off];
    case BX_BOOL: return ((const uint8_t *)data)[off] != 0;
    }
    return NAN;
}

void bx__store(void *data, bx_dtype dt, int64_t off, double v) {
    switch (dt) {
    case BX_F32: ((float *)data)[off] = (float)v; break;
    case BX_F64: ((double *)data)[off] = v; break;
    case BX_I64: ((int64_t *)data)[off] = (int64_t)v; break;
    case BX_I32: ((int32_t *)data)[off] = (int32_t)v; break;
    case BX_U8: ((uint8_t *)data)[off] = (uint8_t)v; break;
    case BX_I8: ((int8_t *)data)[off] = (int8_t)v; break;
    case BX_BOOL: ((uint8_t *)data)[off] = v != 0; break;
    }
}

static int64_t logical_to_offset(const bx_tensor *t, int64_t i) {
    int64_t off = 0;
    for (int d = t->ndim - 1; d >= 0; d--) {
        int64_t s = t->shape[d];
        off += (i % s) * t->stride[d];
        i /= s;
    }
    return off;
}

double bx_get(const bx_tensor *t, int64_t i) { return bx__load(t->data, t->dtype, logical_to_offset(t, i)); }

void bx_set(bx_tensor *t, int64_t i, double v) { bx__store(t->data, t->dtype, logical_to_offset(t, i), v); }

void bx_fill(bx_tensor *t, double v) {
    int64_t n = bx_numel(t);
    if (bx_is_contiguous(t) && t->dtype == BX_F32) {
        float *p = t->data, fv = (float)v;
        for (int64_t i = 0; i < n; i++) p[i] = fv;
        return;
    }
    if (n == 0) return;
    const int64_t *strides[1] = {t->stride};
    bx__iter it;
    bx__iter_init(&it, t->ndim, t->shape, 1, strides);
    do bx__store(t->data, t->dtype, it.off[0], v);
    while (bx__iter_next(&it, 1));
}

bx_status bx_copy(bx_tensor *dst, const bx_tensor *src) {
    int64_t n = bx_numel(dst);
    if (n != bx_numel(src)) {
        char a[64], b[64];
        return bx__error(BX_ERR_SHAPE, "copy: destination %s and source %s differ in size",
                         bx_shape_str(dst, a, sizeof a), bx_shape_str(src, b, sizeof b));
    }
    if (n == 0) return BX_OK;
    if (dst->dtype == src->dtype && bx_is_contiguous(dst) && bx_is_contiguous(src)) {
        memmove(dst->data, src->data, (size_t)n * bx_dtype_size(dst->dtype));
        return BX_OK;
    }
    if (bx_same_shape(dst, src)) {
        const int64_t *strides[2] = {dst->stride, src->stride};
        bx__iter it;
        bx__iter_init(&it, dst->ndim, dst->shape, 2, strides);
        if (dst->dtype == BX_F32 && src->dtype == BX_F32) {
            float *d = dst->data;
            const float *s = src->data;
            do d[it.off[0]] = s[it.off[1]];
            while (bx__iter_next(&it, 2));
        } else {
            do bx__store(dst->data, dst->dtype, it.off[0], bx__load(src->data, src->dtype, it.off[1]));
            while (bx__iter_next(&it, 2));
        }
        return BX_OK;
    }
    for (int64_t i = 0; i < n; i++) bx_set(dst, i, bx_get(src, i));
    return BX_OK;
}

void bx__acc_f32(bx_tensor *dst, const bx_tensor *src) {
    int64_t n = bx_numel(dst);
    if (n == 0) return;
    float *d = dst->data;
    const float *s = src->data;
    if (bx_is_contiguous(dst) && bx_is_contiguous(src)) {
#pragma omp simd
        for (int64_t i = 0; i < n; i++) d[i] += s[i];
        return;
    }
    const int64_t *strides[2] = {dst->stride, src->stride};
    bx__iter it;
    bx__iter_init(&it, dst->ndim, dst->shape, 2, strides);
    do d[it.off[0]] += s[it.off[1]];
    while (bx__iter_next(&it, 2));
}
