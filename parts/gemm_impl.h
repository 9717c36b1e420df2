/* ==== GEMM: the one matrix multiply of the library ==========================================

   C = alpha * op(A) @ op(B) + beta * C        row-major, op(X) = X or X^T

   Dense, conv (through im2col), RNN and attention layers all end up here, so this is where the
   time goes. The scheme is the one of GotoBLAS and BLIS:

     K. Goto and R. van de Geijn, "Anatomy of high-performance matrix multiplication",
       ACM Transactions on Mathematical Software 34(3), 2008.
     F. Van Zee and R. van de Geijn, "BLIS: a framework for rapidly instantiating BLAS
       functionality", ACM Transactions on Mathematical Software 41(3), 2015.

   Five loops around a micro-kernel; each loop keeps one block in one level of the cache:

     for jc in 0..n step NC                        columns of C and B
       for pc in 0..k step KC                      the shared dimension
         pack op(B)[pc:+KC, jc:+NC] -> Bp          KC x NC, kept in L3
         for ic in 0..m step MC                    rows of C and A
           pack op(A)[ic:+MC, pc:+KC] -> Ap        MC x KC, kept in L2
           for jr in 0..NC step NR                 one KC x NR micro-panel of Bp, kept in L1
             for ir in 0..MC step MR               one MR x KC micro-panel of Ap, streamed from L2
               C[ic+ir:+MR, jc+jr:+NR] = micro-kernel(Ap micro-panel, Bp micro-panel)

   Packing copies a block into the exact order the micro-kernel reads it, so the kernel walks
   memory strictly forward with unit stride whatever the transposes and leading dimensions were:

     Ap micro-panel: for p in 0..KC: the MR values op(A)[ir+0..MR-1, p]     (MR floats per step)
     Bp micro-panel: for p in 0..KC: the NR values op(B)[p, jr+0..NR-1]     (NR floats per step)

   The micro-kernel keeps the MR x NR block of C in vector registers and, for each p, loads one
   row of NR B values, broadcasts each of the MR A values and does MR * NR / width fused
   multiply-adds. Then it writes alpha * acc + beta * C once (beta is the caller's for the first
   KC block and 1 for the next ones, which add to what is already there).

     kernel    MR x NR   registers                             KC    MC    NC
     avx512    14 x 32   28 zmm accumulators + 2 for B          512   224   4096
     avx2       6 x 16   12 ymm accumulators + 2 for B          256   144   4096
     generic    4 x 16   plain C the compiler may vectorize     256   128   4096

   Edges. The last block of rows (fewer than MR) gets a kernel compiled for exactly that many
   rows, so no work is wasted there; the last block of columns is zero-padded to NR when B is
   packed and only its valid columns of C are written (AVX-512 masked stores).

   Small shapes. Packing costs about as much as one pass over the data, so when a matrix is used
   only a few times it is read in place instead:
     - op(A) and op(B) are packed only when big (> 2 MB) and, for A, when n > 2 NR; otherwise
       the kernel reads A through two strides and B through its row stride (measured faster
       while the blocks fit the L2 cache; big ones with power-of-two strides thrash it).
     - m <= 3 (a batch of one in RL, a GEMV) skips the blocking entirely: each row of C is
       x^T @ op(B), as 8 vector accumulators sweeping rows of B, or as dot products when op(B)
       is transposed.
     - n < NR / 2 (a small output layer) with op(A) = A: each element of C is a dot product,
       computed 4 x 4 at a time. Dot products of one row against many reduce 16 at once (one
       accumulator each, a transposing reduction, one vector store), not one by one.
     - n <= 16 with op(A) = A^T (a weight gradient X^T dY with few outputs, AVX-512): C^T =
       op(B)^T A with the roles swapped, rows of A are vectors of C columns; the accumulators
       are transposed in registers at the end (dl__avx512_tn_body).
     - op(B) = B^T is packed 16 x 16 blocks at a time, transposed in registers.
     - Read in place, the rows of a block are shared out evenly among micro-kernel calls.
     - n == 1 with ldc == 1 is turned into the m == 1 case by computing C^T = op(B)^T op(A)^T.

   Threads. C is cut into one tile per thread, by whole NR column panels (or MR row panels when
   C is taller than wide); each thread runs the loops above on its tile with its own packing
   buffers. K is never split, and which path and kernel computes an element depends only on the
   shape, so every element of C sees the same operations in the same order whatever the thread
   count: results are bit-identical for 1, 2, ... threads. Threads are used only when the work
   pays for waking them (see DL__GEMM_PARALLEL_MIN_FLOPS).

   Run-time dispatch. The SIMD kernels are compiled with __attribute__((target(...))), so this
   file builds with a plain `cc -O2` and picks AVX-512, AVX2+FMA or the C kernel on the machine
   it runs on (__builtin_cpu_supports). DL_GEMM_KERNEL=generic|avx2|avx512 forces one. */

#if !defined(DL_NO_THREADS) && !defined(_WIN32)
#define DL__THREADS 1
#include <pthread.h>
#include <unistd.h>
#endif

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__) && !defined(DL_NO_SIMD)
#define DL__X86_SIMD 1
#include <immintrin.h>
#define DL__TARGET_AVX512 __attribute__((target("avx512f")))
#define DL__TARGET_AVX2 __attribute__((target("avx2,fma")))
#define DL__ALWAYS_INLINE inline __attribute__((always_inline))
#endif

/* Threads are woken only for at least this many multiply-adds (m * n * k) in total. */
#ifndef DL__GEMM_PARALLEL_MIN_FLOPS
#define DL__GEMM_PARALLEL_MIN_FLOPS (96.0 * 96.0 * 96.0)
#endif
#define DL__GEMM_PACK_MIN_FLOATS (512.0 * 1024.0)   /* 2 MB of op(A) */
#define DL__GEMM_MAX_MR 14    /* the largest MR of all kernels */
#define DL__GEMM_SMALL_M 3    /* m up to this skips packing (row-at-a-time path); so does */
                              /* n < NR / 2 (dot products) */

/* How the micro-kernel combines its result with C. */
enum { DL__BETA_ZERO, DL__BETA_ONE, DL__BETA_ANY };

static int dl__beta_mode(float beta) {
    return beta == 0.0f ? DL__BETA_ZERO : beta == 1.0f ? DL__BETA_ONE : DL__BETA_ANY;
}

/* One micro-kernel call: C[0:rows, 0:cols] = alpha * (A @ B) + beta * C, with
     A[i][p] = a[i * rs_a + p * cs_a]   for i < rows, p < k    (rows <= MR)
     B[p][j] = b[p * rs_b + j]          for j < NR             (all NR readable: a packed,
                                                                 zero-padded micro-panel, or B)
   Only the first cols (<= NR) columns of C are written. */
typedef void (*dl__microkernel_fn)(int rows, int cols, int k, const float *a, ptrdiff_t rs_a,
                                   ptrdiff_t cs_a, const float *b, ptrdiff_t rs_b, float *c,
                                   ptrdiff_t ldc, float alpha, float beta);

/* y[j] = alpha * sum_p x[p * incx] * b[p * ldb + j] + beta * y[j], for j < n (B read in place). */
typedef void (*dl__gemv_fn)(int n, int k, const float *x, ptrdiff_t incx, const float *b,
                            ptrdiff_t ldb, float *y, float alpha, float beta);

/* y[j] = alpha * dot(x[0:k], b[j * ldb + 0:k]) + beta * y[j], for j < n. */
typedef void (*dl__dots_fn)(int n, int k, const float *x, const float *b, ptrdiff_t ldb,
                            float *y, float alpha, float beta);

/* Y[i][j] = alpha * dot(x[i * ldx + 0:k], b[j * ldb + 0:k]) + beta * Y[i][j], i < m, j < n. */
typedef void (*dl__dots_block_fn)(int m, int n, int k, const float *x, ptrdiff_t ldx,
                                  const float *b, ptrdiff_t ldb, float *y, ptrdiff_t ldy,
                                  float alpha, float beta);

/* C[i][j] = alpha * sum_p A[p * lda + i] * B[p * rs_b + j * cs_b] + beta * C[i][j], for i < m,
   j < n <= DL__GEMM_TN_MAX_N: op(A) transposed, few columns. */
#define DL__GEMM_TN_MAX_N 16
typedef void (*dl__tn_small_fn)(int m, int n, int k, const float *a, ptrdiff_t lda,
                                const float *b, ptrdiff_t rs_b, ptrdiff_t cs_b, float *c,
                                ptrdiff_t ldc, float alpha, float beta);

typedef struct dl__gemm_kernels {
    const char *name;
    int mr, nr, kc, mc, nc;
    dl__microkernel_fn packed[DL__GEMM_MAX_MR + 1];   /* [rows]; A packed: rs_a 1, cs_a MR */
    dl__microkernel_fn strided[DL__GEMM_MAX_MR + 1];  /* [rows]; A read in place, any strides */
    dl__gemv_fn gemv;
    dl__dots_fn dots;               /* one row of X */
    dl__dots_block_fn dots_block;   /* many rows of X */
    /* Packs a full MR-row micro-panel of row-major A (rows contiguous along k) into
       dst[p * MR + i]; may write up to 16 floats past the panel. NULL: plain C loops. */
    void (*pack_a_panel)(const float *a, ptrdiff_t lda, int kc, float *dst);
    /* Packs a full NR-column micro-panel of op(B) = B^T (rows of B contiguous along k) into
       dst[p * NR + j]. NULL: plain C loops. */
    void (*pack_bt_panel)(const float *b, ptrdiff_t ldb, int kc, float *dst);
    dl__tn_small_fn tn_small;   /* op(A) = A^T, n <= DL__GEMM_TN_MAX_N; NULL: not this way */
} dl__gemm_kernels;

/* ---- Generic C kernels (every platform) ---- */

#define DL__GENERIC_MR 4
#define DL__GENERIC_NR 16

static void dl__store_scalar(float *c, float acc, float alpha, float beta, int mode) {
    if (mode == DL__BETA_ZERO) *c = alpha * acc;
    else if (mode == DL__BETA_ONE) *c = alpha * acc + *c;
    else *c = alpha * acc + beta * *c;
}

static void dl__generic_microkernel(int rows, int cols, int k, const float *a, ptrdiff_t rs_a,
                                    ptrdiff_t cs_a, const float *b, ptrdiff_t rs_b, float *c,
                                    ptrdiff_t ldc, float alpha, float beta) {
    float acc[DL__GENERIC_MR][DL__GENERIC_NR];
    int i, j, p, mode = dl__beta_mode(beta);
    memset(acc, 0, sizeof acc);
    for (p = 0; p < k; p++) {
        const float *bp = b + p * rs_b;
        for (i = 0; i < rows; i++) {
            float ai = a[i * rs_a + p * cs_a];
            for (j = 0; j < DL__GENERIC_NR; j++) acc[i][j] += ai * bp[j];
        }
    }
    for (i = 0; i < rows; i++)
        for (j = 0; j < cols; j++) dl__store_scalar(c + i * ldc + j, acc[i][j], alpha, beta, mode);
}

static void dl__generic_gemv(int n, int k, const float *x, ptrdiff_t incx, const float *b,
                             ptrdiff_t ldb, float *y, float alpha, float beta) {
    float acc[64];
    int j0, j, p, w, mode = dl__beta_mode(beta);
    for (j0 = 0; j0 < n; j0 += 64) {
        w = n - j0 < 64 ? n - j0 : 64;
        memset(acc, 0, sizeof acc);
        for (p = 0; p < k; p++) {
            float xp = x[p * incx];
            const float *bp = b + p * ldb + j0;
            for (j = 0; j < w; j++) acc[j] += xp * bp[j];
        }
        for (j = 0; j < w; j++) dl__store_scalar(y + j0 + j, acc[j], alpha, beta, mode);
    }
}

static void dl__generic_dots(int n, int k, const float *x, const float *b, ptrdiff_t ldb,
                             float *y, float alpha, float beta) {
    int j, p, mode = dl__beta_mode(beta);
    for (j = 0; j < n; j++) {
        const float *bj = b + j * ldb;
        float acc[4] = {0, 0, 0, 0};
        for (p = 0; p + 4 <= k; p += 4) {
            acc[0] += x[p] * bj[p];
            acc[1] += x[p + 1] * bj[p + 1];
            acc[2] += x[p + 2] * bj[p + 2];
            acc[3] += x[p + 3] * bj[p + 3];
        }
        for (; p < k; p++) acc[0] += x[p] * bj[p];
        dl__store_scalar(y + j, (acc[0] + acc[1]) + (acc[2] + acc[3]), alpha, beta, mode);
    }
}

static void dl__generic_dots_block(int m, int n, int k, const float *x, ptrdiff_t ldx,
                                   const float *b, ptrdiff_t ldb, float *y, ptrdiff_t ldy,
                                   float alpha, float beta) {
    int i;
    for (i = 0; i < m; i++) dl__generic_dots(n, k, x + i * ldx, b, ldb, y + i * ldy, alpha, beta);
}

static const dl__gemm_kernels dl__gemm_generic = {
    "generic", DL__GENERIC_MR, DL__GENERIC_NR, 256, 128, 4096,
    {0, dl__generic_microkernel, dl__generic_microkernel, dl__generic_microkernel,
     dl__generic_microkernel},
    {0, dl__generic_microkernel, dl__generic_microkernel, dl__generic_microkernel,
     dl__generic_microkernel},
    dl__generic_gemv, dl__generic_dots, dl__generic_dots_block, NULL, NULL, NULL};

