/* ==== Files: safetensors =======================================================================
   Reading: dl__st_build parses the JSON header twice with the same code: a measuring pass that
   validates everything and counts (tensors, metadata entries, string bytes, converted data
   bytes) without allocating, then one allocation of exactly that size and a filling pass. The
   entries are then checked for duplicates and for tiling the data part, and the tensor data is
   read in file order through a small reader callback (memory or FILE*), converted to dl dtypes. */

#define DL__ST_MAX_HEADER 100000000u  /* the reference reader's limit */
#define DL__ST_MAX_DEPTH 64           /* JSON nesting allowed inside unknown fields */

/* File dtypes dl understands, and what they load as. */
typedef struct dl__st_dtype {
    const char *name;
    int size;                         /* bytes per element in the file */
    dl_dtype to;
} dl__st_dtype;

enum { DL__ST_F32, DL__ST_I32, DL__ST_U8, DL__ST_BOOL, DL__ST_F16, DL__ST_BF16, DL__ST_F64, DL__ST_I64, DL__ST_NDTYPES };

static const dl__st_dtype dl__st_dtypes[DL__ST_NDTYPES] = {
    {"F32", 4, DL_F32}, {"I32", 4, DL_I32}, {"U8", 1, DL_U8}, {"BOOL", 1, DL_U8},
    {"F16", 2, DL_F32}, {"BF16", 2, DL_F32}, {"F64", 8, DL_F32}, {"I64", 8, DL_I32},
};

typedef struct dl__st_entry {
    const char *name;
    uint64_t begin, end;              /* byte range in the data part of the file */
    int file_dtype;                   /* DL__ST_* */
    dl_tensor t;
} dl__st_entry;

typedef struct dl__st_pair { const char *key, *value; } dl__st_pair;

struct dl_safetensors {
    int n, n_meta;
    dl__st_entry *entries;            /* sorted by name */
    dl__st_pair *meta;                /* sorted by key */
};

/* ---- Little-endian bytes, on any host ---- */

static uint32_t dl__st_rd16(const unsigned char *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }
static uint32_t dl__st_rd32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t dl__st_rd64(const unsigned char *p) { return dl__st_rd32(p) | (uint64_t)dl__st_rd32(p + 4) << 32; }
static void dl__st_wr32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)v; p[1] = (unsigned char)(v >> 8); p[2] = (unsigned char)(v >> 16); p[3] = (unsigned char)(v >> 24);
}
static void dl__st_wr64(unsigned char *p, uint64_t v) { dl__st_wr32(p, (uint32_t)v); dl__st_wr32(p + 4, (uint32_t)(v >> 32)); }
static int dl__st_little_endian(void) { uint32_t one = 1; unsigned char b; memcpy(&b, &one, 1); return b == 1; }

static float dl__st_bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

/* IEEE half -> float, exact: rebias the exponent 15 -> 127; subnormals are normalized. */
static float dl__st_f16(uint32_t h) {
    uint32_t sign = (h & 0x8000u) << 16, exp = (h >> 10) & 31u, man = h & 0x3ffu;
    if (exp == 31) return dl__st_bits_f32(sign | 0x7f800000u | man << 13); /* inf, nan */
    if (exp) return dl__st_bits_f32(sign | (exp + 112) << 23 | man << 13);
    if (!man) return dl__st_bits_f32(sign);
    exp = 113;
    while (!(man & 0x400u)) { man <<= 1; exp--; }
    return dl__st_bits_f32(sign | exp << 23 | (man & 0x3ffu) << 13);
}

/* ---- Error messages of the reader: collected here, prefixed by the public function ---- */

typedef struct dl__st_parser {
    const unsigned char *p, *start, *end;  /* JSON cursor, header start and end */
    uint64_t data_size;                    /* bytes after the header */
    dl_safetensors *st;                    /* NULL in the measuring pass */
    int n, n_meta, seen_meta;
    size_t pool_bytes;                     /* measured: bytes of all decoded strings + NULs */
    uint64_t file_bytes;                   /* measured: sum of e - b over tensors */
    size_t out_bytes;                      /* measured: converted data, each tensor 64-aligned */
    char *pool;                            /* filling pass: where strings go */
    unsigned char *data;                   /* filling pass: where tensor data goes */
    char err[400];
} dl__st_parser;

static int dl__st_err(dl__st_parser *ps, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ps->err, sizeof ps->err, fmt, ap);
    va_end(ap);
    return 0;
}

static int dl__st_syntax(dl__st_parser *ps, const char *what) {
    if (ps->p >= ps->end) return dl__st_err(ps, "header: unexpected end of JSON, expected %s", what);
    return dl__st_err(ps, "header byte %zu: expected %s", (size_t)(ps->p - ps->start), what);
}

/* ---- A strict, bounded JSON reader (just what a safetensors header needs) ---- */

static void dl__js_ws(dl__st_parser *ps) {
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r')) ps->p++;
}

static int dl__js_char(dl__st_parser *ps, char c) {
    char what[4] = {'\'', c, '\'', 0};
    dl__js_ws(ps);
    if (ps->p >= ps->end || *ps->p != (unsigned char)c) return dl__st_syntax(ps, what);
    ps->p++;
    return 1;
}

/* Length of the valid UTF-8 sequence at p (RFC 3629: no overlongs, no surrogates, <= U+10FFFF), 0 if invalid. */
static int dl__utf8_len(const unsigned char *p, const unsigned char *end) {
    unsigned c = p[0], lo = 0x80, hi = 0xbf;
    int n, i;
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf) n = 2;
    else if (c >= 0xe0 && c <= 0xef) { n = 3; if (c == 0xe0) lo = 0xa0; if (c == 0xed) hi = 0x9f; }
    else if (c >= 0xf0 && c <= 0xf4) { n = 4; if (c == 0xf0) lo = 0x90; if (c == 0xf4) hi = 0x8f; }
    else return 0;
    if (end - p < n) return 0;
    for (i = 1; i < n; i++, lo = 0x80, hi = 0xbf)
        if (p[i] < lo || p[i] > hi) return 0;
    return n;
}

