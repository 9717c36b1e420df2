/* dl_gan.h - v0.2.0 - generative models for dl, in C99: GAN training steps (non-saturating
   BCE, LSGAN, WGAN-GP), the Keras lesson's frozen-discriminator recipe, CycleGAN's parts,
   pictures of training (sample grids and loss curves as PNG), whole-run checkpoints, and
   neural style transfer (Gatys et al.) on VGG19 features.
   Part of dl, a family of single-file deep-learning libraries; needs dl_nn.h.

   Do this:
       #define DL_IMPLEMENTATION
   before you include this file in *one* C or C++ file to create the implementation. Every
   other file includes it plainly. It includes dl_nn.h (and so dl_tensor.h and dl_optim.h) from
   its own folder itself when that was not included before. Link with -lm -lpthread. PNG
   output needs stb_image_write.h (Debian: libstb-dev, <stb/stb_image_write.h>) included
   before this file, in the implementation file too.

   EXAMPLE: a GAN step by step (examples/dcgan.c is the whole program)

       dl_model *g = ..., *d = ...;                    // yours: G ends in tanh, D in a logit
       dl_gan_opts o = {0};                            // zeros: BCE from logits, PyTorch's order
       o.latent_dim = 100; o.seed = 1;
       dl_gan *gan = dl_gan_new(g, d, dl_adam(1e-4), dl_adam(1e-4), &o);   // takes the optimizers
       if (!gan) { puts(dl_error()); return 1; }
       while (dl_batcher_next(batches, &real, NULL) == 1) {   // real in [-1, 1], like G's tanh
           dl_gan_stats st;
           if (dl_gan_train_step(gan, real, &st) != 0) { puts(dl_error()); break; }
           dl_arena_reset(dl_arena_current());
       }
       dl_image_grid_save(dl_model_call(g, dl_gan_noise(gan, 16), 0), "grid.png", 4, -1, 1);
       dl_gan_plot_save(gan, "losses.png", 0, 0);     // D and G loss, D(x), D(G(z))
       dl_gan_save(gan, "run.safetensors");           // dl_gan_load resumes it, bit for bit
       dl_gan_free(gan); dl_model_free(g); dl_model_free(d);

   The Keras lesson's recipe (compile D; combined = G then frozen D; train_on_batch three times
   a step) needs no dl_gan: dl_nn.h's dl_model_as_layer expresses it (examples/gan_mnist.c).

   EXAMPLE: CycleGAN, unpaired translation between two sets of images (examples/cyclegan.c)

       dl_model *g_ab = dl_cyclegan_generator(1, 28, 28, NULL), *g_ba = ..., // yours
                *d_a = dl_cyclegan_discriminator(1, 28, 28, NULL), *d_b = ...;
       dl_cyclegan *cg = dl_cyclegan_new(g_ab, g_ba, d_a, d_b, adam_2e4_05, adam_2e4_05, NULL);
       for (long t = 0; t < steps; t++) {
           dl_cyclegan_set_lr(cg, dl_lr_cyclegan(2e-4, steps / 2, steps - steps / 2, t));
           dl_cyclegan_train_step(cg, batch_a, batch_b, &stats);   // a and b need not be pairs
       }
       dl_cyclegan_save(cg, "run.safetensors");       // nets, optimizers, pools, history

   CONTENTS (declarations below are grouped in this order)
       GAN TRAINING    dl_gan: D and G steps with the BCE (non-saturating), LSGAN and WGAN-GP
                       losses, one-sided label smoothing, instance noise, an average of G's
                       weights (dl_gan_ema_swap); dl_gan_d_loss, dl_gan_g_loss,
                       dl_gan_gradient_penalty for your own loop; the history; whole-run
                       checkpoints (dl_gan_save / dl_gan_load)
       PICTURES        dl_image_grid (samples as one picture), dl_plot_draw (line charts with
                       axes, numbers and a legend, in a 5x7 font of our own), dl_gan_plot; as PNG
                       files with stb_image_write.h: dl_image_grid_save, dl_gan_plot_save
       QUALITY         dl_inception_score, dl_frechet_distance (examples/gan_eval.c uses them
                       with a Fashion-MNIST classifier)
       CYCLEGAN        CycleGAN (Zhu et al. 2017) as the authors' code: dl_image_pool (the
                       history of fakes D trains on), dl_lr_cyclegan (constant, then linearly to
                       0), dl_cyclegan_generator (ResNet) and dl_cyclegan_discriminator
                       (PatchGAN), dl_cyclegan (the G and D steps of both directions; history,
                       loss picture, whole-run checkpoints); examples/cyclegan.c
       STYLE TRANSFER  VGG19 features (dl_vgg19_*: weights converted by
                       tools/vgg19_to_safetensors.py, or random), dl_style_loss,
                       dl_content_loss, dl_total_variation, dl_style_transfer_* (Adam or L-BFGS)

   OWNERSHIP
       dl_gan borrows its two models (free them after the gan) and takes over its optimizers;
       dl_cyclegan likewise its four models and two optimizers (and owns its two image pools).
       Noise, losses and the pictures' tensors live in the current arena; dl_image_grid and
       dl_gan_plot return owned pixels (dl_free). dl_vgg19 and dl_style_transfer objects are
       yours (their _free).

   ERRORS
       Every function that can fail returns NULL, -1 or NaN and sets dl_error(). Checkpoint and
       weight files are checked whole before anything changes; a failed load leaves the gan or
       network as it was. Nothing here prints, exits or aborts.

   THREADS
       As dl_nn.h: one gan (and its models) on one thread at a time; different gans on
       different threads are fine.

   GPU (a DL_CUDA build with dl_cuda.cu, README "GPU")
       dl_gan_move / dl_cyclegan_move put the models, the optimizers' state and G's averages on
       the GPU (build the models first); the steps then take host batches (or batches already
       on the GPU) and copy them over. Everything random is drawn on the host from the same
       generators as on the CPU and copied (noise, instance noise, the penalty's e, the image
       pools' coins), so a GPU run makes the CPU run's numbers up to float rounding; the
       losses, history, checkpoints (the same bytes as the CPU run's at the same state), loads,
       the averages and pictures work as on the CPU. The image pools keep their images on the
       host (a query returns them on its input's device). dl_image_grid, dl_inception_score
       and dl_frechet_distance read GPU tensors back to the host first (they compute on the
       host). WGAN-GP's penalty reads D's input gradients back to the host (its norms in double
       as on the CPU): two copies a D step.

   NOT HERE (yet)
       Conditional GANs (labels as inputs), spectral normalization, progressive growing,
       mixed-precision training, Inception-v3 itself (the quality numbers use your classifier).

   REVISION HISTORY
       0.2.0  first version: GAN steps and losses, G's weight average, checkpoints, pictures,
              quality numbers, CycleGAN's parts, style transfer on VGG19

   LICENSE: MIT, see the end of the file.
*/
#ifndef DL_GAN_H
#define DL_GAN_H

