#pragma once
/// \file
/// \brief Moved to resblocks/core/initializers.hpp (models include the initialisers; training does not
/// own them). This forwarding header keeps old includes working.

#include "resblocks/core/initializers.hpp"
