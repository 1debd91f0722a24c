// EWA projection for the CPU renderer, forward and backward (C ABI, loaded by ff3r_ns/core/render_cpu.py).
//
// Same arithmetic as render_torch.project_gaussians (gsplat 1.4.0's fully_fused_projection): world
// covariance R S S^T R^T of the normalised quaternion, the pinhole Jacobian at x/z, y/z clamped to
// 1.3x the frustum, a blur eps2d on the 2D covariance, a 3-sigma radius (clamped to 2^30), culling by
// the near / far planes and the image rectangle. Backward gives means, quats and scales (the cameras
// get no gradient here: render_cpu uses the torch projection when they need one).

#include <vector>

#include "common.h"

namespace {

using ff3r::parallel_static;

// cov2d is computed as (J Rc R S)(J Rc R S)^T from the two rows j0, j1 of J Rc R S.
template <typename T>
struct Camera {
  T r[9], t[3], fx, fy, cx, cy, lxp, lxn, lyp, lyn;
};

template <typename T>
inline Camera<T> load_camera(const T* w2c, const T* k, int64_t width, int64_t height) {
  Camera<T> c;
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 3; ++j) c.r[3 * i + j] = w2c[4 * i + j];
    c.t[i] = w2c[4 * i + 3];
  }
  c.fx = k[0], c.fy = k[4], c.cx = k[2], c.cy = k[5];
  const T tan_x = static_cast<T>(0.5 * static_cast<double>(width)) / c.fx;
  const T tan_y = static_cast<T>(0.5 * static_cast<double>(height)) / c.fy;
  c.lxp = (static_cast<T>(width) - c.cx) / c.fx + T(0.3) * tan_x, c.lxn = c.cx / c.fx + T(0.3) * tan_x;
  c.lyp = (static_cast<T>(height) - c.cy) / c.fy + T(0.3) * tan_y, c.lyn = c.cy / c.fy + T(0.3) * tan_y;
  return c;
}

// Rotation of the normalised quaternion (wxyz; F.normalize's eps); returns 1 / max(|q|, eps).
template <typename T>
inline T quat_to_rot(const T* q, T* qn, T* rot) {
  const T norm = std::sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]);
  const T inv = T(1) / std::max(norm, T(1e-12));
  for (int i = 0; i < 4; ++i) qn[i] = q[i] * inv;
  const T w = qn[0], x = qn[1], y = qn[2], z = qn[3];
  rot[0] = 1 - 2 * (y * y + z * z), rot[1] = 2 * (x * y - w * z), rot[2] = 2 * (x * z + w * y);
  rot[3] = 2 * (x * y + w * z), rot[4] = 1 - 2 * (x * x + z * z), rot[5] = 2 * (y * z - w * x);
  rot[6] = 2 * (x * z - w * y), rot[7] = 2 * (y * z + w * x), rot[8] = 1 - 2 * (x * x + y * y);
  return inv;
}

// Everything forward computes for one (camera, Gaussian); backward recomputes it.
template <typename T>
struct ProjTerms {
  T mc[9], p[3], zs, tx, ty, j0[3], j1[3], a, b, c, det;
  bool in_depth, ok, clamp_x, clamp_y;
};

