// Launch records: $ACME_HOME/launches/<id>/state.json (ACME_HOME defaults to ~/.acme) and
// $ACME_HOME/broker, the endpoint clients on this machine use when ACME_BROKER is unset.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace acme::launch {

struct Record {
  std::string id;
  std::string backend;
  std::string host;  // where acme-launch ran (and the broker, when it started one)
  std::string broker;
  int broker_pid = 0;  // 0: a broker acme-launch did not start
  std::string job;     // the scheduler's job id (local: the supervisor's pid)
  std::uint32_t workers = 0;
  std::uint32_t cpus_per_worker = 1;
  std::string created;  // ISO 8601, local time
  std::string dir;      // the launch directory
  std::string log_dir;
};

/// $ACME_HOME, else $HOME/.acme.
[[nodiscard]] std::string acme_home();

/// $ACME_HOME/launches.
[[nodiscard]] std::string launches_dir();

void save(const Record& record);

/// The record of launch `id`, if it is active (not stopped).
[[nodiscard]] std::optional<Record> load(const std::string& id);

/// Every active launch, oldest first.
[[nodiscard]] std::vector<Record> load_all();

/// Marks the launch stopped (its directory and logs stay).
void retire(const Record& record);

/// Writes $ACME_HOME/broker for this launch.
void publish_broker(const Record& record);

/// The launch id $ACME_HOME/broker names, if any.
[[nodiscard]] std::optional<std::string> published_launch();

/// Removes $ACME_HOME/broker when it names this launch.
void unpublish_broker(const Record& record);

}  // namespace acme::launch
