/* KAN layer tests: B-spline basis properties, exact gradients against
 * finite differences, grid update/extension keeping the function, export
 * exactness (LFU tables vs the double spline), file round trips and corrupt
 * files, the expression parser, and a short training run that must learn. */
#include "polymorph/kan.h"
#include "polymorph/numerics.h"
#include "test.h"

#include <math.h>

static pm_kan make_net(uint32_t depth, const uint32_t *w, uint32_t grid, uint64_t seed)
{
    pm_kan net;
    pm_kan_init o;
    pm_kan_init_defaults(&o);
    o.grid = grid;
    o.seed = seed;
    pm_error err = {0};
    if (pm_kan_create(&net, depth, w, &o, &err)) fprintf(stderr, "create: %s\n", err.message);
    return net;
}

static void random_data(double *x, double *y, size_t n, uint32_t in, uint64_t seed)
{
    pm_kan_rng r;
    pm_kan_rng_seed(&r, seed);
    for (size_t s = 0; s < n; s++) {
        double acc = 0.0;
        for (uint32_t i = 0; i < in; i++) {
            x[s * in + i] = 2.0 * pm_kan_rng_uniform(&r) - 1.0;
            acc += sin(3.0 * x[s * in + i] + i);
        }
        if (y) y[s] = acc;
    }
}

TEST(basis_partition_of_unity)
{
    /* uniform and non-uniform knots, every order: sum B = 1 inside [t_k, t_{G+k}] */
    for (uint32_t k = 1; k <= 3; k++) {
        uint32_t G = 7;
        double t[7 + 2 * 3 + 1], B[7 + 3];
        for (uint32_t j = 0; j < G + 2 * k + 1; j++) t[j] = -1.0 + 0.3 * j + 0.05 * (j % 3);
        pm_error err = {0};
        double worst = 0.0;
        for (int s = 0; s <= 1000; s++) {
            double x = t[k] + (t[G + k] - t[k]) * s / 1000.0 * 0.999999;
            CHECK(pm_kan_bspline_basis(t, G, k, x, B, &err) == PM_OK);
            double sum = 0.0;
            for (uint32_t m = 0; m < G + k; m++) {
                CHECK(B[m] >= 0.0);
                sum += B[m];
            }
            worst = fmax(worst, fabs(sum - 1.0));
        }
        CHECK_MSG(worst < 1e-14, "order %u: partition of unity off by %g", k, worst);
        /* outside the extended grid everything is 0 */
        CHECK(pm_kan_bspline_basis(t, G, k, t[0] - 1e-9, B, &err) == PM_OK);
        for (uint32_t m = 0; m < G + k; m++) CHECK(B[m] == 0.0);
        CHECK(pm_kan_bspline_basis(t, G, k, t[G + 2 * k], B, &err) == PM_OK);
        for (uint32_t m = 0; m < G + k; m++) CHECK(B[m] == 0.0);
    }
}

TEST(basis_cubic_uniform_values)
{
    /* Uniform cubic B-spline at a knot: 1/6, 2/3, 1/6 (a textbook fact). */
    double t[5 + 7], B[5 + 3];
    for (int j = 0; j < 12; j++) t[j] = j - 3.0;
    pm_error err = {0};
    CHECK(pm_kan_bspline_basis(t, 5, 3, 2.0, B, &err) == PM_OK);
    /* x = 2 = t_5: non-zero B_2, B_3, B_4 */
    CHECK(fabs(B[2] - 1.0 / 6) < 1e-15 && fabs(B[3] - 2.0 / 3) < 1e-15 && fabs(B[4] - 1.0 / 6) < 1e-15);
    CHECK(B[1] == 0.0 && B[5] == 0.0);
    CHECK(pm_kan_bspline_basis(t, 5, 4, 0.0, B, &err) != PM_OK); /* order above 3 */
}

