// The flash attention kernels called directly: SIMT (codegen/cuda/attention.cu) and tensor
// cores (attention_tc.cu, `tc` cases: f16 / bf16, head dim 64 / 128): forward output and
// log-sum-exp, and the backward's dq / dk / dv, against a naive f64 reference written here
// (scores materialized, softmax, products by loops); the tensor-core backward also twice for the
// same bits. Without a GPU every test skips with "SKIPPED: no CUDA device".
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "gtest/gtest.h"
#include "runtime/cuda/device.h"
#include "tests/cuda/cuda_test_util.h"

#if PTC_HAVE_CUDA
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include "codegen/cuda/kernels.h"
#endif

namespace ptc::cuda {
namespace {

struct FlashCase {
  std::string name;
  int64_t b, h, tq, tk, d, dv;
  bool bthd;
  int mask;  // 0 none, 1 causal bool [1, 1, tq, tk] (key j visible to query i when j <= i +
             // tk - tq), 2 additive f32-like [b, 1, tq, tk], 3 the same causal triangle by
             // index (kAttentionMaskCausal: no mask read)
  int dtype;  // 0 f32, 1 f16, 2 bf16
  bool tc = false;  // the tensor-core kernels (gradients in the dtype) instead of the SIMT ones
  int64_t hkv = 0;  // grouped-query: k / v heads (a divisor of h); 0 = h
  double softcap = 0;  // > 0: scaled scores capped to softcap * tanh(s / softcap) (Gemma 2)
  int64_t kv_heads() const { return hkv > 0 ? hkv : h; }
};

void PrintTo(const FlashCase& c, std::ostream* os) { *os << c.name; }

// Offsets of element (b, h, t, c) in either layout of a tensor with `heads` heads.
int64_t AtHeads(const FlashCase& c, int64_t heads, int64_t t_len, int64_t hd, int64_t b,
                int64_t h, int64_t t, int64_t x) {
  return c.bthd ? ((b * t_len + t) * heads + h) * hd + x : ((b * heads + h) * t_len + t) * hd + x;
}
// q / o / dq (h heads).
int64_t At(const FlashCase& c, int64_t t_len, int64_t hd, int64_t b, int64_t h, int64_t t,
           int64_t x) {
  return AtHeads(c, c.h, t_len, hd, b, h, t, x);
}
// k / v / dk / dv at the kv head that query head h reads (h / (h / hkv), repeat_kv order).
int64_t AtKv(const FlashCase& c, int64_t t_len, int64_t hd, int64_t b, int64_t h, int64_t t,
             int64_t x) {
  return AtHeads(c, c.kv_heads(), t_len, hd, b, h / (c.h / c.kv_heads()), t, x);
}

struct Reference {
  std::vector<double> o, lse, dq, dk, dv;
};

// Naive f64: S = cap(scale q k^T) (+ mask), P = softmax(S), O = P v; dP = dO v^T,
// dS = P (dP - rowsum(dO * O)) cap', dq = scale dS k, dk = scale dS^T q, dv = P^T dO; with
// grouped-query k / v, dk / dv of a kv head sum over the query heads that read it.
Reference Naive(const FlashCase& c, double scale, const std::vector<double>& q,
                const std::vector<double>& k, const std::vector<double>& v,
                const std::vector<double>& mask, const std::vector<double>& d_o) {
  Reference r;
  r.o.assign(c.b * c.h * c.tq * c.dv, 0);
  r.lse.assign(c.b * c.h * c.tq, 0);
  r.dq.assign(q.size(), 0);
  r.dk.assign(k.size(), 0);
  r.dv.assign(v.size(), 0);
  for (int64_t b = 0; b < c.b; ++b) {
    for (int64_t h = 0; h < c.h; ++h) {
      std::vector<double> p(c.tq * c.tk), ds(c.tq * c.tk), dcap(c.tq * c.tk, 1.0);
      for (int64_t i = 0; i < c.tq; ++i) {
        double mx = -INFINITY;
        for (int64_t j = 0; j < c.tk; ++j) {
          double s = 0;
          for (int64_t x = 0; x < c.d; ++x) {
            s += q[At(c, c.tq, c.d, b, h, i, x)] * k[AtKv(c, c.tk, c.d, b, h, j, x)];
          }
          s *= scale;
          if (c.softcap > 0) {
            const double th = std::tanh(s / c.softcap);
            s = c.softcap * th;
            dcap[i * c.tk + j] = 1 - th * th;
          }
          if ((c.mask == 1 || c.mask == 3) && j > i + c.tk - c.tq) s = -INFINITY;
          if (c.mask == 2) s += mask[(b * c.tq + i) * c.tk + j];
          p[i * c.tk + j] = s;
          mx = std::max(mx, s);
        }
        double sum = 0;
        for (int64_t j = 0; j < c.tk; ++j) sum += std::exp(p[i * c.tk + j] - mx);
        for (int64_t j = 0; j < c.tk; ++j) p[i * c.tk + j] = std::exp(p[i * c.tk + j] - mx) / sum;
        r.lse[(b * c.h + h) * c.tq + i] = mx + std::log(sum);
        for (int64_t x = 0; x < c.dv; ++x) {
          double o = 0;
          for (int64_t j = 0; j < c.tk; ++j) o += p[i * c.tk + j] * v[AtKv(c, c.tk, c.dv, b, h, j, x)];
          r.o[At(c, c.tq, c.dv, b, h, i, x)] = o;
        }
      }
      for (int64_t i = 0; i < c.tq; ++i) {
        double dsum = 0;
        for (int64_t x = 0; x < c.dv; ++x) {
          dsum += d_o[At(c, c.tq, c.dv, b, h, i, x)] * r.o[At(c, c.tq, c.dv, b, h, i, x)];
        }
        for (int64_t j = 0; j < c.tk; ++j) {
          double dp = 0;
          for (int64_t x = 0; x < c.dv; ++x) {
            dp += d_o[At(c, c.tq, c.dv, b, h, i, x)] * v[AtKv(c, c.tk, c.dv, b, h, j, x)];
          }
          ds[i * c.tk + j] = p[i * c.tk + j] * (dp - dsum) * dcap[i * c.tk + j];
        }
      }
      for (int64_t i = 0; i < c.tq; ++i) {
        for (int64_t j = 0; j < c.tk; ++j) {
          const double pij = p[i * c.tk + j], dsij = ds[i * c.tk + j];
          for (int64_t x = 0; x < c.d; ++x) {
            r.dq[At(c, c.tq, c.d, b, h, i, x)] += scale * dsij * k[AtKv(c, c.tk, c.d, b, h, j, x)];
            r.dk[AtKv(c, c.tk, c.d, b, h, j, x)] += scale * dsij * q[At(c, c.tq, c.d, b, h, i, x)];
          }
          for (int64_t x = 0; x < c.dv; ++x) {
            r.dv[AtKv(c, c.tk, c.dv, b, h, j, x)] += pij * d_o[At(c, c.tq, c.dv, b, h, i, x)];
          }
        }
      }
    }
  }
  return r;
}

// "" when every |got - want| <= atol + rtol |want|.
std::string Close(const std::vector<float>& got, const std::vector<double>& want, double rtol,
                  double atol) {
  int64_t bad = 0, worst = -1;
  double worst_excess = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    const double excess = std::fabs(got[i] - want[i]) - (atol + rtol * std::fabs(want[i]));
    if (!(excess <= 0)) {
      ++bad;
      if (worst < 0 || excess > worst_excess || std::isnan(excess)) worst_excess = excess, worst = i;
    }
  }
  if (bad == 0) return "";
  return absl::StrFormat("%d of %d differ; worst [%d] got %.7g want %.7g", bad, want.size(), worst,
                         got[worst], want[worst]);
}

class FlashAttention : public testing::TestWithParam<FlashCase> {};

TEST_P(FlashAttention, ForwardAndBackwardMatchNaiveF64) {
  PTC_SKIP_WITHOUT_CUDA_DEVICE();
#if PTC_HAVE_CUDA
  namespace k = ::ptc::cuda::kernels;
  const FlashCase& c = GetParam();
  std::mt19937_64 rng(std::hash<std::string>{}(c.name));
  std::normal_distribution<double> normal(0, 1);
  // Inputs drawn in f64 and rounded to the kernel's dtype; the reference uses the rounded values.
  auto draw = [&](int64_t n) {
    std::vector<double> x(n);
    for (double& e : x) e = normal(rng);
    return x;
  };
  auto round_to = [&](std::vector<double>& x) {
    for (double& e : x) {
      if (c.dtype == 1) e = __half2float(__float2half_rn(static_cast<float>(e)));
      else if (c.dtype == 2) e = __bfloat162float(__float2bfloat16_rn(static_cast<float>(e)));
      else e = static_cast<float>(e);
    }
  };
  const int64_t hk = c.kv_heads();
  std::vector<double> q = draw(c.b * c.h * c.tq * c.d), kk = draw(c.b * hk * c.tk * c.d),
                      v = draw(c.b * hk * c.tk * c.dv), d_o = draw(c.b * c.h * c.tq * c.dv),
                      mask = draw(c.b * c.tq * c.tk);
  round_to(q);
  round_to(kk);
  round_to(v);
  round_to(d_o);
  round_to(mask);
  const double scale = 1.0 / std::sqrt(static_cast<double>(c.d));
  const Reference ref = Naive(c, static_cast<float>(scale), q, kk, v, mask, d_o);

  const size_t elem = c.dtype == 0 ? 4 : 2;
  auto to_device = [&](const std::vector<double>& x) -> void* {
    std::vector<char> bytes(x.size() * elem);
    for (size_t i = 0; i < x.size(); ++i) {
      if (c.dtype == 0) {
        float f = static_cast<float>(x[i]);
        std::memcpy(bytes.data() + 4 * i, &f, 4);
      } else if (c.dtype == 1) {
        __half h = __float2half_rn(static_cast<float>(x[i]));
        std::memcpy(bytes.data() + 2 * i, &h, 2);
      } else {
        __nv_bfloat16 h = __float2bfloat16_rn(static_cast<float>(x[i]));
        std::memcpy(bytes.data() + 2 * i, &h, 2);
      }
    }
    void* p = nullptr;
    EXPECT_EQ(cudaMalloc(&p, bytes.size() + 16), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(p, bytes.data(), bytes.size(), cudaMemcpyHostToDevice), cudaSuccess);
    return p;
  };
  auto f32_buffer = [&](size_t n) -> float* {
    void* p = nullptr;
    EXPECT_EQ(cudaMalloc(&p, 4 * n + 16), cudaSuccess);
    EXPECT_EQ(cudaMemset(p, 0xff, 4 * n + 16), cudaSuccess);  // poison
    return static_cast<float*>(p);
  };
  void* dq_ = to_device(q);
  void* dk_ = to_device(kk);
  void* dv_ = to_device(v);
  void* ddo = to_device(d_o);
  void* dmask = to_device(mask);
  void* dcausal = nullptr;
  if (c.mask == 1) {
    std::vector<uint8_t> m(c.tq * c.tk);
    for (int64_t i = 0; i < c.tq; ++i) {
      for (int64_t j = 0; j < c.tk; ++j) m[i * c.tk + j] = j > i + c.tk - c.tq;
    }
    ASSERT_EQ(cudaMalloc(&dcausal, m.size()), cudaSuccess);
    ASSERT_EQ(cudaMemcpy(dcausal, m.data(), m.size(), cudaMemcpyHostToDevice), cudaSuccess);
  }
  void* o = to_device(std::vector<double>(c.b * c.h * c.tq * c.dv, 0.0));
  float* lse = f32_buffer(c.b * c.h * c.tq);
  // SIMT gradients are f32; tensor-core ones are in the dtype (poisoned as well).
  auto grad_buffer = [&](size_t n) -> void* {
    if (!c.tc) return f32_buffer(n);
    void* p = nullptr;
    EXPECT_EQ(cudaMalloc(&p, elem * n + 16), cudaSuccess);
    EXPECT_EQ(cudaMemset(p, 0xff, elem * n + 16), cudaSuccess);
    return p;
  };
  void* gq = grad_buffer(q.size());
  void* gk = grad_buffer(kk.size());
  void* gv = grad_buffer(v.size());

  k::AttentionDesc d;
  d.b = c.b, d.h = c.h, d.tq = c.tq, d.tk = c.tk, d.d = c.d, d.dv = c.dv, d.hkv = c.hkv;
  d.scale = static_cast<float>(scale);
  d.softcap = static_cast<float>(c.softcap);
  auto strides = [&](int64_t t, int64_t hd, int64_t* st, int64_t heads) {
    if (c.bthd) {
      st[0] = t * heads * hd, st[1] = hd, st[2] = heads * hd;
    } else {
      st[0] = heads * t * hd, st[1] = t * hd, st[2] = hd;
    }
  };
  strides(c.tq, c.d, d.q_strides, c.h);
  strides(c.tk, c.d, d.k_strides, hk);
  strides(c.tk, c.dv, d.v_strides, hk);
  strides(c.tq, c.dv, d.o_strides, c.h);
  const void* mask_ptr = nullptr;
  if (c.mask == 1) {
    d.mask_kind = 1;
    d.mask_strides[2] = c.tk, d.mask_strides[3] = 1;
    mask_ptr = dcausal;
  } else if (c.mask == 3) {
    d.mask_kind = k::kAttentionMaskCausal;  // by index: the mask operand is not read
  } else if (c.mask == 2) {
    d.mask_kind = 2;
    d.mask_strides[0] = c.tq * c.tk, d.mask_strides[2] = c.tk, d.mask_strides[3] = 1;
    mask_ptr = dmask;
  }
  const k::DT dt = c.dtype == 0 ? k::DT::kF32 : c.dtype == 1 ? k::DT::kF16 : k::DT::kBF16;
  void* ws = nullptr;
  if (c.tc) {
    ASSERT_TRUE(k::FlashAttentionTcSupported(dt, d));
    ASSERT_EQ(k::LaunchFlashAttentionTc(dt, d, dq_, dk_, dv_, mask_ptr, o, lse, nullptr),
              cudaSuccess);
    ASSERT_EQ(cudaMalloc(&ws, k::FlashAttentionBackwardWorkspaceBytes(d) + 16), cudaSuccess);
    ASSERT_EQ(k::LaunchFlashAttentionTcBackward(dt, d, dq_, dk_, dv_, mask_ptr, o, ddo, lse, gq,
                                                gk, gv, ws, nullptr),
              cudaSuccess);
  } else {
    ASSERT_TRUE(k::FlashAttentionSupported(dt, d));
    ASSERT_EQ(k::LaunchFlashAttention(dt, d, dq_, dk_, dv_, mask_ptr, o, lse, nullptr),
              cudaSuccess);
    ASSERT_EQ(cudaMalloc(&ws, k::FlashAttentionBackwardWorkspaceBytes(d) + 16), cudaSuccess);
    ASSERT_EQ(k::LaunchFlashAttentionBackward(dt, d, dq_, dk_, dv_, mask_ptr, o, ddo, lse,
                                              static_cast<float*>(gq), static_cast<float*>(gk),
                                              static_cast<float*>(gv), ws, nullptr),
              cudaSuccess);
  }
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);