static int dl__js_hex4(const unsigned char *p, const unsigned char *end, uint32_t *v) {
    int i;
    *v = 0;
    if (end - p < 4) return 0;
    for (i = 0; i < 4; i++) {
        unsigned c = p[i];
        uint32_t d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : 99;
        if (d == 99) return 0;
        *v = *v << 4 | d;
    }
    return 1;
}

/* Parses a JSON string; writes up to cap decoded bytes to out (when out != NULL) and a NUL after
   them; returns the full decoded length in *len. Decoded is never longer than the raw text. */
static int dl__js_str(dl__st_parser *ps, char *out, size_t cap, size_t *len) {
    size_t n = 0;
    dl__js_ws(ps);
    if (ps->p >= ps->end || *ps->p != '"') return dl__st_syntax(ps, "a string");
    ps->p++;
    for (;;) {
        unsigned char buf[4];
        int k, nb;
        uint32_t cp;
        if (ps->p >= ps->end) return dl__st_err(ps, "header: unterminated string");
        if (*ps->p == '"') { ps->p++; break; }
        if (*ps->p < 0x20) return dl__st_err(ps, "header byte %zu: control character in a string", (size_t)(ps->p - ps->start));
        if (*ps->p != '\\') {
            nb = dl__utf8_len(ps->p, ps->end);
            if (!nb) return dl__st_err(ps, "header byte %zu: invalid UTF-8", (size_t)(ps->p - ps->start));
            memcpy(buf, ps->p, (size_t)nb);
            ps->p += nb;
        } else {
            const unsigned char *esc = ps->p;
            if (ps->end - ps->p < 2) return dl__st_err(ps, "header: unterminated string");
            ps->p += 2;
            nb = 1;
            switch (esc[1]) {
            case '"': buf[0] = '"'; break;
            case '\\': buf[0] = '\\'; break;
            case '/': buf[0] = '/'; break;
            case 'b': buf[0] = '\b'; break;
            case 'f': buf[0] = '\f'; break;
            case 'n': buf[0] = '\n'; break;
            case 'r': buf[0] = '\r'; break;
            case 't': buf[0] = '\t'; break;
            case 'u':
                if (!dl__js_hex4(ps->p, ps->end, &cp)) return dl__st_err(ps, "header byte %zu: bad \\u escape", (size_t)(esc - ps->start));
                ps->p += 4;
                if (cp >= 0xdc00 && cp <= 0xdfff) return dl__st_err(ps, "header byte %zu: lone surrogate in \\u escape", (size_t)(esc - ps->start));
                if (cp >= 0xd800 && cp <= 0xdbff) { /* a surrogate pair: \uD8xx\uDCxx */
                    uint32_t lo;
                    if (ps->end - ps->p < 6 || ps->p[0] != '\\' || ps->p[1] != 'u' || !dl__js_hex4(ps->p + 2, ps->end, &lo) || lo < 0xdc00 || lo > 0xdfff)
                        return dl__st_err(ps, "header byte %zu: lone surrogate in \\u escape", (size_t)(esc - ps->start));
                    ps->p += 6;
                    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                }
                if (cp == 0) return dl__st_err(ps, "header byte %zu: \\u0000 in a string is not supported", (size_t)(esc - ps->start));
                if (cp < 0x80) buf[0] = (unsigned char)cp;
                else if (cp < 0x800) { nb = 2; buf[0] = (unsigned char)(0xc0 | cp >> 6); buf[1] = (unsigned char)(0x80 | (cp & 63)); }
                else if (cp < 0x10000) { nb = 3; buf[0] = (unsigned char)(0xe0 | cp >> 12); buf[1] = (unsigned char)(0x80 | (cp >> 6 & 63)); buf[2] = (unsigned char)(0x80 | (cp & 63)); }
                else { nb = 4; buf[0] = (unsigned char)(0xf0 | cp >> 18); buf[1] = (unsigned char)(0x80 | (cp >> 12 & 63)); buf[2] = (unsigned char)(0x80 | (cp >> 6 & 63)); buf[3] = (unsigned char)(0x80 | (cp & 63)); }
                break;
            default: return dl__st_err(ps, "header byte %zu: bad escape in a string", (size_t)(esc - ps->start));
            }
        }
        for (k = 0; k < nb; k++, n++)
            if (out && n < cap) out[n] = (char)buf[k];
    }
    if (out) out[n < cap ? n : cap] = 0;
    *len = n;
    return 1;
}

/* A non-negative JSON integer (no sign, fraction, exponent or leading zero) that fits in u64. */
static int dl__js_uint(dl__st_parser *ps, uint64_t *v) {
    dl__js_ws(ps);
    if (ps->p >= ps->end || *ps->p < '0' || *ps->p > '9') return dl__st_syntax(ps, "a non-negative integer");
    *v = 0;
    if (*ps->p == '0') ps->p++;
    else
        while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9') {
            unsigned d = *ps->p++ - '0';
            if (*v > (UINT64_MAX - d) / 10) return dl__st_err(ps, "header byte %zu: integer too large", (size_t)(ps->p - ps->start));
            *v = *v * 10 + d;
        }
    if (ps->p < ps->end && (*ps->p == '.' || *ps->p == 'e' || *ps->p == 'E' || (*ps->p >= '0' && *ps->p <= '9')))
        return dl__st_syntax(ps, "a non-negative integer");
    return 1;
}

