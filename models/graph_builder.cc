#include "models/graph_builder.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "compiler/support/hash.h"

namespace ptc::models::internal {

double NormalRng::Uniform() {
  // 53 random bits -> (0, 1]: never 0, so log() below is finite.
  return (static_cast<double>(engine_() >> 11) + 1.0) * 0x1.0p-53;
}

double NormalRng::Next() {
  if (has_spare_) {
    has_spare_ = false;
    return spare_;
  }
  const double u1 = Uniform(), u2 = Uniform();
  const double r = std::sqrt(-2.0 * std::log(u1));
  const double theta = 2.0 * M_PI * u2;
  spare_ = r * std::sin(theta);
  has_spare_ = true;
  return r * std::cos(theta);
}

onnx::AttributeProto AttrInt(const std::string& name, int64_t v) {
  onnx::AttributeProto a;
  a.set_name(name);
  a.set_type(onnx::AttributeProto::INT);
  a.set_i(v);
  return a;
}

onnx::AttributeProto AttrFloat(const std::string& name, float v) {
  onnx::AttributeProto a;
  a.set_name(name);
  a.set_type(onnx::AttributeProto::FLOAT);
  a.set_f(v);
  return a;
}

onnx::AttributeProto AttrInts(const std::string& name, const std::vector<int64_t>& v) {
  onnx::AttributeProto a;
  a.set_name(name);
  a.set_type(onnx::AttributeProto::INTS);
  for (int64_t x : v) a.add_ints(x);
  return a;
}

onnx::AttributeProto AttrString(const std::string& name, const std::string& v) {
  onnx::AttributeProto a;
  a.set_name(name);
  a.set_type(onnx::AttributeProto::STRING);
  a.set_s(v);
  return a;
}

std::string GraphBuilder::NodeName(const std::string& op_type) {
  std::string base = "/";
  for (const std::string& s : scopes_) absl::StrAppend(&base, s, "/");
  absl::StrAppend(&base, op_type);
  const int k = name_counts_[base]++;
  return k == 0 ? base : absl::StrCat(base, "_", k);
}

std::vector<std::string> GraphBuilder::OpN(const std::string& op_type,
                                           const std::vector<std::string>& inputs, int num_outputs,
                                           std::vector<onnx::AttributeProto> attrs) {
  onnx::NodeProto* node = graph_->add_node();
  const std::string name = NodeName(op_type);
  node->set_name(name);
  node->set_op_type(op_type);
  for (const std::string& in : inputs) node->add_input(in);
  std::vector<std::string> outputs;
  for (int i = 0; i < num_outputs; ++i) {
    outputs.push_back(absl::StrCat(name, "_output_", i));
    node->add_output(outputs.back());
  }
  for (auto& a : attrs) *node->add_attribute() = std::move(a);
  return outputs;
}

std::string GraphBuilder::ConstTensor(onnx::TensorProto tensor) {
  onnx::AttributeProto value;
  value.set_name("value");
  value.set_type(onnx::AttributeProto::TENSOR);
  *value.mutable_t() = std::move(tensor);
  const std::string out = Op("Constant", {}, {std::move(value)});
  // The exporter names a Constant's tensor after its node; keep the ONNX tools happy.
  graph_->mutable_node(graph_->node_size() - 1)->mutable_attribute(0)->mutable_t()->set_name(out);
  return out;
}

std::string GraphBuilder::ConstI64(const std::vector<int64_t>& values,
                                   const std::vector<int64_t>& dims) {
  onnx::TensorProto t;
  t.set_data_type(onnx::TensorProto::INT64);
  for (int64_t d : dims) t.add_dims(d);
  t.set_raw_data(
      std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(int64_t)));
  return ConstTensor(std::move(t));
}

std::string GraphBuilder::Dropout(const std::string& x, double ratio) {
  if (ratio == 0.0) return x;
  onnx::TensorProto train;
  train.set_data_type(onnx::TensorProto::BOOL);
  train.set_raw_data(std::string(1, '\1'));
  return Op("Dropout", {x, ScalarF32(static_cast<float>(ratio)), ConstTensor(std::move(train))});
}

std::string GraphBuilder::ScalarF32(float v) {
  onnx::TensorProto t;
  t.set_data_type(onnx::TensorProto::FLOAT);
  t.set_raw_data(std::string(reinterpret_cast<const char*>(&v), sizeof(float)));
  return ConstTensor(std::move(t));
}

onnx::TensorProto* GraphBuilder::AddInitializer(const std::string& name,
                                                const std::vector<int64_t>& dims) {
  onnx::TensorProto* t = graph_->add_initializer();
  t->set_name(name);
  t->set_data_type(onnx::TensorProto::FLOAT);
  for (int64_t d : dims) t->add_dims(d);
  return t;
}

