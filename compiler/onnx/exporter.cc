// IR -> ONNX (opset 17). IR ops with an ONNX form map back to it (attribute operands become
// initializers); everything else (gelu, dropout, fused and training ops) is written as-is in
// the "ai.ptc" domain, which the importer reads back. Constants: inline ones become Constant
// nodes, `ref` ones initializers marked doc_string "ptc:constant" (so re-import keeps them
// constants rather than weights).
#include "compiler/onnx/exporter.h"

#include <climits>
#include <fstream>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "compiler/onnx/onnx_util.h"
#include "compiler/support/status.h"

namespace ptc::onnx_import {
namespace {

constexpr int kOpset = 17;
constexpr int kIrVersion = 8;
constexpr char kPtcDomain[] = "ai.ptc";
constexpr char kConstantDocString[] = "ptc:constant";
constexpr char kDTypeAttrDoc[] = "ptc:dtype";

const std::map<std::string, std::string, std::less<>>& DirectOps() {
  static const auto* m = new std::map<std::string, std::string, std::less<>>{
      {"add", "Add"},          {"sub", "Sub"},
      {"mul", "Mul"},          {"div", "Div"},
      {"pow", "Pow"},          {"max", "Max"},
      {"min", "Min"},          {"equal", "Equal"},
      {"less", "Less"},        {"greater", "Greater"},
      {"less_equal", "LessOrEqual"}, {"greater_equal", "GreaterOrEqual"},
      {"and", "And"},          {"or", "Or"},
      {"xor", "Xor"},          {"not", "Not"},
      {"where", "Where"},      {"neg", "Neg"},
      {"abs", "Abs"},          {"sqrt", "Sqrt"},
      {"reciprocal", "Reciprocal"}, {"exp", "Exp"},
      {"log", "Log"},          {"erf", "Erf"},
      {"tanh", "Tanh"},        {"sigmoid", "Sigmoid"},
      {"relu", "Relu"},        {"identity", "Identity"},
      {"floor", "Floor"},      {"ceil", "Ceil"},
      {"cos", "Cos"},          {"sin", "Sin"},
      {"matmul", "MatMul"}};
  return *m;
}

void SetType(const ir::TensorType& t, onnx::ValueInfoProto* vi) {
  auto* tt = vi->mutable_type()->mutable_tensor_type();
  tt->set_elem_type(DTypeToOnnx(t.dtype));
  auto* shape = tt->mutable_shape();
  for (int64_t d : t.shape) shape->add_dim()->set_dim_value(d);
}

class Exporter {
 public:
  explicit Exporter(const ir::Module& module) : module_(module) {}
  absl::StatusOr<std::string> Run();

