/* examples/cyclegan.c - CycleGAN: turn sneakers into ankle boots and back, without pairs.

   CycleGAN (Zhu, Park, Isola, Efros, "Unpaired Image-to-Image Translation using
   Cycle-Consistent Adversarial Networks", ICCV 2017) learns to translate images of one kind (A,
   say photos of horses) into another (B, zebras) from two unrelated piles of pictures: nobody
   says which zebra a horse should become. Two generators, G_AB: A -> B and G_BA: B -> A, each
   play a GAN against a discriminator of their target domain (D_B tells real B images from
   G_AB's, D_A real A from G_BA's), so that a translation looks like it belongs there. That
   alone would let G_AB map every horse to the same nice zebra; the cycle-consistency loss
   |G_BA(G_AB(a)) - a|_1 + |G_AB(G_BA(b)) - b|_1 asks that a round trip gives the picture back,
   so the translation must keep what the image was (pose, outline) and change only what makes
   it A or B. An identity term |G_AB(b) - b|_1 + |G_BA(a) - a|_1 (a B image should pass G_AB
   unchanged) keeps colours and tones. D trains on a pool of the last 50 fakes, not only the
   newest (Shrivastava et al. 2017), and the losses are least squares (LSGAN), which train more
   steadily than the log loss.

   Here A and B are two Fashion-MNIST classes, by default sneakers (7) and ankle boots (9):
   G_AB must grow a shaft on a sneaker, G_BA cut it off. dl_gan.h's CYCLEGAN section has the
   pieces, all as the authors' code (github.com/junyanz/pytorch-CycleGAN-and-pix2pix):
       networks  dl_cyclegan_generator: their ResNet generator (c7s1, two stride-2 convs down,
                 residual blocks, two up, c7s1, tanh; instance norm), 28 -> 14 -> 7 and back;
                 dl_cyclegan_discriminator: their PatchGAN, here with 2 stride-2 layers, so D
                 judges 5 x 5 overlapping patches of each image
       step      dl_cyclegan_train_step: their optimize_parameters() (lambda 10, identity 0.5,
                 Adam 2e-4 with beta1 0.5, image pools of 50)
       schedule  dl_lr_cyclegan: the learning rate constant for the first half of the steps,
                 then linearly to 0
   What is smaller than theirs (256x256 photos, 64 base channels, 9 blocks, batch 1, 200
   epochs): the images, the widths (--width, 16 by default), the blocks (--blocks, 6), and the
   run (minutes on one CPU core).

   Build and run (from the repository root):
       make build/cyclegan build/mnist_cnn
       ./build/mnist_cnn --features 128 --epochs 12 --save build/cls.safetensors   (the judge)
       ./build/cyclegan --steps 2000 --classifier build/cls.safetensors
   On an NVIDIA GPU (README, "GPU"): dl_cuda.cu built by nvcc, this file with DL_CUDA, then --device cuda:
       nvcc -O2 -I. -c dl_cuda.cu -o build/dl_cuda.o
       cc -std=c99 -O2 -DDL_CUDA -I. examples/cyclegan.c build/dl_cuda.o -o build/cyclegan_cuda \
          -L/usr/local/cuda/lib64 -lcudart -lcublas -lm -lpthread -lstdc++
       ./build/cyclegan_cuda --device cuda --steps 2000 --classifier build/cls.safetensors
   Pictures (with Debian's libstb-dev) in --out: a_to_b.png (rows of 8 test sneakers: the
   images, their translations to boots, and back), b_to_a.png (the same from boots), losses.png
   (every loss term against the step); and checkpoint.safetensors (the four networks, both
   optimizers, the step, the pools, the history), written every --every steps and at the end:
   --resume continues from it with the same bits as a run that never stopped.

   Measures, on the test images of both classes (1000 each in the full data set):
       cycle_l1  the mean |G_BA(G_AB(a)) - a| and |G_AB(G_BA(b)) - b| over every pixel, in
                 [0, 1] pixel units (0: the round trip gives the image back)
       share_ab  with --classifier (a model saved by examples/mnist_cnn.c --save): the share of
                 translated sneakers G_AB(a) it labels ankle boot; share_ba the share of G_BA(b)
                 it labels sneaker (for the real test images themselves it is about 0.97)

   Flags:
       --data DIR        Fashion-MNIST (default: Debian's dataset-fashion-mnist when installed,
                         else the 3000/1000-image subset in data/fashion-mnist)
       --a C, --b C      the two classes (default 7 and 9: sneaker, ankle boot)
       --steps N         training steps (default 2000)
       --batch B         images of each class a step (default 8)
       --width W         base channels of all four networks (default 16; theirs 64)
       --blocks N        residual blocks of the generators (default 6)
       --seed S          weights, batches and pools (default 1)
       --every N         pictures and checkpoint every N steps (default 500)
       --resume          continue from --out's checkpoint.safetensors
       --stop-at N       stop after step N, with a checkpoint (the learning-rate schedule still
                         spans --steps; --resume goes on from there)
       --classifier PATH report share_ab and share_ba with this classifier
       --out DIR         pictures and checkpoint (default build/cyclegan.out)
       --threads T       threads (default: DL_NUM_THREADS or all CPUs)
       --device D        cpu (default) or cuda: the four networks and both optimizers on the GPU
                         (dl_cyclegan_move), the images and the pools on the host, each batch
                         copied over (the classifier stays on the CPU). Checkpoints are the same
                         files on both devices. Needs the CUDA build above; without it, or
                         without a usable GPU, the program says why and exits with status 1

   Expected result (full data set, the defaults, --steps 5000, one thread: 18 minutes): the
   classifier labels 94.0% of the translated test sneakers ankle boots and 95.8% of the
   translated boots sneakers; cycle_l1 0.043. After 500 steps already 92.6% and 97.0%, blurrier.
   The last line is the metric line: cycle_l1=... [share_ab=... share_ba=...] steps=... */
