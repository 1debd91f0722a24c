// CPU tile rasterizer with gsplat 1.4.0's semantics (isect_tiles + rasterize_to_pixels fwd/bwd).
//
// A plain C-ABI shared library (no torch headers, so it compiles in seconds and does not depend on
// torch's C++ ABI), loaded with ctypes by ff3r_ns/core/render_cpu_lib.py; render_cpu.py allocates
// every array. Work is spread over OpenMP threads (as many as the caller passes:
// torch.get_num_threads()), tiles handed out dynamically, longest list first. A tile is processed by
// one thread and writes only its own pixels and its own per-intersection gradient rows (summed per
// Gaussian afterwards in a fixed order), so results do not depend on the number of threads.
//
// Per pixel, front to back (rasterize_to_pixels_fwd.cu): sigma = 0.5 (a dx^2 + c dy^2) + b dx dy with
// d = mean - pixel centre; skipped when sigma < 0 or o exp(-sigma) < 1/255; alpha = min(0.999, o exp(-sigma));
// the pixel stops before the Gaussian that would take the transmittance to <= 1e-4. Backward walks
// the lists back to front, recovering the transmittance by division (rasterize_to_pixels_bwd.cu).
//
// Layout (chosen by measurement on the demo's feedforward Gaussians, which reach ~2.4 pixels per tile
// row): a Gaussian is evaluated on a tile row as one vector of 16 lanes (alpha, transmittance,
// geometry gradients), but the per-channel work (D = RGB + features + depth) is done only for the
// pixels it reaches, on pixel-major state ([256][Dp], channels padded to a multiple of 8 so that each
// pixel is a few full vectors). Backward needs no per-channel colour buffer: with V = dL/dimg of a
// pixel, sum_k buffer_k V_k is kept as one scalar per pixel, updated by w (colour . V). Only the rows of
// a tile that a Gaussian's ellipse sigma <= log(255 o) can reach are visited (widened so that rounding
// can never matter: every other pixel would be skipped anyway). Both passes evaluate alphas with the
// same non-inlined function and no FMA contraction (-ffp-contract=off), so backward sees exactly the
// contributions forward made. The visible Gaussians are packed in depth order, so every tile reads
// them front to back. Sums over lanes or channels use fixed trees: deterministic.
//
// Depth (gsplat's "ED") rides along as channel D - 1 when a depth array is given, read from and written
// to its own arrays (no concatenated copy of the colours in torch).

#include <cstring>
#include <utility>
#include <vector>

#include "common.h"
#include "simd.h"