#ifdef DL__X86_SIMD
/* ---- AVX-512 kernels: MR x NR = 14 x 32 ----

   The body is written once for any number of rows; each wrapper below inlines it with a constant
   row count (and, for packed A, constant strides), and the compiler drops the unused rows. */

DL__TARGET_AVX512 static DL__ALWAYS_INLINE void
dl__avx512_store_row(float *c, __m512 acc0, __m512 acc1, int cols, __m512 alpha, __m512 beta,
                     int mode) {
    if (cols == 32) {
        if (mode == DL__BETA_ZERO) {
            _mm512_storeu_ps(c, _mm512_mul_ps(alpha, acc0));
            _mm512_storeu_ps(c + 16, _mm512_mul_ps(alpha, acc1));
        } else if (mode == DL__BETA_ONE) {
            _mm512_storeu_ps(c, _mm512_fmadd_ps(alpha, acc0, _mm512_loadu_ps(c)));
            _mm512_storeu_ps(c + 16, _mm512_fmadd_ps(alpha, acc1, _mm512_loadu_ps(c + 16)));
        } else {
            _mm512_storeu_ps(c, _mm512_fmadd_ps(alpha, acc0, _mm512_mul_ps(beta, _mm512_loadu_ps(c))));
            _mm512_storeu_ps(c + 16, _mm512_fmadd_ps(alpha, acc1,
                                                     _mm512_mul_ps(beta, _mm512_loadu_ps(c + 16))));
        }
    } else {
        __mmask16 m0 = (__mmask16)(cols >= 16 ? 0xFFFF : (1u << cols) - 1);
        __mmask16 m1 = (__mmask16)(cols <= 16 ? 0 : (1u << (cols - 16)) - 1);
        if (mode == DL__BETA_ZERO) {
            _mm512_mask_storeu_ps(c, m0, _mm512_mul_ps(alpha, acc0));
            _mm512_mask_storeu_ps(c + 16, m1, _mm512_mul_ps(alpha, acc1));
        } else if (mode == DL__BETA_ONE) {
            _mm512_mask_storeu_ps(c, m0, _mm512_fmadd_ps(alpha, acc0, _mm512_maskz_loadu_ps(m0, c)));
            _mm512_mask_storeu_ps(c + 16, m1,
                                  _mm512_fmadd_ps(alpha, acc1, _mm512_maskz_loadu_ps(m1, c + 16)));
        } else {
            _mm512_mask_storeu_ps(c, m0, _mm512_fmadd_ps(alpha, acc0,
                                                         _mm512_mul_ps(beta, _mm512_maskz_loadu_ps(m0, c))));
            _mm512_mask_storeu_ps(c + 16, m1,
                                  _mm512_fmadd_ps(alpha, acc1,
                                                  _mm512_mul_ps(beta, _mm512_maskz_loadu_ps(m1, c + 16))));
        }
    }
}

#define DL__AVX512_FMA_ROW(i)                                           \
    if (rows > i) {                                                     \
        __m512 a_i = _mm512_set1_ps(a[(i) * rs_a]);                     \
        acc##i##_0 = _mm512_fmadd_ps(a_i, b0, acc##i##_0);              \
        acc##i##_1 = _mm512_fmadd_ps(a_i, b1, acc##i##_1);              \
    }
#define DL__AVX512_STORE_ROW(i)                                                               \
    if (rows > i) dl__avx512_store_row(c + (i) * ldc, acc##i##_0, acc##i##_1, cols, valpha, vbeta, \
                                       mode);

DL__TARGET_AVX512 static DL__ALWAYS_INLINE void
dl__avx512_microkernel_body(int rows, int cols, int k, const float *a, ptrdiff_t rs_a,
                            ptrdiff_t cs_a, const float *b, ptrdiff_t rs_b, float *c,
                            ptrdiff_t ldc, float alpha, float beta) {
    __m512 acc0_0 = _mm512_setzero_ps(), acc0_1 = acc0_0, acc1_0 = acc0_0, acc1_1 = acc0_0;
    __m512 acc2_0 = acc0_0, acc2_1 = acc0_0, acc3_0 = acc0_0, acc3_1 = acc0_0;
    __m512 acc4_0 = acc0_0, acc4_1 = acc0_0, acc5_0 = acc0_0, acc5_1 = acc0_0;
    __m512 acc6_0 = acc0_0, acc6_1 = acc0_0, acc7_0 = acc0_0, acc7_1 = acc0_0;
    __m512 acc8_0 = acc0_0, acc8_1 = acc0_0, acc9_0 = acc0_0, acc9_1 = acc0_0;
    __m512 acc10_0 = acc0_0, acc10_1 = acc0_0, acc11_0 = acc0_0, acc11_1 = acc0_0;
    __m512 acc12_0 = acc0_0, acc12_1 = acc0_0, acc13_0 = acc0_0, acc13_1 = acc0_0;
    __m512 valpha = _mm512_set1_ps(alpha), vbeta = _mm512_set1_ps(beta);
    int p, mode = dl__beta_mode(beta);
    for (p = 0; p < rows; p++) {   /* start fetching the C tile now; it is needed at the end */
        _mm_prefetch((const char *)(c + p * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *)(c + p * ldc + 31), _MM_HINT_T0);
    }
    for (p = 0; p < k; p++) {
        __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);
        DL__AVX512_FMA_ROW(0) DL__AVX512_FMA_ROW(1) DL__AVX512_FMA_ROW(2) DL__AVX512_FMA_ROW(3)
        DL__AVX512_FMA_ROW(4) DL__AVX512_FMA_ROW(5) DL__AVX512_FMA_ROW(6) DL__AVX512_FMA_ROW(7)
        DL__AVX512_FMA_ROW(8) DL__AVX512_FMA_ROW(9) DL__AVX512_FMA_ROW(10) DL__AVX512_FMA_ROW(11)
        DL__AVX512_FMA_ROW(12) DL__AVX512_FMA_ROW(13)
        a += cs_a;
        b += rs_b;
    }
    DL__AVX512_STORE_ROW(0) DL__AVX512_STORE_ROW(1) DL__AVX512_STORE_ROW(2)
    DL__AVX512_STORE_ROW(3) DL__AVX512_STORE_ROW(4) DL__AVX512_STORE_ROW(5)
    DL__AVX512_STORE_ROW(6) DL__AVX512_STORE_ROW(7) DL__AVX512_STORE_ROW(8)
    DL__AVX512_STORE_ROW(9) DL__AVX512_STORE_ROW(10) DL__AVX512_STORE_ROW(11)
    DL__AVX512_STORE_ROW(12) DL__AVX512_STORE_ROW(13)
}

#define DL__AVX512_KERNELS(R)                                                                     \
    DL__TARGET_AVX512 static void dl__avx512_packed_##R(                                          \
        int rows, int cols, int k, const float *a, ptrdiff_t rs_a, ptrdiff_t cs_a, const float *b, \
        ptrdiff_t rs_b, float *c, ptrdiff_t ldc, float alpha, float beta) {                       \
        (void)rows, (void)rs_a, (void)cs_a;                                                       \
        dl__avx512_microkernel_body(R, cols, k, a, 1, 14, b, rs_b, c, ldc, alpha, beta); \
    }                                                                                             \
    DL__TARGET_AVX512 static void dl__avx512_strided_##R(                                         \
        int rows, int cols, int k, const float *a, ptrdiff_t rs_a, ptrdiff_t cs_a, const float *b, \
        ptrdiff_t rs_b, float *c, ptrdiff_t ldc, float alpha, float beta) {                       \
        (void)rows;                                                                               \
        dl__avx512_microkernel_body(R, cols, k, a, rs_a, cs_a, b, rs_b, c, ldc, alpha, beta); \
    }
DL__AVX512_KERNELS(1) DL__AVX512_KERNELS(2) DL__AVX512_KERNELS(3) DL__AVX512_KERNELS(4)
DL__AVX512_KERNELS(5) DL__AVX512_KERNELS(6) DL__AVX512_KERNELS(7) DL__AVX512_KERNELS(8)
DL__AVX512_KERNELS(9) DL__AVX512_KERNELS(10) DL__AVX512_KERNELS(11) DL__AVX512_KERNELS(12)
DL__AVX512_KERNELS(13) DL__AVX512_KERNELS(14)

DL__TARGET_AVX512 static DL__ALWAYS_INLINE __m512 dl__avx512_combine(__m512 acc, __m512 old,
                                                                     __m512 alpha, __m512 beta,
                                                                     int mode) {
    if (mode == DL__BETA_ZERO) return _mm512_mul_ps(alpha, acc);
    if (mode == DL__BETA_ONE) return _mm512_fmadd_ps(alpha, acc, old);
    return _mm512_fmadd_ps(alpha, acc, _mm512_mul_ps(beta, old));
}

/* Row vector times matrix, B read in place. 128 columns at a time in 8 accumulators (enough
   independent FMA chains to hide their latency); a last part of 64 to 127 columns the same way
   with masks; under 64 columns, 16 at a time with 4 chains over alternate p, summed at the end. */
DL__TARGET_AVX512 static void dl__avx512_gemv(int n, int k, const float *x, ptrdiff_t incx,
                                              const float *b, ptrdiff_t ldb, float *y,
                                              float alpha, float beta) {
    __m512 valpha = _mm512_set1_ps(alpha), vbeta = _mm512_set1_ps(beta);
    int j0 = 0, v, p, mode = dl__beta_mode(beta);
    for (; n - j0 >= 64; j0 += 128) {
        __mmask16 mask[8];
        int offset[8];   /* masked-off vectors load from column j0 (valid memory) */
        __m512 acc[8];
        const float *bp = b + j0;
        for (v = 0; v < 8; v++) {
            int left = n - j0 - 16 * v;
            mask[v] = (__mmask16)(left >= 16 ? 0xFFFF : left <= 0 ? 0 : (1u << left) - 1);
            offset[v] = left > 0 ? 16 * v : 0;
            acc[v] = _mm512_setzero_ps();
        }
        if (n - j0 >= 128) {
            for (p = 0; p < k; p++, bp += ldb) {
                __m512 xp = _mm512_set1_ps(x[p * incx]);
                acc[0] = _mm512_fmadd_ps(xp, _mm512_loadu_ps(bp), acc[0]);
                acc[1] = _mm512_fmadd_ps(xp, _mm512_loadu_ps(bp + 16), acc[1]);
                acc[2] = _mm512_fmadd_ps(xp, _mm512_loadu_ps(bp + 32), acc[2]);
                acc[3] = _mm512_fmadd_ps(xp, _mm512_loadu_ps(bp + 48), acc[3]);
                acc[4] = _mm512_fmadd_ps(xp, _mm512_loadu_ps(bp + 64), acc[4]);
                acc[5] = _mm512_fmadd_ps(xp, _mm512_loadu_ps(bp + 80), acc[5]);
                acc[6] = _mm512_fmadd_ps(xp, _mm512_loadu_ps(bp + 96), acc[6]);
                acc[7] = _mm512_fmadd_ps(xp, _mm512_loadu_ps(bp + 112), acc[7]);
            }
        } else {
#define DL__GEMV_MASKED(v) \
    acc[v] = _mm512_fmadd_ps(xp, _mm512_maskz_loadu_ps(mask[v], bp + offset[v]), acc[v]);
            for (p = 0; p < k; p++, bp += ldb) {
                __m512 xp = _mm512_set1_ps(x[p * incx]);
                DL__GEMV_MASKED(0) DL__GEMV_MASKED(1) DL__GEMV_MASKED(2) DL__GEMV_MASKED(3)
                DL__GEMV_MASKED(4) DL__GEMV_MASKED(5) DL__GEMV_MASKED(6) DL__GEMV_MASKED(7)
            }
#undef DL__GEMV_MASKED
        }
        for (v = 0; v < 8; v++) {
            float *yv = y + j0 + offset[v];
            __m512 old = mode == DL__BETA_ZERO ? acc[v] : _mm512_maskz_loadu_ps(mask[v], yv);
            _mm512_mask_storeu_ps(yv, mask[v], dl__avx512_combine(acc[v], old, valpha, vbeta, mode));
        }
    }
    for (; j0 < n; j0 += 16) {
        int left = n - j0;
        __mmask16 mask = (__mmask16)(left >= 16 ? 0xFFFF : (1u << left) - 1);
        __m512 acc0 = _mm512_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0, old;
        const float *bp = b + j0;
        for (p = 0; p + 4 <= k; p += 4, bp += 4 * ldb) {
            acc0 = _mm512_fmadd_ps(_mm512_set1_ps(x[p * incx]), _mm512_maskz_loadu_ps(mask, bp), acc0);
            acc1 = _mm512_fmadd_ps(_mm512_set1_ps(x[(p + 1) * incx]),
                                   _mm512_maskz_loadu_ps(mask, bp + ldb), acc1);
            acc2 = _mm512_fmadd_ps(_mm512_set1_ps(x[(p + 2) * incx]),
                                   _mm512_maskz_loadu_ps(mask, bp + 2 * ldb), acc2);
            acc3 = _mm512_fmadd_ps(_mm512_set1_ps(x[(p + 3) * incx]),
                                   _mm512_maskz_loadu_ps(mask, bp + 3 * ldb), acc3);
        }
        for (; p < k; p++, bp += ldb)
            acc0 = _mm512_fmadd_ps(_mm512_set1_ps(x[p * incx]), _mm512_maskz_loadu_ps(mask, bp), acc0);
        acc0 = _mm512_add_ps(_mm512_add_ps(acc0, acc1), _mm512_add_ps(acc2, acc3));
        old = mode == DL__BETA_ZERO ? acc0 : _mm512_maskz_loadu_ps(mask, y + j0);
        _mm512_mask_storeu_ps(y + j0, mask, dl__avx512_combine(acc0, old, valpha, vbeta, mode));
    }
}

