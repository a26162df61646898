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

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "compiler/driver/driver.h"
#include "compiler/onnx/importer.h"
#include "gtest/gtest.h"
#include "models/models.h"
#include "runtime/cuda/executor.h"
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

// Each lane reads `width` floats (1 or 4, one access) at `offset` + lane * stride floats of
// global memory and writes them back contiguously.
__global__ void StridedGlobal(const float* in, float* out, int width, int stride, int offset) {
  const int l = threadIdx.x;
  if (width == 4) {
    const float4 v = *reinterpret_cast<const float4*>(in + offset + l * stride);
    *reinterpret_cast<float4*>(out + 4 * l) = v;
  } else {
    out[l] = in[offset + l * stride];
  }
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
  ::ptc::emu::race::CountRequests(::ptc::emu::race::Requests::kBanks, true);
  std::vector<float> out(32);
  for (const int stride : {1, 2, 32, 33}) {
    ::ptc::emu::race::ResetRequestStats(::ptc::emu::race::Requests::kBanks);
    Launch(StridedShared, "StridedShared", 1, 32, 0, out.data(), stride);
    const auto stats = ::ptc::emu::race::RequestStats(::ptc::emu::race::Requests::kBanks);
    ASSERT_EQ(stats.size(), 2u) << stride;  // the store and the load
    const uint64_t expect = stride == 32 ? 32 : stride == 2 ? 2 : 1;
    for (const auto& b : stats) {
      EXPECT_EQ(b.kernel, "StridedShared");
      EXPECT_EQ(b.requests, 1u) << stride;
      EXPECT_EQ(b.cost, expect) << stride;
      EXPECT_EQ(b.ideal, 1u) << stride;
    }
  }
  ::ptc::emu::race::CountRequests(::ptc::emu::race::Requests::kBanks, false);
  ::ptc::emu::race::ResetRequestStats(::ptc::emu::race::Requests::kBanks);
}

// Global-memory sectors: 32 lanes reading consecutive floats touch 4 sectors, the ideal; one
// float off an aligned start, 5; a stride of 8 floats, one sector per lane (32, ideal 4).
// float4s: 16 sectors (ideal), 17 unaligned to a sector, 32 at a stride of 8 floats.
TEST(CudaRacecheck, GlobalSectorsAreCounted) {
  using ::ptc::emu::race::Requests;
  ::ptc::emu::race::CountRequests(Requests::kSectors, true);
  float *in = nullptr, *out = nullptr;
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&in), 1024 * sizeof(float)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&out), 128 * sizeof(float)), cudaSuccess);
  struct Case {
    int width, stride, offset;
    uint64_t load, load_ideal, store;
  };
  for (const Case& c : {Case{1, 1, 0, 4, 4, 4}, Case{1, 1, 1, 5, 4, 4}, Case{1, 8, 0, 32, 4, 4},
                        Case{4, 4, 0, 16, 16, 16}, Case{4, 4, 4, 17, 16, 16},
                        Case{4, 8, 0, 32, 16, 16}}) {
    ::ptc::emu::race::ResetRequestStats(Requests::kSectors);
    Launch(StridedGlobal, "StridedGlobal", 1, 32, 0, static_cast<const float*>(in), out, c.width,
           c.stride, c.offset);
    const auto stats = ::ptc::emu::race::RequestStats(Requests::kSectors);
    ASSERT_EQ(stats.size(), 2u) << c.width << " " << c.stride;  // the load and the store
    std::vector<std::pair<uint64_t, uint64_t>> got, want = {{c.load, c.load_ideal},
                                                            {c.store, c.store}};
    for (const auto& st : stats) {
      EXPECT_EQ(st.kernel, "StridedGlobal");
      EXPECT_EQ(st.requests, 1u);
      got.emplace_back(st.cost, st.ideal);
    }
    std::sort(got.begin(), got.end());
    std::sort(want.begin(), want.end());
    EXPECT_EQ(got, want) << c.width << " " << c.stride << " " << c.offset;
    // The launch's distinct sectors: what it read and wrote, once each.
    const auto traffic = ::ptc::emu::race::TrafficByKernel();
    ASSERT_EQ(traffic.size(), 1u);
    EXPECT_EQ(traffic[0].launches, 1u);
    EXPECT_EQ(traffic[0].read_sectors, c.load);
    EXPECT_EQ(traffic[0].written_sectors, c.store);
  }
  ::ptc::emu::race::CountRequests(Requests::kSectors, false);
  ::ptc::emu::race::ResetRequestStats(Requests::kSectors);
  cudaFree(in);
  cudaFree(out);
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

// "file.cu:N" of the first line of `path` (in the source tree) that contains `text`: an allowed
// instruction found by its code, not by a line number that edits move.
std::string SourceLine(const std::string& path, const std::string& text) {
  std::ifstream in(std::string(PTC_SOURCE_DIR) + "/" + path);
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (line.find(text) != std::string::npos) {
      return path.substr(path.rfind('/') + 1) + ":" + std::to_string(n) + " ";  // not n0...
    }
  }
  ADD_FAILURE() << path << " has no line with " << text;
  return "?";
}

