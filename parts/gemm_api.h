/* ---- Matrix multiply (GEMM) and the thread pool ---------------------------------------------

   dl_sgemm: C = alpha * op(A) @ op(B) + beta * C, single precision, all matrices row-major.
     op(A) is m x k: A is stored m x k (lda >= k) when trans_a == 0, k x m (lda >= m) otherwise.
     op(B) is k x n: B is stored k x n (ldb >= n) when trans_b == 0, n x k (ldb >= k) otherwise.
     C is m x n (ldc >= n). alpha and beta mean what they mean in BLAS: when beta == 0, C is
     only written, never read (NaNs already in C do not leak into the result); when alpha == 0
     or k == 0, A and B are not read and C becomes beta * C.
   Results are bit-identical whatever the number of threads: work is split over rows and columns
   of C only, never over k. They can differ between kernels (avx512 / avx2 / generic) in the last
   bits. dl_sgemm never fails; it allocates only the first time a thread needs packing room
   bigger than it has had (buffers are kept and reused, freed by dl_threads_shutdown).

   Threads: a small pool of pthreads, started on first use. The default count is the environment
   variable DL_NUM_THREADS, else the number of online CPUs. Build with DL_NO_THREADS to get no
   pthreads at all (everything runs on the calling thread; then do not call dl_sgemm from several
   threads at once). The pool runs one parallel loop at a time: a dl_parallel_for (or dl_sgemm)
   issued while another is running, from a pool task or from another thread, runs serially on the
   calling thread instead of waiting.

   DL_GEMM_KERNEL=generic|avx2|avx512 in the environment (read once, at the first GEMM) forces a
   micro-kernel, for testing and comparison; an unsupported or unknown name is ignored.
   dl_gemm_set_kernel does the same from code. */

DLDEF void dl_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a,
                    int lda, const float *b, int ldb, float beta, float *c, int ldc);

DLDEF void dl_set_num_threads(int n);   /* n <= 0: back to the default. Not while work runs. */
DLDEF int  dl_get_num_threads(void);

/* Runs fn(ctx, task) for task = 0 .. n_tasks-1 on the pool and returns when all are done. Tasks
   may run in any order and on any thread, so they must not allocate from a dl arena or touch
   other shared state without their own locking. Serial when there is 1 thread, when n_tasks
   == 1, and when called from inside a pool task (no nested deadlock). */
typedef void (*dl_parallel_fn)(void *ctx, int task);
DLDEF void dl_parallel_for(int n_tasks, dl_parallel_fn fn, void *ctx);

DLDEF const char *dl_gemm_kernel_name(void);   /* "avx512", "avx2" or "generic" */

/* Forces the micro-kernel by name, like DL_GEMM_KERNEL (tests, comparisons); returns 0 and
   changes nothing when the name is unknown or this CPU lacks it. Not while a GEMM runs. */
DLDEF int dl_gemm_set_kernel(const char *name);

/* Joins and frees the pool and the calling thread's packing buffers (for leak checkers). The pool
   starts again lazily when used. Do not call it while another thread is using dl. */
DLDEF void dl_threads_shutdown(void);
