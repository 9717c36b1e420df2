/* examples/gan_mnist.c - a generative adversarial network that draws Fashion-MNIST clothes.

   The GAN lesson's Keras recipe (Goodfellow et al. 2014; the dense GAN of the Keras-GAN
   collection that courses follow), line for line:

       d = discriminator(); d.compile(loss="binary_crossentropy", optimizer=Adam(2e-4, 0.5))
       g = generator()
       d.trainable = False
       combined = Model(z, d(g(z))); combined.compile(loss="binary_crossentropy", optimizer=Adam(2e-4, 0.5))
       for each step:
           imgs = a random batch of real images in [-1, 1]; noise = N(0, 1) [batch, 100]
           d.train_on_batch(imgs, ones); d.train_on_batch(g.predict(noise), zeros)
           combined.train_on_batch(noise, ones)

   D is a binary classifier (real = 1, fake = 0). G is trained through D with D frozen, against
   the label 1 on its fakes. "combined" holds the same layers as g and d (dl_model_as_layer), so
   its training moves g's weights and never d's, while d's own training still moves d's.

   Networks (as Keras-GAN's gan.py):
       G: Dense 256, LeakyReLU 0.2, BN 0.8; Dense 512, LeakyReLU, BN; Dense 1024, LeakyReLU, BN;
          Dense 784 tanh; Reshape [1, 28, 28]
       D: Flatten; Dense 512, LeakyReLU 0.2; Dense 256, LeakyReLU 0.2; Dense 1 sigmoid

   Build and run (from the repository root):
       make build/gan_mnist && ./build/gan_mnist --steps 30000
   On an NVIDIA GPU (README, "GPU"): dl_cuda.cu built by nvcc, this file with DL_CUDA, then --device cuda:
       nvcc -O2 -I. -c dl_cuda.cu -o build/dl_cuda.o
       cc -std=c99 -O2 -DDL_CUDA -I. examples/gan_mnist.c build/dl_cuda.o -o build/gan_mnist_cuda \
          -L/usr/local/cuda/lib64 -lcudart -lcublas -lm -lpthread -lstdc++
       ./build/gan_mnist_cuda --device cuda
   Pictures (needs Debian's libstb-dev): every --every steps, a grid of 25 samples from a fixed
   noise batch, DIR/samples_STEP.png, and at the end DIR/losses.png (D's and G's loss against
   the step). --samples N writes N generated images to
   DIR/samples.safetensors ("images", f32 [N, 1, 28, 28] in [0, 1]) for examples/gan_eval.c.

   Flags:
       --data DIR    Fashion-MNIST (default: Debian's dataset-fashion-mnist when installed, else
                     the 3000-image subset in data/fashion-mnist); MNIST's files work too
       --steps N     training steps (default 5000)
       --batch B     batch size (default 32)
       --seed S      weights, noise and batches (default 1)
       --out DIR     where pictures go (default build/gan_mnist.out)
       --every N     a sample grid every N steps (default steps / 10)
       --samples N   generated images to save at the end (default 0)
       --threads T   threads (default: DL_NUM_THREADS or all CPUs)
       --device D    cpu (default) or cuda: g and d (weights, optimizer state) on the GPU
                     (dl_model_move of combined, which holds both), the images on the host,
                     each batch and the noise copied over. Needs the CUDA build above; without
                     it, or without a usable GPU, the program says why and exits with status 1

   The last line is the metric line: d_loss=... g_loss=... d_real=... d_fake=..., the means
   over the last 200 steps (d_real, d_fake: D's mean output on real and generated batches; at
   the game's equilibrium both are near 0.5). */
#define _POSIX_C_SOURCE 200809L   /* mkdir */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

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
    return dl_sequential(dl_Dense(256, DL_ACT_LINEAR), dl_LeakyReLU(0.2f), dl_BatchNormalization(0.8f, 0),
                         dl_Dense(512, DL_ACT_LINEAR), dl_LeakyReLU(0.2f), dl_BatchNormalization(0.8f, 0),
                         dl_Dense(1024, DL_ACT_LINEAR), dl_LeakyReLU(0.2f), dl_BatchNormalization(0.8f, 0),
                         dl_Dense(28 * 28, DL_ACT_TANH), dl_Reshape(3, DL_SHAPE(1, 28, 28)));
}

