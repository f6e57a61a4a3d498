/* shim_checkpoint.c - TEMPORARY weak bx_checkpoint_write/read (checkpoint.h)
 * until the checkpoint helper's container lands (its definitions override
 * these at link time). Layout as checkpoint.h describes, without the CRC:
 * state_dict tensors under their names, other tensors under their dotted
 * path, the rest as JSON in __metadata__["blixt"], "format": "pt". */
#include "blixt/checkpoint.h"
#include "blixt/safetensors.h"
#include "core/core_int.h"

#include <stdio.h>
#include <string.h>

typedef struct wctx {
    bx_st_writer *w;
} wctx;

static bx_status put_tensor(void *ud, const char *path, const bx_tensor *t, char *name_out, size_t cap) {
    wctx *c = ud;
    const char *name = strncmp(path, "state_dict.", 11) == 0 ? path + 11 : path;
    bx__strlcpy(name_out, name, cap);
    return bx_st_writer_add(c->w, name, t);
}

__attribute__((weak)) bx_status bx_checkpoint_write(const char *path, const bx_state *ckpt) {
    if (!ckpt || bx_state_typeof(ckpt) != BX_STATE_DICT)
        return bx__error(BX_ERR_INVALID, "checkpoint '%s': not a dict", path);
    wctx c = {bx_st_writer_new()};
    if (!c.w) return BX_ERR_NOMEM;
    char *json = bx_state_to_json(ckpt, put_tensor, &c);
    bx_status s = json ? BX_OK : bx__error(BX_ERR_INVALID, "checkpoint '%s': could not serialise: %s", path, bx_errmsg());
    if (s == BX_OK) s = bx_st_writer_meta(c.w, "format", "pt");
    if (s == BX_OK) s = bx_st_writer_meta(c.w, "blixt", json);
    if (s == BX_OK) s = bx_st_writer_write(c.w, path);
    bx_free(json);
    bx_st_writer_free(c.w);
    return s;
}

static const bx_tensor *get_tensor(void *ud, const char *name) { return bx_st_get((const bx_st_file *)ud, name); }

__attribute__((weak)) bx_status bx_checkpoint_read(const char *path, bx_state **out) {
    *out = NULL;
    bx_st_file *f = NULL;
    bx_status s = bx_st_open(path, &f);
    if (s != BX_OK) return s;
    const char *json = bx_st_metadata(f, "blixt");
    if (!json) s = bx__error(BX_ERR_FORMAT, "checkpoint '%s': no blixt metadata", path);
    if (s == BX_OK) s = bx_state_from_json(json, get_tensor, f, out);
    bx_st_close(f);
    return s;
}
