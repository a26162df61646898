// Transformer model builders: GPT-2, an encoder-decoder (nn.Transformer layout) and Llama,
// emitted directly as ONNX (opset 17, checker-clean) the way the PyTorch exporter writes them,
// with seeded random weights. No PyTorch needed: `ptc model` and the tests use these to get
// models of any size, from a 1 MB byte-level demo to GPT-2 XL (1.5B parameters).
//
// Conventions shared by the builders:
//  - Inputs are i64 token ids with symbolic dims ("batch", "seq" / "src_seq", "tgt_seq"), bound
//    at import (--dim batch=8). Positions come from Range(0, Shape(ids)[1]) and masks are
//    Slice'd to [T, T] with Shape-derived bounds: the importer folds these chains.
//  - Linear layers are MatMul(x, W[in, out]) + bias (GPT-2's Conv1D layout, no Transpose).
//  - Initializers are exactly the trainable parameters; buffers (the causal mask, rotary
//    cos/sin tables) are Constant nodes, so training never treats them as weights.
//  - with_loss: an extra input `labels` (same shape as the ids, already shifted: labels[t] is
//    the target for position t) and one output `loss` = SoftmaxCrossEntropyLoss(mean,
//    ignore_index=-100) over logits viewed as [B*T, V], like F.cross_entropy's export.
//    Otherwise one output `logits` [batch, seq, vocab].
#ifndef PTC_MODELS_MODELS_H_
#define PTC_MODELS_MODELS_H_

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "onnx/onnx_pb.h"

