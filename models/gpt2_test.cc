#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "gtest/gtest.h"
#include "models/model_test_util.h"
#include "models/models.h"

namespace ptc::models {
namespace {

namespace fs = std::filesystem;
using testing::CheckOnnx;
using testing::InitializerElements;

Gpt2Config Tiny(bool with_loss = false) {
  Gpt2Config c = *Gpt2Preset("tiny");
  c.with_loss = with_loss;
  return c;
}

// A small config for the slower import / run tests: vocab 64, 2 layers, dim 32, 4 heads.
Gpt2Config Small(bool with_loss = false) {
  Gpt2Config c;
  c.vocab = 64;
  c.layers = 2;
  c.dim = 32;
  c.heads = 4;
  c.seq = 32;
  c.with_loss = with_loss;
  c.seed = 7;
  return c;
}

TEST(Gpt2Test, TinyPassesCheckerAndShapeInference) {
  for (bool loss : {false, true}) {
    auto model = BuildGpt2(Tiny(loss));
    ASSERT_TRUE(model.ok()) << model.status();
    onnx::ModelProto inferred;
    EXPECT_EQ(CheckOnnx(*model, &inferred), "") << "with_loss=" << loss;
    ASSERT_EQ(model->graph().output_size(), 1);
    EXPECT_EQ(model->graph().output(0).name(), loss ? "loss" : "logits");
    EXPECT_EQ(model->graph().input(0).name(), "input_ids");
    EXPECT_EQ(model->graph().input_size(), loss ? 2 : 1);
    EXPECT_EQ(model->opset_import(0).version(), 17);
  }
}

TEST(Gpt2Test, ParameterCountOfGpt2SmallIs124M) {
  // The published GPT-2 124M count (tied LM head): 124,439,808.
  EXPECT_EQ(ParameterCount(*Gpt2Preset("small")), 124439808);
  // Hand count for medium: wte + wpe + 24 blocks of 12*d^2 + 13*d + ln_f.
  const int64_t d = 1024;
  EXPECT_EQ(ParameterCount(*Gpt2Preset("medium")),
            50257 * d + 1024 * d + 24 * (12 * d * d + 13 * d) + 2 * d);
}

TEST(Gpt2Test, InitializersAreExactlyTheParameters) {
  auto model = BuildGpt2(Tiny());
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ(InitializerElements(*model), ParameterCount(Tiny()));
  // One tied embedding: wte is used by the embedding Gather and by the LM head.
  int wte_uses = 0;
  for (const auto& node : model->graph().node()) {
    for (const auto& in : node.input()) wte_uses += in == "wte";
  }
  EXPECT_EQ(wte_uses, 2);
  for (const auto& t : model->graph().initializer()) EXPECT_NE(t.name(), "lm_head.weight");
}

TEST(Gpt2Test, InitStatistics) {
  auto model = BuildGpt2(Tiny());
  ASSERT_TRUE(model.ok()) << model.status();
  auto w = testing::Weights(*model);
  auto stats = [](const std::vector<double>& v) {
    double s = 0, s2 = 0;
    for (double x : v) s += x, s2 += x * x;
    const double mean = s / v.size();
    return std::pair{mean, std::sqrt(s2 / v.size() - mean * mean)};
  };
  auto [mean, std] = stats(w["wte"]);
  EXPECT_NEAR(mean, 0.0, 1e-3);
  EXPECT_NEAR(std, 0.02, 0.02 * 0.02);  // 65536 samples: std error of std ~0.3%
  auto [pmean, pstd] = stats(w["h.0.attn.c_proj.weight"]);
  EXPECT_NEAR(pstd, 0.02 / std::sqrt(8.0), 0.02 / std::sqrt(8.0) * 0.03);
  for (double x : w["h.1.ln_1.weight"]) ASSERT_EQ(x, 1.0);
  for (double x : w["h.1.mlp.c_fc.bias"]) ASSERT_EQ(x, 0.0);
}

TEST(Gpt2Test, SeedIsDeterministic) {
  auto a = BuildGpt2(Small());
  auto b = BuildGpt2(Small());
  Gpt2Config other = Small();
  other.seed = 8;
  auto c = BuildGpt2(other);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_EQ(a->SerializeAsString(), b->SerializeAsString());
  EXPECT_NE(a->graph().initializer(0).raw_data(), c->graph().initializer(0).raw_data());
}

TEST(Gpt2Test, PresetsAndErrors) {
  EXPECT_EQ(Gpt2PresetNames(),
            (std::vector<std::string>{"tiny", "small", "medium", "large", "xl"}));
  auto bad = Gpt2Preset("huge");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("tiny, small, medium, large, xl"), std::string::npos)
      << bad.status();
  Gpt2Config c = Tiny();
  c.heads = 3;
  auto m = BuildGpt2(c);
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("not divisible by heads = 3"), std::string::npos)
      << m.status();
  c = Tiny();
  c.layers = 0;
  EXPECT_FALSE(BuildGpt2(c).ok());
  EXPECT_EQ(ParameterCount(*Gpt2Preset("xl")), 1557611200);  // GPT-2 XL, tied head

