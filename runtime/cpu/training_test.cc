// Executor on training plans, data pipeline, checkpoints, trainer, export. The training-step
// module is built by hand (a linear model with an SGD-with-momentum update written with
// ordinary ops and assign), so these tests do not depend on compiler/autodiff.
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "codegen/cpu/kernel.h"
#include "gtest/gtest.h"
#include "runtime/cpu/checkpoint.h"
#include "runtime/cpu/data.h"
#include "runtime/cpu/executor.h"
#include "runtime/cpu/file_util.h"
#include "runtime/cpu/trainer.h"

namespace ptc {
namespace {

using ir::DType;
using ir::Tensor;
using ir::TensorType;

constexpr double kLr = 0.5, kMomentum = 0.9;

std::string TempDir(const std::string& name) {
  std::string d = absl::StrCat(::testing::TempDir(), "/ptc_training_", name, "_", ::getpid());
  (void)fileutil::RemoveTree(d);
  EXPECT_TRUE(fileutil::MakeDirs(d).ok());
  return d;
}

ir::Value* Const(ir::Function* f, float v) {
  return f->AddNode("constant", {}, {TensorType{DType::kF32, {}}},
                    {{"value", Tensor::FromVector<float>(DType::kF32, {}, {v})}})
      ->output();
}

ir::Value* Op(ir::Function* f, const std::string& op, std::vector<ir::Value*> in,
              TensorType type, ir::AttrMap attrs = {}, std::string name = "") {
  std::vector<std::string> names;
  if (!name.empty()) names.push_back(name);
  return f->AddNode(op, std::move(in), {std::move(type)}, std::move(attrs), "", names)->output();
}

// loss(x, y) = mean((w*x/256 + b - y/256)^2) over the batch; returns {loss, dw, db}.
struct Forward {
  ir::Value *loss, *dw, *db;
};
Forward BuildForward(ir::Function* f, ir::Value* ids, ir::Value* labels, ir::Value* w,
                     ir::Value* b, int64_t B, int64_t T) {
  TensorType bt{DType::kF32, {B, T}}, sc{DType::kF32, {}};
  ir::Value* x = Op(f, "mul", {Op(f, "cast", {ids}, bt, {{"to", DType::kF32}}),
                               Const(f, 1.0f / 256)}, bt);
  ir::Value* y = Op(f, "mul", {Op(f, "cast", {labels}, bt, {{"to", DType::kF32}}),
                               Const(f, 1.0f / 256)}, bt);
  ir::Value* d = Op(f, "sub", {Op(f, "add", {Op(f, "mul", {x, w}, bt), b}, bt), y}, bt);
  ir::AttrMap mean = {{"axes", std::vector<int64_t>{}}, {"keepdims", int64_t{0}}};
  Forward out;
  out.loss = Op(f, "reduce_mean", {Op(f, "mul", {d, d}, bt)}, sc, mean);
  out.dw = Op(f, "reduce_mean", {Op(f, "mul", {Op(f, "mul", {d, x}, bt), Const(f, 2)}, bt)}, sc,
              mean, "grad.w");
  out.db = Op(f, "reduce_mean", {Op(f, "mul", {d, Const(f, 2)}, bt)}, sc, mean, "grad.b");
  return out;
}

// Every non-constant output gets its own buffer (no reuse): an independent, trivially correct
// memory plan for the hand-built modules.
plan::MemoryPlan NaivePlan(const ir::Function& f) {
  plan::MemoryPlan mp;
  for (size_t i = 0; i < f.nodes().size(); ++i) {
    const ir::Node& n = *f.nodes()[i];
    if (n.op() == "constant") continue;
    for (const ir::Value* v : n.outputs()) {
      int64_t bytes = (v->type().byte_size() + 63) / 64 * 64;
      mp.buffers.push_back({v->name(), mp.arena_bytes, bytes, static_cast<int32_t>(i),
                            static_cast<int32_t>(f.nodes().size()), ""});
      mp.arena_bytes += bytes;
    }
    if (n.op() == "assign") continue;
    auto kernel = cpu::CreateKernel(n);
    EXPECT_TRUE(kernel.ok()) << kernel.status();
    if (kernel.ok() && (*kernel)->WorkspaceBytes() > 0) {
      int64_t bytes = (static_cast<int64_t>((*kernel)->WorkspaceBytes()) + 63) / 64 * 64;
      mp.buffers.push_back({absl::StrCat("ws@", i), mp.arena_bytes, bytes,
                            static_cast<int32_t>(i), static_cast<int32_t>(i), ""});
      mp.arena_bytes += bytes;
    }
  }
  return mp;
}

// @main: one SGD-with-momentum step of the linear model; @eval: its loss.
plan::Plan LinearTrainingPlan(int64_t B, int64_t T, bool with_eval = true) {
  plan::Plan p;
  p.module = std::make_unique<ir::Module>();
  TensorType ids_t{DType::kI64, {B, T}}, sc{DType::kF32, {}};
  ir::Function* f = p.module->AddFunction("main");
  ir::Value* ids = f->AddParam("input_ids", ids_t);
  ir::Value* labels = f->AddParam("labels", ids_t);
  ir::Value* w = f->AddParam("w", sc, {"param"});
  ir::Value* b = f->AddParam("b", sc, {"param"});
  ir::Value* mw = f->AddParam("sgd.mom.w", sc, {"state"});
  ir::Value* mb = f->AddParam("sgd.mom.b", sc, {"state"});
  ir::Value* step = f->AddParam("opt.step", sc, {"state"});
  Forward fw = BuildForward(f, ids, labels, w, b, B, T);
  ir::Value* gn = Op(f, "sqrt", {Op(f, "add", {Op(f, "mul", {fw.dw, fw.dw}, sc),
                                               Op(f, "mul", {fw.db, fw.db}, sc)}, sc)}, sc);
  ir::Value* lr = Const(f, kLr);
  ir::Value* mw2 = Op(f, "add", {Op(f, "mul", {mw, Const(f, kMomentum)}, sc), fw.dw}, sc);
  ir::Value* mb2 = Op(f, "add", {Op(f, "mul", {mb, Const(f, kMomentum)}, sc), fw.db}, sc);
  ir::Value* w2 = Op(f, "sub", {w, Op(f, "mul", {lr, mw2}, sc)}, sc);
  ir::Value* b2 = Op(f, "sub", {b, Op(f, "mul", {lr, mb2}, sc)}, sc);
  ir::Value* step2 = Op(f, "add", {step, Const(f, 1)}, sc);
  for (auto [t, v] : std::vector<std::pair<ir::Value*, ir::Value*>>{
           {w, w2}, {b, b2}, {mw, mw2}, {mb, mb2}, {step, step2}}) {
    f->AddNode("assign", {t, v}, {});
  }
  f->set_results({fw.loss, gn, lr, fw.dw, fw.db});
  p.memory = NaivePlan(*f);
  p.module->tensors()["w"] = Tensor::FromVector<float>(DType::kF32, {}, {0.25f});
  p.module->tensors()["b"] = Tensor::FromVector<float>(DType::kF32, {}, {-0.125f});
  p.module->tensors()["sgd.mom.w"] = Tensor(DType::kF32, {});
  // sgd.mom.b and opt.step have no initial tensor: state starts at zero.
  if (with_eval) {
    ir::Function* e = p.module->AddFunction("eval");
    ir::Value* eids = e->AddParam("input_ids", ids_t);
    ir::Value* elabels = e->AddParam("labels", ids_t);
    ir::Value* ew = e->AddParam("w", sc, {"param"});
    ir::Value* eb = e->AddParam("b", sc, {"param"});
    e->set_results({BuildForward(e, eids, elabels, ew, eb, B, T).loss});
  }
  return p;
}

// The same step in double precision, independently of the executor.
struct Ref {
  double w = 0.25, b = -0.125, mw = 0, mb = 0, step = 0;
  double Step(const std::vector<int64_t>& ids, const std::vector<int64_t>& labels, double* loss,
              double* dw_out) {
    double l = 0, dw = 0, db = 0;
    const double n = static_cast<double>(ids.size());
    for (size_t i = 0; i < ids.size(); ++i) {
      double x = ids[i] / 256.0, y = labels[i] / 256.0, d = w * x + b - y;
      l += d * d / n;
      dw += 2 * d * x / n;
      db += 2 * d / n;
    }
    mw = kMomentum * mw + dw;
    mb = kMomentum * mb + db;
    w -= kLr * mw;
    b -= kLr * mb;
    step += 1;
    *loss = l;
    if (dw_out) *dw_out = dw;
    return std::sqrt(dw * dw + db * db);
  }
};

Tensor Ids(const std::vector<int64_t>& v, int64_t B, int64_t T) {
  return Tensor::FromVector<int64_t>(DType::kI64, {B, T}, v);
}

TEST(TrainingExecutor, StepUpdatesStateAfterTheStepLikeReference) {
  plan::Plan p = LinearTrainingPlan(2, 3);
  auto ex = cpu::Executor::Create(p);
  ASSERT_TRUE(ex.ok()) << ex.status();
  EXPECT_TRUE((*ex)->is_training());
  EXPECT_GT((*ex)->state_bytes(), 0);
  Ref ref;
  std::mt19937 rng(7);
  for (int s = 0; s < 5; ++s) {
    std::vector<int64_t> ids(6), labels(6);
    for (auto& v : ids) v = rng() % 256;
    for (auto& v : labels) v = rng() % 256;
    auto outs = (*ex)->Run({{"input_ids", Ids(ids, 2, 3)}, {"labels", Ids(labels, 2, 3)}});
    ASSERT_TRUE(outs.ok()) << outs.status();
    double loss, dw;
    double gn = ref.Step(ids, labels, &loss, &dw);
    EXPECT_NEAR(outs->at(0).GetDouble(0), loss, 1e-5 * (1 + loss)) << "step " << s;
    EXPECT_NEAR(outs->at(1).GetDouble(0), gn, 1e-5 * (1 + gn));
    EXPECT_NEAR(outs->at(3).GetDouble(0), dw, 1e-5 * (1 + std::abs(dw)));
    auto st = (*ex)->State();
    ASSERT_EQ(st.size(), 5u);
    EXPECT_NEAR(st.at("w").GetDouble(0), ref.w, 1e-5);
    EXPECT_NEAR(st.at("b").GetDouble(0), ref.b, 1e-5);
    EXPECT_NEAR(st.at("sgd.mom.w").GetDouble(0), ref.mw, 1e-5);
    EXPECT_EQ(st.at("opt.step").GetDouble(0), s + 1);
  }
  // The plan's own weights are untouched.
  EXPECT_EQ(p.module->tensors().at("w").GetDouble(0), 0.25);
}

TEST(TrainingExecutor, SetStateChecksNamesAndTypes) {
  plan::Plan p = LinearTrainingPlan(1, 2);
  auto ex = cpu::Executor::Create(p);
  ASSERT_TRUE(ex.ok()) << ex.status();
  EXPECT_FALSE((*ex)->SetState({{"nope", Tensor(DType::kF32, {})}}).ok());
  EXPECT_FALSE((*ex)->SetState({{"w", Tensor(DType::kF32, {2})}}).ok());
  ASSERT_TRUE((*ex)->SetState({{"w", Tensor::FromVector<float>(DType::kF32, {}, {3.0f})}}).ok());
  EXPECT_EQ((*ex)->State().at("w").GetDouble(0), 3.0);
}

TEST(TrainingExecutor, EvalSharesLiveWeights) {
  plan::Plan p = LinearTrainingPlan(1, 2);
  auto ex = cpu::Executor::Create(p);
  ASSERT_TRUE(ex.ok()) << ex.status();
  cpu::ExecutorOptions eo;
  eo.function = "eval";
  eo.shared_state = (*ex)->LiveState();
  auto ev = cpu::Executor::Create(p, eo);
  ASSERT_TRUE(ev.ok()) << ev.status();
  EXPECT_FALSE((*ev)->is_training());
  ASSERT_TRUE((*ex)->SetState({{"w", Tensor::FromVector<float>(DType::kF32, {}, {1.0f})},
                               {"b", Tensor::FromVector<float>(DType::kF32, {}, {0.5f})}}).ok());
  auto out = (*ev)->Run({{"input_ids", Ids({128, 0}, 1, 2)}, {"labels", Ids({0, 0}, 1, 2)}});
  ASSERT_TRUE(out.ok()) << out.status();
  // d = [0.5 + 0.5, 0.5]: mean(d^2) = (1 + 0.25) / 2
  EXPECT_NEAR(out->at(0).GetDouble(0), 0.625, 1e-6);
}

TEST(TrainingExecutor, InferencePlanBindsWeightsInPlace) {
  plan::Plan p;
  p.module = std::make_unique<ir::Module>();
  ir::Function* f = p.module->AddFunction("main");
  TensorType t{DType::kF32, {4}};
  ir::Value* x = f->AddParam("x", t);
  ir::Value* w = f->AddParam("w", t, {"param"});
  f->set_results({Op(f, "add", {x, w}, t)});
  p.memory = NaivePlan(*f);
  p.module->tensors()["w"] = Tensor::FromVector<float>(DType::kF32, {4}, {1, 2, 3, 4});
  auto ex = cpu::Executor::Create(p);
  ASSERT_TRUE(ex.ok()) << ex.status();
  EXPECT_FALSE((*ex)->is_training());
  EXPECT_EQ((*ex)->state_bytes(), 0);
  EXPECT_FALSE((*ex)->SetState({{"w", Tensor(DType::kF32, {4})}}).ok());  // read-only weights
  auto out = (*ex)->Run({{"x", Tensor::FromVector<float>(DType::kF32, {4}, {1, 1, 1, 1})}});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->at(0).GetDouble(3), 5.0);
}

// Results are written by their producers straight into the returned tensors: a result read by
// a later node, a result aliased by a view (reshape) and a result listed twice must all come out
// right, and outputs the caller still holds must not change on the next run.
TEST(TrainingExecutor, ResultsWrittenInPlaceSurviveLaterRuns) {
  plan::Plan p;
  p.module = std::make_unique<ir::Module>();
  ir::Function* f = p.module->AddFunction("main");
  TensorType t{DType::kF32, {4}}, t22{DType::kF32, {2, 2}};
  ir::Value* x = f->AddParam("x", t);
  ir::Value* c = Op(f, "mul", {x, Const(f, 3)}, t);  // result (written in place), read by e
  ir::Value* e = Op(f, "add", {c, Const(f, 1)}, t);  // result (written in place)
  ir::Value* y = Op(f, "mul", {x, Const(f, 2)}, t);  // result listed twice
  ir::Value* z = Op(f, "add", {y, Const(f, 1)}, t);  // result viewed by r
  ir::Value* r = Op(f, "reshape", {z}, t22, {{"shape", std::vector<int64_t>{2, 2}}});
  f->set_results({c, e, y, z, r, y});
  p.memory = NaivePlan(*f);
  for (auto& b : p.memory.buffers) {
    if (b.value == r->name()) b.alias_of = z->name();  // a view, as plan_memory makes it
  }
  auto ex = cpu::Executor::Create(p);
  ASSERT_TRUE(ex.ok()) << ex.status();
  auto run = [&](std::vector<float> v) {
    return (*ex)->Run({{"x", Tensor::FromVector<float>(DType::kF32, {4}, v)}});
  };
  auto check = [](const std::vector<Tensor>& out, float x0) {
    for (int i = 0; i < 4; ++i) {
      const double xi = x0 + i;
      EXPECT_EQ(out.at(0).GetDouble(i), 3 * xi);
      EXPECT_EQ(out.at(1).GetDouble(i), 3 * xi + 1);
      EXPECT_EQ(out.at(2).GetDouble(i), 2 * xi);
      EXPECT_EQ(out.at(3).GetDouble(i), 2 * xi + 1);
      EXPECT_EQ(out.at(4).GetDouble(i), 2 * xi + 1);
      EXPECT_EQ(out.at(5).GetDouble(i), 2 * xi);
    }
  };
  auto first = run({1, 2, 3, 4});
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = run({5, 6, 7, 8});
  ASSERT_TRUE(second.ok()) << second.status();
  check(*first, 1);  // held by the caller during the second run: unchanged
  check(*second, 5);
  // Released outputs are reused: the third run writes into the second run's tensors.
  const void* c_storage = second->at(0).data();
  const void* e_storage = second->at(1).data();
  second = absl::StatusOr<std::vector<Tensor>>();
  auto third = run({9, 10, 11, 12});
  ASSERT_TRUE(third.ok()) << third.status();
  EXPECT_EQ(third->at(0).data(), c_storage);
  EXPECT_EQ(third->at(1).data(), e_storage);
  check(*third, 9);
}

// `ptc run` hands CUDA training plans to ptc-cuda as flags: every option survives the trip.
TEST(Trainer, OptionsRoundTripThroughFlags) {
  train::TrainerOptions o;
  o.steps = 1234;
  o.data = "/tmp/some dir/corpus=1.txt";
  o.val_fraction = 0.123456789012345;
  o.eval_every = 7;
  o.eval_batches = 3;
  o.log_json = "log.jsonl";
  o.checkpoint_dir = "ckpt";
  o.checkpoint_every = 50;
  o.resume = true;
  o.dump_gradients = "grads";
  o.seed = 18446744073709551615ull;
  o.labels_input = "targets";
  o.vocab_size = 50257;
  o.progress_style = train::ProgressStyle::kLines;
  o.log_every = 5;
  o.stop_after = 2;
  o.profile = true;
  auto back = train::TrainerOptionsFromFlags(train::TrainerOptionsToFlags(o));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->steps, o.steps);
  EXPECT_EQ(back->data, o.data);
  EXPECT_EQ(back->val_fraction, o.val_fraction);
  EXPECT_EQ(back->eval_every, o.eval_every);
  EXPECT_EQ(back->eval_batches, o.eval_batches);
  EXPECT_EQ(back->log_json, o.log_json);
  EXPECT_EQ(back->checkpoint_dir, o.checkpoint_dir);
  EXPECT_EQ(back->checkpoint_every, o.checkpoint_every);
  EXPECT_EQ(back->resume, o.resume);
  EXPECT_EQ(back->dump_gradients, o.dump_gradients);
  EXPECT_EQ(back->seed, o.seed);
  EXPECT_EQ(back->labels_input, o.labels_input);
  EXPECT_EQ(back->vocab_size, o.vocab_size);
  EXPECT_EQ(back->progress_style, o.progress_style);
  EXPECT_EQ(back->log_every, o.log_every);
  EXPECT_EQ(back->stop_after, o.stop_after);
  EXPECT_EQ(back->profile, o.profile);
  EXPECT_FALSE(train::TrainerOptionsFromFlags({"--stpes=3"}).ok());
  EXPECT_FALSE(train::TrainerOptionsFromFlags({"--steps=three"}).ok());
  EXPECT_FALSE(train::TrainerOptionsFromFlags({"--resume=2"}).ok());
  EXPECT_FALSE(train::TrainerOptionsFromFlags({"steps=3"}).ok());
}

