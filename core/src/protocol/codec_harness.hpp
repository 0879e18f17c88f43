// Test-only helpers for the codec tests: messages that own their frames, and hand-made msgpack
// headers (for the malformed cases the encoder never writes). Not installed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <optional>
#include <ostream>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <msgpack.hpp>

#include <acme/protocol/codec.hpp>

namespace acme::protocol {

/// Lets gtest print a DecodeError as its sentence rather than as a number.
inline void PrintTo(DecodeError error, std::ostream* os) {
  *os << describe(error);
}

}  // namespace acme::protocol

namespace acme::test {

/// Owns the bytes of a multipart message and views them as frames, as the broker views the
/// zmq::message_t it received. Take frames() only after the last add().
class Frames {
 public:
  Frames() = default;
  Frames(std::initializer_list<std::string> parts) : parts_(parts) {}

  /// The three frames of `encoded` followed by `payloads` payload frames "payload 0", ...
  static Frames of(const protocol::Encoded& encoded, std::size_t payloads = 0) {
    Frames message;
    message.add(std::string(encoded.signature));
    message.add(std::string(1, static_cast<char>(encoded.command)));
    message.add(encoded.header);
    message.add_payloads(payloads);
    return message;
  }

  Frames& add(std::string part) {
    parts_.push_back(std::move(part));
    return *this;
  }
  Frames& add_payloads(std::size_t count) {
    for (std::size_t i = 0; i < count; ++i) add("payload " + std::to_string(i));
    return *this;
  }

  std::span<const protocol::Frame> frames() {
    views_.clear();
    for (const auto& part : parts_) views_.push_back(protocol::as_frame(part));
    return views_;
  }

