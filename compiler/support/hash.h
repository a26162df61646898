// Small, stable hashes for names and cache keys (not for security).
#ifndef PTC_COMPILER_SUPPORT_HASH_H_
#define PTC_COMPILER_SUPPORT_HASH_H_

#include <cstdint>
#include <string_view>

namespace ptc {

// 64-bit FNV-1a: the same value on every platform and run (generated kernels' names, the
// emulation's kernel cache, weight seeds by name).
inline uint64_t Fnv1a(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

}  // namespace ptc

#endif  // PTC_COMPILER_SUPPORT_HASH_H_
