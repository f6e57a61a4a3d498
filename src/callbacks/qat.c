/* qat.c - QuantizationAwareTraining (spec/callbacks.md §10, Lightning 1.9
 * with #8507 fixed), written against the public API only.
 *
 * Flow:
 *  on_fit_start (or load_before_model when resuming): fuse groups, prepare
 *    every Linear/Conv2d for QAT, add children "quant"/"dequant" to the
 *    root, wrap the root's forward with a pre hook (quant + count, when the
 *    collect trigger holds) and a post hook (dequant, when the pre hook
 *    quantised this call). Done once (Lightning's __module_prepared).
 *  on_{train,validation,test,predict}_start: when the stage is not in
 *    observer_enabled_stages, remember every fake-quant's observer flag
 *    (and every bare observer's enabled flag: observer_type "histogram"
 *    prepares observers, not fake-quants) and disable observing; the
 *    matching *_end restores the flags. The sanity
 *    check keeps observing (Lightning: per-channel observers need a batch to
 *    size their qparams).
 *  on_fit_end: quantize_on_fit_end -> eval + in-place conversion (the
 *    root's children replaced by the int8 modules of bx_quant_convert); the
 *    wrapper then always runs quant/dequant when input_compatible, else the
 *    root takes quantised input. Without conversion the wrapper is removed.
 * The replaced float modules are kept until the callback is freed (the
 * Trainer's optimizers still point at their parameters). */
#include "blixt/qat.h"
#include "core/core_int.h"

#include <stdio.h>
#include <string.h>

#define BX__TRY_Q(x)                     \
    do {                                 \
        bx_status s_q__ = (x);           \
        if (s_q__ != BX_OK) return s_q__; \
    } while (0)

typedef struct fq_flag {
    bx_module *fq; /* a fake-quant, or a bare observer (observer_type "histogram") */
    bool fake_quant, observer, bare;
} fq_flag;

typedef struct qat {
    char qconfig_name[32];
    bx_qconfig qc;
    char observer_type[16];
    bx_qat_collect collect;
    int64_t collect_n;
    bx_qat_trigger_fn collect_fn;
    void *collect_ud;
    bx_qat_fuse_group *fuse;
    char **fuse_strs;
    int nfuse;
    bool input_compatible, quantize_on_fit_end;
    unsigned stages;
    /* run state */
    bx_module *root; /* the prepared model's root (borrowed) */
    bx_trainer *tr;
    bool prepared, hooked, converted, quant_this_call;
    int64_t forward_calls;
    fq_flag *saved;
    int nsaved;
    bool have_saved;
    bx_module *float_parts; /* the replaced float modules (owned) */
    bx_module *kept;        /* BatchNorms folded at fit start (owned) */
} qat;

static bool stage_bit(const qat *q, unsigned bit) { return (q->stages & bit) != 0; }

/* ---- forward wrapper ---------------------------------------------------------- */
static bx_tensor *pre_hook(void *ud, bx_module *m, bx_step *st, bx_tensor *in) {
    qat *q = ud;
    q->quant_this_call = false;
    if (q->converted) {
        if (!q->input_compatible) return NULL;
    } else {
        bool run = q->collect == BX_QAT_COLLECT_ALWAYS ||
                   (q->collect == BX_QAT_COLLECT_COUNT && q->forward_calls < q->collect_n) ||
                   (q->collect == BX_QAT_COLLECT_FN && q->collect_fn(q->collect_ud, q->tr));
        if (!run) return NULL;
        q->forward_calls++;
    }
    q->quant_this_call = true;
    return bx_module_forward(bx_module_child(m, "quant"), st, in);
}

static bx_tensor *post_hook(void *ud, bx_module *m, bx_step *st, bx_tensor *in, bx_tensor *out) {
    (void)in;
    qat *q = ud;
    if (!q->quant_this_call) return NULL;
    q->quant_this_call = false;
    return bx_module_forward(bx_module_child(m, "dequant"), st, out);
}

/* ---- preparation -------------------------------------------------------------- */
static bool is_type(const bx_module *m, const char *t) { return strcmp(bx_module_type_name(m), t) == 0; }
static bool is_bn(const bx_module *m) {
    return is_type(m, "BatchNorm1d") || is_type(m, "BatchNorm2d") || is_type(m, "BatchNorm");
}

