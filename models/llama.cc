// Llama as ONNX. Initializer names follow HF's LlamaForCausalLM ("embed_tokens.weight",
// "layers.0.self_attn.q_proj.weight", "norm.weight", "lm_head.weight"), with Linear weights
// stored [in, out]. Op patterns follow HF's modeling_llama export at opset 17: RMSNorm as
// Pow / ReduceMean / Add / Sqrt / Div / Mul, rotate-half rotary embeddings on the two halves of
// each head, repeat_kv as Unsqueeze / Expand / Reshape, SiLU as x * Sigmoid(x).
#include <cmath>

#include "absl/strings/str_cat.h"
#include "compiler/support/status.h"
#include "models/graph_builder.h"
#include "models/models.h"
#include "models/presets.h"

namespace ptc::models {
namespace {

using internal::AttrInt;
using internal::AttrInts;
using internal::GraphBuilder;

const std::vector<std::pair<std::string, LlamaConfig>>& LlamaPresets() {
  static const auto* presets = [] {
    auto* p = new std::vector<std::pair<std::string, LlamaConfig>>();
    auto add = [&](const char* name, int64_t vocab, int64_t layers, int64_t dim, int64_t heads,
                   int64_t kv_heads, int64_t ffn, int64_t seq) {
      LlamaConfig c;
      c.vocab = vocab;
      c.layers = layers;
      c.dim = dim;
      c.heads = heads;
      c.kv_heads = kv_heads;
      c.ffn = ffn;
      c.seq = seq;
      p->emplace_back(name, c);
    };
    add("tiny", 256, 4, 256, 4, 0, 0, 128);           // byte-level demo
    add("1b", 32000, 22, 2048, 32, 4, 5632, 2048);    // TinyLlama 1.1B
    add("7b", 32000, 32, 4096, 32, 32, 11008, 2048);  // Llama-2 7B (4096 positions there)
    return p;
  }();
  return *presets;
}

int64_t KvHeads(const LlamaConfig& c) { return c.kv_heads == 0 ? c.heads : c.kv_heads; }

int64_t Ffn(const LlamaConfig& c) {
  if (c.ffn != 0) return c.ffn;
  const int64_t hidden = 2 * (4 * c.dim) / 3;
  return (hidden + 255) / 256 * 256;
}

// RMSNorm(x) * w, the HF LlamaRMSNorm export (computed in f32 throughout).
std::string RmsNorm(GraphBuilder& b, const std::string& x, const std::string& w, float eps) {
  const std::string sq = b.Op("Pow", {x, b.ScalarF32(2.0f)});
  const std::string mean =
      b.Op("ReduceMean", {sq}, {AttrInts("axes", {-1}), AttrInt("keepdims", 1)});
  const std::string rms = b.Op("Sqrt", {b.Op("Add", {mean, b.ScalarF32(eps)})});
  return b.Op("Mul", {w, b.Op("Div", {x, rms})});
}

// x [B, H, T, D] rotated by position: with x1, x2 the two halves of each head,
// [x1 * cos - x2 * sin, x2 * cos + x1 * sin] (HF's x * cos + rotate_half(x) * sin).
std::string Rope(GraphBuilder& b, const std::string& x, const std::string& cos,
                 const std::string& sin, int64_t head_dim) {
  const int64_t half = head_dim / 2;
  const std::string axes = b.VectorI64({3});
  const std::string x1 = b.Op("Slice", {x, b.VectorI64({0}), b.VectorI64({half}), axes});
  const std::string x2 = b.Op("Slice", {x, b.VectorI64({half}), b.VectorI64({head_dim}), axes});
  const std::string o1 = b.Op("Sub", {b.Op("Mul", {x1, cos}), b.Op("Mul", {x2, sin})});
  const std::string o2 = b.Op("Add", {b.Op("Mul", {x2, cos}), b.Op("Mul", {x1, sin})});
  return b.Op("Concat", {o1, o2}, {AttrInt("axis", -1)});
}

// [B, KVH, T, D] -> [B, KVH * rep, T, D], each KV head repeated `rep` times (HF repeat_kv).
std::string RepeatKv(GraphBuilder& b, const std::string& x, const GraphBuilder::SeqDims& dims,
                     int64_t kv_heads, int64_t rep, int64_t head_dim) {
  const std::string x5 = b.Unsqueeze(x, {2});  // [B, KVH, 1, T, D]
  const std::string shape5 =
      b.Op("Concat",
           {dims.b1, b.VectorI64({kv_heads}), b.VectorI64({rep}), dims.t1, b.VectorI64({head_dim})},
           {AttrInt("axis", 0)});
  const std::string expanded = b.Op("Expand", {x5, shape5});  // [B, KVH, rep, T, D]
  const std::string shape4 =
      b.Op("Concat", {dims.b1, b.VectorI64({kv_heads * rep}), dims.t1, b.VectorI64({head_dim})},
           {AttrInt("axis", 0)});
  return b.Reshape(expanded, shape4);
}

// A Constant f32 [rows, cols] table.
std::string TableConstant(GraphBuilder& b, const std::vector<float>& values, int64_t rows,
                          int64_t cols) {
  onnx::TensorProto t;
  t.set_data_type(onnx::TensorProto::FLOAT);
  t.add_dims(rows);
  t.add_dims(cols);
  t.set_raw_data(
      std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float)));
  return b.ConstTensor(std::move(t));
}

}  // namespace

