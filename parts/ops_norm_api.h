/* ---- Normalization, dropout, embedding, Gram matrix -----------------------------------------
   PyTorch semantics, channels on axis 1 (NCHW). Outputs are arena tensors; NULL + dl_error() on
   bad arguments. Variances used for normalizing are biased (divide by the count), eps is added
   inside the square root. */

/* Batch normalization over every axis but 1: x is [N, C] or [N, C, d1, d2, ...].
   gamma, beta: [C] or NULL (scale 1, shift 0). running_mean, running_var: persistent [C] f32
   tensors (or NULL while training: then nothing is tracked).
   training != 0: normalizes with the batch statistics and updates the running ones in place,
     running = (1 - momentum) * running + momentum * batch_stat, where running_var tracks the
     UNBIASED batch variance (torch.nn.BatchNorm2d; momentum 0.1 and eps 1e-5 are torch's
     defaults). Keras' BatchNormalization(momentum=0.99, epsilon=1e-3) is momentum 0.01 here.
     Needs more than one value per channel.
   training == 0: normalizes with running_mean / running_var (both required).
   Gradients reach x, gamma and beta (never the running statistics). */
DLDEF dl_tensor *dl_batch_norm(dl_tensor *x, dl_tensor *gamma, dl_tensor *beta,
                               dl_tensor *running_mean, dl_tensor *running_var,
                               int training, float momentum, float eps);

/* torch.nn.functional.layer_norm: normalizes over the last normalized_ndim axes of x;
   gamma, beta: shaped like those axes, or NULL. */
DLDEF dl_tensor *dl_layer_norm(dl_tensor *x, int normalized_ndim, dl_tensor *gamma,
                               dl_tensor *beta, float eps);

/* torch.nn.functional.instance_norm without running statistics: x is [N, C, d1, ...] with more
   than one spatial element, statistics per (n, c); gamma, beta: [C] or NULL. */
DLDEF dl_tensor *dl_instance_norm(dl_tensor *x, dl_tensor *gamma, dl_tensor *beta, float eps);

/* Inverted dropout: while training, each element is kept with probability 1 - p and scaled by
   1 / (1 - p), else zeroed (one dl_rng_uniform draw per element, in row-major order, so the
   same seed gives the same mask). Returns x itself (no copy) when !training or p == 0; p == 1
   gives zeros. p outside [0, 1], or rng NULL while training, is an error. */
DLDEF dl_tensor *dl_dropout(dl_tensor *x, float p, int training, dl_rng *rng);

/* torch.nn.functional.embedding: weight [V, D] f32, indices DL_I32 of any shape with values in
   [0, V) -> [..., D] (indices' shape plus D). The gradient adds each output row into the weight
   row it came from (repeated indices accumulate). */
DLDEF dl_tensor *dl_embedding(dl_tensor *weight, dl_tensor *indices);

/* Gram matrix for style losses: x [N, C, H, W] (any number >= 1 of trailing spatial axes) ->
   [N, C, C], G[n] = F F^T / (H*W) with F = x[n] as [C, H*W]. Dividing by the number of
   locations follows the TensorFlow neural style transfer tutorial's gram_matrix
   (tensorflow.org/tutorials/generative/style_transfer); Gatys et al. and the PyTorch tutorial
   use other normalizations. */
DLDEF dl_tensor *dl_gram(dl_tensor *x);
