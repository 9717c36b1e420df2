/* safetensors: round trips, files written by Python's safetensors (tests/data, made by
   tools/make_fixtures.py), and hostile input: truncation at every length, corrupted bytes,
   impossible offsets and shapes, bad JSON. Every DL_MALLOC request is recorded, to check that a
   file can never make the reader allocate more than a small multiple of its own size.

   ./build/test_safetensors --write-fixture tests/data/from_dl.safetensors   rewrites dl's fixture
   (then run tools/make_fixtures.py to check it in Python). */
#define _XOPEN_SOURCE 700 /* fork, setrlimit, opendir: the full-disk test */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

static size_t test_largest_malloc;
static void *test_malloc(size_t n) {
    if (n > test_largest_malloc) test_largest_malloc = n;
    return malloc(n);
}
#define DL_MALLOC(n) test_malloc(n)
#define DL_REALLOC(p, n) realloc(p, n)
#define DL_FREE(p) free(p)
#define DL_IMPLEMENTATION
#include "../dl_tensor.h"
#include "test.h"

#define I32_MIN (-2147483647 - 1)

static char tmp_path[512] = "test_safetensors.tmp"; /* main() puts it next to the program */

/* ---- helpers ---- */

static unsigned char *read_all(const char *name, size_t *size) {
    static const char *const dirs[] = {"tests/data/", "data/", "../tests/data/"};
    char path[256];
    int i;
    for (i = 0; i < 3; i++) {
        FILE *f;
        long n;
        unsigned char *buf;
        snprintf(path, sizeof path, "%s%s", dirs[i], name);
        f = fopen(path, "rb");
        if (!f) continue;
        fseek(f, 0, SEEK_END);
        n = ftell(f);
        fseek(f, 0, SEEK_SET);
        buf = (unsigned char *)malloc((size_t)n + 1);
        if (fread(buf, 1, (size_t)n, f) != (size_t)n) n = 0;
        fclose(f);
        *size = (size_t)n;
        return buf;
    }
    *size = 0;
    return NULL;
}

static const char *fixture_path(const char *name) {
    static char path[256];
    static const char *const dirs[] = {"tests/data/", "data/", "../tests/data/"};
    int i;
    for (i = 0; i < 3; i++) {
        FILE *f;
        snprintf(path, sizeof path, "%s%s", dirs[i], name);
        if ((f = fopen(path, "rb")) != NULL) { fclose(f); return path; }
    }
    return name;
}

/* A file from header text and data bytes, in an exactly-sized heap block (ASan sees over-reads). */
static unsigned char *make_file(const char *json, const void *data, size_t data_len, size_t *size) {
    size_t n = strlen(json);
    unsigned char *b = (unsigned char *)malloc(8 + n + data_len + 1);
    int i;
    for (i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)n >> (8 * i));
    memcpy(b + 8, json, n);
    if (data_len) memcpy(b + 8 + n, data, data_len);
    *size = 8 + n + data_len;
    return b;
}

/* Parses bytes, checks the largest allocation is bounded by the input size; returns st (or NULL). */
static dl_safetensors *parse_bounded(const unsigned char *b, size_t size) {
    dl_safetensors *st;
    test_largest_malloc = 0;
    dl_clear_error();
    st = dl_safetensors_parse(b, size);
    CHECK(test_largest_malloc <= 8 * size + 1024, "allocated %zu bytes for a %zu-byte input", test_largest_malloc, size);
    CHECK(st || strstr(dl_error(), "dl_safetensors_parse") != NULL, "failure without a message: '%s'", dl_error());
    return st;
}

/* Expects the header json (+ data) to be rejected with a message containing `want`. */
static void expect_bad(const char *json, const void *data, size_t data_len, const char *want, int line) {
    size_t size;
    unsigned char *b = make_file(json, data, data_len, &size);
    dl_safetensors *st = parse_bounded(b, size);
    if (st) { printf("    FAIL line %d: accepted %s\n", line, json); test__checks_failed++; }
    else if (!strstr(dl_error(), want)) { printf("    FAIL line %d: message '%s' lacks '%s'\n", line, dl_error(), want); test__checks_failed++; }
    dl_safetensors_free(st);
    free(b);
}
#define EXPECT_BAD(json, data, len, want) expect_bad(json, data, len, want, __LINE__)

static dl_safetensors *parse_json(const char *json, const void *data, size_t data_len) {
    size_t size;
    unsigned char *b = make_file(json, data, data_len, &size);
    dl_safetensors *st = parse_bounded(b, size);
    free(b);
    return st;
}

static int same_bytes(const void *a, size_t na, const void *b, size_t nb) { return na == nb && (na == 0 || memcmp(a, b, na) == 0); }

/* ---- dl's own fixture (tests/data/from_dl.safetensors); tools/make_fixtures.py checks it in Python ---- */

static const char *const meta_keys[] = {"format", "note", "arch"};
static const char *const meta_values[] = {"dl", "tab\t quote\" backslash\\ newline\n ctrl\x01 \xe2\x9c\x93 \xf0\x9f\x8e\x89", "{\"layers\": [1, 2]}"};
#define UNI_NAME "\xc3\xbcn\xc3\xaf/\xe5\xad\x97"

typedef struct fixture {
    dl_tensor *owned[8];
    dl_tensor *t[8];
    const char *names[8];
    int n;
} fixture;

