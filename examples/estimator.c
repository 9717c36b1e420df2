/* examples/estimator.c - premade estimators (tf.estimator style) on Fashion-MNIST.

   Trains a LinearClassifier and then a DNNClassifier (784 -> 256 -> 128 -> 10, relu, dropout
   0.1) on Fashion-MNIST's 28x28 images taken as 784 numeric features, each with TF's default
   optimizer (Adagrad 0.05 for the DNN; for the linear model Adagrad at min(0.2, 1/sqrt(784)),
   which is what TF's default Ftrl computes without regularization). Training and evaluation
   alternate once per epoch, as tf.estimator.train_and_evaluate does; the DNN is then exported
   (to a file with --export, else in memory), loaded back as a plain model and served with
   dl_predict, whose accuracy must equal the estimator's.

   The data: by default the small subset shipped in data/fashion-mnist (3000 training and 1000
   test images; a few seconds). The full set (60000 + 10000): Debian's dataset-fashion-mnist,
   --data /usr/share/datasets/fashion-mnist (or the four original IDX files in any folder).

   Build and run:
       cc -std=c99 -O2 -I. examples/estimator.c -o build/estimator -lm -lpthread && ./build/estimator
   Flags: --data DIR (default data/fashion-mnist), --epochs N (default 10), --steps N (batches
          per epoch instead of one pass over the data), --seed S (weights and shuffling,
          default 1), --threads T (threads for matrix products; default: DL_NUM_THREADS or all
          CPUs), --export PATH (write the DNN's serving model there).
   Prints each epoch's evaluation and, last, "test_accuracy=..." (the DNN's, on the test set). */
#define DL_IMPLEMENTATION
#include "dl_nn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int parse_flag(int argc, char **argv, int *i, const char *flag, const char **value) {
    if (strcmp(argv[*i], flag) != 0) return 0;
    if (*i + 1 >= argc) { fprintf(stderr, "%s needs a value\n", flag); exit(2); }
    *value = argv[++*i];
    return 1;
}

/* Trains e for `epochs` rounds of `steps` batches, evaluating on test after each. */
static int train_and_evaluate(const char *name, dl_estimator *e, const dl_dataset *train, const dl_dataset *test,
                              int epochs, long steps) {
    int epoch, i;
    for (epoch = 1; epoch <= epochs; epoch++) {
        dl_logs r;
        if (dl_estimator_train(e, train, steps) != 0 || dl_estimator_evaluate(e, test, &r) != 0) {
            fprintf(stderr, "%s: %s\n", name, dl_error());
            return -1;
        }
        printf("%-6s epoch %d/%d:", name, epoch, epochs);
        for (i = 0; i < r.n; i++) {
            if (strcmp(r.names[i], "average_loss") == 0) continue;   /* the same as loss here */
            if (strcmp(r.names[i], "global_step") == 0) printf("  %s %.0f", r.names[i], r.values[i]);
            else printf("  %s %.4f", r.names[i], r.values[i]);
        }
        printf("\n");
        fflush(stdout);
    }
    return 0;
}

/* Accuracy of a plain model's class probabilities [N, 10] on ds. */
static double served_accuracy(dl_model *m, const dl_dataset *ds) {
    dl_tensor *p = dl_predict(m, ds->x, 32);
    int i, k, correct = 0, C;
    if (!p) return -1;
    C = p->shape[1];
    for (i = 0; i < ds->n; i++) {
        const float *row = dl_f32(p) + (size_t)i * (size_t)C;
        int best = 0;
        for (k = 1; k < C; k++) if (row[k] > row[best]) best = k;
        correct += best == dl_i32(ds->y)[i];
    }
    dl_tensor_free(p);
    return (double)correct / ds->n;
}

