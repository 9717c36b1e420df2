/* examples/dcgan.c - a deep convolutional GAN (Radford et al. 2016) on Fashion-MNIST.

   TensorFlow's DCGAN tutorial (tensorflow.org/tutorials/generative/dcgan) in C, with dl_gan's
   training step (the loop the tutorial writes with GradientTape) instead of a compiled model:

       G: Dense 7*7*256, BN, LeakyReLU; Reshape [256, 7, 7]
          Conv2DTranspose 128 5x5 stride 1 same, BN, LeakyReLU          -> [128, 7, 7]
          Conv2DTranspose  64 5x5 stride 2 same, BN, LeakyReLU          -> [64, 14, 14]
          Conv2DTranspose   1 5x5 stride 2 same, tanh                   -> [1, 28, 28]
       D: Conv2D 64 5x5 stride 2 same, LeakyReLU, Dropout 0.3
          Conv2D 128 5x5 stride 2 same, LeakyReLU, Dropout 0.3, Flatten, Dense 1 (a logit)
       losses: binary cross-entropy from logits (D: real 1, fake 0; G: its fakes 1)
       Adam 1e-4 for both, batch 256, noise 100, LeakyReLU's Keras default slope 0.3

   The differences: images are NCHW; dl's Dense and Conv2DTranspose always have a bias (the
   tutorial turns it off before batch normalization, which cancels it anyway); the tutorial's
   step computes both losses before either update, dl_gan updates D first and G through the
   new D (the PyTorch tutorial's order).

   Build and run (from the repository root):
       make build/dcgan && ./build/dcgan --minutes 30 --samples 10000
   On an NVIDIA GPU (README, "GPU"): dl_cuda.cu built by nvcc, this file with DL_CUDA, then --device cuda:
       nvcc -O2 -I. -c dl_cuda.cu -o build/dl_cuda.o
       cc -std=c99 -O2 -DDL_CUDA -I. examples/dcgan.c build/dl_cuda.o -o build/dcgan_cuda \
          -L/usr/local/cuda/lib64 -lcudart -lcublas -lm -lpthread -lstdc++
       ./build/dcgan_cuda --device cuda --minutes 30 --samples 10000
   What 30 minutes give on 2 cores: with --batch 64 --lr 2e-4 --beta1 0.5 --ema 0.999 (Radford
   et al.'s Adam, the average of G's weights), 6312 steps, Inception score 5.90 and Frechet
   distance 27.9 by examples/gan_eval.c (real images: 8.43 and 0.22; gan_mnist's dense GAN after
   10000 steps: 5.42 and 61.6). The tutorial's settings learn more slowly per minute.
   Pictures (with Debian's libstb-dev): DIR/samples_STEP.png, a 4x4 grid from a fixed noise
   batch every --every steps, and DIR/losses.png (losses, D's outputs) at the end. The run can
   stop and go on: DIR/checkpoint.safetensors (both models, both optimizers, the step, the
   noise generator, the history) is written with the pictures; --resume continues from it with
   the same bits as a run that never stopped. --samples N writes N generated images to
   DIR/samples.safetensors for examples/gan_eval.c.

   Flags:
       --data DIR      Fashion-MNIST (default: Debian's dataset-fashion-mnist when installed,
                       else the 3000-image subset in data/fashion-mnist)
       --epochs N      passes over the training images (default 50, the tutorial's)
       --steps N       stop after N steps instead (batches)
       --minutes M     stop after M minutes (checked after each step)
       --batch B       batch size (default 256)
       --seed S        weights, noise and batches (default 1)
       --out DIR       pictures and checkpoint (default build/dcgan.out)
       --every N       pictures and a checkpoint every N steps (default 200)
       --resume        continue from DIR/checkpoint.safetensors
       --samples N     generated images to save at the end (default 0)
       --lr X          Adam's learning rate for both (default 1e-4, the tutorial's)
       --d-lr X        D's learning rate instead (default: --lr; Heusel et al. 2017's two
                       time-scale rule, TTUR, gives D the larger one)
       --beta1 X       Adam's beta_1 for both (default 0.9, Keras'; Radford et al. use 2e-4 and 0.5)
       --smooth S      one-sided label smoothing: D's real label 1 - S (Salimans et al. 2016;
                       default 0)
       --ema D         also average G's weights (dl_gan_opts.ema_decay, e.g. 0.999) and draw the
                       pictures and --samples from the average (default 0: the last weights)
       --threads T     threads (default: DL_NUM_THREADS or all CPUs)
       --device D      cpu (default) or cuda: the gan (both models, both optimizers, G's
                       average) on the GPU (dl_gan_move), the images on the host, each batch
                       copied over; the noise is drawn as on the CPU (D's dropout masks are the
                       GPU's own). Checkpoints are the same files on both devices (--resume
                       works across them). Needs the CUDA build above; without it, or without a
                       usable GPU, the program says why and exits with status 1

   The last line is the metric line: d_loss=... g_loss=... d_real=... d_fake=... steps=...
   (means over the last 50 steps; d_real and d_fake are D's mean probabilities). */