static dl_model *discriminator(void) {
    return dl_sequential(dl_Flatten(), dl_Dense(512, DL_ACT_LINEAR), dl_LeakyReLU(0.2f),
                         dl_Dense(256, DL_ACT_LINEAR), dl_LeakyReLU(0.2f), dl_Dense(1, DL_ACT_SIGMOID));
}

static dl_optim *adam_2e4_05(void) {   /* Adam(2e-4, beta_1 = 0.5), Radford et al.'s choice */
    dl_optim_opts o;
    memset(&o, 0, sizeof o);
    o.lr = 2e-4;
    o.beta1 = 0.5;
    return dl_optim_new(DL_OPTIM_ADAM, &o);
}

static dl_device device = DL_DEVICE_CPU;   /* --device */

/* G's images, from [-1, 1] (tanh) to [0, 1]: an owned tensor of n images. */
static dl_tensor *generate(dl_model *g, int n, dl_rng *rng) {
    dl_tensor *out = dl_tensor_new(DL_DTYPE_F32, 4, DL_SHAPE(n, 1, 28, 28));
    int i0, grad = dl_no_grad(1);
    size_t j;
    for (i0 = 0; out && i0 < n; i0 += 500) {
        int b = n - i0 < 500 ? n - i0 : 500;
        dl_tensor *z = dl_tmp(DL_DTYPE_F32, 2, DL_SHAPE(b, LATENT)), *x;
        dl_fill_normal(z, 0.0f, 1.0f, rng);
        if (!(x = dl_to_device(dl_model_call(g, dl_to_device(z, device), 0), DL_DEVICE_CPU))) { dl_tensor_free(out); out = NULL; break; }
        for (j = 0; j < x->numel; j++) dl_f32(out)[(size_t)i0 * 784 + j] = 0.5f * dl_f32(x)[j] + 0.5f;
        dl_arena_reset(dl_arena_current());
    }
    dl_no_grad(grad);
    return out;
}

