#include "compiler/ir/ir.h"

#include <cstdlib>
#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "compiler/support/status.h"

namespace ptc::ir {
namespace {

float HalfBitsToF32(uint16_t h) {
  uint32_t sign = (h >> 15) & 1, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign << 31;
    } else {  // subnormal
      exp = 127 - 15 + 1;
      while ((mant & 0x400) == 0) {
        mant <<= 1;
        --exp;
      }
      mant &= 0x3ff;
      bits = (sign << 31) | (exp << 23) | (mant << 13);
    }
  } else if (exp == 31) {
    bits = (sign << 31) | 0x7f800000u | (mant << 13);
  } else {
    bits = (sign << 31) | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

}  // namespace

std::string_view DTypeName(DType dtype) {
  switch (dtype) {
    case DType::kF32: return "f32";
    case DType::kF16: return "f16";
    case DType::kBF16: return "bf16";
    case DType::kF64: return "f64";
    case DType::kI8: return "i8";
    case DType::kU8: return "u8";
    case DType::kI32: return "i32";
    case DType::kI64: return "i64";
    case DType::kBool: return "bool";
  }
  return "?";
}

absl::StatusOr<DType> ParseDType(std::string_view name) {
  for (DType d : {DType::kF32, DType::kF16, DType::kBF16, DType::kF64, DType::kI8, DType::kU8,
                  DType::kI32, DType::kI64, DType::kBool}) {
    if (DTypeName(d) == name) return d;
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown dtype '", std::string(name), "'"));
}

size_t DTypeSize(DType dtype) {
  switch (dtype) {
    case DType::kF32: case DType::kI32: return 4;
    case DType::kF16: case DType::kBF16: return 2;
    case DType::kF64: case DType::kI64: return 8;
    case DType::kI8: case DType::kU8: case DType::kBool: return 1;
  }
  return 0;
}

bool IsFloat(DType d) {
  return d == DType::kF32 || d == DType::kF16 || d == DType::kBF16 || d == DType::kF64;
}

bool IsHalfFloat(DType d) { return d == DType::kF16 || d == DType::kBF16; }

int64_t NumElements(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) return -1;
    if (d != 0 && n > std::numeric_limits<int64_t>::max() / d) return -1;
    n *= d;
  }
  return n;
}

std::string ShapeToString(const Shape& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ","), "]");
}

int64_t TensorType::byte_size() const {
  int64_t n = num_elements();
  if (n < 0) return -1;
  int64_t s = static_cast<int64_t>(DTypeSize(dtype));
  if (n > std::numeric_limits<int64_t>::max() / s) return -1;
  return n * s;
}

std::string TensorType::ToString() const {
  return absl::StrCat(std::string(DTypeName(dtype)), ShapeToString(shape));
}

// ---------------------------------------------------------------------------------------------
// Tensor

namespace {
std::shared_ptr<void> AllocAligned(size_t nbytes, bool zero = true) {
  size_t rounded = (nbytes + 63) / 64 * 64;
  if (rounded == 0) rounded = 64;
  void* p = std::aligned_alloc(64, rounded);
  PTC_CHECK(p != nullptr);
  if (zero) std::memset(p, 0, rounded);
  return std::shared_ptr<void>(p, [](void* q) { std::free(q); });
}
}  // namespace

Tensor::Tensor(DType dtype, Shape shape) {
  type_ = TensorType{dtype, std::move(shape)};
  int64_t bytes = type_.byte_size();
  PTC_CHECK(bytes >= 0);
  nbytes_ = static_cast<size_t>(bytes);
  owner_ = AllocAligned(nbytes_);
  data_ = owner_.get();
}

Tensor Tensor::Uninitialized(DType dtype, Shape shape) {
  Tensor t;
  t.type_ = TensorType{dtype, std::move(shape)};
  int64_t bytes = t.type_.byte_size();
  PTC_CHECK(bytes >= 0);
  t.nbytes_ = static_cast<size_t>(bytes);
  t.owner_ = AllocAligned(t.nbytes_, /*zero=*/false);
  t.data_ = t.owner_.get();
  return t;
}

