// Encodes commands into frames and decodes frames into commands (docs/PROTOCOL.md §5-6), with
// msgpack-cxx. Decoding is noexcept: every msgpack exception is caught here and becomes a
// DecodeError; only std::bad_alloc can escape a decoder, and noexcept turns it into terminate.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <msgpack.hpp>

#include <acme/protocol/codec.hpp>

namespace acme::protocol {
namespace {

// ---- Encoding ----

/// Lets msgpack::packer append straight to the header string, with no intermediate buffer.
class StringSink {
 public:
  explicit StringSink(std::string& out) noexcept : out_(&out) {}
  void write(const char* data, std::size_t size) { out_->append(data, size); }

 private:
  std::string* out_;
};

// Upper bounds of packed sizes, so that each header is built with at most one allocation.
constexpr std::size_t kContainerBound = 5;  // map32 or array32 header
constexpr std::size_t kKeyBound = 1 + 15;   // fixstr "workers_omitted", the longest
constexpr std::size_t kNumberBound = 9;     // uint64
constexpr std::size_t kFieldBound = kKeyBound + kNumberBound;  // a key and a number or a bool
constexpr std::size_t kJobResultBound = 1 + 9 + 1 + 5;         // [u64, u8, u32]
constexpr std::size_t kTaskResultBound = 1 + 9 + 9 + 1;        // [u64, u64, u8]
constexpr std::size_t kTaskAssignmentBound = 1 + 9 + 5;        // [u64, u32]

constexpr std::size_t text_bound(std::string_view text) noexcept {
  return 5 + text.size();
}

/// Lengths of strings and containers are u32 on the wire; encoders are given sane values.
std::uint32_t wire_size(std::size_t size) noexcept {
  return static_cast<std::uint32_t>(size);
}

/// Packs one header map, field by field, into a string reserved up front.
class HeaderWriter {
 public:
  HeaderWriter(std::size_t fields, std::size_t size_bound) : sink_(header_), packer_(sink_) {
    header_.reserve(size_bound);
    packer_.pack_map(wire_size(fields));
  }
  HeaderWriter(const HeaderWriter&) = delete;  // packer_ points into header_
  HeaderWriter(HeaderWriter&&) = delete;
  HeaderWriter& operator=(const HeaderWriter&) = delete;
  HeaderWriter& operator=(HeaderWriter&&) = delete;
  ~HeaderWriter() = default;

  void number(std::string_view key, std::uint64_t value) {
    text(key);
    number(value);
  }
  void flag(std::string_view key, bool value) {
    text(key);
    if (value) {
      packer_.pack_true();
    } else {
      packer_.pack_false();
    }
  }
  void text(std::string_view key, std::string_view value) {
    text(key);
    text(value);
  }
  void array(std::string_view key, std::size_t size) {
    text(key);
    array(size);
  }

  void number(std::uint64_t value) { packer_.pack_uint64(value); }
  void text(std::string_view value) {
    packer_.pack_str(wire_size(value.size()));
    packer_.pack_str_body(value.data(), wire_size(value.size()));
  }
  void array(std::size_t size) { packer_.pack_array(wire_size(size)); }
  void map(std::size_t size) { packer_.pack_map(wire_size(size)); }

  [[nodiscard]] std::string take() && { return std::move(header_); }

