/* Data section of dl_nn.h: gzip/inflate, IDX, CSV, image folders, batching, splits, transforms.
   Image-folder tests need Debian's libstb-dev (<stb/stb_image.h>); they are skipped without it. */
#define _POSIX_C_SOURCE 200809L /* mkdir, getpid for the temporary image folder */
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "count_alloc.h"

#if defined(__has_include)
#if __has_include(<stb/stb_image.h>) && __has_include(<stb/stb_image_write.h>)
#define TEST_HAVE_STB 1
#endif
#endif
#ifdef TEST_HAVE_STB
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#endif
#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_image.h>
#include <stb/stb_image_write.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif
#endif

#define DL_IMPLEMENTATION
#include "../dl_tensor.h"
#include "../dl_optim.h"
#include "../dl_nn.h"
#include "test.h"

/* ---- helpers ---- */
typedef struct buf { unsigned char *p; size_t n, cap; } buf;
static void put(buf *b, const void *src, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = (unsigned char *)realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}
static void put8(buf *b, unsigned v) { unsigned char c = (unsigned char)v; put(b, &c, 1); }
static void put_be32(buf *b, uint32_t v) { put8(b, v >> 24); put8(b, (v >> 16) & 255); put8(b, (v >> 8) & 255); put8(b, v & 255); }
static void put_le32(buf *b, uint32_t v) { put8(b, v & 255); put8(b, (v >> 8) & 255); put8(b, (v >> 16) & 255); put8(b, v >> 24); }

static unsigned char *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    unsigned char *p;
    long size;
    *n = 0;
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    size = ftell(f);
    fseek(f, 0, SEEK_SET);
    p = (unsigned char *)malloc((size_t)size + 1);
    if (fread(p, 1, (size_t)size, f) != (size_t)size) { free(p); fclose(f); return NULL; }
    fclose(f);
    *n = (size_t)size;
    return p;
}
static int write_all(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    int ok;
    if (!f) return -1;
    ok = fwrite(p, 1, n, f) == n;
    fclose(f);
    return ok ? 0 : -1;
}

/* The IDX bytes of tools/make_nn_fixtures.py. */
static buf idx_images(void) {
    buf b = {0, 0, 0};
    int i, y, x;
    put8(&b, 0); put8(&b, 0); put8(&b, 8); put8(&b, 3);
    put_be32(&b, 20); put_be32(&b, 8); put_be32(&b, 8);
    for (i = 0; i < 20; i++)
        for (y = 0; y < 8; y++)
            for (x = 0; x < 8; x++) put8(&b, (unsigned)(i * 37 + y * 11 + x * x * 5) % 256);
    return b;
}
static buf idx_labels(void) {
    buf b = {0, 0, 0};
    int i;
    put8(&b, 0); put8(&b, 0); put8(&b, 8); put8(&b, 1);
    put_be32(&b, 20);
    for (i = 0; i < 20; i++) put8(&b, (unsigned)(i % 7));
    return b;
}

/* A gzip writer of our own: stored blocks (kind 0) or one fixed-Huffman block (kind 1) that
   codes runs of a repeated byte as (length, distance 1) matches. */
typedef struct bits { buf *b; uint32_t acc; int n; } bits;
static void bits_put(bits *w, uint32_t v, int n) { /* LSB first */
    while (n--) {
        w->acc |= (v & 1u) << w->n;
        v >>= 1;
        if (++w->n == 8) { put8(w->b, w->acc); w->acc = 0; w->n = 0; }
    }
}
static void bits_huff(bits *w, uint32_t code, int len) { /* Huffman codes go MSB first */
    while (len--) bits_put(w, (code >> len) & 1u, 1);
}
static void fixed_sym(bits *w, int sym) {
    if (sym < 144) bits_huff(w, 0x30u + (uint32_t)sym, 8);
    else if (sym < 256) bits_huff(w, 0x190u + (uint32_t)(sym - 144), 9);
    else if (sym < 280) bits_huff(w, (uint32_t)(sym - 256), 7);
    else bits_huff(w, 0xC0u + (uint32_t)(sym - 280), 8);
}
static buf gzip_make(const unsigned char *data, size_t n, int kind) {
    static const short base[29] = {3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31,
                                   35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258};
    static const short extra[29] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
    buf b = {0, 0, 0};
    static const unsigned char hdr[10] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255};
    put(&b, hdr, 10);
    if (kind == 0) {
        size_t pos = 0;
        put8(&b, 0); put8(&b, 0); put8(&b, 0); put8(&b, 0xff); put8(&b, 0xff); /* an empty stored block first */
        do {
            size_t len = n - pos > 1000 ? 1000 : n - pos; /* several blocks */
            int last = pos + len == n;
            put8(&b, last ? 1 : 0);
            put8(&b, len & 255); put8(&b, (unsigned)(len >> 8));
            put8(&b, ~len & 255); put8(&b, (unsigned)((~len >> 8) & 255));
            put(&b, data + pos, len);
            pos += len;
        } while (pos < n);
    } else {
        bits w;
        size_t i = 0;
        w.b = &b; w.acc = 0; w.n = 0;
        bits_put(&w, 1, 1); /* last */
        bits_put(&w, 1, 2); /* fixed */
        while (i < n) {
            size_t run = 0;
            while (i > 0 && i + run < n && run < 258 && data[i + run] == data[i - 1]) run++;
            if (run >= 3) {
                int s = 28;
                while (base[s] > (short)run) s--;
                fixed_sym(&w, 257 + s);
                bits_put(&w, (uint32_t)(run - (size_t)base[s]), extra[s]);
                bits_huff(&w, 0, 5); /* distance code 0 = distance 1 */
                i += run;
            } else {
                fixed_sym(&w, data[i++]);
            }
        }
        fixed_sym(&w, 256);
        if (w.n) bits_put(&w, 0, 8 - w.n);
    }
    put_le32(&b, dl_crc32(0, data, n));
    put_le32(&b, (uint32_t)n);
    return b;
}

