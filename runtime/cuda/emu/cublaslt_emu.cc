// The CUDA CPU emulation's cuBLASLt (runtime/cuda/emu/README.md): the cuBLASLt C API functions
// that ptc calls (runtime/cuda/gemm.cc, device.cc, executor.cc), computing each matmul naively
// on the CPU.
//
//   D = epilogue(alpha op(A) op(B) + beta C [+ bias])   column-major, `batch` strided times
//
// Descriptors are plain structs behind cuBLASLt's opaque pointers. cublasLtMatmul validates the
// problem, then enqueues (emu::Enqueue: at once, or recorded into a graph capture) a closure
// that holds copies of everything it reads from the descriptors and of the host scalars alpha
// and beta, as cuBLASLt reads them at the call.
//
// Numerics: op(A) and op(B) are converted to float (f32 compute types; TF32 / f16 / bf16
// rounding of f32 inputs for the FAST_* types) or double (64F) scratch with k contiguous, each
// dot product sums sequentially over k, the epilogue (alpha, beta C, bias, the GELU aux matrix
// written, relu / gelu, DGELU's gelu'(aux)) runs in
// the compute precision and each element of D is rounded once to D's type (f16 / bf16 round to
// nearest even). Deterministic: a result depends only on the operands.
//
// Fidelity: what a GPU would punish is an error here (CUBLAS_STATUS_INVALID_VALUE and one
// "ptc cuda emulation:" line on stderr) instead of a silent success: a pointer not aligned to
// its element, or to the CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_* the heuristic was told (kept in
// the returned algo and in the descriptor), an algo not made by the heuristic or made for
// another configuration, C read (beta != 0) but null, D overlapping an operand it is computed
// from (C only when it is exactly D), batches of D that overlap each other, a GELU aux matrix
// without its pointer, with a leading dimension not a multiple of 8 or below D's rows, not
// 16-byte aligned, or overlapping D (and, when written, A, B or C).
#include <cublasLt.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "runtime/cuda/emu/emu.h"

namespace ptc::emu {
namespace {

constexpr uint64_t kHandleMagic = 0x70746348616e646cull;  // "ptcHandl"
constexpr uint64_t kDescMagic = 0x7074634465736331ull;
constexpr uint64_t kLayoutMagic = 0x707463496179f075ull;
constexpr uint64_t kPrefMagic = 0x7074635072656631ull;
constexpr uint64_t kAlgoMagic = 0x707463416c676f31ull;
constexpr uint32_t kDefaultAlign = 256;  // cuBLASLt's default MIN_ALIGNMENT_*_BYTES

struct LtHandle {
  uint64_t magic = kHandleMagic;
};

struct MatmulDesc {
  uint64_t magic = kDescMagic;
  int32_t compute = CUBLAS_COMPUTE_32F;
  int32_t scale = CUDA_R_32F;
  int32_t pointer_mode = CUBLASLT_POINTER_MODE_HOST;
  int32_t trans_a = CUBLAS_OP_N, trans_b = CUBLAS_OP_N, trans_c = CUBLAS_OP_N;
  uint32_t epilogue = CUBLASLT_EPILOGUE_DEFAULT;
  const void* bias = nullptr;
  int64_t bias_batch_stride = 0;
  int32_t bias_type = -1;  // -1: D's type
  // GELU_AUX* (written) / DGELU (read): the GELU input matrix, D's shape and type.
  const void* aux = nullptr;
  int64_t aux_ld = 0, aux_batch_stride = 0;
  int32_t aux_type = -1;  // -1: D's type
  std::string unsupported;  // the first attribute set that the emulation cannot honor
  // Set by cublasLtMatmulAlgoGetHeuristic: the smallest alignments it was told for A, B, C, D
  // (for cublasLtMatmul calls without an algo).
  bool tuned = false;
  uint32_t align[4] = {kDefaultAlign, kDefaultAlign, kDefaultAlign, kDefaultAlign};
};

struct Layout {
  uint64_t magic = kLayoutMagic;
  int32_t type = CUDA_R_32F;
  uint64_t rows = 0, cols = 0;
  int64_t ld = 0;
  int32_t order = CUBLASLT_ORDER_COL;
  int32_t batch = 1;
  int64_t stride = 0;  // elements
  int64_t plane_offset = 0;
  uint32_t batch_mode = 0;  // CUBLASLT_BATCH_MODE_STRIDED
};

struct Preference {
  uint64_t magic = kPrefMagic;
  uint64_t max_workspace = 0;
  uint32_t align[4] = {kDefaultAlign, kDefaultAlign, kDefaultAlign, kDefaultAlign};
};

LtHandle* Get(cublasLtHandle_t h) { return reinterpret_cast<LtHandle*>(h); }
MatmulDesc* Get(cublasLtMatmulDesc_t d) { return reinterpret_cast<MatmulDesc*>(d); }
Layout* Get(cublasLtMatrixLayout_t l) { return reinterpret_cast<Layout*>(l); }
Preference* Get(cublasLtMatmulPreference_t p) { return reinterpret_cast<Preference*>(p); }

bool Valid(cublasLtHandle_t h) { return h != nullptr && Get(h)->magic == kHandleMagic; }
bool Valid(cublasLtMatmulDesc_t d) { return d != nullptr && Get(d)->magic == kDescMagic; }
bool Valid(cublasLtMatrixLayout_t l) { return l != nullptr && Get(l)->magic == kLayoutMagic; }
bool Valid(cublasLtMatmulPreference_t p) { return p != nullptr && Get(p)->magic == kPrefMagic; }

// An error with a reason: INVALID_VALUE is a bug of the caller and says so on stderr;
// NOT_SUPPORTED (no algorithm for the configuration) is an answer callers handle, and is quiet.
cublasStatus_t Fail(cublasStatus_t status, const char* fn, const std::string& why) {
  if (status == CUBLAS_STATUS_INVALID_VALUE) {
    std::fprintf(stderr, "ptc cuda emulation: %s: %s\n", fn, why.c_str());
  }
  return status;
}

// The Destroy functions: a null object is `null_status`; a stale or foreign one an error.
template <typename H>
cublasStatus_t Destroy(H h, cublasStatus_t null_status, const char* fn, const char* what) {
  if (h == nullptr) return null_status;
  if (!Valid(h)) {
    return Fail(CUBLAS_STATUS_INVALID_VALUE, fn, std::string("not a ") + what + " (destroyed twice?)");
  }
  auto* o = Get(h);
  o->magic = 0;
  delete o;
  return CUBLAS_STATUS_SUCCESS;
}

// Copies an attribute value of exactly sizeof(T) bytes.
template <typename T>
bool ReadAttr(const void* buf, size_t size, T* out) {
  if (buf == nullptr || size != sizeof(T)) return false;
  std::memcpy(out, buf, sizeof(T));
  return true;
}

std::string SizeMismatch(const char* attr, size_t got, size_t want) {
  return std::string(attr) + ": buffer of " + std::to_string(got) + " bytes, expected " +
         std::to_string(want) + (got == want ? " (null buffer)" : "");
}

// ---- Number formats ----------------------------------------------------------------------

uint32_t Bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
float FromBits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

float HalfToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  const uint32_t exp = (h >> 10) & 0x1f;
  const uint32_t mant = h & 0x3ff;
  if (exp == 0) {  // zero or subnormal: mant * 2^-24, exact in float
    const float v = static_cast<float>(mant) * (1.0f / 16777216.0f);
    return sign ? -v : v;
  }
  if (exp == 31) return FromBits(sign | 0x7f800000 | (mant << 13));  // inf, NaN
  return FromBits(sign | ((exp + 112) << 23) | (mant << 13));
}

uint16_t FloatToHalf(float f) {  // round to nearest even
  uint32_t x = Bits(f);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000);
  const uint32_t ax = x & 0x7fffffff;
  if (ax >= 0x7f800000) {  // inf, NaN (quieted)
    return static_cast<uint16_t>(sign | (ax > 0x7f800000 ? 0x7e00 | ((ax >> 13) & 0x3ff) : 0x7c00));
  }
  if (ax >= 0x477ff000) return static_cast<uint16_t>(sign | 0x7c00);  // >= 65520: inf
  if (ax < 0x38800000) {  // below 2^-14: a subnormal (or the smallest normal after rounding)
    const float v = FromBits(ax) * 16777216.0f;  // in units of 2^-24, exact
    return static_cast<uint16_t>(sign | static_cast<uint16_t>(std::nearbyint(v)));
  }
  const uint32_t r = ax + 0xfff + ((ax >> 13) & 1);
  return static_cast<uint16_t>(sign | ((r - (112u << 23)) >> 13));
}