static void fixture_make(fixture *fx) {
    float base[12], row[10], bias[4] = {0.5f, -1.0f, 2.0f, 1e-7f}, scalar = -4.75f;
    int32_t ids[6] = {I32_MIN, -1, 0, 1, 7, 2147483647}, uni[2] = {1, 2};
    uint8_t mask[5] = {0, 1, 2, 254, 255};
    static const int s43[2] = {4, 3}, s4[1] = {4}, s23[2] = {2, 3}, s5[1] = {5}, s12[2] = {1, 2}, s20[2] = {2, 0}, s10[1] = {10};
    int i;
    for (i = 0; i < 12; i++) base[i] = (float)i * 0.5f - 2.0f;
    for (i = 0; i < 10; i++) row[i] = (float)i * 0.25f;
    fx->owned[0] = dl_tensor_from(DL_DTYPE_F32, 2, s43, base);
    fx->owned[1] = dl_tensor_from(DL_DTYPE_F32, 1, s4, bias);
    fx->owned[2] = dl_tensor_from(DL_DTYPE_I32, 2, s23, ids);
    fx->owned[3] = dl_tensor_from(DL_DTYPE_U8, 1, s5, mask);
    fx->owned[4] = dl_tensor_from(DL_DTYPE_I32, 2, s12, uni);
    fx->owned[5] = dl_tensor_new(DL_DTYPE_F32, 2, s20);
    fx->owned[6] = dl_tensor_from(DL_DTYPE_F32, 1, s10, row);
    fx->owned[7] = dl_tensor_from(DL_DTYPE_F32, 0, NULL, &scalar); /* last: see test_from_dl_fixture */
    for (i = 0; i < 8; i++) fx->t[i] = fx->owned[i];
    fx->t[0] = dl_transpose(fx->owned[0], 0, 1);           /* [3, 4], not contiguous */
    fx->t[6] = dl_slice(fx->owned[6], 0, 1, 10, 3);         /* row[1::3] = 0.25, 1, 1.75 */
    fx->names[0] = "weight"; fx->names[1] = "bias"; fx->names[2] = "ids"; fx->names[3] = "mask";
    fx->names[4] = UNI_NAME; fx->names[5] = "empty"; fx->names[6] = "sliced"; fx->names[7] = "scalar";
    fx->n = 8;
}

static void fixture_free(fixture *fx) {
    int i;
    for (i = 0; i < fx->n; i++) dl_tensor_free(fx->owned[i]);
}

static unsigned char *fixture_bytes(fixture *fx, int n_tensors, int n_meta, size_t *size) {
    size_t n = dl_safetensors_serialize(n_tensors, fx->names, fx->t, n_meta, meta_keys, meta_values, NULL, 0);
    unsigned char *b = (unsigned char *)malloc(n ? n : 1);
    *size = n ? dl_safetensors_serialize(n_tensors, fx->names, fx->t, n_meta, meta_keys, meta_values, b, n) : 0;
    return b;
}

/* Checks a loaded copy of the fixture (with or without its last tensor, the scalar), value by value. */
static void check_fixture_values(const dl_safetensors *st, int n_tensors) {
    static const float weight[12] = {-2.0f, -0.5f, 1.0f, 2.5f, -1.5f, 0.0f, 1.5f, 3.0f, -1.0f, 0.5f, 2.0f, 3.5f};
    static const float bias[4] = {0.5f, -1.0f, 2.0f, 1e-7f}, sliced[3] = {0.25f, 1.0f, 1.75f};
    static const int32_t ids[6] = {I32_MIN, -1, 0, 1, 7, 2147483647};
    static const uint8_t mask[5] = {0, 1, 2, 254, 255};
    dl_tensor *w = dl_safetensors_get(st, "weight"), *s = dl_safetensors_get(st, "scalar");
    dl_tensor *e = dl_safetensors_get(st, "empty"), *u = dl_safetensors_get(st, UNI_NAME);
    CHECK(dl_safetensors_num_tensors(st) == n_tensors, "count %d", dl_safetensors_num_tensors(st));
    CHECK(w && w->ndim == 2 && w->shape[0] == 3 && w->shape[1] == 4 && dl_is_contiguous(w), "weight shape");
    if (w) CHECK(memcmp(dl_f32(w), weight, sizeof weight) == 0, "weight values (transposed view saved in logical order)");
    CHECK(dl_safetensors_get(st, "bias") && memcmp(dl_f32(dl_safetensors_get(st, "bias")), bias, sizeof bias) == 0, "bias");
    CHECK(dl_safetensors_get(st, "ids") && memcmp(dl_i32(dl_safetensors_get(st, "ids")), ids, sizeof ids) == 0, "ids");
    CHECK(dl_safetensors_get(st, "mask") && memcmp(dl_u8(dl_safetensors_get(st, "mask")), mask, sizeof mask) == 0, "mask");
    CHECK(dl_safetensors_get(st, "sliced") && memcmp(dl_f32(dl_safetensors_get(st, "sliced")), sliced, sizeof sliced) == 0, "sliced");
    if (n_tensors == 8) CHECK(s && s->ndim == 0 && s->numel == 1 && dl_item(s) == -4.75f, "0-d scalar");
    CHECK(e && e->ndim == 2 && e->shape[0] == 2 && e->shape[1] == 0 && e->numel == 0, "zero-size");
    CHECK(u && u->dtype == DL_DTYPE_I32 && u->numel == 2 && dl_i32(u)[1] == 2, "unicode name");
}

