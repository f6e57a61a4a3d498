/* config.c - the LightningCLI config: merging config files, dotted
 * command-line overrides ("--trainer.max_epochs=3",
 * "--trainer.callbacks+=EarlyStopping --trainer.callbacks.patience=5"),
 * and resolution of the merged tree into a complete, validated config
 * (defaults filled in, class paths checked against the registry). */
#include "cli/cli_int.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define NP(a) ((int)(sizeof(a) / sizeof((a)[0])))

static const bx__param TRAINER_PARAMS[] = {
    {"default_root_dir", BX_P_STR | BX_P_NULL, "null", NULL},
    {"max_epochs", BX_P_INT | BX_P_NULL, "null", NULL},
    {"min_epochs", BX_P_INT | BX_P_NULL, "null", NULL},
    {"max_steps", BX_P_INT, "-1", NULL},
    {"min_steps", BX_P_INT | BX_P_NULL, "null", NULL},
    {"limit_train_batches", BX_P_INT | BX_P_FLOAT | BX_P_NULL, "null", NULL},
    {"limit_val_batches", BX_P_INT | BX_P_FLOAT | BX_P_NULL, "null", NULL},
    {"limit_test_batches", BX_P_INT | BX_P_FLOAT | BX_P_NULL, "null", NULL},
    {"limit_predict_batches", BX_P_INT | BX_P_FLOAT | BX_P_NULL, "null", NULL},
    {"val_check_interval", BX_P_INT | BX_P_FLOAT | BX_P_NULL, "null", NULL},
    {"check_val_every_n_epoch", BX_P_INT | BX_P_NULL, "1", NULL},
    {"num_sanity_val_steps", BX_P_INT, "2", NULL},
    {"accumulate_grad_batches", BX_P_ANY, "null", NULL}, /* int, null or {epoch: factor} */
    {"gradient_clip_val", BX_P_FLOAT | BX_P_NULL, "null", NULL},
    {"gradient_clip_algorithm", BX_P_STR | BX_P_NULL, "null", "norm|value"},
    {"log_every_n_steps", BX_P_INT, "50", NULL},
    {"enable_checkpointing", BX_P_BOOL, "true", NULL},
    {"enable_progress_bar", BX_P_BOOL, "true", NULL},
    {"enable_model_summary", BX_P_BOOL, "true", NULL},
    {"fast_dev_run", BX_P_INT | BX_P_BOOL, "false", NULL},
    {"max_time", BX_P_ANY, "null", NULL}, /* "DD:HH:MM:SS", {days, hours, minutes, seconds} or null */
    {"num_threads", BX_P_INT, "0", NULL},
    /* LightningCLI configs carry these; only the values meaning what Blixt
     * does (one CPU process, float32) are accepted (check_hardware) */
    {"accelerator", BX_P_ANY, "null", NULL},
    {"strategy", BX_P_ANY, "null", NULL},
    {"devices", BX_P_ANY, "null", NULL},
    {"num_nodes", BX_P_ANY, "1", NULL},
    {"precision", BX_P_ANY, "32", NULL},
    {"logger", BX_P_ANY, "true", NULL},
    {"callbacks", BX_P_ANY, "null", NULL},
};

const bx__param *bx__trainer_params(int *n) {
    *n = NP(TRAINER_PARAMS);
    return TRAINER_PARAMS;
}

static const char *const SECTIONS[] = {"seed_everything", "trainer", "model", "data",
                                       "optimizer", "lr_scheduler", "ckpt_path", NULL};

static bool is_spec(const bx_state *v) { return v && bx_state_typeof(v) == BX_STATE_DICT && bx_state_get(v, "class_path"); }

/* {class_path: s, init_args: {}} */
static bx_state *spec_of(const char *class_path) {
    bx_state *d = bx_state_dict(), *ia = bx_state_dict();
    if (!d || !ia || bx_state_set_string(d, "class_path", class_path) != BX_OK || bx_state_set(d, "init_args", ia) != BX_OK) {
        bx_state_free(d);
        return NULL;
    }
    return d;
}

