#include "connection.hpp"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdlib>
#include <utility>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <acme/log.hpp>
#include <acme/protocol/codec.hpp>

#include <sys/eventfd.h>
#include <unistd.h>

namespace acme::detail {
namespace {

// Tasks per SUBMIT: big enough to amortise the round trip, small enough to start work early.
constexpr std::uint64_t kMaxChunk = 2048;
constexpr auto kTick = std::chrono::milliseconds(200);
constexpr std::uint32_t kBrokerLiveness = 3;  // PROTOCOL.md §9: 3 x heartbeat_ms
constexpr int kSendTimeoutMs = 2000;

template <class... F>
struct Overloaded : F... {
  using F::operator()...;
};
template <class... F>
Overloaded(F...) -> Overloaded<F...>;

std::string seconds(std::chrono::milliseconds duration) {
  return fmt::format("{:.1f} s", static_cast<double>(duration.count()) / 1000.0);
}

Errc errc_of(protocol::ErrorCode code) {
  switch (code) {
    case protocol::ErrorCode::NoSuchFunction: return Errc::UnknownFunction;
    case protocol::ErrorCode::ShuttingDown: return Errc::BrokerGone;
    case protocol::ErrorCode::VersionMismatch: return Errc::VersionRefused;
    case protocol::ErrorCode::Malformed:
    case protocol::ErrorCode::UnknownCommand: return Errc::Protocol;
    default: return Errc::Refused;
  }
}

TaskResult decode_result(const protocol::JobResult& entry, protocol::Frame frame) {
  const auto* data = reinterpret_cast<const char*>(frame.data());  // NOLINT: msgpack takes char
  if (entry.status == protocol::TaskStatus::Ok) {
    try {
      // A zone sized to the frame rather than msgpack's default first chunk of 8 KiB: a map that
      // keeps 100,000 small results holds a few hundred bytes each, not 8 KiB each. (The zone
      // still grows when a value needs more.)
      auto zone = std::make_unique<msgpack::zone>(std::min<std::size_t>(
          MSGPACK_ZONE_CHUNK_SIZE, 2 * frame.size() + 64));  // NOLINT(*-magic-numbers)
      const auto value = msgpack::unpack(*zone, data, frame.size());
      return TaskResult::success(entry.index, entry.attempts,
                                 msgpack::object_handle(value, std::move(zone)));
    } catch (const std::exception& e) {
      return TaskResult::failure(
          entry.index,
          TaskError{.message = fmt::format("the result is not a msgpack value: {}", e.what()),
                    .kind = "acme::BadResult",
                    .attempts = entry.attempts});
    }
  }
  TaskError error{.attempts = entry.attempts};
  if (auto info = protocol::decode_error_info(frame)) {
    error.message = std::move(info->message);
    error.kind = std::move(info->kind);
    error.traceback = std::move(info->traceback);
    error.host = std::move(info->host);
    error.pid = info->pid;
  } else {
    error.message =
        fmt::format("task {} (its error map could not be decoded: {})",
                    protocol::status_name(entry.status), protocol::describe(info.error()));
  }
  if (error.kind.empty()) {
    if (entry.status == protocol::TaskStatus::TimedOut) error.kind = "TimedOut";
    if (entry.status == protocol::TaskStatus::Poisoned) error.kind = "Poisoned";
  }
  return TaskResult::failure(entry.index, std::move(error));
}

}  // namespace

Connection::Connection(std::string endpoint, std::uint64_t max_in_flight)
    : endpoint_(std::move(endpoint)), max_in_flight_(std::max<std::uint64_t>(max_in_flight, 1)) {
  wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd_ < 0) throw Error(Errc::System, "acme client: eventfd failed");
  new_socket();
}