float Bf16ToFloat(uint16_t b) { return FromBits(static_cast<uint32_t>(b) << 16); }

uint16_t FloatToBf16(float f) {  // round to nearest even
  const uint32_t x = Bits(f);
  if ((x & 0x7fffffff) > 0x7f800000) return static_cast<uint16_t>((x >> 16) | 0x40);  // NaN
  return static_cast<uint16_t>((x + 0x7fff + ((x >> 16) & 1)) >> 16);
}

float RoundTf32(float f) {  // 10 explicit mantissa bits, round to nearest even
  const uint32_t x = Bits(f);
  if ((x & 0x7fffffff) >= 0x7f800000) return f;
  return FromBits((x + 0xfff + ((x >> 13) & 1)) & 0xffffe000u);
}

size_t TypeSize(int32_t type) {
  switch (type) {
    case CUDA_R_64F: return 8;
    case CUDA_R_32F: return 4;
    case CUDA_R_16F:
    case CUDA_R_16BF: return 2;
    default: return 0;
  }
}

const char* TypeName(int32_t type) {
  switch (type) {
    case CUDA_R_64F: return "CUDA_R_64F";
    case CUDA_R_32F: return "CUDA_R_32F";
    case CUDA_R_16F: return "CUDA_R_16F";
    case CUDA_R_16BF: return "CUDA_R_16BF";
    default: return "an unsupported data type";
  }
}

template <typename T>
T LoadAt(int32_t type, const char* base, int64_t i) {
  switch (type) {
    case CUDA_R_64F: {
      double v;
      std::memcpy(&v, base + i * 8, 8);
      return static_cast<T>(v);
    }
    case CUDA_R_32F: {
      float v;
      std::memcpy(&v, base + i * 4, 4);
      return static_cast<T>(v);
    }
    default: {
      uint16_t v;
      std::memcpy(&v, base + i * 2, 2);
      return static_cast<T>(type == CUDA_R_16F ? HalfToFloat(v) : Bf16ToFloat(v));
    }
  }
}

template <typename T>
void StoreAt(int32_t type, char* base, int64_t i, T value) {
  switch (type) {
    case CUDA_R_64F: {
      const double v = static_cast<double>(value);
      std::memcpy(base + i * 8, &v, 8);
      return;
    }
    case CUDA_R_32F: {
      const float v = static_cast<float>(value);
      std::memcpy(base + i * 4, &v, 4);
      return;
    }
    default: {
      // 16-bit D only occurs with f32 compute (T = float): one rounding.
      const float f = static_cast<float>(value);
      const uint16_t v = type == CUDA_R_16F ? FloatToHalf(f) : FloatToBf16(f);
      std::memcpy(base + i * 2, &v, 2);
      return;
    }
  }
}

// ---- The resolved problem ----------------------------------------------------------------

enum class Round { kNone, kTf32, kF16, kBf16 };  // applied to f32 inputs (FAST_* compute types)

struct Epilogue {
  bool bias = false, relu = false, gelu = false, bgrad_a = false, bgrad_b = false;
  bool gelu_aux = false;  // GELU_AUX*: the GELU's input (after the bias) written to aux
  bool dgelu = false;     // DGELU: the result times gelu'(aux)
};

bool DecodeEpilogue(uint32_t e, Epilogue* out) {
  *out = Epilogue{};
  switch (e) {
    case CUBLASLT_EPILOGUE_DEFAULT: return true;
    case CUBLASLT_EPILOGUE_RELU: out->relu = true; return true;
    case CUBLASLT_EPILOGUE_BIAS: out->bias = true; return true;
    case CUBLASLT_EPILOGUE_RELU_BIAS: out->bias = out->relu = true; return true;
    case CUBLASLT_EPILOGUE_GELU: out->gelu = true; return true;
    case CUBLASLT_EPILOGUE_GELU_BIAS: out->bias = out->gelu = true; return true;
    case CUBLASLT_EPILOGUE_GELU_AUX: out->gelu = out->gelu_aux = true; return true;
    case CUBLASLT_EPILOGUE_GELU_AUX_BIAS: out->bias = out->gelu = out->gelu_aux = true; return true;
    case CUBLASLT_EPILOGUE_DGELU: out->dgelu = true; return true;
    case CUBLASLT_EPILOGUE_BGRADA: out->bgrad_a = true; return true;
    case CUBLASLT_EPILOGUE_BGRADB: out->bgrad_b = true; return true;
    default: return false;
  }
}

// Everything the computation needs, copied out of the descriptors at the call.
struct Problem {
  bool f64 = false;  // 64F compute and scale (else f32)
  Round round = Round::kNone;
  int32_t a_type = 0, b_type = 0, c_type = 0, d_type = 0, bias_type = 0;
  bool ta = false, tb = false;
  int64_t m = 0, n = 0, k = 0, batch = 1;
  Layout a, b, c, d;
  Epilogue epi;
  uint32_t epilogue = CUBLASLT_EPILOGUE_DEFAULT;
  int64_t bias_stride = 0;
  int64_t aux_ld = 0;
  // The configuration (no sizes) that an algo is tied to.
  uint64_t Fingerprint() const {
    uint64_t h = 1469598103934665603ull;
    for (int64_t v : {int64_t{f64}, int64_t(round), int64_t{a_type}, int64_t{b_type},
                      int64_t{c_type}, int64_t{d_type}, int64_t{bias_type}, int64_t{ta},
                      int64_t{tb}, int64_t{epilogue}}) {
      h = (h ^ static_cast<uint64_t>(v)) * 1099511628211ull;
    }
    return h;
  }
};

struct Status {
  cublasStatus_t status = CUBLAS_STATUS_SUCCESS;
  std::string why;
  bool ok() const { return status == CUBLAS_STATUS_SUCCESS; }
};
Status Invalid(std::string why) { return {CUBLAS_STATUS_INVALID_VALUE, std::move(why)}; }
Status Unsupported(std::string why) { return {CUBLAS_STATUS_NOT_SUPPORTED, std::move(why)}; }

std::string Str(uint64_t v) { return std::to_string(v); }

Status CheckLayout(const char* name, const Layout& l) {
  const std::string n(name);
  if (TypeSize(l.type) == 0) {
    return Unsupported(n + " has data type " + std::to_string(l.type) +
                       " (the emulation has f64, f32, f16, bf16)");
  }
  if (l.order != CUBLASLT_ORDER_COL) return Unsupported(n + ": only CUBLASLT_ORDER_COL");
  if (l.plane_offset != 0 || l.batch_mode != 0) {
    return Unsupported(n + ": planar or pointer-array layouts");
  }
  if (l.rows > INT32_MAX || l.cols > INT32_MAX || l.ld > INT32_MAX) {
    return Unsupported(n + ": rows, cols or ld beyond int32");
  }
  if (l.ld < 0 || static_cast<uint64_t>(l.ld) < l.rows) {
    return Invalid(n + ": ld " + std::to_string(l.ld) + " < rows " + Str(l.rows));
  }
  if (l.batch < 1) return Invalid(n + ": CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT " +
                                  std::to_string(l.batch) + " < 1");
  return {};
}

