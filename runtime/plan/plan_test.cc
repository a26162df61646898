#include "runtime/plan/plan.h"

#include <dirent.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "compiler/ir/printer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "plan.pb.h"
#include "runtime/plan/checksum.h"

namespace ptc::plan {
namespace {

using ::testing::HasSubstr;
using ::testing::MatchesRegex;

std::string MakeTempDir() {
  std::string tmpl = ::testing::TempDir() + "/ptc_plan_test.XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  char* dir = ::mkdtemp(buf.data());
  EXPECT_NE(dir, nullptr);
  return dir ? std::string(dir) : std::string();
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::vector<std::string> ListDir(const std::string& dir) {
  std::vector<std::string> names;
  DIR* d = ::opendir(dir.c_str());
  if (!d) return names;
  while (dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") names.push_back(n);
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

// y = x @ w + b, plus a bf16 constant held in Module::tensors() (a `constant {ref=...}`) and a
// zero-sized weight, so that several dtypes, odd sizes and padding go through the file.
Plan MakePlan() {
  Plan plan;
  plan.module = std::make_unique<ir::Module>();
  ir::Module& m = *plan.module;
  ir::Function* f = m.AddFunction("main");
  ir::Value* x = f->AddParam("x", {ir::DType::kF32, {2, 3}});
  ir::Value* w = f->AddParam("w", {ir::DType::kF32, {3, 5}}, {"param"});
  ir::Value* b = f->AddParam("b", {ir::DType::kF32, {5}}, {"param"});
  ir::Value* e = f->AddParam("e", {ir::DType::kF32, {0, 5}}, {"param"});
  ir::Node* mm = f->AddNode("matmul", {x, w}, {{ir::DType::kF32, {2, 5}}}, {}, "/MatMul", {"xw"});
  ir::Node* add = f->AddNode("add", {mm->output(), b}, {{ir::DType::kF32, {2, 5}}}, {}, "/Add", {"y"});
  ir::Node* c = f->AddNode("constant", {}, {{ir::DType::kBF16, {7}}}, {{"ref", std::string("table")}},
                           "", {"table_v"});
  ir::Node* ce = f->AddNode("concat", {e, e}, {{ir::DType::kF32, {0, 5}}}, {{"axis", int64_t{0}}}, "", {"ee"});
  f->set_results({add->output(), c->output(), ce->output()});

  std::vector<float> wv(15), bv(5);
  for (int i = 0; i < 15; ++i) wv[i] = 0.25f * i - 1.0f;
  for (int i = 0; i < 5; ++i) bv[i] = -0.5f * i;
  wv[3] = std::numeric_limits<float>::quiet_NaN();  // bit-exactness, not float equality
  wv[4] = -0.0f;
  m.tensors()["w"] = ir::Tensor::FromVector(ir::DType::kF32, {3, 5}, wv);
  m.tensors()["b"] = ir::Tensor::FromVector(ir::DType::kF32, {5}, bv);
  m.tensors()["e"] = ir::Tensor(ir::DType::kF32, {0, 5});
  std::vector<uint16_t> tv = {0x3f80, 0x4000, 0xbf80, 0x7fc0, 0x0001, 0x8000, 0x4049};
  m.tensors()["table"] = ir::Tensor::FromVector(ir::DType::kBF16, {7}, tv);
  m.metadata()["model"] = "tiny";

  plan.target = "cpu";
  plan.options = {{"opt-level", "2"}, {"dim", "batch=2"}};
  plan.memory.arena_bytes = 256;
  plan.memory.lower_bound = 128;
  plan.memory.buffers = {{"xw", 0, 40, 0, 1, ""}, {"y", 64, 40, 1, 4, ""}, {"ws@0", 128, 128, 0, 0, ""}};
  return plan;
}

class PlanTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir();
    path_ = dir_ + "/model.plan";
    ASSERT_TRUE(SavePlan(MakePlan(), path_).ok());
    plan_bytes_ = ReadFile(path_);
    weights_bytes_ = ReadFile(path_ + ".weights");
    ASSERT_GE(plan_bytes_.size(), kPlanHeaderBytes);
    ASSERT_TRUE(proto_.ParseFromString(plan_bytes_.substr(kPlanHeaderBytes)));
  }
  void TearDown() override {
    for (const std::string& n : ListDir(dir_)) ::unlink((dir_ + "/" + n).c_str());
    ::rmdir(dir_.c_str());
  }

  // Plan bytes of `proto` with the standard header.
  static std::string Encode(const PlanProto& proto, uint32_t header_version = kPlanFormatVersion) {
    std::string out(kPlanMagic, sizeof(kPlanMagic));
    for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((header_version >> (8 * i)) & 0xff));
    out.append(4, '\0');
    out += proto.SerializeAsString();
    return out;
  }

  // Loads a modified copy of the saved plan from memory.
  absl::Status LoadModified(const std::function<void(PlanProto&)>& edit) {
    PlanProto p = proto_;
    edit(p);
    return LoadPlanFromBytes(Encode(p), weights_bytes_).status();
  }

  std::string dir_, path_, plan_bytes_, weights_bytes_;
  PlanProto proto_;
};

TEST_F(PlanTest, RoundTripIsBitExact) {
  Plan original = MakePlan();
  absl::StatusOr<Plan> loaded = LoadPlan(path_);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(ir::PrintModule(*loaded->module), ir::PrintModule(*original.module));
  ASSERT_EQ(loaded->module->tensors().size(), original.module->tensors().size());
  for (const auto& [name, t] : original.module->tensors()) {
    auto it = loaded->module->tensors().find(name);
    ASSERT_NE(it, loaded->module->tensors().end()) << name;
    EXPECT_EQ(it->second.type(), t.type()) << name;
    ASSERT_EQ(it->second.nbytes(), t.nbytes()) << name;
    if (t.nbytes()) {
      EXPECT_EQ(std::memcmp(it->second.data(), t.data(), t.nbytes()), 0) << name;
    }
    EXPECT_EQ(reinterpret_cast<uintptr_t>(it->second.data()) % 64, 0u) << name;
  }
  EXPECT_EQ(loaded->target, "cpu");
  EXPECT_EQ(loaded->options, original.options);
  EXPECT_EQ(loaded->module->metadata().at("model"), "tiny");
  EXPECT_EQ(loaded->memory.arena_bytes, 256);
  EXPECT_EQ(loaded->memory.lower_bound, 128);
  ASSERT_EQ(loaded->memory.buffers.size(), 3u);
  EXPECT_EQ(loaded->memory.buffers[1].value, "y");
  EXPECT_EQ(loaded->memory.buffers[1].offset, 64);
  EXPECT_EQ(loaded->memory.buffers[1].bytes, 40);
  EXPECT_EQ(loaded->memory.buffers[1].first, 1);
  EXPECT_EQ(loaded->memory.buffers[1].last, 4);
  EXPECT_EQ(loaded->memory.buffers[2].value, "ws@0");
}

// Tensors borrow the mapping, which outlives the Plan object that loaded it; writes to a
// loaded weight stay private (the file is unchanged).
TEST_F(PlanTest, LoadedWeightsOutliveThePlanAndWritesStayPrivate) {
  ir::Tensor w;
  {
    absl::StatusOr<Plan> loaded = LoadPlan(path_);
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    w = loaded->module->tensors().at("w");
  }
  EXPECT_EQ(w.data_as<float>()[14], 0.25f * 14 - 1.0f);
  w.mutable_data_as<float>()[0] = 42.0f;
  EXPECT_EQ(ReadFile(path_ + ".weights"), weights_bytes_);
}

TEST_F(PlanTest, FileLayout) {
  EXPECT_EQ(proto_.format_version(), kPlanFormatVersion);
  EXPECT_EQ(proto_.producer(), "ptc 0.1.0");
  EXPECT_EQ(weights_bytes_.substr(0, 8), std::string("PTCWGT\0\1", 8));
  EXPECT_EQ(weights_bytes_.size() % 64, 0u);
  EXPECT_EQ(static_cast<int64_t>(weights_bytes_.size()), proto_.weights().file_bytes());
  EXPECT_EQ(proto_.weights().checksum(), Xxh64Hash(weights_bytes_));
  EXPECT_EQ(proto_.weights().entries_size(), 4);
  for (const WeightEntryProto& e : proto_.weights().entries()) EXPECT_EQ(e.offset() % 64, 0) << e.name();
  // No temporary files are left behind.
  EXPECT_EQ(ListDir(dir_), (std::vector<std::string>{"model.plan", "model.plan.weights"}));
}

TEST_F(PlanTest, FromBytesEqualsFromFile) {
  absl::StatusOr<Plan> loaded = LoadPlanFromBytes(plan_bytes_, weights_bytes_);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(ir::PrintModule(*loaded->module), ir::PrintModule(*MakePlan().module));
  EXPECT_TRUE(loaded->module->tensors().at("table").BitEquals(MakePlan().module->tensors().at("table")));
}

TEST_F(PlanTest, SaveOverwritesAtomically) {
  Plan p = MakePlan();
  p.options["opt-level"] = "3";
  ASSERT_TRUE(SavePlan(p, path_).ok());
  absl::StatusOr<Plan> loaded = LoadPlan(path_);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->options.at("opt-level"), "3");
  EXPECT_EQ(ListDir(dir_).size(), 2u);
}

TEST_F(PlanTest, SaveIntoMissingFolderFails) {
  absl::Status s = SavePlan(MakePlan(), dir_ + "/no/such/dir/model.plan");
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.message()), HasSubstr("no/such/dir"));
}

