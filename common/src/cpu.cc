#include "gsau/common/cpu.h"

#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <fstream>
#include <iterator>
#include <sstream>
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

std::optional<int> CgroupCpuQuota(std::string_view proc_self_cgroup, const std::string& sysfs) {
  std::optional<int> quota;
  auto lower = [&quota](std::optional<int> q) {
    if (q) quota = std::min(quota.value_or(*q), *q);
  };
  std::istringstream lines{std::string(proc_self_cgroup)};
  for (std::string line; std::getline(lines, line);) {
    // "0::/path" (v2), or "4:cpu,cpuacct:/path" (v1).
    const size_t a = line.find(':'), b = a == std::string::npos ? a : line.find(':', a + 1);
    if (b == std::string::npos) continue;
    const std::string controllers = "," + line.substr(a + 1, b - a - 1) + ",";
    const bool v2 = line.rfind("0::", 0) == 0, v1 = controllers.find(",cpu,") != std::string::npos;
    if (!v2 && !v1) continue;
    for (std::string dir = line.substr(b + 1);;) {
      const std::string at = dir == "/" ? "" : dir;
      if (v2) {
        lower(CoresOfCpuMax(ReadFirstLine((sysfs + at + "/cpu.max").c_str())));
      } else {
        const std::string base = sysfs + "/cpu" + at;
        const auto q = ParseNumber(ReadFirstLine((base + "/cpu.cfs_quota_us").c_str()));
        const auto p = ParseNumber(ReadFirstLine((base + "/cpu.cfs_period_us").c_str()));
        if (q && p) lower(CoresOfQuota(*q, *p));
      }
      if (at.empty()) break;
      const size_t slash = dir.rfind('/');
      dir = slash == 0 || slash == std::string::npos ? "/" : dir.substr(0, slash);
    }
  }
  return quota;
}

int UsableCores() {
  int n = static_cast<int>(std::thread::hardware_concurrency());
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) n = CPU_COUNT(&set);
  std::ifstream in("/proc/self/cgroup");
  const std::string self((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (const auto quota = CgroupCpuQuota(self, "/sys/fs/cgroup")) n = std::min(n, *quota);
  return std::max(1, n);
}

void NameThisThread(const std::string& name) {
  (void)pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
}

}  // namespace gsau
