/* dl_nn.h - v0.1 - Keras-style layers, models and training for dl, in C99: Sequential,
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
   implementation file as well as where you call dl_load_image_folder. Link with -lm -lpthread.

   EXAMPLE: the Keras beginner's classifier on Fashion-MNIST (examples/mnist_mlp.c)

       dl_dataset *train = dl_load_fashion_mnist(NULL, 1), *test = dl_load_fashion_mnist(NULL, 0);
       if (!train || !test) { puts(dl_error()); return 1; }
       dl_nn_seed(42);                                         // initial weights, like set_random_seed
       dl_model *m = dl_sequential(dl_Flatten(), dl_Dense(128, DL_RELU), dl_Dropout(0.2f),
                                   dl_Dense(10, DL_LINEAR));                // yours: dl_model_free
       dl_compile(m, dl_adam(1e-3, 0.9, 0.999, 1e-7), DL_LOSS_SPARSE_CATEGORICAL_CE,
                  DL_METRIC_ACCURACY);                         // the model owns the optimizer
       dl_fit_opts fo = {0}; fo.epochs = 10; fo.validation_split = 0.1f;
       if (!dl_fit(m, train, &fo)) { puts(dl_error()); return 1; }   // prints a progress bar
       dl_logs r;
       dl_evaluate(m, test, 256, &r);                          // dl_logs_get(&r, "accuracy")
       dl_model_save(m, "mlp.safetensors", 1);                 // dl_model_load(...) gets it back
       dl_model_free(m); dl_dataset_free(train); dl_dataset_free(test);

   CONTENTS (declarations below are grouped in this order)
       DATA         dl_dataset; loaders: dl_load_idx (IDX images/labels, plain or gzip, with its
                    own inflater dl_gunzip), dl_load_fashion_mnist, dl_load_csv, dl_load_image_folder
                    (like Keras' image_dataset_from_directory; needs stb_image.h), dl_parse_*;
                    dl_batcher (seeded per-epoch shuffles, no malloc per batch); splits and
                    subsets; dl_normalize, dl_random_flip, dl_random_crop
       LAYERS       named as Keras' classes: dl_Dense, dl_Conv2D, dl_Conv2DTranspose, dl_MaxPool2D,
                    dl_AvgPool2D, dl_GlobalAvgPool2D, dl_Flatten, dl_Reshape, dl_Dropout,
                    dl_BatchNormalization, dl_LayerNormalization, dl_Embedding, dl_Activation,
                    dl_Add, dl_Multiply, dl_Concatenate, dl_RandomFlip, dl_SimpleRNN, dl_LSTM,
                    dl_GRU; your own
                    layers through dl_layer_ops + dl_layer_new + dl_layer_add_weight
       MODELS       dl_sequential; functional graphs (dl_Input, dl_apply, dl_model_new: several
                    inputs/outputs, shared layers, skip connections); custom models whose forward
                    function you write (dl_custom_model); dl_model_call; dl_model_summary
       TRAINING     dl_compile (loss, optimizer, metrics), dl_fit (epochs, batch size, seeded
                    shuffling, validation split or set, callbacks: early stopping, checkpoints,
                    LR schedules, your own), dl_evaluate, dl_predict, dl_train_on_batch; history
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
       DL_FASHION_MNIST_DIR  default directory for dl_load_fashion_mnist(NULL, ...)
                             ("/usr/share/datasets/fashion-mnist", Debian's dataset-fashion-mnist)
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
       never a crash. Nothing here calls exit or abort.

   NOT HERE (yet)
       Keras' .keras/.h5 files; masking and variable-length sequences; bidirectional and stacked
       RNN wrappers (stack layers instead); multi-input/output models in dl_fit (run them with
       dl_model_call_n and your own loop); sample weights and class weights; regularizers and
       constraints; mixed precision; data loading on other threads; multi-member gzip, CSV
       quoting, missing values and string columns; IDX types other than unsigned byte; image
       folders on Windows.

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

/* ==== DATA ================================================================================== */

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
   buffer of *out_len bytes (owned: DL_FREE), or NULL + dl_error(); max_out > 0 caps the
   output size. */
DLDEF int dl_inflate(const void *src, size_t src_len, void *dst, size_t cap, size_t *out_len, size_t *in_used);
DLDEF void *dl_gunzip(const void *src, size_t src_len, size_t max_out, size_t *out_len);
DLDEF uint32_t dl_crc32(uint32_t crc, const void *data, size_t len); /* crc = 0 to start */

