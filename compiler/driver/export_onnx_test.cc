// driver::ExportOnnx: one function of a compiled module as an ONNX model (`ptc dump PLAN
// --format onnx [--function NAME]`).
#include <cmath>
#include <map>
#include <set>
#include <string>

#include "compiler/driver/driver.h"
#include "compiler/onnx/importer.h"
#include "compiler/support/status.h"
#include "gtest/gtest.h"
#include "models/models.h"
#include "onnx/onnx_pb.h"
#include "runtime/cpu/executor.h"

namespace ptc::driver {
namespace {

// A training plan has two functions, the step (main) and @eval: each exports as its own model,
// the step with its training ops in the ai.ptc domain (attention dropout lowered to a dropout
// node beside the softmax), @eval with standard ONNX ops only (its LM-head loss lowered to
// matmul + softmax_ce_loss), which imported again computes the model's inference loss; an
// unknown name is an error that lists the functions.
TEST(ExportOnnx, EachFunctionOfATrainingPlan) {
  auto config = models::Gpt2Preset("tiny");
  ASSERT_TRUE(config.ok()) << config.status();
  config->vocab = 64;
  config->dim = 32;
  config->heads = 4;
  config->layers = 1;
  config->seq = 16;
  config->with_loss = true;
  config->dropout = 0.1;
  auto model = models::BuildGpt2(*config);
  ASSERT_TRUE(model.ok()) << model.status();
  onnx_import::ImportOptions io;
  io.dims = {{"batch", 2}, {"seq", 16}};
  auto module = onnx_import::ImportOnnxBytes(model->SerializeAsString(), "", "gpt2", io);
  ASSERT_TRUE(module.ok()) << module.status();
  CompileOptions o;
  o.train = true;
  o.dims = io.dims;
  auto plan = CompileModule(*std::move(module), o);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->module->functions().size(), 2u);

  auto ops = [](const std::string& bytes) {
    onnx::ModelProto m;
    EXPECT_TRUE(m.ParseFromString(bytes));
    std::set<std::string> s;
    for (const auto& n : m.graph().node()) s.insert(n.domain() + ":" + n.op_type());
    return s;
  };
  auto step = ExportOnnx(*plan->module);
  ASSERT_TRUE(step.ok()) << step.status();
  const std::set<std::string> step_ops = ops(*step);
  EXPECT_TRUE(step_ops.count("ai.ptc:adamw_update"));
  EXPECT_TRUE(step_ops.count("ai.ptc:dropout"));
  EXPECT_TRUE(step_ops.count(":Softmax")) << "attention lowered";

  auto eval = ExportOnnx(*plan->module, "eval");
  ASSERT_TRUE(eval.ok()) << eval.status();
  for (const std::string& op : ops(*eval)) {
    EXPECT_EQ(op.rfind(":", 0), 0u) << op << " is not a standard ONNX op";
  }

  // The exported @eval, imported and compiled for inference, against the model's own inference
  // plan (the same initial weights; no dropout in either).
  auto infer = [&](const std::string& bytes) -> absl::StatusOr<double> {
    PTC_ASSIGN_OR_RETURN(auto m, onnx_import::ImportOnnxBytes(bytes, "", "m", io));
    CompileOptions io_options;
    io_options.dims = io.dims;
    PTC_ASSIGN_OR_RETURN(plan::Plan p, CompileModule(std::move(m), io_options));
    PTC_ASSIGN_OR_RETURN(auto exec, cpu::Executor::Create(p));
    std::map<std::string, ir::Tensor> batch;
    for (const char* name : {"input_ids", "labels"}) {
      std::vector<int64_t> ids(2 * 16);
      for (size_t i = 0; i < ids.size(); ++i) ids[i] = (7 * i + 3) % 64;
      batch[name] = ir::Tensor::FromVector<int64_t>(ir::DType::kI64, {2, 16}, ids);
    }
    PTC_ASSIGN_OR_RETURN(std::vector<ir::Tensor> outs, exec->Run(batch));
    return outs.at(0).GetDouble(0);
  };
  auto exported = infer(*eval);
  ASSERT_TRUE(exported.ok()) << exported.status();
  auto original = infer(model->SerializeAsString());
  ASSERT_TRUE(original.ok()) << original.status();
  EXPECT_NEAR(*exported, *original, 1e-5 * std::fabs(*original));
  EXPECT_NEAR(*original, std::log(64.0), 0.5) << "a random model's loss";

  auto missing = ExportOnnx(*plan->module, "nope");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("main, eval"), std::string::npos)
      << missing.status();
}

}  // namespace
}  // namespace ptc::driver
