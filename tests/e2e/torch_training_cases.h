// The training cases of tests/data/e2e exported by torch.onnx's dynamo exporter from
// transformers' models and ptc's Llama (tests/e2e/README.md), which both the CPU training tests
// (tests/train: gradients and AdamW losses against torch) and the CUDA ones (tests/cuda: the
// same steps through the CUDA kernels) run; each suite adds its own older cases in front. A
// new case is listed here once.
#ifndef PTC_TESTS_E2E_TORCH_TRAINING_CASES_H_
#define PTC_TESTS_E2E_TORCH_TRAINING_CASES_H_

#include <string>
#include <vector>

namespace ptc::e2e {

// `first` followed by the dynamo-exported training cases.
inline std::vector<std::string> WithDynamoTrainingCases(std::vector<std::string> first) {
  for (const char* c : {"llama_loss_dynamo_opset20", "hf_gpt2_loss_dynamo_opset20",
                        "hf_llama_loss_dynamo_opset20", "hf_gpt2_loss_dynamo_opset23",
                        "hf_llama_loss_dynamo_opset23", "hf_gpt2_loss_dynamo_optimized_opset20",
                        "hf_gpt2_padded_loss_dynamo_opset20", "hf_gpt2_padded_loss_dynamo_opset23",
                        "hf_llama_loss_dynamo_optimized_opset23", "hf_phi_loss_dynamo_opset20",
                        "hf_phi_loss_dynamo_optimized_opset23", "hf_gptj_loss_dynamo_opset20",
                        "hf_neox_loss_dynamo_opset20", "hf_gemma2_loss_dynamo_opset20",
                        "hf_cohere_loss_dynamo_opset20", "hf_phi3_loss_dynamo_opset20",
                        "hf_gemma3_loss_dynamo_opset20"}) {
    first.push_back(c);
  }
  return first;
}

}  // namespace ptc::e2e

#endif  // PTC_TESTS_E2E_TORCH_TRAINING_CASES_H_
