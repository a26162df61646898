// ONNX operators ptc evaluates at import time only, on constant inputs: they appear in the
// mask and position computations exporters write (transformers' attention masks: CumSum over
// a padding mask, GatherND of its positions), which fold once the dims are bound. On run-time
// values the importer reports CumSum as unsupported and writes GatherND with constant indices
// as a Gather (GatherNdRows).
#ifndef PTC_COMPILER_ONNX_CONSTANT_OPS_H_
#define PTC_COMPILER_ONNX_CONSTANT_OPS_H_

#include "absl/status/statusor.h"
#include "compiler/ir/ir.h"

namespace ptc::onnx_import {

// CumSum (opset 14) along `axis` (normalized); i32 / i64 / f32 / f64.
absl::StatusOr<ir::Tensor> EvalCumSum(const ir::Tensor& x, int64_t axis, bool exclusive,
                                      bool reverse);

// GatherND (opset 13): `indices` int64 (or int32), last dim the index depth; any data dtype.
absl::StatusOr<ir::Tensor> EvalGatherNd(const ir::Tensor& data, const ir::Tensor& indices,
                                        int64_t batch_dims);

// GatherND of run-time data by constant indices as a Gather: the row of
// reshape(data, [rows, data.shape[batch_dims + depth:]...]) each index tuple (with its batch
// position) selects; `*rows` receives the row count. The result has indices' shape without its
// last dim (int64).
absl::StatusOr<ir::Tensor> GatherNdRows(const ir::Shape& data_shape, const ir::Tensor& indices,
                                        int64_t batch_dims, int64_t* rows);

}  // namespace ptc::onnx_import

#endif  // PTC_COMPILER_ONNX_CONSTANT_OPS_H_
