/* dl_nn.h - v0.2.0 - Keras-style layers, models and training for dl, in C99: Sequential,
   Functional and custom models, compile/fit/evaluate/predict with metrics, callbacks and a
   progress bar, summary(), premade estimators, whole-model save/load as safetensors, and data
   sets (MNIST/Fashion-MNIST IDX, CSV, image folders) with batching and augmentation.
   Part of dl, a family of single-file deep-learning libraries; needs dl_tensor.h and dl_optim.h.

   Do this:
       #define DL_IMPLEMENTATION
   before you include this file in *one* C or C++ file to create the implementation. Every
   other file includes it plainly. It includes dl_tensor.h and dl_optim.h (from its own folder)
   itself when they were not included before, so the order of includes does not matter. For image
   folders, include stb_image.h (Debian: libstb-dev, <stb/stb_image.h>) before dl_nn.h, in the
   implementation file as well as where you call dl_image_folder_load. Link with -lm -lpthread.

   EXAMPLE: the Keras beginner's classifier on Fashion-MNIST (examples/mnist_mlp.c)

       dl_dataset *train = dl_fashion_mnist_load(NULL, 1), *test = dl_fashion_mnist_load(NULL, 0);
       if (!train || !test) { puts(dl_error()); return 1; }
       dl_nn_seed(42);                                         // initial weights, like set_random_seed
       dl_model *m = dl_sequential(dl_Flatten(), dl_Dense(128, DL_ACT_RELU), dl_Dropout(0.2f),
                                   dl_Dense(10, DL_ACT_LINEAR));                // yours: dl_model_free
       dl_compile(m, dl_adam(1e-3), DL_LOSS_SPARSE_CATEGORICAL_CE,
                  DL_METRIC_ACCURACY);                         // the model owns the optimizer
       dl_fit_opts fo = {0}; fo.epochs = 10; fo.validation_split = 0.1f;
       if (!dl_fit(m, train, &fo)) { puts(dl_error()); return 1; }   // prints a progress bar
       dl_logs r;
       dl_evaluate(m, test, 256, &r);                          // dl_logs_get(&r, "accuracy")
       dl_model_save(m, "mlp.safetensors", 1);                 // dl_model_load(...) gets it back
       dl_model_free(m); dl_dataset_free(train); dl_dataset_free(test);

   CONTENTS (declarations below are grouped in this order)
       DATA         dl_dataset; loaders: dl_idx_load (IDX images/labels, plain or gzip, with its
                    own inflater dl_gunzip), dl_fashion_mnist_load, dl_csv_load, dl_image_folder_load
                    (like Keras' image_dataset_from_directory; needs stb_image.h), dl_parse_*;
                    dl_batcher (seeded per-epoch shuffles, no malloc per batch); splits and
                    subsets; dl_normalize, dl_random_flip, dl_random_crop
       LAYERS       named as Keras' classes: dl_Dense, dl_Conv2D, dl_Conv2DTranspose, dl_MaxPool2D,
                    dl_AvgPool2D, dl_GlobalAvgPool2D, dl_Flatten, dl_Reshape, dl_Dropout,
                    dl_BatchNormalization, dl_LayerNormalization, dl_Embedding, dl_Activation,
                    dl_Add, dl_Multiply, dl_Concatenate, dl_RandomFlip, dl_SimpleRNN, dl_LSTM,
                    dl_GRU; for GANs dl_LeakyReLU, dl_InstanceNormalization, dl_ReflectionPad2D,
                    dl_ZeroPadding2D, dl_UpSampling2D; your own
                    layers through dl_layer_ops + dl_layer_new + dl_layer_add_weight
                    (dl_layer_register, Keras' custom objects, saves and loads them whole)
       MODELS       dl_sequential; functional graphs (dl_Input, dl_apply, dl_model_new: several
                    inputs/outputs, shared layers, skip connections); custom models whose forward
                    function you write (dl_custom_model); dl_model_call; dl_model_summary
       TRAINING     dl_compile (loss, optimizer, metrics), dl_fit (epochs, batch size, seeded
                    shuffling, validation split or set, callbacks: early stopping, checkpoints,
                    LR schedules, your own; terminate on NaN), dl_evaluate, dl_predict,
                    dl_train_on_batch; history
       SAVING       dl_model_save/load (architecture + weights + optimizer state in one
                    safetensors file), dl_model_save_weights/load_weights, in-memory versions
       ESTIMATORS   dl_dnn_classifier, dl_linear_classifier, dl_linear_regressor (tf.estimator)

   HOW A TRAINING STEP RUNS
       dl_fit resets the current arena, copies a batch into it, runs the model's forward pass
       with training = 1 (the ops record a tape), computes the compiled loss, and calls
       dl_backward and dl_optim_step. dl_train_on_batch does the same for a batch you made:
       reset the arena yourself (dl_arena_reset) before making each batch. Weights are persistent tensors owned by their
       layers; everything else lives in the arena, so a step in steady state calls malloc zero
       times. The same seeds give the same bits, whatever the thread count.

   CONFIGURATION
       DL_FASHION_MNIST_DIR  default directory for dl_fashion_mnist_load(NULL, ...)
                             ("/usr/share/datasets/fashion-mnist", Debian's dataset-fashion-mnist)
       DL_MODEL_LOAD_MAX_VALUES  the most values per sample that dl_model_load lets a file's
                             input or any layer output have, checked before anything is built
                             (default 1 << 24: 64 MB of f32 on the build's batch of one)
       dl_tensor.h's DL_MALLOC/DL_FREE and DL_STATIC apply; DL_NO_STDIO leaves out the file
       functions (loaders, model save/load, dl_model_print_summary; the in-memory dl_parse_*,
       dl_model_serialize/parse and dl_model_summary remain).

   OWNERSHIP
       Loaders, dl_dataset_subset and dl_dataset_split return data sets you own (dl_dataset_free).
       Layer constructors return layers that a model takes over; models are yours (dl_model_free
       frees their layers, weights, optimizer and history). dl_compile takes over the optimizer.
       dl_predict returns an owned tensor; dl_model_call, dl_layer_call and batches give arena
       tensors. Callbacks made by dl_early_stopping & co. are yours (dl_callback_free).

   ERRORS
       Every function that can fail returns NULL (or -1, or NaN for a loss) and sets dl_error(),
       naming the layer, the file and, for CSV, the line and column. A layer constructor given
       bad settings returns NULL; dl_sequential notices, frees the other layers and returns
       NULL with that message.
       Shape errors in functional graphs appear at dl_apply, where the graph is written. Files
       are validated before use (IDX headers, gzip streams, model architectures and every
       weight's name, dtype and shape); truncated, corrupt or hostile input gives an error,
       never a crash. Nothing here calls exit or abort, or prints: progress bars, summaries
       and warnings go to dl_tensor.h's log function (dl_set_log; stdout/stderr by default).

   THREADS
       Different threads may build, train and run different models at the same time: the
       layer generator (dl_nn_seed) and a functional graph being written are per thread. One
       model is used by one thread at a time.

   NOT HERE (yet)
       Keras' .keras/.h5 files; masking and variable-length sequences; bidirectional and stacked
       RNN wrappers (stack layers instead); multi-input/output models in dl_fit (run them with
       dl_model_call_n and your own loop); sample weights and class weights; regularizers and
       constraints; mixed precision; data loading on other threads; multi-member gzip, CSV
       quoting, missing values and string columns; IDX types other than unsigned byte; image
       folders on Windows.

   REVISION HISTORY (CHANGELOG.md has the details)
       0.2.0  names: DL_ACT_*, DL_PADDING_*, dl_idx_load / dl_csv_load /
              dl_fashion_mnist_load / dl_image_folder_load (object first),
              dl_model_num_params, dl_model_find_layer, dl_batcher_num_batches
       0.1.0  Keras-style layers, Sequential / functional / custom models, fit / evaluate /
              predict, callbacks, whole-model files, estimators, data loaders

   LICENSE: MIT, see the end of the file.
*/
#ifndef DL_NN_H
#define DL_NN_H

#ifndef DL_TENSOR_H   /* the prerequisites, from this file's folder, unless already included */
#include "dl_tensor.h"
#endif
#ifndef DL_OPTIM_H
#include "dl_optim.h"
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ==== DATA ==================================================================================
   Loading and batching data sets. This part (these declarations and "DATA: implementation"
   below) needs only dl_tensor.h: it can be lifted out into a header of its own as it is. */

/* A labeled data set held in memory. x and y are persistent tensors owned by the data set. */
typedef struct dl_dataset {
    dl_tensor *x;       /* f32 [N, C, H, W] (images) or [N, F] (features) */
    dl_tensor *y;       /* i32 [N] class labels, f32 [N] regression targets, or NULL (no labels) */
    int n;              /* N */
    int num_classes;    /* classes for i32 labels (max label + 1, or the folder count); else 0 */
    char **class_names; /* num_classes names for image folders (the folder names), else NULL */
} dl_dataset;
DLDEF void dl_dataset_free(dl_dataset *ds);    /* NULL is fine */

/* ---- gzip / deflate -------------------------------------------------------------------------
   dl_inflate decodes a raw deflate stream (RFC 1951) into dst[0..cap); returns 0 and the bytes
   written in *out_len, or -1 + dl_error() for a corrupt or truncated stream or one that does
   not fit; *in_used (may be NULL) gets the input bytes consumed. dl_gunzip decodes a
   single-member gzip file (RFC 1952) held in memory, checking its CRC32 and length: returns a
   buffer of *out_len bytes (owned: dl_free), or NULL + dl_error(); max_out > 0 caps the
   output size. */
DLDEF int dl_inflate(const void *src, size_t src_len, void *dst, size_t cap, size_t *out_len, size_t *in_used);
DLDEF void *dl_gunzip(const void *src, size_t src_len, size_t max_out, size_t *out_len);
DLDEF uint32_t dl_crc32(uint32_t crc, const void *data, size_t len); /* crc = 0 to start */

/* ---- IDX (MNIST, Fashion-MNIST) -------------------------------------------------------------
   Images: magic 00 00 08 03 (unsigned bytes, 3 dims), N, H, W big-endian, then N*H*W bytes;
   also 00 00 08 02 (N, F). Labels: 00 00 08 01, N, then N bytes. Either may be gzipped (found
   by its magic 1f 8b). x = pixels / 255 as f32 [N, 1, H, W] (or [N, F]); y = i32 [N];
   num_classes = max label + 1. labels may be NULL (y = NULL). Owned: dl_dataset_free.
   A gzipped file's header is inflated and checked first, and then no more than the size it
   promises: a small file that would inflate to gigabytes is refused at the cost of its header. */
#ifndef DL_NO_STDIO
DLDEF dl_dataset *dl_idx_load(const char *images_path, const char *labels_path);
/* dir: holds train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], t10k-... (the names of
   the original distribution and Debian's package); NULL means DL_FASHION_MNIST_DIR. train = 1
   for the 60000 training images, 0 for the 10000 test images. Also reads MNIST's files. */
DLDEF dl_dataset *dl_fashion_mnist_load(const char *dir, int train);
#endif
DLDEF dl_dataset *dl_idx_parse(const void *images, size_t images_len, const void *labels, size_t labels_len);

/* ---- CSV -------------------------------------------------------------------------------------
   Numeric tables: one sample per line, fields separated by `delimiter`, every field a number
   (strtod syntax in the C locale, finite as a float: 1e39 is an error naming its line and column; surrounding
   spaces allowed; no quotes). Blank lines are skipped; every other
   line must have the same number of fields. Zero-init options: no header, label in column 0,
   ',' as delimiter, integer class labels. x = f32 [N, F] (the non-label columns). */
typedef struct dl_csv_opts {
    int header;       /* 1: the first line names the columns and is skipped */
    int label_col;    /* column of the label (0-based); negative counts from the end (-1 = last)... */
    int no_label;     /* ...unless no_label is 1: every column is a feature, y = NULL */
    int regression;   /* 1: y is f32 [N] (any number); 0: y is i32 [N] (integers >= 0) */
    char delimiter;   /* 0 means ',' */
} dl_csv_opts;
#ifndef DL_NO_STDIO
DLDEF dl_dataset *dl_csv_load(const char *path, const dl_csv_opts *opts);  /* opts NULL: defaults */
#endif
DLDEF dl_dataset *dl_csv_parse(const char *text, size_t len, const dl_csv_opts *opts);

/* ---- Image folders (only when stb_image.h was included before dl_nn.h) -----------------------
   dir/<class>/<image>: the subfolders, sorted by name (strcmp), are the classes 0, 1, ...
   (class_names); files ending in .png .jpg .jpeg .bmp .gif .tga .ppm .pgm .pnm .psd .hdr .pic
   (any case) are decoded with stbi_load to `channels` (1 gray, 3 RGB, 4 RGBA) and resized
   bilinearly to height x width (half-pixel centers, like tf.image.resize without antialias);
   other files and names starting with '.' are skipped. x = f32 [N, channels, height, width] in
   [0, 1] (Keras gives [0, 255]: multiply by 255 or use dl_normalize), in folder order then file
   name order (shuffle with a dl_batcher); y = i32 [N]. An image that fails to decode is an error
   naming the file. POSIX only (opendir); on Windows it returns an error. Owned. */
#if defined(STBI_INCLUDE_STB_IMAGE_H) && !defined(DL_NO_STDIO)
#define DL_HAVE_IMAGE_FOLDER 1
DLDEF dl_dataset *dl_image_folder_load(const char *dir, int height, int width, int channels);
#endif
/* Bilinear resize of one u8 image (h, w, c interleaved, as stbi_load gives) into planar f32
   out[c][oh][ow] scaled by `scale` (1/255 for [0, 1]). Always available. 0 on success. */
DLDEF int dl_resize_bilinear_u8(const unsigned char *src, int h, int w, int c, float *out, int oh, int ow, float scale);

/* ---- Subsets and splits --------------------------------------------------------------------- */
/* The samples idx[0..n) of ds, copied (indices may repeat). Owned: dl_dataset_free. */
DLDEF dl_dataset *dl_dataset_subset(const dl_dataset *ds, const int *idx, int n);
/* Shuffles the indices with seed, then *val gets int(fraction * N) samples and *train the rest
   (like Keras' validation_split with a seed). 0 <= fraction < 1. Both owned; 0 on success, -1
   + dl_error() (nothing allocated) on failure. */
DLDEF int dl_dataset_split(const dl_dataset *ds, float fraction, uint64_t seed, dl_dataset **train, dl_dataset **val);

/* ---- Batching --------------------------------------------------------------------------------
   Epoch e's order is a permutation drawn from a generator seeded by (seed, e), so an epoch can
   be replayed or resumed (dl_batcher_set_epoch). Each batch is copied into new tensors of the
   current arena: after dl_arena_reset the same memory is reused and no malloc happens. */
typedef struct dl_batch_opts {
    int shuffle;      /* 1: a new order every epoch */
    uint64_t seed;    /* for the shuffle */
    int drop_last;    /* 1: drop the last batch when it is smaller than batch_size */
} dl_batch_opts;
typedef struct dl_batcher dl_batcher;
/* opts NULL: no shuffle, keep the last batch. Owned: dl_batcher_free; borrows ds. */
DLDEF dl_batcher *dl_batcher_new(const dl_dataset *ds, int batch_size, const dl_batch_opts *opts);
DLDEF void dl_batcher_free(dl_batcher *b);
/* 1: *x (f32 [B, ...]) and *y (y's dtype, [B]; NULL when ds has no labels) are the next batch, in
   the current arena. 0: the epoch is over (nothing written); the next call starts the next
   epoch. -1 + dl_error(): out of arena memory or bad arguments. */
DLDEF int dl_batcher_next(dl_batcher *b, dl_tensor **x, dl_tensor **y);
DLDEF int dl_batcher_num_batches(const dl_batcher *b);            /* batches per epoch */
DLDEF int dl_batcher_epoch(const dl_batcher *b);          /* the epoch being served (0 first) */
DLDEF void dl_batcher_set_epoch(dl_batcher *b, int epoch); /* restart at the start of `epoch` */

/* ---- Normalization and augmentation ----------------------------------------------------------
   The channel axis is axis 1 ([N, C, H, W]: C channels; [N, F]: F features). */
/* Per-channel mean and (population) standard deviation over all samples and positions, into
   mean[C], std[C] (a zero std is reported as 1, so dl_normalize stays finite). 0 on success. */
DLDEF int dl_dataset_mean_std(const dl_dataset *ds, float *mean, float *std);
/* x = (x - mean[c]) / std[c] in place, on a contiguous f32 tensor of >= 2 dims (a data set's x
   or a batch). std[c] must be > 0. 0 on success, -1 + dl_error(). */
DLDEF int dl_normalize(dl_tensor *x, const float *mean, const float *std);
/* Flips each sample of a contiguous f32 [B, C, H, W] batch left-right with probability 1/2
   (Keras RandomFlip("horizontal")), in place. 0 on success. */
DLDEF int dl_random_flip(dl_tensor *x, dl_rng *r);
/* Pads each sample with `pad` zeros on every side and crops H x W back at a random offset
   (torchvision RandomCrop(H, padding=pad)); in place on contiguous f32 [B, C, H, W]; one
   sample of scratch from the current arena. 0 on success. */
DLDEF int dl_random_crop(dl_tensor *x, int pad, dl_rng *r);

/* ==== LAYERS ================================================================================
   Layers are named after Keras' classes (dl_Dense is keras.layers.Dense), which keeps them
   apart from the ops of dl_tensor.h they are made of (dl_Dense calls dl_linear, dl_Dropout
   calls dl_dropout). A layer creates its weights on its first call, from the input's shape,
   with Keras' initializers drawn from the generator dl_nn_seed sets. Data layout is PyTorch's:
   images are NCHW, sequences [batch, time, features] (Keras' batch-first), and Dense kernels
   [in, out] (Keras' layout; dl_linear multiplies x by it). */

typedef enum dl_act {
    DL_ACT_LINEAR = 0, DL_ACT_RELU, DL_ACT_SIGMOID, DL_ACT_TANH, DL_ACT_SOFTMAX, DL_ACT_GELU, DL_ACT_ELU, DL_ACT_LEAKY_RELU,
    DL_ACT_SOFTPLUS
} dl_act;   /* DL_ACT_SOFTMAX is over the last axis; DL_ACT_LEAKY_RELU has slope 0.2 (keras.activations.leaky_relu) */
DLDEF dl_tensor *dl_activate(dl_tensor *x, dl_act act);   /* arena output; x itself for DL_ACT_LINEAR */
DLDEF const char *dl_act_name(dl_act act);                /* "relu", ... as Keras spells them */

typedef enum dl_padding { DL_PADDING_VALID = 0, DL_PADDING_SAME = 1 } dl_padding;  /* Keras' padding= */

/* Initializers, as Keras names them. Fans: a [in, out] matrix has fan_in = in, fan_out = out;
   a 4-d kernel [a, b, kh, kw] (torch layout) has fan_in = b*kh*kw, fan_out = a*kh*kw. */
typedef enum dl_init {
    DL_INIT_ZEROS = 0, DL_INIT_ONES, DL_INIT_GLOROT_UNIFORM, DL_INIT_GLOROT_NORMAL,
    DL_INIT_HE_UNIFORM, DL_INIT_HE_NORMAL, DL_INIT_UNIFORM_005 /* U(-0.05, 0.05) */,
    DL_INIT_ORTHOGONAL /* of a [rows, cols] matrix (gain 1) */
} dl_init;
DLDEF int dl_init_tensor(dl_tensor *t, dl_init init, dl_rng *rng);   /* 0 on success */

/* The generator every layer draws its initial weights (and its dropout seed) from, like
   keras.utils.set_random_seed. Layers draw in the order they are built, so a program that
   seeds, builds and trains gets the same bits every run. Per thread: each thread has its own
   generator (seed 0 until that thread calls dl_nn_seed), so threads may build and train
   different models at the same time and get the bits they would get one after the other. */
DLDEF void dl_nn_seed(uint64_t seed);

#define DL_LAYER_MAX_PARAMS 8
#define DL_TRAINING_FROZEN 2   /* the `training` a frozen inner model runs with (dl_model_as_layer) */
#define DL_LAYER_MAX_CONF 8
#define DL_LAYER_MAX_INPUTS 8
typedef struct dl_layer dl_layer;

/* What a kind of layer does. Your own layer: fill one of these (static) and call dl_layer_new. */
typedef struct dl_layer_ops {
    const char *kind;    /* "Dense", ...: the name saved in model files */
    /* Called once, before the first forward, with the first inputs (batch axis included): make
       the weights with dl_layer_add_weight. NULL when the layer has none. 0 on success. */
    int (*build)(dl_layer *l, int n_in, dl_tensor *const *in);
    /* The computation, with ops of dl_tensor.h (so backward is automatic). Returns an arena
       tensor, or NULL + dl_error(). training: 0 inference; 1 in fit (dropout on, batch
       statistics); DL_TRAINING_FROZEN inside a frozen model (dl_model_as_layer): dropout on,
       batch normalization on its moving statistics (Keras' rule for trainable = False). */
    dl_tensor *(*forward)(dl_layer *l, int n_in, dl_tensor *const *in, int training);
    void (*destroy)(dl_layer *l);   /* frees l->user; NULL when there is nothing to free */
    int min_inputs, max_inputs;     /* 0, 0 mean 1, 1 */
} dl_layer_ops;

struct dl_layer {
    const dl_layer_ops *ops;
    char name[48];                          /* unique within a model: "dense", "dense_1", ... */
    int iconf[DL_LAYER_MAX_CONF];           /* the kind's integer settings (saved in files) */
    float fconf[DL_LAYER_MAX_CONF];         /* the kind's float settings (saved in files) */
    int n_params;
    dl_tensor *params[DL_LAYER_MAX_PARAMS]; /* owned, persistent */
    char param_names[DL_LAYER_MAX_PARAMS][24];  /* "kernel", "bias", "moving_mean", ... */
    unsigned char param_trainable[DL_LAYER_MAX_PARAMS]; /* 0 for statistics like moving_mean */
    int trainable;                          /* 0 freezes it (Keras layer.trainable; call dl_compile after a change) */
    int built;
    dl_rng rng;                             /* for dropout; seeded from dl_nn_seed's generator */
    void *user;                             /* your layer's state */
    int refs;                               /* models holding this layer */
    int out_ndim, out_shape[DL_MAX_DIMS];   /* per-sample shape of the last output (summary) */
    unsigned flags;                         /* private (DL__LAYER_*) */
};

/* Built-in layers. Each returns a new layer (NULL + dl_error() on bad settings) that a model
   takes over; a layer used by no model is freed with dl_layer_free. */
DLDEF dl_layer *dl_Dense(int units, dl_act act);               /* x [..., in] -> [..., units] */
/* NCHW convolutions with square kernels: kernel [filters, in, k, k] (torch layout), bias
   [filters]. DL_PADDING_SAME pads like Keras (the odd extra row/column at the bottom/right). */
DLDEF dl_layer *dl_Conv2D(int filters, int kernel, int stride, dl_padding padding, dl_act act);
/* Output size: DL_PADDING_VALID (in-1)*stride + kernel; DL_PADDING_SAME in*stride. kernel [in, filters, k, k].
   DL_PADDING_SAME is TensorFlow's (the adjoint of a "same" Conv2D): the full output is cropped
   by floor((k - s) / 2) at the top/left and the rest at the bottom/right (k 5, s 2: 1 and 2).
   torch's ConvTranspose2d(padding=p, output_padding=q) crops p and p - q, so it cannot say 1
   and 2: padding=2, output_padding=1 gives the same size, shifted by one pixel. */
DLDEF dl_layer *dl_Conv2DTranspose(int filters, int kernel, int stride, dl_padding padding, dl_act act);
DLDEF dl_layer *dl_MaxPool2D(int pool, int stride);            /* stride 0: = pool; valid only */
DLDEF dl_layer *dl_AvgPool2D(int pool, int stride);
DLDEF dl_layer *dl_GlobalAvgPool2D(void);                      /* [N, C, H, W] -> [N, C] */
DLDEF dl_layer *dl_Flatten(void);                              /* [N, ...] -> [N, prod] */
DLDEF dl_layer *dl_Reshape(int ndim, const int *shape);        /* per sample; one -1 allowed */
DLDEF dl_layer *dl_Dropout(float rate);                        /* inverted dropout, fit only */
/* Normalizes axis 1 (channels). momentum and epsilon as Keras (0.99, 1e-3 when <= 0 is given):
   moving = momentum * moving + (1 - momentum) * batch statistic; the moving variance tracks
   the unbiased batch variance (as PyTorch; Keras tracks the biased one). */
DLDEF dl_layer *dl_BatchNormalization(float momentum, float epsilon);
DLDEF dl_layer *dl_LayerNormalization(float epsilon);          /* last axis; 1e-3 when <= 0 */
DLDEF dl_layer *dl_Embedding(int input_dim, int output_dim);   /* i32 ids [...] -> [..., dim] */
DLDEF dl_layer *dl_Activation(dl_act act);
DLDEF dl_layer *dl_Add(void);                                  /* 2..8 inputs, same shape */
DLDEF dl_layer *dl_Multiply(void);
DLDEF dl_layer *dl_Concatenate(int axis);                      /* axis of the full tensor; -1 last */
/* Keras' RandomFlip("horizontal"): in training, mirrors each sample's last axis with probability
   1/2 (the layer's generator, so seeded); the identity otherwise. Augmentation inside the model. */
DLDEF dl_layer *dl_RandomFlip(void);
/* Layers of GANs and image-to-image models (DCGAN, pix2pix, CycleGAN), on NCHW images:
   dl_LeakyReLU: keras.layers.LeakyReLU, y = x if x > 0, else negative_slope * x. 0 means
   Keras' default 0.3 (Keras 2's alpha=0.3, Keras 3's negative_slope=0.3; DCGAN uses 0.2);
   DL_ZERO asks for a real 0 (a ReLU). Other negative values, NaN and inf are errors. */
DLDEF dl_layer *dl_LeakyReLU(float negative_slope);
/* dl_InstanceNormalization: instance norm (Ulyanov et al. 2016), CycleGAN's normalization:
   y = gamma[c] * (x - mean) / sqrt(var + epsilon) + beta[c], mean and (biased) var over the
   spatial axes of each sample and channel, the same in training and inference (no moving
   statistics). Input [N, C, ...] with more than one spatial element. Weights gamma [C] (ones)
   and beta [C] (zeros), as tensorflow_addons' InstanceNormalization and
   torch.nn.InstanceNorm2d(affine=True). epsilon: 0 means 1e-3, the default of
   tensorflow_addons / keras-contrib (torch's default is 1e-5: pass it for PyTorch models);
   DL_ZERO asks for a real 0. */
DLDEF dl_layer *dl_InstanceNormalization(float epsilon);
/* dl_ReflectionPad2D: torch.nn.ReflectionPad2d(pad), the padding of CycleGAN's generator:
   [N, C, H, W] -> [N, C, H + 2 pad, W + 2 pad], mirrored without repeating the edge
   ([1 2 3] padded by 2 is [3 2 1 2 3 2 1]); each pad must be smaller than its axis (checked
   on the first call). dl_ZeroPadding2D: keras.layers.ZeroPadding2D(pad), zeros around.
   pad >= 0 (0: the identity). The _sides forms pad each side by its own amount, in
   dl_pad2d's (torch's F.pad) order: left, right, top, bottom. */
DLDEF dl_layer *dl_ReflectionPad2D(int pad);
DLDEF dl_layer *dl_ReflectionPad2D_sides(int left, int right, int top, int bottom);
DLDEF dl_layer *dl_ZeroPadding2D(int pad);
DLDEF dl_layer *dl_ZeroPadding2D_sides(int left, int right, int top, int bottom);
/* keras.layers.UpSampling2D(size, interpolation="nearest"): [N, C, H, W] -> [N, C, H * size,
   W * size], each pixel repeated size x size times. size >= 1 (Keras' usual 2 is not a default
   here: 0 is an error). */
DLDEF dl_layer *dl_UpSampling2D(int size);
/* Recurrent layers on [batch, time, features]: the state starts at zero; return_sequences 0
   gives the last output [batch, units], 1 every output [batch, time, units]. Weights as Keras:
   kernel [features, G*units], recurrent_kernel [units, G*units], bias [G*units] (G = 1, 4, 3),
   gates in Keras' order (LSTM i f c o, GRU z r h), Keras' defaults (tanh; sigmoid gates;
   LSTM unit_forget_bias; GRU reset_after=True, whose bias is [2, 3*units]). */
DLDEF dl_layer *dl_SimpleRNN(int units, int return_sequences);
DLDEF dl_layer *dl_LSTM(int units, int return_sequences);
DLDEF dl_layer *dl_GRU(int units, int return_sequences);

/* Your own layer (Keras' "subclassing a Layer"): ops says how to build and run it; the name
   prefix becomes "prefix", "prefix_1", ... in a model. user is yours (ops->destroy frees it). */
DLDEF dl_layer *dl_layer_new(const dl_layer_ops *ops, const char *name, void *user);
/* In ops->build: a new persistent weight of the layer, initialized; NULL + dl_error(). */
DLDEF dl_tensor *dl_layer_add_weight(dl_layer *l, const char *name, int ndim, const int *shape,
                                     dl_init init, int trainable);
DLDEF dl_tensor *dl_layer_weight(const dl_layer *l, const char *name);   /* NULL if absent */
/* Runs a layer eagerly (building it on the first call). The output is an arena tensor. */
DLDEF dl_tensor *dl_layer_call(dl_layer *l, dl_tensor *x, int training);
DLDEF dl_tensor *dl_layer_call_n(dl_layer *l, int n_in, dl_tensor *const *in, int training);
DLDEF void dl_layer_free(dl_layer *l);   /* only a layer no model holds; NULL is fine */
/* Keras' custom objects: registers ops under ops->kind, so that dl_model_save writes layers of
   that kind and dl_model_load makes them again (dl_layer_new(ops, kind, NULL), then iconf and
   fconf as saved). Keep a layer's settings in iconf/fconf (saved in files) and derive anything
   else from them in build; user is NULL in a loaded layer. ops must stay valid while
   registered. Kinds: up to 31 characters, no spaces, '/', '"' or '\\', not a built-in kind; up to
   64 of them. Registering the same ops twice is fine. Register before other threads use dl_nn
   (the table has no lock). 0 on success. */
DLDEF int dl_layer_register(const dl_layer_ops *ops);
DLDEF int dl_layer_unregister(const char *kind);   /* 0, or -1 when kind is not registered */

/* ==== MODELS ================================================================================
   Three ways, as Keras has:
     Sequential   dl_sequential(dl_Flatten(), dl_Dense(10, DL_ACT_LINEAR))
     Functional   dl_sym *x = dl_Input(3, DL_SHAPE(1, 28, 28)); dl_sym *h = dl_apply(layer, x);
                  ... dl_model_new(1, &x, 1, &out)   (several inputs/outputs, shared layers,
                  skip connections through dl_Add / dl_Concatenate)
     Custom       dl_custom_model(forward, user, n, layers): you write the forward function
                  and call the layers in it (Keras' "subclassing a Model").
   A model owns its layers (a layer shared by two models lives until both are freed). */

typedef struct dl_model dl_model;
typedef struct dl_sym dl_sym;   /* a symbolic tensor: a layer output in a functional graph */

/* dl_sequential(layer, layer, ...) is a macro that counts its arguments (no NULL at the end)
   and calls dl_sequential_n, which takes over all n layers in every case: if one is NULL (its
   constructor failed), it frees the others and returns NULL, keeping that constructor's
   message. Up to 64 layers. Owned: dl_model_free. */
DLDEF dl_model *dl_sequential_n(int n, dl_layer *const *layers);
DLDEF int dl_sequential_add(dl_model *m, dl_layer *l);         /* Keras' model.add */

/* A model input of per-sample shape (no batch axis). dtype DL_DTYPE_F32 (dl_Input) or DL_DTYPE_I32
   (dl_Input_ids, for Embedding). Symbols are freed with the model that uses them. */
DLDEF dl_sym *dl_Input(int ndim, const int *shape);
DLDEF dl_sym *dl_Input_ids(int ndim, const int *shape);
/* Applies a layer to symbolic inputs: shapes are checked now (the layer runs once on a batch
   of one, which also builds it), so errors appear where the graph is written. */
DLDEF dl_sym *dl_apply(dl_layer *l, dl_sym *x);
DLDEF dl_sym *dl_apply_n(dl_layer *l, int n, dl_sym *const *xs);
DLDEF int dl_sym_shape(const dl_sym *s, int *shape);   /* per-sample shape; returns ndim */
/* The graph from inputs to outputs. Takes every symbol and layer between them. Owned. */
DLDEF dl_model *dl_model_new(int n_in, dl_sym *const *inputs, int n_out, dl_sym *const *outputs);
/* Frees symbols that no model took (when a graph is abandoned). Symbols not yet taken are kept
   per thread: write each graph (dl_Input .. dl_model_new) on one thread; this frees the calling
   thread's. Different threads may write different graphs at the same time. */
DLDEF void dl_sym_free_unused(void);

/* forward(m, x, training) computes the output from x with dl_layer_call(dl_model_layer(m, i),
   ...) and any ops; user is yours (dl_model_user). Layers: those whose weights the model owns,
   trains and saves. */
typedef dl_tensor *(*dl_model_fn)(dl_model *m, dl_tensor *x, int training);
DLDEF dl_model *dl_custom_model(dl_model_fn forward, void *user, int n_layers, dl_layer *const *layers);
DLDEF void *dl_model_user(const dl_model *m);

DLDEF void dl_model_free(dl_model *m);   /* its layers, weights, optimizer, history; NULL is fine */

/* A model used as a layer of another model (Keras: a Model is a Layer, Sequential([g, d])). The
   layer runs m (one output; m's inputs) and trains m's own weights, so two models can train the
   same tensors. Its trainable = 0 freezes m inside the outer model only: Keras' GAN recipe sets
   d.trainable = False before compiling the combined model, and d's own dl_compile'd training
   still updates d. A frozen m runs with training = DL_TRAINING_FROZEN. The layer keeps m alive:
   free m and the outer model in any order. Outer models train, predict and summarize;
   dl_model_save refuses them (save the inner models). A model takes the layer over. */
DLDEF dl_layer *dl_model_as_layer(dl_model *m);

/* Runs the model: x [batch, ...] -> arena output. training = 1 turns dropout and batch
   statistics on. Multi-input/output graphs: dl_model_call_n (outputs in order). */
DLDEF dl_tensor *dl_model_call(dl_model *m, dl_tensor *x, int training);
DLDEF int dl_model_call_n(dl_model *m, int n_in, dl_tensor *const *in, int n_out, dl_tensor **out, int training);
/* Builds the weights for per-sample input shape (sequential and custom models; functional ones
   are built by dl_model_new). Not needed before fit. 0 on success. */
DLDEF int dl_model_build(dl_model *m, int ndim, const int *shape);
DLDEF int dl_model_build_ids(dl_model *m, int ndim, const int *shape);   /* i32 input */
/* Moves a built model to device (DL_DEVICE_CUDA in a DL_CUDA build with dl_cuda.cu, README
   "GPU"; DL_DEVICE_CPU back): every weight and statistic of every layer (inner models' too),
   each with dl_tensor_move, so that the tensors keep their addresses, and the optimizer's state
   when the optimizer has the weights already (dl_optim_move; else fit makes the state on the
   model's device). Then dl_fit, dl_evaluate, dl_predict and dl_train_on_batch take host data
   and copy each batch to the device (dl_to_device, arena memory), and read back to the host
   only what the CPU path reports (each batch's loss; the outputs when metrics are compiled);
   dl_model_call takes tensors on the model's device. Saving writes the same file as the CPU
   model; dl_model_load_weights copies a file into the device weights. Layers added after the
   move (dl_sequential_add) are not moved: move after the model is complete. 0, or -1 +
   dl_error() with nothing moved: NULL or unbuilt model (build or call it first), no GPU, a
   build without DL_CUDA (where only DL_DEVICE_CPU works). */
DLDEF int dl_model_move(dl_model *m, dl_device device);

DLDEF int dl_model_num_layers(const dl_model *m);
DLDEF dl_layer *dl_model_layer(const dl_model *m, int i);
DLDEF dl_layer *dl_model_find_layer(const dl_model *m, const char *name);   /* NULL if absent */
/* Weights: trainable ones (what the optimizer updates) when trainable_only, else all (running
   statistics too). Fills up to cap pointers; returns the count. */
DLDEF int dl_model_weights(const dl_model *m, int trainable_only, dl_tensor **out, int cap);
DLDEF long dl_model_num_params(const dl_model *m, int trainable_only);
/* Keras' model.summary(): layers, output shapes, parameter counts, into buf (always NUL-ended).
   Returns the length it needed (like snprintf). Needs a built model. dl_model_print_summary
   hands it to the log (dl_set_log: stdout by default) as DL_LOG_INFO. */
DLDEF size_t dl_model_summary(dl_model *m, char *buf, size_t size);
#ifndef DL_NO_STDIO
DLDEF int dl_model_print_summary(dl_model *m);
#endif

/* ==== TRAINING: compile, fit, evaluate, predict ============================================= */

/* Losses. The model outputs logits (Keras' from_logits=True), except that when the model's last
   layer applies DL_ACT_SOFTMAX (or DL_ACT_SIGMOID for DL_LOSS_BINARY_CE) the outputs are taken as
   probabilities, as Keras' default from_logits=False does (clipped to [1e-7, 1 - 1e-7]).
     SPARSE_CATEGORICAL_CE  labels i32 [N]           CATEGORICAL_CE  targets f32 [N, C]
     BINARY_CE              targets f32 [N] or [N,1] in [0, 1]
     MSE, MAE, HUBER(1.0)   targets f32 shaped like the output (or [N] for an [N, 1] output) */
typedef enum dl_loss {
    DL_LOSS_SPARSE_CATEGORICAL_CE = 1, DL_LOSS_CATEGORICAL_CE, DL_LOSS_BINARY_CE, DL_LOSS_MSE,
    DL_LOSS_MAE, DL_LOSS_HUBER
} dl_loss;
/* Metrics, or-ed together; each has Keras' name in logs and history. Accuracy compares the
   argmax with the label (a 0.5 threshold for binary outputs); top-k counts labels among the k
   largest outputs (k = 5, dl_model_set_top_k); precision and recall are binary (threshold 0.5 on
   the probability), or for several classes the macro average over classes. */
enum {
    DL_METRIC_ACCURACY = 1, DL_METRIC_TOP_K = 2, DL_METRIC_PRECISION = 4, DL_METRIC_RECALL = 8,
    DL_METRIC_MSE = 16, DL_METRIC_MAE = 32
};
#define DL_MAX_METRICS 6

/* Sets how fit trains: the model takes over opt (it frees it). Builds nothing yet. 0 on success. */
DLDEF int dl_compile(dl_model *m, dl_optim *opt, dl_loss loss, unsigned metrics);
DLDEF void dl_model_set_top_k(dl_model *m, int k);
DLDEF dl_optim *dl_model_optimizer(const dl_model *m);   /* borrowed */

/* What callbacks and the history see: loss and metrics averaged over the samples seen so far
   in the epoch (per batch) or over the epoch, then the validation ones. */
typedef struct dl_logs {
    int epoch, epochs;        /* 0-based epoch, and how many fit runs */
    int batch, batches;       /* 0-based batch within the epoch, and batches per epoch */
    int n;                    /* 1 + n_metrics values below are set */
    const char *names[1 + DL_MAX_METRICS];        /* "loss", "accuracy", ... */
    double values[1 + DL_MAX_METRICS];
    int has_val;
    double val_values[1 + DL_MAX_METRICS];        /* "val_loss", "val_accuracy", ... */
    double lr;                /* the optimizer's learning rate */
    double seconds;           /* time spent in the epoch so far */
} dl_logs;
/* A logged value by name ("loss", "val_accuracy", ...); NaN when absent. */
DLDEF double dl_logs_get(const dl_logs *logs, const char *name);

typedef struct dl_callback dl_callback;
struct dl_callback {
    void (*on_train_begin)(dl_callback *cb, dl_model *m);
    void (*on_epoch_begin)(dl_callback *cb, dl_model *m, int epoch);
    void (*on_batch_end)(dl_callback *cb, dl_model *m, const dl_logs *logs);
    void (*on_epoch_end)(dl_callback *cb, dl_model *m, const dl_logs *logs);
    void (*on_train_end)(dl_callback *cb, dl_model *m);
    void (*destroy)(dl_callback *cb);   /* dl_callback_free calls it */
    void *user;
};
DLDEF void dl_callback_free(dl_callback *cb);   /* NULL is fine */
/* Stops after the current epoch when monitor ("val_loss", "accuracy", ...) has not improved by
   more than min_delta for patience epochs (lower is better for names ending in "loss", "mse",
   "mae"; higher otherwise). restore_best_weights puts the best epoch's weights back. Owned. */
DLDEF dl_callback *dl_early_stopping(const char *monitor, double min_delta, int patience, int restore_best_weights);
/* Saves the model (dl_model_save, with optimizer) to path after each epoch, or only when
   monitor improves when save_best_only. "%d" in path, if present, gets the epoch (1-based).
   A save that fails stops dl_fit, which returns NULL with "dl_model_checkpoint: epoch N: why". */
DLDEF dl_callback *dl_model_checkpoint(const char *path, const char *monitor, int save_best_only);
/* Sets the learning rate at the start of each epoch: schedule evaluated at the epoch index
   (per_batch = 0) or at the optimizer's step count before each batch (per_batch = 1). */
DLDEF dl_callback *dl_lr_scheduler(const dl_lr_schedule *schedule, int per_batch);
DLDEF void dl_model_stop_training(dl_model *m);   /* from a callback: stop after this epoch */

/* What fit did, epoch by epoch; owned by the model (valid until the next fit or free). */
typedef struct dl_history {
    int epochs;                          /* epochs run */
    int n;                               /* columns: loss, metrics, then val_ ones */
    const char *names[2 * (1 + DL_MAX_METRICS)];
    double *values;                      /* epochs x n, row-major */
    int nan_epoch, nan_batch;            /* terminate_on_nan stopped here (0-based); else -1 */
} dl_history;
DLDEF double dl_history_get(const dl_history *h, const char *name, int epoch);  /* NaN if absent */

/* Zero-init gives Keras' defaults: 1 epoch, batch 32, shuffled (seed 0), no validation,
   progress output chosen automatically. */
typedef struct dl_fit_opts {
    int epochs;                      /* 0 means 1; negative is an error */
    int batch_size;                  /* 0 means 32; negative is an error */
    int no_shuffle;                  /* 1: keep the data set's order */
    uint64_t seed;                   /* shuffle seed (each epoch's order depends on it) */
    float validation_split;          /* last fraction of the data held out, as Keras (before shuffling) */
    const dl_dataset *validation_data;  /* or an explicit validation set (takes precedence) */
    int verbose;                     /* 0 auto: a progress bar on a terminal, one line per epoch
                                        otherwise; 1 bar; 2 lines; -1 silent */
    int n_callbacks;
    dl_callback *const *callbacks;   /* borrowed */
    int initial_epoch;               /* to resume: epochs counted from here */
    int terminate_on_nan;            /* 1: Keras' TerminateOnNaN, see dl_fit */
} dl_fit_opts;
/* Trains on ds (x, and y as the loss needs). Returns the history, or NULL + dl_error() (also when
   a callback failed, e.g. a checkpoint that could not be saved). The model's arena use: the
   current arena is reset before every batch. Progress goes to the log (dl_set_log).
   terminate_on_nan: the first batch whose loss is NaN or infinite is not applied (the weights,
   batch-norm statistics included, and the optimizer stay as they were before it), training
   stops, a DL_LOG_WARN line names the epoch and batch, and the history (returned as usual)
   records them in nan_epoch and nan_batch; the interrupted epoch is not in the history, and
   on_train_end callbacks run. Without it a NaN loss keeps training. To find the op that made
   the first NaN or infinity, turn on dl_check_numerics (dl_tensor.h): fit then returns NULL
   at that op, whose name and input shapes are in dl_error(). */
DLDEF const dl_history *dl_fit(dl_model *m, const dl_dataset *ds, const dl_fit_opts *opts);
/* Loss and metrics on ds, into *logs' values (batch_size 0: 32). 0 on success. */
/* batch_size 0 means 32 (negative is an error); an empty data set is an error. */
DLDEF int dl_evaluate(dl_model *m, const dl_dataset *ds, int batch_size, dl_logs *logs);
/* Outputs for every sample of x, in batches: an owned tensor [N, ...] (dl_tensor_free). */
DLDEF dl_tensor *dl_predict(dl_model *m, const dl_tensor *x, int batch_size);
/* One step of training on one batch (what fit does per batch); returns the loss, NaN + dl_error()
   on failure. */
DLDEF double dl_train_on_batch(dl_model *m, dl_tensor *x, dl_tensor *y);
/* The compiled loss of a batch of outputs (an arena scalar with gradient). */
DLDEF dl_tensor *dl_model_loss(dl_model *m, dl_tensor *outputs, dl_tensor *targets);

/* ==== SAVING ================================================================================
   One safetensors file: weights as "layer_name/weight_name" (e.g. "dense/kernel"), and in
   __metadata__: "dl.format" = "dl.model.v1", "dl.architecture" (the layers and their graph, one
   line per layer, see the implementation's comment), "dl.compile" (loss, metrics, optimizer)
   and the optimizer's state as "optimizer/..." tensors when include_optimizer. A model saved and
   loaded predicts bit-identically, and training resumes exactly with the optimizer state.
   Custom layers are saved and rebuilt when their kind is registered (dl_layer_register); custom
   models cannot be rebuilt from a file: build the model in code and use dl_model_load_weights.
   Loading checks everything a file declares before using it: numbers in range, per-sample
   sizes (DL_MODEL_LOAD_MAX_VALUES) before the build, weights against the file; a failed load
   leaves nothing behind (no symbols for dl_sym_free_unused), and loading is linear in the
   number of layers. */
#ifndef DL_NO_STDIO
DLDEF int dl_model_save(dl_model *m, const char *path, int include_optimizer);   /* 0 on success */
DLDEF dl_model *dl_model_load(const char *path);    /* owned; NULL + dl_error() on any problem */
DLDEF int dl_model_save_weights(dl_model *m, const char *path);
/* Names, dtypes and shapes must match the (built) model; on failure nothing changes. */
DLDEF int dl_model_load_weights(dl_model *m, const char *path);
#endif
/* The same, in memory: serialize returns the size needed and writes when it fits in cap. */
DLDEF size_t dl_model_serialize(dl_model *m, int include_optimizer, void *out, size_t cap);
DLDEF dl_model *dl_model_parse(const void *bytes, size_t size);

/* ==== ESTIMATORS ==============================================================================
   Premade models with train / evaluate / predict / export in one object, as tf.estimator's
   DNNClassifier, LinearClassifier and LinearRegressor. They are built on the Keras-style API
   above (a Sequential model, dl_compile, dl_train_on_batch, dl_predict, dl_model_save), which
   stays reachable (dl_estimator_model) for anything the estimator does not do.

       dl_estimator *e = dl_dnn_classifier(4, &(dl_estimator_opts){
           .hidden_units = (const int[]){32, 16}, .n_hidden = 2, .n_classes = 3 });
       if (!e) { puts(dl_error()); return 1; }
       dl_estimator_train(e, train, 1000);              // 1000 batches (the data repeats)
       dl_logs r;
       dl_estimator_evaluate(e, test, &r);              // dl_logs_get(&r, "accuracy"), ...
       dl_tensor *p = dl_estimator_predict(e, test->x); // [N, 3] probabilities; yours
       dl_estimator_export(e, "iris.safetensors");      // dl_model_load + dl_predict serve it
       dl_tensor_free(p); dl_estimator_free(e);

   Features are numeric columns: x f32 [N, F], or [N, d1, d2, ...] with d1*d2*... = F, which is
   flattened (as a numeric_column of that shape). Labels: classifiers i32 [N] in [0, n_classes);
   regressors f32 [N] (i32 is accepted). No feature-column machinery (buckets, vocabularies,
   crosses, embeddings), weight columns, label_dimension > 1, or distribution.

   The models (what tf.estimator builds, with Keras' layer defaults):
     LinearClassifier / LinearRegressor   Flatten, Dense(K) "logits": kernel and bias start at
                                          zeros, as TF's linear model
     DNNClassifier                        Flatten, Dense(h_i, activation) "hiddenlayer_i" each
                                          followed by Dropout(dropout) when dropout > 0, then
                                          Dense(K) "logits" (glorot_uniform kernels, zero biases)
   Heads: n_classes = 2 gives one logit (K = 1) and sigmoid cross-entropy, as TF's binary head;
   n_classes > 2 gives K = n_classes logits and softmax cross-entropy; regressors have K = 1 and
   the mean squared error. The model (dl_estimator_model) outputs logits; predictions go through
   a serving model that shares its layers and adds the probabilities (dl_estimator_serving_model).

   Default optimizers (opts.optimizer NULL), TF's:
     DNN      Adagrad, lr 0.05, initial accumulator 0.1, eps 1e-7 (tf.keras Adagrad's settings)
     linear   TF uses Ftrl with lr min(0.2, 1/sqrt(F)) and no l1/l2. dl_optim.h has no Ftrl; but
              without regularization Ftrl-Proximal from zero weights makes exactly Adagrad's
              updates (w -= lr g / sqrt(accumulator), accumulator from 0.1), so that is used:
              Adagrad(lr min(0.2, 1/sqrt(F)), initial_accumulator 0.1, eps 0). Ftrl's l1/l2 are not available.

   Training: dl_estimator_train(e, ds, steps) runs `steps` batches (tf's train(input_fn, steps))
   of batch_size samples, shuffled per epoch with a dl_batcher seeded by opts.seed; the data
   repeats, so batches run on across epochs (the last batch of an epoch may be smaller, as with
   dataset.batch(b).repeat()). global_step (the
   optimizer's step count) persists across calls, and the data position is taken from it: on
   the same data set, train(a) then train(b) gives bit-identically the weights of train(a + b).
   A NaN loss stops training with an error, as TF's NanTensorHook. Like dl_fit, training and
   evaluation reset the current arena before every batch.

   Checkpoints (tf's model_dir): with opts.checkpoint set, a new estimator whose checkpoint file
   exists starts from it (weights, optimizer and its state, so global_step too; the file must
   match the estimator's architecture), and every train call writes it at its end
   (dl_model_save with the optimizer). It is a file path, not a directory.

   Errors: constructors return NULL and other calls -1 (or NULL) with dl_error() set; bad
   arguments never crash. Ownership is noted at each function. */

typedef struct dl_estimator dl_estimator;

/* Zero-init gives TF's defaults. */
typedef struct dl_estimator_opts {
    const int *hidden_units;    /* DNN only (required): n_hidden layer sizes, input side first */
    int n_hidden;               /* >= 1 for a DNN; ignored by linear estimators */
    int n_classes;              /* classifiers: 0 means 2; must be >= 2. Ignored by regressors */
    dl_optim *optimizer;        /* NULL: the default above. A fresh optimizer, which the
                                   estimator takes over (it is freed even when the constructor fails) */
    float learning_rate;        /* > 0: the default optimizer's learning rate instead of TF's */
    dl_act activation;          /* DNN hidden layers; 0 (DL_ACT_LINEAR) means DL_ACT_RELU, TF's default */
    float dropout;              /* DNN: rate of a Dropout after each hidden layer, in [0, 1); 0 none */
    int batch_size;             /* 0 means 32 */
    int no_shuffle;             /* 1: batches in the data set's order */
    uint64_t seed;              /* dl_nn_seed(seed) before the weights are made (so it reseeds the
                                   process-wide layer generator), and the shuffle seed */
    int log_every;              /* > 0: train logs "global_step N: loss = X" every log_every
                                   steps (tf's log_step_count_steps, 100 there); 0 silent */
    const char *checkpoint;     /* NULL, or a file to resume from and save to (see above); copied */
} dl_estimator_opts;

/* Constructors. n_features F > 0; opts may be NULL only for the linear ones (the defaults).
   Owned: dl_estimator_free. NULL + dl_error() on bad settings or a checkpoint that does not fit. */
DLDEF dl_estimator *dl_dnn_classifier(int n_features, const dl_estimator_opts *opts);
DLDEF dl_estimator *dl_linear_classifier(int n_features, const dl_estimator_opts *opts);
DLDEF dl_estimator *dl_linear_regressor(int n_features, const dl_estimator_opts *opts);
DLDEF void dl_estimator_free(dl_estimator *e);   /* its models and optimizer; NULL is fine */

/* Trains for `steps` batches (0: one epoch's worth, ceil(N / batch_size)); see above. ds is
   borrowed. 0 on success; -1 + dl_error() on bad data (wrong feature count, missing or
   out-of-range labels), a NaN loss, or a checkpoint that cannot be written. */
DLDEF int dl_estimator_train(dl_estimator *e, const dl_dataset *ds, long steps);

/* Evaluates on every sample of ds (in order, no dropout), into *out (names, values, n, batches
   and lr; the rest zero), in double precision over the whole set, in this order:
     every estimator   "loss" (mean loss per sample, the compiled loss of the model, so
                       dl_evaluate on dl_estimator_model agrees), "average_loss" (the same
                       number: TF's "loss" is the mean of per-batch means, which differs only
                       through a smaller last batch), ..., "global_step" (last)
     classifiers       "accuracy" (the argmax; for 2 classes, probability > 0.5)
     2 classes         "precision", "recall" (of class 1 at threshold 0.5; 0 when undefined),
                       "auc" (exact area under the ROC curve, ties counted half; TF
                       approximates it with 200 thresholds; NaN when ds holds one class only)
     regressors        "label/mean", "prediction/mean"
   0 on success, -1 + dl_error(). */
DLDEF int dl_estimator_evaluate(dl_estimator *e, const dl_dataset *ds, dl_logs *out);

/* Predictions for every sample of x: classifiers give probabilities f32 [N, n_classes] (2
   columns for a binary one: 1 - p, p), regressors values f32 [N, 1]. It is dl_predict on the
   serving model with batch_size, so an exported and reloaded model gives the same bits. Owned:
   dl_tensor_free. NULL + dl_error(). */
DLDEF dl_tensor *dl_estimator_predict(dl_estimator *e, const dl_tensor *x);
/* Classifiers: the predicted class of every sample, i32 [N] (tf's class_ids): the argmax of the
   logits, for 2 classes logit > 0. Owned: dl_tensor_free. NULL + dl_error() (also for regressors). */
DLDEF dl_tensor *dl_estimator_predict_classes(dl_estimator *e, const dl_tensor *x);

#ifndef DL_NO_STDIO
/* Saves the serving model (tf's export_saved_model): dl_model_save without optimizer, not
   compiled; dl_model_load gives a model whose dl_predict returns what dl_estimator_predict
   does. 0 on success, -1 + dl_error(). */
DLDEF int dl_estimator_export(dl_estimator *e, const char *path);
#endif

/* The trained model (outputs logits or values; compiled with the head's loss, accuracy for
   classifiers): borrowed, valid until dl_estimator_free. Training it directly (dl_fit) is fine
   and moves global_step on. */
DLDEF dl_model *dl_estimator_model(const dl_estimator *e);
/* The model that export saves: the same layers, plus the probabilities for classifiers (a Dense
   layer "probabilities" with the fixed kernel [0, 1] and softmax for 2 classes, so that the
   logit z gives [1 - sigmoid(z), sigmoid(z)]; an Activation(softmax) for more). Borrowed; not
   compiled (dl_model_serialize it for an export in memory). */
DLDEF dl_model *dl_estimator_serving_model(const dl_estimator *e);
DLDEF long dl_estimator_global_step(const dl_estimator *e);   /* batches trained so far; -1 for NULL */

#ifdef __cplusplus
}
/* C++ has no compound literals: a variadic template builds the array instead. */
template <typename... L> static inline dl_model *dl__sequential_cxx(L... layers) {
    dl_layer *list[] = {layers...};
    return dl_sequential_n((int)sizeof...(layers), list);
}
#define dl_sequential(...) dl__sequential_cxx(__VA_ARGS__)
#else
/* The arguments appear once in the expansion, so a compiler error in one (a constructor given the
   wrong arguments) is reported once; the preprocessor counts them (up to 64). */
#define dl_sequential(...) dl_sequential_n(DL__NARGS(__VA_ARGS__), (dl_layer *[]){__VA_ARGS__})
#define DL__NARGS(...)                                                                           \
    DL__NARGS_(__VA_ARGS__, 64, 63, 62, 61, 60, 59, 58, 57, 56, 55, 54, 53, 52, 51, 50, 49, 48, 47, 46, \
               45, 44, 43, 42, 41, 40, 39, 38, 37, 36, 35, 34, 33, 32, 31, 30, 29, 28, 27, 26, 25, 24, 23, \
               22, 21, 20, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0)
#define DL__NARGS_(_1, _2, _3, _4, _5, _6, _7, _8, _9, _10, _11, _12, _13, _14, _15, _16, _17, _18, _19, \
                   _20, _21, _22, _23, _24, _25, _26, _27, _28, _29, _30, _31, _32, _33, _34, _35, _36,  \
                   _37, _38, _39, _40, _41, _42, _43, _44, _45, _46, _47, _48, _49, _50, _51, _52, _53,  \
                   _54, _55, _56, _57, _58, _59, _60, _61, _62, _63, _64, n, ...) n
#endif
#endif /* DL_NN_H */

#if defined(DL_IMPLEMENTATION) && !defined(DL_IMPLEMENTATION_ELSEWHERE) && !defined(DL__OPTIM_IMPLEMENTED)
#include "dl_optim.h"   /* its implementation too, also when it was first included plainly */
#endif

#if defined(DL_IMPLEMENTATION) && !defined(DL__NN_IMPLEMENTED) && !defined(DL_IMPLEMENTATION_ELSEWHERE)
#define DL__NN_IMPLEMENTED

#include <errno.h>
#include <float.h>
#include <limits.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if !defined(_WIN32)
#include <sys/time.h>   /* gettimeofday, for progress bars and epoch times */
#include <unistd.h>     /* isatty: a progress bar only on a terminal */
#endif
#if defined(DL_HAVE_IMAGE_FOLDER) && !defined(_WIN32)
#include <dirent.h>
#include <sys/stat.h>
#endif

/* ==== DATA: implementation (tests: tests/test_nn_data.c) ===================================== */

DLDEF void dl_dataset_free(dl_dataset *ds) {
    int i;
    if (!ds) return;
    dl_tensor_free(ds->x);
    dl_tensor_free(ds->y);
    if (ds->class_names) {
        for (i = 0; i < ds->num_classes; i++) DL_FREE(ds->class_names[i]);
        DL_FREE(ds->class_names);
    }
    DL_FREE(ds);
}

static dl_dataset *dl__dataset_alloc(void) {
    dl_dataset *ds = (dl_dataset *)DL_MALLOC(sizeof *ds);
    if (!ds) { dl_set_error("dl_dataset: out of memory"); return NULL; }
    memset(ds, 0, sizeof *ds);
    return ds;
}

/* Re-sets dl_error() as "fn: where: <old message without its `strip` prefix>". */
static void dl__rewrap_error(const char *fn, const char *where, const char *strip) {
    char msg[512];
    const char *old = dl_error();
    size_t n = strlen(old), k = strlen(strip);
    if (n >= sizeof msg) n = sizeof msg - 1;
    memcpy(msg, old, n);
    msg[n] = 0;
    dl_set_error("%s: %s%s%s", fn, where ? where : "", where ? ": " : "", msg + (strncmp(msg, strip, k) == 0 ? k : 0));
}

/* ---- CRC32 (the polynomial of gzip, 0xEDB88320 reflected), table built per call ---- */
DLDEF uint32_t dl_crc32(uint32_t crc, const void *data, size_t len) {
    uint32_t table[256];
    const unsigned char *p = (const unsigned char *)data;
    uint32_t i, k;
    for (i = 0; i < 256; i++) {
        uint32_t c = i;
        for (k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        table[i] = c;
    }
    crc = ~crc;
    while (len--) crc = table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

/* ---- Inflate (RFC 1951) ----------------------------------------------------------------------
   After Mark Adler's puff.c in structure: canonical Huffman codes decoded one bit at a time
   from count/symbol tables (simple and obviously bounded, if not the fastest). Every read of
   the input is bounds-checked: running past the end sets `err` and yields zero bits, and every
   loop tests `err`, so a truncated stream ends quickly with an error. Every write is checked
   against the output capacity and every back-reference against the bytes written so far. */
#define DL__MAXBITS 15
typedef struct dl__inflate {
    const unsigned char *in;
    size_t in_len, in_pos;
    unsigned char *out;
    size_t cap, out_pos;
    uint32_t bitbuf;
    int bitcnt;
    int prefix;      /* 1: stop (without error) once cap bytes are out: a peek at the start */
    const char *err; /* first error, NULL while fine; dl__inflate_full when a prefix is complete */
} dl__inflate;
static const char dl__inflate_full[] = "output buffer full";

/* Output that does not fit: an error, or in prefix mode the end of the peek (what fits is kept). */
static void dl__inflate_overflow(dl__inflate *s) { s->err = s->prefix ? dl__inflate_full : "output larger than expected"; }

typedef struct dl__huff {
    short count[DL__MAXBITS + 1]; /* codes of each length */
    short symbol[288];            /* symbols in canonical order */
} dl__huff;

static uint32_t dl__bits(dl__inflate *s, int need) { /* need <= 16; LSB-first as deflate packs */
    uint32_t v = s->bitbuf;
    while (s->bitcnt < need) {
        if (s->in_pos >= s->in_len) { if (!s->err) s->err = "truncated stream"; return 0; }
        v |= (uint32_t)s->in[s->in_pos++] << s->bitcnt;
        s->bitcnt += 8;
    }
    s->bitbuf = v >> need;
    s->bitcnt -= need;
    return v & ((1u << need) - 1u);
}

/* Builds h from code lengths. Returns 0 for a complete code, > 0 for an incomplete one (codes
   left unused), < 0 for an over-subscribed one (not a prefix code: always an error). */
static int dl__huff_build(dl__huff *h, const short *length, int n) {
    short offs[DL__MAXBITS + 1];
    int left = 1, len, sym;
    for (len = 0; len <= DL__MAXBITS; len++) h->count[len] = 0;
    for (sym = 0; sym < n; sym++) h->count[length[sym]]++;
    if (h->count[0] == n) return 0; /* no codes: complete, but decoding will fail */
    for (len = 1; len <= DL__MAXBITS; len++) {
        left <<= 1;
        left -= h->count[len];
        if (left < 0) return left;
    }
    offs[1] = 0;
    for (len = 1; len < DL__MAXBITS; len++) offs[len + 1] = (short)(offs[len] + h->count[len]);
    for (sym = 0; sym < n; sym++)
        if (length[sym] != 0) h->symbol[offs[length[sym]]++] = (short)sym;
    return left;
}

/* Next symbol coded with h, or -1 (err set) for bits that match no code. */
static int dl__decode(dl__inflate *s, const dl__huff *h) {
    int code = 0, first = 0, index = 0, len, count;
    for (len = 1; len <= DL__MAXBITS; len++) {
        code |= (int)dl__bits(s, 1);
        if (s->err) return -1;
        count = h->count[len];
        if (code - count < first) return h->symbol[index + (code - first)];
        index += count;
        first += count;
        first <<= 1;
        code <<= 1;
    }
    s->err = "invalid Huffman code";
    return -1;
}

static const short dl__len_base[29] = {3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31,
                                      35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258};
static const short dl__len_extra[29] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2,
                                       3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
static const unsigned short dl__dist_base[30] = {1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129,
                                                193, 257, 385, 513, 769, 1025, 1537, 2049, 3073,
                                                4097, 6145, 8193, 12289, 16385, 24577};
static const short dl__dist_extra[30] = {0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6,
                                        6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13};

/* Literal/length and distance symbols until end-of-block (256). */
static void dl__codes(dl__inflate *s, const dl__huff *lencode, const dl__huff *distcode) {
    for (;;) {
        int sym = dl__decode(s, lencode);
        if (s->err) return;
        if (sym < 256) {
            if (s->out_pos >= s->cap) { dl__inflate_overflow(s); return; }
            s->out[s->out_pos++] = (unsigned char)sym;
        } else if (sym == 256) {
            return;
        } else {
            size_t len, dist, i;
            sym -= 257;
            if (sym >= 29) { s->err = "invalid length symbol"; return; }
            len = (size_t)dl__len_base[sym] + dl__bits(s, dl__len_extra[sym]);
            sym = dl__decode(s, distcode);
            if (s->err) return;
            if (sym >= 30) { s->err = "invalid distance symbol"; return; }
            dist = (size_t)dl__dist_base[sym] + dl__bits(s, dl__dist_extra[sym]);
            if (s->err) return;
            if (dist > s->out_pos) { s->err = "distance too far back"; return; }
            if (len > s->cap - s->out_pos) {
                if (s->prefix) len = s->cap - s->out_pos;   /* copy what fits, then stop */
                else { dl__inflate_overflow(s); return; }
                for (i = 0; i < len; i++, s->out_pos++) s->out[s->out_pos] = s->out[s->out_pos - dist];
                dl__inflate_overflow(s);
                return;
            }
            for (i = 0; i < len; i++, s->out_pos++) s->out[s->out_pos] = s->out[s->out_pos - dist];
        }
    }
}

static void dl__stored(dl__inflate *s) {
    size_t len, nlen;
    s->bitbuf = 0; /* skip to a byte boundary: dl__bits never holds a whole unread byte */
    s->bitcnt = 0;
    if (s->in_len - s->in_pos < 4) { s->err = "truncated stream"; return; }
    len = s->in[s->in_pos] | ((size_t)s->in[s->in_pos + 1] << 8);
    nlen = s->in[s->in_pos + 2] | ((size_t)s->in[s->in_pos + 3] << 8);
    s->in_pos += 4;
    if (len != (~nlen & 0xffff)) { s->err = "stored block length check failed"; return; }
    if (len > s->in_len - s->in_pos) { s->err = "truncated stream"; return; }
    if (len > s->cap - s->out_pos) {
        if (s->prefix) { /* the peek ends inside this block */
            memcpy(s->out + s->out_pos, s->in + s->in_pos, s->cap - s->out_pos);
            s->out_pos = s->cap;
        }
        dl__inflate_overflow(s);
        return;
    }
    memcpy(s->out + s->out_pos, s->in + s->in_pos, len);
    s->out_pos += len;
    s->in_pos += len;
}

static void dl__fixed(dl__inflate *s) {
    dl__huff lencode, distcode;
    short lengths[288];
    int sym;
    for (sym = 0; sym < 144; sym++) lengths[sym] = 8;
    for (; sym < 256; sym++) lengths[sym] = 9;
    for (; sym < 280; sym++) lengths[sym] = 7;
    for (; sym < 288; sym++) lengths[sym] = 8;
    dl__huff_build(&lencode, lengths, 288);
    for (sym = 0; sym < 30; sym++) lengths[sym] = 5;
    dl__huff_build(&distcode, lengths, 30);
    dl__codes(s, &lencode, &distcode);
}

static void dl__dynamic(dl__inflate *s) {
    static const short order[19] = {16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15};
    short lengths[286 + 30];
    dl__huff lencode, distcode;
    int nlen, ndist, ncode, index, err;
    nlen = (int)dl__bits(s, 5) + 257;
    ndist = (int)dl__bits(s, 5) + 1;
    ncode = (int)dl__bits(s, 4) + 4;
    if (s->err) return;
    if (nlen > 286 || ndist > 30) { s->err = "bad code counts"; return; }
    for (index = 0; index < 19; index++) lengths[order[index]] = index < ncode ? (short)dl__bits(s, 3) : 0;
    if (s->err) return;
    if (dl__huff_build(&lencode, lengths, 19) != 0) { s->err = "incomplete code-length code"; return; }
    index = 0;
    while (index < nlen + ndist) {
        int sym = dl__decode(s, &lencode), len, rep;
        if (s->err) return;
        if (sym < 16) { lengths[index++] = (short)sym; continue; }
        len = 0;
        if (sym == 16) {
            if (index == 0) { s->err = "repeat with no previous length"; return; }
            len = lengths[index - 1];
            rep = 3 + (int)dl__bits(s, 2);
        } else if (sym == 17) {
            rep = 3 + (int)dl__bits(s, 3);
        } else {
            rep = 11 + (int)dl__bits(s, 7);
        }
        if (s->err) return;
        if (index + rep > nlen + ndist) { s->err = "too many code lengths"; return; }
        while (rep--) lengths[index++] = (short)len;
    }
    if (lengths[256] == 0) { s->err = "no end-of-block code"; return; }
    err = dl__huff_build(&lencode, lengths, nlen);
    /* an incomplete literal/length code is allowed only as a single one-bit code */
    if (err < 0 || (err > 0 && nlen != lencode.count[0] + lencode.count[1])) { s->err = "bad literal/length code"; return; }
    err = dl__huff_build(&distcode, lengths + nlen, ndist);
    if (err < 0 || (err > 0 && ndist != distcode.count[0] + distcode.count[1])) { s->err = "bad distance code"; return; }
    dl__codes(s, &lencode, &distcode);
}

static int dl__inflate_run(const void *src, size_t src_len, void *dst, size_t cap, int prefix, size_t *out_len, size_t *in_used) {
    dl__inflate s;
    int last;
    memset(&s, 0, sizeof s);
    s.in = (const unsigned char *)src;
    s.in_len = src ? src_len : 0;
    s.out = (unsigned char *)dst;
    s.cap = dst ? cap : 0;
    s.prefix = prefix;
    do {
        int type;
        last = (int)dl__bits(&s, 1);
        type = (int)dl__bits(&s, 2);
        if (s.err) break;
        if (type == 0) dl__stored(&s);
        else if (type == 1) dl__fixed(&s);
        else if (type == 2) dl__dynamic(&s);
        else s.err = "invalid block type";
    } while (!last && !s.err);
    if (out_len) *out_len = s.out_pos;
    if (in_used) *in_used = s.in_pos;
    if (s.err && s.err != dl__inflate_full) { dl_set_error("dl_inflate: %s (at input byte %zu)", s.err, s.in_pos); return -1; }
    return 0;
}

DLDEF int dl_inflate(const void *src, size_t src_len, void *dst, size_t cap, size_t *out_len, size_t *in_used) {
    return dl__inflate_run(src, src_len, dst, cap, 0, out_len, in_used);
}

static uint32_t dl__le32(const unsigned char *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

/* The offset of a gzip member's deflate stream (after the header, RFC 1952); -1 + error. */
static int dl__gzip_header(const unsigned char *p, size_t src_len, size_t *start) {
    size_t pos = 10;
    unsigned flg;
    if (!p || src_len < 18) { dl_set_error("dl_gunzip: %zu bytes is too short for gzip", p ? src_len : 0); return -1; }
    if (p[0] != 0x1f || p[1] != 0x8b) { dl_set_error("dl_gunzip: not gzip (bad magic)"); return -1; }
    if (p[2] != 8) { dl_set_error("dl_gunzip: compression method %d is not deflate", p[2]); return -1; }
    flg = p[3];
    if (flg & 0xe0) { dl_set_error("dl_gunzip: reserved header flags set"); return -1; }
    if (flg & 4) { /* FEXTRA: XLEN bytes */
        size_t xlen;
        if (src_len - pos < 2) goto truncated;
        xlen = p[pos] | ((size_t)p[pos + 1] << 8);
        pos += 2;
        if (src_len - pos < xlen) goto truncated;
        pos += xlen;
    }
    if (flg & 8) { while (pos < src_len && p[pos]) pos++; if (pos++ >= src_len) goto truncated; } /* FNAME */
    if (flg & 16) { while (pos < src_len && p[pos]) pos++; if (pos++ >= src_len) goto truncated; } /* FCOMMENT */
    if (flg & 2) pos += 2;                                                                         /* FHCRC */
    if (pos > src_len || src_len - pos < 8) goto truncated;
    *start = pos;
    return 0;
truncated:
    dl_set_error("dl_gunzip: truncated header");
    return -1;
}

#ifndef DL_NO_STDIO   /* only the file reader below needs it */
/* The first up to n bytes of a gzip file's content, without inflating the rest: *got of them. */
static int dl__gunzip_prefix(const void *src, size_t src_len, void *dst, size_t n, size_t *got) {
    size_t pos;
    *got = 0;
    if (dl__gzip_header((const unsigned char *)src, src_len, &pos) != 0) return -1;
    if (dl__inflate_run((const unsigned char *)src + pos, src_len - pos - 8, dst, n, 1, got, NULL) != 0) {
        dl__rewrap_error("dl_gunzip", NULL, "dl_inflate: ");
        return -1;
    }
    return 0;
}
#endif

DLDEF void *dl_gunzip(const void *src, size_t src_len, size_t max_out, size_t *out_len) {
    const unsigned char *p = (const unsigned char *)src;
    size_t pos, isize, bound, got = 0, used = 0;
    unsigned char *out;
    if (out_len) *out_len = 0;
    if (dl__gzip_header(p, src_len, &pos) != 0) return NULL;
    /* Single member: the trailer is the last 8 bytes. ISIZE (length mod 2^32) sizes the buffer,
       but is trusted only as far as deflate's best ratio (1032:1) and max_out allow. */
    isize = dl__le32(p + src_len - 4);
    bound = (src_len - pos) * (size_t)1032;
    if ((src_len - pos) > SIZE_MAX / 1032 || bound < 1032) bound = SIZE_MAX;
    if (isize > bound) { dl_set_error("dl_gunzip: stated size %zu is impossible for %zu compressed bytes", isize, src_len - pos); return NULL; }
    if (max_out > 0 && isize > max_out) { dl_set_error("dl_gunzip: stated size %zu exceeds the limit %zu", isize, max_out); return NULL; }
    out = (unsigned char *)DL_MALLOC(isize ? isize : 1);
    if (!out) { dl_set_error("dl_gunzip: out of memory for %zu bytes", isize); return NULL; }
    if (dl_inflate(p + pos, src_len - pos - 8, out, isize, &got, &used) != 0) {
        dl__rewrap_error("dl_gunzip", NULL, "dl_inflate: ");
        DL_FREE(out);
        return NULL;
    }
    if (used != src_len - pos - 8) {
        dl_set_error("dl_gunzip: %zu bytes after the deflate stream (multi-member gzip is not supported)", src_len - pos - 8 - used);
        DL_FREE(out);
        return NULL;
    }
    if (got != isize) { dl_set_error("dl_gunzip: length check failed (%zu bytes, trailer says %zu)", got, isize); DL_FREE(out); return NULL; }
    if (dl_crc32(0, out, got) != dl__le32(p + src_len - 8)) { dl_set_error("dl_gunzip: CRC32 check failed"); DL_FREE(out); return NULL; }
    if (out_len) *out_len = got;
    return out;
}

/* ---- IDX ---- */
static uint32_t dl__be32(const unsigned char *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

/* Validates one IDX buffer of unsigned bytes: ndim in [lo, hi], dims > 0 and < 2^31, size ==
   header + product. dims[] gets the dimensions; returns the data pointer or NULL + error.
   With total != NULL only the header is checked (p holds its first len bytes, at least the
   header) and *total gets the whole file's size: header + product, or SIZE_MAX if that overflows. */
static const unsigned char *dl__idx_header(const char *what, const unsigned char *p, size_t len, int lo, int hi,
                                           int *ndim, uint32_t *dims, size_t *total) {
    size_t need, count = 1;
    int i;
    if (!p || len < 4) { dl_set_error("dl_idx_parse: %s: %zu bytes is too short for IDX", what, p ? len : 0); return NULL; }
    if (p[0] != 0 || p[1] != 0) { dl_set_error("dl_idx_parse: %s: bad magic (not an IDX file)", what); return NULL; }
    if (p[2] != 0x08) { dl_set_error("dl_idx_parse: %s: element type 0x%02x is not unsigned byte (0x08)", what, p[2]); return NULL; }
    *ndim = p[3];
    if (*ndim < lo || *ndim > hi) { dl_set_error("dl_idx_parse: %s: %d dimensions, expected %d..%d", what, *ndim, lo, hi); return NULL; }
    need = 4 + 4 * (size_t)*ndim;
    if (len < need) { dl_set_error("dl_idx_parse: %s: truncated header", what); return NULL; }
    for (i = 0; i < *ndim; i++) {
        dims[i] = dl__be32(p + 4 + 4 * i);
        if (dims[i] == 0 || dims[i] > (uint32_t)INT_MAX) { dl_set_error("dl_idx_parse: %s: dimension %d is %lu", what, i, (unsigned long)dims[i]); return NULL; }
        if (total) { count = count > (SIZE_MAX - need) / dims[i] ? SIZE_MAX - need : count * dims[i]; continue; }
        if (count > (len - need) / dims[i]) { dl_set_error("dl_idx_parse: %s: header promises more data than the file holds", what); return NULL; }
        count *= dims[i];
    }
    if (total) { *total = need + count; return p + need; }
    if (len - need != count) { dl_set_error("dl_idx_parse: %s: %zu data bytes, header says %zu", what, len - need, count); return NULL; }
    return p + need;
}

DLDEF dl_dataset *dl_idx_parse(const void *images, size_t images_len, const void *labels, size_t labels_len) {
    uint32_t idims[3], ldims[1];
    int indim, lndim, shape[4], nd, i;
    size_t k, total;
    const unsigned char *px, *pl = NULL;
    dl_dataset *ds;
    float *xs;
    px = dl__idx_header("images", (const unsigned char *)images, images_len, 2, 3, &indim, idims, NULL);
    if (!px) return NULL;
    if (labels) {
        pl = dl__idx_header("labels", (const unsigned char *)labels, labels_len, 1, 1, &lndim, ldims, NULL);
        if (!pl) return NULL;
        if (ldims[0] != idims[0]) { dl_set_error("dl_idx_parse: %lu images but %lu labels", (unsigned long)idims[0], (unsigned long)ldims[0]); return NULL; }
    }
    if (indim == 3) { shape[0] = (int)idims[0]; shape[1] = 1; shape[2] = (int)idims[1]; shape[3] = (int)idims[2]; nd = 4; }
    else { shape[0] = (int)idims[0]; shape[1] = (int)idims[1]; nd = 2; }
    ds = dl__dataset_alloc();
    if (!ds) return NULL;
    ds->n = shape[0];
    ds->x = dl_tensor_new(DL_DTYPE_F32, nd, shape);
    if (!ds->x) { dl_dataset_free(ds); return NULL; }
    xs = dl_f32(ds->x);
    total = ds->x->numel;
    for (k = 0; k < total; k++) xs[k] = (float)px[k] * (1.0f / 255.0f);
    if (pl) {
        int32_t *ys;
        ds->y = dl_tensor_new(DL_DTYPE_I32, 1, shape);
        if (!ds->y) { dl_dataset_free(ds); return NULL; }
        ys = dl_i32(ds->y);
        for (i = 0; i < ds->n; i++) {
            ys[i] = pl[i];
            if (ys[i] + 1 > ds->num_classes) ds->num_classes = ys[i] + 1;
        }
    }
    return ds;
}

#ifndef DL_NO_STDIO
/* Reads a whole file (gunzipped when it starts with 1f 8b); owned: DL_FREE. With idx_what set
   (the IDX reader: "images" or "labels", idx_lo..idx_hi dimensions), a gzipped file's IDX header
   is inflated and checked first, and then no more than the size it promises is inflated: a small
   file that would inflate to gigabytes (a "gzip bomb") costs nothing when its header is wrong,
   and no more than its declared size otherwise. */
static unsigned char *dl__read_file_idx(const char *fn, const char *path, size_t *len, int gunzip,
                                        const char *idx_what, int idx_lo, int idx_hi) {
    FILE *f;
    long size;
    unsigned char *buf;
    *len = 0;
    if (!path) { dl_set_error("%s: NULL path", fn); return NULL; }
    f = fopen(path, "rb");
    if (!f) { dl_set_error("%s: cannot open %s", fn, path); return NULL; }
    if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        dl_set_error("%s: cannot size %s", fn, path);
        return NULL;
    }
    buf = (unsigned char *)DL_MALLOC((size_t)size + 1);
    if (!buf) { fclose(f); dl_set_error("%s: out of memory reading %s", fn, path); return NULL; }
    if (size > 0 && fread(buf, 1, (size_t)size, f) != (size_t)size) {
        fclose(f);
        DL_FREE(buf);
        dl_set_error("%s: cannot read %s", fn, path);
        return NULL;
    }
    fclose(f);
    buf[size] = 0;
    *len = (size_t)size;
    if (gunzip && *len >= 2 && buf[0] == 0x1f && buf[1] == 0x8b) {
        size_t n = 0, max_out = 0;
        unsigned char *raw;
        if (idx_what) {   /* the header from the first bytes, then exactly what it promises */
            unsigned char head[4 + 4 * 3];
            uint32_t dims[3];
            int nd;
            if (dl__gunzip_prefix(buf, *len, head, sizeof head, &n) != 0 ||
                !dl__idx_header(idx_what, head, n, idx_lo, idx_hi, &nd, dims, &max_out)) {
                DL_FREE(buf);
                dl__rewrap_error(fn, path, "");
                *len = 0;
                return NULL;
            }
            if (max_out == 0) max_out = 1;
        }
        raw = (unsigned char *)dl_gunzip(buf, *len, max_out, &n);
        DL_FREE(buf);
        if (!raw) {
            dl__rewrap_error(fn, path, "");
            *len = 0;
            return NULL;
        }
        *len = n;
        return raw;
    }
    return buf;
}

static unsigned char *dl__read_file(const char *fn, const char *path, size_t *len, int gunzip) {
    return dl__read_file_idx(fn, path, len, gunzip, NULL, 0, 0);
}

DLDEF dl_dataset *dl_idx_load(const char *images_path, const char *labels_path) {
    size_t ni = 0, nl = 0;
    unsigned char *img, *lab = NULL;
    dl_dataset *ds;
    img = dl__read_file_idx("dl_idx_load", images_path, &ni, 1, "images", 2, 3);
    if (!img) return NULL;
    if (labels_path) {
        lab = dl__read_file_idx("dl_idx_load", labels_path, &nl, 1, "labels", 1, 1);
        if (!lab) { DL_FREE(img); return NULL; }
    }
    ds = dl_idx_parse(img, ni, lab, nl);
    if (!ds) {
        char where[1024];
        snprintf(where, sizeof where, "%s%s%s", images_path, labels_path ? " + " : "", labels_path ? labels_path : "");
        dl__rewrap_error("dl_idx_load", where, "dl_idx_parse: "); /* the message says images or labels */
    }
    DL_FREE(img);
    DL_FREE(lab);
    return ds;
}

#ifndef DL_FASHION_MNIST_DIR
#define DL_FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"
#endif

/* dir/base, or dir/base.gz if that exists and the plain one does not. */
static int dl__find_file(char *buf, size_t size, const char *dir, const char *base) {
    FILE *f;
    int i;
    for (i = 0; i < 2; i++) {
        int n = snprintf(buf, size, "%s/%s%s", dir, base, i ? ".gz" : "");
        if (n < 0 || (size_t)n >= size) return -1;
        if ((f = fopen(buf, "rb")) != NULL) { fclose(f); return 0; }
    }
    return -1;
}

DLDEF dl_dataset *dl_fashion_mnist_load(const char *dir, int train) {
    char ip[1024], lp[1024];
    const char *pre = train ? "train" : "t10k";
    char ib[64], lb[64];
    if (!dir) dir = DL_FASHION_MNIST_DIR;
    snprintf(ib, sizeof ib, "%s-images-idx3-ubyte", pre);
    snprintf(lb, sizeof lb, "%s-labels-idx1-ubyte", pre);
    if (dl__find_file(ip, sizeof ip, dir, ib) != 0 || dl__find_file(lp, sizeof lp, dir, lb) != 0) {
        dl_set_error("dl_fashion_mnist_load: no %s[.gz] and %s[.gz] in %s (Debian: apt-get install dataset-fashion-mnist)", ib, lb, dir);
        return NULL;
    }
    return dl_idx_load(ip, lp);
}
#endif /* DL_NO_STDIO */

/* ---- CSV ---- */
/* One field [b, e) as a number finite as a float; 0 on success, -1 not a number, -2 overflows float. */
static int dl__csv_number(const char *b, const char *e, double *v) {
    char tmp[128], *end;
    size_t n;
    while (b < e && (*b == ' ' || *b == '\t')) b++;
    while (e > b && (e[-1] == ' ' || e[-1] == '\t')) e--;
    n = (size_t)(e - b);
    if (n == 0 || n >= sizeof tmp) return -1;
    memcpy(tmp, b, n);
    tmp[n] = 0;
    *v = strtod(tmp, &end);
    if (end != tmp + n) return -1;
    if (*v - *v != 0) return -1; /* NaN or +-inf (x - x is NaN for both) */
    if (fabs(*v) > FLT_MAX) return -2; /* 1e39 would load as inf */
    return 0;
}

/* End of the line starting at p (at '\n' or text end), and the content end without '\r'. */
static const char *dl__line_end(const char *p, const char *end, const char **content_end) {
    const char *q = p;
    while (q < end && *q != '\n') q++;
    *content_end = (q > p && q[-1] == '\r') ? q - 1 : q;
    return q;
}

static int dl__blank(const char *b, const char *e) {
    while (b < e && (*b == ' ' || *b == '\t')) b++;
    return b == e;
}

DLDEF dl_dataset *dl_csv_parse(const char *text, size_t len, const dl_csv_opts *opts) {
    dl_csv_opts o;
    const char *p, *end, *ce;
    char delim;
    int ncols = -1, nrows = 0, line = 0, label, nfeat, row, shape[2];
    dl_dataset *ds;
    if (opts) o = *opts; else memset(&o, 0, sizeof o);
    delim = o.delimiter ? o.delimiter : ',';
    if (!text) { dl_set_error("dl_csv_parse: NULL text"); return NULL; }
    end = text + len;
    /* Pass 1: count rows and check that every row has the same number of fields. */
    for (p = text; p < end; p = (p < end ? p + 1 : p)) {
        const char *q;
        int fields = 1;
        q = dl__line_end(p, end, &ce);
        line++;
        if (line == 1 && o.header) { p = q; continue; }
        if (dl__blank(p, ce)) { p = q; continue; }
        { const char *c; for (c = p; c < ce; c++) fields += *c == delim; }
        if (ncols < 0) ncols = fields;
        else if (fields != ncols) { dl_set_error("dl_csv_parse: line %d has %d fields, expected %d", line, fields, ncols); return NULL; }
        if (nrows == INT_MAX) { dl_set_error("dl_csv_parse: too many rows"); return NULL; }
        nrows++;
        p = q;
    }
    if (nrows == 0) { dl_set_error("dl_csv_parse: no data rows"); return NULL; }
    label = -1;
    if (!o.no_label) {
        label = o.label_col < 0 ? ncols + o.label_col : o.label_col;
        if (label < 0 || label >= ncols) { dl_set_error("dl_csv_parse: label column %d, but rows have %d fields", o.label_col, ncols); return NULL; }
    }
    nfeat = ncols - (label >= 0);
    if (nfeat < 1) { dl_set_error("dl_csv_parse: no feature columns"); return NULL; }
    ds = dl__dataset_alloc();
    if (!ds) return NULL;
    ds->n = nrows;
    shape[0] = nrows;
    shape[1] = nfeat;
    ds->x = dl_tensor_new(DL_DTYPE_F32, 2, shape);
    if (label >= 0) ds->y = dl_tensor_new(o.regression ? DL_DTYPE_F32 : DL_DTYPE_I32, 1, shape);
    if (!ds->x || (label >= 0 && !ds->y)) { dl_dataset_free(ds); return NULL; }
    /* Pass 2: parse. */
    line = 0;
    row = 0;
    for (p = text; p < end; p = (p < end ? p + 1 : p)) {
        const char *q = dl__line_end(p, end, &ce), *f = p;
        int col, fi = 0;
        line++;
        if ((line == 1 && o.header) || dl__blank(p, ce)) { p = q; continue; }
        for (col = 0; col < ncols; col++) {
            const char *fe = f;
            double v;
            int rc;
            while (fe < ce && *fe != delim) fe++;
            if ((rc = dl__csv_number(f, fe, &v)) != 0) {
                int n = (int)(fe - f);
                dl_set_error("dl_csv_parse: line %d, column %d: '%.*s' %s", line, col + 1, n > 40 ? 40 : n, f,
                             rc == -2 ? "overflows float" : "is not a number");
                dl_dataset_free(ds);
                return NULL;
            }
            if (col == label) {
                if (o.regression) dl_f32(ds->y)[row] = (float)v;
                else {
                    if (v != floor(v) || v < 0 || v > 16777216.0) {
                        dl_set_error("dl_csv_parse: line %d, column %d: label '%.*s' is not an integer in [0, 2^24]", line, col + 1,
                                     (int)(fe - f) > 40 ? 40 : (int)(fe - f), f);
                        dl_dataset_free(ds);
                        return NULL;
                    }
                    dl_i32(ds->y)[row] = (int32_t)v;
                    if ((int)v + 1 > ds->num_classes) ds->num_classes = (int)v + 1;
                }
            } else {
                dl_f32(ds->x)[(size_t)row * (size_t)nfeat + (size_t)fi++] = (float)v;
            }
            f = fe + 1;
        }
        row++;
        p = q;
    }
    return ds;
}

#ifndef DL_NO_STDIO
DLDEF dl_dataset *dl_csv_load(const char *path, const dl_csv_opts *opts) {
    size_t n;
    unsigned char *text = dl__read_file("dl_csv_load", path, &n, 0);
    dl_dataset *ds;
    if (!text) return NULL;
    ds = dl_csv_parse((const char *)text, n, opts);
    if (!ds) dl__rewrap_error("dl_csv_load", path, "dl_csv_parse: ");
    DL_FREE(text);
    return ds;
}
#endif

/* ---- Resizing and image folders ---- */

/* Source taps of output position o along an axis of n inputs resized by scale = n / n_out,
   with half-pixel centres (tf.image.resize, bilinear): i0, i1 and the weight t of i1. */
static void dl__bilinear_taps(int o, float scale, int n, int *i0, int *i1, float *t) {
    float f = ((float)o + 0.5f) * scale - 0.5f;
    if (f < 0) f = 0;
    *i0 = (int)f;
    if (*i0 > n - 1) *i0 = n - 1;
    *i1 = *i0 + 1 < n ? *i0 + 1 : n - 1;
    *t = f - (float)*i0;
}

DLDEF int dl_resize_bilinear_u8(const unsigned char *src, int h, int w, int c, float *out, int oh, int ow, float scale) {
    int oy, ox, ch;
    float sy, sx;
    if (!src || !out || h < 1 || w < 1 || c < 1 || oh < 1 || ow < 1) { dl_set_error("dl_resize_bilinear_u8: bad arguments"); return -1; }
    sy = (float)h / (float)oh;
    sx = (float)w / (float)ow;
    for (oy = 0; oy < oh; oy++) {
        int y0, y1;
        float ty;
        dl__bilinear_taps(oy, sy, h, &y0, &y1, &ty);
        for (ox = 0; ox < ow; ox++) {
            int x0, x1;
            float tx;
            dl__bilinear_taps(ox, sx, w, &x0, &x1, &tx);
            for (ch = 0; ch < c; ch++) {
                float a = src[((size_t)y0 * (size_t)w + (size_t)x0) * (size_t)c + (size_t)ch];
                float b = src[((size_t)y0 * (size_t)w + (size_t)x1) * (size_t)c + (size_t)ch];
                float d = src[((size_t)y1 * (size_t)w + (size_t)x0) * (size_t)c + (size_t)ch];
                float e = src[((size_t)y1 * (size_t)w + (size_t)x1) * (size_t)c + (size_t)ch];
                float top = a + (b - a) * tx, bot = d + (e - d) * tx;
                out[((size_t)ch * (size_t)oh + (size_t)oy) * (size_t)ow + (size_t)ox] = (top + (bot - top) * ty) * scale;
            }
        }
    }
    return 0;
}

#ifdef DL_HAVE_IMAGE_FOLDER
#ifndef _WIN32
typedef struct dl__strlist { char **s; int n, cap; } dl__strlist;

static int dl__strlist_add(dl__strlist *l, const char *s) {
    size_t n = strlen(s) + 1;
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 16;
        char **ns;
        if (cap > INT_MAX / 2) return -1;
        ns = (char **)DL_REALLOC(l->s, (size_t)cap * sizeof *ns);
        if (!ns) return -1;
        l->s = ns;
        l->cap = cap;
    }
    if (!(l->s[l->n] = (char *)DL_MALLOC(n))) return -1;
    memcpy(l->s[l->n++], s, n);
    return 0;
}
static void dl__strlist_free(dl__strlist *l) {
    int i;
    for (i = 0; i < l->n; i++) DL_FREE(l->s[i]);
    DL_FREE(l->s);
    memset(l, 0, sizeof *l);
}
static int dl__strcmp_p(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int dl__is_image_name(const char *name) {
    static const char *const ext[] = {"png", "jpg", "jpeg", "bmp", "gif", "tga", "ppm", "pgm", "pnm", "psd", "hdr", "pic"};
    const char *dot = strrchr(name, '.');
    size_t i, k;
    if (!dot || name[0] == '.') return 0;
    dot++;
    for (i = 0; i < sizeof ext / sizeof ext[0]; i++) {
        for (k = 0; ext[i][k] && dot[k]; k++) {
            char ch = dot[k];
            if (ch >= 'A' && ch <= 'Z') ch = (char)(ch - 'A' + 'a');
            if (ch != ext[i][k]) break;
        }
        if (!ext[i][k] && !dot[k]) return 1;
    }
    return 0;
}

/* Names in dir (sorted), only subdirectories (want_dirs) or only image files. */
static int dl__list_dir(const char *dir, int want_dirs, dl__strlist *out) {
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[4096];
    if (!d) { dl_set_error("dl_image_folder_load: cannot open directory %s", dir); return -1; }
    while ((e = readdir(d)) != NULL) {
        struct stat st;
        int n;
        if (e->d_name[0] == '.') continue;
        n = snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (n < 0 || (size_t)n >= sizeof path || stat(path, &st) != 0) continue;
        if (want_dirs ? !S_ISDIR(st.st_mode) : (!S_ISREG(st.st_mode) || !dl__is_image_name(e->d_name))) continue;
        if (dl__strlist_add(out, e->d_name) != 0) { closedir(d); dl_set_error("dl_image_folder_load: out of memory"); return -1; }
    }
    closedir(d);
    if (out->n > 1) qsort(out->s, (size_t)out->n, sizeof *out->s, dl__strcmp_p);
    return 0;
}
#endif

DLDEF dl_dataset *dl_image_folder_load(const char *dir, int height, int width, int channels) {
#ifdef _WIN32
    (void)dir; (void)height; (void)width; (void)channels;
    dl_set_error("dl_image_folder_load: not supported on Windows yet");
    return NULL;
#else
    dl__strlist classes = {0, 0, 0}, files = {0, 0, 0}; /* files: "class_index/name" pairs via parallel list */
    int *file_class = NULL, c, i, shape[4];
    size_t per;
    char path[4096];
    dl_dataset *ds = NULL;
    if (!dir || height < 1 || width < 1 || (channels != 1 && channels != 3 && channels != 4) ||
        (size_t)height * (size_t)width > (size_t)1 << 26) {
        dl_set_error("dl_image_folder_load: bad arguments (dir %s, %d x %d, %d channels; channels must be 1, 3 or 4)",
                     dir ? dir : "NULL", height, width, channels);
        return NULL;
    }
    if (dl__list_dir(dir, 1, &classes) != 0) return NULL;
    if (classes.n == 0) { dl_set_error("dl_image_folder_load: %s has no subfolders (one per class)", dir); goto fail; }
    for (c = 0; c < classes.n; c++) {
        dl__strlist names = {0, 0, 0};
        int before = files.n, *nf;
        snprintf(path, sizeof path, "%s/%s", dir, classes.s[c]);
        if (dl__list_dir(path, 0, &names) != 0) goto fail;
        for (i = 0; i < names.n; i++)
            if (dl__strlist_add(&files, names.s[i]) != 0) { dl__strlist_free(&names); dl_set_error("dl_image_folder_load: out of memory"); goto fail; }
        dl__strlist_free(&names);
        nf = (int *)DL_REALLOC(file_class, (size_t)(files.n ? files.n : 1) * sizeof *nf);
        if (!nf) { dl_set_error("dl_image_folder_load: out of memory"); goto fail; }
        file_class = nf;
        for (i = before; i < files.n; i++) file_class[i] = c;
    }
    if (files.n == 0) { dl_set_error("dl_image_folder_load: no image files under %s", dir); goto fail; }
    ds = dl__dataset_alloc();
    if (!ds) goto fail;
    shape[0] = files.n; shape[1] = channels; shape[2] = height; shape[3] = width;
    ds->n = files.n;
    ds->x = dl_tensor_new(DL_DTYPE_F32, 4, shape);
    ds->y = dl_tensor_new(DL_DTYPE_I32, 1, shape);
    if (!ds->x || !ds->y) goto fail;
    per = (size_t)channels * (size_t)height * (size_t)width;
    for (i = 0; i < files.n; i++) {
        int w = 0, h = 0, comp = 0;
        unsigned char *img;
        snprintf(path, sizeof path, "%s/%s/%s", dir, classes.s[file_class[i]], files.s[i]);
        img = stbi_load(path, &w, &h, &comp, channels);
        if (!img) { dl_set_error("dl_image_folder_load: cannot decode %s: %s", path, stbi_failure_reason()); goto fail; }
        if (dl_resize_bilinear_u8(img, h, w, channels, dl_f32(ds->x) + (size_t)i * per, height, width, 1.0f / 255.0f) != 0) {
            stbi_image_free(img);
            goto fail;
        }
        stbi_image_free(img);
        dl_i32(ds->y)[i] = file_class[i];
    }
    ds->num_classes = classes.n;
    ds->class_names = classes.s; /* ownership moves to ds */
    memset(&classes, 0, sizeof classes);
    dl__strlist_free(&files);
    DL_FREE(file_class);
    return ds;
fail:
    dl_dataset_free(ds);
    dl__strlist_free(&classes);
    dl__strlist_free(&files);
    DL_FREE(file_class);
    return NULL;
#endif
}
#endif /* DL_HAVE_IMAGE_FOLDER */

/* ---- Subsets, splits ---- */
static int dl__dataset_check(const char *fn, const dl_dataset *ds) {
    if (!ds || !ds->x || ds->x->ndim < 1 || ds->x->dtype != DL_DTYPE_F32 || !dl_is_contiguous(ds->x) || ds->x->shape[0] != ds->n ||
        (ds->y && (ds->y->ndim != 1 || ds->y->shape[0] != ds->n || !dl_is_contiguous(ds->y) || ds->y->dtype == DL_DTYPE_U8))) {
        dl_set_error("%s: bad dataset (need contiguous f32 x [N, ...] and y [N] of f32 or i32, or none)", fn);
        return -1;
    }
    return 0;
}

DLDEF dl_dataset *dl_dataset_subset(const dl_dataset *ds, const int *idx, int n) {
    dl_dataset *out;
    int shape[DL_MAX_DIMS], i;
    size_t per;
    if (dl__dataset_check("dl_dataset_subset", ds) != 0) return NULL;
    if (n < 0 || (n > 0 && !idx)) { dl_set_error("dl_dataset_subset: bad count %d", n); return NULL; }
    for (i = 0; i < n; i++)
        if (idx[i] < 0 || idx[i] >= ds->n) { dl_set_error("dl_dataset_subset: index %d out of range [0, %d)", idx[i], ds->n); return NULL; }
    out = dl__dataset_alloc();
    if (!out) return NULL;
    memcpy(shape, ds->x->shape, sizeof shape);
    shape[0] = n;
    out->n = n;
    out->num_classes = ds->num_classes;
    out->x = dl_tensor_new(DL_DTYPE_F32, ds->x->ndim, shape);
    if (ds->y) out->y = dl_tensor_new(ds->y->dtype, 1, shape);
    if (!out->x || (ds->y && !out->y)) { dl_dataset_free(out); return NULL; }
    per = ds->n ? ds->x->numel / (size_t)ds->n : 0;
    for (i = 0; i < n; i++) {
        memcpy(dl_f32(out->x) + (size_t)i * per, dl_f32(ds->x) + (size_t)idx[i] * per, per * sizeof(float));
        if (ds->y) memcpy((char *)out->y->data + (size_t)i * 4, (const char *)ds->y->data + (size_t)idx[i] * 4, 4);
    }
    if (ds->class_names) {
        out->class_names = (char **)DL_MALLOC((size_t)ds->num_classes * sizeof(char *));
        if (!out->class_names) { out->num_classes = 0; dl_dataset_free(out); dl_set_error("dl_dataset_subset: out of memory"); return NULL; }
        memset(out->class_names, 0, (size_t)ds->num_classes * sizeof(char *));
        for (i = 0; i < ds->num_classes; i++) {
            size_t len = strlen(ds->class_names[i]) + 1;
            out->class_names[i] = (char *)DL_MALLOC(len);
            if (!out->class_names[i]) { dl_dataset_free(out); dl_set_error("dl_dataset_subset: out of memory"); return NULL; }
            memcpy(out->class_names[i], ds->class_names[i], len);
        }
    }
    return out;
}

DLDEF int dl_dataset_split(const dl_dataset *ds, float fraction, uint64_t seed, dl_dataset **train, dl_dataset **val) {
    int *perm, nval;
    dl_rng r;
    if (train) *train = NULL;
    if (val) *val = NULL;
    if (dl__dataset_check("dl_dataset_split", ds) != 0) return -1;
    if (!train || !val || !(fraction >= 0.0f && fraction < 1.0f)) { dl_set_error("dl_dataset_split: need 0 <= fraction < 1 and two outputs"); return -1; }
    perm = (int *)DL_MALLOC((size_t)(ds->n ? ds->n : 1) * sizeof *perm);
    if (!perm) { dl_set_error("dl_dataset_split: out of memory"); return -1; }
    dl_rng_seed(&r, seed);
    dl_rng_permutation(&r, ds->n, perm);
    nval = (int)((double)fraction * (double)ds->n);
    *val = dl_dataset_subset(ds, perm, nval);
    *train = *val ? dl_dataset_subset(ds, perm + nval, ds->n - nval) : NULL;
    DL_FREE(perm);
    if (!*train) { dl_dataset_free(*val); *val = NULL; return -1; }
    return 0;
}

/* ---- Batching ---- */
struct dl_batcher {
    const dl_dataset *ds; /* borrowed */
    int batch, shuffle, drop_last, epoch, pos;
    uint64_t seed;
    int *order;           /* owned: this epoch's order */
};

static void dl__batcher_order(dl_batcher *b) {
    int i;
    if (b->shuffle) {
        dl_rng r; /* a pure function of (seed, epoch) */
        dl_rng_seed(&r, b->seed ^ ((uint64_t)(unsigned)b->epoch * 0x9E3779B97F4A7C15ull));
        dl_rng_permutation(&r, b->ds->n, b->order);
    } else {
        for (i = 0; i < b->ds->n; i++) b->order[i] = i;
    }
    b->pos = 0;
}

DLDEF dl_batcher *dl_batcher_new(const dl_dataset *ds, int batch_size, const dl_batch_opts *opts) {
    dl_batcher *b;
    if (dl__dataset_check("dl_batcher_new", ds) != 0) return NULL;
    if (batch_size < 1) { dl_set_error("dl_batcher_new: batch size %d", batch_size); return NULL; }
    b = (dl_batcher *)DL_MALLOC(sizeof *b);
    if (!b) { dl_set_error("dl_batcher_new: out of memory"); return NULL; }
    memset(b, 0, sizeof *b);
    b->ds = ds;
    b->batch = batch_size;
    if (opts) { b->shuffle = opts->shuffle; b->drop_last = opts->drop_last; b->seed = opts->seed; }
    b->order = (int *)DL_MALLOC((size_t)(ds->n ? ds->n : 1) * sizeof(int));
    if (!b->order) { DL_FREE(b); dl_set_error("dl_batcher_new: out of memory"); return NULL; }
    dl__batcher_order(b);
    return b;
}

DLDEF void dl_batcher_free(dl_batcher *b) {
    if (!b) return;
    DL_FREE(b->order);
    DL_FREE(b);
}

DLDEF int dl_batcher_num_batches(const dl_batcher *b) {
    if (!b) return 0;
    return b->ds->n / b->batch + (!b->drop_last && b->ds->n % b->batch != 0); /* no n + batch - 1: it can overflow */
}
DLDEF int dl_batcher_epoch(const dl_batcher *b) { return b ? b->epoch : 0; }
DLDEF void dl_batcher_set_epoch(dl_batcher *b, int epoch) {
    if (!b || epoch < 0) return;
    b->epoch = epoch;
    dl__batcher_order(b);
}

DLDEF int dl_batcher_next(dl_batcher *b, dl_tensor **x, dl_tensor **y) {
    const dl_dataset *ds;
    int shape[DL_MAX_DIMS], n, i;
    size_t per;
    if (x) *x = NULL;
    if (y) *y = NULL;
    if (!b || !x) { dl_set_error("dl_batcher_next: NULL argument"); return -1; }
    ds = b->ds;
    n = ds->n - b->pos;
    if (n > b->batch) n = b->batch;
    if (n <= 0 || (b->drop_last && n < b->batch)) { /* epoch over: prepare the next one */
        if (b->epoch == INT_MAX) { dl_set_error("dl_batcher_next: epoch counter at INT_MAX; restart with dl_batcher_set_epoch"); return -1; }
        b->epoch++;
        dl__batcher_order(b);
        return 0;
    }
    memcpy(shape, ds->x->shape, sizeof shape);
    shape[0] = n;
    *x = dl_tmp_uninit(DL_DTYPE_F32, ds->x->ndim, shape);
    if (!*x) return -1;
    per = ds->x->numel / (size_t)ds->n;
    for (i = 0; i < n; i++)
        memcpy(dl_f32(*x) + (size_t)i * per, dl_f32(ds->x) + (size_t)b->order[b->pos + i] * per, per * sizeof(float));
    if (ds->y && y) {
        *y = dl_tmp_uninit(ds->y->dtype, 1, shape);
        if (!*y) { *x = NULL; return -1; }
        for (i = 0; i < n; i++)
            memcpy((char *)(*y)->data + (size_t)i * 4, (const char *)ds->y->data + (size_t)b->order[b->pos + i] * 4, 4);
    }
    b->pos += n;
    return 1;
}

/* ---- Normalization, augmentation ---- */
DLDEF int dl_dataset_mean_std(const dl_dataset *ds, float *mean, float *std) {
    size_t per, inner, k;
    int c, C, i;
    const float *xs;
    if (dl__dataset_check("dl_dataset_mean_std", ds) != 0) return -1;
    if (!mean || !std || ds->x->ndim < 2 || ds->n < 1) { dl_set_error("dl_dataset_mean_std: need x of >= 2 dims, N >= 1 and outputs"); return -1; }
    C = ds->x->shape[1];
    per = ds->x->numel / (size_t)ds->n;
    inner = per / (size_t)(C ? C : 1);
    xs = dl_f32(ds->x);
    for (c = 0; c < C; c++) { /* two passes in double: exact enough, no catastrophic cancellation */
        double s = 0, ss = 0, m, cnt = (double)ds->n * (double)inner;
        for (i = 0; i < ds->n; i++)
            for (k = 0; k < inner; k++) s += xs[(size_t)i * per + (size_t)c * inner + k];
        m = s / cnt;
        for (i = 0; i < ds->n; i++)
            for (k = 0; k < inner; k++) { double d = xs[(size_t)i * per + (size_t)c * inner + k] - m; ss += d * d; }
        mean[c] = (float)m;
        std[c] = (float)sqrt(ss / cnt);
        if (!(std[c] > 0)) std[c] = 1.0f;
    }
    return 0;
}

DLDEF int dl_normalize(dl_tensor *x, const float *mean, const float *std) {
    size_t per, inner, k, n, i;
    int c, C;
    float *xs;
    if (!x || !mean || !std || x->dtype != DL_DTYPE_F32 || x->ndim < 2 || !dl_is_contiguous(x)) {
        dl_set_error("dl_normalize: need a contiguous f32 tensor of >= 2 dims, mean and std");
        return -1;
    }
    C = x->shape[1];
    for (c = 0; c < C; c++)
        if (!(std[c] > 0)) { dl_set_error("dl_normalize: std[%d] = %g is not > 0", c, (double)std[c]); return -1; }
    n = (size_t)x->shape[0];
    if (n == 0 || C == 0) return 0;
    per = x->numel / n;
    inner = per / (size_t)C;
    xs = dl_f32(x);
    for (i = 0; i < n; i++)
        for (c = 0; c < C; c++) {
            float m = mean[c], inv = 1.0f / std[c], *p = xs + i * per + (size_t)c * inner;
            for (k = 0; k < inner; k++) p[k] = (p[k] - m) * inv;
        }
    return 0;
}

static int dl__check_nchw(const char *fn, const dl_tensor *x, const dl_rng *r) {
    if (!x || !r || x->dtype != DL_DTYPE_F32 || x->ndim != 4 || !dl_is_contiguous(x)) {
        dl_set_error("%s: need a contiguous f32 [B, C, H, W] tensor and an rng", fn);
        return -1;
    }
    return 0;
}

DLDEF int dl_random_flip(dl_tensor *x, dl_rng *r) {
    int b, c, h, w, B, C, H, W;
    if (dl__check_nchw("dl_random_flip", x, r) != 0) return -1;
    B = x->shape[0]; C = x->shape[1]; H = x->shape[2]; W = x->shape[3];
    for (b = 0; b < B; b++) {
        if (dl_rng_u64(r) >> 63) continue; /* keep with probability 1/2 */
        for (c = 0; c < C; c++)
            for (h = 0; h < H; h++) {
                float *row = dl_f32(x) + (((size_t)b * (size_t)C + (size_t)c) * (size_t)H + (size_t)h) * (size_t)W;
                for (w = 0; w < W / 2; w++) { float t = row[w]; row[w] = row[W - 1 - w]; row[W - 1 - w] = t; }
            }
    }
    return 0;
}

DLDEF int dl_random_crop(dl_tensor *x, int pad, dl_rng *r) {
    int b, c, h, B, C, H, W;
    size_t per;
    float *tmp;
    if (dl__check_nchw("dl_random_crop", x, r) != 0) return -1;
    if (pad < 0 || pad > (INT_MAX - 1) / 2) { dl_set_error("dl_random_crop: pad %d out of range [0, (INT_MAX - 1) / 2]", pad); return -1; }
    B = x->shape[0]; C = x->shape[1]; H = x->shape[2]; W = x->shape[3];
    per = (size_t)C * (size_t)H * (size_t)W;
    if (per == 0 || pad == 0) return 0;
    tmp = (float *)dl_arena_alloc(dl_arena_current(), per * sizeof(float));
    if (!tmp) return -1;
    for (b = 0; b < B; b++) {
        /* Offsets into the padded image, in [0, 2*pad]: output (h, w) reads input (h + dy, w + dx). */
        int dy = dl_rng_int(r, 2 * pad + 1) - pad, dx = dl_rng_int(r, 2 * pad + 1) - pad;
        float *s = dl_f32(x) + (size_t)b * per;
        if (dy == 0 && dx == 0) continue;
        memcpy(tmp, s, per * sizeof(float));
        for (c = 0; c < C; c++)
            for (h = 0; h < H; h++) {
                float *row = s + ((size_t)c * (size_t)H + (size_t)h) * (size_t)W;
                long long sh = (long long)h + dy;
                int w;
                if (sh < 0 || sh >= H) { memset(row, 0, (size_t)W * sizeof(float)); continue; }
                for (w = 0; w < W; w++) {
                    long long sw = (long long)w + dx;
                    row[w] = (sw >= 0 && sw < W) ? tmp[((size_t)c * (size_t)H + (size_t)sh) * (size_t)W + (size_t)sw] : 0.0f;
                }
            }
    }
    return 0;
}

/* ==== LAYERS: implementation (tests: tests/test_nn_layers.c) ================================ */

#define DL__LAYER_HAS_ACT 1u   /* iconf[DL__ACT_SLOT] holds the layer's dl_act */
#define DL__LAYER_NAMED   2u   /* a model gave the layer its final name */
#define DL__LAYER_MARK    4u   /* scratch: "seen" during one dl_model_new or load, cleared after */
#define DL__LAYER_MODEL   8u   /* dl_model_as_layer: user is the dl_model it runs */
/* The model a dl_model_as_layer layer runs, else NULL. */
static dl_model *dl__layer_model(const dl_layer *l) {
    return l && (l->flags & DL__LAYER_MODEL) ? (dl_model *)l->user : NULL;
}
#define DL__ACT_SLOT (DL_LAYER_MAX_CONF - 1)

/* Per thread, as dl_error()'s message: threads building models at once draw from their own. */
static DL__TLS dl_rng dl__nn_rng = {{0x9E3779B97F4A7C15ull, 0xBF58476D1CE4E5B9ull, 0x94D049BB133111EBull, 1}};
static DL__TLS int dl__nn_rng_seeded = 0;

DLDEF void dl_nn_seed(uint64_t seed) { dl_rng_seed(&dl__nn_rng, seed); dl__nn_rng_seeded = 1; }

static dl_rng *dl__nn_gen(void) {
    if (!dl__nn_rng_seeded) dl_nn_seed(0);
    return &dl__nn_rng;
}

static double dl__now(void) {   /* seconds, for progress and timing only */
#if !defined(_WIN32)
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + 1e-6 * (double)tv.tv_usec;
#else
    return (double)clock() / CLOCKS_PER_SEC;
#endif
}

DLDEF const char *dl_act_name(dl_act act) {
    static const char *const names[] = {"linear", "relu", "sigmoid", "tanh", "softmax", "gelu", "elu",
                                        "leaky_relu", "softplus"};
    return (unsigned)act < sizeof names / sizeof names[0] ? names[act] : "?";
}

DLDEF dl_tensor *dl_activate(dl_tensor *x, dl_act act) {
    if (!x) return NULL;
    switch (act) {
    case DL_ACT_LINEAR: return x;
    case DL_ACT_RELU: return dl_relu(x);
    case DL_ACT_SIGMOID: return dl_sigmoid(x);
    case DL_ACT_TANH: return dl_tanh(x);
    case DL_ACT_SOFTMAX: return dl_softmax(x, x->ndim - 1);
    case DL_ACT_GELU: return dl_gelu(x);
    case DL_ACT_ELU: return dl_elu(x, 1.0f);
    case DL_ACT_LEAKY_RELU: return dl_leaky_relu(x, 0.2f);
    case DL_ACT_SOFTPLUS: return dl_softplus(x);
    }
    dl_set_error("dl_activate: unknown activation %d", (int)act);
    return NULL;
}

/* Keras' fans: [in, out] matrices; 4-d kernels [a, b, kh, kw] in torch layout. */
static void dl__fans(const dl_tensor *t, double *fan_in, double *fan_out) {
    double rf = 1;
    int i;
    if (t->ndim == 2) { *fan_in = t->shape[0]; *fan_out = t->shape[1]; return; }
    if (t->ndim >= 3) {
        for (i = 2; i < t->ndim; i++) rf *= t->shape[i];
        *fan_in = t->shape[1] * rf;
        *fan_out = t->shape[0] * rf;
        return;
    }
    *fan_in = *fan_out = t->ndim == 1 ? t->shape[0] : 1;
}

static int dl__init_orthogonal(dl_tensor *t, dl_rng *r);   /* with the recurrent layers, below */

DLDEF int dl_init_tensor(dl_tensor *t, dl_init init, dl_rng *rng) {
    double fi, fo;
    if (!t || t->dtype != DL_DTYPE_F32 || !dl_is_contiguous(t)) {
        dl_set_error("dl_init_tensor: needs a contiguous f32 tensor");
        return -1;
    }
    if (!rng) rng = dl__nn_gen();
    dl__fans(t, &fi, &fo);
    switch (init) {
    case DL_INIT_ZEROS: dl_fill(t, 0.0f); return 0;
    case DL_INIT_ONES: dl_fill(t, 1.0f); return 0;
    case DL_INIT_GLOROT_UNIFORM: dl_init_glorot_uniform(t, (int)fi, (int)fo, rng); return 0;
    case DL_INIT_GLOROT_NORMAL: dl_init_glorot_normal(t, (int)fi, (int)fo, rng); return 0;
    case DL_INIT_HE_UNIFORM: dl_init_he_uniform(t, (int)fi, rng); return 0;
    case DL_INIT_HE_NORMAL: dl_init_he_normal(t, (int)fi, rng); return 0;
    case DL_INIT_UNIFORM_005: dl_fill_uniform(t, -0.05f, 0.05f, rng); return 0;
    case DL_INIT_ORTHOGONAL: return dl__init_orthogonal(t, rng);
    }
    dl_set_error("dl_init_tensor: unknown initializer %d", (int)init);
    return -1;
}

/* ---- The layer object ---- */

DLDEF dl_layer *dl_layer_new(const dl_layer_ops *ops, const char *name, void *user) {
    dl_layer *l;
    if (!ops || !ops->forward) { dl_set_error("dl_layer_new: ops with a forward function needed"); return NULL; }
    l = (dl_layer *)DL_MALLOC(sizeof *l);
    if (!l) { dl_set_error("dl_layer_new: out of memory"); return NULL; }
    memset(l, 0, sizeof *l);
    l->ops = ops;
    snprintf(l->name, sizeof l->name, "%s", name && name[0] ? name : (ops->kind ? ops->kind : "layer"));
    l->trainable = 1;
    l->user = user;
    dl_rng_seed(&l->rng, dl_rng_u64(dl__nn_gen()));
    return l;
}

static void dl__layer_destroy(dl_layer *l) {
    int i;
    if (l->ops->destroy) l->ops->destroy(l);
    for (i = 0; i < l->n_params; i++) dl_tensor_free(l->params[i]);
    DL_FREE(l);
}

DLDEF void dl_layer_free(dl_layer *l) {
    if (l && l->refs <= 0) dl__layer_destroy(l);
}

/* While dl_model_load builds a model, the file it reads: every weight is checked against the
   file before it is allocated, so a hostile architecture cannot ask for more memory than the
   file holds. */
static DL__TLS const dl_safetensors *dl__loading;

static int dl__check_file_weight(const dl_layer *l, const char *name, int ndim, const int *shape) {
    char full[128];
    const dl_tensor *src;
    int i, ok;
    snprintf(full, sizeof full, "%s/%s", l->name, name);
    src = dl_safetensors_get(dl__loading, full);
    ok = src && src->ndim == ndim;
    for (i = 0; ok && i < ndim; i++) ok = src->shape[i] == shape[i];
    if (!ok) {
        char a[64];
        dl_set_error("the file has %s '%s' %s, but the layer makes it with %d axes", src ? "a weight" : "no weight", full,
                     src ? dl_shape_str(src, a, sizeof a) : "", ndim);
    }
    return ok ? 0 : -1;
}

DLDEF dl_tensor *dl_layer_add_weight(dl_layer *l, const char *name, int ndim, const int *shape,
                                     dl_init init, int trainable) {
    dl_tensor *t;
    if (!l || !name) { dl_set_error("dl_layer_add_weight: NULL layer or name"); return NULL; }
    if (l->n_params >= DL_LAYER_MAX_PARAMS || strlen(name) >= sizeof l->param_names[0]) {
        dl_set_error("dl_layer_add_weight: %s: too many weights or name '%s' too long", l->name, name);
        return NULL;
    }
    if (dl_layer_weight(l, name)) { dl_set_error("dl_layer_add_weight: %s already has '%s'", l->name, name); return NULL; }
    if (dl__loading && dl__check_file_weight(l, name, ndim, shape) != 0) return NULL;
    t = dl_tensor_new(DL_DTYPE_F32, ndim, shape);
    if (!t) return NULL;
    if (dl_init_tensor(t, init, NULL) != 0) { dl_tensor_free(t); return NULL; }
    if (trainable) dl_set_requires_grad(t, 1);
    l->params[l->n_params] = t;
    snprintf(l->param_names[l->n_params], sizeof l->param_names[0], "%s", name);
    l->param_trainable[l->n_params] = (unsigned char)(trainable != 0);
    l->n_params++;
    return t;
}

DLDEF dl_tensor *dl_layer_weight(const dl_layer *l, const char *name) {
    int i;
    if (!l || !name) return NULL;
    for (i = 0; i < l->n_params; i++)
        if (strcmp(l->param_names[i], name) == 0) return l->params[i];
    return NULL;
}

DLDEF dl_tensor *dl_layer_call_n(dl_layer *l, int n_in, dl_tensor *const *in, int training) {
    int i, lo, hi;
    dl_tensor *y;
    if (!l) { dl_set_error("dl_layer_call: NULL layer"); return NULL; }
    lo = l->ops->min_inputs ? l->ops->min_inputs : 1;
    hi = l->ops->max_inputs ? l->ops->max_inputs : 1;
    if (n_in < lo || n_in > hi || !in) {
        dl_set_error("%s (%s): takes %d to %d inputs, got %d", l->name, l->ops->kind, lo, hi, n_in);
        return NULL;
    }
    for (i = 0; i < n_in; i++) if (!in[i]) return NULL;   /* an earlier failure: keep its message */
    if (!l->built) {
        if (l->ops->build && l->ops->build(l, n_in, in) != 0) return NULL;
        l->built = 1;
    }
    y = l->ops->forward(l, n_in, in, training);
    if (y) {
        l->out_ndim = y->ndim - 1;
        for (i = 1; i < y->ndim; i++) l->out_shape[i - 1] = y->shape[i];
    }
    return y;
}

DLDEF dl_tensor *dl_layer_call(dl_layer *l, dl_tensor *x, int training) {
    return dl_layer_call_n(l, 1, &x, training);
}

/* ---- Built-in layers ----
   Settings live in iconf/fconf so that model files can store any layer the same way; each
   constructor below documents its slots. */

static dl_layer *dl__builtin(const dl_layer_ops *ops, const char *base) {
    return dl_layer_new(ops, base, NULL);
}

/* Copies the current error message (to build a new one around it). */
static void dl__error_copy(char *msg, size_t size) {
    size_t n = strlen(dl_error());
    if (n >= size) n = size - 1;
    memcpy(msg, dl_error(), n);
    msg[n] = 0;
}

static dl_layer *dl__ctor_fail(const char *fmt, ...) {
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    dl_set_error("%s", msg);
    return NULL;
}

static dl_tensor *dl__need_rank(const dl_layer *l, dl_tensor *x, int lo, int hi) {
    char s[64];
    if (x->ndim < lo || x->ndim > hi) {
        dl_set_error("%s (%s): input %s has %d axes, expected %d..%d (batch axis included)", l->name,
                     l->ops->kind, dl_shape_str(x, s, sizeof s), x->ndim, lo, hi);
        return NULL;
    }
    return x;
}

/* dl_layer_add_weight with the shape written out (C++ has no compound literals). */
static dl_tensor *dl__weight(dl_layer *l, const char *name, int ndim, int d0, int d1, int d2, int d3,
                             dl_init init, int trainable) {
    int shape[4];
    shape[0] = d0; shape[1] = d1; shape[2] = d2; shape[3] = d3;
    return dl_layer_add_weight(l, name, ndim, shape, init, trainable);
}

/* Dense: iconf[0] units, act slot. kernel [in, units] glorot_uniform, bias [units] zeros. */
static int dl__dense_build(dl_layer *l, int n, dl_tensor *const *in) {
    int in_dim = in[0]->shape[in[0]->ndim - 1];
    (void)n;
    if (in[0]->ndim < 2) { dl_set_error("%s (Dense): input needs a batch axis and a feature axis", l->name); return -1; }
    if (!dl__weight(l, "kernel", 2, in_dim, l->iconf[0], 0, 0, DL_INIT_GLOROT_UNIFORM, 1)) return -1;
    if (!dl__weight(l, "bias", 1, l->iconf[0], 0, 0, 0, DL_INIT_ZEROS, 1)) return -1;
    return 0;
}
static dl_tensor *dl__dense_forward(dl_layer *l, int n, dl_tensor *const *in, int training) {
    dl_tensor *x = in[0];
    (void)n; (void)training;
    if (x->ndim < 2 || x->shape[x->ndim - 1] != l->params[0]->shape[0]) {
        char s[64];
        dl_set_error("%s (Dense): input %s, but the kernel expects %d features", l->name,
                     dl_shape_str(x, s, sizeof s), l->params[0]->shape[0]);
        return NULL;
    }
    return dl_activate(dl_linear(x, l->params[0], l->params[1]), (dl_act)l->iconf[DL__ACT_SLOT]);
}
static const dl_layer_ops dl__dense_ops = {"Dense", dl__dense_build, dl__dense_forward, NULL, 1, 1};

static int dl__check_act(dl_act act) { return (unsigned)act <= (unsigned)DL_ACT_SOFTPLUS; }

DLDEF dl_layer *dl_Dense(int units, dl_act act) {
    dl_layer *l;
    if (units <= 0) return dl__ctor_fail("dl_Dense(units, act): units %d must be > 0", units);
    if (!dl__check_act(act)) return dl__ctor_fail("dl_Dense(units, act): unknown activation %d", (int)act);
    if (!(l = dl__builtin(&dl__dense_ops, "dense"))) return NULL;
    l->iconf[0] = units;
    l->iconf[DL__ACT_SLOT] = act;
    l->flags |= DL__LAYER_HAS_ACT;
    return l;
}

/* Conv2D / Conv2DTranspose: iconf[0] filters, [1] kernel, [2] stride, [3] padding, act slot. */
static int dl__conv_build(dl_layer *l, int n, dl_tensor *const *in) {
    int cin, k = l->iconf[1], transpose = l->ops->kind[6] == 'T';
    (void)n;
    if (in[0]->ndim != 4) { dl_set_error("%s (%s): input must be [N, C, H, W]", l->name, l->ops->kind); return -1; }
    cin = in[0]->shape[1];
    if (!dl__weight(l, "kernel", 4, transpose ? cin : l->iconf[0], transpose ? l->iconf[0] : cin, k, k,
                    DL_INIT_GLOROT_UNIFORM, 1))
        return -1;
    if (!dl__weight(l, "bias", 1, l->iconf[0], 0, 0, 0, DL_INIT_ZEROS, 1)) return -1;
    return 0;
}
static dl_tensor *dl__conv_forward(dl_layer *l, int n, dl_tensor *const *in, int training) {
    dl_tensor *x = in[0], *w = l->params[0];
    int k = l->iconf[1], s = l->iconf[2], same = l->iconf[3] == DL_PADDING_SAME;
    dl_conv_opts o;
    (void)n; (void)training;
    if (!dl__need_rank(l, x, 4, 4)) return NULL;
    if (x->shape[1] != w->shape[1]) {
        dl_set_error("%s (Conv2D): input has %d channels, the kernel expects %d", l->name, x->shape[1], w->shape[1]);
        return NULL;
    }
    memset(&o, 0, sizeof o);
    o.stride[0] = o.stride[1] = s;
    if (same) {   /* Keras: out = ceil(in / s); the odd extra padding row/column goes last */
        int ph = 0, pw = 0, d;
        for (d = 0; d < 2; d++) {
            int len = x->shape[2 + d], out = (len + s - 1) / s, total = (out - 1) * s + k - len;
            if (total < 0) total = 0;
            if (d == 0) ph = total; else pw = total;
        }
        if (ph % 2 == 0 && pw % 2 == 0) { o.padding[0] = ph / 2; o.padding[1] = pw / 2; }
        else x = dl_pad2d(x, pw / 2, pw - pw / 2, ph / 2, ph - ph / 2, DL_PAD_ZERO);
    }
    return dl_activate(dl_conv2d(x, w, l->params[1], &o), (dl_act)l->iconf[DL__ACT_SLOT]);
}
static dl_tensor *dl__convt_forward(dl_layer *l, int n, dl_tensor *const *in, int training) {
    dl_tensor *x = in[0], *w = l->params[0], *y;
    int k = l->iconf[1], s = l->iconf[2];
    dl_conv_opts o;
    (void)n; (void)training;
    if (!dl__need_rank(l, x, 4, 4)) return NULL;
    if (x->shape[1] != w->shape[0]) {
        dl_set_error("%s (Conv2DTranspose): input has %d channels, the kernel expects %d", l->name, x->shape[1], w->shape[0]);
        return NULL;
    }
    memset(&o, 0, sizeof o);
    o.stride[0] = o.stride[1] = s;
    y = dl_conv_transpose2d(x, w, l->params[1], &o);   /* full size (in - 1) * s + k */
    if (y && l->iconf[3] == DL_PADDING_SAME) {
        /* Keras "same": in * s, the transpose of a "same" convolution, which pads
           floor((k - s) / 2) first: crop that many at the start and the rest at the end. */
        int total = k - s, first = total / 2;
        y = dl_slice(dl_slice(y, 2, first, first + x->shape[2] * s, 1), 3, first, first + x->shape[3] * s, 1);
    }
    return dl_activate(y, (dl_act)l->iconf[DL__ACT_SLOT]);
}
static const dl_layer_ops dl__conv_ops = {"Conv2D", dl__conv_build, dl__conv_forward, NULL, 1, 1};
static const dl_layer_ops dl__convt_ops = {"Conv2DTranspose", dl__conv_build, dl__convt_forward, NULL, 1, 1};

static dl_layer *dl__conv_new(const dl_layer_ops *ops, const char *base, int filters, int kernel, int stride,
                              dl_padding padding, dl_act act) {
    dl_layer *l;
    /* each message names the argument list: dl_Conv2D(16, 3, DL_ACT_RELU), Keras' order, is a likely slip */
#define DL__CONV_ARGS "dl_%s(filters, kernel, stride, padding, act): "
    if (filters <= 0) return dl__ctor_fail(DL__CONV_ARGS "filters %d must be > 0", ops->kind, filters);
    if (kernel <= 0) return dl__ctor_fail(DL__CONV_ARGS "kernel %d must be > 0", ops->kind, kernel);
    if (stride <= 0) return dl__ctor_fail(DL__CONV_ARGS "stride %d must be > 0", ops->kind, stride);
    if (padding != DL_PADDING_VALID && padding != DL_PADDING_SAME)
        return dl__ctor_fail(DL__CONV_ARGS "padding %d must be DL_PADDING_VALID or DL_PADDING_SAME", ops->kind, (int)padding);
    if (!dl__check_act(act)) return dl__ctor_fail(DL__CONV_ARGS "unknown activation %d", ops->kind, (int)act);
    if (ops == &dl__convt_ops && padding == DL_PADDING_SAME && kernel < stride)
        return dl__ctor_fail(DL__CONV_ARGS "DL_PADDING_SAME needs kernel >= stride (got %d < %d)", ops->kind, kernel, stride);
#undef DL__CONV_ARGS
    if (!(l = dl__builtin(ops, base))) return NULL;
    l->iconf[0] = filters; l->iconf[1] = kernel; l->iconf[2] = stride; l->iconf[3] = padding;
    l->iconf[DL__ACT_SLOT] = act;
    l->flags |= DL__LAYER_HAS_ACT;
    return l;
}
DLDEF dl_layer *dl_Conv2D(int filters, int kernel, int stride, dl_padding padding, dl_act act) {
    return dl__conv_new(&dl__conv_ops, "conv2d", filters, kernel, stride, padding, act);
}
DLDEF dl_layer *dl_Conv2DTranspose(int filters, int kernel, int stride, dl_padding padding, dl_act act) {
    return dl__conv_new(&dl__convt_ops, "conv2d_transpose", filters, kernel, stride, padding, act);
}

/* Pooling: iconf[0] pool, [1] stride. */
static dl_tensor *dl__pool_forward(dl_layer *l, int n, dl_tensor *const *in, int training) {
    dl_conv_opts o;
    (void)n; (void)training;
    if (!dl__need_rank(l, in[0], 4, 4)) return NULL;
    memset(&o, 0, sizeof o);
    o.stride[0] = o.stride[1] = l->iconf[1];
    return l->ops->kind[0] == 'M' ? dl_max_pool2d(in[0], l->iconf[0], l->iconf[0], &o)
                                  : dl_avg_pool2d(in[0], l->iconf[0], l->iconf[0], &o);
}
static const dl_layer_ops dl__maxpool_ops = {"MaxPool2D", NULL, dl__pool_forward, NULL, 1, 1};
static const dl_layer_ops dl__avgpool_ops = {"AvgPool2D", NULL, dl__pool_forward, NULL, 1, 1};
static dl_layer *dl__pool_new(const dl_layer_ops *ops, const char *base, int pool, int stride) {
    dl_layer *l;
    if (pool <= 0) return dl__ctor_fail("dl_%s(pool, stride): pool %d must be > 0", ops->kind, pool);
    if (stride < 0) return dl__ctor_fail("dl_%s(pool, stride): stride %d must be >= 0 (0: the pool size)", ops->kind, stride);
    if (!(l = dl__builtin(ops, base))) return NULL;
    l->iconf[0] = pool;
    l->iconf[1] = stride ? stride : pool;
    return l;
}
DLDEF dl_layer *dl_MaxPool2D(int pool, int stride) { return dl__pool_new(&dl__maxpool_ops, "max_pooling2d", pool, stride); }
DLDEF dl_layer *dl_AvgPool2D(int pool, int stride) { return dl__pool_new(&dl__avgpool_ops, "average_pooling2d", pool, stride); }

static dl_tensor *dl__gap_forward(dl_layer *l, int n, dl_tensor *const *in, int training) {
    (void)n; (void)training;
    return dl__need_rank(l, in[0], 4, 4) ? dl_global_avg_pool2d(in[0]) : NULL;
}
static const dl_layer_ops dl__gap_ops = {"GlobalAvgPool2D", NULL, dl__gap_forward, NULL, 1, 1};
DLDEF dl_layer *dl_GlobalAvgPool2D(void) { return dl__builtin(&dl__gap_ops, "global_average_pooling2d"); }

static dl_tensor *dl__flatten_forward(dl_layer *l, int n, dl_tensor *const *in, int training) {
    (void)n; (void)training;
    if (in[0]->ndim == 1) return dl_unsqueeze(in[0], 1);
    return dl__need_rank(l, in[0], 1, DL_MAX_DIMS) ? dl_flatten(in[0], 1, in[0]->ndim - 1) : NULL;
}
static const dl_layer_ops dl__flatten_ops = {"Flatten", NULL, dl__flatten_forward, NULL, 1, 1};
DLDEF dl_layer *dl_Flatten(void) { return dl__builtin(&dl__flatten_ops, "flatten"); }

/* Reshape: iconf[0] ndim, iconf[1..] the per-sample shape. */
static dl_tensor *dl__reshape_forward(dl_layer *l, int n, dl_tensor *const *in, int training) {
    int shape[DL_MAX_DIMS], i;
    (void)n; (void)training;
    shape[0] = in[0]->shape[0];
    for (i = 0; i < l->iconf[0]; i++) shape[1 + i] = l->iconf[1 + i];
    return dl_reshape(in[0], 1 + l->iconf[0], shape);
}
static const dl_layer_ops dl__reshape_ops = {"Reshape", NULL, dl__reshape_forward, NULL, 1, 1};
DLDEF dl_layer *dl_Reshape(int ndim, const int *shape) {
    dl_layer *l;
    int i, neg = 0;
    if (ndim < 1 || ndim > DL_LAYER_MAX_CONF - 2)
        return dl__ctor_fail("dl_Reshape(ndim, shape): ndim %d must be in 1..%d", ndim, DL_LAYER_MAX_CONF - 2);
    if (!shape) return dl__ctor_fail("dl_Reshape(ndim, shape): shape is NULL");
    for (i = 0; i < ndim; i++) {
        if (shape[i] == -1) neg++;
        else if (shape[i] <= 0) return dl__ctor_fail("dl_Reshape: axis %d has size %d", i, shape[i]);
    }
    if (neg > 1) return dl__ctor_fail("dl_Reshape: at most one -1");
    if (!(l = dl__builtin(&dl__reshape_ops, "reshape"))) return NULL;
    l->iconf[0] = ndim;
    for (i = 0; i < ndim; i++) l->iconf[1 + i] = shape[i];
    return l;
}

/* Dropout: fconf[0] rate. */
static dl_tensor *dl__dropout_forward(dl_layer *l, int n, dl_tensor *const *in, int training) {
    (void)n;
    return dl_dropout(in[0], l->fconf[0], training, &l->rng);
}
static const dl_layer_ops dl__dropout_ops = {"Dropout", NULL, dl__dropout_forward, NULL, 1, 1};
DLDEF dl_layer *dl_Dropout(float rate) {
    dl_layer *l;
    if (!(rate >= 0.0f && rate < 1.0f)) return dl__ctor_fail("dl_Dropout: rate %g must be in [0, 1)", (double)rate);
    if (!(l = dl__builtin(&dl__dropout_ops, "dropout"))) return NULL;
    l->fconf[0] = rate;
    return l;
}

/* BatchNormalization: fconf[0] momentum (Keras' meaning), [1] epsilon. */
static int dl__bn_build(dl_layer *l, int n, dl_tensor *const *in) {
    int c;
    (void)n;
    if (in[0]->ndim < 2) { dl_set_error("%s (BatchNormalization): input needs a channel axis", l->name); return -1; }
    c = in[0]->shape[1];
    if (!dl__weight(l, "gamma", 1, c, 0, 0, 0, DL_INIT_ONES, 1) ||
        !dl__weight(l, "beta", 1, c, 0, 0, 0, DL_INIT_ZEROS, 1) ||
        !dl__weight(l, "moving_mean", 1, c, 0, 0, 0, DL_INIT_ZEROS, 0) ||
        !dl__weight(l, "moving_variance", 1, c, 0, 0, 0, DL_INIT_ONES, 0))
        return -1;
    return 0;
}
static dl_tensor *dl__bn_forward(dl_layer *l, int n, dl_tensor *const *in, int training) {
    (void)n;
    /* A frozen BatchNormalization runs in inference mode, as in Keras (fine-tuning). */
    return dl_batch_norm(in[0], l->params[0], l->params[1], l->params[2], l->params[3], training == 1 && l->trainable,
                         1.0f - l->fconf[0], l->fconf[1]);
}
static const dl_layer_ops dl__bn_ops = {"BatchNormalization", dl__bn_build, dl__bn_forward, NULL, 1, 1};
DLDEF dl_layer *dl_BatchNormalization(float momentum, float epsilon) {
    dl_layer *l;
    if (momentum <= 0.0f) momentum = 0.99f;
    if (epsilon <= 0.0f) epsilon = 1e-3f;
    if (!(momentum < 1.0f)) return dl__ctor_fail("dl_BatchNormalization: momentum %g must be < 1", (double)momentum);
    if (!(l = dl__builtin(&dl__bn_ops, "batch_normalization"))) return NULL;
    l->fconf[0] = momentum;
    l->fconf[1] = epsilon;
    return l;
}

/* LayerNormalization: fconf[0] epsilon; gamma, beta over the last axis. */
static int dl__ln_build(dl_layer *l, int n, dl_tensor *const *in) {
    int f = in[0]->shape[in[0]->ndim - 1];
    (void)n;
    if (in[0]->ndim < 1) { dl_set_error("%s (LayerNormalization): input needs an axis", l->name); return -1; }
    if (!dl__weight(l, "gamma", 1, f, 0, 0, 0, DL_INIT_ONES, 1) ||
        !dl__weight(l, "beta", 1, f, 0, 0, 0, DL_INIT_ZEROS, 1))
        return -1;
    return 0;
}
static dl_tensor *dl__ln_forward(dl_layer *l, int n, dl_tensor *const *in, int training) {
    (void)n; (void)training;
    return dl_layer_norm(in[0], 1, l->params[0], l->params[1], l->fconf[0]);
}
static const dl_layer_ops dl__ln_ops = {"LayerNormalization", dl__ln_build, dl__ln_forward, NULL, 1, 1};
DLDEF dl_layer *dl_LayerNormalization(float epsilon) {
    dl_layer *l;
    if (!(l = dl__builtin(&dl__ln_ops, "layer_normalization"))) return NULL;
    l->fconf[0] = epsilon > 0.0f ? epsilon : 1e-3f;
    return l;
}

/* Embedding: iconf[0] input_dim, [1] output_dim; "embeddings" [input_dim, output_dim]. */
static int dl__emb_build(dl_layer *l, int n, dl_tensor *const *in) {
    (void)n; (void)in;
    return dl__weight(l, "embeddings", 2, l->iconf[0], l->iconf[1], 0, 0, DL_INIT_UNIFORM_005, 1) ? 0 : -1;
}
static dl_tensor *dl__emb_forward(dl_layer *l, int n, dl_tensor *const *in, int training) {
    dl_tensor *ids = in[0];
    (void)n; (void)training;
    if (ids->dtype == DL_DTYPE_F32) ids = dl_cast(ids, DL_DTYPE_I32);   /* data sets hold f32: whole numbers */
    return dl_embedding(l->params[0], ids);
}
static const dl_layer_ops dl__emb_ops = {"Embedding", dl__emb_build, dl__emb_forward, NULL, 1, 1};
DLDEF dl_layer *dl_Embedding(int input_dim, int output_dim) {
    dl_layer *l;
    if (input_dim <= 0) return dl__ctor_fail("dl_Embedding(input_dim, output_dim): input_dim %d must be > 0", input_dim);
    if (output_dim <= 0) return dl__ctor_fail("dl_Embedding(input_dim, output_dim): output_dim %d must be > 0", output_dim);
    if (!(l = dl__builtin(&dl__emb_ops, "embedding"))) return NULL;
    l->iconf[0] = input_dim;
    l->iconf[1] = output_dim;
    return l;
}

static dl_tensor *dl__activation_forward(dl_layer *l, int n, dl_tensor *const *in, int training) {
    (void)n; (void)training;
    return dl_activate(in[0], (dl_act)l->iconf[DL__ACT_SLOT]);
}
static const dl_layer_ops dl__activation_ops = {"Activation", NULL, dl__activation_forward, NULL, 1, 1};
DLDEF dl_layer *dl_Activation(dl_act act) {
    dl_layer *l;
    if (!dl__check_act(act)) return dl__ctor_fail("dl_Activation: unknown activation %d", (int)act);
    if (!(l = dl__builtin(&dl__activation_ops, "activation"))) return NULL;
    l->iconf[DL__ACT_SLOT] = act;
    l->flags |= DL__LAYER_HAS_ACT;
    return l;
}

/* Merging layers: Add, Multiply (same shapes, or broadcastable), Concatenate (iconf[0] axis). */
static dl_tensor *dl__merge_forward(dl_layer *l, int n, dl_tensor *const *in, int training) {
    dl_tensor *y = in[0];
    int i;
    (void)training;
    if (l->ops->kind[0] == 'C') {
        int axis = l->iconf[0] < 0 ? in[0]->ndim + l->iconf[0] : l->iconf[0];
        return dl_concat(n, in, axis);
    }
    for (i = 1; i < n; i++) y = l->ops->kind[0] == 'A' ? dl_add(y, in[i]) : dl_mul(y, in[i]);
    return y;
}
static const dl_layer_ops dl__add_ops = {"Add", NULL, dl__merge_forward, NULL, 2, DL_LAYER_MAX_INPUTS};
static const dl_layer_ops dl__mul_ops = {"Multiply", NULL, dl__merge_forward, NULL, 2, DL_LAYER_MAX_INPUTS};
static const dl_layer_ops dl__concat_ops = {"Concatenate", NULL, dl__merge_forward, NULL, 2, DL_LAYER_MAX_INPUTS};
DLDEF dl_layer *dl_Add(void) { return dl__builtin(&dl__add_ops, "add"); }
DLDEF dl_layer *dl_Multiply(void) { return dl__builtin(&dl__mul_ops, "multiply"); }
DLDEF dl_layer *dl_Concatenate(int axis) {
    dl_layer *l = dl__builtin(&dl__concat_ops, "concatenate");
    if (l) l->iconf[0] = axis;
    return l;
}

/* RandomFlip (Keras' RandomFlip("horizontal")): in training, each sample of [N, ..., W] is
   mirrored left-right with probability 1/2 (the layer's generator); otherwise the identity.
   The gradient goes back through the same mirror. */
static void dl__flip_rows(float *DL__RESTRICT y, const float *DL__RESTRICT x, size_t rows, int w, int flip, int add) {
    size_t r;
    int j;
    for (r = 0; r < rows; r++, x += w, y += w)
        for (j = 0; j < w; j++) {
            float v = x[flip ? w - 1 - j : j];
            y[j] = add ? y[j] + v : v;
        }
}
static void dl__flip_backward(dl_node *nd) {
    const unsigned char *flip = (const unsigned char *)nd->ctx;
    float *gx = dl_grad_buf(nd->in[0]);
    int n = nd->out->shape[0], w = nd->out->shape[nd->out->ndim - 1], b;
    size_t rows = nd->out->numel / (size_t)(n ? n : 1) / (size_t)(w ? w : 1), per = rows * (size_t)w;
    if (!gx) return;
    for (b = 0; b < n; b++) dl__flip_rows(gx + (size_t)b * per, nd->out->grad + (size_t)b * per, rows, w, flip[b], 1);
}
static dl_tensor *dl__flip_forward(dl_layer *l, int n_in, dl_tensor *const *in, int training) {
    dl_tensor *x = in[0], *y;
    const float *xs;
    unsigned char *flip;
    dl_node *nd;
    int n, w, b;
    size_t rows, per;
    (void)n_in;
    if (!training) return x;
    if (!dl__need_rank(l, x, 2, DL_MAX_DIMS)) return NULL;
    if (x->dtype != DL_DTYPE_F32) { dl_set_error("%s (RandomFlip): f32 input needed", l->name); return NULL; }
    n = x->shape[0];
    w = x->shape[x->ndim - 1];
    rows = x->numel / (size_t)(n ? n : 1) / (size_t)(w ? w : 1);
    per = rows * (size_t)w;
    if (!(xs = dl_contig_f32(x)) || !(y = dl_tmp_uninit(DL_DTYPE_F32, x->ndim, x->shape))) return NULL;
    if (!(flip = (unsigned char *)dl_arena_alloc(dl_arena_current(), (size_t)(n ? n : 1)))) return NULL;
    for (b = 0; b < n; b++) {
        flip[b] = dl_rng_uniform(&l->rng) < 0.5f;
        dl__flip_rows(dl_f32(y) + (size_t)b * per, xs + (size_t)b * per, rows, w, flip[b], 0);
    }
    nd = dl_record("random_flip", y, 1, &x, dl__flip_backward, (size_t)(n ? n : 1));
    if (nd) memcpy(nd->ctx, flip, (size_t)n);
    return y;
}
static const dl_layer_ops dl__flip_ops = {"RandomFlip", NULL, dl__flip_forward, NULL, 1, 1};
DLDEF dl_layer *dl_RandomFlip(void) { return dl__builtin(&dl__flip_ops, "random_flip"); }

/* ---- Layers of GANs and image-to-image models ---- */

/* A float setting whose default is not 0: 0 gives the default, DL_ZERO a real 0, anything else
   itself (the constructor checks it). The model loader passes a saved 0 back as DL_ZERO. */
static float dl__setting_or(float v, float dflt) { return v == 0.0f ? dflt : v == (float)DL_ZERO ? 0.0f : v; }

/* LeakyReLU: fconf[0] negative_slope (0 after DL_ZERO). */
static dl_tensor *dl__leaky_forward(dl_layer *l, int n, dl_tensor *const *in, int training) {
    (void)n; (void)training;
    return dl_leaky_relu(in[0], l->fconf[0]);
}
static const dl_layer_ops dl__leaky_ops = {"LeakyReLU", NULL, dl__leaky_forward, NULL, 1, 1};
DLDEF dl_layer *dl_LeakyReLU(float negative_slope) {
    float v = dl__setting_or(negative_slope, 0.3f);
    dl_layer *l;
    if (!(v >= 0.0f && v <= FLT_MAX))
        return dl__ctor_fail("dl_LeakyReLU(negative_slope): negative_slope %g must be finite and >= 0 (0: Keras' 0.3; "
                             "DL_ZERO: a real 0)", (double)negative_slope);
    if (!(l = dl__builtin(&dl__leaky_ops, "leaky_re_lu"))) return NULL;   /* Keras 2's name for it */
    l->fconf[0] = v;
    return l;
}

/* InstanceNormalization: fconf[0] epsilon; gamma, beta over axis 1. */
static int dl__in_build(dl_layer *l, int n, dl_tensor *const *in) {
    (void)n;
    if (in[0]->ndim < 3) {
        char s[64];
        dl_set_error("%s (InstanceNormalization): input %s needs a batch axis, a channel axis and spatial axes", l->name,
                     dl_shape_str(in[0], s, sizeof s));
        return -1;
    }
    if (!dl__weight(l, "gamma", 1, in[0]->shape[1], 0, 0, 0, DL_INIT_ONES, 1) ||
        !dl__weight(l, "beta", 1, in[0]->shape[1], 0, 0, 0, DL_INIT_ZEROS, 1))
        return -1;
    return 0;
}
static dl_tensor *dl__in_forward(dl_layer *l, int n, dl_tensor *const *in, int training) {
    dl_tensor *x = in[0];
    (void)n; (void)training;
    if (!dl__need_rank(l, x, 3, DL_MAX_DIMS)) return NULL;
    if (x->shape[1] != l->params[0]->shape[0]) {
        dl_set_error("%s (InstanceNormalization): input has %d channels, the layer was built for %d", l->name, x->shape[1],
                     l->params[0]->shape[0]);
        return NULL;
    }
    return dl_instance_norm(x, l->params[0], l->params[1], l->fconf[0]);
}
static const dl_layer_ops dl__in_ops = {"InstanceNormalization", dl__in_build, dl__in_forward, NULL, 1, 1};
DLDEF dl_layer *dl_InstanceNormalization(float epsilon) {
    float v = dl__setting_or(epsilon, 1e-3f);
    dl_layer *l;
    if (!(v >= 0.0f && v <= FLT_MAX))
        return dl__ctor_fail("dl_InstanceNormalization(epsilon): epsilon %g must be finite and >= 0 (0: 1e-3; DL_ZERO: a real 0)",
                             (double)epsilon);
    if (!(l = dl__builtin(&dl__in_ops, "instance_normalization"))) return NULL;
    l->fconf[0] = v;
    return l;
}

/* ReflectionPad2D, ZeroPadding2D: iconf[0..3] the pads left, right, top, bottom (dl_pad2d's order). */
static dl_tensor *dl__pad_forward(dl_layer *l, int n, dl_tensor *const *in, int training) {
    dl_tensor *x = in[0];
    const int *p = l->iconf;
    int reflect = l->ops->kind[0] == 'R';
    (void)n; (void)training;
    if (!dl__need_rank(l, x, 4, 4)) return NULL;
    if (reflect && (p[0] >= x->shape[3] || p[1] >= x->shape[3] || p[2] >= x->shape[2] || p[3] >= x->shape[2])) {
        if (p[0] == p[1] && p[1] == p[2] && p[2] == p[3])
            dl_set_error("%s (ReflectionPad2D): pad %d must be smaller than the input's height and width (%dx%d)", l->name, p[0],
                         x->shape[2], x->shape[3]);
        else
            dl_set_error("%s (ReflectionPad2D): pads (left %d, right %d, top %d, bottom %d) must be smaller than the input's "
                         "width and height (%dx%d)", l->name, p[0], p[1], p[2], p[3], x->shape[2], x->shape[3]);
        return NULL;
    }
    return dl_pad2d(x, p[0], p[1], p[2], p[3], reflect ? DL_PAD_REFLECT : DL_PAD_ZERO);
}
static const dl_layer_ops dl__rpad_ops = {"ReflectionPad2D", NULL, dl__pad_forward, NULL, 1, 1};
static const dl_layer_ops dl__zpad_ops = {"ZeroPadding2D", NULL, dl__pad_forward, NULL, 1, 1};
static dl_layer *dl__pad_new(const dl_layer_ops *ops, const char *base, const char *fn, int one, int left, int right, int top,
                             int bottom) {
    dl_layer *l;
    if (left < 0 || right < 0 || top < 0 || bottom < 0) {
        if (one) return dl__ctor_fail("%s: pad %d must be >= 0", fn, left);
        return dl__ctor_fail("%s: pads (%d, %d, %d, %d) must be >= 0", fn, left, right, top, bottom);
    }
    if (!(l = dl__builtin(ops, base))) return NULL;
    l->iconf[0] = left; l->iconf[1] = right; l->iconf[2] = top; l->iconf[3] = bottom;
    return l;
}
DLDEF dl_layer *dl_ReflectionPad2D(int pad) {
    return dl__pad_new(&dl__rpad_ops, "reflection_pad2d", "dl_ReflectionPad2D(pad)", 1, pad, pad, pad, pad);
}
DLDEF dl_layer *dl_ReflectionPad2D_sides(int left, int right, int top, int bottom) {
    return dl__pad_new(&dl__rpad_ops, "reflection_pad2d", "dl_ReflectionPad2D_sides(left, right, top, bottom)", 0, left, right, top,
                       bottom);
}
DLDEF dl_layer *dl_ZeroPadding2D(int pad) {
    return dl__pad_new(&dl__zpad_ops, "zero_padding2d", "dl_ZeroPadding2D(pad)", 1, pad, pad, pad, pad);
}
DLDEF dl_layer *dl_ZeroPadding2D_sides(int left, int right, int top, int bottom) {
    return dl__pad_new(&dl__zpad_ops, "zero_padding2d", "dl_ZeroPadding2D_sides(left, right, top, bottom)", 0, left, right, top,
                       bottom);
}

/* UpSampling2D: iconf[0] size. */
static dl_tensor *dl__up_forward(dl_layer *l, int n, dl_tensor *const *in, int training) {
    (void)n; (void)training;
    if (!dl__need_rank(l, in[0], 4, 4)) return NULL;
    return dl_upsample_nearest2d(in[0], l->iconf[0], l->iconf[0]);
}
static const dl_layer_ops dl__up_ops = {"UpSampling2D", NULL, dl__up_forward, NULL, 1, 1};
DLDEF dl_layer *dl_UpSampling2D(int size) {
    dl_layer *l;
    if (size < 1) return dl__ctor_fail("dl_UpSampling2D(size): size %d must be >= 1", size);
    if (!(l = dl__builtin(&dl__up_ops, "up_sampling2d"))) return NULL;
    l->iconf[0] = size;
    return l;
}

/* The layer's activation, when it has one (to know whether a model outputs probabilities). */
static const dl_layer *dl__output_layer(const dl_model *m);
static int dl__layer_act(const dl_layer *l) {
    if (dl__layer_model(l)) return dl__layer_act(dl__output_layer(dl__layer_model(l)));   /* what the inner model ends with */
    return l && (l->flags & DL__LAYER_HAS_ACT) ? l->iconf[DL__ACT_SLOT] : -1;
}

/* ==== LAYERS: implementation, recurrent (tests: tests/test_nn_rnn.c) ===========================
   SimpleRNN, LSTM, GRU, and the Orthogonal initializer of their recurrent kernels.
   Layout and math follow Keras (so Keras weights load as they are, PyTorch ones after a
   transpose and, for GRU, a gate reorder). x is [B, T, F]; U = units; G gates:
       kernel            [F, G*U]   glorot_uniform
       recurrent_kernel  [U, G*U]   orthogonal
       bias              [G*U]      zeros (LSTM: ones for the forget gate; GRU: [2, 3U])
   The state starts at zero. The forward pass is built from taped ops, so autograd gives the
   backward pass (BPTT): the input projection of all steps is one GEMM before the loop, in
   time-major order ([T*B, F] @ [F, G*U], dl_linear), so step t's rows are a contiguous block;
   each step adds one GEMM h @ recurrent_kernel (dl_matmul); the gate arithmetic is tanh/add
   for SimpleRNN and one fused op per step for LSTM and GRU (dl__rnn_cell, with its own
   backward, checked by finite differences and against PyTorch in tests/test_nn_rnn.c).
   Step 0 skips the recurrent terms, which are exactly zero there. */

/* ---- Orthogonal initializer ----
   Keras' Orthogonal(gain=1) for a 2-d [rows, cols] tensor: A ~ N(0, 1) of shape
   [max(rows, cols), min(rows, cols)], A = QR (reduced), Q's columns multiplied by sign(diag R)
   (which makes the factorization unique), then Q^T when rows < cols. Householder QR in double
   precision. The draws are dl_rng_normal in row-major order of A, so the values differ from
   Keras' (another generator) but have the same distribution. */
static int dl__init_orthogonal(dl_tensor *t, dl_rng *r) {
    int rows, cols, m, n, i, j, k;
    double *a, *q, *vv, *rdiag;
    float *out;
    if (!t || !r || t->dtype != DL_DTYPE_F32 || t->ndim != 2 || !dl_is_contiguous(t)) {
        dl_set_error("dl_init_tensor: orthogonal needs a contiguous 2-d f32 tensor");
        return -1;
    }
    rows = t->shape[0];
    cols = t->shape[1];
    if (rows == 0 || cols == 0) return 0;
    m = rows > cols ? rows : cols;    /* A is m x n with m >= n */
    n = rows > cols ? cols : rows;
    a = (double *)DL_MALLOC(sizeof(double) * (2 * (size_t)m * (size_t)n + 2 * (size_t)n));
    if (!a) {
        dl_set_error("dl_init_tensor: out of memory for an orthogonal [%d, %d]", rows, cols);
        return -1;
    }
    q = a + (size_t)m * (size_t)n;
    vv = q + (size_t)m * (size_t)n;
    rdiag = vv + n;
#define DL__A(i, j) a[(size_t)(i) * (size_t)n + (size_t)(j)]
#define DL__Q(i, j) q[(size_t)(i) * (size_t)n + (size_t)(j)]
    for (i = 0; i < m * n; i++) a[i] = (double)dl_rng_normal(r);
    /* Householder QR: step k reflects A[k:, k] onto alpha e_0 with H_k = I - 2 v v^T / (v.v),
       v = A[k:, k] - alpha e_0, alpha = -sign(A[k][k]) |A[k:, k]| = R[k][k]. v replaces
       A[k:, k] (that column of R is not needed beyond its diagonal). */
    for (k = 0; k < n; k++) {
        double norm = 0, alpha, s = 0;
        for (i = k; i < m; i++) norm += DL__A(i, k) * DL__A(i, k);
        norm = sqrt(norm);
        alpha = DL__A(k, k) >= 0 ? -norm : norm;
        rdiag[k] = alpha;
        DL__A(k, k) -= alpha;
        for (i = k; i < m; i++) s += DL__A(i, k) * DL__A(i, k);
        vv[k] = s;
        if (s > 0)
            for (j = k + 1; j < n; j++) {   /* A[k:, j] -= v 2 (v . A[k:, j]) / (v . v) */
                double d = 0;
                for (i = k; i < m; i++) d += DL__A(i, k) * DL__A(i, j);
                d = 2 * d / s;
                for (i = k; i < m; i++) DL__A(i, j) -= d * DL__A(i, k);
            }
    }
    /* Q = H_0 H_1 ... H_{n-1} I[m, n] (the reduced Q), applying the reflectors right to left. */
    for (i = 0; i < m * n; i++) q[i] = 0;
    for (i = 0; i < n; i++) DL__Q(i, i) = 1;
    for (k = n - 1; k >= 0; k--) {
        if (vv[k] <= 0) continue;
        for (j = k; j < n; j++) {   /* columns left of k are still e_j, untouched by H_k */
            double d = 0;
            for (i = k; i < m; i++) d += DL__A(i, k) * DL__Q(i, j);
            d = 2 * d / vv[k];
            for (i = k; i < m; i++) DL__Q(i, j) -= d * DL__A(i, k);
        }
    }
    /* Q[:, j] *= sign(R[j][j]), which makes the factors unique (R's diagonal positive), then
       Q [rows, cols] when rows >= cols, else Q^T. */
    out = dl_f32(t);
    for (i = 0; i < m; i++)
        for (j = 0; j < n; j++) {
            float x = (float)(rdiag[j] < 0 ? -DL__Q(i, j) : DL__Q(i, j));
            if (rows >= cols) out[(size_t)i * (size_t)cols + (size_t)j] = x;
            else out[(size_t)j * (size_t)cols + (size_t)i] = x;
        }
#undef DL__A
#undef DL__Q
    DL_FREE(a);
    return 0;
}

/* ---- The layers ---- */

enum { DL__RNN_SIMPLE = 0, DL__RNN_LSTM = 1, DL__RNN_GRU = 2 };

static int dl__rnn_kind(const dl_layer *l) {
    if (strcmp(l->ops->kind, "LSTM") == 0) return DL__RNN_LSTM;
    return strcmp(l->ops->kind, "GRU") == 0 ? DL__RNN_GRU : DL__RNN_SIMPLE;
}

static int dl__rnn_gates(int kind) { return kind == DL__RNN_LSTM ? 4 : kind == DL__RNN_GRU ? 3 : 1; }

/* x must be f32 [B, T, F] with T >= 1 (and F = the kernel's rows once built). */
static int dl__rnn_check_input(const dl_layer *l, const dl_tensor *x) {
    char s[64];
    if (x->dtype != DL_DTYPE_F32 || x->ndim != 3 || x->shape[1] < 1) {
        dl_set_error("%s (%s): expected an f32 input [batch, time, features] with time >= 1, got %s %s",
                     l->name, l->ops->kind, dl_dtype_name(x->dtype), dl_shape_str(x, s, sizeof s));
        return 0;
    }
    if (l->built && l->n_params > 0 && l->params[0]->shape[0] != x->shape[2]) {
        dl_set_error("%s (%s): built for %d features, got input %s", l->name, l->ops->kind,
                     l->params[0]->shape[0], dl_shape_str(x, s, sizeof s));
        return 0;
    }
    return 1;
}

static int dl__rnn_build(dl_layer *l, int n_in, dl_tensor *const *in) {
    int kind = dl__rnn_kind(l), U = l->iconf[0], GU = dl__rnn_gates(kind) * U, F, i;
    dl_tensor *bias;
    (void)n_in;
    if (!dl__rnn_check_input(l, in[0])) return -1;
    F = in[0]->shape[2];
    if (!dl__weight(l, "kernel", 2, F, GU, 0, 0, DL_INIT_GLOROT_UNIFORM, 1)) return -1;
    if (!dl__weight(l, "recurrent_kernel", 2, U, GU, 0, 0, DL_INIT_ORTHOGONAL, 1)) return -1;
    if (kind == DL__RNN_GRU) bias = dl__weight(l, "bias", 2, 2, GU, 0, 0, DL_INIT_ZEROS, 1);
    else bias = dl__weight(l, "bias", 1, GU, 0, 0, 0, DL_INIT_ZEROS, 1);
    if (!bias) return -1;
    if (kind == DL__RNN_LSTM)   /* Keras' unit_forget_bias: the forget gate starts open */
        for (i = U; i < 2 * U; i++) dl_f32(bias)[i] = 1.0f;
    return 0;
}

/* ---- Fused cells ----
   The gate arithmetic of one LSTM or GRU step as one op (the GEMMs stay dl_matmul / dl_linear).
   Composed from elementwise ops, a step is about a dozen passes over memory, each with its own
   arena tensor and gradient buffer; a cell is one pass forward and one backward and keeps only
   the gate activations. Rows are cut into tasks by the shapes alone, and every element is
   computed the same way whatever the thread count. */

typedef struct dl__cell {
    const float *x, *m, *prev;   /* inputs (m, prev may be NULL: zero state) */
    const float *gy;             /* backward: the output gradient */
    float *y, *act;              /* forward outputs: the cell's output and saved activations */
    float *gx, *gm, *gprev;      /* backward: gradient buffers (NULL: not needed) */
    int B, U, rows_per_task, backward;
} dl__cell;

static float dl__sigmoidf(float v) { return 1.0f / (1.0f + expf(-v)); }

static int dl__cell_tasks(dl__cell *c, int width) {
    c->rows_per_task = 32768 / (width > 0 ? width : 1);
    if (c->rows_per_task < 1) c->rows_per_task = 1;
    return (c->B + c->rows_per_task - 1) / c->rows_per_task;
}

/* LSTM, per row: z = x + m = [z_i z_f z_c z_o] (x: the input projection with bias, m = h R);
     i = s(z_i), f = s(z_f), g = tanh(z_c), o = s(z_o);  c = f c_prev + i g;  h = o tanh(c)
   y is [2, B, U]: y[0] = h, y[1] = c. act per row: [i f g o tanh(c)], 5U values.
   Backward, with dh and dc the gradients of y[0] and y[1]:
     dc' = dc + dh o (1 - tanh(c)^2);  dz_i = dc' g i (1 - i);  dz_f = dc' c_prev f (1 - f);
     dz_c = dc' i (1 - g^2);  dz_o = dh tanh(c) o (1 - o);  dc_prev = dc' f;  dx = dm = dz */
static void dl__lstm_task(void *ctx, int task) {
    const dl__cell *c = (const dl__cell *)ctx;
    int U = c->U, b0 = task * c->rows_per_task, b1 = b0 + c->rows_per_task, b, u;
    size_t BU = (size_t)c->B * (size_t)U;
    if (b1 > c->B) b1 = c->B;
    for (b = b0; b < b1; b++) {
        const float *x = c->x + (size_t)b * 4 * U, *m = c->m ? c->m + (size_t)b * 4 * U : NULL;
        const float *cp = c->prev ? c->prev + (size_t)b * U : NULL;
        float *a = c->act + (size_t)b * 5 * U;
        if (!c->backward) {
            float *h = c->y + (size_t)b * U, *cn = c->y + BU + (size_t)b * U;
            for (u = 0; u < 4 * U; u++) a[u] = x[u] + (m ? m[u] : 0.0f);
            for (u = 0; u < 2 * U; u++) a[u] = dl__sigmoidf(a[u]);
            for (u = 2 * U; u < 3 * U; u++) a[u] = tanhf(a[u]);
            for (u = 3 * U; u < 4 * U; u++) a[u] = dl__sigmoidf(a[u]);
            for (u = 0; u < U; u++) {
                float cv = a[u] * a[2 * U + u] + (cp ? a[U + u] * cp[u] : 0.0f), tc = tanhf(cv);
                cn[u] = cv;
                a[4 * U + u] = tc;
                h[u] = a[3 * U + u] * tc;
            }
        } else {
            const float *dh = c->gy + (size_t)b * U, *dc = c->gy + BU + (size_t)b * U;
            float *gx = c->gx ? c->gx + (size_t)b * 4 * U : NULL;
            float *gm = c->gm ? c->gm + (size_t)b * 4 * U : NULL;
            float *gp = c->gprev ? c->gprev + (size_t)b * U : NULL;
            for (u = 0; u < U; u++) {
                float i = a[u], f = a[U + u], g = a[2 * U + u], o = a[3 * U + u], tc = a[4 * U + u];
                float d = dc[u] + dh[u] * o * (1.0f - tc * tc), p = cp ? cp[u] : 0.0f;
                float zi = d * g * i * (1.0f - i), zf = d * p * f * (1.0f - f);
                float zc = d * i * (1.0f - g * g), zo = dh[u] * tc * o * (1.0f - o);
                if (gx) { gx[u] += zi; gx[U + u] += zf; gx[2 * U + u] += zc; gx[3 * U + u] += zo; }
                if (gm) { gm[u] += zi; gm[U + u] += zf; gm[2 * U + u] += zc; gm[3 * U + u] += zo; }
                if (gp) gp[u] += d * f;
            }
        }
    }
}

/* GRU (reset_after), per row: x = [x_z x_r x_h] (input projection with its bias), a = h R + b_rec
   = [a_z a_r a_h] (here m);  z = s(x_z + a_z), r = s(x_r + a_r), n = tanh(x_h + r a_h);
   h = z h_prev + (1 - z) n. act per row: [z r n a_h], 4U values.
   Backward: dn = dh (1 - z), dp = dn (1 - n^2) (= dx_h), da_h = dp r, dr = dp a_h,
     dz = dh (h_prev - n);  dx_z = da_z = dz z (1 - z);  dx_r = da_r = dr r (1 - r);  dh_prev = dh z */
static void dl__gru_task(void *ctx, int task) {
    const dl__cell *c = (const dl__cell *)ctx;
    int U = c->U, b0 = task * c->rows_per_task, b1 = b0 + c->rows_per_task, b, u;
    if (b1 > c->B) b1 = c->B;
    for (b = b0; b < b1; b++) {
        const float *x = c->x + (size_t)b * 3 * U, *m = c->m + (size_t)b * 3 * U;
        const float *hp = c->prev ? c->prev + (size_t)b * U : NULL;
        float *a = c->act + (size_t)b * 4 * U;
        if (!c->backward) {
            float *h = c->y + (size_t)b * U;
            for (u = 0; u < 2 * U; u++) a[u] = dl__sigmoidf(x[u] + m[u]);
            for (u = 0; u < U; u++) {
                float z = a[u], n = tanhf(x[2 * U + u] + a[U + u] * m[2 * U + u]);
                a[2 * U + u] = n;
                a[3 * U + u] = m[2 * U + u];
                h[u] = z * (hp ? hp[u] : 0.0f) + (1.0f - z) * n;
            }
        } else {
            const float *dh = c->gy + (size_t)b * U;
            float *gx = c->gx ? c->gx + (size_t)b * 3 * U : NULL;
            float *gm = c->gm ? c->gm + (size_t)b * 3 * U : NULL;
            float *gp = c->gprev ? c->gprev + (size_t)b * U : NULL;
            for (u = 0; u < U; u++) {
                float z = a[u], r = a[U + u], n = a[2 * U + u], ah = a[3 * U + u], p = hp ? hp[u] : 0.0f;
                float dp = dh[u] * (1.0f - z) * (1.0f - n * n);
                float dz = dh[u] * (p - n) * z * (1.0f - z), dr = dp * ah * r * (1.0f - r);
                if (gx) { gx[u] += dz; gx[U + u] += dr; gx[2 * U + u] += dp; }
                if (gm) { gm[u] += dz; gm[U + u] += dr; gm[2 * U + u] += dp * r; }
                if (gp) gp[u] += dh[u] * z;
            }
        }
    }
}

typedef struct dl__cell_ctx {
    const float *act;   /* saved activations */
    int lstm, B, U;
    size_t x_off;       /* where the step's rows start in the input projection */
} dl__cell_ctx;

static void dl__cell_backward(dl_node *nd) {
    const dl__cell_ctx *k = (const dl__cell_ctx *)nd->ctx;
    dl__cell c;
    int width = (k->lstm ? 4 : 3) * k->U, n;
    memset(&c, 0, sizeof c);
    c.B = k->B;
    c.U = k->U;
    c.backward = 1;
    c.act = (float *)k->act;
    c.gy = nd->out->grad;
    c.prev = nd->in[2] ? dl_contig_f32(nd->in[2]) : NULL;
    c.gx = dl_grad_buf(nd->in[0]);
    if (c.gx) c.gx += k->x_off;
    c.gm = dl_grad_buf(nd->in[1]);
    c.gprev = dl_grad_buf(nd->in[2]);
    if (nd->in[2] && !c.prev) return;
    n = dl__cell_tasks(&c, width);
    dl_parallel_for(n, k->lstm ? dl__lstm_task : dl__gru_task, &c);
}

/* Step t: x = rows t*B .. t*B+B-1 of xw [T*B, G*U] (the input projection of every step, read
   in place), m [B, G*U] (LSTM: h R, NULL at t = 0; GRU: h R + b_rec), prev [B, U] (LSTM: c; GRU:
   h; NULL at t = 0); m and prev may have extra leading axes of size 1. Returns LSTM's [2, B, U]
   (h, c) or GRU's h [B, U]. After t = 0 a NULL m or prev means an earlier op failed. */
static dl_tensor *dl__rnn_cell(int lstm, int B, int U, dl_tensor *xw, int t, dl_tensor *m, dl_tensor *prev) {
    dl__cell c;
    dl_tensor *y, *in[3];
    dl_node *nd;
    int width = (lstm ? 4 : 3) * U, n, shape[3];
    size_t x_off = (size_t)t * (size_t)B * (size_t)width;
    if (!xw || (!m && (!lstm || t)) || (!prev && t)) return NULL;
#ifdef DL_CUDA
    if (xw->device || (m && m->device) || (prev && prev->device)) return dl__cuda_rnn_cell(lstm, B, U, xw, t, m, prev);
#endif
    memset(&c, 0, sizeof c);
    c.B = B;
    c.U = U;
    c.x = dl_contig_f32(xw);   /* xw is a fresh dl_linear output: contiguous, no copy */
    c.m = m ? dl_contig_f32(m) : NULL;
    c.prev = prev ? dl_contig_f32(prev) : NULL;
    shape[0] = 2;
    shape[1] = B;
    shape[2] = U;
    y = dl_tmp_uninit(DL_DTYPE_F32, lstm ? 3 : 2, lstm ? shape : shape + 1);
    c.act = (float *)dl_arena_alloc(dl_arena_current(), sizeof(float) * (size_t)B * (size_t)(width + U));
    if (!c.x || (m && !c.m) || (prev && !c.prev) || !y || !c.act) return NULL;
    c.x += x_off;
    c.y = dl_f32(y);
    n = dl__cell_tasks(&c, width);
    dl_parallel_for(n, lstm ? dl__lstm_task : dl__gru_task, &c);
    in[0] = xw;
    in[1] = m;
    in[2] = prev;
    nd = dl_record(lstm ? "lstm_cell" : "gru_cell", y, 3, in, dl__cell_backward, sizeof(dl__cell_ctx));
    if (nd) {
        dl__cell_ctx *k = (dl__cell_ctx *)nd->ctx;
        k->act = c.act;
        k->lstm = lstm;
        k->B = B;
        k->U = U;
        k->x_off = x_off;
    }
    return y;
}

static dl_tensor *dl__rnn_forward(dl_layer *l, int n_in, dl_tensor *const *in, int training) {
    dl_tensor *x = in[0], *W, *R, *bias, *b_in, *b_rec = NULL, *xw, *h = NULL, *c = NULL, **hs;
    int kind = dl__rnn_kind(l), U = l->iconf[0], B, T, t, shape[3], bshape[2];
    (void)n_in;
    (void)training;
    if (!x) return NULL;
    if (!dl__rnn_check_input(l, x)) return NULL;
    W = dl_layer_weight(l, "kernel");
    R = dl_layer_weight(l, "recurrent_kernel");
    bias = dl_layer_weight(l, "bias");
    if (!W || !R || !bias) { dl_set_error("%s (%s): weights missing", l->name, l->ops->kind); return NULL; }
    B = x->shape[0];
    T = x->shape[1];
    if ((long long)T * B > INT_MAX) { dl_set_error("%s (%s): %d steps x batch %d is over INT_MAX", l->name, l->ops->kind, T, B); return NULL; }
    hs = (dl_tensor **)dl_arena_alloc(dl_arena_current(), sizeof(dl_tensor *) * (size_t)T);
    if (!hs) return NULL;
    b_in = bias;
    if (kind == DL__RNN_GRU) {   /* reset_after: row 0 is the input bias, row 1 the recurrent bias */
        b_in = dl_squeeze(dl_slice(bias, 0, 0, 1, 1), 0);
        b_rec = dl_squeeze(dl_slice(bias, 0, 1, 2, 1), 0);
    }
    /* xw = x W + b for every step at once, time-major: rows t*B .. t*B+B-1 are step t. */
    shape[0] = T * B;
    shape[1] = x->shape[2];
    xw = dl_linear(dl_reshape(dl_transpose(x, 0, 1), 2, shape), W, b_in);
    shape[0] = B;   /* from here: the output [B, T, U], and GRU's [B, 3U] */
    shape[1] = T;
    shape[2] = U;
    bshape[0] = B;
    bshape[1] = 3 * U;
    if (!xw) return NULL;
    for (t = 0; t < T; t++) {
        if (kind == DL__RNN_SIMPLE) {
            /* h = tanh(x W + b + h R) */
            dl_tensor *xt = dl_slice(xw, 0, t * B, t * B + B, 1);   /* [B, U], contiguous */
            h = dl_tanh(t ? dl_add(xt, dl_matmul(h, R)) : xt);
        } else if (kind == DL__RNN_LSTM) {
            /* (h, c) = cell(x W + b, h R, c), see dl__lstm_task; h and c are [1, B, U] views */
            dl_tensor *hc = dl__rnn_cell(1, B, U, xw, t, t ? dl_matmul(h, R) : NULL, c);
            h = dl_slice(hc, 0, 0, 1, 1);
            c = dl_slice(hc, 0, 1, 2, 1);
        } else {
            /* h = cell(x W + b_in, h R + b_rec, h), see dl__gru_task */
            dl_tensor *a = t ? dl_add(dl_matmul(h, R), b_rec) : dl_broadcast_to(b_rec, 2, bshape);
            h = dl__rnn_cell(0, B, U, xw, t, a, t ? h : NULL);
        }
        if (!h) return NULL;
        hs[t] = h;
    }
    if (!l->iconf[1]) {   /* the last step: [(1,) B, U] -> [B, U] */
        bshape[1] = U;
        return h->ndim == 2 ? h : dl_reshape(h, 2, bshape);
    }
    /* every step: [(1,) B, U] x T -> [(1,) B, T*U] -> [B, T, U] */
    return dl_reshape(dl_concat(T, hs, -1), 3, shape);
}

static const dl_layer_ops dl__simple_rnn_ops = { "SimpleRNN", dl__rnn_build, dl__rnn_forward, NULL, 1, 1 };
static const dl_layer_ops dl__lstm_ops = { "LSTM", dl__rnn_build, dl__rnn_forward, NULL, 1, 1 };
static const dl_layer_ops dl__gru_ops = { "GRU", dl__rnn_build, dl__rnn_forward, NULL, 1, 1 };

/* iconf[0] units, iconf[1] return_sequences (0 or 1). */
static dl_layer *dl__rnn_new(const dl_layer_ops *ops, const char *fn, const char *name, int units,
                             int return_sequences) {
    dl_layer *l;
    if (units <= 0) return dl__ctor_fail("%s(units, return_sequences): units %d must be > 0", fn, units);
    /* the cells index rows of (gates + 1) * units floats (LSTM: 5U, with tanh(c)) in an int */
    if (units > INT_MAX / 5) return dl__ctor_fail("%s(units, return_sequences): units %d is too large (at most INT_MAX / 5)", fn, units);
    if (!(l = dl__builtin(ops, name))) return NULL;
    l->iconf[0] = units;
    l->iconf[1] = return_sequences != 0;
    return l;
}

DLDEF dl_layer *dl_SimpleRNN(int units, int return_sequences) {
    return dl__rnn_new(&dl__simple_rnn_ops, "dl_SimpleRNN", "simple_rnn", units, return_sequences);
}
DLDEF dl_layer *dl_LSTM(int units, int return_sequences) {
    return dl__rnn_new(&dl__lstm_ops, "dl_LSTM", "lstm", units, return_sequences);
}
DLDEF dl_layer *dl_GRU(int units, int return_sequences) {
    return dl__rnn_new(&dl__gru_ops, "dl_GRU", "gru", units, return_sequences);
}

/* For the model loader: a new layer of `kind` from its saved settings (iconf[0] units, iconf[1]
   return_sequences); NULL without an error when kind is not a recurrent layer, NULL + dl_error()
   for bad settings. */
static dl_layer *dl__rnn_from_conf(const char *kind, const int *iconf, const float *fconf) {
    (void)fconf;
    if (!kind || !iconf) return NULL;
    if (strcmp(kind, "SimpleRNN") == 0) return dl_SimpleRNN(iconf[0], iconf[1]);
    if (strcmp(kind, "LSTM") == 0) return dl_LSTM(iconf[0], iconf[1]);
    if (strcmp(kind, "GRU") == 0) return dl_GRU(iconf[0], iconf[1]);
    return NULL;
}
/* ==== MODELS: implementation (tests: tests/test_nn_model.c) ================================
   Every model keeps its distinct layers in `layers` (the order Keras lists them). A Sequential
   model runs them in that order; a functional one runs its graph `nodes` (inputs first, then
   every layer application after the nodes it reads); a custom one calls the user's function. */

enum { DL__SEQUENTIAL = 0, DL__FUNCTIONAL = 1, DL__CUSTOM = 2 };
#define DL__MAX_IO 8   /* inputs and outputs of a functional model */

struct dl_sym {
    dl_sym *prev, *next;          /* the list of symbols no model has taken yet */
    dl_layer *layer;              /* NULL for an input */
    int n_in;
    dl_sym *in[DL_LAYER_MAX_INPUTS];
    dl_dtype dtype;
    int ndim, shape[DL_MAX_DIMS]; /* per sample */
    int mark;                     /* dl_model_new: 1 + the node index once placed */
    int loading;                  /* made by dl_model_load: freed by it, whatever happens */
};
static DL__TLS dl_sym *dl__free_syms;   /* per thread: a graph is written on one thread */

typedef struct dl__gnode {
    dl_layer *layer;              /* NULL for an input */
    int n_in, in[DL_LAYER_MAX_INPUTS];   /* indices of earlier nodes */
    dl_dtype dtype;
    int ndim, shape[DL_MAX_DIMS]; /* per-sample output shape */
} dl__gnode;

struct dl_model {
    int kind;
    char name[32];
    int n_layers, cap_layers;
    dl_layer **layers;            /* distinct layers, each holding one reference */
    int n_nodes, n_inputs, n_outputs;
    dl__gnode *nodes;             /* functional */
    int inputs[DL__MAX_IO], outputs[DL__MAX_IO];
    dl_model_fn fn;               /* custom */
    void *user;
    int built;                    /* the input shape is known and every layer built */
    dl_dtype in_dtype;
    int in_ndim, in_shape[DL_MAX_DIMS];
    /* compile / fit state (TRAINING) */
    int compiled, opt_bound, top_k, stop;
    int layer_refs;               /* dl_model_as_layer wrappers holding this model */
    int fit_failed;               /* a callback failed the fit (dl_error() says why) */
    dl_optim *opt;
    dl_loss loss;
    unsigned metrics;
    dl_history history;
#ifdef DL_CUDA
    dl_device device;             /* where the weights are (dl_model_move) */
#endif
};

static dl_model *dl__model_alloc(int kind, const char *name) {
    dl_model *m = (dl_model *)DL_MALLOC(sizeof *m);
    if (!m) { dl_set_error("dl_model: out of memory"); return NULL; }
    memset(m, 0, sizeof *m);
    m->kind = kind;
    snprintf(m->name, sizeof m->name, "%s", name);
    m->top_k = 5;
    return m;
}

static int dl__model_has_layer(const dl_model *m, const dl_layer *l) {
    int i;
    for (i = 0; i < m->n_layers; i++) if (m->layers[i] == l) return 1;
    return 0;
}

/* Adds a reference to l (once) and, for a layer no model named yet, makes its name unique in
   the model the way Keras does: "dense", "dense_1", "dense_2", ... */
static int dl__model_append(dl_model *m, dl_layer *l);
static int dl__model_take(dl_model *m, dl_layer *l) {
    if (dl__model_has_layer(m, l)) return 0;
    return dl__model_append(m, l);
}
/* dl__model_take for a layer known not to be in m yet. */
static int dl__model_append(dl_model *m, dl_layer *l) {
    if (m->n_layers == m->cap_layers) {
        int cap = m->cap_layers ? 2 * m->cap_layers : 8;
        dl_layer **p = (dl_layer **)DL_REALLOC(m->layers, (size_t)cap * sizeof *p);
        if (!p) { dl_set_error("dl_model: out of memory"); return -1; }
        m->layers = p;
        m->cap_layers = cap;
    }
    if (!(l->flags & DL__LAYER_NAMED)) {
        char base[sizeof l->name];
        int k = 0;
        memcpy(base, l->name, sizeof base);
        while (dl_model_find_layer(m, l->name)) {
            char suffix[16];
            snprintf(suffix, sizeof suffix, "_%d", ++k);
            snprintf(l->name, sizeof l->name, "%.*s%s", (int)(sizeof l->name - 1 - strlen(suffix)), base, suffix);
        }
        l->flags |= DL__LAYER_NAMED;
    }
    m->layers[m->n_layers++] = l;
    l->refs++;
    return 0;
}

DLDEF void dl_model_free(dl_model *m) {
    int i;
    if (!m) return;
    if (m->layer_refs > 0) { m->layer_refs--; return; }   /* a wrapper layer still uses it */
    for (i = 0; i < m->n_layers; i++)
        if (--m->layers[i]->refs <= 0) dl__layer_destroy(m->layers[i]);
    DL_FREE(m->layers);
    DL_FREE(m->nodes);
    dl_optim_free(m->opt);
    DL_FREE(m->history.values);
    DL_FREE(m);
}

DLDEF dl_model *dl_sequential_n(int n, dl_layer *const *layers) {
    dl_model *m = NULL;
    int i, j, bad = -1;
    if (n < 0 || (n > 0 && !layers)) { dl_set_error("dl_sequential: bad layer list"); return NULL; }
    for (i = 0; i < n && bad < 0; i++) {
        if (!layers[i]) {   /* a failed constructor (its message is kept) or a stray terminator */
            char msg[512];
            dl__error_copy(msg, sizeof msg);
            if (i == n - 1 && n > 1)   /* most likely a terminator out of habit */
                dl_set_error("dl_sequential: the last layer is NULL (no NULL terminator is needed; last error: %s)",
                             msg[0] ? msg : "none");
            else dl_set_error("dl_sequential: layer %d of %d is NULL (a failed constructor: %s)", i, n, msg[0] ? msg : "?");
            bad = i;
        }
        for (j = 0; j < i && bad < 0; j++)
            if (layers[j] == layers[i]) { dl_set_error("dl_sequential: layer %d appears twice", i); bad = i; }
    }
    if (bad < 0 && (m = dl__model_alloc(DL__SEQUENTIAL, "sequential")) != NULL)
        for (i = 0; i < n; i++)
            if (dl__model_take(m, layers[i]) != 0) {   /* out of memory: give every layer back */
                for (j = 0; j < m->n_layers; j++) m->layers[j]->refs--;
                m->n_layers = 0;
                dl_model_free(m);
                m = NULL;
                break;
            }
    if (!m)   /* free what no model holds (each layer once) */
        for (i = 0; i < n; i++) {
            int dup = 0;
            for (j = 0; j < i; j++) dup |= layers[j] == layers[i];
            if (layers[i] && !dup) dl_layer_free(layers[i]);
        }
    return m;
}

/* ---- Symbolic graphs (functional models) ---- */

static dl_sym *dl__sym_new(void) {
    dl_sym *s = (dl_sym *)DL_MALLOC(sizeof *s);
    if (!s) { dl_set_error("dl_Input: out of memory"); return NULL; }
    memset(s, 0, sizeof *s);
    s->loading = dl__loading != NULL;
    s->next = dl__free_syms;
    if (dl__free_syms) dl__free_syms->prev = s;
    dl__free_syms = s;
    return s;
}

static void dl__sym_unlink(dl_sym *s) {
    if (s->prev) s->prev->next = s->next; else dl__free_syms = s->next;
    if (s->next) s->next->prev = s->prev;
    s->prev = s->next = NULL;
}

DLDEF void dl_sym_free_unused(void) {
    while (dl__free_syms) {
        dl_sym *s = dl__free_syms;
        dl__sym_unlink(s);
        if (s->layer && s->layer->refs <= 0) {
            /* a layer only this abandoned graph used: free it once (clear other uses first) */
            dl_layer *l = s->layer;
            dl_sym *t;
            for (t = dl__free_syms; t; t = t->next) if (t->layer == l) t->layer = NULL;
            dl_layer_free(l);
        }
        DL_FREE(s);
    }
}

static dl_sym *dl__input(dl_dtype dtype, int ndim, const int *shape) {
    dl_sym *s;
    int i;
    if (ndim < 0 || ndim >= DL_MAX_DIMS || (ndim > 0 && !shape)) {
        dl_set_error("dl_Input: 0..%d axes per sample", DL_MAX_DIMS - 1);
        return NULL;
    }
    for (i = 0; i < ndim; i++)
        if (shape[i] <= 0) { dl_set_error("dl_Input: axis %d has size %d", i, shape[i]); return NULL; }
    if (!(s = dl__sym_new())) return NULL;
    s->dtype = dtype;
    s->ndim = ndim;
    for (i = 0; i < ndim; i++) s->shape[i] = shape[i];
    return s;
}
DLDEF dl_sym *dl_Input(int ndim, const int *shape) { return dl__input(DL_DTYPE_F32, ndim, shape); }
DLDEF dl_sym *dl_Input_ids(int ndim, const int *shape) { return dl__input(DL_DTYPE_I32, ndim, shape); }

DLDEF int dl_sym_shape(const dl_sym *s, int *shape) {
    int i;
    if (!s) return -1;
    if (shape) for (i = 0; i < s->ndim; i++) shape[i] = s->shape[i];
    return s->ndim;
}

/* Runs a layer once on zero inputs of batch 1, in a scratch arena without gradients: builds it
   and tells the output's shape. Returns 0 and fills *out_sym's shape, or -1. */
static int dl__probe(dl_layer *l, int n, dl_sym *const *xs, dl_sym *out) {
    dl_arena *a = dl_arena_new((size_t)1 << 16), *prev;
    dl_tensor *in[DL_LAYER_MAX_INPUTS], *y = NULL;
    int i, grad, shape[DL_MAX_DIMS];
    if (!a) return -1;
    prev = dl_arena_use(a);
    grad = dl_no_grad(1);
    for (i = 0; i < n; i++) {
        int d;
        shape[0] = 1;
        for (d = 0; d < xs[i]->ndim; d++) shape[1 + d] = xs[i]->shape[d];
        in[i] = dl_tmp(xs[i]->dtype, 1 + xs[i]->ndim, shape);
    }
    y = dl_layer_call_n(l, n, in, 0);
    if (y) {
        out->dtype = y->dtype;
        out->ndim = y->ndim - 1;
        for (i = 1; i < y->ndim; i++) out->shape[i - 1] = y->shape[i];
    }
    dl_no_grad(grad);
    dl_arena_use(prev);
    dl_arena_free(a);
    return y ? 0 : -1;
}

DLDEF dl_sym *dl_apply_n(dl_layer *l, int n, dl_sym *const *xs) {
    dl_sym *s;
    int i;
    int ok;
    if (!l) return NULL;   /* a failed constructor: its message stands */
    ok = n >= 1 && n <= DL_LAYER_MAX_INPUTS && xs;
    if (!ok) dl_set_error("dl_apply: 1..%d inputs", DL_LAYER_MAX_INPUTS);
    for (i = 0; ok && i < n; i++) ok = xs[i] != NULL;   /* an earlier failure: its message stands */
    if (!(s = dl__sym_new())) return NULL;
    s->layer = l;
    if (!ok || dl__probe(l, n, xs, s) != 0) {
        /* Not returned, but kept (without inputs) in the unused list, so that the layer, which
           the caller may still hold, is freed with the abandoned graph by dl_sym_free_unused. */
        return NULL;
    }
    s->n_in = n;
    for (i = 0; i < n; i++) s->in[i] = xs[i];
    return s;
}
DLDEF dl_sym *dl_apply(dl_layer *l, dl_sym *x) { return dl_apply_n(l, 1, &x); }

/* Depth-first, inputs before the node: places root and everything it reads into m->nodes.
   Iterative (a 100,000-layer chain is that deep): stack holds the symbols being placed, each
   with the index of its next input to visit, and has room for every symbol. */
typedef struct dl__place_frame { dl_sym *s; int next; } dl__place_frame;
static int dl__place(dl_model *m, dl_sym *root, dl__place_frame *stack) {
    int top = 0, i;
    if (root->mark) return 0;
    stack[0].s = root;
    stack[0].next = 0;
    while (top >= 0) {
        dl__place_frame *f = &stack[top];
        dl_sym *s = f->s;
        dl__gnode *g;
        if (!s->layer) {
            dl_set_error("dl_model_new: an output depends on an input not listed in inputs");
            return -1;
        }
        if (f->next < s->n_in) {   /* an input not placed yet: place it first */
            dl_sym *in = s->in[f->next++];
            if (!in->mark) { stack[++top].s = in; stack[top].next = 0; }
            continue;
        }
        g = &m->nodes[m->n_nodes];
        memset(g, 0, sizeof *g);
        g->layer = s->layer;
        g->n_in = s->n_in;
        for (i = 0; i < s->n_in; i++) g->in[i] = s->in[i]->mark - 1;
        g->dtype = s->dtype;
        g->ndim = s->ndim;
        memcpy(g->shape, s->shape, sizeof g->shape);
        s->mark = ++m->n_nodes;
        top--;
    }
    return 0;
}

DLDEF dl_model *dl_model_new(int n_in, dl_sym *const *inputs, int n_out, dl_sym *const *outputs) {
    dl_model *m;
    dl_sym *s, *next;
    dl__place_frame *stack;
    int i, n_syms = 0, ok = 1;
    if (n_in < 1 || n_in > DL__MAX_IO || n_out < 1 || n_out > DL__MAX_IO || !inputs || !outputs) {
        dl_set_error("dl_model_new: 1..%d inputs and outputs", DL__MAX_IO);
        return NULL;
    }
    for (i = 0; i < n_in; i++) {
        if (!inputs[i]) return NULL;
        if (inputs[i]->layer) { dl_set_error("dl_model_new: inputs[%d] is not a dl_Input", i); return NULL; }
    }
    for (i = 0; i < n_out; i++) if (!outputs[i]) return NULL;
    for (s = dl__free_syms; s; s = s->next) { n_syms++; s->mark = 0; }
    if (!(m = dl__model_alloc(DL__FUNCTIONAL, "model"))) return NULL;
    m->nodes = (dl__gnode *)DL_MALLOC((size_t)(n_syms ? n_syms : 1) * sizeof *m->nodes);
    stack = (dl__place_frame *)DL_MALLOC((size_t)(n_syms ? n_syms : 1) * sizeof *stack);
    if (!m->nodes || !stack) {
        dl_set_error("dl_model_new: out of memory");
        DL_FREE(stack);
        DL_FREE(m->nodes);
        DL_FREE(m);
        return NULL;
    }
    for (i = 0; i < n_in && ok; i++) {
        dl__gnode *g = &m->nodes[m->n_nodes];
        if (inputs[i]->mark) { dl_set_error("dl_model_new: inputs[%d] listed twice", i); ok = 0; break; }
        memset(g, 0, sizeof *g);
        g->dtype = inputs[i]->dtype;
        g->ndim = inputs[i]->ndim;
        memcpy(g->shape, inputs[i]->shape, sizeof g->shape);
        m->inputs[i] = m->n_nodes;
        inputs[i]->mark = ++m->n_nodes;
    }
    m->n_inputs = n_in;
    for (i = 0; i < n_out && ok; i++) {
        if (dl__place(m, outputs[i], stack) != 0) ok = 0;
        else m->outputs[i] = outputs[i]->mark - 1;
    }
    DL_FREE(stack);
    m->n_outputs = n_out;
    for (i = 0; i < m->n_nodes && ok; i++) {   /* each distinct layer once (marked: O(1) per node) */
        dl_layer *l = m->nodes[i].layer;
        if (l && !(l->flags & DL__LAYER_MARK)) {
            if (dl__model_append(m, l) != 0) ok = 0;
            else l->flags |= DL__LAYER_MARK;
        }
    }
    for (i = 0; i < m->n_layers; i++) m->layers[i]->flags &= ~DL__LAYER_MARK;
    if (!ok) {   /* nothing taken: the symbols stay with the caller */
        for (i = 0; i < m->n_layers; i++) m->layers[i]->refs--;
        m->n_layers = 0;
        dl_model_free(m);
        return NULL;
    }
    for (s = dl__free_syms; s; s = next) {   /* the model now owns what it placed */
        next = s->next;
        if (s->mark) { dl__sym_unlink(s); DL_FREE(s); }
    }
    m->built = 1;
    m->in_dtype = m->nodes[m->inputs[0]].dtype;
    m->in_ndim = m->nodes[m->inputs[0]].ndim;
    memcpy(m->in_shape, m->nodes[m->inputs[0]].shape, sizeof m->in_shape);
    return m;
}

DLDEF dl_model *dl_custom_model(dl_model_fn forward, void *user, int n_layers, dl_layer *const *layers) {
    dl_model *m;
    int i;
    if (!forward || n_layers < 0 || (n_layers > 0 && !layers)) {
        dl_set_error("dl_custom_model: a forward function and a layer list needed");
        return NULL;
    }
    for (i = 0; i < n_layers; i++) if (!layers[i]) { dl_set_error("dl_custom_model: layer %d is NULL", i); return NULL; }
    if (!(m = dl__model_alloc(DL__CUSTOM, "custom_model"))) return NULL;
    m->fn = forward;
    m->user = user;
    for (i = 0; i < n_layers; i++)
        if (dl__model_take(m, layers[i]) != 0) { dl_model_free(m); return NULL; }
    return m;
}

DLDEF void *dl_model_user(const dl_model *m) { return m ? m->user : NULL; }

DLDEF int dl_sequential_add(dl_model *m, dl_layer *l) {
    if (!m || m->kind != DL__SEQUENTIAL) { dl_set_error("dl_sequential_add: not a sequential model"); return -1; }
    if (!l) return -1;
    if (dl__model_has_layer(m, l)) { dl_set_error("dl_sequential_add: %s is already in the model", l->name); return -1; }
    if (dl__model_take(m, l) != 0) return -1;
    if (m->built) {   /* build the new layer now, so shapes and summaries stay valid */
        m->built = 0;
        return m->in_dtype == DL_DTYPE_I32 ? dl_model_build_ids(m, m->in_ndim, m->in_shape)
                                     : dl_model_build(m, m->in_ndim, m->in_shape);
    }
    return 0;
}

/* ---- Running ---- */

static void dl__model_note_input(dl_model *m, const dl_tensor *x) {
    int i;
    m->in_dtype = x->dtype;
    m->in_ndim = x->ndim - 1;
    for (i = 1; i < x->ndim; i++) m->in_shape[i - 1] = x->shape[i];
}

static int dl__graph_run(dl_model *m, int n_in, dl_tensor *const *in, int n_out, dl_tensor **out, int training) {
    dl_tensor **val, *args[DL_LAYER_MAX_INPUTS];
    int i, j;
    if (n_in != m->n_inputs || n_out != m->n_outputs) {
        dl_set_error("dl_model_call: %s takes %d inputs and gives %d outputs (called with %d and %d)", m->name,
                     m->n_inputs, m->n_outputs, n_in, n_out);
        return -1;
    }
    val = (dl_tensor **)dl_arena_alloc(dl_arena_current(), (size_t)m->n_nodes * sizeof *val);
    if (!val) return -1;
    for (i = 0; i < n_in; i++) {
        const dl__gnode *g = &m->nodes[m->inputs[i]];
        int ok = in[i] && in[i]->ndim == g->ndim + 1;
        for (j = 0; ok && j < g->ndim; j++) ok = in[i]->shape[1 + j] == g->shape[j];
        if (!in[i]) return -1;
        if (!ok) {
            char s[64];
            dl_set_error("dl_model_call: input %d is %s, the model expects [batch%s%s", i, dl_shape_str(in[i], s, sizeof s),
                         g->ndim ? ", ..." : "", "] as given to dl_Input");
            return -1;
        }
        val[m->inputs[i]] = in[i];
    }
    for (i = 0; i < m->n_nodes; i++) {
        const dl__gnode *g = &m->nodes[i];
        if (!g->layer) continue;
        for (j = 0; j < g->n_in; j++) args[j] = val[g->in[j]];
        if (!(val[i] = dl_layer_call_n(g->layer, g->n_in, args, training))) return -1;
    }
    for (i = 0; i < n_out; i++) out[i] = val[m->outputs[i]];
    return 0;
}

DLDEF int dl_model_call_n(dl_model *m, int n_in, dl_tensor *const *in, int n_out, dl_tensor **out, int training) {
    int i;
    if (!m || !in || !out) { dl_set_error("dl_model_call: NULL model or arguments"); return -1; }
    if (m->kind == DL__FUNCTIONAL) return dl__graph_run(m, n_in, in, n_out, out, training);
    if (n_in != 1 || n_out != 1) { dl_set_error("dl_model_call_n: %s has one input and one output", m->name); return -1; }
    if (!in[0]) return -1;
    if (m->kind == DL__SEQUENTIAL) {
        dl_tensor *x = in[0];
        for (i = 0; i < m->n_layers && x; i++) x = dl_layer_call(m->layers[i], x, training);
        out[0] = x;
    } else {
        out[0] = m->fn(m, in[0], training);
    }
    if (!out[0]) return -1;
    if (!m->built) { dl__model_note_input(m, in[0]); m->built = 1; }
    return 0;
}

DLDEF dl_tensor *dl_model_call(dl_model *m, dl_tensor *x, int training) {
    dl_tensor *y = NULL;
    return dl_model_call_n(m, 1, &x, 1, &y, training) == 0 ? y : NULL;
}

/* ---- A model as a layer (Keras: a Model is a Layer) ----
   The layer holds a reference to the model (layer_refs) and runs it; its weights stay the
   model's, so that two models (the GAN's discriminator and the combined generator + frozen
   discriminator) train the same tensors. A frozen wrapper (trainable 0) hides them from the
   optimizer of the model that holds it and runs the inner model with DL_TRAINING_FROZEN. */
static dl_tensor *dl__model_layer_forward(dl_layer *l, int n_in, dl_tensor *const *in, int training) {
    dl_tensor *y = NULL;
    if (training) training = l->trainable ? training : DL_TRAINING_FROZEN;
    return dl_model_call_n(dl__layer_model(l), n_in, in, 1, &y, training) == 0 ? y : NULL;
}
static void dl__model_layer_destroy(dl_layer *l) { dl_model_free(dl__layer_model(l)); }
static const dl_layer_ops dl__model_layer_ops = {"Model", NULL, dl__model_layer_forward, dl__model_layer_destroy,
                                                 1, DL_LAYER_MAX_INPUTS};

DLDEF dl_layer *dl_model_as_layer(dl_model *m) {
    dl_layer *l;
    if (!m) { dl_set_error("dl_model_as_layer: NULL model"); return NULL; }
    if (m->kind == DL__FUNCTIONAL && m->n_outputs != 1) {
        dl_set_error("dl_model_as_layer: %s has %d outputs; a layer has one", m->name, m->n_outputs);
        return NULL;
    }
    if (!(l = dl_layer_new(&dl__model_layer_ops, m->name, m))) return NULL;
    l->flags |= DL__LAYER_MODEL;
    l->built = 1;   /* nothing of its own to build: the inner layers build on the first call */
    m->layer_refs++;
    return l;
}

#ifdef DL_CUDA
/* x on m's device: x itself when it is there, else an arena copy (dl_to_device). NULL stays. */
static dl_tensor *dl__to_model(const dl_model *m, dl_tensor *x) {
    return x && x->device != m->device ? dl_to_device(x, m->device) : x;
}

/* Sets m's device and its inner models' (dl_model_as_layer), moving their bound optimizers. */
static int dl__model_set_device(dl_model *m, dl_device device) {
    int i;
    if (m->opt && m->opt_bound && dl_optim_move(m->opt, device) != 0) return -1;
    m->device = device;
    for (i = 0; i < m->n_layers; i++) {
        dl_model *inner = dl__layer_model(m->layers[i]);
        if (inner && dl__model_set_device(inner, device) != 0) return -1;
    }
    return 0;
}
#endif

DLDEF int dl_model_move(dl_model *m, dl_device device) {
    if (!m) { dl_set_error("dl_model_move: NULL model"); return -1; }
    if (!m->built) {
        dl_set_error("dl_model_move: %s is not built yet: build it (dl_model_build) or call it once first", m->name);
        return -1;
    }
#ifdef DL_CUDA
    {
        dl_tensor *w[256] = {NULL}, **ws = w;
        dl_device from = m->device;
        char msg[400];
        int n = dl_model_weights(m, 0, NULL, 0), i, r = 0;
        if (n > 256 && !(ws = (dl_tensor **)DL_MALLOC((size_t)n * sizeof *ws))) { dl_set_error("dl_model_move: out of memory"); return -1; }
        if (device != DL_DEVICE_CPU && device != DL_DEVICE_CUDA && n == 0) {   /* else dl_tensor_move says it */
            dl_set_error("dl_model_move: unknown device %d", (int)device);
            return -1;
        }
        dl_model_weights(m, 0, ws, n);
        for (i = 0; i < n; i++)
            if (dl_tensor_move(ws[i], device) != 0) break;
        if (i == n && dl__model_set_device(m, device) != 0) r = -1;
        if (i < n || r != 0) {   /* put back what moved, keep the first message */
            snprintf(msg, sizeof msg, "%.380s", dl_error());
            while (i-- > 0) dl_tensor_move(ws[i], from);
            if (r != 0) dl__model_set_device(m, from);
            if (strncmp(msg, "dl_model_move", 13) == 0) dl_set_error("%s", msg);
            else dl_set_error("dl_model_move: %s", msg);
            r = -1;
        }
        if (ws != w) DL_FREE(ws);
        return r;
    }
#else
    if (device == DL_DEVICE_CPU) return 0;
    if (device != DL_DEVICE_CUDA) { dl_set_error("dl_model_move: unknown device %d", (int)device); return -1; }
    {
        char msg[400];
        dl_cuda_init();   /* fails, and says why: no DL_CUDA in this build */
        snprintf(msg, sizeof msg, "%.380s", dl_error());
        dl_set_error("dl_model_move: %s", msg);
        return -1;
    }
#endif
}

static int dl__model_build(dl_model *m, dl_dtype dtype, int ndim, const int *shape) {
    dl_arena *a, *prev;
    dl_tensor *x, *y;
    int full[DL_MAX_DIMS], i, grad;
    if (!m) { dl_set_error("dl_model_build: NULL model"); return -1; }
    if (ndim < 0 || ndim >= DL_MAX_DIMS || (ndim > 0 && !shape)) { dl_set_error("dl_model_build: bad shape"); return -1; }
    if (m->kind == DL__FUNCTIONAL) return 0;   /* built by dl_model_new */
    full[0] = 1;
    for (i = 0; i < ndim; i++) {
        if (shape[i] <= 0) { dl_set_error("dl_model_build: axis %d has size %d", i, shape[i]); return -1; }
        full[1 + i] = shape[i];
    }
    if (!(a = dl_arena_new((size_t)1 << 16))) return -1;
    prev = dl_arena_use(a);
    grad = dl_no_grad(1);
    x = dl_tmp(dtype, 1 + ndim, full);
#ifdef DL_CUDA
    x = dl__to_model(m, x);
#endif
    y = dl_model_call(m, x, 0);
    dl_no_grad(grad);
    dl_arena_use(prev);
    dl_arena_free(a);
    return y ? 0 : -1;
}
DLDEF int dl_model_build(dl_model *m, int ndim, const int *shape) { return dl__model_build(m, DL_DTYPE_F32, ndim, shape); }
DLDEF int dl_model_build_ids(dl_model *m, int ndim, const int *shape) { return dl__model_build(m, DL_DTYPE_I32, ndim, shape); }

/* ---- Inspecting ---- */

DLDEF int dl_model_num_layers(const dl_model *m) { return m ? m->n_layers : 0; }
DLDEF dl_layer *dl_model_layer(const dl_model *m, int i) {
    return m && i >= 0 && i < m->n_layers ? m->layers[i] : NULL;
}
DLDEF dl_layer *dl_model_find_layer(const dl_model *m, const char *name) {
    int i;
    if (!m || !name) return NULL;
    for (i = 0; i < m->n_layers; i++) if (strcmp(m->layers[i]->name, name) == 0) return m->layers[i];
    return NULL;
}

static int dl__weight_trainable(const dl_layer *l, int i) { return l->trainable && l->param_trainable[i]; }

DLDEF int dl_model_weights(const dl_model *m, int trainable_only, dl_tensor **out, int cap) {
    int i, j, n = 0;
    if (!m) return 0;
    for (i = 0; i < m->n_layers; i++) {
        const dl_model *inner = dl__layer_model(m->layers[i]);
        if (inner) {   /* a model used as a layer: its weights, none when frozen (trainable 0) */
            if (!trainable_only || m->layers[i]->trainable)
                n += dl_model_weights(inner, trainable_only, out && n < cap ? out + n : NULL, n < cap ? cap - n : 0);
            continue;
        }
        for (j = 0; j < m->layers[i]->n_params; j++) {
            if (trainable_only && !dl__weight_trainable(m->layers[i], j)) continue;
            if (out && n < cap) out[n] = m->layers[i]->params[j];
            n++;
        }
    }
    return n;
}

static long dl__layer_count(const dl_layer *l, int trainable_only) {
    long n = 0;
    int j;
    if (dl__layer_model(l)) return trainable_only && !l->trainable ? 0 : dl_model_num_params(dl__layer_model(l), trainable_only);
    for (j = 0; j < l->n_params; j++)
        if (!trainable_only || dl__weight_trainable(l, j)) n += (long)l->params[j]->numel;
    return n;
}

DLDEF long dl_model_num_params(const dl_model *m, int trainable_only) {
    long n = 0;
    int i;
    if (!m) return 0;
    for (i = 0; i < m->n_layers; i++) n += dl__layer_count(m->layers[i], trainable_only);
    return n;
}

/* A growing text buffer for the summary (snprintf semantics: counts what did not fit). */
typedef struct dl__text { char *buf; size_t size, len; } dl__text;
static void dl__put(dl__text *t, const char *fmt, ...) {
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(t->len < t->size ? t->buf + t->len : NULL, t->len < t->size ? t->size - t->len : 0, fmt, ap);
    va_end(ap);
    if (n > 0) t->len += (size_t)n;
}

static void dl__shape_tuple(char *s, size_t size, int ndim, const int *shape) {   /* "(None, 28, 28)" */
    size_t n = (size_t)snprintf(s, size, "(None");
    int i;
    for (i = 0; i < ndim && n < size; i++) n += (size_t)snprintf(s + n, size - n, ", %d", shape[i]);
    if (n < size) snprintf(s + n, size - n, ")");
}

static void dl__thousands(char *s, size_t size, long v) {   /* 101770 -> "101,770" */
    char d[32];
    int len = snprintf(d, sizeof d, "%ld", v), i, o = 0;
    for (i = 0; i < len && (size_t)o + 2 < size; i++) {
        if (i > 0 && d[i - 1] != '-' && (len - i) % 3 == 0) s[o++] = ',';
        s[o++] = d[i];
    }
    s[o] = 0;
}

static void dl__rule(dl__text *t, char c, int width) {
    int i;
    for (i = 0; i < width; i++) dl__put(t, "%c", c);
    dl__put(t, "\n");
}

DLDEF size_t dl_model_summary(dl_model *m, char *buf, size_t size) {
    dl__text t;
    char a[96], b[64], c[32];
    int i, j, k, graph, width;
    long total, trainable;
    t.buf = buf; t.size = buf ? size : 0; t.len = 0;
    if (buf && size) buf[0] = 0;
    if (!m) { dl_set_error("dl_model_summary: NULL model"); return 0; }
    if (!m->built) {
        dl_set_error("dl_model_summary: %s is not built yet: call dl_model_build (or fit) first", m->name);
        return 0;
    }
    graph = m->kind == DL__FUNCTIONAL;
    width = graph ? 98 : 65;
    dl__put(&t, "Model: \"%s\"\n", m->name);
    dl__rule(&t, '_', width);
    if (graph) dl__put(&t, " %-30s %-20s %-11s %s\n", "Layer (type)", "Output Shape", "Param #", "Connected to");
    else dl__put(&t, " %-27s %-25s %s\n", "Layer (type)", "Output Shape", "Param #");
    dl__rule(&t, '=', width);
    if (graph) {
        for (i = 0; i < m->n_inputs; i++) {
            const dl__gnode *g = &m->nodes[m->inputs[i]];
            snprintf(a, sizeof a, "input_%d (InputLayer)", i + 1);
            dl__shape_tuple(b, sizeof b, g->ndim, g->shape);
            dl__put(&t, " %-30s [%s]%*s %-11d []\n\n", a, b, (int)(19 - strlen(b) > 0 ? 19 - (int)strlen(b) : 0), "", 0);
        }
    }
    for (i = 0; i < m->n_layers; i++) {
        dl_layer *l = m->layers[i];
        snprintf(a, sizeof a, "%s (%s)", l->name, l->ops->kind);
        dl__shape_tuple(b, sizeof b, l->out_ndim, l->out_shape);
        snprintf(c, sizeof c, "%ld", dl__layer_count(l, 0));   /* Keras: no separators in the rows */
        if (!graph) { dl__put(&t, " %-27s %-25s %s\n\n", a, b, c); continue; }
        dl__put(&t, " %-30s %-20s %-11s ", a, b, c);
        dl__put(&t, "[");
        for (j = 0, k = 0; j < m->n_nodes; j++) {   /* every application of the layer */
            const dl__gnode *g = &m->nodes[j];
            int q;
            if (g->layer != l) continue;
            for (q = 0; q < g->n_in; q++, k++) {
                const dl__gnode *src = &m->nodes[g->in[q]];
                int p;
                if (src->layer) dl__put(&t, "%s'%s[0][0]'", k ? ", " : "", src->layer->name);
                else
                    for (p = 0; p < m->n_inputs; p++)
                        if (m->inputs[p] == g->in[q]) dl__put(&t, "%s'input_%d[0][0]'", k ? ", " : "", p + 1);
            }
        }
        dl__put(&t, "]\n\n");
    }
    dl__rule(&t, '=', width);
    total = dl_model_num_params(m, 0);
    trainable = dl_model_num_params(m, 1);
    dl__thousands(c, sizeof c, total);
    dl__put(&t, "Total params: %s\n", c);
    dl__thousands(c, sizeof c, trainable);
    dl__put(&t, "Trainable params: %s\n", c);
    dl__thousands(c, sizeof c, total - trainable);
    dl__put(&t, "Non-trainable params: %s\n", c);
    dl__rule(&t, '_', width);
    return t.len;
}

#ifndef DL_NO_STDIO
DLDEF int dl_model_print_summary(dl_model *m) {
    size_t n = dl_model_summary(m, NULL, 0);
    char *s;
    if (!n) return -1;
    if (!(s = (char *)DL_MALLOC(n + 1))) { dl_set_error("dl_model_print_summary: out of memory"); return -1; }
    dl_model_summary(m, s, n + 1);
    dl_log_write(DL_LOG_INFO, "%s", s);
    DL_FREE(s);
    return 0;
}
#endif
/* ==== TRAINING: implementation (tests: tests/test_nn_fit.c, test_threads.c) ================= */

static const char *const dl__metric_names[DL_MAX_METRICS] = {"accuracy", "top_k_accuracy", "precision", "recall",
                                                             "mse", "mae"};

DLDEF int dl_compile(dl_model *m, dl_optim *opt, dl_loss loss, unsigned metrics) {
    if (!m) { dl_optim_free(opt); dl_set_error("dl_compile: NULL model"); return -1; }
    if (!opt) { dl_set_error("dl_compile: NULL optimizer (did its constructor fail? %s)", dl_error()); return -1; }
    if (loss < DL_LOSS_SPARSE_CATEGORICAL_CE || loss > DL_LOSS_HUBER) {
        dl_optim_free(opt);
        dl_set_error("dl_compile: unknown loss %d", (int)loss);
        return -1;
    }
    if (metrics >> DL_MAX_METRICS) { dl_optim_free(opt); dl_set_error("dl_compile: unknown metric bits 0x%x", metrics); return -1; }
    if (dl_optim_num_params(opt) != 0) {
        dl_optim_free(opt);
        dl_set_error("dl_compile: give a fresh optimizer (the model adds its own weights to it)");
        return -1;
    }
    if (m->opt != opt) dl_optim_free(m->opt);
    m->opt = opt;
    m->opt_bound = 0;
    m->loss = loss;
    m->metrics = metrics;
    m->compiled = 1;
    return 0;
}

DLDEF void dl_model_set_top_k(dl_model *m, int k) { if (m && k > 0) m->top_k = k; }
DLDEF dl_optim *dl_model_optimizer(const dl_model *m) { return m ? m->opt : NULL; }
DLDEF void dl_model_stop_training(dl_model *m) { if (m) m->stop = 1; }

/* The layer whose output is the model's (single) output, to know whether it is a probability. */
static const dl_layer *dl__output_layer(const dl_model *m) {
    if (m->kind == DL__SEQUENTIAL && m->n_layers) return m->layers[m->n_layers - 1];
    if (m->kind == DL__FUNCTIONAL && m->n_outputs == 1) return m->nodes[m->outputs[0]].layer;
    return NULL;
}
static int dl__outputs_probs(const dl_model *m) {
    int act = dl__layer_act(dl__output_layer(m));
    return m->loss == DL_LOSS_BINARY_CE ? act == DL_ACT_SIGMOID : act == DL_ACT_SOFTMAX;
}

/* targets in the shape of pred when they hold as many values ([N] for [N, 1]) */
static dl_tensor *dl__match(dl_tensor *target, dl_tensor *pred) {
    if (target->ndim != pred->ndim && target->numel == pred->numel) return dl_reshape(target, pred->ndim, pred->shape);
    return target;
}

DLDEF dl_tensor *dl_model_loss(dl_model *m, dl_tensor *out, dl_tensor *y) {
    const float eps = 1e-7f;
    int probs;
    if (!m || !m->compiled) { dl_set_error("dl_model_loss: the model is not compiled"); return NULL; }
    if (!out || !y) { if (!y && out) dl_set_error("dl_model_loss: no targets (the data set has no labels)"); return NULL; }
    probs = dl__outputs_probs(m);
    switch (m->loss) {
    case DL_LOSS_SPARSE_CATEGORICAL_CE:
        if (y->dtype != DL_DTYPE_I32) y = dl_cast(y, DL_DTYPE_I32);
        if (!probs) return dl_cross_entropy(out, y);
        if (!y || out->ndim != 2 || y->ndim != 1 || y->shape[0] != out->shape[0]) {
            dl_set_error("dl_model_loss: probabilities [N, C] and labels [N] needed");
            return NULL;
        }   /* -mean(log p[label]) with p clipped as Keras does */
        return dl_neg(dl_mean_all(dl_gather(dl_log(dl_clamp(out, eps, 1.0f - eps)), 1, dl_unsqueeze(y, 1))));
    case DL_LOSS_CATEGORICAL_CE: {
        dl_tensor *logp;
        int axis = out->ndim - 1;
        if (y->dtype != DL_DTYPE_F32) y = dl_cast(y, DL_DTYPE_F32);
        logp = probs ? dl_log(dl_clamp(out, eps, 1.0f - eps)) : dl_log_softmax(out, axis);
        return dl_neg(dl_mean_all(dl_sum(dl_mul(y, logp), 1, &axis, 0)));
    }
    case DL_LOSS_BINARY_CE:
        if (y->dtype != DL_DTYPE_F32) y = dl_cast(y, DL_DTYPE_F32);
        y = dl__match(y, out);
        if (!probs) return dl_bce_with_logits(out, y);
        {   /* -mean(y log p + (1 - y) log(1 - p)) */
            dl_tensor *p = dl_clamp(out, eps, 1.0f - eps);
            return dl_neg(dl_mean_all(dl_add(dl_mul(y, dl_log(p)), dl_mul(dl_rsub_scalar(1.0f, y), dl_log(dl_rsub_scalar(1.0f, p))))));
        }
    case DL_LOSS_MSE: case DL_LOSS_MAE: case DL_LOSS_HUBER:
        if (y->dtype != DL_DTYPE_F32) y = dl_cast(y, DL_DTYPE_F32);
        y = dl__match(y, out);
        return m->loss == DL_LOSS_MSE ? dl_mse(out, y) : m->loss == DL_LOSS_MAE ? dl_l1(out, y) : dl_huber(out, y, 1.0f);
    }
    dl_set_error("dl_model_loss: unknown loss");
    return NULL;
}

/* ---- Metrics: accumulated over batches, read as Keras reports them ---- */

typedef struct dl__meter {
    unsigned metrics;
    int top_k, probs;
    dl_loss loss;
    double loss_sum, sq_sum, abs_sum, n_values;
    long n, correct, topk;
    int classes;               /* for macro precision/recall (0 until the first batch) */
    double *tp, *fp, *fn;      /* [classes] each, one allocation */
} dl__meter;

static void dl__meter_init(dl__meter *mt, const dl_model *m) {
    memset(mt, 0, sizeof *mt);
    mt->metrics = m->metrics;
    mt->top_k = m->top_k;
    mt->loss = m->loss;
    mt->probs = dl__outputs_probs(m);
}
static void dl__meter_reset(dl__meter *mt) {
    int c;
    mt->loss_sum = mt->sq_sum = mt->abs_sum = mt->n_values = 0;
    mt->n = mt->correct = mt->topk = 0;
    for (c = 0; c < mt->classes * 3; c++) mt->tp[c] = 0;
}
static void dl__meter_free(dl__meter *mt) { DL_FREE(mt->tp); mt->tp = NULL; }

/* The label of sample i: a class index, or a value for binary/regression targets. */
static int dl__meter_add(dl__meter *mt, dl_tensor *out, dl_tensor *y, double loss) {
    const float *o;
    int b, c, C, i, k, binary;
    if (!out || out->dtype != DL_DTYPE_F32) return -1;
    b = out->shape[0];
    mt->loss_sum += loss * b;
    mt->n += b;
    if (!mt->metrics || !y) return 0;
#ifdef DL_CUDA
    if (out->device) {   /* the metrics read the outputs on the host */
        int grad = dl_no_grad(1);
        out = dl_to_device(out, DL_DEVICE_CPU);
        dl_no_grad(grad);
        if (!out) return -1;
    }
#endif
    if (!(o = dl_contig_f32(out))) return -1;
    C = (int)(out->numel / (size_t)b);
    binary = C == 1 || mt->loss == DL_LOSS_BINARY_CE;
    if ((mt->metrics & (DL_METRIC_PRECISION | DL_METRIC_RECALL)) && !mt->tp) {
        mt->classes = binary ? 1 : C;
        mt->tp = (double *)DL_MALLOC(sizeof(double) * 3 * (size_t)mt->classes);
        if (!mt->tp) { dl_set_error("dl_fit: out of memory"); return -1; }
        mt->fp = mt->tp + mt->classes;
        mt->fn = mt->fp + mt->classes;
        for (c = 0; c < 3 * mt->classes; c++) mt->tp[c] = 0;
    }
    for (i = 0; i < b; i++) {
        const float *row = o + (size_t)i * (size_t)C;
        double target;
        int label, pred;
        size_t yi = (size_t)i * (y->numel / (size_t)b);
        if (y->dtype == DL_DTYPE_I32) target = ((const int32_t *)y->data)[yi];
        else if (mt->loss == DL_LOSS_CATEGORICAL_CE) {   /* one-hot targets: the argmax */
            const float *t = (const float *)y->data + yi;
            for (k = 1, target = 0; k < C; k++) if (t[k] > t[(int)target]) target = k;
        } else target = ((const float *)y->data)[yi];
        if (binary) {
            double p = mt->probs || (mt->loss != DL_LOSS_BINARY_CE) ? row[0] : 1.0 / (1.0 + exp(-row[0]));
            pred = p > 0.5;
            label = target > 0.5;
        } else {
            for (k = 1, pred = 0; k < C; k++) if (row[k] > row[pred]) pred = k;
            label = (int)target;
        }
        if (mt->metrics & DL_METRIC_ACCURACY) mt->correct += pred == label;
        if ((mt->metrics & DL_METRIC_TOP_K) && !binary && label >= 0 && label < C) {
            int above = 0;   /* ties count as in the top k, as tf.math.in_top_k */
            for (k = 0; k < C; k++) above += row[k] > row[label];
            mt->topk += above < mt->top_k;
        }
        if (mt->tp) {
            if (binary) { mt->tp[0] += pred && label; mt->fp[0] += pred && !label; mt->fn[0] += !pred && label; }
            else if (label >= 0 && label < C) {
                if (pred == label) mt->tp[pred] += 1;
                else { mt->fp[pred] += 1; mt->fn[label] += 1; }
            }
        }
        if (mt->metrics & (DL_METRIC_MSE | DL_METRIC_MAE)) {
            if (C == 1 || (y->dtype == DL_DTYPE_F32 && y->numel == out->numel)) {
                const float *t = y->dtype == DL_DTYPE_F32 ? (const float *)y->data + yi : NULL;
                for (k = 0; k < C; k++) {
                    double d = row[k] - (t ? t[k] : target);
                    mt->sq_sum += d * d;
                    mt->abs_sum += fabs(d);
                }
                mt->n_values += C;
            }
        }
    }
    return 0;
}

static double dl__ratio(double a, double b) { return b > 0 ? a / b : 0.0; }

/* Fills names/values (loss first) in logs order; returns how many. */
static int dl__meter_read(const dl__meter *mt, const char **names, double *values) {
    int n = 0, j, c;
    names[n] = "loss";
    values[n++] = dl__ratio(mt->loss_sum, (double)mt->n);
    for (j = 0; j < DL_MAX_METRICS; j++) {
        double v = 0;
        if (!(mt->metrics & (1u << j))) continue;
        switch (1u << j) {
        case DL_METRIC_ACCURACY: v = dl__ratio((double)mt->correct, (double)mt->n); break;
        case DL_METRIC_TOP_K: v = dl__ratio((double)mt->topk, (double)mt->n); break;
        case DL_METRIC_PRECISION: case DL_METRIC_RECALL:
            for (c = 0; c < mt->classes; c++)
                v += dl__ratio(mt->tp[c], mt->tp[c] + ((1u << j) == DL_METRIC_PRECISION ? mt->fp[c] : mt->fn[c]));
            v = dl__ratio(v, mt->classes);
            break;
        case DL_METRIC_MSE: v = dl__ratio(mt->sq_sum, mt->n_values); break;
        case DL_METRIC_MAE: v = dl__ratio(mt->abs_sum, mt->n_values); break;
        }
        names[n] = dl__metric_names[j];
        values[n++] = v;
    }
    return n;
}

DLDEF double dl_logs_get(const dl_logs *logs, const char *name) {
    int i, val;
    if (!logs || !name) return NAN;
    val = strncmp(name, "val_", 4) == 0;
    if (val && !logs->has_val) return NAN;
    for (i = 0; i < logs->n; i++)
        if (strcmp(logs->names[i], name + (val ? 4 : 0)) == 0) return val ? logs->val_values[i] : logs->values[i];
    if (strcmp(name, "lr") == 0) return logs->lr;
    return NAN;
}

DLDEF double dl_history_get(const dl_history *h, const char *name, int epoch) {
    int i;
    if (!h || !name || epoch < 0 || epoch >= h->epochs) return NAN;
    for (i = 0; i < h->n; i++)
        if (strcmp(h->names[i], name) == 0) return h->values[(size_t)epoch * (size_t)h->n + (size_t)i];
    return NAN;
}

/* ---- One training step ---- */

/* Sparse categorical cross-entropy needs every label in [0, C) (or -100, ignored): name the
   first that is not by its row in the data set, before training starts (a failing batch could
   only name its position in a shuffled batch). C is the model's output size on axis 1; the
   model is built on the first sample when it is not yet (as the first batch would build it). */
static int dl__check_labels(dl_model *m, const dl_dataset *ds, const char *fn) {
    dl_tensor *out;
    const int32_t *y;
    int i, classes, grad;
    if (m->loss != DL_LOSS_SPARSE_CATEGORICAL_CE || !ds->y || ds->y->dtype != DL_DTYPE_I32 || ds->n <= 0 ||
        !dl_is_contiguous(ds->y) || ds->y->numel != (size_t)ds->n)
        return 0;
    grad = dl_no_grad(1);
#ifdef DL_CUDA
    out = dl_model_call(m, dl__to_model(m, dl_slice(ds->x, 0, 0, 1, 1)), 0);
#else
    out = dl_model_call(m, dl_slice(ds->x, 0, 0, 1, 1), 0);
#endif
    dl_no_grad(grad);
    if (!out) return -1;
    if (out->ndim < 2) return 0;   /* dl_model_loss explains what is wrong with such an output */
    classes = out->shape[1];
    y = dl_i32(ds->y);
    for (i = 0; i < ds->n; i++)
        if ((y[i] < 0 && y[i] != -100) || y[i] >= classes) {
            dl_set_error("%s: label %d of sample %d (row %d of the data set) is not in [0, %d), the model's output size",
                         fn, (int)y[i], i, i, classes);
            return -1;
        }
    return 0;
}

static int dl__bind_optimizer(dl_model *m) {
    dl_tensor *w[256] = {NULL}, **ws = w;
    int n, r;
    if (m->opt_bound) return 0;
    n = dl_model_weights(m, 1, NULL, 0);
    if (n > 256 && !(ws = (dl_tensor **)DL_MALLOC((size_t)n * sizeof *ws))) { dl_set_error("dl_fit: out of memory"); return -1; }
    dl_model_weights(m, 1, ws, n);
    r = dl_optim_add_params(m->opt, n, ws);
    if (ws != w) DL_FREE(ws);
    if (r != 0) return -1;
    m->opt_bound = 1;
    return 0;
}

/* fit's terminate_on_nan: copies of the weights that a forward pass changes (the statistics of
   batch normalization, not trainable), taken before each step, so that a step whose loss is not
   finite can be undone (the trainable weights and the optimizer state change only in the
   update, which such a step skips). The copies are made on the first step (owned, freed by
   dl__nan_guard_free); later steps copy into them. */
typedef struct dl__nan_guard { int n; dl_tensor **live, **saved; } dl__nan_guard;

static void dl__nan_guard_free(dl__nan_guard *g) {
    int i;
    for (i = 0; i < g->n; i++) dl_tensor_free(g->saved[i]);
    DL_FREE(g->live);
    memset(g, 0, sizeof *g);
}

static int dl__nan_guard_save(dl__nan_guard *g, dl_model *m) {
    int i, j, n = 0;
    if (!g->live) {
        for (i = 0; i < m->n_layers; i++)
            for (j = 0; j < m->layers[i]->n_params; j++) n += !m->layers[i]->param_trainable[j];
        if (!(g->live = (dl_tensor **)DL_MALLOC(2 * (size_t)(n ? n : 1) * sizeof *g->live))) {
            dl_set_error("dl_fit: out of memory");
            return -1;
        }
        g->saved = g->live + n;
        for (i = 0; i < m->n_layers; i++)
            for (j = 0; j < m->layers[i]->n_params; j++)
                if (!m->layers[i]->param_trainable[j]) {
                    g->live[g->n] = m->layers[i]->params[j];
                    if (!(g->saved[g->n] = dl_tensor_clone(g->live[g->n]))) return -1;
                    g->n++;
                }
        return 0;
    }
    for (i = 0; i < g->n; i++) if (dl_copy(g->saved[i], g->live[i]) != 0) return -1;
    return 0;
}

/* forward, loss, backward, update; the output goes to *out for the metrics. With a guard, a
   loss that is not finite is returned without the update, the statistics put back. */
static double dl__train_step(dl_model *m, dl_tensor *x, dl_tensor *y, dl_tensor **out, dl__nan_guard *g) {
    dl_tensor *o, *loss;
    double v;
    if (!m->compiled) { dl_set_error("dl_fit: compile the model first (dl_compile)"); return NAN; }
#ifdef DL_CUDA
    if (m->device) {   /* host batch, device model: arena copies (the metrics keep the host y) */
        if (!(x = dl__to_model(m, x))) return NAN;
        if (y && !(y = dl__to_model(m, y))) return NAN;
    }
#endif
    if (!m->built || !m->opt_bound) {   /* the first batch builds the weights, then the optimizer gets them */
        int grad = dl_no_grad(1);
        o = dl_model_call(m, x, 0);
        dl_no_grad(grad);
        if (!o || dl__bind_optimizer(m) != 0) return NAN;
    }
    if (g && dl__nan_guard_save(g, m) != 0) return NAN;
    dl_optim_zero_grad(m->opt);
    o = dl_model_call(m, x, 1);
    loss = dl_model_loss(m, o, y);
    if (!loss) return NAN;
    v = dl_item(loss);
    if (g && !isfinite(v)) {
        int i;
        for (i = 0; i < g->n; i++) dl_copy(g->live[i], g->saved[i]);
        if (out) *out = o;
        return v;
    }
    if (dl_backward(loss) != 0 || dl_optim_step(m->opt) != 0) return NAN;
    if (out) *out = o;
    return v;
}

DLDEF double dl_train_on_batch(dl_model *m, dl_tensor *x, dl_tensor *y) {
    if (!m) { dl_set_error("dl_train_on_batch: NULL model"); return NAN; }
    return dl__train_step(m, x, y, NULL, NULL);
}

/* ---- Progress output, Keras style ---- */

static void dl__fmt_time(char *s, size_t size, double sec) {
    if (sec >= 3600) snprintf(s, size, "%d:%02d:%02d", (int)(sec / 3600), (int)(sec / 60) % 60, (int)sec % 60);
    else if (sec >= 60) snprintf(s, size, "%d:%02d", (int)(sec / 60), (int)sec % 60);
    else snprintf(s, size, "%ds", (int)sec);
}

static void dl__put_per_step(dl__text *t, double sec) {   /* Keras: "2s/step", "35ms/step" or "512us/step" */
    if (sec >= 1) dl__put(t, "%.0fs/step", sec);
    else if (sec >= 1e-3) dl__put(t, "%.0fms/step", sec * 1e3);
    else dl__put(t, "%.0fus/step", sec * 1e6);
}

static void dl__put_values(dl__text *t, const dl_logs *lg) {
    int i;
    for (i = 0; i < lg->n; i++) dl__put(t, " - %s: %.4f", lg->names[i], lg->values[i]);
    if (lg->has_val)
        for (i = 0; i < lg->n; i++) dl__put(t, " - val_%s: %.4f", lg->names[i], lg->val_values[i]);
}

/* The bar: "  32/1875 [>.....] - ETA: 30s - loss: 0.61 - accuracy: 0.78" (carriage return),
   one call of the log function. */
static void dl__print_bar(const dl_logs *lg, int done) {
    char line[1024], t[32];
    dl__text out;
    int i, width = 30, filled = lg->batches ? (int)((double)width * (lg->batch + 1) / lg->batches) : width;
    int digits = snprintf(t, sizeof t, "%d", lg->batches);
    out.buf = line; out.size = sizeof line; out.len = 0;
    line[0] = 0;
    dl__put(&out, "\r%*d/%d [", digits, lg->batch + 1, lg->batches);
    for (i = 0; i < width; i++) dl__put(&out, "%c", i < filled - 1 || (done && i < filled) ? '=' : i == filled - 1 ? '>' : '.');
    dl__put(&out, "]");
    if (done) {
        dl__fmt_time(t, sizeof t, lg->seconds);
        dl__put(&out, " - %s ", t);
        dl__put_per_step(&out, lg->seconds / (lg->batches ? lg->batches : 1));
    } else {
        dl__fmt_time(t, sizeof t, lg->seconds / (lg->batch + 1) * (lg->batches - lg->batch - 1));
        dl__put(&out, " - ETA: %s", t);
    }
    dl__put_values(&out, lg);
    dl__put(&out, "\033[K%s", done ? "\n" : "");   /* clear what a longer earlier line left */
    dl_log_write(DL_LOG_INFO, "%s", line);
}

/* The line of verbose 2 at the end of an epoch: "1875/1875 - 3s - 2ms/step - loss: 0.51" */
static void dl__print_epoch_line(const dl_logs *lg) {
    char line[1024], t[32];
    dl__text out;
    out.buf = line; out.size = sizeof line; out.len = 0;
    line[0] = 0;
    dl__fmt_time(t, sizeof t, lg->seconds);
    dl__put(&out, "%d/%d - %s - ", lg->batches, lg->batches, t);
    dl__put_per_step(&out, lg->seconds / (lg->batches ? lg->batches : 1));
    dl__put_values(&out, lg);
    dl__put(&out, "\n");
    dl_log_write(DL_LOG_INFO, "%s", line);
}

static int dl__stdout_is_terminal(void) {
#if !defined(_WIN32)
    return isatty(1);
#else
    return 0;
#endif
}

/* ---- evaluate / predict ---- */

static int dl__evaluate(dl_model *m, const dl_dataset *ds, int batch_size, dl__meter *mt) {
    dl_batcher *b;
    dl_tensor *x, *y, *out, *loss;
    dl_arena *arena = dl_arena_current();
    int r, grad = dl_no_grad(1), ok = 0;
    dl__meter_reset(mt);
    if (!(b = dl_batcher_new(ds, batch_size, NULL))) { dl_no_grad(grad); return -1; }
    for (;;) {
        dl_arena_reset(arena);
        r = dl_batcher_next(b, &x, &y);
        if (r <= 0) { ok = r == 0; break; }
#ifdef DL_CUDA
        out = dl_model_call(m, dl__to_model(m, x), 0);
        loss = dl_model_loss(m, out, dl__to_model(m, y));
#else
        out = dl_model_call(m, x, 0);
        loss = dl_model_loss(m, out, y);
#endif
        if (!loss || dl__meter_add(mt, out, y, dl_item(loss)) != 0) break;
    }
    dl_batcher_free(b);
    dl_no_grad(grad);
    return ok ? 0 : -1;
}

DLDEF int dl_evaluate(dl_model *m, const dl_dataset *ds, int batch_size, dl_logs *logs) {
    dl__meter mt;
    int r;
    if (!m || !ds || !logs) { dl_set_error("dl_evaluate: NULL argument"); return -1; }
    if (!m->compiled) { dl_set_error("dl_evaluate: compile the model first (dl_compile)"); return -1; }
    memset(logs, 0, sizeof *logs);
    if (!ds->x || ds->n <= 0) { dl_set_error("dl_evaluate: empty data set"); return -1; }
    if (batch_size < 0) { dl_set_error("dl_evaluate: batch_size %d must be >= 0 (0: 32)", batch_size); return -1; }
    if (dl__check_labels(m, ds, "dl_evaluate") != 0) return -1;
    dl__meter_init(&mt, m);
    r = dl__evaluate(m, ds, batch_size > 0 ? batch_size : 32, &mt);
    if (r == 0) logs->n = dl__meter_read(&mt, logs->names, logs->values);
    dl__meter_free(&mt);
    return r;
}

DLDEF dl_tensor *dl_predict(dl_model *m, const dl_tensor *x, int batch_size) {
    dl_tensor *res = NULL;
    dl_arena *arena = dl_arena_current();
    int n, start, grad, shape[DL_MAX_DIMS], i;
    if (!m || !x) { dl_set_error("dl_predict: NULL argument"); return NULL; }
    if (x->ndim < 1) { dl_set_error("dl_predict: x needs a batch axis"); return NULL; }
    if (x->device != DL_DEVICE_CPU) {
        dl_set_error("dl_predict: x must be a host tensor (it is copied to the model's device batch by batch); for a tensor "
                     "already on the GPU call dl_model_call");
        return NULL;
    }
    if (batch_size < 0) { dl_set_error("dl_predict: batch_size %d must be >= 0 (0: 32)", batch_size); return NULL; }
    if (batch_size == 0) batch_size = 32;
    n = x->shape[0];
    grad = dl_no_grad(1);
    for (start = 0; start < n; start += batch_size) {
        int stop = start + batch_size < n ? start + batch_size : n;
        dl_tensor *xb, *out;
        dl_arena_reset(arena);
        xb = dl_slice((dl_tensor *)x, 0, start, stop, 1);   /* a view: read only */
#ifdef DL_CUDA
        xb = dl__to_model(m, xb);
#endif
        if (!(out = dl_contiguous(dl_model_call(m, xb, 0)))) break;
        if (!res) {
            shape[0] = n;
            for (i = 1; i < out->ndim; i++) shape[i] = out->shape[i];
            if (!(res = dl_tensor_new(out->dtype, out->ndim, shape))) break;
        }
#ifdef DL_CUDA
        if (out->device) {   /* the outputs back to the host */
            if (dl_tensor_read(out, (char *)res->data + (size_t)start * (res->numel / (size_t)n) * dl_dtype_size(res->dtype)) != 0)
                break;
            continue;
        }
#endif
        memcpy((char *)res->data + (size_t)start * (res->numel / (size_t)n) * dl_dtype_size(res->dtype), out->data,
               out->numel * dl_dtype_size(out->dtype));
    }
    dl_no_grad(grad);
    if (start < n) { dl_tensor_free(res); return NULL; }
    if (!res) dl_set_error("dl_predict: no samples");
    return res;
}

/* ---- fit ---- */

static int dl__history_add(dl_history *h, const dl_logs *lg) {
    int i, n = lg->n * (lg->has_val ? 2 : 1);
    double *v;
    if (h->epochs == 0) {
        h->n = n;
        for (i = 0; i < lg->n; i++) h->names[i] = lg->names[i];
        for (i = 0; lg->has_val && i < lg->n; i++) {
            static const char *const val_names[1 + DL_MAX_METRICS] = {"val_loss", "val_accuracy", "val_top_k_accuracy",
                "val_precision", "val_recall", "val_mse", "val_mae"};
            int j;
            h->names[lg->n + i] = "val_?";
            if (strcmp(lg->names[i], "loss") == 0) h->names[lg->n + i] = val_names[0];
            for (j = 0; j < DL_MAX_METRICS; j++)
                if (strcmp(lg->names[i], dl__metric_names[j]) == 0) h->names[lg->n + i] = val_names[1 + j];
        }
    }
    v = (double *)DL_REALLOC(h->values, (size_t)(h->epochs + 1) * (size_t)h->n * sizeof *v);
    if (!v) { dl_set_error("dl_fit: out of memory"); return -1; }
    h->values = v;
    v += (size_t)h->epochs * (size_t)h->n;
    for (i = 0; i < lg->n; i++) v[i] = lg->values[i];
    for (i = 0; lg->has_val && i < lg->n && lg->n + i < h->n; i++) v[lg->n + i] = lg->val_values[i];
    h->epochs++;
    return 0;
}

/* Calls one hook of every callback, in order. -1 when a callback failed the fit (a checkpoint
   that could not be saved): dl_error() says why, and the callbacks after it are not called. */
enum { DL__ON_TRAIN_BEGIN, DL__ON_EPOCH_BEGIN, DL__ON_BATCH_END, DL__ON_EPOCH_END, DL__ON_TRAIN_END };
static int dl__callbacks_run(const dl_fit_opts *o, dl_model *m, int hook, int epoch, const dl_logs *lg) {
    int i;
    for (i = 0; i < o->n_callbacks && !m->fit_failed; i++) {
        dl_callback *cb = o->callbacks[i];
        if (!cb) continue;
        switch (hook) {
        case DL__ON_TRAIN_BEGIN: if (cb->on_train_begin) cb->on_train_begin(cb, m); break;
        case DL__ON_EPOCH_BEGIN: if (cb->on_epoch_begin) cb->on_epoch_begin(cb, m, epoch); break;
        case DL__ON_BATCH_END: if (cb->on_batch_end) cb->on_batch_end(cb, m, lg); break;
        case DL__ON_EPOCH_END: if (cb->on_epoch_end) cb->on_epoch_end(cb, m, lg); break;
        default: if (cb->on_train_end) cb->on_train_end(cb, m); break;
        }
    }
    return m->fit_failed ? -1 : 0;
}

DLDEF const dl_history *dl_fit(dl_model *m, const dl_dataset *ds, const dl_fit_opts *opts) {
    dl_fit_opts o;
    dl__nan_guard guard;
    dl_dataset *train_part = NULL, *val_part = NULL;
    const dl_dataset *train, *val;
    dl_batcher *b = NULL;
    dl_batch_opts bo;
    dl__meter mt, vmt;
    dl_logs lg;
    dl_arena *arena = dl_arena_current();
    int epoch, i, style, ok = 0, r, nan_stop = 0;
    double t0, last_bar = 0;
    if (!m || !ds) { dl_set_error("dl_fit: NULL model or data set"); return NULL; }
    if (!m->compiled) { dl_set_error("dl_fit: compile the model first (dl_compile)"); return NULL; }
    if (opts) o = *opts; else memset(&o, 0, sizeof o);
    if (o.epochs < 0 || o.batch_size < 0) {
        dl_set_error("dl_fit: %s %d must be >= 0 (0: the default)", o.epochs < 0 ? "epochs" : "batch_size",
                     o.epochs < 0 ? o.epochs : o.batch_size);
        return NULL;
    }
    if (o.epochs == 0) o.epochs = 1;
    if (o.batch_size == 0) o.batch_size = 32;
    if (o.n_callbacks < 0 || (o.n_callbacks > 0 && !o.callbacks)) { dl_set_error("dl_fit: bad callback list"); return NULL; }
    if (!(o.validation_split >= 0.0f && o.validation_split < 1.0f)) {
        dl_set_error("dl_fit: validation_split %g must be in [0, 1)", (double)o.validation_split);
        return NULL;
    }
    if (!ds->x || ds->n <= 0) { dl_set_error("dl_fit: empty data set"); return NULL; }
    if (dl__check_labels(m, ds, "dl_fit") != 0) return NULL;
    train = ds;
    val = o.validation_data;
    if (!val && o.validation_split > 0.0f) {   /* Keras: the last samples, before any shuffling */
        int nv = (int)((double)o.validation_split * ds->n), nt = ds->n - nv, *idx;
        if (nv < 1 || nt < 1) { dl_set_error("dl_fit: validation_split leaves an empty part"); return NULL; }
        if (!(idx = (int *)DL_MALLOC((size_t)ds->n * sizeof *idx))) { dl_set_error("dl_fit: out of memory"); return NULL; }
        for (i = 0; i < ds->n; i++) idx[i] = i;
        train_part = dl_dataset_subset(ds, idx, nt);
        val_part = dl_dataset_subset(ds, idx + nt, nv);
        DL_FREE(idx);
        if (!train_part || !val_part) { dl_dataset_free(train_part); dl_dataset_free(val_part); return NULL; }
        train = train_part;
        val = val_part;
    }
    memset(&bo, 0, sizeof bo);
    bo.shuffle = !o.no_shuffle;
    bo.seed = o.seed;
    style = o.verbose == 0 ? (dl__stdout_is_terminal() ? 1 : 2) : o.verbose;
    dl__meter_init(&mt, m);
    dl__meter_init(&vmt, m);
    memset(&guard, 0, sizeof guard);
    DL_FREE(m->history.values);
    memset(&m->history, 0, sizeof m->history);
    m->history.nan_epoch = m->history.nan_batch = -1;
    m->stop = 0;
    m->fit_failed = 0;
    if (!(b = dl_batcher_new(train, o.batch_size, &bo))) goto done;
    if (dl__callbacks_run(&o, m, DL__ON_TRAIN_BEGIN, 0, NULL) != 0) goto done;
    for (epoch = o.initial_epoch; epoch < o.epochs && !m->stop && !nan_stop; epoch++) {
        dl_tensor *x, *y, *out = NULL;
        memset(&lg, 0, sizeof lg);
        lg.epoch = epoch;
        lg.epochs = o.epochs;
        lg.batches = dl_batcher_num_batches(b);
        dl_batcher_set_epoch(b, epoch);
        if (dl__callbacks_run(&o, m, DL__ON_EPOCH_BEGIN, epoch, NULL) != 0) goto done;
        if (style == 1 || style == 2) dl_log_write(DL_LOG_INFO, "Epoch %d/%d\n", epoch + 1, o.epochs);
        dl__meter_reset(&mt);
        t0 = dl__now();
        for (lg.batch = 0;; lg.batch++) {
            double loss;
            dl_arena_reset(arena);
            r = dl_batcher_next(b, &x, &y);
            if (r < 0) goto done;
            if (r == 0) break;
            out = NULL;
            loss = dl__train_step(m, x, y, &out, o.terminate_on_nan ? &guard : NULL);
            if (loss != loss && !out) goto done;   /* NaN from a failure (a NaN loss itself keeps going) */
            if (o.terminate_on_nan && !isfinite(loss)) {   /* the step was undone: stop here */
                if (style == 1 && lg.batch > 0) dl_log_write(DL_LOG_INFO, "\n");   /* end the bar's line */
                dl_log_write(DL_LOG_WARN, "dl_fit: epoch %d/%d, batch %d/%d: loss %g; training stopped with the weights from before this batch\n",
                       epoch + 1, o.epochs, lg.batch + 1, lg.batches, loss);
                m->history.nan_epoch = epoch;
                m->history.nan_batch = lg.batch;
                nan_stop = 1;
                break;
            }
            if (dl__meter_add(&mt, out, y, loss) != 0) goto done;
            lg.n = dl__meter_read(&mt, lg.names, lg.values);
            lg.lr = dl_optim_lr(m->opt);
            lg.seconds = dl__now() - t0;
            if (dl__callbacks_run(&o, m, DL__ON_BATCH_END, epoch, &lg) != 0) goto done;
            if (style == 1) {
                double now = dl__now();
                if (now - last_bar > 0.1 || lg.batch == 0) { dl__print_bar(&lg, 0); last_bar = now; }
            }
        }
        if (nan_stop) break;   /* the interrupted epoch is not in the history */
        lg.batch = lg.batches - 1;
        lg.n = dl__meter_read(&mt, lg.names, lg.values);
        if (val) {
            if (dl__evaluate(m, val, o.batch_size, &vmt) != 0) goto done;
            dl__meter_read(&vmt, lg.names, lg.val_values);
            lg.has_val = 1;
        }
        lg.lr = dl_optim_lr(m->opt);
        lg.seconds = dl__now() - t0;
        if (dl__history_add(&m->history, &lg) != 0) goto done;
        if (dl__callbacks_run(&o, m, DL__ON_EPOCH_END, epoch, &lg) != 0) goto done;
        if (style == 1) dl__print_bar(&lg, 1);
        else if (style == 2) dl__print_epoch_line(&lg);
    }
    if (dl__callbacks_run(&o, m, DL__ON_TRAIN_END, 0, NULL) != 0) goto done;
    ok = 1;
done:
    dl__nan_guard_free(&guard);
    dl_batcher_free(b);
    dl__meter_free(&mt);
    dl__meter_free(&vmt);
    dl_dataset_free(train_part);
    dl_dataset_free(val_part);
    dl_arena_reset(arena);
    return ok ? &m->history : NULL;
}

/* ---- Built-in callbacks ---- */

DLDEF void dl_callback_free(dl_callback *cb) {
    if (!cb) return;
    if (cb->destroy) cb->destroy(cb);
    DL_FREE(cb);
}

static dl_callback *dl__callback_new(size_t state) {
    dl_callback *cb = (dl_callback *)DL_MALLOC(sizeof *cb + state);
    if (!cb) { dl_set_error("dl_callback: out of memory"); return NULL; }
    memset(cb, 0, sizeof *cb + state);
    cb->user = cb + 1;
    return cb;
}

/* lower is better for losses and errors */
static int dl__lower_is_better(const char *monitor) {
    size_t n = strlen(monitor);
    return (n >= 4 && strcmp(monitor + n - 4, "loss") == 0) || (n >= 3 && (strcmp(monitor + n - 3, "mse") == 0 ||
                                                                          strcmp(monitor + n - 3, "mae") == 0));
}

typedef struct dl__early {
    char monitor[48];
    double min_delta, best;
    int patience, restore, wait, lower, stopped;
    int n_saved;
    dl_tensor **live, **saved;   /* the model's weights and copies from the best epoch */
} dl__early;

static void dl__early_free_saved(dl__early *e) {
    int i;
    for (i = 0; i < e->n_saved; i++) dl_tensor_free(e->saved[i]);
    DL_FREE(e->live);
    e->live = e->saved = NULL;
    e->n_saved = 0;
}
static void dl__early_begin(dl_callback *cb, dl_model *m) {
    dl__early *e = (dl__early *)cb->user;
    (void)m;
    e->wait = 0;
    e->stopped = 0;
    e->best = e->lower ? INFINITY : -INFINITY;
    dl__early_free_saved(e);
}
static void dl__early_epoch(dl_callback *cb, dl_model *m, const dl_logs *lg) {
    dl__early *e = (dl__early *)cb->user;
    double v = dl_logs_get(lg, e->monitor);
    int i, n;
    if (v != v) return;   /* not logged (yet): Keras warns and goes on */
    if (e->lower ? v < e->best - e->min_delta : v > e->best + e->min_delta) {
        e->best = v;
        e->wait = 0;
        if (!e->restore) return;
        if (!e->live) {   /* first improvement: remember which tensors, and copy them */
            n = dl_model_weights(m, 0, NULL, 0);
            if (!(e->live = (dl_tensor **)DL_MALLOC(2 * (size_t)(n ? n : 1) * sizeof *e->live))) return;
            e->saved = e->live + n;
            dl_model_weights(m, 0, e->live, n);
            for (i = 0; i < n; i++) e->saved[i] = dl_tensor_clone(e->live[i]);
            e->n_saved = n;
        } else {
            for (i = 0; i < e->n_saved; i++) dl_copy(e->saved[i], e->live[i]);
        }
        return;
    }
    if (++e->wait >= e->patience) {
        e->stopped = 1;
        dl_model_stop_training(m);
    }
}
/* Keras puts the best weights back when it stopped the training early. */
static void dl__early_end(dl_callback *cb, dl_model *m) {
    dl__early *e = (dl__early *)cb->user;
    int i;
    (void)m;
    if (!e->restore || !e->stopped) return;
    for (i = 0; i < e->n_saved; i++) if (e->saved[i]) dl_copy(e->live[i], e->saved[i]);
}
static void dl__early_destroy(dl_callback *cb) { dl__early_free_saved((dl__early *)cb->user); }

DLDEF dl_callback *dl_early_stopping(const char *monitor, double min_delta, int patience, int restore_best_weights) {
    dl_callback *cb;
    dl__early *e;
    if (!monitor || strlen(monitor) >= sizeof e->monitor || patience < 0 || !(min_delta >= 0)) {
        dl_set_error("dl_early_stopping: a monitor name, patience >= 0 and min_delta >= 0 needed");
        return NULL;
    }
    if (!(cb = dl__callback_new(sizeof(dl__early)))) return NULL;
    e = (dl__early *)cb->user;
    snprintf(e->monitor, sizeof e->monitor, "%s", monitor);
    e->min_delta = min_delta;
    e->patience = patience > 0 ? patience : 1;
    e->restore = restore_best_weights;
    e->lower = dl__lower_is_better(monitor);
    cb->on_train_begin = dl__early_begin;
    cb->on_epoch_end = dl__early_epoch;
    cb->on_train_end = dl__early_end;
    cb->destroy = dl__early_destroy;
    return cb;
}

typedef struct dl__ckpt {
    char path[512], monitor[48];
    int best_only, lower;
    double best;
} dl__ckpt;

static void dl__ckpt_begin(dl_callback *cb, dl_model *m) {
    dl__ckpt *c = (dl__ckpt *)cb->user;
    (void)m;
    c->best = c->lower ? INFINITY : -INFINITY;
}
static void dl__ckpt_epoch(dl_callback *cb, dl_model *m, const dl_logs *lg) {
    dl__ckpt *c = (dl__ckpt *)cb->user;
    char path[600];
    const char *pct = strstr(c->path, "%d");
    if (c->best_only) {
        double v = dl_logs_get(lg, c->monitor);
        if (v != v || !(c->lower ? v < c->best : v > c->best)) return;
        c->best = v;
    }
    if (pct) snprintf(path, sizeof path, "%.*s%d%s", (int)(pct - c->path), c->path, lg->epoch + 1, pct + 2);
    else snprintf(path, sizeof path, "%s", c->path);
#ifndef DL_NO_STDIO
    if (dl_model_save(m, path, 1) != 0) {   /* dl_fit stops and returns NULL with this message */
        char why[512];
        dl__error_copy(why, sizeof why);
        dl_set_error("dl_model_checkpoint: epoch %d: %s", lg->epoch + 1, why);
        m->fit_failed = 1;
    }
#else
    (void)m;
#endif
}

DLDEF dl_callback *dl_model_checkpoint(const char *path, const char *monitor, int save_best_only) {
    dl_callback *cb;
    dl__ckpt *c;
    if (!path || strlen(path) >= sizeof c->path || (save_best_only && (!monitor || strlen(monitor) >= sizeof c->monitor))) {
        dl_set_error("dl_model_checkpoint: a path (< 512 bytes) and, with save_best_only, a monitor needed");
        return NULL;
    }
    if (!(cb = dl__callback_new(sizeof(dl__ckpt)))) return NULL;
    c = (dl__ckpt *)cb->user;
    snprintf(c->path, sizeof c->path, "%s", path);
    snprintf(c->monitor, sizeof c->monitor, "%s", monitor ? monitor : "val_loss");
    c->best_only = save_best_only;
    c->lower = dl__lower_is_better(c->monitor);
    cb->on_train_begin = dl__ckpt_begin;
    cb->on_epoch_end = dl__ckpt_epoch;
    return cb;
}

typedef struct dl__sched { dl_lr_schedule s; int per_batch; } dl__sched;

static void dl__sched_epoch(dl_callback *cb, dl_model *m, int epoch) {
    dl__sched *s = (dl__sched *)cb->user;
    dl_optim_set_lr(m->opt, dl_lr_at(&s->s, s->per_batch ? dl_optim_steps(m->opt) : epoch));
}
static void dl__sched_batch(dl_callback *cb, dl_model *m, const dl_logs *lg) {
    dl__sched *s = (dl__sched *)cb->user;
    (void)lg;
    if (s->per_batch) dl_optim_set_lr(m->opt, dl_lr_at(&s->s, dl_optim_steps(m->opt)));
}

DLDEF dl_callback *dl_lr_scheduler(const dl_lr_schedule *schedule, int per_batch) {
    dl_callback *cb;
    if (!schedule) { dl_set_error("dl_lr_scheduler: NULL schedule"); return NULL; }
    if (!(cb = dl__callback_new(sizeof(dl__sched)))) return NULL;
    ((dl__sched *)cb->user)->s = *schedule;
    ((dl__sched *)cb->user)->per_batch = per_batch;
    cb->on_epoch_begin = dl__sched_epoch;
    cb->on_batch_end = dl__sched_batch;
    return cb;
}

/* ==== SAVING: implementation (tests: tests/test_nn_model.c, test_nn_load.c) ================
   "dl.architecture" is text, one item per line, numbers in decimal ("%.9g" for floats, which
   round-trips every float):
       model sequential | model functional
       input f32|i32 NDIM D1 .. DNDIM          per-sample shape (one line per model input)
       layer KIND NAME TRAINABLE i I0 .. I7 f F0 .. F7     iconf and fconf, as the constructors set them
       node LAYER N IN1 .. INN                  functional: layer index applied to earlier nodes
                                                (nodes 0.. are the inputs, then one per node line)
       output NODE ..                           functional: the output nodes
   "dl.compile" = "loss L metrics M top_k K"; the optimizer's own file (dl_optim_serialize) is
   embedded with every key and tensor name prefixed by "optimizer/" (its hyperparameters always,
   its state tensors only with include_optimizer). */

#define DL__MODEL_FORMAT "dl.model.v1"
#define DL__MAX_LOAD_LAYERS 100000
#define DL__MAX_LAYER_KINDS 64   /* dl_layer_register's table */


/* ---- Names and pointers to indices in O(1): an open-addressing table of int indices (+ 1;
   0 = empty) whose keys the caller compares, so a 100,000-layer file loads in linear time ---- */

typedef struct dl__itab { size_t mask; int *slot; } dl__itab;

static int dl__itab_init(dl__itab *t, int n) {
    size_t cap = 16;
    while (cap < 2 * (size_t)n) cap *= 2;
    t->mask = cap - 1;
    t->slot = (int *)DL_MALLOC(cap * sizeof *t->slot);
    if (!t->slot) { dl_set_error("out of memory"); return -1; }
    memset(t->slot, 0, cap * sizeof *t->slot);
    return 0;
}
static void dl__itab_free(dl__itab *t) { DL_FREE(t->slot); t->slot = NULL; }
static size_t dl__hash_str(const char *s) {   /* FNV-1a */
    size_t h = (size_t)2166136261u;
    while (*s) h = (h ^ (unsigned char)*s++) * (size_t)16777619u;
    return h;
}
/* The slot of the layer named name in layers[], or the empty slot where it would go. */
static int *dl__itab_name(const dl__itab *t, dl_layer *const *layers, const char *name) {
    size_t i = dl__hash_str(name) & t->mask;
    while (t->slot[i] && strcmp(layers[t->slot[i] - 1]->name, name) != 0) i = (i + 1) & t->mask;
    return &t->slot[i];
}
/* The same by address. */
static int *dl__itab_ptr(const dl__itab *t, dl_layer *const *layers, const dl_layer *l) {
    size_t i = ((size_t)(uintptr_t)l >> 4) * (size_t)2654435761u & t->mask;
    while (t->slot[i] && layers[t->slot[i] - 1] != l) i = (i + 1) & t->mask;
    return &t->slot[i];
}

/* ---- Registered custom layer kinds (Keras' custom_objects) ---- */

static const dl_layer_ops *dl__kinds[DL__MAX_LAYER_KINDS];
static int dl__n_kinds;

static const dl_layer_ops *const dl__builtin_ops[] = {&dl__dense_ops, &dl__conv_ops, &dl__convt_ops, &dl__maxpool_ops,
    &dl__avgpool_ops, &dl__gap_ops, &dl__flatten_ops, &dl__reshape_ops, &dl__dropout_ops, &dl__bn_ops,
    &dl__ln_ops, &dl__emb_ops, &dl__activation_ops, &dl__add_ops, &dl__mul_ops, &dl__concat_ops, &dl__flip_ops,
    &dl__leaky_ops, &dl__in_ops, &dl__rpad_ops, &dl__zpad_ops, &dl__up_ops};

static int dl__is_rnn_kind(const char *kind) {
    return strcmp(kind, "SimpleRNN") == 0 || strcmp(kind, "LSTM") == 0 || strcmp(kind, "GRU") == 0;
}
static int dl__is_builtin_kind(const char *kind) {
    size_t i;
    for (i = 0; i < sizeof dl__builtin_ops / sizeof dl__builtin_ops[0]; i++)
        if (strcmp(dl__builtin_ops[i]->kind, kind) == 0) return 1;
    return dl__is_rnn_kind(kind);
}
static int dl__is_builtin(const dl_layer *l) {
    size_t i;
    for (i = 0; i < sizeof dl__builtin_ops / sizeof dl__builtin_ops[0]; i++) if (l->ops == dl__builtin_ops[i]) return 1;
    return dl__is_rnn_kind(l->ops->kind);
}
static int dl__find_kind(const char *kind) {
    int i;
    for (i = 0; i < dl__n_kinds; i++) if (strcmp(dl__kinds[i]->kind, kind) == 0) return i;
    return -1;
}

DLDEF int dl_layer_register(const dl_layer_ops *ops) {
    const char *c;
    int i;
    if (!ops || !ops->kind || !ops->forward) { dl_set_error("dl_layer_register: ops with a kind and a forward function needed"); return -1; }
    for (c = ops->kind; *c; c++)
        if (*c <= ' ' || *c == '/' || *c == '"' || *c == '\\' || *c >= 0x7f) break;
    if (*c || c == ops->kind || c - ops->kind >= 32) {
        dl_set_error("dl_layer_register: kind '%s' must be 1..31 printable characters without spaces, '/', '\"' or '\\'", ops->kind);
        return -1;
    }
    if (dl__is_builtin_kind(ops->kind)) { dl_set_error("dl_layer_register: '%s' is a built-in layer kind", ops->kind); return -1; }
    if ((i = dl__find_kind(ops->kind)) >= 0) {
        if (dl__kinds[i] == ops) return 0;
        dl_set_error("dl_layer_register: another dl_layer_ops is registered as '%s'", ops->kind);
        return -1;
    }
    if (dl__n_kinds >= DL__MAX_LAYER_KINDS) { dl_set_error("dl_layer_register: %d kinds registered already", DL__MAX_LAYER_KINDS); return -1; }
    dl__kinds[dl__n_kinds++] = ops;
    return 0;
}

DLDEF int dl_layer_unregister(const char *kind) {
    int i = kind ? dl__find_kind(kind) : -1;
    if (i < 0) { dl_set_error("dl_layer_unregister: '%s' is not registered", kind ? kind : "(null)"); return -1; }
    dl__kinds[i] = dl__kinds[--dl__n_kinds];
    return 0;
}

/* A new layer of this kind with these settings; NULL + dl_error() if unknown or invalid. */
static dl_layer *dl__layer_from_conf(const char *kind, const int *ic, const float *fc) {
    dl_act act = (dl_act)ic[DL__ACT_SLOT];
    dl_layer *l = NULL;
    int k;
    if (strcmp(kind, "Dense") == 0) l = dl_Dense(ic[0], act);
    else if (strcmp(kind, "Conv2D") == 0) l = dl_Conv2D(ic[0], ic[1], ic[2], (dl_padding)ic[3], act);
    else if (strcmp(kind, "Conv2DTranspose") == 0) l = dl_Conv2DTranspose(ic[0], ic[1], ic[2], (dl_padding)ic[3], act);
    else if (strcmp(kind, "MaxPool2D") == 0) l = dl_MaxPool2D(ic[0], ic[1]);
    else if (strcmp(kind, "AvgPool2D") == 0) l = dl_AvgPool2D(ic[0], ic[1]);
    else if (strcmp(kind, "GlobalAvgPool2D") == 0) l = dl_GlobalAvgPool2D();
    else if (strcmp(kind, "Flatten") == 0) l = dl_Flatten();
    else if (strcmp(kind, "Reshape") == 0) l = dl_Reshape(ic[0], ic + 1);
    else if (strcmp(kind, "Dropout") == 0) l = dl_Dropout(fc[0]);
    else if (strcmp(kind, "BatchNormalization") == 0) l = dl_BatchNormalization(fc[0], fc[1]);
    else if (strcmp(kind, "LayerNormalization") == 0) l = dl_LayerNormalization(fc[0]);
    else if (strcmp(kind, "Embedding") == 0) l = dl_Embedding(ic[0], ic[1]);
    else if (strcmp(kind, "Activation") == 0) l = dl_Activation(act);
    else if (strcmp(kind, "Add") == 0) l = dl_Add();
    else if (strcmp(kind, "Multiply") == 0) l = dl_Multiply();
    else if (strcmp(kind, "Concatenate") == 0) l = dl_Concatenate(ic[0]);
    else if (strcmp(kind, "RandomFlip") == 0) l = dl_RandomFlip();
    /* a saved 0 is a real 0 (the constructor stored the default otherwise) */
    else if (strcmp(kind, "LeakyReLU") == 0) l = dl_LeakyReLU(fc[0] != 0.0f ? fc[0] : (float)DL_ZERO);
    else if (strcmp(kind, "InstanceNormalization") == 0) l = dl_InstanceNormalization(fc[0] != 0.0f ? fc[0] : (float)DL_ZERO);
    else if (strcmp(kind, "ReflectionPad2D") == 0) l = dl_ReflectionPad2D_sides(ic[0], ic[1], ic[2], ic[3]);
    else if (strcmp(kind, "ZeroPadding2D") == 0) l = dl_ZeroPadding2D_sides(ic[0], ic[1], ic[2], ic[3]);
    else if (strcmp(kind, "UpSampling2D") == 0) l = dl_UpSampling2D(ic[0]);
    else if (dl__is_rnn_kind(kind)) l = dl__rnn_from_conf(kind, ic, fc);
    else if ((k = dl__find_kind(kind)) >= 0) {   /* registered: its settings are its iconf/fconf */
        if ((l = dl_layer_new(dl__kinds[k], kind, NULL)) != NULL) {
            memcpy(l->iconf, ic, sizeof l->iconf);
            memcpy(l->fconf, fc, sizeof l->fconf);
        }
    } else {
        dl_set_error("unknown layer kind '%s' (a custom layer: dl_layer_register its dl_layer_ops before loading)", kind);
        return NULL;
    }
    if (!l && !dl_error()[0]) dl_set_error("bad settings for a %s", kind);
    return l;
}

/* ---- Saving ---- */

static void dl__put_shape_line(dl__text *t, dl_dtype dtype, int ndim, const int *shape) {
    int i;
    dl__put(t, "input %s %d", dtype == DL_DTYPE_I32 ? "i32" : "f32", ndim);
    for (i = 0; i < ndim; i++) dl__put(t, " %d", shape[i]);
    dl__put(t, "\n");
}

/* The architecture text into t; -1 + dl_error() when the model cannot be described. */
static int dl__arch_text(const dl_model *m, dl__text *t) {
    dl__itab index;
    int i, j;
    if (m->kind == DL__CUSTOM) {
        dl_set_error("dl_model_save: a custom model's forward function cannot be saved: use dl_model_save_weights");
        return -1;
    }
    for (i = 0; i < m->n_layers; i++) {
        const dl_layer *l = m->layers[i];
        const char *c;
        if (!dl__is_builtin(l) && (dl__find_kind(l->ops->kind) < 0 || dl__kinds[dl__find_kind(l->ops->kind)] != l->ops)) {
            dl_set_error("dl_model_save: layer %s is a custom %s: dl_layer_register its dl_layer_ops (or use dl_model_save_weights)",
                         l->name, l->ops->kind);
            return -1;
        }
        for (c = l->name; *c; c++)
            if (*c <= ' ' || *c == '/') { dl_set_error("dl_model_save: layer name '%s' has a space or '/'", l->name); return -1; }
    }
    dl__put(t, "model %s\n", m->kind == DL__SEQUENTIAL ? "sequential" : "functional");
    if (m->kind == DL__SEQUENTIAL && m->built) dl__put_shape_line(t, m->in_dtype, m->in_ndim, m->in_shape);
    if (m->kind == DL__FUNCTIONAL)
        for (i = 0; i < m->n_inputs; i++) {
            const dl__gnode *g = &m->nodes[m->inputs[i]];
            dl__put_shape_line(t, g->dtype, g->ndim, g->shape);
        }
    for (i = 0; i < m->n_layers; i++) {
        const dl_layer *l = m->layers[i];
        dl__put(t, "layer %s %s %d i", l->ops->kind, l->name, l->trainable);
        for (j = 0; j < DL_LAYER_MAX_CONF; j++) dl__put(t, " %d", l->iconf[j]);
        dl__put(t, " f");
        for (j = 0; j < DL_LAYER_MAX_CONF; j++) dl__put(t, " %.9g", (double)l->fconf[j]);
        dl__put(t, "\n");
    }
    if (m->kind == DL__FUNCTIONAL) {
        if (dl__itab_init(&index, m->n_layers) != 0) return -1;   /* layer -> its index */
        for (i = 0; i < m->n_layers; i++) *dl__itab_ptr(&index, m->layers, m->layers[i]) = i + 1;
        for (i = 0; i < m->n_nodes; i++) {
            const dl__gnode *g = &m->nodes[i];
            if (!g->layer) continue;
            dl__put(t, "node %d %d", *dl__itab_ptr(&index, m->layers, g->layer) - 1, g->n_in);
            for (j = 0; j < g->n_in; j++) dl__put(t, " %d", g->in[j]);
            dl__put(t, "\n");
        }
        dl__itab_free(&index);
        dl__put(t, "output");
        for (i = 0; i < m->n_outputs; i++) dl__put(t, " %d", m->outputs[i]);
        dl__put(t, "\n");
    }
    return 0;
}

/* Everything a model file holds, gathered for dl_safetensors_save / _serialize: the weights,
   then the optimizer's state tensors and metadata (dl_optim_state_tensor / _meta) prefixed by
   "optimizer/". */
typedef struct dl__model_file {
    int n, n_meta;
    const char **names, **keys, **values;
    dl_tensor **ts;
    char *text;              /* names, the architecture, the compile line, the optimizer's entries */
} dl__model_file;

static void dl__model_file_free(dl__model_file *f) {
    DL_FREE(f->names);
    DL_FREE(f->text);
    memset(f, 0, sizeof *f);
}

#define DL__OPT_ENTRY 64   /* bytes of text per optimizer key or value ("optimizer/state.12.exp_avg_sq") */

static int dl__model_file_make(dl_model *m, int weights_only, int include_optimizer, dl__model_file *f) {
    dl__text arch;
    size_t text_size, off = 0;
    int n_w, n_opt_t = 0, n_opt_m = 0, i, j, k;
    char name[48];
    memset(f, 0, sizeof *f);
    if (!m) { dl_set_error("dl_model_save: NULL model"); return -1; }
    if (!m->built) { dl_set_error("dl_model_save: %s has no weights yet: build or fit it first", m->name); return -1; }
    for (i = 0; i < m->n_layers; i++)
        if (dl__layer_model(m->layers[i])) {
            dl_set_error("dl_model_save: layer %s of %s is a model (dl_model_as_layer): save that model itself",
                         m->layers[i]->name, m->name);
            return -1;
        }
    arch.buf = NULL; arch.size = 0; arch.len = 0;
    if (!weights_only && dl__arch_text(m, &arch) != 0) return -1;
    if (!weights_only && m->compiled) {   /* the optimizer's entries: its hyperparameters always, its state on request */
        char key[48], value[48];
        if (!m->opt_bound && dl__bind_optimizer(m) != 0) return -1;
        while (dl_optim_state_meta(m->opt, n_opt_m, key, sizeof key, value, sizeof value) == 0) n_opt_m++;
        if (include_optimizer)
            while (dl_optim_state_tensor(m->opt, n_opt_t, name, sizeof name)) n_opt_t++;
    }
    n_w = dl_model_weights(m, 0, NULL, 0);
    f->n = n_w + n_opt_t;
    f->n_meta = weights_only ? 1 : 4 + n_opt_m;
    text_size = arch.len + 1 + 128 + (size_t)f->n * 128 + (size_t)n_opt_m * 2 * DL__OPT_ENTRY + (size_t)m->n_layers * 128 + 1;
    f->names = (const char **)DL_MALLOC((size_t)(2 * f->n + 2 * f->n_meta + 1) * sizeof(char *) + (size_t)f->n * sizeof(dl_tensor *));
    f->text = (char *)DL_MALLOC(text_size);
    if (!f->names || !f->text) { dl_set_error("dl_model_save: out of memory"); dl__model_file_free(f); return -1; }
    f->keys = f->names + f->n;
    f->values = f->keys + f->n_meta;
    f->ts = (dl_tensor **)(f->values + f->n_meta + 1);
    /* weights: "layer/weight" */
    for (i = 0, k = 0; i < m->n_layers; i++)
        for (j = 0; j < m->layers[i]->n_params; j++, k++) {
            f->names[k] = f->text + off;
            off += (size_t)snprintf(f->text + off, 128, "%s/%s", m->layers[i]->name, m->layers[i]->param_names[j]) + 1;
            f->ts[k] = m->layers[i]->params[j];
        }
    f->keys[0] = "dl.format";
    f->values[0] = DL__MODEL_FORMAT;
    if (!weights_only) {
        arch.buf = f->text + off;   /* write the architecture for real this time */
        arch.size = arch.len + 1;
        arch.len = 0;
        dl__arch_text(m, &arch);
        f->keys[1] = "dl.architecture";
        f->values[1] = arch.buf;
        off += arch.len + 1;
        f->keys[2] = "dl.compile";
        f->values[2] = f->text + off;
        off += (size_t)snprintf(f->text + off, 128, "loss %d metrics %u top_k %d compiled %d state %d", (int)m->loss,
                                m->metrics, m->top_k, m->compiled, m->compiled && include_optimizer) + 1;
        /* each layer's generator (dropout masks), so that training resumes exactly */
        f->keys[3] = "dl.rng";
        f->values[3] = f->text + off;
        for (i = 0; i < m->n_layers; i++) {
            const uint64_t *r = m->layers[i]->rng.s;
            off += (size_t)snprintf(f->text + off, 128, "%s %016llx %016llx %016llx %016llx\n", m->layers[i]->name,
                                    (unsigned long long)r[0], (unsigned long long)r[1], (unsigned long long)r[2],
                                    (unsigned long long)r[3]);
        }
        f->text[off++] = 0;
        for (i = 0; i < n_opt_m; i++) {
            char key[48];
            f->keys[4 + i] = f->text + off;
            f->values[4 + i] = f->text + off + DL__OPT_ENTRY;
            dl_optim_state_meta(m->opt, i, key, sizeof key, f->text + off + DL__OPT_ENTRY, DL__OPT_ENTRY);
            snprintf(f->text + off, DL__OPT_ENTRY, "optimizer/%s", key);
            off += 2 * DL__OPT_ENTRY;
        }
        for (i = 0; i < n_opt_t; i++, k++) {
            f->ts[k] = dl_optim_state_tensor(m->opt, i, name, sizeof name);
            f->names[k] = f->text + off;
            off += (size_t)snprintf(f->text + off, 128, "optimizer/%s", name) + 1;
        }
    }
    return 0;
}

DLDEF size_t dl_model_serialize(dl_model *m, int include_optimizer, void *out, size_t cap) {
    dl__model_file f;
    size_t r;
    if (dl__model_file_make(m, 0, include_optimizer, &f) != 0) return 0;
    r = dl_safetensors_serialize(f.n, f.names, f.ts, f.n_meta, f.keys, f.values, out, cap);
    dl__model_file_free(&f);
    return r;
}

#ifndef DL_NO_STDIO
static int dl__model_save(dl_model *m, const char *path, int weights_only, int include_optimizer) {
    dl__model_file f;
    int r;
    if (!path) { dl_set_error("dl_model_save: NULL path"); return -1; }
    if (dl__model_file_make(m, weights_only, include_optimizer, &f) != 0) return -1;
    r = dl_safetensors_save(path, f.n, f.names, f.ts, f.n_meta, f.keys, f.values);
    dl__model_file_free(&f);
    return r;
}
DLDEF int dl_model_save(dl_model *m, const char *path, int include_optimizer) { return dl__model_save(m, path, 0, include_optimizer); }
DLDEF int dl_model_save_weights(dl_model *m, const char *path) { return dl__model_save(m, path, 1, 0); }
#endif

/* ---- Loading ---- */

/* Copies every weight of m from st (names "layer/weight"), after checking them all. */
static int dl__load_weights_from(dl_model *m, const dl_safetensors *st, const char *fn) {
    char name[128];
    int pass, i, j;
    if (!m->built) { dl_set_error("%s: build the model first (dl_model_build)", fn); return -1; }
    for (i = 0; i < m->n_layers; i++)
        if (dl__layer_model(m->layers[i])) {
            dl_set_error("%s: layer %s is a model (dl_model_as_layer): load that model's weights", fn, m->layers[i]->name);
            return -1;
        }
    for (pass = 0; pass < 2; pass++)   /* check everything, then copy: a failure changes nothing */
        for (i = 0; i < m->n_layers; i++)
            for (j = 0; j < m->layers[i]->n_params; j++) {
                dl_tensor *w = m->layers[i]->params[j], *src;
                char a[64], b[64];
                snprintf(name, sizeof name, "%s/%s", m->layers[i]->name, m->layers[i]->param_names[j]);
                src = dl_safetensors_get(st, name);
                if (pass == 1) { dl_copy(w, src); continue; }
                if (!src) { dl_set_error("%s: the file has no weight '%s'", fn, name); return -1; }
                if (src->dtype != DL_DTYPE_F32 || !dl_same_shape(src, w)) {
                    dl_set_error("%s: '%s' is %s %s in the file, the model needs f32 %s", fn, name, dl_dtype_name(src->dtype),
                                 dl_shape_str(src, a, sizeof a), dl_shape_str(w, b, sizeof b));
                    return -1;
                }
            }
    return 0;
}

/* ---- Numbers in the file's text: every one range-checked (errno, limits, finite) ---- */

static const char *dl__skip_spaces(const char *p) { while (*p == ' ') p++; return p; }
static const char *dl__skip_word(const char *p) {
    p = dl__skip_spaces(p);
    while (*p && *p != ' ' && *p != '\n') p++;
    return p;
}

/* One decimal integer in [lo, hi] after spaces into *out; returns the end, NULL if not. */
static const char *dl__read_long(const char *p, long lo, long hi, long *out) {
    char *end;
    long v;
    p = dl__skip_spaces(p);
    if (!(*p == '-' || (*p >= '0' && *p <= '9'))) return NULL;   /* strtol would skip other space */
    errno = 0;
    v = strtol(p, &end, 10);
    if (end == p || errno == ERANGE || v < lo || v > hi) return NULL;
    *out = v;
    return end;
}

/* n integers in [lo, hi] into out[] (ints: lo and hi within int's range). */
static const char *dl__read_ints(const char *p, int n, int *out, long lo, long hi) {
    int i;
    for (i = 0; i < n && p; i++) {
        long v = 0;
        p = dl__read_long(p, lo, hi, &v);
        out[i] = (int)v;
    }
    return p;
}

/* One finite number of magnitude <= max; returns the end, NULL if not. */
static const char *dl__read_double(const char *p, double max, double *out) {
    char *end;
    double v;
    p = dl__skip_spaces(p);
    if (!(*p == '-' || *p == '+' || *p == '.' || (*p >= '0' && *p <= '9'))) return NULL;   /* no inf, nan, hex */
    for (end = (char *)p; *end == '-' || *end == '+' || *end == '.' || (*end >= '0' && *end <= '9') || *end == 'e' || *end == 'E'; end++) {}
    if (*end == 'x' || *end == 'X') return NULL;   /* strtod would read hexadecimal */
    v = strtod(p, &end);
    if (end == p || !(v >= -max && v <= max)) return NULL;
    *out = v;
    return end;
}

/* The end of the line: only spaces may remain. */
static int dl__at_eol(const char *p) { p = dl__skip_spaces(p); return *p == 0 || *p == '\n'; }

/* ---- Size checks before anything is built: per-sample shapes from the settings alone ---- */

#ifndef DL_MODEL_LOAD_MAX_VALUES
#define DL_MODEL_LOAD_MAX_VALUES (1L << 24)   /* values per sample of any input or layer output */
#endif

typedef struct dl__shape { int ndim; long long d[DL_MAX_DIMS]; } dl__shape;

/* 0 when every axis is in 1..INT_MAX and the product is within the limit, else -1 + message. */
static int dl__shape_fits(const char *what, const dl__shape *s) {
    double n = 1;
    int i;
    for (i = 0; i < s->ndim; i++) {
        if (s->d[i] < 1 || s->d[i] > INT_MAX) {
            dl_set_error("%s: axis %d would have size %lld", what, i, s->d[i]);
            return -1;
        }
        n *= (double)s->d[i];
    }
    if (n > (double)DL_MODEL_LOAD_MAX_VALUES) {
        dl_set_error("%s: %.0f values per sample, over the limit of %ld (DL_MODEL_LOAD_MAX_VALUES)", what, n,
                     (long)DL_MODEL_LOAD_MAX_VALUES);
        return -1;
    }
    return 0;
}

/* An upper bound of l's per-sample output shape for these inputs (exact for the kinds that grow
   a tensor), from its settings: 0 and *out, 1 when l is a kind not known here (a registered
   layer: its code is trusted), -1 + message when out is too large. Inputs whose ranks do not fit
   the kind give a bound of their own size; the probe reports the real error. */
static int dl__layer_bound(const dl_layer *l, int n, const dl__shape *in, dl__shape *out) {
    const int *ic = l->iconf;
    const dl_layer_ops *o = l->ops;
    int i, j;
    char what[96];
    *out = in[0];
    if (o == &dl__dense_ops && out->ndim >= 1) out->d[out->ndim - 1] = ic[0];
    else if ((o == &dl__conv_ops || o == &dl__convt_ops || o == &dl__maxpool_ops || o == &dl__avgpool_ops) && out->ndim == 3) {
        int pool = o == &dl__maxpool_ops || o == &dl__avgpool_ops;
        long long k = pool ? ic[0] : ic[1], s = pool ? ic[1] : ic[2];
        if (!pool) out->d[0] = ic[0];
        for (i = 1; i < 3; i++) {
            long long x = in[0].d[i];
            if (o == &dl__convt_ops) out->d[i] = ic[3] == DL_PADDING_SAME ? x * s : (x - 1) * s + k;
            else if (!pool && ic[3] == DL_PADDING_SAME) out->d[i] = (x + s - 1) / s;
            else out->d[i] = x >= k ? (x - k) / s + 1 : 1;
        }
    } else if ((o == &dl__rpad_ops || o == &dl__zpad_ops) && out->ndim == 3) {
        out->d[1] += (long long)ic[2] + ic[3];
        out->d[2] += (long long)ic[0] + ic[1];
    } else if (o == &dl__up_ops && out->ndim == 3) {
        out->d[1] *= ic[0];
        out->d[2] *= ic[0];
    } else if (o == &dl__gap_ops && out->ndim == 3) out->ndim = 1;
    else if (o == &dl__flatten_ops) {
        double p = 1;
        for (i = 0; i < in[0].ndim; i++) p *= (double)in[0].d[i];
        out->ndim = 1;
        out->d[0] = p > 4e18 ? (long long)4e18 : (long long)p;
    } else if (o == &dl__reshape_ops && ic[0] >= 0 && ic[0] < DL_MAX_DIMS) {
        double p = 1, q = 1;
        for (i = 0; i < in[0].ndim; i++) p *= (double)in[0].d[i];
        out->ndim = ic[0];
        for (i = 0; i < ic[0]; i++) { out->d[i] = ic[1 + i]; if (ic[1 + i] > 0) q *= ic[1 + i]; }
        for (i = 0; i < ic[0]; i++) if (ic[1 + i] == -1) out->d[i] = p / q > 4e18 ? (long long)4e18 : (long long)(p / q);
    } else if (o == &dl__emb_ops && out->ndim + 1 < DL_MAX_DIMS) out->d[out->ndim++] = ic[1];
    else if (o == &dl__concat_ops) {
        int a = ic[0] < 0 ? in[0].ndim + 1 + ic[0] : ic[0];   /* of the full tensor */
        if (a >= 1 && a <= in[0].ndim)
            for (j = 1; j < n; j++) out->d[a - 1] += a - 1 < in[j].ndim ? in[j].d[a - 1] : 0;
    } else if (o == &dl__add_ops || o == &dl__mul_ops) {   /* broadcast: the larger of each axis */
        for (j = 1; j < n; j++) {
            if (in[j].ndim > out->ndim) {
                dl__shape t = in[j];
                int sh = in[j].ndim - out->ndim;
                for (i = 0; i < out->ndim; i++) if (out->d[i] > t.d[sh + i]) t.d[sh + i] = out->d[i];
                *out = t;
            } else
                for (i = 0; i < in[j].ndim; i++) {
                    int a = out->ndim - in[j].ndim + i;
                    if (in[j].d[i] > out->d[a]) out->d[a] = in[j].d[i];
                }
        }
    } else if (dl__is_rnn_kind(o->kind) && out->ndim == 2) {   /* [T, F] -> [T, units] or [units] */
        if (ic[1]) out->d[1] = ic[0];
        else { out->ndim = 1; out->d[0] = ic[0]; }
    } else if (!dl__is_builtin(l)) return 1;
    snprintf(what, sizeof what, "dl_model_load: layer %s (%s)", l->name, o->kind);
    return dl__shape_fits(what, out);
}

/* ---- The architecture text, line by line ---- */

typedef struct dl__loader {
    const dl_safetensors *st;
    int functional;                /* -1 before the model line */
    dl_layer **layers;             /* in the order of the layer lines */
    int n_layers, cap_layers;
    int model_has_layers;          /* a model took them all (or freed them): not ours to free */
    dl__itab names;                /* layer name -> index + 1 */
    dl_sym **syms;                 /* the inputs, then one per node line */
    int n_syms, n_in, n_out, outs[DL__MAX_IO];
    dl_dtype in_dtype;
    int in_ndim, in_shape[DL_MAX_DIMS];
} dl__loader;

static int dl__load_fail(const char *what) { dl_set_error("dl_model_load: %s", what); return -1; }

/* "model sequential" | "model functional" */
static int dl__load_model_line(dl__loader *ld, const char *q) {
    q = dl__skip_spaces(q);
    if (ld->functional >= 0) return dl__load_fail("two model lines");
    if (strncmp(q, "functional", 10) == 0 && dl__at_eol(q + 10)) ld->functional = 1;
    else if (strncmp(q, "sequential", 10) == 0 && dl__at_eol(q + 10)) ld->functional = 0;
    else return dl__load_fail("unknown model type");
    return 0;
}

/* "input f32|i32 NDIM D1 .. DNDIM" */
static int dl__load_input_line(dl__loader *ld, const char *q) {
    dl__shape s;
    int nd, i;
    q = dl__skip_spaces(q);
    if (strncmp(q, "f32 ", 4) == 0) ld->in_dtype = DL_DTYPE_F32;
    else if (strncmp(q, "i32 ", 4) == 0) ld->in_dtype = DL_DTYPE_I32;
    else return dl__load_fail("bad input line (dtype f32 or i32)");
    if (!(q = dl__read_ints(q + 4, 1, &nd, 0, DL_MAX_DIMS - 1)) || !(q = dl__read_ints(q, nd, ld->in_shape, 1, INT_MAX)) ||
        !dl__at_eol(q))
        return dl__load_fail("bad input line");
    s.ndim = nd;
    for (i = 0; i < nd; i++) s.d[i] = ld->in_shape[i];
    if (dl__shape_fits("dl_model_load: the input", &s) != 0) return -1;
    if (!ld->functional) {
        if (ld->in_ndim >= 0) return dl__load_fail("a sequential model has one input line");
        ld->in_ndim = nd;
        return 0;
    }
    if (ld->n_in >= DL__MAX_IO || ld->n_syms > ld->n_in) return dl__load_fail("too many inputs, or an input after a node");
    if (!(ld->syms[ld->n_syms] = dl__input(ld->in_dtype, nd, ld->in_shape))) return -1;
    ld->n_syms++;
    ld->n_in++;
    return 0;
}

/* "layer KIND NAME TRAINABLE i I0 .. I7 f F0 .. F7" */
static int dl__load_layer_line(dl__loader *ld, const char *q) {
    char kind[32], name[48];
    int ic[DL_LAYER_MAX_CONF], tr, i, *slot;
    float fc[DL_LAYER_MAX_CONF];
    const char *k0, *k1, *c;
    dl_layer *l;
    k0 = dl__skip_spaces(q); k1 = dl__skip_word(k0);
    if (k1 - k0 <= 0 || (size_t)(k1 - k0) >= sizeof kind) return dl__load_fail("bad layer kind");
    memcpy(kind, k0, (size_t)(k1 - k0)); kind[k1 - k0] = 0;
    k0 = dl__skip_spaces(k1); k1 = dl__skip_word(k0);
    if (k1 - k0 <= 0 || (size_t)(k1 - k0) >= sizeof name) return dl__load_fail("bad layer name");
    memcpy(name, k0, (size_t)(k1 - k0)); name[k1 - k0] = 0;
    for (c = name; *c; c++) if (*c == '/') { dl_set_error("dl_model_load: layer name '%s' has a '/'", name); return -1; }
    q = dl__read_ints(k1, 1, &tr, 0, 1);
    if (q) { q = dl__skip_spaces(q); q = *q == 'i' ? dl__read_ints(q + 1, DL_LAYER_MAX_CONF, ic, INT_MIN + 1, INT_MAX) : NULL; }
    if (q) { q = dl__skip_spaces(q); q = *q == 'f' ? q + 1 : NULL; }
    for (i = 0; q && i < DL_LAYER_MAX_CONF; i++) {
        double v = 0;
        q = dl__read_double(q, 3.4e38, &v);
        fc[i] = (float)v;
    }
    if (!q || !dl__at_eol(q)) { dl_set_error("dl_model_load: bad settings for layer %s", name); return -1; }
    if (ld->n_syms > ld->n_in) return dl__load_fail("a layer line after a node line");
    if (ld->n_layers >= DL__MAX_LOAD_LAYERS) return dl__load_fail("too many layers");
    slot = dl__itab_name(&ld->names, ld->layers, name);
    if (*slot) { dl_set_error("dl_model_load: two layers named %s", name); return -1; }
    dl_clear_error();
    if (!(l = dl__layer_from_conf(kind, ic, fc))) {
        char msg[512];
        dl__error_copy(msg, sizeof msg);
        dl_set_error("dl_model_load: layer %s: %s", name, msg);
        return -1;
    }
    snprintf(l->name, sizeof l->name, "%s", name);
    l->flags |= DL__LAYER_NAMED;
    l->trainable = tr;
    ld->layers[ld->n_layers++] = l;   /* room for every line was made */
    *slot = ld->n_layers;
    return 0;
}

/* "node LAYER N IN1 .. INN": layer LAYER applied to earlier symbols (inputs, then nodes) */
static int dl__load_node_line(dl__loader *ld, const char *q) {
    int li, n, idx[DL_LAYER_MAX_INPUTS], i, j, r;
    dl_sym *args[DL_LAYER_MAX_INPUTS];
    dl__shape in[DL_LAYER_MAX_INPUTS], out;
    if (ld->functional != 1 || !(q = dl__read_ints(q, 1, &li, 0, ld->n_layers - 1)) ||
        !(q = dl__read_ints(q, 1, &n, 1, DL_LAYER_MAX_INPUTS)) || !(q = dl__read_ints(q, n, idx, 0, ld->n_syms - 1)) ||
        !dl__at_eol(q) || ld->n_out)
        return dl__load_fail("bad node line");
    for (i = 0; i < n; i++) {
        args[i] = ld->syms[idx[i]];
        in[i].ndim = args[i]->ndim;
        for (j = 0; j < args[i]->ndim; j++) in[i].d[j] = args[i]->shape[j];
    }
    if ((r = dl__layer_bound(ld->layers[li], n, in, &out)) < 0) return -1;
    if (!(ld->syms[ld->n_syms] = dl_apply_n(ld->layers[li], n, args))) return -1;   /* its symbol stays marked as ours */
    ld->n_syms++;
    return 0;
}

/* "output NODE .." */
static int dl__load_output_line(dl__loader *ld, const char *q) {
    if (ld->functional != 1 || ld->n_out) return dl__load_fail("bad output line");
    while (!dl__at_eol(q)) {
        if (ld->n_out >= DL__MAX_IO) return dl__load_fail("too many outputs");
        if (!(q = dl__read_ints(q, 1, &ld->outs[ld->n_out], 0, ld->n_syms - 1))) return dl__load_fail("bad output line");
        ld->n_out++;
    }
    return 0;
}

/* Every line of dl.architecture through its parser. */
static int dl__load_arch(dl__loader *ld, const char *arch) {
    const char *p;
    long lines = 0;
    for (p = arch; *p; p++) lines += *p == '\n';
    if (lines > 3 * DL__MAX_LOAD_LAYERS) return dl__load_fail("architecture too long");
    ld->syms = (dl_sym **)DL_MALLOC((size_t)(lines + 1) * sizeof *ld->syms);
    ld->layers = (dl_layer **)DL_MALLOC((size_t)(lines + 1) * sizeof *ld->layers);
    if (!ld->syms || !ld->layers || dl__itab_init(&ld->names, (int)lines + 1) != 0) return dl__load_fail("out of memory");
    for (p = arch; *p;) {
        const char *eol = strchr(p, '\n'), *q = dl__skip_word(p);
        size_t wl = (size_t)(q - p);
        int r = 0;
        if (!eol) eol = p + strlen(p);
        if (wl == 5 && memcmp(p, "model", 5) == 0) r = dl__load_model_line(ld, q);
        else if (ld->functional < 0 && wl > 0) r = dl__load_fail("the architecture must start with a model line");
        else if (wl == 5 && memcmp(p, "input", 5) == 0) r = dl__load_input_line(ld, q);
        else if (wl == 5 && memcmp(p, "layer", 5) == 0) r = dl__load_layer_line(ld, q);
        else if (wl == 4 && memcmp(p, "node", 4) == 0) r = dl__load_node_line(ld, q);
        else if (wl == 6 && memcmp(p, "output", 6) == 0) r = dl__load_output_line(ld, q);
        else if (wl > 0) {
            dl_set_error("dl_model_load: unknown architecture line '%.*s'", (int)(wl < 16 ? wl : 16), p);
            r = -1;
        }
        if (r != 0) return -1;
        p = *eol ? eol + 1 : eol;
    }
    if (ld->functional < 0) return dl__load_fail("no model line");
    return 0;
}

/* The model the lines describe, built (every weight checked against the file before it is made). */
static dl_model *dl__load_build(dl__loader *ld) {
    dl_model *m;
    dl_sym *s;
    int i, r;
    if (!ld->functional) {
        dl__shape sh[2];
        if (ld->in_ndim < 0) { dl__load_fail("the sequential model has no input shape"); return NULL; }
        sh[0].ndim = ld->in_ndim;
        for (i = 0; i < ld->in_ndim; i++) sh[0].d[i] = ld->in_shape[i];
        for (i = 0; i < ld->n_layers; i++) {   /* sizes first: the build runs a batch of one */
            if ((r = dl__layer_bound(ld->layers[i], 1, &sh[i & 1], &sh[(i + 1) & 1])) < 0) return NULL;
            if (r > 0) break;   /* a registered kind: no bound known past it */
        }
        m = dl_sequential_n(ld->n_layers, ld->layers);
        ld->model_has_layers = 1;   /* taken, or freed on failure */
        if (m && dl__model_build(m, ld->in_dtype, ld->in_ndim, ld->in_shape) != 0) { dl_model_free(m); m = NULL; }
        return m;
    }
    if (ld->n_in < 1 || ld->n_out < 1) { dl__load_fail("a functional model needs inputs and outputs"); return NULL; }
    {
        dl_sym *outputs[DL__MAX_IO];
        for (i = 0; i < ld->n_out; i++) outputs[i] = ld->syms[ld->outs[i]];
        if (!(m = dl_model_new(ld->n_in, ld->syms, ld->n_out, outputs))) return NULL;
    }
    ld->n_syms = 0;   /* freed by dl_model_new, or left in the unused list */
    for (s = dl__free_syms; s; s = s->next)
        if (s->loading) {
            dl_set_error("dl_model_load: a node line of layer %s leads to no output", s->layer ? s->layer->name : "?");
            break;
        }
    for (i = 0; i < m->n_layers; i++) m->layers[i]->flags |= DL__LAYER_MARK;
    for (i = 0; i < ld->n_layers && !s; i++)
        if (!(ld->layers[i]->flags & DL__LAYER_MARK)) { dl_set_error("dl_model_load: layer %s is never applied", ld->layers[i]->name); break; }
    for (i = 0; i < m->n_layers; i++) m->layers[i]->flags &= ~DL__LAYER_MARK;
    if (s || i < ld->n_layers) {   /* give back: free the layers the model did not take, then the model */
        for (i = 0; i < ld->n_layers; i++) if (ld->layers[i]->refs <= 0) dl_layer_free(ld->layers[i]);
        ld->model_has_layers = 1;
        dl_model_free(m);
        return NULL;
    }
    ld->model_has_layers = 1;
    return m;
}

/* "name s0 s1 s2 s3" per line, hexadecimal: each layer's generator */
static int dl__load_rng(dl__loader *ld, const char *p) {
    while (*p) {
        char name[48];
        const char *e = dl__skip_word(p);
        uint64_t r[4];
        int i, *slot;
        if (e - p <= 0 || (size_t)(e - p) >= sizeof name) return dl__load_fail("bad dl.rng");
        memcpy(name, p, (size_t)(e - p));
        name[e - p] = 0;
        for (i = 0; i < 4; i++) {   /* 1..16 hex digits each */
            const char *d = dl__skip_spaces(e);
            uint64_t v = 0;
            for (e = d; e - d < 17 && ((*e >= '0' && *e <= '9') || (*e >= 'a' && *e <= 'f') || (*e >= 'A' && *e <= 'F')); e++)
                v = v << 4 | (uint64_t)(*e <= '9' ? *e - '0' : (*e | 0x20) - 'a' + 10);
            if (e == d || e - d > 16) return dl__load_fail("bad dl.rng");
            r[i] = v;
        }
        if (!dl__at_eol(e)) return dl__load_fail("bad dl.rng");
        slot = dl__itab_name(&ld->names, ld->layers, name);
        if (*slot) for (i = 0; i < 4; i++) ld->layers[*slot - 1]->rng.s[i] = r[i];
        p = e;
        while (*p == '\n' || *p == ' ') p++;
    }
    return 0;
}

/* An "optimizer/KEY" number: *v = it (dflt when absent); -1 when present but not a finite
   number in [lo, hi]. */
static int dl__meta_num(const dl_safetensors *st, const char *key, double dflt, double lo, double hi, double *v) {
    char k[64];
    const char *s, *e;
    snprintf(k, sizeof k, "optimizer/%s", key);
    *v = dflt;
    if (!(s = dl_safetensors_meta(st, k))) return 0;
    if (!(e = dl__read_double(s, DBL_MAX, v)) || *e || *v < lo || *v > hi) {
        dl_set_error("dl_model_load: optimizer %s is '%s' (a finite number in [%g, %g] needed)", key, s, lo, hi);
        return -1;
    }
    return 0;
}

/* Makes the optimizer the "optimizer/..." metadata describes. */
static dl_optim *dl__optim_from_meta(const dl_safetensors *st) {
    static const char *const names[] = {"lr", "eps", "momentum", "beta1", "beta2", "weight_decay", "nesterov", "alpha",
                                        "centered", "initial_accumulator", "max_norm", "clip_value"};
    static const double dflt[] = {1e-3, 1e-8, 0, 0.9, 0.999, 0, 0, 0.99, 0, 0, 0, 0};
    static const double hi[] = {DBL_MAX, DBL_MAX, DBL_MAX, 1, 1, DBL_MAX, 1, 1, 1, DBL_MAX, DBL_MAX, DBL_MAX};
    const char *kind = dl_safetensors_meta(st, "optimizer/kind");
    double v[12];
    dl_optim *o = NULL;
    dl_optim_opts h;
    size_t i;
    if (!kind) { dl_set_error("dl_model_load: the file's optimizer has no kind"); return NULL; }
    for (i = 0; i < sizeof names / sizeof names[0]; i++)
        if (dl__meta_num(st, names[i], dflt[i], 0, hi[i], &v[i]) != 0) return NULL;
    if ((v[6] != 0 && v[6] != 1) || (v[8] != 0 && v[8] != 1)) { dl_set_error("dl_model_load: optimizer nesterov or centered not 0 or 1"); return NULL; }
    /* The file's exact values: a stored 0 where the default is not 0 is DL_ZERO, not "default". */
#define DL__EXACT(x) ((x) != 0 ? (x) : DL_ZERO)
    memset(&h, 0, sizeof h);
    h.lr = DL__EXACT(v[0]);
    if (strcmp(kind, "sgd") == 0) {
        h.momentum = v[2], h.weight_decay = v[5], h.nesterov = (int)v[6];
        o = dl_optim_new(DL_OPTIM_SGD, &h);
    } else if (strcmp(kind, "rmsprop") == 0) {
        h.alpha = DL__EXACT(v[7]), h.eps = DL__EXACT(v[1]), h.momentum = v[2], h.centered = (int)v[8];
        o = dl_optim_new(DL_OPTIM_RMSPROP, &h);
    } else if (strcmp(kind, "adagrad") == 0) {
        h.initial_accumulator = v[9], h.eps = DL__EXACT(v[1]);
        o = dl_optim_new(DL_OPTIM_ADAGRAD, &h);
    } else if (strcmp(kind, "adam") == 0 || strcmp(kind, "adamw") == 0) {
        int w = strcmp(kind, "adamw") == 0;
        h.beta1 = DL__EXACT(v[3]), h.beta2 = DL__EXACT(v[4]), h.eps = DL__EXACT(v[1]);
        if (w) h.weight_decay = DL__EXACT(v[5]);
        o = dl_optim_new(w ? DL_OPTIM_ADAMW : DL_OPTIM_ADAM, &h);
    } else { dl_set_error("dl_model_load: unknown optimizer kind '%s'", kind); return NULL; }
#undef DL__EXACT
    if (o && dl_optim_set_clip(o, v[10], v[11]) != 0) {
        dl_optim_free(o);
        return NULL;
    }
    return o;
}

/* Puts the optimizer state embedded in st back into m's (bound) optimizer. */
static int dl__load_optim_state(dl_model *m, const dl_safetensors *st) {
    int n = dl_safetensors_num_tensors(st), nm = dl_safetensors_num_meta(st), nt = 0, nk = 0, i, r = -1;
    const char **names, **keys, **values;
    dl_tensor **ts;
    size_t size;
    void *blob;
    names = (const char **)DL_MALLOC((size_t)(n + 2 * nm + 1) * sizeof(char *) + (size_t)(n + 1) * sizeof(dl_tensor *));
    if (!names) { dl_set_error("dl_model_load: out of memory"); return -1; }
    keys = names + n;
    values = keys + nm;
    ts = (dl_tensor **)(values + nm + 1);
    for (i = 0; i < n; i++) {
        const char *s = dl_safetensors_name(st, i);
        if (strncmp(s, "optimizer/", 10) == 0) { names[nt] = s + 10; ts[nt++] = dl_safetensors_get(st, s); }
    }
    for (i = 0; i < nm; i++) {
        const char *s = dl_safetensors_meta_key(st, i);
        if (strncmp(s, "optimizer/", 10) == 0) { keys[nk] = s + 10; values[nk++] = dl_safetensors_meta(st, s); }
    }
    size = dl_safetensors_serialize(nt, names, ts, nk, keys, values, NULL, 0);
    if (size && (blob = DL_MALLOC(size)) != NULL) {
        dl_safetensors_serialize(nt, names, ts, nk, keys, values, blob, size);
        r = dl_optim_parse(m->opt, blob, size);
        DL_FREE(blob);
    } else if (size) dl_set_error("dl_model_load: out of memory");
    DL_FREE(names);
    return r;
}

/* "loss L metrics M top_k K compiled C state S", then the optimizer and its state. */
static int dl__load_compile(dl_model *m, const dl_safetensors *st, const char *comp) {
    static const char *const words[5] = {"loss", "metrics", "top_k", "compiled", "state"};
    static const long hi[5] = {DL_LOSS_HUBER, (1L << DL_MAX_METRICS) - 1, INT_MAX, 1, 1};
    long v[5];
    const char *q = comp;
    int i;
    dl_optim *o;
    for (i = 0; i < 5 && q; i++) {
        size_t n = strlen(words[i]);
        q = dl__skip_spaces(q);
        q = strncmp(q, words[i], n) == 0 && q[n] == ' ' ? dl__read_long(q + n, 0, hi[i], &v[i]) : NULL;
    }
    if (!q || !dl__at_eol(q)) { dl_set_error("dl_model_load: bad dl.compile '%.60s'", comp); return -1; }
    if (!v[3]) return 0;
    if (!(o = dl__optim_from_meta(st)) || dl_compile(m, o, (dl_loss)v[0], (unsigned)v[1]) != 0) return -1;
    dl_model_set_top_k(m, (int)v[2]);
    return dl__bind_optimizer(m) != 0 || (v[4] && dl__load_optim_state(m, st) != 0) ? -1 : 0;
}

/* Frees what a failed load made: its symbols (wherever they are) and the layers no model holds. */
static void dl__loader_free(dl__loader *ld, int failed) {
    int i;
    if (failed) {
        dl_sym *s, *next;
        for (s = dl__free_syms; s; s = next) {
            next = s->next;
            if (s->loading) { dl__sym_unlink(s); DL_FREE(s); }
        }
        if (!ld->model_has_layers)
            for (i = 0; i < ld->n_layers; i++) dl_layer_free(ld->layers[i]);
    }
    dl__itab_free(&ld->names);
    DL_FREE(ld->layers);
    DL_FREE(ld->syms);
}

static dl_model *dl__model_from(const dl_safetensors *st) {
    const char *fmt = dl_safetensors_meta(st, "dl.format"), *arch = dl_safetensors_meta(st, "dl.architecture");
    const char *rng = dl_safetensors_meta(st, "dl.rng"), *comp = dl_safetensors_meta(st, "dl.compile");
    dl__loader ld;
    dl_model *m = NULL;
    int ok;
    if (!fmt || strcmp(fmt, DL__MODEL_FORMAT) != 0) {
        dl_set_error("dl_model_load: not a dl model file (dl.format is %s)", fmt ? fmt : "missing");
        return NULL;
    }
    if (!arch) { dl_set_error("dl_model_load: no dl.architecture (a weights-only file? use dl_model_load_weights)"); return NULL; }
    memset(&ld, 0, sizeof ld);
    ld.st = st;
    ld.functional = -1;
    ld.in_ndim = -1;
    dl__loading = st;
    ok = dl__load_arch(&ld, arch) == 0 && (m = dl__load_build(&ld)) != NULL &&
         dl__load_weights_from(m, st, "dl_model_load") == 0 && (!rng || dl__load_rng(&ld, rng) == 0) &&
         (!comp || dl__load_compile(m, st, comp) == 0);
    dl__loading = NULL;
    if (!ok) {
        char msg[512];
        dl__error_copy(msg, sizeof msg);
        dl_model_free(m);
        m = NULL;
        dl__loader_free(&ld, 1);
        dl_set_error("%s", msg);
    } else dl__loader_free(&ld, 0);
    return m;
}

DLDEF dl_model *dl_model_parse(const void *bytes, size_t size) {
    dl_safetensors *st = dl_safetensors_parse(bytes, size);
    dl_model *m;
    if (!st) return NULL;
    m = dl__model_from(st);
    dl_safetensors_free(st);
    return m;
}

#ifndef DL_NO_STDIO
/* dl_safetensors_load's message for the user of fn: "fn: 'path': reason" (without the reader's name). */
static void dl__load_error(const char *fn, const char *path) {
    char msg[512];
    const char *r;
    dl__error_copy(msg, sizeof msg);
    r = strncmp(msg, "dl_safetensors_load: ", 21) == 0 ? msg + 21 : msg;
    if (strncmp(r, "'", 1) == 0 && strncmp(r + 1, path, strlen(path)) == 0 && strncmp(r + 1 + strlen(path), "': ", 3) == 0)
        r += strlen(path) + 4;
    dl_set_error("%s: '%s': %s", fn, path, r);
}

DLDEF dl_model *dl_model_load(const char *path) {
    dl_safetensors *st;
    dl_model *m;
    FILE *f;
    if (!path) { dl_set_error("dl_model_load: NULL path"); return NULL; }
    if (!(f = fopen(path, "rb"))) { dl_set_error("dl_model_load: cannot open '%s': %s", path, strerror(errno)); return NULL; }
    fclose(f);
    if (!(st = dl_safetensors_load(path))) { dl__load_error("dl_model_load", path); return NULL; }
    m = dl__model_from(st);
    if (!m) {
        char msg[512];
        dl__error_copy(msg, sizeof msg);
        dl_set_error("%s: %s", path, msg);
    }
    dl_safetensors_free(st);
    return m;
}

DLDEF int dl_model_load_weights(dl_model *m, const char *path) {
    dl_safetensors *st;
    int r;
    if (!m || !path) { dl_set_error("dl_model_load_weights: NULL argument"); return -1; }
    if (!(st = dl_safetensors_load(path))) { dl__load_error("dl_model_load_weights", path); return -1; }
    r = dl__load_weights_from(m, st, path);
    dl_safetensors_free(st);
    return r;
}
#endif

/* ==== ESTIMATORS: implementation (tests: tests/test_nn_estimator.c) ===========================
   An estimator is a compiled Sequential model that outputs logits (or values), a serving model
   holding the same layers plus the probabilities, and the settings train/evaluate need. Every
   number it reports is computed here from dl_predict's outputs, in double precision. */

enum { DL__EST_DNN_CLASSIFIER = 1, DL__EST_LINEAR_CLASSIFIER, DL__EST_LINEAR_REGRESSOR };

struct dl_estimator {
    int kind;
    int n_features;       /* F */
    int n_classes;        /* classifiers: >= 2; regressors: 0 */
    int batch_size, shuffle, log_every;
    uint64_t seed;
    dl_model *model;      /* Flatten, ..., Dense "logits": owned, compiled */
    dl_model *serving;    /* the same layers (shared) + probabilities: owned, not compiled */
    char *checkpoint;     /* owned copy, or NULL */
};

/* evaluate fills at most 7 names (binary: loss, average_loss, accuracy, precision, recall, auc,
   global_step): dl_logs must have room for them. */
typedef char dl__est_logs_room[(1 + DL_MAX_METRICS >= 7) ? 1 : -1];

static const char *dl__est_fn(int kind) {
    return kind == DL__EST_DNN_CLASSIFIER ? "dl_dnn_classifier" : kind == DL__EST_LINEAR_CLASSIFIER ? "dl_linear_classifier"
                                                                                                  : "dl_linear_regressor";
}

/* Appends a new layer to m, naming it `name` when not NULL. On failure frees the layer. */
static int dl__est_add(dl_model *m, dl_layer *l, const char *name) {
    if (!l) return -1;
    if (name) snprintf(l->name, sizeof l->name, "%s", name);
    if (dl_sequential_add(m, l) != 0) { dl_layer_free(l); return -1; }
    return 0;
}

/* The training model, built for input [F] (weights made; zeros for linear models). */
static dl_model *dl__est_model(int kind, int F, int K, const dl_estimator_opts *o, dl_act act) {
    dl_model *m = dl_sequential_n(0, NULL);
    int i;
    if (!m) return NULL;
    if (dl__est_add(m, dl_Flatten(), NULL) != 0) goto fail;
    if (kind == DL__EST_DNN_CLASSIFIER)
        for (i = 0; i < o->n_hidden; i++) {
            char name[32];
            snprintf(name, sizeof name, "hiddenlayer_%d", i);
            if (dl__est_add(m, dl_Dense(o->hidden_units[i], act), name) != 0) goto fail;
            if (o->dropout > 0.0f && dl__est_add(m, dl_Dropout(o->dropout), NULL) != 0) goto fail;
        }
    if (dl__est_add(m, dl_Dense(K, DL_ACT_LINEAR), "logits") != 0) goto fail;
    if (dl_model_build(m, 1, &F) != 0) goto fail;
    if (kind != DL__EST_DNN_CLASSIFIER) {   /* TF's linear model starts at zero */
        dl_tensor *w[8];
        int n = dl_model_weights(m, 0, w, 8);
        for (i = 0; i < n && i < 8; i++) dl_fill(w[i], 0.0f);
    }
    return m;
fail:
    dl_model_free(m);
    return NULL;
}

/* The serving model: e->model's layers and, for classifiers, the probabilities. */
static dl_model *dl__est_serving(const dl_estimator *e) {
    dl_model *s = dl_sequential_n(0, NULL);
    int i, n = dl_model_num_layers(e->model);
    if (!s) return NULL;
    for (i = 0; i < n; i++)
        if (dl_sequential_add(s, dl_model_layer(e->model, i)) != 0) goto fail;
    if (e->n_classes == 2) {   /* z -> [0, z] -> softmax = [1 - sigmoid(z), sigmoid(z)] */
        dl_layer *p = dl_Dense(2, DL_ACT_SOFTMAX);
        if (dl__est_add(s, p, "probabilities") != 0) goto fail;
        if (dl_model_build(s, 1, &e->n_features) != 0) goto fail;
        dl_f32(dl_layer_weight(p, "kernel"))[0] = 0.0f;
        dl_f32(dl_layer_weight(p, "kernel"))[1] = 1.0f;
        dl_fill(dl_layer_weight(p, "bias"), 0.0f);
        p->trainable = 0;
    } else {
        if (e->n_classes > 2 && dl__est_add(s, dl_Activation(DL_ACT_SOFTMAX), "probabilities") != 0) goto fail;
        if (dl_model_build(s, 1, &e->n_features) != 0) goto fail;
    }
    return s;
fail:
    dl_model_free(s);
    return NULL;
}

#ifndef DL_NO_STDIO
/* Whether a loaded checkpoint has exactly the layers (kinds, names, settings, weight shapes) of
   the freshly built model, and the same loss. */
static int dl__est_same_model(const dl_model *a, const dl_model *b) {
    int i, j, k, n = dl_model_num_layers(a);
    if (n != dl_model_num_layers(b) || !dl_model_optimizer(b) || a->loss != b->loss) return 0;
    for (i = 0; i < n; i++) {
        const dl_layer *x = dl_model_layer(a, i), *y = dl_model_layer(b, i);
        if (strcmp(x->ops->kind, y->ops->kind) != 0 || strcmp(x->name, y->name) != 0 || x->n_params != y->n_params ||
            memcmp(x->iconf, y->iconf, sizeof x->iconf) != 0 || memcmp(x->fconf, y->fconf, sizeof x->fconf) != 0)
            return 0;
        for (j = 0; j < x->n_params; j++) {
            if (x->params[j]->ndim != y->params[j]->ndim || strcmp(x->param_names[j], y->param_names[j]) != 0) return 0;
            for (k = 0; k < x->params[j]->ndim; k++)
                if (x->params[j]->shape[k] != y->params[j]->shape[k]) return 0;
        }
    }
    return 1;
}
#endif

/* Re-sets dl_error() as "fn: <message>" unless it already starts with fn. */
static void dl__est_wrap(const char *fn) {
    char msg[512];
    size_t k = strlen(fn);
    if (strncmp(dl_error(), fn, k) == 0) return;
    snprintf(msg, sizeof msg, "%s", dl_error());
    dl_set_error("%s: %s", fn, msg[0] ? msg : "failed");
}

static dl_estimator *dl__est_new(int kind, int F, const dl_estimator_opts *opts) {
    const char *fn = dl__est_fn(kind);
    dl_estimator_opts o;
    dl_optim *opt;
    dl_estimator *e = NULL;
    dl_act act;
    int K, i, classifier = kind != DL__EST_LINEAR_REGRESSOR;
    if (opts) o = *opts; else memset(&o, 0, sizeof o);
    opt = o.optimizer;   /* ours from here on: freed on every failure */
    act = o.activation == DL_ACT_LINEAR ? DL_ACT_RELU : o.activation;
    if (F <= 0) { dl_set_error("%s: n_features %d must be > 0", fn, F); goto fail; }
    if (classifier && o.n_classes == 0) o.n_classes = 2;
    if (classifier && o.n_classes < 2) { dl_set_error("%s: n_classes %d must be >= 2", fn, o.n_classes); goto fail; }
    if (o.batch_size < 0 || o.log_every < 0) { dl_set_error("%s: batch_size and log_every must be >= 0", fn); goto fail; }
    if (!(o.learning_rate >= 0.0f) || isinf(o.learning_rate)) { dl_set_error("%s: learning_rate %g must be >= 0", fn, (double)o.learning_rate); goto fail; }
    if (kind == DL__EST_DNN_CLASSIFIER) {
        if (o.n_hidden < 1 || !o.hidden_units) { dl_set_error("%s: hidden_units and n_hidden >= 1 needed", fn); goto fail; }
        for (i = 0; i < o.n_hidden; i++)
            if (o.hidden_units[i] <= 0) { dl_set_error("%s: hidden_units[%d] = %d must be > 0", fn, i, o.hidden_units[i]); goto fail; }
        if (!(o.dropout >= 0.0f && o.dropout < 1.0f)) { dl_set_error("%s: dropout %g must be in [0, 1)", fn, (double)o.dropout); goto fail; }
        if ((unsigned)act > (unsigned)DL_ACT_SOFTPLUS) { dl_set_error("%s: unknown activation %d", fn, (int)act); goto fail; }
    }
#ifdef DL_NO_STDIO
    if (o.checkpoint) { dl_set_error("%s: checkpoints need stdio (built with DL_NO_STDIO)", fn); goto fail; }
#endif
    if (!opt) {
        double lr = o.learning_rate > 0.0f ? (double)o.learning_rate : 0.05;
        dl_optim_opts ao;
        memset(&ao, 0, sizeof ao);
        ao.initial_accumulator = 0.1;
        if (kind == DL__EST_DNN_CLASSIFIER) ao.eps = 1e-7;
        else {   /* Ftrl(min(0.2, 1/sqrt(F))) without l1/l2 = Adagrad from zero weights */
            if (!(o.learning_rate > 0.0f)) lr = 1.0 / sqrt((double)F) < 0.2 ? 1.0 / sqrt((double)F) : 0.2;
            ao.eps = DL_ZERO;
        }
        ao.lr = lr;
        opt = dl_optim_new(DL_OPTIM_ADAGRAD, &ao);
        if (!opt) goto fail;
    }
    if (!(e = (dl_estimator *)DL_MALLOC(sizeof *e))) { dl_set_error("%s: out of memory", fn); goto fail; }
    memset(e, 0, sizeof *e);
    e->kind = kind;
    e->n_features = F;
    e->n_classes = classifier ? o.n_classes : 0;
    e->batch_size = o.batch_size > 0 ? o.batch_size : 32;
    e->shuffle = !o.no_shuffle;
    e->log_every = o.log_every;
    e->seed = o.seed;
    if (o.checkpoint) {
        size_t n = strlen(o.checkpoint) + 1;
        if (!(e->checkpoint = (char *)DL_MALLOC(n))) { dl_set_error("%s: out of memory", fn); goto fail; }
        memcpy(e->checkpoint, o.checkpoint, n);
    }
    K = e->n_classes > 2 ? e->n_classes : 1;
    dl_nn_seed(o.seed);
    if (!(e->model = dl__est_model(kind, F, K, &o, act))) goto fail;
    i = dl_compile(e->model, opt, classifier ? (K == 1 ? DL_LOSS_BINARY_CE : DL_LOSS_SPARSE_CATEGORICAL_CE) : DL_LOSS_MSE,
                   classifier ? DL_METRIC_ACCURACY : 0);
    opt = NULL;   /* the model has it (or dl_compile freed it) */
    if (i != 0) goto fail;
#ifndef DL_NO_STDIO
    if (e->checkpoint) {
        FILE *f = fopen(e->checkpoint, "rb");
        if (f) {   /* resume: the file's model replaces the fresh one, which must look the same */
            dl_model *m;
            fclose(f);
            if (!(m = dl_model_load(e->checkpoint))) { dl__est_wrap(fn); goto fail; }
            if (!dl__est_same_model(e->model, m)) {
                dl_model_free(m);
                dl_set_error("%s: checkpoint %s holds a different model than this estimator builds", fn, e->checkpoint);
                goto fail;
            }
            dl_model_free(e->model);
            e->model = m;
        }
    }
#endif
    if (!(e->serving = dl__est_serving(e))) goto fail;
    return e;
fail:
    dl__est_wrap(fn);
    dl_optim_free(opt);
    dl_estimator_free(e);
    return NULL;
}

DLDEF dl_estimator *dl_dnn_classifier(int n_features, const dl_estimator_opts *opts) {
    if (!opts) { dl_set_error("dl_dnn_classifier: opts with hidden_units needed"); return NULL; }
    return dl__est_new(DL__EST_DNN_CLASSIFIER, n_features, opts);
}
DLDEF dl_estimator *dl_linear_classifier(int n_features, const dl_estimator_opts *opts) {
    return dl__est_new(DL__EST_LINEAR_CLASSIFIER, n_features, opts);
}
DLDEF dl_estimator *dl_linear_regressor(int n_features, const dl_estimator_opts *opts) {
    return dl__est_new(DL__EST_LINEAR_REGRESSOR, n_features, opts);
}

DLDEF void dl_estimator_free(dl_estimator *e) {
    if (!e) return;
    dl_model_free(e->serving);   /* drops its references to the shared layers first */
    dl_model_free(e->model);
    DL_FREE(e->checkpoint);
    DL_FREE(e);
}

DLDEF dl_model *dl_estimator_model(const dl_estimator *e) { return e ? e->model : NULL; }
DLDEF dl_model *dl_estimator_serving_model(const dl_estimator *e) { return e ? e->serving : NULL; }
DLDEF long dl_estimator_global_step(const dl_estimator *e) { return e ? dl_optim_steps(dl_model_optimizer(e->model)) : -1; }

/* ---- Checking inputs ---- */

static int dl__est_check_x(const char *fn, const dl_estimator *e, const dl_tensor *x) {
    char s[64];
    if (!e || !x) { dl_set_error("%s: NULL argument", fn); return -1; }
    if (x->dtype != DL_DTYPE_F32 || x->device != DL_DEVICE_CPU || x->ndim < 2 || x->shape[0] < 1 ||
        x->numel / (size_t)x->shape[0] != (size_t)e->n_features) {
        dl_set_error("%s: x is %s; need f32 [N >= 1, %d] (or [N, ...] of %d values per sample)", fn,
                     dl_shape_str(x, s, sizeof s), e->n_features, e->n_features);
        return -1;
    }
    return 0;
}

/* x as above, and labels: i32 in [0, n_classes) for classifiers, f32 or i32 for regressors. */
static int dl__est_check_data(const char *fn, const dl_estimator *e, const dl_dataset *ds) {
    const dl_tensor *y;
    int i;
    if (!e || !ds) { dl_set_error("%s: NULL argument", fn); return -1; }
    if (dl__est_check_x(fn, e, ds->x) != 0) return -1;
    if (ds->n != ds->x->shape[0]) { dl_set_error("%s: the data set says n = %d, x has %d samples", fn, ds->n, ds->x->shape[0]); return -1; }
    if (!(y = ds->y)) { dl_set_error("%s: the data set has no labels", fn); return -1; }
    if (y->device != DL_DEVICE_CPU || y->numel != (size_t)ds->n || !dl_is_contiguous(y) || (y->dtype != DL_DTYPE_I32 && y->dtype != DL_DTYPE_F32)) {
        dl_set_error("%s: labels must be i32 or f32 [%d]", fn, ds->n);
        return -1;
    }
    if (!e->n_classes) return 0;
    if (y->dtype != DL_DTYPE_I32) { dl_set_error("%s: a classifier needs i32 class labels", fn); return -1; }
    for (i = 0; i < ds->n; i++) {
        int32_t v = ((const int32_t *)y->data)[i];
        if (v < 0 || v >= e->n_classes) {
            dl_set_error("%s: label %d of sample %d is not in [0, %d)", fn, (int)v, i, e->n_classes);
            return -1;
        }
    }
    return 0;
}

/* ---- Training ---- */

DLDEF int dl_estimator_train(dl_estimator *e, const dl_dataset *ds, long steps) {
    const char *fn = "dl_estimator_train";
    dl_arena *arena = dl_arena_current();
    dl_batcher *b;
    dl_batch_opts bo;
    dl_tensor *x, *y;
    long gs, len, skip, s = 0;
    int r = 0, empty = 0, ok = 0;
    if (dl__est_check_data(fn, e, ds) != 0) return -1;
    if (steps < 0) { dl_set_error("%s: steps %ld must be >= 0", fn, steps); return -1; }
    memset(&bo, 0, sizeof bo);
    bo.shuffle = e->shuffle;
    bo.seed = e->seed;
    if (!(b = dl_batcher_new(ds, e->batch_size, &bo))) { dl__est_wrap(fn); return -1; }
    len = dl_batcher_num_batches(b);
    if (len < 1) { dl_batcher_free(b); dl_set_error("%s: no batches", fn); return -1; }
    if (steps == 0) steps = len;
    gs = dl_estimator_global_step(e);
    /* Continue where global_step says the data is: that epoch's order, minus the batches done. */
    dl_batcher_set_epoch(b, gs / len < INT_MAX ? (int)(gs / len) : INT_MAX);
    for (skip = gs % len; skip > 0; skip--) {
        dl_arena_reset(arena);
        if ((r = dl_batcher_next(b, &x, &y)) != 1) break;
    }
    while (r >= 0 && s < steps) {
        double loss;
        dl_arena_reset(arena);
        r = dl_batcher_next(b, &x, &y);
        if (r < 0) break;
        if (r == 0) {   /* the epoch is over; the next call starts the next one */
            if (++empty > 1) { r = -1; dl_set_error("%s: the batcher gives no batches", fn); break; }
            continue;
        }
        empty = 0;
        dl_clear_error();
        loss = dl_train_on_batch(e->model, x, y);
        if (loss != loss) {   /* a failure sets a message; a NaN loss itself does not */
            if (!dl_error()[0]) dl_set_error("%s: NaN loss at global_step %ld", fn, gs + s + 1);
            r = -1;
            break;
        }
        s++;
#ifndef DL_NO_STDIO
        if (e->log_every > 0 && (gs + s) % e->log_every == 0) {
            dl_log_write(DL_LOG_INFO, "global_step %ld: loss = %.6f\n", gs + s, loss);
        }
#endif
    }
    ok = r >= 0 && s == steps;
    dl_batcher_free(b);
    dl_arena_reset(arena);
#ifndef DL_NO_STDIO
    if (ok && e->checkpoint && dl_model_save(e->model, e->checkpoint, 1) != 0) ok = 0;
#endif
    if (!ok) { dl__est_wrap(fn); return -1; }
    return 0;
}

/* ---- Evaluation ---- */

typedef struct dl__est_scored { float s; int y; } dl__est_scored;

static int dl__est_cmp(const void *pa, const void *pb) {   /* ascending; NaN first, so the order is total */
    float a = ((const dl__est_scored *)pa)->s, b = ((const dl__est_scored *)pb)->s;
    if (a != a || b != b) return (b != b) - (a != a);
    return (a > b) - (a < b);
}

/* Area under the ROC curve from scores and 0/1 labels: the Mann-Whitney statistic with tied
   scores given their mean rank. NaN when one class is absent. */
static double dl__est_auc(dl__est_scored *v, int n) {
    double pos = 0, rank_sum = 0;
    int i = 0, j, k;
    qsort(v, (size_t)n, sizeof *v, dl__est_cmp);
    while (i < n) {
        int p = 0;
        for (j = i; j < n && dl__est_cmp(&v[j], &v[i]) == 0; j++) p += v[j].y;
        rank_sum += p * (0.5 * (double)(i + 1 + j));   /* ranks i+1 .. j, averaged */
        pos += p;
        i = j;
    }
    k = n - (int)pos;
    if (pos == 0 || k == 0) return NAN;
    return (rank_sum - pos * (pos + 1) / 2) / (pos * (double)k);
}

DLDEF int dl_estimator_evaluate(dl_estimator *e, const dl_dataset *ds, dl_logs *out) {
    const char *fn = "dl_estimator_evaluate";
    dl_tensor *z;
    const float *zs;
    double loss = 0, correct = 0, tp = 0, fp = 0, fn_ = 0, ysum = 0, zsum = 0, auc = 0;
    dl__est_scored *sc = NULL;
    int i, k, n, K;
    if (!out) { dl_set_error("%s: NULL argument", fn); return -1; }
    memset(out, 0, sizeof *out);
    if (dl__est_check_data(fn, e, ds) != 0) return -1;
    n = ds->n;
    if (!(z = dl_predict(e->model, ds->x, e->batch_size))) { dl__est_wrap(fn); return -1; }
    zs = dl_f32(z);
    K = (int)(z->numel / (size_t)n);
    if (e->n_classes == 2 && !(sc = (dl__est_scored *)DL_MALLOC((size_t)n * sizeof *sc))) {
        dl_tensor_free(z);
        dl_set_error("%s: out of memory", fn);
        return -1;
    }
    for (i = 0; i < n; i++) {
        const float *row = zs + (size_t)i * (size_t)K;
        if (e->n_classes == 0) {   /* squared error */
            double t = ds->y->dtype == DL_DTYPE_F32 ? (double)dl_f32(ds->y)[i] : (double)dl_i32(ds->y)[i], d = row[0] - t;
            loss += d * d;
            ysum += t;
            zsum += row[0];
        } else if (e->n_classes == 2) {   /* sigmoid cross-entropy: softplus(z) - y z */
            double v = row[0];
            int label = dl_i32(ds->y)[i], pred = v > 0;
            loss += (v > 0 ? v : 0) - v * label + log1p(exp(-fabs(v)));
            correct += pred == label;
            tp += pred && label;
            fp += pred && !label;
            fn_ += !pred && label;
            sc[i].s = row[0];
            sc[i].y = label;
        } else {   /* softmax cross-entropy: logsumexp(z) - z[label] */
            int label = dl_i32(ds->y)[i], pred = 0;
            double sum = 0;
            for (k = 1; k < K; k++) if (row[k] > row[pred]) pred = k;
            for (k = 0; k < K; k++) sum += exp((double)row[k] - row[pred]);
            loss += row[pred] + log(sum) - row[label];
            correct += pred == label;
        }
    }
    if (sc) auc = dl__est_auc(sc, n);
    DL_FREE(sc);
    dl_tensor_free(z);
    k = 0;
    out->names[k] = "loss"; out->values[k++] = loss / n;
    out->names[k] = "average_loss"; out->values[k++] = loss / n;
    if (e->n_classes) { out->names[k] = "accuracy"; out->values[k++] = correct / n; }
    if (e->n_classes == 2) {
        out->names[k] = "precision"; out->values[k++] = tp + fp > 0 ? tp / (tp + fp) : 0.0;
        out->names[k] = "recall"; out->values[k++] = tp + fn_ > 0 ? tp / (tp + fn_) : 0.0;
        out->names[k] = "auc"; out->values[k++] = auc;
    }
    if (!e->n_classes) {
        out->names[k] = "label/mean"; out->values[k++] = ysum / n;
        out->names[k] = "prediction/mean"; out->values[k++] = zsum / n;
    }
    out->names[k] = "global_step"; out->values[k++] = (double)dl_estimator_global_step(e);
    out->n = k;
    out->batches = (n + e->batch_size - 1) / e->batch_size;
    out->lr = dl_optim_lr(dl_model_optimizer(e->model));
    return 0;
}

/* ---- Prediction and export ---- */

DLDEF dl_tensor *dl_estimator_predict(dl_estimator *e, const dl_tensor *x) {
    dl_tensor *p;
    if (dl__est_check_x("dl_estimator_predict", e, x) != 0) return NULL;
    if (!(p = dl_predict(e->serving, x, e->batch_size))) dl__est_wrap("dl_estimator_predict");
    return p;
}

DLDEF dl_tensor *dl_estimator_predict_classes(dl_estimator *e, const dl_tensor *x) {
    const char *fn = "dl_estimator_predict_classes";
    dl_tensor *z, *c;
    int i, k, n, K;
    if (dl__est_check_x(fn, e, x) != 0) return NULL;
    if (!e->n_classes) { dl_set_error("%s: a regressor has no classes", fn); return NULL; }
    if (!(z = dl_predict(e->model, x, e->batch_size))) { dl__est_wrap(fn); return NULL; }
    n = x->shape[0];
    K = (int)(z->numel / (size_t)n);
    if ((c = dl_tensor_new(DL_DTYPE_I32, 1, &n)) != NULL)
        for (i = 0; i < n; i++) {
            const float *row = dl_f32(z) + (size_t)i * (size_t)K;
            int pred = 0;
            if (K == 1) pred = row[0] > 0;
            else for (k = 1; k < K; k++) if (row[k] > row[pred]) pred = k;
            dl_i32(c)[i] = pred;
        }
    else dl__est_wrap(fn);
    dl_tensor_free(z);
    return c;
}

#ifndef DL_NO_STDIO
DLDEF int dl_estimator_export(dl_estimator *e, const char *path) {
    if (!e || !path) { dl_set_error("dl_estimator_export: NULL argument"); return -1; }
    if (dl_model_save(e->serving, path, 0) != 0) { dl__est_wrap("dl_estimator_export"); return -1; }
    return 0;
}
#endif

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