TEST(TrainingExecutor, AssignSourceClobberedByPlanIsStaged) {
  // A memory plan that lets a node after the assign reuse the new value's bytes (a planner
  // that does not extend assign sources to the end of the step): the executor must still write
  // the right value.
  plan::Plan p;
  p.module = std::make_unique<ir::Module>();
  ir::Function* f = p.module->AddFunction("main");
  TensorType t{DType::kF32, {4}};
  ir::Value* x = f->AddParam("x", t);
  ir::Value* w = f->AddParam("w", t, {"param"});
  ir::Value* w2 = Op(f, "add", {w, x}, t, {}, "w2");
  f->AddNode("assign", {w, w2}, {});
  ir::Value* y = Op(f, "mul", {x, x}, t, {}, "y");
  f->set_results({y});
  p.memory.arena_bytes = 64;
  p.memory.buffers = {{"w2", 0, 64, 0, 1, ""}, {"y", 0, 64, 2, 3, ""}};
  p.module->tensors()["w"] = Tensor::FromVector<float>(DType::kF32, {4}, {1, 2, 3, 4});
  auto ex = cpu::Executor::Create(p);
  ASSERT_TRUE(ex.ok()) << ex.status();
  auto out = (*ex)->Run({{"x", Tensor::FromVector<float>(DType::kF32, {4}, {10, 10, 10, 10})}});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->at(0).GetDouble(0), 100.0);
  EXPECT_EQ((*ex)->State().at("w").GetDouble(1), 12.0);
}