#ifndef DL_NN_H   /* the prerequisites, from this file's folder, unless already included */
#include "dl_nn.h"
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ==== GAN TRAINING ==========================================================================
   A GAN is two models: G maps noise z [B, latent_dim] (drawn from N(0, 1) by a seeded generator)
   to samples; D maps a sample to one score per sample, [B, 1] or [B] (logits for the BCE loss:
   D ends without a sigmoid). The lesson's Keras recipe (a compiled D, and a combined model
   "G then frozen D" trained with dl_train_on_batch) needs only dl_nn.h: dl_model_as_layer
   (examples/gan_mnist.c). dl_gan is the loop people write themselves, as one call per batch.

   Losses (s = D's output, r = the real label: 1, or 1 - label_smoothing for real samples):
     DL_GAN_LOSS_BCE     D: bce(s_real, r) + bce(s_fake, 0)        G: bce(s_fake, 1)
                         (bce from logits, mean over the batch; G's is the non-saturating loss of
                         Goodfellow et al. 2014, as the PyTorch and TensorFlow DCGAN tutorials)
     DL_GAN_LOSS_LSGAN   D: (mse(s_real, r) + mse(s_fake, 0)) / 2  G: mse(s_fake, 1)
                         (Mao et al. 2017 with a-b-c = 0-1-1, as CycleGAN's code)
     DL_GAN_LOSS_WGAN_GP D: mean(s_fake) - mean(s_real) + gp_weight * mean_i (|grad_x D(x_i)| - 1)^2
                         G: -mean(s_fake)     (Gulrajani et al. 2017; x_i = e x_real + (1 - e) x_fake,
                         e ~ U[0, 1) per sample)
   The penalty's gradient with respect to D's weights is a derivative of a derivative. It is
   computed without second-order autograd, from the identity
       grad_w |grad_x D(x)| = d/dh grad_w D(x + h u) at h = 0,   u = grad_x D / |grad_x D| (fixed)
   by a central difference with h = DL_GAN_GP_STEP: two more forward/backward passes of D. For a
   D made of linear, convolution and piecewise-linear activation layers (the critics of the
   paper), grad_w D is affine in x between activation kinks, so the difference is exact up to
   rounding; otherwise its error is O(h^2). tests/test_gan.c checks it against PyTorch's
   autograd.grad(create_graph=True). The penalty passes run D in inference mode (no dropout);
   WGAN-GP critics use neither dropout nor batch normalization (the paper, section 4).
   One-sided label smoothing (Salimans et al. 2016) and instance noise (Gaussian noise of std
   instance_noise added to every input of D, real and fake; Sonderby et al. 2017) are options. */
typedef enum dl_gan_loss { DL_GAN_LOSS_BCE = 0, DL_GAN_LOSS_LSGAN, DL_GAN_LOSS_WGAN_GP } dl_gan_loss;
#define DL_GAN_GP_STEP 1e-2f

/* Zero-init gives the defaults; latent_dim must be set. */
typedef struct dl_gan_opts {
    dl_gan_loss loss;        /* 0: DL_GAN_LOSS_BCE */
    int latent_dim;          /* z [B, latent_dim]; required (> 0) */
    float label_smoothing;   /* real label 1 - label_smoothing in D's loss (0.1 is common); 0: none */
    float instance_noise;    /* std of the noise added to D's inputs; 0: none */
    float gp_weight;         /* WGAN-GP's lambda; 0 means 10 (the paper's) */
    int n_critic;            /* dl_gan_train_step: D steps per G step; 0 means 1 (WGAN-GP: 5) */
    uint64_t seed;           /* the generator of z, instance noise and the penalty's e */
    float ema_decay;         /* > 0: also keep an exponential moving average of G's weights
                                (below); 0: none. 0.999 is common */
} dl_gan_opts;

/* One step's numbers. d_real, d_fake: the mean of D's output on the real and the fake batch
   (for BCE the mean probability sigmoid(s), the "D(x)" and "D(G(z))" of the PyTorch tutorial). */
typedef struct dl_gan_stats {
    long step;                    /* D steps so far, this one included */
    double d_loss, g_loss;        /* g_loss NaN when the step trained only D */
    double d_real, d_fake;
    double gp;                    /* the penalty term (WGAN-GP), else 0 */
} dl_gan_stats;

typedef struct dl_gan dl_gan;
/* g and d are borrowed (they must outlive the gan); g_opt and d_opt are taken over, also on
   failure (fresh optimizers: the gan adds the models' trainable weights on the first step).
   Owned: dl_gan_free. NULL + dl_error() on bad options. */
DLDEF dl_gan *dl_gan_new(dl_model *g, dl_model *d, dl_optim *g_opt, dl_optim *d_opt, const dl_gan_opts *opts);
DLDEF void dl_gan_free(dl_gan *gan);   /* the optimizers and history; NULL is fine */
/* Moves the gan to device (DL_DEVICE_CUDA in a DL_CUDA build with dl_cuda.cu; DL_DEVICE_CPU
   back): both models (dl_model_move: build them first), both optimizers' state (dl_optim_move)
   and G's averages, in place. The noise generator, history and settings stay on the host. Then
   dl_gan_train_step and the other steps take host batches (copied over each step, as
   dl_train_on_batch) and dl_gan_noise returns noise on G's device. 0, or -1 + dl_error() with
   nothing moved: NULL gan, an unbuilt model, no GPU, a build without DL_CUDA (where only
   DL_DEVICE_CPU works), an unknown device. */
DLDEF int dl_gan_move(dl_gan *gan, dl_device device);
/* n noise vectors [n, latent_dim] from the gan's generator (an arena tensor on G's device:
   drawn on the host, then copied, so a GPU gan draws the CPU gan's noise). */
DLDEF dl_tensor *dl_gan_noise(dl_gan *gan, int n);
/* One training iteration on a batch of real samples (an arena tensor; reset the arena before
   making each batch, as for dl_train_on_batch): G makes as many fakes; one D step; then, every
   n_critic-th call, one G step through the updated D (PyTorch's DCGAN order). 0 on success, -1 +
   dl_error(); *stats (may be NULL) gets the numbers, also recorded in the history. */
DLDEF int dl_gan_train_step(dl_gan *gan, dl_tensor *real, dl_gan_stats *stats);
/* The two halves alone: a D step on real (G's fakes made inside), a G step on n fakes. */
DLDEF int dl_gan_d_step(dl_gan *gan, dl_tensor *real, dl_gan_stats *stats);
DLDEF int dl_gan_g_step(dl_gan *gan, int n, dl_gan_stats *stats);
/* The losses alone, on D's outputs (arena scalars with gradient). real_label: 1 without
   smoothing. The WGAN-GP penalty is not part of dl_gan_d_loss (it needs D itself). */
DLDEF dl_tensor *dl_gan_d_loss(dl_gan_loss loss, dl_tensor *d_real, dl_tensor *d_fake, float real_label);
DLDEF dl_tensor *dl_gan_g_loss(dl_gan_loss loss, dl_tensor *d_fake);
/* WGAN-GP's penalty at the points x_hat [B, ...] (no gradient needed on x_hat): adds to the
   gradients of D's trainable weights the gradient of weight * mean_i (|grad_x D(x_hat_i)| - 1)^2
   (the method above; D runs in inference mode) and returns that penalty; NaN + dl_error(). For
   your own loop: call it between dl_backward of the rest of D's loss and the optimizer step. */
DLDEF double dl_gan_gradient_penalty(dl_model *d, const dl_tensor *x_hat, float weight);
/* The average of G's weights (Yazici et al., "The Unusual Effectiveness of Averaging in GAN
   Training", ICLR 2019; StyleGAN's and BigGAN's G_ema): with opts.ema_decay > 0, after the t-th G
   step every weight w of G (batch-norm statistics too) updates its average
       avg = d avg + (1 - d) w,   d = min(ema_decay, (1 + t) / (10 + t))
   (avg starts as w; d's ramp is tf.train.ExponentialMovingAverage's num_updates rule, so the
   first steps do not drag in the random initial weights). The average often draws better
   samples than the last weights. dl_gan_ema_swap exchanges G's weights with their averages in
   place: call it, sample from G, call it again to go back. While swapped, the training steps and
   dl_gan_save refuse. 0, or -1 + dl_error() (no ema_decay, or no G step yet). */
DLDEF int dl_gan_ema_swap(dl_gan *gan);
DLDEF int dl_gan_ema_swapped(const dl_gan *gan);   /* 1 while G holds the averages, else 0 */
/* History: one row per dl_gan_train_step / d_step: step, d_loss, g_loss, d_real, d_fake. */
DLDEF int dl_gan_history_len(const dl_gan *gan);
DLDEF const dl_gan_stats *dl_gan_history(const dl_gan *gan);   /* borrowed; valid until the next step */
DLDEF long dl_gan_steps(const dl_gan *gan);
/* Whole-run checkpoint: both models' weights (statistics included) and layer generators, both
   optimizers, the step counter, the noise generator, the history and G's averages (ema_decay),
   in one safetensors file (written atomically). dl_gan_load restores them into a gan built the
   same way (same layers, names and shapes, same ema_decay): everything is checked first, and on failure nothing changes. A run saved
   and resumed ends with the same bits as one that never stopped. 0 on success. */
#ifndef DL_NO_STDIO
DLDEF int dl_gan_save(dl_gan *gan, const char *path);
DLDEF int dl_gan_load(dl_gan *gan, const char *path);
#endif

/* ==== PICTURES ==============================================================================
   People look at GANs: a grid of samples and the curves of the losses, as pictures, without
   Python. The pixels are made here (always available); PNG files need stb_image_write.h
   included before the dl headers (dl_png_save, dl_tensor.h), which defines DL_HAVE_PNG. */

/* images f32 [N, C, H, W] (C 1 or 3; any strides) as one picture: cols images per row (0: the
   smallest square, ceil(sqrt(N))), `pad` pixels of gray between them; values mapped from
   [lo, hi] to [0, 255] and clamped (lo = -1, hi = 1 for a tanh generator; 0, 1 for x / 255).
   Returns the pixels, *w x *h x C bytes (owned: dl_free), or NULL + dl_error(). Images on the
   GPU are read back to the host first. */
DLDEF unsigned char *dl_image_grid(const dl_tensor *images, int cols, int pad, float lo, float hi, int *w, int *h);

/* One curve of a line chart: n points (x[i], y[i]); x NULL means x = i. Non-finite points are
   skipped. More points than pixel columns are averaged per column (a smoothed curve). */
typedef struct dl_plot_series {
    const char *name;           /* in the legend (ASCII; drawn in capitals) */
    const double *x, *y;
    int n;
    unsigned char rgb[3];       /* 0, 0, 0 means the next color of a built-in palette */
} dl_plot_series;
/* Draws a chart of the series (axes, ticks with numbers, legend, title) into the rectangle at
   (x0, y0) of size cw x ch of an RGB canvas of width x height pixels. 0, or -1 + dl_error(). */
DLDEF int dl_plot_draw(unsigned char *rgb, int width, int height, int x0, int y0, int cw, int ch,
                       const char *title, int n_series, const dl_plot_series *series);

/* The gan's history as a picture of width x height (0, 0: 640 x 480): the losses (D, G) above,
   D's mean outputs on real and fake batches ("D(x)", "D(G(z))") below, against the step.
   Owned RGB pixels (dl_free), or NULL + dl_error(). */
DLDEF unsigned char *dl_gan_plot(const dl_gan *gan, int width, int height);

#ifdef DL_HAVE_PNG
/* dl_image_grid as a PNG file. 0, or -1 + dl_error(). */
DLDEF int dl_image_grid_save(const dl_tensor *images, const char *path, int cols, float lo, float hi);
/* dl_gan_plot as a PNG file. 0, or -1 + dl_error(). */
DLDEF int dl_gan_plot_save(const dl_gan *gan, const char *path, int width, int height);
#endif

/* ==== QUALITY ===============================================================================
   How good generated images are, measured by a classifier (examples/gan_eval.c trains one on
   Fashion-MNIST): its class probabilities give the Inception score, its penultimate features
   the Frechet distance to the real images. Both computed in double precision, on the host:
   tensors on the GPU are copied to the host first (host tensors are read in place). */

/* Inception score (Salimans et al. 2016): exp(mean_i KL(p_i || p)), p = mean_i p_i, of class
   probabilities probs f32 [N, C] (rows of a softmax). From 1 (every sample the same
   distribution) to C (confident, all classes equally often). NaN + dl_error() on bad input. */
DLDEF double dl_inception_score(const dl_tensor *probs);
/* Frechet distance (Heusel et al. 2017, "FID" with Inception features) between Gaussians fitted
   to two feature sets a f32 [N, D] and b f32 [M, D] (N, M >= 2; D <= 2048):
       |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))
   with unbiased covariances (as numpy.cov in pytorch-fid); tr (S_a S_b)^(1/2) is the sum of
   the square roots of the eigenvalues of S_a^(1/2) S_b S_a^(1/2) (symmetric, by Jacobi
   rotations; O(D^3)). NaN + dl_error() on bad input. */
DLDEF double dl_frechet_distance(const dl_tensor *a, const dl_tensor *b);

/* ==== CYCLEGAN ==============================================================================
   Unpaired image-to-image translation (Zhu, Park, Isola, Efros, "Unpaired Image-to-Image
   Translation using Cycle-Consistent Adversarial Networks", ICCV 2017): two generators,
   G_AB: A -> B and G_BA: B -> A, and two discriminators, D_A (real A images against G_BA's) and
   D_B (real B against G_AB's), trained so that each translation fools its discriminator and the
   round trips A -> B -> A and B -> A -> B give the input back. Everything here follows the
   authors' code, github.com/junyanz/pytorch-CycleGAN-and-pix2pix (models/cycle_gan_model.py,
   models/networks.py, util/image_pool.py); their G_A is our G_AB, G_B is G_BA, and their D_A,
   which judges G_A's outputs (domain B), is our D_B (their D_B is our D_A).

   One dl_cyclegan_train_step on a batch a of A and b of B, as optimize_parameters():
     fake_b = G_AB(a), rec_a = G_BA(fake_b), fake_a = G_BA(b), rec_b = G_AB(fake_a)
     G step (D_A, D_B frozen), one optimizer for both generators:
       gan_ab   = mse(D_B(fake_b), 1)                       LSGAN (Mao et al. 2017, 0-1-1)
       gan_ba   = mse(D_A(fake_a), 1)
       cycle_a  = lambda_a |rec_a - a|_1                    (|.|_1: mean absolute difference)
       cycle_b  = lambda_b |rec_b - b|_1
       idt_ab   = lambda_b lambda_identity |G_AB(b) - b|_1  (their loss_idt_A)
       idt_ba   = lambda_a lambda_identity |G_BA(a) - a|_1  (their loss_idt_B)
       g_loss   = the sum of the six
     D step, one optimizer for both discriminators, on fakes from the image pools:
       d_b = (mse(D_B(b), 1) + mse(D_B(pool_b(fake_b)), 0)) / 2   (their loss_D_A, first)
       d_a = (mse(D_A(a), 1) + mse(D_A(pool_a(fake_a)), 0)) / 2   (their loss_D_B)
   with their defaults lambda_a = lambda_b = 10, lambda_identity = 0.5 (an identity weight of
   0.5 * 10 = 5), Adam(2e-4, beta1 0.5), pools of 50 images, the learning rate constant for
   n_epochs, then linearly to 0 over n_epochs_decay (dl_lr_cyclegan).

   The networks (dl_cyclegan_generator, dl_cyclegan_discriminator) are theirs (networks.py,
   defaults netG resnet_9blocks, netD basic, norm instance, init normal 0.02), in dl's layers:
       generator      c7s1-ngf, d(2 ngf), d(4 ngf), n_blocks x R(4 ngf), u(2 ngf), u(ngf), c7s1-C, tanh
                      (Johnson et al. 2016: c7s1-k = reflection pad 3, 7x7 conv, instance norm,
                      ReLU; d-k = 3x3 conv stride 2 with zero pad 1, instance norm, ReLU; R-k =
                      x + [reflection pad 1, 3x3 conv, instance norm, ReLU, reflection pad 1, 3x3
                      conv, instance norm](x); u-k = 3x3 transposed conv stride 2, instance norm,
                      ReLU; the last c7s1 has no norm and ends in tanh)
       discriminator  70x70 PatchGAN: C(ndf) without norm, C(2 ndf), C(4 ndf) (n_layers - 1
                      stride-2 convs after the first, widths doubling up to 8 ndf), then one at
                      stride 1, then a 1-channel conv: a map of logits, one per patch. Every conv
                      is 4x4 with zero pad 1, as their code (so odd sizes work: 7 -> 3);
                      LeakyReLU 0.2 after each but the last.
   Every conv has a bias (their use_bias is True with instance norm); instance norm uses
   epsilon 1e-5 (torch's). Two differences, on purpose:
     - u-k is dl_Conv2DTranspose(k 3, s 2, DL_PADDING_SAME), TensorFlow's "same": the full
       output cropped by 0 at the top/left and 1 at the bottom/right. Their ConvTranspose2d(
       padding=1, output_padding=1) crops 1 and 0: the same size, the picture shifted by one
       pixel. (Keras ports of CycleGAN use "same".)
     - Instance norm: their InstanceNorm2d has affine=False (no weights). dl_InstanceNormalization
       always has gamma and beta; the builders freeze them at 1 and 0 (the layer's trainable = 0,
       kept by dl_model_save) unless affine_norm is set, so the trainable parameter count is
       theirs: 11,378,179 for the 9-block 256x256 RGB generator, 2,764,737 for the 70x70
       PatchGAN (dl_model_num_params(m, 1); with the frozen gamma and beta, 10,496 and 1,792
       more in all).
   28x28 images (examples/cyclegan.c, Fashion-MNIST): the generator goes 28 -> 14 -> 7 and
   back; a PatchGAN with n_layers 2 gives a 5x5 map (28 -> 14 -> 7 -> 6 -> 5), with the default
   3 a 1x1 one (-> 3 -> 2 -> 1). */

/* The image history pool (Shrivastava et al. 2017), as util/image_pool.py: per image of a batch,
   while the pool holds fewer than size images, the image is stored and returned; once full,
   with probability 1/2 a stored image at a random index is returned and the new one stored in
   its place, else the new one is returned. D then sees some fakes of older generators. */
typedef struct dl_image_pool dl_image_pool;
typedef struct dl_image_pool_opts {
    int size;        /* images kept [50]; DL_ZERO: no pool (a query returns a copy of its input) */
    uint64_t seed;   /* the pool's generator (the coin and the index) */
} dl_image_pool_opts;
/* Yours: dl_image_pool_free. NULL + dl_error() for a negative size (other than DL_ZERO). */
DLDEF dl_image_pool *dl_image_pool_new(const dl_image_pool_opts *opts);
DLDEF void dl_image_pool_free(dl_image_pool *pool);   /* NULL is fine */
/* images f32 [B, ...] (any strides; no gradient is kept) -> the images to give D, [B, ...]
   (arena, without gradient, on the images' device). Every image must have the shape of the
   first ever stored. The pool keeps its images on the host (GPU images are read back, the
   result copied over). NULL + dl_error(). */
DLDEF dl_tensor *dl_image_pool_query(dl_image_pool *pool, const dl_tensor *images);
DLDEF int dl_image_pool_num_images(const dl_image_pool *pool);   /* stored now; 0 for NULL */
DLDEF int dl_image_pool_size(const dl_image_pool *pool);         /* capacity (0: no pool) */

/* CycleGAN's learning rate (their networks.py get_scheduler, policy "linear"):
       base * (1 - max(0, t + 1 - n_epochs) / (n_epochs_decay + 1))
   for the 0-based epoch t (their LambdaLR's epoch with epoch_count 1): base for t < n_epochs,
   then falling by base / (n_epochs_decay + 1) an epoch, base / (n_epochs_decay + 1) in the last
   epoch t = n_epochs + n_epochs_decay - 1, and 0 after it (clamped: never negative). A pure
   function of t, like dl_optim.h's dl_lr_*: t may count steps as well (n_epochs, n_epochs_decay
   then count steps). For any optimizer: dl_optim_set_lr(opt, dl_lr_cyclegan(2e-4, 100, 100, t));
   a dl_cyclegan's: dl_cyclegan_set_lr. n_epochs and n_epochs_decay >= 0; else NaN + dl_error(). */
DLDEF double dl_lr_cyclegan(double base, long n_epochs, long n_epochs_decay, long t);

/* The networks' settings; zero-init gives their defaults. */
typedef struct dl_cyclegan_net_opts {
    int width;           /* ngf (generator) or ndf (discriminator) [64] */
    int n_blocks;        /* generator: residual blocks [9] (theirs for 256x256; 6 for 128x128) */
    int n_layers;        /* discriminator: stride-2 convs [3] (the 70x70 PatchGAN) */
    int affine_norm;     /* 1: the instance norms' gamma and beta train (torch's affine=True);
                            [0: frozen at 1 and 0, their affine=False] */
    float init_std;      /* conv kernels ~ N(0, init_std^2), biases 0, drawn from dl_nn_seed's
                            generator [0.02, their init_weights "normal"]; DL_ZERO: keep dl's
                            Glorot-uniform kernels */
} dl_cyclegan_net_opts;
/* The ResNet generator for images [N, channels, height, width] -> the same shape, in [-1, 1].
   height and width must be divisible by 4 (two stride-2 steps there and back) and at least 8.
   Yours: dl_model_free (a functional model); NULL + dl_error(). */
DLDEF dl_model *dl_cyclegan_generator(int channels, int height, int width, const dl_cyclegan_net_opts *opts);
/* The PatchGAN discriminator for images [N, channels, height, width] -> logits [N, 1, h, w]
   (each side s -> floor(s / 2) per stride-2 conv, then s - 1 twice; at least 1x1, else an
   error). Yours: dl_model_free; NULL + dl_error(). */
DLDEF dl_model *dl_cyclegan_discriminator(int channels, int height, int width, const dl_cyclegan_net_opts *opts);

/* The trainer's settings; zero-init gives their defaults. */
typedef struct dl_cyclegan_opts {
    float lambda_a;          /* weight of the cycle A -> B -> A [10]; DL_ZERO for none */
    float lambda_b;          /* weight of the cycle B -> A -> B [10]; DL_ZERO for none */
    float lambda_identity;   /* identity weight, relative to lambda_a / lambda_b [0.5]; DL_ZERO: no
                                identity terms (then G_AB(b), G_BA(a) are not computed; A and B
                                images may then differ in shape, e.g. in channels) */
    int pool_size;           /* images in each image pool [50]; DL_ZERO: no pools */
    uint64_t seed;           /* the pools' generators (pool_a's is seeded with seed, pool_b's with seed + 1) */
} dl_cyclegan_opts;

/* One step's numbers (the formulas above; the weighted terms). */
typedef struct dl_cyclegan_stats {
    long step;                   /* steps so far, this one included */
    double g_loss;               /* gan_ab + gan_ba + cycle_a + cycle_b + idt_ab + idt_ba */
    double gan_ab, gan_ba;       /* G_AB's and G_BA's LSGAN losses */
    double cycle_a, cycle_b;
    double idt_ab, idt_ba;       /* 0 without identity terms */
    double d_a, d_b;             /* the discriminators' (halved) losses */
} dl_cyclegan_stats;

typedef struct dl_cyclegan dl_cyclegan;
/* g_ab, g_ba, d_a, d_b: four different models, borrowed (free them after the cyclegan). g_opt
   (both generators' weights) and d_opt (both discriminators'): fresh, different optimizers,
   taken over, also on failure; the trainer adds the weights on the first step (their order:
   G_AB's, then G_BA's; D_A's, then D_B's). Yours: dl_cyclegan_free; NULL + dl_error(). */
DLDEF dl_cyclegan *dl_cyclegan_new(dl_model *g_ab, dl_model *g_ba, dl_model *d_a, dl_model *d_b, dl_optim *g_opt,
                                   dl_optim *d_opt, const dl_cyclegan_opts *opts);
DLDEF void dl_cyclegan_free(dl_cyclegan *cg);   /* the optimizers, pools and history; NULL is fine */
/* Moves the four models (built first) and both optimizers' state to device, as dl_gan_move;
   the pools stay on the host. 0, or -1 + dl_error() with nothing moved. */
DLDEF int dl_cyclegan_move(dl_cyclegan *cg, dl_device device);
/* One step (above) on a batch of A images a and one of B images b (contiguous f32 [B, C, H, W],
   arena tensors: reset the arena before making each batch; the batch sizes may differ; host
   batches are copied to the models' device).
   G_AB(a) must have b's per-image shape and G_BA(b) a's. 0, or -1 + dl_error(); *stats (may
   be NULL) gets the numbers, also recorded in the history. */
DLDEF int dl_cyclegan_train_step(dl_cyclegan *cg, dl_tensor *a, dl_tensor *b, dl_cyclegan_stats *stats);
/* Both optimizers' learning rate (e.g. dl_lr_cyclegan of the epoch). 0, or -1 + dl_error(). */
DLDEF int dl_cyclegan_set_lr(dl_cyclegan *cg, double lr);
DLDEF long dl_cyclegan_steps(const dl_cyclegan *cg);
DLDEF int dl_cyclegan_history_len(const dl_cyclegan *cg);
DLDEF const dl_cyclegan_stats *dl_cyclegan_history(const dl_cyclegan *cg);   /* borrowed; valid until the next step */
/* The pools: 0 pool_a (G_BA's fakes, for D_A), 1 pool_b (G_AB's, for D_B); borrowed. */
DLDEF dl_image_pool *dl_cyclegan_pool(const dl_cyclegan *cg, int which);
/* The history as a picture of width x height (0, 0: 640 x 480): the adversarial losses (G_AB,
   G_BA, D_A, D_B) above, the cycle and identity terms below, against the step. Owned RGB
   pixels (dl_free), or NULL + dl_error(). */
DLDEF unsigned char *dl_cyclegan_plot(const dl_cyclegan *cg, int width, int height);
#ifdef DL_HAVE_PNG
DLDEF int dl_cyclegan_plot_save(const dl_cyclegan *cg, const char *path, int width, int height);   /* 0, or -1 + dl_error() */
#endif
/* Whole-run checkpoint, as dl_gan_save: the four models' weights and layer generators, both
   optimizers, the step counter, both pools (their images and generators) and the history, in
   one safetensors file (written atomically). dl_cyclegan_load restores them into a cyclegan
   built the same way (same layers, names and shapes; same pool size); everything is checked
   first, and on failure nothing changes. A run saved and resumed ends with the same bits as
   one that never stopped. The learning rate travels with the optimizers. 0 on success. */
#ifndef DL_NO_STDIO
DLDEF int dl_cyclegan_save(dl_cyclegan *cg, const char *path);
DLDEF int dl_cyclegan_load(dl_cyclegan *cg, const char *path);
#endif

/* ==== STYLE TRANSFER ========================================================================
   Neural style transfer (Gatys, Ecker, Bethge, "Image Style Transfer Using Convolutional Neural
   Networks", CVPR 2016) as TensorFlow's tutorial writes it
   (tensorflow.org/tutorials/generative/style_transfer): the image itself is the trained tensor;
   its VGG19 features at block5_conv2 should match a content photo's, and the Gram matrices of
   its features at block1_conv1 ... block5_conv1 a painting's.

   VGG19 here is its 16 convolutions (3x3, padding 1, each followed by a ReLU) and the 2x2 max
   pools between blocks: torchvision's vgg19().features. Layer i (0..15) is the ReLU output of
   the i-th convolution; it has two names, Keras' ("block5_conv2") and the paper's ("relu5_2").

       dl_vgg19 *net = dl_vgg19_load("vgg19.safetensors");   // tools/vgg19_to_safetensors.py
       if (!net) net = dl_vgg19_new(NULL, &rng);             // random weights (see below)
       dl_style_transfer *st = dl_style_transfer_new(net, content, style, NULL);
       for (int i = 0; i < 1000; i++) dl_style_transfer_step(st, &losses);
       dl_tensor *picture = dl_style_transfer_image(st);     // [1, 3, H, W] in [0, 1]

   Weights files: safetensors with torchvision's state-dict names features.{0,2,5,7,10,12,14,
   16,19,21,23,25,28,30,32,34}.weight [out, in, 3, 3] and .bias [out], f32 (other tensors, such
   as classifier.*, are ignored), and an optional __metadata__ "preprocess": "torch" (the
   default) or "caffe"; see dl_vgg_preprocess. Nothing is downloaded: the weights are written
   once by tools/vgg19_to_safetensors.py on a machine that has torchvision's or Keras' VGG19.
   A width divisor k gives the same network with 64/k ... 512/k channels (k a divisor of 64):
   the loader takes k from features.0.weight and checks every other shape against it.

   Random weights: without a weights file dl_vgg19_new draws He-normal weights (std
   sqrt(2 / (9 in)), zero biases), which keep the activations' scale from layer to layer, so
   that every layer's Gram matrix carries information. Random convolutional features are known
   to synthesize textures (Ustyuzhaninov, Brendel, Gatys, Bethge, "What does it take to
   generate natural textures?", ICLR 2017; He, Wang, Hopcroft, "A Powerful Generative Model
   Using Random Weights for the Deep Image Representation", NIPS 2016); trained ImageNet
   weights give the familiar look of style transfer.

   Images are f32 [N, 3, H, W], RGB in [0, 1]; each function preprocesses them as the weights'
   source expects. The features of the deepest requested layer need H and W >= 16 (4 pools).

   Losses, as the TF tutorial (its defaults are this section's defaults; they suit Keras'
   weights, fed 0..255 pixels: torchvision's and random weights see inputs about 58 times
   smaller, which scales the style term by ~58^4 and the content term by ~58^2, so they need
   other weights; examples/style_transfer.c has values for random weights):
       style   = style_weight / L_s * sum_l mean((gram(F_l) - gram(S_l))^2), gram as dl_gram
                 (F F^T / (H W), the tutorial's normalization)
       content = content_weight / L_c * sum_l mean((F_l - C_l)^2)
       tv      = tv_weight * sum |x[i+1, j] - x[i, j]| + |x[i, j+1] - x[i, j]|  (tf.image.total_variation)
   Errors: NULL / -1 and dl_error(), as everywhere. Ownership is written at each function. */

#define DL_VGG19_NUM_LAYERS 16   /* conv+ReLU layers; features.{0,2,...,34} */

/* How images in [0, 1] are fed to the network. */
typedef enum dl_vgg_preprocess {
    DL_VGG_PREPROCESS_TORCH = 0,  /* (x - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225] per RGB
                                     channel: torchvision's weights */
    DL_VGG_PREPROCESS_CAFFE = 1   /* 255 x - [123.68, 116.779, 103.939] per RGB channel: Keras'
                                     preprocess_input ("caffe"); the converter flips conv1_1's
                                     input channels from Keras' BGR to RGB */
} dl_vgg_preprocess;

/* VGG19's convolutions; the tensors are owned by the struct (dl_vgg19_free). Read-only to the
   caller: none requires a gradient, so the network stays fixed while an image is trained. */
typedef struct dl_vgg19 {
    int width_div;                          /* channels are VGG19's / width_div */
    dl_vgg_preprocess preprocess;
    int random;                             /* 1: made by dl_vgg19_new, 0: loaded */
    dl_tensor *w[DL_VGG19_NUM_LAYERS];      /* [out, in, 3, 3] */
    dl_tensor *b[DL_VGG19_NUM_LAYERS];      /* [out] */
} dl_vgg19;

typedef struct dl_vgg_opts {
    int width_div;                  /* channels 64/k ... 512/k; k must divide 64 [1] */
    dl_vgg_preprocess preprocess;   /* [DL_VGG_PREPROCESS_TORCH] */
} dl_vgg_opts;

/* A VGG19 with random He-normal weights and zero biases, drawn from rng in the order
   features.0, 2, ..., 34. Yours: dl_vgg19_free. */
DLDEF dl_vgg19 *dl_vgg19_new(const dl_vgg_opts *opts, dl_rng *rng);
#ifndef DL_NO_STDIO
/* Reads a weights file (see above); every name, dtype and shape is checked. Yours:
   dl_vgg19_free; NULL + dl_error() for a missing, truncated or wrong file. */
DLDEF dl_vgg19 *dl_vgg19_load(const char *path);
#endif
DLDEF dl_vgg19 *dl_vgg19_parse(const void *bytes, size_t size);  /* the same from memory; yours */
DLDEF void dl_vgg19_free(dl_vgg19 *net);                         /* NULL is fine */

/* 0..15 for "block5_conv2" (Keras) or "relu5_2" (the paper); -1 + dl_error() if unknown. */
DLDEF int dl_vgg19_find_layer(const char *name);
DLDEF const char *dl_vgg19_layer_name(int layer);  /* Keras' name of layer 0..15; NULL if out of range */

/* image [N, 3, H, W] in [0, 1] -> the network's input (see dl_vgg_preprocess); arena. */
DLDEF dl_tensor *dl_vgg19_preprocess(const dl_vgg19 *net, dl_tensor *image);
/* One forward pass of image ([N, 3, H, W] in [0, 1]; preprocessed here) up to the deepest of
   the n requested layers; out[i] = the ReLU output of layers[i] (arena; in any order, repeats
   allowed). Differentiable with respect to image. 0, or -1 + dl_error() (out all NULL). */
DLDEF int dl_vgg19_features(const dl_vgg19 *net, dl_tensor *image, int n, const int *layers,
                            dl_tensor **out);

/* sum_l mean((gram(features[l]) - target_grams[l])^2) / n: features[l] [N, C, H, W] and
   target_grams[l] [N, C, C] (from dl_gram of the style image's features). 0-d, arena. */
DLDEF dl_tensor *dl_style_loss(int n, dl_tensor *const *features, dl_tensor *const *target_grams);
/* sum_l mean((features[l] - targets[l])^2) / n; 0-d, arena. */
DLDEF dl_tensor *dl_content_loss(int n, dl_tensor *const *features, dl_tensor *const *targets);
/* tf.image.total_variation summed over the batch: the sum of |differences| of vertically and
   of horizontally neighbouring pixels of x [N, C, H, W] (H, W >= 1). 0-d, arena. */
DLDEF dl_tensor *dl_total_variation(dl_tensor *x);

typedef enum dl_style_optimizer {
    DL_STYLE_OPTIMIZER_ADAM = 0,   /* the TF tutorial's: one update per step */
    DL_STYLE_OPTIMIZER_LBFGS = 1   /* the paper's: one dl_lbfgs_step (up to lbfgs_iters updates) per step */
} dl_style_optimizer;

/* Every field 0 = the default in brackets (the TF tutorial's); DL_ZERO asks for a real 0. */
typedef struct dl_style_transfer_opts {
    double style_weight;          /* [1e-2]; DL_ZERO for none */
    double content_weight;        /* [1e4]; DL_ZERO for none */
    double tv_weight;             /* [30]; DL_ZERO for none */
    const char *style_layers;     /* comma-separated names ["block1_conv1,block2_conv1,block3_conv1,block4_conv1,block5_conv1"] */
    const char *content_layers;   /* ["block5_conv2"] */
    dl_style_optimizer optimizer; /* [DL_STYLE_OPTIMIZER_ADAM] */
    double lr;                    /* Adam [0.02] (the tutorial's), L-BFGS [1]; DL_ZERO for 0 */
    double beta1;                 /* Adam [0.99]; DL_ZERO for 0 */
    double eps;                   /* Adam [0.1]; DL_ZERO for 0. PyTorch's eps, outside the root (Keras puts it
                                     before the bias correction: the same where it does not dominate) */
    int lbfgs_iters;              /* L-BFGS updates per step (its max_iter) [20] */
    dl_line_search line_search;   /* L-BFGS [DL_LINE_SEARCH_NONE, as PyTorch's style transfer
                                     tutorial; DL_LINE_SEARCH_STRONG_WOLFE is steadier] */
} dl_style_transfer_opts;

typedef struct dl_style_losses {
    float style, content, tv, total;   /* weighted, as in the formulas above */
} dl_style_losses;

typedef struct dl_style_transfer dl_style_transfer;
/* net: borrowed (keep it alive). content, style: [1, 3, H, W] in [0, 1] (sizes may differ),
   copied. The trained image starts as a copy of content. Yours: dl_style_transfer_free. */
DLDEF dl_style_transfer *dl_style_transfer_new(dl_vgg19 *net, dl_tensor *content, dl_tensor *style,
                                               const dl_style_transfer_opts *opts);
/* One optimizer step on the image, which is then clamped to [0, 1]. losses (may be NULL): the
   losses at the image before the step. Uses its own arena (the current one is left alone).
   0, or -1 + dl_error(). */
DLDEF int dl_style_transfer_step(dl_style_transfer *st, dl_style_losses *losses);
/* The losses at the image as it is now (no step). 0, or -1 + dl_error(). */
DLDEF int dl_style_transfer_losses(dl_style_transfer *st, dl_style_losses *losses);
DLDEF dl_tensor *dl_style_transfer_image(const dl_style_transfer *st);  /* [1, 3, H, W]; borrowed */
DLDEF void dl_style_transfer_free(dl_style_transfer *st);              /* NULL is fine */

/* ==== END OF STYLE TRANSFER declarations ==== */

#ifdef __cplusplus
}
#endif
#endif /* DL_GAN_H */

#if defined(DL_IMPLEMENTATION) && !defined(DL_IMPLEMENTATION_ELSEWHERE) && !defined(DL__NN_IMPLEMENTED)
#include "dl_nn.h"   /* its implementation too, also when it was first included plainly */
#endif

#if defined(DL_IMPLEMENTATION) && !defined(DL__GAN_IMPLEMENTED) && !defined(DL_IMPLEMENTATION_ELSEWHERE)
#define DL__GAN_IMPLEMENTED

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifndef DL_NO_STDIO
#include <stdio.h>
#endif

/* ==== GAN TRAINING: implementation (tests: tests/test_gan.c) ================================ */

struct dl_gan {
    dl_model *g, *d;                 /* borrowed */
    dl_optim *g_opt, *d_opt;         /* owned */
    int g_bound, d_bound;            /* the optimizer holds the model's trainable weights */
    int n_dw;
    dl_tensor **dw;                  /* D's trainable weights (switched off during G's step) */
    dl_gan_opts o;                   /* with the defaults filled in */
    dl_rng rng;
    long step;                       /* D steps */
    int n_hist, cap_hist;
    dl_gan_stats *hist;
    long ema_t;                      /* G steps averaged (0: no averages yet) */
    int n_ema, ema_swapped;
    dl_tensor **ema;                 /* owned: one average per weight of G, in layer order */
};

#ifdef DL_CUDA
/* dl__cuda_gan_ema / dl__cuda_gan_swap: dl_tensor.h's private block declares them. */

/* x on device (an arena copy that carries gradients back, dl_to_device), or x itself. */
static dl_tensor *dl__gan_on(dl_tensor *x, dl_device device) {
    return x && x->device != device ? dl_to_device(x, device) : x;
}
#endif

/* t's values (f32), row-major, on the host: t's data for a contiguous CPU tensor, else (a GPU
   tensor) an arena copy. NULL + dl_error(). */
static const float *dl__gan_host_f32(const dl_tensor *t) {
#ifdef DL_CUDA
    if (t->device) {
        float *h = (float *)dl_arena_alloc(dl_arena_current(), (t->numel ? t->numel : 1) * sizeof(float));
        if (!h || dl_tensor_read(t, h) != 0) return NULL;
        return h;
    }
#endif
    return dl_f32(t);
}

/* dl_full with like's shape, on like's device. */
static dl_tensor *dl__gan_full_like(const dl_tensor *like, float value) {
    dl_tensor *t = dl_full(like->ndim, like->shape, value);
#ifdef DL_CUDA
    if (t && like->device) t = dl_to_device(t, like->device);
#endif
    return t;
}

DLDEF dl_gan *dl_gan_new(dl_model *g, dl_model *d, dl_optim *g_opt, dl_optim *d_opt, const dl_gan_opts *opts) {
    dl_gan *gan = NULL;
    dl_gan_opts o;
    const char *bad = NULL;
    memset(&o, 0, sizeof o);
    if (opts) o = *opts;
    if (!g || !d) bad = "NULL model";
    else if (!g_opt || !d_opt) bad = "NULL optimizer (did its constructor fail?)";
    else if (g_opt == d_opt) bad = "G and D need an optimizer each";
    else if (dl_optim_num_params(g_opt) || dl_optim_num_params(d_opt)) bad = "give fresh optimizers (the gan adds the weights)";
    else if ((int)o.loss < 0 || o.loss > DL_GAN_LOSS_WGAN_GP) bad = "unknown loss";
    else if (o.latent_dim <= 0) bad = "latent_dim must be > 0";
    else if (!(o.label_smoothing >= 0.0f && o.label_smoothing < 1.0f)) bad = "label_smoothing must be in [0, 1)";
    else if (!(o.instance_noise >= 0.0f) || !isfinite(o.instance_noise)) bad = "instance_noise must be finite and >= 0";
    else if (!(o.gp_weight >= 0.0f) || !isfinite(o.gp_weight)) bad = "gp_weight must be finite and >= 0";
    else if (o.n_critic < 0) bad = "n_critic must be >= 0";
    else if (!(o.ema_decay >= 0.0f && o.ema_decay < 1.0f)) bad = "ema_decay must be in [0, 1)";
    if (bad) {
        dl_set_error("dl_gan_new: %s", bad);
        if (g_opt != d_opt) dl_optim_free(d_opt);
        dl_optim_free(g_opt);
        return NULL;
    }
    if (o.gp_weight == 0.0f) o.gp_weight = 10.0f;
    if (o.n_critic == 0) o.n_critic = o.loss == DL_GAN_LOSS_WGAN_GP ? 5 : 1;
    if (!(gan = (dl_gan *)DL_MALLOC(sizeof *gan))) {
        dl_set_error("dl_gan_new: out of memory");
        dl_optim_free(g_opt);
        dl_optim_free(d_opt);
        return NULL;
    }
    memset(gan, 0, sizeof *gan);
    gan->g = g; gan->d = d; gan->g_opt = g_opt; gan->d_opt = d_opt; gan->o = o;
    dl_rng_seed(&gan->rng, o.seed);
    return gan;
}

/* ---- G's weight average (opts.ema_decay) ---- */
/* Every weight of m (statistics too). */
static int dl__gan_weight_count(const dl_model *m) {
    int i, n = 0;
    for (i = 0; i < dl_model_num_layers(m); i++) n += dl_model_layer(m, i)->n_params;
    return n;
}

static void dl__gan_ema_free(dl_gan *gan) {
    int i;
    for (i = 0; i < gan->n_ema; i++) dl_tensor_free(gan->ema[i]);
    DL_FREE(gan->ema);
    gan->ema = NULL;
    gan->n_ema = 0;
    gan->ema_t = 0;
}

/* G's i-th weight in layer order (every weight, statistics too); with name, its checkpoint
   name "g_ema/<layer>/<weight>" (name_size bytes). */
static dl_tensor *dl__gan_g_weight_named(const dl_gan *gan, int i, char *name, size_t name_size) {
    int li, n = dl_model_num_layers(gan->g);
    for (li = 0; li < n; li++) {
        const dl_layer *l = dl_model_layer(gan->g, li);
        if (i < l->n_params) {
            if (name) snprintf(name, name_size, "g_ema/%s/%s", l->name, l->param_names[i]);
            return l->params[i];
        }
        i -= l->n_params;
    }
    return NULL;
}
static dl_tensor *dl__gan_g_weight(const dl_gan *gan, int i) { return dl__gan_g_weight_named(gan, i, NULL, 0); }

/* The averages' tensors, as copies of G's weights (G built). 0, or -1 + dl_error(). */
static int dl__gan_ema_alloc(dl_gan *gan, const char *fn) {
    int n = dl__gan_weight_count(gan->g);
    if (gan->ema) return 0;
    if (!(gan->ema = (dl_tensor **)DL_MALLOC((size_t)(n > 0 ? n : 1) * sizeof *gan->ema))) goto oom;
    for (gan->n_ema = 0; gan->n_ema < n; gan->n_ema++) {
        const dl_tensor *w = dl__gan_g_weight(gan, gan->n_ema);
        if (!(gan->ema[gan->n_ema] = dl_tensor_new(w->dtype, w->ndim, w->shape))) goto oom;
#ifdef DL_CUDA
        if (w->device && dl_tensor_move(gan->ema[gan->n_ema], w->device) != 0) {
            char msg[400];
            snprintf(msg, sizeof msg, "%.380s", dl_error());
            dl_tensor_free(gan->ema[gan->n_ema]);
            dl__gan_ema_free(gan);
            dl_set_error("%s: the average of G's weights: %s", fn, msg);
            return -1;
        }
#endif
        dl_copy(gan->ema[gan->n_ema], w);
    }
    return 0;
oom:
    dl__gan_ema_free(gan);
    dl_set_error("%s: out of memory (the average of G's weights)", fn);
    return -1;
}

/* After a G step: avg = d avg + (1 - d) w, d = min(decay, (1 + t) / (10 + t)). f32 weights only
   (integer tensors, if any, are copied). */
static int dl__gan_ema_update(dl_gan *gan) {
    float d;
    int i;
    if (gan->o.ema_decay <= 0.0f) return 0;
    if (dl__gan_ema_alloc(gan, "dl_gan_train_step") != 0) return -1;
    gan->ema_t++;
    d = (1.0f + (float)gan->ema_t) / (10.0f + (float)gan->ema_t);
    if (d > gan->o.ema_decay) d = gan->o.ema_decay;
    for (i = 0; i < gan->n_ema; i++) {
        const dl_tensor *w = dl__gan_g_weight(gan, i);
        float *a = (float *)gan->ema[i]->data;
        const float *x = (const float *)w->data;
        size_t j;
        if (w->dtype != DL_DTYPE_F32 || !dl_is_contiguous(w)) { dl_copy(gan->ema[i], w); continue; }
#ifdef DL_CUDA
        if (w->device || gan->ema[i]->device) {
            if (w->device != gan->ema[i]->device) {   /* G moved by itself (dl_model_move): follow it */
                if (dl_tensor_move(gan->ema[i], w->device) != 0) return -1;
                a = (float *)gan->ema[i]->data;
                if (!w->device) { for (j = 0; j < w->numel; j++) a[j] = d * a[j] + (1.0f - d) * x[j]; continue; }
            }
            if (dl__cuda_gan_ema(a, x, w->numel, d, 1.0f - d) != 0) return -1;
            continue;
        }
#endif
        for (j = 0; j < w->numel; j++) a[j] = d * a[j] + (1.0f - d) * x[j];
    }
    return 0;
}

DLDEF int dl_gan_ema_swap(dl_gan *gan) {
    int i;
    if (!gan) { dl_set_error("dl_gan_ema_swap: NULL gan"); return -1; }
    if (gan->o.ema_decay <= 0.0f) { dl_set_error("dl_gan_ema_swap: this gan keeps no average (opts.ema_decay is 0)"); return -1; }
    if (gan->ema_t == 0) { dl_set_error("dl_gan_ema_swap: no G step yet, so no average"); return -1; }
#ifdef DL_CUDA
    for (i = 0; i < gan->n_ema; i++)   /* G moved by itself (dl_model_move): the averages follow */
        if (gan->ema[i]->device != dl__gan_g_weight(gan, i)->device &&
            dl_tensor_move(gan->ema[i], dl__gan_g_weight(gan, i)->device) != 0) {
            char msg[400];
            snprintf(msg, sizeof msg, "%.380s", dl_error());
            dl_set_error("dl_gan_ema_swap: %s", msg);
            return -1;
        }
#endif
    for (i = 0; i < gan->n_ema; i++) {
        dl_tensor *w = dl__gan_g_weight(gan, i);
        unsigned char *p = (unsigned char *)w->data, *q = (unsigned char *)gan->ema[i]->data;
        size_t j, bytes = w->numel * dl_dtype_size(w->dtype);
#ifdef DL_CUDA
        if (w->device) {
            if (dl__cuda_gan_swap(p, q, bytes) != 0) return -1;
            continue;
        }
#endif
        for (j = 0; j < bytes; j++) { unsigned char t = p[j]; p[j] = q[j]; q[j] = t; }
    }
    gan->ema_swapped = !gan->ema_swapped;
    return 0;
}

DLDEF int dl_gan_ema_swapped(const dl_gan *gan) { return gan ? gan->ema_swapped : 0; }

/* The training steps and dl_gan_save refuse while G holds the averages. */
static int dl__gan_check_unswapped(const dl_gan *gan, const char *fn) {
    if (gan->ema_swapped) { dl_set_error("%s: G holds its averaged weights (call dl_gan_ema_swap again first)", fn); return -1; }
    return 0;
}

DLDEF void dl_gan_free(dl_gan *gan) {
    if (!gan) return;
    dl_optim_free(gan->g_opt);
    dl_optim_free(gan->d_opt);
    DL_FREE(gan->dw);
    DL_FREE(gan->hist);
    dl__gan_ema_free(gan);
    DL_FREE(gan);
}

/* Moves n models, n_opt optimizers and n_t tensors to device, all or nothing: on a failure
   what moved goes back to where it was and the message is "fn: <the first failure>". */
static int dl__gan_move_all(const char *fn, dl_device device, int n, dl_model *const *m, int n_opt, dl_optim *const *opt, int n_t,
                            dl_tensor *const *t) {
#ifdef DL_CUDA
    dl_device from_m[4], from_o[2], from_t = n_t > 0 ? t[0]->device : DL_DEVICE_CPU;
    int i = 0, k = 0, j = 0, r = 0;
    char msg[400];
    for (i = 0; i < n && i < 4; i++) {
        from_m[i] = m[i]->device;
        if (dl_model_move(m[i], device) != 0) { r = -1; break; }
    }
    for (k = 0; r == 0 && k < n_opt && k < 2; k++) {
        from_o[k] = opt[k]->device;
        if (dl_optim_move(opt[k], device) != 0) { r = -1; break; }
    }
    for (j = 0; r == 0 && j < n_t; j++)
        if (dl_tensor_move(t[j], device) != 0) { r = -1; break; }
    if (r == 0) return 0;
    snprintf(msg, sizeof msg, "%.380s", dl_error());
    while (j-- > 0) dl_tensor_move(t[j], from_t);
    while (k-- > 0) dl_optim_move(opt[k], from_o[k]);
    while (i-- > 0) dl_model_move(m[i], from_m[i]);
    if (strncmp(msg, fn, strlen(fn)) == 0) dl_set_error("%s", msg);
    else dl_set_error("%s: %s", fn, msg);
    return -1;
#else
    (void)n; (void)m; (void)n_opt; (void)opt; (void)n_t; (void)t;
    if (device == DL_DEVICE_CPU) return 0;
    if (device != DL_DEVICE_CUDA) { dl_set_error("%s: unknown device %d", fn, (int)device); return -1; }
    {
        char msg[400];
        dl_cuda_init();   /* fails, and says why: no DL_CUDA in this build */
        snprintf(msg, sizeof msg, "%.380s", dl_error());
        dl_set_error("%s: %s", fn, msg);
        return -1;
    }
#endif
}

DLDEF int dl_gan_move(dl_gan *gan, dl_device device) {
    dl_model *m[2];
    dl_optim *o[2];
    if (!gan) { dl_set_error("dl_gan_move: NULL gan"); return -1; }
    m[0] = gan->g; m[1] = gan->d;
    o[0] = gan->g_opt; o[1] = gan->d_opt;
    return dl__gan_move_all("dl_gan_move", device, 2, m, 2, o, gan->n_ema, gan->ema);
}

DLDEF long dl_gan_steps(const dl_gan *gan) { return gan ? gan->step : 0; }
DLDEF int dl_gan_history_len(const dl_gan *gan) { return gan ? gan->n_hist : 0; }
DLDEF const dl_gan_stats *dl_gan_history(const dl_gan *gan) { return gan ? gan->hist : NULL; }

/* An arena tensor of n * per values drawn from N(0, std^2). */
static dl_tensor *dl__gan_normal(dl_rng *r, int ndim, const int *shape, float std) {
    dl_tensor *t = dl_tmp(DL_DTYPE_F32, ndim, shape);
    float *p = dl_f32(t);
    size_t i;
    if (!t) return NULL;
    for (i = 0; i < t->numel; i++) p[i] = std * dl_rng_normal(r);
    return t;
}

DLDEF dl_tensor *dl_gan_noise(dl_gan *gan, int n) {
    int shape[2];
    if (!gan || n <= 0) { dl_set_error("dl_gan_noise: %s", gan ? "n must be > 0" : "NULL gan"); return NULL; }
    shape[0] = n; shape[1] = gan->o.latent_dim;
#ifdef DL_CUDA
    return dl__gan_on(dl__gan_normal(&gan->rng, 2, shape, 1.0f), gan->g->device);   /* drawn on the host, copied */
#else
    return dl__gan_normal(&gan->rng, 2, shape, 1.0f);
#endif
}

/* The model's trainable weights into a fresh optimizer, once the model is built. */
static int dl__gan_bind(dl_optim *opt, dl_model *m, int *bound, int *n_out, dl_tensor ***w_out) {
    int n = dl_model_weights(m, 1, NULL, 0), r;
    dl_tensor **w;
    if (*bound) return 0;
    if (!(w = (dl_tensor **)DL_MALLOC((size_t)(n ? n : 1) * sizeof *w))) { dl_set_error("dl_gan: out of memory"); return -1; }
    dl_model_weights(m, 1, w, n);
    r = dl_optim_add_params(opt, n, w);
    if (r == 0 && w_out) { *w_out = w; *n_out = n; }
    else DL_FREE(w);
    if (r == 0) *bound = 1;
    return r;
}

/* D's output as [B]: one score per sample. */
static dl_tensor *dl__gan_scores(dl_gan *gan, dl_tensor *x, int training) {
    dl_tensor *s;
    int b;
#ifdef DL_CUDA
    x = dl__gan_on(x, gan->d->device);   /* a host batch to D's device */
    if (gan->o.instance_noise > 0.0f && x)   /* drawn on the host, copied */
        x = dl_add(x, dl__gan_on(dl__gan_normal(&gan->rng, x->ndim, x->shape, gan->o.instance_noise), x->device));
#else
    if (gan->o.instance_noise > 0.0f && x)
        x = dl_add(x, dl__gan_normal(&gan->rng, x->ndim, x->shape, gan->o.instance_noise));
#endif
    s = dl_model_call(gan->d, x, training);
    if (!s) return NULL;
    b = s->shape[0];
    if (s->ndim < 1 || (size_t)b != s->numel) {
        char a[64];
        dl_set_error("dl_gan: D must give one score per sample ([B] or [B, 1]), not %s", dl_shape_str(s, a, sizeof a));
        return NULL;
    }
    return s->ndim == 1 ? s : dl_reshape(s, 1, &b);
}

DLDEF dl_tensor *dl_gan_d_loss(dl_gan_loss loss, dl_tensor *d_real, dl_tensor *d_fake, float real_label) {
    if (!d_real || !d_fake) return NULL;
    switch (loss) {
    case DL_GAN_LOSS_BCE:
        return dl_add(dl_bce_with_logits(d_real, dl__gan_full_like(d_real, real_label)),
                      dl_bce_with_logits(d_fake, dl__gan_full_like(d_fake, 0.0f)));
    case DL_GAN_LOSS_LSGAN:
        return dl_mul_scalar(dl_add(dl_mse(d_real, dl__gan_full_like(d_real, real_label)),
                                    dl_mse(d_fake, dl__gan_full_like(d_fake, 0.0f))), 0.5f);
    case DL_GAN_LOSS_WGAN_GP:
        return dl_sub(dl_mean_all(d_fake), dl_mean_all(d_real));
    }
    dl_set_error("dl_gan_d_loss: unknown loss %d", (int)loss);
    return NULL;
}

DLDEF dl_tensor *dl_gan_g_loss(dl_gan_loss loss, dl_tensor *d_fake) {
    if (!d_fake) return NULL;
    switch (loss) {
    case DL_GAN_LOSS_BCE: return dl_bce_with_logits(d_fake, dl__gan_full_like(d_fake, 1.0f));
    case DL_GAN_LOSS_LSGAN: return dl_mse(d_fake, dl__gan_full_like(d_fake, 1.0f));
    case DL_GAN_LOSS_WGAN_GP: return dl_neg(dl_mean_all(d_fake));
    }
    dl_set_error("dl_gan_g_loss: unknown loss %d", (int)loss);
    return NULL;
}

/* The mean of D's outputs as the stats report them: probabilities for BCE, raw otherwise. */
static double dl__gan_mean_score(const dl_gan *gan, const dl_tensor *s) {
    const float *p = dl__gan_host_f32(s);
    double sum = 0;
    size_t i;
    if (!p) return NAN;
    for (i = 0; i < s->numel; i++)
        sum += gan->o.loss == DL_GAN_LOSS_BCE ? 1.0 / (1.0 + exp(-(double)p[i])) : (double)p[i];
    return s->numel ? sum / (double)s->numel : 0.0;
}

static void dl__gan_set_d_grad(dl_gan *gan, int on) {
    int i;
    for (i = 0; i < gan->n_dw; i++) dl_set_requires_grad(gan->dw[i], on);
}

/* Pass 1 of the penalty with D's weights switched off; they are put back before returning. */
static dl_tensor *dl__gan_input_grad(dl_model *d, dl_tensor *x_hat, float *ones) {
    int n = dl_model_weights(d, 1, NULL, 0), i, r;
    dl_tensor **w = (dl_tensor **)dl_arena_alloc(dl_arena_current(), (size_t)(n ? n : 1) * sizeof *w), *s;
    if (!w) return NULL;
    dl_model_weights(d, 1, w, n);
    for (i = 0; i < n; i++) dl_set_requires_grad(w[i], 0);
    dl_set_requires_grad(x_hat, 1);
    s = dl_model_call(d, x_hat, 0);
    r = s && s->numel == (size_t)x_hat->shape[0] ? dl_backward_grad(s, ones) : -1;
    if (s && s->numel != (size_t)x_hat->shape[0]) dl_set_error("dl_gan_gradient_penalty: D must give one score per sample");
    for (i = 0; i < n; i++) dl_set_requires_grad(w[i], 1);
    return r == 0 ? x_hat : NULL;
}

DLDEF double dl_gan_gradient_penalty(dl_model *d, const dl_tensor *x_hat, float weight) {
    const float h = DL_GAN_GP_STEP;
    dl_tensor *xh, *xs, *s;
    float *coef, *x, *g;
    double gp = 0;
    size_t per, j;
    int b, i, pass;
    if (!d || !x_hat) { dl_set_error("dl_gan_gradient_penalty: NULL argument"); return NAN; }
    if (x_hat->dtype != DL_DTYPE_F32 || x_hat->ndim < 2 || x_hat->shape[0] <= 0 || !isfinite(weight)) {
        dl_set_error("dl_gan_gradient_penalty: x_hat must be f32 [B, ...] and weight finite");
        return NAN;
    }
    b = x_hat->shape[0];
    per = x_hat->numel / (size_t)b;
    coef = (float *)dl_arena_alloc(dl_arena_current(), 2 * (size_t)b * sizeof(float));
    if (!coef || !(xh = dl_tmp(DL_DTYPE_F32, x_hat->ndim, x_hat->shape)) || dl_copy(xh, x_hat) != 0) return NAN;
    x = dl_f32(xh);
    for (i = 0; i < b; i++) coef[i] = 1.0f;
#ifdef DL_CUDA
    if (d->device) {   /* D on the GPU: its passes there; the arithmetic between them on the host, as below */
        dl_tensor *xd = dl_to_device(xh, d->device);
        if (!xd || !dl__gan_input_grad(d, xd, coef)) return NAN;   /* pass 1 */
        if (!(g = (float *)dl_arena_alloc(dl_arena_current(), x_hat->numel * sizeof(float))) ||
            dl__cuda_memcpy(g, xd->grad, x_hat->numel * sizeof(float), DL__D2H) != 0)
            return NAN;
    } else
#endif
    {
        if (!dl__gan_input_grad(d, xh, coef)) return NAN;   /* pass 1: g_i = grad_x D(x_hat_i) */
        g = xh->grad;
    }
    for (i = 0; i < b; i++) {   /* u_i = g_i / |g_i| (in place); coef_i = d penalty / d |g_i| */
        double norm2 = 0, norm;
        for (j = 0; j < per; j++) norm2 += (double)g[i * per + j] * g[i * per + j];
        norm = sqrt(norm2);
        gp += (norm - 1.0) * (norm - 1.0);
        coef[i] = (float)(2.0 * weight * (norm - 1.0) / b);
        for (j = 0; j < per; j++) g[i * per + j] = norm > 0 ? (float)(g[i * per + j] / norm) : 0.0f;
    }
    for (pass = 0; pass < 2; pass++) {   /* passes 2, 3: +- grad_w D(x_hat + h u) * coef / (2h) */
        const float sign = pass == 0 ? 1.0f : -1.0f;
        float *p;
        if (!(xs = dl_tmp(DL_DTYPE_F32, x_hat->ndim, x_hat->shape))) return NAN;
        p = dl_f32(xs);
        for (j = 0; j < x_hat->numel; j++) p[j] = x[j] + sign * h * g[j];
        for (i = 0; i < b; i++) coef[b + i] = sign * coef[i] / (2.0f * h);
#ifdef DL_CUDA
        if (d->device && !(xs = dl_to_device(xs, d->device))) return NAN;
#endif
        if (!(s = dl_model_call(d, xs, 0)) || dl_backward_grad(s, coef + b) != 0) return NAN;
    }
    return weight * gp / b;
}

/* x_hat = e real + (1 - e) fake, e ~ U[0, 1) per sample; then the penalty. */
static double dl__gan_penalty(dl_gan *gan, const dl_tensor *real, const dl_tensor *fake) {
    const int b = real->shape[0];
    const size_t per = real->numel / (size_t)b;
    dl_tensor *xh = dl_tmp(DL_DTYPE_F32, real->ndim, real->shape);
    const float *xr = dl__gan_host_f32(real), *xf = dl__gan_host_f32(fake);   /* (GPU batches read back) */
    float *x;
    size_t j;
    int i;
    if (!xh || !xr || !xf) return NAN;
    x = dl_f32(xh);
    for (i = 0; i < b; i++) {
        float e = dl_rng_uniform(&gan->rng);
        for (j = 0; j < per; j++) x[i * per + j] = e * xr[i * per + j] + (1.0f - e) * xf[i * per + j];
    }
    return dl_gan_gradient_penalty(gan->d, xh, gan->o.gp_weight);
}

/* Room for one more row in a history array of n rows of elem bytes (capacity *cap: 0, 256,
   512, ...: amortized doubling). 0, or -1 + dl_error() naming fn; the array is kept then. */
static int dl__history_grow(void **rows, int *cap, int n, size_t elem, const char *fn) {
    if (n == *cap) {
        int c = *cap ? 2 * *cap : 256;
        void *p = *cap > INT_MAX / 2 ? NULL : DL_REALLOC(*rows, (size_t)c * elem);
        if (!p) { dl_set_error("%s: out of memory (history)", fn); return -1; }
        *rows = p;
        *cap = c;
    }
    return 0;
}

/* Appends a row to the history. */
static int dl__gan_record(dl_gan *gan, const dl_gan_stats *st) {
    void *rows = gan->hist;
    int r = dl__history_grow(&rows, &gan->cap_hist, gan->n_hist, sizeof *st, "dl_gan");
    gan->hist = (dl_gan_stats *)rows;
    if (r != 0) return -1;
    gan->hist[gan->n_hist++] = *st;
    return 0;
}

/* D's step on real and fake (fake carries no gradient to G). */
static int dl__gan_d_update(dl_gan *gan, dl_tensor *real, dl_tensor *fake, dl_gan_stats *st) {
    dl_tensor *sr, *sf, *loss;
    sr = dl__gan_scores(gan, real, 1);
    sf = dl__gan_scores(gan, fake, 1);
    if (!sr || !sf) return -1;
    if (!gan->d_bound && dl__gan_bind(gan->d_opt, gan->d, &gan->d_bound, &gan->n_dw, &gan->dw) != 0) return -1;
    dl_optim_zero_grad(gan->d_opt);   /* (G's step left gradients in D's weights) */
    loss = dl_gan_d_loss(gan->o.loss, sr, sf, 1.0f - gan->o.label_smoothing);
    if (!loss || dl_backward(loss) != 0) return -1;
    st->d_loss = dl_item(loss);
    st->d_real = dl__gan_mean_score(gan, sr);
    st->d_fake = dl__gan_mean_score(gan, sf);
    st->gp = 0;
    if (gan->o.loss == DL_GAN_LOSS_WGAN_GP) {
        st->gp = dl__gan_penalty(gan, real, fake);
        if (isnan(st->gp)) return -1;
        st->d_loss += st->gp;
    }
    if (dl_optim_step(gan->d_opt) != 0) return -1;
    st->step = ++gan->step;
    return 0;
}

/* G's step through D on fake (made by G with its tape); D's weights are left alone. */
static int dl__gan_g_update(dl_gan *gan, dl_tensor *fake, dl_gan_stats *st) {
    dl_tensor *sf, *loss;
    int r;
    if (!gan->g_bound && dl__gan_bind(gan->g_opt, gan->g, &gan->g_bound, NULL, NULL) != 0) return -1;
    dl_optim_zero_grad(gan->g_opt);
    dl__gan_set_d_grad(gan, 0);   /* D's weights need no gradient here (once D is known) */
    sf = dl__gan_scores(gan, fake, 1);
    loss = dl_gan_g_loss(gan->o.loss, sf);
    r = loss ? dl_backward(loss) : -1;
    dl__gan_set_d_grad(gan, 1);
    if (r == 0 && !gan->d_bound) r = dl__gan_bind(gan->d_opt, gan->d, &gan->d_bound, &gan->n_dw, &gan->dw);
    if (r != 0 || dl_optim_step(gan->g_opt) != 0 || dl__gan_ema_update(gan) != 0) return -1;
    st->g_loss = dl_item(loss);
    return 0;
}

static int dl__gan_check_real(const dl_gan *gan, const dl_tensor *real, const char *fn) {
    if (!gan) { dl_set_error("%s: NULL gan", fn); return -1; }
    if (dl__gan_check_unswapped(gan, fn) != 0) return -1;
    if (!real) { dl_set_error("%s: NULL batch", fn); return -1; }
    if (real->dtype != DL_DTYPE_F32 || real->ndim < 2 || real->shape[0] <= 0 || !dl_is_contiguous(real)) {
        char a[64];
        dl_set_error("%s: the real batch must be contiguous f32 [B, ...] with B > 0, not %s", fn, dl_shape_str(real, a, sizeof a));
        return -1;
    }
    return 0;
}

/* fake = G(z) for n fresh z; with G's tape when it will be trained through. */
static dl_tensor *dl__gan_fake(dl_gan *gan, int n, int with_grad, const dl_tensor *like) {
    int grad = dl_no_grad(!with_grad);
    dl_tensor *f = dl_model_call(gan->g, dl_gan_noise(gan, n), 1);
    dl_no_grad(grad);
    if (f && like && (f->ndim != like->ndim || memcmp(f->shape, like->shape, (size_t)f->ndim * sizeof(int)) != 0)) {
        char a[64], b[64];
        dl_set_error("dl_gan: G makes %s, the real batch is %s", dl_shape_str(f, a, sizeof a), dl_shape_str(like, b, sizeof b));
        return NULL;
    }
    return f;
}

DLDEF int dl_gan_train_step(dl_gan *gan, dl_tensor *real, dl_gan_stats *stats) {
    dl_gan_stats st;
    dl_tensor *fake;
    int g_turn;
    if (dl__gan_check_real(gan, real, "dl_gan_train_step") != 0) return -1;
    memset(&st, 0, sizeof st);
    st.g_loss = NAN;
    g_turn = (gan->step + 1) % gan->o.n_critic == 0;
    if (!(fake = dl__gan_fake(gan, real->shape[0], g_turn, real))) return -1;
    if (dl__gan_d_update(gan, real, dl_detach(fake), &st) != 0) return -1;
    if (g_turn && dl__gan_g_update(gan, fake, &st) != 0) return -1;
    if (dl__gan_record(gan, &st) != 0) return -1;
    if (stats) *stats = st;
    return 0;
}

DLDEF int dl_gan_d_step(dl_gan *gan, dl_tensor *real, dl_gan_stats *stats) {
    dl_gan_stats st;
    dl_tensor *fake;
    if (dl__gan_check_real(gan, real, "dl_gan_d_step") != 0) return -1;
    memset(&st, 0, sizeof st);
    st.g_loss = NAN;
    if (!(fake = dl__gan_fake(gan, real->shape[0], 0, real))) return -1;
    if (dl__gan_d_update(gan, real, fake, &st) != 0 || dl__gan_record(gan, &st) != 0) return -1;
    if (stats) *stats = st;
    return 0;
}

DLDEF int dl_gan_g_step(dl_gan *gan, int n, dl_gan_stats *stats) {
    dl_gan_stats st;
    dl_tensor *fake;
    if (!gan || n <= 0) { dl_set_error("dl_gan_g_step: %s", gan ? "n must be > 0" : "NULL gan"); return -1; }
    if (dl__gan_check_unswapped(gan, "dl_gan_g_step") != 0) return -1;
    memset(&st, 0, sizeof st);
    st.d_loss = st.d_real = st.d_fake = NAN;
    st.step = gan->step;
    if (!(fake = dl__gan_fake(gan, n, 1, NULL)) || dl__gan_g_update(gan, fake, &st) != 0 || dl__gan_record(gan, &st) != 0)
        return -1;
    if (stats) *stats = st;
    return 0;
}

/* ---- Checkpoints ----
   Tensors: "g/<layer>/<weight>" and "d/<layer>/<weight>" (every weight, statistics too);
   "g_opt" and "d_opt": each optimizer's own file (dl_optim_serialize) as u8 bytes; "history":
   the rows as little-endian IEEE doubles, 6 per row (u8 bytes; absent when empty); with
   ema_decay, "g_ema/<layer>/<weight>": G's averages (once there was a G step).
   Metadata: "dl.format" = "dl.gan.v1"; "dl.gan" = "step S rows R loss L latent Z"; "dl.gan.rng"
   = the noise generator's 4 words; "dl.gan.layer_rng" = one line per layer: "g/<layer>" and its
   generator's 4 words (dropout masks), in hex; with ema_decay, "dl.gan.ema" = "decay D updates
   T" (T G steps averaged).
   The helpers below (dl__gan_ckpt_*) write and check such files for any number of models, each
   under its prefix; dl_cyclegan_save / dl_cyclegan_load use them too. */
#ifndef DL_NO_STDIO
#define DL__GAN_FORMAT "dl.gan.v1"
#define DL__GAN_HIST_COLS 6
#define DL__GAN_CKPT_MAX_OWNED 8
#define DL__GAN_CKPT_MAX_META 8

/* A checkpoint being written: names and tensors (the models' weights borrowed, the extra byte
   tensors owned), and one text buffer that holds every name and metadata value. */
typedef struct dl__gan_file {
    int n, cap, n_owned, n_meta;
    const char **names;
    dl_tensor **ts;
    long *name_off;            /* names as offsets into text until the end (text does not move) */
    const char *keys[DL__GAN_CKPT_MAX_META];
    long meta_off[DL__GAN_CKPT_MAX_META];
    char *text;
    size_t text_len, text_cap;
    dl_tensor *owned[DL__GAN_CKPT_MAX_OWNED];
    const char *fn;            /* the public function, for messages */
} dl__gan_file;

static void dl__gan_file_free(dl__gan_file *f) {
    int i;
    for (i = 0; i < f->n_owned; i++) dl_tensor_free(f->owned[i]);
    DL_FREE(f->names);
    DL_FREE(f->ts);
    DL_FREE(f->name_off);
    DL_FREE(f->text);
}

/* Keeps a copy of a string in f->text; returns its offset, or -1 when out of room. */
static long dl__gan_text(dl__gan_file *f, const char *s) {
    size_t len = strlen(s) + 1;
    long off;
    if (f->text_len + len > f->text_cap) return -1;
    memcpy(f->text + f->text_len, s, len);
    off = (long)f->text_len;
    f->text_len += len;
    return off;
}

/* Bytes as an owned u8 tensor [n] (n may not be 0: safetensors allows it, but keep it simple). */
static dl_tensor *dl__gan_bytes(const void *p, size_t n) {
    int shape[1];
    if (n == 0 || n > (size_t)INT_MAX) { dl_set_error("%zu bytes do not fit a tensor", n); return NULL; }
    shape[0] = (int)n;
    return dl_tensor_from(DL_DTYPE_U8, 1, shape, p);
}

static dl_tensor *dl__gan_optim_bytes(const dl_optim *opt) {
    size_t n = dl_optim_serialize(opt, NULL, 0);
    void *buf;
    dl_tensor *t;
    if (n == 0 || !(buf = DL_MALLOC(n))) { if (n) dl_set_error("out of memory"); return NULL; }
    t = dl_optim_serialize(opt, buf, n) == n ? dl__gan_bytes(buf, n) : NULL;
    DL_FREE(buf);
    return t;
}

static void dl__gan_put_f64(unsigned char *p, double v) {
    uint64_t u;
    int k;
    memcpy(&u, &v, 8);
    for (k = 0; k < 8; k++) p[k] = (unsigned char)(u >> (8 * k));
}
static double dl__gan_get_f64(const unsigned char *p) {
    uint64_t u = 0;
    double v;
    int k;
    for (k = 0; k < 8; k++) u |= (uint64_t)p[k] << (8 * k);
    memcpy(&v, &u, 8);
    return v;
}

/* n doubles as little-endian IEEE bytes in an owned u8 tensor. */
static dl_tensor *dl__gan_doubles(const double *v, size_t n) {
    unsigned char *h = (unsigned char *)DL_MALLOC(n * 8 + 1);
    dl_tensor *t;
    size_t i;
    if (!h) { dl_set_error("out of memory"); return NULL; }
    for (i = 0; i < n; i++) dl__gan_put_f64(h + i * 8, v[i]);
    t = dl__gan_bytes(h, n * 8);
    DL_FREE(h);
    return t;
}

/* Starts a file with the weights of n models, "<prefix>/<layer>/<weight>", and room for n_extra
   more tensors. -1 + dl_error() (f is then freed by the caller with dl__gan_file_free). */
static int dl__gan_ckpt_begin(dl__gan_file *f, const char *fn, int n, const dl_model *const *m, const char *const *prefix,
                          int n_extra) {
    char line[160];
    int mi, i, j, n_layers = 0;
    memset(f, 0, sizeof *f);
    f->fn = fn;
    f->cap = n_extra;
    for (mi = 0; mi < n; mi++) {
        f->cap += dl__gan_weight_count(m[mi]);
        n_layers += dl_model_num_layers(m[mi]);
    }
    f->text_cap = (size_t)f->cap * 128 + (size_t)n_layers * 160 + 4096;
    f->names = (const char **)DL_MALLOC((size_t)f->cap * sizeof *f->names);
    f->ts = (dl_tensor **)DL_MALLOC((size_t)f->cap * sizeof *f->ts);
    f->name_off = (long *)DL_MALLOC((size_t)f->cap * sizeof *f->name_off);
    f->text = (char *)DL_MALLOC(f->text_cap);
    if (!f->names || !f->ts || !f->name_off || !f->text) { dl_set_error("%s: out of memory", fn); return -1; }
    for (mi = 0; mi < n; mi++)
        for (i = 0; i < dl_model_num_layers(m[mi]); i++) {
            const dl_layer *l = dl_model_layer(m[mi], i);
            if (dl__layer_model(l)) {
                dl_set_error("%s: layer %s is a model (dl_model_as_layer): give the inner models", fn, l->name);
                return -1;
            }
            for (j = 0; j < l->n_params; j++) {
                snprintf(line, sizeof line, "%s/%s/%s", prefix[mi], l->name, l->param_names[j]);
                f->name_off[f->n] = dl__gan_text(f, line);
                f->ts[f->n++] = l->params[j];
            }
        }
    return 0;
}

/* One more tensor; owned ones (made for the file) are freed with it. t NULL: -1 (its maker's
   message, prefixed with the function's name). */
static int dl__gan_ckpt_add(dl__gan_file *f, const char *name, dl_tensor *t, int owned) {
    if (!t) { char msg[512]; snprintf(msg, sizeof msg, "%s", dl_error()); dl_set_error("%s: %s", f->fn, msg); return -1; }
    if (owned) {
        if (f->n_owned == DL__GAN_CKPT_MAX_OWNED) { dl_tensor_free(t); dl_set_error("%s: internal error (owned)", f->fn); return -1; }
        f->owned[f->n_owned++] = t;
    }
    if (f->n == f->cap) { dl_set_error("%s: internal error (room)", f->fn); return -1; }
    f->name_off[f->n] = dl__gan_text(f, name);
    f->ts[f->n++] = t;
    return 0;
}

/* A metadata entry (the key must be a string literal or otherwise outlive the write). */
static void dl__gan_ckpt_meta(dl__gan_file *f, const char *key, const char *value) {
    if (f->n_meta == DL__GAN_CKPT_MAX_META) return;
    f->keys[f->n_meta] = key;
    f->meta_off[f->n_meta++] = dl__gan_text(f, value);
}

/* The layer generators: one line per layer of the n models, "<prefix>/<layer>" and 4 hex words. */
static void dl__gan_ckpt_meta_layer_rngs(dl__gan_file *f, const char *key, int n, const dl_model *const *m, const char *const *prefix) {
    char line[160];
    long off = (long)f->text_len;
    int mi, i;
    for (mi = 0; mi < n && off >= 0; mi++)
        for (i = 0; i < dl_model_num_layers(m[mi]); i++) {
            const dl_layer *l = dl_model_layer(m[mi], i);
            int len = snprintf(line, sizeof line, "%s/%s %016llx %016llx %016llx %016llx\n", prefix[mi], l->name,
                               (unsigned long long)l->rng.s[0], (unsigned long long)l->rng.s[1],
                               (unsigned long long)l->rng.s[2], (unsigned long long)l->rng.s[3]);
            if (f->text_len + (size_t)len + 1 > f->text_cap) { off = -1; break; }
            memcpy(f->text + f->text_len, line, (size_t)len);
            f->text_len += (size_t)len;
        }
    if (off >= 0 && f->text_len < f->text_cap) f->text[f->text_len++] = 0;
    else off = -1;
    if (f->n_meta < DL__GAN_CKPT_MAX_META) { f->keys[f->n_meta] = key; f->meta_off[f->n_meta++] = off; }
}

/* Writes the file (atomically, by dl_safetensors_save). 0, or -1 + dl_error(). */
static int dl__gan_ckpt_write(dl__gan_file *f, const char *path) {
    const char *values[DL__GAN_CKPT_MAX_META];
    int i, r;
    for (i = 0; i < f->n; i++)
        if (f->name_off[i] < 0) { dl_set_error("%s: internal error (text room)", f->fn); return -1; }
    for (i = 0; i < f->n_meta; i++)
        if (f->meta_off[i] < 0) { dl_set_error("%s: internal error (text room)", f->fn); return -1; }
    for (i = 0; i < f->n; i++) f->names[i] = f->text + f->name_off[i];
    for (i = 0; i < f->n_meta; i++) values[i] = f->text + f->meta_off[i];
    r = dl_safetensors_save(path, f->n, f->names, f->ts, f->n_meta, f->keys, values);
    if (r != 0) { char msg[512]; snprintf(msg, sizeof msg, "%s", dl_error()); dl_set_error("%s: %s", f->fn, msg); }
    return r;
}

/* "xxxxxxxxxxxxxxxx" x 4 (hex words) at s; returns the characters read, 0 when malformed. */
static int dl__gan_parse_rng(const char *s, uint64_t *w) {
    int k, i, n = 0;
    for (k = 0; k < 4; k++) {
        uint64_t v = 0;
        while (s[n] == ' ') n++;
        for (i = 0; i < 16; i++, n++) {
            char c = s[n];
            int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
            if (d < 0) return 0;
            v = v << 4 | (uint64_t)d;
        }
        w[k] = v;
    }
    return n;
}

/* The layer generators' lines: checks (apply = 0) or sets (apply = 1) every layer's state. */
static int dl__gan_ckpt_layer_rngs(int n, const dl_model *const *m, const char *const *prefix, const char *text, int apply) {
    int mi, i;
    for (mi = 0; mi < n; mi++)
        for (i = 0; i < dl_model_num_layers(m[mi]); i++) {
            dl_layer *l = dl_model_layer(m[mi], i);
            char head[80];
            const char *p;
            uint64_t w[4];
            int len = snprintf(head, sizeof head, "%s/%s ", prefix[mi], l->name);
            for (p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
                if (strncmp(p, head, (size_t)len) == 0) break;
            if (!p || !*p || !dl__gan_parse_rng(p + len - 1, w)) {
                dl_set_error("the file has no generator state for layer %.*s", len - 1, head);
                return -1;
            }
            if (apply) memcpy(l->rng.s, w, sizeof w);
        }
    return 0;
}

/* Every weight of the n models is in the file with its dtype and shape (checked before anything
   changes); and every layer's generator state. 0, or -1 + dl_error() naming fn and path. */
static int dl__gan_ckpt_check_models(const dl_safetensors *st, const char *fn, const char *path, int n, const dl_model *const *m,
                                 const char *const *prefix, const char *layer_rngs) {
    char name[160];
    int mi, i, j;
    for (mi = 0; mi < n; mi++)
        for (i = 0; i < dl_model_num_layers(m[mi]); i++) {
            const dl_layer *l = dl_model_layer(m[mi], i);
            for (j = 0; j < l->n_params; j++) {
                const dl_tensor *w = l->params[j], *src;
                int k, ok;
                snprintf(name, sizeof name, "%s/%s/%s", prefix[mi], l->name, l->param_names[j]);
                src = dl_safetensors_get(st, name);
                ok = src && src->dtype == w->dtype && src->ndim == w->ndim;
                for (k = 0; ok && k < w->ndim; k++) ok = src->shape[k] == w->shape[k];
                if (!ok) {
                    char a[64];
                    dl_set_error("%s: '%s': %s '%s' %s%s", fn, path, src ? "the weight" : "no weight", name,
                                 src ? "has another shape than the model's " : "", dl_shape_str(w, a, sizeof a));
                    return -1;
                }
            }
        }
    if (!layer_rngs || dl__gan_ckpt_layer_rngs(n, m, prefix, layer_rngs, 0) != 0) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", layer_rngs ? dl_error() : "no layer generator states");
        dl_set_error("%s: '%s': %s", fn, path, msg);
        return -1;
    }
    return 0;
}

/* The n optimizers from their byte tensors (u8 [bytes]). Each parse changes nothing on failure;
   those parsed before a failure are put back. 0, or -1 + dl_error(). */
static int dl__gan_ckpt_restore_optims(const char *fn, const char *path, int n, dl_optim *const *opt, const dl_tensor *const *t,
                                   const char *const *who) {
    void *backup[4] = {NULL, NULL, NULL, NULL};
    size_t size[4] = {0, 0, 0, 0};
    int i, k, r = -1;
    for (i = 0; i < n && i < 4; i++)
        if (!t[i] || t[i]->dtype != DL_DTYPE_U8 || t[i]->ndim != 1) {
            dl_set_error("%s: '%s' has no optimizer state (%s as u8 bytes)", fn, path, who[i]);
            return -1;
        }
    for (i = 0; i < n - 1 && i < 4; i++)   /* the last needs no backup: nothing follows its parse */
        if ((size[i] = dl_optim_serialize(opt[i], NULL, 0)) == 0 || !(backup[i] = DL_MALLOC(size[i])) ||
            dl_optim_serialize(opt[i], backup[i], size[i]) != size[i]) {
            dl_set_error("%s: out of memory", fn);
            goto done;
        }
    for (i = 0; i < n && i < 4; i++)
        if (dl_optim_parse(opt[i], t[i]->data, t[i]->numel) != 0) {
            char msg[512];
            snprintf(msg, sizeof msg, "%s", dl_error());
            for (k = 0; k < i; k++) dl_optim_parse(opt[k], backup[k], size[k]);
            dl_set_error("%s: '%s': %s: %s", fn, path, who[i], msg);
            goto done;
        }
    r = 0;
done:
    for (i = 0; i < 4; i++) DL_FREE(backup[i]);
    return r;
}

/* After every check: the weights and layer generators of the n models from the file. */
static void dl__gan_ckpt_apply_models(const dl_safetensors *st, int n, const dl_model *const *m, const char *const *prefix,
                                  const char *layer_rngs) {
    char name[160];
    int mi, i, j;
    for (mi = 0; mi < n; mi++)
        for (i = 0; i < dl_model_num_layers(m[mi]); i++) {
            dl_layer *l = dl_model_layer(m[mi], i);
            for (j = 0; j < l->n_params; j++) {
                snprintf(name, sizeof name, "%s/%s/%s", prefix[mi], l->name, l->param_names[j]);
                dl_copy(l->params[j], dl_safetensors_get(st, name));
            }
        }
    dl__gan_ckpt_layer_rngs(n, m, prefix, layer_rngs, 1);
}

/* dl_safetensors_load with the message prefixed by fn. */
static dl_safetensors *dl__gan_ckpt_open(const char *fn, const char *path) {
    dl_safetensors *st = dl_safetensors_load(path);
    if (!st) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", dl_error());
        dl_set_error("%s: %s", fn, msg);
    }
    return st;
}

