// The pass interface and the pipeline that runs passes with the verifier after each one.
//
// A pass is one file in passes/ that opens with a comment: what it does, preconditions, what
// runs before/after it, and a tiny before/after IR example. Options are a typed struct given to
// the constructor. A pass that declines to fire is not an error: it records why in its counters.
#ifndef PTC_PASSES_PASS_H_
#define PTC_PASSES_PASS_H_

#include <functional>
#include <map>
#include <set>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "compiler/ir/ir.h"

namespace ptc::passes {

class Pass {
 public:
  virtual ~Pass() = default;
  virtual std::string_view name() const = 0;             // kebab-case: "fold-constants"
  virtual absl::StatusOr<bool> Run(ir::Module& module) = 0;  // true iff it changed the module
  // Counters such as "fused=12", "declined.multi-use=3"; printed with --pass-stats.
  const std::map<std::string, int64_t>& counters() const { return counters_; }

 protected:
  void Count(const std::string& key, int64_t n = 1) { counters_[key] += n; }

 private:
  std::map<std::string, int64_t> counters_;
};

// A pass that rewrites each function of the module on its own: Run visits them in order and
// reports whether any changed.
class FunctionPass : public Pass {
 public:
  absl::StatusOr<bool> Run(ir::Module& module) final;

 protected:
  // True iff it changed `fn`.
  virtual absl::StatusOr<bool> RunOnFunction(ir::Module& module, ir::Function& fn) = 0;
};

struct PassTiming {
  std::string name;
  double seconds = 0;
  bool changed = false;
  std::map<std::string, int64_t> counters;
};

struct PipelineOptions {
  bool verify_each = true;            // run ir::Verify after every pass
  std::string print_ir_after;         // regex over pass names; IR printed to `print_sink`
  std::function<void(const std::string& pass, const std::string& ir)> print_sink;
  std::string dump_dir;               // when set, writes NN-<pass>.ir after each pass
};

class Pipeline {
 public:
  explicit Pipeline(PipelineOptions options = {}) : options_(std::move(options)) {}
  void Add(std::unique_ptr<Pass> pass) { passes_.push_back(std::move(pass)); }
  // Runs every pass in order; an error names the pass (and the verifier's finding).
  absl::Status Run(ir::Module& module);
  const std::vector<PassTiming>& timings() const { return timings_; }
  std::vector<std::string> PassNames() const;

 private:
  PipelineOptions options_;
  std::vector<std::unique_ptr<Pass>> passes_;
  std::vector<PassTiming> timings_;
};

// Every pass by name, in one explicit list (no static self-registration).
struct PassInfo {
  std::string_view name;
  std::string_view summary;
  std::function<std::unique_ptr<Pass>()> create;  // default options
};
const std::vector<PassInfo>& RegisteredPasses();
// Parses "fold-constants,dce,cse" (or "default" / "none") into passes; error on unknown names.
absl::StatusOr<std::vector<std::unique_ptr<Pass>>> CreatePasses(std::string_view list);
// The default inference pipeline for a target ("cpu").
std::vector<std::string> DefaultPassList(std::string_view target);
// The names a pass list drops with "-NAME" ("default,-match-rotary" -> {"match-rotary"}): the
// driver's pre-autodiff fusions honor them too.
std::set<std::string> DroppedPasses(std::string_view list);
// The fusions compiler/driver runs before autodiff (training and --precision plans), in order.
// "-NAME" may drop one of them even where the pipeline after autodiff does not list it
// (fuse-linear-ce, slices-as-split).
const std::vector<std::string>& PreAutodiffFusions();

}  // namespace ptc::passes

#endif  // PTC_PASSES_PASS_H_