// ----------------------------------------------------------------------------------- data

TEST(Data, TokenFileRoundTripAndValidation) {
  std::string dir = TempDir("tokfile");
  std::vector<uint32_t> ids = {0, 1, 65535, 7, 300};
  for (int width : {2, 4}) {
    std::string path = absl::StrCat(dir, "/t", width, ".tok");
    ASSERT_TRUE(data::WriteTokenFile(path, ids, width).ok());
    auto t = data::ReadTokenFile(path);
    ASSERT_TRUE(t.ok()) << t.status();
    ASSERT_EQ(t->size(), 5);
    EXPECT_EQ(t->width(), width);
    for (int i = 0; i < 5; ++i) EXPECT_EQ((*t)[i], ids[i]);
    EXPECT_EQ(t->MaxId(), 65535u);
  }
  EXPECT_FALSE(data::WriteTokenFile(dir + "/big.tok", {70000}, 2).ok());
  // Count larger than the payload; truncated header; unknown width.
  std::string good;
  {
    std::ifstream in(dir + "/t2.tok", std::ios::binary);
    good.assign(std::istreambuf_iterator<char>(in), {});
  }
  auto write = [&](const std::string& bytes) {
    std::ofstream(dir + "/bad.tok", std::ios::binary) << bytes;
    return data::ReadTokenFile(dir + "/bad.tok");
  };
  EXPECT_TRUE(write(good).ok());
  EXPECT_FALSE(write(good.substr(0, good.size() - 1)).ok());
  EXPECT_FALSE(write(good.substr(0, 10)).ok());
  std::string w3 = good;
  w3[8] = 3;
  EXPECT_FALSE(write(w3).ok());
  std::string huge = good;
  for (int i = 16; i < 24; ++i) huge[i] = '\xff';
  EXPECT_FALSE(write(huge).ok());
}

