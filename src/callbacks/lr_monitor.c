/* lr_monitor.c - LearningRateMonitor (spec/callbacks.md §3), with the
 * Lightning 1.9.5 behaviour the conformance traces record:
 *
 *  - key names are recomputed at every extraction, like Lightning: per
 *    scheduler config in order, base = config name or "lr-<Optimizer>",
 *    "-k" for the k+1-th optimizer of one class (counted over unnamed
 *    configs and optimizers without a scheduler), "/pg<i>" (or "/<group
 *    name>") per group when there are several groups, "/<group name>" for a
 *    single named group; optimizers without a scheduler come after, always
 *    logged (1.5+) at both cadences;
 *  - on_train_batch_start: when (batches_that_stepped + 1) %
 *    log_every_n_steps == 0 or should_stop, and logging_interval != "epoch":
 *    step-interval configs (NULL mode) or all ("step" mode);
 *    on_train_epoch_start: logging_interval != "step": epoch-interval
 *    configs (NULL mode) or all ("epoch" mode);
 *  - records go straight to the loggers at step = batches_that_stepped (not
 *    into callback_metrics);
 *  - when an optimizer gains a group, the history of "base" moves to
 *    "base/pg1" (at the end of the key order, like Python's dict pop+set).
 *
 * Written against the public callback/trainer API only. */

#include <blixt/callbacks.h>
#include <blixt/trainer.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#define LRM_NAME 256
#define TRY(x)                       \
    do {                             \
        bx_status try_s_ = (x);      \
        if (try_s_ != BX_OK) return try_s_; \
    } while (0)

typedef struct lr_key {
    char *name;
    double *v;
    int64_t n, cap;
} lr_key;

typedef struct mom_key {
    char *name;
    bool has;
    double v;
} mom_key;

typedef struct lrm {
    int interval; /* 0 None, 1 step, 2 epoch */
    bool log_momentum;
    lr_key *keys;
    int nkeys, capk;
    mom_key *moms;
    int nmoms, capm;
    /* one record being built */
    char (*rec_names)[LRM_NAME + 16];
    const char **rec_ptrs;
    double *rec_vals;
    int nrec, caprec;
    struct names_ctx *names; /* reused name tables (see names_ctx) */
} lrm;

static const bx_callback_ops LRM_OPS;

/* ---- small ordered dicts ---------------------------------------------------------- */
static int key_find(const lrm *m, const char *name) {
    for (int i = 0; i < m->nkeys; i++)
        if (!strcmp(m->keys[i].name, name)) return i;
    return -1;
}

static bx_status key_add(lrm *m, const char *name) {
    if (m->nkeys == m->capk) {
        int cap = m->capk ? 2 * m->capk : 8;
        lr_key *k = bx_realloc(m->keys, (size_t)cap * sizeof *k);
        if (!k) return BX_ERR_NOMEM;
        m->keys = k;
        m->capk = cap;
    }
    lr_key *k = &m->keys[m->nkeys];
    memset(k, 0, sizeof *k);
    if (!(k->name = bx_strdup(name))) return BX_ERR_NOMEM;
    m->nkeys++;
    return BX_OK;
}

static bx_status key_push(lr_key *k, double v) {
    if (k->n == k->cap) {
        int64_t cap = k->cap ? 2 * k->cap : 16;
        double *nv = bx_realloc(k->v, (size_t)cap * sizeof *nv);
        if (!nv) return BX_ERR_NOMEM;
        k->v = nv;
        k->cap = cap;
    }
    k->v[k->n++] = v;
    return BX_OK;
}

static bx_status mom_set(lrm *m, const char *name, bool has, double v) {
    for (int i = 0; i < m->nmoms; i++)
        if (!strcmp(m->moms[i].name, name)) {
            m->moms[i].has = has;
            m->moms[i].v = v;
            return BX_OK;
        }
    if (m->nmoms == m->capm) {
        int cap = m->capm ? 2 * m->capm : 8;
        mom_key *k = bx_realloc(m->moms, (size_t)cap * sizeof *k);
        if (!k) return BX_ERR_NOMEM;
        m->moms = k;
        m->capm = cap;
    }
    mom_key *k = &m->moms[m->nmoms];
    if (!(k->name = bx_strdup(name))) return BX_ERR_NOMEM;
    k->has = has;
    k->v = v;
    m->nmoms++;
    return BX_OK;
}