#define _POSIX_C_SOURCE 200809L   /* mkdir */
#include <errno.h>
#include <math.h>
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
#define SHOW 8   /* images per picture row */

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

/* The images of one class, scaled from [0, 1] to [-1, 1] (the generators' tanh range). Owned. */
static dl_dataset *one_class(const dl_dataset *ds, int label) {
    int *idx = (int *)malloc((size_t)ds->n * sizeof *idx), n = 0, i;
    dl_dataset *out;
    if (!idx) { dl_set_error("out of memory"); return NULL; }
    for (i = 0; i < ds->n; i++)
        if (((const int32_t *)ds->y->data)[i] == label) idx[n++] = i;
    out = n > 0 ? dl_dataset_subset(ds, idx, n) : NULL;
    if (n == 0) dl_set_error("no images of class %d", label);
    free(idx);
    if (out)
        for (i = 0; i < (int)out->x->numel; i++) dl_f32(out->x)[i] = 2.0f * dl_f32(out->x)[i] - 1.0f;
    return out;
}

static dl_device device = DL_DEVICE_CPU;   /* --device */

/* g over x [N, 1, 28, 28] in batches of 250, without the tape: an owned result. */
static dl_tensor *translate(dl_model *g, const dl_tensor *x) {
    const int n = x->shape[0];
    dl_tensor *out = dl_tensor_new(DL_DTYPE_F32, 4, DL_SHAPE(n, 1, 28, 28));
    int i0, grad = dl_no_grad(1);
    for (i0 = 0; out && i0 < n; i0 += 250) {
        int b = n - i0 < 250 ? n - i0 : 250;
        dl_tensor *y = dl_to_device(dl_model_call(g, dl_to_device(dl_slice((dl_tensor *)x, 0, i0, i0 + b, 1), device), 0), DL_DEVICE_CPU);
        if (!y) { dl_tensor_free(out); out = NULL; break; }
        memcpy(dl_f32(out) + (size_t)i0 * 784, dl_f32(y), y->numel * sizeof(float));
        dl_arena_reset(dl_arena_current());
    }
    dl_no_grad(grad);
    return out;
}