 private:
  std::string header_;
  StringSink sink_;
  msgpack::packer<StringSink> packer_;
};

Encoded make(Peer from, Command command, HeaderWriter&& writer) {
  return Encoded{signature(from), command, std::move(writer).take()};
}

// ---- Decoding ----

using Object = msgpack::object;

// Limits for msgpack::unpack, so that hostile input cannot make it allocate much: msgpack
// allocates a container's entries when it reads the container's header, so a container that
// claims more entries than its frame could hold (each takes at least one byte, two in a map) is
// refused before any allocation. Memory then stays proportional to the frame's size.
constexpr std::size_t kMaxEntries = 65536;
constexpr std::size_t kMaxDepth = 4;  // header map > list > entry, plus one level to spare

std::string_view as_text(Frame frame) noexcept {
  // NOLINTNEXTLINE(cppcoreguidelines-pro-type-reinterpret-cast): char may alias any bytes
  return {reinterpret_cast<const char*>(frame.data()), frame.size()};
}

// msgpack::object holds its value in a union tagged by `type`. These accessors are the only code
// that reads the union, and each checks the tag first.
// NOLINTBEGIN(cppcoreguidelines-pro-type-union-access)

std::optional<std::span<const msgpack::object_kv>> map_of(const Object& object) noexcept {
  if (object.type != msgpack::type::MAP) return std::nullopt;
  return std::span<const msgpack::object_kv>(object.via.map.ptr, object.via.map.size);
}

std::optional<std::span<const Object>> array_of(const Object& object) noexcept {
  if (object.type != msgpack::type::ARRAY) return std::nullopt;
  return std::span<const Object>(object.via.array.ptr, object.via.array.size);
}

/// A msgpack str (never a bin): PROTOCOL.md §6 strings are UTF-8 text.
std::optional<std::string_view> str_of(const Object& object) noexcept {
  if (object.type != msgpack::type::STR) return std::nullopt;
  return std::string_view(object.via.str.ptr, object.via.str.size);
}

std::optional<bool> bool_of(const Object& object) noexcept {
  if (object.type != msgpack::type::BOOLEAN) return std::nullopt;
  return object.via.boolean;
}

/// A non-negative msgpack int that fits in T; negative ints, floats and the rest do not.
template <class T>
std::optional<T> number_of(const Object& object) noexcept {
  static_assert(std::is_unsigned_v<T>);
  if (object.type != msgpack::type::POSITIVE_INTEGER) return std::nullopt;
  if constexpr (sizeof(T) < sizeof(std::uint64_t)) {
    if (object.via.u64 > std::uint64_t{std::numeric_limits<T>::max()}) return std::nullopt;
  }
  return static_cast<T>(object.via.u64);
}

// NOLINTEND(cppcoreguidelines-pro-type-union-access)

/// Strings stay in the caller's frame while we read them: nothing is copied twice.
bool reference_frame(msgpack::type::object_type /*type*/, std::size_t /*size*/,
                     void* /*user_data*/) {
  return true;
}

/// PROTOCOL.md §5.4: the frame holds exactly one msgpack map, with str keys, and nothing else.
/// Returns its entries; `zone` owns them, apart from strings, which point into `frame`.
std::optional<std::span<const msgpack::object_kv>> parse_map(Frame frame, std::size_t max_bytes,
                                                             msgpack::zone& zone) noexcept {
  const msgpack::unpack_limit limit(std::min(kMaxEntries, frame.size()),
                                    std::min(kMaxEntries, frame.size() / 2), max_bytes, max_bytes,
                                    max_bytes, kMaxDepth);
  Object top;
  try {
    std::size_t offset = 0;
    top = msgpack::unpack(zone, as_text(frame).data(), frame.size(), offset, reference_frame,
                          nullptr, limit);
    if (offset != frame.size()) return std::nullopt;
  } catch (...) {  // parse_error, insufficient_bytes, *_size_overflow, depth_size_overflow
    return std::nullopt;
  }
  const auto entries = map_of(top);
  if (!entries || !std::ranges::all_of(*entries, [](const msgpack::object_kv& entry) {
        return str_of(entry.key).has_value();
      })) {
    return std::nullopt;
  }
  return entries;
}

template <class T>
bool to_number(const Object& object, T& out) noexcept {
  const auto number = number_of<T>(object);
  if (number) out = *number;
  return number.has_value();
}

bool to_status(const Object& object, TaskStatus& out) noexcept {
  const auto status = number_of<std::uint8_t>(object);
  if (!status || *status > kMaxTaskStatus) return false;
  out = static_cast<TaskStatus>(*status);
  return true;
}

/// The items of a positional array of `arity` items, or an empty span.
std::span<const Object> items_of(const Object& object, std::size_t arity) noexcept {
  const auto items = array_of(object);
  if (!items || items->size() != arity) return {};
  return *items;
}

// List entries are positional arrays (PROTOCOL.md §6.2.2, §6.3.2, §6.4.2).
bool read_entry(const Object& object, JobResult& out) noexcept {
  const auto items = items_of(object, 3);
  return !items.empty() && to_number(items[0], out.index) && to_status(items[1], out.status) &&
         to_number(items[2], out.attempts) && out.attempts >= 1;
}

bool read_entry(const Object& object, TaskResult& out) noexcept {
  const auto items = items_of(object, 3);
  return !items.empty() && to_number(items[0], out.job) && to_number(items[1], out.index) &&
         to_status(items[2], out.status);
}

bool read_entry(const Object& object, TaskAssignment& out) noexcept {
  const auto items = items_of(object, 2);
  return !items.empty() && to_number(items[0], out.index) && to_number(items[1], out.attempt) &&
         out.attempt >= 1;
}

bool read_entry(const Object& object, std::uint64_t& out) noexcept {
  return to_number(object, out);
}

// §6.2.7: a STATUS worker entry is a map; it needs FieldReader, defined below.
bool read_entry(const Object& object, WorkerInfo& out);

bool read_entry(const Object& object, std::string& out) {  // a function name
  const auto name = str_of(object);
  if (!name || name->empty() || name->size() > kMaxFunctionName) return false;
  out.assign(*name);
  return true;
}

enum class Need : bool { Optional, Required };

/// Reads the fields of a parsed header map and keeps the first error. A duplicated key is a
/// MalformedHeader, which wins over any field error, so every reader reads all its fields.
class FieldReader {
 public:
  explicit FieldReader(std::span<const msgpack::object_kv> entries) noexcept : entries_(entries) {}