/* Skips any JSON value (for fields dl ignores), at most DL__ST_MAX_DEPTH levels deep. */
static int dl__js_skip(dl__st_parser *ps, int depth) {
    size_t len;
    dl__js_ws(ps);
    if (depth > DL__ST_MAX_DEPTH) return dl__st_err(ps, "header: JSON nested deeper than %d levels", DL__ST_MAX_DEPTH);
    if (ps->p >= ps->end) return dl__st_syntax(ps, "a value");
    if (*ps->p == '"') return dl__js_str(ps, NULL, 0, &len);
    if (*ps->p == '{' || *ps->p == '[') {
        char close = *ps->p == '{' ? '}' : ']';
        ps->p++;
        dl__js_ws(ps);
        if (ps->p < ps->end && *ps->p == (unsigned char)close) { ps->p++; return 1; }
        for (;;) {
            if (close == '}' && (!dl__js_str(ps, NULL, 0, &len) || !dl__js_char(ps, ':'))) return 0;
            if (!dl__js_skip(ps, depth + 1)) return 0;
            dl__js_ws(ps);
            if (ps->p < ps->end && *ps->p == ',') { ps->p++; continue; }
            return dl__js_char(ps, close);
        }
    }
    {
        static const char *const words[3] = {"true", "false", "null"};
        int i;
        for (i = 0; i < 3; i++) {
            size_t wl = strlen(words[i]);
            if ((size_t)(ps->end - ps->p) >= wl && memcmp(ps->p, words[i], wl) == 0) { ps->p += wl; return 1; }
        }
    }
    if (*ps->p == '-' || (*ps->p >= '0' && *ps->p <= '9')) { /* number: -?int frac? exp? */
        const unsigned char *q = ps->p;
        int digits = 0;
        if (*q == '-') q++;
        if (q < ps->end && *q == '0') { q++; digits = 1; }
        else while (q < ps->end && *q >= '0' && *q <= '9') { q++; digits++; }
        if (!digits) return dl__st_syntax(ps, "a number");
        if (q < ps->end && *q == '.') {
            q++; digits = 0;
            while (q < ps->end && *q >= '0' && *q <= '9') { q++; digits++; }
            if (!digits) return dl__st_syntax(ps, "a number");
        }
        if (q < ps->end && (*q == 'e' || *q == 'E')) {
            q++; digits = 0;
            if (q < ps->end && (*q == '+' || *q == '-')) q++;
            while (q < ps->end && *q >= '0' && *q <= '9') { q++; digits++; }
            if (!digits) return dl__st_syntax(ps, "a number");
        }
        ps->p = q;
        return 1;
    }
    return dl__st_syntax(ps, "a value");
}

/* After a member of an object: 1 if another follows (','), 2 at the end ('}'), 0 on error. */
static int dl__js_next(dl__st_parser *ps) {
    dl__js_ws(ps);
    if (ps->p < ps->end && *ps->p == ',') { ps->p++; return 1; }
    if (ps->p < ps->end && *ps->p == '}') { ps->p++; return 2; }
    return dl__st_syntax(ps, "',' or '}'");
}

/* '{' then either '}' (returns 2) or the start of the first member (returns 1). */
static int dl__js_open(dl__st_parser *ps) {
    if (!dl__js_char(ps, '{')) return 0;
    dl__js_ws(ps);
    if (ps->p < ps->end && *ps->p == '}') { ps->p++; return 2; }
    return 1;
}

/* ---- The header: {"__metadata__": {...}, "name": {"dtype", "shape", "data_offsets"}, ...} ---- */

/* Decodes a key or string value: into the pool when filling, else into scratch (truncated, for
   messages and comparisons). Counts its bytes in the measuring pass. */
static char *dl__st_string(dl__st_parser *ps, char *scratch, size_t scratch_cap, size_t *len) {
    char *dst = ps->st ? ps->pool : scratch;
    size_t cap = ps->st ? (size_t)-1 : scratch_cap - 1;
    if (!dl__js_str(ps, dst, cap, len)) return NULL;
    if (!ps->st) ps->pool_bytes += *len + 1;
    return dst;
}

static int dl__st_metadata(dl__st_parser *ps) {
    int more;
    dl__js_ws(ps);
    if ((size_t)(ps->end - ps->p) >= 4 && memcmp(ps->p, "null", 4) == 0) { ps->p += 4; return 1; }
    more = dl__js_open(ps);
    while (more == 1) {
        char scratch[64];
        size_t len;
        char *key = dl__st_string(ps, scratch, sizeof scratch, &len), *value;
        if (!key) return 0;
        if (ps->st) { ps->st->meta[ps->n_meta].key = key; ps->pool += len + 1; }
        if (!dl__js_char(ps, ':')) return 0;
        dl__js_ws(ps);
        if (ps->p < ps->end && *ps->p != '"') return dl__st_err(ps, "__metadata__ \"%s\": values must be strings", key);
        value = dl__st_string(ps, scratch, sizeof scratch, &len);
        if (!value) return 0;
        if (ps->st) { ps->st->meta[ps->n_meta].value = value; ps->pool += len + 1; }
        ps->n_meta++;
        more = dl__js_next(ps);
    }
    return more;
}

static int dl__st_shape(dl__st_parser *ps, const char *name, dl_tensor *t) {
    uint64_t d;
    if (!dl__js_char(ps, '[')) return 0;
    dl__js_ws(ps);
    if (ps->p < ps->end && *ps->p == ']') { ps->p++; return 1; }
    for (;;) {
        if (!dl__js_uint(ps, &d)) return 0;
        if (t->ndim == DL_MAX_DIMS) return dl__st_err(ps, "tensor '%s': more than %d dimensions", name, DL_MAX_DIMS);
        if (d > 0x7fffffff) return dl__st_err(ps, "tensor '%s': dimension %llu is too large", name, (unsigned long long)d);
        t->shape[t->ndim++] = (int)d;
        dl__js_ws(ps);
        if (ps->p < ps->end && *ps->p == ',') { ps->p++; continue; }
        return dl__js_char(ps, ']');
    }
}

/* Fills e (a scratch entry in the measuring pass) from {"dtype":..., "shape":..., "data_offsets":...};
   other fields are skipped, as the reference reader does. */