// ---------------------------------------------------------------------------------------------
// Rejections

void ExpectError(const absl::Status& s, const std::string& needle) {
  ASSERT_FALSE(s.ok()) << "expected an error containing: " << needle;
  std::string msg(s.message());
  EXPECT_THAT(msg, HasSubstr(needle));
  EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;  // one line
}

TEST_F(PlanTest, RejectsWrongMagic) {
  ExpectError(LoadPlanFromBytes("", weights_bytes_).status(), "not a ptc plan");
  ExpectError(LoadPlanFromBytes("\x08\x07\x12\x07pytorch", weights_bytes_).status(), "not a ptc plan");
  std::string bad = plan_bytes_;
  bad[3] = 'X';
  ExpectError(LoadPlanFromBytes(bad, weights_bytes_).status(), "not a ptc plan");
  WriteFile(path_, "ir_version: 8\n");
  ExpectError(LoadPlan(path_).status(), "not a ptc plan");
}

TEST_F(PlanTest, RejectsNewerFormatVersion) {
  PlanProto p = proto_;
  p.set_format_version(2);
  absl::Status s = LoadPlanFromBytes(Encode(p, /*header_version=*/2), weights_bytes_).status();
  EXPECT_EQ(s.message(),
            "plan <memory>: plan format version 2 is newer than this ptc supports (1); recompile the "
            "model with this ptc");
  WriteFile(path_, Encode(p, 7));
  ExpectError(LoadPlan(path_).status(), "plan format version 7 is newer than this ptc supports (1)");
}