bx_status bx__config_merge(bx_state *dst, const bx_state *src) {
    const bx_state *scp = bx_state_get(src, "class_path");
    const bx_state *dcp = bx_state_get(dst, "class_path");
    if (scp && dcp && bx_state_typeof(scp) == BX_STATE_STRING && bx_state_typeof(dcp) == BX_STATE_STRING &&
        strcmp(bx_state_get_string(scp), bx_state_get_string(dcp)) != 0) {
        /* another class: its options start afresh */
        bx_state *ia = bx_state_dict();
        if (!ia || bx_state_set(dst, "init_args", ia) != BX_OK) return BX_ERR_NOMEM;
    }
    for (size_t i = 0; i < bx_state_len(src); i++) {
        const char *k = bx_state_key_at(src, i);
        const bx_state *sv = bx_state_value_at(src, i);
        bx_state *dv = bx_state_get(dst, k);
        if (dv && bx_state_typeof(dv) == BX_STATE_DICT && bx_state_typeof(sv) == BX_STATE_DICT) {
            bx_status s = bx__config_merge(dv, sv);
            if (s != BX_OK) return s;
        } else {
            bx_state *c = bx_state_copy(sv);
            if (!c || bx_state_set(dst, k, c) != BX_OK) return bx__error(BX_ERR_NOMEM, "config: out of memory");
        }
    }
    return BX_OK;
}

static bool is_index(const char *s) {
    if (!*s) return false;
    for (; *s; s++)
        if (*s < '0' || *s > '9') return false;
    return true;
}

bx_status bx__config_override(bx_state *cfg, const char *key, const char *value, bool append) {
    bx_state *v = NULL;
    char what[300];
    snprintf(what, sizeof what, "--%s", key);
    bx_status s = bx__yaml_parse(value, strlen(value), what, false, &v);
    if (s != BX_OK) return bx__error(BX_ERR_INVALID, "%s=%s: the value is not valid YAML: %s", what, value, bx_errmsg());
    char *path = bx__strdup(key);
    if (!path) {
        bx_state_free(v);
        return BX_ERR_NOMEM;
    }
    bx_state *node = cfg;
    char *save = NULL, *tok = strtok_r(path, ".", &save);
    s = BX_OK;
    while (tok && s == BX_OK) {
        char *next = strtok_r(NULL, ".", &save);
        /* descend from a list into one item */
        if (bx_state_typeof(node) == BX_STATE_LIST) {
            size_t n = bx_state_len(node);
            if (n == 0) {
                s = bx__error(BX_ERR_INVALID, "%s: the list is empty; add an item first (--%.*s+=ClassName)", what,
                              (int)(tok - path - 1), key);
                break;
            }
            if (is_index(tok)) {
                size_t i = (size_t)atol(tok);
                if (i >= n) {
                    s = bx__error(BX_ERR_INVALID, "%s: index %zu, but the list has %zu items", what, i, n);
                    break;
                }
                node = bx_state_at(node, i);
                tok = next;
                continue;
            }
            node = bx_state_at(node, n - 1);
        }
        if (bx_state_typeof(node) != BX_STATE_DICT) {
            s = bx__error(BX_ERR_INVALID, "%s: '%s' is under a value that is not a mapping", what, tok);
            break;
        }
        /* under a class spec, option names go into init_args */
        if (is_spec(node) && strcmp(tok, "class_path") && strcmp(tok, "init_args")) {
            bx_state *ia = bx_state_get(node, "init_args");
            if (!ia || bx_state_typeof(ia) != BX_STATE_DICT) {
                ia = bx_state_dict();
                if (!ia || bx_state_set(node, "init_args", ia) != BX_OK) {
                    s = BX_ERR_NOMEM;
                    break;
                }
            }
            node = ia;
        }
        if (!next) {
            bx_state *cur = bx_state_get(node, tok);
            if (append) {
                bx_state *item = bx_state_typeof(v) == BX_STATE_STRING ? spec_of(bx_state_get_string(v)) : bx_state_copy(v);
                bx_state_free(v);
                v = NULL;
                if (!item) {
                    s = BX_ERR_NOMEM;
                    break;
                }
                if (!cur || bx_state_typeof(cur) != BX_STATE_LIST) {
                    bx_state *l = bx_state_list();
                    /* a single class spec becomes the first item of the list */
                    if (l && cur && is_spec(cur)) bx_state_append(l, bx_state_copy(cur));
                    if (!l || bx_state_set(node, tok, l) != BX_OK) {
                        bx_state_free(item);
                        s = BX_ERR_NOMEM;
                        break;
                    }
                    cur = l;
                }
                s = bx_state_append(cur, item);
            } else if (cur && is_spec(cur) && bx_state_typeof(v) == BX_STATE_STRING) {
                /* --model=LeNet: the class changes, options start afresh */
                if (strcmp(bx_state_get_string(v), bx_state_get_string(bx_state_get(cur, "class_path")) ? bx_state_get_string(bx_state_get(cur, "class_path")) : "")) {
                    bx_state *sp = spec_of(bx_state_get_string(v));
                    s = sp ? bx_state_set(node, tok, sp) : BX_ERR_NOMEM;
                }
                bx_state_free(v);
                v = NULL;
            } else {
                s = bx_state_set(node, tok, v);
                v = NULL;
            }
            break;
        }
        bx_state *child = bx_state_get(node, tok);
        if (!child || bx_state_typeof(child) == BX_STATE_NULL || bx_state_typeof(child) == BX_STATE_BOOL) {
            child = bx_state_dict();
            if (!child || bx_state_set(node, tok, child) != BX_OK) {
                s = BX_ERR_NOMEM;
                break;
            }
        } else if (bx_state_typeof(child) == BX_STATE_STRING) {
            /* "model: LeNet" then --model.num_classes=5 */
            bx_state *sp = spec_of(bx_state_get_string(child));
            if (!sp || bx_state_set(node, tok, sp) != BX_OK) {
                s = BX_ERR_NOMEM;
                break;
            }
            child = sp;
        }
        node = child;
        tok = next;
    }
    bx_state_free(v);
    bx__free(path);
    return s;
}

