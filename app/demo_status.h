// Where the demo's stream stands, for its status lines.
#pragma once

#include <cstdint>
#include <string>

namespace gsau::app {

// "<consumed> of <total> (<percent>%, ETA <s> s)"; "0 of <total> (ingest joining its consumer
// group)" before the first click was taken in. `taken_s`: seconds since the first click was taken
// in; `player_rate`: the player's clicks per second (0: as fast as possible). The ETA is at the
// rate taken in, no faster than the player's, once a second of it was measured; before that at
// the player's, and none at full speed.
std::string StreamPosition(uint64_t consumed, uint64_t total, double taken_s, double player_rate);

}  // namespace gsau::app
