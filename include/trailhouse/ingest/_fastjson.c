/*
 * trailhouse.ingest._fastjson: CloudTrail delivery files straight into Arrow column buffers.
 *
 * The pure-Python path (records.record_to_row) creates a Python object for every field of
 * every record; this module walks the JSON text once and appends each column value to a
 * growing Arrow buffer instead, so a batch of files becomes one set of columns without a
 * Python object per field.
 *
 * It only does what it can do exactly. The Python side keeps the rules; this file mirrors
 * them for the common shapes and hands back everything else:
 *   - a whole file it does not accept (invalid JSON or UTF-8, an unexpected envelope, a
 *     \u escape of a surrogate, nesting deeper than MAX_DEPTH counted from the file's outer
 *     object, a top-level key given twice, a number that may be beyond a double or msgspec's
 *     4300-digit integers) -> add() returns None and the caller uses
 *     records.decode_envelope/record_to_row, which also gives the error message;
 *   - a record whose row needs a conversion (a number in a string column, "true" in a bool
 *     column, a non-canonical time, a missing or sha256:-looking eventID, a duplicated known
 *     key, a key with escapes) -> its index is returned and the caller converts that record
 *     with record_to_row.
 * For every record it accepts, the columns plus extra_fields are exactly those of
 * record_to_row (tests/include/ingest/test_fastjson.py checks this record by record).
 *
 * extra_fields follows records._strip: a value no column holds exactly is kept as its raw
 * JSON text; a nested object from which nothing moved is kept whole (also when it arrived
 * empty); one emptied by the columns is dropped.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h> /* baseline on x86-64; other CPUs take the 8-byte path */
#endif

/* records.MAX_DEPTH: objects and arrays in one another, the file's outer object being 1 */
#define MAX_DEPTH 100
/* top-level keys compared for duplicates; a file with more goes to Python, which compares all */
#define MAX_TOP_KEYS 16
/* msgspec decodes integers of up to 4300 digits (Python's int/str limit) */
#define MAX_INT_DIGITS 4300
#define MAX_COLUMNS 64

enum { K_STR = 0, K_BOOL = 1, K_MFA = 2, K_TIME = 3, K_JSON = 4 };
/* strings (and JSON text) have offsets; bools are bitmaps; times are int64 microseconds */
#define HAS_OFFSETS(kind) ((kind) == K_STR || (kind) == K_JSON)
enum { ST_OK = 0, ST_IRREGULAR = 1, ST_BAD = -1, ST_NOMEM = -2 };

/* ---------------------------------------------------------------- buffers */

typedef struct {
    char *p;
    size_t len, cap;
} Buf;

