#include "compiler/driver/memory_report.h"

#include <algorithm>
#include <map>

#include "absl/strings/numbers.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "compiler/support/status.h"
#include "nlohmann/json.hpp"

namespace ptc::driver {
namespace {

using passes::Category;
using passes::FormatBytes;

constexpr const char* kColors[passes::kNumCategories] = {"#9e9e9e", "#7e57c2", "#42a5f5",
                                                         "#ef6c00", "#ab47bc", "#66bb6a"};

std::string XmlEscape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '<') o += "&lt;";
    else if (c == '>') o += "&gt;";
    else if (c == '&') o += "&amp;";
    else if (c == '"') o += "&quot;";
    else o += c;
  }
  return o;
}

}  // namespace

absl::StatusOr<MemoryReport> BuildMemoryReport(const plan::Plan& plan, int top) {
  if (!plan.module || plan.module->main() == nullptr) {
    return absl::InvalidArgumentError("the plan has no function to report on");
  }
  const ir::Function& f = *plan.module->main();
  std::map<int, int64_t> ws;
  for (const auto& b : plan.memory.buffers) {
    int n = 0;
    if (absl::StartsWith(b.value, "ws@") && absl::SimpleAtoi(b.value.substr(3), &n)) ws[n] = b.bytes;
  }
  std::map<const ir::Node*, int> index;
  for (size_t i = 0; i < f.nodes().size(); ++i) index[f.nodes()[i].get()] = static_cast<int>(i);
  passes::LivenessOptions lo;
  lo.workspace_bytes = [&](const ir::Node& n) -> absl::StatusOr<int64_t> {
    auto it = ws.find(index.at(&n));
    return it == ws.end() ? 0 : it->second;
  };
  // In-place optimizer outputs are in the plan as aliases of their parameter; elementwise
  // outputs in an input's buffer as arena aliases made by other ops than reshape / identity.
  for (const auto& b : plan.memory.buffers) {
    if (b.alias_of.empty()) continue;
    if (b.offset < 0) {
      lo.inplace_updates = true;
      continue;
    }
    const ir::Value* v = f.FindValue(b.value);
    if (v != nullptr && v->producer() != nullptr && v->producer()->op() != "reshape" &&
        v->producer()->op() != "identity") {
      lo.reuse_elementwise_inputs = true;
    }
  }
  PTC_ASSIGN_OR_RETURN(passes::LivenessAnalysis live, passes::LivenessAnalysis::Run(f, lo));

  MemoryReport r;
  r.function = f.name();
  r.arena_bytes = plan.memory.arena_bytes;
  r.lower_bound = plan.memory.lower_bound;
  r.peak = live.peak();
  r.peak_index = live.peak_index();
  r.num_nodes = static_cast<int64_t>(f.nodes().size());
  if (r.peak_index < r.num_nodes) {
    const ir::Node& n = *f.nodes()[r.peak_index];
    r.peak_node = absl::StrCat(n.op(), n.num_outputs() ? absl::StrCat(" %", n.output(0)->name()) : "",
                               " (", std::string(passes::PhaseName(live.phases()[r.peak_index])), ")");
  } else {
    r.peak_node = "end of step";
  }
  r.forward_peak = live.PhasePeak(passes::Phase::kForward);
  r.backward_peak = live.PhasePeak(passes::Phase::kBackward);
  r.optimizer_peak = live.PhasePeak(passes::Phase::kOptimizer);
  for (int i : live.LiveAt(r.peak_index)) {
    if (static_cast<int>(r.top.size()) >= top) break;
    const passes::LiveBuffer& b = live.buffers()[i];
    ReportBuffer rb;
    rb.name = b.name;
    rb.bytes = b.bytes;
    rb.first = b.first;
    rb.last = b.last;
    rb.category = std::string(passes::CategoryName(b.category));
    if (b.value != nullptr) {
      rb.op = b.value->producer()->op();
      rb.loc = b.value->producer()->loc();
      rb.type = b.value->type().ToString();
    } else {
      rb.op = "workspace";
    }
    r.top.push_back(rb);
  }
  for (const auto& [c, bytes] : live.BytesAtPeak()) r.totals[static_cast<int>(c)] = bytes;
  r.timeline.assign(live.live_bytes().size(), {});
  for (const passes::LiveBuffer& b : live.buffers()) {
    for (int32_t t = b.first; t <= b.last; ++t) r.timeline[t][static_cast<int>(b.category)] += b.bytes;
  }
  for (const auto& row : r.timeline) {
    r.activation_peak = std::max(r.activation_peak, row[static_cast<int>(Category::kActivation)]);
  }
  for (size_t i = 0; i < f.nodes().size(); ++i) {
    const ir::Node& n = *f.nodes()[i];
    double flops = passes::EstimateCost(n).flops;
    r.step_flops += flops;
    r.phase_of_node.emplace_back(passes::PhaseName(live.phases()[i]));
    if (passes::IsRecomputed(n)) {
      r.recomputed.push_back({n.output(0)->name(), n.op(), flops});
      r.recomputed_flops += flops;
    }
  }
  return r;
}