template <typename T>
inline ProjTerms<T> project_one(const Camera<T>& cam, const T* mean, const T* rot, const T* scale, T eps2d, T near,
                                T far) {
  ProjTerms<T> o;
  for (int i = 0; i < 3; ++i) {
    o.p[i] = cam.r[3 * i] * mean[0] + cam.r[3 * i + 1] * mean[1] + cam.r[3 * i + 2] * mean[2] + cam.t[i];
    for (int j = 0; j < 3; ++j)
      o.mc[3 * i + j] = (cam.r[3 * i] * rot[j] + cam.r[3 * i + 1] * rot[3 + j] + cam.r[3 * i + 2] * rot[6 + j]) * scale[j];
  }
  o.in_depth = o.p[2] >= near && o.p[2] <= far;
  o.zs = o.in_depth ? o.p[2] : T(1);  // culled Gaussians keep finite (unused) values
  const T ux = o.p[0] / o.zs, uy = o.p[1] / o.zs;
  o.clamp_x = !(ux > -cam.lxn && ux < cam.lxp), o.clamp_y = !(uy > -cam.lyn && uy < cam.lyp);
  o.tx = o.zs * std::min(std::max(ux, -cam.lxn), cam.lxp), o.ty = o.zs * std::min(std::max(uy, -cam.lyn), cam.lyp);
  const T iz = T(1) / o.zs, a0 = cam.fx * iz, b0 = o.tx * iz, a1 = cam.fy * iz, b1 = o.ty * iz;
  for (int k = 0; k < 3; ++k) o.j0[k] = a0 * (o.mc[k] - b0 * o.mc[6 + k]), o.j1[k] = a1 * (o.mc[3 + k] - b1 * o.mc[6 + k]);
  o.a = o.j0[0] * o.j0[0] + o.j0[1] * o.j0[1] + o.j0[2] * o.j0[2] + eps2d;
  o.b = o.j0[0] * o.j1[0] + o.j0[1] * o.j1[1] + o.j0[2] * o.j1[2];
  o.c = o.j1[0] * o.j1[0] + o.j1[1] * o.j1[1] + o.j1[2] * o.j1[2] + eps2d;
  o.det = o.a * o.c - o.b * o.b;
  o.ok = o.in_depth && o.det > T(0);
  return o;
}

// means [n, 3], quats [n, 4], scales [n, 3], w2c [C, 4, 4], K [C, 3, 3] -> means2d [C, n, 2],
// conics [C, n, 3], depths [C, n], radii [C, n] (int32, 0 where culled).
template <typename T>
void project_fwd(const T* means, const T* quats, const T* scales, const T* w2c, const T* k, int64_t n, int64_t n_cams,
                 int64_t width, int64_t height, double eps2d, double near, double far, T* means2d, T* conics, T* depths,
                 int32_t* radii, int n_threads) {
  std::vector<Camera<T>> cams;
  for (int64_t c = 0; c < n_cams; ++c) cams.push_back(load_camera(w2c + 16 * c, k + 9 * c, width, height));
  const T e = static_cast<T>(eps2d), zn = static_cast<T>(near), zf = static_cast<T>(far);
  parallel_static(n, n_threads, [&](int64_t g) {
    T qn[4], rot[9];
    quat_to_rot(quats + 4 * g, qn, rot);
    for (int64_t c = 0; c < n_cams; ++c) {
      const Camera<T>& cam = cams[c];
      const ProjTerms<T> o = project_one(cam, means + 3 * g, rot, scales + 3 * g, e, zn, zf);
      const int64_t i = c * n + g;
      const T u = cam.fx * o.p[0] / o.zs + cam.cx, v = cam.fy * o.p[1] / o.zs + cam.cy;
      const T ds = o.ok ? o.det : T(1);
      means2d[2 * i] = u, means2d[2 * i + 1] = v;
      conics[3 * i] = o.c / ds, conics[3 * i + 1] = -o.b / ds, conics[3 * i + 2] = o.a / ds;
      depths[i] = o.p[2];
      const T half_tr = T(0.5) * (o.a + o.c);
      const T v1 = half_tr + std::sqrt(std::max(half_tr * half_tr - o.det, T(0.01)));
      const T radius = std::min(std::ceil(T(3) * std::sqrt(std::max(v1, T(0)))), T(1 << 30));
      const bool on_screen = u + radius > 0 && u - radius < T(width) && v + radius > 0 && v - radius < T(height);
      radii[i] = o.ok && on_screen ? static_cast<int32_t>(radius) : 0;
    }
  });
}

