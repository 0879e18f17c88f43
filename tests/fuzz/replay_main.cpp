// Runs LLVMFuzzerTestOneInput over saved inputs, so that a corpus is a regression test in
// every build, gcc included (fmt's fuzzing/main.cc). Arguments: files or directories (whose
// regular files are read, recursively). Fails if no input ran.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace {

// The replay program's name for its messages, set by the build (acme_decode_replay, ...).
#ifndef ACME_REPLAY_NAME
#define ACME_REPLAY_NAME "acme_replay"
#endif
constexpr const char* kName = ACME_REPLAY_NAME;

bool run_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "%s: cannot read %s\n", kName, path.c_str());
    return false;
  }
  const std::vector<char> bytes((std::istreambuf_iterator<char>(in)),
                                std::istreambuf_iterator<char>());
  std::vector<std::uint8_t> input(bytes.begin(), bytes.end());
  LLVMFuzzerTestOneInput(input.data(), input.size());
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  std::size_t ran = 0;
  bool failed = false;
  for (int i = 1; i < argc; ++i) {
    const std::filesystem::path path(argv[i]);
    std::error_code error;
    if (std::filesystem::is_directory(path, error)) {
      for (const auto& entry : std::filesystem::recursive_directory_iterator(path, error)) {
        if (!entry.is_regular_file()) continue;
        if (run_file(entry.path())) {
          ++ran;
        } else {
          failed = true;
        }
      }
    } else if (run_file(path)) {
      ++ran;
    } else {
      failed = true;
    }
    if (error) {
      std::fprintf(stderr, "%s: %s: %s\n", kName, path.c_str(), error.message().c_str());
      failed = true;
    }
  }
  std::printf("%s: ran %zu inputs\n", kName, ran);
  return ran > 0 && !failed ? 0 : 1;
}
