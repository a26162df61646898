// Replays every file under tests/corpus/{onnx,plan,ir}/ through the fuzz entry points and
// checks the outcome recorded in tests/corpus/expectations.txt (written by
// tests/corpus/generate_corpus.py): "ok", "error", or "any" (no crash is all that is asked).
// ONNX files are imported twice: as bytes (no external data allowed) and from their path, so
// that the external-data path checks (`..`, absolute paths, symlinks out) are exercised.
#include <dirent.h>
#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "compiler/onnx/importer.h"
#include "gtest/gtest.h"
#include "tests/fuzz/fuzz_targets.h"

namespace ptc::fuzz {
namespace {

std::string CorpusDir() {
  const char* src = std::getenv("PTC_SOURCE_DIR");
  return std::string(src ? src : ".") + "/tests/corpus";
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Regular files directly in `dir` (sub-folders hold external data, not inputs).
std::vector<std::string> Files(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = ::opendir(dir.c_str());
  if (!d) return out;
  while (dirent* e = ::readdir(d)) {
    std::string path = dir + "/" + e->d_name;
    struct stat st;
    if (::lstat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode)) out.push_back(e->d_name);
  }
  ::closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

// "onnx/x.onnx" -> {"bytes": "error", "file": "ok"}; "plan/y.bin" -> {"bytes": "error"}.
std::map<std::string, std::map<std::string, std::string>> ReadExpectations() {
  std::map<std::string, std::map<std::string, std::string>> out;
  std::istringstream in(ReadFile(CorpusDir() + "/expectations.txt"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream ls(line);
    std::string name, kv;
    ls >> name;
    while (ls >> kv) {
      size_t eq = kv.find('=');
      if (eq != std::string::npos) out[name][kv.substr(0, eq)] = kv.substr(eq + 1);
    }
  }
  return out;
}

void Check(const std::string& name, const std::string& mode, const std::string& expected,
           const absl::Status& status) {
  SCOPED_TRACE(name + " (" + mode + "): " + status.ToString());
  // PTC_CORPUS_VERBOSE=1 lists every outcome (to review that errors fail for the intended reason).
  if (std::getenv("PTC_CORPUS_VERBOSE")) {
    std::printf("%-45s %-5s %s\n", name.c_str(), mode.c_str(), status.ToString().substr(0, 220).c_str());
  }
  if (expected == "ok") {
    EXPECT_TRUE(status.ok());
  } else if (expected == "error") {
    EXPECT_FALSE(status.ok());
    // Hostile input is the user's problem, not an internal error.
    EXPECT_NE(status.code(), absl::StatusCode::kInternal);
  } else {
    EXPECT_EQ(expected, "any") << "bad expectation";
  }
}

class CorpusTest : public ::testing::Test {
 protected:
  void SetUp() override { expectations_ = ReadExpectations(); }

  // Runs `fn` on each file of `sub`, checking the expectation of `mode`.
  template <typename Fn>
  int Replay(const std::string& sub, const std::string& mode, Fn fn) {
    int n = 0;
    for (const std::string& f : Files(CorpusDir() + "/" + sub)) {
      std::string name = sub + "/" + f;
      auto it = expectations_.find(name);
      if (it == expectations_.end() || !it->second.count(mode)) {
        ADD_FAILURE() << name << " has no '" << mode << "=' entry in tests/corpus/expectations.txt";
        continue;
      }
      std::string bytes = ReadFile(CorpusDir() + "/" + name);
      Check(name, mode, it->second.at(mode), fn(CorpusDir() + "/" + name, bytes));
      ++n;
    }
    return n;
  }

  std::map<std::string, std::map<std::string, std::string>> expectations_;
};

const uint8_t* U8(const std::string& s) { return reinterpret_cast<const uint8_t*>(s.data()); }

TEST_F(CorpusTest, OnnxBytes) {
  int n = Replay("onnx", "bytes", [](const std::string&, const std::string& b) {
    return FuzzOnnxImport(U8(b), b.size());
  });
  EXPECT_GT(n, 10);
}

TEST_F(CorpusTest, OnnxFiles) {
  int n = Replay("onnx", "file", [](const std::string& path, const std::string&) {
    onnx_import::ImportOptions options;
    options.dims = {{"batch", 2}, {"seq", 4}, {"sequence", 4}, {"N", 2}};
    return onnx_import::ImportOnnxFile(path, options).status();
  });
  EXPECT_GT(n, 10);
}

TEST_F(CorpusTest, Plans) {
  int n = Replay("plan", "bytes", [](const std::string&, const std::string& b) {
    return FuzzPlanLoad(U8(b), b.size());
  });
  EXPECT_GT(n, 5);
}

TEST_F(CorpusTest, IrText) {
  int n = Replay("ir", "bytes", [](const std::string&, const std::string& b) {
    return FuzzIrParse(U8(b), b.size());
  });
  EXPECT_GT(n, 5);
}

// Every expectation names a file that exists (a stale manifest hides lost coverage).
TEST_F(CorpusTest, ManifestMatchesFiles) {
  for (const auto& [name, modes] : expectations_) {
    std::ifstream in(CorpusDir() + "/" + name);
    EXPECT_TRUE(in.good()) << name << " is in expectations.txt but missing";
  }
}

}  // namespace
}  // namespace ptc::fuzz
