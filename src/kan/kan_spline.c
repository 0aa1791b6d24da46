/* B-splines for KAN edges: Cox-de Boor evaluation of the k+1 basis
 * functions that are non-zero at a point (and their derivatives), and the
 * least-squares fit of spline coefficients to samples (curve2coef). */
#include "kan_internal.h"

#include <stdlib.h>
#include <string.h>

/* Largest j with knots[j] <= x, for x in [t_0, t_last). */
static uint32_t find_span(const double *t, uint32_t last, double x)
{
    uint32_t lo = 0, hi = last; /* t[lo] <= x < t[hi] */
    while (hi - lo > 1) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (t[mid] <= x) lo = mid;
        else hi = mid;
    }
    return lo;
}

/* The common case: every knot t_{s-k+1}..t_{s+k} exists, so the triangular
 * scheme (Piegl & Tiller's BasisFuns) runs with 2 divisions per entry
 * instead of the general recursion's bounds checks. */
static int basis_inner(const double *t, uint32_t grid, uint32_t k, double x, int s, int *first, double *B, double *dB)
{
    double N[PM_KAN_MAX_ORDER + 1], lower[PM_KAN_MAX_ORDER + 1], left[PM_KAN_MAX_ORDER + 1], right[PM_KAN_MAX_ORDER + 1];
    N[0] = 1.0;
    lower[0] = 1.0;
    for (uint32_t j = 1; j <= k; j++) {
        if (j == k) memcpy(lower, N, sizeof N); /* N_{s-k+1..s, k-1} */
        left[j] = x - t[s + 1 - (int)j];
        right[j] = t[s + (int)j] - x;
        double saved = 0.0;
        for (uint32_t r = 0; r < j; r++) {
            double tmp = N[r] / (right[r + 1] + left[j - r]);
            N[r] = saved + right[r + 1] * tmp;
            saved = left[j - r] * tmp;
        }
        N[j] = saved;
    }
    int basis = (int)(grid + k), last = (int)(grid + 2 * k);
    *first = s - (int)k;
    for (uint32_t m = 0; m <= k; m++) {
        int j = s - (int)k + (int)m;
        int valid = j >= 0 && j < basis;
        B[m] = valid ? N[m] : 0.0;
        if (!dB) continue;
        dB[m] = 0.0;
        if (!valid || j + (int)k + 1 > last) continue;
        /* B'_{j,k} = k (N_{j,k-1}/(t_{j+k}-t_j) - N_{j+1,k-1}/(t_{j+k+1}-t_{j+1})); on this
         * span N_{j,k-1} is lower[m-1] (0 for m = 0) and N_{j+1,k-1} is lower[m] (0 for m = k). */
        double a = m > 0 ? lower[m - 1] : 0.0, b = m < k ? lower[m] : 0.0, d = 0.0;
        double wl = t[j + (int)k] - t[j], wr = t[j + (int)k + 1] - t[j + 1];
        if (a != 0.0 && wl > 0.0) d += a / wl;
        if (b != 0.0 && wr > 0.0) d -= b / wr;
        dB[m] = (double)k * d;
    }
    return 1;
}

int pm_kan_basis_local(const double *t, uint32_t grid, uint32_t order, double x, int *first, double *B, double *dB)
{
    uint32_t k = order, last = grid + 2 * order; /* knots t_0..t_last */
    for (uint32_t m = 0; m <= k; m++) {
        B[m] = 0.0;
        if (dB) dB[m] = 0.0;
    }
    *first = 0;
    if (!(x >= t[0] && x < t[last])) return 0;
    int s = (int)find_span(t, last, x);
    if (s >= (int)k - 1 && s <= (int)(grid + k)) return basis_inner(t, grid, order, x, s, first, B, dB);
    /* N[m] holds N_{s-k+m, p}; N_{j,p} exists when j >= 0 and j+p+1 <= last
     * (an index outside that is not part of the basis and stays 0; the real
     * basis functions never depend on such entries). */
    double N[PM_KAN_MAX_ORDER + 1], lower[PM_KAN_MAX_ORDER + 1];
    for (uint32_t m = 0; m <= k; m++) N[m] = 0.0;
    N[k] = 1.0; /* N_{s,0} */
    for (uint32_t p = 1; p <= k; p++) {
        memcpy(lower, N, sizeof N);
        for (uint32_t m = 0; m <= k; m++) {
            int j = s - (int)k + (int)m;
            if (j < 0 || j + (int)p + 1 > (int)last) {
                N[m] = 0.0;
                continue;
            }
            double v = 0.0;
            double left = t[j + p] - t[j], right = t[j + p + 1] - t[j + 1];
            if (lower[m] != 0.0 && left > 0.0) v += (x - t[j]) / left * lower[m];
            if (m < k && lower[m + 1] != 0.0 && right > 0.0) v += (t[j + p + 1] - x) / right * lower[m + 1];
            N[m] = v;
        }
        if (p == k && dB) {
            /* B'_{j,k} = k (N_{j,k-1}/(t_{j+k}-t_j) - N_{j+1,k-1}/(t_{j+k+1}-t_{j+1})) */
            for (uint32_t m = 0; m <= k; m++) {
                int j = s - (int)k + (int)m;
                if (j < 0 || j + (int)k + 1 > (int)last) continue;
                double left = t[j + k] - t[j], right = t[j + k + 1] - t[j + 1], d = 0.0;
                if (left > 0.0) d += lower[m] / left;
                if (m < k && right > 0.0) d -= lower[m + 1] / right;
                dB[m] = (double)k * d;
            }
        }
    }
    if (k == 0 && dB) dB[0] = 0.0;
    int basis = (int)(grid + order);
    for (uint32_t m = 0; m <= k; m++) {
        int j = s - (int)k + (int)m;
        if (j < 0 || j >= basis) {
            B[m] = 0.0;
            if (dB) dB[m] = 0.0;
        } else {
            B[m] = N[m];
        }
    }
    *first = s - (int)k;
    return 1;
}

