/* examples/char_rnn.c - a character-level LSTM language model that learns to write like Jane Austen.

   Andrej Karpathy's char-rnn in one C file: the model reads a text one character at a time and
   learns to predict the next one. Trained on the first 18 chapters of Pride and Prejudice
   (data/text, public domain), it starts out writing noise, after a few seconds writes word-shaped
   strings, and within a minute or two mostly real words, names ("Mr. Darcy", "Elizabeth"),
   punctuation, dialogue in quotes and line breaks.

   The model is a custom model (dl_custom_model) whose forward function, char_rnn_forward below,
   calls its three layers and flattens the result:

       ids [B, T] (i32: character ids)
         -> Embedding(V, 32)          [B, T, 32]   one learned vector per character
         -> LSTM(256, every step)     [B, T, 256]  the state starts at zero in every window
         -> Dense(V, linear)          [B, T, V]    logits for the next character
         -> reshape                   [B*T, V]     every position is one V-way classification

   In Keras: Sequential([Embedding(V, 32), LSTM(256, return_sequences=True), Dense(V)]) compiled
   with SparseCategoricalCrossentropy(from_logits=True). V is the number of distinct characters
   in the text (74). The targets are the same windows shifted by one character, flattened to
   [B*T], so the compiled loss (DL_LOSS_SPARSE_CATEGORICAL_CE) is the mean cross-entropy over every
   character of the batch, and dl_train_on_batch does the rest (forward, loss, backward through
   time, update). Training: Adam (lr 0.01, cosine decay to 0.001) with the gradients' global norm
   clipped to 1 (dl_optim_set_clip: an LSTM now and then produces a huge gradient that would undo
   what it learned), on batches of B = 32 windows of T = 64 characters drawn at random (seeded)
   from the first 90% of the text. The last 10% is held out to measure the loss on unseen text.

   Sampling: start from a seed string, compute the probabilities of the next character, draw one
   (with a temperature: p_i ~ exp(logit_i / temperature)), append it, and repeat. The LSTM layer
   keeps no state between calls, so each step runs the model again on the last T characters:
   what it saw in training (a window read from a zero state), at T times the cost of carrying the
   state along, which is still well under a second for a sample.

   Build and run (from the repository root):
       cc -std=c99 -O2 -I. examples/char_rnn.c -o build/char_rnn -lm -lpthread
       ./build/char_rnn
   On an NVIDIA GPU (README, "GPU"): dl_cuda.cu built by nvcc, this file with DL_CUDA, then --device cuda:
       nvcc -O2 -I. -c dl_cuda.cu -o build/dl_cuda.o
       cc -std=c99 -O2 -DDL_CUDA -I. examples/char_rnn.c build/dl_cuda.o -o build/char_rnn_cuda \
          -L/usr/local/cuda/lib64 -lcudart -lcublas -lm -lpthread -lstdc++
       ./build/char_rnn_cuda --device cuda

   Flags:
       --data PATH         the text: a directory holding pride_and_prejudice_ch1-18.txt, or any
                           text file (default data/text)
       --epochs N          training epochs (default 20); an epoch is as many random windows as
                           hold the training text's characters once (79 steps here)
       --steps N           train exactly N steps instead (e.g. --steps 5 for a smoke test)
       --seed S            initial weights, the windows drawn and the samples (default 1)
       --threads T         threads for the matrix products (default 1: these matrices are small,
                           and on two cores a second thread costs more than it saves; 0 means
                           DL_NUM_THREADS or all CPUs)
       --batch B           windows per step (default 32)
       --seq-len T         characters per window, and the context the sampler sees (default 64)
       --hidden H          LSTM units (default 256)
       --lr X              Adam's initial learning rate (default 0.01)
       --clip X            the gradients' largest global norm (default 1; 0: no clipping)
       --sample-len N      characters to generate per sample (default 240)
       --temperature X     sampling temperature (default 0.7; lower is safer and duller, 1 draws
                           from the model's own distribution, 0 always takes the likeliest)
       --prime TEXT        the seed string of the samples (default "Elizabeth ")
       --sample-every N    sample every N epochs (default: after epochs 1, 2, 4, 8, 16, ...)
                           and always at the end
       --device D          cpu (default) or cuda: the model (Embedding, LSTM, Dense and Adam's
                           state) on the GPU (dl_model_move), the text on the host, each batch
                           copied over, the sampler's logits read back. Needs the CUDA build
                           above; without it, or without a usable GPU, the program says why and
                           exits with status 1

   Output: the vocabulary ('|' stands for the newline), the model summary, a sample from the
   untrained model (random characters), then a line per epoch with the training loss (the mean
   over the epoch's steps) and the held-out loss, and now and then a new sample. Losses are
   cross-entropies in nats per character; for scale, a uniform guess over the 74 characters
   scores ln 74 = 4.30 and the characters' frequencies alone (a unigram model) 3.10. The held-out
   loss reads the held-out text in windows of T characters, each from a zero state as in
   training, so each window's first characters are guessed with little context. With the
   defaults (seed 1) it falls to 2.26 after one epoch, 1.85 after two, 1.49 after five and
   1.334 (1.93 bits per character) after 20, while the training loss goes on to 1.10: the model
   begins to memorize this small text (with --hidden 128 the two stay closer, 1.33 and 1.42, in
   a third of the time; more --epochs widen the gap). The same seed gives the same numbers
   whatever --threads. The run takes about 80 s of CPU time (about 20 steps a second): under
   2 minutes on an idle two-core machine. The last line is "val_loss=X.XXXX". Returns non-zero,
   with the reason, if anything fails. */
