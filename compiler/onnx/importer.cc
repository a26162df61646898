// ONNX -> IR import. See importer.h for the contract.
//
// Flow: parse (CodedInputStream, 2 GiB limit) -> opset check -> initializers (typed fields,
// raw_data, external data confined to the model's folder) -> a "check model" (the graph with
// symbolic dims bound, small initializers inline and large ones as typed graph inputs, so that
// neither the checker nor shape inference touches weight bytes) -> onnx::checker ->
// onnx shape inference (strict, with data propagation) -> nodes in topological order, each
// normalized to IR ops (ops.h) or folded to a constant when its inputs are known.
//
// Values are tracked per ONNX name as an Entry: a static type, a known constant (if any) and
// the IR value (created lazily for constants: a constant only becomes a `constant` node when a
// real node uses it, so Shape -> Gather -> Concat -> Reshape chains leave no trace but the
// reshape's attribute).
#include "compiler/onnx/importer.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>
#include <exception>
#include <functional>
#include <optional>
#include <queue>
#include <set>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "codegen/cpu/kernel.h"
#include "compiler/ir/ops.h"
#include "compiler/onnx/constant_ops.h"
#include "compiler/onnx/onnx_util.h"
#include "compiler/onnx/opset_adapter.h"
#include "compiler/support/status.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/unknown_field_set.h"
#include "google/protobuf/io/zero_copy_stream_impl.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "onnx/checker.h"
#include "onnx/defs/schema.h"
#include "onnx/shape_inference/implementation.h"

namespace ptc::onnx_import {
namespace {

constexpr int kMinOpset = 13;
// The checker's schemas end here; newer opsets are adapted to it first (opset_adapter.h).
constexpr int kMaxOpset = kCheckerOpset;
// Folded constants larger than this stay as nodes (they would bloat the weights).
constexpr int64_t kMaxFoldBytes = int64_t{64} << 20;
// Initializers up to this many elements are given to ONNX shape inference with their data
// (shape operands); larger ones are passed as typed inputs only.
constexpr int64_t kMaxInferenceInitializerElements = 4096;
// Marks initializers that the exporter wrote for IR constants (not weights).
constexpr char kConstantDocString[] = "ptc:constant";
constexpr char kPtcDomain[] = "ai.ptc";
constexpr char kDTypeAttrDoc[] = "ptc:dtype";

std::string Sanitize(absl::string_view name) {
  std::string out;
  out.reserve(name.size());
  for (char ch : name) {
    bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '.';
    out.push_back(ok ? ch : '_');
  }
  if (out.empty()) out = "v";
  return out;
}

std::string TypesToString(const std::vector<ir::TensorType>& types) {
  std::vector<std::string> parts;
  for (const auto& t : types) parts.push_back(t.ToString());
  return absl::StrCat("(", absl::StrJoin(parts, ", "), ")");
}

struct Entry {
  std::string name;  // ONNX name ("" for intermediates the importer made)
  ir::TensorType type;
  ir::Value* value = nullptr;
  std::optional<ir::Tensor> constant;
  bool foldable = false;  // the constant may feed folding (not a trainable weight)
  std::string loc;        // where a constant came from (loc of its constant node)
};
using EntryPtr = std::shared_ptr<Entry>;


class Importer;

// One ONNX node being converted: its attributes and inputs, and error formatting.
class NodeCtx {
 public:
  NodeCtx(Importer* imp, const onnx::NodeProto& node, std::string loc)
      : imp_(imp), node_(node), loc_(std::move(loc)) {}

  const onnx::NodeProto& node() const { return node_; }
  const std::string& loc() const { return loc_; }
  const std::string& op_type() const { return node_.op_type(); }
  absl::Status Error(absl::string_view msg) const;
  absl::Status Unimplemented(absl::string_view msg) const;

  const onnx::AttributeProto* FindAttr(absl::string_view name) const {
    for (const auto& a : node_.attribute()) {
      if (a.name() == name) return &a;
    }
    return nullptr;
  }
  absl::StatusOr<int64_t> AttrInt(absl::string_view name, std::optional<int64_t> def) const {
    const auto* a = FindAttr(name);
    if (a == nullptr) {
      if (def) return *def;
      return Error(absl::StrCat("missing required attribute '", name, "'"));
    }
    if (a->type() != onnx::AttributeProto::INT) return WrongType(name, "INT");
    return a->i();
  }
  absl::StatusOr<double> AttrFloat(absl::string_view name, std::optional<double> def) const {
    const auto* a = FindAttr(name);
    if (a == nullptr) {
      if (def) return *def;
      return Error(absl::StrCat("missing required attribute '", name, "'"));
    }
    if (a->type() != onnx::AttributeProto::FLOAT) return WrongType(name, "FLOAT");
    return static_cast<double>(a->f());
  }
  absl::StatusOr<std::string> AttrString(absl::string_view name,
                                         std::optional<std::string> def) const {
    const auto* a = FindAttr(name);
    if (a == nullptr) {
      if (def) return *def;
      return Error(absl::StrCat("missing required attribute '", name, "'"));
    }
    if (a->type() != onnx::AttributeProto::STRING) return WrongType(name, "STRING");
    return a->s();
  }
  absl::StatusOr<std::optional<std::vector<int64_t>>> AttrInts(absl::string_view name) const {
    const auto* a = FindAttr(name);
    if (a == nullptr) return std::optional<std::vector<int64_t>>();
    if (a->type() != onnx::AttributeProto::INTS) return WrongType(name, "INTS");
    return std::optional<std::vector<int64_t>>(
        std::vector<int64_t>(a->ints().begin(), a->ints().end()));
  }

  int num_inputs() const { return node_.input_size(); }
  int num_outputs() const { return node_.output_size(); }
  // nullptr when the optional input is absent.
  Entry* In(int i) const;
  absl::StatusOr<Entry*> Req(int i) const;
  // A constant input, for operands that become attributes.
  absl::StatusOr<ir::Tensor> ConstIn(int i, absl::string_view what) const;
  absl::StatusOr<std::vector<int64_t>> ConstInts(int i, absl::string_view what) const;
  // ONNX output names; "" for absent optional outputs.
  std::vector<std::string> OutNames(int n) const {
    std::vector<std::string> names;
    for (int i = 0; i < n; ++i) names.push_back(i < node_.output_size() ? node_.output(i) : "");
    return names;
  }
  // Number of outputs actually requested (up to the last non-empty name).
  int UsedOutputs() const {
    int n = 0;
    for (int i = 0; i < node_.output_size(); ++i) {
      if (!node_.output(i).empty()) n = i + 1;
    }
    return n;
  }

  absl::StatusOr<int64_t> NormAxis(int64_t axis, int64_t rank, absl::string_view what) const {
    if (axis < -rank || axis >= rank) {
      return Error(absl::StrCat(what, " ", axis, " is out of range for rank ", rank,
                                " (valid: [", -rank, ", ", rank - 1, "])"));
    }
    return axis < 0 ? axis + rank : axis;
  }

 private:
  absl::Status WrongType(absl::string_view name, absl::string_view want) const {
    return Error(absl::StrCat("attribute '", name, "' must be of type ", want));
  }
  Importer* imp_;
  const onnx::NodeProto& node_;
  std::string loc_;
};

struct TorchSignature;  // torch.export's graph signature (below)

class Importer {
 public:
  Importer(std::string base_dir, std::string source, const ImportOptions& options)
      : options_(options), source_(std::move(source)), external_(base_dir) {}

  absl::StatusOr<std::unique_ptr<ir::Module>> Run(google::protobuf::io::ZeroCopyInputStream* stream);

  // --- used by NodeCtx ---
  absl::Status NodeError(const NodeCtx& c, absl::string_view msg, absl::StatusCode code) const {
    return absl::Status(code, absl::StrCat(source_, ": node '", c.loc(), "' (", c.op_type(),
                                           ", opset ", opset_, "): ", msg));
  }
  Entry* Lookup(const std::string& name) {
    auto it = env_.find(name);
    return it == env_.end() ? nullptr : it->second.get();
  }

 private:
  absl::Status Error(absl::string_view msg) const {
    return absl::InvalidArgumentError(absl::StrCat(source_, ": ", msg));
  }
  absl::Status Parse(google::protobuf::io::ZeroCopyInputStream* stream);
  absl::Status CheckOpsets();
  absl::Status LoadInitializers();
  void RecoverTorchParameters(const TorchSignature& sig);
  absl::Status BindInputs();
  absl::Status BuildCheckModel();
  absl::Status CheckAndInfer();
  absl::Status CreateParams();
  absl::Status SortNodes();
  absl::Status ConvertNodes();
  absl::Status ConvertNode(const onnx::NodeProto& node, int index);
  absl::Status ConvertIf(const NodeCtx& c, const onnx::NodeProto& node, int index);
  absl::Status ConvertPtcNode(NodeCtx& c);
  // Operators added after opset 17 (opset_adapter.h's kNewerOnnxDomain).
  absl::Status ConvertNewerNode(NodeCtx& c);
  absl::Status ConvertRotaryEmbedding(NodeCtx& c);
  absl::Status ConvertAttention(NodeCtx& c);
  absl::Status SetResults();
  void RemoveUnusedParams();

  // Emits `op` (or folds it when all inputs are foldable constants) and binds the non-empty
  // names in `names` (one per output) in the environment.
  absl::StatusOr<std::vector<EntryPtr>> Emit(const NodeCtx& c, absl::string_view op,
                                             const std::vector<Entry*>& inputs,
                                             ir::AttrMap attrs,
                                             const std::vector<std::string>& names);
  absl::StatusOr<EntryPtr> Emit1(const NodeCtx& c, absl::string_view op,
                                 const std::vector<Entry*>& inputs, ir::AttrMap attrs,
                                 const std::string& name) {
    PTC_ASSIGN_OR_RETURN(auto outs, Emit(c, op, inputs, std::move(attrs), {name}));
    return outs[0];
  }
  absl::StatusOr<std::vector<ir::Tensor>> Fold(absl::string_view op,
                                               const std::vector<Entry*>& inputs,
                                               const ir::AttrMap& attrs,
                                               const std::vector<ir::TensorType>& types);
  EntryPtr BindConstant(const std::string& name, ir::Tensor t, const std::string& loc);
  // `name` becomes another name for the value of `src` (Identity and friends).
  void Alias(const std::string& name, const std::string& src) {
    if (!name.empty()) env_[name] = env_.at(src);
  }
  absl::StatusOr<ir::Value*> Materialize(Entry* e);
  absl::Status CrossCheck(const NodeCtx& c, const std::string& name, const ir::TensorType& t);
  std::string UniqueTensorName(const std::string& base);