namespace {

using ff3r::axpy_padded;
using ff3r::dot_padded;
using ff3r::exp_neg;
using ff3r::floor_in;
using ff3r::lane_bits;
using ff3r::mask_rows;
using ff3r::padded;
using ff3r::parallel_dynamic;
using ff3r::parallel_static;
using ff3r::prefetch_entry;
using ff3r::sum16;
using ff3r::with_width;

constexpr int kT = ff3r::kTile;  // one tile row = kT lanes
constexpr int kP = kT * kT;
constexpr double kAlphaMin = 1.0 / 255.0;
constexpr double kAlphaMax = 0.999;
constexpr double kTMin = 1e-4;
constexpr int64_t kPrefetch = 32;  // list entries fetched ahead
constexpr int64_t kHead = 12;      // packed row: mx, my, a, b, c, o, ext_x, ext_y, p1, p2, p3, 0, then the Dp colours

// --------------------------------------------------------------------------- tiles and rows
struct TileGeom {
  int64_t cam, ox, oy, tw, th;  // camera, pixel origin, width and height (< 16 at the image border)
};

inline TileGeom tile_geom(int64_t t, int64_t tiles_x, int64_t tiles_y, int64_t width, int64_t height) {
  const int64_t per_cam = tiles_x * tiles_y, rest = t % per_cam;
  TileGeom g;
  g.cam = t / per_cam;
  g.ox = (rest % tiles_x) * kT, g.oy = (rest / tiles_x) * kT;
  g.tw = std::min<int64_t>(kT, width - g.ox), g.th = std::min<int64_t>(kT, height - g.oy);
  return g;
}

// Tiles with a non-empty list, longest first (dynamic scheduling then balances well).
std::vector<int64_t> tile_order(const int64_t* off, int64_t n_tiles) {
  std::vector<int64_t> order;
  for (int64_t t = 0; t < n_tiles; ++t)
    if (off[t + 1] > off[t]) order.push_back(t);
  std::stable_sort(order.begin(), order.end(), [&](int64_t x, int64_t y) { return off[x + 1] - off[x] > off[y + 1] - off[y]; });
  return order;
}

// A Gaussian's footprint, the ellipse sigma <= 1.05 log(255 o) + 0.05 (no pixel outside it reaches
// alpha 1/255, with room for any rounding of the per-pixel test), precomputed once per Gaussian into
// its packed row: half-extents ext_x, ext_y and, per row offset v, the centre p3 v and half-width
// sqrt(p1 - p2 v^2). ext_y = -1: it reaches no pixel; ext_y = inf: degenerate conic, visit every row.
template <typename scalar_t>
inline void write_shape(scalar_t* pg) {
  const double a = pg[2], b = pg[3], c = pg[4], o = pg[5];
  const double det = a * c - b * b, level = 1.05 * std::log(255.0 * o) + 0.05;
  double sh[5] = {0.0, -1.0, 0.0, 0.0, 0.0};
  if (!(o >= kAlphaMin)) {  // alpha <= o never reaches 1/255
  } else if (!(det > 0.0 && a > 0.0 && std::isfinite(det) && std::isfinite(level))) {
    sh[1] = INFINITY;
  } else {
    sh[0] = std::sqrt(2.0 * level * c / det) + 0.25, sh[1] = std::sqrt(2.0 * level * a / det);
    sh[2] = 2.0 * level / a, sh[3] = det / (a * a), sh[4] = b / a;
  }
  for (int i = 0; i < 5; ++i) pg[6 + i] = static_cast<scalar_t>(sh[i]);
  pg[11] = scalar_t(0);
}

// The rows of a tile that the footprint reaches with a pixel centre (widened by a quarter pixel), as a
// bit mask (bit row), so skipping the other rows cannot change the result. The per-row test runs on all
// 16 rows at once in double lanes (branch-free; measured: the branchy loop over the rows in range was
// about a third of the compositing's own time on the demo's small Gaussians), then masked to the rows
// the footprint's height spans.
template <typename scalar_t>
inline uint32_t footprint(const scalar_t* pg, const TileGeom& tg) {
  const double ext_x = pg[6], ext_y = pg[7], p1 = pg[8], p2 = pg[9], p3 = pg[10];
  if (!(ext_y >= 0.0)) return 0;
  if (std::isinf(ext_y)) return (uint32_t(1) << tg.th) - 1;
  const double xc = double(pg[0]) - double(tg.ox) - 0.5, yc = double(pg[1]) - double(tg.oy) - 0.5;  // lane, row
  const double last_lane = static_cast<double>(tg.tw - 1);
  if (xc + ext_x < 0.0 || xc - ext_x > last_lane) return 0;
  const int64_t r0 = floor_in(yc - ext_y, 0, tg.th), r1 = floor_in(yc + ext_y, -1, tg.th - 1) + 1;
  if (r0 >= r1) return 0;
  uint32_t bits = 0;
#pragma omp simd reduction(| : bits)
  for (int row = 0; row < kT; ++row) {
    const double v = yc - static_cast<double>(row);  // mean - pixel centre, in y
    const double h2 = p1 - p2 * v * v;
    const double half = std::sqrt(h2) + 0.25, centre = xc + p3 * v;  // NaN where h2 < 0: masked below
    const bool lane = !(std::max(0.0, std::ceil(centre - half)) > std::min(last_lane, std::floor(centre + half)));
    bits |= static_cast<uint32_t>(!(h2 < 0.0) & lane) << row;
  }
  return bits & ((uint32_t(1) << r1) - 1) & ~((uint32_t(1) << r0) - 1);
}

template <typename scalar_t>
struct Row {
  alignas(64) scalar_t dx[kT];
  alignas(64) scalar_t vis[kT];  // exp(-sigma)
  alignas(64) scalar_t raw[kT];  // o * exp(-sigma), 0 where sigma < 0 (or NaN)
  scalar_t dy;
};

// mean - pixel centre along x for lane x of a tile row starting at pixel fx.
template <typename scalar_t>
inline scalar_t lane_dx(scalar_t mx, scalar_t fx, int x) {
  return mx - (fx + static_cast<scalar_t>(x) + scalar_t(0.5));
}

// sigma, exp(-sigma) and o * exp(-sigma) (0 where sigma < 0 or NaN): a Gaussian's alpha before the clamp.
template <typename scalar_t>
inline scalar_t sigma_of(scalar_t a, scalar_t b, scalar_t c, scalar_t dx, scalar_t dy) {
  return scalar_t(0.5) * (a * dx * dx + c * dy * dy) + b * dx * dy;
}
template <typename scalar_t>
inline scalar_t vis_of(scalar_t sigma) {
  return exp_neg<scalar_t>(sigma > scalar_t(0) ? sigma : scalar_t(0));
}
template <typename scalar_t>
inline scalar_t raw_of(scalar_t sigma, scalar_t vis, scalar_t o) {
  return sigma >= scalar_t(0) ? o * vis : scalar_t(0);
}

// Evaluates one packed Gaussian on n rows of a tile (pixel centres ox + x + 0.5, oy + row + 0.5) and
// counts per row the pixels that reach alpha >= 1/255. Not inlined: forward and backward run the same
// code; the rows are independent, so their exp chains overlap.
template <typename scalar_t>
__attribute__((noinline)) void eval_rows(const scalar_t* pg, int64_t ox, int64_t oy, const int32_t* rows, int n,
                                         Row<scalar_t>* out, int32_t* counts) {
  const scalar_t mx = pg[0], my = pg[1], a = pg[2], b = pg[3], c = pg[4], o = pg[5];
  const scalar_t fx = static_cast<scalar_t>(ox);
  for (int q = 0; q < n; ++q) {
    const scalar_t dy = my - (static_cast<scalar_t>(oy + rows[q]) + scalar_t(0.5));
    Row<scalar_t>& r = out[q];
    int32_t count = 0;
#pragma omp simd reduction(+ : count)
    for (int x = 0; x < kT; ++x) {
      const scalar_t dx = lane_dx(mx, fx, x), sigma = sigma_of(a, b, c, dx, dy);
      const scalar_t vis = vis_of(sigma), raw = raw_of(sigma, vis, o);
      r.dx[x] = dx, r.vis[x] = vis, r.raw[x] = raw;
      count += raw >= scalar_t(kAlphaMin);
    }
    r.dy = dy;
    counts[q] = count;
  }
}

// --------------------------------------------------------------------------- forward
template <typename scalar_t>
struct Inputs {
  const scalar_t* packed;  // [n_vis, kHead + Dp], in depth order
  const int64_t *off, *ids;
  int64_t d, dp, d_col, width, height, tiles_x, tiles_y;  // D channels (d_col colours + depth), padded Dp
};

// One tile, front to back. Writes its pixels of img [C, H, W, d_col], depth [C, H, W] (when D > d_col),
// alpha, the final transmittance and last (index in the tile's list of the last Gaussian that
// contributed, -1 for none). acc is scratch [kP * Dp]. kDp: Dp when known at compile time (else 0).
template <typename scalar_t, int kDp>
void fwd_tile(int64_t t, const Inputs<scalar_t>& in, scalar_t* acc, scalar_t* img, scalar_t* depth_out,
              scalar_t* alpha_out, scalar_t* t_out, int32_t* last_out) {
  const TileGeom tg = tile_geom(t, in.tiles_x, in.tiles_y, in.width, in.height);
  const int64_t dp = kDp ? kDp : in.dp, stride = kHead + dp, start = in.off[t], count = in.off[t + 1] - start;
  const int64_t* ids = in.ids + start;
  alignas(64) scalar_t trans[kP], w[kT];
  alignas(64) int32_t last[kP], done[kP], lane_ok[kT], use[kT];
  std::fill(acc, acc + kP * dp, scalar_t(0));
  std::fill(trans, trans + kP, scalar_t(1)), std::fill(last, last + kP, -1), std::fill(done, done + kP, 0);
  for (int x = 0; x < kT; ++x) lane_ok[x] = x < tg.tw;
  int64_t n_done = 0, row_done[kT] = {0};
  uint32_t alive = (uint32_t(1) << tg.th) - 1;  // rows with pixels still drawing
  const scalar_t a_min = scalar_t(kAlphaMin), a_max = scalar_t(kAlphaMax), t_min = scalar_t(kTMin);
  Row<scalar_t> rb[kT];
  int32_t rows[kT], counts[kT];
  for (int64_t j = 0; j < kPrefetch; ++j) prefetch_entry(in.packed, stride, ids, j, count);
  for (int64_t j = 0; j < count && n_done < tg.tw * tg.th; ++j) {
    prefetch_entry(in.packed, stride, ids, j + kPrefetch, count);
    const scalar_t* pg = in.packed + ids[j] * stride;
    const uint32_t mask = footprint(pg, tg) & alive;
    if (mask == 0) continue;
    const int m = mask_rows(mask, rows);
    eval_rows<scalar_t>(pg, tg.ox, tg.oy, rows, m, rb, counts);
    const int32_t jj = static_cast<int32_t>(j);
    const scalar_t* cg = pg + kHead;
    for (int q = 0; q < m; ++q) {
      if (counts[q] == 0) continue;
      const int64_t row = rows[q];
      const Row<scalar_t>& r = rb[q];
      scalar_t* tr = trans + row * kT;
      int32_t *ls = last + row * kT, *dn = done + row * kT;
      int32_t used = 0, stopped = 0;
#pragma omp simd reduction(+ : used, stopped)
      for (int x = 0; x < kT; ++x) {
        const bool on = (r.raw[x] >= a_min) & (dn[x] == 0) & (lane_ok[x] != 0);
        const scalar_t al = std::min(a_max, r.raw[x]);
        const scalar_t next_t = tr[x] * (scalar_t(1) - al);
        const bool stop = on & (next_t <= t_min);
        const bool ok = on & !stop;
        w[x] = ok ? al * tr[x] : scalar_t(0);
        tr[x] = ok ? next_t : tr[x];
        ls[x] = ok ? jj : ls[x];
        dn[x] |= stop;
        use[x] = ok;
        used += ok, stopped += stop;
      }
      row_done[row] += stopped, n_done += stopped;
      if (row_done[row] == tg.tw) alive &= ~(uint32_t(1) << row);
      if (used == 0) continue;
      for (uint32_t bits = lane_bits(use); bits; bits &= bits - 1) {  // channel work only where it draws
        const int x = __builtin_ctz(bits);
        axpy_padded(w[x], cg, acc + (row * kT + x) * dp, dp);
      }
    }
  }
  const int64_t d_col = in.d_col;
  for (int64_t row = 0; row < tg.th; ++row)
    for (int64_t x = 0; x < tg.tw; ++x) {
      const int64_t p = row * kT + x, pix = (tg.cam * in.height + tg.oy + row) * in.width + tg.ox + x;
      for (int64_t c = 0; c < d_col; ++c) img[pix * d_col + c] = acc[p * dp + c];
      if (depth_out) depth_out[pix] = acc[p * dp + d_col];
      alpha_out[pix] = scalar_t(1) - trans[p];
      t_out[pix] = trans[p];
      last_out[pix] = last[p];
    }
}

// --------------------------------------------------------------------------- backward
// One tile, back to front. Writes one gradient row per list entry it reaches,
// [v_mean (2), v_conic (3), v_opacity (1), v_color (D)], and returns how many (from the list's start).
// v_out is scratch [kP * Dp]. kDp: Dp when known at compile time (else 0).
template <typename scalar_t, int kDp>
int64_t bwd_tile(int64_t t, const Inputs<scalar_t>& in, scalar_t* v_out, const scalar_t* t_final, const int32_t* last_in,
                 const scalar_t* v_img, const scalar_t* v_depth, const scalar_t* v_alpha_img, scalar_t* rows_out) {
  const TileGeom tg = tile_geom(t, in.tiles_x, in.tiles_y, in.width, in.height);
  const int64_t d = in.d, dp = kDp ? kDp : in.dp, d_col = in.d_col, start = in.off[t];
  const int64_t stride = 6 + d, pstride = kHead + dp;  // gradient row, packed row
  const int64_t* ids = in.ids + start;
  alignas(64) scalar_t trans[kP], t_fin[kP], v_a[kP], buf[kP];  // buf: sum over later Gaussians of w (colour . V)
  alignas(64) scalar_t fac[kT], ra_on[kT], t_on[kT], v_al[kT], cv[kT];
  alignas(64) scalar_t s_mx[kT], s_my[kT], s_a[kT], s_b[kT], s_c[kT], s_o[kT];
  alignas(64) int32_t last[kP], on_lane[kT];
  std::vector<scalar_t> g_col(dp);
  std::fill(v_out, v_out + kP * dp, scalar_t(0));
  std::fill(trans, trans + kP, scalar_t(1)), std::fill(t_fin, t_fin + kP, scalar_t(1));
  std::fill(v_a, v_a + kP, scalar_t(0)), std::fill(buf, buf + kP, scalar_t(0)), std::fill(last, last + kP, -1);
  int32_t max_last = -1, row_last[kT];  // per row: the last list entry any of its pixels used
  std::fill(row_last, row_last + kT, -1);
  for (int64_t row = 0; row < tg.th; ++row)
    for (int64_t x = 0; x < tg.tw; ++x) {
      const int64_t p = row * kT + x, pix = (tg.cam * in.height + tg.oy + row) * in.width + tg.ox + x;
      trans[p] = t_fin[p] = t_final[pix];
      v_a[p] = v_alpha_img[pix];
      for (int64_t c = 0; c < d_col; ++c) v_out[p * dp + c] = v_img[pix * d_col + c];
      if (v_depth) v_out[p * dp + d_col] = v_depth[pix];
      last[p] = last_in[pix];
      row_last[row] = std::max(row_last[row], last[p]);
    }
  for (int64_t row = 0; row < tg.th; ++row) max_last = std::max(max_last, row_last[row]);
  const scalar_t a_min = scalar_t(kAlphaMin), a_max = scalar_t(kAlphaMax);
  Row<scalar_t> rb[kT];
  int32_t rows[kT], counts[kT];
  const int64_t n_entries = max_last + 1;
  for (int64_t j = 0; j < kPrefetch; ++j) prefetch_entry(in.packed, pstride, ids, max_last - j, n_entries);
  for (int32_t j = max_last; j >= 0; --j) {
    prefetch_entry(in.packed, pstride, ids, j - kPrefetch, n_entries);
    const scalar_t* pg = in.packed + ids[j] * pstride;
    const scalar_t a = pg[2], b = pg[3], c = pg[4], *cg = pg + kHead;
    scalar_t* out = rows_out + (start + j) * stride;
    uint32_t reach = 0;  // rows with a pixel that had not stopped before this entry
#pragma omp simd reduction(| : reach)
    for (int row = 0; row < kT; ++row) reach |= static_cast<uint32_t>(j <= row_last[row]) << row;
    const int n_rows = mask_rows(footprint(pg, tg) & reach, rows);
    if (n_rows > 0) eval_rows<scalar_t>(pg, tg.ox, tg.oy, rows, n_rows, rb, counts);
    bool any = false;
    for (int q = 0; q < n_rows; ++q) {
      if (counts[q] == 0) continue;
      const int64_t row = rows[q];
      const Row<scalar_t>& r = rb[q];
      scalar_t *tr = trans + row * kT, *tf = t_fin + row * kT, *va = v_a + row * kT, *bu = buf + row * kT;
      const int32_t* ls = last + row * kT;
      int32_t used = 0;
#pragma omp simd reduction(+ : used)
      for (int x = 0; x < kT; ++x) {
        const bool on = (r.raw[x] >= a_min) & (j <= ls[x]);  // lanes beyond the image have last = -1
        const scalar_t al = std::min(a_max, r.raw[x]);
        const scalar_t ra = scalar_t(1) / (scalar_t(1) - al);
        const scalar_t t_new = on ? tr[x] * ra : tr[x];  // transmittance in front of this Gaussian
        tr[x] = t_new;
        fac[x] = on ? al * t_new : scalar_t(0);
        ra_on[x] = on ? ra : scalar_t(0);
        t_on[x] = on ? t_new : scalar_t(0);
        v_al[x] = on ? tf[x] * ra * va[x] : scalar_t(0);  // d(1 - T_final) / d alpha = T_final / (1 - alpha)
        cv[x] = scalar_t(0);
        on_lane[x] = on;
        used += on;
      }
      if (used == 0) continue;
      if (!any) {  // first row this entry reaches: start its sums
        any = true;
        std::fill(g_col.begin(), g_col.end(), scalar_t(0));
        for (scalar_t* s : {s_mx, s_my, s_a, s_b, s_c, s_o}) std::fill(s, s + kT, scalar_t(0));
      }
      for (uint32_t bits = lane_bits(on_lane); bits; bits &= bits - 1) {  // channel work only where it draws
        const int x = __builtin_ctz(bits);
        const scalar_t* vo = v_out + (row * kT + x) * dp;
        cv[x] = dot_padded(cg, vo, dp);
        axpy_padded(fac[x], vo, g_col.data(), dp);
      }
#pragma omp simd
      for (int x = 0; x < kT; ++x) {
        // d(sum_k img_k V_k) / d alpha = T (colour . V) - buffer . V / (1 - alpha)
        const scalar_t v_alpha = v_al[x] + (t_on[x] * cv[x] - ra_on[x] * bu[x]);
        bu[x] += fac[x] * cv[x];
        const bool grad = (ra_on[x] != scalar_t(0)) & (r.raw[x] <= a_max);  // on, and not clamped (gsplat)
        const scalar_t vs = grad ? -r.raw[x] * v_alpha : scalar_t(0);      // dL/dsigma
        const scalar_t dx = r.dx[x], dy = r.dy;
        s_a[x] += scalar_t(0.5) * vs * dx * dx, s_b[x] += vs * dx * dy, s_c[x] += scalar_t(0.5) * vs * dy * dy;
        s_mx[x] += vs * (a * dx + b * dy), s_my[x] += vs * (b * dx + c * dy);
        s_o[x] += grad ? r.vis[x] * v_alpha : scalar_t(0);
      }
    }
    if (!any) {
      std::fill(out, out + stride, scalar_t(0));
      continue;
    }
    out[0] = sum16(s_mx), out[1] = sum16(s_my), out[2] = sum16(s_a), out[3] = sum16(s_b), out[4] = sum16(s_c);
    out[5] = sum16(s_o);
    for (int64_t c = 0; c < d; ++c) out[6 + c] = g_col[c];
  }
  return n_entries;
}

// --------------------------------------------------------------------------- drivers
// Forward: packs the visible Gaussians in depth order (packed [n_vis, kHead + Dp]: geometry, footprint,
// the d_col colours, the depth when z is given, zero padding), then renders img [C, H, W, d_col],
// depth [C, H, W] (the alpha-weighted sum of z, when z is given), alpha, the final transmittance and
// last [C, H, W] tile by tile.
template <typename scalar_t>
void rasterize_fwd(const scalar_t* m, const scalar_t* con, const scalar_t* op, const scalar_t* col, int64_t d_col,
                   const scalar_t* z, const int64_t* off, const int64_t* ranks, const int64_t* order, int64_t n_vis,
                   int64_t n_cams, int64_t width, int64_t height, scalar_t* packed, scalar_t* img, scalar_t* depth,
                   scalar_t* alpha, scalar_t* trans, int32_t* last, int n_threads) {
  const int64_t d = d_col + (z != nullptr), dp = padded(d), stride = kHead + dp, n_pix = n_cams * height * width;
  const int64_t tiles_x = (width + kT - 1) / kT, tiles_y = (height + kT - 1) / kT, n_tiles = n_cams * tiles_x * tiles_y;
  // A gather from Gaussians in memory order to depth order: the rows ahead are prefetched, and the
  // colours copied by a plain loop (a memmove call per Gaussian cost more than the copy).
  parallel_static(n_vis, n_threads, [&](int64_t k) {
    if (k + 16 < n_vis) {
      const int64_t h = order[k + 16];
      ff3r::prefetch_line(col + h * d_col), ff3r::prefetch_line(col + (h + 1) * d_col - 1);
      ff3r::prefetch_line(m + 2 * h), ff3r::prefetch_line(con + 3 * h), ff3r::prefetch_line(op + h);
      if (z) ff3r::prefetch_line(z + h);
    }
    const int64_t g = order[k];
    scalar_t* o = packed + k * stride;
    o[0] = m[2 * g], o[1] = m[2 * g + 1], o[2] = con[3 * g], o[3] = con[3 * g + 1], o[4] = con[3 * g + 2], o[5] = op[g];
    write_shape(o);
    const scalar_t* src = col + g * d_col;
    scalar_t* dst = o + kHead;
    for (int64_t c = 0; c < d_col; ++c) dst[c] = src[c];
    if (z) dst[d_col] = z[g];
    for (int64_t c = d; c < dp; ++c) dst[c] = scalar_t(0);
  });
  std::fill(img, img + n_pix * d_col, scalar_t(0)), std::fill(alpha, alpha + n_pix, scalar_t(0));
  if (depth) std::fill(depth, depth + n_pix, scalar_t(0));
  std::fill(trans, trans + n_pix, scalar_t(1)), std::fill(last, last + n_pix, -1);
  const Inputs<scalar_t> in{packed, off, ranks, d, dp, d_col, width, height, tiles_x, tiles_y};
  const std::vector<int64_t> tiles = tile_order(off, n_tiles);
  const int nt = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(n_threads, static_cast<int64_t>(tiles.size()))));
  std::vector<std::vector<scalar_t>> scratch(nt, std::vector<scalar_t>(kP * dp));
  with_width(dp, [&](auto width_tag) {
    constexpr int kDp = decltype(width_tag)::value;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt) if (nt > 1)
    for (int64_t j = 0; j < static_cast<int64_t>(tiles.size()); ++j)
      fwd_tile<scalar_t, kDp>(tiles[j], in, scratch[ff3r::thread_id()].data(), img, depth, alpha, trans, last);
  });
}

