// Namespace arguments and opening a controller by backend name: every bad input names its fault.
#include "nvmux/nvme/backend.hpp"

#include <gtest/gtest.h>

#include <filesystem>

namespace nvmux::nvme {
namespace {

TEST(ParseSize, SuffixesAreBinary) {
  EXPECT_EQ(*parse_size("4096"), 4096u);
  EXPECT_EQ(*parse_size("64K"), 64u << 10);
  EXPECT_EQ(*parse_size("1g"), 1u << 30);
  EXPECT_EQ(*parse_size("1GiB"), 1u << 30);
  EXPECT_EQ(*parse_size("2MB"), 2u << 20);
  EXPECT_EQ(*parse_size("1T"), 1ull << 40);
}

TEST(ParseSize, BadSizesSayWhy) {
  EXPECT_NE(parse_size("banana").status().message().find("'banana' is not a number"), std::string::npos);
  EXPECT_NE(parse_size("12Q").status().message().find("unknown suffix"), std::string::npos);
  EXPECT_NE(parse_size("99999999999T").status().message().find("does not fit"), std::string::npos);
}

TEST(ParseNamespaceArg, EveryKind) {
  auto ram = parse_namespace_arg("ram:size=1G,bs=512");
  ASSERT_TRUE(ram.ok());
  EXPECT_EQ(ram->kind, NamespaceArg::Kind::kRam);
  EXPECT_EQ(ram->bytes, 1u << 30);
  EXPECT_EQ(ram->block_size, 512u);
  auto null = parse_namespace_arg("null:size=64M");
  ASSERT_TRUE(null.ok());
  EXPECT_EQ(null->kind, NamespaceArg::Kind::kNull);
  EXPECT_EQ(null->block_size, 4096u);
  auto file = parse_namespace_arg("file:/data/ns1.img,size=1G");
  ASSERT_TRUE(file.ok());
  EXPECT_EQ(file->path, "/data/ns1.img");
  auto bdev = parse_namespace_arg("bdev:/dev/nvme0n1");
  ASSERT_TRUE(bdev.ok());
  EXPECT_EQ(bdev->kind, NamespaceArg::Kind::kBdev);
  EXPECT_EQ(bdev->bytes, 0u);
}

void expect_bad(const char* text, const char* words) {
  auto r = parse_namespace_arg(text);
  ASSERT_FALSE(r.ok()) << text;
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find(words), std::string::npos) << r.status().message();
}

TEST(ParseNamespaceArg, BadArgumentsNameTheirFault) {
  expect_bad("ram", "expected KIND:");
  expect_bad("disk:size=1G", "unknown kind 'disk'");
  expect_bad("ram:bs=4096", "need size=N");
  expect_bad("ram:size=1G,bs=1024", "bs=1024 is not 512 or 4096");
  expect_bad("ram:size=1000", "not a multiple of bs 4096");
  expect_bad("ram:size=1G,color=red", "unknown option 'color'");
  expect_bad("ram:size", "is not KEY=VALUE");
  expect_bad("file:", "no path");
  expect_bad("ram:size=lots", "'lots' is not a number");
}

TEST(OpenController, NamespaceKindsBelongToTheirBackend) {
  BackendOptions uring;
  uring.backend = Backend::kUring;
  auto none = open_controller(uring);
  EXPECT_NE(none.status().message().find("needs --ns file:PATH"), std::string::npos);
  uring.namespaces = {*parse_namespace_arg("ram:size=1M")};
  EXPECT_NE(open_controller(uring).status().message().find("only on the emu backend"), std::string::npos);
  uring.namespaces = {*parse_namespace_arg("bdev:/etc/hostname")};
  EXPECT_NE(open_controller(uring).status().message().find("is not a block device"), std::string::npos);
  BackendOptions emu;
  emu.namespaces = {*parse_namespace_arg("bdev:/dev/null")};
  EXPECT_NE(open_controller(emu).status().message().find("--backend uring"), std::string::npos);
  emu.namespaces = {*parse_namespace_arg("file:/nonexistent/x.img")};
  EXPECT_NE(open_controller(emu).status().message().find("give size=N"), std::string::npos);
  EXPECT_EQ(parse_backend("spdk").status().code(), StatusCode::kInvalidArgument);
}

// vfio takes a PCI address and no namespaces; every refusal says what to do instead. (The backend
// itself runs against QEMU's controller inside the test guest: tests/vm.cmake.)
TEST(OpenController, VfioNeedsAnAddressAndTakesTheDevicesNamespaces) {
  EXPECT_EQ(*parse_backend("vfio"), Backend::kVfio);
  EXPECT_EQ(to_string(Backend::kVfio), "vfio");
  BackendOptions vfio;
  vfio.backend = Backend::kVfio;
  EXPECT_NE(open_controller(vfio).status().message().find("needs --pci ADDR"), std::string::npos);
  vfio.namespaces = {*parse_namespace_arg("ram:size=1M")};
  vfio.pci_address = "0000:00:04.0";
  EXPECT_NE(open_controller(vfio).status().message().find("controller's own namespaces; drop --ns"), std::string::npos);
  vfio.namespaces.clear();
  vfio.pci_address = "banana";
  auto bad = open_controller(vfio);
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("not DDDD:BB:DD.F"), std::string::npos) << bad.status().to_string();
  vfio.pci_address = "ffff:ff:1f.7";  // no such function on any machine
  auto missing = open_controller(vfio);
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound) << missing.status().to_string();
  EXPECT_NE(missing.status().message().find("nvmux-setup status"), std::string::npos);
}

TEST(OpenController, EmuDefaultsToOneGibRamNamespace) {
  BackendOptions emu;
  emu.emu_inline_engine = true;
  auto c = open_controller(emu);
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  ASSERT_EQ((*c)->namespaces().size(), 1u);
  EXPECT_EQ((*c)->namespaces()[0].blocks * (*c)->namespaces()[0].block_size, 1u << 30);
}

}  // namespace
}  // namespace nvmux::nvme
