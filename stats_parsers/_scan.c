/* One-pass scanner for gem5 stats.txt chunks, compiled ahead of time (see scan_c.py).

   The same grammar, row layout and fallbacks as the numba kernel in scan_numba.py, so the two
   give the same rows; it exists because loading numba and its cached code costs ~0.8 s per
   process, more than a whole 100 MB parse, while this library loads in a millisecond.

   Accepted lines (everything else is handed back as "irregular" for the slower passes):

       name SP+ value [SP+ pdf% SP+ cdf%] SP* ( end | '#' ... | '(' ... )

   with the terminator inside the WINDOW bytes after the name; value is -? then nan/inf or
   digits[.digits][e[+-]digits]. One-line bucket lists as scan_numba._oneline takes them.
   Integers are converted exactly here; every other number's token is queued for Arrow's cast
   (correctly rounded, like Python's float), so no float is parsed in this file.

   Unlike the numba kernel this one reads the file itself, in small blocks (pread into a
   buffer that stays in cache: on the VMs we measured, 64 KiB reads ran 3x faster than 16 MiB
   ones), so it copies out what outlives the buffer: names, each new stat's first line, the
   irregular lines. Portable C99 plus GCC/Clang builtins; no SIMD intrinsics (glibc's memchr
   already picks the widest one at run time). */

#define _XOPEN_SOURCE 700 /* pread */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WINDOW 96
#define PAD 16
#define ABI 3

/* Slots of the argument vector (int64 each: numbers, or addresses of numpy buffers). The
   order is exported by ll_slots() and checked by the loader. */
#define SLOTS(X)                                                                                  \
    X(FD) X(LO) X(HI) X(SIZE) X(BLOCK) X(BUF) X(BUF_CAP)                                          \
    X(ROW_LINE) X(ROW_STAT) X(ROW_BUCKET) X(ROW_VAL) X(ROW_INT) X(ROW_OK) X(ROW_PDF)              \
    X(ROW_PDF_OK) X(ROW_CDF) X(ROW_CDF_OK) X(ROW_CAP)                                             \
    X(IRR_LINE) X(IRR_OFF) X(IRR_CAP) X(IRR_BUF) X(IRR_BYTES)                                     \
    X(FLT_BUF) X(FLT_BYTES) X(FLT_OFF) X(FLT_KIND) X(FLT_ROW) X(FLT_CAP)                          \
    X(FT_BUF) X(FT_BYTES) X(FT_OFF)                                                               \
    X(T_NAME_LEN) X(T_NAME_WORD) X(T_NB) X(T_NB_CAP) X(T_FIRST_LNO) X(T_NEXT_PRED) X(T_SLOTS)     \
    X(T_CAP) X(T_SLOT_CAP) X(T_STATE)                                                             \
    X(OUT_ROWS) X(OUT_IRR) X(OUT_FLT) X(OUT_FLT_BYTES) X(OUT_LINES) X(OUT_STATUS) X(OUT_ERRNO)
#define AS_ENUM(name) S_##name,
enum { SLOTS(AS_ENUM) N_SLOTS };
#define AS_TEXT(name) #name ","
static const char slot_names[] = SLOTS(AS_TEXT);

/* Status codes. */
enum { OK = 0, TABLE_FULL = 1, NO_ROOM = 2, CONTROL_BYTES = 3, NOT_UTF8 = 4, READ_ERROR = 5, SHRANK = 6, NO_MEMORY = 7 };
/* What a queued float token belongs to (scatter). */
enum { KIND_VALUE, KIND_PDF, KIND_CDF };

const char *ll_slots(void) { return slot_names; }
int64_t ll_abi(void) { return ABI; }

typedef uint64_t u64;
#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL
#define SPACES 0x2020202020202020ULL

