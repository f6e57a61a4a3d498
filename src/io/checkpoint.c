/* checkpoint.c - the .ckpt container: a bx_state tree as ONE safetensors file.
 *
 * Layout (see include/blixt/checkpoint.h):
 *  - tensor names: a tensor directly under the top-level dict key
 *    "state_dict" is stored under its own key ("layer.weight"), verbatim, so
 *    torch/safetensors load the file with load_state_dict(strict=True). Every
 *    other tensor node is stored under its dotted path from the root
 *    ("optimizer_states.0.state.0.exp_avg", "callbacks.<state_key>.<key>"),
 *    list items by their index. In a path, each dict key is escaped so the
 *    path is unambiguous: '%' -> "%25", '.' -> "%2E" (nothing else changes);
 *    a key "a.b" under "x" is "x.a%2Eb". A path longer than CK_NAME_MAX bytes
 *    is cut (at a UTF-8 boundary) and suffixed "~<crc32 of the full path>"
 *    (the JSON reference always holds the exact stored name). Two tensors with
 *    the same stored name (a state_dict key equal to another tensor's path)
 *    are rejected with BX_ERR_INVALID.
 *  - __metadata__: "format": "pt"; "blixt_format_version": "1"; "blixt":
 *    the whole tree as JSON (bx_state_to_json), each tensor node replaced by
 *    {"__tensor__": NAME}; "blixt_crc32": 8 lowercase hex digits, the zlib
 *    CRC32 of the "blixt" JSON text (its UTF-8 bytes) followed by the whole
 *    data section, computed while the data is written.
 *  - a dict whose only key is "__tensor__" with a string value cannot be
 *    stored (it would read back as a tensor reference): BX_ERR_INVALID.
 * The write is crash-safe through the safetensors writer (temp file in the
 * target folder, fsync, rename, fsync of the folder; on failure the temp file
 * is removed and an existing file at path is untouched). */
#include "io/io_int.h"
#include "io/state_int.h"
#include "tensor/tensor_int.h"

#include "blixt/checkpoint.h"

#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define CK_VERSION "1"
#define CK_NAME_MAX 200 /* longer paths are shortened (the JSON callback holds 256) */

/* ---- naming ------------------------------------------------------------------ */

typedef struct ck_tensor {
    const bx_tensor *t;
    char *name;
} ck_tensor;

typedef struct ck_names {
    ck_tensor *v;
    size_t n, cap;
    size_t cursor;       /* next entry the JSON callback expects */
    bx_status cb_status; /* failure inside the JSON callback */
    char *path;          /* dotted path being built */
    size_t plen, pcap;
} ck_names;

static void names_free(ck_names *c) {
    for (size_t i = 0; i < c->n; i++) bx__free(c->v[i].name);
    bx__free(c->v);
    bx__free(c->path);
}

/* Appends n bytes to the path buffer. */
static bx_status path_put(ck_names *c, const char *s, size_t n) {
    if (c->plen + n + 1 > c->pcap) {
        size_t cap = c->pcap ? c->pcap : 256;
        while (c->plen + n + 1 > cap) cap *= 2;
        char *p = bx__realloc(c->path, cap);
        if (!p) return BX_ERR_NOMEM;
        c->path = p;
        c->pcap = cap;
    }
    memcpy(c->path + c->plen, s, n);
    c->plen += n;
    c->path[c->plen] = '\0';
    return BX_OK;
}

/* Pushes ".seg" (or "seg" at the root), escaping '%' and '.' when escape. */
static bx_status path_push(ck_names *c, const char *seg, bool escape) {
    bx_status s = c->plen ? path_put(c, ".", 1) : BX_OK;
    const char *run = seg;
    for (const char *p = seg; s == BX_OK && *p; p++) {
        if (!escape || (*p != '.' && *p != '%')) continue;
        s = path_put(c, run, (size_t)(p - run));
        if (s == BX_OK) s = path_put(c, *p == '.' ? "%2E" : "%25", 3);
        run = p + 1;
    }
    if (s == BX_OK) s = path_put(c, run, strlen(run));
    return s;
}