static bx_status fuse_group(qat *q, bx_module *root, int gi) {
    const bx_qat_fuse_group *g = &q->fuse[gi];
    bx_module *ms[3] = {NULL, NULL, NULL};
    int n = 0;
    for (; n < 3 && g->paths[n]; n++) {
        ms[n] = bx_module_find(root, g->paths[n]);
        if (!ms[n])
            return bx__error(BX_ERR_NOT_FOUND,
                             "QuantizationAwareTraining: modules_to_fuse group %d names missing module '%s'", gi,
                             g->paths[n]);
    }
    bool lin = is_type(ms[0], "Linear"), conv = is_type(ms[0], "Conv2d");
    bx_status s;
    if ((lin || conv) && n == 2 && is_type(ms[1], "ReLU")) {
        s = bx_qat_fuse_linear_relu(root, g->paths[0], g->paths[1], &q->qc);
    } else if ((lin || conv) && n >= 2 && is_bn(ms[1]) && (n == 2 || is_type(ms[2], "ReLU"))) {
        /* The Trainer's optimizers were built before on_fit_start and hold
         * the BatchNorm's parameters: fold a clone and keep the original
         * alive until the callback is freed. */
        bx_module *clone = bx_module_clone(ms[1]), *orig = NULL;
        s = clone ? bx_module_replace_child(root, g->paths[1], clone, &orig) : BX_ERR_NOMEM;
        if (s == BX_OK && !q->kept && !(q->kept = bx_nn_sequential())) s = BX_ERR_NOMEM;
        if (s == BX_OK) s = bx_sequential_append(q->kept, orig);
        else bx_module_free(orig);
        if (s == BX_OK) s = bx_fuse_conv_bn(root, g->paths[0], g->paths[1]);
        if (s == BX_OK && n == 3) s = bx_qat_fuse_linear_relu(root, g->paths[0], g->paths[2], &q->qc);
    } else {
        char types[160];
        snprintf(types, sizeof types, "%s, %s%s%s", bx_module_type_name(ms[0]), bx_module_type_name(ms[1]),
                 n == 3 ? ", " : "", n == 3 ? bx_module_type_name(ms[2]) : "");
        return bx__error(BX_ERR_INVALID,
                         "QuantizationAwareTraining: modules_to_fuse group %d (%s) cannot be fused; supported: "
                         "(Linear|Conv2d, ReLU), (Linear|Conv2d, BatchNorm[, ReLU])",
                         gi, types);
    }
    if (s != BX_OK) {
        char *m = bx__strdup(bx_errmsg());
        s = bx__error(s, "QuantizationAwareTraining: modules_to_fuse group %d: %s", gi, m ? m : "");
        bx__free(m);
    }
    return s;
}

/* Lightning's _prepare_model: fuse, prepare_qat, stubs, forward wrapper. */
static bx_status prepare(qat *q, bx_trainer *tr) {
    q->tr = tr;
    if (q->prepared) return BX_OK;
    bx_module *root = bx_trainer_module(tr);
    if (!root) return bx__error(BX_ERR_INVALID, "QuantizationAwareTraining: the model has no module");
    if (bx_module_child(root, "quant") || bx_module_child(root, "dequant"))
        return bx__error(BX_ERR_INVALID, "QuantizationAwareTraining: the model already has a 'quant' or 'dequant' child");
    /* every group's modules must exist before anything is changed */
    for (int gi = 0; gi < q->nfuse; gi++)
        for (int k = 0; k < 3 && q->fuse[gi].paths[k]; k++)
            if (!bx_module_find(root, q->fuse[gi].paths[k]))
                return bx__error(BX_ERR_NOT_FOUND,
                                 "QuantizationAwareTraining: modules_to_fuse group %d names missing module '%s'", gi,
                                 q->fuse[gi].paths[k]);
    for (int gi = 0; gi < q->nfuse; gi++) BX__TRY_Q(fuse_group(q, root, gi));
    bx_named_modules *mods = bx_module_named_modules(root);
    if (!mods) return BX_ERR_NOMEM;
    bx_status s = BX_OK;
    for (int i = 0; i < mods->n && s == BX_OK; i++) {
        bx_module *m = mods->modules[i];
        if ((is_type(m, "Linear") || is_type(m, "Conv2d")) && !bx_qat_is_prepared(m, NULL)) {
            s = bx_qat_prepare_layer(m, &q->qc, false);
            if (s != BX_OK) {
                char *e = bx__strdup(bx_errmsg());
                s = bx__error(s, "QuantizationAwareTraining: preparing '%s': %s", mods->names[i], e ? e : "");
                bx__free(e);
            }
        }
    }
    bx_named_modules_free(mods);
    if (s != BX_OK) return s;
    bx_module *qs = bx_qat_quant_stub(&q->qc), *dq = bx_qat_dequant_stub();
    if (!qs || !dq) {
        bx_module_free(qs);
        bx_module_free(dq);
        return bx__error(BX_ERR_NOMEM, "QuantizationAwareTraining: out of memory");
    }
    s = bx_module_add_child(root, "quant", qs);
    if (s == BX_OK) s = bx_module_add_child(root, "dequant", dq);
    else bx_module_free(dq);
    if (s == BX_OK) s = bx_module_add_forward_pre_hook(root, pre_hook, q);
    if (s == BX_OK) s = bx_module_add_forward_hook(root, post_hook, q);
    if (s != BX_OK) return s;
    q->root = root;
    q->hooked = true;
    q->prepared = true;
    return BX_OK;
}