/* Partial sums of 4 vectors: in each 128-bit block, lane q holds the sum of that block's 4 lanes
   of a_q, as (l0 + l2) + (l1 + l3) whatever q is. */
DL__TARGET_AVX512 static DL__ALWAYS_INLINE __m512 dl__avx512_sum4_blocks(__m512 a0, __m512 a1,
                                                                         __m512 a2, __m512 a3) {
    __m512 s01 = _mm512_add_ps(_mm512_maskz_unpacklo_ps(0xFFFF, a0, a1),
                               _mm512_maskz_unpackhi_ps(0xFFFF, a0, a1));
    __m512 s23 = _mm512_add_ps(_mm512_maskz_unpacklo_ps(0xFFFF, a2, a3),
                               _mm512_maskz_unpackhi_ps(0xFFFF, a2, a3));
    return _mm512_add_ps(_mm512_maskz_shuffle_ps(0xFFFF, s01, s23, 0x44),
                         _mm512_maskz_shuffle_ps(0xFFFF, s01, s23, 0xEE));
}

/* Folds the 4 blocks b0..b3 of v0 and v1 into [v0 (b0 + b2), v0 (b1 + b3), v1 (..), v1 (..)]. */
DL__TARGET_AVX512 static DL__ALWAYS_INLINE __m512 dl__avx512_fold_pair(__m512 v0, __m512 v1) {
    return _mm512_add_ps(_mm512_maskz_shuffle_f32x4(0xFFFF, v0, v1, 0x44),
                         _mm512_maskz_shuffle_f32x4(0xFFFF, v0, v1, 0xEE));
}

/* [x01 b0 + x01 b1, x23 b0 + x23 b1] per 256 bits: the totals of 4 + 4 rows. */
DL__TARGET_AVX512 static DL__ALWAYS_INLINE __m512 dl__avx512_fold_final(__m512 x01, __m512 x23) {
    return _mm512_add_ps(_mm512_maskz_shuffle_f32x4(0xFFFF, x01, x23, 0x88),
                         _mm512_maskz_shuffle_f32x4(0xFFFF, x01, x23, 0xDD));
}

/* Dot products of x with 16 rows of B: one accumulator per row (16 FMA chains, each x load
   feeds 16 FMAs), then all 16 horizontal sums at once by a transposing reduction, and one vector
   store of the results. Row r's sum is ((block 0 + block 2) + (block 1 + block 3)) of its
   (l0 + l2) + (l1 + l3) lane sums, the same for every r, so dl__avx512_dots4 (the last rows)
   gives the same bits. */
#define DL__DOTS16_FMA(r) acc##r = _mm512_fmadd_ps(xv, DL__DOTS16_LOAD(bp + (r) * ldb), acc##r);
#define DL__DOTS16_STEP                                                                         \
    DL__DOTS16_FMA(0) DL__DOTS16_FMA(1) DL__DOTS16_FMA(2) DL__DOTS16_FMA(3) DL__DOTS16_FMA(4)   \
    DL__DOTS16_FMA(5) DL__DOTS16_FMA(6) DL__DOTS16_FMA(7) DL__DOTS16_FMA(8) DL__DOTS16_FMA(9)   \
    DL__DOTS16_FMA(10) DL__DOTS16_FMA(11) DL__DOTS16_FMA(12) DL__DOTS16_FMA(13)                 \
    DL__DOTS16_FMA(14) DL__DOTS16_FMA(15)
DL__TARGET_AVX512 static void dl__avx512_dots16(int k, const float *x, const float *b,
                                                ptrdiff_t ldb, float *y, __m512 valpha,
                                                __m512 vbeta, int mode) {
    __m512 acc0 = _mm512_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0, acc4 = acc0;
    __m512 acc5 = acc0, acc6 = acc0, acc7 = acc0, acc8 = acc0, acc9 = acc0, acc10 = acc0;
    __m512 acc11 = acc0, acc12 = acc0, acc13 = acc0, acc14 = acc0, acc15 = acc0, sum;
    const float *bp = b;
    int p;
    for (p = 0; p + 16 <= k; p += 16, bp += 16) {
        __m512 xv = _mm512_loadu_ps(x + p);
#define DL__DOTS16_LOAD(ptr) _mm512_loadu_ps(ptr)
        DL__DOTS16_STEP
#undef DL__DOTS16_LOAD
    }
    if (p < k) {
        __mmask16 mask = (__mmask16)((1u << (k - p)) - 1);
        __m512 xv = _mm512_maskz_loadu_ps(mask, x + p);
#define DL__DOTS16_LOAD(ptr) _mm512_maskz_loadu_ps(mask, ptr)
        DL__DOTS16_STEP
#undef DL__DOTS16_LOAD
    }
    sum = dl__avx512_fold_final(
        dl__avx512_fold_pair(dl__avx512_sum4_blocks(acc0, acc1, acc2, acc3),
                             dl__avx512_sum4_blocks(acc4, acc5, acc6, acc7)),
        dl__avx512_fold_pair(dl__avx512_sum4_blocks(acc8, acc9, acc10, acc11),
                             dl__avx512_sum4_blocks(acc12, acc13, acc14, acc15)));
    _mm512_storeu_ps(y, dl__avx512_combine(sum, mode == DL__BETA_ZERO ? sum : _mm512_loadu_ps(y),
                                           valpha, vbeta, mode));
}
#undef DL__DOTS16_FMA
#undef DL__DOTS16_STEP

/* The same for `rows` (1 to 4) rows; missing rows repeat the last one and are not stored. */
DL__TARGET_AVX512 static void dl__avx512_dots4(int rows, int k, const float *x, const float *b,
                                               ptrdiff_t ldb, float *y, __m512 valpha,
                                               __m512 vbeta, int mode) {
    const float *b0 = b, *b1 = b + (rows > 1) * ldb, *b2 = b + (rows > 2 ? 2 : rows - 1) * ldb;
    const float *b3 = b + (rows - 1) * ldb;
    __m512 acc0 = _mm512_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0, v;
    __mmask16 out = (__mmask16)((1u << rows) - 1);
    int p;
    for (p = 0; p < k; p += 16) {
        __mmask16 mask = (__mmask16)(k - p >= 16 ? 0xFFFF : (1u << (k - p)) - 1);
        __m512 xv = _mm512_maskz_loadu_ps(mask, x + p);
        acc0 = _mm512_fmadd_ps(xv, _mm512_maskz_loadu_ps(mask, b0 + p), acc0);
        acc1 = _mm512_fmadd_ps(xv, _mm512_maskz_loadu_ps(mask, b1 + p), acc1);
        acc2 = _mm512_fmadd_ps(xv, _mm512_maskz_loadu_ps(mask, b2 + p), acc2);
        acc3 = _mm512_fmadd_ps(xv, _mm512_maskz_loadu_ps(mask, b3 + p), acc3);
    }
    v = dl__avx512_sum4_blocks(acc0, acc1, acc2, acc3);
    v = dl__avx512_fold_pair(v, v);
    v = dl__avx512_fold_final(v, v);
    _mm512_mask_storeu_ps(y, out, dl__avx512_combine(v, mode == DL__BETA_ZERO ? v
                                                        : _mm512_maskz_loadu_ps(out, y),
                                                     valpha, vbeta, mode));
}

/* Up to 4 x 4 dot products at once: rows of X against rows of B, 16 accumulators, so each load
   feeds 4 FMAs. Missing rows (rx or rb < 4) repeat the last one and are not stored, so every
   element is computed by the same instructions. The 4 sums of one X row are reduced together. */
