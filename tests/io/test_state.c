/* test_state.c - the bx_state tree and its JSON form. */
#include "test_util.h"
#include "core/core_int.h"

#include <math.h>

static bx_state *sample_tree(void) {
    bx_state *d = bx_state_dict();
    CHECK_OK(bx_state_set(d, "n", bx_state_null()));
    CHECK_OK(bx_state_set_bool(d, "t", true));
    CHECK_OK(bx_state_set_bool(d, "f", false));
    CHECK_OK(bx_state_set_int(d, "i", -1234567890123LL));
    CHECK_OK(bx_state_set_float(d, "x", 0.1));
    CHECK_OK(bx_state_set_float(d, "eight", 8.0));
    CHECK_OK(bx_state_set_float(d, "tiny", 1e-8));
    CHECK_OK(bx_state_set_float(d, "nan", NAN));
    CHECK_OK(bx_state_set_float(d, "pinf", INFINITY));
    CHECK_OK(bx_state_set_float(d, "ninf", -INFINITY));
    CHECK_OK(bx_state_set_string(d, "s", "he said \"hi\"\n\\ \x01 é"));
    bx_state *l = bx_state_list();
    CHECK_OK(bx_state_append(l, bx_state_int(1)));
    CHECK_OK(bx_state_append(l, bx_state_float(2.5)));
    bx_state *inner = bx_state_dict();
    CHECK_OK(bx_state_set_string(inner, "k", "v"));
    CHECK_OK(bx_state_append(l, inner));
    CHECK_OK(bx_state_append(l, bx_state_list()));
    CHECK_OK(bx_state_set(d, "list", l));
    CHECK_OK(bx_state_set(d, "empty", bx_state_dict()));
    return d;
}

static bool state_equal(const bx_state *a, const bx_state *b) {
    if (bx_state_typeof(a) != bx_state_typeof(b)) return false;
    switch (bx_state_typeof(a)) {
    case BX_STATE_NULL: return true;
    case BX_STATE_BOOL: return bx_state_get_bool(a) == bx_state_get_bool(b);
    case BX_STATE_INT: return bx_state_get_int(a) == bx_state_get_int(b);
    case BX_STATE_FLOAT: {
        double x = bx_state_get_float(a), y = bx_state_get_float(b);
        return (isnan(x) && isnan(y)) || memcmp(&x, &y, sizeof x) == 0;
    }
    case BX_STATE_STRING: return strcmp(bx_state_get_string(a), bx_state_get_string(b)) == 0;
    case BX_STATE_TENSOR: {
        const bx_tensor *x = bx_state_get_tensor(a), *y = bx_state_get_tensor(b);
        if (x->dtype != y->dtype || !bx_same_shape(x, y)) return false;
        for (int64_t i = 0; i < bx_numel(x); i++)
            if (bx_get(x, i) != bx_get(y, i)) return false;
        return true;
    }
    case BX_STATE_LIST:
        if (bx_state_len(a) != bx_state_len(b)) return false;
        for (size_t i = 0; i < bx_state_len(a); i++)
            if (!state_equal(bx_state_at(a, i), bx_state_at(b, i))) return false;
        return true;
    case BX_STATE_DICT:
        if (bx_state_len(a) != bx_state_len(b)) return false;
        for (size_t i = 0; i < bx_state_len(a); i++) {
            if (strcmp(bx_state_key_at(a, i), bx_state_key_at(b, i)) != 0) return false;
            if (!state_equal(bx_state_value_at(a, i), bx_state_value_at(b, i))) return false;
        }
        return true;
    }
    return false;
}

static void test_nodes(void) {
    bx_state *d = sample_tree();
    CHECK_EQ_INT(bx_state_typeof(d), BX_STATE_DICT);
    CHECK_EQ_INT(bx_state_len(d), 13);
    CHECK(strcmp(bx_state_key_at(d, 0), "n") == 0);
    CHECK(strcmp(bx_state_key_at(d, 12), "empty") == 0);
    CHECK(bx_state_get(d, "missing") == NULL);
    CHECK_EQ_INT(bx_state_get_int(bx_state_get(d, "i")), -1234567890123LL);
    CHECK_EQ_INT(bx_state_get_int(bx_state_get(d, "eight")), 8);
    CHECK(bx_state_get_float(bx_state_get(d, "i")) == -1234567890123.0);
    CHECK(bx_state_get_string(bx_state_get(d, "i")) == NULL);
    /* set replaces in place, keeping the position */
    CHECK_OK(bx_state_set_int(d, "t", 7));
    CHECK(strcmp(bx_state_key_at(d, 1), "t") == 0);
    CHECK_EQ_INT(bx_state_get_int(bx_state_value_at(d, 1)), 7);
    CHECK_EQ_INT(bx_state_len(d), 13);
    /* deep copy is independent */
    bx_state *c = bx_state_copy(d);
    CHECK(state_equal(c, d));
    CHECK_OK(bx_state_set_int(c, "i", 1));
    CHECK_EQ_INT(bx_state_get_int(bx_state_get(d, "i")), -1234567890123LL);
    bx_state_free(c);
    /* typed getters */
    int64_t iv;
    double fv;
    bool bv;
    CHECK_OK(bx_state_need_int(d, "i", &iv));
    CHECK_OK(bx_state_need_int(d, "eight", &iv)); /* integral float accepted */
    CHECK_EQ_INT(iv, 8);
    CHECK_ERR(bx_state_need_int(d, "x", &iv), BX_ERR_FORMAT, "'x' is 0.10000000000000001, expected an integer");
    CHECK_OK(bx_state_need_float(d, "i", &fv));
    CHECK_ERR(bx_state_need_float(d, "lr", &fv), BX_ERR_NOT_FOUND, "key 'lr' missing");
    CHECK_ERR(bx_state_need_float(d, "s", &fv), BX_ERR_FORMAT, "'s' is a string, expected a number");
    CHECK_ERR(bx_state_need_bool(d, "i", &bv), BX_ERR_FORMAT, "'i' is an integer, expected a bool");
    CHECK_OK(bx_state_need_bool(d, "f", &bv));
    CHECK(!bv);
    /* append / set on the wrong node type */
    CHECK_ERR(bx_state_append(d, bx_state_int(1)), BX_ERR_INVALID, "not a list");
    CHECK_ERR(bx_state_set(bx_state_get(d, "list"), "k", bx_state_int(1)), BX_ERR_INVALID, "not a dict");
    bx_state_free(d);
    bx_state_free(NULL);
}