static void test_roundtrip(void) {
    fixture fx;
    size_t size;
    unsigned char *b;
    dl_safetensors *st;
    int i;
    fixture_make(&fx);
    b = fixture_bytes(&fx, 8, 3, &size);
    CHECK(size > 0, "%s", dl_error());
    CHECK((b[0] | b[1] << 8) % 8 == 0, "header padded to 8 bytes");
    st = parse_bounded(b, size);
    CHECK(st != NULL, "%s", dl_error());
    if (st) {
        check_fixture_values(st, 8);
        for (i = 0; i < 3; i++) CHECK(dl_safetensors_meta(st, meta_keys[i]) && strcmp(dl_safetensors_meta(st, meta_keys[i]), meta_values[i]) == 0, "meta %s", meta_keys[i]);
        CHECK(dl_safetensors_num_meta(st) == 3 && strcmp(dl_safetensors_meta_key(st, 0), "arch") == 0, "meta keys sorted");
        CHECK(strcmp(dl_safetensors_name(st, 0), "bias") == 0 && strcmp(dl_safetensors_name(st, 7), UNI_NAME) == 0, "names sorted bytewise");
        CHECK(dl_safetensors_name(st, 8) == NULL && dl_safetensors_name(st, -1) == NULL, "name out of range");
        CHECK(dl_safetensors_get(st, "nope") == NULL && dl_safetensors_meta(st, "nope") == NULL, "absent");
        for (i = 0; i < 8; i++) CHECK(((uintptr_t)dl_safetensors_get(st, dl_safetensors_name(st, i))->data & 63) == 0, "data 64-byte aligned");
    }
    dl_safetensors_free(st);
    /* Through a file, and with no tensors at all. */
    CHECK(dl_safetensors_save(tmp_path, fx.n, fx.names, fx.t, 3, meta_keys, meta_values) == 0, "%s", dl_error());
    st = dl_safetensors_load(tmp_path);
    CHECK(st != NULL, "%s", dl_error());
    if (st) check_fixture_values(st, 8);
    dl_safetensors_free(st);
    CHECK(dl_safetensors_save(tmp_path, 0, NULL, NULL, 0, NULL, NULL) == 0, "%s", dl_error());
    st = dl_safetensors_load(tmp_path);
    CHECK(st && dl_safetensors_num_tensors(st) == 0 && dl_safetensors_num_meta(st) == 0, "empty file: %s", dl_error());
    dl_safetensors_free(st);
    remove(tmp_path);
    /* A buffer too small is not written to. */
    CHECK(dl_safetensors_serialize(fx.n, fx.names, fx.t, 0, NULL, NULL, b, 16) > 16 && b[8] == '{', "capacity respected");
    free(b);
    fixture_free(&fx);
}

/* Integer views: a transposed i32 and a strided u8 slice are written in logical order. */
static void test_noncontiguous_ints(void) {
    static const int s23[2] = {2, 3}, s7[1] = {7};
    static const int32_t iv[6] = {1, -2, 3, -4, 5, -6}, want_i[6] = {1, -4, -2, 5, 3, -6};
    static const uint8_t uv[7] = {10, 11, 12, 13, 14, 15, 16}, want_u[3] = {11, 13, 15};
    dl_tensor *i = dl_tensor_from(DL_DTYPE_I32, 2, s23, iv), *u = dl_tensor_from(DL_DTYPE_U8, 1, s7, uv);
    dl_tensor *ts[2];
    const char *names[2] = {"i", "u"};
    unsigned char buf[512];
    size_t n;
    dl_safetensors *st;
    ts[0] = dl_transpose(i, 0, 1);
    ts[1] = dl_slice(u, 0, 1, 6, 2);
    n = dl_safetensors_serialize(2, names, ts, 0, NULL, NULL, buf, sizeof buf);
    CHECK(n > 0 && n <= sizeof buf, "%s", dl_error());
    st = parse_bounded(buf, n);
    CHECK(st != NULL, "%s", dl_error());
    if (st) {
        dl_tensor *a = dl_safetensors_get(st, "i"), *b = dl_safetensors_get(st, "u");
        CHECK(a && a->shape[0] == 3 && a->shape[1] == 2 && memcmp(a->data, want_i, sizeof want_i) == 0, "transposed i32");
        CHECK(b && b->numel == 3 && memcmp(b->data, want_u, sizeof want_u) == 0, "sliced u8");
    }
    dl_safetensors_free(st);
    dl_tensor_free(i);
    dl_tensor_free(u);
}

static void test_from_dl_fixture(void) {
    fixture fx;
    size_t size, committed_size, py_size;
    unsigned char *b, *committed = read_all("from_dl.safetensors", &committed_size), *py = read_all("from_py_same.safetensors", &py_size);
    dl_safetensors *st;
    fixture_make(&fx);
    b = fixture_bytes(&fx, 8, 3, &size);
    CHECK(committed && same_bytes(b, size, committed, committed_size), "writer output differs from tests/data/from_dl.safetensors (rewrite it with --write-fixture and rerun tools/make_fixtures.py)");
    free(b);
    /* With one metadata entry (Python orders several by hash) and without the 0-d scalar (which
       safetensors.numpy writes with shape [1]), the bytes equal those of Python's writer. */
    b = fixture_bytes(&fx, 7, 1, &size);
    CHECK(py && same_bytes(b, size, py, py_size), "writer output differs from Python's tests/data/from_py_same.safetensors");
    st = dl_safetensors_load(fixture_path("from_py_same.safetensors"));
    CHECK(st != NULL, "%s", dl_error());
    if (st) check_fixture_values(st, 7);
    dl_safetensors_free(st);
    free(b);
    free(committed);
    free(py);
    fixture_free(&fx);
}