pm_status pm_kan_bspline_basis(const double *knots, uint32_t grid, uint32_t order, double x, double *out, pm_error *err)
{
    if (!knots || !out) return pm_error_set(err, PM_ERR_INVALID, "kan bspline: NULL argument");
    if (grid < 1 || grid > PM_KAN_MAX_GRID || order > PM_KAN_MAX_ORDER)
        return pm_error_set(err, PM_ERR_INVALID, "kan bspline: grid %u outside 1..%d or order %u above %d", grid,
                            PM_KAN_MAX_GRID, order, PM_KAN_MAX_ORDER);
    uint32_t nb = pm_kan_basis_count(grid, order);
    for (uint32_t i = 0; i < nb; i++) out[i] = 0.0;
    double B[PM_KAN_MAX_ORDER + 1];
    int first;
    if (!pm_kan_basis_local(knots, grid, order, x, &first, B, NULL)) return PM_OK;
    for (uint32_t m = 0; m <= order; m++) {
        int j = first + (int)m;
        if (j >= 0 && j < (int)nb) out[j] = B[m];
    }
    return PM_OK;
}

int pm_kan_cholesky_solve(double *A, double *b, size_t n)
{
    for (size_t j = 0; j < n; j++) {
        double d = A[j * n + j];
        for (size_t p = 0; p < j; p++) d -= A[j * n + p] * A[j * n + p];
        if (!(d > 0.0)) return -1;
        d = sqrt(d);
        A[j * n + j] = d;
        for (size_t i = j + 1; i < n; i++) {
            double v = A[i * n + j];
            for (size_t p = 0; p < j; p++) v -= A[i * n + p] * A[j * n + p];
            A[i * n + j] = v / d;
        }
    }
    for (size_t i = 0; i < n; i++) { /* L z = b */
        double v = b[i];
        for (size_t p = 0; p < i; p++) v -= A[i * n + p] * b[p];
        b[i] = v / A[i * n + i];
    }
    for (size_t i = n; i-- > 0;) { /* L^T x = z */
        double v = b[i];
        for (size_t p = i + 1; p < n; p++) v -= A[p * n + i] * b[p];
        b[i] = v / A[i * n + i];
    }
    return 0;
}

/* Normal equations of the banded collocation system plus a ridge of 1e-8
 * times the mean diagonal (pykan's curve2coef uses lamb = 1e-8), which keeps
 * the system definite when some coefficient has no samples. */
pm_status pm_kan_curve2coef(const double *knots, uint32_t grid, uint32_t order, const double *xs, const double *ys,
                            size_t count, double *coef, pm_error *err)
{
    size_t nb = pm_kan_basis_count(grid, order);
    double *A = calloc(nb * nb + nb, sizeof *A);
    if (!A) return pm_error_set(err, PM_ERR_NOMEM, "kan curve2coef: no memory for a %zu x %zu system", nb, nb);
    double *rhs = A + nb * nb;
    double B[PM_KAN_MAX_ORDER + 1];
    int first;
    for (size_t s = 0; s < count; s++) {
        if (!pm_kan_basis_local(knots, grid, order, xs[s], &first, B, NULL)) continue;
        for (uint32_t a = 0; a <= order; a++) {
            int ia = first + (int)a;
            if (ia < 0 || ia >= (int)nb || B[a] == 0.0) continue;
            rhs[ia] += B[a] * ys[s];
            for (uint32_t c = 0; c <= order; c++) {
                int ic = first + (int)c;
                if (ic < 0 || ic >= (int)nb) continue;
                A[(size_t)ia * nb + (size_t)ic] += B[a] * B[c];
            }
        }
    }
    double trace = 0.0;
    for (size_t i = 0; i < nb; i++) trace += A[i * nb + i];
    double ridge = 1e-8 * (trace > 0.0 ? trace / (double)nb : 1.0);
    for (size_t i = 0; i < nb; i++) A[i * nb + i] += ridge;
    /* and a 10x larger (k+1)-th difference (P-spline) term, so coefficients
     * no sample pins continue the last data-determined polynomial piece */
    double D[PM_KAN_MAX_ORDER + 2];
    uint32_t d = pm_kan_difference(order, D);
    for (size_t m = 0; m + d < nb; m++)
        for (uint32_t a = 0; a <= d; a++)
            for (uint32_t b = 0; b <= d; b++) A[(m + a) * nb + (m + b)] += 10.0 * ridge * D[a] * D[b];
    int bad = pm_kan_cholesky_solve(A, rhs, nb);
    if (!bad) memcpy(coef, rhs, nb * sizeof *coef);
    free(A);
    if (bad) return pm_error_set(err, PM_ERR_INVALID, "kan curve2coef: least-squares system of %zu coefficients is singular", nb);
    return PM_OK;
}
