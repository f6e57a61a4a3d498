/* test_loader.c - datasets and the DataLoader: batch counts, short last
 * batch, seeded shuffle (a permutation, deterministic per (seed, epoch)),
 * state round trip, steady-state allocation, errors, the IDX helper (small
 * hand-made files, and Fashion-MNIST when installed). */
#include "test_util.h"

#include "blixt/data.h"

#include <sys/stat.h>
#include <unistd.h>

/* x (n,3) f32 with x[i][k] = 10*i + k, y (n) i64 = i. */
static bx_dataset *make_ds(int64_t n) {
    bx_tensor *x = bx_tensor_new(BX_F32, 2, (int64_t[]){n, 3});
    bx_tensor *y = bx_tensor_new(BX_I64, 1, (int64_t[]){n});
    for (int64_t i = 0; i < n; i++) {
        for (int k = 0; k < 3; k++) bx_set(x, i * 3 + k, (double)(10 * i + k));
        bx_set(y, i, (double)i);
    }
    return bx_dataset_from_tensors(x, y, true);
}

/* Every row of the batch matches its label. */
static bool batch_consistent(const bx_batch *b) {
    if (!b->x || !b->y || b->x->shape[0] != b->size || b->y->shape[0] != b->size) return false;
    for (int64_t r = 0; r < b->size; r++) {
        double lab = bx_get(b->y, r);
        for (int k = 0; k < 3; k++)
            if (bx_get(b->x, r * 3 + k) != 10 * lab + k) return false;
    }
    return true;
}

/* The labels of one epoch in order; returns the number of samples seen. */
static int64_t epoch_order(bx_loader *l, bx_step *st, int64_t *order) {
    int64_t k = 0;
    for (int64_t i = 0; i < bx_loader_len(l); i++) {
        bx_step_reset(st);
        bx_batch b;
        CHECK_OK(bx_loader_batch(l, st, i, &b));
        CHECK(batch_consistent(&b));
        for (int64_t r = 0; r < b.size; r++) order[k++] = (int64_t)bx_get(b.y, r);
    }
    return k;
}

static void test_counts(void) {
    bx_dataset *ds = make_ds(10);
    CHECK(ds && bx_dataset_len(ds) == 10);
    bx_step *st = bx_step_new();
    bx_loader_opts o = BX_LOADER_OPTS_INIT;
    o.batch_size = 4;
    bx_loader *l = bx_loader_new(ds, &o);
    CHECK_EQ_INT(bx_loader_len(l), 3);
    int64_t sizes[3] = {4, 4, 2};
    for (int i = 0; i < 3; i++) {
        bx_batch b;
        CHECK_OK(bx_loader_batch(l, st, i, &b));
        CHECK_EQ_INT(b.size, sizes[i]);
        CHECK(batch_consistent(&b));
        CHECK_EQ_INT((int64_t)bx_get(b.y, 0), 4 * i); /* consecutive rows without shuffle */
        CHECK(b.x->ndim == 2 && b.x->shape[1] == 3 && b.y->ndim == 1);
    }
    bx_batch b;
    CHECK_ERR(bx_loader_batch(l, st, 3, &b), BX_ERR_INVALID, "out of range");
    CHECK(b.x == NULL && b.size == 0);
    CHECK_ERR(bx_loader_batch(l, st, -1, &b), BX_ERR_INVALID, "out of range");
    CHECK_EQ_INT(bx_step_status(st), BX_OK); /* a bad index does not poison the step */
    bx_loader_free(l);

    o.drop_last = true;
    l = bx_loader_new(ds, &o);
    CHECK_EQ_INT(bx_loader_len(l), 2);
    CHECK_ERR(bx_loader_batch(l, st, 2, &b), BX_ERR_INVALID, "2 batches");
    bx_loader_free(l);
    o.batch_size = 5; /* exact multiple: the same either way */
    l = bx_loader_new(ds, &o);
    CHECK_EQ_INT(bx_loader_len(l), 2);
    bx_loader_free(l);
    o.batch_size = 32; /* larger than the dataset */
    l = bx_loader_new(ds, &o);
    CHECK_EQ_INT(bx_loader_len(l), 0);
    bx_loader_free(l);
    o.drop_last = false;
    o.shuffle = true;
    l = bx_loader_new(ds, &o);
    CHECK_EQ_INT(bx_loader_len(l), 1);
    CHECK_OK(bx_loader_batch(l, st, 0, &b));
    CHECK_EQ_INT(b.size, 10);
    CHECK(batch_consistent(&b));
    bx_loader_free(l);
    /* defaults: batch_size 1 */
    l = bx_loader_new(ds, NULL);
    CHECK_EQ_INT(bx_loader_len(l), 10);
    CHECK(bx_loader_dataset(l) == ds);
    bx_loader_free(l);
    bx_step_free(st);
    bx_dataset_free(ds);
}

