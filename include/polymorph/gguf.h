/* Polymorph models layer: a strict GGUF v3 reader. The file is memory-mapped
 * (or read from a caller's buffer), every header field is validated before it
 * is used, and an error names the byte offset and the field. Tensor data stays
 * in the mapping; pm_gguf_tensor_to_f32 dequantises any supported type. See
 * docs/gguf.md. */
#ifndef POLYMORPH_GGUF_H
#define POLYMORPH_GGUF_H

#include "polymorph/base.h"
#include "polymorph/numerics.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Metadata value types, numbered as the GGUF specification numbers them. */
typedef enum pm_gguf_type {
    PM_GGUF_U8 = 0,
    PM_GGUF_I8 = 1,
    PM_GGUF_U16 = 2,
    PM_GGUF_I16 = 3,
    PM_GGUF_U32 = 4,
    PM_GGUF_I32 = 5,
    PM_GGUF_F32 = 6,
    PM_GGUF_BOOL = 7,
    PM_GGUF_STRING = 8,
    PM_GGUF_ARRAY = 9,
    PM_GGUF_U64 = 10,
    PM_GGUF_I64 = 11,
    PM_GGUF_F64 = 12,
    PM_GGUF_TYPE_COUNT
} pm_gguf_type;

/* A string inside the file: not NUL-terminated. */
typedef struct pm_gguf_str {
    const char *ptr;
    uint64_t len;
} pm_gguf_str;

/* One key/value pair. For scalars, data points at the little-endian value in
 * the file; for STRING at its 8-byte length; for ARRAY at the first element
 * (arr_type, arr_n say what follows; string arrays are walked with
 * pm_gguf_kv_string). offset is the key's byte offset in the file. */
typedef struct pm_gguf_kv {
    pm_gguf_str key;
    pm_gguf_type type;
    pm_gguf_type arr_type; /* ARRAY only */
    uint64_t arr_n;        /* ARRAY only */
    const uint8_t *data;
    uint64_t offset;
} pm_gguf_kv;

/* ggml tensor types the reader accepts (numbered as ggml numbers them). */
typedef enum pm_ggml_type {
    PM_GGML_F32 = 0,
    PM_GGML_F16 = 1,
    PM_GGML_Q4_0 = 2,
    PM_GGML_Q4_1 = 3,
    PM_GGML_Q8_0 = 8,
    PM_GGML_Q4_K = 12,
    PM_GGML_Q6_K = 14,
    PM_GGML_BF16 = 30,
} pm_ggml_type;

typedef struct pm_gguf_tensor {
    pm_gguf_str name;
    uint32_t n_dims;
    uint64_t ne[4];       /* ne[0] is the contiguous (row) dimension, as in ggml */
    uint32_t ggml_type;   /* a pm_ggml_type */
    pm_format format;     /* the same type as a Polymorph storage format */
    uint64_t offset;      /* absolute byte offset of the data in the file */
    uint64_t bytes;       /* bytes of data */
    const uint8_t *data;  /* points into the mapping */
} pm_gguf_tensor;

typedef struct pm_gguf pm_gguf;

/* Map and validate a file: magic, version 3, counts, string lengths, value
 * types, array sizes, dimensions, tensor types, data offsets, alignment
 * (general.alignment, default 32) and every tensor's extent against the file
 * length. Errors: "<path>: byte 1234: tensor 'blk.0.attn_q.weight': ..." */
pm_status pm_gguf_open(const char *path, pm_gguf **out, pm_error *err);
/* The same over a caller's buffer (kept by reference; it must outlive g).
 * name is used in messages. */
pm_status pm_gguf_open_memory(const void *data, size_t len, const char *name, pm_gguf **out, pm_error *err);
void pm_gguf_close(pm_gguf *g);

uint32_t pm_gguf_version(const pm_gguf *g);
size_t pm_gguf_kv_count(const pm_gguf *g);
const pm_gguf_kv *pm_gguf_kv_at(const pm_gguf *g, size_t i);
const pm_gguf_kv *pm_gguf_find(const pm_gguf *g, const char *key); /* NULL when absent */

/* Typed getters. Each returns PM_OK, or PM_ERR_INVALID when the key is absent
 * and PM_ERR_FORMAT when it has another type (the message names key and
 * type). Integer getters accept any integer type whose value fits. */
pm_status pm_gguf_get_u64(const pm_gguf *g, const char *key, uint64_t *out, pm_error *err);
pm_status pm_gguf_get_u32(const pm_gguf *g, const char *key, uint32_t *out, pm_error *err);
pm_status pm_gguf_get_f32(const pm_gguf *g, const char *key, float *out, pm_error *err); /* F32 or F64 */
pm_status pm_gguf_get_bool(const pm_gguf *g, const char *key, bool *out, pm_error *err);
pm_status pm_gguf_get_str(const pm_gguf *g, const char *key, pm_gguf_str *out, pm_error *err);
/* An array's element type and length (PM_ERR_FORMAT when not an array). */
pm_status pm_gguf_get_array(const pm_gguf *g, const char *key, pm_gguf_type *elem, uint64_t *n, const pm_gguf_kv **kv,
                            pm_error *err);
/* Element i of an array kv: strings (i-th string, O(1) after open: the reader
 * indexes string arrays), and numeric elements widened. */
pm_gguf_str pm_gguf_kv_string(const pm_gguf_kv *kv, uint64_t i);
double pm_gguf_kv_number(const pm_gguf_kv *kv, uint64_t i);

size_t pm_gguf_tensor_count(const pm_gguf *g);
const pm_gguf_tensor *pm_gguf_tensor_at(const pm_gguf *g, size_t i);
const pm_gguf_tensor *pm_gguf_tensor_find(const pm_gguf *g, const char *name); /* NULL when absent */
/* Number of elements of a tensor. */
uint64_t pm_gguf_tensor_elems(const pm_gguf_tensor *t);
/* Dequantise the whole tensor to fp32 (dst holds pm_gguf_tensor_elems). */
pm_status pm_gguf_tensor_to_f32(const pm_gguf_tensor *t, float *dst, pm_error *err);

/* "F32", "Q4_K", ... for a ggml type number ("?" when unknown). */
const char *pm_ggml_type_name(uint32_t ggml_type);
const char *pm_gguf_type_name(pm_gguf_type t);

#ifdef __cplusplus
}
#endif
#endif