static int dl__st_tensor_info(dl__st_parser *ps, const char *name, dl__st_entry *e) {
    int more, seen = 0, i;
    uint64_t numel = 1, nbytes;
    dl_tensor *t = &e->t;
    memset(t, 0, sizeof *t);
    dl__js_ws(ps);
    if (ps->p < ps->end && *ps->p != '{') return dl__st_err(ps, "tensor '%s': expected an object", name);
    more = dl__js_open(ps);
    while (more == 1) {
        char field[16], value[16];
        size_t len;
        if (!dl__js_str(ps, field, sizeof field - 1, &len) || !dl__js_char(ps, ':')) return 0;
        if (len >= sizeof field - 1) field[0] = 0;
        i = strcmp(field, "dtype") == 0 ? 1 : strcmp(field, "shape") == 0 ? 2 : strcmp(field, "data_offsets") == 0 ? 4 : 0;
        if (i & seen) return dl__st_err(ps, "tensor '%s': duplicate field \"%s\"", name, field);
        seen |= i;
        if (i == 1) {
            if (!dl__js_str(ps, value, sizeof value - 1, &len)) return 0;
            for (e->file_dtype = 0; e->file_dtype < DL__ST_NDTYPES; e->file_dtype++)
                if (len < sizeof value - 1 && strcmp(value, dl__st_dtypes[e->file_dtype].name) == 0) break;
            if (e->file_dtype == DL__ST_NDTYPES)
                return dl__st_err(ps, "tensor '%s': unsupported dtype \"%s\" (dl loads F32, I32, U8, BOOL, F16, BF16, F64, I64)", name, value);
        } else if (i == 2) {
            if (!dl__st_shape(ps, name, t)) return 0;
        } else if (i == 4) {
            if (!dl__js_char(ps, '[') || !dl__js_uint(ps, &e->begin) || !dl__js_char(ps, ',') || !dl__js_uint(ps, &e->end) || !dl__js_char(ps, ']')) return 0;
        } else if (!dl__js_skip(ps, 3)) {
            return 0;
        }
        more = dl__js_next(ps);
    }
    if (!more) return 0;
    if (seen != 7) return dl__st_err(ps, "tensor '%s': missing \"%s\"", name, !(seen & 1) ? "dtype" : !(seen & 2) ? "shape" : "data_offsets");
    /* numel <= e - b <= data size: every product below is bounded before it is formed. */
    for (i = 0; i < t->ndim; i++)
        if (t->shape[i] == 0) numel = 0;
    for (i = 0; i < t->ndim && numel; i++) {
        uint64_t d = (uint64_t)t->shape[i];
        if (numel > ps->data_size / d) { numel = UINT64_MAX; break; }
        numel *= d;
    }
    nbytes = numel == UINT64_MAX ? UINT64_MAX : numel * (uint64_t)dl__st_dtypes[e->file_dtype].size;
    if (e->begin > e->end || e->end > ps->data_size)
        return dl__st_err(ps, "tensor '%s': data_offsets [%llu, %llu] outside the %llu data bytes", name,
                          (unsigned long long)e->begin, (unsigned long long)e->end, (unsigned long long)ps->data_size);
    if (nbytes != e->end - e->begin)
        return dl__st_err(ps, "tensor '%s': %s with this shape needs %s%llu bytes, data_offsets give %llu", name,
                          dl__st_dtypes[e->file_dtype].name, nbytes == UINT64_MAX ? "more than " : "",
                          (unsigned long long)(nbytes == UINT64_MAX ? ps->data_size : nbytes), (unsigned long long)(e->end - e->begin));
    ps->file_bytes += nbytes;
    if (ps->file_bytes > ps->data_size) return dl__st_err(ps, "tensor '%s': tensors overlap (more tensor bytes than data bytes)", name);
    if (numel > SIZE_MAX / 8 || ((numel * 4 + 63) & ~(uint64_t)63) > SIZE_MAX / 2 - ps->out_bytes) /* 32-bit hosts */
        return dl__st_err(ps, "tensor '%s' is too large for this machine", name);
    t->dtype = dl__st_dtypes[e->file_dtype].to;
    t->device = DL_CPU;
    t->numel = (size_t)numel;
    dl__contig_strides(t->ndim, t->shape, t->strides);
    if (ps->st) { /* the data pointer: next 64-byte aligned slot */
        t->data = ps->data;
        ps->data += (t->numel * dl_dtype_size(t->dtype) + 63) & ~(size_t)63;
    } else {
        ps->out_bytes += (t->numel * dl_dtype_size(t->dtype) + 63) & ~(size_t)63;
    }
    return 1;
}

static int dl__st_header(dl__st_parser *ps) {
    int more;
    ps->p = ps->start;
    ps->n = ps->n_meta = ps->seen_meta = 0;
    ps->file_bytes = 0;
    if (ps->p >= ps->end || *ps->p != '{') return dl__st_err(ps, "header must start with '{'");
    more = dl__js_open(ps);
    while (more == 1) {
        char scratch[64];
        size_t len;
        dl__st_entry tmp;
        char *key = dl__st_string(ps, scratch, sizeof scratch, &len);
        if (!key || !dl__js_char(ps, ':')) return 0;
        if (len == 12 && memcmp(key, "__metadata__", 12) == 0) {
            if (ps->seen_meta++) return dl__st_err(ps, "duplicate key \"__metadata__\"");
            if (!dl__st_metadata(ps)) return 0;
        } else {
            dl__st_entry *e = ps->st ? &ps->st->entries[ps->n] : &tmp;
            if (!dl__st_tensor_info(ps, key, e)) return 0;
            if (ps->st) { e->name = key; ps->pool += len + 1; }
            ps->n++;
        }
        more = dl__js_next(ps);
    }
    if (!more) return 0;
    dl__js_ws(ps);
    if (ps->p != ps->end) return dl__st_err(ps, "header byte %zu: unexpected data after the JSON object", (size_t)(ps->p - ps->start));
    return 1;
}

