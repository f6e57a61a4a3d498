/* test_checkpoint.c - the .ckpt container: round trip of a realistic tree,
 * names in the safetensors file, corruption (truncation, bit flips) and the
 * crash-safety of writes.
 *
 * `test_checkpoint --write-torch FILE` writes the checkpoint that
 * tests/io/check_ckpt_torch.py loads into a torch.nn model. */
#include "test_util.h"

#include "blixt/checkpoint.h"
#include "blixt/optim.h"
#include "io/io_int.h"

#include <dirent.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

static char g_dir[256];

static void tpath(char *buf, size_t n, const char *name) { snprintf(buf, n, "%s/%s", g_dir, name); }

/* Number of "*.tmp-*" files left in the test folder. */
static int temp_files(void) {
    DIR *d = opendir(g_dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strstr(e->d_name, ".tmp-")) n++;
    closedir(d);
    return n;
}

static bx_tensor *ramp(bx_dtype dt, int ndim, const int64_t *shape, double a, double b) {
    bx_tensor *t = bx_tensor_new(dt, ndim, shape);
    for (int64_t i = 0; i < bx_numel(t); i++) bx_set(t, i, a * (double)i + b);
    return t;
}

/* Adds an owned copy of t under key and frees t. */
static void put_tensor(bx_state *d, const char *key, bx_tensor *t) {
    CHECK_OK(bx_state_set_tensor(d, key, t));
    bx_tensor_free(t);
}

static const char *ES_KEY = "EarlyStopping{'monitor': 'val_loss', 'mode': 'min'}";
static const char *MC_KEY = "ModelCheckpoint{'monitor': \"val.acc\", 'mode': 'max', 'dirpath': 'a\\b'}";

/* epoch, global_step, state_dict (f32 + 0-d i64), optimizer_states (nested
 * tensors and nulls), lr_schedulers (lists, +-inf), callbacks with awkward keys. */
