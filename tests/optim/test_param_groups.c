/* test_param_groups.c - param groups (golden rule Q5): per-group overrides
 * with the constructor's defaults for unset keys, groups added at run time,
 * identity checks, names, the accessors schedulers and callbacks use, and
 * extra keys ("initial_lr", "swa_lr"). */
#include "test_util.h"

static bx_tensor *vec(int n, float v) {
    int64_t s[1] = {n};
    bx_tensor *t = bx_tensor_new(BX_F32, 1, s);
    for (int i = 0; i < n; i++) ((float *)t->data)[i] = v + 0.5f * (float)i;
    bx_param_mark(t);
    return t;
}

static void grads(bx_tensor *p, int k) {
    float *g = bx_param_grad(p)->data;
    for (int64_t i = 0; i < bx_numel(p); i++) g[i] = (float)(0.1 * (double)(i + 1) * (k % 2 ? -1 : 1) + 0.05 * k);
}

static bx_optimizer *sgd(double lr, double mom) {
    bx_sgd_opts o = BX_SGD_OPTS_INIT;
    o.lr = lr;
    o.momentum = mom;
    return bx_sgd_new(&o);
}

/* Each group behaves exactly like its own optimizer with those settings. */
static void test_groups_equal_separate(void) {
    bx_tensor *a = vec(3, 1.0f), *b = vec(2, -1.0f), *a2 = vec(3, 1.0f), *b2 = vec(2, -1.0f);
    bx_optimizer *o = sgd(0.1, 0.9);
    CHECK_OK(bx_optimizer_add_group(o, &a, 1, NULL));
    bx_param_group_opts g = BX_PARAM_GROUP_OPTS_INIT;
    g.lr = 0.01;
    g.weight_decay = 0.1;
    CHECK_OK(bx_optimizer_add_group(o, &b, 1, &g));
    bx_optimizer *oa = sgd(0.1, 0.9), *ob = sgd(0.01, 0.9); /* momentum from the defaults */
    bx_sgd_opts bo = BX_SGD_OPTS_INIT;
    bo.lr = 0.01;
    bo.momentum = 0.9;
    bo.weight_decay = 0.1;
    bx_optimizer_free(ob);
    ob = bx_sgd_new(&bo);
    CHECK_OK(bx_optimizer_add_group(oa, &a2, 1, NULL));
    CHECK_OK(bx_optimizer_add_group(ob, &b2, 1, NULL));
    for (int k = 0; k < 4; k++) {
        grads(a, k);
        grads(b, k);
        grads(a2, k);
        grads(b2, k);
        CHECK_OK(bx_optimizer_step(o));
        CHECK_OK(bx_optimizer_step(oa));
        CHECK_OK(bx_optimizer_step(ob));
    }
    CHECK(memcmp(a->data, a2->data, 3 * sizeof(float)) == 0);
    CHECK(memcmp(b->data, b2->data, 2 * sizeof(float)) == 0);
    double v;
    CHECK_OK(bx_optimizer_group_get(o, 1, "momentum", &v));
    CHECK(v == 0.9);
    CHECK_OK(bx_optimizer_group_get(o, 1, "weight_decay", &v));
    CHECK(v == 0.1);
    CHECK_OK(bx_optimizer_group_get(o, 0, "weight_decay", &v));
    CHECK(v == 0.0);
    bx_optimizer_free(o);
    bx_optimizer_free(oa);
    bx_optimizer_free(ob);
    bx_tensor_free(a);
    bx_tensor_free(b);
    bx_tensor_free(a2);
    bx_tensor_free(b2);
}