#define DL__DOT_FMA(r, q) acc##r##q = _mm512_fmadd_ps(x##r##v, b##q##v, acc##r##q);
#define DL__DOT_ROW(r)                                                                          \
    if (r < rx) {                                                                               \
        __m512 s01 = _mm512_add_ps(_mm512_maskz_unpacklo_ps(0xFFFF, acc##r##0, acc##r##1),      \
                                   _mm512_maskz_unpackhi_ps(0xFFFF, acc##r##0, acc##r##1));     \
        __m512 s23 = _mm512_add_ps(_mm512_maskz_unpacklo_ps(0xFFFF, acc##r##2, acc##r##3),      \
                                   _mm512_maskz_unpackhi_ps(0xFFFF, acc##r##2, acc##r##3));     \
        /* each 128-bit block: [q0 q1 q2 q3] partial sums; then fold the four blocks */         \
        __m512 sum = _mm512_add_ps(_mm512_maskz_shuffle_ps(0xFFFF, s01, s23, 0x44),             \
                                   _mm512_maskz_shuffle_ps(0xFFFF, s01, s23, 0xEE));            \
        sum = _mm512_add_ps(sum, _mm512_maskz_shuffle_f32x4(0xFFFF, sum, sum, 0x4E));           \
        sum = _mm512_add_ps(sum, _mm512_maskz_shuffle_f32x4(0xFFFF, sum, sum, 0xB1));           \
        _mm512_storeu_ps(sums, sum);                                                            \
        for (q = 0; q < rb; q++) dl__store_scalar(y + r * ldy + q, sums[q], alpha, beta, mode);  \
    }
DL__TARGET_AVX512 static void dl__avx512_dots_4x4(int rx, int rb, int k, const float *x,
                                                  ptrdiff_t ldx, const float *b, ptrdiff_t ldb,
                                                  float *y, ptrdiff_t ldy, float alpha,
                                                  float beta, int mode) {
    const float *x0 = x, *x1 = x + (rx > 1) * ldx, *x2 = x + (rx > 2 ? 2 : rx - 1) * ldx;
    const float *x3 = x + (rx - 1) * ldx, *b0 = b, *b1 = b + (rb > 1) * ldb;
    const float *b2 = b + (rb > 2 ? 2 : rb - 1) * ldb, *b3 = b + (rb - 1) * ldb;
    __m512 acc00 = _mm512_setzero_ps(), acc01 = acc00, acc02 = acc00, acc03 = acc00;
    __m512 acc10 = acc00, acc11 = acc00, acc12 = acc00, acc13 = acc00;
    __m512 acc20 = acc00, acc21 = acc00, acc22 = acc00, acc23 = acc00;
    __m512 acc30 = acc00, acc31 = acc00, acc32 = acc00, acc33 = acc00;
    float sums[16];
    int p, q;
    for (p = 0; p < k; p += 16) {
        __mmask16 mask = (__mmask16)(k - p >= 16 ? 0xFFFF : (1u << (k - p)) - 1);
        __m512 x0v = _mm512_maskz_loadu_ps(mask, x0 + p), x1v = _mm512_maskz_loadu_ps(mask, x1 + p);
        __m512 x2v = _mm512_maskz_loadu_ps(mask, x2 + p), x3v = _mm512_maskz_loadu_ps(mask, x3 + p);
        __m512 b0v = _mm512_maskz_loadu_ps(mask, b0 + p), b1v = _mm512_maskz_loadu_ps(mask, b1 + p);
        __m512 b2v = _mm512_maskz_loadu_ps(mask, b2 + p), b3v = _mm512_maskz_loadu_ps(mask, b3 + p);
        DL__DOT_FMA(0, 0) DL__DOT_FMA(0, 1) DL__DOT_FMA(0, 2) DL__DOT_FMA(0, 3)
        DL__DOT_FMA(1, 0) DL__DOT_FMA(1, 1) DL__DOT_FMA(1, 2) DL__DOT_FMA(1, 3)
        DL__DOT_FMA(2, 0) DL__DOT_FMA(2, 1) DL__DOT_FMA(2, 2) DL__DOT_FMA(2, 3)
        DL__DOT_FMA(3, 0) DL__DOT_FMA(3, 1) DL__DOT_FMA(3, 2) DL__DOT_FMA(3, 3)
    }
    DL__DOT_ROW(0) DL__DOT_ROW(1) DL__DOT_ROW(2) DL__DOT_ROW(3)
}
#undef DL__DOT_FMA
#undef DL__DOT_ROW

/* Y[i][j] = alpha * dot(X row i, B row j) + beta * Y[i][j], i < m, j < n. */
DL__TARGET_AVX512 static void dl__avx512_dots_block(int m, int n, int k, const float *x,
                                                    ptrdiff_t ldx, const float *b, ptrdiff_t ldb,
                                                    float *y, ptrdiff_t ldy, float alpha,
                                                    float beta) {
    int i, j, mode = dl__beta_mode(beta);
    for (i = 0; i < m; i += 4)
        for (j = 0; j < n; j += 4) {
            int rx = m - i < 4 ? m - i : 4, rb = n - j < 4 ? n - j : 4;
            const float *xi = x + i * ldx, *bj = b + j * ldb;
            float *yij = y + i * ldy + j;
            dl__avx512_dots_4x4(rx, rb, k, xi, ldx, bj, ldb, yij, ldy, alpha, beta, mode);
        }
}

DL__TARGET_AVX512 static void dl__avx512_dots(int n, int k, const float *x, const float *b,
                                              ptrdiff_t ldb, float *y, float alpha, float beta) {
    __m512 valpha = _mm512_set1_ps(alpha), vbeta = _mm512_set1_ps(beta);
    int j = 0, mode = dl__beta_mode(beta);
    for (; j + 16 <= n; j += 16) dl__avx512_dots16(k, x, b + j * ldb, ldb, y + j, valpha, vbeta, mode);
    for (; j < n; j += 4)
        dl__avx512_dots4(n - j < 4 ? n - j : 4, k, x, b + j * ldb, ldb, y + j, valpha, vbeta, mode);
}

/* Transposes the 16 x 16 block r (r[i] lane j = element (i, j)) into t (t[j] lane i), written
   out without loops so that it stays in registers. Rows known to be zero cost nothing extra: the
   compiler folds them. (The maskz forms with a full mask are the plain instructions; they avoid
   a false -Wmaybe-uninitialized of g++ 12 in its own header.) */
#define DL__TRANSPOSE_GATHER(j)                                                          \
    {                                                                                    \
        __m512 lo01 = _mm512_maskz_shuffle_f32x4(0xFFFF, u[j], u[4 + j], 0x44);          \
        __m512 hi01 = _mm512_maskz_shuffle_f32x4(0xFFFF, u[j], u[4 + j], 0xEE);          \
        __m512 lo23 = _mm512_maskz_shuffle_f32x4(0xFFFF, u[8 + j], u[12 + j], 0x44);     \
        __m512 hi23 = _mm512_maskz_shuffle_f32x4(0xFFFF, u[8 + j], u[12 + j], 0xEE);     \
        t[j] = _mm512_maskz_shuffle_f32x4(0xFFFF, lo01, lo23, 0x88);      /* column j */ \
        t[4 + j] = _mm512_maskz_shuffle_f32x4(0xFFFF, lo01, lo23, 0xDD);                 \
        t[8 + j] = _mm512_maskz_shuffle_f32x4(0xFFFF, hi01, hi23, 0x88);                 \
        t[12 + j] = _mm512_maskz_shuffle_f32x4(0xFFFF, hi01, hi23, 0xDD);                \
    }
DL__TARGET_AVX512 static DL__ALWAYS_INLINE void dl__avx512_transpose16(__m512 *r, __m512 *t) {
    __m512 u[16];
    /* interleave row pairs */
    t[0] = _mm512_maskz_unpacklo_ps(0xFFFF, r[0], r[1]);
    t[1] = _mm512_maskz_unpackhi_ps(0xFFFF, r[0], r[1]);
    t[2] = _mm512_maskz_unpacklo_ps(0xFFFF, r[2], r[3]);
    t[3] = _mm512_maskz_unpackhi_ps(0xFFFF, r[2], r[3]);
    t[4] = _mm512_maskz_unpacklo_ps(0xFFFF, r[4], r[5]);
    t[5] = _mm512_maskz_unpackhi_ps(0xFFFF, r[4], r[5]);
    t[6] = _mm512_maskz_unpacklo_ps(0xFFFF, r[6], r[7]);
    t[7] = _mm512_maskz_unpackhi_ps(0xFFFF, r[6], r[7]);
    t[8] = _mm512_maskz_unpacklo_ps(0xFFFF, r[8], r[9]);
    t[9] = _mm512_maskz_unpackhi_ps(0xFFFF, r[8], r[9]);
    t[10] = _mm512_maskz_unpacklo_ps(0xFFFF, r[10], r[11]);
    t[11] = _mm512_maskz_unpackhi_ps(0xFFFF, r[10], r[11]);
    t[12] = _mm512_maskz_unpacklo_ps(0xFFFF, r[12], r[13]);
    t[13] = _mm512_maskz_unpackhi_ps(0xFFFF, r[12], r[13]);
    t[14] = _mm512_maskz_unpacklo_ps(0xFFFF, r[14], r[15]);
    t[15] = _mm512_maskz_unpackhi_ps(0xFFFF, r[14], r[15]);
    /* 4 x 4 transposes inside each 128-bit lane */
    u[0] = _mm512_maskz_shuffle_ps(0xFFFF, t[0], t[2], 0x44);
    u[1] = _mm512_maskz_shuffle_ps(0xFFFF, t[0], t[2], 0xEE);
    u[2] = _mm512_maskz_shuffle_ps(0xFFFF, t[1], t[3], 0x44);
    u[3] = _mm512_maskz_shuffle_ps(0xFFFF, t[1], t[3], 0xEE);
    u[4] = _mm512_maskz_shuffle_ps(0xFFFF, t[4], t[6], 0x44);
    u[5] = _mm512_maskz_shuffle_ps(0xFFFF, t[4], t[6], 0xEE);
    u[6] = _mm512_maskz_shuffle_ps(0xFFFF, t[5], t[7], 0x44);
    u[7] = _mm512_maskz_shuffle_ps(0xFFFF, t[5], t[7], 0xEE);
    u[8] = _mm512_maskz_shuffle_ps(0xFFFF, t[8], t[10], 0x44);
    u[9] = _mm512_maskz_shuffle_ps(0xFFFF, t[8], t[10], 0xEE);
    u[10] = _mm512_maskz_shuffle_ps(0xFFFF, t[9], t[11], 0x44);
    u[11] = _mm512_maskz_shuffle_ps(0xFFFF, t[9], t[11], 0xEE);
    u[12] = _mm512_maskz_shuffle_ps(0xFFFF, t[12], t[14], 0x44);
    u[13] = _mm512_maskz_shuffle_ps(0xFFFF, t[12], t[14], 0xEE);
    u[14] = _mm512_maskz_shuffle_ps(0xFFFF, t[13], t[15], 0x44);
    u[15] = _mm512_maskz_shuffle_ps(0xFFFF, t[13], t[15], 0xEE);
    /* u[4g + j], lane L, holds rows 4g..4g+3 of column 4L + j: gather the 4 lanes L */
    DL__TRANSPOSE_GATHER(0) DL__TRANSPOSE_GATHER(1) DL__TRANSPOSE_GATHER(2) DL__TRANSPOSE_GATHER(3)
}
#undef DL__TRANSPOSE_GATHER

/* Packs `rows` (<= 16) rows of a matrix that are contiguous along k, 16 columns at a time: load
   a 16 x 16 block (missing rows zero), transpose it in registers, and store column p as the 16
   floats at dst + ld p. With ld < 16 each store's last lanes are overwritten by the next one, so
   it runs 16 - ld floats past the panel, which the workspace leaves room for. */
DL__TARGET_AVX512 static DL__ALWAYS_INLINE void
dl__avx512_pack_rows(int rows, const float *a, ptrdiff_t lda, int kc, float *dst, int ld) {
    int p = 0, i, j;
    for (; p + 16 <= kc; p += 16) {
        __m512 r[16], t[16];
        for (i = 0; i < 16; i++) r[i] = i < rows ? _mm512_loadu_ps(a + i * lda + p) : _mm512_setzero_ps();
        dl__avx512_transpose16(r, t);
        for (j = 0; j < 16; j++) _mm512_storeu_ps(dst + (p + j) * ld, t[j]);
    }
    for (; p < kc; p++)
        for (i = 0; i < rows; i++) dst[p * ld + i] = a[i * lda + p];
}

/* A micro-panel of A: 14 rows, dst[p * 14 + i]. */
DL__TARGET_AVX512 static void dl__avx512_pack_a_panel(const float *a, ptrdiff_t lda, int kc,
                                                      float *dst) {
    dl__avx512_pack_rows(14, a, lda, kc, dst, 14);
}

/* A micro-panel of op(B) = B^T: 32 rows of B (contiguous along k) to dst[p * 32 + j]. */
DL__TARGET_AVX512 static void dl__avx512_pack_bt_panel(const float *b, ptrdiff_t ldb, int kc,
                                                       float *dst) {
    dl__avx512_pack_rows(16, b, ldb, kc, dst, 32);
    dl__avx512_pack_rows(16, b + 16 * ldb, ldb, kc, dst + 16, 32);
}

/* op(A) = A^T with few columns of C (n <= 16): the weight gradient X^T dY of a dense layer with
   few outputs. Computed as C^T = op(B)^T A with the roles swapped: a row p of A (stored k x m)
   holds 16 V consecutive rows i of C, so each step loads V vectors of A, broadcasts the n values
   op(B)[p, j] and does n V multiply-adds into accumulators that hold columns of C. At the end
   each 16 x 16 block of them (n columns, the rest zero) is transposed in registers and stored as
   16 rows of C. Every element is one FMA chain over p in order, so the result does not depend on
   where a block starts (threads split the rows anywhere). */
#define DL__TN_FMA(j)                                                                 \
    if (N > j) {                                                                      \
        __m512 bj = _mm512_set1_ps(bp[(j) * cs_b]);                                   \
        acc##j##_0 = _mm512_fmadd_ps(a0, bj, acc##j##_0);                             \
        if (V > 1) acc##j##_1 = _mm512_fmadd_ps(a1, bj, acc##j##_1);                  \
        if (V > 2) acc##j##_2 = _mm512_fmadd_ps(a2, bj, acc##j##_2);                  \
        if (V > 2) acc##j##_3 = _mm512_fmadd_ps(a3, bj, acc##j##_3);                  \
    }
#define DL__TN_ROW(ii, v)                                                               \
    {                                                                                  \
        float *cr = c + (i0 + 16 * v + (ii)) * ldc;                                    \
        __m512 old = mode == DL__BETA_ZERO ? t[ii] : _mm512_maskz_loadu_ps(cmask, cr); \
        _mm512_mask_storeu_ps(cr, cmask, dl__avx512_combine(t[ii], old, valpha, vbeta, mode)); \
    }
#define DL__TN_TAKE(j, v) r[j] = N > j ? acc##j##_##v : _mm512_setzero_ps();
#define DL__TN_STORE(v)                                                                    \
    if (V > v && m - i0 - 16 * v > 0) {                                                    \
        __m512 r[16], t[16];                                                               \
        int rows = m - i0 - 16 * v < 16 ? m - i0 - 16 * v : 16, ii;                        \
        DL__TN_TAKE(0, v) DL__TN_TAKE(1, v) DL__TN_TAKE(2, v) DL__TN_TAKE(3, v)            \
        DL__TN_TAKE(4, v) DL__TN_TAKE(5, v) DL__TN_TAKE(6, v) DL__TN_TAKE(7, v)            \
        DL__TN_TAKE(8, v) DL__TN_TAKE(9, v) DL__TN_TAKE(10, v) DL__TN_TAKE(11, v)          \
        DL__TN_TAKE(12, v) DL__TN_TAKE(13, v) DL__TN_TAKE(14, v) DL__TN_TAKE(15, v)        \
        dl__avx512_transpose16(r, t);                                                      \
        if (rows == 16) {                                                                  \
            DL__TN_ROW(0, v) DL__TN_ROW(1, v) DL__TN_ROW(2, v) DL__TN_ROW(3, v) DL__TN_ROW(4, v) \
            DL__TN_ROW(5, v) DL__TN_ROW(6, v) DL__TN_ROW(7, v) DL__TN_ROW(8, v) DL__TN_ROW(9, v) \
            DL__TN_ROW(10, v) DL__TN_ROW(11, v) DL__TN_ROW(12, v) DL__TN_ROW(13, v) DL__TN_ROW(14, v) \
            DL__TN_ROW(15, v)                                                                 \
        } else                                                                             \
            for (ii = 0; ii < rows; ii++) DL__TN_ROW(ii, v)                                \
    }
DL__TARGET_AVX512 static DL__ALWAYS_INLINE void
dl__avx512_tn_body(int N, int V, int m, int k, const float *a, ptrdiff_t lda, const float *b,
                   ptrdiff_t rs_b, ptrdiff_t cs_b, float *c, ptrdiff_t ldc, float alpha,
                   float beta) {
    __m512 valpha = _mm512_set1_ps(alpha), vbeta = _mm512_set1_ps(beta);
    __mmask16 cmask = (__mmask16)((1u << N) - 1);
    int i0, p, mode = dl__beta_mode(beta);
    for (i0 = 0; i0 < m; i0 += 16 * V) {
    __m512 acc0_0 = _mm512_setzero_ps(), acc0_1 = acc0_0, acc0_2 = acc0_0, acc0_3 = acc0_0;
    __m512 acc1_0 = _mm512_setzero_ps(), acc1_1 = acc1_0, acc1_2 = acc1_0, acc1_3 = acc1_0;
    __m512 acc2_0 = _mm512_setzero_ps(), acc2_1 = acc2_0, acc2_2 = acc2_0, acc2_3 = acc2_0;
    __m512 acc3_0 = _mm512_setzero_ps(), acc3_1 = acc3_0, acc3_2 = acc3_0, acc3_3 = acc3_0;
    __m512 acc4_0 = _mm512_setzero_ps(), acc4_1 = acc4_0, acc4_2 = acc4_0, acc4_3 = acc4_0;
    __m512 acc5_0 = _mm512_setzero_ps(), acc5_1 = acc5_0, acc5_2 = acc5_0, acc5_3 = acc5_0;
    __m512 acc6_0 = _mm512_setzero_ps(), acc6_1 = acc6_0, acc6_2 = acc6_0, acc6_3 = acc6_0;
    __m512 acc7_0 = _mm512_setzero_ps(), acc7_1 = acc7_0, acc7_2 = acc7_0, acc7_3 = acc7_0;
    __m512 acc8_0 = _mm512_setzero_ps(), acc8_1 = acc8_0, acc8_2 = acc8_0, acc8_3 = acc8_0;
    __m512 acc9_0 = _mm512_setzero_ps(), acc9_1 = acc9_0, acc9_2 = acc9_0, acc9_3 = acc9_0;
    __m512 acc10_0 = _mm512_setzero_ps(), acc10_1 = acc10_0, acc10_2 = acc10_0, acc10_3 = acc10_0;
    __m512 acc11_0 = _mm512_setzero_ps(), acc11_1 = acc11_0, acc11_2 = acc11_0, acc11_3 = acc11_0;
    __m512 acc12_0 = _mm512_setzero_ps(), acc12_1 = acc12_0, acc12_2 = acc12_0, acc12_3 = acc12_0;
    __m512 acc13_0 = _mm512_setzero_ps(), acc13_1 = acc13_0, acc13_2 = acc13_0, acc13_3 = acc13_0;
    __m512 acc14_0 = _mm512_setzero_ps(), acc14_1 = acc14_0, acc14_2 = acc14_0, acc14_3 = acc14_0;
    __m512 acc15_0 = _mm512_setzero_ps(), acc15_1 = acc15_0, acc15_2 = acc15_0, acc15_3 = acc15_0;
        const float *ap = a + i0, *bp = b;
        int left = m - i0;
        if (left >= 16 * V) {
            for (p = 0; p < k; p++, ap += lda, bp += rs_b) {
                __m512 a0 = _mm512_loadu_ps(ap), a1 = a0, a2 = a0, a3 = a0;
                if (V > 1) a1 = _mm512_loadu_ps(ap + 16);
                if (V > 2) a2 = _mm512_loadu_ps(ap + 32), a3 = _mm512_loadu_ps(ap + 48);
                DL__TN_FMA(0) DL__TN_FMA(1) DL__TN_FMA(2) DL__TN_FMA(3) DL__TN_FMA(4)
                DL__TN_FMA(5) DL__TN_FMA(6) DL__TN_FMA(7) DL__TN_FMA(8) DL__TN_FMA(9)
                DL__TN_FMA(10) DL__TN_FMA(11) DL__TN_FMA(12) DL__TN_FMA(13) DL__TN_FMA(14)
                DL__TN_FMA(15)
            }
        } else {   /* the last rows: masked loads (lanes past m compute zeros, not stored) */
            __mmask16 m0 = (__mmask16)(left >= 16 ? 0xFFFF : (1u << left) - 1);
            __mmask16 m1 = (__mmask16)(left >= 32 ? 0xFFFF : left <= 16 ? 0 : (1u << (left - 16)) - 1);
            __mmask16 m2 = (__mmask16)(left >= 48 ? 0xFFFF : left <= 32 ? 0 : (1u << (left - 32)) - 1);
            __mmask16 m3 = (__mmask16)(left >= 64 ? 0xFFFF : left <= 48 ? 0 : (1u << (left - 48)) - 1);
            for (p = 0; p < k; p++, ap += lda, bp += rs_b) {
                __m512 a0 = _mm512_maskz_loadu_ps(m0, ap), a1 = a0, a2 = a0, a3 = a0;
                if (V > 1) a1 = _mm512_maskz_loadu_ps(m1, ap + 16);
                if (V > 2) a2 = _mm512_maskz_loadu_ps(m2, ap + 32), a3 = _mm512_maskz_loadu_ps(m3, ap + 48);
                DL__TN_FMA(0) DL__TN_FMA(1) DL__TN_FMA(2) DL__TN_FMA(3) DL__TN_FMA(4)
                DL__TN_FMA(5) DL__TN_FMA(6) DL__TN_FMA(7) DL__TN_FMA(8) DL__TN_FMA(9)
                DL__TN_FMA(10) DL__TN_FMA(11) DL__TN_FMA(12) DL__TN_FMA(13) DL__TN_FMA(14)
                DL__TN_FMA(15)
            }
        }
        DL__TN_STORE(0) DL__TN_STORE(1) DL__TN_STORE(2) DL__TN_STORE(3)
    }
}
#undef DL__TN_FMA
#undef DL__TN_TAKE
#undef DL__TN_ROW
#undef DL__TN_STORE

#define DL__AVX512_TN(N, V)                                                                     \
    DL__TARGET_AVX512 static void dl__avx512_tn_##N(int m, int k, const float *a, ptrdiff_t lda, \
                                                    const float *b, ptrdiff_t rs_b,             \
                                                    ptrdiff_t cs_b, float *c, ptrdiff_t ldc,    \
                                                    float alpha, float beta) {                  \
        dl__avx512_tn_body(N, V, m, k, a, lda, b, rs_b, cs_b, c, ldc, alpha, beta);             \
    }
DL__AVX512_TN(1, 4) DL__AVX512_TN(2, 4) DL__AVX512_TN(3, 4) DL__AVX512_TN(4, 4)
DL__AVX512_TN(5, 4) DL__AVX512_TN(6, 4) DL__AVX512_TN(7, 2) DL__AVX512_TN(8, 2)
DL__AVX512_TN(9, 2) DL__AVX512_TN(10, 2) DL__AVX512_TN(11, 2) DL__AVX512_TN(12, 2)
DL__AVX512_TN(13, 2) DL__AVX512_TN(14, 2) DL__AVX512_TN(15, 1) DL__AVX512_TN(16, 1)
#undef DL__AVX512_TN

DL__TARGET_AVX512 static void dl__avx512_tn_small(int m, int n, int k, const float *a,
                                                  ptrdiff_t lda, const float *b, ptrdiff_t rs_b,
                                                  ptrdiff_t cs_b, float *c, ptrdiff_t ldc,
                                                  float alpha, float beta) {
    typedef void (*fn_t)(int, int, const float *, ptrdiff_t, const float *, ptrdiff_t, ptrdiff_t,
                         float *, ptrdiff_t, float, float);
    static const fn_t fns[17] = {0, dl__avx512_tn_1, dl__avx512_tn_2, dl__avx512_tn_3,
                                 dl__avx512_tn_4, dl__avx512_tn_5, dl__avx512_tn_6,
                                 dl__avx512_tn_7, dl__avx512_tn_8, dl__avx512_tn_9,
                                 dl__avx512_tn_10, dl__avx512_tn_11, dl__avx512_tn_12,
                                 dl__avx512_tn_13, dl__avx512_tn_14, dl__avx512_tn_15,
                                 dl__avx512_tn_16};
    fns[n](m, k, a, lda, b, rs_b, cs_b, c, ldc, alpha, beta);
}

static const dl__gemm_kernels dl__gemm_avx512 = {
    "avx512", 14, 32, 512, 224, 4096,
    {0, dl__avx512_packed_1, dl__avx512_packed_2, dl__avx512_packed_3, dl__avx512_packed_4,
     dl__avx512_packed_5, dl__avx512_packed_6, dl__avx512_packed_7, dl__avx512_packed_8,
     dl__avx512_packed_9, dl__avx512_packed_10, dl__avx512_packed_11, dl__avx512_packed_12,
     dl__avx512_packed_13, dl__avx512_packed_14},
    {0, dl__avx512_strided_1, dl__avx512_strided_2, dl__avx512_strided_3, dl__avx512_strided_4,
     dl__avx512_strided_5, dl__avx512_strided_6, dl__avx512_strided_7, dl__avx512_strided_8,
     dl__avx512_strided_9, dl__avx512_strided_10, dl__avx512_strided_11, dl__avx512_strided_12,
     dl__avx512_strided_13, dl__avx512_strided_14},
    dl__avx512_gemv, dl__avx512_dots, dl__avx512_dots_block, dl__avx512_pack_a_panel,
    dl__avx512_pack_bt_panel, dl__avx512_tn_small};

/* ---- AVX2 + FMA kernels: MR x NR = 6 x 16 ---- */

DL__TARGET_AVX2 static DL__ALWAYS_INLINE __m256 dl__avx2_combine(__m256 acc, __m256 old,
                                                                 __m256 alpha, __m256 beta,
                                                                 int mode) {
    if (mode == DL__BETA_ZERO) return _mm256_mul_ps(alpha, acc);
    if (mode == DL__BETA_ONE) return _mm256_fmadd_ps(alpha, acc, old);
    return _mm256_fmadd_ps(alpha, acc, _mm256_mul_ps(beta, old));
}

/* Writes `cols` (<= 16) columns; a partial row goes through a small buffer so that the
   arithmetic is the same as for a full one. */
DL__TARGET_AVX2 static DL__ALWAYS_INLINE void
dl__avx2_store_row(float *c, __m256 acc0, __m256 acc1, int cols, __m256 alpha, __m256 beta,
                   int mode) {
    if (cols == 16) {
        __m256 old0 = mode == DL__BETA_ZERO ? acc0 : _mm256_loadu_ps(c);
        __m256 old1 = mode == DL__BETA_ZERO ? acc1 : _mm256_loadu_ps(c + 8);
        _mm256_storeu_ps(c, dl__avx2_combine(acc0, old0, alpha, beta, mode));
        _mm256_storeu_ps(c + 8, dl__avx2_combine(acc1, old1, alpha, beta, mode));
    } else {
        float row[16];
        int j;
        memset(row, 0, sizeof row);
        if (mode != DL__BETA_ZERO) memcpy(row, c, (size_t)cols * sizeof(float));
        _mm256_storeu_ps(row, dl__avx2_combine(acc0, _mm256_loadu_ps(row), alpha, beta, mode));
        _mm256_storeu_ps(row + 8, dl__avx2_combine(acc1, _mm256_loadu_ps(row + 8), alpha, beta, mode));
        for (j = 0; j < cols; j++) c[j] = row[j];
    }
}

#define DL__AVX2_FMA_ROW(i)                                             \
    if (rows > i) {                                                     \
        __m256 a_i = _mm256_broadcast_ss(a + (i) * rs_a);               \
        acc##i##_0 = _mm256_fmadd_ps(a_i, b0, acc##i##_0);              \
        acc##i##_1 = _mm256_fmadd_ps(a_i, b1, acc##i##_1);              \
    }
#define DL__AVX2_STORE_ROW(i)                                                                   \
    if (rows > i) dl__avx2_store_row(c + (i) * ldc, acc##i##_0, acc##i##_1, cols, valpha, vbeta, \
                                     mode);

DL__TARGET_AVX2 static DL__ALWAYS_INLINE void
dl__avx2_microkernel_body(int rows, int cols, int k, const float *a, ptrdiff_t rs_a,
                          ptrdiff_t cs_a, const float *b, ptrdiff_t rs_b, float *c,
                          ptrdiff_t ldc, float alpha, float beta) {
    __m256 acc0_0 = _mm256_setzero_ps(), acc0_1 = acc0_0, acc1_0 = acc0_0, acc1_1 = acc0_0;
    __m256 acc2_0 = acc0_0, acc2_1 = acc0_0, acc3_0 = acc0_0, acc3_1 = acc0_0;
    __m256 acc4_0 = acc0_0, acc4_1 = acc0_0, acc5_0 = acc0_0, acc5_1 = acc0_0;
    __m256 valpha = _mm256_set1_ps(alpha), vbeta = _mm256_set1_ps(beta);
    int p, mode = dl__beta_mode(beta);
    for (p = 0; p < k; p++) {
        __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
        DL__AVX2_FMA_ROW(0) DL__AVX2_FMA_ROW(1) DL__AVX2_FMA_ROW(2)
        DL__AVX2_FMA_ROW(3) DL__AVX2_FMA_ROW(4) DL__AVX2_FMA_ROW(5)
        a += cs_a;
        b += rs_b;
    }
    DL__AVX2_STORE_ROW(0) DL__AVX2_STORE_ROW(1) DL__AVX2_STORE_ROW(2)
    DL__AVX2_STORE_ROW(3) DL__AVX2_STORE_ROW(4) DL__AVX2_STORE_ROW(5)
}

#define DL__AVX2_KERNELS(R)                                                                       \
    DL__TARGET_AVX2 static void dl__avx2_packed_##R(                                              \
        int rows, int cols, int k, const float *a, ptrdiff_t rs_a, ptrdiff_t cs_a, const float *b, \
        ptrdiff_t rs_b, float *c, ptrdiff_t ldc, float alpha, float beta) {                       \
        (void)rows, (void)rs_a, (void)cs_a;                                                       \
        dl__avx2_microkernel_body(R, cols, k, a, 1, 6, b, rs_b, c, ldc, alpha, beta); \
    }                                                                                             \
    DL__TARGET_AVX2 static void dl__avx2_strided_##R(                                             \
        int rows, int cols, int k, const float *a, ptrdiff_t rs_a, ptrdiff_t cs_a, const float *b, \
        ptrdiff_t rs_b, float *c, ptrdiff_t ldc, float alpha, float beta) {                       \
        (void)rows;                                                                               \
        dl__avx2_microkernel_body(R, cols, k, a, rs_a, cs_a, b, rs_b, c, ldc, alpha, beta); \
    }
DL__AVX2_KERNELS(1) DL__AVX2_KERNELS(2) DL__AVX2_KERNELS(3)
DL__AVX2_KERNELS(4) DL__AVX2_KERNELS(5) DL__AVX2_KERNELS(6)

/* Row vector times matrix: 64 columns at a time in 8 accumulators; a partial last chunk is
   finished 8 columns at a time, the last few through a small buffer. */
DL__TARGET_AVX2 static void dl__avx2_gemv(int n, int k, const float *x, ptrdiff_t incx,
                                          const float *b, ptrdiff_t ldb, float *y, float alpha,
                                          float beta) {
    __m256 valpha = _mm256_set1_ps(alpha), vbeta = _mm256_set1_ps(beta);
    int j0 = 0, v, p, mode = dl__beta_mode(beta);
    for (; j0 + 64 <= n; j0 += 64) {
        __m256 acc[8];
        const float *bp = b + j0;
        for (v = 0; v < 8; v++) acc[v] = _mm256_setzero_ps();
        for (p = 0; p < k; p++, bp += ldb) {
            __m256 xp = _mm256_set1_ps(x[p * incx]);
            for (v = 0; v < 8; v++) acc[v] = _mm256_fmadd_ps(xp, _mm256_loadu_ps(bp + 8 * v), acc[v]);
        }
        for (v = 0; v < 8; v++) {
            float *yv = y + j0 + 8 * v;
            __m256 old = mode == DL__BETA_ZERO ? acc[v] : _mm256_loadu_ps(yv);
            _mm256_storeu_ps(yv, dl__avx2_combine(acc[v], old, valpha, vbeta, mode));
        }
    }
    for (; j0 < n; j0 += 8) {
        int w = n - j0 < 8 ? n - j0 : 8, j;
        __m256 acc = _mm256_setzero_ps();
        float tmp[8];
        const float *bp = b + j0;
        if (w == 8) {
            for (p = 0; p < k; p++, bp += ldb)
                acc = _mm256_fmadd_ps(_mm256_set1_ps(x[p * incx]), _mm256_loadu_ps(bp), acc);
        } else {
            for (p = 0; p < k; p++, bp += ldb) {
                memset(tmp, 0, sizeof tmp);
                for (j = 0; j < w; j++) tmp[j] = bp[j];
                acc = _mm256_fmadd_ps(_mm256_set1_ps(x[p * incx]), _mm256_loadu_ps(tmp), acc);
            }
        }
        memset(tmp, 0, sizeof tmp);
        if (mode != DL__BETA_ZERO)
            for (j = 0; j < w; j++) tmp[j] = y[j0 + j];
        _mm256_storeu_ps(tmp, dl__avx2_combine(acc, _mm256_loadu_ps(tmp), valpha, vbeta, mode));
        for (j = 0; j < w; j++) y[j0 + j] = tmp[j];
    }
}

DL__TARGET_AVX2 static DL__ALWAYS_INLINE float dl__avx2_hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

DL__TARGET_AVX2 static void dl__avx2_dots(int n, int k, const float *x, const float *b,
                                          ptrdiff_t ldb, float *y, float alpha, float beta) {
    int j, p, mode = dl__beta_mode(beta);
    for (j = 0; j < n; j++) {
        const float *bj = b + j * ldb;
        __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
        float tail = 0.0f;
        for (p = 0; p + 32 <= k; p += 32) {
            acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + p), _mm256_loadu_ps(bj + p), acc0);
            acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + p + 8), _mm256_loadu_ps(bj + p + 8), acc1);
            acc2 = _mm256_fmadd_ps(_mm256_loadu_ps(x + p + 16), _mm256_loadu_ps(bj + p + 16), acc2);
            acc3 = _mm256_fmadd_ps(_mm256_loadu_ps(x + p + 24), _mm256_loadu_ps(bj + p + 24), acc3);
        }
        for (; p + 8 <= k; p += 8)
            acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + p), _mm256_loadu_ps(bj + p), acc0);
        for (; p < k; p++) tail += x[p] * bj[p];
        acc0 = _mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3));
        dl__store_scalar(y + j, dl__avx2_hsum(acc0) + tail, alpha, beta, mode);
    }
}

