// ptc-opt: runs passes on IR text (or an ONNX model) and prints the result; the driver of the
// FileCheck pass tests (tests/passes/) and a quick way to see what a pass does.
//
//   ptc-opt FILE.ir --passes=cse,dce [--split-input-file] [--print-ir-after=REGEX]
//           [--dump-dir=DIR] [--pass-stats] [--no-verify]
//   ptc-opt model.onnx --dim batch=8 --passes=default --bench=20
//
// --split-input-file treats each `// -----` separated chunk as its own module and prints the
// results separated by `// -----`. --bench=N runs the module N times with the CPU kernels
// before and after the passes (random inputs) and prints per-op-kind times instead of the IR.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "codegen/cpu/fused_kernels.h"
#include "codegen/cpu/kernel.h"
#include "compiler/ir/parser.h"
#include "compiler/ir/printer.h"
#include "compiler/ir/verifier.h"
#include "compiler/onnx/importer.h"
#include "compiler/support/status.h"
#include "passes/matcher.h"
#include "passes/memory_analysis.h"
#include "passes/pass.h"
#include "passes/plan_memory.h"
#include "passes/remat.h"

namespace {

struct Flags {
  std::string input;
  std::string passes = "none";
  bool split = false;
  std::string print_ir_after;
  std::string dump_dir;
  bool pass_stats = false;
  bool verify = true;
  int bench = 0;
  bool memory = false;       // append the liveness analysis and memory plan as comments
  bool inplace = false;      // plan optimizer updates in place
  bool reuse = false;        // elementwise outputs in a dying input's buffer
  std::string remat;         // --remat=none|per-block|auto: a remat pass after --passes
  int64_t mem_budget = 0;    // --mem-budget=SIZE for --remat=auto
  std::map<std::string, int64_t> dims;
};

constexpr char kUsage[] =
    "usage: ptc-opt FILE.ir|MODEL.onnx [--passes=a,b|default|none] [--split-input-file]\n"
    "               [--print-ir-after=REGEX] [--dump-dir=DIR] [--pass-stats] [--no-verify]\n"
    "               [--dim NAME=N]... [--bench=N]\n"
    "               [--print-memory [--inplace-updates] [--reuse-elementwise-inputs]]\n"
    "               [--remat=none|per-block|auto] [--mem-budget=SIZE]\n"
    "--remat / --mem-budget run the remat pass after --passes (budget: arena bytes, 2GiB, 512KiB).\n"
    "--print-memory appends the liveness analysis and the memory plan (plan-memory) of @main\n"
    "as `// ` comments after the IR.\n";

absl::StatusOr<Flags> ParseFlags(int argc, char** argv) {
  Flags f;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&](std::string_view name) -> std::optional<std::string> {
      std::string prefix = absl::StrCat("--", std::string(name), "=");
      if (absl::StartsWith(a, prefix)) return a.substr(prefix.size());
      return std::nullopt;
    };
    if (auto v = value("passes")) {
      f.passes = *v;
    } else if (a == "--split-input-file") {
      f.split = true;
    } else if (auto v = value("print-ir-after")) {
      f.print_ir_after = *v;
    } else if (auto v = value("dump-dir")) {
      f.dump_dir = *v;
    } else if (a == "--pass-stats") {
      f.pass_stats = true;
    } else if (a == "--print-memory") {
      f.memory = true;
    } else if (auto v = value("remat")) {
      f.remat = *v;
    } else if (auto v = value("mem-budget")) {
      PTC_ASSIGN_OR_RETURN(f.mem_budget, ptc::passes::ParseBytes(*v));
      if (f.remat.empty()) f.remat = "auto";
    } else if (a == "--inplace-updates") {
      f.inplace = true;
    } else if (a == "--reuse-elementwise-inputs") {
      f.reuse = true;
    } else if (a == "--no-verify") {
      f.verify = false;
    } else if (auto v = value("bench")) {
      if (!absl::SimpleAtoi(*v, &f.bench) || f.bench < 1) {
        return absl::InvalidArgumentError(absl::StrCat("--bench=", *v, ": expected N >= 1"));
      }
    } else if (a == "--dim" && i + 1 < argc) {
      std::vector<std::string> kv = absl::StrSplit(std::string(argv[++i]), '=');
      int64_t n = 0;
      if (kv.size() != 2 || !absl::SimpleAtoi(kv[1], &n) || n < 1) {
        return absl::InvalidArgumentError(
            absl::StrCat("--dim ", argv[i], ": expected NAME=N with N >= 1"));
      }
      f.dims[kv[0]] = n;
    } else if (a == "--help" || a == "-h") {
      return absl::CancelledError(kUsage);
    } else if (!a.empty() && a[0] != '-' && f.input.empty()) {
      f.input = a;
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown argument '", a, "'\n", kUsage));
    }
  }
  if (f.input.empty()) return absl::InvalidArgumentError(absl::StrCat("no input file\n", kUsage));
  return f;
}