namespace ptc::models {

// GPT-2: pre-norm blocks, learned position embeddings, GELU in GPT-2's tanh approximation
// (gelu_new; `gelu = "erf"` for the exact form), LM head tied to the token embedding (one `wte`
// initializer used by the Gather and, transposed, by the head).
// Init as GPT-2: N(0, init_std) weights, residual projections (attn.c_proj, mlp.c_proj) scaled
// by 1/sqrt(2 * layers), biases 0, LayerNorm weight 1.
struct Gpt2Config {
  int64_t vocab = 256;
  int64_t layers = 4;
  int64_t dim = 256;
  int64_t heads = 4;
  int64_t seq = 128;  // max positions (wpe rows, causal mask size)
  bool with_loss = false;
  uint64_t seed = 0;
  double init_std = 0.02;
  float ln_eps = 1e-5f;
  // "tanh": GPT-2's gelu_new, as torch.onnx exports F.gelu(x, approximate='tanh');
  // "erf": exact, as it exports F.gelu(x).
  std::string gelu = "tanh";
  // GPT-2's resid_pdrop / embd_pdrop (0.1 in its config): dropout on the embeddings' sum and on
  // each block's attention and MLP outputs before their residual adds, as nn.Dropout exported
  // in training mode. 0 (the default, as nanoGPT's pretraining): none.
  double dropout = 0.0;
  // GPT-2's attn_pdrop (0.1 in its config too): dropout on the attention probabilities, which
  // fuse-attention takes into the fused attention (nothing T x T stored). < 0 (the default):
  // `dropout`'s ratio, as GPT-2's config has them.
  double attn_dropout = -1.0;
};

// Encoder-decoder, torch.nn.Transformer layout (post-norm: x = LN(x + sublayer(x)), final
// LayerNorm after each stack, ReLU FFN), separate source/target embeddings and one learned
// position table shared by both sides, untied output projection with bias. Encoder
// self-attention is unmasked (no padding mask); decoder self-attention is causal; cross
// attention reads the encoder output. Inputs src_ids [batch, src_seq], tgt_ids [batch, tgt_seq];
// logits [batch, tgt_seq, tgt_vocab]; with_loss adds labels [batch, tgt_seq].
struct Seq2SeqConfig {
  int64_t src_vocab = 256;
  int64_t tgt_vocab = 256;
  int64_t encoder_layers = 2;
  int64_t decoder_layers = 2;
  int64_t dim = 256;
  int64_t heads = 4;
  int64_t ffn = 1024;
  int64_t seq = 128;  // max positions of either side
  bool with_loss = false;
  uint64_t seed = 0;
  double init_std = 0.02;
  float ln_eps = 1e-5f;
  // nn.Transformer's dropout (0.1 there), at its places: each sublayer's output before its
  // residual add, the FFN's hidden activation (the second linear's input), the attention
  // probabilities (nn.MultiheadAttention's, fused into the attentions), and here the
  // embeddings' sum. Applied by training steps, dropped by inference plans. 0 (default): none.
  double dropout = 0.0;
};

// Llama: pre-norm RMSNorm (Pow / ReduceMean / Add / Sqrt / Div / Mul), rotary position
// embeddings (rotate-half form on q and k; cos/sin tables [seq, head_dim/2] Slice'd to T),
// causal attention with optional grouped KV heads (repeated with Expand like HF's repeat_kv),
// SwiGLU MLP (down(silu(gate(x)) * up(x)), SiLU as x * Sigmoid(x)), no biases, untied LM head.
struct LlamaConfig {
  int64_t vocab = 256;
  int64_t layers = 4;
  int64_t dim = 256;
  int64_t heads = 4;
  int64_t kv_heads = 0;  // 0: same as heads
  int64_t ffn = 0;       // 0: Llama's rule, 2/3 * 4 * dim rounded up to a multiple of 256
  int64_t seq = 128;     // max positions (rotary table rows, causal mask size)
  double rope_theta = 10000.0;
  float rms_eps = 1e-5f;
  bool with_loss = false;
  uint64_t seed = 0;
  double init_std = 0.02;
};

// Presets. GPT-2: tiny (byte-level demo: vocab 256, 4 layers, dim 256, 4 heads, seq 128),
// small (124M), medium (355M), large (774M), xl (1.5B). Seq2seq: tiny, base, big (the
// "Attention is all you need" sizes). Llama: tiny, 1b (TinyLlama 1.1B), 7b (Llama-2 7B).
// An unknown name is an InvalidArgument listing the presets.
absl::StatusOr<Gpt2Config> Gpt2Preset(std::string_view name);
absl::StatusOr<Seq2SeqConfig> Seq2SeqPreset(std::string_view name);
absl::StatusOr<LlamaConfig> LlamaPreset(std::string_view name);
std::vector<std::string> Gpt2PresetNames();
std::vector<std::string> Seq2SeqPresetNames();
std::vector<std::string> LlamaPresetNames();

// Trainable parameter counts from the config alone (no weights built). The config must be
// valid (see Validate).
int64_t ParameterCount(const Gpt2Config& config);
int64_t ParameterCount(const Seq2SeqConfig& config);
int64_t ParameterCount(const LlamaConfig& config);

// Checks sizes (positive, dim divisible by heads, even head dim for rotary, ...). Errors name
// the field, its value and what to change.
absl::Status Validate(const Gpt2Config& config);
absl::Status Validate(const Seq2SeqConfig& config);
absl::Status Validate(const LlamaConfig& config);

absl::StatusOr<onnx::ModelProto> BuildGpt2(const Gpt2Config& config);
absl::StatusOr<onnx::ModelProto> BuildSeq2Seq(const Seq2SeqConfig& config);
absl::StatusOr<onnx::ModelProto> BuildLlama(const LlamaConfig& config);

// For the CLI: family "gpt2" | "seq2seq" | "llama", a preset name, and overrides by config field
// name ("vocab", "layers", "dim", "heads", "seq", "kv_heads", "ffn", "src_vocab", "tgt_vocab",
// "encoder_layers", "decoder_layers", "seed", "loss" = 0/1/true/false, gpt2's "gelu" =
// tanh/erf). Unknown families, presets
// or keys, and bad values, are InvalidArgument errors that list what is accepted.
absl::StatusOr<onnx::ModelProto> BuildModel(std::string_view family, std::string_view preset,
                                            const std::map<std::string, std::string>& overrides);

// Initializers of at least this many bytes go to external data by default (the onnx Python
// package's convert_model_to_external_data default is 1024 too).
inline constexpr int64_t kDefaultExternalDataThreshold = 1024;

// Writes `model` to `path`. Initializers stored as raw_data with at least
// `external_data_threshold` bytes are written to `<path>.data` (a plain file name in the same
// folder, 64-byte aligned offsets) and referenced as ONNX external data (location, offset,
// length); a negative threshold keeps everything inline. Models over protobuf's 2 GiB limit
// need external data: an inline model that is too large is an error saying so. Both files are
// written to temporary names and renamed into place. `model` is not modified.
absl::Status WriteModel(const onnx::ModelProto& model, const std::string& path,
                        int64_t external_data_threshold = kDefaultExternalDataThreshold);

}  // namespace ptc::models

#endif  // PTC_MODELS_MODELS_H_
