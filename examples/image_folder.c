/* examples/image_folder.c - train a small convnet on your own images, one folder per class.

   The "cats vs dogs" lesson (Keras' image_dataset_from_directory tutorial) in C: point it at a
   folder laid out as

       DIR/cat/0001.jpg  DIR/cat/0002.jpg  ...   (the subfolders, sorted by name, are the classes)
       DIR/dog/0001.jpg  ...

   and it loads every image (PNG, JPEG, BMP, GIF, ... through stb_image.h), resizes it to
   SIZE x SIZE, holds out a validation part, and trains a small convnet with data augmentation:
   every training batch is flipped left-right at random and shifted by a random crop, so the
   network sees a slightly different picture each epoch and overfits less.

   Augmentation, and why this example writes its own training loop: dl_fit has no augmentation
   hook, so the loop below is what dl_fit does (shuffled batches, one dl_train_on_batch each)
   with the two augmentation calls added where you can see them. Keras puts augmentation inside
   the model instead (layers.RandomFlip, layers.RandomTranslation, active only in training); in
   dl that would be a custom layer (dl_layer_new) whose forward augments when training is 1. The
   explicit loop is shorter and shows the whole mechanism, so it is the one used here.

   Without --data it makes its own small folder first: 200 images each of three Fashion-MNIST
   classes (ankle_boot, sandal, sneaker), written as PNG files with stb_image_write.h into
   build/image_folder_data/, so it runs anywhere. (Fashion-MNIST comes from
   /usr/share/datasets/fashion-mnist when installed, else from data/fashion-mnist.)

   Build and run (from the repository root; needs Debian's libstb-dev for <stb/stb_image.h>):
       make build/image_folder && ./build/image_folder
       ./build/image_folder --data ~/Pictures/cats_vs_dogs --size 64 --epochs 30

   Flags:
       --data DIR      a folder of class subfolders (default: make build/image_folder_data)
       --epochs N      training epochs (default 20)
       --seed S        weights, shuffling, the validation split and the augmentation (default 1)
       --threads T     threads for the convolutions (default: DL_NUM_THREADS or all CPUs)
       --size S        images are resized to S x S pixels (default 32)
       --channels C    1 (gray), 3 (RGB, the default) or 4 (RGBA)
       --val F         the fraction held out for validation (default 0.2)

   Expected result, on the generated folder: validation accuracy 0.92-0.96 after 20 epochs
   (seeds 1-3), in a few seconds. The last line is "test_accuracy=0.XXXX": the accuracy on the
   held-out validation images (this example has no separate test set). */
#define _POSIX_C_SOURCE 200809L   /* mkdir */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#if defined(__has_include)
#if __has_include(<stb/stb_image.h>) && __has_include(<stb/stb_image_write.h>)
#define HAVE_STB 1
#endif
#endif

#ifdef HAVE_STB
/* stb's headers are not written for -Wextra; keep their warnings out of ours. */
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#endif
#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_image.h>         /* before dl_nn.h: it turns dl_image_folder_load on */
#include <stb/stb_image_write.h>   /* only to write the demo folder */
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif
#endif

#define DL_IMPLEMENTATION
#include "dl_nn.h"

#ifndef DL_HAVE_IMAGE_FOLDER
int main(void) {
    fprintf(stderr, "image_folder: built without <stb/stb_image.h> and <stb/stb_image_write.h>;\n"
                    "install them (Debian: apt-get install libstb-dev) and rebuild\n");
    return 1;
}
#else

#define FULL_DIR "/usr/share/datasets/fashion-mnist"
#define SUBSET_DIR "data/fashion-mnist"
#define DEMO_DIR "build/image_folder_data"
#define DEMO_PER_CLASS 200

static int has_fashion_mnist(const char *dir) {   /* does dir hold Fashion-MNIST's test labels? */
    static const char *const names[2] = {"t10k-labels-idx1-ubyte", "t10k-labels-idx1-ubyte.gz"};
    char path[1024];
    int i;
    for (i = 0; i < 2; i++) {
        FILE *f;
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        if ((f = fopen(path, "rb")) != NULL) { fclose(f); return 1; }
    }
    return 0;
}

static int make_dir(const char *path) {   /* 0 when it exists afterwards */
    if (mkdir(path, 0777) == 0 || errno == EEXIST) return 0;
    fprintf(stderr, "error: cannot create %s: %s\n", path, strerror(errno));
    return -1;
}

