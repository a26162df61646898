// Encoder-decoder transformer as ONNX, torch.nn.Transformer's layout (post-norm, norm_first =
// False; a final LayerNorm after each stack; ReLU FFN) with token and learned position
// embeddings and an output projection, like tests/e2e/make_references.py's Seq2Seq. Attention
// projections are stored [in, out]: self-attention as one fused qkv [C, 3C] split in three
// (nn.MultiheadAttention's in_proj), cross-attention as q [C, C] on the decoder and kv [C, 2C]
// on the encoder output. All weights N(0, init_std), biases 0, LayerNorm weight 1.
#include <cmath>

#include "absl/strings/str_cat.h"
#include "compiler/support/status.h"
#include "models/graph_builder.h"
#include "models/models.h"
#include "models/presets.h"

namespace ptc::models {
namespace {

using internal::AttrInt;
using internal::GraphBuilder;

const std::vector<std::pair<std::string, Seq2SeqConfig>>& Seq2SeqPresets() {
  static const auto* presets = [] {
    auto* p = new std::vector<std::pair<std::string, Seq2SeqConfig>>();
    auto add = [&](const char* name, int64_t vocab, int64_t layers, int64_t dim, int64_t heads,
                   int64_t ffn, int64_t seq) {
      Seq2SeqConfig c;
      c.src_vocab = c.tgt_vocab = vocab;
      c.encoder_layers = c.decoder_layers = layers;
      c.dim = dim;
      c.heads = heads;
      c.ffn = ffn;
      c.seq = seq;
      p->emplace_back(name, c);
    };
    add("tiny", 256, 2, 256, 4, 1024, 128);  // byte-level demo
    add("base", 32000, 6, 512, 8, 2048, 512);
    add("big", 32000, 6, 1024, 16, 4096, 512);
    return p;
  }();
  return *presets;
}

struct Weights {
  std::string w, b;
};

class Seq2SeqBuilder {
 public:
  Seq2SeqBuilder(GraphBuilder* b, const Seq2SeqConfig& c) : b_(*b), c_(c), d_(c.dim) {}

  Weights Linear(const std::string& name, int64_t in, int64_t out) {
    return {b_.ParamNormal(name + ".weight", {in, out}, c_.init_std),
            b_.ParamFill(name + ".bias", {out}, 0.0f)};
  }
  Weights Norm(const std::string& name) {
    return {b_.ParamFill(name + ".weight", {d_}, 1.0f), b_.ParamFill(name + ".bias", {d_}, 0.0f)};
  }
  std::string Apply(const std::string& x, const Weights& w) { return b_.Linear(x, w.w, w.b); }
  std::string AddNorm(const std::string& x, const std::string& y, const Weights& norm,
                      const std::string& scope) {
    const std::string sum = b_.Op("Add", {x, b_.Dropout(y, c_.dropout)});
    GraphBuilder::Scope s(&b_, scope);
    return b_.LayerNorm(sum, norm.w, norm.b, c_.ln_eps);
  }

  // q from x (dims xd), k and v from kv_src (dims kd); fused qkv when x is kv_src.
  std::string Attention(const std::string& prefix, const std::string& scope, const std::string& x,
                        const GraphBuilder::SeqDims& xd, const std::string& kv_src,
                        const GraphBuilder::SeqDims& kd, const std::string& mask, bool self) {
    const int64_t hd = d_ / c_.heads;
    std::vector<std::string> qkv;
    Weights in_proj1, in_proj2;
    if (self) {
      in_proj1 = Linear(prefix + ".qkv", d_, 3 * d_);
    } else {
      in_proj1 = Linear(prefix + ".q", d_, d_);
      in_proj2 = Linear(prefix + ".kv", d_, 2 * d_);
    }
    const Weights out = Linear(prefix + ".out", d_, d_);
    GraphBuilder::Scope s(&b_, scope);
    if (self) {
      qkv = b_.OpN("Split", {Apply(x, in_proj1), b_.VectorI64({d_, d_, d_})}, 3,
                   {AttrInt("axis", 2)});
    } else {
      qkv.push_back(Apply(x, in_proj1));
      const auto kv = b_.OpN("Split", {Apply(kv_src, in_proj2), b_.VectorI64({d_, d_})}, 2,
                             {AttrInt("axis", 2)});
      qkv.insert(qkv.end(), kv.begin(), kv.end());
    }
    const std::string q = b_.SplitHeads(qkv[0], xd, c_.heads, hd, {0, 2, 1, 3});   // [B,H,T,D]
    const std::string kt = b_.SplitHeads(qkv[1], kd, c_.heads, hd, {0, 2, 3, 1});  // [B,H,D,S]
    const std::string v = b_.SplitHeads(qkv[2], kd, c_.heads, hd, {0, 2, 1, 3});   // [B,H,S,D]
    const std::string y =
        b_.Attention(q, kt, v, mask, static_cast<float>(1.0 / std::sqrt(double(hd))),
                     c_.dropout);  // nn.MultiheadAttention's dropout on the probabilities
    return Apply(b_.MergeHeads(y, xd, d_), out);  // [B, T, C]
  }

