// libFuzzer target for the decoders (PROTOCOL.md §5-6). Input format, shared with the seeds that
// make_corpus.cpp writes: byte 0 = frame count (mod 16); then, for each frame but the last, a
// 2-byte little-endian length and that many bytes; the last frame is whatever remains.
// Oracle: whatever decodes must re-encode to frames that decode to the same thing, and encoding
// must be canonical (encode(decode(encode(x))) == encode(x)).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <acme/protocol/codec.hpp>

#include "fuzz_frames.hpp"

namespace {

using namespace acme::protocol;
using acme::fuzz::as_text;

/// The fuzzer reports abort() as a crash, with the input that caused it.
void check(bool ok) {
  if (!ok) std::abort();
}

Encoded reencode(const Submit& c, Peer /*from*/) {
  return encode(c);
}
Encoded reencode(const CancelJob& c, Peer /*from*/) {
  return encode(c);
}
Encoded reencode(const Heartbeat& c, Peer from) {
  return encode(from, c);
}
Encoded reencode(const Bye& c, Peer from) {
  return encode(from, c);
}
Encoded reencode(const Accept& c, Peer /*from*/) {
  return encode(c);
}
Encoded reencode(const JobResults& c, Peer /*from*/) {
  return encode(c);
}
Encoded reencode(const Done& c, Peer /*from*/) {
  return encode(c);
}
Encoded reencode(const Error& c, Peer /*from*/) {
  return encode(c);
}
Encoded reencode(const Ready& c, Peer /*from*/) {
  return encode(c);
}
Encoded reencode(const TaskResults& c, Peer /*from*/) {
  return encode(c);
}
Encoded reencode(const Welcome& c, Peer /*from*/) {
  return encode(c);
}
Encoded reencode(const Tasks& c, Peer /*from*/) {
  return encode(c);
}
Encoded reencode(const CancelTasks& c, Peer /*from*/) {
  return encode(c);
}
Encoded reencode(const StatusRequest& c, Peer /*from*/) {
  return encode(c);
}
Encoded reencode(const StatusReply& c, Peer /*from*/) {
  return encode(c);
}

/// Decodes `frames` with `decode`; if that succeeds, re-encodes the command with the original
/// payload frames and checks that it decodes to the same command and payload.
template <class Decode>
void round_trip(std::span<const Frame> frames, Decode decode, Peer sender) {
  const auto decoded = decode(frames);
  if (!decoded) return;
  // Success implies a version-1 signature of the sender's kind, the only one decode accepts.
  check(as_text(frames[0]) == signature(sender));
  std::visit(
      [&](const auto& command) {
        const Encoded encoded = reencode(command, sender);
        check(encoded.signature == signature(sender));
        check(std::to_integer<std::uint8_t>(frames[1][0]) ==
              static_cast<std::uint8_t>(encoded.command));
        std::vector<Frame> again{as_frame(encoded.signature), std::span(&frames[1][0], 1),
                                 as_frame(encoded.header)};
        again.insert(again.end(), decoded->payload.begin(), decoded->payload.end());
        const auto redecoded = decode(std::span<const Frame>(again));
        check(redecoded.has_value());
        using C = std::decay_t<decltype(command)>;
        check(std::holds_alternative<C>(redecoded->command));
        check(std::get<C>(redecoded->command) == command);
        check(redecoded->payload.size() == decoded->payload.size());
        for (std::size_t i = 0; i < decoded->payload.size(); ++i) {
          check(redecoded->payload[i].data() == decoded->payload[i].data());
        }
        check(reencode(std::get<C>(redecoded->command), sender).header == encoded.header);
      },
      decoded->command);
}

void check_signature(Frame frame) {
  const auto decoded = decode_signature(frame);
  if (!decoded) return;
  // One signature per (peer, version): the frame is exactly what an encoder would write.
  const std::string canonical =
      "ACME" + std::string(1, static_cast<char>(decoded->peer)) + std::to_string(decoded->version);
  check(as_text(frame) == canonical);
  if (decoded->version == kVersion) check(as_text(frame) == signature(decoded->peer));
}

void check_error_info(Frame frame) {
  const auto decoded = decode_error_info(frame);
  if (!decoded) return;
  const auto encoded = encode_error_info(*decoded);
  const auto redecoded = decode_error_info(as_frame(encoded));
  check(redecoded.has_value() && *redecoded == *decoded);
  check(encode_error_info(*redecoded) == encoded);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto frames = acme::fuzz::split_frames(std::as_bytes(std::span(data, size)));
  if (!frames.empty()) check_signature(frames[0]);
  if (frames.size() >= 3) {
    round_trip(frames, decode_client, Peer::Client);
    round_trip(frames, decode_worker, Peer::Worker);
    round_trip(frames, decode_for_client, Peer::Broker);
    round_trip(frames, decode_for_worker, Peer::Broker);
  } else {
    // The decoders must still refuse short messages cleanly.
    check(!decode_client(frames) && decode_client(frames).error() == DecodeError::TooFewFrames);
    check(!decode_for_worker(frames));
  }
  for (const Frame frame : frames) check_error_info(frame);
  return 0;
}
