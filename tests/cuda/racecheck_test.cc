// The CUDA CPU emulation's shared-memory race checker (runtime/cuda/emu/racecheck.cc): kernels
// with the races racecheck finds on a GPU (a missing __syncthreads before a read or before an
// overwrite, lanes of a warp without __syncwarp, a cp.async into a buffer still being read, an
// ldmatrix of another warp's unsynchronized writes, a block reading global memory another block
// of the launch writes) stop with both accesses' threads and lines; the same kernels without
// the race pass. Built into ptc_cuda_racecheck_tests only, with the
// kernels' instrumentation (-fsanitize=thread's calls, which racecheck.cc defines); the shared
// arrays are declared as rewrite_cu.py turns `__shared__` into.
#if PTC_CUDA_EMU

#include <cuda_runtime_api.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/cuda/emu/device_shim.h"  // last: it defines threadIdx & co. as macros

namespace {

// Reverses each block's elements through shared memory; `sync`: with the barrier between the
// writes and the reads.
__global__ void Reverse(const float* in, float* out, bool sync) {
  static float tile[128];
  ::ptc::emu::PoisonShared(&tile, sizeof(tile), "tile");
  const int i = threadIdx.x, n = blockDim.x;
  tile[i] = in[blockIdx.x * n + i];
  if (sync) __syncthreads();
  out[blockIdx.x * n + i] = tile[n - 1 - i];
}

// Shifts the block's elements left by one in place: each thread reads its right neighbour and
// overwrites its own. Racy without the barrier between the read and the write.
__global__ void ShiftLeft(float* data, bool sync) {
  float* s = reinterpret_cast<float*>(::ptc::emu::DynamicShared("s"));
  const int i = threadIdx.x, n = blockDim.x;
  s[i] = data[i];
  __syncthreads();
  const float right = i + 1 < n ? s[i + 1] : 0.0f;
  if (sync) __syncthreads();
  s[i] = right;
  __syncthreads();
  data[i] = s[i];
}

// Lanes of one warp pass values through shared memory; `sync`: with __syncwarp between.
__global__ void WarpRotate(int* out, bool sync) {
  static int v[32];
  ::ptc::emu::PoisonShared(&v, sizeof(v), "v");
  const int l = threadIdx.x;
  v[l] = l * 3;
  if (sync) __syncwarp();
  out[l] = v[(l + 1) % 32];
}

// Tiles through one shared buffer with cp.async: the next tile is copied in while the block
// may still read the current one. `sync`: with the barrier that ends the reads before the copy
// is issued.
__global__ void CopyTiles(const float* in, float* out, int tiles, bool sync) {
  static __attribute__((aligned(16))) float buf[32 * 4];
  ::ptc::emu::PoisonShared(&buf, sizeof(buf), "buf");
  const int t = threadIdx.x;  // 32 threads, 4 floats (16 bytes) each per tile
  ::ptc::emu::CpAsync(&buf[4 * t], in + 4 * t, 16, 16);
  for (int k = 0; k < tiles; ++k) {
    ::ptc::emu::CpAsyncWaitAll();
    __syncthreads();
    out[k * 32 + t] = buf[(4 * t + 17) % 128];  // an element another thread copied
    if (sync) __syncthreads();
    if (k + 1 < tiles) ::ptc::emu::CpAsync(&buf[4 * t], in + (k + 1) * 128 + 4 * t, 16, 16);
  }
}

// Warp 0 writes a 16x16 b16 tile, warp 1 loads it with ldmatrix; `sync`: with the barrier.
__global__ void LdmatrixOtherWarp(const uint16_t* in, uint32_t* out, bool sync) {
  static __attribute__((aligned(16))) uint16_t tile[16 * 16];
  ::ptc::emu::PoisonShared(&tile, sizeof(tile), "tile");
  const int t = threadIdx.x;
  if (t < 32) {
    for (int j = 0; j < 8; ++j) tile[8 * t + j] = in[8 * t + j];
  }
  if (sync) __syncthreads();
  if (t >= 32) {
    const int l = t - 32;
    uint32_t r[4];
    // Lanes 8m..8m+7: the rows of matrix m (matrices at column 0 and 8 of rows 0-7, 8-15).
    const int m = l / 8, row = (m % 2) * 8 + l % 8, col = (m / 2) * 8;
    ::ptc::emu::LdmatrixX4Trans(r, &tile[16 * row + col]);
    for (int i = 0; i < 4; ++i) out[4 * l + i] = r[i];
  }
}

// Smooths blocks of 32 elements in place: each element becomes the mean of itself and its right
// neighbour, which for the last element of a block is the next block's first (read while that
// block may already have written it). `own_block`: the last element keeps its value instead.
__global__ void SmoothInPlace(float* x, int n, bool own_block) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  const bool last = threadIdx.x == blockDim.x - 1;
  const float right = i + 1 < n && !(own_block && last) ? x[i + 1] : x[i];
  __syncthreads();
  x[i] = 0.5f * (x[i] + right);
}