/* The share of images x (in [-1, 1]) the classifier labels `label` (its inputs standardized
   with the training set's mean and std, as mnist_cnn trained it). NaN + dl_error(). */
static double share_labeled(dl_model *cls, const dl_tensor *x, int label, float mean, float std) {
    const int n = x->shape[0];
    int i0, hits = 0, grad = dl_no_grad(1);
    for (i0 = 0; i0 < n; i0 += 250) {
        int b = n - i0 < 250 ? n - i0 : 250, i, c;
        dl_tensor *in = dl_tmp(DL_DTYPE_F32, 4, DL_SHAPE(b, 1, 28, 28)), *p;
        size_t j;
        if (!in) { dl_no_grad(grad); return NAN; }
        for (j = 0; j < in->numel; j++) dl_f32(in)[j] = ((0.5f * dl_f32(x)[(size_t)i0 * 784 + j] + 0.5f) - mean) / std;
        if (!(p = dl_model_call(cls, in, 0)) || p->ndim != 2) { dl_no_grad(grad); return NAN; }
        for (i = 0; i < b; i++) {
            const float *row = dl_f32(p) + (size_t)i * p->shape[1];
            int best = 0;
            for (c = 1; c < p->shape[1]; c++) if (row[c] > row[best]) best = c;
            hits += best == label;
        }
        dl_arena_reset(dl_arena_current());
    }
    dl_no_grad(grad);
    return (double)hits / n;
}

/* mean |y - x| in [0, 1] pixel units (x, y in [-1, 1]). */
static double mean_abs_diff(const dl_tensor *x, const dl_tensor *y) {
    double s = 0;
    size_t j;
    for (j = 0; j < x->numel; j++) s += fabs((double)dl_f32(y)[j] - dl_f32(x)[j]);
    return 0.5 * s / (double)x->numel;
}

#ifdef DL_HAVE_PNG
/* Rows: the first SHOW images of x, g1 of them, g2 of that (a round trip). */
static int save_round_trip(dl_model *g1, dl_model *g2, const dl_tensor *x, const char *path) {
    dl_tensor *grid = dl_tmp(DL_DTYPE_F32, 4, DL_SHAPE(3 * SHOW, 1, 28, 28)), *there, *back;
    int grad = dl_no_grad(1), r = -1;
    there = dl_model_call(g1, dl_to_device(dl_slice((dl_tensor *)x, 0, 0, SHOW, 1), device), 0);
    back = dl_to_device(there ? dl_model_call(g2, there, 0) : NULL, DL_DEVICE_CPU);   /* (read back from a GPU) */
    there = dl_to_device(there, DL_DEVICE_CPU);
    if (grid && back) {
        memcpy(dl_f32(grid), x->data, SHOW * 784 * sizeof(float));
        memcpy(dl_f32(grid) + SHOW * 784, there->data, SHOW * 784 * sizeof(float));
        memcpy(dl_f32(grid) + 2 * SHOW * 784, back->data, SHOW * 784 * sizeof(float));
        r = dl_image_grid_save(grid, path, SHOW, -1.0f, 1.0f);
    }
    dl_no_grad(grad);
    return r;
}
#endif

/* Skips the batches a resumed run already saw (the data stream is a function of the step). */
static int skip_to(dl_batcher *b, long step) {
    long i;
    dl_batcher_set_epoch(b, (int)(step / dl_batcher_num_batches(b)));
    for (i = 0; i < step % dl_batcher_num_batches(b); i++) {
        dl_tensor *x;
        dl_arena_reset(dl_arena_current());
        if (dl_batcher_next(b, &x, NULL) != 1) return -1;
    }
    return 0;
}