static void clear_all(lrm *m) {
    for (int i = 0; i < m->nkeys; i++) {
        bx_free(m->keys[i].name);
        bx_free(m->keys[i].v);
    }
    for (int i = 0; i < m->nmoms; i++) bx_free(m->moms[i].name);
    m->nkeys = m->nmoms = 0;
}

static bx_status rec_add(lrm *m, const char *name, double v) {
    if (m->nrec == m->caprec) {
        int cap = m->caprec ? 2 * m->caprec : 8;
        void *a = bx_realloc(m->rec_names, (size_t)cap * sizeof *m->rec_names);
        if (!a) return BX_ERR_NOMEM;
        m->rec_names = a;
        double *b = bx_realloc(m->rec_vals, (size_t)cap * sizeof *b);
        if (!b) return BX_ERR_NOMEM;
        m->rec_vals = b;
        const char **c = bx_realloc(m->rec_ptrs, (size_t)cap * sizeof *c);
        if (!c) return BX_ERR_NOMEM;
        m->rec_ptrs = c;
        m->caprec = cap;
    }
    /* a later value of the same key replaces the earlier one (dict.update) */
    for (int i = 0; i < m->nrec; i++)
        if (!strcmp(m->rec_names[i], name)) {
            m->rec_vals[i] = v;
            return BX_OK;
        }
    snprintf(m->rec_names[m->nrec], sizeof m->rec_names[m->nrec], "%s", name);
    m->rec_vals[m->nrec++] = v;
    return BX_OK;
}

/* ---- names ------------------------------------------------------------------------------ */
/* One monitored optimizer: its group keys. */
typedef struct named_opt {
    bx_optimizer *opt;
    int sched; /* scheduler config index, -1 for an optimizer without one */
    int ngroups, namecap;
    char (*names)[LRM_NAME];
} named_opt;

typedef struct type_count {
    const char *type;
    int count;
} type_count;

/* Reused from one logging to the next: after the first few calls, logging
 * allocates nothing (the key histories grow by doubling). */
typedef struct names_ctx {
    named_opt *v;
    int n, cap;
    bx_optimizer **seen;
    int nseen;
    type_count *types;
    int ntypes;
} names_ctx;

static void names_free(names_ctx *c) {
    for (int i = 0; i < c->cap; i++) bx_free(c->v[i].names);
    bx_free(c->v);
    bx_free(c->seen);
    bx_free(c->types);
    memset(c, 0, sizeof *c);
}

static type_count *type_get(names_ctx *c, const char *type, bool insert) {
    for (int i = 0; i < c->ntypes; i++)
        if (!strcmp(c->types[i].type, type)) return &c->types[i];
    if (!insert) return NULL;
    c->types[c->ntypes].type = type;
    c->types[c->ntypes].count = 0;
    return &c->types[c->ntypes++];
}

/* Lightning's _check_duplicates_and_update_name. */
static bx_status add_named(names_ctx *c, bx_optimizer *opt, const char *base, int sched, bool count_type) {
    c->seen[c->nseen++] = opt;
    const char *type = bx_optimizer_type(opt);
    if (count_type) type_get(c, type, true)->count++;
    int ng = bx_optimizer_num_groups(opt);
    /* duplicate group names ("pg<i>" for unnamed ones) */
    for (int i = 0; i < ng; i++)
        for (int j = i + 1; j < ng; j++) {
            char a[64], b[64];
            const char *na = bx_optimizer_group_name(opt, i), *nb = bx_optimizer_group_name(opt, j);
            if (!na) snprintf(a, sizeof a, "pg%d", i + 1), na = a;
            if (!nb) snprintf(b, sizeof b, "pg%d", j + 1), nb = b;
            if (!strcmp(na, nb))
                return bx_set_error(BX_ERR_INVALID,
                                 "LearningRateMonitor: a single optimizer cannot have multiple parameter groups "
                                 "with identical `name` values. %s has duplicated parameter group names {'%s'}",
                                 base, na);
        }
    char name[LRM_NAME];
    type_count *tc = type_get(c, type, false);
    if (tc && tc->count > 1) snprintf(name, sizeof name, "%s-%d", base, tc->count - 1);
    else snprintf(name, sizeof name, "%s", base);
    named_opt *no = &c->v[c->n];
    no->opt = opt;
    no->sched = sched;
    no->ngroups = ng;
    if (no->namecap < ng) {
        void *nn = bx_realloc(no->names, (size_t)ng * sizeof *no->names);
        if (!nn) return BX_ERR_NOMEM;
        no->names = nn;
        no->namecap = ng;
    }
    c->n++;
    for (int g = 0; g < ng; g++) {
        const char *gn = bx_optimizer_group_name(opt, g);
        if (ng > 1) {
            if (gn) snprintf(no->names[g], LRM_NAME, "%s/%s", name, gn);
            else snprintf(no->names[g], LRM_NAME, "%s/pg%d", name, g + 1);
        } else {
            if (gn) snprintf(no->names[g], LRM_NAME, "%s/%s", name, gn);
            else snprintf(no->names[g], LRM_NAME, "%s", name);
        }
    }
    return BX_OK;
}

