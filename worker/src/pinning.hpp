// Private: pinning tasks to cores (WorkerOptions::pin). The I/O thread owns a CorePool: a task
// that starts takes `cores` free cores, lowest first, and gives them back when its function
// has returned. The task thread binds itself to their processing units with a CpuBinder
// before the function runs.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <acme/worker.hpp>

namespace acme::worker {

/// The cores a worker may pin tasks to, in topology order, each with the OS ids of its
/// processing units. Pure bookkeeping: no system call.
class CorePool {
 public:
  CorePool() = default;
  explicit CorePool(std::vector<std::vector<unsigned>> cores);

  [[nodiscard]] std::size_t size() const noexcept { return cores_.size(); }
  [[nodiscard]] std::size_t free() const noexcept { return free_; }

  /// Takes `count` free cores, the lowest in topology order first, and returns their positions
  /// in the pool; nullopt (and nothing taken) when fewer are free.
  [[nodiscard]] std::optional<std::vector<std::size_t>> take(std::uint32_t count);
  /// Gives back cores returned by take(). Positions not taken are ignored.
  void release(const std::vector<std::size_t>& taken) noexcept;
  /// The OS cpu ids of the processing units of `taken`, ascending.
  [[nodiscard]] std::vector<unsigned> cpus(const std::vector<std::size_t>& taken) const;
  /// The OS cpu ids of the whole pool, ascending.
  [[nodiscard]] std::vector<unsigned> all_cpus() const;

 private:
  std::vector<std::vector<unsigned>> cores_;
  std::vector<bool> taken_;
  std::size_t free_ = 0;
};

/// "0-3", "0,2,4-5": cpu ids (ascending) as taskset and SLURM write them.
[[nodiscard]] std::string cpu_list(const std::vector<unsigned>& cpus);

/// What the environment says about pinning, gathered once (facts, no decision).
struct PinFacts {
  std::string batch_job{};        // "SLURM_JOB_ID", "JOB_ID" (with NSLOTS), "PBS_JOBID" or ""
  std::size_t allowed_cpus = 0;   // CPUs this process may run on
  std::size_t machine_cpus = 0;   // CPUs of the machine (hwloc)
  std::size_t allowed_cores = 0;  // cores with an allowed CPU
};

/// Whether to pin, and a reason for the log: a pure function of the mode and the facts.
struct PinDecision {
  bool pin = false;
  std::string why{};
};
[[nodiscard]] PinDecision decide_pin(Pin mode, const PinFacts& facts, std::uint32_t slots);

/// The batch job this process runs in, by its environment variable, or "".
[[nodiscard]] std::string batch_job_variable();

/// hwloc's topology and the cores this process may use; binds the calling thread. Binding is
/// thread-safe (the topology is only read after loading).
class CpuBinder {
 public:
  /// Loads the topology; throws acme::Error (System) when hwloc cannot.
  CpuBinder();
  ~CpuBinder();
  CpuBinder(const CpuBinder&) = delete;
  CpuBinder& operator=(const CpuBinder&) = delete;

  [[nodiscard]] const PinFacts& facts() const noexcept { return facts_; }
  /// The cores with a CPU this process may run on, in topology order, each with its allowed
  /// processing units.
  [[nodiscard]] const std::vector<std::vector<unsigned>>& cores() const noexcept { return cores_; }
  /// Binds the calling thread to `cpus`; false (errno set) when the system refuses.
  [[nodiscard]] bool bind_this_thread(const std::vector<unsigned>& cpus) const noexcept;

 private:
  struct Topology;
  std::unique_ptr<Topology> topology_;
  PinFacts facts_;
  std::vector<std::vector<unsigned>> cores_;
};

/// What the worker pins with: a binder and the pool (the first `slots` allowed cores), or no
/// binder and an empty pool when it does not pin.
struct Pinning {
  std::shared_ptr<const CpuBinder> binder{};
  CorePool pool{};
};

/// Decides (decide_pin) and logs once at info "pinning tasks to cores ..." or "not pinning:
/// <why>" (a warning when --pin yes cannot be honoured).
[[nodiscard]] Pinning setup_pinning(Pin mode, std::uint32_t slots);

}  // namespace acme::worker