static int buf_grow(Buf *b, size_t extra) {
    size_t need = b->len + extra;
    if (need <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < need) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

static inline int buf_put(Buf *b, const char *s, size_t n) {
    if (n == 0) return 0; /* memcpy must not see the NULL of a buffer never grown */
    if (b->len + n > b->cap && buf_grow(b, n)) return -1;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    return 0;
}

static inline int buf_byte(Buf *b, char c) {
    if (b->len + 1 > b->cap && buf_grow(b, 1)) return -1;
    b->p[b->len++] = c;
    return 0;
}

static void buf_free(Buf *b) {
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

/* ------------------------------------------------------------- the spec */

typedef struct Node Node;
typedef struct {
    char *name;
    size_t len;
    int col;     /* column index, or -1 for a nested object */
    Node *child; /* the nested object's keys when col == -1 */
} Entry;

struct Node {
    int n;
    Entry *e;
};

static void node_free(Node *node) {
    if (!node) return;
    for (int i = 0; i < node->n; i++) {
        PyMem_Free(node->e[i].name);
        node_free(node->e[i].child);
    }
    PyMem_Free(node->e);
    PyMem_Free(node);
}

/* spec: {"key": column index (int) | {nested spec}} */
static Node *node_from_dict(PyObject *spec, int ncols) {
    if (!PyDict_Check(spec) || PyDict_GET_SIZE(spec) > 64) {
        PyErr_SetString(PyExc_TypeError, "spec must be a dict of at most 64 keys per level");
        return NULL;
    }
    Node *node = PyMem_Calloc(1, sizeof(Node));
    if (!node) return (Node *)PyErr_NoMemory();
    node->e = PyMem_Calloc(PyDict_GET_SIZE(spec) + 1, sizeof(Entry));
    if (!node->e) {
        PyMem_Free(node);
        return (Node *)PyErr_NoMemory();
    }
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    while (PyDict_Next(spec, &pos, &key, &value)) {
        Py_ssize_t len;
        const char *s = PyUnicode_AsUTF8AndSize(key, &len);
        if (!s) goto fail;
        Entry *e = &node->e[node->n++];
        e->name = PyMem_Malloc(len + 1);
        if (!e->name) {
            PyErr_NoMemory();
            goto fail;
        }
        memcpy(e->name, s, len + 1);
        e->len = (size_t)len;
        if (PyLong_Check(value)) {
            long col = PyLong_AsLong(value);
            if (col < 0 || col >= ncols) {
                PyErr_SetString(PyExc_ValueError, "column index out of range");
                goto fail;
            }
            e->col = (int)col;
        } else {
            e->col = -1;
            e->child = node_from_dict(value, ncols);
            if (!e->child) goto fail;
        }
    }
    return node;
fail:
    node_free(node);
    return NULL;
}

static inline int node_find(const Node *node, const char *s, size_t len) {
    for (int i = 0; i < node->n; i++) {
        const Entry *e = &node->e[i];
        if (e->len == len && (len == 0 || (e->name[0] == s[0] && memcmp(e->name, s, len) == 0))) return i;
    }
    return -1;
}

/* -------------------------------------------------------------- columns */

typedef struct {
    int kind;
    Buf data;    /* strings: the UTF-8 bytes; bools: one byte (0/1) per row; times: int64 per row */
    Buf offsets; /* strings: int64 offsets, rows + 1 of them */
    Buf valid;   /* one byte (0/1) per row; packed into a bitmap by finish() */
} Column;

/* Where the current record's value of a column is: in the text, or in the scratch buffer
   (an unescaped string). Committed to the column only when the whole record is regular. */
typedef struct {
    const char *ptr;
    size_t len;
    size_t scratch_off;
    int64_t micros; /* a time column's value: microseconds since the epoch, UTC */
    char in_scratch;
    char boolean;
} Slot;

/* The lengths of a column's buffers: where to cut them back to. */
typedef struct {
    size_t data, offsets, valid;
} Mark;

typedef struct {
    PyObject_HEAD
    Node *root;
    int ncols; /* source columns; extra_fields is column ncols */
    Column cols[MAX_COLUMNS + 1];
    Slot slots[MAX_COLUMNS];
    uint64_t set; /* bit i: column i has a value in the current record */
    int event_id_col;
    Buf scratch; /* unescaped strings of the current record */
    Buf extras;  /* extra_fields of the current record, without the braces */
    int64_t rows;
    /* the state before the last add() that took rows, for undo() */
    Mark undo_marks[MAX_COLUMNS + 1];
    int64_t undo_rows;
    int can_undo;
} Builder;

/* ---------------------------------------------------------------- parsing */

typedef struct {
    const char *p, *end;
    int depth;
} Cur;

static inline void ws(Cur *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\n' || *c->p == '\r' || *c->p == '\t')) c->p++;
}

static inline int hexval(char ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

static int hex4(const char *p) {
    int v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(p[i]);
        if (h < 0) return -1;
        v = v * 16 + h;
    }
    return v;
}

/* A string at c->p ('"'): its content span (without the quotes) and whether it holds
   escapes. Rejects what JSON rejects; a lone surrogate escape sends the file to Python. */
/* Whether any of 8 bytes is '"', '\\' or a control character (< 0x20): the bytes a string
   scan must stop at. Exact for "any" (the borrow can only add hits after a real one). */
static inline int special8(uint64_t v) {
#define ONES 0x0101010101010101ULL
#define HIGH 0x8080808080808080ULL
    uint64_t q = v ^ (ONES * '"'), b = v ^ (ONES * '\\');
    return (((q - ONES) & ~q) | ((b - ONES) & ~b) | ((v - ONES * 0x20) & ~v)) & HIGH ? 1 : 0;
#undef ONES
#undef HIGH
}

static int scan_string(Cur *c, const char **start, size_t *len, int *escaped) {
    const char *p = c->p + 1, *end = c->end;
    *escaped = 0;
    while (p < end) {
        uint64_t w;
#ifdef __SSE2__
        const __m128i quote = _mm_set1_epi8('"'), backslash = _mm_set1_epi8('\\'), ctl = _mm_set1_epi8(0x1F);
        while (p + 16 <= end) { /* sixteen plain bytes at a time */
            __m128i v = _mm_loadu_si128((const __m128i *)p);
            __m128i hit = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash)),
                                       _mm_cmpeq_epi8(_mm_max_epu8(v, ctl), ctl)); /* v <= 0x1F, unsigned */
            int mask = _mm_movemask_epi8(hit);
            if (mask) {
                p += __builtin_ctz(mask);
                break;
            }
            p += 16;
        }
#endif
        while (p + 8 <= end) { /* eight plain bytes at a time */
            memcpy(&w, p, 8);
            if (special8(w)) break;
            p += 8;
        }
        if (p >= end) break;
        unsigned char ch = (unsigned char)*p;
        if (ch == '"') {
            *start = c->p + 1;
            *len = (size_t)(p - *start);
            c->p = p + 1;
            return ST_OK;
        }
        if (ch < 0x20) return ST_BAD;
        if (ch == '\\') {
            *escaped = 1;
            if (p + 1 >= end) return ST_BAD;
            char e = p[1];
            if (e == 'u') {
                if (p + 6 > end) return ST_BAD;
                int v = hex4(p + 2);
                if (v < 0 || (v >= 0xDC00 && v <= 0xDFFF)) return ST_BAD; /* a lone low surrogate */
                if (v >= 0xD800 && v <= 0xDBFF) {
                    /* a high surrogate must be followed by an escaped low one */
                    if (p + 12 > end || p[6] != '\\' || p[7] != 'u') return ST_BAD;
                    int lo = hex4(p + 8);
                    if (lo < 0xDC00 || lo > 0xDFFF) return ST_BAD;
                    p += 6;
                }
                p += 6;
                continue;
            }
            if (!strchr("\"\\/bfnrt", e) || e == 0) return ST_BAD;
            p += 2;
            continue;
        }
        p++;
    }
    return ST_BAD;
}

