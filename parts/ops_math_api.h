/* ---- Elementwise math, reductions, shape ops -------------------------------------------------

   Every op here returns a new tensor in the current arena (or NULL with dl_error() set), takes
   input views of any strides, and records its backward when an input requires a gradient.
   Math ops need f32 tensors on the CPU; the index and shape ops say which dtypes they take.
   They follow PyTorch's semantics (argument meaning, ties, gradients at kinks); where Keras
   differs, the comment says so.

   Broadcasting (NumPy / PyTorch rules), used by the binary ops:
     - shapes are aligned at their last axis; a missing leading axis counts as size 1;
     - two sizes are compatible when they are equal or one of them is 1;
     - the result takes the larger size on every axis: [2, 1, 3] with [4, 1] gives [2, 4, 3],
       [B, N] with [N] gives [B, N] (a Dense bias), anything with a 0-d scalar keeps its shape.
   The gradient of a broadcast input is the output gradient summed over the axes it was
   stretched along ("sum to shape").

   Axes: negative axes count from the end (-1 is the last). Reductions take naxes axes;
   naxes == 0 means all of them. keepdim keeps reduced axes with size 1, as in PyTorch. */

/* Binary, broadcasting. */
DLDEF dl_tensor *dl_add(dl_tensor *a, dl_tensor *b);       /* a + b;  da = g, db = g */
DLDEF dl_tensor *dl_sub(dl_tensor *a, dl_tensor *b);       /* a - b;  da = g, db = -g */
DLDEF dl_tensor *dl_mul(dl_tensor *a, dl_tensor *b);       /* a * b;  da = g b, db = g a */
DLDEF dl_tensor *dl_div(dl_tensor *a, dl_tensor *b);       /* a / b;  da = g / b, db = -g a / b^2 */
DLDEF dl_tensor *dl_minimum(dl_tensor *a, dl_tensor *b);   /* torch.minimum: NaN wins; g goes to the smaller */
DLDEF dl_tensor *dl_maximum(dl_tensor *a, dl_tensor *b);   /* torch.maximum: NaN wins; g goes to the larger */
      /* at ties each side gets g / 2 (PyTorch); TensorFlow/Keras gives all of g to a */

/* With a float scalar (no broadcasting needed). Divide by s with dl_mul_scalar(x, 1 / s). */
DLDEF dl_tensor *dl_add_scalar(dl_tensor *x, float s);     /* x + s */
DLDEF dl_tensor *dl_mul_scalar(dl_tensor *x, float s);     /* x * s */
DLDEF dl_tensor *dl_rsub_scalar(float s, dl_tensor *x);    /* s - x */
DLDEF dl_tensor *dl_pow(dl_tensor *x, float p);            /* x^p; dx = g p x^(p-1), and 0 when p == 0 (torch) */

/* Unary. */
DLDEF dl_tensor *dl_neg(dl_tensor *x);                     /* -x */
DLDEF dl_tensor *dl_exp(dl_tensor *x);                     /* e^x; dx = g e^x */
DLDEF dl_tensor *dl_log(dl_tensor *x);                     /* ln x; dx = g / x */
DLDEF dl_tensor *dl_sqrt(dl_tensor *x);                    /* sqrt x; dx = g / (2 sqrt x) */
DLDEF dl_tensor *dl_abs(dl_tensor *x);                     /* |x|; dx = g sign(x), 0 at x == 0 */
DLDEF dl_tensor *dl_clamp(dl_tensor *x, float lo, float hi); /* min(max(x, lo), hi) (all hi when lo > hi);
                                                                 dx = g where lo <= x <= hi, else 0.
                                                                 One-sided: lo = -INFINITY or hi = INFINITY */

/* Reductions over axes[0..naxes-1] (naxes == 0: all). */
DLDEF dl_tensor *dl_sum(dl_tensor *x, int naxes, const int *axes, int keepdim);   /* dx = g broadcast back */
DLDEF dl_tensor *dl_mean(dl_tensor *x, int naxes, const int *axes, int keepdim);  /* sum / N; dx = g / N */
DLDEF dl_tensor *dl_max(dl_tensor *x, int naxes, const int *axes, int keepdim);   /* torch.amax: NaN wins;
                                                  dx = g / (number of maxima) at every maximum, else 0 */
DLDEF dl_tensor *dl_var(dl_tensor *x, int naxes, const int *axes, int correction, int keepdim);
      /* torch.var: sum (x - mean)^2 / (N - correction); correction 1 = unbiased (torch's default),
         0 = population variance (Keras' / NumPy's default); dx = g 2 (x - mean) / (N - correction) */
DLDEF dl_tensor *dl_argmax(dl_tensor *x, int axis, int keepdim); /* DL_I32; first maximal index, NaN counts
                                                                    as the maximum (torch); not differentiable */
DLDEF dl_tensor *dl_sum_all(dl_tensor *x);                 /* 0-d sum of every element */
DLDEF dl_tensor *dl_mean_all(dl_tensor *x);                /* 0-d mean of every element */

/* Shape and index ops. */
DLDEF dl_tensor *dl_concat(int n, dl_tensor *const *xs, int axis);
      /* torch.cat: same dtype (any), same shape except along axis; dx_i = g's slice for x_i */
DLDEF int dl_split(dl_tensor *x, int axis, int n, const int *sizes, dl_tensor **outs);
      /* outs[i] = views (dl_slice) of sizes[i] consecutive entries along axis; sizes must add up to
         x->shape[axis]; sizes == NULL splits into n equal parts. Returns 0, or -1 with dl_error(). */
DLDEF dl_tensor *dl_index_select(dl_tensor *x, int axis, dl_tensor *idx);
      /* torch.index_select: idx is 1-D DL_I32 in [0, x->shape[axis]); x of any dtype;
         out[.., k, ..] = x[.., idx[k], ..]; dx scatter-adds g (repeated indices accumulate) */
DLDEF dl_tensor *dl_gather(dl_tensor *x, int axis, dl_tensor *idx);
      /* torch.gather: idx DL_I32 with x's ndim, idx->shape[d] <= x->shape[d] for d != axis;
         out has idx's shape, out[i][j][k] = x[i][idx[i][j][k]][k] (axis 1); dx scatter-adds g */
DLDEF dl_tensor *dl_one_hot(dl_tensor *labels, int num_classes);
      /* DL_I32 or DL_U8 labels of any shape -> f32 [..., num_classes]; num_classes -1 means
         max(labels) + 1 (torch); a label outside [0, num_classes) is an error */
DLDEF dl_tensor *dl_cast(dl_tensor *x, dl_dtype dtype);
      /* a contiguous copy converted to dtype. To integers: truncated toward zero (NaN -> 0);
         to u8 the result wraps modulo 256 like PyTorch on x86 (-1.0 -> 255). Differentiable only
         f32 -> f32. */
DLDEF dl_tensor *dl_broadcast_to(dl_tensor *x, int ndim, const int *shape);
      /* x broadcast to shape and materialized (f32); dx = g summed back to x's shape */