/* Both optimizers hold their model's weights (the models must be built). */
static int dl__gan_bind_both(dl_gan *gan, const char *fn) {
    if ((!gan->g_bound && dl_model_weights(gan->g, 0, NULL, 0) == 0) || (!gan->d_bound && dl_model_weights(gan->d, 0, NULL, 0) == 0)) {
        dl_set_error("%s: build both models first (dl_model_build, or a training step)", fn);
        return -1;
    }
    if (dl__gan_bind(gan->g_opt, gan->g, &gan->g_bound, NULL, NULL) != 0) return -1;
    return dl__gan_bind(gan->d_opt, gan->d, &gan->d_bound, &gan->n_dw, &gan->dw);
}

static const char *const dl__gan_prefixes[2] = {"g", "d"};

DLDEF int dl_gan_save(dl_gan *gan, const char *path) {
    dl__gan_file f;
    const dl_model *models[2];
    char line[160];
    int i, r = -1;
    if (!gan || !path) { dl_set_error("dl_gan_save: NULL argument"); return -1; }
    if (dl__gan_bind_both(gan, "dl_gan_save") != 0) return -1;
    models[0] = gan->g; models[1] = gan->d;
    if (dl__gan_check_unswapped(gan, "dl_gan_save") != 0) return -1;
    if (dl__gan_ckpt_begin(&f, "dl_gan_save", 2, models, dl__gan_prefixes, 3 + gan->n_ema) != 0) goto done;
    if (dl__gan_ckpt_add(&f, "g_opt", dl__gan_optim_bytes(gan->g_opt), 1) != 0 ||
        dl__gan_ckpt_add(&f, "d_opt", dl__gan_optim_bytes(gan->d_opt), 1) != 0)
        goto done;
    if (gan->n_hist > 0) {
        double *rows = (double *)DL_MALLOC((size_t)gan->n_hist * DL__GAN_HIST_COLS * sizeof *rows);
        if (!rows) { dl_set_error("dl_gan_save: out of memory"); goto done; }
        for (i = 0; i < gan->n_hist; i++) {
            const dl_gan_stats *s = &gan->hist[i];
            double *row = rows + (size_t)i * DL__GAN_HIST_COLS;
            row[0] = (double)s->step; row[1] = s->d_loss; row[2] = s->g_loss;
            row[3] = s->d_real; row[4] = s->d_fake; row[5] = s->gp;
        }
        r = dl__gan_ckpt_add(&f, "history", dl__gan_doubles(rows, (size_t)gan->n_hist * DL__GAN_HIST_COLS), 1);
        DL_FREE(rows);
        if (r != 0) goto done;
        r = -1;
    }
    for (i = 0; i < gan->n_ema; i++) {   /* G's averages: "g_ema/<layer>/<weight>" */
        dl__gan_g_weight_named(gan, i, line, sizeof line);
        if (dl__gan_ckpt_add(&f, line, gan->ema[i], 0) != 0) goto done;
    }
    dl__gan_ckpt_meta(&f, "dl.format", DL__GAN_FORMAT);
    if (gan->o.ema_decay > 0.0f) {
        snprintf(line, sizeof line, "decay %.9g updates %ld", (double)gan->o.ema_decay, gan->ema_t);
        dl__gan_ckpt_meta(&f, "dl.gan.ema", line);
    }
    snprintf(line, sizeof line, "step %ld rows %d loss %d latent %d", gan->step, gan->n_hist, (int)gan->o.loss, gan->o.latent_dim);
    dl__gan_ckpt_meta(&f, "dl.gan", line);
    snprintf(line, sizeof line, "%016llx %016llx %016llx %016llx", (unsigned long long)gan->rng.s[0],
             (unsigned long long)gan->rng.s[1], (unsigned long long)gan->rng.s[2], (unsigned long long)gan->rng.s[3]);
    dl__gan_ckpt_meta(&f, "dl.gan.rng", line);
    dl__gan_ckpt_meta_layer_rngs(&f, "dl.gan.layer_rng", 2, models, dl__gan_prefixes);
    r = dl__gan_ckpt_write(&f, path);
done:
    dl__gan_file_free(&f);
    return r;
}