/* ---- IDX (MNIST, Fashion-MNIST) -------------------------------------------------------------
   Images: magic 00 00 08 03 (unsigned bytes, 3 dims), N, H, W big-endian, then N*H*W bytes;
   also 00 00 08 02 (N, F). Labels: 00 00 08 01, N, then N bytes. Either may be gzipped (found
   by its magic 1f 8b). x = pixels / 255 as f32 [N, 1, H, W] (or [N, F]); y = i32 [N];
   num_classes = max label + 1. labels may be NULL (y = NULL). Owned: dl_dataset_free. */
#ifndef DL_NO_STDIO
DLDEF dl_dataset *dl_load_idx(const char *images_path, const char *labels_path);
/* dir: holds train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], t10k-... (the names of
   the original distribution and Debian's package); NULL means DL_FASHION_MNIST_DIR. train = 1
   for the 60000 training images, 0 for the 10000 test images. Also reads MNIST's files. */
DLDEF dl_dataset *dl_load_fashion_mnist(const char *dir, int train);
#endif
DLDEF dl_dataset *dl_parse_idx(const void *images, size_t images_len, const void *labels, size_t labels_len);

/* ---- CSV -------------------------------------------------------------------------------------
   Numeric tables: one sample per line, fields separated by `delimiter`, every field a number
   (strtod syntax in the C locale, finite; surrounding spaces allowed; no quotes). Blank lines are skipped; every other
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
DLDEF dl_dataset *dl_load_csv(const char *path, const dl_csv_opts *opts);  /* opts NULL: defaults */
#endif
DLDEF dl_dataset *dl_parse_csv(const char *text, size_t len, const dl_csv_opts *opts);

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
DLDEF dl_dataset *dl_load_image_folder(const char *dir, int height, int width, int channels);
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
DLDEF int dl_batcher_len(const dl_batcher *b);            /* batches per epoch */
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
    DL_LINEAR = 0, DL_RELU, DL_SIGMOID, DL_TANH, DL_SOFTMAX, DL_GELU, DL_ELU, DL_LEAKY_RELU,
    DL_SOFTPLUS
} dl_act;   /* DL_SOFTMAX is over the last axis; DL_LEAKY_RELU has slope 0.2 (keras.activations.leaky_relu) */
DLDEF dl_tensor *dl_activate(dl_tensor *x, dl_act act);   /* arena output; x itself for DL_LINEAR */
DLDEF const char *dl_act_name(dl_act act);                /* "relu", ... as Keras spells them */

typedef enum dl_padding { DL_VALID = 0, DL_SAME = 1 } dl_padding;  /* Keras' padding= */

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
   seeds, builds and trains gets the same bits every run. Process-wide: build models on one
   thread at a time. The default seed is 0. */
DLDEF void dl_nn_seed(uint64_t seed);

#define DL_LAYER_MAX_PARAMS 8
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
       tensor, or NULL + dl_error(). training: 1 in fit (dropout on, batch statistics). */
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
    int trainable;                          /* 0 freezes the layer (Keras layer.trainable) */
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
   [filters]. DL_SAME pads like Keras (the odd extra row/column at the bottom/right). */
DLDEF dl_layer *dl_Conv2D(int filters, int kernel, int stride, dl_padding padding, dl_act act);
/* Output size: DL_VALID (in-1)*stride + kernel; DL_SAME in*stride. kernel [in, filters, k, k]. */
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

/* ==== MODELS ================================================================================
   Three ways, as Keras has:
     Sequential   dl_sequential(dl_Flatten(), dl_Dense(10, DL_LINEAR))
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

/* A model input of per-sample shape (no batch axis). dtype DL_F32 (dl_Input) or DL_I32
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
/* Frees symbols that no model took (when a graph is abandoned). */
DLDEF void dl_sym_free_unused(void);

/* forward(m, x, training) computes the output from x with dl_layer_call(dl_model_layer(m, i),
   ...) and any ops; user is yours (dl_model_user). Layers: those whose weights the model owns,
   trains and saves. */