int main(int argc, char **argv) {
    const char *data = NULL, *out = "build/gan_mnist.out", *device_name = "cpu";
    int steps = 5000, batch = 32, seed = 1, every = 0, n_samples = 0, threads = 0, i, step, ok = 0, tail = 0;
    double sum_d = 0, sum_g = 0, sum_real = 0, sum_fake = 0, *curve = NULL;
    dl_dataset *train = NULL;
    dl_model *g = NULL, *d = NULL, *combined = NULL;
    dl_layer *frozen_d;
    dl_batcher *batches = NULL;
    dl_batch_opts bo;
    dl_tensor *fixed_z = NULL, *ones, *zeros;
    dl_rng rng;
    char path[1200];

    for (i = 1; i < argc; i += 2) {   /* --flag value pairs */
        const char *flag = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!val) flag = "";
        if (strcmp(flag, "--data") == 0) data = val;
        else if (strcmp(flag, "--steps") == 0) steps = atoi(val);
        else if (strcmp(flag, "--batch") == 0) batch = atoi(val);
        else if (strcmp(flag, "--seed") == 0) seed = atoi(val);
        else if (strcmp(flag, "--out") == 0) out = val;
        else if (strcmp(flag, "--every") == 0) every = atoi(val);
        else if (strcmp(flag, "--samples") == 0) n_samples = atoi(val);
        else if (strcmp(flag, "--threads") == 0) threads = atoi(val);
        else if (strcmp(flag, "--device") == 0 && (strcmp(val, "cpu") == 0 || strcmp(val, "cuda") == 0)) device_name = val;
        else {
            fprintf(stderr, "usage: %s [--data DIR] [--steps N] [--batch B] [--seed S] [--out DIR] [--every N] "
                            "[--samples N] [--threads T] [--device cpu|cuda]\n", argv[0]);
            return 2;
        }
    }
    if (strcmp(device_name, "cuda") == 0) {   /* fails with the reason: no DL_CUDA build, no driver, no GPU */
        device = DL_DEVICE_CUDA;
        if (dl_cuda_init() != 0) { fprintf(stderr, "error: --device cuda: %s\n", dl_error()); return 1; }
    }
    if (steps < 1 || batch < 1 || n_samples < 0) { fprintf(stderr, "error: --steps and --batch must be >= 1\n"); return 2; }
    if (every <= 0) every = steps / 10 > 0 ? steps / 10 : 1;
    if (threads > 0) dl_set_num_threads(threads);
    {   /* the output folder: made, or already there (and a folder, not a file) */
        struct stat sb;
        if (mkdir(out, 0755) != 0 && errno != EEXIST) { perror(out); return 1; }
        if (stat(out, &sb) != 0 || !S_ISDIR(sb.st_mode)) { fprintf(stderr, "error: --out %s is not a folder\n", out); return 1; }
    }

    if (!data) data = has_fashion_mnist(FULL_DIR) ? FULL_DIR : SUBSET_DIR;
    if (!(train = dl_fashion_mnist_load(data, 1))) { fprintf(stderr, "error: %s\n", dl_error()); goto done; }
    for (i = 0; i < (int)train->x->numel; i++) dl_f32(train->x)[i] = 2.0f * dl_f32(train->x)[i] - 1.0f;   /* [-1, 1], as tanh */
    printf("Fashion-MNIST from %s: %d training images\n", data, train->n);

    dl_nn_seed((uint64_t)seed);
    dl_rng_seed(&rng, (uint64_t)seed + 1000);
    d = discriminator();
    if (!d || dl_compile(d, adam_2e4_05(), DL_LOSS_BINARY_CE, DL_METRIC_ACCURACY) != 0) goto fail;
    g = generator();
    if (!g) goto fail;
    frozen_d = dl_model_as_layer(d);
    if (!frozen_d) goto fail;
    frozen_d->trainable = 0;   /* d.trainable = False: frozen inside combined only */
    combined = dl_sequential(dl_model_as_layer(g), frozen_d);
    if (!combined || dl_compile(combined, adam_2e4_05(), DL_LOSS_BINARY_CE, 0) != 0 ||
        dl_model_build(combined, 1, DL_SHAPE(LATENT)) != 0)
        goto fail;
    dl_model_print_summary(combined);
    if (device != DL_DEVICE_CPU) {   /* g's and d's weights (combined holds both) to the GPU */
        if (dl_model_move(combined, device) != 0) goto fail;
        printf("training on the %s\n", dl_device_name(device));
    }

    memset(&bo, 0, sizeof bo);
    bo.shuffle = 1;
    bo.seed = (uint64_t)seed;
    bo.drop_last = 1;
    if (!(batches = dl_batcher_new(train, batch, &bo))) goto fail;
    if (!(fixed_z = dl_tensor_new(DL_DTYPE_F32, 2, DL_SHAPE(25, LATENT)))) goto fail;
    if (!(curve = (double *)malloc(2 * (size_t)steps * sizeof *curve))) { fprintf(stderr, "error: out of memory\n"); goto done; }
    dl_fill_normal(fixed_z, 0.0f, 1.0f, &rng);

    for (step = 1; step <= steps; step++) {
        dl_tensor *real, *z, *fake;
        double d_real, d_fake, g_loss;
        int r, grad;
        dl_arena_reset(dl_arena_current());
        if ((r = dl_batcher_next(batches, &real, NULL)) == 0) r = dl_batcher_next(batches, &real, NULL);   /* a new epoch */
        if (r < 0) goto fail;
        z = dl_tmp(DL_DTYPE_F32, 2, DL_SHAPE(batch, LATENT));
        dl_fill_normal(z, 0.0f, 1.0f, &rng);
        ones = dl_full(1, DL_SHAPE(batch), 1.0f);
        zeros = dl_full(1, DL_SHAPE(batch), 0.0f);
        grad = dl_no_grad(1);
        fake = dl_model_call(g, dl_to_device(z, device), 0);   /* g.predict(noise) */
        dl_no_grad(grad);
        d_real = dl_train_on_batch(d, real, ones);
        d_fake = dl_train_on_batch(d, fake, zeros);
        g_loss = dl_train_on_batch(combined, z, ones);
        if (isnan(d_real) || isnan(d_fake) || isnan(g_loss)) goto fail;
        curve[step - 1] = 0.5 * (d_real + d_fake);
        curve[steps + step - 1] = g_loss;
        if (step > steps - 200) {   /* the metric line's window */
            int grad2 = dl_no_grad(1);
            dl_tensor *pr = dl_model_call(d, dl_to_device(real, device), 0), *pf = dl_model_call(d, fake, 0);
            dl_no_grad(grad2);
            if (!pr || !pf) goto fail;
            sum_real += dl_item(dl_mean_all(pr));
            sum_fake += dl_item(dl_mean_all(pf));
            sum_d += 0.5 * (d_real + d_fake);
            sum_g += g_loss;
            tail++;
        }
        if (step % every == 0 || step == steps) {
            printf("step %d/%d: d_loss %.4f g_loss %.4f\n", step, steps, 0.5 * (d_real + d_fake), g_loss);
            fflush(stdout);
#ifdef DL_HAVE_PNG
            {
                int grad3 = dl_no_grad(1);
                dl_tensor *x = dl_model_call(g, dl_to_device(fixed_z, device), 0);
                dl_no_grad(grad3);
                snprintf(path, sizeof path, "%s/samples_%06d.png", out, step);
                if (!x || dl_image_grid_save(x, path, 5, -1.0f, 1.0f) != 0) goto fail;
            }
#endif
        }
    }
