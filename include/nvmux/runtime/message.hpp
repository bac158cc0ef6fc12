#pragma once
// Message: one lane slot. The callable a sender passes to send_msg is constructed straight into
// the slot (no allocation, no pool) and run, moved or destroyed through one type-erased function.
//
// Threading: a Message is written by exactly one producer (the lane's sender) and read by exactly
// one consumer (the lane's owner); the ring's release/acquire on its indices orders the two.
// A Message never leaves its slot except by relocation into another lane's slot (the dispatcher).
//
// Layout: 64 bytes, one cache line: ops (8) | enqueue_tsc (8) | capture (48, 16-byte aligned).

#include <cstddef>
#include <cstdint>
#include <new>
#include <type_traits>
#include <utility>

namespace nvmux {

// The largest callable (lambda captures included) send_msg stores inline. A bigger one is a
// compile-time error, never a hidden allocation: capture a pointer to the state instead.
inline constexpr std::size_t kMaxMsgCaptureBytes = 48;
// The strictest alignment a message callable may require.
inline constexpr std::size_t kMaxMsgCaptureAlignBytes = 16;

namespace detail {

enum class MsgOp { kRun, kDrop, kRelocate };

struct RelocateTag {};

struct alignas(64) Message {
  // kRun: invoke the callable, then destroy it. kDrop: destroy it without running it.
  // kRelocate: move-construct it into dst->capture, then destroy the source.
  using Ops = void (*)(MsgOp op, Message* self, Message* dst) noexcept;

  template <class Fn, class F>
  Message(std::in_place_type_t<Fn>, std::uint64_t tsc, F&& fn) noexcept(std::is_nothrow_constructible_v<Fn, F&&>)
      : ops(&ops_for<Fn>), enqueue_tsc(tsc) {
    ::new (static_cast<void*>(capture)) Fn(std::forward<F>(fn));
  }

  // Moves `src`'s callable into this slot; `src` is left empty (its slot may be freed).
  Message(RelocateTag, Message& src) noexcept : ops(src.ops), enqueue_tsc(src.enqueue_tsc) {
    ops(MsgOp::kRelocate, &src, this);
  }

  Message(const Message&) = delete;
  Message& operator=(const Message&) = delete;

  void run() noexcept { ops(MsgOp::kRun, this, nullptr); }
  void drop() noexcept { ops(MsgOp::kDrop, this, nullptr); }

  template <class Fn>
  static void ops_for(MsgOp op, Message* self, Message* dst) noexcept {
    Fn* fn = std::launder(reinterpret_cast<Fn*>(self->capture));
    switch (op) {
      case MsgOp::kRun:
        // A message that throws ends the process here (noexcept): the data path has no exceptions.
        (*fn)();
        fn->~Fn();
        return;
      case MsgOp::kDrop: fn->~Fn(); return;
      case MsgOp::kRelocate:
        ::new (static_cast<void*>(dst->capture)) Fn(std::move(*fn));
        fn->~Fn();
        return;
    }
  }

  Ops ops;
  std::uint64_t enqueue_tsc;  // read_tsc() at send time for sampled messages, 0 otherwise
  alignas(kMaxMsgCaptureAlignBytes) std::byte capture[kMaxMsgCaptureBytes];
};

static_assert(sizeof(Message) == 64, "a lane slot is exactly one 64-byte line");
static_assert(offsetof(Message, ops) == 0);
static_assert(offsetof(Message, enqueue_tsc) == 8);
static_assert(offsetof(Message, capture) == 16);
static_assert(std::is_trivially_destructible_v<Message>, "slots are destroyed through ops, not ~Message");

// Whether send_msg accepts a callable of type Fn (for tests and generic code).
template <class Fn>
inline constexpr bool kFitsInMessage =
    sizeof(Fn) <= kMaxMsgCaptureBytes &&
    alignof(Fn) <= kMaxMsgCaptureAlignBytes&& std::is_invocable_v<Fn&>&& std::is_nothrow_move_constructible_v<
                       Fn>&& std::is_nothrow_destructible_v<Fn>;

// Compile-time checks on a message callable, each with a message that says what to do.
template <class Fn>
constexpr void check_message_callable() {
  static_assert(sizeof(Fn) <= kMaxMsgCaptureBytes,
                "send_msg: the callable's captures exceed kMaxMsgCaptureBytes (48 bytes); capture a pointer "
                "to bigger state instead");
  static_assert(alignof(Fn) <= kMaxMsgCaptureAlignBytes, "send_msg: the callable needs more than 16-byte alignment");
  static_assert(std::is_invocable_v<Fn&>, "send_msg: the callable must be invocable with no arguments");
  static_assert(std::is_nothrow_move_constructible_v<Fn>,
                "send_msg: the callable must be nothrow-move-constructible (the dispatcher relocates it)");
  static_assert(std::is_nothrow_destructible_v<Fn>, "send_msg: the callable must be nothrow-destructible");
}

}  // namespace detail
}  // namespace nvmux
