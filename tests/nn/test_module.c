/* test_module.c - the module core: PyTorch names and order, train/eval,
 * state dict round trip and every load error, clone, rename, reparam,
 * hooks, tree helpers. Expected names were printed by PyTorch 1.13 for the
 * same model (see the comments). */
#include "test_util.h"

/* ---- a user-written module type: the same interface the built-ins use ---- */

typedef struct net_impl {
    int forwards;
    bool saw_training; /* bx_step_training() seen inside forward */
} net_impl;

static void *net_clone(const void *p) {
    net_impl *c = malloc(sizeof *c);
    memcpy(c, p, sizeof *c);
    return c;
}

static bx_tensor *net_forward(bx_module *m, bx_step *st, bx_tensor *x) {
    net_impl *ni = bx_module_impl(m);
    ni->forwards++;
    ni->saw_training = bx_step_training(st);
    x = bx_module_forward(bx_module_child(m, "features"), st, x);
    x = bx_module_forward(bx_module_child(m, "bn"), st, x);
    return bx_module_forward(bx_module_child(m, "head"), st, x);
}

static const bx_module_type net_type = {"Net", net_forward, free, net_clone, NULL, NULL};

/* class Net(nn.Module):
 *   scale = Parameter(ones(1)); buffers counter (persistent), tmp (not)
 *   features = Sequential(Linear(4,3), ReLU(), Linear(3,2,bias=False))
 *   bn = BatchNorm1d(2); head = Linear(2,2) */
static bx_module *make_net(uint64_t seed) {
    bx_rng r;
    bx_rng_init(&r, seed);
    net_impl *ni = calloc(1, sizeof *ni);
    bx_module *m = bx_module_new(&net_type, ni);
    int64_t one = 1;
    bx_tensor *scale = bx_param_new(1, &one);
    bx_fill(scale, 1.0);
    CHECK_OK(bx_module_add_param(m, "scale", scale));
    CHECK_OK(bx_module_add_buffer(m, "counter", bx_tensor_zeros(BX_F32, 1, &one), true));
    CHECK_OK(bx_module_add_buffer(m, "tmp", bx_tensor_zeros(BX_F32, 1, &one), false));
    bx_module *f = bx_nn_sequential();
    CHECK_OK(bx_sequential_append(f, bx_nn_linear(4, 3, true, &r)));
    CHECK_OK(bx_sequential_append(f, bx_nn_relu()));
    CHECK_OK(bx_sequential_append(f, bx_nn_linear(3, 2, false, &r)));
    CHECK_OK(bx_module_add_child(m, "features", f));
    CHECK_OK(bx_module_add_child(m, "bn", bx_nn_batchnorm1d(2, NULL)));
    CHECK_OK(bx_module_add_child(m, "head", bx_nn_linear(2, 2, true, &r)));
    return m;
}

static void check_names(const char *what, char **got, int n, const char *const *want, int nwant) {
    CHECK_EQ_INT(n, nwant);
    for (int i = 0; i < n && i < nwant; i++) {
        if (strcmp(got[i], want[i]) != 0) {
            fprintf(stderr, "%s[%d]: got '%s', want '%s'\n", what, i, got[i], want[i]);
            CHECK(0);
        }
    }
}