std::string MemoryReportText(const MemoryReport& r) {
  std::string s;
  double gap = r.lower_bound > 0 ? 100.0 * (r.arena_bytes - r.lower_bound) / r.lower_bound : 0;
  absl::StrAppend(&s, "memory plan of @", r.function, " (", r.num_nodes, " nodes)\n");
  absl::StrAppendFormat(&s, "  arena        %12s  (%lld bytes)\n", FormatBytes(r.arena_bytes),
                        static_cast<long long>(r.arena_bytes));
  absl::StrAppendFormat(&s, "  lower bound  %12s  (most bytes live at one point; arena is +%.1f%%)\n",
                        FormatBytes(r.lower_bound), gap);
  absl::StrAppendFormat(&s, "  peak         %12s  at node %d: %s\n", FormatBytes(r.peak),
                        r.peak_index, r.peak_node);
  absl::StrAppendFormat(&s, "  phase peaks  forward %s, backward %s, optimizer %s\n",
                        FormatBytes(r.forward_peak), FormatBytes(r.backward_peak),
                        FormatBytes(r.optimizer_peak));
  absl::StrAppendFormat(&s, "  activations  %12s  at most live at once\n",
                        FormatBytes(r.activation_peak));
  absl::StrAppend(&s, "\ntotals (params and optimizer state outside the arena; the rest live at the peak)\n");
  for (int c = 0; c < passes::kNumCategories; ++c) {
    absl::StrAppendFormat(&s, "  %-18s %12s\n",
                          std::string(passes::CategoryName(static_cast<Category>(c))),
                          FormatBytes(r.totals[c]));
  }
  absl::StrAppend(&s, "\nlargest buffers live at the peak\n");
  absl::StrAppendFormat(&s, "  %-44s %-18s %-22s %10s  %-12s %s\n", "value", "op", "type", "bytes",
                        "lifetime", "category");
  for (const ReportBuffer& b : r.top) {
    std::string name = b.name.size() > 44 ? "..." + b.name.substr(b.name.size() - 41) : b.name;
    absl::StrAppendFormat(&s, "  %-44s %-18s %-22s %10s  [%d, %d]%*s %s\n", name, b.op, b.type,
                          FormatBytes(b.bytes), b.first, b.last,
                          std::max(0, 8 - static_cast<int>(absl::StrCat(b.first, b.last).size())),
                          "", b.category);
  }
  absl::StrAppendFormat(&s, "\nrecomputed: %d values, %.3f GFLOP = %.1f%% of the step (%.3f GFLOP)\n",
                        static_cast<int>(r.recomputed.size()), r.recomputed_flops / 1e9,
                        r.step_flops > 0 ? 100.0 * r.recomputed_flops / r.step_flops : 0.0,
                        r.step_flops / 1e9);
  int shown = 0;
  for (const RecomputedValue& v : r.recomputed) {
    if (shown++ >= 20) {
      absl::StrAppend(&s, "  ... (", r.recomputed.size() - 20, " more)\n");
      break;
    }
    absl::StrAppendFormat(&s, "  %-50s %-18s %10.3f MFLOP\n", v.name, v.op, v.flops / 1e6);
  }
  return s;
}

