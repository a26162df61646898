// Parser for the IR text form written by printer.cc (grammar below). Hand-written recursive
// descent without recursion (lists do not nest), so input depth cannot exhaust the stack.
//
//   module    := [ 'module' '{' name '=' string (',' ...)* '}' ] function*
//   function  := 'func' '@' name '(' [param (',' param)*] ')' '->' '(' [type (',' type)*] ')'
//                '{' node* 'return' [ref (',' ref)*] '}'
//   param     := ref ':' type [flags]
//   node      := [ref (',' ref)* '='] opname '(' [ref (',' ref)*] ')' [attrs]
//                [':' type [flags] (',' type [flags])*]  ['loc' '(' string ')']
//   ref       := '%' name              name := [A-Za-z0-9_.$-]+ | string
//   attrs     := '{' name '=' value (',' ...)* '}'      flags := '{' name (',' name)* '}'
//   value     := int | float | string | dtype | '[' [scalar (',' scalar)*] ']'
//              | 'dense' '<' type (':' element (',' element)*)? '>'
//   type      := dtype '[' [int (',' int)*] ']'
//
// `//` starts a comment that runs to the end of the line (pass tests keep RUN / CHECK lines
// in .ir files). Types come from the text; the parser does not run type inference or the
// verifier (call ir::Verify). Untrusted input: every size is checked (shape element counts
// and byte sizes must not overflow, rank <= 64), tensor literals are read element by element
// and must hold exactly the declared element count, so no allocation exceeds the input size.
#include "compiler/ir/parser.h"

#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"
#include "compiler/support/status.h"

namespace ptc::ir {
namespace {

constexpr int kMaxRank = 64;

absl::string_view Sv(std::string_view s) { return absl::string_view(s.data(), s.size()); }

bool IsNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '.' || c == '$' || c == '-';
}
bool IsWordChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}
bool IsDigit(char c) { return c >= '0' && c <= '9'; }

uint16_t F32ToF16Bits(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000);
  const uint32_t a = x & 0x7fffffff;
  if (a >= 0x7f800000) {  // inf / nan (keep nan quiet)
    return sign | 0x7c00 | (a > 0x7f800000 ? 0x200 | ((a >> 13) & 0x3ff) : 0);
  }
  if (a >= 0x477ff000) return sign | 0x7c00;  // >= 65520 rounds to inf
  if (a < 0x38800000) {                       // below the smallest normal f16 (2^-14)
    float af;
    std::memcpy(&af, &a, 4);
    return sign | static_cast<uint16_t>(std::nearbyint(af * 16777216.0f));  // units of 2^-24
  }
  const uint32_t mant = a & 0x7fffff;
  const uint32_t exp = (a >> 23) - 127 + 15;
  uint32_t h = (exp << 10) | (mant >> 13);
  const uint32_t rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) ++h;  // round to nearest even
  return sign | static_cast<uint16_t>(h);
}

uint16_t F32ToBF16Bits(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  if ((x & 0x7fffffff) > 0x7f800000) return static_cast<uint16_t>((x >> 16) | 0x40);
  x += 0x7fff + ((x >> 16) & 1);
  return static_cast<uint16_t>(x >> 16);
}

class Parser {
 public:
  explicit Parser(std::string_view text) : text_(text) {}

  absl::StatusOr<std::unique_ptr<Module>> Parse() {
    auto module = std::make_unique<Module>();
    SkipSpace();
    if (AtKeyword("module")) {
      pos_ += 6;
      PTC_RETURN_IF_ERROR(ParseMetadata(*module));
    }
    while (true) {
      SkipSpace();
      if (AtEnd()) break;
      if (!AtKeyword("func")) return Error("expected 'func' or end of input");
      pos_ += 4;
      PTC_RETURN_IF_ERROR(ParseFunction(*module));
    }
    return module;
  }

 private:
  // ------------------------------------------------------------------------- lexing

  bool AtEnd() const { return pos_ >= text_.size(); }
  char Cur() const { return AtEnd() ? '\0' : text_[pos_]; }