static void test_float_format(void) {
    struct {
        double v;
        const char *s;
    } cases[] = {
        {0.1, "0.1"},           {8.0, "8.0"},
        {1e-8, "1e-08"},        {0.0001, "0.0001"},
        {1e-5, "1e-05"},        {100.0, "100.0"},
        {1e16, "1e+16"},        {1.5e16, "1.5e+16"},
        {123456789.0, "123456789.0"}, {0.020000000000000004, "0.020000000000000004"},
        {-2.5, "-2.5"},         {0.0, "0.0"},
        {-0.0, "-0.0"},         {1e100, "1e+100"},
        {(double)0.3f, "0.30000001192092896"}, {5e-324, "5e-324"},
        {1.7976931348623157e308, "1.7976931348623157e+308"},
        {1234567890123456.0, "1234567890123456.0"},
    };
    char buf[40];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bx_state *f = bx_state_float(cases[i].v);
        char *j = bx_state_to_json(f, NULL, NULL);
        if (strcmp(j, cases[i].s) != 0) fprintf(stderr, "format %.17g: got %s want %s\n", cases[i].v, j, cases[i].s);
        CHECK(strcmp(j, cases[i].s) == 0);
        bx_state *back = NULL;
        CHECK_OK(bx_state_from_json(j, NULL, NULL, &back));
        CHECK(state_equal(f, back));
        bx_free(j);
        bx_state_free(f);
        bx_state_free(back);
    }
    (void)buf;
}

static void test_json_roundtrip(void) {
    bx_state *d = sample_tree();
    char *j = bx_state_to_json(d, NULL, NULL);
    CHECK(j != NULL);
    CHECK(strstr(j, "\"nan\": \"NaN\"") != NULL);
    CHECK(strstr(j, "\"pinf\": \"Infinity\"") != NULL);
    CHECK(strstr(j, "\"ninf\": \"-Infinity\"") != NULL);
    CHECK(strstr(j, "\"eight\": 8.0") != NULL);
    CHECK(strstr(j, "\"i\": -1234567890123") != NULL);
    CHECK(strstr(j, "\\u0001") != NULL);
    bx_state *back = NULL;
    CHECK_OK(bx_state_from_json(j, NULL, NULL, &back));
    CHECK(state_equal(d, back));
    CHECK_EQ_INT(bx_state_typeof(bx_state_get(back, "eight")), BX_STATE_FLOAT);
    CHECK_EQ_INT(bx_state_typeof(bx_state_get(back, "i")), BX_STATE_INT);
    CHECK(isnan(bx_state_get_float(bx_state_get(back, "nan"))));
    /* a second trip gives the same text */
    char *j2 = bx_state_to_json(back, NULL, NULL);
    CHECK(strcmp(j, j2) == 0);
    bx_free(j);
    bx_free(j2);
    bx_state_free(back);
    bx_state_free(d);
    /* top-level scalars */
    bx_state *s = NULL;
    CHECK_OK(bx_state_from_json(" 42 ", NULL, NULL, &s));
    CHECK_EQ_INT(bx_state_get_int(s), 42);
    bx_state_free(s);
}

/* ---- tensors through callbacks ------------------------------------------------ */

typedef struct store {
    bx_tensor *t[8];
    char name[8][64];
    char path[8][64];
    int n;
} store;

static bx_status out_cb(void *ud, const char *path, const bx_tensor *t, char *name, size_t cap) {
    store *s = ud;
    if (s->n >= 8) return BX_ERR_INVALID;
    snprintf(name, cap, "t%d", s->n);
    snprintf(s->name[s->n], 64, "t%d", s->n);
    snprintf(s->path[s->n], 64, "%s", path);
    s->t[s->n++] = bx_tensor_clone(t);
    return BX_OK;
}

