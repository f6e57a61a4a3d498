/* dispatch.c - the callback object and hook-error reporting.
 *
 * Hook dispatch itself is the BX__CALL_* macros of train_int.h (callbacks in
 * list order, then the model's hook of the same name); this file holds the
 * bx_callback wrapper and the error text a failing hook leaves. */
#include "train/train_int.h"

#include <stdio.h>
#include <string.h>

const char *bx_stage_name(bx_stage s) {
    switch (s) {
    case BX_STAGE_FIT: return "fit";
    case BX_STAGE_VALIDATE: return "validate";
    case BX_STAGE_TEST: return "test";
    case BX_STAGE_PREDICT: return "predict";
    }
    return "?";
}

bx_callback *bx_callback_new(const bx_callback_ops *ops, void *self) {
    if (!ops) {
        bx__error(BX_ERR_INVALID, "callback: ops is NULL");
        return NULL;
    }
    bx_callback *cb = bx__calloc(sizeof *cb);
    if (!cb) {
        if (ops->destroy) ops->destroy(self);
        return NULL;
    }
    cb->ops = ops;
    cb->self = self;
    return cb;
}

void bx_callback_free(bx_callback *cb) {
    if (!cb) return;
    if (cb->ops->destroy) cb->ops->destroy(cb->self);
    bx__free(cb->state_key);
    bx__free(cb);
}

const bx_callback_ops *bx_callback_get_ops(const bx_callback *cb) { return cb ? cb->ops : NULL; }
void *bx_callback_self(const bx_callback *cb) { return cb ? cb->self : NULL; }
const char *bx_callback_name(const bx_callback *cb) {
    return cb && cb->ops->name ? cb->ops->name : "Callback";
}

void bx_callback_state_key(const bx_callback *cb, char *buf, size_t n) {
    if (!buf || n == 0) return;
    buf[0] = '\0';
    if (!cb) return;
    if (cb->state_key)
        bx__strlcpy(buf, cb->state_key, n);
    else if (cb->ops->state_key)
        cb->ops->state_key(cb->self, buf, n);
    else
        bx__strlcpy(buf, bx_callback_name(cb), n);
}

bx_status bx_callback_set_state_key(bx_callback *cb, const char *key) {
    if (!cb || !key || !*key) return bx__error(BX_ERR_INVALID, "callback: empty state key");
    char *k = bx__strdup(key);
    if (!k) return BX_ERR_NOMEM;
    bx__free(cb->state_key);
    cb->state_key = k;
    return BX_OK;
}

bool bx__cb_is(const bx_callback *cb, const char *name) {
    return cb->ops->name && strcmp(cb->ops->name, name) == 0;
}

/* Prefixes the failing hook's message with who ran it, once (the innermost
 * hook names the cause; fit adds stage/epoch/step on the way out). */
bx_status bx__hook_error(bx_trainer *tr, const char *who, const char *hook, bx_status s) {
    if (tr->err_hook[0] == '\0') {
        snprintf(tr->err_hook, sizeof tr->err_hook, "%s", hook);
        const char *msg = bx_errmsg();
        char *copy = bx__strdup(msg && *msg ? msg : bx_status_str(s));
        bx__error(s, "%s.%s: %s", who ? who : "?", hook, copy ? copy : bx_status_str(s));
        bx__free(copy);
    }
    return s;
}
