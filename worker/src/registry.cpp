// FunctionRegistry and the process-wide registry that acme::define fills.
#include <stdexcept>

#include <acme/protocol/version.hpp>
#include <acme/worker.hpp>

namespace acme {

void FunctionRegistry::add_raw(std::string name, RawFunction function) {
  // PROTOCOL.md §5.6: READY carries names of 1..255 bytes; refuse others here, where the
  // mistake is made, rather than have the broker refuse the whole worker.
  if (name.empty() || name.size() > protocol::kMaxFunctionName) {
    throw std::invalid_argument("a function name must have 1.." +
                                std::to_string(protocol::kMaxFunctionName) + " bytes, not " +
                                std::to_string(name.size()));
  }
  if (!function) throw std::invalid_argument("function '" + name + "' is empty");
  functions_.insert_or_assign(std::move(name), std::move(function));
}

const RawFunction* FunctionRegistry::find(const std::string& name) const {
  const auto found = functions_.find(name);
  return found == functions_.end() ? nullptr : &found->second;
}

std::vector<std::string> FunctionRegistry::names() const {
  std::vector<std::string> names;
  names.reserve(functions_.size());
  for (const auto& entry : functions_) names.push_back(entry.first);
  return names;
}

FunctionRegistry& functions() {
  static FunctionRegistry registry;  // built on first use, so define() works in static init
  return registry;
}

}  // namespace acme