static bool is_perm(const int64_t *p, int64_t n) {
    bool seen[256] = {false};
    for (int64_t i = 0; i < n; i++) {
        if (p[i] < 0 || p[i] >= n || seen[p[i]]) return false;
        seen[p[i]] = true;
    }
    return true;
}

static void test_shuffle(void) {
    enum { N = 100 };
    bx_dataset *ds = make_ds(N);
    bx_step *st = bx_step_new();
    bx_loader_opts o = BX_LOADER_OPTS_INIT;
    o.batch_size = 7;
    o.shuffle = true;
    o.seed = 1234;
    bx_loader *l = bx_loader_new(ds, &o), *l2 = bx_loader_new(ds, &o);
    int64_t e0[N], e0b[N], e1[N], e1b[N], s2[N];
    CHECK_EQ_INT(epoch_order(l, st, e0), N);
    CHECK(is_perm(e0, N));
    int fixed = 0;
    for (int i = 0; i < N; i++) fixed += e0[i] == i;
    CHECK(fixed < 10); /* it really shuffles */
    CHECK_EQ_INT(epoch_order(l2, st, e0b), N); /* another loader, same (seed, epoch) */
    CHECK(memcmp(e0, e0b, sizeof e0) == 0);
    bx_loader_set_epoch(l, 1);
    CHECK_EQ_INT(epoch_order(l, st, e1), N);
    CHECK(is_perm(e1, N));
    CHECK(memcmp(e0, e1, sizeof e0) != 0);
    bx_loader_set_epoch(l2, 1);
    epoch_order(l2, st, e1b);
    CHECK(memcmp(e1, e1b, sizeof e1) == 0);
    bx_loader_set_epoch(l, 0); /* back to epoch 0: the same order again */
    epoch_order(l, st, e0b);
    CHECK(memcmp(e0, e0b, sizeof e0) == 0);
    bx_loader_set_seed(l, 1235);
    epoch_order(l, st, s2);
    CHECK(is_perm(s2, N) && memcmp(e0, s2, sizeof e0) != 0);
    bx_loader_free(l);
    bx_loader_free(l2);
    bx_step_free(st);
    bx_dataset_free(ds);
}

