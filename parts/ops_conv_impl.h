/* ==== Convolution, pooling, padding, upsampling ================================================

   All convolution work is written in terms of one geometry and three per-image products with a
   weight matrix M [rows, K], where K = c*kh*kw and col = im2col(img) is [K, oh*ow]:

       apply:    small  = M @ col(img)                  conv2d forward, conv_transpose2d dX
       adjoint:  img   += col2im(M^T @ small)           conv2d dX,      conv_transpose2d forward
       weights:  dM    += small @ col(img)^T            dW of both

   "img" is the conv input side ([c, h, w]: conv2d's x, conv_transpose2d's output) and "small"
   the conv output side ([rows, oh, ow]: conv2d's y, conv_transpose2d's x). The batch is cut into
   chunks (a count that depends on the shape only, never on the threads), run in parallel; each
   chunk walks its images one by one, so a col buffer of one image stays in cache between the
   im2col and its GEMM. dW and db are summed per chunk and then over chunks in order, so results
   are the same bits for any thread count. A 1x1 stride-1 unpadded conv needs no im2col: col is
   the image itself. */

typedef struct dl__conv_geom {
    int c, h, w;          /* image side: channels, height, width */
    int oh, ow;           /* output side: spatial size of a conv's output */
    int kh, kw, sh, sw, ph, pw, dh, dw;
} dl__conv_geom;

/* Checks t is an f32 CPU tensor with ndim axes (ndim < 0: at least -ndim axes). */
static int dl__conv_check(const dl_tensor *t, const char *op, const char *what, int ndim) {
    char s[64];
    if (t->dtype != DL_F32) { dl__fail("%s: %s must be f32, got %s", op, what, dl_dtype_name(t->dtype)); return 0; }
    if (t->device != DL_CPU) { dl__fail("%s: %s is not on the CPU", op, what); return 0; }
    if ((ndim >= 0 && t->ndim != ndim) || (ndim < 0 && t->ndim < -ndim)) {
        dl__fail("%s: %s must have %s%d axes%s, got %s", op, what, ndim < 0 ? "at least " : "", ndim < 0 ? -ndim : ndim,
                 ndim == 4 ? " [N, C, H, W]" : "", dl_shape_str(t, s, sizeof s));
        return 0;
    }
    return 1;
}

/* Fills g's window from opts (NULL: defaults) and the kernel size. The stride defaults to 1, or
   to the kernel for pools. out_pad receives output_padding; NULL means the op has none. */
static int dl__conv_window(dl__conv_geom *g, const dl_conv_opts *opts, int kh, int kw, int pool, int *out_pad,
                           const char *op) {
    dl_conv_opts o;
    int i;
    if (opts) o = *opts;
    else memset(&o, 0, sizeof o);
    for (i = 0; i < 2; i++)
        if (o.stride[i] < 0 || o.padding[i] < 0 || o.dilation[i] < 0 || o.output_padding[i] < 0) {
            dl__fail("%s: stride, padding, dilation and output_padding must be >= 0 (0 = default)", op);
            return 0;
        }
    if (kh < 1 || kw < 1) { dl__fail("%s: kernel size must be >= 1, got %dx%d", op, kh, kw); return 0; }
    if (!out_pad && (o.output_padding[0] || o.output_padding[1])) {
        dl__fail("%s: output_padding is only for dl_conv_transpose2d", op);
        return 0;
    }
    g->kh = kh;
    g->kw = kw;
    g->sh = o.stride[0] ? o.stride[0] : pool ? kh : 1;
    g->sw = o.stride[1] ? o.stride[1] : pool ? kw : 1;
    g->ph = o.padding[0];
    g->pw = o.padding[1];
    g->dh = o.dilation[0] ? o.dilation[0] : 1;
    g->dw = o.dilation[1] ? o.dilation[1] : 1;
    if (out_pad) { out_pad[0] = o.output_padding[0]; out_pad[1] = o.output_padding[1]; }
    return 1;
}

/* (in + 2p - d(k-1) - 1) / s + 1, or 0 when the dilated kernel does not fit the padded input. */
static int dl__conv_out_size(int in, int k, int s, int p, int d) {
    long long e = (long long)in + 2LL * p - (long long)d * (k - 1) - 1;
    return e < 0 ? 0 : (int)(e / s + 1);
}

/* Sets [lo, hi) to the j in [0, count) with 0 <= off + j*step < size. */
static void dl__conv_valid_range(int off, int step, int size, int count, int *lo, int *hi) {
    int a, b;
    if (step == 1) { /* the common case, without divisions */
        a = off >= 0 ? 0 : -off;
        b = size - off < 0 ? 0 : size - off;
    } else {
        a = off >= 0 ? 0 : (-off + step - 1) / step;
        b = size - 1 - off < 0 ? 0 : (size - 1 - off) / step + 1;
    }
    if (b > count) b = count;
    if (a > b) a = b;
    *lo = a;
    *hi = b;
}

static int dl__conv_is_identity(const dl__conv_geom *g) {
    return g->kh == 1 && g->kw == 1 && g->sh == 1 && g->sw == 1 && g->ph == 0 && g->pw == 0 && g->oh == g->h &&
           g->ow == g->w;
}

/* dst[r*ld_dst + j] = src[r*ld_src + j] (add: +=) for r < rows, j < n: the inner copy of
   im2col and col2im. Rows there are short (11 floats for a 13x13 input and a 3x3 kernel) and
   many, so a memcpy call or a scalar loop per row costs more than the data; with AVX-512 each
   row is one or two masked load/store pairs. Exact copies and adds: the kernel does not change
   results. */
static void dl__conv_rows_c(float *dst, size_t ld_dst, const float *src, size_t ld_src, int rows, int n, int add) {
    int r, j;
    for (r = 0; r < rows; r++, dst += ld_dst, src += ld_src)
        if (add) for (j = 0; j < n; j++) dst[j] += src[j];
        else memcpy(dst, src, sizeof(float) * (size_t)n);
}