/* Names for every scheduler config, then for optimizers without one. */
static bx_status find_names(const bx_trainer *tr, names_ctx *c) {
    int ns = bx_trainer_num_schedulers(tr), no = bx_trainer_num_optimizers(tr);
    int tot = ns + no + 1;
    if (tot > c->cap) {
        named_opt *v = bx_realloc(c->v, (size_t)tot * sizeof *v);
        if (!v) return BX_ERR_NOMEM;
        memset(v + c->cap, 0, (size_t)(tot - c->cap) * sizeof *v);
        c->v = v;
        bx_optimizer **seen = bx_realloc(c->seen, (size_t)tot * sizeof *seen);
        if (!seen) return BX_ERR_NOMEM;
        c->seen = seen;
        type_count *types = bx_realloc(c->types, (size_t)tot * sizeof *types);
        if (!types) return BX_ERR_NOMEM;
        c->types = types;
        c->cap = tot;
    }
    c->n = c->nseen = c->ntypes = 0;
    bx_status s = BX_OK;
    for (int i = 0; i < ns && s == BX_OK; i++) {
        const bx_sched_config *sc = bx_trainer_scheduler(tr, i);
        bx_optimizer *opt = bx_trainer_optimizer(tr, sc->opt_idx);
        if (!opt) continue;
        char base[LRM_NAME];
        if (sc->name) snprintf(base, sizeof base, "%s", sc->name);
        else snprintf(base, sizeof base, "lr-%s", bx_optimizer_type(opt));
        s = add_named(c, opt, base, i, sc->name == NULL);
    }
    for (int i = 0; i < no && s == BX_OK; i++) {
        bx_optimizer *opt = bx_trainer_optimizer(tr, i);
        bool seen = false;
        for (int k = 0; k < c->nseen; k++) seen = seen || c->seen[k] == opt;
        if (seen) continue;
        char base[LRM_NAME];
        snprintf(base, sizeof base, "lr-%s", bx_optimizer_type(opt));
        s = add_named(c, opt, base, -1, true);
    }
    return s;
}

/* Lightning's _remap_keys(names, token="/pg1"). */
static bx_status remap_keys(lrm *m, const names_ctx *c) {
    for (int i = 0; i < c->n; i++)
        for (int g = 0; g < c->v[i].ngroups; g++) {
            const char *nn = c->v[i].names[g];
            const char *tok = strstr(nn, "/pg1");
            int have = key_find(m, nn);
            if (tok) {
                char old[LRM_NAME];
                /* str.replace: drop every "/pg1" */
                size_t o = 0;
                for (const char *p = nn; *p && o + 1 < sizeof old;) {
                    if (!strncmp(p, "/pg1", 4)) {
                        p += 4;
                        continue;
                    }
                    old[o++] = *p++;
                }
                old[o] = '\0';
                int ok = key_find(m, old);
                if (ok >= 0) {
                    /* lrs[new] = lrs.pop(old): moves to the end under the new name */
                    lr_key k = m->keys[ok];
                    memmove(&m->keys[ok], &m->keys[ok + 1], (size_t)(m->nkeys - ok - 1) * sizeof *m->keys);
                    m->nkeys--;
                    int dup = key_find(m, nn);
                    if (dup >= 0) {
                        bx_free(m->keys[dup].name);
                        bx_free(m->keys[dup].v);
                        memmove(&m->keys[dup], &m->keys[dup + 1], (size_t)(m->nkeys - dup - 1) * sizeof *m->keys);
                        m->nkeys--;
                    }
                    char *nm = bx_strdup(nn);
                    if (!nm) return BX_ERR_NOMEM;
                    bx_free(k.name);
                    k.name = nm;
                    m->keys[m->nkeys++] = k; /* capacity: one slot was just freed */
                    continue;
                }
            }
            if (have < 0) TRY(key_add(m, nn));
        }
    return BX_OK;
}