/* Unescape a string span scanned by scan_string (surrogates come in pairs: checked there). */
static int unescape(Buf *out, const char *s, size_t len) {
    const char *p = s, *end = s + len;
    while (p < end) {
        const char *q = p;
        while (q < end && *q != '\\') q++;
        if (buf_put(out, p, (size_t)(q - p))) return ST_NOMEM;
        if (q >= end) break;
        char e = q[1], ch;
        if (e == 'u') {
            int v = hex4(q + 2);
            char u[4];
            size_t n;
            if (v >= 0xD800 && v <= 0xDBFF) { /* a pair, checked by scan_string */
                v = 0x10000 + ((v - 0xD800) << 10) + (hex4(q + 8) - 0xDC00);
                q += 6;
            }
            if (v >= 0x10000) {
                u[0] = (char)(0xF0 | (v >> 18));
                u[1] = (char)(0x80 | ((v >> 12) & 0x3F));
                u[2] = (char)(0x80 | ((v >> 6) & 0x3F));
                u[3] = (char)(0x80 | (v & 0x3F));
                n = 4;
            } else if (v < 0x80) {
                u[0] = (char)v;
                n = 1;
            } else if (v < 0x800) {
                u[0] = (char)(0xC0 | (v >> 6));
                u[1] = (char)(0x80 | (v & 0x3F));
                n = 2;
            } else {
                u[0] = (char)(0xE0 | (v >> 12));
                u[1] = (char)(0x80 | ((v >> 6) & 0x3F));
                u[2] = (char)(0x80 | (v & 0x3F));
                n = 3;
            }
            if (buf_put(out, u, n)) return ST_NOMEM;
            p = q + 6;
            continue;
        }
        switch (e) {
            case 'b': ch = '\b'; break;
            case 'f': ch = '\f'; break;
            case 'n': ch = '\n'; break;
            case 'r': ch = '\r'; break;
            case 't': ch = '\t'; break;
            default: ch = e; break; /* " \ / */
        }
        if (buf_byte(out, ch)) return ST_NOMEM;
        p = q + 2;
    }
    return ST_OK;
}

/* After an item of an object or array (c->p past it): 1 if a ',' follows (consumed, with
   the white space after it), 0 if `close` does (consumed), ST_BAD otherwise. */
static int next_item(Cur *c, char close) {
    ws(c);
    if (c->p < c->end && *c->p == ',') {
        c->p++;
        ws(c);
        return 1;
    }
    if (c->p < c->end && *c->p == close) {
        c->p++;
        return 0;
    }
    return ST_BAD;
}

/* Whether the number [s, end), whose first significant digit is at 10^308, may be past DBL_MAX
   (1.7976931348623157e308, its shortest form): its significant digits compared with those.
   No strtod: it would follow the process's locale. */
static int past_dbl_max(const char *s, const char *end) {
    static const char max[] = "17976931348623157";
    int n = 0, started = 0;
    for (; s < end && *s != 'e' && *s != 'E'; s++) {
        if (*s < '0' || *s > '9') continue; /* the sign and the point */
        if (!started && *s == '0') continue;
        started = 1;
        if (n < 17) {
            if (*s != max[n]) return *s > max[n];
            n++;
        } else if (*s != '0') {
            return 1;
        }
    }
    return 0;
}

/* Also ST_BAD for a number msgspec may refuse ("out of range"): an integer of more than
   MAX_INT_DIGITS digits, or a fraction/exponent form whose magnitude may pass DBL_MAX
   (~1.8e308). Conservative: Python decides exactly (records.decode_envelope). */
static int skip_number(Cur *c) {
    const char *p = c->p, *end = c->end;
    int64_t int_digits = 0, lead_zeros = 0, exp = 0;
    int is_float = 0, nonzero = 0; /* nonzero: the mantissa has a digit other than 0 */
    if (p < end && *p == '-') p++;
    if (p >= end) return ST_BAD;
    if (*p == '0') {
        p++;
    } else if (*p >= '1' && *p <= '9') {
        const char *q = p;
        while (p < end && *p >= '0' && *p <= '9') p++;
        int_digits = p - q;
        nonzero = 1;
    } else {
        return ST_BAD;
    }
    if (p < end && *p == '.') {
        is_float = 1;
        p++;
        if (p >= end || *p < '0' || *p > '9') return ST_BAD;
        const char *q = p;
        while (p < end && *p == '0') p++;
        lead_zeros = p - q;
        if (p < end && *p >= '1' && *p <= '9') nonzero = 1;
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        int neg = 0;
        is_float = 1;
        p++;
        if (p < end && (*p == '+' || *p == '-')) neg = *p++ == '-';
        if (p >= end || *p < '0' || *p > '9') return ST_BAD;
        while (p < end && *p >= '0' && *p <= '9') {
            if (exp < 1000000) exp = exp * 10 + (*p - '0'); /* saturates: only its size matters */
            p++;
        }
        if (neg) exp = -exp;
    }
    if (!is_float && int_digits > MAX_INT_DIGITS) return ST_BAD;
    if (is_float && nonzero) {
        /* the decimal exponent of the first significant digit: from 309 on always past DBL_MAX,
           at 308 past it or not (past_dbl_max says) */
        int64_t e10 = (int_digits ? int_digits - 1 : -lead_zeros - 1) + exp;
        if (e10 > 308) return ST_BAD;
        if (e10 == 308 && past_dbl_max(c->p, p)) return ST_BAD;
    }
    c->p = p;
    return ST_OK;
}

static int skip_value(Cur *c);

static int skip_container(Cur *c, char close) {
    if (++c->depth > MAX_DEPTH) return ST_BAD;
    c->p++;
    ws(c);
    if (c->p < c->end && *c->p == close) {
        c->p++;
        c->depth--;
        return ST_OK;
    }
    for (;;) {
        if (close == '}') {
            const char *s;
            size_t n;
            int esc;
            if (c->p >= c->end || *c->p != '"' || scan_string(c, &s, &n, &esc)) return ST_BAD;
            ws(c);
            if (c->p >= c->end || *c->p != ':') return ST_BAD;
            c->p++;
            ws(c);
        }
        if (skip_value(c)) return ST_BAD;
        int more = next_item(c, close);
        if (more == 1) continue;
        if (more) return ST_BAD;
        c->depth--;
        return ST_OK;
    }
}