#ifdef DL__X86_SIMD
DL__TARGET_AVX512 static void dl__conv_rows_avx512(float *dst, size_t ld_dst, const float *src, size_t ld_src, int rows, int n,
                                                   int add) {
    int r, j, full = n & ~15;
    __mmask16 tail = (__mmask16)((1u << (n & 15)) - 1u);
    for (r = 0; r < rows; r++, dst += ld_dst, src += ld_src) {
        for (j = 0; j < full; j += 16) {
            __m512 v = _mm512_loadu_ps(src + j);
            if (add) v = _mm512_add_ps(v, _mm512_loadu_ps(dst + j));
            _mm512_storeu_ps(dst + j, v);
        }
        if (tail) {
            __m512 v = _mm512_maskz_loadu_ps(tail, src + full);
            if (add) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(tail, dst + full));
            _mm512_mask_storeu_ps(dst + full, tail, v);
        }
    }
}

/* col2im with stride 1 along the width: each image row is loaded once, 16 columns at a time,
   all kh*kw shifted col rows that land on it are summed in registers, and it is stored once.
   (Adding one col row at a time makes each load of img overlap the previous masked store by all
   but one float, a store-forwarding stall per row.) For each image element the terms are added
   in the same (p, q) order as the plain loop, so the results are the same bits. */
DL__TARGET_AVX512 static void dl__conv_col2im_avx512(const dl__conv_geom *g, float *img, const float *col, size_t ldcol) {
    int c, p, q, r, x0, ow = g->ow, sh1 = g->sh == 1;
    for (c = 0; c < g->c; c++)
        for (r = 0; r < g->h; r++) {
            float *row = img + ((size_t)c * g->h + (size_t)r) * g->w;
            for (x0 = 0; x0 < g->w; x0 += 16) {
                int nl = g->w - x0 < 16 ? g->w - x0 : 16;
                __mmask16 m = (__mmask16)((1u << nl) - 1u);
                __m512 acc = _mm512_maskz_loadu_ps(m, row + x0);
                for (p = 0; p < g->kh; p++) {
                    int di = r - (p * g->dh - g->ph), i = sh1 ? di : di / g->sh; /* output row i reads row r */
                    const float *ci;
                    if (di < 0 || i >= g->oh || (!sh1 && di % g->sh)) continue; /* (no divisions when sh == 1) */
                    ci = col + (((size_t)c * g->kh + p) * g->kw) * ldcol + (size_t)i * ow;
                    for (q = 0; q < g->kw; q++) {
                        /* lane l is image column x0 + l, output column j = x0 + l - off */
                        int off = q * g->dw - g->pw, lo = off - x0, hi = ow + off - x0;
                        if (lo < 0) lo = 0;
                        if (hi > nl) hi = nl;
                        if (hi <= lo) continue;
                        acc = _mm512_add_ps(acc, _mm512_maskz_loadu_ps((__mmask16)(((1u << hi) - 1u) & ~((1u << lo) - 1u)),
                                                                       ci + ((ptrdiff_t)((size_t)q * ldcol) + x0 - off)));
                    }
                }
                _mm512_mask_storeu_ps(row + x0, m, acc);
            }
        }
}
#endif

static int dl__conv_has_avx512(void) {
#ifdef DL__X86_SIMD
    static int has = -1; /* benign race: every thread computes the same value */
    if (has < 0) has = __builtin_cpu_supports("avx512f") ? 1 : 0;
    return has;
#else
    return 0;
#endif
}

static void dl__conv_rows(float *dst, size_t ld_dst, const float *src, size_t ld_src, int rows, int n, int add) {
#ifdef DL__X86_SIMD
    if (dl__conv_has_avx512()) { dl__conv_rows_avx512(dst, ld_dst, src, ld_src, rows, n, add); return; }
#endif
    dl__conv_rows_c(dst, ld_dst, src, ld_src, rows, n, add);
}

/* to_img == 0 (im2col): col[(c*kh + p)*kw + q][i*ow + j] = img[c][i*sh - ph + p*dh][j*sw - pw + q*dw],
   0 outside the image. to_img == 1 (col2im): the adjoint, img[...] += col[...]. ldcol is the row
   stride of col (>= oh*ow), so several images can sit side by side in one col matrix. For each
   (c, p, q) the output rows [i0, i1) and columns [j0, j1) that land inside the image are found
   once; with stride 1 along the width that block is a strided 2-D copy (dl__conv_rows), and
   padding only costs a memset of the row's block before it. */
static void dl__conv_im2col(const dl__conv_geom *g, float *img, float *col, size_t ldcol, int to_img) {
    int c, p, q, i, j, ow = g->ow, hw = g->oh * g->ow;
#ifdef DL__X86_SIMD
    if (to_img && g->sw == 1 && dl__conv_has_avx512()) { dl__conv_col2im_avx512(g, img, col, ldcol); return; }
#endif
    for (c = 0; c < g->c; c++)
        for (p = 0; p < g->kh; p++) {
            int ih_off = p * g->dh - g->ph, i0, i1; /* image row of output row i: i*sh + ih_off */
            dl__conv_valid_range(ih_off, g->sh, g->h, g->oh, &i0, &i1);
            for (q = 0; q < g->kw; q++, col += ldcol) {
                int off = q * g->dw - g->pw, j0, j1; /* image column of output column j: j*sw + off */
                float *out = col + (size_t)i0 * ow, *row;
                dl__conv_valid_range(off, g->sw, g->w, ow, &j0, &j1);
                if (!to_img && (i0 > 0 || i1 < g->oh || j0 > 0 || j1 < ow)) memset(col, 0, sizeof(float) * (size_t)hw);
                if (i1 <= i0 || j1 <= j0) continue;
                row = img + ((size_t)c * g->h + (size_t)(i0 * g->sh + ih_off)) * g->w + off;
                if (g->sw == 1) {
                    if (to_img) dl__conv_rows(row + j0, (size_t)g->sh * g->w, out + j0, (size_t)ow, i1 - i0, j1 - j0, 1);
                    else dl__conv_rows(out + j0, (size_t)ow, row + j0, (size_t)g->sh * g->w, i1 - i0, j1 - j0, 0);
                    continue;
                }
                for (i = i0; i < i1; i++, out += ow, row += (size_t)g->sh * g->w)
                    if (to_img) for (j = j0; j < j1; j++) row[j * g->sw] += out[j];
                    else for (j = j0; j < j1; j++) out[j] = row[j * g->sw];
            }
        }
}

