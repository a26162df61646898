// Durable file writes shared by the trainer's files (token files, checkpoints, logs).
#ifndef PTC_RUNTIME_CPU_FILE_UTIL_H_
#define PTC_RUNTIME_CPU_FILE_UTIL_H_

#include <string>

#include "absl/status/status.h"

namespace ptc::fileutil {

// Writes `path` atomically: temp file in the same folder, fsync, rename, fsync the folder.
absl::Status WriteFileAtomic(const std::string& path, const std::string& bytes);
// Writes and fsyncs `path` (no rename: for files inside a not-yet-published temp folder).
absl::Status WriteFileSynced(const std::string& path, const std::string& bytes);
absl::Status FsyncPath(const std::string& path);  // a file or a folder
std::string Dirname(const std::string& path);      // "." for a bare name
absl::Status MakeDirs(const std::string& path);    // mkdir -p
absl::Status RemoveTree(const std::string& path);  // rm -r (does not follow links)

}  // namespace ptc::fileutil

#endif  // PTC_RUNTIME_CPU_FILE_UTIL_H_