// Vector-Jacobian product of project_fwd for means, quats and scales (summed over cameras).
template <typename T>
void project_bwd(const T* means, const T* quats, const T* scales, const T* w2c, const T* k, int64_t n, int64_t n_cams,
                 int64_t width, int64_t height, double eps2d, double near, double far, const T* v_means2d,
                 const T* v_conics, const T* v_depths, T* v_means, T* v_quats, T* v_scales, int n_threads) {
  std::vector<Camera<T>> cams;
  for (int64_t c = 0; c < n_cams; ++c) cams.push_back(load_camera(w2c + 16 * c, k + 9 * c, width, height));
  const T e = static_cast<T>(eps2d), zn = static_cast<T>(near), zf = static_cast<T>(far);
  parallel_static(n, n_threads, [&](int64_t g) {
    // Gaussians no pixel saw (culled, off screen, hidden) get exactly zero cotangents: skip their
    // Jacobians, most of the work on a typical view.
    bool zero = true;
    for (int64_t c = 0; c < n_cams && zero; ++c) {
      const int64_t i = c * n + g;
      zero = v_means2d[2 * i] == T(0) && v_means2d[2 * i + 1] == T(0) && v_conics[3 * i] == T(0) &&
             v_conics[3 * i + 1] == T(0) && v_conics[3 * i + 2] == T(0) && v_depths[i] == T(0);
    }
    if (zero) {
      for (int q = 0; q < 4; ++q) v_quats[4 * g + q] = T(0);
      for (int j = 0; j < 3; ++j) v_means[3 * g + j] = T(0), v_scales[3 * g + j] = T(0);
      return;
    }
    T qn[4], rot[9], v_rot[9] = {0}, v_s[3] = {0}, v_mean[3] = {0};
    const T inv = quat_to_rot(quats + 4 * g, qn, rot);
    const T* s = scales + 3 * g;
    for (int64_t c = 0; c < n_cams; ++c) {
      const Camera<T>& cam = cams[c];
      const ProjTerms<T> o = project_one(cam, means + 3 * g, rot, s, e, zn, zf);
      const int64_t i = c * n + g;
      // conic = (c, -b, a) / det (det = 1 where culled)
      const T vA = v_conics[3 * i], vB = v_conics[3 * i + 1], vC = v_conics[3 * i + 2];
      T va, vb, vc;
      if (o.ok) {
        const T id = T(1) / o.det, v_det = -(vA * o.c - vB * o.b + vC * o.a) * id * id;
        va = vC * id + v_det * o.c, vc = vA * id + v_det * o.a, vb = -vB * id - T(2) * v_det * o.b;
      } else {
        va = vC, vc = vA, vb = -vB;
      }
      T vj0[3], vj1[3];
      for (int q = 0; q < 3; ++q) vj0[q] = T(2) * va * o.j0[q] + vb * o.j1[q], vj1[q] = T(2) * vc * o.j1[q] + vb * o.j0[q];
      // j0 = a0 (Mc0 - b0 Mc2), j1 = a1 (Mc1 - b1 Mc2), a0 = fx / zs, b0 = tx / zs, ...
      const T iz = T(1) / o.zs, a0 = cam.fx * iz, b0 = o.tx * iz, a1 = cam.fy * iz, b1 = o.ty * iz;
      T v_mc[9], v_a0 = 0, v_b0 = 0, v_a1 = 0, v_b1 = 0;
      for (int q = 0; q < 3; ++q) {
        v_mc[q] = a0 * vj0[q], v_mc[3 + q] = a1 * vj1[q], v_mc[6 + q] = -a0 * b0 * vj0[q] - a1 * b1 * vj1[q];
        v_a0 += vj0[q] * (o.mc[q] - b0 * o.mc[6 + q]), v_b0 -= a0 * vj0[q] * o.mc[6 + q];
        v_a1 += vj1[q] * (o.mc[3 + q] - b1 * o.mc[6 + q]), v_b1 -= a1 * vj1[q] * o.mc[6 + q];
      }
      const T vu = v_means2d[2 * i], vv = v_means2d[2 * i + 1];
      T v_p[3] = {vu * cam.fx * iz, vv * cam.fy * iz, v_depths[i]};
      T v_zs = -(v_a0 * cam.fx + v_b0 * o.tx + vu * cam.fx * o.p[0] + v_a1 * cam.fy + v_b1 * o.ty + vv * cam.fy * o.p[1]) * iz * iz;
      const T v_tx = v_b0 * iz, v_ty = v_b1 * iz;  // tx = zs * clamp(px / zs): px when inside, zs * limit when clamped
      if (o.clamp_x) v_zs += v_tx * o.tx * iz; else v_p[0] += v_tx;
      if (o.clamp_y) v_zs += v_ty * o.ty * iz; else v_p[1] += v_ty;
      if (o.in_depth) v_p[2] += v_zs;
      for (int j = 0; j < 3; ++j) {
        v_mean[j] += cam.r[j] * v_p[0] + cam.r[3 + j] * v_p[1] + cam.r[6 + j] * v_p[2];
        for (int q = 0; q < 3; ++q) {  // Mc = Rc R S: v_M = Rc^T v_Mc
          const T v_m = cam.r[q] * v_mc[j] + cam.r[3 + q] * v_mc[3 + j] + cam.r[6 + q] * v_mc[6 + j];  // v_M[q][j]
          v_rot[3 * q + j] += v_m * s[j], v_s[j] += v_m * rot[3 * q + j];
        }
      }
    }
    const T w = qn[0], x = qn[1], y = qn[2], z = qn[3];
    const T* r = v_rot;
    const T vq[4] = {
        2 * (-z * r[1] + y * r[2] + z * r[3] - x * r[5] - y * r[6] + x * r[7]),
        2 * (y * r[1] + z * r[2] + y * r[3] - 2 * x * r[4] - w * r[5] + z * r[6] + w * r[7] - 2 * x * r[8]),
        2 * (-2 * y * r[0] + x * r[1] + w * r[2] + x * r[3] + z * r[5] - w * r[6] + z * r[7] - 2 * y * r[8]),
        2 * (-2 * z * r[0] - w * r[1] + x * r[2] + w * r[3] - 2 * z * r[4] + y * r[5] + x * r[6] + y * r[7]),
    };
    const bool unit = inv < T(1e12);  // F.normalize: q / |q|, or q / eps for a (near) zero quaternion
    const T dot = unit ? qn[0] * vq[0] + qn[1] * vq[1] + qn[2] * vq[2] + qn[3] * vq[3] : T(0);
    for (int q = 0; q < 4; ++q) v_quats[4 * g + q] = inv * (vq[q] - qn[q] * dot);
    for (int j = 0; j < 3; ++j) v_means[3 * g + j] = v_mean[j], v_scales[3 * g + j] = v_s[j];
  });
}

}  // namespace

