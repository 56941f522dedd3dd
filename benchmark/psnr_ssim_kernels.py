"""The compiled inner loops of PSNR and SSIM on Y (numba), for ``benchmark.metrics.image``.

Why compiled: written as NumPy passes, PSNR + SSIM took about 35 passes over float64 maps
that outgrow the L2 cache, plus OpenCV's float64 filter; here each image's luma and moments
are one pass and the filter and the SSIM map are another, row by row, in L1
(benchmarks/bench_image_metrics.py prints the figures).

Exactness: numba's defaults keep IEEE semantics (no fast-math, so no reassociation and no
fused multiply-add), and every value is the same sequence of float64 operations whichever
CPU runs it, vectorised or not. ``luma_moments`` performs the operations of the formula in
the order of the former NumPy passes, so Y and PSNR keep their bits. The Gaussian filter sums
its 11 taps in order, vertical pass first; OpenCV's ``sepFilter2D`` summed in another order
(SSIM differences ~1e-15). ``error_model="numpy"`` lets a division by zero give inf or NaN as
NumPy's does (instead of raising), which is also what lets the divisions vectorise.
"""
from __future__ import annotations

import numba
import numpy as np


def _compiled(function):
    """``numba.njit``, with the compiled code cached on disk (about a second of compiling saved
    per process) where numba finds a writable place: beside this file or in the user's cache
    directory; without the cache where it finds none (a read-only install and home). nogil:
    the chunks run on threads."""
    options = dict(nogil=True, error_model="numpy")
    try:
        return numba.njit(cache=True, **options)(function)
    except RuntimeError:  # "cannot cache function ...: no locator available"
        return numba.njit(**options)(function)


@numba.njit(inline="always")
def _luma(red, green, blue):
    """BT.601 Y with offset of one pixel in [0, 1], in float64, summed as ``image._luma`` sums it."""
    return ((np.float64(red) * 65.481 + 16.0) + np.float64(green) * 128.553) + np.float64(blue) * 24.966


@_compiled
def luma_moments(sr, hr, top, left, out, finite):
    """Fill ``out`` (5, n, h, w) float64 from the RGB batches ``sr`` and ``hr`` (n, 3, H, W),
    read from row ``top`` and column ``left``: Y of sr (x), Y of hr (y), x^2 + y^2, x y, and
    (x - y)^2.

    ``finite`` (2, n) bool: whether every Y of image i is finite, sr in row 0 and hr in row 1.
    """
    n, h, w = out.shape[1], out.shape[2], out.shape[3]
    for i in range(n):
        x_finite = True
        y_finite = True
        for r in range(h):
            sr_r, sr_g, sr_b = sr[i, 0, top + r], sr[i, 1, top + r], sr[i, 2, top + r]
            hr_r, hr_g, hr_b = hr[i, 0, top + r], hr[i, 1, top + r], hr[i, 2, top + r]
            x_row, y_row, sum_sq_row, prod_row, diff_sq_row = out[0, i, r], out[1, i, r], out[2, i, r], \
                out[3, i, r], out[4, i, r]
            for c in range(w):
                x = _luma(sr_r[left + c], sr_g[left + c], sr_b[left + c])
                y = _luma(hr_r[left + c], hr_g[left + c], hr_b[left + c])
                x_row[c] = x
                y_row[c] = y
                sum_sq_row[c] = x * x + y * y
                prod_row[c] = x * y
                difference = x - y
                diff_sq_row[c] = difference * difference
                # v - v is 0 for a finite v and NaN otherwise: a reduction without branches
                x_finite &= x - x == 0.0
                y_finite &= y - y == 0.0
        finite[0, i] = x_finite
        finite[1, i] = y_finite


