// The task threads, and what runs a task's function: decode the task frame, call, pack the
// result or an error map.
#include "executor.hpp"

#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <system_error>
#include <typeinfo>

#include <acme/log.hpp>
#include <acme/protocol/codec.hpp>

#include <cxxabi.h>
#include <sys/eventfd.h>
#include <unistd.h>

namespace acme::worker {
namespace {

/// The demangled type of the exception being handled, e.g. "std::invalid_argument".
std::string current_exception_type() {
  const std::type_info* type = abi::__cxa_current_exception_type();
  if (type == nullptr) return "unknown";
  int status = 0;
  char* name = abi::__cxa_demangle(type->name(), nullptr, nullptr, &status);
  std::string result = (status == 0 && name != nullptr) ? name : type->name();
  std::free(name);  // NOLINT(cppcoreguidelines-no-malloc): __cxa_demangle's contract
  return result;
}

zmq::message_t take_buffer(msgpack::sbuffer& buffer) {
  const auto size = buffer.size();
  // The sbuffer's malloc'd block becomes the frame, freed by ZeroMQ after sending: no copy.
  return zmq::message_t(
      buffer.release(), size,
      [](void* data, void* /*hint*/) { std::free(data); },  // NOLINT(cppcoreguidelines-no-malloc)
      nullptr);
}

}  // namespace

Notifier::Notifier() : fd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
  if (fd_ < 0) throw std::system_error(errno, std::generic_category(), "eventfd");
}

Notifier::~Notifier() {
  ::close(fd_);
}

void Notifier::notify() const noexcept {
  const std::uint64_t one = 1;
  [[maybe_unused]] const auto written = ::write(fd_, &one, sizeof(one));
}

void Notifier::drain() const noexcept {
  std::uint64_t count = 0;
  while (::read(fd_, &count, sizeof(count)) > 0) {
  }
}

zmq::message_t error_frame(const std::string& message, const std::string& kind,
                           const Identity& identity) {
  return zmq::message_t(protocol::encode_error_info({.message = message,
                                                     .kind = kind,
                                                     .traceback = {},
                                                     .host = identity.host,
                                                     .pid = identity.pid}));
}

void execute(Task& task, const Identity& identity) {
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer> packer(buffer);
  try {
    msgpack::object_handle args;
    std::size_t offset = 0;
    try {
      args = msgpack::unpack(static_cast<const char*>(task.payload.data()), task.payload.size(),
                             offset);
    } catch (const std::exception& e) {
      throw std::invalid_argument("the task frame of " + *task.function +
                                  "() is not a msgpack value: " + e.what());
    }
    if (offset != task.payload.size()) {
      throw std::invalid_argument("the task frame of " + *task.function +
                                  "() has bytes after its msgpack value");
    }
    const msgpack::object nil;
    TaskContext context(task.index, task.attempt, &task.cancelled, task.cores, task.cpus);
    (*task.run)(args.get(), task.common ? task.common->get() : nil, packer, context);
    if (buffer.size() == 0) packer.pack_nil();  // a raw function that packed nothing
    task.status = protocol::TaskStatus::Ok;
    task.result = take_buffer(buffer);
  } catch (const std::exception& e) {
    task.status = protocol::TaskStatus::Failed;
    task.result = error_frame(e.what(), current_exception_type(), identity);
  } catch (...) {
    task.status = protocol::TaskStatus::Failed;
    task.result = error_frame(*task.function + "() threw a non-standard exception",
                              current_exception_type(), identity);
  }
}

namespace {

/// Binds the calling task thread to the task's cpus, before its function runs.
template <class State>
void bind(State& state, Task& task) {
  if (state.binder == nullptr || task.cpus.empty()) return;
  if (state.binder->bind_this_thread(task.cpus)) return;
  const int error = errno;
  if (!state.bind_failed.exchange(true)) {
    logger("worker")->warn("cannot bind a task thread to cpus {}: {}; running tasks unpinned",
                           cpu_list(task.cpus), std::generic_category().message(error));
  }
  task.cpus.clear();
}

}  // namespace

struct Executor::State {
  std::mutex mutex;
  std::condition_variable wake;      // a task was submitted, or stopping
  std::condition_variable finished;  // a thread exited
  std::deque<std::shared_ptr<Task>> todo;
  std::vector<std::shared_ptr<Task>> done;
  bool stopping = false;
  std::uint32_t alive = 0;
  std::shared_ptr<const Notifier> notifier;
  Identity identity;
  std::shared_ptr<const CpuBinder> binder;
  std::atomic<bool> bind_failed{false};  // warned once
};

Executor::Executor(std::uint32_t threads, std::shared_ptr<const Notifier> notifier,
                   Identity identity, std::shared_ptr<const CpuBinder> binder)
    : state_(std::make_shared<State>()) {
  state_->notifier = std::move(notifier);
  state_->identity = std::move(identity);
  state_->binder = std::move(binder);
  state_->alive = threads;
  threads_.reserve(threads);
  for (std::uint32_t i = 0; i < threads; ++i) {
    // Each thread co-owns the state, so a thread left behind by the destructor stays valid.
    threads_.emplace_back([state = state_] {
      std::unique_lock lock(state->mutex);
      while (true) {
        state->wake.wait(lock, [&] { return state->stopping || !state->todo.empty(); });
        if (state->stopping) break;
        auto task = std::move(state->todo.front());
        state->todo.pop_front();
        lock.unlock();
        bind(*state, *task);
        execute(*task, state->identity);
        lock.lock();
        state->done.push_back(std::move(task));
        state->notifier->notify();
      }
      --state->alive;
      state->finished.notify_all();
    });
  }
}

Executor::~Executor() {
  std::unique_lock lock(state_->mutex);
  state_->stopping = true;
  for (auto& task : state_->todo) task->cancelled = true;
  state_->wake.notify_all();
  const bool all_ended =
      state_->finished.wait_for(lock, kJoinGrace, [&] { return state_->alive == 0; });
  lock.unlock();
  if (!all_ended) {
    logger("worker")->warn("{} task(s) ignored cancellation for {} s; leaving their threads",
                           state_->alive, kJoinGrace.count());
  }
  for (auto& thread : threads_) {
    if (all_ended) {
      thread.join();
    } else {
      thread.detach();
    }
  }
}

void Executor::submit(std::shared_ptr<Task> task) {
  const std::lock_guard lock(state_->mutex);
  state_->todo.push_back(std::move(task));
  state_->wake.notify_one();
}

std::vector<std::shared_ptr<Task>> Executor::take_finished() {
  const std::lock_guard lock(state_->mutex);
  return std::exchange(state_->done, {});
}

}  // namespace acme::worker