/* ---- observers per stage ------------------------------------------------------ */
static bx_status disable_observers(qat *q) {
    if (!q->root) return BX_OK;
    bx_named_modules *mods = bx_module_named_modules(q->root);
    if (!mods) return BX_ERR_NOMEM;
    bx__free(q->saved);
    q->saved = bx__calloc(sizeof *q->saved * (size_t)(mods->n + 1));
    q->nsaved = 0;
    bx_status s = q->saved ? BX_OK : BX_ERR_NOMEM;
    for (int i = 0; i < mods->n && s == BX_OK; i++) {
        bx_module *m = mods->modules[i];
        if (bx_module_is_observer(m)) {
            /* a bare observer (post-training qconfig) observes in its module
             * forward unless disabled; a fake-quant's observer ignores the
             * flag (the fake-quant's observer_enabled gates it), so setting
             * it there too is harmless */
            fq_flag *f = &q->saved[q->nsaved++];
            f->fq = m;
            f->bare = true;
            f->observer = bx_observer_enabled(m);
            s = bx_observer_set_enabled(m, false);
            continue;
        }
        if (!bx_module_is_fake_quant(m)) continue;
        fq_flag *f = &q->saved[q->nsaved++];
        f->fq = m;
        f->bare = false;
        f->fake_quant = bx_get(bx_module_buffer(m, "fake_quant_enabled"), 0) != 0;
        f->observer = bx_get(bx_module_buffer(m, "observer_enabled"), 0) != 0;
        s = bx_fake_quant_enable(m, f->fake_quant, false);
    }
    bx_named_modules_free(mods);
    q->have_saved = s == BX_OK;
    return s;
}

static bx_status restore_observers(qat *q) {
    if (!q->have_saved || q->converted) return BX_OK;
    for (int i = 0; i < q->nsaved; i++) {
        bx_module *m = q->saved[i].fq;
        if (q->saved[i].bare) {
            BX__TRY_Q(bx_observer_set_enabled(m, q->saved[i].observer));
            continue;
        }
        bool fqe = bx_get(bx_module_buffer(m, "fake_quant_enabled"), 0) != 0;
        BX__TRY_Q(bx_fake_quant_enable(m, fqe, q->saved[i].observer));
    }
    return BX_OK;
}

static bx_status q_on_fit_start(void *self, bx_trainer *tr) { return prepare(self, tr); }

static bx_status q_train_start(void *self, bx_trainer *tr) {
    (void)tr;
    return stage_bit(self, BX_QAT_STAGE_TRAIN) ? BX_OK : disable_observers(self);
}
static bx_status q_train_end(void *self, bx_trainer *tr) {
    (void)tr;
    return stage_bit(self, BX_QAT_STAGE_TRAIN) ? BX_OK : restore_observers(self);
}
static bx_status q_val_start(void *self, bx_trainer *tr) {
    return stage_bit(self, BX_QAT_STAGE_VALIDATE) || bx_trainer_sanity_checking(tr) ? BX_OK : disable_observers(self);
}
static bx_status q_val_end(void *self, bx_trainer *tr) {
    return stage_bit(self, BX_QAT_STAGE_VALIDATE) || bx_trainer_sanity_checking(tr) ? BX_OK : restore_observers(self);
}
static bx_status q_test_start(void *self, bx_trainer *tr) {
    (void)tr;
    return stage_bit(self, BX_QAT_STAGE_TEST) ? BX_OK : disable_observers(self);
}
static bx_status q_test_end(void *self, bx_trainer *tr) {
    (void)tr;
    return stage_bit(self, BX_QAT_STAGE_TEST) ? BX_OK : restore_observers(self);
}
static bx_status q_predict_start(void *self, bx_trainer *tr) {
    (void)tr;
    return stage_bit(self, BX_QAT_STAGE_PREDICT) ? BX_OK : disable_observers(self);
}
static bx_status q_predict_end(void *self, bx_trainer *tr) {
    (void)tr;
    return stage_bit(self, BX_QAT_STAGE_PREDICT) ? BX_OK : restore_observers(self);
}