/* ---- gzip ---- */
static void test_crc32(void) {
    CHECK(dl_crc32(0, "123456789", 9) == 0xCBF43926u, "crc32 check value");
    CHECK(dl_crc32(dl_crc32(0, "1234", 4), "56789", 5) == 0xCBF43926u, "incremental");
    CHECK(dl_crc32(0, "", 0) == 0, "empty");
}

static void test_gunzip_own_writer(void) {
    unsigned char data[3000];
    int kind, i;
    for (i = 0; i < 3000; i++) data[i] = (unsigned char)(i < 1000 ? i * 7 : (i < 2000 ? 42 : i / 13));
    for (kind = 0; kind < 2; kind++) {
        buf gz = gzip_make(data, sizeof data, kind);
        size_t n = 0;
        unsigned char *out = (unsigned char *)dl_gunzip(gz.p, gz.n, 0, &n);
        CHECK(out != NULL, "kind %d: %s", kind, dl_error());
        CHECK(n == sizeof data && out && memcmp(out, data, n) == 0, "kind %d round trip", kind);
        if (kind == 1) CHECK(gz.n < 2000, "runs were coded as matches (%zu bytes)", gz.n);
        free(out);
        free(gz.p);
    }
    { /* empty input */
        buf gz = gzip_make(data, 0, 1);
        size_t n = 99;
        unsigned char *out = (unsigned char *)dl_gunzip(gz.p, gz.n, 0, &n);
        CHECK(out != NULL && n == 0, "empty gzip: %s", dl_error());
        free(out);
        free(gz.p);
    }
}

static void test_gunzip_python_fixture(void) {
    size_t n = 0, m = 0;
    unsigned char *gz = read_all("tests/data/nn_images.idx.gz", &n), *out;
    buf want = idx_images();
    CHECK(gz != NULL, "fixture missing (run from the repository root)");
    if (!gz) { free(want.p); return; }
    CHECK(gz[3] & 8, "fixture has FNAME");
    out = (unsigned char *)dl_gunzip(gz, n, 0, &m);
    CHECK(out && m == want.n && memcmp(out, want.p, m) == 0, "python's gzip decodes: %s", dl_error());
    free(out);
    CHECK(dl_gunzip(gz, n, 100, &m) == NULL && strstr(dl_error(), "limit"), "max_out: %s", dl_error());
    free(gz);
    free(want.p);
}

/* Every truncation fails; every single-byte corruption fails or gives the original bytes. */
static void test_gunzip_truncated_corrupt(void) {
    const char *files[2] = {"tests/data/nn_images.idx.gz", "tests/data/nn_labels.idx.gz"};
    int f;
    for (f = 0; f < 3; f++) {
        size_t n = 0, len, m, i;
        unsigned char *gz, *out;
        buf want = f < 2 ? (f == 0 ? idx_images() : idx_labels()) : idx_images(), own = {0, 0, 0};
        int bad_trunc = 0, bad_corrupt = 0, bit;
        if (f < 2) gz = read_all(files[f], &n);
        else { own = gzip_make(want.p, want.n, 1); gz = own.p; n = own.n; }
        CHECK(gz != NULL, "fixture %d", f);
        if (!gz) { free(want.p); continue; }
        for (len = 0; len < n; len++) {
            out = (unsigned char *)dl_gunzip(gz, len, 0, &m);
            if (out || dl_error()[0] == 0) bad_trunc++;
            free(out);
        }
        for (i = 0; i < n; i++)
            for (bit = 0; bit < 8; bit += 3) {
                gz[i] ^= (unsigned char)(1u << bit);
                dl_clear_error();
                out = (unsigned char *)dl_gunzip(gz, n, 0, &m);
                if (out ? (m != want.n || memcmp(out, want.p, m) != 0) : dl_error()[0] == 0) bad_corrupt++;
                free(out);
                gz[i] ^= (unsigned char)(1u << bit);
            }
        CHECK(bad_trunc == 0, "file %d: %d truncations accepted", f, bad_trunc);
        CHECK(bad_corrupt == 0, "file %d: %d corruptions gave wrong data silently", f, bad_corrupt);
        free(gz);
        free(want.p);
    }
}