static inline u64 load(const uint8_t *p) {
    u64 w;
    memcpy(&w, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    w = __builtin_bswap64(w);
#endif
    return w;
}

/* First index in [i, end) holding the byte of `pattern`, else end (has-zero-byte trick: the
   lowest flagged byte is always exact). The buffer is readable PAD bytes past end. */
static inline int64_t find(const uint8_t *d, int64_t i, int64_t end, u64 pattern) {
    while (i < end) {
        u64 w = load(d + i) ^ pattern;
        u64 t = (w - ONES) & ~w & HIGHS;
        if (t) {
            int64_t j = i + (__builtin_ctzll(t) >> 3);
            return j < end ? j : end;
        }
        i += 8;
    }
    return end;
}

static inline int64_t skip_spaces(const uint8_t *d, int64_t i, int64_t end) {
    while (i < end) {
        u64 t = load(d + i) ^ SPACES;
        if (t) {
            int64_t j = i + (__builtin_ctzll(t) >> 3);
            return j < end ? j : end;
        }
        i += 8;
    }
    return end;
}

static inline int64_t token_end(const uint8_t *d, int64_t i, int64_t end) { return find(d, i, end, SPACES); }

/* 0: not a number for us; 1: integer; 2: other number (nan/inf/decimal/exponent). */
static inline int token_kind(const uint8_t *d, int64_t s, int64_t e) {
    int64_t i = s;
    if (i < e && d[i] == '-') i++;
    if (i >= e) return 0;
    if (e - i == 3) {
        uint8_t c0 = d[i], c1 = d[i + 1], c2 = d[i + 2];
        if ((c0 == 'n' && c1 == 'a' && c2 == 'n') || (c0 == 'i' && c1 == 'n' && c2 == 'f')) return 2;
    }
    int64_t digits = 0;
    while (i < e && d[i] >= '0' && d[i] <= '9') i++, digits++;
    if (digits == 0) return 0;
    if (i == e) return 1;
    if (d[i] == '.') {
        i++;
        int64_t frac = 0;
        while (i < e && d[i] >= '0' && d[i] <= '9') i++, frac++;
        if (frac == 0) return 0;
    }
    if (i < e && (d[i] == 'e' || d[i] == 'E')) {
        i++;
        if (i < e && (d[i] == '+' || d[i] == '-')) i++;
        int64_t exp = 0;
        while (i < e && d[i] >= '0' && d[i] <= '9') i++, exp++;
        if (exp == 0) return 0;
    }
    return i == e ? 2 : 0;
}

/* Exact int64 (and its double) of an integer token; 0 when it does not fit (Arrow casts it). */
static inline int parse_int(const uint8_t *d, int64_t s, int64_t e, double *val, int64_t *out, uint8_t *ok,
                            int64_t row) {
    int neg = d[s] == '-';
    int64_t i = neg ? s + 1 : s;
    while (i < e - 1 && d[i] == '0') i++;
    if (e - i > 19) return 0;
    u64 mag = 0;
    for (; i < e; i++) mag = mag * 10 + (u64)(d[i] - '0');
    if (neg) {
        if (mag > 9223372036854775808ULL) return 0;
        out[row] = mag == 9223372036854775808ULL ? INT64_MIN : -(int64_t)mag;
        val[row] = -(double)mag;
    } else {
        if (mag > 9223372036854775807ULL) return 0;
        out[row] = (int64_t)mag;
        val[row] = (double)mag;
    }
    ok[row] = 1;
    return 1;
}

static inline int ends_ok(const uint8_t *d, int64_t j, int64_t ce, int64_t limit) {
    if (j == ce) return ce <= limit;
    return (d[j] == '#' || d[j] == '(') && j < limit;
}

static inline int pct_ok(const uint8_t *d, int64_t s, int64_t e) {
    return e - s > 1 && d[e - 1] == '%' && token_kind(d, s, e - 1) != 0;
}

static inline u64 tail_mask(int64_t n) { return n >= 8 ? ~0ULL : ((1ULL << (8 * n)) - 1); }

typedef struct {
    int64_t *name_len, *name_word, *first_lno, *state;
    u64 *nb;
    int32_t *next_pred, *slots;
    int64_t cap, slot_cap, nb_cap;
} table_t;

static inline int same(const uint8_t *d, int64_t a, const u64 *nb, int64_t w, int64_t n) {
    int64_t k = 0;
    for (; k + 8 <= n; k += 8, w++)
        if (load(d + a + k) != nb[w]) return 0;
    if (k < n && (load(d + a + k) & tail_mask(n - k)) != nb[w]) return 0;
    return 1;
}

/* Thread-table id of name d[ls:p1]: first the stat that followed `prev` last time (gem5 prints
   stats in the same order every dump), else the hash table; a new name is added. -1: full. */
static inline int64_t name_id(const uint8_t *d, int64_t ls, int64_t p1, int64_t prev, table_t *t) {
    int64_t n = p1 - ls;
    if (prev >= 0) {
        int64_t cand = t->next_pred[prev];
        if (cand >= 0 && t->name_len[cand] == n && same(d, ls, t->nb, t->name_word[cand], n)) return cand;
    }
    u64 h = (u64)n;
    int64_t k = 0;
    for (; k + 8 <= n; k += 8) {
        h = (h ^ load(d + ls + k)) * 0x9E3779B97F4A7C15ULL;
        h ^= h >> 29;
    }
    if (k < n) {
        h = (h ^ (load(d + ls + k) & tail_mask(n - k))) * 0x9E3779B97F4A7C15ULL;
        h ^= h >> 29;
    }
    u64 smask = (u64)t->slot_cap - 1;
    u64 slot = h & smask;
    for (;;) {
        int64_t sid = t->slots[slot];
        if (sid < 0) break;
        if (t->name_len[sid] == n && same(d, ls, t->nb, t->name_word[sid], n)) {
            if (prev >= 0) t->next_pred[prev] = (int32_t)sid;
            return sid;
        }
        slot = (slot + 1) & smask;
    }
    int64_t nstats = t->state[0], w = t->state[1], words = (n + 7) / 8;
    if (nstats >= t->cap || 2 * (nstats + 1) >= t->slot_cap || w + words > t->nb_cap) return -1;
    t->name_word[nstats] = w;
    for (k = 0; k + 8 <= n; k += 8) t->nb[w++] = load(d + ls + k);
    if (k < n) t->nb[w++] = load(d + ls + k) & tail_mask(n - k);
    t->state[1] = w;
    t->name_len[nstats] = n;
    t->slots[slot] = (int32_t)nstats;
    t->state[0] = nstats + 1;
    if (prev >= 0) t->next_pred[prev] = (int32_t)nstats;
    return nstats;
}

/* Queued float tokens: one shared buffer (Arrow string layout, int32 offsets). */
typedef struct {
    uint8_t *buf;
    int32_t *off;
    int8_t *kind;
    int32_t *row;
    int64_t n, bytes, cap, bytes_cap;
} floats_t;

static inline int push(floats_t *f, const uint8_t *d, int64_t s, int64_t e, int kind, int64_t row) {
    if (f->n >= f->cap || f->bytes + (e - s) > f->bytes_cap) return 0;
    memcpy(f->buf + f->bytes, d + s, (size_t)(e - s));
    f->bytes += e - s;
    f->kind[f->n] = (int8_t)kind;
    f->row[f->n] = (int32_t)row;
    f->n++;
    f->off[f->n] = (int32_t)f->bytes;
    return 1;
}

typedef struct {
    uint32_t *line;
    int32_t *stat, *bucket;
    double *val, *pdf, *cdf;
    int64_t *ival;
    uint8_t *ok, *pdf_ok, *cdf_ok;
    int64_t n, cap;
} rows_t;

/* Cells of a one-line bucket list `name |v [pdf% [cdf%]] |v ... [ # desc]`, from row o->n.
   1: taken; 0: refused whole (the line goes back as irregular, where the polars pass refuses
   it too); -1: no room for its cells or tokens (the caller retries with more). */
static int oneline(const uint8_t *d, int64_t ls, int64_t p1, int64_t ce, int64_t line, rows_t *o, floats_t *f) {
    for (int64_t k = ls; k < p1 - 1; k++)
        if (d[k] == ':' && d[k + 1] == ':') return 0;
    int64_t hend = find(d, p1, ce, 0x2323232323232323ULL); /* first '#' */
    if (hend < ce && !(d[hend - 1] == ' ' && hend + 1 < ce && d[hend + 1] == ' ')) return 0;
    while (hend > p1 && d[hend - 1] == ' ') hend--;
    int64_t j = skip_spaces(d, p1, hend);
    if (j >= hend || d[j] != '|') return 0;
    int64_t n0 = o->n, f0 = f->n, fb0 = f->bytes;
    int64_t row = o->n, bucket = 0, pos = j + 1;
    for (;;) {
        int ntok = 0;
        int64_t vs = 0, ve = 0, ps = 0, pe = 0, cs = 0, cend = 0, s;
        for (;;) {
            s = skip_spaces(d, pos, hend);
            if (s >= hend || (d[s] == '|' && d[s - 1] == ' ')) break;
            int64_t e = token_end(d, s, hend);
            ntok++;
            if (ntok == 1) vs = s, ve = e;
            else if (ntok == 2) ps = s, pe = e;
            else if (ntok == 3) cs = s, cend = e;
            else goto refuse;
            pos = e;
        }
        int kind = ntok ? token_kind(d, vs, ve) : 0;
        if (kind == 0) goto refuse;
        if (row >= o->cap) goto no_room;
        if ((ntok >= 2 && !pct_ok(d, ps, pe)) || (ntok == 3 && !pct_ok(d, cs, cend))) goto refuse;
        o->line[row] = (uint32_t)line;
        o->bucket[row] = (int32_t)bucket;
        o->ok[row] = 0;
        if (!(kind == 1 && parse_int(d, vs, ve, o->val, o->ival, o->ok, row)))
            if (!push(f, d, vs, ve, KIND_VALUE, row)) goto no_room;
        o->pdf_ok[row] = ntok >= 2;
        if (ntok >= 2 && !push(f, d, ps, pe - 1, KIND_PDF, row)) goto no_room;
        o->cdf_ok[row] = ntok == 3;
        if (ntok == 3 && !push(f, d, cs, cend - 1, KIND_CDF, row)) goto no_room;
        row++;
        bucket++;
        if (s >= hend) {
            o->n = row;
            return 1;
        }
        pos = s + 1;
    }
refuse:
    o->n = n0, f->n = f0, f->bytes = fb0;
    return 0;
no_room:
    o->n = n0, f->n = f0, f->bytes = fb0;
    return -1;
}

/* Bytes that make the file something else than text for us: NUL and the unit separator (the
   polars path's field separator) anywhere, and whether any byte is >= 0x80 (then each line
   is checked as UTF-8). GCC/Clang vector types: SSE2 or NEON, whichever the target has. */
typedef uint8_t v16 __attribute__((vector_size(16)));
static void survey(const uint8_t *d, int64_t n, int *ctrl, int *high) {
    v16 acc = {0}, bad = {0};
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        v16 x;
        memcpy(&x, d + i, 16);
        acc |= x;
        bad |= (v16)(x == 0) | (v16)(x == 0x1f);
    }
    uint8_t a = 0, b = 0;
    for (int k = 0; k < 16; k++) a |= acc[k], b |= bad[k];
    for (; i < n; i++) a |= d[i], b |= d[i] == 0 || d[i] == 0x1f;
    if (b) *ctrl = 1;
    if (a & 0x80) *high = 1;
}