  auto by_name = BuildModel("gpt2", "tiny", {{"layers", "1"}, {"loss", "true"}});
  ASSERT_TRUE(by_name.ok()) << by_name.status();
  EXPECT_EQ(by_name->graph().output(0).name(), "loss");
  auto bad_key = BuildModel("gpt2", "tiny", {{"kv_heads", "1"}});
  ASSERT_FALSE(bad_key.ok());
  EXPECT_NE(bad_key.status().message().find("options: attn_dropout, dim, dropout, gelu, heads, layers"), std::string::npos)
      << bad_key.status();
  EXPECT_FALSE(BuildModel("gpt3", "tiny", {}).ok());
  EXPECT_FALSE(BuildModel("gpt2", "tiny", {{"dim", "abc"}}).ok());
}

// The MLP's GELU: by default GPT-2's tanh form in the op order torch.onnx exports
// F.gelu(x, approximate='tanh'); gelu = "erf" gives the exact form (F.gelu(x)).
TEST(Gpt2Test, GeluForms) {
  auto ops_of_first_mlp = [](const onnx::ModelProto& m) {
    std::vector<std::string> ops;
    for (const auto& n : m.graph().node()) {
      if (n.name().rfind("/h.0/mlp/", 0) == 0 && n.name().rfind("/h.0/mlp/c_", 0) != 0 &&
          n.op_type() != "Constant") {
        ops.push_back(n.op_type());
      }
    }
    return ops;
  };
  auto tanh_model = BuildGpt2(Tiny());
  ASSERT_TRUE(tanh_model.ok()) << tanh_model.status();
  EXPECT_EQ(ops_of_first_mlp(*tanh_model),
            (std::vector<std::string>{"Mul", "Mul", "Mul", "Add", "Mul", "Tanh", "Add", "Mul",
                                      "Mul"}));
  Gpt2Config erf = Tiny();
  erf.gelu = "erf";
  auto erf_model = BuildGpt2(erf);
  ASSERT_TRUE(erf_model.ok()) << erf_model.status();
  EXPECT_EQ(ops_of_first_mlp(*erf_model),
            (std::vector<std::string>{"Div", "Erf", "Add", "Mul", "Mul"}));
  auto config_of = [](const onnx::ModelProto& m) {
    for (const auto& p : m.metadata_props()) {
      if (p.key() == "ptc.config") return p.value();
    }
    return std::string();
  };
  EXPECT_NE(config_of(*tanh_model).find(" gelu=tanh"), std::string::npos);
  EXPECT_NE(config_of(*erf_model).find(" gelu=erf"), std::string::npos);
  auto by_name = BuildModel("gpt2", "tiny", {{"gelu", "erf"}});
  ASSERT_TRUE(by_name.ok()) << by_name.status();
  EXPECT_EQ(ops_of_first_mlp(*by_name), ops_of_first_mlp(*erf_model));

  Gpt2Config bad = Tiny();
  bad.gelu = "relu";
  auto m = BuildGpt2(bad);
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("gelu must be tanh or erf, got 'relu'"), std::string::npos)
      << m.status();
  EXPECT_FALSE(BuildModel("gpt2", "tiny", {{"gelu", "none"}}).ok());
}

