// See host_kernel.h.
#include "codegen/cuda/host_kernel.h"

#include <dlfcn.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "compiler/support/hash.h"

namespace ptc::cuda::codegen {
namespace {

constexpr char kHostShim[] = R"(// host shim (codegen/cuda/host_kernel.cc)
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <utility>
#define __device__
#define __forceinline__ inline
#define __global__
#define __launch_bounds__(n)
#define __restrict__ __restrict
struct PtcDim3 { unsigned x; };
static PtcDim3 blockIdx, threadIdx, gridDim;
template <typename T> static inline T __ldg(const T* p) { return *p; }
static inline float __uint_as_float(unsigned u) { float f; memcpy(&f, &u, 4); return f; }
static inline unsigned __float_as_uint(float f) { unsigned u; memcpy(&u, &f, 4); return u; }
static inline float __int_as_float(int i) { float f; memcpy(&f, &i, 4); return f; }
static inline double __longlong_as_double(long long v) { double d; memcpy(&d, &v, 8); return d; }
static inline long long __double_as_longlong(double d) { long long v; memcpy(&v, &d, 8); return v; }
// The vector loop's accesses, checked for alignment and counted (ptc_host_vector_accesses).
static unsigned long long ptc_host_vectors = 0;
template <typename WP, typename T> static inline WP ptc_host_vec(T* p) {
  if (reinterpret_cast<unsigned long long>(p) % alignof(decltype(*WP()))) abort();
  ++ptc_host_vectors;
  return reinterpret_cast<WP>(p);
}
extern "C" unsigned long long ptc_host_vector_accesses() { return ptc_host_vectors; }
// IEEE binary16 <-> float, round to nearest even (as PTX cvt.f32.f16 / cvt.rn.f16.f32).
static inline float ptc_host_h2f(unsigned short h) {
  const unsigned e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  const float f = e == 0    ? ldexpf(static_cast<float>(m), -24)
                  : e == 31 ? (m != 0 ? NAN : INFINITY)
                            : ldexpf(static_cast<float>(m | 0x400u), static_cast<int>(e) - 25);
  return (h & 0x8000u) != 0 ? -f : f;
}
static inline unsigned short ptc_host_f2h(float f) {
  unsigned u;
  memcpy(&u, &f, 4);
  const unsigned sign = (u >> 16) & 0x8000u;
  u &= 0x7fffffffu;
  if (u > 0x7f800000u) return static_cast<unsigned short>(sign | 0x7e00u);  // NaN
  if (u >= 0x477ff000u) return static_cast<unsigned short>(sign | 0x7c00u);  // >= 65520: inf
  if (u < 0x38800000u) {  // below 2^-14: a subnormal (or zero) in steps of 2^-24
    float a;
    memcpy(&a, &u, 4);
    return static_cast<unsigned short>(sign | static_cast<unsigned>(nearbyintf(a * 16777216.0f)));
  }
  unsigned v = u - 0x38000000u;  // exponent bias 127 -> 15
  v += 0xfffu + ((v >> 13) & 1u);
  return static_cast<unsigned short>(sign | (v >> 13));
}
)";

// After the kernel: its launcher. Every parameter is 8 bytes (a pointer or a seed); PtcArg
// reads parameter i's value from args[i] (cudaLaunchKernel's convention) as the kernel's type.
constexpr char kLauncher[] = R"(
struct PtcArg {
  void* at;
  template <typename T> operator T*() const { return *static_cast<T* const*>(at); }
  operator unsigned long long() const { return *static_cast<const unsigned long long*>(at); }
};
template <typename... P, unsigned long... I>
static inline void ptc_host_call(void (*k)(P...), void* const* a, std::index_sequence<I...>) {
  k(PtcArg{a[I]}...);
}
template <typename... P>
static inline void ptc_host_call(void (*k)(P...), void* const* a) {
  ptc_host_call(k, a, std::index_sequence_for<P...>{});
}
template <typename... P>
static constexpr int ptc_host_arity(void (*)(P...)) { return sizeof...(P); }
extern "C" int ptc_host_num_params() { return ptc_host_arity(@KERNEL@); }
extern "C" void ptc_host_launch(void* const* args, unsigned grid, unsigned block) {
  gridDim.x = grid;
  for (unsigned b = 0; b < grid; ++b) {
    for (unsigned t = 0; t < block; ++t) {
      blockIdx.x = b;
      threadIdx.x = t;
      ptc_host_call(@KERNEL@, args);
    }
  }
}
)";

std::string ReadFile(const std::string& path) {
  std::ifstream f(path);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

// The libraries' thread indices are globals (one copy per loaded file): one launch at a time.
std::mutex& LaunchMutex() {
  static auto* mu = new std::mutex;
  return *mu;
}

}  // namespace

