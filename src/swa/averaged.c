/* averaged.c - bx_averaged_model: torch.optim.swa_utils.AveragedModel (equal
 * weight running mean or a custom avg_fn) and the EMA variant, their state
 * dict views and resumable state. */
#include "swa/swa_int.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

struct bx_averaged_model {
    bx_module *module;     /* the deep copy being averaged (owned) */
    bx_tensor *n_averaged; /* i64 0-d, torch's buffer (owned) */
    bool is_ema;
    bx_avg_fn avg_fn;      /* NULL: default running mean */
    void *avg_ud;
    bool use_buffers;      /* SWA: buffers averaged too */
    bx_ema_opts ema;
    int64_t num_steps;     /* bx_averaged_model_step calls */
};

static int64_t n_avg(const bx_averaged_model *a) { return *(const int64_t *)a->n_averaged->data; }

static bx_averaged_model *new_common(const bx_module *model) {
    if (!model) {
        bx__error(BX_ERR_INVALID, "averaged_model: model is NULL");
        return NULL;
    }
    bx_averaged_model *a = bx__calloc(sizeof *a);
    if (!a) return NULL;
    a->module = bx_module_clone(model);
    a->n_averaged = a->module ? bx_tensor_zeros(BX_I64, 0, NULL) : NULL;
    if (!a->n_averaged) {
        bx_module_free(a->module);
        bx__free(a);
        return NULL;
    }
    return a;
}

bx_averaged_model *bx_averaged_model_new(const bx_module *model, const bx_averaged_model_opts *o) {
    static const bx_averaged_model_opts dflt = BX_AVERAGED_MODEL_OPTS_INIT;
    if (!o) o = &dflt;
    bx_averaged_model *a = new_common(model);
    if (!a) return NULL;
    a->avg_fn = o->avg_fn;
    a->avg_ud = o->avg_ud;
    a->use_buffers = o->use_buffers;
    return a;
}

bx_averaged_model *bx_averaged_model_new_ema(const bx_module *model, const bx_ema_opts *o) {
    static const bx_ema_opts dflt = BX_EMA_OPTS_INIT;
    if (!o) o = &dflt;
    if (!(o->decay >= 0.0 && o->decay <= 1.0)) {
        bx__error(BX_ERR_INVALID, "ema: decay %g not in [0, 1]", o->decay);
        return NULL;
    }
    if (o->every_n_steps < 1 || o->start_step < 0) {
        bx__error(BX_ERR_INVALID, "ema: every_n_steps %lld must be >= 1 and start_step %lld >= 0",
                  (long long)o->every_n_steps, (long long)o->start_step);
        return NULL;
    }
    if (o->buffers != BX_EMA_BUFFERS_COPY && o->buffers != BX_EMA_BUFFERS_AVERAGE && o->buffers != BX_EMA_BUFFERS_KEEP) {
        bx__error(BX_ERR_INVALID, "ema: unknown buffers mode %d", (int)o->buffers);
        return NULL;
    }
    bx_averaged_model *a = new_common(model);
    if (!a) return NULL;
    a->is_ema = true;
    a->ema = *o;
    return a;
}

void bx_averaged_model_free(bx_averaged_model *a) {
    if (!a) return;
    bx_module_free(a->module);
    bx_tensor_free(a->n_averaged);
    bx__free(a);
}

bx_module *bx_averaged_model_module(bx_averaged_model *a) { return a ? a->module : NULL; }
int64_t bx_averaged_model_n_averaged(const bx_averaged_model *a) { return a ? n_avg(a) : 0; }
const bx_tensor *bx_averaged_model_n_averaged_tensor(const bx_averaged_model *a) { return a ? a->n_averaged : NULL; }
bool bx_averaged_model_is_ema(const bx_averaged_model *a) { return a && a->is_ema; }
int64_t bx_averaged_model_num_steps(const bx_averaged_model *a) { return a ? a->num_steps : 0; }

bx_status bx_averaged_model_set_n_averaged(bx_averaged_model *a, int64_t n) {
    if (!a || n < 0) return bx__error(BX_ERR_INVALID, "averaged_model: n_averaged %lld must be >= 0", (long long)n);
    *(int64_t *)a->n_averaged->data = n;
    return BX_OK;
}