static void test_names_and_order(void) {
    bx_module *net = make_net(1);
    static const char *const params[] = {"scale", "features.0.weight", "features.0.bias", "features.2.weight",
                                         "bn.weight", "bn.bias", "head.weight", "head.bias"};
    static const char *const buffers[] = {"counter", "tmp", "bn.running_mean", "bn.running_var",
                                          "bn.num_batches_tracked"};
    static const char *const sd[] = {"scale", "counter", "features.0.weight", "features.0.bias",
                                     "features.2.weight", "bn.weight", "bn.bias", "bn.running_mean",
                                     "bn.running_var", "bn.num_batches_tracked", "head.weight", "head.bias"};
    static const char *const mods[] = {"", "features", "features.0", "features.1", "features.2", "bn", "head"};
    bx_named_tensors *l = bx_module_named_parameters(net);
    check_names("named_parameters", l->names, l->n, params, 8);
    CHECK(l->tensors[1] == bx_module_param(bx_module_find(net, "features.0"), "weight"));
    bx_named_tensors_free(l);
    l = bx_module_named_buffers(net);
    check_names("named_buffers", l->names, l->n, buffers, 5);
    CHECK(l->tensors[4]->dtype == BX_I64 && l->tensors[4]->ndim == 0);
    bx_named_tensors_free(l);
    l = bx_module_state_dict(net);
    check_names("state_dict", l->names, l->n, sd, 12);
    bx_named_tensors_free(l);
    bx_named_modules *ml = bx_module_named_modules(net);
    check_names("named_modules", ml->names, ml->n, mods, 7);
    CHECK(ml->modules[0] == net);
    CHECK(strcmp(bx_module_type_name(ml->modules[4]), "Linear") == 0);
    bx_named_modules_free(ml);

    /* print(net) of the same model in PyTorch */
    const char *want =
        "Net(\n"
        "  (features): Sequential(\n"
        "    (0): Linear(in_features=4, out_features=3, bias=True)\n"
        "    (1): ReLU()\n"
        "    (2): Linear(in_features=3, out_features=2, bias=False)\n"
        "  )\n"
        "  (bn): BatchNorm1d(2, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)\n"
        "  (head): Linear(in_features=2, out_features=2, bias=True)\n"
        ")";
    char buf[1024];
    size_t len = bx_module_repr(net, buf, sizeof buf);
    CHECK(strcmp(buf, want) == 0);
    CHECK_EQ_INT(len, strlen(want));
    if (strcmp(buf, want) != 0) fprintf(stderr, "repr:\n%s\n", buf);
    char small[8];
    CHECK_EQ_INT(bx_module_repr(net, small, sizeof small), strlen(want));
    CHECK(strlen(small) == 7);

    /* counts: 1 + (12+3) + 6 + (2+2) + (4+2) */
    CHECK_EQ_INT(bx_module_num_params(net, false), 32);
    bx_module_requires_grad(bx_module_child(net, "features"), false);
    CHECK_EQ_INT(bx_module_num_params(net, true), 11);
    bx_module_requires_grad(net, true);
    CHECK_EQ_INT(bx_module_num_params(net, true), 32);

    /* lookups */
    CHECK(bx_module_find(net, "") == net);
    CHECK(bx_module_find(net, "features.2") == bx_module_child_at(bx_module_child(net, "features"), 2, NULL));
    CHECK(bx_module_find(net, "features.7") == NULL);
    CHECK(strstr(bx_errmsg(), "features.7") != NULL);
    CHECK(bx_module_find(net, "feat") == NULL);
    CHECK(bx_module_parent(bx_module_child(net, "bn")) == net);
    const char *nm = NULL;
    CHECK(bx_module_child_at(net, 2, &nm) == bx_module_child(net, "head") && strcmp(nm, "head") == 0);
    CHECK(bx_module_child_at(net, 3, NULL) == NULL);
    CHECK_EQ_INT(bx_module_num_children(net), 3);
    CHECK_EQ_INT(bx_module_num_own_params(bx_module_find(net, "features.2")), 2); /* weight + None bias */
    CHECK(bx_module_has_param(bx_module_find(net, "features.2"), "bias"));
    CHECK(bx_module_param(bx_module_find(net, "features.2"), "bias") == NULL);
    bool pers = true;
    CHECK(bx_module_buffer_at(net, 1, &nm, &pers) != NULL && !pers && strcmp(nm, "tmp") == 0);
    bx_module_free(net);
}