/* ---- conversion at fit end ----------------------------------------------------- */
/* Moves child `name` of `from` out (an Identity takes its place); *out owned. */
static bx_status take_child(bx_module *from, const char *name, bx_module **out) {
    bx_module *ph = bx_nn_identity();
    if (!ph) return BX_ERR_NOMEM;
    return bx_module_replace_child(from, name, ph, out);
}

static bx_status convert_in_place(qat *q) {
    bx_module *root = q->root;
    int nc = bx_module_num_children(root);
    char **names = bx__calloc(sizeof *names * (size_t)(nc + 1));
    bx_module *seq = bx_nn_sequential();
    if (!names || !seq) {
        bx__free(names);
        bx_module_free(seq);
        return BX_ERR_NOMEM;
    }
    /* order: quant, the model's children, dequant (names copied: a child's
     * name is only guaranteed while the child stays) */
    int k = 0;
    bx_status s = BX_OK;
    names[k++] = bx__strdup("quant");
    for (int i = 0; i < nc; i++) {
        const char *nm;
        bx_module_child_at(root, i, &nm);
        if (strcmp(nm, "quant") && strcmp(nm, "dequant")) names[k++] = bx__strdup(nm);
    }
    names[k++] = bx__strdup("dequant");
    for (int i = 0; i < k; i++)
        if (!names[i]) s = BX_ERR_NOMEM;
    int moved = 0;
    for (; s == BX_OK && moved < k; moved++) {
        bx_module *c = NULL;
        s = take_child(root, names[moved], &c);
        if (s == BX_OK) s = bx_sequential_append(seq, c);
    }
    bx_module *qseq = NULL;
    if (s == BX_OK) s = bx_quant_convert(seq, &qseq);
    /* put each child back: its int8 version, or the original (kept as is
     * when convert dropped it, e.g. Identity/Dropout, or on failure) */
    int qi = 0;
    bx_status s2 = BX_OK;
    for (int i = 0; i < moved && s2 == BX_OK; i++) {
        const char *sn;
        bx_module *orig = bx_module_child_at(seq, i, &sn);
        if (!orig) break;
        bx_module *repl = NULL;
        bool dropped = is_type(orig, "Identity") || is_type(orig, "Dropout");
        if (s == BX_OK && !dropped) {
            char qn[24];
            snprintf(qn, sizeof qn, "%d", qi++);
            s2 = take_child(qseq, qn, &repl);
        } else {
            char on[24];
            snprintf(on, sizeof on, "%s", sn);
            s2 = take_child(seq, on, &repl);
        }
        if (s2 == BX_OK) s2 = bx_module_replace_child(root, names[i], repl, NULL);
    }
    bx_module_free(qseq);
    for (int i = 0; i < k; i++) bx__free(names[i]);
    bx__free(names);
    if (s == BX_OK) s = s2;
    if (s == BX_OK) {
        bx_module_free(q->float_parts);
        q->float_parts = seq;
    } else {
        bx_module_free(seq);
    }
    return s;
}

static bx_status q_on_fit_end(void *self, bx_trainer *tr) {
    (void)tr;
    qat *q = self;
    if (!q->prepared || q->converted) return BX_OK;
    if (!q->quantize_on_fit_end) { /* back to the plain forward */
        bx_module_remove_forward_pre_hook(q->root, pre_hook, q);
        bx_module_remove_forward_hook(q->root, post_hook, q);
        q->hooked = false;
        return BX_OK;
    }
    bx_module_train(q->root, false);
    bx_status s = convert_in_place(q);
    if (s != BX_OK) {
        char *e = bx__strdup(bx_errmsg());
        s = bx__error(s, "QuantizationAwareTraining: converting the model at fit end: %s", e ? e : "");
        bx__free(e);
        return s;
    }
    q->converted = true;
    q->have_saved = false;
    return BX_OK;
}

