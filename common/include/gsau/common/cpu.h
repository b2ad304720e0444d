// How many cores this process may use: what "all cores" means for thread pools.
//
// std::thread::hardware_concurrency() counts the machine's cores. A process pinned to fewer
// (taskset, a container's cpuset) or given a CPU quota (a container's --cpus, cgroups) that
// sizes its pools by it runs more threads than it has cores, and parallel regions that wait on
// every thread stall at each barrier.
//
// Thread safety: free functions; UsableCores() reads /proc and /sys on each call.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace gsau {

// The cores the calling thread may run on (its affinity mask), lowered to CgroupCpuQuota of
// this process; at least 1.
int UsableCores();

// The smallest CPU quota, in cores rounded up, of the cgroups `proc_self_cgroup` (the text of
// /proc/self/cgroup) names and of every cgroup above them, read under `sysfs`
// (/sys/fs/cgroup): v2's cpu.max, v1's cpu/…/cpu.cfs_quota_us over cpu.cfs_period_us. A
// systemd unit's CPUQuota sits below the root; a container sees its own cgroup as the root.
// nullopt when none sets one.
std::optional<int> CgroupCpuQuota(std::string_view proc_self_cgroup, const std::string& sysfs);

// The quota of a cgroup v2 `cpu.max` ("200000 100000" -> 2 cores, "150000 100000" -> 2,
// "max 100000" -> none), rounded up; nullopt when there is none or the text does not parse.
std::optional<int> CoresOfCpuMax(std::string_view cpu_max);

// Names the calling thread (what top -H, ps -L and gdb show), cut to the 15 bytes Linux keeps;
// nothing where threads cannot be named.
void NameThisThread(const std::string& name);

}  // namespace gsau