  ImportOptions options_;
  std::string source_;
  ExternalDataReader external_;
  onnx::ModelProto model_;
  onnx::ModelProto check_model_;
  google::protobuf::RepeatedPtrField<onnx::TensorProto> init_protos_;
  std::vector<std::pair<std::string, ir::Tensor>> initializers_;  // in file order
  std::set<std::string> constant_initializers_;  // marked ptc:constant by the exporter
  std::map<std::string, std::string> transposed_params_;  // initializer -> param it transposes
  std::string folded_params_;  // why the file's parameters look folded into constants
  std::map<std::string, ir::TensorType> input_types_;  // graph inputs (not initializers)
  std::map<std::string, onnx::TypeProto> onnx_types_;  // ONNX-inferred types by name
  int opset_ = 0;
  std::vector<int> node_index_;  // file index of each node of check_model_ (after sorting)
  std::map<std::string, EntryPtr> env_;
  std::vector<EntryPtr> temps_;  // intermediates the importer made (chains)
  std::map<std::string, std::vector<EntryPtr>> sequences_;  // SplitToSequence outputs
  std::unique_ptr<ir::Module> module_;
  ir::Function* fn_ = nullptr;
};

absl::Status NodeCtx::Error(absl::string_view msg) const {
  return imp_->NodeError(*this, msg, absl::StatusCode::kInvalidArgument);
}
absl::Status NodeCtx::Unimplemented(absl::string_view msg) const {
  return imp_->NodeError(*this, msg, absl::StatusCode::kUnimplemented);
}

Entry* NodeCtx::In(int i) const {
  if (i >= node_.input_size() || node_.input(i).empty()) return nullptr;
  return imp_->Lookup(node_.input(i));
}

absl::StatusOr<Entry*> NodeCtx::Req(int i) const {
  if (i >= node_.input_size() || node_.input(i).empty()) {
    return Error(absl::StrCat("missing required input ", i));
  }
  Entry* e = imp_->Lookup(node_.input(i));
  if (e == nullptr) {
    return Error(absl::StrCat("input '", node_.input(i), "' is not defined before this node"));
  }
  return e;
}

absl::StatusOr<ir::Tensor> NodeCtx::ConstIn(int i, absl::string_view what) const {
  PTC_ASSIGN_OR_RETURN(Entry * e, Req(i));
  if (!e->constant) {
    return Unimplemented(absl::StrCat(
        "input '", what, "' ('", node_.input(i),
        "') is computed at run time; ptc needs it to be a constant (an initializer, a Constant "
        "node, or computable from static shapes). Re-export the model with fixed shapes or "
        "constant folding (torch.onnx.export(..., do_constant_folding=True)), and bind symbolic "
        "dims with --dim NAME=N"));
  }
  return *e->constant;
}

absl::StatusOr<std::vector<int64_t>> NodeCtx::ConstInts(int i, absl::string_view what) const {
  PTC_ASSIGN_OR_RETURN(ir::Tensor t, ConstIn(i, what));
  if (t.dtype() != ir::DType::kI64 && t.dtype() != ir::DType::kI32) {
    return Error(absl::StrCat("input '", what, "' must be int64 or int32, got ",
                              t.type().ToString()));
  }
  if (t.type().rank() > 1) {
    return Error(absl::StrCat("input '", what, "' must be 1-D, got ", t.type().ToString()));
  }
  std::vector<int64_t> v(static_cast<size_t>(t.num_elements()));
  for (int64_t k = 0; k < t.num_elements(); ++k) v[k] = t.GetInt(k);
  return v;
}

// ---------------------------------------------------------------------------------------------
// Parsing and model-level checks

absl::Status Importer::Parse(google::protobuf::io::ZeroCopyInputStream* stream) {
  google::protobuf::io::CodedInputStream coded(stream);
  coded.SetTotalBytesLimit(INT_MAX);
  if (!model_.ParseFromCodedStream(&coded) || !coded.ConsumedEntireMessage()) {
    return Error("not a valid ONNX model (protobuf parse failed; the file is truncated or "
                 "corrupt)");
  }
  if (!model_.has_graph()) return Error("the model has no graph");
  return absl::OkStatus();
}

// A Constant of an empty list (value_ints = [], as torch's dynamo exporter writes an empty
// shape for BLOOM's and Gemma 2's masks) becomes the same 1-D tensor of 0 elements as a `value`
// attribute: onnx 1.12's checker rejects a list attribute without entries. Subgraphs too.
static void EmptyListConstantsAsTensors(onnx::GraphProto* g) {
  for (auto& n : *g->mutable_node()) {
    for (auto& a : *n.mutable_attribute()) {
      if (a.type() == onnx::AttributeProto::GRAPH) EmptyListConstantsAsTensors(a.mutable_g());
    }
    if (n.op_type() != "Constant" || n.attribute_size() != 1) continue;
    onnx::AttributeProto* a = n.mutable_attribute(0);
    int elem = 0;
    if (a->name() == "value_ints" && a->ints_size() == 0) elem = onnx::TensorProto::INT64;
    if (a->name() == "value_floats" && a->floats_size() == 0) elem = onnx::TensorProto::FLOAT;
    if (elem == 0) continue;
    a->Clear();
    a->set_name("value");
    a->set_type(onnx::AttributeProto::TENSOR);
    a->mutable_t()->set_data_type(elem);
    a->mutable_t()->add_dims(0);
  }
}
absl::Status Importer::CheckOpsets() {
  opset_ = -1;
  for (const auto& imp : model_.opset_import()) {
    if (imp.domain().empty() || imp.domain() == "ai.onnx") {
      opset_ = static_cast<int>(std::clamp<int64_t>(imp.version(), INT_MIN, INT_MAX));
    }
  }
  if (opset_ < 0) {
    std::vector<std::string> domains;
    for (const auto& imp : model_.opset_import()) domains.push_back(imp.domain());
    return Error(absl::StrCat("the model has no opset_import for the default ONNX domain (it "
                              "imports: ", absl::StrJoin(domains, ", "),
                              "); ptc imports default-domain ops only"));
  }
  if (opset_ < kMinOpset) {
    // An older model is accepted only when none of its ops changed between its opset and
    // opset 13 (the same schema resolves at both), so opset-13 semantics apply unchanged.
    for (const auto& node : model_.graph().node()) {
      if (!node.domain().empty() && node.domain() != "ai.onnx") continue;
      const auto* old_schema =
          onnx::OpSchemaRegistry::Schema(node.op_type(), opset_, onnx::ONNX_DOMAIN);
      const auto* new_schema =
          onnx::OpSchemaRegistry::Schema(node.op_type(), kMinOpset, onnx::ONNX_DOMAIN);
      if (old_schema == nullptr || new_schema == nullptr ||
          old_schema->SinceVersion() != new_schema->SinceVersion()) {
        return Error(absl::StrCat(
            "opset ", opset_, " is older than ptc supports (", kMinOpset, "..", kMaxOpset,
            ") and op ", node.op_type(), " (node '", node.name(), "') changed since; convert "
            "the model first: python3 -c \"import onnx, onnx.version_converter as vc; "
            "onnx.save(vc.convert_version(onnx.load('in.onnx'), 17), 'out.onnx')\""));
      }
    }
  }
  if (opset_ > NewestAdaptableOpset()) {
    return Error(absl::StrCat("opset ", opset_, " is newer than ptc supports (", kMinOpset, "..",
                              NewestAdaptableOpset(), "); export with opset_version=",
                              NewestAdaptableOpset(), " or older"));
  }
  if (opset_ > kMaxOpset) PTC_RETURN_IF_ERROR(AdaptToOpset17(&model_, opset_, source_));
  EmptyListConstantsAsTensors(model_.mutable_graph());
  // The checker knows IR versions up to its own; newer ones (10: torch 2.x's exporter) add
  // only types and function features ptc rejects by name.
  if (model_.ir_version() > onnx::IR_VERSION) model_.set_ir_version(onnx::IR_VERSION);
  return absl::OkStatus();
}

// torch.onnx's dynamo exporter records torch.export's graph signature in the graph's
// metadata: one line per input, "name: PARAMETER target='fqn'", "name: BUFFER target='fqn'
// persistent=False", "name: CONSTANT_TENSOR target='fqn'", "name: USER_INPUT", with the
// initializers named after the targets. With a signature, the PARAMETERs are the model's
// weights; buffers, constant tensors and the initializers torch's ONNX optimizer makes
// (optimize=True: folded scalars, masks, weight transposes) are constants.
struct TorchSignature {
  bool present = false;
  std::set<std::string> parameters;
  std::set<std::string> buffers;  // BUFFER and CONSTANT_TENSOR targets
};

// The value of metadata_props entry `key` of `m`, a field the ONNX library of the build
// machines predates (GraphProto: 16, NodeProto: 9, since IR version 10), read from the unknown
// fields; nullopt when absent.
std::optional<std::string> NewerMetadataProp(const google::protobuf::Message& m, int field,
                                             absl::string_view key) {
  const google::protobuf::UnknownFieldSet& unknown = m.GetReflection()->GetUnknownFields(m);
  for (int i = 0; i < unknown.field_count(); ++i) {
    const google::protobuf::UnknownField& f = unknown.field(i);
    if (f.number() != field || f.type() != google::protobuf::UnknownField::TYPE_LENGTH_DELIMITED) {
      continue;
    }
    onnx::StringStringEntryProto prop;
    if (prop.ParseFromString(f.length_delimited()) && prop.key() == key) return prop.value();
  }
  return std::nullopt;
}
constexpr int kGraphMetadataPropsField = 16;
constexpr int kNodeMetadataPropsField = 9;

// torch.export's graph signature, from the graph's metadata (see TorchSignature).
TorchSignature ReadTorchSignature(const onnx::GraphProto& g) {
  TorchSignature sig;
  std::optional<std::string> value =
      NewerMetadataProp(g, kGraphMetadataPropsField,
                        "pkg.torch.export.ExportedProgram.graph_signature");
  if (value) {
    sig.present = true;
    for (absl::string_view line : absl::StrSplit(*value, '\n')) {
      const bool param = absl::StrContains(line, ": PARAMETER ");
      if (!param && !absl::StrContains(line, ": BUFFER ") &&
          !absl::StrContains(line, ": CONSTANT_TENSOR ")) {
        continue;
      }
      size_t at = line.find("target='");
      if (at == absl::string_view::npos) continue;
      absl::string_view rest = line.substr(at + 8);
      size_t end = rest.find('\'');
      if (end == absl::string_view::npos) continue;
      (param ? sig.parameters : sig.buffers).insert(std::string(rest.substr(0, end)));
    }
  }
  return sig;
}

// Whether every element of `t` has the same bits.
bool AllEqual(const ir::Tensor& t) {
  const size_t es = ir::DTypeSize(t.dtype());
  const auto* b = static_cast<const char*>(t.data());
  for (int64_t i = 1; i < t.num_elements(); ++i) {
    if (std::memcmp(b + i * es, b, es) != 0) return false;
  }
  return true;
}

// Whether `x` is the transpose of the 2-D `w`, bit for bit.
bool IsTransposeOf(const ir::Tensor& x, const ir::Tensor& w) {
  if (x.dtype() != w.dtype() || x.type().rank() != 2 || w.type().rank() != 2 ||
      x.shape()[0] != w.shape()[1] || x.shape()[1] != w.shape()[0]) {
    return false;
  }
  const size_t es = ir::DTypeSize(x.dtype());
  const int64_t rows = w.shape()[0], cols = w.shape()[1];
  const auto* xb = static_cast<const char*>(x.data());
  const auto* wb = static_cast<const char*>(w.data());
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t j = 0; j < cols; ++j) {
      if (std::memcmp(xb + (j * rows + i) * es, wb + (i * cols + j) * es, es) != 0) return false;
    }
  }
  return true;
}

// The module scopes torch.onnx records on a node (metadata "pkg.torch.onnx.name_scopes",
// "['', 'm', 'm.model', ..., 'm.model.layers.0.self_attn.q_proj', 'linear']").
std::vector<std::string> TorchNameScopes(const onnx::NodeProto& n) {
  std::vector<std::string> scopes;
  std::optional<std::string> value =
      NewerMetadataProp(n, kNodeMetadataPropsField, "pkg.torch.onnx.name_scopes");
  if (!value) return scopes;
  std::vector<absl::string_view> parts = absl::StrSplit(*value, '\'');
  for (size_t k = 1; k < parts.size(); k += 2) scopes.emplace_back(parts[k]);
  return scopes;
}

// torch's ONNX optimizer (optimize=True) folds w.T of an nn.Linear into a new initializer and
// drops w. Such a copy becomes transpose(parameter) again. The parameter is named by the
// module of the MatMul that reads the copy (its name scopes: "...q_proj" -> "...q_proj.weight"):
// one still in the file (a tied LM head) when the copy is its transpose, bit for bit; one the
// signature lists but the file lacks, with the copy's transpose as its value. Without a
// recorded module, a parameter the copy is the transpose of (not for a one-valued copy). The model then trains, tied
// weights tied, under its parameters' names. What stays unexplained (a missing parameter and
// weight-shaped constants) is recorded as "torch.folded_parameters": training refuses it.
void Importer::RecoverTorchParameters(const TorchSignature& sig) {
  std::map<std::string, const ir::Tensor*> params;
  for (const auto& [name, t] : initializers_) {
    if (sig.parameters.count(name)) params[name] = &t;
  }
  std::set<std::string> missing;
  for (const std::string& p : sig.parameters) {
    if (!params.count(p)) missing.insert(p);
  }
  // The module scope of the MatMul reading each initializer as its right operand.
  std::map<std::string, std::string> reader_scope;
  for (const auto& n : model_.graph().node()) {
    if (n.op_type() != "MatMul" || n.input_size() != 2) continue;
    std::vector<std::string> scopes = TorchNameScopes(n);
    if (scopes.size() >= 2) reader_scope[n.input(1)] = scopes[scopes.size() - 2];
  }
  std::vector<std::pair<std::string, ir::Tensor>> restored;
  std::vector<std::string> derived;
  for (const auto& [name, t] : initializers_) {
    if (!constant_initializers_.count(name) || !ir::IsFloat(t.dtype()) || t.type().rank() < 2 ||
        sig.buffers.count(name)) {
      continue;
    }
    bool explained = false;
    auto scope = reader_scope.find(name);
    const std::string scoped = scope != reader_scope.end() ? scope->second + ".weight" : "";
    if (auto p = params.find(scoped); p != params.end()) {
      // The reading module's own weight (a tied LM head named after it): by value.
      if (IsTransposeOf(t, *p->second)) {
        transposed_params_[name] = p->first;
        explained = true;
      }
    } else if (scoped.empty() && !AllEqual(t)) {
      // No module recorded: the parameter whose transpose it is, if one is (a tensor of one
      // repeated value, e.g. zeros, would match any of its shape: left unexplained).
      for (const auto& [pname, p] : params) {
        if (t.type().rank() == 2 && IsTransposeOf(t, *p)) {
          transposed_params_[name] = pname;
          explained = true;
          break;
        }
      }
    }
    if (!explained && t.type().rank() == 2 && missing.count(scoped)) {
      Entry copy;
      copy.type = t.type();
      copy.constant = t;
      absl::StatusOr<std::vector<ir::Tensor>> w =
          Fold("transpose", {&copy}, {{"perm", std::vector<int64_t>{1, 0}}},
               {ir::TensorType{t.dtype(), {t.shape()[1], t.shape()[0]}}});
      if (w.ok()) {
        restored.emplace_back(scoped, std::move((*w)[0]));
        transposed_params_[name] = scoped;
        missing.erase(scoped);
        explained = true;
      }
    }
    if (!explained) derived.push_back(absl::StrCat(name, " ", t.type().ToString()));
  }
  for (auto& r : restored) initializers_.push_back(std::move(r));
  // What is still missing is a tied alias (one initializer per tensor) unless weight-shaped
  // constants remain unexplained.
  if (!missing.empty() && !derived.empty()) {
    std::vector<std::string> m(missing.begin(), missing.end());
    folded_params_ = absl::StrCat(
        m.size(), " parameters of the signature are not in the file (",
        absl::StrJoin(m.begin(), m.begin() + std::min<size_t>(3, m.size()), ", "),
        m.size() > 3 ? ", ..." : "", ") and ", derived.size(), " weight-shaped constants are (",
        absl::StrJoin(derived.begin(), derived.begin() + std::min<size_t>(3, derived.size()), ", "),
        derived.size() > 3 ? ", ..." : "", ")");
  }
}

absl::Status Importer::LoadInitializers() {
  const auto& g = model_.graph();
  if (g.sparse_initializer_size() > 0) {
    return Error("sparse initializers are not supported; densify them before export");
  }
  init_protos_.Swap(model_.mutable_graph()->mutable_initializer());
  const TorchSignature sig = ReadTorchSignature(model_.graph());
  std::set<std::string> seen;
  for (const auto& proto : init_protos_) {
    if (proto.name().empty()) return Error("an initializer has no name");
    if (!seen.insert(proto.name()).second) {
      return Error(absl::StrCat("initializer '", proto.name(), "' is defined twice"));
    }
    auto t = TensorFromProto(proto, &external_);
    if (!t.ok()) {
      return absl::Status(t.status().code(), absl::StrCat(source_, ": ", t.status().message()));
    }
    if (proto.doc_string() == kConstantDocString ||
        (sig.present && !sig.parameters.count(proto.name()))) {
      constant_initializers_.insert(proto.name());
    }
    initializers_.emplace_back(proto.name(), *std::move(t));
  }
  if (sig.present) RecoverTorchParameters(sig);
  init_protos_.Clear();  // the data now lives in the tensors
  return absl::OkStatus();
}

absl::Status Importer::BindInputs() {
  std::set<std::string> init_names;
  for (const auto& [name, t] : initializers_) init_names.insert(name);
  for (const auto& [name, value] : options_.dims) {
    if (value < 0) {
      return Error(absl::StrCat("--dim ", name, "=", value, ": dims must be >= 0"));
    }
  }
  // A model made by `ptc model` records the longest sequence it was built for (its position
  // table or rotary angles): a longer --dim seq would otherwise fail deep in a node's shapes.
  if (auto it = options_.dims.find("seq"); it != options_.dims.end()) {
    for (const auto& prop : model_.metadata_props()) {
      if (prop.key() != "ptc.config") continue;
      for (absl::string_view field : absl::StrSplit(prop.value(), ' ')) {
        int64_t built = 0;
        if (absl::ConsumePrefix(&field, "seq=") && absl::SimpleAtoi(field, &built) &&
            it->second > built) {
          return Error(absl::StrCat(
              "--dim seq=", it->second, " is longer than the model was built for (", built,
              " positions, its ptc.config metadata says seq=", built, "); compile with --dim "
              "seq=", built, " or less, or rebuild the model with `ptc model ... --seq ",
              it->second, "`"));
        }
      }
    }
  }
  std::vector<std::string> unbound;
  std::set<std::string> unbound_names;
  for (const auto& vi : model_.graph().input()) {
    if (init_names.count(vi.name())) continue;
    if (!vi.type().has_tensor_type()) {
      return Error(absl::StrCat("graph input '", vi.name(),
                                "' is not a tensor; ptc imports tensor inputs only"));
    }
    const auto& tt = vi.type().tensor_type();
    auto dtype = DTypeFromOnnx(tt.elem_type());
    if (!dtype.ok()) {
      return Error(absl::StrCat("graph input '", vi.name(), "': ", dtype.status().message()));
    }
    if (!tt.has_shape()) {
      return Error(absl::StrCat("graph input '", vi.name(),
                                "' has no shape; ptc needs static shapes: export the model with "
                                "input shapes (named dims can be bound with --dim NAME=N)"));
    }
    ir::Shape shape;
    for (int i = 0; i < tt.shape().dim_size(); ++i) {
      const auto& d = tt.shape().dim(i);
      if (d.has_dim_value()) {
        shape.push_back(d.dim_value());
      } else if (d.has_dim_param() && !d.dim_param().empty()) {
        auto it = options_.dims.find(d.dim_param());
        if (it == options_.dims.end()) {
          if (unbound_names.insert(d.dim_param()).second) {
            unbound.push_back(absl::StrCat("'", d.dim_param(), "' (graph input '", vi.name(),
                                           "', dim ", i, ")"));
          }
          shape.push_back(0);
        } else {
          shape.push_back(it->second);
        }
      } else {
        return Error(absl::StrCat(
            "graph input '", vi.name(), "' dim ", i,
            " is unknown (neither a value nor a name); re-export the model with a fixed or "
            "named dimension"));
      }
    }
    if (unbound.empty()) {
      if (absl::Status s = CheckShape(shape, *dtype); !s.ok()) {
        return Error(absl::StrCat("graph input '", vi.name(), "': ", s.message()));
      }
    }
    input_types_[vi.name()] = ir::TensorType{*dtype, shape};
  }
  if (!unbound.empty()) {
    std::vector<std::string> flags;
    for (const auto& n : unbound_names) flags.push_back(absl::StrCat("--dim ", n, "=N"));
    return Error(absl::StrCat("unbound symbolic dim", unbound.size() > 1 ? "s " : " ",
                              absl::StrJoin(unbound, ", "),
                              "; ptc needs static shapes: bind ", unbound.size() > 1 ? "them" : "it",
                              " with ", absl::StrJoin(flags, " ")));
  }
  return absl::OkStatus();
}

