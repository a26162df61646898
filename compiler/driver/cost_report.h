// The work of a plan's step against a machine's roofline: `ptc dump PLAN --cost
// [--peak-tflops F] [--bandwidth-gbs B] [--format text|json]`. Library functions; the CLI only
// prints.
//
// Each node's FLOPs and the bytes it moves (passes::EstimateCost: its operands read and results
// written once; kernel scratch and re-reads are not counted, so this is a lower bound) give its
// roofline time, max(FLOPs / peak, bytes / bandwidth). Summed per op they give the step's ideal
// time, which ops bound it (compute or memory), the tokens/s and the MFU (model FLOPs over
// time x peak) an ideal executor would reach: the yardstick for `ptc run --profile`'s measured
// per-op times. Reshapes and identities are views (no bytes); constants are free; so are the
// assigns of parameters updated in place.
#ifndef PTC_COMPILER_DRIVER_COST_REPORT_H_
#define PTC_COMPILER_DRIVER_COST_REPORT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "compiler/ir/ir.h"
#include "runtime/plan/plan.h"

namespace ptc::driver {

struct CostOptions {
  // Defaults: an H200, its bf16 GEMM rate as measured on one (8192^3, bench/README.md) and
  // its HBM3e bandwidth (4.8 TB/s).
  double peak_tflops = 732;
  double bandwidth_gbs = 4800;
};

struct OpCost {
  std::string op;
  int64_t count = 0;
  double flops = 0;
  double bytes = 0;
  double compute_ms = 0;  // sum over the nodes of FLOPs / peak
  double memory_ms = 0;   // sum over the nodes of bytes / bandwidth
  double ms = 0;          // sum over the nodes of the larger of the two
  int64_t memory_bound = 0;  // nodes whose bytes take longer than their FLOPs
};

struct CostReport {
  std::string function;
  CostOptions options;
  std::vector<OpCost> ops;  // by roofline time, largest first
  double flops = 0, bytes = 0, ms = 0, compute_ms = 0, memory_ms = 0;
  int64_t tokens = 0;  // elements of the first integer input (token ids), 0 without one
  // FLOPs / (ms x peak): the MFU of an executor that ran every node at its roofline.
  double IdealMfu() const;
  double IdealTokensPerSecond() const;
};

// With the plan's memory plan (`memory`, for its main function), an assign whose new value was
// written in place (its buffer aliases the parameter) moves no bytes.
CostReport BuildCostReport(const ir::Function& function, const CostOptions& options = {},
                           const plan::MemoryPlan* memory = nullptr);
std::string CostReportText(const CostReport& report);
std::string CostReportJson(const CostReport& report);

}  // namespace ptc::driver

#endif  // PTC_COMPILER_DRIVER_COST_REPORT_H_
