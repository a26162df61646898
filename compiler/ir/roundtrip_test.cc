// IrRoundTrip.AllIrFilesUnderTests: every *.ir file under $PTC_SOURCE_DIR/tests (recursively)
// and compiler/ir/testdata round-trips through the parser and printer.
//
// Rules for .ir files:
//   - A file whose first line is `// no-roundtrip` is skipped (e.g. deliberately malformed IR).
//   - Files under a folder named `corpus` are fuzz inputs (mostly malformed on purpose): a
//     chunk of theirs that does not parse is skipped, one that parses must print as a fixed
//     point; they are not held to the canonical form.
//   - A file is split into chunks at lines starting with `// -----` (pass tests keep several
//     cases per file). `//` comments (RUN / CHECK lines) are ignored by the parser; a chunk
//     with nothing but comments and blank lines is skipped.
//   - Every other chunk must parse, and printing is a fixed point:
//     print(parse(chunk)) == print(parse(print(parse(chunk)))).
//   - Unless the file's first line is `// ir-noncanonical`, the chunk must also be in
//     canonical form: with full-line comments and blank lines removed, it equals the printed
//     text with blank lines removed (so CHECK lines can rely on the printed spelling).
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "compiler/ir/parser.h"
#include "compiler/ir/printer.h"
#include "gtest/gtest.h"

namespace ptc::ir {
namespace {

namespace fs = std::filesystem;

fs::path SourceDir() {
  if (const char* env = std::getenv("PTC_SOURCE_DIR")) return env;
  return fs::path(__FILE__).parent_path().parent_path().parent_path();
}

std::vector<std::string> Lines(std::string_view text) {
  std::vector<std::string> lines;
  std::istringstream in{std::string(text)};
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    lines.push_back(line);
  }
  return lines;
}

bool IsCommentOrBlank(const std::string& line) {
  size_t first = line.find_first_not_of(" \t");
  return first == std::string::npos || line.compare(first, 2, "//") == 0;
}

std::string Canonical(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) {
    if (!IsCommentOrBlank(l)) out += l + "\n";
  }
  return out;
}

TEST(IrRoundTrip, AllIrFilesUnderTests) {
  std::vector<fs::path> files;
  for (const fs::path& dir : {SourceDir() / "tests", SourceDir() / "compiler/ir/testdata"}) {
    if (!fs::exists(dir)) continue;
    for (const auto& e : fs::recursive_directory_iterator(dir)) {
      if (e.is_regular_file() && e.path().extension() == ".ir") files.push_back(e.path());
    }
  }
  std::sort(files.begin(), files.end());
  int checked = 0;
  for (const auto& path : files) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    const std::vector<std::string> lines = Lines(ss.str());
    if (!lines.empty() && lines[0].rfind("// no-roundtrip", 0) == 0) continue;
    bool fuzz_input = false;
    for (const auto& part : path) fuzz_input |= part == "corpus";
    const bool canonical =
        !fuzz_input && (lines.empty() || lines[0].rfind("// ir-noncanonical", 0) != 0);

    size_t start = 0;
    while (start <= lines.size()) {
      size_t end = start;
      while (end < lines.size() && lines[end].rfind("// -----", 0) != 0) ++end;
      const std::vector<std::string> chunk(lines.begin() + start, lines.begin() + end);
      const std::string where = path.string() + ":" + std::to_string(start + 1);
      const std::string body = Canonical(chunk);
      if (!body.empty()) {
        std::string text;
        for (const auto& l : chunk) text += l + "\n";
        auto m = ParseModule(text);
        if (!m.ok() && fuzz_input) {
          // A malformed fuzz input: the parser rejected it, which is all that is asked.
        } else if (!m.ok()) {
          ADD_FAILURE() << where << " (chunk starting here; error positions are relative to it): "
                        << m.status().message();
        } else {
          ++checked;
          const std::string p1 = PrintModule(**m);
          auto m2 = ParseModule(p1);
          ASSERT_TRUE(m2.ok()) << where << ": printed IR does not parse: " << m2.status() << "\n"
                               << p1;
          EXPECT_EQ(PrintModule(**m2), p1) << where << ": printing is not a fixed point";
          if (canonical) {
            EXPECT_EQ(body, Canonical(Lines(p1)))
                << where << ": not in canonical printed form (first line `// ir-noncanonical` "
                << "opts out)";
          }
        }
      }
      start = end + 1;
    }
  }
  EXPECT_GT(checked, 0) << "no .ir chunk found under " << SourceDir();
}

}  // namespace
}  // namespace ptc::ir