 private:
  std::string FreshName(const std::string& base) {
    std::string name = base;
    for (int i = 1; used_.count(name); ++i) name = absl::StrCat(base, "_", i);
    used_.insert(name);
    return name;
  }
  // An int64 1-D initializer (attribute operand); returns its name.
  std::string IntsInit(const std::string& base, const std::vector<int64_t>& v, bool scalar) {
    std::string name = FreshName(base);
    ir::Shape shape;
    if (!scalar) shape.push_back(static_cast<int64_t>(v.size()));
    TensorToProto(ir::Tensor::FromVector<int64_t>(ir::DType::kI64, shape, v), name,
                  graph_->add_initializer());
    return name;
  }
  onnx::NodeProto* NewNode(const ir::Node& n, const std::string& op_type) {
    auto* p = graph_->add_node();
    p->set_op_type(op_type);
    if (!n.loc().empty()) {
      // ONNX node names must be unique; several IR nodes can share one source location.
      std::string name = n.loc();
      for (int i = 1; !node_names_.insert(name).second; ++i) name = absl::StrCat(n.loc(), "_", i);
      p->set_name(name);
    }
    for (const ir::Value* v : n.inputs()) p->add_input(v->name());
    for (const ir::Value* v : n.outputs()) p->add_output(v->name());
    return p;
  }
  static void AttrI(onnx::NodeProto* p, const std::string& name, int64_t v) {
    auto* a = p->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::INT);
    a->set_i(v);
  }
  static void AttrF(onnx::NodeProto* p, const std::string& name, double v) {
    auto* a = p->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::FLOAT);
    a->set_f(static_cast<float>(v));
  }
  static void AttrS(onnx::NodeProto* p, const std::string& name, const std::string& v) {
    auto* a = p->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::STRING);
    a->set_s(v);
  }
  static void AttrInts(onnx::NodeProto* p, const std::string& name,
                       const std::vector<int64_t>& v) {
    auto* a = p->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::INTS);
    for (int64_t x : v) a->add_ints(x);
  }
  absl::Status ExportNode(const ir::Node& n);
  absl::Status ExportPtcNode(const ir::Node& n);
  absl::Status ExportRmsNorm(const ir::Node& n, int64_t axis, double eps);
  // A node `op_type`(inputs) writing `out` (an IR value's name, or one from FreshName).
  onnx::NodeProto* AddNode(const std::string& op_type, const std::vector<std::string>& inputs,
                           const std::string& out) {
    auto* p = graph_->add_node();
    p->set_op_type(op_type);
    for (const std::string& i : inputs) p->add_input(i);
    p->add_output(out);
    return p;
  }
  // The same with a fresh output named after `base`; returns the output's name.
  std::string Emit(const std::string& op_type, const std::vector<std::string>& inputs,
                   const std::string& base) {
    return AddNode(op_type, inputs, FreshName(base))->output(0);
  }
  // Cast(in) to `to`, written to `out`.
  void CastTo(const std::string& in, ir::DType to, const std::string& out) {
    AttrI(AddNode("Cast", {in}, out), "to", DTypeToOnnx(to));
  }
  // `in` cast to `to` under a fresh name (`in` itself when it has that dtype already).
  std::string Cast(const std::string& in, ir::DType from, ir::DType to) {
    if (from == to) return in;
    const std::string out = FreshName(in + "_" + std::string(ir::DTypeName(to)));
    CastTo(in, to, out);
    return out;
  }
  // An IR op with {dtype} whose ONNX form computes in its inputs' dtype: the ONNX node `p`
  // writes `<y>_<suffix>` and a Cast to y's dtype writes y (layer_norm, gemm).
  void CastOutputOf(onnx::NodeProto* p, const ir::Node& n, const std::string& suffix) {
    const std::string y = n.output(0)->name();
    p->set_output(0, FreshName(y + "_" + suffix));
    CastTo(p->output(0), n.output(0)->type().dtype, y);
  }
  // An f32 scalar as a Constant node (not an initializer: those import as weights).
  std::string ScalarConstant(const std::string& base, float v) {
    const std::string out = FreshName(base);
    auto* a = AddNode("Constant", {}, out)->add_attribute();
    a->set_name("value");
    a->set_type(onnx::AttributeProto::TENSOR);
    TensorToProto(ir::Tensor::FromVector<float>(ir::DType::kF32, {}, {v}), "", a->mutable_t());
    return out;
  }

  const ir::Module& module_;
  onnx::ModelProto model_;
  onnx::GraphProto* graph_ = nullptr;
  std::set<std::string> used_;
  std::set<std::string> node_names_;
  bool uses_ptc_domain_ = false;
};