static int next_batch(dl_batcher *b, dl_tensor **x) {
    int r = dl_batcher_next(b, x, NULL);
    return r == 0 ? dl_batcher_next(b, x, NULL) : r;   /* 0: a new epoch begins */
}

int main(int argc, char **argv) {
    const char *data = NULL, *out = "build/cyclegan.out", *classifier = NULL, *device_name = "cpu";
    int class_a = 7, class_b = 9, steps = 2000, batch = 8, width = 16, blocks = 6, seed = 1, every = 500, resume = 0, threads = 0;
    int stop_at = 0;
    int i, ok = 0;
    float mean = 0, std = 1;
    dl_dataset *train = NULL, *test = NULL, *ta = NULL, *tb = NULL, *va = NULL, *vb = NULL;
    dl_model *m[4] = {NULL, NULL, NULL, NULL}, *cls = NULL;
    dl_cyclegan *cg = NULL;
    dl_cyclegan_net_opts no;
    dl_cyclegan_opts co;
    dl_optim_opts oo;
    dl_batcher *ba = NULL, *bb = NULL;
    dl_batch_opts bo;
    dl_tensor *fab = NULL, *rab = NULL, *fba = NULL, *rba = NULL;
    char path[1200], ckpt[1200];
    time_t wall0;

    for (i = 1; i < argc; i++) {
        const char *flag = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(flag, "--resume") == 0) { resume = 1; continue; }
        if (!val) flag = "";
        i++;
        if (strcmp(flag, "--data") == 0) data = val;
        else if (strcmp(flag, "--a") == 0) class_a = atoi(val);
        else if (strcmp(flag, "--b") == 0) class_b = atoi(val);
        else if (strcmp(flag, "--steps") == 0) steps = atoi(val);
        else if (strcmp(flag, "--batch") == 0) batch = atoi(val);
        else if (strcmp(flag, "--width") == 0) width = atoi(val);
        else if (strcmp(flag, "--blocks") == 0) blocks = atoi(val);
        else if (strcmp(flag, "--seed") == 0) seed = atoi(val);
        else if (strcmp(flag, "--every") == 0) every = atoi(val);
        else if (strcmp(flag, "--stop-at") == 0) stop_at = atoi(val);
        else if (strcmp(flag, "--classifier") == 0) classifier = val;
        else if (strcmp(flag, "--out") == 0) out = val;
        else if (strcmp(flag, "--threads") == 0) threads = atoi(val);
        else if (strcmp(flag, "--device") == 0 && (strcmp(val, "cpu") == 0 || strcmp(val, "cuda") == 0)) device_name = val;
        else {
            fprintf(stderr, "usage: %s [--data DIR] [--a C] [--b C] [--steps N] [--batch B] [--width W] [--blocks N] [--seed S] "
                            "[--every N] [--resume] [--stop-at N] [--classifier PATH] [--out DIR] [--threads T] [--device cpu|cuda]\n", argv[0]);
            return 2;
        }
    }
    if (strcmp(device_name, "cuda") == 0) {   /* fails with the reason: no DL_CUDA build, no driver, no GPU */
        device = DL_DEVICE_CUDA;
        if (dl_cuda_init() != 0) { fprintf(stderr, "error: --device cuda: %s\n", dl_error()); return 1; }
    }
    if (class_a < 0 || class_a > 9 || class_b < 0 || class_b > 9 || class_a == class_b || steps < 1 || batch < 1 || width < 1 ||
        blocks < 0 || every < 1 || stop_at < 0) {
        fprintf(stderr, "error: bad flag value\n");
        return 2;
    }
    if (threads > 0) dl_set_num_threads(threads);
    {   /* the output folder: made, or already there (and a folder, not a file) */
        struct stat sb;
        if (mkdir(out, 0755) != 0 && errno != EEXIST) { perror(out); return 1; }
        if (stat(out, &sb) != 0 || !S_ISDIR(sb.st_mode)) { fprintf(stderr, "error: --out %s is not a folder\n", out); return 1; }
    }
    snprintf(ckpt, sizeof ckpt, "%s/checkpoint.safetensors", out);

    if (!data) data = has_fashion_mnist(FULL_DIR) ? FULL_DIR : SUBSET_DIR;
    if (!(train = dl_fashion_mnist_load(data, 1)) || !(test = dl_fashion_mnist_load(data, 0))) goto fail;
    if (dl_dataset_mean_std(train, &mean, &std) != 0) goto fail;   /* the classifier's standardization */
    if (!(ta = one_class(train, class_a)) || !(tb = one_class(train, class_b)) || !(va = one_class(test, class_a)) ||
        !(vb = one_class(test, class_b)))
        goto fail;
    printf("Fashion-MNIST from %s: A = class %d (%d training, %d test images), B = class %d (%d, %d)\n", data, class_a, ta->n,
           va->n, class_b, tb->n, vb->n);

    dl_nn_seed((uint64_t)seed);
    memset(&no, 0, sizeof no);
    no.width = width;
    no.n_blocks = blocks == 0 ? DL_ZERO : blocks;
    no.n_layers = 2;   /* 28 -> 14 -> 7 -> 6 -> 5: a 5 x 5 map of patch scores */
    for (i = 0; i < 4; i++)
        if (!(m[i] = i < 2 ? dl_cyclegan_generator(1, 28, 28, &no) : dl_cyclegan_discriminator(1, 28, 28, &no))) goto fail;
    memset(&oo, 0, sizeof oo);
    oo.lr = 2e-4;
    oo.beta1 = 0.5;
    memset(&co, 0, sizeof co);   /* zeros: their lambdas (10, 10, identity 0.5), pools of 50 */
    co.seed = (uint64_t)seed;
    if (!(cg = dl_cyclegan_new(m[0], m[1], m[2], m[3], dl_optim_new(DL_OPTIM_ADAM, &oo), dl_optim_new(DL_OPTIM_ADAM, &oo), &co)))
        goto fail;
    printf("generators: %ld parameters each; discriminators: %ld each (trainable)\n", dl_model_num_params(m[0], 1),
           dl_model_num_params(m[2], 1));
    if (device != DL_DEVICE_CPU) {   /* the four networks and both optimizers to the GPU */
        if (dl_cyclegan_move(cg, device) != 0) goto fail;
        printf("training on the %s\n", dl_device_name(device));
    }
    if (resume) {
        if (dl_cyclegan_load(cg, ckpt) != 0) goto fail;
        printf("resumed from %s at step %ld\n", ckpt, dl_cyclegan_steps(cg));
    }
    memset(&bo, 0, sizeof bo);
    bo.shuffle = 1;
    bo.drop_last = 1;
    bo.seed = (uint64_t)seed;
    ba = dl_batcher_new(ta, batch, &bo);
    bo.seed = (uint64_t)seed + 1000;
    bb = dl_batcher_new(tb, batch, &bo);
    if (!ba || !bb || skip_to(ba, dl_cyclegan_steps(cg)) != 0 || skip_to(bb, dl_cyclegan_steps(cg)) != 0) goto fail;

    wall0 = time(NULL);
    if (stop_at == 0 || stop_at > steps) stop_at = steps;
    while (dl_cyclegan_steps(cg) < stop_at) {
        dl_tensor *a, *b;
        dl_cyclegan_stats st;
        long step = dl_cyclegan_steps(cg);
        /* constant lr for the first half, then linearly to 0: their schedule, counted in steps */
        if (dl_cyclegan_set_lr(cg, dl_lr_cyclegan(2e-4, steps / 2, steps - steps / 2, step)) != 0) goto fail;
        dl_arena_reset(dl_arena_current());
        if (next_batch(ba, &a) != 1 || next_batch(bb, &b) != 1 || dl_cyclegan_train_step(cg, a, b, &st) != 0) goto fail;
        if (st.step % every == 0 || st.step == stop_at) {
            printf("step %ld/%d: G %.3f (gan %.3f %.3f, cycle %.3f %.3f, idt %.3f %.3f)  D_A %.3f D_B %.3f  (%.0f s)\n", st.step,
                   steps, st.g_loss, st.gan_ab, st.gan_ba, st.cycle_a, st.cycle_b, st.idt_ab, st.idt_ba, st.d_a, st.d_b,
                   difftime(time(NULL), wall0));
            fflush(stdout);
#ifdef DL_HAVE_PNG
            snprintf(path, sizeof path, "%s/a_to_b.png", out);
            if (save_round_trip(m[0], m[1], va->x, path) != 0) goto fail;
            snprintf(path, sizeof path, "%s/b_to_a.png", out);
            if (save_round_trip(m[1], m[0], vb->x, path) != 0) goto fail;
#endif
            if (dl_cyclegan_save(cg, ckpt) != 0) goto fail;
        }
    }
    dl_arena_reset(dl_arena_current());
