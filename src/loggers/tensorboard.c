/* tensorboard.c - TensorBoardLogger (Lightning 1.9.5 over
 * torch.utils.tensorboard.SummaryWriter, loggers.md §4): one event file
 * events.out.tfevents.<time>.<host>.<pid>.<n> per writer in log_dir,
 * TFRecord-framed Event protos: file_version "brain.Event:2" first, one
 * event per scalar (Summary.Value{tag, simple_value}), and the hparams
 * plugin's experiment / session_start_info / session_end_info summaries
 * exactly as torch's summary.hparams() builds them. Every record is flushed
 * at once (SummaryWriter queues up to 120 s; a crash here loses nothing). */
#include "loggers/loggers_int.h"

#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Process-wide writer counter, the <n> of the file name (tensorboard's
 * _global_uid): two writers opened in the same second by one process get
 * distinct files. An atomic counter, the only global state here. */
static atomic_uint g_writer_uid;

typedef struct tb_logger {
    bx__logger_dirs dirs;
    char *prefix;
    bool default_hp_metric;
    bx_state *hparams; /* unflattened, for hparams.yaml */
    FILE *f;
    char *path;
} tb_logger;

static double wall_time(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Appends one Event record (wall_time, step when has_step and != 0, then
 * either file_version or an embedded Summary) to the file and flushes. */
static bx_status write_event(tb_logger *t, bool has_step, int64_t step, const char *file_version,
                             const bx__sbuf *summary) {
    bx__sbuf ev = {0}, rec = {0};
    bx__pb_double(&ev, 1, wall_time());
    if (has_step && step != 0) bx__pb_uint(&ev, 2, (uint64_t)step);
    if (file_version) bx__pb_string(&ev, 3, file_version);
    if (summary) bx__pb_msg(&ev, 5, summary);
    bx__tfrecord(&rec, ev.p, ev.n);
    bx_status s = BX_OK;
    if (ev.oom || rec.oom) {
        s = bx__error(BX_ERR_NOMEM, "TensorBoardLogger: out of memory encoding an event");
    } else if (fwrite(rec.p, 1, rec.n, t->f) != rec.n || fflush(t->f) != 0) {
        s = bx__error(BX_ERR_IO, "TensorBoardLogger: cannot write '%s': %s", t->path,
                      strerror(errno));
    }
    bx__sb_free(&ev);
    bx__sb_free(&rec);
    return s;
}

/* Lightning's `experiment` property: creates the folders and the writer. */
static bx_status tb_experiment(tb_logger *t) {
    if (t->f) return BX_OK;
    bx_status s = bx__logger_dirs_resolve(&t->dirs);
    if (s != BX_OK) return s;
    if (t->dirs.name[0] && (s = bx__mkdirs(t->dirs.root_dir)) != BX_OK) return s;
    if ((s = bx__mkdirs(t->dirs.log_dir)) != BX_OK) return s;
    char host[256] = "localhost";
    if (gethostname(host, sizeof host) != 0) bx__strlcpy(host, "localhost", sizeof host);
    host[sizeof host - 1] = '\0';
    char name[400];
    snprintf(name, sizeof name, "events.out.tfevents.%010lld.%s.%d.%u", (long long)time(NULL),
             host, (int)getpid(), atomic_fetch_add(&g_writer_uid, 1u));
    bx__free(t->path);
    t->path = bx__path_join(t->dirs.log_dir, name);
    if (!t->path) return BX_ERR_NOMEM;
    t->f = fopen(t->path, "wb");
    if (!t->f)
        return bx__error(BX_ERR_IO, "TensorBoardLogger: cannot create '%s': %s", t->path,
                         strerror(errno));
    s = write_event(t, false, 0, "brain.Event:2", NULL);
    if (s != BX_OK) {
        fclose(t->f);
        t->f = NULL;
    }
    return s;
}

static bx_status write_scalar(tb_logger *t, const char *tag, double v, int64_t step) {
    bx__sbuf val = {0}, sum = {0};
    if (tag[0]) bx__pb_string(&val, 1, tag);
    bx__pb_float(&val, 2, (float)v); /* simple_value: float32 */
    bx__pb_msg(&sum, 1, &val);
    bx_status s = write_event(t, step >= 0, step, NULL, &sum);
    bx__sb_free(&val);
    bx__sb_free(&sum);
    return s;
}

static bx_status tb_log(void *self, const char *const *names, const double *values, int n,
                        int64_t step) {
    tb_logger *t = self;
    bx_status s = tb_experiment(t);
    for (int i = 0; i < n && s == BX_OK; i++) {
        char *tag = bx__prefixed(t->prefix, names[i]);
        if (!tag) return BX_ERR_NOMEM;
        s = write_scalar(t, tag, values[i], step);
        bx__free(tag);
    }
    return s;
}

/* ---- hparams plugin ------------------------------------------------------------ */

/* Lightning's _flatten_dict: nested dicts become "a/b" keys (an empty
 * nested dict vanishes); later keys replace earlier ones in place. */
static bx_status flatten(bx_state *out, const bx_state *d, const char *parent) {
    for (size_t i = 0; i < bx_state_len(d); i++) {
        const char *k = bx_state_key_at(d, i);
        const bx_state *v = bx_state_value_at(d, i);
        char *key = parent[0] ? NULL : bx__strdup(k);
        if (parent[0]) {
            size_t np = strlen(parent), nk = strlen(k);
            key = bx__malloc(np + nk + 2);
            if (key) {
                memcpy(key, parent, np);
                key[np] = '/';
                memcpy(key + np + 1, k, nk + 1);
            }
        }
        if (!key) return BX_ERR_NOMEM;
        bx_status s = bx_state_typeof(v) == BX_STATE_DICT ? flatten(out, v, key)
                                                           : bx_state_set(out, key, bx_state_copy(v));
        bx__free(key);
        if (s != BX_OK) return s;
    }
    return BX_OK;
}

/* A summary holding one hparams-plugin value: Summary{Value{tag, metadata{
 * plugin_data{plugin_name "hparams", content}}}}. */
static bx_status write_plugin_summary(tb_logger *t, const char *tag, const bx__sbuf *content) {
    bx__sbuf pd = {0}, md = {0}, val = {0}, sum = {0};
    bx__pb_string(&pd, 1, "hparams");
    bx__pb_bytes(&pd, 2, content->p, content->n);
    if (content->oom) pd.oom = true;
    bx__pb_msg(&md, 1, &pd);
    bx__pb_string(&val, 1, tag);
    bx__pb_msg(&val, 9, &md);
    bx__pb_msg(&sum, 1, &val);
    bx_status s = write_event(t, false, 0, NULL, &sum);
    bx__sb_free(&pd);
    bx__sb_free(&md);
    bx__sb_free(&val);
    bx__sb_free(&sum);
    return s;
}

/* torch.utils.tensorboard.summary.hparams(flat, {metric: ...}): the three
 * summaries in the order Lightning adds them (experiment, session start,
 * session end). HParamsPluginData.version is 0 (omitted). Values after
 * Lightning's _sanitize_params: bool/int/float -> number_value (torch tests
 * isinstance(v, int) first, so a bool is the number 1.0/0.0, DATA_TYPE_FLOAT64),
 * strings -> string_value, tensors -> their first element, anything else
 * (None, lists, empty...) -> str(value) as a string. */
static bx_status write_hparams(tb_logger *t, const bx_state *flat, const char *metric) {
    bx__sbuf ssi = {0}, hpi = {0}, exp = {0}, c1 = {0}, c2 = {0}, c3 = {0}, sei = {0};
    for (size_t i = 0; i < bx_state_len(flat); i++) {
        const char *k = bx_state_key_at(flat, i);
        const bx_state *v = bx_state_value_at(flat, i);
        bx__sbuf value = {0}, entry = {0}, info = {0};
        int dtype;
        switch (bx_state_typeof(v)) {
        case BX_STATE_BOOL:
        case BX_STATE_INT:
        case BX_STATE_FLOAT:
            bx__pb_double(&value, 2, bx_state_get_float(v));
            dtype = 3; /* DATA_TYPE_FLOAT64 */
            break;
        case BX_STATE_STRING:
            bx__pb_string(&value, 3, bx_state_get_string(v));
            dtype = 1; /* DATA_TYPE_STRING */
            break;
        case BX_STATE_TENSOR: {
            const bx_tensor *tt = bx_state_get_tensor(v);
            bx__pb_double(&value, 2, bx_numel(tt) > 0 ? bx_get(tt, 0) : NAN);
            dtype = 3;
            break;
        }
        default: {
            bx__sbuf txt = {0};
            bx__py_repr(&txt, v);
            bx__pb_string(&value, 3, txt.p ? txt.p : "");
            if (txt.oom) value.oom = true;
            bx__sb_free(&txt);
            dtype = 1;
            break;
        }
        }
        bx__pb_string(&entry, 1, k); /* map<string, Value> entry */
        bx__pb_msg(&entry, 2, &value);
        bx__pb_msg(&ssi, 1, &entry);
        bx__pb_string(&info, 1, k); /* HParamInfo{name, type} */
        bx__pb_uint(&info, 4, (uint64_t)dtype);
        bx__pb_msg(&hpi, 4, &info);
        bx__sb_free(&value);
        bx__sb_free(&entry);
        bx__sb_free(&info);
    }
    /* Experiment{hparam_infos (4), metric_infos (5): MetricInfo{name: MetricName{tag (2)}}} */
    bx__sb_put(&exp, hpi.p, hpi.n);
    if (hpi.oom) exp.oom = true;
    bx__sbuf mname = {0}, minfo = {0};
    bx__pb_string(&mname, 2, metric);
    bx__pb_msg(&minfo, 1, &mname);
    bx__pb_msg(&exp, 5, &minfo);
    bx__pb_msg(&c1, 2, &exp);
    bx__pb_msg(&c2, 3, &ssi);
    bx__pb_uint(&sei, 1, 1); /* STATUS_SUCCESS */
    bx__pb_msg(&c3, 4, &sei);
    bx_status s = write_plugin_summary(t, "_hparams_/experiment", &c1);
    if (s == BX_OK) s = write_plugin_summary(t, "_hparams_/session_start_info", &c2);
    if (s == BX_OK) s = write_plugin_summary(t, "_hparams_/session_end_info", &c3);
    bx__sbuf *all[] = {&ssi, &hpi, &exp, &c1, &c2, &c3, &sei, &mname, &minfo};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) bx__sb_free(all[i]);
    return s;
}