static bx_state *make_tree(void) {
    bx_state *ck = bx_state_dict();
    CHECK_OK(bx_state_set_int(ck, "epoch", 3));
    CHECK_OK(bx_state_set_int(ck, "global_step", 1234567890123LL));
    CHECK_OK(bx_state_set_string(ck, "pytorch-lightning_version", "1.3.8"));
    bx_state *sd = bx_state_dict();
    put_tensor(sd, "fc.weight", ramp(BX_F32, 2, (int64_t[]){3, 4}, 0.125, -0.75));
    put_tensor(sd, "fc.bias", ramp(BX_F32, 1, (int64_t[]){3}, -0.5, 0.25));
    put_tensor(sd, "bn.running_mean", ramp(BX_F32, 1, (int64_t[]){3}, 0.1, 0));
    put_tensor(sd, "bn.num_batches_tracked", ramp(BX_I64, 0, NULL, 0, 7));
    CHECK_OK(bx_state_set(ck, "state_dict", sd));

    bx_state *opts = bx_state_list();
    bx_state *o0 = bx_state_dict();
    bx_state *st = bx_state_dict();
    bx_state *p0 = bx_state_dict();
    CHECK_OK(bx_state_set_int(p0, "step", 10));
    put_tensor(p0, "exp_avg", ramp(BX_F32, 2, (int64_t[]){3, 4}, 1e-3, 0));
    put_tensor(p0, "exp_avg_sq", ramp(BX_F64, 1, (int64_t[]){5}, 1e-7, 1e-300));
    CHECK_OK(bx_state_set(st, "0", p0));
    bx_state *p1 = bx_state_dict();
    CHECK_OK(bx_state_set(p1, "momentum_buffer", bx_state_null()));
    CHECK_OK(bx_state_set(st, "1", p1));
    CHECK_OK(bx_state_set(o0, "state", st));
    bx_state *groups = bx_state_list();
    bx_state *g = bx_state_dict();
    CHECK_OK(bx_state_set_float(g, "lr", 0.001));
    bx_state *betas = bx_state_list();
    CHECK_OK(bx_state_append(betas, bx_state_float(0.9)));
    CHECK_OK(bx_state_append(betas, bx_state_float(0.999)));
    CHECK_OK(bx_state_set(g, "betas", betas));
    CHECK_OK(bx_state_set_bool(g, "amsgrad", false));
    bx_state *params = bx_state_list();
    CHECK_OK(bx_state_append(params, bx_state_int(0)));
    CHECK_OK(bx_state_append(params, bx_state_int(1)));
    CHECK_OK(bx_state_set(g, "params", params));
    CHECK_OK(bx_state_append(groups, g));
    CHECK_OK(bx_state_set(o0, "param_groups", groups));
    CHECK_OK(bx_state_append(opts, o0));
    CHECK_OK(bx_state_append(opts, bx_state_null()));
    bx_state *o2 = bx_state_list(); /* a tensor inside a list inside a list */
    bx_state *inner = bx_state_list();
    CHECK_OK(bx_state_append(inner, bx_state_null()));
    bx_tensor *u = ramp(BX_U8, 1, (int64_t[]){4}, 60, 5);
    CHECK_OK(bx_state_append(inner, bx_state_tensor(u)));
    bx_tensor_free(u);
    CHECK_OK(bx_state_append(o2, inner));
    CHECK_OK(bx_state_append(opts, o2));
    CHECK_OK(bx_state_set(ck, "optimizer_states", opts));

    bx_state *scheds = bx_state_list();
    bx_state *s0 = bx_state_dict();
    CHECK_OK(bx_state_set_float(s0, "best", INFINITY));
    CHECK_OK(bx_state_set_float(s0, "worst", -INFINITY));
    CHECK_OK(bx_state_set_float(s0, "tiny", 5e-324));
    CHECK_OK(bx_state_set_float(s0, "neg0", -0.0));
    bx_state *ms = bx_state_list();
    for (int i = 0; i < 3; i++) CHECK_OK(bx_state_append(ms, bx_state_int(10 * (i + 1))));
    CHECK_OK(bx_state_set(s0, "milestones", ms));
    CHECK_OK(bx_state_set(s0, "_last_lr", bx_state_list()));
    CHECK_OK(bx_state_set(s0, "empty", bx_state_dict()));
    put_tensor(s0, "no_rows", bx_tensor_zeros(BX_F32, 2, (int64_t[]){0, 3})); /* 0 bytes of data */
    put_tensor(s0, "mask", ramp(BX_BOOL, 1, (int64_t[]){3}, 1, 0));
    CHECK_OK(bx_state_append(scheds, s0));
    CHECK_OK(bx_state_set(ck, "lr_schedulers", scheds));

    bx_state *cbs = bx_state_dict();
    bx_state *es = bx_state_dict();
    CHECK_OK(bx_state_set_int(es, "wait_count", 2));
    CHECK_OK(bx_state_set_int(es, "patience", 3));
    put_tensor(es, "best_score", ramp(BX_F32, 0, NULL, 0, 0.25));
    CHECK_OK(bx_state_set(cbs, ES_KEY, es));
    bx_state *mc = bx_state_dict();
    CHECK_OK(bx_state_set_string(mc, "best_model_path", "ckpts/epoch=2-step=30.ckpt"));
    put_tensor(mc, "best.score%", ramp(BX_F32, 1, (int64_t[]){1}, 0, 0.875)); /* '.' and '%' escaped */
    CHECK_OK(bx_state_set(cbs, MC_KEY, mc));
    CHECK_OK(bx_state_set(ck, "callbacks", cbs));
    bx_state *hp = bx_state_dict();
    CHECK_OK(bx_state_set_string(hp, "name", "caf\xc3\xa9 \"quoted\"\n\ttab"));
    CHECK_OK(bx_state_set(ck, "hyper_parameters", hp));
    return ck;
}

