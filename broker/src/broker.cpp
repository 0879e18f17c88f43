// The broker's event loop: decode what arrives on the ROUTER socket, turn it into scheduler
// events, turn the scheduler's decisions into messages (docs/ARCHITECTURE.md). Every rule cites
// the section of docs/PROTOCOL.md it implements. One thread: run() owns all state below.
#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include <fmt/format.h>
#include <zmq.hpp>

#include <acme/broker/broker.hpp>
#include <acme/error.hpp>
#include <acme/log.hpp>
#include <acme/scheduler/scheduler.hpp>

#include "payload_store.hpp"
#include "router.hpp"
#include <fcntl.h>
#include <unistd.h>

namespace acme::broker {
namespace {

using scheduler::Clock;
using scheduler::TimePoint;
using std::chrono::milliseconds;

/// PROTOCOL.md §5.6: 1024 result entries always fit in one header.
constexpr std::size_t kMaxResultsPerMessage = 1024;
/// Messages handled per wake-up before the scheduler runs, so that a flood of input still lets
/// decisions (and the stop pipe) through.
constexpr std::size_t kMaxDrain = 4096;

template <class... F>
struct Overloaded : F... {
  using F::operator()...;
};
template <class... F>
Overloaded(F...) -> Overloaded<F...>;

template <class Id>
std::size_t index_of(Id id) {
  return static_cast<std::size_t>(to_underlying(id));
}

enum class Role : std::uint8_t { Client, Worker };

/// What a routing identity is bound to while its session or registration lives (§4).
struct PeerRef {
  Role role = Role::Client;
  std::uint32_t id = 0;  // ClientId or WorkerId
};

struct StringHash {
  using is_transparent = void;  // NOLINT(readability-identifier-naming): the standard's name
  std::size_t operator()(std::string_view text) const noexcept {
    return std::hash<std::string_view>{}(text);
  }
};

struct ClientPeer {
  ClientId id{};
  bool alive = false;
  std::string identity{};
  std::unordered_map<std::uint64_t, JobId> jobs{};  // client job id -> broker job id (§6)
  std::uint64_t last_job = 0;                       // client job id of the latest ACCEPT
  std::uint64_t last_received = 0;                  // and its `received`
  TimePoint last_sent{};
};

struct WorkerPeer {
  WorkerId id{};
  bool alive = false;
  std::string identity{};
  std::string host{};
  std::uint32_t pid = 0;
  std::uint32_t slots = 1;
  std::uint32_t functions = 0;  // distinct names in its READY
  std::string launch{};         // its READY's launch tag, for STATUS (§6.2.7)
  TimePoint last_sent{};
};

struct JobRecord {
  ClientId client{};
  std::uint64_t client_job = 0;
  std::string function{};
  std::uint64_t total = 0;
  std::uint32_t timeout_ms = 0;
  std::uint32_t cores = 1;
  std::uint32_t max_retries = 1;
  PayloadStore payloads{};
  std::vector<WorkerId> sent_to{};  // sorted: registrations that got TASKS of the job (§6.4.2)
  std::vector<protocol::JobResult> results{};   // delivered by the scheduler, not yet sent
  std::vector<zmq::message_t> result_frames{};  // their payloads, moved from the workers
  bool flush_listed = false;
  TimePoint opened{};
};

std::string_view end_name(scheduler::JobEnd end) {
  switch (end) {
    case scheduler::JobEnd::Completed: return "completed";
    case scheduler::JobEnd::Cancelled: return "cancelled";
    case scheduler::JobEnd::ClientLost: return "client lost";
    case scheduler::JobEnd::NoWorker: return "no worker for its function";
  }
  return "closed";
}

double seconds(Clock::duration duration) {
  return std::chrono::duration<double>(duration).count();
}

std::uint32_t distinct(const std::vector<std::string>& names) {
  std::vector<std::string_view> sorted(names.begin(), names.end());
  std::sort(sorted.begin(), sorted.end());
  return static_cast<std::uint32_t>(std::unique(sorted.begin(), sorted.end()) - sorted.begin());
}

zmq::context_t& context_of(const BrokerOptions& options, std::optional<zmq::context_t>& own) {
  if (options.context != nullptr) return *options.context;
  return own.emplace(1);
}

}  // namespace

struct Broker::Impl {
  explicit Impl(BrokerOptions options);
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;
  Impl(Impl&&) = delete;
  Impl& operator=(Impl&&) = delete;
  ~Impl();

  void run();
  void handle(TimePoint now);
  void on_client(const protocol::Signature& signature, TimePoint now);
  void on_worker(const protocol::Signature& signature, TimePoint now);
  void on_submit(ClientPeer* client, const protocol::Submit& submit, TimePoint now);
  void on_cancel(ClientPeer* client, const protocol::CancelJob& cancel, TimePoint now);
  void on_status(const protocol::StatusRequest& request, TimePoint now);
  void on_ready(WorkerPeer* worker, protocol::Ready&& ready, TimePoint now);
  void on_results(WorkerId id, const protocol::TaskResults& results, TimePoint now);
  void execute(std::vector<scheduler::Decision>& decisions, TimePoint now);
  void send_tasks(scheduler::SendTasks& send, TimePoint now);
  void poison(const scheduler::TaskPoisoned& poisoned);
  void finish(const scheduler::JobFinished& finished, TimePoint now);
  void deliver(JobId id, JobRecord& job, protocol::JobResult result, zmq::message_t&& frame);
  void flush(JobId id, JobRecord& job, TimePoint now);
  void flush_all(TimePoint now);
  void heartbeat(TimePoint now);
  void shutdown(TimePoint now);
  void publish_stats();

