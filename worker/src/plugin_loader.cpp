// load_plugin(): dlopen a shared library and call its ACME_PLUGIN entry point.
#include <acme/error.hpp>
#include <acme/log.hpp>
#include <acme/worker.hpp>

#include <dlfcn.h>

namespace acme {

void load_plugin(FunctionRegistry& registry, const std::string& path) {
  ::dlerror();  // clear an error left by an earlier call
  // RTLD_NOW: a missing symbol fails here, with a message, not at the first task. The handle
  // is never closed: the registry keeps pointers into the library's code.
  void* handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* error = ::dlerror();
    throw Error(Errc::BadOptions, "cannot load plugin " + path + ": " +
                                      (error != nullptr ? error : "unknown dlopen error"));
  }
  ::dlerror();
  void* symbol = ::dlsym(handle, "acme_register");
  if (symbol == nullptr) {
    const char* error = ::dlerror();
    throw Error(Errc::BadOptions, "cannot load plugin " + path + ": " +
                                      (error != nullptr ? error : "acme_register is null") +
                                      " (a plugin defines its entry point with ACME_PLUGIN)");
  }
  using Register = void (*)(FunctionRegistry&);
  const auto before = registry.names().size();
  // POSIX guarantees that a data pointer from dlsym converts to a function pointer.
  reinterpret_cast<Register>(symbol)(
      registry);  // NOLINT(cppcoreguidelines-pro-type-reinterpret-cast)
  logger("worker")->debug("plugin {} registered {} functions", path,
                          registry.names().size() - before);
}

}  // namespace acme
