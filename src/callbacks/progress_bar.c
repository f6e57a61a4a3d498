/* progress_bar.c - ProgressBarBase (counters + get_metrics, Lightning 1.9.5
 * properties read from the Trainer) and ProgressBar, a tqdm-like bar on a
 * stream (spec/callbacks.md §12).
 *
 * Update rule (spec §12, pinned): a bar is updated when its counter
 * `current` satisfies current % refresh_rate == 0 or current == total, by
 * min(refresh_rate, total - n) (never overshooting); the main bar's total at
 * epoch start is train + val x (train // val_check_batch), but the train
 * batch test compares with train + val; the main bar also advances with
 * every validation update and is "filled up" by one refresh increment at
 * the start of a (non-sanity) validation run.
 *
 * Output: on a terminal every update redraws the bar in place ("\r");
 * otherwise one plain line is printed when a bar closes (main bar at epoch
 * end, validation / sanity bars at the end of their run).
 *
 * Written against the public callback/trainer API only. */
#include "core/core_int.h"

#include <blixt/callbacks.h>
#include <blixt/trainer.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- ProgressBarBase ------------------------------------------------------------------ */
static bool should_check_val_epoch(const bx_trainer *tr) {
    int64_t n = bx_trainer_check_val_every_n_epoch(tr);
    return bx_trainer_enable_validation(tr) && (n == 0 || (bx_trainer_current_epoch(tr) + 1) % n == 0);
}

void bx_progress_bar_counters(const bx_trainer *tr, bx_progress_counters *out) {
    memset(out, 0, sizeof *out);
    out->train_batch_idx = bx_trainer_train_batches_processed(tr);
    out->val_batch_idx = bx_trainer_eval_batches_processed(tr);
    int64_t nt = bx_trainer_num_training_batches(tr);
    out->total_train_batches = nt < 0 ? INFINITY : (double)nt;
    bool sanity = bx_trainer_sanity_checking(tr);
    int64_t ns = bx_trainer_num_sanity_val_batches(tr), nv = bx_trainer_num_val_batches(tr);
    if (sanity) out->total_val_batches = ns > 0 ? (double)ns : 0.0;
    else out->total_val_batches = should_check_val_epoch(tr) && nv > 0 ? (double)nv : 0.0;
    out->total_val_batches_current_dataloader = sanity ? (double)(ns > 0 ? ns : 0) : (double)(nv > 0 ? nv : 0);
    double tt = out->total_train_batches, tv = out->total_val_batches;
    double tot = tt + tv;
    if (!isinf(tt) && !isinf(tv)) {
        int64_t vcb = bx_trainer_val_check_batch(tr), checks = 0;
        if (vcb > 0) {
            if (bx_trainer_check_val_every_n_epoch(tr) == 0) {
                int64_t done = bx_trainer_total_batch_idx(tr) + 1;
                checks = (done + (int64_t)tt) / vcb - done / vcb;
            } else {
                checks = (int64_t)tt / vcb;
            }
        }
        tot = tt + tv * (double)checks;
    }
    out->total_batches_current_epoch = tot;
    int64_t nte = bx_trainer_num_test_batches(tr), npr = bx_trainer_num_predict_batches(tr);
    out->total_test_batches = nte < 0 ? INFINITY : (double)nte;
    out->total_predict_batches = npr < 0 ? INFINITY : (double)npr;
}

/* "%.3g" like Python (nan / inf / -inf spelled that way). */
static void fmt_3g(char *buf, size_t n, double v) {
    if (isnan(v)) snprintf(buf, n, "nan");
    else if (isinf(v)) snprintf(buf, n, v > 0 ? "inf" : "-inf");
    else snprintf(buf, n, "%.3g", v);
}

static bool all_digits(const char *s) {
    if (!*s) return false;
    for (; *s; s++)
        if (*s < '0' || *s > '9') return false;
    return true;
}