// A GPT-2-width bf16 training step (GPT-2 small's dim 768, 12 heads and 3072-wide MLP; one
// layer, 2 x 64 tokens, an odd vocabulary of 1021 as GPT-2's 50257 is odd) on the race checker:
// no race, no shared-memory bank conflict, and every global-memory request at its ideal
// sectors, except
// - the tensor-core attention's fragment rows (attention_tc.cu's Ldg32 / Stg32: half sectors,
//   which L1 / L2 merge with the next column block's), and
// - the embedding gradient's counting sort (GatherGradFillKernel: one warp scattering token
//   positions into their buckets, 24 requests a step).
TEST(CudaRacecheck, Gpt2WidthStepIsConflictFreeAndCoalesced) {
  using ::ptc::emu::race::Requests;
  auto config = ::ptc::models::Gpt2Preset("small");
  ASSERT_TRUE(config.ok()) << config.status();
  config->layers = 1;
  config->vocab = 1021;
  config->with_loss = true;
  auto model = ::ptc::models::BuildGpt2(*config);
  ASSERT_TRUE(model.ok()) << model.status();
  ::ptc::onnx_import::ImportOptions io;
  io.dims = {{"batch", 2}, {"seq", 64}};
  auto module = ::ptc::onnx_import::ImportOnnxBytes(model->SerializeAsString(), "", "gpt2-width",
                                                    io);
  ASSERT_TRUE(module.ok()) << module.status();
  ::ptc::driver::CompileOptions o;
  o.target = "cuda";
  o.precision = "bf16";
  o.train = true;
  o.dims = io.dims;
  o.train_options.optimizer = "adamw";
  auto plan = ::ptc::driver::CompileModule(*std::move(module), o);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ::ptc::cuda::ExecutorOptions eo;
  eo.autotune = false;  // the default kernels only (the tuner would time the SIMT ones too)
  auto exec = ::ptc::cuda::Executor::Create(*plan, eo);
  ASSERT_TRUE(exec.ok()) << exec.status();
  std::map<std::string, ::ptc::ir::Tensor> batch;
  for (const ::ptc::ir::Value* p : plan->module->main()->params()) {
    if (p->is_param() || p->flags().count("state")) continue;
    ::ptc::ir::Tensor t(::ptc::ir::DType::kI64, p->type().shape);
    for (int64_t i = 0; i < t.num_elements(); ++i) {
      t.mutable_data_as<int64_t>()[i] = (i * 7919 + 13) % config->vocab;
    }
    batch[p->name()] = std::move(t);
  }
  for (const Requests which : {Requests::kBanks, Requests::kSectors}) {
    ::ptc::emu::race::ResetRequestStats(which);
    ::ptc::emu::race::CountRequests(which, true);
  }
  auto loss = (*exec)->Run(batch);
  for (const Requests which : {Requests::kBanks, Requests::kSectors}) {
    ::ptc::emu::race::CountRequests(which, false);
  }
  ASSERT_TRUE(loss.ok()) << loss.status();
  // An untrained model's loss: near ln 1021 = 6.93 (lower: the tied embedding favours the
  // input token, which these batches' labels repeat).
  EXPECT_GT(loss->at(0).GetDouble(0), 4.0);
  EXPECT_LT(loss->at(0).GetDouble(0), 8.0);

  uint64_t requests[2] = {}, cost[2] = {}, ideal[2] = {};
  for (const Requests which : {Requests::kBanks, Requests::kSectors}) {
    const int w = static_cast<int>(which);
    for (const auto& st : ::ptc::emu::race::RequestStats(which)) {
      requests[w] += st.requests;
      cost[w] += st.cost;
      ideal[w] += st.ideal;
    }
  }
  std::printf("GPT-2-width step: %llu shared-memory requests, %llu wavefronts for an ideal %llu; "
              "%llu global-memory requests, %llu sectors for an ideal %llu\n",
              static_cast<unsigned long long>(requests[0]),
              static_cast<unsigned long long>(cost[0]), static_cast<unsigned long long>(ideal[0]),
              static_cast<unsigned long long>(requests[1]),
              static_cast<unsigned long long>(cost[1]), static_cast<unsigned long long>(ideal[1]));
  EXPECT_GT(requests[0], 100000u);  // the step's kernels were counted
  EXPECT_GT(requests[1], 100000u);
  for (const std::string& line : ::ptc::emu::race::Unallowed(Requests::kBanks, {})) {
    ADD_FAILURE() << "bank conflict: " << line;
  }
  const std::vector<std::string> allowed = {
      SourceLine("codegen/cuda/attention_tc.cu", "return __ldg(reinterpret_cast<const unsigned"),
      SourceLine("codegen/cuda/attention_tc.cu", "*reinterpret_cast<uint32_t*>(p) = v;"),
      "GatherGradFillKernel"};
  for (const std::string& line : ::ptc::emu::race::Unallowed(Requests::kSectors, allowed)) {
    ADD_FAILURE() << "uncoalesced: " << line;
  }
  // The allowed excess is a small part of the step's sectors.
  EXPECT_LT(static_cast<double>(cost[1] - ideal[1]), 0.01 * static_cast<double>(ideal[1]));
  for (const Requests which : {Requests::kBanks, Requests::kSectors}) {
    ::ptc::emu::race::ResetRequestStats(which);
  }
}

}  // namespace

#endif  // PTC_CUDA_EMU