absl::Status Importer::BuildCheckModel() {
  check_model_ = model_;  // the graph without initializers (swapped out): cheap
  auto* g = check_model_.mutable_graph();
  // Bind symbolic dims everywhere ONNX declares types.
  auto bind = [&](onnx::ValueInfoProto* vi) {
    if (!vi->type().has_tensor_type() || !vi->type().tensor_type().has_shape()) return;
    auto* shape = vi->mutable_type()->mutable_tensor_type()->mutable_shape();
    for (auto& d : *shape->mutable_dim()) {
      if (d.has_dim_param()) {
        auto it = options_.dims.find(d.dim_param());
        if (it != options_.dims.end()) d.set_dim_value(it->second);
      }
    }
  };
  for (auto& vi : *g->mutable_input()) bind(&vi);
  for (auto& vi : *g->mutable_output()) bind(&vi);
  for (auto& vi : *g->mutable_value_info()) bind(&vi);
  std::set<std::string> inputs;
  for (const auto& vi : g->input()) inputs.insert(vi.name());
  for (const auto& [name, t] : initializers_) {
    if (t.num_elements() <= kMaxInferenceInitializerElements) {
      TensorToProto(t, name, g->add_initializer());
    } else if (!inputs.count(name)) {
      auto* vi = g->add_input();
      vi->set_name(name);
      auto* tt = vi->mutable_type()->mutable_tensor_type();
      tt->set_elem_type(DTypeToOnnx(t.dtype()));
      auto* shape = tt->mutable_shape();
      for (int64_t d : t.shape()) shape->add_dim()->set_dim_value(d);
    }
  }
  return absl::OkStatus();
}

absl::Status Importer::CheckAndInfer() {
  if (options_.run_checker) {
    try {
      onnx::checker::check_model(check_model_);
    } catch (const std::exception& e) {
      return Error(absl::StrCat("onnx::checker rejected the model: ", e.what()));
    }
  }
  PTC_RETURN_IF_ERROR(SortNodes());
  try {
    onnx::ShapeInferenceOptions opts(/*check_type_val=*/true, /*strict_mode_val=*/1,
                                     /*data_prop_val=*/true);
    onnx::shape_inference::InferShapes(check_model_, onnx::OpSchemaRegistry::Instance(), opts);
  } catch (const std::exception& e) {
    return Error(absl::StrCat("ONNX shape inference failed: ", e.what()));
  }
  const auto& g = check_model_.graph();
  for (const auto& vi : g.value_info()) onnx_types_[vi.name()] = vi.type();
  for (const auto& vi : g.output()) onnx_types_[vi.name()] = vi.type();
  return absl::OkStatus();
}

std::string Importer::UniqueTensorName(const std::string& base) {
  std::string name = base;
  for (int i = 1; module_->tensors().count(name) || fn_->FindValue(name) != nullptr; ++i) {
    name = absl::StrCat(base, "_", i);
  }
  return name;
}