TEST(Data, CorpusFolderSkipsIndexFilesLinksAndFolders) {
  std::string dir = TempDir("corpus");
  std::ofstream(dir + "/b") << "BB";
  std::ofstream(dir + "/a") << "AA";
  std::ofstream(dir + "/a.dat") << "XX";
  std::ofstream(dir + "/a.u8") << "YY";
  ASSERT_EQ(::symlink((dir + "/a").c_str(), (dir + "/link").c_str()), 0);
  ASSERT_TRUE(fileutil::MakeDirs(dir + "/sub").ok());
  std::ofstream(dir + "/sub/c") << "CC";
  auto t = data::LoadCorpus(dir);
  ASSERT_TRUE(t.ok()) << t.status();
  std::vector<uint32_t> v;
  for (int64_t i = 0; i < t->size(); ++i) v.push_back((*t)[i]);
  EXPECT_EQ(data::DetokenizeBytes(v), "AABB");
  EXPECT_FALSE(data::LoadCorpus(dir + "/missing").ok());
}

TEST(Data, DefaultCorpusIsFortunes) {
  struct stat st;
  if (::stat(data::kDefaultCorpus, &st) != 0) {
    GTEST_SKIP() << "Debian's fortunes package is not installed";
  }
  auto t = data::LoadCorpus("");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_GT(t->size(), 100000);
  EXPECT_LT(t->MaxId(), 256u);
}