// layer_norm {rms=1} (RMSNorm) as the ONNX ops of its definition, in x's dtype (opset 17 has
// no RMSNormalization): y = scale * (x / Sqrt(ReduceMean(x * x) + epsilon)) [then a Cast for
// {dtype}]; mean = 0 * ReduceMean and inv_std_dev = Reciprocal(Sqrt(...)) where requested.
absl::Status Exporter::ExportRmsNorm(const ir::Node& n, int64_t axis, double eps) {
  const ir::DType dt = n.input(0)->type().dtype, f32 = ir::DType::kF32;
  const int64_t rank = n.input(0)->type().rank();
  const std::string x = n.input(0)->name(), y = n.output(0)->name();
  std::vector<int64_t> axes;
  for (int64_t a = axis; a < rank; ++a) axes.push_back(a);
  const std::string mean = FreshName(y + "_ms");
  auto* reduce = AddNode("ReduceMean", {Emit("Mul", {x, x}, y + "_sq")}, mean);
  AttrInts(reduce, "axes", axes);
  AttrI(reduce, "keepdims", 1);
  const std::string eps_name = Cast(ScalarConstant(y + "_eps", static_cast<float>(eps)), f32, dt);
  const std::string rms = Emit("Sqrt", {Emit("Add", {mean, eps_name}, y + "_ms_eps")}, y + "_rms");
  auto* scaled = AddNode("Mul", {Emit("Div", {x, rms}, y + "_normalized"), n.input(1)->name()}, y);
  if (n.output(0)->type().dtype != dt) CastOutputOf(scaled, n, "scaled");  // fold-norm-casts
  if (n.num_outputs() > 1 && !n.output(1)->name().empty()) {  // mean: 0 (f32, as the IR's)
    AddNode("Mul", {Cast(mean, dt, f32), ScalarConstant(y + "_zero", 0.f)}, n.output(1)->name());
  }
  if (n.num_outputs() > 2) {
    AddNode("Reciprocal", {Cast(rms, dt, f32)}, n.output(2)->name());
  }
  return absl::OkStatus();
}

absl::Status Exporter::ExportPtcNode(const ir::Node& n) {
  uses_ptc_domain_ = true;
  auto* p = NewNode(n, n.op());
  p->set_domain(kPtcDomain);
  for (const auto& [name, value] : n.attrs()) {
    auto* a = p->add_attribute();
    a->set_name(name);
    if (const auto* i = std::get_if<int64_t>(&value)) {
      a->set_type(onnx::AttributeProto::INT);
      a->set_i(*i);
    } else if (const auto* d = std::get_if<double>(&value)) {
      a->set_type(onnx::AttributeProto::FLOAT);
      a->set_f(static_cast<float>(*d));
    } else if (const auto* s = std::get_if<std::string>(&value)) {
      a->set_type(onnx::AttributeProto::STRING);
      a->set_s(*s);
    } else if (const auto* is = std::get_if<std::vector<int64_t>>(&value)) {
      a->set_type(onnx::AttributeProto::INTS);
      for (int64_t x : *is) a->add_ints(x);
    } else if (const auto* fs = std::get_if<std::vector<double>>(&value)) {
      a->set_type(onnx::AttributeProto::FLOATS);
      for (double x : *fs) a->add_floats(static_cast<float>(x));
    } else if (const auto* ss = std::get_if<std::vector<std::string>>(&value)) {
      a->set_type(onnx::AttributeProto::STRINGS);
      for (const auto& x : *ss) a->add_strings(x);
    } else if (const auto* t = std::get_if<ir::Tensor>(&value)) {
      a->set_type(onnx::AttributeProto::TENSOR);
      TensorToProto(*t, "", a->mutable_t());
    } else if (const auto* dt = std::get_if<ir::DType>(&value)) {
      a->set_type(onnx::AttributeProto::INT);
      a->set_i(DTypeToOnnx(*dt));
      a->set_doc_string(kDTypeAttrDoc);
    }
  }
  return absl::OkStatus();
}

