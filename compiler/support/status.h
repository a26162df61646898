// Status helpers shared by every ptc module. Debian's abseil has no RETURN_IF_ERROR macros.
#ifndef PTC_COMPILER_SUPPORT_STATUS_H_
#define PTC_COMPILER_SUPPORT_STATUS_H_

#include <cstdio>
#include <cstdlib>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

#define PTC_CONCAT_INNER_(a, b) a##b
#define PTC_CONCAT_(a, b) PTC_CONCAT_INNER_(a, b)

#define PTC_RETURN_IF_ERROR(expr)                 \
  do {                                            \
    ::absl::Status ptc_status_ = (expr);          \
    if (!ptc_status_.ok()) return ptc_status_;    \
  } while (0)

#define PTC_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                               \
  if (!tmp.ok()) return tmp.status();              \
  lhs = std::move(tmp).value()

#define PTC_ASSIGN_OR_RETURN(lhs, expr) \
  PTC_ASSIGN_OR_RETURN_IMPL_(PTC_CONCAT_(ptc_statusor_, __LINE__), lhs, expr)

// Internal invariant: a failure is a ptc bug, never a user error.
#define PTC_CHECK(cond)                                                                   \
  do {                                                                                    \
    if (!(cond)) {                                                                        \
      std::fprintf(stderr, "ptc internal error: %s:%d: check failed: %s\n", __FILE__,     \
                   __LINE__, #cond);                                                      \
      std::abort();                                                                       \
    }                                                                                     \
  } while (0)

#endif  // PTC_COMPILER_SUPPORT_STATUS_H_