/* Records the stored name of tensor t: `full` itself when verbatim or short
 * enough, else its shortened form. */
static bx_status add_name(ck_names *c, const bx_tensor *t, const char *full, bool verbatim) {
    if (c->n == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 32;
        ck_tensor *v = bx__realloc(c->v, cap * sizeof *v);
        if (!v) return bx__error(BX_ERR_NOMEM, "out of memory");
        c->v = v;
        c->cap = cap;
    }
    size_t len = strlen(full);
    char *name;
    if (verbatim && len > 255) {
        return bx__error(BX_ERR_INVALID, "state_dict key '%.40s...' is longer than 255 bytes", full);
    } else if (verbatim || len <= CK_NAME_MAX) {
        name = bx__strdup(full);
    } else {
        size_t cut = CK_NAME_MAX - 9;
        while (cut > 0 && ((unsigned char)full[cut] & 0xC0) == 0x80) cut--; /* not inside a UTF-8 char */
        name = bx__malloc(cut + 10);
        if (name) {
            memcpy(name, full, cut);
            snprintf(name + cut, 10, "~%08lx", (unsigned long)(crc32_z(0, (const Bytef *)full, len) & 0xffffffffu));
        }
    }
    if (!name) return bx__error(BX_ERR_NOMEM, "out of memory");
    c->v[c->n].t = t;
    c->v[c->n].name = name;
    c->n++;
    return BX_OK;
}

/* A dict that would read back as a tensor reference. */
static bool looks_like_ref(const bx_state *d) {
    return d->u.dict.n == 1 && strcmp(d->u.dict.keys[0], "__tensor__") == 0 &&
           d->u.dict.vals[0]->type == BX_STATE_STRING;
}

static bx_status name_walk(ck_names *c, const bx_state *s, bool top);

/* Names the child v reached through segment seg. */
static bx_status name_child(ck_names *c, const char *seg, bool escape, const bx_state *v, bool top) {
    size_t old = c->plen;
    bx_status st = path_push(c, seg, escape);
    if (st == BX_OK) st = name_walk(c, v, top);
    c->plen = old;
    if (c->path) c->path[old] = '\0';
    return st;
}

/* Walks the tree in the order bx_state_to_json visits it, naming every
 * tensor. `top`: s is the root dict (whose "state_dict" is special). */
static bx_status name_walk(ck_names *c, const bx_state *s, bool top) {
    switch (s->type) {
    case BX_STATE_TENSOR: return add_name(c, s->u.t, c->path ? c->path : "", false);
    case BX_STATE_LIST:
        for (size_t i = 0; i < s->u.list.n; i++) {
            char seg[24];
            snprintf(seg, sizeof seg, "%zu", i);
            bx_status st = name_child(c, seg, false, s->u.list.items[i], false);
            if (st != BX_OK) return st;
        }
        return BX_OK;
    case BX_STATE_DICT:
        if (looks_like_ref(s))
            return bx__error(BX_ERR_INVALID,
                             "dict at '%s' has the single string key '__tensor__', which would read back as a "
                             "tensor reference",
                             c->path ? c->path : "");
        for (size_t i = 0; i < s->u.dict.n; i++) {
            const char *k = s->u.dict.keys[i];
            const bx_state *v = s->u.dict.vals[i];
            bx_status st = BX_OK;
            if (top && strcmp(k, "state_dict") == 0 && v->type == BX_STATE_DICT) {
                /* PyTorch names: tensors straight under state_dict keep their key */
                if (looks_like_ref(v))
                    return bx__error(BX_ERR_INVALID, "state_dict has the single string key '__tensor__'");
                size_t old = c->plen;
                st = path_push(c, k, true);
                for (size_t j = 0; st == BX_OK && j < v->u.dict.n; j++) {
                    const bx_state *w = v->u.dict.vals[j];
                    if (w->type == BX_STATE_TENSOR) st = add_name(c, w->u.t, v->u.dict.keys[j], true);
                    else st = name_child(c, v->u.dict.keys[j], true, w, false);
                }
                c->plen = old;
                if (c->path) c->path[old] = '\0';
            } else {
                st = name_child(c, k, true, v, false);
            }
            if (st != BX_OK) return st;
        }
        return BX_OK;
    default: return BX_OK;
    }
}

