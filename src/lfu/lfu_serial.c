/* PMLF: the binary form of an LFU table, what `lfu.ld` reads from SRAM and
 * what fitting tools write. Little-endian, fixed 144-byte header then the
 * fp32 coefficients; the reader checks every field against the buffer length
 * before touching it and names the byte offset of the first problem.
 * Version 2 (this one) added the tail block; version 1 images are refused.
 *
 *   0 "PMLF"   4 u16 version (2)   6 u8 mode   7 u8 form   8 u8 oor   9 u8 degree
 *  10 u8 tail.kind   11 u8 tail.form   12 u32 segments   16 char name[32] (NUL-padded)
 *  48 f32 x_min  52 x_max  56 below_value  60 above_value  64 below_slope  68 above_slope
 *  72 f32 param[8]           104 u32 coefficient count = (segments + h_segments + e_segments)*(degree+1)
 * 108 u16 tail.h_segments  110 u16 tail.e_segments
 * 112 f32 tail.a_scale  116 h_min  120 h_max  124 e_min  128 e_max  132 exp_c  136 exp_l_hi  140 exp_l_lo
 * 144 f32 coeffs[count]: main segments, then h's, then exp's */
#include "lfu_internal.h"
#include "polymorph/numerics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static uint16_t get_u16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

size_t pm_lfu_table_serialized_size(const pm_lfu_table *t)
{
    if (!t) return 0;
    return PM_LFU_SERIAL_HEADER_BYTES + 4 * pm_lfu_coeff_count(t);
}

pm_status pm_lfu_table_serialize(const pm_lfu_table *t, uint8_t *dst, size_t cap, size_t *written, pm_error *err)
{
    if (written) *written = 0;
    pm_status st = pm_lfu_table_validate(t, err);
    if (st != PM_OK) return st;
    size_t need = pm_lfu_table_serialized_size(t);
    if (!dst || cap < need)
        return pm_error_set(err, PM_ERR_INVALID, "lfu table '%s': serialising needs %zu bytes, buffer holds %zu", t->name,
                            need, dst ? cap : (size_t)0);
    memset(dst, 0, PM_LFU_SERIAL_HEADER_BYTES);
    memcpy(dst, "PMLF", 4);
    put_u16(dst + 4, PM_LFU_SERIAL_VERSION);
    dst[6] = t->mode;
    dst[7] = t->form;
    dst[8] = t->oor;
    dst[9] = t->degree;
    dst[10] = t->tail.kind;
    dst[11] = t->tail.form;
    put_u32(dst + 12, t->segments);
    size_t name_len = 0;
    while (name_len < sizeof t->name && t->name[name_len]) name_len++;
    memcpy(dst + 16, t->name, name_len); /* the rest stays NUL */
    const float fields[6] = {t->x_min, t->x_max, t->below_value, t->above_value, t->below_slope, t->above_slope};
    for (int i = 0; i < 6; i++) put_u32(dst + 48 + 4 * i, pm_f32_bits(fields[i]));
    for (int i = 0; i < 8; i++) put_u32(dst + 72 + 4 * i, pm_f32_bits(t->param[i]));
    put_u16(dst + 108, t->tail.h_segments);
    put_u16(dst + 110, t->tail.e_segments);
    const float tail[8] = {t->tail.a_scale, t->tail.h_min, t->tail.h_max, t->tail.e_min,
                           t->tail.e_max, t->tail.exp_c, t->tail.exp_l_hi, t->tail.exp_l_lo};
    for (int i = 0; i < 8; i++) put_u32(dst + 112 + 4 * i, pm_f32_bits(tail[i]));
    size_t count = pm_lfu_coeff_count(t);
    put_u32(dst + 104, (uint32_t)count);
    for (size_t i = 0; i < count; i++) put_u32(dst + PM_LFU_SERIAL_HEADER_BYTES + 4 * i, pm_f32_bits(t->coeffs[i]));
    if (written) *written = need;
    return PM_OK;
}

static pm_status bad(pm_error *err, size_t offset, const char *field, const char *what)
{
    return pm_error_set(err, PM_ERR_FORMAT, "PMLF byte %zu (%s): %s", offset, field, what);
}

