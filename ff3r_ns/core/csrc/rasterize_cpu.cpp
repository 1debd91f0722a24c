// CPU tile rasterizer with gsplat 1.4.0's semantics (isect_tiles + rasterize_to_pixels fwd/bwd).
//
// A plain C-ABI shared library (no torch headers, so it compiles in seconds and does not depend on
// torch's C++ ABI), loaded with ctypes by ff3r_ns/core/render_cpu.py, which allocates every array.
// Work is spread over OpenMP threads (as many as the caller passes: torch.get_num_threads()), tiles
// handed out dynamically, longest list first. A tile is processed by one thread and writes only its
// own pixels and its own per-intersection gradient rows (summed per Gaussian afterwards in a fixed
// order), so results do not depend on the number of threads.
//
// Per pixel, front to back (rasterize_to_pixels_fwd.cu): sigma = 0.5 (a dx^2 + c dy^2) + b dx dy with
// d = mean - pixel centre; skipped when sigma < 0 or o exp(-sigma) < 1/255; alpha = min(0.999, o exp(-sigma));
// the pixel stops before the Gaussian that would take the transmittance to <= 1e-4. Backward walks
// the lists back to front, recovering the transmittance by division (rasterize_to_pixels_bwd.cu).
//
// Layout: a tile row (16 pixels) is one vector of lanes and per-pixel state is channel-major
// ([D][256]), so the inner loops have a fixed trip count of 16 and vectorise. Only the rows of a tile
// that a Gaussian's ellipse sigma <= log(255 o) can reach are visited (widened so that rounding can
// never matter: every other pixel would be skipped anyway). Both passes evaluate alphas with the same
// non-inlined function and no FMA contraction (-ffp-contract=off), so backward sees exactly the
// contributions forward made. The visible Gaussians are packed in depth order, so every tile reads
// them front to back.

#include <cstring>
#include <utility>
#include <vector>

#include "common.h"

