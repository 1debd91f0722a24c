// Per-tile Gaussian lists for the CPU renderer (gsplat 1.4.0's isect_tiles + isect_offset_encode),
// C ABI, loaded by ff3r_ns/core/render_cpu.py: every Gaussian is listed in the 16x16 tiles its radius
// box touches, each list front to back by depth with ties in memory order (gsplat's stable radix sort).

#include <cstring>
#include <utility>
#include <vector>

#include "common.h"

namespace {

using ff3r::floor_in;
using ff3r::kTile;
using ff3r::parallel_dynamic;
using ff3r::parallel_static;

// Tile range [x0, x1) x [y0, y1) of a Gaussian with the arithmetic of gsplat's isect_tiles (and of
// render_torch.intersect_tiles), so that boundary cases round the same way.
template <typename scalar_t>
inline bool tile_box(const scalar_t* m, int32_t radius, int64_t tiles_x, int64_t tiles_y, int32_t* box) {
  if (radius <= 0) return false;
  const scalar_t ts = static_cast<scalar_t>(kTile);
  const scalar_t mx = m[0] / ts, my = m[1] / ts, r = static_cast<scalar_t>(radius) / ts;
  const double x0 = std::floor(mx - r), y0 = std::floor(my - r), x1 = std::ceil(mx + r), y1 = std::ceil(my + r);
  box[0] = static_cast<int32_t>(floor_in(x0, 0, tiles_x)), box[1] = static_cast<int32_t>(floor_in(x1, 0, tiles_x));
  box[2] = static_cast<int32_t>(floor_in(y0, 0, tiles_y)), box[3] = static_cast<int32_t>(floor_in(y1, 0, tiles_y));
  return box[1] > box[0] && box[3] > box[2];
}

// Depths as unsigned integers in the same order (sign-magnitude to offset binary), for a radix sort.
template <typename T>
struct SortKey;
template <>
struct SortKey<float> {
  using type = uint32_t;
};
template <>
struct SortKey<double> {
  using type = uint64_t;
};

template <typename T>
inline typename SortKey<T>::type sort_key(T z) {
  using K = typename SortKey<T>::type;
  K u;
  std::memcpy(&u, &z, sizeof u);
  const K sign = K(1) << (8 * sizeof(K) - 1);
  return (u & sign) ? ~u : (u | sign);
}

// Stable least-significant-digit radix sort of (key, id) pairs by key, 8 bits per pass.
template <typename K>
void radix_sort(std::vector<std::pair<K, int64_t>>& v) {
  std::vector<std::pair<K, int64_t>> tmp(v.size());
  for (unsigned shift = 0; shift < 8 * sizeof(K); shift += 8) {
    int64_t count[257] = {0};
    for (const auto& e : v) ++count[((e.first >> shift) & 0xFF) + 1];
    if (count[((v.empty() ? 0 : v[0].first >> shift) & 0xFF) + 1] == static_cast<int64_t>(v.size())) continue;  // one digit
    for (int i = 0; i < 256; ++i) count[i + 1] += count[i];
    for (const auto& e : v) tmp[count[(e.first >> shift) & 0xFF]++] = e;
    v.swap(tmp);
  }
}

// Ids g < n with hit[g], sorted by sort_key(z[g]), ties in id order. float32 with n < 2^32: (key << 32 | id) in
// one uint64, three stable 11-bit passes over the key (half the memory traffic of (key, id) pairs and one pass
// fewer; measured: 180k Gaussians 4.6 -> 1.3 ms); otherwise radix_sort of (key, id) pairs.
template <typename scalar_t>
std::vector<int64_t> depth_order(const scalar_t* z, const std::vector<char>& hit, int64_t n) {
  std::vector<int64_t> ids;
  if (sizeof(scalar_t) == 4 && n < (int64_t(1) << 32)) {
    std::vector<uint64_t> v, tmp;
    v.reserve(static_cast<size_t>(n));
    for (int64_t g = 0; g < n; ++g)
      if (hit[g]) v.push_back(static_cast<uint64_t>(sort_key(static_cast<float>(z[g]))) << 32 | static_cast<uint64_t>(g));
    tmp.resize(v.size());
    const int64_t size = static_cast<int64_t>(v.size());
    for (unsigned shift = 32; shift < 64 && size > 0; shift += 11) {
      const uint64_t mask = (uint64_t(1) << std::min(11u, 64 - shift)) - 1;
      std::vector<int64_t> count((size_t(1) << 11) + 1, 0);
      for (const uint64_t e : v) ++count[((e >> shift) & mask) + 1];
      if (count[((v[0] >> shift) & mask) + 1] == size) continue;  // one digit: nothing moves
      for (size_t i = 0; i + 1 < count.size(); ++i) count[i + 1] += count[i];
      for (const uint64_t e : v) tmp[count[(e >> shift) & mask]++] = e;
      v.swap(tmp);
    }
    ids.resize(v.size());
    for (int64_t k = 0; k < size; ++k) ids[k] = static_cast<int64_t>(v[k] & 0xFFFFFFFFu);
    return ids;
  }
  using Key = typename SortKey<scalar_t>::type;
  std::vector<std::pair<Key, int64_t>> pairs;
  for (int64_t g = 0; g < n; ++g)
    if (hit[g]) pairs.emplace_back(sort_key(z[g]), g);
  radix_sort(pairs);
  ids.resize(pairs.size());
  for (size_t k = 0; k < pairs.size(); ++k) ids[k] = pairs[k].second;
  return ids;
}

// Tile boxes [n, 4] (x0, x1, y0, y1; empty where the Gaussian touches no tile) of the n = C * N
// Gaussians, and totals [2]: the number of (Gaussian, tile) intersections and of Gaussians that touch a
// tile. tile_lists reads the boxes back instead of recomputing them; the totals size its outputs.
template <typename scalar_t>
void tile_boxes(const scalar_t* m, const int32_t* rad, int64_t n, int64_t width, int64_t height, int32_t* boxes,
                int64_t* totals, int n_threads) {
  const int64_t tiles_x = (width + kTile - 1) / kTile, tiles_y = (height + kTile - 1) / kTile;
  const int64_t n_chunks = (n + 4095) / 4096;  // fixed chunks: the sums do not depend on the threads (integers anyway)
  std::vector<int64_t> part(2 * n_chunks, 0);
  parallel_dynamic(n_chunks, n_threads, [&](int64_t q) {
    int64_t isect = 0, vis = 0;
    for (int64_t g = q * 4096; g < std::min<int64_t>(n, (q + 1) * 4096); ++g) {
      int32_t* bx = boxes + 4 * g;
      if (tile_box(m + 2 * g, rad[g], tiles_x, tiles_y, bx)) {
        isect += int64_t(bx[1] - bx[0]) * (bx[3] - bx[2]), ++vis;
      } else {
        bx[0] = bx[1] = bx[2] = bx[3] = 0;
      }
    }
    part[2 * q] = isect, part[2 * q + 1] = vis;
  });
  totals[0] = totals[1] = 0;
  for (int64_t q = 0; q < n_chunks; ++q) totals[0] += part[2 * q], totals[1] += part[2 * q + 1];
}

// Per-tile lists, front to back by depth with ties in memory order (gsplat's stable radix sort): the
// Gaussians that touch a tile are sorted once, then handed to their tiles in that order (a stable
// counting sort). Reads boxes [n, 4] (tile_boxes) and fills off [C * tiles_y * tiles_x + 1], ranks [I]
// (list entries as depth ranks, increasing along every list), order [n_vis] (the flat id c * N + n of
// every rank) and the lists' transpose for backward's per-Gaussian sums: the tiles of rank k are list
// entries pos[first[k]] .. pos[first[k + 1] - 1] (first [n_vis + 1], pos [I] int32), in tile order.
template <typename scalar_t>
void tile_lists(const int32_t* boxes, const scalar_t* z, int64_t n, int64_t n_cams, int64_t width, int64_t height,
                int64_t* off, int64_t* ranks, int64_t* order_out, int64_t* first, int32_t* pos, int n_threads) {
  const int64_t n_per_cam = n / std::max<int64_t>(n_cams, 1);
  const int64_t tiles_x = (width + kTile - 1) / kTile, tiles_y = (height + kTile - 1) / kTile, per_cam = tiles_x * tiles_y;
  const int64_t n_tiles = n_cams * per_cam;
  std::vector<char> hit(n, 0);
  parallel_static(n, n_threads, [&](int64_t g) { hit[g] = boxes[4 * g + 1] > boxes[4 * g]; });
  const std::vector<int64_t> order = depth_order(z, hit, n);  // by depth, ties in id order
  // Each task owns a range of tiles and walks all Gaussians front to back: the lists come out in
  // depth order and no two tasks write the same entry (a parallel, stable counting sort). At most one
  // task per camera: tasks inside one camera would each walk all of its Gaussians (measured: two
  // threads on one camera took 1.8x the time of one).
  const int64_t n_parts = std::max<int64_t>(1, std::min<int64_t>(std::min<int64_t>(n_threads, n_cams), n_tiles));
  const int64_t n_vis = static_cast<int64_t>(order.size());
  std::vector<int32_t> sorted_boxes(4 * n_vis);  // the boxes in depth order, read sequentially below
  parallel_static(n_vis, n_threads, [&](int64_t k) {
    const int64_t g = order[k];
    order_out[k] = g;
    std::copy(boxes + 4 * g, boxes + 4 * g + 4, sorted_boxes.data() + 4 * k);
  });
  first[0] = 0;
  for (int64_t k = 0; k < n_vis; ++k) {
    const int32_t* bx = sorted_boxes.data() + 4 * k;
    first[k + 1] = first[k] + int64_t(bx[1] - bx[0]) * (bx[3] - bx[2]);
  }
  // fn(k, t, s) for the tiles t of part q that Gaussian k touches; s: the entry's position in the transpose
  auto each_tile = [&](int64_t q, auto&& fn) {
    const int64_t lo = n_tiles * q / n_parts, hi = n_tiles * (q + 1) / n_parts;
    for (int64_t k = 0; k < n_vis; ++k) {
      const int64_t base = (order_out[k] / n_per_cam) * per_cam;
      if (base + per_cam <= lo || base >= hi) continue;
      const int32_t* bx = sorted_boxes.data() + 4 * k;
      for (int32_t ty = bx[2]; ty < bx[3]; ++ty) {
        const int64_t row = base + ty * tiles_x, s_row = first[k] + int64_t(ty - bx[2]) * (bx[1] - bx[0]) - (row + bx[0]);
        for (int64_t t = std::max<int64_t>(row + bx[0], lo); t < std::min<int64_t>(row + bx[1], hi); ++t) fn(k, t, s_row + t);
      }
    }
  };
  std::fill(off, off + n_tiles + 1, int64_t(0));
  // One part, or few tiles (one camera or a small image) and several threads: the Gaussians are split
  // into ranges instead (one range on one thread), each counting its entries per tile, and writes after
  // the earlier ranges' entries of every tile (the same lists; measured: two threads on one camera
  // otherwise run one of them).
  const int64_t n_ranges = std::min<int64_t>(n_threads, std::max<int64_t>(1, n_vis / 8192));
  if ((n_parts < n_ranges || n_parts == 1) && n_tiles * n_ranges <= (int64_t(1) << 20)) {
    std::vector<int64_t> cnt(static_cast<size_t>(n_ranges * n_tiles), 0);
    auto each_entry = [&](int64_t q, auto&& fn) {  // fn(k, t, s) for the Gaussians k of range q, s as above
      const int64_t k0 = n_vis * q / n_ranges, k1 = n_vis * (q + 1) / n_ranges;
      int64_t s = first[k0];
      for (int64_t k = k0; k < k1; ++k) {
        const int64_t base = (order_out[k] / n_per_cam) * per_cam;
        const int32_t* bx = sorted_boxes.data() + 4 * k;
        for (int32_t ty = bx[2]; ty < bx[3]; ++ty)
          for (int64_t t = base + ty * tiles_x + bx[0]; t < base + ty * tiles_x + bx[1]; ++t) fn(k, t, s++);
      }
    };
    // Entries per tile as a 2D difference array of the boxes (four updates per Gaussian instead of one
    // per tile; measured: the counting pass of the dense scene took a third of the lists' time).
    const int64_t w1 = tiles_x + 1, per_cam1 = w1 * (tiles_y + 1);
    parallel_dynamic(n_ranges, n_threads, [&](int64_t q) {
      std::vector<int64_t> diff(static_cast<size_t>(n_cams * per_cam1), 0);
      for (int64_t k = n_vis * q / n_ranges; k < n_vis * (q + 1) / n_ranges; ++k) {
        const int32_t* bx = sorted_boxes.data() + 4 * k;
        int64_t* dc = diff.data() + (order_out[k] / n_per_cam) * per_cam1;
        ++dc[bx[2] * w1 + bx[0]], --dc[bx[2] * w1 + bx[1]], --dc[bx[3] * w1 + bx[0]], ++dc[bx[3] * w1 + bx[1]];
      }
      int64_t* c = cnt.data() + q * n_tiles;
      for (int64_t cam = 0; cam < n_cams; ++cam) {
        int64_t* dc = diff.data() + cam * per_cam1;
        for (int64_t ty = 0; ty < tiles_y; ++ty)
          for (int64_t tx = 0; tx < tiles_x; ++tx) {  // in place: dc[ty][tx] becomes the sum over [0, ty] x [0, tx]
            int64_t v = dc[ty * w1 + tx];
            if (tx > 0) v += dc[ty * w1 + tx - 1];
            if (ty > 0) v += dc[(ty - 1) * w1 + tx];
            if (tx > 0 && ty > 0) v -= dc[(ty - 1) * w1 + tx - 1];
            dc[ty * w1 + tx] = v;
            c[cam * per_cam + ty * tiles_x + tx] = v;
          }
      }
    });
    for (int64_t t = 0; t < n_tiles; ++t) {  // off, and cnt turned into every range's first position
      int64_t p = off[t];
      for (int64_t q = 0; q < n_ranges; ++q) {
        const int64_t c = cnt[q * n_tiles + t];
        cnt[q * n_tiles + t] = p, p += c;
      }
      off[t + 1] = p;
    }
    parallel_dynamic(n_ranges, n_threads, [&](int64_t q) {
      int64_t* f = cnt.data() + q * n_tiles;
      each_entry(q, [&](int64_t k, int64_t t, int64_t s) {
        const int64_t i = f[t]++;
        ranks[i] = k, pos[s] = static_cast<int32_t>(i);
      });
    });
    return;
  }
  parallel_dynamic(n_parts, n_threads, [&](int64_t q) { each_tile(q, [&](int64_t, int64_t t, int64_t) { ++off[t + 1]; }); });
  for (int64_t t = 0; t < n_tiles; ++t) off[t + 1] += off[t];
  std::vector<int64_t> fill(off, off + n_tiles);
  parallel_dynamic(n_parts, n_threads, [&](int64_t q) {
    each_tile(q, [&](int64_t k, int64_t t, int64_t s) {
      const int64_t i = fill[t]++;
      ranks[i] = k, pos[s] = static_cast<int32_t>(i);
    });
  });
}

}  // namespace

#define FF3R_DEFINE_TILES(T, S)                                                                                    \
  FF3R_EXPORT void ff3r_tile_boxes_##S(const T* m, const int32_t* rad, int64_t n, int64_t w, int64_t h,             \
                                       int32_t* boxes, int64_t* totals, int nt) {                                  \
    tile_boxes<T>(m, rad, n, w, h, boxes, totals, nt);                                                             \
  }                                                                                                                \
  FF3R_EXPORT void ff3r_tile_lists_##S(const int32_t* boxes, const T* z, int64_t n, int64_t c, int64_t w, int64_t h, \
                                       int64_t* off, int64_t* ranks, int64_t* order, int64_t* first, int32_t* pos, \
                                       int nt) {                                                                   \
    tile_lists<T>(boxes, z, n, c, w, h, off, ranks, order, first, pos, nt);                                        \
  }

FF3R_DEFINE_TILES(float, f32)
FF3R_DEFINE_TILES(double, f64)
