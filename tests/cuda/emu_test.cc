// The CUDA CPU emulation itself (runtime/cuda/emu): the semantics the kernels rely on
// (barriers, shared memory, warp shuffles, launch limits, graph capture) and the findings it
// reports instead of hanging or passing silently (divergent barriers, collectives with exited
// lanes). Built into ptc_cuda_emu_tests only; the kernels here are written in CUDA C++ and
// launched through the emulation's Launcher, as rewrite_cu.py turns <<<...>>> into.
#if PTC_CUDA_EMU

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/cuda/emu/device_shim.h"  // last: it defines threadIdx & co. as macros

namespace {

__global__ void ReverseInBlock(const float* in, float* out) {
  static float tile[256];
  ::ptc::emu::PoisonShared(&tile, sizeof(tile));
  const int i = threadIdx.x;
  tile[i] = in[blockIdx.x * blockDim.x + i];
  __syncthreads();
  out[blockIdx.x * blockDim.x + i] = tile[blockDim.x - 1 - i];
}

__global__ void WarpSum(const float* in, float* out) {
  float v = in[threadIdx.x];
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  out[threadIdx.x] = v;
}

__global__ void ShuffleVariants(int* out) {
  const int lane = threadIdx.x;
  out[4 * lane + 0] = __shfl_sync(0xffffffffu, lane * 10, 3);          // lane 3's
  out[4 * lane + 1] = __shfl_up_sync(0xffffffffu, lane, 1);            // lane - 1, lane 0 own
  out[4 * lane + 2] = __shfl_down_sync(0xffffffffu, lane, 2, 8);       // within groups of 8
  out[4 * lane + 3] = static_cast<int>(__ballot_sync(0xffffffffu, lane % 3 == 0));
}

__global__ void CountBarrier(int* out) {
  out[threadIdx.x] = __syncthreads_count(threadIdx.x % 4 == 0);
}

__global__ void ReadSharedBeforeWrite(uint32_t* out) {
  static uint32_t s[8];
  ::ptc::emu::PoisonShared(&s, sizeof(s));
  out[threadIdx.x] = s[threadIdx.x];
  s[threadIdx.x] = threadIdx.x;  // what a next launch must not see
}

__global__ void DivergentBarrier(int* out) {
  if (threadIdx.x < 16) {
    __syncthreads();
  } else {
    __syncthreads();
  }
  out[threadIdx.x] = 1;
}

__global__ void ShuffleAfterExit(float* out) {
  if (threadIdx.x == 5) return;
  out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1.0f, 1);
}

// Each block takes the next ticket: order[ticket] = the block's linear index.
__global__ void RecordBlockOrder(int* counter, int* order) {
  if (threadIdx.x == 0) {
    order[atomicAdd(counter, 1)] = static_cast<int>(blockIdx.x + gridDim.x * blockIdx.y);
  }
}

__global__ void Fill(float* out, float v) { out[blockIdx.x * blockDim.x + threadIdx.x] = v; }

__global__ void UsesDynamicShared(float* out) {
  float* smem = reinterpret_cast<float*>(::ptc::emu::DynamicShared());
  smem[threadIdx.x] = static_cast<float>(threadIdx.x);
  __syncthreads();
  out[threadIdx.x] = smem[(threadIdx.x + 1) % blockDim.x];
}

// One m16n8k16 product on tensor-core fragments (PTX ISA layouts) against the plain product.
__global__ void MmaTile(const uint16_t* a, const uint16_t* b, float* d) {
  const int l = threadIdx.x, g = l / 4, t = l % 4;
  auto pack = [](uint16_t lo, uint16_t hi) {
    return static_cast<uint32_t>(lo) | (static_cast<uint32_t>(hi) << 16);
  };
  const uint32_t af[4] = {pack(a[g * 16 + 2 * t], a[g * 16 + 2 * t + 1]),
                          pack(a[(g + 8) * 16 + 2 * t], a[(g + 8) * 16 + 2 * t + 1]),
                          pack(a[g * 16 + 2 * t + 8], a[g * 16 + 2 * t + 9]),
                          pack(a[(g + 8) * 16 + 2 * t + 8], a[(g + 8) * 16 + 2 * t + 9])};
  // b is [16 k][8 n] row-major.
  const uint32_t b0 = pack(b[(2 * t) * 8 + g], b[(2 * t + 1) * 8 + g]);
  const uint32_t b1 = pack(b[(2 * t + 8) * 8 + g], b[(2 * t + 9) * 8 + g]);
  float c[4] = {0, 0, 0, 0};
  ::ptc::emu::MmaM16N8K16(true, c, af, b0, b1);
  d[g * 8 + 2 * t] = c[0];
  d[g * 8 + 2 * t + 1] = c[1];
  d[(g + 8) * 8 + 2 * t] = c[2];
  d[(g + 8) * 8 + 2 * t + 1] = c[3];
}

