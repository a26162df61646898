// One case table for every CPU kernel (ggml test-backend-ops style): each case names an op,
// its attributes and input types; inputs are random; a naive double-precision reference written
// here (independent of the kernels) gives the expected outputs AND the output types the node is
// built with; EvaluateNode must match within the case's tolerance. Error cases expect an error
// Status whose message contains a given substring.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "codegen/cpu/kernel.h"
#include "codegen/cpu/kernel_util.h"
#include "compiler/ir/dropout.h"
#include "compiler/ir/ir.h"
#include "gtest/gtest.h"

namespace ptc::cpu {
namespace {

using ir::AttrMap;
using ir::DType;
using ir::Shape;
using ir::TensorType;

// ---------------------------------------------------------------------------------------------
// Reference tensors: values as doubles.

struct Ref {
  DType dtype = DType::kF32;
  Shape shape;
  std::vector<double> v;
};

int64_t Numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

std::vector<int64_t> Unravel(int64_t i, const Shape& s) {
  std::vector<int64_t> idx(s.size());
  for (int d = static_cast<int>(s.size()) - 1; d >= 0; --d) {
    idx[d] = s[d] ? i % s[d] : 0;
    if (s[d]) i /= s[d];
  }
  return idx;
}

int64_t Ravel(const std::vector<int64_t>& idx, const Shape& s) {
  int64_t i = 0;
  for (size_t d = 0; d < s.size(); ++d) i = i * s[d] + idx[d];
  return i;
}

// Linear index into `in` of the output multi-index `out_idx` under numpy broadcasting.
int64_t BroadcastIndex(const std::vector<int64_t>& out_idx, const Shape& in) {
  int64_t i = 0;
  size_t off = out_idx.size() - in.size();
  for (size_t d = 0; d < in.size(); ++d) i = i * in[d] + (in[d] == 1 ? 0 : out_idx[off + d]);
  return i;
}

Shape Broadcast(const std::vector<Shape>& shapes) {
  size_t r = 0;
  for (const Shape& s : shapes) r = std::max(r, s.size());
  Shape out(r, 1);
  for (const Shape& s : shapes) {
    for (size_t d = 0; d < s.size(); ++d) {
      int64_t& o = out[r - s.size() + d];
      if (s[d] != 1) o = s[d];
    }
  }
  return out;
}

int64_t IntAttr(const AttrMap& a, const std::string& k, int64_t def) {
  auto it = a.find(k);
  return it == a.end() ? def : std::get<int64_t>(it->second);
}
double FloatAttr(const AttrMap& a, const std::string& k, double def) {
  auto it = a.find(k);
  return it == a.end() ? def : std::get<double>(it->second);
}
std::vector<int64_t> IntsAttr(const AttrMap& a, const std::string& k) {
  auto it = a.find(k);
  return it == a.end() ? std::vector<int64_t>{} : std::get<std::vector<int64_t>>(it->second);
}
std::string StrAttr(const AttrMap& a, const std::string& k, const std::string& def) {
  auto it = a.find(k);
  return it == a.end() ? def : std::get<std::string>(it->second);
}

bool IsInt(DType d) {
  return d == DType::kI8 || d == DType::kU8 || d == DType::kI32 || d == DType::kI64;
}

// Rounds a double to what dtype `d` stores (for expected values of integer / bool outputs).
double StoreAs(DType d, double x) {
  if (d == DType::kBool) return x != 0 ? 1 : 0;
  if (IsInt(d)) return std::trunc(x);
  return x;
}

Ref Elementwise(const std::vector<Ref>& in, DType out_dtype,
                const std::function<double(const std::vector<double>&)>& f) {
  std::vector<Shape> shapes;
  for (const Ref& r : in) shapes.push_back(r.shape);
  Ref out{out_dtype, Broadcast(shapes), {}};
  int64_t n = Numel(out.shape);
  out.v.resize(n);
  std::vector<double> args(in.size());
  for (int64_t i = 0; i < n; ++i) {
    auto idx = Unravel(i, out.shape);
    for (size_t k = 0; k < in.size(); ++k) args[k] = in[k].v[BroadcastIndex(idx, in[k].shape)];
    out.v[i] = StoreAs(out_dtype, f(args));
  }
  return out;
}

double RefLogSumExp(const std::vector<double>& xs) {
  double m = -INFINITY;
  for (double x : xs) m = std::max(m, x);
  double s = 0;
  for (double x : xs) s += std::exp(x - m);
  return m + std::log(s);
}

// Naive reference of every op. Returns the outputs (the first num_outputs ones).
std::vector<Ref> Reference(const std::string& op, const AttrMap& a, const std::vector<Ref>& in,
                           int num_outputs) {
  const DType dt = in.empty() ? DType::kF32 : in[0].dtype;
  const bool integer = IsInt(dt);
  auto bin = [&](std::function<double(double, double)> f, DType out_dt) {
    return std::vector<Ref>{
        Elementwise(in, out_dt, [&](const std::vector<double>& x) { return f(x[0], x[1]); })};
  };
  auto un = [&](std::function<double(double)> f) {
    return std::vector<Ref>{
        Elementwise(in, dt, [&](const std::vector<double>& x) { return f(x[0]); })};
  };
  if (op == "add") return bin([](double x, double y) { return x + y; }, dt);
  if (op == "sub") return bin([](double x, double y) { return x - y; }, dt);
  if (op == "mul") return bin([](double x, double y) { return x * y; }, dt);
  if (op == "div") {
    return bin([&](double x, double y) { return integer ? std::trunc(x / y) : x / y; }, dt);
  }
  if (op == "pow") return bin([](double x, double y) { return std::pow(x, y); }, dt);
  if (op == "max") return bin([](double x, double y) { return std::max(x, y); }, dt);
  if (op == "min") return bin([](double x, double y) { return std::min(x, y); }, dt);
  if (op == "equal") return bin([](double x, double y) { return x == y; }, DType::kBool);
  if (op == "less") return bin([](double x, double y) { return x < y; }, DType::kBool);
  if (op == "greater") return bin([](double x, double y) { return x > y; }, DType::kBool);
  if (op == "less_equal") return bin([](double x, double y) { return x <= y; }, DType::kBool);
  if (op == "greater_equal") return bin([](double x, double y) { return x >= y; }, DType::kBool);
  if (op == "and") return bin([](double x, double y) { return x && y; }, DType::kBool);
  if (op == "or") return bin([](double x, double y) { return x || y; }, DType::kBool);
  if (op == "xor") return bin([](double x, double y) { return (x != 0) != (y != 0); }, DType::kBool);
  if (op == "not") return un([](double x) { return x == 0; });
  if (op == "neg") return un([](double x) { return -x; });
  if (op == "abs") return un([](double x) { return std::fabs(x); });
  if (op == "sqrt") return un([](double x) { return std::sqrt(x); });
  if (op == "reciprocal") return un([](double x) { return 1 / x; });
  if (op == "exp") return un([](double x) { return std::exp(x); });
  if (op == "log") return un([](double x) { return std::log(x); });
  if (op == "erf") return un([](double x) { return std::erf(x); });
  if (op == "tanh") return un([](double x) { return std::tanh(x); });
  if (op == "sigmoid") return un([](double x) { return 1 / (1 + std::exp(-x)); });
  if (op == "relu") return un([](double x) { return x > 0 ? x : 0; });
  if (op == "identity") return un([](double x) { return x; });
  if (op == "floor") return un([](double x) { return std::floor(x); });
  if (op == "ceil") return un([](double x) { return std::ceil(x); });
  if (op == "cos") return un([](double x) { return std::cos(x); });
  if (op == "sin") return un([](double x) { return std::sin(x); });
  if (op == "gelu") {
    if (StrAttr(a, "approximate", "none") == "tanh") {
      return un([](double x) {
        return 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
      });
    }
    return un([](double x) { return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0))); });
  }
  if (op == "where") {
    return {Elementwise(in, in[1].dtype,
                        [](const std::vector<double>& x) { return x[0] != 0 ? x[1] : x[2]; })};
  }
  if (op == "cast") {
    DType to = std::get<DType>(a.at("to"));
    Ref out{to, in[0].shape, {}};
    for (double x : in[0].v) out.v.push_back(StoreAs(to, x));
    return {out};
  }
  if (op == "fused_matmul") {  // act(x @ op(w) + bias) [+ addend], straight loops
    const bool tb = IntAttr(a, "trans_b", 0) != 0;
    const std::string act = StrAttr(a, "activation", "none");
    const Shape& xs = in[0].shape;
    const int64_t k = xs.back(), n = tb ? in[1].shape[0] : in[1].shape[1];
    const int64_t m = Numel(xs) / k;
    Shape os = xs;
    os.back() = n;
    const DType out_dt = a.count("dtype") ? std::get<DType>(a.at("dtype")) : dt;
    Ref out{out_dt, os, std::vector<double>(m * n)};
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < n; ++j) {
        double s = in.size() >= 3 ? in[2].v[j] : 0.0;
        for (int64_t p = 0; p < k; ++p) {
          s += in[0].v[i * k + p] * (tb ? in[1].v[j * k + p] : in[1].v[p * n + j]);
        }
        if (act == "gelu") s = 0.5 * s * (1 + std::erf(s / std::sqrt(2.0)));
        if (act == "gelu_tanh") {
          s = 0.5 * s * (1 + std::tanh(std::sqrt(2 / M_PI) * (s + 0.044715 * s * s * s)));
        }
        if (act == "relu") s = s > 0 ? s : 0;
        if (in.size() == 4) s += in[3].v[i * n + j];
        out.v[i * n + j] = s;
      }
    }
    return {out};
  }
  if (op == "attention") {  // materialized scores, plain softmax
    const bool bthd = StrAttr(a, "layout", "bhtd") == "bthd";
    const Shape& qs = in[0].shape;
    const int64_t b = qs[0], h = bthd ? qs[2] : qs[1], tq = bthd ? qs[1] : qs[2], d = qs[3];
    const int64_t tk = bthd ? in[1].shape[1] : in[1].shape[2], dv = in[2].shape[3];
    const double scale = FloatAttr(a, "scale", 1.0 / std::sqrt(static_cast<double>(d)));
    const double softcap = FloatAttr(a, "softcap", 0.0);  // tanh capping before the mask
    // Attention dropout: dropout's mask over the [b, h, tq, tk] probabilities, the counter
    // the last operand (an integer scalar) when there is one.
    const double dropout = FloatAttr(a, "dropout", 0.0);
    const bool counter = in.size() > 3 && in.back().shape.empty() && IsInt(in.back().dtype);
    const bool has_mask = in.size() - (counter ? 1 : 0) == 4;
    const uint64_t key = ir::DropoutKey(static_cast<uint64_t>(IntAttr(a, "seed", 0)),
                                        counter ? static_cast<int64_t>(in.back().v[0]) : 0);
    // r's heads: h, or fewer for k / v (grouped-query: query head hi reads hi / (h / hr)).
    auto at = [&](const Ref& r, int64_t bi, int64_t hi, int64_t t, int64_t e, int64_t T,
                  int64_t E) {
      const int64_t hr = bthd ? r.shape[2] : r.shape[1], hh = hi / (h / hr);
      return bthd ? r.v[((bi * T + t) * hr + hh) * E + e] : r.v[((bi * hr + hh) * T + t) * E + e];
    };
    Shape os = bthd ? Shape{b, tq, h, dv} : Shape{b, h, tq, dv};
    Ref out{dt, os, std::vector<double>(Numel(os))};
    const Shape scores{b, h, tq, tk};
    for (int64_t bi = 0; bi < b; ++bi) {
      for (int64_t hi = 0; hi < h; ++hi) {
        for (int64_t i = 0; i < tq; ++i) {
          std::vector<double> s(tk);
          double mx = -INFINITY;
          for (int64_t j = 0; j < tk; ++j) {
            double dot = 0;
            for (int64_t e = 0; e < d; ++e) dot += at(in[0], bi, hi, i, e, tq, d) * at(in[1], bi, hi, j, e, tk, d);
            s[j] = dot * scale;
            if (softcap > 0) s[j] = softcap * std::tanh(s[j] / softcap);
            if (has_mask) {
              double mv = in[3].v[BroadcastIndex({bi, hi, i, j}, in[3].shape)];
              if (in[3].dtype == DType::kBool) {
                if (mv != 0) s[j] = -INFINITY;
              } else {
                s[j] += mv;
              }
            }
            mx = std::max(mx, s[j]);
          }
          double sum = 0;
          for (int64_t j = 0; j < tk; ++j) sum += (s[j] = std::exp(s[j] - mx));
          for (int64_t j = 0; j < tk && dropout > 0; ++j) {
            const uint64_t idx = static_cast<uint64_t>(((bi * h + hi) * tq + i) * tk + j);
            s[j] = ir::DropoutKeeps(key, idx, ir::DropoutThreshold(dropout))
                       ? s[j] / (1 - dropout)
                       : 0.0;
          }
          for (int64_t e = 0; e < dv; ++e) {
            double o = 0;
            for (int64_t j = 0; j < tk; ++j) o += s[j] / sum * at(in[2], bi, hi, j, e, tk, dv);
            const int64_t oi = bthd ? ((bi * tq + i) * h + hi) * dv + e : ((bi * h + hi) * tq + i) * dv + e;
            out.v[oi] = o;
          }
        }
      }
    }
    return {out};
  }
  if (op == "matmul") {
    Shape as = in[0].shape, bs = in[1].shape;
    bool a1 = as.size() == 1, b1 = bs.size() == 1;
    if (a1) as.insert(as.begin(), 1);
    if (b1) bs.push_back(1);
    int64_t m = as[as.size() - 2], k = as.back(), n = bs.back();
    Shape abatch(as.begin(), as.end() - 2), bbatch(bs.begin(), bs.end() - 2);
    Shape batch = Broadcast({abatch, bbatch});
    Shape full = batch;
    full.push_back(m);
    full.push_back(n);
    Ref out{dt, {}, std::vector<double>(Numel(full))};
    for (int64_t i = 0; i < Numel(full); ++i) {
      auto idx = Unravel(i, full);
      std::vector<int64_t> bidx(idx.begin(), idx.end() - 2);
      int64_t ai = BroadcastIndex(bidx, abatch), bi = BroadcastIndex(bidx, bbatch);
      int64_t r = idx[idx.size() - 2], c = idx.back();
      double s = 0;
      for (int64_t p = 0; p < k; ++p) s += in[0].v[(ai * m + r) * k + p] * in[1].v[(bi * k + p) * n + c];
      out.v[i] = s;
    }
    out.shape = batch;
    if (!a1) out.shape.push_back(m);
    if (!b1) out.shape.push_back(n);
    return {out};
  }
  if (op == "gemm") {
    bool ta = IntAttr(a, "trans_a", 0), tb = IntAttr(a, "trans_b", 0);
    double alpha = FloatAttr(a, "alpha", 1), beta = FloatAttr(a, "beta", 1);
    int64_t m = ta ? in[0].shape[1] : in[0].shape[0], k = ta ? in[0].shape[0] : in[0].shape[1];
    int64_t n = tb ? in[1].shape[0] : in[1].shape[1];
    Ref out{dt, {m, n}, std::vector<double>(m * n)};
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < n; ++j) {
        double s = 0;
        for (int64_t p = 0; p < k; ++p) {
          s += in[0].v[ta ? p * m + i : i * k + p] * in[1].v[tb ? j * k + p : p * n + j];
        }
        double c = in.size() > 2 ? in[2].v[BroadcastIndex({i, j}, in[2].shape)] : 0;
        out.v[i * n + j] = alpha * s + beta * c;
      }
    }
    return {out};
  }
  if (op == "rotary") {  // the exported chain: concat(x1 cos - x2 sin, x2 cos + x1 sin)
    const Shape& s = in[0].shape;
    const int64_t d = s.back(), rd = IntAttr(a, "rotary_dim", d), h = rd / 2;
    const bool interleaved = IntAttr(a, "interleaved", 0) != 0;  // pairs (2i, 2i + 1)
    Shape half = s;
    half.back() = h;
    const double sign = IntAttr(a, "inverse", 0) ? -1 : 1;  // inverse: sin negated
    Ref out{dt, s, in[0].v};  // x[..., rd:] passes through
    for (int64_t e = 0; e < Numel(half); ++e) {
      const int64_t t = BroadcastIndex(Unravel(e, half), in[1].shape);
      const double c = in[1].v[t], sn = sign * in[2].v[t];
      const int64_t row = e / h, i = e % h;
      const int64_t ia = row * d + (interleaved ? 2 * i : i), ib = ia + (interleaved ? 1 : h);
      const double x1 = in[0].v[ia], x2 = in[0].v[ib];
      out.v[ia] = x1 * c - x2 * sn;
      out.v[ib] = x2 * c + x1 * sn;
    }
    return {out};
  }
  if (op == "swiglu" || op == "swiglu_grad") {  // g sigmoid(g) u and its two partials
    auto sig = [](double g) { return 1 / (1 + std::exp(-g)); };
    const std::string act = a.count("activation") ? std::get<std::string>(a.at("activation"))
                                                  : std::string("silu");
    if (act != "silu") {  // GeGLU: gelu(g) u; du = dy gelu(g), dg = dy u gelu'(g)
      const bool th = act == "gelu_tanh";
      auto gelu = [th](double x) {
        if (th) return 0.5 * x * (1 + std::tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)));
        return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0)));
      };
      auto dgelu = [th](double x) {
        if (th) {
          const double k0 = 0.7978845608028654, k1 = 0.044715;
          const double t = std::tanh(k0 * (x + k1 * x * x * x));
          return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * k0 * (1 + 3 * k1 * x * x);
        }
        return 0.5 * (1 + std::erf(x / std::sqrt(2.0))) +
               x * std::exp(-0.5 * x * x) / std::sqrt(2 * M_PI);
      };
      if (op == "swiglu") {
        return {Elementwise(in, dt, [&](const std::vector<double>& x) {
          return gelu(x[0]) * x[1];
        })};
      }
      Ref dg = Elementwise(in, dt, [&](const std::vector<double>& x) {
        return x[0] * x[2] * dgelu(x[1]);
      });
      Ref du = Elementwise(in, dt, [&](const std::vector<double>& x) {
        return x[0] * gelu(x[1]);
      });
      return {dg, du};
    }
    if (op == "swiglu") {
      return {Elementwise(in, dt, [&](const std::vector<double>& x) {
        return x[0] * sig(x[0]) * x[1];
      })};
    }
    // (dy, g, u) -> (dg, du)
    Ref dg = Elementwise(in, dt, [&](const std::vector<double>& x) {
      const double s = sig(x[1]);
      return x[0] * x[2] * (s + x[1] * s * (1 - s));
    });
    Ref du = Elementwise(in, dt, [&](const std::vector<double>& x) {
      return x[0] * x[1] * sig(x[1]);
    });
    return {dg, du};
  }
  if (op == "gemm_bgrad") {  // the gemm and the reduce_sum it replaces, in their dtypes
    Ref y = Reference("gemm", {{"trans_a", int64_t{IntAttr(a, "trans_a", 0)}}}, {in[0], in[1]},
                      1)[0];
    // db: b's column sums, or a's with bias_of="a".
    const bool of_a = a.count("bias_of") && std::get<std::string>(a.at("bias_of")) == "a";
    Ref db = Reference("reduce_sum",
                       {{"axes", std::vector<int64_t>{0}}, {"keepdims", int64_t{0}}},
                       {in[of_a ? 0 : 1]}, 1)[0];
    if (a.count("dtype")) y.dtype = std::get<DType>(a.at("dtype"));
    if (a.count("bias_dtype")) db.dtype = std::get<DType>(a.at("bias_dtype"));
    return {y, db};
  }
  if (op == "softmax" || op == "log_softmax") {
    int64_t axis = IntAttr(a, "axis", -1);
    const Shape& s = in[0].shape;
    if (axis < 0) axis += s.size();
    Ref out{dt, s, std::vector<double>(in[0].v.size())};
    for (int64_t i = 0; i < Numel(s); ++i) {
      auto idx = Unravel(i, s);
      std::vector<double> row;
      for (int64_t j = 0; j < s[axis]; ++j) {
        idx[axis] = j;
        row.push_back(in[0].v[Ravel(idx, s)]);
      }
      double lse = RefLogSumExp(row);
      out.v[i] = op == "softmax" ? std::exp(in[0].v[i] - lse) : in[0].v[i] - lse;
    }
    return {out};
  }
  if (op == "layer_norm") {
    int64_t axis = IntAttr(a, "axis", -1);
    double eps = FloatAttr(a, "epsilon", 1e-5);
    const Shape& s = in[0].shape;
    if (axis < 0) axis += s.size();
    int64_t d = 1;
    for (size_t i = axis; i < s.size(); ++i) d *= s[i];
    int64_t rows = Numel(s) / d;
    Shape stat = s;
    for (size_t i = axis; i < s.size(); ++i) stat[i] = 1;
    Ref y{dt, s, std::vector<double>(Numel(s))}, mean{DType::kF32, stat, {}}, istd{DType::kF32, stat, {}};
    for (int64_t r = 0; r < rows; ++r) {
      double mu = 0, var = 0;
      for (int64_t j = 0; j < d; ++j) mu += in[0].v[r * d + j];
      mu /= d;
      for (int64_t j = 0; j < d; ++j) var += (in[0].v[r * d + j] - mu) * (in[0].v[r * d + j] - mu);
      var /= d;
      double is = 1 / std::sqrt(var + eps);
      for (int64_t j = 0; j < d; ++j) {
        double b = in.size() > 2 ? in[2].v[in[2].v.size() == 1 ? 0 : j] : 0;
        y.v[r * d + j] = (in[0].v[r * d + j] - mu) * is * in[1].v[in[1].v.size() == 1 ? 0 : j] + b;
      }
      mean.v.push_back(mu);
      istd.v.push_back(is);
    }
    std::vector<Ref> outs{y, mean, istd};
    outs.resize(num_outputs);
    return outs;
  }
  if (op.rfind("reduce_", 0) == 0) {
    std::vector<int64_t> axes = IntsAttr(a, "axes");
    bool keep = IntAttr(a, "keepdims", 1);
    const Shape& s = in[0].shape;
    std::vector<bool> red(s.size(), axes.empty());
    for (int64_t ax : axes) red[ax] = true;
    Shape kept;  // keepdims shape
    for (size_t d = 0; d < s.size(); ++d) kept.push_back(red[d] ? 1 : s[d]);
    std::vector<std::vector<double>> groups(Numel(kept));
    for (int64_t i = 0; i < Numel(s); ++i) {
      auto idx = Unravel(i, s);
      for (size_t d = 0; d < s.size(); ++d) {
        if (red[d]) idx[d] = 0;
      }
      groups[Ravel(idx, kept)].push_back(in[0].v[i]);
    }
    Ref out{dt, {}, {}};
    for (size_t d = 0; d < s.size(); ++d) {
      if (!red[d]) out.shape.push_back(s[d]);
      else if (keep) out.shape.push_back(1);
    }
    for (auto& g : groups) {
      double r = 0;
      if (op == "reduce_sum" || op == "reduce_mean") {
        for (double x : g) r += x;
        if (op == "reduce_mean") r /= g.size();
      } else if (op == "reduce_max") {
        r = *std::max_element(g.begin(), g.end());
      } else {
        r = *std::min_element(g.begin(), g.end());
      }
      out.v.push_back(StoreAs(dt, r));
    }
    return {out};
  }
  if (op == "reshape") return {Ref{dt, IntsAttr(a, "shape"), in[0].v}};
  if (op == "expand") {
    Ref shape_only{dt, IntsAttr(a, "shape"), std::vector<double>(Numel(IntsAttr(a, "shape")))};
    return {Elementwise({in[0], shape_only}, dt,
                        [](const std::vector<double>& x) { return x[0]; })};
  }
  if (op == "transpose") {
    std::vector<int64_t> perm = IntsAttr(a, "perm");
    const Shape& s = in[0].shape;
    Shape os;
    for (int64_t p : perm) os.push_back(s[p]);
    Ref out{dt, os, std::vector<double>(in[0].v.size())};
    for (int64_t i = 0; i < Numel(os); ++i) {
      auto oi = Unravel(i, os);
      std::vector<int64_t> ii(s.size());
      for (size_t d = 0; d < perm.size(); ++d) ii[perm[d]] = oi[d];
      out.v[i] = in[0].v[Ravel(ii, s)];
    }
    return {out};
  }
  if (op == "split" || op == "slice") {
    const Shape& s = in[0].shape;
    std::vector<int64_t> starts, ends, steps;
    std::vector<std::vector<int64_t>> slices;  // per output: starts, ends for each dim
    std::vector<Ref> outs;
    auto take = [&](const std::vector<int64_t>& st, const std::vector<int64_t>& en,
                    const std::vector<int64_t>& sp) {
      Shape os;
      for (size_t d = 0; d < s.size(); ++d) {
        os.push_back(std::max<int64_t>(0, sp[d] > 0 ? (en[d] - st[d] + sp[d] - 1) / sp[d]
                                                    : (st[d] - en[d] - sp[d] - 1) / -sp[d]));
      }
      Ref out{dt, os, {}};
      for (int64_t i = 0; i < Numel(os); ++i) {
        auto oi = Unravel(i, os);
        for (size_t d = 0; d < s.size(); ++d) oi[d] = st[d] + oi[d] * sp[d];
        out.v.push_back(in[0].v[Ravel(oi, s)]);
      }
      outs.push_back(out);
    };
    if (op == "slice") {
      take(IntsAttr(a, "starts"), IntsAttr(a, "ends"), IntsAttr(a, "steps"));
    } else {
      int64_t axis = IntAttr(a, "axis", 0), pos = 0;
      for (int64_t size : IntsAttr(a, "sizes")) {
        std::vector<int64_t> st(s.size(), 0), en = s, sp(s.size(), 1);
        st[axis] = pos;
        en[axis] = pos + size;
        pos += size;
        take(st, en, sp);
      }
    }
    return outs;
  }
  if (op == "concat") {
    int64_t axis = IntAttr(a, "axis", 0);
    Shape os = in[0].shape;
    os[axis] = 0;
    for (const Ref& r : in) os[axis] += r.shape[axis];
    Ref out{dt, os, {}};
    for (int64_t i = 0; i < Numel(os); ++i) {
      auto oi = Unravel(i, os);
      size_t k = 0;
      while (oi[axis] >= in[k].shape[axis]) oi[axis] -= in[k++].shape[axis];
      out.v.push_back(in[k].v[Ravel(oi, in[k].shape)]);
    }
    return {out};
  }
  if (op == "gather") {
    int64_t axis = IntAttr(a, "axis", 0);
    const Shape& s = in[0].shape;
    Shape os(s.begin(), s.begin() + axis);
    os.insert(os.end(), in[1].shape.begin(), in[1].shape.end());
    os.insert(os.end(), s.begin() + axis + 1, s.end());
    Ref out{dt, os, {}};
    const size_t ir = in[1].shape.size();
    for (int64_t i = 0; i < Numel(os); ++i) {
      auto oi = Unravel(i, os);
      std::vector<int64_t> ii(oi.begin(), oi.begin() + axis);
      std::vector<int64_t> qi(oi.begin() + axis, oi.begin() + axis + ir);
      int64_t q = static_cast<int64_t>(in[1].v[Ravel(qi, in[1].shape)]);
      ii.push_back(q < 0 ? q + s[axis] : q);
      ii.insert(ii.end(), oi.begin() + axis + ir, oi.end());
      out.v.push_back(in[0].v[Ravel(ii, s)]);
    }
    return {out};
  }
  if (op == "trilu") {
    bool upper = IntAttr(a, "upper", 1);
    int64_t k = IntAttr(a, "k", 0);
    const Shape& s = in[0].shape;
    Ref out{dt, s, in[0].v};
    for (int64_t i = 0; i < Numel(s); ++i) {
      auto idx = Unravel(i, s);
      int64_t r = idx[s.size() - 2], c = idx.back();
      bool keep = upper ? c - r >= k : c - r <= k;
      if (!keep) out.v[i] = 0;
    }
    return {out};
  }
  if (op == "constant") {
    const ir::Tensor& t = std::get<ir::Tensor>(a.at("value"));
    Ref out{t.dtype(), t.shape(), {}};
    for (int64_t i = 0; i < t.num_elements(); ++i) out.v.push_back(t.GetDouble(i));
    return {out};
  }
  if (op == "softmax_ce_loss" || op == "nll_loss") {
    const Shape& s = in[0].shape;
    int64_t n = s[0], c = s[1], d = Numel(s) / (n * c);
    std::string red = StrAttr(a, "reduction", "mean");
    bool has_ignore = a.count("ignore_index");
    int64_t ignore = IntAttr(a, "ignore_index", 0);
    Ref lp{dt, s, in[0].v};
    if (op == "softmax_ce_loss") {
      for (int64_t i = 0; i < n; ++i) {
        for (int64_t k = 0; k < d; ++k) {
          std::vector<double> row;
          for (int64_t j = 0; j < c; ++j) row.push_back(in[0].v[(i * c + j) * d + k]);
          double lse = RefLogSumExp(row);
          for (int64_t j = 0; j < c; ++j) lp.v[(i * c + j) * d + k] -= lse;
        }
      }
    }
    Ref loss{dt, red == "none" ? in[1].shape : Shape{}, {}};
    double total = 0, wsum = 0;
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t k = 0; k < d; ++k) {
        int64_t lab = static_cast<int64_t>(in[1].v[i * d + k]);
        double w = (has_ignore && lab == ignore) ? 0 : (in.size() > 2 ? in[2].v[lab] : 1);
        double l = w == 0 ? 0 : -w * lp.v[(i * c + lab) * d + k];
        if (red == "none") loss.v.push_back(l);
        total += l;
        wsum += w;
      }
    }
    if (red == "sum") loss.v = {total};
    if (red == "mean") loss.v = {total / wsum};
    std::vector<Ref> outs{loss, lp};
    outs.resize(num_outputs);
    return outs;
  }
  ADD_FAILURE() << "no reference for op " << op;
  return {};
}

