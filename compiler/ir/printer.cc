// The IR text form (parser.cc reads it back; print(parse(text)) == text).
//
//   module {opset="17", source="model.onnx"}        (only when there is metadata)
//
//   func @main(%x: f32[2,3], %w: f32[3] {param}) -> (f32[2,3]) {
//     %a = add(%x, %w) : f32[2,3]  loc("/Add")
//     %b, %c = split(%a) {axis=0, sizes=[1, 1]} : f32[1,3], f32[1,3]
//     return %b, %c
//   }
//
// Names matching [A-Za-z0-9_.$-]+ print bare, others quoted (%"onnx::MatMul_12"). Attributes
// print sorted; floats always carry '.', 'e', "inf" or "nan" so they never read back as
// integers, and use the shortest text that reads back to the same bits (non-canonical NaNs
// print their bits: nan(0x7fc00001)). Tensors print as dense<f32[2]: 1.0, 2.5> (dense<f32[0]>
// when empty); f16 / bf16 elements print their value. Output values with flags print them
// after their type (`: f32[2] {frozen}`). Functions are separated by a blank line.
#include "compiler/ir/printer.h"

#include <charconv>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace ptc::ir {
namespace {

bool IsBareName(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '.' || c == '$' || c == '-';
    if (!ok) return false;
  }
  return true;
}

std::string Quote(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20 || c == 0x7f) {
          out += absl::StrFormat("\\x%02x", c);
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
  return out;
}

std::string Name(std::string_view s) { return IsBareName(s) ? std::string(s) : Quote(s); }

std::string ValueRef(const Value* v) { return "%" + (v ? Name(v->name()) : Quote("<null>")); }

void EnsureFloatLooking(std::string* s) {
  if (s->find_first_of(".eEn") == std::string::npos) *s += ".0";  // "inf" / "nan" contain 'n'
}

template <typename F, typename Bits>
std::string FormatFloating(F v, Bits canonical_nan_bits) {
  if (std::isnan(v)) {
    Bits bits;
    std::memcpy(&bits, &v, sizeof(bits));
    const Bits sign = static_cast<Bits>(Bits{1} << (sizeof(Bits) * 8 - 1));
    if (bits == canonical_nan_bits) return "nan";
    if (bits == (canonical_nan_bits | sign)) return "-nan";
    return absl::StrFormat("nan(0x%x)", static_cast<uint64_t>(bits));
  }
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof(buf), v);
  std::string s(buf, r.ptr);
  EnsureFloatLooking(&s);
  return s;
}

std::string FormatDouble(double v) { return FormatFloating<double, uint64_t>(v, 0x7ff8000000000000ull); }
std::string FormatFloat(float v) { return FormatFloating<float, uint32_t>(v, 0x7fc00000u); }

// 16-bit float elements print by value; NaNs print their own 16 bits when non-canonical.
std::string FormatHalfLike(const Tensor& t, int64_t i, uint16_t canonical_nan) {
  uint16_t bits;
  std::memcpy(&bits, static_cast<const char*>(t.data()) + 2 * i, 2);
  const double v = t.GetDouble(i);
  if (std::isnan(v)) {
    if (bits == canonical_nan) return "nan";
    if (bits == (canonical_nan | 0x8000)) return "-nan";
    return absl::StrFormat("nan(0x%x)", bits);
  }
  return FormatFloat(static_cast<float>(v));
}

std::string FormatElement(const Tensor& t, int64_t i) {
  const char* p = static_cast<const char*>(t.data());
  switch (t.dtype()) {
    case DType::kF32: {
      float f;
      std::memcpy(&f, p + 4 * i, 4);
      return FormatFloat(f);
    }
    case DType::kF64: {
      double d;
      std::memcpy(&d, p + 8 * i, 8);
      return FormatDouble(d);
    }
    case DType::kF16: return FormatHalfLike(t, i, 0x7e00);
    case DType::kBF16: return FormatHalfLike(t, i, 0x7fc0);
    case DType::kBool: return p[i] ? "true" : "false";
    case DType::kI8:
    case DType::kU8:
    case DType::kI32:
    case DType::kI64: return absl::StrCat(t.GetInt(i));
  }
  return "?";
}

std::string FormatTensor(const Tensor& t) {
  const int64_t n = t.num_elements();
  const int64_t bytes = t.type().byte_size();
  std::string s = absl::StrCat("dense<", t.type().ToString());
  if (n < 0 || bytes < 0 || static_cast<size_t>(bytes) != t.nbytes() ||
      (n > 0 && t.data() == nullptr)) {
    return s + ": <no data>>";  // not a valid tensor; printed for debugging, never re-parsed
  }
  if (n == 0) return s + ">";
  s += ": ";
  for (int64_t i = 0; i < n; ++i) {
    if (i) s += ", ";
    s += FormatElement(t, i);
  }
  s += ">";
  return s;
}