/* The file's "dl.gan.ema" entry and G's averages against the gan's ema_decay, before anything
   changes; makes room for the averages. *updates: the file's count (0: none). */
static int dl__gan_load_ema_check(dl_gan *gan, const dl_safetensors *st, const char *path, long *updates) {
    const char *e = dl_safetensors_meta(st, "dl.gan.ema");
    double decay;
    int consumed = 0, i;
    *updates = 0;
    if (!e && gan->o.ema_decay <= 0.0f) return 0;
    if (!e || gan->o.ema_decay <= 0.0f) {
        dl_set_error("dl_gan_load: '%s' was saved %s an average of G's weights; this gan has ema_decay %g", path,
                     e ? "with" : "without", (double)gan->o.ema_decay);
        return -1;
    }
    if (sscanf(e, "decay %lf updates %ld%n", &decay, updates, &consumed) != 2 || e[consumed] != 0 || *updates < 0) {
        dl_set_error("dl_gan_load: '%s': bad dl.gan.ema entry", path);
        return -1;
    }
    if ((float)decay != gan->o.ema_decay) {
        dl_set_error("dl_gan_load: '%s' was saved with ema_decay %g; this gan has %g", path, decay, (double)gan->o.ema_decay);
        return -1;
    }
    if (*updates == 0) return 0;
    if (dl__gan_ema_alloc(gan, "dl_gan_load") != 0) return -1;
    for (i = 0; i < gan->n_ema; i++) {
        char name[160], a[64];
        const dl_tensor *w = dl__gan_g_weight_named(gan, i, name, sizeof name), *src = dl_safetensors_get(st, name);
        int k, ok = src && src->dtype == w->dtype && src->ndim == w->ndim;
        for (k = 0; ok && k < w->ndim; k++) ok = src->shape[k] == w->shape[k];
        if (!ok) {
            dl_set_error("dl_gan_load: '%s': %s '%s' %s%s", path, src ? "the average" : "no average", name,
                         src ? "has another shape than the weight's " : "", dl_shape_str(w, a, sizeof a));
            return -1;
        }
    }
    return 0;
}

