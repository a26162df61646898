// Deterministic text form of the IR (see ir.h for an example). print(parse(text)) == text.
#ifndef PTC_COMPILER_IR_PRINTER_H_
#define PTC_COMPILER_IR_PRINTER_H_

#include <string>

#include "compiler/ir/ir.h"

namespace ptc::ir {

std::string PrintModule(const Module& module);
std::string PrintFunction(const Function& function);
std::string PrintAttrValue(const AttrValue& value);

}  // namespace ptc::ir

#endif  // PTC_COMPILER_IR_PRINTER_H_