TEST(Gpt2Test, WriteModelWithExternalData) {
  auto model = BuildGpt2(Small());
  ASSERT_TRUE(model.ok()) << model.status();
  const fs::path dir = fs::temp_directory_path() / "ptc_models_write_test";
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string path = (dir / "gpt2.onnx").string();
  ASSERT_TRUE(WriteModel(*model, path, /*external_data_threshold=*/1024).ok());
  ASSERT_TRUE(fs::exists(dir / "gpt2.onnx.data"));
  EXPECT_FALSE(fs::exists(dir / "gpt2.onnx.tmp"));

  onnx::ModelProto back;
  {
    std::ifstream f(path, std::ios::binary);
    ASSERT_TRUE(back.ParseFromIstream(&f));
  }
  std::ifstream data(dir / "gpt2.onnx.data", std::ios::binary);
  std::stringstream ss;
  ss << data.rdbuf();
  const std::string bytes = ss.str();
  ASSERT_EQ(back.graph().initializer_size(), model->graph().initializer_size());
  int external = 0;
  for (int i = 0; i < back.graph().initializer_size(); ++i) {
    const auto& got = back.graph().initializer(i);
    const auto& want = model->graph().initializer(i);
    EXPECT_EQ(got.name(), want.name());
    if (want.raw_data().size() < 1024) {
      EXPECT_EQ(got.raw_data(), want.raw_data()) << want.name();
      continue;
    }
    ++external;
    ASSERT_EQ(got.data_location(), onnx::TensorProto::EXTERNAL) << want.name();
    EXPECT_FALSE(got.has_raw_data());
    std::map<std::string, std::string> kv;
    for (const auto& e : got.external_data()) kv[e.key()] = e.value();
    EXPECT_EQ(kv["location"], "gpt2.onnx.data");
    const size_t offset = std::stoull(kv["offset"]), length = std::stoull(kv["length"]);
    EXPECT_EQ(offset % 64, 0u);
    ASSERT_EQ(length, want.raw_data().size());
    ASSERT_LE(offset + length, bytes.size());
    EXPECT_EQ(bytes.compare(offset, length, want.raw_data()), 0) << want.name();
  }
  EXPECT_GT(external, 0);
  // The checker reads external data references relative to the model file.
  try {
    onnx::checker::check_model(path);
  } catch (const std::exception& e) {
    ADD_FAILURE() << e.what();
  }
  // ptc's importer reads the external data back (resolved against the model's folder).
  onnx_import::ImportOptions import_options;
  import_options.dims = {{"batch", 1}, {"seq", 4}};
  auto module = onnx_import::ImportOnnxFile(path, import_options);
  ASSERT_TRUE(module.ok()) << module.status();
  const auto& tensors = (*module)->tensors();
  for (const auto& want : model->graph().initializer()) {
    auto it = tensors.find(want.name());
    ASSERT_NE(it, tensors.end()) << want.name();
    ASSERT_EQ(it->second.nbytes(), want.raw_data().size()) << want.name();
    EXPECT_EQ(std::memcmp(it->second.data(), want.raw_data().data(), want.raw_data().size()), 0)
        << want.name();
  }
  // Inline (negative threshold): everything in the one file, and no data file is made.
  const std::string inline_path = (dir / "inline.onnx").string();
  ASSERT_TRUE(WriteModel(*model, inline_path, /*external_data_threshold=*/-1).ok());
  EXPECT_FALSE(fs::exists(dir / "inline.onnx.data"));
  onnx::ModelProto inline_back;
  std::ifstream f(inline_path, std::ios::binary);
  ASSERT_TRUE(inline_back.ParseFromIstream(&f));
  EXPECT_EQ(inline_back.SerializeAsString(), model->SerializeAsString());
  fs::remove_all(dir);
}

TEST(Gpt2Test, WriteModelReportsUnwritablePaths) {
  auto model = BuildGpt2(Small());
  ASSERT_TRUE(model.ok()) << model.status();
  const std::string missing =
      (fs::temp_directory_path() / "ptc_models_no_such_dir" / "m.onnx").string();
  for (int64_t threshold : {int64_t{1024}, int64_t{-1}}) {
    absl::Status s = WriteModel(*model, missing, threshold);
    ASSERT_FALSE(s.ok());
    EXPECT_NE(s.message().find("ptc_models_no_such_dir"), std::string::npos) << s;
  }
  EXPECT_FALSE(WriteModel(*model, "").ok());
}

TEST(Gpt2Test, ImportsWithBoundDims) {
  for (bool loss : {false, true}) {
    auto model = BuildGpt2(Small(loss));
    ASSERT_TRUE(model.ok()) << model.status();
    onnx_import::ImportOptions options;
    options.dims = {{"batch", 2}, {"seq", 16}};
    auto module = onnx_import::ImportOnnxBytes(model->SerializeAsString(), "", "gpt2", options);
    ASSERT_TRUE(module.ok()) << module.status();
    const ir::Function* main = (*module)->main();
    ASSERT_NE(main, nullptr);
    ASSERT_EQ(main->results().size(), 1u);
    EXPECT_EQ(main->results()[0]->type().ToString(), loss ? "f32[]" : "f32[2,16,64]");
    int weights = 0;
    for (const ir::Value* p : main->params()) weights += p->is_param();
    EXPECT_EQ(weights, model->graph().initializer_size());
  }
}

