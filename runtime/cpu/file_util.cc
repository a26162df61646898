#include "runtime/cpu/file_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "compiler/support/status.h"

namespace ptc::fileutil {
namespace {

absl::Status Errno(const std::string& what, const std::string& path) {
  return absl::InternalError(absl::StrCat(what, " ", path, ": ", std::strerror(errno)));
}

}  // namespace

std::string Dirname(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

absl::Status FsyncPath(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Errno("cannot open", path);
  int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return Errno("cannot fsync", path);
  return absl::OkStatus();
}

absl::Status WriteFileSynced(const std::string& path, const std::string& bytes) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Errno("cannot create", path);
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      ::close(fd);
      return Errno("cannot write", path);
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) {
    ::close(fd);
    return Errno("cannot fsync", path);
  }
  if (::close(fd) != 0) return Errno("cannot close", path);
  return absl::OkStatus();
}

absl::Status WriteFileAtomic(const std::string& path, const std::string& bytes) {
  std::string tmp = absl::StrCat(path, ".tmp.", ::getpid());
  absl::Status st = WriteFileSynced(tmp, bytes);
  if (!st.ok()) {
    ::unlink(tmp.c_str());
    return st;
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    absl::Status e = Errno("cannot rename to", path);
    ::unlink(tmp.c_str());
    return e;
  }
  return FsyncPath(Dirname(path));
}

absl::Status MakeDirs(const std::string& path) {
  if (path.empty()) return absl::OkStatus();
  struct stat st;
  if (::stat(path.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) return absl::OkStatus();
    return absl::AlreadyExistsError(absl::StrCat(path, " exists and is not a folder"));
  }
  std::string parent = Dirname(path);
  if (parent != path && parent != "." && parent != "/") PTC_RETURN_IF_ERROR(MakeDirs(parent));
  if (::mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) return Errno("cannot create", path);
  return absl::OkStatus();
}

absl::Status RemoveTree(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return absl::OkStatus();
  if (S_ISDIR(st.st_mode)) {
    DIR* dir = ::opendir(path.c_str());
    if (dir == nullptr) return Errno("cannot list", path);
    while (dirent* e = ::readdir(dir)) {
      std::string name = e->d_name;
      if (name == "." || name == "..") continue;
      absl::Status s = RemoveTree(absl::StrCat(path, "/", name));
      if (!s.ok()) {
        ::closedir(dir);
        return s;
      }
    }
    ::closedir(dir);
    if (::rmdir(path.c_str()) != 0) return Errno("cannot remove", path);
  } else if (::unlink(path.c_str()) != 0) {
    return Errno("cannot remove", path);
  }
  return absl::OkStatus();
}

}  // namespace ptc::fileutil