static const bx_tensor *in_cb(void *ud, const char *name) {
    store *s = ud;
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->name[i], name) == 0) return s->t[i];
    return NULL;
}

static bx_status failing_out_cb(void *ud, const char *path, const bx_tensor *t, char *name, size_t cap) {
    (void)ud; (void)path; (void)t; (void)name; (void)cap;
    return bx__error(BX_ERR_IO, "disk full");
}

static void test_tensors(void) {
    int64_t sh[2] = {2, 3};
    bx_tensor *a = bx_tensor_new(BX_F32, 2, sh);
    for (int i = 0; i < 6; i++) ((float *)a->data)[i] = 0.1f * (float)(i + 1);
    int64_t sh1[1] = {3};
    bx_tensor *b = bx_tensor_new(BX_I64, 1, sh1);
    for (int i = 0; i < 3; i++) ((int64_t *)b->data)[i] = -i;
    bx_tensor *z = bx_tensor_new(BX_F32, 0, sh);
    ((float *)z->data)[0] = 8.0f;

    bx_state *d = bx_state_dict();
    bx_state *st = bx_state_dict();
    bx_state *e = bx_state_dict();
    CHECK_OK(bx_state_set_tensor(e, "exp_avg", a));
    CHECK_OK(bx_state_set_tensor(e, "idx", b));
    CHECK_OK(bx_state_set_tensor(e, "step", z));
    CHECK_OK(bx_state_set(st, "0", e));
    CHECK_OK(bx_state_set(d, "state", st));
    /* the node holds a copy */
    ((float *)a->data)[0] = 99.0f;
    CHECK(bx_get(bx_state_get_tensor(bx_state_get(e, "exp_avg")), 0) == (double)0.1f);

    store s;
    memset(&s, 0, sizeof s);
    char *j = bx_state_to_json(d, out_cb, &s);
    CHECK(j && strcmp(j, "{\"state\": {\"0\": {\"exp_avg\": {\"__tensor__\": \"t0\"}, \"idx\": "
                         "{\"__tensor__\": \"t1\"}, \"step\": {\"__tensor__\": \"t2\"}}}}") == 0);
    CHECK_EQ_INT(s.n, 3);
    CHECK(strcmp(s.path[0], "state.0.exp_avg") == 0);
    bx_state *back = NULL;
    CHECK_OK(bx_state_from_json(j, in_cb, &s, &back));
    CHECK(state_equal(d, back));
    bx_state_free(back);
    /* no reader for a tensor reference */
    CHECK_ERR(bx_state_from_json(j, NULL, NULL, &back), BX_ERR_FORMAT, "tensor 't0'");
    CHECK(back == NULL);
    bx_free(j);
    /* unknown tensor name */
    CHECK_ERR(bx_state_from_json("{\"a\": {\"__tensor__\": \"nope\"}}", in_cb, &s, &back),
              BX_ERR_NOT_FOUND, "'nope' not found");
    /* inline form */
    j = bx_state_to_json(d, NULL, NULL);
    CHECK(j && strstr(j, "\"exp_avg\": [[0.10000000149011612, 0.20000000298023224, "
                         "0.30000001192092896], [0.4000000059604645, 0.5, 0.6000000238418579]]") != NULL);
    CHECK(j && strstr(j, "\"idx\": [0, -1, -2]") != NULL);
    CHECK(j && strstr(j, "\"step\": 8.0") != NULL);
    bx_free(j);
    /* a failing writer callback */
    bx_clear_error();
    j = bx_state_to_json(d, failing_out_cb, NULL);
    CHECK(j == NULL);
    CHECK(strstr(bx_errmsg(), "state.0.exp_avg") != NULL);

    for (int i = 0; i < s.n; i++) bx_tensor_free(s.t[i]);
    bx_state_free(d);
    bx_tensor_free(a);
    bx_tensor_free(b);
    bx_tensor_free(z);
}

static void test_malformed(void) {
    const char *bad[] = {
        "",  "{", "{\"a\": }", "[1, 2,]", "{\"a\" 1}", "nul", "{\"a\": 1} x", "\"unterminated",
        "{\"a\": 1, \"a\": 2}", "[1e999]", "99999999999999999999999", "{\"a\":\n  [1,\n   tru]}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        bx_state *s = (bx_state *)1;
        bx_status st = bx_state_from_json(bad[i], NULL, NULL, &s);
        CHECK_EQ_INT(st, BX_ERR_FORMAT);
        CHECK(s == NULL);
        CHECK(strstr(bx_errmsg(), "line") != NULL && strstr(bx_errmsg(), "column") != NULL);
    }
    bx_state *s;
    CHECK_ERR(bx_state_from_json("{\"a\":\n  [1,\n   tru]}", NULL, NULL, &s), BX_ERR_FORMAT, "line 3");
    CHECK_ERR(bx_state_from_json(NULL, NULL, NULL, &s), BX_ERR_INVALID, "NULL text");
}

int main(void) {
    test_nodes();
    test_float_format();
    test_json_roundtrip();
    test_tensors();
    test_malformed();
    return tu_finish("test_state");
}