/* Strict UTF-8 (what Python's decoder accepts: no overlongs, surrogates or > U+10FFFF). */
static int utf8_ok(const uint8_t *d, int64_t n) {
    int64_t i = 0;
    while (i < n) {
        if (i + 8 <= n && !(load(d + i) & HIGHS)) {
            i += 8;
            continue;
        }
        uint8_t c = d[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        int64_t len;
        uint8_t lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) len = 2;
        else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            if (c == 0xE0) lo = 0xA0;
            if (c == 0xED) hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            if (c == 0xF0) lo = 0x90;
            if (c == 0xF4) hi = 0x8F;
        } else return 0;
        if (i + len > n) return 0;
        if (d[i + 1] < lo || d[i + 1] > hi) return 0;
        for (int64_t k = 2; k < len; k++)
            if (d[i + k] < 0x80 || d[i + k] > 0xBF) return 0;
        i += len;
    }
    return 1;
}

/* The read buffer: file bytes [base, base + be) sit at buf[0, be); readable PAD bytes past be. */
typedef struct {
    int fd;
    uint8_t *buf;
    int64_t cap, be, base, size, block;
    int ctrl, high, err, owned; /* owned: buf was grown here (malloc), not the caller's */
} reader_t;

/* Keep buf[keep:be), read at least one more block. 1: read more; 0: at the end of the file;
   -1: error (r->err). */