static int dl__st_cmp_name(const void *a, const void *b) {
    return strcmp(((const dl__st_entry *)a)->name, ((const dl__st_entry *)b)->name);
}
static int dl__st_cmp_key(const void *a, const void *b) {
    return strcmp(((const dl__st_pair *)a)->key, ((const dl__st_pair *)b)->key);
}
static int dl__st_cmp_offsets(const void *a, const void *b) {
    const dl__st_entry *x = (const dl__st_entry *)a, *y = (const dl__st_entry *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return strcmp(x->name, y->name); /* deterministic order of empty tensors at one offset */
}

static size_t dl__st_round16(size_t n) { return (n + 15) & ~(size_t)15; }

/* Parses and validates header bytes [json, json+len) for a file whose data part has data_size
   bytes. Returns st with entries sorted by offset and data not yet read, or NULL with ps->err. */
static dl_safetensors *dl__st_build(dl__st_parser *ps, const unsigned char *json, size_t len, uint64_t data_size) {
    dl_safetensors *st;
    size_t total;
    unsigned char *mem;
    int i;
    memset(ps, 0, sizeof *ps);
    ps->start = json;
    ps->end = json + len;
    ps->data_size = data_size;
    if (!dl__st_header(ps)) return NULL;
    if (ps->file_bytes != data_size) {
        dl__st_err(ps, "tensors cover %llu of the %llu data bytes", (unsigned long long)ps->file_bytes, (unsigned long long)data_size);
        return NULL;
    }
    /* One block: struct, entries, metadata pairs, strings, then 64-byte aligned tensor data. */
    total = dl__st_round16(sizeof(dl_safetensors)) + dl__st_round16((size_t)ps->n * sizeof(dl__st_entry)) +
            dl__st_round16((size_t)ps->n_meta * sizeof(dl__st_pair)) + dl__st_round16(ps->pool_bytes) + 64 + ps->out_bytes;
    mem = (unsigned char *)DL_MALLOC(total);
    if (!mem) { dl__st_err(ps, "out of memory (%zu bytes)", total); return NULL; }
    st = (dl_safetensors *)mem;
    mem += dl__st_round16(sizeof(dl_safetensors));
    st->entries = (dl__st_entry *)mem;
    mem += dl__st_round16((size_t)ps->n * sizeof(dl__st_entry));
    st->meta = (dl__st_pair *)mem;
    mem += dl__st_round16((size_t)ps->n_meta * sizeof(dl__st_pair));
    ps->pool = (char *)mem;
    mem += dl__st_round16(ps->pool_bytes);
    ps->data = (unsigned char *)(((uintptr_t)mem + 63) & ~(uintptr_t)63);
    ps->st = st;
    if (!dl__st_header(ps)) { DL_FREE(st); return NULL; } /* cannot fail: same bytes as before */
    st->n = ps->n;
    st->n_meta = ps->n_meta;
    /* Duplicates (names or metadata keys), then the tiling of the data part. */
    qsort(st->entries, (size_t)st->n, sizeof(dl__st_entry), dl__st_cmp_name);
    for (i = 1; i < st->n; i++)
        if (strcmp(st->entries[i - 1].name, st->entries[i].name) == 0) {
            dl__st_err(ps, "duplicate tensor name '%s'", st->entries[i].name);
            DL_FREE(st);
            return NULL;
        }
    qsort(st->meta, (size_t)st->n_meta, sizeof(dl__st_pair), dl__st_cmp_key);
    for (i = 1; i < st->n_meta; i++)
        if (strcmp(st->meta[i - 1].key, st->meta[i].key) == 0) {
            dl__st_err(ps, "duplicate __metadata__ key '%s'", st->meta[i].key);
            DL_FREE(st);
            return NULL;
        }
    qsort(st->entries, (size_t)st->n, sizeof(dl__st_entry), dl__st_cmp_offsets);
    {
        uint64_t at = 0;
        for (i = 0; i < st->n; i++) {
            if (st->entries[i].begin != at) {
                dl__st_err(ps, "tensor '%s': data_offsets [%llu, %llu] leave a gap or overlap (expected to start at %llu)",
                           st->entries[i].name, (unsigned long long)st->entries[i].begin,
                           (unsigned long long)st->entries[i].end, (unsigned long long)at);
                DL_FREE(st);
                return NULL;
            }
            at = st->entries[i].end;
        }
    }
    return st;
}

/* Converts n elements of e's file dtype at src (little-endian) into dst; element indices start at
   first (for messages). 0 on an I64 value out of the int32 range. */
static int dl__st_convert(dl__st_parser *ps, const dl__st_entry *e, void *dst, const unsigned char *src, size_t n, size_t first) {
    float *f = (float *)dst;
    int32_t *i32 = (int32_t *)dst;
    size_t i;
    switch (e->file_dtype) {
    case DL__ST_U8: memcpy(dst, src, n); break;
    case DL__ST_BOOL: for (i = 0; i < n; i++) ((uint8_t *)dst)[i] = src[i] != 0; break;
    case DL__ST_F32: for (i = 0; i < n; i++) f[i] = dl__st_bits_f32(dl__st_rd32(src + 4 * i)); break;
    case DL__ST_I32: /* int32_t is two's complement: the bits say it all */
        for (i = 0; i < n; i++) { uint32_t u = dl__st_rd32(src + 4 * i); memcpy(&i32[i], &u, 4); }
        break;
    case DL__ST_F16: for (i = 0; i < n; i++) f[i] = dl__st_f16(dl__st_rd16(src + 2 * i)); break;
    case DL__ST_BF16: for (i = 0; i < n; i++) f[i] = dl__st_bits_f32(dl__st_rd16(src + 2 * i) << 16); break;
    case DL__ST_F64:
        for (i = 0; i < n; i++) {
            uint64_t u = dl__st_rd64(src + 8 * i);
            double d;
            memcpy(&d, &u, 8);
            f[i] = (float)d;
        }
        break;
    case DL__ST_I64:
        for (i = 0; i < n; i++) {
            uint64_t u = dl__st_rd64(src + 8 * i);
            int64_t v;
            memcpy(&v, &u, 8);
            if (v < INT32_MIN || v > INT32_MAX)
                return dl__st_err(ps, "tensor '%s': I64 value %lld at index %zu does not fit in int32", e->name, (long long)v, first + i);
            i32[i] = (int32_t)v;
        }
        break;
    }
    return 1;
}

/* The data part comes through read(ctx, buf, n) -> bytes read, in file order. */
typedef size_t (*dl__st_read_fn)(void *ctx, void *buf, size_t n);

static int dl__st_fill(dl__st_parser *ps, dl_safetensors *st, dl__st_read_fn read_fn, void *ctx) {
    unsigned char chunk[8192];
    int i, native = dl__st_little_endian();
    for (i = 0; i < st->n; i++) {
        const dl__st_entry *e = &st->entries[i];
        size_t fsize = (size_t)dl__st_dtypes[e->file_dtype].size, osize = dl_dtype_size(e->t.dtype);
        size_t done = 0, total = e->t.numel;
        if (native && (e->file_dtype == DL__ST_F32 || e->file_dtype == DL__ST_I32 || e->file_dtype == DL__ST_U8)) {
            if (read_fn(ctx, e->t.data, total * fsize) != total * fsize) return dl__st_err(ps, "file is truncated");
            continue;
        }
        while (done < total) {
            size_t k = total - done < sizeof chunk / fsize ? total - done : sizeof chunk / fsize;
            if (read_fn(ctx, chunk, k * fsize) != k * fsize) return dl__st_err(ps, "file is truncated");
            if (!dl__st_convert(ps, e, (unsigned char *)e->t.data + done * osize, chunk, k, done)) return 0;
            done += k;
        }
    }
    qsort(st->entries, (size_t)st->n, sizeof(dl__st_entry), dl__st_cmp_name);
    return 1;
}

typedef struct dl__st_memsrc { const unsigned char *p; size_t left; } dl__st_memsrc;

static size_t dl__st_read_mem(void *ctx, void *buf, size_t n) {
    dl__st_memsrc *m = (dl__st_memsrc *)ctx;
    if (n > m->left) n = m->left;
    memcpy(buf, m->p, n);
    m->p += n;
    m->left -= n;
    return n;
}

/* Checks the 8-byte length prefix against the file size; returns the header length or 0 (+ err). */
static size_t dl__st_prefix(dl__st_parser *ps, const unsigned char *first8, uint64_t file_size) {
    uint64_t n = dl__st_rd64(first8);
    if (n > DL__ST_MAX_HEADER) { dl__st_err(ps, "header length %llu is over the limit of %u bytes", (unsigned long long)n, DL__ST_MAX_HEADER); return 0; }
    if (n + 8 > file_size) { dl__st_err(ps, "header length %llu is beyond the end of the %llu-byte file", (unsigned long long)n, (unsigned long long)file_size); return 0; }
    if (n == 0) { dl__st_err(ps, "header must start with '{'"); return 0; }
    return (size_t)n;
}

DLDEF dl_safetensors *dl_safetensors_parse(const void *bytes, size_t size) {
    dl__st_parser ps;
    dl_safetensors *st;
    dl__st_memsrc src;
    size_t n;
    const unsigned char *b = (const unsigned char *)bytes;
    if (!bytes) return (dl_safetensors *)dl__fail("dl_safetensors_parse: bytes is NULL");
    if (size < 8) return (dl_safetensors *)dl__fail("dl_safetensors_parse: %zu bytes is too short for a safetensors file", size);
    ps.err[0] = 0;
    if (!(n = dl__st_prefix(&ps, b, size)) || !(st = dl__st_build(&ps, b + 8, n, size - 8 - n)))
        return (dl_safetensors *)dl__fail("dl_safetensors_parse: %s", ps.err);
    src.p = b + 8 + n;
    src.left = size - 8 - n;
    if (!dl__st_fill(&ps, st, dl__st_read_mem, &src)) {
        DL_FREE(st);
        return (dl_safetensors *)dl__fail("dl_safetensors_parse: %s", ps.err);
    }
    return st;
}

#ifndef DL_NO_STDIO
#if defined(_WIN32)
#define DL__FSEEK _fseeki64
#define DL__FTELL _ftelli64
#else
#define DL__FSEEK fseek
#define DL__FTELL ftell
#endif

static size_t dl__st_read_file(void *ctx, void *buf, size_t n) { return fread(buf, 1, n, (FILE *)ctx); }

DLDEF dl_safetensors *dl_safetensors_load(const char *path) {
    dl__st_parser ps;
    dl_safetensors *st = NULL;
    unsigned char first8[8], *header = NULL;
    long long file_size;
    size_t n = 0;
    FILE *f;
    if (!path) return (dl_safetensors *)dl__fail("dl_safetensors_load: path is NULL");
    f = fopen(path, "rb");
    if (!f) return (dl_safetensors *)dl__fail("dl_safetensors_load: cannot open '%s'", path);
    ps.err[0] = 0;
    if (DL__FSEEK(f, 0, SEEK_END) != 0 || (file_size = (long long)DL__FTELL(f)) < 0 || DL__FSEEK(f, 0, SEEK_SET) != 0)
        dl__st_err(&ps, "cannot determine the file size");
    else if (file_size < 8 || fread(first8, 1, 8, f) != 8)
        dl__st_err(&ps, "%lld bytes is too short for a safetensors file", file_size);
    else if ((n = dl__st_prefix(&ps, first8, (uint64_t)file_size)) != 0) {
        header = (unsigned char *)DL_MALLOC(n);
        if (!header) dl__st_err(&ps, "out of memory (%zu bytes)", n);
        else if (fread(header, 1, n, f) != n) dl__st_err(&ps, "file is truncated");
        else if ((st = dl__st_build(&ps, header, n, (uint64_t)file_size - 8 - n)) != NULL && !dl__st_fill(&ps, st, dl__st_read_file, f)) {
            DL_FREE(st);
            st = NULL;
        }
    }
    DL_FREE(header);
    fclose(f);
    if (!st) return (dl_safetensors *)dl__fail("dl_safetensors_load: '%s': %s", path, ps.err);
    return st;
}
#endif

DLDEF void dl_safetensors_free(dl_safetensors *st) { DL_FREE(st); }

DLDEF int dl_safetensors_count(const dl_safetensors *st) { return st ? st->n : 0; }
DLDEF int dl_safetensors_meta_count(const dl_safetensors *st) { return st ? st->n_meta : 0; }

DLDEF const char *dl_safetensors_name(const dl_safetensors *st, int i) {
    return st && i >= 0 && i < st->n ? st->entries[i].name : NULL;
}

DLDEF const char *dl_safetensors_meta_key(const dl_safetensors *st, int i) {
    return st && i >= 0 && i < st->n_meta ? st->meta[i].key : NULL;
}

DLDEF dl_tensor *dl_safetensors_get(const dl_safetensors *st, const char *name) {
    dl__st_entry key, *e;
    if (!st || !name) return NULL;
    key.name = name;
    e = (dl__st_entry *)bsearch(&key, st->entries, (size_t)st->n, sizeof(dl__st_entry), dl__st_cmp_name);
    return e ? &e->t : NULL;
}

DLDEF const char *dl_safetensors_meta(const dl_safetensors *st, const char *key) {
    dl__st_pair k;
    const dl__st_pair *p;
    if (!st || !key) return NULL;
    k.key = key;
    p = (const dl__st_pair *)bsearch(&k, st->meta, (size_t)st->n_meta, sizeof(dl__st_pair), dl__st_cmp_key);
    return p ? p->value : NULL;
}

/* ---- Writing ----
   The header text is produced twice by dl__st_header_text: once to measure (out == NULL), once
   into the output. Bytes then go to a sink: memory or a FILE*. */

typedef struct dl__st_out { unsigned char *buf; size_t len; } dl__st_out;

static void dl__st_put(dl__st_out *o, const char *s, size_t n) {
    if (o->buf) memcpy(o->buf + o->len, s, n);
    o->len += n;
}
static void dl__st_puts(dl__st_out *o, const char *s) { dl__st_put(o, s, strlen(s)); }

/* A JSON string escaped as serde_json does (so headers match Python's byte for byte). */
static void dl__st_put_json(dl__st_out *o, const char *s) {
    dl__st_puts(o, "\"");
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[8];
        if (c == '"') dl__st_puts(o, "\\\"");
        else if (c == '\\') dl__st_puts(o, "\\\\");
        else if (c == '\n') dl__st_puts(o, "\\n");
        else if (c == '\r') dl__st_puts(o, "\\r");
        else if (c == '\t') dl__st_puts(o, "\\t");
        else if (c == '\b') dl__st_puts(o, "\\b");
        else if (c == '\f') dl__st_puts(o, "\\f");
        else if (c < 0x20) { snprintf(esc, sizeof esc, "\\u%04x", c); dl__st_puts(o, esc); }
        else dl__st_put(o, s, 1);
    }
    dl__st_puts(o, "\"");
}

