// Logging: one named spdlog logger per component ("broker", "worker", "client", "launch").
// Executables default to info and take --log-level; libraries embedded in an app log warnings
// to stderr unless ACME_LOG (trace, debug, info, warn, error, off) or set_log_level says other.
#pragma once

#include <memory>
#include <optional>
#include <string_view>

#include <spdlog/spdlog.h>

namespace acme {

/// The logger of a component, created on first use. Thread-safe.
[[nodiscard]] std::shared_ptr<spdlog::logger> logger(std::string_view component);

/// Parses "trace".."off"; nullopt for anything else.
[[nodiscard]] std::optional<spdlog::level::level_enum> parse_log_level(std::string_view text);

/// Sets the level of every acme logger, present and future. ACME_LOG, when set, wins over the
/// default passed by an executable but not over an explicit --log-level.
void set_log_level(spdlog::level::level_enum level);

/// The level ACME_LOG asks for, if it is set and valid.
[[nodiscard]] std::optional<spdlog::level::level_enum> log_level_from_env();

/// Sends every acme logger's output to `sink` instead of stderr (nng's nng_log_set_logger).
void set_log_sink(spdlog::sink_ptr sink);

}  // namespace acme
