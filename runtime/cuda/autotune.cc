#include "runtime/cuda/autotune.h"

#include <cublasLt.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "compiler/support/status.h"
#include "compiler/ir/printer.h"
#include "runtime/cuda/cuda_check.h"
#include "runtime/cuda/device_kernels.h"

namespace ptc::cuda {
namespace {

// A candidate must beat the default by this factor to replace it.
constexpr double kMargin = 0.98;

struct Cache {
  std::mutex mu;
  std::map<std::pair<int, std::string>, TuneRecord> choices;  // (device, key)
  std::set<std::string> loaded;  // tuning files read into `choices` (path, tag, device)
};

Cache& GetCache() {
  static Cache* cache = new Cache;
  return *cache;
}

class TunedChoiceKernel final : public DeviceKernel {
 public:
  TunedChoiceKernel(const ir::Node& node,
                    std::vector<std::pair<std::string, std::unique_ptr<DeviceKernel>>> candidates)
      : node_(node), candidates_(std::move(candidates)) {
    key_ = node.op();
    for (const ir::Value* v : node.inputs()) {
      absl::StrAppend(&key_, " ", v->type().ToString());
      in_bytes_.push_back(std::max<int64_t>(0, v->type().byte_size()));
    }
    absl::StrAppend(&key_, " ->");
    for (const ir::Value* v : node.outputs()) {
      absl::StrAppend(&key_, " ", v->type().ToString());
      out_bytes_.push_back(std::max<int64_t>(0, v->type().byte_size()));
    }
    for (const auto& [name, value] : node.attrs()) {  // a std::map: sorted
      absl::StrAppend(&key_, " ", name, "=", ir::PrintAttrValue(value));
    }
    for (const auto& c : candidates_) names_.push_back(c.first);
  }
  size_t WorkspaceBytes() const override {
    size_t b = 0;
    for (const auto& c : candidates_) b = std::max(b, c.second->WorkspaceBytes());
    return b;
  }
  size_t ResidentBytes() const override {
    size_t b = 0;
    for (const auto& c : candidates_) b += c.second->ResidentBytes();
    return b;
  }
  bool capturable() const override {
    for (const auto& c : candidates_) {
      if (!c.second->capturable()) return false;
    }
    return true;
  }
  absl::Status Launch(const LaunchContext& ctx, absl::Span<const void* const> in,
                      absl::Span<void* const> out, void* workspace) override {
    if (ctx.tuner != nullptr) {
      if (!tuned_) {
        tuned_ = true;
        if (!OutputsOverlapInputs(in, out)) {
          LaunchContext inner = ctx;
          inner.tuner = nullptr;  // a candidate's own GEMMs keep their choices
          PTC_ASSIGN_OR_RETURN(
              chosen_, ctx.tuner->Choose(node_.op(), key_, node_.Describe(), names_, ctx.stream,
                                         [&](int i) {
                                           return candidates_[static_cast<size_t>(i)]
                                               .second->Launch(inner, in, out, workspace);
                                         }));
        }
      } else {
        ctx.tuner->Count(key_);
      }
    }
    return candidates_[static_cast<size_t>(chosen_)].second->Launch(ctx, in, out, workspace);
  }

 private:
  bool OutputsOverlapInputs(absl::Span<const void* const> in,
                            absl::Span<void* const> out) const {
    for (size_t o = 0; o < out.size() && o < out_bytes_.size(); ++o) {
      for (size_t i = 0; i < in.size() && i < in_bytes_.size(); ++i) {
        if (BytesOverlap(out[o], out_bytes_[o], in[i], in_bytes_[i])) return true;
      }
    }
    return false;
  }