// Splits at lines that are exactly `// -----` (surrounding spaces allowed). Each chunk keeps
// blank lines in place of the earlier chunks, so parse errors report the file's line numbers.
std::vector<std::string> SplitInput(const std::string& text) {
  std::vector<std::string> chunks(1);
  int line_no = 0;
  for (absl::string_view piece : absl::StrSplit(text, '\n')) {
    std::string_view line(piece.data(), piece.size());
    std::string_view t = line;
    while (!t.empty() && (t.front() == ' ' || t.front() == '\t')) t.remove_prefix(1);
    while (!t.empty() && (t.back() == ' ' || t.back() == '\t' || t.back() == '\r')) t.remove_suffix(1);
    ++line_no;
    if (t == "// -----") {
      chunks.emplace_back(std::string(line_no, '\n'));
      continue;
    }
    chunks.back().append(line.data(), line.size());
    chunks.back().push_back('\n');
  }
  return chunks;
}

// ---- --bench: a minimal interpreter over the CPU kernels ------------------------------------

struct BenchResult {
  double seconds = 0;                   // per run
  std::map<std::string, double> by_op;  // per run
  int nodes = 0;
};

absl::StatusOr<BenchResult> Bench(const ptc::ir::Module& module, int iters) {
  using ptc::ir::Tensor;
  const ptc::ir::Function* fn = module.main();
  if (fn == nullptr) return absl::InvalidArgumentError("module has no function to run");
  std::map<const ptc::ir::Value*, Tensor> values;
  std::mt19937 rng(0);
  std::uniform_real_distribution<float> dist(-1.f, 1.f);
  for (const ptc::ir::Value* p : fn->params()) {
    auto w = module.tensors().find(p->name());
    if (w != module.tensors().end() && w->second.type() == p->type()) {
      values[p] = w->second;
      continue;
    }
    Tensor t(p->type().dtype, p->type().shape);
    if (p->type().dtype == ptc::ir::DType::kF32) {
      for (int64_t i = 0; i < t.num_elements(); ++i) t.mutable_data_as<float>()[i] = dist(rng);
    }  // integer inputs (token ids) stay 0: always in range
    values[p] = t;
  }
  struct Step {
    const ptc::ir::Node* node;
    std::unique_ptr<ptc::cpu::Kernel> kernel;
    std::vector<uint8_t> workspace;
  };
  std::vector<Step> steps;
  for (const auto& n : fn->nodes()) {
    if (n->op() == "constant") {
      std::optional<Tensor> c = ptc::passes::ConstantTensor(module, n->output());
      values[n->output()] = c ? *c : Tensor(n->output()->type().dtype, n->output()->type().shape);
      continue;
    }
    absl::StatusOr<std::unique_ptr<ptc::cpu::Kernel>> k =
        ptc::cpu::HasFusedKernel(n->op()) ? ptc::cpu::CreateFusedKernel(*n)
                                          : ptc::cpu::CreateKernel(*n);
    if (!k.ok()) return k.status();
    for (const ptc::ir::Value* o : n->outputs()) {
      values[o] = Tensor(o->type().dtype, o->type().shape);
    }
    Step s{n.get(), *std::move(k), {}};
    s.workspace.resize(s.kernel->WorkspaceBytes());
    steps.push_back(std::move(s));
  }
  BenchResult r;
  r.nodes = static_cast<int>(steps.size());
  for (int it = -1; it < iters; ++it) {  // iteration -1 warms up
    for (Step& s : steps) {
      std::vector<const void*> ins;
      std::vector<void*> outs;
      for (const ptc::ir::Value* v : s.node->inputs()) ins.push_back(values[v].data());
      for (const ptc::ir::Value* v : s.node->outputs()) outs.push_back(values[v].mutable_data());
      auto t0 = std::chrono::steady_clock::now();
      PTC_RETURN_IF_ERROR(s.kernel->Run(ins, outs, s.workspace.data()));
      double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (it >= 0) {
        r.seconds += dt / iters;
        r.by_op[s.node->op()] += dt / iters;
      }
    }
  }
  return r;
}

void PrintBench(const char* label, const BenchResult& r) {
  std::printf("%s: %d kernels, %.3f ms per run\n", label, r.nodes, r.seconds * 1e3);
  for (const auto& [op, s] : r.by_op) std::printf("  %-20s %9.3f ms\n", op.c_str(), s * 1e3);
}

// ---- one module ------------------------------------------------------------------------

