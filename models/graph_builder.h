// Internal helper of the model builders (models/*.cc): appends ONNX nodes, constants and
// initializers to a GraphProto with PyTorch-exporter style names ("/h.0/attn/MatMul_1", output
// "/h.0/attn/MatMul_1_output_0"), and draws weights from a seeded, machine-independent RNG.
// Not part of the public API (models.h).
#ifndef PTC_MODELS_GRAPH_BUILDER_H_
#define PTC_MODELS_GRAPH_BUILDER_H_

#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "onnx/onnx_pb.h"

namespace ptc::models::internal {

inline constexpr int kOpset = 17;
inline constexpr int kIrVersion = 8;

// Elements per independently seeded RNG stream of a weight tensor.
inline constexpr int64_t kRngChunk = int64_t{1} << 20;

// Deterministic N(0, 1) samples: std::mt19937_64 (its output sequence is fixed by the standard)
// turned into doubles with 53 bits and Box-Muller, so that a seed gives the same weights on every
// machine and standard library (std::normal_distribution is implementation-defined).
class NormalRng {
 public:
  explicit NormalRng(uint64_t seed) : engine_(seed) {}
  double Next();

 private:
  double Uniform();  // (0, 1]
  std::mt19937_64 engine_;
  bool has_spare_ = false;
  double spare_ = 0;
};

// One ONNX attribute, built with the helpers below.
onnx::AttributeProto AttrInt(const std::string& name, int64_t v);
onnx::AttributeProto AttrFloat(const std::string& name, float v);
onnx::AttributeProto AttrInts(const std::string& name, const std::vector<int64_t>& v);
onnx::AttributeProto AttrString(const std::string& name, const std::string& v);

// A graph input/output dim: a fixed size or a symbolic name.
struct Dim {
  Dim(int64_t v) : value(v) {}                 // NOLINT: implicit on purpose ({"batch", 8})
  Dim(const char* p) : param(p) {}             // NOLINT
  Dim(std::string p) : param(std::move(p)) {}  // NOLINT
  int64_t value = -1;
  std::string param;
};

class GraphBuilder {
 public:
  GraphBuilder(onnx::GraphProto* graph, uint64_t seed) : graph_(graph), seed_(seed) {}

  // Names nodes of the enclosed ops "/<scope>/<Op>[_k]" like the PyTorch exporter's module
  // scopes ("/h.0/attn/MatMul"). Scopes nest; use the RAII Scope below.
  class Scope {
   public:
    Scope(GraphBuilder* b, const std::string& name) : b_(b) { b_->scopes_.push_back(name); }
    ~Scope() { b_->scopes_.pop_back(); }
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    GraphBuilder* b_;
  };

  // Appends a node; returns its outputs' names.
  std::vector<std::string> OpN(const std::string& op_type, const std::vector<std::string>& inputs,
                               int num_outputs, std::vector<onnx::AttributeProto> attrs = {});
  std::string Op(const std::string& op_type, const std::vector<std::string>& inputs,
                 std::vector<onnx::AttributeProto> attrs = {}) {
    return OpN(op_type, inputs, 1, std::move(attrs))[0];
  }

  // Constant nodes (not initializers: they are not trainable).
  std::string ConstI64(const std::vector<int64_t>& values, const std::vector<int64_t>& dims);
  std::string ScalarI64(int64_t v) { return ConstI64({v}, {}); }
  std::string VectorI64(const std::vector<int64_t>& v) {
    return ConstI64(v, {static_cast<int64_t>(v.size())});
  }
  std::string ScalarF32(float v);
  std::string ConstTensor(onnx::TensorProto tensor);  // name is set here

  // Trainable initializers (f32), data in raw_data (little-endian).
  std::string ParamNormal(const std::string& name, const std::vector<int64_t>& dims, double std);
  std::string ParamFill(const std::string& name, const std::vector<int64_t>& dims, float value);

  void Input(const std::string& name, int elem_type, const std::vector<Dim>& dims);
  void Output(const std::string& name, int elem_type, const std::vector<Dim>& dims);