TEST_F(PlanTest, RejectsVersionMismatchBetweenHeaderAndBody) {
  PlanProto p = proto_;
  p.set_format_version(0);
  ExpectError(LoadPlanFromBytes(Encode(p), weights_bytes_).status(), "corrupted");
  ExpectError(LoadPlanFromBytes(Encode(proto_, 0), weights_bytes_).status(), "version 0");
}

TEST_F(PlanTest, RejectsTruncatedOrCorruptedProtobuf) {
  // Cut inside the IR text string: the declared length runs past the end.
  ExpectError(LoadPlanFromBytes(plan_bytes_.substr(0, plan_bytes_.size() - 10), weights_bytes_).status(),
              "truncated or corrupted");
  std::string garbage = plan_bytes_.substr(0, kPlanHeaderBytes) + std::string(64, '\xff');
  ExpectError(LoadPlanFromBytes(garbage, weights_bytes_).status(), "truncated or corrupted");
}

TEST_F(PlanTest, RejectsChecksumMismatch) {
  std::string bad = weights_bytes_;
  bad[64 + 5] ^= 0x01;  // one bit of the first tensor
  ExpectError(LoadPlanFromBytes(plan_bytes_, bad).status(), "checksum mismatch");
  WriteFile(path_ + ".weights", bad);
  ExpectError(LoadPlan(path_).status(), "checksum mismatch");
  // kNever skips the check (the bytes are still bounds-checked).
  LoadOptions never;
  never.checksum = LoadOptions::Checksum::kNever;
  EXPECT_TRUE(LoadPlan(path_, never).ok());
  // kAuto skips files above the limit.
  LoadOptions small_limit;
  small_limit.auto_checksum_limit = 64;
  EXPECT_TRUE(LoadPlan(path_, small_limit).ok());
}

