/* logger.c - the bx_logger wrapper, its dispatch helpers, and the folder /
 * version resolution shared by the built-in loggers (Lightning's root_dir,
 * version and log_dir properties). */
#include "loggers/loggers_int.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

struct bx_logger {
    const bx_logger_ops *ops;
    void *self;
};

bx_logger *bx_logger_new(const bx_logger_ops *ops, void *self) {
    if (!ops) {
        bx__error(BX_ERR_INVALID, "logger: NULL ops table");
        return NULL;
    }
    bx_logger *lg = bx__malloc(sizeof *lg);
    if (!lg) return NULL;
    lg->ops = ops;
    lg->self = self;
    return lg;
}

void bx_logger_free(bx_logger *lg) {
    if (!lg) return;
    if (lg->ops->destroy) lg->ops->destroy(lg->self);
    bx__free(lg);
}

const bx_logger_ops *bx_logger_get_ops(const bx_logger *lg) { return lg ? lg->ops : NULL; }
void *bx_logger_self(const bx_logger *lg) { return lg ? lg->self : NULL; }

bx_status bx_logger_log_metrics(bx_logger *lg, const char *const *names, const double *values, int n,
                                int64_t step) {
    return bx_logger_log_metrics_typed(lg, names, values, NULL, n, step);
}

bx_status bx_logger_log_metrics_typed(bx_logger *lg, const char *const *names,
                                      const double *values, const bool *is_int, int n,
                                      int64_t step) {
    if (!lg) return bx__error(BX_ERR_INVALID, "logger: NULL logger");
    if (n < 0 || (n > 0 && (!names || !values)))
        return bx__error(BX_ERR_INVALID, "logger %s: log_metrics with n=%d and NULL arrays",
                         lg->ops->name ? lg->ops->name : "?", n);
    if (lg->ops->log_metrics_typed)
        return lg->ops->log_metrics_typed(lg->self, names, values, is_int, n, step);
    if (lg->ops->log_metrics) return lg->ops->log_metrics(lg->self, names, values, n, step);
    return BX_OK;
}

bx_status bx_logger_log_hyperparams(bx_logger *lg, const bx_state *params) {
    if (!lg) return bx__error(BX_ERR_INVALID, "logger: NULL logger");
    return lg->ops->log_hyperparams ? lg->ops->log_hyperparams(lg->self, params) : BX_OK;
}

bx_status bx_logger_save(bx_logger *lg) {
    if (!lg) return bx__error(BX_ERR_INVALID, "logger: NULL logger");
    return lg->ops->save ? lg->ops->save(lg->self) : BX_OK;
}

bx_status bx_logger_finalize(bx_logger *lg, const char *status) {
    if (!lg) return bx__error(BX_ERR_INVALID, "logger: NULL logger");
    return lg->ops->finalize ? lg->ops->finalize(lg->self, status ? status : "success") : BX_OK;
}

const char *bx_logger_name(bx_logger *lg) {
    return lg && lg->ops->experiment_name ? lg->ops->experiment_name(lg->self) : NULL;
}
const char *bx_logger_version(bx_logger *lg) {
    return lg && lg->ops->version ? lg->ops->version(lg->self) : NULL;
}
const char *bx_logger_save_dir(bx_logger *lg) {
    return lg && lg->ops->save_dir ? lg->ops->save_dir(lg->self) : NULL;
}
const char *bx_logger_log_dir(bx_logger *lg) {
    return lg && lg->ops->log_dir ? lg->ops->log_dir(lg->self) : NULL;
}

/* ---- paths ------------------------------------------------------------------ */

char *bx__path_join(const char *a, const char *b) {
    if (b[0] == '/' || a[0] == '\0') return bx__strdup(b);
    size_t na = strlen(a), nb = strlen(b);
    bool slash = a[na - 1] != '/';
    char *r = bx__malloc(na + nb + 2);
    if (!r) return NULL;
    memcpy(r, a, na);
    if (slash) r[na++] = '/';
    memcpy(r + na, b, nb + 1);
    return r;
}

bool bx__is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

bool bx__is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

bool bx__dir_nonempty(const char *path) {
    DIR *dir = opendir(path);
    if (!dir) return false;
    bool any = false;
    struct dirent *e;
    while (!any && (e = readdir(dir)) != NULL)
        any = strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(dir);
    return any;
}