static int refill(reader_t *r, int64_t keep) {
    int64_t pos = r->base + r->be;
    if (pos >= r->size) return 0;
    if (keep > 0) {
        memmove(r->buf, r->buf + keep, (size_t)(r->be - keep));
        r->be -= keep;
        r->base += keep;
    }
    int64_t want = r->block;
    if (want > r->size - pos) want = r->size - pos;
    if (r->be + want > r->cap) { /* a line longer than the buffer: grow it */
        int64_t cap = r->cap * 2;
        while (r->be + want > cap) cap *= 2;
        uint8_t *grown = r->owned ? realloc(r->buf, (size_t)(cap + PAD)) : malloc((size_t)(cap + PAD));
        if (!grown) {
            r->err = NO_MEMORY;
            return -1;
        }
        if (!r->owned) memcpy(grown, r->buf, (size_t)r->be);
        r->buf = grown;
        r->cap = cap;
        r->owned = 1;
    }
    int64_t got = 0;
    while (got < want) {
        ssize_t n = pread(r->fd, r->buf + r->be + got, (size_t)(want - got), (off_t)(pos + got));
        if (n < 0) {
            if (errno == EINTR) continue;
            r->err = READ_ERROR;
            return -1;
        }
        if (n == 0) {
            r->err = SHRANK;
            return -1;
        }
        got += n;
    }
    survey(r->buf + r->be, got, &r->ctrl, &r->high);
    r->be += got;
    memset(r->buf + r->be, 0, PAD);
    return 1;
}