/* tests/data/mixed.safetensors: written by safetensors (Python), every dtype dl reads. */
static void test_python_mixed(void) {
    dl_safetensors *st = dl_safetensors_load(fixture_path("mixed.safetensors"));
    static const float f32[6] = {1.5f, -2.25f, 3e-8f, 1e30f, -0.0f, 7.0f};
    static const int32_t i32[4] = {I32_MIN, -1, 0, 2147483647}, i64[3] = {I32_MIN, 2147483647, 5};
    static const uint8_t u8[3] = {0, 128, 255}, boolean[4] = {1, 0, 0, 1};
    /* numpy: float16 [1, -2.5, 65504, 6e-8, 0.1] as float32 (6e-8 is the subnormal 2^-24) */
    static const float f16[5] = {1.0f, -2.5f, 65504.0f, 5.9604644775390625e-08f, 0.0999755859375f};
    const char *names[11] = {"bf16", "bool", "empty", "empty_i64", "f16", "f32", "f64", "i32", "i64", "scalar", "u8"};
    dl_tensor *t;
    int i;
    CHECK(st != NULL, "%s", dl_error());
    if (!st) return;
    CHECK(dl_safetensors_num_tensors(st) == 11, "count %d", dl_safetensors_num_tensors(st));
    for (i = 0; i < 11; i++) CHECK(dl_safetensors_name(st, i) && strcmp(dl_safetensors_name(st, i), names[i]) == 0, "name %d", i);
    t = dl_safetensors_get(st, "f32");
    CHECK(t && t->dtype == DL_DTYPE_F32 && t->shape[0] == 2 && t->shape[1] == 3 && memcmp(t->data, f32, sizeof f32) == 0, "f32");
    t = dl_safetensors_get(st, "i32");
    CHECK(t && t->dtype == DL_DTYPE_I32 && memcmp(t->data, i32, sizeof i32) == 0, "i32");
    t = dl_safetensors_get(st, "u8");
    CHECK(t && t->dtype == DL_DTYPE_U8 && memcmp(t->data, u8, sizeof u8) == 0, "u8");
    t = dl_safetensors_get(st, "bool");
    CHECK(t && t->dtype == DL_DTYPE_U8 && t->ndim == 2 && memcmp(t->data, boolean, 4) == 0, "BOOL loads as U8");
    t = dl_safetensors_get(st, "f16");
    CHECK(t && t->dtype == DL_DTYPE_F32 && t->numel == 8, "f16 -> f32");
    if (t) {
        CHECK(memcmp(t->data, f16, sizeof f16) == 0, "f16 values %g %g %g %.9g %.9g", dl_f32(t)[0], dl_f32(t)[1], dl_f32(t)[2], dl_f32(t)[3], dl_f32(t)[4]);
        CHECK(isinf(dl_f32(t)[5]) && dl_f32(t)[5] > 0 && isinf(dl_f32(t)[6]) && dl_f32(t)[6] < 0 && isnan(dl_f32(t)[7]), "f16 inf, -inf, nan");
    }
    t = dl_safetensors_get(st, "bf16");
    CHECK(t && t->dtype == DL_DTYPE_F32 && t->shape[0] == 2 && t->shape[1] == 2, "bf16 -> f32");
    if (t) {
        /* bf16(1e38) = 1.171875 * 2^126, bf16(1e-39) = 1.375 * 2^-130 (an f32 subnormal) */
        CHECK(dl_f32(t)[0] == 1.0f && dl_f32(t)[1] == -3.140625f && dl_f32(t)[2] == ldexpf(1.171875f, 126) && dl_f32(t)[3] == ldexpf(1.375f, -130), "bf16 values");
    }
    t = dl_safetensors_get(st, "f64");
    CHECK(t && t->dtype == DL_DTYPE_F32 && t->numel == 4, "f64 -> f32");
    if (t) CHECK(dl_f32(t)[0] == (float)(1.0 / 3.0) && isinf(dl_f32(t)[1]) && dl_f32(t)[2] == -2.5f && dl_f32(t)[3] == 0.0f, "f64 values (1e300 -> inf)");
    t = dl_safetensors_get(st, "i64");
    CHECK(t && t->dtype == DL_DTYPE_I32 && t->ndim == 2 && t->shape[1] == 3 && memcmp(t->data, i64, sizeof i64) == 0, "i64 -> i32");
    t = dl_safetensors_get(st, "scalar");
    CHECK(t && t->ndim == 1 && dl_item(t) == 3.25f, "scalar (the Python writer stored it as [1])");
    t = dl_safetensors_get(st, "empty");
    CHECK(t && t->numel == 0 && t->shape[0] == 0 && t->shape[1] == 3, "empty f32");
    t = dl_safetensors_get(st, "empty_i64");
    CHECK(t && t->numel == 0 && t->dtype == DL_DTYPE_I32 && t->shape[0] == 2, "empty i64");
    CHECK(dl_safetensors_num_meta(st) == 3, "meta count");
    CHECK(dl_safetensors_meta(st, "format") && strcmp(dl_safetensors_meta(st, "format"), "np") == 0, "meta format");
    CHECK(dl_safetensors_meta(st, "unicode") && strcmp(dl_safetensors_meta(st, "unicode"), "h\xc3\xa9llo w\xc3\xb6rld \xe2\x9c\x93 \xf0\x9f\x8e\x89") == 0, "unicode meta");
    CHECK(dl_safetensors_meta(st, "escapes") && strcmp(dl_safetensors_meta(st, "escapes"), "quote\" backslash\\ newline\n tab\t ctrl\x01 slash/") == 0, "escaped meta");
    dl_safetensors_free(st);
}

/* tests/data/handmade.safetensors: pretty-printed, reversed key order, metadata last, \u escapes
   with a surrogate pair, an ignored unknown field, a 0-d tensor. */
static void test_python_handmade(void) {
    dl_safetensors *st = dl_safetensors_load(fixture_path("handmade.safetensors"));
    static const float a[6] = {-2.5f, -1.5f, -0.5f, 0.5f, 1.5f, 2.5f};
    dl_tensor *t;
    CHECK(st != NULL, "%s", dl_error());
    if (!st) return;
    CHECK(dl_safetensors_num_tensors(st) == 3, "count");
    t = dl_safetensors_get(st, "a");
    CHECK(t && t->shape[0] == 3 && t->shape[1] == 2 && memcmp(t->data, a, sizeof a) == 0, "a");
    t = dl_safetensors_get(st, "b\xc3\xa4r \xf0\x9f\x90\xbb");
    CHECK(t && t->dtype == DL_DTYPE_I32 && dl_i32(t)[0] == 7 && dl_i32(t)[1] == -8, "\\u-escaped name");
    t = dl_safetensors_get(st, "s");
    CHECK(t && t->ndim == 0 && dl_item(t) == -0.5f, "0-d");
    CHECK(dl_safetensors_meta(st, "k\xc3\xa9y") && strcmp(dl_safetensors_meta(st, "k\xc3\xa9y"), "v\xc3\xa2lue") == 0, "meta");
    CHECK(dl_safetensors_meta(st, "empty") && dl_safetensors_meta(st, "empty")[0] == 0, "empty meta value");
    dl_safetensors_free(st);
}