// Validates desc + layouts and fills *p: what both the heuristic and the matmul check.
Status Resolve(const MatmulDesc& desc, const Layout& a, const Layout& b, const Layout& c,
               const Layout& d, Problem* p) {
  if (!desc.unsupported.empty()) return Unsupported(desc.unsupported);
  for (auto [name, l] : {std::pair<const char*, const Layout*>{"A", &a}, {"B", &b}, {"C", &c},
                         {"D", &d}}) {
    Status s = CheckLayout(name, *l);
    if (!s.ok()) return s;
  }
  if (desc.pointer_mode != CUBLASLT_POINTER_MODE_HOST) {
    return Unsupported("only CUBLASLT_POINTER_MODE_HOST (host alpha / beta)");
  }
  for (int32_t t : {desc.trans_a, desc.trans_b}) {
    if (t != CUBLAS_OP_N && t != CUBLAS_OP_T && t != CUBLAS_OP_C) {
      return Invalid("TRANSA / TRANSB " + std::to_string(t) + " is not a cublasOperation_t");
    }
  }
  if (desc.trans_c != CUBLAS_OP_N) return Unsupported("TRANSC must be CUBLAS_OP_N");

  Problem& q = *p;
  q = Problem{};
  q.a = a;
  q.b = b;
  q.c = c;
  q.d = d;
  q.a_type = a.type;
  q.b_type = b.type;
  q.c_type = c.type;
  q.d_type = d.type;
  q.ta = desc.trans_a != CUBLAS_OP_N;  // CUBLAS_OP_C is T for real types
  q.tb = desc.trans_b != CUBLAS_OP_N;
  // Types (cuBLASLt's table of supported combinations, the part the emulation has).
  const std::string types = std::string(" (A ") + TypeName(a.type) + ", B " + TypeName(b.type) +
                            ", C " + TypeName(c.type) + ", D " + TypeName(d.type) + ")";
  switch (desc.compute) {
    case CUBLAS_COMPUTE_64F:
    case CUBLAS_COMPUTE_64F_PEDANTIC:
      if (desc.scale != CUDA_R_64F) return Unsupported("64F compute needs a CUDA_R_64F scale type");
      if (a.type != CUDA_R_64F || b.type != CUDA_R_64F || c.type != CUDA_R_64F ||
          d.type != CUDA_R_64F) {
        return Unsupported("64F compute needs f64 A, B, C, D" + types);
      }
      q.f64 = true;
      break;
    case CUBLAS_COMPUTE_32F:
    case CUBLAS_COMPUTE_32F_PEDANTIC:
      if (desc.scale != CUDA_R_32F) return Unsupported("32F compute needs a CUDA_R_32F scale type");
      if (a.type != b.type || a.type == CUDA_R_64F || (d.type != a.type && d.type != CUDA_R_32F) ||
          c.type != d.type) {
        return Unsupported("32F compute: A and B of one type (f32, f16, bf16), C and D of that "
                           "type or f32" + types);
      }
      break;
    case CUBLAS_COMPUTE_32F_FAST_TF32:
    case CUBLAS_COMPUTE_32F_FAST_16F:
    case CUBLAS_COMPUTE_32F_FAST_16BF:
      if (desc.scale != CUDA_R_32F) return Unsupported("32F compute needs a CUDA_R_32F scale type");
      if (a.type != CUDA_R_32F || b.type != CUDA_R_32F || c.type != CUDA_R_32F ||
          d.type != CUDA_R_32F) {
        return Unsupported("32F_FAST_* compute needs f32 A, B, C, D" + types);
      }
      q.round = desc.compute == CUBLAS_COMPUTE_32F_FAST_TF32  ? Round::kTf32
                : desc.compute == CUBLAS_COMPUTE_32F_FAST_16F ? Round::kF16
                                                              : Round::kBf16;
      break;
    default:
      return Unsupported("compute type " + std::to_string(desc.compute) +
                         " (the emulation has 32F, 32F_FAST_TF32 / 16F / 16BF, 64F)");
  }
  // Shapes: D is m x n, op(A) m x k, op(B) k x n, C like D.
  q.m = static_cast<int64_t>(d.rows);
  q.n = static_cast<int64_t>(d.cols);
  q.k = static_cast<int64_t>(q.ta ? a.rows : a.cols);
  const uint64_t a_m = q.ta ? a.cols : a.rows;
  const uint64_t b_k = q.tb ? b.cols : b.rows, b_n = q.tb ? b.rows : b.cols;
  if (a_m != d.rows || b_k != static_cast<uint64_t>(q.k) || b_n != d.cols ||
      c.rows != d.rows || c.cols != d.cols) {
    return Invalid("shapes do not agree: op(A) " + Str(a_m) + "x" + std::to_string(q.k) +
                   ", op(B) " + Str(b_k) + "x" + Str(b_n) + ", C " + Str(c.rows) + "x" +
                   Str(c.cols) + ", D " + Str(d.rows) + "x" + Str(d.cols) +
                   (q.ta ? " (A transposed)" : "") + (q.tb ? " (B transposed)" : ""));
  }
  if (a.batch != d.batch || b.batch != d.batch || c.batch != d.batch) {
    return Invalid("batch counts differ: A " + std::to_string(a.batch) + ", B " +
                   std::to_string(b.batch) + ", C " + std::to_string(c.batch) + ", D " +
                   std::to_string(d.batch));
  }
  q.batch = d.batch;
  // Epilogue.
  if (!DecodeEpilogue(desc.epilogue, &q.epi)) {
    return Unsupported("epilogue " + std::to_string(desc.epilogue) +
                       " (the emulation has DEFAULT, RELU, BIAS, RELU_BIAS, GELU, GELU_BIAS, "
                       "GELU_AUX, GELU_AUX_BIAS, DGELU, BGRADA, BGRADB)");
  }
  q.epilogue = desc.epilogue;
  q.bias_stride = desc.bias_batch_stride;
  q.bias_type = desc.bias_type == -1 ? d.type : desc.bias_type;
  if (q.epi.gelu_aux || q.epi.dgelu) {
    // cuBLASLt: the aux leading dimension divisible by 8 and no less than D's rows.
    if (desc.aux_ld < static_cast<int64_t>(d.rows) || desc.aux_ld % 8 != 0) {
      return Invalid("CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD is " + std::to_string(desc.aux_ld) +
                     ": a GELU aux matrix needs a multiple of 8 no less than D's rows (" +
                     Str(d.rows) + ")");
    }
    if (desc.aux_type != -1 && desc.aux_type != d.type) {
      return Unsupported("a GELU aux matrix of a type other than D's");
    }
    if (q.batch > 1) return Unsupported("a GELU aux epilogue with a batch");
    q.aux_ld = desc.aux_ld;
  }
  if (q.epi.bgrad_a || q.epi.bgrad_b) {
    if (q.batch > 1) return Unsupported("a BGRAD epilogue with a batch");
    if (q.bias_type != d.type) return Unsupported("a bias gradient of a type other than D's");
  } else if (q.epi.bias) {
    const bool half_d = d.type == CUDA_R_16F || d.type == CUDA_R_16BF;
    if (q.bias_type != d.type && !(half_d && q.bias_type == CUDA_R_32F)) {
      return Unsupported(std::string("a bias of ") + TypeName(q.bias_type) + " with D of " +
                         TypeName(d.type));
    }
  }
  return {};
}

// ---- Memory checks -----------------------------------------------------------------------

struct Span {
  uintptr_t begin, end;
};