#define P(type, slot) ((type *)(intptr_t)a[S_##slot])

/* Lines that start in file bytes [LO, HI), numbered from 0; results in the slots (see
   scan_c.py). Status in OUT_STATUS; on any status but OK the outputs are to be discarded. */
void ll_scan(int64_t *a) {
    /* The caller's buffer (BUF_CAP + PAD bytes; a fresh one per call would cost page faults). */
    reader_t r = {(int)a[S_FD], P(uint8_t, BUF), a[S_BUF_CAP], 0, 0, a[S_SIZE], a[S_BLOCK], 0, 0, 0, 0};
    if (r.block <= 0 || r.block > r.cap) r.block = r.cap;
    a[S_OUT_STATUS] = OK;
    a[S_OUT_ERRNO] = 0;
    int64_t lo = a[S_LO], hi = a[S_HI];
    table_t t = {P(int64_t, T_NAME_LEN), P(int64_t, T_NAME_WORD), P(int64_t, T_FIRST_LNO), P(int64_t, T_STATE),
                 P(u64, T_NB),           P(int32_t, T_NEXT_PRED), P(int32_t, T_SLOTS),     a[S_T_CAP],
                 a[S_T_SLOT_CAP],        a[S_T_NB_CAP]};
    floats_t f = {P(uint8_t, FLT_BUF), P(int32_t, FLT_OFF), P(int8_t, FLT_KIND), P(int32_t, FLT_ROW), 0, 0,
                  a[S_FLT_CAP],        a[S_FLT_BYTES]};
    /* One set of row arrays for every kind of row (regular, pdf/cdf, bucket cell): each row
       takes the next one, so a chunk's rows come out in line order, with pdf/cdf flags and a
       bucket index per row (-1: not a bucket cell). */
    rows_t o = {P(uint32_t, ROW_LINE), P(int32_t, ROW_STAT), P(int32_t, ROW_BUCKET), P(double, ROW_VAL),
                P(double, ROW_PDF),    P(double, ROW_CDF),   P(int64_t, ROW_INT),    P(uint8_t, ROW_OK),
                P(uint8_t, ROW_PDF_OK), P(uint8_t, ROW_CDF_OK), 0, a[S_ROW_CAP]};
    int64_t *irr_line = P(int64_t, IRR_LINE), *irr_off = P(int64_t, IRR_OFF), irr_cap = a[S_IRR_CAP];
    uint8_t *irr_buf = P(uint8_t, IRR_BUF), *ft_buf = P(uint8_t, FT_BUF);
    int64_t irr_bytes = a[S_IRR_BYTES], ft_bytes = a[S_FT_BYTES], *ft_off = P(int64_t, FT_OFF);
    int64_t first_new = t.state[0];
    int64_t n_irr = 0, line = 0, prev = -1, status = OK;
    f.off[0] = 0;
    irr_off[0] = 0;
    ft_off[0] = 0;

    /* The first line that starts at or after lo. */
    r.base = lo > 0 ? lo - 1 : 0;
    int64_t ls = 0;
    if (lo > 0) {
        for (;;) {
            int got = refill(&r, r.be); /* nothing before a newline is needed */
            if (got < 0) goto fail;
            if (!got) goto done; /* a line that started earlier runs to the end of the file */
            const uint8_t *nl = memchr(r.buf, '\n', (size_t)r.be);
            if (nl) {
                ls = nl - r.buf + 1;
                break;
            }
        }
    }
    while (r.base + ls < hi) {
        const uint8_t *nl = memchr(r.buf + ls, '\n', (size_t)(r.be - ls));
        int64_t le;
        if (nl) le = nl - r.buf;
        else {
            int got = refill(&r, ls);
            if (got < 0) goto fail;
            if (got) {
                ls = 0;
                continue;
            }
            if (ls >= r.be) break; /* the file ends with a newline */
            le = r.be;             /* the last line has none */
        }
        if (r.ctrl) {
            status = CONTROL_BYTES;
            goto out;
        }
        const uint8_t *d = r.buf;
        int64_t ce = le;
        if (ce > ls && d[ce - 1] == '\r') ce--;
        if (r.high && !utf8_ok(d + ls, le - ls)) {
            status = NOT_UTF8;
            goto out;
        }
        int64_t p1 = find(d, ls, le, SPACES);
        if (p1 > ce) p1 = ce;
        if (ce > ls) {
            int ok = 0;
            if (p1 > ls && p1 < ce) {
                int64_t limit = p1 + WINDOW;
                int64_t vs = skip_spaces(d, p1, ce), ve = token_end(d, vs, ce);
                int kind = token_kind(d, vs, ve);
                if (kind) {
                    int64_t j = skip_spaces(d, ve, ce), ps = 0, pe = 0, cs = 0, cend = 0;
                    int pct = 0;
                    if (ends_ok(d, j, ce, limit)) ok = 1;
                    else if (j < ce) {
                        ps = j;
                        pe = token_end(d, ps, ce);
                        if (pct_ok(d, ps, pe)) {
                            cs = skip_spaces(d, pe, ce);
                            cend = token_end(d, cs, ce);
                            if (pct_ok(d, cs, cend)) {
                                j = skip_spaces(d, cend, ce);
                                if (ends_ok(d, j, ce, limit)) ok = pct = 1;
                            }
                        }
                    }
                    if (ok) {
                        if (o.n >= o.cap || f.n + 3 > f.cap || f.bytes + (ce - ls) > f.bytes_cap) {
                            status = NO_ROOM;
                            goto out;
                        }
                        int64_t nstats = t.state[0];
                        int64_t sid = name_id(d, ls, p1, prev, &t);
                        if (sid < 0) {
                            status = TABLE_FULL;
                            goto out;
                        }
                        if (sid == nstats) {
                            int64_t k = sid - first_new;
                            if (ft_off[k] + (ce - ls) > ft_bytes) {
                                status = NO_ROOM;
                                goto out;
                            }
                            memcpy(ft_buf + ft_off[k], d + ls, (size_t)(ce - ls));
                            ft_off[k + 1] = ft_off[k] + (ce - ls);
                            t.first_lno[sid] = line;
                        }
                        prev = sid;
                        int64_t row = o.n++;
                        o.line[row] = (uint32_t)line;
                        o.stat[row] = (int32_t)sid;
                        o.ok[row] = 0;
                        o.bucket[row] = -1;
                        o.pdf_ok[row] = o.cdf_ok[row] = (uint8_t)pct;
                        if (!pct) o.pdf[row] = o.cdf[row] = 0.0;
                        if (!(kind == 1 && parse_int(d, vs, ve, o.val, o.ival, o.ok, row)))
                            push(&f, d, vs, ve, KIND_VALUE, row);
                        if (pct) {
                            push(&f, d, ps, pe - 1, KIND_PDF, row);
                            push(&f, d, cs, cend - 1, KIND_CDF, row);
                        }
                    }
                }
            }
            if (!ok && p1 > ls && p1 < ce) {
                int64_t first = o.n;
                int got = oneline(d, ls, p1, ce, line, &o, &f);
                if (got < 0) {
                    status = NO_ROOM;
                    goto out;
                }
                if (got) {
                    int64_t nstats = t.state[0];
                    int64_t sid = name_id(d, ls, p1, prev, &t);
                    if (sid < 0) {
                        status = TABLE_FULL;
                        goto out;
                    }
                    if (sid == nstats) {
                        int64_t k = sid - first_new;
                        if (ft_off[k] + (ce - ls) > ft_bytes) {
                            status = NO_ROOM;
                            goto out;
                        }
                        memcpy(ft_buf + ft_off[k], d + ls, (size_t)(ce - ls));
                        ft_off[k + 1] = ft_off[k] + (ce - ls);
                        t.first_lno[sid] = line;
                    }
                    prev = sid;
                    for (int64_t rr = first; rr < o.n; rr++) o.stat[rr] = (int32_t)sid;
                    ok = 1;
                }
            }
            if (!ok) {
                if (n_irr >= irr_cap || irr_off[n_irr] + (ce - ls) > irr_bytes) {
                    status = NO_ROOM;
                    goto out;
                }
                irr_line[n_irr] = line;
                memcpy(irr_buf + irr_off[n_irr], d + ls, (size_t)(ce - ls));
                irr_off[n_irr + 1] = irr_off[n_irr] + (ce - ls);
                n_irr++;
                prev = -1;
            }
        }
        ls = le + 1;
        line++;
    }
done:
    if (r.ctrl) status = CONTROL_BYTES;
    goto out;
fail:
    status = r.err;
    a[S_OUT_ERRNO] = errno;
out:
    if (r.owned) free(r.buf);
    a[S_OUT_ROWS] = o.n;
    a[S_OUT_IRR] = n_irr;
    a[S_OUT_FLT] = f.n;
    a[S_OUT_FLT_BYTES] = f.bytes;
    a[S_OUT_LINES] = line;
    a[S_OUT_STATUS] = status;
}