static void test_add_group_errors(void) {
    bx_tensor *a = vec(3, 1.0f), *b = vec(2, 0.0f);
    bx_optimizer *o = sgd(0.1, 0);
    CHECK_OK(bx_optimizer_add_group(o, &a, 1, NULL));
    CHECK_ERR(bx_optimizer_add_group(o, &a, 1, NULL), BX_ERR_INVALID, "parameter 0 (3) is already in param group 0");
    bx_tensor *twice[2] = {b, b};
    CHECK_ERR(bx_optimizer_add_group(o, twice, 2, NULL), BX_ERR_INVALID, "parameter 1 is given twice");
    CHECK_ERR(bx_optimizer_add_group(o, &b, 0, NULL), BX_ERR_INVALID, "needs at least one parameter");
    bx_tensor *nul = NULL;
    CHECK_ERR(bx_optimizer_add_group(o, &nul, 1, NULL), BX_ERR_INVALID, "parameter 0 is NULL");
    int64_t s[1] = {2};
    bx_tensor *i64 = bx_tensor_zeros(BX_I64, 1, s);
    CHECK_ERR(bx_optimizer_add_group(o, &i64, 1, NULL), BX_ERR_INVALID, "is not an owned contiguous f32 tensor");
    bx_tensor_free(i64);
    bx_param_group_opts g = BX_PARAM_GROUP_OPTS_INIT;
    g.alpha = 0.5;
    CHECK_ERR(bx_optimizer_add_group(o, &b, 1, &g), BX_ERR_INVALID, "SGD has no 'alpha'");
    g = (bx_param_group_opts)BX_PARAM_GROUP_OPTS_INIT;
    g.betas[0] = 0.5;
    CHECK_ERR(bx_optimizer_add_group(o, &b, 1, &g), BX_ERR_INVALID, "SGD has no 'betas'");
    g = (bx_param_group_opts)BX_PARAM_GROUP_OPTS_INIT;
    g.lr = -1;
    CHECK_ERR(bx_optimizer_add_group(o, &b, 1, &g), BX_ERR_INVALID, "SGD param group 1: invalid lr value");
    g = (bx_param_group_opts)BX_PARAM_GROUP_OPTS_INIT;
    g.nesterov = 1;
    CHECK_ERR(bx_optimizer_add_group(o, &b, 1, &g), BX_ERR_INVALID, "Nesterov");
    CHECK_EQ_INT(bx_optimizer_num_groups(o), 1); /* nothing added on error */
    g = (bx_param_group_opts)BX_PARAM_GROUP_OPTS_INIT;
    g.lr = 0; /* a group may have lr 0 (torch allows it) */
    CHECK_OK(bx_optimizer_add_group(o, &b, 1, &g));
    bx_optimizer_free(o);
    bx_tensor_free(a);
    bx_tensor_free(b);
}