// The bytes of every stored column of `l` at `base` (each batch; a zero stride once).
void AddSpans(const void* base, const Layout& l, std::vector<Span>* out) {
  if (base == nullptr || l.rows == 0 || l.cols == 0) return;
  const int64_t elem = static_cast<int64_t>(TypeSize(l.type));
  const int64_t rows = static_cast<int64_t>(l.rows), cols = static_cast<int64_t>(l.cols);
  const int64_t batches = l.stride == 0 ? 1 : l.batch;
  const uintptr_t b0 = reinterpret_cast<uintptr_t>(base);
  for (int64_t bi = 0; bi < batches; ++bi) {
    const uintptr_t mat = b0 + static_cast<uintptr_t>(bi * l.stride * elem);
    if (l.ld == rows) {  // contiguous
      out->push_back({mat, mat + static_cast<uintptr_t>(rows * cols * elem)});
      continue;
    }
    for (int64_t c = 0; c < cols; ++c) {
      const uintptr_t col = mat + static_cast<uintptr_t>(c * l.ld * elem);
      out->push_back({col, col + static_cast<uintptr_t>(rows * elem)});
    }
  }
}

void SortSpans(std::vector<Span>* s) {
  std::sort(s->begin(), s->end(), [](const Span& x, const Span& y) { return x.begin < y.begin; });
}

bool SelfOverlap(const std::vector<Span>& sorted) {
  uintptr_t end = 0;
  for (size_t i = 0; i < sorted.size(); ++i) {
    if (i > 0 && sorted[i].begin < end) return true;
    end = std::max(end, sorted[i].end);
  }
  return false;
}

bool Overlap(const std::vector<Span>& x, const std::vector<Span>& y) {  // both sorted
  size_t i = 0, j = 0;
  uintptr_t x_end = 0, y_end = 0;  // running maxima (x's spans may overlap each other)
  while (i < x.size() && j < y.size()) {
    if (x[i].begin < y[j].begin) {
      if (x[i].begin < y_end) return true;
      x_end = std::max(x_end, x[i].end);
      ++i;
    } else {
      if (y[j].begin < x_end) return true;
      y_end = std::max(y_end, y[j].end);
      ++j;
    }
  }
  if (i < x.size() && x[i].begin < y_end) return true;
  if (j < y.size() && y[j].begin < x_end) return true;
  return false;
}

std::string Ptr(const void* p) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%p", p);
  return buf;
}

Status CheckAlign(const char* name, const void* p, uint32_t align, const char* why) {
  if (p == nullptr || align <= 1) return {};
  if (reinterpret_cast<uintptr_t>(p) % align != 0) {
    return Invalid(std::string(name) + " (" + Ptr(p) + ") is not aligned to " +
                   std::to_string(align) + " bytes, " + why);
  }
  return {};
}

// The algo that cublasLtMatmulAlgoGetHeuristic returns: a tag, the configuration it was made
// for, and the alignments it may assume.
struct AlgoData {
  uint64_t magic;
  uint64_t fingerprint;
  uint32_t align[4];  // A, B, C, D
  uint64_t bias_align;
  uint64_t splits;    // the sums over k run in this many chunks (1: one), added in order
  uint64_t unused[2];
};
// The heuristic returns up to this many algorithms, splits 1, 2, ...: their results differ by
// rounding, as a GPU's algorithms (split-K, tile orders) do.
constexpr int kAlgoVariants = 4;
static_assert(sizeof(AlgoData) == sizeof(cublasLtMatmulAlgo_t));

// ---- The computation ---------------------------------------------------------------------

template <typename T>
T Gelu(T x) {  // cuBLASLt's GELU: the tanh approximation
  const T c = static_cast<T>(0.7978845608028654);  // sqrt(2 / pi)
  return static_cast<T>(0.5) * x *
         (static_cast<T>(1) + std::tanh(c * (x + static_cast<T>(0.044715) * x * x * x)));
}

template <typename T>
T GeluGrad(T x) {  // DGELU's factor: the derivative of the tanh form
  const T c = static_cast<T>(0.7978845608028654), k = static_cast<T>(0.044715);
  const T t = std::tanh(c * (x + k * x * x * x));
  return static_cast<T>(0.5) * (static_cast<T>(1) + t) +
         static_cast<T>(0.5) * x * (static_cast<T>(1) - t * t) * c *
             (static_cast<T>(1) + static_cast<T>(3) * k * x * x);
}

template <typename T>
void Convert(T* v, int64_t count, Round round) {
  if constexpr (std::is_same_v<T, float>) {
    switch (round) {
      case Round::kNone: return;
      case Round::kTf32:
        for (int64_t i = 0; i < count; ++i) v[i] = RoundTf32(v[i]);
        return;
      case Round::kF16:
        for (int64_t i = 0; i < count; ++i) v[i] = HalfToFloat(FloatToHalf(v[i]));
        return;
      case Round::kBf16:
        for (int64_t i = 0; i < count; ++i) v[i] = Bf16ToFloat(FloatToBf16(v[i]));
        return;
    }
  } else {
    (void)v;
    (void)count;
    (void)round;
  }
}

// Sum over k of each row of `rows` (count x k), rounded to `type` into `out`.
template <typename T>
void RowSums(const T* rows, int64_t count, int64_t k, int32_t type, char* out) {
  for (int64_t i = 0; i < count; ++i) {
    T s = 0;
    for (int64_t p = 0; p < k; ++p) s += rows[i * k + p];
    StoreAt<T>(type, out, i, s);
  }
}