bx_state *bx_progress_bar_get_metrics(const bx_trainer *tr) {
    bx_state *d = bx_state_dict();
    if (!d) return NULL;
    char buf[64];
    fmt_3g(buf, sizeof buf, bx_trainer_running_loss(tr));
    bx_status s = bx_state_set_string(d, "loss", buf);
    const char *ver = bx_trainer_num_loggers(tr) > 0 ? bx_logger_version(bx_trainer_logger(tr, 0)) : NULL;
    if (s == BX_OK && ver && ver[0]) {
        /* Lightning 1.9.5: pl_module.logger (the first logger) .version; an
         * int stays an int, a string shows its last 4 characters. Blixt's
         * versions are text: digits (an automatic or int version) and
         * "version_<int>" (the folder name of one) are the int. */
        const char *num = ver;
        if (!strncmp(ver, "version_", 8) && all_digits(ver + 8)) num = ver + 8;
        if (all_digits(num) && strlen(num) < 19) {
            long long k = 0;
            sscanf(num, "%lld", &k);
            s = bx_state_set_int(d, "v_num", k);
        } else {
            size_t l = strlen(ver);
            s = bx_state_set_string(d, "v_num", l > 4 ? ver + l - 4 : ver);
        }
    }
    /* {**standard_metrics, **progress_bar_metrics}: a logged "loss"/"v_num"
     * keeps its place and wins (Lightning also warns; not repeated here at
     * every refresh) */
    for (int i = 0; s == BX_OK && i < bx_trainer_metrics_count(tr, BX_PROGRESS_BAR_METRICS); i++)
        s = bx_state_set_float(d, bx_trainer_metric_name(tr, BX_PROGRESS_BAR_METRICS, i),
                               bx_trainer_metric_value(tr, BX_PROGRESS_BAR_METRICS, i));
    if (s != BX_OK) {
        bx_state_free(d);
        return NULL;
    }
    return d;
}

int64_t bx_progress_bar_increment(int64_t n, double total, int64_t current, int64_t refresh_rate) {
    if (refresh_rate <= 0) return 0;
    bool finite = !isinf(total) && !isnan(total);
    if (!(current % refresh_rate == 0 || (finite && (double)current == total))) return 0;
    int64_t d = refresh_rate;
    if (finite && (double)d > total - (double)n) d = (int64_t)(total - (double)n);
    return d > 0 ? d : 0;
}

/* ---- the drawing bar -------------------------------------------------------------------- */
typedef struct tbar {
    bool open;
    char desc[64];
    int64_t n;
    double total; /* INFINITY unknown */
    double t0;    /* start time, seconds */
    double drawn; /* when the line was last drawn (terminal) */
    char postfix[512];
} tbar;

typedef struct pbar {
    int64_t refresh;
    double mininterval;
    FILE *out;
    bool tty;
    tbar main, val;
} pbar;

static const bx_callback_ops PB_OPS;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void fmt_time(char *buf, size_t n, double s) {
    if (!(s >= 0) || isinf(s)) {
        snprintf(buf, n, "?");
        return;
    }
    long long t = (long long)s;
    if (t >= 3600) snprintf(buf, n, "%lld:%02lld:%02lld", t / 3600, t / 60 % 60, t % 60);
    else snprintf(buf, n, "%02lld:%02lld", t / 60, t % 60);
}

/* tqdm's format_num + Lightning's padding to 5 characters (floats, strings). */
static void fmt_num_float(char *buf, size_t n, double v) {
    char a[64], b[64];
    fmt_3g(a, sizeof a, v);
    /* str(v): shortest round-trip repr */
    if (isnan(v) || isinf(v)) snprintf(b, sizeof b, "%s", a);
    else {
        for (int p = 1; p <= 17; p++) {
            snprintf(b, sizeof b, "%.*g", p, v);
            if (strtod(b, NULL) == v) break;
        }
        if (!strchr(b, '.') && !strchr(b, 'e') && !strchr(b, 'n') && !strchr(b, 'i')) strcat(b, ".0");
    }
    const char *f = strlen(a) < strlen(b) ? a : b;
    snprintf(buf, n, "%s", f);
    if (!strchr(buf, 'e')) {
        size_t l = strlen(buf);
        if (!strchr(buf, '.') && l < 5 && l + 1 < n) strcat(buf, "."), l++;
        while (l < 5 && l + 1 < n) buf[l++] = '0', buf[l] = '\0';
    }
}

/* tqdm's set_postfix formats numbers only: a string value is shown as it
 * is, stripped of surrounding spaces (Lightning's loss text "0.5", a text
 * v_num "on_3"), never padded like a float. */
static void fmt_str(char *buf, size_t n, const char *s) {
    while (*s == ' ') s++;
    snprintf(buf, n, "%s", s);
    size_t l = strlen(buf);
    while (l > 0 && buf[l - 1] == ' ') buf[--l] = '\0';
}

