// What `ptc run` reports for an inference plan, on the CPU or the GPU: the median time, the
// per-op profile table and the --json document. Library functions; the CLIs print them.
//
//   profile (per run, 10 run(s)):
//     op                      nodes         ms       %
//     fused_matmul               49      8.120   61.2%
//     ...
//     slowest nodes:
//     fused_matmul     %logits                 3.400 ms  /lm_head/MatMul
#ifndef PTC_COMPILER_DRIVER_RUN_REPORT_H_
#define PTC_COMPILER_DRIVER_RUN_REPORT_H_

#include <map>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"

namespace ptc::driver {

// One node's time accumulated over the timed runs.
struct NodeTime {
  std::string op, name, loc;
  double seconds = 0;
};

struct RunReport {
  std::string plan;
  std::string device;             // "cpu" or "cuda (NVIDIA H200)"
  std::vector<double> seconds;    // each timed run
  int64_t memory_bytes = 0;       // the arena (CPU) / every device byte (CUDA)
  // CUDA: the timed runs leave the results on the device (as a framework's forward does);
  // this is one more run with every result copied to the host.
  std::optional<double> fetch_seconds;
  std::optional<int64_t> result_bytes;
  bool profiled = false;
  std::vector<NodeTime> profile;  // accumulated over seconds.size() runs
};

double Median(std::vector<double> v);
// The per-op table (nodes, ms per run, share of the profiled time) and the `slowest` slowest
// nodes.
// With `ideal_ms` (per op and run, e.g. CostReport's roofline times) two more columns: the
// ideal time and how many times slower the measured one is.
std::string FormatRunProfile(const std::vector<NodeTime>& nodes, int runs, int slowest = 10,
                             const std::map<std::string, double>* ideal_ms = nullptr);
// {"plan", "device", "runs", "seconds", "median_seconds", "memory_bytes"[,
//  "fetch_seconds", "result_bytes"][, "profile": [{"op", "value", "loc", "seconds"}] per run]}.
nlohmann::json RunReportJson(const RunReport& r);

}  // namespace ptc::driver

#endif  // PTC_COMPILER_DRIVER_RUN_REPORT_H_
