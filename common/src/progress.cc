#include "gsau/common/progress.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>

namespace gsau {

std::string FormatDuration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const auto s = static_cast<int64_t>(seconds + 0.5);
  char buf[32];
  if (s >= 3600) {
    std::snprintf(buf, sizeof(buf), "%lldh%02lldm", static_cast<long long>(s / 3600),
                  static_cast<long long>((s % 3600) / 60));
  } else if (s >= 60) {
    std::snprintf(buf, sizeof(buf), "%lldm%02llds", static_cast<long long>(s / 60),
                  static_cast<long long>(s % 60));
  } else {
    std::snprintf(buf, sizeof(buf), "%llds", static_cast<long long>(s));
  }
  return buf;
}

std::string FitToColumns(std::string line, int columns) {
  if (columns <= 0) return line;
  const size_t room = static_cast<size_t>(columns - 1);  // the last column would wrap on some terminals
  size_t chars = 0;
  for (size_t i = 0; i < line.size(); ++i) {
    if ((static_cast<unsigned char>(line[i]) & 0xC0) == 0x80) continue;  // inside a character
    if (chars++ == room) {
      line.resize(i);
      break;
    }
  }
  return line;
}

namespace {

// The terminal's width in columns, or 0 when `out` is not a terminal or does not say.
int TerminalColumns(FILE* out) {
  winsize ws{};
  return ioctl(fileno(out), TIOCGWINSZ, &ws) == 0 ? ws.ws_col : 0;
}

}  // namespace

ProgressBar::ProgressBar(int64_t total, ProgressOptions options)
    : total_(total),
      options_(std::move(options)),
      tty_(!options_.force_plain && isatty(fileno(options_.out)) != 0),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {}

ProgressBar::~ProgressBar() {
  if (!finished_) Finish();
}

double ProgressBar::ElapsedSeconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

double ProgressBar::Rate() const {
  const double t = ElapsedSeconds();
  return t > 0 ? static_cast<double>(done_) / t : 0.0;
}

std::string ProgressBar::Render(const std::string& suffix) const {
  std::string line = options_.label;
  char buf[160];
  const double rate = Rate();
  if (total_ > 0) {
    const double frac = std::clamp(static_cast<double>(done_) / static_cast<double>(total_), 0.0, 1.0);
    constexpr int kWidth = 24;
    const int filled = static_cast<int>(frac * kWidth);
    line += " [";
    line.append(filled, '#');
    line.append(kWidth - filled, '.');
    line += "]";
    const double eta = rate > 0 ? static_cast<double>(total_ - done_) / rate : NAN;
    std::snprintf(buf, sizeof(buf), " %5.1f%% %lld/%lld %s, %.0f/s, elapsed %s, ETA %s", 100 * frac,
                  static_cast<long long>(done_), static_cast<long long>(total_),
                  options_.unit.c_str(), rate, FormatDuration(ElapsedSeconds()).c_str(),
                  FormatDuration(eta).c_str());
  } else {
    std::snprintf(buf, sizeof(buf), " %lld %s, %.0f/s, elapsed %s", static_cast<long long>(done_),
                  options_.unit.c_str(), rate, FormatDuration(ElapsedSeconds()).c_str());
  }
  line += buf;
  if (!suffix.empty()) {
    line += "  ";
    line += suffix;
  }
  return line;
}

void ProgressBar::Update(int64_t done, const std::string& suffix) {
  done_ = done;
  const auto now = std::chrono::steady_clock::now();
  const double since = std::chrono::duration<double>(now - last_draw_).count();
  if (since >= (tty_ ? 0.2 : options_.line_interval_s)) {
    last_draw_ = now;
    Draw(suffix, false);
  }
}

void ProgressBar::Finish(const std::string& suffix, int64_t done) {
  if (finished_) return;
  if (done >= 0) done_ = done;
  finished_ = true;
  Draw(suffix, true);
}

void ProgressBar::Draw(const std::string& suffix, bool final) {
  const std::string line = Render(suffix);
  if (tty_) {
    // Redrawn lines fit the terminal; the final one is written whole (nothing redraws it).
    const std::string shown = final ? line : FitToColumns(line, TerminalColumns(options_.out));
    std::fprintf(options_.out, "\r\033[K%s%s", shown.c_str(), final ? "\n" : "");
  } else {
    std::fprintf(options_.out, "%s\n", line.c_str());
  }
  std::fflush(options_.out);
}

}  // namespace gsau