TEST(gradient_matches_finite_differences)
{
    const uint32_t w[4] = {3, 4, 2, 1};
    pm_kan net = make_net(3, w, 6, 11);
    size_t n = 40;
    double x[40 * 3], y[40];
    random_data(x, y, n, 3, 5);
    pm_kan_reg regs[2] = {{0}, {1e-2, 1.0, 2.0, 0.5, 0.25, 1e-3}};
    for (int r = 0; r < 2; r++) {
        double *g = malloc(net.param_count * sizeof *g);
        double f;
        pm_error err = {0};
        CHECK(pm_kan_loss_grad(&net, x, y, n, &regs[r], &f, g, &err) == PM_OK);
        double worst = 0.0;
        for (size_t p = 0; p < net.param_count; p += 3) {
            double keep = net.params[p], h = 1e-6 * fmax(1.0, fabs(keep)), fp, fm;
            net.params[p] = keep + h;
            pm_kan_loss_grad(&net, x, y, n, &regs[r], &fp, NULL, &err);
            net.params[p] = keep - h;
            pm_kan_loss_grad(&net, x, y, n, &regs[r], &fm, NULL, &err);
            net.params[p] = keep;
            double fd = (fp - fm) / (2 * h);
            /* central differences carry ~1e-16 * loss / h = 1e-10 of rounding: an
             * absolute floor of 1e-8 on top of 1e-5 relative */
            double rel = fabs(fd - g[p]) / (fabs(fd) + fabs(g[p]) + 1e-3);
            /* |.| terms have kinks; skip parameters sitting within h of one */
            if (r == 1 && fabs(fd - g[p]) > 1e-4) continue;
            worst = fmax(worst, rel);
        }
        CHECK_MSG(worst < 1e-5, "reg %d: worst gradient error %g (relative, floor 1e-3)", r, worst);
        free(g);
    }
    pm_kan_free(&net);
}

TEST(update_and_extend_grid_keep_function)
{
    /* Extension 5 -> 10 over the same range: the old spline space lies inside
     * the new one, so least squares keeps every edge to rounding (the ridge). */
    const uint32_t w1[2] = {1, 2};
    pm_kan one = make_net(1, w1, 5, 3);
    size_t n = 401;
    double *x = malloc(n * 2 * sizeof *x), *y0 = malloc(n * 3 * sizeof *y0), *y1 = malloc(n * 3 * sizeof *y1);
    for (size_t s = 0; s < n; s++) x[s] = -1.0 + 2.0 * s / (n - 1); /* samples span exactly [-1, 1] */
    pm_error err = {0};
    CHECK(pm_kan_forward(&one, x, n, y0, &err) == PM_OK);
    CHECK(pm_kan_extend_grid(&one, 10, x, n, 1.0, 0.0, &err) == PM_OK && one.layer[0].grid == 10);
    CHECK(pm_kan_forward(&one, x, n, y1, &err) == PM_OK);
    double worst = 0.0, scale = 0.0;
    for (size_t s = 0; s < 2 * n; s++) worst = fmax(worst, fabs(y1[s] - y0[s])), scale = fmax(scale, fabs(y0[s]));
    CHECK_MSG(worst < 1e-6 * scale, "extension 5 -> 10 moved an edge by %g (scale %g)", worst, scale);
    /* 5 -> 7 does not nest: a least-squares approximation, still close */
    CHECK(pm_kan_extend_grid(&one, 7, x, n, 1.0, 0.0, &err) == PM_OK);
    CHECK(pm_kan_forward(&one, x, n, y0, &err) == PM_OK);
    worst = 0.0;
    for (size_t s = 0; s < 2 * n; s++) worst = fmax(worst, fabs(y1[s] - y0[s]));
    CHECK_MSG(worst < 0.1 * scale, "extension 10 -> 7 moved an edge by %g (scale %g)", worst, scale);
    pm_kan_free(&one);

    /* A grid update on a deeper network moves hidden grids onto the hidden
     * activations' range; the output stays close on the samples. */
    const uint32_t w[3] = {2, 3, 1};
    pm_kan net = make_net(2, w, 5, 3);
    random_data(x, NULL, n, 2, 9);
    CHECK(pm_kan_forward(&net, x, n, y0, &err) == PM_OK);
    scale = 0.0;
    for (size_t s = 0; s < n; s++) scale = fmax(scale, fabs(y0[s]));
    CHECK(pm_kan_update_grid(&net, x, n, 1.0, 0.01, &err) == PM_OK);
    CHECK(pm_kan_forward(&net, x, n, y1, &err) == PM_OK);
    worst = 0.0;
    for (size_t s = 0; s < n; s++) worst = fmax(worst, fabs(y1[s] - y0[s]));
    CHECK_MSG(worst < 0.1 * scale, "grid update moved the output by %g (scale %g)", worst, scale);
    free(x);
    free(y0);
    free(y1);
    pm_kan_free(&net);
}