std::vector<std::string> LlamaPresetNames() { return internal::PresetNames(LlamaPresets()); }

absl::StatusOr<LlamaConfig> LlamaPreset(std::string_view name) {
  return internal::FindPreset(LlamaPresets(), "llama", name);
}

absl::Status Validate(const LlamaConfig& c) {
  using internal::Field;
  PTC_RETURN_IF_ERROR(internal::CheckFields(
      "llama",
      {Field{"vocab", c.vocab, internal::kMaxVocab},
       Field{"layers", c.layers, internal::kMaxLayers}, Field{"dim", c.dim, internal::kMaxDim},
       Field{"heads", c.heads, c.dim}, Field{"seq", c.seq, internal::kMaxSeq}}));
  PTC_RETURN_IF_ERROR(internal::CheckHeads("llama", c.dim, c.heads));
  if ((c.dim / c.heads) % 2 != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "llama config: head size dim / heads = ", c.dim / c.heads,
        " must be even for rotary embeddings (dim = ", c.dim, ", heads = ", c.heads, ")"));
  }
  if (c.kv_heads < 0 || (c.kv_heads > 0 && c.heads % c.kv_heads != 0)) {
    return absl::InvalidArgumentError(absl::StrCat("llama config: kv_heads = ", c.kv_heads,
                                                   " must divide heads = ", c.heads,
                                                   " (or be 0 for one KV head per head)"));
  }
  if (c.ffn < 0 || c.ffn > 4 * internal::kMaxDim) {
    return absl::InvalidArgumentError(absl::StrCat(
        "llama config: ffn = ", c.ffn, " is out of range; use 1..", 4 * internal::kMaxDim,
        " or 0 for Llama's rule (2/3 * 4 * dim rounded up to a multiple of 256)"));
  }
  if (!(c.rope_theta > 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("llama config: rope_theta = ", c.rope_theta, " must be > 1 (Llama: 10000)"));
  }
  return internal::CheckStd("llama", c.init_std);
}

int64_t ParameterCount(const LlamaConfig& c) {
  const int64_t d = c.dim, hd = c.dim / c.heads, kv = KvHeads(c) * hd, f = Ffn(c);
  const int64_t per_layer = 2 * d                               // input / post-attention norms
                            + d * d + 2 * d * kv + d * d        // q, k, v, o projections
                            + 3 * d * f;                        // gate, up, down
  return c.vocab * d + c.layers * per_layer + d + d * c.vocab;  // embed, layers, norm, lm_head
}