static void test_state(void) {
    enum { N = 50 };
    bx_dataset *ds = make_ds(N), *other = make_ds(N + 1);
    bx_step *st = bx_step_new();
    bx_loader_opts o = BX_LOADER_OPTS_INIT;
    o.batch_size = 8;
    o.shuffle = true;
    o.drop_last = true;
    o.seed = 0xF00DFACECAFEBEEFull; /* > 2^63: stored as the int64 with the same bits */
    bx_loader *l = bx_loader_new(ds, &o);
    bx_loader_set_epoch(l, 3);
    bx_state *s = bx_loader_state_dict(l);
    CHECK(s != NULL);
    /* through JSON, as a checkpoint stores it */
    char *json = bx_state_to_json(s, NULL, NULL);
    bx_state *s2 = NULL;
    CHECK_OK(bx_state_from_json(json, NULL, NULL, &s2));
    bx_free(json);
    bx_loader *m = bx_loader_new(ds, NULL); /* batch_size 1, no shuffle */
    CHECK_OK(bx_loader_load_state_dict(m, s2));
    CHECK_EQ_INT(bx_loader_len(m), N / 8);
    int64_t a[N], b[N];
    CHECK_EQ_INT(epoch_order(l, st, a), 48);
    CHECK_EQ_INT(epoch_order(m, st, b), 48);
    CHECK(memcmp(a, b, 48 * sizeof *a) == 0);
    bx_state *s3 = bx_loader_state_dict(m);
    int64_t ep = -1, seed = 0;
    CHECK_OK(bx_state_need_int(s3, "epoch", &ep));
    CHECK_OK(bx_state_need_int(s3, "seed", &seed));
    CHECK_EQ_INT(ep, 3);
    CHECK((uint64_t)seed == 0xF00DFACECAFEBEEFull);
    bx_state_free(s3);

    /* another dataset length: a clear error, nothing changed */
    bx_loader *w = bx_loader_new(other, NULL);
    CHECK_ERR(bx_loader_load_state_dict(w, s2), BX_ERR_INVALID, "50 samples");
    CHECK_EQ_INT(bx_loader_len(w), N + 1);
    /* missing key / wrong type */
    bx_state *bad = bx_state_copy(s2);
    CHECK_OK(bx_state_set_string(bad, "batch_size", "eight"));
    CHECK_ERR(bx_loader_load_state_dict(m, bad), BX_ERR_FORMAT, "batch_size");
    bx_state_free(bad);
    bad = bx_state_dict();
    CHECK_OK(bx_state_set_int(bad, "seed", 1));
    CHECK_ERR(bx_loader_load_state_dict(m, bad), BX_ERR_FORMAT, "epoch");
    bx_state_free(bad);
    bad = bx_state_copy(s2);
    CHECK_OK(bx_state_set_int(bad, "batch_size", 0));
    CHECK_ERR(bx_loader_load_state_dict(m, bad), BX_ERR_FORMAT, "batch_size");
    bx_state_free(bad);
    CHECK_EQ_INT(bx_loader_len(m), N / 8); /* failed loads changed nothing */

    bx_state_free(s);
    bx_state_free(s2);
    bx_loader_free(l);
    bx_loader_free(m);
    bx_loader_free(w);
    bx_step_free(st);
    bx_dataset_free(ds);
    bx_dataset_free(other);
}

/* Iterating an epoch a second time allocates nothing (only the step arena). */
static void test_steady_state(void) {
    enum { N = 1000 };
    bx_dataset *ds = make_ds(N);
    bx_step *st = bx_step_new();
    for (int sh = 0; sh < 2; sh++) {
        bx_loader_opts o = BX_LOADER_OPTS_INIT;
        o.batch_size = 64;
        o.shuffle = sh;
        o.seed = 5;
        bx_loader *l = bx_loader_new(ds, &o);
        int64_t order[N];
        epoch_order(l, st, order); /* warm-up: the arena reaches its size */
        uint64_t before = bx_alloc_count();
        bx_loader_set_epoch(l, 1);
        epoch_order(l, st, order);
        epoch_order(l, st, order);
        CHECK_EQ_INT(bx_alloc_count() - before, 0);
        bx_loader_free(l);
    }
    bx_step_free(st);
    bx_dataset_free(ds);
}

