// See nvrtc_codegen.h.
#include "codegen/cuda/nvrtc_codegen.h"

#include <dlfcn.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "compiler/ir/dropout.h"
#include "compiler/ir/ops_fused.h"
#include "compiler/ir/strides.h"
#include "compiler/support/hash.h"
#include "compiler/support/status.h"

namespace ptc::cuda::codegen {
namespace {

absl::Status Invalid(const ir::Node& node, std::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(node.Describe(), ": ", std::string(what)));
}

// ------------------------------------------------------------------------------ source text



// Literal of compute type `f32` (float) or double that reads back as exactly `v`.
std::string Literal(double v, bool f32) {
  if (f32) {
    const float f = static_cast<float>(v);
    if (std::isnan(f)) return "__int_as_float(0x7fc00000)";
    if (std::isinf(f)) return f > 0 ? "__int_as_float(0x7f800000)" : "__int_as_float(0xff800000)";
    std::string s = absl::StrFormat("%.9g", f);
    if (s.find_first_of(".e") == std::string::npos) s += ".0";
    return s + "f";
  }
  if (std::isnan(v)) return "__longlong_as_double(0x7ff8000000000000ll)";
  if (std::isinf(v)) {
    return v > 0 ? "__longlong_as_double(0x7ff0000000000000ll)"
                 : "__longlong_as_double(0xfff0000000000000ll)";
  }
  std::string s = absl::StrFormat("%.17g", v);
  if (s.find_first_of(".e") == std::string::npos) s += ".0";
  return s;
}

// The token's expression over identifiers a (and b), in compute type float (f32 = true) or
// double. Mirrors ApplyUnary / ApplyBinary of codegen/cuda/elementwise.cu and the CPU kernel
// (codegen/cpu/fused_elementwise.cc); relu / max / min propagate NaN as the CPU kernel does.
std::string Expr(const std::string& op, const std::string& a, const std::string& b, bool f32) {
  const std::string fs = f32 ? "f" : "";  // function suffix
  const std::string ls = f32 ? "f" : "";  // literal suffix
  const std::string one = "1.0" + ls, half = "0.5" + ls, zero = "0.0" + ls;
  if (op == "neg") return "-" + a;
  if (op == "abs") return absl::StrCat("fabs", fs, "(", a, ")");
  if (op == "sqrt") return absl::StrCat("sqrt", fs, "(", a, ")");
  if (op == "reciprocal") return absl::StrCat(one, " / ", a);
  if (op == "exp") return absl::StrCat("exp", fs, "(", a, ")");
  if (op == "log") return absl::StrCat("log", fs, "(", a, ")");
  if (op == "erf") return absl::StrCat("erf", fs, "(", a, ")");
  if (op == "tanh") return absl::StrCat("tanh", fs, "(", a, ")");
  if (op == "sigmoid") return absl::StrCat(one, " / (", one, " + exp", fs, "(-", a, "))");
  if (op == "relu") {
    return absl::StrCat("(", a, " > ", zero, " || ", a, " != ", a, ") ? ", a, " : ", zero);
  }
  if (op == "floor") return absl::StrCat("floor", fs, "(", a, ")");
  if (op == "ceil") return absl::StrCat("ceil", fs, "(", a, ")");
  if (op == "cos") return absl::StrCat("cos", fs, "(", a, ")");
  if (op == "sin") return absl::StrCat("sin", fs, "(", a, ")");
  if (op == "identity") return a;
  if (op == "gelu") {
    return absl::StrCat(half, " * ", a, " * (", one, " + erf", fs, "(", a,
                        " * 0.70710678118654752440", ls, "))");
  }
  if (op == "gelu_tanh") {
    return absl::StrCat(half, " * ", a, " * (", one, " + tanh", fs, "(0.79788456080286535588", ls,
                        " * (", a, " + 0.044715", ls, " * ", a, " * ", a, " * ", a, ")))");
  }
  if (op == "add") return absl::StrCat(a, " + ", b);
  if (op == "sub") return absl::StrCat(a, " - ", b);
  if (op == "mul") return absl::StrCat(a, " * ", b);
  if (op == "div") return absl::StrCat(a, " / ", b);
  if (op == "pow") return absl::StrCat("pow", fs, "(", a, ", ", b, ")");
  if (op == "max") return absl::StrCat("(", a, " > ", b, " || ", a, " != ", a, ") ? ", a, " : ", b);
  if (op == "min") return absl::StrCat("(", a, " < ", b, " || ", a, " != ", a, ") ? ", a, " : ", b);
  return a;  // unreachable: tokens are validated first
}

constexpr char kNamePlaceholder[] = "@KERNEL@";

}  // namespace

