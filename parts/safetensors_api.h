/* ---- Files: safetensors ------------------------------------------------------------------------
   The format of Hugging Face's `safetensors` (also what PyTorch, JAX and Keras 3 read and write):
       8 bytes   N, little-endian u64: the length of the header
       N bytes   UTF-8 JSON object: "name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [b, e]}
                 for every tensor, plus an optional "__metadata__": {"key": "value", ...} of strings
       the rest  raw little-endian row-major tensor data; tensor bytes are [b, e) of this part

   Loading validates everything before trusting it, with the rules of the reference reader: the
   header is at most 100,000,000 bytes and starts with '{', is strict JSON (trailing spaces are
   allowed), the tensors' byte ranges tile the data part exactly (no gap, no overlap, ending at the
   end of the file) and e - b == numel * element size. dl also rejects what the reference leaves
   ambiguous: duplicate names or metadata keys, strings containing \u0000, more than DL_MAX_DIMS
   dimensions or a dimension above INT_MAX. A truncated, corrupt or hostile file gives NULL and
   dl_error(), never a crash, and never an allocation bigger than a small multiple of the file.

   dtypes on load: F32, I32, U8 stay as they are; BOOL loads as U8 (0/1); F16, BF16 and F64 are
   converted to F32 (F64 rounds to nearest, overflowing to +-inf like a C cast); I64 is converted to
   I32 and a value outside the int32 range is an error. I8, I16, U16, U32, U64 and the 8-bit float
   types are rejected with a message.

   Writing produces the same bytes as the Python writer (safetensors.numpy.save_file) for the same
   tensors and at most one metadata entry: header in compact JSON, "__metadata__" first, tensors
   ordered by dtype (F32, I32, U8) then by name (bytewise), header padded with spaces to a multiple
   of 8 bytes so that the data part starts 8-byte aligned. Differences: metadata is written in the
   given order (Python's writer uses hash order), and a 0-d tensor has shape [] (safetensors.numpy
   writes [1]; both load in Python). Byte order is handled on any host, little- or big-endian.

   Ownership: a dl_safetensors owns all its tensors, names and strings (one allocation); what the
   getters return is borrowed and lives until dl_safetensors_free. The loaded tensors are plain
   contiguous CPU tensors; to train one, copy it (dl_tensor_clone, or dl_copy into a parameter).

     dl_safetensors *st = dl_safetensors_load("model.safetensors");
     if (!st) { printf("%s\n", dl_error()); return 1; }
     dl_tensor *w = dl_safetensors_get(st, "fc1.weight");      // NULL when absent
     const char *arch = dl_safetensors_meta(st, "arch");        // NULL when absent
     dl_safetensors_free(st);

     const char *names[] = {"w", "b"};  dl_tensor *ts[] = {w, b};
     const char *keys[] = {"format"}, *values[] = {"dl"};
     if (dl_safetensors_save("out.safetensors", 2, names, ts, 1, keys, values) != 0) ...

   With DL_NO_STDIO only the memory functions (parse, serialize) exist. */

typedef struct dl_safetensors dl_safetensors;   /* a loaded file: tensors + metadata, owns all memory */

#ifndef DL_NO_STDIO
DLDEF dl_safetensors *dl_safetensors_load(const char *path);  /* owned: dl_safetensors_free; NULL + dl_error() on any problem */
#endif
DLDEF dl_safetensors *dl_safetensors_parse(const void *bytes, size_t size); /* a whole file in memory (copied); owned */
DLDEF void dl_safetensors_free(dl_safetensors *st);               /* NULL is fine */

DLDEF int dl_safetensors_count(const dl_safetensors *st);        /* number of tensors */
DLDEF const char *dl_safetensors_name(const dl_safetensors *st, int i); /* i-th name in bytewise sorted order; borrowed */
DLDEF dl_tensor *dl_safetensors_get(const dl_safetensors *st, const char *name); /* borrowed, owned by st; NULL if absent */
DLDEF int dl_safetensors_meta_count(const dl_safetensors *st);   /* number of __metadata__ entries */
DLDEF const char *dl_safetensors_meta_key(const dl_safetensors *st, int i); /* i-th key, sorted; borrowed */
DLDEF const char *dl_safetensors_meta(const dl_safetensors *st, const char *key); /* borrowed; NULL if absent */

/* Writing: n tensors (any strides; written in logical row-major order) under n names, plus n_meta
   metadata strings (n_meta may be 0 and the arrays NULL). Names must be distinct, valid UTF-8,
   not "__metadata__"; tensors must be on the CPU. */
#ifndef DL_NO_STDIO
DLDEF int dl_safetensors_save(const char *path, int n, const char *const *names, dl_tensor *const *tensors,
                              int n_meta, const char *const *meta_keys, const char *const *meta_values); /* 0 on success, else -1 + dl_error() */
#endif
/* The same file in memory: returns its size in bytes and writes it to out when out != NULL and
   capacity >= that size (call once with out == NULL to learn the size). Returns 0 on error. */
DLDEF size_t dl_safetensors_serialize(int n, const char *const *names, dl_tensor *const *tensors,
                                      int n_meta, const char *const *meta_keys, const char *const *meta_values,
                                      void *out, size_t capacity);