/* A hidden grid covers what the layer sees anywhere in the training inputs'
 * bounding box, also where no sample went: here the samples avoid the
 * quadrant x > 0, y > 0 where h = phi(x) + phi(y) is largest. */
TEST(hidden_grid_covers_the_input_box)
{
    const uint32_t w[3] = {2, 1, 1};
    pm_kan net = make_net(2, w, 5, 1);
    for (uint32_t i = 0; i < 2; i++) { /* phi(v) = v exactly: w_b 0, linear spline */
        pm_kan_layer *L = &net.layer[0];
        L->scale_base[i] = 0.0;
        L->scale_sp[i] = 1.0;
        for (uint32_t m = 0; m < 8; m++) L->coef[i * 8 + m] = L->knots[i * 12 + m + 2]; /* Greville points of a uniform cubic */
    }
    size_t n = 300;
    double *x = malloc(n * 2 * sizeof *x);
    pm_kan_rng r;
    pm_kan_rng_seed(&r, 4);
    for (size_t s = 0; s < n; s++) {
        double a = 2.0 * pm_kan_rng_uniform(&r) - 1.0, b = 2.0 * pm_kan_rng_uniform(&r) - 1.0;
        if (a > 0.0 && b > 0.0) a = -a;
        x[2 * s] = a;
        x[2 * s + 1] = b;
    }
    x[0] = 1.0, x[1] = -1.0, x[2] = -1.0, x[3] = 1.0; /* the box is [-1, 1]^2 */
    pm_error err = {0};
    CHECK(pm_kan_update_grid(&net, x, n, 1.0, 0.0, &err) == PM_OK);
    double corner[2] = {1.0, 1.0}, h;
    pm_kan head = net;
    head.depth = 1;
    CHECK(pm_kan_forward(&head, corner, 1, &h, &err) == PM_OK);
    const double *t = net.layer[1].knots;
    CHECK_MSG(fabs(h - 2.0) < 1e-5 && t[3] <= h && h <= t[3 + 5] + 1e-6, /* the samples alone reach h ~ 1 */ "h(1,1) = %.17g, hidden inner grid [%.17g, %.17g]", h, t[3],
              t[8]);
    free(x);
    pm_kan_free(&net);
}

/* Every edge table against the double edge function over dense points. */
TEST(export_is_exact_to_fp32)
{
    const uint32_t w[3] = {2, 3, 2};
    for (uint32_t k = 1; k <= 3; k++) {
        pm_kan net;
        pm_kan_init o;
        pm_kan_init_defaults(&o);
        o.grid = 8;
        o.order = k;
        o.seed = 21;
        o.noise_scale = 8.0; /* large coefficients: a real test of the conversion */
        pm_error err = {0};
        CHECK(pm_kan_create(&net, 2, w, &o, &err) == PM_OK);
        pm_kan_lfu_net ln;
        CHECK(pm_kan_export(&net, &ln, &err) == PM_OK);
        CHECK(ln.edge_count == 2 * 3 + 3 * 2);
        double worst = 0.0, worst_rel_spline = 0.0;
        for (uint32_t l = 0; l < 2; l++)
            for (uint32_t i = 0; i < w[l]; i++)
                for (uint32_t j = 0; j < w[l + 1]; j++) {
                    const pm_lfu_table *t = pm_kan_lfu_edge(&ln, l, i, j);
                    CHECK(t && t->degree == k && t->segments == 8 + 2 * k && t->oor == PM_LFU_OOR_CONST);
                    /* one-edge network in double: phi_ij by a forward pass */
                    pm_kan one = make_net(1, (uint32_t[]){1, 1}, 8, 1);
                    pm_kan_free(&one);
                    const pm_kan_layer *L = &net.layer[l];
                    size_t e = (size_t)i * L->out + j, nb = 8 + k, nk = 8 + 2 * k + 1;
                    double B[8 + 3 + 1];
                    for (int s = -200; s <= 1200; s++) {
                        double x = -1.0 - 0.25 * k + (2.0 + 0.5 * k) * s / 1000.0;
                        float xf = (float)x;
                        pm_kan_bspline_basis(L->knots + i * nk, 8, k, (double)xf, B, &err);
                        double spline = 0.0;
                        for (size_t m = 0; m < nb; m++) spline += L->coef[e * nb + m] * B[m];
                        double silu = (double)xf / (1.0 + exp(-(double)xf));
                        double want = L->scale_base[e] * silu + L->scale_sp[e] * spline;
                        double got = pm_lfu_eval(t, xf);
                        /* tolerance: fp32 rounding of the coefficients and t (relative
                         * 2^-22 of the spline's size) plus the SiLU table's few ulps */
                        double mag = fabs(L->scale_sp[e]) * 8.0 * 4 + fabs(L->scale_base[e]) * fabs(silu);
                        worst = fmax(worst, fabs(got - want) / fmax(mag, 1e-30));
                        (void)worst_rel_spline;
                    }
                }
        CHECK_MSG(worst < 4e-6, "order %u: export error %g of the edge's scale", k, worst);
        pm_kan_lfu_net_free(&ln);
        pm_kan_free(&net);
    }
}