static void test_name_errors(void) {
    bx_module *net = make_net(1);
    int64_t one = 1;
    CHECK_ERR(bx_module_add_param(net, "bn", bx_param_new(1, &one)), BX_ERR_INVALID, "child module");
    CHECK_ERR(bx_module_add_param(net, "scale", bx_param_new(1, &one)), BX_ERR_INVALID, "'scale'");
    CHECK_ERR(bx_module_add_buffer(net, "a.b", bx_tensor_zeros(BX_F32, 1, &one), true), BX_ERR_INVALID, "'.'");
    CHECK_ERR(bx_module_add_child(net, "", bx_nn_relu()), BX_ERR_INVALID, "empty");
    CHECK_ERR(bx_module_add_child(net, "head", bx_nn_relu()), BX_ERR_INVALID, "head");
    /* a failed constructor's message travels through add_child */
    CHECK_ERR(bx_module_add_child(net, "bad", bx_nn_dropout(1.5f)), BX_ERR_INVALID, "Dropout");
    CHECK_ERR(bx_sequential_append(net, bx_nn_relu()), BX_ERR_INVALID, "not a Sequential");
    /* a child that already has a parent */
    CHECK_ERR(bx_module_add_child(net, "again", bx_module_child(net, "bn")), BX_ERR_INVALID, "parent");
    CHECK(bx_module_remove_param(net, "nope") == NULL);
    CHECK(strstr(bx_errmsg(), "no parameter 'nope'") != NULL);
    CHECK_ERR(bx_module_rename_param(net, "nope", "x"), BX_ERR_NOT_FOUND, "nope");
    CHECK_ERR(bx_module_rename_param(net, "scale", "counter"), BX_ERR_INVALID, "buffer");
    /* step tensors cannot be parameters */
    bx_step *st = bx_step_new();
    CHECK_ERR(bx_module_add_param(net, "s", bx_scalar(st, 1.0f)), BX_ERR_INVALID, "step tensor");
    bx_step_free(st);
    /* replace_child */
    bx_module *old = NULL;
    CHECK_OK(bx_module_replace_child(net, "features.1", bx_nn_tanh(), &old));
    CHECK(strcmp(bx_module_type_name(old), "ReLU") == 0 && bx_module_parent(old) == NULL);
    CHECK(strcmp(bx_module_type_name(bx_module_find(net, "features.1")), "Tanh") == 0);
    bx_module_free(old);
    CHECK_OK(bx_module_replace_child(net, "bn", bx_nn_identity(), NULL));
    CHECK(!bx_module_is_batchnorm(bx_module_child(net, "bn")));
    CHECK_ERR(bx_module_replace_child(net, "features.9", bx_nn_relu(), NULL), BX_ERR_NOT_FOUND, "features.9");
    bx_module_free(net);
}

static void test_train_eval(void) {
    bx_module *net = make_net(2);
    bx_named_modules *ml = bx_module_named_modules(net);
    for (int i = 0; i < ml->n; i++) CHECK(bx_module_is_training(ml->modules[i]));
    bx_module_train(net, false);
    for (int i = 0; i < ml->n; i++) CHECK(!bx_module_is_training(ml->modules[i]));
    bx_module_train(bx_module_child(net, "features"), true);
    CHECK(!bx_module_is_training(net));
    CHECK(bx_module_is_training(bx_module_find(net, "features.1")));
    CHECK(!bx_module_is_training(bx_module_child(net, "bn")));
    bx_named_modules_free(ml);

    /* forward sets the step's flag from the module for the call, then restores it */
    bx_module_train(net, false);
    bx_step *st = bx_step_new();
    int64_t shape[2] = {3, 4};
    bx_tensor *x = bx_step_zeros(st, BX_F32, 2, shape);
    bx_step_set_training(st, true);
    bx_module_forward(net, st, x);
    net_impl *ni = bx_module_impl(net);
    CHECK(ni->forwards == 1 && !ni->saw_training);
    CHECK(bx_step_training(st));
    bx_module_train(net, true);
    bx_step_set_training(st, false);
    bx_module_forward(net, st, x);
    CHECK(ni->saw_training && !bx_step_training(st));
    bx_step_free(st);
    bx_module_free(net);
}

static bool tensors_equal(const bx_tensor *a, const bx_tensor *b) {
    if (!bx_same_shape(a, b)) return false;
    for (int64_t i = 0; i < bx_numel(a); i++)
        if (bx_get(a, i) != bx_get(b, i)) return false;
    return true;
}

static const bx_tensor *lookup_list(void *ud, const char *name) { return bx_named_tensors_get(ud, name); }