/* ---- the per-tensor update ------------------------------------------------------ */

typedef enum { UPD_COPY, UPD_AVERAGE } upd_mode;

/* Loops over more elements than this run on all threads (memory-bound
 * elementwise work, like the optimizers' threshold). */
#define SWA_PAR_MIN 32768

/* x + (y - x) / k in float32 (the division first, as torch). */
static inline float mean_one(float x, float y, float k) {
    float q = (y - x) / k;
    return x + q;
}

/* decay*x + (1 - decay)*y with both products rounded (no fused multiply-add). */
static inline float ema_one(float x, float y, float df, float om) {
    float u = df * x;
    float v = om * y;
    return u + v;
}

static bool is_float(bx_dtype dt) { return dt == BX_F32 || dt == BX_F64; }

/* avg (owned, same numel as p) <- the average with p, when n (>= 1) models
 * are already in it. Mirrors torch's arithmetic:
 *  default f32: avg + (p - avg) / (float)(n + 1);
 *  default integer: the difference is exact, divided in float32 (torch's
 *    true division of integer tensors), added in float32, truncated toward
 *    zero by copy_ into the integer buffer: 20 + (43-20)/2 -> 31;
 *  EMA: decay*avg + (1-decay)*p with the scalars rounded to float32. */
static bx_status average_one(const bx_averaged_model *a, bx_tensor *avg, const bx_tensor *p, int64_t n) {
    int64_t cnt = bx_numel(avg);
    bool f32c = avg->dtype == BX_F32 && p->dtype == BX_F32 && bx_is_contiguous(avg) && bx_is_contiguous(p);
    if (a->is_ema) {
        double d = a->ema.decay;
        if (a->ema.warmup) {
            double w = (1.0 + (double)n) / (10.0 + (double)n);
            if (w < d) d = w;
        }
        if (!is_float(avg->dtype)) return bx_copy(avg, p); /* counters follow the model */
        float df = (float)d, om = (float)(1.0 - d);
        if (f32c) {
            float *x = avg->data;
            const float *y = p->data;
            if (cnt > SWA_PAR_MIN) {
#pragma omp parallel for simd schedule(static)
                for (int64_t i = 0; i < cnt; i++) x[i] = ema_one(x[i], y[i], df, om);
            } else {
#pragma omp simd
                for (int64_t i = 0; i < cnt; i++) x[i] = ema_one(x[i], y[i], df, om);
            }
        } else {
            for (int64_t i = 0; i < cnt; i++) {
                double v = avg->dtype == BX_F64 ? d * bx_get(avg, i) + (1.0 - d) * bx_get(p, i)
                                                : (double)(df * (float)bx_get(avg, i) + om * (float)bx_get(p, i));
                bx_set(avg, i, v);
            }
        }
        return BX_OK;
    }
    if (a->avg_fn) {
        if (f32c) {
            a->avg_fn(a->avg_ud, avg->data, p->data, cnt, n);
            return BX_OK;
        }
        float *buf = bx__malloc(sizeof(float) * (size_t)(2 * cnt + 1));
        if (!buf) return BX_ERR_NOMEM;
        for (int64_t i = 0; i < cnt; i++) {
            buf[i] = (float)bx_get(avg, i);
            buf[cnt + i] = (float)bx_get(p, i);
        }
        a->avg_fn(a->avg_ud, buf, buf + cnt, cnt, n);
        for (int64_t i = 0; i < cnt; i++)
            bx_set(avg, i, is_float(avg->dtype) ? (double)buf[i] : trunc((double)buf[i]));
        bx__free(buf);
        return BX_OK;
    }
    float k = (float)(n + 1);
    if (f32c) {
        float *x = avg->data;
        const float *y = p->data;
        if (cnt > SWA_PAR_MIN) {
#pragma omp parallel for simd schedule(static)
            for (int64_t i = 0; i < cnt; i++) x[i] = mean_one(x[i], y[i], k);
        } else {
#pragma omp simd
            for (int64_t i = 0; i < cnt; i++) x[i] = mean_one(x[i], y[i], k);
        }
        return BX_OK;
    }
    for (int64_t i = 0; i < cnt; i++) {
        double v;
        if (avg->dtype == BX_F64) {
            double x = bx_get(avg, i);
            v = x + (bx_get(p, i) - x) / (double)(n + 1);
        } else if (avg->dtype == BX_F32) {
            float x = (float)bx_get(avg, i);
            float q = ((float)bx_get(p, i) - x) / k;
            v = (double)(x + q);
        } else { /* integer buffer */
            int64_t x = (int64_t)bx_get(avg, i), y = (int64_t)bx_get(p, i);
            float q = (float)(y - x) / k;
            float s = (float)x + q;
            v = trunc((double)s);
        }
        bx_set(avg, i, v);
    }
    return BX_OK;
}