namespace {

uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

}  // namespace

std::string GraphBuilder::ParamNormal(const std::string& name, const std::vector<int64_t>& dims,
                                      double std) {
  onnx::TensorProto* t = AddInitializer(name, dims);
  int64_t n = 1;
  for (int64_t d : dims) n *= d;
  std::string* raw = t->mutable_raw_data();
  raw->resize(static_cast<size_t>(n) * sizeof(float));
  float* p = reinterpret_cast<float*>(raw->data());
  // Each tensor, and each chunk of it, has its own stream seeded from (seed, name, chunk): the
  // values do not depend on the order parameters are created in nor on the thread count, and
  // the chunks of big tensors (GPT-2 XL: 1.5B samples) are drawn in parallel.
  const uint64_t base = SplitMix64(seed_ ^ Fnv1a(name));
  const int64_t chunks = (n + kRngChunk - 1) / kRngChunk;
  auto fill = [&](int64_t first_chunk, int64_t step) {
    for (int64_t c = first_chunk; c < chunks; c += step) {
      NormalRng rng(SplitMix64(base + static_cast<uint64_t>(c)));
      const int64_t end = std::min(n, (c + 1) * kRngChunk);
      for (int64_t i = c * kRngChunk; i < end; ++i) p[i] = static_cast<float>(std * rng.Next());
    }
  };
  const int64_t threads =
      std::min<int64_t>(chunks, std::max(1u, std::thread::hardware_concurrency()));
  std::vector<std::thread> workers;
  for (int64_t w = 1; w < threads; ++w) workers.emplace_back(fill, w, threads);
  fill(0, threads);
  for (std::thread& w : workers) w.join();
  return name;
}

std::string GraphBuilder::ParamFill(const std::string& name, const std::vector<int64_t>& dims,
                                    float value) {
  onnx::TensorProto* t = AddInitializer(name, dims);
  int64_t n = 1;
  for (int64_t d : dims) n *= d;
  std::string* raw = t->mutable_raw_data();
  raw->resize(static_cast<size_t>(n) * sizeof(float));
  float* p = reinterpret_cast<float*>(raw->data());
  for (int64_t i = 0; i < n; ++i) p[i] = value;
  return name;
}

namespace {

void SetValueInfo(onnx::ValueInfoProto* vi, const std::string& name, int elem_type,
                  const std::vector<Dim>& dims) {
  vi->set_name(name);
  auto* tt = vi->mutable_type()->mutable_tensor_type();
  tt->set_elem_type(elem_type);
  auto* shape = tt->mutable_shape();
  for (const Dim& d : dims) {
    auto* dim = shape->add_dim();
    if (d.param.empty()) {
      dim->set_dim_value(d.value);
    } else {
      dim->set_dim_param(d.param);
    }
  }
}

}  // namespace

void GraphBuilder::Input(const std::string& name, int elem_type, const std::vector<Dim>& dims) {
  SetValueInfo(graph_->add_input(), name, elem_type, dims);
}

void GraphBuilder::Output(const std::string& name, int elem_type, const std::vector<Dim>& dims) {
  SetValueInfo(graph_->add_output(), name, elem_type, dims);
}

std::string GraphBuilder::Linear(const std::string& x, const std::string& w, const std::string& b) {
  const std::string y = Op("MatMul", {x, w});
  return b.empty() ? y : Op("Add", {y, b});
}

std::string GraphBuilder::LayerNorm(const std::string& x, const std::string& scale,
                                    const std::string& bias, float eps) {
  return Op("LayerNormalization", {x, scale, bias},
            {AttrInt("axis", -1), AttrFloat("epsilon", eps)});
}

std::string GraphBuilder::Gelu(const std::string& x) {
  const std::string d = Op("Div", {x, ScalarF32(static_cast<float>(M_SQRT2))});
  const std::string e = Op("Erf", {d});
  const std::string a = Op("Add", {e, ScalarF32(1.0f)});
  const std::string m = Op("Mul", {x, a});
  return Op("Mul", {m, ScalarF32(0.5f)});
}

std::string GraphBuilder::GeluTanh(const std::string& x) {
  // The op and operand order of torch.onnx's symbolic_opset9.gelu(approximate="tanh").
  const std::string cube = Op("Mul", {x, Op("Mul", {x, x})});
  const std::string cubic = Op("Mul", {ScalarF32(0.044715f), cube});
  const std::string inner =
      Op("Mul", {ScalarF32(static_cast<float>(std::sqrt(2.0 / M_PI))), Op("Add", {x, cubic})});
  const std::string a = Op("Add", {ScalarF32(1.0f), Op("Tanh", {inner})});
  return Op("Mul", {ScalarF32(0.5f), Op("Mul", {x, a})});
}