#ifdef DL_HAVE_PNG
    snprintf(path, sizeof path, "%s/losses.png", out);
    if (dl_cyclegan_plot_save(cg, path, 0, 0) != 0) goto fail;
    printf("pictures in %s (a_to_b.png, b_to_a.png: rows of originals, translations, round trips; losses.png)\n", out);
#else
    printf("(built without <stb/stb_image_write.h>: no pictures; Debian: apt-get install libstb-dev)\n");
#endif
    /* the test images of both classes: there and back */
    if (!(fab = translate(m[0], va->x)) || !(rab = translate(m[1], fab)) || !(fba = translate(m[1], vb->x)) ||
        !(rba = translate(m[0], fba)))
        goto fail;
    {
        double l1 = (mean_abs_diff(va->x, rab) * va->n + mean_abs_diff(vb->x, rba) * vb->n) / (va->n + vb->n);
        if (classifier) {
            double sab, sba, real_a, real_b;
            if (!(cls = dl_model_load(classifier))) goto fail;
            sab = share_labeled(cls, fab, class_b, mean, std);
            sba = share_labeled(cls, fba, class_a, mean, std);
            real_a = share_labeled(cls, va->x, class_a, mean, std);
            real_b = share_labeled(cls, vb->x, class_b, mean, std);
            if (isnan(sab) || isnan(sba) || isnan(real_a) || isnan(real_b)) goto fail;
            printf("the classifier labels %.1f%% of the real test A images A and %.1f%% of the B images B\n", 100 * real_a,
                   100 * real_b);
            printf("translated A -> B labeled B: %.1f%%; B -> A labeled A: %.1f%%\n", 100 * sab, 100 * sba);
            printf("cycle_l1=%.4f share_ab=%.4f share_ba=%.4f steps=%ld\n", l1, sab, sba, dl_cyclegan_steps(cg));
        } else {
            printf("cycle_l1=%.4f steps=%ld\n", l1, dl_cyclegan_steps(cg));
        }
    }
    ok = 1;
    goto done;
fail:
    fprintf(stderr, "error: %s\n", dl_error());
done:
    dl_tensor_free(fab); dl_tensor_free(rab); dl_tensor_free(fba); dl_tensor_free(rba);
    dl_batcher_free(ba);
    dl_batcher_free(bb);
    dl_cyclegan_free(cg);
    for (i = 0; i < 4; i++) dl_model_free(m[i]);
    dl_model_free(cls);
    dl_dataset_free(ta); dl_dataset_free(tb); dl_dataset_free(va); dl_dataset_free(vb);
    dl_dataset_free(train);
    dl_dataset_free(test);
    dl_arena_free_default();
    dl_threads_shutdown();
    return ok ? 0 : 1;
}
