#include <gtest/gtest.h>

#include <random>

#include "gsau/ingest/decoder.h"

namespace gsau::ingest {
namespace {

struct Case {
  std::string value;
  bool ok;
  BadReason reason;
  std::string message_part;
};

TEST(DecoderTest, GoodEvents) {
  Decoder d;
  auto& r = d.Decode(R"({"user_id":"u42","item_id":"sku-9","ts":1732600000123,"event":"click"})", 5);
  ASSERT_TRUE(r.ok) << r.message;
  EXPECT_EQ(r.event, (ClickEvent{"u42", "sku-9", 1732600000123, "click"}));

  auto& ints = d.Decode(R"({"item_id": 77, "user_id": 12345678901234, "extra": {"nested": [1,2,3]}})", 1700000000000);
  ASSERT_TRUE(ints.ok) << ints.message;
  EXPECT_EQ(ints.event, (ClickEvent{"12345678901234", "77", 1700000000000, "click"})) << "ts from Kafka";

  // The earliest time taken by default: 1e11 ms, 1973-03-03.
  auto& view = d.Decode(R"({"user_id":"é✓","item_id":"x","ts":100000000000,"event":"view"})", -1);
  ASSERT_TRUE(view.ok) << view.message;
  EXPECT_EQ(view.event.user_id, "é✓");
  EXPECT_EQ(view.event.event_type, "view");
  EXPECT_EQ(view.event.ts_ms, 100000000000);

  // The optional fields written as null count as absent (Jackson's and json.dumps' default).
  auto& nulls = d.Decode(R"({"user_id":"u","item_id":"i","ts":null,"event":null})", 1700000000005);
  ASSERT_TRUE(nulls.ok) << nulls.message;
  EXPECT_EQ(nulls.event, (ClickEvent{"u", "i", 1700000000005, "click"}));

  const std::string max_id(kMaxIdBytes, 'a');
  EXPECT_TRUE(d.Decode(R"({"user_id":")" + max_id + R"(","item_id":"x","ts":1700000000000})", 0).ok);
}

// Valid JSON a tree of 64-bit numbers cannot hold (a number beyond 64 bits or a double's range,
// nesting deeper than 64) in a field we do not read is ignored, as unknown fields are; an id
// given as an integer beyond 64 bits is its decimal text. Both were dead-lettered as not_json.
TEST(DecoderTest, NumbersAndNestingBeyondTheParsersTreeInUnknownFieldsAreIgnored) {
  Decoder d;
  const std::string deep = std::string(100, '[') + std::string(100, ']');
  for (const std::string& extra : std::vector<std::string>{"123456789012345678901234567890", "1e400", "-1e400", deep}) {
    const std::string v = R"({"user_id":"u","item_id":"i","trace":)" + extra + R"(,"ts":1732600000123,"event":"view"})";
    const auto& r = d.Decode(v, 5);
    ASSERT_TRUE(r.ok) << v << " -> " << r.message;
    EXPECT_EQ(r.event, (ClickEvent{"u", "i", 1732600000123, "view"})) << v;
  }
  const auto& big = d.Decode(R"({"user_id":123456789012345678901234, "item_id":-98765432109876543210987})", 1700000000000);
  ASSERT_TRUE(big.ok) << big.message;
  EXPECT_EQ(big.event, (ClickEvent{"123456789012345678901234", "-98765432109876543210987", 1700000000000, "click"}));
  const auto& small = d.Decode(" {\"user_id\":42,\"item_id\":18446744073709551615,\"x\":1e999} \n", 1700000000000);
  ASSERT_TRUE(small.ok) << small.message;
  EXPECT_EQ(small.event, (ClickEvent{"42", "18446744073709551615", 1700000000000, "click"}));

  for (const std::string& tail : {std::string(), std::string(R"(,"x":1e400)")}) {  // the tree's path, then the other
    EXPECT_EQ(d.Decode(R"({"user_id":-0,"item_id":-5)" + tail + "}", 1700000000000).event,
              (ClickEvent{"0", "-5", 1700000000000, "click"}))
        << tail;
  }
  const auto& mixed = d.Decode(
      R"({"x":[1e400,{"a":[true,false,null,"s\n\u00e9",-0.5e-3,0,-0,1E+2]}],"user_id":"u","item_id":7,"e":{}})", 1700000000000);
  ASSERT_TRUE(mixed.ok) << mixed.message;
  EXPECT_EQ(mixed.event, (ClickEvent{"u", "7", 1700000000000, "click"}));

  // The rules stay as they are on that path, and what is not JSON is still not JSON: the tree
  // stopped at its first error, so nothing after it had been checked.
  const std::string mismatched = R"({"user_id":"u","item_id":"i","x":)" + std::string(100, '[') + std::string(100, '}') + "}";
  for (const std::string& v : std::vector<std::string>{
           R"({"user_id":"u","item_id":"i","x":01})",
           R"({"user_id":"u","item_id":"i","x":-Infinity})",
           R"({"user_id":"u","item_id":"i","d":2024-12-05})",
           R"({"user_id":"u","item_id":"i","x":1e400,"y":[1 2]})",
           R"({"user_id":"u","item_id":"i","x":1e400,"y":[tru]})",
           R"({"user_id":"u","item_id":"i","x":1e400,"y":nul})",
           R"({"user_id":"u","item_id":"i","x":1e400,"y":{1:2}})",
           R"({"user_id":"u","item_id":"i","x":1e400,"y":[,,,]})",
           R"({"user_id":"u","item_id":"i","x":1e400,"y":"\x"})",
           R"({"user_id":"u","item_id":"i","x":1e400,"y":1.})",
           R"({"user_id":"u","item_id":"i","x":1e400,"y":.5})",
           R"({"user_id":"u","item_id":"i","x":1e400,"y":1e})",
           R"({"user_id":01,"item_id":"i","x":1e400})",
           R"({"user_id":"u","item_id":"i","ts":01,"x":1e400})",
           R"({"user_id":"u","item_id":"i","ts":nul,"x":1e400})",
           R"({"user_id":"u","item_id":"i","x":1e400}})",
           R"({"user_id":"u","item_id":"i","x":1e400} {"a":1})",
           mismatched,
           // A bad field of ours, and not JSON after it (the field-by-field read stopped at the
           // field and gave its reason): not_json, as the tree path says for such a value.
           R"({"user_id":"","item_id":"i","x":1e400,"y":[1 2]})",
           R"({"user_id":"u","x":1e400,"user_id":"v","item_id":"i","y":tru})",
           R"({"user_id":"u","item_id":1e400,"y":nul})",
           R"({"user_id":"u","item_id":"i","ts":1.5e400,"z":[,]})",
           R"([1e400, tru])",
           "1e400 x",
           R"("u" 1e400)"}) {
    const auto& r = d.Decode(v, 1700000000000);
    EXPECT_FALSE(r.ok) << v;
    if (!r.ok) {
      EXPECT_EQ(BadReasonName(r.reason), "not_json") << v << " -> " << r.message;
    }
  }
  const std::vector<Case> bad = {
      {R"({"user_id":"u","item_id":"i","ts":123456789012345678901234567890})", false, BadReason::kBadTime,
       "ts must be an integer"},
      {R"({"user_id":"u","item_id":1e400,"ts":1732600000123})", false, BadReason::kWrongType,
       "item_id must be a string or an integer"},
      {R"({"user_id":"u","x":1e400,"ts":1732600000123})", false, BadReason::kMissingField, "missing item_id"},
      {R"({"user_id":"u","x":1e400,"user_id":"v","item_id":"i"})", false, BadReason::kDuplicateField,
       "user_id appears more than once"},
      {R"({"user_id":"","item_id":"i","x":1e400})", false, BadReason::kBadId, "user_id is empty"},
      {R"({"user_id":"u","item_id":"i","ts":1732600000123,"event":5,"x":1e400})", false, BadReason::kWrongType,
       "event must be a string"},
      {R"({"user_id":"u","item_id":"i","ts":1732600,"x":1e400})", false, BadReason::kBadTime, "seconds"},
      {R"({"user_id":"u","item_id":"i","ts":1732600000123,"event":""})", false, BadReason::kWrongType,
       "event is an empty string"},
      {R"({"user_id":"u","item_id":"i","ts":1732600000123,"event":"","x":1e400})", false, BadReason::kWrongType,
       "event is an empty string"},
      {R"([1e400])", false, BadReason::kNotObject, "not a JSON object"},
      {R"({"user_id":"u","item_id":"i","ts":1732600000123,"x":1e400} trailing)", false, BadReason::kNotJson,
       "not valid JSON"},
  };
  for (const auto& c : bad) {
    const auto& r = d.Decode(c.value, 1700000000000);
    EXPECT_FALSE(r.ok) << c.value;
    if (r.ok) continue;
    EXPECT_EQ(BadReasonName(r.reason), BadReasonName(c.reason)) << c.value << " -> " << r.message;
    EXPECT_NE(r.message.find(c.message_part), std::string::npos) << c.value << " -> " << r.message;
  }
  // Nesting: 500 levels in a field we ignore are taken; 600 are refused, not walked into a stack
  // overflow (a 1 MiB value of '[' crashed the process, for ever, its offset never committed).
  auto nested = [](int levels) {
    return R"({"user_id":"u","item_id":"i","x":)" + std::string(static_cast<size_t>(levels), '[') +
           std::string(static_cast<size_t>(levels), ']') + "}";
  };
  EXPECT_TRUE(d.Decode(nested(500), 1700000000000).ok) << "500 levels";
  const auto& deeper = d.Decode(nested(600), 1700000000000);
  EXPECT_FALSE(deeper.ok);
  EXPECT_EQ(BadReasonName(deeper.reason), "not_json") << deeper.message;
  DecoderOptions mib;
  mib.max_value_bytes = 1 << 20;
  Decoder large(mib);
  const std::string flood = R"({"user_id":"u","item_id":"i","x":)" + std::string(500000, '[') + "}";
  EXPECT_FALSE(large.Decode(flood, 1700000000000).ok);
  EXPECT_FALSE(large.Decode(nested(500000), 1700000000000).ok);

  // And the next event goes through the tree again.
  EXPECT_TRUE(d.Decode(R"({"user_id":"u","item_id":"i","ts":1732600000123})", 0).ok);
}

// A time in seconds read as milliseconds would put the click in January 1970, before every
// other click (its session, the freshness metrics): bad, with a reason that says why.
TEST(DecoderTest, TimesInSecondsAreBad) {
  Decoder d;
  const auto& secs = d.Decode(R"({"user_id":"u","item_id":"i","ts":1732600000})", 1700000000000);
  ASSERT_FALSE(secs.ok);
  EXPECT_EQ(secs.reason, BadReason::kBadTime);
  EXPECT_EQ(secs.message, "ts 1732600000 is before 1973-03-03 (ingest.min_event_time_s): seconds, not milliseconds?");

  EXPECT_FALSE(d.Decode(R"({"user_id":"u","item_id":"i","ts":99999999999})", 1700000000000).ok) << "1 ms early";
  EXPECT_FALSE(d.Decode(R"({"user_id":"u","item_id":"i","ts":0})", 1700000000000).ok);

  // The message timestamp stands in for an absent ts and is held to the same range.
  const auto& kafka_secs = d.Decode(R"({"user_id":"u","item_id":"i"})", 1732600000);
  ASSERT_FALSE(kafka_secs.ok);
  EXPECT_EQ(kafka_secs.reason, BadReason::kBadTime);
  EXPECT_NE(kafka_secs.message.find("the message timestamp 1732600000 is before 1973-03-03"), std::string::npos)
      << kafka_secs.message;

  // min_ts_ms 0 (ingest.min_event_time_s=0) takes any time from the epoch on, e.g. sequence numbers.
  DecoderOptions any;
  any.min_ts_ms = 0;
  Decoder from_epoch(any);
  const auto& zero = from_epoch.Decode(R"({"user_id":"u","item_id":"i","ts":0})", -1);
  ASSERT_TRUE(zero.ok) << zero.message;
  EXPECT_EQ(zero.event.ts_ms, 0);
  EXPECT_TRUE(from_epoch.Decode(R"({"user_id":"u","item_id":"i"})", 7).ok);
  // A message timestamp of 0 is the epoch, not "none" (librdkafka says none with -1).
  const auto& kafka_zero = from_epoch.Decode(R"({"user_id":"u","item_id":"i"})", 0);
  ASSERT_TRUE(kafka_zero.ok) << kafka_zero.message;
  EXPECT_EQ(kafka_zero.event.ts_ms, 0);
  EXPECT_FALSE(from_epoch.Decode(R"({"user_id":"u","item_id":"i"})", -1).ok);
  const auto& kafka_zero_default = d.Decode(R"({"user_id":"u","item_id":"i"})", 0);
  ASSERT_FALSE(kafka_zero_default.ok);
  EXPECT_NE(kafka_zero_default.message.find("the message timestamp 0 is before 1973-03-03 "
                                           "(ingest.min_event_time_s): the producer set no real time?"),
            std::string::npos)
      << kafka_zero_default.message;
  EXPECT_FALSE(from_epoch.Decode(R"({"user_id":"u","item_id":"i","ts":-1})", 7).ok);
}

TEST(DecoderTest, BadEventsHaveReasons) {
  const std::string long_id(300, 'a');
  const std::vector<Case> cases = {
      {"", false, BadReason::kEmptyValue, "empty value"},
      {"not json", false, BadReason::kNotJson, "not valid JSON"},
      {"{\"user_id\":\"u\",\"item_id\":\"i\"", false, BadReason::kNotJson, "not valid JSON"},
      {"{\"user_id\":\"u\xff\",\"item_id\":\"i\",\"ts\":1}", false, BadReason::kNotJson, "not valid JSON"},
      {std::string("\x00\x01\x02\xfe", 4), false, BadReason::kNotJson, "not valid JSON"},
      {"[1,2]", false, BadReason::kNotObject, "not a JSON object"},
      {"\xEF\xBB\xBF{\"user_id\":\"u\",\"item_id\":\"i\",\"ts\":1}", false, BadReason::kNotJson,
       "not valid JSON: the value starts with a UTF-8 byte order mark"},
      // A broken atom after what the tree parser cannot hold (read field by field) is named as
      // the tree parser names it.
      {R"({"x":)" + std::string(70, '[') + std::string(70, ']') + R"(,"y":tru,"user_id":"u","item_id":"i"})", false,
       BadReason::kNotJson, "not valid JSON: Problem while parsing an atom starting with the letter 't'"},
      {R"({"x":123456789012345678901234567890,"y":fals,"user_id":"u","item_id":"i"})", false, BadReason::kNotJson,
       "not valid JSON: Problem while parsing an atom starting with the letter 'f'"},
      {R"({"y":tru,"user_id":"u","item_id":"i"})", false, BadReason::kNotJson,
       "not valid JSON: Problem while parsing an atom starting with the letter 't'"},
      {"\"just a string\"", false, BadReason::kNotObject, "not a JSON object"},
      {R"({"item_id":"i","ts":1})", false, BadReason::kMissingField, "missing user_id"},
      {R"({"user_id":"u","ts":1})", false, BadReason::kMissingField, "missing item_id"},
      {R"({"user_id":"","item_id":"i","ts":1})", false, BadReason::kBadId, "user_id is empty"},
      {R"({"user_id":")" + long_id + R"(","item_id":"i","ts":1})", false, BadReason::kBadId,
       "user_id is 300 bytes, over 256"},
      {R"({"user_id":"u","item_id":"i","ts":-5})", false, BadReason::kBadTime, "ts -5 is negative"},
      {R"({"user_id":"u","item_id":"i","ts":1732600000123000})", false, BadReason::kBadTime, "after 2100"},
      {R"({"user_id":"u","item_id":"i","ts":1.5})", false, BadReason::kBadTime, "ts must be an integer"},
      {R"({"user_id":"u","item_id":"i","ts":"yesterday"})", false, BadReason::kWrongType, "ts must be an integer"},
      {R"({"user_id":["u"],"item_id":"i","ts":1})", false, BadReason::kWrongType, "user_id must be a string"},
      {R"({"user_id":"u","item_id":1.25,"ts":1})", false, BadReason::kWrongType, "item_id must be a string"},
      {R"({"user_id":"u","item_id":null,"ts":1})", false, BadReason::kWrongType, "item_id must be a string"},
      {R"({"user_id":"u","item_id":"i","ts":1,"event":7})", false, BadReason::kWrongType, "event must be a string"},
      {R"({"user_id":"u","item_id":"i"})", false, BadReason::kBadTime, "no ts and no message timestamp"},
      {R"({"user_id":"u","item_id":"i","ts":null})", false, BadReason::kBadTime, "no ts and no message timestamp"},
      {R"({"user_id":"a","item_id":"i","user_id":"b","ts":1})", false, BadReason::kDuplicateField,
       "user_id appears more than once"},
      {R"({"user_id":"u","item_id":"i","ts":1,"item_id":"i"})", false, BadReason::kDuplicateField,
       "item_id appears more than once"},
      {R"({"user_id":"u","item_id":"i","ts":null,"ts":5})", false, BadReason::kDuplicateField,
       "ts appears more than once"},
      {R"({"user_id":"u","item_id":"i","ts":1,"event":"view","event":"buy"})", false, BadReason::kDuplicateField,
       "event appears more than once"},
  };
  Decoder d;
  for (const auto& c : cases) {
    const auto& r = d.Decode(c.value, c.message_part == "no ts and no message timestamp" ? -1 : 0);
    EXPECT_EQ(r.ok, c.ok) << c.value;
    if (!r.ok) {
      EXPECT_EQ(BadReasonName(r.reason), BadReasonName(c.reason)) << c.value << " -> " << r.message;
      EXPECT_NE(r.message.find(c.message_part), std::string::npos) << c.value << " -> " << r.message;
    }
  }
  // The bytes of the value before, still in the decoder's buffer, are not this one's.
  ASSERT_FALSE(d.Decode("\xEF\xBB\xBF{}", 0).ok);
  const auto& lone = d.Decode("\xEF", 0);
  ASSERT_FALSE(lone.ok);
  EXPECT_EQ(lone.message.find("byte order mark"), std::string::npos) << lone.message;
}

TEST(DecoderTest, HugeValuesAreRejectedUnparsed) {
  DecoderOptions o;
  o.max_value_bytes = 1024;
  Decoder d(o);
  const std::string huge = R"({"user_id":"u","item_id":"i","pad":")" + std::string(5000, 'x') + "\"}";
  const auto& r = d.Decode(huge, 1);
  ASSERT_FALSE(r.ok);
  EXPECT_EQ(r.reason, BadReason::kTooLarge);
  EXPECT_NE(r.message.find(std::to_string(huge.size()) + " bytes"), std::string::npos) << r.message;
}

// A time more than max_ahead_ms after the clock given is bad (a producer's clock ahead); up to it,
// without a clock given, or with the limit off, it is taken. The message timestamp alike.
TEST(DecoderTest, ATimeTooFarAheadOfTheClockIsBad) {
  DecoderOptions o;
  o.max_ahead_ms = 86'400'000;
  Decoder d(o);
  constexpr int64_t kNow = 1'796'000'000'000;
  auto event = [](int64_t ts) { return R"({"user_id":"u","item_id":"i","ts":)" + std::to_string(ts) + "}"; };
  EXPECT_TRUE(d.Decode(event(kNow + 86'400'000), -1, kNow).ok) << "a day ahead, at the limit";
  const auto& ahead = d.Decode(event(kNow + 2 * 86'400'000), -1, kNow);
  EXPECT_FALSE(ahead.ok);
  EXPECT_EQ(ahead.reason, BadReason::kBadTime);
  EXPECT_NE(ahead.message.find("is 172800 s ahead of this machine's clock, over ingest.max_event_time_ahead_s (86400)"),
            std::string::npos)
      << ahead.message;
  const auto& stamped = d.Decode(R"({"user_id":"u","item_id":"i"})", kNow + 2 * 86'400'000, kNow);
  EXPECT_EQ(stamped.reason, BadReason::kBadTime);
  EXPECT_NE(stamped.message.find("the message timestamp"), std::string::npos) << stamped.message;
  EXPECT_TRUE(d.Decode(event(kNow + 2 * 86'400'000), -1).ok) << "no clock given: not checked";
  Decoder off;  // max_ahead_ms 0
  EXPECT_TRUE(off.Decode(event(kNow + 2 * 86'400'000), -1, kNow).ok) << "the limit off";
}

// Seeded random mutations of good events: the decoder never crashes, and whatever it accepts
// satisfies the rules (so a mutation cannot smuggle a bad event into the state).
TEST(DecoderTest, SeededRandomMutationsNeverBreakTheRules) {
  const std::vector<std::string> seeds = {
      R"({"user_id":"u42","item_id":"sku-9","ts":1732600000123,"event":"click"})",
      R"({"user_id":17,"item_id":"a\"b\\c","ts":100000000000})",
      R"({"item_id":"x","user_id":"y","other":[1,{"a":null}],"ts":4102444800000})",
  };
  std::mt19937_64 rng(2020);
  Decoder d;
  int accepted = 0;
  for (int i = 0; i < 200000; ++i) {
    std::string v = seeds[rng() % seeds.size()];
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      const size_t pos = v.empty() ? 0 : rng() % v.size();
      switch (rng() % 4) {
        case 0: if (!v.empty()) v[pos] = static_cast<char>(rng()); break;
        case 1: v.insert(pos, 1, static_cast<char>(rng())); break;
        case 2: if (!v.empty()) v.erase(pos, 1 + rng() % 3); break;
        case 3: v.insert(pos, v.substr(rng() % (v.size() + 1), rng() % 8)); break;
      }
    }
    static constexpr int64_t kKafkaTs[] = {-1, 0, 1732600000, 1700000000000};  // none, 0, seconds, ms
    const auto& r = d.Decode(v, kKafkaTs[rng() % 4]);
    if (r.ok) {
      ++accepted;
      ASSERT_FALSE(r.event.user_id.empty()) << v;
      ASSERT_FALSE(r.event.item_id.empty()) << v;
      ASSERT_LE(r.event.user_id.size(), kMaxIdBytes) << v;
      ASSERT_GE(r.event.ts_ms, 100000000000) << v;
      ASSERT_LE(r.event.ts_ms, 4102444800000) << v;
      ASSERT_FALSE(r.event.event_type.empty()) << v;
    } else {
      ASSERT_FALSE(r.message.empty()) << v;
    }
  }
  EXPECT_GT(accepted, 1000) << "mutations should leave many events valid";
}

}  // namespace
}  // namespace gsau::ingest
