/* safetensors.c - reading (mmap, full validation) and crash-safe writing of
 * the safetensors format (see include/blixt/safetensors.h for the layout).
 *
 * Reader: the header JSON is parsed by jansson with JSON_REJECT_DUPLICATES
 * (jansson would otherwise silently keep the last duplicate key); every rule
 * is then checked and an error names the file, the tensor and the rule.
 * Tensors are bx_tensor views into the mapping; a tensor whose data is not
 * aligned to its element size is copied once into aligned memory.
 * Writer: 8-byte dtypes first, then 4-byte, then 1-byte (insertion order
 * within a class), header padded with spaces to a multiple of 8, written to
 * a temp file in the target folder, fsync'ed, renamed over the target and
 * the folder fsync'ed. */
#include "tensor/tensor_int.h"

#include "blixt/safetensors.h"
#include "io/io_int.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c assumes a little-endian host"
#endif

/* Same limit as the reference implementation (safetensors' MAX_HEADER_SIZE). */
#define ST_MAX_HEADER ((uint64_t)100000000)

/* ---- dtypes ---------------------------------------------------------------- */

typedef struct st_dtype {
    const char *name;
    size_t size;
    int bx; /* bx_dtype, or -1 when the format knows it but Blixt cannot hold it */
} st_dtype;

static const st_dtype st_dtypes[] = {
    {"F64", 8, BX_F64}, {"F32", 4, BX_F32}, {"I64", 8, BX_I64}, {"I32", 4, BX_I32},
    {"U8", 1, BX_U8},   {"I8", 1, BX_I8},   {"BOOL", 1, BX_BOOL},
    /* valid safetensors dtypes that Blixt has no tensor type for: the file
     * opens, reading such a tensor gives BX_ERR_UNSUPPORTED */
    {"F16", 2, -1}, {"BF16", 2, -1}, {"I16", 2, -1}, {"U16", 2, -1},
    {"U32", 4, -1}, {"U64", 8, -1}, {"F8_E4M3", 1, -1}, {"F8_E5M2", 1, -1},
};
#define ST_NDTYPES ((int)(sizeof st_dtypes / sizeof st_dtypes[0]))

static const st_dtype *st_find_dtype(const char *s) {
    for (int i = 0; i < ST_NDTYPES; i++)
        if (strcmp(st_dtypes[i].name, s) == 0) return &st_dtypes[i];
    return NULL;
}

/* ---- reader ---------------------------------------------------------------- */

typedef struct st_entry {
    const char *name; /* points into the parsed header (root) */
    const st_dtype *dt;
    int ndim;
    int64_t shape[BX_MAX_DIMS];
    uint64_t begin, end;
    int order;               /* position in the header, ties in the offset sort */
    const char *unsupported; /* why bx_st_get refuses it, or NULL */
    bx_tensor t;             /* the view */
    void *copy;              /* aligned copy of misaligned data, or NULL */
} st_entry;

struct bx_st_file {
    char *label;
    const uint8_t *base; /* whole file / buffer */
    size_t len;
    bool mapped;
    json_t *root;
    st_entry *e; /* sorted by data offset */
    int n;
    st_entry **byname; /* sorted by name, for bsearch */
    const char **meta_key, **meta_val;
    int nmeta;
};

