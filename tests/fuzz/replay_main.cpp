// Runs LLVMFuzzerTestOneInput over saved inputs, so that the corpus is a regression test in
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

bool run_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "acme_decode_replay: cannot read %s\n", path.c_str());
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
      std::fprintf(stderr, "acme_decode_replay: %s: %s\n", path.c_str(), error.message().c_str());
      failed = true;
    }
  }
  std::printf("acme_decode_replay: ran %zu inputs\n", ran);
  return ran > 0 && !failed ? 0 : 1;
}