  std::string Ffn(const std::string& prefix, const std::string& x) {
    const Weights l1 = Linear(prefix + ".linear1", d_, c_.ffn);
    const Weights l2 = Linear(prefix + ".linear2", c_.ffn, d_);
    GraphBuilder::Scope s(&b_, "ffn");
    return Apply(b_.Dropout(b_.Op("Relu", {Apply(x, l1)}), c_.dropout), l2);
  }

 private:
  GraphBuilder& b_;
  const Seq2SeqConfig& c_;
  int64_t d_;
};

}  // namespace

std::vector<std::string> Seq2SeqPresetNames() { return internal::PresetNames(Seq2SeqPresets()); }

absl::StatusOr<Seq2SeqConfig> Seq2SeqPreset(std::string_view name) {
  return internal::FindPreset(Seq2SeqPresets(), "seq2seq", name);
}

absl::Status Validate(const Seq2SeqConfig& c) {
  using internal::Field;
  PTC_RETURN_IF_ERROR(internal::CheckFields(
      "seq2seq",
      {Field{"src_vocab", c.src_vocab, internal::kMaxVocab},
       Field{"tgt_vocab", c.tgt_vocab, internal::kMaxVocab},
       Field{"encoder_layers", c.encoder_layers, internal::kMaxLayers},
       Field{"decoder_layers", c.decoder_layers, internal::kMaxLayers},
       Field{"dim", c.dim, internal::kMaxDim}, Field{"heads", c.heads, c.dim},
       Field{"ffn", c.ffn, 4 * internal::kMaxDim}, Field{"seq", c.seq, internal::kMaxSeq}}));
  PTC_RETURN_IF_ERROR(internal::CheckHeads("seq2seq", c.dim, c.heads));
  PTC_RETURN_IF_ERROR(internal::CheckDropout("seq2seq", c.dropout));
  return internal::CheckStd("seq2seq", c.init_std);
}

int64_t ParameterCount(const Seq2SeqConfig& c) {
  const int64_t d = c.dim, f = c.ffn;
  const int64_t attn = 4 * d * d + 4 * d;     // q, k, v, out with biases
  const int64_t ffn = d * f + f + f * d + d;  // linear1, linear2
  const int64_t norm = 2 * d;
  return (c.src_vocab + c.tgt_vocab + c.seq) * d  // embeddings
         + c.encoder_layers * (attn + ffn + 2 * norm) + norm +
         c.decoder_layers * (2 * attn + ffn + 3 * norm) + norm + d * c.tgt_vocab +
         c.tgt_vocab;  // output projection
}

absl::StatusOr<onnx::ModelProto> BuildSeq2Seq(const Seq2SeqConfig& c) {
  PTC_RETURN_IF_ERROR(Validate(c));
  const int64_t d = c.dim;
  onnx::ModelProto model;
  internal::InitModel(
      &model, "seq2seq",
      {{"ptc.model", "seq2seq"},
       {"ptc.config", absl::StrCat("src_vocab=", c.src_vocab, " tgt_vocab=", c.tgt_vocab,
                                   " encoder_layers=", c.encoder_layers, " decoder_layers=",
                                   c.decoder_layers, " dim=", d, " heads=", c.heads, " ffn=", c.ffn,
                                   " seq=", c.seq, " loss=", c.with_loss, " seed=", c.seed,
                                   c.dropout > 0 ? absl::StrCat(" dropout=", c.dropout) : "")}});
  GraphBuilder b(model.mutable_graph(), c.seed);
  Seq2SeqBuilder s2s(&b, c);

  b.Input("src_ids", onnx::TensorProto::INT64, {"batch", "src_seq"});
  b.Input("tgt_ids", onnx::TensorProto::INT64, {"batch", "tgt_seq"});
  if (c.with_loss) b.Input("labels", onnx::TensorProto::INT64, {"batch", "tgt_seq"});

  const std::string src_emb = b.ParamNormal("src_emb.weight", {c.src_vocab, d}, c.init_std);
  const std::string tgt_emb = b.ParamNormal("tgt_emb.weight", {c.tgt_vocab, d}, c.init_std);
  const std::string pos_emb = b.ParamNormal("pos_emb.weight", {c.seq, d}, c.init_std);
  GraphBuilder::SeqDims sd, td;
  std::string mask, x, y;
  {
    GraphBuilder::Scope s(&b, "embed");
    sd = b.DimsOf("src_ids");
    td = b.DimsOf("tgt_ids");
    const auto gather = [&](const std::string& table, const std::string& ids) {
      return b.Op("Gather", {table, ids}, {AttrInt("axis", 0)});
    };
    x = b.Dropout(b.Op("Add", {gather(src_emb, "src_ids"), gather(pos_emb, b.Positions(sd))}),
                  c.dropout);  // [B,S,C]
    y = b.Dropout(b.Op("Add", {gather(tgt_emb, "tgt_ids"), gather(pos_emb, b.Positions(td))}),
                  c.dropout);  // [B,T,C]
  }
  {
    GraphBuilder::Scope s(&b, "mask");
    mask = b.CausalMask(c.seq, td);  // bool [T, T]
  }
  for (int64_t l = 0; l < c.encoder_layers; ++l) {
    const std::string p = absl::StrCat("encoder.layers.", l);
    GraphBuilder::Scope scope(&b, p);
    const Weights norm1 = s2s.Norm(p + ".norm1"), norm2 = s2s.Norm(p + ".norm2");
    x = s2s.AddNorm(x, s2s.Attention(p + ".self_attn", "self_attn", x, sd, x, sd, "", true), norm1,
                    "norm1");
    x = s2s.AddNorm(x, s2s.Ffn(p, x), norm2, "norm2");
  }
  const Weights enc_norm = s2s.Norm("encoder.norm");
  {
    GraphBuilder::Scope s(&b, "encoder/norm");
    x = b.LayerNorm(x, enc_norm.w, enc_norm.b, c.ln_eps);  // memory [B, S, C]
  }
  for (int64_t l = 0; l < c.decoder_layers; ++l) {
    const std::string p = absl::StrCat("decoder.layers.", l);
    GraphBuilder::Scope scope(&b, p);
    const Weights norm1 = s2s.Norm(p + ".norm1"), norm2 = s2s.Norm(p + ".norm2"),
                  norm3 = s2s.Norm(p + ".norm3");
    y = s2s.AddNorm(y, s2s.Attention(p + ".self_attn", "self_attn", y, td, y, td, mask, true),
                    norm1, "norm1");
    y = s2s.AddNorm(y, s2s.Attention(p + ".cross_attn", "cross_attn", y, td, x, sd, "", false),
                    norm2, "norm2");
    y = s2s.AddNorm(y, s2s.Ffn(p, y), norm3, "norm3");
  }
  const Weights dec_norm = s2s.Norm("decoder.norm");
  const Weights out = s2s.Linear("out", d, c.tgt_vocab);
  std::string logits;
  {
    GraphBuilder::Scope s(&b, "decoder/norm");
    y = b.LayerNorm(y, dec_norm.w, dec_norm.b, c.ln_eps);
  }
  {
    GraphBuilder::Scope s(&b, "out");
    logits = s2s.Apply(y, out);  // [B, T, V]
  }
  if (c.with_loss) {
    b.CrossEntropy(logits, "labels", c.tgt_vocab);
    b.NameLastOutput("loss");
    b.Output("loss", onnx::TensorProto::FLOAT, {});
  } else {
    b.NameLastOutput("logits");
    b.Output("logits", onnx::TensorProto::FLOAT, {"batch", "tgt_seq", c.tgt_vocab});
  }
  return model;
}

}  // namespace ptc::models