namespace {

using ff3r::floor_in;
using ff3r::parallel_dynamic;
using ff3r::parallel_static;

constexpr int kT = ff3r::kTile;  // one tile row = kT lanes
constexpr int kP = kT * kT;
constexpr double kAlphaMin = 1.0 / 255.0;
constexpr double kAlphaMax = 0.999;
constexpr double kTMin = 1e-4;
constexpr int64_t kPrefetch = 32;  // list entries fetched ahead
constexpr int64_t kHead = 12;      // packed row: mx, my, a, b, c, o, ext_x, ext_y, p1, p2, p3, 0, then the D colours

// --------------------------------------------------------------------------- exp
// exp(-s) for s >= 0. float: Cephes' expf polynomial (relative error ~1e-7), plain arithmetic so that
// the 16-lane loops calling it vectorise; double: std::exp.
template <typename scalar_t>
inline scalar_t exp_neg(scalar_t s);

template <>
inline float exp_neg<float>(float s) {
  const float x = std::max(-s, -87.0f);
  const int32_t ni = static_cast<int32_t>(x * 1.44269504088896341f - 0.5f);  // round(x / ln 2), x <= 0
  const float n = static_cast<float>(ni);
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  const float z = r * r;
  float y = 1.9875691500e-4f;
  y = y * r + 1.3981999507e-3f;
  y = y * r + 8.3334519073e-3f;
  y = y * r + 4.1665795894e-2f;
  y = y * r + 1.6666665459e-1f;
  y = y * r + 5.0000001201e-1f;
  y = y * z + r + 1.0f;
  const int32_t bits = (ni + 127) << 23;  // 2^n
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return y * scale;
}

template <>
inline double exp_neg<double>(double s) {
  return std::exp(-s);
}

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

// The rows of a tile that the footprint reaches with a pixel centre (widened by a quarter pixel), so
// skipping the other rows cannot change the result. Returns how many, written to rows.
template <typename scalar_t>
inline int footprint(const scalar_t* pg, const TileGeom& tg, int32_t* rows) {
  const double ext_x = pg[6], ext_y = pg[7], p1 = pg[8], p2 = pg[9], p3 = pg[10];
  int n = 0;
  if (!(ext_y >= 0.0)) return 0;
  if (std::isinf(ext_y)) {
    for (int row = 0; row < tg.th; ++row) rows[n++] = row;
    return n;
  }
  const double xc = double(pg[0]) - double(tg.ox) - 0.5, yc = double(pg[1]) - double(tg.oy) - 0.5;  // lane, row
  const double last_lane = static_cast<double>(tg.tw - 1);
  if (xc + ext_x < 0.0 || xc - ext_x > last_lane) return 0;
  const int64_t r0 = floor_in(yc - ext_y, 0, tg.th), r1 = floor_in(yc + ext_y, -1, tg.th - 1) + 1;
  for (int64_t row = r0; row < r1; ++row) {
    const double v = yc - static_cast<double>(row);  // mean - pixel centre, in y
    const double h2 = p1 - p2 * v * v;
    if (h2 < 0.0) continue;
    const double half = std::sqrt(h2) + 0.25, centre = xc + p3 * v;
    if (std::max(0.0, std::ceil(centre - half)) > std::min(last_lane, std::floor(centre + half))) continue;  // no lane
    rows[n++] = static_cast<int32_t>(row);
  }
  return n;
}

template <typename scalar_t>
struct Row {
  alignas(64) scalar_t dx[kT];
  alignas(64) scalar_t vis[kT];  // exp(-sigma)
  alignas(64) scalar_t raw[kT];  // o * exp(-sigma), 0 where sigma < 0 (or NaN)
  scalar_t dy;
};

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
      const scalar_t dx = mx - (fx + static_cast<scalar_t>(x) + scalar_t(0.5));
      const scalar_t sigma = scalar_t(0.5) * (a * dx * dx + c * dy * dy) + b * dx * dy;
      const scalar_t vis = exp_neg<scalar_t>(sigma > scalar_t(0) ? sigma : scalar_t(0));
      const scalar_t raw = sigma >= scalar_t(0) ? o * vis : scalar_t(0);
      r.dx[x] = dx, r.vis[x] = vis, r.raw[x] = raw;
      count += raw >= scalar_t(kAlphaMin);
    }
    r.dy = dy;
    counts[q] = count;
  }
}

template <typename scalar_t>
inline void prefetch_entry(const scalar_t* packed, int64_t stride, const int64_t* ids, int64_t j, int64_t hi) {
  if (j < 0 || j >= hi) return;
  const char* p = reinterpret_cast<const char*>(packed + ids[j] * stride);
  for (int64_t b = 0; b < stride * static_cast<int64_t>(sizeof(scalar_t)); b += 64) __builtin_prefetch(p + b);
}

// --------------------------------------------------------------------------- forward
template <typename scalar_t>
struct Inputs {
  const scalar_t* packed;  // [n_vis, kHead + D], in depth order
  const int64_t *off, *ids;
  int64_t d, width, height, tiles_x, tiles_y;
};

