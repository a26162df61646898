#include <cmath>

#include "gtest/gtest.h"
#include "models/model_test_util.h"
#include "models/models.h"

namespace ptc::models {
namespace {

using testing::CheckOnnx;
using testing::InitializerElements;

// Grouped KV heads (4 query heads, 2 KV heads) and an explicit FFN size.
LlamaConfig Small(bool with_loss = false) {
  LlamaConfig c;
  c.vocab = 64;
  c.layers = 2;
  c.dim = 32;
  c.heads = 4;
  c.kv_heads = 2;
  c.ffn = 48;
  c.seq = 32;
  c.with_loss = with_loss;
  c.seed = 3;
  return c;
}

TEST(LlamaTest, PassesCheckerAndShapeInference) {
  for (const LlamaConfig& base : {*LlamaPreset("tiny"), Small()}) {
    for (bool loss : {false, true}) {
      LlamaConfig c = base;
      c.with_loss = loss;
      auto model = BuildLlama(c);
      ASSERT_TRUE(model.ok()) << model.status();
      EXPECT_EQ(CheckOnnx(*model), "") << "dim=" << c.dim << " loss=" << loss;
      EXPECT_EQ(InitializerElements(*model), ParameterCount(c));
      EXPECT_EQ(model->graph().output(0).name(), loss ? "loss" : "logits");
    }
  }
}

TEST(LlamaTest, ParameterCountsOfKnownModels) {
  EXPECT_EQ(ParameterCount(*LlamaPreset("7b")), 6738415616);  // Llama-2 7B
  EXPECT_EQ(ParameterCount(*LlamaPreset("1b")), 1100048384);  // TinyLlama 1.1B
  // Llama's FFN rule: 2/3 * 4 * 4096 = 10922 -> 11008 (multiple of 256).
  LlamaConfig c = *LlamaPreset("7b");
  const int64_t explicit_count = ParameterCount(c);
  c.ffn = 0;
  EXPECT_EQ(ParameterCount(c), explicit_count);
}

TEST(LlamaTest, ConfigErrors) {
  LlamaConfig c = Small();
  c.kv_heads = 3;
  auto m = BuildLlama(c);
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("kv_heads = 3 must divide heads = 4"), std::string::npos)
      << m.status();
  c = Small();
  c.dim = 36;
  c.heads = 4;  // head size 9: odd, no rotary halves
  m = BuildLlama(c);
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("must be even"), std::string::npos) << m.status();
  auto p = LlamaPreset("70b");
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("tiny, 1b, 7b"), std::string::npos) << p.status();
}

TEST(LlamaTest, ImportsWithBoundDims) {
  for (bool loss : {false, true}) {
    auto model = BuildLlama(Small(loss));
    ASSERT_TRUE(model.ok()) << model.status();
    onnx_import::ImportOptions options;
    options.dims = {{"batch", 2}, {"seq", 16}};
    auto module = onnx_import::ImportOnnxBytes(model->SerializeAsString(), "", "llama", options);
    ASSERT_TRUE(module.ok()) << module.status();
    ASSERT_EQ((*module)->main()->results().size(), 1u);
    EXPECT_EQ((*module)->main()->results()[0]->type().ToString(), loss ? "f32[]" : "f32[2,16,64]");
  }
}

// ---------------------------------------------------------------------------------------------
// Independent reference from Llama's definition, naive loops in double.

using Mat = std::vector<std::vector<double>>;

Mat RmsNormRef(const Mat& x, const std::vector<double>& w, double eps) {
  Mat y = x;
  for (size_t t = 0; t < x.size(); ++t) {
    double ms = 0;
    for (double v : x[t]) ms += v * v;
    ms /= x[t].size();
    for (size_t i = 0; i < x[t].size(); ++i) y[t][i] = x[t][i] / std::sqrt(ms + eps) * w[i];
  }
  return y;
}

Mat MatMulRef(const Mat& x, const std::vector<double>& w, size_t out) {
  Mat y(x.size(), std::vector<double>(out, 0.0));
  for (size_t t = 0; t < x.size(); ++t) {
    for (size_t o = 0; o < out; ++o) {
      for (size_t i = 0; i < x[t].size(); ++i) y[t][o] += x[t][i] * w[i * out + o];
    }
  }
  return y;
}

// Rotates each head of row t (position t) by angles t * theta^(-2i/D), pairing i with i + D/2.
void RopeRef(Mat& x, size_t heads, size_t D, double theta) {
  for (size_t t = 0; t < x.size(); ++t) {
    for (size_t h = 0; h < heads; ++h) {
      for (size_t i = 0; i < D / 2; ++i) {
        const double a = double(t) * std::pow(theta, -2.0 * double(i) / double(D));
        double& x1 = x[t][h * D + i];
        double& x2 = x[t][h * D + i + D / 2];
        const double r1 = x1 * std::cos(a) - x2 * std::sin(a);
        const double r2 = x2 * std::cos(a) + x1 * std::sin(a);
        x1 = r1;
        x2 = r2;
      }
    }
  }
}