/* Pairs lists `mine` (the averaged copy) and `theirs` (the model) by name:
 * *peers[i] is the model's tensor for mine's entry i (the same name, or the
 * "_orig" parameter of a model pruned since the copy was made), with the
 * same shape; every model entry must be used, except pruning masks. */
static bx_status pair_up(const char *what, const bx_named_tensors *mine, const bx_named_tensors *theirs,
                         const bx_tensor **peers) {
    int used = 0;
    for (int i = 0; i < mine->n; i++) {
        char s1[96], s2[96];
        const bx_tensor *t = bx__swa_peer(theirs, mine->names[i]);
        if (!t)
            return bx__error(BX_ERR_SHAPE, "averaged_model update: %s '%s' of the averaged copy is not in the model",
                             what, mine->names[i]);
        if (!bx_same_shape(mine->tensors[i], t))
            return bx__error(BX_ERR_SHAPE, "averaged_model update: %s '%s' %s does not match the model's %s", what,
                             mine->names[i], bx_shape_str(mine->tensors[i], s1, sizeof s1),
                             bx_shape_str(t, s2, sizeof s2));
        peers[i] = t;
        used++;
    }
    for (int i = 0; i < theirs->n; i++)
        if (bx__swa_pruning_extra(theirs->names[i])) used++;
    if (used != theirs->n)
        return bx__error(BX_ERR_SHAPE, "averaged_model update: the model has %d %ss, the averaged copy %d (names differ)",
                         theirs->n, what, mine->n);
    return BX_OK;
}

static bx_status apply_list(const bx_averaged_model *a, bx_named_tensors *mine, const bx_tensor **peers,
                            upd_mode mode, int64_t n) {
    for (int i = 0; i < mine->n; i++) {
        bx_status s = (mode == UPD_COPY || n == 0) ? bx_copy(mine->tensors[i], peers[i])
                                                   : average_one(a, mine->tensors[i], peers[i], n);
        if (s != BX_OK) return s;
    }
    return BX_OK;
}

bx_status bx_averaged_model_update(bx_averaged_model *a, bx_module *model) {
    if (!a || !model) return bx__error(BX_ERR_INVALID, "averaged_model update: NULL %s", a ? "model" : "averaged model");
    /* which buffers take part: SWA use_buffers and EMA average/copy modes */
    bool with_buffers = a->is_ema ? a->ema.buffers != BX_EMA_BUFFERS_KEEP : a->use_buffers;
    upd_mode buf_mode = (a->is_ema && a->ema.buffers == BX_EMA_BUFFERS_COPY) ? UPD_COPY : UPD_AVERAGE;
    bx_named_tensors *mp = bx_module_named_parameters(a->module), *tp = bx_module_named_parameters(model);
    bx_named_tensors *mb = NULL, *tb = NULL;
    if (with_buffers) {
        mb = bx_module_named_buffers(a->module);
        tb = bx_module_named_buffers(model);
    }
    bx_status s = BX_OK;
    if (!mp || !tp || (with_buffers && (!mb || !tb))) s = bx__error(BX_ERR_NOMEM, "averaged_model update: out of memory");
    const bx_tensor **pp = s == BX_OK ? bx__calloc(sizeof *pp * (size_t)(mp->n + 1)) : NULL;
    const bx_tensor **pb = s == BX_OK && with_buffers ? bx__calloc(sizeof *pb * (size_t)(mb->n + 1)) : NULL;
    if (s == BX_OK && (!pp || (with_buffers && !pb))) s = BX_ERR_NOMEM;
    if (s == BX_OK) s = pair_up("parameter", mp, tp, pp);
    if (s == BX_OK && with_buffers) s = pair_up("buffer", mb, tb, pb);
    int64_t n = n_avg(a);
    if (s == BX_OK) s = apply_list(a, mp, pp, UPD_AVERAGE, n);
    if (s == BX_OK && with_buffers) s = apply_list(a, mb, pb, buf_mode, n);
    if (s == BX_OK) *(int64_t *)a->n_averaged->data = n + 1;
    bx__free(pp);
    bx__free(pb);
    bx_named_tensors_free(mp);
    bx_named_tensors_free(tp);
    bx_named_tensors_free(mb);
    bx_named_tensors_free(tb);
    return s;
}