Tensor Tensor::FromBytes(DType dtype, Shape shape, const void* bytes, size_t nbytes) {
  Tensor t = Uninitialized(dtype, std::move(shape));
  PTC_CHECK(nbytes == t.nbytes_);
  if (nbytes) std::memcpy(t.data_, bytes, nbytes);
  return t;
}

Tensor Tensor::Borrow(DType dtype, Shape shape, void* data, std::shared_ptr<void> owner) {
  Tensor t;
  t.type_ = TensorType{dtype, std::move(shape)};
  int64_t bytes = t.type_.byte_size();
  PTC_CHECK(bytes >= 0);
  t.nbytes_ = static_cast<size_t>(bytes);
  t.data_ = data;
  t.owner_ = std::move(owner);
  return t;
}

Tensor Tensor::Clone() const {
  if (data_ == nullptr) return *this;
  return FromBytes(type_.dtype, type_.shape, data_, nbytes_);
}

double Tensor::GetDouble(int64_t i) const {
  const char* p = static_cast<const char*>(data_);
  switch (type_.dtype) {
    case DType::kF32: return reinterpret_cast<const float*>(p)[i];
    case DType::kF64: return reinterpret_cast<const double*>(p)[i];
    case DType::kF16: return HalfBitsToF32(reinterpret_cast<const uint16_t*>(p)[i]);
    case DType::kBF16: {
      uint32_t bits = static_cast<uint32_t>(reinterpret_cast<const uint16_t*>(p)[i]) << 16;
      float f;
      std::memcpy(&f, &bits, 4);
      return f;
    }
    case DType::kI8: return reinterpret_cast<const int8_t*>(p)[i];
    case DType::kU8: return reinterpret_cast<const uint8_t*>(p)[i];
    case DType::kI32: return reinterpret_cast<const int32_t*>(p)[i];
    case DType::kI64: return static_cast<double>(reinterpret_cast<const int64_t*>(p)[i]);
    case DType::kBool: return reinterpret_cast<const uint8_t*>(p)[i] ? 1.0 : 0.0;
  }
  return 0;
}

int64_t Tensor::GetInt(int64_t i) const {
  const char* p = static_cast<const char*>(data_);
  switch (type_.dtype) {
    case DType::kI8: return reinterpret_cast<const int8_t*>(p)[i];
    case DType::kU8: return reinterpret_cast<const uint8_t*>(p)[i];
    case DType::kI32: return reinterpret_cast<const int32_t*>(p)[i];
    case DType::kI64: return reinterpret_cast<const int64_t*>(p)[i];
    case DType::kBool: return reinterpret_cast<const uint8_t*>(p)[i] ? 1 : 0;
    default: return static_cast<int64_t>(GetDouble(i));
  }
}

bool Tensor::BitEquals(const Tensor& other) const {
  if (type_ != other.type_ || nbytes_ != other.nbytes_) return false;
  if (nbytes_ == 0) return true;
  return std::memcmp(data_, other.data_, nbytes_) == 0;
}

// ---------------------------------------------------------------------------------------------
// Node

namespace {
template <typename T>
absl::StatusOr<T> GetAttr(const Node& n, const std::string& name, const std::optional<T>& def,
                          std::string_view type_name) {
  auto it = n.attrs().find(name);
  if (it == n.attrs().end()) {
    if (def.has_value()) return *def;
    return absl::InvalidArgumentError(
        absl::StrCat(n.Describe(), ": missing required attribute '", name, "'"));
  }
  if (const T* v = std::get_if<T>(&it->second)) return *v;
  return absl::InvalidArgumentError(absl::StrCat(n.Describe(), ": attribute '", name,
                                                 "' must be ", std::string(type_name)));
}
}  // namespace