/* ---- resolution ---------------------------------------------------------------- */
/* A class spec (string or {class_path, init_args}) of `kind` at `where`
 * resolved to {class_path: Name, init_args: {...all options...}}. */
static bx_status resolve_spec(bx__kind kind, const bx_state *v, const char *where, bx_state **out) {
    char vb[300], names[1024];
    *out = NULL;
    const char *cp = NULL;
    const bx_state *ia = NULL;
    if (bx_state_typeof(v) == BX_STATE_STRING) {
        cp = bx_state_get_string(v);
    } else if (bx_state_typeof(v) == BX_STATE_DICT) {
        const bx_state *c = bx_state_get(v, "class_path");
        if (!c || bx_state_typeof(c) != BX_STATE_STRING)
            return bx__error(BX_ERR_INVALID, "%s.class_path: got %s, expected the name of a %s class (known: %s)", where,
                             c ? bx__node_text(c, vb, sizeof vb) : "nothing", bx__kind_name(kind),
                             bx__registry_names(kind, names, sizeof names));
        cp = bx_state_get_string(c);
        for (size_t i = 0; i < bx_state_len(v); i++) {
            const char *k = bx_state_key_at(v, i);
            if (strcmp(k, "class_path") && strcmp(k, "init_args"))
                return bx__error(BX_ERR_INVALID, "%s.%s: unknown key (a class is given as class_path + init_args)", where, k);
        }
        ia = bx_state_get(v, "init_args");
    } else {
        return bx__error(BX_ERR_INVALID, "%s: got %s, expected a %s class (class_path + init_args, or a name; known: %s)",
                         where, bx__node_text(v, vb, sizeof vb), bx__kind_name(kind),
                         bx__registry_names(kind, names, sizeof names));
    }
    const bx__class *c = bx__registry_find(kind, cp);
    if (!c)
        return bx__error(BX_ERR_INVALID, "%s.class_path: got '%s', expected a known %s class: %s", where, cp,
                         bx__kind_name(kind), bx__registry_names(kind, names, sizeof names));
    char w[512];
    snprintf(w, sizeof w, "%s.init_args", where);
    bx_state *args = NULL;
    bx_status s = bx__params_resolve(c->params, c->nparams, ia, w, &args);
    if (s != BX_OK) return s;
    bx_state *d = bx_state_dict();
    if (!d || bx_state_set_string(d, "class_path", c->name) != BX_OK || bx_state_set(d, "init_args", args) != BX_OK) {
        bx_state_free(d);
        return BX_ERR_NOMEM;
    }
    *out = d;
    return BX_OK;
}