/* Put Arrow-cast numbers back in their rows; every NaN becomes the one canonical NaN. */
void ll_scatter(int64_t n, const double *values, const int8_t *kinds, const int32_t *rows, double *val,
                double *pdf, double *cdf) {
    double *dest[3] = {val, pdf, cdf};
    for (int64_t i = 0; i < n; i++) {
        double v = values[i];
        if (v != v) v = __builtin_nan("");
        dest[kinds[i]][rows[i]] = v;
    }
}

/* Dump index (by Begin line) and inside-the-block flag for two sorted runs of rows. */
void ll_dumps(int64_t n, const uint32_t *lines, int64_t n_first, int64_t nb, const int64_t *begins,
              const int64_t *ends, uint32_t *dump, uint8_t *inside) {
    int64_t lo = 0, his[2] = {n_first, n};
    for (int run = 0; run < 2; run++) {
        int64_t b = 0;
        for (int64_t i = lo; i < his[run]; i++) {
            int64_t ln = lines[i];
            while (b < nb && begins[b] <= ln) b++;
            int64_t d = b - 1;
            if (d < 0) {
                dump[i] = 0;
                inside[i] = 0;
            } else {
                dump[i] = (uint32_t)d;
                inside[i] = ln < ends[d];
            }
        }
        lo = his[run];
    }
}