std::string MemoryReportJson(const MemoryReport& r) {
  nlohmann::json j;
  j["function"] = r.function;
  j["arena_bytes"] = r.arena_bytes;
  j["lower_bound"] = r.lower_bound;
  j["peak"] = r.peak;
  j["peak_index"] = r.peak_index;
  j["peak_node"] = r.peak_node;
  j["phase_peaks"] = {{"forward", r.forward_peak},
                      {"backward", r.backward_peak},
                      {"optimizer", r.optimizer_peak}};
  j["activation_peak"] = r.activation_peak;
  nlohmann::json totals;
  for (int c = 0; c < passes::kNumCategories; ++c) {
    totals[std::string(passes::CategoryName(static_cast<Category>(c)))] = r.totals[c];
  }
  j["totals"] = totals;
  nlohmann::json top = nlohmann::json::array();
  for (const ReportBuffer& b : r.top) {
    top.push_back({{"name", b.name}, {"op", b.op}, {"loc", b.loc}, {"type", b.type},
                   {"bytes", b.bytes}, {"first", b.first}, {"last", b.last},
                   {"category", b.category}});
  }
  j["top_at_peak"] = top;
  nlohmann::json rec = nlohmann::json::array();
  for (const RecomputedValue& v : r.recomputed) {
    rec.push_back({{"name", v.name}, {"op", v.op}, {"flops", v.flops}});
  }
  j["recomputed"] = rec;
  j["recomputed_flops"] = r.recomputed_flops;
  j["step_flops"] = r.step_flops;
  nlohmann::json cats = nlohmann::json::array();
  for (int c = 0; c < passes::kNumCategories; ++c) {
    cats.push_back(std::string(passes::CategoryName(static_cast<Category>(c))));
  }
  j["timeline_categories"] = cats;
  nlohmann::json tl = nlohmann::json::array();
  for (const auto& row : r.timeline) tl.push_back(std::vector<int64_t>(row.begin(), row.end()));
  j["timeline"] = tl;
  j["phase_of_node"] = r.phase_of_node;
  return j.dump(1);
}

std::string MemoryTimelineSvg(const MemoryReport& r) {
  const double w = 1000, h = 420, left = 80, right = 190, top = 40, bottom = 50;
  const double pw = w - left - right, ph = h - top - bottom;
  const size_t n = r.timeline.size();
  int64_t ymax = 1;
  for (const auto& row : r.timeline) {
    int64_t t = 0;
    for (int64_t b : row) t += b;
    ymax = std::max(ymax, t);
  }
  ymax = std::max(ymax, r.arena_bytes);
  auto x = [&](double t) { return left + pw * t / std::max<double>(1, n - 1); };
  auto y = [&](double b) { return top + ph * (1 - b / static_cast<double>(ymax)); };
  std::string s = absl::StrFormat(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
      "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%%\" height=\"100%%\" "
      "fill=\"white\"/>\n<text x=\"%.0f\" y=\"22\" font-size=\"15\">memory of @%s over the "
      "schedule: arena %s, lower bound %s</text>\n",
      w, h, left, XmlEscape(r.function), FormatBytes(r.arena_bytes), FormatBytes(r.lower_bound));
  // Stacked areas: for each category, the polygon between the cumulative sums below and above.
  // Draw only the arena categories (params / state are outside the arena).
  std::vector<int64_t> base(n, 0);
  for (int c = static_cast<int>(Category::kActivation); c < passes::kNumCategories; ++c) {
    std::string upper, lower;
    for (size_t t = 0; t < n; ++t) {
      absl::StrAppendFormat(&upper, "%.1f,%.1f ", x(t), y(base[t] + r.timeline[t][c]));
    }
    for (size_t t = n; t-- > 0;) absl::StrAppendFormat(&lower, "%.1f,%.1f ", x(t), y(base[t]));
    for (size_t t = 0; t < n; ++t) base[t] += r.timeline[t][c];
    absl::StrAppendFormat(&s, "<polygon points=\"%s%s\" fill=\"%s\" fill-opacity=\"0.85\"><title>%s</title></polygon>\n",
                          upper, lower, kColors[c],
                          std::string(passes::CategoryName(static_cast<Category>(c))));
  }
  // Axes, arena line, peak marker, phase boundaries.
  absl::StrAppendFormat(&s, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>\n",
                        left, top + ph, left + pw, top + ph);
  absl::StrAppendFormat(&s, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>\n",
                        left, top, left, top + ph);
  for (int i = 0; i <= 4; ++i) {
    double b = ymax * i / 4.0;
    absl::StrAppendFormat(&s, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n",
                          left - 6, y(b) + 4, FormatBytes(static_cast<int64_t>(b)));
  }
  absl::StrAppendFormat(&s, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#c62828\" stroke-dasharray=\"6,4\"/>\n"
                        "<text x=\"%.1f\" y=\"%.1f\" fill=\"#c62828\">arena %s</text>\n",
                        left, y(r.arena_bytes), left + pw, y(r.arena_bytes), left + pw + 4,
                        y(r.arena_bytes) + 4, FormatBytes(r.arena_bytes));
  absl::StrAppendFormat(&s, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"5\" fill=\"#c62828\"/>\n"
                        "<text x=\"%.1f\" y=\"%.1f\" fill=\"#c62828\">peak %s at node %d</text>\n",
                        x(r.peak_index), y(r.peak), x(r.peak_index) + 8, y(r.peak) - 8,
                        FormatBytes(r.peak), r.peak_index);
  for (size_t t = 1; t < r.phase_of_node.size(); ++t) {
    if (r.phase_of_node[t] == r.phase_of_node[t - 1]) continue;
    absl::StrAppendFormat(&s, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#555\" stroke-dasharray=\"2,3\"/>\n"
                          "<text x=\"%.1f\" y=\"%.1f\" fill=\"#555\">%s</text>\n",
                          x(t), top, x(t), top + ph, x(t) + 3, top + ph + 16,
                          r.phase_of_node[t]);
  }
  absl::StrAppendFormat(&s, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">schedule (node index, 0..%d)</text>\n",
                        left + pw / 2, h - 10, static_cast<int>(n) - 1);
  for (int c = static_cast<int>(Category::kActivation), row = 0; c < passes::kNumCategories; ++c, ++row) {
    absl::StrAppendFormat(&s, "<rect x=\"%.1f\" y=\"%.1f\" width=\"12\" height=\"12\" fill=\"%s\"/>"
                          "<text x=\"%.1f\" y=\"%.1f\">%s</text>\n",
                          left + pw + 20, top + 40 + row * 20.0, kColors[c], left + pw + 38,
                          top + 50 + row * 20.0,
                          std::string(passes::CategoryName(static_cast<Category>(c))));
  }
  s += "</svg>\n";
  return s;
}

