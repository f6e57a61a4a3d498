/* 02_custom_callback.c - writing your own callback.
 *
 *   blixt-ex-02-custom-callback [--data DIR] [--epochs N]
 *
 * A callback is a bx_callback_ops table (only the hooks you need) plus your
 * state. This one, PlateauStop, watches val_loss after each validation,
 * prints the best value so far and stops training itself when the loss has
 * not improved by min_delta for `patience` validations. Its state_dict/load_state_dict
 * put (best, wait) into every checkpoint under the key "PlateauStop", so a
 * resumed run continues counting. The model is 01's. */
#include "example_common.h"

#include <math.h>

/* ---- the callback (under 60 lines) ---- */
typedef struct plateau_stop {
    double best;     /* lowest val_loss seen */
    int64_t wait;    /* validations since it improved */
    int64_t patience;
    double min_delta; /* smaller gains count as no improvement */
} plateau_stop;

static bx_status ps_on_validation_end(void *self, bx_trainer *tr) {
    plateau_stop *p = self;
    double v;
    if (bx_trainer_sanity_checking(tr)) return BX_OK; /* the 2-batch dry run */
    bx_status s = bx_trainer_metric(tr, "val_loss", &v);
    if (s != BX_OK) return s;                         /* fails fit, message names the keys */
    if (isnan(v)) return bx_set_error(BX_ERR_NUMERIC, "PlateauStop: val_loss is nan"); /* fit returns it */
    if (v < p->best - p->min_delta) {
        p->wait = 0;
    } else if (++p->wait >= p->patience) {
        printf("PlateauStop: no improvement for %lld validations, stopping\n", (long long)p->wait);
        bx_trainer_set_should_stop(tr, true);         /* the loop ends after this epoch */
    }
    if (v < p->best) p->best = v;
    printf("epoch %lld: val_loss %.4f (best %.4f)\n", (long long)bx_trainer_current_epoch(tr), v, p->best);
    return BX_OK;
}

static bx_status ps_state_dict(void *self, bx_trainer *tr, bx_state *out) {
    (void)tr;
    plateau_stop *p = self;
    bx_status s = bx_state_set_float(out, "best", p->best);
    return s != BX_OK ? s : bx_state_set_int(out, "wait", p->wait);
}

static bx_status ps_load_state_dict(void *self, bx_trainer *tr, const bx_state *st) {
    (void)tr;
    plateau_stop *p = self;
    bx_status s = bx_state_need_float(st, "best", &p->best);
    return s != BX_OK ? s : bx_state_need_int(st, "wait", &p->wait);
}

static const bx_callback_ops PLATEAU_STOP_OPS = {
    .name = "PlateauStop", /* also the state key in checkpoints */
    .on_validation_end = ps_on_validation_end,
    .state_dict = ps_state_dict,
    .load_state_dict = ps_load_state_dict,
    .destroy = free,       /* the Trainer frees self with the callback */
};

/* ---- using it ---- */
int main(int argc, char **argv) {
    ex_args a;
    if (ex_parse(argc, argv, &a, 20)) return 2;
    bx_dataset *train_ds, *test_ds;
    EX_CHECK(ex_dataset(a.data, "train", &train_ds));
    EX_CHECK(ex_dataset(a.data, "t10k", &test_ds));
    bx_loader *train = ex_loader(train_ds, true), *val = ex_loader(test_ds, false);
    ex_classifier cls = {ex_net_new(0), 3e-3};
    bx_model model = {&EX_CLASSIFIER_OPS, &cls};

    plateau_stop *ps = malloc(sizeof *ps);
    *ps = (plateau_stop){INFINITY, 0, 2, 0.02};
    bx_callback *cbs[1] = {bx_callback_new(&PLATEAU_STOP_OPS, ps)};
    bx_trainer_opts o = ex_trainer_opts("runs/02", a.epochs);
    o.callbacks = cbs; /* the Trainer owns them from here */
    o.num_callbacks = 1;
    bx_trainer *tr = bx_trainer_new(&o);
    if (!tr) EX_CHECK(BX_ERR_INVALID);
    EX_CHECK(bx_trainer_fit(tr, &model, train, val, NULL));
    printf("stopped after %lld epochs, best val_loss %.4f\n", (long long)bx_trainer_current_epoch(tr), ps->best);

    bx_trainer_free(tr);
    bx_module_free(cls.net);
    bx_loader_free(train);
    bx_loader_free(val);
    bx_dataset_free(train_ds);
    bx_dataset_free(test_ds);
    return 0;
}
