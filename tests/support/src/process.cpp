#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <thread>

#include <acme/test/process.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;  // NOLINT(readability-redundant-declaration)

namespace acme::test {
namespace {

constexpr auto kPollStep = 5ms;

std::string name_of(const std::string& entry) {
  return entry.substr(0, entry.find('='));
}

std::vector<std::string> child_environment(const ProcessOptions& options) {
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {  // NOLINT(cppcoreguidelines-pro-bounds-*)
    const std::string entry(*e);
    const auto name = name_of(entry);
    bool drop = options.env.contains(name);
    for (const auto& unset : options.unset_env) drop = drop || unset == name;
    if (!drop) env.push_back(entry);
  }
  for (const auto& [name, value] : options.env) env.push_back(name + "=" + value);
  return env;
}

std::vector<char*> pointers(std::vector<std::string>& strings) {
  std::vector<char*> result;
  result.reserve(strings.size() + 1);
  for (auto& s : strings) result.push_back(s.data());
  result.push_back(nullptr);
  return result;
}

void make_pipe(int (&fds)[2]) {  // NOLINT(cppcoreguidelines-avoid-c-arrays)
  if (::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe2 failed");
}

}  // namespace

bool wait_until(const std::function<bool()>& predicate, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (true) {
    if (predicate()) return true;
    if (Clock::now() >= deadline) return predicate();
    std::this_thread::sleep_for(kPollStep);
  }
}

std::string program(const std::string& name) {
  const std::map<std::string, std::string> paths{{"acme-broker", ACME_BROKER_PATH},
                                                 {"acme-worker", ACME_WORKER_PATH},
                                                 {"acme-map", ACME_MAP_PATH}};
  const auto found = paths.find(name);
  if (found == paths.end() || found->second.empty()) {
    throw std::invalid_argument("acme::test::program: this build has no program " + name);
  }
  return found->second;
}

struct Process::Impl {
  mutable std::mutex mutex;
  std::condition_variable changed;
  std::string out;
  std::string err;
  bool out_closed = false;
  std::thread out_reader;
  std::thread err_reader;
  std::optional<int> status;