// Backward: per-intersection gradient rows (scratch rows [I, 6 + D], in list order), summed per depth
// rank in tile order (the lists' transpose first / pos from tile_lists) and written to v_means2d [n, 2],
// v_conics [n, 3], v_opacities [n], v_colors [n, d_col] and v_z [n] (when z was given; zero for the
// Gaussians that touch no tile).
template <typename scalar_t>
void rasterize_bwd(const scalar_t* packed, int64_t n_vis, int64_t n_gauss, int64_t d_col, int64_t has_z, const int64_t* off,
                   const int64_t* ranks, const int64_t* order, const int64_t* first, const int32_t* pos,
                   const scalar_t* trans, const int32_t* last, const scalar_t* v_img, const scalar_t* v_depth,
                   const scalar_t* v_alpha, int64_t n_cams, int64_t width, int64_t height, scalar_t* rows, scalar_t* v_m,
                   scalar_t* v_c, scalar_t* v_o, scalar_t* v_col, scalar_t* v_z, int n_threads) {
  const int64_t d = d_col + (has_z ? 1 : 0), dp = padded(d), stride = 6 + d;
  const int64_t tiles_x = (width + kT - 1) / kT, tiles_y = (height + kT - 1) / kT, n_tiles = n_cams * tiles_x * tiles_y;
  const Inputs<scalar_t> in{packed, off, ranks, d, dp, d_col, width, height, tiles_x, tiles_y};
  const std::vector<int64_t> tiles = tile_order(off, n_tiles);
  const int nt = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(n_threads, static_cast<int64_t>(tiles.size()))));
  std::vector<std::vector<scalar_t>> scratch(nt, std::vector<scalar_t>(kP * dp));
  const scalar_t* vd = has_z ? v_depth : nullptr;
  // live[i]: whether list entry i got a row (a tile stops at the last entry any of its pixels used).
  std::vector<char> live(static_cast<size_t>(off[n_tiles]));
  with_width(dp, [&](auto width_tag) {
    constexpr int kDp = decltype(width_tag)::value;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt) if (nt > 1)
    for (int64_t j = 0; j < static_cast<int64_t>(tiles.size()); ++j) {
      const int64_t t = tiles[j];
      const int64_t n_rows =
          bwd_tile<scalar_t, kDp>(t, in, scratch[ff3r::thread_id()].data(), trans, last, v_img, vd, v_alpha, rows);
      std::memset(live.data() + off[t], 1, n_rows), std::memset(live.data() + off[t] + n_rows, 0, off[t + 1] - off[t] - n_rows);
    }
  });
  // Gaussians that touch no tile get zeros; the others are written once below.
  std::vector<char> listed(n_gauss, 0);
  parallel_static(n_vis, n_threads, [&](int64_t k) { listed[order[k]] = 1; });
  parallel_static(n_gauss, n_threads, [&](int64_t g) {
    if (listed[g]) return;
    v_m[2 * g] = v_m[2 * g + 1] = v_c[3 * g] = v_c[3 * g + 1] = v_c[3 * g + 2] = v_o[g] = scalar_t(0);
    std::fill(v_col + g * d_col, v_col + (g + 1) * d_col, scalar_t(0));
    if (has_z) v_z[g] = scalar_t(0);
  });
  // Each rank adds its rows in tile order (the same order whatever the number of threads).
  parallel_static(n_vis, n_threads, [&](int64_t k) {
    scalar_t di[6 + 64 + 1];
    std::vector<scalar_t> big;
    scalar_t* acc = di;
    if (stride > static_cast<int64_t>(sizeof di / sizeof di[0])) big.resize(stride), acc = big.data();
    std::fill(acc, acc + stride, scalar_t(0));
    if (k + 8 < n_vis)  // the rows of the rank ahead (scattered over the lists)
      for (int64_t q = first[k + 8]; q < first[k + 9]; ++q) {
        const scalar_t* ahead = rows + int64_t(pos[q]) * stride;
        ff3r::prefetch_line(ahead), ff3r::prefetch_line(ahead + stride - 1);
      }
    for (int64_t q = first[k]; q < first[k + 1]; ++q) {
      const int64_t i = pos[q];
      if (!live[i]) continue;
      const scalar_t* src = rows + i * stride;
      for (int64_t c = 0; c < stride; ++c) acc[c] += src[c];
    }
    const int64_t g = order[k];
    v_m[2 * g] = acc[0], v_m[2 * g + 1] = acc[1], v_c[3 * g] = acc[2], v_c[3 * g + 1] = acc[3], v_c[3 * g + 2] = acc[4];
    v_o[g] = acc[5];
    for (int64_t c = 0; c < d_col; ++c) v_col[g * d_col + c] = acc[6 + c];
    if (has_z) v_z[g] = acc[6 + d_col];
  });
}

}  // namespace