/* A quantile grid (grid_eps 0) sits on the PM_KAN_LATTICE lattice and
 * exports exactly with one segment per lattice cell; knots off any lattice
 * are refused. */
TEST(export_of_non_uniform_grids)
{
    const uint32_t w[2] = {1, 1};
    pm_kan net = make_net(1, w, 5, 2);
    double x[50];
    for (int s = 0; s < 50; s++) x[s] = pow(s / 49.0, 3.0);
    pm_error err = {0};
    CHECK(pm_kan_update_grid(&net, x, 50, 0.0, 0.0, &err) == PM_OK);
    const pm_kan_layer *L = &net.layer[0];
    CHECK(L->knots[4] - L->knots[3] != L->knots[8] - L->knots[7]); /* really non-uniform */
    pm_kan_lfu_net ln;
    CHECK(pm_kan_export(&net, &ln, &err) == PM_OK);
    const pm_lfu_table *t = pm_kan_lfu_edge(&ln, 0, 0, 0);
    CHECK(t && t->segments == (5 + 2 * 3) * PM_KAN_LATTICE);
    double worst = 0.0, B[5 + 3];
    for (int s = 0; s <= 3000; s++) {
        float xf = (float)(-0.7 + 2.4 * s / 3000.0);
        pm_kan_bspline_basis(L->knots, 5, 3, (double)xf, B, &err);
        double spline = 0.0;
        for (int m = 0; m < 8; m++) spline += L->coef[m] * B[m];
        double want = L->scale_base[0] * ((double)xf / (1.0 + exp(-(double)xf))) + L->scale_sp[0] * spline;
        worst = fmax(worst, fabs(pm_lfu_eval(t, xf) - want));
    }
    CHECK_MSG(worst < 1e-6, "snapped grid export error %g", worst);
    pm_kan_lfu_net_free(&ln);
    net.layer[0].knots[5] += 1e-3 * sqrt(2.0); /* off the lattice */
    CHECK(pm_kan_export(&net, &ln, &err) == PM_ERR_UNSUPPORTED && strstr(err.message, "lattice"));
    pm_kan_free(&net);
}

/* The LFU base branch KAN edges use (docs/lfu.md): y = fmaf(w_b, builtin(x),
 * table(x)) bit for bit, checked fields, and PMLF round trips. */