TEST(Data, PackingShiftsLabelsAndShufflesDeterministically) {
  std::vector<uint32_t> ids(101);
  for (int i = 0; i < 101; ++i) ids[i] = i;
  data::Tokens tokens = data::Tokens::FromVector(ids);
  auto it = data::BatchIterator::Create(tokens, /*batch=*/3, /*seq=*/10, /*seed=*/5, true);
  ASSERT_TRUE(it.ok()) << it.status();
  EXPECT_EQ(it->num_windows(), 10);
  std::vector<std::vector<int64_t>> epoch0, epoch1;
  std::set<int64_t> starts;
  for (int b = 0; b < 3; ++b) {  // 3 batches of 3 windows = 9 of the 10 windows
    data::Batch batch = it->Next();
    for (int r = 0; r < 3; ++r) {
      int64_t s = batch.input_ids.GetInt(r * 10);
      EXPECT_EQ(s % 10, 0);
      starts.insert(s);
      for (int t = 0; t < 10; ++t) {
        EXPECT_EQ(batch.input_ids.GetInt(r * 10 + t), s + t);
        EXPECT_EQ(batch.labels.GetInt(r * 10 + t), s + t + 1);
      }
      epoch0.push_back({s});
    }
  }
  EXPECT_EQ(starts.size(), 9u);  // no window twice in an epoch
  data::IteratorState saved = it->state();
  EXPECT_EQ(saved.epoch, 0);
  data::Batch next = it->Next();  // new epoch
  EXPECT_EQ(it->state().epoch, 1);
  // Restoring the state reproduces the batch; another seed gives another order.
  auto again = data::BatchIterator::Create(tokens, 3, 10, 5, true);
  ASSERT_TRUE(again->SetState(saved).ok());
  EXPECT_TRUE(again->Next().input_ids.BitEquals(next.input_ids));
  auto other = data::BatchIterator::Create(tokens, 3, 10, 6, true);
  bool differs = false;
  auto first = data::BatchIterator::Create(tokens, 3, 10, 5, true);
  for (int b = 0; b < 3; ++b) differs |= !other->Next().input_ids.BitEquals(first->Next().input_ids);
  EXPECT_TRUE(differs);
  EXPECT_FALSE(data::BatchIterator::Create(tokens, 11, 10, 5, true).ok());  // not one batch
  EXPECT_FALSE(again->SetState({0, 11}).ok());
}

TEST(Data, SplitKeepsTheTailForValidation) {
  data::Tokens t = data::TokenizeBytes(std::string(1000, 'x'));
  auto s = data::SplitTrainVal(t, 0.05, 11);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->train.size(), 950);
  EXPECT_EQ(s->val.size(), 50);
  EXPECT_FALSE(data::SplitTrainVal(t, 0.999, 11).ok());
  EXPECT_FALSE(data::SplitTrainVal(t, 1.5, 11).ok());
}

// ------------------------------------------------------------------------- checkpoints

