// ptc's IR: a typed SSA graph with static shapes.
//
// A Module owns Functions and a tensor store (weights and large constants by name). A Function
// has parameters (its arguments; weights carry the `param` flag), an ordered list of Nodes (the
// order is the schedule) and results. Every Value has a static TensorType. Symbolic ONNX dims
// (batch, sequence) are bound to integers at import (`--dim batch=8`), so shapes are plain ints.
//
// Op semantics (names, operands, attributes) are specified in ops.h; this file is only the
// container. Text form (printer.h / parser.h):
//   func @main(%idx: i64[8,128], %wte: f32[8192,256] {param}) -> (f32[8,128,256]) {
//     %x = gather(%wte, %idx) {axis=0} : f32[8,128,256]  loc("/wte/Gather")
//     return %x
//   }
#ifndef PTC_COMPILER_IR_IR_H_
#define PTC_COMPILER_IR_IR_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"

namespace ptc::ir {

enum class DType : uint8_t { kF32, kF16, kBF16, kF64, kI8, kU8, kI32, kI64, kBool };

std::string_view DTypeName(DType dtype);  // "f32", "f16", "bf16", "f64", "i8", "u8", "i32", "i64", "bool"
absl::StatusOr<DType> ParseDType(std::string_view name);
size_t DTypeSize(DType dtype);
bool IsFloat(DType dtype);  // f32, f16, bf16, f64
// f16, bf16: the low-precision float types a --precision plan computes in (widened to f32
// exactly; f32 results rounded to them once).
bool IsHalfFloat(DType dtype);

using Shape = std::vector<int64_t>;

// Product of dims; -1 on overflow or negative dims (callers treat -1 as an error).
int64_t NumElements(const Shape& shape);
std::string ShapeToString(const Shape& shape);  // "[8,128,256]", "[]" for scalars

struct TensorType {
  DType dtype = DType::kF32;
  Shape shape;

  int64_t num_elements() const { return NumElements(shape); }
  int64_t byte_size() const;  // -1 on overflow
  int rank() const { return static_cast<int>(shape.size()); }
  std::string ToString() const;  // "f32[8,128]"
  bool operator==(const TensorType& o) const { return dtype == o.dtype && shape == o.shape; }
  bool operator!=(const TensorType& o) const { return !(*this == o); }
};

// A dense tensor with a shared, 64-byte aligned (or externally owned, e.g. mmap'd) buffer.
// Copies share the buffer; use Clone() for a deep copy.
class Tensor {
 public:
  Tensor() = default;
  // Zero-filled tensor. Aborts on sizes that overflow; validate untrusted shapes first.
  Tensor(DType dtype, Shape shape);
  static Tensor FromBytes(DType dtype, Shape shape, const void* bytes, size_t nbytes);
  // Like Tensor(dtype, shape) without zero-filling (the caller writes every byte).
  static Tensor Uninitialized(DType dtype, Shape shape);
  // Wraps memory owned by `owner` (kept alive as long as any copy of this tensor lives).
  static Tensor Borrow(DType dtype, Shape shape, void* data, std::shared_ptr<void> owner);
  template <typename T>
  static Tensor FromVector(DType dtype, Shape shape, const std::vector<T>& values) {
    return FromBytes(dtype, std::move(shape), values.data(), values.size() * sizeof(T));
  }

  DType dtype() const { return type_.dtype; }
  const Shape& shape() const { return type_.shape; }
  const TensorType& type() const { return type_; }
  int64_t num_elements() const { return type_.num_elements(); }
  size_t nbytes() const { return nbytes_; }
  bool empty() const { return data_ == nullptr && nbytes_ == 0; }

  const void* data() const { return data_; }
  void* mutable_data() { return data_; }
  template <typename T>
  const T* data_as() const { return static_cast<const T*>(data_); }
  template <typename T>
  T* mutable_data_as() { return static_cast<T*>(data_); }

  Tensor Clone() const;
  // True when no other Tensor shares this buffer (a runtime may then reuse it).
  bool sole_owner() const { return owner_ != nullptr && owner_.use_count() == 1; }
  // Element i converted to double / int64 (any dtype; for small tensors, tests and folding).
  double GetDouble(int64_t i) const;
  int64_t GetInt(int64_t i) const;
  bool BitEquals(const Tensor& other) const;

 private:
  TensorType type_;
  size_t nbytes_ = 0;
  void* data_ = nullptr;
  std::shared_ptr<void> owner_;
};

// Attribute values. Printed forms: 3, 1.5, "s", [1, 2], [1.5, 2.0], ["a"], f16 (a dtype),
// dense<f32[2]: 1.0, 2.5> (a tensor).
using AttrValue = std::variant<int64_t, double, std::string, std::vector<int64_t>,
                               std::vector<double>, std::vector<std::string>, Tensor, DType>;
using AttrMap = std::map<std::string, AttrValue>;  // sorted: deterministic printing

class Node;

class Value {
 public:
  const std::string& name() const { return name_; }
  const TensorType& type() const { return type_; }
  void set_type(TensorType type) { type_ = std::move(type); }
  Node* producer() const { return producer_; }   // nullptr for function parameters
  int output_index() const { return output_index_; }
  bool is_param() const { return flags_.count("param") > 0; }  // a weight
  const std::set<std::string>& flags() const { return flags_; }
  std::set<std::string>& mutable_flags() { return flags_; }

