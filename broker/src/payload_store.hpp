// The frames of one job's tasks, kept as received (zmq::message_t) until each task's result is
// delivered or the job closes. Private to the broker. Frames are never decoded or copied: a
// TASKS message gets a shared copy (zmq::message_t::copy shares the buffer of a frame larger
// than ZeroMQ's 33-byte small-message limit), and the stored frame is freed on delivery.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>

#include <zmq.hpp>

#include <acme/ids.hpp>

namespace acme::broker {

class PayloadStore {
 public:
  /// Keeps the job's common frame (PROTOCOL.md §6.1.1); at most once, before any task.
  void set_common(zmq::message_t&& frame);
  [[nodiscard]] bool has_common() const noexcept { return common_.has_value(); }
  /// A shared copy of the common frame. Precondition: has_common().
  [[nodiscard]] zmq::message_t share_common();

  /// Keeps the frame of the next task: tasks arrive in index order, so it is task `received()`.
  void push(zmq::message_t&& frame);
  /// Tasks pushed so far.
  [[nodiscard]] std::uint64_t received() const noexcept { return base_ + slots_.size(); }

  /// A shared copy of a task's frame for a TASKS message; an empty frame if the task is not
  /// held (a broker bug: it would be logged by the caller).
  [[nodiscard]] zmq::message_t share(TaskIndex index);
  /// Whether the task's frame is still held.
  [[nodiscard]] bool holds(TaskIndex index) const noexcept;

  /// The task's result was delivered: its frame is no longer needed. Unknown indices are ignored.
  void release(TaskIndex index);

  /// Frames held now, for tests and stats.
  [[nodiscard]] std::size_t held() const noexcept { return held_; }

 private:
  struct Slot {
    zmq::message_t frame;
    bool live = false;
  };
  std::optional<zmq::message_t> common_{};
  // Task `base_ + i` is slots_[i]. Released slots at the front are popped, so memory follows
  // the tasks still held, not the job's total; results come back mostly in index order.
  std::deque<Slot> slots_{};
  std::uint64_t base_ = 0;
  std::size_t held_ = 0;
};

}  // namespace acme::broker