/* y[c][:] += b[c] over planes of hw elements. */
static void dl__conv_add_bias(float *y, const float *b, int c, size_t hw) {
    int k;
    size_t i;
    for (k = 0; k < c; k++, y += hw)
        for (i = 0; i < hw; i++) y[i] += b[k];
}

/* acc[c] += sum of y[c][:] over planes of hw elements. Sixteen running sums, so the compiler
   can keep them in one vector register (a single running sum is a serial chain of adds). */
static void dl__conv_add_sums(const float *y, float *acc, int c, size_t hw) {
    int k, l;
    size_t i;
    for (k = 0; k < c; k++, y += hw) {
        float s[16] = {0}, total = 0.0f;
        for (i = 0; i + 16 <= hw; i += 16)
            for (l = 0; l < 16; l++) s[l] += y[i + l];
        for (; i < hw; i++) total += y[i];
        for (l = 0; l < 16; l++) total += s[l];
        acc[k] += total;
    }
}

/* One batch of the per-image products; fields left NULL are skipped. */
typedef struct dl__conv_job {
    dl__conv_geom g;
    int n, rows;
    const float *m;           /* [rows, K] */
    const float *img_in;      /* [n, c, h, w]: source of col for apply and weights */
    float *small_out;         /* apply: small_out = M @ col + small_beta * small_out */
    float small_beta;
    const float *small_bias;  /* [rows], added to small_out */
    const float *small_in;    /* [n, rows, oh, ow]: input of weights and adjoint */
    float *img_out;           /* adjoint: img_out += col2im(M^T @ small_in) */
    const float *img_bias;    /* [c], added to img_out */
    float *dm;                /* weights: dm += small_in @ col^T, [rows, K] */
    const float *db_src;      /* db[k] += sum over images and pixels of db_src[:, k] */
    int db_c;
    size_t db_hw;
    float *db;
    /* set by dl__conv_run */
    int n_chunks;
    float *col, *dm_part, *db_part;  /* per chunk: [K, oh*ow], [rows, K], [db_c] */
} dl__conv_job;

static void dl__conv_chunk(void *ctx, int chunk) {
    const dl__conv_job *jb = (const dl__conv_job *)ctx;
    const dl__conv_geom *g = &jb->g;
    int rows = jb->rows, hw = g->oh * g->ow, k = g->c * g->kh * g->kw, n;
    int identity = dl__conv_is_identity(g);
    size_t img_size = (size_t)g->c * g->h * g->w, small_size = (size_t)rows * hw;
    float *col = jb->col ? jb->col + (size_t)chunk * k * hw : NULL;
    float *dm = jb->dm ? jb->dm_part + (size_t)chunk * rows * k : NULL;
    float *db = jb->db ? jb->db_part + (size_t)chunk * jb->db_c : NULL;
    int n0 = (int)((long long)jb->n * chunk / jb->n_chunks), n1 = (int)((long long)jb->n * (chunk + 1) / jb->n_chunks);
    for (n = n0; n < n1; n++) {
        const float *small_in = jb->small_in ? jb->small_in + n * small_size : NULL;
        if (jb->img_in && (jb->small_out || dm)) {
            const float *cols = jb->img_in + n * img_size;
            if (!identity) { dl__conv_im2col(g, (float *)cols, col, (size_t)hw, 0); cols = col; }
            if (jb->small_out) {
                float *y = jb->small_out + n * small_size;
                dl_sgemm(0, 0, rows, hw, k, 1.0f, jb->m, k, cols, hw, jb->small_beta, y, hw);
                if (jb->small_bias) dl__conv_add_bias(y, jb->small_bias, rows, (size_t)hw);
            }
            if (dm) dl_sgemm(0, 1, rows, k, hw, 1.0f, small_in, hw, cols, hw, 1.0f, dm, k);
        }
        if (jb->img_out) {
            float *x = jb->img_out + n * img_size;
            if (identity) {
                dl_sgemm(1, 0, k, hw, rows, 1.0f, jb->m, k, small_in, hw, 1.0f, x, hw);
            } else {
                dl_sgemm(1, 0, k, hw, rows, 1.0f, jb->m, k, small_in, hw, 0.0f, col, hw);
                dl__conv_im2col(g, x, col, (size_t)hw, 1);
            }
            if (jb->img_bias) dl__conv_add_bias(x, jb->img_bias, g->c, (size_t)g->h * g->w);
        }
        if (db) dl__conv_add_sums(jb->db_src + (size_t)n * jb->db_c * jb->db_hw, db, jb->db_c, jb->db_hw);
    }
}

#define DL__CONV_MAX_CHUNKS 16
#define DL__CONV_SCRATCH_FLOATS ((size_t)1 << 23)  /* per-chunk buffers share about 32 MB */

/* Runs a job over the batch: allocates per-chunk scratch from the arena, runs the chunks in
   parallel, then adds the chunk sums of dW and db into jb->dm and jb->db in chunk order. */