#define DL_IMPLEMENTATION
#include "dl_nn.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEFAULT_DATA "data/text"
#define TEXT_NAME "pride_and_prejudice_ch1-18.txt"
#define EMBED_DIM 32

/* ---- The text and its vocabulary ---- */

typedef struct vocab {
    int size;           /* V: distinct characters */
    int id[256];        /* character -> id, -1 when the text never uses it */
    unsigned char ch[256];  /* id -> character */
} vocab;

/* Reads a whole file; owned: free. NULL on failure. */
static unsigned char *read_file(const char *path, long *len) {
    FILE *f = fopen(path, "rb");
    unsigned char *buf = NULL;
    long n;
    if (!f) return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) > 0 && fseek(f, 0, SEEK_SET) == 0 &&
        (buf = (unsigned char *)malloc((size_t)n)) != NULL) {
        if (fread(buf, 1, (size_t)n, f) == (size_t)n) *len = n;
        else { free(buf); buf = NULL; }
    }
    fclose(f);
    return buf;
}

/* The text of --data: DIR/TEXT_NAME when that exists, else the path itself. */
static unsigned char *load_text(const char *data, long *len) {
    char path[1024];
    unsigned char *text;
    snprintf(path, sizeof path, "%s/%s", data, TEXT_NAME);
    if ((text = read_file(path, len)) != NULL) return text;
    if ((text = read_file(data, len)) != NULL) return text;
    fprintf(stderr, "cannot read %s (nor %s)\n", path, data);
    return NULL;
}

/* The distinct bytes of the text, in byte order, numbered 0..V-1; text[i] becomes its id. */
static void build_vocab(vocab *v, const unsigned char *text, long len, int *ids) {
    int seen[256] = {0}, c;
    long i;
    for (i = 0; i < len; i++) seen[text[i]] = 1;
    v->size = 0;
    for (c = 0; c < 256; c++) {
        v->id[c] = seen[c] ? v->size : -1;
        if (seen[c]) v->ch[v->size++] = (unsigned char)c;
    }
    for (i = 0; i < len; i++) ids[i] = v->id[text[i]];
}

/* ---- The model ---- */

static dl_device device = DL_DEVICE_CPU;   /* --device */

