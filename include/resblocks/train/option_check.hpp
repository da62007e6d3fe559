#pragma once
/// \file
/// \brief The argument check of the optimizers, schedules and clip_grad_norm.

#include <sstream>
#include <stdexcept>
#include <string_view>

namespace resblocks::detail {

/// Throws std::invalid_argument "resblocks::<who>: invalid <what> <value> (<rule>)" unless `ok`.
inline void check_option(bool ok, std::string_view who, std::string_view what, double value, std::string_view rule) {
  if (!ok) {
    std::ostringstream os;
    os << "resblocks::" << who << ": invalid " << what << " " << value << " (" << rule << ")";
    throw std::invalid_argument(os.str());
  }
}

}  // namespace resblocks::detail