DL__TARGET_AVX2 static void dl__avx2_dots_block(int m, int n, int k, const float *x,
                                                ptrdiff_t ldx, const float *b, ptrdiff_t ldb,
                                                float *y, ptrdiff_t ldy, float alpha, float beta) {
    int i;
    for (i = 0; i < m; i++) dl__avx2_dots(n, k, x + i * ldx, b, ldb, y + i * ldy, alpha, beta);
}

static const dl__gemm_kernels dl__gemm_avx2 = {
    "avx2", 6, 16, 256, 144, 4096,
    {0, dl__avx2_packed_1, dl__avx2_packed_2, dl__avx2_packed_3, dl__avx2_packed_4,
     dl__avx2_packed_5, dl__avx2_packed_6},
    {0, dl__avx2_strided_1, dl__avx2_strided_2, dl__avx2_strided_3, dl__avx2_strided_4,
     dl__avx2_strided_5, dl__avx2_strided_6},
    dl__avx2_gemv, dl__avx2_dots, dl__avx2_dots_block, NULL, NULL, NULL};
#endif /* DL__X86_SIMD */

/* ---- Choosing the kernel ---- */

static const dl__gemm_kernels *dl__gemm_active;

static int dl__gemm_supported(const dl__gemm_kernels *kern) {
#ifdef DL__X86_SIMD
    __builtin_cpu_init();
    if (kern == &dl__gemm_avx512) return __builtin_cpu_supports("avx512f");
    if (kern == &dl__gemm_avx2) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    return kern == &dl__gemm_generic;
}

