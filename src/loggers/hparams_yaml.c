/* hparams_yaml.c - hparams.yaml as Lightning 1.9 writes it: PyYAML 6's
 * yaml.dump(dict) (sort_keys=True, block style, indent 2, plain scalars
 * unless the text would read back as another type or holds indicators,
 * then 'single quotes', "double quotes" for control/non-ASCII text).
 * Keys that are empty, multi-line or 123+ characters are complex ("? key",
 * ": value"); long text is folded past column 80 as PyYAML does. */
#include "io/state_int.h"
#include "loggers/loggers_int.h"

#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { STYLE_PLAIN, STYLE_SINGLE, STYLE_DOUBLE } yaml_style;

/* PyYAML's implicit resolvers (YAML 1.1): a plain scalar matching one of
 * these would read back as bool/int/float/null/timestamp/merge/value. */
static const char *const RESOLVERS[] = {
    "^(yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF)$",
    "^([-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+"
    "|[-+]?[1-9][0-9_]*(:[0-5]?[0-9])+)$",
    "^([-+]?[0-9][0-9_]*\\.[0-9_]*([eE][-+][0-9]+)?|\\.[0-9][0-9_]*([eE][-+][0-9]+)?"
    "|[-+]?[0-9][0-9_]*(:[0-5]?[0-9])+\\.[0-9_]*|[-+]?\\.(inf|Inf|INF)|\\.(nan|NaN|NAN))$",
    "^(~|null|Null|NULL)$",
    "^([0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]|[0-9][0-9][0-9][0-9]-[0-9][0-9]?-[0-9][0-9]?"
    "([Tt]|[ \t]+)[0-9][0-9]?:[0-9][0-9]:[0-9][0-9](\\.[0-9]*)?"
    "([ \t]*(Z|[-+][0-9][0-9]?(:[0-9][0-9])?))?)$",
    "^(<<|=)$",
};

static bool resolves_to_other(const char *s) {
    for (size_t i = 0; i < sizeof RESOLVERS / sizeof RESOLVERS[0]; i++) {
        regex_t re;
        if (regcomp(&re, RESOLVERS[i], REG_EXTENDED | REG_NOSUB) != 0) continue;
        int m = regexec(&re, s, 0, NULL, 0);
        regfree(&re);
        if (m == 0) return true;
    }
    return false;
}

static bool is_ws(char c) { return c == '\0' || c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

/* PyYAML's analyze_scalar + choose_scalar_style for block context. */
static yaml_style choose_style(const char *s) {
    size_t n = strlen(s);
    if (n == 0) return STYLE_SINGLE;
    bool flow_ind = false, block_ind = false, line_breaks = false, special = false;
    bool lead_space = false, trail_space = false, lead_break = false, trail_break = false;
    bool break_space = false, space_break = false, prev_space = false, prev_break = false;
    if (!strncmp(s, "---", 3) || !strncmp(s, "...", 3)) flow_ind = block_ind = true;
    bool preceded_ws = true;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        bool followed_ws = i + 1 >= n || is_ws(s[i + 1]);
        if (i == 0) {
            if (strchr("#,[]{}&*!|>'\"%@`", ch)) flow_ind = block_ind = true;
            if (ch == '?' || ch == ':') {
                flow_ind = true;
                if (followed_ws) block_ind = true;
            }
            if (ch == '-' && followed_ws) flow_ind = block_ind = true;
        } else {
            if (strchr(",?[]{}", ch)) flow_ind = true;
            if (ch == ':') {
                flow_ind = true;
                if (followed_ws) block_ind = true;
            }
            if (ch == '#' && preceded_ws) flow_ind = block_ind = true;
        }
        unsigned char u = (unsigned char)ch;
        if (ch == '\n') line_breaks = true;
        if (!(ch == '\n' || (u >= 0x20 && u <= 0x7e))) special = true; /* allow_unicode=False */
        if (ch == ' ') {
            if (i == 0) lead_space = true;
            if (i == n - 1) trail_space = true;
            if (prev_break) break_space = true;
            prev_space = true;
            prev_break = false;
        } else if (ch == '\n') {
            if (i == 0) lead_break = true;
            if (i == n - 1) trail_break = true;
            if (prev_space) space_break = true;
            prev_space = false;
            prev_break = true;
        } else {
            prev_space = prev_break = false;
        }
        preceded_ws = is_ws(ch);
    }
    (void)flow_ind;
    bool allow_plain = true, allow_single = true;
    if (lead_space || lead_break || trail_space || trail_break) allow_plain = false;
    if (break_space) allow_plain = allow_single = false;
    if (space_break || special) allow_plain = allow_single = false;
    if (line_breaks) allow_plain = false;
    if (block_ind) allow_plain = false;
    if (allow_plain && !resolves_to_other(s)) return STYLE_PLAIN;
    if (allow_single) return STYLE_SINGLE;
    return STYLE_DOUBLE;
}