static void test_i64_out_of_range(void) {
    dl_clear_error();
    CHECK(dl_safetensors_load(fixture_path("i64_overflow.safetensors")) == NULL, "2^40 does not fit an i32");
    CHECK(strstr(dl_error(), "dl_safetensors_load") && strstr(dl_error(), "1099511627776") && strstr(dl_error(), "index 2"), "%s", dl_error());
}

/* Every prefix of a valid file is rejected; every single-byte corruption is survived. */
static void test_truncated_and_corrupted(void) {
    static const char *const files[3] = {"mixed.safetensors", "handmade.safetensors", "from_dl.safetensors"};
    static const unsigned char values[6] = {0x00, 0xff, '"', '{', '9', 0x80};
    int f;
    for (f = 0; f < 3; f++) {
        size_t size, len, pos;
        unsigned char *file = read_all(files[f], &size);
        int rejected = 0, accepted = 0, v;
        CHECK(file != NULL, "missing %s", files[f]);
        if (!file) continue;
        for (len = 0; len < size; len++) {
            unsigned char *b = (unsigned char *)malloc(len ? len : 1);
            dl_safetensors *st;
            memcpy(b, file, len);
            st = parse_bounded(b, len);
            CHECK(st == NULL, "%s truncated to %zu bytes was accepted", files[f], len);
            dl_safetensors_free(st);
            free(b);
        }
        for (pos = 0; pos < size; pos++)
            for (v = 0; v < 7; v++) {
                unsigned char *b = (unsigned char *)malloc(size);
                dl_safetensors *st;
                memcpy(b, file, size);
                b[pos] = v < 6 ? values[v] : (unsigned char)(b[pos] ^ 1);
                st = parse_bounded(b, size);
                if (st) { accepted++; CHECK(dl_safetensors_num_tensors(st) >= 0, "usable"); }
                else rejected++;
                dl_safetensors_free(st);
                free(b);
            }
        CHECK(rejected > 0 && accepted > 0, "%s: %d rejected, %d accepted", files[f], rejected, accepted);
        free(file);
    }
}

static void test_header_length(void) {
    static const uint64_t lengths[5] = {(uint64_t)1 << 63, UINT64_MAX, 100000001, 1000, 0};
    static const char *const wants[5] = {"over the limit", "over the limit", "over the limit", "beyond the end", "start with"};
    unsigned char b[64];
    int i, k;
    for (i = 0; i < 5; i++) {
        dl_safetensors *st;
        memset(b, ' ', sizeof b);
        for (k = 0; k < 8; k++) b[k] = (unsigned char)(lengths[i] >> (8 * k));
        b[8] = '{';
        b[9] = '}';
        st = parse_bounded(b, sizeof b);
        CHECK(st == NULL && strstr(dl_error(), wants[i]), "length %llu: %s", (unsigned long long)lengths[i], dl_error());
    }
    CHECK(dl_safetensors_parse(b, 7) == NULL && strstr(dl_error(), "too short"), "%s", dl_error());
    CHECK(dl_safetensors_parse(NULL, 100) == NULL && strstr(dl_error(), "NULL"), "%s", dl_error());
    dl_clear_error();
    CHECK(dl_safetensors_load("/nonexistent/dir/x.safetensors") == NULL && strstr(dl_error(), "cannot open"), "%s", dl_error());
}

static void test_offsets_and_shapes(void) {
    static const unsigned char d[64] = {0};
    dl_safetensors *st;
    /* valid: two tensors, header order differs from offset order, zero-size ones anywhere */
    st = parse_json("{\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[4,6]},\"e\":{\"dtype\":\"F32\",\"shape\":[0,5],\"data_offsets\":[4,4]},"
                    "\"a\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]},\"z\":{\"dtype\":\"I32\",\"shape\":[0],\"data_offsets\":[6,6]}}", d, 6);
    CHECK(st && dl_safetensors_num_tensors(st) == 4, "valid layout rejected: %s", dl_error());
    dl_safetensors_free(st);
    st = parse_json("{}", NULL, 0);
    CHECK(st && dl_safetensors_num_tensors(st) == 0, "empty header: %s", dl_error());
    dl_safetensors_free(st);
    st = parse_json("{\"__metadata__\":null}   ", NULL, 0);
    CHECK(st && dl_safetensors_num_meta(st) == 0, "null metadata: %s", dl_error());
    dl_safetensors_free(st);
    EXPECT_BAD("{}", d, 1, "cover 0 of the 1");
    EXPECT_BAD("{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[1,3]}}", d, 4, "overlap");
    EXPECT_BAD("{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[1,3]}}", d, 3, "overlap");
    EXPECT_BAD("{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[3,5]}}", d, 5, "cover 4 of the 5");
    EXPECT_BAD("{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[1,3]}}", d, 3, "cover 2 of the 3");
    EXPECT_BAD("{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}}", d, 4, "gap or overlap");
    EXPECT_BAD("{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[2,4]}}", d, 3, "outside");
    EXPECT_BAD("{\"a\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[3,2]}}", d, 3, "outside");
    EXPECT_BAD("{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,18446744073709551615]}}", d, 2, "outside");
    EXPECT_BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", d, 4, "needs 8 bytes");
    EXPECT_BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[1099511627776,1099511627776],\"data_offsets\":[0,4]}}", d, 4, "too large");
    EXPECT_BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[2147483647,2147483647,2147483647],\"data_offsets\":[0,4]}}", d, 4, "needs more than 4 bytes");
    EXPECT_BAD("{\"a\":{\"dtype\":\"F64\",\"shape\":[4611686018427387904],\"data_offsets\":[0,0]}}", d, 0, "too large");
    EXPECT_BAD("{\"a\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", d, 1, "more than 8 dimensions");
    EXPECT_BAD("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0]}}", d, 1, "expected ','");
    EXPECT_BAD("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1,2]}}", d, 1, "expected ']'");
    EXPECT_BAD("{\"a\":{\"dtype\":\"U8\",\"shape\":[-1],\"data_offsets\":[0,1]}}", d, 1, "non-negative integer");
    EXPECT_BAD("{\"a\":{\"dtype\":\"U8\",\"shape\":[1.0],\"data_offsets\":[0,1]}}", d, 1, "non-negative integer");
    EXPECT_BAD("{\"a\":{\"dtype\":\"U8\",\"shape\":[1e0],\"data_offsets\":[0,1]}}", d, 1, "non-negative integer");
    EXPECT_BAD("{\"a\":{\"dtype\":\"U8\",\"shape\":[01],\"data_offsets\":[0,1]}}", d, 1, "non-negative integer");
    EXPECT_BAD("{\"a\":{\"dtype\":\"U8\",\"shape\":[18446744073709551616],\"data_offsets\":[0,1]}}", d, 1, "integer too large");
    EXPECT_BAD("{\"a\":{\"dtype\":\"U8\",\"shape\":\"1\",\"data_offsets\":[0,1]}}", d, 1, "expected '['");
    EXPECT_BAD("{\"a\":{\"dtype\":\"U8\",\"data_offsets\":[0,1]}}", d, 1, "missing \"shape\"");
    EXPECT_BAD("{\"a\":{\"shape\":[1],\"data_offsets\":[0,1]}}", d, 1, "missing \"dtype\"");
    EXPECT_BAD("{\"a\":{\"dtype\":\"U8\",\"shape\":[1]}}", d, 1, "missing \"data_offsets\"");
    EXPECT_BAD("{\"a\":[1]}", d, 0, "expected an object");
}

