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
              dl_adagrad(min(0.2, 1/sqrt(F)), 0.1, 0). Ftrl's l1/l2 are not available.

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
    dl_act activation;          /* DNN hidden layers; 0 (DL_LINEAR) means DL_RELU, TF's default */
    float dropout;              /* DNN: rate of a Dropout after each hidden layer, in [0, 1); 0 none */
    int batch_size;             /* 0 means 32 */
    int no_shuffle;             /* 1: batches in the data set's order */
    uint64_t seed;              /* dl_nn_seed(seed) before the weights are made (so it reseeds the
                                   process-wide layer generator), and the shuffle seed */
    int log_every;              /* > 0: train prints "global_step N: loss = X" every log_every
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
