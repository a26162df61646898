// Test helpers: build small ONNX models in C++ (no files, no Python).
#ifndef PTC_COMPILER_ONNX_ONNX_TEST_UTIL_H_
#define PTC_COMPILER_ONNX_ONNX_TEST_UTIL_H_

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "onnx/onnx_pb.h"

namespace ptc::onnx_import::testing {

using Dim = std::variant<int64_t, std::string>;  // value or symbolic name

inline void SetValueInfo(onnx::ValueInfoProto* vi, const std::string& name, int elem_type,
                         const std::vector<Dim>& dims) {
  vi->set_name(name);
  auto* tt = vi->mutable_type()->mutable_tensor_type();
  tt->set_elem_type(elem_type);
  auto* shape = tt->mutable_shape();
  for (const Dim& d : dims) {
    auto* dim = shape->add_dim();
    if (const auto* v = std::get_if<int64_t>(&d)) {
      dim->set_dim_value(*v);
    } else {
      dim->set_dim_param(std::get<std::string>(d));
    }
  }
}

class ModelBuilder {
 public:
  explicit ModelBuilder(int opset = 17) {
    model.set_ir_version(8);
    model.set_producer_name("ptc");
    auto* imp = model.add_opset_import();
    imp->set_domain("");
    imp->set_version(opset);
    model.mutable_graph()->set_name("g");
  }
  onnx::GraphProto* graph() { return model.mutable_graph(); }

  ModelBuilder& Input(const std::string& name, int elem_type, const std::vector<Dim>& dims) {
    SetValueInfo(graph()->add_input(), name, elem_type, dims);
    return *this;
  }
  // An output with a known element type and rank but unknown dims (inferred by the importer).
  ModelBuilder& Output(const std::string& name, int elem_type, int rank) {
    auto* vi = graph()->add_output();
    vi->set_name(name);
    auto* tt = vi->mutable_type()->mutable_tensor_type();
    tt->set_elem_type(elem_type);
    auto* shape = tt->mutable_shape();
    for (int i = 0; i < rank; ++i) shape->add_dim();
    return *this;
  }
  ModelBuilder& OutputDims(const std::string& name, int elem_type, const std::vector<Dim>& dims) {
    SetValueInfo(graph()->add_output(), name, elem_type, dims);
    return *this;
  }
  onnx::NodeProto* Node(const std::string& op, const std::vector<std::string>& inputs,
                        const std::vector<std::string>& outputs, const std::string& name = "") {
    auto* n = graph()->add_node();
    n->set_op_type(op);
    if (!name.empty()) n->set_name(name);
    for (const auto& i : inputs) n->add_input(i);
    for (const auto& o : outputs) n->add_output(o);
    return n;
  }
  onnx::TensorProto* InitF(const std::string& name, const std::vector<int64_t>& dims,
                           const std::vector<float>& v) {
    auto* t = graph()->add_initializer();
    t->set_name(name);
    t->set_data_type(onnx::TensorProto::FLOAT);
    for (int64_t d : dims) t->add_dims(d);
    for (float x : v) t->add_float_data(x);
    return t;
  }
  onnx::TensorProto* InitI64(const std::string& name, const std::vector<int64_t>& dims,
                             const std::vector<int64_t>& v) {
    auto* t = graph()->add_initializer();
    t->set_name(name);
    t->set_data_type(onnx::TensorProto::INT64);
    for (int64_t d : dims) t->add_dims(d);
    for (int64_t x : v) t->add_int64_data(x);
    return t;
  }
  // A Constant node holding int64 values (1-D, or a scalar when `scalar`).
  void ConstI64(const std::string& name, const std::vector<int64_t>& v, bool scalar = false) {
    auto* n = Node("Constant", {}, {name}, name + "_node");
    auto* a = n->add_attribute();
    a->set_name("value");
    a->set_type(onnx::AttributeProto::TENSOR);
    auto* t = a->mutable_t();
    t->set_data_type(onnx::TensorProto::INT64);
    if (!scalar) t->add_dims(static_cast<int64_t>(v.size()));
    for (int64_t x : v) t->add_int64_data(x);
  }
  std::string Bytes() const { return model.SerializeAsString(); }

  onnx::ModelProto model;
};

inline void AttrI(onnx::NodeProto* n, const std::string& name, int64_t v) {
  auto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INT);
  a->set_i(v);
}
inline void AttrF(onnx::NodeProto* n, const std::string& name, float v) {
  auto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::FLOAT);
  a->set_f(v);
}
inline void AttrS(onnx::NodeProto* n, const std::string& name, const std::string& v) {
  auto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::STRING);
  a->set_s(v);
}
inline void AttrInts(onnx::NodeProto* n, const std::string& name, const std::vector<int64_t>& v) {
  auto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INTS);
  for (int64_t x : v) a->add_ints(x);
}
inline void AttrFloats(onnx::NodeProto* n, const std::string& name, const std::vector<float>& v) {
  auto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::FLOATS);
  for (float x : v) a->add_floats(x);
}

}  // namespace ptc::onnx_import::testing

#endif  // PTC_COMPILER_ONNX_ONNX_TEST_UTIL_H_