/* A list of class specs (or one spec, or null/empty) -> a list. */
static bx_status resolve_spec_list(bx__kind kind, const bx_state *v, const char *where, bx_state **out) {
    bx_state *l = bx_state_list();
    if (!l) return BX_ERR_NOMEM;
    *out = l;
    if (!v || bx_state_typeof(v) == BX_STATE_NULL) return BX_OK;
    bool single = bx_state_typeof(v) != BX_STATE_LIST;
    size_t n = single ? 1 : bx_state_len(v);
    for (size_t i = 0; i < n; i++) {
        char w[256];
        if (single) snprintf(w, sizeof w, "%s", where);
        else snprintf(w, sizeof w, "%s[%zu]", where, i);
        bx_state *r;
        bx_status s = resolve_spec(kind, single ? v : bx_state_at(v, i), w, &r);
        if (s == BX_OK) s = bx_state_append(l, r);
        if (s != BX_OK) {
            bx_state_free(l);
            *out = NULL;
            return s;
        }
    }
    return BX_OK;
}

/* The hardware flags of Lightning's Trainer: accelerator cpu/auto, strategy
 * auto/single_device, devices 1/"1"/auto/[0], num_nodes 1, precision
 * 32/"32"/"32-true" (null = the default everywhere). Anything else is an
 * error naming the key, the value and what Blixt accepts. */
static bool is_str(const bx_state *v, const char *a, const char *b, const char *c) {
    if (bx_state_typeof(v) != BX_STATE_STRING) return false;
    const char *s = bx_state_get_string(v);
    return !strcmp(s, a) || (b && !strcmp(s, b)) || (c && !strcmp(s, c));
}
static bool is_int(const bx_state *v, int64_t k) {
    return bx_state_typeof(v) == BX_STATE_INT && bx_state_get_int(v) == k;
}
static bx_status check_hardware(const bx_state *t) {
    char vb[300];
    const bx_state *v = bx_state_get(t, "accelerator");
    if (bx_state_typeof(v) != BX_STATE_NULL && !is_str(v, "cpu", "auto", NULL))
        return bx__error(BX_ERR_INVALID, "trainer.accelerator: got %s, expected 'cpu', 'auto' or null: "
                                         "not supported: Blixt trains on the CPU",
                         bx__node_text(v, vb, sizeof vb));
    v = bx_state_get(t, "strategy");
    if (bx_state_typeof(v) != BX_STATE_NULL && !is_str(v, "auto", "single_device", NULL))
        return bx__error(BX_ERR_INVALID, "trainer.strategy: got %s, expected 'auto', 'single_device' or null: "
                                         "not supported: Blixt trains in one process (trainer.num_threads sets "
                                         "its CPU threads)",
                         bx__node_text(v, vb, sizeof vb));
    v = bx_state_get(t, "devices");
    bool one_list = bx_state_typeof(v) == BX_STATE_LIST && bx_state_len(v) == 1 && is_int(bx_state_at(v, 0), 0);
    if (bx_state_typeof(v) != BX_STATE_NULL && !is_int(v, 1) && !is_str(v, "1", "auto", NULL) && !one_list)
        return bx__error(BX_ERR_INVALID, "trainer.devices: got %s, expected 1, '1', 'auto', [0] or null: "
                                         "not supported: Blixt trains on one device in one process "
                                         "(trainer.num_threads sets its CPU threads)",
                         bx__node_text(v, vb, sizeof vb));
    v = bx_state_get(t, "num_nodes");
    if (!is_int(v, 1))
        return bx__error(BX_ERR_INVALID, "trainer.num_nodes: got %s, expected 1: not supported: Blixt trains on "
                                         "one machine",
                         bx__node_text(v, vb, sizeof vb));
    v = bx_state_get(t, "precision");
    if (bx_state_typeof(v) != BX_STATE_NULL && !is_int(v, 32) && !is_str(v, "32", "32-true", NULL))
        return bx__error(BX_ERR_INVALID, "trainer.precision: got %s, expected 32, '32' or '32-true': "
                                         "not supported: Blixt trains in float32",
                         bx__node_text(v, vb, sizeof vb));
    return BX_OK;
}