absl::Status Importer::CreateParams() {
  std::map<std::string, const ir::Tensor*> inits;
  for (const auto& [name, t] : initializers_) inits[name] = &t;
  std::set<std::string> input_names;
  // Graph inputs first (the function's interface), in order.
  for (const auto& vi : model_.graph().input()) {
    if (!input_names.insert(vi.name()).second) {
      return Error(absl::StrCat("graph input '", vi.name(), "' is listed twice"));
    }
    auto e = std::make_shared<Entry>();
    e->name = vi.name();
    auto it = inits.find(vi.name());
    if (it != inits.end()) {
      // An initializer that is also an input: an overridable default, so a weight (never
      // folded), but its value may still serve as an attribute operand.
      e->type = it->second->type();
      e->constant = *it->second;
      e->value = fn_->AddParam(vi.name(), e->type, {"param"});
      module_->tensors()[vi.name()] = *it->second;
    } else {
      e->type = input_types_.at(vi.name());
      e->value = fn_->AddParam(vi.name(), e->type);
      auto known = options_.input_values.find(vi.name());
      if (known != options_.input_values.end()) {
        if (known->second.type() != e->type) {
          return Error(absl::StrCat("the value given for graph input '", vi.name(), "' is ",
                                    known->second.type().ToString(), " but the input is ",
                                    e->type.ToString()));
        }
        e->constant = known->second;
        e->foldable = true;
      }
    }
    env_[vi.name()] = e;
  }
  for (const auto& [name, t] : initializers_) {
    if (input_names.count(name) || transposed_params_.count(name)) continue;
    auto e = std::make_shared<Entry>();
    e->name = name;
    e->type = t.type();
    e->constant = t;
    if (constant_initializers_.count(name)) {
      e->foldable = true;
      e->loc = name;
    } else {
      // Float initializers are weights (trainable: never folded away); integer and bool ones
      // are shape/index data and fold.
      e->foldable = !ir::IsFloat(t.dtype());
      e->value = fn_->AddParam(name, t.type(), {"param"});
      module_->tensors()[name] = t;
    }
    env_[name] = e;
  }
  for (const auto& [name, param] : transposed_params_) {
    Entry* p = env_.at(param).get();
    auto e = std::make_shared<Entry>();
    e->name = name;
    e->type = ir::TensorType{p->type.dtype, {p->type.shape[1], p->type.shape[0]}};
    e->value = fn_->AddNode("transpose", {p->value}, {e->type},
                            {{"perm", std::vector<int64_t>{1, 0}}}, name, {Sanitize(name)})
                   ->output();
    env_[name] = e;
  }
  if (!folded_params_.empty()) module_->metadata()["torch.folded_parameters"] = folded_params_;
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// Emission, folding, constants

absl::StatusOr<ir::Value*> Importer::Materialize(Entry* e) {
  if (e->value != nullptr) return e->value;
  PTC_CHECK(e->constant.has_value());
  const ir::Tensor& t = *e->constant;
  ir::AttrMap attrs;
  std::string base = Sanitize(e->name.empty() ? "const" : e->name);
  if (t.num_elements() <= options_.inline_constant_limit) {
    attrs["value"] = t;
  } else {
    std::string ref = UniqueTensorName(base);
    module_->tensors()[ref] = t;
    attrs["ref"] = ref;
  }
  ir::Node* n = fn_->AddNode("constant", {}, {t.type()}, std::move(attrs), e->loc, {base});
  e->value = n->output(0);
  return e->value;
}

EntryPtr Importer::BindConstant(const std::string& name, ir::Tensor t, const std::string& loc) {
  auto e = std::make_shared<Entry>();
  e->name = name;
  e->type = t.type();
  e->constant = std::move(t);
  e->foldable = true;
  e->loc = loc;
  if (name.empty()) {
    temps_.push_back(e);
  } else {
    env_[name] = e;
  }
  return e;
}

absl::Status Importer::CrossCheck(const NodeCtx& c, const std::string& name,
                                  const ir::TensorType& t) {
  auto it = onnx_types_.find(name);
  if (it == onnx_types_.end() || !it->second.has_tensor_type()) return absl::OkStatus();
  const auto& tt = it->second.tensor_type();
  bool mismatch = false;
  if (tt.elem_type() != 0) {
    auto d = DTypeFromOnnx(tt.elem_type());
    if (!d.ok() || *d != t.dtype) mismatch = true;
  }
  std::string onnx_shape = "?";
  if (tt.has_shape()) {
    std::vector<std::string> dims;
    if (tt.shape().dim_size() != t.rank()) mismatch = true;
    for (int i = 0; i < tt.shape().dim_size(); ++i) {
      const auto& d = tt.shape().dim(i);
      if (d.has_dim_value()) {
        dims.push_back(absl::StrCat(d.dim_value()));
        if (i < t.rank() && d.dim_value() != t.shape[i]) mismatch = true;
      } else {
        dims.push_back(d.has_dim_param() ? d.dim_param() : "?");
      }
    }
    onnx_shape = absl::StrCat("[", absl::StrJoin(dims, ","), "]");
  }
  if (mismatch) {
    return c.Error(absl::StrCat("output '", name, "': ptc infers ", t.ToString(),
                                " but ONNX shape inference says ",
                                OnnxDTypeName(tt.elem_type()), onnx_shape,
                                "; this is a ptc importer bug or an inconsistent model"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<ir::Tensor>> Importer::Fold(absl::string_view op,
                                                       const std::vector<Entry*>& inputs,
                                                       const ir::AttrMap& attrs,
                                                       const std::vector<ir::TensorType>& types) {
  ir::Function scratch("fold");
  std::vector<ir::Value*> params;
  std::vector<ir::Tensor> tensors;
  for (size_t i = 0; i < inputs.size(); ++i) {
    params.push_back(scratch.AddParam(absl::StrCat("x", i), inputs[i]->type));
    tensors.push_back(*inputs[i]->constant);
  }
  ir::Node* n = scratch.AddNode(std::string(op), params, types, attrs);
  PTC_ASSIGN_OR_RETURN(std::vector<ir::Tensor> outs, cpu::EvaluateNode(*n, tensors));
  if (outs.size() != types.size()) return absl::InternalError("fold: wrong output count");
  for (size_t i = 0; i < outs.size(); ++i) {
    if (outs[i].type() != types[i]) return absl::InternalError("fold: wrong output type");
  }
  return outs;
}

absl::StatusOr<std::vector<EntryPtr>> Importer::Emit(const NodeCtx& c, absl::string_view op,
                                                     const std::vector<Entry*>& inputs,
                                                     ir::AttrMap attrs,
                                                     const std::vector<std::string>& names) {
  int nout = static_cast<int>(names.size());
  std::vector<ir::TensorType> in_types;
  for (Entry* e : inputs) in_types.push_back(e->type);
  auto types_or = ir::InferTypes(std::string(op), in_types, attrs, nout);
  if (!types_or.ok()) {
    return c.Error(absl::StrCat("`", op, "` on inputs ", TypesToString(in_types), ": ",
                                types_or.status().message()));
  }
  std::vector<ir::TensorType> types = *std::move(types_or);
  if (static_cast<int>(types.size()) != nout) {
    return c.Error(absl::StrCat("`", op, "` produced ", types.size(), " output types, expected ",
                                nout));
  }
  for (int i = 0; i < nout; ++i) {
    if (!names[i].empty()) PTC_RETURN_IF_ERROR(CrossCheck(c, names[i], types[i]));
  }
  std::vector<EntryPtr> outs;
  bool fold = std::all_of(inputs.begin(), inputs.end(),
                          [](Entry* e) { return e->constant && e->foldable; });
  const ir::OpDef* def = ir::FindOp(std::string(op));
  if (def != nullptr && (!def->pure || !def->fold)) fold = false;
  int64_t bytes = 0;
  for (const auto& t : types) {
    int64_t b = t.byte_size();
    if (b < 0 || bytes > kMaxFoldBytes - b) {
      fold = false;
      break;
    }
    bytes += b;
  }
  if (fold) {
    auto folded = Fold(op, inputs, attrs, types);
    if (folded.ok()) {
      for (int i = 0; i < nout; ++i) outs.push_back(BindConstant(names[i], (*folded)[i], c.loc()));
      return outs;
    }
    // No kernel for this case: keep the node; it still runs at run time.
  }
  std::vector<ir::Value*> values;
  for (Entry* e : inputs) {
    PTC_ASSIGN_OR_RETURN(ir::Value * v, Materialize(e));
    values.push_back(v);
  }
  std::vector<std::string> ir_names;
  for (const auto& n : names) ir_names.push_back(n.empty() ? Sanitize(c.loc()) : Sanitize(n));
  ir::Node* node =
      fn_->AddNode(std::string(op), values, types, std::move(attrs), c.loc(), ir_names);
  for (int i = 0; i < nout; ++i) {
    auto e = std::make_shared<Entry>();
    e->name = names[i];
    e->type = types[i];
    e->value = node->output(i);
    if (names[i].empty()) {
      temps_.push_back(e);
    } else {
      env_[names[i]] = e;
    }
    outs.push_back(e);
  }
  return outs;
}

// ---------------------------------------------------------------------------------------------
// Nodes

namespace {

// The values a subgraph (an If branch) reads from the scopes around it: its nodes' inputs and
// its outputs that it does not define itself, nested subgraphs included.
void OuterInputs(const onnx::GraphProto& g, std::set<std::string>& out) {
  std::set<std::string> defined;
  for (const auto& vi : g.input()) defined.insert(vi.name());
  for (const auto& t : g.initializer()) defined.insert(t.name());
  for (const auto& n : g.node()) {
    for (const auto& o : n.output()) defined.insert(o);
  }
  std::set<std::string> used;
  for (const auto& n : g.node()) {
    for (const auto& in : n.input()) used.insert(in);
    for (const auto& a : n.attribute()) {
      if (a.has_g()) OuterInputs(a.g(), used);
      for (const auto& sg : a.graphs()) OuterInputs(sg, used);
    }
  }
  for (const auto& o : g.output()) used.insert(o.name());
  for (const std::string& u : used) {
    if (!u.empty() && !defined.count(u)) out.insert(u);
  }
}

}  // namespace

absl::Status Importer::SortNodes() {
  auto* g = check_model_.mutable_graph();
  int n = g->node_size();
  std::set<std::string> defined;
  for (const auto& vi : g->input()) defined.insert(vi.name());
  for (const auto& [name, t] : initializers_) defined.insert(name);
  // Kahn's algorithm, smallest index first: keeps the file's order where it is valid.
  std::map<std::string, int> producer;
  for (int i = 0; i < n; ++i) {
    for (const auto& out : g->node(i).output()) {
      if (out.empty()) continue;
      if (defined.count(out) || !producer.emplace(out, i).second) {
        return Error(absl::StrCat("value '", out, "' is defined more than once (node '",
                                  g->node(i).name(), "')"));
      }
    }
  }
  std::vector<int> pending(n, 0);
  std::vector<std::vector<int>> users(n);
  for (int i = 0; i < n; ++i) {
    std::set<int> deps;
    std::set<std::string> inputs(g->node(i).input().begin(), g->node(i).input().end());
    for (const auto& a : g->node(i).attribute()) {  // an If branch's reads of this graph
      if (a.has_g()) OuterInputs(a.g(), inputs);
      for (const auto& sg : a.graphs()) OuterInputs(sg, inputs);
    }
    for (const auto& in : inputs) {
      if (in.empty() || defined.count(in)) continue;
      auto it = producer.find(in);
      if (it == producer.end()) {
        return Error(absl::StrCat("node '", g->node(i).name(), "' (", g->node(i).op_type(),
                                  ") uses undefined value '", in, "'"));
      }
      deps.insert(it->second);
    }
    pending[i] = static_cast<int>(deps.size());
    for (int d : deps) users[d].push_back(i);
  }
  std::priority_queue<int, std::vector<int>, std::greater<int>> ready;
  for (int i = 0; i < n; ++i) {
    if (pending[i] == 0) ready.push(i);
  }
  node_index_.clear();
  while (!ready.empty()) {
    int i = ready.top();
    ready.pop();
    node_index_.push_back(i);
    for (int u : users[i]) {
      if (--pending[u] == 0) ready.push(u);
    }
  }
  if (static_cast<int>(node_index_.size()) != n) return Error("the graph has a cycle");
  google::protobuf::RepeatedPtrField<onnx::NodeProto> sorted;
  for (int i : node_index_) *sorted.Add() = g->node(i);
  g->mutable_node()->Swap(&sorted);
  return absl::OkStatus();
}

absl::Status Importer::ConvertNodes() {
  const auto& g = check_model_.graph();
  for (int i = 0; i < g.node_size(); ++i) {
    PTC_RETURN_IF_ERROR(ConvertNode(g.node(i), node_index_[i]));
  }
  return absl::OkStatus();
}

namespace {

const std::map<std::string, std::string, std::less<>>& UnaryOps() {
  static const auto* m = new std::map<std::string, std::string, std::less<>>{
      {"Neg", "neg"},         {"Abs", "abs"},     {"Sqrt", "sqrt"},
      {"Reciprocal", "reciprocal"}, {"Exp", "exp"}, {"Log", "log"},
      {"Erf", "erf"},         {"Tanh", "tanh"},   {"Sigmoid", "sigmoid"},
      {"Relu", "relu"},       {"Floor", "floor"}, {"Ceil", "ceil"},
      {"Cos", "cos"},         {"Sin", "sin"},     {"Not", "not"}};
  return *m;
}

const std::map<std::string, std::string, std::less<>>& BinaryOps() {
  static const auto* m = new std::map<std::string, std::string, std::less<>>{
      {"Add", "add"},         {"Sub", "sub"},
      {"Mul", "mul"},         {"Div", "div"},
      {"Equal", "equal"},     {"Less", "less"},
      {"Greater", "greater"}, {"LessOrEqual", "less_equal"},
      {"GreaterOrEqual", "greater_equal"},
      {"And", "and"},         {"Or", "or"},
      {"Xor", "xor"}};
  return *m;
}

const std::vector<std::string>& OtherOps() {
  static const auto* v = new std::vector<std::string>{
      "Pow", "Max", "Min", "Sum", "Where", "Identity", "Cast", "MatMul", "Gemm", "Softmax",
      "LogSoftmax", "LayerNormalization", "ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin",
      "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Expand", "Transpose", "Split", "Slice",
      "Concat", "Gather", "Trilu", "Constant", "ConstantOfShape", "Range", "Shape", "Size",
      "Dropout", "SoftmaxCrossEntropyLoss", "NegativeLogLikelihoodLoss", "If", "IsNaN",
      "CumSum", "GatherND", "Pad", "CastLike", "SplitToSequence", "SequenceAt", "Tile"};
  return *v;
}

// ONNX Slice clamping for one axis; returns normalized (start, end) per ops.h.
std::pair<int64_t, int64_t> ClampSlice(int64_t start, int64_t end, int64_t step, int64_t dim) {
  if (start < 0) start += dim;
  if (end < 0) end += dim;
  if (step > 0) {
    start = std::clamp<int64_t>(start, 0, dim);
    end = std::clamp<int64_t>(end, 0, dim);
    end = std::max(end, start);
  } else {
    if (dim == 0) return {-1, -1};
    start = std::clamp<int64_t>(start, 0, dim - 1);
    end = std::clamp<int64_t>(end, -1, dim - 1);
    end = std::min(end, start);
  }
  return {start, end};
}

}  // namespace

// If with a condition known at compile time (torch.onnx writes squeeze(x, d) of a dynamic dim
// as If(shape[d] == 1, Squeeze, Identity); such shape checks fold once --dim binds the dims):
// the taken branch's nodes are imported in place, reading the enclosing graph's values by
// name, and the If's outputs become the branch's outputs. A condition computed from data is
// control flow, which the IR does not have.
absl::Status Importer::ConvertIf(const NodeCtx& c, const onnx::NodeProto& node, int index) {
  PTC_ASSIGN_OR_RETURN(Entry * cond, c.Req(0));
  if (!cond->constant.has_value() || cond->constant->num_elements() != 1) {
    return c.Unimplemented(
        "If whose condition is computed from the data at run time (control flow) is not "
        "supported; ptc takes the branch when the condition is known at compile time: bind the "
        "model's symbolic dims with --dim NAME=N so that shape checks fold");
  }
  const bool taken = cond->constant->GetDouble(0) != 0;
  const std::string branch_name = taken ? "then_branch" : "else_branch";
  const onnx::GraphProto* branch = nullptr;
  for (const auto& a : node.attribute()) {
    if (a.name() == branch_name && a.type() == onnx::AttributeProto::GRAPH) branch = &a.g();
  }
  if (branch == nullptr) return c.Error(absl::StrCat("has no ", branch_name, " graph"));
  if (branch->initializer_size() > 0 || branch->sparse_initializer_size() > 0) {
    return c.Unimplemented(absl::StrCat("the ", branch_name, " has initializers of its own; ptc "
                                        "imports If branches made of nodes only"));
  }
  if (branch->output_size() != node.output_size()) {
    return c.Error(absl::StrCat("the ", branch_name, " has ", branch->output_size(),
                                " outputs, the node ", node.output_size()));
  }
  for (const auto& sub : branch->node()) PTC_RETURN_IF_ERROR(ConvertNode(sub, index));
  for (int i = 0; i < node.output_size(); ++i) {
    const std::string& name = branch->output(i).name();
    if (Lookup(name) == nullptr) {
      return c.Error(absl::StrCat("the ", branch_name, "'s output '", name, "' is not defined"));
    }
    Alias(node.output(i), name);
  }
  return absl::OkStatus();
}

absl::Status Importer::ConvertNode(const onnx::NodeProto& node, int index) {
  std::string loc = node.name().empty() ? absl::StrCat(node.op_type(), "_", index) : node.name();
  NodeCtx c(this, node, loc);
  const std::string& op = node.op_type();
  const std::string& domain = node.domain();
  if (domain == kPtcDomain) return ConvertPtcNode(c);
  // Reduce* of opset 18+ (axes an input) go on below.
  const bool newer = domain == kNewerOnnxDomain;
  if (newer && !absl::StartsWith(op, "Reduce")) return ConvertNewerNode(c);
  if (!domain.empty() && domain != "ai.onnx" && !newer) {
    return c.Unimplemented(absl::StrCat("domain '", domain, "' is not supported in ", source_,
                                        "; ptc imports the default ONNX domain (opsets ",
                                        kMinOpset, "..", NewestAdaptableOpset(), ") only"));
  }
  if (op == "If") return ConvertIf(c, node, index);
  for (const auto& a : node.attribute()) {
    if (a.type() == onnx::AttributeProto::GRAPH || a.type() == onnx::AttributeProto::GRAPHS) {
      return c.Unimplemented(absl::StrCat("subgraph attributes (control flow) are not supported "
                                          "in ", source_));
    }
  }
  auto out0 = [&]() -> std::string { return node.output_size() > 0 ? node.output(0) : ""; };
  for (int i = 0; i < node.input_size(); ++i) {
    if (!node.input(i).empty() && Lookup(node.input(i)) == nullptr &&
        !sequences_.count(node.input(i))) {
      return c.Error(absl::StrCat("input '", node.input(i), "' is not defined before this node"));
    }
  }

  if (auto it = UnaryOps().find(op); it != UnaryOps().end()) {
    PTC_ASSIGN_OR_RETURN(Entry * x, c.Req(0));
    return Emit1(c, it->second, {x}, {}, out0()).status();
  }
  if (auto it = BinaryOps().find(op); it != BinaryOps().end()) {
    PTC_ASSIGN_OR_RETURN(Entry * a, c.Req(0));
    PTC_ASSIGN_OR_RETURN(Entry * b, c.Req(1));
    return Emit1(c, it->second, {a, b}, {}, out0()).status();
  }
  if (op == "Pow") {
    PTC_ASSIGN_OR_RETURN(Entry * a, c.Req(0));
    PTC_ASSIGN_OR_RETURN(Entry * b, c.Req(1));
    if (b->type.dtype != a->type.dtype) {
      // ONNX allows a different exponent type; the IR's pow takes one dtype.
      PTC_ASSIGN_OR_RETURN(EntryPtr cast, Emit1(c, "cast", {b}, {{"to", a->type.dtype}}, ""));
      return Emit1(c, "pow", {a, cast.get()}, {}, out0()).status();
    }
    return Emit1(c, "pow", {a, b}, {}, out0()).status();
  }
  if (op == "Max" || op == "Min" || op == "Sum") {
    if (node.input_size() < 1) return c.Error("needs at least one input");
    std::string ir_op = op == "Max" ? "max" : op == "Min" ? "min" : "add";
    PTC_ASSIGN_OR_RETURN(Entry * acc, c.Req(0));
    if (node.input_size() == 1) {
      Alias(out0(), node.input(0));
      return absl::OkStatus();
    }
    for (int i = 1; i < node.input_size(); ++i) {
      PTC_ASSIGN_OR_RETURN(Entry * b, c.Req(i));
      std::string name = i + 1 == node.input_size() ? out0() : "";
      PTC_ASSIGN_OR_RETURN(EntryPtr r, Emit1(c, ir_op, {acc, b}, {}, name));
      acc = r.get();
    }
    return absl::OkStatus();
  }
  if (op == "CastLike") {
    PTC_ASSIGN_OR_RETURN(Entry * x, c.Req(0));
    PTC_ASSIGN_OR_RETURN(Entry * like, c.Req(1));
    return Emit1(c, "cast", {x}, {{"to", like->type.dtype}}, out0()).status();
  }
  // Sequences (torch.split in torch.onnx's dynamo export without its optimizer): a split whose
  // parts SequenceAt picks by constant position.
  if (op == "SplitToSequence") {
    PTC_ASSIGN_OR_RETURN(Entry * x, c.Req(0));
    PTC_ASSIGN_OR_RETURN(int64_t axis, c.AttrInt("axis", 0));
    PTC_ASSIGN_OR_RETURN(axis, c.NormAxis(axis, x->type.rank(), "axis"));
    PTC_ASSIGN_OR_RETURN(int64_t keepdims, c.AttrInt("keepdims", 1));
    const int64_t dim = x->type.shape[axis];
    std::vector<int64_t> sizes;
    bool squeeze = false;
    if (c.In(1) != nullptr) {
      PTC_ASSIGN_OR_RETURN(ir::Tensor split, c.ConstIn(1, "split"));
      if (split.type().rank() == 0) {
        int64_t chunk = split.GetInt(0);
        if (chunk < 1) return c.Error(absl::StrCat("split ", chunk, " must be positive"));
        for (int64_t at = 0; at < dim; at += chunk) sizes.push_back(std::min(chunk, dim - at));
      } else {
        PTC_ASSIGN_OR_RETURN(sizes, c.ConstInts(1, "split"));
      }
    } else {
      sizes.assign(dim, 1);
      squeeze = keepdims == 0;
    }
    if (sizes.empty()) return c.Error("splits into no parts");
    PTC_ASSIGN_OR_RETURN(auto parts, Emit(c, "split", {x}, {{"axis", axis}, {"sizes", sizes}},
                                          std::vector<std::string>(sizes.size())));
    if (squeeze) {
      ir::Shape shape = x->type.shape;
      shape.erase(shape.begin() + axis);
      for (auto& part : parts) {
        PTC_ASSIGN_OR_RETURN(part, Emit1(c, "reshape", {part.get()}, {{"shape", shape}}, ""));
      }
    }
    sequences_[out0()] = std::move(parts);
    return absl::OkStatus();
  }
  if (op == "SequenceAt") {
    auto it = sequences_.find(node.input(0));
    if (it == sequences_.end()) {
      return c.Unimplemented(absl::StrCat("sequence '", node.input(0), "' is not a "
                                          "SplitToSequence output (the only sequences ptc reads)"));
    }
    PTC_ASSIGN_OR_RETURN(std::vector<int64_t> pos, c.ConstInts(1, "position"));
    const int64_t n = static_cast<int64_t>(it->second.size());
    if (pos.size() != 1 || pos[0] < -n || pos[0] >= n) {
      return c.Error(absl::StrCat("position must be one index in [", -n, ", ", n - 1, "]"));
    }
    EntryPtr part = it->second[pos[0] < 0 ? pos[0] + n : pos[0]];
    PTC_RETURN_IF_ERROR(CrossCheck(c, out0(), part->type));
    env_[out0()] = part;
    return absl::OkStatus();
  }
  if (op == "IsNaN") {  // NaN is the only value not equal to itself
    PTC_ASSIGN_OR_RETURN(Entry * x, c.Req(0));
    PTC_ASSIGN_OR_RETURN(EntryPtr eq, Emit1(c, "equal", {x, x}, {}, ""));
    return Emit1(c, "not", {eq.get()}, {}, out0()).status();
  }
  if (op == "GatherND") {
    // Run-time data, constant indices (transformers' attention masks from an attention_mask
    // input): a Gather of the selected rows.
    PTC_ASSIGN_OR_RETURN(Entry * data, c.Req(0));
    PTC_ASSIGN_OR_RETURN(Entry * idx, c.Req(1));
    if (!(data->constant && data->foldable) && idx->constant && idx->foldable) {
      PTC_ASSIGN_OR_RETURN(int64_t batch_dims, c.AttrInt("batch_dims", 0));
      int64_t rows = 0;
      absl::StatusOr<ir::Tensor> lin =
          GatherNdRows(data->type.shape, *idx->constant, batch_dims, &rows);
      if (!lin.ok()) return c.Error(lin.status().message());
      const int64_t depth = idx->type.shape.back();
      ir::Shape flat = {rows};
      flat.insert(flat.end(), data->type.shape.begin() + batch_dims + depth,
                  data->type.shape.end());
      PTC_ASSIGN_OR_RETURN(EntryPtr r, Emit1(c, "reshape", {data}, {{"shape", flat}}, ""));
      EntryPtr li = BindConstant("", *std::move(lin), loc);
      return Emit1(c, "gather", {r.get(), li.get()}, {{"axis", int64_t{0}}}, out0()).status();
    }
  }
  if (op == "CumSum" || op == "GatherND") {
    std::vector<Entry*> ins;
    for (int i = 0; i < 2; ++i) {
      PTC_ASSIGN_OR_RETURN(Entry * e, c.Req(i));
      if (!e->constant || !e->foldable) {
        return c.Unimplemented(absl::StrCat(
            op, " of run-time ", op == "CumSum" ? "values" : "indices", " is not supported: "
            "ptc evaluates it at compile time (on constants: the positions and masks exporters "
            "derive from the sequence length fold once the dims are bound with --dim NAME=N)",
            op == "GatherND" ? " or gathers by constant indices" : "", "; input ", i, " ('",
            node.input(i), "') is computed at run time"));
      }
      ins.push_back(e);
    }
    absl::StatusOr<ir::Tensor> r;
    if (op == "CumSum") {
      PTC_ASSIGN_OR_RETURN(std::vector<int64_t> axis, c.ConstInts(1, "axis"));
      if (axis.size() != 1) return c.Error("axis must have one element");
      PTC_ASSIGN_OR_RETURN(int64_t a, c.NormAxis(axis[0], ins[0]->type.rank(), "axis"));
      PTC_ASSIGN_OR_RETURN(int64_t exclusive, c.AttrInt("exclusive", 0));
      PTC_ASSIGN_OR_RETURN(int64_t reverse, c.AttrInt("reverse", 0));
      r = EvalCumSum(*ins[0]->constant, a, exclusive != 0, reverse != 0);
    } else {
      PTC_ASSIGN_OR_RETURN(int64_t batch_dims, c.AttrInt("batch_dims", 0));
      r = EvalGatherNd(*ins[0]->constant, *ins[1]->constant, batch_dims);
    }
    if (!r.ok()) return c.Error(r.status().message());
    PTC_RETURN_IF_ERROR(CrossCheck(c, out0(), r->type()));
    BindConstant(out0(), *std::move(r), loc);
    return absl::OkStatus();
  }
  if (op == "Pad") {
    PTC_ASSIGN_OR_RETURN(Entry * x, c.Req(0));
    PTC_ASSIGN_OR_RETURN(std::vector<int64_t> pads, c.ConstInts(1, "pads"));
    PTC_ASSIGN_OR_RETURN(std::string mode, c.AttrString("mode", "constant"));
    if (mode != "constant") {
      return c.Unimplemented(absl::StrCat("mode \"", mode, "\" is not supported (constant only)"));
    }
    const int64_t r = x->type.rank();
    if (static_cast<int64_t>(pads.size()) != 2 * r) {
      return c.Error(absl::StrCat("pads has ", pads.size(), " entries; a rank-", r,
                                  " input needs ", 2 * r));
    }
    ir::Tensor value(x->type.dtype, {});  // zero
    if (c.In(2) != nullptr) {
      PTC_ASSIGN_OR_RETURN(ir::Tensor v, c.ConstIn(2, "constant_value"));
      if (v.num_elements() != 1 || v.dtype() != x->type.dtype) {
        return c.Error(absl::StrCat("constant_value must be one ",
                                    std::string(ir::DTypeName(x->type.dtype)),
                                    " value, got ", v.type().ToString()));
      }
      value = ir::Tensor::FromBytes(v.dtype(), {}, v.data(), v.nbytes());
    }
    // Negative pads crop (a slice), positive ones concatenate filled blocks, axis by axis.
    Entry* cur = x;
    EntryPtr keep;
    for (int64_t d = 0; d < r; ++d) {
      int64_t before = pads[d], after = pads[d + r];
      if (before == 0 && after == 0) continue;
      ir::Shape shape = cur->type.shape;
      if (before < 0 || after < 0) {
        std::vector<int64_t> starts(r, 0), ends(shape), steps(r, 1);
        starts[d] = std::max<int64_t>(0, -before);
        ends[d] = shape[d] - std::max<int64_t>(0, -after);
        if (ends[d] < starts[d]) return c.Error(absl::StrCat("pads crop all of dim ", d));
        PTC_ASSIGN_OR_RETURN(keep, Emit1(c, "slice", {cur},
                                         {{"starts", starts}, {"ends", ends}, {"steps", steps}},
                                         ""));
        cur = keep.get();
        shape = cur->type.shape;
      }
      std::vector<Entry*> parts;
      std::vector<EntryPtr> fills;
      for (int64_t n : {before, after}) {
        if (n <= 0) continue;
        ir::Shape fill_shape = shape;
        fill_shape[d] = n;
        EntryPtr scalar = BindConstant("", value, loc);
        PTC_ASSIGN_OR_RETURN(EntryPtr fill, Emit1(c, "expand", {scalar.get()},
                                                  {{"shape", fill_shape}}, ""));
        fills.push_back(fill);
      }
      size_t f = 0;
      if (before > 0) parts.push_back(fills[f++].get());
      parts.push_back(cur);
      if (after > 0) parts.push_back(fills[f++].get());
      if (parts.size() > 1) {
        PTC_ASSIGN_OR_RETURN(keep, Emit1(c, "concat", parts, {{"axis", d}}, ""));
        cur = keep.get();
      }
    }
    if (cur == x) {
      Alias(out0(), node.input(0));
      return absl::OkStatus();
    }
    PTC_RETURN_IF_ERROR(CrossCheck(c, out0(), cur->type));
    env_[out0()] = keep;
    return absl::OkStatus();
  }
  if (op == "Where") {
    PTC_ASSIGN_OR_RETURN(Entry * cond, c.Req(0));
    PTC_ASSIGN_OR_RETURN(Entry * a, c.Req(1));
    PTC_ASSIGN_OR_RETURN(Entry * b, c.Req(2));
    return Emit1(c, "where", {cond, a, b}, {}, out0()).status();
  }
  if (op == "Identity") {
    PTC_ASSIGN_OR_RETURN(Entry * x, c.Req(0));
    PTC_RETURN_IF_ERROR(CrossCheck(c, out0(), x->type));
    Alias(out0(), node.input(0));
    return absl::OkStatus();
  }
  if (op == "Cast") {
    PTC_ASSIGN_OR_RETURN(Entry * x, c.Req(0));
    PTC_ASSIGN_OR_RETURN(int64_t to, c.AttrInt("to", std::nullopt));
    auto dtype = DTypeFromOnnx(static_cast<int32_t>(std::clamp<int64_t>(to, 0, 1000)));
    if (!dtype.ok()) return c.Unimplemented(dtype.status().message());
    return Emit1(c, "cast", {x}, {{"to", *dtype}}, out0()).status();
  }
  if (op == "MatMul") {
    PTC_ASSIGN_OR_RETURN(Entry * a, c.Req(0));
    PTC_ASSIGN_OR_RETURN(Entry * b, c.Req(1));
    return Emit1(c, "matmul", {a, b}, {}, out0()).status();
  }
  if (op == "Gemm") {
    PTC_ASSIGN_OR_RETURN(Entry * a, c.Req(0));
    PTC_ASSIGN_OR_RETURN(Entry * b, c.Req(1));
    std::vector<Entry*> ins = {a, b};
    if (Entry* cc = c.In(2)) ins.push_back(cc);
    PTC_ASSIGN_OR_RETURN(double alpha, c.AttrFloat("alpha", 1.0));
    PTC_ASSIGN_OR_RETURN(double beta, c.AttrFloat("beta", 1.0));
    PTC_ASSIGN_OR_RETURN(int64_t ta, c.AttrInt("transA", 0));
    PTC_ASSIGN_OR_RETURN(int64_t tb, c.AttrInt("transB", 0));
    if (ins.size() == 2 && alpha == 1.0 && ta == 0) {
      // A plain product (torch's mm, or addmm whose zero bias its ONNX optimizer dropped).
      Entry* w = b;
      EntryPtr t;
      if (tb != 0) {
        PTC_ASSIGN_OR_RETURN(t, Emit1(c, "transpose", {b}, {{"perm", std::vector<int64_t>{1, 0}}}, ""));
        w = t.get();
      }
      return Emit1(c, "matmul", {a, w}, {}, out0()).status();
    }
    ir::AttrMap attrs = {{"alpha", alpha}, {"beta", beta}, {"trans_a", int64_t{ta != 0}},
                         {"trans_b", int64_t{tb != 0}}};
    return Emit1(c, "gemm", ins, std::move(attrs), out0()).status();
  }
  if (op == "Softmax" || op == "LogSoftmax") {
    PTC_ASSIGN_OR_RETURN(Entry * x, c.Req(0));
    PTC_ASSIGN_OR_RETURN(int64_t axis, c.AttrInt("axis", -1));
    PTC_ASSIGN_OR_RETURN(axis, c.NormAxis(axis, x->type.rank(), "axis"));
    return Emit1(c, op == "Softmax" ? "softmax" : "log_softmax", {x}, {{"axis", axis}}, out0())
        .status();
  }
  if (op == "LayerNormalization") {
    PTC_ASSIGN_OR_RETURN(Entry * x, c.Req(0));
    PTC_ASSIGN_OR_RETURN(Entry * scale, c.Req(1));
    std::vector<Entry*> ins = {x, scale};
    if (Entry* b = c.In(2)) ins.push_back(b);
    PTC_ASSIGN_OR_RETURN(int64_t axis, c.AttrInt("axis", -1));
    PTC_ASSIGN_OR_RETURN(axis, c.NormAxis(axis, x->type.rank(), "axis"));
    PTC_ASSIGN_OR_RETURN(double eps, c.AttrFloat("epsilon", 1e-5));
    PTC_ASSIGN_OR_RETURN(int64_t stash, c.AttrInt("stash_type", 1));
    if (stash != onnx::TensorProto::FLOAT) {
      return c.Unimplemented(absl::StrCat("stash_type ", OnnxDTypeName(static_cast<int32_t>(
                                              std::clamp<int64_t>(stash, 0, 1000))),
                                          " is not supported (ptc computes statistics in f32)"));
    }
    int nout = std::max(1, c.UsedOutputs());
    return Emit(c, "layer_norm", ins, {{"axis", axis}, {"epsilon", eps}}, c.OutNames(nout))
        .status();
  }
  if (op == "ReduceSum" || op == "ReduceMean" || op == "ReduceMax" || op == "ReduceMin") {
    PTC_ASSIGN_OR_RETURN(Entry * x, c.Req(0));
    std::vector<int64_t> axes;
    bool axes_given = false;
    if (op == "ReduceSum" || newer) {  // opset 13+ (ReduceSum), 18+ (the others): an input
      if (c.In(1) != nullptr) {
        PTC_ASSIGN_OR_RETURN(axes, c.ConstInts(1, "axes"));
        axes_given = true;
      }
    } else {
      PTC_ASSIGN_OR_RETURN(auto a, c.AttrInts("axes"));
      if (a) {
        axes = *a;
        axes_given = true;
      }
    }
    PTC_ASSIGN_OR_RETURN(int64_t keepdims, c.AttrInt("keepdims", 1));
    PTC_ASSIGN_OR_RETURN(int64_t noop, c.AttrInt("noop_with_empty_axes", 0));
    if (axes.empty() && noop != 0) {
      PTC_RETURN_IF_ERROR(CrossCheck(c, out0(), x->type));
      Alias(out0(), node.input(0));
      return absl::OkStatus();
    }
    (void)axes_given;
    std::set<int64_t> norm;
    for (int64_t a : axes) {
      PTC_ASSIGN_OR_RETURN(int64_t n, c.NormAxis(a, x->type.rank(), "axis"));
      if (!norm.insert(n).second) return c.Error(absl::StrCat("axis ", a, " is repeated"));
    }
    std::string ir_op = op == "ReduceSum"    ? "reduce_sum"
                        : op == "ReduceMean" ? "reduce_mean"
                        : op == "ReduceMax"  ? "reduce_max"
                                             : "reduce_min";
    ir::AttrMap attrs = {{"axes", std::vector<int64_t>(norm.begin(), norm.end())},
                         {"keepdims", int64_t{keepdims != 0}}};
    return Emit1(c, ir_op, {x}, std::move(attrs), out0()).status();
  }
  if (op == "Reshape") {
    PTC_ASSIGN_OR_RETURN(Entry * x, c.Req(0));
    PTC_ASSIGN_OR_RETURN(std::vector<int64_t> spec, c.ConstInts(1, "shape"));
    PTC_ASSIGN_OR_RETURN(int64_t allowzero, c.AttrInt("allowzero", 0));
    const ir::Shape& in = x->type.shape;
    ir::Shape out;
    int infer = -1;
    bool has_zero = false;
    for (size_t i = 0; i < spec.size(); ++i) {
      int64_t s = spec[i];
      if (s == 0 && allowzero == 0) {
        if (i >= in.size()) {
          return c.Error(absl::StrCat("shape ", ir::ShapeToString(spec), " copies dim ", i,
                                      " (0) but the input ", x->type.ToString(), " has rank ",
                                      in.size()));
        }
        out.push_back(in[i]);
      } else if (s == -1) {
        if (infer >= 0) {
          return c.Error(absl::StrCat("shape ", ir::ShapeToString(spec), " has more than one -1"));
        }
        infer = static_cast<int>(i);
        out.push_back(1);
      } else if (s < 0) {
        return c.Error(absl::StrCat("shape ", ir::ShapeToString(spec), " has a negative dim"));
      } else {
        has_zero |= s == 0;
        out.push_back(s);
      }
    }
    if (has_zero && infer >= 0) {
      return c.Error("allowzero=1 with both 0 and -1 in the shape is invalid");
    }
    int64_t total = x->type.num_elements();
    int64_t known = ir::NumElements(out);
    if (known < 0) return c.Error(absl::StrCat("shape ", ir::ShapeToString(spec), " overflows"));
    if (infer >= 0) {
      if (known == 0 || total % known != 0) {
        return c.Error(absl::StrCat("cannot reshape ", x->type.ToString(), " to ",
                                    ir::ShapeToString(spec), ": ", total,
                                    " elements do not divide evenly"));
      }
      out[infer] = total / known;
    } else if (known != total) {
      return c.Error(absl::StrCat("cannot reshape ", x->type.ToString(), " (", total,
                                  " elements) to ", ir::ShapeToString(out), " (", known, ")"));
    }
    return Emit1(c, "reshape", {x}, {{"shape", out}}, out0()).status();
  }
  if (op == "Flatten") {
    PTC_ASSIGN_OR_RETURN(Entry * x, c.Req(0));
    PTC_ASSIGN_OR_RETURN(int64_t axis, c.AttrInt("axis", 1));
    int64_t r = x->type.rank();
    if (axis < -r || axis > r) {
      return c.Error(absl::StrCat("axis ", axis, " is out of range for rank ", r));
    }
    if (axis < 0) axis += r;
    const ir::Shape& s = x->type.shape;
    int64_t a = ir::NumElements(ir::Shape(s.begin(), s.begin() + axis));
    int64_t b = ir::NumElements(ir::Shape(s.begin() + axis, s.end()));
    return Emit1(c, "reshape", {x}, {{"shape", ir::Shape{a, b}}}, out0()).status();
  }
  if (op == "Squeeze") {
    PTC_ASSIGN_OR_RETURN(Entry * x, c.Req(0));
    const ir::Shape& s = x->type.shape;
    std::set<int64_t> drop;
    if (c.In(1) != nullptr) {
      PTC_ASSIGN_OR_RETURN(std::vector<int64_t> axes, c.ConstInts(1, "axes"));
      for (int64_t a : axes) {
        PTC_ASSIGN_OR_RETURN(int64_t n, c.NormAxis(a, x->type.rank(), "axis"));
        if (s[n] != 1) {
          return c.Error(absl::StrCat("cannot squeeze axis ", a, " of ", x->type.ToString(),
                                      ": its size is ", s[n], ", not 1"));
        }
        drop.insert(n);
      }
    } else {
      for (size_t i = 0; i < s.size(); ++i) {
        if (s[i] == 1) drop.insert(static_cast<int64_t>(i));
      }
    }
    ir::Shape out;
    for (size_t i = 0; i < s.size(); ++i) {
      if (!drop.count(static_cast<int64_t>(i))) out.push_back(s[i]);
    }
    return Emit1(c, "reshape", {x}, {{"shape", out}}, out0()).status();
  }
  if (op == "Unsqueeze") {
    PTC_ASSIGN_OR_RETURN(Entry * x, c.Req(0));
    PTC_ASSIGN_OR_RETURN(std::vector<int64_t> axes, c.ConstInts(1, "axes"));
    int64_t r = x->type.rank() + static_cast<int64_t>(axes.size());
    std::set<int64_t> add;
    for (int64_t a : axes) {
      PTC_ASSIGN_OR_RETURN(int64_t n, c.NormAxis(a, r, "axis"));
      if (!add.insert(n).second) return c.Error(absl::StrCat("axis ", a, " is repeated"));
    }
    ir::Shape out;
    size_t k = 0;
    for (int64_t i = 0; i < r; ++i) {
      if (add.count(i)) {
        out.push_back(1);
      } else {
        out.push_back(x->type.shape[k++]);
      }
    }
    return Emit1(c, "reshape", {x}, {{"shape", out}}, out0()).status();
  }
  if (op == "Expand") {
    PTC_ASSIGN_OR_RETURN(Entry * x, c.Req(0));
    PTC_ASSIGN_OR_RETURN(std::vector<int64_t> shape, c.ConstInts(1, "shape"));
    for (int64_t d : shape) {
      if (d < 0) return c.Error(absl::StrCat("shape ", ir::ShapeToString(shape), " is negative"));
    }
    auto out = ir::BroadcastShapes(x->type.shape, shape);
    if (!out.ok()) {
      return c.Error(absl::StrCat("cannot expand ", x->type.ToString(), " to ",
                                  ir::ShapeToString(shape), ": ", out.status().message()));
    }
    if (absl::Status s = CheckShape(*out, x->type.dtype); !s.ok()) return c.Error(s.message());
    return Emit1(c, "expand", {x}, {{"shape", *out}}, out0()).status();
  }
  if (op == "Tile") {
    // y[i] = x[i mod d] per axis, with constant repeats r: x viewed as [1, d0, 1, d1, ...],
    // expanded to [r0, d0, r1, d1, ...] and merged back to [r0 d0, r1 d1, ...] (torch's
    // repeat: BLOOM's ALiBi slopes).
    PTC_ASSIGN_OR_RETURN(Entry * x, c.Req(0));
    PTC_ASSIGN_OR_RETURN(std::vector<int64_t> reps, c.ConstInts(1, "repeats"));
    const ir::Shape& xs = x->type.shape;
    if (reps.size() != xs.size()) {
      return c.Error(absl::StrCat("repeats has ", reps.size(), " entries for ", x->type.ToString()));
    }
    ir::Shape view, big, out;
    for (size_t i = 0; i < xs.size(); ++i) {
      if (reps[i] < 0) return c.Error(absl::StrCat("repeats ", ir::ShapeToString(reps), " is negative"));
      view.insert(view.end(), {1, xs[i]});
      big.insert(big.end(), {reps[i], xs[i]});
      out.push_back(reps[i] * xs[i]);
    }
    if (absl::Status st = CheckShape(out, x->type.dtype); !st.ok()) return c.Error(st.message());
    PTC_ASSIGN_OR_RETURN(EntryPtr v, Emit1(c, "reshape", {x}, {{"shape", view}}, ""));
    PTC_ASSIGN_OR_RETURN(EntryPtr e, Emit1(c, "expand", {v.get()}, {{"shape", big}}, ""));
    return Emit1(c, "reshape", {e.get()}, {{"shape", out}}, out0()).status();
  }
  if (op == "Transpose") {
    PTC_ASSIGN_OR_RETURN(Entry * x, c.Req(0));
    int64_t r = x->type.rank();
    PTC_ASSIGN_OR_RETURN(auto perm_attr, c.AttrInts("perm"));
    std::vector<int64_t> perm;
    if (perm_attr) {
      perm = *perm_attr;
    } else {
      for (int64_t i = r - 1; i >= 0; --i) perm.push_back(i);
    }
    if (static_cast<int64_t>(perm.size()) != r) {
      return c.Error(absl::StrCat("perm has ", perm.size(), " entries for rank ", r));
    }
    std::set<int64_t> seen;
    for (int64_t& p : perm) {
      PTC_ASSIGN_OR_RETURN(p, c.NormAxis(p, r, "perm entry"));
      if (!seen.insert(p).second) return c.Error("perm is not a permutation");
    }
    return Emit1(c, "transpose", {x}, {{"perm", perm}}, out0()).status();
  }
  if (op == "Split") {
    PTC_ASSIGN_OR_RETURN(Entry * x, c.Req(0));
    PTC_ASSIGN_OR_RETURN(int64_t axis, c.AttrInt("axis", 0));
    PTC_ASSIGN_OR_RETURN(axis, c.NormAxis(axis, x->type.rank(), "axis"));
    int64_t dim = x->type.shape[axis];
    int n = c.num_outputs();
    if (n < 1) return c.Error("has no outputs");
    std::vector<int64_t> sizes;
    PTC_ASSIGN_OR_RETURN(auto split_attr, c.AttrInts("split"));  // opset < 13 form
    if (c.In(1) != nullptr) {
      PTC_ASSIGN_OR_RETURN(sizes, c.ConstInts(1, "split"));
    } else if (split_attr) {
      sizes = *split_attr;
    } else {
      if (dim % n != 0) {
        return c.Error(absl::StrCat("cannot split dim ", axis, " of ", x->type.ToString(),
                                    " into ", n, " equal parts"));
      }
      sizes.assign(n, dim / n);
    }
    if (static_cast<int>(sizes.size()) != n) {
      return c.Error(absl::StrCat("split has ", sizes.size(), " sizes but the node has ", n,
                                  " outputs"));
    }
    int64_t sum = 0;
    for (int64_t s : sizes) {
      if (s < 0 || s > dim) return c.Error(absl::StrCat("invalid split size ", s));
      sum += s;
    }
    if (sum != dim) {
      return c.Error(absl::StrCat("split sizes ", ir::ShapeToString(sizes), " sum to ", sum,
                                  ", not to dim ", axis, " of ", x->type.ToString()));
    }
    return Emit(c, "split", {x}, {{"axis", axis}, {"sizes", sizes}}, c.OutNames(n)).status();
  }
  if (op == "Slice") {
    PTC_ASSIGN_OR_RETURN(Entry * x, c.Req(0));
    PTC_ASSIGN_OR_RETURN(std::vector<int64_t> starts, c.ConstInts(1, "starts"));
    PTC_ASSIGN_OR_RETURN(std::vector<int64_t> ends, c.ConstInts(2, "ends"));
    int64_t r = x->type.rank();
    std::vector<int64_t> axes, steps;
    if (c.In(3) != nullptr) {
      PTC_ASSIGN_OR_RETURN(axes, c.ConstInts(3, "axes"));
    } else {
      for (size_t i = 0; i < starts.size(); ++i) axes.push_back(static_cast<int64_t>(i));
    }
    if (c.In(4) != nullptr) {
      PTC_ASSIGN_OR_RETURN(steps, c.ConstInts(4, "steps"));
    } else {
      steps.assign(starts.size(), 1);
    }
    if (ends.size() != starts.size() || axes.size() != starts.size() ||
        steps.size() != starts.size()) {
      return c.Error("starts, ends, axes and steps must have the same length");
    }
    std::vector<int64_t> fs(r, 0), fe(x->type.shape), fst(r, 1);
    std::set<int64_t> seen;
    for (size_t i = 0; i < starts.size(); ++i) {
      PTC_ASSIGN_OR_RETURN(int64_t a, c.NormAxis(axes[i], r, "axis"));
      if (!seen.insert(a).second) return c.Error(absl::StrCat("axis ", axes[i], " is repeated"));
      if (steps[i] == 0) return c.Error("step 0 is invalid");
      int64_t step = std::max<int64_t>(steps[i], -INT64_MAX);
      auto [s, e] = ClampSlice(starts[i], ends[i], step, x->type.shape[a]);
      fs[a] = s;
      fe[a] = e;
      fst[a] = step;
    }
    return Emit1(c, "slice", {x}, {{"starts", fs}, {"ends", fe}, {"steps", fst}}, out0())
        .status();
  }
  if (op == "Concat") {
    if (node.input_size() < 1) return c.Error("needs at least one input");
    std::vector<Entry*> ins;
    for (int i = 0; i < node.input_size(); ++i) {
      PTC_ASSIGN_OR_RETURN(Entry * e, c.Req(i));
      ins.push_back(e);
    }
    PTC_ASSIGN_OR_RETURN(int64_t axis, c.AttrInt("axis", std::nullopt));
    PTC_ASSIGN_OR_RETURN(axis, c.NormAxis(axis, ins[0]->type.rank(), "axis"));
    return Emit1(c, "concat", ins, {{"axis", axis}}, out0()).status();
  }
  if (op == "Gather") {
    PTC_ASSIGN_OR_RETURN(Entry * data, c.Req(0));
    PTC_ASSIGN_OR_RETURN(Entry * idx, c.Req(1));
    PTC_ASSIGN_OR_RETURN(int64_t axis, c.AttrInt("axis", 0));
    PTC_ASSIGN_OR_RETURN(axis, c.NormAxis(axis, data->type.rank(), "axis"));
    if (idx->constant) {
      int64_t dim = data->type.shape[axis];
      for (int64_t i = 0; i < idx->constant->num_elements(); ++i) {
        int64_t v = idx->constant->GetInt(i);
        if (v < -dim || v >= dim) {
          return c.Error(absl::StrCat("index ", v, " is out of range for dim ", axis, " of ",
                                      data->type.ToString()));
        }
      }
    }
    return Emit1(c, "gather", {data, idx}, {{"axis", axis}}, out0()).status();
  }
  if (op == "Trilu") {
    PTC_ASSIGN_OR_RETURN(Entry * x, c.Req(0));
    int64_t k = 0;
    if (c.In(1) != nullptr) {
      PTC_ASSIGN_OR_RETURN(std::vector<int64_t> kv, c.ConstInts(1, "k"));
      if (kv.size() != 1) return c.Error("k must have one element");
      k = kv[0];
    }
    PTC_ASSIGN_OR_RETURN(int64_t upper, c.AttrInt("upper", 1));
    return Emit1(c, "trilu", {x}, {{"upper", int64_t{upper != 0}}, {"k", k}}, out0()).status();
  }
  if (op == "Constant") {
    if (node.attribute_size() != 1) {
      return c.Error("must have exactly one value attribute");
    }
    const auto& a = node.attribute(0);
    ir::Tensor t;
    if (a.name() == "value" && a.type() == onnx::AttributeProto::TENSOR) {
      auto r = TensorFromProto(a.t(), nullptr);
      if (!r.ok()) return c.Error(r.status().message());
      t = *std::move(r);
    } else if (a.name() == "value_float" && a.type() == onnx::AttributeProto::FLOAT) {
      t = ir::Tensor::FromVector<float>(ir::DType::kF32, {}, {a.f()});
    } else if (a.name() == "value_floats" && a.type() == onnx::AttributeProto::FLOATS) {
      std::vector<float> v(a.floats().begin(), a.floats().end());
      t = ir::Tensor::FromVector<float>(ir::DType::kF32, {static_cast<int64_t>(v.size())}, v);
    } else if (a.name() == "value_int" && a.type() == onnx::AttributeProto::INT) {
      t = ir::Tensor::FromVector<int64_t>(ir::DType::kI64, {}, {a.i()});
    } else if (a.name() == "value_ints" && a.type() == onnx::AttributeProto::INTS) {
      std::vector<int64_t> v(a.ints().begin(), a.ints().end());
      t = ir::Tensor::FromVector<int64_t>(ir::DType::kI64, {static_cast<int64_t>(v.size())}, v);
    } else {
      return c.Unimplemented(absl::StrCat("Constant with attribute '", a.name(),
                                          "' is not supported (strings and sparse tensors)"));
    }
    PTC_RETURN_IF_ERROR(CrossCheck(c, out0(), t.type()));
    BindConstant(out0(), std::move(t), loc);
    return absl::OkStatus();
  }
  if (op == "ConstantOfShape") {
    PTC_ASSIGN_OR_RETURN(std::vector<int64_t> shape, c.ConstInts(0, "input"));
    ir::Tensor value = ir::Tensor::FromVector<float>(ir::DType::kF32, {}, {0.0f});
    if (const auto* a = c.FindAttr("value")) {
      if (a->type() != onnx::AttributeProto::TENSOR) return c.Error("value must be a tensor");
      auto r = TensorFromProto(a->t(), nullptr);
      if (!r.ok()) return c.Error(r.status().message());
      if (r->num_elements() != 1) return c.Error("value must have one element");
      value = ir::Tensor::FromBytes(r->dtype(), {}, r->data(), r->nbytes());
    }
    if (absl::Status s = CheckShape(shape, value.dtype()); !s.ok()) return c.Error(s.message());
    ir::TensorType type{value.dtype(), shape};
    PTC_RETURN_IF_ERROR(CrossCheck(c, out0(), type));
    if (type.byte_size() > kMaxFoldBytes) {
      // Too large to store: broadcast the scalar at run time.
      EntryPtr scalar = BindConstant("", value, loc);
      return Emit1(c, "expand", {scalar.get()}, {{"shape", shape}}, out0()).status();
    }
    ir::Tensor t(value.dtype(), shape);
    size_t es = ir::DTypeSize(value.dtype());
    char* dst = static_cast<char*>(t.mutable_data());
    for (int64_t i = 0; i < t.num_elements(); ++i) std::memcpy(dst + i * es, value.data(), es);
    BindConstant(out0(), std::move(t), loc);
    return absl::OkStatus();
  }
  if (op == "Range") {
    PTC_ASSIGN_OR_RETURN(ir::Tensor start, c.ConstIn(0, "start"));
    PTC_ASSIGN_OR_RETURN(ir::Tensor limit, c.ConstIn(1, "limit"));
    PTC_ASSIGN_OR_RETURN(ir::Tensor delta, c.ConstIn(2, "delta"));
    ir::DType dt = start.dtype();
    if (limit.dtype() != dt || delta.dtype() != dt || start.num_elements() != 1 ||
        limit.num_elements() != 1 || delta.num_elements() != 1) {
      return c.Error("start, limit and delta must be scalars of one type");
    }
    int64_t n = 0;
    if (ir::IsFloat(dt)) {
      double s = start.GetDouble(0), l = limit.GetDouble(0), d = delta.GetDouble(0);
      if (d == 0 || !std::isfinite(s) || !std::isfinite(l) || !std::isfinite(d)) {
        return c.Error("delta must be non-zero and all values finite");
      }
      double count = std::ceil((l - s) / d);
      if (count > 1e12) return c.Error("the range is too large");
      n = count > 0 ? static_cast<int64_t>(count) : 0;
    } else {
      int64_t s = start.GetInt(0), l = limit.GetInt(0), d = delta.GetInt(0);
      if (d == 0) return c.Error("delta must be non-zero");
      // In 128-bit to avoid overflow on hostile values.
      __int128 diff = static_cast<__int128>(l) - s;
      __int128 cnt = d > 0 ? (diff + d - 1) / d : (diff + d + 1) / d;
      if (cnt > (__int128{1} << 40)) return c.Error("the range is too large");
      n = cnt > 0 ? static_cast<int64_t>(cnt) : 0;
    }
    ir::TensorType type{dt, {n}};
    if (type.byte_size() > kMaxFoldBytes) return c.Error("the range is too large");
    PTC_RETURN_IF_ERROR(CrossCheck(c, out0(), type));
    ir::Tensor t(dt, {n});
    for (int64_t i = 0; i < n; ++i) {
      switch (dt) {
        case ir::DType::kF32:
          t.mutable_data_as<float>()[i] = static_cast<float>(start.GetDouble(0)) +
                                          static_cast<float>(i) *
                                              static_cast<float>(delta.GetDouble(0));
          break;
        case ir::DType::kF64:
          t.mutable_data_as<double>()[i] = start.GetDouble(0) + i * delta.GetDouble(0);
          break;
        case ir::DType::kI32:
          t.mutable_data_as<int32_t>()[i] =
              static_cast<int32_t>(start.GetInt(0) + i * delta.GetInt(0));
          break;
        case ir::DType::kI64:
          t.mutable_data_as<int64_t>()[i] = static_cast<int64_t>(
              static_cast<__int128>(start.GetInt(0)) + static_cast<__int128>(i) * delta.GetInt(0));
          break;
        default:
          return c.Unimplemented(absl::StrCat("Range of ", std::string(ir::DTypeName(dt))));
      }
    }
    BindConstant(out0(), std::move(t), loc);
    return absl::OkStatus();
  }
  if (op == "Shape" || op == "Size") {
    PTC_ASSIGN_OR_RETURN(Entry * x, c.Req(0));
    if (op == "Size") {
      ir::Tensor t = ir::Tensor::FromVector<int64_t>(ir::DType::kI64, {},
                                                     {x->type.num_elements()});
      PTC_RETURN_IF_ERROR(CrossCheck(c, out0(), t.type()));
      BindConstant(out0(), std::move(t), loc);
      return absl::OkStatus();
    }
    int64_t r = x->type.rank();
    PTC_ASSIGN_OR_RETURN(int64_t start, c.AttrInt("start", 0));
    PTC_ASSIGN_OR_RETURN(int64_t end, c.AttrInt("end", r));
    if (start < 0) start += r;
    if (end < 0) end += r;
    start = std::clamp<int64_t>(start, 0, r);
    end = std::clamp<int64_t>(end, 0, r);
    std::vector<int64_t> dims;
    for (int64_t i = start; i < end; ++i) dims.push_back(x->type.shape[i]);
    ir::Tensor t = ir::Tensor::FromVector<int64_t>(
        ir::DType::kI64, {static_cast<int64_t>(dims.size())}, dims);
    PTC_RETURN_IF_ERROR(CrossCheck(c, out0(), t.type()));
    BindConstant(out0(), std::move(t), loc);
    return absl::OkStatus();
  }
  if (op == "Dropout") {
    PTC_ASSIGN_OR_RETURN(Entry * x, c.Req(0));
    if (c.In(2) != nullptr) {
      Entry* tm = c.In(2);
      if (!tm->constant) {
        return c.Unimplemented(
            "training_mode is computed at run time; ptc needs it constant: true (a model "
            "exported in training mode) keeps the dropout, which training steps apply and "
            "inference plans drop; false or absent is the identity");
      }
      if (tm->constant->num_elements() != 1) return c.Error("training_mode must be a scalar");
      if (tm->constant->GetInt(0) != 0) {
        // Training mode: ptc's dropout (ratio from the `ratio` input, 0.5 when absent); the
        // training step gives it a seed and its counter, inference plans strip it.
        double ratio = 0.5;
        if (Entry* r = c.In(1)) {
          if (!r->constant || r->constant->num_elements() != 1) {
            return c.Unimplemented("ratio must be a constant scalar");
          }
          ratio = r->constant->GetDouble(0);
        }
        if (!(ratio >= 0.0 && ratio < 1.0)) {
          return c.Error(absl::StrCat("ratio ", ratio, " must be in [0, 1)"));
        }
        if (ratio > 0.0) {  // (ratio 0 is the identity below)
          std::vector<std::string> names = {node.output(0)};
          if (node.output_size() > 1 && !node.output(1).empty()) names.push_back(node.output(1));
          return Emit(c, "dropout", {x}, {{"ratio", ratio}}, names).status();
        }
      }
    }
    PTC_RETURN_IF_ERROR(CrossCheck(c, out0(), x->type));
    Alias(out0(), node.input(0));
    if (node.output_size() > 1 && !node.output(1).empty()) {
      // Inference: the mask is all true.
      EntryPtr one = BindConstant(
          "", ir::Tensor::FromVector<uint8_t>(ir::DType::kBool, {}, {uint8_t{1}}), loc);
      PTC_RETURN_IF_ERROR(
          Emit1(c, "expand", {one.get()}, {{"shape", x->type.shape}}, node.output(1)).status());
    }
    return absl::OkStatus();
  }
  if (op == "SoftmaxCrossEntropyLoss" || op == "NegativeLogLikelihoodLoss") {
    PTC_ASSIGN_OR_RETURN(Entry * scores, c.Req(0));
    PTC_ASSIGN_OR_RETURN(Entry * labels, c.Req(1));
    std::vector<Entry*> ins = {scores, labels};
    if (Entry* w = c.In(2)) ins.push_back(w);
    PTC_ASSIGN_OR_RETURN(std::string reduction, c.AttrString("reduction", "mean"));
    if (reduction != "mean" && reduction != "sum" && reduction != "none") {
      return c.Error(absl::StrCat("unknown reduction '", reduction, "'"));
    }
    ir::AttrMap attrs = {{"reduction", reduction}};
    if (c.FindAttr("ignore_index") != nullptr) {
      PTC_ASSIGN_OR_RETURN(int64_t ii, c.AttrInt("ignore_index", std::nullopt));
      attrs["ignore_index"] = ii;
    }
    bool sce = op == "SoftmaxCrossEntropyLoss";
    int nout = sce ? std::max(1, c.UsedOutputs()) : 1;
    return Emit(c, sce ? "softmax_ce_loss" : "nll_loss", ins, std::move(attrs), c.OutNames(nout))
        .status();
  }
  return c.Unimplemented(absl::StrCat("unsupported ONNX op ", op, " (opset ", opset_,
                                      ") in ", source_,
                                      "; see SupportedOnnxOps() / `ptc ops` for the list"));
}

// Nodes the exporter wrote in the "ai.ptc" domain: IR ops taken as they are.
absl::Status Importer::ConvertPtcNode(NodeCtx& c) {
  const auto& node = c.node();
  if (ir::FindOp(node.op_type()) == nullptr) {
    return c.Unimplemented(absl::StrCat("unknown ptc op '", node.op_type(), "' in domain ",
                                        kPtcDomain));
  }
  std::vector<Entry*> ins;
  for (int i = 0; i < node.input_size(); ++i) {
    PTC_ASSIGN_OR_RETURN(Entry * e, c.Req(i));
    ins.push_back(e);
  }
  ir::AttrMap attrs;
  for (const auto& a : node.attribute()) {
    switch (a.type()) {
      case onnx::AttributeProto::INT:
        if (a.doc_string() == kDTypeAttrDoc) {
          auto d = DTypeFromOnnx(static_cast<int32_t>(std::clamp<int64_t>(a.i(), 0, 1000)));
          if (!d.ok()) return c.Error(d.status().message());
          attrs[a.name()] = *d;
        } else {
          attrs[a.name()] = a.i();
        }
        break;
      case onnx::AttributeProto::FLOAT: attrs[a.name()] = static_cast<double>(a.f()); break;
      case onnx::AttributeProto::STRING: attrs[a.name()] = a.s(); break;
      case onnx::AttributeProto::INTS:
        attrs[a.name()] = std::vector<int64_t>(a.ints().begin(), a.ints().end());
        break;
      case onnx::AttributeProto::FLOATS:
        attrs[a.name()] = std::vector<double>(a.floats().begin(), a.floats().end());
        break;
      case onnx::AttributeProto::STRINGS:
        attrs[a.name()] = std::vector<std::string>(a.strings().begin(), a.strings().end());
        break;
      case onnx::AttributeProto::TENSOR: {
        auto t = TensorFromProto(a.t(), nullptr);
        if (!t.ok()) return c.Error(t.status().message());
        attrs[a.name()] = *std::move(t);
        break;
      }
      default:
        return c.Error(absl::StrCat("attribute '", a.name(), "' has an unsupported type"));
    }
  }
  return Emit(c, node.op_type(), ins, std::move(attrs), c.OutNames(node.output_size())).status();
}

absl::Status Importer::ConvertNewerNode(NodeCtx& c) {
  const auto& node = c.node();
  const std::string& op = node.op_type();
  auto out0 = [&]() -> std::string { return node.output_size() > 0 ? node.output(0) : ""; };
  if (op == "Gelu") {  // opset 20
    PTC_ASSIGN_OR_RETURN(Entry * x, c.Req(0));
    PTC_ASSIGN_OR_RETURN(std::string approx, c.AttrString("approximate", "none"));
    if (approx != "none" && approx != "tanh") {
      return c.Error(absl::StrCat("approximate must be \"none\" or \"tanh\", got \"", approx,
                                  "\""));
    }
    return Emit1(c, "gelu", {x}, {{"approximate", approx}}, out0()).status();
  }
  if (op == "Swish") {  // opset 24: x * sigmoid(alpha * x)
    PTC_ASSIGN_OR_RETURN(Entry * x, c.Req(0));
    PTC_ASSIGN_OR_RETURN(double alpha, c.AttrFloat("alpha", 1.0));
    Entry* arg = x;
    EntryPtr scaled;
    if (alpha != 1.0) {
      std::vector<double> v = {alpha};
      ir::Tensor alpha_t = ir::Tensor::FromVector(ir::DType::kF64, {}, v);
      EntryPtr a64 = BindConstant("", alpha_t, c.loc());
      PTC_ASSIGN_OR_RETURN(EntryPtr ak, Emit1(c, "cast", {a64.get()}, {{"to", x->type.dtype}}, ""));
      PTC_ASSIGN_OR_RETURN(scaled, Emit1(c, "mul", {x, ak.get()}, {}, ""));
      arg = scaled.get();
    }
    PTC_ASSIGN_OR_RETURN(EntryPtr sig, Emit1(c, "sigmoid", {arg}, {}, ""));
    return Emit1(c, "mul", {x, sig.get()}, {}, out0()).status();
  }
  if (op == "RMSNormalization") {  // opset 23: x / sqrt(mean(x^2 over axis..) + eps) * scale
    PTC_ASSIGN_OR_RETURN(Entry * x, c.Req(0));
    PTC_ASSIGN_OR_RETURN(Entry * scale, c.Req(1));
    PTC_ASSIGN_OR_RETURN(int64_t axis, c.AttrInt("axis", -1));
    PTC_ASSIGN_OR_RETURN(axis, c.NormAxis(axis, x->type.rank(), "axis"));
    PTC_ASSIGN_OR_RETURN(double eps, c.AttrFloat("epsilon", 1e-5));
    PTC_ASSIGN_OR_RETURN(int64_t stash, c.AttrInt("stash_type", 1));
    if (stash != onnx::TensorProto::FLOAT) {
      return c.Unimplemented("stash_type other than FLOAT is not supported (ptc computes the "
                             "statistics in f32)");
    }
    return Emit1(c, "layer_norm", {x, scale}, {{"axis", axis}, {"epsilon", eps}, {"rms", int64_t{1}}},
                 out0())
        .status();
  }
  if (op == "RotaryEmbedding") return ConvertRotaryEmbedding(c);
  if (op == "Attention") return ConvertAttention(c);
  return c.Unimplemented(absl::StrCat(op, " (added after opset 17) is not converted yet"));
}

// RotaryEmbedding (opset 23): x [B, H, S, D] (or [B, S, H*D] with num_heads), cos / sin
// [B, S, R/2], or [P, R/2] tables gathered by position_ids [B, S], R = rotary_embedding_dim (0:
// D). ptc's rotary takes tables that broadcast to x[..., :R/2], and its rotary_dim /
// interleaved attributes are the op's (partial rotation, pairs side by side).
absl::Status Importer::ConvertRotaryEmbedding(NodeCtx& c) {
  const auto& node = c.node();
  const std::string out = node.output_size() > 0 ? node.output(0) : "";
  PTC_ASSIGN_OR_RETURN(Entry * x, c.Req(0));
  PTC_ASSIGN_OR_RETURN(Entry * cos, c.Req(1));
  PTC_ASSIGN_OR_RETURN(Entry * sin, c.Req(2));
  PTC_ASSIGN_OR_RETURN(int64_t interleaved, c.AttrInt("interleaved", 0));
  PTC_ASSIGN_OR_RETURN(int64_t rotary_dim, c.AttrInt("rotary_embedding_dim", 0));
  PTC_ASSIGN_OR_RETURN(int64_t num_heads, c.AttrInt("num_heads", 0));
  if (interleaved != 0 && interleaved != 1) {
    return c.Error(absl::StrCat("interleaved must be 0 or 1, got ", interleaved));
  }
  const int64_t r = x->type.rank();
  if (r != 3 && r != 4) return c.Error(absl::StrCat("x must be 3-D or 4-D, got ", x->type.ToString()));
  const ir::Shape xs = x->type.shape;
  const int64_t b = xs[0];
  const int64_t seq = r == 4 ? xs[2] : xs[1];
  int64_t d = xs.back();
  if (r == 3) {
    if (num_heads <= 0 || xs[2] % num_heads != 0) {
      return c.Error("a 3-D x needs num_heads dividing its hidden size");
    }
    d = xs[2] / num_heads;
  }
  if (rotary_dim < 0 || rotary_dim > d || rotary_dim % 2 != 0) {
    return c.Error(absl::StrCat("rotary_embedding_dim ", rotary_dim, " must be even and at most ",
                                "the head size ", d));
  }
  const int64_t rd = rotary_dim == 0 ? d : rotary_dim;
  ir::AttrMap attrs;
  if (rd != d) attrs["rotary_dim"] = rd;
  if (interleaved) attrs["interleaved"] = int64_t{1};
  std::vector<Entry*> tables = {cos, sin};
  std::vector<EntryPtr> keep;
  if (Entry* pos = c.In(3)) {
    for (Entry*& t : tables) {
      PTC_ASSIGN_OR_RETURN(EntryPtr g, Emit1(c, "gather", {t, pos}, {{"axis", int64_t{0}}}, ""));
      keep.push_back(g);
      t = g.get();
    }
  }
  for (Entry*& t : tables) {
    const ir::Shape& ts = t->type.shape;
    if (ts.size() != 3 || (ts[0] != b && ts[0] != 1) || ts[1] != seq || ts[2] != rd / 2) {
      return c.Error(absl::StrCat("cos / sin must be [", b, " or 1, ", seq, ", ", rd / 2,
                                  "] (or position-gathered to it), got ", t->type.ToString()));
    }
    ir::Shape s4 = r == 4 ? ir::Shape{ts[0], 1, seq, rd / 2} : ir::Shape{ts[0], seq, 1, rd / 2};
    PTC_ASSIGN_OR_RETURN(EntryPtr v, Emit1(c, "reshape", {t}, {{"shape", s4}}, ""));
    keep.push_back(v);
    t = v.get();
  }
  if (r == 4) return Emit1(c, "rotary", {x, tables[0], tables[1]}, attrs, out).status();
  PTC_ASSIGN_OR_RETURN(EntryPtr x4, Emit1(c, "reshape", {x}, {{"shape", ir::Shape{b, seq, num_heads, d}}}, ""));
  PTC_ASSIGN_OR_RETURN(EntryPtr y4, Emit1(c, "rotary", {x4.get(), tables[0], tables[1]}, attrs, ""));
  return Emit1(c, "reshape", {y4.get()}, {{"shape", xs}}, out).status();
}

// Attention (opset 23-25): softmax(q k^T * scale + mask) v, with q [B, Hq, S, D] and k / v
// [B, Hkv, L, D / Dv] (Hkv dividing Hq: grouped-query), or the 3-D [B, S, H*D] forms with
// q_num_heads / kv_num_heads (read as [B, S, H, D]: ptc's layout "bthd"). attn_mask: bool
// (true = attend, ptc's mask is its negation; a row it empties attends to every key) or added
// to the scores; is_causal masks key j of query i when j > i (the upper-left triangle). Past keys / values (ptc builds its own KV
// cache: ptc generate) and the qk_matmul_output output are not supported. softcap > 0 (Gemma 2's
// capping of the scaled scores, before the mask) is attention's softcap attribute.
absl::Status Importer::ConvertAttention(NodeCtx& c) {
  const auto& node = c.node();
  for (int i = 4; i < node.input_size(); ++i) {
    if (!node.input(i).empty()) {
      return c.Unimplemented(absl::StrCat(
          "input ", i, " (past_key / past_value / nonpad_kv_seqlen) is not supported; ptc "
          "builds its own KV cache for generation (ptc generate)"));
    }
  }
  for (int i = 1; i < node.output_size(); ++i) {
    if (!node.output(i).empty()) {
      return c.Unimplemented(absl::StrCat("output ", i, " (present_key / present_value / "
                                          "qk_matmul_output) is not supported"));
    }
  }
  PTC_ASSIGN_OR_RETURN(double softcap, c.AttrFloat("softcap", 0.0));
  PTC_ASSIGN_OR_RETURN(int64_t causal, c.AttrInt("is_causal", 0));
  PTC_ASSIGN_OR_RETURN(Entry * q, c.Req(0));
  PTC_ASSIGN_OR_RETURN(Entry * k, c.Req(1));
  PTC_ASSIGN_OR_RETURN(Entry * v, c.Req(2));
  const int64_t r = q->type.rank();
  if (r != k->type.rank() || r != v->type.rank() || (r != 3 && r != 4)) {
    return c.Error(absl::StrCat("q, k, v must all be 3-D or all 4-D, got ", q->type.ToString(),
                                ", ", k->type.ToString(), ", ", v->type.ToString()));
  }
  std::vector<EntryPtr> keep;
  ir::AttrMap attrs;
  int64_t tq = r == 4 ? q->type.shape[2] : q->type.shape[1];
  int64_t tk = r == 4 ? k->type.shape[2] : k->type.shape[1];
  int64_t d = q->type.shape.back();
  ir::Shape out3;
  if (r == 3) {
    PTC_ASSIGN_OR_RETURN(int64_t hq, c.AttrInt("q_num_heads", 0));
    PTC_ASSIGN_OR_RETURN(int64_t hkv, c.AttrInt("kv_num_heads", 0));
    if (hq <= 0 || hkv <= 0 || q->type.shape[2] % hq != 0 || k->type.shape[2] % hkv != 0 ||
        v->type.shape[2] % hkv != 0) {
      return c.Error("3-D q, k, v need q_num_heads and kv_num_heads dividing their hidden sizes");
    }
    d = q->type.shape[2] / hq;
    const int64_t dv = v->type.shape[2] / hkv;
    out3 = {q->type.shape[0], tq, hq * dv};
    for (auto [e, h] : {std::pair{&q, hq}, std::pair{&k, hkv}, std::pair{&v, hkv}}) {
      const ir::Shape& s = (*e)->type.shape;
      PTC_ASSIGN_OR_RETURN(EntryPtr t, Emit1(c, "reshape", {*e},
                                             {{"shape", ir::Shape{s[0], s[1], h, s[2] / h}}}, ""));
      keep.push_back(t);
      *e = t.get();
    }
    attrs["layout"] = std::string("bthd");
  }
  if (c.FindAttr("scale") != nullptr) {
    PTC_ASSIGN_OR_RETURN(double scale, c.AttrFloat("scale", 0.0));
    attrs["scale"] = scale;
  } else {
    attrs["scale"] = 1.0 / std::sqrt(static_cast<double>(d));
  }
  if (softcap > 0) attrs["softcap"] = softcap;  // <= 0: none (the operator's reference)
  // The mask ptc's attention takes: bool, true = masked out; or added to the scores.
  Entry* mask = nullptr;
  if (Entry* m = c.In(3)) {
    if (m->type.dtype == ir::DType::kBool) {
      PTC_ASSIGN_OR_RETURN(EntryPtr dropped, Emit1(c, "not", {m}, {}, ""));
      keep.push_back(dropped);
      mask = dropped.get();
    } else if (m->type.dtype == q->type.dtype) {
      mask = m;
    } else {
      return c.Error(absl::StrCat("attn_mask must be bool or q's dtype, got ", m->type.ToString()));
    }
  }
  if (causal != 0) {
    ir::Tensor tri(ir::DType::kBool, {tq, tk});
    bool* t = tri.mutable_data_as<bool>();
    for (int64_t i = 0; i < tq; ++i) {
      for (int64_t j = 0; j < tk; ++j) t[i * tk + j] = j > i;
    }
    EntryPtr c_mask = BindConstant("", std::move(tri), c.loc());
    keep.push_back(c_mask);
    if (mask == nullptr) {
      mask = c_mask.get();
    } else if (mask->type.dtype == ir::DType::kBool) {
      PTC_ASSIGN_OR_RETURN(EntryPtr both, Emit1(c, "or", {mask, c_mask.get()}, {}, ""));
      keep.push_back(both);
      mask = both.get();
    } else {
      std::vector<double> ninf = {-INFINITY};
      EntryPtr fill64 = BindConstant("", ir::Tensor::FromVector(ir::DType::kF64, {}, ninf), c.loc());
      PTC_ASSIGN_OR_RETURN(EntryPtr fill, Emit1(c, "cast", {fill64.get()}, {{"to", mask->type.dtype}}, ""));
      PTC_ASSIGN_OR_RETURN(EntryPtr both, Emit1(c, "where", {c_mask.get(), fill.get(), mask}, {}, ""));
      keep.insert(keep.end(), {fill64, fill, both});
      mask = both.get();
    }
  }
  if (mask != nullptr && mask->type.dtype == ir::DType::kBool) {
    // A query row the mask empties (a padded position of an attention_mask) attends to every
    // key instead, as transformers' _unmask_unattended does: its output is undefined (the
    // ONNX reference gives NaN, onnxruntime a uniform average), and NaN would reach the valid
    // positions through the next layer's keys and values (0 * NaN). Folds for constant masks.
    PTC_ASSIGN_OR_RETURN(EntryPtr kept, Emit1(c, "not", {mask}, {}, ""));
    PTC_ASSIGN_OR_RETURN(EntryPtr kept_f, Emit1(c, "cast", {kept.get()}, {{"to", ir::DType::kF32}}, ""));
    PTC_ASSIGN_OR_RETURN(EntryPtr any, Emit1(c, "reduce_max", {kept_f.get()},
                                             {{"axes", std::vector<int64_t>{mask->type.rank() - 1}},
                                              {"keepdims", int64_t{1}}},
                                             ""));
    PTC_ASSIGN_OR_RETURN(EntryPtr has, Emit1(c, "cast", {any.get()}, {{"to", ir::DType::kBool}}, ""));
    PTC_ASSIGN_OR_RETURN(EntryPtr row_mask, Emit1(c, "and", {mask, has.get()}, {}, ""));
    keep.insert(keep.end(), {kept, kept_f, any, has, row_mask});
    mask = row_mask.get();
  }
  std::vector<Entry*> ins = {q, k, v};
  if (mask != nullptr) ins.push_back(mask);
  const std::string out = node.output_size() > 0 ? node.output(0) : "";
  if (r == 4) return Emit1(c, "attention", ins, std::move(attrs), out).status();
  PTC_ASSIGN_OR_RETURN(EntryPtr o, Emit1(c, "attention", ins, std::move(attrs), ""));
  return Emit1(c, "reshape", {o.get()}, {{"shape", out3}}, out).status();
}

absl::Status Importer::SetResults() {
  std::vector<ir::Value*> results;
  for (const auto& vi : check_model_.graph().output()) {
    Entry* e = Lookup(vi.name());
    if (e == nullptr) {
      return Error(absl::StrCat("graph output '", vi.name(), "' is not produced by any node"));
    }
    auto it = onnx_types_.find(vi.name());
    if (it != onnx_types_.end() && it->second.has_tensor_type() &&
        it->second.tensor_type().elem_type() != 0) {
      auto d = DTypeFromOnnx(it->second.tensor_type().elem_type());
      if (!d.ok() || *d != e->type.dtype) {
        return Error(absl::StrCat("graph output '", vi.name(), "' is declared ",
                                  OnnxDTypeName(it->second.tensor_type().elem_type()),
                                  " but computes ", e->type.ToString()));
      }
    }
    PTC_ASSIGN_OR_RETURN(ir::Value * v, Materialize(e));
    results.push_back(v);
  }
  fn_->set_results(std::move(results));
  return absl::OkStatus();
}

void Importer::RemoveUnusedParams() {
  std::set<std::string> inputs;
  for (const auto& vi : model_.graph().input()) inputs.insert(vi.name());
  auto uses = fn_->ComputeUses();
  std::set<const ir::Value*> results(fn_->results().begin(), fn_->results().end());
  std::vector<ir::Value*> dead;
  for (ir::Value* p : fn_->params()) {
    if (inputs.count(p->name()) || results.count(p)) continue;
    auto it = uses.find(p);
    if (it == uses.end() || it->second.empty()) dead.push_back(p);
  }
  for (ir::Value* p : dead) {
    module_->tensors().erase(p->name());
    fn_->RemoveParam(p);
  }
}

absl::StatusOr<std::unique_ptr<ir::Module>> Importer::Run(
    google::protobuf::io::ZeroCopyInputStream* stream) {
  PTC_RETURN_IF_ERROR(Parse(stream));
  PTC_RETURN_IF_ERROR(CheckOpsets());
  PTC_RETURN_IF_ERROR(LoadInitializers());
  PTC_RETURN_IF_ERROR(BindInputs());
  PTC_RETURN_IF_ERROR(BuildCheckModel());
  PTC_RETURN_IF_ERROR(CheckAndInfer());
  module_ = std::make_unique<ir::Module>();
  fn_ = module_->AddFunction("main");
  module_->metadata()["source"] = source_;
  module_->metadata()["opset"] = absl::StrCat(opset_);
  if (!model_.producer_name().empty()) module_->metadata()["producer"] = model_.producer_name();
  PTC_RETURN_IF_ERROR(CreateParams());
  PTC_RETURN_IF_ERROR(ConvertNodes());
  PTC_RETURN_IF_ERROR(SetResults());
  RemoveUnusedParams();
  return std::move(module_);
}

std::string DirName(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

}  // namespace

namespace {

constexpr char kTooLarge[] =
    " bytes; protobuf cannot parse messages over 2 GiB. Save the weights as external data: "
    "onnx.save(model, path, save_as_external_data=True)";

absl::StatusOr<std::unique_ptr<ir::Module>> RunImporter(
    google::protobuf::io::ZeroCopyInputStream* stream, const std::string& base_dir,
    const std::string& source_name, const ImportOptions& options) {
  Importer importer(base_dir, source_name.empty() ? "<bytes>" : source_name, options);
  try {
    return importer.Run(stream);
  } catch (const std::exception& e) {
    // onnx / protobuf internals throw on some malformed inputs; never let that escape.
    return absl::InvalidArgumentError(
        absl::StrCat(source_name, ": malformed ONNX model: ", e.what()));
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<ir::Module>> ImportOnnxFile(const std::string& path,
                                                           const ImportOptions& options) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::NotFoundError(
        absl::StrCat("cannot open ONNX model '", path, "': ", std::strerror(errno)));
  }
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return absl::InvalidArgumentError(absl::StrCat("'", path, "' is not a regular file"));
  }
  if (st.st_size > static_cast<off_t>(INT_MAX)) {
    ::close(fd);
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": the model is ", st.st_size, kTooLarge));
  }
  // Streamed from the file: the bytes are never held in memory next to the parsed model.
  google::protobuf::io::FileInputStream stream(fd);
  stream.SetCloseOnDelete(true);
  return RunImporter(&stream, DirName(path), path, options);
}

absl::StatusOr<std::unique_ptr<ir::Module>> ImportOnnxBytes(const std::string& bytes,
                                                            const std::string& base_dir,
                                                            const std::string& source_name,
                                                            const ImportOptions& options) {
  if (bytes.size() > static_cast<size_t>(INT_MAX)) {
    return absl::InvalidArgumentError(
        absl::StrCat(source_name, ": the model is ", bytes.size(), kTooLarge));
  }
  google::protobuf::io::ArrayInputStream stream(bytes.data(), static_cast<int>(bytes.size()));
  return RunImporter(&stream, base_dir, source_name, options);
}

std::vector<std::string> SupportedOnnxOps() {
  std::vector<std::string> ops;
  for (const auto& [k, v] : UnaryOps()) ops.push_back(k);
  for (const auto& [k, v] : BinaryOps()) ops.push_back(k);
  for (const auto& k : OtherOps()) ops.push_back(k);
  for (const auto& k : ConvertedNewerOps()) ops.push_back(k);
  std::sort(ops.begin(), ops.end());
  return ops;
}

}  // namespace ptc::onnx_import