/* Decodes one UTF-8 sequence; returns its length (1 for invalid bytes). */
static int utf8_next(const unsigned char *p, uint32_t *cp) {
    if (p[0] < 0x80) {
        *cp = p[0];
        return 1;
    }
    int len = (p[0] & 0xe0) == 0xc0 ? 2 : (p[0] & 0xf0) == 0xe0 ? 3 : (p[0] & 0xf8) == 0xf0 ? 4 : 1;
    if (len == 1) {
        *cp = p[0];
        return 1;
    }
    uint32_t v = p[0] & (0xff >> (len + 1));
    for (int i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80) {
            *cp = p[0];
            return 1;
        }
        v = (v << 6) | (p[i] & 0x3f);
    }
    *cp = v;
    return len;
}

static size_t column(const bx__sbuf *b);
static void line_break_indent(bx__sbuf *b, int cont_indent);

static void put_escape(bx__sbuf *b, uint32_t c) {
    const char *esc = NULL;
    switch (c) {
    case 0x00: esc = "0"; break;
    case 0x07: esc = "a"; break;
    case 0x08: esc = "b"; break;
    case 0x09: esc = "t"; break;
    case 0x0a: esc = "n"; break;
    case 0x0b: esc = "v"; break;
    case 0x0c: esc = "f"; break;
    case 0x0d: esc = "r"; break;
    case 0x1b: esc = "e"; break;
    case '"': esc = "\""; break;
    case '\\': esc = "\\"; break;
    case 0x85: esc = "N"; break;
    case 0xa0: esc = "_"; break;
    case 0x2028: esc = "L"; break;
    case 0x2029: esc = "P"; break;
    default: break;
    }
    if (esc) {
        bx__sb_putc(b, '\\');
        bx__sb_puts(b, esc);
    } else if (c <= 0xff) {
        bx__sb_printf(b, "\\x%02X", (unsigned)c);
    } else if (c <= 0xffff) {
        bx__sb_printf(b, "\\u%04X", (unsigned)c);
    } else {
        bx__sb_printf(b, "\\U%08X", (unsigned)c);
    }
}

/* PyYAML's write_double_quoted (allow_unicode=False: everything outside
 * printable ASCII escaped), folding with a trailing backslash past column 80. */
static void write_double_quoted(bx__sbuf *b, const char *s, int cont_indent, bool split) {
    size_t len = strlen(s), n = 0;
    uint32_t *cp = bx__malloc((len + 1) * sizeof *cp);
    if (!cp) {
        b->oom = true;
        return;
    }
    for (const unsigned char *p = (const unsigned char *)s; *p;) p += utf8_next(p, &cp[n++]);
    bx__sb_putc(b, '"');
    size_t start = 0;
    for (size_t end = 0; end <= n; end++) {
        bool none = end == n;
        uint32_t ch = none ? 0 : cp[end];
        if (none || ch == '"' || ch == '\\' || ch == 0x85 || ch == 0x2028 || ch == 0x2029 ||
            ch == 0xfeff || ch < 0x20 || ch > 0x7e) {
            for (; start < end; start++) bx__sb_putc(b, (char)cp[start]);
            if (!none) {
                put_escape(b, ch);
                start = end + 1;
            }
        }
        if (end > 0 && end + 1 < n && (ch == ' ' || start >= end) &&
            column(b) + (end > start ? end - start : 0) > 80 && split) {
            for (; start < end; start++) bx__sb_putc(b, (char)cp[start]);
            bx__sb_putc(b, '\\');
            line_break_indent(b, cont_indent);
            if (cp[start] == ' ') bx__sb_putc(b, '\\');
        }
    }
    bx__sb_putc(b, '"');
    bx__free(cp);
}

/* Column of the buffer's end (characters since the last line break). */
static size_t column(const bx__sbuf *b) {
    size_t i = b->n;
    while (i > 0 && b->p[i - 1] != '\n') i--;
    return b->n - i;
}