Connection::~Connection() {
  stop();
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

void Connection::new_socket() {
  if (socket_) {
    socket_->set(zmq::sockopt::linger, 0);
    socket_->close();
  }
  socket_ = std::make_unique<zmq::socket_t>(context_, zmq::socket_type::dealer);
  net::configure(*socket_);
  socket_->set(zmq::sockopt::sndtimeo, kSendTimeoutMs);
  try {
    socket_->connect(endpoint_);
  } catch (const zmq::error_t& e) {
    throw Error(Errc::BadOptions,
                fmt::format("invalid broker endpoint '{}': {} (expected e.g. tcp://host:5555)",
                            endpoint_, e.what()));
  }
  window_ = 1024;
  heartbeat_ = std::chrono::milliseconds(1000);
  outstanding_.reset();
  outstanding_count_ = 0;
  open_jobs_ = 0;
  session_ = false;
}

void Connection::probe(std::chrono::milliseconds timeout, const std::string& hint) {
  const auto started = Clock::now();
  send(protocol::encode(protocol::Peer::Client, protocol::Heartbeat{}));
  while (true) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(started + timeout - Clock::now());
    if (left.count() <= 0) break;
    std::array items{zmq::pollitem_t{socket_->handle(), 0, ZMQ_POLLIN, 0}};
    zmq::poll(items.data(), items.size(), left);
    if (auto message = net::receive(*socket_, zmq::recv_flags::dontwait)) {
      // Any answer will do; it is typically BYE reconnect=true ("I do not know you yet").
      logger("client")->debug(
          "broker {} answered in {} ms", endpoint_,
          std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count());
      return;
    }
  }
  socket_->set(zmq::sockopt::linger, 0);
  throw Error(Errc::Unreachable, fmt::format("no acme broker answered at {} within {}{}", endpoint_,
                                             seconds(timeout), hint));
}

void Connection::set_health_check(std::function<std::optional<std::string>()> check) {
  health_check_ = std::move(check);
}

void Connection::start() {
  thread_ = std::thread([this] { run(); });
}

void Connection::stop() noexcept {
  stopping_ = true;
  wake();
  if (thread_.joinable()) thread_.join();
  const std::lock_guard lock(mutex_);
  stopped_ = true;
}

void Connection::wake() noexcept {
  const std::uint64_t one = 1;
  [[maybe_unused]] const auto written = ::write(wake_fd_, &one, sizeof one);
}

std::shared_ptr<JobState> Connection::open(JobSpec spec) {
  auto job = std::make_shared<JobState>();
  job->spec = std::move(spec);
  {
    const std::lock_guard lock(mutex_);
    if (stopped_ || stopping_) {
      throw Error(Errc::BadOptions, "acme client: submit after the client was stopped");
    }
    job->id = next_job_id_++;  // PROTOCOL.md §14: count up, never reuse
    new_jobs_.push_back(job);
  }
  wake();
  return job;
}

std::optional<TaskResult> Connection::next(JobState& job) {
  std::unique_lock lock(mutex_);
  ready_cv_.wait(lock, [&] { return !job.ready.empty() || job.finished || job.failure; });
  if (!job.ready.empty()) {
    auto result = std::move(job.ready.front());
    job.ready.pop_front();
    --unread_;
    if (starved_ && unread_ <= max_in_flight_ / 2) {
      starved_ = false;
      lock.unlock();
      wake();
    }
    return result;
  }
  if (job.failure) throw *job.failure;
  return std::nullopt;
}

void Connection::cancel(JobState& job) noexcept {
  {
    const std::lock_guard lock(mutex_);
    if (job.cancel_requested) return;
    job.cancel_requested = true;
    unread_ -= job.ready.size();  // results nobody will read
    job.ready.clear();
    if (job.finished || job.failure) return;  // closed already: nothing to tell the broker
    job.finished = true;
    unread_ -= job.sent - job.received;  // results that will never come
    cancels_pending_ = true;
  }
  ready_cv_.notify_all();
  wake();
}

void Connection::send(const protocol::Encoded& message, std::span<zmq::message_t> payload) {
  if (!net::send(*socket_, message, payload)) {
    throw Error(Errc::BrokerGone,
                fmt::format("could not send {} to the broker at {} within {} ms",
                            protocol::command_name(message.command), endpoint_, kSendTimeoutMs));
  }
}