static int dl__conv_run(dl__conv_job *jb) {
    const dl__conv_geom *g = &jb->g;
    size_t k = (size_t)g->c * g->kh * g->kw, hw = (size_t)g->oh * g->ow, per_chunk, i;
    int need_col = !dl__conv_is_identity(g) && (jb->img_out || (jb->img_in && (jb->small_out || jb->dm))), c;
    per_chunk = (need_col ? k * hw : 0) + (jb->dm ? (size_t)jb->rows * k : 0) + (jb->db ? (size_t)jb->db_c : 0);
    jb->n_chunks = jb->n < DL__CONV_MAX_CHUNKS ? jb->n : DL__CONV_MAX_CHUNKS;
    if (per_chunk && (size_t)jb->n_chunks * per_chunk > DL__CONV_SCRATCH_FLOATS)
        jb->n_chunks = (int)(DL__CONV_SCRATCH_FLOATS / per_chunk);
    if (jb->n_chunks < 1) jb->n_chunks = 1;
    if (jb->n == 0) return 1;
    jb->col = jb->dm_part = jb->db_part = NULL;
    if (need_col && !(jb->col = (float *)dl__tmp_alloc(sizeof(float) * k * hw * jb->n_chunks))) return 0;
    if (jb->dm) {
        size_t bytes = sizeof(float) * jb->rows * k * jb->n_chunks;
        if (!(jb->dm_part = (float *)dl__tmp_alloc(bytes))) return 0;
        memset(jb->dm_part, 0, bytes);
    }
    if (jb->db) {
        size_t bytes = sizeof(float) * jb->db_c * jb->n_chunks;
        if (!(jb->db_part = (float *)dl__tmp_alloc(bytes))) return 0;
        memset(jb->db_part, 0, bytes);
    }
    /* One chunk runs here, so its GEMMs can use the whole pool (batch 1 inference). */
    if (jb->n_chunks == 1) dl__conv_chunk(jb, 0);
    else dl_parallel_for(jb->n_chunks, dl__conv_chunk, jb);
    for (c = 0; c < jb->n_chunks; c++) {
        if (jb->dm) for (i = 0; i < jb->rows * k; i++) jb->dm[i] += jb->dm_part[c * jb->rows * k + i];
        if (jb->db) for (i = 0; i < (size_t)jb->db_c; i++) jb->db[i] += jb->db_part[c * jb->db_c + i];
    }
    return 1;
}

/* What conv backward needs: the geometry and the contiguous x and w seen by the forward. */
typedef struct dl__conv_ctx {
    dl__conv_geom g;
    int n, rows;
    const float *x, *w;
} dl__conv_ctx;

/* Checks the (x, w, b) triple of both convolutions. w_in_axis is the axis of w that must match
   x's channels (1 for conv2d, 0 for conv_transpose2d); b must match the other. */
static int dl__conv_args(dl_tensor *x, dl_tensor *w, dl_tensor *b, int w_in_axis, const char *op) {
    char sx[64], sw[64], sb[64];
    int out_axis = 1 - w_in_axis;
    if (!dl__conv_check(x, op, "x", 4) || !dl__conv_check(w, op, "w", 4) || (b && !dl__conv_check(b, op, "b", 1))) return 0;
    if (w->shape[w_in_axis] != x->shape[1]) {
        dl__fail("%s: x %s has %d channels but w %s expects %d (w is %s)", op, dl_shape_str(x, sx, sizeof sx), x->shape[1],
                 dl_shape_str(w, sw, sizeof sw), w->shape[w_in_axis], w_in_axis ? "[Cout, Cin, kh, kw]" : "[Cin, Cout, kh, kw]");
        return 0;
    }
    if (b && b->shape[0] != w->shape[out_axis]) {
        dl__fail("%s: bias %s must have %d elements, one per output channel of w %s", op, dl_shape_str(b, sb, sizeof sb),
                 w->shape[out_axis], dl_shape_str(w, sw, sizeof sw));
        return 0;
    }
    return 1;
}

/* Records a convolution on the tape, saving what its backward needs: the geometry and the
   contiguous x and w the forward read. Returns y. */
static dl_tensor *dl__conv_record(const char *op, dl_tensor *y, dl_tensor *x, dl_tensor *w, dl_tensor *b,
                                  dl_backward_fn backward, const dl__conv_job *jb, const float *x_data) {
    dl_tensor *in[3];
    dl_node *nd;
    in[0] = x;
    in[1] = w;
    in[2] = b;
    nd = dl_record(op, y, b ? 3 : 2, in, backward, sizeof(dl__conv_ctx));
    if (nd) {
        dl__conv_ctx *c = (dl__conv_ctx *)nd->ctx;
        c->g = jb->g;
        c->n = jb->n;
        c->rows = jb->rows;
        c->x = x_data;
        c->w = jb->m;
    }
    return y;
}

/* conv2d: y = W @ im2col(x) + b.  dW = dy @ im2col(x)^T, dx = col2im(W^T @ dy), db = sum dy. */
static void dl__conv2d_backward(dl_node *nd) {
    const dl__conv_ctx *c = (const dl__conv_ctx *)nd->ctx;
    dl__conv_job jb;
    float *gw = dl_grad_buf(nd->in[1]);
    memset(&jb, 0, sizeof jb);
    jb.g = c->g;
    jb.n = c->n;
    jb.rows = c->rows;
    jb.m = c->w;
    jb.small_in = nd->out->grad;
    jb.img_in = gw ? c->x : NULL;
    jb.dm = gw;
    jb.img_out = dl_grad_buf(nd->in[0]);
    jb.db = nd->n_in > 2 ? dl_grad_buf(nd->in[2]) : NULL;
    jb.db_src = nd->out->grad;
    jb.db_c = c->rows;
    jb.db_hw = (size_t)c->g.oh * c->g.ow;
    dl__conv_run(&jb);
}