void InitModel(onnx::ModelProto* model, const std::string& graph_name,
               const std::map<std::string, std::string>& metadata) {
  model->set_ir_version(kIrVersion);
  model->set_producer_name("ptc.models");
  model->set_producer_version("0.1.0");
  auto* opset = model->add_opset_import();
  opset->set_domain("");
  opset->set_version(kOpset);
  model->mutable_graph()->set_name(graph_name);
  for (const auto& [k, v] : metadata) {
    auto* p = model->add_metadata_props();
    p->set_key(k);
    p->set_value(v);
  }
}

}  // namespace ptc::models::internal

namespace ptc::models::internal {

std::string GraphBuilder::NameLastOutput(const std::string& name) {
  graph_->mutable_node(graph_->node_size() - 1)->set_output(0, name);
  return name;
}

GraphBuilder::SeqDims GraphBuilder::DimsOf(const std::string& ids) {
  SeqDims d;
  const std::string shape = Op("Shape", {ids});
  const std::string b = Op("Gather", {shape, ScalarI64(0)}, {AttrInt("axis", 0)});
  d.t = Op("Gather", {shape, ScalarI64(1)}, {AttrInt("axis", 0)});
  d.b1 = Unsqueeze(b, {0});
  d.t1 = Unsqueeze(d.t, {0});
  return d;
}

std::string GraphBuilder::Positions(const SeqDims& dims) {
  const std::string range = Op("Range", {ScalarI64(0), dims.t, ScalarI64(1)});  // [T]
  return Unsqueeze(range, {0});                                                 // [1, T]
}

std::string GraphBuilder::CausalMask(int64_t max_seq, const SeqDims& dims) {
  onnx::TensorProto t;
  t.set_data_type(onnx::TensorProto::BOOL);
  t.add_dims(max_seq);
  t.add_dims(max_seq);
  std::string raw(static_cast<size_t>(max_seq * max_seq), '\0');
  for (int64_t i = 0; i < max_seq; ++i) {
    for (int64_t j = 0; j <= i; ++j) raw[i * max_seq + j] = 1;
  }
  t.set_raw_data(std::move(raw));
  const std::string tril = ConstTensor(std::move(t));  // [S, S]
  const std::string ends = Op("Concat", {dims.t1, dims.t1}, {AttrInt("axis", 0)});
  return Op("Slice", {tril, VectorI64({0, 0}), ends, VectorI64({0, 1})});  // [T, T]
}

std::string GraphBuilder::SplitHeads(const std::string& x, const SeqDims& dims, int64_t heads,
                                     int64_t head_dim, const std::vector<int64_t>& perm) {
  const std::string shape =
      Op("Concat", {dims.b1, dims.t1, VectorI64({heads}), VectorI64({head_dim})},
         {AttrInt("axis", 0)});
  return Transpose(Reshape(x, shape), perm);
}

std::string GraphBuilder::MergeHeads(const std::string& y, const SeqDims& dims, int64_t model_dim) {
  const std::string t = Transpose(y, {0, 2, 1, 3});  // [B, T, H, D]
  const std::string shape =
      Op("Concat", {dims.b1, dims.t1, VectorI64({model_dim})}, {AttrInt("axis", 0)});
  return Reshape(t, shape);
}

std::string GraphBuilder::Attention(const std::string& q, const std::string& kt,
                                    const std::string& v, const std::string& mask, float scale,
                                    double probs_dropout) {
  std::string att = Op("Mul", {Op("MatMul", {q, kt}), ScalarF32(scale)});  // [B, H, T, S]
  if (!mask.empty()) {
    att = Op("Where", {mask, att, ScalarF32(-std::numeric_limits<float>::infinity())});
  }
  att = Dropout(Op("Softmax", {att}, {AttrInt("axis", -1)}), probs_dropout);
  return Op("MatMul", {att, v});  // [B, H, T, D]
}

std::string GraphBuilder::CrossEntropy(const std::string& logits, const std::string& labels,
                                       int64_t vocab) {
  const std::string flat_logits = Reshape(logits, VectorI64({-1, vocab}));  // [B*T, V]
  const std::string flat_labels = Reshape(labels, VectorI64({-1}));         // [B*T]
  return Op("SoftmaxCrossEntropyLoss", {flat_logits, flat_labels},
            {AttrString("reduction", "mean"), AttrInt("ignore_index", -100)});
}

}  // namespace ptc::models::internal
