// The demo's status line: where its stream stands and when it will be in.
#include "demo_status.h"

#include <gtest/gtest.h>

namespace gsau::app {
namespace {

TEST(DemoStatusTest, BeforeTheFirstClickItSaysIngestIsJoining) {
  EXPECT_EQ(StreamPosition(0, 3003, 0, 1000), "0 of 3003 (ingest joining its consumer group)");
  EXPECT_EQ(StreamPosition(0, 3003, 0, 0), "0 of 3003 (ingest joining its consumer group)");
}

TEST(DemoStatusTest, TheEtaIsAtTheRateTakenInNoFasterThanThePlayer) {
  // 1,000 in 2 s: 500/s taken in, slower than the player's 1,000/s; 2,000 left take 4 s.
  EXPECT_EQ(StreamPosition(1000, 3000, 2, 1000), "1000 of 3000 (33%, ETA 4 s)");
  // A backlog taken in at 5,000/s: the player's 1,000/s is the pace ahead (2 s, not 0.4 s).
  EXPECT_EQ(StreamPosition(10000, 12000, 2, 1000), "10000 of 12000 (83%, ETA 2 s)");
  // As fast as possible: the rate taken in alone (10,000 in 4 s; 30,000 left).
  EXPECT_EQ(StreamPosition(10000, 40000, 4, 0), "10000 of 40000 (25%, ETA 12 s)");
  EXPECT_EQ(StreamPosition(40000, 40000, 4, 0), "40000 of 40000 (100%, ETA 0 s)");
}

TEST(DemoStatusTest, BeforeASecondWasMeasuredThePlayersPaceOrNoEta) {
  // The clicks of the first poll over microseconds read as a rate of millions: "ETA 0 s".
  EXPECT_EQ(StreamPosition(1000, 20000, 1e-6, 1000), "1000 of 20000 (5%, ETA 19 s)");
  EXPECT_EQ(StreamPosition(1000, 20000, 0, 1000), "1000 of 20000 (5%, ETA 19 s)");
  EXPECT_EQ(StreamPosition(1000, 20000, 1e-6, 0), "1000 of 20000 (5%)");
  EXPECT_EQ(StreamPosition(1000, 20000, 0.5, 0), "1000 of 20000 (5%)");
}

TEST(DemoStatusTest, MoreTakenInThanCountedEndsAtNoneLeft) {
  // The player's count leaves out records it could not send; consumed can pass it.
  EXPECT_EQ(StreamPosition(3010, 3003, 3, 1000), "3010 of 3003 (100%, ETA 0 s)");
}

}  // namespace
}  // namespace gsau::app