int main(int argc, char **argv) {
    static const int hidden[] = {256, 128};
    const char *data = "data/fashion-mnist", *export_path = NULL, *v;
    int epochs = 10, threads = 0, i, rc = 1;
    long steps = 0;
    uint64_t seed = 1;
    dl_dataset *train = NULL, *test = NULL;
    dl_estimator *lin = NULL, *dnn = NULL;
    dl_model *served = NULL;
    dl_logs r;
    double acc, acc_served;

    for (i = 1; i < argc; i++) {
        if (parse_flag(argc, argv, &i, "--data", &data) || parse_flag(argc, argv, &i, "--export", &export_path)) continue;
        if (parse_flag(argc, argv, &i, "--epochs", &v)) { epochs = atoi(v); continue; }
        if (parse_flag(argc, argv, &i, "--steps", &v)) { steps = atol(v); continue; }
        if (parse_flag(argc, argv, &i, "--seed", &v)) { seed = strtoull(v, NULL, 10); continue; }
        if (parse_flag(argc, argv, &i, "--threads", &v)) { threads = atoi(v); continue; }
        fprintf(stderr, "usage: %s [--data DIR] [--epochs N] [--steps N] [--seed S] [--threads T] [--export PATH]\n", argv[0]);
        return 2;
    }
    if (epochs < 1 || steps < 0) { fprintf(stderr, "--epochs must be >= 1 and --steps >= 0\n"); return 2; }
    if (threads > 0) dl_set_num_threads(threads);

    /* x f32 [N, 1, 28, 28] in [0, 1]: the estimators flatten it to 784 features. */
    if (!(train = dl_fashion_mnist_load(data, 1)) || !(test = dl_fashion_mnist_load(data, 0))) {
        fprintf(stderr, "%s\n", dl_error());
        goto done;
    }
    printf("Fashion-MNIST from %s: %d training and %d test images\n", data, train->n, test->n);

    /* tf.estimator.LinearClassifier(feature_columns=[numeric_column('x', [28, 28])], n_classes=10) */
    lin = dl_linear_classifier(784, &(dl_estimator_opts){.n_classes = 10, .seed = seed});
    if (!lin) { fprintf(stderr, "%s\n", dl_error()); goto done; }
    if (train_and_evaluate("linear", lin, train, test, epochs, steps) != 0) goto done;

    /* tf.estimator.DNNClassifier(hidden_units=[256, 128], n_classes=10, dropout=0.1) */
    dnn = dl_dnn_classifier(784, &(dl_estimator_opts){.hidden_units = hidden, .n_hidden = 2, .n_classes = 10,
                                                      .dropout = 0.1f, .seed = seed});
    if (!dnn) { fprintf(stderr, "%s\n", dl_error()); goto done; }
    if (train_and_evaluate("dnn", dnn, train, test, epochs, steps) != 0) goto done;
    if (dl_estimator_evaluate(dnn, test, &r) != 0) { fprintf(stderr, "%s\n", dl_error()); goto done; }
    acc = dl_logs_get(&r, "accuracy");

    /* Export the serving model (probabilities out) and serve it as a plain model. */
    if (export_path) {
        if (dl_estimator_export(dnn, export_path) != 0 || !(served = dl_model_load(export_path))) {
            fprintf(stderr, "%s\n", dl_error());
            goto done;
        }
        printf("exported to %s\n", export_path);
    } else {
        size_t size = dl_model_serialize(dl_estimator_serving_model(dnn), 0, NULL, 0);
        void *bytes = size ? malloc(size) : NULL;
        if (bytes && dl_model_serialize(dl_estimator_serving_model(dnn), 0, bytes, size) == size)
            served = dl_model_parse(bytes, size);
        free(bytes);
        if (!served) { fprintf(stderr, "export in memory: %s\n", dl_error()); goto done; }
        printf("exported in memory (%lu bytes)\n", (unsigned long)size);
    }
    acc_served = served_accuracy(served, test);
    printf("served model: accuracy %.4f (%s the estimator's)\n", acc_served, acc_served == acc ? "equals" : "DIFFERS FROM");
    if (acc_served != acc) goto done;
    printf("test_accuracy=%.4f\n", acc);
    rc = 0;
done:
    dl_model_free(served);
    dl_estimator_free(lin);
    dl_estimator_free(dnn);
    dl_dataset_free(train);
    dl_dataset_free(test);
    dl_threads_shutdown();
    return rc;
}