static bx_status tb_log_hyperparams(void *self, const bx_state *params) {
    tb_logger *t = self;
    bx_status s = bx__hparams_update(t->hparams, params);
    if (s != BX_OK || !t->default_hp_metric) return s; /* metrics None, no default: no summaries */
    bx_state *flat = bx_state_dict();
    if (!flat) return BX_ERR_NOMEM;
    if (params) s = flatten(flat, params, "");
    const char *hp = "hp_metric";
    const double minus_one = -1.0;
    if (s == BX_OK) s = tb_log(t, &hp, &minus_one, 1, 0); /* log_metrics({"hp_metric": -1}, 0) */
    if (s == BX_OK) s = write_hparams(t, flat, hp);
    bx_state_free(flat);
    return s;
}

/* hparams.yaml once: when log_dir exists and the file does not. */
static bx_status tb_save(void *self) {
    tb_logger *t = self;
    bx_status s = bx__logger_dirs_resolve(&t->dirs);
    if (s != BX_OK || !bx__is_dir(t->dirs.log_dir)) return s;
    char *path = bx__path_join(t->dirs.log_dir, "hparams.yaml");
    if (!path) return BX_ERR_NOMEM;
    if (!bx__is_file(path)) s = bx__yaml_write_file(path, t->hparams);
    bx__free(path);
    return s;
}

