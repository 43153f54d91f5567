#pragma once

#include "methods/method.h"

#include <nlohmann/json.hpp>

#include <set>
#include <string>
#include <vector>

namespace lathe {

// Every compression method Lathe has, in the order menus list them. Adding a method is one file defining a
// CompressionMethod and one line in registry.cpp.
const std::vector<const CompressionMethod *> &compressionMethods();

// The methods of one kind, in registry order: the compress dialog lists the post-training ones, training jobs take
// the fine-tuning ones.
std::vector<const CompressionMethod *> methodsOfKind(MethodKind kind);

// The method of that name, or null.
const CompressionMethod *findMethod(const std::string &name);
// The method of that name; LatheError listing the known ones.
const CompressionMethod &methodNamed(const std::string &name);

// The parameter keys of every registered method that are not in `known`: a job spec for one method may carry
// them (older specs held every method's), and they are warned about and ignored rather than refused.
std::set<std::string> otherMethodsKeys(const std::set<std::string> &known);

// Everything `lathe-cli methods --json` prints: per method its name, title, summary, kind, needs, export kind and
// every parameter with type, default, range, unit and help.
nlohmann::json methodsJson();

} // namespace lathe