static void test_state_dict(void) {
    bx_module *a = make_net(10), *b = make_net(20);
    bx_tensor *rm = bx_module_buffer(bx_module_child(a, "bn"), "running_mean");
    bx_fill(rm, 0.5);
    *(int64_t *)bx_module_buffer(bx_module_child(a, "bn"), "num_batches_tracked")->data = 7;
    bx_named_tensors *sa = bx_module_state_dict(a);
    bx_named_tensors *before = bx_module_state_dict(b);
    CHECK(!tensors_equal(sa->tensors[2], before->tensors[2]));
    CHECK_OK(bx_module_load_state_dict(b, sa, true));
    bx_named_tensors *sb = bx_module_state_dict(b);
    CHECK_EQ_INT(sb->n, sa->n);
    for (int i = 0; i < sb->n; i++) {
        CHECK(tensors_equal(sa->tensors[i], sb->tensors[i]));
        CHECK(sb->tensors[i] == before->tensors[i]); /* loaded in place: identity kept */
    }
    /* non-persistent buffers are not loaded */
    CHECK(bx_named_tensors_get(sa, "tmp") == NULL);

    /* errors: build a faulty copy of a's state dict */
    bx_named_tensors *bad = bx_named_tensors_new(true);
    for (int i = 0; i < sa->n; i++)
        if (strcmp(sa->names[i], "head.bias") != 0) bx_named_tensors_add(bad, sa->names[i], bx_tensor_clone(sa->tensors[i]));
    bx_fill(bx_named_tensors_get(bad, "scale"), 42.0);
    CHECK_ERR(bx_module_load_state_dict(b, bad, true), BX_ERR_NOT_FOUND, "load_state_dict: missing key 'head.bias'");
    CHECK(bx_get(bx_module_param(b, "scale"), 0) == 1.0); /* nothing copied */
    CHECK_OK(bx_module_load_state_dict(b, bad, false));
    CHECK(bx_get(bx_module_param(b, "scale"), 0) == 42.0);
    int64_t one = 1;
    bx_named_tensors_add(bad, "head.bias", bx_tensor_zeros(BX_F32, 1, &one)); /* wrong shape: (1) vs (2) */
    CHECK_ERR(bx_module_load_state_dict(b, bad, false), BX_ERR_SHAPE,
              "load_state_dict: size mismatch for head.bias: checkpoint (1), model (2)");
    bx_named_tensors_free(bad);

    bad = bx_named_tensors_new(false);
    for (int i = 0; i < sa->n; i++) bx_named_tensors_add(bad, sa->names[i], sa->tensors[i]);
    int64_t s22[2] = {2, 3};
    bx_tensor *extra = bx_tensor_zeros(BX_F32, 2, s22);
    bx_named_tensors_add(bad, "head.extra", extra);
    CHECK_ERR(bx_module_load_state_dict(b, bad, true), BX_ERR_INVALID, "load_state_dict: unexpected key 'head.extra'");
    CHECK_OK(bx_module_load_state_dict(b, bad, false));
    bx_named_tensors_free(bad);
    bx_tensor_free(extra);

    /* several problems: the first one named, the rest counted */
    bx_named_tensors *empty = bx_named_tensors_new(false);
    bx_named_tensors_add(empty, "x", extra = bx_tensor_zeros(BX_F32, 2, s22));
    CHECK_ERR(bx_module_load_state_dict(b, empty, true), BX_ERR_NOT_FOUND, "missing key 'scale' (and 12 more problems)");
    bx_named_tensors_free(empty);
    bx_tensor_free(extra);

    /* the lookup form sees missing keys and size mismatches */
    CHECK_OK(bx_module_load_state_dict_lookup(b, lookup_list, sa, true));
    bx_module *c = make_net(30);
    bx_tensor_free(bx_module_remove_param(bx_module_child(c, "head"), "bias"));
    bx_named_tensors *sc = bx_module_state_dict(c);
    CHECK_ERR(bx_module_load_state_dict_lookup(b, lookup_list, sc, true), BX_ERR_NOT_FOUND, "missing key 'head.bias'");
    CHECK_OK(bx_module_load_state_dict_lookup(b, lookup_list, sc, false));
    bx_named_tensors_free(sc);
    bx_module_free(c);

    /* a bigger model: size mismatch message with 2-d shapes */
    bx_module *big = bx_nn_sequential();
    bx_sequential_append(big, bx_nn_linear(128, 10, true, NULL));
    bx_module *small = bx_nn_sequential();
    bx_sequential_append(small, bx_nn_linear(256, 10, true, NULL));
    bx_named_tensors *sbig = bx_module_state_dict(big);
    CHECK_ERR(bx_module_load_state_dict(small, sbig, true), BX_ERR_SHAPE,
              "load_state_dict: size mismatch for 0.weight: checkpoint (10,128), model (10,256)");
    bx_named_tensors_free(sbig);
    bx_module_free(big);
    bx_module_free(small);

    bx_named_tensors_free(sa);
    bx_named_tensors_free(sb);
    bx_named_tensors_free(before);
    bx_module_free(a);
    bx_module_free(b);
}

