#include "payload_store.hpp"

#include <utility>

namespace acme::broker {

void PayloadStore::set_common(zmq::message_t&& frame) {
  common_.emplace(std::move(frame));
}

zmq::message_t PayloadStore::share_common() {
  zmq::message_t copy;
  if (common_) copy.copy(*common_);
  return copy;
}

void PayloadStore::push(zmq::message_t&& frame) {
  slots_.push_back(Slot{.frame = std::move(frame), .live = true});
  ++held_;
}

bool PayloadStore::holds(TaskIndex index) const noexcept {
  if (index < base_ || index - base_ >= slots_.size()) return false;
  return slots_[static_cast<std::size_t>(index - base_)].live;
}

zmq::message_t PayloadStore::share(TaskIndex index) {
  zmq::message_t copy;
  if (holds(index)) copy.copy(slots_[static_cast<std::size_t>(index - base_)].frame);
  return copy;
}

void PayloadStore::release(TaskIndex index) {
  if (!holds(index)) return;
  auto& slot = slots_[static_cast<std::size_t>(index - base_)];
  slot.live = false;
  slot.frame.rebuild();  // frees the buffer (or drops this reference to a shared one) now
  --held_;
  while (!slots_.empty() && !slots_.front().live) {
    slots_.pop_front();
    ++base_;
  }
}

}  // namespace acme::broker