absl::StatusOr<FusedSource> GenerateFusedElementwise(const ir::Node& node) {
  if (node.op() != "fused_elementwise" || node.num_outputs() != 1) {
    return Invalid(node, "not a fused_elementwise node with one output");
  }
  const ir::TensorType& out_type = node.output()->type();
  const ir::DType dt = out_type.dtype;
  if (dt != ir::DType::kF32 && dt != ir::DType::kF16 && dt != ir::DType::kBF16 &&
      dt != ir::DType::kF64) {
    return Invalid(node, absl::StrCat("generated kernels support f32, f16, bf16 and f64, not ",
                                      out_type.ToString()));
  }
  const int64_t n = out_type.num_elements();
  if (n <= 0) return Invalid(node, "an empty output needs no kernel");
  PTC_ASSIGN_OR_RETURN(std::vector<int64_t> attr_shape, node.GetInts("shape"));
  if (attr_shape != out_type.shape) {
    return Invalid(node, "output type must be the 'shape' attribute");
  }
  const auto* program = node.has_attr("program")
                            ? std::get_if<std::vector<std::string>>(&node.attrs().at("program"))
                            : nullptr;
  if (program == nullptr || program->empty()) return Invalid(node, "missing attribute 'program'");
  // Tokens, validated (a node from an untrusted plan must not make invalid source).
  PTC_ASSIGN_OR_RETURN(ir::FusedProgram parsed, ir::ParseFusedProgram(node));
  const std::vector<ir::FusedToken>& tokens = parsed.tokens;
  const std::vector<double>& constants = parsed.constants;

  // Operand strides over the output dims, merged.
  const ir::Shape& out_shape = out_type.shape;
  const size_t r0 = out_shape.size();
  std::vector<std::vector<int64_t>> strides(node.num_inputs());
  for (size_t i = 0; i < node.num_inputs(); ++i) {
    const ir::TensorType& t = node.input(i)->type();
    strides[i].assign(r0, 0);
    if (parsed.counter[i]) continue;  // a dropout counter: read once, not per element
    // Operands of their own dtype (fused_elementwise's `dtype`): f16 / bf16 / f32 read into
    // f32; f64 only with f64.
    if (t.dtype != dt && ((t.dtype == ir::DType::kF64) != (dt == ir::DType::kF64) ||
                          (t.dtype != ir::DType::kF32 && t.dtype != ir::DType::kF16 &&
                           t.dtype != ir::DType::kBF16 && t.dtype != ir::DType::kF64))) {
      return Invalid(node, absl::StrCat("operand ", i, " ", t.ToString(),
                                        " cannot be read for a ", out_type.ToString(), " result"));
    }
    if (t.shape.size() > r0) return Invalid(node, "operand has more dims than the output");
    const size_t off = r0 - t.shape.size();
    for (size_t d = 0; d < t.shape.size(); ++d) {
      if (t.shape[d] != 1 && t.shape[d] != out_shape[off + d]) {
        return Invalid(node, absl::StrCat("operand ", i, " ", t.ToString(),
                                          " does not broadcast to ", ir::ShapeToString(out_shape)));
      }
    }
    strides[i] = ir::BroadcastStrides(t.shape, out_shape);
  }
  ir::Shape shape = out_shape;
  std::vector<std::vector<int64_t>*> stride_lists;
  for (auto& st : strides) stride_lists.push_back(&st);
  ir::MergeDims(shape, stride_lists);  // the output is contiguous: its strides always merge
  const int rank = static_cast<int>(shape.size());
  std::vector<int64_t> contiguous(rank, 1);
  for (int d = rank - 2; d >= 0; --d) contiguous[d] = contiguous[d + 1] * shape[d + 1];

  const bool idx32 = n < (int64_t{1} << 31);
  const std::string it = idx32 ? "unsigned" : "long long";
  auto lit = [&](int64_t v) { return absl::StrCat(v, idx32 ? "u" : "ll"); };
  const bool f32 = dt != ir::DType::kF64;
  const std::string ct = f32 ? "float" : "double";
  auto storage = [](ir::DType d) -> std::string {
    if (d == ir::DType::kI64) return "long long";  // dropout counters
    if (d == ir::DType::kI32) return "int";
    return d == ir::DType::kF32 ? "float" : d == ir::DType::kF64 ? "double" : "unsigned short";
  };
  const std::string st = storage(dt);
  // Operand i's element at `ptr`, widened to the compute type.
  auto load = [&](size_t i, const std::string& ptr) {
    const ir::DType d = node.input(i)->type().dtype;
    const std::string raw = absl::StrCat("__ldg(", ptr, ")");
    if (d == ir::DType::kF16) return absl::StrCat("ptc_h2f(", raw, ")");
    if (d == ir::DType::kBF16) return absl::StrCat("ptc_bf2f(", raw, ")");
    return raw;
  };
  bool any_f16 = dt == ir::DType::kF16, any_bf16 = dt == ir::DType::kBF16;
  for (size_t i = 0; i < node.num_inputs(); ++i) {
    any_f16 |= node.input(i)->type().dtype == ir::DType::kF16;
    any_bf16 |= node.input(i)->type().dtype == ir::DType::kBF16;
  }

  std::vector<bool> used_operand(node.num_inputs(), false), used_constant(constants.size(), false);
  for (const ir::FusedToken& t : tokens) {
    if (t.kind == ir::FusedToken::kOperand) used_operand[t.index] = true;
    if (t.kind == ir::FusedToken::kConstant) used_constant[t.index] = true;
  }
  enum class Mode { kFull, kScalar, kSuffix, kGeneral };
  std::vector<Mode> modes(node.num_inputs(), Mode::kFull);
  std::vector<int64_t> suffix_n(node.num_inputs(), 0);
  bool need_coords = false;
  for (size_t i = 0; i < node.num_inputs(); ++i) {
    const std::vector<int64_t>& s = strides[i];
    if (std::all_of(s.begin(), s.end(), [](int64_t v) { return v == 0; })) {
      modes[i] = Mode::kScalar;
      continue;
    }
    int first = 0;
    while (first < rank && s[first] == 0) ++first;
    bool contiguous_tail = true;
    for (int d = first; d < rank; ++d) contiguous_tail &= s[d] == contiguous[d];
    if (contiguous_tail && first == 0) {
      modes[i] = Mode::kFull;
    } else if (contiguous_tail) {
      modes[i] = Mode::kSuffix;
      suffix_n[i] = contiguous[first - 1];
    } else {
      modes[i] = Mode::kGeneral;
      need_coords |= used_operand[i];
    }
  }

  // The vector loop (vector > 1): each thread takes `vector` consecutive elements, starting at
  // a multiple of `vector`, read / written with one 4- to 16-byte access per operand (at most
  // 16 bytes of the widest dtype). It needs the innermost merged dim to be a multiple of the
  // vector (so a vector shares its outer coordinates: an operand broadcast along the innermost
  // dim is one load, any other is `vector` consecutive elements, its outer strides multiples of
  // the vector) and every pointer aligned to its access (checked at run time: a view at an
  // odd offset takes the element loop).
  int vector = 1;
  {
    size_t widest = ir::DTypeSize(dt);
    int loaded = 0;
    for (size_t i = 0; i < node.num_inputs(); ++i) {
      if (!used_operand[i] || modes[i] == Mode::kScalar) continue;
      widest = std::max(widest, ir::DTypeSize(node.input(i)->type().dtype));
      ++loaded;
    }
    vector = rank == 0 ? 1 : static_cast<int>(16 / widest);  // rank 0: one element
    auto fits = [&](int v) {
      if (shape[rank - 1] % v != 0) return false;
      if (v * (loaded + 1) > 64) return false;  // values held at once: keep the registers
      for (size_t i = 0; i < node.num_inputs(); ++i) {
        if (!used_operand[i] || modes[i] == Mode::kScalar) continue;
        if (strides[i][rank - 1] == 0) continue;  // one load per vector
        if (strides[i][rank - 1] != 1) return false;
        for (int d = 0; d + 1 < rank; ++d) {
          if (strides[i][d] % v != 0) return false;
        }
      }
      return true;
    };
    while (vector > 1 && !fits(vector)) vector /= 2;
  }
  // Operand i's vector path: one value per vector (broadcast along the innermost dim) or one
  // per element.
  auto inner_broadcast = [&](size_t i) { return rank > 0 && strides[i][rank - 1] == 0; };
  auto words_of = [&](ir::DType d) { return static_cast<int>(vector * ir::DTypeSize(d) / 4); };

  // Header comment: what the kernel computes (part of the hashed text, so no node names).
  std::string src;
  std::vector<std::string> operand_types;
  for (size_t i = 0; i < node.num_inputs(); ++i) {
    operand_types.push_back(node.input(i)->type().ToString());
  }
  absl::StrAppend(&src, "// ptc fused_elementwise -> ", out_type.ToString(), "\n// program: ",
                  absl::StrJoin(*program, " "), "\n");
  if (!constants.empty()) {
    std::vector<std::string> cs;
    for (double c : constants) cs.push_back(Literal(c, /*f32=*/false));
    absl::StrAppend(&src, "// constants: ", absl::StrJoin(cs, ", "), "\n");
  }
  absl::StrAppend(&src, "// operands: ", absl::StrJoin(operand_types, ", "), "\n");
  absl::StrAppend(&src, "// merged dims: ", ir::ShapeToString(shape), ", ", idx32 ? 32 : 64,
                  "-bit indexing");
  if (vector > 1) absl::StrAppend(&src, ", ", vector, " elements per thread");
  absl::StrAppend(&src, "\n");
  if (vector > 1) {
    // Aligned words: one vector access of 4, 8 or 16 bytes.
    std::set<int> words = {words_of(dt)};
    for (size_t i = 0; i < node.num_inputs(); ++i) {
      if (used_operand[i] && modes[i] != Mode::kScalar && !inner_broadcast(i)) {
        words.insert(words_of(node.input(i)->type().dtype));
      }
    }
    for (int w : words) {
      absl::StrAppend(&src, "struct alignas(", 4 * w, ") ptc_w", w, " { unsigned w[", w, "]; };\n");
    }
  }
  if (any_f16) {
    absl::StrAppend(&src,
                    "__device__ __forceinline__ float ptc_h2f(unsigned short h) {\n"
                    "  float f;\n"
                    "  asm(\"cvt.f32.f16 %0, %1;\" : \"=f\"(f) : \"h\"(h));\n"
                    "  return f;\n"
                    "}\n"
                    "__device__ __forceinline__ unsigned short ptc_f2h(float f) {\n"
                    "  unsigned short h;\n"
                    "  asm(\"cvt.rn.f16.f32 %0, %1;\" : \"=h\"(h) : \"f\"(f));\n"
                    "  return h;\n"
                    "}\n");
  }
  if (any_bf16) {
    // Round to nearest even (as __float2bfloat16_rn); NaN stays a quiet NaN.
    absl::StrAppend(&src,
                    "__device__ __forceinline__ float ptc_bf2f(unsigned short h) {\n"
                    "  return __uint_as_float(static_cast<unsigned>(h) << 16);\n"
                    "}\n"
                    "__device__ __forceinline__ unsigned short ptc_f2bf(float f) {\n"
                    "  unsigned u = __float_as_uint(f);\n"
                    "  if ((u & 0x7fffffffu) > 0x7f800000u) "
                    "return static_cast<unsigned short>((u >> 16) | 0x40u);\n"
                    "  u += 0x7fffu + ((u >> 16) & 1u);\n"
                    "  return static_cast<unsigned short>(u >> 16);\n"
                    "}\n");
  }
  if (!parsed.dropouts.empty()) {
    // compiler/ir/dropout.h's mask, spelled out for NVRTC (HostCompiledSourceMatchesCpu checks
    // it against the CPU kernel's): splitmix64's finalizer, the key of (seed, counter), and
    // keep(i) = threshold == 0 || field(i) of mix(key + group(i)) >= threshold.
    absl::StrAppend(&src,
                    "__device__ __forceinline__ unsigned long long ptc_mix(unsigned long long z) {\n"
                    "  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;\n"
                    "  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;\n"
                    "  return z ^ (z >> 31);\n"
                    "}\n"
                    "__device__ __forceinline__ unsigned long long ptc_dropout_key(\n"
                    "    unsigned long long seed, long long counter) {\n"
                    "  return ptc_mix(seed ^ ptc_mix(static_cast<unsigned long long>(counter) +\n"
                    "                                0x9e3779b97f4a7c15ull));\n"
                    "}\n"
                    "__device__ __forceinline__ bool ptc_keep(unsigned long long key,\n"
                    "    unsigned long long i, unsigned threshold) {\n"
                    "  if (threshold == 0u) return true;\n"
                    "  const unsigned long long h = ptc_mix(key + (((i >> 4) << 2) | ((i >> 1) & 3ull)));\n"
                    "  const unsigned field = static_cast<unsigned>(((i & 1ull) << 1) | ((i >> 3) & 1ull));\n"
                    "  return static_cast<unsigned>((h >> (16u * field)) & 0xffffull) >= threshold;\n"
                    "}\n");
  }
  absl::StrAppend(&src, "extern \"C\" __global__ void __launch_bounds__(", kGeneratedThreads,
                  ")\n", kNamePlaceholder, "(");
  for (size_t i = 0; i < node.num_inputs(); ++i) {
    absl::StrAppend(&src, "const ", storage(node.input(i)->type().dtype), "* __restrict__ x", i,
                    ", ");
  }
  absl::StrAppend(&src, st, "* __restrict__ out");
  for (size_t k = 0; k < parsed.dropouts.size(); ++k) {
    absl::StrAppend(&src, ", unsigned long long seed", k);
  }
  absl::StrAppend(&src, ") {\n");
  for (size_t c = 0; c < constants.size(); ++c) {
    if (used_constant[c]) {
      absl::StrAppend(&src, "  const ", ct, " k", c, " = ", Literal(constants[c], f32), ";\n");
    }
  }
  for (size_t k = 0; k < parsed.dropouts.size(); ++k) {
    const ir::FusedDropout& d = parsed.dropouts[k];
    const std::string counter =
        d.counter < 0 ? "0ll" : absl::StrCat("static_cast<long long>(__ldg(x", d.counter, "))");
    absl::StrAppend(&src, "  const unsigned long long key", k, " = ptc_dropout_key(seed", k,
                    ", ", counter, ");\n");
  }
  for (size_t i = 0; i < node.num_inputs(); ++i) {
    if (used_operand[i] && modes[i] == Mode::kScalar) {
      absl::StrAppend(&src, "  const ", ct, " a", i, " = ", load(i, absl::StrCat("x", i)), ";\n");
    }
  }
  const std::string first_index =
      idx32 ? absl::StrCat("blockIdx.x * ", kGeneratedThreads, "u + threadIdx.x")
            : absl::StrCat("static_cast<long long>(blockIdx.x) * ", kGeneratedThreads,
                           " + threadIdx.x");
  const std::string grid_stride =
      idx32 ? absl::StrCat("gridDim.x * ", kGeneratedThreads, "u")
            : absl::StrCat("static_cast<long long>(gridDim.x) * ", kGeneratedThreads);
  // Coordinates of element i over the merged dims, innermost first (constant divisors).
  auto coords = [&](std::string* out) {
    absl::StrAppend(out, "    ", it, " r = i;\n");
    for (int d = rank - 1; d >= 1; --d) {
      absl::StrAppend(out, "    const ", it, " c", d, " = r % ", lit(shape[d]), ";\n");
      absl::StrAppend(out, "    r /= ", lit(shape[d]), ";\n");
    }
    absl::StrAppend(out, "    const ", it, " c0 = r;\n");
  };
  // Operand i's offset at element i (the coordinates declared where general).
  auto offset_of = [&](size_t i) -> std::string {
    switch (modes[i]) {
      case Mode::kFull: return "i";
      case Mode::kSuffix: return absl::StrCat("i % ", lit(suffix_n[i]));
      default: {
        std::vector<std::string> terms;
        for (int d = 0; d < rank; ++d) {
          if (strides[i][d] == 0) continue;
          terms.push_back(strides[i][d] == 1 ? absl::StrCat("c", d)
                                             : absl::StrCat("c", d, " * ", lit(strides[i][d])));
        }
        return terms.empty() ? std::string("0") : absl::StrJoin(terms, " + ");
      }
    }
  };
  // The program as straight-line code: `operand(i)` names operand i's value, `keep(k)` the
  // condition of dropout k; temporaries t<n><suffix>. Returns the result's name.
  auto emit_program = [&](std::string* out, const std::string& suffix,
                          const std::function<std::string(int)>& operand,
                          const std::function<std::string(int)>& keep) {
    std::vector<std::string> stack;
    int temps = 0;
    for (const ir::FusedToken& t : tokens) {
      if (t.kind == ir::FusedToken::kOperand) {
        stack.push_back(operand(t.index));
      } else if (t.kind == ir::FusedToken::kConstant) {
        stack.push_back(absl::StrCat("k", t.index));
      } else if (t.kind == ir::FusedToken::kDropout) {
        const ir::FusedDropout& d = parsed.dropouts[t.index];
        const std::string a = stack.back(), v = absl::StrCat("t", temps++, suffix);
        stack.pop_back();
        absl::StrAppend(out, "    const ", ct, " ", v, " = ", keep(t.index), " ? ", a, " * ",
                        Literal(ir::DropoutScale(d.ratio), f32), " : ", Literal(0.0, f32),
                        ";\n");
        stack.push_back(v);
      } else {
        std::string b;
        if (t.arity == 2) {
          b = stack.back();
          stack.pop_back();
        }
        const std::string a = stack.back();
        stack.pop_back();
        const std::string v = absl::StrCat("t", temps++, suffix);
        absl::StrAppend(out, "    const ", ct, " ", v, " = ", Expr(t.op, a, b, f32), ";\n");
        stack.push_back(v);
      }
    }
    return stack.back();
  };
  auto store_conversion = [&](const std::string& v) {
    return dt == ir::DType::kF16    ? absl::StrCat("ptc_f2h(", v, ")")
           : dt == ir::DType::kBF16 ? absl::StrCat("ptc_f2bf(", v, ")")
                                    : v;
  };

  if (vector > 1) {
    std::vector<std::string> checks;
    for (size_t i = 0; i < node.num_inputs(); ++i) {
      if (!used_operand[i] || modes[i] == Mode::kScalar || inner_broadcast(i)) continue;
      checks.push_back(absl::StrCat("(reinterpret_cast<unsigned long long>(x", i, ") & ",
                                    words_of(node.input(i)->type().dtype) * 4 - 1, "ull)"));
    }
    checks.push_back(absl::StrCat("(reinterpret_cast<unsigned long long>(out) & ",
                                  words_of(dt) * 4 - 1, "ull)"));
    absl::StrAppend(&src, "  if ((", absl::StrJoin(checks, " |\n       "), ") == 0ull) {\n");
    absl::StrAppend(&src, "    for (", it, " v = ", first_index, "; v < ", lit(n / vector),
                    "; v += ", grid_stride, ") {\n");
    std::string body;
    absl::StrAppend(&body, "    const ", it, " i = v * ", lit(vector), ";\n");
    bool vec_coords = false;
    for (size_t i = 0; i < node.num_inputs(); ++i) {
      vec_coords |= used_operand[i] && modes[i] == Mode::kGeneral;
    }
    if (vec_coords) coords(&body);
    // Element j of a vector of dtype d whose words are w<i>.
    auto element = [&](ir::DType d, const std::string& w, int j) -> std::string {
      switch (d) {
        case ir::DType::kF32: return absl::StrCat("__uint_as_float(", w, ".w[", j, "])");
        case ir::DType::kF64:
          return absl::StrCat("__longlong_as_double(static_cast<long long>((static_cast<unsigned "
                              "long long>(", w, ".w[", 2 * j + 1, "]) << 32) | ", w, ".w[", 2 * j,
                              "]))");
        default: {
          const std::string bits = absl::StrCat("static_cast<unsigned short>(", w, ".w[", j / 2,
                                                "]", j % 2 ? " >> 16" : "", ")");
          return absl::StrCat(d == ir::DType::kF16 ? "ptc_h2f(" : "ptc_bf2f(", bits, ")");
        }
      }
    };
    for (size_t i = 0; i < node.num_inputs(); ++i) {
      if (!used_operand[i] || modes[i] == Mode::kScalar) continue;
      const ir::DType d = node.input(i)->type().dtype;
      if (inner_broadcast(i)) {
        absl::StrAppend(&body, "    const ", ct, " a", i, " = ",
                        load(i, absl::StrCat("x", i, " + ", offset_of(i))), ";\n");
        continue;
      }
      const int w = words_of(d);
      absl::StrAppend(&body, "    const ptc_w", w, " w", i, " = *reinterpret_cast<const ptc_w",
                      w, "*>(x", i, " + ", offset_of(i), ");\n");
      for (int j = 0; j < vector; ++j) {
        absl::StrAppend(&body, "    const ", ct, " a", i, "_", j, " = ",
                        element(d, absl::StrCat("w", i), j), ";\n");
      }
    }
    // Dropout k's hashes: elements 2p and 2p + 1 of the vector share group
    // ((i + 2p) >> 4) * 4 + ((i + 2p) >> 1) % 4, whose 16-bit fields 2 (j & 1) + ((i >> 3) & 1)
    // they read (i is a multiple of the vector, at most 8: a vector lies in one 8-element half
    // of a 16-element block).
    std::vector<uint32_t> thresholds;
    for (size_t k = 0; k < parsed.dropouts.size(); ++k) {
      thresholds.push_back(ir::DropoutThreshold(parsed.dropouts[k].ratio));
      if (thresholds[k] == 0) continue;
      absl::StrAppend(&body, "    const unsigned s", k, " = static_cast<unsigned>((i >> 3) & ",
                      lit(1), ") << 4;\n");
      for (int p = 0; p < vector / 2; ++p) {
        const std::string e =
            p == 0 ? std::string("i") : absl::StrCat("(i + ", lit(2 * p), ")");
        absl::StrAppend(&body, "    const unsigned long long h", k, "_", p, " = ptc_mix(key", k,
                        " + static_cast<unsigned long long>(((", e, " >> 4) << 2) | ((", e,
                        " >> 1) & ", lit(3), ")));\n");
      }
    }
    std::vector<std::string> results;
    for (int j = 0; j < vector; ++j) {
      results.push_back(emit_program(
          &body, absl::StrCat("_", j),
          [&](int i) {
            return modes[i] == Mode::kScalar || inner_broadcast(i) ? absl::StrCat("a", i)
                                                                   : absl::StrCat("a", i, "_", j);
          },
          [&](int k) -> std::string {
            if (thresholds[k] == 0) return "true";
            const std::string shift =
                j % 2 ? absl::StrCat("(s", k, " + 32u)") : absl::StrCat("s", k);
            return absl::StrCat("static_cast<unsigned>((h", k, "_", j / 2, " >> ", shift,
                                ") & 0xffffull) >= ", thresholds[k], "u");
          }));
    }
    const int ow = words_of(dt);
    absl::StrAppend(&body, "    ptc_w", ow, " o;\n");
    for (int j = 0; j < vector; ++j) {
      switch (dt) {
        case ir::DType::kF32:
          absl::StrAppend(&body, "    o.w[", j, "] = __float_as_uint(", results[j], ");\n");
          break;
        case ir::DType::kF64:
          absl::StrAppend(&body, "    o.w[", 2 * j, "] = static_cast<unsigned>(__double_as_longlong(",
                          results[j], "));\n    o.w[", 2 * j + 1,
                          "] = static_cast<unsigned>(static_cast<unsigned long long>("
                          "__double_as_longlong(", results[j], ")) >> 32);\n");
          break;
        default:
          if (j % 2 == 1) {
            absl::StrAppend(&body, "    o.w[", j / 2, "] = static_cast<unsigned>(",
                            store_conversion(results[j - 1]), ") | (static_cast<unsigned>(",
                            store_conversion(results[j]), ") << 16);\n");
          }
      }
    }
    absl::StrAppend(&body, "    *reinterpret_cast<ptc_w", ow, "*>(out + i) = o;\n");
    for (absl::string_view line : absl::StrSplit(body, '\n', absl::SkipEmpty())) {
      absl::StrAppend(&src, "  ", line, "\n");
    }
    absl::StrAppend(&src, "    }\n    return;\n  }\n");
  }

  absl::StrAppend(&src, "  for (", it, " i = ", first_index, "; i < ", lit(n), "; i += ",
                  grid_stride, ") {\n");
  if (need_coords) coords(&src);
  for (size_t i = 0; i < node.num_inputs(); ++i) {
    if (!used_operand[i] || modes[i] == Mode::kScalar) continue;
    absl::StrAppend(&src, "    const ", ct, " a", i, " = ",
                    load(i, absl::StrCat("x", i, " + ", offset_of(i))), ";\n");
  }
  const std::string result = emit_program(
      &src, "", [](int i) { return absl::StrCat("a", i); },
      [&](int k) {
        return absl::StrCat("ptc_keep(key", k, ", static_cast<unsigned long long>(i), ",
                            ir::DropoutThreshold(parsed.dropouts[k].ratio), "u)");
      });
  absl::StrAppend(&src, "    out[i] = ", store_conversion(result), ";\n  }\n}\n");

  FusedSource fs;
  fs.name = absl::StrFormat("ptc_fused_%016x", Fnv1a(src));
  fs.source = absl::StrReplaceAll(src, {{kNamePlaceholder, fs.name}});
  fs.num_operands = static_cast<int>(node.num_inputs());
  fs.elements = n;
  fs.vector = vector;
  for (const ir::FusedDropout& d : parsed.dropouts) fs.seeds.push_back(d.seed);
  return fs;
}