DLDEF int dl_gan_load(dl_gan *gan, const char *path) {
    dl_safetensors *st;
    const dl_model *models[2];
    const char *fmt, *state, *rng_text, *lrng;
    static const char *const who[2] = {"g_opt", "d_opt"};
    dl_optim *opts[2];
    const dl_tensor *opt_t[2], *hist_t;
    long step;
    int rows, loss, latent, consumed = 0, i, r = -1;
    long ema_t = 0;
    uint64_t rng[4];
    dl_gan_stats *hist = NULL;
    if (!gan || !path) { dl_set_error("dl_gan_load: NULL argument"); return -1; }
    if (dl__gan_check_unswapped(gan, "dl_gan_load") != 0 || dl__gan_bind_both(gan, "dl_gan_load") != 0) return -1;
    if (!(st = dl__gan_ckpt_open("dl_gan_load", path))) return -1;
    models[0] = gan->g; models[1] = gan->d;
    fmt = dl_safetensors_meta(st, "dl.format");
    state = dl_safetensors_meta(st, "dl.gan");
    rng_text = dl_safetensors_meta(st, "dl.gan.rng");
    lrng = dl_safetensors_meta(st, "dl.gan.layer_rng");
    hist_t = dl_safetensors_get(st, "history");
    opts[0] = gan->g_opt; opts[1] = gan->d_opt;
    opt_t[0] = dl_safetensors_get(st, "g_opt"); opt_t[1] = dl_safetensors_get(st, "d_opt");
    if (!fmt || strcmp(fmt, DL__GAN_FORMAT) != 0) { dl_set_error("dl_gan_load: '%s' is not a GAN checkpoint (dl.format %s)", path, fmt ? fmt : "absent"); goto done; }
    if (!state || sscanf(state, "step %ld rows %d loss %d latent %d%n", &step, &rows, &loss, &latent, &consumed) != 4 ||
        state[consumed] != 0 || step < 0 || rows < 0) {
        dl_set_error("dl_gan_load: '%s': bad dl.gan entry", path);
        goto done;
    }
    if (loss != (int)gan->o.loss || latent != gan->o.latent_dim) {
        dl_set_error("dl_gan_load: '%s' was saved with loss %d and latent_dim %d; this gan has %d and %d", path, loss,
                     latent, (int)gan->o.loss, gan->o.latent_dim);
        goto done;
    }
    if (!rng_text || dl__gan_parse_rng(rng_text, rng) == 0 || !lrng) { dl_set_error("dl_gan_load: '%s': bad generator state", path); goto done; }
    if (rows > 0 && (!hist_t || hist_t->dtype != DL_DTYPE_U8 || hist_t->ndim != 1 ||
                     hist_t->numel != (size_t)rows * DL__GAN_HIST_COLS * 8)) {
        dl_set_error("dl_gan_load: '%s': the history does not hold %d rows", path, rows);
        goto done;
    }
    if (dl__gan_ckpt_check_models(st, "dl_gan_load", path, 2, models, dl__gan_prefixes, lrng) != 0) goto done;
    if (dl__gan_load_ema_check(gan, st, path, &ema_t) != 0) goto done;
    if (rows > 0) {
        const unsigned char *h = (const unsigned char *)hist_t->data;
        if (!(hist = (dl_gan_stats *)DL_MALLOC((size_t)rows * sizeof *hist))) { dl_set_error("dl_gan_load: out of memory"); goto done; }
        for (i = 0; i < rows; i++, h += DL__GAN_HIST_COLS * 8) {
            double s0 = dl__gan_get_f64(h);
            if (!(s0 >= 0 && s0 <= (double)step)) {
                dl_set_error("dl_gan_load: '%s': history row %d has step %g (the run is at %ld)", path, i, s0, step);
                goto done;
            }
            hist[i].step = (long)s0;
            hist[i].d_loss = dl__gan_get_f64(h + 8);
            hist[i].g_loss = dl__gan_get_f64(h + 16);
            hist[i].d_real = dl__gan_get_f64(h + 24);
            hist[i].d_fake = dl__gan_get_f64(h + 32);
            hist[i].gp = dl__gan_get_f64(h + 40);
        }
    }
    /* The optimizers last (each parse changes nothing on failure; G's is put back if D's fails). */
    if (dl__gan_ckpt_restore_optims("dl_gan_load", path, 2, opts, opt_t, who) != 0) goto done;
    dl__gan_ckpt_apply_models(st, 2, models, dl__gan_prefixes, lrng);
    if (ema_t > 0) {
        char name[160];
        for (i = 0; i < gan->n_ema; i++) {
            dl__gan_g_weight_named(gan, i, name, sizeof name);
            dl_copy(gan->ema[i], dl_safetensors_get(st, name));
        }
    } else dl__gan_ema_free(gan);
    gan->ema_t = ema_t;
    memcpy(gan->rng.s, rng, sizeof rng);
    gan->step = step;
    DL_FREE(gan->hist);
    gan->hist = hist;
    gan->n_hist = gan->cap_hist = rows;
    hist = NULL;
    r = 0;
done:
    DL_FREE(hist);
    dl_safetensors_free(st);
    return r;
}
#endif /* DL_NO_STDIO */

/* ==== PICTURES: implementation (tests: tests/test_gan.c) ==================================== */

DLDEF unsigned char *dl_image_grid(const dl_tensor *images, int cols, int pad, float lo, float hi, int *w, int *h) {
    int n, c, ih, iw, rows, gw, gh, i, ch, y, x;
    unsigned char *pix;
    const float *p;
    float scale;
    if (!images || !w || !h) { dl_set_error("dl_image_grid: NULL argument"); return NULL; }
#ifdef DL_CUDA
    if (images->device) {   /* read back to the host, then drawn from there */
        dl_tensor *hc = images->dtype == DL_DTYPE_F32 ? dl_tensor_clone_to(images, DL_DEVICE_CPU) : NULL;
        if (hc) {
            pix = dl_image_grid(hc, cols, pad, lo, hi, w, h);
            dl_tensor_free(hc);
            return pix;
        }
        if (images->dtype == DL_DTYPE_F32) return NULL;
    }
#endif
    if (images->dtype != DL_DTYPE_F32 || images->ndim != 4 || (images->shape[1] != 1 && images->shape[1] != 3) ||
        images->numel == 0) {
        char a[64];
        dl_set_error("dl_image_grid: images must be f32 [N, C, H, W] with C 1 or 3, not %s", dl_shape_str(images, a, sizeof a));
        return NULL;
    }
    if (!(hi > lo) || !isfinite(lo) || !isfinite(hi) || pad < 0 || pad > 64 || cols < 0) {
        dl_set_error("dl_image_grid: need lo < hi (finite), 0 <= pad <= 64, cols >= 0; got %g, %g, %d, %d", lo, hi, pad, cols);
        return NULL;
    }
    n = images->shape[0]; c = images->shape[1]; ih = images->shape[2]; iw = images->shape[3];
    if (cols == 0) while ((long)cols * cols < n) cols++;
    if (cols > n) cols = n;
    rows = (n + cols - 1) / cols;
    if ((double)cols * (iw + pad) + pad > 32768 || (double)rows * (ih + pad) + pad > 32768) {
        dl_set_error("dl_image_grid: a %d x %d grid of %d x %d images is over 32768 pixels wide or high", cols, rows, iw, ih);
        return NULL;
    }
    gw = cols * (iw + pad) + pad;
    gh = rows * (ih + pad) + pad;
    if (!(pix = (unsigned char *)DL_MALLOC((size_t)gw * gh * c))) { dl_set_error("dl_image_grid: out of memory"); return NULL; }
    memset(pix, 128, (size_t)gw * gh * c);
    p = (const float *)images->data;
    scale = 255.0f / (hi - lo);
    for (i = 0; i < n; i++)
        for (ch = 0; ch < c; ch++)
            for (y = 0; y < ih; y++)
                for (x = 0; x < iw; x++) {
                    float v = p[i * images->strides[0] + ch * images->strides[1] + y * images->strides[2] + x * images->strides[3]];
                    float q = (v - lo) * scale + 0.5f;
                    int gx = pad + (i % cols) * (iw + pad) + x, gy = pad + (i / cols) * (ih + pad) + y;
                    pix[((size_t)gy * gw + gx) * c + ch] = (unsigned char)(q >= 255.0f ? 255 : q > 0.0f ? (int)q : 0); /* NaN: 0 */
                }
    *w = gw;
    *h = gh;
    return pix;
}

/* A 5 x 7 pixel font of our own: digits, capitals and a little punctuation; each glyph is 7
   rows, bit 4 the leftmost column. Lower case is drawn as capitals, anything else as a box. */
static const char dl__font_chars[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ.-+():/_=,%";
static const unsigned char dl__font[][7] = {
    {0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E}, {0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E},
    {0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F}, {0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E},
    {0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02}, {0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E},
    {0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E}, {0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08},
    {0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E}, {0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C},
    {0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11}, {0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E},
    {0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E}, {0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C},
    {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F}, {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10},
    {0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F}, {0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11},
    {0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E}, {0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C},
    {0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11}, {0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F},
    {0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11}, {0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11},
    {0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E}, {0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10},
    {0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D}, {0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11},
    {0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E}, {0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04},
    {0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E}, {0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04},
    {0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A}, {0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11},
    {0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04}, {0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F},
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C}, {0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00},
    {0x00, 0x04, 0x04, 0x1F, 0x04, 0x04, 0x00}, {0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02},
    {0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08}, {0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00},
    {0x00, 0x01, 0x02, 0x04, 0x08, 0x10, 0x00}, {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1F},
    {0x00, 0x00, 0x1F, 0x00, 0x1F, 0x00, 0x00}, {0x00, 0x00, 0x00, 0x00, 0x0C, 0x04, 0x08},
    {0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03}};

/* The drawing surface: an RGB canvas and the rectangle drawing is clipped to. */
typedef struct dl__canvas { unsigned char *rgb; int width, height, cx0, cy0, cx1, cy1; } dl__canvas;

static void dl__draw_pixel(const dl__canvas *c, int x, int y, const unsigned char *col) {
    unsigned char *p;
    if (x < c->cx0 || y < c->cy0 || x >= c->cx1 || y >= c->cy1) return;
    p = c->rgb + ((size_t)y * c->width + x) * 3;
    p[0] = col[0]; p[1] = col[1]; p[2] = col[2];
}

static void dl__draw_line(const dl__canvas *c, int x0, int y0, int x1, int y1, const unsigned char *col) {
    int dx = abs(x1 - x0), dy = -abs(y1 - y0), sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1, err = dx + dy;
    for (;;) {   /* Bresenham */
        int e2;
        dl__draw_pixel(c, x0, y0, col);
        if (x0 == x1 && y0 == y1) return;
        e2 = 2 * err;
        if (e2 >= dy) { err += dy; x0 += sx; }
        if (e2 <= dx) { err += dx; y0 += sy; }
    }
}

/* Text at (x, y) (top left); returns the width drawn. */
static int dl__draw_text(const dl__canvas *c, int x, int y, const char *s, const unsigned char *col) {
    int x_start = x;
    for (; *s; s++, x += 6) {
        char ch = *s >= 'a' && *s <= 'z' ? (char)(*s - 'a' + 'A') : *s;
        const char *at = ch == ' ' ? NULL : strchr(dl__font_chars, ch);
        int row, bit;
        if (ch == ' ') continue;
        for (row = 0; row < 7; row++)
            for (bit = 0; bit < 5; bit++)
                if (at ? (dl__font[at - dl__font_chars][row] >> (4 - bit)) & 1 : row == 0 || row == 6 || bit == 0 || bit == 4)
                    dl__draw_pixel(c, x + bit, y + row, col);
    }
    return x - x_start;
}

/* A round number near span / 5 for the ticks: 1, 2 or 5 times a power of ten. */
static double dl__tick_step(double span) {
    double raw = span / 5.0, p = pow(10.0, floor(log10(raw))), f = raw / p;
    return (f < 1.5 ? 1.0 : f < 3.5 ? 2.0 : f < 7.5 ? 5.0 : 10.0) * p;
}

DLDEF int dl_plot_draw(unsigned char *rgb, int width, int height, int x0, int y0, int cw, int ch, const char *title,
                       int n_series, const dl_plot_series *series) {
    static const unsigned char palette[6][3] = {{31, 119, 180}, {255, 127, 14}, {44, 160, 44}, {214, 39, 40},
                                                {148, 103, 189}, {140, 86, 75}};
    static const unsigned char black[3] = {0, 0, 0}, grid[3] = {225, 225, 225}, gray[3] = {110, 110, 110};
    dl__canvas c;
    double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY, step, t;
    int i, k, px0, py0, px1, py1, legend_y;
    if (!rgb || (n_series > 0 && !series) || n_series < 0) { dl_set_error("dl_plot_draw: NULL argument"); return -1; }
    if (width <= 0 || height <= 0 || x0 < 0 || y0 < 0 || cw < 80 || ch < 60 || x0 + cw > width || y0 + ch > height) {
        dl_set_error("dl_plot_draw: the chart (%d, %d, %d x %d) must fit a %d x %d canvas and be at least 80 x 60",
                     x0, y0, cw, ch, width, height);
        return -1;
    }
    for (k = 0; k < n_series; k++) {
        if (series[k].n < 0 || (series[k].n > 0 && !series[k].y)) { dl_set_error("dl_plot_draw: series %d has no values", k); return -1; }
        for (i = 0; i < series[k].n; i++) {
            double xv = series[k].x ? series[k].x[i] : i, yv = series[k].y[i];
            if (!isfinite(xv) || !isfinite(yv)) continue;
            if (xv < xmin) xmin = xv;
            if (xv > xmax) xmax = xv;
            if (yv < ymin) ymin = yv;
            if (yv > ymax) ymax = yv;
        }
    }
    c.rgb = rgb; c.width = width; c.height = height;
    c.cx0 = x0; c.cy0 = y0; c.cx1 = x0 + cw; c.cy1 = y0 + ch;
    for (i = y0; i < y0 + ch; i++) memset(rgb + ((size_t)i * width + x0) * 3, 255, (size_t)cw * 3);
    if (title) dl__draw_text(&c, x0 + (cw - 6 * (int)strlen(title)) / 2, y0 + 4, title, black);
    px0 = x0 + 56; py0 = y0 + 16; px1 = x0 + cw - 8; py1 = y0 + ch - 20;   /* the plot area */
    if (!(xmin <= xmax)) { xmin = 0; xmax = 1; ymin = 0; ymax = 1; }   /* nothing finite: empty axes */
    if (xmax == xmin) { xmin -= 0.5; xmax += 0.5; }
    if (ymax == ymin) { ymin -= 0.5; ymax += 0.5; }
    t = 0.05 * (ymax - ymin); ymin -= t; ymax += t;
    if (!isfinite(xmax - xmin) || !isfinite(ymax - ymin)) {
        dl_set_error("dl_plot_draw: the values span more than a double can hold");
        return -1;
    }
#define DL__PX(xv) (px0 + (int)floor(((xv) - xmin) / (xmax - xmin) * (px1 - px0) + 0.5))
#define DL__PY(yv) (py1 - (int)floor(((yv) - ymin) / (ymax - ymin) * (py1 - py0) + 0.5))
    step = dl__tick_step(ymax - ymin);
    for (i = 0, t = ceil(ymin / step) * step; t <= ymax && i < 12; t = ceil(ymin / step) * step + ++i * step) {   /* y grid, numbers */
        char num[32];
        int y = DL__PY(t);
        dl__draw_line(&c, px0, y, px1, y, grid);
        snprintf(num, sizeof num, "%.3g", fabs(t) < 1e-12 * step ? 0.0 : t);
        dl__draw_text(&c, px0 - 4 - 6 * (int)strlen(num), y - 3, num, gray);
    }
    step = dl__tick_step(xmax - xmin);
    for (i = 0, t = ceil(xmin / step) * step; t <= xmax && i < 12; t = ceil(xmin / step) * step + ++i * step) {   /* x ticks */
        char num[32];
        int x = DL__PX(t);
        dl__draw_line(&c, x, py1, x, py1 + 3, gray);
        snprintf(num, sizeof num, "%.6g", t);
        dl__draw_text(&c, x - 3 * (int)strlen(num), py1 + 6, num, gray);
    }
    dl__draw_line(&c, px0, py0, px0, py1, black);
    dl__draw_line(&c, px0, py1, px1, py1, black);
    c.cx0 = px0; c.cy0 = py0 - 1; c.cx1 = px1 + 1; c.cy1 = py1 + 1;   /* the curves stay inside the axes */
    legend_y = py0 + 4;
    for (k = 0; k < n_series; k++) {
        const dl_plot_series *s = &series[k];
        const unsigned char *col = s->rgb[0] | s->rgb[1] | s->rgb[2] ? s->rgb : palette[k % 6];
        int last_x = INT_MIN, last_y = 0, col_x = INT_MIN, cnt = 0;
        double sum = 0;
        for (i = 0; i <= s->n; i++) {   /* the mean of each pixel column's points, joined by lines */
            double xv = i < s->n ? (s->x ? s->x[i] : i) : NAN, yv = i < s->n ? s->y[i] : NAN;
            int x = i < s->n && isfinite(xv) && isfinite(yv) ? DL__PX(xv) : INT_MIN;
            if (i < s->n && x == INT_MIN) continue;
            if (x != col_x && cnt > 0) {
                int y = DL__PY(sum / cnt);
                if (last_x != INT_MIN) dl__draw_line(&c, last_x, last_y, col_x, y, col);
                else dl__draw_pixel(&c, col_x, y, col);
                last_x = col_x; last_y = y;
                sum = 0; cnt = 0;
            }
            col_x = x;
            sum += yv; cnt++;
        }
        if (s->name) {   /* legend, top right */
            int tw = 6 * (int)strlen(s->name), lx = px1 - tw - 24;
            dl__draw_line(&c, lx, legend_y + 3, lx + 14, legend_y + 3, col);
            dl__draw_line(&c, lx, legend_y + 4, lx + 14, legend_y + 4, col);
            dl__draw_text(&c, lx + 18, legend_y, s->name, black);
            legend_y += 10;
        }
    }
#undef DL__PX
#undef DL__PY
    return 0;
}

/* The shared part of the history charts (dl_gan_plot, dl_cyclegan_plot). dl__plot_alloc: the
   size (0 x 0 means 640 x 480; checked) and room for cols columns of n doubles and the pixels.
   dl__plot_two_panels: two charts, one above the other; frees v (and rgb on failure). */
static int dl__plot_alloc(const char *fn, int *width, int *height, int n, int cols, double **v, unsigned char **rgb) {
    if (*width == 0 && *height == 0) { *width = 640; *height = 480; }
    if (*width < 80 || *height < 120 || *width > 16384 || *height > 16384) {
        dl_set_error("%s: size %d x %d is not in [80, 16384] x [120, 16384]", fn, *width, *height);
        return -1;
    }
    *rgb = NULL;
    if (!(*v = (double *)DL_MALLOC((size_t)(n ? n : 1) * (size_t)cols * sizeof(double))) ||
        !(*rgb = (unsigned char *)DL_MALLOC((size_t)*width * (size_t)*height * 3))) {
        DL_FREE(*v);
        dl_set_error("%s: out of memory", fn);
        return -1;
    }
    return 0;
}
static unsigned char *dl__plot_two_panels(unsigned char *rgb, double *v, int width, int height, const char *title1, int n1,
                                          const dl_plot_series *s1, const char *title2, int n2, const dl_plot_series *s2) {
    int r = dl_plot_draw(rgb, width, height, 0, 0, width, height / 2, title1, n1, s1);
    if (r == 0) r = dl_plot_draw(rgb, width, height, 0, height / 2, width, height - height / 2, title2, n2, s2);
    DL_FREE(v);
    if (r != 0) { DL_FREE(rgb); return NULL; }
    return rgb;
}

DLDEF unsigned char *dl_gan_plot(const dl_gan *gan, int width, int height) {
    dl_plot_series s[4];
    double *v;
    unsigned char *rgb;
    int n, i;
    if (!gan) { dl_set_error("dl_gan_plot: NULL gan"); return NULL; }
    n = gan->n_hist;
    if (dl__plot_alloc("dl_gan_plot", &width, &height, n, 5, &v, &rgb) != 0) return NULL;
    for (i = 0; i < n; i++) {
        v[i] = (double)gan->hist[i].step;
        v[n + i] = gan->hist[i].d_loss;
        v[2 * n + i] = gan->hist[i].g_loss;
        v[3 * n + i] = gan->hist[i].d_real;
        v[4 * n + i] = gan->hist[i].d_fake;
    }
    memset(s, 0, sizeof s);
    for (i = 0; i < 4; i++) { s[i].x = v; s[i].y = v + (size_t)(i + 1) * n; s[i].n = n; }
    s[0].name = "D loss"; s[1].name = "G loss"; s[2].name = "D(x)"; s[3].name = "D(G(z))";
    s[2].rgb[0] = 44; s[2].rgb[1] = 160; s[2].rgb[2] = 44;
    s[3].rgb[0] = 214; s[3].rgb[1] = 39; s[3].rgb[2] = 40;
    return dl__plot_two_panels(rgb, v, width, height, "losses against steps", 2, s,
                               gan->o.loss == DL_GAN_LOSS_BCE ? "mean D output (probability)" : "mean D output", 2, s + 2);
}

#ifdef DL_HAVE_PNG
DLDEF int dl_image_grid_save(const dl_tensor *images, const char *path, int cols, float lo, float hi) {
    int w, h, r;
    unsigned char *pix = dl_image_grid(images, cols, 2, lo, hi, &w, &h);
    if (!pix) return -1;
    r = dl_png_save(path, pix, w, h, images->shape[1]);
    DL_FREE(pix);
    return r;
}

/* A chart's pixels (made at width x height, 0 x 0 meaning 640 x 480) to a PNG; frees rgb. */
static int dl__plot_png_save(unsigned char *rgb, const char *path, int width, int height) {
    int r;
    if (!rgb) return -1;
    if (width == 0 && height == 0) { width = 640; height = 480; }
    r = dl_png_save(path, rgb, width, height, 3);
    DL_FREE(rgb);
    return r;
}

DLDEF int dl_gan_plot_save(const dl_gan *gan, const char *path, int width, int height) {
    return dl__plot_png_save(dl_gan_plot(gan, width, height), path, width, height);
}
#endif

/* ==== QUALITY: implementation (tests: tests/test_gan.c) ===================================== */

DLDEF double dl_inception_score(const dl_tensor *probs) {
    int n, c, i, j;
    double *marg, kl = 0;
    const float *p;
#ifdef DL_CUDA
    if (probs && probs->device && probs->dtype == DL_DTYPE_F32) {   /* computed on the host */
        dl_tensor *hc = dl_tensor_clone_to(probs, DL_DEVICE_CPU);
        double r = hc ? dl_inception_score(hc) : NAN;
        dl_tensor_free(hc);
        return r;
    }
#endif
    if (!probs || probs->dtype != DL_DTYPE_F32 || probs->ndim != 2 || probs->shape[0] < 1 || probs->shape[1] < 1 ||
        !dl_is_contiguous(probs)) {
        dl_set_error("dl_inception_score: probs must be contiguous f32 [N, C] with N, C >= 1");
        return NAN;
    }
    n = probs->shape[0]; c = probs->shape[1]; p = dl_f32(probs);
    if (!(marg = (double *)DL_MALLOC((size_t)c * sizeof *marg))) { dl_set_error("dl_inception_score: out of memory"); return NAN; }
    for (j = 0; j < c; j++) marg[j] = 0;
    for (i = 0; i < n; i++)
        for (j = 0; j < c; j++) {
            float v = p[(size_t)i * c + j];
            if (!(v >= 0.0f && v <= 1.0f)) {
                DL_FREE(marg);
                dl_set_error("dl_inception_score: probs[%d][%d] = %g is not a probability", i, j, v);
                return NAN;
            }
            marg[j] += v / n;
        }
    for (i = 0; i < n; i++)   /* KL(p_i || p) = sum_j p_ij log(p_ij / p_j); 0 log 0 = 0 */
        for (j = 0; j < c; j++) {
            double v = p[(size_t)i * c + j];
            if (v > 0) kl += v * (log(v) - log(marg[j])) / n;
        }
    DL_FREE(marg);
    return exp(kl);
}

/* Eigen-decomposition of a symmetric n x n matrix by cyclic Jacobi rotations: a (destroyed)
   ends diagonal with the eigenvalues; v gets the eigenvectors as columns. */
