#include "compiler/ir/strides.h"

#include <utility>

namespace ptc::ir {

std::vector<int64_t> ContiguousStrides(const Shape& shape) {
  std::vector<int64_t> st(shape.size(), 1);
  for (size_t d = shape.size(); d-- > 1;) st[d - 1] = st[d] * shape[d];
  return st;
}

std::vector<int64_t> BroadcastStrides(const Shape& in, const Shape& out) {
  std::vector<int64_t> st(out.size(), 0);
  const std::vector<int64_t> cs = ContiguousStrides(in);
  const size_t off = out.size() - in.size();
  for (size_t i = 0; i < in.size(); ++i) st[off + i] = in[i] == 1 ? 0 : cs[i];
  return st;
}

void MergeDims(Shape& shape, const std::vector<std::vector<int64_t>*>& strides) {
  Shape s;
  std::vector<std::vector<int64_t>> st(strides.size());
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    bool merge = !s.empty();
    for (size_t j = 0; j < strides.size() && merge; ++j) {
      merge = st[j].back() == (*strides[j])[d] * shape[d];
    }
    if (merge) {
      s.back() *= shape[d];
      for (size_t j = 0; j < strides.size(); ++j) st[j].back() = (*strides[j])[d];
    } else {
      s.push_back(shape[d]);
      for (size_t j = 0; j < strides.size(); ++j) st[j].push_back((*strides[j])[d]);
    }
  }
  shape = std::move(s);
  for (size_t j = 0; j < strides.size(); ++j) *strides[j] = std::move(st[j]);
}

}  // namespace ptc::ir