DLDEF dl_tensor *dl_conv2d(dl_tensor *x, dl_tensor *w, dl_tensor *b, const dl_conv_opts *opts) {
    const char *op = "dl_conv2d";
    dl__conv_job jb;
    dl__conv_geom g;
    dl_tensor *y;
    int shape[4];
    if (!x || !w) return NULL;
    if (!dl__conv_args(x, w, b, 1, op) || !dl__conv_window(&g, opts, w->shape[2], w->shape[3], 0, NULL, op)) return NULL;
    g.c = x->shape[1];
    g.h = x->shape[2];
    g.w = x->shape[3];
    g.oh = dl__conv_out_size(g.h, g.kh, g.sh, g.ph, g.dh);
    g.ow = dl__conv_out_size(g.w, g.kw, g.sw, g.pw, g.dw);
    if (g.oh < 1 || g.ow < 1)
        return (dl_tensor *)dl__fail("%s: kernel %dx%d (dilation %dx%d) is larger than the padded input %dx%d (padding %dx%d)", op,
                                     g.kh, g.kw, g.dh, g.dw, g.h + 2 * g.ph, g.w + 2 * g.pw, g.ph, g.pw);
    shape[0] = x->shape[0];
    shape[1] = w->shape[0];
    shape[2] = g.oh;
    shape[3] = g.ow;
    if (!(y = dl_tmp_uninit(DL_F32, 4, shape))) return NULL;
    memset(&jb, 0, sizeof jb);
    jb.g = g;
    jb.n = x->shape[0];
    jb.rows = w->shape[0];
    jb.m = dl_contig_f32(w);
    jb.img_in = dl_contig_f32(x);
    jb.small_out = dl_f32(y);
    jb.small_bias = b ? dl_contig_f32(b) : NULL;
    if (!jb.m || !jb.img_in || (b && !jb.small_bias) || !dl__conv_run(&jb)) return NULL;
    return dl__conv_record("conv2d", y, x, w, b, dl__conv2d_backward, &jb, jb.img_in);
}

/* conv_transpose2d: y = col2im(W^T @ x) + b, W viewed as [Cin, Cout*kh*kw].
   dx = W @ im2col(dy), dW = x @ im2col(dy)^T, db = sum dy. */
static void dl__conv_transpose2d_backward(dl_node *nd) {
    const dl__conv_ctx *c = (const dl__conv_ctx *)nd->ctx;
    dl__conv_job jb;
    memset(&jb, 0, sizeof jb);
    jb.g = c->g;
    jb.n = c->n;
    jb.rows = c->rows;
    jb.m = c->w;
    jb.img_in = nd->out->grad;
    jb.small_out = dl_grad_buf(nd->in[0]);
    jb.small_beta = 1.0f;
    jb.small_in = c->x;
    jb.dm = dl_grad_buf(nd->in[1]);
    jb.db = nd->n_in > 2 ? dl_grad_buf(nd->in[2]) : NULL;
    jb.db_src = nd->out->grad;
    jb.db_c = c->g.c;
    jb.db_hw = (size_t)c->g.h * c->g.w;
    dl__conv_run(&jb);
}

DLDEF dl_tensor *dl_conv_transpose2d(dl_tensor *x, dl_tensor *w, dl_tensor *b, const dl_conv_opts *opts) {
    const char *op = "dl_conv_transpose2d";
    dl__conv_job jb;
    dl__conv_geom g;
    dl_tensor *y;
    int shape[4], opad[2], i;
    long long size[2];
    if (!x || !w) return NULL;
    if (!dl__conv_args(x, w, b, 0, op) || !dl__conv_window(&g, opts, w->shape[2], w->shape[3], 0, opad, op)) return NULL;
    for (i = 0; i < 2; i++) {
        int s = i ? g.sw : g.sh, d = i ? g.dw : g.dh, p = i ? g.pw : g.ph, k = i ? g.kw : g.kh;
        if (opad[i] >= s && opad[i] >= d)
            return (dl_tensor *)dl__fail("%s: output_padding %d must be smaller than the stride %d or the dilation %d", op,
                                         opad[i], s, d);
        size[i] = (long long)(x->shape[2 + i] - 1) * s - 2LL * p + (long long)d * (k - 1) + opad[i] + 1;
    }
    if (size[0] < 1 || size[1] < 1 || size[0] > 1 << 30 || size[1] > 1 << 30)
        return (dl_tensor *)dl__fail("%s: output size %lldx%lld is not positive (input %dx%d, padding %dx%d)", op, size[0], size[1],
                                     x->shape[2], x->shape[3], g.ph, g.pw);
    g.c = w->shape[1];
    g.h = (int)size[0];
    g.w = (int)size[1];
    g.oh = x->shape[2];
    g.ow = x->shape[3];
    shape[0] = x->shape[0];
    shape[1] = g.c;
    shape[2] = g.h;
    shape[3] = g.w;
    if (!(y = dl_tmp(DL_F32, 4, shape))) return NULL;
    memset(&jb, 0, sizeof jb);
    jb.g = g;
    jb.n = x->shape[0];
    jb.rows = x->shape[1];
    jb.m = dl_contig_f32(w);
    jb.small_in = dl_contig_f32(x);
    jb.img_out = dl_f32(y);
    jb.img_bias = b ? dl_contig_f32(b) : NULL;
    if (!jb.m || !jb.small_in || (b && !jb.img_bias) || !dl__conv_run(&jb)) return NULL;
    return dl__conv_record("conv_transpose2d", y, x, w, b, dl__conv_transpose2d_backward, &jb, jb.small_in);
}

/* ---- Per-plane ops: pools, padding, upsampling ----
   These treat [N, C, H, W] as N*C independent planes, run in parallel over ranges of planes
   (each plane's result does not depend on the split). */

typedef void (*dl__conv_planes_fn)(void *ctx, size_t p0, size_t p1);
typedef struct dl__conv_planes_job { dl__conv_planes_fn fn; void *ctx; size_t n; int tasks; } dl__conv_planes_job;

static void dl__conv_planes_task(void *ctx, int t) {
    const dl__conv_planes_job *j = (const dl__conv_planes_job *)ctx;
    j->fn(j->ctx, j->n * (size_t)t / (size_t)j->tasks, j->n * (size_t)(t + 1) / (size_t)j->tasks);
}

