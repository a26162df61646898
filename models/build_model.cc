// BuildModel: family + preset + "key=value" overrides, for `ptc model`.
#include <functional>
#include <map>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "compiler/support/status.h"
#include "models/models.h"

namespace ptc::models {
namespace {

using Setter = std::function<absl::Status(const std::string& value)>;

Setter IntField(const char* key, int64_t* field) {
  return [key, field](const std::string& value) -> absl::Status {
    if (!absl::SimpleAtoi(value, field)) {
      return absl::InvalidArgumentError(
          absl::StrCat("model option ", key, "=", value, ": not an integer"));
    }
    return absl::OkStatus();
  };
}

Setter SeedField(uint64_t* field) {
  return [field](const std::string& value) -> absl::Status {
    if (!absl::SimpleAtoi(value, field)) {
      return absl::InvalidArgumentError(
          absl::StrCat("model option seed=", value, ": not a non-negative integer"));
    }
    return absl::OkStatus();
  };
}

Setter BoolField(const char* key, bool* field) {
  return [key, field](const std::string& value) -> absl::Status {
    if (!absl::SimpleAtob(value, field)) {
      return absl::InvalidArgumentError(
          absl::StrCat("model option ", key, "=", value, ": use true/false or 1/0"));
    }
    return absl::OkStatus();
  };
}

Setter DoubleField(const char* key, double* field) {
  return [key, field](const std::string& value) -> absl::Status {
    if (!absl::SimpleAtod(value, field)) {
      return absl::InvalidArgumentError(
          absl::StrCat("model option ", key, "=", value, ": not a number"));
    }
    return absl::OkStatus();
  };
}

// Taken as is: the config's Validate checks the value.
Setter StringField(std::string* field) {
  return [field](const std::string& value) -> absl::Status {
    *field = value;
    return absl::OkStatus();
  };
}

absl::Status ApplyOverrides(std::string_view family, const std::map<std::string, Setter>& setters,
                            const std::map<std::string, std::string>& overrides) {
  for (const auto& [key, value] : overrides) {
    auto it = setters.find(key);
    if (it == setters.end()) {
      std::vector<std::string> keys;
      for (const auto& [k, setter] : setters) keys.push_back(k);
      return absl::InvalidArgumentError(absl::StrCat("unknown ", std::string(family),
                                                     " model option '", key,
                                                     "'; options: ", absl::StrJoin(keys, ", ")));
    }
    PTC_RETURN_IF_ERROR(it->second(value));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<onnx::ModelProto> BuildModel(std::string_view family, std::string_view preset,
                                            const std::map<std::string, std::string>& overrides) {
  if (family == "gpt2") {
    PTC_ASSIGN_OR_RETURN(Gpt2Config c, Gpt2Preset(preset));
    PTC_RETURN_IF_ERROR(ApplyOverrides(family,
                                       {{"vocab", IntField("vocab", &c.vocab)},
                                        {"layers", IntField("layers", &c.layers)},
                                        {"dim", IntField("dim", &c.dim)},
                                        {"heads", IntField("heads", &c.heads)},
                                        {"seq", IntField("seq", &c.seq)},
                                        {"seed", SeedField(&c.seed)},
                                        {"loss", BoolField("loss", &c.with_loss)},
                                        {"gelu", StringField(&c.gelu)},
                                        {"dropout", DoubleField("dropout", &c.dropout)},
                                        {"attn_dropout",
                                         DoubleField("attn_dropout", &c.attn_dropout)}},
                                       overrides));
    return BuildGpt2(c);
  }
  if (family == "seq2seq") {
    PTC_ASSIGN_OR_RETURN(Seq2SeqConfig c, Seq2SeqPreset(preset));
    PTC_RETURN_IF_ERROR(
        ApplyOverrides(family,
                       {{"src_vocab", IntField("src_vocab", &c.src_vocab)},
                        {"tgt_vocab", IntField("tgt_vocab", &c.tgt_vocab)},
                        {"encoder_layers", IntField("encoder_layers", &c.encoder_layers)},
                        {"decoder_layers", IntField("decoder_layers", &c.decoder_layers)},
                        {"dim", IntField("dim", &c.dim)},
                        {"heads", IntField("heads", &c.heads)},
                        {"ffn", IntField("ffn", &c.ffn)},
                        {"seq", IntField("seq", &c.seq)},
                        {"seed", SeedField(&c.seed)},
                        {"loss", BoolField("loss", &c.with_loss)},
                        {"dropout", DoubleField("dropout", &c.dropout)}},
                       overrides));
    return BuildSeq2Seq(c);
  }
  if (family == "llama") {
    PTC_ASSIGN_OR_RETURN(LlamaConfig c, LlamaPreset(preset));
    PTC_RETURN_IF_ERROR(ApplyOverrides(family,
                                       {{"vocab", IntField("vocab", &c.vocab)},
                                        {"layers", IntField("layers", &c.layers)},
                                        {"dim", IntField("dim", &c.dim)},
                                        {"heads", IntField("heads", &c.heads)},
                                        {"kv_heads", IntField("kv_heads", &c.kv_heads)},
                                        {"ffn", IntField("ffn", &c.ffn)},
                                        {"seq", IntField("seq", &c.seq)},
                                        {"seed", SeedField(&c.seed)},
                                        {"loss", BoolField("loss", &c.with_loss)}},
                                       overrides));
    return BuildLlama(c);
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown model family '", std::string(family),
                                                 "'; families: gpt2, seq2seq, llama"));
}

}  // namespace ptc::models