/* ---- state ---------------------------------------------------------------------- */
static bx_status q_state_dict(void *self, bx_trainer *tr, bx_state *out) {
    (void)tr;
    qat *q = self;
    bx_status s;
    if (q->collect == BX_QAT_COLLECT_ALWAYS) s = bx_state_set(out, "_collect_quantization", bx_state_null());
    else if (q->collect == BX_QAT_COLLECT_COUNT) s = bx_state_set_int(out, "_collect_quantization", q->collect_n);
    else s = bx_state_set_string(out, "_collect_quantization", "<callable>");
    if (s == BX_OK) s = bx_state_set_string(out, "_observer_type", q->observer_type);
    if (s == BX_OK) {
        if (!q->nfuse) {
            s = bx_state_set(out, "_modules_to_fuse", bx_state_null());
        } else {
            bx_state *l = bx_state_list();
            for (int g = 0; l && g < q->nfuse && s == BX_OK; g++) {
                bx_state *gl = bx_state_list();
                for (int k = 0; gl && k < 3 && q->fuse[g].paths[k] && s == BX_OK; k++)
                    s = bx_state_append(gl, bx_state_string(q->fuse[g].paths[k]));
                s = s == BX_OK ? bx_state_append(l, gl) : s;
            }
            s = s == BX_OK ? bx_state_set(out, "_modules_to_fuse", l) : s;
        }
    }
    if (s == BX_OK) s = bx_state_set_string(out, "_qconfig", q->qconfig_name);
    if (s == BX_OK) s = bx_state_set_bool(out, "_input_compatible", q->input_compatible);
    return s;
}

/* The saved options must describe the same quantisation as this callback's
 * (the model structure is rebuilt from this callback's options). */
static bx_status q_load_before_model(void *self, bx_trainer *tr, const bx_state *st) {
    qat *q = self;
    const bx_state *ov = bx_state_get(st, "_observer_type");
    if (ov && bx_state_typeof(ov) == BX_STATE_STRING && strcmp(bx_state_get_string(ov), q->observer_type) != 0)
        return bx__error(BX_ERR_INVALID,
                         "QuantizationAwareTraining: checkpoint was trained with observer_type '%s', this callback "
                         "uses '%s'",
                         bx_state_get_string(ov), q->observer_type);
    const bx_state *v = bx_state_get(st, "_qconfig");
    if (v && bx_state_typeof(v) == BX_STATE_STRING && strcmp(bx_state_get_string(v), q->qconfig_name) != 0)
        return bx__error(BX_ERR_INVALID,
                         "QuantizationAwareTraining: checkpoint was trained with qconfig '%s', this callback uses '%s'",
                         bx_state_get_string(v), q->qconfig_name);
    return prepare(q, tr);
}

static bx_status q_load_state_dict(void *self, bx_trainer *tr, const bx_state *st) {
    (void)self, (void)tr, (void)st; /* everything was applied by load_before_model */
    return BX_OK;
}

static void q_destroy(void *self) {
    qat *q = self;
    if (!q) return;
    if (q->fuse_strs)
        for (int i = 0; i < q->nfuse * 3; i++) bx__free(q->fuse_strs[i]);
    bx__free(q->fuse_strs);
    bx__free(q->fuse);
    bx__free(q->saved);
    bx_module_free(q->float_parts);
    bx_module_free(q->kept);
    bx__free(q);
}

static const bx_callback_ops QAT_OPS = {
    .name = "QuantizationAwareTraining",
    .on_fit_start = q_on_fit_start,
    .on_fit_end = q_on_fit_end,
    .on_train_start = q_train_start,
    .on_train_end = q_train_end,
    .on_validation_start = q_val_start,
    .on_validation_end = q_val_end,
    .on_test_start = q_test_start,
    .on_test_end = q_test_end,
    .on_predict_start = q_predict_start,
    .on_predict_end = q_predict_end,
    .state_dict = q_state_dict,
    .load_state_dict = q_load_state_dict,
    .load_before_model = q_load_before_model,
    .destroy = q_destroy,
};

