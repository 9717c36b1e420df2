/* ---- Matrix products, activations, softmax, losses ------------------------------------------
   PyTorch semantics (argument names, edge cases, gradients at kinks). Inputs may be any f32
   views (transposed, sliced); outputs are fresh contiguous arena tensors; NULL + dl_error() on
   bad arguments, NULL on a NULL input. */

/* torch.matmul: a [..., m, k] @ b [..., k, n] -> [..., m, n], batch axes broadcast (a 2-D
   operand against a batched one is fine). A 1-D a is [1, k] and a 1-D b is [k, 1], with that
   axis dropped from the result, as in torch. Operands that are matrices or transposed views of
   matrices in their last two axes are read in place (no copy). */
DLDEF dl_tensor *dl_matmul(dl_tensor *a, dl_tensor *b);
/* op(a) @ op(b) where op transposes the last two axes when its flag is nonzero, without a copy:
   dl_matmul_t(a, b, 0, 1) is a @ b^T. Both operands need at least 2 axes. */
DLDEF dl_tensor *dl_matmul_t(dl_tensor *a, dl_tensor *b, int trans_a, int trans_b);
/* Dense layer: x [..., in] @ w [in, out] + b [out] -> [..., out]; b may be NULL. w has Keras'
   Dense kernel layout; torch.nn.Linear stores its weight as [out, in], so pass a transposed
   view (dl_transpose(w_torch, 0, 1)), which is read in place. One GEMM forward, two backward. */
DLDEF dl_tensor *dl_linear(dl_tensor *x, dl_tensor *w, dl_tensor *b);

/* Elementwise activations. */
DLDEF dl_tensor *dl_relu(dl_tensor *x);                              /* gradient 0 at x == 0 */
DLDEF dl_tensor *dl_leaky_relu(dl_tensor *x, float negative_slope); /* torch default 0.01 */
DLDEF dl_tensor *dl_elu(dl_tensor *x, float alpha);                  /* torch default 1.0 */
DLDEF dl_tensor *dl_gelu(dl_tensor *x);           /* exact: x * Phi(x) with erf (torch default) */
DLDEF dl_tensor *dl_gelu_tanh(dl_tensor *x);      /* torch gelu(approximate='tanh') */
DLDEF dl_tensor *dl_sigmoid(dl_tensor *x);
DLDEF dl_tensor *dl_tanh(dl_tensor *x);
DLDEF dl_tensor *dl_softplus(dl_tensor *x);       /* log(1 + e^x); x itself above 20 (torch) */

/* Softmax and log-softmax along axis (negative counts from the end), max-subtracted so any
   finite input gives finite probabilities. */
DLDEF dl_tensor *dl_softmax(dl_tensor *x, int axis);
DLDEF dl_tensor *dl_log_softmax(dl_tensor *x, int axis);

/* Losses: each returns a 0-d tensor, the mean over elements (torch reduction='mean', Keras'
   default). pred and target must have the same shape (no broadcasting). */

/* torch.nn.functional.cross_entropy from logits: logits [N, C] with labels DL_I32 [N], or
   logits [N, C, d1, ...] with labels [N, d1, ...]. A label of -100 is ignored (torch's default
   ignore_index) and left out of the mean; any other label outside [0, C) is an error. Keras:
   SparseCategoricalCrossentropy(from_logits=True). */
DLDEF dl_tensor *dl_cross_entropy(dl_tensor *logits, dl_tensor *labels);
/* torch.nn.functional.binary_cross_entropy_with_logits: targets f32 in [0, 1], same shape.
   Keras: BinaryCrossentropy(from_logits=True) averages over the last axis first (the same
   mean when every row has the same length). */
DLDEF dl_tensor *dl_bce_with_logits(dl_tensor *logits, dl_tensor *targets);
DLDEF dl_tensor *dl_mse(dl_tensor *pred, dl_tensor *target);  /* mean((pred - target)^2) */
DLDEF dl_tensor *dl_l1(dl_tensor *pred, dl_tensor *target);   /* mean(|pred - target|) */
/* torch.nn.HuberLoss(delta): 0.5 d^2 where |d| < delta, else delta (|d| - 0.5 delta); delta > 0.
   Keras' Huber(delta) is the same. (torch's SmoothL1Loss(beta) is this divided by beta.) */
DLDEF dl_tensor *dl_huber(dl_tensor *pred, dl_tensor *target, float delta);