#define _POSIX_C_SOURCE 200809L   /* mkdir */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#if defined(__has_include)
#if __has_include(<stb/stb_image_write.h>)
#define HAVE_STB 1
#endif
#endif
#ifdef HAVE_STB   /* before the dl headers: dl_png_save and dl_image_grid_save turn on */
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#endif
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_image_write.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif
#endif

#define DL_IMPLEMENTATION
#include "dl_gan.h"

#define FULL_DIR "/usr/share/datasets/fashion-mnist"
#define SUBSET_DIR "data/fashion-mnist"
#define LATENT 100

static int has_fashion_mnist(const char *dir) {
    char path[1024];
    FILE *f;
    snprintf(path, sizeof path, "%s/t10k-labels-idx1-ubyte.gz", dir);
    if ((f = fopen(path, "rb")) == NULL) {
        snprintf(path, sizeof path, "%s/t10k-labels-idx1-ubyte", dir);
        f = fopen(path, "rb");
    }
    if (f) fclose(f);
    return f != NULL;
}

static dl_model *generator(void) {
    return dl_sequential(dl_Dense(7 * 7 * 256, DL_ACT_LINEAR), dl_BatchNormalization(0, 0), dl_LeakyReLU(0),
                         dl_Reshape(3, DL_SHAPE(256, 7, 7)),
                         dl_Conv2DTranspose(128, 5, 1, DL_PADDING_SAME, DL_ACT_LINEAR), dl_BatchNormalization(0, 0), dl_LeakyReLU(0),
                         dl_Conv2DTranspose(64, 5, 2, DL_PADDING_SAME, DL_ACT_LINEAR), dl_BatchNormalization(0, 0), dl_LeakyReLU(0),
                         dl_Conv2DTranspose(1, 5, 2, DL_PADDING_SAME, DL_ACT_TANH));
}

static dl_model *discriminator(void) {
    return dl_sequential(dl_Conv2D(64, 5, 2, DL_PADDING_SAME, DL_ACT_LINEAR), dl_LeakyReLU(0), dl_Dropout(0.3f),
                         dl_Conv2D(128, 5, 2, DL_PADDING_SAME, DL_ACT_LINEAR), dl_LeakyReLU(0), dl_Dropout(0.3f),
                         dl_Flatten(), dl_Dense(1, DL_ACT_LINEAR));
}