void Connection::run() {
  auto next_tick = Clock::now();
  while (!stopping_) {
    auto now = Clock::now();
    auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(next_tick - now);
    if (open_jobs_ > 0 || outstanding_) {
      wait = std::min(wait, std::chrono::duration_cast<std::chrono::milliseconds>(
                                last_sent_ + heartbeat_ - now));
    }
    wait = std::clamp(wait, std::chrono::milliseconds(0), kTick);
    std::array items{zmq::pollitem_t{socket_->handle(), 0, ZMQ_POLLIN, 0},
                     zmq::pollitem_t{nullptr, wake_fd_, ZMQ_POLLIN, 0}};
    try {
      zmq::poll(items.data(), items.size(), wait);
      if ((items[1].revents & ZMQ_POLLIN) != 0) {
        std::uint64_t count = 0;
        [[maybe_unused]] const auto got = ::read(wake_fd_, &count, sizeof count);
      }
      now = Clock::now();
      while (auto message = net::receive(*socket_, zmq::recv_flags::dontwait)) {
        last_heard_ = now;
        handle(*message, now);
      }
      take_requests();
      pump(now);
      keepalive(now);
      if (now >= next_tick) {
        next_tick = now + kTick;
        if (health_check_) {
          if (auto problem = health_check_()) fail_all(Error(Errc::System, *problem));
        }
      }
    } catch (const Error& e) {
      // A send that timed out: the broker is as good as gone.
      logger("client")->warn("{}", e.what());
      fail_all(e);
      new_socket();
    } catch (const std::exception& e) {
      logger("client")->error("client I/O thread: {}", e.what());
      fail_all(Error(Errc::Protocol, fmt::format("acme client failed: {}", e.what())));
      new_socket();
    }
  }
  // Shutting down: tell the broker (PROTOCOL.md §6.1.4) and fail what is still open.
  try {
    if (session_) {
      static_cast<void>(net::send(
          *socket_,
          protocol::encode(protocol::Peer::Client, protocol::Bye{.reason = "client closed"}), {},
          nullptr, zmq::send_flags::dontwait));
    }
  } catch (const std::exception&) {  // NOLINT(bugprone-empty-catch): best effort
  }
  take_requests();
  fail_all(Error(Errc::BrokerGone, "the acme client was closed while the job ran"));
  socket_->close();
}

void Connection::handle(const net::Received& message, Clock::time_point /*now*/) {
  const auto frames = message.frames();
  auto decoded = protocol::decode_for_client(frames);
  if (!decoded) {
    // PROTOCOL.md §11: a malformed broker message is dropped and logged.
    logger("client")->warn("dropped a message from broker {}: {}", endpoint_,
                           protocol::describe(decoded.error()));
    return;
  }
  const auto payload = decoded->payload;
  std::visit(
      Overloaded{[&](const protocol::Accept& c) { on_accept(c); },
                 [&](const protocol::JobResults& c) { on_results(c, payload); },
                 [&](const protocol::Done& c) { on_done(c); },
                 [&](const protocol::Error& c) { on_error(c); }, [&](const protocol::Heartbeat&) {},
                 [&](const protocol::Bye& c) { on_bye(c); },
                 // §6.1.5: this connection never asks STATUS (query_status uses its own socket).
                 [&](const protocol::StatusReply&) {}},
      decoded->command);
}

void Connection::on_accept(const protocol::Accept& accept) {
  // PROTOCOL.md §6.2.1: usable window = the latest ACCEPT's window minus what was sent after
  // the SUBMIT it answered.
  if (outstanding_ && *outstanding_ == accept.job) {
    window_ = accept.window;
    outstanding_.reset();
    outstanding_count_ = 0;
  } else {
    window_ = accept.window > outstanding_count_ ? accept.window - outstanding_count_ : 0;
  }
  if (accept.heartbeat_ms > 0) heartbeat_ = std::chrono::milliseconds(accept.heartbeat_ms);
  if (auto it = jobs_.find(accept.job); it != jobs_.end()) it->second->accepted = true;
}

void Connection::on_results(const protocol::JobResults& results,
                            std::span<const protocol::Frame> payload) {
  const auto it = jobs_.find(results.job);
  if (it == jobs_.end()) return;  // a cancelled or failed job: its late results are dropped
  auto& job = *it->second;
  std::vector<TaskResult> decoded;
  decoded.reserve(results.results.size());
  for (std::size_t i = 0; i < results.results.size() && i < payload.size(); ++i) {
    const auto& entry = results.results[i];
    if (entry.index >= job.spec.total) {
      logger("client")->warn("broker sent a result for task {} of job {}, which has {} tasks",
                             entry.index, job.id, job.spec.total);
      continue;
    }
    decoded.push_back(decode_result(entry, payload[i]));
  }
  {
    const std::lock_guard lock(mutex_);
    if (job.cancel_requested || job.failure) return;
    job.received += decoded.size();
    for (auto& result : decoded) job.ready.push_back(std::move(result));
  }
  ready_cv_.notify_all();
}

