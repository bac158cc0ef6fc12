#include "nvmux/common/partition.hpp"

#include <gtest/gtest.h>

namespace nvmux {
namespace {

TEST(Partition, ParsesKOfN) {
  auto p = parse_partition("2/4");
  ASSERT_TRUE(p.ok()) << p.status().to_string();
  EXPECT_EQ(p->index, 2u);
  EXPECT_EQ(p->count, 4u);
  EXPECT_TRUE(parse_partition("0/1").ok());
  EXPECT_TRUE(parse_partition("1023/1024").ok());
}

TEST(Partition, RefusesWhatIsNotKOfNAndNamesTheFlag) {
  for (const char* bad : {"", "1", "/", "1/", "/4", "4/4", "5/4", "0/0", "0/1025", "-1/4", "1/-4", "a/4", "1/4x",
                          "1 /4", "1/4/5", "99999999999/4"}) {
    auto p = parse_partition(bad, "--partition");
    ASSERT_FALSE(p.ok()) << "'" << bad << "' was accepted";
    EXPECT_EQ(p.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(p.status().message().find("--partition"), std::string::npos) << p.status().message();
  }
}

TEST(Partition, UnitsOfOnePartitionNeverOverlapAnotherWhateverTheUnitSize) {
  const std::uint64_t blocks = 1000003;  // not a multiple of anything convenient
  for (std::uint32_t n : {1u, 3u, 4u, 7u}) {
    for (std::uint32_t unit_a : {1u, 2u, 8u}) {
      for (std::uint32_t unit_b : {1u, 3u, 8u}) {
        for (std::uint32_t k = 0; k + 1 < n; ++k) {
          // Partition k's last LBA (unit size a) lies before partition k+1's first LBA (unit size b).
          auto a = partition_units({k, n}, blocks, unit_a);
          auto b = partition_units({k + 1, n}, blocks, unit_b);
          ASSERT_GT(a.units, 0u);
          EXPECT_LE((a.first_unit + a.units) * unit_a, b.first_unit * unit_b) << k << "/" << n;
        }
        auto last = partition_units({n - 1, n}, blocks, unit_a);
        EXPECT_LE((last.first_unit + last.units) * unit_a, blocks);
      }
    }
  }
}

TEST(Partition, OnePartitionCoversTheWholeNamespaceInWholeUnits) {
  auto all = partition_units({0, 1}, 1000, 8);
  EXPECT_EQ(all.first_unit, 0u);
  EXPECT_EQ(all.units, 125u);
  auto tail = partition_units({0, 1}, 1001, 8);
  EXPECT_EQ(tail.units, 125u);                // the last, partial unit is left out
  auto tiny = partition_units({3, 4}, 3, 1);  // fewer blocks than partitions
  EXPECT_EQ(tiny.units, 0u);
}

}  // namespace
}  // namespace nvmux