static void test_gunzip_hostile(void) {
    unsigned char data[64] = {0};
    buf gz = gzip_make(data, sizeof data, 1);
    size_t m;
    long before;
    /* ISIZE claims 4 GiB - 1: more than 1032x the input allows: refused before allocating. */
    gz.p[gz.n - 4] = gz.p[gz.n - 3] = gz.p[gz.n - 2] = gz.p[gz.n - 1] = 0xff;
    before = test_mallocs;
    CHECK(dl_gunzip(gz.p, gz.n, 0, &m) == NULL && strstr(dl_error(), "impossible"), "%s", dl_error());
    CHECK(test_mallocs == before, "no allocation for an impossible size");
    /* ISIZE too small: output overflows the buffer -> error, not a write past it */
    gz.p[gz.n - 4] = 10; gz.p[gz.n - 3] = gz.p[gz.n - 2] = gz.p[gz.n - 1] = 0;
    CHECK(dl_gunzip(gz.p, gz.n, 0, &m) == NULL && strstr(dl_error(), "larger"), "%s", dl_error());
    gz.p[gz.n - 4] = 64;
    {
        void *ok = dl_gunzip(gz.p, gz.n, 0, &m);
        CHECK(ok != NULL && m == 64, "restored: %s", dl_error());
        free(ok);
    }
    gz.p[3] = 0x20; /* reserved flag */
    CHECK(dl_gunzip(gz.p, gz.n, 0, &m) == NULL, "reserved flag");
    free(gz.p);
    { /* raw deflate: a distance before the start of the output, block type 3 */
        unsigned char out[16];
        size_t got;
        buf b = {0, 0, 0};
        bits w;
        w.b = &b; w.acc = 0; w.n = 0;
        bits_put(&w, 1, 1); bits_put(&w, 1, 2);
        fixed_sym(&w, 257); bits_huff(&w, 0, 5); /* length 3, distance 1 with nothing written */
        fixed_sym(&w, 256);
        bits_put(&w, 0, 7);
        CHECK(dl_inflate(b.p, b.n, out, sizeof out, &got, NULL) != 0 && strstr(dl_error(), "distance"), "%s", dl_error());
        b.p[0] = 7; /* last, type 3 */
        CHECK(dl_inflate(b.p, b.n, out, sizeof out, &got, NULL) != 0 && strstr(dl_error(), "block type"), "%s", dl_error());
        CHECK(dl_inflate(NULL, 0, out, sizeof out, &got, NULL) != 0, "empty input");
        free(b.p);
    }
}

/* ---- IDX ---- */
static void test_idx_parse(void) {
    buf im = idx_images(), lb = idx_labels();
    dl_dataset *ds = dl_idx_parse(im.p, im.n, lb.p, lb.n);
    CHECK(ds != NULL, "%s", dl_error());
    if (ds) {
        CHECK(ds->n == 20 && ds->x->ndim == 4 && ds->x->shape[0] == 20 && ds->x->shape[1] == 1 && ds->x->shape[2] == 8 &&
                  ds->x->shape[3] == 8, "x shape");
        CHECK(ds->y && ds->y->dtype == DL_DTYPE_I32 && ds->y->shape[0] == 20, "y");
        CHECK(ds->num_classes == 7, "num_classes %d", ds->num_classes);
        CHECK_NEAR(dl_f32(ds->x)[3 * 64 + 2 * 8 + 5], ((3 * 37 + 2 * 11 + 25 * 5) % 256) / 255.0, 1e-6);
        CHECK(dl_i32(ds->y)[10] == 3, "label");
    }
    dl_dataset_free(ds);
    ds = dl_idx_parse(im.p, im.n, NULL, 0);
    CHECK(ds && ds->y == NULL && ds->num_classes == 0, "images only: %s", dl_error());
    dl_dataset_free(ds);
    free(im.p);
    free(lb.p);
}

static void test_idx_bad(void) {
    buf im = idx_images(), lb = idx_labels();
    size_t len;
    int accepted = 0;
    for (len = 0; len < im.n; len++)
        if (dl_idx_parse(im.p, len, lb.p, lb.n) != NULL) accepted++;
    for (len = 0; len < lb.n; len++)
        if (dl_idx_parse(im.p, im.n, lb.p, len) != NULL) accepted++;
    CHECK(accepted == 0, "%d truncated IDX buffers accepted", accepted);
    CHECK(dl_idx_parse(im.p, im.n, lb.p, lb.n - 1) == NULL && strstr(dl_error(), "labels"), "%s", dl_error());
    im.p[2] = 0x0D; /* float type */
    CHECK(dl_idx_parse(im.p, im.n, NULL, 0) == NULL && strstr(dl_error(), "unsigned byte"), "%s", dl_error());
    im.p[2] = 8;
    im.p[1] = 1;
    CHECK(dl_idx_parse(im.p, im.n, NULL, 0) == NULL && strstr(dl_error(), "magic"), "%s", dl_error());
    im.p[1] = 0;
    im.p[4] = 0x7f; /* N = 2^31-ish: more than the file holds, refused before allocating */
    {
        long before = test_mallocs;
        CHECK(dl_idx_parse(im.p, im.n, NULL, 0) == NULL && strstr(dl_error(), "more data"), "%s", dl_error());
        CHECK(test_mallocs == before, "no allocation");
    }
    im.p[4] = 0;
    im.p[7] = 19; /* 19 images: now 64 extra bytes */
    CHECK(dl_idx_parse(im.p, im.n, NULL, 0) == NULL && strstr(dl_error(), "header says"), "%s", dl_error());
    CHECK(dl_idx_parse(im.p, im.n - 64, lb.p, lb.n) == NULL && strstr(dl_error(), "19 images but 20 labels"), "%s", dl_error());
    im.p[7] = 0;
    CHECK(dl_idx_parse(im.p, im.n, NULL, 0) == NULL, "zero images");
    free(im.p);
    free(lb.p);
}

/* Gzip bombs: 32 MiB of zeros behind an IDX header, in ~170 KB of gzip. A wrong header is found
   from the first inflated bytes; a right one lets no more than it promises be inflated. Before,
   the whole stream was inflated into one 32 MiB buffer before the header was read. */