static bx_tensor *id_forward(bx_module *m, bx_step *st, bx_tensor *x) { return x; }
static const bx_module_type noclone_type = {"NoClone", id_forward, free, NULL, NULL, NULL};

static void test_clone(void) {
    bx_module *a = make_net(3);
    bx_module_train(bx_module_child(a, "bn"), false);
    bx_module *c = bx_module_clone(a);
    CHECK(c != NULL);
    CHECK(strcmp(bx_module_type_name(c), "Net") == 0);
    CHECK(bx_module_impl(c) != bx_module_impl(a));
    CHECK(!bx_module_is_training(bx_module_child(c, "bn")) && bx_module_is_training(c));
    bx_named_tensors *sa = bx_module_state_dict(a), *sc = bx_module_state_dict(c);
    CHECK_EQ_INT(sa->n, sc->n);
    for (int i = 0; i < sa->n && i < sc->n; i++) {
        CHECK(strcmp(sa->names[i], sc->names[i]) == 0);
        CHECK(sa->tensors[i] != sc->tensors[i]);
        CHECK(tensors_equal(sa->tensors[i], sc->tensors[i]));
        CHECK(sa->tensors[i]->requires_grad == sc->tensors[i]->requires_grad);
        CHECK(sa->tensors[i]->dtype == sc->tensors[i]->dtype);
    }
    /* independence */
    bx_fill(bx_module_param(bx_module_find(a, "features.0"), "weight"), 3.0);
    CHECK(bx_get(bx_module_param(bx_module_find(c, "features.0"), "weight"), 0) != 3.0);
    CHECK(bx_module_buffer(c, "tmp") != NULL); /* non-persistent buffers are copied too */
    CHECK(bx_module_has_param(bx_module_find(c, "features.2"), "bias"));
    bx_named_tensors_free(sa);
    bx_named_tensors_free(sc);
    bx_module_free(c);

    /* a type without clone_impl */
    CHECK_OK(bx_module_add_child(bx_module_child(a, "features"), "3", bx_module_new(&noclone_type, malloc(4))));
    CHECK(bx_module_clone(a) == NULL);
    CHECK(strstr(bx_errmsg(), "NoClone") && strstr(bx_errmsg(), "features.3"));
    /* a type without impl clones fine */
    bx_module *r = bx_module_clone(bx_module_find(a, "features.1"));
    CHECK(r && strcmp(bx_module_type_name(r), "ReLU") == 0);
    bx_module_free(r);
    bx_module_free(a);
}

/* pruning-style reparam: weight = weight_orig * weight_mask */
static int reparam_calls;
static bx_tensor *masked_weight(void *ud, bx_module *m, bx_step *st) {
    (void)ud;
    reparam_calls++;
    return bx_mul(st, bx_module_tensor(st, m, "weight_orig"), bx_module_tensor(st, m, "weight_mask"));
}

/* QAT-style reparam on a name that stays a parameter: relu(weight) */
static bx_tensor *relu_weight(void *ud, bx_module *m, bx_step *st) {
    (void)ud;
    reparam_calls++;
    return bx_relu(st, bx_module_tensor(st, m, "weight")); /* nested: the raw parameter */
}