static bx_status opt_stat(lrm *m, bx_optimizer *opt, const named_opt *no) {
    bool betas = bx_optimizer_has_default(opt, "betas");
    for (int g = 0; g < no->ngroups; g++) {
        const char *name = no->names[g];
        double lr = bx_optimizer_get_lr(opt, g);
        int k = key_find(m, name);
        if (k < 0) {
            TRY(key_add(m, name));
            k = m->nkeys - 1;
        }
        TRY(key_push(&m->keys[k], lr));
        TRY(rec_add(m, name, lr));
        if (m->log_momentum) {
            double mv = 0.0;
            if (betas) {
                double b[2];
                if (bx_optimizer_get_betas(opt, g, b) == BX_OK) mv = b[0];
            } else if (bx_optimizer_group_has(opt, g, "momentum")) {
                if (bx_optimizer_group_get(opt, g, "momentum", &mv) != BX_OK) mv = 0.0;
            }
            char mn[LRM_NAME + 16];
            snprintf(mn, sizeof mn, "%s-momentum", name);
            TRY(mom_set(m, mn, true, mv));
            TRY(rec_add(m, mn, mv));
        }
    }
    return BX_OK;
}

/* Lightning's _extract_stats(trainer, interval): interval 1 "step", 2
 * "epoch", 0 "any". Logs the record when non-empty. */
static bx_status extract_and_log(lrm *m, bx_trainer *tr, int interval) {
    names_ctx *c = m->names;
    bx_status s = find_names(tr, c);
    m->nrec = 0;
    if (s == BX_OK) s = remap_keys(m, c);
    for (int i = 0; i < c->n && s == BX_OK; i++) {
        const named_opt *no = &c->v[i];
        if (no->sched >= 0) {
            const bx_sched_config *sc = bx_trainer_scheduler(tr, no->sched);
            int ci = sc->interval == BX_INTERVAL_STEP ? 1 : 2;
            if (interval != 0 && interval != ci) continue;
        }
        s = opt_stat(m, no->opt, no);
    }
    if (s != BX_OK || m->nrec == 0) return s;
    for (int i = 0; i < m->nrec; i++) m->rec_ptrs[i] = m->rec_names[i];
    return bx_trainer_log_metrics_direct(tr, m->rec_ptrs, m->rec_vals, m->nrec, bx_trainer_batches_that_stepped(tr));
}

/* ---- hooks ---------------------------------------------------------------------------------- */
static bx_status lrm_train_start(void *self, bx_trainer *tr) {
    lrm *m = self;
    if (bx_trainer_num_loggers(tr) == 0)
        return bx_set_error(BX_ERR_INVALID, "Cannot use `LearningRateMonitor` callback with `Trainer` that has no logger.");
    int ns = bx_trainer_num_schedulers(tr), no = bx_trainer_num_optimizers(tr);
    if (m->log_momentum) {
        /* warn when some monitored optimizer has neither momentum nor betas */
        bool miss_m = false, miss_b = false;
        if (ns > 0) {
            for (int i = 0; i < ns; i++) {
                bx_optimizer *o = bx_trainer_optimizer(tr, bx_trainer_scheduler(tr, i)->opt_idx);
                if (o && !bx_optimizer_has_default(o, "momentum")) miss_m = true;
                if (o && !bx_optimizer_has_default(o, "betas")) miss_b = true;
            }
        } else {
            for (int i = 0; i < no; i++) {
                if (!bx_optimizer_has_default(bx_trainer_optimizer(tr, i), "momentum")) miss_m = true;
                if (!bx_optimizer_has_default(bx_trainer_optimizer(tr, i), "betas")) miss_b = true;
            }
        }
        if (miss_m && miss_b)
            bx_logf(BX_LOG_WARNING, "You have set log_momentum=True, but some optimizers do not have momentum. "
                                 "This will log a value 0 for the momentum.");
    }
    names_ctx *c = m->names;
    bx_status s = find_names(tr, c);
    clear_all(m);
    for (int i = 0; i < c->n && s == BX_OK; i++)
        for (int g = 0; g < c->v[i].ngroups && s == BX_OK; g++) {
            char mn[LRM_NAME + 16];
            snprintf(mn, sizeof mn, "%s-momentum", c->v[i].names[g]);
            if (key_find(m, c->v[i].names[g]) < 0) s = key_add(m, c->v[i].names[g]);
            if (s == BX_OK) s = mom_set(m, mn, false, 0.0);
        }
    return s;
}

