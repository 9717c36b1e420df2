/* libFuzzer harness for the CSV parser dl_csv_parse (built only on request):

     make fuzz FUZZ=fuzz_csv FUZZ_TIME=300      (seeds: tests/fuzz_corpus/fuzz_csv/)

   The first input byte picks the options (header, label column, no_label, regression, delimiter);
   the rest is the text. Any crash, sanitizer report, leak, failure without a message, a dataset
   that breaks its documented invariants (finite features, labels in [0, num_classes)), or an
   allocation above 8x the input (+4 KiB) is a bug. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "fuzz_alloc.h" /* an allocation over 8 bytes per input byte + 4 KiB aborts */
#define DL_IMPLEMENTATION
#include "../dl_nn.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const char delims[4] = {0, ';', '\t', ' '};
    dl_csv_opts o;
    dl_dataset *ds;
    size_t i;
    if (size < 1) return 0;
    memset(&o, 0, sizeof o);
    o.header = data[0] & 1;
    o.no_label = (data[0] >> 1) & 1;
    o.regression = (data[0] >> 2) & 1;
    o.delimiter = delims[(data[0] >> 3) & 3];
    o.label_col = (int)((data[0] >> 5) & 7) - 4; /* -4 .. 3 */
    fuzz_limit = 8 * size + 4096;
    ds = dl_csv_parse((const char *)data + 1, size - 1, &o);
    if (!ds && dl_error()[0] == 0) abort(); /* every failure has a message */
    if (ds) {
        const float *x = dl_f32(ds->x);
        if (!x || ds->x->ndim != 2 || ds->x->shape[0] != ds->n) abort();
        for (i = 0; i < ds->x->numel; i++) if (!isfinite(x[i])) abort(); /* documented: finite */
        if (ds->y && !o.regression)
            for (i = 0; i < ds->y->numel; i++)
                if (dl_i32(ds->y)[i] < 0 || dl_i32(ds->y)[i] >= ds->num_classes) abort();
        if (ds->y && o.regression)
            for (i = 0; i < ds->y->numel; i++) if (!isfinite(dl_f32(ds->y)[i])) abort();
    }
    dl_dataset_free(ds);
    dl_clear_error();
    dl_arena_free_default();
    return 0;
}