static void test_rename_and_reparam(void) {
    bx_rng r;
    bx_rng_init(&r, 5);
    bx_module *lin = bx_nn_linear(3, 2, true, &r);
    bx_tensor *w = bx_module_param(lin, "weight");
    CHECK_OK(bx_module_rename_param(lin, "weight", "weight_orig"));
    CHECK(bx_module_param(lin, "weight_orig") == w);
    CHECK(!bx_module_has_param(lin, "weight"));
    bx_named_tensors *l = bx_module_named_parameters(lin);
    CHECK(l->n == 2 && strcmp(l->names[0], "weight_orig") == 0 && l->tensors[0] == w); /* same place */
    bx_named_tensors_free(l);
    int64_t ws[2] = {2, 3};
    bx_tensor *mask = bx_tensor_new(BX_F32, 2, ws);
    float mk[6] = {1, 0, 1, 0, 1, 1};
    memcpy(mask->data, mk, sizeof mk);
    CHECK_OK(bx_module_add_buffer(lin, "weight_mask", mask, true));
    CHECK_OK(bx_module_set_reparam(lin, "weight", masked_weight, NULL));
    CHECK(bx_module_has_reparam(lin, "weight"));
    bx_named_tensors *sd = bx_module_state_dict(lin);
    CHECK(sd->n == 3 && strcmp(sd->names[0], "weight_orig") == 0 && strcmp(sd->names[1], "bias") == 0 &&
          strcmp(sd->names[2], "weight_mask") == 0);
    bx_named_tensors_free(sd);

    bx_step *st = bx_step_new();
    int64_t xs[2] = {1, 3};
    bx_tensor *x = bx_step_tensor(st, BX_F32, 2, xs);
    float xv[3] = {1.0f, 2.0f, 3.0f};
    memcpy(x->data, xv, sizeof xv);
    reparam_calls = 0;
    bx_tensor *y = bx_module_forward(lin, st, x);
    CHECK_OK(bx_step_status(st));
    CHECK_EQ_INT(reparam_calls, 1);
    const float *wd = w->data, *bd = bx_module_param(lin, "bias")->data;
    for (int o = 0; o < 2 && !bx_is_poison(y); o++) {
        float want = bd[o];
        for (int k = 0; k < 3; k++) want += xv[k] * wd[o * 3 + k] * mk[o * 3 + k];
        CHECK_NEAR(bx_get(y, o), want, 1e-6);
    }
    /* gradient reaches weight_orig, masked */
    bx_tensor *loss = bx_sum(st, y, NULL, 0, false);
    CHECK_OK(bx_backward(st, loss));
    for (int i = 0; i < 6 && w->grad; i++) CHECK_NEAR(bx_get(w->grad, i), mk[i] * xv[i % 3], 1e-6);
    CHECK(w->grad != NULL);

    /* make it permanent: weight = weight_orig * mask as a plain parameter */
    CHECK_OK(bx_module_set_reparam(lin, "weight", NULL, NULL));
    CHECK(!bx_module_has_reparam(lin, "weight"));
    bx_tensor *orig = bx_module_remove_param(lin, "weight_orig");
    CHECK(orig == w);
    bx_tensor_free(bx_module_remove_buffer(lin, "weight_mask"));
    CHECK_OK(bx_module_add_param(lin, "weight", orig));
    l = bx_module_named_parameters(lin);
    CHECK(l->n == 2 && strcmp(l->names[1], "weight") == 0);
    bx_named_tensors_free(l);

    /* QAT style: the reparam reads the parameter it replaces */
    bx_fill(w, -1.0);
    bx_set(w, 0, 2.0);
    CHECK_OK(bx_module_set_reparam(lin, "weight", relu_weight, NULL));
    bx_step_reset(st);
    x = bx_step_tensor(st, BX_F32, 2, xs);
    memcpy(x->data, xv, sizeof xv);
    reparam_calls = 0;
    y = bx_module_forward(lin, st, x);
    CHECK_EQ_INT(reparam_calls, 1);
    CHECK_NEAR(bx_get(y, 0), bd[0] + 2.0f, 1e-6);
    CHECK_NEAR(bx_get(y, 1), bd[1], 1e-6);
    CHECK(bx_module_tensor(st, lin, "nothing") == NULL);
    bx_step_free(st);
    bx_module_free(lin);
}

static int pre_calls, post_calls;
static bx_tensor *pre_double(void *ud, bx_module *m, bx_step *st, bx_tensor *in) {
    (void)m;
    pre_calls++;
    return *(int *)ud ? bx_mul(st, in, in) : NULL; /* x -> x*x, or keep */
}
static bx_tensor *post_relu(void *ud, bx_module *m, bx_step *st, bx_tensor *in, bx_tensor *out) {
    (void)ud;
    (void)m;
    (void)in;
    post_calls++;
    return bx_relu(st, out);
}

