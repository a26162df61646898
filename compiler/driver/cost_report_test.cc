#include "compiler/driver/cost_report.h"

#include "absl/strings/match.h"
#include "compiler/ir/parser.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace ptc::driver {
namespace {

constexpr char kStep[] = R"(
func @main(%ids: i64[4,16], %x: f32[64,128], %w: f32[128,256] {param}, %m: f32[128,256] {state}) -> (f32[64,256]) {
  %y = matmul(%x, %w) : f32[64,256]
  %r = reshape(%y) {shape=[64, 256]} : f32[64,256]
  %z = relu(%r) : f32[64,256]
  %m2 = neg(%m) : f32[128,256]
  assign(%m, %m2)
  return %z
}
)";

TEST(CostReport, RooflinePerOpAndTotals) {
  auto module = ir::ParseModule(kStep);
  ASSERT_TRUE(module.ok()) << module.status();
  CostOptions o;
  o.peak_tflops = 1;      // 1e12 FLOP/s
  o.bandwidth_gbs = 100;  // 1e11 B/s
  const CostReport r = BuildCostReport(*(*module)->main(), o);
  EXPECT_EQ(r.tokens, 64);  // the first integer input: the token ids
  const double mm_flops = 2.0 * 64 * 256 * 128;
  const double mm_bytes = 4.0 * (64 * 128 + 128 * 256 + 64 * 256);
  const OpCost* mm = nullptr;
  const OpCost* reshape = nullptr;
  const OpCost* assign = nullptr;
  for (const OpCost& c : r.ops) {
    if (c.op == "matmul") mm = &c;
    if (c.op == "reshape") reshape = &c;
    if (c.op == "assign") assign = &c;
  }
  ASSERT_NE(mm, nullptr);
  EXPECT_EQ(mm->count, 1);
  EXPECT_DOUBLE_EQ(mm->flops, mm_flops);
  EXPECT_DOUBLE_EQ(mm->bytes, mm_bytes);
  EXPECT_DOUBLE_EQ(mm->compute_ms, 1e3 * mm_flops / 1e12);
  EXPECT_DOUBLE_EQ(mm->memory_ms, 1e3 * mm_bytes / 1e11);
  EXPECT_DOUBLE_EQ(mm->ms, std::max(mm->compute_ms, mm->memory_ms));
  EXPECT_EQ(mm->memory_bound, mm->memory_ms > mm->compute_ms ? 1 : 0);
  ASSERT_NE(reshape, nullptr);
  EXPECT_EQ(reshape->bytes, 0);  // a view
  ASSERT_NE(assign, nullptr);
  EXPECT_GT(assign->bytes, 0);  // no memory plan: a copy
  double total = 0;
  for (size_t i = 0; i < r.ops.size(); ++i) {
    total += r.ops[i].ms;
    if (i > 0) EXPECT_GE(r.ops[i - 1].ms, r.ops[i].ms);
  }
  EXPECT_DOUBLE_EQ(r.ms, total);
  EXPECT_NEAR(r.IdealMfu(), r.flops / (r.ms * 1e-3 * 1e12), 1e-12);
  EXPECT_NEAR(r.IdealTokensPerSecond(), 64 / (r.ms * 1e-3), 1e-6);

  // The new value written in place (its buffer aliases the state): the assign moves nothing.
  plan::MemoryPlan memory;
  plan::BufferAssignment b;
  b.value = "m2";
  b.alias_of = "m";
  b.offset = -1;
  memory.buffers.push_back(b);
  const CostReport inplace = BuildCostReport(*(*module)->main(), o, &memory);
  for (const OpCost& c : inplace.ops) {
    if (c.op == "assign") EXPECT_EQ(c.bytes, 0);
  }
  EXPECT_LT(inplace.bytes, r.bytes);

  const std::string text = CostReportText(r);
  EXPECT_TRUE(absl::StrContains(text, "matmul")) << text;
  EXPECT_TRUE(absl::StrContains(text, "ideal step:")) << text;
  const nlohmann::json j = nlohmann::json::parse(CostReportJson(r));
  EXPECT_DOUBLE_EQ(j["ideal_ms"].get<double>(), r.ms);
  EXPECT_EQ(j["ops"].size(), r.ops.size());
  EXPECT_EQ(j["ops"][0]["op"], r.ops[0].op);
}

}  // namespace
}  // namespace ptc::driver