std::string TypeWithFlags(const TensorType& type, const std::set<std::string>& flags) {
  std::string s = type.ToString();
  if (!flags.empty()) {
    std::vector<std::string> names;
    for (const auto& f : flags) names.push_back(Name(f));
    absl::StrAppend(&s, " {", absl::StrJoin(names, ", "), "}");
  }
  return s;
}

void AppendNode(const Node& n, std::string* out) {
  *out += "  ";
  if (n.num_outputs() > 0) {
    std::vector<std::string> outs;
    for (const Value* v : n.outputs()) outs.push_back(ValueRef(v));
    absl::StrAppend(out, absl::StrJoin(outs, ", "), " = ");
  }
  std::vector<std::string> ins;
  for (const Value* v : n.inputs()) ins.push_back(ValueRef(v));
  absl::StrAppend(out, Name(n.op()), "(", absl::StrJoin(ins, ", "), ")");
  if (!n.attrs().empty()) {
    std::vector<std::string> attrs;
    for (const auto& [k, v] : n.attrs()) attrs.push_back(absl::StrCat(Name(k), "=", PrintAttrValue(v)));
    absl::StrAppend(out, " {", absl::StrJoin(attrs, ", "), "}");
  }
  if (n.num_outputs() > 0) {
    std::vector<std::string> types;
    for (const Value* v : n.outputs()) {
      types.push_back(v ? TypeWithFlags(v->type(), v->flags()) : std::string("?"));
    }
    absl::StrAppend(out, " : ", absl::StrJoin(types, ", "));
  }
  if (!n.loc().empty()) absl::StrAppend(out, "  loc(", Quote(n.loc()), ")");
  *out += "\n";
}

}  // namespace

std::string PrintAttrValue(const AttrValue& value) {
  struct Visitor {
    std::string operator()(int64_t v) const { return absl::StrCat(v); }
    std::string operator()(double v) const { return FormatDouble(v); }
    std::string operator()(const std::string& v) const { return Quote(v); }
    std::string operator()(const std::vector<int64_t>& v) const {
      return absl::StrCat("[", absl::StrJoin(v, ", "), "]");
    }
    std::string operator()(const std::vector<double>& v) const {
      std::vector<std::string> parts;
      for (double d : v) parts.push_back(FormatDouble(d));
      return absl::StrCat("[", absl::StrJoin(parts, ", "), "]");
    }
    std::string operator()(const std::vector<std::string>& v) const {
      std::vector<std::string> parts;
      for (const auto& s : v) parts.push_back(Quote(s));
      return absl::StrCat("[", absl::StrJoin(parts, ", "), "]");
    }
    std::string operator()(const Tensor& t) const { return FormatTensor(t); }
    std::string operator()(DType d) const { return std::string(DTypeName(d)); }
  };
  return std::visit(Visitor{}, value);
}

std::string PrintFunction(const Function& f) {
  std::string out = absl::StrCat("func @", Name(f.name()), "(");
  std::vector<std::string> params;
  for (const Value* p : f.params()) {
    params.push_back(absl::StrCat(ValueRef(p), ": ", TypeWithFlags(p->type(), p->flags())));
  }
  std::vector<std::string> result_types;
  for (const Value* r : f.results()) result_types.push_back(r ? r->type().ToString() : "?");
  absl::StrAppend(&out, absl::StrJoin(params, ", "), ") -> (", absl::StrJoin(result_types, ", "),
                  ") {\n");
  for (const auto& n : f.nodes()) AppendNode(*n, &out);
  out += "  return";
  std::vector<std::string> results;
  for (const Value* r : f.results()) results.push_back(ValueRef(r));
  if (!results.empty()) absl::StrAppend(&out, " ", absl::StrJoin(results, ", "));
  out += "\n}\n";
  return out;
}

std::string PrintModule(const Module& module) {
  std::string out;
  if (!module.metadata().empty()) {
    std::vector<std::string> kv;
    for (const auto& [k, v] : module.metadata()) kv.push_back(absl::StrCat(Name(k), "=", Quote(v)));
    absl::StrAppend(&out, "module {", absl::StrJoin(kv, ", "), "}\n");
  }
  for (const auto& f : module.functions()) {
    if (!out.empty()) out += "\n";
    out += PrintFunction(*f);
  }
  return out;
}

}  // namespace ptc::ir