TEST_F(PlanTest, RejectsBadWeightsFile) {
  ExpectError(LoadPlanFromBytes(plan_bytes_, weights_bytes_.substr(0, 100)).status(), "truncated");
  ExpectError(LoadPlanFromBytes(plan_bytes_, weights_bytes_.substr(0, 10)).status(), "truncated");
  std::string bad = weights_bytes_;
  bad[0] = 'Q';
  ExpectError(LoadPlanFromBytes(plan_bytes_, bad).status(), "wrong magic");
  // A well-formed weights file of another size: not this plan's.
  std::string longer = weights_bytes_ + std::string(64, '\0');
  uint64_t n = longer.size();
  std::memcpy(longer.data() + 16, &n, 8);
  ExpectError(LoadPlanFromBytes(plan_bytes_, longer).status(), "does not belong to this plan");
  ::unlink((path_ + ".weights").c_str());
  absl::Status s = LoadPlan(path_).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(s.message()), HasSubstr("model.plan.weights"));
}

WeightEntryProto* Entry(PlanProto& p, const std::string& name) {
  for (WeightEntryProto& e : *p.mutable_weights()->mutable_entries()) {
    if (e.name() == name) return &e;
  }
  ADD_FAILURE() << "no entry " << name;
  static WeightEntryProto dummy;
  return &dummy;
}

TEST_F(PlanTest, RejectsWeightsIndexOutOfBounds) {
  const int64_t size = static_cast<int64_t>(weights_bytes_.size());
  ExpectError(LoadModified([&](PlanProto& p) { Entry(p, "w")->set_offset(size); }), "out of bounds");
  ExpectError(LoadModified([&](PlanProto& p) { Entry(p, "table")->set_offset(size + 64); }), "out of bounds");
  // offset + nbytes overflows int64.
  ExpectError(LoadModified([&](PlanProto& p) {
                Entry(p, "w")->set_offset(std::numeric_limits<int64_t>::max() / 64 * 64);
              }),
              "out of bounds");
  ExpectError(LoadModified([&](PlanProto& p) { Entry(p, "w")->set_offset(-64); }), "offset -64");
  ExpectError(LoadModified([&](PlanProto& p) { Entry(p, "w")->set_offset(0); }), "after the 64-byte header");
}

TEST_F(PlanTest, RejectsMisalignedWeights) {
  ExpectError(LoadModified([&](PlanProto& p) { Entry(p, "w")->set_offset(Entry(p, "w")->offset() + 4); }),
              "multiple of 64");
}

TEST_F(PlanTest, RejectsOverlappingWeights) {
  ExpectError(LoadModified([&](PlanProto& p) { Entry(p, "table")->set_offset(Entry(p, "w")->offset()); }),
              "overlap");
}

TEST_F(PlanTest, RejectsShapeByteSizeMismatch) {
  ExpectError(LoadModified([&](PlanProto& p) { Entry(p, "w")->set_nbytes(56); }), "needs 60 bytes");
  ExpectError(LoadModified([&](PlanProto& p) { Entry(p, "w")->set_dtype("f64"); }), "needs 120 bytes");
  ExpectError(LoadModified([&](PlanProto& p) { Entry(p, "w")->set_dtype("f31"); }), "unknown dtype");
  ExpectError(LoadModified([&](PlanProto& p) { Entry(p, "w")->set_shape(0, -3); }), "negative dims");
  ExpectError(LoadModified([&](PlanProto& p) {
                WeightEntryProto* e = Entry(p, "w");
                e->clear_shape();
                e->add_shape(int64_t{1} << 40);
                e->add_shape(int64_t{1} << 40);
              }),
              "overflows");
  ExpectError(LoadModified([&](PlanProto& p) {
                for (int i = 0; i < 100; ++i) Entry(p, "e")->add_shape(1);
              }),
              "rank");
}

