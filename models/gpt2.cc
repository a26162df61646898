// GPT-2 as ONNX. Initializer names follow HF's GPT2Model ("wte", "h.0.attn.c_attn.weight", ...);
// the node and op patterns follow torch.onnx.export of a nanoGPT-style module (see
// tests/e2e/make_references.py), with Linear weights stored [in, out] (GPT-2's Conv1D). The MLP's
// GELU is GPT-2's tanh form by default (F.gelu(x, approximate='tanh')'s export), or the exact erf
// form (F.gelu(x)) with gelu = "erf".
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "compiler/support/status.h"
#include "models/graph_builder.h"
#include "models/models.h"
#include "models/presets.h"

namespace ptc::models {
namespace {

using internal::GraphBuilder;

const std::vector<std::pair<std::string, Gpt2Config>>& Gpt2Presets() {
  static const auto* presets = [] {
    auto* p = new std::vector<std::pair<std::string, Gpt2Config>>();
    auto add = [&](const char* name, int64_t vocab, int64_t layers, int64_t dim, int64_t heads,
                   int64_t seq) {
      Gpt2Config c;
      c.vocab = vocab;
      c.layers = layers;
      c.dim = dim;
      c.heads = heads;
      c.seq = seq;
      p->emplace_back(name, c);
    };
    add("tiny", 256, 4, 256, 4, 128);  // byte-level demo
    add("small", 50257, 12, 768, 12, 1024);
    add("medium", 50257, 24, 1024, 16, 1024);
    add("large", 50257, 36, 1280, 20, 1024);
    add("xl", 50257, 48, 1600, 25, 1024);
    return p;
  }();
  return *presets;
}

}  // namespace

std::vector<std::string> Gpt2PresetNames() { return internal::PresetNames(Gpt2Presets()); }

absl::StatusOr<Gpt2Config> Gpt2Preset(std::string_view name) {
  return internal::FindPreset(Gpt2Presets(), "gpt2", name);
}

absl::Status Validate(const Gpt2Config& c) {
  using internal::Field;
  PTC_RETURN_IF_ERROR(internal::CheckFields(
      "gpt2",
      {Field{"vocab", c.vocab, internal::kMaxVocab},
       Field{"layers", c.layers, internal::kMaxLayers}, Field{"dim", c.dim, internal::kMaxDim},
       Field{"heads", c.heads, c.dim}, Field{"seq", c.seq, internal::kMaxSeq}}));
  PTC_RETURN_IF_ERROR(internal::CheckHeads("gpt2", c.dim, c.heads));
  if (c.gelu != "tanh" && c.gelu != "erf") {
    return absl::InvalidArgumentError(
        absl::StrCat("gpt2 config: gelu must be tanh or erf, got '", c.gelu,
                     "' (tanh: GPT-2's gelu_new, the default; erf: the exact GELU)"));
  }
  PTC_RETURN_IF_ERROR(internal::CheckDropout("gpt2", c.dropout));
  if (c.attn_dropout >= 0) PTC_RETURN_IF_ERROR(internal::CheckDropout("gpt2", c.attn_dropout));
  return internal::CheckStd("gpt2", c.init_std);
}

int64_t ParameterCount(const Gpt2Config& c) {
  const int64_t d = c.dim;
  const int64_t per_layer = 2 * d                                 // ln_1
                            + d * 3 * d + 3 * d                   // attn.c_attn
                            + d * d + d                           // attn.c_proj
                            + 2 * d                               // ln_2
                            + d * 4 * d + 4 * d                   // mlp.c_fc
                            + 4 * d * d + d;                      // mlp.c_proj
  return c.vocab * d + c.seq * d + c.layers * per_layer + 2 * d;  // wte, wpe, blocks, ln_f
}

absl::StatusOr<onnx::ModelProto> BuildGpt2(const Gpt2Config& config) {
  PTC_RETURN_IF_ERROR(Validate(config));
  Gpt2Config c = config;
  if (c.attn_dropout < 0) c.attn_dropout = c.dropout;  // GPT-2's attn_pdrop = resid_pdrop
  onnx::ModelProto model;
  internal::InitModel(
      &model, "gpt2",
      {{"ptc.model", "gpt2"},
       {"ptc.config",
        absl::StrCat("vocab=", c.vocab, " layers=", c.layers, " dim=", c.dim, " heads=", c.heads,
                     " seq=", c.seq, " loss=", c.with_loss, " seed=", c.seed, " gelu=", c.gelu,
                     c.dropout > 0 ? absl::StrCat(" dropout=", c.dropout) : "",
                     c.attn_dropout > 0 ? absl::StrCat(" attn_dropout=", c.attn_dropout) : "")}});
  GraphBuilder b(model.mutable_graph(), c.seed);
  const int64_t d = c.dim, hd = c.dim / c.heads;
  const double proj_std = c.init_std / std::sqrt(2.0 * static_cast<double>(c.layers));

  b.Input("input_ids", onnx::TensorProto::INT64, {"batch", "seq"});
  if (c.with_loss) b.Input("labels", onnx::TensorProto::INT64, {"batch", "seq"});

  const std::string wte = b.ParamNormal("wte", {c.vocab, d}, c.init_std);
  const std::string wpe = b.ParamNormal("wpe", {c.seq, d}, c.init_std);
  const GraphBuilder::SeqDims dims = b.DimsOf("input_ids");
  std::string mask;
  {
    GraphBuilder::Scope s(&b, "mask");
    mask = b.CausalMask(c.seq, dims);  // bool [T, T]
  }
  std::string x;
  {
    GraphBuilder::Scope s(&b, "embed");
    const std::string tok = b.Op("Gather", {wte, "input_ids"}, {internal::AttrInt("axis", 0)});
    const std::string pos =
        b.Op("Gather", {wpe, b.Positions(dims)}, {internal::AttrInt("axis", 0)});
    x = b.Dropout(b.Op("Add", {tok, pos}), c.dropout);  // [B, T, C]
  }
  for (int64_t l = 0; l < c.layers; ++l) {
    const std::string p = absl::StrCat("h.", l, ".");
    GraphBuilder::Scope layer_scope(&b, absl::StrCat("h.", l));
    const std::string ln1_w = b.ParamFill(p + "ln_1.weight", {d}, 1.0f);
    const std::string ln1_b = b.ParamFill(p + "ln_1.bias", {d}, 0.0f);
    const std::string attn_w = b.ParamNormal(p + "attn.c_attn.weight", {d, 3 * d}, c.init_std);
    const std::string attn_b = b.ParamFill(p + "attn.c_attn.bias", {3 * d}, 0.0f);
    const std::string aproj_w = b.ParamNormal(p + "attn.c_proj.weight", {d, d}, proj_std);
    const std::string aproj_b = b.ParamFill(p + "attn.c_proj.bias", {d}, 0.0f);
    const std::string ln2_w = b.ParamFill(p + "ln_2.weight", {d}, 1.0f);
    const std::string ln2_b = b.ParamFill(p + "ln_2.bias", {d}, 0.0f);
    const std::string fc_w = b.ParamNormal(p + "mlp.c_fc.weight", {d, 4 * d}, c.init_std);
    const std::string fc_b = b.ParamFill(p + "mlp.c_fc.bias", {4 * d}, 0.0f);
    const std::string mproj_w = b.ParamNormal(p + "mlp.c_proj.weight", {4 * d, d}, proj_std);
    const std::string mproj_b = b.ParamFill(p + "mlp.c_proj.bias", {d}, 0.0f);

    std::string h;
    {
      GraphBuilder::Scope s(&b, "ln_1");
      h = b.LayerNorm(x, ln1_w, ln1_b, c.ln_eps);
    }
    {
      GraphBuilder::Scope s(&b, "attn");
      std::string qkv;
      {
        GraphBuilder::Scope s2(&b, "c_attn");
        qkv = b.Linear(h, attn_w, attn_b);  // [B, T, 3C]
      }
      const std::vector<std::string> parts =
          b.OpN("Split", {qkv, b.VectorI64({d, d, d})}, 3, {internal::AttrInt("axis", 2)});
      const std::string q = b.SplitHeads(parts[0], dims, c.heads, hd, {0, 2, 1, 3});   // [B,H,T,D]
      const std::string kt = b.SplitHeads(parts[1], dims, c.heads, hd, {0, 2, 3, 1});  // [B,H,D,T]
      const std::string v = b.SplitHeads(parts[2], dims, c.heads, hd, {0, 2, 1, 3});   // [B,H,T,D]
      const std::string y =
          b.Attention(q, kt, v, mask, static_cast<float>(1.0 / std::sqrt(double(hd))),
                      c.attn_dropout);
      const std::string merged = b.MergeHeads(y, dims, d);  // [B, T, C]
      GraphBuilder::Scope s2(&b, "c_proj");
      h = b.Dropout(b.Linear(merged, aproj_w, aproj_b), c.dropout);
    }
    x = b.Op("Add", {x, h});
    {
      GraphBuilder::Scope s(&b, "ln_2");
      h = b.LayerNorm(x, ln2_w, ln2_b, c.ln_eps);
    }
    {
      GraphBuilder::Scope s(&b, "mlp");
      {
        GraphBuilder::Scope s2(&b, "c_fc");
        h = b.Linear(h, fc_w, fc_b);  // [B, T, 4C]
      }
      h = c.gelu == "erf" ? b.Gelu(h) : b.GeluTanh(h);
      GraphBuilder::Scope s2(&b, "c_proj");
      h = b.Dropout(b.Linear(h, mproj_w, mproj_b), c.dropout);
    }
    x = b.Op("Add", {x, h});
  }
  const std::string lnf_w = b.ParamFill("ln_f.weight", {d}, 1.0f);
  const std::string lnf_b = b.ParamFill("ln_f.bias", {d}, 0.0f);
  {
    GraphBuilder::Scope s(&b, "ln_f");
    x = b.LayerNorm(x, lnf_w, lnf_b, c.ln_eps);
  }
  std::string logits;
  {
    GraphBuilder::Scope s(&b, "lm_head");
    // Tied head: the same `wte` initializer, transposed (nn.Linear(weight=wte) export).
    logits = b.Op("MatMul", {x, b.Transpose(wte, {1, 0})});  // [B, T, V]
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
