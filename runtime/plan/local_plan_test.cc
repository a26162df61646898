// plan::PlanFunctionLocally: buffers of values that are never live together share bytes,
// workspaces live at their node only, results live to the end, and no two overlapping
// lifetimes overlap in the arena.
#include "runtime/plan/local_plan.h"

#include "gtest/gtest.h"

namespace ptc::plan {
namespace {

TEST(LocalPlan, ReusesDeadBuffersAndKeepsResults) {
  ir::Function f("eval");
  ir::TensorType t{ir::DType::kF32, {256}};  // 1 KiB
  ir::Value* x = f.AddParam("x", t);
  ir::Value* a = f.AddNode("neg", {x}, {t}, {}, "", {"a"})->output();
  ir::Value* b = f.AddNode("neg", {a}, {t}, {}, "", {"b"})->output();
  ir::Value* c = f.AddNode("neg", {b}, {t}, {}, "", {"c"})->output();
  ir::Value* d = f.AddNode("neg", {c}, {t}, {}, "", {"d"})->output();
  f.set_results({a, d});
  auto mp = PlanFunctionLocally(
      f, [](const ir::Node& n) -> absl::StatusOr<int64_t> { return n.output()->name() == "c" ? 100 : 0; });
  ASSERT_TRUE(mp.ok()) << mp.status();
  // a (a result) lives to the end; b and c are dead after their reader: 3 KiB + the workspace
  // (128 B after alignment) instead of 4 KiB + workspace without reuse.
  EXPECT_LT(mp->arena_bytes, 4 * 1024 + 128);
  EXPECT_EQ(mp->buffers.size(), 5u);  // a, b, c, ws@2, d
  for (const auto& p : mp->buffers) {
    EXPECT_EQ(p.offset % 64, 0) << p.value;
    for (const auto& q : mp->buffers) {
      if (&p == &q) continue;
      const bool live_together = p.first <= q.last && q.first <= p.last;
      const bool share = p.offset < q.offset + q.bytes && q.offset < p.offset + p.bytes;
      EXPECT_FALSE(live_together && share) << p.value << " and " << q.value;
    }
    if (p.value == "a" || p.value == "d") EXPECT_EQ(p.last, 4) << p.value;  // to the end
  }
  auto bad = PlanFunctionLocally(
      f, [](const ir::Node&) -> absl::StatusOr<int64_t> { return absl::InternalError("no"); });
  EXPECT_FALSE(bad.ok());
}

}  // namespace
}  // namespace ptc::plan