static void test_dataset_errors(void) {
    bx_tensor *x = bx_tensor_zeros(BX_F32, 2, (int64_t[]){4, 2});
    bx_tensor *y = bx_tensor_zeros(BX_I64, 1, (int64_t[]){5});
    bx_tensor *s0 = bx_tensor_zeros(BX_F32, 0, NULL);
    CHECK(bx_dataset_from_tensors(x, y, false) == NULL);
    CHECK(strstr(bx_errmsg(), "(4,2)") && strstr(bx_errmsg(), "(5)"));
    CHECK(bx_dataset_from_tensors(s0, NULL, false) == NULL);
    CHECK(strstr(bx_errmsg(), "0-d") != NULL);
    CHECK(bx_dataset_from_tensors(NULL, y, false) == NULL);
    CHECK(bx_dataset_from_tensors(x, s0, false) == NULL);
    /* x only, no targets */
    bx_dataset *ds = bx_dataset_from_tensors(x, NULL, false);
    CHECK(ds && bx_dataset_y(ds) == NULL && bx_dataset_x(ds) == x);
    bx_step *st = bx_step_new();
    bx_loader *l = bx_loader_new(ds, NULL);
    bx_batch b;
    CHECK_OK(bx_loader_batch(l, st, 3, &b));
    CHECK(b.y == NULL && b.size == 1);
    bx_loader_free(l);
    bx_loader_opts o = BX_LOADER_OPTS_INIT;
    o.batch_size = 0;
    CHECK(bx_loader_new(ds, &o) == NULL);
    CHECK(strstr(bx_errmsg(), "batch_size") != NULL);
    CHECK(bx_loader_new(NULL, NULL) == NULL);
    bx_dataset_free(ds);
    /* take_ownership frees the tensors even when the call fails (ASan/LSan) */
    CHECK(bx_dataset_from_tensors(bx_tensor_zeros(BX_F32, 1, (int64_t[]){3}),
                                  bx_tensor_zeros(BX_F32, 1, (int64_t[]){2}), true) == NULL);

    /* a non-contiguous x (the transpose of a (3,4) tensor) is copied once */
    bx_tensor *base = bx_tensor_new(BX_F32, 2, (int64_t[]){3, 4});
    for (int i = 0; i < 12; i++) bx_set(base, i, i);
    bx_tensor tr = *base;
    tr.shape[0] = 4;
    tr.shape[1] = 3;
    tr.stride[0] = 1;
    tr.stride[1] = 4;
    tr.flags = 0;
    ds = bx_dataset_from_tensors(&tr, NULL, false);
    CHECK(ds && bx_dataset_len(ds) == 4);
    l = bx_loader_new(ds, &(bx_loader_opts){.batch_size = 2});
    CHECK_OK(bx_loader_batch(l, st, 1, &b));
    /* rows 2,3 of the transpose: [2,6,10], [3,7,11] */
    CHECK(b.size == 2 && bx_get(b.x, 0) == 2 && bx_get(b.x, 1) == 6 && bx_get(b.x, 5) == 11);
    bx_loader_free(l);
    bx_dataset_free(ds);
    bx_tensor_free(base);
    bx_step_free(st);
    bx_tensor_free(x);
    bx_tensor_free(y);
    bx_tensor_free(s0);
}

/* Writes a raw u8 IDX file with the given dims. */
static void write_idx(const char *path, int nd, const uint32_t *dims, const uint8_t *data, size_t n) {
    FILE *f = fopen(path, "wb");
    uint8_t h[4] = {0, 0, 0x08, (uint8_t)nd};
    fwrite(h, 1, 4, f);
    for (int i = 0; i < nd; i++) {
        uint8_t be[4] = {(uint8_t)(dims[i] >> 24), (uint8_t)(dims[i] >> 16), (uint8_t)(dims[i] >> 8), (uint8_t)dims[i]};
        fwrite(be, 1, 4, f);
    }
    fwrite(data, 1, n, f);
    fclose(f);
}

static void test_idx_small(void) {
    char dir[] = "/tmp/bx_loader_XXXXXX";
    if (!mkdtemp(dir)) return;
    char im[64], lb[64], lb2[64], lb3[64];
    snprintf(im, sizeof im, "%s/im", dir);
    snprintf(lb, sizeof lb, "%s/lb", dir);
    snprintf(lb2, sizeof lb2, "%s/lb2", dir);
    snprintf(lb3, sizeof lb3, "%s/lb3", dir);
    uint8_t px[3 * 2 * 2];
    for (int i = 0; i < 12; i++) px[i] = (uint8_t)(i * 23);
    write_idx(im, 3, (uint32_t[]){3, 2, 2}, px, 12);
    write_idx(lb, 1, (uint32_t[]){3}, (uint8_t[]){7, 0, 9}, 3);
    write_idx(lb2, 1, (uint32_t[]){4}, (uint8_t[]){1, 2, 3, 4}, 4);
    write_idx(lb3, 2, (uint32_t[]){3, 1}, (uint8_t[]){1, 2, 3}, 3);
    bx_dataset *ds = NULL;
    CHECK_OK(bx_dataset_from_idx(im, lb, false, &ds));
    if (ds) {
        const bx_tensor *x = bx_dataset_x(ds), *y = bx_dataset_y(ds);
        CHECK(x->dtype == BX_F32 && x->ndim == 4 && x->shape[0] == 3 && x->shape[1] == 1 && x->shape[2] == 2 &&
              x->shape[3] == 2);
        for (int i = 0; i < 12; i++) CHECK(((float *)x->data)[i] == (float)px[i] / 255.0f);
        CHECK(y->dtype == BX_I64 && y->ndim == 1 && bx_get(y, 0) == 7 && bx_get(y, 2) == 9);
        bx_dataset_free(ds);
    }
    CHECK_OK(bx_dataset_from_idx(im, NULL, true, &ds));
    if (ds) {
        const bx_tensor *x = bx_dataset_x(ds);
        CHECK(x->ndim == 2 && x->shape[0] == 3 && x->shape[1] == 4 && bx_dataset_y(ds) == NULL);
        bx_dataset_free(ds);
    }
    CHECK_ERR(bx_dataset_from_idx(im, lb2, false, &ds), BX_ERR_SHAPE, "differ in N");
    CHECK(ds == NULL);
    CHECK_ERR(bx_dataset_from_idx(im, lb3, false, &ds), BX_ERR_SHAPE, "1-d integers");
    CHECK_ERR(bx_dataset_from_idx(lb, NULL, false, &ds), BX_ERR_SHAPE, "expected u8 (N,H,W)");
    char miss[80];
    snprintf(miss, sizeof miss, "%s/missing", dir);
    CHECK_ERR(bx_dataset_from_idx(miss, lb, false, &ds), BX_ERR_IO, "missing");
    unlink(im);
    unlink(lb);
    unlink(lb2);
    unlink(lb3);
    rmdir(dir);
}