static int dl__st_valid_utf8(const char *s) {
    const unsigned char *p = (const unsigned char *)s, *end = p + strlen(s);
    while (p < end) {
        int k = dl__utf8_len(p, end);
        if (!k) return 0;
        p += k;
    }
    return 1;
}

typedef struct dl__st_item { const char *name; dl_tensor *t; } dl__st_item;

static int dl__st_rank(dl_dtype d) { return d == DL_F32 ? 0 : d == DL_I32 ? 1 : 2; }

/* Python's writer order: dtype alignment descending (F32, I32, U8 for us), then name. */
static int dl__st_cmp_item(const void *a, const void *b) {
    const dl__st_item *x = (const dl__st_item *)a, *y = (const dl__st_item *)b;
    int r = dl__st_rank(x->t->dtype) - dl__st_rank(y->t->dtype);
    return r ? r : strcmp(x->name, y->name);
}
static int dl__st_cmp_item_name(const void *a, const void *b) {
    return strcmp(((const dl__st_item *)a)->name, ((const dl__st_item *)b)->name);
}

static size_t dl__st_header_text(dl__st_out *o, const dl__st_item *items, int n, int n_meta, const char *const *keys, const char *const *values) {
    char num[64];
    size_t offset = 0, start = o->len;
    int i, j;
    dl__st_puts(o, "{");
    if (n_meta > 0) {
        dl__st_puts(o, "\"__metadata__\":{");
        for (i = 0; i < n_meta; i++) {
            if (i) dl__st_puts(o, ",");
            dl__st_put_json(o, keys[i]);
            dl__st_puts(o, ":");
            dl__st_put_json(o, values[i]);
        }
        dl__st_puts(o, n ? "}," : "}");
    }
    for (i = 0; i < n; i++) {
        const dl_tensor *t = items[i].t;
        size_t bytes = t->numel * dl_dtype_size(t->dtype);
        if (i) dl__st_puts(o, ",");
        dl__st_put_json(o, items[i].name);
        dl__st_puts(o, t->dtype == DL_F32 ? ":{\"dtype\":\"F32\",\"shape\":[" : t->dtype == DL_I32 ? ":{\"dtype\":\"I32\",\"shape\":[" : ":{\"dtype\":\"U8\",\"shape\":[");
        for (j = 0; j < t->ndim; j++) {
            snprintf(num, sizeof num, j ? ",%d" : "%d", t->shape[j]);
            dl__st_puts(o, num);
        }
        snprintf(num, sizeof num, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)offset, (unsigned long long)(offset + bytes));
        dl__st_puts(o, num);
        offset += bytes;
    }
    dl__st_puts(o, "}");
    while ((o->len - start) % 8) dl__st_puts(o, " ");
    return offset;
}

