#include "compiler/driver/dump.h"

#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "compiler/ir/printer.h"
#include "nlohmann/json.hpp"

namespace ptc::driver {
namespace {

nlohmann::json ValueJson(const ir::Value* v) {
  nlohmann::json j;
  j["name"] = v->name();
  j["dtype"] = std::string(ir::DTypeName(v->type().dtype));
  j["shape"] = v->type().shape;
  if (!v->flags().empty()) j["flags"] = std::vector<std::string>(v->flags().begin(), v->flags().end());
  return j;
}

std::string DotEscape(const std::string& s) {
  return absl::StrReplaceAll(s, {{"\\", "\\\\"}, {"\"", "\\\""}, {"\n", "\\n"}});
}

}  // namespace

std::string DumpJson(const ir::Module& module, const plan::MemoryPlan* memory) {
  nlohmann::json root;
  root["metadata"] = module.metadata();
  nlohmann::json funcs = nlohmann::json::array();
  for (const auto& f : module.functions()) {
    nlohmann::json jf;
    jf["name"] = f->name();
    jf["params"] = nlohmann::json::array();
    for (const ir::Value* p : f->params()) jf["params"].push_back(ValueJson(p));
    jf["nodes"] = nlohmann::json::array();
    for (const auto& n : f->nodes()) {
      nlohmann::json jn;
      jn["op"] = n->op();
      jn["inputs"] = nlohmann::json::array();
      for (const ir::Value* v : n->inputs()) jn["inputs"].push_back(v->name());
      jn["outputs"] = nlohmann::json::array();
      for (const ir::Value* v : n->outputs()) jn["outputs"].push_back(ValueJson(v));
      nlohmann::json attrs = nlohmann::json::object();
      for (const auto& [k, v] : n->attrs()) attrs[k] = ir::PrintAttrValue(v);
      jn["attrs"] = attrs;
      if (!n->loc().empty()) jn["loc"] = n->loc();
      jf["nodes"].push_back(jn);
    }
    jf["results"] = nlohmann::json::array();
    for (const ir::Value* r : f->results()) jf["results"].push_back(r->name());
    funcs.push_back(jf);
  }
  root["functions"] = funcs;
  if (memory != nullptr) {
    nlohmann::json jm;
    jm["arena_bytes"] = memory->arena_bytes;
    jm["lower_bound"] = memory->lower_bound;
    jm["buffers"] = nlohmann::json::array();
    for (const auto& b : memory->buffers) {
      nlohmann::json jb = {{"value", b.value}, {"offset", b.offset}, {"bytes", b.bytes},
                           {"first", b.first}, {"last", b.last}};
      if (!b.alias_of.empty()) jb["alias_of"] = b.alias_of;
      jm["buffers"].push_back(jb);
    }
    root["memory"] = jm;
  }
  return root.dump(2) + "\n";
}

std::string DumpDot(const ir::Module& module) {
  std::string out = "digraph ptc {\n  rankdir=TB;\n  node [fontname=\"Helvetica\", fontsize=10];\n";
  int fi = 0;
  for (const auto& f : module.functions()) {
    std::map<const ir::Value*, std::string> source;  // value -> dot node id
    for (size_t i = 0; i < f->params().size(); ++i) {
      const ir::Value* p = f->params()[i];
      std::string id = absl::StrCat("f", fi, "p", i);
      source[p] = id;
      absl::StrAppend(&out, "  ", id, " [shape=ellipse, style=filled, fillcolor=\"",
                      p->is_param() ? "#e8e8e8" : "#cde4ff", "\", label=\"",
                      DotEscape(p->name()), "\\n", p->type().ToString(), "\"];\n");
    }
    for (size_t i = 0; i < f->nodes().size(); ++i) {
      const ir::Node& n = *f->nodes()[i];
      std::string id = absl::StrCat("f", fi, "n", i);
      std::string label = n.op();
      for (const ir::Value* o : n.outputs()) absl::StrAppend(&label, "\\n", o->type().ToString());
      absl::StrAppend(&out, "  ", id, " [shape=box, style=\"rounded,filled\", fillcolor=\"",
                      n.op() == "constant" ? "#f4f4f4" : "#fff4d6", "\", label=\"",
                      DotEscape(label), "\"];\n");
      for (const ir::Value* in : n.inputs()) {
        auto it = source.find(in);
        if (it == source.end()) continue;
        absl::StrAppend(&out, "  ", it->second, " -> ", id, " [label=\"",
                        DotEscape(in->name()), "\", fontsize=8];\n");
      }
      for (const ir::Value* o : n.outputs()) source[o] = id;
    }
    for (size_t i = 0; i < f->results().size(); ++i) {
      std::string id = absl::StrCat("f", fi, "r", i);
      absl::StrAppend(&out, "  ", id, " [shape=ellipse, style=filled, fillcolor=\"#d6f5d6\", label=\"result ",
                      i, "\"];\n");
      auto it = source.find(f->results()[i]);
      if (it != source.end()) absl::StrAppend(&out, "  ", it->second, " -> ", id, ";\n");
    }
    ++fi;
  }
  out += "}\n";
  return out;
}

}  // namespace ptc::driver
