// Worker: the I/O thread (PROTOCOL.md §6.3-§6.4, §8, §9). It owns the DEALER socket, sends
// READY, queues TASKS and starts them in received order as cores free up, batches RESULTS,
// heartbeats and reconnects. Functions run on the Executor's threads, never here, so a long
// task never delays a heartbeat.
#include <algorithm>
#include <cerrno>
#include <deque>
#include <map>
#include <optional>
#include <random>

#include <fmt/format.h>

#include <acme/error.hpp>
#include <acme/log.hpp>
#include <acme/net/wire.hpp>
#include <acme/protocol/codec.hpp>

#include "executor.hpp"
#include "machine.hpp"
#include <unistd.h>

namespace acme {

using namespace std::chrono_literals;
using worker::Clock;
using worker::Task;
namespace proto = protocol;

namespace {

constexpr auto kWelcomeTimeout = 3000ms;    // §9: no WELCOME within 3 x 1000 ms
constexpr auto kDefaultHeartbeat = 1000ms;  // §9: before WELCOME
constexpr auto kBackoffMin = 100ms;         // §9: reconnect backoff, doubling
constexpr auto kBackoffMax = 5000ms;
constexpr std::size_t kMaxResultsPerMessage = 1024;  // §5.6: always fits a header

template <class... F>
struct Overloaded : F... {
  using F::operator()...;
};

std::chrono::milliseconds ms(Clock::duration d) {
  return std::chrono::ceil<std::chrono::milliseconds>(d);
}

}  // namespace

struct Worker::Impl {
  enum class State : std::uint8_t { Disconnected, AwaitingWelcome, Registered };

  /// What the worker remembers about a job between TASKS (§6.4.2): its common frame.
  struct JobState {
    std::shared_ptr<const msgpack::object_handle> common{};
    bool common_broken = false;
  };

  Impl(WorkerOptions opts, const FunctionRegistry& functions)
      : options(std::move(opts)),
        registry(functions),
        slots(options.slots > 0 ? options.slots : detect_slots().slots),
        identity{net::hostname(), static_cast<std::uint32_t>(::getpid())},
        notifier(std::make_shared<worker::Notifier>()),
        pinning(worker::setup_pinning(options.pin, slots)),
        executor(slots, notifier, identity, pinning.binder),
        free_cores(slots),
        log(logger("worker")) {}

  ~Impl() { abandon_all(); }  // the executor then waits for the cancelled tasks

  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  WorkerOptions options;
  const FunctionRegistry& registry;
  std::uint32_t slots;
  worker::Identity identity;
  std::shared_ptr<worker::Notifier> notifier;
  std::atomic<bool> stop_requested{false};
  worker::Pinning pinning;  // the binder and the pool of cores, empty when not pinning
  worker::Executor executor;

  zmq::context_t context{1};
  std::optional<zmq::socket_t> socket;
  State state = State::Disconnected;
  Clock::time_point next_connect{};
  Clock::time_point ready_sent{};
  Clock::time_point last_heard{};  // the last message from the broker (or the start)
  Clock::time_point last_sent{};
  std::chrono::milliseconds heartbeat = kDefaultHeartbeat;
  std::uint32_t liveness = 3;
  std::chrono::milliseconds backoff = kBackoffMin;
  std::minstd_rand random{std::random_device{}()};

  std::deque<std::shared_ptr<Task>> queued;    // received, not started: FIFO (§8)
  std::vector<std::shared_ptr<Task>> running;  // started, not returned (abandoned ones too)
  std::uint32_t free_cores;
  bool recycling = false;  // a stuck task: start nothing more, recycle when the rest ended
  std::map<std::uint64_t, JobState> jobs;
  std::vector<proto::TaskResult> pending;  // results to send, and their frames
  std::vector<zmq::message_t> pending_frames;
  std::shared_ptr<spdlog::logger> log;

  int run();

  // The socket.
  void connect(Clock::time_point now);
  void close_socket(std::chrono::milliseconds linger) noexcept;
  void send(const proto::Encoded& message, std::span<zmq::message_t> payload,
            Clock::time_point now);
  void send_ready(Clock::time_point now);
  [[nodiscard]] std::chrono::milliseconds interval() const {
    return state == State::Registered ? heartbeat : kDefaultHeartbeat;
  }
  [[nodiscard]] Clock::time_point next_wakeup(Clock::time_point now) const;