static void dl__conv_for_planes(size_t n_planes, size_t work_per_plane, dl__conv_planes_fn fn, void *ctx) {
    dl__conv_planes_job j;
    j.fn = fn;
    j.ctx = ctx;
    j.n = n_planes;
    j.tasks = n_planes * work_per_plane < 32768 ? 1 : 4 * dl_get_num_threads();
    if ((size_t)j.tasks > n_planes) j.tasks = (int)n_planes;
    if (j.tasks <= 1) fn(ctx, 0, n_planes);
    else dl_parallel_for(j.tasks, dl__conv_planes_task, &j);
}

typedef struct dl__pool2d_ctx {
    dl__conv_geom g;          /* c unused; h, w in; oh, ow out */
    int is_max;
    const float *x;           /* input, [planes, h, w] */
    const float *y;           /* output, [planes, oh, ow] */
    const int *win;           /* [oh + ow][2]: the [lo, hi) tap ranges of each output row, then column */
    const float *gy;          /* backward */
    float *gx;
} dl__pool2d_ctx;

/* The taps of output (i, j) inside the image: rows h0 + p*dh for p in [pa, pb), columns w0 + q*dw
   for q in [qa, qb); returns h0*w + w0, the plane index of tap (0, 0) (may be outside). */
static int dl__pool2d_window(const dl__pool2d_ctx *c, int i, int j, int *pa, int *pb, int *qa, int *qb) {
    const dl__conv_geom *g = &c->g;
    *pa = c->win[2 * i];
    *pb = c->win[2 * i + 1];
    *qa = c->win[2 * (g->oh + j)];
    *qb = c->win[2 * (g->oh + j) + 1];
    return (i * g->sh - g->ph) * g->w + j * g->sw - g->pw;
}

/* max: y = max over the window's taps, NaN if any tap is NaN.  avg: y = sum / (kh*kw). */
static void dl__pool2d_forward_planes(void *ctx, size_t p0, size_t p1) {
    const dl__pool2d_ctx *c = (const dl__pool2d_ctx *)ctx;
    const dl__conv_geom *g = &c->g;
    float inv = 1.0f / (float)(g->kh * g->kw);
    size_t pl, in_size = (size_t)g->h * g->w, out_size = (size_t)g->oh * g->ow;
    int i, j, p, q, pa, pb, qa, qb;
    for (pl = p0; pl < p1; pl++) {
        const float *x = c->x + pl * in_size;
        float *y = (float *)c->y + pl * out_size;
        for (i = 0; i < g->oh; i++)
            for (j = 0; j < g->ow; j++, y++) {
                int r = dl__pool2d_window(c, i, j, &pa, &pb, &qa, &qb), nan = 0;
                float best = -INFINITY, sum = 0.0f;
                for (p = pa; p < pb; p++) {
                    const float *row = x + (r + p * g->dh * g->w); /* + q*dw: tap (p, q) */
                    if (c->is_max) {
                        for (q = qa; q < qb; q++) { /* branch-free: compiles to max and or */
                            float v = row[q * g->dw];
                            best = v > best ? v : best;
                            nan |= v != v;
                        }
                    } else {
                        for (q = qa; q < qb; q++) sum += row[q * g->dw];
                    }
                }
                *y = c->is_max ? (nan ? NAN : best) : sum * inv;
            }
    }
}

/* Plane index of the tap of output (i, j) that gets max pooling's gradient, as torch picks it:
   the first tap equal to the max m in row-major scan order, or the last NaN when m is NaN. The
   scan runs backwards with a branch-free select (random data mispredicts every other branch). */
static int dl__pool2d_argmax(const dl__pool2d_ctx *c, const float *x, int i, int j, float m) {
    const dl__conv_geom *g = &c->g;
    int pa, pb, qa, qb, p, q, at = -1, r = dl__pool2d_window(c, i, j, &pa, &pb, &qa, &qb);
    for (p = pb - 1; p >= pa; p--)
        for (q = qb - 1; q >= qa; q--) {
            int k = r + p * g->dh * g->w + q * g->dw;
            at ^= (at ^ k) & -(int)(x[k] == m);
        }
    if (m != m) /* rare: a NaN */
        for (p = pa; p < pb; p++)
            for (q = qa; q < qb; q++) {
                int k = r + p * g->dh * g->w + q * g->dw;
                if (x[k] != x[k]) at = k;
            }
    return at;
}

/* max: dx[argmax] += dy.  avg: dx[window] += dy / (kh*kw). */
static void dl__pool2d_backward_planes(void *ctx, size_t p0, size_t p1) {
    const dl__pool2d_ctx *c = (const dl__pool2d_ctx *)ctx;
    const dl__conv_geom *g = &c->g;
    float inv = 1.0f / (float)(g->kh * g->kw);
    size_t pl, in_size = (size_t)g->h * g->w, out_size = (size_t)g->oh * g->ow;
    int i, j, p, q, pa, pb, qa, qb;
    for (pl = p0; pl < p1; pl++) {
        const float *x = c->x + pl * in_size, *y = c->y + pl * out_size, *gy = c->gy + pl * out_size;
        float *gx = c->gx + pl * in_size;
        for (i = 0; i < g->oh; i++)
            for (j = 0; j < g->ow; j++, y++, gy++) {
                int r;
                if (c->is_max) {
                    gx[dl__pool2d_argmax(c, x, i, j, *y)] += *gy;
                    continue;
                }
                r = dl__pool2d_window(c, i, j, &pa, &pb, &qa, &qb);
                for (p = pa; p < pb; p++)
                    for (q = qa; q < qb; q++) gx[r + p * g->w + q] += *gy * inv;
            }
    }
}

static void dl__pool2d_backward(dl_node *nd) {
    dl__pool2d_ctx c = *(const dl__pool2d_ctx *)nd->ctx;
    dl_tensor *x = nd->in[0];
    c.gx = dl_grad_buf(x);
    c.gy = nd->out->grad;
    if (c.gx)
        dl__conv_for_planes((size_t)x->shape[0] * x->shape[1], (size_t)c.g.oh * c.g.ow * c.g.kh * c.g.kw, dl__pool2d_backward_planes, &c);
}

