// detect_slots(): how many tasks this worker runs at once when nobody says, and the machine
// facts READY reports (cores, memory).
#include <array>
#include <charconv>
#include <cstdlib>
#include <optional>
#include <string_view>

#include <hwloc.h>

#include <acme/worker.hpp>

#include "machine.hpp"
#include <sched.h>

namespace acme {
namespace {

/// A positive integer from the environment variable `name`, if it holds one.
std::optional<std::uint32_t> env_count(const char* name) {
  const char* text = std::getenv(name);  // NOLINT(concurrency-mt-unsafe): read at start only
  if (text == nullptr) return std::nullopt;
  const std::string_view view(text);
  std::uint32_t value = 0;
  const auto [end, error] = std::from_chars(view.data(), view.data() + view.size(), value);
  if (error != std::errc{} || end != view.data() + view.size() || value == 0) return std::nullopt;
  return value;
}

std::uint32_t affinity_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof(set), &set) != 0) return 0;
  return static_cast<std::uint32_t>(CPU_COUNT(&set));
}

/// hwloc's view of this machine, loaded once.
struct Topology {
  std::uint32_t cores = 0;
  std::uint64_t memory = 0;
};

Topology load_topology() {
  Topology result;
  hwloc_topology_t topology = nullptr;
  if (hwloc_topology_init(&topology) != 0) return result;
  if (hwloc_topology_load(topology) == 0) {
    const int cores = hwloc_get_nbobjs_by_type(topology, HWLOC_OBJ_CORE);
    if (cores > 0) result.cores = static_cast<std::uint32_t>(cores);
    const hwloc_obj_t root = hwloc_get_root_obj(topology);
    if (root != nullptr) result.memory = root->total_memory;
  }
  hwloc_topology_destroy(topology);
  return result;
}

const Topology& topology() {
  static const Topology cached = load_topology();
  return cached;
}

}  // namespace

DetectedSlots detect_slots() {
  // Batch systems first: they say what this job was given, which may be less than the node.
  static constexpr std::array<const char*, 5> kBatchVariables = {
      "SLURM_CPUS_PER_TASK",  // SLURM --cpus-per-task
      "NSLOTS",               // SGE -pe smp N
      "NCPUS",                // PBS Pro select=..:ncpus=N
      "PBS_NCPUS",            // PBS Pro, as some sites' job environments name it
      "PBS_NP",               // Torque
  };
  for (const char* name : kBatchVariables) {
    if (auto count = env_count(name)) return {.slots = *count, .source = name};
  }
  if (const auto cpus = affinity_cpus(); cpus > 0) return {.slots = cpus, .source = "affinity"};
  if (const auto cores = topology().cores; cores > 0) {
    return {.slots = cores, .source = "hwloc cores"};
  }
  return {.slots = 1, .source = "default"};
}

namespace worker {

MachineInfo machine_info() {
  const auto cpus = affinity_cpus();
  return {.cores = cpus > 0 ? cpus : topology().cores, .memory = topology().memory};
}

}  // namespace worker
}  // namespace acme