  void SkipSpace() {
    while (!AtEnd()) {
      const char c = text_[pos_];
      if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
        ++pos_;
      } else if (c == '/' && pos_ + 1 < text_.size() && text_[pos_ + 1] == '/') {
        while (!AtEnd() && text_[pos_] != '\n') ++pos_;
      } else {
        break;
      }
    }
  }

  // The word ([A-Za-z0-9_]*) at the cursor, after skipping space; does not consume it.
  std::string_view PeekWord() {
    SkipSpace();
    size_t end = pos_;
    while (end < text_.size() && IsWordChar(text_[end])) ++end;
    return text_.substr(pos_, end - pos_);
  }

  // True when the word at the cursor is exactly `kw` (not a prefix of a longer name).
  bool AtKeyword(std::string_view kw) {
    if (PeekWord() != kw) return false;
    const size_t end = pos_ + kw.size();
    return end >= text_.size() || !IsNameChar(text_[end]);
  }

  std::string GotWhat() const {
    if (AtEnd()) return "end of input";
    size_t end = pos_ + 1;
    if (IsNameChar(text_[pos_])) {
      while (end < text_.size() && IsNameChar(text_[end]) && end - pos_ < 24) ++end;
    }
    std::string tok;
    for (char c : text_.substr(pos_, end - pos_)) {
      tok += (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f)
                 ? '?'
                 : c;
    }
    return absl::StrCat("'", tok, "'");
  }

  absl::Status ErrorAt(size_t pos, std::string_view msg) const {
    int line = 1, col = 1;
    for (size_t i = 0; i < pos && i < text_.size(); ++i) {
      if (text_[i] == '\n') {
        ++line;
        col = 1;
      } else {
        ++col;
      }
    }
    return absl::InvalidArgumentError(absl::StrCat(line, ":", col, ": ", Sv(msg)));
  }
  // "expected X, got 'Y'" at the cursor.
  absl::Status Error(std::string_view expected) const {
    return ErrorAt(pos_, absl::StrCat(Sv(expected), ", got ", GotWhat()));
  }

  bool Consume(char c) {
    SkipSpace();
    if (Cur() != c) return false;
    ++pos_;
    return true;
  }
  absl::Status Expect(char c, std::string_view context) {
    if (Consume(c)) return absl::OkStatus();
    return Error(absl::StrCat("expected '", std::string(1, c), "' ", Sv(context)));
  }

  absl::StatusOr<std::string> ParseString() {
    SkipSpace();
    if (Cur() != '"') return Error("expected a string");
    const size_t start = pos_++;
    std::string out;
    while (true) {
      if (AtEnd() || Cur() == '\n') return ErrorAt(start, "unterminated string");
      char c = text_[pos_++];
      if (c == '"') break;
      if (c != '\\') {
        out += c;
        continue;
      }
      if (AtEnd()) return ErrorAt(start, "unterminated string");
      const char e = text_[pos_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case 'n': out += '\n'; break;
        case 't': out += '\t'; break;
        case 'x': {
          unsigned v = 0;
          for (int i = 0; i < 2; ++i) {
            const char h = Cur();
            int d = (h >= '0' && h <= '9') ? h - '0'
                    : (h >= 'a' && h <= 'f') ? h - 'a' + 10
                    : (h >= 'A' && h <= 'F') ? h - 'A' + 10
                                             : -1;
            if (d < 0) return ErrorAt(pos_, "expected two hex digits after \\x");
            v = v * 16 + d;
            ++pos_;
          }
          out += static_cast<char>(v);
          break;
        }
        default:
          return ErrorAt(pos_ - 2, "unknown escape in string (use \\\" \\\\ \\n \\t \\xHH)");
      }
    }
    return out;
  }

  // A bare name [A-Za-z0-9_.$-]+ or a quoted string; never empty.
  absl::StatusOr<std::string> ParseName(std::string_view what) {
    SkipSpace();
    const size_t start = pos_;
    std::string name;
    if (Cur() == '"') {
      PTC_ASSIGN_OR_RETURN(name, ParseString());
    } else {
      while (!AtEnd() && IsNameChar(text_[pos_])) ++pos_;
      name = std::string(text_.substr(start, pos_ - start));
    }
    if (name.empty()) {
      pos_ = start;
      return Error(absl::StrCat("expected ", Sv(what)));
    }
    return name;
  }

  // '%' name
  absl::StatusOr<std::string> ParseRef(std::string_view what) {
    if (!Consume('%')) return Error(absl::StrCat("expected ", Sv(what), " ('%name')"));
    if (Cur() == ' ' || Cur() == '\t' || Cur() == '\n') return Error("expected a name after '%'");
    return ParseName("a value name");
  }

  absl::StatusOr<int64_t> ParseInt(std::string_view what) {
    SkipSpace();
    const size_t start = pos_;
    size_t end = pos_;
    if (end < text_.size() && text_[end] == '-') ++end;
    while (end < text_.size() && IsDigit(text_[end])) ++end;
    int64_t v = 0;
    auto r = std::from_chars(text_.data() + start, text_.data() + end, v);
    if (r.ec == std::errc::result_out_of_range) {
      return ErrorAt(start, absl::StrCat(Sv(what), " is out of the int64 range"));
    }
    if (r.ec != std::errc() || r.ptr != text_.data() + end ||
        (end < text_.size() && (text_[end] == '.' || text_[end] == 'e' || text_[end] == 'E'))) {
      return Error(absl::StrCat("expected ", Sv(what), " (an integer)"));
    }
    pos_ = end;
    return v;
  }

  // A number token: -?(inf|nan|nan(0xHEX)|digits[.digits][(e|E)[+-]digits]). Sets is_float
  // when it has '.', an exponent, or is inf / nan. Does not consume on failure.
  absl::StatusOr<std::string_view> ScanNumber(bool* is_float) {
    SkipSpace();
    size_t p = pos_;
    *is_float = false;
    if (p < text_.size() && text_[p] == '-') ++p;
    if (p < text_.size() && (text_[p] == 'i' || text_[p] == 'n')) {
      size_t w = p;
      while (w < text_.size() && IsWordChar(text_[w])) ++w;
      std::string_view word = text_.substr(p, w - p);
      if (word != "inf" && word != "nan") return Error("expected a number");
      if (word == "nan" && w < text_.size() && text_[w] == '(') {
        while (w < text_.size() && text_[w] != ')' && w - p < 32) ++w;
        if (w >= text_.size() || text_[w] != ')') return ErrorAt(p, "malformed nan(0x...)");
        ++w;
      }
      *is_float = true;
      std::string_view tok = text_.substr(pos_, w - pos_);
      pos_ = w;
      return tok;
    }
    const size_t digits = p;
    while (p < text_.size() && IsDigit(text_[p])) ++p;
    if (p == digits) return Error("expected a number");
    if (p < text_.size() && text_[p] == '.') {
      *is_float = true;
      ++p;
      while (p < text_.size() && IsDigit(text_[p])) ++p;
    }
    if (p < text_.size() && (text_[p] == 'e' || text_[p] == 'E')) {
      *is_float = true;
      ++p;
      if (p < text_.size() && (text_[p] == '+' || text_[p] == '-')) ++p;
      const size_t exp = p;
      while (p < text_.size() && IsDigit(text_[p])) ++p;
      if (p == exp) return ErrorAt(pos_, "malformed number: exponent has no digits");
    }
    std::string_view tok = text_.substr(pos_, p - pos_);
    pos_ = p;
    return tok;
  }

  // Raw bits of nan(0xHEX) in a `bits`-wide float type; error unless they encode a NaN.
  absl::StatusOr<uint64_t> NanBits(std::string_view tok, size_t at, int bits, int mant_bits) {
    const size_t open = tok.find('(');
    if (open == std::string_view::npos) return ErrorAt(at, "malformed nan(0x...)");
    std::string_view hex = tok.substr(open + 1, tok.size() - open - 2);
    if (hex.size() < 3 || hex[0] != '0' || (hex[1] != 'x' && hex[1] != 'X')) {
      return ErrorAt(at, "nan payload must be hex bits: nan(0x7fc00001)");
    }
    uint64_t v = 0;
    auto r = std::from_chars(hex.data() + 2, hex.data() + hex.size(), v, 16);
    if (r.ec != std::errc() || r.ptr != hex.data() + hex.size()) {
      return ErrorAt(at, "nan payload must be hex bits: nan(0x7fc00001)");
    }
    const uint64_t exp_mask = ((uint64_t{1} << (bits - 1 - mant_bits)) - 1) << mant_bits;
    const uint64_t mant_mask = (uint64_t{1} << mant_bits) - 1;
    if ((bits < 64 && (v >> bits) != 0) || (v & exp_mask) != exp_mask || (v & mant_mask) == 0) {
      return ErrorAt(at, absl::StrCat("nan(", Sv(hex), ") is not a NaN of this ", bits,
                                      "-bit type"));
    }
    return v;
  }

  absl::StatusOr<double> ToDouble(std::string_view tok, size_t at) {
    const bool neg = !tok.empty() && tok[0] == '-';
    std::string_view body = neg ? tok.substr(1) : tok;
    if (body == "inf") return neg ? -std::numeric_limits<double>::infinity()
                                  : std::numeric_limits<double>::infinity();
    if (body.substr(0, 3) == "nan") {
      uint64_t bits = 0x7ff8000000000000ull;
      if (body.size() > 3) {
        if (neg) return ErrorAt(at, "write a signed nan payload as nan(0x...) bits");
        PTC_ASSIGN_OR_RETURN(bits, NanBits(body, at, 64, 52));
      } else if (neg) {
        bits |= uint64_t{1} << 63;
      }
      double d;
      std::memcpy(&d, &bits, 8);
      return d;
    }
    double d = 0;
    auto r = std::from_chars(tok.data(), tok.data() + tok.size(), d);
    if (r.ec != std::errc() || r.ptr != tok.data() + tok.size()) {
      return ErrorAt(at, absl::StrCat("number ", Sv(tok), " is out of range for f64"));
    }
    return d;
  }

  absl::StatusOr<float> ToFloat(std::string_view tok, size_t at) {
    const bool neg = !tok.empty() && tok[0] == '-';
    std::string_view body = neg ? tok.substr(1) : tok;
    if (body == "inf") return neg ? -std::numeric_limits<float>::infinity()
                                  : std::numeric_limits<float>::infinity();
    if (body.substr(0, 3) == "nan") {
      uint32_t bits = 0x7fc00000u;
      if (body.size() > 3) {
        if (neg) return ErrorAt(at, "write a signed nan payload as nan(0x...) bits");
        PTC_ASSIGN_OR_RETURN(uint64_t b, NanBits(body, at, 32, 23));
        bits = static_cast<uint32_t>(b);
      } else if (neg) {
        bits |= 0x80000000u;
      }
      float f;
      std::memcpy(&f, &bits, 4);
      return f;
    }
    float f = 0;
    auto r = std::from_chars(tok.data(), tok.data() + tok.size(), f);
    if (r.ec != std::errc() || r.ptr != tok.data() + tok.size()) {
      return ErrorAt(at, absl::StrCat("number ", Sv(tok), " is out of range for f32"));
    }
    return f;
  }

  // ------------------------------------------------------------------------- types, values

  absl::StatusOr<DType> ParseDTypeWord() {
    std::string_view word = PeekWord();
    auto d = ParseDType(word);
    if (!d.ok()) return Error("expected a dtype (f32, f16, bf16, f64, i8, u8, i32, i64, bool)");
    pos_ += word.size();
    return *d;
  }

  absl::StatusOr<TensorType> ParseType() {
    SkipSpace();
    const size_t start = pos_;
    TensorType t;
    PTC_ASSIGN_OR_RETURN(t.dtype, ParseDTypeWord());
    PTC_RETURN_IF_ERROR(Expect('[', "to open the shape"));
    if (!Consume(']')) {
      while (true) {
        SkipSpace();
        const size_t dim_pos = pos_;
        PTC_ASSIGN_OR_RETURN(int64_t d, ParseInt("a dimension"));
        if (d < 0) return ErrorAt(dim_pos, "dimensions must be >= 0");
        if (t.shape.size() >= kMaxRank) return ErrorAt(dim_pos, "rank exceeds 64");
        t.shape.push_back(d);
        if (Consume(']')) break;
        PTC_RETURN_IF_ERROR(Expect(',', "or ']' in the shape"));
      }
    }
    if (t.byte_size() < 0) {
      return ErrorAt(start, absl::StrCat("shape ", ShapeToString(t.shape),
                                         " is too large (its byte size overflows int64)"));
    }
    return t;
  }

  absl::StatusOr<std::set<std::string>> ParseFlags() {
    std::set<std::string> flags;
    PTC_RETURN_IF_ERROR(Expect('{', "to open the flags"));
    if (Consume('}')) return flags;
    while (true) {
      PTC_ASSIGN_OR_RETURN(std::string f, ParseName("a flag name"));
      flags.insert(std::move(f));
      if (Consume('}')) return flags;
      PTC_RETURN_IF_ERROR(Expect(',', "or '}' after a flag"));
    }
  }

  // Appends one element of `dtype` to `bytes`.
  absl::Status ParseElement(DType dtype, std::string* bytes) {
    SkipSpace();
    const size_t at = pos_;
    auto append = [&](const void* p, size_t n) { bytes->append(static_cast<const char*>(p), n); };
    if (dtype == DType::kBool) {
      std::string_view w = PeekWord();
      if (w != "true" && w != "false") return Error("expected true or false");
      pos_ += w.size();
      const uint8_t b = w == "true";
      append(&b, 1);
      return absl::OkStatus();
    }
    bool is_float = false;
    PTC_ASSIGN_OR_RETURN(std::string_view tok, ScanNumber(&is_float));
    switch (dtype) {
      case DType::kF32: {
        PTC_ASSIGN_OR_RETURN(float f, ToFloat(tok, at));
        append(&f, 4);
        return absl::OkStatus();
      }
      case DType::kF64: {
        PTC_ASSIGN_OR_RETURN(double d, ToDouble(tok, at));
        append(&d, 8);
        return absl::OkStatus();
      }
      case DType::kF16:
      case DType::kBF16: {
        const bool f16 = dtype == DType::kF16;
        uint16_t h;
        if (tok.find('(') != std::string_view::npos) {
          if (tok[0] == '-') return ErrorAt(at, "write a signed nan payload as nan(0x...) bits");
          PTC_ASSIGN_OR_RETURN(uint64_t b, NanBits(tok, at, 16, f16 ? 10 : 7));
          h = static_cast<uint16_t>(b);
        } else {
          PTC_ASSIGN_OR_RETURN(float f, ToFloat(tok, at));
          h = f16 ? F32ToF16Bits(f) : F32ToBF16Bits(f);
        }
        append(&h, 2);
        return absl::OkStatus();
      }
      default: break;
    }
    if (is_float) return ErrorAt(at, absl::StrCat("expected an integer for ", Sv(DTypeName(dtype))));
    int64_t v = 0;
    auto r = std::from_chars(tok.data(), tok.data() + tok.size(), v);
    if (r.ec != std::errc() || r.ptr != tok.data() + tok.size()) {
      return ErrorAt(at, absl::StrCat(Sv(tok), " is out of the int64 range"));
    }
    auto check = [&](int64_t lo, int64_t hi) -> absl::Status {
      if (v < lo || v > hi) {
        return ErrorAt(at, absl::StrCat(v, " is out of range for ", Sv(DTypeName(dtype))));
      }
      return absl::OkStatus();
    };
    switch (dtype) {
      case DType::kI8: {
        PTC_RETURN_IF_ERROR(check(-128, 127));
        const int8_t x = static_cast<int8_t>(v);
        append(&x, 1);
        break;
      }
      case DType::kU8: {
        PTC_RETURN_IF_ERROR(check(0, 255));
        const uint8_t x = static_cast<uint8_t>(v);
        append(&x, 1);
        break;
      }
      case DType::kI32: {
        PTC_RETURN_IF_ERROR(check(std::numeric_limits<int32_t>::min(),
                                  std::numeric_limits<int32_t>::max()));
        const int32_t x = static_cast<int32_t>(v);
        append(&x, 4);
        break;
      }
      default: append(&v, 8); break;  // i64
    }
    return absl::OkStatus();
  }

  // After 'dense': '<' type (':' elements)? '>'
  absl::StatusOr<Tensor> ParseDense() {
    PTC_RETURN_IF_ERROR(Expect('<', "after 'dense'"));
    SkipSpace();
    const size_t type_pos = pos_;
    PTC_ASSIGN_OR_RETURN(TensorType type, ParseType());
    const int64_t n = type.num_elements();
    std::string bytes;
    int64_t count = 0;
    if (Consume(':')) {
      while (true) {
        if (count == n) {
          SkipSpace();
          return Error(absl::StrCat("expected '>': ", type.ToString(), " holds ", n,
                                    " elements"));
        }
        PTC_RETURN_IF_ERROR(ParseElement(type.dtype, &bytes));
        ++count;
        if (Consume('>')) break;
        PTC_RETURN_IF_ERROR(Expect(',', "or '>' after a tensor element"));
      }
    } else {
      PTC_RETURN_IF_ERROR(Expect('>', "or ':' after the tensor type"));
    }
    if (count != n) {
      return ErrorAt(type_pos, absl::StrCat("tensor literal ", type.ToString(), " needs ", n,
                                            " elements, got ", count));
    }
    return Tensor::FromBytes(type.dtype, type.shape, bytes.data(), bytes.size());
  }

  absl::StatusOr<AttrValue> ParseList() {
    // '[' already consumed. Element kind from the elements: strings, ints, or floats (a list
    // with any float is a float list). An empty list is a list of integers.
    std::vector<std::string> strings;
    std::vector<std::string_view> numbers;
    std::vector<size_t> number_pos;
    bool any_float = false;
    if (!Consume(']')) {
      while (true) {
        SkipSpace();
        if (Cur() == '"') {
          if (!numbers.empty()) return Error("expected a number (lists do not mix kinds)");
          PTC_ASSIGN_OR_RETURN(std::string s, ParseString());
          strings.push_back(std::move(s));
        } else {
          if (!strings.empty()) return Error("expected a string (lists do not mix kinds)");
          number_pos.push_back(pos_);
          bool is_float = false;
          PTC_ASSIGN_OR_RETURN(std::string_view tok, ScanNumber(&is_float));
          any_float |= is_float;
          numbers.push_back(tok);
        }
        if (Consume(']')) break;
        PTC_RETURN_IF_ERROR(Expect(',', "or ']' in the list"));
      }
    }
    if (!strings.empty()) return AttrValue(std::move(strings));
    if (any_float) {
      std::vector<double> v;
      for (size_t i = 0; i < numbers.size(); ++i) {
        PTC_ASSIGN_OR_RETURN(double d, ToDouble(numbers[i], number_pos[i]));
        v.push_back(d);
      }
      return AttrValue(std::move(v));
    }
    std::vector<int64_t> v;
    for (size_t i = 0; i < numbers.size(); ++i) {
      int64_t x = 0;
      auto r = std::from_chars(numbers[i].data(), numbers[i].data() + numbers[i].size(), x);
      if (r.ec != std::errc()) return ErrorAt(number_pos[i], "integer is out of the int64 range");
      v.push_back(x);
    }
    return AttrValue(std::move(v));
  }

  absl::StatusOr<AttrValue> ParseAttrValue() {
    SkipSpace();
    const size_t at = pos_;
    const char c = Cur();
    if (c == '"') {
      PTC_ASSIGN_OR_RETURN(std::string s, ParseString());
      return AttrValue(std::move(s));
    }
    if (c == '[') {
      ++pos_;
      return ParseList();
    }
    std::string_view word = PeekWord();
    if (word == "dense") {
      pos_ += word.size();
      PTC_ASSIGN_OR_RETURN(Tensor t, ParseDense());
      return AttrValue(std::move(t));
    }
    if (!word.empty() && !IsDigit(word[0]) && word != "inf" && word != "nan") {
      auto d = ParseDType(word);
      if (!d.ok()) {
        return Error("expected an attribute value (number, string, list, dtype or dense<...>)");
      }
      pos_ += word.size();
      return AttrValue(*d);
    }
    bool is_float = false;
    PTC_ASSIGN_OR_RETURN(std::string_view tok, ScanNumber(&is_float));
    if (is_float) {
      PTC_ASSIGN_OR_RETURN(double d, ToDouble(tok, at));
      return AttrValue(d);
    }
    int64_t v = 0;
    auto r = std::from_chars(tok.data(), tok.data() + tok.size(), v);
    if (r.ec != std::errc()) return ErrorAt(at, "integer is out of the int64 range");
    return AttrValue(v);
  }

  absl::StatusOr<AttrMap> ParseAttrs() {
    AttrMap attrs;
    PTC_RETURN_IF_ERROR(Expect('{', "to open the attributes"));
    if (Consume('}')) return attrs;
    while (true) {
      SkipSpace();
      const size_t key_pos = pos_;
      PTC_ASSIGN_OR_RETURN(std::string key, ParseName("an attribute name"));
      if (attrs.count(key)) return ErrorAt(key_pos, absl::StrCat("duplicate attribute '", key, "'"));
      PTC_RETURN_IF_ERROR(Expect('=', "after the attribute name"));
      PTC_ASSIGN_OR_RETURN(attrs[key], ParseAttrValue());
      if (Consume('}')) return attrs;
      PTC_RETURN_IF_ERROR(Expect(',', "or '}' after an attribute"));
    }
  }

  // ------------------------------------------------------------------------- structure

  absl::Status ParseMetadata(Module& module) {
    PTC_RETURN_IF_ERROR(Expect('{', "after 'module'"));
    if (Consume('}')) return absl::OkStatus();
    while (true) {
      SkipSpace();
      const size_t key_pos = pos_;
      PTC_ASSIGN_OR_RETURN(std::string key, ParseName("a metadata key"));
      if (module.metadata().count(key)) {
        return ErrorAt(key_pos, absl::StrCat("duplicate metadata key '", key, "'"));
      }
      PTC_RETURN_IF_ERROR(Expect('=', "after the metadata key"));
      PTC_ASSIGN_OR_RETURN(module.metadata()[key], ParseString());
      if (Consume('}')) return absl::OkStatus();
      PTC_RETURN_IF_ERROR(Expect(',', "or '}' in the module metadata"));
    }
  }

  // Parses '%name' and checks it is not yet defined in `f`.
  absl::StatusOr<std::string> ParseNewValueName(Function& f, const std::set<std::string>& pending) {
    SkipSpace();
    const size_t at = pos_;
    PTC_ASSIGN_OR_RETURN(std::string name, ParseRef("a value"));
    if (f.FindValue(name) != nullptr || pending.count(name)) {
      return ErrorAt(at, absl::StrCat("redefinition of %", name));
    }
    return name;
  }

  absl::StatusOr<Value*> ParseUse(Function& f) {
    SkipSpace();
    const size_t at = pos_;
    PTC_ASSIGN_OR_RETURN(std::string name, ParseRef("a value"));
    Value* v = f.FindValue(name);
    if (v == nullptr) {
      return ErrorAt(at, absl::StrCat("use of undefined value %", name,
                                      " (values must be defined before use)"));
    }
    return v;
  }

  absl::Status ParseFunction(Module& module) {
    SkipSpace();
    const size_t name_pos = pos_;
    if (!Consume('@')) return Error("expected '@name' after 'func'");
    PTC_ASSIGN_OR_RETURN(std::string fname, ParseName("a function name"));
    if (module.FindFunction(fname) != nullptr) {
      return ErrorAt(name_pos, absl::StrCat("redefinition of function @", fname));
    }
    Function& f = *module.AddFunction(fname);
    PTC_RETURN_IF_ERROR(Expect('(', "to open the parameter list"));
    if (!Consume(')')) {
      while (true) {
        PTC_ASSIGN_OR_RETURN(std::string name, ParseNewValueName(f, {}));
        PTC_RETURN_IF_ERROR(Expect(':', "after the parameter name"));
        PTC_ASSIGN_OR_RETURN(TensorType type, ParseType());
        std::set<std::string> flags;
        SkipSpace();
        if (Cur() == '{') {
          PTC_ASSIGN_OR_RETURN(flags, ParseFlags());
        }
        f.AddParam(std::move(name), std::move(type), std::move(flags));
        if (Consume(')')) break;
        PTC_RETURN_IF_ERROR(Expect(',', "or ')' after a parameter"));
      }
    }
    SkipSpace();
    if (text_.substr(pos_, 2) != "->") return Error("expected '->' after the parameters");
    pos_ += 2;
    PTC_RETURN_IF_ERROR(Expect('(', "to open the result types"));
    std::vector<TensorType> result_types;
    if (!Consume(')')) {
      while (true) {
        PTC_ASSIGN_OR_RETURN(TensorType t, ParseType());
        result_types.push_back(std::move(t));
        if (Consume(')')) break;
        PTC_RETURN_IF_ERROR(Expect(',', "or ')' after a result type"));
      }
    }
    PTC_RETURN_IF_ERROR(Expect('{', "to open the function body"));
    while (true) {
      SkipSpace();
      if (AtEnd()) return Error("expected a node or 'return'");
      if (AtKeyword("return")) {
        const size_t ret_pos = pos_;
        pos_ += 6;
        std::vector<Value*> results;
        SkipSpace();
        if (Cur() == '%') {
          while (true) {
            PTC_ASSIGN_OR_RETURN(Value * v, ParseUse(f));
            results.push_back(v);
            if (!Consume(',')) break;
          }
        }
        if (results.size() != result_types.size()) {
          return ErrorAt(ret_pos, absl::StrCat("return has ", results.size(),
                                               " values but the signature declares ",
                                               result_types.size()));
        }
        for (size_t i = 0; i < results.size(); ++i) {
          if (results[i]->type() != result_types[i]) {
            return ErrorAt(ret_pos, absl::StrCat("result ", i, " %", results[i]->name(), " has type ",
                                                 results[i]->type().ToString(),
                                                 " but the signature declares ",
                                                 result_types[i].ToString()));
          }
        }
        f.set_results(std::move(results));
        return Expect('}', "after 'return' (return ends the function)");
      }
      PTC_RETURN_IF_ERROR(ParseNode(f));
    }
  }

  absl::Status ParseNode(Function& f) {
    std::vector<std::string> out_names;
    std::set<std::string> pending;
    SkipSpace();
    if (Cur() == '%') {
      while (true) {
        PTC_ASSIGN_OR_RETURN(std::string name, ParseNewValueName(f, pending));
        pending.insert(name);
        out_names.push_back(std::move(name));
        if (!Consume(',')) break;
      }
      PTC_RETURN_IF_ERROR(Expect('=', "after the output names"));
    }
    SkipSpace();
    if (Cur() == '}') return Error("expected 'return' before the end of the function");
    PTC_ASSIGN_OR_RETURN(std::string op, ParseName("an op name"));
    PTC_RETURN_IF_ERROR(Expect('(', "after the op name"));
    std::vector<Value*> inputs;
    if (!Consume(')')) {
      while (true) {
        PTC_ASSIGN_OR_RETURN(Value * v, ParseUse(f));
        inputs.push_back(v);
        if (Consume(')')) break;
        PTC_RETURN_IF_ERROR(Expect(',', "or ')' after an operand"));
      }
    }
    AttrMap attrs;
    SkipSpace();
    if (Cur() == '{') {
      PTC_ASSIGN_OR_RETURN(attrs, ParseAttrs());
    }
    std::vector<TensorType> types;
    std::vector<std::set<std::string>> flags;
    if (!out_names.empty()) {
      PTC_RETURN_IF_ERROR(Expect(':', "and the output types"));
      for (size_t i = 0; i < out_names.size(); ++i) {
        if (i > 0) {
          PTC_RETURN_IF_ERROR(Expect(',', absl::StrCat("and a type for each of the ",
                                                       out_names.size(), " outputs")));
        }
        PTC_ASSIGN_OR_RETURN(TensorType t, ParseType());
        types.push_back(std::move(t));
        flags.emplace_back();
        SkipSpace();
        if (Cur() == '{') {
          PTC_ASSIGN_OR_RETURN(flags.back(), ParseFlags());
        }
      }
      SkipSpace();
      if (Cur() == ',') return Error(absl::StrCat("expected ", out_names.size(), " output types"));
    }
    std::string loc;
    SkipSpace();
    if (AtKeyword("loc")) {
      pos_ += 3;
      PTC_RETURN_IF_ERROR(Expect('(', "after 'loc'"));
      PTC_ASSIGN_OR_RETURN(loc, ParseString());
      PTC_RETURN_IF_ERROR(Expect(')', "after the location string"));
    }
    Node* node = f.AddNode(std::move(op), std::move(inputs), std::move(types), std::move(attrs),
                           std::move(loc), out_names);
    for (size_t i = 0; i < node->num_outputs(); ++i) {
      node->output(i)->mutable_flags() = std::move(flags[i]);
    }
    return absl::OkStatus();
  }

  std::string_view text_;
  size_t pos_ = 0;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Module>> ParseModule(std::string_view text) {
  Parser parser(text);
  return parser.Parse();
}

}  // namespace ptc::ir