static void test_idx_gzip_bomb(void) {
    enum { ZEROS = 32 << 20 };
    static const unsigned char bad_type[4] = {0, 0, 9, 3};   /* element type 0x09: not IDX's u8 */
    static const unsigned char images[16] = {0, 0, 8, 3, 0, 0, 0, 10, 0, 0, 0, 28, 0, 0, 0, 28};
    unsigned char *data = (unsigned char *)calloc(ZEROS + 16, 1);
    const char *path = "build/tests/nn_bomb.idx.gz";
    int k;
    mkdir("build", 0755);
    mkdir("build/tests", 0755);
    if (!data) { CHECK(0, "out of memory"); return; }
    for (k = 0; k < 3; k++) {
        buf gz;
        size_t n = (size_t)ZEROS + 16;
        if (k == 0) memcpy(data, bad_type, 4);
        else memcpy(data, images, 16);
        gz = gzip_make(data, n, 1);
        if (k == 2) {   /* the trailer's length agrees with the header (7856 bytes); the stream does not */
            unsigned char *isize = gz.p + gz.n - 4;
            isize[0] = 7856 & 255, isize[1] = 7856 >> 8, isize[2] = isize[3] = 0;
        }
        CHECK(gz.n < (size_t)ZEROS / 64 && write_all(path, gz.p, gz.n) == 0, "a bomb of %zu bytes", gz.n);
        test_max_alloc = 0;
        dl_clear_error();
        CHECK(dl_idx_load(path, NULL) == NULL && strstr(dl_error(), "nn_bomb.idx.gz"), "bomb %d refused: %s", k, dl_error());
        if (k == 0) CHECK(strstr(dl_error(), "element type") != NULL, "the header is what is wrong: %s", dl_error());
        CHECK(test_max_alloc < (long)(2 * gz.n + 65536), "bomb %d: largest allocation %ld bytes for a %zu-byte file",
              k, test_max_alloc, gz.n);
        free(gz.p);
    }
    free(data);
}

static void test_idx_files(void) {
    buf im = idx_images(), lb = idx_labels();
    dl_dataset *a, *b;
    mkdir("build", 0755);
    mkdir("build/tests", 0755);
    CHECK(write_all("build/tests/nn_images.idx", im.p, im.n) == 0, "write");
    CHECK(write_all("build/tests/nn_labels.idx", lb.p, lb.n) == 0, "write");
    a = dl_idx_load("build/tests/nn_images.idx", "build/tests/nn_labels.idx");
    b = dl_idx_load("tests/data/nn_images.idx.gz", "tests/data/nn_labels.idx.gz");
    CHECK(a && b, "%s", dl_error());
    if (a && b) {
        CHECK(a->x->numel == b->x->numel && memcmp(a->x->data, b->x->data, a->x->numel * 4) == 0, "plain == gzip (x)");
        CHECK(memcmp(a->y->data, b->y->data, 20 * 4) == 0, "plain == gzip (y)");
    }
    dl_dataset_free(a);
    dl_dataset_free(b);
    CHECK(dl_idx_load("build/tests/no_such_file", NULL) == NULL && strstr(dl_error(), "no_such_file"), "%s", dl_error());
    { /* a corrupt .gz file names the file */
        size_t n;
        unsigned char *gz = read_all("tests/data/nn_images.idx.gz", &n);
        if (gz) {
            gz[n / 2] ^= 0x55;
            write_all("build/tests/nn_bad.idx.gz", gz, n);
            CHECK(dl_idx_load("build/tests/nn_bad.idx.gz", NULL) == NULL && strstr(dl_error(), "nn_bad.idx.gz"), "%s", dl_error());
            free(gz);
        }
    }
    free(im.p);
    free(lb.p);
}

static void test_fashion_mnist(void) {
    dl_dataset *tr, *te;
    int hist[10] = {0}, i, ok = 1;
    FILE *f = fopen("/usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz", "rb");
    if (!f) SKIP("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)");
    fclose(f);
    tr = dl_fashion_mnist_load(NULL, 1);
    te = dl_fashion_mnist_load(NULL, 0);
    CHECK(tr && te, "%s", dl_error());
    if (tr && te) {
        CHECK(tr->n == 60000 && te->n == 10000, "N = %d, %d", tr->n, te->n);
        CHECK(tr->x->shape[1] == 1 && tr->x->shape[2] == 28 && tr->x->shape[3] == 28, "28x28");
        CHECK(tr->num_classes == 10 && te->num_classes == 10, "10 classes");
        for (i = 0; i < tr->n; i++) hist[dl_i32(tr->y)[i]]++;
        for (i = 0; i < 10; i++) ok &= hist[i] == 6000;
        CHECK(ok, "6000 of each class in train");
        for (i = 0; i < 10; i++) hist[i] = 0;
        for (i = 0; i < te->n; i++) hist[dl_i32(te->y)[i]]++;
        for (ok = 1, i = 0; i < 10; i++) ok &= hist[i] == 1000;
        CHECK(ok, "1000 of each class in test");
    }
    dl_dataset_free(tr);
    dl_dataset_free(te);
    CHECK(dl_fashion_mnist_load("build/tests", 1) == NULL && strstr(dl_error(), "train-images"), "%s", dl_error());
}

/* ---- CSV ---- */
static void test_csv_good(void) {
    const char *t1 = "a,b,label\n1, 2.5 ,0\r\n\n-3,4e1,2\n  \n5,6,1";
    dl_csv_opts o = {0, 0, 0, 0, 0};
    dl_dataset *ds;
    o.header = 1;
    o.label_col = -1;
    ds = dl_csv_parse(t1, strlen(t1), &o);
    CHECK(ds != NULL, "%s", dl_error());
    if (ds) {
        static const float want[6] = {1, 2.5f, -3, 40, 5, 6};
        CHECK(ds->n == 3 && ds->x->shape[1] == 2, "shape");
        CHECK_ALL_NEAR(dl_f32(ds->x), want, 6, 0);
        CHECK(dl_i32(ds->y)[0] == 0 && dl_i32(ds->y)[1] == 2 && dl_i32(ds->y)[2] == 1 && ds->num_classes == 3, "labels");
    }
    dl_dataset_free(ds);
    o.regression = 1;
    o.label_col = 1;
    o.delimiter = ';';
    ds = dl_csv_parse("h\n1;0.5;2\n3;-1.5;4\n", 19, &o);
    CHECK(ds && ds->y->dtype == DL_DTYPE_F32 && dl_f32(ds->y)[1] == -1.5f && dl_f32(ds->x)[3] == 4 && ds->num_classes == 0,
          "regression, middle label, ';': %s", dl_error());
    dl_dataset_free(ds);
    memset(&o, 0, sizeof o);
    o.no_label = 1;
    ds = dl_csv_parse("1,2,3\n", 6, &o);
    CHECK(ds && ds->y == NULL && ds->x->shape[1] == 3, "no label: %s", dl_error());
    dl_dataset_free(ds);
    ds = dl_csv_parse("7,1,2\n", 6, NULL); /* defaults: label in column 0 */
    CHECK(ds && dl_i32(ds->y)[0] == 7 && ds->x->shape[1] == 2, "defaults: %s", dl_error());
    dl_dataset_free(ds);
}