#define FF3R_DEFINE_PROJECT(T, S)                                                                                  \
  FF3R_EXPORT void ff3r_project_fwd_##S(const T* means, const T* quats, const T* scales, const T* w2c, const T* k,  \
                                        int64_t n, int64_t c, int64_t w, int64_t h, double eps2d, double near,      \
                                        double far, T* means2d, T* conics, T* depths, int32_t* radii, int nt) {    \
    project_fwd<T>(means, quats, scales, w2c, k, n, c, w, h, eps2d, near, far, means2d, conics, depths, radii, nt); \
  }                                                                                                                \
  FF3R_EXPORT void ff3r_project_bwd_##S(const T* means, const T* quats, const T* scales, const T* w2c, const T* k,  \
                                        int64_t n, int64_t c, int64_t w, int64_t h, double eps2d, double near,      \
                                        double far, const T* v_means2d, const T* v_conics, const T* v_depths,       \
                                        T* v_means, T* v_quats, T* v_scales, int nt) {                             \
    project_bwd<T>(means, quats, scales, w2c, k, n, c, w, h, eps2d, near, far, v_means2d, v_conics, v_depths,       \
                   v_means, v_quats, v_scales, nt);                                                                \
  }

FF3R_DEFINE_PROJECT(float, f32)
FF3R_DEFINE_PROJECT(double, f64)