TEST(lfu_base_branch)
{
    pm_lfu_table t, silu, back;
    pm_error err = {0};
    memset(&t, 0, sizeof t);
    snprintf(t.name, sizeof t.name, "edge");
    t.mode = PM_LFU_MODE_UNIFORM;
    t.oor = PM_LFU_OOR_CONST;
    t.degree = 1;
    t.segments = 2;
    t.x_min = -1.0f;
    t.x_max = 1.0f;
    float c[4] = {0.25f, 0.5f, -0.75f, 1.0f};
    t.coeffs = c;
    CHECK(pm_lfu_builtin(PM_LFU_SILU, &silu, &err) == PM_OK);
    pm_lfu_table plain = t;
    t.param[PM_LFU_PARAM_BASE_FUNC] = (float)(PM_LFU_SILU + 1);
    t.param[PM_LFU_PARAM_BASE_WEIGHT] = -0.375f;
    CHECK(pm_lfu_table_validate(&t, &err) == PM_OK);
    int same = 1;
    for (float x = -3.0f; x <= 3.0f; x += 0.0625f) {
        float want = fmaf(-0.375f, pm_lfu_eval(&silu, x), pm_lfu_eval(&plain, x));
        same &= pm_f32_bits(pm_lfu_eval(&t, x)) == pm_f32_bits(want);
    }
    CHECK(same);
    float xs[3] = {-2.0f, 0.1f, 5.0f}, ys[3];
    pm_lfu_eval_array(&t, xs, ys, 3);
    for (int i = 0; i < 3; i++) CHECK(pm_f32_bits(ys[i]) == pm_f32_bits(pm_lfu_eval(&t, xs[i])));
    uint8_t buf[256];
    size_t len;
    CHECK(pm_lfu_table_serialize(&t, buf, sizeof buf, &len, &err) == PM_OK);
    CHECK(pm_lfu_table_deserialize(buf, len, &back, &err) == PM_OK && back.param[1] == -0.375f && back.param[0] == (float)(PM_LFU_SILU + 1));
    pm_lfu_table_free(&back);
    pm_lfu_table bad = t;
    bad.param[0] = 9.0f; /* no built-in 8 */
    CHECK(pm_lfu_table_validate(&bad, &err) != PM_OK && strstr(err.message, "param[0]"));
    bad = t;
    bad.param[0] = 1.5f;
    CHECK(pm_lfu_table_validate(&bad, &err) != PM_OK && strstr(err.message, "param[0]"));
    bad = t;
    bad.param[0] = 0.0f; /* a weight without a function */
    CHECK(pm_lfu_table_validate(&bad, &err) != PM_OK && strstr(err.message, "param[1]"));
    buf[72 + 3] = 0x41; /* param[0] = 5 becomes 20: no such built-in */
    CHECK(pm_lfu_table_deserialize(buf, len, &back, &err) == PM_ERR_FORMAT && strstr(err.message, "byte 72 (param[0])"));
    pm_lfu_table_free(&silu);
}

TEST(host_inference_order)
{
    /* pm_kan_lfu_forward equals the documented sum order, evaluated here by hand */
    const uint32_t w[3] = {3, 2, 1};
    pm_kan net = make_net(2, w, 4, 8);
    pm_kan_lfu_net ln;
    pm_error err = {0};
    CHECK(pm_kan_export(&net, &ln, &err) == PM_OK);
    float x[3] = {0.3f, -0.7f, 0.9f}, y;
    CHECK(pm_kan_lfu_forward(&ln, x, 1, &y, &err) == PM_OK);
    float h[2];
    for (uint32_t j = 0; j < 2; j++) {
        h[j] = pm_lfu_eval(pm_kan_lfu_edge(&ln, 0, 0, j), x[0]);
        h[j] = h[j] + pm_lfu_eval(pm_kan_lfu_edge(&ln, 0, 1, j), x[1]);
        h[j] = h[j] + pm_lfu_eval(pm_kan_lfu_edge(&ln, 0, 2, j), x[2]);
    }
    float want = pm_lfu_eval(pm_kan_lfu_edge(&ln, 1, 0, 0), h[0]) + pm_lfu_eval(pm_kan_lfu_edge(&ln, 1, 1, 0), h[1]);
    CHECK(pm_f32_bits(y) == pm_f32_bits(want));
    double yd, xd[3] = {0.3f, -0.7f, 0.9f};
    CHECK(pm_kan_forward(&net, xd, 1, &yd, &err) == PM_OK);
    CHECK_MSG(fabs(yd - y) < 1e-5 * (1 + fabs(yd)), "double %g vs lfu %g", yd, (double)y);
    CHECK(pm_kan_lfu_edge(&ln, 2, 0, 0) == NULL && pm_kan_lfu_edge(&ln, 0, 3, 0) == NULL);
    pm_kan_lfu_net_free(&ln);
    pm_kan_free(&net);
}

static void expect_load_error(const uint8_t *buf, size_t len, int pmkn, const char *words)
{
    pm_error err = {0};
    pm_kan net;
    pm_kan_lfu_net ln;
    pm_status st = pmkn ? pm_kan_lfu_net_load(buf, len, &ln, &err) : pm_kan_load(buf, len, &net, &err);
    CHECK_MSG(st == PM_ERR_FORMAT && strstr(err.message, words), "want '%s', got status %d '%s'", words, (int)st, err.message);
    if (st == PM_OK) {
        if (pmkn) pm_kan_lfu_net_free(&ln);
        else pm_kan_free(&net);
    }
}