  /// The value of `key`, or nullptr when it is absent or nil.
  const Object* find(std::string_view key, Need need) noexcept {
    const Object* value = nullptr;
    bool seen = false;
    for (const auto& entry : entries_) {
      if (str_of(entry.key) != key) continue;  // parse_map checked that keys are str
      if (seen) {
        fail(DecodeError::MalformedHeader);
        return nullptr;
      }
      seen = true;
      if (entry.val.type != msgpack::type::NIL) value = &entry.val;
    }
    if (value == nullptr && need == Need::Required) fail(DecodeError::MissingField);
    return value;
  }

  template <class T>
  void number(std::string_view key, T& out, Need need, std::type_identity_t<T> min = 0) noexcept {
    const Object* value = find(key, need);
    if (value != nullptr && (!to_number(*value, out) || out < min)) fail(DecodeError::BadField);
  }

  template <class T>
  void number(std::string_view key, std::optional<T>& out) noexcept {
    const Object* value = find(key, Need::Optional);
    if (value == nullptr) return;
    out = number_of<T>(*value);
    if (!out) fail(DecodeError::BadField);
  }

  void flag(std::string_view key, bool& out, Need need) noexcept {
    const Object* value = find(key, need);
    if (value == nullptr) return;
    const auto flag = bool_of(*value);
    if (flag) {
      out = *flag;
    } else {
      fail(DecodeError::BadField);
    }
  }

  void text(std::string_view key, std::string& out, Need need, std::size_t min_size,
            std::size_t max_size) {
    const Object* value = find(key, need);
    if (value == nullptr) return;
    const auto text = str_of(*value);
    if (!text || text->size() < min_size || text->size() > max_size) {
      fail(DecodeError::BadField);
      return;
    }
    out.assign(*text);
  }

  /// An optional text whose absence differs from "" (§6.1.5 `launch`).
  void text(std::string_view key, std::optional<std::string>& out, std::size_t max_size) {
    const Object* value = find(key, Need::Optional);
    if (value == nullptr) return;
    const auto text = str_of(*value);
    if (!text || text->size() > max_size) {
      fail(DecodeError::BadField);
      return;
    }
    out.emplace(*text);
  }

  template <class T>
  void list(std::string_view key, std::vector<T>& out, Need need, std::size_t min_size,
            std::size_t max_size) {
    const Object* value = find(key, need);
    if (value == nullptr) return;
    const auto items = array_of(*value);
    if (!items || items->size() < min_size || items->size() > max_size) {
      fail(DecodeError::BadField);
      return;
    }
    out.reserve(items->size());
    for (const Object& item : *items) {
      T entry{};
      if (!read_entry(item, entry)) {
        fail(DecodeError::BadField);
        return;
      }
      out.push_back(std::move(entry));
    }
  }

  void fail(DecodeError error) noexcept {
    if (error == DecodeError::MalformedHeader || !failed_) error_ = error;
    failed_ = true;
  }

  [[nodiscard]] bool failed() const noexcept { return failed_; }
  [[nodiscard]] DecodeError error() const noexcept { return error_; }  // when failed()