/* Deep equality; floats and tensor data bit for bit. */
static bool tree_eq(const bx_state *a, const bx_state *b) {
    if (bx_state_typeof(a) != bx_state_typeof(b)) return false;
    switch (bx_state_typeof(a)) {
    case BX_STATE_NULL: return true;
    case BX_STATE_BOOL: return bx_state_get_bool(a) == bx_state_get_bool(b);
    case BX_STATE_INT: return bx_state_get_int(a) == bx_state_get_int(b);
    case BX_STATE_FLOAT: {
        double x = bx_state_get_float(a), y = bx_state_get_float(b);
        return memcmp(&x, &y, sizeof x) == 0;
    }
    case BX_STATE_STRING: return strcmp(bx_state_get_string(a), bx_state_get_string(b)) == 0;
    case BX_STATE_LIST:
        if (bx_state_len(a) != bx_state_len(b)) return false;
        for (size_t i = 0; i < bx_state_len(a); i++)
            if (!tree_eq(bx_state_at(a, i), bx_state_at(b, i))) return false;
        return true;
    case BX_STATE_DICT:
        if (bx_state_len(a) != bx_state_len(b)) return false;
        for (size_t i = 0; i < bx_state_len(a); i++)
            if (strcmp(bx_state_key_at(a, i), bx_state_key_at(b, i)) ||
                !tree_eq(bx_state_value_at(a, i), bx_state_value_at(b, i)))
                return false;
        return true;
    case BX_STATE_TENSOR: {
        const bx_tensor *x = bx_state_get_tensor(a), *y = bx_state_get_tensor(b);
        if (x->dtype != y->dtype || !bx_same_shape(x, y)) return false;
        return memcmp(x->data, y->data, (size_t)bx_numel(x) * bx_dtype_size(x->dtype)) == 0;
    }
    }
    return false;
}

static void test_round_trip(void) {
    char p[512];
    tpath(p, sizeof p, "rt.ckpt");
    bx_state *ck = make_tree();
    CHECK_OK(bx_checkpoint_write(p, ck));
    bx_state *back = NULL;
    CHECK_OK(bx_checkpoint_read(p, &back));
    CHECK(back && tree_eq(ck, back));
    if (back) {
        const bx_tensor *nb = bx_state_get_tensor(bx_state_get(bx_state_get(back, "state_dict"),
                                                               "bn.num_batches_tracked"));
        CHECK(nb && nb->ndim == 0 && nb->dtype == BX_I64 && bx_get(nb, 0) == 7);
        CHECK(isinf(bx_state_get_float(bx_state_get(bx_state_at(bx_state_get(back, "lr_schedulers"), 0), "worst"))));
    }
    /* names in the file: state_dict keys verbatim, the rest dotted paths */
    bx_st_file *f = NULL;
    CHECK_OK(bx_st_open(p, &f));
    if (f) {
        CHECK_EQ_INT(bx_st_count(f), 11);
        const char *want[] = {"fc.weight", "fc.bias", "bn.running_mean", "bn.num_batches_tracked",
                              "optimizer_states.0.state.0.exp_avg", "optimizer_states.0.state.0.exp_avg_sq",
                              "optimizer_states.2.0.1",
                              "callbacks.EarlyStopping{'monitor': 'val_loss', 'mode': 'min'}.best_score",
                              "callbacks.ModelCheckpoint{'monitor': \"val%2Eacc\", 'mode': 'max', 'dirpath': "
                              "'a\\b'}.best%2Escore%25"};
        for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
            const bx_tensor *t = bx_st_get(f, want[i]);
            if (!t) fprintf(stderr, "missing tensor name %s\n", want[i]);
            CHECK(t != NULL);
        }
        CHECK(bx_st_metadata(f, "format") && strcmp(bx_st_metadata(f, "format"), "pt") == 0);
        CHECK(bx_st_metadata(f, "blixt_format_version") != NULL);
        const char *crc = bx_st_metadata(f, "blixt_crc32");
        const char *json = bx_st_metadata(f, "blixt");
        CHECK(crc && strlen(crc) == 8 && json);
        if (crc && json) { /* recompute the documented CRC independently */
            const void *data;
            size_t n;
            bx__st_data_section(f, &data, &n);
            uLong c = crc32(0, (const Bytef *)json, (uInt)strlen(json));
            c = crc32(c, data, (uInt)n);
            char hex[16];
            snprintf(hex, sizeof hex, "%08lx", c);
            CHECK(strcmp(hex, crc) == 0);
        }
        bx_st_close(f);
    }
    /* overwrite with another tree */
    bx_state *small = bx_state_dict();
    CHECK_OK(bx_state_set_int(small, "epoch", 0));
    CHECK_OK(bx_checkpoint_write(p, small));
    bx_state *b2 = NULL;
    CHECK_OK(bx_checkpoint_read(p, &b2));
    CHECK(b2 && tree_eq(small, b2));
    bx_state_free(b2);
    bx_state_free(small);
    bx_state_free(back);
    bx_state_free(ck);
    CHECK_EQ_INT(temp_files(), 0);
}