static void test_runtime_group_and_accessors(void) {
    bx_tensor *a = vec(3, 1.0f), *b = vec(2, 0.0f), *c = vec(4, 2.0f);
    bx_adam_opts ao = BX_ADAM_OPTS_INIT;
    bx_optimizer *o = bx_adam_new(&ao);
    bx_tensor *ab[2] = {a, b};
    CHECK_OK(bx_optimizer_add_group(o, ab, 2, NULL));
    for (int k = 0; k < 2; k++) {
        grads(a, k);
        grads(b, k);
        CHECK_OK(bx_optimizer_step(o));
    }
    /* fine-tuning: unfreeze a layer as a new group with its own lr */
    bx_param_group_opts g = BX_PARAM_GROUP_OPTS_INIT;
    g.lr = 1e-4;
    g.name = "backbone";
    CHECK_OK(bx_optimizer_add_group(o, &c, 1, &g));
    grads(c, 0);
    float c0 = ((float *)c->data)[0];
    CHECK_OK(bx_optimizer_step(o));
    CHECK(((float *)c->data)[0] != c0);
    CHECK_EQ_INT(bx_optimizer_num_groups(o), 2);
    CHECK_EQ_INT(bx_optimizer_num_params(o), 3);
    CHECK_EQ_INT(bx_optimizer_group_num_params(o, 0), 2);
    CHECK(bx_optimizer_group_param(o, 0, 1) == b);
    CHECK(bx_optimizer_group_param(o, 1, 0) == c);
    CHECK(bx_optimizer_group_param(o, 1, 1) == NULL);
    CHECK(bx_optimizer_group_name(o, 0) == NULL);
    CHECK(strcmp(bx_optimizer_group_name(o, 1), "backbone") == 0);
    CHECK(bx_optimizer_get_lr(o, 1) == 1e-4);
    CHECK(isnan(bx_optimizer_get_lr(o, 2)));
    CHECK_ERR(bx_optimizer_set_lr(o, 5, 0.1), BX_ERR_INVALID, "param group 5 does not exist (2 groups)");
    /* the new group's state starts at step 1 while the others are at 3 */
    bx_state *sd = bx_optimizer_state_dict(o);
    const bx_state *st = bx_state_get(sd, "state");
    CHECK(bx_state_get_float(bx_state_get(bx_state_get(st, "0"), "step")) == 3.0);
    CHECK(bx_state_get_float(bx_state_get(bx_state_get(st, "2"), "step")) == 1.0);
    const bx_state *g1 = bx_state_at(bx_state_get(sd, "param_groups"), 1);
    CHECK(strcmp(bx_state_key_at(g1, 0), "lr") == 0); /* the overridden key first */
    CHECK(strcmp(bx_state_key_at(g1, 1), "name") == 0);
    CHECK(strcmp(bx_state_get_string(bx_state_get(g1, "name")), "backbone") == 0);
    CHECK_EQ_INT(bx_state_get_int(bx_state_at(bx_state_get(g1, "params"), 0)), 2);
    bx_state_free(sd);
    /* momentum = betas[0] for Adam */
    double m, b2[2];
    CHECK_OK(bx_optimizer_get_momentum(o, 0, &m));
    CHECK(m == 0.9);
    CHECK_OK(bx_optimizer_set_momentum(o, 1, 0.85));
    CHECK_OK(bx_optimizer_get_betas(o, 1, b2));
    CHECK(b2[0] == 0.85 && b2[1] == 0.999);
    CHECK(bx_optimizer_has_default(o, "betas"));
    CHECK(!bx_optimizer_has_default(o, "momentum"));
    /* generic keys */
    double v;
    CHECK_OK(bx_optimizer_group_get(o, 0, "amsgrad", &v));
    CHECK(v == 0.0);
    CHECK_OK(bx_optimizer_group_set(o, 0, "amsgrad", 1));
    CHECK_OK(bx_optimizer_group_get(o, 0, "amsgrad", &v));
    CHECK(v == 1.0);
    CHECK_ERR(bx_optimizer_group_set(o, 0, "amsgrad", 0.5), BX_ERR_INVALID, "expected 0 or 1");
    CHECK_ERR(bx_optimizer_group_get(o, 0, "betas", &v), BX_ERR_INVALID, "bx_optimizer_get_betas");
    CHECK_ERR(bx_optimizer_group_get(o, 0, "swa_lr", &v), BX_ERR_NOT_FOUND, "param group 0 has no 'swa_lr'");
    CHECK(!bx_optimizer_group_has(o, 0, "swa_lr"));
    CHECK_OK(bx_optimizer_group_set(o, 0, "swa_lr", 0.05));
    CHECK_OK(bx_optimizer_group_set(o, 0, "initial_lr", 1e-3));
    CHECK_OK(bx_optimizer_group_set(o, 0, "swa_lr", 0.02)); /* replaced in place */
    CHECK(bx_optimizer_group_has(o, 0, "swa_lr"));
    CHECK(bx_optimizer_group_has(o, 0, "lr") && bx_optimizer_group_has(o, 0, "params"));
    CHECK(!bx_optimizer_group_has(o, 0, "name") && bx_optimizer_group_has(o, 1, "name"));
    CHECK_OK(bx_optimizer_group_get(o, 0, "swa_lr", &v));
    CHECK(v == 0.02);
    CHECK_ERR(bx_optimizer_group_set(o, 0, "params", 1), BX_ERR_INVALID, "'params' is not a number");
    sd = bx_optimizer_state_dict(o);
    const bx_state *g0 = bx_state_at(bx_state_get(sd, "param_groups"), 0);
    size_t nk = bx_state_len(g0);
    CHECK(strcmp(bx_state_key_at(g0, nk - 3), "swa_lr") == 0);
    CHECK(strcmp(bx_state_key_at(g0, nk - 2), "initial_lr") == 0);
    CHECK(strcmp(bx_state_key_at(g0, nk - 1), "params") == 0);
    bx_state_free(sd);
    bx_optimizer_free(o);

    /* SGD/RMSprop momentum is the momentum key */
    o = sgd(0.1, 0.9);
    CHECK_OK(bx_optimizer_add_group(o, &a, 1, NULL));
    CHECK(bx_optimizer_has_default(o, "momentum"));
    CHECK_ERR(bx_optimizer_get_betas(o, 0, b2), BX_ERR_NOT_FOUND, "SGD has no 'betas'");
    CHECK_OK(bx_optimizer_set_momentum(o, 0, 0.5));
    CHECK_OK(bx_optimizer_group_get(o, 0, "momentum", &v));
    CHECK(v == 0.5);
    bx_optimizer_free(o);
    bx_tensor_free(a);
    bx_tensor_free(b);
    bx_tensor_free(c);
}

int main(void) {
    test_groups_equal_separate();
    test_add_group_errors();
    test_runtime_group_and_accessors();
    return tu_finish("test_param_groups");
}