bx_status bx_averaged_model_step(bx_averaged_model *a, bx_module *model, bool *updated) {
    if (updated) *updated = false;
    if (!a || !model) return bx__error(BX_ERR_INVALID, "averaged_model step: NULL %s", a ? "model" : "averaged model");
    int64_t s = a->num_steps + 1;
    bool due = !a->is_ema || (s >= a->ema.start_step && s % a->ema.every_n_steps == 0);
    if (due) {
        bx_status st = bx_averaged_model_update(a, model);
        if (st != BX_OK) return st; /* the call is not counted: nothing changed */
        if (updated) *updated = true;
    }
    a->num_steps = s;
    return BX_OK;
}

/* ---- state dict views ----------------------------------------------------------- */

bx_named_tensors *bx_averaged_model_state_dict(bx_averaged_model *a, bool prefixed) {
    if (!a) return NULL;
    bx_named_tensors *sd = bx_module_state_dict(a->module);
    if (!sd || !prefixed) return sd;
    bx_named_tensors *out = bx_named_tensors_new(false);
    bx_status s = out ? bx_named_tensors_add(out, "n_averaged", a->n_averaged) : BX_ERR_NOMEM;
    char name[512];
    for (int i = 0; s == BX_OK && i < sd->n; i++) {
        int len = snprintf(name, sizeof name, "module.%s", sd->names[i]);
        if (len < 0 || (size_t)len >= sizeof name) s = bx__error(BX_ERR_INVALID, "averaged_model: key '%s' too long", sd->names[i]);
        else s = bx_named_tensors_add(out, name, sd->tensors[i]);
    }
    bx_named_tensors_free(sd);
    if (s != BX_OK) {
        bx_named_tensors_free(out);
        return NULL;
    }
    return out;
}

static bool is_prefixed_view(const bx_named_tensors *sd) {
    for (int i = 0; i < sd->n; i++)
        if (strcmp(sd->names[i], "n_averaged") == 0 || strncmp(sd->names[i], "module.", 7) == 0) return true;
    return false;
}

bx_status bx_averaged_model_load_state_dict(bx_averaged_model *a, const bx_named_tensors *sd, bool strict) {
    if (!a || !sd) return bx__error(BX_ERR_INVALID, "averaged_model load_state_dict: NULL argument");
    if (!is_prefixed_view(sd)) return bx_module_load_state_dict(a->module, sd, strict);
    const bx_tensor *nt = NULL;
    bx_named_tensors *inner = bx_named_tensors_new(false);
    if (!inner) return BX_ERR_NOMEM;
    bx_status s = BX_OK;
    for (int i = 0; s == BX_OK && i < sd->n; i++) {
        if (strcmp(sd->names[i], "n_averaged") == 0) nt = sd->tensors[i];
        else if (strncmp(sd->names[i], "module.", 7) == 0) s = bx_named_tensors_add(inner, sd->names[i] + 7, sd->tensors[i]);
        else if (strict) s = bx__error(BX_ERR_INVALID, "load_state_dict: unexpected key '%s'", sd->names[i]);
    }
    int64_t nval = n_avg(a);
    if (s == BX_OK && !nt && strict) s = bx__error(BX_ERR_NOT_FOUND, "load_state_dict: missing key 'n_averaged'");
    if (s == BX_OK && nt) {
        double v = bx_numel(nt) == 1 ? bx_get(nt, 0) : -1.0;
        if (bx_numel(nt) != 1 || v < 0 || v != floor(v))
            s = bx__error(BX_ERR_SHAPE, "load_state_dict: n_averaged must be one integer >= 0");
        else nval = (int64_t)v;
    }
    if (s == BX_OK) s = bx_module_load_state_dict(a->module, inner, strict);
    if (s == BX_OK) *(int64_t *)a->n_averaged->data = nval;
    bx_named_tensors_free(inner);
    return s;
}