/* A path longer than 200 bytes is stored under a shortened name. */
static void test_long_names(void) {
    char p[512], key[400];
    tpath(p, sizeof p, "long.ckpt");
    memset(key, 'k', 300);
    memcpy(key + 10, "\xc3\xa9\xc3\xa9\xc3\xa9", 6);
    key[300] = '\0';
    bx_state *ck = bx_state_dict(), *cb = bx_state_dict(), *cb2 = bx_state_dict();
    put_tensor(cb, "t", ramp(BX_F32, 1, (int64_t[]){2}, 1, 0));
    put_tensor(cb2, "u", ramp(BX_F32, 1, (int64_t[]){2}, 2, 0));
    CHECK_OK(bx_state_set(ck, key, cb));
    key[299] = 'j'; /* same first 200 bytes: the CRC suffix keeps the names apart */
    CHECK_OK(bx_state_set(ck, key, cb2));
    CHECK_OK(bx_checkpoint_write(p, ck));
    bx_state *back = NULL;
    CHECK_OK(bx_checkpoint_read(p, &back));
    CHECK(back && tree_eq(ck, back));
    bx_state_free(back);
    bx_state_free(ck);
}

static void test_write_errors(void) {
    char p[512];
    tpath(p, sizeof p, "err.ckpt");
    bx_state *l = bx_state_list();
    CHECK_ERR(bx_checkpoint_write(p, l), BX_ERR_INVALID, "must be a dict");
    bx_state_free(l);
    /* a state_dict key equal to another tensor's path */
    bx_state *ck = bx_state_dict(), *sd = bx_state_dict(), *x = bx_state_dict();
    put_tensor(sd, "x.w", ramp(BX_F32, 1, (int64_t[]){2}, 1, 0));
    CHECK_OK(bx_state_set(ck, "state_dict", sd));
    put_tensor(x, "w", ramp(BX_F32, 1, (int64_t[]){2}, 1, 0));
    CHECK_OK(bx_state_set(ck, "x", x));
    CHECK_ERR(bx_checkpoint_write(p, ck), BX_ERR_INVALID, "'x.w'");
    bx_state_free(ck);
    /* a dict that would read back as a tensor reference */
    ck = bx_state_dict();
    bx_state *fake = bx_state_dict();
    CHECK_OK(bx_state_set_string(fake, "__tensor__", "fc.weight"));
    CHECK_OK(bx_state_set(ck, "user", fake));
    CHECK_ERR(bx_checkpoint_write(p, ck), BX_ERR_INVALID, "__tensor__");
    bx_state_free(ck);
    CHECK(access(p, F_OK) != 0);

    /* missing folder */
    ck = make_tree();
    char bad[600];
    snprintf(bad, sizeof bad, "%s/no/such/dir/x.ckpt", g_dir);
    CHECK_ERR(bx_checkpoint_write(bad, ck), BX_ERR_IO, "no/such/dir/x.ckpt");
    /* target is a folder: rename fails, temp removed */
    CHECK_ERR(bx_checkpoint_write(g_dir, ck), BX_ERR_IO, g_dir);
    CHECK_EQ_INT(temp_files(), 0);

    /* a write that fails half-way (file size limit) leaves the old file intact */
    tpath(p, sizeof p, "keep.ckpt");
    bx_state *old = bx_state_dict();
    CHECK_OK(bx_state_set_int(old, "epoch", 41));
    CHECK_OK(bx_checkpoint_write(p, old));
    struct rlimit saved, lim;
    getrlimit(RLIMIT_FSIZE, &saved);
    lim = saved;
    lim.rlim_cur = 700;
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0);
    CHECK_ERR(bx_checkpoint_write(p, ck), BX_ERR_IO, "keep.ckpt");
    setrlimit(RLIMIT_FSIZE, &saved);
    signal(SIGXFSZ, prev);
    CHECK_EQ_INT(temp_files(), 0);
    bx_state *back = NULL;
    CHECK_OK(bx_checkpoint_read(p, &back));
    CHECK(back && tree_eq(old, back));
    bx_state_free(back);
    bx_state_free(old);
    bx_state_free(ck);
}