static void test_csv_bad(void) {
    dl_csv_opts o = {0, 0, 0, 0, 0};
    struct { const char *text; const char *msg; } cases[] = {
        {"0,1,2\n1,2\n", "line 2 has 2 fields, expected 3"},
        {"0,1,2\n1,x,3\n", "line 2, column 2: 'x'"},
        {"0,1,2\n1,,3\n", "line 2, column 2"},
        {"0,1,2\n1,2,3abc\n", "line 2, column 3"},
        {"0,1,nan\n", "line 1, column 3"},
        {"0,1,inf\n", "line 1, column 3"},
        {"0,1,2\n1,2,1e39\n", "line 2, column 3: '1e39' overflows float"},   /* finite as a double, inf as a float */
        {"0,-3.5e38,2\n", "line 1, column 2: '-3.5e38' overflows float"},
        {"0.5,1,2\n", "label '0.5'"},
        {"-1,1,2\n", "label '-1'"},
        {"", "no data rows"},
        {"\n\n", "no data rows"},
        {"5\n", "no feature columns"},
    };
    size_t i;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        dl_clear_error();
        CHECK(dl_csv_parse(cases[i].text, strlen(cases[i].text), &o) == NULL && strstr(dl_error(), cases[i].msg),
              "case %zu: got '%s', want '%s'", i, dl_error(), cases[i].msg);
    }
    o.label_col = 3;
    CHECK(dl_csv_parse("1,2,3\n", 6, &o) == NULL && strstr(dl_error(), "label column"), "%s", dl_error());
    CHECK(dl_csv_load("build/tests/nope.csv", NULL) == NULL && strstr(dl_error(), "nope.csv"), "%s", dl_error());
}

static void test_csv_file_truncated(void) {
    const char *t = "x1,x2,y\n0.25,1e-3,1\n-2,3,0\n4,5,2\n";
    size_t len, n = strlen(t);
    dl_csv_opts o = {1, -1, 0, 0, 0};
    dl_dataset *ds;
    mkdir("build", 0755);
    mkdir("build/tests", 0755);
    write_all("build/tests/nn.csv", t, n);
    ds = dl_csv_load("build/tests/nn.csv", &o);
    CHECK(ds && ds->n == 3 && dl_f32(ds->x)[1] == 1e-3f && dl_i32(ds->y)[2] == 2, "%s", dl_error());
    dl_dataset_free(ds);
    for (len = 0; len < n; len++) { /* any prefix: a data set or an error, never a crash */
        char *copy = (char *)malloc(len + 1);
        memcpy(copy, t, len);
        dl_clear_error();
        ds = dl_csv_parse(copy, len, &o); /* not NUL-terminated at len: the parser must not read past it */
        CHECK(ds != NULL || dl_error()[0] != 0, "prefix %zu", len);
        dl_dataset_free(ds);
        free(copy);
    }
}

/* ---- image folders ---- */
static void test_resize(void) {
    unsigned char src[4] = {0, 255, 0, 255}; /* 2x2 gray: columns 0 and 255 */
    float out[16];
    CHECK(dl_resize_bilinear_u8(src, 2, 2, 1, out, 4, 4, 1.0f) == 0, "%s", dl_error());
    CHECK_NEAR(out[0], 0, 1e-5);
    CHECK_NEAR(out[1], 63.75, 1e-4); /* tf.image.resize(bilinear), half-pixel centers */
    CHECK_NEAR(out[2], 191.25, 1e-4);
    CHECK_NEAR(out[3], 255, 1e-5);
    CHECK_NEAR(out[13], 63.75, 1e-4);
    CHECK(dl_resize_bilinear_u8(src, 0, 2, 1, out, 4, 4, 1.0f) != 0, "bad size");
}