// Sums a tile that only the first `filled` threads write.
__global__ void SumPartlyFilled(float* out, int filled) {
  static float tile[64];
  ::ptc::emu::PoisonShared(&tile, sizeof(tile), "tile");
  if (static_cast<int>(threadIdx.x) < filled) tile[threadIdx.x] = 1.0f;
  __syncthreads();
  if (threadIdx.x == 0) {
    float sum = 0;
    for (int i = 0; i < 64; ++i) sum += tile[i];
    *out = sum;
  }
}

// Each lane writes and reads a float `stride` words from its neighbour's.
__global__ void StridedShared(float* out, int stride) {
  static float tile[32 * 33];
  ::ptc::emu::PoisonShared(&tile, sizeof(tile), "tile");
  tile[threadIdx.x * stride] = 1.0f;
  __syncwarp();
  out[threadIdx.x] = tile[threadIdx.x * stride];
}

template <typename... P, typename... A>
void Launch(void (*k)(P...), const char* name, dim3 grid, dim3 block, size_t smem, A... args) {
  ::ptc::emu::Launcher(k, name, grid, block, smem)(args...);
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
}

TEST(CudaRacecheck, BarrierSeparatedAccessesPass) {
  std::vector<float> in(256), out(256);
  for (int i = 0; i < 256; ++i) in[i] = static_cast<float>(i);
  const uint64_t before = ::ptc::emu::race::CheckedBytes();
  Launch(Reverse, "Reverse", 2, 128, 0, in.data(), out.data(), true);
  for (int i = 0; i < 256; ++i) EXPECT_EQ(out[i], in[(i / 128) * 128 + 127 - i % 128]) << i;
  // Every thread's 4-byte write and read of `tile`, in both blocks: the checker saw them.
  EXPECT_EQ(::ptc::emu::race::CheckedBytes() - before, 2u * 128 * 8);
}

TEST(CudaRacecheckDeathTest, ReadAfterWriteWithoutBarrier) {
  std::vector<float> in(128, 1.0f), out(128);
  EXPECT_DEATH(Launch(Reverse, "Reverse", 1, 128, 0, in.data(), out.data(), false),
               "kernel Reverse block \\(0,0,0\\).*race on shared memory "
               "\\((read-after-write|write-after-read)\\) at tile \\+ [0-9]+ bytes: "
               "(write|read) by thread \\([0-9]+,0,0\\) at racecheck_test.cc:[0-9]+ \\(Reverse\\), "
               "then (read|write) by thread \\([0-9]+,0,0\\) at racecheck_test.cc:[0-9]+");
}

TEST(CudaRacecheck, InPlaceShiftWithBarrierPasses) {
  std::vector<float> d(64);
  for (int i = 0; i < 64; ++i) d[i] = static_cast<float>(i);
  Launch(ShiftLeft, "ShiftLeft", 1, 64, 64 * sizeof(float), d.data(), true);
  for (int i = 0; i < 64; ++i) EXPECT_EQ(d[i], i + 1 < 64 ? i + 1.0f : 0.0f) << i;
}

TEST(CudaRacecheckDeathTest, WriteAfterReadWithoutBarrier) {
  std::vector<float> d(64, 1.0f);
  EXPECT_DEATH(Launch(ShiftLeft, "ShiftLeft", 1, 64, 64 * sizeof(float), d.data(), false),
               "race on shared memory \\(write-after-read\\) at s \\+");
}

TEST(CudaRacecheck, WarpWithSyncwarpPasses) {
  std::vector<int> out(32);
  Launch(WarpRotate, "WarpRotate", 1, 32, 0, out.data(), true);
  for (int l = 0; l < 32; ++l) EXPECT_EQ(out[l], ((l + 1) % 32) * 3) << l;
}

TEST(CudaRacecheckDeathTest, WarpWithoutSyncwarp) {
  std::vector<int> out(32);
  EXPECT_DEATH(Launch(WarpRotate, "WarpRotate", 1, 32, 0, out.data(), false),
               "race on shared memory \\((read-after-write|write-after-read)\\) at v \\+");
}

TEST(CudaRacecheck, DoubleBufferedCpAsyncPasses) {
  const int tiles = 5;
  std::vector<float> in(tiles * 128), out(tiles * 32);
  for (size_t i = 0; i < in.size(); ++i) in[i] = static_cast<float>(i);
  Launch(CopyTiles, "CopyTiles", 1, 32, 0, in.data(), out.data(), tiles, true);
  for (int k = 0; k < tiles; ++k) {
    for (int t = 0; t < 32; ++t) EXPECT_EQ(out[k * 32 + t], in[k * 128 + (4 * t + 17) % 128]);
  }
}

TEST(CudaRacecheckDeathTest, CpAsyncIntoABufferStillRead) {
  const int tiles = 5;
  std::vector<float> in(tiles * 128), out(tiles * 32);
  EXPECT_DEATH(Launch(CopyTiles, "CopyTiles", 1, 32, 0, in.data(), out.data(), tiles, false),
               "race on shared memory \\(write-after-read\\) at buf \\+");
}

