// Private: what READY reports about the machine (PROTOCOL.md §6.3.1 `cores`, `memory`).
#pragma once

#include <cstdint>

namespace acme::worker {

struct MachineInfo {
  std::uint32_t cores = 0;   // CPUs this process may run on (else hwloc's core count)
  std::uint64_t memory = 0;  // bytes of memory of the machine (hwloc)
};

[[nodiscard]] MachineInfo machine_info();

}  // namespace acme::worker
