#include <cmath>

#include "gtest/gtest.h"
#include "models/model_test_util.h"
#include "models/models.h"

namespace ptc::models {
namespace {

using testing::CheckOnnx;
using testing::InitializerElements;

// Different vocab sizes and layer counts on the two sides, so a mix-up shows.
Seq2SeqConfig Small(bool with_loss = false) {
  Seq2SeqConfig c;
  c.src_vocab = 50;
  c.tgt_vocab = 40;
  c.encoder_layers = 2;
  c.decoder_layers = 1;
  c.dim = 32;
  c.heads = 4;
  c.ffn = 48;
  c.seq = 32;
  c.with_loss = with_loss;
  c.seed = 5;
  return c;
}

TEST(Seq2SeqTest, PassesCheckerAndShapeInference) {
  for (const Seq2SeqConfig& base : {*Seq2SeqPreset("tiny"), Small()}) {
    for (bool loss : {false, true}) {
      Seq2SeqConfig c = base;
      c.with_loss = loss;
      auto model = BuildSeq2Seq(c);
      ASSERT_TRUE(model.ok()) << model.status();
      EXPECT_EQ(CheckOnnx(*model), "") << "dim=" << c.dim << " loss=" << loss;
      EXPECT_EQ(InitializerElements(*model), ParameterCount(c));
      EXPECT_EQ(model->graph().input_size(), loss ? 3 : 2);
      EXPECT_EQ(model->graph().output(0).name(), loss ? "loss" : "logits");
    }
  }
}

TEST(Seq2SeqTest, ParameterCountMatchesNnTransformer) {
  // torch.nn.Transformer(d_model=512, nhead=8, 6+6 layers, dim_feedforward=2048) has 44,140,544
  // parameters; add embeddings (2 * 32000 + 512 positions) * 512 and the output projection.
  const int64_t transformer = 44140544;
  EXPECT_EQ(ParameterCount(*Seq2SeqPreset("base")),
            transformer + (2 * 32000 + 512) * 512 + 512 * 32000 + 32000);
}

TEST(Seq2SeqTest, ImportsWithBoundDims) {
  for (bool loss : {false, true}) {
    auto model = BuildSeq2Seq(Small(loss));
    ASSERT_TRUE(model.ok()) << model.status();
    onnx_import::ImportOptions options;
    options.dims = {{"batch", 2}, {"src_seq", 12}, {"tgt_seq", 16}};
    auto module = onnx_import::ImportOnnxBytes(model->SerializeAsString(), "", "seq2seq", options);
    ASSERT_TRUE(module.ok()) << module.status();
    ASSERT_EQ((*module)->main()->results().size(), 1u);
    EXPECT_EQ((*module)->main()->results()[0]->type().ToString(), loss ? "f32[]" : "f32[2,16,40]");
  }
}

// ---------------------------------------------------------------------------------------------
// Independent reference from nn.Transformer's definition (post-norm), naive loops in double.

using Mat = std::vector<std::vector<double>>;
using WeightMap = std::map<std::string, std::vector<double>>;

Mat LinearRef(const Mat& x, WeightMap& w, const std::string& name, size_t out) {
  const std::vector<double>& W = w[name + ".weight"];
  const std::vector<double>& b = w[name + ".bias"];
  Mat y(x.size(), std::vector<double>(out));
  for (size_t t = 0; t < x.size(); ++t) {
    for (size_t o = 0; o < out; ++o) {
      double s = b[o];
      for (size_t i = 0; i < x[t].size(); ++i) s += x[t][i] * W[i * out + o];
      y[t][o] = s;
    }
  }
  return y;
}

// LayerNorm(x + y).
Mat AddNormRef(const Mat& x, const Mat& y, WeightMap& w, const std::string& name) {
  Mat z = x;
  for (size_t t = 0; t < x.size(); ++t) {
    const size_t n = x[t].size();
    double mean = 0, var = 0;
    for (size_t i = 0; i < n; ++i) mean += (z[t][i] = x[t][i] + y[t][i]);
    mean /= n;
    for (double v : z[t]) var += (v - mean) * (v - mean);
    var /= n;
    for (size_t i = 0; i < n; ++i) {
      z[t][i] =
          (z[t][i] - mean) / std::sqrt(var + 1e-5) * w[name + ".weight"][i] + w[name + ".bias"][i];
    }
  }
  return z;
}

Mat Zeros(size_t rows, size_t cols) { return Mat(rows, std::vector<double>(cols, 0.0)); }

// Multi-head attention of queries q [T, C] over keys/values [S, C] (already projected).
Mat MhaRef(const Mat& q, const Mat& k, const Mat& v, size_t H, bool causal) {
  const size_t T = q.size(), S = k.size(), C = q[0].size(), D = C / H;
  Mat y = Zeros(T, C);
  for (size_t h = 0; h < H; ++h) {
    for (size_t i = 0; i < T; ++i) {
      const size_t n = causal ? i + 1 : S;
      std::vector<double> s(n);
      double mx = -INFINITY, z = 0;
      for (size_t j = 0; j < n; ++j) {
        double dot = 0;
        for (size_t d = 0; d < D; ++d) dot += q[i][h * D + d] * k[j][h * D + d];
        s[j] = dot / std::sqrt(double(D));
        mx = std::max(mx, s[j]);
      }
      for (double& e : s) z += (e = std::exp(e - mx));
      for (size_t j = 0; j < n; ++j) {
        for (size_t d = 0; d < D; ++d) y[i][h * D + d] += s[j] / z * v[j][h * D + d];
      }
    }
  }
  return y;
}

// Columns [from, from + n) of x.
Mat Cols(const Mat& x, size_t from, size_t n) {
  Mat y;
  for (const auto& row : x) y.emplace_back(row.begin() + from, row.begin() + from + n);
  return y;
}

Mat FfnRef(const Mat& x, WeightMap& w, const std::string& p, size_t ffn, size_t C) {
  Mat h = LinearRef(x, w, p + ".linear1", ffn);
  for (auto& row : h) {
    for (double& v : row) v = std::max(v, 0.0);
  }
  return LinearRef(h, w, p + ".linear2", C);
}

Mat Seq2SeqReference(const Seq2SeqConfig& c, WeightMap& w, const std::vector<int64_t>& src,
                     const std::vector<int64_t>& tgt) {
  const size_t C = c.dim, H = c.heads;
  auto embed = [&](const std::string& table, const std::vector<int64_t>& ids) {
    Mat x = Zeros(ids.size(), C);
    for (size_t t = 0; t < ids.size(); ++t) {
      for (size_t i = 0; i < C; ++i)
        x[t][i] = w[table][ids[t] * C + i] + w["pos_emb.weight"][t * C + i];
    }
    return x;
  };
  Mat x = embed("src_emb.weight", src);
  for (int64_t l = 0; l < c.encoder_layers; ++l) {
    const std::string p = "encoder.layers." + std::to_string(l);
    Mat qkv = LinearRef(x, w, p + ".self_attn.qkv", 3 * C);
    Mat a = MhaRef(Cols(qkv, 0, C), Cols(qkv, C, C), Cols(qkv, 2 * C, C), H, false);
    x = AddNormRef(x, LinearRef(a, w, p + ".self_attn.out", C), w, p + ".norm1");
    x = AddNormRef(x, FfnRef(x, w, p, c.ffn, C), w, p + ".norm2");
  }
  x = AddNormRef(x, Zeros(x.size(), C), w, "encoder.norm");
  Mat y = embed("tgt_emb.weight", tgt);
  for (int64_t l = 0; l < c.decoder_layers; ++l) {
    const std::string p = "decoder.layers." + std::to_string(l);
    Mat qkv = LinearRef(y, w, p + ".self_attn.qkv", 3 * C);
    Mat a = MhaRef(Cols(qkv, 0, C), Cols(qkv, C, C), Cols(qkv, 2 * C, C), H, true);
    y = AddNormRef(y, LinearRef(a, w, p + ".self_attn.out", C), w, p + ".norm1");
    Mat q = LinearRef(y, w, p + ".cross_attn.q", C);
    Mat kv = LinearRef(x, w, p + ".cross_attn.kv", 2 * C);
    a = MhaRef(q, Cols(kv, 0, C), Cols(kv, C, C), H, false);
    y = AddNormRef(y, LinearRef(a, w, p + ".cross_attn.out", C), w, p + ".norm2");
    y = AddNormRef(y, FfnRef(y, w, p, c.ffn, C), w, p + ".norm3");
  }
  y = AddNormRef(y, Zeros(y.size(), C), w, "decoder.norm");
  return LinearRef(y, w, "out", c.tgt_vocab);
}

TEST(Seq2SeqTest, MatchesReferenceForwardPass) {
  const Seq2SeqConfig c = Small();
  auto model = BuildSeq2Seq(c);
  ASSERT_TRUE(model.ok()) << model.status();
  testing::PerturbBiasesAndNorms(&*model);
  auto w = testing::Weights(*model);
  // Source and target lengths differ (5 vs 7), so cross attention is [T, S] = [7, 5].
  const std::vector<int64_t> src = {1, 49, 20, 3, 0};
  const std::vector<int64_t> tgt = {39, 2, 11, 11, 30, 0, 5};
  auto out = testing::RunWithPtc(
      *model, {{"batch", 1}, {"src_seq", 5}, {"tgt_seq", 7}},
      {{"src_ids", testing::I64Tensor(src, {1, 5})}, {"tgt_ids", testing::I64Tensor(tgt, {1, 7})}});
  ASSERT_TRUE(out.ok()) << out.status();
  ASSERT_EQ(out->size(), 1u);
  EXPECT_EQ((*out)[0].type().ToString(), "f32[1,7,40]");
  std::vector<double> flat;
  for (const auto& row : Seq2SeqReference(c, w, src, tgt))
    flat.insert(flat.end(), row.begin(), row.end());
  EXPECT_EQ(testing::CompareToReference((*out)[0], flat, 1e-4), "");
}

}  // namespace
}  // namespace ptc::models