#ifdef DL_HAVE_PNG
    {   /* the loss curves */
        dl_plot_series s[2];
        unsigned char *rgb = (unsigned char *)calloc(640 * 360 * 3, 1);
        memset(s, 0, sizeof s);
        s[0].name = "D loss"; s[0].y = curve; s[0].n = steps;
        s[1].name = "G loss"; s[1].y = curve + steps; s[1].n = steps;
        snprintf(path, sizeof path, "%s/losses.png", out);
        if (!rgb || dl_plot_draw(rgb, 640, 360, 0, 0, 640, 360, "losses against steps", 2, s) != 0 ||
            dl_png_save(path, rgb, 640, 360, 3) != 0) {
            free(rgb);
            goto fail;
        }
        free(rgb);
    }
#else
    printf("(built without <stb/stb_image_write.h>: no pictures; Debian: apt-get install libstb-dev)\n");
#endif
    if (n_samples > 0) {
        dl_tensor *imgs = generate(g, n_samples, &rng);
        const char *name = "images";
        snprintf(path, sizeof path, "%s/samples.safetensors", out);
        if (!imgs || dl_safetensors_save(path, 1, &name, &imgs, 0, NULL, NULL) != 0) { dl_tensor_free(imgs); goto fail; }
        dl_tensor_free(imgs);
        printf("%d generated images in %s (examples/gan_eval.c measures them)\n", n_samples, path);
    }
    printf("pictures in %s\n", out);
    printf("d_loss=%.4f g_loss=%.4f d_real=%.4f d_fake=%.4f\n", sum_d / tail, sum_g / tail, sum_real / tail, sum_fake / tail);
    ok = 1;
    goto done;
fail:
    fprintf(stderr, "error: %s\n", dl_error());
done:
    free(curve);
    dl_tensor_free(fixed_z);
    dl_batcher_free(batches);
    dl_model_free(combined);
    dl_model_free(g);
    dl_model_free(d);
    dl_dataset_free(train);
    dl_arena_free_default();
    dl_threads_shutdown();
    return ok ? 0 : 1;
}