checkpoint::Checkpoint PatternCheckpoint(int64_t step, int64_t n) {
  checkpoint::Checkpoint c;
  c.step = step;
  c.plan_hash = "abc";
  c.seed = 9;
  c.data = {2, step};
  std::vector<float> v(n, static_cast<float>(step));
  c.tensors["w/0"] = Tensor::FromVector<float>(DType::kF32, {n}, v);
  c.tensors["opt.step"] = Tensor::FromVector<float>(DType::kF32, {}, {static_cast<float>(step)});
  c.kinds = {{"w/0", "param"}, {"opt.step", "state"}};
  return c;
}

TEST(Checkpoint, RoundTripAndDamage) {
  std::string dir = TempDir("ckpt");
  auto path = checkpoint::WriteCheckpoint(dir, PatternCheckpoint(3, 100));
  ASSERT_TRUE(path.ok()) << path.status();
  EXPECT_EQ(*path, dir + "/step-000003");
  ASSERT_TRUE(checkpoint::WriteCheckpoint(dir, PatternCheckpoint(7, 100)).ok());
  auto c = checkpoint::LoadLatestCheckpoint(dir);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->step, 7);
  EXPECT_EQ(c->data, (data::IteratorState{2, 7}));
  EXPECT_EQ(c->seed, 9u);
  EXPECT_TRUE(c->tensors.at("w/0").BitEquals(PatternCheckpoint(7, 100).tensors.at("w/0")));
  EXPECT_EQ(c->kinds.at("opt.step"), "state");
  // Damage the latest: a flipped byte fails the checksum; loading falls back to step 3.
  {
    std::fstream f(dir + "/step-000007/tensors.bin", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(100);  // inside w/0 (64-byte aligned after opt.step)
    f.put('\x55');
  }
  EXPECT_FALSE(checkpoint::LoadCheckpoint(dir + "/step-000007").ok());
  c = checkpoint::LoadLatestCheckpoint(dir);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->step, 3);
  std::ofstream(dir + "/step-000003/manifest.json") << "{\"format\": \"ptc-checkpoint\"";
  EXPECT_FALSE(checkpoint::LoadLatestCheckpoint(dir).ok());
  EXPECT_TRUE(absl::IsNotFound(checkpoint::LoadLatestCheckpoint(dir + "/none").status()));
}

TEST(Checkpoint, KilledDuringWriteLeavesALoadableCheckpoint) {
  std::string dir = TempDir("kill");
  ASSERT_TRUE(checkpoint::WriteCheckpoint(dir, PatternCheckpoint(0, 1 << 18)).ok());
  std::mt19937 rng(1234);
  int64_t max_seen = 0;
  for (int round = 0; round < 12; ++round) {
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      for (int64_t s = max_seen + 1;; ++s) {
        if (!checkpoint::WriteCheckpoint(dir, PatternCheckpoint(s, 1 << 18)).ok()) _exit(1);
      }
    }
    ::usleep(1000 + rng() % 40000);
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    ASSERT_TRUE(WIFSIGNALED(status)) << "the writer failed on its own";
    auto c = checkpoint::LoadLatestCheckpoint(dir);
    ASSERT_TRUE(c.ok()) << "round " << round << ": " << c.status();
    EXPECT_GE(c->step, max_seen);
    max_seen = c->step;
    const Tensor& w = c->tensors.at("w/0");
    EXPECT_EQ(w.GetDouble(0), static_cast<double>(c->step));
    EXPECT_EQ(w.GetDouble(w.num_elements() - 1), static_cast<double>(c->step));
  }
  EXPECT_GT(max_seen, 0);
}

// ------------------------------------------------------------------------------- trainer

std::string WriteText(const std::string& dir) {
  std::string text;
  std::mt19937 rng(3);
  for (int i = 0; i < 4000; ++i) text.push_back(static_cast<char>('a' + rng() % 26));
  std::string path = dir + "/text.txt";
  std::ofstream(path) << text;
  return path;
}

train::TrainerOptions QuietOptions(const std::string& data) {
  train::TrainerOptions o;
  o.data = data;
  o.progress_style = train::ProgressStyle::kNone;
  o.seed = 17;
  return o;
}

TEST(Trainer, ResumeIsBitExact) {
  std::string dir = TempDir("resume");
  plan::Plan p = LinearTrainingPlan(4, 8);
  train::TrainerOptions o = QuietOptions(WriteText(dir));
  o.steps = 20;
  std::ostringstream log;
  auto straight = train::Train(p, o, log);
  ASSERT_TRUE(straight.ok()) << straight.status();
  ASSERT_EQ(straight->losses.size(), 20u);
  EXPECT_LT(straight->losses.back(), straight->losses.front());

  o.checkpoint_dir = dir + "/ckpt";
  o.checkpoint_every = 3;
  o.stop_after = 10;  // "killed" after step 10; the last checkpoint is step 9
  auto first = train::Train(p, o, log);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->last_step, 10);
  o.stop_after = 0;
  o.resume = true;
  o.seed = 999;  // the checkpoint's seed wins
  auto second = train::Train(p, o, log);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->first_step, 9);
  EXPECT_EQ(second->last_step, 20);
  for (const auto& [name, t] : straight->final_state) {
    EXPECT_TRUE(t.BitEquals(second->final_state.at(name))) << name;
  }
  for (size_t i = 0; i < second->losses.size(); ++i) {
    EXPECT_EQ(second->losses[i], straight->losses[9 + i]) << "step " << 10 + i;
  }
  // A checkpoint of another plan is refused.
  plan::Plan other = LinearTrainingPlan(4, 8, /*with_eval=*/false);
  EXPECT_FALSE(train::Train(other, o, log).ok());
}