static bx_status close_writer(tb_logger *t) {
    if (!t->f) return BX_OK;
    bx_status s = BX_OK;
    if (fflush(t->f) != 0 || fsync(fileno(t->f)) != 0)
        s = bx__error(BX_ERR_IO, "TensorBoardLogger: cannot flush '%s': %s", t->path,
                      strerror(errno));
    if (fclose(t->f) != 0 && s == BX_OK)
        s = bx__error(BX_ERR_IO, "TensorBoardLogger: cannot close '%s': %s", t->path,
                      strerror(errno));
    t->f = NULL;
    return s;
}

/* Flush + close the writer (a later record opens a new event file, as
 * SummaryWriter does), then save(). */
static bx_status tb_finalize(void *self, const char *status) {
    tb_logger *t = self;
    bx_status s = close_writer(t);
    bx_status s2 = tb_save(t);
    return s != BX_OK ? s : s2;
}

static const char *tb_name(void *self) { return ((tb_logger *)self)->dirs.name; }
static const char *tb_save_dir(void *self) { return ((tb_logger *)self)->dirs.save_dir; }
static const char *tb_version(void *self) {
    tb_logger *t = self;
    return bx__logger_dirs_resolve(&t->dirs) == BX_OK ? t->dirs.version : NULL;
}
static const char *tb_log_dir(void *self) {
    tb_logger *t = self;
    return bx__logger_dirs_resolve(&t->dirs) == BX_OK ? t->dirs.log_dir : NULL;
}

static void tb_destroy(void *self) {
    tb_logger *t = self;
    if (!t) return;
    if (t->f) fclose(t->f);
    bx__logger_dirs_free(&t->dirs);
    bx__free(t->prefix);
    bx__free(t->path);
    bx_state_free(t->hparams);
    bx__free(t);
}

static const bx_logger_ops TB_OPS = {
    .name = "TensorBoardLogger",
    .log_metrics = tb_log,
    .log_hyperparams = tb_log_hyperparams,
    .save = tb_save,
    .finalize = tb_finalize,
    .experiment_name = tb_name,
    .version = tb_version,
    .save_dir = tb_save_dir,
    .log_dir = tb_log_dir,
    .destroy = tb_destroy,
};

bx_logger *bx_tensorboard_logger_new(const bx_tensorboard_logger_opts *o) {
    bx_tensorboard_logger_opts def = BX_TENSORBOARD_LOGGER_OPTS_INIT;
    if (!o) o = &def;
    tb_logger *t = bx__calloc(sizeof *t);
    if (!t) return NULL;
    if (bx__logger_dirs_init(&t->dirs, o->save_dir, o->name, o->version) != BX_OK) {
        bx__free(t);
        return NULL;
    }
    t->prefix = bx__strdup(o->prefix ? o->prefix : "");
    t->default_hp_metric = o->default_hp_metric;
    t->hparams = bx_state_dict();
    if (!t->prefix || !t->hparams) {
        tb_destroy(t);
        return NULL;
    }
    bx_logger *lg = bx_logger_new(&TB_OPS, t);
    if (!lg) tb_destroy(t);
    return lg;
}

const char *bx__tensorboard_event_path(bx_logger *lg) {
    if (!lg || bx_logger_get_ops(lg) != &TB_OPS) return NULL;
    return ((tb_logger *)bx_logger_self(lg))->path;
}