/* ids [B, T] -> logits [B*T, V]. The layers are the model's 0, 1, 2 (dl_custom_model below). */
static dl_tensor *char_rnn_forward(dl_model *m, dl_tensor *ids, int training) {
    dl_tensor *e = dl_layer_call(dl_model_layer(m, 0), ids, training);      /* [B, T, E] */
    dl_tensor *h = dl_layer_call(dl_model_layer(m, 1), e, training);        /* [B, T, H] */
    dl_tensor *logits = dl_layer_call(dl_model_layer(m, 2), h, training);   /* [B, T, V] */
    int flat[2];
    if (!logits) return NULL;
    flat[0] = -1;                   /* B*T */
    flat[1] = logits->shape[2];     /* V */
    return dl_reshape(logits, 2, flat);
}

/* A batch of B windows of T characters starting at random offsets of ids[0..n): x [B, T] and
   the characters that follow each one, y [B*T] (x shifted by one). Arena tensors. */
static int random_batch(const int *ids, long n, int B, int T, dl_rng *rng, dl_tensor **x, dl_tensor **y) {
    int b;
    *x = dl_tmp(DL_DTYPE_I32, 2, DL_SHAPE(B, T));
    *y = dl_tmp(DL_DTYPE_I32, 1, DL_SHAPE(B * T));
    if (!*x || !*y) return -1;
    for (b = 0; b < B; b++) {
        long start = (long)dl_rng_int(rng, (int)(n - T));   /* start + T < n: y has a last target */
        memcpy(dl_i32(*x) + (size_t)b * T, ids + start, (size_t)T * sizeof(int));
        memcpy(dl_i32(*y) + (size_t)b * T, ids + start + 1, (size_t)T * sizeof(int));
    }
    return 0;
}

/* Mean cross-entropy per character (nats) over ids[0..n), read as consecutive windows of T
   characters (the last, shorter one too), B windows per forward pass. NaN on failure. */
static double evaluate(dl_model *m, dl_arena *arena, const int *ids, long n, int B, int T) {
    double sum = 0;
    long pos = 0, count = 0;
    int grad = dl_no_grad(1);   /* inference: no tape */
    while (pos < n - 1) {
        long left = n - 1 - pos;   /* characters that have a successor */
        int len = left < T ? (int)left : T, rows = 0, b;
        dl_tensor *x, *y, *loss;
        if (len < T) B = 1;        /* the short tail: one window of its own length */
        dl_arena_reset(arena);
        x = dl_tmp(DL_DTYPE_I32, 2, DL_SHAPE(B, len));
        y = dl_tmp(DL_DTYPE_I32, 1, DL_SHAPE(B * len));
        if (!x || !y) break;
        for (b = 0; b < B && n - 1 - pos >= len; b++, rows++, pos += len) {
            memcpy(dl_i32(x) + (size_t)b * len, ids + pos, (size_t)len * sizeof(int));
            memcpy(dl_i32(y) + (size_t)b * len, ids + pos + 1, (size_t)len * sizeof(int));
        }
        if (rows < B) {   /* fewer full windows left than B: drop the unused rows */
            x = dl_slice(x, 0, 0, rows, 1);
            y = dl_slice(y, 0, 0, rows * len, 1);
        }
        loss = dl_model_loss(m, dl_model_call(m, dl_to_device(x, device), 0), dl_to_device(y, device));   /* the mean over rows*len characters */
        if (!loss) break;
        sum += (double)dl_item(loss) * rows * len;
        count += (long)rows * len;
    }
    dl_no_grad(grad);
    return pos >= n - 1 && count > 0 ? sum / (double)count : NAN;
}

/* Writes n characters generated after `prime` to stdout. Each step runs the model on the last
   T characters (or fewer at first) and draws the next one from softmax(logits / temperature) of
   the last position; temperature 0 takes the likeliest. ctx has room for strlen(prime) + n ids. */