static dl_tensor *dl__pool2d(dl_tensor *x, int kh, int kw, const dl_conv_opts *opts, int is_max, const char *op) {
    dl__pool2d_ctx c;
    dl__conv_geom *g = &c.g;
    dl_tensor *y;
    dl_node *nd;
    int shape[4], i, *win;
    if (!x) return NULL;
    if (!dl__conv_check(x, op, "x", 4) || !dl__conv_window(g, opts, kh, kw, 1, NULL, op)) return NULL;
    if (!is_max && (g->dh != 1 || g->dw != 1)) return (dl_tensor *)dl__fail("%s: dilation is not supported (torch has none)", op);
    for (i = 0; i < 2; i++) {
        int k = i ? g->kw : g->kh, d = i ? g->dw : g->dh, p = i ? g->pw : g->ph;
        if (p > ((k - 1) * d + 1) / 2)
            return (dl_tensor *)dl__fail("%s: padding %d must be at most half the kernel %d (dilation %d), as in torch", op, p, k, d);
    }
    g->c = x->shape[1];
    g->h = x->shape[2];
    g->w = x->shape[3];
    g->oh = dl__conv_out_size(g->h, g->kh, g->sh, g->ph, g->dh);
    g->ow = dl__conv_out_size(g->w, g->kw, g->sw, g->pw, g->dw);
    if (g->oh < 1 || g->ow < 1)
        return (dl_tensor *)dl__fail("%s: kernel %dx%d (dilation %dx%d) is larger than the padded input %dx%d", op, g->kh, g->kw, g->dh,
                                     g->dw, g->h + 2 * g->ph, g->w + 2 * g->pw);
    if ((long long)g->h * g->w > 0x7fffffffLL) return (dl_tensor *)dl__fail("%s: planes over 2^31 pixels", op);
    shape[0] = x->shape[0];
    shape[1] = x->shape[1];
    shape[2] = g->oh;
    shape[3] = g->ow;
    if (!(y = dl_tmp_uninit(DL_F32, 4, shape)) || !(c.x = dl_contig_f32(x))) return NULL;
    c.y = dl_f32(y);
    c.is_max = is_max;
    if (!(win = (int *)dl__tmp_alloc(sizeof(int) * 2 * (size_t)(g->oh + g->ow)))) return NULL;
    for (i = 0; i < g->oh; i++) dl__conv_valid_range(i * g->sh - g->ph, g->dh, g->h, g->kh, &win[2 * i], &win[2 * i + 1]);
    for (i = 0; i < g->ow; i++)
        dl__conv_valid_range(i * g->sw - g->pw, g->dw, g->w, g->kw, &win[2 * (g->oh + i)], &win[2 * (g->oh + i) + 1]);
    c.win = win;
    dl__conv_for_planes((size_t)shape[0] * shape[1], (size_t)g->oh * g->ow * g->kh * g->kw, dl__pool2d_forward_planes, &c);
    nd = dl_record(is_max ? "max_pool2d" : "avg_pool2d", y, 1, &x, dl__pool2d_backward, sizeof(dl__pool2d_ctx));
    if (nd) *(dl__pool2d_ctx *)nd->ctx = c;
    return y;
}

DLDEF dl_tensor *dl_max_pool2d(dl_tensor *x, int kernel_h, int kernel_w, const dl_conv_opts *opts) {
    return dl__pool2d(x, kernel_h, kernel_w, opts, 1, "dl_max_pool2d");
}

DLDEF dl_tensor *dl_avg_pool2d(dl_tensor *x, int kernel_h, int kernel_w, const dl_conv_opts *opts) {
    return dl__pool2d(x, kernel_h, kernel_w, opts, 0, "dl_avg_pool2d");
}

/* y[n,c] = mean(x[n,c,:,:]): an average pool with the whole plane as its window. */
DLDEF dl_tensor *dl_global_avg_pool2d(dl_tensor *x) {
    int shape[2];
    if (!x) return NULL;
    if (!dl__conv_check(x, "dl_global_avg_pool2d", "x", 4)) return NULL;
    if (x->shape[2] < 1 || x->shape[3] < 1) return (dl_tensor *)dl__fail("dl_global_avg_pool2d: empty planes");
    shape[0] = x->shape[0];
    shape[1] = x->shape[1];
    return dl_reshape(dl_avg_pool2d(x, x->shape[2], x->shape[3], NULL), 2, shape);
}

/* ---- Remaps by row and column maps (padding, upsampling) ----
   y[i][j] = x[rmap[i]][cmap[j]] per plane, 0 where a map is -1; backward adds dy back. */

typedef struct dl__remap_ctx {
    size_t planes;
    int h, w, oh, ow;
    const int *rmap, *cmap;
    const float *x;
    float *y;
    const float *gy;
    float *gx;
} dl__remap_ctx;

static void dl__remap_planes(void *ctx, size_t p0, size_t p1, int backward) {
    const dl__remap_ctx *c = (const dl__remap_ctx *)ctx;
    size_t pl, in_size = (size_t)c->h * c->w, out_size = (size_t)c->oh * c->ow;
    int i, j;
    for (pl = p0; pl < p1; pl++) {
        for (i = 0; i < c->oh; i++) {
            size_t o = pl * out_size + (size_t)i * c->ow, r;
            if (c->rmap[i] < 0) {
                if (!backward) memset(c->y + o, 0, sizeof(float) * (size_t)c->ow);
                continue;
            }
            r = pl * in_size + (size_t)c->rmap[i] * c->w;
            if (backward) {
                for (j = 0; j < c->ow; j++)
                    if (c->cmap[j] >= 0) c->gx[r + c->cmap[j]] += c->gy[o + j];
            } else {
                for (j = 0; j < c->ow; j++) c->y[o + j] = c->cmap[j] >= 0 ? c->x[r + c->cmap[j]] : 0.0f;
            }
        }
    }
}
static void dl__remap_forward_planes(void *ctx, size_t p0, size_t p1) { dl__remap_planes(ctx, p0, p1, 0); }
static void dl__remap_backward_planes(void *ctx, size_t p0, size_t p1) { dl__remap_planes(ctx, p0, p1, 1); }