  ClientPeer* client_of(std::string_view identity);
  std::optional<JobId> open_job_of(const ClientPeer* client, std::uint64_t job);
  WorkerPeer* worker_of(std::string_view identity);
  void forget(ClientId id);
  void forget(WorkerId id);
  void send_client(ClientId id, const protocol::Encoded& message, TimePoint now,
                   std::span<zmq::message_t> payload = {});
  void send_worker(WorkerId id, const protocol::Encoded& message, TimePoint now,
                   std::span<zmq::message_t> payload = {});
  void reply(std::string_view identity, const protocol::Encoded& message);
  void refuse(std::string_view identity, protocol::ErrorCode code, std::string message,
              std::optional<std::uint64_t> job);
  void drop(std::string_view why, TimePoint now);
  [[nodiscard]] std::uint32_t heartbeat_ms() const;

  BrokerOptions options_;
  std::optional<zmq::context_t> own_context_{};
  Router router_;
  std::array<int, 2> stop_pipe_{-1, -1};
  scheduler::Scheduler scheduler_;
  std::shared_ptr<spdlog::logger> log_ = logger("broker");

  std::unordered_map<std::string, PeerRef, StringHash, std::equal_to<>> peers_{};
  std::vector<ClientPeer> clients_{};  // indexed by ClientId, as the scheduler assigns them
  std::vector<WorkerPeer> workers_{};  // indexed by WorkerId
  std::unordered_map<JobId, JobRecord> jobs_{};
  std::vector<JobId> flush_list_{};  // jobs with delivered results not yet sent

  Incoming in_{};                          // the message being handled
  std::vector<zmq::message_t> scratch_{};  // payload of the TASKS being built
  TimePoint started_{};  // run()'s first clock read: STATUS uptime_ms counts from here
  TimePoint next_heartbeat_{};
  TimePoint next_drop_log_{};
  std::uint64_t dropped_since_log_ = 0;