absl::Status ValidateCudaArch(std::string_view arch) {
  bool ok = arch.size() >= 5 && arch.substr(0, 3) == "sm_";
  size_t digits = 0;
  for (size_t i = 3; ok && i < arch.size(); ++i) {
    const char c = arch[i];
    if (c >= '0' && c <= '9' && i == 3 + digits) {
      ++digits;
    } else if (!((c == 'a' || c == 'f') && i == arch.size() - 1 && digits >= 2)) {
      ok = false;
    }
  }
  if (ok && digits >= 2) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "CUDA architecture '", std::string(arch),
      "' must look like sm_90 (sm_ + compute capability digits, optionally a or f)"));
}

// -------------------------------------------------------------------------------------- NVRTC

namespace {

// The few NVRTC entry points ptc uses, with the ABI of nvrtc.h (nvrtcResult is an enum,
// nvrtcProgram a pointer): no header, so the generator builds without the toolkit.
struct Nvrtc {
  NvrtcInfo info;
  const char* (*GetErrorString)(int) = nullptr;
  int (*Version)(int*, int*) = nullptr;
  int (*CreateProgram)(void**, const char*, const char*, int, const char* const*,
                       const char* const*) = nullptr;
  int (*CompileProgram)(void*, int, const char* const*) = nullptr;
  int (*GetProgramLogSize)(void*, size_t*) = nullptr;
  int (*GetProgramLog)(void*, char*) = nullptr;
  int (*GetCUBINSize)(void*, size_t*) = nullptr;
  int (*GetCUBIN)(void*, char*) = nullptr;
  int (*DestroyProgram)(void**) = nullptr;
};

std::vector<std::string> Candidates(const std::string& library) {
  if (!library.empty()) return {library};
  if (const char* env = std::getenv("PTC_NVRTC_LIBRARY"); env != nullptr && *env != '\0') {
    return {env};
  }
  std::vector<std::string> c;
#ifdef PTC_NVRTC_LIBRARY
  c.push_back(PTC_NVRTC_LIBRARY);  // the toolkit found at configure time (full path)
#endif
  for (const char* s : {"libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"}) c.push_back(s);
  return c;
}

const Nvrtc& LoadNvrtc(const std::string& library) {
  static std::mutex mu;
  static auto* loaded = new std::map<std::string, std::unique_ptr<Nvrtc>>;
  std::lock_guard<std::mutex> lock(mu);
  std::unique_ptr<Nvrtc>& slot = (*loaded)[library];
  if (slot) return *slot;
  slot = std::make_unique<Nvrtc>();
  Nvrtc& n = *slot;
  std::vector<std::string> tried;
  void* handle = nullptr;
  for (const std::string& c : Candidates(library)) {
    handle = ::dlopen(c.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle != nullptr) break;
    const char* e = ::dlerror();
    tried.push_back(e != nullptr ? e : c);
  }
  if (handle == nullptr) {
    n.info.why = absl::StrCat("NVRTC not found (", absl::StrJoin(tried, "; "), ")");
    return n;
  }
  bool all = true;
  auto sym = [&](auto& fn, const char* name) {
    fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(::dlsym(handle, name));
    all &= fn != nullptr;
  };
  sym(n.GetErrorString, "nvrtcGetErrorString");
  sym(n.Version, "nvrtcVersion");
  sym(n.CreateProgram, "nvrtcCreateProgram");
  sym(n.CompileProgram, "nvrtcCompileProgram");
  sym(n.GetProgramLogSize, "nvrtcGetProgramLogSize");
  sym(n.GetProgramLog, "nvrtcGetProgramLog");
  sym(n.GetCUBINSize, "nvrtcGetCUBINSize");
  sym(n.GetCUBIN, "nvrtcGetCUBIN");
  sym(n.DestroyProgram, "nvrtcDestroyProgram");
  if (!all) {
    n.info.why = "the NVRTC library lacks nvrtcGetCUBIN or another entry point (NVRTC < 11.1?)";
    return n;
  }
  int major = 0, minor = 0;
  if (n.Version(&major, &minor) != 0) {
    n.info.why = "nvrtcVersion failed";
    return n;
  }
  n.info.available = true;
  n.info.version = absl::StrCat(major, ".", minor);
  return n;
}

// The number right before `suffix` in `log` (ptxas: "Used 12 registers", "0 bytes stack
// frame"), or -1.
int NumberBefore(const std::string& log, std::string_view suffix) {
  const size_t at = log.find(suffix);
  if (at == std::string::npos || at == 0) return -1;
  size_t b = at;
  while (b > 0 && log[b - 1] >= '0' && log[b - 1] <= '9') --b;
  int v = -1;
  if (b == at || !absl::SimpleAtoi(log.substr(b, at - b), &v)) return -1;
  return v;
}

}  // namespace