/* n generated images in [0, 1] (an owned tensor), 500 at a time. */
static dl_tensor *generate(dl_model *g, dl_gan *gan, int n) {
    dl_tensor *out = dl_tensor_new(DL_DTYPE_F32, 4, DL_SHAPE(n, 1, 28, 28));
    int i0, grad = dl_no_grad(1);
    size_t j;
    for (i0 = 0; out && i0 < n; i0 += 500) {
        int b = n - i0 < 500 ? n - i0 : 500;
        dl_tensor *x = dl_to_device(dl_model_call(g, dl_gan_noise(gan, b), 0), DL_DEVICE_CPU);   /* (read back from a GPU) */
        if (!x) { dl_tensor_free(out); out = NULL; break; }
        for (j = 0; j < x->numel; j++) dl_f32(out)[(size_t)i0 * 784 + j] = 0.5f * dl_f32(x)[j] + 0.5f;
        dl_arena_reset(dl_arena_current());
    }
    dl_no_grad(grad);
    return out;
}

int main(int argc, char **argv) {
    const char *data = NULL, *out = "build/dcgan.out", *device_name = "cpu";
    int epochs = 50, steps = 0, batch = 256, seed = 1, every = 200, resume = 0, n_samples = 0, threads = 0;
    int i, ok = 0, r;
    double minutes = 0, t0, lr = 1e-4, d_lr = 0, beta1 = 0.9, ema = 0, smooth = 0;
    dl_optim_opts oo;
    dl_dataset *train = NULL;
    dl_model *g = NULL, *d = NULL;
    dl_gan *gan = NULL;
    dl_gan_opts go;
    dl_batcher *batches = NULL;
    dl_batch_opts bo;
    dl_tensor *fixed_z = NULL;
    dl_device device = DL_DEVICE_CPU;
    dl_rng fixed_rng;
    char path[1200], ckpt[1200];

    for (i = 1; i < argc; i++) {
        const char *flag = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(flag, "--resume") == 0) { resume = 1; continue; }
        if (!val) flag = "";
        i++;
        if (strcmp(flag, "--data") == 0) data = val;
        else if (strcmp(flag, "--epochs") == 0) epochs = atoi(val);
        else if (strcmp(flag, "--steps") == 0) steps = atoi(val);
        else if (strcmp(flag, "--minutes") == 0) minutes = atof(val);
        else if (strcmp(flag, "--batch") == 0) batch = atoi(val);
        else if (strcmp(flag, "--seed") == 0) seed = atoi(val);
        else if (strcmp(flag, "--out") == 0) out = val;
        else if (strcmp(flag, "--every") == 0) every = atoi(val);
        else if (strcmp(flag, "--samples") == 0) n_samples = atoi(val);
        else if (strcmp(flag, "--threads") == 0) threads = atoi(val);
        else if (strcmp(flag, "--lr") == 0) lr = atof(val);
        else if (strcmp(flag, "--d-lr") == 0) d_lr = atof(val);
        else if (strcmp(flag, "--beta1") == 0) beta1 = atof(val);
        else if (strcmp(flag, "--ema") == 0) ema = atof(val);
        else if (strcmp(flag, "--smooth") == 0) smooth = atof(val);
        else if (strcmp(flag, "--device") == 0 && (strcmp(val, "cpu") == 0 || strcmp(val, "cuda") == 0)) device_name = val;
        else {
            fprintf(stderr, "usage: %s [--data DIR] [--epochs N] [--steps N] [--minutes M] [--batch B] [--seed S] "
                            "[--out DIR] [--every N] [--resume] [--samples N] [--lr X] [--d-lr X] [--beta1 X] [--smooth S] [--ema D] [--threads T] "
                            "[--device cpu|cuda]\n", argv[0]);
            return 2;
        }
    }
    if (strcmp(device_name, "cuda") == 0) {   /* fails with the reason: no DL_CUDA build, no driver, no GPU */
        device = DL_DEVICE_CUDA;
        if (dl_cuda_init() != 0) { fprintf(stderr, "error: --device cuda: %s\n", dl_error()); return 1; }
    }
    if (batch < 1 || every < 1 || epochs < 1 || steps < 0 || n_samples < 0) { fprintf(stderr, "error: bad flag value\n"); return 2; }
    if (threads > 0) dl_set_num_threads(threads);
    {   /* the output folder: made, or already there (and a folder, not a file) */
        struct stat sb;
        if (mkdir(out, 0755) != 0 && errno != EEXIST) { perror(out); return 1; }
        if (stat(out, &sb) != 0 || !S_ISDIR(sb.st_mode)) { fprintf(stderr, "error: --out %s is not a folder\n", out); return 1; }
    }
    snprintf(ckpt, sizeof ckpt, "%s/checkpoint.safetensors", out);

    if (!data) data = has_fashion_mnist(FULL_DIR) ? FULL_DIR : SUBSET_DIR;
    if (!(train = dl_fashion_mnist_load(data, 1))) goto fail;
    for (i = 0; i < (int)train->x->numel; i++) dl_f32(train->x)[i] = 2.0f * dl_f32(train->x)[i] - 1.0f;   /* [-1, 1] */
    printf("Fashion-MNIST from %s: %d training images\n", data, train->n);

    dl_nn_seed((uint64_t)seed);
    g = generator();
    d = discriminator();
    if (!g || !d || dl_model_build(g, 1, DL_SHAPE(LATENT)) != 0 || dl_model_build(d, 3, DL_SHAPE(1, 28, 28)) != 0) goto fail;
    memset(&go, 0, sizeof go);   /* zeros: BCE from logits, no instance noise */
    go.latent_dim = LATENT;
    go.seed = (uint64_t)seed;
    go.ema_decay = (float)ema;
    go.label_smoothing = (float)smooth;
    memset(&oo, 0, sizeof oo);
    oo.lr = lr;
    oo.beta1 = beta1 == 0 ? DL_ZERO : beta1;
    {
        dl_optim *g_opt = dl_optim_new(DL_OPTIM_ADAM, &oo), *d_opt;
        oo.lr = d_lr > 0 ? d_lr : lr;
        d_opt = dl_optim_new(DL_OPTIM_ADAM, &oo);
        if (!(gan = dl_gan_new(g, d, g_opt, d_opt, &go))) goto fail;
    }
    dl_model_print_summary(g);
    dl_model_print_summary(d);
    if (device != DL_DEVICE_CPU) {   /* models, optimizers and G's average to the GPU */
        if (dl_gan_move(gan, device) != 0) goto fail;
        printf("training on the %s\n", dl_device_name(device));
    }
    if (resume) {
        if (dl_gan_load(gan, ckpt) != 0) goto fail;
        printf("resumed from %s at step %ld\n", ckpt, dl_gan_steps(gan));
    }

    memset(&bo, 0, sizeof bo);
    bo.shuffle = 1;
    bo.seed = (uint64_t)seed;
    bo.drop_last = 1;
    if (!(batches = dl_batcher_new(train, batch, &bo))) goto fail;
    if (steps == 0) steps = epochs * dl_batcher_num_batches(batches);
    /* the data stream is a function of the step, so a resumed run sees the same batches */
    dl_batcher_set_epoch(batches, (int)(dl_gan_steps(gan) / dl_batcher_num_batches(batches)));
    for (i = 0; i < (int)(dl_gan_steps(gan) % dl_batcher_num_batches(batches)); i++) {
        dl_tensor *skip;
        dl_arena_reset(dl_arena_current());
        if (dl_batcher_next(batches, &skip, NULL) != 1) goto fail;
    }
    dl_rng_seed(&fixed_rng, 12345);
    if (!(fixed_z = dl_tensor_new(DL_DTYPE_F32, 2, DL_SHAPE(16, LATENT)))) goto fail;
    dl_fill_normal(fixed_z, 0.0f, 1.0f, &fixed_rng);

    t0 = (double)clock() / CLOCKS_PER_SEC;
    {
        time_t wall0 = time(NULL);
        while (dl_gan_steps(gan) < steps) {
            dl_tensor *real;
            dl_gan_stats st;
            long step;
            dl_arena_reset(dl_arena_current());
            if ((r = dl_batcher_next(batches, &real, NULL)) == 0) r = dl_batcher_next(batches, &real, NULL);
            if (r < 0 || dl_gan_train_step(gan, real, &st) != 0) goto fail;
            step = st.step;
            if (step % every == 0 || step == steps || (minutes > 0 && difftime(time(NULL), wall0) >= 60 * minutes)) {
                printf("step %ld/%d: d_loss %.4f g_loss %.4f D(x) %.3f D(G(z)) %.3f  (%.0f s)\n", step, steps, st.d_loss,
                       st.g_loss, st.d_real, st.d_fake, difftime(time(NULL), wall0));
                fflush(stdout);
#ifdef DL_HAVE_PNG
                {
                    int grad = dl_no_grad(1);
                    dl_tensor *x;
                    if (ema > 0 && dl_gan_ema_swap(gan) != 0) goto fail;   /* the average draws */
                    x = dl_model_call(g, dl_to_device(fixed_z, device), 0);
                    if (ema > 0 && dl_gan_ema_swap(gan) != 0) goto fail;   /* and back */
                    dl_no_grad(grad);
                    snprintf(path, sizeof path, "%s/samples_%06ld.png", out, step);
                    if (!x || dl_image_grid_save(x, path, 4, -1.0f, 1.0f) != 0) goto fail;
                }
#endif
                if (dl_gan_save(gan, ckpt) != 0) goto fail;
                if (minutes > 0 && difftime(time(NULL), wall0) >= 60 * minutes) break;
            }
        }
    }
    printf("trained to step %ld (%.0f s of CPU time in this run)\n", dl_gan_steps(gan), (double)clock() / CLOCKS_PER_SEC - t0);