static void line_break_indent(bx__sbuf *b, int cont_indent) {
    bx__sb_putc(b, '\n');
    for (int i = 0; i < cont_indent; i++) bx__sb_putc(b, ' ');
}

/* PyYAML's write_plain / write_single_quoted: a single space between words
 * becomes a line break + the continuation indent once the line is past
 * column 80 (best_width; not in keys, not at the ends of quoted text). In
 * single quotes ' is doubled and a run of line breaks is written with one
 * more break than it has (a lone break would read back as a space). */
static void write_folded(bx__sbuf *b, const char *s, int cont_indent, bool split, bool quoted) {
    size_t n = strlen(s), i = 0;
    if (quoted) bx__sb_putc(b, '\'');
    while (i < n) {
        size_t j = i;
        if (s[i] == ' ') {
            while (j < n && s[j] == ' ') j++;
            bool ends = quoted && (i == 0 || j == n);
            if (j - i == 1 && split && !ends && column(b) > 80) line_break_indent(b, cont_indent);
            else bx__sb_put(b, s + i, j - i);
        } else if (s[i] == '\n') {
            while (j < n && s[j] == '\n') j++;
            bx__sb_putc(b, '\n');
            for (size_t k = i; k < j; k++) bx__sb_putc(b, '\n');
            for (int k = 0; k < cont_indent; k++) bx__sb_putc(b, ' ');
        } else {
            while (j < n && s[j] != ' ' && s[j] != '\n') {
                if (quoted && s[j] == '\'') bx__sb_putc(b, '\'');
                bx__sb_putc(b, s[j++]);
            }
        }
        i = j;
    }
    if (quoted) bx__sb_putc(b, '\'');
}

static void write_str(bx__sbuf *b, const char *s, int cont_indent, bool split) {
    switch (choose_style(s)) {
    case STYLE_PLAIN: write_folded(b, s, cont_indent, split, false); break;
    case STYLE_SINGLE: write_folded(b, s, cont_indent, split, true); break;
    case STYLE_DOUBLE: write_double_quoted(b, s, cont_indent, split); break;
    }
}

/* PyYAML's represent_float. */
static void write_float(bx__sbuf *b, double v) {
    if (isnan(v)) {
        bx__sb_puts(b, ".nan");
        return;
    }
    if (isinf(v)) {
        bx__sb_puts(b, v > 0 ? ".inf" : "-.inf");
        return;
    }
    char num[40];
    bx__fmt_double(num, v);
    char *e = strchr(num, 'e');
    if (e && !strchr(num, '.')) {
        char tail[32];
        bx__strlcpy(tail, e, sizeof tail);
        snprintf(e, sizeof num - (size_t)(e - num), ".0%s", tail);
    }
    bx__sb_puts(b, num);
}

static bool is_collection(const bx_state *v) {
    bx_state_type t = bx_state_typeof(v);
    return (t == BX_STATE_DICT || t == BX_STATE_LIST) && bx_state_len(v) > 0;
}

static void write_scalar(bx__sbuf *b, const bx_state *v, int cont_indent) {
    switch (bx_state_typeof(v)) {
    case BX_STATE_NULL: bx__sb_puts(b, "null"); break;
    case BX_STATE_BOOL: bx__sb_puts(b, bx_state_get_bool(v) ? "true" : "false"); break;
    case BX_STATE_INT: bx__sb_printf(b, "%lld", (long long)bx_state_get_int(v)); break;
    case BX_STATE_FLOAT: write_float(b, bx_state_get_float(v)); break;
    case BX_STATE_STRING: write_str(b, bx_state_get_string(v), cont_indent, true); break;
    case BX_STATE_LIST: bx__sb_puts(b, "[]"); break;
    case BX_STATE_DICT: bx__sb_puts(b, "{}"); break;
    case BX_STATE_TENSOR: bx__sb_puts(b, "null"); break; /* filtered out before */
    }
}

static void indent(bx__sbuf *b, int n) {
    for (int i = 0; i < n; i++) bx__sb_putc(b, ' ');
}

static void emit_seq(bx__sbuf *b, const bx_state *l, int ind, bool inline_first);

/* PyYAML's check_simple_key: len("!!str") + characters < 128, not empty,
 * one line. */
static bool simple_key(const char *k) {
    size_t chars = 0;
    for (const unsigned char *p = (const unsigned char *)k; *p; p++) chars += (*p & 0xc0) != 0x80;
    return chars > 0 && chars + 5 < 128 && !strchr(k, '\n');
}