static bx_status set_or_fail(bx_state *d, const char *k, bx_state *v) {
    if (!v) return bx__error(BX_ERR_NOMEM, "config: out of memory");
    return bx_state_set(d, k, v);
}

bx_status bx__config_resolve(const bx_state *raw, bx_state **out) {
    *out = NULL;
    char vb[300];
    for (size_t i = 0; i < bx_state_len(raw); i++) {
        const char *k = bx_state_key_at(raw, i);
        bool known = false;
        for (int j = 0; SECTIONS[j] && !known; j++) known = !strcmp(SECTIONS[j], k);
        if (!known)
            return bx__error(BX_ERR_INVALID,
                             "%s: unknown key (known: seed_everything, trainer, model, data, optimizer, lr_scheduler, ckpt_path)", k);
    }
    bx_state *r = bx_state_dict();
    if (!r) return BX_ERR_NOMEM;
    bx_status s = BX_OK;
    /* seed_everything: int, true (draw one), false/null (none) */
    const bx_state *se = bx_state_get(raw, "seed_everything");
    if (!se || bx_state_typeof(se) == BX_STATE_BOOL) {
        if (!se || bx_state_get_bool(se)) {
            uint64_t seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 16);
            s = set_or_fail(r, "seed_everything", bx_state_int((int64_t)(seed % 4294967296ULL)));
        } else {
            s = set_or_fail(r, "seed_everything", bx_state_null());
        }
    } else if (bx_state_typeof(se) == BX_STATE_INT) {
        s = set_or_fail(r, "seed_everything", bx_state_copy(se));
    } else if (bx_state_typeof(se) == BX_STATE_NULL) {
        s = set_or_fail(r, "seed_everything", bx_state_null());
    } else {
        s = bx__error(BX_ERR_INVALID, "seed_everything: got %s, expected an int or a bool", bx__node_text(se, vb, sizeof vb));
    }
    /* trainer */
    bx_state *tr = NULL;
    if (s == BX_OK) s = bx__params_resolve(TRAINER_PARAMS, NP(TRAINER_PARAMS), bx_state_get(raw, "trainer"), "trainer", &tr);
    if (s == BX_OK) s = bx_state_set(r, "trainer", tr);
    else bx_state_free(tr);
    if (s == BX_OK) s = check_hardware(tr);
    if (s == BX_OK) {
        char text[64];
        bool none;
        s = bx__duration_of(bx_state_get(tr, "max_time"), "trainer.max_time", &none, text, sizeof text);
    }
    if (s == BX_OK) {
        bx_state *cbs = NULL;
        s = resolve_spec_list(BX_KIND_CALLBACK, bx_state_get(tr, "callbacks"), "trainer.callbacks", &cbs);
        if (s == BX_OK) s = bx_state_set(tr, "callbacks", cbs);
    }
    if (s == BX_OK) {
        const bx_state *ag = bx_state_get(tr, "accumulate_grad_batches");
        bx_state_type at = bx_state_typeof(ag);
        if (at != BX_STATE_NULL && at != BX_STATE_INT && at != BX_STATE_DICT)
            s = bx__error(BX_ERR_INVALID, "trainer.accumulate_grad_batches: got %s, expected an int, null or a mapping {epoch: factor}",
                          bx__node_text(ag, vb, sizeof vb));
        for (size_t i = 0; s == BX_OK && at == BX_STATE_DICT && i < bx_state_len(ag); i++) {
            bx_state *kv = bx__yaml_scalar(bx_state_key_at(ag, i));
            if (!kv || bx_state_typeof(kv) != BX_STATE_INT || bx_state_typeof(bx_state_value_at(ag, i)) != BX_STATE_INT)
                s = bx__error(BX_ERR_INVALID, "trainer.accumulate_grad_batches: got the entry '%s': %s, expected {int epoch: int factor}",
                              bx_state_key_at(ag, i), bx__node_text(bx_state_value_at(ag, i), vb, sizeof vb));
            bx_state_free(kv);
        }
    }
    if (s == BX_OK) {
        const bx_state *lg = bx_state_get(tr, "logger");
        if (bx_state_typeof(lg) == BX_STATE_NULL) {
            s = set_or_fail(tr, "logger", bx_state_bool(true));
        } else if (bx_state_typeof(lg) != BX_STATE_BOOL) {
            bx_state *l = NULL;
            s = resolve_spec_list(BX_KIND_LOGGER, lg, "trainer.logger", &l);
            if (s == BX_OK) s = bx_state_set(tr, "logger", l);
        }
    }
    /* model, data, optimizer, lr_scheduler */
    static const struct {
        const char *key;
        bx__kind kind;
        const char *def;
    } CLASSES[] = {{"model", BX_KIND_MODEL, "MLP"},
                   {"data", BX_KIND_DATA, "FashionMNIST"},
                   {"optimizer", BX_KIND_OPTIMIZER, "Adam"},
                   {"lr_scheduler", BX_KIND_SCHEDULER, NULL}};
    for (int i = 0; s == BX_OK && i < 4; i++) {
        const bx_state *v = bx_state_get(raw, CLASSES[i].key);
        bx_state *dflt = NULL;
        if (!v || bx_state_typeof(v) == BX_STATE_NULL) {
            if (!CLASSES[i].def) {
                s = set_or_fail(r, CLASSES[i].key, bx_state_null());
                continue;
            }
            dflt = bx_state_string(CLASSES[i].def);
            v = dflt;
        } else if (CLASSES[i].def && bx_state_typeof(v) == BX_STATE_DICT && !bx_state_get(v, "class_path")) {
            /* options without a class (--model.sizes=[4, 3]) are the default class's */
            dflt = spec_of(CLASSES[i].def);
            bx_state *ia = dflt ? bx_state_get(dflt, "init_args") : NULL;
            for (size_t j = 0; ia && j < bx_state_len(v); j++) {
                const char *k = bx_state_key_at(v, j);
                const bx_state *x = bx_state_value_at(v, j);
                if (!strcmp(k, "init_args") && bx_state_typeof(x) == BX_STATE_DICT) s = bx__config_merge(ia, x);
                else s = set_or_fail(ia, k, bx_state_copy(x));
            }
            if (!dflt) s = BX_ERR_NOMEM;
            if (s != BX_OK) {
                bx_state_free(dflt);
                break;
            }
            v = dflt;
        }
        bx_state *sp = NULL;
        s = resolve_spec(CLASSES[i].kind, v, CLASSES[i].key, &sp);
        bx_state_free(dflt);
        if (s == BX_OK) s = bx_state_set(r, CLASSES[i].key, sp);
    }
    if (s == BX_OK) {
        const bx_state *cp = bx_state_get(raw, "ckpt_path");
        if (cp && bx_state_typeof(cp) != BX_STATE_NULL && bx_state_typeof(cp) != BX_STATE_STRING)
            s = bx__error(BX_ERR_INVALID, "ckpt_path: got %s, expected a path, \"last\" or null", bx__node_text(cp, vb, sizeof vb));
        else
            s = set_or_fail(r, "ckpt_path", cp ? bx_state_copy(cp) : bx_state_null());
    }
    if (s != BX_OK) {
        bx_state_free(r);
        return s;
    }
    *out = r;
    return BX_OK;
}