/* The worst case for memory per header byte: thousands of tiny tensors (parse_bounded checks). */
static void test_many_tiny_tensors(void) {
    static unsigned char data[3000];
    char *json = (char *)malloc(3000 * 64 + 16);
    size_t len = 0;
    int i, empty;
    for (empty = 0; empty < 2; empty++) {
        dl_safetensors *st;
        len = 0;
        json[len++] = '{';
        for (i = 0; i < 3000; i++)
            len += (size_t)sprintf(json + len, "%s\"%d\":{\"dtype\":\"U8\",\"shape\":[%s],\"data_offsets\":[%d,%d]}", i ? "," : "", i,
                                   empty ? "0" : "", empty ? 0 : i, empty ? 0 : i + 1);
        json[len++] = '}';
        json[len] = 0;
        st = parse_json(json, data, empty ? 0 : 3000);
        CHECK(st && dl_safetensors_num_tensors(st) == 3000, "%s", dl_error());
        dl_safetensors_free(st);
    }
    free(json);
}

static void test_dtypes_and_duplicates(void) {
    static const unsigned char d[8] = {0};
    static const char *const bad[8] = {"I8", "U16", "I16", "U32", "U64", "F8_E4M3", "float32", ""};
    char json[256];
    int i;
    for (i = 0; i < 8; i++) {
        snprintf(json, sizeof json, "{\"a\":{\"dtype\":\"%s\",\"shape\":[],\"data_offsets\":[0,1]}}", bad[i]);
        EXPECT_BAD(json, d, 1, "unsupported dtype");
    }
    EXPECT_BAD("{\"a\":{\"dtype\":3,\"shape\":[],\"data_offsets\":[0,1]}}", d, 1, "expected a string");
    EXPECT_BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]},\"a\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[4,8]}}", d, 8, "duplicate tensor name 'a'");
    EXPECT_BAD("{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}", d, 4, "duplicate field \"dtype\"");
    EXPECT_BAD("{\"__metadata__\":{},\"__metadata__\":{}}", d, 0, "duplicate key \"__metadata__\"");
    EXPECT_BAD("{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", d, 0, "duplicate __metadata__ key 'k'");
    EXPECT_BAD("{\"__metadata__\":{\"k\":1}}", d, 0, "must be strings");
    EXPECT_BAD("{\"__metadata__\":[\"k\"]}", d, 0, "expected '{'");
}