bx_callback *bx_qat_callback_new(const bx_qat_opts *o) {
    bx_qat_opts d = BX_QAT_OPTS_INIT;
    if (!o) o = &d;
    const char *ot = o->observer_type ? o->observer_type : "average";
    if (strcmp(ot, "average") && strcmp(ot, "histogram")) {
        bx__error(BX_ERR_INVALID, "QuantizationAwareTraining: observer_type '%s' is not one of 'average', 'histogram'", ot);
        return NULL;
    }
    bx_qconfig qc;
    if (!o->custom_qconfig) {
        const char *name = o->qconfig ? o->qconfig : "(null)";
        if (!o->qconfig || bx_qconfig_default_qat(o->qconfig, 0, &qc) != BX_OK) {
            bx__error(BX_ERR_INVALID,
                      "QuantizationAwareTraining: unsupported qconfig '%s'; expected one of 'fbgemm', 'x86', "
                      "'qnnpack', 'onednn' or a custom bx_qconfig",
                      name);
            return NULL;
        }
        /* Lightning: "histogram" -> get_default_qconfig(backend): observers
         * only (HistogramObserver activations, MinMax weights), float training */
        if (!strcmp(ot, "histogram") && bx_qconfig_default(o->qconfig, &qc) != BX_OK) return NULL;
    } else {
        qc = *o->custom_qconfig;
    }
    if (o->collect == BX_QAT_COLLECT_COUNT ? o->collect_n < 0
        : o->collect == BX_QAT_COLLECT_FN  ? !o->collect_fn
                                           : o->collect != BX_QAT_COLLECT_ALWAYS) {
        bx__error(BX_ERR_INVALID,
                  "QuantizationAwareTraining: unsupported collect_quantization (kind %d, n %lld): expected None, a "
                  "non-negative int or a function of the trainer",
                  (int)o->collect, (long long)o->collect_n);
        return NULL;
    }
    if (o->observer_enabled_stages & ~0xFu) {
        bx__error(BX_ERR_INVALID, "QuantizationAwareTraining: observer_enabled_stages 0x%x has unknown stage bits",
                  o->observer_enabled_stages);
        return NULL;
    }
    if (o->num_modules_to_fuse < 0 || (o->num_modules_to_fuse > 0 && !o->modules_to_fuse)) {
        bx__error(BX_ERR_INVALID, "QuantizationAwareTraining: modules_to_fuse is NULL with %d groups",
                  o->num_modules_to_fuse);
        return NULL;
    }
    for (int g = 0; g < o->num_modules_to_fuse; g++)
        if (!o->modules_to_fuse[g].paths[0] || !o->modules_to_fuse[g].paths[1]) {
            bx__error(BX_ERR_INVALID, "QuantizationAwareTraining: modules_to_fuse group %d has fewer than 2 modules", g);
            return NULL;
        }
    qat *q = bx__calloc(sizeof *q);
    if (!q) return NULL;
    snprintf(q->qconfig_name, sizeof q->qconfig_name, "%s", o->custom_qconfig ? "custom" : o->qconfig);
    snprintf(q->observer_type, sizeof q->observer_type, "%s", ot);
    q->qc = qc;
    q->collect = o->collect;
    q->collect_n = o->collect_n;
    q->collect_fn = o->collect_fn;
    q->collect_ud = o->collect_ud;
    q->input_compatible = o->input_compatible;
    q->quantize_on_fit_end = o->quantize_on_fit_end;
    q->stages = o->observer_enabled_stages;
    if (o->num_modules_to_fuse > 0) {
        q->nfuse = o->num_modules_to_fuse;
        q->fuse = bx__calloc(sizeof *q->fuse * (size_t)q->nfuse);
        q->fuse_strs = bx__calloc(sizeof *q->fuse_strs * (size_t)q->nfuse * 3);
        if (!q->fuse || !q->fuse_strs) {
            q_destroy(q);
            return NULL;
        }
        for (int g = 0; g < q->nfuse; g++)
            for (int k = 0; k < 3 && o->modules_to_fuse[g].paths[k]; k++) {
                q->fuse_strs[g * 3 + k] = bx__strdup(o->modules_to_fuse[g].paths[k]);
                if (!q->fuse_strs[g * 3 + k]) {
                    q_destroy(q);
                    return NULL;
                }
                q->fuse[g].paths[k] = q->fuse_strs[g * 3 + k];
            }
    }
    return bx_callback_new(&QAT_OPS, q);
}

int64_t bx_qat_callback_forward_calls(const bx_callback *cb) {
    if (!cb || bx_callback_get_ops(cb) != &QAT_OPS) return -1;
    return ((const qat *)bx_callback_self(cb))->forward_calls;
}

bool bx_qat_callback_converted(const bx_callback *cb) {
    if (!cb || bx_callback_get_ops(cb) != &QAT_OPS) return false;
    return ((const qat *)bx_callback_self(cb))->converted;
}
