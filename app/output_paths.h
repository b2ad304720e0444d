// Checks of a command's output paths, made before anything is read or written: an output that
// would replace an input, or that cannot be written where it is, is a usage error found at
// once rather than after the work (an evaluation, a split) that was to fill it.
#pragma once

#include <filesystem>
#include <string>
#include <utility>
#include <vector>

namespace gsau::app {

// The file a path names, for comparing two paths (the same file under two spellings).
inline std::filesystem::path SameFileKey(const std::string& p) {
  std::error_code ec;
  std::filesystem::path c = std::filesystem::weakly_canonical(p, ec);
  return ec ? std::filesystem::absolute(p).lexically_normal() : c;
}

// Why `path`, given as `flag`, cannot be an output: a directory, an input's file (each input a
// flag and its path; empty paths are skipped), or under a folder that does not exist. Empty
// when it can.
inline std::string OutputPathProblem(const std::string& flag, const std::string& path,
                                     const std::vector<std::pair<std::string, std::string>>& inputs) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_directory(path, ec)) return flag + " " + path + " is a directory; give a file";
  for (const auto& [in_flag, in] : inputs) {
    if (!in.empty() && SameFileKey(in) == SameFileKey(path)) {
      return flag + " " + path + " is the " + in_flag + " file; writing it would replace the input";
    }
  }
  const fs::path parent = fs::absolute(path, ec).parent_path();
  if (!fs::is_directory(parent, ec)) return flag + " " + path + ": no folder " + parent.string() + " to write it in";
  return "";
}

}  // namespace gsau::app