static int cmp_keys(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void emit_map(bx__sbuf *b, const bx_state *d, int ind, bool inline_first) {
    size_t n = bx_state_len(d);
    const char **keys = bx__malloc((n ? n : 1) * sizeof *keys);
    if (!keys) {
        b->oom = true;
        return;
    }
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (bx_state_typeof(bx_state_value_at(d, i)) == BX_STATE_TENSOR) {
            bx_logf(BX_LOG_WARNING,
                    "Skipping '%s' parameter because it is not possible to safely dump to YAML.",
                    bx_state_key_at(d, i));
            continue;
        }
        keys[m++] = bx_state_key_at(d, i);
    }
    qsort(keys, m, sizeof *keys, cmp_keys); /* sort_keys=True (UTF-8 = code point order) */
    for (size_t i = 0; i < m; i++) {
        const bx_state *v = bx_state_get(d, keys[i]);
        if (i > 0 || !inline_first) indent(b, ind);
        if (!simple_key(keys[i])) { /* "? key" / ": value", value inline after ": " */
            bx__sb_puts(b, "? ");
            write_str(b, keys[i], ind + 2, true);
            bx__sb_putc(b, '\n');
            indent(b, ind);
            bx__sb_putc(b, ':');
            if (!is_collection(v)) {
                bx__sb_putc(b, ' ');
                write_scalar(b, v, ind + 2);
                bx__sb_putc(b, '\n');
            } else if (bx_state_typeof(v) == BX_STATE_DICT) {
                bx__sb_putc(b, ' ');
                emit_map(b, v, ind + 2, true);
            } else {
                bx__sb_putc(b, ' ');
                emit_seq(b, v, ind + 2, true);
            }
            continue;
        }
        write_str(b, keys[i], ind + 2, false); /* simple keys are never split */
        bx__sb_putc(b, ':');
        if (!is_collection(v)) {
            bx__sb_putc(b, ' ');
            write_scalar(b, v, ind + 2);
            bx__sb_putc(b, '\n');
        } else if (bx_state_typeof(v) == BX_STATE_DICT) {
            bx__sb_putc(b, '\n');
            emit_map(b, v, ind + 2, false);
        } else {
            bx__sb_putc(b, '\n');
            emit_seq(b, v, ind, false); /* PyYAML's indentless sequence in a mapping */
        }
    }
    if (m == 0) { /* every entry was skipped: an empty mapping */
        if (!inline_first) indent(b, ind);
        bx__sb_puts(b, "{}\n");
    }
    bx__free(keys);
}

static void emit_seq(bx__sbuf *b, const bx_state *l, int ind, bool inline_first) {
    size_t n = bx_state_len(l);
    for (size_t i = 0; i < n; i++) {
        const bx_state *v = bx_state_at(l, i);
        if (i > 0 || !inline_first) indent(b, ind);
        bx__sb_puts(b, "- ");
        if (!is_collection(v)) {
            write_scalar(b, v, ind + 2);
            bx__sb_putc(b, '\n');
        } else if (bx_state_typeof(v) == BX_STATE_DICT) {
            emit_map(b, v, ind + 2, true);
        } else {
            emit_seq(b, v, ind + 2, true);
        }
    }
}

void bx__yaml_dump(bx__sbuf *b, const bx_state *dict) {
    if (!dict || bx_state_len(dict) == 0) {
        bx__sb_puts(b, "{}\n");
        return;
    }
    emit_map(b, dict, 0, false);
}

bx_status bx__yaml_write_file(const char *path, const bx_state *dict) {
    bx__sbuf b = {0};
    bx__yaml_dump(&b, dict);
    bx_status s = bx__sb_write_file(&b, path, "logger hparams.yaml");
    bx__sb_free(&b);
    return s;
}

bx_status bx__hparams_update(bx_state *dst, const bx_state *params) {
    if (!params) return BX_OK;
    if (bx_state_typeof(params) != BX_STATE_DICT)
        return bx__error(BX_ERR_INVALID, "logger log_hyperparams: params is %s, expected a dict",
                         bx__state_type_desc(bx_state_typeof(params)));
    for (size_t i = 0; i < bx_state_len(params); i++) {
        bx_state *c = bx_state_copy(bx_state_value_at(params, i));
        if (!c) return BX_ERR_NOMEM;
        bx_status s = bx_state_set(dst, bx_state_key_at(params, i), c);
        if (s != BX_OK) return s;
    }
    return BX_OK;
}