typedef int (*dl__st_write_fn)(void *ctx, const void *p, size_t n); /* 0 on success */

/* Tensor t's elements in logical order, little-endian: one write when that is its memory, else
   row by row along the last dimension through a small buffer. */
static int dl__st_write_tensor(const dl_tensor *t, dl__st_write_fn write_fn, void *ctx) {
    unsigned char chunk[8192];
    size_t esize = dl_dtype_size(t->dtype), k = 0, row, j, len = t->ndim ? (size_t)t->shape[t->ndim - 1] : 1;
    ptrdiff_t step = t->ndim ? t->strides[t->ndim - 1] * (ptrdiff_t)esize : 0;
    if (dl_is_contiguous(t) && (esize == 1 || dl__st_little_endian())) return write_fn(ctx, t->data, t->numel * esize);
    for (row = 0; len && row < t->numel / len; row++) {
        const unsigned char *src = (const unsigned char *)t->data + dl__offset_of(t, row * len) * (ptrdiff_t)esize;
        for (j = 0; j < len; j++) {
            if (esize == 1) chunk[k] = src[(ptrdiff_t)j * step];
            else { uint32_t v; memcpy(&v, src + (ptrdiff_t)j * step, 4); dl__st_wr32(chunk + k, v); }
            k += esize;
            if (k == sizeof chunk) {
                if (write_fn(ctx, chunk, k)) return -1;
                k = 0;
            }
        }
    }
    return k ? write_fn(ctx, chunk, k) : 0;
}

/* Validates the arguments and builds the header: *header (DL_MALLOC'd, caller frees) of *hlen
   bytes, *items sorted in file order (inside the same allocation), *data_bytes of tensor data. */