static void test_image_folder(void) {
#if defined(TEST_HAVE_STB) && defined(DL_HAVE_IMAGE_FOLDER)
    char dir[256], path[512];
    unsigned char gray[16], rgb[8 * 6 * 3];
    int i;
    dl_dataset *ds;
    snprintf(dir, sizeof dir, "build/tests/nn_imgs_%d", (int)getpid());
    mkdir("build", 0755);
    mkdir("build/tests", 0755);
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/dog", dir); mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/cat", dir); mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/.hidden", dir); mkdir(path, 0755);
    for (i = 0; i < 16; i++) gray[i] = 51;
    for (i = 0; i < 8 * 6 * 3; i++) rgb[i] = (unsigned char)(i % 3 == 0 ? 255 : 0); /* pure red */
    snprintf(path, sizeof path, "%s/cat/b.png", dir); stbi_write_png(path, 4, 4, 1, gray, 4);
    snprintf(path, sizeof path, "%s/cat/a.PNG", dir); stbi_write_png(path, 8, 6, 3, rgb, 8 * 3);
    snprintf(path, sizeof path, "%s/cat/notes.txt", dir); write_all(path, "hi", 2);
    snprintf(path, sizeof path, "%s/dog/x.bmp", dir); stbi_write_bmp(path, 4, 4, 1, gray);
    ds = dl_image_folder_load(dir, 4, 4, 3);
    CHECK(ds != NULL, "%s", dl_error());
    if (ds) {
        const float *x = dl_f32(ds->x);
        CHECK(ds->n == 3 && ds->num_classes == 2, "n %d classes %d", ds->n, ds->num_classes);
        CHECK(ds->x->shape[1] == 3 && ds->x->shape[2] == 4 && ds->x->shape[3] == 4, "shape");
        CHECK(strcmp(ds->class_names[0], "cat") == 0 && strcmp(ds->class_names[1], "dog") == 0, "sorted class names");
        CHECK(dl_i32(ds->y)[0] == 0 && dl_i32(ds->y)[1] == 0 && dl_i32(ds->y)[2] == 1, "labels");
        /* sample 0 = cat/a.PNG (red, resized 8x6 -> 4x4), sample 1 = cat/b.png (gray 0.2) */
        CHECK_NEAR(x[0], 1.0, 1e-6);
        CHECK_NEAR(x[16 + 5], 0.0, 1e-6);
        CHECK_NEAR(x[48 + 2 * 16 + 7], 0.2, 1e-6);
        CHECK_NEAR(x[96 + 15], 0.2, 1e-6);
    }
    dl_dataset_free(ds);
    ds = dl_image_folder_load(dir, 2, 3, 1);
    CHECK(ds && ds->x->shape[1] == 1 && ds->x->shape[2] == 2 && ds->x->shape[3] == 3, "gray 2x3: %s", dl_error());
    dl_dataset_free(ds);
    snprintf(path, sizeof path, "%s/dog/broken.png", dir); write_all(path, "\x89PNG\r\n\x1a\nnot really", 18);
    CHECK(dl_image_folder_load(dir, 4, 4, 3) == NULL && strstr(dl_error(), "broken.png"), "%s", dl_error());
    CHECK(dl_image_folder_load(dir, 4, 4, 2) == NULL, "2 channels refused");
    CHECK(dl_image_folder_load("build/tests/no_such_dir", 4, 4, 3) == NULL && strstr(dl_error(), "no_such_dir"), "%s", dl_error());
    { /* clean up */
        const char *files[] = {"cat/b.png", "cat/a.PNG", "cat/notes.txt", "dog/x.bmp", "dog/broken.png", "cat", "dog", ".hidden", ""};
        for (i = 0; i < 9; i++) { snprintf(path, sizeof path, "%s/%s", dir, files[i]); if (i < 5) remove(path); else rmdir(path); }
    }
#else
    SKIP("stb_image.h not found (apt-get install libstb-dev)");
#endif
}

/* ---- batching, splits ---- */
static dl_dataset *counting_dataset(int n) { /* x[i] = [i, 100 + i], y[i] = i */
    dl_dataset *ds = (dl_dataset *)calloc(1, sizeof *ds);
    int i;
    ds->n = n;
    ds->x = dl_tensor_new(DL_DTYPE_F32, 2, DL_SHAPE(n, 2));
    ds->y = dl_tensor_new(DL_DTYPE_I32, 1, DL_SHAPE(n));
    for (i = 0; i < n; i++) { dl_f32(ds->x)[2 * i] = (float)i; dl_f32(ds->x)[2 * i + 1] = 100.0f + (float)i; dl_i32(ds->y)[i] = i; }
    ds->num_classes = n;
    return ds;
}
static void free_counting(dl_dataset *ds) { dl_tensor_free(ds->x); dl_tensor_free(ds->y); free(ds); }

/* One epoch's order (from y); returns the batch count; checks x matches y. */
static int epoch_order(dl_batcher *b, int *order, int *sizes, int *consistent) {
    dl_tensor *x, *y;
    int nb = 0, k = 0, i, r;
    while ((r = dl_batcher_next(b, &x, &y)) == 1) {
        sizes[nb++] = x->shape[0];
        for (i = 0; i < x->shape[0]; i++) {
            order[k++] = dl_i32(y)[i];
            if (dl_f32(x)[2 * i] != (float)dl_i32(y)[i] || dl_f32(x)[2 * i + 1] != 100.0f + (float)dl_i32(y)[i]) *consistent = 0;
        }
    }
    if (r != 0) *consistent = 0;
    return nb;
}