 private:
  std::vector<std::string> parts_;
  std::vector<protocol::Frame> views_;
};

/// The command frame of `command`.
inline std::string command_frame(protocol::Command command) {
  return std::string(1, static_cast<char>(command));
}

// ---- Hand-made msgpack ----

using Packer = msgpack::packer<msgpack::sbuffer>;
/// One msgpack value, packed on demand.
using Value = std::function<void(Packer&)>;

inline Value num(std::uint64_t value) {
  return [value](Packer& p) { p.pack_uint64(value); };
}
inline Value neg(std::int64_t value) {
  return [value](Packer& p) { p.pack_int64(value); };
}
/// A float64, unless `value` is integral: msgpack-cxx packs those as ints.
inline Value real(double value) {
  return [value](Packer& p) { p.pack_double(value); };
}
inline Value flag(bool value) {
  return [value](Packer& p) { value ? p.pack_true() : p.pack_false(); };
}
inline Value nil() {
  return [](Packer& p) { p.pack_nil(); };
}
inline Value str(std::string value) {
  return [value = std::move(value)](Packer& p) {
    p.pack_str(static_cast<std::uint32_t>(value.size()));
    p.pack_str_body(value.data(), static_cast<std::uint32_t>(value.size()));
  };
}
inline Value bin(std::string value) {
  return [value = std::move(value)](Packer& p) {
    p.pack_bin(static_cast<std::uint32_t>(value.size()));
    p.pack_bin_body(value.data(), static_cast<std::uint32_t>(value.size()));
  };
}
inline Value list(std::vector<Value> items) {
  return [items = std::move(items)](Packer& p) {
    p.pack_array(static_cast<std::uint32_t>(items.size()));
    for (const auto& item : items) item(p);
  };
}

/// One key of a header map; a Value key packs something other than a str.
struct Field {
  Value key;
  Value value;
  std::string name;  // the key's text when it is a str, to find it again
};
using Fields = std::vector<Field>;

inline Field field(std::string name, Value value) {
  return Field{str(name), std::move(value), name};
}

inline std::string pack(const Value& value) {
  msgpack::sbuffer buffer;
  Packer packer(buffer);
  value(packer);
  return {buffer.data(), buffer.size()};
}

inline Value map(Fields fields) {
  return [fields = std::move(fields)](Packer& p) {
    p.pack_map(static_cast<std::uint32_t>(fields.size()));
    for (const auto& f : fields) {
      f.key(p);
      f.value(p);
    }
  };
}

/// A header frame: the map of `fields`, in order.
inline std::string header(Fields fields) {
  return pack(map(std::move(fields)));
}

/// `fields` without the key `name`.
inline Fields without(Fields fields, std::string_view name) {
  std::erase_if(fields, [name](const Field& f) { return f.name == name; });
  return fields;
}

/// `fields` with the value of `name` replaced, or the key added at the end.
inline Fields with(Fields fields, const std::string& name, Value value) {
  for (auto& f : fields) {
    if (f.name == name) {
      f.value = std::move(value);
      return fields;
    }
  }
  fields.push_back(field(name, std::move(value)));
  return fields;
}

/// A message of `from` carrying `command`, header `header_frame` and `payloads` payload frames.
inline Frames message(std::string_view signature, protocol::Command command,
                      std::string header_frame, std::size_t payloads = 0) {
  Frames frames{std::string(signature), command_frame(command), std::move(header_frame)};
  frames.add_payloads(payloads);
  return frames;
}

// ---- Valid headers of each command, with every field, for the rejection tests to break ----

inline Fields submit_fields() {
  return {field("job", num(7)),          field("function", str("square")),
          field("total", num(10)),       field("first", num(0)),
          field("count", num(2)),        field("common", flag(false)),
          field("max_retries", num(3)),  field("retry_on_error", flag(true)),
          field("timeout_ms", num(500)), field("cores", num(1))};
}
inline Fields cancel_job_fields() {
  return {field("job", num(7))};
}
inline Fields bye_fields() {
  return {field("reason", str("shutting down")), field("reconnect", flag(true))};
}
inline Fields accept_fields() {
  return {field("job", num(7)), field("received", num(2)), field("window", num(100)),
          field("heartbeat_ms", num(1000))};
}
inline Fields job_results_fields() {
  return {field("job", num(7)),
          field("results", list({list({num(0), num(0), num(1)}), list({num(1), num(1), num(2)})}))};
}
inline Fields done_fields() {
  return {field("job", num(7)), field("ok", num(9)), field("failed", num(1)),
          field("cancelled", flag(false))};
}
inline Fields error_fields() {
  return {field("code", num(5)), field("message", str("no worker offers square")),
          field("job", num(7))};
}
inline Fields ready_fields() {
  return {field("functions", list({str("square"), str("cube")})),
          field("slots", num(4)),
          field("prefetch", num(2)),
          field("host", str("node12")),
          field("pid", num(4411)),
          field("cores", num(8)),
          field("memory", num(std::uint64_t{16} << 30)),
          field("agent", str("acme-worker 0.1.0")),
          field("launch", str("L1"))};
}
inline Fields task_results_fields() {
  return {field("results", list({list({num(7), num(0), num(0)}), list({num(7), num(1), num(2)})}))};
}
inline Fields welcome_fields() {
  return {field("worker", num(3)), field("heartbeat_ms", num(1000)), field("liveness", num(3))};
}
inline Fields tasks_fields() {
  return {field("job", num(7)),
          field("function", str("square")),
          field("common", flag(false)),
          field("timeout_ms", num(0)),
          field("cores", num(1)),
          field("tasks", list({list({num(0), num(1)}), list({num(1), num(2)})}))};
}
inline Fields cancel_tasks_fields() {
  return {field("job", num(7)), field("tasks", list({num(0), num(1)}))};
}
inline Fields status_request_fields() {
  return {field("launch", str("L1"))};
}
inline Fields worker_info_fields() {
  return {field("id", num(3)),       field("host", str("node12")), field("pid", num(4411)),
          field("slots", num(8)),    field("running", num(2)),     field("launch", str("L1")),
          field("functions", num(5))};
}
inline Fields status_reply_fields() {
  return {field("agent", str("acme-broker 0.1.0")),
          field("uptime_ms", num(1000)),
          field("clients", num(1)),
          field("jobs", num(2)),
          field("tasks_queued", num(3)),
          field("tasks_running", num(4)),
          field("tasks_done", num(5)),
          field("tasks_failed", num(6)),
          field("workers", list({map(worker_info_fields())})),
          field("workers_omitted", num(0))};
}

/// The error of a failed decode, or nullopt when it succeeded.
template <class R>
std::optional<protocol::DecodeError> error_of(const R& result) {
  if (result) return std::nullopt;
  return result.error();
}

inline constexpr std::string_view kClient = "ACMEC1";
inline constexpr std::string_view kWorker = "ACMEW1";
inline constexpr std::string_view kBroker = "ACMEB1";

}  // namespace acme::test