TEST_F(PlanTest, RejectsDuplicateWeights) {
  ExpectError(LoadModified([&](PlanProto& p) { *p.mutable_weights()->add_entries() = *Entry(p, "b"); }),
              "twice");
}

TEST_F(PlanTest, RejectsMissingWeightsForParams) {
  ExpectError(LoadModified([&](PlanProto& p) {
                auto* entries = p.mutable_weights()->mutable_entries();
                for (int i = 0; i < entries->size(); ++i) {
                  if (entries->Get(i).name() == "b") {
                    entries->DeleteSubrange(i, 1);
                    break;
                  }
                }
              }),
              "weight parameter %b of @main has no data");
}

TEST_F(PlanTest, RejectsWeightTypeDifferentFromParam) {
  // Same bytes, other shape: [5] stored as [5,1].
  ExpectError(LoadModified([&](PlanProto& p) { Entry(p, "b")->add_shape(1); }), "f32[5] but its weights are");
}

TEST_F(PlanTest, RejectsIrParseErrorsWithLineAndColumn) {
  absl::Status s = LoadModified([&](PlanProto& p) { p.set_ir_text("func @main(%x: f32[2,3]) -> (f32[2,3]) {\n  return %x\n"); });
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.message()), HasSubstr("IR text"));
  EXPECT_THAT(std::string(s.message()), MatchesRegex(".*[0-9]+:[0-9]+.*"));
  s = LoadModified([&](PlanProto& p) {
    std::string text = p.ir_text();
    text.insert(text.find("matmul"), "@@@");
    p.set_ir_text(text);
  });
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.message()), MatchesRegex(".*IR text.*[0-9]+:[0-9]+.*"));
}

TEST_F(PlanTest, RejectsIrWithoutFunctions) {
  ExpectError(LoadModified([](PlanProto& p) { p.set_ir_text(""); }), "no function");
}

TEST_F(PlanTest, RejectsIrThatDoesNotVerify) {
  // The result type of `add` (in its line and in the signature) no longer matches type inference.
  absl::Status s = LoadModified([&](PlanProto& p) {
    std::string text = p.ir_text();
    size_t sig = text.find("-> (f32[2,5]");
    ASSERT_NE(sig, std::string::npos) << text;
    text.replace(sig, 12, "-> (f32[2,6]");
    size_t at = text.find("%y = add");
    ASSERT_NE(at, std::string::npos) << text;
    size_t ty = text.find("f32[2,5]", at);
    ASSERT_NE(ty, std::string::npos);
    text.replace(ty, 8, "f32[2,6]");
    p.set_ir_text(text);
  });
  ExpectError(s, "does not verify");
}

// Offset -1: the value lives in a parameter's storage (in-place optimizer updates). Accepted when
// alias_of names a parameter at least as large; rejected otherwise.
TEST_F(PlanTest, ParameterResidentBuffers) {
  auto in_param = [](const std::string& param, int64_t bytes) {
    return [param, bytes](PlanProto& p) {
      auto* b = p.mutable_memory()->mutable_buffers(1);
      b->set_offset(-1);
      b->set_alias_of(param);
      b->set_bytes(bytes);
    };
  };
  EXPECT_TRUE(LoadModified(in_param("w", 60)).ok());  // w: f32[3,5] = 60 bytes
  ExpectError(LoadModified(in_param("w", 64)), "not a parameter of that size");
  ExpectError(LoadModified(in_param("nope", 8)), "not a parameter of that size");
  ExpectError(LoadModified(in_param("xw", 8)), "not a parameter of that size");  // a node value
}