/* Validate and step over one value; c->p at its first byte. */
static int skip_value(Cur *c) {
    if (c->p >= c->end) return ST_BAD;
    switch (*c->p) {
        case '{': return skip_container(c, '}');
        case '[': return skip_container(c, ']');
        case '"': {
            const char *s;
            size_t n;
            int esc;
            return scan_string(c, &s, &n, &esc);
        }
        case 't':
            if (c->end - c->p >= 4 && memcmp(c->p, "true", 4) == 0) { c->p += 4; return ST_OK; }
            return ST_BAD;
        case 'f':
            if (c->end - c->p >= 5 && memcmp(c->p, "false", 5) == 0) { c->p += 5; return ST_OK; }
            return ST_BAD;
        case 'n':
            if (c->end - c->p >= 4 && memcmp(c->p, "null", 4) == 0) { c->p += 4; return ST_OK; }
            return ST_BAD;
        default: return skip_number(c);
    }
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, int m, int d) {
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* 2026-11-27T13:13:13Z, and a real date and time (what records._valid_time accepts); its
   microseconds since the epoch into *micros. */
static int canonical_time(const char *s, size_t n, int64_t *micros) {
    static const char *pat = "dddd-dd-ddTdd:dd:ddZ";
    if (n != 20) return 0;
    for (int i = 0; i < 20; i++) {
        if (pat[i] == 'd') {
            if (s[i] < '0' || s[i] > '9') return 0;
        } else if (s[i] != pat[i]) {
            return 0;
        }
    }
#define D2(i) ((s[i] - '0') * 10 + (s[i + 1] - '0'))
    int year = D2(0) * 100 + D2(2), month = D2(5), day = D2(8);
    int hour = D2(11), minute = D2(14), second = D2(17);
#undef D2
    if (year < 1 || month < 1 || month > 12 || day < 1) return 0;
    if (hour > 23 || minute > 59 || second > 59) return 0;
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    if (day > mdays[month - 1] + (month == 2 && leap)) return 0;
    *micros = ((days_from_civil(year, month, day) * 86400) + hour * 3600 + minute * 60 + second) * 1000000LL;
    return 1;
}

/* Emit `"key":<raw value>` (a comma first unless it is the first item) into the extras. */
static int emit(Builder *b, int *items, const char *key, size_t keylen, const char *val, size_t vallen) {
    if ((*items)++ && buf_byte(&b->extras, ',')) return ST_NOMEM;
    if (buf_byte(&b->extras, '"') || buf_put(&b->extras, key, keylen) || buf_put(&b->extras, "\":", 2) ||
        buf_put(&b->extras, val, vallen))
        return ST_NOMEM;
    return ST_OK;
}

/* The value of a column key, at c->p. Either it goes to the column (exactly), or it is
   kept in the extras (the column stays null), or the record is irregular. */
static int take_column(Builder *b, Cur *c, int col, int *moved, int *items, const char *key, size_t keylen) {
    const char *v0 = c->p;
    Column *column = &b->cols[col];
    Slot *slot = &b->slots[col];
    if (b->set & ((uint64_t)1 << col)) return ST_IRREGULAR; /* a known key twice */
    char first = *v0;
    if (column->kind == K_JSON) {
        if (skip_value(c)) return ST_BAD;
        size_t n = (size_t)(c->p - v0);
        if (first == 'n') return emit(b, items, key, keylen, v0, n); /* null: in extras */
        slot->ptr = v0;
        slot->len = n;
        slot->in_scratch = 0;
    } else if (first == '"') {
        const char *s;
        size_t n;
        int esc;
        if (scan_string(c, &s, &n, &esc)) return ST_BAD;
        if (column->kind == K_BOOL) return ST_IRREGULAR; /* "true" in a bool column: converted */
        if (column->kind == K_MFA) {
            if (esc) return ST_IRREGULAR;
            if (n == 4 && memcmp(s, "true", 4) == 0) slot->boolean = 1;
            else if (n == 5 && memcmp(s, "false", 5) == 0) slot->boolean = 0;
            else return emit(b, items, key, keylen, v0, (size_t)(c->p - v0)); /* any other text */
        } else if (esc) {
            if (column->kind == K_TIME) return ST_IRREGULAR;
            slot->scratch_off = b->scratch.len;
            if (unescape(&b->scratch, s, n)) return ST_NOMEM;
            slot->len = b->scratch.len - slot->scratch_off;
            slot->in_scratch = 1;
        } else {
            if (column->kind == K_TIME && !canonical_time(s, n, &slot->micros)) return ST_IRREGULAR;
            slot->ptr = s;
            slot->len = n;
            slot->in_scratch = 0;
        }
    } else if (first == 't' || first == 'f') {
        if (skip_value(c)) return ST_BAD;
        if (column->kind == K_MFA) return ST_IRREGULAR; /* a JSON bool where "true" belongs */
        if (column->kind != K_BOOL) return emit(b, items, key, keylen, v0, (size_t)(c->p - v0));
        slot->boolean = first == 't';
    } else if (first == '-' || (first >= '0' && first <= '9')) {
        if (skip_number(c)) return ST_BAD;
        /* A number becomes text in a string column *and* stays in the extras: Python does it. */
        if (column->kind == K_STR) return ST_IRREGULAR;
        return emit(b, items, key, keylen, v0, (size_t)(c->p - v0));
    } else {
        /* null, an object or an array: no column value, kept as it came */
        if (skip_value(c)) return ST_BAD;
        return emit(b, items, key, keylen, v0, (size_t)(c->p - v0));
    }
    b->set |= (uint64_t)1 << col;
    *moved = 1;
    return ST_OK;
}

/* An object of the spec `node` at c->p ('{'). Its remaining content (what no column holds)
   is emitted into the extras as items; *moved: whether a column took any value from it. */
static int parse_object(Builder *b, Cur *c, const Node *node, int *moved, int *items) {
    uint64_t seen = 0;
    if (++c->depth > MAX_DEPTH) return ST_BAD;
    c->p++;
    ws(c);
    if (c->p < c->end && *c->p == '}') {
        c->p++;
        c->depth--;
        return ST_OK;
    }
    for (;;) {
        const char *key;
        size_t keylen;
        int esc, r;
        if (c->p >= c->end || *c->p != '"' || scan_string(c, &key, &keylen, &esc)) return ST_BAD;
        ws(c);
        if (c->p >= c->end || *c->p != ':') return ST_BAD;
        c->p++;
        ws(c);
        if (c->p >= c->end) return ST_BAD;
        if (esc) return ST_IRREGULAR; /* an escaped key may spell a known one */
        int i = node_find(node, key, keylen);
        if (i < 0) {
            const char *v0 = c->p;
            if (skip_value(c)) return ST_BAD;
            if ((r = emit(b, items, key, keylen, v0, (size_t)(c->p - v0)))) return r;
        } else {
            const Entry *e = &node->e[i];
            if (seen & ((uint64_t)1 << i)) return ST_IRREGULAR;
            seen |= (uint64_t)1 << i;
            if (e->col >= 0) {
                if ((r = take_column(b, c, e->col, moved, items, key, keylen))) return r;
            } else if (*c->p != '{') {
                const char *v0 = c->p;
                if (skip_value(c)) return ST_BAD;
                if ((r = emit(b, items, key, keylen, v0, (size_t)(c->p - v0)))) return r;
            } else {
                /* "key":{ ...remaining... } kept unless the columns emptied it */
                size_t mark = b->extras.len;
                int child_moved = 0, child_items = 0;
                if ((*items > 0 && buf_byte(&b->extras, ',')) || buf_byte(&b->extras, '"') ||
                    buf_put(&b->extras, key, keylen) || buf_put(&b->extras, "\":{", 3))
                    return ST_NOMEM;
                if ((r = parse_object(b, c, e->child, &child_moved, &child_items))) return r;
                if (buf_byte(&b->extras, '}')) return ST_NOMEM;
                if (child_moved && child_items == 0) {
                    b->extras.len = mark; /* emptied by the columns: dropped */
                } else {
                    (*items)++;
                }
                if (child_moved) *moved = 1;
            }
        }
        int more = next_item(c, '}');
        if (more == 1) continue;
        if (more) return ST_BAD;
        c->depth--;
        return ST_OK;
    }
}

/* ----------------------------------------------------------------- rows */

static int append_row(Builder *b) {
    for (int i = 0; i <= b->ncols; i++) {
        Column *col = &b->cols[i];
        int has;
        if (i == b->ncols) { /* extra_fields */
            has = b->extras.len > 0;
            if (has && (buf_byte(&col->data, '{') || buf_put(&col->data, b->extras.p, b->extras.len) ||
                        buf_byte(&col->data, '}')))
                return ST_NOMEM;
        } else {
            Slot *s = &b->slots[i];
            has = (b->set >> i) & 1;
            if (col->kind == K_BOOL || col->kind == K_MFA) {
                if (buf_byte(&col->data, has ? s->boolean : 0)) return ST_NOMEM;
            } else if (col->kind == K_TIME) {
                int64_t v = has ? s->micros : 0;
                if (buf_put(&col->data, (const char *)&v, sizeof v)) return ST_NOMEM;
            } else if (has) {
                const char *p = s->in_scratch ? b->scratch.p + s->scratch_off : s->ptr;
                if (buf_put(&col->data, p, s->len)) return ST_NOMEM;
            }
        }
        if (buf_byte(&col->valid, (char)has)) return ST_NOMEM;
        if (HAS_OFFSETS(col->kind)) {
            int64_t off = (int64_t)col->data.len;
            if (buf_put(&col->offsets, (const char *)&off, sizeof off)) return ST_NOMEM;
        }
    }
    b->rows++;
    return ST_OK;
}

/* One record at c->p ('{'): ST_OK (a row was appended), ST_IRREGULAR (c->p after it, no row),
   ST_BAD (the file goes to Python). */
static int parse_record(Builder *b, Cur *c) {
    const char *start = c->p;
    int depth = c->depth;
    int moved = 0, items = 0;
    b->set = 0;
    b->scratch.len = 0;
    b->extras.len = 0;
    int r = parse_object(b, c, b->root, &moved, &items);
    if (r == ST_OK && b->event_id_col >= 0) {
        /* no eventID, or one that looks derived: Python derives or keeps it */
        Slot *s = &b->slots[b->event_id_col];
        if (!((b->set >> b->event_id_col) & 1)) r = ST_IRREGULAR;
        else if (!s->in_scratch && s->len >= 7 && memcmp(s->ptr, "sha256:", 7) == 0) r = ST_IRREGULAR;
        else if (s->in_scratch && s->len >= 7 && memcmp(b->scratch.p + s->scratch_off, "sha256:", 7) == 0)
            r = ST_IRREGULAR;
    }
    if (r == ST_OK) return append_row(b);
    if (r == ST_IRREGULAR) {
        c->p = start;
        c->depth = depth;
        if (skip_value(c)) return ST_BAD;
        return ST_IRREGULAR;
    }
    return r;
}

static int utf8_valid(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        if (i + 8 <= n) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (!(w & 0x8080808080808080ULL)) {
                i += 8;
                continue;
            }
        }
        unsigned char ch = s[i];
        if (ch < 0x80) {
            i++;
        } else if (ch >= 0xC2 && ch <= 0xDF) {
            if (i + 1 >= n || (s[i + 1] & 0xC0) != 0x80) return 0;
            i += 2;
        } else if (ch >= 0xE0 && ch <= 0xEF) {
            if (i + 2 >= n || (s[i + 1] & 0xC0) != 0x80 || (s[i + 2] & 0xC0) != 0x80) return 0;
            if (ch == 0xE0 && s[i + 1] < 0xA0) return 0;  /* overlong */
            if (ch == 0xED && s[i + 1] > 0x9F) return 0;  /* surrogates */
            i += 3;
        } else if (ch >= 0xF0 && ch <= 0xF4) {
            if (i + 3 >= n || (s[i + 1] & 0xC0) != 0x80 || (s[i + 2] & 0xC0) != 0x80 || (s[i + 3] & 0xC0) != 0x80)
                return 0;
            if (ch == 0xF0 && s[i + 1] < 0x90) return 0;
            if (ch == 0xF4 && s[i + 1] > 0x8F) return 0;
            i += 4;
        } else {
            return 0;
        }
    }
    return 1;
}

