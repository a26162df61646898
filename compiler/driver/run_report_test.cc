#include "compiler/driver/run_report.h"

#include <gtest/gtest.h>

namespace ptc::driver {
namespace {

TEST(RunReport, MedianOfOddAndEvenCounts) {
  EXPECT_DOUBLE_EQ(Median({3, 1, 2}), 2);
  EXPECT_DOUBLE_EQ(Median({4, 1, 3, 2}), 3);  // the upper middle, as `ptc run` always reported
  EXPECT_DOUBLE_EQ(Median({}), 0);
}

TEST(RunReport, ProfileTableSumsByOpPerRunAndListsTheSlowestNodes) {
  const std::vector<NodeTime> nodes = {{"matmul", "%a", "/l0/MatMul", 0.006},
                                       {"add", "%b", "/l0/Add", 0.002},
                                       {"matmul", "%c", "/l1/MatMul", 0.012}};
  const std::string t = FormatRunProfile(nodes, 2);
  EXPECT_NE(t.find("profile (per run, 2 run(s))"), std::string::npos) << t;
  // matmul: 2 nodes, (6 + 12) / 2 = 9 ms per run, 90% of the time; add: 1 ms, 10%.
  EXPECT_NE(t.find("  matmul                      2      9.000   90.0%"), std::string::npos) << t;
  EXPECT_NE(t.find("  add                         1      1.000   10.0%"), std::string::npos) << t;
  EXPECT_LT(t.find("matmul"), t.find("add")) << "ops sorted by time";
  // Slowest first: %c (6 ms per run), then %a (3 ms).
  const size_t slow = t.find("slowest nodes");
  ASSERT_NE(slow, std::string::npos);
  EXPECT_LT(t.find("%c", slow), t.find("%a", slow)) << t;
  EXPECT_NE(t.find("6.000 ms  /l1/MatMul"), std::string::npos) << t;
  // With the ops' ideal times (a roofline): two more columns, "-" where an op has none.
  const std::map<std::string, double> ideal = {{"matmul", 3.0}};
  const std::string w = FormatRunProfile(nodes, 2, 10, &ideal);
  EXPECT_NE(w.find("ideal ms   x ideal"), std::string::npos) << w;
  EXPECT_NE(w.find("  matmul                      2      9.000   90.0%     3.0000      3.0x"),
            std::string::npos) << w;
  EXPECT_NE(w.find("  add                         1      1.000   10.0%          -         -"),
            std::string::npos) << w;
}

TEST(RunReport, JsonHasTimesPerRunAndTheOptionalCudaFields) {
  RunReport r;
  r.plan = "g.plan";
  r.device = "cpu";
  r.seconds = {0.3, 0.1, 0.2};
  r.memory_bytes = 1024;
  nlohmann::json j = RunReportJson(r);
  EXPECT_EQ(j["runs"], 3);
  EXPECT_DOUBLE_EQ(j["median_seconds"].get<double>(), 0.2);
  EXPECT_FALSE(j.contains("fetch_seconds"));
  EXPECT_FALSE(j.contains("profile"));
  r.fetch_seconds = 0.5;
  r.result_bytes = 4096;
  r.profiled = true;
  r.profile = {{"matmul", "%a", "/x", 0.6}};
  j = RunReportJson(r);
  EXPECT_DOUBLE_EQ(j["fetch_seconds"].get<double>(), 0.5);
  EXPECT_EQ(j["result_bytes"], 4096);
  ASSERT_EQ(j["profile"].size(), 1u);
  EXPECT_DOUBLE_EQ(j["profile"][0]["seconds"].get<double>(), 0.2);  // per run
  EXPECT_EQ(j["profile"][0]["value"], "%a");
}

}  // namespace
}  // namespace ptc::driver