NvrtcInfo GetNvrtc(const std::string& library) { return LoadNvrtc(library).info; }

absl::StatusOr<CompiledCubin> CompileToCubin(const std::string& name, const std::string& source,
                                             const std::string& arch, const std::string& library) {
  PTC_RETURN_IF_ERROR(ValidateCudaArch(arch));
  const Nvrtc& nv = LoadNvrtc(library);
  if (!nv.info.available) return absl::FailedPreconditionError(nv.info.why);
  const auto t0 = std::chrono::steady_clock::now();
  const std::string& src = source;
  const std::string file = name + ".cu";
  void* prog = nullptr;
  int rc = nv.CreateProgram(&prog, src.c_str(), file.c_str(), 0, nullptr, nullptr);
  if (rc != 0) {
    return absl::InternalError(absl::StrCat("nvrtcCreateProgram: ", nv.GetErrorString(rc)));
  }
  struct Guard {
    const Nvrtc& nv;
    void* p;
    ~Guard() { nv.DestroyProgram(&p); }
  } guard{nv, prog};
  const std::string arch_opt = absl::StrCat("--gpu-architecture=", arch);
  const char* opts[] = {arch_opt.c_str(), "--std=c++17", "--ptxas-options=-v"};
  rc = nv.CompileProgram(prog, 3, opts);
  size_t log_size = 0;
  std::string log;
  if (nv.GetProgramLogSize(prog, &log_size) == 0 && log_size > 1) {
    log.resize(log_size);
    if (nv.GetProgramLog(prog, log.data()) != 0) log.clear();
    while (!log.empty() && (log.back() == '\0' || log.back() == '\n')) log.pop_back();
  }
  if (rc != 0) {
    return absl::InternalError(absl::StrCat("NVRTC (", nv.info.version, ", ", arch, ") rejected ",
                                            name, ": ", nv.GetErrorString(rc), "\n",
                                            log));
  }
  CompiledCubin out;
  size_t bytes = 0;
  if (nv.GetCUBINSize(prog, &bytes) != 0 || bytes == 0) {
    return absl::InternalError(absl::StrCat("NVRTC produced no CUBIN for ", name));
  }
  out.cubin.resize(bytes);
  if (nv.GetCUBIN(prog, out.cubin.data()) != 0) {
    return absl::InternalError(absl::StrCat("nvrtcGetCUBIN failed for ", name));
  }
  out.log = log;
  out.registers = NumberBefore(log, " registers");
  out.stack_bytes = NumberBefore(log, " bytes stack frame");
  const int stores = NumberBefore(log, " bytes spill stores");
  const int loads = NumberBefore(log, " bytes spill loads");
  out.spill_bytes = stores < 0 || loads < 0 ? -1 : stores + loads;
  out.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return out;
}