static void dl__sym_eigen(double *a, int n, double *v) {
    int sweep, p, q, k;
    for (p = 0; p < n; p++)
        for (q = 0; q < n; q++) v[(size_t)p * n + q] = p == q;
    for (sweep = 0; sweep < 60; sweep++) {
        double off = 0, diag = 0;
        for (p = 0; p < n; p++) {
            diag += a[(size_t)p * n + p] * a[(size_t)p * n + p];
            for (q = p + 1; q < n; q++) off += a[(size_t)p * n + q] * a[(size_t)p * n + q];
        }
        if (off <= 1e-26 * diag || off == 0) return;
        for (p = 0; p < n; p++)
            for (q = p + 1; q < n; q++) {
                double apq = a[(size_t)p * n + q], theta, t, cs, sn;
                if (fabs(apq) < 1e-300) continue;
                theta = (a[(size_t)q * n + q] - a[(size_t)p * n + p]) / (2 * apq);
                t = (theta >= 0 ? 1.0 : -1.0) / (fabs(theta) + sqrt(theta * theta + 1));
                cs = 1 / sqrt(t * t + 1);
                sn = t * cs;
                for (k = 0; k < n; k++) {   /* A = J^T A J: columns p and q, then rows p and q */
                    double akp = a[(size_t)k * n + p], akq = a[(size_t)k * n + q];
                    a[(size_t)k * n + p] = cs * akp - sn * akq;
                    a[(size_t)k * n + q] = sn * akp + cs * akq;
                }
                for (k = 0; k < n; k++) {
                    double apk = a[(size_t)p * n + k], aqk = a[(size_t)q * n + k];
                    a[(size_t)p * n + k] = cs * apk - sn * aqk;
                    a[(size_t)q * n + k] = sn * apk + cs * aqk;
                }
                for (k = 0; k < n; k++) {
                    double vkp = v[(size_t)k * n + p], vkq = v[(size_t)k * n + q];
                    v[(size_t)k * n + p] = cs * vkp - sn * vkq;
                    v[(size_t)k * n + q] = sn * vkp + cs * vkq;
                }
            }
    }
}

/* mean [D] and unbiased covariance [D, D] of the rows of x [N, D]. */
static void dl__mean_cov(const dl_tensor *x, double *mean, double *cov) {
    const int n = x->shape[0], d = x->shape[1];
    const float *p = dl_f32(x);
    double *row = cov + (size_t)d * d;   /* scratch: one centered row (d more doubles) */
    int i, j, k;
    for (j = 0; j < d; j++) mean[j] = 0;
    for (i = 0; i < n; i++)
        for (j = 0; j < d; j++) mean[j] += p[(size_t)i * d + j];
    for (j = 0; j < d; j++) mean[j] /= n;
    memset(cov, 0, (size_t)d * d * sizeof *cov);
    for (i = 0; i < n; i++) {
        for (j = 0; j < d; j++) row[j] = p[(size_t)i * d + j] - mean[j];
        for (j = 0; j < d; j++)
            for (k = j; k < d; k++) cov[(size_t)j * d + k] += row[j] * row[k];
    }
    for (j = 0; j < d; j++)
        for (k = j; k < d; k++) cov[(size_t)k * d + j] = cov[(size_t)j * d + k] /= (n - 1);
}

DLDEF double dl_frechet_distance(const dl_tensor *a, const dl_tensor *b) {
    const dl_tensor *x[2];
    double *buf, *mu[2], *cov[2], *v, *half, *m, dist = 0;
    size_t dd;
    int d, i, j, k;
#ifdef DL_CUDA
    if ((a && a->device && a->dtype == DL_DTYPE_F32) || (b && b->device && b->dtype == DL_DTYPE_F32)) {   /* on the host */
        dl_tensor *ha = a && a->device ? dl_tensor_clone_to(a, DL_DEVICE_CPU) : NULL, *hb = b && b->device ? dl_tensor_clone_to(b, DL_DEVICE_CPU) : NULL;
        double r = (a && a->device && !ha) || (b && b->device && !hb) ? NAN : dl_frechet_distance(ha ? ha : a, hb ? hb : b);
        dl_tensor_free(ha);
        dl_tensor_free(hb);
        return r;
    }
#endif
    x[0] = a; x[1] = b;
    for (i = 0; i < 2; i++)
        if (!x[i] || x[i]->dtype != DL_DTYPE_F32 || x[i]->ndim != 2 || x[i]->shape[0] < 2 || x[i]->shape[1] < 1 ||
            x[i]->shape[1] > 2048 || !dl_is_contiguous(x[i]) || x[i]->shape[1] != x[0]->shape[1]) {
            dl_set_error("dl_frechet_distance: features must be contiguous f32 [N, D] and [M, D] with N, M >= 2, 1 <= D <= 2048");
            return NAN;
        }
    d = a->shape[1];
    dd = (size_t)d * d;
    if (!(buf = (double *)DL_MALLOC((5 * dd + 3 * (size_t)d) * sizeof *buf))) { dl_set_error("dl_frechet_distance: out of memory"); return NAN; }
    mu[0] = buf; mu[1] = buf + d; cov[0] = buf + 2 * d; cov[1] = cov[0] + dd + d;   /* + d: dl__mean_cov's scratch */
    v = cov[1] + dd + d;
    half = v + dd;
    dl__mean_cov(a, mu[0], cov[0]);
    dl__mean_cov(b, mu[1], cov[1]);
    for (j = 0; j < d; j++) dist += (mu[0][j] - mu[1][j]) * (mu[0][j] - mu[1][j]) + cov[0][(size_t)j * d + j] + cov[1][(size_t)j * d + j];
    dl__sym_eigen(cov[0], d, v);   /* S_a = V L V^T; S_a^(1/2) = V sqrt(L) V^T */
    for (i = 0; i < d; i++)
        for (j = 0; j < d; j++) {
            double s = 0;
            for (k = 0; k < d; k++) {
                double l = cov[0][(size_t)k * d + k];
                s += v[(size_t)i * d + k] * (l > 0 ? sqrt(l) : 0) * v[(size_t)j * d + k];
            }
            half[(size_t)i * d + j] = s;
        }
    m = cov[0];   /* M = S_a^(1/2) S_b S_a^(1/2) (S_a's room; v, free now, holds the half product) */
    for (i = 0; i < d; i++)
        for (j = 0; j < d; j++) {
            double s = 0;
            for (k = 0; k < d; k++) s += half[(size_t)i * d + k] * cov[1][(size_t)k * d + j];
            v[(size_t)i * d + j] = s;
        }
    for (i = 0; i < d; i++)
        for (j = 0; j < d; j++) {
            double s = 0;
            for (k = 0; k < d; k++) s += v[(size_t)i * d + k] * half[(size_t)k * d + j];
            m[(size_t)i * d + j] = s;
        }
    for (i = 0; i < d; i++)   /* exactly symmetric before Jacobi */
        for (j = i + 1; j < d; j++) m[(size_t)i * d + j] = m[(size_t)j * d + i] = 0.5 * (m[(size_t)i * d + j] + m[(size_t)j * d + i]);
    dl__sym_eigen(m, d, v);
    for (j = 0; j < d; j++) {
        double l = m[(size_t)j * d + j];
        dist -= 2 * (l > 0 ? sqrt(l) : 0);
    }
    DL_FREE(buf);
    return dist;
}

/* ==== CYCLEGAN: implementation (tests: tests/test_cyclegan.c) =============================== */

struct dl_image_pool {
    int size, n;                    /* capacity; images stored */
    int ndim, shape[DL_MAX_DIMS];   /* per image (ndim 0 until the first query) */
    size_t per;                     /* values per image */
    float *images;                  /* size x per, owned (made by the first query) */
    dl_rng rng;
};

DLDEF dl_image_pool *dl_image_pool_new(const dl_image_pool_opts *opts) {
    dl_image_pool_opts o;
    dl_image_pool *p;
    memset(&o, 0, sizeof o);
    if (opts) o = *opts;
    if (o.size < 0 && o.size != DL_ZERO) {
        dl_set_error("dl_image_pool_new: size %d must be >= 0 (0: 50; DL_ZERO: no pool)", o.size);
        return NULL;
    }
    if (!(p = (dl_image_pool *)DL_MALLOC(sizeof *p))) { dl_set_error("dl_image_pool_new: out of memory"); return NULL; }
    memset(p, 0, sizeof *p);
    p->size = o.size == 0 ? 50 : o.size == DL_ZERO ? 0 : o.size;
    dl_rng_seed(&p->rng, o.seed);
    return p;
}

DLDEF void dl_image_pool_free(dl_image_pool *pool) {
    if (!pool) return;
    DL_FREE(pool->images);
    DL_FREE(pool);
}

DLDEF int dl_image_pool_num_images(const dl_image_pool *pool) { return pool ? pool->n : 0; }
DLDEF int dl_image_pool_size(const dl_image_pool *pool) { return pool ? pool->size : 0; }

DLDEF dl_tensor *dl_image_pool_query(dl_image_pool *pool, const dl_tensor *images) {
    dl_tensor *in, *out;
    const float *x;
    float *y;
    size_t per;
    int b, i;
    if (!pool || !images) { dl_set_error("dl_image_pool_query: NULL argument"); return NULL; }
    if (images->dtype != DL_DTYPE_F32 || images->ndim < 2 || images->shape[0] <= 0 || images->numel == 0) {
        char a[64];
        dl_set_error("dl_image_pool_query: images must be f32 [B, ...] with B > 0, not %s", dl_shape_str(images, a, sizeof a));
        return NULL;
    }
    b = images->shape[0];
    per = images->numel / (size_t)b;
    if (pool->ndim && (pool->ndim != images->ndim - 1 || memcmp(pool->shape, images->shape + 1, (size_t)pool->ndim * sizeof(int)) != 0)) {
        char a[64];
        dl_set_error("dl_image_pool_query: images %s do not have the shape of the pool's (%d values each)",
                     dl_shape_str(images, a, sizeof a), (int)pool->per);
        return NULL;
    }
    if (pool->size > 0 && !pool->images) {
        if (per > (size_t)-1 / sizeof(float) / (size_t)pool->size ||
            !(pool->images = (float *)DL_MALLOC((size_t)pool->size * per * sizeof(float)))) {
            dl_set_error("dl_image_pool_query: out of memory (%d images of %zu values)", pool->size, per);
            return NULL;
        }
    }
    if (!pool->ndim) {
        pool->ndim = images->ndim - 1;
        memcpy(pool->shape, images->shape + 1, (size_t)pool->ndim * sizeof(int));
        pool->per = per;
    }
    in = dl_tmp(DL_DTYPE_F32, images->ndim, images->shape);   /* a contiguous copy, without history */
    out = dl_tmp(DL_DTYPE_F32, images->ndim, images->shape);
    if (!in || !out || dl_copy(in, images) != 0) return NULL;
    x = dl_f32(in);
    y = dl_f32(out);
    for (i = 0; i < b; i++) {
        const float *xi = x + (size_t)i * per;
        float *yi = y + (size_t)i * per;
        if (pool->n < pool->size) {   /* not full: store it and return it */
            memcpy(pool->images + (size_t)pool->n++ * per, xi, per * sizeof(float));
            memcpy(yi, xi, per * sizeof(float));
        } else if (pool->size > 0 && dl_rng_uniform(&pool->rng) >= 0.5f) {   /* p 1/2: an old one, swapped */
            float *slot = pool->images + (size_t)dl_rng_int(&pool->rng, pool->size) * per;
            memcpy(yi, slot, per * sizeof(float));
            memcpy(slot, xi, per * sizeof(float));
        } else {
            memcpy(yi, xi, per * sizeof(float));
        }
    }
#ifdef DL_CUDA
    if (images->device) out = dl_to_device(out, images->device);   /* (the pool stays on the host) */
#endif
    return out;
}

DLDEF double dl_lr_cyclegan(double base, long n_epochs, long n_epochs_decay, long t) {
    long past;
    double f;
    if (n_epochs < 0 || n_epochs_decay < 0) {
        dl_set_error("dl_lr_cyclegan: n_epochs %ld and n_epochs_decay %ld must be >= 0", n_epochs, n_epochs_decay);
        return NAN;
    }
    if (t < 0) t = 0;
    past = t + 1 - n_epochs;   /* 1 - max(0, epoch + 1 - n_epochs) / (n_epochs_decay + 1) */
    f = 1.0 - (double)(past > 0 ? past : 0) / ((double)n_epochs_decay + 1.0);
    return f > 0 ? base * f : 0.0;
}

/* ---- The networks ---- */

/* Settings with the defaults filled in; -1 + dl_error() for bad ones. */
static int dl__cg_net_opts(const dl_cyclegan_net_opts *opts, dl_cyclegan_net_opts *o, const char *fn) {
    memset(o, 0, sizeof *o);
    if (opts) *o = *opts;
    if (o->width < 0 || o->width > 4096) { dl_set_error("%s: width %d must be in [0, 4096] (0: 64)", fn, o->width); return -1; }
    if (o->n_blocks < 0 && o->n_blocks != DL_ZERO) { dl_set_error("%s: n_blocks %d must be >= 0 (0: 9; DL_ZERO: none)", fn, o->n_blocks); return -1; }
    if (o->n_layers < 0 || o->n_layers > 16) { dl_set_error("%s: n_layers %d must be in [0, 16] (0: 3)", fn, o->n_layers); return -1; }
    if (!(o->init_std >= 0.0f || o->init_std == (float)DL_ZERO) || !isfinite(o->init_std)) {
        dl_set_error("%s: init_std %g must be finite and >= 0 (0: 0.02; DL_ZERO: Glorot)", fn, (double)o->init_std);
        return -1;
    }
    if (o->width == 0) o->width = 64;
    o->n_blocks = o->n_blocks == 0 ? 9 : o->n_blocks == DL_ZERO ? 0 : o->n_blocks;
    if (o->n_layers == 0) o->n_layers = 3;
    o->init_std = o->init_std == 0.0f ? 0.02f : o->init_std == (float)DL_ZERO ? 0.0f : o->init_std;
    return 0;
}

/* After the graph: conv kernels ~ N(0, std^2) and biases 0 (their init_weights), in layer
   order from dl_nn_seed's generator; the instance norms frozen unless affine. */
static void dl__cg_finish(dl_model *m, const dl_cyclegan_net_opts *o) {
    int i, j;
    for (i = 0; i < dl_model_num_layers(m); i++) {
        dl_layer *l = dl_model_layer(m, i);
        const char *kind = l->ops->kind;
        if (o->init_std > 0.0f && (strcmp(kind, "Conv2D") == 0 || strcmp(kind, "Conv2DTranspose") == 0))
            for (j = 0; j < l->n_params; j++) {
                dl_tensor *w = l->params[j];
                float *p = dl_f32(w);
                size_t k;
                if (strcmp(l->param_names[j], "kernel") == 0)
                    for (k = 0; k < w->numel; k++) p[k] = o->init_std * dl_rng_normal(dl__nn_gen());
                else
                    dl_fill(w, 0.0f);
            }
        if (!o->affine_norm && strcmp(kind, "InstanceNormalization") == 0) {
            l->trainable = 0;   /* their affine=False: gamma 1, beta 0 for good */
            for (j = 0; j < l->n_params; j++) dl_set_requires_grad(l->params[j], 0);
        }
    }
}

/* layer(x), then instance norm and an activation (DL_ACT_LINEAR: none; leaky: LeakyReLU 0.2). */
static dl_sym *dl__cg_block(dl_sym *x, dl_layer *conv, int norm, dl_act act) {
    x = dl_apply(conv, x);
    if (norm) x = dl_apply(dl_InstanceNormalization(1e-5f), x);
    if (act == DL_ACT_LEAKY_RELU) x = dl_apply(dl_LeakyReLU(0.2f), x);
    else if (act != DL_ACT_LINEAR) x = dl_apply(dl_Activation(act), x);
    return x;
}

/* The model from in to out, finished; on failure the abandoned symbols are freed. */
static dl_model *dl__cg_model(dl_sym *in, dl_sym *out, const dl_cyclegan_net_opts *o, const char *fn) {
    dl_model *m = out ? dl_model_new(1, &in, 1, &out) : NULL;
    if (!m) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", dl_error());
        dl_sym_free_unused();
        dl_set_error("%s: %s", fn, msg);
        return NULL;
    }
    dl__cg_finish(m, o);
    return m;
}

DLDEF dl_model *dl_cyclegan_generator(int channels, int height, int width, const dl_cyclegan_net_opts *opts) {
    const char *fn = "dl_cyclegan_generator";
    dl_cyclegan_net_opts o;
    dl_sym *in, *x;
    int shape[3], ngf, i;
    if (dl__cg_net_opts(opts, &o, fn) != 0) return NULL;
    if (channels < 1 || height < 8 || width < 8 || height % 4 || width % 4) {
        dl_set_error("%s: need channels >= 1 and height, width >= 8 and divisible by 4 (two stride-2 steps); got %d, %d, %d",
                     fn, channels, height, width);
        return NULL;
    }
    ngf = o.width;
    shape[0] = channels; shape[1] = height; shape[2] = width;
    in = dl_Input(3, shape);   /* c7s1-ngf */
    x = dl__cg_block(dl_apply(dl_ReflectionPad2D(3), in), dl_Conv2D(ngf, 7, 1, DL_PADDING_VALID, DL_ACT_LINEAR), 1, DL_ACT_RELU);
    for (i = 0; i < 2; i++)    /* d(2 ngf), d(4 ngf): 3x3 stride 2, zero pad 1 */
        x = dl__cg_block(dl_apply(dl_ZeroPadding2D(1), x), dl_Conv2D(ngf << (i + 1), 3, 2, DL_PADDING_VALID, DL_ACT_LINEAR), 1,
                         DL_ACT_RELU);
    for (i = 0; i < o.n_blocks; i++) {   /* R(4 ngf): x + F(x) */
        dl_sym *h = dl__cg_block(dl_apply(dl_ReflectionPad2D(1), x), dl_Conv2D(4 * ngf, 3, 1, DL_PADDING_VALID, DL_ACT_LINEAR), 1,
                                 DL_ACT_RELU), *xs[2];
        h = dl__cg_block(dl_apply(dl_ReflectionPad2D(1), h), dl_Conv2D(4 * ngf, 3, 1, DL_PADDING_VALID, DL_ACT_LINEAR), 1,
                         DL_ACT_LINEAR);
        xs[0] = x; xs[1] = h;
        x = dl_apply_n(dl_Add(), 2, xs);
    }
    for (i = 0; i < 2; i++)    /* u(2 ngf), u(ngf): 3x3 transposed, stride 2, "same" */
        x = dl__cg_block(x, dl_Conv2DTranspose(ngf << (1 - i), 3, 2, DL_PADDING_SAME, DL_ACT_LINEAR), 1, DL_ACT_RELU);
    x = dl__cg_block(dl_apply(dl_ReflectionPad2D(3), x), dl_Conv2D(channels, 7, 1, DL_PADDING_VALID, DL_ACT_TANH), 0,
                     DL_ACT_LINEAR);   /* c7s1-C, tanh */
    return dl__cg_model(in, x, &o, fn);
}

DLDEF dl_model *dl_cyclegan_discriminator(int channels, int height, int width, const dl_cyclegan_net_opts *opts) {
    const char *fn = "dl_cyclegan_discriminator";
    dl_cyclegan_net_opts o;
    dl_sym *in, *x;
    int shape[3], n, h, w, nf;
    if (dl__cg_net_opts(opts, &o, fn) != 0) return NULL;
    if (channels < 1 || height < 1 || width < 1) { dl_set_error("%s: channels, height, width must be >= 1", fn); return NULL; }
    h = height; w = width;   /* the sizes: k 4, pad 1: s -> (s - 2) / stride + 1 */
    for (n = 0; n < o.n_layers + 2 && h >= 2 && w >= 2; n++) {
        int stride = n < o.n_layers ? 2 : 1;
        h = (h - 2) / stride + 1;
        w = (w - 2) / stride + 1;
    }
    if (n < o.n_layers + 2 || h < 1 || w < 1) {
        dl_set_error("%s: %dx%d images are too small for %d stride-2 layers (the patch map would be empty)", fn, height, width,
                     o.n_layers);
        return NULL;
    }
    shape[0] = channels; shape[1] = height; shape[2] = width;
    in = dl_Input(3, shape);
    x = dl__cg_block(dl_apply(dl_ZeroPadding2D(1), in), dl_Conv2D(o.width, 4, 2, DL_PADDING_VALID, DL_ACT_LINEAR), 0,
                     DL_ACT_LEAKY_RELU);   /* C(ndf), no norm */
    for (n = 1; n <= o.n_layers; n++) {   /* C(2^n ndf) (at most 8 ndf), stride 2; the last at stride 1 */
        nf = o.width * (n < 3 ? 1 << n : 8);
        x = dl__cg_block(dl_apply(dl_ZeroPadding2D(1), x), dl_Conv2D(nf, 4, n < o.n_layers ? 2 : 1, DL_PADDING_VALID, DL_ACT_LINEAR),
                         1, DL_ACT_LEAKY_RELU);
    }
    x = dl__cg_block(dl_apply(dl_ZeroPadding2D(1), x), dl_Conv2D(1, 4, 1, DL_PADDING_VALID, DL_ACT_LINEAR), 0, DL_ACT_LINEAR);
    return dl__cg_model(in, x, &o, fn);
}

/* ---- The trainer ---- */

#define DL__CG_HIST_COLS 10

struct dl_cyclegan {
    dl_model *m[4];                  /* G_AB, G_BA, D_A, D_B; borrowed */
    dl_optim *g_opt, *d_opt;         /* owned */
    int bound[4];                    /* the optimizer holds the model's trainable weights */
    int n_dw[2];
    dl_tensor **dw[2];               /* D_A's and D_B's trainable weights (off during G's step) */
    float lambda_a, lambda_b, lambda_idt;
    dl_image_pool *pool[2];          /* pool_a (G_BA's fakes), pool_b (G_AB's); owned */
    long step;
    int n_hist, cap_hist;
    dl_cyclegan_stats *hist;
};

DLDEF dl_cyclegan *dl_cyclegan_new(dl_model *g_ab, dl_model *g_ba, dl_model *d_a, dl_model *d_b, dl_optim *g_opt,
                                   dl_optim *d_opt, const dl_cyclegan_opts *opts) {
    dl_cyclegan *cg = NULL;
    dl_cyclegan_opts o;
    dl_image_pool_opts po;
    const char *bad = NULL;
    memset(&o, 0, sizeof o);
    if (opts) o = *opts;
    if (!g_ab || !g_ba || !d_a || !d_b) bad = "NULL model";
    else if (g_ab == g_ba || g_ab == d_a || g_ab == d_b || g_ba == d_a || g_ba == d_b || d_a == d_b) bad = "give four different models";
    else if (!g_opt || !d_opt) bad = "NULL optimizer (did its constructor fail?)";
    else if (g_opt == d_opt) bad = "the generators and the discriminators need an optimizer each";
    else if (dl_optim_num_params(g_opt) || dl_optim_num_params(d_opt)) bad = "give fresh optimizers (the cyclegan adds the weights)";
    else if (!((o.lambda_a >= 0.0f || o.lambda_a == (float)DL_ZERO) && isfinite(o.lambda_a)) ||
             !((o.lambda_b >= 0.0f || o.lambda_b == (float)DL_ZERO) && isfinite(o.lambda_b)) ||
             !((o.lambda_identity >= 0.0f || o.lambda_identity == (float)DL_ZERO) && isfinite(o.lambda_identity)))
        bad = "lambda_a, lambda_b, lambda_identity must be finite and >= 0 (or DL_ZERO)";
    else if (o.pool_size < 0 && o.pool_size != DL_ZERO) bad = "pool_size must be >= 0 (0: 50; DL_ZERO: no pools)";
    if (!bad && !(cg = (dl_cyclegan *)DL_MALLOC(sizeof *cg))) bad = "out of memory";
    if (bad) {
        dl_set_error("dl_cyclegan_new: %s", bad);
        if (g_opt != d_opt) dl_optim_free(d_opt);
        dl_optim_free(g_opt);
        return NULL;
    }
    memset(cg, 0, sizeof *cg);
    cg->m[0] = g_ab; cg->m[1] = g_ba; cg->m[2] = d_a; cg->m[3] = d_b;
    cg->g_opt = g_opt; cg->d_opt = d_opt;
    cg->lambda_a = o.lambda_a == 0.0f ? 10.0f : o.lambda_a == (float)DL_ZERO ? 0.0f : o.lambda_a;
    cg->lambda_b = o.lambda_b == 0.0f ? 10.0f : o.lambda_b == (float)DL_ZERO ? 0.0f : o.lambda_b;
    cg->lambda_idt = o.lambda_identity == 0.0f ? 0.5f : o.lambda_identity == (float)DL_ZERO ? 0.0f : o.lambda_identity;
    memset(&po, 0, sizeof po);
    po.size = o.pool_size;
    po.seed = o.seed;
    cg->pool[0] = dl_image_pool_new(&po);
    po.seed = o.seed + 1;
    cg->pool[1] = dl_image_pool_new(&po);
    if (!cg->pool[0] || !cg->pool[1]) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", dl_error());
        dl_cyclegan_free(cg);
        dl_set_error("dl_cyclegan_new: %s", msg);
        return NULL;
    }
    return cg;
}

