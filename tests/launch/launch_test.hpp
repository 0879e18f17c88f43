// What every acme-launch test needs: a fresh $ACME_HOME, acme-launch run with a deadline, its
// stdout/stderr/state files parsed, and the processes it left behind found (by the $ACME_HOME
// they inherited, or by the launch id) and cleaned up at teardown.
#pragma once

#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <acme/test/process.hpp>

#include <nlohmann/json.hpp>
#include <sys/types.h>

namespace acme::launch_test {

using namespace std::chrono_literals;
using Json = nlohmann::json;
using Ms = std::chrono::milliseconds;
namespace fs = std::filesystem;

/// acme-launch as this build made it; empty if the build has none.
[[nodiscard]] std::string launch_program();
/// tests/launch in the source tree (golden/, pbs-standin/).
[[nodiscard]] fs::path test_dir();

/// The endpoint E when `out` is exactly the one line "ACME_BROKER=E".
[[nodiscard]] std::optional<std::string> broker_line(const std::string& out);
[[nodiscard]] std::string read_text(const fs::path& path);
[[nodiscard]] std::vector<std::string> lines_of(const std::string& text);
[[nodiscard]] bool contains(const std::string& text, const std::string& needle);
[[nodiscard]] bool contains_nocase(std::string text, std::string needle);

/// Alive and not a zombie.
[[nodiscard]] bool pid_alive(pid_t pid);
/// Processes (other than this one) whose environment holds the entry "NAME=value".
[[nodiscard]] std::vector<pid_t> processes_with_env(const std::string& entry);
/// acme-worker processes whose command line or environment mentions `launch_id`.
[[nodiscard]] std::vector<pid_t> workers_of(const std::string& launch_id);
/// "pid comm cmdline" of each, for failure messages.
[[nodiscard]] std::string describe(const std::vector<pid_t>& pids);

/// Tolerant readers for state.json and status --json (the field names are the launcher's).
[[nodiscard]] std::optional<std::string> endpoint_of(const Json& state);
[[nodiscard]] std::vector<std::string> jobs_of(const Json& state);
[[nodiscard]] std::optional<pid_t> broker_pid_of(const Json& state);
/// Workers online in one status --json entry; nullopt if it says nothing recognisable.
[[nodiscard]] std::optional<int> online_of(const Json& entry);

/// The fixture: $ACME_HOME is a fresh temp dir; TearDown stops what the test left running.
class LaunchTest : public testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;

  /// The environment acme-launch (and acme-map, qstat, ...) runs with.
  [[nodiscard]] ::acme::test::ProcessOptions options() const;
  void prepend_path(const fs::path& dir);

  /// acme-launch ARGS... to its end.
  ::acme::test::Run acme_launch(const std::vector<std::string>& args, Ms timeout = 60s);
  /// acme-launch ARGS... in the background (for signals).
  std::unique_ptr<::acme::test::Process> start_launch(const std::vector<std::string>& args);
  /// Any program, same environment.
  ::acme::test::Run run_tool(const std::vector<std::string>& argv, Ms timeout = 30s);

  /// status --json parsed (an array); an empty array and a test failure if it fails.
  Json status_json();
  /// Workers online for `id` per status --json; nullopt if unknown.
  std::optional<int> online(const std::string& id);
  /// The pids of the workers status --json lists for `id` (its "workers" array).
  std::vector<pid_t> online_pids(const std::string& id);
  /// Polls status until `id` has `n` online.
  bool wait_online(const std::string& id, int n, Ms timeout);

  [[nodiscard]] fs::path launch_dir(const std::string& id) const;
  [[nodiscard]] std::optional<Json> state(const std::string& id) const;
  [[nodiscard]] fs::path broker_file() const { return home_ / "broker"; }
  /// Processes still carrying this test's $ACME_HOME.
  [[nodiscard]] std::vector<pid_t> leftovers() const;

  /// A launch id unique on this machine (processes are found by it).
  [[nodiscard]] std::string unique_id(const std::string& prefix) const;

  /// acme-map --broker E --json echo 0..n-1 succeeds with each value echoed, in order.
  void expect_echo_map(const std::string& endpoint, int n);

  fs::path home_;
  std::map<std::string, std::string> env_;
};

}  // namespace acme::launch_test