 private:
  std::span<const msgpack::object_kv> entries_;
  // Not std::optional: g++ 12 -O2 then warns "may be used uninitialized" (a false positive).
  bool failed_ = false;
  DecodeError error_ = DecodeError::MalformedHeader;
};

constexpr std::size_t kNoLimit = std::numeric_limits<std::size_t>::max();

bool read_entry(const Object& object, WorkerInfo& out) {
  // Not positional, unlike other list entries, so that later versions can add fields (§5.4).
  const auto entries = map_of(object);
  if (!entries || !std::ranges::all_of(*entries, [](const msgpack::object_kv& entry) {
        return str_of(entry.key).has_value();
      })) {
    return false;
  }
  FieldReader r(*entries);
  r.number("id", out.id, Need::Required);
  r.text("host", out.host, Need::Optional, 0, kMaxText);
  r.number("pid", out.pid, Need::Optional);
  r.number("slots", out.slots, Need::Required);
  r.number("running", out.running, Need::Required);
  r.text("launch", out.launch, Need::Optional, 0, kMaxText);
  r.number("functions", out.functions, Need::Optional);
  return !r.failed();
}

/// §6.1.1, §6.4.2: the job's common frame comes before the task frames.
constexpr std::size_t common_frames(bool common) noexcept {
  return common ? 1 : 0;
}

// One reader per command, in the order of PROTOCOL.md §6, and the payload frames it announces.

void read(FieldReader& r, Submit& c) {
  r.number("job", c.job, Need::Required);
  r.text("function", c.function, Need::Required, 1, kMaxFunctionName);
  r.number("total", c.total, Need::Required, 1);
  r.number("first", c.first, Need::Required);
  r.number("count", c.count, Need::Required, 1);
  r.flag("common", c.common, Need::Optional);
  r.number("max_retries", c.max_retries);
  r.flag("retry_on_error", c.retry_on_error, Need::Optional);
  r.number("timeout_ms", c.timeout_ms, Need::Optional);
  r.number("cores", c.cores, Need::Optional, 1);
  // §6.1.1: the tasks lie inside the job (first + count <= total, without overflow) ...
  if (c.count > c.total || c.first > c.total - c.count) r.fail(DecodeError::BadField);
  // ... and only the SUBMIT with first == 0 carries the common frame.
  if (c.common && c.first != 0) r.fail(DecodeError::BadField);
}
std::size_t payload_frames(const Submit& c) {
  return std::size_t{c.count} + common_frames(c.common);
}

void read(FieldReader& r, CancelJob& c) {
  r.number("job", c.job, Need::Required);
}
std::size_t payload_frames(const CancelJob& /*c*/) {
  return 0;
}

void read(FieldReader& /*r*/, Heartbeat& /*c*/) {}  // any map: every key is unknown
std::size_t payload_frames(const Heartbeat& /*c*/) {
  return 0;
}

void read(FieldReader& r, Bye& c) {
  r.text("reason", c.reason, Need::Optional, 0, kMaxText);
  r.flag("reconnect", c.reconnect, Need::Optional);
}
std::size_t payload_frames(const Bye& /*c*/) {
  return 0;
}

void read(FieldReader& r, Accept& c) {
  r.number("job", c.job, Need::Required);
  r.number("received", c.received, Need::Required);
  r.number("window", c.window, Need::Required);
  r.number("heartbeat_ms", c.heartbeat_ms, Need::Optional, 1);
}
std::size_t payload_frames(const Accept& /*c*/) {
  return 0;
}

void read(FieldReader& r, JobResults& c) {
  r.number("job", c.job, Need::Required);
  r.list("results", c.results, Need::Required, 1, kNoLimit);
}
std::size_t payload_frames(const JobResults& c) {
  return c.results.size();
}

void read(FieldReader& r, Done& c) {
  r.number("job", c.job, Need::Required);
  r.number("ok", c.ok, Need::Required);
  r.number("failed", c.failed, Need::Required);
  r.flag("cancelled", c.cancelled, Need::Optional);
}
std::size_t payload_frames(const Done& /*c*/) {
  return 0;
}

void read(FieldReader& r, Error& c) {
  // §11: codes this version does not know are kept, so that the receiver can log them.
  std::uint16_t code = 0;
  r.number("code", code, Need::Required, 1);
  c.code = static_cast<ErrorCode>(code);
  r.text("message", c.message, Need::Required, 0, kMaxText);
  r.number("job", c.job);
}
std::size_t payload_frames(const Error& /*c*/) {
  return 0;
}

void read(FieldReader& r, Ready& c) {
  r.list("functions", c.functions, Need::Required, 0, kMaxFunctions);
  r.number("slots", c.slots, Need::Required, 1);
  r.number("prefetch", c.prefetch, Need::Optional);
  r.text("host", c.host, Need::Optional, 0, kMaxText);
  r.number("pid", c.pid, Need::Optional);
  r.number("cores", c.cores, Need::Optional);
  r.number("memory", c.memory, Need::Optional);
  r.text("agent", c.agent, Need::Optional, 0, kMaxText);
  r.text("launch", c.launch, Need::Optional, 0, kMaxText);
}
std::size_t payload_frames(const Ready& /*c*/) {
  return 0;
}

void read(FieldReader& r, TaskResults& c) {
  r.list("results", c.results, Need::Required, 1, kNoLimit);
}
std::size_t payload_frames(const TaskResults& c) {
  return c.results.size();
}

void read(FieldReader& r, Welcome& c) {
  r.number("worker", c.worker, Need::Required);
  r.number("heartbeat_ms", c.heartbeat_ms, Need::Required, 1);
  r.number("liveness", c.liveness, Need::Required, 1);
}
std::size_t payload_frames(const Welcome& /*c*/) {
  return 0;
}

void read(FieldReader& r, Tasks& c) {
  r.number("job", c.job, Need::Required);
  r.text("function", c.function, Need::Required, 1, kMaxFunctionName);
  r.list("tasks", c.tasks, Need::Required, 1, kNoLimit);
  r.flag("common", c.common, Need::Optional);
  r.number("timeout_ms", c.timeout_ms, Need::Optional);
  r.number("cores", c.cores, Need::Optional, 1);
}
std::size_t payload_frames(const Tasks& c) {
  return c.tasks.size() + common_frames(c.common);
}

void read(FieldReader& r, CancelTasks& c) {
  r.number("job", c.job, Need::Required);
  r.list("tasks", c.tasks, Need::Optional, 0, kNoLimit);
}
std::size_t payload_frames(const CancelTasks& /*c*/) {
  return 0;
}

void read(FieldReader& r, StatusRequest& c) {
  r.text("launch", c.launch, kMaxText);
}
std::size_t payload_frames(const StatusRequest& /*c*/) {
  return 0;
}

void read(FieldReader& r, StatusReply& c) {
  r.text("agent", c.agent, Need::Optional, 0, kMaxText);
  r.number("uptime_ms", c.uptime_ms, Need::Required);
  r.number("clients", c.clients, Need::Required);
  r.number("jobs", c.jobs, Need::Required);
  r.number("tasks_queued", c.tasks_queued, Need::Required);
  r.number("tasks_running", c.tasks_running, Need::Required);
  r.number("tasks_done", c.tasks_done, Need::Required);
  r.number("tasks_failed", c.tasks_failed, Need::Required);
  r.list("workers", c.workers, Need::Required, 0, kNoLimit);
  r.number("workers_omitted", c.workers_omitted, Need::Optional);
}
std::size_t payload_frames(const StatusReply& /*c*/) {
  return 0;
}

template <class Variant>
using Decoded = Result<Message<Variant>, DecodeError>;

/// PROTOCOL.md §5.2: reads a signature frame into `out`, or says why it is not one.
std::optional<DecodeError> read_signature(Frame frame, Signature& out) noexcept {
  // "ACME", a peer letter, and the version in decimal: 1 to 3 digits, with no leading zero, so
  // that each version has exactly one signature.
  const auto text = as_text(frame);
  if (text.size() < 6 || text.size() > 8 || !text.starts_with("ACME")) {
    return DecodeError::NotAcme;
  }
  switch (text[4]) {
    case 'C': out.peer = Peer::Client; break;
    case 'W': out.peer = Peer::Worker; break;
    case 'B': out.peer = Peer::Broker; break;
    default: return DecodeError::UnknownPeer;
  }
  const auto digits = text.substr(5);
  if (digits.size() > 1 && digits.front() == '0') return DecodeError::NotAcme;
  out.version = 0;
  for (const char digit : digits) {
    if (digit < '0' || digit > '9') return DecodeError::NotAcme;
    out.version = out.version * 10 + static_cast<std::uint32_t>(digit - '0');
  }
  return std::nullopt;
}

/// PROTOCOL.md §5.1-5.3: checks the frame count, the signature and the command frame, in this
/// order, and reads the command byte into `command`.
std::optional<DecodeError> read_envelope(std::span<const Frame> frames, Peer sender,
                                         Command& command) noexcept {
  if (frames.size() < 3) return DecodeError::TooFewFrames;
  Signature from;
  if (const auto error = read_signature(frames[0], from)) return error;
  if (from.version != kVersion) return DecodeError::VersionMismatch;
  if (from.peer != sender) return DecodeError::WrongPeer;
  if (frames[1].size() != 1) return DecodeError::UnknownCommand;
  const auto byte = std::to_integer<std::uint8_t>(frames[1][0]);
  if (byte < static_cast<std::uint8_t>(Command::Submit) ||
      byte > static_cast<std::uint8_t>(Command::Status)) {
    return DecodeError::UnknownCommand;
  }
  command = static_cast<Command>(byte);
  return std::nullopt;
}

/// PROTOCOL.md §5.4-5.6: the header of a command `C` that this direction allows, then the
/// payload frame count.
template <class Variant, class C>
Decoded<Variant> decode_as(std::span<const Frame> frames) {
  const Frame header = frames[2];
  if (header.size() > kMaxHeaderBytes) return Unexpected{DecodeError::HeaderTooLarge};
  msgpack::zone zone;
  const auto entries = parse_map(header, kMaxHeaderBytes, zone);
  if (!entries) return Unexpected{DecodeError::MalformedHeader};
  FieldReader reader(*entries);
  C command;
  read(reader, command);
  if (reader.failed()) return Unexpected{reader.error()};
  const auto payload = frames.subspan(3);
  if (payload.size() != payload_frames(command)) {
    return Unexpected{DecodeError::PayloadCountMismatch};
  }
  return Message<Variant>{Variant(std::in_place_type<C>, std::move(command)), payload};
}

}  // namespace

std::string_view describe(DecodeError error) noexcept {
  switch (error) {
    case DecodeError::TooFewFrames:
      return "The message has fewer than the three frames every message has.";
    case DecodeError::NotAcme: return "The first frame is not an acme signature.";
    case DecodeError::UnknownPeer: return "The signature names no known peer kind.";
    case DecodeError::VersionMismatch:
      return "The signature names another protocol version than this one.";
    case DecodeError::WrongPeer: return "The signature names a peer that may not send here.";
    case DecodeError::UnknownCommand:
      return "The command frame is not one byte, or names no command.";
    case DecodeError::CommandNotAllowed:
      return "The command is one that this peer may not send in this direction.";
    case DecodeError::HeaderTooLarge: return "The header frame is larger than the limit.";
    case DecodeError::MalformedHeader:
      return "The header is not exactly one msgpack map with unique string keys.";
    case DecodeError::MissingField: return "A required header field is missing.";
    case DecodeError::BadField: return "A header field has the wrong type or a value out of range.";
    case DecodeError::PayloadCountMismatch:
      return "The number of payload frames is not what the header announces.";
  }
  return "Unknown decode error.";
}

Result<Signature, DecodeError> decode_signature(Frame frame) noexcept {
  Signature signature;
  if (const auto error = read_signature(frame, signature)) return Unexpected{*error};
  return signature;
}

Result<Message<ClientCommand>, DecodeError> decode_client(std::span<const Frame> frames) noexcept {
  Command command{};
  if (const auto error = read_envelope(frames, Peer::Client, command)) return Unexpected{*error};
  switch (command) {
    case Command::Submit: return decode_as<ClientCommand, Submit>(frames);
    case Command::Cancel: return decode_as<ClientCommand, CancelJob>(frames);
    case Command::Heartbeat: return decode_as<ClientCommand, Heartbeat>(frames);
    case Command::Bye: return decode_as<ClientCommand, Bye>(frames);
    case Command::Status: return decode_as<ClientCommand, StatusRequest>(frames);
    default: return Unexpected{DecodeError::CommandNotAllowed};
  }
}

Result<Message<WorkerCommand>, DecodeError> decode_worker(std::span<const Frame> frames) noexcept {
  Command command{};
  if (const auto error = read_envelope(frames, Peer::Worker, command)) return Unexpected{*error};
  switch (command) {
    case Command::Ready: return decode_as<WorkerCommand, Ready>(frames);
    case Command::Results: return decode_as<WorkerCommand, TaskResults>(frames);
    case Command::Heartbeat: return decode_as<WorkerCommand, Heartbeat>(frames);
    case Command::Bye: return decode_as<WorkerCommand, Bye>(frames);
    default: return Unexpected{DecodeError::CommandNotAllowed};
  }
}

Result<Message<ToClientCommand>, DecodeError> decode_for_client(
    std::span<const Frame> frames) noexcept {
  Command command{};
  if (const auto error = read_envelope(frames, Peer::Broker, command)) return Unexpected{*error};
  switch (command) {
    case Command::Accept: return decode_as<ToClientCommand, Accept>(frames);
    case Command::Results: return decode_as<ToClientCommand, JobResults>(frames);
    case Command::Done: return decode_as<ToClientCommand, Done>(frames);
    case Command::Error: return decode_as<ToClientCommand, Error>(frames);
    case Command::Heartbeat: return decode_as<ToClientCommand, Heartbeat>(frames);
    case Command::Bye: return decode_as<ToClientCommand, Bye>(frames);
    case Command::Status: return decode_as<ToClientCommand, StatusReply>(frames);
    default: return Unexpected{DecodeError::CommandNotAllowed};
  }
}

Result<Message<ToWorkerCommand>, DecodeError> decode_for_worker(
    std::span<const Frame> frames) noexcept {
  Command command{};
  if (const auto error = read_envelope(frames, Peer::Broker, command)) return Unexpected{*error};
  switch (command) {
    case Command::Welcome: return decode_as<ToWorkerCommand, Welcome>(frames);
    case Command::Tasks: return decode_as<ToWorkerCommand, Tasks>(frames);
    case Command::Cancel: return decode_as<ToWorkerCommand, CancelTasks>(frames);
    case Command::Heartbeat: return decode_as<ToWorkerCommand, Heartbeat>(frames);
    case Command::Bye: return decode_as<ToWorkerCommand, Bye>(frames);
    default: return Unexpected{DecodeError::CommandNotAllowed};
  }
}

std::string_view signature(Peer from) noexcept {
  switch (from) {
    case Peer::Client: return "ACMEC1";
    case Peer::Worker: return "ACMEW1";
    case Peer::Broker: return "ACMEB1";
  }
  return "ACMEB1";  // unreachable for a valid Peer
}

Encoded encode(const Submit& command) {
  const std::size_t fields = command.max_retries ? 10 : 9;
  HeaderWriter w(fields, kContainerBound + fields * kFieldBound + text_bound(command.function));
  w.number("job", command.job);
  w.text("function", command.function);
  w.number("total", command.total);
  w.number("first", command.first);
  w.number("count", command.count);
  w.flag("common", command.common);
  if (command.max_retries) w.number("max_retries", *command.max_retries);
  w.flag("retry_on_error", command.retry_on_error);
  w.number("timeout_ms", command.timeout_ms);
  w.number("cores", command.cores);
  return make(Peer::Client, Command::Submit, std::move(w));
}

Encoded encode(const CancelJob& command) {
  HeaderWriter w(1, kContainerBound + kFieldBound);
  w.number("job", command.job);
  return make(Peer::Client, Command::Cancel, std::move(w));
}

Encoded encode(Peer from, const Heartbeat& /*command*/) {
  return make(from, Command::Heartbeat, HeaderWriter(0, 1));
}

Encoded encode(Peer from, const Bye& command) {
  HeaderWriter w(2, kContainerBound + 2 * kFieldBound + text_bound(command.reason));
  w.text("reason", command.reason);
  w.flag("reconnect", command.reconnect);
  return make(from, Command::Bye, std::move(w));
}

Encoded encode(const Accept& command) {
  HeaderWriter w(4, kContainerBound + 4 * kFieldBound);
  w.number("job", command.job);
  w.number("received", command.received);
  w.number("window", command.window);
  w.number("heartbeat_ms", command.heartbeat_ms);
  return make(Peer::Broker, Command::Accept, std::move(w));
}

Encoded encode(const JobResults& command) {
  HeaderWriter w(2,
                 2 * kContainerBound + 2 * kFieldBound + command.results.size() * kJobResultBound);
  w.number("job", command.job);
  w.array("results", command.results.size());
  for (const auto& result : command.results) {
    w.array(3);
    w.number(result.index);
    w.number(static_cast<std::uint8_t>(result.status));
    w.number(result.attempts);
  }
  return make(Peer::Broker, Command::Results, std::move(w));
}

Encoded encode(const Done& command) {
  HeaderWriter w(4, kContainerBound + 4 * kFieldBound);
  w.number("job", command.job);
  w.number("ok", command.ok);
  w.number("failed", command.failed);
  w.flag("cancelled", command.cancelled);
  return make(Peer::Broker, Command::Done, std::move(w));
}

Encoded encode(const Error& command) {
  const std::size_t fields = command.job ? 3 : 2;
  HeaderWriter w(fields, kContainerBound + fields * kFieldBound + text_bound(command.message));
  w.number("code", static_cast<std::uint16_t>(command.code));
  w.text("message", command.message);
  if (command.job) w.number("job", *command.job);
  return make(Peer::Broker, Command::Error, std::move(w));
}

Encoded encode(const Ready& command) {
  // §6.3.1: `launch` is omitted when empty, so that READY stays as older brokers know it.
  const std::size_t fields = command.launch.empty() ? 8 : 9;
  std::size_t size = 2 * kContainerBound + fields * kFieldBound + text_bound(command.host) +
                     text_bound(command.agent) + text_bound(command.launch);
  for (const auto& function : command.functions) size += text_bound(function);
  HeaderWriter w(fields, size);
  w.array("functions", command.functions.size());
  for (const auto& function : command.functions) w.text(function);
  w.number("slots", command.slots);
  w.number("prefetch", command.prefetch);
  w.text("host", command.host);
  w.number("pid", command.pid);
  w.number("cores", command.cores);
  w.number("memory", command.memory);
  w.text("agent", command.agent);
  if (!command.launch.empty()) w.text("launch", command.launch);
  return make(Peer::Worker, Command::Ready, std::move(w));
}

Encoded encode(const TaskResults& command) {
  HeaderWriter w(1, 2 * kContainerBound + kFieldBound + command.results.size() * kTaskResultBound);
  w.array("results", command.results.size());
  for (const auto& result : command.results) {
    w.array(3);
    w.number(result.job);
    w.number(result.index);
    w.number(static_cast<std::uint8_t>(result.status));
  }
  return make(Peer::Worker, Command::Results, std::move(w));
}

Encoded encode(const Welcome& command) {
  HeaderWriter w(3, kContainerBound + 3 * kFieldBound);
  w.number("worker", command.worker);
  w.number("heartbeat_ms", command.heartbeat_ms);
  w.number("liveness", command.liveness);
  return make(Peer::Broker, Command::Welcome, std::move(w));
}

Encoded encode(const Tasks& command) {
  HeaderWriter w(6, 2 * kContainerBound + 6 * kFieldBound + text_bound(command.function) +
                        command.tasks.size() * kTaskAssignmentBound);
  w.number("job", command.job);
  w.text("function", command.function);
  w.flag("common", command.common);
  w.number("timeout_ms", command.timeout_ms);
  w.number("cores", command.cores);
  w.array("tasks", command.tasks.size());
  for (const auto& task : command.tasks) {
    w.array(2);
    w.number(task.index);
    w.number(task.attempt);
  }
  return make(Peer::Broker, Command::Tasks, std::move(w));
}

Encoded encode(const CancelTasks& command) {
  HeaderWriter w(2, 2 * kContainerBound + 2 * kFieldBound + command.tasks.size() * kNumberBound);
  w.number("job", command.job);
  w.array("tasks", command.tasks.size());
  for (const auto index : command.tasks) w.number(index);
  return make(Peer::Broker, Command::Cancel, std::move(w));
}

Encoded encode(const StatusRequest& command) {
  const std::size_t fields = command.launch ? 1 : 0;
  HeaderWriter w(fields,
                 kContainerBound + kKeyBound + (command.launch ? text_bound(*command.launch) : 0));
  if (command.launch) w.text("launch", *command.launch);
  return make(Peer::Client, Command::Status, std::move(w));
}

Encoded encode(const StatusReply& command) {
  constexpr std::size_t kFields = 10;
  constexpr std::size_t kWorkerFields = 7;
  std::size_t size = 2 * kContainerBound + kFields * kFieldBound + text_bound(command.agent);
  for (const auto& worker : command.workers) {
    size += kContainerBound + kWorkerFields * kFieldBound + text_bound(worker.host) +
            text_bound(worker.launch);
  }
  HeaderWriter w(kFields, size);
  w.text("agent", command.agent);
  w.number("uptime_ms", command.uptime_ms);
  w.number("clients", command.clients);
  w.number("jobs", command.jobs);
  w.number("tasks_queued", command.tasks_queued);
  w.number("tasks_running", command.tasks_running);
  w.number("tasks_done", command.tasks_done);
  w.number("tasks_failed", command.tasks_failed);
  w.array("workers", command.workers.size());
  for (const auto& worker : command.workers) {
    w.map(kWorkerFields);
    w.number("id", worker.id);
    w.text("host", worker.host);
    w.number("pid", worker.pid);
    w.number("slots", worker.slots);
    w.number("running", worker.running);
    w.text("launch", worker.launch);
    w.number("functions", worker.functions);
  }
  w.number("workers_omitted", command.workers_omitted);
  return make(Peer::Broker, Command::Status, std::move(w));
}

std::string encode_error_info(const ErrorInfo& info) {
  HeaderWriter w(5, kContainerBound + 5 * kFieldBound + text_bound(info.message) +
                        text_bound(info.kind) + text_bound(info.traceback) + text_bound(info.host));
  w.text("message", info.message);
  w.text("kind", info.kind);
  w.text("traceback", info.traceback);
  w.text("host", info.host);
  w.number("pid", info.pid);
  return std::move(w).take();
}

Result<ErrorInfo, DecodeError> decode_error_info(Frame frame) noexcept {
  // §6.5: a payload frame, so the header size limit does not apply; strings stay in the frame
  // while they are read, so their size costs no allocation beyond the result.
  msgpack::zone zone;
  const auto entries = parse_map(frame, frame.size(), zone);
  if (!entries) return Unexpected{DecodeError::MalformedHeader};
  FieldReader r(*entries);
  ErrorInfo info;
  r.text("message", info.message, Need::Required, 0, kNoLimit);
  r.text("kind", info.kind, Need::Optional, 0, kNoLimit);
  r.text("traceback", info.traceback, Need::Optional, 0, kNoLimit);
  r.text("host", info.host, Need::Optional, 0, kNoLimit);
  r.number("pid", info.pid, Need::Optional);
  if (r.failed()) return Unexpected{r.error()};
  return info;
}

}  // namespace acme::protocol