absl::StatusOr<int64_t> Node::GetInt(const std::string& name, std::optional<int64_t> def) const {
  return GetAttr<int64_t>(*this, name, def, "an integer");
}
absl::StatusOr<double> Node::GetFloat(const std::string& name, std::optional<double> def) const {
  auto it = attrs_.find(name);
  if (it != attrs_.end()) {  // integers are accepted where floats are expected
    if (const int64_t* i = std::get_if<int64_t>(&it->second)) return static_cast<double>(*i);
  }
  return GetAttr<double>(*this, name, def, "a float");
}
absl::StatusOr<std::string> Node::GetString(const std::string& name,
                                            std::optional<std::string> def) const {
  return GetAttr<std::string>(*this, name, def, "a string");
}
absl::StatusOr<std::vector<int64_t>> Node::GetInts(const std::string& name,
                                                   std::optional<std::vector<int64_t>> def) const {
  return GetAttr<std::vector<int64_t>>(*this, name, def, "a list of integers");
}
absl::StatusOr<std::vector<double>> Node::GetFloats(const std::string& name) const {
  return GetAttr<std::vector<double>>(*this, name, std::nullopt, "a list of floats");
}
absl::StatusOr<Tensor> Node::GetTensor(const std::string& name) const {
  return GetAttr<Tensor>(*this, name, std::nullopt, "a tensor");
}
absl::StatusOr<DType> Node::GetDType(const std::string& name) const {
  return GetAttr<DType>(*this, name, std::nullopt, "a dtype");
}

std::string Node::Describe() const {
  std::string s = absl::StrCat("op `", op_, "`");
  if (!outputs_.empty()) absl::StrAppend(&s, " (%", outputs_[0]->name(), ")");
  if (!loc_.empty()) absl::StrAppend(&s, " at ", loc_);
  return s;
}

// ---------------------------------------------------------------------------------------------
// Function

Value* Function::NewValue(std::string name, TensorType type) {
  auto v = std::make_unique<Value>();
  v->name_ = std::move(name);
  v->type_ = std::move(type);
  Value* raw = v.get();
  values_.push_back(std::move(v));
  names_[raw->name_] = raw;
  return raw;
}

std::string Function::UniqueName(std::string_view base) {
  std::string b(base.empty() ? "v" : base);
  if (!names_.count(b)) return b;
  while (true) {
    std::string cand = absl::StrCat(b, ".", name_counter_++);
    if (!names_.count(cand)) return cand;
  }
}

Value* Function::AddParam(std::string name, TensorType type, std::set<std::string> flags) {
  Value* v = NewValue(std::move(name), std::move(type));
  v->flags_ = std::move(flags);
  params_.push_back(v);
  return v;
}

Node* Function::AddNode(std::string op, std::vector<Value*> inputs,
                        std::vector<TensorType> output_types, AttrMap attrs, std::string loc,
                        std::vector<std::string> output_names, const Node* before) {
  auto node = std::make_unique<Node>();
  node->op_ = std::move(op);
  node->inputs_ = std::move(inputs);
  node->attrs_ = std::move(attrs);
  node->loc_ = std::move(loc);
  for (size_t i = 0; i < output_types.size(); ++i) {
    std::string base = i < output_names.size() ? output_names[i] : std::string("v");
    Value* v = NewValue(UniqueName(base), std::move(output_types[i]));
    v->producer_ = node.get();
    v->output_index_ = static_cast<int>(i);
    node->outputs_.push_back(v);
  }
  Node* raw = node.get();
  if (before == nullptr) {
    nodes_.push_back(std::move(node));
  } else {
    int idx = NodeIndex(before);
    PTC_CHECK(idx >= 0);
    nodes_.insert(nodes_.begin() + idx, std::move(node));
  }
  return raw;
}

void Function::EraseNodesIf(const std::function<bool(const Node&)>& pred) {
  std::vector<std::unique_ptr<Node>> kept;
  kept.reserve(nodes_.size());
  for (auto& n : nodes_) {
    if (pred(*n)) {
      for (Value* out : n->outputs_) {
        out->producer_ = nullptr;
        names_.erase(out->name_);
        out->name_ = absl::StrCat("<erased:", out->name_, ">");
      }
    } else {
      kept.push_back(std::move(n));
    }
  }
  nodes_ = std::move(kept);
}

void Function::ReplaceAllUsesWith(Value* from, Value* to) {
  for (auto& n : nodes_) {
    for (auto& in : n->inputs_) {
      if (in == from) in = to;
    }
  }
  for (auto& r : results_) {
    if (r == from) r = to;
  }
}

