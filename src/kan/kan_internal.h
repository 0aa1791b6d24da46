/* KAN layer internals shared by the network, training, grid and export
 * files: the local B-spline evaluation (k+1 non-zero basis values and their
 * derivatives at one x) and small dense least squares. */
#ifndef POLYMORPH_KAN_INTERNAL_H
#define POLYMORPH_KAN_INTERNAL_H

#include "polymorph/kan.h"

#include <math.h>

/* Number of knots and basis functions of a grid. */
static inline uint32_t pm_kan_knot_count(uint32_t grid, uint32_t order) { return grid + 2 * order + 1; }
static inline uint32_t pm_kan_basis_count(uint32_t grid, uint32_t order) { return grid + order; }

/* The k+1 basis values that can be non-zero at x: B[m] = B_{first+m}(x) and
 * (dB non-NULL) its derivative; entries whose index is not a basis function
 * are 0. Returns 0 when x is outside [t_0, t_{G+2k}) (all zero, first = 0). */
int pm_kan_basis_local(const double *knots, uint32_t grid, uint32_t order, double x, int *first, double *B, double *dB);

static inline double pm_kan_silu(double x) { return x / (1.0 + exp(-x)); }
static inline double pm_kan_silu_grad(double x)
{
    double s = 1.0 / (1.0 + exp(-x));
    return s * (1.0 + x * (1.0 - s));
}

/* The (order+1)-th difference stencil (binomial coefficients with alternating
 * signs) into D[0..order+1]; returns order+1. Its null space on uniform knots
 * is the polynomials of degree `order`, so penalising it continues a spline's
 * last data-determined piece into intervals without samples. */
static inline uint32_t pm_kan_difference(uint32_t order, double *D)
{
    uint32_t d = order + 1;
    double b = 1.0;
    for (uint32_t q = 0; q <= d; q++) {
        D[q] = ((d - q) % 2 ? -1.0 : 1.0) * b;
        b = b * (double)(d - q) / (double)(q + 1);
    }
    return d;
}

/* Solve the symmetric positive definite system A z = b (n x n, row-major,
 * A overwritten by its Cholesky factor, b by z). Returns 0 on success. */
int pm_kan_cholesky_solve(double *A, double *b, size_t n);

/* Least-squares coefficients of a spline on `knots` through (xs[s], ys[s]),
 * s < count, with a tiny ridge (pykan's curve2coef, lamb 1e-8 relative). */
pm_status pm_kan_curve2coef(const double *knots, uint32_t grid, uint32_t order, const double *xs, const double *ys,
                            size_t count, double *coef, pm_error *err);

/* A zeroed network of this shape (knots and params allocated). */
pm_status pm_kan_allocate(pm_kan *net, uint32_t depth, const uint32_t *width, const uint32_t *grid, uint32_t order,
                          pm_error *err);

/* Point the layer views at net->params (after params moved). */
void pm_kan_bind(pm_kan *net);

#endif