/* "safetensors 'file': " prefix for every reader error. */
static bx_status st_err(const bx_st_file *f, bx_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static bx_status st_err(const bx_st_file *f, bx_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    bx__verror(s, fmt, ap);
    va_end(ap);
    bx__error_prefix("safetensors '%s'", f->label);
    return s;
}

void bx_st_close(bx_st_file *f) {
    if (!f) return;
    for (int i = 0; i < f->n; i++) bx__free(f->e[i].copy);
    bx__free(f->e);
    bx__free(f->byname);
    bx__free(f->meta_key);
    bx__free(f->meta_val);
    if (f->root) json_decref(f->root);
    if (f->mapped && f->base) munmap((void *)f->base, f->len);
    bx__free(f->label);
    bx__free(f);
}

static int cmp_offset(const void *a, const void *b) {
    const st_entry *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return x->order - y->order;
}

static int cmp_name(const void *a, const void *b) {
    const st_entry *const *x = a, *const *y = b;
    return strcmp((*x)->name, (*y)->name);
}

/* Reads a JSON integer >= 0 into *v; false if it is not one. */
static bool json_uint(const json_t *j, uint64_t *v) {
    if (!json_is_integer(j)) return false;
    json_int_t x = json_integer_value(j);
    if (x < 0) return false;
    *v = (uint64_t)x;
    return true;
}

static bx_status parse_metadata(bx_st_file *f, json_t *meta) {
    if (!json_is_object(meta))
        return st_err(f, BX_ERR_FORMAT, "__metadata__ is not a JSON object (rule: metadata is an object of strings)");
    size_t n = json_object_size(meta);
    if (n == 0) return BX_OK;
    f->meta_key = bx__malloc(n * sizeof *f->meta_key);
    f->meta_val = bx__malloc(n * sizeof *f->meta_val);
    if (!f->meta_key || !f->meta_val) return BX_ERR_NOMEM;
    const char *k;
    json_t *v;
    json_object_foreach(meta, k, v) {
        if (!json_is_string(v))
            return st_err(f, BX_ERR_FORMAT,
                          "__metadata__ value of '%s' is not a string (rule: metadata is an object of strings)", k);
        f->meta_key[f->nmeta] = k;
        f->meta_val[f->nmeta] = json_string_value(v);
        f->nmeta++;
    }
    return BX_OK;
}

/* Checks one tensor entry of the header (everything but its place among the others). */
static bx_status parse_entry(bx_st_file *f, const char *name, json_t *v, uint64_t data_len, st_entry *e) {
    memset(e, 0, sizeof *e);
    e->name = name;
    if (!json_is_object(v))
        return st_err(f, BX_ERR_FORMAT, "tensor '%s': entry is not a JSON object (rule: tensor entry)", name);
    const char *k;
    json_t *x;
    json_object_foreach(v, k, x) {
        if (strcmp(k, "dtype") && strcmp(k, "shape") && strcmp(k, "data_offsets"))
            return st_err(f, BX_ERR_FORMAT, "tensor '%s': unknown field '%s' (rule: tensor entry has dtype, shape, data_offsets)",
                          name, k);
    }
    json_t *jd = json_object_get(v, "dtype"), *js = json_object_get(v, "shape"),
           *jo = json_object_get(v, "data_offsets");
    if (!jd || !js || !jo)
        return st_err(f, BX_ERR_FORMAT, "tensor '%s': missing '%s' (rule: tensor entry has dtype, shape, data_offsets)",
                      name, !jd ? "dtype" : !js ? "shape" : "data_offsets");
    if (!json_is_string(jd)) return st_err(f, BX_ERR_FORMAT, "tensor '%s': dtype is not a string (rule: dtype)", name);
    e->dt = st_find_dtype(json_string_value(jd));
    if (!e->dt)
        return st_err(f, BX_ERR_FORMAT, "tensor '%s': unknown dtype '%s' (rule: dtype)", name, json_string_value(jd));
    if (e->dt->bx < 0) e->unsupported = "dtype not supported by Blixt";

    if (!json_is_array(js)) return st_err(f, BX_ERR_FORMAT, "tensor '%s': shape is not an array (rule: shape)", name);
    size_t nd = json_array_size(js);
    uint64_t numel = 1;
    bool overflow = false;
    for (size_t i = 0; i < nd; i++) {
        uint64_t d;
        if (!json_uint(json_array_get(js, i), &d))
            return st_err(f, BX_ERR_FORMAT,
                          "tensor '%s': shape entry %zu is not a non-negative integer (rule: shape)", name, i);
        if (d != 0 && numel > UINT64_MAX / d) overflow = true;
        else numel *= d;
        if (i < BX_MAX_DIMS) e->shape[i] = (int64_t)d;
    }
    if (nd > BX_MAX_DIMS) e->unsupported = "more dimensions than Blixt supports (8)";
    e->ndim = nd > BX_MAX_DIMS ? BX_MAX_DIMS : (int)nd;

    if (!json_is_array(jo) || json_array_size(jo) != 2 || !json_uint(json_array_get(jo, 0), &e->begin) ||
        !json_uint(json_array_get(jo, 1), &e->end))
        return st_err(f, BX_ERR_FORMAT,
                      "tensor '%s': data_offsets is not a pair of non-negative integers (rule: data_offsets)", name);
    if (e->begin > e->end)
        return st_err(f, BX_ERR_FORMAT, "tensor '%s': data_offsets [%llu,%llu] begin > end (rule: data_offsets)", name,
                      (unsigned long long)e->begin, (unsigned long long)e->end);
    if (e->end > data_len)
        return st_err(f, BX_ERR_FORMAT,
                      "tensor '%s': data_offsets [%llu,%llu] beyond the data section of %llu bytes (rule: offsets in bounds)",
                      name, (unsigned long long)e->begin, (unsigned long long)e->end, (unsigned long long)data_len);
    if (overflow || (e->dt->size && numel > UINT64_MAX / e->dt->size) || numel * e->dt->size != e->end - e->begin) {
        char sh[128];
        size_t pos = (size_t)snprintf(sh, sizeof sh, "(");
        for (size_t i = 0; i < nd && pos < sizeof sh; i++)
            pos += (size_t)snprintf(sh + pos, sizeof sh - pos, i ? ",%lld" : "%lld",
                                    (long long)json_integer_value(json_array_get(js, i)));
        if (pos < sizeof sh) snprintf(sh + pos, sizeof sh - pos, ")");
        char need[32];
        if (overflow || numel > UINT64_MAX / e->dt->size) snprintf(need, sizeof need, "more than 2^64");
        else snprintf(need, sizeof need, "%llu", (unsigned long long)(numel * e->dt->size));
        return st_err(f, BX_ERR_FORMAT,
                      "tensor '%s': shape %s of %s needs %s bytes but data_offsets [%llu,%llu] hold %llu "
                      "(rule: shape x dtype size = byte length)",
                      name, sh, e->dt->name, need, (unsigned long long)e->begin, (unsigned long long)e->end,
                      (unsigned long long)(e->end - e->begin));
    }
    return BX_OK;
}

/* Builds the views once the whole layout is known to be valid. */
static bx_status make_views(bx_st_file *f, const uint8_t *data) {
    for (int i = 0; i < f->n; i++) {
        st_entry *e = &f->e[i];
        if (e->unsupported) continue;
        bx__set_shape(&e->t, (bx_dtype)e->dt->bx, e->ndim, e->shape);
        const uint8_t *p = data + e->begin;
        size_t bytes = (size_t)(e->end - e->begin);
        if ((uintptr_t)p % e->dt->size != 0) {
            e->copy = bx__malloc(bytes ? bytes : 1);
            if (!e->copy) return BX_ERR_NOMEM;
            memcpy(e->copy, p, bytes);
            p = e->copy;
        }
        e->t.data = (void *)p; /* read-only: the mapping is PROT_READ */
        e->t.device = BX_CPU;
        e->t.flags = 0;
    }
    return BX_OK;
}

/* The duplicate key as jansson quotes it ("... near '"a"'"), for the message. */
static void dup_name(const char *text, char *out, size_t n) {
    const char *p = strstr(text, "near '");
    if (!p) {
        bx__strlcpy(out, "?", n);
        return;
    }
    p += 6;
    const char *q = strrchr(p, '\'');
    size_t len = q && q > p ? (size_t)(q - p) : strlen(p);
    if (len >= n) len = n - 1;
    memcpy(out, p, len);
    out[len] = '\0';
}

static bx_status st_parse(bx_st_file *f) {
    if (f->len < 8)
        return st_err(f, BX_ERR_FORMAT, "file is %zu bytes, shorter than the 8-byte header length (rule: header length)",
                      f->len);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | f->base[i];
    if (hlen > ST_MAX_HEADER)
        return st_err(f, BX_ERR_FORMAT, "header length %llu is absurd (limit %llu) (rule: header length)",
                      (unsigned long long)hlen, (unsigned long long)ST_MAX_HEADER);
    if (hlen > f->len - 8)
        return st_err(f, BX_ERR_FORMAT,
                      "header length %llu goes beyond the end of the file (%zu bytes) (rule: header length)",
                      (unsigned long long)hlen, f->len);
    const char *hdr = (const char *)f->base + 8;
    uint64_t data_len = f->len - 8 - hlen;
    const uint8_t *data = f->base + 8 + hlen;

    json_error_t jerr;
    f->root = json_loadb(hdr, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!f->root) {
        if (json_error_code(&jerr) == json_error_duplicate_key) {
            char nm[256];
            dup_name(jerr.text, nm, sizeof nm);
            return st_err(f, BX_ERR_FORMAT, "duplicate name %s in the header (rule: no duplicate names)", nm);
        }
        return st_err(f, BX_ERR_FORMAT, "header is not valid JSON at byte %d: %s (rule: header is a JSON object)",
                      jerr.position, jerr.text);
    }
    if (!json_is_object(f->root))
        return st_err(f, BX_ERR_FORMAT, "header is not a JSON object (rule: header is a JSON object)");

    size_t cap = json_object_size(f->root);
    f->e = bx__calloc((cap ? cap : 1) * sizeof *f->e);
    f->byname = bx__malloc((cap ? cap : 1) * sizeof *f->byname);
    if (!f->e || !f->byname) return BX_ERR_NOMEM;
    const char *k;
    json_t *v;
    json_object_foreach(f->root, k, v) {
        bx_status s;
        if (strcmp(k, "__metadata__") == 0) {
            s = parse_metadata(f, v);
        } else {
            s = parse_entry(f, k, v, data_len, &f->e[f->n]);
            f->e[f->n].order = f->n;
            f->n++;
        }
        if (s != BX_OK) return s;
    }

    /* ranges sorted by offset must tile [0, data_len) exactly */
    qsort(f->e, (size_t)f->n, sizeof *f->e, cmp_offset);
    uint64_t pos = 0;
    for (int i = 0; i < f->n; i++) {
        const st_entry *e = &f->e[i];
        if (e->begin < pos)
            return st_err(f, BX_ERR_FORMAT,
                          "tensor '%s': data_offsets [%llu,%llu] overlap tensor '%s' ending at %llu (rule: no overlapping ranges)",
                          e->name, (unsigned long long)e->begin, (unsigned long long)e->end, f->e[i - 1].name,
                          (unsigned long long)pos);
        if (e->begin > pos)
            return st_err(f, BX_ERR_FORMAT,
                          "tensor '%s': data_offsets [%llu,%llu] leave a gap of %llu bytes after offset %llu (rule: no gaps)",
                          e->name, (unsigned long long)e->begin, (unsigned long long)e->end,
                          (unsigned long long)(e->begin - pos), (unsigned long long)pos);
        pos = e->end;
    }
    if (pos != data_len)
        return st_err(f, BX_ERR_FORMAT,
                      "%llu trailing bytes after the last tensor (data section %llu bytes, tensors cover %llu) "
                      "(rule: tensors cover the whole data section)",
                      (unsigned long long)(data_len - pos), (unsigned long long)data_len, (unsigned long long)pos);

    for (int i = 0; i < f->n; i++) f->byname[i] = &f->e[i];
    qsort(f->byname, (size_t)f->n, sizeof *f->byname, cmp_name);
    return make_views(f, data);
}

static bx_status st_new(const char *label, bx_st_file **out) {
    *out = NULL;
    bx_st_file *f = bx__calloc(sizeof *f);
    if (!f) return BX_ERR_NOMEM;
    f->label = bx__strdup(label);
    if (!f->label) {
        bx__free(f);
        return BX_ERR_NOMEM;
    }
    *out = f;
    return BX_OK;
}

bx_status bx_st_open_memory(const void *buf, size_t len, const char *label, bx_st_file **out) {
    if (!out) return bx__error(BX_ERR_INVALID, "safetensors: NULL output pointer");
    *out = NULL;
    if (!buf && len) return bx__error(BX_ERR_INVALID, "safetensors '%s': NULL buffer", label ? label : "<memory>");
    bx_st_file *f;
    bx_status s = st_new(label ? label : "<memory>", &f);
    if (s != BX_OK) return s;
    f->base = buf;
    f->len = len;
    s = st_parse(f);
    if (s != BX_OK) {
        bx_st_close(f);
        return s;
    }
    *out = f;
    return BX_OK;
}

bx_status bx_st_open(const char *path, bx_st_file **out) {
    if (!out) return bx__error(BX_ERR_INVALID, "safetensors: NULL output pointer");
    *out = NULL;
    if (!path) return bx__error(BX_ERR_INVALID, "safetensors: NULL path");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return bx__error(BX_ERR_IO, "safetensors '%s': cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return bx__error(BX_ERR_IO, "safetensors '%s': cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return bx__error(BX_ERR_IO, "safetensors '%s': %s", path,
                         S_ISDIR(sb.st_mode) ? "is a folder, not a file" : "not a regular file");
    }
    bx_st_file *f;
    bx_status s = st_new(path, &f);
    if (s != BX_OK) {
        close(fd);
        return s;
    }
    f->len = (size_t)sb.st_size;
    if (f->len > 0) {
        void *p = mmap(NULL, f->len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            int e = errno;
            close(fd);
            bx_st_close(f);
            return bx__error(BX_ERR_IO, "safetensors '%s': cannot map %zu bytes: %s", path, (size_t)sb.st_size,
                             strerror(e));
        }
        f->base = p;
        f->mapped = true;
    }
    close(fd);
    s = st_parse(f);
    if (s != BX_OK) {
        bx_st_close(f);
        return s;
    }
    *out = f;
    return BX_OK;
}

int bx_st_count(const bx_st_file *f) { return f ? f->n : 0; }

void bx__st_data_section(const bx_st_file *f, const void **data, size_t *len) {
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | f->base[i];
    *data = f->base + 8 + hlen; /* st_parse checked 8 + hlen <= len */
    *len = (size_t)(f->len - 8 - hlen);
}

const char *bx_st_name(const bx_st_file *f, int i) {
    return f && i >= 0 && i < f->n ? f->e[i].name : NULL;
}

static const bx_tensor *entry_tensor(const bx_st_file *f, const st_entry *e) {
    if (e->unsupported) {
        st_err(f, BX_ERR_UNSUPPORTED, "tensor '%s' (%s): %s", e->name, e->dt->name, e->unsupported);
        return NULL;
    }
    return &e->t;
}

const bx_tensor *bx_st_get(const bx_st_file *f, const char *name) {
    if (!f || !name) {
        bx__error(BX_ERR_INVALID, "safetensors: NULL file or name");
        return NULL;
    }
    st_entry key, *kp = &key;
    key.name = name;
    st_entry **hit = f->n ? bsearch(&kp, f->byname, (size_t)f->n, sizeof *f->byname, cmp_name) : NULL;
    if (!hit) {
        st_err(f, BX_ERR_NOT_FOUND, "no tensor '%s'", name);
        return NULL;
    }
    return entry_tensor(f, *hit);
}

const bx_tensor *bx_st_get_index(const bx_st_file *f, int i) {
    if (!f || i < 0 || i >= f->n) {
        bx__error(BX_ERR_NOT_FOUND, "safetensors: no tensor at index %d", i);
        return NULL;
    }
    return entry_tensor(f, &f->e[i]);
}

const char *bx_st_metadata(const bx_st_file *f, const char *key) {
    if (!f || !key) return NULL;
    for (int i = 0; i < f->nmeta; i++)
        if (strcmp(f->meta_key[i], key) == 0) return f->meta_val[i];
    return NULL;
}

int bx_st_metadata_count(const bx_st_file *f) { return f ? f->nmeta : 0; }

const char *bx_st_metadata_key(const bx_st_file *f, int i) {
    return f && i >= 0 && i < f->nmeta ? f->meta_key[i] : NULL;
}

/* ---- writer ---------------------------------------------------------------- */

typedef struct st_witem {
    char *name;
    const bx_tensor *t;
} st_witem;

struct bx_st_writer {
    st_witem *items;
    int n, cap;
    char **meta; /* key, value pairs */
    int nmeta, capmeta;
};

bx_st_writer *bx_st_writer_new(void) { return bx__calloc(sizeof(bx_st_writer)); }

void bx_st_writer_free(bx_st_writer *w) {
    if (!w) return;
    for (int i = 0; i < w->n; i++) bx__free(w->items[i].name);
    for (int i = 0; i < 2 * w->nmeta; i++) bx__free(w->meta[i]);
    bx__free(w->items);
    bx__free(w->meta);
    bx__free(w);
}

static bool valid_utf8(const char *s) {
    json_t *j = json_string(s); /* NULL on invalid UTF-8 */
    if (!j) return false;
    json_decref(j);
    return true;
}

bx_status bx_st_writer_add(bx_st_writer *w, const char *name, const bx_tensor *t) {
    if (!w || !name || !t) return bx__error(BX_ERR_INVALID, "safetensors writer: NULL writer, name or tensor");
    if (!name[0]) return bx__error(BX_ERR_INVALID, "safetensors writer: empty tensor name");
    if (strcmp(name, "__metadata__") == 0)
        return bx__error(BX_ERR_INVALID, "safetensors writer: '__metadata__' is reserved, not a tensor name");
    if (!valid_utf8(name)) return bx__error(BX_ERR_INVALID, "safetensors writer: tensor name is not valid UTF-8");
    if (t->flags & BX_TF_POISON)
        return bx__error(BX_ERR_INVALID, "safetensors writer: tensor '%s' is poison (result of a failed op)", name);
    if (t->device != BX_CPU)
        return bx__error(BX_ERR_INVALID, "safetensors writer: tensor '%s' is not on the CPU", name);
    if (bx_dtype_size(t->dtype) == 0 || t->ndim < 0 || t->ndim > BX_MAX_DIMS)
        return bx__error(BX_ERR_INVALID, "safetensors writer: tensor '%s' has a bad dtype or ndim", name);
    for (int i = 0; i < w->n; i++)
        if (strcmp(w->items[i].name, name) == 0)
            return bx__error(BX_ERR_INVALID, "safetensors writer: duplicate tensor name '%s'", name);
    if (w->n == w->cap) {
        int nc = w->cap ? 2 * w->cap : 16;
        st_witem *ni = bx__realloc(w->items, (size_t)nc * sizeof *ni);
        if (!ni) return BX_ERR_NOMEM;
        w->items = ni;
        w->cap = nc;
    }
    char *nm = bx__strdup(name);
    if (!nm) return BX_ERR_NOMEM;
    w->items[w->n].name = nm;
    w->items[w->n].t = t;
    w->n++;
    return BX_OK;
}

bx_status bx_st_writer_meta(bx_st_writer *w, const char *key, const char *value) {
    if (!w || !key || !value) return bx__error(BX_ERR_INVALID, "safetensors writer: NULL metadata key or value");
    if (!valid_utf8(key) || !valid_utf8(value))
        return bx__error(BX_ERR_INVALID, "safetensors writer: metadata '%s' is not valid UTF-8", key);
    for (int i = 0; i < w->nmeta; i++) {
        if (strcmp(w->meta[2 * i], key) == 0) { /* replace */
            char *v = bx__strdup(value);
            if (!v) return BX_ERR_NOMEM;
            bx__free(w->meta[2 * i + 1]);
            w->meta[2 * i + 1] = v;
            return BX_OK;
        }
    }
    if (w->nmeta == w->capmeta) {
        int nc = w->capmeta ? 2 * w->capmeta : 8;
        char **nm = bx__realloc(w->meta, (size_t)nc * 2 * sizeof *nm);
        if (!nm) return BX_ERR_NOMEM;
        w->meta = nm;
        w->capmeta = nc;
    }
    char *k = bx__strdup(key), *v = bx__strdup(value);
    if (!k || !v) {
        bx__free(k);
        bx__free(v);
        return BX_ERR_NOMEM;
    }
    w->meta[2 * w->nmeta] = k;
    w->meta[2 * w->nmeta + 1] = v;
    w->nmeta++;
    return BX_OK;
}

/* Builds the padded header text for `order` (indices into w->items); the
 * caller frees it with free() (jansson's allocator). */
static bx_status build_header(const bx_st_writer *w, const int *order, char **out, size_t *out_len) {
    json_t *root = json_object();
    if (!root) return bx__error(BX_ERR_NOMEM, "safetensors writer: out of memory building the header");
    bool ok = true;
    if (w->nmeta) {
        json_t *m = json_object();
        ok = m && json_object_set_new(root, "__metadata__", m) == 0;
        for (int i = 0; ok && i < w->nmeta; i++)
            ok = json_object_set_new(m, w->meta[2 * i], json_string(w->meta[2 * i + 1])) == 0;
    }
    uint64_t off = 0;
    for (int k = 0; ok && k < w->n; k++) {
        const bx_tensor *t = w->items[order[k]].t;
        uint64_t bytes = (uint64_t)bx_numel(t) * bx_dtype_size(t->dtype);
        json_t *e = json_object();
        json_t *shape = json_array();
        json_t *offs = json_pack("[II]", (json_int_t)off, (json_int_t)(off + bytes));
        ok = e && shape && offs;
        for (int d = 0; ok && d < t->ndim; d++) ok = json_array_append_new(shape, json_integer(t->shape[d])) == 0;
        ok = ok && json_object_set_new(e, "dtype", json_string(bx_dtype_st_name(t->dtype))) == 0;
        ok = ok && json_object_set(e, "shape", shape) == 0 && json_object_set(e, "data_offsets", offs) == 0;
        ok = ok && json_object_set(root, w->items[order[k]].name, e) == 0;
        json_decref(shape); /* NULL-safe; the object keeps its own references */
        json_decref(offs);
        json_decref(e);
        off += bytes;
    }
    char *text = ok ? json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(root);
    if (!text) return bx__error(BX_ERR_NOMEM, "safetensors writer: out of memory building the header");
    size_t len = strlen(text), padded = (len + 7) & ~(size_t)7;
    char *p = realloc(text, padded + 1);
    if (!p) {
        free(text);
        return bx__error(BX_ERR_NOMEM, "safetensors writer: out of memory building the header");
    }
    memset(p + len, ' ', padded - len);
    p[padded] = '\0';
    *out = p;
    *out_len = padded;
    return BX_OK;
}

static bool write_all(int fd, const void *buf, size_t n) {
    const char *p = buf;
    while (n > 0) {
        ssize_t k = write(fd, p, n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n);
        if (k < 0) {
            if (errno == EINTR) continue;
            return false;
        }
        p += k;
        n -= (size_t)k;
    }
    return true;
}

/* Opens a new, unique temp file next to `path`; fills tmp. -1 + errno on failure. */
static int open_temp(const char *path, char *tmp, size_t n) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    unsigned long long salt = (unsigned long long)ts.tv_nsec ^ ((unsigned long long)ts.tv_sec << 20) ^
                              (unsigned long long)(uintptr_t)tmp;
    for (int attempt = 0; attempt < 100; attempt++) {
        int len = snprintf(tmp, n, "%s.tmp-%ld-%llx", path, (long)getpid(),
                           (salt + (unsigned long long)attempt * 0x9E3779B97F4A7C15ull) & 0xffffffffffull);
        if (len < 0 || (size_t)len >= n) {
            errno = ENAMETOOLONG;
            return -1;
        }
        int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd >= 0 || errno != EEXIST) return fd;
    }
    return -1;
}

