#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_join.h"
#include "compiler/ir/parser.h"
#include "compiler/ir/printer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "passes/pass.h"
#include "passes/passes.h"

namespace ptc::passes {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr char kModule[] = R"(func @main(%x: f32[4]) -> (f32[4]) {
  %a = exp(%x) : f32[4]
  %b = exp(%x) : f32[4]
  %dead = neg(%x) : f32[4]
  %c = add(%a, %b) : f32[4]
  return %c
}
)";

std::unique_ptr<ir::Module> Parse(const char* text) {
  auto m = ir::ParseModule(text);
  EXPECT_TRUE(m.ok()) << m.status();
  return m.ok() ? *std::move(m) : std::make_unique<ir::Module>();
}

// Gives %a the wrong type: what a buggy pass would do.
class BreakTypesPass : public Pass {
 public:
  std::string_view name() const override { return "break-types"; }
  absl::StatusOr<bool> Run(ir::Module& module) override {
    module.main()->nodes()[0]->output()->set_type(ir::TensorType{ir::DType::kF32, {5}});
    return true;
  }
};

class FailingPass : public Pass {
 public:
  std::string_view name() const override { return "failing"; }
  absl::StatusOr<bool> Run(ir::Module&) override {
    return absl::InvalidArgumentError("bad option");
  }
};

TEST(PipelineTest, VerifierCatchesBrokenPassAndNamesIt) {
  auto m = Parse(kModule);
  Pipeline p;
  p.Add(CreateCsePass());
  p.Add(std::make_unique<BreakTypesPass>());
  p.Add(CreateDcePass());
  absl::Status s = p.Run(*m);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.message()), HasSubstr("pass 'break-types' produced invalid IR: "));
  EXPECT_THAT(std::string(s.message()), HasSubstr("f32[5]"));
  // cse ran and was fine; dce never ran.
  ASSERT_EQ(p.timings().size(), 2u);
  EXPECT_EQ(p.timings()[0].name, "cse");
  EXPECT_TRUE(p.timings()[0].changed);
}

TEST(PipelineTest, WithoutVerifyEachTheBrokenPassGoesUnnoticed) {
  auto m = Parse(kModule);
  PipelineOptions o;
  o.verify_each = false;
  Pipeline p(o);
  p.Add(std::make_unique<BreakTypesPass>());
  EXPECT_TRUE(p.Run(*m).ok());
}

TEST(PipelineTest, PassErrorKeepsCodeAndNamesPass) {
  auto m = Parse(kModule);
  Pipeline p;
  p.Add(std::make_unique<FailingPass>());
  absl::Status s = p.Run(*m);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "pass 'failing' failed: bad option");
}

TEST(PipelineTest, PrintIrAfterMatchesWholePassNames) {
  auto m = Parse(kModule);
  PipelineOptions o;
  o.print_ir_after = "d.e";  // dce only: not cse, and a regex, not a substring
  std::vector<std::string> printed;
  std::string dce_ir;
  o.print_sink = [&](const std::string& pass, const std::string& ir) {
    printed.push_back(pass);
    dce_ir = ir;
  };
  Pipeline p(o);
  p.Add(CreateCsePass());
  p.Add(CreateDcePass());
  ASSERT_TRUE(p.Run(*m).ok());
  EXPECT_THAT(printed, ElementsAre("dce"));
  // Printed after dce: %b merged into %a by cse, %dead removed.
  EXPECT_THAT(dce_ir, HasSubstr("%c = add(%a, %a)"));
  EXPECT_THAT(dce_ir, Not(HasSubstr("neg")));
  EXPECT_EQ(dce_ir, ir::PrintModule(*m));
}

TEST(PipelineTest, PrintIrAfterDotStarPrintsEveryPass) {
  auto m = Parse(kModule);
  PipelineOptions o;
  o.print_ir_after = ".*";
  std::vector<std::string> printed;
  o.print_sink = [&](const std::string& pass, const std::string&) { printed.push_back(pass); };
  Pipeline p(o);
  p.Add(CreateCsePass());
  p.Add(CreateDcePass());
  p.Add(CreateCsePass());
  ASSERT_TRUE(p.Run(*m).ok());
  EXPECT_THAT(printed, ElementsAre("cse", "dce", "cse"));
}

TEST(PipelineTest, InvalidPrintRegexIsAnError) {
  auto m = Parse(kModule);
  PipelineOptions o;
  o.print_ir_after = "(cse";
  Pipeline p(o);
  p.Add(CreateCsePass());
  absl::Status s = p.Run(*m);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("--print-ir-after"));
}