// One tile, front to back. Writes its pixels of img [C, H, W, D], alpha, the final transmittance and
// last (index in the tile's list of the last Gaussian that contributed, -1 for none).
template <typename scalar_t>
void fwd_tile(int64_t t, const Inputs<scalar_t>& in, scalar_t* img, scalar_t* alpha_out, scalar_t* t_out, int32_t* last_out) {
  const TileGeom tg = tile_geom(t, in.tiles_x, in.tiles_y, in.width, in.height);
  const int64_t d = in.d, stride = kHead + d, start = in.off[t], count = in.off[t + 1] - start;
  const int64_t* ids = in.ids + start;
  alignas(64) scalar_t trans[kP], w[kT];
  alignas(64) int32_t last[kP], done[kP], lane_ok[kT];
  std::vector<scalar_t> acc(d * kP, scalar_t(0));  // [D][256]
  std::fill(trans, trans + kP, scalar_t(1)), std::fill(last, last + kP, -1), std::fill(done, done + kP, 0);
  for (int x = 0; x < kT; ++x) lane_ok[x] = x < tg.tw;
  int64_t n_done = 0, row_done[kT] = {0};
  const scalar_t a_min = scalar_t(kAlphaMin), a_max = scalar_t(kAlphaMax), t_min = scalar_t(kTMin);
  Row<scalar_t> rb[kT];
  int32_t rows[kT], counts[kT];
  for (int64_t j = 0; j < kPrefetch; ++j) prefetch_entry(in.packed, stride, ids, j, count);
  for (int64_t j = 0; j < count && n_done < tg.tw * tg.th; ++j) {
    prefetch_entry(in.packed, stride, ids, j + kPrefetch, count);
    const scalar_t* pg = in.packed + ids[j] * stride;
    const int n_rows = footprint(pg, tg, rows);
    int m = 0;
    for (int q = 0; q < n_rows; ++q)
      if (row_done[rows[q]] < tg.tw) rows[m++] = rows[q];
    if (m == 0) continue;
    eval_rows<scalar_t>(pg, tg.ox, tg.oy, rows, m, rb, counts);
    const int32_t jj = static_cast<int32_t>(j);
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
        const bool use = on & !stop;
        w[x] = use ? al * tr[x] : scalar_t(0);
        tr[x] = use ? next_t : tr[x];
        ls[x] = use ? jj : ls[x];
        dn[x] |= stop;
        used += use, stopped += stop;
      }
      row_done[row] += stopped, n_done += stopped;
      if (used == 0) continue;
      const scalar_t* cg = pg + kHead;
      for (int64_t k = 0; k < d; ++k) {
        scalar_t* ak = acc.data() + k * kP + row * kT;
        const scalar_t ck = cg[k];
#pragma omp simd
        for (int x = 0; x < kT; ++x) ak[x] += w[x] * ck;
      }
    }
  }
  for (int64_t row = 0; row < tg.th; ++row)
    for (int64_t x = 0; x < tg.tw; ++x) {
      const int64_t p = row * kT + x, pix = (tg.cam * in.height + tg.oy + row) * in.width + tg.ox + x;
      for (int64_t k = 0; k < d; ++k) img[pix * d + k] = acc[k * kP + p];
      alpha_out[pix] = scalar_t(1) - trans[p];
      t_out[pix] = trans[p];
      last_out[pix] = last[p];
    }
}

