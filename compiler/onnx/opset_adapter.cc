#include "compiler/onnx/opset_adapter.h"

#include <algorithm>
#include <map>
#include <set>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/match.h"
#include "compiler/onnx/onnx_util.h"
#include "compiler/support/status.h"

namespace ptc::onnx_import {
namespace {

struct OpsetChange {
  enum Kind { kNew, kTypes, kChanged };
  const char* op;
  int version;
  Kind kind;
  const char* added_attrs;    // "name=default;...": i:N, f:X, s:TEXT, none (no default)
  const char* added_inputs;   // "name;..."
  const char* removed_attrs;  // "name;..."
  int inputs_before;          // inputs of the version before (appended inputs start there)

  // Reduce* of opset 18: the axes attribute became an input.
  bool AxesBecameAnInput() const {
    auto has = [](const char* list, absl::string_view name) {
      for (absl::string_view x : absl::StrSplit(list, ';')) {
        if (x == name) return true;
      }
      return false;
    };
    return has(removed_attrs, "axes") && has(added_inputs, "axes");
  }
};

#include "compiler/onnx/opset_changes.inc"

bool IsConvertedNewerOp(absl::string_view op) {
  const auto& ops = ConvertedNewerOps();
  return std::find(ops.begin(), ops.end(), op) != ops.end();
}

class Adapter {
 public:
  Adapter(int opset, absl::string_view source) : opset_(opset), source_(source) {}

  absl::Status Graph(onnx::GraphProto* g) {
    for (int i = 0; i < g->node_size(); ++i) {
      onnx::NodeProto* n = g->mutable_node(i);
      for (auto& a : *n->mutable_attribute()) {
        if (a.type() == onnx::AttributeProto::GRAPH) {
          PTC_RETURN_IF_ERROR(Graph(a.mutable_g()));
        }
        for (auto& sub : *a.mutable_graphs()) PTC_RETURN_IF_ERROR(Graph(&sub));
      }
      if (!n->domain().empty() && n->domain() != "ai.onnx") continue;
      PTC_RETURN_IF_ERROR(Node(n, i));
    }
    return absl::OkStatus();
  }

  bool used_newer_domain() const { return used_newer_domain_; }

 private:
  absl::Status NodeError(const onnx::NodeProto& n, int index, absl::string_view msg) const {
    std::string loc = n.name().empty() ? absl::StrCat(n.op_type(), "_", index) : n.name();
    return absl::UnimplementedError(absl::StrCat(source_, ": node '", loc, "' (", n.op_type(),
                                                 ", opset ", opset_, "): ", msg));
  }

  static onnx::AttributeProto* FindAttr(onnx::NodeProto* n, absl::string_view name) {
    for (auto& a : *n->mutable_attribute()) {
      if (a.name() == name) return &a;
    }
    return nullptr;
  }
  static void EraseAttr(onnx::NodeProto* n, absl::string_view name) {
    auto* attrs = n->mutable_attribute();
    for (int k = 0; k < attrs->size(); ++k) {
      if (attrs->Get(k).name() == name) {
        attrs->erase(attrs->begin() + k);
        return;
      }
    }
  }

  // Whether attribute `a` holds `def` ("i:N", "f:X", "s:TEXT"; "none": no default, so any
  // value is a change).
  static bool AtDefault(const onnx::AttributeProto& a, absl::string_view def) {
    if (absl::StartsWith(def, "i:")) {
      int64_t v;
      return a.type() == onnx::AttributeProto::INT && absl::SimpleAtoi(def.substr(2), &v) &&
             a.i() == v;
    }
    if (absl::StartsWith(def, "f:")) {
      double v;
      return a.type() == onnx::AttributeProto::FLOAT && absl::SimpleAtod(def.substr(2), &v) &&
             static_cast<float>(v) == a.f();
    }
    if (absl::StartsWith(def, "s:")) {
      return a.type() == onnx::AttributeProto::STRING && a.s() == def.substr(2);
    }
    return false;
  }