static const dl__gemm_kernels *dl__gemm_by_name(const char *name) {
    if (!name) return NULL;
#ifdef DL__X86_SIMD
    if (strcmp(name, "avx512") == 0) return &dl__gemm_avx512;
    if (strcmp(name, "avx2") == 0) return &dl__gemm_avx2;
#endif
    if (strcmp(name, "generic") == 0) return &dl__gemm_generic;
    return NULL;
}

static const dl__gemm_kernels *dl__gemm_kernels_get(void);

DLDEF int dl_gemm_set_kernel(const char *name) {
    const dl__gemm_kernels *kern = dl__gemm_by_name(name);
    dl__gemm_kernels_get();   /* the automatic choice happens first, so it cannot undo this */
    if (!kern || !dl__gemm_supported(kern)) return 0;
    dl__gemm_active = kern;
    return 1;
}

static void dl__gemm_choose_kernel(void) {
    const dl__gemm_kernels *forced = dl__gemm_by_name(getenv("DL_GEMM_KERNEL"));
    if (forced && dl__gemm_supported(forced)) dl__gemm_active = forced;
#ifdef DL__X86_SIMD
    else if (dl__gemm_supported(&dl__gemm_avx512)) dl__gemm_active = &dl__gemm_avx512;
    else if (dl__gemm_supported(&dl__gemm_avx2)) dl__gemm_active = &dl__gemm_avx2;
#endif
    else dl__gemm_active = &dl__gemm_generic;
}

#ifdef DL__THREADS
static pthread_once_t dl__gemm_choose_once = PTHREAD_ONCE_INIT;
#endif

static const dl__gemm_kernels *dl__gemm_kernels_get(void) {
#ifdef DL__THREADS
    pthread_once(&dl__gemm_choose_once, dl__gemm_choose_kernel);
#else
    if (!dl__gemm_active) dl__gemm_choose_kernel();
#endif
    return dl__gemm_active;
}

DLDEF const char *dl_gemm_kernel_name(void) { return dl__gemm_kernels_get()->name; }

/* ---- Per-thread packing buffers ----

   Each thread that runs GEMM work owns one workspace: its packed A block and B panel. They grow
   to the largest size needed and are then reused, so steady-state calls do not allocate.
   Which pool thread runs which task changes from call to call, so a thread could meet a large
   shape for the first time long after others did; to keep "no allocation in steady state"
   true, the pool also grows every worker's workspace to the largest size any thread has needed
   (dl__ws_high_*) before it posts a job, while the workers are idle. */

typedef struct dl__gemm_workspace {
    void *a_mem, *b_mem;         /* as allocated */
    float *a, *b;                /* 64-byte aligned */
    size_t a_cap, b_cap;         /* in floats */
} dl__gemm_workspace;

static size_t dl__ws_high_a, dl__ws_high_b;   /* largest a / b sizes needed so far, in floats */
static void dl__ws_note_high(size_t *high, size_t n_floats);

static float *dl__workspace_grow(void **mem, float **aligned, size_t *cap, size_t n_floats, size_t *high) {
    if (*cap < n_floats) {
        dl__ws_note_high(high, n_floats);
        void *fresh = DL_MALLOC(n_floats * sizeof(float) + 64);
        if (!fresh) return NULL;
        if (*mem) DL_FREE(*mem);
        *mem = fresh;
        *aligned = (float *)(void *)(((uintptr_t)fresh + 63) & ~(uintptr_t)63);
        *cap = n_floats;
    }
    return *aligned;
}

static void dl__workspace_free(dl__gemm_workspace *ws) {
    if (ws->a_mem) DL_FREE(ws->a_mem);
    if (ws->b_mem) DL_FREE(ws->b_mem);
    memset(ws, 0, sizeof *ws);
}

#ifdef DL__THREADS
static pthread_key_t dl__workspace_key;
static pthread_once_t dl__workspace_key_once = PTHREAD_ONCE_INIT;

static void dl__workspace_destroy(void *ws) {   /* runs when a thread that used GEMM exits */
    dl__workspace_free((dl__gemm_workspace *)ws);
    DL_FREE(ws);
}
static void dl__workspace_key_create(void) {
    pthread_key_create(&dl__workspace_key, dl__workspace_destroy);
}

static dl__gemm_workspace *dl__workspace_get(void) {
    dl__gemm_workspace *ws;
    pthread_once(&dl__workspace_key_once, dl__workspace_key_create);
    ws = (dl__gemm_workspace *)pthread_getspecific(dl__workspace_key);
    if (!ws) {
        ws = (dl__gemm_workspace *)DL_MALLOC(sizeof *ws);
        if (!ws) return NULL;
        memset(ws, 0, sizeof *ws);
        if (pthread_setspecific(dl__workspace_key, ws) != 0) {
            DL_FREE(ws);
            return NULL;
        }
    }
    return ws;
}

static void dl__workspace_release_mine(void) {
    dl__gemm_workspace *ws;
    pthread_once(&dl__workspace_key_once, dl__workspace_key_create);
    ws = (dl__gemm_workspace *)pthread_getspecific(dl__workspace_key);
    if (ws) {
        pthread_setspecific(dl__workspace_key, NULL);
        dl__workspace_destroy(ws);
    }
}
#else
static void dl__ws_note_high(size_t *high, size_t n_floats) { if (*high < n_floats) *high = n_floats; }
static dl__gemm_workspace dl__the_workspace;
static dl__gemm_workspace *dl__workspace_get(void) { return &dl__the_workspace; }
static void dl__workspace_release_mine(void) { dl__workspace_free(&dl__the_workspace); }
#endif

/* ---- The thread pool ----

   Workers sleep on a condition variable. dl_parallel_for posts a job (function, context, task
   count), wakes them, claims tasks itself like a worker, and waits until every task is done.
   Tasks are handed out one at a time under the mutex, so any number of tasks works; GEMM posts
   one coarse task per thread. One job at a time: `dispatch` is held by the thread running a job,
   and a call that cannot take it (a nested call from a task, or another user thread) runs its
   tasks serially right away. */

static int dl__num_threads;   /* 0 until decided */

#ifdef DL__THREADS
static int dl__default_num_threads(void) {
    const char *env = getenv("DL_NUM_THREADS");
    int n = env ? atoi(env) : 0;
    if (n <= 0) n = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (n <= 0) n = 1;
    if (n > 256) n = 256;
    return n;
}
#endif

static void dl__parallel_serial(int n_tasks, dl_parallel_fn fn, void *ctx) {
    int task;
    for (task = 0; task < n_tasks; task++) fn(ctx, task);
}

#ifdef DL__THREADS
static pthread_mutex_t dl__threadpool_mutex = PTHREAD_MUTEX_INITIALIZER;   /* guards the job */
static pthread_mutex_t dl__threadpool_dispatch = PTHREAD_MUTEX_INITIALIZER; /* one job at a time */
static pthread_cond_t dl__threadpool_wake = PTHREAD_COND_INITIALIZER;      /* new job or quit */
static pthread_cond_t dl__threadpool_done = PTHREAD_COND_INITIALIZER;      /* last task finished */
static pthread_t *dl__threadpool_workers;
static int dl__threadpool_worker_count;
static int dl__threadpool_quit;                 /* written under the mutex, atomically */
static unsigned long dl__threadpool_job_id;     /* written under the mutex, atomically */
static int dl__threadpool_tasks_left;           /* written under the mutex, atomically */
static dl_parallel_fn dl__threadpool_fn;
static void *dl__threadpool_ctx;
static int dl__threadpool_n_tasks, dl__threadpool_next_task;

/* Waking a sleeping thread costs tens of microseconds (much more than a small GEMM), so both
   sides spin for a while before sleeping: workers waiting for the next job, the caller waiting
   for the last task. With GNU C atomics only; elsewhere they go straight to sleep. */
#if defined(__GNUC__) && !defined(DL_NO_SPIN)
#ifndef DL_SPIN_ITERATIONS
#define DL_SPIN_ITERATIONS 30000   /* pause instructions, roughly 0.1 to 1 ms */
#endif
#define DL__THREADPOOL_STORE(var, value) __atomic_store_n(&(var), (value), __ATOMIC_RELEASE)
#define DL__THREADPOOL_LOAD(var) __atomic_load_n(&(var), __ATOMIC_ACQUIRE)
static void dl__cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}
/* Called with the mutex held; returns with it held. */
static void dl__threadpool_spin_until_new_job(unsigned long seen) {
    int i;
    pthread_mutex_unlock(&dl__threadpool_mutex);
    for (i = 0; i < DL_SPIN_ITERATIONS; i++) {
        if (DL__THREADPOOL_LOAD(dl__threadpool_job_id) != seen || DL__THREADPOOL_LOAD(dl__threadpool_quit)) break;
        dl__cpu_relax();
    }
    pthread_mutex_lock(&dl__threadpool_mutex);
}
static void dl__threadpool_spin_until_done(void) {
    int i;
    pthread_mutex_unlock(&dl__threadpool_mutex);
    for (i = 0; i < DL_SPIN_ITERATIONS && DL__THREADPOOL_LOAD(dl__threadpool_tasks_left) > 0; i++) dl__cpu_relax();
    pthread_mutex_lock(&dl__threadpool_mutex);
}
#else
#define DL__THREADPOOL_STORE(var, value) ((var) = (value))
static void dl__threadpool_spin_until_new_job(unsigned long seen) { (void)seen; }
static void dl__threadpool_spin_until_done(void) {}
#endif