#ifdef DL_HAVE_PNG
    snprintf(path, sizeof path, "%s/losses.png", out);
    if (dl_gan_plot_save(gan, path, 0, 0) != 0) goto fail;
    printf("pictures in %s\n", out);
#else
    printf("(built without <stb/stb_image_write.h>: no pictures; Debian: apt-get install libstb-dev)\n");
#endif
    if (n_samples > 0) {
        dl_tensor *imgs;
        if (ema > 0 && dl_gan_ema_swap(gan) != 0) goto fail;
        imgs = generate(g, gan, n_samples);
        if (ema > 0 && dl_gan_ema_swap(gan) != 0) { dl_tensor_free(imgs); goto fail; }
        const char *name = "images";
        snprintf(path, sizeof path, "%s/samples.safetensors", out);
        if (!imgs || dl_safetensors_save(path, 1, &name, &imgs, 0, NULL, NULL) != 0) { dl_tensor_free(imgs); goto fail; }
        dl_tensor_free(imgs);
        printf("%d generated images in %s (examples/gan_eval.c measures them)\n", n_samples, path);
    }
    {   /* the metric line: the last 50 rows of the history */
        const dl_gan_stats *h = dl_gan_history(gan);
        int n = dl_gan_history_len(gan), k, from = n > 50 ? n - 50 : 0;
        double m[4] = {0, 0, 0, 0};
        for (k = from; k < n; k++) {
            m[0] += h[k].d_loss; m[1] += h[k].g_loss; m[2] += h[k].d_real; m[3] += h[k].d_fake;
        }
        for (k = 0; k < 4; k++) m[k] /= n - from > 0 ? n - from : 1;
        printf("d_loss=%.4f g_loss=%.4f d_real=%.4f d_fake=%.4f steps=%ld\n", m[0], m[1], m[2], m[3], dl_gan_steps(gan));
    }
    ok = 1;
    goto done;
fail:
    fprintf(stderr, "error: %s\n", dl_error());
done:
    dl_tensor_free(fixed_z);
    dl_batcher_free(batches);
    dl_gan_free(gan);
    dl_model_free(g);
    dl_model_free(d);
    dl_dataset_free(train);
    dl_arena_free_default();
    dl_threads_shutdown();
    return ok ? 0 : 1;
}