typedef dl_tensor *(*dl_model_fn)(dl_model *m, dl_tensor *x, int training);
DLDEF dl_model *dl_custom_model(dl_model_fn forward, void *user, int n_layers, dl_layer *const *layers);
DLDEF void *dl_model_user(const dl_model *m);

DLDEF void dl_model_free(dl_model *m);   /* its layers, weights, optimizer, history; NULL is fine */

/* Runs the model: x [batch, ...] -> arena output. training = 1 turns dropout and batch
   statistics on. Multi-input/output graphs: dl_model_call_n (outputs in order). */
DLDEF dl_tensor *dl_model_call(dl_model *m, dl_tensor *x, int training);
DLDEF int dl_model_call_n(dl_model *m, int n_in, dl_tensor *const *in, int n_out, dl_tensor **out, int training);
/* Builds the weights for per-sample input shape (sequential and custom models; functional ones
   are built by dl_model_new). Not needed before fit. 0 on success. */
DLDEF int dl_model_build(dl_model *m, int ndim, const int *shape);
DLDEF int dl_model_build_ids(dl_model *m, int ndim, const int *shape);   /* i32 input */

DLDEF int dl_model_num_layers(const dl_model *m);
DLDEF dl_layer *dl_model_layer(const dl_model *m, int i);
DLDEF dl_layer *dl_model_get_layer(const dl_model *m, const char *name);   /* NULL if absent */
/* Weights: trainable ones (what the optimizer updates) when trainable_only, else all (running
   statistics too). Fills up to cap pointers; returns the count. */
DLDEF int dl_model_weights(const dl_model *m, int trainable_only, dl_tensor **out, int cap);
DLDEF long dl_model_count_params(const dl_model *m, int trainable_only);
/* Keras' model.summary(): layers, output shapes, parameter counts, into buf (always NUL-ended).
   Returns the length it needed (like snprintf). Needs a built model. dl_model_print_summary
   writes it to stdout. */
DLDEF size_t dl_model_summary(dl_model *m, char *buf, size_t size);
#ifndef DL_NO_STDIO
DLDEF int dl_model_print_summary(dl_model *m);
#endif

/* ==== TRAINING: compile, fit, evaluate, predict ============================================= */

/* Losses. The model outputs logits (Keras' from_logits=True), except that when the model's last
   layer applies DL_SOFTMAX (or DL_SIGMOID for DL_LOSS_BINARY_CE) the outputs are taken as
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
   monitor improves when save_best_only. "%d" in path, if present, gets the epoch (1-based). */
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
} dl_history;
DLDEF double dl_history_get(const dl_history *h, const char *name, int epoch);  /* NaN if absent */

/* Zero-init gives Keras' defaults: 1 epoch, batch 32, shuffled (seed 0), no validation,
   progress output chosen automatically. */
typedef struct dl_fit_opts {
    int epochs;                      /* 0 means 1 */
    int batch_size;                  /* 0 means 32 */
    int no_shuffle;                  /* 1: keep the data set's order */
    uint64_t seed;                   /* shuffle seed (each epoch's order depends on it) */
    float validation_split;          /* last fraction of the data held out, as Keras (before shuffling) */
    const dl_dataset *validation_data;  /* or an explicit validation set (takes precedence) */
    int verbose;                     /* 0 auto: a progress bar on a terminal, one line per epoch
                                        otherwise; 1 bar; 2 lines; -1 silent */
    int n_callbacks;
    dl_callback *const *callbacks;   /* borrowed */
    int initial_epoch;               /* to resume: epochs counted from here */
} dl_fit_opts;
/* Trains on ds (x, and y as the loss needs). Returns the history, or NULL + dl_error(). The
   model's arena use: the current arena is reset before every batch. */
DLDEF const dl_history *dl_fit(dl_model *m, const dl_dataset *ds, const dl_fit_opts *opts);
/* Loss and metrics on ds, into *logs' values (batch_size 0: 32). 0 on success. */
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
   Custom models and layers cannot be rebuilt from a file: build the model in code and use
   dl_model_load_weights. */
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

#include "parts/nn_estimator_decl.h"

#ifdef __cplusplus
}
/* C++ has no compound literals: a variadic template builds the array instead. */
template <typename... L> static inline dl_model *dl__sequential_cxx(L... layers) {
    dl_layer *list[] = {layers...};
    return dl_sequential_n((int)sizeof...(layers), list);
}
#define dl_sequential(...) dl__sequential_cxx(__VA_ARGS__)
#else
#define dl_sequential(...)                                                                        \
    dl_sequential_n((int)(sizeof((dl_layer *[]){__VA_ARGS__}) / sizeof(dl_layer *)), (dl_layer *[]){__VA_ARGS__})