static unsigned char *slurp(const char *p, size_t *n) {
    FILE *fp = fopen(p, "rb");
    if (!fp) return NULL;
    fseek(fp, 0, SEEK_END);
    long len = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)len + 1);
    *n = fread(b, 1, (size_t)len, fp);
    fclose(fp);
    return b;
}

static void spit(const char *p, const unsigned char *b, size_t n) {
    FILE *fp = fopen(p, "wb");
    fwrite(b, 1, n, fp);
    fclose(fp);
}

/* Reading p must fail with FORMAT, naming the file (and `needle` if given). */
static int expect_corrupt(const char *p, const char *needle, const char *what, size_t at) {
    bx_state *out = (bx_state *)1;
    bx_status s = bx_checkpoint_read(p, &out);
    bool ok = s == BX_ERR_FORMAT && out == NULL && strstr(bx_errmsg(), p) &&
              (!needle || strstr(bx_errmsg(), needle));
    if (!ok) {
        fprintf(stderr, "%s at %zu: got %s: %s\n", what, at, bx_status_str(s), bx_errmsg());
        bx_state_free(s == BX_OK ? out : NULL);
    }
    return ok ? 0 : 1;
}

static void test_corruption(void) {
    char p[512], q[512];
    tpath(p, sizeof p, "good.ckpt");
    tpath(q, sizeof q, "bad.ckpt");
    bx_state *ck = make_tree();
    CHECK_OK(bx_checkpoint_write(p, ck));
    bx_state_free(ck);
    size_t n = 0;
    unsigned char *b = slurp(p, &n);
    CHECK(b && n > 64);
    if (!b) return;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | b[i];
    size_t data0 = 8 + (size_t)hlen;
    CHECK(data0 < n);

    int bad = 0, cases = 0;
    for (size_t cut = 0; cut < n; cut++) { /* the first 64 and last 64 cuts, every 3rd between */
        if (cut >= 64 && cut + 64 < n && cut % 3 != 0) continue;
        cases++;
        spit(q, b, cut);
        bad += expect_corrupt(q, "is truncated", "truncation", cut);
    }
    unsigned char *c = malloc(n);
    for (size_t i = 0; i < n; i++) { /* one bit of every byte; all 8 in the first 8 and some others */
        bool all = i < 8 || i % 31 == 0;
        for (int bit = all ? 0 : (int)(i % 8); bit < (all ? 8 : (int)(i % 8) + 1); bit++, cases++) {
            memcpy(c, b, n);
            c[i] ^= (unsigned char)(1u << bit);
            spit(q, c, n);
            bad += expect_corrupt(q, i >= data0 ? "checksum mismatch" : NULL, "bit flip", i * 8 + (size_t)bit);
        }
    }
    CHECK_EQ_INT(bad, 0);
    printf("  %d corrupt variants tried\n", cases);
    free(c);

    /* missing file */
    char miss[600];
    snprintf(miss, sizeof miss, "%s/missing.ckpt", g_dir);
    bx_state *out = NULL;
    CHECK_ERR(bx_checkpoint_read(miss, &out), BX_ERR_IO, "missing.ckpt");
    CHECK_ERR(bx_checkpoint_read(g_dir, &out), BX_ERR_IO, "folder");
    free(b);
}

/* Hand-made files: valid safetensors and CRC, but broken references. */
static void write_raw(const char *p, const char *json, bool extra_tensor) {
    bx_st_writer *w = bx_st_writer_new();
    bx_tensor *a = ramp(BX_F32, 1, (int64_t[]){2}, 1, 0);
    bx_tensor *e = ramp(BX_F32, 1, (int64_t[]){2}, 1, 0);
    CHECK_OK(bx_st_writer_add(w, "a", a));
    if (extra_tensor) CHECK_OK(bx_st_writer_add(w, "extra", e));
    CHECK_OK(bx_st_writer_meta(w, "format", "pt"));
    CHECK_OK(bx_st_writer_meta(w, "blixt_format_version", "1"));
    CHECK_OK(bx_st_writer_meta(w, "blixt", json));
    CHECK_OK(bx__st_writer_write_crc(w, p, "blixt_crc32", (uint32_t)crc32(0, (const Bytef *)json, (uInt)strlen(json))));
    bx_st_writer_free(w);
    bx_tensor_free(a);
    bx_tensor_free(e);
}