template <typename T>
void Compute(const Problem& p, int64_t splits, T alpha, T beta, const char* A, const char* B,
             const char* C, char* D, char* bias, char* aux) {
  const int64_t m = p.m, n = p.n, k = p.k;
  const int64_t chunk = std::max<int64_t>(1, (k + std::max<int64_t>(splits, 1) - 1) /
                                                 std::max<int64_t>(splits, 1));
  if (m == 0 || n == 0) return;
  const int64_t ae = static_cast<int64_t>(TypeSize(p.a_type));
  const int64_t be = static_cast<int64_t>(TypeSize(p.b_type));
  const int64_t ce = static_cast<int64_t>(TypeSize(p.c_type));
  const int64_t de = static_cast<int64_t>(TypeSize(p.d_type));
  const int64_t biase = static_cast<int64_t>(TypeSize(p.bias_type));
  // op(A) as m rows of k, op(B) as n rows of k (its columns).
  std::vector<T> a(static_cast<size_t>(m * k)), b(static_cast<size_t>(n * k));
  const bool read_c = beta != static_cast<T>(0);
  for (int64_t bi = 0; bi < p.batch; ++bi) {
    if (p.epi.bgrad_a && k == 0) RowSums(a.data(), m, k, p.bias_type, bias);  // zeros
    if (p.epi.bgrad_b && k == 0) RowSums(b.data(), n, k, p.bias_type, bias);
    if (k > 0 && (bi == 0 || p.a.stride != 0)) {
      const char* ab = A + bi * p.a.stride * ae;
      const int64_t lda = p.a.ld;
      if (p.ta) {  // stored k x m: op(A)[i, q] = A[q + i lda]
        for (int64_t i = 0; i < m; ++i) {
          for (int64_t q = 0; q < k; ++q) a[i * k + q] = LoadAt<T>(p.a_type, ab, q + i * lda);
        }
      } else {  // stored m x k: op(A)[i, q] = A[i + q lda]
        for (int64_t q = 0; q < k; ++q) {
          for (int64_t i = 0; i < m; ++i) a[i * k + q] = LoadAt<T>(p.a_type, ab, i + q * lda);
        }
      }
      if (p.epi.bgrad_a) RowSums(a.data(), m, k, p.bias_type, bias);
      Convert(a.data(), m * k, p.round);
    }
    if (k > 0 && (bi == 0 || p.b.stride != 0)) {
      const char* bb = B + bi * p.b.stride * be;
      const int64_t ldb = p.b.ld;
      if (p.tb) {  // stored n x k: op(B)[q, j] = B[j + q ldb]
        for (int64_t q = 0; q < k; ++q) {
          for (int64_t j = 0; j < n; ++j) b[j * k + q] = LoadAt<T>(p.b_type, bb, j + q * ldb);
        }
      } else {  // stored k x n: op(B)[q, j] = B[q + j ldb]
        for (int64_t j = 0; j < n; ++j) {
          for (int64_t q = 0; q < k; ++q) b[j * k + q] = LoadAt<T>(p.b_type, bb, q + j * ldb);
        }
      }
      if (p.epi.bgrad_b) RowSums(b.data(), n, k, p.bias_type, bias);
      Convert(b.data(), n * k, p.round);
    }
    const char* cb = read_c ? C + bi * p.c.stride * ce : nullptr;
    char* db = D + bi * p.d.stride * de;
    const char* biasb = p.epi.bias ? bias + bi * p.bias_stride * biase : nullptr;
    auto finish = [&](int64_t i, int64_t j, T acc) {
      T v = alpha * acc;
      if (read_c) v += beta * LoadAt<T>(p.c_type, cb, i + j * p.c.ld);
      if (biasb != nullptr) v += LoadAt<T>(p.bias_type, biasb, i);
      if (p.epi.gelu_aux) StoreAt<T>(p.d_type, aux, i + j * p.aux_ld, v);
      if (p.epi.relu) v = v < static_cast<T>(0) ? static_cast<T>(0) : v;  // keeps NaN
      if (p.epi.gelu) v = Gelu(v);
      if (p.epi.dgelu) v *= GeluGrad(LoadAt<T>(p.d_type, aux, i + j * p.aux_ld));
      StoreAt<T>(p.d_type, db, i + j * p.d.ld, v);
    };
    // Four columns of D at a time: one pass over a row of op(A) feeds four sums, each summed
    // in order over each chunk of k, the chunks' sums added in order (one chunk: the plain
    // sum; the blocking over columns does not change any result).
    int64_t j = 0;
    for (; j + 4 <= n; j += 4) {
      const T* b0 = b.data() + j * k;
      const T* b1 = b0 + k;
      const T* b2 = b1 + k;
      const T* b3 = b2 + k;
      for (int64_t i = 0; i < m; ++i) {
        const T* ar = a.data() + i * k;
        T t0 = 0, t1 = 0, t2 = 0, t3 = 0;
        for (int64_t q0 = 0; q0 < k; q0 += chunk) {
          const int64_t q1 = std::min(k, q0 + chunk);
          T s0 = 0, s1 = 0, s2 = 0, s3 = 0;
          for (int64_t q = q0; q < q1; ++q) {
            const T x = ar[q];
            s0 += x * b0[q];
            s1 += x * b1[q];
            s2 += x * b2[q];
            s3 += x * b3[q];
          }
          t0 += s0;
          t1 += s1;
          t2 += s2;
          t3 += s3;
        }
        finish(i, j, t0);
        finish(i, j + 1, t1);
        finish(i, j + 2, t2);
        finish(i, j + 3, t3);
      }
    }
    for (; j < n; ++j) {
      const T* bc = b.data() + j * k;
      for (int64_t i = 0; i < m; ++i) {
        const T* ar = a.data() + i * k;
        T t = 0;
        for (int64_t q0 = 0; q0 < k; q0 += chunk) {
          const int64_t q1 = std::min(k, q0 + chunk);
          T s = 0;
          for (int64_t q = q0; q < q1; ++q) s += ar[q] * bc[q];
          t += s;
        }
        finish(i, j, t);
      }
    }
  }
}

}  // namespace
}  // namespace ptc::emu

using ptc::emu::AlgoData;
using ptc::emu::Get;
using ptc::emu::Valid;