std::string DefaultHostCompiler() {
#ifdef PTC_HOST_CXX
  return PTC_HOST_CXX;
#else
  return "";
#endif
}

absl::StatusOr<std::shared_ptr<HostKernel>> HostKernel::Compile(const std::string& name,
                                                                const std::string& source,
                                                                const HostKernelOptions& options) {
  std::string body = absl::StrReplaceAll(
      source, {{R"(asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));)", "f = ptc_host_h2f(h);"},
               {R"(asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));)", "h = ptc_host_f2h(f);"},
               {"reinterpret_cast<const ptc_w", "ptc_host_vec<const ptc_w"},
               {"reinterpret_cast<ptc_w", "ptc_host_vec<ptc_w"}});
  if (body.find("asm(") != std::string::npos) {
    return absl::InternalError("the generated source has PTX the host shim does not know:\n" +
                               source);
  }
  if (source.find(absl::StrCat(" ", name, "(")) == std::string::npos &&
      source.find(absl::StrCat("\n", name, "(")) == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("the source has no kernel ", name));
  }
  const std::string text = absl::StrCat(kHostShim, body,
                                        absl::StrReplaceAll(kLauncher, {{"@KERNEL@", name}}));
  const std::string compiler = options.compiler.empty() ? DefaultHostCompiler() : options.compiler;
  if (compiler.empty() || access(compiler.c_str(), X_OK) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("no host C++ compiler at '", compiler, "' for generated kernels"));
  }
  const std::string flags = absl::StrCat(
      "-std=c++17 -O1 -shared -fPIC -w",
      options.address_sanitizer ? " -fsanitize=address -fno-omit-frame-pointer" : "");
  static std::atomic<int> counter{0};
  const std::string unique = absl::StrCat(getpid(), "_", counter++);
  std::string so;
  bool cached = false, private_file = options.cache_dir.empty();
  if (!options.cache_dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(options.cache_dir, ec);  // a failure shows at rename
    so = absl::StrFormat("%s/%s-%016x.so", options.cache_dir, name,
                         Fnv1a(absl::StrCat(compiler, "\n", flags, "\n", text)));
    cached = access(so.c_str(), R_OK) == 0;
  }
  if (!cached) {
    std::error_code ec;
    const std::string base = absl::StrCat(std::filesystem::temp_directory_path(ec).string(),
                                          "/ptc_host_", name, "_", unique);
    {
      std::ofstream f(base + ".cc");
      f << text;
      if (!f) return absl::InternalError(absl::StrCat("cannot write ", base, ".cc"));
    }
    const std::string cmd = absl::StrCat("'", compiler, "' ", flags, " -o '", base, ".so' '",
                                         base, ".cc' > '", base, ".log' 2>&1");
    const int rc = std::system(cmd.c_str());
    const std::string log = ReadFile(base + ".log");
    std::remove((base + ".cc").c_str());
    std::remove((base + ".log").c_str());
    if (rc != 0) {
      std::remove((base + ".so").c_str());
      return absl::InternalError(absl::StrCat("host compile of ", name, " failed: ", cmd, "\n",
                                              log, "\n", body));
    }
    if (private_file || std::rename((base + ".so").c_str(), so.c_str()) != 0) {
      so = base + ".so";  // no cache (or another file system: this process's copy)
      private_file = true;
    }
  }
  std::shared_ptr<HostKernel> k(new HostKernel);
  k->handle_ = dlopen(so.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (private_file) std::remove(so.c_str());  // stays mapped
  if (k->handle_ == nullptr) return absl::InternalError(absl::StrCat("dlopen: ", dlerror()));
  k->launch_ = reinterpret_cast<void (*)(void* const*, unsigned, unsigned)>(
      dlsym(k->handle_, "ptc_host_launch"));
  k->vectors_ =
      reinterpret_cast<unsigned long long (*)()>(dlsym(k->handle_, "ptc_host_vector_accesses"));
  auto arity = reinterpret_cast<int (*)()>(dlsym(k->handle_, "ptc_host_num_params"));
  if (k->launch_ == nullptr || k->vectors_ == nullptr || arity == nullptr) {
    return absl::InternalError(absl::StrCat("dlsym in ", so, ": ", dlerror()));
  }
  k->num_params_ = arity();
  return k;
}

HostKernel::~HostKernel() {
  if (handle_ != nullptr) dlclose(handle_);
}

void HostKernel::Launch(void* const* args, unsigned grid, unsigned block) const {
  std::lock_guard<std::mutex> lock(LaunchMutex());
  launch_(args, grid, block);
}

uint64_t HostKernel::vector_accesses() const {
  std::lock_guard<std::mutex> lock(LaunchMutex());
  return vectors_();
}

}  // namespace ptc::cuda::codegen