TEST(PipelineTest, DumpDirWritesOneFilePerPass) {
  auto m = Parse(kModule);
  std::filesystem::path dir = std::filesystem::path(::testing::TempDir()) / "ptc_dump_test";
  std::filesystem::remove_all(dir);
  PipelineOptions o;
  o.dump_dir = dir.string();
  Pipeline p(o);
  p.Add(CreateCsePass());
  p.Add(CreateDcePass());
  ASSERT_TRUE(p.Run(*m).ok());
  std::vector<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    files.push_back(e.path().filename().string());
  }
  std::sort(files.begin(), files.end());
  EXPECT_THAT(files, ElementsAre("00-input.ir", "01-cse.ir", "02-dce.ir"));
  std::ifstream in(dir / "00-input.ir");
  std::stringstream ss;
  ss << in.rdbuf();
  EXPECT_EQ(ss.str(), kModule);
}

TEST(PipelineTest, TimingsRecordChangedAndCounters) {
  auto m = Parse(kModule);
  Pipeline p;
  p.Add(CreateDcePass());
  p.Add(CreateDcePass());
  ASSERT_TRUE(p.Run(*m).ok());
  ASSERT_EQ(p.timings().size(), 2u);
  EXPECT_TRUE(p.timings()[0].changed);
  EXPECT_EQ(p.timings()[0].counters.at("removed"), 1);
  EXPECT_FALSE(p.timings()[1].changed);  // nothing left to remove
  EXPECT_THAT(p.PassNames(), ElementsAre("dce", "dce"));
}

TEST(CreatePassesTest, ParsesListsWithSpaces) {
  auto passes = CreatePasses("cse, dce ,fold-constants");
  ASSERT_TRUE(passes.ok()) << passes.status();
  std::vector<std::string> names;
  for (const auto& p : *passes) names.emplace_back(p->name());
  EXPECT_THAT(names, ElementsAre("cse", "dce", "fold-constants"));
}

TEST(CreatePassesTest, UnknownPassListsKnownOnes) {
  auto passes = CreatePasses("cse,common-subexpr");
  ASSERT_FALSE(passes.ok());
  EXPECT_EQ(passes.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(passes.status().message()), HasSubstr("unknown pass 'common-subexpr'"));
  EXPECT_THAT(std::string(passes.status().message()), HasSubstr("fold-constants"));
}

TEST(CreatePassesTest, NoneAndEmptyGiveNoPasses) {
  auto none = CreatePasses("none");
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
  auto empty = CreatePasses("");
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());
}

TEST(CreatePassesTest, DefaultIsTheCpuList) {
  auto passes = CreatePasses("default");
  ASSERT_TRUE(passes.ok());
  std::vector<std::string> names;
  for (const auto& p : *passes) names.emplace_back(p->name());
  EXPECT_EQ(names, DefaultPassList("cpu"));
  EXPECT_FALSE(names.empty());
}

TEST(RegisteredPassesTest, NamesAreUniqueAndMatchTheirPasses) {
  std::set<std::string> seen;
  for (const PassInfo& info : RegisteredPasses()) {
    EXPECT_TRUE(seen.insert(std::string(info.name)).second) << info.name;
    EXPECT_EQ(info.create()->name(), info.name);
    EXPECT_FALSE(info.summary.empty());
  }
  for (const std::string& n : DefaultPassList("cpu")) EXPECT_TRUE(seen.count(n)) << n;
}

}  // namespace
}  // namespace ptc::passes

namespace ptc::passes {
namespace {

// "-NAME" drops a pass listed before it, or one of the fusions the driver runs before autodiff
// (registered passes, even where the pipeline after autodiff does not list them:
// fuse-linear-ce); any other name is an error that says what "-NAME" takes.
TEST(CreatePassesTest, DropsListedAndPreAutodiffPassesOnly) {
  std::set<std::string> registered;
  for (const PassInfo& info : RegisteredPasses()) registered.insert(std::string(info.name));
  for (const std::string& n : PreAutodiffFusions()) {
    EXPECT_TRUE(registered.count(n)) << n;
    auto passes = CreatePasses("default,-" + n);
    EXPECT_TRUE(passes.ok()) << n << ": " << passes.status();
    EXPECT_TRUE(DroppedPasses("default,-" + n).count(n));
  }
  auto unknown = CreatePasses("default,-kv-cache");
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("nor run before autodiff"), std::string::npos)
      << unknown.status();
}

}  // namespace
}  // namespace ptc::passes