// A backend with a roofline (the CUDA backend's GetRoofline / IdealMs): the progress line and
// the JSON log carry the MFU (the step's FLOPs per second over the peak), and --profile leaves
// out the first step (one-time costs) and shows the ideal times.
class RooflineBackend final : public train::Backend {
 public:
  explicit RooflineBackend(std::unique_ptr<train::Backend> inner) : inner_(std::move(inner)) {}
  std::string name() const override { return "roofline"; }
  bool is_training() const override { return inner_->is_training(); }
  absl::StatusOr<std::vector<ir::Tensor>> Step(const std::map<std::string, ir::Tensor>& inputs,
                                               const std::vector<bool>& fetch) override {
    ++steps;
    profiled_steps += profiling;
    return inner_->Step(inputs, fetch);
  }
  bool has_eval() const override { return inner_->has_eval(); }
  absl::StatusOr<std::vector<ir::Tensor>> Eval(
      const std::map<std::string, ir::Tensor>& inputs) override {
    return inner_->Eval(inputs);
  }
  absl::StatusOr<std::map<std::string, ir::Tensor>> State() override { return inner_->State(); }
  absl::Status SetState(const std::map<std::string, ir::Tensor>& state) override {
    return inner_->SetState(state);
  }
  int64_t arena_bytes() const override { return inner_->arena_bytes(); }
  int64_t state_bytes() const override { return inner_->state_bytes(); }
  bool host_memory() const override { return true; }
  void EnableProfiling(bool on) override {
    profiling = on;
    inner_->EnableProfiling(on);
  }
  std::vector<OpTime> Profile() const override { return inner_->Profile(); }
  std::map<std::string, double> IdealMs() const override { return {{"matmul", 1e-6}}; }
  Roofline GetRoofline() const override { return {1e6, 1e-3}; }  // 1 MFLOP at 1 GFLOP/s

  int steps = 0, profiled_steps = 0;
  bool profiling = false;

 private:
  std::unique_ptr<train::Backend> inner_;
};

TEST(Trainer, ReportsMfuAndProfilesAfterTheFirstStep) {
  std::string dir = TempDir("mfu");
  plan::Plan p = LinearTrainingPlan(2, 4);
  train::TrainerOptions o = QuietOptions(WriteText(dir));
  o.steps = 4;
  o.log_json = dir + "/log.jsonl";
  o.progress_style = train::ProgressStyle::kLines;
  o.profile = true;
  auto cpu = train::CreateCpuBackend(p);
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  RooflineBackend backend(*std::move(cpu));
  std::ostringstream progress;
  ASSERT_TRUE(train::RunTraining(p, backend, o, progress).ok());
  EXPECT_EQ(backend.steps, 4);
  EXPECT_EQ(backend.profiled_steps, 3);  // not the first
  const std::string out = progress.str();
  EXPECT_NE(out.find("| MFU "), std::string::npos) << out;
  EXPECT_NE(out.find("per step, 3 step(s) after the first"), std::string::npos) << out;
  EXPECT_NE(out.find("x ideal"), std::string::npos) << out;
  std::ifstream in(o.log_json);
  int with_mfu = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.find("\"tokens_per_s\"") == std::string::npos) continue;
    const size_t at = line.find("\"mfu\":");
    ASSERT_NE(at, std::string::npos) << line;
    EXPECT_GT(std::stod(line.substr(at + 6)), 0) << line;
    ++with_mfu;
  }
  EXPECT_EQ(with_mfu, 4);
}

TEST(Trainer, LogsEvaluatesAndDumpsGradients) {
  std::string dir = TempDir("log");
  plan::Plan p = LinearTrainingPlan(2, 4);
  train::TrainerOptions o = QuietOptions(WriteText(dir));
  o.steps = 6;
  o.eval_every = 3;
  o.log_json = dir + "/log.jsonl";
  o.dump_gradients = dir + "/grads";
  o.progress_style = train::ProgressStyle::kLines;
  o.log_every = 2;
  std::ostringstream progress;
  auto r = train::Train(p, o, progress);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_GT(r->val_loss, 0);
  std::ifstream in(o.log_json);
  std::string line;
  int steps = 0, evals = 0;
  while (std::getline(in, line)) {
    steps += line.find("\"tokens_per_s\"") != std::string::npos;
    evals += line.find("\"val_loss\"") != std::string::npos;
  }
  EXPECT_EQ(steps, 6);
  EXPECT_EQ(evals, 2);
  EXPECT_NE(progress.str().find("step 6/6"), std::string::npos) << progress.str();
  EXPECT_NE(progress.str().find("val loss"), std::string::npos);
  struct stat st;
  EXPECT_EQ(::stat((dir + "/grads/w.pb").c_str(), &st), 0);
  EXPECT_EQ(::stat((dir + "/grads/index.json").c_str(), &st), 0);

  // The dumped gradient equals the reference gradient of the first batch (read by ONNX).
  auto split = train::LoadTrainingData(o, 2, 4);
  ASSERT_TRUE(split.ok());
  auto it = data::BatchIterator::Create(split->train, 2, 4, o.seed, true);
  data::Batch b = it->Next();
  std::vector<int64_t> ids(8), labels(8);
  for (int i = 0; i < 8; ++i) {
    ids[i] = b.input_ids.GetInt(i);
    labels[i] = b.labels.GetInt(i);
  }
  Ref ref;
  double loss, dw;
  ref.Step(ids, labels, &loss, &dw);
  EXPECT_NEAR(r->losses[0], loss, 1e-5);
  if (::system("/usr/bin/python3 -c 'import onnx.helper, onnx.numpy_helper' 2>/dev/null") != 0) {
    GTEST_SKIP() << "python3-onnx is not installed: the TensorProto file is not cross-checked";
  }
  std::string cmd = absl::StrCat(
      "/usr/bin/python3 -c \"import onnx, onnx.numpy_helper as h; t = onnx.TensorProto(); "
      "t.ParseFromString(open('", dir, "/grads/w.pb', 'rb').read()); "
      "print(t.name, float(h.to_array(t)))\" > ", dir, "/grad.txt");
  ASSERT_EQ(::system(cmd.c_str()), 0);
  std::ifstream g(dir + "/grad.txt");
  std::string name;
  double value = 0;
  g >> name >> value;
  EXPECT_EQ(name, "w");
  EXPECT_NEAR(value, dw, 1e-5);
}