/* -------------------------------------------------------------- the type */

static void builder_truncate(Builder *b, const Mark *marks, int64_t rows) {
    for (int i = 0; i <= b->ncols; i++) {
        b->cols[i].data.len = marks[i].data;
        b->cols[i].offsets.len = marks[i].offsets;
        b->cols[i].valid.len = marks[i].valid;
    }
    b->rows = rows;
}

static int builder_start_columns(Builder *b) {
    for (int i = 0; i <= b->ncols; i++) {
        Column *col = &b->cols[i];
        col->data.len = col->offsets.len = col->valid.len = 0;
        if (HAS_OFFSETS(col->kind)) {
            int64_t zero = 0;
            if (buf_put(&col->offsets, (const char *)&zero, sizeof zero)) return -1;
        }
    }
    b->rows = 0;
    b->can_undo = 0;
    return 0;
}

static void Builder_dealloc(Builder *b) {
    node_free(b->root);
    for (int i = 0; i <= MAX_COLUMNS; i++) {
        buf_free(&b->cols[i].data);
        buf_free(&b->cols[i].offsets);
        buf_free(&b->cols[i].valid);
    }
    buf_free(&b->scratch);
    buf_free(&b->extras);
    Py_TYPE(b)->tp_free((PyObject *)b);
}