uint16_t Bf16Bits(float x) {  // x exactly representable in bf16
  uint32_t u;
  std::memcpy(&u, &x, 4);
  return static_cast<uint16_t>(u >> 16);
}

TEST(CudaEmulation, BarrierAndSharedMemory) {
  std::vector<float> in(512), out(512);
  for (int i = 0; i < 512; ++i) in[i] = static_cast<float>(i);
  ::ptc::emu::Launcher(ReverseInBlock, "ReverseInBlock", 2, 256)(in.data(), out.data());
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  for (int i = 0; i < 512; ++i) EXPECT_EQ(out[i], in[(i / 256) * 256 + 255 - i % 256]) << i;
}

TEST(CudaEmulation, WarpShuffles) {
  std::vector<float> in(32), out(32);
  for (int i = 0; i < 32; ++i) in[i] = static_cast<float>(i + 1);
  ::ptc::emu::Launcher(WarpSum, "WarpSum", 1, 32)(in.data(), out.data());
  for (int i = 0; i < 32; ++i) EXPECT_EQ(out[i], 528.0f);
  std::vector<int> v(128);
  ::ptc::emu::Launcher(ShuffleVariants, "ShuffleVariants", 1, 32)(v.data());
  unsigned ballot = 0;
  for (int l = 0; l < 32; l += 3) ballot |= 1u << l;
  for (int l = 0; l < 32; ++l) {
    EXPECT_EQ(v[4 * l + 0], 30);
    EXPECT_EQ(v[4 * l + 1], l == 0 ? 0 : l - 1);
    EXPECT_EQ(v[4 * l + 2], l % 8 + 2 < 8 ? l + 2 : l);
    EXPECT_EQ(static_cast<unsigned>(v[4 * l + 3]), ballot);
  }
  std::vector<int> counts(64);
  ::ptc::emu::Launcher(CountBarrier, "CountBarrier", 1, 64)(counts.data());
  for (int c : counts) EXPECT_EQ(c, 16);
}

TEST(CudaEmulation, SharedMemoryStartsAsGarbage) {
  std::vector<uint32_t> out(8, 0);
  for (int launch = 0; launch < 2; ++launch) {  // every launch's blocks start from garbage
    ::ptc::emu::Launcher(ReadSharedBeforeWrite, "ReadSharedBeforeWrite", 1, 8)(out.data());
    for (uint32_t v : out) EXPECT_EQ(v, 0xffffffffu) << "launch " << launch;
  }
}

TEST(CudaEmulation, MmaFragmentsFollowThePtxLayout) {
  std::vector<uint16_t> a(256), b(128);
  std::vector<float> af(256), bf(128), d(128);
  for (int i = 0; i < 256; ++i) af[i] = static_cast<float>((i * 7) % 11 - 5);
  for (int i = 0; i < 128; ++i) bf[i] = static_cast<float>((i * 5) % 9 - 4) * 0.5f;
  for (int i = 0; i < 256; ++i) a[i] = Bf16Bits(af[i]);
  for (int i = 0; i < 128; ++i) b[i] = Bf16Bits(bf[i]);
  ::ptc::emu::Launcher(MmaTile, "MmaTile", 1, 32)(a.data(), b.data(), d.data());
  for (int r = 0; r < 16; ++r) {
    for (int c = 0; c < 8; ++c) {
      float want = 0;
      for (int k = 0; k < 16; ++k) want += af[r * 16 + k] * bf[k * 8 + c];
      EXPECT_EQ(d[r * 8 + c], want) << r << "," << c;
    }
  }
}