/* A parameter with a gradient buffer, values from a ramp. */
static bx_tensor *param(int ndim, const int64_t *shape, double a, double b) {
    bx_tensor *p = ramp(BX_F32, ndim, shape, a, b);
    p->requires_grad = true;
    p->flags |= BX_TF_PARAM;
    p->grad = bx_tensor_zeros(BX_F32, ndim, shape);
    return p;
}

static void fake_grads(bx_tensor **ps, int n, int step) {
    for (int k = 0; k < n; k++)
        for (int64_t i = 0; i < bx_numel(ps[k]); i++)
            bx_set(ps[k]->grad, i, sin(0.37 * (double)(i + 1) * (step + 1) + k) * 0.1);
}

/* Adam (amsgrad) state saved mid-run through a checkpoint continues
 * bit-identically to the unbroken run. */
static void test_optimizer_resume(void) {
    char p[512];
    tpath(p, sizeof p, "adam.ckpt");
    bx_tensor *a[2] = {param(2, (int64_t[]){3, 4}, 0.1, -0.5), param(1, (int64_t[]){3}, -0.2, 0.3)};
    bx_adam_opts ao = BX_ADAM_OPTS_INIT;
    ao.lr = 1e-2;
    ao.amsgrad = true;
    bx_optimizer *oa = bx_adam_new(&ao);
    CHECK_OK(bx_optimizer_add_group(oa, a, 2, NULL));
    for (int s = 0; s < 3; s++) {
        fake_grads(a, 2, s);
        CHECK_OK(bx_optimizer_step(oa));
    }
    bx_state *ck = bx_state_dict(), *sd = bx_state_dict(), *opts = bx_state_list();
    CHECK_OK(bx_state_set_tensor(sd, "w", a[0]));
    CHECK_OK(bx_state_set_tensor(sd, "b", a[1]));
    CHECK_OK(bx_state_set(ck, "state_dict", sd));
    CHECK_OK(bx_state_append(opts, bx_optimizer_state_dict(oa)));
    CHECK_OK(bx_state_set(ck, "optimizer_states", opts));
    CHECK_OK(bx_checkpoint_write(p, ck));
    bx_state_free(ck);

    bx_state *back = NULL;
    CHECK_OK(bx_checkpoint_read(p, &back));
    if (!back) return;
    bx_tensor *b[2] = {param(2, (int64_t[]){3, 4}, 0, 0), param(1, (int64_t[]){3}, 0, 0)};
    const bx_state *bsd = bx_state_get(back, "state_dict");
    CHECK_OK(bx_copy(b[0], bx_state_get_tensor(bx_state_get(bsd, "w"))));
    CHECK_OK(bx_copy(b[1], bx_state_get_tensor(bx_state_get(bsd, "b"))));
    bx_optimizer *ob = bx_adam_new(&ao);
    CHECK_OK(bx_optimizer_add_group(ob, b, 2, NULL));
    CHECK_OK(bx_optimizer_load_state_dict(ob, bx_state_at(bx_state_get(back, "optimizer_states"), 0)));
    for (int s = 3; s < 6; s++) {
        fake_grads(a, 2, s);
        fake_grads(b, 2, s);
        CHECK_OK(bx_optimizer_step(oa));
        CHECK_OK(bx_optimizer_step(ob));
    }
    for (int k = 0; k < 2; k++)
        CHECK(memcmp(a[k]->data, b[k]->data, (size_t)bx_numel(a[k]) * sizeof(float)) == 0);
    bx_state_free(back);
    bx_optimizer_free(oa);
    bx_optimizer_free(ob);
    for (int k = 0; k < 2; k++) {
        bx_tensor_free(a[k]);
        bx_tensor_free(b[k]);
    }
}