static int sample(dl_model *m, dl_arena *arena, const vocab *v, const char *prime, int n, int T,
                  float temperature, dl_rng *rng, int *ctx) {
    int len = 0, i, c, grad;
    const char *p;
    float prob[256];
    for (p = prime; *p; p++)   /* characters the text never uses are left out */
        if (v->id[(unsigned char)*p] >= 0) ctx[len++] = v->id[(unsigned char)*p];
    if (len == 0) ctx[len++] = v->id[' '] >= 0 ? v->id[' '] : 0;
    for (i = 0; i < len; i++) putchar(v->ch[ctx[i]]);
    grad = dl_no_grad(1);
    for (i = 0; i < n; i++) {
        int L = len < T ? len : T, next = 0;
        dl_tensor *x, *logits;
        const float *z;
        float max, total = 0, r;
        dl_arena_reset(arena);
        x = dl_tmp_from(DL_DTYPE_I32, 2, DL_SHAPE(1, L), ctx + len - L);
        logits = dl_to_device(dl_model_call(m, dl_to_device(x, device), 0), DL_DEVICE_CPU);   /* [L, V], on the host */
        if (!logits) { dl_no_grad(grad); return -1; }
        z = dl_f32(logits) + (size_t)(L - 1) * v->size;        /* the last position's */
        max = z[0];
        for (c = 1; c < v->size; c++) if (z[c] > max) { max = z[c]; next = c; }
        if (temperature > 0) {
            for (c = 0; c < v->size; c++) total += prob[c] = expf((z[c] - max) / temperature);
            r = dl_rng_uniform(rng) * total;
            for (next = 0; next < v->size - 1 && (r -= prob[next]) >= 0; next++) {}
        }
        ctx[len++] = next;
        putchar(v->ch[next]);
    }
    dl_no_grad(grad);
    putchar('\n');
    fflush(stdout);
    return 0;
}

/* Prints a sample between two rules. */
static int show_sample(const char *title, dl_model *m, dl_arena *arena, const vocab *v, const char *prime,
                       int n, int T, float temperature, dl_rng *rng, int *ctx) {
    printf("---- %s ----\n", title);
    if (sample(m, arena, v, prime, n, T, temperature, rng, ctx) != 0) return -1;
    printf("----\n");
    return 0;
}

/* ---- Flags ---- */

static int flag(int argc, char **argv, int *i, const char *name, const char **value) {
    if (strcmp(argv[*i], name) != 0) return 0;
    if (*i + 1 >= argc) { fprintf(stderr, "%s needs a value\n", name); exit(2); }
    *value = argv[++*i];
    return 1;
}

static double seconds_since(clock_t t0) {   /* elapsed wall time is not in C99; CPU time is */
    return (double)(clock() - t0) / CLOCKS_PER_SEC;
}

