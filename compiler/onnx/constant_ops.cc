#include "compiler/onnx/constant_ops.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace ptc::onnx_import {
namespace {

template <typename T>
void CumSumTyped(const ir::Tensor& x, int64_t axis, bool exclusive, bool reverse,
                 ir::Tensor* out) {
  const ir::Shape& s = x.shape();
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < axis; ++d) outer *= s[d];
  for (int64_t d = axis + 1; d < static_cast<int64_t>(s.size()); ++d) inner *= s[d];
  const int64_t n = s[axis];
  const T* in = x.data_as<T>();
  T* o = out->mutable_data_as<T>();
  for (int64_t a = 0; a < outer; ++a) {
    for (int64_t b = 0; b < inner; ++b) {
      T acc = T(0);
      for (int64_t k = 0; k < n; ++k) {
        int64_t j = reverse ? n - 1 - k : k;
        int64_t at = (a * n + j) * inner + b;
        if (exclusive) {
          o[at] = acc;
          acc += in[at];
        } else {
          acc += in[at];
          o[at] = acc;
        }
      }
    }
  }
}

}  // namespace

absl::StatusOr<ir::Tensor> EvalCumSum(const ir::Tensor& x, int64_t axis, bool exclusive,
                                      bool reverse) {
  ir::Tensor out(x.dtype(), x.shape());
  switch (x.dtype()) {
    case ir::DType::kI32: CumSumTyped<int32_t>(x, axis, exclusive, reverse, &out); break;
    case ir::DType::kI64: CumSumTyped<int64_t>(x, axis, exclusive, reverse, &out); break;
    case ir::DType::kF32: CumSumTyped<float>(x, axis, exclusive, reverse, &out); break;
    case ir::DType::kF64: CumSumTyped<double>(x, axis, exclusive, reverse, &out); break;
    default:
      return absl::UnimplementedError(absl::StrCat(
          "CumSum of ", x.type().ToString(), " is not supported (i32, i64, f32, f64)"));
  }
  return out;
}

absl::StatusOr<ir::Tensor> EvalGatherNd(const ir::Tensor& data, const ir::Tensor& indices,
                                        int64_t batch_dims) {
  const ir::Shape& ds = data.shape();
  const ir::Shape& is = indices.shape();
  const int64_t r = static_cast<int64_t>(ds.size());
  const int64_t q = static_cast<int64_t>(is.size());
  if (q < 1 || r < 1) return absl::InvalidArgumentError("data and indices must have rank >= 1");
  if (batch_dims < 0 || batch_dims >= std::min(q, r)) {
    return absl::InvalidArgumentError(absl::StrCat("batch_dims ", batch_dims,
                                                   " must be less than both ranks"));
  }
  const int64_t depth = is.back();
  if (depth < 1 || depth > r - batch_dims) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the last dim of indices (", depth, ") must be in [1, ", r - batch_dims, "]"));
  }
  for (int64_t d = 0; d < batch_dims; ++d) {
    if (ds[d] != is[d]) {
      return absl::InvalidArgumentError("the batch dims of data and indices differ");
    }
  }
  ir::Shape out_shape(is.begin(), is.end() - 1);
  for (int64_t d = batch_dims + depth; d < r; ++d) out_shape.push_back(ds[d]);
  ir::Tensor out(data.dtype(), out_shape);
  int64_t batch = 1;
  for (int64_t d = 0; d < batch_dims; ++d) batch *= ds[d];
  int64_t per_batch_indices = 1;  // index tuples per batch
  for (int64_t d = batch_dims; d < q - 1; ++d) per_batch_indices *= is[d];
  int64_t slice = 1;  // elements per gathered slice
  for (int64_t d = batch_dims + depth; d < r; ++d) slice *= ds[d];
  int64_t batch_stride = 1;  // data elements per batch
  for (int64_t d = batch_dims; d < r; ++d) batch_stride *= ds[d];
  const size_t esize = data.nbytes() / std::max<int64_t>(1, data.num_elements());
  const auto* src = static_cast<const char*>(data.data());
  auto* dst = static_cast<char*>(out.mutable_data());
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t t = 0; t < per_batch_indices; ++t) {
      int64_t tuple = (b * per_batch_indices + t) * depth;
      int64_t offset = 0;
      for (int64_t k = 0; k < depth; ++k) {
        int64_t dim = ds[batch_dims + k];
        int64_t v = indices.GetInt(tuple + k);
        if (v < -dim || v >= dim) {
          return absl::InvalidArgumentError(absl::StrCat("index ", v, " is out of range for dim ",
                                                         batch_dims + k, " of size ", dim));
        }
        if (v < 0) v += dim;
        offset = offset * dim + v;
      }
      int64_t from = b * batch_stride + offset * slice;
      int64_t to = (b * per_batch_indices + t) * slice;
      std::memcpy(dst + to * esize, src + from * esize, static_cast<size_t>(slice) * esize);
    }
  }
  return out;
}

absl::StatusOr<ir::Tensor> GatherNdRows(const ir::Shape& ds, const ir::Tensor& indices,
                                        int64_t batch_dims, int64_t* rows) {
  const ir::Shape& is = indices.shape();
  const int64_t r = static_cast<int64_t>(ds.size());
  const int64_t q = static_cast<int64_t>(is.size());
  if (q < 1 || r < 1 || batch_dims < 0 || batch_dims >= std::min(q, r)) {
    return absl::InvalidArgumentError("invalid ranks or batch_dims");
  }
  const int64_t depth = is.back();
  if (depth < 1 || depth > r - batch_dims) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the last dim of indices (", depth, ") must be in [1, ", r - batch_dims, "]"));
  }
  for (int64_t d = 0; d < batch_dims; ++d) {
    if (ds[d] != is[d]) return absl::InvalidArgumentError("the batch dims of data and indices differ");
  }
  int64_t inner_rows = 1;  // rows per batch position
  for (int64_t d = batch_dims; d < batch_dims + depth; ++d) inner_rows *= ds[d];
  int64_t batch = 1;
  for (int64_t d = 0; d < batch_dims; ++d) batch *= ds[d];
  *rows = batch * inner_rows;
  ir::Shape out_shape(is.begin(), is.end() - 1);
  ir::Tensor out(ir::DType::kI64, out_shape);
  int64_t* o = out.mutable_data_as<int64_t>();
  const int64_t tuples = out.num_elements();
  const int64_t per_batch = tuples / std::max<int64_t>(1, batch);
  for (int64_t t = 0; t < tuples; ++t) {
    int64_t linear = 0;
    for (int64_t k = 0; k < depth; ++k) {
      const int64_t dim = ds[batch_dims + k];
      int64_t v = indices.GetInt(t * depth + k);
      if (v < -dim || v >= dim) {
        return absl::InvalidArgumentError(absl::StrCat("index ", v, " is out of range for dim ",
                                                       batch_dims + k, " of size ", dim));
      }
      linear = linear * dim + (v < 0 ? v + dim : v);
    }
    o[t] = (t / per_batch) * inner_rows + linear;
  }
  return out;
}

}  // namespace ptc::onnx_import