absl::StatusOr<onnx::ModelProto> BuildLlama(const LlamaConfig& c) {
  PTC_RETURN_IF_ERROR(Validate(c));
  const int64_t d = c.dim, hd = c.dim / c.heads, kvh = KvHeads(c), f = Ffn(c);
  onnx::ModelProto model;
  internal::InitModel(
      &model, "llama",
      {{"ptc.model", "llama"},
       {"ptc.config", absl::StrCat("vocab=", c.vocab, " layers=", c.layers, " dim=", d,
                                   " heads=", c.heads, " kv_heads=", kvh, " ffn=", f,
                                   " seq=", c.seq, " loss=", c.with_loss, " seed=", c.seed)}});
  GraphBuilder b(model.mutable_graph(), c.seed);

  b.Input("input_ids", onnx::TensorProto::INT64, {"batch", "seq"});
  if (c.with_loss) b.Input("labels", onnx::TensorProto::INT64, {"batch", "seq"});

  const std::string embed = b.ParamNormal("embed_tokens.weight", {c.vocab, d}, c.init_std);
  const GraphBuilder::SeqDims dims = b.DimsOf("input_ids");
  std::string mask, cos, sin;
  {
    GraphBuilder::Scope s(&b, "mask");
    mask = b.CausalMask(c.seq, dims);  // bool [T, T]
  }
  {
    GraphBuilder::Scope s(&b, "rotary");
    const int64_t half = hd / 2;
    std::vector<float> cos_table(c.seq * half), sin_table(c.seq * half);
    for (int64_t i = 0; i < half; ++i) {
      const double inv_freq = std::pow(c.rope_theta, -2.0 * double(i) / double(hd));
      for (int64_t t = 0; t < c.seq; ++t) {
        cos_table[t * half + i] = static_cast<float>(std::cos(double(t) * inv_freq));
        sin_table[t * half + i] = static_cast<float>(std::sin(double(t) * inv_freq));
      }
    }
    const std::string starts = b.VectorI64({0}), axes = b.VectorI64({0});
    cos = b.Op("Slice", {TableConstant(b, cos_table, c.seq, half), starts, dims.t1, axes});
    sin = b.Op("Slice", {TableConstant(b, sin_table, c.seq, half), starts, dims.t1, axes});
  }
  std::string x;
  {
    GraphBuilder::Scope s(&b, "embed_tokens");
    x = b.Op("Gather", {embed, "input_ids"}, {AttrInt("axis", 0)});  // [B, T, C]
  }
  for (int64_t l = 0; l < c.layers; ++l) {
    const std::string p = absl::StrCat("layers.", l, ".");
    GraphBuilder::Scope layer_scope(&b, absl::StrCat("layers.", l));
    const std::string norm1 = b.ParamFill(p + "input_layernorm.weight", {d}, 1.0f);
    const std::string wq = b.ParamNormal(p + "self_attn.q_proj.weight", {d, d}, c.init_std);
    const std::string wk = b.ParamNormal(p + "self_attn.k_proj.weight", {d, kvh * hd}, c.init_std);
    const std::string wv = b.ParamNormal(p + "self_attn.v_proj.weight", {d, kvh * hd}, c.init_std);
    const std::string wo = b.ParamNormal(p + "self_attn.o_proj.weight", {d, d}, c.init_std);
    const std::string norm2 = b.ParamFill(p + "post_attention_layernorm.weight", {d}, 1.0f);
    const std::string wg = b.ParamNormal(p + "mlp.gate_proj.weight", {d, f}, c.init_std);
    const std::string wu = b.ParamNormal(p + "mlp.up_proj.weight", {d, f}, c.init_std);
    const std::string wd = b.ParamNormal(p + "mlp.down_proj.weight", {f, d}, c.init_std);

    std::string h;
    {
      GraphBuilder::Scope s(&b, "input_layernorm");
      h = RmsNorm(b, x, norm1, c.rms_eps);
    }
    {
      GraphBuilder::Scope s(&b, "self_attn");
      const std::vector<int64_t> to_heads = {0, 2, 1, 3};
      std::string q = b.SplitHeads(b.Linear(h, wq, ""), dims, c.heads, hd, to_heads);  // [B,H,T,D]
      std::string k = b.SplitHeads(b.Linear(h, wk, ""), dims, kvh, hd, to_heads);  // [B,KVH,T,D]
      std::string v = b.SplitHeads(b.Linear(h, wv, ""), dims, kvh, hd, to_heads);  // [B,KVH,T,D]
      q = Rope(b, q, cos, sin, hd);
      k = Rope(b, k, cos, sin, hd);
      if (kvh != c.heads) {
        k = RepeatKv(b, k, dims, kvh, c.heads / kvh, hd);
        v = RepeatKv(b, v, dims, kvh, c.heads / kvh, hd);
      }
      const std::string kt = b.Transpose(k, {0, 1, 3, 2});  // [B, H, D, T]
      const std::string y =
          b.Attention(q, kt, v, mask, static_cast<float>(1.0 / std::sqrt(double(hd))));
      h = b.Linear(b.MergeHeads(y, dims, d), wo, "");
    }
    x = b.Op("Add", {x, h});
    {
      GraphBuilder::Scope s(&b, "post_attention_layernorm");
      h = RmsNorm(b, x, norm2, c.rms_eps);
    }
    {
      GraphBuilder::Scope s(&b, "mlp");
      const std::string gate = b.Linear(h, wg, "");  // [B, T, F]
      const std::string silu = b.Op("Mul", {gate, b.Op("Sigmoid", {gate})});
      const std::string up = b.Linear(h, wu, "");
      h = b.Linear(b.Op("Mul", {silu, up}), wd, "");
    }
    x = b.Op("Add", {x, h});
  }
  const std::string norm = b.ParamFill("norm.weight", {d}, 1.0f);
  const std::string head = b.ParamNormal("lm_head.weight", {d, c.vocab}, c.init_std);
  {
    GraphBuilder::Scope s(&b, "norm");
    x = RmsNorm(b, x, norm, c.rms_eps);
  }
  std::string logits;
  {
    GraphBuilder::Scope s(&b, "lm_head");
    logits = b.Linear(x, head, "");  // [B, T, V]
  }
  if (c.with_loss) {
    b.CrossEntropy(logits, "labels", c.vocab);
    b.NameLastOutput("loss");
    b.Output("loss", onnx::TensorProto::FLOAT, {});
  } else {
    b.NameLastOutput("logits");
    b.Output("logits", onnx::TensorProto::FLOAT, {"batch", "seq", c.vocab});
  }
  return model;
}

}  // namespace ptc::models