extern "C" {

// The emulation's own version (tags the autotuner's tuning-file lines).
size_t CUBLASWINAPI cublasLtGetVersion(void) { return 1; }

cublasStatus_t CUBLASWINAPI cublasLtCreate(cublasLtHandle_t* lightHandle) {
  if (lightHandle == nullptr) {
    return ptc::emu::Fail(CUBLAS_STATUS_INVALID_VALUE, "cublasLtCreate", "null handle pointer");
  }
  *lightHandle = reinterpret_cast<cublasLtHandle_t>(new ptc::emu::LtHandle);
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t CUBLASWINAPI cublasLtDestroy(cublasLtHandle_t lightHandle) {
  return ptc::emu::Destroy(lightHandle, CUBLAS_STATUS_NOT_INITIALIZED, "cublasLtDestroy", "cuBLASLt handle");
}

cublasStatus_t CUBLASWINAPI cublasLtMatmulDescCreate(cublasLtMatmulDesc_t* matmulDesc,
                                                     cublasComputeType_t computeType,
                                                     cudaDataType_t scaleType) {
  if (matmulDesc == nullptr) {
    return ptc::emu::Fail(CUBLAS_STATUS_INVALID_VALUE, "cublasLtMatmulDescCreate",
                          "null descriptor pointer");
  }
  auto* d = new ptc::emu::MatmulDesc;
  d->compute = computeType;
  d->scale = scaleType;
  *matmulDesc = reinterpret_cast<cublasLtMatmulDesc_t>(d);
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t CUBLASWINAPI cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t matmulDesc) {
  return ptc::emu::Destroy(matmulDesc, CUBLAS_STATUS_SUCCESS, "cublasLtMatmulDescDestroy", "matmul descriptor");
}

cublasStatus_t CUBLASWINAPI cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t matmulDesc,
                                                           cublasLtMatmulDescAttributes_t attr,
                                                           const void* buf, size_t sizeInBytes) {
  using ptc::emu::ReadAttr;
  constexpr const char* kFn = "cublasLtMatmulDescSetAttribute";
  if (!Valid(matmulDesc)) {
    return ptc::emu::Fail(CUBLAS_STATUS_INVALID_VALUE, kFn, "not a matmul descriptor");
  }
  ptc::emu::MatmulDesc& d = *Get(matmulDesc);
  auto bad = [&](const char* name, size_t want) {
    return ptc::emu::Fail(CUBLAS_STATUS_INVALID_VALUE, kFn,
                          ptc::emu::SizeMismatch(name, sizeInBytes, want));
  };
  switch (attr) {
    case CUBLASLT_MATMUL_DESC_COMPUTE_TYPE:
      if (!ReadAttr(buf, sizeInBytes, &d.compute)) return bad("COMPUTE_TYPE", 4);
      break;
    case CUBLASLT_MATMUL_DESC_SCALE_TYPE:
      if (!ReadAttr(buf, sizeInBytes, &d.scale)) return bad("SCALE_TYPE", 4);
      break;
    case CUBLASLT_MATMUL_DESC_POINTER_MODE:
      if (!ReadAttr(buf, sizeInBytes, &d.pointer_mode)) return bad("POINTER_MODE", 4);
      break;
    case CUBLASLT_MATMUL_DESC_TRANSA:
      if (!ReadAttr(buf, sizeInBytes, &d.trans_a)) return bad("TRANSA", 4);
      break;
    case CUBLASLT_MATMUL_DESC_TRANSB:
      if (!ReadAttr(buf, sizeInBytes, &d.trans_b)) return bad("TRANSB", 4);
      break;
    case CUBLASLT_MATMUL_DESC_TRANSC:
      if (!ReadAttr(buf, sizeInBytes, &d.trans_c)) return bad("TRANSC", 4);
      break;
    case CUBLASLT_MATMUL_DESC_EPILOGUE:
      if (!ReadAttr(buf, sizeInBytes, &d.epilogue)) return bad("EPILOGUE", 4);
      break;
    case CUBLASLT_MATMUL_DESC_BIAS_POINTER:
      if (!ReadAttr(buf, sizeInBytes, &d.bias)) return bad("BIAS_POINTER", sizeof(void*));
      break;
    case CUBLASLT_MATMUL_DESC_BIAS_BATCH_STRIDE:
      if (!ReadAttr(buf, sizeInBytes, &d.bias_batch_stride)) return bad("BIAS_BATCH_STRIDE", 8);
      break;
    case CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE:
      if (!ReadAttr(buf, sizeInBytes, &d.bias_type)) return bad("BIAS_DATA_TYPE", 4);
      break;
    case CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER:
      if (!ReadAttr(buf, sizeInBytes, &d.aux)) return bad("EPILOGUE_AUX_POINTER", sizeof(void*));
      break;
    case CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD:
      if (!ReadAttr(buf, sizeInBytes, &d.aux_ld)) return bad("EPILOGUE_AUX_LD", 8);
      break;
    case CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_BATCH_STRIDE:
      if (!ReadAttr(buf, sizeInBytes, &d.aux_batch_stride)) return bad("EPILOGUE_AUX_BATCH_STRIDE", 8);
      break;
    case CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_DATA_TYPE:
      if (!ReadAttr(buf, sizeInBytes, &d.aux_type)) return bad("EPILOGUE_AUX_DATA_TYPE", 4);
      break;
    // Pointers to data the emulation does not produce or apply (FP8 scales, aux scales):
    // setting one makes the configuration unsupported.
    case CUBLASLT_MATMUL_DESC_A_SCALE_POINTER:
    case CUBLASLT_MATMUL_DESC_B_SCALE_POINTER:
    case CUBLASLT_MATMUL_DESC_C_SCALE_POINTER:
    case CUBLASLT_MATMUL_DESC_D_SCALE_POINTER:
    case CUBLASLT_MATMUL_DESC_AMAX_D_POINTER:
    case CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_SCALE_POINTER:
    case CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_AMAX_POINTER:
#if CUBLAS_VER_MAJOR >= 13
    case CUBLASLT_MATMUL_DESC_D_OUT_SCALE_POINTER:
    case CUBLASLT_MATMUL_DESC_EMULATION_DESCRIPTOR:
#endif
    {
      const void* p = nullptr;
      if (!ReadAttr(buf, sizeInBytes, &p)) return bad("a pointer attribute", sizeof(void*));
      if (p != nullptr && d.unsupported.empty()) {
        d.unsupported = "matmul descriptor attribute " + std::to_string(int(attr)) +
                        " (scale pointers, emulation descriptors)";
      }
      break;
    }
    default:  // tuning hints (SM_COUNT_TARGET, FAST_ACCUM, FILL_MODE, ...): no effect here
      if (buf == nullptr && sizeInBytes > 0) {
        return ptc::emu::Fail(CUBLAS_STATUS_INVALID_VALUE, kFn, "null attribute buffer");
      }
      break;
  }
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t CUBLASWINAPI cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t* matLayout,
                                                       cudaDataType type, uint64_t rows,
                                                       uint64_t cols, int64_t ld) {
  if (matLayout == nullptr) {
    return ptc::emu::Fail(CUBLAS_STATUS_INVALID_VALUE, "cublasLtMatrixLayoutCreate",
                          "null layout pointer");
  }
  auto* l = new ptc::emu::Layout;
  l->type = type;
  l->rows = rows;
  l->cols = cols;
  l->ld = ld;
  *matLayout = reinterpret_cast<cublasLtMatrixLayout_t>(l);
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t CUBLASWINAPI cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t matLayout) {
  return ptc::emu::Destroy(matLayout, CUBLAS_STATUS_SUCCESS, "cublasLtMatrixLayoutDestroy", "matrix layout");
}

cublasStatus_t CUBLASWINAPI cublasLtMatrixLayoutSetAttribute(cublasLtMatrixLayout_t matLayout,
                                                             cublasLtMatrixLayoutAttribute_t attr,
                                                             const void* buf,
                                                             size_t sizeInBytes) {
  using ptc::emu::ReadAttr;
  constexpr const char* kFn = "cublasLtMatrixLayoutSetAttribute";
  if (!Valid(matLayout)) {
    return ptc::emu::Fail(CUBLAS_STATUS_INVALID_VALUE, kFn, "not a matrix layout");
  }
  ptc::emu::Layout& l = *Get(matLayout);
  auto bad = [&](const char* name, size_t want) {
    return ptc::emu::Fail(CUBLAS_STATUS_INVALID_VALUE, kFn,
                          ptc::emu::SizeMismatch(name, sizeInBytes, want));
  };
  switch (attr) {
    case CUBLASLT_MATRIX_LAYOUT_TYPE: {
      uint32_t t;
      if (!ReadAttr(buf, sizeInBytes, &t)) return bad("TYPE", 4);
      l.type = static_cast<int32_t>(t);
      break;
    }
    case CUBLASLT_MATRIX_LAYOUT_ORDER:
      if (!ReadAttr(buf, sizeInBytes, &l.order)) return bad("ORDER", 4);
      break;
    case CUBLASLT_MATRIX_LAYOUT_ROWS:
      if (!ReadAttr(buf, sizeInBytes, &l.rows)) return bad("ROWS", 8);
      break;
    case CUBLASLT_MATRIX_LAYOUT_COLS:
      if (!ReadAttr(buf, sizeInBytes, &l.cols)) return bad("COLS", 8);
      break;
    case CUBLASLT_MATRIX_LAYOUT_LD:
      if (!ReadAttr(buf, sizeInBytes, &l.ld)) return bad("LD", 8);
      break;
    case CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT:
      if (!ReadAttr(buf, sizeInBytes, &l.batch)) return bad("BATCH_COUNT", 4);
      break;
    case CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET:
      if (!ReadAttr(buf, sizeInBytes, &l.stride)) return bad("STRIDED_BATCH_OFFSET", 8);
      break;
    case CUBLASLT_MATRIX_LAYOUT_PLANE_OFFSET:
      if (!ReadAttr(buf, sizeInBytes, &l.plane_offset)) return bad("PLANE_OFFSET", 8);
      break;
    case CUBLASLT_MATRIX_LAYOUT_BATCH_MODE:
      if (!ReadAttr(buf, sizeInBytes, &l.batch_mode)) return bad("BATCH_MODE", 4);
      break;
    default:
      if (buf == nullptr && sizeInBytes > 0) {
        return ptc::emu::Fail(CUBLAS_STATUS_INVALID_VALUE, kFn, "null attribute buffer");
      }
      break;
  }
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t CUBLASWINAPI cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t* pref) {
  if (pref == nullptr) {
    return ptc::emu::Fail(CUBLAS_STATUS_INVALID_VALUE, "cublasLtMatmulPreferenceCreate",
                          "null preference pointer");
  }
  *pref = reinterpret_cast<cublasLtMatmulPreference_t>(new ptc::emu::Preference);
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t CUBLASWINAPI cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t pref) {
  return ptc::emu::Destroy(pref, CUBLAS_STATUS_SUCCESS, "cublasLtMatmulPreferenceDestroy", "matmul preference");
}

cublasStatus_t CUBLASWINAPI cublasLtMatmulPreferenceSetAttribute(
    cublasLtMatmulPreference_t pref, cublasLtMatmulPreferenceAttributes_t attr, const void* buf,
    size_t sizeInBytes) {
  using ptc::emu::ReadAttr;
  constexpr const char* kFn = "cublasLtMatmulPreferenceSetAttribute";
  if (!Valid(pref)) {
    return ptc::emu::Fail(CUBLAS_STATUS_INVALID_VALUE, kFn, "not a matmul preference");
  }
  ptc::emu::Preference& p = *Get(pref);
  auto bad = [&](const char* name, size_t want) {
    return ptc::emu::Fail(CUBLAS_STATUS_INVALID_VALUE, kFn,
                          ptc::emu::SizeMismatch(name, sizeInBytes, want));
  };
  switch (attr) {
    case CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES:
      if (!ReadAttr(buf, sizeInBytes, &p.max_workspace)) return bad("MAX_WORKSPACE_BYTES", 8);
      break;
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES:
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES:
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES:
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES: {
      uint32_t a;
      if (!ReadAttr(buf, sizeInBytes, &a)) return bad("MIN_ALIGNMENT_*_BYTES", 4);
      p.align[attr - CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES] = std::max<uint32_t>(a, 1);
      break;
    }
    default:  // search mode, reduction scheme mask, waves count, implementation mask
      if (buf == nullptr && sizeInBytes > 0) {
        return ptc::emu::Fail(CUBLAS_STATUS_INVALID_VALUE, kFn, "null attribute buffer");
      }
      break;
  }
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t CUBLASWINAPI cublasLtMatmulAlgoGetHeuristic(
    cublasLtHandle_t lightHandle, cublasLtMatmulDesc_t operationDesc,
    cublasLtMatrixLayout_t Adesc, cublasLtMatrixLayout_t Bdesc, cublasLtMatrixLayout_t Cdesc,
    cublasLtMatrixLayout_t Ddesc, cublasLtMatmulPreference_t preference, int requestedAlgoCount,
    cublasLtMatmulHeuristicResult_t heuristicResultsArray[], int* returnAlgoCount) {
  constexpr const char* kFn = "cublasLtMatmulAlgoGetHeuristic";
  using ptc::emu::Fail;
  if (!Valid(lightHandle)) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (returnAlgoCount == nullptr || heuristicResultsArray == nullptr || requestedAlgoCount < 1) {
    return Fail(CUBLAS_STATUS_INVALID_VALUE, kFn,
                "null results, null count or requestedAlgoCount < 1");
  }
  *returnAlgoCount = 0;
  if (!Valid(operationDesc) || !Valid(Adesc) || !Valid(Bdesc) || !Valid(Cdesc) ||
      !Valid(Ddesc) || !Valid(preference)) {
    return Fail(CUBLAS_STATUS_INVALID_VALUE, kFn, "a null or destroyed descriptor");
  }
  ptc::emu::MatmulDesc& desc = *Get(operationDesc);
  const ptc::emu::Preference& pref = *Get(preference);
  ptc::emu::Problem p;
  const ptc::emu::Status s =
      ptc::emu::Resolve(desc, *Get(Adesc), *Get(Bdesc), *Get(Cdesc), *Get(Ddesc), &p);
  if (!s.ok()) return Fail(s.status, kFn, s.why);
  // The descriptor remembers the least alignment it was ever tuned for (cublasLtMatmul without
  // an algo); the algo carries its own.
  for (int i = 0; i < 4; ++i) {
    desc.align[i] = desc.tuned ? std::min(desc.align[i], pref.align[i]) : pref.align[i];
  }
  desc.tuned = true;
  AlgoData algo{};
  algo.magic = ptc::emu::kAlgoMagic;
  algo.fingerprint = p.Fingerprint();
  for (int i = 0; i < 4; ++i) algo.align[i] = pref.align[i];
  // cuBLASLt derives the bias alignment it may assume from the bias pointer set at this call
  // (none when it is null).
  const uintptr_t bias = reinterpret_cast<uintptr_t>(desc.bias);
  algo.bias_align = bias == 0 ? 1 : std::min<uintptr_t>(bias & (~bias + 1), 256);
  const int count = std::min(requestedAlgoCount, ptc::emu::kAlgoVariants);
  for (int i = 0; i < count; ++i) {
    algo.splits = static_cast<uint64_t>(i + 1);
    cublasLtMatmulHeuristicResult_t& r = heuristicResultsArray[i];
    std::memset(&r, 0, sizeof(r));
    std::memcpy(&r.algo, &algo, sizeof(algo));
    r.workspaceSize = 0;
    r.state = CUBLAS_STATUS_SUCCESS;
    r.wavesCount = 1.0f;
  }
  *returnAlgoCount = count;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t CUBLASWINAPI cublasLtMatmul(cublasLtHandle_t lightHandle,
                                           cublasLtMatmulDesc_t computeDesc, const void* alpha,
                                           const void* A, cublasLtMatrixLayout_t Adesc,
                                           const void* B, cublasLtMatrixLayout_t Bdesc,
                                           const void* beta, const void* C,
                                           cublasLtMatrixLayout_t Cdesc, void* D,
                                           cublasLtMatrixLayout_t Ddesc,
                                           const cublasLtMatmulAlgo_t* algo, void* workspace,
                                           size_t workspaceSizeInBytes, cudaStream_t stream) {
  constexpr const char* kFn = "cublasLtMatmul";
  using ptc::emu::CheckAlign;
  using ptc::emu::Fail;
  using ptc::emu::Status;
  (void)workspace;  // the emulation needs none (the heuristic says 0 bytes)
  (void)workspaceSizeInBytes;
  if (!Valid(lightHandle)) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (!Valid(computeDesc) || !Valid(Adesc) || !Valid(Bdesc) || !Valid(Cdesc) || !Valid(Ddesc)) {
    return Fail(CUBLAS_STATUS_INVALID_VALUE, kFn, "a null or destroyed descriptor");
  }
  const ptc::emu::MatmulDesc& desc = *Get(computeDesc);
  ptc::emu::Problem p;
  const Status s = ptc::emu::Resolve(desc, *Get(Adesc), *Get(Bdesc), *Get(Cdesc), *Get(Ddesc), &p);
  if (!s.ok()) return Fail(s.status, kFn, s.why);
  if (alpha == nullptr || beta == nullptr) return Fail(CUBLAS_STATUS_INVALID_VALUE, kFn, "null alpha or beta");
  // Host scalars: read now, as cuBLASLt does (a graph replays the values of the capture).
  double alpha_d, beta_d;
  float alpha_f = 0, beta_f = 0;
  if (p.f64) {
    std::memcpy(&alpha_d, alpha, sizeof(double));
    std::memcpy(&beta_d, beta, sizeof(double));
  } else {
    std::memcpy(&alpha_f, alpha, sizeof(float));
    std::memcpy(&beta_f, beta, sizeof(float));
    alpha_d = alpha_f;
    beta_d = beta_f;
  }
  const bool read_c = beta_d != 0;
  void* bias = const_cast<void*>(desc.bias);
  const bool bias_read = p.epi.bias, bias_written = p.epi.bgrad_a || p.epi.bgrad_b;
  const bool empty = p.m == 0 || p.n == 0;
  // Fidelity checks.
  auto fail = [&](const Status& st) { return Fail(st.status, kFn, st.why); };
  if (!empty) {
    if (D == nullptr) return fail(ptc::emu::Invalid("D is null"));
    if (p.k > 0 && (A == nullptr || B == nullptr)) return fail(ptc::emu::Invalid("A or B is null"));
    if (read_c && C == nullptr) {
      return fail(ptc::emu::Invalid("C is null but beta is " + std::to_string(beta_d)));
    }
    if ((bias_read || bias_written) && bias == nullptr) {
      return fail(ptc::emu::Invalid("the epilogue needs CUBLASLT_MATMUL_DESC_BIAS_POINTER, "
                                    "which is null"));
    }
    if ((p.epi.gelu_aux || p.epi.dgelu) && desc.aux == nullptr) {
      return fail(ptc::emu::Invalid("the epilogue needs CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, "
                                    "which is null"));
    }
  }
  void* aux = (p.epi.gelu_aux || p.epi.dgelu) ? const_cast<void*>(desc.aux) : nullptr;
  const char* kElem = "the size of its elements";
  for (const Status& st :
       {CheckAlign("A", A, static_cast<uint32_t>(ptc::emu::TypeSize(p.a_type)), kElem),
        CheckAlign("B", B, static_cast<uint32_t>(ptc::emu::TypeSize(p.b_type)), kElem),
        CheckAlign("C", read_c ? C : nullptr, static_cast<uint32_t>(ptc::emu::TypeSize(p.c_type)),
                   kElem),
        CheckAlign("D", D, static_cast<uint32_t>(ptc::emu::TypeSize(p.d_type)), kElem),
        CheckAlign("the bias", bias_read || bias_written ? bias : nullptr,
                   static_cast<uint32_t>(ptc::emu::TypeSize(p.bias_type)), kElem),
        // (16 bytes: vector accesses to the aux rows, as to D's, whose leading dimension is a
        // multiple of 8 elements.)
        CheckAlign("the GELU aux matrix", aux, 16, "16 bytes")}) {
    if (!st.ok()) return fail(st);
  }
  // The alignments the algorithm was chosen for.
  uint32_t algo_align[4];
  const uint32_t* align = nullptr;
  uint64_t bias_align = 1;
  int64_t splits = 1;  // no algo: the heuristic's first
  const char* told = "the alignment the heuristic was told (CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_*)";
  if (algo != nullptr) {
    AlgoData ad;
    std::memcpy(&ad, algo, sizeof(ad));
    if (ad.magic != ptc::emu::kAlgoMagic) {
      return fail(ptc::emu::Invalid("the algo was not returned by cublasLtMatmulAlgoGetHeuristic"));
    }
    if (ad.fingerprint != p.Fingerprint()) {
      return fail(ptc::emu::Invalid("the algo was chosen for another configuration (types, "
                                    "transposes or epilogue changed since the heuristic)"));
    }
    std::memcpy(algo_align, ad.align, sizeof(algo_align));
    align = algo_align;
    bias_align = ad.bias_align;
    splits = static_cast<int64_t>(ad.splits);
  } else if (desc.tuned) {
    align = desc.align;
  }
  if (align != nullptr) {
    for (const Status& st : {CheckAlign("A", A, align[0], told), CheckAlign("B", B, align[1], told),
                             CheckAlign("C", read_c ? C : nullptr, align[2], told),
                             CheckAlign("D", D, align[3], told)}) {
      if (!st.ok()) return fail(st);
    }
  }
  if (bias_read || bias_written) {
    const Status st = CheckAlign("the bias", bias, static_cast<uint32_t>(bias_align),
                                 "the alignment of the bias pointer set when the heuristic ran");
    if (!st.ok()) return fail(st);
  }
  // Overlaps that make a GPU's result depend on the order of its blocks.
  if (!empty) {
    using ptc::emu::Span;
    std::vector<Span> d_spans, a_spans, b_spans, c_spans, bias_spans;
    ptc::emu::AddSpans(D, p.d, &d_spans);
    if (p.batch > 1 && p.d.stride == 0) {
      return fail(ptc::emu::Invalid("D's batches overlap (STRIDED_BATCH_OFFSET 0)"));
    }
    ptc::emu::SortSpans(&d_spans);
    if (ptc::emu::SelfOverlap(d_spans)) {
      return fail(ptc::emu::Invalid("D's batches overlap (STRIDED_BATCH_OFFSET " +
                                    std::to_string(p.d.stride) + ")"));
    }
    ptc::emu::AddSpans(A, p.a, &a_spans);
    ptc::emu::AddSpans(B, p.b, &b_spans);
    ptc::emu::SortSpans(&a_spans);
    ptc::emu::SortSpans(&b_spans);
    if (ptc::emu::Overlap(a_spans, d_spans)) return fail(ptc::emu::Invalid("D overlaps A"));
    if (ptc::emu::Overlap(b_spans, d_spans)) return fail(ptc::emu::Invalid("D overlaps B"));
    if (read_c && C != D) {
      ptc::emu::AddSpans(C, p.c, &c_spans);
      ptc::emu::SortSpans(&c_spans);
      if (ptc::emu::Overlap(c_spans, d_spans)) {
        return fail(ptc::emu::Invalid("C overlaps D without being D (in place needs C == D)"));
      }
    }
    if (read_c && C == D && (p.c.ld != p.d.ld || p.c.stride != p.d.stride)) {
      return fail(ptc::emu::Invalid("C is D (in place) but their layouts differ"));
    }
    if (bias_read || bias_written) {
      const int64_t len = p.epi.bgrad_b ? p.n : p.m;
      const int64_t e = static_cast<int64_t>(ptc::emu::TypeSize(p.bias_type));
      const int64_t batches = bias_read && p.bias_stride != 0 ? p.batch : 1;
      for (int64_t bi = 0; bi < batches; ++bi) {
        const uintptr_t b0 = reinterpret_cast<uintptr_t>(bias) +
                             static_cast<uintptr_t>(bi * p.bias_stride * e);
        bias_spans.push_back({b0, b0 + static_cast<uintptr_t>(len * e)});
      }
      ptc::emu::SortSpans(&bias_spans);
      if (ptc::emu::Overlap(bias_spans, d_spans)) {
        return fail(ptc::emu::Invalid("the bias overlaps D"));
      }
      if (bias_written && (ptc::emu::Overlap(bias_spans, a_spans) ||
                           ptc::emu::Overlap(bias_spans, b_spans) ||
                           (read_c && C != D && ptc::emu::Overlap(bias_spans, c_spans)))) {
        return fail(ptc::emu::Invalid("the bias gradient overlaps A, B or C"));
      }
    }
  }
  if (!empty && aux != nullptr) {
    // The aux matrix (D's layout with its own leading dimension) must not overlap what the
    // matmul writes (D; the aux itself when written) or reads while writing it.
    using ptc::emu::Span;
    ptc::emu::Layout al = p.d;
    al.ld = p.aux_ld;
    std::vector<Span> aux_spans, d_spans, a_spans, b_spans, c_spans;
    ptc::emu::AddSpans(aux, al, &aux_spans);
    ptc::emu::AddSpans(D, p.d, &d_spans);
    ptc::emu::AddSpans(A, p.a, &a_spans);
    ptc::emu::AddSpans(B, p.b, &b_spans);
    if (read_c) ptc::emu::AddSpans(C, p.c, &c_spans);
    for (auto* v : {&aux_spans, &d_spans, &a_spans, &b_spans, &c_spans}) ptc::emu::SortSpans(v);
    if (ptc::emu::Overlap(aux_spans, d_spans)) {
      return fail(ptc::emu::Invalid("the GELU aux matrix overlaps D"));
    }
    if (p.epi.gelu_aux && (ptc::emu::Overlap(aux_spans, a_spans) ||
                           ptc::emu::Overlap(aux_spans, b_spans) ||
                           ptc::emu::Overlap(aux_spans, c_spans))) {
      return fail(ptc::emu::Invalid("the GELU aux output overlaps A, B or C"));
    }
  }
  if (empty) return CUBLAS_STATUS_SUCCESS;
  const char* a = static_cast<const char*>(A);
  const char* b = static_cast<const char*>(B);
  const char* c = read_c ? static_cast<const char*>(C) : nullptr;
  char* d = static_cast<char*>(D);
  char* bias_c = static_cast<char*>(bias);
  char* aux_c = static_cast<char*>(aux);
  const cudaError_t e = ptc::emu::Enqueue(stream, [=] {
    if (p.f64) {
      ptc::emu::Compute<double>(p, splits, alpha_d, beta_d, a, b, c, d, bias_c, aux_c);
    } else {
      ptc::emu::Compute<float>(p, splits, alpha_f, beta_f, a, b, c, d, bias_c, aux_c);
    }
  });
  return e == cudaSuccess ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_EXECUTION_FAILED;
}

}  // extern "C"