  auto fetch_f32 = [&](const float* p, size_t n) {
    std::vector<float> h(n);
    EXPECT_EQ(cudaMemcpy(h.data(), p, 4 * n, cudaMemcpyDeviceToHost), cudaSuccess);
    return h;
  };
  // n elements of the case's dtype at p, widened to f32.
  auto fetch = [&](const void* p, size_t n) {
    std::vector<float> got(n);
    std::vector<char> bytes(n * elem);
    EXPECT_EQ(cudaMemcpy(bytes.data(), p, bytes.size(), cudaMemcpyDeviceToHost), cudaSuccess);
    for (size_t i = 0; i < n; ++i) {
      if (c.dtype == 0) {
        std::memcpy(&got[i], bytes.data() + 4 * i, 4);
      } else if (c.dtype == 1) {
        __half h;
        std::memcpy(&h, bytes.data() + 2 * i, 2);
        got[i] = __half2float(h);
      } else {
        __nv_bfloat16 h;
        std::memcpy(&h, bytes.data() + 2 * i, 2);
        got[i] = __bfloat162float(h);
      }
    }
    return got;
  };
  auto fetch_grad = [&](const void* p, size_t n) {
    return c.tc ? fetch(p, n) : fetch_f32(static_cast<const float*>(p), n);
  };
  const std::vector<float> got_o = fetch(o, ref.o.size());
  // f32: accumulation-order rounding only; half types: O is rounded to the dtype, and the
  // backward reads the rounded O (dsum) — bounds of a few half-precision ulps.
  // The tensor-core kernels also round P and dS to the dtype for the products, and write the
  // gradients in the dtype: a few more half-precision ulps.
  const double tol_o = c.dtype == 0 ? 1e-4 : c.dtype == 1 ? 4e-3 : 2.5e-2;
  const double tol_g = c.dtype == 0 ? 2e-4 : c.dtype == 1 ? (c.tc ? 1.5e-2 : 1e-2) : 6e-2;
  EXPECT_EQ(Close(got_o, ref.o, tol_o, tol_o), "") << c.name << " O";
  // The tensor-core kernels' capped scores use tanh.approx.f32 (about 2^-11 relative: up to
  // 5e-4 of a cap of 1 in each score, so in the log-sum-exp); the emulation's tanh is exact.
  const double tol_lse = c.tc && c.softcap > 0 ? 1e-3 : 1e-4;
  EXPECT_EQ(Close(fetch_f32(lse, ref.lse.size()), ref.lse, tol_lse, tol_lse), "")
      << c.name << " lse";
  EXPECT_EQ(Close(fetch_grad(gq, ref.dq.size()), ref.dq, tol_g, tol_g), "") << c.name << " dq";
  EXPECT_EQ(Close(fetch_grad(gk, ref.dk.size()), ref.dk, tol_g, tol_g), "") << c.name << " dk";
  EXPECT_EQ(Close(fetch_grad(gv, ref.dv.size()), ref.dv, tol_g, tol_g), "") << c.name << " dv";
  if (c.tc) {
    // Deterministic backward (no atomics): a second run gives the same bits.
    std::vector<void*> again = {grad_buffer(q.size()), grad_buffer(kk.size()),
                                grad_buffer(v.size())};
    ASSERT_EQ(k::LaunchFlashAttentionTcBackward(dt, d, dq_, dk_, dv_, mask_ptr, o, ddo, lse,
                                                again[0], again[1], again[2], ws, nullptr),
              cudaSuccess);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    const void* first[3] = {gq, gk, gv};
    const size_t n[3] = {q.size(), kk.size(), v.size()};
    for (int i = 0; i < 3; ++i) {
      std::vector<char> x(n[i] * elem), y(n[i] * elem);
      ASSERT_EQ(cudaMemcpy(x.data(), first[i], x.size(), cudaMemcpyDeviceToHost), cudaSuccess);
      ASSERT_EQ(cudaMemcpy(y.data(), again[i], y.size(), cudaMemcpyDeviceToHost), cudaSuccess);
      EXPECT_EQ(std::memcmp(x.data(), y.data(), x.size()), 0) << c.name << " gradient " << i;
      cudaFree(again[i]);
    }
  }
  for (void* p : {dq_, dk_, dv_, ddo, dmask, dcausal, o, static_cast<void*>(lse), gq, gk, gv,
                  ws}) {
    if (p != nullptr) cudaFree(p);
  }
#endif
}