#endif
#endif /* DL_NN_H */

#if defined(DL_IMPLEMENTATION) && !defined(DL__NN_IMPLEMENTED)
#define DL__NN_IMPLEMENTED

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(DL_HAVE_IMAGE_FOLDER) && !defined(_WIN32)
#include <dirent.h>
#include <sys/stat.h>
#endif

/* ==== DATA: implementation ================================================================== */

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
    const char *err; /* first error, NULL while fine */
} dl__inflate;

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
            if (s->out_pos >= s->cap) { s->err = "output larger than expected"; return; }
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
            if (len > s->cap - s->out_pos) { s->err = "output larger than expected"; return; }
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
    if (len > s->cap - s->out_pos) { s->err = "output larger than expected"; return; }
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

DLDEF int dl_inflate(const void *src, size_t src_len, void *dst, size_t cap, size_t *out_len, size_t *in_used) {
    dl__inflate s;
    int last;
    memset(&s, 0, sizeof s);
    s.in = (const unsigned char *)src;
    s.in_len = src ? src_len : 0;
    s.out = (unsigned char *)dst;
    s.cap = dst ? cap : 0;
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
    if (s.err) { dl_set_error("dl_inflate: %s (at input byte %zu)", s.err, s.in_pos); return -1; }
    return 0;
}