static pthread_mutex_t dl__ws_mutex = PTHREAD_MUTEX_INITIALIZER;   /* guards the two below */
static dl__gemm_workspace **dl__threadpool_ws;  /* the workers' workspaces, [worker_count] */

static void dl__ws_note_high(size_t *high, size_t n_floats) {
    pthread_mutex_lock(&dl__ws_mutex);
    if (*high < n_floats) *high = n_floats;
    pthread_mutex_unlock(&dl__ws_mutex);
}

/* Grows ws to the high-water sizes. For a worker's workspace: only while the pool is idle. */
static void dl__ws_grow_to_high(dl__gemm_workspace *ws) {
    size_t high_a, high_b;
    if (!ws) return;
    pthread_mutex_lock(&dl__ws_mutex);
    high_a = dl__ws_high_a;
    high_b = dl__ws_high_b;
    pthread_mutex_unlock(&dl__ws_mutex);
    if (high_a) dl__workspace_grow(&ws->a_mem, &ws->a, &ws->a_cap, high_a, &dl__ws_high_a);
    if (high_b) dl__workspace_grow(&ws->b_mem, &ws->b, &ws->b_cap, high_b, &dl__ws_high_b);
}

/* Claims and runs tasks of the current job until none is left. Called with the mutex held. */
static void dl__threadpool_run_tasks(void) {
    while (dl__threadpool_next_task < dl__threadpool_n_tasks) {
        int task = dl__threadpool_next_task++;
        dl_parallel_fn fn = dl__threadpool_fn;
        void *ctx = dl__threadpool_ctx;
        pthread_mutex_unlock(&dl__threadpool_mutex);
        fn(ctx, task);
        pthread_mutex_lock(&dl__threadpool_mutex);
        DL__THREADPOOL_STORE(dl__threadpool_tasks_left, dl__threadpool_tasks_left - 1);
        if (dl__threadpool_tasks_left == 0) pthread_cond_signal(&dl__threadpool_done);
    }
}

static void *dl__threadpool_worker_main(void *arg) {
    unsigned long seen;
    dl__gemm_workspace *ws = dl__workspace_get();
    pthread_mutex_lock(&dl__ws_mutex);
    dl__threadpool_ws[(int)(intptr_t)arg] = ws;   /* so the pool can grow it while we are idle */
    pthread_mutex_unlock(&dl__ws_mutex);
    pthread_mutex_lock(&dl__threadpool_mutex);
    seen = dl__threadpool_job_id;
    for (;;) {
        dl__threadpool_spin_until_new_job(seen);
        while (!dl__threadpool_quit && dl__threadpool_job_id == seen)
            pthread_cond_wait(&dl__threadpool_wake, &dl__threadpool_mutex);
        if (dl__threadpool_quit) break;
        seen = dl__threadpool_job_id;
        dl__threadpool_run_tasks();
    }
    pthread_mutex_unlock(&dl__threadpool_mutex);
    return NULL;
}

/* Stops and joins the workers. Called with dispatch held. */
static void dl__threadpool_stop(void) {
    int i;
    pthread_mutex_lock(&dl__threadpool_mutex);
    DL__THREADPOOL_STORE(dl__threadpool_quit, 1);
    pthread_cond_broadcast(&dl__threadpool_wake);
    pthread_mutex_unlock(&dl__threadpool_mutex);
    for (i = 0; i < dl__threadpool_worker_count; i++) pthread_join(dl__threadpool_workers[i], NULL);
    if (dl__threadpool_workers) DL_FREE(dl__threadpool_workers);
    if (dl__threadpool_ws) DL_FREE(dl__threadpool_ws);
    dl__threadpool_workers = NULL;
    dl__threadpool_ws = NULL;
    dl__threadpool_worker_count = 0;
    DL__THREADPOOL_STORE(dl__threadpool_quit, 0);
}

/* Makes sure there are `wanted` workers. Called with dispatch held. */
static void dl__threadpool_start(int wanted) {
    if (dl__threadpool_worker_count == wanted) return;
    if (dl__threadpool_worker_count) dl__threadpool_stop();
    dl__threadpool_workers = (pthread_t *)DL_MALLOC((size_t)wanted * sizeof(pthread_t));
    dl__threadpool_ws = (dl__gemm_workspace **)DL_MALLOC((size_t)wanted * sizeof(dl__gemm_workspace *));
    if (!dl__threadpool_workers || !dl__threadpool_ws) {
        if (dl__threadpool_workers) DL_FREE(dl__threadpool_workers);
        if (dl__threadpool_ws) DL_FREE(dl__threadpool_ws);
        dl__threadpool_workers = NULL;
        dl__threadpool_ws = NULL;
        return;
    }
    memset(dl__threadpool_ws, 0, (size_t)wanted * sizeof(dl__gemm_workspace *));
    while (dl__threadpool_worker_count < wanted &&
           pthread_create(&dl__threadpool_workers[dl__threadpool_worker_count], NULL, dl__threadpool_worker_main,
                          (void *)(intptr_t)dl__threadpool_worker_count) == 0)
        dl__threadpool_worker_count++;
}
#endif /* DL__THREADS */

DLDEF void dl_set_num_threads(int n) {
#ifdef DL__THREADS
    pthread_mutex_lock(&dl__threadpool_mutex);
    dl__num_threads = n > 0 ? (n > 256 ? 256 : n) : dl__default_num_threads();
    pthread_mutex_unlock(&dl__threadpool_mutex);
#else
    (void)n;
    dl__num_threads = 1;
#endif
}

DLDEF int dl_get_num_threads(void) {
#ifdef DL__THREADS
    int n;
    pthread_mutex_lock(&dl__threadpool_mutex);
    if (!dl__num_threads) dl__num_threads = dl__default_num_threads();
    n = dl__num_threads;
    pthread_mutex_unlock(&dl__threadpool_mutex);
    return n;
#else
    return 1;
#endif
}

DLDEF void dl_parallel_for(int n_tasks, dl_parallel_fn fn, void *ctx) {
#ifdef DL__THREADS
    int threads;
    if (n_tasks <= 0) return;
    threads = dl_get_num_threads();
    if (threads <= 1 || n_tasks == 1 || pthread_mutex_trylock(&dl__threadpool_dispatch) != 0) {
        dl__parallel_serial(n_tasks, fn, ctx);
        return;
    }
    dl__threadpool_start(threads - 1);
    {   /* Workers are idle now: bring every workspace up to the largest size seen. */
        int i;
        dl__ws_grow_to_high(dl__workspace_get());
        for (i = 0; i < dl__threadpool_worker_count; i++) {
            dl__gemm_workspace *ws;
            pthread_mutex_lock(&dl__ws_mutex);
            ws = dl__threadpool_ws[i];
            pthread_mutex_unlock(&dl__ws_mutex);
            dl__ws_grow_to_high(ws);
        }
    }
    pthread_mutex_lock(&dl__threadpool_mutex);
    dl__threadpool_fn = fn;
    dl__threadpool_ctx = ctx;
    dl__threadpool_n_tasks = n_tasks;
    dl__threadpool_next_task = 0;
    DL__THREADPOOL_STORE(dl__threadpool_tasks_left, n_tasks);
    DL__THREADPOOL_STORE(dl__threadpool_job_id, dl__threadpool_job_id + 1);
    pthread_cond_broadcast(&dl__threadpool_wake);
    dl__threadpool_run_tasks();
    if (dl__threadpool_tasks_left > 0) dl__threadpool_spin_until_done();
    while (dl__threadpool_tasks_left > 0) pthread_cond_wait(&dl__threadpool_done, &dl__threadpool_mutex);
    pthread_mutex_unlock(&dl__threadpool_mutex);
    pthread_mutex_unlock(&dl__threadpool_dispatch);
#else
    if (n_tasks > 0) dl__parallel_serial(n_tasks, fn, ctx);
#endif
}

DLDEF void dl_threads_shutdown(void) {
#ifdef DL__THREADS
    pthread_mutex_lock(&dl__threadpool_dispatch);
    if (dl__threadpool_worker_count) dl__threadpool_stop();
    pthread_mutex_unlock(&dl__threadpool_dispatch);
#endif
    dl__workspace_release_mine();
}

/* ---- The blocked GEMM ---- */

typedef struct dl__gemm_job {
    const dl__gemm_kernels *kern;
    int trans_a, trans_b, m, n, k;
    float alpha, beta;
    const float *a, *b;
    float *c;
    ptrdiff_t lda, ldb, ldc;
    int pack_a;          /* pack op(A), or let the kernel read it in place */
    int pack_b;          /* pack op(B), or let the kernel read it in place (trans_b == 0) */
    int split_columns;   /* the thread tiles cut C by columns (else by rows) */
    int rows_use_dots;   /* row path: dot products (else GEMV) */
    int rows_copy_b;     /* row path: copy op(B)^T first */
    int n_tiles;
} dl__gemm_job;

/* Packs op(A)[i0:i0+mc, p0:p0+kc] as MR-row micro-panels: panel r, step p holds op(A)[i, p] for
   the MR rows i of the panel, at dst[r * MR * kc + p * MR + (i - first row)]. */
static void dl__pack_a(const dl__gemm_job *job, int i0, int mc, int p0, int kc, float *dst) {
    int mr = job->kern->mr, ir, i, p;
    for (ir = 0; ir < mc; ir += mr) {
        int rows = mc - ir < mr ? mc - ir : mr;
        if (!job->trans_a) {   /* rows of op(A) are contiguous: gather one column at a time */
            const float *src = job->a + (size_t)(i0 + ir) * job->lda + p0;
            ptrdiff_t lda = job->lda;
            if (rows == mr && job->kern->pack_a_panel) job->kern->pack_a_panel(src, lda, kc, dst);
            else for (p = 0; p < kc; p++)
                for (i = 0; i < rows; i++) dst[(size_t)p * mr + i] = src[i * lda + p];
        } else {   /* column p of op(A) is contiguous: copy `rows` values per step */
            for (p = 0; p < kc; p++)
                memcpy(dst + (size_t)p * mr, job->a + (size_t)(p0 + p) * job->lda + i0 + ir,
                       (size_t)rows * sizeof(float));
        }
        dst += (size_t)mr * kc;
    }
}

/* Packs op(B)[p0:p0+kc, j0:j0+nc] as NR-column micro-panels, zero-padding the last one. */
static void dl__pack_b(const dl__gemm_job *job, int p0, int kc, int j0, int nc, float *dst) {
    int nr = job->kern->nr, jr, j, p;
    for (jr = 0; jr < nc; jr += nr) {
        int cols = nc - jr < nr ? nc - jr : nr;
        if (!job->trans_b) {   /* row p of op(B) is contiguous */
            for (p = 0; p < kc; p++) {
                float *out = dst + (size_t)p * nr;
                memcpy(out, job->b + (size_t)(p0 + p) * job->ldb + j0 + jr,
                       (size_t)cols * sizeof(float));
                if (cols < nr) memset(out + cols, 0, (size_t)(nr - cols) * sizeof(float));
            }
        } else if (cols == nr && job->kern->pack_bt_panel) {   /* transposed in registers */
            job->kern->pack_bt_panel(job->b + (size_t)(j0 + jr) * job->ldb + p0, job->ldb, kc, dst);
        } else {   /* column j of op(B) is contiguous: scatter it with stride NR */
            for (j = 0; j < cols; j++) {
                const float *src = job->b + (size_t)(j0 + jr + j) * job->ldb + p0;
                float *out = dst + j;
                for (p = 0; p < kc; p++) out[(size_t)p * nr] = src[p];
            }
            for (p = 0; cols < nr && p < kc; p++)
                memset(dst + (size_t)p * nr + cols, 0, (size_t)(nr - cols) * sizeof(float));
        }
        dst += (size_t)nr * kc;
    }
}

/* Plain triple loop, used only if packing room cannot be allocated. */
static void dl__gemm_naive(const dl__gemm_job *job, int i0, int i1, int j0, int j1) {
    int i, j, p, mode = dl__beta_mode(job->beta);
    for (i = i0; i < i1; i++)
        for (j = j0; j < j1; j++) {
            float acc = 0.0f;
            for (p = 0; p < job->k; p++) {
                float av = job->trans_a ? job->a[p * job->lda + i] : job->a[i * job->lda + p];
                float bv = job->trans_b ? job->b[j * job->ldb + p] : job->b[p * job->ldb + j];
                acc += av * bv;
            }
            dl__store_scalar(job->c + i * job->ldc + j, acc, job->alpha, job->beta, mode);
        }
}

/* Splits `units` panels into `parts` contiguous runs; returns the first panel of run `part`. */
static int dl__split(int units, int parts, int part) {
    return (int)(((long long)units * part) / parts);
}