// ---------------------------------------------------------------------------------------------
// The case table.

enum class Gen { kAuto, kPositive, kRange };

struct In {
  DType dtype;
  Shape shape;
  Gen gen = Gen::kAuto;
  int64_t lo = 0, hi = 0;  // kRange: integers in [lo, hi] (any dtype)
};

struct Case {
  std::string op;
  AttrMap attrs;
  std::vector<In> inputs;
  int num_outputs = 1;
  double rtol = -1, atol = -1;  // < 0: per-dtype defaults
  std::string error;            // non-empty: EvaluateNode must fail with this in the message
  std::vector<TensorType> out_types;  // for error cases (no reference)
};

In F32(Shape s, Gen g = Gen::kAuto) { return In{DType::kF32, std::move(s), g}; }
In F64(Shape s, Gen g = Gen::kAuto) { return In{DType::kF64, std::move(s), g}; }
In I64(Shape s) { return In{DType::kI64, std::move(s)}; }
In I32(Shape s) { return In{DType::kI32, std::move(s)}; }
In Bool(Shape s) { return In{DType::kBool, std::move(s)}; }
In Range(DType d, Shape s, int64_t lo, int64_t hi) { return In{d, std::move(s), Gen::kRange, lo, hi}; }

std::string CaseName(const Case& c) {
  std::vector<std::string> ins;
  for (const In& i : c.inputs) {
    ins.push_back(TensorType{i.dtype, i.shape}.ToString());
  }
  std::string attrs;
  for (const auto& [k, v] : c.attrs) {
    absl::StrAppend(&attrs, k, "=");
    if (auto* i = std::get_if<int64_t>(&v)) absl::StrAppend(&attrs, *i);
    else if (auto* s = std::get_if<std::string>(&v)) absl::StrAppend(&attrs, *s);
    else if (auto* l = std::get_if<std::vector<int64_t>>(&v)) absl::StrAppend(&attrs, "[", absl::StrJoin(*l, ","), "]");
    else if (auto* d = std::get_if<double>(&v)) absl::StrAppend(&attrs, *d);
    else if (auto* t = std::get_if<DType>(&v)) absl::StrAppend(&attrs, std::string(ir::DTypeName(*t)));
    absl::StrAppend(&attrs, " ");
  }
  return absl::StrCat(c.op, "(", absl::StrJoin(ins, ", "), ") {", attrs, "}");
}