static void test_hooks(void) {
    bx_module *id = bx_nn_identity();
    int square = 1, keep = 0;
    CHECK_OK(bx_module_add_forward_pre_hook(id, pre_double, &square));
    CHECK_OK(bx_module_add_forward_pre_hook(id, pre_double, &keep));
    CHECK_OK(bx_module_add_forward_hook(id, post_relu, NULL));
    CHECK_ERR(bx_module_add_forward_hook(id, NULL, NULL), BX_ERR_INVALID, "NULL");
    bx_step *st = bx_step_new();
    int64_t s = 3;
    bx_tensor *x = bx_step_tensor(st, BX_F32, 1, &s);
    float xv[3] = {-2, 0.5f, 3};
    memcpy(x->data, xv, sizeof xv);
    bx_tensor *y = bx_module_forward(id, st, x);
    CHECK(pre_calls == 2 && post_calls == 1);
    CHECK_NEAR(bx_get(y, 0), 4.0, 1e-6);
    CHECK_NEAR(bx_get(y, 1), 0.25, 1e-6);
    /* post hook replacing the output: a tanh's negative output clipped */
    CHECK(bx_module_remove_forward_pre_hook(id, pre_double, &square));
    CHECK(!bx_module_remove_forward_pre_hook(id, pre_double, &square));
    xv[0] = -2;
    y = bx_module_forward(id, st, x);
    CHECK_NEAR(bx_get(y, 0), 0.0, 1e-6); /* relu(-2) */
    CHECK_NEAR(bx_get(y, 2), 3.0, 1e-6);
    CHECK(bx_module_remove_forward_hook(id, post_relu, NULL));
    y = bx_module_forward(id, st, x);
    CHECK(y == x);
    /* hooks survive clone */
    CHECK_OK(bx_module_add_forward_hook(id, post_relu, NULL));
    bx_module *c = bx_module_clone(id);
    post_calls = 0;
    bx_module_forward(c, st, x);
    CHECK_EQ_INT(post_calls, 1);
    bx_module_free(c);
    /* errors go to the step */
    static const bx_module_type noforward = {"NoForward", NULL, NULL, NULL, NULL, NULL};
    bx_module *nf = bx_module_new(&noforward, NULL);
    CHECK(bx_is_poison(bx_module_forward(nf, st, x)));
    CHECK(bx_step_status(st) == BX_ERR_UNSUPPORTED && strstr(bx_step_errmsg(st), "NoForward"));
    bx_module_free(nf);
    bx_step_free(st);
    bx_module_free(id);
}

static void test_grads_and_reset(void) {
    bx_module *net = make_net(4);
    bx_tensor *w = bx_module_param(bx_module_child(net, "head"), "weight");
    bx_fill(bx_param_grad(w), 5.0);
    bx_module_zero_grad(net);
    CHECK(bx_get(w->grad, 0) == 0.0);
    bx_module *net2 = make_net(4);
    CHECK(tensors_equal(w, bx_module_param(bx_module_child(net2, "head"), "weight"))); /* same seed, same init */
    bx_rng r;
    bx_rng_init(&r, 99);
    bx_tensor *rv = bx_module_buffer(bx_module_child(net, "bn"), "running_var");
    bx_fill(rv, 3.0);
    CHECK_OK(bx_module_reset_parameters(net, &r));
    CHECK(!tensors_equal(w, bx_module_param(bx_module_child(net2, "head"), "weight")));
    CHECK(bx_get(rv, 0) == 1.0);
    CHECK_OK(bx_module_reset_parameters(net, NULL));
    CHECK(bx_get(w, 0) == 0.0);
    bx_module_free(net);
    bx_module_free(net2);
    bx_module_free(NULL);
    CHECK(bx_module_clone(NULL) == NULL);
}

int main(void) {
    test_names_and_order();
    test_name_errors();
    test_train_eval();
    test_state_dict();
    test_clone();
    test_rename_and_reparam();
    test_hooks();
    test_grads_and_reset();
    return tu_finish("nn/module");
}