static int Builder_init(Builder *b, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"spec", "kinds", "event_id_column", NULL};
    PyObject *spec, *kinds;
    int event_id_col = -1;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!O|i", kwlist, &PyDict_Type, &spec, &kinds, &event_id_col))
        return -1;
    PyObject *seq = PySequence_Fast(kinds, "kinds must be a sequence of ints");
    if (!seq) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n > MAX_COLUMNS) {
        Py_DECREF(seq);
        PyErr_Format(PyExc_ValueError, "at most %d columns", MAX_COLUMNS);
        return -1;
    }
    b->ncols = (int)n;
    for (Py_ssize_t i = 0; i < n; i++) {
        long k = PyLong_AsLong(PySequence_Fast_GET_ITEM(seq, i));
        if (k < K_STR || k > K_JSON) {
            Py_DECREF(seq);
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "unknown column kind");
            return -1;
        }
        b->cols[i].kind = (int)k;
    }
    Py_DECREF(seq);
    b->cols[n].kind = K_JSON;
    b->event_id_col = event_id_col;
    node_free(b->root);
    b->root = node_from_dict(spec, b->ncols);
    if (!b->root) return -1;
    if (builder_start_columns(b)) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}


typedef struct {
    int64_t *p;
    size_t len, cap;
} Indices;

static int indices_push(Indices *x, int64_t v) {
    if (x->len == x->cap) {
        size_t cap = x->cap ? x->cap * 2 : 64;
        int64_t *p = realloc(x->p, cap * sizeof *p);
        if (!p) return -1;
        x->p = p;
        x->cap = cap;
    }
    x->p[x->len++] = v;
    return 0;
}

/* The envelope {"Records": [...]} (other keys are ignored, as records.Envelope does).
   Runs without the GIL: touches no Python object. */
static int parse_file(Builder *b, const char *text, size_t len, Indices *left_out, int64_t *added) {
    Cur c = {text, text + len, 1}; /* the outer object is level 1 */
    int64_t index = 0;
    int seen_records = 0, r, nkeys = 0;
    const char *keys[MAX_TOP_KEYS];
    size_t keylens[MAX_TOP_KEYS];
    if (!utf8_valid((const unsigned char *)text, len)) return ST_BAD;
    ws(&c);
    if (c.p >= c.end || *c.p != '{') return ST_BAD;
    c.p++;
    ws(&c);
    for (;;) {
        const char *key;
        size_t keylen;
        int esc;
        if (c.p >= c.end || *c.p != '"' || scan_string(&c, &key, &keylen, &esc) || esc) return ST_BAD;
        /* a key given twice is refused by Python: which copy counts would be a guess */
        if (nkeys == MAX_TOP_KEYS) return ST_BAD;
        for (int k = 0; k < nkeys; k++)
            if (keylens[k] == keylen && memcmp(keys[k], key, keylen) == 0) return ST_BAD;
        keys[nkeys] = key;
        keylens[nkeys++] = keylen;
        ws(&c);
        if (c.p >= c.end || *c.p != ':') return ST_BAD;
        c.p++;
        ws(&c);
        if (keylen == 7 && memcmp(key, "Records", 7) == 0) {
            if (seen_records++ || c.p >= c.end || *c.p != '[') return ST_BAD;
            if (++c.depth > MAX_DEPTH) return ST_BAD; /* the Records array: level 2 */
            c.p++;
            ws(&c);
            if (c.p < c.end && *c.p == ']') {
                c.p++;
            } else {
                for (;;) {
                    if (c.p >= c.end || *c.p != '{') return ST_BAD;
                    r = parse_record(b, &c);
                    if (r == ST_IRREGULAR) {
                        if (indices_push(left_out, index)) return ST_NOMEM;
                    } else if (r != ST_OK) {
                        return r;
                    } else {
                        (*added)++;
                    }
                    index++;
                    int more = next_item(&c, ']');
                    if (more == 1) continue;
                    if (more) return ST_BAD;
                    break;
                }
            }
            c.depth--;
        } else if (skip_value(&c)) {
            return ST_BAD;
        }
        int more = next_item(&c, '}');
        if (more == 1) continue;
        if (more) return ST_BAD;
        break;
    }
    ws(&c);
    return c.p == c.end && seen_records ? ST_OK : ST_BAD;
}