TEST_F(PlanTest, RejectsMemoryPlanOutsideArena) {
  ExpectError(LoadModified([](PlanProto& p) { p.mutable_memory()->mutable_buffers(1)->set_offset(256); }),
              "outside the 256-byte arena");
  ExpectError(LoadModified([](PlanProto& p) { p.mutable_memory()->mutable_buffers(2)->set_bytes(129); }),
              "outside the 256-byte arena");
  ExpectError(LoadModified([](PlanProto& p) { p.mutable_memory()->mutable_buffers(0)->set_offset(-64); }),
              "outside");
  ExpectError(LoadModified([](PlanProto& p) {
                p.mutable_memory()->mutable_buffers(1)->set_offset(std::numeric_limits<int64_t>::max() - 8);
              }),
              "outside");
  ExpectError(LoadModified([](PlanProto& p) { p.mutable_memory()->mutable_buffers(1)->set_offset(32); }),
              "not 64-byte aligned");
  ExpectError(LoadModified([](PlanProto& p) { p.mutable_memory()->set_lower_bound(1000); }), "inconsistent");
  ExpectError(LoadModified([](PlanProto& p) { p.mutable_memory()->mutable_buffers(1)->set_alias_of("zz"); }),
              "aliases \"zz\"");
}

// Generated CUDA kernels (binary CUBIN bytes included) survive a save / load unchanged; a plan
// without them loads with none.
TEST_F(PlanTest, CudaKernelsRoundTrip) {
  Plan plan = MakePlan();
  plan.target = "cuda";
  CudaKernel k;
  k.name = "ptc_fused_0123456789abcdef";
  k.arch = "sm_90";
  k.source = "extern \"C\" __global__ void ptc_fused_0123456789abcdef() {}\n";
  k.cubin = std::string("\x7f" "ELF\0\x01\xff", 7);
  k.nodes = {"@main %y", "@eval %y"};
  k.registers = 12;
  k.spill_bytes = 0;
  plan.cuda_kernels.push_back(k);
  CudaKernel k2 = k;
  k2.name = "ptc_fused_fedcba9876543210";
  k2.nodes = {"@main %z"};
  plan.cuda_kernels.push_back(k2);
  const std::string path = dir_ + "/cuda.plan";
  ASSERT_TRUE(SavePlan(plan, path).ok());
  absl::StatusOr<Plan> loaded = LoadPlan(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ASSERT_EQ(loaded->cuda_kernels.size(), 2u);
  const CudaKernel& l = loaded->cuda_kernels[0];
  EXPECT_EQ(l.name, k.name);
  EXPECT_EQ(l.arch, "sm_90");
  EXPECT_EQ(l.source, k.source);
  EXPECT_EQ(l.cubin, k.cubin);
  EXPECT_EQ(l.nodes, k.nodes);
  EXPECT_EQ(l.registers, 12);
  EXPECT_EQ(l.spill_bytes, 0);
  EXPECT_EQ(loaded->cuda_kernels[1].name, k2.name);
  EXPECT_EQ(loaded->cuda_kernels[1].nodes, k2.nodes);
  ::unlink(path.c_str());
  ::unlink((path + ".weights").c_str());
  absl::StatusOr<Plan> plain = LoadPlan(path_);
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_TRUE(plain->cuda_kernels.empty());
}

TEST_F(PlanTest, RejectsMalformedCudaKernels) {
  auto kernel = [](std::string name, std::string arch, std::string cubin) {
    return [=](PlanProto& p) {
      CudaKernelProto* k = p.add_cuda_kernels();
      k->set_name(name);
      k->set_arch(arch);
      k->set_cubin(cubin);
    };
  };
  EXPECT_TRUE(LoadModified(kernel("ptc_fused_1", "sm_90", "x")).ok());
  ExpectError(LoadModified(kernel("bad name();", "sm_90", "x")), "is not an identifier");
  ExpectError(LoadModified(kernel("", "sm_90", "x")), "is not an identifier");
  ExpectError(LoadModified(kernel("9abc", "sm_90", "x")), "is not an identifier");
  ExpectError(LoadModified(kernel("k", "", "x")), "has no architecture");
  ExpectError(LoadModified(kernel("k", "sm_90", "")), "has no CUBIN");
  ExpectError(LoadModified([&](PlanProto& p) {
                kernel("k", "sm_90", "x")(p);
                kernel("k", "sm_90", "y")(p);
              }),
              "stored twice");
}

}  // namespace
}  // namespace ptc::plan