/* fsync of the folder holding `path`, so the rename itself is durable. */
static int sync_folder(const char *path) {
    char dir[4096];
    bx__strlcpy(dir, path, sizeof dir);
    char *slash = strrchr(dir, '/');
    if (!slash) bx__strlcpy(dir, ".", sizeof dir);
    else if (slash == dir) dir[1] = '\0';
    else *slash = '\0';
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    int r = fsync(fd);
    /* some file systems cannot sync a folder (EINVAL): the rename still happened */
    if (r != 0 && (errno == EINVAL || errno == ENOTSUP)) r = 0;
    close(fd);
    return r;
}

/* Writes the file; with crc_key, a CRC32 of the data section (continued from
 * seed) is computed while writing and patched into the placeholder value of
 * that metadata key before the fsync (see io_int.h). */
static bx_status st_write(bx_st_writer *w, const char *path, const char *crc_key, uint32_t seed) {
    if (!w || !path || !path[0]) return bx__error(BX_ERR_INVALID, "safetensors writer: NULL writer or empty path");
    char crc_pat[128];
    if (crc_key) {
        if (!crc_key[0] || strlen(crc_key) > 100 || strpbrk(crc_key, "\"\\"))
            return bx__error(BX_ERR_INVALID, "safetensors writer: bad CRC metadata key");
        snprintf(crc_pat, sizeof crc_pat, "\"%s\":\"00000000\"", crc_key);
        bx_status ms = bx_st_writer_meta(w, crc_key, "00000000");
        if (ms != BX_OK) return ms;
    }
    /* layout: 8-byte dtypes, then 4, then 1; insertion order within a class */
    int *order = bx__malloc((size_t)(w->n ? w->n : 1) * sizeof *order);
    if (!order) return BX_ERR_NOMEM;
    int k = 0;
    for (size_t sz = 8; sz >= 1; sz /= 2)
        for (int i = 0; i < w->n; i++)
            if (bx_dtype_size(w->items[i].t->dtype) == sz) order[k++] = i;
    char *hdr = NULL;
    size_t hlen = 0;
    bx_status s = build_header(w, order, &hdr, &hlen);
    if (s != BX_OK) {
        bx__free(order);
        return s;
    }

    /* where the CRC placeholder sits in the header (the compact JSON has no
     * spaces; quotes inside strings are escaped, so the pattern is unique) */
    size_t crc_pos = 0;
    if (crc_key) {
        const char *hit = NULL;
        size_t plen = strlen(crc_pat);
        for (size_t i = 0; !hit && i + plen <= hlen; i++)
            if (hdr[i] == '"' && memcmp(hdr + i, crc_pat, plen) == 0) hit = hdr + i;
        if (!hit) {
            free(hdr);
            bx__free(order);
            return bx__error(BX_ERR_INVALID, "safetensors '%s': CRC placeholder not found in the header", path);
        }
        crc_pos = 8 + (size_t)(hit - hdr) + strlen(crc_pat) - 9;
    }
    uLong crc = seed;

    char tmp[4200];
    int fd = open_temp(path, tmp, sizeof tmp);
    if (fd < 0) {
        s = bx__error(BX_ERR_IO, "safetensors '%s': cannot create a temp file in its folder: %s", path,
                      strerror(errno));
        free(hdr);
        bx__free(order);
        return s;
    }
    uint8_t lenbuf[8];
    for (int i = 0; i < 8; i++) lenbuf[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
    const char *what = "write";
    bool ok = write_all(fd, lenbuf, 8) && write_all(fd, hdr, hlen);
    for (int i = 0; ok && i < w->n; i++) {
        const bx_tensor *t = w->items[order[i]].t;
        size_t bytes = (size_t)bx_numel(t) * bx_dtype_size(t->dtype);
        if (bytes == 0) continue;
        if (bx_is_contiguous(t)) {
            ok = write_all(fd, t->data, bytes);
            if (crc_key) crc = crc32_z(crc, t->data, bytes);
        } else {
            bx_tensor *c = bx_tensor_clone(t);
            if (!c) {
                s = BX_ERR_NOMEM;
                ok = false;
                break;
            }
            ok = write_all(fd, c->data, bytes);
            if (crc_key) crc = crc32_z(crc, c->data, bytes);
            bx_tensor_free(c);
        }
    }
    int err = errno;
    if (ok && crc_key) {
        char hex[9];
        snprintf(hex, sizeof hex, "%08lx", (unsigned long)(crc & 0xffffffffu));
        ssize_t nw;
        do nw = pwrite(fd, hex, 8, (off_t)crc_pos);
        while (nw < 0 && errno == EINTR);
        if (nw != 8) {
            ok = false;
            err = nw < 0 ? errno : EIO;
            what = "checksum patch";
        }
    }
    if (ok && fsync(fd) != 0) {
        ok = false;
        err = errno;
        what = "fsync";
    }
    if (close(fd) != 0 && ok) {
        ok = false;
        err = errno;
        what = "close";
    }
    if (ok && rename(tmp, path) != 0) {
        ok = false;
        err = errno;
        what = "rename over the target";
    }
    free(hdr);
    bx__free(order);
    if (!ok) {
        unlink(tmp);
        if (s == BX_ERR_NOMEM) {
            bx__error_prefix("safetensors '%s'", path);
            return s;
        }
        return bx__error(BX_ERR_IO, "safetensors '%s': %s of the temp file failed: %s (target left unchanged)", path,
                         what, strerror(err));
    }
    if (sync_folder(path) != 0)
        return bx__error(BX_ERR_IO, "safetensors '%s': written, but syncing its folder failed: %s", path,
                         strerror(errno));
    return BX_OK;
}

bx_status bx_st_writer_write(bx_st_writer *w, const char *path) { return st_write(w, path, NULL, 0); }

bx_status bx__st_writer_write_crc(bx_st_writer *w, const char *path, const char *crc_key, uint32_t seed) {
    if (!crc_key) return bx__error(BX_ERR_INVALID, "safetensors writer: NULL CRC metadata key");
    return st_write(w, path, crc_key, seed);
}