// --------------------------------------------------------------------------- backward
// One tile, back to front. Writes one gradient row per list entry it reaches,
// [v_mean (2), v_conic (3), v_opacity (1), v_color (D)], and returns how many (from the list's start).
template <typename scalar_t>
int64_t bwd_tile(int64_t t, const Inputs<scalar_t>& in, const scalar_t* t_final, const int32_t* last_in,
                 const scalar_t* v_img, const scalar_t* v_alpha_img, scalar_t* rows_out) {
  const TileGeom tg = tile_geom(t, in.tiles_x, in.tiles_y, in.width, in.height);
  const int64_t d = in.d, start = in.off[t], stride = 6 + d, pstride = kHead + d;  // gradient row, packed row
  const int64_t* ids = in.ids + start;
  alignas(64) scalar_t trans[kP], t_fin[kP], v_a[kP];
  alignas(64) scalar_t fac[kT], ra_on[kT], t_on[kT], v_al[kT];
  alignas(64) scalar_t s_mx[kT], s_my[kT], s_a[kT], s_b[kT], s_c[kT], s_o[kT];
  alignas(64) int32_t last[kP];
  std::vector<scalar_t> v_out(d * kP, scalar_t(0)), buffer(d * kP, scalar_t(0)), g_col(d * kT);  // [D][256], [D][16]
  std::fill(trans, trans + kP, scalar_t(1)), std::fill(t_fin, t_fin + kP, scalar_t(1));
  std::fill(v_a, v_a + kP, scalar_t(0)), std::fill(last, last + kP, -1);
  int32_t max_last = -1, row_last[kT];  // per row: the last list entry any of its pixels used
  std::fill(row_last, row_last + kT, -1);
  for (int64_t row = 0; row < tg.th; ++row)
    for (int64_t x = 0; x < tg.tw; ++x) {
      const int64_t p = row * kT + x, pix = (tg.cam * in.height + tg.oy + row) * in.width + tg.ox + x;
      trans[p] = t_fin[p] = t_final[pix];
      v_a[p] = v_alpha_img[pix];
      for (int64_t k = 0; k < d; ++k) v_out[k * kP + p] = v_img[pix * d + k];
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
    std::fill(g_col.begin(), g_col.end(), scalar_t(0));
    for (scalar_t* s : {s_mx, s_my, s_a, s_b, s_c, s_o}) std::fill(s, s + kT, scalar_t(0));
    int n_rows = footprint(pg, tg, rows), m = 0;
    for (int q = 0; q < n_rows; ++q)
      if (j <= row_last[rows[q]]) rows[m++] = rows[q];  // rows whose pixels all stopped before this entry
    n_rows = m;
    if (n_rows > 0) eval_rows<scalar_t>(pg, tg.ox, tg.oy, rows, n_rows, rb, counts);
    bool any = false;
    for (int q = 0; q < n_rows; ++q) {
      if (counts[q] == 0) continue;
      const int64_t row = rows[q];
      const Row<scalar_t>& r = rb[q];
      const scalar_t dy = r.dy;
      scalar_t *tr = trans + row * kT, *tf = t_fin + row * kT, *va = v_a + row * kT;
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
        used += on;
      }
      if (used == 0) continue;
      any = true;
      // Colour terms (buffer = sum over later Gaussians of w * color); v_alpha's sum over channels is
      // split over kAcc accumulators so that its additions do not wait on each other.
      constexpr int kAcc = 4;
      alignas(64) scalar_t part[kAcc][kT] = {};
      for (int64_t k = 0; k < d; ++k) {
        const scalar_t ck = cg[k];
        const scalar_t* vo = v_out.data() + k * kP + row * kT;
        scalar_t* bf = buffer.data() + k * kP + row * kT;
        scalar_t* gc = g_col.data() + k * kT;
        scalar_t* pa = part[k % kAcc];
#pragma omp simd
        for (int x = 0; x < kT; ++x) {
          pa[x] += (ck * t_on[x] - bf[x] * ra_on[x]) * vo[x];
          gc[x] += fac[x] * vo[x];
          bf[x] += ck * fac[x];
        }
      }
#pragma omp simd
      for (int x = 0; x < kT; ++x) v_al[x] += (part[0][x] + part[1][x]) + (part[2][x] + part[3][x]);
#pragma omp simd
      for (int x = 0; x < kT; ++x) {
        const bool grad = (ra_on[x] != scalar_t(0)) & (r.raw[x] <= a_max);  // on, and not clamped (gsplat)
        const scalar_t vs = grad ? -r.raw[x] * v_al[x] : scalar_t(0);      // dL/dsigma
        const scalar_t dx = r.dx[x];
        s_a[x] += scalar_t(0.5) * vs * dx * dx, s_b[x] += vs * dx * dy, s_c[x] += scalar_t(0.5) * vs * dy * dy;
        s_mx[x] += vs * (a * dx + b * dy), s_my[x] += vs * (b * dx + c * dy);
        s_o[x] += grad ? r.vis[x] * v_al[x] : scalar_t(0);
      }
    }
    scalar_t* out = rows_out + (start + j) * stride;
    if (!any) {
      std::fill(out, out + stride, scalar_t(0));
      continue;
    }
    const scalar_t* sums[6] = {s_mx, s_my, s_a, s_b, s_c, s_o};
    for (int q = 0; q < 6; ++q) {
      scalar_t s = 0;
      for (int x = 0; x < kT; ++x) s += sums[q][x];
      out[q] = s;
    }
    for (int64_t k = 0; k < d; ++k) {
      scalar_t s = 0;
      for (int x = 0; x < kT; ++x) s += g_col[k * kT + x];
      out[6 + k] = s;
    }
  }
  return n_entries;
}