// ---------------------------------------------------------------------------------------------
// Independent reference: GPT-2's forward pass from its definition, naive loops in double.

using Mat = std::vector<std::vector<double>>;  // [rows][cols]

Mat LayerNormRef(const Mat& x, const std::vector<double>& g, const std::vector<double>& b) {
  Mat y = x;
  for (size_t t = 0; t < x.size(); ++t) {
    const size_t n = x[t].size();
    double mean = 0, var = 0;
    for (double v : x[t]) mean += v;
    mean /= n;
    for (double v : x[t]) var += (v - mean) * (v - mean);
    var /= n;
    for (size_t i = 0; i < n; ++i) y[t][i] = (x[t][i] - mean) / std::sqrt(var + 1e-5) * g[i] + b[i];
  }
  return y;
}

// x [T, in] @ w (row-major [in, out]) + b.
Mat LinearRef(const Mat& x, const std::vector<double>& w, const std::vector<double>* b,
              size_t out) {
  Mat y(x.size(), std::vector<double>(out, 0.0));
  for (size_t t = 0; t < x.size(); ++t) {
    for (size_t o = 0; o < out; ++o) {
      double s = b ? (*b)[o] : 0.0;
      for (size_t i = 0; i < x[t].size(); ++i) s += x[t][i] * w[i * out + o];
      y[t][o] = s;
    }
  }
  return y;
}

// Logits [T][V] for one sequence.
Mat Gpt2Reference(const Gpt2Config& c, std::map<std::string, std::vector<double>>& w,
                  const std::vector<int64_t>& ids) {
  const size_t T = ids.size(), C = c.dim, H = c.heads, D = C / H;
  Mat x(T, std::vector<double>(C));
  for (size_t t = 0; t < T; ++t) {
    for (size_t i = 0; i < C; ++i) x[t][i] = w["wte"][ids[t] * C + i] + w["wpe"][t * C + i];
  }
  for (int64_t l = 0; l < c.layers; ++l) {
    const std::string p = "h." + std::to_string(l) + ".";
    Mat h = LayerNormRef(x, w[p + "ln_1.weight"], w[p + "ln_1.bias"]);
    Mat qkv = LinearRef(h, w[p + "attn.c_attn.weight"], &w[p + "attn.c_attn.bias"], 3 * C);
    Mat y(T, std::vector<double>(C, 0.0));
    for (size_t hh = 0; hh < H; ++hh) {
      for (size_t i = 0; i < T; ++i) {
        std::vector<double> s(i + 1);
        double mx = -INFINITY;
        for (size_t j = 0; j <= i; ++j) {  // causal: keys 0..i
          double dot = 0;
          for (size_t d = 0; d < D; ++d) dot += qkv[i][hh * D + d] * qkv[j][C + hh * D + d];
          s[j] = dot / std::sqrt(double(D));
          mx = std::max(mx, s[j]);
        }
        double z = 0;
        for (double& v : s) z += (v = std::exp(v - mx));
        for (size_t j = 0; j <= i; ++j) {
          for (size_t d = 0; d < D; ++d) y[i][hh * D + d] += s[j] / z * qkv[j][2 * C + hh * D + d];
        }
      }
    }
    Mat a = LinearRef(y, w[p + "attn.c_proj.weight"], &w[p + "attn.c_proj.bias"], C);
    for (size_t t = 0; t < T; ++t) {
      for (size_t i = 0; i < C; ++i) x[t][i] += a[t][i];
    }
    h = LayerNormRef(x, w[p + "ln_2.weight"], w[p + "ln_2.bias"]);
    Mat f = LinearRef(h, w[p + "mlp.c_fc.weight"], &w[p + "mlp.c_fc.bias"], 4 * C);
    const double k = std::sqrt(2.0 / M_PI);
    for (auto& row : f) {
      for (double& v : row) {
        v = c.gelu == "erf" ? 0.5 * v * (1.0 + std::erf(v / std::sqrt(2.0)))
                            : 0.5 * v * (1.0 + std::tanh(k * (v + 0.044715 * v * v * v)));
      }
    }
    Mat m = LinearRef(f, w[p + "mlp.c_proj.weight"], &w[p + "mlp.c_proj.bias"], C);
    for (size_t t = 0; t < T; ++t) {
      for (size_t i = 0; i < C; ++i) x[t][i] += m[t][i];
    }
  }
  x = LayerNormRef(x, w["ln_f.weight"], w["ln_f.bias"]);
  Mat logits(T, std::vector<double>(c.vocab, 0.0));
  for (size_t t = 0; t < T; ++t) {
    for (int64_t v = 0; v < c.vocab; ++v) {
      for (size_t i = 0; i < C; ++i) logits[t][v] += x[t][i] * w["wte"][v * C + i];
    }
  }
  return logits;
}