/* ---- resumable state ------------------------------------------------------------ */

bx_state *bx_averaged_model_state(bx_averaged_model *a) {
    if (!a) return NULL;
    bx_state *d = bx_state_dict(), *ms = bx_state_dict();
    bx_named_tensors *sd = bx_averaged_model_state_dict(a, true);
    bx_status s = (d && ms && sd) ? BX_OK : BX_ERR_NOMEM;
    if (s == BX_OK) s = bx_state_set_string(d, "kind", a->is_ema ? "ema" : "swa");
    if (s == BX_OK) s = bx_state_set_int(d, "n_averaged", n_avg(a));
    if (s == BX_OK) s = bx_state_set_int(d, "num_steps", a->num_steps);
    if (s == BX_OK) s = bx_state_set_bool(d, "use_buffers", a->use_buffers);
    for (int i = 0; s == BX_OK && i < sd->n; i++) s = bx_state_set_tensor(ms, sd->names[i], sd->tensors[i]);
    bx_named_tensors_free(sd);
    if (s == BX_OK) {
        s = bx_state_set(d, "average_model_state", ms);
        ms = NULL; /* taken (freed on failure) */
    }
    bx_state_free(ms);
    if (s != BX_OK) {
        bx_state_free(d);
        return NULL;
    }
    return d;
}

bx_status bx_averaged_model_load_state(bx_averaged_model *a, const bx_state *s) {
    if (!a || !s) return bx__error(BX_ERR_INVALID, "averaged_model load_state: NULL argument");
    if (bx_state_typeof(s) != BX_STATE_DICT) return bx__error(BX_ERR_FORMAT, "averaged_model state: not a dict");
    const bx_state *kind = bx_state_get(s, "kind");
    const char *want = a->is_ema ? "ema" : "swa";
    if (!kind || bx_state_typeof(kind) != BX_STATE_STRING || strcmp(bx_state_get_string(kind), want) != 0)
        return bx__error(BX_ERR_FORMAT, "averaged_model state: key 'kind' missing or not \"%s\"", want);
    int64_t n = 0, steps = 0;
    bx_status st = bx_state_need_int(s, "n_averaged", &n);
    if (st == BX_OK) st = bx_state_need_int(s, "num_steps", &steps);
    if (st != BX_OK) return bx__error(BX_ERR_FORMAT, "averaged_model state: %s", bx_errmsg());
    if (n < 0 || steps < 0) return bx__error(BX_ERR_FORMAT, "averaged_model state: negative n_averaged or num_steps");
    const bx_state *ms = bx_state_get(s, "average_model_state");
    if (!ms || bx_state_typeof(ms) != BX_STATE_DICT)
        return bx__error(BX_ERR_FORMAT, "averaged_model state: key 'average_model_state' missing or not a dict");
    bx_named_tensors *sd = bx_named_tensors_new(false);
    if (!sd) return BX_ERR_NOMEM;
    for (size_t i = 0; st == BX_OK && i < bx_state_len(ms); i++) {
        const bx_state *v = bx_state_value_at(ms, i);
        if (bx_state_typeof(v) != BX_STATE_TENSOR)
            st = bx__error(BX_ERR_FORMAT, "averaged_model state: average_model_state['%s'] is not a tensor",
                           bx_state_key_at(ms, i));
        else st = bx_named_tensors_add(sd, bx_state_key_at(ms, i), (bx_tensor *)bx_state_get_tensor(v));
    }
    if (st == BX_OK) st = bx_averaged_model_load_state_dict(a, sd, true);
    bx_named_tensors_free(sd);
    if (st != BX_OK) return st;
    *(int64_t *)a->n_averaged->data = n;
    a->num_steps = steps;
    return BX_OK;
}
