// Training steps against PyTorch references (tests/e2e/make_references.py): every parameter
// gradient of the GPT loss model, and the losses of 5 torch.optim.AdamW steps. Plus contract
// checks (parameter order, results, state) and accumulation / SGD / clipping behaviour.
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "compiler/autodiff/test_interpreter.h"
#include "compiler/autodiff/training.h"
#include "compiler/ir/parser.h"
#include "compiler/ir/printer.h"
#include "compiler/ir/verifier.h"
#include "compiler/onnx/importer.h"
#include "compiler/onnx/onnx_util.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "onnx/onnx_pb.h"

namespace ptc::autodiff {
namespace {

std::string SourceDir() {
  const char* env = std::getenv("PTC_SOURCE_DIR");
  return env ? env : ".";
}

absl::StatusOr<ir::Tensor> ReadTensor(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError("cannot open " + path);
  onnx::TensorProto proto;
  if (!proto.ParseFromIstream(&in)) return absl::InvalidArgumentError("bad TensorProto " + path);
  return onnx_import::TensorFromProto(proto, nullptr);
}

struct Reference {
  nlohmann::json meta;
  std::unique_ptr<ir::Module> module;
  std::map<std::string, ir::Tensor> inputs;
};

void Load(const std::string& name, Reference& ref) {
  const std::string dir = SourceDir() + "/tests/data/e2e/" + name;
  std::ifstream mf(dir + "/meta.json");
  ASSERT_TRUE(mf) << "missing " << dir << "/meta.json";
  ref.meta = nlohmann::json::parse(mf);
  onnx_import::ImportOptions opts;
  for (auto& [k, v] : ref.meta["dims"].items()) opts.dims[k] = v.get<int64_t>();
  auto m = onnx_import::ImportOnnxFile(dir + "/model.onnx", opts);
  ASSERT_TRUE(m.ok()) << m.status();
  ref.module = *std::move(m);
  int i = 0;
  for (const auto& in : ref.meta["inputs"]) {
    auto t = ReadTensor(dir + "/input_" + std::to_string(i++) + ".pb");
    ASSERT_TRUE(t.ok()) << t.status();
    ref.inputs[in.get<std::string>()] = *t;
  }
}

void CheckClose(const ir::Tensor& got, const ir::Tensor& want, double rtol, double atol,
                const std::string& what) {
  ASSERT_EQ(got.num_elements(), want.num_elements()) << what;
  double worst = 0;
  int64_t bad = 0;
  for (int64_t i = 0; i < got.num_elements(); ++i) {
    double g = got.GetDouble(i), w = want.GetDouble(i);
    double err = std::fabs(g - w);
    if (!(err <= atol + rtol * std::fabs(w))) ++bad;
    worst = std::max(worst, err / (atol + rtol * std::fabs(w)));
  }
  EXPECT_EQ(bad, 0) << what << ": " << bad << " elements out of tolerance, worst error "
                    << worst << "x the allowed";
}

void CheckGptLoss(const std::string& name) {
  Reference ref;
  Load(name, ref);
  if (::testing::Test::HasFailure()) return;
  ir::Module& module = *ref.module;
  TrainOptions o;
  o.keep_gradients = true;  // compared with PyTorch's gradients below
  const auto& adam = ref.meta["training"]["adamw"];
  o.lr = adam["lr"].get<double>();
  o.beta1 = adam["beta1"].get<double>();
  o.beta2 = adam["beta2"].get<double>();
  o.eps = adam["eps"].get<double>();
  o.weight_decay = adam["weight_decay"].get<double>();
  auto st = BuildTrainingStep(module, o);
  ASSERT_TRUE(st.ok()) << st;
  ASSERT_TRUE(ir::Verify(module).ok()) << ir::Verify(module);
  const ir::Function& f = *module.main();

  // Contract: results loss, grad_norm, lr, grad.<w>...; every param has a tensor; zero-started
  // optimizer state has none (the executors start it at zero: no zeros stored in plans).
  ASSERT_GE(f.results().size(), 3u);
  for (const ir::Value* p : f.params()) {
    if (p->is_param()) EXPECT_TRUE(module.tensors().count(p->name())) << p->name();
    if (p->flags().count("state") && p->name().rfind("adam.", 0) == 0) {
      EXPECT_FALSE(module.tensors().count(p->name())) << p->name();
    }
  }
  std::map<std::string, ir::Tensor> state = ref.inputs;
  auto run = testing::Interpret(f, state, &module);
  ASSERT_TRUE(run.ok()) << run.status();
  const double want_loss = ref.meta["training"]["adamw"]["losses"][0].get<double>();
  EXPECT_NEAR(run->results[0].GetDouble(0), want_loss, 1e-4 * std::fabs(want_loss));

  const std::string dir = SourceDir() + "/tests/data/e2e/" + name + "/";
  const double rtol = ref.meta.value("rtol", 1e-4), atol = ref.meta.value("atol", 1e-5);
  size_t checked = 0;
  for (auto& [weight, file] : ref.meta["training"]["grads"].items()) {
    auto want = ReadTensor(dir + file.get<std::string>());
    ASSERT_TRUE(want.ok()) << want.status();
    bool found = false;
    for (size_t r = 3; r < f.results().size(); ++r) {
      if (f.results()[r]->name() == "grad." + weight) {
        CheckClose(run->results[r], *want, rtol, atol, "grad of " + weight);
        found = true;
        ++checked;
      }
    }
    EXPECT_TRUE(found) << "no gradient result for " << weight;
  }
  EXPECT_EQ(checked, f.results().size() - 3);

  // 5 AdamW steps on the same batch: loss before each update.
  const auto& losses = ref.meta["training"]["adamw"]["losses"];
  for (const ir::Value* p : f.params()) {
    if (module.tensors().count(p->name())) state[p->name()] = module.tensors().at(p->name());
  }
  for (size_t s = 0; s < losses.size(); ++s) {
    auto r = testing::Interpret(f, state, &module);
    ASSERT_TRUE(r.ok()) << r.status();
    const double want = losses[s].get<double>();
    EXPECT_NEAR(r->results[0].GetDouble(0), want, 1e-3 * std::fabs(want)) << "step " << s;
    EXPECT_NEAR(r->results[2].GetDouble(0), o.lr, 1e-9);
    for (auto& [target, value] : r->assigns) state[target] = value;
  }
  EXPECT_EQ(state.at("opt.step").GetDouble(0), static_cast<double>(losses.size()));
}

TEST(TrainingReference, GptLossOpset17) { CheckGptLoss("gpt_loss_opset17"); }
TEST(TrainingReference, GptLossOpset14) { CheckGptLoss("gpt_loss_opset14"); }

// A tiny linear model y = x @ w with an explicit mean-square loss, built in IR.
std::unique_ptr<ir::Module> TinyModel() {
  auto m = std::make_unique<ir::Module>();
  ir::Function* f = m->AddFunction("main");
  ir::Value* x = f->AddParam("x", {ir::DType::kF32, {2, 3}});
  ir::Value* w = f->AddParam("w", {ir::DType::kF32, {3, 1}}, {"param"});
  ir::Value* unused = f->AddParam("unused", {ir::DType::kF32, {2}}, {"param"});
  (void)unused;
  m->tensors()["w"] = ir::Tensor::FromVector(ir::DType::kF32, {3, 1}, std::vector<float>{1, -2, 3});
  m->tensors()["unused"] = ir::Tensor(ir::DType::kF32, {2});
  ir::Value* y = f->AddNode("matmul", {x, w}, {{ir::DType::kF32, {2, 1}}})->output(0);
  ir::Value* y2 = f->AddNode("mul", {y, y}, {{ir::DType::kF32, {2, 1}}})->output(0);
  ir::Value* l = f->AddNode("reduce_mean", {y2}, {{ir::DType::kF32, {}}},
                            {{"axes", std::vector<int64_t>{}}, {"keepdims", int64_t{0}}})
                     ->output(0);
  f->set_results({l});
  return m;
}

std::map<std::string, ir::Tensor> TinyInputs() {
  return {{"x", ir::Tensor::FromVector(ir::DType::kF32, {2, 3},
                                       std::vector<float>{0.5f, 1, -1, 2, 0.25f, 1})}};
}

TEST(TrainingStep, ParameterOrderStateAndResults) {
  auto m = TinyModel();
  TrainOptions o;
  ASSERT_TRUE(BuildTrainingStep(*m, o).ok());
  const ir::Function& f = *m->main();
  std::vector<std::string> names;
  for (const ir::Value* p : f.params()) names.push_back(p->name());
  EXPECT_EQ(names, (std::vector<std::string>{"x", "w", "unused", "adam.m.w", "adam.v.w",
                                             "opt.step"}));
  EXPECT_TRUE(f.params()[2]->flags().count("frozen"));
  EXPECT_TRUE(f.params()[5]->flags().count("state"));
  // By default the step returns loss, grad_norm and lr; --keep-gradients adds grad.<weight>.
  ASSERT_EQ(f.results().size(), 3u);
  EXPECT_TRUE(ir::Verify(*m).ok()) << ir::Verify(*m);
  auto kept = TinyModel();
  o.keep_gradients = true;
  ASSERT_TRUE(BuildTrainingStep(*kept, o).ok());
  ASSERT_EQ(kept->main()->results().size(), 4u);
  EXPECT_EQ(kept->main()->results()[3]->name(), "grad.w");
  EXPECT_TRUE(ir::Verify(*kept).ok()) << ir::Verify(*kept);
}

// SGD with momentum against the closed form, and clipping to a tiny max norm.
TEST(TrainingStep, SgdMomentumWithClipping) {
  auto m = TinyModel();
  TrainOptions o;
  o.optimizer = "sgd";
  o.lr = 0.1;
  o.momentum = 0.9;
  o.grad_clip = 0.5;
  ASSERT_TRUE(BuildTrainingStep(*m, o).ok());
  auto state = TinyInputs();
  auto r = testing::Interpret(*m->main(), state, m.get());
  ASSERT_TRUE(r.ok()) << r.status();
  // loss = mean((x w)^2); grad w = 2/N x^T (x w).  x w = [0.5-2-3, 2-0.5+3] = [-4.5, 4.5]
  const double g[3] = {(0.5 * -4.5 + 2 * 4.5), (1 * -4.5 + 0.25 * 4.5), (-1 * -4.5 + 1 * 4.5)};
  double norm = std::sqrt(g[0] * g[0] + g[1] * g[1] + g[2] * g[2]);
  EXPECT_NEAR(r->results[1].GetDouble(0), norm, 1e-4 * norm);
  const double scale = 0.5 / (norm + 1e-6);
  const double w0[3] = {1, -2, 3};
  for (auto& [target, value] : r->assigns) {
    if (target == "w") {
      for (int i = 0; i < 3; ++i) {
        EXPECT_NEAR(value.GetDouble(i), w0[i] - 0.1 * g[i] * scale, 1e-5) << i;
      }
    }
    if (target == "sgd.mom.w") EXPECT_NEAR(value.GetDouble(0), g[0] * scale, 1e-5);
  }
}

// Accumulating 2 micro-batches: the first step leaves the weight unchanged, the second applies
// the mean gradient; a cosine schedule with warmup drives lr.
TEST(TrainingStep, AccumulationAppliesEveryNSteps) {
  auto m = TinyModel();
  TrainOptions o;
  o.optimizer = "sgd";
  o.lr = 0.1;
  o.accumulate = 2;
  o.schedule = "cosine";
  o.warmup = 2;
  o.total_steps = 10;
  ASSERT_TRUE(BuildTrainingStep(*m, o).ok());
  ASSERT_TRUE(ir::Verify(*m).ok()) << ir::Verify(*m);
  auto state = TinyInputs();
  for (const ir::Value* p : m->main()->params()) {
    if (m->tensors().count(p->name())) state[p->name()] = m->tensors().at(p->name());
  }
  const ir::Tensor w0 = state["w"];
  auto r1 = testing::Interpret(*m->main(), state, m.get());
  ASSERT_TRUE(r1.ok()) << r1.status();
  for (auto& [t, v] : r1->assigns) state[t] = v;
  EXPECT_TRUE(state["w"].BitEquals(w0));
  EXPECT_EQ(state["opt.step"].GetDouble(0), 0);
  EXPECT_EQ(state["accum.count"].GetDouble(0), 1);
  auto r2 = testing::Interpret(*m->main(), state, m.get());
  ASSERT_TRUE(r2.ok()) << r2.status();
  for (auto& [t, v] : r2->assigns) state[t] = v;
  EXPECT_EQ(state["opt.step"].GetDouble(0), 1);
  EXPECT_EQ(state["accum.count"].GetDouble(0), 0);
  EXPECT_NEAR(r2->results[2].GetDouble(0), 0.1 * 1 / 2, 1e-7);  // warmup step 0: lr/2
  const double g0 = 0.5 * -4.5 + 2 * 4.5;  // same batch twice: mean gradient = gradient
  EXPECT_NEAR(state["w"].GetDouble(0), 1 - 0.05 * g0, 1e-5);
}

// Dynamic loss scaling (fp16's GradScaler rule), checked in f32: scaling by powers of two is
// exact, so clean steps give bit for bit the unscaled run's weights; a scale so large that the
// gradients overflow skips the step (weights, moments and the step count unchanged) and
// halves the scale; loss_scale_interval clean steps double it.
TEST(TrainingStep, DynamicLossScaling) {
  auto run = [](double init, int64_t interval, int steps, std::map<std::string, ir::Tensor>* st,
                const std::string& mode) {
    auto m = TinyModel();
    TrainOptions o;
    o.lr = 0.01;
    o.grad_clip = 1.0;
    o.loss_scale = mode;
    o.loss_scale_init = init;
    o.loss_scale_interval = interval;
    absl::Status built = BuildTrainingStep(*m, o);
    EXPECT_TRUE(built.ok()) << built;
    EXPECT_TRUE(ir::Verify(*m).ok()) << ir::Verify(*m);
    auto state = TinyInputs();
    for (const ir::Value* p : m->main()->params()) {
      if (m->tensors().count(p->name())) state[p->name()] = m->tensors().at(p->name());
    }
    std::vector<double> losses;
    for (int i = 0; i < steps; ++i) {
      auto r = testing::Interpret(*m->main(), state, m.get());
      EXPECT_TRUE(r.ok()) << r.status();
      if (!r.ok()) break;
      losses.push_back(r->results[0].GetDouble(0));
      for (auto& [t, v] : r->assigns) state[t] = v;
    }
    *st = state;
    return losses;
  };
  std::map<std::string, ir::Tensor> plain, scaled, overflow;
  auto l0 = run(0, 1, 4, &plain, "none");
  auto l1 = run(1024, 2, 4, &scaled, "dynamic");
  EXPECT_EQ(l0, l1);
  EXPECT_TRUE(scaled["w"].BitEquals(plain["w"]));
  EXPECT_TRUE(scaled["adam.v.w"].BitEquals(plain["adam.v.w"]));
  EXPECT_EQ(scaled["opt.step"].GetDouble(0), 4);
  EXPECT_EQ(scaled["opt.loss_scale"].GetDouble(0), 4096);  // doubled after steps 2 and 4
  EXPECT_EQ(scaled["opt.loss_scale.good_steps"].GetDouble(0), 0);
  // 3e38 times gradients of ~10 overflows f32: the first steps are skipped, the scale halving
  // each time until the scaled backward fits, then training goes on.
  run(3e38, 1000, 6, &overflow, "dynamic");
  const int updates = static_cast<int>(overflow["opt.step"].GetDouble(0));
  const int skipped = 6 - updates;
  EXPECT_GE(skipped, 1);
  EXPECT_GE(updates, 1);
  EXPECT_NEAR(overflow["opt.loss_scale"].GetDouble(0), 3e38 / std::pow(2.0, skipped), 1e33);
  EXPECT_EQ(overflow["opt.loss_scale.good_steps"].GetDouble(0), updates);
  std::map<std::string, ir::Tensor> same;
  run(0, 1, updates, &same, "none");
  EXPECT_TRUE(overflow["w"].BitEquals(same["w"]));  // the skipped steps changed nothing
  EXPECT_TRUE(overflow["adam.m.w"].BitEquals(same["adam.m.w"]));
  // Errors.
  auto m = TinyModel();
  TrainOptions bad;
  bad.loss_scale = "static";
  EXPECT_FALSE(BuildTrainingStep(*m, bad).ok());
  auto m2 = TinyModel();
  TrainOptions acc;
  acc.loss_scale = "dynamic";
  acc.accumulate = 2;
  EXPECT_FALSE(BuildTrainingStep(*m2, acc).ok());
}

// The printer and parser handle the 0-output assign nodes: print(parse(print(step))) is stable.
TEST(TrainingStep, TextRoundTrip) {
  auto m = TinyModel();
  TrainOptions o;
  o.accumulate = 2;
  o.grad_clip = 1.0;
  ASSERT_TRUE(BuildTrainingStep(*m, o).ok());
  const std::string text = ir::PrintModule(*m);
  EXPECT_NE(text.find("assign(%w, "), std::string::npos) << text;
  auto parsed = ir::ParseModule(text);
  ASSERT_TRUE(parsed.ok()) << parsed.status() << "\n" << text;
  EXPECT_EQ(ir::PrintModule(**parsed), text);
}

TEST(TrainingStep, ErrorsAreClear) {
  auto m = TinyModel();
  TrainOptions o;
  o.optimizer = "lamb";
  auto s = BuildTrainingStep(*m, o);
  EXPECT_NE(s.message().find("lamb"), std::string::npos) << s;
  auto m2 = TinyModel();
  TrainOptions o2;
  o2.frozen = "w";
  s = BuildTrainingStep(*m2, o2);
  EXPECT_NE(s.message().find("no trainable weight"), std::string::npos) << s;
}

}  // namespace
}  // namespace ptc::autodiff