/* Writes DEMO_PER_CLASS 28x28 gray PNGs of each of three Fashion-MNIST classes into DEMO_DIR. */
static int write_demo_folder(void) {
    static const int classes[3] = {9, 5, 7};   /* Fashion-MNIST's labels of these folders */
    static const char *const folders[3] = {"ankle_boot", "sandal", "sneaker"};
    const char *src = has_fashion_mnist(FULL_DIR) ? FULL_DIR : SUBSET_DIR;
    dl_dataset *fm = dl_fashion_mnist_load(src, 1);
    char path[256];
    int c, i, k, written[3] = {0, 0, 0};
    if (!fm) { fprintf(stderr, "error: %s\n", dl_error()); return -1; }
    if (make_dir("build") != 0 || make_dir(DEMO_DIR) != 0) { dl_dataset_free(fm); return -1; }
    for (c = 0; c < 3; c++) {
        snprintf(path, sizeof path, "%s/%s", DEMO_DIR, folders[c]);
        if (make_dir(path) != 0) { dl_dataset_free(fm); return -1; }
    }
    for (i = 0; i < fm->n; i++) {
        const float *img = dl_f32(fm->x) + (size_t)i * 784;
        unsigned char px[784];
        for (c = 0; c < 3 && dl_i32(fm->y)[i] != classes[c]; c++) {}
        if (c == 3 || written[c] == DEMO_PER_CLASS) continue;
        for (k = 0; k < 784; k++) px[k] = (unsigned char)(img[k] * 255.0f + 0.5f);   /* back to bytes */
        snprintf(path, sizeof path, "%s/%s/%04d.png", DEMO_DIR, folders[c], written[c]++);
        if (!stbi_write_png(path, 28, 28, 1, px, 28)) {
            fprintf(stderr, "error: cannot write %s\n", path);
            dl_dataset_free(fm);
            return -1;
        }
    }
    printf("wrote %d + %d + %d PNG images (28x28, from Fashion-MNIST in %s) into %s/{%s,%s,%s}\n", written[0],
           written[1], written[2], src, DEMO_DIR, folders[0], folders[1], folders[2]);
    dl_dataset_free(fm);
    return 0;
}