INSTANTIATE_TEST_SUITE_P(
    Cases, FlashAttention,
    testing::Values(FlashCase{"f32_bhtd_causal", 2, 3, 37, 37, 16, 24, false, 1, 0},
                    FlashCase{"f32_bthd_no_mask_tq_lt_tk", 1, 2, 5, 70, 32, 32, true, 0, 0},
                    FlashCase{"f32_additive_head128", 1, 2, 20, 45, 128, 128, false, 2, 0},
                    FlashCase{"f16_bthd_causal", 2, 2, 64, 64, 64, 64, true, 1, 1},
                    FlashCase{"bf16_bhtd_causal", 1, 4, 48, 48, 64, 64, false, 1, 2},
                    // Tensor cores: 64-row tiles with ragged ends, causal tiles skipped, both
                    // layouts, Tq != Tk, head dims 64 and 128.
                    FlashCase{"tc_bf16_bhtd_causal_ragged", 2, 3, 130, 130, 64, 64, false, 1, 2,
                              true},
                    FlashCase{"tc_f16_bthd_causal_d128", 1, 2, 100, 100, 128, 128, true, 1, 1,
                              true},
                    FlashCase{"tc_bf16_bthd_additive_tq_lt_tk", 2, 2, 40, 150, 64, 64, true, 2, 2,
                              true},
                    FlashCase{"tc_f16_bhtd_no_mask_tq_gt_tk", 1, 3, 150, 70, 64, 64, false, 0, 1,
                              true},
                    FlashCase{"tc_bf16_bhtd_causal_tq_lt_tk_d128", 1, 2, 50, 200, 128, 128, false,
                              1, 2, true},
                    FlashCase{"tc_f16_bhtd_additive_two_full_tiles", 1, 1, 128, 128, 64, 64, false,
                              2, 1, true},
                    // Grouped-query attention (k / v with fewer heads; dk / dv summed over each
                    // kv head's query heads): SIMT f32 / f16, tensor cores bf16 / f16, causal
                    // by index and as a bool mask, additive, no mask, both layouts.
                    FlashCase{"gqa_f32_bhtd_causal", 2, 4, 37, 37, 16, 24, false, 1, 0, false, 2},
                    FlashCase{"gqa_f32_bthd_no_mask", 1, 6, 5, 70, 32, 32, true, 0, 0, false, 2},
                    FlashCase{"gqa_f16_bthd_causal_index", 1, 4, 40, 40, 64, 64, true, 3, 1,
                              false, 1},
                    FlashCase{"gqa_tc_bf16_bhtd_causal_index_ragged", 1, 4, 130, 130, 64, 64,
                              false, 3, 2, true, 2},
                    FlashCase{"gqa_tc_f16_bthd_causal_bool", 2, 4, 70, 70, 64, 64, true, 1, 1,
                              true, 1},
                    FlashCase{"gqa_tc_bf16_bthd_additive", 1, 6, 40, 100, 64, 64, true, 2, 2,
                              true, 2},
                    FlashCase{"gqa_tc_f16_bhtd_no_mask_d128", 1, 3, 70, 70, 128, 128, false, 0, 1,
                              true, 1},
                    // softcap (Gemma 2's tanh capping of the scaled scores, before the mask;
                    // the standard-normal inputs' scores have deviation 1, so a cap of 0.6-1
                    // bends most of them): SIMT f32 / bf16, tensor cores f16 / bf16 with
                    // causal bool / by index, additive and no mask, grouped-query.
                    FlashCase{"softcap_f32_bhtd_causal", 2, 3, 37, 37, 16, 24, false, 1, 0,
                              false, 0, 0.75},
                    FlashCase{"softcap_bf16_bthd_additive_gqa", 1, 4, 20, 45, 32, 32, true, 2, 2,
                              false, 2, 1.0},
                    FlashCase{"softcap_tc_bf16_bhtd_causal_index_ragged", 1, 2, 130, 130, 64, 64,
                              false, 3, 2, true, 0, 0.6},
                    FlashCase{"softcap_tc_f16_bthd_causal_bool_gqa", 2, 4, 70, 70, 64, 64, true, 1,
                              1, true, 2, 1.0},
                    FlashCase{"softcap_tc_bf16_bthd_additive_d128", 1, 2, 40, 100, 128, 128, true,
                              2, 2, true, 0, 0.8},
                    FlashCase{"softcap_tc_f16_bhtd_no_mask", 1, 3, 70, 70, 64, 64, false, 0, 1,
                              true, 0, 0.5},
                    // Head dim 256 (Gemma 1 / 2 / 3's): the SIMT kernels' wide instantiation
                    // (82 KiB of shared memory per forward block, 129 KiB per backward warp),
                    // with softcap and grouped-query as Gemma 2 has them; 192 (not a power of 2).
                    FlashCase{"head256_bf16_bthd_causal_gqa_softcap", 1, 4, 40, 40, 256, 256,
                              true, 3, 2, false, 2, 1.0},
                    FlashCase{"head256_f32_bhtd_additive", 1, 2, 20, 45, 256, 256, false, 2, 0},
                    FlashCase{"head192_f16_bhtd_causal", 1, 2, 33, 33, 192, 192, false, 1, 1}),
    [](const testing::TestParamInfo<FlashCase>& info) { return info.param.name; });

}  // namespace
}  // namespace ptc::cuda