pm_status pm_lfu_table_deserialize(const uint8_t *src, size_t len, pm_lfu_table *out, pm_error *err)
{
    if (!out) return pm_error_set(err, PM_ERR_INVALID, "PMLF: NULL output table");
    memset(out, 0, sizeof *out);
    if (!src && len) return pm_error_set(err, PM_ERR_INVALID, "PMLF: NULL buffer");
    char what[96];
    if (len < 4 || memcmp(src, "PMLF", 4) != 0)
        return bad(err, 0, "magic", len < 4 ? "buffer shorter than the 4-byte magic" : "magic is not \"PMLF\"");
    if (len < PM_LFU_SERIAL_HEADER_BYTES) {
        snprintf(what, sizeof what, "header needs %d bytes, buffer has %zu", PM_LFU_SERIAL_HEADER_BYTES, len);
        return bad(err, len, "header", what);
    }
    uint16_t version = get_u16(src + 4);
    if (version != PM_LFU_SERIAL_VERSION) {
        snprintf(what, sizeof what, "version %u, this build reads %d", version, PM_LFU_SERIAL_VERSION);
        return bad(err, 4, "version", what);
    }

    pm_lfu_table t;
    memset(&t, 0, sizeof t);
    t.mode = src[6];
    t.form = src[7];
    t.oor = src[8];
    t.degree = src[9];
    t.tail.kind = src[10];
    t.tail.form = src[11];
    t.tail.h_segments = get_u16(src + 108);
    t.tail.e_segments = get_u16(src + 110);
    float *tail[8] = {&t.tail.a_scale, &t.tail.h_min, &t.tail.h_max, &t.tail.e_min,
                      &t.tail.e_max, &t.tail.exp_c, &t.tail.exp_l_hi, &t.tail.exp_l_lo};
    for (int i = 0; i < 8; i++) *tail[i] = pm_f32_from_bits(get_u32(src + 112 + 4 * i));
    t.segments = get_u32(src + 12);
    memcpy(t.name, src + 16, sizeof t.name);
    float *fields[6] = {&t.x_min, &t.x_max, &t.below_value, &t.above_value, &t.below_slope, &t.above_slope};
    for (int i = 0; i < 6; i++) *fields[i] = pm_f32_from_bits(get_u32(src + 48 + 4 * i));
    for (int i = 0; i < 8; i++) t.param[i] = pm_f32_from_bits(get_u32(src + 72 + 4 * i));

    /* Header fields first (coeffs NULL), so counts are trusted before any
     * size arithmetic uses them. */
    pm_lfu_problem p;
    if (pm_lfu_check(&t, &p)) return bad(err, p.offset, p.field, p.what);
    size_t count = pm_lfu_coeff_count(&t);
    uint32_t stored = get_u32(src + 104);
    if (stored != count) {
        snprintf(what, sizeof what, "count %u, but %u+%u+%u segments of degree %u need %zu", stored, t.segments,
                 (unsigned)t.tail.h_segments, (unsigned)t.tail.e_segments, (unsigned)t.degree, count);
        return bad(err, 104, "coeff_count", what);
    }
    size_t need = PM_LFU_SERIAL_HEADER_BYTES + 4 * count;
    if (len < need) {
        snprintf(what, sizeof what, "%zu coefficients need %zu bytes in all, buffer has %zu", count, need, len);
        return bad(err, len, "coeffs", what);
    }
    t.coeffs = malloc(count * sizeof *t.coeffs);
    if (!t.coeffs) return pm_error_set(err, PM_ERR_NOMEM, "PMLF: no memory for %zu coefficients", count);
    for (size_t i = 0; i < count; i++) t.coeffs[i] = pm_f32_from_bits(get_u32(src + PM_LFU_SERIAL_HEADER_BYTES + 4 * i));
    if (pm_lfu_check(&t, &p)) {
        free(t.coeffs);
        return bad(err, p.offset, p.field, p.what);
    }
    *out = t;
    return PM_OK;
}
