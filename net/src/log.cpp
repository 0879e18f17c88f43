#include <cstdlib>
#include <mutex>
#include <string>
#include <vector>

#include <spdlog/sinks/stdout_color_sinks.h>

#include <acme/log.hpp>

namespace acme {
namespace {

struct Registry {
  std::mutex mutex;
  std::vector<std::shared_ptr<spdlog::logger>> loggers;
  std::optional<spdlog::level::level_enum> level;  // set_log_level; else ACME_LOG; else warn
  spdlog::sink_ptr sink;
};

Registry& registry() {
  static Registry instance;
  return instance;
}

spdlog::level::level_enum effective(const Registry& r) {
  if (r.level) return *r.level;
  if (auto env = log_level_from_env()) return *env;
  return spdlog::level::warn;
}

}  // namespace

std::optional<spdlog::level::level_enum> parse_log_level(std::string_view text) {
  static constexpr std::pair<std::string_view, spdlog::level::level_enum> kLevels[] = {
      {"trace", spdlog::level::trace},  {"debug", spdlog::level::debug},
      {"info", spdlog::level::info},    {"warn", spdlog::level::warn},
      {"warning", spdlog::level::warn}, {"error", spdlog::level::err},
      {"off", spdlog::level::off}};
  for (const auto& [name, level] : kLevels) {
    if (text == name) return level;
  }
  return std::nullopt;
}

std::optional<spdlog::level::level_enum> log_level_from_env() {
  const char* env = std::getenv("ACME_LOG");  // NOLINT(concurrency-mt-unsafe): read-only use
  if (env == nullptr) return std::nullopt;
  return parse_log_level(env);
}

std::shared_ptr<spdlog::logger> logger(std::string_view component) {
  auto& r = registry();
  const std::lock_guard lock(r.mutex);
  for (const auto& existing : r.loggers) {
    if (existing->name() == component) return existing;
  }
  if (!r.sink) r.sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  auto created = std::make_shared<spdlog::logger>(std::string(component), r.sink);
  created->set_pattern("%Y-%m-%d %H:%M:%S.%e %^%-5l%$ %n: %v");
  created->set_level(effective(r));
  created->flush_on(spdlog::level::warn);
  r.loggers.push_back(created);
  return created;
}

void set_log_level(spdlog::level::level_enum level) {
  auto& r = registry();
  const std::lock_guard lock(r.mutex);
  r.level = level;
  for (const auto& existing : r.loggers) existing->set_level(level);
}

void set_log_sink(spdlog::sink_ptr sink) {
  auto& r = registry();
  const std::lock_guard lock(r.mutex);
  r.sink = std::move(sink);
  for (const auto& existing : r.loggers) {
    existing->sinks().clear();
    existing->sinks().push_back(r.sink);
  }
}

}  // namespace acme