// --------------------------------------------------------------------------- C ABI
// One entry point per function and dtype (suffix f32 / f64); arrays are contiguous and allocated by the
// caller; z / depth / v_depth / v_z may be null (no depth channel); nt is the number of threads.
#define FF3R_DEFINE(T, S)                                                                                          \
  FF3R_EXPORT void ff3r_rasterize_fwd_##S(const T* m, const T* con, const T* op, const T* col, int64_t d_col,      \
                                          const T* z, const int64_t* off, const int64_t* ranks,                    \
                                          const int64_t* order, int64_t n_vis, int64_t c, int64_t w, int64_t h,    \
                                          T* packed, T* img, T* depth, T* alpha, T* trans, int32_t* last, int nt) { \
    rasterize_fwd<T>(m, con, op, col, d_col, z, off, ranks, order, n_vis, c, w, h, packed, img, depth, alpha, trans, \
                     last, nt);                                                                                    \
  }                                                                                                                \
  FF3R_EXPORT void ff3r_rasterize_bwd_##S(const T* packed, int64_t n_vis, int64_t n, int64_t d_col, int64_t has_z, \
                                          const int64_t* off, const int64_t* ranks, const int64_t* order,          \
                                          const int64_t* first, const int32_t* pos, const T* trans,                \
                                          const int32_t* last, const T* v_img, const T* v_depth, const T* v_alpha, \
                                          int64_t c, int64_t w, int64_t h, T* rows, T* v_m, T* v_c, T* v_o,        \
                                          T* v_col, T* v_z, int nt) {                                              \
    rasterize_bwd<T>(packed, n_vis, n, d_col, has_z, off, ranks, order, first, pos, trans, last, v_img, v_depth,    \
                     v_alpha, c, w, h, rows, v_m, v_c, v_o, v_col, v_z, nt);                                       \
  }

FF3R_DEFINE(float, f32)
FF3R_DEFINE(double, f64)

FF3R_EXPORT int ff3r_abi_version() { return 7; }
FF3R_EXPORT int ff3r_packed_head() { return static_cast<int>(kHead); }
FF3R_EXPORT int64_t ff3r_packed_stride(int64_t d) { return kHead + padded(d); }