static void test_validation(void) {
    char p[512];
    tpath(p, sizeof p, "raw.ckpt");
    bx_state *out = NULL;
    write_raw(p, "{\"x\": {\"__tensor__\": \"a\"}}", false);
    CHECK_OK(bx_checkpoint_read(p, &out));
    bx_state_free(out);
    out = NULL;
    write_raw(p, "{\"x\": {\"__tensor__\": \"a\"}}", true);
    CHECK_ERR(bx_checkpoint_read(p, &out), BX_ERR_FORMAT, "'extra' is in the file but no state refers to it");
    write_raw(p, "{\"x\": {\"__tensor__\": \"a\"}, \"y\": {\"__tensor__\": \"b\"}}", false);
    CHECK_ERR(bx_checkpoint_read(p, &out), BX_ERR_FORMAT, "'b', which is not in the file");
    write_raw(p, "{\"x\": {\"__tensor__\": \"a\"}", false);
    CHECK_ERR(bx_checkpoint_read(p, &out), BX_ERR_FORMAT, "not valid state JSON");
    write_raw(p, "[{\"__tensor__\": \"a\"}]", false);
    CHECK_ERR(bx_checkpoint_read(p, &out), BX_ERR_FORMAT, "not a dict");
    CHECK(out == NULL);
    /* plain safetensors without the blixt metadata */
    bx_st_writer *w = bx_st_writer_new();
    bx_tensor *a = ramp(BX_F32, 1, (int64_t[]){2}, 1, 0);
    CHECK_OK(bx_st_writer_add(w, "a", a));
    CHECK_OK(bx_st_writer_write(w, p));
    bx_st_writer_free(w);
    bx_tensor_free(a);
    CHECK_ERR(bx_checkpoint_read(p, &out), BX_ERR_FORMAT, "no blixt metadata");
}

/* The file check_ckpt_torch.py loads: a Linear(4,3) + BatchNorm1d(3) state
 * dict (values i*0.25-1 for fc.weight, ...) plus one optimizer moment. */
static int write_torch(const char *path) {
    bx_state *ck = bx_state_dict();
    bx_state_set_int(ck, "epoch", 1);
    bx_state_set_int(ck, "global_step", 2);
    bx_state *sd = bx_state_dict();
    put_tensor(sd, "fc.weight", ramp(BX_F32, 2, (int64_t[]){3, 4}, 0.25, -1.0));
    put_tensor(sd, "fc.bias", ramp(BX_F32, 1, (int64_t[]){3}, -0.5, 0.5));
    put_tensor(sd, "bn.weight", ramp(BX_F32, 1, (int64_t[]){3}, 0.5, 1.0));
    put_tensor(sd, "bn.bias", ramp(BX_F32, 1, (int64_t[]){3}, 0.125, -0.125));
    put_tensor(sd, "bn.running_mean", ramp(BX_F32, 1, (int64_t[]){3}, 0.3, 0.1));
    put_tensor(sd, "bn.running_var", ramp(BX_F32, 1, (int64_t[]){3}, 0.5, 2.0));
    put_tensor(sd, "bn.num_batches_tracked", ramp(BX_I64, 0, NULL, 0, 5));
    bx_state_set(ck, "state_dict", sd);
    bx_state *opts = bx_state_list(), *o = bx_state_dict(), *st = bx_state_dict(), *p0 = bx_state_dict();
    put_tensor(p0, "exp_avg", ramp(BX_F32, 2, (int64_t[]){3, 4}, 0.01, 0));
    bx_state_set(st, "0", p0);
    bx_state_set(o, "state", st);
    bx_state_append(opts, o);
    bx_state_set(ck, "optimizer_states", opts);
    bx_status s = bx_checkpoint_write(path, ck);
    bx_state_free(ck);
    if (s != BX_OK) fprintf(stderr, "write failed: %s\n", bx_errmsg());
    return s == BX_OK ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "--write-torch") == 0) return write_torch(argv[2]);
    /* tmpfs when there is one: fsync on a shared disk can take ~1 s */
    struct stat sb;
    snprintf(g_dir, sizeof g_dir, "%s/bx_ckpt_XXXXXX",
             stat("/dev/shm", &sb) == 0 && S_ISDIR(sb.st_mode) && access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_round_trip();
    test_long_names();
    test_write_errors();
    test_corruption();
    test_validation();
    test_optimizer_resume();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
    return tu_finish("checkpoint");
}
