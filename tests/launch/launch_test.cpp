#include "launch_test.hpp"

#include <algorithm>
#include <cctype>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include <unistd.h>

namespace acme::launch_test {
namespace {

/// A /proc file whose entries are separated by NULs (cmdline, environ).
std::vector<std::string> nul_separated(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<std::string> entries;
  std::string entry;
  while (std::getline(in, entry, '\0')) entries.push_back(entry);
  return entries;
}

std::vector<pid_t> all_pids() {
  std::vector<pid_t> pids;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/proc", ec)) {
    const auto name = entry.path().filename().string();
    if (name.empty() || !std::all_of(name.begin(), name.end(), ::isdigit)) continue;
    const auto pid = static_cast<pid_t>(std::stol(name));
    if (pid != ::getpid()) pids.push_back(pid);
  }
  return pids;
}

std::string comm_of(pid_t pid) {
  auto text = read_text(fmt::format("/proc/{}/comm", pid));
  while (!text.empty() && text.back() == '\n') text.pop_back();
  return text;
}

std::optional<pid_t> as_pid(const Json& value) {
  if (value.is_number_integer()) return static_cast<pid_t>(value.get<long>());
  if (value.is_string()) {
    const auto text = value.get<std::string>();
    if (!text.empty() && std::all_of(text.begin(), text.end(), ::isdigit)) {
      return static_cast<pid_t>(std::stol(text));
    }
  }
  return std::nullopt;
}

/// "k/N" -> k.
std::optional<int> fraction_numerator(const std::string& text) {
  const auto slash = text.find('/');
  if (slash == std::string::npos || slash == 0) return std::nullopt;
  try {
    return std::stoi(text.substr(0, slash));
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

}  // namespace

std::string launch_program() {
  return ACME_LAUNCH_PATH;
}

fs::path test_dir() {
  return ACME_LAUNCH_TEST_DIR;
}

std::optional<std::string> broker_line(const std::string& out) {
  constexpr std::string_view kPrefix = "ACME_BROKER=";
  const auto lines = lines_of(out);
  if (lines.size() != 1 || !lines[0].starts_with(kPrefix) || !out.ends_with('\n')) {
    return std::nullopt;
  }
  return lines[0].substr(kPrefix.size());
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) lines.push_back(line);
  return lines;
}

bool contains(const std::string& text, const std::string& needle) {
  return text.find(needle) != std::string::npos;
}

bool contains_nocase(std::string text, std::string needle) {
  const auto lower = [](std::string& s) {
    std::transform(s.begin(), s.end(), s.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  };
  lower(text);
  lower(needle);
  return contains(text, needle);
}

bool pid_alive(pid_t pid) {
  if (pid <= 0 || ::kill(pid, 0) != 0) return false;
  const auto stat = read_text(fmt::format("/proc/{}/stat", pid));
  const auto paren = stat.rfind(')');
  if (paren == std::string::npos || paren + 2 >= stat.size()) return false;  // gone meanwhile
  return stat[paren + 2] != 'Z' && stat[paren + 2] != 'X';
}

std::vector<pid_t> processes_with_env(const std::string& entry) {
  std::vector<pid_t> found;
  for (const auto pid : all_pids()) {
    const auto env = nul_separated(fmt::format("/proc/{}/environ", pid));
    if (std::find(env.begin(), env.end(), entry) != env.end() && pid_alive(pid)) {
      found.push_back(pid);
    }
  }
  return found;
}

std::vector<pid_t> workers_of(const std::string& launch_id) {
  std::vector<pid_t> found;
  for (const auto pid : all_pids()) {
    std::error_code ec;
    const auto exe = fs::read_symlink(fmt::format("/proc/{}/exe", pid), ec);
    if (ec || exe.filename() != "acme-worker") continue;
    bool tagged = false;
    for (const auto& arg : nul_separated(fmt::format("/proc/{}/cmdline", pid))) {
      tagged = tagged || contains(arg, launch_id);
    }
    for (const auto& var : nul_separated(fmt::format("/proc/{}/environ", pid))) {
      tagged = tagged || contains(var, launch_id);
    }
    if (tagged && pid_alive(pid)) found.push_back(pid);
  }
  std::sort(found.begin(), found.end());
  return found;
}

std::string describe(const std::vector<pid_t>& pids) {
  std::string text;
  for (const auto pid : pids) {
    std::string cmdline;
    for (const auto& arg : nul_separated(fmt::format("/proc/{}/cmdline", pid))) {
      cmdline += arg + " ";
    }
    text += fmt::format("  {} {} {}\n", pid, comm_of(pid), cmdline);
  }
  return text;
}

std::optional<std::string> endpoint_of(const Json& state) {
  for (const char* key : {"broker", "endpoint", "broker_endpoint"}) {
    if (!state.contains(key)) continue;
    const auto& value = state.at(key);
    if (value.is_string()) return value.get<std::string>();
    if (value.is_object() && value.contains("endpoint") && value.at("endpoint").is_string()) {
      return value.at("endpoint").get<std::string>();
    }
  }
  return std::nullopt;
}

std::vector<std::string> jobs_of(const Json& state) {
  std::vector<std::string> jobs;
  const auto add = [&jobs](const Json& value) {
    if (value.is_string()) jobs.push_back(value.get<std::string>());
    if (value.is_number_integer()) jobs.push_back(std::to_string(value.get<long>()));
  };
  for (const char* key : {"job", "jobs"}) {
    if (!state.contains(key)) continue;
    const auto& value = state.at(key);
    if (value.is_array()) {
      for (const auto& item : value) add(item);
    } else {
      add(value);
    }
  }
  return jobs;
}

std::optional<pid_t> broker_pid_of(const Json& state) {
  if (state.contains("broker_pid")) return as_pid(state.at("broker_pid"));
  if (state.contains("broker") && state.at("broker").is_object() &&
      state.at("broker").contains("pid")) {
    return as_pid(state.at("broker").at("pid"));
  }
  return std::nullopt;
}

std::optional<int> online_of(const Json& entry) {
  for (const char* key : {"online", "workers_online"}) {
    if (!entry.contains(key)) continue;
    const auto& value = entry.at(key);
    if (value.is_number_integer()) return value.get<int>();
    if (value.is_string()) return fraction_numerator(value.get<std::string>());
  }
  if (entry.contains("workers")) {
    const auto& workers = entry.at("workers");
    if (workers.is_object() && workers.contains("online")) return online_of(workers);
    if (workers.is_string()) return fraction_numerator(workers.get<std::string>());
  }
  return std::nullopt;
}

void LaunchTest::SetUp() {
  ASSERT_FALSE(launch_program().empty())
      << "this build has no acme-launch target (launchers/ not built yet?)";
  std::string pattern = (fs::temp_directory_path() / "acme-launch-test-XXXXXX").string();
  ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
  home_ = pattern;
  env_["ACME_HOME"] = home_.string();
  env_["ACME_BROKER_EXE"] = ::acme::test::program("acme-broker");
  env_["ACME_WORKER_EXE"] = ::acme::test::program("acme-worker");
  const char* path = std::getenv("PATH");
  env_["PATH"] = path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin";
}

void LaunchTest::TearDown() {
  if (home_.empty()) return;
  // Whatever the test left: acme-launch stops its own launches first, then the rest is killed.
  std::error_code ec;
  if (fs::exists(home_ / "launches", ec) && !fs::is_empty(home_ / "launches", ec)) {
    const auto stopped = acme_launch({"stop", "--all", "--wait", "10"}, 30s);
    if (stopped.code != 0) {
      std::cerr << "teardown: acme-launch stop --all: exit " << stopped.code << "\n" << stopped.err;
    }
  }
  const auto left = leftovers();
  if (!left.empty()) {
    std::cerr << "teardown: killing processes left with ACME_HOME=" << home_ << ":\n"
              << describe(left);
    for (const auto pid : left) ::kill(pid, SIGKILL);
  }
  if (HasFailure()) {
    std::cerr << "teardown: kept ACME_HOME " << home_ << " for inspection\n";
  } else {
    fs::remove_all(home_, ec);
  }
}

::acme::test::ProcessOptions LaunchTest::options() const {
  ::acme::test::ProcessOptions options;
  options.env = env_;
  options.unset_env = {"ACME_BROKER", "ACME_LOG"};
  return options;
}

void LaunchTest::prepend_path(const fs::path& dir) {
  env_["PATH"] = dir.string() + ":" + env_["PATH"];
}

::acme::test::Run LaunchTest::acme_launch(const std::vector<std::string>& args, Ms timeout) {
  std::vector<std::string> argv{launch_program()};
  argv.insert(argv.end(), args.begin(), args.end());
  return ::acme::test::run(argv, options(), timeout);
}

std::unique_ptr<::acme::test::Process> LaunchTest::start_launch(
    const std::vector<std::string>& args) {
  std::vector<std::string> argv{launch_program()};
  argv.insert(argv.end(), args.begin(), args.end());
  return std::make_unique<::acme::test::Process>(argv, options());
}

::acme::test::Run LaunchTest::run_tool(const std::vector<std::string>& argv, Ms timeout) {
  return ::acme::test::run(argv, options(), timeout);
}

Json LaunchTest::status_json() {
  const auto status = acme_launch({"status", "--json"}, 30s);
  if (status.code != 0) {
    ADD_FAILURE() << "acme-launch status --json: exit " << status.code << "\n" << status.err;
    return Json::array();
  }
  auto parsed = Json::parse(status.out, nullptr, false);
  if (!parsed.is_array()) {
    ADD_FAILURE() << "acme-launch status --json printed no JSON array:\n" << status.out;
    return Json::array();
  }
  return parsed;
}

std::optional<int> LaunchTest::online(const std::string& id) {
  for (const auto& entry : status_json()) {
    if (entry.is_object() && entry.value("id", std::string()) == id) return online_of(entry);
  }
  return std::nullopt;
}

std::vector<pid_t> LaunchTest::online_pids(const std::string& id) {
  std::vector<pid_t> pids;
  for (const auto& entry : status_json()) {
    if (!entry.is_object() || entry.value("id", std::string()) != id) continue;
    if (!entry.contains("workers") || !entry.at("workers").is_array()) continue;
    for (const auto& worker : entry.at("workers")) {
      if (!worker.is_object() || !worker.contains("pid")) continue;
      if (const auto pid = as_pid(worker.at("pid"))) pids.push_back(*pid);
    }
  }
  std::sort(pids.begin(), pids.end());
  return pids;
}

bool LaunchTest::wait_online(const std::string& id, int n, Ms timeout) {
  return ::acme::test::wait_until([&] { return online(id) == n; }, timeout);
}

fs::path LaunchTest::launch_dir(const std::string& id) const {
  return home_ / "launches" / id;
}

std::optional<Json> LaunchTest::state(const std::string& id) const {
  const auto path = launch_dir(id) / "state.json";
  if (!fs::exists(path)) return std::nullopt;
  auto parsed = Json::parse(read_text(path), nullptr, false);
  if (parsed.is_discarded()) return std::nullopt;  // being written
  return parsed;
}

std::vector<pid_t> LaunchTest::leftovers() const {
  return processes_with_env("ACME_HOME=" + home_.string());
}

std::string LaunchTest::unique_id(const std::string& prefix) const {
  // The temp dir's random suffix: unique among the tests running now.
  return fmt::format("{}-{}", prefix,
                     home_.filename().string().substr(sizeof "acme-launch-test-" - 1));
}

void LaunchTest::expect_echo_map(const std::string& endpoint, int n) {
  std::vector<std::string> argv{::acme::test::program("acme-map"), "--broker", endpoint, "--json",
                                "echo"};
  std::vector<std::string> expected;
  for (int i = 0; i < n; ++i) {
    argv.push_back(std::to_string(i));
    expected.push_back(fmt::format(R"({{"index":{},"ok":true,"value":{}}})", i, i));
  }
  const auto map = run_tool(argv, 60s);
  EXPECT_EQ(map.code, 0) << map.err;
  EXPECT_EQ(lines_of(map.out), expected) << map.err;
}

}  // namespace acme::launch_test