int main(int argc, char **argv) {
    const char *data = DEFAULT_DATA, *prime = "Elizabeth ", *s, *device_name = "cpu";
    int epochs = 20, steps = 0, seed = 1, threads = 1, B = 32, T = 64, H = 256, sample_len = 240, sample_every = 0;
    float lr = 1e-2f, temperature = 0.7f, clip = 1.0f;
    unsigned char *text = NULL;
    int *ids = NULL, *ctx = NULL, steps_per_epoch, total, step, i, rc = 1;
    long len = 0, n_train, n_val;
    double loss_sum = 0, val_loss = NAN, unigram = 0;
    long counts[256] = {0};
    vocab v;
    dl_layer *layers[3];
    dl_model *m = NULL;
    dl_arena *arena = NULL;
    dl_rng data_rng, sample_rng;   /* separate, so that samples do not change the training */
    time_t t0;
    clock_t c0;
    char title[64];

    for (i = 1; i < argc; i++) {
        if (flag(argc, argv, &i, "--data", &data) || flag(argc, argv, &i, "--prime", &prime) ||
            flag(argc, argv, &i, "--device", &device_name))
            continue;
        if (flag(argc, argv, &i, "--epochs", &s)) epochs = atoi(s);
        else if (flag(argc, argv, &i, "--steps", &s)) steps = atoi(s);
        else if (flag(argc, argv, &i, "--seed", &s)) seed = atoi(s);
        else if (flag(argc, argv, &i, "--threads", &s)) threads = atoi(s);
        else if (flag(argc, argv, &i, "--batch", &s)) B = atoi(s);
        else if (flag(argc, argv, &i, "--seq-len", &s)) T = atoi(s);
        else if (flag(argc, argv, &i, "--hidden", &s)) H = atoi(s);
        else if (flag(argc, argv, &i, "--lr", &s)) lr = (float)atof(s);
        else if (flag(argc, argv, &i, "--sample-len", &s)) sample_len = atoi(s);
        else if (flag(argc, argv, &i, "--temperature", &s)) temperature = (float)atof(s);
        else if (flag(argc, argv, &i, "--clip", &s)) clip = (float)atof(s);
        else if (flag(argc, argv, &i, "--sample-every", &s)) sample_every = atoi(s);
        else {
            fprintf(stderr, "usage: %s [--data PATH] [--epochs N] [--steps N] [--seed S] [--threads T] [--batch B]\n"
                            "       [--seq-len T] [--hidden H] [--lr X] [--sample-len N] [--temperature X] [--prime TEXT]\n"
                            "       [--sample-every N] [--clip X] [--device cpu|cuda]\n",
                    argv[0]);
            return 2;
        }
    }
    if (epochs < 1 || steps < 0 || B < 1 || T < 1 || H < 1 || !(lr > 0) || sample_len < 0 || !(temperature >= 0) ||
        !(clip >= 0) || sample_every < 0) {
        fprintf(stderr, "bad settings: epochs, batch, seq-len and hidden must be >= 1, lr > 0, and the others >= 0\n");
        return 2;
    }
    if (strcmp(device_name, "cpu") != 0 && strcmp(device_name, "cuda") != 0) {
        fprintf(stderr, "bad settings: --device is cpu or cuda\n");
        return 2;
    }
    if (strcmp(device_name, "cuda") == 0) {   /* fails with the reason: no DL_CUDA build, no driver, no GPU */
        device = DL_DEVICE_CUDA;
        if (dl_cuda_init() != 0) { fprintf(stderr, "error: --device cuda: %s\n", dl_error()); return 1; }
    }
    dl_set_num_threads(threads);   /* 0: DL_NUM_THREADS or all CPUs */

    /* The text: ids, a vocabulary, the first 90% to train on and the last 10% held out. */
    if (!(text = load_text(data, &len))) return 1;
    if (len > 1L << 30) { fprintf(stderr, "%s: %ld characters is more than this example handles\n", data, len); goto done; }
    ids = (int *)malloc((size_t)len * sizeof *ids);
    ctx = (int *)malloc((strlen(prime) + (size_t)sample_len + 2) * sizeof *ctx);
    if (!ids || !ctx) { fprintf(stderr, "out of memory\n"); goto done; }
    build_vocab(&v, text, len, ids);
    n_val = len / 10;
    n_train = len - n_val;
    if (n_train <= T + 1 || n_val < 2) { fprintf(stderr, "%s: %ld characters is too short for windows of %d\n", data, len, T); goto done; }
    for (i = 0; i < len; i++) counts[ids[i]]++;
    for (i = 0; i < v.size; i++) unigram -= (double)counts[i] / len * log((double)counts[i] / len);
    printf("text: %ld characters (%ld to train on, %ld held out), %d distinct:\n  ", len, n_train, n_val, v.size);
    for (i = 0; i < v.size; i++) putchar(v.ch[i] == '\n' ? '|' : v.ch[i]);   /* '|' stands for newline */
    printf("\nfor scale: a uniform guess scores ln %d = %.2f nats per character, character frequencies %.2f\n",
           v.size, log((double)v.size), unigram);

    /* The model: Embedding -> LSTM -> Dense, run by char_rnn_forward; Adam with clipping. */
    dl_nn_seed((uint64_t)seed);
    layers[0] = dl_Embedding(v.size, EMBED_DIM);
    layers[1] = dl_LSTM(H, 1);   /* return_sequences: an output at every step */
    layers[2] = dl_Dense(v.size, DL_ACT_LINEAR);
    if (!layers[0] || !layers[1] || !layers[2]) {
        fprintf(stderr, "%s\n", dl_error());
        for (i = 0; i < 3; i++) dl_layer_free(layers[i]);
        goto done;
    }
    m = dl_custom_model(char_rnn_forward, NULL, 3, layers);
    if (!m || dl_model_build_ids(m, 1, DL_SHAPE(T)) != 0 ||
        dl_compile(m, dl_optim_new(DL_OPTIM_ADAM, &(dl_optim_opts){.lr = lr, .eps = 1e-7}), DL_LOSS_SPARSE_CATEGORICAL_CE, 0) != 0 ||
        dl_optim_set_clip(dl_model_optimizer(m), clip, 0.0) != 0 || dl_model_move(m, device) != 0) {
        fprintf(stderr, "%s\n", dl_error());
        goto done;
    }
    if (device != DL_DEVICE_CPU) printf("training on the %s\n", dl_device_name(device));
    dl_model_print_summary(m);

    steps_per_epoch = (int)(n_train / ((long)B * T));
    if (steps_per_epoch < 1) steps_per_epoch = 1;
    total = steps > 0 ? steps : epochs * steps_per_epoch;
    printf("training: %d steps of %d windows x %d characters, %d steps an epoch, %d thread%s\n", total, B, T,
           steps_per_epoch, dl_num_threads(), dl_num_threads() == 1 ? "" : "s");

    arena = dl_arena_new((size_t)16 << 20);   /* grows as needed; reset every step */
    if (!arena) { fprintf(stderr, "%s\n", dl_error()); goto done; }
    dl_arena_use(arena);
    dl_rng_seed(&data_rng, (uint64_t)seed);
    dl_rng_seed(&sample_rng, (uint64_t)seed + 1000);
    if (show_sample("untrained", m, arena, &v, prime, sample_len, T, temperature, &sample_rng, ctx) != 0) {
        fprintf(stderr, "%s\n", dl_error());
        goto done;
    }

    t0 = time(NULL);
    c0 = clock();
    for (step = 1; step <= total; step++) {
        dl_tensor *x, *y;
        double loss;
        /* Cosine decay from lr to lr/10 over the run. */
        dl_optim_set_lr(dl_model_optimizer(m), dl_lr_cosine(lr, total, lr / 10, step - 1));
        dl_arena_reset(arena);   /* the last step's activations and tape are gone */
        if (random_batch(ids, n_train, B, T, &data_rng, &x, &y) != 0 || isnan(loss = dl_train_on_batch(m, x, y))) {
            fprintf(stderr, "step %d: %s\n", step, dl_error());
            goto done;
        }
        loss_sum += loss;
        if (step % steps_per_epoch == 0 || step == total) {   /* the end of an epoch (or of the run) */
            int n = step % steps_per_epoch ? step % steps_per_epoch : steps_per_epoch;
            int epoch = (step - 1) / steps_per_epoch + 1;
            val_loss = evaluate(m, arena, ids + n_train, n_val, 64, T);
            if (isnan(val_loss)) { fprintf(stderr, "evaluation: %s\n", dl_error()); goto done; }
            printf("epoch %2d  step %4d/%d  loss %.4f  val_loss %.4f (%.2f bits/char)  %.0f s\n", epoch, step, total,
                   loss_sum / n, val_loss, val_loss / log(2.0), difftime(time(NULL), t0));
            fflush(stdout);
            loss_sum = 0;
            /* a sample at the end, and after every sample_every-th epoch or else after 1, 2, 4, 8, ... */
            if (step == total || (sample_every > 0 ? epoch % sample_every == 0 : (epoch & (epoch - 1)) == 0)) {
                snprintf(title, sizeof title, "sample after epoch %d (temperature %.2g)", epoch, temperature);
                if (show_sample(title, m, arena, &v, prime, sample_len, T, temperature, &sample_rng, ctx) != 0) {
                    fprintf(stderr, "%s\n", dl_error());
                    goto done;
                }
            }
        }
    }
    printf("trained %d steps in %.0f s (%.0f s of CPU time)\n", total, difftime(time(NULL), t0), seconds_since(c0));
    printf("val bits per character: %.4f\n", val_loss / log(2.0));
    printf("val_loss=%.4f\n", val_loss);
    rc = 0;

done:
    dl_arena_use(NULL);
    dl_arena_free(arena);
    dl_model_free(m);
    free(text);
    free(ids);
    free(ctx);
    dl_threads_shutdown();
    return rc;
}