std::vector<Case> AllCases() {
  using V = std::vector<int64_t>;
  std::vector<Case> cs;
  // Elementwise binary: same shape, scalar, row and column broadcast, both-sided broadcast,
  // large (threaded) tensors, every dtype family.
  for (std::string op : {"add", "sub", "mul", "div", "max", "min"}) {
    cs.push_back({op, {}, {F32({3, 5}), F32({3, 5})}});
    cs.push_back({op, {}, {F32({2, 3, 8}), F32({8})}});
    cs.push_back({op, {}, {F32({2, 3, 1}), F32({3, 4})}});
    cs.push_back({op, {}, {F32({}), F32({4, 2})}});
    cs.push_back({op, {}, {F64({4, 1, 3}), F64({1, 5, 1})}});
    cs.push_back({op, {}, {F32({64, 1024}), F32({64, 1})}});
    cs.push_back({op, {}, {F32({200, 300}), F32({200, 300})}});
    if (op != "div") {
      cs.push_back({op, {}, {I64({3, 4}), I64({4})}});
      cs.push_back({op, {}, {I32({2, 3}), I32({2, 3})}});
    }
  }
  cs.push_back({"add", {}, {In{DType::kF16, {4, 6}}, In{DType::kF16, {6}}}});
  cs.push_back({"mul", {}, {In{DType::kBF16, {4, 6}}, In{DType::kBF16, {4, 6}}}});
  // Integer division truncates toward zero; divisors never 0 here.
  cs.push_back({"div", {}, {Range(DType::kI64, {5, 7}, -50, 50), Range(DType::kI64, {7}, 1, 9)}});
  cs.push_back({"div", {}, {Range(DType::kI32, {4, 4}, -50, 50), Range(DType::kI32, {4, 4}, -9, -1)}});
  cs.push_back({"pow", {}, {F32({3, 4}, Gen::kPositive), F32({4})}});
  cs.push_back({"pow", {}, {F64({3, 4}, Gen::kPositive), F64({})}});
  cs.push_back({"pow", {}, {Range(DType::kI64, {6}, -3, 3), Range(DType::kI64, {6}, 0, 4)}});
  for (std::string op : {"equal", "less", "greater", "less_equal", "greater_equal"}) {
    cs.push_back({op, {}, {Range(DType::kF32, {3, 4}, -2, 2), Range(DType::kF32, {4}, -2, 2)}});
    cs.push_back({op, {}, {Range(DType::kI64, {2, 3, 4}, -2, 2), Range(DType::kI64, {3, 1}, -2, 2)}});
  }
  cs.push_back({"equal", {}, {Bool({2, 5}), Bool({5})}});
  for (std::string op : {"and", "or", "xor"}) {
    cs.push_back({op, {}, {Bool({3, 4}), Bool({3, 4})}});
    cs.push_back({op, {}, {Bool({2, 3, 4}), Bool({1, 4})}});
  }
  cs.push_back({"not", {}, {Bool({7, 3})}});
  // Unary float ops, f32 (fast math) and f64; big enough to take the threaded path too.
  for (std::string op : {"neg", "abs", "exp", "erf", "tanh", "sigmoid", "relu", "identity",
                         "floor", "ceil", "cos", "sin"}) {
    cs.push_back({op, {}, {F32({4, 33})}});
    cs.push_back({op, {}, {F64({3, 5})}});
    cs.push_back({op, {}, {F32({128, 1024})}});
  }
  for (std::string op : {"sqrt", "reciprocal", "log"}) {
    cs.push_back({op, {}, {F32({4, 33}, Gen::kPositive)}});
    cs.push_back({op, {}, {F64({3, 5}, Gen::kPositive)}});
  }
  cs.push_back({"exp", {}, {In{DType::kF16, {3, 9}}}});
  cs.push_back({"tanh", {}, {In{DType::kBF16, {3, 9}}}});
  cs.push_back({"neg", {}, {I64({3, 4})}});
  cs.push_back({"abs", {}, {I32({3, 4})}});
  cs.push_back({"relu", {}, {I64({9})}});
  cs.push_back({"identity", {}, {I64({2, 2})}});
  cs.push_back({"identity", {}, {Bool({5})}});
  cs.push_back({"gelu", {}, {F32({8, 100})}});
  cs.push_back({"gelu", {{"approximate", std::string("none")}}, {F64({8, 10})}});
  cs.push_back({"gelu", {{"approximate", std::string("tanh")}}, {F32({64, 768})}});
  cs.push_back({"gelu", {{"approximate", std::string("tanh")}}, {F64({8, 10})}});
  // rotary: tables [T, D/2] broadcast over batch and heads, per batch, one angle; f64 x with
  // f32 tables; f16 / bf16 x (through the f32 kernel); both directions; an odd head size.
  {
    const AttrMap inv = {{"inverse", int64_t{1}}};
    cs.push_back({"rotary", {}, {F32({2, 3, 16, 8}), F32({16, 4}), F32({16, 4})}});
    cs.push_back({"rotary", inv, {F32({2, 3, 16, 8}), F32({16, 4}), F32({16, 4})}});
    cs.push_back({"rotary", {}, {F32({2, 3, 5, 64}), F32({2, 1, 5, 32}), F32({2, 1, 5, 32})}});
    cs.push_back({"rotary", inv, {F32({7, 2}), F32({1}), F32({1})}});
    cs.push_back({"rotary", {}, {F64({3, 4, 6}), F64({4, 3}), F64({4, 3})}});
    cs.push_back({"rotary", inv, {F64({3, 4, 6}), F32({4, 3}), F32({4, 3})}});
    cs.push_back({"rotary", {}, {In{DType::kBF16, {2, 6, 16}}, F32({6, 8}), F32({6, 8})}});
    cs.push_back({"rotary", inv,
                  {In{DType::kF16, {2, 6, 16}}, In{DType::kF16, {6, 8}}, In{DType::kF16, {6, 8}}}});
    // Partial (rotary_dim < D: the rest passes through) and interleaved pairs (GPT-J).
    const AttrMap part = {{"rotary_dim", int64_t{4}}};
    const AttrMap inter = {{"interleaved", int64_t{1}}};
    const AttrMap both = {{"rotary_dim", int64_t{6}}, {"interleaved", int64_t{1}},
                          {"inverse", int64_t{1}}};
    cs.push_back({"rotary", part, {F32({2, 3, 16, 8}), F32({16, 2}), F32({16, 2})}});
    cs.push_back({"rotary", inter, {F32({2, 3, 16, 8}), F32({16, 4}), F32({16, 4})}});
    cs.push_back({"rotary", both, {F64({3, 4, 10}), F32({4, 3}), F32({4, 3})}});
    cs.push_back({"rotary", part, {In{DType::kBF16, {2, 6, 16}}, F32({6, 2}), F32({6, 2})}});
    Case odd{"rotary", {}, {F32({2, 3}), F32({2, 1}), F32({2, 1})}};
    odd.error = "D even";
    odd.out_types = {TensorType{DType::kF32, {2, 3}}};
    cs.push_back(odd);
  }
  // swiglu / swiglu_grad: f32, f64, f16 / bf16 (through the f32 kernel, one rounding); a size
  // that is not a multiple of any vector width; mismatched operands are an error.
  {
    cs.push_back({"swiglu", {}, {F32({64, 352}), F32({64, 352})}});
    cs.push_back({"swiglu", {}, {F64({3, 5, 7}), F64({3, 5, 7})}});
    cs.push_back({"swiglu", {}, {In{DType::kBF16, {4, 96}}, In{DType::kBF16, {4, 96}}}});
    cs.push_back({"swiglu", {}, {In{DType::kF16, {13}}, In{DType::kF16, {13}}}});
    // GeGLU (Gemma): the tanh and the erf form, both ways.
    for (const char* act : {"gelu_tanh", "gelu"}) {
      const AttrMap aa = {{"activation", std::string(act)}};
      cs.push_back({"swiglu", aa, {F32({8, 100}), F32({8, 100})}});
      cs.push_back({"swiglu", aa, {F64({3, 7}), F64({3, 7})}});
      cs.push_back({"swiglu", aa, {In{DType::kBF16, {4, 96}}, In{DType::kBF16, {4, 96}}}});
      Case gg{"swiglu_grad", aa, {F32({8, 100}), F32({8, 100}), F32({8, 100})}, 2};
      cs.push_back(gg);
    }
    Case grad{"swiglu_grad", {}, {F32({64, 352}), F32({64, 352}), F32({64, 352})}, 2};
    cs.push_back(grad);
    grad.inputs = {F64({3, 5, 7}), F64({3, 5, 7}), F64({3, 5, 7})};
    cs.push_back(grad);
    grad.inputs = {In{DType::kBF16, {4, 96}}, In{DType::kBF16, {4, 96}}, In{DType::kBF16, {4, 96}}};
    cs.push_back(grad);
    grad.inputs = {In{DType::kF16, {13}}, In{DType::kF16, {13}}, In{DType::kF16, {13}}};
    cs.push_back(grad);
    Case bad{"swiglu", {}, {F32({2, 3}), F32({3})}};
    bad.error = "one type";
    bad.out_types = {TensorType{DType::kF32, {2, 3}}};
    cs.push_back(bad);
  }
  // where: full and broadcast conditions, any value dtype.
  cs.push_back({"where", {}, {Bool({3, 4}), F32({3, 4}), F32({3, 4})}});
  cs.push_back({"where", {}, {Bool({1, 1, 4, 4}), F32({}), F32({2, 3, 4, 4})}});
  cs.push_back({"where", {}, {Bool({4}), I64({3, 4}), I64({1})}});
  cs.push_back({"where", {}, {Bool({2, 1}), In{DType::kF16, {2, 3}}, In{DType::kF16, {3}}}});
  // cast: every family, incl. f16/bf16 and bool, and round trips (f16 -> f32 is exact).
  for (DType from : {DType::kF32, DType::kF64, DType::kI32, DType::kI64, DType::kBool,
                     DType::kF16, DType::kBF16, DType::kI8, DType::kU8}) {
    for (DType to : {DType::kF32, DType::kF64, DType::kI32, DType::kI64, DType::kBool,
                     DType::kF16, DType::kBF16, DType::kI8, DType::kU8}) {
      In in = IsInt(from) || from == DType::kBool ? Range(from, {3, 5}, 0, 100)
                                                  : Range(from, {3, 5}, -100, 100);
      if (from == DType::kI8 || from == DType::kI32 || from == DType::kI64) in.lo = -100;
      if (to == DType::kU8 || to == DType::kBool) in.lo = 0;  // in range for unsigned targets
      if (from == DType::kBool) in.hi = 1;
      Case c{"cast", {{"to", to}}, {in}};
      cs.push_back(c);
    }
  }
  cs.push_back({"cast", {{"to", DType::kI64}}, {F32({4, 5})}});  // truncation of fractions
  cs.push_back({"cast", {{"to", DType::kF16}}, {F32({4, 5})}, 1, 1e-3, 1e-4});
  cs.push_back({"cast", {{"to", DType::kBF16}}, {F32({4, 5})}, 1, 8e-3, 1e-4});
  // matmul: 1-D operands, batched with broadcast, linear-layer fold, many small batches.
  cs.push_back({"matmul", {}, {F32({3, 4}), F32({4, 5})}});
  cs.push_back({"matmul", {}, {F32({4}), F32({4, 5})}});
  cs.push_back({"matmul", {}, {F32({2, 3, 4}), F32({4})}});
  cs.push_back({"matmul", {}, {F32({4}), F32({4})}});
  cs.push_back({"matmul", {}, {F32({2, 7, 16}), F32({16, 9})}});
  cs.push_back({"matmul", {}, {F32({2, 1, 3, 4}), F32({5, 4, 6})}});
  cs.push_back({"matmul", {}, {F32({3, 4}), F32({2, 4, 5})}});
  cs.push_back({"matmul", {}, {F32({2, 6, 16, 8}), F32({2, 6, 8, 16})}, 1, 1e-5, 1e-5});
  cs.push_back({"matmul", {}, {F64({3, 2, 5}), F64({3, 5, 2})}});
  // Small batched products (micro-kernel path): odd sizes, 4x16 blocks plus edges, broadcast.
  cs.push_back({"matmul", {}, {F32({5, 7, 9}), F32({5, 9, 13})}, 1, 1e-5, 1e-5});
  cs.push_back({"matmul", {}, {F32({2, 4, 9, 33}), F32({1, 4, 33, 37})}, 1, 1e-5, 1e-5});
  cs.push_back({"matmul", {}, {F32({8, 3, 2}), F32({2, 1})}, 1, 1e-5, 1e-5});
  cs.push_back({"matmul", {}, {I64({2, 3}), I64({3, 2})}});
  // fused_matmul: transposed weight, bias, each activation; a GEMM big enough to be tiled over
  // threads (the epilogue runs per tile); f64.
  cs.push_back({"fused_matmul", {{"trans_b", int64_t{1}}, {"activation", std::string("gelu")}},
                {F32({2, 3, 4}), F32({5, 4}), F32({5})}, 1, 1e-5, 1e-5});
  cs.push_back({"fused_matmul", {{"activation", std::string("relu")}},
                {F32({3, 4}), F32({4, 6}), F32({6})}, 1, 1e-5, 1e-5});
  cs.push_back({"fused_matmul", {{"activation", std::string("gelu_tanh")}},
                {F32({7, 4}), F32({4, 3})}, 1, 1e-5, 1e-5});
  cs.push_back({"fused_matmul", {{"trans_b", int64_t{1}}, {"activation", std::string("gelu")}},
                {F32({2, 150, 64}), F32({600, 64}), F32({600})}, 1, 1e-4, 1e-4});
  cs.push_back({"fused_matmul", {{"trans_b", int64_t{1}}}, {F64({3, 5}), F64({2, 5}), F64({2})}});
  // bf16 (a --precision plan's linear layer evaluated on the host): computed in f32.
  cs.push_back({"fused_matmul", {{"trans_b", int64_t{1}}, {"activation", std::string("gelu")}},
                {In{DType::kBF16, {3, 8}}, In{DType::kBF16, {5, 8}}, In{DType::kBF16, {5}}}});
  // The addend (fuse-residual-add): f32 on a tiled GEMM, and bf16 operands with the f32 bias,
  // addend and result of {dtype=f32} (nothing rounded to bf16 after the inputs).
  cs.push_back({"fused_matmul", {{"trans_b", int64_t{1}}},
                {F32({2, 150, 64}), F32({600, 64}), F32({600}), F32({2, 150, 600})}, 1, 1e-4,
                1e-4});
  cs.push_back({"fused_matmul", {{"trans_b", int64_t{1}}, {"dtype", DType::kF32}},
                {In{DType::kBF16, {3, 8}}, In{DType::kBF16, {5, 8}}, F32({5}), F32({3, 5})}, 1,
                1e-5, 1e-5});
  // attention: both layouts, bool masks (broadcast, rows fully masked give NaN) and additive
  // ones, odd sizes; float key lengths up to 512 take whole rows, longer ones (and f64) the
  // online softmax across key tiles.
  cs.push_back({"attention", {{"scale", 0.5}}, {F32({2, 3, 5, 4}), F32({2, 3, 7, 4}), F32({2, 3, 7, 6})},
                1, 1e-5, 1e-5});
  cs.push_back({"attention", {{"layout", std::string("bthd")}, {"scale", 0.125}},
                {F32({2, 9, 2, 8}), F32({2, 9, 2, 8}), F32({2, 9, 2, 8}), Bool({1, 1, 9, 9})},
                1, 1e-5, 1e-5});
  cs.push_back({"attention", {{"layout", std::string("bthd")}, {"scale", 0.25}},
                {F32({1, 37, 3, 16}), F32({1, 300, 3, 16}), F32({1, 300, 3, 16}), F32({37, 300})},
                1, 1e-5, 1e-5});
  cs.push_back({"attention", {}, {F32({1, 2, 40, 16}), F32({1, 2, 130, 16}), F32({1, 2, 130, 8}),
                                  Bool({1, 2, 40, 130})}, 1, 1e-5, 1e-5});
  cs.push_back({"attention", {}, {F64({1, 1, 3, 2}), F64({1, 1, 4, 2}), F64({1, 1, 4, 2})}});
  cs.push_back({"attention", {{"layout", std::string("bthd")}},
                {F32({1, 45, 2, 8}), F32({1, 600, 2, 8}), F32({1, 600, 2, 5}), Bool({45, 600})},
                1, 1e-5, 1e-5});
  // Grouped-query attention (k / v with fewer heads, query head h reading h / (H / Hkv)): both
  // layouts, whole rows and the flash path, a per-head mask, f64.
  cs.push_back({"attention", {{"layout", std::string("bthd")}, {"scale", 0.125}},
                {F32({2, 9, 6, 8}), F32({2, 11, 2, 8}), F32({2, 11, 2, 5}), Bool({1, 6, 9, 11})},
                1, 1e-5, 1e-5});
  cs.push_back({"attention", {}, {F32({1, 4, 20, 16}), F32({1, 1, 530, 16}),
                                  F32({1, 1, 530, 8}), Bool({20, 530})}, 1, 1e-5, 1e-5});
  cs.push_back({"attention", {{"layout", std::string("bthd")}},
                {F32({1, 33, 4, 8}), F32({1, 600, 2, 8}), F32({1, 600, 2, 8})}, 1, 1e-5, 1e-5});
  cs.push_back({"attention", {}, {F64({2, 4, 3, 2}), F64({2, 2, 5, 2}), F64({2, 2, 5, 3}),
                                  F64({2, 1, 3, 5})}});
  // softcap (Gemma 2: scaled scores capped to softcap * tanh(s / softcap) before the mask),
  // small enough to bend the scores here: whole rows with a bool mask, the flash path with an
  // additive one, f64, grouped-query.
  cs.push_back({"attention", {{"layout", std::string("bthd")}, {"scale", 0.5}, {"softcap", 0.75}},
                {F32({2, 9, 2, 8}), F32({2, 9, 2, 8}), F32({2, 9, 2, 8}), Bool({1, 1, 9, 9})},
                1, 1e-5, 1e-5});
  cs.push_back({"attention", {{"scale", 0.5}, {"softcap", 1.0}},
                {F32({1, 2, 37, 16}), F32({1, 2, 600, 16}), F32({1, 2, 600, 8}),
                 F32({37, 600})}, 1, 1e-5, 1e-5});
  cs.push_back({"attention", {{"softcap", 0.5}},
                {F64({2, 4, 3, 2}), F64({2, 2, 5, 2}), F64({2, 2, 5, 3}), Bool({3, 5})}});
  // Attention dropout (dropout's mask over the probabilities, from the counter operand): whole
  // rows, the flash path (f32 past 512 keys, f64), grouped-query, no counter (0), an i32 one.
  cs.push_back({"attention", {{"layout", std::string("bthd")}, {"dropout", 0.3}, {"seed", int64_t{7}}},
                {F32({2, 9, 2, 8}), F32({2, 9, 2, 8}), F32({2, 9, 2, 8}), Bool({1, 1, 9, 9}),
                 Range(DType::kI64, {}, 0, 1000)}, 1, 1e-5, 1e-5});
  cs.push_back({"attention", {{"dropout", 0.2}, {"seed", int64_t{3}}},
                {F32({1, 4, 20, 16}), F32({1, 2, 530, 16}), F32({1, 2, 530, 8}), Bool({20, 530}),
                 Range(DType::kI32, {}, 0, 1000)}, 1, 1e-5, 1e-5});
  cs.push_back({"attention", {{"dropout", 0.5}},
                {F64({2, 4, 3, 2}), F64({2, 2, 5, 2}), F64({2, 2, 5, 3}), F64({2, 1, 3, 5})}});
  cs.push_back({"attention", {{"dropout", 0.4}, {"seed", int64_t{11}}, {"softcap", 0.5}},
                {F64({2, 4, 3, 2}), F64({2, 2, 5, 2}), F64({2, 2, 5, 3}),
                 Range(DType::kI64, {}, 0, 1000)}});
  cs.push_back({"matmul", {}, {In{DType::kF16, {2, 3}}, In{DType::kF16, {3, 4}}}, 1, 2e-3, 2e-3});
  cs.push_back({"gemm", {}, {F32({3, 4}), F32({4, 5})}});
  cs.push_back({"gemm", {{"trans_a", int64_t{1}}, {"trans_b", int64_t{1}}, {"alpha", 0.5},
                         {"beta", 2.0}},
                {F32({4, 3}), F32({5, 4}), F32({5})}});
  cs.push_back({"gemm", {{"trans_b", int64_t{1}}}, {F64({3, 4}), F64({5, 4}), F64({3, 1})}});
  cs.push_back({"gemm", {{"beta", 0.0}}, {F32({3, 4}), F32({4, 5}), F32({3, 5})}});
  // Weight and bias gradients in one (fuse-bias-grad): dW = x^T dy, db = column sums of dy;
  // bf16 operands with the f32 bias gradient of a --precision plan.
  cs.push_back({"gemm_bgrad", {{"trans_a", int64_t{1}}}, {F32({37, 5}), F32({37, 300})}, 2});
  cs.push_back({"gemm_bgrad", {}, {F64({4, 6}), F64({6, 3})}, 2});
  // nn.Linear's [out, in] weight: dW = dy^T x with db from dy, the first operand.
  cs.push_back({"gemm_bgrad", {{"trans_a", int64_t{1}}, {"bias_of", std::string("a")}},
                {F32({37, 5}), F32({37, 300})}, 2});
  cs.push_back({"gemm_bgrad", {{"trans_a", int64_t{1}}, {"bias_dtype", DType::kF32}},
                {In{DType::kBF16, {16, 8}}, In{DType::kBF16, {16, 12}}}, 2, 1e-2, 1e-2});
  cs.push_back({"gemm_bgrad",
                {{"trans_a", int64_t{1}}, {"dtype", DType::kF32}, {"bias_dtype", DType::kF32}},
                {In{DType::kBF16, {16, 8}}, In{DType::kBF16, {16, 12}}}, 2, 1e-2, 1e-2});
  // softmax / log_softmax on the last and on a middle axis.
  for (std::string op : {"softmax", "log_softmax"}) {
    cs.push_back({op, {{"axis", int64_t{-1}}}, {F32({4, 7})}});
    cs.push_back({op, {{"axis", int64_t{1}}}, {F32({2, 5, 3})}});
    cs.push_back({op, {{"axis", int64_t{2}}}, {F64({2, 3, 9})}});
    cs.push_back({op, {{"axis", int64_t{3}}}, {F32({8, 4, 64, 64})}});
  }
  cs.push_back({"softmax", {{"axis", int64_t{1}}}, {In{DType::kF16, {3, 8}}}});
  // layer_norm with 1, 2, 3 outputs, with and without bias, over 1 and 2 dims.
  cs.push_back({"layer_norm", {{"axis", int64_t{-1}}, {"epsilon", 1e-5}},
                {F32({2, 3, 8}), F32({8}), F32({8})}});
  cs.push_back({"layer_norm", {{"axis", int64_t{1}}, {"epsilon", 1e-3}},
                {F32({4, 3, 5}), F32({3, 5}), F32({3, 5})}, 3});
  cs.push_back({"layer_norm", {{"axis", int64_t{2}}}, {F64({2, 3, 6}), F64({6})}, 2});
  cs.push_back({"layer_norm", {{"axis", int64_t{1}}, {"epsilon", 1e-5}},
                {F32({1024, 768}), F32({768}), F32({768})}, 3, 1e-4, 1e-5});
  cs.push_back({"layer_norm", {{"axis", int64_t{1}}}, {In{DType::kBF16, {2, 16}}, In{DType::kBF16, {16}}}, 3});
  // reductions: keepdims 0/1, leading / middle / trailing / all axes, ints.
  for (std::string op : {"reduce_sum", "reduce_mean", "reduce_max", "reduce_min"}) {
    for (int64_t keep : {0, 1}) {
      cs.push_back({op, {{"axes", V{1}}, {"keepdims", keep}}, {F32({3, 4, 5})}});
      cs.push_back({op, {{"axes", V{0, 2}}, {"keepdims", keep}}, {F32({3, 4, 5})}});
      cs.push_back({op, {{"axes", V{}}, {"keepdims", keep}}, {F64({2, 3})}});
      cs.push_back({op, {{"axes", V{2}}, {"keepdims", keep}}, {F32({16, 32, 256})}});
      cs.push_back({op, {{"axes", V{0}}, {"keepdims", keep}}, {I64({4, 3})}});
    }
  }
  cs.push_back({"reduce_sum", {{"axes", V{1, 3}}, {"keepdims", int64_t{0}}}, {I32({2, 3, 1, 4})}});
  // Data movement.
  cs.push_back({"reshape", {{"shape", V{4, 3}}}, {F32({2, 6})}});
  cs.push_back({"reshape", {{"shape", V{6}}}, {I64({2, 3})}});
  cs.push_back({"expand", {{"shape", V{2, 3, 4}}}, {F32({3, 1})}});
  cs.push_back({"expand", {{"shape", V{3, 2}}}, {I64({2})}});
  cs.push_back({"expand", {{"shape", V{2, 2}}}, {Bool({})}});
  cs.push_back({"transpose", {{"perm", V{1, 0}}}, {F32({3, 5})}});
  cs.push_back({"transpose", {{"perm", V{0, 2, 1, 3}}}, {F32({2, 3, 4, 5})}});
  cs.push_back({"transpose", {{"perm", V{0, 2, 3, 1}}}, {F32({2, 3, 4, 5})}});
  cs.push_back({"transpose", {{"perm", V{2, 0, 1}}}, {I64({70, 3, 45})}});
  cs.push_back({"transpose", {{"perm", V{1, 0}}}, {In{DType::kF16, {33, 65}}}});
  cs.push_back({"transpose", {{"perm", V{0, 2, 1, 3}}}, {F32({8, 128, 12, 64})}});
  cs.push_back({"transpose", {{"perm", V{1, 0, 2}}}, {Bool({2, 3, 1})}});
  cs.push_back({"split", {{"axis", int64_t{1}}, {"sizes", V{2, 3, 1}}}, {F32({2, 6, 3})}, 3});
  cs.push_back({"split", {{"axis", int64_t{0}}, {"sizes", V{1, 1}}}, {I64({2, 3})}, 2});
  cs.push_back({"split", {{"axis", int64_t{2}}, {"sizes", V{768, 768, 768}}}, {F32({2, 16, 2304})}, 3});
  cs.push_back({"slice", {{"starts", V{1, 0}}, {"ends", V{3, 5}}, {"steps", V{1, 2}}}, {F32({4, 5})}});
  cs.push_back({"slice", {{"starts", V{3, 4}}, {"ends", V{-1, 0}}, {"steps", V{-1, -2}}}, {F32({4, 5})}});
  cs.push_back({"slice", {{"starts", V{0, 2, 1}}, {"ends", V{2, 2, 3}}, {"steps", V{1, 1, 1}}}, {I64({2, 3, 4})}});
  cs.push_back({"slice", {{"starts", V{0, 5}}, {"ends", V{3, -1}}, {"steps", V{2, -3}}}, {I32({3, 6})}});
  cs.push_back({"concat", {{"axis", int64_t{1}}}, {F32({2, 3}), F32({2, 1}), F32({2, 4})}});
  cs.push_back({"concat", {{"axis", int64_t{0}}}, {I64({1}), I64({2}), I64({1})}});
  cs.push_back({"concat", {{"axis", int64_t{2}}}, {F64({2, 2, 3}), F64({2, 2, 2})}});
  cs.push_back({"gather", {{"axis", int64_t{0}}}, {F32({10, 6}), Range(DType::kI64, {2, 3}, -10, 9)}});
  cs.push_back({"gather", {{"axis", int64_t{1}}}, {F32({3, 5, 2}), Range(DType::kI32, {4}, -5, 4)}});
  cs.push_back({"gather", {{"axis", int64_t{0}}}, {I64({4}), Range(DType::kI64, {}, -4, 3)}});
  cs.push_back({"gather", {{"axis", int64_t{0}}}, {F32({1000, 768}), Range(DType::kI64, {8, 128}, -1000, 999)}});
  for (int64_t upper : {0, 1}) {
    for (int64_t k : {-2, 0, 1, 5}) {
      cs.push_back({"trilu", {{"upper", upper}, {"k", k}}, {F32({2, 4, 5})}});
    }
  }
  cs.push_back({"trilu", {{"upper", int64_t{0}}}, {Bool({3, 3})}});
  cs.push_back({"constant", {{"value", ir::Tensor::FromVector<float>(DType::kF32, {2, 2}, {1, -2, 3.5f, 4})}}, {}});
  cs.push_back({"constant", {{"value", ir::Tensor::FromVector<int64_t>(DType::kI64, {3}, {7, -1, 0})}}, {}});
  // Losses: every reduction, with / without weights and ignore_index, [N,C] and [N,C,d].
  for (std::string op : {"softmax_ce_loss", "nll_loss"}) {
    for (std::string red : {"none", "sum", "mean"}) {
      for (bool ignore : {false, true}) {
        for (bool weights : {false, true}) {
          AttrMap a{{"reduction", red}};
          if (ignore) a["ignore_index"] = int64_t{2};
          std::vector<In> ins{F32({6, 5}), Range(DType::kI64, {6}, 0, 4)};
          if (weights) ins.push_back(F32({5}, Gen::kPositive));
          cs.push_back({op, a, ins, op == "softmax_ce_loss" ? 2 : 1});
          std::vector<In> ins3{F64({3, 4, 2}), Range(DType::kI32, {3, 2}, 0, 3)};
          if (weights) ins3.push_back(F64({4}, Gen::kPositive));
          cs.push_back({op, a, ins3, 1});
        }
      }
    }
  }
  cs.push_back({"softmax_ce_loss", {{"ignore_index", int64_t{-1}}}, {F32({4, 3}), Range(DType::kI64, {4}, -1, 2)}, 2});
  // Vocabulary-sized rows take the AVX2 path (and its scalar tail: 8195 = 8 * 1024 + 3).
  for (std::string red : {"none", "mean"}) {
    cs.push_back({"softmax_ce_loss", {{"reduction", red}, {"ignore_index", int64_t{7}}},
                  {F32({5, 8195}), Range(DType::kI64, {5}, 0, 8194)}, 2});
  }
  // Error cases: untrusted data and malformed nodes return errors, never crash.
  Case e;
  e = {"div", {}, {I64({3}), Range(DType::kI64, {3}, 0, 0)}, 1, -1, -1, "division by zero", {{DType::kI64, {3}}}};
  cs.push_back(e);
  e = {"gather", {{"axis", int64_t{0}}}, {F32({3, 2}), Range(DType::kI64, {2}, 3, 3)}, 1, -1, -1, "out of range", {{DType::kF32, {2, 2}}}};
  cs.push_back(e);
  e = {"gather", {{"axis", int64_t{0}}}, {F32({3, 2}), Range(DType::kI32, {2}, -4, -4)}, 1, -1, -1, "out of range", {{DType::kF32, {2, 2}}}};
  cs.push_back(e);
  e = {"nll_loss", {{"reduction", std::string("sum")}}, {F32({2, 3}), Range(DType::kI64, {2}, 3, 3)}, 1, -1, -1, "out of range", {{DType::kF32, {}}}};
  cs.push_back(e);
  e = {"constant", {{"ref", std::string("w")}}, {}, 1, -1, -1, "cannot be evaluated", {{DType::kF32, {2}}}};
  cs.push_back(e);
  e = {"transpose", {{"perm", V{0, 0}}}, {F32({2, 3})}, 1, -1, -1, "permutation", {{DType::kF32, {2, 3}}}};
  cs.push_back(e);
  e = {"add", {}, {F32({2, 3}), F32({4})}, 1, -1, -1, "broadcast", {{DType::kF32, {2, 3}}}};
  cs.push_back(e);
  e = {"matmul", {}, {F32({2, 3}), F32({4, 5})}, 1, -1, -1, "inner dimensions", {{DType::kF32, {2, 5}}}};
  cs.push_back(e);
  e = {"reshape", {{"shape", V{5}}}, {F32({2, 3})}, 1, -1, -1, "cannot reshape", {{DType::kF32, {5}}}};
  cs.push_back(e);
  e = {"slice", {{"starts", V{4}}, {"ends", V{2}}, {"steps", V{1}}}, {F32({5})}, 1, -1, -1, "not normalized", {{DType::kF32, {0}}}};
  cs.push_back(e);
  e = {"no_such_op", {}, {F32({2})}, 1, -1, -1, "no CPU kernel", {{DType::kF32, {2}}}};
  cs.push_back(e);
  return cs;
}

