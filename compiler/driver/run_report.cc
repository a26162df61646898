#include "compiler/driver/run_report.h"

#include <algorithm>
#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "runtime/cpu/trainer.h"

namespace ptc::driver {

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

std::string FormatRunProfile(const std::vector<NodeTime>& nodes, int runs, int slowest,
                             const std::map<std::string, double>* ideal_ms) {
  runs = std::max(1, runs);
  double total = 0;
  std::map<std::string, std::pair<double, int>> by_op;
  for (const NodeTime& p : nodes) {
    total += p.seconds;
    by_op[p.op].first += p.seconds;
    by_op[p.op].second += 1;
  }
  std::vector<std::pair<std::string, std::pair<double, int>>> ops(by_op.begin(), by_op.end());
  std::stable_sort(ops.begin(), ops.end(),
                   [](const auto& x, const auto& y) { return x.second.first > y.second.first; });
  const bool ideal = ideal_ms != nullptr && !ideal_ms->empty();
  std::string out = absl::StrFormat("profile (per run, %d run(s)):\n  %-22s %6s %10s %7s", runs,
                                    "op", "nodes", "ms", "%");
  if (ideal) absl::StrAppend(&out, train::IdealColumnsHeader());
  absl::StrAppend(&out, "\n");
  for (const auto& [op, v] : ops) {
    const double ms = v.first / runs * 1e3;
    absl::StrAppendFormat(&out, "  %-22s %6d %10.3f %6.1f%%", op, v.second, ms,
                          total > 0 ? 100 * v.first / total : 0.0);
    if (ideal) absl::StrAppend(&out, train::IdealColumns(*ideal_ms, op, ms));
    absl::StrAppend(&out, "\n");
  }
  std::vector<size_t> idx(nodes.size());
  for (size_t i = 0; i < idx.size(); ++i) idx[i] = i;
  std::stable_sort(idx.begin(), idx.end(),
                   [&](size_t x, size_t y) { return nodes[x].seconds > nodes[y].seconds; });
  absl::StrAppend(&out, "\n  slowest nodes:\n");
  for (size_t k = 0; k < std::min<size_t>(std::max(slowest, 0), idx.size()); ++k) {
    const NodeTime& p = nodes[idx[k]];
    absl::StrAppendFormat(&out, "  %-16s %-28s %9.3f ms  %s\n", p.op, p.name,
                          p.seconds / runs * 1e3, p.loc);
  }
  return out;
}

nlohmann::json RunReportJson(const RunReport& r) {
  nlohmann::json j;
  j["plan"] = r.plan;
  j["device"] = r.device;
  j["runs"] = r.seconds.size();
  j["seconds"] = r.seconds;
  j["median_seconds"] = Median(r.seconds);
  j["memory_bytes"] = r.memory_bytes;
  if (r.fetch_seconds) j["fetch_seconds"] = *r.fetch_seconds;
  if (r.result_bytes) j["result_bytes"] = *r.result_bytes;
  if (r.profiled) {
    const int runs = std::max<int>(1, static_cast<int>(r.seconds.size()));
    j["profile"] = nlohmann::json::array();
    for (const NodeTime& p : r.profile) {
      j["profile"].push_back(
          {{"op", p.op}, {"value", p.name}, {"loc", p.loc}, {"seconds", p.seconds / runs}});
    }
  }
  return j;
}

}  // namespace ptc::driver