static void test_bad_json(void) {
    static const unsigned char d[4] = {0};
    char deep[400];
    int i;
    EXPECT_BAD(" {}", d, 0, "start with '{'");
    EXPECT_BAD("[]", d, 0, "start with '{'");
    EXPECT_BAD("{", d, 0, "unexpected end");
    EXPECT_BAD("{\"a", d, 0, "unterminated string");
    EXPECT_BAD("{\"a\\", d, 0, "unterminated string");
    EXPECT_BAD("{\"a\" {}}", d, 0, "expected ':'");
    EXPECT_BAD("{\"a\":{\"dtype\":\"U8\" \"shape\":[]}}", d, 0, "expected ',' or '}'");
    EXPECT_BAD("{} x", d, 0, "unexpected data after");
    EXPECT_BAD("{}}", d, 0, "unexpected data after");
    EXPECT_BAD("{}\x01", d, 0, "unexpected data after");
    EXPECT_BAD("{,}", d, 0, "expected a string");
    EXPECT_BAD("{\"a\":{},}", d, 0, "missing");
    EXPECT_BAD("{\"__metadata__\":{\"k\":\"v\",}}", d, 0, "expected a string");
    EXPECT_BAD("{\"__metadata__\":{\"k\":\"a\tb\"}}", d, 0, "control character");
    EXPECT_BAD("{\"__metadata__\":{\"k\":\"\\x\"}}", d, 0, "bad escape");
    EXPECT_BAD("{\"__metadata__\":{\"k\":\"\\u12G4\"}}", d, 0, "bad \\u escape");
    EXPECT_BAD("{\"__metadata__\":{\"k\":\"\\u12\"}}", d, 0, "bad \\u escape");
    EXPECT_BAD("{\"__metadata__\":{\"k\":\"\\ud83d\"}}", d, 0, "lone surrogate");
    EXPECT_BAD("{\"__metadata__\":{\"k\":\"\\ud83d\\u0041\"}}", d, 0, "lone surrogate");
    EXPECT_BAD("{\"__metadata__\":{\"k\":\"\\ude00\"}}", d, 0, "lone surrogate");
    EXPECT_BAD("{\"__metadata__\":{\"k\":\"\\u0000\"}}", d, 0, "\\u0000");
    EXPECT_BAD("{\"__metadata__\":{\"k\":\"\xff\"}}", d, 0, "invalid UTF-8");
    EXPECT_BAD("{\"__metadata__\":{\"k\":\"\xc0\xaf\"}}", d, 0, "invalid UTF-8");        /* overlong '/' */
    EXPECT_BAD("{\"__metadata__\":{\"k\":\"\xed\xa0\x80\"}}", d, 0, "invalid UTF-8");    /* encoded surrogate */
    EXPECT_BAD("{\"__metadata__\":{\"k\":\"\xf4\x90\x80\x80\"}}", d, 0, "invalid UTF-8"); /* > U+10FFFF */
    EXPECT_BAD("{\"__metadata__\":{\"k\":\"\xe2\x9c\"}}", d, 0, "invalid UTF-8");        /* cut sequence */
    /* unknown fields are skipped, however they look, up to 64 levels deep */
    {
        dl_safetensors *st = parse_json("{\"a\":{\"x\":{\"y\":[1,-2.5e+3,0.0,true,false,null,\"s\\n\",{}],\"z\":[]},\"dtype\":\"U8\",\"shape\":[],\"data_offsets\":[0,1]}}", d, 1);
        CHECK(st != NULL, "unknown fields: %s", dl_error());
        dl_safetensors_free(st);
    }
    EXPECT_BAD("{\"a\":{\"x\":01,\"dtype\":\"U8\",\"shape\":[],\"data_offsets\":[0,1]}}", d, 1, "expected ',' or '}'");
    EXPECT_BAD("{\"a\":{\"x\":-,\"dtype\":\"U8\",\"shape\":[],\"data_offsets\":[0,1]}}", d, 1, "expected a number");
    EXPECT_BAD("{\"a\":{\"x\":1.,\"dtype\":\"U8\",\"shape\":[],\"data_offsets\":[0,1]}}", d, 1, "expected a number");
    EXPECT_BAD("{\"a\":{\"x\":1e,\"dtype\":\"U8\",\"shape\":[],\"data_offsets\":[0,1]}}", d, 1, "expected a number");
    EXPECT_BAD("{\"a\":{\"x\":nul,\"dtype\":\"U8\",\"shape\":[],\"data_offsets\":[0,1]}}", d, 1, "expected a value");
    EXPECT_BAD("{\"a\":{\"x\":[1,],\"dtype\":\"U8\",\"shape\":[],\"data_offsets\":[0,1]}}", d, 1, "expected a value");
    EXPECT_BAD("{\"a\":{\"x\":[1 2],\"dtype\":\"U8\",\"shape\":[],\"data_offsets\":[0,1]}}", d, 1, "expected ']'");
    strcpy(deep, "{\"a\":{\"x\":");
    for (i = 0; i < 100; i++) strcat(deep, "[");
    for (i = 0; i < 100; i++) strcat(deep, "]");
    strcat(deep, "}}");
    EXPECT_BAD(deep, d, 0, "nested deeper than 64");
}

static void test_writer_errors(void) {
    static const int two[1] = {2};
    dl_tensor *a = dl_tensor_new(DL_DTYPE_F32, 1, two), *gpu = dl_tensor_new(DL_DTYPE_F32, 1, two);
    dl_tensor *ts[2];
    const char *names[2];
    const char *k[2] = {"k", "k"}, *v[2] = {"1", "2"};
    unsigned char buf[256];
    ts[0] = a; ts[1] = a;
    names[0] = "x"; names[1] = "x";
    CHECK(dl_safetensors_serialize(2, names, ts, 0, NULL, NULL, buf, sizeof buf) == 0 && strstr(dl_error(), "dl_safetensors_serialize: duplicate tensor name 'x'"), "%s", dl_error());
    names[1] = "__metadata__";
    CHECK(dl_safetensors_serialize(2, names, ts, 0, NULL, NULL, buf, sizeof buf) == 0 && strstr(dl_error(), "__metadata__"), "%s", dl_error());
    names[1] = "bad \xff utf8";
    CHECK(dl_safetensors_serialize(2, names, ts, 0, NULL, NULL, buf, sizeof buf) == 0 && strstr(dl_error(), "UTF-8"), "%s", dl_error());
    names[1] = "y";
    ts[1] = NULL;
    CHECK(dl_safetensors_serialize(2, names, ts, 0, NULL, NULL, buf, sizeof buf) == 0 && strstr(dl_error(), "'y' is NULL"), "%s", dl_error());
    gpu->device = DL_DEVICE_CUDA;
    ts[1] = gpu;
    CHECK(dl_safetensors_serialize(2, names, ts, 0, NULL, NULL, buf, sizeof buf) == 0 && strstr(dl_error(), "not on the CPU"), "%s", dl_error());
    gpu->device = DL_DEVICE_CPU;
    CHECK(dl_safetensors_serialize(2, names, ts, 2, k, v, buf, sizeof buf) == 0 && strstr(dl_error(), "duplicate metadata key 'k'"), "%s", dl_error());
    CHECK(dl_safetensors_serialize(2, NULL, ts, 0, NULL, NULL, buf, sizeof buf) == 0 && strstr(dl_error(), "bad arguments"), "%s", dl_error());
    CHECK(dl_safetensors_serialize(-1, names, ts, 0, NULL, NULL, buf, sizeof buf) == 0, "n < 0");
    CHECK(dl_safetensors_serialize(2, names, ts, 1, NULL, v, buf, sizeof buf) == 0, "NULL keys");
    CHECK(dl_safetensors_save("/nonexistent/dir/x.safetensors", 2, names, ts, 0, NULL, NULL) == -1 && strstr(dl_error(), "dl_safetensors_save: cannot open"), "%s", dl_error());
    CHECK(dl_safetensors_save(NULL, 2, names, ts, 0, NULL, NULL) == -1, "NULL path");
    /* NULL handles are harmless */
    CHECK(dl_safetensors_num_tensors(NULL) == 0 && dl_safetensors_get(NULL, "x") == NULL && dl_safetensors_meta(NULL, "x") == NULL, "NULL st");
    dl_safetensors_free(NULL);
    dl_tensor_free(a);
    dl_tensor_free(gpu);
}