TEST(Trainer, RejectsInferencePlansAndTooLittleData) {
  std::string dir = TempDir("reject");
  plan::Plan p = LinearTrainingPlan(4, 8);
  std::ostringstream out;
  train::TrainerOptions o = QuietOptions(dir + "/tiny.txt");
  std::ofstream(dir + "/tiny.txt") << "abc";
  auto r = train::Train(p, o, out);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(std::string(r.status().message()).find("tokens"), std::string::npos);
  plan::Plan inf;
  inf.module = std::make_unique<ir::Module>();
  ir::Function* f = inf.module->AddFunction("main");
  ir::Value* x = f->AddParam("x", {DType::kF32, {2}});
  f->set_results({Op(f, "neg", {x}, {DType::kF32, {2}})});
  inf.memory = NaivePlan(*f);
  EXPECT_FALSE(train::Train(inf, o, out).ok());
}

// -------------------------------------------------------------------------------- export

TEST(Export, ReplacesInitializersAndStaysCheckerClean) {
  if (::system("/usr/bin/python3 -c 'import onnx.helper, onnx.numpy_helper' 2>/dev/null") != 0) {
    GTEST_SKIP() << "python3-onnx is needed to build and check the ONNX model";
  }
  std::string dir = TempDir("export");
  std::string make = absl::StrCat(
      "/usr/bin/python3 -c \"\n"
      "import onnx, numpy as np\n"
      "from onnx import helper, numpy_helper, TensorProto\n"
      "w = numpy_helper.from_array(np.zeros((2, 3), np.float32), 'w/0')\n"
      "k = numpy_helper.from_array(np.ones((3,), np.float32), 'keep')\n"
      "g = helper.make_graph([helper.make_node('MatMul', ['x', 'w/0'], ['y']),"
      " helper.make_node('Add', ['y', 'keep'], ['z'])], 'g',"
      " [helper.make_tensor_value_info('x', TensorProto.FLOAT, [1, 2])],"
      " [helper.make_tensor_value_info('z', TensorProto.FLOAT, [1, 3])], [w, k])\n"
      "onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid('', 13)]), '",
      dir, "/m.onnx')\n\"");
  ASSERT_EQ(::system(make.c_str()), 0);
  checkpoint::Checkpoint c;
  c.step = 1;
  c.tensors["w/0"] = Tensor::FromVector<float>(DType::kF32, {2, 3}, {1, 2, 3, 4, 5, 6});
  c.tensors["adam.m.w/0"] = Tensor(DType::kF32, {2, 3});
  c.kinds = {{"w/0", "param"}, {"adam.m.w/0", "state"}};
  ASSERT_TRUE(checkpoint::WriteCheckpoint(dir + "/ck", c).ok());
  absl::Status st =
      checkpoint::ExportCheckpointToOnnx(dir + "/m.onnx", dir + "/ck", dir + "/out.onnx");
  ASSERT_TRUE(st.ok()) << st;
  std::string check = absl::StrCat(
      "/usr/bin/python3 -c \"\n"
      "import onnx, numpy as np\n"
      "from onnx import numpy_helper\n"
      "m = onnx.load('", dir, "/out.onnx'); onnx.checker.check_model(m, full_check=True)\n"
      "i = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}\n"
      "assert (i['w/0'] == np.arange(1, 7, dtype=np.float32).reshape(2, 3)).all(), i\n"
      "assert (i['keep'] == 1).all() and len(i) == 2\n\"");
  EXPECT_EQ(::system(check.c_str()), 0);
  // A weight with other dims is refused; so is a weight with no initializer.
  c.tensors["w/0"] = Tensor(DType::kF32, {3, 2});
  ASSERT_TRUE(checkpoint::WriteCheckpoint(dir + "/bad", c).ok());
  EXPECT_FALSE(
      checkpoint::ExportCheckpointToOnnx(dir + "/m.onnx", dir + "/bad", dir + "/o2.onnx").ok());
  c.tensors = {{"v", Tensor(DType::kF32, {1})}};
  c.kinds = {{"v", "param"}};
  ASSERT_TRUE(checkpoint::WriteCheckpoint(dir + "/bad2", c).ok());
  EXPECT_FALSE(
      checkpoint::ExportCheckpointToOnnx(dir + "/m.onnx", dir + "/bad2", dir + "/o3.onnx").ok());
}

}  // namespace
}  // namespace ptc