PyDoc_STRVAR(add_doc,
"add(text) -> (rows added, [indices of records left out]) or None\n\n"
"Append the records of one decompressed delivery file. None: the file was not touched and\n"
"must go through the Python path (which also says why it is broken, if it is). The records\n"
"whose indices are returned were not added and must be converted by records.record_to_row.");

static PyObject *Builder_add(Builder *b, PyObject *arg) {
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE)) return NULL;
    Mark marks[MAX_COLUMNS + 1];
    for (int i = 0; i <= b->ncols; i++)
        marks[i] = (Mark){b->cols[i].data.len, b->cols[i].offsets.len, b->cols[i].valid.len};
    int64_t rows0 = b->rows, added = 0;
    Indices left_out = {NULL, 0, 0};
    int r;
    Py_BEGIN_ALLOW_THREADS
    r = parse_file(b, (const char *)view.buf, (size_t)view.len, &left_out, &added);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    PyObject *result = NULL, *list = NULL;
    b->can_undo = 0;
    if (r != ST_OK) {
        builder_truncate(b, marks, rows0);
        free(left_out.p);
        if (r == ST_NOMEM) return PyErr_NoMemory();
        Py_RETURN_NONE;
    }
    list = PyList_New((Py_ssize_t)left_out.len);
    if (list) {
        for (size_t i = 0; i < left_out.len; i++) {
            PyObject *v = PyLong_FromLongLong(left_out.p[i]);
            if (!v) {
                Py_CLEAR(list);
                break;
            }
            PyList_SET_ITEM(list, (Py_ssize_t)i, v);
        }
    }
    free(left_out.p);
    if (list) result = Py_BuildValue("(LN)", (long long)added, list);
    if (!result) {
        builder_truncate(b, marks, rows0);
        return NULL;
    }
    memcpy(b->undo_marks, marks, (size_t)(b->ncols + 1) * sizeof(Mark));
    b->undo_rows = rows0;
    b->can_undo = 1;
    return result;
}

PyDoc_STRVAR(undo_doc,
"undo() -> None\n\n"
"Drop the rows of the last add() (its file could not be loaded after all: one of the records\n"
"it left out failed in Python). Only once per add(), and not after finish().");

static PyObject *Builder_undo(Builder *b, PyObject *Py_UNUSED(ignored)) {
    if (!b->can_undo) {
        PyErr_SetString(PyExc_RuntimeError, "nothing to undo: undo() follows an add() that returned rows");
        return NULL;
    }
    builder_truncate(b, b->undo_marks, b->undo_rows);
    b->can_undo = 0;
    Py_RETURN_NONE;
}

/* The structure of any JSON text, for records.check_structure: how deep it nests, how many
   members its outer object has (0 if it is no object), and whether it holds a number that
   may be out of msgspec's range (skip_number's rule). One pass, no recursion, no validation:
   invalid JSON is left for the decoder to name. */
static void scan_structure(const char *p, const char *end, int64_t *max_depth, int64_t *members, int *big) {
    int64_t depth = 0;
    int object = 0;
    const char *q = p;
    while (q < end && (*q == ' ' || *q == '\n' || *q == '\r' || *q == '\t')) q++;
    object = q < end && *q == '{';
    while (p < end) {
        char ch = *p;
        if (ch == '"') {
            Cur c = {p, end, 0};
            const char *str;
            size_t n;
            int esc;
            if (scan_string(&c, &str, &n, &esc) == ST_OK) {
                p = c.p; /* sixteen bytes at a time */
            } else { /* invalid: step over it as a reader would */
                for (p++; p < end && *p != '"'; p++)
                    if (*p == '\\' && p + 1 < end) p++;
                if (p < end) p++;
            }
        } else if (ch == '{' || ch == '[') {
            if (++depth > *max_depth) *max_depth = depth;
            p++;
        } else if (ch == '}' || ch == ']') {
            if (depth > 0) depth--;
            p++;
        } else if (ch == ':') {
            if (depth == 1 && object) (*members)++;
            p++;
        } else if (ch == '-' || (ch >= '0' && ch <= '9')) {
            Cur c = {p, end, 0};
            if (skip_number(&c)) {
                *big = 1; /* or malformed: either way the exact decoder decides */
                p++;
                while (p < end && ((*p >= '0' && *p <= '9') || *p == '.' || *p == 'e' || *p == 'E' || *p == '+' ||
                                   *p == '-'))
                    p++;
            } else {
                p = c.p;
            }
        } else {
            p++;
        }
    }
}

PyDoc_STRVAR(scan_doc,
"scan(text) -> (max depth, members of the outer object, may hold a number out of range)\n\n"
"The structure of a JSON text in one pass without recursion (records.check_structure).");