absl::StatusOr<std::vector<plan::CudaKernel>> GenerateCudaKernels(const ir::Module& module,
                                                                  const GenerateOptions& options,
                                                                  GenerateReport* report) {
  PTC_RETURN_IF_ERROR(ValidateCudaArch(options.arch));
  GenerateReport local;
  GenerateReport& rep = report != nullptr ? *report : local;
  rep = GenerateReport{};
  // Sources first (in function and node order: deterministic), deduplicated by text.
  std::vector<plan::CudaKernel> kernels;
  std::map<std::string, size_t> by_name;
  std::map<std::string, const ir::Node*> first_node;
  for (const auto& fn : module.functions()) {
    for (const auto& node : fn->nodes()) {
      if (node->op() != "fused_elementwise") continue;
      ++rep.nodes;
      if (node->num_outputs() == 1 && node->output()->type().num_elements() == 0) continue;
      PTC_ASSIGN_OR_RETURN(FusedSource src, GenerateFusedElementwise(*node));
      const std::string key = absl::StrCat("@", fn->name(), " %", node->output()->name());
      auto [it, inserted] = by_name.try_emplace(src.name, kernels.size());
      if (inserted) {
        plan::CudaKernel k;
        k.name = src.name;
        k.arch = options.arch;
        k.source = std::move(src.source);
        kernels.push_back(std::move(k));
        first_node[it->first] = node.get();
      } else if (kernels[it->second].source != src.source) {
        return absl::InternalError(absl::StrCat("two generated kernels share the name ",
                                                src.name, " (hash collision)"));
      }
      kernels[it->second].nodes.push_back(key);
    }
  }
  if (kernels.empty()) return kernels;
  const NvrtcInfo nv = GetNvrtc(options.nvrtc_library);
  if (!nv.available) {
    rep.note = nv.why;
    return std::vector<plan::CudaKernel>{};
  }
  rep.nvrtc_version = nv.version;
  for (plan::CudaKernel& k : kernels) {
    absl::StatusOr<CompiledCubin> c =
        CompileToCubin(k.name, k.source, options.arch, options.nvrtc_library);
    if (!c.ok()) {
      return absl::InternalError(absl::StrCat(first_node[k.name]->Describe(),
                                              ": generated kernel did not compile: ",
                                              c.status().message(), "\n--- source ---\n",
                                              k.source));
    }
    k.cubin = std::move(c->cubin);
    k.registers = c->registers;
    k.spill_bytes = c->spill_bytes;
    rep.seconds += c->seconds;
  }
  rep.kernels = static_cast<int>(kernels.size());
  return kernels;
}

}  // namespace ptc::cuda::codegen