static uint32_t dl__le32(const unsigned char *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

DLDEF void *dl_gunzip(const void *src, size_t src_len, size_t max_out, size_t *out_len) {
    const unsigned char *p = (const unsigned char *)src;
    size_t pos = 10, isize, bound, got = 0, used = 0;
    unsigned flg;
    unsigned char *out;
    if (out_len) *out_len = 0;
    if (!src || src_len < 18) { dl_set_error("dl_gunzip: %zu bytes is too short for gzip", src ? src_len : 0); return NULL; }
    if (p[0] != 0x1f || p[1] != 0x8b) { dl_set_error("dl_gunzip: not gzip (bad magic)"); return NULL; }
    if (p[2] != 8) { dl_set_error("dl_gunzip: compression method %d is not deflate", p[2]); return NULL; }
    flg = p[3];
    if (flg & 0xe0) { dl_set_error("dl_gunzip: reserved header flags set"); return NULL; }
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
truncated:
    dl_set_error("dl_gunzip: truncated header");
    return NULL;
}

/* ---- IDX ---- */
static uint32_t dl__be32(const unsigned char *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

/* Validates one IDX buffer of unsigned bytes: ndim in [lo, hi], dims > 0 and < 2^31, size ==
   header + product. dims[] gets the dimensions; returns the data pointer or NULL + error. */
static const unsigned char *dl__idx_header(const char *what, const unsigned char *p, size_t len, int lo, int hi,
                                           int *ndim, uint32_t *dims) {
    size_t need, count = 1;
    int i;
    if (!p || len < 4) { dl_set_error("dl_parse_idx: %s: %zu bytes is too short for IDX", what, p ? len : 0); return NULL; }
    if (p[0] != 0 || p[1] != 0) { dl_set_error("dl_parse_idx: %s: bad magic (not an IDX file)", what); return NULL; }
    if (p[2] != 0x08) { dl_set_error("dl_parse_idx: %s: element type 0x%02x is not unsigned byte (0x08)", what, p[2]); return NULL; }
    *ndim = p[3];
    if (*ndim < lo || *ndim > hi) { dl_set_error("dl_parse_idx: %s: %d dimensions, expected %d..%d", what, *ndim, lo, hi); return NULL; }
    need = 4 + 4 * (size_t)*ndim;
    if (len < need) { dl_set_error("dl_parse_idx: %s: truncated header", what); return NULL; }
    for (i = 0; i < *ndim; i++) {
        dims[i] = dl__be32(p + 4 + 4 * i);
        if (dims[i] == 0 || dims[i] > (uint32_t)INT_MAX) { dl_set_error("dl_parse_idx: %s: dimension %d is %lu", what, i, (unsigned long)dims[i]); return NULL; }
        if (count > (len - need) / dims[i]) { dl_set_error("dl_parse_idx: %s: header promises more data than the file holds", what); return NULL; }
        count *= dims[i];
    }
    if (len - need != count) { dl_set_error("dl_parse_idx: %s: %zu data bytes, header says %zu", what, len - need, count); return NULL; }
    return p + need;
}

DLDEF dl_dataset *dl_parse_idx(const void *images, size_t images_len, const void *labels, size_t labels_len) {
    uint32_t idims[3], ldims[1];
    int indim, lndim, shape[4], nd, i;
    size_t k, total;
    const unsigned char *px, *pl = NULL;
    dl_dataset *ds;
    float *xs;
    px = dl__idx_header("images", (const unsigned char *)images, images_len, 2, 3, &indim, idims);
    if (!px) return NULL;
    if (labels) {
        pl = dl__idx_header("labels", (const unsigned char *)labels, labels_len, 1, 1, &lndim, ldims);
        if (!pl) return NULL;
        if (ldims[0] != idims[0]) { dl_set_error("dl_parse_idx: %lu images but %lu labels", (unsigned long)idims[0], (unsigned long)ldims[0]); return NULL; }
    }
    if (indim == 3) { shape[0] = (int)idims[0]; shape[1] = 1; shape[2] = (int)idims[1]; shape[3] = (int)idims[2]; nd = 4; }
    else { shape[0] = (int)idims[0]; shape[1] = (int)idims[1]; nd = 2; }
    ds = dl__dataset_alloc();
    if (!ds) return NULL;
    ds->n = shape[0];
    ds->x = dl_tensor_new(DL_F32, nd, shape);
    if (!ds->x) { dl_dataset_free(ds); return NULL; }
    xs = dl_f32(ds->x);
    total = ds->x->numel;
    for (k = 0; k < total; k++) xs[k] = (float)px[k] * (1.0f / 255.0f);
    if (pl) {
        int32_t *ys;
        ds->y = dl_tensor_new(DL_I32, 1, shape);
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
/* Reads a whole file (gunzipped when it starts with 1f 8b); owned: DL_FREE. */
static unsigned char *dl__read_file(const char *fn, const char *path, size_t *len, int gunzip) {
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
        size_t n = 0;
        unsigned char *raw = (unsigned char *)dl_gunzip(buf, *len, 0, &n);
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

DLDEF dl_dataset *dl_load_idx(const char *images_path, const char *labels_path) {
    size_t ni = 0, nl = 0;
    unsigned char *img, *lab = NULL;
    dl_dataset *ds;
    img = dl__read_file("dl_load_idx", images_path, &ni, 1);
    if (!img) return NULL;
    if (labels_path) {
        lab = dl__read_file("dl_load_idx", labels_path, &nl, 1);
        if (!lab) { DL_FREE(img); return NULL; }
    }
    ds = dl_parse_idx(img, ni, lab, nl);
    if (!ds) {
        char where[1024];
        snprintf(where, sizeof where, "%s%s%s", images_path, labels_path ? " + " : "", labels_path ? labels_path : "");
        dl__rewrap_error("dl_load_idx", where, "dl_parse_idx: "); /* the message says images or labels */
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

DLDEF dl_dataset *dl_load_fashion_mnist(const char *dir, int train) {
    char ip[1024], lp[1024];
    const char *pre = train ? "train" : "t10k";
    char ib[64], lb[64];
    if (!dir) dir = DL_FASHION_MNIST_DIR;
    snprintf(ib, sizeof ib, "%s-images-idx3-ubyte", pre);
    snprintf(lb, sizeof lb, "%s-labels-idx1-ubyte", pre);
    if (dl__find_file(ip, sizeof ip, dir, ib) != 0 || dl__find_file(lp, sizeof lp, dir, lb) != 0) {
        dl_set_error("dl_load_fashion_mnist: no %s[.gz] and %s[.gz] in %s (Debian: apt-get install dataset-fashion-mnist)", ib, lb, dir);
        return NULL;
    }
    return dl_load_idx(ip, lp);
}
#endif /* DL_NO_STDIO */

/* ---- CSV ---- */
/* One field [b, e) as a finite number; 0 on success. */
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

DLDEF dl_dataset *dl_parse_csv(const char *text, size_t len, const dl_csv_opts *opts) {
    dl_csv_opts o;
    const char *p, *end, *ce;
    char delim;
    int ncols = -1, nrows = 0, line = 0, label, nfeat, row, shape[2];
    dl_dataset *ds;
    if (opts) o = *opts; else memset(&o, 0, sizeof o);
    delim = o.delimiter ? o.delimiter : ',';
    if (!text) { dl_set_error("dl_parse_csv: NULL text"); return NULL; }
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
        else if (fields != ncols) { dl_set_error("dl_parse_csv: line %d has %d fields, expected %d", line, fields, ncols); return NULL; }
        if (nrows == INT_MAX) { dl_set_error("dl_parse_csv: too many rows"); return NULL; }
        nrows++;
        p = q;
    }
    if (nrows == 0) { dl_set_error("dl_parse_csv: no data rows"); return NULL; }
    label = -1;
    if (!o.no_label) {
        label = o.label_col < 0 ? ncols + o.label_col : o.label_col;
        if (label < 0 || label >= ncols) { dl_set_error("dl_parse_csv: label column %d, but rows have %d fields", o.label_col, ncols); return NULL; }
    }
    nfeat = ncols - (label >= 0);
    if (nfeat < 1) { dl_set_error("dl_parse_csv: no feature columns"); return NULL; }
    ds = dl__dataset_alloc();
    if (!ds) return NULL;
    ds->n = nrows;
    shape[0] = nrows;
    shape[1] = nfeat;
    ds->x = dl_tensor_new(DL_F32, 2, shape);
    if (label >= 0) ds->y = dl_tensor_new(o.regression ? DL_F32 : DL_I32, 1, shape);
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
            while (fe < ce && *fe != delim) fe++;
            if (dl__csv_number(f, fe, &v) != 0) {
                int n = (int)(fe - f);
                dl_set_error("dl_parse_csv: line %d, column %d: '%.*s' is not a number", line, col + 1, n > 40 ? 40 : n, f);
                dl_dataset_free(ds);
                return NULL;
            }
            if (col == label) {
                if (o.regression) dl_f32(ds->y)[row] = (float)v;
                else {
                    if (v != floor(v) || v < 0 || v > 16777216.0) {
                        dl_set_error("dl_parse_csv: line %d, column %d: label '%.*s' is not an integer in [0, 2^24]", line, col + 1,
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
DLDEF dl_dataset *dl_load_csv(const char *path, const dl_csv_opts *opts) {
    size_t n;
    unsigned char *text = dl__read_file("dl_load_csv", path, &n, 0);
    dl_dataset *ds;
    if (!text) return NULL;
    ds = dl_parse_csv((const char *)text, n, opts);
    if (!ds) dl__rewrap_error("dl_load_csv", path, "dl_parse_csv: ");
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
    if (!d) { dl_set_error("dl_load_image_folder: cannot open directory %s", dir); return -1; }
    while ((e = readdir(d)) != NULL) {
        struct stat st;
        int n;
        if (e->d_name[0] == '.') continue;
        n = snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (n < 0 || (size_t)n >= sizeof path || stat(path, &st) != 0) continue;
        if (want_dirs ? !S_ISDIR(st.st_mode) : (!S_ISREG(st.st_mode) || !dl__is_image_name(e->d_name))) continue;
        if (dl__strlist_add(out, e->d_name) != 0) { closedir(d); dl_set_error("dl_load_image_folder: out of memory"); return -1; }
    }
    closedir(d);
    if (out->n > 1) qsort(out->s, (size_t)out->n, sizeof *out->s, dl__strcmp_p);
    return 0;
}
#endif

DLDEF dl_dataset *dl_load_image_folder(const char *dir, int height, int width, int channels) {
#ifdef _WIN32
    (void)dir; (void)height; (void)width; (void)channels;
    dl_set_error("dl_load_image_folder: not supported on Windows yet");
    return NULL;
#else
    dl__strlist classes = {0, 0, 0}, files = {0, 0, 0}; /* files: "class_index/name" pairs via parallel list */
    int *file_class = NULL, c, i, shape[4];
    size_t per;
    char path[4096];
    dl_dataset *ds = NULL;
    if (!dir || height < 1 || width < 1 || (channels != 1 && channels != 3 && channels != 4) ||
        (size_t)height * (size_t)width > (size_t)1 << 26) {
        dl_set_error("dl_load_image_folder: bad arguments (dir %s, %d x %d, %d channels; channels must be 1, 3 or 4)",
                     dir ? dir : "NULL", height, width, channels);
        return NULL;
    }
    if (dl__list_dir(dir, 1, &classes) != 0) return NULL;
    if (classes.n == 0) { dl_set_error("dl_load_image_folder: %s has no subfolders (one per class)", dir); goto fail; }
    for (c = 0; c < classes.n; c++) {
        dl__strlist names = {0, 0, 0};
        int before = files.n, *nf;
        snprintf(path, sizeof path, "%s/%s", dir, classes.s[c]);
        if (dl__list_dir(path, 0, &names) != 0) goto fail;
        for (i = 0; i < names.n; i++)
            if (dl__strlist_add(&files, names.s[i]) != 0) { dl__strlist_free(&names); dl_set_error("dl_load_image_folder: out of memory"); goto fail; }
        dl__strlist_free(&names);
        nf = (int *)DL_REALLOC(file_class, (size_t)(files.n ? files.n : 1) * sizeof *nf);
        if (!nf) { dl_set_error("dl_load_image_folder: out of memory"); goto fail; }
        file_class = nf;
        for (i = before; i < files.n; i++) file_class[i] = c;
    }
    if (files.n == 0) { dl_set_error("dl_load_image_folder: no image files under %s", dir); goto fail; }
    ds = dl__dataset_alloc();
    if (!ds) goto fail;
    shape[0] = files.n; shape[1] = channels; shape[2] = height; shape[3] = width;
    ds->n = files.n;
    ds->x = dl_tensor_new(DL_F32, 4, shape);
    ds->y = dl_tensor_new(DL_I32, 1, shape);
    if (!ds->x || !ds->y) goto fail;
    per = (size_t)channels * (size_t)height * (size_t)width;
    for (i = 0; i < files.n; i++) {
        int w = 0, h = 0, comp = 0;
        unsigned char *img;
        snprintf(path, sizeof path, "%s/%s/%s", dir, classes.s[file_class[i]], files.s[i]);
        img = stbi_load(path, &w, &h, &comp, channels);
        if (!img) { dl_set_error("dl_load_image_folder: cannot decode %s: %s", path, stbi_failure_reason()); goto fail; }
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
    if (!ds || !ds->x || ds->x->ndim < 1 || ds->x->dtype != DL_F32 || !dl_is_contiguous(ds->x) || ds->x->shape[0] != ds->n ||
        (ds->y && (ds->y->ndim != 1 || ds->y->shape[0] != ds->n || !dl_is_contiguous(ds->y) || ds->y->dtype == DL_U8))) {
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
    out->x = dl_tensor_new(DL_F32, ds->x->ndim, shape);
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
    dl_rng_permutation(&r, perm, ds->n);
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
        dl_rng_permutation(&r, b->order, b->ds->n);
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

DLDEF int dl_batcher_len(const dl_batcher *b) {
    if (!b) return 0;
    return b->drop_last ? b->ds->n / b->batch : (b->ds->n + b->batch - 1) / b->batch;
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
        b->epoch++;
        dl__batcher_order(b);
        return 0;
    }
    memcpy(shape, ds->x->shape, sizeof shape);
    shape[0] = n;
    *x = dl_tmp_uninit(DL_F32, ds->x->ndim, shape);
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
    if (!x || !mean || !std || x->dtype != DL_F32 || x->ndim < 2 || !dl_is_contiguous(x)) {
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
    if (!x || !r || x->dtype != DL_F32 || x->ndim != 4 || !dl_is_contiguous(x)) {
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
    if (pad < 0) { dl_set_error("dl_random_crop: pad %d < 0", pad); return -1; }
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
                int sh = h + dy, w;
                if (sh < 0 || sh >= H) { memset(row, 0, (size_t)W * sizeof(float)); continue; }
                for (w = 0; w < W; w++) {
                    int sw = w + dx;
                    row[w] = (sw >= 0 && sw < W) ? tmp[((size_t)c * (size_t)H + (size_t)sh) * (size_t)W + (size_t)sw] : 0.0f;
                }
            }
    }
    return 0;
}

/* ==== LAYERS, MODELS, TRAINING: implementation ==== */
#include "parts/nn_core.h"
#include "parts/nn_rnn.h"
#include "parts/nn_estimator.h"

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