static void set_postfix(pbar *p, tbar *b, const bx_trainer *tr) {
    bx_state *m = bx_progress_bar_get_metrics(tr);
    b->postfix[0] = '\0';
    if (!m) return;
    size_t len = 0;
    for (size_t i = 0; i < bx_state_len(m); i++) {
        const bx_state *v = bx_state_value_at(m, i);
        char val[96];
        switch (bx_state_typeof(v)) {
        case BX_STATE_STRING: fmt_str(val, sizeof val, bx_state_get_string(v)); break;
        case BX_STATE_INT: snprintf(val, sizeof val, "%lld", (long long)bx_state_get_int(v)); break;
        default: fmt_num_float(val, sizeof val, bx_state_get_float(v)); break;
        }
        len += (size_t)snprintf(b->postfix + len, len < sizeof b->postfix ? sizeof b->postfix - len : 0, "%s%s=%s",
                                len ? ", " : "", bx_state_key_at(m, i), val);
        if (len >= sizeof b->postfix) {
            len = sizeof b->postfix - 1;
            break;
        }
    }
    bx_state_free(m);
    (void)p;
}

/* One tqdm line: "desc:  43%|####      | 3/7 [00:01<00:01,  2.50it/s, loss=0.686]". */
static void format_line(const pbar *p, const tbar *b, char *line, size_t n) {
    double el = now_s() - b->t0;
    double rate = el > 0 && b->n > 0 ? (double)b->n / el : 0.0;
    char e[32], r[32], rs[32];
    fmt_time(e, sizeof e, el);
    bool finite = !isinf(b->total) && b->total > 0;
    fmt_time(r, sizeof r, finite && rate > 0 ? (b->total - (double)b->n) / rate : -1.0);
    if (rate > 0) snprintf(rs, sizeof rs, rate >= 1.0 ? "%.2fit/s" : "%.2fs/it", rate >= 1.0 ? rate : 1.0 / rate);
    else snprintf(rs, sizeof rs, "?it/s");
    const char *sep = b->postfix[0] ? ", " : "";
    if (finite) {
        double frac = (double)b->n / b->total;
        if (frac > 1) frac = 1;
        char bar[64] = "";
        const int W = 10;
        if (p->tty) {
            static const char *part[] = {"", "\xe2\x96\x8f", "\xe2\x96\x8e", "\xe2\x96\x8d",
                                         "\xe2\x96\x8c", "\xe2\x96\x8b", "\xe2\x96\x8a", "\xe2\x96\x89"};
            int eighths = (int)(frac * W * 8);
            int full = eighths / 8, rem = eighths % 8, cells = 0;
            size_t l = 0;
            for (int i = 0; i < full; i++, cells++) l += (size_t)snprintf(bar + l, sizeof bar - l, "\xe2\x96\x88");
            if (full < W && rem) l += (size_t)snprintf(bar + l, sizeof bar - l, "%s", part[rem]), cells++;
            for (; cells < W; cells++) l += (size_t)snprintf(bar + l, sizeof bar - l, " ");
        } else {
            int full = (int)(frac * W);
            for (int i = 0; i < W; i++) bar[i] = i < full ? '#' : ' ';
            bar[W] = '\0';
        }
        snprintf(line, n, "%s: %3d%%|%s| %lld/%lld [%s<%s, %s%s%s]", b->desc, (int)(frac * 100), bar, (long long)b->n,
                 (long long)b->total, e, r, rs, sep, b->postfix);
    } else {
        snprintf(line, n, "%s: %lld it [%s, %s%s%s]", b->desc, (long long)b->n, e, rs, sep, b->postfix);
    }
}

static void draw(pbar *p, tbar *b) {
    if (!p->tty || !b->open) return;
    b->drawn = now_s();
    char line[1024];
    format_line(p, b, line, sizeof line);
    fprintf(p->out, "\r%s\x1b[K", line);
    fflush(p->out);
}

static void bar_open(pbar *p, tbar *b, const char *desc, double total) {
    /* on a terminal an evaluation bar takes over the main bar's line while
     * it runs; the main bar is redrawn when it closes */
    b->open = true;
    snprintf(b->desc, sizeof b->desc, "%s", desc);
    b->n = 0;
    b->total = total;
    b->t0 = now_s();
    draw(p, b);
}

/* Ends a bar: a terminal gets a newline after a kept bar (leave=True) or a
 * cleared line; a plain stream gets the final state as one line. */