absl::Status Function::SortTopologically() {
  std::set<const Value*> available(params_.begin(), params_.end());
  std::vector<std::unique_ptr<Node>> pending = std::move(nodes_);
  nodes_.clear();
  std::vector<bool> done(pending.size(), false);
  size_t remaining = pending.size();
  while (remaining > 0) {
    bool progress = false;
    for (size_t i = 0; i < pending.size(); ++i) {
      if (done[i]) continue;
      bool ok = true;
      for (Value* in : pending[i]->inputs_) {
        if (!available.count(in)) {
          ok = false;
          break;
        }
      }
      if (!ok) continue;
      for (Value* out : pending[i]->outputs_) available.insert(out);
      done[i] = true;
      --remaining;
      progress = true;
      nodes_.push_back(std::move(pending[i]));
      // Restart from the beginning so the original order is kept where valid.
      break;
    }
    if (!progress) {
      for (size_t i = 0; i < pending.size(); ++i) {
        if (!done[i]) nodes_.push_back(std::move(pending[i]));
      }
      return absl::FailedPreconditionError(
          absl::StrCat("function @", name_, ": graph has a cycle or uses undefined values"));
    }
  }
  return absl::OkStatus();
}

std::map<const Value*, std::vector<std::pair<Node*, int>>> Function::ComputeUses() const {
  std::map<const Value*, std::vector<std::pair<Node*, int>>> uses;
  for (const auto& n : nodes_) {
    for (size_t i = 0; i < n->inputs_.size(); ++i) {
      uses[n->inputs_[i]].push_back({n.get(), static_cast<int>(i)});
    }
  }
  return uses;
}

int Function::NodeIndex(const Node* node) const {
  for (size_t i = 0; i < nodes_.size(); ++i) {
    if (nodes_[i].get() == node) return static_cast<int>(i);
  }
  return -1;
}

void Function::RemoveParam(Value* param) {
  for (size_t i = 0; i < params_.size(); ++i) {
    if (params_[i] == param) {
      params_.erase(params_.begin() + i);
      names_.erase(param->name_);
      return;
    }
  }
}

Value* Function::FindValue(std::string_view name) const {
  auto it = names_.find(name);
  return it == names_.end() ? nullptr : it->second;
}

// ---------------------------------------------------------------------------------------------
// Module

Function* Module::AddFunction(std::string name) {
  functions_.push_back(std::make_unique<Function>(std::move(name)));
  return functions_.back().get();
}

Function* Module::FindFunction(std::string_view name) const {
  for (const auto& f : functions_) {
    if (f->name() == name) return f.get();
  }
  return nullptr;
}

Function* Module::main() const {
  if (Function* f = FindFunction("main")) return f;
  return functions_.empty() ? nullptr : functions_.front().get();
}

std::unique_ptr<Module> Module::Clone() const {
  auto m = std::make_unique<Module>();
  m->tensors_ = tensors_;
  m->metadata_ = metadata_;
  for (const auto& f : functions_) m->CopyFunction(*f, f->name());
  return m;
}

Function* Module::CopyFunction(const Function& f, std::string name) {
  Function* g = AddFunction(std::move(name));
  std::map<const Value*, Value*> map;
  for (Value* p : f.params()) map[p] = g->AddParam(p->name(), p->type(), p->flags());
  for (const auto& n : f.nodes()) {
    std::vector<Value*> ins;
    for (Value* v : n->inputs()) ins.push_back(map.at(v));
    std::vector<TensorType> types;
    std::vector<std::string> names;
    for (Value* o : n->outputs()) {
      types.push_back(o->type());
      names.push_back(o->name());
    }
    Node* c = g->AddNode(n->op(), ins, types, n->attrs(), n->loc(), names);
    for (size_t i = 0; i < n->num_outputs(); ++i) {
      c->outputs()[i]->mutable_flags() = n->output(i)->flags();
      map[n->output(i)] = c->output(i);
    }
  }
  std::vector<Value*> results;
  for (Value* r : f.results()) results.push_back(map.at(r));
  g->set_results(results);
  return g;
}

}  // namespace ptc::ir