static PyObject *fastjson_scan(PyObject *Py_UNUSED(module), PyObject *arg) {
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE)) return NULL;
    int64_t max_depth = 0, members = 0;
    int big = 0;
    Py_BEGIN_ALLOW_THREADS
    scan_structure((const char *)view.buf, (const char *)view.buf + view.len, &max_depth, &members, &big);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    return Py_BuildValue("(LLO)", (long long)max_depth, (long long)members, big ? Py_True : Py_False);
}

static PyMethodDef module_methods[] = {
    {"scan", (PyCFunction)fastjson_scan, METH_O, scan_doc},
    {NULL, NULL, 0, NULL},
};

static PyObject *bitmap(const Buf *bytes, int64_t rows, int *all_set) {
    PyObject *out = PyBytes_FromStringAndSize(NULL, (rows + 7) / 8);
    if (!out) return NULL;
    unsigned char *bits = (unsigned char *)PyBytes_AS_STRING(out);
    memset(bits, 0, (rows + 7) / 8);
    int all = 1;
    for (int64_t i = 0; i < rows; i++) {
        if (bytes->p[i]) bits[i >> 3] |= (unsigned char)(1u << (i & 7));
        else all = 0;
    }
    if (all_set) *all_set = all;
    return out;
}

PyDoc_STRVAR(finish_doc,
"finish() -> (rows, columns)\n\n"
"The rows added since the last finish(), as Arrow buffers per column (the source columns in\n"
"the order of `kinds`, then extra_fields): (validity bitmap or None, offsets, data) for\n"
"strings (int64 offsets: large_string), (validity bitmap or None, values bitmap) for bools,\n"
"(validity bitmap or None, int64 microseconds since the epoch, UTC) for times.\n"
"The builder starts empty again.");

static PyObject *Builder_finish(Builder *b, PyObject *Py_UNUSED(ignored)) {
    int64_t rows = b->rows;
    PyObject *columns = PyList_New(b->ncols + 1);
    if (!columns) return NULL;
    for (int i = 0; i <= b->ncols; i++) {
        Column *col = &b->cols[i];
        int all_set;
        PyObject *valid = bitmap(&col->valid, rows, &all_set), *item;
        if (!valid) goto error;
        if (all_set) {
            Py_DECREF(valid);
            valid = Py_NewRef(Py_None);
        }
        if (col->kind == K_TIME) {
            item = Py_BuildValue("(Ny#)", valid, col->data.p ? col->data.p : "", (Py_ssize_t)col->data.len);
        } else if (col->kind == K_BOOL || col->kind == K_MFA) {
            PyObject *values = bitmap(&col->data, rows, NULL);
            if (!values) {
                Py_DECREF(valid);
                goto error;
            }
            item = Py_BuildValue("(NN)", valid, values);
        } else {
            /* "" for a buffer never allocated: y# would give None for a NULL pointer */
            item = Py_BuildValue("(Ny#y#)", valid, col->offsets.p ? col->offsets.p : "", (Py_ssize_t)col->offsets.len,
                                 col->data.p ? col->data.p : "", (Py_ssize_t)col->data.len);
        }
        if (!item) goto error;
        PyList_SET_ITEM(columns, i, item);
    }
    if (builder_start_columns(b)) {
        PyErr_NoMemory();
        goto error;
    }
    return Py_BuildValue("(LN)", (long long)rows, columns);
error:
    Py_DECREF(columns);
    return NULL;
}

static PyObject *Builder_rows(Builder *b, void *Py_UNUSED(closure)) { return PyLong_FromLongLong(b->rows); }

static PyObject *Builder_nbytes(Builder *b, void *Py_UNUSED(closure)) {
    size_t n = 0;
    for (int i = 0; i <= b->ncols; i++) n += b->cols[i].data.len + b->cols[i].offsets.len + b->cols[i].valid.len;
    return PyLong_FromSize_t(n);
}

static PyMethodDef Builder_methods[] = {
    {"add", (PyCFunction)Builder_add, METH_O, add_doc},
    {"finish", (PyCFunction)Builder_finish, METH_NOARGS, finish_doc},
    {"undo", (PyCFunction)Builder_undo, METH_NOARGS, undo_doc},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Builder_getset[] = {
    {"rows", (getter)Builder_rows, NULL, "rows added since the last finish()", NULL},
    {"nbytes", (getter)Builder_nbytes, NULL, "bytes held in the column buffers", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject BuilderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "trailhouse.ingest._fastjson.Builder",
    .tp_doc = PyDoc_STR("Builder(spec, kinds, event_id_column=-1): delivery files to Arrow column buffers."),
    .tp_basicsize = sizeof(Builder),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Builder_init,
    .tp_dealloc = (destructor)Builder_dealloc,
    .tp_methods = Builder_methods,
    .tp_getset = Builder_getset,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "trailhouse.ingest._fastjson",
    "CloudTrail delivery files straight into Arrow column buffers (see records.py for the rules).", -1, module_methods,
};

PyMODINIT_FUNC PyInit__fastjson(void) {
    if (PyType_Ready(&BuilderType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    Py_INCREF(&BuilderType);
    if (PyModule_AddObject(m, "Builder", (PyObject *)&BuilderType) < 0) {
        Py_DECREF(&BuilderType);
        Py_DECREF(m);
        return NULL;
    }
    PyModule_AddIntConstant(m, "STR", K_STR);
    PyModule_AddIntConstant(m, "BOOL", K_BOOL);
    PyModule_AddIntConstant(m, "MFA", K_MFA);
    PyModule_AddIntConstant(m, "TIME", K_TIME);
    PyModule_AddIntConstant(m, "JSON", K_JSON);
    PyModule_AddIntConstant(m, "MAX_DEPTH", MAX_DEPTH);
    return m;
}