  absl::Status Node(onnx::NodeProto* n, int index) {
    const std::string op = n->op_type();
    std::vector<const OpsetChange*> changes;
    for (const auto& ch : kOpsetChanges) {
      if (op == ch.op && ch.version <= opset_) changes.push_back(&ch);
    }
    if (changes.empty()) return absl::OkStatus();
    if (changes.front()->kind == OpsetChange::kNew) {
      if (!IsConvertedNewerOp(op)) {
        return NodeError(*n, index, absl::StrCat(
            "operator ", op, " (new in opset ", changes.front()->version, ") is not supported; "
            "ptc converts ", absl::StrJoin(ConvertedNewerOps(), ", "), " of the operators added after "
            "opset 17. Export with an older opset (opset_version=17) if the exporter can "
            "write it without ", op));
      }
      n->set_domain(kNewerOnnxDomain);  // converted by the importer with opset_'s semantics
      used_newer_domain_ = true;
      return absl::OkStatus();
    }
    if (std::any_of(changes.begin(), changes.end(),
                    [](const OpsetChange* ch) { return ch->AxesBecameAnInput(); })) {
      Reduce(n);
      return absl::OkStatus();
    }
    if (op == "Split") {
      if (auto* a = FindAttr(n, "num_outputs")) {
        if (a->type() != onnx::AttributeProto::INT || a->i() != n->output_size()) {
          return NodeError(*n, index, absl::StrCat(
              "num_outputs ", a->i(), " differs from the node's ", n->output_size(),
              " outputs"));
        }
        EraseAttr(n, "num_outputs");  // opset 13's split without sizes: equal parts
      }
    }
    if (op == "Cast" || op == "CastLike") {
      // Both apply to float8 / float4 targets only, which ptc rejects by type.
      EraseAttr(n, "saturate");
      EraseAttr(n, "round_mode");
    }
    for (const OpsetChange* ch : changes) {
      if (ch->kind != OpsetChange::kChanged) continue;
      if (std::string(ch->added_attrs).empty() && std::string(ch->added_inputs).empty() &&
          std::string(ch->removed_attrs).empty()) {
        return NodeError(*n, index, absl::StrCat(
            "the semantics of ", op, " changed in opset ", ch->version, "; ptc reads its "
            "opset-17 form only (export with opset_version=17)"));
      }
      for (absl::string_view spec : absl::StrSplit(ch->added_attrs, ';', absl::SkipEmpty())) {
        std::pair<absl::string_view, absl::string_view> kv = absl::StrSplit(spec, '=');
        onnx::AttributeProto* a = FindAttr(n, kv.first);
        if (a == nullptr) continue;
        if (!AtDefault(*a, kv.second)) {
          return NodeError(*n, index, absl::StrCat(
              "attribute '", kv.first, "' (added in opset ", ch->version, ") is not supported "
              "unless left at its default"));
        }
        EraseAttr(n, kv.first);
      }
      // Inputs appended after opset 17 (Pad's axes, Attention's nonpad_kv_seqlen): the
      // optional inputs past the opset-17 form must be absent.
      std::vector<absl::string_view> added = absl::StrSplit(ch->added_inputs, ';',
                                                            absl::SkipEmpty());
      if (!added.empty()) {
        const int first_added = ch->inputs_before;
        for (int k = first_added; k < n->input_size(); ++k) {
          if (!n->input(k).empty()) {
            return NodeError(*n, index, absl::StrCat(
                "input ", k, " ('", added[std::min<size_t>(k - first_added, added.size() - 1)],
                "', added in opset ", ch->version, ") is not supported"));
          }
        }
        while (n->input_size() > first_added) n->mutable_input()->RemoveLast();
      }
    }
    return absl::OkStatus();
  }

  // Reduce* (18): noop_with_empty_axes without axes is Identity; with an axes input the node
  // is converted by the importer (the axes may be computed from constants there).
  void Reduce(onnx::NodeProto* n) {
    bool has_axes = n->input_size() > 1 && !n->input(1).empty();
    bool noop = false;
    if (auto* a = FindAttr(n, "noop_with_empty_axes")) noop = a->i() != 0;
    if (!has_axes && noop) {
      n->set_op_type("Identity");
      n->clear_attribute();
      while (n->input_size() > 1) n->mutable_input()->RemoveLast();
      return;
    }
    EraseAttr(n, "noop_with_empty_axes");
    if (has_axes) {
      n->set_domain(kNewerOnnxDomain);
      used_newer_domain_ = true;
    }
  }

  int opset_;
  std::string source_;
  bool used_newer_domain_ = false;
};

}  // namespace

int NewestAdaptableOpset() { return kNewestKnownOpset; }

const std::vector<std::string>& ConvertedNewerOps() {
  static const auto* ops = new std::vector<std::string>{
      "Attention", "Gelu", "RMSNormalization", "RotaryEmbedding", "Swish"};
  return *ops;
}

absl::Status AdaptToOpset17(onnx::ModelProto* model, int opset, absl::string_view source) {
  Adapter adapter(opset, source);
  PTC_RETURN_IF_ERROR(adapter.Graph(model->mutable_graph()));
  bool has_newer = false;
  for (auto& imp : *model->mutable_opset_import()) {
    if (imp.domain().empty() || imp.domain() == "ai.onnx") imp.set_version(kCheckerOpset);
    if (imp.domain() == kNewerOnnxDomain) has_newer = true;
  }
  if (adapter.used_newer_domain() && !has_newer) {
    auto* imp = model->add_opset_import();
    imp->set_domain(kNewerOnnxDomain);
    imp->set_version(opset);
  }
  return absl::OkStatus();
}

}  // namespace ptc::onnx_import
