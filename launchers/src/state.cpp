#include "state.hpp"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>

#include <acme/error.hpp>

#include <nlohmann/json.hpp>

namespace acme::launch {
namespace fs = std::filesystem;
using nlohmann::json;

std::string acme_home() {
  if (const char* home = std::getenv("ACME_HOME"); home != nullptr && *home != '\0') {  // NOLINT
    return home;
  }
  const char* home = std::getenv("HOME");  // NOLINT(concurrency-mt-unsafe)
  return fmt::format("{}/.acme", home != nullptr && *home != '\0' ? home : "/tmp");
}

std::string launches_dir() {
  return acme_home() + "/launches";
}

void save(const Record& record) {
  const json document = {
      {"id", record.id},
      {"backend", record.backend},
      {"host", record.host},
      {"broker", record.broker},
      {"broker_pid", record.broker_pid},
      {"job", record.job},
      {"workers", record.workers},
      {"cpus_per_worker", record.cpus_per_worker},
      {"created", record.created},
      {"log_dir", record.log_dir},
  };
  const auto path = record.dir + "/state.json";
  const auto temporary = path + ".tmp";
  {
    std::ofstream file(temporary, std::ios::trunc);
    if (!file) throw Error(Errc::System, fmt::format("cannot write {}", temporary));
    file << document.dump(2) << "\n";
  }
  fs::rename(temporary, path);
}

namespace {

std::optional<Record> read(const fs::path& dir) {
  std::ifstream file(dir / "state.json");
  if (!file) return std::nullopt;
  const auto document = json::parse(file, nullptr, /*allow_exceptions=*/false);
  if (!document.is_object()) return std::nullopt;
  Record record;
  record.id = document.value("id", "");
  record.backend = document.value("backend", "");
  record.host = document.value("host", "");
  record.broker = document.value("broker", "");
  record.broker_pid = document.value("broker_pid", 0);
  record.job = document.value("job", "");
  record.workers = document.value("workers", 0U);
  record.cpus_per_worker = document.value("cpus_per_worker", 1U);
  record.created = document.value("created", "");
  record.log_dir = document.value("log_dir", "");
  record.dir = dir.string();
  if (record.id.empty() || record.backend.empty()) return std::nullopt;
  return record;
}

}  // namespace

std::optional<Record> load(const std::string& id) {
  if (id.empty() || id.find('/') != std::string::npos || id.starts_with('.')) return std::nullopt;
  return read(fs::path(launches_dir()) / id);
}

std::vector<Record> load_all() {
  std::vector<Record> records;
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(launches_dir(), error)) {
    if (auto record = read(entry.path())) records.push_back(std::move(*record));
  }
  std::sort(records.begin(), records.end(), [](const Record& a, const Record& b) {
    return std::tie(a.created, a.id) < std::tie(b.created, b.id);
  });
  return records;
}

void retire(const Record& record) {
  std::error_code error;
  fs::rename(fs::path(record.dir) / "state.json", fs::path(record.dir) / "state.stopped.json",
             error);
}

void publish_broker(const Record& record) {
  const auto path = acme_home() + "/broker";
  const auto temporary = path + ".tmp";
  {
    std::ofstream file(temporary, std::ios::trunc);
    if (!file) throw Error(Errc::System, fmt::format("cannot write {}", temporary));
    file << record.broker << "\nhost=" << record.host << "\npid=" << record.broker_pid
         << "\nlaunch=" << record.id << "\n";
  }
  fs::rename(temporary, path);
}

std::optional<std::string> published_launch() {
  std::ifstream file(acme_home() + "/broker");
  for (std::string line; std::getline(file, line);) {
    if (line.starts_with("launch=")) return line.substr(7);
  }
  return std::nullopt;
}

void unpublish_broker(const Record& record) {
  if (published_launch() == record.id) {
    std::error_code error;
    fs::remove(acme_home() + "/broker", error);
  }
}

}  // namespace acme::launch
