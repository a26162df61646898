// CUDA kernels of ptc: host-side launchers for the kernels in codegen/cuda/*.cu.
//
// This header is plain C++ (no CUDA syntax, no templates) so that the runtime (.cc files built
// by the host compiler) can call it, and so that nvcc compiles each kernel once, in one .cu
// file. Launchers check nothing about the IR: runtime/cuda/device_kernels.cc validates nodes
// and fills the descriptors below once per node; a launcher only enqueues work on `stream` and
// returns the launch status (cudaGetLastError()).
//
// Descriptors hold element (not byte) strides; a broadcast dim has stride 0. Ranks are at most
// kMaxRank after the caller merged contiguous dims.
#ifndef PTC_CODEGEN_CUDA_KERNELS_H_
#define PTC_CODEGEN_CUDA_KERNELS_H_

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "compiler/ir/dropout.h"

namespace ptc::cuda::kernels {

constexpr int kMaxRank = 8;
constexpr int kMaxFusedOperands = 16;
constexpr int kMaxFusedProgram = 256;
constexpr int kMaxFusedConstants = 64;
constexpr int kMaxFusedStack = 16;

// Same order as ir::DType.
enum class DT : int32_t { kF32, kF16, kBF16, kF64, kI8, kU8, kI32, kI64, kBool };

enum class Op : int32_t {
  // binary
  kAdd, kSub, kMul, kDiv, kPow, kMax, kMin,
  // comparisons (output bool)
  kEqual, kLess, kGreater, kLessEqual, kGreaterEqual,
  // logical (bool)
  kAnd, kOr, kXor, kNot,
  // unary
  kNeg, kAbs, kSqrt, kReciprocal, kExp, kLog, kErf, kTanh, kSigmoid, kRelu, kFloor, kCeil,
  kCos, kSin,
  kGelu, kGeluTanh, kIdentity,
};
bool IsBinary(Op op);
bool IsComparison(Op op);

// Up to three operands broadcast to one output shape.
struct BroadcastDesc {
  int32_t rank = 0;
  int64_t n = 0;                           // output elements
  int64_t shape[kMaxRank] = {};            // output shape
  int64_t strides[3][kMaxRank] = {};       // per operand, element strides (0: broadcast)
};

// out[out_offset + sum(i_d * out_strides[d])] = in[in_offset + sum(i_d * in_strides[d])]
// for every index i of `shape` (transpose, slice, expand, concat and split pieces, copies).
struct CopyDesc {
  int32_t rank = 0;
  int64_t n = 0;
  int64_t shape[kMaxRank] = {};
  int64_t in_strides[kMaxRank] = {};  // may be negative (slice with step < 0)
  int64_t out_strides[kMaxRank] = {};
  int64_t in_offset = 0;
  int64_t out_offset = 0;
};

// Reduction: the output (kept dims, row-major) against the reduced dims.
struct ReduceDesc {
  int32_t kept_rank = 0;
  int32_t red_rank = 0;
  int64_t out_n = 0;
  int64_t count = 0;  // reduced elements per output
  int64_t kept_shape[kMaxRank] = {};
  int64_t kept_strides[kMaxRank] = {};  // input strides of the kept dims
  int64_t red_shape[kMaxRank] = {};
  int64_t red_strides[kMaxRank] = {};
};
enum class ReduceKind : int32_t { kSum, kMean, kMax, kMin };

// fused_elementwise: an RPN program over operands and constants (compiler/ir/ops_fused.cc),
// interpreted per element. Lives in device memory (uploaded once per node); the operand
// pointers are passed by value at launch.
inline constexpr int kMaxFusedDropouts = 8;
struct FusedToken {
  int16_t kind;   // 0 operand, 1 constant, 2 op, 3 dropout ("dropoutK")
  int16_t index;  // operand / constant / dropout index, or an Op
};
struct FusedDesc {
  int32_t rank = 0;
  int32_t num_operands = 0;
  int32_t program_size = 0;
  int64_t n = 0;
  int64_t shape[kMaxRank] = {};
  int64_t strides[kMaxFusedOperands][kMaxRank] = {};
  FusedToken program[kMaxFusedProgram] = {};
  double constants[kMaxFusedConstants] = {};
  // Each operand's DT (fused_elementwise's `dtype`: f16 / bf16 / f32 operands of an f32 or
  // half result, all read into the compute type); the output's DT when they all match.
  int32_t operand_dt[kMaxFusedOperands] = {};
  // The "dropoutK" tokens' masks (compiler/ir/dropout.h over the output's element index): the
  // counter is operand dropout_counter[K] (an i32 / i64 scalar, read on the device; -1: 0).
  int32_t num_dropouts = 0;
  int32_t dropout_counter[kMaxFusedDropouts] = {};
  int32_t dropout_counter_i32[kMaxFusedDropouts] = {};
  uint64_t dropout_seed[kMaxFusedDropouts] = {};
  uint32_t dropout_threshold[kMaxFusedDropouts] = {};
  double dropout_scale[kMaxFusedDropouts] = {};
};
struct FusedOperands {
  const void* ptr[kMaxFusedOperands];
};

// Elementwise unary / binary op on dtype `dt` (comparisons write bool).
cudaError_t LaunchElementwise(Op op, DT dt, const BroadcastDesc& d, const void* a, const void* b,
                              void* out, cudaStream_t stream);
// where(cond, a, b): elements of `elem_bytes` (1, 2, 4, 8).
cudaError_t LaunchWhere(int elem_bytes, const BroadcastDesc& d, const void* cond, const void* a,
                        const void* b, void* out, cudaStream_t stream);
// cast with ONNX semantics (float -> int truncates, -> bool is != 0).
cudaError_t LaunchCast(DT from, DT to, int64_t n, const void* in, void* out, cudaStream_t stream);
// Several casts of one dtype pair in one launch (a --precision step's weight casts, batched by
// the executor): the mixed-precision pairs (f32 <-> f16 / bf16) with every pointer 16-byte
// aligned and n < 2^31 (CastBatchable), each tensor cut into blocks of 4096 elements, the same
// CastElement as LaunchCast (the same bits).
inline constexpr int kMaxCastTensors = 16;
struct CastTensors {
  int32_t count = 0;
  const void* in[kMaxCastTensors] = {};
  void* out[kMaxCastTensors] = {};
  int64_t n[kMaxCastTensors] = {};
};
bool CastBatchable(DT from, DT to, int64_t n, const void* in, const void* out);
cudaError_t LaunchCastBatch(DT from, DT to, const CastTensors& t, cudaStream_t stream);
cudaError_t LaunchFused(DT dt, const FusedDesc* device_desc, const FusedOperands& operands,
                        int64_t n, void* out, cudaStream_t stream);
// trilu on [batch, rows, cols]: keeps j - i >= k (upper) or j - i <= k (lower), zeros the rest.
cudaError_t LaunchTrilu(int elem_bytes, int64_t batch, int64_t rows, int64_t cols, bool upper,
                        int64_t k, const void* in, void* out, cudaStream_t stream);

// rotary (compiler/ir/ops_fused.cc) on x viewed as [rows, 2 * half]: the tables' element
// offset of (row, pair i) is the row's leading index times lead_strides plus i * pair_stride.
// x / y of dtype dt (f32, f16, bf16, f64), the tables of table_dt (f32 or dt); computed in f32
// (f64 for f64) and rounded once.
struct RotaryDesc {
  int32_t rank = 0;                     // leading dims, merged (<= kMaxRank)
  int32_t inverse = 0;                  // 1: sin negated
  int32_t interleaved = 0;              // 1: pairs (2i, 2i + 1), else (i, half + i)
  int64_t rows = 0;
  int64_t half = 0;                     // rotated pairs per row (rotary_dim / 2)
  int64_t d = 0;                        // row length (elements past 2 half copied)
  int64_t lead_shape[kMaxRank] = {};
  int64_t lead_strides[kMaxRank] = {};  // the tables' strides (0: broadcast)
  int64_t pair_stride = 0;              // 0 or 1
};
cudaError_t LaunchRotary(DT dt, DT table_dt, const RotaryDesc& d, const void* x, const void* cos,
                         const void* sin, void* y, cudaStream_t stream);

// swiglu / swiglu_grad (compiler/ir/ops_fused.cc, ops_train.cc) over n elements of dtype dt
// (f32, f16, bf16, f64), every operand and output contiguous: y = g sigmoid(g) u; dg, du from
// dy with sigmoid(g) recomputed. Computed in f32 (f64 for f64), each output rounded once.
// act: the gate's activation, 0 silu, 1 gelu_tanh, 2 gelu (ir::GateActivation).
cudaError_t LaunchSwiglu(DT dt, int act, int64_t n, const void* g, const void* u, void* y,
                         cudaStream_t stream);
cudaError_t LaunchSwigluGrad(DT dt, int act, int64_t n, const void* dy, const void* g, const void* u,
                             void* dg, void* du, cudaStream_t stream);

// dropout (compiler/ir/ops.h, dropout.cu) over n contiguous elements of dtype dt (f32, f16,
// bf16, f64): the CPU kernel's mask (compiler/ir/dropout.h) from `seed` and the counter read on
// the device (an i32 / i64 scalar; nullptr: 0); mask (bool, may be nullptr) gets the kept bits.
cudaError_t LaunchDropout(DT dt, int64_t n, const void* x, const void* counter, bool counter_i32,
                          double ratio, uint64_t seed, void* y, void* mask, cudaStream_t stream);

cudaError_t LaunchStridedCopy(int elem_bytes, const CopyDesc& d, const void* in, void* out,
                              cudaStream_t stream);
// gather on data viewed as [outer, axis_dim, inner] with `num_indices` indices: out is
// [outer, num_indices, inner]. An index outside [-axis_dim, axis_dim) writes zeros and stores
// `error_code` into *error_flag (checked by the executor after the step).
cudaError_t LaunchGather(int elem_bytes, int64_t outer, int64_t axis_dim, int64_t num_indices,
                         int64_t inner, const void* data, const void* indices, bool indices_i64,
                         void* out, int* error_flag, int error_code, cudaStream_t stream);

// kv_cache_write(cache, update, pos) {axis} over [outer, rows, inner_bytes]: out = cache (copied
// first unless out == cache, the decode plan's in-place case), then out[:, pos, :] = update;
// pos (i64, device) outside [0, rows) sets *error_flag = error_code.
cudaError_t LaunchKvCacheWrite(int64_t outer, int64_t rows, int64_t inner_bytes, const void* cache,
                               const void* update, const void* pos, void* out, int* error_flag,
                               int error_code, cudaStream_t stream);

// softmax / log_softmax over the middle dim of [outer, n, inner].
cudaError_t LaunchSoftmax(DT dt, int64_t outer, int64_t n, int64_t inner, bool log_softmax,
                          const void* in, void* out, cudaStream_t stream);
// layer_norm over rows of `d` elements. scale / bias have d elements or one (`*_bcast`); bias
// may be null; mean / inv_std_dev (f32, one per row) may be null. y is of out_dt: dt, or f16 /
// bf16 for an f32 x (layer_norm {dtype}). `rms` (layer_norm {rms=1}): RMSNorm, mean written as 0.
cudaError_t LaunchLayerNorm(DT dt, DT out_dt, int64_t rows, int64_t d, double epsilon, bool rms,
                            const void* x, const void* scale, bool scale_bcast, const void* bias,
                            bool bias_bcast, void* y, float* mean, float* inv_std_dev,
                            cudaStream_t stream);
// Attention scores [B*H*Tq, Tk] (f32, already scaled) -> probabilities, in place. mask_kind 0:
// none, 1: bool (true masks out: -inf), 2: f32 added; mask_strides are its element strides over
// [B, H, Tq, Tk] (0 where broadcast).
cudaError_t LaunchAttentionSoftmax(int64_t rows, int64_t tq, int64_t heads, int64_t tk,
                                   float* scores, const void* mask, int mask_kind,
                                   const int64_t mask_strides[4], cudaStream_t stream);
cudaError_t LaunchReduce(DT dt, ReduceKind kind, const ReduceDesc& d, const void* in, void* out,
                         cudaStream_t stream);
// With scratch of ReduceWorkspaceBytes(dt, d) bytes (0 for most descriptors): column reductions
// ([rows, cols] over rows, e.g. bias gradients) then split the rows into chunks (coalesced,
// deterministic: partials combined in a fixed order). A null workspace takes the paths above.
size_t ReduceWorkspaceBytes(DT dt, const ReduceDesc& d);
cudaError_t LaunchReduce(DT dt, ReduceKind kind, const ReduceDesc& d, const void* in, void* out,
                         void* workspace, cudaStream_t stream);

// ------------------------------------------------------------------ training (train.cu)
// Losses over scores [n, c, d] (ONNX SoftmaxCrossEntropyLoss / NegativeLogLikelihoodLoss) with
// labels [n, d] (i32 or i64). A label outside [0, c) that is not ignore_index stores
// `error_code` into *error_flag (its element contributes nothing).
struct LossDesc {
  int64_t n = 0, c = 0, d = 0;
  int32_t reduction = 2;  // 0 none, 1 sum, 2 mean
  bool has_ignore = false;
  int64_t ignore_index = 0;
};
// linear_ce_loss pieces (runtime/cuda/gemm.cc composes them with cuBLASLt GEMMs over blocks of
// rows). LaunchLossNorm: validates the labels of all d.n rows (d.c classes, d.d = 1) and stores
// 1 / count ("mean", d.reduction 2) or 1 ("sum") into norm[0]. LaunchLinearCeRows: per row of a
// block of logits [rows, v] (logits_dt f32, or bf16 / f16 with g_dt the same) with row stride
// ld (labels of that block), each logit plus bias[j] when bias (g_dt, [v]) is not null, times
// scale (G too) and then, with softcap > 0, capped to softcap * tanh(z / softcap) (G then times
// 1 - tanh^2):
// row_loss = lse - x[label], row_w = 1 (0 when ignored), and with
// grads G = (softmax - onehot) * norm[0] into g (g_dt f32, bf16 or f16; row stride ld; g may
// be the logits themselves when the dtypes agree: each element is read before it is written).
// LaunchLossReduce: out[0] = sum(row_loss) (reduction 1) or sum / sum(row_w) (2), in a fixed
// order. LaunchColumnSumAccumulate: acc[j] += sum of g[r * ld + j] over r < rows (g_dt f32,
// bf16 or f16; f32 sums in a fixed order): the bias gradient, one block of G at a time.
cudaError_t LaunchLossNorm(const LossDesc& d, const void* labels, bool labels_i64, float* norm,
                           int* error_flag, int error_code, cudaStream_t stream);
cudaError_t LaunchLinearCeRows(int64_t rows, int64_t v, int64_t ld, DT logits_dt,
                               const void* logits, DT g_dt, void* g, const void* bias,
                               const void* labels, bool labels_i64, bool has_ignore,
                               int64_t ignore_index, const float* norm, bool grads,
                               float scale, float softcap, float* row_loss, float* row_w,
                               int* error_flag, int error_code, cudaStream_t stream);
cudaError_t LaunchColumnSumAccumulate(int64_t rows, int64_t v, int64_t ld, DT g_dt,
                                      const void* g, float* acc, cudaStream_t stream);
cudaError_t LaunchLossReduce(int64_t rows, int reduction, const float* row_loss,
                             const float* row_w, float* out, cudaStream_t stream);
// Scratch of LaunchLoss (per-row loss and weight for the deterministic final sum).
size_t LossWorkspaceBytes(DT dt, const LossDesc& d);
// softmax: softmax_ce_loss (log_prob may be null), else nll_loss. loss is [n, d] for reduction
// none, else one element. weight may be null.
cudaError_t LaunchLoss(DT dt, bool softmax, const LossDesc& d, const void* x, const void* labels,
                       bool labels_i64, const void* weight, void* loss, void* log_prob,
                       void* workspace, int* error_flag, int error_code, cudaStream_t stream);
// softmax_ce_loss_grad (x = log_prob) / nll_loss_grad (x = input) -> dx [n, c, d].
// Scratch: 16 bytes.
cudaError_t LaunchLossGrad(DT dt, bool softmax, const LossDesc& d, const void* dloss,
                           const void* x, const void* labels, bool labels_i64, const void* weight,
                           void* dx, void* workspace, int* error_flag, int error_code,
                           cudaStream_t stream);
// A dropout's mask (compiler/ir/dropout.h) for the kernels that apply one (LaunchDropout,
// layer_norm_grad's dx_low): the counter read on the device (nullptr: counter 0), threshold 0
// keeps everything; kept values are multiplied by scale.
struct DropoutArgs {
  const void* counter = nullptr;
  int32_t counter_i32 = 0;
  uint64_t seed = 0;
  uint32_t threshold = 0;
  double scale = 1;
};
// The arguments of dropout {ratio, seed} (ratio in [0, 1]) with the given counter.
inline DropoutArgs MakeDropoutArgs(double ratio, uint64_t seed, const void* counter = nullptr,
                                   bool counter_i32 = false) {
  return {counter, counter_i32 ? 1 : 0, seed, ir::DropoutThreshold(ratio),
          ir::DropoutScale(ratio)};
}
// layer_norm_grad over rows of `d` elements: dx, dscale, dbias (column sums in a fixed order:
// per-chunk partials in scratch, then one thread per column). dy is of dy_dt: dt, or f16 /
// bf16 for an f32 layer norm (fold-norm-casts). addend (dt, x's shape; may be null) is added
// to dx (fuse-norm-grad-add). dx_low (may be null; only for an f32 layer norm with an f16 /
// bf16 dy): dx rounded to dy_dt as well, the bits of a cast of dx (fold-norm-casts). `rms`
// (layer_norm_grad {rms=1}): no mean(dy * scale) term in dx (mean holds the forward's zeros).
// low_dropout (layer_norm_grad {low_dropout}, needs dx_low): dx_low is that dropout of dx over
// its element index r * d + j, dx times the scale where kept, rounded once.
size_t LayerNormGradWorkspaceBytes(DT dt, int64_t rows, int64_t d);
cudaError_t LaunchLayerNormGrad(DT dt, DT dy_dt, int64_t rows, int64_t d, bool rms, const void* dy,
                                const void* x, const void* scale, const float* mean,
                                const float* inv_std_dev, const void* addend, void* dx,
                                void* dscale, void* dbias, void* dx_low, void* workspace,
                                cudaStream_t stream, const DropoutArgs& low_dropout = {});
cudaError_t LaunchGeluGrad(DT dt, bool tanh_approx, int64_t n, const void* dy, const void* x,
                           void* dx, cudaStream_t stream);
// gather_grad: dy [outer, num_indices, inner] scattered-added into out [outer, axis_dim, inner].
// Deterministic (no float atomics): indices are bucketed by value (counting sort, stable by
// position; counted and filled in chunks of at least 1024 positions, one warp per chunk),
// then every output element sums its bucket in index order (one block per output row).
// Scratch: int32 per axis_dim entry (2 + chunks) times and per index once (chunks: at most
// 64). Needs axis_dim, num_indices < 2^31. With `base`
// (else null: zeros) the sums are added to it; out may be base itself.
size_t GatherGradWorkspaceBytes(int64_t axis_dim, int64_t num_indices);
cudaError_t LaunchGatherGrad(DT dt, int64_t outer, int64_t axis_dim, int64_t num_indices,
                             int64_t inner, const void* dy, const void* indices, bool indices_i64,
                             const void* base, void* out, void* workspace, int* error_flag,
                             int error_code, cudaStream_t stream);
// lr_schedule (ops_train.cc) on the device scalar `step`.
cudaError_t LaunchLrSchedule(double lr, bool cosine, int64_t warmup, int64_t total_steps,
                             double min_lr_ratio, const float* step, float* out,
                             cudaStream_t stream);
// adamw_update of up to kMaxAdamTensors tensors in one launch (multi-tensor apply): each block
// updates one 1024-element chunk of one tensor; f32 tensors with 16-byte aligned pointers use
// 16-byte loads. lr and step are device f32 scalars.
constexpr int kMaxAdamTensors = 16;
struct AdamWTensors {
  int32_t count = 0;
  const void* w[kMaxAdamTensors] = {};
  const void* g[kMaxAdamTensors] = {};
  const void* m[kMaxAdamTensors] = {};
  const void* v[kMaxAdamTensors] = {};
  void* w_out[kMaxAdamTensors] = {};
  void* m_out[kMaxAdamTensors] = {};
  void* v_out[kMaxAdamTensors] = {};
  int64_t n[kMaxAdamTensors] = {};
};
struct AdamWParams {
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
};
// apply (device bool[], or null: always): false leaves every w, m, v as it is (outputs copied
// from the inputs where they are other buffers).
cudaError_t LaunchAdamW(DT dt, const AdamWTensors& t, const AdamWParams& p, const float* lr,
                        const float* step, const bool* apply, cudaStream_t stream);
// sgd_update; mom / mom_out null without momentum buffer.
cudaError_t LaunchSgd(DT dt, int64_t n, double momentum, double weight_decay, const float* lr,
                      const void* w, const void* g, const void* mom, void* w_out, void* mom_out,
                      cudaStream_t stream);

// --------------------------------------------------------------- attention (attention.cu)
// Flash-style attention forward: O = softmax(cap(scale Q K^T) [+ mask]) V per (batch, head)
// (cap: AttentionDesc::softcap), online
// softmax over key tiles in shared memory, f32 accumulation, never materializes Tq x Tk.
// Element strides of each operand over (b, h, t); the head dim is contiguous.
// Head dims up to 256 (Gemma's): the SIMT kernels; the tensor-core ones take 64 and 128.
constexpr int kFlashMaxHeadDim = 256;
struct AttentionDesc {
  int64_t b = 0, h = 0, tq = 0, tk = 0, d = 0, dv = 0;
  // Grouped-query attention: k / v (and dk / dv) have hkv heads, a divisor of h; query head i
  // reads kv head i / (h / hkv) (k_strides / v_strides step over kv heads). 0: hkv = h.
  int64_t hkv = 0;
  float scale = 1.f;
  // > 0: each scaled score s becomes softcap * tanh(s / softcap) before the mask (attention's
  // softcap attribute, Gemma 2); the backwards multiply dS by 1 - tanh^2. 0: none.
  float softcap = 0.f;
  int64_t q_strides[3] = {}, k_strides[3] = {}, v_strides[3] = {}, o_strides[3] = {};
  // 0 none, 1 bool (true: masked out), 2 additive (q's dtype), kAttentionMaskCausal: the
  // causal triangle by index (key j masked for query t iff j > t + tk - tq; the mask operand is
  // not read: the node's causal=1 attribute, set by annotate-causal, vouches for it).
  int32_t mask_kind = 0;
  int64_t mask_strides[4] = {};      // over [b, h, q, k]; 0 where broadcast
  // Attention dropout (attention's dropout attribute r): the probabilities are dropped before
  // the product with V by compiler/ir/dropout.h's mask, element ((b h + hi) tq + t) tk + key,
  // kept ones times dropout_scale, with key DropoutKey(dropout_seed, *dropout_counter) (an i32 /
  // i64 scalar read on the device, so a CUDA graph replays a new mask each step; nullptr: 0).
  // dropout_threshold = DropoutThreshold(r) (0: no dropout), dropout_scale = DropoutScale(r),
  // both from r on the host (the CPU kernel's numbers). The backwards redraw the mask.
  uint32_t dropout_threshold = 0;
  float dropout_scale = 1.f;
  uint64_t dropout_seed = 0;
  const void* dropout_counter = nullptr;
  int32_t dropout_counter_i32 = 0;
};
// Whether a descriptor drops (AttentionDesc::dropout_threshold).
inline bool AttentionDropout(const AttentionDesc& d) { return d.dropout_threshold != 0; }
constexpr int32_t kAttentionMaskCausal = 3;
// The k / v heads of a descriptor (see AttentionDesc::hkv).
inline int64_t AttentionKvHeads(const AttentionDesc& d) { return d.hkv > 0 ? d.hkv : d.h; }
// Whether hkv is valid: 0, or a positive divisor of h.
inline bool AttentionHeadsValid(const AttentionDesc& d) {
  return d.hkv == 0 || (d.hkv > 0 && d.h % d.hkv == 0);
}
// Supported: d, dv <= kFlashMaxHeadDim, dt f32 / f16 / bf16. lse (f32 [b, h, tq], natural log
// of the softmax denominator incl. the max) may be null; the backward uses it.
bool FlashAttentionSupported(DT dt, const AttentionDesc& d);
cudaError_t LaunchFlashAttention(DT dt, const AttentionDesc& d, const void* q, const void* k,
                                 const void* v, const void* mask, void* o, float* lse,
                                 cudaStream_t stream);
// Backward of the above (no IR op yet: tested directly, tests/cuda/flash_attention_test.cc).
// dO and O share o_strides; dq / dk / dv share q / k / v strides and are f32 (dq accumulated
// with atomics over key tiles: not bitwise deterministic; each dk / dv row is summed by one
// warp, over a kv head's group of query heads in order). Scratch: f32 [b, h, tq].
size_t FlashAttentionBackwardWorkspaceBytes(const AttentionDesc& d);
// The backward's first phase, shared by the SIMT and tensor-core backwards: dsum[b, h, t] =
// sum_c dO[t, c] O[t, c] (f32, one warp per query row; O and dO share o_strides).
cudaError_t LaunchAttentionRowDot(DT dt, const AttentionDesc& d, const void* o, const void* d_o,
                                  float* dsum, cudaStream_t stream);
cudaError_t LaunchFlashAttentionBackward(DT dt, const AttentionDesc& d, const void* q,
                                         const void* k, const void* v, const void* mask,
                                         const void* o, const void* d_o, const float* lse,
                                         float* dq, float* dk, float* dv, void* workspace,
                                         cudaStream_t stream);

// ------------------------------------------------ tensor-core attention (attention_tc.cu)
// FlashAttention-2-style forward and backward on mma.sync m16n8k16 (f16 / bf16, f32
// accumulation) for d == dv in {64, 128}; same AttentionDesc, semantics and lse layout as the
// SIMT kernels above (which remain the path for everything else). Operands q, k, v, o, d_o and
// the gradients must be 16-byte aligned (cudaErrorMisalignedAddress otherwise; the executor's
// buffers are). Unsupported descriptors give cudaErrorInvalidValue.
bool FlashAttentionTcSupported(DT dt, const AttentionDesc& d);
cudaError_t LaunchFlashAttentionTc(DT dt, const AttentionDesc& d, const void* q, const void* k,
                                   const void* v, const void* mask, void* o, float* lse,
                                   cudaStream_t stream);
// Backward: deterministic (a dK/dV pass per key tile and a dQ pass per query tile, no atomics);
// dq / dk / dv are written in dt (q / k / v strides). lse from LaunchFlashAttentionTc (the P of
// the backward must be the forward's). Scratch: f32 [b, h, tq], the SIMT backward's
// (FlashAttentionBackwardWorkspaceBytes).
cudaError_t LaunchFlashAttentionTcBackward(DT dt, const AttentionDesc& d, const void* q,
                                           const void* k, const void* v, const void* mask,
                                           const void* o, const void* d_o, const float* lse,
                                           void* dq, void* dk, void* dv, void* workspace,
                                           cudaStream_t stream);

}  // namespace ptc::cuda::kernels

#endif  // PTC_CODEGEN_CUDA_KERNELS_H_