TEST(CudaRacecheck, LdmatrixAfterBarrierPasses) {
  std::vector<uint16_t> in(256);
  for (int i = 0; i < 256; ++i) in[i] = static_cast<uint16_t>(i);
  std::vector<uint32_t> out(128);
  Launch(LdmatrixOtherWarp, "LdmatrixOtherWarp", 1, 64, 0, in.data(), out.data(), true);
  // Lane l, register m: matrix m's (row 2(l%4), column l/4) low, (row 2(l%4)+1, same) high.
  for (int l = 0; l < 32; ++l) {
    for (int m = 0; m < 4; ++m) {
      const int r0 = (m % 2) * 8 + 2 * (l % 4), c = (m / 2) * 8 + l / 4;
      EXPECT_EQ(out[4 * l + m], in[16 * r0 + c] | (uint32_t{in[16 * (r0 + 1) + c]} << 16));
    }
  }
}

TEST(CudaRacecheckDeathTest, LdmatrixOfAnotherWarpsWritesWithoutBarrier) {
  std::vector<uint16_t> in(256, 1);
  std::vector<uint32_t> out(128);
  EXPECT_DEATH(
      Launch(LdmatrixOtherWarp, "LdmatrixOtherWarp", 1, 64, 0, in.data(), out.data(), false),
      "race on shared memory \\(read-after-write\\) at tile \\+");
}

TEST(CudaRacecheck, FullyWrittenTilePasses) {
  float out = 0;
  Launch(SumPartlyFilled, "SumPartlyFilled", 1, 64, 0, &out, 64);
  EXPECT_EQ(out, 64.0f);
}

TEST(CudaRacecheckDeathTest, ReadOfUnwrittenSharedMemory) {
  float out = 0;
  EXPECT_DEATH(Launch(SumPartlyFilled, "SumPartlyFilled", 1, 64, 0, &out, 60),
               "read of uninitialized shared memory at tile \\+ 240 bytes by thread "
               "\\(0,0,0\\) at racecheck_test.cc:[0-9]+ \\(SumPartlyFilled\\): no thread of "
               "the block had written it");
}

// Bank conflicts: a stride of 1 or 33 words puts the 32 lanes in 32 banks (one wavefront per
// request); 32 words puts them all in one bank (32 wavefronts); 2 words, two lanes per bank.
TEST(CudaRacecheck, BankConflictsAreCounted) {
  ::ptc::emu::race::CountBanks(true);
  std::vector<float> out(32);
  for (const int stride : {1, 2, 32, 33}) {
    ::ptc::emu::race::ResetBankStats();
    Launch(StridedShared, "StridedShared", 1, 32, 0, out.data(), stride);
    const auto stats = ::ptc::emu::race::BankStats();
    ASSERT_EQ(stats.size(), 2u) << stride;  // the store and the load
    const uint64_t expect = stride == 32 ? 32 : stride == 2 ? 2 : 1;
    for (const auto& b : stats) {
      EXPECT_EQ(b.kernel, "StridedShared");
      EXPECT_EQ(b.requests, 1u) << stride;
      EXPECT_EQ(b.wavefronts, expect) << stride;
      EXPECT_EQ(b.ideal, 1u) << stride;
    }
  }
  ::ptc::emu::race::CountBanks(false);
  ::ptc::emu::race::ResetBankStats();
}

// Global memory: a block reading what another block of the launch writes.
TEST(CudaRacecheck, BlocksOnTheirOwnElementsPass) {
  float* x = nullptr;
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&x), 128 * sizeof(float)), cudaSuccess);
  for (int i = 0; i < 128; ++i) x[i] = static_cast<float>(i);
  Launch(SmoothInPlace, "SmoothInPlace", 4, 32, 0, x, 128, true);
  for (int i = 0; i < 128; ++i) {
    EXPECT_EQ(x[i], i % 32 == 31 ? static_cast<float>(i) : i + 0.5f) << i;
  }
  cudaFree(x);
}

TEST(CudaRacecheckDeathTest, ABlockReadingAnotherBlocksOutput) {
  const char* global = std::getenv("PTC_CUDA_EMU_RACECHECK_GLOBAL");
  if (global != nullptr && std::string(global) == "0") {
    GTEST_SKIP() << "PTC_CUDA_EMU_RACECHECK_GLOBAL=0: global memory is not checked";
  }
  float* x = nullptr;
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&x), 128 * sizeof(float)), cudaSuccess);
  EXPECT_DEATH(Launch(SmoothInPlace, "SmoothInPlace", 4, 32, 0, x, 128, false),
               "race on global memory between blocks \\((read-after-write|write-after-read)\\) "
               "at allocation 0x[0-9a-f]+ \\+ [0-9]+ of 512 bytes: (written|read) by block "
               "\\([0-9],0,0\\) of this launch, (read|written) here at racecheck_test.cc:[0-9]+");
  cudaFree(x);
}

}  // namespace

#endif  // PTC_CUDA_EMU