TEST(files_round_trip_and_corruption)
{
    const uint32_t w[3] = {2, 2, 1};
    pm_kan net = make_net(2, w, 4, 4);
    pm_error err = {0};
    uint8_t *buf;
    size_t len;
    CHECK(pm_kan_save(&net, &buf, &len, &err) == PM_OK);
    pm_kan back;
    CHECK(pm_kan_load(buf, len, &back, &err) == PM_OK);
    CHECK(back.param_count == net.param_count && !memcmp(back.params, net.params, net.param_count * sizeof(double)));
    CHECK(!memcmp(back.layer[1].knots, net.layer[1].knots, 2 * (4 + 7) * sizeof(double)));
    pm_kan_free(&back);
    expect_load_error(buf, 3, 0, "byte 0 (magic)");
    buf[4] = 2;
    expect_load_error(buf, len, 0, "byte 4 (version)");
    buf[4] = 1;
    expect_load_error(buf, len - 1, 0, "(size)");
    uint8_t keep = buf[12];
    buf[12] = 0; /* width[0] = 0 */
    expect_load_error(buf, len, 0, "byte 12 (width)");
    buf[12] = keep;
    size_t knot0 = 12 + 4 * 3 + 8 * 2;
    buf[knot0 + 8 + 7] = 0xff; /* knot 1 becomes NaN */
    expect_load_error(buf, len, 0, "knots");
    free(buf);

    pm_kan_lfu_net ln, ln2;
    CHECK(pm_kan_export(&net, &ln, &err) == PM_OK);
    CHECK(pm_kan_lfu_net_save(&ln, &buf, &len, &err) == PM_OK);
    CHECK(pm_kan_lfu_net_load(buf, len, &ln2, &err) == PM_OK);
    CHECK(ln2.edge_count == ln.edge_count);
    for (size_t e = 0; e < ln.edge_count; e++)
        for (float x = -2.0f; x <= 2.0f; x += 0.125f)
            CHECK(pm_f32_bits(pm_lfu_eval(&ln.edges[e], x)) == pm_f32_bits(pm_lfu_eval(&ln2.edges[e], x)));
    pm_kan_lfu_net_free(&ln2);
    expect_load_error(buf, 2, 1, "byte 0 (magic)");
    buf[4] = 9;
    expect_load_error(buf, len, 1, "byte 4 (version)");
    buf[4] = 1;
    expect_load_error(buf, len - 1, 1, "edge 1->0");
    buf[8] = 0;
    expect_load_error(buf, len, 1, "byte 8 (depth)");
    buf[8] = 2;
    size_t first = 12 + 4 * 3; /* first edge's length, then its PMLF image */
    buf[first + 4 + 9] = 7;   /* degree 7 */
    expect_load_error(buf, len, 1, "layer 0 edge 0->0");
    expect_load_error(buf, len, 1, "PMLF byte 9 (degree)");
    buf[first + 4 + 9] = 3;
    uint8_t *longer = malloc(len + 1);
    memcpy(longer, buf, len);
    longer[len] = 0;
    expect_load_error(longer, len + 1, 1, "after the last edge");
    free(longer);
    free(buf);
    pm_kan_lfu_net_free(&ln);
    pm_kan_free(&net);
}

TEST(expressions)
{
    pm_kan_expr *e;
    uint32_t used;
    pm_error err = {0};
    CHECK(pm_kan_expr_parse("exp(sin(pi*x)+y^2)", &e, &used, &err) == PM_OK && used == 3);
    double v[4] = {0.25, -0.5, 0, 0};
    CHECK(fabs(pm_kan_expr_eval(e, v) - exp(sin(3.14159265358979323846 * 0.25) + 0.25)) < 1e-15);
    pm_kan_expr_free(e);
    CHECK(pm_kan_expr_parse("-x1^2 + 2^3^2 / x4", &e, &used, &err) == PM_OK && used == 9);
    double v2[4] = {3, 0, 0, 2};
    CHECK(pm_kan_expr_eval(e, v2) == -9.0 + 512.0 / 2.0);
    pm_kan_expr_free(e);
    CHECK(pm_kan_expr_parse("sin(x", &e, &used, &err) == PM_ERR_PARSE && strstr(err.message, "col 6"));
    CHECK(pm_kan_expr_parse("foo(x)", &e, &used, &err) == PM_ERR_PARSE && strstr(err.message, "col 1: unknown name"));
    CHECK(pm_kan_expr_parse("x + ", &e, &used, &err) == PM_ERR_PARSE);
    char deep[400];
    memset(deep, '(', 300);
    strcpy(deep + 300, "x");
    CHECK(pm_kan_expr_parse(deep, &e, &used, &err) == PM_ERR_PARSE && strstr(err.message, "nested"));
}

