// The leave-one-out split's errors: no torch here (dataset.cc needs none).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "gsau/learner/dataset.h"

namespace gsau::learner {
namespace {

// `lengths[u]` interactions of user u, times 0, 1, 2, ... per user.
std::vector<data::Interaction> Users(const std::vector<int>& lengths) {
  std::vector<data::Interaction> events;
  for (size_t u = 0; u < lengths.size(); ++u) {
    for (int k = 0; k < lengths[u]; ++k) {
      events.push_back({"u" + std::to_string(u), "i" + std::to_string(k), k, k, true});
    }
  }
  return events;
}

std::string BuildError(const std::vector<data::Interaction>& events, double train_fraction = 1.0) {
  SplitOptions o;
  o.train_fraction = train_fraction;
  auto d = BuildLeaveOneOut(events, o);
  EXPECT_FALSE(d.ok()) << d->train_samples.size() << " training samples";
  return d.ok() ? "" : d.status().message();
}

TEST(DatasetTest, NoValidationItemSaysSo) {
  EXPECT_EQ(BuildError(Users({2, 1, 2})), "dataset too small: no user has 3 or more interactions");
}

TEST(DatasetTest, UsersOfThreeLeaveNoTrainingSample) {
  // Every user has a validation and a test item, but one training item: was "no user has 3 or more".
  const std::string m = BuildError(Users({3, 3, 1}));
  EXPECT_NE(m.find("no training sample: every user has 1 or 3 interactions"), std::string::npos) << m;
  EXPECT_EQ(m.find("no user has 3 or more"), std::string::npos) << m;
  EXPECT_TRUE(BuildLeaveOneOut(Users({3, 3, 2})).ok());  // a user of 2 trains on both
}

TEST(DatasetTest, SmallTrainFractionLeavingNoSampleNamesTheFraction) {
  // 2 + 2 training interactions at times 0, 1; 0.5 keeps each user's first one: was "no user has 3 or more".
  const auto events = Users({4, 4});
  const std::string m = BuildError(events, 0.5);
  EXPECT_NE(m.find("train_fraction 0.5 leaves no training sample: the first 2 of the 4 training interactions"),
            std::string::npos)
      << m;
  SplitOptions most;
  most.train_fraction = 0.75;
  EXPECT_TRUE(BuildLeaveOneOut(events, most).ok());
}

// Per-user lines without times: positions, not times, so there is no stream to take the first
// part of (the first half interleaved users round-robin).
TEST(DatasetTest, ATrainFractionNeedsTimes) {
  auto events = Users({4, 4});
  for (auto& e : events) e.has_time = false;
  const std::string m = BuildError(events, 0.5);
  EXPECT_NE(m.find("train_fraction 0.5 takes the first part of the training stream in event-time order, but the "
                   "interactions have no times"),
            std::string::npos)
      << m;
  EXPECT_TRUE(BuildLeaveOneOut(events).ok()) << "the whole of it needs no order";
}

}  // namespace
}  // namespace gsau::learner