static void dl__remap_backward(dl_node *nd) {
    dl__remap_ctx c = *(const dl__remap_ctx *)nd->ctx;
    c.gx = dl_grad_buf(nd->in[0]);
    c.gy = nd->out->grad;
    if (c.gx) dl__conv_for_planes(c.planes, (size_t)c.oh * c.ow, dl__remap_backward_planes, &c);
}

/* Runs the gather of c (maps already set) on x's last two axes; returns the [..., oh, ow] output. */
static dl_tensor *dl__remap2d(dl_tensor *x, dl__remap_ctx *c, const char *name) {
    int shape[DL_MAX_DIMS], k = x->ndim, i;
    dl_tensor *y;
    dl_node *nd;
    c->planes = 1;
    for (i = 0; i < k - 2; i++) { shape[i] = x->shape[i]; c->planes *= (size_t)x->shape[i]; }
    shape[k - 2] = c->oh;
    shape[k - 1] = c->ow;
    if (!(y = dl_tmp_uninit(DL_F32, k, shape)) || !(c->x = dl_contig_f32(x))) return NULL;
    c->y = dl_f32(y);
    dl__conv_for_planes(c->planes, (size_t)c->oh * c->ow, dl__remap_forward_planes, c);
    nd = dl_record(name, y, 1, &x, dl__remap_backward, sizeof(dl__remap_ctx));
    if (nd) *(dl__remap_ctx *)nd->ctx = *c;
    return y;
}

/* Allocates the maps of a gather from x's last two axes to an oh x ow output. */
static int dl__remap_maps(dl__remap_ctx *c, const dl_tensor *x, int oh, int ow) {
    c->h = x->shape[x->ndim - 2];
    c->w = x->shape[x->ndim - 1];
    c->oh = oh;
    c->ow = ow;
    c->rmap = (int *)dl__tmp_alloc(sizeof(int) * (size_t)(oh + ow));
    c->cmap = c->rmap ? c->rmap + oh : NULL;
    return c->rmap != NULL;
}

/* y[n,c,i,j] = x[n,c,i/sh,j/sw];  dx[n,c,a,b] = sum of dy over its sh x sw block. */
DLDEF dl_tensor *dl_upsample_nearest2d(dl_tensor *x, int scale_h, int scale_w) {
    const char *op = "dl_upsample_nearest2d";
    dl__remap_ctx c;
    int *map, i;
    if (!x) return NULL;
    if (!dl__conv_check(x, op, "x", 4)) return NULL;
    if (scale_h < 1 || scale_w < 1) return (dl_tensor *)dl__fail("%s: scale factors must be >= 1, got %dx%d", op, scale_h, scale_w);
    if ((long long)x->shape[2] * scale_h > 1 << 30 || (long long)x->shape[3] * scale_w > 1 << 30)
        return (dl_tensor *)dl__fail("%s: output too large", op);
    if (!dl__remap_maps(&c, x, x->shape[2] * scale_h, x->shape[3] * scale_w)) return NULL;
    map = (int *)c.rmap;
    for (i = 0; i < c.oh; i++) map[i] = i / scale_h;
    for (i = 0; i < c.ow; i++) map[c.oh + i] = i / scale_w;
    return dl__remap2d(x, &c, "upsample_nearest2d");
}

/* Source index of output position i along an axis of size n padded by `before`: -1 for zero
   padding outside, or reflected about the edges (torch "reflect"). */
static int dl__pad2d_source(int i, int before, int n, dl_pad_mode mode) {
    int s = i - before;
    if (s >= 0 && s < n) return s;
    if (mode == DL_PAD_ZERO) return -1;
    return s < 0 ? -s : 2 * (n - 1) - s;
}

/* zero: y = x inside, 0 outside.  reflect: y[i] = x[|i - before|] mirrored at both ends.
   dx = sum of dy over the outputs that read each input. */
DLDEF dl_tensor *dl_pad2d(dl_tensor *x, int pad_left, int pad_right, int pad_top, int pad_bottom, dl_pad_mode mode) {
    const char *op = "dl_pad2d";
    dl__remap_ctx c;
    int *map, i, h, w;
    if (!x) return NULL;
    if (!dl__conv_check(x, op, "x", -2)) return NULL;
    if (mode != DL_PAD_ZERO && mode != DL_PAD_REFLECT) return (dl_tensor *)dl__fail("%s: unknown mode %d", op, (int)mode);
    if (pad_left < 0 || pad_right < 0 || pad_top < 0 || pad_bottom < 0)
        return (dl_tensor *)dl__fail("%s: pads must be >= 0, got (%d, %d, %d, %d); crop with dl_slice", op, pad_left, pad_right, pad_top,
                                     pad_bottom);
    h = x->shape[x->ndim - 2];
    w = x->shape[x->ndim - 1];
    if (mode == DL_PAD_REFLECT && (pad_top >= h || pad_bottom >= h || pad_left >= w || pad_right >= w))
        return (dl_tensor *)dl__fail("%s: reflect padding (%d, %d, %d, %d) must be smaller than the input %dx%d", op, pad_left, pad_right,
                                     pad_top, pad_bottom, h, w);
    if ((long long)h + pad_top + pad_bottom > 1 << 30 || (long long)w + pad_left + pad_right > 1 << 30)
        return (dl_tensor *)dl__fail("%s: output too large", op);
    if (!dl__remap_maps(&c, x, h + pad_top + pad_bottom, w + pad_left + pad_right)) return NULL;
    map = (int *)c.rmap;
    for (i = 0; i < c.oh; i++) map[i] = dl__pad2d_source(i, pad_top, h, mode);
    for (i = 0; i < c.ow; i++) map[c.oh + i] = dl__pad2d_source(i, pad_left, w, mode);
    return dl__remap2d(x, &c, mode == DL_PAD_ZERO ? "pad2d_zero" : "pad2d_reflect");
}