// --------------------------------------------------------------------------- drivers
// Forward: packs the visible Gaussians in depth order (packed [n_vis, kHead + D]), then renders img
// [C, H, W, D], alpha, the final transmittance and last [C, H, W] tile by tile.
template <typename scalar_t>
void rasterize_fwd(const scalar_t* m, const scalar_t* con, const scalar_t* op, const scalar_t* col, int64_t d,
                   const int64_t* off, const int64_t* ranks, const int64_t* order, int64_t n_vis, int64_t n_cams,
                   int64_t width, int64_t height, scalar_t* packed, scalar_t* img, scalar_t* alpha, scalar_t* trans,
                   int32_t* last, int n_threads) {
  const int64_t stride = kHead + d, n_pix = n_cams * height * width;
  const int64_t tiles_x = (width + kT - 1) / kT, tiles_y = (height + kT - 1) / kT, n_tiles = n_cams * tiles_x * tiles_y;
  parallel_static(n_vis, n_threads, [&](int64_t k) {
    const int64_t g = order[k];
    scalar_t* o = packed + k * stride;
    o[0] = m[2 * g], o[1] = m[2 * g + 1], o[2] = con[3 * g], o[3] = con[3 * g + 1], o[4] = con[3 * g + 2], o[5] = op[g];
    write_shape(o);
    std::copy(col + g * d, col + (g + 1) * d, o + kHead);
  });
  std::fill(img, img + n_pix * d, scalar_t(0)), std::fill(alpha, alpha + n_pix, scalar_t(0));
  std::fill(trans, trans + n_pix, scalar_t(1)), std::fill(last, last + n_pix, -1);
  const Inputs<scalar_t> in{packed, off, ranks, d, width, height, tiles_x, tiles_y};
  const std::vector<int64_t> tiles = tile_order(off, n_tiles);
  parallel_dynamic(static_cast<int64_t>(tiles.size()), n_threads,
                   [&](int64_t j) { fwd_tile<scalar_t>(tiles[j], in, img, alpha, trans, last); });
}