bx_status bx__mkdirs(const char *path) {
    if (bx__is_dir(path)) return BX_OK;
    char *p = bx__strdup(path);
    if (!p) return BX_ERR_NOMEM;
    bx_status s = BX_OK;
    size_t n = strlen(p);
    for (size_t i = 1; i <= n; i++) {
        if (p[i] != '/' && p[i] != '\0') continue;
        char c = p[i];
        p[i] = '\0';
        if (mkdir(p, 0777) != 0 && errno != EEXIST) {
            s = bx__error(BX_ERR_IO, "logger: cannot create folder '%s': %s", path, strerror(errno));
            break;
        }
        p[i] = c;
    }
    bx__free(p);
    if (s == BX_OK && !bx__is_dir(path))
        s = bx__error(BX_ERR_IO, "logger: cannot create folder '%s': not a directory", path);
    return s;
}

char *bx__prefixed(const char *prefix, const char *key) {
    if (!prefix || !prefix[0]) return bx__strdup(key);
    size_t np = strlen(prefix), nk = strlen(key);
    char *r = bx__malloc(np + nk + 2);
    if (!r) return NULL;
    memcpy(r, prefix, np);
    r[np] = '-'; /* Lightning's LOGGER_JOIN_CHAR */
    memcpy(r + np + 1, key, nk + 1);
    return r;
}

/* ---- version resolution ------------------------------------------------------ */

bx_status bx__logger_dirs_init(bx__logger_dirs *d, const char *save_dir, const char *name,
                               bx_logger_version_opt v) {
    memset(d, 0, sizeof *d);
    if (v.number < -1 && !v.text)
        return bx__error(BX_ERR_INVALID, "logger: version %lld must be >= 0 (or -1 = auto)",
                         (long long)v.number);
    d->save_dir = bx__strdup(save_dir ? save_dir : ".");
    d->name = bx__strdup(name ? name : "lightning_logs");
    d->number = v.number;
    d->text = v.text ? bx__strdup(v.text) : NULL;
    if (!d->save_dir || !d->name || (v.text && !d->text)) {
        bx__logger_dirs_free(d);
        return BX_ERR_NOMEM;
    }
    d->root_dir = d->name[0] ? bx__path_join(d->save_dir, d->name) : bx__strdup(d->save_dir);
    if (!d->root_dir) {
        bx__logger_dirs_free(d);
        return BX_ERR_NOMEM;
    }
    return BX_OK;
}

void bx__logger_dirs_free(bx__logger_dirs *d) {
    bx__free(d->save_dir);
    bx__free(d->name);
    bx__free(d->text);
    bx__free(d->version);
    bx__free(d->root_dir);
    bx__free(d->log_dir);
    memset(d, 0, sizeof *d);
}

/* The <int> of "version_<int>[_...]" (Lightning: int(name.split("_")[1])). */
static bool parse_version(const char *name, int64_t *out) {
    if (strncmp(name, "version_", 8) != 0) return false;
    const char *p = name + 8;
    bool neg = false;
    if (*p == '+' || *p == '-') neg = *p++ == '-';
    if (*p < '0' || *p > '9') return false;
    int64_t v = 0;
    while (*p >= '0' && *p <= '9') {
        if (v > (INT64_MAX - 9) / 10) return false;
        v = v * 10 + (*p++ - '0');
    }
    if (*p != '\0' && *p != '_') return false;
    *out = neg ? -v : v;
    return true;
}

static int64_t next_version(const char *root_dir) {
    DIR *dir = opendir(root_dir);
    if (!dir) {
        bx_logf(BX_LOG_WARNING, "Missing logger folder: %s", root_dir);
        return 0;
    }
    bool any = false;
    int64_t best = 0;
    struct dirent *e;
    while ((e = readdir(dir)) != NULL) {
        int64_t v;
        if (!parse_version(e->d_name, &v)) continue;
        char *full = bx__path_join(root_dir, e->d_name);
        bool isdir = full && bx__is_dir(full);
        bx__free(full);
        if (!isdir) continue;
        if (!any || v > best) best = v;
        any = true;
    }
    closedir(dir);
    return any ? best + 1 : 0;
}

bx_status bx__logger_dirs_resolve(bx__logger_dirs *d) {
    if (d->resolved) return BX_OK;
    char buf[64];
    const char *ver, *folder;
    if (d->text) {
        ver = folder = d->text;
    } else {
        int64_t v = d->number >= 0 ? d->number : next_version(d->root_dir);
        snprintf(buf, sizeof buf, "%lld", (long long)v);
        ver = buf;
        folder = NULL;
    }
    char vdir[80];
    if (!folder) {
        snprintf(vdir, sizeof vdir, "version_%s", ver);
        folder = vdir;
    }
    d->version = bx__strdup(ver);
    d->log_dir = bx__path_join(d->root_dir, folder);
    if (!d->version || !d->log_dir) {
        bx__free(d->version);
        bx__free(d->log_dir);
        d->version = d->log_dir = NULL;
        return BX_ERR_NOMEM;
    }
    d->resolved = true;
    return BX_OK;
}