ir::Tensor RandomTensor(const In& in, std::mt19937_64& rng) {
  ir::Tensor t(in.dtype, in.shape);
  int64_t n = t.num_elements();
  std::uniform_real_distribution<double> normal(-2, 2), positive(0.1, 3);
  std::uniform_int_distribution<int64_t> small(-5, 5);
  std::uniform_int_distribution<int64_t> range(in.lo, std::max(in.lo, in.hi));
  for (int64_t i = 0; i < n; ++i) {
    double v;
    if (in.gen == Gen::kRange) {
      v = static_cast<double>(range(rng));
    } else if (in.dtype == DType::kBool) {
      v = static_cast<double>(rng() & 1);
    } else if (IsInt(in.dtype)) {
      v = static_cast<double>(small(rng));
    } else {
      v = in.gen == Gen::kPositive ? positive(rng) : normal(rng);
    }
    void* p = t.mutable_data();
    switch (in.dtype) {
      case DType::kF32: static_cast<float*>(p)[i] = static_cast<float>(v); break;
      case DType::kF64: static_cast<double*>(p)[i] = v; break;
      case DType::kF16: {  // exact for the values used (integers, or rounded to 1/64)
        float f = std::round(v * 64) / 64;
        static_cast<uint16_t*>(p)[i] = _cvtss_sh(f, 0);
        break;
      }
      case DType::kBF16: {  // multiples of 1/16 below 8 are exact in bf16
        float f = std::round(v * 16) / 16;
        uint32_t bits;
        std::memcpy(&bits, &f, 4);
        static_cast<uint16_t*>(p)[i] = static_cast<uint16_t>(bits >> 16);
        break;
      }
      case DType::kI8: static_cast<int8_t*>(p)[i] = static_cast<int8_t>(v); break;
      case DType::kU8: static_cast<uint8_t*>(p)[i] = static_cast<uint8_t>(v); break;
      case DType::kI32: static_cast<int32_t*>(p)[i] = static_cast<int32_t>(v); break;
      case DType::kI64: static_cast<int64_t*>(p)[i] = static_cast<int64_t>(v); break;
      case DType::kBool: static_cast<uint8_t*>(p)[i] = v != 0; break;
    }
  }
  return t;
}