// Backward: per-intersection gradient rows (scratch rows [I, 6 + D]), summed per depth rank into
// dense [n_vis, 6 + D] in list order, then scattered to v_means2d [n, 2], v_conics [n, 3],
// v_opacities [n] and v_colors [n, D] (zero for the Gaussians that touch no tile).
template <typename scalar_t>
void rasterize_bwd(const scalar_t* packed, int64_t n_vis, int64_t n_gauss, int64_t d, const int64_t* off, const int64_t* ranks,
                   const int64_t* order, const scalar_t* trans, const int32_t* last, const scalar_t* v_img,
                   const scalar_t* v_alpha, int64_t n_cams, int64_t width, int64_t height, scalar_t* rows,
                   scalar_t* dense, scalar_t* v_m, scalar_t* v_c, scalar_t* v_o, scalar_t* v_col, int n_threads) {
  const int64_t stride = 6 + d;
  const int64_t tiles_x = (width + kT - 1) / kT, tiles_y = (height + kT - 1) / kT, n_tiles = n_cams * tiles_x * tiles_y;
  const Inputs<scalar_t> in{packed, off, ranks, d, width, height, tiles_x, tiles_y};
  std::vector<int64_t> n_rows(n_tiles, 0);  // per tile: rows off[t] .. off[t] + n_rows[t] were written
  const std::vector<int64_t> tiles = tile_order(off, n_tiles);
  parallel_static(n_vis * stride, n_threads, [&](int64_t i) { dense[i] = scalar_t(0); });
  parallel_dynamic(static_cast<int64_t>(tiles.size()), n_threads, [&](int64_t j) {
    n_rows[tiles[j]] = bwd_tile<scalar_t>(tiles[j], in, trans, last, v_img, v_alpha, rows);
  });
  // Each task owns a range of ranks and adds their rows in list order: deterministic, and no two
  // threads write the same row.
  const int64_t n_parts = std::min<int64_t>(std::max(n_threads, 1) * 4, std::max<int64_t>(n_vis, 1));
  parallel_dynamic(n_parts, n_threads, [&](int64_t q) {
    const int64_t lo = n_vis * q / n_parts, hi = n_vis * (q + 1) / n_parts;
    for (int64_t t = 0; t < n_tiles; ++t)
      for (int64_t i = off[t]; i < off[t] + n_rows[t]; ++i) {
        const int64_t k = ranks[i];
        if (k < lo || k >= hi) continue;
        scalar_t* dst = dense + k * stride;
        const scalar_t* src = rows + i * stride;
        for (int64_t c = 0; c < stride; ++c) dst[c] += src[c];
      }
  });
  parallel_static(n_gauss, n_threads, [&](int64_t g) {
    v_m[2 * g] = v_m[2 * g + 1] = v_c[3 * g] = v_c[3 * g + 1] = v_c[3 * g + 2] = v_o[g] = scalar_t(0);
    std::fill(v_col + g * d, v_col + (g + 1) * d, scalar_t(0));
  });
  parallel_static(n_vis, n_threads, [&](int64_t k) {
    const int64_t g = order[k];
    const scalar_t* di = dense + k * stride;
    v_m[2 * g] = di[0], v_m[2 * g + 1] = di[1], v_c[3 * g] = di[2], v_c[3 * g + 1] = di[3], v_c[3 * g + 2] = di[4];
    v_o[g] = di[5];
    std::copy(di + 6, di + stride, v_col + g * d);
  });
}

}  // namespace

// --------------------------------------------------------------------------- C ABI
// One entry point per function and dtype (suffix f32 / f64); arrays are contiguous and allocated by the
// caller; nt is the number of threads.
#define FF3R_DEFINE(T, S)                                                                                          \
  FF3R_EXPORT void ff3r_rasterize_fwd_##S(const T* m, const T* con, const T* op, const T* col, int64_t d,          \
                                          const int64_t* off, const int64_t* ranks, const int64_t* order,          \
                                          int64_t n_vis, int64_t c, int64_t w, int64_t h, T* packed, T* img,       \
                                          T* alpha, T* trans, int32_t* last, int nt) {                             \
    rasterize_fwd<T>(m, con, op, col, d, off, ranks, order, n_vis, c, w, h, packed, img, alpha, trans, last, nt);  \
  }                                                                                                                \
  FF3R_EXPORT void ff3r_rasterize_bwd_##S(const T* packed, int64_t n_vis, int64_t n, int64_t d, const int64_t* off,\
                                          const int64_t* ranks, const int64_t* order, const T* trans,              \
                                          const int32_t* last, const T* v_img, const T* v_alpha, int64_t c,        \
                                          int64_t w, int64_t h, T* rows, T* dense, T* v_m, T* v_c, T* v_o,         \
                                          T* v_col, int nt) {                                                      \
    rasterize_bwd<T>(packed, n_vis, n, d, off, ranks, order, trans, last, v_img, v_alpha, c, w, h, rows, dense, v_m,\
                     v_c, v_o, v_col, nt);                                                                         \
  }

FF3R_DEFINE(float, f32)
FF3R_DEFINE(double, f64)

FF3R_EXPORT int ff3r_abi_version() { return 4; }
FF3R_EXPORT int ff3r_packed_head() { return static_cast<int>(kHead); }