TEST(CudaEmulation, LaunchLimitsAreErrors) {
  std::vector<float> out(2048);
  ::ptc::emu::Launcher(Fill, "Fill", 1, 2048)(out.data(), 1.0f);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);  // not sticky
  // Dynamic shared memory over 48 KiB needs the opt-in attribute, as on a GPU.
  ::ptc::emu::Launcher(UsesDynamicShared, "UsesDynamicShared", 1, 64, 64 << 10)(out.data());
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidValue);
  ASSERT_EQ(cudaFuncSetAttribute(UsesDynamicShared, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                 64 << 10),
            cudaSuccess);
  ::ptc::emu::Launcher(UsesDynamicShared, "UsesDynamicShared", 1, 64, 64 << 10)(out.data());
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  for (int i = 0; i < 64; ++i) EXPECT_EQ(out[i], static_cast<float>((i + 1) % 64));
}

TEST(CudaEmulation, GraphCaptureRecordsAndReplays) {
  cudaStream_t s;
  ASSERT_EQ(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
  std::vector<float> out(64, 0.0f);
  ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  ::ptc::emu::Launcher(Fill, "Fill", 2, 32, 0, s)(out.data(), 3.0f);
  EXPECT_EQ(out[0], 0.0f);  // recorded, not run
  EXPECT_NE(cudaStreamSynchronize(s), cudaSuccess);  // not allowed while capturing
  cudaGraph_t g;
  EXPECT_EQ(cudaStreamEndCapture(s, &g), cudaErrorStreamCaptureInvalidated);
  cudaGetLastError();
  ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  ::ptc::emu::Launcher(Fill, "Fill", 2, 32, 0, s)(out.data(), 3.0f);
  ASSERT_EQ(cudaStreamEndCapture(s, &g), cudaSuccess);
  cudaGraphExec_t e;
  ASSERT_EQ(cudaGraphInstantiate(&e, g, 0), cudaSuccess);
  EXPECT_EQ(out[63], 0.0f);
  ASSERT_EQ(cudaGraphLaunch(e, s), cudaSuccess);
  EXPECT_EQ(out[63], 3.0f);
  cudaGraphExecDestroy(e);
  cudaGraphDestroy(g);
  cudaStreamDestroy(s);
}

// PTC_CUDA_EMU_BLOCK_ORDER (the race checker's tests run with reverse): every block once, in
// that order.
TEST(CudaEmulation, BlocksRunInTheConfiguredOrder) {
  const char* env = std::getenv("PTC_CUDA_EMU_BLOCK_ORDER");
  const std::string order_name = env != nullptr ? env : "forward";
  int counter = 0;
  std::vector<int> order(15, -1);
  ::ptc::emu::Launcher(RecordBlockOrder, "RecordBlockOrder", dim3(5, 3), 32)(&counter,
                                                                             order.data());
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  ASSERT_EQ(counter, 15);
  std::vector<int> sorted = order;
  std::sort(sorted.begin(), sorted.end());
  for (int i = 0; i < 15; ++i) EXPECT_EQ(sorted[i], i);
  for (int i = 0; i < 15; ++i) {
    if (order_name == "forward") {
      EXPECT_EQ(order[i], i);
    } else if (order_name == "reverse") {
      EXPECT_EQ(order[i], 14 - i);
    }
  }
  if (order_name == "shuffle") {
    EXPECT_FALSE(std::is_sorted(order.begin(), order.end()));
  }
}

TEST(CudaEmulationDeathTest, DivergentBarrierIsReported) {
  std::vector<int> out(32);
  EXPECT_DEATH(::ptc::emu::Launcher(DivergentBarrier, "DivergentBarrier", 1, 32)(out.data()),
               "different __syncthreads");
}

TEST(CudaEmulationDeathTest, ShuffleWithAnExitedLaneIsReported) {
  std::vector<float> out(32);
  EXPECT_DEATH(::ptc::emu::Launcher(ShuffleAfterExit, "ShuffleAfterExit", 1, 32)(out.data()),
               "lane 5 of the mask has exited");
}

}  // namespace

#endif  // PTC_CUDA_EMU