static void bar_close(pbar *p, tbar *b, bool leave) {
    if (!b->open) return;
    if (p->tty) {
        if (leave) {
            draw(p, b);
            fputc('\n', p->out);
        } else {
            fprintf(p->out, "\r\x1b[K");
        }
    } else {
        char line[1024];
        format_line(p, b, line, sizeof line);
        fprintf(p->out, "%s\n", line);
    }
    fflush(p->out);
    b->open = false;
}

static void bar_update(pbar *p, tbar *b) {
    if (!b->open) return;
    int64_t d = p->refresh;
    if (!isinf(b->total) && (double)d > b->total - (double)b->n) d = (int64_t)(b->total - (double)b->n);
    if (d > 0) {
        b->n += d;
        draw(p, b);
    }
}

static bool should_update(const pbar *p, int64_t current, double total) {
    return p->refresh > 0 && (current % p->refresh == 0 || (!isinf(total) && (double)current == total));
}

/* ---- hooks ------------------------------------------------------------------------------- */
static bx_status pb_sanity_start(void *self, bx_trainer *tr) {
    pbar *p = self;
    if (p->refresh <= 0) return BX_OK;
    int64_t ns = bx_trainer_num_sanity_val_batches(tr);
    bar_open(p, &p->val, "Validation sanity check", ns >= 0 ? (double)ns : INFINITY);
    return BX_OK;
}

static bx_status pb_sanity_end(void *self, bx_trainer *tr) {
    (void)tr;
    pbar *p = self;
    bar_close(p, &p->val, false);
    return BX_OK;
}

static bx_status pb_epoch_start(void *self, bx_trainer *tr) {
    pbar *p = self;
    if (p->refresh <= 0) return BX_OK;
    bx_progress_counters c;
    bx_progress_bar_counters(tr, &c);
    double tot = c.total_train_batches;
    if (!isinf(tot)) {
        int64_t vcb = bx_trainer_val_check_batch(tr);
        tot += c.total_val_batches * (double)(vcb > 0 ? (int64_t)c.total_train_batches / vcb : 0);
    }
    char desc[64];
    snprintf(desc, sizeof desc, "Epoch %lld", (long long)bx_trainer_current_epoch(tr));
    bar_close(p, &p->main, true);
    bar_open(p, &p->main, desc, tot);
    return BX_OK;
}

static bx_status pb_batch_end(void *self, bx_trainer *tr, const bx_step_output *o, const bx_batch *b, int64_t i) {
    (void)o;
    (void)b;
    (void)i;
    pbar *p = self;
    bx_progress_counters c;
    bx_progress_bar_counters(tr, &c);
    if (should_update(p, c.train_batch_idx, c.total_train_batches + c.total_val_batches)) {
        /* Like tqdm's mininterval (0.1 s): the counter always advances, but
         * the metrics are formatted and the line drawn at most 10 times a
         * second (and never on a plain stream, which prints at bar close),
         * so the bar costs nothing per step. */
        bool redraw = p->tty && (p->mininterval <= 0 || now_s() - p->main.drawn >= p->mininterval ||
                                 (double)(p->main.n + p->refresh) >= p->main.total);
        if (redraw) set_postfix(p, &p->main, tr);
        bool tty = p->tty;
        if (!redraw) p->tty = false; /* advance without drawing */
        bar_update(p, &p->main);
        p->tty = tty;
    }
    return BX_OK;
}

static bx_status pb_epoch_end(void *self, bx_trainer *tr) {
    pbar *p = self;
    if (!p->main.open) return BX_OK;
    set_postfix(p, &p->main, tr);
    bar_close(p, &p->main, true);
    return BX_OK;
}

static bx_status pb_val_start(void *self, bx_trainer *tr) {
    pbar *p = self;
    if (p->refresh <= 0) return BX_OK;
    if (bx_trainer_sanity_checking(tr)) {
        /* the sanity batch count is known now (reset(val_bar, num_sanity_val_batches)) */
        int64_t ns = bx_trainer_num_sanity_val_batches(tr);
        if (p->val.open && ns >= 0) {
            p->val.total = (double)ns;
            draw(p, &p->val);
        }
        return BX_OK;
    }
    bar_update(p, &p->main); /* fill up the remaining train part */
    bx_progress_counters c;
    bx_progress_bar_counters(tr, &c);
    bar_open(p, &p->val, "Validation", c.total_val_batches);
    return BX_OK;
}