/* Files in tmp_path's directory whose names start with tmp_path's name + ".tmp-": leftovers. */
static int count_temporaries(void) {
    char dir[512], prefix[600];
    const char *slash = strrchr(tmp_path, '/');
    DIR *d;
    struct dirent *e;
    int n = 0;
    if (slash) { snprintf(dir, sizeof dir, "%.*s", (int)(slash - tmp_path), tmp_path); snprintf(prefix, sizeof prefix, "%s.tmp-", slash + 1); }
    else { snprintf(dir, sizeof dir, "."); snprintf(prefix, sizeof prefix, "%s.tmp-", tmp_path); }
    if (!(d = opendir(dir))) return -1;
    while ((e = readdir(d)) != NULL) n += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
    closedir(d);
    return n;
}

/* A save that fails (here: a full disk, simulated by RLIMIT_FSIZE in a child) leaves the
   previous file whole and no temporary file behind. */
static void test_save_is_atomic(void) {
    static const int small[1] = {16}, big[1] = {100000};
    dl_tensor *a = dl_tensor_new(DL_DTYPE_F32, 1, small), *b = dl_tensor_new(DL_DTYPE_F32, 1, big);
    const char *names[1] = {"w"};
    dl_safetensors *st;
    pid_t pid;
    int i, status = -1;
    for (i = 0; i < 16; i++) dl_f32(a)[i] = (float)i * 0.5f;
    for (i = 0; i < 100000; i++) dl_f32(b)[i] = (float)i;
    CHECK(dl_safetensors_save(tmp_path, 1, names, &a, 0, NULL, NULL) == 0, "%s", dl_error());
    fflush(stdout);
    pid = fork();
    if (pid == 0) { /* the child: a disk that takes 4 KiB more; exit status 0 when the save failed well */
        struct rlimit rl;
        int rc;
        signal(SIGXFSZ, SIG_IGN);
        rl.rlim_cur = rl.rlim_max = 4096;
        if (setrlimit(RLIMIT_FSIZE, &rl) != 0) _exit(3);
        rc = dl_safetensors_save(tmp_path, 1, names, &b, 0, NULL, NULL);
        if (rc != -1) _exit(1);
        if (!strstr(dl_error(), "dl_safetensors_save") || !strstr(dl_error(), tmp_path) || !strstr(dl_error(), strerror(EFBIG))) {
            printf("    child's message: %s\n", dl_error());
            fflush(stdout);
            _exit(2);
        }
        _exit(0);
    }
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid, "fork");
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the save under a full disk: status %d", status);
    st = dl_safetensors_load(tmp_path); /* the first file, unchanged */
    CHECK(st && dl_safetensors_num_tensors(st) == 1, "old file loads: %s", dl_error());
    if (st) {
        dl_tensor *w = dl_safetensors_get(st, "w");
        CHECK(w && w->numel == 16 && memcmp(w->data, a->data, 16 * sizeof(float)) == 0, "old content");
    }
    dl_safetensors_free(st);
    CHECK(count_temporaries() == 0, "temporary files left: %d", count_temporaries());
    /* a save that works replaces the file; still no temporary left */
    CHECK(dl_safetensors_save(tmp_path, 1, names, &b, 0, NULL, NULL) == 0, "%s", dl_error());
    st = dl_safetensors_load(tmp_path);
    CHECK(st && dl_safetensors_get(st, "w") && dl_safetensors_get(st, "w")->numel == 100000, "new file");
    dl_safetensors_free(st);
    CHECK(count_temporaries() == 0, "temporary files left after a good save");
    remove(tmp_path);
    dl_tensor_free(a);
    dl_tensor_free(b);
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "--write-fixture") == 0) {
        fixture fx;
        int rc;
        fixture_make(&fx);
        rc = dl_safetensors_save(argv[2], fx.n, fx.names, fx.t, 3, meta_keys, meta_values);
        if (rc) printf("%s\n", dl_error());
        fixture_free(&fx);
        dl_arena_free_default();
        return rc != 0;
    }
    if (argc >= 1 && strlen(argv[0]) < sizeof tmp_path - 20) snprintf(tmp_path, sizeof tmp_path, "%s.tmp.safetensors", argv[0]);
    RUN(test_roundtrip);
    RUN(test_noncontiguous_ints);
    RUN(test_from_dl_fixture);
    RUN(test_python_mixed);
    RUN(test_python_handmade);
    RUN(test_i64_out_of_range);
    RUN(test_header_length);
    RUN(test_offsets_and_shapes);
    RUN(test_many_tiny_tensors);
    RUN(test_dtypes_and_duplicates);
    RUN(test_bad_json);
    RUN(test_writer_errors);
    RUN(test_save_is_atomic);
    RUN(test_truncated_and_corrupted);
    dl_arena_free_default();
    return test_summary();
}
