// Pinning tasks to cores: the pool the I/O thread hands cores from, the decision whether to
// pin, and the hwloc side (the cores this process may use, binding a task thread).
#include "pinning.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdlib>

#include <fmt/format.h>
#include <hwloc.h>

#include <acme/error.hpp>
#include <acme/log.hpp>

namespace acme {

std::optional<Pin> parse_pin(std::string_view text) noexcept {
  if (text == "auto") return Pin::Auto;
  if (text == "yes") return Pin::Yes;
  if (text == "no") return Pin::No;
  return std::nullopt;
}

namespace worker {

CorePool::CorePool(std::vector<std::vector<unsigned>> cores)
    : cores_(std::move(cores)), taken_(cores_.size(), false), free_(cores_.size()) {}

std::optional<std::vector<std::size_t>> CorePool::take(std::uint32_t count) {
  if (count > free_) return std::nullopt;
  std::vector<std::size_t> taken;
  taken.reserve(count);
  for (std::size_t i = 0; i < cores_.size() && taken.size() < count; ++i) {
    if (taken_[i]) continue;
    taken_[i] = true;
    taken.push_back(i);
  }
  free_ -= taken.size();
  return taken;
}

void CorePool::release(const std::vector<std::size_t>& taken) noexcept {
  for (const auto i : taken) {
    if (i < taken_.size() && taken_[i]) {
      taken_[i] = false;
      ++free_;
    }
  }
}

std::vector<unsigned> CorePool::cpus(const std::vector<std::size_t>& taken) const {
  std::vector<unsigned> result;
  for (const auto i : taken) {
    if (i < cores_.size()) result.insert(result.end(), cores_[i].begin(), cores_[i].end());
  }
  std::sort(result.begin(), result.end());
  result.erase(std::unique(result.begin(), result.end()), result.end());
  return result;
}

std::vector<unsigned> CorePool::all_cpus() const {
  std::vector<std::size_t> every(cores_.size());
  for (std::size_t i = 0; i < every.size(); ++i) every[i] = i;
  return cpus(every);
}

std::string cpu_list(const std::vector<unsigned>& cpus) {
  std::string text;
  for (std::size_t i = 0; i < cpus.size();) {
    std::size_t j = i;
    while (j + 1 < cpus.size() && cpus[j + 1] == cpus[j] + 1) ++j;
    if (!text.empty()) text += ',';
    text += j == i ? fmt::format("{}", cpus[i]) : fmt::format("{}-{}", cpus[i], cpus[j]);
    i = j + 1;
  }
  return text;
}

std::string batch_job_variable() {
  // NOLINTBEGIN(concurrency-mt-unsafe): read once, when the worker starts
  const auto set = [](const char* name) {
    const char* value = std::getenv(name);
    return value != nullptr && *value != '\0';
  };
  if (set("SLURM_JOB_ID")) return "SLURM_JOB_ID";
  if (set("JOB_ID") && set("NSLOTS")) return "JOB_ID";  // SGE sets both; JOB_ID alone is vague
  if (set("PBS_JOBID")) return "PBS_JOBID";
  // NOLINTEND(concurrency-mt-unsafe)
  return {};
}

PinDecision decide_pin(Pin mode, const PinFacts& facts, std::uint32_t slots) {
  if (mode == Pin::No) return {.pin = false, .why = "--pin no"};
  std::string why;
  if (mode == Pin::Yes) {
    why = "--pin yes";
  } else if (!facts.batch_job.empty()) {
    why = "inside a batch job (" + facts.batch_job + ")";
  } else if (facts.allowed_cpus > 0 && facts.allowed_cpus < facts.machine_cpus) {
    why = fmt::format("this process may use {} of the machine's {} cpus", facts.allowed_cpus,
                      facts.machine_cpus);
  } else {
    return {.pin = false,
            .why = fmt::format("not in a batch job and this process may use all {} cpus of the "
                               "machine (--pin yes pins anyway)",
                               facts.machine_cpus)};
  }
  if (facts.allowed_cores == 0) return {.pin = false, .why = "hwloc found no core to pin to"};
  if (slots > facts.allowed_cores) {
    return {.pin = false,
            .why = fmt::format("{} slots but only {} cores available, so tasks would share cores",
                               slots, facts.allowed_cores)};
  }
  return {.pin = true, .why = std::move(why)};
}

struct CpuBinder::Topology {
  hwloc_topology_t topology = nullptr;
  ~Topology() {
    if (topology != nullptr) hwloc_topology_destroy(topology);
  }
};

namespace {

/// An hwloc bitmap, freed on scope exit.
struct Bitmap {
  hwloc_bitmap_t set = hwloc_bitmap_alloc();
  Bitmap() {
    if (set == nullptr) throw Error(Errc::System, "hwloc: out of memory");
  }
  ~Bitmap() { hwloc_bitmap_free(set); }
  Bitmap(const Bitmap&) = delete;
  Bitmap& operator=(const Bitmap&) = delete;
};

}  // namespace

CpuBinder::CpuBinder() : topology_(std::make_unique<Topology>()) {
  if (hwloc_topology_init(&topology_->topology) != 0) {
    topology_->topology = nullptr;
    throw Error(Errc::System, "hwloc: cannot initialise a topology");
  }
  if (hwloc_topology_load(topology_->topology) != 0) {
    throw Error(Errc::System, "hwloc: cannot load the topology");
  }
  auto* topology = topology_->topology;
  const hwloc_const_cpuset_t machine = hwloc_topology_get_topology_cpuset(topology);
  const Bitmap allowed;
  // The calling thread's binding: what the worker's task threads inherit.
  if (hwloc_get_cpubind(topology, allowed.set, HWLOC_CPUBIND_THREAD) != 0) {
    hwloc_bitmap_copy(allowed.set, machine);
  }
  hwloc_bitmap_and(allowed.set, allowed.set, machine);
  facts_.batch_job = batch_job_variable();
  facts_.machine_cpus = static_cast<std::size_t>(std::max(hwloc_bitmap_weight(machine), 0));
  facts_.allowed_cpus = static_cast<std::size_t>(std::max(hwloc_bitmap_weight(allowed.set), 0));

  const int count = hwloc_get_nbobjs_by_type(topology, HWLOC_OBJ_CORE);
  const Bitmap pus;
  for (int i = 0; i < count; ++i) {
    const hwloc_obj_t core =
        hwloc_get_obj_by_type(topology, HWLOC_OBJ_CORE, static_cast<unsigned>(i));
    if (core == nullptr || core->cpuset == nullptr) continue;
    hwloc_bitmap_and(pus.set, core->cpuset, allowed.set);
    if (hwloc_bitmap_iszero(pus.set)) continue;
    std::vector<unsigned> ids;
    for (int id = hwloc_bitmap_first(pus.set); id >= 0; id = hwloc_bitmap_next(pus.set, id)) {
      ids.push_back(static_cast<unsigned>(id));
    }
    cores_.push_back(std::move(ids));
  }
  facts_.allowed_cores = cores_.size();
}

CpuBinder::~CpuBinder() = default;

bool CpuBinder::bind_this_thread(const std::vector<unsigned>& cpus) const noexcept {
  hwloc_bitmap_t set = hwloc_bitmap_alloc();
  if (set == nullptr) {
    errno = ENOMEM;
    return false;
  }
  for (const auto cpu : cpus) hwloc_bitmap_set(set, cpu);
  const bool bound = hwloc_set_cpubind(topology_->topology, set, HWLOC_CPUBIND_THREAD) == 0;
  const int error = errno;
  hwloc_bitmap_free(set);
  errno = error;
  return bound;
}

Pinning setup_pinning(Pin mode, std::uint32_t slots) {
  auto log = logger("worker");
  if (mode == Pin::No) {
    log->info("not pinning: --pin no");
    return {};
  }
  std::shared_ptr<const CpuBinder> binder;
  try {
    binder = std::make_shared<const CpuBinder>();
  } catch (const std::exception& e) {
    if (mode == Pin::Yes) {
      log->warn("not pinning: {} (--pin yes)", e.what());
    } else {
      log->info("not pinning: {}", e.what());
    }
    return {};
  }
  const auto decision = decide_pin(mode, binder->facts(), slots);
  if (!decision.pin) {
    if (mode == Pin::Yes) {
      log->warn("not pinning: {} (--pin yes)", decision.why);
    } else {
      log->info("not pinning: {}", decision.why);
    }
    return {};
  }
  // The first `slots` cores: no more than the tasks can use at once.
  auto cores = binder->cores();
  cores.resize(std::min<std::size_t>(cores.size(), slots));
  Pinning pinning{.binder = std::move(binder), .pool = CorePool(std::move(cores))};
  log->info("pinning tasks to cores {} ({})", cpu_list(pinning.pool.all_cpus()), decision.why);
  return pinning;
}

}  // namespace worker
}  // namespace acme