static void test_fashion_mnist(void) {
    const char *dir = "/usr/share/datasets/fashion-mnist";
    char im[256], lb[256];
    snprintf(im, sizeof im, "%s/t10k-images-idx3-ubyte.gz", dir);
    snprintf(lb, sizeof lb, "%s/t10k-labels-idx1-ubyte.gz", dir);
    if (access(im, R_OK) != 0 || access(lb, R_OK) != 0) {
        printf("Fashion-MNIST not installed: skipped\n");
        return;
    }
    bx_dataset *ds = NULL;
    CHECK_OK(bx_dataset_from_idx(im, lb, false, &ds));
    if (!ds) return;
    const bx_tensor *x = bx_dataset_x(ds), *y = bx_dataset_y(ds);
    CHECK_EQ_INT(bx_dataset_len(ds), 10000);
    CHECK(x->ndim == 4 && x->shape[1] == 1 && x->shape[2] == 28 && x->shape[3] == 28);
    double lo = 1, hi = 0, sum = 0;
    const float *px = x->data;
    for (int64_t i = 0; i < bx_numel(x); i++) {
        lo = px[i] < lo ? px[i] : lo;
        hi = px[i] > hi ? px[i] : hi;
        sum += px[i];
    }
    CHECK(lo == 0.0 && hi == 1.0);
    CHECK_NEAR(sum / (double)bx_numel(x), 0.2868, 0.01); /* torchvision: test-set mean ~0.2868 */
    int64_t count[10] = {0};
    for (int64_t i = 0; i < 10000; i++) count[(int)bx_get(y, i)]++;
    for (int c = 0; c < 10; c++) CHECK_EQ_INT(count[c], 1000);
    CHECK_EQ_INT((int64_t)bx_get(y, 0), 9); /* the first test image is an ankle boot */

    bx_loader_opts o = BX_LOADER_OPTS_INIT;
    o.batch_size = 256;
    o.shuffle = true;
    o.seed = 42;
    bx_loader *l = bx_loader_new(ds, &o);
    CHECK_EQ_INT(bx_loader_len(l), 40);
    bx_step *st = bx_step_new();
    int64_t seen = 0, cls[10] = {0};
    for (int64_t i = 0; i < bx_loader_len(l); i++) {
        bx_step_reset(st);
        bx_batch b;
        CHECK_OK(bx_loader_batch(l, st, i, &b));
        seen += b.size;
        for (int64_t r = 0; r < b.size; r++) cls[(int)bx_get(b.y, r)]++;
    }
    CHECK_EQ_INT(seen, 10000);
    for (int c = 0; c < 10; c++) CHECK_EQ_INT(cls[c], 1000);
    bx_step_free(st);
    bx_loader_free(l);
    bx_dataset_free(ds);
    printf("  Fashion-MNIST t10k: 10000 samples, 40 batches of <= 256\n");
}

int main(void) {
    test_counts();
    test_shuffle();
    test_state();
    test_steady_state();
    test_dataset_errors();
    test_idx_small();
    test_fashion_mnist();
    return tu_finish("loader");
}