void Connection::on_done(const protocol::Done& done) {
  const auto it = jobs_.find(done.job);
  if (it == jobs_.end()) return;
  auto& job = *it->second;
  {
    const std::lock_guard lock(mutex_);
    if (!job.finished && !job.failure) {
      if (done.cancelled || job.received < job.spec.total) {
        // Cancelled by someone else, or the broker closed the job short: say so.
        unread_ -= job.sent - job.received;
        job.failure = Error(
            Errc::Refused, fmt::format("the broker at {} ended job '{}' after {} of {} results",
                                       endpoint_, job.spec.function, job.received, job.spec.total));
      }
      job.finished = true;
    }
  }
  ready_cv_.notify_all();
  forget(done.job);
}

void Connection::on_error(const protocol::Error& error) {
  std::optional<std::uint64_t> id = error.job;
  if (!id && outstanding_) id = outstanding_;  // a SUBMIT's answer that could not name its job
  if (outstanding_ && (!error.job || *error.job == *outstanding_)) {
    // A refused SUBMIT took nothing of the window (§6.1.1): give it back, or a refusal that
    // used the whole window would stall every later job.
    window_ += outstanding_count_;
    outstanding_.reset();
    outstanding_count_ = 0;
  }
  const auto it = id ? jobs_.find(*id) : jobs_.end();
  if (it == jobs_.end()) {
    logger("client")->warn("broker {} reported error {} ({}): {}", endpoint_,
                           static_cast<unsigned>(error.code), protocol::error_code_name(error.code),
                           error.message);
    return;
  }
  auto job = it->second;
  std::string message;
  if (error.code == protocol::ErrorCode::NoSuchFunction) {
    message = fmt::format(
        "no worker offers function '{}' (the broker at {} waited for one: {}); check its name "
        "and that the workers register it with acme::define()",
        job->spec.function, endpoint_, error.message);
  } else {
    message = fmt::format("the broker at {} refused job '{}' ({}): {}", endpoint_,
                          job->spec.function, protocol::error_code_name(error.code), error.message);
  }
  const bool closed_by_broker = error.code == protocol::ErrorCode::NoSuchFunction ||
                                error.code == protocol::ErrorCode::Internal;
  if (!closed_by_broker && job->accepted) {
    // PROTOCOL.md §6.2.4: other errors leave the job open on the broker; close it.
    send(protocol::encode(protocol::CancelJob{.job = job->id}));
  }
  fail(*job, Error(errc_of(error.code), message));
  forget(job->id);
}

void Connection::on_bye(const protocol::Bye& bye) {
  // PROTOCOL.md §6.2.6: open jobs are closed without DONE.
  const auto reason = bye.reason.empty() ? std::string("no reason given") : bye.reason;
  if (!jobs_.empty()) {
    fail_all(Error(Errc::BrokerGone,
                   bye.reconnect
                       ? fmt::format("the broker at {} forgot this client ({})", endpoint_, reason)
                       : fmt::format("the broker at {} stopped ({})", endpoint_, reason)));
  }
  new_socket();  // a fresh identity: the next job starts a new session
}

void Connection::take_requests() {
  std::vector<std::shared_ptr<JobState>> fresh;
  bool cancels = false;
  {
    const std::lock_guard lock(mutex_);
    fresh.swap(new_jobs_);
    cancels = std::exchange(cancels_pending_, false);
  }
  for (auto& job : fresh) jobs_.emplace(job->id, std::move(job));
  if (!cancels) return;
  std::vector<std::uint64_t> gone;
  for (auto& [id, job] : jobs_) {
    bool requested = false;
    {
      const std::lock_guard lock(mutex_);
      requested = job->cancel_requested;
    }
    if (!requested || job->cancel_sent) continue;
    if (!job->opened) {
      gone.push_back(id);
      continue;
    }
    job->cancel_sent = true;
    send(protocol::encode(protocol::CancelJob{.job = id}));  // DONE (cancelled) closes it
  }
  for (auto id : gone) jobs_.erase(id);
}