static bx_status pb_val_batch_end(void *self, bx_trainer *tr, const bx_step_output *o, const bx_batch *b, int64_t i,
                                  int d) {
    (void)o;
    (void)b;
    (void)i;
    (void)d;
    pbar *p = self;
    bx_progress_counters c;
    bx_progress_bar_counters(tr, &c);
    if (should_update(p, c.val_batch_idx, p->val.total)) {
        bar_update(p, &p->val);
        if (!bx_trainer_sanity_checking(tr) && bx_trainer_stage(tr) == BX_STAGE_FIT) bar_update(p, &p->main);
    }
    return BX_OK;
}

static bx_status pb_val_end(void *self, bx_trainer *tr) {
    pbar *p = self;
    if (bx_trainer_sanity_checking(tr)) return BX_OK; /* closed at on_sanity_check_end */
    if (p->main.open) set_postfix(p, &p->main, tr);
    bar_close(p, &p->val, false);
    if (p->main.open) draw(p, &p->main);
    return BX_OK;
}

static bx_status pb_eval_start(pbar *p, const char *desc, double total) {
    if (p->refresh <= 0) return BX_OK;
    bar_open(p, &p->val, desc, total);
    return BX_OK;
}

static bx_status pb_test_start(void *self, bx_trainer *tr) {
    return pb_eval_start(self, "Testing", bx_trainer_num_test_batches(tr) < 0 ? INFINITY : (double)bx_trainer_num_test_batches(tr));
}

static bx_status pb_predict_start(void *self, bx_trainer *tr) {
    return pb_eval_start(self, "Predicting",
                         bx_trainer_num_predict_batches(tr) < 0 ? INFINITY : (double)bx_trainer_num_predict_batches(tr));
}

static bx_status pb_eval_batch_end(void *self, bx_trainer *tr, const bx_step_output *o, const bx_batch *b, int64_t i,
                                   int d) {
    (void)tr;
    (void)o;
    (void)b;
    (void)d;
    pbar *p = self;
    if (should_update(p, i + 1, p->val.total)) bar_update(p, &p->val);
    return BX_OK;
}

static bx_status pb_eval_end(void *self, bx_trainer *tr) {
    (void)tr;
    bar_close(self, &((pbar *)self)->val, true);
    return BX_OK;
}

static bx_status pb_exception(void *self, bx_trainer *tr, bx_status s, const char *msg) {
    (void)tr;
    (void)s;
    (void)msg;
    pbar *p = self;
    bar_close(p, &p->val, false);
    bar_close(p, &p->main, true);
    return BX_OK;
}

static void pb_destroy(void *self) { bx__free(self); }

static const bx_callback_ops PB_OPS = {
    .name = "ProgressBar",
    .on_sanity_check_start = pb_sanity_start,
    .on_sanity_check_end = pb_sanity_end,
    .on_train_epoch_start = pb_epoch_start,
    .on_train_batch_end = pb_batch_end,
    .on_train_epoch_end = pb_epoch_end,
    .on_validation_start = pb_val_start,
    .on_validation_batch_end = pb_val_batch_end,
    .on_validation_end = pb_val_end,
    .on_test_start = pb_test_start,
    .on_test_batch_end = pb_eval_batch_end,
    .on_test_end = pb_eval_end,
    .on_predict_start = pb_predict_start,
    .on_predict_batch_end = pb_eval_batch_end,
    .on_predict_end = pb_eval_end,
    .on_exception = pb_exception,
    .destroy = pb_destroy,
};

bx_callback *bx_progress_bar_new_ex(const bx_progress_bar_opts *o) {
    bx_progress_bar_opts def = BX_PROGRESS_BAR_OPTS_INIT;
    if (!o) o = &def;
    if (o->refresh_rate < 0) {
        bx__error(BX_ERR_INVALID, "ProgressBar: refresh_rate must be >= 0 (got %lld)", (long long)o->refresh_rate);
        return NULL;
    }
    pbar *p = bx__calloc(sizeof *p);
    if (!p) return NULL;
    p->refresh = o->refresh_rate;
    p->mininterval = o->mininterval;
    p->out = o->stream ? (FILE *)o->stream : stderr;
    p->tty = o->tty < 0 ? isatty(fileno(p->out)) != 0 : o->tty != 0;
    return bx_callback_new(&PB_OPS, p);
}

bx_callback *bx_progress_bar_new(void) { return bx_progress_bar_new_ex(NULL); }
