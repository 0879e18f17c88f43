// acme_mpi_sim: a small MPI program as an acme task runs it (examples/mpi/run.sh). An ensemble
// of random walkers, split across the ranks; rank 0 gathers the final positions, writes them
// to OUTDIR/result_SEED.bin (little-endian doubles, a few MB: too big to return through the
// broker comfortably, so the task returns the path) and prints
//
//   result <path> <fnv1a-64 checksum> <bytes> ranks=<n>
//
// Each walker draws from its own stream (seed, walker index), so the file does not depend on
// the number of ranks: `acme_mpi_sim --verify SEED FILE` recomputes it serially, without MPI,
// and checks the file byte for byte.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <mpi.h>

namespace {

constexpr std::uint64_t kWalkers = std::uint64_t{1} << 19;  // 4 MiB of doubles
constexpr int kSteps = 100;

/// splitmix64: a small, good generator with independent streams per (seed, walker).
std::uint64_t next(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30U)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27U)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31U);
}

/// Walker `index`'s position after kSteps steps, each uniform in [-0.5, 0.5).
double walk(std::uint64_t seed, std::uint64_t index) {
  std::uint64_t state = seed * 0x100000001b3ULL ^ index;
  double x = 0;
  for (int step = 0; step < kSteps; ++step) {
    x += static_cast<double>(next(state) >> 11U) * 0x1.0p-53 - 0.5;
  }
  return x;
}

std::uint64_t fnv1a(const std::vector<double>& values) {
  std::uint64_t hash = 0xcbf29ce484222325ULL;
  const auto* bytes = reinterpret_cast<const unsigned char*>(values.data());  // NOLINT
  for (std::size_t i = 0; i < values.size() * sizeof(double); ++i) {
    hash = (hash ^ bytes[i]) * 0x100000001b3ULL;  // NOLINT: pointer arithmetic over the bytes
  }
  return hash;
}

std::vector<double> simulate(std::uint64_t seed, std::uint64_t first, std::uint64_t end) {
  std::vector<double> positions;
  positions.reserve(end - first);
  for (std::uint64_t i = first; i < end; ++i) positions.push_back(walk(seed, i));
  return positions;
}

int verify(std::uint64_t seed, const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  const auto expected = simulate(seed, 0, kWalkers);
  if (bytes.size() != expected.size() * sizeof(double) ||
      bytes.compare(0, bytes.size(), reinterpret_cast<const char*>(expected.data()),  // NOLINT
                    bytes.size()) != 0) {
    std::fprintf(stderr, "acme_mpi_sim: %s differs from a serial run of seed %llu\n", path.c_str(),
                 static_cast<unsigned long long>(seed));
    return 1;
  }
  std::printf("verified %s %016llx %zu\n", path.c_str(),
              static_cast<unsigned long long>(fnv1a(expected)), bytes.size());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 4 && std::string(argv[1]) == "--verify") {          // NOLINT: argv
    return verify(std::strtoull(argv[2], nullptr, 10), argv[3]);  // NOLINT: argv
  }
  if (argc != 3) {
    std::fprintf(stderr, "usage: acme_mpi_sim SEED OUTDIR | acme_mpi_sim --verify SEED FILE\n");
    return 2;
  }
  const std::uint64_t seed = std::strtoull(argv[1], nullptr, 10);  // NOLINT: argv
  const std::string outdir = argv[2];                              // NOLINT: argv

  MPI_Init(&argc, &argv);
  int rank = 0;
  int size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);

  // Rank r simulates walkers [first(r), first(r + 1)).
  const auto first = [&](int r) { return kWalkers * static_cast<std::uint64_t>(r) / size; };
  const auto mine = simulate(seed, first(rank), first(rank + 1));

  std::vector<int> counts(size);
  std::vector<int> offsets(size);
  for (int r = 0; r < size; ++r) {
    counts[r] = static_cast<int>(first(r + 1) - first(r));
    offsets[r] = static_cast<int>(first(r));
  }
  std::vector<double> all(rank == 0 ? kWalkers : 0);
  MPI_Gatherv(mine.data(), static_cast<int>(mine.size()), MPI_DOUBLE, all.data(), counts.data(),
              offsets.data(), MPI_DOUBLE, 0, MPI_COMM_WORLD);

  int status = 0;
  if (rank == 0) {
    const std::string path = outdir + "/result_" + std::to_string(seed) + ".bin";
    std::ofstream file(path, std::ios::binary | std::ios::trunc);
    file.write(reinterpret_cast<const char*>(all.data()),  // NOLINT: bytes of doubles
               static_cast<std::streamsize>(all.size() * sizeof(double)));
    file.close();
    if (!file) {
      std::fprintf(stderr, "acme_mpi_sim: cannot write %s\n", path.c_str());
      status = 1;
    } else {
      std::printf("result %s %016llx %zu ranks=%d\n", path.c_str(),
                  static_cast<unsigned long long>(fnv1a(all)), all.size() * sizeof(double), size);
    }
  }
  MPI_Bcast(&status, 1, MPI_INT, 0, MPI_COMM_WORLD);
  MPI_Finalize();
  return status;
}