  void read_into(int fd, std::string Impl::*target, bool set_closed) {
    char buffer[4096];  // NOLINT(cppcoreguidelines-avoid-c-arrays)
    while (true) {
      const auto n = ::read(fd, buffer, sizeof buffer);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      const std::lock_guard lock(mutex);
      (this->*target).append(buffer, static_cast<std::size_t>(n));
      changed.notify_all();
    }
    ::close(fd);
    if (set_closed) {
      const std::lock_guard lock(mutex);
      out_closed = true;
      changed.notify_all();
    }
  }
};

Process::Process(std::vector<std::string> argv, ProcessOptions options) : impl_(new Impl) {
  if (argv.empty()) throw std::invalid_argument("Process: empty argv");
  auto env = child_environment(options);
  auto argv_ptrs = pointers(argv);
  auto env_ptrs = pointers(env);
  int in[2];   // NOLINT(cppcoreguidelines-avoid-c-arrays)
  int out[2];  // NOLINT(cppcoreguidelines-avoid-c-arrays)
  int err[2];  // NOLINT(cppcoreguidelines-avoid-c-arrays)
  make_pipe(in);
  make_pipe(out);
  make_pipe(err);
  const char* cwd = options.cwd.empty() ? nullptr : options.cwd.c_str();
  const pid_t parent = ::getpid();
  pid_ = ::fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {  // only async-signal-safe calls until exec
    ::setpgid(0, 0);
    // A test binary that dies (a watchdog's abort, ctest's timeout) takes its children along;
    // the signal follows the thread that forked, so fork from a thread that outlives the child.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    ::dup2(in[0], STDIN_FILENO);
    ::dup2(out[1], STDOUT_FILENO);
    ::dup2(err[1], STDERR_FILENO);
    if (cwd != nullptr && ::chdir(cwd) != 0) ::_exit(127);
    ::execve(argv_ptrs[0], argv_ptrs.data(), env_ptrs.data());
    static constexpr char kMessage[] = "Process: exec failed\n";
    (void)!::write(STDERR_FILENO, kMessage, sizeof kMessage - 1);
    ::_exit(127);
  }
  ::close(in[0]);
  ::close(out[1]);
  ::close(err[1]);
  if (options.stdin_text) {
    const auto& text = *options.stdin_text;
    std::size_t written = 0;
    ::signal(SIGPIPE, SIG_IGN);  // a child that exits early must not kill the test
    while (written < text.size()) {
      const auto n = ::write(in[1], text.data() + written, text.size() - written);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      written += static_cast<std::size_t>(n);
    }
  }
  ::close(in[1]);
  impl_->out_reader = std::thread([this, fd = out[0]] { impl_->read_into(fd, &Impl::out, true); });
  impl_->err_reader = std::thread([this, fd = err[0]] { impl_->read_into(fd, &Impl::err, false); });
}

Process::~Process() {
  if (running()) {
    signal(SIGTERM);
    if (!wait(5s)) {
      ::kill(-pid_, SIGKILL);
      ::kill(pid_, SIGKILL);
      wait(5s);
    }
  } else {
    wait(0ms);
  }
  // Grandchildren the child left behind hold the pipes open: end its process group too.
  ::kill(-pid_, SIGKILL);
  if (impl_->out_reader.joinable()) impl_->out_reader.join();
  if (impl_->err_reader.joinable()) impl_->err_reader.join();
  delete impl_;
}

std::optional<std::string> Process::first_line(std::chrono::milliseconds timeout) {
  std::unique_lock lock(impl_->mutex);
  const bool found = impl_->changed.wait_for(lock, timeout, [this] {
    return impl_->out.find('\n') != std::string::npos || impl_->out_closed;
  });
  const auto end = impl_->out.find('\n');
  if (!found || end == std::string::npos) return std::nullopt;
  return impl_->out.substr(0, end);
}

std::optional<int> Process::wait(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (!impl_->status) {
    int status = 0;
    const auto r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      impl_->status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      break;
    }
    if (r < 0 && errno != EINTR) break;
    if (Clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(kPollStep);
  }
  if (impl_->status) {
    // The child is gone; its output ends when the last writer (maybe a grandchild) closes.
    std::unique_lock lock(impl_->mutex);
    impl_->changed.wait_until(lock, std::max(deadline, Clock::now() + 1s),
                              [this] { return impl_->out_closed; });
  }
  return impl_->status;
}

bool Process::running() {
  if (impl_->status) return false;
  int status = 0;
  const auto r = ::waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    impl_->status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return false;
  }
  return r == 0;
}

void Process::signal(int signo) const {
  ::kill(pid_, signo);
}

std::string Process::out() const {
  const std::lock_guard lock(impl_->mutex);
  return impl_->out;
}

std::string Process::err() const {
  const std::lock_guard lock(impl_->mutex);
  return impl_->err;
}

Run run(std::vector<std::string> argv, ProcessOptions options, std::chrono::milliseconds timeout) {
  Process process(std::move(argv), std::move(options));
  Run result;
  result.code = process.wait(timeout).value_or(-1);
  result.out = process.out();
  result.err = process.err();
  return result;
}

BrokerProcess::BrokerProcess(std::vector<std::string> args, const std::string& bind)
    : process_([&] {
        std::vector<std::string> argv{program("acme-broker"), "--bind", bind};
        argv.insert(argv.end(), args.begin(), args.end());
        return argv;
      }()) {
  const auto line = process_.first_line(10s);
  constexpr std::string_view kPrefix = "ACME_BROKER=";
  if (!line || !line->starts_with(kPrefix)) {
    throw std::runtime_error("acme-broker did not print ACME_BROKER=... in 10 s; stderr:\n" +
                             process_.err());
  }
  endpoint_ = line->substr(kPrefix.size());
}

}  // namespace acme::test