// Mean over labels != -100 of logsumexp(logits[t]) - logits[t][label].
double CrossEntropyRef(const Mat& logits, const std::vector<int64_t>& labels) {
  double sum = 0;
  int n = 0;
  for (size_t t = 0; t < logits.size(); ++t) {
    if (labels[t] == -100) continue;
    double mx = -INFINITY, z = 0;
    for (double v : logits[t]) mx = std::max(mx, v);
    for (double v : logits[t]) z += std::exp(v - mx);
    sum += mx + std::log(z) - logits[t][labels[t]];
    ++n;
  }
  return sum / n;
}

TEST(Gpt2Test, TinyMatchesReferenceForwardPass) {
  for (const char* gelu : {"tanh", "erf"}) {
    Gpt2Config c = Tiny();
    c.gelu = gelu;
    auto model = BuildGpt2(c);
    ASSERT_TRUE(model.ok()) << model.status();
    testing::PerturbBiasesAndNorms(&*model);
    auto w = testing::Weights(*model);
    const std::vector<int64_t> ids = {72, 101, 108, 108, 111, 44, 32, 255};  // "Hello, \xff"
    const Mat ref = Gpt2Reference(c, w, ids);
    std::vector<double> flat;
    for (const auto& row : ref) flat.insert(flat.end(), row.begin(), row.end());
    // The default pipeline and no passes at all must both match.
    for (const char* passes : {"default", "none"}) {
      auto out = testing::RunWithPtc(*model, {{"batch", 1}, {"seq", 8}},
                                     {{"input_ids", testing::I64Tensor(ids, {1, 8})}}, passes);
      ASSERT_TRUE(out.ok()) << "gelu=" << gelu << " passes=" << passes << ": " << out.status();
      ASSERT_EQ(out->size(), 1u);
      EXPECT_EQ((*out)[0].type().ToString(), "f32[1,8,256]");
      // Within 1e-5 (~3e-7 measured) of its own form's reference, while the other form's is
      // ~4.4e-5 away (the logits of this model, not rounding): the check tells them apart.
      EXPECT_EQ(testing::CompareToReference((*out)[0], flat, 1e-5), "")
          << "gelu=" << gelu << " passes=" << passes;
      Gpt2Config other = c;
      other.gelu = c.gelu == "erf" ? "tanh" : "erf";
      std::vector<double> other_flat;
      for (const auto& row : Gpt2Reference(other, w, ids)) {
        other_flat.insert(other_flat.end(), row.begin(), row.end());
      }
      EXPECT_NE(testing::CompareToReference((*out)[0], other_flat, 1e-5), "")
          << "gelu=" << gelu << " passes=" << passes;
    }
  }
}

TEST(Gpt2Test, LossMatchesReference) {
  const Gpt2Config c = Small(/*with_loss=*/true);
  auto model = BuildGpt2(c);
  ASSERT_TRUE(model.ok()) << model.status();
  testing::PerturbBiasesAndNorms(&*model);
  auto w = testing::Weights(*model);
  const std::vector<int64_t> ids = {1, 5, 9, 63, 0, 17, 33, 2, 8, 8, 40, 41};
  const std::vector<int64_t> labels = {5, 9, 63, 0, 17, -100, 2, 8, 8, 40, 41, 3};
  auto out = testing::RunWithPtc(*model, {{"batch", 2}, {"seq", 6}},
                                 {{"input_ids", testing::I64Tensor(ids, {2, 6})},
                                  {"labels", testing::I64Tensor(labels, {2, 6})}});
  ASSERT_TRUE(out.ok()) << out.status();
  ASSERT_EQ(out->size(), 1u);
  ASSERT_EQ((*out)[0].type().ToString(), "f32[]");
  Mat logits;
  for (int b = 0; b < 2; ++b) {
    Mat l = Gpt2Reference(c, w, std::vector<int64_t>(ids.begin() + 6 * b, ids.begin() + 6 * b + 6));
    logits.insert(logits.end(), l.begin(), l.end());
  }
  const double want = CrossEntropyRef(logits, labels);
  EXPECT_NEAR((*out)[0].GetDouble(0), want, 1e-4 * std::fabs(want));
}

}  // namespace
}  // namespace ptc::models