  // Broker messages; a value means run() returns it.
  std::optional<int> handle(net::Received& message, Clock::time_point now);
  void on_tasks(const proto::Tasks& tasks, net::Received& message);
  void on_cancel(const proto::CancelTasks& cancel);

  // Tasks.
  void add_result(std::uint64_t job, std::uint64_t index, proto::TaskStatus status,
                  zmq::message_t frame);
  void collect_finished();
  void expire_timeouts(Clock::time_point now);
  void start_queued(Clock::time_point now);
  void flush_results(Clock::time_point now);
  void abandon(Task& task);
  void abandon_all();
  /// A value means run() returns it (Worker::kRecycle).
  std::optional<int> check_stuck(Clock::time_point now);

  // Liveness (§9); a value means run() returns it.
  std::optional<int> check_broker(Clock::time_point now);
  void broker_gone(const std::string& why, Clock::time_point now);
};

int Worker::Impl::run() {
  const auto started = Clock::now();
  last_heard = started;
  next_connect = started;
  state = State::Disconnected;
  while (true) {
    auto now = Clock::now();
    if (stop_requested.load()) {
      if (socket && state != State::Disconnected) {
        send(proto::encode(proto::Peer::Worker, proto::Bye{.reason = "worker stopping"}), {}, now);
      }
      abandon_all();
      close_socket(500ms);  // long enough for the BYE to leave
      log->info("stopped");
      return 0;
    }
    if (state == State::Disconnected && now >= next_connect) connect(now);

    std::array<zmq::pollitem_t, 2> items{
        zmq::pollitem_t{nullptr, notifier->fd(), ZMQ_POLLIN, 0},
        zmq::pollitem_t{socket ? socket->handle() : nullptr, 0, ZMQ_POLLIN, 0}};
    const auto wait = std::clamp(ms(next_wakeup(now) - now), 0ms, 1000ms);
    try {
      zmq::poll(items.data(), socket ? 2 : 1, wait);
    } catch (const zmq::error_t& e) {
      if (e.num() != EINTR) throw;  // a signal (SIGTERM's handler calls stop()): loop again
    }
    now = Clock::now();

    notifier->drain();
    collect_finished();
    // Results leave before the next task starts: if that task kills the process, the broker
    // must not find the finished ones still in flight and blame them (PROTOCOL.md §10).
    flush_results(now);
    while (socket) {
      auto message = net::receive(*socket, zmq::recv_flags::dontwait);
      if (!message) break;
      if (auto status = handle(*message, now)) return *status;
    }
    expire_timeouts(now);
    start_queued(now);
    flush_results(now);
    if (auto status = check_broker(now)) return *status;
    if (auto status = check_stuck(now)) return *status;
    if (socket && now - last_sent >= interval()) {
      send(proto::encode(proto::Peer::Worker, proto::Heartbeat{}), {}, now);
    }
  }
}

Clock::time_point Worker::Impl::next_wakeup(Clock::time_point now) const {
  auto next = now + 1000ms;
  const auto earliest = [&](Clock::time_point t) { next = std::min(next, t); };
  if (state == State::Disconnected) earliest(next_connect);
  if (socket) earliest(last_sent + interval());
  if (state == State::AwaitingWelcome) earliest(ready_sent + kWelcomeTimeout);
  if (state == State::Registered) earliest(last_heard + heartbeat * liveness);
  if (state != State::Registered && options.give_up_after > 0ms) {
    earliest(last_heard + options.give_up_after);
  }
  for (const auto& task : running) {
    if (!task->abandoned && task->timeout > 0ms) earliest(task->deadline);
    // (While recycling, the end of the other tasks wakes the thread: no deadline to spin on.)
    if (task->abandoned && options.recycle_after > 0ms && !recycling) {
      earliest(task->abandoned_at + options.recycle_after);
    }
  }
  return next;
}

void Worker::Impl::connect(Clock::time_point now) {
  socket.emplace(context, zmq::socket_type::dealer);
  net::configure(*socket);
  // No send limit: what waits to go out is bounded by the worker's credits, and a RESULTS
  // refused by a full pipe would be lost while the broker still waits for it (§10).
  socket->set(zmq::sockopt::sndhwm, 0);
  try {
    socket->connect(options.endpoint);
  } catch (const zmq::error_t& e) {
    socket.reset();
    throw Error(Errc::BadOptions, "cannot connect to " + options.endpoint + ": " + e.what());
  }
  log->debug("connecting to {}", options.endpoint);
  send_ready(now);
}

void Worker::Impl::close_socket(std::chrono::milliseconds linger) noexcept {
  if (!socket) return;
  socket->set(zmq::sockopt::linger, static_cast<int>(linger.count()));
  socket.reset();
}

void Worker::Impl::send(const proto::Encoded& message, std::span<zmq::message_t> payload,
                        Clock::time_point now) {
  // Never block the I/O thread. With no send limit a send fails only while no connection
  // exists; then the broker is gone and every task is abandoned anyway (§9).
  if (!net::send(*socket, message, payload, nullptr, zmq::send_flags::dontwait)) {
    log->debug("dropped a {} to {}: the pipe is full", proto::command_name(message.command),
               options.endpoint);
  }
  last_sent = now;
}

void Worker::Impl::send_ready(Clock::time_point now) {
  const auto machine = worker::machine_info();
  send(proto::encode(proto::Ready{.functions = registry.names(),
                                  .slots = slots,
                                  .prefetch = options.prefetch,
                                  .host = identity.host,
                                  .pid = identity.pid,
                                  .cores = machine.cores,
                                  .memory = machine.memory,
                                  .agent = options.agent,
                                  .launch = options.launch_id}),
       {}, now);
  state = State::AwaitingWelcome;
  ready_sent = now;
}

std::optional<int> Worker::Impl::handle(net::Received& message, Clock::time_point now) {
  const auto frames = message.frames();
  auto decoded = proto::decode_for_worker(frames);
  if (!decoded) {
    // §11: a malformed broker message is dropped and logged.
    log->warn("dropped a message from {}: {}", options.endpoint, proto::describe(decoded.error()));
    return std::nullopt;
  }
  last_heard = now;  // §9: every message counts as a heartbeat
  return std::visit(
      Overloaded{
          [&](const proto::Welcome& welcome) -> std::optional<int> {
            if (state == State::AwaitingWelcome) {
              log->info("registered with {} as worker {}", options.endpoint, welcome.worker);
            }
            state = State::Registered;
            heartbeat = std::max(std::chrono::milliseconds(welcome.heartbeat_ms), 1ms);
            liveness = std::max(welcome.liveness, 1U);
            backoff = kBackoffMin;
            return std::nullopt;
          },
          [&](const proto::Tasks& tasks) -> std::optional<int> {
            on_tasks(tasks, message);
            return std::nullopt;
          },
          [&](const proto::CancelTasks& cancel) -> std::optional<int> {
            on_cancel(cancel);
            return std::nullopt;
          },
          [&](const proto::Heartbeat& /*heartbeat*/) -> std::optional<int> { return std::nullopt; },
          [&](const proto::Bye& bye) -> std::optional<int> {
            abandon_all();
            if (bye.reconnect) {
              // §6.4.5: "I no longer know you": register again at once, same socket.
              log->info("broker {} asks to register again: {}", options.endpoint, bye.reason);
              send_ready(now);
              return std::nullopt;
            }
            log->info("broker {} said bye: {}", options.endpoint,
                      bye.reason.empty() ? "no reason given" : bye.reason);
            close_socket(0ms);
            state = State::Disconnected;
            return 0;
          },
      },
      decoded->command);
}

void Worker::Impl::on_tasks(const proto::Tasks& tasks, net::Received& message) {
  // Payload frames start at part 3 (a DEALER receives no envelope); they are moved, not copied.
  std::size_t frame = 3;
  auto& job = jobs[tasks.job];
  if (tasks.common) {
    const auto& part = message.parts[frame++];
    try {
      job.common = std::make_shared<const msgpack::object_handle>(
          msgpack::unpack(static_cast<const char*>(part.data()), part.size()));
      job.common_broken = false;
    } catch (const std::exception& e) {
      log->warn("job {}: the common frame is not a msgpack value: {}", tasks.job, e.what());
      job.common.reset();
      job.common_broken = true;
    }
  }
  const RawFunction* function = registry.find(tasks.function);
  const auto name = std::make_shared<const std::string>(tasks.function);
  for (const auto& assignment : tasks.tasks) {
    auto& payload = message.parts[frame++];
    if (function == nullptr) {
      // §6.4.2: the broker requeues it elsewhere and stops sending us the function.
      add_result(tasks.job, assignment.index, proto::TaskStatus::Unsupported,
                 worker::error_frame("this worker has no function " + tasks.function, "Unsupported",
                                     identity));
    } else if (tasks.cores > slots) {
      add_result(tasks.job, assignment.index, proto::TaskStatus::Failed,
                 worker::error_frame(tasks.function + "() needs " + std::to_string(tasks.cores) +
                                         " cores per task but this worker has " +
                                         std::to_string(slots) + " slots",
                                     "TooManyCores", identity));
    } else if (job.common_broken) {
      add_result(tasks.job, assignment.index, proto::TaskStatus::Failed,
                 worker::error_frame("the common frame of the job is not a msgpack value",
                                     "MalformedCommon", identity));
    } else {
      auto task = std::make_shared<Task>();
      task->job = tasks.job;
      task->index = assignment.index;
      task->attempt = assignment.attempt;
      task->cores = tasks.cores;
      task->timeout = std::chrono::milliseconds(tasks.timeout_ms);
      task->function = name;
      task->run = function;
      task->payload = std::move(payload);
      task->common = job.common;
      queued.push_back(std::move(task));
    }
  }
  log->debug("job {}: received {} tasks of {}", tasks.job, tasks.tasks.size(), tasks.function);
}

void Worker::Impl::on_cancel(const proto::CancelTasks& cancel) {
  auto indices = cancel.tasks;
  std::sort(indices.begin(), indices.end());
  const auto matches = [&](std::uint64_t job, std::uint64_t index) {
    return job == cancel.job &&
           (indices.empty() || std::binary_search(indices.begin(), indices.end(), index));
  };
  std::erase_if(queued, [&](const auto& task) { return matches(task->job, task->index); });
  for (auto& task : running) {
    if (matches(task->job, task->index)) abandon(*task);
  }
  // §6.4.3: never send the result of an abandoned task, even one that ended a moment ago.
  std::size_t kept = 0;
  for (std::size_t i = 0; i < pending.size(); ++i) {
    if (matches(pending[i].job, pending[i].index)) continue;
    if (kept != i) {
      pending[kept] = pending[i];
      pending_frames[kept] = std::move(pending_frames[i]);
    }
    ++kept;
  }
  pending.resize(kept);
  pending_frames.resize(kept);
  if (cancel.tasks.empty()) jobs.erase(cancel.job);  // the job is over here: forget its common
}

void Worker::Impl::add_result(std::uint64_t job, std::uint64_t index, proto::TaskStatus status,
                              zmq::message_t frame) {
  pending.push_back({.job = job, .index = index, .status = status});
  pending_frames.push_back(std::move(frame));
}

void Worker::Impl::collect_finished() {
  for (auto& task : executor.take_finished()) {
    std::erase(running, task);
    free_cores += task->cores;
    pinning.pool.release(task->pool_cores);  // its function has returned: its cores are free
    if (!task->abandoned) add_result(task->job, task->index, task->status, std::move(task->result));
  }
}

void Worker::Impl::expire_timeouts(Clock::time_point now) {
  for (auto& task : running) {
    if (task->abandoned || task->timeout <= 0ms || now < task->deadline) continue;
    // §6.4.2: send timed-out, then abandon; the function's cores stay taken until it returns.
    add_result(task->job, task->index, proto::TaskStatus::TimedOut,
               worker::error_frame("task " + std::to_string(task->index) + " of " +
                                       *task->function + "() ran longer than its timeout of " +
                                       std::to_string(task->timeout.count()) + " ms",
                                   "TimedOut", identity));
    abandon(*task);
  }
}

void Worker::Impl::start_queued(Clock::time_point now) {
  // §8: start in received order, no overtaking, at most `slots` cores at once (abandoned tasks
  // that still run count too: they hold their cores until they return).
  while (!recycling && !queued.empty() && queued.front()->cores <= free_cores) {
    auto task = std::move(queued.front());
    queued.pop_front();
    free_cores -= task->cores;
    if (pinning.binder) {
      // The pool has `slots` cores and at most `slots` are taken: this take always succeeds.
      if (auto taken = pinning.pool.take(task->cores)) {
        task->cpus = pinning.pool.cpus(*taken);
        task->pool_cores = std::move(*taken);
      }
    }
    if (task->timeout > 0ms) task->deadline = now + task->timeout;
    running.push_back(task);
    executor.submit(std::move(task));
  }
}

void Worker::Impl::flush_results(Clock::time_point now) {
  if (pending.empty()) return;
  if (socket) {
    // One RESULTS for all that are ready (§6.3.2), split so each header stays small (§5.6).
    for (std::size_t first = 0; first < pending.size(); first += kMaxResultsPerMessage) {
      const auto count = std::min(kMaxResultsPerMessage, pending.size() - first);
      proto::TaskResults results;
      results.results.assign(pending.begin() + static_cast<std::ptrdiff_t>(first),
                             pending.begin() + static_cast<std::ptrdiff_t>(first + count));
      send(proto::encode(results), std::span(pending_frames).subspan(first, count), now);
    }
  }
  pending.clear();
  pending_frames.clear();
}

void Worker::Impl::abandon(Task& task) {
  if (task.abandoned) return;
  task.cancelled = true;
  task.abandoned = true;
  task.abandoned_at = Clock::now();
}

std::optional<int> Worker::Impl::check_stuck(Clock::time_point now) {
  // §6.4.3: a function that ignores cancellation cannot be stopped from outside its thread;
  // only a new process frees its cores.
  if (options.recycle_after <= 0ms) return std::nullopt;
  const auto stuck = std::find_if(running.begin(), running.end(), [&](const auto& task) {
    return task->abandoned && now - task->abandoned_at >= options.recycle_after;
  });
  if (stuck == running.end()) {
    if (recycling) {  // it returned after all, while the others ran: its cores are back
      recycling = false;
      log->info("the stuck task returned after all; starting tasks again");
    }
    return std::nullopt;
  }
  const auto busy = std::count_if(running.begin(), running.end(),
                                  [](const auto& task) { return !task->abandoned; });
  if (!recycling) {
    recycling = true;
    log->warn(
        "task {} of job {} ({}()) has not returned {} ms after it was abandoned; this "
        "worker starts no more tasks and is replaced{}",
        (*stuck)->index, (*stuck)->job, *(*stuck)->function,
        ms(now - (*stuck)->abandoned_at).count(),
        busy > 0 ? fmt::format(" when its {} other running tasks end", busy) : "");
  }
  if (busy > 0) return std::nullopt;
  flush_results(now);
  if (socket && state != State::Disconnected) {
    // The broker requeues what this worker still holds without blame (§6.3.4).
    send(proto::encode(proto::Peer::Worker,
                       proto::Bye{.reason = fmt::format("recycling: task {} of job {} is stuck in "
                                                        "{}()",
                                                        (*stuck)->index, (*stuck)->job,
                                                        *(*stuck)->function)}),
         {}, now);
  }
  queued.clear();
  // The process is replaced next, without destructors: closing the context is what waits (up
  // to the linger) until the results and the BYE have left.
  close_socket(500ms);
  context.close();
  state = State::Disconnected;
  return Worker::kRecycle;
}

void Worker::Impl::abandon_all() {
  queued.clear();
  for (auto& task : running) abandon(*task);
  jobs.clear();
  pending.clear();
  pending_frames.clear();
}

std::optional<int> Worker::Impl::check_broker(Clock::time_point now) {
  if (state == State::AwaitingWelcome && now - ready_sent >= kWelcomeTimeout) {
    broker_gone("no WELCOME within 3 s", now);
  } else if (state == State::Registered && now - last_heard >= heartbeat * liveness) {
    broker_gone(fmt::format("silent for {} ms", ms(now - last_heard).count()), now);
  }
  if (state != State::Registered && options.give_up_after > 0ms &&
      now - last_heard >= options.give_up_after) {
    log->warn("giving up: no broker at {} for {} ms", options.endpoint,
              ms(now - last_heard).count());
    abandon_all();
    close_socket(0ms);
    state = State::Disconnected;
    return 1;
  }
  return std::nullopt;
}

void Worker::Impl::broker_gone(const std::string& why, Clock::time_point now) {
  // §9: abandon everything, forget common frames, new socket after a jittered backoff.
  const auto delay = std::chrono::milliseconds(
      std::uniform_int_distribution<std::int64_t>(backoff.count() / 2, backoff.count())(random));
  log->warn("broker {} gone ({}); abandoning {} tasks, reconnecting in {} ms", options.endpoint,
            why, queued.size() + running.size(), delay.count());
  abandon_all();
  close_socket(0ms);
  state = State::Disconnected;
  next_connect = now + delay;
  backoff =
      std::min(backoff * 2, std::chrono::duration_cast<std::chrono::milliseconds>(kBackoffMax));
}

Worker::Worker(WorkerOptions options, const FunctionRegistry& registry)
    : impl_(std::make_unique<Impl>(std::move(options), registry)) {}

Worker::~Worker() = default;

int Worker::run() {
  return impl_->run();
}

void Worker::stop() noexcept {
  impl_->stop_requested.store(true);
  impl_->notifier->notify();
}

}  // namespace acme