void DefaultTolerance(DType d, double* rtol, double* atol) {
  switch (d) {
    case DType::kF32: *rtol = 2e-5; *atol = 1e-6; break;
    case DType::kF64: *rtol = 1e-11; *atol = 1e-12; break;
    case DType::kF16: *rtol = 2e-3; *atol = 1e-3; break;
    case DType::kBF16: *rtol = 1.6e-2; *atol = 1e-2; break;
    default: *rtol = 0; *atol = 0; break;
  }
}

class KernelCaseTest : public testing::TestWithParam<Case> {};

TEST_P(KernelCaseTest, MatchesReference) {
  const Case& c = GetParam();
  SCOPED_TRACE(CaseName(c));
  std::mt19937_64 rng(std::hash<std::string>()(CaseName(c)));
  std::vector<ir::Tensor> inputs;
  std::vector<Ref> refs;
  for (const In& in : c.inputs) {
    inputs.push_back(RandomTensor(in, rng));
    Ref r{in.dtype, in.shape, {}};
    for (int64_t i = 0; i < inputs.back().num_elements(); ++i) r.v.push_back(inputs.back().GetDouble(i));
    refs.push_back(std::move(r));
  }
  std::vector<Ref> expected;
  std::vector<TensorType> out_types = c.out_types;
  if (c.error.empty()) {
    expected = Reference(c.op, c.attrs, refs, c.num_outputs);
    ASSERT_EQ(static_cast<int>(expected.size()), c.num_outputs);
    out_types.clear();
    for (const Ref& r : expected) out_types.push_back({r.dtype, r.shape});
  }
  ir::Function fn("test");
  std::vector<ir::Value*> params;
  for (size_t i = 0; i < inputs.size(); ++i) {
    params.push_back(fn.AddParam(absl::StrCat("x", i), inputs[i].type()));
  }
  ir::Node* node = fn.AddNode(c.op, params, out_types, c.attrs, "/test");
  absl::StatusOr<std::vector<ir::Tensor>> got = EvaluateNode(*node, inputs);
  if (!c.error.empty()) {
    ASSERT_FALSE(got.ok()) << "expected an error containing '" << c.error << "'";
    EXPECT_NE(got.status().message().find(c.error), std::string::npos) << got.status();
    EXPECT_NE(got.status().message().find(c.op), std::string::npos)
        << "the error should name the op: " << got.status();
    return;
  }
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->size(), expected.size());
  for (size_t o = 0; o < expected.size(); ++o) {
    const ir::Tensor& t = (*got)[o];
    ASSERT_EQ(t.type(), out_types[o]);
    double rtol = c.rtol, atol = c.atol;
    double drtol, datol;
    DefaultTolerance(t.dtype(), &drtol, &datol);
    if (rtol < 0) rtol = drtol;
    if (atol < 0) atol = datol;
    int failures = 0;
    for (int64_t i = 0; i < t.num_elements() && failures < 5; ++i) {
      double want = expected[o].v[i];
      // For 16-bit outputs the reference is rounded like the output type stores it.
      double g = t.GetDouble(i);
      bool ok = (std::isnan(want) && std::isnan(g)) || std::fabs(g - want) <= atol + rtol * std::fabs(want);
      if (!ok) {
        ++failures;
        ADD_FAILURE() << "output " << o << " element " << i << ": got " << g << ", want " << want;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(All, KernelCaseTest, testing::ValuesIn(AllCases()),
                         [](const testing::TestParamInfo<Case>& info) {
                           std::string name = absl::StrCat(info.index, "_", info.param.op);
                           return name;
                         });

// ---------------------------------------------------------------------------------------------
// The vectorized f32 math against double precision over wide ranges (ulp-level accuracy).

void CheckUnaryAccuracy(const std::string& op, float lo, float hi, double max_rel, double atol,
                        double (*ref)(double)) {
  const int64_t n = 200001;
  std::vector<float> xs(n);
  for (int64_t i = 0; i < n; ++i) xs[i] = lo + (hi - lo) * static_cast<float>(i) / (n - 1);
  ir::Function fn("t");
  ir::Value* x = fn.AddParam("x", {DType::kF32, {n}});
  ir::Node* node = fn.AddNode(op, {x}, {{DType::kF32, {n}}});
  auto got = EvaluateNode(*node, {ir::Tensor::FromVector(DType::kF32, {n}, xs)});
  ASSERT_TRUE(got.ok()) << got.status();
  double worst = 0;
  float worst_x = 0;
  for (int64_t i = 0; i < n; ++i) {
    double want = ref(xs[i]);
    double g = (*got)[0].data_as<float>()[i];
    double err = std::fabs(g - want) - atol;
    double rel = err <= 0 ? 0 : err / std::max(std::fabs(want), 1e-30);
    if (rel > worst) {
      worst = rel;
      worst_x = xs[i];
    }
  }
  EXPECT_LE(worst, max_rel) << op << " worst relative error at x=" << worst_x;
}

double Sigmoid(double x) { return 1 / (1 + std::exp(-x)); }

// internal::DropoutApply (the CPU kernels' dropout: AVX2 over whole 16-element blocks, the
// rest element by element) against ir::DropoutKeeps, element by element: f32 and f64, ranges
// starting anywhere in a block, in place, NaN dropped to 0, thresholds 0 and 2^16.
template <typename T>
void CheckDropoutApply() {
  const uint64_t key = ir::DropoutKey(21, 5);
  for (double ratio : {0.1, 0.5, 0.0, 1.0}) {
    const uint32_t threshold = ir::DropoutThreshold(ratio);
    const T scale = static_cast<T>(ir::DropoutScale(ratio));
    for (uint64_t start : {0, 5, 16, 29}) {
      for (int64_t n : {0, 7, 16, 40, 333}) {
        std::vector<T> a(n), d(n, T(-7));
        for (int64_t j = 0; j < n; ++j) a[j] = j % 13 == 0 ? T(NAN) : static_cast<T>(j) - T(100);
        std::vector<T> in_place = a;
        internal::DropoutApply(key, start, n, threshold, scale, a.data(), d.data());
        internal::DropoutApply(key, start, n, threshold, scale, in_place.data(), in_place.data());
        for (int64_t j = 0; j < n; ++j) {
          const bool keep = ir::DropoutKeeps(key, start + j, threshold);
          const std::string at = absl::StrCat("ratio ", ratio, " start ", start, " j ", j);
          if (keep) {
            if (std::isnan(a[j])) {
              EXPECT_TRUE(std::isnan(d[j])) << at;
            } else {
              EXPECT_EQ(d[j], a[j] * scale) << at;
            }
          } else {
            EXPECT_EQ(d[j], T(0)) << at;
            EXPECT_FALSE(std::signbit(d[j])) << at;
          }
          EXPECT_TRUE(std::isnan(d[j]) ? std::isnan(in_place[j]) : in_place[j] == d[j]) << at;
        }
      }
    }
  }
}
TEST(CpuDropout, ApplyDrawsTheMask) {
  CheckDropoutApply<float>();
  CheckDropoutApply<double>();
}

TEST(KernelMathTest, ExpAccuracy) {
  CheckUnaryAccuracy("exp", -87.0f, 88.0f, 4e-7, 0, [](double x) { return std::exp(x); });
  CheckUnaryAccuracy("exp", -103.0f, -87.0f, 1e-2, 1e-44, [](double x) { return std::exp(x); });
}
TEST(KernelMathTest, TanhAccuracy) {
  CheckUnaryAccuracy("tanh", -12.0f, 12.0f, 6e-7, 0, [](double x) { return std::tanh(x); });
  CheckUnaryAccuracy("tanh", -0.01f, 0.01f, 6e-7, 0, [](double x) { return std::tanh(x); });
}
TEST(KernelMathTest, ErfAccuracy) {
  CheckUnaryAccuracy("erf", -6.0f, 6.0f, 1e-6, 0, [](double x) { return std::erf(x); });
  CheckUnaryAccuracy("erf", -1e-3f, 1e-3f, 1e-6, 0, [](double x) { return std::erf(x); });
}
TEST(KernelMathTest, SigmoidAccuracy) {
  CheckUnaryAccuracy("sigmoid", -80.0f, 30.0f, 1e-6, 0, Sigmoid);
}

TEST(KernelMathTest, SpecialValues) {
  std::vector<float> xs = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 1e-30f, -1e-30f, 100.0f, -200.0f};
  const int64_t n = xs.size();
  for (std::string op : {"exp", "tanh", "erf", "sigmoid"}) {
    ir::Function fn("t");
    ir::Value* x = fn.AddParam("x", {DType::kF32, {n}});
    ir::Node* node = fn.AddNode(op, {x}, {{DType::kF32, {n}}});
    auto got = EvaluateNode(*node, {ir::Tensor::FromVector(DType::kF32, {n}, xs)});
    ASSERT_TRUE(got.ok()) << got.status();
    for (int64_t i = 0; i < n; ++i) {
      double want = op == "exp" ? std::exp(double(xs[i]))
                    : op == "tanh" ? std::tanh(double(xs[i]))
                    : op == "erf" ? std::erf(double(xs[i]))
                                  : Sigmoid(xs[i]);
      want = static_cast<float>(want);  // f32 overflow (exp(100) = inf) is the right answer
      double g = (*got)[0].data_as<float>()[i];
      if (std::isnan(want)) {
        EXPECT_TRUE(std::isnan(g)) << op << "(" << xs[i] << ")";
      } else if (std::isinf(want)) {
        EXPECT_EQ(g, want) << op << "(" << xs[i] << ")";
      } else {
        EXPECT_NEAR(g, want, 1e-6 * std::max(1.0, std::fabs(want))) << op << "(" << xs[i] << ")";
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// dropout draws random numbers: check its properties instead of values.

TEST(KernelDropoutTest, MaskScalesAndRate) {
  const int64_t n = 100000;
  ir::Function fn("t");
  ir::Value* x = fn.AddParam("x", {DType::kF32, {n}});
  ir::Node* node = fn.AddNode("dropout", {x}, {{DType::kF32, {n}}, {DType::kBool, {n}}},
                              {{"ratio", 0.25}, {"seed", int64_t{7}}});
  std::vector<float> xs(n);
  for (int64_t i = 0; i < n; ++i) xs[i] = 1.0f + static_cast<float>(i % 7);
  auto got = EvaluateNode(*node, {ir::Tensor::FromVector(DType::kF32, {n}, xs)});
  ASSERT_TRUE(got.ok()) << got.status();
  int64_t kept = 0;
  for (int64_t i = 0; i < n; ++i) {
    float y = (*got)[0].data_as<float>()[i];
    bool m = (*got)[1].data_as<uint8_t>()[i];
    kept += m;
    EXPECT_FLOAT_EQ(y, m ? xs[i] / 0.75f : 0.0f) << i;
    if (testing::Test::HasFailure()) break;
  }
  EXPECT_NEAR(static_cast<double>(kept) / n, 0.75, 0.01);
}

// The mask is a function of (seed, counter, index): the same counter draws the same mask (what
// the gradient and a recomputation rely on), another counter or seed a different one, and an
// i32 counter the i64 one's. Ratio 0 keeps everything.
TEST(KernelDropoutTest, CounterDecidesTheMask) {
  const int64_t n = 4096;
  std::vector<float> xs(n, 1.0f);
  auto draw = [&](int64_t seed, int64_t counter, DType counter_dt, double ratio = 0.5) {
    ir::Function fn("t");
    ir::Value* x = fn.AddParam("x", {DType::kF32, {n}});
    ir::Value* c = fn.AddParam("c", {counter_dt, {}});
    ir::Node* node = fn.AddNode("dropout", {x, c}, {{DType::kF32, {n}}, {DType::kBool, {n}}},
                                {{"ratio", ratio}, {"seed", seed}});
    ir::Tensor ct = counter_dt == DType::kI32
                        ? ir::Tensor::FromVector<int32_t>(DType::kI32, {},
                                                          {static_cast<int32_t>(counter)})
                        : ir::Tensor::FromVector<int64_t>(DType::kI64, {}, {counter});
    auto got = EvaluateNode(*node, {ir::Tensor::FromVector(DType::kF32, {n}, xs), ct});
    EXPECT_TRUE(got.ok()) << got.status();
    std::vector<uint8_t> mask(n);
    for (int64_t i = 0; i < n; ++i) {
      mask[i] = (*got)[1].data_as<uint8_t>()[i];
      EXPECT_EQ((*got)[0].data_as<float>()[i], mask[i] ? 1.0f / (1.0f - static_cast<float>(ratio))
                                                        : 0.0f);
    }
    return mask;
  };
  const std::vector<uint8_t> a = draw(3, 10, DType::kI64);
  EXPECT_EQ(draw(3, 10, DType::kI64), a);
  EXPECT_EQ(draw(3, 10, DType::kI32), a);
  EXPECT_NE(draw(3, 11, DType::kI64), a);
  EXPECT_NE(draw(4, 10, DType::kI64), a);
  int64_t kept = 0;
  for (uint8_t m : a) kept += m;
  EXPECT_NEAR(static_cast<double>(kept) / n, 0.5, 0.05);
  for (uint8_t m : draw(3, 10, DType::kI64, 0.0)) ASSERT_EQ(m, 1);
}

// ---------------------------------------------------------------------------------------------
// softmax_ce_loss forward + softmax_ce_loss_grad on vocabulary-sized rows (the AVX2 paths)
// against float64, and NaN / -inf scores handled as the scalar loops do.

TEST(KernelLossTest, SoftmaxCeLargeVocabMatchesDoubleAndPropagatesNaN) {
  const int64_t n = 4, c = 8195;
  ir::Function fn("t");
  ir::Value* x = fn.AddParam("x", {DType::kF32, {n, c}});
  ir::Value* lab = fn.AddParam("labels", {DType::kI64, {n}});
  ir::Node* fwd = fn.AddNode("softmax_ce_loss", {x, lab},
                             {{DType::kF32, {}}, {DType::kF32, {n, c}}}, {});
  ir::Value* dl = fn.AddParam("dloss", {DType::kF32, {}});
  ir::Node* bwd = fn.AddNode("softmax_ce_loss_grad", {dl, fwd->output(1), lab},
                             {{DType::kF32, {n, c}}}, {});
  auto fk = CreateKernel(*fwd);
  ASSERT_TRUE(fk.ok()) << fk.status();
  auto bk = CreateKernel(*bwd);
  ASSERT_TRUE(bk.ok()) << bk.status();
  std::mt19937 rng(7);
  std::normal_distribution<float> dist(0.0f, 4.0f);
  std::vector<float> xs(n * c);
  for (float& v : xs) v = dist(rng);
  for (int64_t j = 0; j < c; ++j) xs[2 * c + j] = -std::numeric_limits<float>::infinity();
  xs[2 * c + 5] = 3.0f;           // row 2: one finite score, the rest -inf
  xs[3 * c + 4099] = std::nanf("");  // row 3: a NaN score
  std::vector<int64_t> labels = {17, 8194, 5, 0};
  std::vector<float> loss(1), lp(n * c), dx(n * c);
  float dloss = 1.0f;
  std::vector<char> ws((*fk)->WorkspaceBytes() + 64);
  {
    const void* ins[] = {xs.data(), labels.data()};
    void* outs[] = {loss.data(), lp.data()};
    ASSERT_TRUE((*fk)->Run(ins, outs, ws.data()).ok());
  }
  {
    const void* ins[] = {&dloss, lp.data(), labels.data()};
    void* outs[] = {dx.data()};
    ASSERT_TRUE((*bk)->Run(ins, outs, nullptr).ok());
  }
  for (int64_t i = 0; i < 2; ++i) {  // finite rows against float64
    const float* xr = xs.data() + i * c;
    double mx = *std::max_element(xr, xr + c), sum = 0;
    for (int64_t j = 0; j < c; ++j) sum += std::exp(static_cast<double>(xr[j]) - mx);
    const double lse = mx + std::log(sum);
    for (int64_t j = 0; j < c; ++j) {
      const double ref_lp = xr[j] - lse;
      ASSERT_NEAR(lp[i * c + j], ref_lp, 1e-5 * std::max(1.0, std::abs(ref_lp))) << i << "," << j;
      const double ref_dx = (std::exp(ref_lp) - (j == labels[i] ? 1.0 : 0.0)) / n;
      ASSERT_NEAR(dx[i * c + j], ref_dx, 1e-7 + 1e-5 * std::abs(ref_dx)) << i << "," << j;
    }
  }
  EXPECT_EQ(lp[2 * c + 5], 0.0f);  // the only finite score has probability 1
  EXPECT_EQ(lp[2 * c + 6], -std::numeric_limits<float>::infinity());
  EXPECT_EQ(dx[2 * c + 6], 0.0f);
  EXPECT_TRUE(std::isnan(lp[3 * c + 1]));
  EXPECT_TRUE(std::isnan(dx[3 * c + 1]));
  EXPECT_TRUE(std::isnan(loss[0]));  // the NaN row poisons the mean
}

// ---------------------------------------------------------------------------------------------
// linear_ce_loss (LM head + softmax cross-entropy, blocks of rows) against float64: the loss,
// and with 3 outputs (4 with a bias) the gradients for d loss = 1, over several row blocks (V
// large enough that a block is smaller than N), both weight layouts, with and without the LM
// head's bias, an ignored label, softcap (Gemma 2's tanh capping of the logits), a logit
// scale (Cohere's) alone and with softcap.

TEST(KernelLossTest, LinearCeLossMatchesDoubleOverRowBlocks) {
  const int64_t n = 150, d = 8, v = 40000;  // blocks of 8 MiB / (4 V) = 52 rows: 3 blocks
  std::mt19937 rng(11);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> x(n * d), w(v * d), b(v);
  for (float& e : x) e = dist(rng);
  for (float& e : w) e = 0.5f * dist(rng);
  for (float& e : b) e = dist(rng);
  std::vector<int64_t> labels(n);
  for (int64_t i = 0; i < n; ++i) labels[i] = (i * 7919) % v;
  labels[3] = -100;  // ignored
  for (int variant = 0; variant < 8; ++variant) {
    const int trans_b = variant & 1;
    const bool with_bias = variant >= 2;
    // The logits' deviation is about 1.7: a cap of 2 bends them.
    const double softcap = variant == 4 || variant == 5 || variant == 7 ? 2.0 : 0.0;
    const double scale = variant >= 6 ? 1.75 : 1.0;
    SCOPED_TRACE(absl::StrCat("trans_b ", trans_b, ", bias ", with_bias, ", softcap ", softcap,
                              ", scale ", scale));
    // w as [V, D] (trans_b) or its transpose [D, V].
    std::vector<float> wl(v * d);
    for (int64_t j = 0; j < v; ++j) {
      for (int64_t k = 0; k < d; ++k) {
        (trans_b ? wl[j * d + k] : wl[k * v + j]) = w[j * d + k];
      }
    }
    const ir::Shape wshape = trans_b ? ir::Shape{v, d} : ir::Shape{d, v};
    ir::Function fn("t");
    ir::Value* xv = fn.AddParam("x", {DType::kF32, {n, d}});
    ir::Value* wv = fn.AddParam("w", {DType::kF32, wshape});
    ir::Value* lv = fn.AddParam("labels", {DType::kI64, {n}});
    ir::Value* bv = fn.AddParam("b", {DType::kF32, {v}});
    ir::AttrMap attrs = {{"ignore_index", int64_t{-100}}};
    if (trans_b) attrs["trans_b"] = int64_t{1};
    if (softcap > 0) attrs["softcap"] = softcap;
    if (scale != 1.0) attrs["scale"] = scale;
    std::vector<ir::Value*> node_in = {xv, wv, lv};
    std::vector<ir::TensorType> node_out = {
        {DType::kF32, {}}, {DType::kF32, {n, d}}, {DType::kF32, wshape}};
    if (with_bias) {
      node_in.push_back(bv);
      node_out.push_back({DType::kF32, {v}});
    }
    ir::Node* node = fn.AddNode("linear_ce_loss", node_in, node_out, attrs);
    auto kernel = CreateKernel(*node);
    ASSERT_TRUE(kernel.ok()) << kernel.status();
    std::vector<char> ws((*kernel)->WorkspaceBytes() + 64);
    // Outputs start as NaN: the kernel must overwrite them, not accumulate into them.
    std::vector<float> loss(1), dx(n * d, std::nanf("")), dw(v * d, std::nanf("")),
        db(v, std::nanf(""));
    const void* ins[] = {x.data(), wl.data(), labels.data(), b.data()};
    void* outs[] = {loss.data(), dx.data(), dw.data(), db.data()};
    ASSERT_TRUE((*kernel)->Run(ins, outs, ws.data()).ok());
    // float64 reference.
    double total = 0;
    int64_t count = 0;
    std::vector<double> gx(n * d, 0.0), gw(v * d, 0.0), gb(v, 0.0), logits(v), dcap(v, 1.0);
    for (int64_t i = 0; i < n; ++i) {
      if (labels[i] == -100) continue;
      ++count;
    }
    for (int64_t i = 0; i < n; ++i) {
      if (labels[i] == -100) continue;
      double mx = -1e300;
      for (int64_t j = 0; j < v; ++j) {
        double s = with_bias ? double(b[j]) : 0.0;
        for (int64_t k = 0; k < d; ++k) s += double(x[i * d + k]) * w[j * d + k];
        s *= scale;
        if (softcap > 0) {
          const double t = std::tanh(s / softcap);
          s = softcap * t;
          dcap[j] = 1 - t * t;
        }
        logits[j] = s;
        mx = std::max(mx, s);
      }
      double sum = 0;
      for (int64_t j = 0; j < v; ++j) sum += std::exp(logits[j] - mx);
      const double lse = mx + std::log(sum);
      total += lse - logits[labels[i]];
      for (int64_t j = 0; j < v; ++j) {
        const double g =
            (std::exp(logits[j] - lse) - (j == labels[i] ? 1.0 : 0.0)) / count * dcap[j] * scale;
        gb[j] += g;
        for (int64_t k = 0; k < d; ++k) {
          gx[i * d + k] += g * w[j * d + k];
          gw[j * d + k] += g * x[i * d + k];
        }
      }
    }
    EXPECT_NEAR(loss[0], total / count, 1e-5 * total / count);
    for (int64_t i = 0; i < n * d; ++i) {
      ASSERT_NEAR(dx[i], gx[i], 1e-6 + 1e-4 * std::abs(gx[i])) << "dx " << i;
    }
    for (int64_t j = 0; j < v; ++j) {
      for (int64_t k = 0; k < d; ++k) {
        const float got = trans_b ? dw[j * d + k] : dw[k * v + j];
        ASSERT_NEAR(got, gw[j * d + k], 1e-7 + 1e-4 * std::abs(gw[j * d + k])) << j << "," << k;
      }
    }
    for (int64_t k = 0; k < d; ++k) EXPECT_EQ(dx[3 * d + k], 0.0f);  // the ignored row
    if (with_bias) {
      for (int64_t j = 0; j < v; ++j) {
        ASSERT_NEAR(db[j], gb[j], 1e-7 + 1e-4 * std::abs(gb[j])) << "db " << j;
      }
    } else {
      EXPECT_TRUE(std::isnan(db[0]));  // no fourth output written
    }
    // Loss only (1 output): the same loss.
    node_in.resize(with_bias ? 4 : 3);
    ir::Node* node1 = fn.AddNode("linear_ce_loss", node_in, {{DType::kF32, {}}}, attrs);
    auto k1 = CreateKernel(*node1);
    ASSERT_TRUE(k1.ok()) << k1.status();
    std::vector<char> ws1((*k1)->WorkspaceBytes() + 64);
    std::vector<float> loss1(1);
    void* outs1[] = {loss1.data()};
    ASSERT_TRUE((*k1)->Run(ins, outs1, ws1.data()).ok());
    EXPECT_EQ(loss1[0], loss[0]);
  }
}

// ---------------------------------------------------------------------------------------------
// attention_grad in f32 (OpenBLAS products) against the f64 kernel (BlockGemm products, checked
// against finite differences in compiler/autodiff/grad_rules_test.cc): bthd, causal bool mask,
// three query blocks with a ragged end.

TEST(KernelAttentionTest, GradF32MatchesF64) {
  const int64_t b = 2, t = 70, h = 3, d = 16;
  auto run = [&](DType dt, const std::vector<double>& vals) {
    ir::Function fn("t");
    ir::TensorType ty{dt, {b, t, h, d}};
    ir::Value* dy = fn.AddParam("dy", ty);
    ir::Value* q = fn.AddParam("q", ty);
    ir::Value* k = fn.AddParam("k", ty);
    ir::Value* v = fn.AddParam("v", ty);
    ir::Value* m = fn.AddParam("m", {DType::kBool, {t, t}});
    ir::Node* n = fn.AddNode("attention_grad", {dy, q, k, v, m}, {ty, ty, ty},
                             {{"layout", std::string("bthd")}, {"scale", 0.25}});
    auto kernel = CreateKernel(*n);
    EXPECT_TRUE(kernel.ok()) << kernel.status();
    const int64_t count = b * t * h * d;
    std::vector<ir::Tensor> ins;
    for (int i = 0; i < 4; ++i) {
      ir::Tensor x(dt, ty.shape);
      for (int64_t j = 0; j < count; ++j) {
        if (dt == DType::kF32) {
          x.mutable_data_as<float>()[j] = static_cast<float>(vals[i * count + j]);
        } else {
          x.mutable_data_as<double>()[j] = vals[i * count + j];
        }
      }
      ins.push_back(std::move(x));
    }
    ir::Tensor mask(DType::kBool, {t, t});
    for (int64_t i = 0; i < t; ++i) {
      for (int64_t j = 0; j < t; ++j) mask.mutable_data_as<bool>()[i * t + j] = j > i;
    }
    std::vector<ir::Tensor> outs = {ir::Tensor(dt, ty.shape), ir::Tensor(dt, ty.shape),
                                    ir::Tensor(dt, ty.shape)};
    const void* in_ptrs[] = {ins[0].data(), ins[1].data(), ins[2].data(), ins[3].data(),
                             mask.data()};
    void* out_ptrs[] = {outs[0].mutable_data(), outs[1].mutable_data(), outs[2].mutable_data()};
    std::vector<char> ws((*kernel)->WorkspaceBytes() + 64);
    EXPECT_TRUE((*kernel)->Run(in_ptrs, out_ptrs, ws.data()).ok());
    return outs;
  };
  std::mt19937 rng(5);
  std::normal_distribution<double> dist(0.0, 1.0);
  std::vector<double> vals(4 * b * t * h * d);
  for (double& x : vals) x = static_cast<float>(dist(rng));  // exactly representable in f32
  auto f32 = run(DType::kF32, vals);
  auto f64 = run(DType::kF64, vals);
  for (int o = 0; o < 3; ++o) {
    for (int64_t i = 0; i < f64[o].num_elements(); ++i) {
      const double want = f64[o].GetDouble(i);
      ASSERT_NEAR(f32[o].GetDouble(i), want, 1e-4 + 1e-4 * std::abs(want)) << "output " << o << " " << i;
    }
  }
}

// Grouped-query attention_grad (k / v with Hkv < H heads) against the same kernel on K / V
// repeated explicitly per query head (HF repeat_kv order), its dk / dv summed over each group:
// both layouts, a causal bool mask, f32 (OpenBLAS products) and f64 (BlockGemm products).
TEST(KernelAttentionTest, GroupedQueryGradMatchesRepeatedKv) {
  const int64_t b = 2, t = 37, h = 6, hkv = 2, d = 8, rep = h / hkv;
  std::mt19937 rng(11);
  std::normal_distribution<double> dist(0.0, 1.0);
  for (const bool bthd : {false, true}) {
    for (const DType dt : {DType::kF32, DType::kF64}) {
      auto shape = [&](int64_t heads) {
        return bthd ? Shape{b, t, heads, d} : Shape{b, heads, t, d};
      };
      auto random = [&](int64_t heads) {
        ir::Tensor x(dt, shape(heads));
        for (int64_t j = 0; j < x.num_elements(); ++j) {
          const float f = static_cast<float>(dist(rng));
          if (dt == DType::kF32) {
            x.mutable_data_as<float>()[j] = f;
          } else {
            x.mutable_data_as<double>()[j] = f;
          }
        }
        return x;
      };
      // Offset of element (bi, hi, ti, e) of a tensor with `heads` heads.
      auto at = [&](int64_t heads, int64_t bi, int64_t hi, int64_t ti, int64_t e) {
        return bthd ? ((bi * t + ti) * heads + hi) * d + e : ((bi * heads + hi) * t + ti) * d + e;
      };
      auto repeat = [&](const ir::Tensor& x) {  // [.., Hkv, ..] -> [.., H, ..]
        ir::Tensor y(dt, shape(h));
        for (int64_t bi = 0; bi < b; ++bi) {
          for (int64_t hi = 0; hi < h; ++hi) {
            for (int64_t ti = 0; ti < t; ++ti) {
              for (int64_t e = 0; e < d; ++e) {
                const size_t sz = ir::DTypeSize(dt);
                std::memcpy(static_cast<char*>(y.mutable_data()) + at(h, bi, hi, ti, e) * sz,
                            static_cast<const char*>(x.data()) + at(hkv, bi, hi / rep, ti, e) * sz,
                            sz);
              }
            }
          }
        }
        return y;
      };
      ir::Tensor mask(DType::kBool, {t, t});
      for (int64_t i = 0; i < t; ++i) {
        for (int64_t j = 0; j < t; ++j) mask.mutable_data_as<bool>()[i * t + j] = j > i;
      }
      auto grad = [&](const std::vector<const ir::Tensor*>& in) {
        ir::Function fn("t");
        std::vector<ir::Value*> params;
        for (size_t i = 0; i < in.size(); ++i) {
          params.push_back(fn.AddParam(absl::StrCat("x", i), {in[i]->dtype(), in[i]->shape()}));
        }
        ir::AttrMap attrs = {{"scale", 0.3}};
        if (bthd) attrs["layout"] = std::string("bthd");
        ir::Node* n = fn.AddNode("attention_grad", params,
                                 {params[1]->type(), params[2]->type(), params[3]->type()}, attrs);
        auto kernel = CreateKernel(*n);
        EXPECT_TRUE(kernel.ok()) << kernel.status();
        std::vector<ir::Tensor> outs;
        for (int i = 1; i <= 3; ++i) outs.emplace_back(dt, in[i]->shape());
        std::vector<const void*> ip;
        for (const ir::Tensor* x : in) ip.push_back(x->data());
        std::vector<void*> op;
        for (ir::Tensor& o : outs) op.push_back(o.mutable_data());
        std::vector<char> ws((*kernel)->WorkspaceBytes() + 64);
        EXPECT_TRUE((*kernel)->Run(ip, op, ws.data()).ok());
        return outs;
      };
      const ir::Tensor dy = random(h), q = random(h), k = random(hkv), v = random(hkv);
      const ir::Tensor kr = repeat(k), vr = repeat(v);
      const auto got = grad({&dy, &q, &k, &v, &mask});
      const auto want = grad({&dy, &q, &kr, &vr, &mask});
      const double tol = dt == DType::kF32 ? 1e-4 : 1e-12;
      for (int64_t i = 0; i < want[0].num_elements(); ++i) {
        ASSERT_NEAR(got[0].GetDouble(i), want[0].GetDouble(i), tol) << "dq " << i;
      }
      for (int o = 1; o < 3; ++o) {
        ASSERT_EQ(got[o].shape(), shape(hkv));
        for (int64_t bi = 0; bi < b; ++bi) {
          for (int64_t kh = 0; kh < hkv; ++kh) {
            for (int64_t ti = 0; ti < t; ++ti) {
              for (int64_t e = 0; e < d; ++e) {
                double sum = 0;
                for (int64_t g = 0; g < rep; ++g) {
                  sum += want[o].GetDouble(at(h, bi, kh * rep + g, ti, e));
                }
                ASSERT_NEAR(got[o].GetDouble(at(hkv, bi, kh, ti, e)), sum,
                            tol * (1 + std::abs(sum)))
                    << (o == 1 ? "dk" : "dv") << " bthd " << bthd << " " << bi << "," << kh
                    << "," << ti << "," << e;
              }
            }
          }
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// A query row with every key masked (causal with Tq > Tk: rows i < Tq - Tk) is NaN in the
// forward's output and adds nothing to the gradients: dq's row is 0, and dk / dv equal those of
// the problem without those rows. Before, its NaN P spread through dS into all of dk.

TEST(KernelAttentionTest, GradRowsWithEveryKeyMaskedAddNothing) {
  const int64_t h = 2, tq = 40, tk = 25, d = 8, cut = tq - tk;  // rows 0..14 see no key
  std::mt19937 rng(11);
  std::normal_distribution<double> dist(0.0, 1.0);
  auto random = [&](int64_t t) {
    ir::Tensor x(DType::kF64, {1, h, t, d});
    for (int64_t j = 0; j < x.num_elements(); ++j) x.mutable_data_as<double>()[j] = dist(rng);
    return x;
  };
  auto causal = [](int64_t rows, int64_t keys) {
    ir::Tensor m(DType::kBool, {rows, keys});
    for (int64_t i = 0; i < rows; ++i) {
      for (int64_t j = 0; j < keys; ++j) m.mutable_data_as<bool>()[i * keys + j] = j > i + keys - rows;
    }
    return m;
  };
  auto grad = [&](const std::vector<ir::Tensor>& in) {
    ir::Function fn("t");
    std::vector<ir::Value*> params;
    for (size_t i = 0; i < in.size(); ++i) params.push_back(fn.AddParam(absl::StrCat("x", i), in[i].type()));
    const ir::TensorType& qt = in[1].type();
    const ir::TensorType& kt = in[2].type();
    ir::Node* n = fn.AddNode("attention_grad", params, {qt, kt, kt}, {});
    auto out = EvaluateNode(*n, in);
    EXPECT_TRUE(out.ok()) << out.status();
    return *out;
  };
  const ir::Tensor dy = random(tq), q = random(tq), k = random(tk), v = random(tk);
  const auto full = grad({dy, q, k, v, causal(tq, tk)});
  // The same problem without the empty rows: rows cut.. of dy and q, a square causal mask.
  auto rows_from = [&](const ir::Tensor& x) {
    ir::Tensor y(DType::kF64, {1, h, tq - cut, d});
    for (int64_t hi = 0; hi < h; ++hi) {
      for (int64_t i = cut; i < tq; ++i) {
        for (int64_t c = 0; c < d; ++c) {
          y.mutable_data_as<double>()[(hi * (tq - cut) + i - cut) * d + c] =
              x.data_as<double>()[(hi * tq + i) * d + c];
        }
      }
    }
    return y;
  };
  const auto kept = grad({rows_from(dy), rows_from(q), k, v, causal(tq - cut, tk)});
  for (int64_t hi = 0; hi < h; ++hi) {
    for (int64_t i = 0; i < tq; ++i) {
      for (int64_t c = 0; c < d; ++c) {
        const double got = full[0].data_as<double>()[(hi * tq + i) * d + c];
        const double want =
            i < cut ? 0.0 : kept[0].data_as<double>()[(hi * (tq - cut) + i - cut) * d + c];
        ASSERT_NEAR(got, want, 1e-12) << "dq head " << hi << " row " << i;
      }
    }
  }
  for (int o = 1; o < 3; ++o) {
    for (int64_t i = 0; i < full[o].num_elements(); ++i) {
      ASSERT_NEAR(full[o].data_as<double>()[i], kept[o].data_as<double>()[i], 1e-12)
          << (o == 1 ? "dk " : "dv ") << i;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// attention's second output, the log-sum-exp of each row's scaled, masked scores (f32
// [B, H, Tq]; -inf for a row with every key masked), against a direct sum: the whole-row f32
// path (Tk <= 512), the flash path (Tk > 512) and f64. attention_grad {saved_stats=1} gives
// the recomputing backward's bits (the CPU backward does not read O and the statistics).

TEST(KernelAttentionTest, LogSumExpOutputAndSavedStatsBackward) {
  for (auto [dt, t] : {std::pair{DType::kF32, int64_t{70}}, std::pair{DType::kF32, int64_t{600}},
                       std::pair{DType::kF64, int64_t{70}}}) {
    const int64_t b = 1, h = 2, d = 8;
    const double scale = 0.3;
    ir::Function fn("t");
    ir::TensorType ty{dt, {b, h, t, d}};
    ir::Value* q = fn.AddParam("q", ty);
    ir::Value* k = fn.AddParam("k", ty);
    ir::Value* v = fn.AddParam("v", ty);
    ir::Value* m = fn.AddParam("m", {DType::kBool, {t, t}});
    ir::Node* n = fn.AddNode("attention", {q, k, v, m}, {ty, {DType::kF32, {b, h, t}}},
                             {{"scale", scale}});
    std::mt19937 rng(3);
    std::normal_distribution<double> dist(0.0, 1.0);
    auto random = [&] {
      ir::Tensor x(dt, ty.shape);
      for (int64_t j = 0; j < x.num_elements(); ++j) {
        if (dt == DType::kF32) {
          x.mutable_data_as<float>()[j] = static_cast<float>(dist(rng));
        } else {
          x.mutable_data_as<double>()[j] = dist(rng);
        }
      }
      return x;
    };
    std::vector<ir::Tensor> ins = {random(), random(), random()};
    ir::Tensor mask(DType::kBool, {t, t});
    for (int64_t i = 0; i < t; ++i) {
      // Causal, and row 3 sees no key at all.
      for (int64_t j = 0; j < t; ++j) mask.mutable_data_as<bool>()[i * t + j] = j > i || i == 3;
    }
    ins.push_back(mask);
    auto out = EvaluateNode(*n, ins);
    ASSERT_TRUE(out.ok()) << out.status();
    const ir::Tensor& lse = (*out)[1];
    for (int64_t hi = 0; hi < h; ++hi) {
      for (int64_t i = 0; i < t; ++i) {
        const float got = lse.data_as<float>()[hi * t + i];
        if (i == 3) {
          EXPECT_EQ(got, -std::numeric_limits<float>::infinity());
          continue;
        }
        double mx = -1e300, sum = 0;
        std::vector<double> sc(i + 1);
        for (int64_t j = 0; j <= i; ++j) {
          double dot = 0;
          for (int64_t e = 0; e < d; ++e) {
            dot += ins[0].GetDouble((hi * t + i) * d + e) * ins[1].GetDouble((hi * t + j) * d + e);
          }
          sc[j] = scale * dot;
          mx = std::max(mx, sc[j]);
        }
        for (double x : sc) sum += std::exp(x - mx);
        ASSERT_NEAR(got, mx + std::log(sum), 1e-4 * (1 + std::abs(mx)))
            << ir::DTypeName(dt) << " t=" << t << " row " << i;
      }
    }
    // The backward with and without the saved statistics.
    ir::Value* dy = fn.AddParam("dy", ty);
    ir::Node* g = fn.AddNode("attention_grad", {dy, q, k, v, m}, {ty, ty, ty}, {{"scale", scale}});
    ir::Value* o = fn.AddParam("o", ty);
    ir::Value* l = fn.AddParam("lse", lse.type());
    ir::Node* gs = fn.AddNode("attention_grad", {dy, q, k, v, m, o, l}, {ty, ty, ty},
                              {{"scale", scale}, {"saved_stats", int64_t{1}}});
    ir::Tensor dyt = random();
    auto want = EvaluateNode(*g, {dyt, ins[0], ins[1], ins[2], mask});
    ASSERT_TRUE(want.ok()) << want.status();
    auto got = EvaluateNode(*gs, {dyt, ins[0], ins[1], ins[2], mask, (*out)[0], lse});
    ASSERT_TRUE(got.ok()) << got.status();
    for (int i = 0; i < 3; ++i) {
      for (int64_t j = 0; j < (*want)[i].num_elements(); ++j) {
        const double w = (*want)[i].GetDouble(j), x = (*got)[i].GetDouble(j);
        ASSERT_TRUE(w == x || (std::isnan(w) && std::isnan(x))) << "gradient " << i << " " << j;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Kernels run repeatedly with the same workspace (as in the executor) and HasKernel covers
// every op the table exercises.

// fold-norm-casts' contract: layer_norm {dtype=bf16} gives the bits of layer_norm then a cast,
// and layer_norm_grad on a bf16 dy the bits of the f32 kernel on the widened dy.
TEST(KernelNormTest, LowPrecisionOutputAndGradientInputMatchTheCasts) {
  const int64_t rows = 6, d = 40;
  ir::Function fn("t");
  const ir::TensorType xt{DType::kF32, {rows, d}}, pt{DType::kF32, {d}};
  const ir::TensorType st{DType::kF32, {rows, 1}}, bt{DType::kBF16, {rows, d}};
  ir::Value* x = fn.AddParam("x", xt);
  ir::Value* g = fn.AddParam("g", pt);
  ir::Value* b = fn.AddParam("b", pt);
  ir::Value* dyb = fn.AddParam("dyb", bt);
  ir::Value* dyf = fn.AddParam("dyf", xt);
  ir::Value* mu = fn.AddParam("mu", st);
  ir::Value* is = fn.AddParam("is", st);
  const ir::AttrMap ln_attrs = {{"axis", int64_t{1}}, {"epsilon", 1e-5}};
  ir::AttrMap low_attrs = ln_attrs;
  low_attrs["dtype"] = DType::kBF16;
  ir::Node* ln = fn.AddNode("layer_norm", {x, g, b}, {xt, st, st}, ln_attrs);
  ir::Node* ln_low = fn.AddNode("layer_norm", {x, g, b}, {bt, st, st}, low_attrs);
  ir::Node* down = fn.AddNode("cast", {dyf}, {bt}, {{"to", DType::kBF16}});
  ir::Node* up = fn.AddNode("cast", {dyb}, {xt}, {{"to", DType::kF32}});
  const ir::AttrMap grad_attrs = {{"axis", int64_t{1}}};
  ir::Node* grad = fn.AddNode("layer_norm_grad", {dyf, x, g, mu, is}, {xt, pt, pt}, grad_attrs);
  ir::Node* grad_low = fn.AddNode("layer_norm_grad", {dyb, x, g, mu, is}, {xt, pt, pt}, grad_attrs);
  std::mt19937 rng(11);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  auto random = [&](int64_t n) {
    std::vector<float> v(n);
    for (float& e : v) e = dist(rng);
    return v;
  };
  const ir::Tensor xv = ir::Tensor::FromVector(DType::kF32, {rows, d}, random(rows * d));
  const ir::Tensor gv = ir::Tensor::FromVector(DType::kF32, {d}, random(d));
  const ir::Tensor bv = ir::Tensor::FromVector(DType::kF32, {d}, random(d));
  auto ref = EvaluateNode(*ln, {xv, gv, bv});
  auto low = EvaluateNode(*ln_low, {xv, gv, bv});
  ASSERT_TRUE(ref.ok() && low.ok()) << ref.status() << low.status();
  auto ref_low = EvaluateNode(*down, {(*ref)[0]});
  ASSERT_TRUE(ref_low.ok()) << ref_low.status();
  EXPECT_EQ((*low)[0].type(), bt);
  EXPECT_EQ(std::memcmp((*low)[0].data(), (*ref_low)[0].data(), rows * d * 2), 0);
  for (int i = 1; i < 3; ++i) {
    EXPECT_EQ(std::memcmp((*low)[i].data(), (*ref)[i].data(), rows * 4), 0) << "stat " << i;
  }
  auto dy_low =
      EvaluateNode(*down, {ir::Tensor::FromVector(DType::kF32, {rows, d}, random(rows * d))});
  ASSERT_TRUE(dy_low.ok());
  auto dy_wide = EvaluateNode(*up, {(*dy_low)[0]});
  ASSERT_TRUE(dy_wide.ok());
  auto want = EvaluateNode(*grad, {(*dy_wide)[0], xv, gv, (*ref)[1], (*ref)[2]});
  auto got = EvaluateNode(*grad_low, {(*dy_low)[0], xv, gv, (*ref)[1], (*ref)[2]});
  ASSERT_TRUE(want.ok() && got.ok()) << want.status() << got.status();
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ((*got)[i].type(), (*want)[i].type());
    EXPECT_EQ(std::memcmp((*got)[i].data(), (*want)[i].data(), (*want)[i].type().byte_size()), 0)
        << "output " << i;
  }
}

// Normal f32 values of `shape` (0.5 + |normal| when positive: inverse standard deviations).
ir::Tensor RandomF32(std::mt19937& rng, const ir::Shape& shape, bool positive = false) {
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(ir::NumElements(shape));
  for (float& e : v) e = positive ? 0.5f + std::fabs(dist(rng)) : dist(rng);
  return ir::Tensor::FromVector(DType::kF32, shape, v);
}

// fuse-norm-grad-add's contract: layer_norm_grad with an addend gives the bits of
// add(addend, layer_norm_grad(...).dx), and the same dscale / dbias.
// The operands of layer_norm_grad over [rows, d] rows as parameters of `fn`: dy (of dy_dtype),
// x, scale, mean, inv_std_dev, and an addend (all f32).
struct NormGradParams {
  NormGradParams(ir::Function& fn, DType dy_dtype, int64_t rows, int64_t d)
      : xt{DType::kF32, {rows, d}}, pt{DType::kF32, {d}} {
    const ir::TensorType st{DType::kF32, {rows, 1}};
    dy = fn.AddParam("dy", {dy_dtype, {rows, d}});
    x = fn.AddParam("x", xt);
    g = fn.AddParam("g", pt);
    mu = fn.AddParam("mu", st);
    is = fn.AddParam("is", st);
    skip = fn.AddParam("skip", xt);
  }
  ir::TensorType xt, pt;  // x's and the scale's types
  ir::Value *dy, *x, *g, *mu, *is, *skip;
};

TEST(KernelNormTest, AddendGivesTheBitsOfTheAdd) {
  const int64_t rows = 5, d = 24;
  ir::Function fn("t");
  const NormGradParams p(fn, DType::kF32, rows, d);
  const ir::TensorType &xt = p.xt, &pt = p.pt;
  ir::Value *dy = p.dy, *x = p.x, *g = p.g, *mu = p.mu, *is = p.is, *skip = p.skip;
  const ir::AttrMap attrs = {{"axis", int64_t{1}}};
  ir::Node* grad = fn.AddNode("layer_norm_grad", {dy, x, g, mu, is}, {xt, pt, pt}, attrs);
  ir::Node* add = fn.AddNode("add", {skip, grad->output(0)}, {xt}, {});
  ir::Node* fused = fn.AddNode("layer_norm_grad", {dy, x, g, mu, is, skip}, {xt, pt, pt}, attrs);
  std::mt19937 rng(5);
  auto random = [&](ir::Shape s, bool positive = false) { return RandomF32(rng, s, positive); };
  const std::vector<ir::Tensor> ins = {random({rows, d}), random({rows, d}), random({d}),
                                       random({rows, 1}), random({rows, 1}, true)};
  const ir::Tensor skip_v = random({rows, d});
  auto want = EvaluateNode(*grad, ins);
  ASSERT_TRUE(want.ok()) << want.status();
  auto sum = EvaluateNode(*add, {skip_v, (*want)[0]});
  ASSERT_TRUE(sum.ok()) << sum.status();
  std::vector<ir::Tensor> fused_ins = ins;
  fused_ins.push_back(skip_v);
  auto got = EvaluateNode(*fused, fused_ins);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE((*got)[0].BitEquals((*sum)[0]));
  EXPECT_TRUE((*got)[1].BitEquals((*want)[1]));
  EXPECT_TRUE((*got)[2].BitEquals((*want)[2]));
}

// dx_low (fold-norm-casts): layer_norm_grad with a bf16 dy of an f32 norm also writes dx in
// bf16, the bits of cast(dx) {to=bf16}; with the addend too, and dx itself unchanged.
TEST(KernelNormTest, DxLowGivesTheBitsOfTheCast) {
  const int64_t rows = 5, d = 24;
  ir::Function fn("t");
  const NormGradParams p(fn, DType::kBF16, rows, d);
  const ir::TensorType &xt = p.xt, &pt = p.pt, lt = p.dy->type();
  ir::Value *dy = p.dy, *x = p.x, *g = p.g, *mu = p.mu, *is = p.is, *skip = p.skip;
  const ir::AttrMap attrs = {{"axis", int64_t{1}}};
  ir::Node* grad = fn.AddNode("layer_norm_grad", {dy, x, g, mu, is, skip}, {xt, pt, pt}, attrs);
  ir::Node* cast = fn.AddNode("cast", {grad->output(0)}, {lt}, {{"to", DType::kBF16}});
  ir::Node* fused =
      fn.AddNode("layer_norm_grad", {dy, x, g, mu, is, skip}, {xt, pt, pt, lt}, attrs);
  std::mt19937 rng(9);
  auto random = [&](ir::Shape s, bool positive = false) { return RandomF32(rng, s, positive); };
  ir::Node* down = fn.AddNode("cast", {x}, {lt}, {{"to", DType::kBF16}});
  auto dyb = EvaluateNode(*down, {random({rows, d})});
  ASSERT_TRUE(dyb.ok()) << dyb.status();
  const std::vector<ir::Tensor> ins = {(*dyb)[0], random({rows, d}), random({d}),
                                       random({rows, 1}), random({rows, 1}, true),
                                       random({rows, d})};
  auto want = EvaluateNode(*grad, ins);
  ASSERT_TRUE(want.ok()) << want.status();
  auto low = EvaluateNode(*cast, {(*want)[0]});
  ASSERT_TRUE(low.ok()) << low.status();
  auto got = EvaluateNode(*fused, ins);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->size(), 4u);
  EXPECT_TRUE((*got)[3].BitEquals((*low)[0]));
  for (int i = 0; i < 3; ++i) EXPECT_TRUE((*got)[i].BitEquals((*want)[i])) << "output " << i;
}

TEST(KernelApiTest, HasKernelAndRepeatedRuns) {
  for (const char* op : {"add", "matmul", "gemm", "layer_norm", "softmax_ce_loss", "nll_loss",
                         "gather", "constant", "dropout", "trilu", "cast", "where"}) {
    EXPECT_TRUE(HasKernel(op)) << op;
  }
  EXPECT_FALSE(HasKernel("no_such_op"));
  ir::Function fn("t");
  ir::Value* a = fn.AddParam("a", {DType::kF32, {4, 8}});
  ir::Node* node = fn.AddNode("reduce_sum", {a}, {{DType::kF32, {8}}},
                              {{"axes", std::vector<int64_t>{0}}, {"keepdims", int64_t{0}}});
  auto kernel = CreateKernel(*node);
  ASSERT_TRUE(kernel.ok()) << kernel.status();
  std::vector<float> in(32), out(8);
  for (int i = 0; i < 32; ++i) in[i] = static_cast<float>(i);
  std::vector<char> ws((*kernel)->WorkspaceBytes() + 64);
  for (int run = 0; run < 3; ++run) {
    const void* ins[] = {in.data()};
    void* outs[] = {out.data()};
    ASSERT_TRUE((*kernel)->Run(ins, outs, ws.data()).ok());
    for (int j = 0; j < 8; ++j) EXPECT_EQ(out[j], 4 * j + 48) << "run " << run;  // j+(j+8)+(j+16)+(j+24)
  }
}

}  // namespace
}  // namespace ptc::cpu