absl::Status Exporter::ExportNode(const ir::Node& n) {
  const std::string& op = n.op();
  auto err = [&](absl::string_view msg) {
    return absl::InvalidArgumentError(absl::StrCat("export: ", n.Describe(), ": ", msg));
  };
  if (auto it = DirectOps().find(op); it != DirectOps().end()) {
    NewNode(n, it->second);
    return absl::OkStatus();
  }
  const std::string out = n.num_outputs() > 0 ? n.output(0)->name() : "";
  if (op == "constant") {
    if (n.has_attr("ref")) {
      PTC_ASSIGN_OR_RETURN(std::string ref, n.GetString("ref"));
      auto it = module_.tensors().find(ref);
      if (it == module_.tensors().end()) return err(absl::StrCat("unknown ref '", ref, "'"));
      auto* init = graph_->add_initializer();
      TensorToProto(it->second, out, init);
      init->set_doc_string(kConstantDocString);
      return absl::OkStatus();
    }
    PTC_ASSIGN_OR_RETURN(ir::Tensor t, n.GetTensor("value"));
    auto* p = NewNode(n, "Constant");
    auto* a = p->add_attribute();
    a->set_name("value");
    a->set_type(onnx::AttributeProto::TENSOR);
    TensorToProto(t, "", a->mutable_t());
    return absl::OkStatus();
  }
  if (op == "cast") {
    PTC_ASSIGN_OR_RETURN(ir::DType to, n.GetDType("to"));
    AttrI(NewNode(n, "Cast"), "to", DTypeToOnnx(to));
    return absl::OkStatus();
  }
  if (op == "gemm") {
    auto* p = NewNode(n, "Gemm");
    PTC_ASSIGN_OR_RETURN(double alpha, n.GetFloat("alpha", 1.0));
    PTC_ASSIGN_OR_RETURN(double beta, n.GetFloat("beta", 1.0));
    PTC_ASSIGN_OR_RETURN(int64_t ta, n.GetInt("trans_a", 0));
    PTC_ASSIGN_OR_RETURN(int64_t tb, n.GetInt("trans_b", 0));
    AttrF(p, "alpha", alpha);
    AttrF(p, "beta", beta);
    AttrI(p, "transA", ta);
    AttrI(p, "transB", tb);
    // {dtype=f32} (fold-grad-casts): Gemm in a's dtype, then a Cast of its output.
    if (n.output(0)->type().dtype != n.input(0)->type().dtype) CastOutputOf(p, n, "product");
    return absl::OkStatus();
  }
  if (op == "softmax" || op == "log_softmax") {
    PTC_ASSIGN_OR_RETURN(int64_t axis, n.GetInt("axis"));
    AttrI(NewNode(n, op == "softmax" ? "Softmax" : "LogSoftmax"), "axis", axis);
    return absl::OkStatus();
  }
  if (op == "layer_norm") {
    PTC_ASSIGN_OR_RETURN(int64_t axis, n.GetInt("axis"));
    PTC_ASSIGN_OR_RETURN(double eps, n.GetFloat("epsilon", 1e-5));
    PTC_ASSIGN_OR_RETURN(int64_t rms, n.GetInt("rms", 0));
    if (rms != 0) return ExportRmsNorm(n, axis, eps);
    auto* p = NewNode(n, "LayerNormalization");
    AttrI(p, "axis", axis);
    AttrF(p, "epsilon", eps);
    // {dtype} (fold-norm-casts): LayerNormalization in x's dtype, then a Cast of y.
    if (n.output(0)->type().dtype != n.input(0)->type().dtype) CastOutputOf(p, n, "normalized");
    return absl::OkStatus();
  }
  if (op == "reduce_sum" || op == "reduce_mean" || op == "reduce_max" || op == "reduce_min") {
    PTC_ASSIGN_OR_RETURN(std::vector<int64_t> axes, n.GetInts("axes", std::vector<int64_t>{}));
    PTC_ASSIGN_OR_RETURN(int64_t keepdims, n.GetInt("keepdims", 1));
    std::string type = op == "reduce_sum"    ? "ReduceSum"
                       : op == "reduce_mean" ? "ReduceMean"
                       : op == "reduce_max"  ? "ReduceMax"
                                             : "ReduceMin";
    auto* p = NewNode(n, type);
    if (!axes.empty()) {
      if (op == "reduce_sum") {
        p->add_input(IntsInit(out + "_axes", axes, false));
      } else {
        AttrInts(p, "axes", axes);
      }
    }
    AttrI(p, "keepdims", keepdims);
    return absl::OkStatus();
  }
  if (op == "reshape" || op == "expand") {
    PTC_ASSIGN_OR_RETURN(std::vector<int64_t> shape, n.GetInts("shape"));
    auto* p = NewNode(n, op == "reshape" ? "Reshape" : "Expand");
    p->add_input(IntsInit(out + "_shape", shape, false));
    bool has_zero = false;
    for (int64_t d : shape) has_zero |= d == 0;
    // Without allowzero a 0 would copy the input's dim.
    if (op == "reshape" && has_zero) AttrI(p, "allowzero", 1);
    return absl::OkStatus();
  }
  if (op == "transpose") {
    PTC_ASSIGN_OR_RETURN(std::vector<int64_t> perm, n.GetInts("perm"));
    AttrInts(NewNode(n, "Transpose"), "perm", perm);
    return absl::OkStatus();
  }
  if (op == "split") {
    PTC_ASSIGN_OR_RETURN(int64_t axis, n.GetInt("axis"));
    PTC_ASSIGN_OR_RETURN(std::vector<int64_t> sizes, n.GetInts("sizes"));
    auto* p = NewNode(n, "Split");
    p->add_input(IntsInit(out + "_split", sizes, false));
    AttrI(p, "axis", axis);
    return absl::OkStatus();
  }
  if (op == "slice") {
    PTC_ASSIGN_OR_RETURN(std::vector<int64_t> starts, n.GetInts("starts"));
    PTC_ASSIGN_OR_RETURN(std::vector<int64_t> ends, n.GetInts("ends"));
    PTC_ASSIGN_OR_RETURN(std::vector<int64_t> steps, n.GetInts("steps"));
    if (starts.size() != ends.size() || steps.size() != starts.size()) {
      return err("starts, ends and steps differ in length");
    }
    std::vector<int64_t> axes;
    for (size_t i = 0; i < starts.size(); ++i) {
      axes.push_back(static_cast<int64_t>(i));
      // IR end -1 (before index 0, negative step) is "one past the front"; in ONNX a
      // negative end counts from the back, so use a value that clamps to -1.
      if (steps[i] < 0 && ends[i] < 0) ends[i] = INT64_MIN;
    }
    auto* p = NewNode(n, "Slice");
    p->add_input(IntsInit(out + "_starts", starts, false));
    p->add_input(IntsInit(out + "_ends", ends, false));
    p->add_input(IntsInit(out + "_axes", axes, false));
    p->add_input(IntsInit(out + "_steps", steps, false));
    return absl::OkStatus();
  }
  if (op == "concat" || op == "gather") {
    PTC_ASSIGN_OR_RETURN(int64_t axis, n.GetInt("axis"));
    AttrI(NewNode(n, op == "concat" ? "Concat" : "Gather"), "axis", axis);
    return absl::OkStatus();
  }
  if (op == "trilu") {
    PTC_ASSIGN_OR_RETURN(int64_t upper, n.GetInt("upper", 1));
    PTC_ASSIGN_OR_RETURN(int64_t k, n.GetInt("k", 0));
    auto* p = NewNode(n, "Trilu");
    p->add_input(IntsInit(out + "_k", {k}, true));
    AttrI(p, "upper", upper);
    return absl::OkStatus();
  }
  if (op == "softmax_ce_loss" || op == "nll_loss") {
    auto* p = NewNode(n, op == "nll_loss" ? "NegativeLogLikelihoodLoss" : "SoftmaxCrossEntropyLoss");
    PTC_ASSIGN_OR_RETURN(std::string reduction, n.GetString("reduction", "mean"));
    AttrS(p, "reduction", reduction);
    if (n.has_attr("ignore_index")) {
      PTC_ASSIGN_OR_RETURN(int64_t ii, n.GetInt("ignore_index"));
      AttrI(p, "ignore_index", ii);
    }
    return absl::OkStatus();
  }
  return ExportPtcNode(n);
}