int main(int argc, char **argv) {
    const char *data = NULL;
    int epochs = 20, seed = 1, threads = 0, size = 32, channels = 3, i, epoch, ok = 0, *count = NULL;
    float val_fraction = 0.2f;
    dl_dataset *all = NULL, *train = NULL, *val = NULL;
    dl_model *model = NULL;
    dl_batcher *batches = NULL;
    dl_batch_opts bo;
    dl_logs logs;
    dl_rng aug;   /* the augmentation's own generator */
    double val_accuracy = 0;

    for (i = 1; i < argc; i += 2) {   /* --flag value pairs */
        const char *flag = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) flag = "";   /* a flag without its value: the usage message below */
        if (strcmp(flag, "--data") == 0) data = v;
        else if (strcmp(flag, "--epochs") == 0) epochs = atoi(v);
        else if (strcmp(flag, "--seed") == 0) seed = atoi(v);
        else if (strcmp(flag, "--threads") == 0) threads = atoi(v);
        else if (strcmp(flag, "--size") == 0) size = atoi(v);
        else if (strcmp(flag, "--channels") == 0) channels = atoi(v);
        else if (strcmp(flag, "--val") == 0) val_fraction = (float)atof(v);
        else {
            fprintf(stderr, "usage: %s [--data DIR] [--epochs N] [--seed S] [--threads T] [--size S] "
                            "[--channels 1|3|4] [--val F]\n", argv[0]);
            return 2;
        }
    }
    if (threads > 0) dl_set_num_threads(threads);
    if (size < 8) { fprintf(stderr, "error: --size %d: use 8 or more (three 2x2 poolings)\n", size); return 2; }

    /* 1. The images: x f32 [N, channels, size, size] in [0, 1], y i32 [N] (the folder index). */
    if (!data) {
        if (write_demo_folder() != 0) return 1;
        data = DEMO_DIR;
    }
    all = dl_image_folder_load(data, size, size, channels);
    if (!all) { fprintf(stderr, "error: %s\n", dl_error()); goto done; }
    if (!(count = (int *)calloc((size_t)all->num_classes, sizeof *count))) {
        fprintf(stderr, "error: out of memory\n");
        goto done;
    }
    for (i = 0; i < all->n; i++) count[dl_i32(all->y)[i]]++;
    printf("%s: %d images of %d classes:", data, all->n, all->num_classes);
    for (i = 0; i < all->num_classes; i++) printf(" %s (%d)", all->class_names[i], count[i]);
    printf("\n");

    /* 2. Hold out a random part for validation (Keras: validation_split with a seed). */
    if (dl_dataset_split(all, val_fraction, (uint64_t)seed, &train, &val) != 0) {
        fprintf(stderr, "error: %s\n", dl_error());
        goto done;
    }
    if (train->n < 1 || val->n < 1) { fprintf(stderr, "error: too few images to split (%d)\n", all->n); goto done; }
    printf("training on %d images, validating on %d\n", train->n, val->n);

    /* 3. The model: three conv + pool blocks, then a small classifier (Keras' tutorial model). */
    dl_nn_seed((uint64_t)seed);
    model = dl_sequential(dl_Conv2D(16, 3, 1, DL_PADDING_SAME, DL_ACT_RELU), dl_MaxPool2D(2, 0), /* size/2 */
                          dl_Conv2D(32, 3, 1, DL_PADDING_SAME, DL_ACT_RELU), dl_MaxPool2D(2, 0), /* size/4 */
                          dl_Conv2D(64, 3, 1, DL_PADDING_SAME, DL_ACT_RELU), dl_MaxPool2D(2, 0), /* size/8 */
                          dl_Dropout(0.2f), dl_Flatten(),
                          dl_Dense(128, DL_ACT_RELU),
                          dl_Dense(all->num_classes, DL_ACT_LINEAR));                  /* logits */
    if (!model) { fprintf(stderr, "error: %s\n", dl_error()); goto done; }
    if (dl_compile(model, dl_optim_new(DL_OPTIM_ADAM, &(dl_optim_opts){.lr = 1e-3, .eps = 1e-7}), DL_LOSS_SPARSE_CATEGORICAL_CE, DL_METRIC_ACCURACY) != 0 ||
        dl_model_build(model, 3, DL_SHAPE(channels, size, size)) != 0) {
        fprintf(stderr, "error: %s\n", dl_error());
        goto done;
    }
    dl_model_print_summary(model);

    /* 4. Training: dl_fit's loop written out, with augmentation of every training batch. */
    memset(&bo, 0, sizeof bo);
    bo.shuffle = 1;                 /* a new order every epoch... */
    bo.seed = (uint64_t)seed;       /* ...drawn from this seed */
    if (!(batches = dl_batcher_new(train, 32, &bo))) { fprintf(stderr, "error: %s\n", dl_error()); goto done; }
    dl_rng_seed(&aug, (uint64_t)seed + 1000);
    for (epoch = 0; epoch < epochs; epoch++) {
        double loss_sum = 0;
        int n_batches = 0;
        for (;;) {
            dl_tensor *x, *y;
            int r;
            dl_arena_reset(dl_arena_current());   /* the last batch's tensors are gone */
            r = dl_batcher_next(batches, &x, &y); /* x [32, C, S, S], y [32], in the arena */
            if (r == 0) break;                    /* the epoch is over */
            if (r < 0 || dl_random_flip(x, &aug) != 0 ||          /* left-right, half of them */
                dl_random_crop(x, size / 8, &aug) != 0) {          /* shifted up to size/8 pixels */
                fprintf(stderr, "error: %s\n", dl_error());
                goto done;
            }
            loss_sum += dl_train_on_batch(model, x, y);            /* forward, backward, Adam */
            if (loss_sum != loss_sum) {   /* NaN: a failed step (dl_error says why), or divergence */
                fprintf(stderr, "error: %s\n", dl_error()[0] ? dl_error() : "the loss is NaN");
                goto done;
            }
            n_batches++;
        }
        /* Validation: the original images, no augmentation, no dropout. */
        if (dl_evaluate(model, val, 64, &logs) != 0) { fprintf(stderr, "error: %s\n", dl_error()); goto done; }
        val_accuracy = dl_logs_get(&logs, "accuracy");
        printf("epoch %2d/%d - loss: %.4f - val_loss: %.4f - val_accuracy: %.4f\n", epoch + 1, epochs,
               loss_sum / (n_batches ? n_batches : 1), dl_logs_get(&logs, "loss"), val_accuracy);
        fflush(stdout);
    }
    printf("validation accuracy after %d epochs: %.4f (%d held-out images)\n", epochs, val_accuracy, val->n);
    printf("test_accuracy=%.4f\n", val_accuracy);
    ok = 1;

done:
    free(count);
    dl_batcher_free(batches);
    dl_model_free(model);
    dl_dataset_free(all);
    dl_dataset_free(train);
    dl_dataset_free(val);
    dl_arena_free_default();
    dl_threads_shutdown();
    return ok ? 0 : 1;
}
#endif /* DL_HAVE_IMAGE_FOLDER */