/* The five loops on the tile C[i0:i1, j0:j1]. */
static void dl__gemm_tile(const dl__gemm_job *job, int i0, int i1, int j0, int j1) {
    const dl__gemm_kernels *kern = job->kern;
    const int MR = kern->mr, NR = kern->nr, KC = kern->kc, MC = kern->mc, NC = kern->nc;
    dl__gemm_workspace *ws = dl__workspace_get();
    int jc, pc, ic, jr, ir;
    float *packed_b, *packed_a = NULL;
    {   /* packing room: one B panel (or just its partial last micro-panel) and one A block */
        int nc_max = j1 - j0 < NC ? j1 - j0 : NC, mc_max = i1 - i0 < MC ? i1 - i0 : MC;
        int kc_max = job->k < KC ? job->k : KC;
        size_t b_size = (size_t)(job->pack_b ? (nc_max + NR - 1) / NR * NR : NR) * kc_max;
        size_t a_size = (size_t)((mc_max + MR - 1) / MR) * MR * kc_max + 16;
        packed_b = ws ? dl__workspace_grow(&ws->b_mem, &ws->b, &ws->b_cap, b_size, &dl__ws_high_b) : NULL;
        if (job->pack_a && packed_b) packed_a = dl__workspace_grow(&ws->a_mem, &ws->a, &ws->a_cap, a_size, &dl__ws_high_a);
        if (!packed_b || (job->pack_a && !packed_a)) {
            dl__gemm_naive(job, i0, i1, j0, j1);
            return;
        }
    }
    for (jc = j0; jc < j1; jc += NC) {
        int nc = j1 - jc < NC ? j1 - jc : NC, full_cols = nc / NR * NR;
        for (pc = 0; pc < job->k; pc += KC) {
            int kc = job->k - pc < KC ? job->k - pc : KC;
            float beta = pc == 0 ? job->beta : 1.0f;   /* later K blocks add to C */
            if (job->pack_b) dl__pack_b(job, pc, kc, jc, nc, packed_b);
            else if (full_cols < nc) dl__pack_b(job, pc, kc, jc + full_cols, nc - full_cols, packed_b);
            for (ic = i0; ic < i1; ic += MC) {
                int mc = i1 - ic < MC ? i1 - ic : MC;
                if (job->pack_a) dl__pack_a(job, ic, mc, pc, kc, packed_a);
                for (jr = 0; jr < nc; jr += NR) {
                    int cols = nc - jr < NR ? nc - jr : NR;
                    const float *bp = packed_b + (size_t)jr * kc;   /* B micro-panel */
                    ptrdiff_t rs_b = NR;
                    if (!job->pack_b) {   /* B in place; its partial last micro-panel packed */
                        bp = jr < full_cols ? job->b + (size_t)pc * job->ldb + jc + jr : packed_b;
                        rs_b = jr < full_cols ? job->ldb : NR;
                    }
                    /* In place, the rows are shared out evenly (64 = 13+13+13+13+12, not
                       14+14+14+14+8): a short micro-kernel wastes its fixed costs. Packed, the
                       panels are MR rows. Every element is computed the same way either way. */
                    int panels = (mc + MR - 1) / MR, q, rows;
                    for (q = 0, ir = 0; ir < mc; q++, ir += rows) {
                        float *cp;
                        rows = job->pack_a ? (mc - ir < MR ? mc - ir : MR)
                                           : dl__split(mc, panels, q + 1) - ir;
                        cp = job->c + (size_t)(ic + ir) * job->ldc + jc + jr;
                        if (job->pack_a) {
                            kern->packed[rows](rows, cols, kc, packed_a + (size_t)ir * kc, 1, MR,
                                               bp, rs_b, cp, job->ldc, job->alpha, beta);
                        } else if (!job->trans_a) {
                            const float *ap = job->a + (size_t)(ic + ir) * job->lda + pc;
                            kern->strided[rows](rows, cols, kc, ap, job->lda, 1, bp, rs_b, cp,
                                                job->ldc, job->alpha, beta);
                        } else {
                            const float *ap = job->a + (size_t)pc * job->lda + ic + ir;
                            kern->strided[rows](rows, cols, kc, ap, 1, job->lda, bp, rs_b, cp,
                                                job->ldc, job->alpha, beta);
                        }
                    }
                }
            }
        }
    }
}


static void dl__gemm_tile_task(void *ctx, int task) {
    const dl__gemm_job *job = (const dl__gemm_job *)ctx;
    if (job->split_columns) {
        int NR = job->kern->nr, panels = (job->n + NR - 1) / NR;
        int j0 = dl__split(panels, job->n_tiles, task) * NR;
        int j1 = dl__split(panels, job->n_tiles, task + 1) * NR;
        if (j1 > job->n) j1 = job->n;
        if (j0 < j1) dl__gemm_tile(job, 0, job->m, j0, j1);
    } else {
        int MR = job->kern->mr, panels = (job->m + MR - 1) / MR;
        int i0 = dl__split(panels, job->n_tiles, task) * MR;
        int i1 = dl__split(panels, job->n_tiles, task + 1) * MR;
        if (i1 > job->m) i1 = job->m;
        if (i0 < i1) dl__gemm_tile(job, i0, i1, 0, job->n);
    }
}

/* ---- Few rows or few columns: one row of C at a time, no blocking ----

   Row i of C is x^T op(B) with x = row i of op(A). When op(B) has contiguous rows (trans_b == 0)
   and C is wide, that is a GEMV sweeping the rows of B (dl__gemv_fn). Otherwise each element is
   a dot product of x with a row of op(B)^T (dl__dots_fn); a non-transposed B is first copied
   into op(B)^T, which is small because n is. Tasks cut C by rows when it has many, else by
   columns (in runs of 128 or 4, so every element is computed the same way in any split). */

#define DL__ROWS_CHUNK 128

static void dl__gemm_rows_part(const dl__gemm_job *job, int i0, int i1, int j0, int j1) {
    const dl__gemm_kernels *kern = job->kern;
    const float *bt = job->b;   /* op(B)^T, rows contiguous, for dot products */
    ptrdiff_t ldbt = job->trans_b ? job->ldb : 1;   /* 1: a single column with ldb == 1 */
    float *x_copy = NULL;
    int i, p, j;
    if (job->rows_use_dots && (job->trans_a || job->rows_copy_b)) {
        dl__gemm_workspace *ws = dl__workspace_get();
        size_t bt_size = job->rows_copy_b ? (size_t)(j1 - j0) * job->k : 1;
        float *room_b = ws ? dl__workspace_grow(&ws->b_mem, &ws->b, &ws->b_cap, bt_size, &dl__ws_high_b) : NULL;
        x_copy = ws ? dl__workspace_grow(&ws->a_mem, &ws->a, &ws->a_cap, (size_t)job->k, &dl__ws_high_a) : NULL;
        if (!room_b || !x_copy) {
            dl__gemm_naive(job, i0, i1, j0, j1);
            return;
        }
        if (job->rows_copy_b) {   /* op(B)^T[j][p] = B[p][j] */
            for (p = 0; p < job->k; p++)
                for (j = j0; j < j1; j++) room_b[(size_t)(j - j0) * job->k + p] = job->b[(size_t)p * job->ldb + j];
            bt = room_b - (ptrdiff_t)j0 * job->k;
            ldbt = job->k;
        }
    }
    if (job->rows_use_dots && !job->trans_a && !job->split_columns) {   /* a block at once */
        kern->dots_block(i1 - i0, j1 - j0, job->k, job->a + (size_t)i0 * job->lda, job->lda,
                         bt + j0 * ldbt, ldbt, job->c + (size_t)i0 * job->ldc + j0, job->ldc,
                         job->alpha, job->beta);
        return;
    }
    for (i = i0; i < i1; i++) {
        float *y = job->c + (size_t)i * job->ldc + j0;
        /* row i of op(A): x[p * incx] */
        ptrdiff_t incx = job->trans_a ? job->lda : 1;
        const float *x = job->trans_a ? job->a + i : job->a + (size_t)i * job->lda;
        if (!job->rows_use_dots) {
            kern->gemv(j1 - j0, job->k, x, incx, job->b + j0, job->ldb, y, job->alpha, job->beta);
            continue;
        }
        if (incx != 1) {   /* dot products want x contiguous */
            for (p = 0; p < job->k; p++) x_copy[p] = x[p * incx];
            x = x_copy;
        }
        kern->dots(j1 - j0, job->k, x, bt + j0 * ldbt, ldbt, y, job->alpha, job->beta);
    }
}

static void dl__gemm_rows_task(void *ctx, int task) {
    const dl__gemm_job *job = (const dl__gemm_job *)ctx;
    if (job->split_columns) {
        int chunk = job->rows_use_dots ? 4 : DL__ROWS_CHUNK, units = (job->n + chunk - 1) / chunk;
        int j0 = dl__split(units, job->n_tiles, task) * chunk;
        int j1 = dl__split(units, job->n_tiles, task + 1) * chunk;
        if (j1 > job->n) j1 = job->n;
        if (j0 < j1) dl__gemm_rows_part(job, 0, job->m, j0, j1);
    } else {
        int i0 = dl__split(job->m, job->n_tiles, task), i1 = dl__split(job->m, job->n_tiles, task + 1);
        if (i0 < i1) dl__gemm_rows_part(job, i0, i1, 0, job->n);
    }
}

/* ---- op(A) transposed, few columns: C^T = op(B)^T A, see dl__avx512_tn_body ---- */

#define DL__TN_CHUNK 64   /* rows per thread unit */

static void dl__gemm_tn_part(const dl__gemm_job *job, int i0, int i1) {
    ptrdiff_t rs_b = job->trans_b ? 1 : job->ldb, cs_b = job->trans_b ? job->ldb : 1;
    job->kern->tn_small(i1 - i0, job->n, job->k, job->a + i0, job->lda, job->b, rs_b, cs_b,
                        job->c + (size_t)i0 * job->ldc, job->ldc, job->alpha, job->beta);
}

static void dl__gemm_tn_task(void *ctx, int task) {
    const dl__gemm_job *job = (const dl__gemm_job *)ctx;
    int units = (job->m + DL__TN_CHUNK - 1) / DL__TN_CHUNK;
    int i0 = dl__split(units, job->n_tiles, task) * DL__TN_CHUNK;
    int i1 = dl__split(units, job->n_tiles, task + 1) * DL__TN_CHUNK;
    if (i1 > job->m) i1 = job->m;
    if (i0 < i1) dl__gemm_tn_part(job, i0, i1);
}

/* ---- Entry point ---- */

static void dl__gemm_scale_c(int m, int n, float beta, float *c, int ldc) {
    int i, j;
    for (i = 0; i < m; i++) {
        float *row = c + (size_t)i * ldc;
        if (beta == 0.0f) memset(row, 0, (size_t)n * sizeof(float));
        else if (beta != 1.0f)
            for (j = 0; j < n; j++) row[j] *= beta;
    }
}

DLDEF void dl_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a,
                    int lda, const float *b, int ldb, float beta, float *c, int ldc) {
    dl__gemm_job job;
    double flops = (double)m * n * k;
    int threads, units;
    if (m <= 0 || n <= 0) return;
    if (k <= 0 || alpha == 0.0f) {   /* C = beta * C, A and B not read */
        dl__gemm_scale_c(m, n, beta, c, ldc);
        return;
    }
    if (n == 1 && ldc == 1 && m > 1) {
        /* A column of C that is contiguous: compute C^T = op(B)^T op(A)^T, a single row. */
        dl_sgemm(!trans_b, !trans_a, 1, m, k, alpha, b, ldb, a, lda, beta, c, m);
        return;
    }
    memset(&job, 0, sizeof job);
    job.kern = dl__gemm_kernels_get();
    job.trans_a = trans_a != 0;
    job.trans_b = trans_b != 0;
    job.m = m, job.n = n, job.k = k;
    job.alpha = alpha, job.beta = beta;
    job.a = a, job.b = b, job.c = c;
    job.lda = lda, job.ldb = ldb, job.ldc = ldc;
    threads = flops >= DL__GEMM_PARALLEL_MIN_FLOPS ? dl_get_num_threads() : 1;

    if (trans_a && n <= DL__GEMM_TN_MAX_N && m > DL__GEMM_SMALL_M && job.kern->tn_small) {
        units = (m + DL__TN_CHUNK - 1) / DL__TN_CHUNK;
        job.n_tiles = threads < units ? threads : units;
        if (job.n_tiles > 1) dl_parallel_for(job.n_tiles, dl__gemm_tn_task, &job);
        else dl__gemm_tn_part(&job, 0, m);
        return;
    }
    if (m <= DL__GEMM_SMALL_M || (2 * n < job.kern->nr && !trans_a)) {   /* row by row */
        int chunk;
        job.rows_use_dots = trans_b || (n == 1 && ldb == 1) || m > DL__GEMM_SMALL_M;
        job.rows_copy_b = job.rows_use_dots && !trans_b && !(n == 1 && ldb == 1);
        job.split_columns = m <= DL__GEMM_SMALL_M;
        chunk = job.rows_use_dots ? 4 : DL__ROWS_CHUNK;
        units = job.split_columns ? (n + chunk - 1) / chunk : m;
        job.n_tiles = threads < units ? threads : units;
        if (job.n_tiles > 1) dl_parallel_for(job.n_tiles, dl__gemm_rows_task, &job);
        else dl__gemm_rows_part(&job, 0, m, 0, n);
        return;
    }

    /* Pack op(A) when it is big and each of its values feeds enough micro-kernel calls (n / NR
       of them). Read in place, a block of A that fits the L2 cache is as fast as a packed one
       (measured), and the copy is saved; a big one with a power-of-two row stride thrashes the
       cache sets and needs the packed copy. */
    job.pack_a = n > 2 * job.kern->nr && (double)m * k > DL__GEMM_PACK_MIN_FLOATS;
    /* Pack op(B) when it must be transposed, or is big (the same reasoning as for A). */
    job.pack_b = trans_b || (double)k * n > DL__GEMM_PACK_MIN_FLOATS;
    /* One tile per thread, cut along the longer side of C so the copies made by packing the
       other operand twice are the smaller ones. */
    job.split_columns = n >= m;
    units = job.split_columns ? (n + job.kern->nr - 1) / job.kern->nr
                              : (m + job.kern->mr - 1) / job.kern->mr;
    job.n_tiles = threads < units ? threads : units;
    if (job.n_tiles > 1) dl_parallel_for(job.n_tiles, dl__gemm_tile_task, &job);
    else dl__gemm_tile(&job, 0, m, 0, n);
}