absl::StatusOr<std::string> Exporter::Run() {
  const ir::Function* fn = module_.main();
  if (fn == nullptr) return absl::InvalidArgumentError("export: the module has no function");
  if (module_.functions().size() > 1) {
    return absl::UnimplementedError(
        "export: modules with more than one function are not supported");
  }
  model_.set_ir_version(kIrVersion);
  model_.set_producer_name("ptc");
  model_.set_producer_version("0.1.0");
  auto* opset = model_.add_opset_import();
  opset->set_domain("");
  opset->set_version(kOpset);
  for (const auto& [k, v] : module_.metadata()) {
    auto* prop = model_.add_metadata_props();
    prop->set_key(absl::StrCat("ptc.", k));
    prop->set_value(v);
  }
  graph_ = model_.mutable_graph();
  graph_->set_name(fn->name());

  for (const ir::Value* p : fn->params()) used_.insert(p->name());
  for (const auto& n : fn->nodes()) {
    for (const ir::Value* v : n->outputs()) used_.insert(v->name());
  }
  for (const ir::Value* p : fn->params()) {
    auto it = module_.tensors().find(p->name());
    if (it != module_.tensors().end()) {
      if (it->second.type() != p->type()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "export: param '", p->name(), "' is ", p->type().ToString(), " but its tensor is ",
            it->second.type().ToString()));
      }
      TensorToProto(it->second, p->name(), graph_->add_initializer());
    } else {
      SetType(p->type(), graph_->add_input());
      graph_->mutable_input(graph_->input_size() - 1)->set_name(p->name());
    }
  }
  for (const auto& n : fn->nodes()) PTC_RETURN_IF_ERROR(ExportNode(*n));

  std::set<const ir::Value*> params(fn->params().begin(), fn->params().end());
  std::set<const ir::Value*> seen_results;
  for (const ir::Value* r : fn->results()) {
    std::string name = r->name();
    // ONNX outputs must be distinct values made by nodes: copy params and repeats.
    if (params.count(r) || !seen_results.insert(r).second) {
      name = FreshName(r->name() + "_out");
      auto* p = graph_->add_node();
      p->set_op_type("Identity");
      p->add_input(r->name());
      p->add_output(name);
    }
    auto* vi = graph_->add_output();
    vi->set_name(name);
    SetType(r->type(), vi);
  }
  std::set<const ir::Value*> results(fn->results().begin(), fn->results().end());
  for (const auto& n : fn->nodes()) {
    for (const ir::Value* v : n->outputs()) {
      if (results.count(v)) continue;
      auto* vi = graph_->add_value_info();
      vi->set_name(v->name());
      SetType(v->type(), vi);
    }
  }
  if (uses_ptc_domain_) {
    auto* ptc = model_.add_opset_import();
    ptc->set_domain(kPtcDomain);
    ptc->set_version(1);
  }
  if (model_.ByteSizeLong() > static_cast<size_t>(INT_MAX)) {
    return absl::ResourceExhaustedError(
        "export: the model is over 2 GiB, which ONNX protobuf files cannot hold; external data "
        "export is not implemented");
  }
  std::string bytes;
  if (!model_.SerializeToString(&bytes)) return absl::InternalError("export: serialize failed");
  return bytes;
}

}  // namespace

absl::StatusOr<std::string> ExportOnnxBytes(const ir::Module& module) {
  Exporter exporter(module);
  return exporter.Run();
}

absl::Status ExportOnnxFile(const ir::Module& module, const std::string& path) {
  PTC_ASSIGN_OR_RETURN(std::string bytes, ExportOnnxBytes(module));
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return absl::PermissionDeniedError(absl::StrCat("cannot write '", path, "'"));
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out) return absl::DataLossError(absl::StrCat("writing '", path, "' failed"));
  return absl::OkStatus();
}

}  // namespace ptc::onnx_import