static void test_batcher(void) {
    dl_dataset *ds = counting_dataset(10);
    int order[3][10], sizes[4], ok = 1, i, seen[10] = {0}, all = 1;
    dl_batch_opts o = {1, 1234, 0};
    dl_batcher *b = dl_batcher_new(ds, 4, NULL), *c;
    CHECK(b && dl_batcher_num_batches(b) == 3, "len");
    CHECK(epoch_order(b, order[0], sizes, &ok) == 3 && sizes[2] == 2 && ok, "4+4+2");
    for (i = 0; i < 10; i++) ok &= order[0][i] == i;
    CHECK(ok, "no shuffle: in order");
    dl_batcher_free(b);
    o.drop_last = 1;
    b = dl_batcher_new(ds, 4, &o);
    CHECK(dl_batcher_num_batches(b) == 2 && epoch_order(b, order[0], sizes, &ok) == 2 && ok, "drop_last: 2 batches");
    dl_batcher_free(b);
    o.drop_last = 0;
    b = dl_batcher_new(ds, 4, &o);
    c = dl_batcher_new(ds, 4, &o);
    epoch_order(b, order[0], sizes, &ok);
    epoch_order(b, order[1], sizes, &ok);
    CHECK(dl_batcher_epoch(b) == 2, "epoch %d", dl_batcher_epoch(b));
    for (i = 0; i < 10; i++) seen[order[0][i]]++;
    for (i = 0; i < 10; i++) all &= seen[i] == 1;
    CHECK(all && ok, "an epoch is a permutation");
    CHECK(memcmp(order[0], order[1], sizeof order[0]) != 0, "epochs differ");
    epoch_order(c, order[2], sizes, &ok);
    CHECK(memcmp(order[0], order[2], sizeof order[0]) == 0, "same seed, same order");
    dl_batcher_set_epoch(c, 1);
    epoch_order(c, order[2], sizes, &ok);
    CHECK(memcmp(order[1], order[2], sizeof order[0]) == 0, "set_epoch replays epoch 1");
    dl_batcher_free(b);
    dl_batcher_free(c);
    CHECK(dl_batcher_new(ds, 0, NULL) == NULL, "batch 0");
    CHECK(dl_batcher_new(NULL, 4, NULL) == NULL, "NULL dataset");
    free_counting(ds);
    dl_arena_reset(dl_arena_current());
}

static void test_batcher_no_malloc(void) {
    dl_dataset *ds = counting_dataset(100);
    dl_batch_opts o = {1, 7, 0};
    dl_batcher *b = dl_batcher_new(ds, 16, &o);
    dl_tensor *x, *y;
    dl_rng r;
    long before = 0;
    int epoch, batches = 0;
    dl_rng_seed(&r, 3);
    for (epoch = 0; epoch < 4; epoch++) {
        if (epoch == 1) before = test_mallocs; /* the first epoch warms the arena up */
        dl_arena_reset(dl_arena_current());
        while (dl_batcher_next(b, &x, &y) == 1) batches++;
    }
    CHECK(test_mallocs == before, "%ld mallocs in 3 epochs", test_mallocs - before);
    CHECK(batches == 4 * 7, "batches %d", batches);
    dl_batcher_free(b);
    free_counting(ds);
    dl_arena_reset(dl_arena_current());
}

static void test_split(void) {
    dl_dataset *ds = counting_dataset(10), *tr, *va;
    int seen[10] = {0}, i, ok = 1;
    CHECK(dl_dataset_split(ds, 0.25f, 5, &tr, &va) == 0, "%s", dl_error());
    if (tr && va) {
        CHECK(tr->n == 8 && va->n == 2 && tr->num_classes == 10, "8 + 2 (int(0.25 * 10) = 2)");
        for (i = 0; i < tr->n; i++) seen[dl_i32(tr->y)[i]]++;
        for (i = 0; i < va->n; i++) seen[dl_i32(va->y)[i]]++;
        for (i = 0; i < 10; i++) ok &= seen[i] == 1;
        CHECK(ok, "disjoint and complete");
        CHECK(dl_f32(va->x)[0] == (float)dl_i32(va->y)[0], "x follows y");
    }
    dl_dataset_free(tr);
    dl_dataset_free(va);
    CHECK(dl_dataset_split(ds, 1.0f, 5, &tr, &va) == -1 && tr == NULL && va == NULL, "fraction 1 refused");
    CHECK(dl_dataset_subset(ds, DL_SHAPE(3, 10), 2) == NULL && strstr(dl_error(), "out of range"), "%s", dl_error());
    free_counting(ds);
}

/* ---- transforms ---- */
static void test_normalize(void) {
    dl_dataset ds = {0, 0, 0, 0, 0};
    float mean[2], std[2];
    int i;
    ds.n = 4;
    ds.x = dl_tensor_new(DL_DTYPE_F32, 4, DL_SHAPE(4, 2, 1, 3));
    for (i = 0; i < 24; i++) dl_f32(ds.x)[i] = (float)((i / 3) % 2 ? 5 + (i % 5) : i * 0.5);
    CHECK(dl_dataset_mean_std(&ds, mean, std) == 0, "%s", dl_error());
    CHECK(dl_normalize(ds.x, mean, std) == 0, "%s", dl_error());
    CHECK(dl_dataset_mean_std(&ds, mean, std) == 0, "again");
    CHECK_NEAR(mean[0], 0, 1e-6);
    CHECK_NEAR(mean[1], 0, 1e-6);
    CHECK_NEAR(std[0], 1, 1e-5);
    CHECK_NEAR(std[1], 1, 1e-5);
    std[1] = 0;
    CHECK(dl_normalize(ds.x, mean, std) == -1 && strstr(dl_error(), "std[1]"), "%s", dl_error());
    dl_tensor_free(ds.x);
}

static void test_flip(void) {
    dl_tensor *x = dl_tensor_new(DL_DTYPE_F32, 4, DL_SHAPE(200, 2, 3, 5)), *orig;
    dl_rng r, r2;
    int b, flipped = 0, bad = 0, k;
    for (k = 0; k < (int)x->numel; k++) dl_f32(x)[k] = (float)k;
    orig = dl_tensor_clone(x);
    dl_rng_seed(&r, 11);
    CHECK(dl_random_flip(x, &r) == 0, "%s", dl_error());
    for (b = 0; b < 200; b++) {
        const float *s = dl_f32(orig) + b * 30, *d = dl_f32(x) + b * 30;
        int same = memcmp(s, d, 30 * 4) == 0, mirror = 1;
        for (k = 0; k < 30; k++) mirror &= d[k] == s[(k / 5) * 5 + 4 - k % 5];
        flipped += !same;
        bad += !same && !mirror;
    }
    CHECK(bad == 0, "%d samples neither kept nor mirrored", bad);
    CHECK(flipped > 70 && flipped < 130, "about half flipped: %d", flipped);
    dl_rng_seed(&r2, 11);
    CHECK(dl_random_flip(x, &r2) == 0 && memcmp(x->data, orig->data, x->numel * 4) == 0, "same seed twice = identity");
    CHECK(dl_random_flip(dl_tmp(DL_DTYPE_F32, 2, DL_SHAPE(2, 3)), &r) == -1, "needs 4-d");
    dl_tensor_free(x);
    dl_tensor_free(orig);
    dl_arena_reset(dl_arena_current());
}