absl::Status Process(const Flags& flags, std::unique_ptr<ptc::ir::Module> module,
                     std::string* out) {
  if (flags.verify) {
    absl::Status v = ptc::ir::Verify(*module);
    if (!v.ok()) return absl::InvalidArgumentError(absl::StrCat("input IR: ", v.message()));
  }
  std::optional<BenchResult> before;
  if (flags.bench > 0) {
    PTC_ASSIGN_OR_RETURN(before, Bench(*module, flags.bench));
  }
  ptc::passes::PipelineOptions options;
  options.verify_each = flags.verify;
  options.print_ir_after = flags.print_ir_after;
  options.dump_dir = flags.dump_dir;
  ptc::passes::Pipeline pipeline(options);
  PTC_ASSIGN_OR_RETURN(auto passes, ptc::passes::CreatePasses(flags.passes));
  for (auto& p : passes) pipeline.Add(std::move(p));
  if (!flags.remat.empty()) {
    ptc::passes::RematOptions ro;
    ro.mode = flags.remat;
    ro.budget = flags.mem_budget;
    ro.inplace_updates = flags.inplace;
    ro.reuse_elementwise_inputs = flags.reuse;
    pipeline.Add(ptc::passes::CreateRematPass(ro));
  }
  PTC_RETURN_IF_ERROR(pipeline.Run(*module));
  if (flags.pass_stats) {
    for (const ptc::passes::PassTiming& t : pipeline.timings()) {
      std::fprintf(stderr, "%-18s %8.3f ms  %s", t.name.c_str(), t.seconds * 1e3,
                   t.changed ? "changed" : "unchanged");
      for (const auto& [k, v] : t.counters) std::fprintf(stderr, "  %s=%lld", k.c_str(),
                                                          static_cast<long long>(v));
      std::fprintf(stderr, "\n");
    }
  }
  if (flags.bench > 0) {
    PTC_ASSIGN_OR_RETURN(BenchResult after, Bench(*module, flags.bench));
    PrintBench("before passes", *before);
    PrintBench("after passes", after);
    std::printf("speedup: %.3fx\n", before->seconds / after.seconds);
    return absl::OkStatus();
  }
  *out = ptc::ir::PrintModule(*module);
  if (flags.memory && module->main() != nullptr) {
    ptc::passes::LivenessOptions lo;
    lo.inplace_updates = flags.inplace;
    lo.reuse_elementwise_inputs = flags.reuse;
    PTC_ASSIGN_OR_RETURN(auto live, ptc::passes::LivenessAnalysis::Run(*module->main(), lo));
    ptc::passes::PlanMemoryOptions po;
    po.inplace_updates = flags.inplace;
    po.reuse_elementwise_inputs = flags.reuse;
    PTC_ASSIGN_OR_RETURN(auto plan, ptc::passes::PlanMemory(*module->main(), po));
    std::string text = live.ToString();
    absl::StrAppend(&text, "arena ", plan.arena_bytes, " lower_bound ", plan.lower_bound, "\n");
    for (const auto& b : plan.buffers) {
      absl::StrAppend(&text, "buffer %", b.value, " offset=", b.offset, " bytes=", b.bytes,
                      " live=[", b.first, ",", b.last, "]",
                      b.alias_of.empty() ? "" : absl::StrCat(" alias_of=%", b.alias_of), "\n");
    }
    for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
      absl::StrAppend(out, "// ", line, "\n");
    }
  }
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  absl::StatusOr<Flags> flags = ParseFlags(argc, argv);
  if (!flags.ok()) {
    bool help = absl::IsCancelled(flags.status());
    std::fprintf(help ? stdout : stderr, "%s%s\n", help ? "" : "ptc-opt: ",
                 std::string(flags.status().message()).c_str());
    return help ? 0 : 2;
  }
  if (absl::EndsWith(flags->input, ".onnx")) {
    ptc::onnx_import::ImportOptions io;
    io.dims = flags->dims;
    auto module = ptc::onnx_import::ImportOnnxFile(flags->input, io);
    std::string out;
    absl::Status s = module.ok() ? Process(*flags, *std::move(module), &out) : module.status();
    if (!s.ok()) {
      std::fprintf(stderr, "ptc-opt: %s: %s\n", flags->input.c_str(),
                   std::string(s.message()).c_str());
      return 1;
    }
    std::fputs(out.c_str(), stdout);
    return 0;
  }
  std::ifstream in(flags->input, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "ptc-opt: cannot read '%s'\n", flags->input.c_str());
    return 1;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  std::vector<std::string> chunks =
      flags->split ? SplitInput(ss.str()) : std::vector<std::string>{ss.str()};
  int failures = 0;
  for (size_t i = 0; i < chunks.size(); ++i) {
    if (i > 0) std::fputs("// -----\n", stdout);
    std::string out;
    auto module = ptc::ir::ParseModule(chunks[i]);
    absl::Status s = module.ok() ? Process(*flags, *std::move(module), &out) : module.status();
    if (!s.ok()) {
      ++failures;
      std::string where = flags->split ? absl::StrCat(" (chunk ", i + 1, ")") : "";
      std::fprintf(stderr, "ptc-opt: %s%s: %s\n", flags->input.c_str(), where.c_str(),
                   std::string(s.message()).c_str());
      // Also on stdout, so a FileCheck test can check an expected error.
      std::printf("// error: %s\n", std::string(s.message()).c_str());
      continue;
    }
    std::fputs(out.c_str(), stdout);
  }
  return failures == 0 ? 0 : 1;
}