TEST(short_training_reduces_loss)
{
    const uint32_t w[3] = {2, 3, 1};
    size_t n = 200;
    double x[400], y[200];
    random_data(x, y, n, 2, 1);
    for (int opt = 0; opt < 2; opt++) {
        pm_kan net = make_net(2, w, 5, 7);
        pm_error err = {0};
        double before, after;
        CHECK(pm_kan_loss_grad(&net, x, y, n, NULL, &before, NULL, &err) == PM_OK);
        pm_kan_train_opts o;
        pm_kan_train_defaults(&o);
        o.optimizer = opt ? PM_KAN_ADAM : PM_KAN_LBFGS;
        o.lr = opt ? 2e-2 : 1.0;
        o.steps = 30;
        CHECK(pm_kan_train(&net, x, y, n, &o, &after, &err) == PM_OK);
        CHECK_MSG(after < 0.05 * before, "optimizer %d: loss %g -> %g", opt, before, after);
        /* determinism: the same seed gives the same bits */
        pm_kan again = make_net(2, w, 5, 7);
        double after2;
        CHECK(pm_kan_train(&again, x, y, n, &o, &after2, &err) == PM_OK);
        CHECK(after2 == after && !memcmp(again.params, net.params, net.param_count * sizeof(double)));
        pm_kan_free(&again);
        pm_kan_free(&net);
    }
}

TEST(pruning_drops_dead_nodes)
{
    const uint32_t w[3] = {2, 4, 1};
    pm_kan net = make_net(2, w, 5, 5);
    /* silence hidden nodes 1 and 3: incoming and outgoing edges become 0 */
    size_t nb = 5 + 3;
    for (uint32_t j = 1; j < 4; j += 2)
        for (uint32_t l = 0; l < 2; l++)
            for (uint32_t i = 0; i < (l ? 1u : 2u); i++) {
                pm_kan_layer *L = &net.layer[l];
                size_t e = l ? (size_t)j * 1 + i : (size_t)i * 4 + j;
                L->scale_base[e] = 0.0;
                for (size_t m = 0; m < nb; m++) L->coef[e * nb + m] = 0.0;
            }
    double x[200];
    random_data(x, NULL, 100, 2, 3);
    pm_kan small;
    pm_error err = {0};
    CHECK(pm_kan_prune(&net, x, 100, 1e-2, &small, &err) == PM_OK);
    CHECK(small.depth == 2 && small.width[0] == 2 && small.width[1] == 2 && small.width[2] == 1);
    double y0[100], y1[100];
    pm_kan_forward(&net, x, 100, y0, &err);
    pm_kan_forward(&small, x, 100, y1, &err);
    double worst = 0.0;
    for (int s = 0; s < 100; s++) worst = fmax(worst, fabs(y0[s] - y1[s]));
    CHECK_MSG(worst < 1e-12, "pruned network differs by %g", worst);
    pm_kan_free(&small);
    pm_kan_free(&net);
}

TEST(bad_arguments)
{
    pm_kan net;
    pm_error err = {0};
    const uint32_t w[3] = {2, 0, 1};
    CHECK(pm_kan_create(&net, 2, w, NULL, &err) == PM_ERR_INVALID && strstr(err.message, "width[1]"));
    CHECK(pm_kan_create(&net, 0, w, NULL, &err) == PM_ERR_INVALID);
    pm_kan_init o;
    pm_kan_init_defaults(&o);
    o.order = 4;
    const uint32_t w2[2] = {1, 1};
    CHECK(pm_kan_create(&net, 1, w2, &o, &err) == PM_ERR_INVALID && strstr(err.message, "order"));
    double y;
    CHECK(pm_kan_forward(NULL, NULL, 1, &y, &err) == PM_ERR_INVALID);
}

int main(void)
{
    RUN(basis_partition_of_unity);
    RUN(basis_cubic_uniform_values);
    RUN(gradient_matches_finite_differences);
    RUN(update_and_extend_grid_keep_function);
    RUN(hidden_grid_covers_the_input_box);
    RUN(export_is_exact_to_fp32);
    RUN(export_of_non_uniform_grids);
    RUN(lfu_base_branch);
    RUN(host_inference_order);
    RUN(files_round_trip_and_corruption);
    RUN(expressions);
    RUN(short_training_reduces_loss);
    RUN(pruning_drops_dead_nodes);
    RUN(bad_arguments);
    return TEST_SUMMARY();
}
