// Remat bit-exactness on real training steps (GPT-2 and the encoder-decoder from `ptc model`),
// planner bounds, and the memory report. The models are written by the `ptc` binary of this
// build with the model builders (models/models.h).
#include "compiler/driver/memory_report.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <random>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "codegen/cpu/kernel.h"
#include "compiler/autodiff/training.h"
#include "compiler/driver/driver.h"
#include "compiler/ir/verifier.h"
#include "compiler/onnx/importer.h"
#include "gtest/gtest.h"
#include "models/models.h"
#include "passes/memory_analysis.h"
#include "passes/pass.h"
#include "passes/passes.h"
#include "passes/plan_memory.h"
#include "passes/remat.h"
#include "runtime/cpu/executor.h"

namespace ptc {
namespace {

struct Model {
  std::string name;
  std::string args;  // ptc model arguments
  std::map<std::string, int64_t> dims;
  std::vector<std::string> token_inputs;
  int64_t vocab = 64;
};

void PrintTo(const Model& m, std::ostream* os) { *os << m.name; }

absl::StatusOr<int64_t> Workspace(const ir::Node& node) {
  if (node.op() == "constant") return 0;
  auto kernel = cpu::CreateKernel(node);
  if (!kernel.ok()) return kernel.status();
  return static_cast<int64_t>((*kernel)->WorkspaceBytes());
}

// Builds the model with the `ptc model` library (models/models.h) from its CLI-style arguments
// ("gpt2 --preset tiny --dim 32 --set heads=2"), with the loss, into a temporary ONNX file.
std::string MakeOnnx(const Model& m) {
  std::vector<std::string> words = absl::StrSplit(m.args, ' ', absl::SkipEmpty());
  std::string family = words.empty() ? "" : words[0], preset = "tiny";
  std::map<std::string, std::string> overrides = {{"loss", "true"}};
  for (size_t i = 1; i + 1 < words.size(); i += 2) {
    std::string key = words[i].substr(2);
    if (key == "preset") {
      preset = words[i + 1];
    } else if (key == "set") {
      std::vector<std::string> kv = absl::StrSplit(words[i + 1], absl::MaxSplits('=', 1));
      if (kv.size() == 2) overrides[kv[0]] = kv[1];
    } else {
      overrides[key] = words[i + 1];
    }
  }
  std::string out = absl::StrCat(::testing::TempDir(), "/remat_", m.name, "_", ::getpid(), ".onnx");
  auto model = models::BuildModel(family, preset, overrides);
  EXPECT_TRUE(model.ok()) << model.status();
  if (model.ok()) {
    absl::Status s = models::WriteModel(*model, out, /*external_data_threshold=*/-1);
    EXPECT_TRUE(s.ok()) << s;
  }
  return out;
}

// The training step after the default passes (what `ptc compile --train` plans).
std::unique_ptr<ir::Module> TrainingStep(const Model& m, bool keep_gradients = true,
                                         int64_t accumulate = 1) {
  onnx_import::ImportOptions io;
  io.dims = m.dims;
  const std::string path = MakeOnnx(m);
  auto module = onnx_import::ImportOnnxFile(path, io);
  std::remove(path.c_str());
  EXPECT_TRUE(module.ok()) << module.status();
  if (!module.ok()) return nullptr;
  autodiff::TrainOptions t;
  t.keep_gradients = keep_gradients;  // kept: the gradients are compared bit for bit
  t.accumulate = accumulate;
  EXPECT_TRUE(autodiff::BuildTrainingStep(**module, t).ok());
  passes::Pipeline p;
  auto list = passes::CreatePasses("default");
  EXPECT_TRUE(list.ok());
  for (auto& pass : *list) p.Add(std::move(pass));
  EXPECT_TRUE(p.Run(**module).ok());
  return *std::move(module);
}

// Random token ids in [0, vocab) for every data input of a training step.
std::map<std::string, ir::Tensor> TokenInputs(const ir::Function& step, const Model& m,
                                              uint32_t seed) {
  std::map<std::string, ir::Tensor> inputs;
  std::mt19937 rng(seed);
  for (const ir::Value* p : step.params()) {
    if (p->is_param() || p->flags().count("state")) continue;
    ir::Tensor t(p->type().dtype, p->type().shape);
    for (int64_t i = 0; i < t.num_elements(); ++i) {
      t.mutable_data_as<int64_t>()[i] = static_cast<int64_t>(rng() % m.vocab);
    }
    inputs[p->name()] = t;
  }
  return inputs;
}

struct StepOutput {
  std::vector<ir::Tensor> results;
  std::map<std::string, ir::Tensor> state;
  int64_t arena = 0;
  int64_t lower_bound = 0;
  int donated = 0;  // elementwise outputs planned in an input's buffer
  std::set<std::string> donating_ops;
  int update_runs = 0;  // runs of back-to-back adamw_update nodes in the schedule
};

// One step of `plan` on the CPU executor (token inputs of seed 7): its results and state.
void RunOnCpu(const plan::Plan& plan, const Model& m, StepOutput* out) {
  auto ex = cpu::Executor::Create(plan);
  EXPECT_TRUE(ex.ok()) << ex.status();
  if (!ex.ok()) return;
  auto r = (*ex)->Run(TokenInputs(*plan.module->main(), m, 7));
  EXPECT_TRUE(r.ok()) << r.status();
  if (r.ok()) out->results = *r;
  out->state = (*ex)->State();
}

// hoist: schedule's early optimizer updates (only meaningful with in-place updates); group:
// its multi-tensor grouping window (nodes).
StepOutput RunStep(std::unique_ptr<ir::Module> module, const Model& m, bool inplace = false,
                   bool hoist = false, bool reuse = false, int group = 0) {
  StepOutput out;
  auto sched = passes::CreateSchedulePass(hoist, group);
  EXPECT_TRUE(sched->Run(*module).ok());
  EXPECT_TRUE(ir::Verify(*module).ok()) << ir::Verify(*module);
  bool in_run = false;
  for (const auto& n : module->main()->nodes()) {
    const bool update = n->op() == "adamw_update";
    out.update_runs += update && !in_run ? 1 : 0;
    in_run = update;
  }
  plan::Plan plan;
  passes::PlanMemoryOptions po;
  po.workspace_bytes = Workspace;
  po.inplace_updates = inplace;
  po.reuse_elementwise_inputs = reuse;
  auto mp = passes::PlanMemory(*module->main(), po);
  EXPECT_TRUE(mp.ok()) << mp.status();
  out.arena = mp->arena_bytes;
  out.lower_bound = mp->lower_bound;
  for (const auto& b : mp->buffers) {
    const ir::Value* v = module->main()->FindValue(b.value);
    const ir::Node* p = v != nullptr ? v->producer() : nullptr;
    if (!b.alias_of.empty() && b.offset >= 0 && p != nullptr && p->op() != "reshape" &&
        p->op() != "identity") {
      ++out.donated;
      out.donating_ops.insert(p->op());
    }
  }
  plan.memory = *mp;
  plan.module = std::move(module);
  RunOnCpu(plan, m, &out);
  return out;
}

void ExpectBitEqual(const StepOutput& want, const StepOutput& got, const std::string& what) {
  ASSERT_EQ(want.results.size(), got.results.size()) << what;
  for (size_t i = 0; i < want.results.size(); ++i) {
    EXPECT_TRUE(want.results[i].BitEquals(got.results[i])) << what << ": result " << i;
  }
  ASSERT_EQ(want.state.size(), got.state.size()) << what;
  for (const auto& [name, t] : want.state) {
    EXPECT_TRUE(t.BitEquals(got.state.at(name))) << what << ": state " << name;
  }
}

const Model kGpt{"gpt", "gpt2 --preset tiny --vocab 64 --dim 32 --heads 2 --layers 3 --seq 32",
                 {{"batch", 8}, {"seq", 32}}, {"input_ids", "labels"}, 64};
const Model kSeq2Seq{"seq2seq",
                     "seq2seq --preset tiny --set src_vocab=64 --set tgt_vocab=64 --set dim=32 "
                     "--set heads=2 --set encoder_layers=2 --set decoder_layers=2 --set seq=32",
                     {{"batch", 8}, {"src_seq", 32}, {"tgt_seq", 24}}, {}, 64};

class RematBitExact : public ::testing::TestWithParam<Model> {};

// Loss, gradients (results) and the updated weights / moments are bit for bit those of the
// no-remat step for per-block remat and several budgets between no-remat and the minimum.
TEST_P(RematBitExact, LossGradientsAndUpdatesMatchNoRemat) {
  const Model& m = GetParam();
  auto base_module = TrainingStep(m);
  ASSERT_NE(base_module, nullptr);
  StepOutput base = RunStep(base_module->Clone(), m);
  ASSERT_FALSE(base.results.empty());

  auto full = base_module->Clone();
  passes::RematOptions per_block;
  per_block.mode = "per-block";
  per_block.workspace_bytes = Workspace;
  auto fr = passes::Rematerialize(*full, per_block);
  ASSERT_TRUE(fr.ok()) << fr.status();
  EXPECT_GT(fr->recomputed_nodes, 0);
  EXPECT_LT(fr->arena_after, fr->arena_before) << "per-block remat saves nothing on " << m.name;
  ExpectBitEqual(base, RunStep(std::move(full), m), "per-block");

  int64_t hi = fr->arena_before, lo = fr->arena_after;
  for (double f : {0.9, 0.6, 0.3, 0.0}) {
    int64_t budget = lo + static_cast<int64_t>((hi - lo) * f);
    auto mod = base_module->Clone();
    passes::RematOptions o;
    o.budget = budget;
    o.workspace_bytes = Workspace;
    auto r = passes::Rematerialize(*mod, o);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_LE(r->arena_after, budget);
    EXPECT_GT(r->recomputed_nodes, 0) << "budget " << budget << " < no-remat arena " << hi;
    StepOutput got = RunStep(std::move(mod), m);
    EXPECT_LE(got.arena, budget);
    ExpectBitEqual(base, got, absl::StrCat("budget ", budget));
  }
}

// save-attention-stats (in the CUDA pipeline): attention outputs its log-sum-exp and
// attention_grad reads it with the output. Compiled by the driver for cpu with the pass added
// (with and without per-block remat, which then recomputes two-output attentions), the CPU
// kernels compute the same loss and updates bit for bit.
TEST_P(RematBitExact, SavedAttentionStatsMatch) {
  const Model& m = GetParam();
  const std::string onnx = MakeOnnx(m);
  struct Remove {
    const std::string& path;
    ~Remove() { std::remove(path.c_str()); }
  } remove_onnx{onnx};
  int packed = 0;
  auto run = [&](const std::string& pass_list, const std::string& remat, int* saved) {
    driver::CompileOptions o;
    o.train = true;
    o.dims = m.dims;
    o.passes = pass_list;
    o.remat = remat;
    auto plan = driver::CompileOnnxFile(onnx, o);
    EXPECT_TRUE(plan.ok()) << plan.status();
    StepOutput out;
    if (!plan.ok()) return out;
    for (const auto& n : plan->module->main()->nodes()) {
      *saved += n->op() == "attention_grad" && n->GetInt("saved_stats", 0).value_or(0) == 1;
      packed += n->op() == "attention_grad" && n->GetString("layout", "").value_or("") == "bt3hd";
    }
    RunOnCpu(*plan, m, &out);
    return out;
  };
  int none = 0, saved = 0, saved_remat = 0;
  StepOutput base = run("default", "none", &none);
  EXPECT_EQ(none, 0);
  ExpectBitEqual(base, run("default,save-attention-stats", "none", &saved), "saved statistics");
  EXPECT_GT(saved, 0);
  ExpectBitEqual(base, run("default,save-attention-stats", "per-block", &saved_remat),
                 "saved statistics, per-block remat");
  EXPECT_EQ(saved_remat, saved);
  // pack-qkv (also in the CUDA pipeline): q, k, v read as slots of the QKV projection's output,
  // the gradient written packed; the CPU kernels copy the slots, so the bits stay.
  EXPECT_EQ(packed, 0);
  int saved_packed = 0;
  ExpectBitEqual(base, run("default,save-attention-stats,pack-qkv", "none", &saved_packed),
                 "packed q, k, v");
  EXPECT_GT(packed, 0);
  EXPECT_LE(packed, saved);  // cross-attention (q and k / v from two inputs) stays unpacked
  EXPECT_EQ(saved_packed, saved);
  ExpectBitEqual(base, run("default,save-attention-stats,pack-qkv", "per-block", &saved_packed),
                 "packed q, k, v, per-block remat");
}

// In-place optimizer updates (PlanMemoryOptions::inplace_updates): the executor binds the
// adamw_update outputs to the parameter storage; the step is bit for bit the same.
TEST_P(RematBitExact, InplaceUpdatesMatch) {
  const Model& m = GetParam();
  auto module = TrainingStep(m);
  ASSERT_NE(module, nullptr);
  StepOutput base = RunStep(module->Clone(), m);
  StepOutput inplace = RunStep(module->Clone(), m, /*inplace=*/true);
  EXPECT_LE(inplace.arena, base.arena);
  ExpectBitEqual(base, inplace, "in-place updates");
}

// Early optimizer updates (schedule's hoisting, the default with in-place updates): a step
// without kept gradients gives the same loss and the same updated weights and moments bit for
// bit, and its arena is smaller (gradients no longer wait for the end of the backward; on
// these small models the peak stays near the forward's, GPT-2 small drops 769 -> 452 MiB).
TEST_P(RematBitExact, EarlyUpdatesMatchAndFreeGradients) {
  const Model& m = GetParam();
  auto module = TrainingStep(m, /*keep_gradients=*/false);
  ASSERT_NE(module, nullptr);
  StepOutput late = RunStep(module->Clone(), m, /*inplace=*/true, /*hoist=*/false);
  StepOutput early = RunStep(module->Clone(), m, /*inplace=*/true, /*hoist=*/true);
  ExpectBitEqual(late, early, "early updates");
  EXPECT_LT(early.arena, late.arena);
  std::printf("%s: arena %lld bytes with updates at the end, %lld with early updates\n",
              m.name.c_str(), static_cast<long long>(late.arena),
              static_cast<long long>(early.arena));
}

// Grouped early updates (schedule's GroupUpdates, CUDA plans: the updates of a window of
// nodes back to back, launched as multi-tensor batches): the same step bit for bit, in fewer
// runs of updates, and an arena within 10% of the ungrouped one (each gradient lives at most
// the window longer).
TEST_P(RematBitExact, GroupedUpdatesMatchAndRunBackToBack) {
  const Model& m = GetParam();
  auto module = TrainingStep(m, /*keep_gradients=*/false);
  ASSERT_NE(module, nullptr);
  StepOutput early = RunStep(module->Clone(), m, /*inplace=*/true, /*hoist=*/true);
  StepOutput grouped =
      RunStep(module->Clone(), m, /*inplace=*/true, /*hoist=*/true, /*reuse=*/false, 32);
  ExpectBitEqual(early, grouped, "grouped updates");
  EXPECT_LT(grouped.update_runs, early.update_runs);
  EXPECT_LE(grouped.arena, early.arena * 11 / 10);
  std::printf("%s: %d runs of updates, %d grouped; arena %lld -> %lld bytes\n", m.name.c_str(),
              early.update_runs, grouped.update_runs, static_cast<long long>(early.arena),
              static_cast<long long>(grouped.arena));
}

// Elementwise outputs in the buffer of an input read for the last time there
// (PlanMemoryOptions::reuse_elementwise_inputs, on for cpu plans): the CPU kernels read each
// element before writing it, so loss, gradients and updates are bit for bit the same, in less
// arena.
TEST_P(RematBitExact, ElementwiseReuseMatches) {
  const Model& m = GetParam();
  // Gradients not kept: the tied embedding's gather_grad can write into its base's buffer.
  auto module = TrainingStep(m, /*keep_gradients=*/false);
  ASSERT_NE(module, nullptr);
  StepOutput own = RunStep(module->Clone(), m, /*inplace=*/true, /*hoist=*/true);
  StepOutput reuse = RunStep(module->Clone(), m, /*inplace=*/true, /*hoist=*/true, /*reuse=*/true);
  ExpectBitEqual(own, reuse, "elementwise reuse");
  EXPECT_LE(reuse.arena, own.arena);
  EXPECT_EQ(own.donated, 0);
  EXPECT_GT(reuse.donated, 10);
  if (m.name == "gpt") EXPECT_TRUE(reuse.donating_ops.count("gather_grad"));  // tied wte
  std::printf("%s: arena %lld bytes, %lld with %d elementwise outputs in dying inputs' buffers\n",
              m.name.c_str(), static_cast<long long>(own.arena),
              static_cast<long long>(reuse.arena), reuse.donated);
}

// Gradient accumulation as the cpu driver plans it (adamw_update's `apply` input, updates and
// accumulators written in place, early updates, buffer reuse): two micro-steps on the same batch
// average to that batch's gradient exactly (g + g = 2g, times 1/2), so they leave the weights
// and moments of one plain step bit for bit; the first micro-step leaves the weights alone.
// In place, the accumulating step needs no arena for new weights or moments.
TEST_P(RematBitExact, AccumulationMatchesOneStepInPlace) {
  const Model& m = GetParam();
  auto plan_of = [&](int64_t accumulate, plan::Plan& plan) {
    auto module = TrainingStep(m, /*keep_gradients=*/false, accumulate);
    ASSERT_NE(module, nullptr);
    ASSERT_TRUE(passes::CreateSchedulePass(/*hoist_updates=*/true)->Run(*module).ok());
    passes::PlanMemoryOptions po;
    po.workspace_bytes = Workspace;
    po.inplace_updates = true;
    po.reuse_elementwise_inputs = true;
    auto mp = passes::PlanMemory(*module->main(), po);
    ASSERT_TRUE(mp.ok()) << mp.status();
    plan.memory = *mp;
    plan.module = std::move(module);
  };
  plan::Plan one, two;
  plan_of(1, one);
  plan_of(2, two);
  ASSERT_NE(one.module, nullptr);
  ASSERT_NE(two.module, nullptr);
  int in_place = 0;
  for (const auto& b : two.memory.buffers) in_place += b.offset == -1 && !b.alias_of.empty();
  EXPECT_GT(in_place, 10) << "accumulating step without in-place updates";
  auto a = cpu::Executor::Create(one);
  auto b = cpu::Executor::Create(two);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  const std::map<std::string, ir::Tensor> inputs = TokenInputs(*one.module->main(), m, 11);
  const auto before = (*b)->State();
  ASSERT_TRUE((*b)->Run(inputs).ok());
  const auto half = (*b)->State();
  ASSERT_TRUE((*b)->Run(inputs).ok());
  ASSERT_TRUE((*a)->Run(inputs).ok());
  const auto got = (*b)->State();
  const auto want = (*a)->State();
  int compared = 0;
  for (const auto& [name, t] : want) {
    ASSERT_TRUE(got.count(name)) << name;
    EXPECT_TRUE(t.BitEquals(got.at(name))) << name;
    if (two.module->main()->FindValue(name)->is_param()) {
      EXPECT_TRUE(half.at(name).BitEquals(before.at(name))) << name << " moved on micro-step 1";
    }
    ++compared;
  }
  EXPECT_GT(compared, 10);
}

INSTANTIATE_TEST_SUITE_P(Models, RematBitExact, ::testing::Values(kGpt, kSeq2Seq),
                         [](const auto& info) { return info.param.name; });

TEST(PlanMemory, ArenaWithinTenPercentOfLowerBound) {
  for (const Model& m : {kGpt, kSeq2Seq}) {
    auto module = TrainingStep(m);
    ASSERT_NE(module, nullptr);
    passes::PlanMemoryOptions po;
    po.workspace_bytes = Workspace;
    auto mp = passes::PlanMemory(*module->main(), po);
    ASSERT_TRUE(mp.ok());
    EXPECT_LE(mp->arena_bytes, mp->lower_bound * 11 / 10) << m.name;
    EXPECT_GE(mp->arena_bytes, mp->lower_bound) << m.name;
  }
}

TEST(Remat, InfeasibleBudgetNamesMinimumBudgetAndBuffers) {
  auto module = TrainingStep(kGpt);
  ASSERT_NE(module, nullptr);
  passes::RematOptions o;
  o.budget = 1024;
  auto r = passes::Rematerialize(*module, o);
  ASSERT_FALSE(r.ok());
  std::string msg(r.status().message());
  EXPECT_NE(msg.find("memory budget 1.0 KiB (1024 bytes) is infeasible"), std::string::npos) << msg;
  EXPECT_NE(msg.find("minimum feasible budget is"), std::string::npos) << msg;
  EXPECT_NE(msg.find("largest buffers live at the peak"), std::string::npos) << msg;
  EXPECT_NE(msg.find(" from op `"), std::string::npos) << msg;  // the producing op
}

// The trade-off curve: every point fits its budget, and lower budgets never cost less compute.
TEST(Remat, SweepIsMonotoneAndFitsEveryBudget) {
  auto module = TrainingStep(kGpt);
  ASSERT_NE(module, nullptr);
  passes::RematOptions o;
  o.workspace_bytes = Workspace;
  auto sweep = passes::RematSweep(*module, o, 6);
  ASSERT_TRUE(sweep.ok()) << sweep.status();
  ASSERT_GE(sweep->size(), 2u);
  EXPECT_EQ(sweep->front().result.added_flops, 0);  // the no-remat budget recomputes nothing
  EXPECT_GT(sweep->back().result.added_flops, 0);
  for (size_t i = 0; i < sweep->size(); ++i) {
    EXPECT_LE((*sweep)[i].result.arena_after, (*sweep)[i].budget);
    if (i > 0) {
      EXPECT_LT((*sweep)[i].budget, (*sweep)[i - 1].budget);
      EXPECT_GE((*sweep)[i].result.added_flops, (*sweep)[i - 1].result.added_flops);
    }
  }
  EXPECT_NE(driver::SweepTable(*sweep).find("added GFLOP"), std::string::npos);
}

TEST(MemoryReport, TextJsonSvgDot) {
  auto module = TrainingStep(kGpt);
  ASSERT_NE(module, nullptr);
  passes::RematOptions o;
  o.mode = "per-block";
  o.workspace_bytes = Workspace;
  ASSERT_TRUE(passes::Rematerialize(*module, o).ok());
  plan::Plan plan;
  passes::PlanMemoryOptions po;
  po.workspace_bytes = Workspace;
  // As the driver plans cpu steps: the report finds both options again from the plan.
  po.inplace_updates = true;
  po.reuse_elementwise_inputs = true;
  auto mp = passes::PlanMemory(*module->main(), po);
  ASSERT_TRUE(mp.ok());
  plan.memory = *mp;
  plan.module = std::move(module);
  auto r = driver::BuildMemoryReport(plan);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->arena_bytes, plan.memory.arena_bytes);
  EXPECT_EQ(r->peak, plan.memory.lower_bound);
  EXPECT_GT(r->recomputed.size(), 0u);
  EXPECT_GT(r->recomputed_flops, 0);
  EXPECT_LT(r->recomputed_flops, r->step_flops);
  // The stacked timeline at the peak adds up to the peak.
  int64_t sum = 0;
  for (int64_t b : r->timeline[r->peak_index]) sum += b;
  EXPECT_EQ(sum, r->peak);
  std::string text = driver::MemoryReportText(*r);
  EXPECT_NE(text.find("lower bound"), std::string::npos);
  EXPECT_NE(text.find("recomputed:"), std::string::npos);
  std::string json = driver::MemoryReportJson(*r);
  EXPECT_NE(json.find("\"top_at_peak\""), std::string::npos);
  std::string svg = driver::MemoryTimelineSvg(*r);
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
  std::string dot = driver::MemoryDot(*plan.module->main());
  EXPECT_NE(dot.find("recomputed"), std::string::npos);
  EXPECT_NE(dot.find("saved for backward"), std::string::npos);
}

}  // namespace
}  // namespace ptc