 private:
  friend class Function;
  friend class Node;
  std::string name_;
  TensorType type_;
  Node* producer_ = nullptr;
  int output_index_ = 0;
  std::set<std::string> flags_;  // "param", later "frozen", ...
};

class Node {
 public:
  const std::string& op() const { return op_; }
  // Rewrites the node in place (outputs, and so their names and uses, are kept).
  void set_op(std::string op) { op_ = std::move(op); }
  const std::vector<Value*>& inputs() const { return inputs_; }
  const std::vector<Value*>& outputs() const { return outputs_; }
  Value* input(size_t i) const { return inputs_[i]; }
  Value* output(size_t i = 0) const { return outputs_[i]; }
  size_t num_inputs() const { return inputs_.size(); }
  size_t num_outputs() const { return outputs_.size(); }
  void set_input(size_t i, Value* v) { inputs_[i] = v; }
  void set_inputs(std::vector<Value*> v) { inputs_ = std::move(v); }

  const AttrMap& attrs() const { return attrs_; }
  AttrMap& mutable_attrs() { return attrs_; }
  bool has_attr(const std::string& name) const { return attrs_.count(name) > 0; }
  void set_attr(const std::string& name, AttrValue v) { attrs_[name] = std::move(v); }
  // Typed getters: the default when absent; an error when present with another type.
  absl::StatusOr<int64_t> GetInt(const std::string& name, std::optional<int64_t> def = {}) const;
  absl::StatusOr<double> GetFloat(const std::string& name, std::optional<double> def = {}) const;
  absl::StatusOr<std::string> GetString(const std::string& name,
                                        std::optional<std::string> def = {}) const;
  absl::StatusOr<std::vector<int64_t>> GetInts(const std::string& name,
                                               std::optional<std::vector<int64_t>> def = {}) const;
  absl::StatusOr<std::vector<double>> GetFloats(const std::string& name) const;
  absl::StatusOr<Tensor> GetTensor(const std::string& name) const;
  absl::StatusOr<DType> GetDType(const std::string& name) const;

  const std::string& loc() const { return loc_; }  // ONNX node name, "" if none
  void set_loc(std::string loc) { loc_ = std::move(loc); }
  // "op `matmul` at /h.0/attn/MatMul" for error messages.
  std::string Describe() const;

 private:
  friend class Function;
  std::string op_;
  std::vector<Value*> inputs_;
  std::vector<Value*> outputs_;
  AttrMap attrs_;
  std::string loc_;
};

class Function {
 public:
  explicit Function(std::string name) : name_(std::move(name)) {}
  Function(const Function&) = delete;
  Function& operator=(const Function&) = delete;

  const std::string& name() const { return name_; }
  const std::vector<Value*>& params() const { return params_; }
  const std::vector<Value*>& results() const { return results_; }
  void set_results(std::vector<Value*> results) { results_ = std::move(results); }
  // Nodes in schedule order.
  const std::vector<std::unique_ptr<Node>>& nodes() const { return nodes_; }

  // Adds a parameter; `name` must be unique in the function (checked by the verifier).
  Value* AddParam(std::string name, TensorType type, std::set<std::string> flags = {});
  // Appends a node at the end of the schedule (or before `before` when given). Output names
  // are made unique from `output_names` (or "v" when empty).
  Node* AddNode(std::string op, std::vector<Value*> inputs, std::vector<TensorType> output_types,
                AttrMap attrs = {}, std::string loc = "", std::vector<std::string> output_names = {},
                const Node* before = nullptr);
  // Removes nodes for which pred is true. Their outputs must be unused by then.
  void EraseNodesIf(const std::function<bool(const Node&)>& pred);
  // Replaces every use of `from` (node inputs and results) with `to`.
  void ReplaceAllUsesWith(Value* from, Value* to);
  // Reorders nodes topologically, keeping the current order where it is already valid.
  absl::Status SortTopologically();
  // Uses of each value: (node, input index). Results are not listed.
  std::map<const Value*, std::vector<std::pair<Node*, int>>> ComputeUses() const;
  int NodeIndex(const Node* node) const;  // -1 if absent
  void RemoveParam(Value* param);        // param must be unused

  std::string UniqueName(std::string_view base);
  Value* FindValue(std::string_view name) const;  // params and node outputs

 private:
  Value* NewValue(std::string name, TensorType type);
  std::string name_;
  std::vector<Value*> params_;
  std::vector<Value*> results_;
  std::vector<std::unique_ptr<Node>> nodes_;
  std::vector<std::unique_ptr<Value>> values_;
  std::map<std::string, Value*, std::less<>> names_;
  int64_t name_counter_ = 0;
};

class Module {
 public:
  Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;
  Module(Module&&) = default;
  Module& operator=(Module&&) = default;

  Function* AddFunction(std::string name);
  Function* FindFunction(std::string_view name) const;
  // The entry point: "main" if present, else the first function.
  Function* main() const;
  const std::vector<std::unique_ptr<Function>>& functions() const { return functions_; }

  // Weights (by parameter name) and large constants (referenced by `constant {ref="..."}`).
  std::map<std::string, Tensor>& tensors() { return tensors_; }
  const std::map<std::string, Tensor>& tensors() const { return tensors_; }
  // Free-form facts printed as a header comment-free `module {key="value"}` line.
  std::map<std::string, std::string>& metadata() { return metadata_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  // Deep copy (tensors share buffers).
  std::unique_ptr<Module> Clone() const;
  // Copies `src` (of this or another module) into this module as a new function `name`.
  // Tensors referenced by `src` are not copied.
  Function* CopyFunction(const Function& src, std::string name);

 private:
  std::vector<std::unique_ptr<Function>> functions_;
  std::map<std::string, Tensor> tensors_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace ptc::ir

#endif  // PTC_COMPILER_IR_IR_H_
