// GFLOP/s of ptc's float GEMM (ParallelSgemm: TiledGemm on ptc's pool) on the GEMM shapes of
// the training bench's step (GPT vocab 8192, 4 layers, dim 256, batch 8 x 128), best of N
// runs each. Measures; never asserts.
//   ptc_gemm_shapes [--reps N]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "codegen/cpu/kernel_util.h"

namespace {

struct Shape {
  const char* name;
  int64_t m, n, k;
  bool ta, tb;
  float beta;
};

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

int main(int argc, char** argv) {
  int reps = 9;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--reps") == 0 && i + 1 < argc) {
      reps = std::max(1, std::atoi(argv[++i]));
    } else {
      std::fprintf(stderr, "usage: %s [--reps N]\n", argv[0]);
      return 2;
    }
  }
  const Shape shapes[] = {
      {"qkv fwd", 1024, 768, 256, false, false, 0},
      {"fc fwd", 1024, 1024, 256, false, false, 0},
      {"proj fwd", 1024, 256, 1024, false, false, 0},
      {"fc dX (B^T)", 1024, 256, 1024, false, true, 0},
      {"proj dX (B^T)", 1024, 1024, 256, false, true, 0},
      {"fc dW (A^T)", 256, 1024, 1024, true, false, 0},
      {"proj dW (A^T)", 1024, 256, 1024, true, false, 0},
      {"LM-head fwd block (B^T)", 256, 8192, 256, false, true, 0},
      {"LM-head dX block", 256, 256, 8192, false, false, 0},
      {"LM-head dW block (A^T, beta 1)", 8192, 256, 256, true, false, 1},
  };
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1, 1);
  std::printf("%-48s %8s %8s\n", "shape (M x N x K)", "GFLOP/s", "ms");
  {  // start the pool and the library's JIT before the first timing
    std::vector<float> w(256 * 256, 1.0f), o(256 * 256);
    for (int i = 0; i < 20; ++i) {
      ptc::cpu::internal::ParallelSgemm(false, false, 256, 256, 256, 1.0f, w.data(), 256,
                                        w.data(), 256, 0.0f, o.data(), 256);
    }
  }
  for (const Shape& s : shapes) {
    std::vector<float> a(s.m * s.k), b(s.k * s.n), c(s.m * s.n, 0.0f);
    for (float& x : a) x = u(rng);
    for (float& x : b) x = u(rng);
    const int64_t lda = s.ta ? s.m : s.k, ldb = s.tb ? s.k : s.n;
    double best = 1e30;
    for (int r = 0; r < reps + 1; ++r) {  // the first run warms up
      const double t0 = Now();
      ptc::cpu::internal::ParallelSgemm(s.ta, s.tb, s.m, s.n, s.k, 1.0f, a.data(), lda, b.data(),
                                        ldb, s.beta, c.data(), s.n);
      if (r > 0) best = std::min(best, Now() - t0);
    }
    char label[96];
    std::snprintf(label, sizeof(label), "%s %lldx%lldx%lld", s.name, static_cast<long long>(s.m),
                  static_cast<long long>(s.n), static_cast<long long>(s.k));
    std::printf("%-48s %8.1f %8.3f\n", label, 2.0 * s.m * s.n * s.k / best / 1e9, best * 1e3);
  }
  return 0;
}