static void test_crop(void) {
    enum { B = 100, C = 2, H = 5, W = 6 };
    dl_tensor *x = dl_tensor_new(DL_DTYPE_F32, 4, DL_SHAPE(B, C, H, W));
    dl_rng r;
    int b, c, h, w, bad = 0, moved = 0;
    for (b = 0; b < B; b++)
        for (c = 0; c < C; c++)
            for (h = 0; h < H; h++)
                for (w = 0; w < W; w++) dl_f32(x)[((b * C + c) * H + h) * W + w] = (float)(1 + c * 1000 + h * W + w);
    dl_rng_seed(&r, 5);
    CHECK(dl_random_crop(x, 0, &r) == 0, "pad 0 is identity");
    CHECK(dl_random_crop(x, 2, &r) == 0, "%s", dl_error());
    for (b = 0; b < B; b++) { /* every sample is the input shifted by one (dy, dx) in [-2, 2], zeros outside */
        int dy, dx, found = 0;
        for (dy = -2; dy <= 2 && !found; dy++)
            for (dx = -2; dx <= 2 && !found; dx++) {
                int match = 1;
                for (c = 0; c < C; c++)
                    for (h = 0; h < H; h++)
                        for (w = 0; w < W; w++) {
                            int sh = h + dy, sw = w + dx;
                            float want = (sh >= 0 && sh < H && sw >= 0 && sw < W) ? (float)(1 + c * 1000 + sh * W + sw) : 0.0f;
                            match &= dl_f32(x)[((b * C + c) * H + h) * W + w] == want;
                        }
                if (match) { found = 1; moved += dy != 0 || dx != 0; }
            }
        bad += !found;
    }
    CHECK(bad == 0, "%d samples are not a padded crop", bad);
    CHECK(moved > 80, "most samples moved: %d", moved);
    CHECK(dl_random_crop(x, -1, &r) == -1, "negative pad");
    dl_tensor_free(x);
    dl_arena_reset(dl_arena_current());
}

/* Counters and sizes at their limits: errors, never signed overflow. */
static void test_batcher_crop_limits(void) {
    dl_dataset *ds = counting_dataset(3);
    dl_batcher *b = dl_batcher_new(ds, INT_MAX, NULL);
    dl_tensor *x, *y, *img = dl_tensor_new(DL_DTYPE_F32, 4, DL_SHAPE(1, 1, 2, 2));
    dl_rng r;
    int rc;
    CHECK(b && dl_batcher_num_batches(b) == 1, "batch INT_MAX: one batch (n + batch - 1 overflowed)");
    dl_batcher_free(b);
    b = dl_batcher_new(ds, 2, NULL);
    dl_batcher_set_epoch(b, INT_MAX);
    CHECK(dl_batcher_epoch(b) == INT_MAX, "set_epoch");
    CHECK(dl_batcher_next(b, &x, &y) == 1 && dl_batcher_next(b, &x, &y) == 1, "the last epoch is served");
    dl_clear_error();
    rc = dl_batcher_next(b, &x, &y); /* the epoch counter cannot move past INT_MAX */
    CHECK(rc == -1 && strstr(dl_error(), "epoch"), "rc %d: %s", rc, dl_error());
    CHECK(dl_batcher_epoch(b) == INT_MAX, "epoch kept");
    dl_batcher_set_epoch(b, 0);
    CHECK(dl_batcher_next(b, &x, &y) == 1, "restarted: %s", dl_error());
    dl_batcher_free(b);
    free_counting(ds);
    dl_rng_seed(&r, 1);
    dl_clear_error();
    CHECK(dl_random_crop(img, INT_MAX, &r) == -1 && strstr(dl_error(), "pad"), "pad INT_MAX: %s", dl_error());
    CHECK(dl_random_crop(img, (INT_MAX - 1) / 2, &r) == 0, "the largest pad: %s", dl_error());
    CHECK(dl_random_crop(img, (INT_MAX - 1) / 2 + 1, &r) == -1, "2 * pad + 1 over INT_MAX");
    dl_tensor_free(img);
    dl_arena_reset(dl_arena_current());
}

int main(void) {
    (void)count_realloc; /* DL_REALLOC is used only by the image-folder code */
    RUN(test_crc32);
    RUN(test_gunzip_own_writer);
    RUN(test_gunzip_python_fixture);
    RUN(test_gunzip_truncated_corrupt);
    RUN(test_gunzip_hostile);
    RUN(test_idx_parse);
    RUN(test_idx_bad);
    RUN(test_idx_files);
    RUN(test_idx_gzip_bomb);
    RUN(test_fashion_mnist);
    RUN(test_csv_good);
    RUN(test_csv_bad);
    RUN(test_csv_file_truncated);
    RUN(test_resize);
    RUN(test_image_folder);
    RUN(test_batcher);
    RUN(test_batcher_no_malloc);
    RUN(test_split);
    RUN(test_normalize);
    RUN(test_flip);
    RUN(test_crop);
    RUN(test_batcher_crop_limits);
    dl_arena_free_default();
    return test_summary();
}