  // Common PyTorch export patterns.
  // x @ w + b with w stored [in, out] (b may be "" for no bias).
  std::string Linear(const std::string& x, const std::string& w, const std::string& b);
  std::string LayerNorm(const std::string& x, const std::string& scale, const std::string& bias,
                        float eps);
  // GELU (exact, erf form) exported as x * 0.5 * (1 + erf(x / sqrt(2))).
  std::string Gelu(const std::string& x);
  // GELU, tanh approximation (GPT-2's gelu_new), as torch.onnx exports
  // F.gelu(x, approximate='tanh') at opsets 9-17:
  // 0.5 * (x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * (x * (x * x)))))).
  std::string GeluTanh(const std::string& x);
  // nn.Dropout(ratio) exported in training mode: Dropout(x, ratio, training_mode=true), which
  // training steps apply and inference plans drop. x itself when ratio is 0.
  std::string Dropout(const std::string& x, double ratio);
  std::string Unsqueeze(const std::string& x, const std::vector<int64_t>& axes) {
    return Op("Unsqueeze", {x, VectorI64(axes)});
  }
  std::string Reshape(const std::string& x, const std::string& shape) {
    return Op("Reshape", {x, shape}, {AttrInt("allowzero", 0)});
  }
  std::string Transpose(const std::string& x, const std::vector<int64_t>& perm) {
    return Op("Transpose", {x}, {AttrInts("perm", perm)});
  }

  // Renames the first output of the most recent node (graph outputs: "logits", "loss").
  std::string NameLastOutput(const std::string& name);

  // Transformer pieces shared by the models, in the exporter's op patterns.
  // Shape(ids)[0] and [1] as i64 [1] tensors (for Concat'ed reshape targets) and T as a scalar.
  struct SeqDims {
    std::string b1, t1, t;
  };
  SeqDims DimsOf(const std::string& ids);
  // Unsqueeze(Range(0, T, 1), 0): i64 [1, T].
  std::string Positions(const SeqDims& dims);
  // A bool [max_seq, max_seq] lower-triangular Constant Slice'd to [T, T].
  std::string CausalMask(int64_t max_seq, const SeqDims& dims);
  // [B, T, H*D] -> Reshape [B, T, H, D] -> Transpose(perm).
  std::string SplitHeads(const std::string& x, const SeqDims& dims, int64_t heads, int64_t head_dim,
                         const std::vector<int64_t>& perm);
  // [B, H, T, D] -> Transpose [B, T, H, D] -> Reshape [B, T, H*D].
  std::string MergeHeads(const std::string& y, const SeqDims& dims, int64_t model_dim);
  // softmax(q @ kt * scale [masked]) @ v; q [B, H, T, D], kt [B, H, D, S], v [B, H, S, D];
  // mask "" or bool [T, S] (true = keep; masked scores are -inf, Where like masked_fill).
  // probs_dropout > 0: Dropout on the probabilities (GPT-2's attn_pdrop), which keeps the
  // attention unfused in training steps (ptc's fused attention has no dropout).
  std::string Attention(const std::string& q, const std::string& kt, const std::string& v,
                        const std::string& mask, float scale, double probs_dropout = 0.0);
  // SoftmaxCrossEntropyLoss(mean, ignore_index=-100) of logits [B, T, V] viewed as [B*T, V]
  // against labels [B, T] viewed as [B*T].
  std::string CrossEntropy(const std::string& logits, const std::string& labels, int64_t vocab);

  onnx::GraphProto* graph() { return graph_; }

 private:
  std::string NodeName(const std::string& op_type);
  onnx::TensorProto* AddInitializer(const std::string& name, const std::vector<int64_t>& dims);

  onnx::GraphProto* graph_;
  uint64_t seed_;
  std::vector<std::string> scopes_;
  std::map<std::string, int> name_counts_;
};

// Fills the ModelProto header (IR version, opset 17, producer) and metadata.
void InitModel(onnx::ModelProto* model, const std::string& graph_name,
               const std::map<std::string, std::string>& metadata);

}  // namespace ptc::models::internal

#endif  // PTC_MODELS_GRAPH_BUILDER_H_