DLDEF void dl_cyclegan_free(dl_cyclegan *cg) {
    if (!cg) return;
    dl_optim_free(cg->g_opt);
    dl_optim_free(cg->d_opt);
    DL_FREE(cg->dw[0]);
    DL_FREE(cg->dw[1]);
    dl_image_pool_free(cg->pool[0]);
    dl_image_pool_free(cg->pool[1]);
    DL_FREE(cg->hist);
    DL_FREE(cg);
}

DLDEF int dl_cyclegan_move(dl_cyclegan *cg, dl_device device) {
    dl_optim *o[2];
    if (!cg) { dl_set_error("dl_cyclegan_move: NULL cyclegan"); return -1; }
    o[0] = cg->g_opt; o[1] = cg->d_opt;
    return dl__gan_move_all("dl_cyclegan_move", device, 4, cg->m, 2, o, 0, NULL);
}

DLDEF long dl_cyclegan_steps(const dl_cyclegan *cg) { return cg ? cg->step : 0; }
DLDEF int dl_cyclegan_history_len(const dl_cyclegan *cg) { return cg ? cg->n_hist : 0; }
DLDEF const dl_cyclegan_stats *dl_cyclegan_history(const dl_cyclegan *cg) { return cg ? cg->hist : NULL; }
DLDEF dl_image_pool *dl_cyclegan_pool(const dl_cyclegan *cg, int which) {
    return cg && (which == 0 || which == 1) ? cg->pool[which] : NULL;
}

DLDEF int dl_cyclegan_set_lr(dl_cyclegan *cg, double lr) {
    double old;
    if (!cg) { dl_set_error("dl_cyclegan_set_lr: NULL cyclegan"); return -1; }
    old = dl_optim_lr(cg->g_opt);
    if (dl_optim_set_lr(cg->g_opt, lr) != 0) return -1;
    if (dl_optim_set_lr(cg->d_opt, lr) != 0) { dl_optim_set_lr(cg->g_opt, old); return -1; }
    return 0;
}

/* Model i's weights into its optimizer (G's: 0, 1; D's: 2, 3), once it is built. */
static int dl__cg_bind(dl_cyclegan *cg, int i) {
    if (cg->bound[i]) return 0;
    if (i < 2) return dl__gan_bind(cg->g_opt, cg->m[i], &cg->bound[i], NULL, NULL);
    return dl__gan_bind(cg->d_opt, cg->m[i], &cg->bound[i], &cg->n_dw[i - 2], &cg->dw[i - 2]);
}

static void dl__cg_set_d_grad(dl_cyclegan *cg, int on) {
    int k, i;
    for (k = 0; k < 2; k++)
        for (i = 0; i < cg->n_dw[k]; i++) dl_set_requires_grad(cg->dw[k][i], on);
}

static int dl__cg_check_batch(const dl_tensor *x, const char *which) {
    if (!x) { dl_set_error("dl_cyclegan_train_step: NULL batch %s", which); return -1; }
    if (x->dtype != DL_DTYPE_F32 || x->ndim < 2 || x->shape[0] <= 0 || !dl_is_contiguous(x)) {
        char s[64];
        dl_set_error("dl_cyclegan_train_step: batch %s must be contiguous f32 [B, ...] with B > 0, not %s", which,
                     dl_shape_str(x, s, sizeof s));
        return -1;
    }
    return 0;
}

/* y (a generator's output on a batch) has like's per-image shape. */
static int dl__cg_same_image(const dl_tensor *y, const dl_tensor *like, const char *what) {
    if (!y) return -1;
    if (y->ndim != like->ndim || memcmp(y->shape + 1, like->shape + 1, (size_t)(like->ndim - 1) * sizeof(int)) != 0) {
        char s1[64], s2[64];
        dl_set_error("dl_cyclegan_train_step: %s gives %s, the other domain's batch is %s", what, dl_shape_str(y, s1, sizeof s1),
                     dl_shape_str(like, s2, sizeof s2));
        return -1;
    }
    return 0;
}

/* Appends a row to the history (dl__history_grow). */
static int dl__cg_record(dl_cyclegan *cg, const dl_cyclegan_stats *st) {
    void *rows = cg->hist;
    int r = dl__history_grow(&rows, &cg->cap_hist, cg->n_hist, sizeof *st, "dl_cyclegan_train_step");
    cg->hist = (dl_cyclegan_stats *)rows;
    if (r != 0) return -1;
    cg->hist[cg->n_hist++] = *st;
    return 0;
}

/* One discriminator's step half: (mse(D(real), 1) + mse(D(pool(fake)), 0)) / 2, backward. */
static double dl__cg_d_half(dl_cyclegan *cg, int k, dl_tensor *real, dl_tensor *fake) {
    dl_tensor *f = dl_image_pool_query(cg->pool[k], fake), *loss;
    if (!f) return NAN;
    loss = dl_gan_d_loss(DL_GAN_LOSS_LSGAN, dl_model_call(cg->m[2 + k], real, 1), dl_model_call(cg->m[2 + k], f, 1), 1.0f);
    if (!loss || dl_backward(loss) != 0) return NAN;
    return dl_item(loss);
}

DLDEF int dl_cyclegan_train_step(dl_cyclegan *cg, dl_tensor *a, dl_tensor *b, dl_cyclegan_stats *stats) {
    dl_cyclegan_stats st;
    dl_tensor *fake_b, *rec_a, *fake_a, *rec_b, *t[6], *loss;
    int r;
    if (!cg) { dl_set_error("dl_cyclegan_train_step: NULL cyclegan"); return -1; }
    if (dl__cg_check_batch(a, "a") != 0 || dl__cg_check_batch(b, "b") != 0) return -1;
#ifdef DL_CUDA
    if (!(a = dl__gan_on(a, cg->m[0]->device)) || !(b = dl__gan_on(b, cg->m[0]->device))) return -1;   /* host batches over */
#endif
    memset(&st, 0, sizeof st);
    /* forward(): both round trips, with the tape */
    fake_b = dl_model_call(cg->m[0], a, 1);
    if (dl__cg_same_image(fake_b, b, "G_AB(a)") != 0) return -1;
    rec_a = dl_model_call(cg->m[1], fake_b, 1);
    if (dl__cg_same_image(rec_a, a, "G_BA(G_AB(a))") != 0) return -1;
    fake_a = dl_model_call(cg->m[1], b, 1);
    if (dl__cg_same_image(fake_a, a, "G_BA(b)") != 0) return -1;
    rec_b = dl_model_call(cg->m[0], fake_a, 1);
    if (!rec_b) return -1;
    if (dl__cg_bind(cg, 0) != 0 || dl__cg_bind(cg, 1) != 0) return -1;
    /* G step, D_A and D_B frozen (once their weights are known: on the first step they get
       gradients here, which D's zero_grad below clears) */
    dl_optim_zero_grad(cg->g_opt);
    dl__cg_set_d_grad(cg, 0);
    t[0] = dl_gan_g_loss(DL_GAN_LOSS_LSGAN, dl_model_call(cg->m[3], fake_b, 1));   /* gan_ab: D_B(G_AB(a)) -> 1 */
    t[1] = dl_gan_g_loss(DL_GAN_LOSS_LSGAN, dl_model_call(cg->m[2], fake_a, 1));   /* gan_ba: D_A(G_BA(b)) -> 1 */
    t[2] = dl_mul_scalar(dl_l1(rec_a, a), cg->lambda_a);                          /* cycle_a */
    t[3] = dl_mul_scalar(dl_l1(rec_b, b), cg->lambda_b);                          /* cycle_b */
    t[4] = t[5] = NULL;
    if (cg->lambda_idt > 0.0f) {
        t[4] = dl_mul_scalar(dl_l1(dl_model_call(cg->m[0], b, 1), b), cg->lambda_b * cg->lambda_idt);   /* idt_ab */
        t[5] = dl_mul_scalar(dl_l1(dl_model_call(cg->m[1], a, 1), a), cg->lambda_a * cg->lambda_idt);   /* idt_ba */
    }
    loss = dl_add(dl_add(dl_add(t[0], t[1]), t[2]), t[3]);
    if (t[4] || t[5]) loss = dl_add(dl_add(loss, t[4]), t[5]);
    r = loss ? dl_backward(loss) : -1;
    dl__cg_set_d_grad(cg, 1);
    if (r == 0) r = dl__cg_bind(cg, 2) == 0 && dl__cg_bind(cg, 3) == 0 ? 0 : -1;
    if (r != 0 || dl_optim_step(cg->g_opt) != 0) return -1;
    st.g_loss = dl_item(loss);
    st.gan_ab = dl_item(t[0]); st.gan_ba = dl_item(t[1]);
    st.cycle_a = dl_item(t[2]); st.cycle_b = dl_item(t[3]);
    st.idt_ab = t[4] ? dl_item(t[4]) : 0.0; st.idt_ba = t[5] ? dl_item(t[5]) : 0.0;
    /* D step: D_B on b and pooled G_AB(a) (their backward_D_A, first), then D_A */
    dl_optim_zero_grad(cg->d_opt);
    st.d_b = dl__cg_d_half(cg, 1, b, dl_detach(fake_b));
    if (isnan(st.d_b)) return -1;
    st.d_a = dl__cg_d_half(cg, 0, a, dl_detach(fake_a));
    if (isnan(st.d_a) || dl_optim_step(cg->d_opt) != 0) return -1;
    st.step = ++cg->step;
    if (dl__cg_record(cg, &st) != 0) return -1;
    if (stats) *stats = st;
    return 0;
}

DLDEF unsigned char *dl_cyclegan_plot(const dl_cyclegan *cg, int width, int height) {
    static const char *const names[8] = {"G_AB GAN", "G_BA GAN", "D_A", "D_B", "cycle A", "cycle B", "identity AB", "identity BA"};
    dl_plot_series s[8];
    double *v;
    unsigned char *rgb;
    int n, i;
    if (!cg) { dl_set_error("dl_cyclegan_plot: NULL cyclegan"); return NULL; }
    n = cg->n_hist;
    if (dl__plot_alloc("dl_cyclegan_plot", &width, &height, n, 9, &v, &rgb) != 0) return NULL;
    for (i = 0; i < n; i++) {
        const dl_cyclegan_stats *h = &cg->hist[i];
        v[i] = (double)h->step;
        v[n + i] = h->gan_ab; v[2 * n + i] = h->gan_ba; v[3 * n + i] = h->d_a; v[4 * n + i] = h->d_b;
        v[5 * n + i] = h->cycle_a; v[6 * n + i] = h->cycle_b; v[7 * n + i] = h->idt_ab; v[8 * n + i] = h->idt_ba;
    }
    memset(s, 0, sizeof s);
    for (i = 0; i < 8; i++) { s[i].name = names[i]; s[i].x = v; s[i].y = v + (size_t)(i + 1) * n; s[i].n = n; }
    return dl__plot_two_panels(rgb, v, width, height, "adversarial losses (LSGAN) against steps", 4, s,
                               "cycle and identity terms (weighted)", 4, s + 4);
}

#ifdef DL_HAVE_PNG
DLDEF int dl_cyclegan_plot_save(const dl_cyclegan *cg, const char *path, int width, int height) {
    return dl__plot_png_save(dl_cyclegan_plot(cg, width, height), path, width, height);
}
#endif

/* ---- Checkpoints ----
   As dl_gan's (the dl__gan_ckpt_* helpers): tensors "g_ab/<layer>/<weight>", "g_ba/...", "d_a/...",
   "d_b/..."; "g_opt", "d_opt" (u8 bytes); "pool_a", "pool_b": the stored images, f32
   [n, ...] (absent when empty); "history": 10 doubles a row (u8 bytes; absent when empty).
   Metadata: "dl.format" = "dl.cyclegan.v1"; "dl.cyclegan" = "step S rows R pool P lambda_a X
   lambda_b Y identity Z"; "dl.cyclegan.pool_a", "dl.cyclegan.pool_b" = "n N rng w0 w1 w2 w3";
   "dl.cyclegan.layer_rng": a line per layer, as dl.gan.layer_rng. */
#ifndef DL_NO_STDIO
#define DL__CG_FORMAT "dl.cyclegan.v1"

static const char *const dl__cg_prefixes[4] = {"g_ab", "g_ba", "d_a", "d_b"};

static int dl__cg_bind_all(dl_cyclegan *cg, const char *fn) {
    int i;
    for (i = 0; i < 4; i++)
        if (!cg->bound[i] && dl_model_weights(cg->m[i], 0, NULL, 0) == 0) {
            dl_set_error("%s: build the four models first (dl_model_build, or a training step)", fn);
            return -1;
        }
    for (i = 0; i < 4; i++)
        if (dl__cg_bind(cg, i) != 0) return -1;
    return 0;
}

DLDEF int dl_cyclegan_save(dl_cyclegan *cg, const char *path) {
    dl__gan_file f;
    const dl_model *models[4];
    char line[256];
    int i, k, r = -1;
    if (!cg || !path) { dl_set_error("dl_cyclegan_save: NULL argument"); return -1; }
    if (dl__cg_bind_all(cg, "dl_cyclegan_save") != 0) return -1;
    for (i = 0; i < 4; i++) models[i] = cg->m[i];
    if (dl__gan_ckpt_begin(&f, "dl_cyclegan_save", 4, models, dl__cg_prefixes, 5) != 0) goto done;
    if (dl__gan_ckpt_add(&f, "g_opt", dl__gan_optim_bytes(cg->g_opt), 1) != 0 ||
        dl__gan_ckpt_add(&f, "d_opt", dl__gan_optim_bytes(cg->d_opt), 1) != 0)
        goto done;
    for (k = 0; k < 2; k++) {
        const dl_image_pool *p = cg->pool[k];
        if (p->n > 0) {
            int shape[DL_MAX_DIMS + 1];
            shape[0] = p->n;
            memcpy(shape + 1, p->shape, (size_t)p->ndim * sizeof(int));
            if (dl__gan_ckpt_add(&f, k ? "pool_b" : "pool_a", dl_tensor_from(DL_DTYPE_F32, p->ndim + 1, shape, p->images), 1) != 0)
                goto done;
        }
        snprintf(line, sizeof line, "n %d rng %016llx %016llx %016llx %016llx", p->n, (unsigned long long)p->rng.s[0],
                 (unsigned long long)p->rng.s[1], (unsigned long long)p->rng.s[2], (unsigned long long)p->rng.s[3]);
        dl__gan_ckpt_meta(&f, k ? "dl.cyclegan.pool_b" : "dl.cyclegan.pool_a", line);
    }
    if (cg->n_hist > 0) {
        double *rows = (double *)DL_MALLOC((size_t)cg->n_hist * DL__CG_HIST_COLS * sizeof *rows);
        if (!rows) { dl_set_error("dl_cyclegan_save: out of memory"); goto done; }
        for (i = 0; i < cg->n_hist; i++) {
            const dl_cyclegan_stats *s = &cg->hist[i];
            double *row = rows + (size_t)i * DL__CG_HIST_COLS;
            row[0] = (double)s->step; row[1] = s->g_loss; row[2] = s->gan_ab; row[3] = s->gan_ba; row[4] = s->cycle_a;
            row[5] = s->cycle_b; row[6] = s->idt_ab; row[7] = s->idt_ba; row[8] = s->d_a; row[9] = s->d_b;
        }
        r = dl__gan_ckpt_add(&f, "history", dl__gan_doubles(rows, (size_t)cg->n_hist * DL__CG_HIST_COLS), 1);
        DL_FREE(rows);
        if (r != 0) goto done;
        r = -1;
    }
    dl__gan_ckpt_meta(&f, "dl.format", DL__CG_FORMAT);
    snprintf(line, sizeof line, "step %ld rows %d pool %d lambda_a %.9g lambda_b %.9g identity %.9g", cg->step, cg->n_hist,
             cg->pool[0]->size, (double)cg->lambda_a, (double)cg->lambda_b, (double)cg->lambda_idt);
    dl__gan_ckpt_meta(&f, "dl.cyclegan", line);
    dl__gan_ckpt_meta_layer_rngs(&f, "dl.cyclegan.layer_rng", 4, models, dl__cg_prefixes);
    r = dl__gan_ckpt_write(&f, path);
done:
    dl__gan_file_free(&f);
    return r;
}

DLDEF int dl_cyclegan_load(dl_cyclegan *cg, const char *path) {
    static const char *const who[2] = {"g_opt", "d_opt"};
    const char *fn = "dl_cyclegan_load", *fmt, *state, *lrng;
    dl_safetensors *st;
    const dl_model *models[4];
    dl_optim *opts[2];
    const dl_tensor *opt_t[2], *hist_t;
    float *pool_images[2] = {NULL, NULL};
    int pool_n[2], pool_ndim[2], pool_shape[2][DL_MAX_DIMS];
    uint64_t pool_rng[2][4];
    dl_cyclegan_stats *hist = NULL;
    long step;
    int rows, pool_size, consumed = 0, i, k, r = -1;
    float la, lb, li;
    if (!cg || !path) { dl_set_error("dl_cyclegan_load: NULL argument"); return -1; }
    if (dl__cg_bind_all(cg, fn) != 0) return -1;
    if (!(st = dl__gan_ckpt_open(fn, path))) return -1;
    for (i = 0; i < 4; i++) models[i] = cg->m[i];
    fmt = dl_safetensors_meta(st, "dl.format");
    state = dl_safetensors_meta(st, "dl.cyclegan");
    lrng = dl_safetensors_meta(st, "dl.cyclegan.layer_rng");
    hist_t = dl_safetensors_get(st, "history");
    opts[0] = cg->g_opt; opts[1] = cg->d_opt;
    opt_t[0] = dl_safetensors_get(st, "g_opt"); opt_t[1] = dl_safetensors_get(st, "d_opt");
    if (!fmt || strcmp(fmt, DL__CG_FORMAT) != 0) {
        dl_set_error("%s: '%s' is not a CycleGAN checkpoint (dl.format %s)", fn, path, fmt ? fmt : "absent");
        goto done;
    }
    if (!state || sscanf(state, "step %ld rows %d pool %d lambda_a %g lambda_b %g identity %g%n", &step, &rows, &pool_size, &la,
                         &lb, &li, &consumed) != 6 || state[consumed] != 0 || step < 0 || rows < 0 || rows > step) {
        dl_set_error("%s: '%s': bad dl.cyclegan entry", fn, path);
        goto done;
    }
    if (pool_size != cg->pool[0]->size || la != cg->lambda_a || lb != cg->lambda_b || li != cg->lambda_idt) {
        dl_set_error("%s: '%s' was saved with pool %d, lambdas %g, %g, identity %g; this cyclegan has %d, %g, %g, %g", fn, path,
                     pool_size, (double)la, (double)lb, (double)li, cg->pool[0]->size, (double)cg->lambda_a,
                     (double)cg->lambda_b, (double)cg->lambda_idt);
        goto done;
    }
    if (rows > 0 && (!hist_t || hist_t->dtype != DL_DTYPE_U8 || hist_t->ndim != 1 ||
                     hist_t->numel != (size_t)rows * DL__CG_HIST_COLS * 8)) {
        dl_set_error("%s: '%s': the history does not hold %d rows", fn, path, rows);
        goto done;
    }
    for (k = 0; k < 2; k++) {   /* the pools: their entries, then the images */
        const char *meta = dl_safetensors_meta(st, k ? "dl.cyclegan.pool_b" : "dl.cyclegan.pool_a");
        const dl_tensor *t = dl_safetensors_get(st, k ? "pool_b" : "pool_a");
        int n = -1, used = 0;
        if (!meta || sscanf(meta, "n %d rng%n", &n, &used) != 1 || used == 0 || !dl__gan_parse_rng(meta + used, pool_rng[k]) ||
            n < 0 || n > pool_size || (n > 0) != (t != NULL)) {
            dl_set_error("%s: '%s': bad state of pool_%c", fn, path, k ? 'b' : 'a');
            goto done;
        }
        pool_n[k] = n;
        pool_ndim[k] = 0;
        if (n > 0) {
            size_t per;
            if (t->dtype != DL_DTYPE_F32 || t->ndim < 2 || t->shape[0] != n || t->numel == 0) {
                dl_set_error("%s: '%s': pool_%c is not f32 [%d, ...]", fn, path, k ? 'b' : 'a', n);
                goto done;
            }
            per = t->numel / (size_t)n;
            if (!(pool_images[k] = (float *)DL_MALLOC((size_t)pool_size * per * sizeof(float)))) {
                dl_set_error("%s: out of memory", fn);
                goto done;
            }
            memcpy(pool_images[k], t->data, t->numel * sizeof(float));
            pool_ndim[k] = t->ndim - 1;
            memcpy(pool_shape[k], t->shape + 1, (size_t)pool_ndim[k] * sizeof(int));
        }
    }
    if (dl__gan_ckpt_check_models(st, fn, path, 4, models, dl__cg_prefixes, lrng) != 0) goto done;
    if (rows > 0) {
        const unsigned char *h = (const unsigned char *)hist_t->data;
        if (!(hist = (dl_cyclegan_stats *)DL_MALLOC((size_t)rows * sizeof *hist))) { dl_set_error("%s: out of memory", fn); goto done; }
        for (i = 0; i < rows; i++, h += DL__CG_HIST_COLS * 8) {
            double row[DL__CG_HIST_COLS];
            int j;
            for (j = 0; j < DL__CG_HIST_COLS; j++) row[j] = dl__gan_get_f64(h + 8 * j);
            if (!(row[0] >= 0 && row[0] <= (double)step)) {
                dl_set_error("%s: '%s': history row %d has step %g (the run is at %ld)", fn, path, i, row[0], step);
                goto done;
            }
            hist[i].step = (long)row[0]; hist[i].g_loss = row[1]; hist[i].gan_ab = row[2]; hist[i].gan_ba = row[3];
            hist[i].cycle_a = row[4]; hist[i].cycle_b = row[5]; hist[i].idt_ab = row[6]; hist[i].idt_ba = row[7];
            hist[i].d_a = row[8]; hist[i].d_b = row[9];
        }
    }
    if (dl__gan_ckpt_restore_optims(fn, path, 2, opts, opt_t, who) != 0) goto done;   /* the last check */
    dl__gan_ckpt_apply_models(st, 4, models, dl__cg_prefixes, lrng);
    for (k = 0; k < 2; k++) {
        dl_image_pool *p = cg->pool[k];
        DL_FREE(p->images);
        p->images = pool_images[k];
        pool_images[k] = NULL;
        p->n = pool_n[k];
        if (pool_ndim[k]) {   /* else the pool keeps the shape it knew (if any) */
            p->ndim = pool_ndim[k];
            memcpy(p->shape, pool_shape[k], (size_t)p->ndim * sizeof(int));
            p->per = 1;
            for (i = 0; i < p->ndim; i++) p->per *= (size_t)p->shape[i];
        }
        memcpy(p->rng.s, pool_rng[k], sizeof pool_rng[k]);
    }
    cg->step = step;
    DL_FREE(cg->hist);
    cg->hist = hist;
    cg->n_hist = cg->cap_hist = rows;
    hist = NULL;
    r = 0;
done:
    DL_FREE(pool_images[0]);
    DL_FREE(pool_images[1]);
    DL_FREE(hist);
    dl_safetensors_free(st);
    return r;
}
#endif /* DL_NO_STDIO */

/* ==== STYLE TRANSFER: implementation ========================================================
   (the style-transfer part's implementation goes here, and only here) */

/* torchvision's vgg19().features: conv i is features.dl__vgg_index[i]; a 2x2 max pool follows
   the convs marked in dl__vgg_pool_after (the last block's pool is never needed here). */
static const int dl__vgg_index[DL_VGG19_NUM_LAYERS] = {0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34};
static const int dl__vgg_channels[DL_VGG19_NUM_LAYERS] = {64, 64, 128, 128, 256, 256, 256, 256,
                                                           512, 512, 512, 512, 512, 512, 512, 512};