@_compiled
def ssim_quarter_map(moments, gauss, c1, c2, nonnegative_cs, out):
    """Write a quarter of SSIM's map over the 'valid' region into ``out`` (n, h - 10, w - 10).

    ``moments`` (>= 4, n, h, w) holds x, y, x^2 + y^2 and x y per pixel; ``gauss`` is the 11-tap
    window. SSIM needs var_x + var_y only as a sum, so four local moments suffice (not five).
    Each output row filters 11 input rows vertically into one row per moment, then that row
    horizontally, then forms the map: everything for a row stays in L1.

    The factors 2 of SSIM's numerator are left out (the caller multiplies the mean by an exact
    4): 2 a + c == 2 (a + c / 2) exactly in binary floating point, so the map is the formula's
    (2 mu_xy + C1)(2 cov + C2) / ((mu_x^2 + mu_y^2 + C1)(var_x + var_y + C2)) / 4 bit for bit.
    ``nonnegative_cs`` clips the contrast-structure quotient at 0 (a NaN stays NaN).
    """
    n, h, w = moments.shape[1], moments.shape[2], moments.shape[3]
    h_valid, w_valid = h - 10, w - 10
    g0, g1, g2, g3, g4, g5 = gauss[0], gauss[1], gauss[2], gauss[3], gauss[4], gauss[5]
    g6, g7, g8, g9, g10 = gauss[6], gauss[7], gauss[8], gauss[9], gauss[10]
    column_pass = np.empty((4, w))
    filtered = np.empty((4, w_valid))
    half_c1, half_c2 = c1 / 2, c2 / 2
    for i in range(n):
        for r in range(h_valid):
            for p in range(4):
                rows = moments[p, i]
                s0, s1, s2, s3, s4, s5 = rows[r], rows[r + 1], rows[r + 2], rows[r + 3], rows[r + 4], rows[r + 5]
                s6, s7, s8, s9, s10 = rows[r + 6], rows[r + 7], rows[r + 8], rows[r + 9], rows[r + 10]
                vertical = column_pass[p]
                # one expression per output value, taps in order: vectorised across columns
                # with the running sum in a register
                for c in range(w):
                    v = g0 * s0[c]
                    v += g1 * s1[c]
                    v += g2 * s2[c]
                    v += g3 * s3[c]
                    v += g4 * s4[c]
                    v += g5 * s5[c]
                    v += g6 * s6[c]
                    v += g7 * s7[c]
                    v += g8 * s8[c]
                    v += g9 * s9[c]
                    v += g10 * s10[c]
                    vertical[c] = v
                both = filtered[p]
                for c in range(w_valid):
                    v = g0 * vertical[c]
                    v += g1 * vertical[c + 1]
                    v += g2 * vertical[c + 2]
                    v += g3 * vertical[c + 3]
                    v += g4 * vertical[c + 4]
                    v += g5 * vertical[c + 5]
                    v += g6 * vertical[c + 6]
                    v += g7 * vertical[c + 7]
                    v += g8 * vertical[c + 8]
                    v += g9 * vertical[c + 9]
                    v += g10 * vertical[c + 10]
                    both[c] = v
            mu_x, mu_y, mean_sum_sq, mean_prod = filtered[0], filtered[1], filtered[2], filtered[3]
            quarter = out[i, r]
            # two loops rather than a branch per pixel, so that each vectorises
            if nonnegative_cs:  # l * max(cs, 0), l and cs each a quotient
                for c in range(w_valid):
                    half_luminance_num = mu_x[c] * mu_y[c]
                    mu_sq_sum = mu_x[c] * mu_x[c] + mu_y[c] * mu_y[c]
                    half_cs = ((mean_prod[c] - half_luminance_num) + half_c2) / ((mean_sum_sq[c] - mu_sq_sum) + c2)
                    if half_cs < 0.0:
                        half_cs = 0.0
                    quarter[c] = ((half_luminance_num + half_c1) / (mu_sq_sum + c1)) * half_cs
            else:  # (l_num * cs_num) / (l_den * cs_den)
                for c in range(w_valid):
                    half_luminance_num = mu_x[c] * mu_y[c]
                    mu_sq_sum = mu_x[c] * mu_x[c] + mu_y[c] * mu_y[c]
                    quarter[c] = (((half_luminance_num + half_c1) * ((mean_prod[c] - half_luminance_num) + half_c2))
                                  / ((mu_sq_sum + c1) * ((mean_sum_sq[c] - mu_sq_sum) + c2)))
