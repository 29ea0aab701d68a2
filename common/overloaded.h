// The overload set for std::visit: Overloaded{[](A&) {...}, [](B&) {...}}.
//
// An exhaustive visit over a closed variant (a message, a task kind) ends with a generic case
// whose static_assert names the file to edit, so that a new alternative without a case gives one
// clear line, not pages of template errors:
//
//   [&]<typename T>(T&) { static_assert(!ToBroker(T::kCommand), "... needs a case in X.cc"); }
#pragma once

namespace orq {

template <class... Ts> struct Overloaded : Ts... { using Ts::operator()...; };
template <class... Ts> Overloaded(Ts...) -> Overloaded<Ts...>;

}  // namespace orq
