// Parses the IR text form. Errors carry line:column and what was expected. Input is untrusted
// (plan files embed IR text): no crash, no unbounded allocation on any input.
#ifndef PTC_COMPILER_IR_PARSER_H_
#define PTC_COMPILER_IR_PARSER_H_

#include <memory>
#include <string_view>

#include "absl/status/statusor.h"
#include "compiler/ir/ir.h"

namespace ptc::ir {

absl::StatusOr<std::unique_ptr<Module>> ParseModule(std::string_view text);

}  // namespace ptc::ir

#endif  // PTC_COMPILER_IR_PARSER_H_