Mat LlamaReference(const LlamaConfig& c, std::map<std::string, std::vector<double>>& w,
                   const std::vector<int64_t>& ids) {
  const size_t T = ids.size(), C = c.dim, H = c.heads, D = C / H, KVH = c.kv_heads, F = c.ffn;
  Mat x(T, std::vector<double>(C));
  for (size_t t = 0; t < T; ++t) {
    for (size_t i = 0; i < C; ++i) x[t][i] = w["embed_tokens.weight"][ids[t] * C + i];
  }
  for (int64_t l = 0; l < c.layers; ++l) {
    const std::string p = "layers." + std::to_string(l) + ".";
    Mat h = RmsNormRef(x, w[p + "input_layernorm.weight"], c.rms_eps);
    Mat q = MatMulRef(h, w[p + "self_attn.q_proj.weight"], C);
    Mat k = MatMulRef(h, w[p + "self_attn.k_proj.weight"], KVH * D);
    Mat v = MatMulRef(h, w[p + "self_attn.v_proj.weight"], KVH * D);
    RopeRef(q, H, D, c.rope_theta);
    RopeRef(k, KVH, D, c.rope_theta);
    Mat y(T, std::vector<double>(C, 0.0));
    for (size_t hh = 0; hh < H; ++hh) {
      const size_t kh = hh / (H / KVH);  // query head hh reads KV head kh
      for (size_t i = 0; i < T; ++i) {
        std::vector<double> s(i + 1);
        double mx = -INFINITY, z = 0;
        for (size_t j = 0; j <= i; ++j) {
          double dot = 0;
          for (size_t d = 0; d < D; ++d) dot += q[i][hh * D + d] * k[j][kh * D + d];
          s[j] = dot / std::sqrt(double(D));
          mx = std::max(mx, s[j]);
        }
        for (double& e : s) z += (e = std::exp(e - mx));
        for (size_t j = 0; j <= i; ++j) {
          for (size_t d = 0; d < D; ++d) y[i][hh * D + d] += s[j] / z * v[j][kh * D + d];
        }
      }
    }
    Mat o = MatMulRef(y, w[p + "self_attn.o_proj.weight"], C);
    for (size_t t = 0; t < T; ++t) {
      for (size_t i = 0; i < C; ++i) x[t][i] += o[t][i];
    }
    h = RmsNormRef(x, w[p + "post_attention_layernorm.weight"], c.rms_eps);
    Mat g = MatMulRef(h, w[p + "mlp.gate_proj.weight"], F);
    Mat u = MatMulRef(h, w[p + "mlp.up_proj.weight"], F);
    for (size_t t = 0; t < T; ++t) {
      for (size_t i = 0; i < F; ++i) g[t][i] = g[t][i] / (1.0 + std::exp(-g[t][i])) * u[t][i];
    }
    Mat m = MatMulRef(g, w[p + "mlp.down_proj.weight"], C);
    for (size_t t = 0; t < T; ++t) {
      for (size_t i = 0; i < C; ++i) x[t][i] += m[t][i];
    }
  }
  x = RmsNormRef(x, w["norm.weight"], c.rms_eps);
  return MatMulRef(x, w["lm_head.weight"], c.vocab);
}

TEST(LlamaTest, MatchesReferenceForwardPass) {
  const LlamaConfig c = Small();
  auto model = BuildLlama(c);
  ASSERT_TRUE(model.ok()) << model.status();
  testing::PerturbBiasesAndNorms(&*model);
  auto w = testing::Weights(*model);
  // Two sequences of 8: positions up to 7 exercise the rotary angles.
  const std::vector<int64_t> ids = {3, 14, 15, 9, 26, 53, 58, 9, 7, 9, 32, 38, 46, 26, 43, 38};
  auto out = testing::RunWithPtc(*model, {{"batch", 2}, {"seq", 8}},
                                 {{"input_ids", testing::I64Tensor(ids, {2, 8})}});
  ASSERT_TRUE(out.ok()) << out.status();
  ASSERT_EQ(out->size(), 1u);
  EXPECT_EQ((*out)[0].type().ToString(), "f32[2,8,64]");
  std::vector<double> flat;
  for (int b = 0; b < 2; ++b) {
    const Mat ref =
        LlamaReference(c, w, std::vector<int64_t>(ids.begin() + 8 * b, ids.begin() + 8 * b + 8));
    for (const auto& row : ref) flat.insert(flat.end(), row.begin(), row.end());
  }
  EXPECT_EQ(testing::CompareToReference((*out)[0], flat, 1e-4), "");
}

}  // namespace
}  // namespace ptc::models