static int dl__st_prepare(dl__st_parser *ps, int n, const char *const *names, dl_tensor *const *tensors, int n_meta,
                          const char *const *keys, const char *const *values, unsigned char **header, size_t *hlen, dl__st_item **items) {
    dl__st_out o;
    dl__st_item *it;
    int i, j;
    size_t items_bytes;
    if (n < 0 || n_meta < 0 || (n > 0 && (!names || !tensors)) || (n_meta > 0 && (!keys || !values)))
        return dl__st_err(ps, "bad arguments (n %d, n_meta %d, or a NULL array)", n, n_meta);
    for (i = 0; i < n; i++) {
        const dl_tensor *t = tensors[i];
        if (!names[i]) return dl__st_err(ps, "name %d is NULL", i);
        if (!t) return dl__st_err(ps, "tensor '%s' is NULL", names[i]);
        if (t->device != DL_CPU) return dl__st_err(ps, "tensor '%s' is not on the CPU", names[i]);
        if (dl_dtype_size(t->dtype) == 0) return dl__st_err(ps, "tensor '%s' has an unknown dtype", names[i]);
        if (!dl__st_valid_utf8(names[i])) return dl__st_err(ps, "name %d is not valid UTF-8", i);
        if (strcmp(names[i], "__metadata__") == 0) return dl__st_err(ps, "\"__metadata__\" cannot name a tensor");
    }
    for (i = 0; i < n_meta; i++) {
        if (!keys[i] || !values[i]) return dl__st_err(ps, "metadata entry %d is NULL", i);
        if (!dl__st_valid_utf8(keys[i]) || !dl__st_valid_utf8(values[i])) return dl__st_err(ps, "metadata entry '%.40s' is not valid UTF-8", keys[i]);
        for (j = 0; j < i; j++)
            if (strcmp(keys[i], keys[j]) == 0) return dl__st_err(ps, "duplicate metadata key '%s'", keys[i]);
    }
    items_bytes = dl__st_round16(sizeof(dl__st_item) * (size_t)(n ? n : 1));
    it = (dl__st_item *)DL_MALLOC(items_bytes);
    if (!it) return dl__st_err(ps, "out of memory");
    for (i = 0; i < n; i++) { it[i].name = names[i]; it[i].t = tensors[i]; }
    qsort(it, (size_t)n, sizeof *it, dl__st_cmp_item_name);
    for (i = 1; i < n; i++)
        if (strcmp(it[i - 1].name, it[i].name) == 0) { dl__st_err(ps, "duplicate tensor name '%s'", it[i].name); DL_FREE(it); return 0; }
    qsort(it, (size_t)n, sizeof *it, dl__st_cmp_item);
    o.buf = NULL;
    o.len = 0;
    dl__st_header_text(&o, it, n, n_meta, keys, values);
    *hlen = o.len;
    o.buf = (unsigned char *)DL_MALLOC(8 + o.len);
    if (!o.buf) { DL_FREE(it); return dl__st_err(ps, "out of memory"); }
    dl__st_wr64(o.buf, (uint64_t)*hlen);
    o.len = 8;
    dl__st_header_text(&o, it, n, n_meta, keys, values);
    *header = o.buf;
    *items = it;
    return 1;
}

/* Writes the whole file through write(); returns its size, 0 on error. */
static size_t dl__st_write_all(dl__st_parser *ps, int n, const char *const *names, dl_tensor *const *tensors, int n_meta,
                               const char *const *keys, const char *const *values, dl__st_write_fn write_fn, void *ctx, int measure_only) {
    unsigned char *header = NULL;
    dl__st_item *items = NULL;
    size_t hlen = 0, size;
    int i, ok = 1;
    if (!dl__st_prepare(ps, n, names, tensors, n_meta, keys, values, &header, &hlen, &items)) return 0;
    size = 8 + hlen;
    for (i = 0; i < n; i++) size += items[i].t->numel * dl_dtype_size(items[i].t->dtype);
    if (!measure_only) {
        ok = write_fn(ctx, header, 8 + hlen) == 0;
        for (i = 0; i < n && ok; i++) ok = dl__st_write_tensor(items[i].t, write_fn, ctx) == 0;
        if (!ok) dl__st_err(ps, "write failed");
    }
    DL_FREE(header);
    DL_FREE(items);
    return ok ? size : 0;
}

static int dl__st_write_mem(void *ctx, const void *p, size_t n) {
    dl__st_out *o = (dl__st_out *)ctx;
    memcpy(o->buf + o->len, p, n);
    o->len += n;
    return 0;
}

DLDEF size_t dl_safetensors_serialize(int n, const char *const *names, dl_tensor *const *tensors, int n_meta,
                                      const char *const *meta_keys, const char *const *meta_values, void *out, size_t capacity) {
    dl__st_parser ps;
    dl__st_out o;
    size_t size = dl__st_write_all(&ps, n, names, tensors, n_meta, meta_keys, meta_values, NULL, NULL, 1);
    if (!size) { dl__fail("dl_safetensors_serialize: %s", ps.err); return 0; }
    if (!out || capacity < size) return size;
    o.buf = (unsigned char *)out;
    o.len = 0;
    return dl__st_write_all(&ps, n, names, tensors, n_meta, meta_keys, meta_values, dl__st_write_mem, &o, 0);
}

#ifndef DL_NO_STDIO
static int dl__st_write_file(void *ctx, const void *p, size_t n) { return fwrite(p, 1, n, (FILE *)ctx) == n ? 0 : -1; }

DLDEF int dl_safetensors_save(const char *path, int n, const char *const *names, dl_tensor *const *tensors, int n_meta,
                              const char *const *meta_keys, const char *const *meta_values) {
    dl__st_parser ps;
    FILE *f;
    size_t size;
    if (!path) { dl__fail("dl_safetensors_save: path is NULL"); return -1; }
    /* Validate before touching the file, so that a bad call leaves an existing file intact. */
    if (!dl__st_write_all(&ps, n, names, tensors, n_meta, meta_keys, meta_values, NULL, NULL, 1)) {
        dl__fail("dl_safetensors_save: %s", ps.err);
        return -1;
    }
    f = fopen(path, "wb");
    if (!f) { dl__fail("dl_safetensors_save: cannot open '%s' for writing", path); return -1; }
    size = dl__st_write_all(&ps, n, names, tensors, n_meta, meta_keys, meta_values, dl__st_write_file, f, 0);
    if (fclose(f) != 0 && size) { size = 0; dl__st_err(&ps, "write failed"); }
    if (!size) { dl__fail("dl_safetensors_save: '%s': %s", path, ps.err); return -1; }
    return 0;
}
#endif