  const ir::Node& node_;
  std::vector<std::pair<std::string, std::unique_ptr<DeviceKernel>>> candidates_;
  std::vector<std::string> names_;
  std::string key_;
  std::vector<int64_t> in_bytes_, out_bytes_;
  bool tuned_ = false;
  int chosen_ = 0;
};

}  // namespace

std::unique_ptr<DeviceKernel> MakeTunedChoice(
    const ir::Node& node,
    std::vector<std::pair<std::string, std::unique_ptr<DeviceKernel>>> candidates) {
  return std::make_unique<TunedChoiceKernel>(node, std::move(candidates));
}

namespace {

constexpr char kTuneFileHeader[] =
    "# ptc CUDA autotuning choices: device tag, kind, key, candidates, chosen, ms "
    "(delete to retune)";

struct TuneLine {
  std::string tag;
  TuneRecord record;
};

std::optional<TuneLine> ParseTuneLine(const std::string& line) {
  std::vector<std::string> f = absl::StrSplit(line, '\t');
  if (f.size() != 6 || line.empty() || line[0] == '#') return std::nullopt;
  TuneLine t;
  t.tag = f[0];
  t.record.kind = f[1];
  t.record.key = f[2];
  t.record.candidates = absl::StrSplit(f[3], '|');
  if (!absl::SimpleAtoi(f[4], &t.record.chosen) || t.record.chosen < 0 ||
      t.record.chosen >= static_cast<int>(t.record.candidates.size())) {
    return std::nullopt;
  }
  for (absl::string_view ms : absl::StrSplit(f[5], ',')) {
    double v = -1;
    if (!absl::SimpleAtod(ms, &v)) return std::nullopt;
    t.record.ms.push_back(v);
  }
  if (t.record.ms.size() != t.record.candidates.size()) return std::nullopt;
  t.record.where = "(tuning file)";
  return t;
}

std::string FormatTuneLine(const std::string& tag, const TuneRecord& r) {
  std::vector<std::string> ms;
  for (double v : r.ms) ms.push_back(absl::StrFormat("%.4f", v));
  return absl::StrCat(tag, "\t", r.kind, "\t", r.key, "\t", absl::StrJoin(r.candidates, "|"),
                      "\t", r.chosen, "\t", absl::StrJoin(ms, ","));
}

std::vector<std::string> ReadLines(const std::string& path) {
  std::vector<std::string> lines;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

}  // namespace

std::string DeviceTuneTag(const DeviceInfo& device) {
  return absl::StrCat(device.name, " sm_", device.cc_major * 10 + device.cc_minor, " cublasLt ",
                      cublasLtGetVersion());
}

absl::Status LoadTuneFile(const std::string& path, int device, const std::string& tag) {
  Cache& c = GetCache();
  std::lock_guard<std::mutex> lock(c.mu);
  // Once per process (the step's and @eval's executors share the choices).
  if (!c.loaded.insert(absl::StrCat(path, "\t", tag, "\t", device)).second) {
    return absl::OkStatus();
  }
  for (const std::string& line : ReadLines(path)) {
    std::optional<TuneLine> t = ParseTuneLine(line);
    if (!t || t->tag != tag) continue;
    c.choices.emplace(std::make_pair(device, t->record.key), t->record);  // this process's first
  }
  return absl::OkStatus();
}

absl::Status SaveTuneFile(const std::string& path, const std::string& tag,
                          const std::vector<TuneRecord>& records) {
  std::map<std::pair<std::string, std::string>, std::string> lines;  // (tag, key) -> line
  for (const std::string& line : ReadLines(path)) {
    if (std::optional<TuneLine> t = ParseTuneLine(line)) lines[{t->tag, t->record.key}] = line;
  }
  for (const TuneRecord& r : records) lines[{tag, r.key}] = FormatTuneLine(tag, r);
  std::error_code ec;
  const std::filesystem::path p(path);
  if (p.has_parent_path()) std::filesystem::create_directories(p.parent_path(), ec);
  const std::string tmp = absl::StrCat(path, ".tmp", ::getpid());
  {
    std::ofstream out(tmp);
    out << kTuneFileHeader << "\n";
    for (const auto& [k, line] : lines) out << line << "\n";
    if (!out) return absl::InternalError(absl::StrCat("cannot write the tuning file ", tmp));
  }
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::filesystem::remove(tmp, ec);
    return absl::InternalError(absl::StrCat("cannot replace the tuning file ", path));
  }
  return absl::OkStatus();
}

void ClearTuneCache() {
  Cache& c = GetCache();
  std::lock_guard<std::mutex> lock(c.mu);
  c.choices.clear();
  c.loaded.clear();
}

Tuner::~Tuner() {
  if (start_ != nullptr) cudaEventDestroy(start_);
  if (stop_ != nullptr) cudaEventDestroy(stop_);
}

TuneRecord* Tuner::Find(const std::string& key) {
  for (TuneRecord& r : records_) {
    if (r.key == key) return &r;
  }
  return nullptr;
}

void Tuner::Count(const std::string& key) {
  if (TuneRecord* r = Find(key)) ++r->calls;
}

absl::StatusOr<double> Tuner::TimeLaunch(const std::string& key, int candidate,
                                         cudaStream_t stream,
                                         const std::function<absl::Status()>& launch) {
  (void)key;
  (void)candidate;
  if (start_ == nullptr) PTC_CUDA_RETURN_IF_ERROR(cudaEventCreate(&start_));
  if (stop_ == nullptr) PTC_CUDA_RETURN_IF_ERROR(cudaEventCreate(&stop_));
  PTC_CUDA_RETURN_IF_ERROR(cudaEventRecord(start_, stream));
  PTC_RETURN_IF_ERROR(launch());
  PTC_CUDA_RETURN_IF_ERROR(cudaEventRecord(stop_, stream));
  PTC_CUDA_RETURN_IF_ERROR(cudaEventSynchronize(stop_));
  float ms = 0;
  PTC_CUDA_RETURN_IF_ERROR(cudaEventElapsedTime(&ms, start_, stop_));
  return static_cast<double>(ms);
}

absl::StatusOr<int> Tuner::Choose(std::string_view kind, const std::string& key,
                                  std::string_view where,
                                  const std::vector<std::string>& candidates,
                                  cudaStream_t stream,
                                  const std::function<absl::Status(int)>& launch,
                                  const std::function<absl::Status()>& prepare) {
  if (TuneRecord* r = Find(key)) {  // another node of this executor tuned it
    ++r->calls;
    return r->chosen;
  }
  {
    Cache& c = GetCache();
    std::lock_guard<std::mutex> lock(c.mu);
    auto it = c.choices.find({device_, key});
    if (it != c.choices.end() && it->second.candidates == candidates) {
      TuneRecord r = it->second;
      r.reused = true;
      r.calls = 1;
      r.tune_seconds = 0;
      records_.push_back(std::move(r));
      return records_.back().chosen;
    }
  }
  const auto t0 = std::chrono::steady_clock::now();
  TuneRecord rec;
  rec.kind = std::string(kind);
  rec.key = key;
  rec.where = std::string(where);
  rec.candidates = candidates;
  rec.ms.assign(candidates.size(), -1.0);
  absl::Status first_error;
  for (size_t i = 0; i < candidates.size(); ++i) {
    auto run = [&]() -> absl::Status {
      if (prepare) PTC_RETURN_IF_ERROR(prepare());
      return launch(static_cast<int>(i));
    };
    absl::Status warm = run();  // warm-up (module loading, caches)
    if (!warm.ok()) {
      if (i == 0) first_error = warm;
      continue;
    }
    double best = std::numeric_limits<double>::infinity();
    absl::Status failed;
    for (int r = 0; r < std::max(1, reps_); ++r) {
      if (prepare) {
        failed = prepare();
        if (!failed.ok()) break;
      }
      absl::StatusOr<double> ms = TimeLaunch(key, static_cast<int>(i), stream,
                                             [&] { return launch(static_cast<int>(i)); });
      if (!ms.ok()) {
        failed = ms.status();
        break;
      }
      best = std::min(best, *ms);
    }
    if (!failed.ok()) {
      if (i == 0) first_error = failed;
      continue;
    }
    rec.ms[i] = best;
  }
  int chosen = -1;
  for (size_t i = 0; i < candidates.size(); ++i) {
    if (rec.ms[i] < 0) continue;
    if (chosen < 0 || rec.ms[i] < rec.ms[chosen]) chosen = static_cast<int>(i);
  }
  if (chosen < 0) {
    return first_error.ok() ? absl::InternalError(absl::StrCat("autotune of ", key,
                                                               ": every candidate failed"))
                            : first_error;
  }
  if (chosen != 0 && rec.ms[0] >= 0 && rec.ms[chosen] > kMargin * rec.ms[0]) chosen = 0;
  rec.chosen = chosen;
  rec.calls = 1;
  if (prepare) PTC_RETURN_IF_ERROR(prepare());
  rec.tune_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  {
    Cache& c = GetCache();
    std::lock_guard<std::mutex> lock(c.mu);
    c.choices[{device_, key}] = rec;
  }
  records_.push_back(std::move(rec));
  return chosen;
}

std::string Tuner::Summary() const {
  if (records_.empty()) return "autotune: nothing to tune";
  std::map<std::string, int> kinds;
  int changed = 0, reused = 0;
  double seconds = 0, saved = 0;
  for (const TuneRecord& r : records_) {
    ++kinds[r.kind];
    changed += r.chosen != 0;
    reused += r.reused;
    seconds += r.tune_seconds;
    saved += r.SavedMs();
  }
  std::vector<std::string> parts;
  for (const auto& [k, n] : kinds) parts.push_back(absl::StrCat(n, " ", k));
  std::string s = absl::StrFormat("autotune: %zu problems (%s) in %.2f s", records_.size(),
                                  absl::StrJoin(parts, ", "), seconds);
  if (reused > 0) {
    absl::StrAppend(&s, absl::StrFormat(" (%d reused from earlier executors or the tuning file)",
                                        reused));
  }
  absl::StrAppend(&s, absl::StrFormat(", %d changed from the defaults, ~%.2f ms per run saved",
                                      changed, saved));
  return s;
}

std::string Tuner::Table() const {
  std::string s;
  for (const TuneRecord& r : records_) {
    std::vector<std::string> times;
    for (size_t i = 0; i < r.candidates.size(); ++i) {
      times.push_back(r.ms[i] < 0 ? absl::StrCat(r.candidates[i], " failed")
                                  : absl::StrFormat("%s %.3f", r.candidates[i], r.ms[i]));
    }
    absl::StrAppend(&s, absl::StrFormat("  %-14s x%-3d %s -> %s%s  [%s]  (%s)\n", r.kind, r.calls,
                                        absl::StrJoin(times, ", "), r.candidates[r.chosen],
                                        r.reused ? " (reused)" : "", r.key, r.where));
  }
  return s;
}

}  // namespace ptc::cuda