void Connection::pump(Clock::time_point now) {
  if (outstanding_ || jobs_.empty()) return;  // one SUBMIT at a time (PROTOCOL.md §6.2.1)
  // Round robin over the jobs with tasks left to send, starting after the last one served.
  auto it = jobs_.upper_bound(last_served_);
  for (std::size_t n = 0; n < jobs_.size(); ++n, ++it) {
    if (it == jobs_.end()) it = jobs_.begin();
    auto& job = *it->second;
    std::uint64_t count = 0;
    {
      const std::lock_guard lock(mutex_);
      if (job.cancel_requested || job.failure || job.sent >= job.spec.total) continue;
      const auto capacity = unread_ < max_in_flight_ ? max_in_flight_ - unread_ : 0;
      count = std::min({job.spec.total - job.sent, window_, kMaxChunk, capacity});
      if (capacity == 0) starved_ = true;
    }
    if (count == 0) return;  // window or capacity exhausted: wait for ACCEPT or readers
    last_served_ = it->first;
    // One SUBMIT per call. A chunk that fails to pack may forget its job (and invalidate `it`):
    // the next call goes on with the others.
    submit_chunk(job, count, now);
    return;
  }
}

bool Connection::submit_chunk(JobState& job, std::uint64_t count, Clock::time_point now) {
  const auto first = job.sent;  // only this thread changes `sent`
  std::vector<zmq::message_t> frames;
  const bool common = first == 0 && job.spec.common.has_value();
  frames.reserve(count + (common ? 1 : 0));
  if (common) frames.push_back(net::frame(*job.spec.common));
  try {
    for (std::uint64_t i = first; i < first + count; ++i) {
      msgpack::sbuffer buffer;
      job.spec.task(i, buffer);
      const auto size = buffer.size();
      // The frame takes the buffer's memory: no copy of a task's arguments.
      frames.emplace_back(
          buffer.release(), size, [](void* data, void* /*hint*/) { std::free(data); }, nullptr);
    }
  } catch (const std::exception& e) {
    fail(job,
         Error(Errc::BadOptions, fmt::format("could not pack the arguments of {}() for "
                                             "input {}: {}",
                                             job.spec.function, first + frames.size(), e.what())));
    if (job.opened) {
      job.cancel_sent = true;
      send(protocol::encode(protocol::CancelJob{.job = job.id}));
    } else {
      forget(job.id);
    }
    return false;
  }
  protocol::Submit submit{.job = job.id,
                          .function = job.spec.function,
                          .total = job.spec.total,
                          .first = first,
                          .count = static_cast<std::uint32_t>(count),
                          .common = common};
  if (first == 0) {
    submit.max_retries = job.spec.max_retries;
    submit.retry_on_error = job.spec.retry_on_error;
    submit.timeout_ms = static_cast<std::uint32_t>(job.spec.timeout.count());
    submit.cores = job.spec.cores;
  }
  if (open_jobs_ == 0 && !outstanding_) last_heard_ = now;  // the broker's silence counts now
  send(protocol::encode(submit), frames);
  {
    const std::lock_guard lock(mutex_);
    job.sent += count;
    unread_ += count;
  }
  if (!job.opened) {
    job.opened = true;
    ++open_jobs_;
  }
  session_ = true;
  window_ -= count;
  outstanding_ = job.id;
  outstanding_count_ = count;
  last_sent_ = now;
  return true;
}

void Connection::keepalive(Clock::time_point now) {
  if (open_jobs_ == 0 && !outstanding_) return;  // PROTOCOL.md §9: heartbeat while jobs are open
  const auto silence = heartbeat_ * kBrokerLiveness;
  if (now - last_heard_ > silence) {
    const auto error = Error(
        Errc::BrokerGone,
        fmt::format("the broker at {} did not answer for {} (stopped, crashed or unreachable)",
                    endpoint_, seconds(silence)));
    logger("client")->warn("{}; failing {} open job(s)", error.what(), jobs_.size());
    fail_all(error);
    new_socket();
    return;
  }
  if (now - last_sent_ >= heartbeat_) {
    send(protocol::encode(protocol::Peer::Client, protocol::Heartbeat{}));
    last_sent_ = now;
  }
}

void Connection::fail(JobState& job, const Error& error) {
  {
    const std::lock_guard lock(mutex_);
    if (job.finished || job.failure) return;
    unread_ -= job.sent - job.received;  // results that will never come
    job.failure = error;
    job.finished = true;
  }
  ready_cv_.notify_all();
}

void Connection::fail_all(const Error& error) {
  for (auto& [id, job] : jobs_) fail(*job, error);
  jobs_.clear();
  open_jobs_ = 0;
  outstanding_.reset();
  outstanding_count_ = 0;
}

void Connection::forget(std::uint64_t job) {
  const auto it = jobs_.find(job);
  if (it == jobs_.end()) return;
  if (it->second->opened && open_jobs_ > 0) --open_jobs_;
  jobs_.erase(it);
}

}  // namespace acme::detail
