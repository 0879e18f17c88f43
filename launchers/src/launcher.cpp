// The table of launchers and the helpers they share.
#include "launcher.hpp"

#include <array>
#include <charconv>
#include <cmath>

#include <fmt/format.h>

namespace acme::launch {

std::unique_ptr<Launcher> make_local_launcher();
std::unique_ptr<Launcher> make_slurm_launcher();
std::unique_ptr<Launcher> make_sge_launcher();
std::unique_ptr<Launcher> make_pbs_launcher();

namespace {

struct Backend {
  std::string_view name;
  std::unique_ptr<Launcher> (*make)();
};

// Adding a batch system: one file with a Launcher and one line here.
constexpr std::array kBackends{
    Backend{"local", make_local_launcher},
    Backend{"slurm", make_slurm_launcher},
    Backend{"sge", make_sge_launcher},
    Backend{"pbs", make_pbs_launcher},
};

std::optional<std::uint64_t> parse_unsigned(std::string_view text) {
  std::uint64_t value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc{} || end != text.data() + text.size() || text.empty()) return std::nullopt;
  return value;
}

}  // namespace

std::unique_ptr<Launcher> make_launcher(std::string_view name) {
  for (const auto& backend : kBackends) {
    if (backend.name == name) return backend.make();
  }
  return nullptr;
}

std::vector<std::string> launcher_names() {
  std::vector<std::string> names;
  for (const auto& backend : kBackends) names.emplace_back(backend.name);
  return names;
}

std::string shell_quote(std::string_view text) {
  std::string quoted = "'";
  for (const char c : text) {
    if (c == '\'') {
      quoted += "'\\''";
    } else {
      quoted += c;
    }
  }
  quoted += '\'';
  return quoted;
}

std::optional<std::uint64_t> parse_memory_mib(std::string_view text) {
  if (text.empty()) return std::nullopt;
  double factor = 1;  // MiB
  const char unit = text.back();
  std::string_view number = text;
  if (unit == 'K' || unit == 'k' || unit == 'M' || unit == 'm' || unit == 'G' || unit == 'g' ||
      unit == 'T' || unit == 't') {
    number.remove_suffix(1);
    if (unit == 'K' || unit == 'k') factor = 1.0 / 1024;
    if (unit == 'G' || unit == 'g') factor = 1024;
    if (unit == 'T' || unit == 't') factor = 1024.0 * 1024;
  }
  if (!number.empty() && (number.back() == 'i' || number.back() == 'B' || number.back() == 'b')) {
    return std::nullopt;  // "2GiB", "2GB": say it plainly rather than guess
  }
  double value = 0;
  const auto [end, error] = std::from_chars(number.data(), number.data() + number.size(), value);
  if (error != std::errc{} || end != number.data() + number.size() || number.empty() ||
      !(value > 0) || !std::isfinite(value)) {
    return std::nullopt;
  }
  const double mib = std::ceil(value * factor);
  if (mib < 1 || mib > 1e12) return std::nullopt;
  return static_cast<std::uint64_t>(mib);
}

std::optional<std::uint64_t> parse_duration_s(std::string_view text) {
  std::uint64_t days = 0;
  if (const auto dash = text.find('-'); dash != std::string_view::npos) {
    const auto parsed = parse_unsigned(text.substr(0, dash));
    if (!parsed) return std::nullopt;
    days = *parsed;
    text.remove_prefix(dash + 1);
  }
  std::vector<std::uint64_t> parts;
  while (true) {
    const auto colon = text.find(':');
    const auto parsed = parse_unsigned(text.substr(0, colon));
    if (!parsed) return std::nullopt;
    parts.push_back(*parsed);
    if (colon == std::string_view::npos) break;
    text.remove_prefix(colon + 1);
  }
  if (parts.size() > 3) return std::nullopt;
  // Only the leading field may exceed its unit: "90:00" is 90 minutes, "1:75:00" is a typo.
  for (std::size_t i = 1; i < parts.size(); ++i) {
    if (parts[i] >= 60) return std::nullopt;
  }
  std::uint64_t seconds = 0;
  for (const auto part : parts) seconds = seconds * 60 + part;
  if (parts.size() == 1 && days > 0) seconds *= 3600;  // "2-12": days and hours
  seconds += days * 86400;
  if (seconds == 0) return std::nullopt;
  return seconds;
}

std::string hms(std::uint64_t seconds) {
  return fmt::format("{:02}:{:02}:{:02}", seconds / 3600, seconds / 60 % 60, seconds % 60);
}

std::string worker_body(const Request& request) {
  std::string body;
  body += fmt::format("\n# acme-launch {}: one acme worker per array task\n", request.id);
  body += fmt::format("export ACME_BROKER={}\n", shell_quote(request.broker));
  body += fmt::format("export ACME_LAUNCH_ID={}\n", shell_quote(request.id));
  body += "export ACME_WORKER_OF=\"$ACME_BROKER\"  # apps that serve their own functions\n";
  body += fmt::format("export ACME_WORKER_SLOTS={}\n", request.cpus_per_worker);
  if (request.worker_cmd.empty()) {
    // The worker gives up when the broker has been gone 10 minutes: no job outlives its broker
    // by more than that, even when nobody runs acme-launch stop.
    body += fmt::format(
        "exec {} --connect \"$ACME_BROKER\" --slots {} --launch-id \"$ACME_LAUNCH_ID\" "
        "--give-up-after 600\n",
        shell_quote(request.worker_exe), request.cpus_per_worker);
  } else {
    body += fmt::format("exec {}\n", request.worker_cmd);
  }
  return body;
}

std::string extra_directives(const Request& request, std::string_view prefix) {
  std::string lines;
  for (const auto& line : request.extra) {
    if (line.starts_with('#')) {
      lines += line;
    } else {
      lines += fmt::format("{} {}", prefix, line);
    }
    lines += '\n';
  }
  return lines;
}

std::optional<std::string> leading_job_number(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\n' || text.front() == '\t')) {
    text.remove_prefix(1);
  }
  std::size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  if (digits == 0) return std::nullopt;
  return std::string(text.substr(0, digits));
}

}  // namespace acme::launch