std::string MemoryDot(const ir::Function& f) {
  std::vector<passes::Phase> phase = passes::ClassifyPhases(f);
  std::map<const ir::Node*, passes::Phase> ph;
  for (size_t i = 0; i < f.nodes().size(); ++i) ph[f.nodes()[i].get()] = phase[i];
  auto uses = f.ComputeUses();
  std::string s = "digraph memory {\n  rankdir=TB;\n  node [shape=box, style=filled, fontsize=10];\n";
  std::map<const ir::Value*, std::string> id;
  for (const ir::Value* p : f.params()) {
    id[p] = absl::StrCat("p", id.size());
  }
  int k = 0;
  for (const auto& n : f.nodes()) {
    std::string nid = absl::StrCat("n", k++);
    for (const ir::Value* o : n->outputs()) id[o] = nid;
    bool saved = false;
    if (ph[n.get()] == passes::Phase::kForward) {
      for (const ir::Value* o : n->outputs()) {
        for (const auto& [u, idx] : uses[o]) saved |= ph[u] != passes::Phase::kForward;
      }
    }
    const char* color = "#e0e0e0";
    std::string what = std::string(passes::PhaseName(ph[n.get()]));
    if (passes::IsRecomputed(*n)) {
      color = "#a5d6a7";
      what = "recomputed";
    } else if (saved) {
      color = "#ffb74d";
      what = "saved for backward";
    } else if (ph[n.get()] == passes::Phase::kForward) {
      color = "#90caf9";
    } else if (ph[n.get()] == passes::Phase::kOptimizer) {
      color = "#ce93d8";
    }
    std::string label = n->op();
    if (n->num_outputs() > 0) {
      label = absl::StrCat("%", n->output(0)->name(), " = ", n->op(), "\\n",
                           n->output(0)->type().ToString(), "\\n", what);
    }
    absl::StrAppend(&s, "  ", nid, " [label=\"", label, "\", fillcolor=\"", color, "\"];\n");
    for (const ir::Value* in : n->inputs()) {
      if (in->producer() == nullptr) continue;  // params: omitted to keep the graph readable
      auto it = id.find(in);
      if (it != id.end()) absl::StrAppend(&s, "  ", it->second, " -> ", nid, ";\n");
    }
  }
  s += "}\n";
  return s;
}

std::string SweepTable(const std::vector<passes::SweepPoint>& sweep) {
  std::string s = absl::StrFormat("%14s %14s %14s %10s %12s %10s\n", "budget", "arena",
                                  "lower bound", "recompute", "added GFLOP", "% of step");
  for (const passes::SweepPoint& p : sweep) {
    const passes::RematResult& r = p.result;
    absl::StrAppendFormat(&s, "%14s %14s %14s %10d %12.3f %9.1f%%\n", FormatBytes(p.budget),
                          FormatBytes(r.arena_after), FormatBytes(r.peak_after),
                          r.recomputed_segments, r.added_flops / 1e9,
                          r.step_flops > 0 ? 100.0 * r.added_flops / r.step_flops : 0.0);
  }
  return s;
}

}  // namespace ptc::driver