  BrokerStats stats_{};  // run()'s own copy; published to `published_` once per iteration
  mutable std::mutex stats_mutex_;
  BrokerStats published_{};
};

// ---------------------------------------------------------------------------------------------
// Setup

Broker::Impl::Impl(BrokerOptions options)
    : options_(std::move(options)),
      router_(context_of(options_, own_context_), options_.endpoint),
      scheduler_(options_.scheduler) {
  // stop() writes a byte here; run() polls the read end as a raw fd (async-signal-safe).
  if (::pipe2(stop_pipe_.data(), O_NONBLOCK | O_CLOEXEC) != 0) {
    throw Error(Errc::System, fmt::format("cannot create the broker's stop pipe: errno {}", errno));
  }
}

Broker::Impl::~Impl() {
  for (const int fd : stop_pipe_) {
    if (fd >= 0) ::close(fd);
  }
}

std::uint32_t Broker::Impl::heartbeat_ms() const {
  return static_cast<std::uint32_t>(scheduler_.config().heartbeat_interval.count());
}

// ---------------------------------------------------------------------------------------------
// The loop

void Broker::Impl::run() {
  auto now = Clock::now();
  started_ = now;
  next_heartbeat_ = now + scheduler_.config().heartbeat_interval;
  while (true) {
    const auto wake = std::min(scheduler_.next_deadline(), next_heartbeat_);
    auto timeout = milliseconds{1000};
    if (wake <= now) {
      timeout = milliseconds{0};
    } else if (wake - now < timeout) {
      // Round up, so that the loop does not wake a fraction of a millisecond early and spin.
      timeout = std::chrono::ceil<milliseconds>(wake - now);
    }
    std::array items{zmq::pollitem_t{router_.socket().handle(), 0, ZMQ_POLLIN, 0},
                     zmq::pollitem_t{nullptr, stop_pipe_[0], ZMQ_POLLIN, 0}};
    try {
      zmq::poll(items.data(), items.size(), timeout);
    } catch (const zmq::error_t& error) {
      if (error.num() != EINTR) throw;
      continue;  // a signal: its handler may have called stop(), which the next poll sees
    }
    now = Clock::now();  // the loop's one clock read: every call below gets this time
    if ((items[1].revents & ZMQ_POLLIN) != 0) break;
    for (std::size_t n = 0; n < kMaxDrain && router_.receive(in_); ++n) handle(now);
    scheduler_.tick(now);
    auto decisions = scheduler_.take_decisions();
    execute(decisions, now);
    flush_all(now);
    if (now >= next_heartbeat_) heartbeat(now);
    publish_stats();
  }
  std::array<char, 64> sink{};
  while (::read(stop_pipe_[0], sink.data(), sink.size()) > 0) {
  }
  shutdown(Clock::now());
  publish_stats();
}

void Broker::Impl::handle(TimePoint now) {
  if (in_.frames.empty()) return drop("a message with no signature frame", now);
  const auto signature = protocol::decode_signature(in_.frames.front());
  if (!signature) {
    return drop(fmt::format("a message without an acme signature ({})",
                            protocol::describe(signature.error())),
                now);
  }
  // §4: an identity speaks one role while the broker knows it.
  const auto bound = peers_.find(in_.identity());
  switch (signature->peer) {
    case protocol::Peer::Client:
      if (bound != peers_.end() && bound->second.role != Role::Client) {
        return drop("a client message from a worker's identity", now);
      }
      return on_client(*signature, now);
    case protocol::Peer::Worker:
      if (bound != peers_.end() && bound->second.role != Role::Worker) {
        return drop("a worker message from a client's identity", now);
      }
      return on_worker(*signature, now);
    case protocol::Peer::Broker: return drop("a message with a broker signature", now);
  }
}

// ---------------------------------------------------------------------------------------------
// Clients (PROTOCOL.md §6.1)

void Broker::Impl::on_client(const protocol::Signature& signature, TimePoint now) {
  const auto identity = in_.identity();
  const auto& frames = in_.frames;
  const auto header_job = [&] { return frames.size() >= 3 ? peek_job(frames[2]) : std::nullopt; };
  // §5.6: the broker's size limit on client messages.
  if (options_.max_client_message > 0 && in_.size() > options_.max_client_message) {
    ++stats_.messages_rejected;
    return refuse(identity, protocol::ErrorCode::TooLarge,
                  fmt::format("message of {} bytes exceeds the broker's limit of {} bytes",
                              in_.size(), options_.max_client_message),
                  header_job());
  }
  auto decoded = protocol::decode_client(frames);
  if (!decoded) {
    // §11: control errors are replies; the broker changes nothing and carries on.
    const auto error = decoded.error();
    const auto code = client_error_code(error);
    if (!code) return drop(protocol::describe(error), now);
    ++stats_.messages_rejected;
    if (error == protocol::DecodeError::VersionMismatch) {
      return refuse(identity, *code, version_mismatch_message(signature.version), std::nullopt);
    }
    return refuse(identity, *code, std::string(protocol::describe(error)), header_job());
  }
  auto* client = client_of(identity);
  if (client != nullptr) {
    scheduler_.heard_from(client->id, now);
  }
  std::visit(Overloaded{
                 [&](const protocol::Submit& submit) { on_submit(client, submit, now); },
                 [&](const protocol::CancelJob& cancel) { on_cancel(client, cancel, now); },
                 [&](const protocol::Heartbeat&) {
                   // §9: an unknown client's HEARTBEAT learns that the broker forgot it.
                   if (client == nullptr) {
                     reply(identity, protocol::encode(protocol::Peer::Broker,
                                                      protocol::Bye{.reason = "unknown client",
                                                                    .reconnect = true}));
                   }
                 },
                 [&](const protocol::StatusRequest& request) { on_status(request, now); },
                 [&](const protocol::Bye& bye) {
                   // §6.1.4: BYE ends the session; its open jobs close without DONE.
                   if (client == nullptr) return;
                   const auto id = client->id;
                   log_->info("client {} left ({} open jobs){}{}", to_underlying(id),
                              client->jobs.size(), bye.reason.empty() ? "" : ": ", bye.reason);
                   scheduler_.client_left(id, now);
                   forget(id);
                 },
             },
             decoded->command);
}

void Broker::Impl::on_submit(ClientPeer* client, const protocol::Submit& submit, TimePoint now) {
  const auto identity = in_.identity();
  const auto bad_request = [&](std::string message) {
    refuse(identity, protocol::ErrorCode::BadRequest, std::move(message), submit.job);
  };
  JobRecord* job = nullptr;
  JobId job_id{};
  // §6.1.1: a job's tasks arrive in order; the first SUBMIT opens it, later ones continue it.
  if (submit.first == 0) {
    if (client != nullptr && client->jobs.contains(submit.job)) {
      return bad_request(fmt::format("job {} is already open", submit.job));
    }
    const auto window =
        client != nullptr ? scheduler_.window(client->id) : scheduler_.config().client_window;
    if (submit.count > window) {
      return bad_request(
          fmt::format("window exceeded: {} tasks sent, window {}", submit.count, window));
    }
    if (client == nullptr) {  // §9: a SUBMIT with first == 0 starts a session
      const auto id = scheduler_.add_client(now);
      if (index_of(id) >= clients_.size()) clients_.resize(index_of(id) + 1);
      client = &clients_[index_of(id)];
      client->id = id;
      client->alive = true;
      client->identity = std::string(identity);
      client->last_sent = now;
      peers_.emplace(client->identity, PeerRef{Role::Client, to_underlying(id)});
    }
    const auto client_id = client->id;
    const scheduler::JobSpec spec{
        .client = client_id,
        .function = submit.function,
        .total = submit.total,
        .max_retries = submit.max_retries.value_or(scheduler_.config().max_retries),
        .retry_on_error = submit.retry_on_error,
        .cores = submit.cores,
    };
    job_id = scheduler_.open_job(spec, now);
    job = &jobs_[job_id];
    job->client = client_id;
    job->client_job = submit.job;
    job->function = submit.function;
    job->total = submit.total;
    job->timeout_ms = submit.timeout_ms;
    job->cores = std::max<std::uint32_t>(submit.cores, 1);
    job->max_retries = std::max<std::uint32_t>(spec.max_retries, 1);
    job->opened = now;
    client->jobs.emplace(submit.job, job_id);
    log_->info("job {} opened: client {} job {}, function '{}', {} tasks, {} cores each",
               to_underlying(job_id), to_underlying(client_id), submit.job, submit.function,
               submit.total, job->cores);
  } else {
    const auto open = open_job_of(client, submit.job);
    if (!open) return bad_request(fmt::format("job {} is not open", submit.job));
    job_id = *open;
    job = &jobs_.at(job_id);
    if (submit.function != job->function || submit.total != job->total) {
      return bad_request(fmt::format(
          "SUBMIT for job {} names another function or total than its first", submit.job));
    }
    if (submit.first != job->payloads.received()) {
      return bad_request(fmt::format("tasks of job {} out of order: first is {}, expected {}",
                                     submit.job, submit.first, job->payloads.received()));
    }
    const auto window = scheduler_.window(client->id);
    if (submit.count > window) {
      return bad_request(
          fmt::format("window exceeded: {} tasks sent, window {}", submit.count, window));
    }
  }
  // §5.5: keep the frames as received, to forward them unchanged.
  auto part = Incoming::kPayloadPart;
  if (submit.common) job->payloads.set_common(std::move(in_.parts[part++]));
  for (std::uint32_t i = 0; i < submit.count; ++i) job->payloads.push(std::move(in_.parts[part++]));
  scheduler_.add_tasks(job_id, submit.count, now);
  stats_.tasks_received += submit.count;
  client->last_job = submit.job;
  client->last_received = job->payloads.received();
  const auto client_id = job->client;
  send_client(client_id,
              protocol::encode(protocol::Accept{.job = submit.job,
                                                .received = job->payloads.received(),
                                                .window = scheduler_.window(client_id),
                                                .heartbeat_ms = heartbeat_ms()}),
              now);
}

void Broker::Impl::on_cancel(ClientPeer* client, const protocol::CancelJob& cancel, TimePoint now) {
  const auto open = open_job_of(client, cancel.job);
  if (!open) {
    return refuse(in_.identity(), protocol::ErrorCode::BadRequest,
                  fmt::format("job {} is not open", cancel.job), cancel.job);
  }
  // §6.1.2: results delivered before the CANCEL was read still go out, then DONE; the
  // scheduler's JobFinished (Cancelled) sends DONE and CANCELs the workers.
  const auto id = *open;
  flush(id, jobs_.at(id), now);
  scheduler_.cancel(id, now);
}

void Broker::Impl::on_status(const protocol::StatusRequest& request, TimePoint now) {
  // §6.1.5: answered to any identity, known or not; no session starts and nothing changes.
  const auto load = scheduler_.load();
  protocol::StatusReply status{
      .agent = "acme-broker " ACME_VERSION,
      .uptime_ms = static_cast<std::uint64_t>(
          std::chrono::duration_cast<milliseconds>(now - started_).count()),
      .clients = static_cast<std::uint64_t>(
          std::count_if(peers_.begin(), peers_.end(),
                        [](const auto& peer) { return peer.second.role == Role::Client; })),
      .jobs = load.jobs,
      .tasks_queued = load.queued,
      .tasks_running = load.running,
      .tasks_done = load.done,
      .tasks_failed = load.failed,
      .workers = {},
      .workers_omitted = 0,
  };
  for (const auto& worker : workers_) {
    if (!worker.alive || (request.launch && worker.launch != *request.launch)) continue;
    status.workers.push_back(protocol::WorkerInfo{.id = to_underlying(worker.id),
                                                  .host = worker.host,
                                                  .pid = worker.pid,
                                                  .slots = worker.slots,
                                                  .running = scheduler_.running(worker.id),
                                                  .launch = worker.launch,
                                                  .functions = worker.functions});
  }
  auto encoded = protocol::encode(status);
  // §6.2.7: the list is cut, highest ids first, so that the header stays within §5.6.
  while (encoded.header.size() > protocol::kMaxHeaderBytes && !status.workers.empty()) {
    const auto per_worker = std::max<std::size_t>(encoded.header.size() / status.workers.size(), 1);
    const auto excess = encoded.header.size() - protocol::kMaxHeaderBytes;
    const auto cut = std::min(status.workers.size(), excess / per_worker + 1);
    status.workers.resize(status.workers.size() - cut);
    status.workers_omitted += cut;
    encoded = protocol::encode(status);
  }
  log_->debug("answered STATUS: {} workers listed, {} omitted", status.workers.size(),
              status.workers_omitted);
  reply(in_.identity(), encoded);
}

// ---------------------------------------------------------------------------------------------
// Workers (PROTOCOL.md §6.3)

void Broker::Impl::on_worker(const protocol::Signature& signature, TimePoint now) {
  const auto identity = in_.identity();
  auto decoded = protocol::decode_worker(in_.frames);
  if (!decoded) {
    const auto error = decoded.error();
    // §11: a worker that speaks another version, or whose READY is broken, is refused for
    // good; any other broken worker message is dropped (an ERROR would not help it).
    if (error == protocol::DecodeError::VersionMismatch) {
      ++stats_.messages_rejected;
      return reply(
          identity,
          protocol::encode(protocol::Peer::Broker,
                           protocol::Bye{.reason = version_mismatch_message(signature.version),
                                         .reconnect = false}));
    }
    const auto& frames = in_.frames;
    const bool ready = frames.size() >= 2 && frames[1].size() == 1 &&
                       frames[1][0] == static_cast<std::byte>(protocol::Command::Ready);
    if (ready) {
      ++stats_.messages_rejected;
      return reply(identity,
                   protocol::encode(protocol::Peer::Broker,
                                    protocol::Bye{.reason = fmt::format("malformed READY: {}",
                                                                        protocol::describe(error)),
                                                  .reconnect = false}));
    }
    return drop(fmt::format("a worker message: {}", protocol::describe(error)), now);
  }
  auto* worker = worker_of(identity);
  const auto id = worker != nullptr ? worker->id : WorkerId{};
  if (worker != nullptr) scheduler_.heard_from(id, now);
  const auto unknown = [&] {
    // §9: an unknown worker identity gets BYE reconnect true for anything but READY.
    reply(identity, protocol::encode(protocol::Peer::Broker,
                                     protocol::Bye{.reason = "unknown worker", .reconnect = true}));
  };
  std::visit(Overloaded{
                 [&](protocol::Ready& ready) { on_ready(worker, std::move(ready), now); },
                 [&](const protocol::TaskResults& results) {
                   if (worker == nullptr) return unknown();
                   on_results(id, results, now);
                 },
                 [&](const protocol::Heartbeat&) {
                   if (worker == nullptr) unknown();
                 },
                 [&](const protocol::Bye& bye) {
                   // §6.3.4: requeue its tasks without blame. Nobody answers a BYE.
                   if (worker == nullptr) return;
                   log_->info("worker {} ({}:{}) left{}{}", to_underlying(id), worker->host,
                              worker->pid, bye.reason.empty() ? "" : ": ", bye.reason);
                   scheduler_.worker_left(id, now);
                   forget(id);
                 },
             },
             decoded->command);
}

void Broker::Impl::on_ready(WorkerPeer* worker, protocol::Ready&& ready, TimePoint now) {
  const auto identity = in_.identity();
  if (worker != nullptr) {
    // §6.3.1: READY from a registered worker ends the old registration as if it said BYE.
    const auto old = worker->id;
    log_->info("worker {} ({}:{}) registers again", to_underlying(old), worker->host, worker->pid);
    scheduler_.worker_left(old, now);
    forget(old);
  }
  const auto functions = distinct(ready.functions);
  const auto id =
      scheduler_.add_worker(scheduler::WorkerSpec{.functions = std::move(ready.functions),
                                                  .slots = ready.slots,
                                                  .prefetch = ready.prefetch},
                            now);
  if (index_of(id) >= workers_.size()) workers_.resize(index_of(id) + 1);
  auto& record = workers_[index_of(id)];
  record.id = id;
  record.alive = true;
  record.identity = std::string(identity);
  record.host = std::move(ready.host);
  record.pid = ready.pid;
  record.slots = std::max<std::uint32_t>(ready.slots, 1);
  record.functions = functions;
  record.launch = std::move(ready.launch);
  peers_.emplace(record.identity, PeerRef{Role::Worker, to_underlying(id)});
  log_->info("worker {} ({}:{}) joined: {} slots, prefetch {}, agent '{}'{}{}", to_underlying(id),
             record.host, record.pid, ready.slots, ready.prefetch, ready.agent,
             record.launch.empty() ? "" : ", launch ", record.launch);
  send_worker(id,
              protocol::encode(protocol::Welcome{.worker = to_underlying(id),
                                                 .heartbeat_ms = heartbeat_ms(),
                                                 .liveness = scheduler_.config().liveness}),
              now);
}

void Broker::Impl::on_results(WorkerId id, const protocol::TaskResults& results, TimePoint now) {
  for (std::size_t i = 0; i < results.results.size(); ++i) {
    const auto& result = results.results[i];
    const auto job_id = JobId{result.job};
    const auto verdict = scheduler_.task_done(id, job_id, result.index, result.status, now);
    switch (verdict.verdict) {
      case scheduler::Verdict::Deliver: {
        // §10: this is the task's one result. Its frame moves on to the client unchanged.
        const auto it = jobs_.find(job_id);
        if (it == jobs_.end()) break;  // cannot happen: the scheduler knows the job
        deliver(job_id, it->second,
                protocol::JobResult{
                    .index = result.index, .status = result.status, .attempts = verdict.attempt},
                std::move(in_.parts[Incoming::kPayloadPart + i]));
        break;
      }
      case scheduler::Verdict::Drop: ++stats_.late_results; break;  // §10: late or unknown
      case scheduler::Verdict::Retry: break;  // back in the queue; the frame stays stored
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Decisions

void Broker::Impl::execute(std::vector<scheduler::Decision>& decisions, TimePoint now) {
  for (auto& decision : decisions) {
    std::visit(
        Overloaded{
            [&](scheduler::SendTasks& send) { send_tasks(send, now); },
            [&](const scheduler::CancelTasks& cancel) {
              // Today only a closing job cancels tasks, and its JobFinished (next) sends the
              // empty CANCEL that ends the job on every worker (§6.4.3); a cancel of single
              // tasks of a job that goes on is sent as is.
              if (!scheduler_.job_open(cancel.job)) return;
              send_worker(cancel.worker,
                          protocol::encode(protocol::CancelTasks{.job = to_underlying(cancel.job),
                                                                 .tasks = cancel.tasks}),
                          now);
            },
            [&](const scheduler::TaskPoisoned& poisoned) { poison(poisoned); },
            [&](const scheduler::JobFinished& finished) { finish(finished, now); },
            [&](const scheduler::WorkerLost& lost) {
              // §9: unregistered and requeued by the scheduler; told BYE in case it is slow.
              ++stats_.workers_lost;
              auto& worker = workers_[index_of(lost.worker)];
              log_->info("worker {} ({}:{}) lost: silent for {:.1f} s; requeued {}, poisoned {}",
                         to_underlying(lost.worker), worker.host, worker.pid,
                         seconds(scheduler_.config().peer_timeout()), lost.requeued, lost.poisoned);
              send_worker(lost.worker,
                          protocol::encode(protocol::Peer::Broker,
                                           protocol::Bye{.reason = "declared dead: silent too long",
                                                         .reconnect = true}),
                          now);
              forget(lost.worker);
            },
            [&](const scheduler::ClientLost& lost) {
              // §9: its jobs close (JobFinished follows); told BYE if it had any.
              ++stats_.clients_lost;
              const auto& client = clients_[index_of(lost.client)];
              // A client with no open jobs may stay silent (§9): forgetting it is no news.
              log_->log(client.jobs.empty() ? spdlog::level::debug : spdlog::level::info,
                        "client {} lost: silent for {:.1f} s; {} open jobs closed",
                        to_underlying(lost.client), seconds(scheduler_.config().peer_timeout()),
                        client.jobs.size());
              if (!client.jobs.empty()) {
                send_client(
                    lost.client,
                    protocol::encode(protocol::Peer::Broker,
                                     protocol::Bye{.reason = "declared dead: silent too long",
                                                   .reconnect = true}),
                    now);
              }
              forget(lost.client);
            },
            [&](const scheduler::WindowOpened& opened) {
              // §6.2.1: the unsolicited ACCEPT names the job of the latest accepted SUBMIT.
              const auto& client = clients_[index_of(opened.client)];
              if (!client.alive) return;
              send_client(opened.client,
                          protocol::encode(protocol::Accept{.job = client.last_job,
                                                            .received = client.last_received,
                                                            .window = opened.window,
                                                            .heartbeat_ms = heartbeat_ms()}),
                          now);
            },
        },
        decision);
  }
}

void Broker::Impl::send_tasks(scheduler::SendTasks& send, TimePoint now) {
  const auto it = jobs_.find(send.job);
  if (it == jobs_.end() || !workers_[index_of(send.worker)].alive) {
    log_->error("internal: TASKS for job {} to worker {}, which the broker does not know",
                to_underlying(send.job), to_underlying(send.worker));
    return;
  }
  auto& job = it->second;
  // §6.4.2: the common frame comes only with the job's first TASKS to a registration.
  const auto pos = std::lower_bound(job.sent_to.begin(), job.sent_to.end(), send.worker);
  const bool first = pos == job.sent_to.end() || *pos != send.worker;
  if (first) job.sent_to.insert(pos, send.worker);
  const bool common = first && job.payloads.has_common();
  scratch_.clear();
  if (common) scratch_.push_back(job.payloads.share_common());
  for (const auto& task : send.tasks) scratch_.push_back(job.payloads.share(task.index));
  stats_.tasks_dispatched += send.tasks.size();
  protocol::Tasks tasks{.job = to_underlying(send.job),
                        .function = job.function,
                        .common = common,
                        .timeout_ms = job.timeout_ms,
                        .cores = job.cores,
                        .tasks = std::move(send.tasks)};
  send_worker(send.worker, protocol::encode(tasks), now, scratch_);
  scratch_.clear();
}

void Broker::Impl::poison(const scheduler::TaskPoisoned& poisoned) {
  const auto it = jobs_.find(poisoned.job);
  if (it == jobs_.end()) return;
  auto& job = it->second;
  ++stats_.tasks_poisoned;
  // §10: a poisoned task's payload is an error map written by the broker.
  const auto& last = workers_[index_of(poisoned.last_worker)];
  const auto map = protocol::encode_error_info(protocol::ErrorInfo{
      .message = fmt::format("task {} was running on {} workers that died (last: {} pid {})",
                             poisoned.index, job.max_retries, last.host, last.pid),
      .kind = "Poisoned",
      .traceback = {},
      .host = last.host,
      .pid = last.pid,
  });
  deliver(poisoned.job, job,
          protocol::JobResult{.index = poisoned.index,
                              .status = protocol::TaskStatus::Poisoned,
                              .attempts = poisoned.attempts},
          zmq::message_t(map.data(), map.size()));
}

void Broker::Impl::deliver(JobId id, JobRecord& job, protocol::JobResult result,
                           zmq::message_t&& frame) {
  job.payloads.release(result.index);  // the task's frame is no longer needed
  job.results.push_back(result);
  job.result_frames.push_back(std::move(frame));
  ++stats_.results_delivered;
  if (!job.flush_listed) {
    job.flush_listed = true;
    flush_list_.push_back(id);
  }
}

void Broker::Impl::finish(const scheduler::JobFinished& finished, TimePoint now) {
  const auto it = jobs_.find(finished.job);
  if (it == jobs_.end()) return;
  auto& job = it->second;
  flush(finished.job, job, now);  // §6.2.3: DONE comes after the job's last RESULTS
  auto& client = clients_[index_of(job.client)];
  if (client.alive) {
    switch (finished.end) {
      case scheduler::JobEnd::Completed:
      case scheduler::JobEnd::Cancelled:
        send_client(job.client,
                    protocol::encode(
                        protocol::Done{.job = job.client_job,
                                       .ok = finished.ok,
                                       .failed = finished.failed,
                                       .cancelled = finished.end == scheduler::JobEnd::Cancelled}),
                    now);
        break;
      case scheduler::JobEnd::NoWorker:
        // §6.2.4: no-such-function closes the job; no DONE follows.
        send_client(job.client,
                    protocol::encode(protocol::Error{
                        .code = protocol::ErrorCode::NoSuchFunction,
                        .message = fmt::format(
                            "no live worker offers function '{}' with {} cores for {} ms",
                            job.function, job.cores, scheduler_.config().no_worker_timeout.count()),
                        .job = job.client_job}),
                    now);
        break;
      case scheduler::JobEnd::ClientLost: break;  // nobody to tell
    }
    client.jobs.erase(job.client_job);
  }
  // §6.4.3: the job is over on every live registration that got TASKS of it.
  for (const auto worker : job.sent_to) {
    if (!workers_[index_of(worker)].alive) continue;
    send_worker(
        worker,
        protocol::encode(protocol::CancelTasks{.job = to_underlying(finished.job), .tasks = {}}),
        now);
  }
  log_->info("job {} finished ({}): client {} job {}, {} ok, {} failed, {:.3f} s",
             to_underlying(finished.job), end_name(finished.end), to_underlying(job.client),
             job.client_job, finished.ok, finished.failed, seconds(now - job.opened));
  jobs_.erase(it);  // frees every frame still stored
}

void Broker::Impl::flush(JobId /*id*/, JobRecord& job, TimePoint now) {
  job.flush_listed = false;
  if (job.results.empty()) return;
  if (clients_[index_of(job.client)].alive) {
    // §6.2.2: one RESULTS per ready batch, split so that each header stays small (§5.6).
    protocol::JobResults message{.job = job.client_job, .results = {}};
    const std::span frames(job.result_frames);
    if (job.results.size() <= kMaxResultsPerMessage) {
      message.results = std::move(job.results);
      send_client(job.client, protocol::encode(message), now, frames);
      job.results = std::move(message.results);  // keeps its capacity for the next batch
    } else {
      for (std::size_t first = 0; first < job.results.size(); first += kMaxResultsPerMessage) {
        const auto count = std::min(kMaxResultsPerMessage, job.results.size() - first);
        const auto begin = job.results.begin() + static_cast<std::ptrdiff_t>(first);
        message.results.assign(begin, begin + static_cast<std::ptrdiff_t>(count));
        send_client(job.client, protocol::encode(message), now, frames.subspan(first, count));
      }
    }
  }
  job.results.clear();
  job.result_frames.clear();
}

void Broker::Impl::flush_all(TimePoint now) {
  for (const auto id : flush_list_) {
    const auto it = jobs_.find(id);
    if (it != jobs_.end() && it->second.flush_listed) flush(id, it->second, now);
  }
  flush_list_.clear();
}

void Broker::Impl::heartbeat(TimePoint now) {
  // §9: every live peer the broker has sent nothing to for an interval gets a HEARTBEAT.
  const auto interval = scheduler_.config().heartbeat_interval;
  auto next = now + interval;
  const auto beat = protocol::encode(protocol::Peer::Broker, protocol::Heartbeat{});
  for (const auto& [identity, ref] : peers_) {
    auto& last_sent =
        ref.role == Role::Client ? clients_[ref.id].last_sent : workers_[ref.id].last_sent;
    if (now - last_sent >= interval) {
      router_.send(identity, beat);
      last_sent = now;
    }
    next = std::min(next, last_sent + interval);
  }
  next_heartbeat_ = next;
}

void Broker::Impl::shutdown(TimePoint now) {
  // §11: a stopping broker sends BYE reconnect false to every peer it knows.
  flush_all(now);
  const auto bye = protocol::encode(protocol::Peer::Broker,
                                    protocol::Bye{.reason = "broker stopping", .reconnect = false});
  for (const auto& [identity, ref] : peers_) router_.send(identity, bye);
  log_->info("stopping: said BYE to {} peers; {} jobs open", peers_.size(), jobs_.size());
}

void Broker::Impl::publish_stats() {
  stats_.workers = scheduler_.live_workers();
  stats_.jobs = scheduler_.open_jobs();
  const std::lock_guard lock(stats_mutex_);
  published_ = stats_;
}

// ---------------------------------------------------------------------------------------------
// Peers

ClientPeer* Broker::Impl::client_of(std::string_view identity) {
  const auto it = peers_.find(identity);
  if (it == peers_.end() || it->second.role != Role::Client) return nullptr;
  return &clients_[it->second.id];
}

std::optional<JobId> Broker::Impl::open_job_of(const ClientPeer* client, std::uint64_t job) {
  if (client == nullptr) return std::nullopt;
  const auto it = client->jobs.find(job);
  // A job cancelled earlier in this batch of messages is closed in the scheduler, though its
  // entry goes only when its JobFinished is handled: it is not open any more.
  if (it == client->jobs.end() || !scheduler_.job_open(it->second)) return std::nullopt;
  return it->second;
}

WorkerPeer* Broker::Impl::worker_of(std::string_view identity) {
  const auto it = peers_.find(identity);
  if (it == peers_.end() || it->second.role != Role::Worker) return nullptr;
  return &workers_[it->second.id];
}

void Broker::Impl::forget(ClientId id) {
  auto& client = clients_[index_of(id)];
  if (!client.alive) return;
  client.alive = false;
  peers_.erase(client.identity);
  client.identity = {};
  client.jobs = {};
}

void Broker::Impl::forget(WorkerId id) {
  auto& worker = workers_[index_of(id)];
  if (!worker.alive) return;
  worker.alive = false;
  peers_.erase(worker.identity);
  worker.identity = {};  // host and pid stay, for the poison message of its tasks
}

void Broker::Impl::send_client(ClientId id, const protocol::Encoded& message, TimePoint now,
                               std::span<zmq::message_t> payload) {
  auto& client = clients_[index_of(id)];
  if (!client.alive) return;
  router_.send(client.identity, message, payload);
  client.last_sent = now;
}

void Broker::Impl::send_worker(WorkerId id, const protocol::Encoded& message, TimePoint now,
                               std::span<zmq::message_t> payload) {
  auto& worker = workers_[index_of(id)];
  if (!worker.alive) return;
  // A worker that is gone (EHOSTUNREACH) keeps its tasks until the scheduler declares it dead.
  router_.send(worker.identity, message, payload);
  worker.last_sent = now;
}

void Broker::Impl::reply(std::string_view identity, const protocol::Encoded& message) {
  router_.send(identity, message);
}

void Broker::Impl::refuse(std::string_view identity, protocol::ErrorCode code, std::string message,
                          std::optional<std::uint64_t> job) {
  log_->debug("refused a client request: {} ({})", message, protocol::error_code_name(code));
  reply(identity,
        protocol::encode(protocol::Error{.code = code, .message = std::move(message), .job = job}));
}

void Broker::Impl::drop(std::string_view why, TimePoint now) {
  // §11: data errors are dropped and logged, at most one line a second against floods.
  ++stats_.messages_rejected;
  ++dropped_since_log_;
  if (now < next_drop_log_) return;
  log_->warn("dropped {} message(s); the last: {}", dropped_since_log_, why);
  dropped_since_log_ = 0;
  next_drop_log_ = now + std::chrono::seconds{1};
}

// ---------------------------------------------------------------------------------------------
// Broker and BrokerThread

Broker::Broker(BrokerOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}

Broker::~Broker() = default;

const std::string& Broker::endpoint() const noexcept {
  return impl_->router_.endpoint();
}

void Broker::run() {
  impl_->run();
}

void Broker::stop() noexcept {
  // Async-signal-safe: one write(2). A full pipe already holds a stop request.
  const char byte = 1;
  [[maybe_unused]] const auto written = ::write(impl_->stop_pipe_[1], &byte, 1);
}

BrokerStats Broker::stats() const {
  const std::lock_guard lock(impl_->stats_mutex_);
  return impl_->published_;
}

BrokerThread::BrokerThread(BrokerOptions options) : broker_(std::move(options)) {
  thread_ = std::thread([this] {
    try {
      broker_.run();
    } catch (const std::exception& error) {
      logger("broker")->error("the broker stopped on an error: {}", error.what());
    }
  });
}

BrokerThread::~BrokerThread() {
  broker_.stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace acme::broker
