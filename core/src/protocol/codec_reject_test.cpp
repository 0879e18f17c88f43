// One rejection test per rule of PROTOCOL.md §5-6, each asserting the exact DecodeError, plus
// the boundary values each rule still accepts. Malformed headers are packed by hand.
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include <gtest/gtest.h>

#include <acme/protocol/codec.hpp>
#include <acme/protocol/commands.hpp>
#include <acme/protocol/version.hpp>

#include "codec_harness.hpp"

namespace acme::protocol {
namespace {

using test::error_of;
using test::Fields;
using test::flag;
using test::Frames;
using test::header;
using test::kBroker;
using test::kClient;
using test::kWorker;
using test::list;
using test::message;
using test::neg;
using test::nil;
using test::num;
using test::str;
using test::with;
using test::without;

constexpr auto kU32Max = std::numeric_limits<std::uint32_t>::max();
constexpr auto kU64Max = std::numeric_limits<std::uint64_t>::max();

std::optional<DecodeError> from_client(Frames message) {
  return error_of(decode_client(message.frames()));
}
std::optional<DecodeError> from_worker(Frames message) {
  return error_of(decode_worker(message.frames()));
}
std::optional<DecodeError> to_client(Frames message) {
  return error_of(decode_for_client(message.frames()));
}
std::optional<DecodeError> to_worker(Frames message) {
  return error_of(decode_for_worker(message.frames()));
}

// A command with these header fields and payload frames, sent in its direction.
std::optional<DecodeError> client_sends(Command command, Fields fields, std::size_t payloads = 0) {
  return from_client(message(kClient, command, header(std::move(fields)), payloads));
}
std::optional<DecodeError> worker_sends(Command command, Fields fields, std::size_t payloads = 0) {
  return from_worker(message(kWorker, command, header(std::move(fields)), payloads));
}
std::optional<DecodeError> client_receives(Command command, Fields fields,
                                           std::size_t payloads = 0) {
  return to_client(message(kBroker, command, header(std::move(fields)), payloads));
}
std::optional<DecodeError> worker_receives(Command command, Fields fields,
                                           std::size_t payloads = 0) {
  return to_worker(message(kBroker, command, header(std::move(fields)), payloads));
}

/// The command a successful decode returned.
template <class C, class R>
C command_of(const R& decoded) {
  EXPECT_TRUE(decoded) << describe(decoded.error());
  if (!decoded) return C{};
  EXPECT_TRUE(std::holds_alternative<C>(decoded->command));
  if (!std::holds_alternative<C>(decoded->command)) return C{};
  return std::get<C>(decoded->command);
}

template <class C>
C client_decodes(Command command, Fields fields, std::size_t payloads = 0) {
  auto m = message(kClient, command, header(std::move(fields)), payloads);
  return command_of<C>(decode_client(m.frames()));
}
template <class C>
C worker_decodes(Command command, Fields fields, std::size_t payloads = 0) {
  auto m = message(kWorker, command, header(std::move(fields)), payloads);
  return command_of<C>(decode_worker(m.frames()));
}
template <class C>
C for_client_decodes(Command command, Fields fields, std::size_t payloads = 0) {
  auto m = message(kBroker, command, header(std::move(fields)), payloads);
  return command_of<C>(decode_for_client(m.frames()));
}
template <class C>
C for_worker_decodes(Command command, Fields fields, std::size_t payloads = 0) {
  auto m = message(kBroker, command, header(std::move(fields)), payloads);
  return command_of<C>(decode_for_worker(m.frames()));
}

std::optional<DecodeError> signature_error(std::string frame) {
  return error_of(decode_signature(as_frame(frame)));
}

const std::string kEmptyMap = "\x80";

// ---- §5: every message has at least 3 frames ----

TEST(DecodeClient, RejectsTooFewFrames) {
  EXPECT_EQ(from_client(Frames{}), DecodeError::TooFewFrames);
  EXPECT_EQ(from_client(Frames{std::string(kClient)}), DecodeError::TooFewFrames);
  EXPECT_EQ(from_client(Frames{std::string(kClient), test::command_frame(Command::Heartbeat)}),
            DecodeError::TooFewFrames);
}

TEST(DecodeEachDirection, RejectsTooFewFrames) {
  const Frames two{std::string(kBroker), test::command_frame(Command::Heartbeat)};
  EXPECT_EQ(from_worker(two), DecodeError::TooFewFrames);
  EXPECT_EQ(to_client(two), DecodeError::TooFewFrames);
  EXPECT_EQ(to_worker(two), DecodeError::TooFewFrames);
}

TEST(DecodeClient, ChecksFrameCountBeforeSignature) {
  EXPECT_EQ(from_client(Frames{"junk", "junk"}), DecodeError::TooFewFrames);
}

// ---- §5.2: the signature frame ----

TEST(DecodeSignature, RejectsFrameShorterThanSixBytes) {
  EXPECT_EQ(signature_error(""), DecodeError::NotAcme);
  EXPECT_EQ(signature_error("ACMEC"), DecodeError::NotAcme);
}

TEST(DecodeSignature, RejectsFrameLongerThanEightBytes) {
  EXPECT_EQ(signature_error("ACMEC1000"), DecodeError::NotAcme);
}

TEST(DecodeSignature, RejectsOtherPrefix) {
  EXPECT_EQ(signature_error("MDPC01"), DecodeError::NotAcme);  // Majordomo's client signature
  EXPECT_EQ(signature_error("acmeC1"), DecodeError::NotAcme);
  EXPECT_EQ(signature_error("ACMXC1"), DecodeError::NotAcme);
}

TEST(DecodeSignature, RejectsUnknownPeerLetter) {
  EXPECT_EQ(signature_error("ACMEX1"), DecodeError::UnknownPeer);
  EXPECT_EQ(signature_error("ACMEc1"), DecodeError::UnknownPeer);
}

TEST(DecodeSignature, ChecksPeerLetterBeforeVersion) {
  EXPECT_EQ(signature_error("ACMEXxy"), DecodeError::UnknownPeer);
}

TEST(DecodeSignature, RejectsNonDigitVersion) {
  EXPECT_EQ(signature_error("ACMEC1a"), DecodeError::NotAcme);
  EXPECT_EQ(signature_error("ACMEC-1"), DecodeError::NotAcme);
  EXPECT_EQ(signature_error("ACMEC "), DecodeError::NotAcme);
  EXPECT_EQ(signature_error(std::string("ACMEC\0", 6)), DecodeError::NotAcme);
}

TEST(DecodeSignature, RejectsLeadingZeroInVersion) {
  // Each version has exactly one signature: version 1 is "ACMEC1", never "ACMEC01".
  EXPECT_EQ(signature_error("ACMEC01"), DecodeError::NotAcme);
  EXPECT_EQ(signature_error("ACMEW001"), DecodeError::NotAcme);
}

TEST(DecodeSignature, ReadsAnyVersion) {
  const std::string frames[] = {"ACMEC999", "ACMEB0", "ACMEW42"};
  const Signature expected[] = {{Peer::Client, 999}, {Peer::Broker, 0}, {Peer::Worker, 42}};
  for (std::size_t i = 0; i < 3; ++i) {
    const auto decoded = decode_signature(as_frame(frames[i]));
    ASSERT_TRUE(decoded) << frames[i];
    EXPECT_EQ(decoded->peer, expected[i].peer);
    EXPECT_EQ(decoded->version, expected[i].version);
  }
}

TEST(DecodeClient, RejectsSignatureThatIsNotAcme) {
  EXPECT_EQ(from_client(message("MDPC01", Command::Heartbeat, kEmptyMap)), DecodeError::NotAcme);
}

TEST(DecodeClient, RejectsUnknownPeer) {
  EXPECT_EQ(from_client(message("ACMEZ1", Command::Heartbeat, kEmptyMap)),
            DecodeError::UnknownPeer);
}

TEST(DecodeClient, RejectsWrongVersion) {
  EXPECT_EQ(from_client(message("ACMEC2", Command::Heartbeat, kEmptyMap)),
            DecodeError::VersionMismatch);
  EXPECT_EQ(from_client(message("ACMEC0", Command::Heartbeat, kEmptyMap)),
            DecodeError::VersionMismatch);
}

TEST(DecodeWorker, RejectsWrongVersion) {
  EXPECT_EQ(from_worker(message("ACMEW2", Command::Heartbeat, kEmptyMap)),
            DecodeError::VersionMismatch);
}

TEST(DecodeForClient, RejectsWrongVersion) {
  EXPECT_EQ(to_client(message("ACMEB2", Command::Heartbeat, kEmptyMap)),
            DecodeError::VersionMismatch);
}

TEST(DecodeForWorker, RejectsWrongVersion) {
  EXPECT_EQ(to_worker(message("ACMEB10", Command::Heartbeat, kEmptyMap)),
            DecodeError::VersionMismatch);
}

TEST(DecodeClient, ChecksVersionBeforePeerKind) {
  EXPECT_EQ(from_client(message("ACMEW2", Command::Heartbeat, kEmptyMap)),
            DecodeError::VersionMismatch);
}

TEST(DecodeClient, RejectsSignatureOfAnotherPeer) {
  EXPECT_EQ(from_client(message(kWorker, Command::Heartbeat, kEmptyMap)), DecodeError::WrongPeer);
  EXPECT_EQ(from_client(message(kBroker, Command::Heartbeat, kEmptyMap)), DecodeError::WrongPeer);
}

TEST(DecodeWorker, RejectsSignatureOfAnotherPeer) {
  EXPECT_EQ(from_worker(message(kClient, Command::Heartbeat, kEmptyMap)), DecodeError::WrongPeer);
  EXPECT_EQ(from_worker(message(kBroker, Command::Heartbeat, kEmptyMap)), DecodeError::WrongPeer);
}

TEST(DecodeForClient, RejectsSignatureOfAnotherPeer) {
  EXPECT_EQ(to_client(message(kClient, Command::Heartbeat, kEmptyMap)), DecodeError::WrongPeer);
  EXPECT_EQ(to_client(message(kWorker, Command::Heartbeat, kEmptyMap)), DecodeError::WrongPeer);
}

TEST(DecodeForWorker, RejectsSignatureOfAnotherPeer) {
  EXPECT_EQ(to_worker(message(kClient, Command::Heartbeat, kEmptyMap)), DecodeError::WrongPeer);
  EXPECT_EQ(to_worker(message(kWorker, Command::Heartbeat, kEmptyMap)), DecodeError::WrongPeer);
}

// ---- §5.3: the command frame ----

TEST(DecodeClient, RejectsEmptyCommandFrame) {
  EXPECT_EQ(from_client(Frames{std::string(kClient), "", kEmptyMap}), DecodeError::UnknownCommand);
}

TEST(DecodeClient, RejectsCommandFrameOfTwoBytes) {
  EXPECT_EQ(from_client(Frames{std::string(kClient), std::string("\x03\x00", 2), kEmptyMap}),
            DecodeError::UnknownCommand);
}

TEST(DecodeClient, RejectsUnknownCommandByte) {
  for (const int byte : {0x00, 0x0D, 0x7F, 0xFF}) {
    EXPECT_EQ(from_client(
                  Frames{std::string(kClient), std::string(1, static_cast<char>(byte)), kEmptyMap}),
              DecodeError::UnknownCommand)
        << byte;
  }
}

TEST(DecodeEachDirection, RejectsUnknownCommandByte) {
  const Frames unknown{std::string(kBroker), std::string(1, '\x0D'), kEmptyMap};
  EXPECT_EQ(to_client(unknown), DecodeError::UnknownCommand);
  EXPECT_EQ(to_worker(unknown), DecodeError::UnknownCommand);
  EXPECT_EQ(from_worker(Frames{std::string(kWorker), std::string(1, '\0'), kEmptyMap}),
            DecodeError::UnknownCommand);
}

TEST(DecodeClient, RejectsCommandsOnlyOtherPeersSend) {
  for (const auto command : {Command::Ready, Command::Results, Command::Accept, Command::Done,
                             Command::Error, Command::Welcome, Command::Tasks}) {
    EXPECT_EQ(from_client(message(kClient, command, kEmptyMap)), DecodeError::CommandNotAllowed)
        << command_name(command);
  }
}

TEST(DecodeWorker, RejectsCommandsOnlyOtherPeersSend) {
  for (const auto command : {Command::Submit, Command::Cancel, Command::Accept, Command::Done,
                             Command::Error, Command::Welcome, Command::Tasks, Command::Status}) {
    EXPECT_EQ(from_worker(message(kWorker, command, kEmptyMap)), DecodeError::CommandNotAllowed)
        << command_name(command);
  }
}

TEST(DecodeForClient, RejectsCommandsOnlyOtherPeersSend) {
  for (const auto command :
       {Command::Submit, Command::Cancel, Command::Ready, Command::Welcome, Command::Tasks}) {
    EXPECT_EQ(to_client(message(kBroker, command, kEmptyMap)), DecodeError::CommandNotAllowed)
        << command_name(command);
  }
}

TEST(DecodeForWorker, RejectsCommandsOnlyOtherPeersSend) {
  for (const auto command : {Command::Submit, Command::Ready, Command::Results, Command::Accept,
                             Command::Done, Command::Error, Command::Status}) {
    EXPECT_EQ(to_worker(message(kBroker, command, kEmptyMap)), DecodeError::CommandNotAllowed)
        << command_name(command);
  }
}

TEST(DecodeClient, ChecksSignatureBeforeCommand) {
  EXPECT_EQ(from_client(Frames{"ACMEC2", "", ""}), DecodeError::VersionMismatch);
}

TEST(DecodeClient, ChecksCommandBeforeHeader) {
  const std::string oversized(kMaxHeaderBytes + 1, '\xc1');
  EXPECT_EQ(from_client(Frames{std::string(kClient), "\x7f", oversized}),
            DecodeError::UnknownCommand);
  EXPECT_EQ(from_client(message(kClient, Command::Ready, oversized)),
            DecodeError::CommandNotAllowed);
}

// ---- §5.6: header size ----

/// A header map {"pad": "xxx..."} of exactly `size` bytes (a str16 pad: size < 65545).
std::string padded_header(std::size_t size) {
  const std::size_t overhead = 1 + 4 + 3;  // fixmap, fixstr "pad", str16 header
  return header({test::field("pad", str(std::string(size - overhead, 'x')))});
}

TEST(DecodeClient, RejectsOversizedHeader) {
  const auto big = padded_header(kMaxHeaderBytes + 1);
  ASSERT_EQ(big.size(), kMaxHeaderBytes + 1);
  EXPECT_EQ(from_client(message(kClient, Command::Heartbeat, big)), DecodeError::HeaderTooLarge);
}

TEST(DecodeClient, AcceptsHeaderOfExactlyTheLimit) {
  const auto largest = padded_header(kMaxHeaderBytes);
  ASSERT_EQ(largest.size(), kMaxHeaderBytes);
  EXPECT_EQ(from_client(message(kClient, Command::Heartbeat, largest)), std::nullopt);
}

TEST(DecodeEachDirection, RejectsOversizedHeader) {
  const auto big = padded_header(kMaxHeaderBytes + 1);
  EXPECT_EQ(from_worker(message(kWorker, Command::Heartbeat, big)), DecodeError::HeaderTooLarge);
  EXPECT_EQ(to_client(message(kBroker, Command::Heartbeat, big)), DecodeError::HeaderTooLarge);
  EXPECT_EQ(to_worker(message(kBroker, Command::Heartbeat, big)), DecodeError::HeaderTooLarge);
}

TEST(DecodeClient, ChecksHeaderSizeBeforeParsingIt) {
  EXPECT_EQ(
      from_client(message(kClient, Command::Heartbeat, std::string(kMaxHeaderBytes + 1, '\xc1'))),
      DecodeError::HeaderTooLarge);
}

// ---- §5.4: the header is exactly one msgpack map ----

TEST(DecodeClient, RejectsEmptyHeader) {
  EXPECT_EQ(from_client(message(kClient, Command::Heartbeat, "")), DecodeError::MalformedHeader);
}

TEST(DecodeClient, RejectsTruncatedHeader) {
  auto submit = header(test::submit_fields());
  submit.pop_back();
  EXPECT_EQ(from_client(message(kClient, Command::Submit, submit, 2)),
            DecodeError::MalformedHeader);
  EXPECT_EQ(from_client(message(kClient, Command::Submit, submit.substr(0, 5), 2)),
            DecodeError::MalformedHeader);
}

TEST(DecodeClient, RejectsTrailingBytesAfterHeader) {
  const auto cancel = header(test::cancel_job_fields());
  EXPECT_EQ(from_client(message(kClient, Command::Cancel, cancel + '\0')),
            DecodeError::MalformedHeader);
  EXPECT_EQ(from_client(message(kClient, Command::Cancel, cancel + cancel)),
            DecodeError::MalformedHeader);
}

TEST(DecodeClient, RejectsHeaderThatIsNotAMap) {
  EXPECT_EQ(from_client(message(kClient, Command::Heartbeat, test::pack(list({})))),
            DecodeError::MalformedHeader);
  EXPECT_EQ(from_client(message(kClient, Command::Heartbeat, test::pack(num(1)))),
            DecodeError::MalformedHeader);
  EXPECT_EQ(from_client(message(kClient, Command::Heartbeat, test::pack(nil()))),
            DecodeError::MalformedHeader);
  EXPECT_EQ(from_client(message(kClient, Command::Heartbeat, test::pack(str("job")))),
            DecodeError::MalformedHeader);
}

TEST(DecodeClient, RejectsInvalidMsgpack) {
  // 0xc1 is the one byte msgpack never uses.
  EXPECT_EQ(from_client(message(kClient, Command::Heartbeat, "\xc1")),
            DecodeError::MalformedHeader);
  EXPECT_EQ(from_client(message(kClient, Command::Cancel, "\x81\xa3job\xc1")),
            DecodeError::MalformedHeader);
}

TEST(DecodeClient, RejectsDuplicateKey) {
  auto fields = test::submit_fields();
  fields.push_back(test::field("job", num(8)));
  EXPECT_EQ(client_sends(Command::Submit, fields, 2), DecodeError::MalformedHeader);
}

TEST(DecodeClient, RejectsDuplicateKeyEvenWhenOneIsNil) {
  EXPECT_EQ(client_sends(Command::Cancel, {test::field("job", num(7)), test::field("job", nil())}),
            DecodeError::MalformedHeader);
}

TEST(DecodeClient, ChecksDuplicateKeysBeforeFields) {
  // "function" is bad and comes first, but the duplicate "cores" makes the header malformed.
  auto fields = with(test::submit_fields(), "function", test::bin("square"));
  fields.push_back(test::field("cores", num(2)));
  EXPECT_EQ(client_sends(Command::Submit, fields, 2), DecodeError::MalformedHeader);
}

TEST(DecodeClient, RejectsKeyThatIsNotAStr) {
  const auto int_key = header({test::Field{num(1), num(2), ""}});
  EXPECT_EQ(from_client(message(kClient, Command::Heartbeat, int_key)),
            DecodeError::MalformedHeader);
  auto bin_key = test::cancel_job_fields();
  bin_key[0].key = test::bin("job");
  EXPECT_EQ(client_sends(Command::Cancel, bin_key), DecodeError::MalformedHeader);
}

TEST(DecodeClient, IgnoresUnknownKeys) {
  auto fields = test::submit_fields();
  fields.push_back(test::field("priority", num(3)));
  fields.push_back(test::field("labels", list({str("a"), list({num(1)})})));
  fields.push_back(test::field("zzz", test::map({test::field("x", nil())})));
  const auto submit = client_decodes<Submit>(Command::Submit, fields, 2);
  EXPECT_EQ(submit, client_decodes<Submit>(Command::Submit, test::submit_fields(), 2));
}

TEST(DecodeClient, IgnoresRepeatedUnknownKeys) {
  auto fields = test::cancel_job_fields();
  fields.push_back(test::field("extra", num(1)));
  fields.push_back(test::field("extra", num(2)));
  EXPECT_EQ(client_sends(Command::Cancel, fields), std::nullopt);
}

TEST(DecodeClient, TreatsNilAsAbsent) {
  const auto submit = client_decodes<Submit>(
      Command::Submit,
      with(with(with(test::submit_fields(), "max_retries", nil()), "cores", nil()), "common",
           nil()),
      2);
  EXPECT_EQ(submit.max_retries, std::nullopt);
  EXPECT_EQ(submit.cores, 1U);
  EXPECT_FALSE(submit.common);
  EXPECT_EQ(client_sends(Command::Cancel, {test::field("job", nil())}), DecodeError::MissingField);
}

// Hostile msgpack: containers and strings whose header claims far more than the frame holds
// are refused before msgpack allocates for them (the ASan build fails on a huge allocation).

TEST(DecodeClient, RejectsArrayClaimingFourBillionElements) {
  const std::string hostile("\x81\xa3job\xdd\xff\xff\xff\xff", 10);
  EXPECT_EQ(from_client(message(kClient, Command::Cancel, hostile)), DecodeError::MalformedHeader);
}

TEST(DecodeClient, RejectsMapClaimingFourBillionEntries) {
  const std::string hostile("\xdf\xff\xff\xff\xff", 5);
  EXPECT_EQ(from_client(message(kClient, Command::Heartbeat, hostile)),
            DecodeError::MalformedHeader);
  const std::string nested("\x81\xa1x\xdf\xff\xff\xff\xff", 8);
  EXPECT_EQ(from_client(message(kClient, Command::Heartbeat, nested)),
            DecodeError::MalformedHeader);
}

TEST(DecodeClient, RejectsStrAndBinClaimingFourGigabytes) {
  const std::string str32(
      "\x81\xa8"
      "function\xdb\xff\xff\xff\xff",
      15);
  EXPECT_EQ(from_client(message(kClient, Command::Submit, str32)), DecodeError::MalformedHeader);
  const std::string bin32("\x81\xa1x\xc6\xff\xff\xff\xff", 8);
  EXPECT_EQ(from_client(message(kClient, Command::Heartbeat, bin32)), DecodeError::MalformedHeader);
  const std::string ext32("\x81\xa1x\xc9\xff\xff\xff\xff\x01", 9);
  EXPECT_EQ(from_client(message(kClient, Command::Heartbeat, ext32)), DecodeError::MalformedHeader);
}

TEST(DecodeClient, RejectsContainerClaimingMoreEntriesThanItsFrameHolds) {
  // An array16 of 65535 entries in a 9-byte frame: refused without allocating 65535 objects.
  const std::string array16("\x81\xa3job\xdc\xff\xff\x01\x02", 9);
  EXPECT_EQ(from_client(message(kClient, Command::Cancel, array16)), DecodeError::MalformedHeader);
  const std::string map16("\x81\xa1x\xde\xff\xff\xa1y\x01", 9);
  EXPECT_EQ(from_client(message(kClient, Command::Heartbeat, map16)), DecodeError::MalformedHeader);
}

TEST(DecodeClient, RejectsManyNestedHugeArrays) {
  // Each array32 header claims 65536 entries: none may be allocated for.
  std::string hostile("\x81\xa1x", 3);
  for (int i = 0; i < 1000; ++i) hostile += std::string("\xdd\x00\x01\x00\x00", 5);
  EXPECT_EQ(from_client(message(kClient, Command::Heartbeat, hostile)),
            DecodeError::MalformedHeader);
}

TEST(DecodeClient, RejectsHeaderNestedDeeperThanFourLevels) {
  const auto deep = test::field("x", list({list({list({list({num(1)})})})}));
  EXPECT_EQ(client_sends(Command::Heartbeat, {deep}), DecodeError::MalformedHeader);
  const auto deepest_allowed = test::field("x", list({list({list({num(1)})})}));
  EXPECT_EQ(client_sends(Command::Heartbeat, {deepest_allowed}), std::nullopt);
}

// ---- Field types (§6): non-negative ints in range, msgpack bool, msgpack str ----

TEST(DecodeClient, RejectsNegativeInteger) {
  EXPECT_EQ(client_sends(Command::Cancel, {test::field("job", neg(-1))}), DecodeError::BadField);
  EXPECT_EQ(client_sends(Command::Submit, with(test::submit_fields(), "timeout_ms", neg(-5)), 2),
            DecodeError::BadField);
}

TEST(DecodeClient, AcceptsNonNegativeIntegerInSignedFormat) {
  // int8 5 is a non-negative integer too; msgpack lets encoders pick either form.
  const std::string int8_job("\x81\xa3job\xd0\x05", 7);
  auto m = message(kClient, Command::Cancel, int8_job);
  EXPECT_EQ(command_of<CancelJob>(decode_client(m.frames())), CancelJob{.job = 5});
}

TEST(DecodeClient, RejectsIntegerTooLargeForField) {
  EXPECT_EQ(client_sends(Command::Submit,
                         with(test::submit_fields(), "count", num(std::uint64_t{kU32Max} + 1)), 2),
            DecodeError::BadField);
  EXPECT_EQ(client_sends(Command::Submit,
                         with(test::submit_fields(), "cores", num(std::uint64_t{kU32Max} + 1)), 2),
            DecodeError::BadField);
}

TEST(DecodeClient, RejectsFloatForInteger) {
  EXPECT_EQ(client_sends(Command::Cancel, {test::field("job", test::real(7.5))}),
            DecodeError::BadField);
  // float64 7.0 (msgpack-cxx's packer would write an integral double as an int).
  const std::string float_job("\x81\xa3job\xcb\x40\x1c\x00\x00\x00\x00\x00\x00", 14);
  EXPECT_EQ(from_client(message(kClient, Command::Cancel, float_job)), DecodeError::BadField);
}

TEST(DecodeClient, RejectsStrForInteger) {
  EXPECT_EQ(client_sends(Command::Cancel, {test::field("job", str("7"))}), DecodeError::BadField);
}

TEST(DecodeClient, RejectsBoolForInteger) {
  EXPECT_EQ(client_sends(Command::Cancel, {test::field("job", flag(true))}), DecodeError::BadField);
}

TEST(DecodeClient, RejectsIntegerForBool) {
  EXPECT_EQ(client_sends(Command::Submit, with(test::submit_fields(), "common", num(1)), 2),
            DecodeError::BadField);
}

TEST(DecodeClient, RejectsBinInsteadOfStr) {
  EXPECT_EQ(client_sends(Command::Submit,
                         with(test::submit_fields(), "function", test::bin("square")), 2),
            DecodeError::BadField);
}

TEST(DecodeClient, RejectsIntegerInsteadOfStr) {
  EXPECT_EQ(client_sends(Command::Submit, with(test::submit_fields(), "function", num(1)), 2),
            DecodeError::BadField);
}

// ---- §6.1.1 SUBMIT ----

TEST(DecodeClient, RejectsSubmitWithoutEachRequiredField) {
  for (const auto* name : {"job", "function", "total", "first", "count"}) {
    EXPECT_EQ(client_sends(Command::Submit, without(test::submit_fields(), name), 2),
              DecodeError::MissingField)
        << name;
  }
}

TEST(DecodeClient, SubmitOptionalFieldsTakeTheirDefaults) {
  Fields required;
  for (auto& f : test::submit_fields()) {
    if (f.name == "job" || f.name == "function" || f.name == "total" || f.name == "first" ||
        f.name == "count") {
      required.push_back(f);
    }
  }
  const auto submit = client_decodes<Submit>(Command::Submit, required, 2);
  EXPECT_FALSE(submit.common);
  EXPECT_EQ(submit.max_retries, std::nullopt);
  EXPECT_FALSE(submit.retry_on_error);
  EXPECT_EQ(submit.timeout_ms, 0U);
  EXPECT_EQ(submit.cores, 1U);
}

TEST(DecodeClient, RejectsEmptyFunctionName) {
  EXPECT_EQ(client_sends(Command::Submit, with(test::submit_fields(), "function", str("")), 2),
            DecodeError::BadField);
}

TEST(DecodeClient, RejectsFunctionNameLongerThanTheLimit) {
  EXPECT_EQ(
      client_sends(
          Command::Submit,
          with(test::submit_fields(), "function", str(std::string(kMaxFunctionName + 1, 'f'))), 2),
      DecodeError::BadField);
  EXPECT_EQ(
      client_sends(Command::Submit,
                   with(test::submit_fields(), "function", str(std::string(kMaxFunctionName, 'f'))),
                   2),
      std::nullopt);
}

TEST(DecodeClient, RejectsZeroTotal) {
  EXPECT_EQ(client_sends(Command::Submit,
                         with(with(test::submit_fields(), "total", num(0)), "count", num(0))),
            DecodeError::BadField);
}

TEST(DecodeClient, RejectsZeroCount) {
  EXPECT_EQ(client_sends(Command::Submit, with(test::submit_fields(), "count", num(0))),
            DecodeError::BadField);
}

TEST(DecodeClient, RejectsZeroCores) {
  EXPECT_EQ(client_sends(Command::Submit, with(test::submit_fields(), "cores", num(0)), 2),
            DecodeError::BadField);
}

TEST(DecodeClient, RejectsTasksBeyondTheJob) {
  EXPECT_EQ(client_sends(Command::Submit, with(test::submit_fields(), "first", num(9)), 2),
            DecodeError::BadField);  // tasks 9 and 10 of a 10-task job
  EXPECT_EQ(client_sends(Command::Submit, with(test::submit_fields(), "first", num(8)), 2),
            std::nullopt);  // tasks 8 and 9: the last two
  EXPECT_EQ(client_sends(Command::Submit,
                         with(with(test::submit_fields(), "total", num(1)), "count", num(2)), 2),
            DecodeError::BadField);
}

TEST(DecodeClient, RejectsTaskRangeThatOverflows) {
  auto fields = with(with(test::submit_fields(), "total", num(kU64Max)), "first", num(kU64Max));
  EXPECT_EQ(client_sends(Command::Submit, fields, 2), DecodeError::BadField);
}

TEST(DecodeClient, RejectsCommonFrameAfterTheFirstSubmit) {
  auto fields = with(with(test::submit_fields(), "common", flag(true)), "first", num(2));
  EXPECT_EQ(client_sends(Command::Submit, fields, 3), DecodeError::BadField);
}

TEST(DecodeClient, RejectsMaxRetriesOutOfRange) {
  EXPECT_EQ(
      client_sends(Command::Submit,
                   with(test::submit_fields(), "max_retries", num(std::uint64_t{kU32Max} + 1)), 2),
      DecodeError::BadField);
}

TEST(DecodeClient, RejectsPayloadCountMismatch) {
  EXPECT_EQ(client_sends(Command::Submit, test::submit_fields(), 1),
            DecodeError::PayloadCountMismatch);
  EXPECT_EQ(client_sends(Command::Submit, test::submit_fields(), 3),
            DecodeError::PayloadCountMismatch);
}

TEST(DecodeClient, CountsTheCommonFrameAsAPayloadFrame) {
  const auto fields = with(test::submit_fields(), "common", flag(true));
  EXPECT_EQ(client_sends(Command::Submit, fields, 2), DecodeError::PayloadCountMismatch);
  EXPECT_EQ(client_sends(Command::Submit, fields, 3), std::nullopt);
}

TEST(DecodeClient, ChecksFieldsBeforePayloadCount) {
  EXPECT_EQ(client_sends(Command::Submit, with(test::submit_fields(), "cores", num(0)), 7),
            DecodeError::BadField);
}

// ---- §6.1.2 CANCEL ----

TEST(DecodeClient, RejectsCancelWithoutJob) {
  EXPECT_EQ(client_sends(Command::Cancel, {}), DecodeError::MissingField);
}

TEST(DecodeClient, RejectsCancelWithPayload) {
  EXPECT_EQ(client_sends(Command::Cancel, test::cancel_job_fields(), 1),
            DecodeError::PayloadCountMismatch);
}

// ---- HEARTBEAT ----

TEST(DecodeClient, AcceptsHeartbeatWithAnyKeys) {
  EXPECT_EQ(client_sends(Command::Heartbeat, {test::field("job", str("not a number"))}),
            std::nullopt);
}

TEST(DecodeClient, RejectsHeartbeatWithPayload) {
  EXPECT_EQ(client_sends(Command::Heartbeat, {}, 1), DecodeError::PayloadCountMismatch);
}

TEST(DecodeWorker, RejectsHeartbeatWithPayload) {
  EXPECT_EQ(worker_sends(Command::Heartbeat, {}, 1), DecodeError::PayloadCountMismatch);
}

TEST(DecodeForWorker, RejectsHeartbeatWithPayload) {
  EXPECT_EQ(worker_receives(Command::Heartbeat, {}, 1), DecodeError::PayloadCountMismatch);
}

// ---- BYE ----

TEST(DecodeClient, ByeFieldsAreOptional) {
  EXPECT_EQ(client_decodes<Bye>(Command::Bye, {}), Bye{});
}

TEST(DecodeClient, RejectsByeReasonLongerThanTheLimit) {
  EXPECT_EQ(
      client_sends(Command::Bye, {test::field("reason", str(std::string(kMaxText + 1, 'r')))}),
      DecodeError::BadField);
  EXPECT_EQ(client_sends(Command::Bye, {test::field("reason", str(std::string(kMaxText, 'r')))}),
            std::nullopt);
}

TEST(DecodeClient, RejectsByeReconnectThatIsNotABool) {
  EXPECT_EQ(client_sends(Command::Bye, with(test::bye_fields(), "reconnect", num(1))),
            DecodeError::BadField);
}

TEST(DecodeForClient, RejectsByeWithPayload) {
  EXPECT_EQ(client_receives(Command::Bye, test::bye_fields(), 1),
            DecodeError::PayloadCountMismatch);
}

// ---- §6.2.1 ACCEPT ----

TEST(DecodeForClient, RejectsAcceptWithoutEachRequiredField) {
  for (const auto* name : {"job", "received", "window"}) {
    EXPECT_EQ(client_receives(Command::Accept, without(test::accept_fields(), name)),
              DecodeError::MissingField)
        << name;
  }
}

TEST(DecodeForClient, AcceptHeartbeatIntervalDefaultsToOneSecond) {
  const auto accept =
      for_client_decodes<Accept>(Command::Accept, without(test::accept_fields(), "heartbeat_ms"));
  EXPECT_EQ(accept.heartbeat_ms, 1000U);
}

TEST(DecodeForClient, RejectsZeroHeartbeatInterval) {
  EXPECT_EQ(client_receives(Command::Accept, with(test::accept_fields(), "heartbeat_ms", num(0))),
            DecodeError::BadField);
}

TEST(DecodeForClient, RejectsAcceptWithPayload) {
  EXPECT_EQ(client_receives(Command::Accept, test::accept_fields(), 1),
            DecodeError::PayloadCountMismatch);
}

// ---- §6.2.2 RESULTS (to the client) ----

TEST(DecodeForClient, RejectsResultsWithoutEachRequiredField) {
  EXPECT_EQ(client_receives(Command::Results, without(test::job_results_fields(), "job"), 2),
            DecodeError::MissingField);
  EXPECT_EQ(client_receives(Command::Results, without(test::job_results_fields(), "results"), 0),
            DecodeError::MissingField);
}

TEST(DecodeForClient, RejectsEmptyResults) {
  EXPECT_EQ(
      client_receives(Command::Results, with(test::job_results_fields(), "results", list({}))),
      DecodeError::BadField);
}

TEST(DecodeForClient, RejectsResultsThatAreNotAnArray) {
  EXPECT_EQ(
      client_receives(Command::Results, with(test::job_results_fields(), "results", num(1)), 1),
      DecodeError::BadField);
}

TEST(DecodeForClient, RejectsResultEntryOfWrongArity) {
  for (auto entry : {list({num(0), num(0)}), list({num(0), num(0), num(1), num(0)}), num(0)}) {
    EXPECT_EQ(client_receives(Command::Results,
                              with(test::job_results_fields(), "results", list({entry})), 1),
              DecodeError::BadField);
  }
}

TEST(DecodeForClient, RejectsUnknownTaskStatus) {
  EXPECT_EQ(client_receives(Command::Results,
                            with(test::job_results_fields(), "results",
                                 list({list({num(0), num(kMaxTaskStatus + 1), num(1)})})),
                            1),
            DecodeError::BadField);
  EXPECT_EQ(
      client_receives(
          Command::Results,
          with(test::job_results_fields(), "results", list({list({num(0), num(256), num(1)})})), 1),
      DecodeError::BadField);
}

TEST(DecodeForClient, RejectsZeroAttempts) {
  EXPECT_EQ(
      client_receives(
          Command::Results,
          with(test::job_results_fields(), "results", list({list({num(0), num(0), num(0)})})), 1),
      DecodeError::BadField);
}

TEST(DecodeForClient, RejectsAttemptsOutOfRange) {
  EXPECT_EQ(client_receives(Command::Results,
                            with(test::job_results_fields(), "results",
                                 list({list({num(0), num(0), num(std::uint64_t{kU32Max} + 1)})})),
                            1),
            DecodeError::BadField);
}

TEST(DecodeForClient, RejectsNegativeResultIndex) {
  EXPECT_EQ(
      client_receives(
          Command::Results,
          with(test::job_results_fields(), "results", list({list({neg(-1), num(0), num(1)})})), 1),
      DecodeError::BadField);
}

TEST(DecodeForClient, RejectsResultsPayloadCountMismatch) {
  EXPECT_EQ(client_receives(Command::Results, test::job_results_fields(), 1),
            DecodeError::PayloadCountMismatch);
  EXPECT_EQ(client_receives(Command::Results, test::job_results_fields(), 3),
            DecodeError::PayloadCountMismatch);
}

// ---- §6.2.3 DONE ----

TEST(DecodeForClient, RejectsDoneWithoutEachRequiredField) {
  for (const auto* name : {"job", "ok", "failed"}) {
    EXPECT_EQ(client_receives(Command::Done, without(test::done_fields(), name)),
              DecodeError::MissingField)
        << name;
  }
}

TEST(DecodeForClient, DoneCancelledDefaultsToFalse) {
  EXPECT_FALSE(
      for_client_decodes<Done>(Command::Done, without(test::done_fields(), "cancelled")).cancelled);
}

TEST(DecodeForClient, RejectsDoneCancelledThatIsNotABool) {
  EXPECT_EQ(client_receives(Command::Done, with(test::done_fields(), "cancelled", str("yes"))),
            DecodeError::BadField);
}

TEST(DecodeForClient, RejectsDoneWithPayload) {
  EXPECT_EQ(client_receives(Command::Done, test::done_fields(), 1),
            DecodeError::PayloadCountMismatch);
}

// ---- §6.2.4 ERROR ----

TEST(DecodeForClient, RejectsErrorWithoutEachRequiredField) {
  for (const auto* name : {"code", "message"}) {
    EXPECT_EQ(client_receives(Command::Error, without(test::error_fields(), name)),
              DecodeError::MissingField)
        << name;
  }
}

TEST(DecodeForClient, RejectsErrorCodeZero) {
  EXPECT_EQ(client_receives(Command::Error, with(test::error_fields(), "code", num(0))),
            DecodeError::BadField);
}

TEST(DecodeForClient, RejectsErrorCodeBeyondSixteenBits) {
  EXPECT_EQ(client_receives(Command::Error, with(test::error_fields(), "code", num(65536))),
            DecodeError::BadField);
}

TEST(DecodeForClient, KeepsUnknownErrorCodes) {
  const auto error =
      for_client_decodes<Error>(Command::Error, with(test::error_fields(), "code", num(65535)));
  EXPECT_EQ(static_cast<std::uint16_t>(error.code), 65535);
}

TEST(DecodeForClient, RejectsErrorMessageLongerThanTheLimit) {
  EXPECT_EQ(client_receives(Command::Error, with(test::error_fields(), "message",
                                                 str(std::string(kMaxText + 1, 'm')))),
            DecodeError::BadField);
}

TEST(DecodeForClient, ErrorJobIsOptional) {
  EXPECT_EQ(for_client_decodes<Error>(Command::Error, without(test::error_fields(), "job")).job,
            std::nullopt);
}

TEST(DecodeForClient, RejectsErrorWithPayload) {
  EXPECT_EQ(client_receives(Command::Error, test::error_fields(), 1),
            DecodeError::PayloadCountMismatch);
}

// ---- §6.3.1 READY ----

TEST(DecodeWorker, RejectsReadyWithoutEachRequiredField) {
  for (const auto* name : {"functions", "slots"}) {
    EXPECT_EQ(worker_sends(Command::Ready, without(test::ready_fields(), name)),
              DecodeError::MissingField)
        << name;
  }
}

TEST(DecodeWorker, RejectsZeroSlots) {
  EXPECT_EQ(worker_sends(Command::Ready, with(test::ready_fields(), "slots", num(0))),
            DecodeError::BadField);
}

TEST(DecodeWorker, ReadyOptionalFieldsTakeTheirDefaults) {
  const auto ready = worker_decodes<Ready>(
      Command::Ready, {test::field("functions", list({})), test::field("slots", num(2))});
  Ready expected;
  expected.slots = 2;
  EXPECT_EQ(ready, expected);
}

TEST(DecodeWorker, RejectsFunctionsThatAreNotAnArray) {
  EXPECT_EQ(worker_sends(Command::Ready, with(test::ready_fields(), "functions", str("square"))),
            DecodeError::BadField);
}

TEST(DecodeWorker, RejectsBadFunctionName) {
  for (auto name :
       {str(""), str(std::string(kMaxFunctionName + 1, 'f')), test::bin("square"), num(1), nil()}) {
    EXPECT_EQ(worker_sends(Command::Ready,
                           with(test::ready_fields(), "functions", list({str("ok"), name}))),
              DecodeError::BadField);
  }
}

TEST(DecodeWorker, RejectsMoreFunctionsThanTheLimit) {
  std::vector<test::Value> names(kMaxFunctions + 1, str("f"));
  EXPECT_EQ(worker_sends(Command::Ready, with(test::ready_fields(), "functions", list(names))),
            DecodeError::BadField);
  names.pop_back();
  EXPECT_EQ(worker_sends(Command::Ready, with(test::ready_fields(), "functions", list(names))),
            std::nullopt);
}

TEST(DecodeWorker, ReadyWithoutLaunchIsAcceptedFromOlderWorkers) {
  const auto ready = worker_decodes<Ready>(Command::Ready, without(test::ready_fields(), "launch"));
  EXPECT_EQ(ready.launch, "");
  EXPECT_EQ(worker_decodes<Ready>(Command::Ready, test::ready_fields()).launch, "L1");
}

TEST(DecodeWorker, RejectsLaunchThatIsNotAStr) {
  for (auto launch : {num(1), test::bin("L1"), list({})}) {
    EXPECT_EQ(worker_sends(Command::Ready, with(test::ready_fields(), "launch", launch)),
              DecodeError::BadField);
  }
}

TEST(DecodeWorker, RejectsHostOrAgentLongerThanTheLimit) {
  for (const auto* name : {"host", "agent", "launch"}) {
    EXPECT_EQ(worker_sends(Command::Ready,
                           with(test::ready_fields(), name, str(std::string(kMaxText + 1, 'h')))),
              DecodeError::BadField)
        << name;
  }
}

TEST(DecodeWorker, RejectsPidOutOfRange) {
  EXPECT_EQ(worker_sends(Command::Ready,
                         with(test::ready_fields(), "pid", num(std::uint64_t{kU32Max} + 1))),
            DecodeError::BadField);
}

TEST(DecodeWorker, RejectsReadyWithPayload) {
  EXPECT_EQ(worker_sends(Command::Ready, test::ready_fields(), 1),
            DecodeError::PayloadCountMismatch);
}

// ---- §6.3.2 RESULTS (from a worker) ----

TEST(DecodeWorker, RejectsResultsWithoutResults) {
  EXPECT_EQ(worker_sends(Command::Results, {}), DecodeError::MissingField);
}

TEST(DecodeWorker, RejectsEmptyResults) {
  EXPECT_EQ(worker_sends(Command::Results, {test::field("results", list({}))}),
            DecodeError::BadField);
}

TEST(DecodeWorker, RejectsResultEntryOfWrongArity) {
  EXPECT_EQ(
      worker_sends(Command::Results, {test::field("results", list({list({num(7), num(0)})}))}, 1),
      DecodeError::BadField);
}

TEST(DecodeWorker, RejectsUnknownTaskStatus) {
  EXPECT_EQ(
      worker_sends(
          Command::Results,
          {test::field("results", list({list({num(7), num(0), num(kMaxTaskStatus + 1)})}))}, 1),
      DecodeError::BadField);
}

TEST(DecodeWorker, RejectsResultsPayloadCountMismatch) {
  EXPECT_EQ(worker_sends(Command::Results, test::task_results_fields(), 1),
            DecodeError::PayloadCountMismatch);
  EXPECT_EQ(worker_sends(Command::Results, test::task_results_fields(), 2), std::nullopt);
}

// ---- §6.4.1 WELCOME ----

TEST(DecodeForWorker, RejectsWelcomeWithoutEachField) {
  for (const auto* name : {"worker", "heartbeat_ms", "liveness"}) {
    EXPECT_EQ(worker_receives(Command::Welcome, without(test::welcome_fields(), name)),
              DecodeError::MissingField)
        << name;
  }
}

TEST(DecodeForWorker, RejectsZeroHeartbeatInterval) {
  EXPECT_EQ(worker_receives(Command::Welcome, with(test::welcome_fields(), "heartbeat_ms", num(0))),
            DecodeError::BadField);
}

TEST(DecodeForWorker, RejectsZeroLiveness) {
  EXPECT_EQ(worker_receives(Command::Welcome, with(test::welcome_fields(), "liveness", num(0))),
            DecodeError::BadField);
}

TEST(DecodeForWorker, RejectsWorkerIdOutOfRange) {
  EXPECT_EQ(worker_receives(Command::Welcome, with(test::welcome_fields(), "worker",
                                                   num(std::uint64_t{kU32Max} + 1))),
            DecodeError::BadField);
}

TEST(DecodeForWorker, RejectsWelcomeWithPayload) {
  EXPECT_EQ(worker_receives(Command::Welcome, test::welcome_fields(), 1),
            DecodeError::PayloadCountMismatch);
}

// ---- §6.4.2 TASKS ----

TEST(DecodeForWorker, RejectsTasksWithoutEachRequiredField) {
  for (const auto* name : {"job", "function", "tasks"}) {
    EXPECT_EQ(worker_receives(Command::Tasks, without(test::tasks_fields(), name), 2),
              DecodeError::MissingField)
        << name;
  }
}

TEST(DecodeForWorker, TasksOptionalFieldsTakeTheirDefaults) {
  Fields required;
  for (auto& f : test::tasks_fields()) {
    if (f.name == "job" || f.name == "function" || f.name == "tasks") required.push_back(f);
  }
  const auto tasks = for_worker_decodes<Tasks>(Command::Tasks, required, 2);
  EXPECT_FALSE(tasks.common);
  EXPECT_EQ(tasks.timeout_ms, 0U);
  EXPECT_EQ(tasks.cores, 1U);
}

TEST(DecodeForWorker, RejectsEmptyTaskList) {
  EXPECT_EQ(worker_receives(Command::Tasks, with(test::tasks_fields(), "tasks", list({}))),
            DecodeError::BadField);
}

TEST(DecodeForWorker, RejectsTaskAssignmentOfWrongArity) {
  EXPECT_EQ(worker_receives(Command::Tasks,
                            with(test::tasks_fields(), "tasks", list({list({num(0)})})), 1),
            DecodeError::BadField);
}

TEST(DecodeForWorker, RejectsZeroAttempt) {
  EXPECT_EQ(worker_receives(Command::Tasks,
                            with(test::tasks_fields(), "tasks", list({list({num(0), num(0)})})), 1),
            DecodeError::BadField);
}

TEST(DecodeForWorker, RejectsTasksWithZeroCores) {
  EXPECT_EQ(worker_receives(Command::Tasks, with(test::tasks_fields(), "cores", num(0)), 2),
            DecodeError::BadField);
}

TEST(DecodeForWorker, RejectsTasksWithBadFunctionName) {
  EXPECT_EQ(worker_receives(Command::Tasks, with(test::tasks_fields(), "function", str("")), 2),
            DecodeError::BadField);
  EXPECT_EQ(
      worker_receives(
          Command::Tasks,
          with(test::tasks_fields(), "function", str(std::string(kMaxFunctionName + 1, 'f'))), 2),
      DecodeError::BadField);
}

TEST(DecodeForWorker, RejectsTasksPayloadCountMismatch) {
  EXPECT_EQ(worker_receives(Command::Tasks, test::tasks_fields(), 1),
            DecodeError::PayloadCountMismatch);
  const auto common = with(test::tasks_fields(), "common", flag(true));
  EXPECT_EQ(worker_receives(Command::Tasks, common, 2), DecodeError::PayloadCountMismatch);
  EXPECT_EQ(worker_receives(Command::Tasks, common, 3), std::nullopt);
}

// ---- §6.4.3 CANCEL (to a worker) ----

TEST(DecodeForWorker, RejectsCancelWithoutJob) {
  EXPECT_EQ(worker_receives(Command::Cancel, without(test::cancel_tasks_fields(), "job")),
            DecodeError::MissingField);
}

TEST(DecodeForWorker, CancelWithoutTasksCancelsTheWholeJob) {
  EXPECT_EQ(for_worker_decodes<CancelTasks>(Command::Cancel,
                                            without(test::cancel_tasks_fields(), "tasks")),
            (CancelTasks{.job = 7, .tasks = {}}));
}

TEST(DecodeForWorker, RejectsCancelTasksThatAreNotIndices) {
  EXPECT_EQ(worker_receives(Command::Cancel, with(test::cancel_tasks_fields(), "tasks", num(3))),
            DecodeError::BadField);
  EXPECT_EQ(worker_receives(Command::Cancel,
                            with(test::cancel_tasks_fields(), "tasks", list({num(1), neg(-1)}))),
            DecodeError::BadField);
  EXPECT_EQ(worker_receives(Command::Cancel,
                            with(test::cancel_tasks_fields(), "tasks", list({str("1")}))),
            DecodeError::BadField);
}

TEST(DecodeForWorker, RejectsCancelWithPayload) {
  EXPECT_EQ(worker_receives(Command::Cancel, test::cancel_tasks_fields(), 1),
            DecodeError::PayloadCountMismatch);
}

// ---- §6.1.5 STATUS (client to broker) ----

TEST(DecodeClient, StatusRequestMayBeEmpty) {
  EXPECT_EQ(client_decodes<StatusRequest>(Command::Status, {}), StatusRequest{});
  EXPECT_EQ(client_decodes<StatusRequest>(Command::Status, {test::field("launch", nil())}),
            StatusRequest{});
  EXPECT_EQ(client_decodes<StatusRequest>(Command::Status, test::status_request_fields()),
            StatusRequest{.launch = "L1"});
}

TEST(DecodeClient, StatusRequestIgnoresUnknownKeys) {
  EXPECT_EQ(client_sends(Command::Status, {test::field("verbose", flag(true))}), std::nullopt);
}

TEST(DecodeClient, RejectsStatusLaunchThatIsNotAStr) {
  for (auto launch : {num(1), test::bin("L1"), flag(true)}) {
    EXPECT_EQ(client_sends(Command::Status, {test::field("launch", launch)}),
              DecodeError::BadField);
  }
  EXPECT_EQ(
      client_sends(Command::Status, {test::field("launch", str(std::string(kMaxText + 1, 'l')))}),
      DecodeError::BadField);
}

TEST(DecodeClient, RejectsMalformedStatusHeader) {
  EXPECT_EQ(from_client(Frames{std::string(kClient), "\x0c", "\xc1"}),
            DecodeError::MalformedHeader);
  EXPECT_EQ(from_client(Frames{std::string(kClient), "\x0c", test::pack(list({}))}),
            DecodeError::MalformedHeader);
}

TEST(DecodeClient, RejectsStatusWithPayload) {
  EXPECT_EQ(client_sends(Command::Status, {}, 1), DecodeError::PayloadCountMismatch);
}

// ---- §6.2.7 STATUS (broker to client) ----

TEST(DecodeForClient, RejectsStatusReplyWithoutEachRequiredField) {
  for (const auto* name : {"uptime_ms", "clients", "jobs", "tasks_queued", "tasks_running",
                           "tasks_done", "tasks_failed", "workers"}) {
    EXPECT_EQ(client_receives(Command::Status, without(test::status_reply_fields(), name)),
              DecodeError::MissingField)
        << name;
  }
}

TEST(DecodeForClient, StatusReplyOptionalFieldsTakeTheirDefaults) {
  auto fields = without(without(test::status_reply_fields(), "agent"), "workers_omitted");
  const auto reply = for_client_decodes<StatusReply>(Command::Status, fields);
  EXPECT_EQ(reply.agent, "");
  EXPECT_EQ(reply.workers_omitted, 0U);
  EXPECT_EQ(reply.tasks_failed, 6U);
  ASSERT_EQ(reply.workers.size(), 1U);
  EXPECT_EQ(reply.workers[0], (WorkerInfo{.id = 3,
                                          .host = "node12",
                                          .pid = 4411,
                                          .slots = 8,
                                          .running = 2,
                                          .launch = "L1",
                                          .functions = 5}));
}

TEST(DecodeForClient, StatusReplyWorkerOptionalFieldsTakeTheirDefaults) {
  auto entry = without(without(without(test::worker_info_fields(), "host"), "pid"), "launch");
  entry = without(entry, "functions");
  const auto reply = for_client_decodes<StatusReply>(
      Command::Status, with(test::status_reply_fields(), "workers", list({test::map(entry)})));
  ASSERT_EQ(reply.workers.size(), 1U);
  EXPECT_EQ(reply.workers[0], (WorkerInfo{.id = 3, .slots = 8, .running = 2}));
}

TEST(DecodeForClient, StatusReplyIgnoresUnknownKeysInWorkerEntries) {
  const auto entry = with(test::worker_info_fields(), "memory", num(1));
  EXPECT_EQ(client_receives(Command::Status,
                            with(test::status_reply_fields(), "workers", list({test::map(entry)}))),
            std::nullopt);
}

TEST(DecodeForClient, RejectsStatusReplyWithWrongTypes) {
  EXPECT_EQ(
      client_receives(Command::Status, with(test::status_reply_fields(), "uptime_ms", neg(-1))),
      DecodeError::BadField);
  EXPECT_EQ(client_receives(Command::Status, with(test::status_reply_fields(), "agent", num(1))),
            DecodeError::BadField);
  EXPECT_EQ(client_receives(Command::Status, with(test::status_reply_fields(), "workers", num(0))),
            DecodeError::BadField);
}

TEST(DecodeForClient, RejectsStatusReplyWithBrokenWorkerEntry) {
  const auto entry_with = [](const std::string& name, test::Value value) {
    return with(test::status_reply_fields(), "workers",
                list({test::map(with(test::worker_info_fields(), name, std::move(value)))}));
  };
  const auto entry_without = [](std::string_view name) {
    return with(test::status_reply_fields(), "workers",
                list({test::map(without(test::worker_info_fields(), name))}));
  };
  // A positional array is not a worker entry: entries are maps (§6.2.7).
  EXPECT_EQ(client_receives(Command::Status, with(test::status_reply_fields(), "workers",
                                                  list({list({num(3), num(8), num(2)})}))),
            DecodeError::BadField);
  for (const auto* name : {"id", "slots", "running"}) {
    EXPECT_EQ(client_receives(Command::Status, entry_without(name)), DecodeError::BadField) << name;
  }
  EXPECT_EQ(client_receives(Command::Status, entry_with("id", num(std::uint64_t{kU32Max} + 1))),
            DecodeError::BadField);
  EXPECT_EQ(client_receives(Command::Status, entry_with("running", str("2"))),
            DecodeError::BadField);
  EXPECT_EQ(client_receives(Command::Status, entry_with("launch", num(1))), DecodeError::BadField);
  EXPECT_EQ(
      client_receives(Command::Status, entry_with("host", str(std::string(kMaxText + 1, 'h')))),
      DecodeError::BadField);
  // A key that is not a str, or a known key twice, inside an entry.
  const auto odd_key = test::map({test::Field{num(1), num(2), ""}});
  EXPECT_EQ(client_receives(Command::Status,
                            with(test::status_reply_fields(), "workers", list({odd_key}))),
            DecodeError::BadField);
  auto twice = test::worker_info_fields();
  twice.push_back(test::field("id", num(4)));
  EXPECT_EQ(client_receives(Command::Status,
                            with(test::status_reply_fields(), "workers", list({test::map(twice)}))),
            DecodeError::BadField);
}

TEST(DecodeForClient, RejectsStatusReplyWithPayload) {
  EXPECT_EQ(client_receives(Command::Status, test::status_reply_fields(), 1),
            DecodeError::PayloadCountMismatch);
}

// ---- §6.5: error payloads ----

std::optional<DecodeError> error_info_error(const std::string& frame) {
  return error_of(decode_error_info(as_frame(frame)));
}

TEST(DecodeErrorInfo, RejectsMissingMessage) {
  EXPECT_EQ(error_info_error(header({test::field("kind", str("ValueError"))})),
            DecodeError::MissingField);
}

TEST(DecodeErrorInfo, RejectsMessageThatIsNotAStr) {
  EXPECT_EQ(error_info_error(header({test::field("message", test::bin("boom"))})),
            DecodeError::BadField);
}

TEST(DecodeErrorInfo, RejectsPidOutOfRange) {
  EXPECT_EQ(error_info_error(header({test::field("message", str("boom")),
                                     test::field("pid", num(std::uint64_t{kU32Max} + 1))})),
            DecodeError::BadField);
}

TEST(DecodeErrorInfo, OptionalFieldsDefaultToEmpty) {
  const auto info = decode_error_info(
      as_frame(header({test::field("message", str("boom")), test::field("host", nil())})));
  ASSERT_TRUE(info);
  ErrorInfo expected;
  expected.message = "boom";
  EXPECT_EQ(*info, expected);
}

TEST(DecodeErrorInfo, IgnoresUnknownKeys) {
  EXPECT_EQ(
      error_info_error(header({test::field("message", str("boom")), test::field("line", num(12))})),
      std::nullopt);
}

TEST(DecodeErrorInfo, RejectsFrameThatIsNotExactlyOneMap) {
  const auto valid = header({test::field("message", str("boom"))});
  EXPECT_EQ(error_info_error(""), DecodeError::MalformedHeader);
  EXPECT_EQ(error_info_error(valid + '\0'), DecodeError::MalformedHeader);
  EXPECT_EQ(error_info_error(valid.substr(0, valid.size() - 1)), DecodeError::MalformedHeader);
  EXPECT_EQ(error_info_error(test::pack(str("boom"))), DecodeError::MalformedHeader);
  EXPECT_EQ(error_info_error(std::string("\x81\xa1x\xdd\xff\xff\xff\xff", 8)),
            DecodeError::MalformedHeader);
}

TEST(DecodeErrorInfo, RejectsDuplicateKey) {
  EXPECT_EQ(error_info_error(
                header({test::field("message", str("a")), test::field("message", str("b"))})),
            DecodeError::MalformedHeader);
}

}  // namespace
}  // namespace acme::protocol