static const int dl__vgg_pool_after[DL_VGG19_NUM_LAYERS] = {0, 1, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1};
static const char *const dl__vgg_keras_names[DL_VGG19_NUM_LAYERS] = {
    "block1_conv1", "block1_conv2", "block2_conv1", "block2_conv2", "block3_conv1", "block3_conv2",
    "block3_conv3", "block3_conv4", "block4_conv1", "block4_conv2", "block4_conv3", "block4_conv4",
    "block5_conv1", "block5_conv2", "block5_conv3", "block5_conv4"};
static const char *const dl__vgg_paper_names[DL_VGG19_NUM_LAYERS] = {
    "relu1_1", "relu1_2", "relu2_1", "relu2_2", "relu3_1", "relu3_2", "relu3_3", "relu3_4",
    "relu4_1", "relu4_2", "relu4_3", "relu4_4", "relu5_1", "relu5_2", "relu5_3", "relu5_4"};

/* Re-sets dl_error() as "<prefix>: <the old message>[ (<suffix>)]". */
static void dl__style_wrap(const char *prefix, const char *suffix) {
    char msg[400];
    size_t n = strlen(dl_error());
    if (n >= sizeof msg) n = sizeof msg - 1;
    memcpy(msg, dl_error(), n);
    msg[n] = 0;
    if (prefix && suffix) dl_set_error("%s: %s (%.200s)", prefix, msg, suffix);
    else if (prefix) dl_set_error("%s: %s", prefix, msg);
    else if (suffix) dl_set_error("%s (%.200s)", msg, suffix);
}

static int dl__vgg_in_channels(int i, int k) { return i == 0 ? 3 : dl__vgg_channels[i - 1] / k; }

DLDEF void dl_vgg19_free(dl_vgg19 *net) {
    int i;
    if (!net) return;
    for (i = 0; i < DL_VGG19_NUM_LAYERS; i++) { dl_tensor_free(net->w[i]); dl_tensor_free(net->b[i]); }
    DL_FREE(net);
}

/* A network with zeroed tensors of width divisor k, or NULL + error (naming op). */
static dl_vgg19 *dl__vgg19_alloc(const char *op, int k, dl_vgg_preprocess pre) {
    dl_vgg19 *net;
    int i;
    if (k <= 0 || 64 % k != 0) return (dl_vgg19 *)dl__fail("%s: width_div must divide 64, got %d", op, k);
    if (pre != DL_VGG_PREPROCESS_TORCH && pre != DL_VGG_PREPROCESS_CAFFE)
        return (dl_vgg19 *)dl__fail("%s: unknown preprocess %d", op, (int)pre);
    net = (dl_vgg19 *)DL_MALLOC(sizeof(*net));
    if (!net) return (dl_vgg19 *)dl__fail("%s: out of memory", op);
    memset(net, 0, sizeof(*net));
    net->width_div = k;
    net->preprocess = pre;
    for (i = 0; i < DL_VGG19_NUM_LAYERS; i++) {
        int ws[4], bs[1];
        ws[0] = bs[0] = dl__vgg_channels[i] / k;
        ws[1] = dl__vgg_in_channels(i, k);
        ws[2] = ws[3] = 3;
        net->w[i] = dl_tensor_new(DL_DTYPE_F32, 4, ws);
        net->b[i] = dl_tensor_new(DL_DTYPE_F32, 1, bs);
        if (!net->w[i] || !net->b[i]) {
            dl_vgg19_free(net);
            return (dl_vgg19 *)dl__fail("%s: out of memory", op);
        }
    }
    return net;
}

DLDEF dl_vgg19 *dl_vgg19_new(const dl_vgg_opts *opts, dl_rng *rng) {
    dl_vgg19 *net;
    int i;
    if (!rng) return (dl_vgg19 *)dl__fail("dl_vgg19_new: rng is NULL");
    net = dl__vgg19_alloc("dl_vgg19_new", opts && opts->width_div ? opts->width_div : 1,
                          opts ? opts->preprocess : DL_VGG_PREPROCESS_TORCH);
    if (!net) return NULL;
    net->random = 1;
    for (i = 0; i < DL_VGG19_NUM_LAYERS; i++)   /* He et al. 2015: std sqrt(2 / fan_in) */
        dl_fill_normal(net->w[i], 0.0f, (float)sqrt(2.0 / (9.0 * net->w[i]->shape[1])), rng);
    return net;
}

/* A network from a loaded file (which stays the caller's), or NULL + error. */
static dl_vgg19 *dl__vgg19_from(const dl_safetensors *st) {
    dl_tensor *w0;
    dl_vgg19 *net;
    const char *pre = dl_safetensors_meta(st, "preprocess");
    dl_vgg_preprocess p = DL_VGG_PREPROCESS_TORCH;
    int i, k;
    char name[32];
    if (pre && strcmp(pre, "caffe") == 0) p = DL_VGG_PREPROCESS_CAFFE;
    else if (pre && strcmp(pre, "torch") != 0)
        return (dl_vgg19 *)dl__fail("dl_vgg19_load: unknown preprocess \"%.40s\" (\"torch\" or \"caffe\")", pre);
    w0 = dl_safetensors_get(st, "features.0.weight");
    if (!w0) return (dl_vgg19 *)dl__fail("dl_vgg19_load: no tensor features.0.weight");
    if (w0->ndim != 4 || w0->shape[0] <= 0 || 64 % w0->shape[0] != 0)
        return (dl_vgg19 *)dl__fail("dl_vgg19_load: features.0.weight must be [64/k, 3, 3, 3] for k dividing 64");
    k = 64 / w0->shape[0];
    net = dl__vgg19_alloc("dl_vgg19_load", k, p);
    if (!net) return NULL;
    for (i = 0; i < 2 * DL_VGG19_NUM_LAYERS; i++) {
        dl_tensor *want = i % 2 ? net->b[i / 2] : net->w[i / 2], *got;
        char ws[64], gs[64];
        sprintf(name, "features.%d.%s", dl__vgg_index[i / 2], i % 2 ? "bias" : "weight");
        got = dl_safetensors_get(st, name);
        if (!got) { dl_set_error("dl_vgg19_load: no tensor %s", name); break; }
        if (got->dtype != DL_DTYPE_F32) {
            dl_set_error("dl_vgg19_load: %s must be f32, got %s", name, dl_dtype_name(got->dtype));
            break;
        }
        if (!dl_same_shape(got, want)) {
            dl_set_error("dl_vgg19_load: %s has shape %s, expected %s (width 1/%d)", name,
                         dl_shape_str(got, gs, sizeof gs), dl_shape_str(want, ws, sizeof ws), k);
            break;
        }
        if (dl_copy(want, got) != 0) break;
    }
    if (i < 2 * DL_VGG19_NUM_LAYERS) { dl_vgg19_free(net); return NULL; }
    return net;
}

DLDEF dl_vgg19 *dl_vgg19_parse(const void *bytes, size_t size) {
    dl_safetensors *st = dl_safetensors_parse(bytes, size);
    dl_vgg19 *net;
    if (!st) { dl__style_wrap("dl_vgg19_parse", NULL); return NULL; }
    net = dl__vgg19_from(st);
    dl_safetensors_free(st);
    return net;
}

#ifndef DL_NO_STDIO
DLDEF dl_vgg19 *dl_vgg19_load(const char *path) {
    dl_safetensors *st = path ? dl_safetensors_load(path) : NULL;
    dl_vgg19 *net;
    if (!path) return (dl_vgg19 *)dl__fail("dl_vgg19_load: path is NULL");
    if (!st) { dl__style_wrap("dl_vgg19_load", NULL); return NULL; }
    net = dl__vgg19_from(st);
    dl_safetensors_free(st);
    if (!net) dl__style_wrap(NULL, path);
    return net;
}
#endif

DLDEF int dl_vgg19_find_layer(const char *name) {
    int i;
    for (i = 0; name && i < DL_VGG19_NUM_LAYERS; i++)
        if (strcmp(name, dl__vgg_keras_names[i]) == 0 || strcmp(name, dl__vgg_paper_names[i]) == 0) return i;
    dl_set_error("dl_vgg19_find_layer: no layer \"%.40s\" (block1_conv1 ... block5_conv4, or relu1_1 ... relu5_4)",
                 name ? name : "(null)");
    return -1;
}

DLDEF const char *dl_vgg19_layer_name(int layer) {
    return layer >= 0 && layer < DL_VGG19_NUM_LAYERS ? dl__vgg_keras_names[layer] : NULL;
}

DLDEF dl_tensor *dl_vgg19_preprocess(const dl_vgg19 *net, dl_tensor *image) {
    static const float mean_t[3] = {0.485f, 0.456f, 0.406f}, std_t[3] = {0.229f, 0.224f, 0.225f};
    static const float mean_c[3] = {123.68f, 116.779f, 103.939f};
    const int cs[4] = {1, 3, 1, 1};
    if (!image) return NULL;
    if (!net) return (dl_tensor *)dl__fail("dl_vgg19_preprocess: net is NULL");
    if (image->ndim != 4 || image->shape[1] != 3)
        return (dl_tensor *)dl__fail("dl_vgg19_preprocess: image must be [N, 3, H, W]");
    if (net->preprocess == DL_VGG_PREPROCESS_CAFFE)
        return dl_sub(dl_mul_scalar(image, 255.0f), dl_tmp_from(DL_DTYPE_F32, 4, cs, mean_c));
    return dl_div(dl_sub(image, dl_tmp_from(DL_DTYPE_F32, 4, cs, mean_t)), dl_tmp_from(DL_DTYPE_F32, 4, cs, std_t));
}

DLDEF int dl_vgg19_features(const dl_vgg19 *net, dl_tensor *image, int n, const int *layers, dl_tensor **out) {
    dl_conv_opts pad;
    dl_tensor *x;
    int i, j, deepest = -1;
    if (!out || n <= 0 || !layers) { dl_set_error("dl_vgg19_features: need n > 0 layers and an out array"); return -1; }
    for (i = 0; i < n; i++) out[i] = NULL;
    if (!net || !image) { dl_set_error("dl_vgg19_features: %s is NULL", net ? "image" : "net"); return -1; }
    for (i = 0; i < n; i++) {
        if (layers[i] < 0 || layers[i] >= DL_VGG19_NUM_LAYERS) {
            dl_set_error("dl_vgg19_features: layer %d is not in 0..15", layers[i]);
            return -1;
        }
        if (layers[i] > deepest) deepest = layers[i];
    }
    memset(&pad, 0, sizeof pad);
    pad.padding[0] = pad.padding[1] = 1;
    x = dl_vgg19_preprocess(net, image);
    for (i = 0; i <= deepest && x; i++) {
        x = dl_relu(dl_conv2d(x, net->w[i], net->b[i], &pad));
        for (j = 0; j < n; j++)
            if (layers[j] == i) out[j] = x;
        if (dl__vgg_pool_after[i] && i < deepest) x = dl_max_pool2d(x, 2, 2, NULL);
    }
    if (!x) {
        for (i = 0; i < n; i++) out[i] = NULL;
        dl__style_wrap("dl_vgg19_features", NULL);
        return -1;
    }
    return 0;
}

DLDEF dl_tensor *dl_style_loss(int n, dl_tensor *const *features, dl_tensor *const *target_grams) {
    dl_tensor *total = NULL;
    int l;
    if (n <= 0 || !features || !target_grams) return (dl_tensor *)dl__fail("dl_style_loss: need n > 0 layers");
    for (l = 0; l < n; l++) {
        dl_tensor *t = dl_mse(dl_gram(features[l]), target_grams[l]);
        total = l == 0 ? t : dl_add(total, t);
    }
    return dl_mul_scalar(total, 1.0f / (float)n);
}

DLDEF dl_tensor *dl_content_loss(int n, dl_tensor *const *features, dl_tensor *const *targets) {
    dl_tensor *total = NULL;
    int l;
    if (n <= 0 || !features || !targets) return (dl_tensor *)dl__fail("dl_content_loss: need n > 0 layers");
    for (l = 0; l < n; l++) {
        dl_tensor *t = dl_mse(features[l], targets[l]);
        total = l == 0 ? t : dl_add(total, t);
    }
    return dl_mul_scalar(total, 1.0f / (float)n);
}

DLDEF dl_tensor *dl_total_variation(dl_tensor *x) {
    dl_tensor *dv, *dh;
    if (!x) return NULL;
    if (x->ndim != 4 || x->shape[2] < 1 || x->shape[3] < 1)
        return (dl_tensor *)dl__fail("dl_total_variation: x must be [N, C, H, W] with H, W >= 1");
    if (x->shape[2] == 1) dv = dl_scalar(0.0f);
    else dv = dl_sum_all(dl_abs(dl_sub(dl_slice(x, 2, 1, x->shape[2], 1), dl_slice(x, 2, 0, x->shape[2] - 1, 1))));
    if (x->shape[3] == 1) dh = dl_scalar(0.0f);
    else dh = dl_sum_all(dl_abs(dl_sub(dl_slice(x, 3, 1, x->shape[3], 1), dl_slice(x, 3, 0, x->shape[3] - 1, 1))));
    return dl_add(dv, dh);
}

struct dl_style_transfer {
    dl_vgg19 *net;                                  /* borrowed */
    double style_weight, content_weight, tv_weight;
    int n_style, n_content;
    int layers[2 * DL_VGG19_NUM_LAYERS];            /* style layers, then content layers */
    dl_tensor *targets[2 * DL_VGG19_NUM_LAYERS];    /* style Grams, then content features; owned */
    dl_tensor *image;                               /* owned, requires_grad */
    dl_optim *adam;
    dl_lbfgs *lbfgs;
    dl_arena *arena;
    dl_style_losses last;                           /* of the latest evaluation */
    dl_style_losses first;                          /* of a step's first evaluation */
    int evals;                                      /* evaluations in this step */
};

/* Names in a comma-separated list -> layer indices; count or -1. */
static int dl__style_parse_layers(const char *list, int *idx, int max) {
    int n = 0;
    const char *p = list;
    while (*p) {
        char name[32];
        size_t len = strcspn(p, ",");
        int i;
        if (len == 0 || len >= sizeof name || n == max) {
            dl_set_error("dl_style_transfer_new: bad layer list \"%.60s\"", list);
            return -1;
        }
        memcpy(name, p, len);
        name[len] = 0;
        if ((i = dl_vgg19_find_layer(name)) < 0) return -1;
        idx[n++] = i;
        p += len;
        if (*p == ',') p++;
    }
    if (n == 0) dl_set_error("dl_style_transfer_new: empty layer list");
    return n ? n : -1;
}

static double dl__style_opt(double v, double def) { return v == DL_ZERO ? 0.0 : v == 0 ? def : v; }

/* The weighted losses at the current image, in the current arena; the total, or NULL. */
static dl_tensor *dl__style_eval(dl_style_transfer *st) {
    dl_tensor *f[2 * DL_VGG19_NUM_LAYERS], *ls, *lc, *lt, *total;
    if (dl_vgg19_features(st->net, st->image, st->n_style + st->n_content, st->layers, f) != 0) return NULL;
    ls = dl_mul_scalar(dl_style_loss(st->n_style, f, st->targets), (float)st->style_weight);
    lc = dl_mul_scalar(dl_content_loss(st->n_content, f + st->n_style, st->targets + st->n_style),
                       (float)st->content_weight);
    lt = dl_mul_scalar(dl_total_variation(st->image), (float)st->tv_weight);
    total = dl_add(dl_add(ls, lc), lt);
    if (!total) return NULL;
    st->last.style = dl_item(ls);
    st->last.content = dl_item(lc);
    st->last.tv = dl_item(lt);
    st->last.total = dl_item(total);
    return total;
}

static void dl__style_clamp(dl_style_transfer *st) {
    float *p = dl_f32(st->image);
    size_t i;
    for (i = 0; i < st->image->numel; i++) p[i] = p[i] < 0.0f ? 0.0f : p[i] > 1.0f ? 1.0f : p[i];
}

DLDEF void dl_style_transfer_free(dl_style_transfer *st) {
    int i;
    if (!st) return;
    for (i = 0; i < 2 * DL_VGG19_NUM_LAYERS; i++) dl_tensor_free(st->targets[i]);
    dl_tensor_free(st->image);
    dl_optim_free(st->adam);
    dl_lbfgs_free(st->lbfgs);
    dl_arena_free(st->arena);
    DL_FREE(st);
}

DLDEF dl_style_transfer *dl_style_transfer_new(dl_vgg19 *net, dl_tensor *content, dl_tensor *style,
                                               const dl_style_transfer_opts *opts) {
    const char *op = "dl_style_transfer_new";
    dl_style_transfer_opts o;
    dl_style_transfer *st;
    dl_arena *prev;
    dl_tensor *f[2 * DL_VGG19_NUM_LAYERS];
    int i, ns, nc, ok, old_grad;
    if (!net || !content || !style) return (dl_style_transfer *)dl__fail("%s: net, content and style are needed", op);
    if (content->ndim != 4 || content->shape[0] != 1 || content->shape[1] != 3 || content->dtype != DL_DTYPE_F32 ||
        style->ndim != 4 || style->shape[0] != 1 || style->shape[1] != 3 || style->dtype != DL_DTYPE_F32)
        return (dl_style_transfer *)dl__fail("%s: content and style must be f32 [1, 3, H, W]", op);
    if (opts) o = *opts; else memset(&o, 0, sizeof o);
    if (o.optimizer != DL_STYLE_OPTIMIZER_ADAM && o.optimizer != DL_STYLE_OPTIMIZER_LBFGS)
        return (dl_style_transfer *)dl__fail("%s: unknown optimizer %d", op, (int)o.optimizer);
    if (o.lbfgs_iters < 0) return (dl_style_transfer *)dl__fail("%s: lbfgs_iters must be >= 0", op);
    if (!(o.style_weight >= 0 || o.style_weight == DL_ZERO) || !(o.content_weight >= 0 || o.content_weight == DL_ZERO) ||
        !(o.tv_weight >= 0 || o.tv_weight == DL_ZERO) || !(o.lr >= 0 || o.lr == DL_ZERO) ||
        !(o.beta1 >= 0 || o.beta1 == DL_ZERO) || !(o.eps >= 0 || o.eps == DL_ZERO))
        return (dl_style_transfer *)dl__fail("%s: weights, lr, beta1 and eps must be >= 0 (or DL_ZERO)", op);
    st = (dl_style_transfer *)DL_MALLOC(sizeof(*st));
    if (!st) return (dl_style_transfer *)dl__fail("%s: out of memory", op);
    memset(st, 0, sizeof(*st));
    st->net = net;
    st->style_weight = dl__style_opt(o.style_weight, 1e-2);
    st->content_weight = dl__style_opt(o.content_weight, 1e4);
    st->tv_weight = dl__style_opt(o.tv_weight, 30.0);
    ns = dl__style_parse_layers(o.style_layers ? o.style_layers : "block1_conv1,block2_conv1,block3_conv1,block4_conv1,block5_conv1",
                                st->layers, DL_VGG19_NUM_LAYERS);
    nc = ns < 0 ? -1 : dl__style_parse_layers(o.content_layers ? o.content_layers : "block5_conv2",
                                               st->layers + ns, DL_VGG19_NUM_LAYERS);
    if (ns < 0 || nc < 0) { dl_style_transfer_free(st); return NULL; }
    st->n_style = ns;
    st->n_content = nc;
    st->arena = dl_arena_new(0);
    st->image = dl_tensor_clone(content);
    if (!st->arena || !st->image) { dl_style_transfer_free(st); return (dl_style_transfer *)dl__fail("%s: out of memory", op); }
    /* the targets: the style image's Grams and the content image's features, kept */
    prev = dl_arena_use(st->arena);
    old_grad = dl_no_grad(1);
    ok = dl_vgg19_features(net, style, ns, st->layers, f) == 0;
    for (i = 0; ok && i < ns; i++) ok = (st->targets[i] = dl_tensor_clone(dl_gram(f[i]))) != NULL;
    dl_arena_reset(st->arena);
    ok = ok && dl_vgg19_features(net, content, nc, st->layers + ns, f) == 0;
    for (i = 0; ok && i < nc; i++) ok = (st->targets[ns + i] = dl_tensor_clone(f[i])) != NULL;
    dl_arena_reset(st->arena);
    dl_no_grad(old_grad);
    dl_arena_use(prev);
    if (!ok) { dl__style_wrap(op, NULL); dl_style_transfer_free(st); return NULL; }
    dl_set_requires_grad(st->image, 1);
    if (o.optimizer == DL_STYLE_OPTIMIZER_ADAM) {
        dl_optim_opts ao;
        memset(&ao, 0, sizeof ao);
        ao.lr = dl__style_opt(o.lr, 0.02);
        ao.beta1 = dl__style_opt(o.beta1, 0.99);
        ao.eps = dl__style_opt(o.eps, 0.1);
        if (ao.lr == 0) ao.lr = DL_ZERO;      /* dl_optim_opts' own way to say a real 0 */
        if (ao.beta1 == 0) ao.beta1 = DL_ZERO;
        if (ao.eps == 0) ao.eps = DL_ZERO;
        st->adam = dl_optim_new(DL_OPTIM_ADAM, &ao);
        ok = st->adam && dl_optim_add_params(st->adam, 1, &st->image) == 0;
    } else {
        dl_lbfgs_opts lo;
        memset(&lo, 0, sizeof lo);
        lo.lr = dl__style_opt(o.lr, 1.0);
        if (lo.lr == 0) lo.lr = DL_ZERO;
        lo.max_iter = o.lbfgs_iters;
        lo.line_search = o.line_search;
        st->lbfgs = dl_lbfgs_new(&lo);
        ok = st->lbfgs && dl_lbfgs_add_params(st->lbfgs, 1, &st->image) == 0;
    }
    if (!ok) { dl__style_wrap(op, NULL); dl_style_transfer_free(st); return NULL; }
    return st;
}

/* L-BFGS' closure: the total loss at the image, with its gradient in image->grad. */
static float dl__style_closure(void *user) {
    dl_style_transfer *st = (dl_style_transfer *)user;
    dl_tensor *loss;
    dl_arena_reset(st->arena);
    dl_zero_grad(st->image);
    loss = dl__style_eval(st);
    if (!loss || dl_backward(loss) != 0) return NAN;
    if (st->evals++ == 0) st->first = st->last;
    return st->last.total;
}

DLDEF int dl_style_transfer_step(dl_style_transfer *st, dl_style_losses *losses) {
    dl_arena *prev;
    int rc = 0;
    if (!st) { dl_set_error("dl_style_transfer_step: st is NULL"); return -1; }
    prev = dl_arena_use(st->arena);
    if (st->adam) {
        dl_tensor *loss;
        dl_arena_reset(st->arena);
        dl_optim_zero_grad(st->adam);
        loss = dl__style_eval(st);
        if (!loss || dl_backward(loss) != 0 || dl_optim_step(st->adam) != 0) rc = -1;
        if (losses && rc == 0) *losses = st->last;
    } else {
        float l0;
        st->evals = 0;
        l0 = dl_lbfgs_step(st->lbfgs, dl__style_closure, st);
        if (l0 != l0) rc = -1;
        if (losses && rc == 0) *losses = st->first;
    }
    dl_arena_reset(st->arena);
    dl_arena_use(prev);
    if (rc != 0) { dl__style_wrap("dl_style_transfer_step", NULL); return -1; }
    dl__style_clamp(st);
    return 0;
}

DLDEF int dl_style_transfer_losses(dl_style_transfer *st, dl_style_losses *losses) {
    dl_arena *prev;
    int old_grad, rc;
    if (!st) { dl_set_error("dl_style_transfer_losses: st is NULL"); return -1; }
    prev = dl_arena_use(st->arena);
    old_grad = dl_no_grad(1);
    dl_arena_reset(st->arena);
    rc = dl__style_eval(st) ? 0 : -1;
    dl_arena_reset(st->arena);
    dl_no_grad(old_grad);
    dl_arena_use(prev);
    if (rc != 0) { dl__style_wrap("dl_style_transfer_losses", NULL); return -1; }
    if (losses) *losses = st->last;
    return 0;
}

DLDEF dl_tensor *dl_style_transfer_image(const dl_style_transfer *st) { return st ? st->image : NULL; }

/* ==== END OF STYLE TRANSFER implementation ==== */

#endif /* DL_IMPLEMENTATION */

/*
------------------------------------------------------------------------------
MIT License

Copyright (c) 2026 the dl authors

Permission is hereby granted, free of charge, to any person obtaining a copy of
this software and associated documentation files (the "Software"), to deal in
the Software without restriction, including without limitation the rights to
use, copy, modify, merge, publish, distribute, sublicense, and/or sell copies
of the Software, and to permit persons to whom the Software is furnished to do
so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
------------------------------------------------------------------------------
*/