static bx_status lrm_batch_start(void *self, bx_trainer *tr, const bx_batch *b, int64_t batch_idx) {
    (void)b;
    (void)batch_idx;
    lrm *m = self;
    int64_t every = bx_trainer_log_every_n_steps(tr);
    bool update = (every > 0 && (bx_trainer_batches_that_stepped(tr) + 1) % every == 0) || bx_trainer_should_stop(tr);
    if (!update || m->interval == 2) return BX_OK;
    return extract_and_log(m, tr, m->interval == 0 ? 1 : 0);
}

static bx_status lrm_epoch_start(void *self, bx_trainer *tr) {
    lrm *m = self;
    if (m->interval == 1) return BX_OK;
    return extract_and_log(m, tr, m->interval == 0 ? 2 : 0);
}

static void lrm_destroy(void *self) {
    lrm *m = self;
    clear_all(m);
    bx_free(m->keys);
    bx_free(m->moms);
    bx_free(m->rec_names);
    bx_free(m->rec_ptrs);
    bx_free(m->rec_vals);
    if (m->names) names_free(m->names);
    bx_free(m->names);
    bx_free(m);
}

static const bx_callback_ops LRM_OPS = {
    .name = "LearningRateMonitor",
    .on_train_start = lrm_train_start,
    .on_train_batch_start = lrm_batch_start,
    .on_train_epoch_start = lrm_epoch_start,
    .destroy = lrm_destroy,
};

bx_callback *bx_lr_monitor_new(const bx_lr_monitor_opts *o) {
    bx_lr_monitor_opts def = BX_LR_MONITOR_OPTS_INIT;
    if (!o) o = &def;
    int interval = 0;
    if (o->logging_interval) {
        if (!strcmp(o->logging_interval, "step")) interval = 1;
        else if (!strcmp(o->logging_interval, "epoch")) interval = 2;
        else {
            bx_set_error(BX_ERR_INVALID, "LearningRateMonitor: logging_interval should be `step` or `epoch` or `None` but got `%s`",
                      o->logging_interval);
            return NULL;
        }
    }
    lrm *m = bx_calloc(sizeof *m);
    if (!m) return NULL;
    if (!(m->names = bx_calloc(sizeof *m->names))) {
        bx_free(m);
        return NULL;
    }
    m->interval = interval;
    m->log_momentum = o->log_momentum;
    return bx_callback_new(&LRM_OPS, m);
}

/* ---- accessors ------------------------------------------------------------------------------- */
static const lrm *get_lrm(const bx_callback *cb) {
    return cb && bx_callback_get_ops(cb) == &LRM_OPS ? bx_callback_self(cb) : NULL;
}

int bx_lr_monitor_num_keys(const bx_callback *cb) {
    const lrm *m = get_lrm(cb);
    return m ? m->nkeys : 0;
}

const char *bx_lr_monitor_key(const bx_callback *cb, int i) {
    const lrm *m = get_lrm(cb);
    return m && i >= 0 && i < m->nkeys ? m->keys[i].name : NULL;
}

const double *bx_lr_monitor_values(const bx_callback *cb, int i, int64_t *n) {
    const lrm *m = get_lrm(cb);
    if (!m || i < 0 || i >= m->nkeys) {
        if (n) *n = 0;
        return NULL;
    }
    if (n) *n = m->keys[i].n;
    return m->keys[i].v;
}

int bx_lr_monitor_num_momentum(const bx_callback *cb) {
    const lrm *m = get_lrm(cb);
    return m ? m->nmoms : 0;
}

const char *bx_lr_monitor_momentum_key(const bx_callback *cb, int i) {
    const lrm *m = get_lrm(cb);
    return m && i >= 0 && i < m->nmoms ? m->moms[i].name : NULL;
}

bool bx_lr_monitor_momentum_value(const bx_callback *cb, int i, double *v) {
    const lrm *m = get_lrm(cb);
    if (!m || i < 0 || i >= m->nmoms || !m->moms[i].has) {
        if (v) *v = NAN;
        return false;
    }
    if (v) *v = m->moms[i].v;
    return true;
}
