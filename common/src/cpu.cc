#include "gsau/common/cpu.h"

#include <sched.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <fstream>
#include <string>
#include <thread>

namespace gsau {
namespace {

std::optional<double> ParseNumber(std::string_view s) {
  double v = 0;
  const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  if (r.ec != std::errc() || r.ptr != s.data() + s.size()) return std::nullopt;
  return v;
}

std::optional<int> CoresOfQuota(double quota, double period) {
  if (!(quota > 0) || !(period > 0)) return std::nullopt;
  return std::max(1, static_cast<int>(std::ceil(quota / period - 1e-9)));
}

std::string ReadFirstLine(const char* path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

}  // namespace

std::optional<int> CoresOfCpuMax(std::string_view cpu_max) {
  while (!cpu_max.empty() && (cpu_max.back() == '\n' || cpu_max.back() == ' ')) cpu_max.remove_suffix(1);
  const size_t space = cpu_max.find(' ');
  if (space == std::string_view::npos) return std::nullopt;
  const auto quota = ParseNumber(cpu_max.substr(0, space));  // "max": none
  const auto period = ParseNumber(cpu_max.substr(space + 1));
  if (!quota || !period) return std::nullopt;
  return CoresOfQuota(*quota, *period);
}

int UsableCores() {
  int n = static_cast<int>(std::thread::hardware_concurrency());
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) n = CPU_COUNT(&set);
  std::optional<int> quota = CoresOfCpuMax(ReadFirstLine("/sys/fs/cgroup/cpu.max"));  // cgroup v2
  if (!quota) {  // cgroup v1
    const auto q = ParseNumber(ReadFirstLine("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"));
    const auto p = ParseNumber(ReadFirstLine("/sys/fs/cgroup/cpu/cpu.cfs_period_us"));
    if (q && p) quota = CoresOfQuota(*q, *p);
  }
  if (quota) n = std::min(n, *quota);
  return std::max(1, n);
}

}  // namespace gsau