/* bx_state_to_json callback: the name recorded for this tensor node. */
static bx_status name_out(void *ud, const char *path, const bx_tensor *t, char *out, size_t cap) {
    ck_names *c = ud;
    size_t i = c->cursor;
    if (i >= c->n || c->v[i].t != t) { /* visiting order differs: search */
        for (i = 0; i < c->n && c->v[i].t != t; i++) {}
        if (i == c->n) return c->cb_status = bx__error(BX_ERR_INVALID, "tensor at '%s' was not named", path);
    }
    c->cursor = i + 1;
    if (strlen(c->v[i].name) >= cap)
        return c->cb_status = bx__error(BX_ERR_INVALID, "tensor name '%.40s...' too long", c->v[i].name);
    bx__strlcpy(out, c->v[i].name, cap);
    return BX_OK;
}

/* ---- write ------------------------------------------------------------------- */

bx_status bx_checkpoint_write(const char *path, const bx_state *ckpt) {
    if (!path || !path[0]) return bx__error(BX_ERR_INVALID, "checkpoint: NULL or empty path");
    if (!ckpt || ckpt->type != BX_STATE_DICT)
        return bx__error(BX_ERR_INVALID, "checkpoint '%s': the state to save must be a dict, not %s", path,
                         ckpt ? bx__state_type_desc(ckpt->type) : "NULL");
    ck_names c;
    memset(&c, 0, sizeof c);
    bx_st_writer *w = NULL;
    char *json = NULL;
    bx_status s = name_walk(&c, ckpt, true);
    if (s == BX_OK) {
        json = bx_state_to_json(ckpt, name_out, &c);
        if (!json) s = c.cb_status ? c.cb_status : BX_ERR_NOMEM;
    }
    if (s == BX_OK) {
        w = bx_st_writer_new();
        if (!w) s = bx__error(BX_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; s == BX_OK && i < c.n; i++) {
        s = bx_st_writer_add(w, c.v[i].name, c.v[i].t);
        if (s == BX_OK) continue;
        for (size_t j = 0; j < i; j++)
            if (strcmp(c.v[j].name, c.v[i].name) == 0)
                s = bx__error(BX_ERR_INVALID,
                              "two tensors would be stored under the name '%s' (a state_dict key equal to the "
                              "dotted path of another tensor)",
                              c.v[i].name);
    }
    if (s == BX_OK) s = bx_st_writer_meta(w, "format", "pt");
    if (s == BX_OK) s = bx_st_writer_meta(w, "blixt_format_version", CK_VERSION);
    if (s == BX_OK) s = bx_st_writer_meta(w, "blixt", json);
    if (s == BX_OK) {
        uint32_t seed = (uint32_t)crc32_z(0, (const Bytef *)json, strlen(json));
        s = bx__st_writer_write_crc(w, path, "blixt_crc32", seed);
        if (s != BX_OK) bx__error_prefix("checkpoint");
    } else {
        bx__error_prefix("checkpoint '%s'", path);
    }
    bx_st_writer_free(w);
    bx_free(json);
    names_free(&c);
    return s;
}

/* ---- read -------------------------------------------------------------------- */

typedef struct ck_ref {
    const bx_tensor *t;
    int index;
} ck_ref;

typedef struct ck_reader {
    bx_st_file *f;
    ck_ref *refs; /* supported tensors sorted by pointer */
    int nrefs;
    bool *used;   /* by file index */
    char missing[256];
    char why[256];
    bx_status missing_status;
} ck_reader;

static int cmp_ref(const void *a, const void *b) {
    const ck_ref *x = a, *y = b;
    return x->t < y->t ? -1 : x->t > y->t;
}

static const bx_tensor *ref_in(void *ud, const char *name) {
    ck_reader *r = ud;
    const bx_tensor *t = bx_st_get(r->f, name);
    if (!t) {
        if (!r->missing_status) {
            bx__strlcpy(r->missing, name, sizeof r->missing);
            r->missing_status = BX_ERR_NOT_FOUND;
            for (int i = 0; i < bx_st_count(r->f); i++) /* present, but of a dtype Blixt cannot hold */
                if (strcmp(bx_st_name(r->f, i), name) == 0) r->missing_status = BX_ERR_UNSUPPORTED;
            if (r->missing_status == BX_ERR_UNSUPPORTED)
                bx__strlcpy(r->why, bx_errmsg(), sizeof r->why);
        }
        return NULL;
    }
    ck_ref key = {t, 0};
    ck_ref *hit = bsearch(&key, r->refs, (size_t)r->nrefs, sizeof *r->refs, cmp_ref);
    if (hit) r->used[hit->index] = true;
    return t;
}

static int hexval(char ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    return -1;
}

/* The checks after bx_st_open; *out set on success. */
static bx_status ck_validate(ck_reader *r, const char *path, bx_state **out) {
    bx_st_file *f = r->f;
    const char *fmt = bx_st_metadata(f, "format");
    const char *ver = bx_st_metadata(f, "blixt_format_version");
    const char *json = bx_st_metadata(f, "blixt");
    const char *crc = bx_st_metadata(f, "blixt_crc32");
    if (!json || !crc || !ver || !fmt)
        return bx__error(BX_ERR_FORMAT,
                         "checkpoint '%s': no blixt metadata (missing __metadata__ key '%s'; check: metadata "
                         "keys present)",
                         path, !json ? "blixt" : !crc ? "blixt_crc32" : !ver ? "blixt_format_version" : "format");
    if (strcmp(fmt, "pt") != 0)
        return bx__error(BX_ERR_FORMAT, "checkpoint '%s': metadata format is '%.32s', expected 'pt' (check: format)",
                         path, fmt);
    if (strcmp(ver, CK_VERSION) != 0)
        return bx__error(BX_ERR_FORMAT,
                         "checkpoint '%s': unknown blixt_format_version '%.32s' (this build reads version %s; "
                         "check: format version)",
                         path, ver, CK_VERSION);
    uint32_t want = 0;
    bool hexok = strlen(crc) == 8;
    for (int i = 0; hexok && i < 8; i++) {
        int h = hexval(crc[i]);
        if (h < 0) hexok = false;
        else want = (want << 4) | (uint32_t)h;
    }
    if (!hexok)
        return bx__error(BX_ERR_FORMAT,
                         "checkpoint '%s': blixt_crc32 '%.32s' is not 8 lowercase hex digits (check: checksum)", path,
                         crc);
    const void *data;
    size_t dlen;
    bx__st_data_section(f, &data, &dlen);
    uLong got = crc32_z(0, (const Bytef *)json, strlen(json));
    got = crc32_z(got, data, dlen);
    if ((uint32_t)got != want)
        return bx__error(BX_ERR_FORMAT,
                         "checkpoint '%s': checksum mismatch: the file is corrupt (stored crc32 %08lx, computed "
                         "%08lx; check: checksum)",
                         path, (unsigned long)want, (unsigned long)(got & 0xffffffffu));

    int n = bx_st_count(f);
    r->refs = bx__malloc((size_t)(n ? n : 1) * sizeof *r->refs);
    r->used = bx__calloc((size_t)(n ? n : 1) * sizeof *r->used);
    if (!r->refs || !r->used) return BX_ERR_NOMEM;
    for (int i = 0; i < n; i++) {
        const bx_tensor *t = bx_st_get_index(f, i);
        if (!t) continue; /* dtype Blixt cannot hold: an error if referenced or not */
        r->refs[r->nrefs].t = t;
        r->refs[r->nrefs].index = i;
        r->nrefs++;
    }
    qsort(r->refs, (size_t)r->nrefs, sizeof *r->refs, cmp_ref);

    bx_state *tree = NULL;
    bx_status s = bx_state_from_json(json, ref_in, r, &tree);
    if (s != BX_OK) {
        if (r->missing_status == BX_ERR_UNSUPPORTED)
            return bx__error(BX_ERR_FORMAT, "checkpoint '%s': tensor '%s' cannot be read: %s (check: tensor dtypes)",
                             path, r->missing, r->why);
        if (r->missing_status)
            return bx__error(BX_ERR_FORMAT,
                             "checkpoint '%s': reference to tensor '%s', which is not in the file (check: every "
                             "tensor reference resolves)",
                             path, r->missing);
        if (s == BX_ERR_NOMEM) return s;
        bx__error_prefix("checkpoint '%s': metadata 'blixt' is not valid state JSON (check: JSON)", path);
        return BX_ERR_FORMAT;
    }
    if (tree->type != BX_STATE_DICT) {
        bx_state_type ty = tree->type;
        bx_state_free(tree);
        return bx__error(BX_ERR_FORMAT, "checkpoint '%s': the state is %s, not a dict (check: JSON root)", path,
                         bx__state_type_desc(ty));
    }
    for (int i = 0; i < n; i++) {
        if (!r->used[i]) {
            bx_state_free(tree);
            return bx__error(BX_ERR_FORMAT,
                             "checkpoint '%s': tensor '%s' is in the file but no state refers to it (check: every "
                             "tensor is referenced)",
                             path, bx_st_name(f, i));
        }
    }
    *out = tree;
    return BX_OK;
}

/* After a failed open: the size the file's own header describes (8 + header
 * + the largest data end offset), when it can be told; 0 otherwise. A file
 * shorter than that was cut off. *actual gets the file size. */
static uint64_t described_size(const char *path, uint64_t *actual) {
    *actual = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    struct stat sb;
    uint64_t want = 0;
    uint8_t lb[8];
    if (fstat(fd, &sb) != 0) goto done;
    *actual = (uint64_t)sb.st_size;
    if (*actual < 8) {
        want = 8;
        goto done;
    }
    if (pread(fd, lb, 8, 0) != 8) goto done;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | lb[i];
    if (hlen > 100000000u) goto done; /* absurd: a corrupt length, not a cut */
    if (8 + hlen > *actual) {
        want = 8 + hlen;
        goto done;
    }
    char *hdr = bx__malloc(hlen ? hlen : 1);
    if (!hdr) goto done;
    if (pread(fd, hdr, hlen, 8) == (ssize_t)hlen) {
        json_t *root = json_loadb(hdr, hlen, 0, NULL);
        const char *k;
        json_t *v;
        uint64_t end = 0;
        if (json_is_object(root)) {
            json_object_foreach(root, k, v) {
                json_t *e = json_array_get(json_object_get(v, "data_offsets"), 1);
                if (json_is_integer(e) && json_integer_value(e) > 0 && (uint64_t)json_integer_value(e) > end)
                    end = (uint64_t)json_integer_value(e);
            }
        }
        json_decref(root);
        want = 8 + hlen + end;
    }
    bx__free(hdr);
done:
    close(fd);
    return want;
}

bx_status bx_checkpoint_read(const char *path, bx_state **out) {
    if (!out) return bx__error(BX_ERR_INVALID, "checkpoint: NULL output pointer");
    *out = NULL;
    if (!path || !path[0]) return bx__error(BX_ERR_INVALID, "checkpoint: NULL or empty path");
    ck_reader r;
    memset(&r, 0, sizeof r);
    bx_status s = bx_st_open(path, &r.f);
    if (s != BX_OK) {
        uint64_t actual, want;
        if (s == BX_ERR_FORMAT && (want = described_size(path, &actual)) > actual)
            bx__error_prefix("checkpoint '%s' is truncated: the file has %llu bytes, its header needs %s%llu "
                             "(check: file size)",
                             path, (unsigned long long)actual, want == 8 ? "at least " : "", (unsigned long long)want);
        else if (s == BX_ERR_FORMAT)
            bx__error_prefix("checkpoint '%s' is not a valid safetensors file (check: safetensors rules)", path);
        else bx__error_prefix("checkpoint");
        return s;
    }
    s = ck_validate(&r, path, out);
    bx__free(r.refs);
    bx__free(r.used);
    bx_st_close(r.f);
    return s;
}
